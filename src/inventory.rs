//! An S3 Inventory report as a listing source, for buckets past what one
//! listing can serve.
//!
//! S3 Inventory writes, daily or weekly, a `manifest.json` that names the
//! report's data files, their format and their column order
//! (`fileSchema`), and each file's size and MD5. CSV data files are gzip
//! compressed, have no header row, and carry object keys URL-encoded the way
//! HTML forms are (`+` for a space, `%2B` for a `+`), as S3 event
//! notifications do. The rows of a report come in no promised order.
//!
//! [`Manifest::read`] streams every data file (ranged GETs of
//! [`CHUNK_BYTES`], gunzipped and parsed as the bytes arrive, MD5 checked),
//! keeps only rows under the prefixes asked for, and sorts them into a
//! [`Listing`] whose [`pages`](Listing::pages) look like a store's listing:
//! ascending by key bytes, non-overlapping. Memory is bounded by the rows
//! kept (about 110 bytes plus the key for each, twice that while the list
//! grows), not by the report's size; a caller that cannot hold a prefix
//! reads it in parts (one `read` per sub-prefix, each a pass over the
//! report).
//!
//! Anything off in a report is an error, never a silently shorter listing:
//! a reconciling reader takes a key missing from the listing for a deleted
//! object.
//!
//! Only CSV reports are read. ORC and Parquet are refused with
//! [`InventoryError::UnsupportedFormat`]; an inventory configuration can say
//! CSV. (The `parquet` crate without Arrow would add five crates and about
//! 80 s of CPU to a clean build at this project's opt-level 2 for
//! dependencies; ORC was not measured.)

use std::io::Write;
use std::sync::Arc;

use flate2::write::MultiGzDecoder;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::Value;

use crate::contract::decode_form_key;
use crate::storage::{self, DynStore, ObjectInfo, StorageError};

/// The largest `manifest.json` read. A manifest lists one small entry per
/// data file; even a report of billions of objects stays far below this.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Data files are fetched in ranged GETs of this many bytes, so a
/// multi-gigabyte file is never held whole.
pub const CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// Data files read at once.
pub(crate) const FILES_IN_FLIGHT: usize = 4;
/// Compressed bytes handed to the decoder at a time: bounds the
/// decompressed bytes waiting to be parsed.
const FEED_BYTES: usize = 64 * 1024;
/// No inventory row comes near this (a key is at most 1,024 bytes, three
/// times that URL-encoded); a longer one is garbage, not a row.
const MAX_ROW_BYTES: usize = 64 * 1024;
/// S3 Inventory has a few dozen optional fields at most.
const MAX_FIELDS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading {key:?}: {source}")]
    Storage {
        key: String,
        #[source]
        source: StorageError,
    },
    #[error("{key:?} is not an S3 Inventory manifest: {reason}")]
    BadManifest { key: String, reason: String },
    #[error(
        "inventory format {format:?} is not supported: configure the S3 Inventory with CSV output"
    )]
    UnsupportedFormat { format: String },
    #[error(
        "the inventory's fileSchema has no {column} column (it has: {schema}): \
         configure the S3 Inventory to include Size and ETag"
    )]
    MissingColumn {
        column: &'static str,
        schema: String,
    },
    #[error("{key:?} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{key:?} has MD5 {actual}, the manifest says {expected}")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("{key:?} is not a whole gzip file: {source}")]
    Gzip {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key:?} row {row}: {reason}")]
    BadRow {
        key: String,
        row: u64,
        reason: String,
    },
    /// The report lists another bucket: taken as this one's listing it
    /// would drop every key of this bucket as gone.
    #[error(
        "the inventory report {manifest:?} lists bucket {listed:?}, not {bucket:?}: \
         name the report of {bucket:?}"
    )]
    OtherBucket {
        manifest: String,
        listed: String,
        bucket: String,
    },
    /// Objects, but none under the prefixes: a report filtered to another
    /// prefix, which would empty the index.
    #[error(
        "the inventory report {manifest:?} lists {rows} objects, none under {prefixes}: \
         its configuration must include those prefixes"
    )]
    NothingUnderPrefixes {
        manifest: String,
        rows: u64,
        prefixes: String,
    },
}

fn storage_err(key: &str) -> impl FnOnce(StorageError) -> InventoryError + '_ {
    move |source| InventoryError::Storage {
        key: key.to_string(),
        source,
    }
}

