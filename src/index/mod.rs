//! The persistent bucket index: what the last listing and document reads
//! found, in SQLite on disk, so that re-opening a bucket costs a listing
//! and not a GET per document, and so that a label search over a million
//! images is an indexed query.
//!
//! One index file per (endpoint, bucket, prefixes) and schema version, in
//! the platform cache dir, readable by its owner only. It holds every listed object (key, size, ETag, LastModified), the
//! pairing of images with their metadata, and one [`DocSummary`] per
//! document ETag, with the label and parent names indexed for search.
//! A refresh ([`refresh::refresh`]) lists both prefixes, reconciles page by
//! page and reads only documents whose ETag it has not summarised; every
//! write through [`IndexedStore`] updates it, so a TUI and a concurrent
//! `imgtag` (WAL mode: readers beside one writer) agree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::contract::{KeyKind, Layout};
use crate::storage::{ObjectInfo, StorageError};
use crate::summary::{DocSummary, SummaryRead};

pub(crate) use codec::Labels;
pub(crate) use etag::{StoredTag, Tag};

mod codec;
mod etag;
mod probe;
pub mod query;
pub mod refresh;
mod store;
mod text;

pub use store::IndexedStore;

/// Bumped whenever the tables change; an index of an older version is
/// rebuilt, one of a newer version left alone (see [`Index::open`]). 2: summaries carry the image quality (`DocSummary::quality`);
/// 3: the `stale` flag that lets an unchanged re-open skip the pairing;
/// 4: a pair carries both objects' fields and the name index the headline
/// rank, so a label hit is two index reads (see [`query`]); 5: a pair
/// carries its document's id (`mdoc`), and a label hit joins on it; 6: the
/// `writes` a refresh that listed before them must not undo; 7: ETags as
/// 16 bytes, pairs without copies of the objects' fields; 8: the
/// recognised words of the documents that have them (`doc_text`, `text`),
/// and `pairs_doc` carries the pair's kind, so a label hit of a canonical
/// pair skips the pair's row (its document key follows from the image's).
pub const SCHEMA_VERSION: i64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("index {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The store listed keys out of order, which the page-by-page
    /// reconcile relies on (S3 general-purpose buckets always list in
    /// order; directory buckets do not).
    #[error("the listing of {prefix:?} is not in key order; use --no-index")]
    Unordered { prefix: String },
}

/// What an index belongs to: never mixed with another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The S3 endpoint (empty for AWS's default) or `file` for a folder.
    pub endpoint: String,
    /// The bucket name, or the folder's canonical path.
    pub bucket: String,
    pub uploads: String,
    pub metadata: String,
}

impl IndexSpec {
    pub fn new(endpoint: &str, bucket: &str, layout: &Layout) -> Self {
        IndexSpec {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            uploads: layout.uploads_prefix().into(),
            metadata: layout.metadata_prefix().into(),
        }
    }

