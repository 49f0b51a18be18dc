//! Object storage behind one async trait: S3 (and S3-compatible stores) and
//! a local folder used as a bucket.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod local;
pub mod s3;

pub use local::LocalStore;
pub use s3::{S3Options, S3Store};

/// One listed object. Kept small: a listing of 100k objects holds 100k.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Quoted, as S3 returns it. `None` when a store does not say.
    pub etag: Option<Box<str>>,
    /// Seconds since the Unix epoch.
    pub last_modified: Option<i64>,
}

/// A fetched object.
#[derive(Debug, Clone)]
pub struct Object {
    pub info: ObjectInfo,
    pub body: Bytes,
}

/// The condition a write is made under, so that concurrent writers never
/// clobber each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Overwrite whatever is there.
    None,
    /// Only if no object exists (`If-None-Match: *`).
    CreateOnly,
    /// Only if the current object has this ETag (`If-Match`).
    IfMatch(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    S3,
    Local,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{key:?} not found")]
    NotFound { key: String },
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },
    /// A conditional write lost: someone else wrote the object first.
    #[error("{key:?} was changed by someone else ({reason})")]
    Conflict { key: String, reason: String },
    #[error("{key:?} is {size} bytes, over the {limit} byte limit")]
    TooLarge { key: String, size: u64, limit: u64 },
    #[error("access denied: {message}")]
    AccessDenied { message: String },
    #[error("throttled by the store: {message}")]
    Throttled { message: String },
    #[error("store unavailable: {message}")]
    Unavailable { message: String },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The body of a reply broke off (connection reset, stalled) on every
    /// attempt.
    #[error("reading {key:?} broke off ({attempts} attempts): {message}")]
    Interrupted {
        key: String,
        attempts: u32,
        message: String,
    },
    /// The store refused the request for a reason that retrying cannot
    /// change (a 4xx other than throttling, conflicts, 403 and 404).
    #[error("the store rejected {key:?} (HTTP {status}): {message}")]
    Rejected {
        key: String,
        status: u16,
        message: String,
    },
    /// A listing that cannot go on without looping or silently missing
    /// keys (a repeated continuation token, endless empty pages).
    #[error("listing {prefix:?} in {store} stopped: {reason}")]
    BrokenListing {
        store: String,
        prefix: String,
        reason: String,
    },
    #[error("{message}")]
    Other { message: String },
}

impl StorageError {
    /// Worth retrying later: throttling, 5xx, network failures, timeouts
    /// and bodies that broke off. Everything else (access denied, a missing
    /// bucket, other 4xx, too large, invalid keys, a full or read-only disk)
    /// fails the same way again, so retrying only costs time and money.
    pub fn is_transient(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            StorageError::Throttled { .. }
            | StorageError::Unavailable { .. }
            | StorageError::Interrupted { .. } => true,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                K::TimedOut
                    | K::Interrupted
                    | K::WouldBlock
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::NotConnected
                    | K::ResourceBusy
            ),
            StorageError::NotFound { .. }
            | StorageError::NoSuchBucket { .. }
            | StorageError::Conflict { .. }
            | StorageError::TooLarge { .. }
            | StorageError::AccessDenied { .. }
            | StorageError::InvalidKey { .. }
            | StorageError::Rejected { .. }
            | StorageError::BrokenListing { .. }
            | StorageError::Other { .. } => false,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A bucket. Listing is lexicographic by key bytes, as in S3.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn kind(&self) -> StoreKind;
    /// Whether AWS services (Rekognition) can read objects of this bucket
    /// by reference: AWS S3 itself, not a local folder or another endpoint.
    fn aws_readable(&self) -> bool {
        false
    }
    /// The bucket name recorded in `ImgTag.Source.Bucket`.
    fn bucket_name(&self) -> &str;
    /// The endpoint this store's requests go to, as resolved when it was
    /// opened (empty for AWS S3 itself and for folders): with the bucket
    /// name, what identifies the bucket (`photos` on MinIO is not `photos`
    /// on AWS).
    fn endpoint(&self) -> &str {
        ""
    }
    /// A human description: `s3://bucket` or the folder path.
    fn describe(&self) -> String;
    /// Lists every object under `prefix`, page by page, in key order.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>>;
    /// Whether [`Store::list_after`] seeks (S3's `start-after`), so that a
    /// listing split into key ranges costs no more requests than one
    /// listing. Stores that cannot seek list a prefix as one stream.
    fn seeks(&self) -> bool {
        false
    }
    /// Lists the objects under `prefix` whose keys sort after `after`
    /// (all of them with `None`), page by page, in key order. By default
    /// the whole prefix is listed and the keys up to `after` dropped.
    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        use futures::StreamExt;
        let pages = self.list(prefix);
        let Some(after) = after.map(str::to_string) else {
            return pages;
        };
        pages
            .filter_map(move |page| {
                let page = page.map(|mut p| {
                    p.retain(|o| o.key > after);
                    p
                });
                std::future::ready(match &page {
                    Ok(p) if p.is_empty() => None,
                    _ => Some(page),
                })
            })
            .boxed()
    }
    /// Fetches a whole object, refusing objects over `limit` bytes.
    async fn get(&self, key: &str, limit: u64) -> Result<Object>;
    /// Fetches the bytes in `range` (clamped to the object's end).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    async fn head(&self, key: &str) -> Result<ObjectInfo>;
    /// Writes an object under a condition; returns the new ETag.
    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String>;
    /// Deletes an object, only if its ETag is still `if_match` when one is
    /// given (a `Conflict` otherwise). An object that is already gone is
    /// not an error.
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<()>;
}