/// The data files' format, from the manifest's `fileFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Csv,
    Orc,
    Parquet,
}

/// One data file of a report, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Key in the destination bucket.
    pub key: String,
    pub size: u64,
    /// Lowercase hex MD5 of the file's bytes.
    pub md5: String,
}

/// Where the columns imgtag needs are in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    count: usize,
    key: usize,
    size: usize,
    etag: usize,
    bucket: Option<usize>,
    last_modified: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

impl Columns {
    fn find(names: &[String]) -> Result<Self, InventoryError> {
        let pos = |want: &str| names.iter().position(|n| n.eq_ignore_ascii_case(want));
        let need = |column: &'static str| {
            pos(column).ok_or_else(|| InventoryError::MissingColumn {
                column,
                schema: names.join(", "),
            })
        };
        Ok(Columns {
            count: names.len(),
            key: need("Key")?,
            size: need("Size")?,
            etag: need("ETag")?,
            bucket: pos("Bucket"),
            last_modified: pos("LastModifiedDate"),
            is_latest: pos("IsLatest"),
            is_delete_marker: pos("IsDeleteMarker"),
        })
    }
}

/// A parsed `manifest.json` of a CSV report.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the manifest was read from.
    pub key: String,
    /// The bucket the report lists. A caller checks it is the bucket it
    /// means: a report of another bucket would replace its listing.
    pub source_bucket: String,
    /// `arn:aws:s3:::bucket` as S3 writes it.
    pub destination_bucket: Option<String>,
    /// When S3 began scanning the bucket, in milliseconds since the epoch.
    pub creation_timestamp_ms: Option<i64>,
    /// The column names of `fileSchema`, in row order.
    pub columns: Vec<String>,
    pub files: Vec<DataFile>,
    cols: Columns,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    source_bucket: String,
    #[serde(default)]
    destination_bucket: Option<String>,
    /// A string of digits in AWS's example; a number is taken too.
    #[serde(default)]
    creation_timestamp: Option<Value>,
    file_format: String,
    file_schema: String,
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    key: String,
    size: u64,
    #[serde(rename = "MD5checksum")]
    md5: String,
}

/// Reads and parses the manifest at `manifest_key` (in the inventory's
/// destination bucket, which `store` must be able to read).
pub async fn load(store: &DynStore, manifest_key: &str) -> Result<Manifest, InventoryError> {
    let obj = store
        .get(manifest_key, MAX_MANIFEST_BYTES)
        .await
        .map_err(storage_err(manifest_key))?;
    Manifest::parse(manifest_key, &obj.body)
}

/// The newest `manifest.json` under a report configuration's prefix
/// (`destination-prefix/source-bucket/config-ID/`): reports sit in folders
/// named by their UTC start time (`2016-11-06T21-32Z`), which sort in time
/// order. `None` when there is no report yet (the first one takes up to
/// 48 hours).
pub async fn latest_manifest(
    store: &DynStore,
    config_prefix: &str,
) -> Result<Option<String>, InventoryError> {
    let mut pages = store.list(config_prefix);
    let mut latest: Option<String> = None;
    while let Some(page) = pages.try_next().await.map_err(storage_err(config_prefix))? {
        for o in page {
            // The prefix may come with or without its trailing slash.
            let rest = o.key[config_prefix.len()..].trim_start_matches('/');
            let Some(rest) = rest.strip_suffix("/manifest.json") else {
                continue;
            };
            // Only `<timestamp>/manifest.json`, not deeper copies.
            if !rest.contains('/') && latest.as_deref().is_none_or(|l| o.key.as_str() > l) {
                latest = Some(o.key);
            }
        }
    }
    Ok(latest)
}