    fn fields(&self) -> [(&'static str, &str); 4] {
        [
            ("endpoint", &self.endpoint),
            ("bucket", &self.bucket),
            ("uploads", &self.uploads),
            ("metadata", &self.metadata),
        ]
    }

    /// A file name that is safe on every file system and differs for
    /// every spec: a readable slug of the bucket, a 64-bit FNV-1a hash of
    /// all four fields, and the schema version, so that an older and a
    /// newer imgtag each keep their own file instead of rebuilding each
    /// other's.
    pub fn file_name(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, v) in self.fields() {
            for b in v.bytes().chain([0u8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        let slug: String = self
            .bucket
            .chars()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{slug}-{h:016x}.v{SCHEMA_VERSION}.sqlite")
    }
}

/// Where indexes live: `IMGTAG_INDEX_DIR`, else the platform cache dir
/// (`~/.cache/imgtag/index` on Linux).
pub(crate) fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("IMGTAG_INDEX_DIR") {
        return Some(d.into());
    }
    directories::ProjectDirs::from("", "", "imgtag").map(|d| d.cache_dir().join("index"))
}

/// An open index. One writer connection behind a mutex; long reads
/// ([`query`]) use read-only connections of their own so writes never
/// wait on them.
pub struct Index {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Read-only connections a finished query gave back: the next query
    /// finds their pages mapped and cached (a new connection faults each
    /// page in again, and unmaps them all when it closes).
    readers: Arc<Mutex<Vec<Connection>>>,
    spec: IndexSpec,
    /// Kept alive for an index in a temporary file (the fallback when the
    /// real one is locked by another process).
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

// Schema 7, for size and cold queries (docs/index.md): ETags are stored
// as 16 bytes when they are the usual MD5 ([`etag`]), summaries in a few
// bytes with label names as ids into `labels` ([`codec`]; `names` holds
// the lowercase search names, another vocabulary); a pair holds only
// its keys, kind and document id (the objects' fields are read from
// `objects` by key), so an image costs its two object rows, one pair and
// two small index entries. A label's hits sit together in `doc_names`,
// clustered by (name, rank): `--below` is a range of it, and the hits are
// then read in key order from tables clustered by key.
// `doc_names.rank` is the headline confidence (-inf without a headline,
// +inf for a failure). `writes` numbers each key's last write-through
// (AUTOINCREMENT: never reused, so numbers only grow): a refresh leaves
// alone what was written after it began.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS info(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects(
    key TEXT PRIMARY KEY, size INTEGER NOT NULL, etag NOT NULL, modified INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pairs(
    image TEXT PRIMARY KEY, meta TEXT NOT NULL, kind INTEGER NOT NULL, mdoc INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pairs_meta ON pairs(meta);
CREATE INDEX IF NOT EXISTS pairs_doc ON pairs(mdoc, kind);
CREATE TABLE IF NOT EXISTS docs(
    id INTEGER PRIMARY KEY, etag NOT NULL UNIQUE, summary BLOB, malformed TEXT
);
CREATE TABLE IF NOT EXISTS labels(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS doc_names(
    name INTEGER NOT NULL, rank REAL NOT NULL, doc INTEGER NOT NULL,
    PRIMARY KEY(name, rank, doc)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writes(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, at INTEGER NOT NULL
);
";

impl Index {
    /// Opens (or creates) the index at `path`. Only a file proven corrupt
    /// is deleted and rebuilt. One of a newer schema or another bucket,
    /// one that cannot be written, or one another process keeps locked is
    /// left alone, and a temporary index serves this run. Either way the
    /// second value says what happened, for the user. Other errors (disk
    /// full, I/O) are returned and the files left as they are: another
    /// process may have them open.
    pub fn open(path: &Path, spec: &IndexSpec) -> Result<(Index, Option<String>), IndexError> {
        if let Some(dir) = path.parent() {
            crate::private::create_dir(dir).map_err(|source| IndexError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let shown = path.display();
        match Self::try_open(path, spec) {
            Ok(opened) => Ok(opened),
            Err(Problem::Corrupt(why)) => {
                remove_index_files(path)?;
                let (ix, _) = Self::try_open(path, spec).map_err(|p| p.into_error(path))?;
                Ok((ix, Some(format!("rebuilding the index {shown} ({why})"))))
            }
            Err(Problem::Locked) => Self::temporary(
                spec,
                format!("the index {shown} is locked by another process"),
            ),
            Err(Problem::LeftAlone(why)) => {
                Self::temporary(spec, format!("the index {shown} {why}"))
            }
            Err(p @ Problem::Failed(_)) => Err(p.into_error(path)),
        }
    }

    /// A throwaway index for this run, and the note saying why.
    fn temporary(spec: &IndexSpec, why: String) -> Result<(Index, Option<String>), IndexError> {
        // tempfile makes the folder 0700.
        let dir = tempfile::tempdir().map_err(|source| IndexError::Io {
            path: "temporary index".into(),
            source,
        })?;
        let tmp = dir.path().join("index.sqlite");
        let (mut ix, _) = Self::try_open(&tmp, spec).map_err(|p| p.into_error(&tmp))?;
        ix._temp = Some(dir);
        Ok((
            ix,
            Some(format!("{why}; using a temporary one for this run")),
        ))
    }

    /// Opens without writing when the file is already this build's index
    /// of this spec: another process may be writing (under WAL a reader
    /// never waits for it). Only a new or older-schema file is written.
    fn try_open(path: &Path, spec: &IndexSpec) -> Result<(Index, Option<String>), Problem> {
        // Created 0600 before SQLite sees it: SQLite gives the -wal and
        // -shm files the database file's mode.
        crate::private::create_file(path).map_err(Problem::io)?;
        for suffix in ["", "-wal", "-shm"] {
            crate::private::restrict(&with_suffix(path, suffix));
        }
        let conn = Connection::open(path).map_err(Problem::classify)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(Problem::classify)?;
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(Problem::classify)?
        {
            return Err(Problem::LeftAlone("cannot be written".into()));
        }
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(Problem::classify)?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(Problem::classify)?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Problem::classify)?;
        tune(&conn).map_err(Problem::classify)?;
        let note = match schema_of(&conn).map_err(Problem::classify)? {
            Some(SCHEMA_VERSION) => None,
            Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
            _ => create_schema(&conn, spec)?,
        };
        check_spec(&conn, spec)?;
        let ix = Index {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            readers: Arc::default(),
            spec: spec.clone(),
            _temp: None,
        };
        Ok((
            ix,
            note.map(|n| format!("rebuilding the index {} ({n})", path.display())),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// Runs `f` on the writer connection.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, IndexError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|source| self.err(source))
    }

    /// A read-only connection of its own, for a long query: one a query
    /// gave back, or a new one.
    pub(crate) fn reader(&self) -> Result<Reader, IndexError> {
        let kept = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match kept {
            Some(c) => c,
            None => self.new_reader()?,
        };
        Ok(Reader {
            conn: Some(conn),
            pool: self.readers.clone(),
        })
    }

    fn new_reader(&self) -> Result<Connection, IndexError> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| self.err(source))?;
        c.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|source| self.err(source))?;
        // Memory-mapped like the writer: a label query's random reads of a
        // few thousand pages then cost no system call each.
        tune(&c).map_err(|source| self.err(source))?;
        Ok(c)
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> IndexError {
        IndexError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Records an object imgtag just wrote (or read) and, for a metadata
    /// document, its summary and pairing: the write-through that keeps the
    /// index true between refreshes.
    pub fn record_document(
        &self,
        layout: &Layout,
        info: &ObjectInfo,
        doc: &SummaryRead,
    ) -> Result<(), IndexError> {
        let identity = identity(info);
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // The document first: the pair's `mdoc` is looked up from it.
            store_doc(&tx, &identity, doc)?;
            upsert_object(&tx, info)?;
            note_write(&tx, &info.key)?;
            if let Some(rest) = layout.metadata_rest(&info.key) {
                let image = layout.image_key(rest);
                let image = tx
                    .query_row(
                        "SELECT key, size, etag, modified FROM objects WHERE key = ?1",
                        [&image],
                        object_from_row,
                    )
                    .optional()?;
                if let Some(image) = image {
                    store_pair(&tx, &image, info, KeyKind::Canonical)?;
                }
            }
            tx.commit()
        })
    }

    /// How many objects and summarised documents the index holds.
    pub fn counts(&self) -> Result<(u64, u64), IndexError> {
        self.with(|c| {
            let objects = c.query_row("SELECT count(*) FROM objects", [], |r| r.get(0))?;
            let docs = c.query_row("SELECT count(*) FROM docs", [], |r| r.get(0))?;
            Ok((objects, docs))
        })
    }
}

/// The writer reads through a memory map and a larger page cache, which
/// it keeps across a refresh. (A reader lives for one query: mapping the
/// file anew costs it a page fault per page, more than a `pread`.)
fn tune(c: &Connection) -> rusqlite::Result<()> {
    c.pragma_update(None, "mmap_size", 1i64 << 31)?;
    c.pragma_update(None, "cache_size", -32_768)?;
    Ok(())
}

/// A read-only connection that goes back to its index when dropped.
pub(crate) struct Reader {
    conn: Option<Connection>,
    pool: Arc<Mutex<Vec<Connection>>>,
}

impl std::ops::Deref for Reader {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        // Two kept are enough for a TUI and its refresh.
        if pool.len() < 2
            && let Some(c) = self.conn.take()
        {
            pool.push(c);
        }
    }
}

enum Problem {
    /// Another process held a lock for the whole busy timeout.
    Locked,
    /// Not a database, or a damaged one: the only files deleted.
    Corrupt(String),
    /// Someone else's (a newer imgtag's, another bucket's) or not ours to
    /// write: kept as it is.
    LeftAlone(String),
    /// Anything else (disk full, an I/O error): kept, and an error.
    Failed(IndexError),
}

impl Problem {
    fn classify(e: rusqlite::Error) -> Problem {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => Problem::Locked,
            Some(C::DatabaseCorrupt | C::NotADatabase) => Problem::Corrupt(e.to_string()),
            Some(C::ReadOnly | C::PermissionDenied | C::CannotOpen) => {
                Problem::LeftAlone(format!("cannot be written ({e})"))
            }
            _ => Problem::Failed(IndexError::Sqlite {
                path: String::new(),
                source: e,
            }),
        }
    }

    fn io(e: std::io::Error) -> Problem {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => {
                Problem::LeftAlone(format!("cannot be written ({e})"))
            }
            _ => Problem::Failed(IndexError::Io {
                path: String::new(),
                source: e,
            }),
        }
    }

    fn into_error(self, path: &Path) -> IndexError {
        let path = path.display().to_string();
        match self {
            Problem::Failed(IndexError::Sqlite { source, .. }) => {
                IndexError::Sqlite { path, source }
            }
            Problem::Failed(IndexError::Io { source, .. }) => IndexError::Io { path, source },
            Problem::Failed(e) => e,
            Problem::Locked => IndexError::Io {
                path,
                source: std::io::Error::other("locked"),
            },
            Problem::Corrupt(why) | Problem::LeftAlone(why) => IndexError::Io {
                path,
                source: std::io::Error::other(why),
            },
        }
    }
}

fn newer(version: i64) -> Problem {
    Problem::LeftAlone(format!(
        "has schema version {version}, newer than this build's {SCHEMA_VERSION} (a newer imgtag's)"
    ))
}

/// The file's schema version: `None` for a new, empty file.
fn schema_of(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_tables: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'info'",
        [],
        |r| r.get(0),
    )?;
    Ok(has_tables.then_some(version))
}

/// Creates the tables in a new file, or replaces an older schema's, in one
/// write transaction (so another process sees one or the other). Returns
/// why an older index was replaced.
fn create_schema(conn: &Connection, spec: &IndexSpec) -> Result<Option<String>, Problem> {
    // Immediate: the write lock first (waiting for another writer), then
    // the check that decides what to write.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(Problem::classify)?;
    // Another process may have created it in the meantime.
    let note = match schema_of(&tx).map_err(Problem::classify)? {
        Some(SCHEMA_VERSION) => return Ok(None),
        Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
        Some(v) => {
            drop_tables(&tx).map_err(Problem::classify)?;
            Some(format!(
                "schema version {v}, this build uses {SCHEMA_VERSION}"
            ))
        }
        None => None,
    };
    tx.execute_batch(SCHEMA).map_err(Problem::classify)?;
    tx.execute_batch(text::SCHEMA).map_err(Problem::classify)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(Problem::classify)?;
    for (k, v) in spec.fields() {
        tx.execute("INSERT INTO info(k, v) VALUES (?1, ?2)", [k, v])
            .map_err(Problem::classify)?;
    }
    tx.commit().map_err(Problem::classify)?;
    Ok(note)
}

/// Drops every table and index of an older schema.
fn drop_tables(c: &Connection) -> rusqlite::Result<()> {
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for t in tables {
        c.execute_batch(&format!("DROP TABLE \"{}\"", t.replace('"', "\"\"")))?;
    }
    Ok(())
}

fn check_spec(conn: &Connection, spec: &IndexSpec) -> Result<(), Problem> {
    for (k, v) in spec.fields() {
        let stored: Option<String> = conn
            .query_row("SELECT v FROM info WHERE k = ?1", [k], |r| r.get(0))
            .optional()
            .map_err(Problem::classify)?;
        match stored {
            Some(s) if s == v => {}
            Some(s) => {
                return Err(Problem::LeftAlone(format!(
                    "belongs to {k} {s:?}, not {v:?}"
                )));
            }
            None => {
                conn.execute("INSERT OR IGNORE INTO info(k, v) VALUES (?1, ?2)", [k, v])
                    .map_err(Problem::classify)?;
            }
        }
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

fn remove_index_files(path: &Path) -> Result<(), IndexError> {
    for suffix in ["", "-wal", "-shm"] {
        match std::fs::remove_file(with_suffix(path, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IndexError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// What identifies an object's content: its ETag, or (for a store that
/// gives none) its size and modification time.
pub(crate) fn identity(info: &ObjectInfo) -> String {
    match &info.etag {
        Some(e) if !e.is_empty() => e.to_string(),
        _ => format!("~{}:{}", info.size, info.last_modified.unwrap_or(0)),
    }
}

pub(crate) fn etag_of_identity(identity: StoredTag) -> Option<Box<str>> {
    (!identity.0.starts_with('~')).then(|| identity.0.into_boxed_str())
}

/// An object as the index stores it, from a row of `key, size, etag,
/// modified`.
pub(crate) fn object_from_row(r: &rusqlite::Row) -> rusqlite::Result<ObjectInfo> {
    Ok(ObjectInfo {
        key: r.get(0)?,
        size: r.get::<_, i64>(1)? as u64,
        etag: etag_of_identity(r.get(2)?),
        last_modified: r.get(3)?,
    })
}

pub(crate) fn kind_code(k: KeyKind) -> i64 {
    match k {
        KeyKind::Canonical => 0,
        KeyKind::Stem => 1,
        KeyKind::Flat => 2,
        KeyKind::FlatStem => 3,
    }
}

pub(crate) fn kind_of(code: i64) -> KeyKind {
    match code {
        1 => KeyKind::Stem,
        2 => KeyKind::Flat,
        3 => KeyKind::FlatStem,
        _ => KeyKind::Canonical,
    }
}

/// Stores an object, and its new fields in the pair it is part of (for a
/// document: with the id of its summary, if one is stored; store the
/// summary first).
pub(crate) fn upsert_object(c: &Connection, info: &ObjectInfo) -> rusqlite::Result<()> {
    let identity = identity(info);
    c.prepare_cached(
        "INSERT OR REPLACE INTO objects(key, size, etag, modified) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        info.key,
        info.size as i64,
        Tag(&identity),
        info.last_modified
    ])?;
    c.prepare_cached(
        "UPDATE pairs SET mdoc = (SELECT id FROM docs WHERE etag = ?2) WHERE meta = ?1",
    )?
    .execute(params![info.key, Tag(&identity)])?;
    Ok(())
}

/// Numbers a write-through of `key`, newer than every refresh begun.
fn note_write(c: &Connection, key: &str) -> rusqlite::Result<()> {
    c.prepare_cached("REPLACE INTO writes(key, at) VALUES (?1, ?2)")?
        .execute(params![
            key,
            time::OffsetDateTime::now_utc().unix_timestamp()
        ])?;
    Ok(())
}

/// Drops an object, and the pair it was part of (the next pairing finds
/// what it pairs with now).
pub(crate) fn delete_object(c: &Connection, key: &str) -> rusqlite::Result<()> {
    for sql in [
        "DELETE FROM objects WHERE key = ?1",
        "DELETE FROM pairs WHERE image = ?1",
        "DELETE FROM pairs WHERE meta = ?1",
    ] {
        c.prepare_cached(sql)?.execute([key])?;
    }
    Ok(())
}

/// Pairs `image` with the document at `meta`, with the id of the
/// document's summary.
pub(crate) fn store_pair(
    c: &Connection,
    image: &ObjectInfo,
    meta: &ObjectInfo,
    kind: KeyKind,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO pairs(image, meta, kind, mdoc) \
         VALUES (?1, ?2, ?3, (SELECT id FROM docs WHERE etag = ?4))",
    )?
    .execute(params![
        image.key,
        meta.key,
        kind_code(kind),
        Tag(&identity(meta))
    ])?;
    Ok(())
}

/// Stores a document's summary under its identity (once: documents with
/// one ETag have one content), with its names for label search.
pub(crate) fn store_doc(c: &Connection, identity: &str, doc: &SummaryRead) -> rusqlite::Result<()> {
    let exists = c
        .prepare_cached("SELECT 1 FROM docs WHERE etag = ?1")?
        .query_row([Tag(identity)], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Ok(());
    }
    let (summary, malformed) = match doc {
        Ok(s) => (Some(codec::encode(s, |n| codec::intern(c, n))?), None),
        Err(m) => (None, Some(m.reason.clone())),
    };
    c.prepare_cached("INSERT INTO docs(etag, summary, malformed) VALUES (?1, ?2, ?3)")?
        .execute(params![Tag(identity), summary, malformed])?;
    let id = c.last_insert_rowid();
    if let Ok(s) = doc {
        text::store(c, id, s)?;
        let rank = headline_rank(s);
        for name in s.search_names() {
            c.prepare_cached("INSERT OR IGNORE INTO names(name) VALUES (?1)")?
                .execute([&name])?;
            c.prepare_cached(
                "INSERT OR IGNORE INTO doc_names(name, rank, doc) \
                 SELECT id, ?2, ?3 FROM names WHERE name = ?1",
            )?
            .execute(params![name, rank, id])?;
        }
    }
    Ok(())
}

/// Where a document sorts for `--below N` (which keeps tagged images whose
/// headline is under N): a failure never matches, a document without a
/// headline always does.
fn headline_rank(s: &DocSummary) -> f64 {
    match s.headline() {
        _ if s.error.is_some() => f64::INFINITY,
        Some((_, conf)) if !conf.is_nan() => f64::from(conf),
        _ => f64::NEG_INFINITY,
    }
}

/// Reads a stored summary back, `name` giving each label id's name.
pub(crate) fn summary_from(
    summary: Option<Vec<u8>>,
    malformed: Option<String>,
    name: impl FnMut(u32) -> Option<String>,
) -> Option<SummaryRead> {
    if let Some(reason) = malformed {
        return Some(Err(crate::contract::Malformed { reason }));
    }
    summary.and_then(|s| codec::decode(&s, name).map(Ok))
}