pub type DynStore = Arc<dyn Store>;

/// A store in front of another that changes some of its answers (records
/// writes in the index, tells a denied read from a missing object, …) and
/// passes the rest on. Implement this rather than [`Store`] for a wrapper:
/// only what it changes is written, and a method added to [`Store`] is
/// passed on by every wrapper at once.
#[async_trait]
pub trait Layer: Send + Sync + 'static {
    /// The store behind this one.
    fn inner(&self) -> &DynStore;
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        self.inner().list(prefix)
    }
    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        self.inner().list_after(prefix, after)
    }
    async fn get(&self, key: &str, limit: u64) -> Result<Object> {
        self.inner().get(key, limit).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner().get_range(key, range).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        self.inner().head(key).await
    }
    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        self.inner().put(key, body, condition).await
    }
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<()> {
        self.inner().delete(key, if_match).await
    }
}

// The bucket's identity is always the inner store's.
#[async_trait]
impl<L: Layer> Store for L {
    fn kind(&self) -> StoreKind {
        self.inner().kind()
    }
    fn aws_readable(&self) -> bool {
        self.inner().aws_readable()
    }
    fn bucket_name(&self) -> &str {
        self.inner().bucket_name()
    }
    fn endpoint(&self) -> &str {
        self.inner().endpoint()
    }
    fn describe(&self) -> String {
        self.inner().describe()
    }
    fn seeks(&self) -> bool {
        self.inner().seeks()
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        Layer::list(self, prefix)
    }
    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        Layer::list_after(self, prefix, after)
    }
    async fn get(&self, key: &str, limit: u64) -> Result<Object> {
        Layer::get(self, key, limit).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        Layer::get_range(self, key, range).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        Layer::head(self, key).await
    }
    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        Layer::put(self, key, body, condition).await
    }
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<()> {
        Layer::delete(self, key, if_match).await
    }
}

/// A bucket argument: an S3 bucket name or a local folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketSpec {
    S3(String),
    Local(std::path::PathBuf),
}

impl BucketSpec {
    /// S3 bucket names cannot contain `/`, so anything with one (or a
    /// `file://` URL, or `.`/`~`) is a folder.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty bucket".into());
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(BucketSpec::Local(path.into()));
        }
        if let Some(name) = s.strip_prefix("s3://") {
            let name = name.trim_end_matches('/');
            return validate_bucket_name(name).map(|_| BucketSpec::S3(name.into()));
        }
        if s.contains('/') || s.contains(std::path::MAIN_SEPARATOR) || s == "." || s == ".." {
            return Ok(BucketSpec::Local(s.into()));
        }
        if let Some(home_rel) = s.strip_prefix("~") {
            let home = directories::BaseDirs::new()
                .ok_or("cannot find the home directory")?
                .home_dir()
                .to_path_buf();
            return Ok(BucketSpec::Local(
                home.join(home_rel.trim_start_matches('/')),
            ));
        }
        validate_bucket_name(s).map(|_| BucketSpec::S3(s.into()))
    }

    /// When this is an S3 name that is also a folder in the current
    /// directory: how to get the folder instead (`photos` is an S3 name
    /// even when ./photos is right here).
    pub fn folder_hint(&self) -> Option<String> {
        self.folder_hint_in(std::path::Path::new("."))
    }

    /// [`BucketSpec::folder_hint`] with `dir` as the current directory.
    pub fn folder_hint_in(&self, dir: &std::path::Path) -> Option<String> {
        match self {
            BucketSpec::S3(name) if dir.join(name).is_dir() => Some(format!(
                "{name} is read as an S3 bucket name; for the folder of that name here, write ./{name}"
            )),
            _ => None,
        }
    }
}