impl Manifest {
    /// Parses a manifest's bytes; `key` names it in errors.
    pub fn parse(key: &str, json: &[u8]) -> Result<Self, InventoryError> {
        let bad = |reason: String| InventoryError::BadManifest {
            key: key.to_string(),
            reason,
        };
        let raw: RawManifest = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        match Self::format(&raw.file_format)
            .ok_or_else(|| bad(format!("unknown fileFormat {:?}", raw.file_format)))?
        {
            FileFormat::Csv => {}
            FileFormat::Orc | FileFormat::Parquet => {
                return Err(InventoryError::UnsupportedFormat {
                    format: raw.file_format,
                });
            }
        }
        let columns: Vec<String> = raw
            .file_schema
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        let cols = Columns::find(&columns)?;
        let mut files = Vec::with_capacity(raw.files.len());
        for f in raw.files {
            let md5 = f.md5.to_ascii_lowercase();
            if f.key.is_empty() {
                return Err(bad("a data file with an empty key".into()));
            }
            if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("{:?} has MD5checksum {:?}", f.key, f.md5)));
            }
            files.push(DataFile {
                key: f.key,
                size: f.size,
                md5,
            });
        }
        Ok(Manifest {
            key: key.to_string(),
            source_bucket: raw.source_bucket,
            destination_bucket: raw.destination_bucket,
            creation_timestamp_ms: raw.creation_timestamp.as_ref().and_then(|v| match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }),
            columns,
            files,
            cols,
        })
    }

    fn format(s: &str) -> Option<FileFormat> {
        [
            ("CSV", FileFormat::Csv),
            ("ORC", FileFormat::Orc),
            ("Parquet", FileFormat::Parquet),
        ]
        .into_iter()
        .find(|(name, _)| s.trim().eq_ignore_ascii_case(name))
        .map(|(_, f)| f)
    }

    /// Reads every data file (through `store`, which can read the
    /// destination bucket) and returns the current objects whose key starts
    /// with one of `prefixes`, sorted. Non-latest versions and delete
    /// markers are left out when the report lists versions.
    ///
    /// The report must be of `bucket` (its `sourceBucket`, and each row's
    /// Bucket column), and if it lists any object, some must be under the
    /// prefixes: either mistake would pass for a bucket whose images were
    /// all deleted. Objects outside the prefixes are counted
    /// ([`Listing::outside`]) and left out.
    pub async fn read(
        &self,
        store: &DynStore,
        bucket: &str,
        prefixes: &[&str],
    ) -> Result<Listing, InventoryError> {
        if self.source_bucket != bucket {
            return Err(InventoryError::OtherBucket {
                manifest: self.key.clone(),
                listed: self.source_bucket.clone(),
                bucket: bucket.to_string(),
            });
        }
        let want = Want {
            bucket: Arc::from(bucket),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        };
        let mut files = futures::stream::iter(&self.files)
            .map(|f| read_file(store, f, self.cols, &want))
            .buffer_unordered(FILES_IN_FLIGHT);
        let (mut objects, mut outside) = (Vec::new(), 0);
        while let Some((rows, out)) = files.try_next().await? {
            objects.extend(rows);
            outside += out;
        }
        if objects.is_empty() && outside > 0 {
            return Err(InventoryError::NothingUnderPrefixes {
                manifest: self.key.clone(),
                rows: outside,
                prefixes: prefixes.join(" or "),
            });
        }
        let mut listing = Listing::from_unsorted(objects);
        listing.outside = outside;
        Ok(listing)
    }
}

/// Which rows a read keeps: of this bucket, under these prefixes.
#[derive(Clone)]
struct Want {
    bucket: Arc<str>,
    prefixes: Arc<[String]>,
}

impl Want {
    fn covers(&self, key: &str) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

/// Streams one data file through MD5, gunzip and the CSV parser. The
/// CPU work of each chunk (tens of milliseconds for 8 MiB) runs on the
/// blocking pool: it neither stalls the caller's runtime (a TUI, other
/// requests in flight) nor keeps the files in flight on one core.
async fn read_file(
    store: &DynStore,
    file: &DataFile,
    cols: Columns,
    want: &Want,
) -> Result<(Vec<ObjectInfo>, u64), InventoryError> {
    let mut decode = Decode {
        md5: Md5::new(),
        gz: MultiGzDecoder::new(Vec::new()),
        rows: RowParser::new(Arc::from(file.key.as_str()), cols, want.clone()),
    };
    let mut offset = 0;
    while offset < file.size {
        let end = (offset + CHUNK_BYTES).min(file.size);
        let bytes = store
            .get_range(&file.key, offset..end)
            .await
            .map_err(storage_err(&file.key))?;
        offset += bytes.len() as u64;
        decode = blocking(move || decode.chunk(&bytes).map(|()| decode)).await?;
        if offset < end {
            break; // the object is shorter than the manifest says
        }
    }
    if offset != file.size {
        return Err(InventoryError::SizeMismatch {
            key: file.key.clone(),
            expected: file.size,
            actual: offset,
        });
    }
    let expected = file.md5.clone();
    blocking(move || decode.finish(expected)).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, InventoryError> + Send + 'static,
) -> Result<T, InventoryError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        // Only a bug in the decoder panics: pass it on as it was.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The state of one data file's decoding between chunks.
struct Decode {
    md5: Md5,
    gz: MultiGzDecoder<Vec<u8>>,
    rows: RowParser,
}

impl Decode {
    fn gz_err(&self, source: std::io::Error) -> InventoryError {
        InventoryError::Gzip {
            key: self.rows.file.to_string(),
            source,
        }
    }

