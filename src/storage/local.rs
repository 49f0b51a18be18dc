//! A local folder used as a bucket: keys are relative paths with `/`,
//! listing is in S3's key order, writes are atomic (temp file + rename in
//! the same folder) and conditional, ETags are the quoted hex MD5 of the
//! content, as for a single-part S3 upload.
//!
//! Symbolic links and special files inside the bucket are never followed
//! or opened as objects: a link planted at a key (or at a folder on the way)
//! could otherwise make a write land outside the bucket, and a FIFO would
//! hang a read. Writes go to a temp file with a random name created
//! exclusively (`O_EXCL`), then renamed over the key, which replaces a name
//! and never writes through a link.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use md5::{Digest, Md5};

use super::{Object, ObjectInfo, PutCondition, Result, StorageError, Store, StoreKind};
use crate::contract::{MAX_KEY_BYTES, normalize_etag};

/// Temp files of in-flight writes start with this; they are never listed
/// and never valid keys.
const TMP_PREFIX: &str = ".imgtag-tmp-";
const PAGE_SIZE: usize = 1000;
/// Why a path that exists is not used as an object.
const LINK_REFUSED: &str =
    "a symbolic link is in the way (links in a local bucket are not followed)";
const SPECIAL_REFUSED: &str = "not a regular file (a FIFO, socket or device)";

type EtagCache = Arc<Mutex<HashMap<PathBuf, (u64, SystemTime, Box<str>)>>>;

#[derive(Clone)]
pub struct LocalStore {
    root: PathBuf,
    name: String,
    page_size: usize,
    /// MD5 of files already hashed, keyed by path and checked against size
    /// and mtime, so a re-list of an unchanged folder reads nothing.
    etags: EtagCache,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

fn refused(key: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidKey {
        key: key.into(),
        reason,
    }
}

/// What is at a key's path.
enum Found {
    Missing,
    Folder,
    File(File, fs::Metadata),
}

/// The folders between the root and a path.
enum Folders {
    Exist,
    Missing,
    /// One of them is a symbolic link.
    Link,
}

/// Checks the folders from the root down to `dir` (both real folders, not
/// links), creating missing ones when asked. A folder swapped for a link
/// after this check is not caught (std has no `openat`); the check on the
/// opened file itself (`open_regular`) is race-free.
fn check_folders(root: &Path, dir: &Path, create: bool) -> io::Result<Folders> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| io::Error::other("path outside the bucket"))?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        let meta = match fs::symlink_metadata(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match fs::create_dir(&at) {
                    Ok(()) => continue,
                    // Made by someone else meanwhile: looked at below.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        fs::symlink_metadata(&at)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Folders::Missing),
            other => other?,
        };
        if meta.is_symlink() {
            return Ok(Folders::Link);
        }
        if !meta.is_dir() {
            return Err(io::ErrorKind::NotADirectory.into());
        }
    }
    Ok(Folders::Exist)
}

/// Opens a file for reading without following a link at its name and
/// without blocking on a FIFO, and checks what was opened (not the name,
/// which may have been replaced since it was looked at) is a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, SPECIAL_REFUSED));
    }
    Ok(file)
}

/// The error `open_regular` gives for a link at the name (`O_NOFOLLOW`:
/// `ELOOP`, or `EMLINK` on FreeBSD).
fn is_link_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EMLINK))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

