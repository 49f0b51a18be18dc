//! A local folder used as a bucket: keys are relative paths with `/`,
//! listing is in S3's key order, writes are atomic (temp file + rename in
//! the same folder) and conditional, ETags are the quoted hex MD5 of the
//! content, as for a single-part S3 upload.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    fn key_path(&self, key: &str) -> Result<PathBuf> {
        key_to_path(&self.root, key)
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

    fn etag_of(&self, path: &Path, meta: &fs::Metadata) -> io::Result<Box<str>> {
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        if let Some((len, t, etag)) = self.etags.lock().expect("etag cache").get(path)
            && *len == meta.len()
            && *t == mtime
        {
            return Ok(etag.clone());
        }
        let mut hasher = Md5::new();
        let mut file = File::open(path)?;
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

    fn info_for(&self, key: &str, path: &Path, meta: &fs::Metadata) -> io::Result<ObjectInfo> {
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.len(),
            etag: Some(self.etag_of(path, meta)?),
            last_modified: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
        })
    }

    fn put_blocking(&self, key: &str, body: &[u8], condition: &PutCondition) -> Result<String> {
        if key.ends_with('/') {
            return Err(StorageError::InvalidKey {
                key: key.into(),
                reason: "folder placeholders are plain folders in a local bucket",
            });
        }
        let path = self.key_path(key)?;
        // One writer at a time across processes: an exclusive lock on the
        // root folder makes check-then-rename atomic for every imgtag.
        let lock = File::open(&self.root).map_err(io_err("locking the bucket folder"))?;
        lock.lock().map_err(io_err("locking the bucket folder"))?;
        let current = match fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(StorageError::InvalidKey {
                    key: key.into(),
                    reason: "a folder with this name exists",
                });
            }
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("reading {key:?}"))(e)),
        };
        match (condition, &current) {
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
            (PutCondition::IfMatch(expected), Some(meta)) => {
                let have = self
                    .etag_of(&path, meta)
                    .map_err(io_err(format!("reading {key:?}")))?;
                if normalize_etag(&have) != normalize_etag(expected) {
                    return Err(StorageError::Conflict {
                        key: key.into(),
                        reason: "ETag does not match".into(),
                    });
                }
            }
        }
        let parent = path.parent().expect("key paths are inside the root");
        fs::create_dir_all(parent).map_err(io_err(format!("creating the folder for {key:?}")))?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = parent.join(format!(
            "{TMP_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(format!("writing {key:?}"))(e));
        }
        let etag = quoted_md5_hex(Md5::digest(body).as_slice());
        if let Ok(meta) = fs::metadata(&path) {
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

pub(crate) fn quoted_md5_hex(digest: &[u8]) -> String {
    format!("\"{}\"", hex::encode(digest))
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
            c if c.starts_with(TMP_PREFIX) => return Err(bad("reserved for imgtag's temp files")),
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
                Ok(p) => (p, format!("{d}/")),
                Err(_) => return Walker { stack: Vec::new() },
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
                if name.starts_with(TMP_PREFIX) {
                    return None;
                }
                if let Some(p) = name_prefix
                    && !name.starts_with(p)
                {
                    return None;
                }
                let ft = e.file_type().ok()?;
                // Symlinked folders are not followed: they can loop.
                let is_dir = ft.is_dir();
                Some((name, is_dir))
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
                self.push_dir(path, format!("{key}/"), None);
                continue;
            }
            let meta = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                // Vanished since read_dir, a dangling link, or a socket.
                _ => continue,
            };
            if key.len() > MAX_KEY_BYTES {
                continue;
            }
            match store.info_for(&key, &path, &meta) {
                Ok(info) => page.push(info),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
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
            let path = s.key_path(&key)?;
            let not_found = || StorageError::NotFound { key: key.clone() };
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
                Err(e) => return Err(io_err(format!("reading {key:?}"))(e)),
            };
            let meta = file
                .metadata()
                .map_err(io_err(format!("reading {key:?}")))?;
            if !meta.is_file() {
                return Err(not_found());
            }
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
            let path = s.key_path(&key)?;
            let mut file = match File::open(&path) {
                Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
                Ok(_) => return Err(StorageError::NotFound { key: key.clone() }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StorageError::NotFound { key: key.clone() });
                }
                Err(e) => return Err(io_err(format!("reading {key:?}"))(e)),
            };
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
            let path = s.key_path(&key)?;
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => s
                    .info_for(&key, &path, &m)
                    .map_err(io_err(format!("reading {key:?}"))),
                Ok(_) => Err(StorageError::NotFound { key: key.clone() }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(StorageError::NotFound { key: key.clone() })
                }
                Err(e) => Err(io_err(format!("reading {key:?}"))(e)),
            }
        })
        .await
    }

    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        let key = key.to_string();
        self.blocking(move |s| s.put_blocking(&key, &body, &condition))
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
}