    fn chunk(&mut self, bytes: &[u8]) -> Result<(), InventoryError> {
        self.md5.update(bytes);
        for piece in bytes.chunks(FEED_BYTES) {
            if let Err(e) = self.gz.write_all(piece) {
                return Err(self.gz_err(e));
            }
            self.rows.feed(&std::mem::take(self.gz.get_mut()))?;
        }
        Ok(())
    }

    /// The rows kept, and how many current rows were outside the prefixes.
    fn finish(mut self, expected_md5: String) -> Result<(Vec<ObjectInfo>, u64), InventoryError> {
        let actual = hex::encode(self.md5.finalize_reset());
        if actual != expected_md5 {
            return Err(InventoryError::ChecksumMismatch {
                key: self.rows.file.to_string(),
                expected: expected_md5,
                actual,
            });
        }
        // A file cut short (with a manifest that agrees) ends here: no gzip
        // trailer.
        if let Err(e) = self.gz.try_finish() {
            return Err(self.gz_err(e));
        }
        self.rows.feed(&std::mem::take(self.gz.get_mut()))?;
        self.rows.finish()
    }
}

/// A push CSV parser: decompressed bytes go in as they come, rows come out
/// as [`ObjectInfo`]s.
struct RowParser {
    file: Arc<str>,
    cols: Columns,
    want: Want,
    /// Current rows outside the prefixes.
    outside: u64,
    rdr: csv_core::Reader,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    n_ends: usize,
    row: u64,
    objects: Vec<ObjectInfo>,
}

impl RowParser {
    fn new(file: Arc<str>, cols: Columns, want: Want) -> Self {
        RowParser {
            file,
            cols,
            want,
            outside: 0,
            rdr: csv_core::Reader::new(),
            out: vec![0; 1024],
            out_len: 0,
            ends: vec![0; cols.count.max(1)],
            n_ends: 0,
            row: 0,
            objects: Vec::new(),
        }
    }

    fn feed(&mut self, input: &[u8]) -> Result<(), InventoryError> {
        // csv-core takes empty input for the end of the data.
        if input.is_empty() {
            Ok(())
        } else {
            self.run(input)
        }
    }

    fn finish(mut self) -> Result<(Vec<ObjectInfo>, u64), InventoryError> {
        self.run(&[])?;
        Ok((self.objects, self.outside))
    }

    fn bad(&self, reason: impl Into<String>) -> InventoryError {
        InventoryError::BadRow {
            key: self.file.to_string(),
            row: self.row,
            reason: reason.into(),
        }
    }