impl LocalStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let root = fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NoSuchBucket {
                bucket: path.display().to_string(),
            },
            _ => StorageError::Io {
                context: format!("opening {}", path.display()),
                source: e,
            },
        })?;
        if !root.is_dir() {
            return Err(StorageError::Other {
                message: format!("{} is not a folder", path.display()),
            });
        }
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".into());
        Ok(LocalStore {
            root,
            name,
            page_size: PAGE_SIZE,
            etags: Arc::default(),
        })
    }

    /// Lists in pages of at most `n` keys (default 1000, as S3).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a key to a path inside the root, refusing keys that could
    /// escape it or that a file system cannot hold.
    pub(crate) fn path_for_key(&self, key: &str) -> Result<PathBuf> {
        key_to_path(&self.root, key)
    }

    /// The key of a path under the root, if it can be one: relative, UTF-8,
    /// not one of the store's temp files (the inverse of `path_for_key`).
    pub fn key_for_path(&self, path: &Path) -> Option<String> {
        path_to_key(&self.root, path)
    }

    /// Whether a file name is one of the store's in-flight temp files
    /// (never listed, never a key).
    pub(crate) fn is_temp_name(name: &str) -> bool {
        name.starts_with(TMP_PREFIX)
    }

    /// What is at `key`'s path: refuses links (at the name or a folder on
    /// the way) and special files.
    fn open_object(&self, key: &str, path: &Path) -> Result<Found> {
        let ctx = || format!("reading {key:?}");
        let parent = path.parent().expect("key paths are inside the root");
        match check_folders(&self.root, parent, false).map_err(io_err(ctx()))? {
            Folders::Exist => {}
            Folders::Missing => return Ok(Found::Missing),
            Folders::Link => return Err(refused(key, LINK_REFUSED)),
        }
        // Looked at first so that nothing but a regular file is opened...
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) => return Err(io_err(ctx())(e)),
            Ok(m) if m.is_symlink() => return Err(refused(key, LINK_REFUSED)),
            Ok(m) if m.is_dir() => return Ok(Found::Folder),
            Ok(m) if !m.is_file() => return Err(refused(key, SPECIAL_REFUSED)),
            Ok(_) => {}
        }
        // ...and what was opened is checked again: the name may have been
        // replaced in between.
        match open_regular(path) {
            Ok(file) => {
                let meta = file.metadata().map_err(io_err(ctx()))?;
                Ok(Found::File(file, meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::Missing),
            Err(e) if is_link_error(&e) => Err(refused(key, LINK_REFUSED)),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(refused(key, SPECIAL_REFUSED)),
            Err(e) => Err(io_err(ctx())(e)),
        }
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&LocalStore) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StorageError::Other {
                message: format!("storage task failed: {e}"),
            })?
    }

    /// The object at `key`'s path: a folder is not one.
    fn open_existing(&self, key: &str, path: &Path) -> Result<(File, fs::Metadata)> {
        match self.open_object(key, path)? {
            Found::File(file, meta) => Ok((file, meta)),
            Found::Missing | Found::Folder => Err(StorageError::NotFound { key: key.into() }),
        }
    }

    /// The ETag of the file at `path` (already opened, or opened here).
    fn etag_of(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        file: Option<File>,
    ) -> io::Result<Box<str>> {
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        if let Some((len, t, etag)) = self.etags.lock().expect("etag cache").get(path)
            && *len == meta.len()
            && *t == mtime
        {
            return Ok(etag.clone());
        }
        let mut hasher = Md5::new();
        let mut file = match file {
            Some(f) => f,
            None => open_regular(path)?,
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let etag: Box<str> = quoted_md5_hex(hasher.finalize().as_slice()).into();
        self.etags
            .lock()
            .expect("etag cache")
            .insert(path.to_path_buf(), (meta.len(), mtime, etag.clone()));
        Ok(etag)
    }

    fn info_for(
        &self,
        key: &str,
        path: &Path,
        meta: &fs::Metadata,
        file: Option<File>,
    ) -> io::Result<ObjectInfo> {
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.len(),
            etag: Some(self.etag_of(path, meta, file)?),
            last_modified: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
        })
    }

    /// `Conflict` unless the file's ETag is `expected` (`If-Match`).
    fn check_etag(
        &self,
        key: &str,
        path: &Path,
        meta: &fs::Metadata,
        file: File,
        expected: &str,
    ) -> Result<()> {
        let have = self
            .etag_of(path, meta, Some(file))
            .map_err(io_err(format!("reading {key:?}")))?;
        if normalize_etag(&have) != normalize_etag(expected) {
            return Err(StorageError::Conflict {
                key: key.into(),
                reason: "ETag does not match".into(),
            });
        }
        Ok(())
    }

    /// Removes a file under the same lock as [`Self::put_blocking`], so an
    /// `if_match` check and the removal are one step for every imgtag.
    fn delete_blocking(&self, key: &str, if_match: Option<&str>) -> Result<()> {
        let path = self.path_for_key(key)?;
        let lock = File::open(&self.root).map_err(io_err("locking the bucket folder"))?;
        lock.lock().map_err(io_err("locking the bucket folder"))?;
        let (file, meta) = match self.open_object(key, &path)? {
            Found::Folder => return Err(refused(key, "a folder with this name exists")),
            Found::Missing => return Ok(()),
            Found::File(file, meta) => (file, meta),
        };
        if let Some(expected) = if_match {
            self.check_etag(key, &path, &meta, file, expected)?;
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(format!("deleting {key:?}"))(e));
            }
            _ => {}
        }
        self.etags.lock().expect("etag cache").remove(&path);
        Ok(())
    }

    fn put_blocking(&self, key: &str, body: &[u8], condition: &PutCondition) -> Result<String> {
        if key.ends_with('/') {
            return Err(StorageError::InvalidKey {
                key: key.into(),
                reason: "folder placeholders are plain folders in a local bucket",
            });
        }
        let path = self.path_for_key(key)?;
        // One writer at a time across processes: an exclusive lock on the
        // root folder makes check-then-rename atomic for every imgtag.
        let lock = File::open(&self.root).map_err(io_err("locking the bucket folder"))?;
        lock.lock().map_err(io_err("locking the bucket folder"))?;
        let current = match self.open_object(key, &path)? {
            Found::Folder => return Err(refused(key, "a folder with this name exists")),
            Found::Missing => None,
            Found::File(file, meta) => Some((file, meta)),
        };
        match (condition, current) {
            (PutCondition::None, _) | (PutCondition::CreateOnly, None) => {}
            (PutCondition::CreateOnly, Some(_)) => {
                return Err(StorageError::Conflict {
                    key: key.into(),
                    reason: "object already exists".into(),
                });
            }
            (PutCondition::IfMatch(_), None) => {
                return Err(StorageError::Conflict {
                    key: key.into(),
                    reason: "object does not exist".into(),
                });
            }
            (PutCondition::IfMatch(expected), Some((file, meta))) => {
                self.check_etag(key, &path, &meta, file, expected)?;
            }
        }
        let parent = path.parent().expect("key paths are inside the root");
        match check_folders(&self.root, parent, true)
            .map_err(io_err(format!("creating the folder for {key:?}")))?
        {
            Folders::Exist => {}
            Folders::Link | Folders::Missing => return Err(refused(key, LINK_REFUSED)),
        }
        write_atomically(parent, &path, body).map_err(io_err(format!("writing {key:?}")))?;
        let etag = quoted_md5_hex(Md5::digest(body).as_slice());
        if let Ok(meta) = fs::symlink_metadata(&path) {
            self.etags.lock().expect("etag cache").insert(
                path,
                (
                    meta.len(),
                    meta.modified().unwrap_or(UNIX_EPOCH),
                    etag.clone().into(),
                ),
            );
        }
        Ok(etag)
    }
}

