//! The index bench's bucket as a [`Store`] computed on demand, without a
//! server: what `IMGTAG_BENCH_DIRECT=1` builds the index from (the first
//! open through the index's own write path, `refresh`, with no HTTP and
//! no latency), so that 10,000,000 objects fit the machine. Its objects
//! list with the sizes and ETags the in-process server gives the same
//! objects, so the server can then hold the listing alone
//! (`MemS3::insert_listed`) and a re-open against it finds nothing
//! changed.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use imgtag::storage::{Object, ObjectInfo, PutCondition, Result, StorageError, Store, StoreKind};

/// One object per image under `uploads/`, a document for nine in ten
/// under `metadata/2024/` and for the tenth under `metadata/gone/` (an
/// orphan): the bench's bucket, `doc` giving each document's body.
pub struct Synthetic {
    pub bucket: String,
    pub images: usize,
    pub doc: fn(usize) -> String,
}

/// The three runs of keys, each in key order.
#[derive(Clone, Copy)]
enum Run {
    Images,
    Paired,
    Orphans,
}

const RUNS: [Run; 3] = [Run::Images, Run::Paired, Run::Orphans];

impl Run {
    /// The folder every key of the run is in, before its image number.
    fn dir(self) -> &'static str {
        match self {
            Run::Images => "uploads/2024/",
            Run::Paired => "metadata/2024/",
            Run::Orphans => "metadata/gone/",
        }
    }

    /// The image number of the run's `n`th object.
    fn image_of(self, n: usize) -> usize {
        match self {
            Run::Images => n,
            // Every number but the tenths: 1..=9, 11..=19, ...
            Run::Paired => n / 9 * 10 + n % 9 + 1,
            Run::Orphans => n * 10,
        }
    }

    /// The `n`th key of the run.
    fn key(self, n: usize) -> String {
        let i = self.image_of(n);
        match self {
            Run::Images => format!("uploads/2024/{i:07}-photo.jpg"),
            Run::Paired | Run::Orphans => format!("{}{i:07}-photo.jpg.json", self.dir()),
        }
    }
}

impl Synthetic {
    /// Objects in a run.
    fn len(&self, run: Run) -> usize {
        let orphans = self.images.div_ceil(10);
        match run {
            Run::Images => self.images,
            Run::Paired => self.images - orphans,
            Run::Orphans => orphans,
        }
    }

    fn body(&self, run: Run, n: usize) -> String {
        match run {
            Run::Images => "i".into(),
            Run::Paired | Run::Orphans => (self.doc)(run.image_of(n)),
        }
    }

    /// The `n`th object of a run as the server lists it: an MD5 ETag,
    /// quoted.
    fn info(&self, run: Run, n: usize) -> ObjectInfo {
        let body = self.body(run, n);
        ObjectInfo {
            key: run.key(n),
            size: body.len() as u64,
            etag: Some(format!("\"{}\"", crate::s3mem::md5_hex(body.as_bytes())).into()),
            last_modified: Some(1_700_000_000),
        }
    }

    /// The runs under a prefix (one of the layout's, or shorter), in key
    /// order: `metadata/2024/` sorts before `metadata/gone/`.
    fn runs(prefix: &str) -> Vec<Run> {
        RUNS.into_iter()
            .filter(|r| r.dir().starts_with(prefix))
            .collect()
    }

    /// Every object under `prefix`, in key order.
    pub fn each(&self, prefix: &str) -> impl Iterator<Item = ObjectInfo> + '_ {
        Self::runs(prefix)
            .into_iter()
            .flat_map(move |r| (0..self.len(r)).map(move |n| self.info(r, n)))
    }

    /// The first of a run's objects whose key sorts after `after`.
    fn first_after(&self, run: Run, after: &str) -> usize {
        let (mut lo, mut hi) = (0, self.len(run));
        while lo < hi {
            let mid = (lo + hi) / 2;
            if run.key(mid).as_str() <= after {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The run and number of the object with this key.
    fn find(&self, key: &str) -> Option<(Run, usize)> {
        let run = RUNS.into_iter().find(|r| key.starts_with(r.dir()))?;
        let n = self.first_after(run, key).checked_sub(1)?;
        (run.key(n) == key).then_some((run, n))
    }
}

/// The page size S3 lists with.
const PAGE: usize = 1000;

#[async_trait]
impl Store for Synthetic {
    fn kind(&self) -> StoreKind {
        StoreKind::S3
    }

    fn bucket_name(&self) -> &str {
        &self.bucket
    }

    fn describe(&self) -> String {
        format!("synthetic://{}", self.bucket)
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        self.list_after(prefix, None)
    }

    fn seeks(&self) -> bool {
        true
    }

    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        let me = Synthetic {
            bucket: self.bucket.clone(),
            images: self.images,
            doc: self.doc,
        };
        // Where each run's listing starts, last run first (popped as done).
        let mut at: Vec<(Run, usize)> = Self::runs(prefix)
            .into_iter()
            .map(|r| (r, after.map_or(0, |a| self.first_after(r, a))))
            .collect();
        at.reverse();
        let pages = std::iter::from_fn(move || {
            let mut page = Vec::with_capacity(PAGE);
            while page.len() < PAGE {
                let Some((r, n)) = at.last_mut() else { break };
                if *n >= me.len(*r) {
                    at.pop();
                    continue;
                }
                page.push(me.info(*r, *n));
                *n += 1;
            }
            (!page.is_empty()).then_some(Ok(page))
        });
        futures::stream::iter(pages).boxed()
    }

    async fn get(&self, key: &str, _limit: u64) -> Result<Object> {
        let (run, n) = self
            .find(key)
            .ok_or_else(|| StorageError::NotFound { key: key.into() })?;
        let info = self.info(run, n);
        let body = self.body(run, n);
        Ok(Object {
            info,
            body: Bytes::from(body),
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let body = self.get(key, u64::MAX).await?.body;
        let end = (range.end as usize).min(body.len());
        Ok(body.slice((range.start as usize).min(end)..end))
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        Ok(self.get(key, u64::MAX).await?.info)
    }

    async fn put(&self, key: &str, _body: Bytes, _condition: PutCondition) -> Result<String> {
        Err(StorageError::Rejected {
            key: key.into(),
            status: 405,
            message: "the synthetic bucket is read-only".into(),
        })
    }

    async fn delete(&self, key: &str, _if_match: Option<&str>) -> Result<()> {
        Err(StorageError::Rejected {
            key: key.into(),
            status: 405,
            message: "the synthetic bucket is read-only".into(),
        })
    }
}