fn validate_bucket_name(s: &str) -> std::result::Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if (3..=63).contains(&s.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens); \
             for a local folder write ./{s}"
        ))
    }
}

/// An error and its sources as one line of Display text (the SDK's
/// `DisplayErrorContext` appends a Debug dump that means nothing to a user).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A content type for a key, so objects written by imgtag look right in
/// consoles.
pub(crate) fn content_type_for(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_name_that_is_also_a_folder_here_gets_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("photos")).unwrap();
        std::fs::write(dir.path().join("notes"), "a file").unwrap();
        let hint = |s: &str| BucketSpec::parse(s).unwrap().folder_hint_in(dir.path());
        let said = hint("photos").unwrap();
        assert!(said.contains("write ./photos"), "{said}");
        // A file of that name, another name, or a folder already written
        // as one: nothing to say.
        assert_eq!(hint("notes"), None);
        assert_eq!(hint("other-bucket"), None);
        assert_eq!(hint("./photos"), None);
    }

    #[test]
    fn only_errors_that_can_pass_are_transient() {
        let io = |kind| StorageError::Io {
            context: "writing".into(),
            source: std::io::Error::from(kind),
        };
        let msg = || "m".to_string();
        let transient = [
            StorageError::Throttled { message: msg() },
            StorageError::Unavailable { message: msg() },
            StorageError::Interrupted {
                key: "k".into(),
                attempts: 3,
                message: msg(),
            },
            io(std::io::ErrorKind::TimedOut),
            io(std::io::ErrorKind::ConnectionReset),
        ];
        for e in &transient {
            assert!(e.is_transient(), "{e:?}");
        }
        let permanent = [
            StorageError::AccessDenied { message: msg() },
            StorageError::NoSuchBucket { bucket: "b".into() },
            StorageError::NotFound { key: "k".into() },
            StorageError::Conflict {
                key: "k".into(),
                reason: msg(),
            },
            StorageError::TooLarge {
                key: "k".into(),
                size: 2,
                limit: 1,
            },
            StorageError::InvalidKey {
                key: "k".into(),
                reason: "too long",
            },
            StorageError::Rejected {
                key: "k".into(),
                status: 400,
                message: msg(),
            },
            StorageError::Other { message: msg() },
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::StorageFull),
            io(std::io::ErrorKind::ReadOnlyFilesystem),
            io(std::io::ErrorKind::InvalidFilename),
        ];
        for e in &permanent {
            assert!(!e.is_transient(), "{e:?}");
        }
    }

    #[test]
    fn bucket_spec_tells_folders_from_buckets() {
        assert_eq!(
            BucketSpec::parse("my-bucket"),
            Ok(BucketSpec::S3("my-bucket".into()))
        );
        assert_eq!(
            BucketSpec::parse("s3://my.bucket/"),
            Ok(BucketSpec::S3("my.bucket".into()))
        );
        assert_eq!(
            BucketSpec::parse("./photos"),
            Ok(BucketSpec::Local("./photos".into()))
        );
        assert_eq!(
            BucketSpec::parse("/data/photos"),
            Ok(BucketSpec::Local("/data/photos".into()))
        );
        assert_eq!(
            BucketSpec::parse("file:///data/p"),
            Ok(BucketSpec::Local("/data/p".into()))
        );
        assert!(
            BucketSpec::parse("My_Photos")
                .unwrap_err()
                .contains("./My_Photos")
        );
        assert!(BucketSpec::parse("ab").is_err());
    }
}