/// Writes `body` to a fresh temp file in `parent` (random name, created
/// exclusively, so a link planted there is never written through), makes it
/// durable and renames it to `path` (which replaces a link at `path` rather
/// than following it). The temp file is removed on failure.
fn write_atomically(parent: &Path, path: &Path, body: &[u8]) -> io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(TMP_PREFIX);
    // As `File::create` would: readable by others unless the umask says not.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(parent)?;
    tmp.write_all(body)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) fn quoted_md5_hex(digest: &[u8]) -> String {
    format!("\"{}\"", hex::encode(digest))
}

fn path_to_key(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let std::path::Component::Normal(s) = c else {
            return None;
        };
        let s = s.to_str()?;
        if LocalStore::is_temp_name(s) {
            return None;
        }
        parts.push(s);
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn key_to_path(root: &Path, key: &str) -> Result<PathBuf> {
    let bad = |reason| StorageError::InvalidKey {
        key: key.into(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("empty key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad("longer than 1024 bytes"));
    }
    if key.contains('\0') {
        return Err(bad("contains NUL"));
    }
    let mut path = root.to_path_buf();
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    for comp in trimmed.split('/') {
        match comp {
            "" => return Err(bad("empty path segment (a leading or doubled '/')")),
            "." | ".." => return Err(bad("'.' and '..' segments cannot be stored in a folder")),
            c if LocalStore::is_temp_name(c) => {
                return Err(bad("reserved for imgtag's temp files"));
            }
            c if cfg!(windows) && c.contains('\\') => return Err(bad("contains '\\'")),
            c => path.push(c),
        }
    }
    Ok(path)
}

/// A lazy walk of the folder in S3 key order. A folder `a` sorts as `a/`,
/// which puts its keys exactly where S3 would list them among siblings.
struct Walker {
    stack: Vec<Frame>,
}

struct Frame {
    dir: PathBuf,
    key_prefix: String,
    /// Names and whether each is a folder (else a regular file).
    entries: std::vec::IntoIter<(String, bool)>,
}

impl Walker {
    fn new(root: &Path, prefix: &str) -> Walker {
        let (dir_part, name_prefix) = match prefix.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, prefix),
        };
        let (dir, key_prefix) = match dir_part {
            None => (root.to_path_buf(), String::new()),
            Some(d) => match key_to_path(root, d) {
                // Not through a linked folder on the way.
                Ok(p) if matches!(check_folders(root, &p, false), Ok(Folders::Exist)) => {
                    (p, format!("{d}/"))
                }
                _ => return Walker { stack: Vec::new() },
            },
        };
        let mut w = Walker { stack: Vec::new() };
        w.push_dir(dir, key_prefix, Some(name_prefix));
        w
    }

    fn push_dir(&mut self, dir: PathBuf, key_prefix: String, name_prefix: Option<&str>) {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable folder");
                }
                return;
            }
        };
        let mut entries: Vec<(String, bool)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                // Non-UTF-8 names cannot be S3 keys.
                let name = e.file_name().into_string().ok()?;
                if LocalStore::is_temp_name(&name) {
                    return None;
                }
                if let Some(p) = name_prefix
                    && !name.starts_with(p)
                {
                    return None;
                }
                // The entry's own type, not its target's: links (to
                // folders, which can loop, or to files) and special files
                // are not objects.
                let ft = e.file_type().ok()?;
                (ft.is_dir() || ft.is_file()).then_some((name, ft.is_dir()))
            })
            .collect();
        entries.sort_by(|(a, ad), (b, bd)| {
            let ak = a.as_bytes().iter().chain(if *ad { &b"/"[..] } else { &[] });
            let bk = b.as_bytes().iter().chain(if *bd { &b"/"[..] } else { &[] });
            ak.cmp(bk)
        });
        self.stack.push(Frame {
            dir,
            key_prefix,
            entries: entries.into_iter(),
        });
    }

    fn next_page(&mut self, store: &LocalStore, max: usize) -> Result<Vec<ObjectInfo>> {
        let mut page = Vec::new();
        while page.len() < max {
            let Some(frame) = self.stack.last_mut() else {
                break;
            };
            let Some((name, is_dir)) = frame.entries.next() else {
                self.stack.pop();
                continue;
            };
            let path = frame.dir.join(&name);
            let key = format!("{}{}", frame.key_prefix, name);
            if is_dir {
                // Replaced by a link since read_dir: not followed.
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    self.push_dir(path, format!("{key}/"), None);
                }
                continue;
            }
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m,
                // Vanished or replaced since read_dir.
                _ => continue,
            };
            if key.len() > MAX_KEY_BYTES {
                continue;
            }
            match store.info_for(&key, &path, &meta, None) {
                Ok(info) => page.push(info),
                // Vanished, or replaced by a link or a special file.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                    ) || is_link_error(&e) =>
                {
                    continue;
                }
                Err(e) => return Err(io_err(format!("reading {key:?}"))(e)),
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl Store for LocalStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Local
    }

    fn bucket_name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        let store = self.clone();
        let prefix = prefix.to_string();
        let state: Option<Option<Walker>> = Some(None);
        stream::unfold(state, move |state| {
            let store = store.clone();
            let prefix = prefix.clone();
            async move {
                let walker = state?;
                let res = tokio::task::spawn_blocking(move || {
                    let mut w = walker.unwrap_or_else(|| Walker::new(&store.root, &prefix));
                    let page = w.next_page(&store, store.page_size);
                    (w, page)
                })
                .await;
                match res {
                    Err(e) => Some((
                        Err(StorageError::Other {
                            message: format!("listing task failed: {e}"),
                        }),
                        None,
                    )),
                    Ok((_, Err(e))) => Some((Err(e), None)),
                    Ok((w, Ok(page))) => {
                        if page.is_empty() {
                            None
                        } else {
                            let more = !w.stack.is_empty();
                            Some((Ok(page), more.then_some(Some(w))))
                        }
                    }
                }
            }
        })
        .boxed()
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Object> {
        let key = key.to_string();
        self.blocking(move |s| {
            let path = s.path_for_key(&key)?;
            let (mut file, meta) = s.open_existing(&key, &path)?;
            if meta.len() > limit {
                return Err(StorageError::TooLarge {
                    key: key.clone(),
                    size: meta.len(),
                    limit,
                });
            }
            let mut body = Vec::with_capacity(meta.len() as usize);
            // Bounded even if the file grows while being read.
            (&mut file)
                .take(limit + 1)
                .read_to_end(&mut body)
                .map_err(io_err(format!("reading {key:?}")))?;
            if body.len() as u64 > limit {
                return Err(StorageError::TooLarge {
                    key: key.clone(),
                    size: body.len() as u64,
                    limit,
                });
            }
            let etag = quoted_md5_hex(Md5::digest(&body).as_slice());
            Ok(Object {
                info: ObjectInfo {
                    key: key.clone(),
                    size: body.len() as u64,
                    etag: Some(etag.into()),
                    last_modified: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64),
                },
                body: Bytes::from(body),
            })
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let key = key.to_string();
        self.blocking(move |s| {
            let path = s.path_for_key(&key)?;
            let (mut file, _) = s.open_existing(&key, &path)?;
            let len = range.end.saturating_sub(range.start);
            let mut body = Vec::new();
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.take(len).read_to_end(&mut body))
                .map_err(io_err(format!("reading {key:?}")))?;
            Ok(Bytes::from(body))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        let key = key.to_string();
        self.blocking(move |s| {
            let path = s.path_for_key(&key)?;
            let (file, meta) = s.open_existing(&key, &path)?;
            s.info_for(&key, &path, &meta, Some(file))
                .map_err(io_err(format!("reading {key:?}")))
        })
        .await
    }

    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        let key = key.to_string();
        self.blocking(move |s| s.put_blocking(&key, &body, &condition))
            .await
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<()> {
        let key = key.to_string();
        let if_match = if_match.map(str::to_string);
        self.blocking(move |s| s.delete_blocking(&key, if_match.as_deref()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            key_to_path(root, "a/b c+.jpg").unwrap(),
            Path::new("/r/a/b c+.jpg")
        );
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/abs",
            "a//b",
            "a/./b",
            "x\0y",
            ".imgtag-tmp-1",
        ] {
            assert!(key_to_path(root, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_map_back_to_keys() {
        let root = Path::new("/r");
        let key = |p: &str| path_to_key(root, Path::new(p));
        assert_eq!(
            key("/r/uploads/a b/c.jpg").as_deref(),
            Some("uploads/a b/c.jpg")
        );
        assert_eq!(key("/r/uploads").as_deref(), Some("uploads"));
        for bad in [
            "/r",
            "/r/uploads/.imgtag-tmp-1-2",
            "/r/.imgtag-tmp-x/a",
            "/elsewhere/x.jpg",
        ] {
            assert_eq!(key(bad), None, "{bad:?}");
        }
        // The inverse of key_to_path.
        let path = key_to_path(root, "uploads/x/y.png").unwrap();
        assert_eq!(
            key(path.to_str().unwrap()).as_deref(),
            Some("uploads/x/y.png")
        );
        assert!(LocalStore::is_temp_name(".imgtag-tmp-abc123"));
        assert!(!LocalStore::is_temp_name("imgtag-tmp-abc123"));
    }
}