    fn run(&mut self, mut input: &[u8]) -> Result<(), InventoryError> {
        use csv_core::ReadRecordResult as R;
        loop {
            let (res, nin, nout, nend) = self.rdr.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.n_ends..],
            );
            input = &input[nin..];
            self.out_len += nout;
            self.n_ends += nend;
            match res {
                R::InputEmpty | R::End => return Ok(()),
                R::OutputFull if self.out.len() >= MAX_ROW_BYTES => {
                    self.row += 1;
                    return Err(self.bad(format!("longer than {MAX_ROW_BYTES} bytes")));
                }
                R::OutputFull => self.out.resize(self.out.len() * 2, 0),
                R::OutputEndsFull if self.ends.len() >= MAX_FIELDS => {
                    self.row += 1;
                    return Err(self.bad(format!("more than {MAX_FIELDS} fields")));
                }
                R::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                R::Record => {
                    self.row += 1;
                    let row = self.record()?;
                    self.objects.extend(row);
                    self.out_len = 0;
                    self.n_ends = 0;
                }
            }
        }
    }

    fn field(&self, i: usize) -> Result<&str, InventoryError> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        std::str::from_utf8(&self.out[start..self.ends[i]])
            .map_err(|_| self.bad(format!("field {} is not UTF-8", i + 1)))
    }

    /// The object a row stands for, if it is current and under a prefix.
    fn record(&mut self) -> Result<Option<ObjectInfo>, InventoryError> {
        let c = self.cols;
        if self.n_ends == 1 && self.out_len == 0 {
            return Ok(None); // a blank line
        }
        if self.n_ends != c.count {
            return Err(self.bad(format!(
                "{} fields, the fileSchema names {}",
                self.n_ends, c.count
            )));
        }
        if let Some(i) = c.bucket
            && self.field(i)?.trim() != &*self.want.bucket
        {
            return Err(self.bad(format!(
                "a row of bucket {:?}, the manifest says {:?}",
                self.field(i)?.trim(),
                self.want.bucket
            )));
        }
        let flag = |i: Option<usize>| -> Result<Option<bool>, InventoryError> {
            i.map(|i| self.field(i).map(|v| v.trim().eq_ignore_ascii_case("true")))
                .transpose()
        };
        if flag(c.is_delete_marker)? == Some(true) || flag(c.is_latest)? == Some(false) {
            return Ok(None);
        }
        let key = decode_form_key(self.field(c.key)?)
            .ok_or_else(|| self.bad("the key's escapes are not UTF-8"))?;
        if key.is_empty() {
            return Err(self.bad("an empty key"));
        }
        if !self.want.covers(&key) {
            self.outside += 1;
            return Ok(None);
        }
        let size = self.field(c.size)?.trim();
        let size = size
            .parse::<u64>()
            .map_err(|_| self.bad(format!("Size {size:?} is not a number")))?;
        let etag = self.field(c.etag)?.trim();
        // S3's listings quote ETags; the inventory does not.
        let etag = match etag {
            "" => None,
            e if e.starts_with('"') => Some(e.into()),
            e => Some(format!("\"{e}\"").into_boxed_str()),
        };
        let last_modified = match c.last_modified {
            Some(i) => parse_date(self.field(i)?.trim()).map_err(|r| self.bad(r))?,
            None => None,
        };
        Ok(Some(ObjectInfo {
            key,
            size,
            etag,
            last_modified,
        }))
    }
}

/// `2016-11-06T21:32:05.000Z` to seconds since the epoch.
fn parse_date(s: &str) -> Result<Option<i64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|e| format!("LastModifiedDate {s:?}: {e}"))
}

/// The objects of a report under the prefixes it was read for, sorted by
/// key bytes (as S3 lists), one entry per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    objects: Vec<ObjectInfo>,
    /// Current objects of the report outside the prefixes, left out.
    pub outside: u64,
}

impl Listing {
    /// Sorts, and keeps the newest row of a key listed twice (a report is
    /// an eventually consistent snapshot).
    fn from_unsorted(mut objects: Vec<ObjectInfo>) -> Self {
        objects.sort_unstable_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then(b.last_modified.cmp(&a.last_modified))
        });
        objects.dedup_by(|later, first| later.key == first.key);
        objects.shrink_to_fit();
        Listing {
            objects,
            outside: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub fn objects(&self, prefix: &str) -> &[ObjectInfo] {
        &self.objects[self.range(prefix)]
    }

    /// Keys under one prefix are one contiguous run of the sorted list:
    /// every key after the run that is not under the prefix is greater
    /// than all keys in it.
    fn range(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self.objects.partition_point(|o| o.key.as_str() < prefix);
        let len = self.objects[start..].partition_point(|o| o.key.starts_with(prefix));
        start..start + len
    }

    /// [`objects`](Self::objects) in pages of `page_size` (at least 1):
    /// ascending and non-overlapping, like a store's listing pages.
    pub fn pages(
        &self,
        prefix: &str,
        page_size: usize,
    ) -> impl Iterator<Item = Vec<ObjectInfo>> + '_ {
        self.objects(prefix)
            .chunks(page_size.max(1))
            .map(<[ObjectInfo]>::to_vec)
    }

    /// The pages as a stream of the same type as
    /// [`Store::list`](crate::storage::Store::list), for code that takes a
    /// listing from either.
    pub fn list(
        self: &Arc<Self>,
        prefix: &str,
        page_size: usize,
    ) -> BoxStream<'static, storage::Result<Vec<ObjectInfo>>> {
        let this = Arc::clone(self);
        let std::ops::Range { start, end } = this.range(prefix);
        let n = page_size.max(1);
        futures::stream::iter((start..end).step_by(n))
            .map(move |i| Ok(this.objects[i..(i + n).min(end)].to_vec()))
            .boxed()
    }
}
