//! An opened bucket: the store, its index when there is one, and the rules
//! every front end reads it by (key layout, review rule), built once.
//!
//! Front ends list, select, refresh and look up only through [`Bucket`];
//! only this module (and `config`, which finds the index file) knows
//! whether an index answers or a fresh audit of the bucket does. Either
//! way the rows are the same: `tests/index.rs` holds the two side by side.
//! With an index every write goes through [`crate::index::IndexedStore`],
//! so the index sees what any front end writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::catalog::{Assessed, Filter, Lookup, Selected, Selection, audit, find_metadata};
use crate::contract::Layout;
use crate::status::ReviewRule;
use crate::storage::{DynStore, StorageError};

#[cfg(feature = "index")]
use crate::index::{
    Index, IndexError,
    query::{self, Query},
    refresh::{Progress, RefreshOptions, RefreshStats},
};

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[cfg(feature = "index")]
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl BucketError {
    /// The storage error underneath, for callers that tell a missing bucket
    /// or a denied access from a passing failure.
    pub fn into_storage(self) -> StorageError {
        match self {
            BucketError::Storage(e) => e,
            #[cfg(feature = "index")]
            BucketError::Index(IndexError::Storage(e)) => e,
            #[cfg(feature = "index")]
            BucketError::Index(e) => StorageError::Other {
                message: e.to_string(),
            },
        }
    }
}

/// Where a refresh reports progress (a CLI's bar; nothing in the TUI).
#[cfg(feature = "index")]
pub trait RefreshReport: Send + Sync {
    fn progress(&self, p: Progress);
    /// The refresh ended, done or failed.
    fn finished(&self);
}

#[cfg(feature = "index")]
pub(crate) type DynReport = Arc<dyn RefreshReport>;

/// A bucket opened for reading and writing; cheap to clone.
#[derive(Clone)]
pub struct Bucket {
    store: DynStore,
    layout: Layout,
    review: ReviewRule,
    #[cfg(feature = "index")]
    index: Option<Arc<Index>>,
    #[cfg(feature = "index")]
    progress: Option<DynReport>,
}

/// What an audit found besides its rows, known once they are all read.
#[derive(Debug, Clone, Default)]
pub struct Listed(Arc<AtomicU64>);

impl Listed {
    /// Images and orphan documents the bucket holds (not only those shown).
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A row for a screen that keeps its list: the TUI shows what the index
/// holds at once, then only what a refresh changed.
#[derive(Debug)]
pub enum Update {
    /// About this many rows follow (the index knows its size): a screen
    /// makes room once instead of growing as they come.
    Expect(u64),
    /// Rows, new or changed since they were last sent, in key order.
    Rows(Vec<Assessed>),
    /// Keys to drop from the list.
    Gone(Vec<String>),
}

impl Bucket {
    /// A bucket read by fresh audits (no index): tests, the Lambda.
    pub fn new(store: DynStore, layout: Layout, review: ReviewRule) -> Self {
        Bucket {
            store,
            layout,
            review,
            #[cfg(feature = "index")]
            index: None,
            #[cfg(feature = "index")]
            progress: None,
        }
    }

    /// Answers from `index`; every write through [`Bucket::store`] is
    /// recorded in it.
    #[cfg(feature = "index")]
    pub fn with_index(self, index: Arc<Index>) -> Self {
        let store =
            crate::index::IndexedStore::wrap(self.store, index.clone(), self.layout.clone());
        Bucket {
            store,
            index: Some(index),
            ..self
        }
    }

    /// Reports each refresh's progress to `f`.
    #[cfg(feature = "index")]
    pub fn with_progress(self, report: DynReport) -> Self {
        Bucket {
            progress: Some(report),
            ..self
        }
    }

    /// Opens the bucket the settings name, and its index unless
    /// `--no-index`. An index that cannot be opened is not an error: the
    /// note says so and the bucket is read by audits. The note also says
    /// when the index was rebuilt or replaced for this run.
    pub async fn open(
        settings: &crate::config::Settings,
    ) -> Result<(Bucket, Option<String>), StorageError> {
        let store = settings.open_store().await?;
        let bucket = Bucket::new(store, settings.layout.clone(), settings.review_rule());
        #[cfg(feature = "index")]
        let opened = bucket.attach_index(settings).await;
        #[cfg(not(feature = "index"))]
        let opened = (bucket, None);
        Ok(opened)
    }

    /// [`Bucket::open`]'s index, opened on a blocking thread after the
    /// store: the index is the one of the endpoint its client resolved.
    #[cfg(feature = "index")]
    async fn attach_index(self, settings: &crate::config::Settings) -> (Bucket, Option<String>) {
        let opening = tokio::task::spawn_blocking({
            let (settings, store) = (settings.clone(), self.store.clone());
            move || settings.open_index(&store)
        });
        let failed = |e: &dyn std::fmt::Display| Some(format!("working without the index: {e}"));
        match opening.await {
            Ok(Ok(Some((index, note)))) => (self.with_index(index), note),
            Ok(Ok(None)) => (self, None),
            Ok(Err(e)) => (self, failed(&e)),
            Err(e) => (self, failed(&e)),
        }
    }

    /// The store to read and write objects through.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// When an image needs review.
    pub fn review(&self) -> &ReviewRule {
        &self.review
    }

    /// The bucket, for messages ("bucket photos", "folder ./demo").
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// The index, for `imgtag index`'s own report; everything else asks
    /// the bucket.
    #[cfg(feature = "index")]
    pub fn index(&self) -> Option<&Arc<Index>> {
        self.index.as_ref()
    }

    /// Brings the index up to date with the bucket (nothing to do without
    /// one): what changed, and the documents that could not be read.
    #[cfg(feature = "index")]
    pub async fn refresh(&self, opts: &RefreshOptions) -> Result<RefreshStats, BucketError> {
        let Some(index) = &self.index else {
            return Ok(RefreshStats::default());
        };
        let report = self.progress.clone();
        let progress = move |p| {
            if let Some(r) = &report {
                r.progress(p);
            }
        };
        let stats =
            crate::index::refresh::refresh(index, &self.store, &self.layout, opts, &progress).await;
        if let Some(r) = &self.progress {
            r.finished();
        }
        Ok(stats?)
    }

    /// The rows `filter` passes, in key order then the orphans: from the
    /// index (refreshed first unless `refresh` is false), else from a fresh
    /// audit. [`Listed`] counts every row, shown or not, once the stream
    /// has ended.
    pub async fn rows(
        &self,
        filter: Filter,
        refresh: bool,
    ) -> Result<(BoxStream<'static, Result<Assessed, BucketError>>, Listed), BucketError> {
        #[cfg(feature = "index")]
        if let Some(index) = &self.index {
            let unreadable = match refresh {
                true => self.refresh(&RefreshOptions::default()).await?.unreadable,
                false => Default::default(),
            };
            let total = query::count_rows(index, &self.layout)?;
            let q = self.query(filter, Arc::new(unreadable));
            let rows = query::rows(index, q).map_err(BucketError::from).boxed();
            return Ok((rows, Listed(Arc::new(AtomicU64::new(total)))));
        }
        let _ = refresh;
        let listed = Listed::default();
        let count = listed.0.clone();
        let rows = audit(self.store.clone(), self.layout.clone(), self.review.clone())
            .map_err(BucketError::from)
            .try_filter(move |a| {
                count.fetch_add(1, Ordering::Relaxed);
                std::future::ready(filter.matches(a))
            })
            .boxed();
        Ok((rows, listed))
    }

    /// The images a selection names, in key order, each with the metadata
    /// key the listing paired. Named keys are taken as they are.
    pub async fn select(&self, selection: &Selection) -> Result<Vec<Selected>, BucketError> {
        let filter = match selection {
            Selection::Keys(keys) => {
                return Ok(keys
                    .iter()
                    .map(|k| Selected {
                        key: k.clone(),
                        metadata_key: None,
                    })
                    .collect());
            }
            Selection::Matching(f) => f.clone(),
            Selection::All => Filter::default(),
        };
        let (rows, _) = self.rows(filter, true).await?;
        rows.try_filter_map(|a| async move {
            Ok(a.image.map(|image| Selected {
                key: image.key,
                metadata_key: a.metadata.map(|m| m.key),
            }))
        })
        .try_collect()
        .await
    }

    /// An image's metadata: at `metadata_key` when the listing paired one,
    /// else at the first candidate key that holds this image's document.
    pub async fn find(
        &self,
        image_key: &str,
        metadata_key: Option<&str>,
    ) -> Result<Lookup, StorageError> {
        find_metadata(&self.store, &self.layout, image_key, metadata_key).await
    }

    /// One image assessed afresh, after a write.
    pub async fn reassess(
        &self,
        image_key: &str,
        metadata_key: Option<&str>,
    ) -> Result<Assessed, StorageError> {
        crate::catalog::reassess(
            &self.store,
            &self.layout,
            image_key,
            metadata_key,
            &self.review,
        )
        .await
    }

    /// Every row for a screen that keeps its list. From the index: what it
    /// holds at once (the first screen does not wait for the bucket), then
    /// a refresh, then only the rows it changed and the keys it found
    /// gone. Without one: a fresh audit. The stream ends at the first
    /// error.
    pub fn updates(&self) -> impl Stream<Item = Result<Update, BucketError>> + Send + use<> {
        #[cfg(feature = "index")]
        if let Some(index) = self.index.clone() {
            return indexed_updates(self.clone(), index).left_stream();
        }
        let rows = audit(self.store.clone(), self.layout.clone(), self.review.clone());
        let rows = batched(rows.map_err(BucketError::from)).map_ok(Update::Rows);
        #[cfg(feature = "index")]
        return rows.right_stream();
        #[cfg(not(feature = "index"))]
        rows
    }

    #[cfg(feature = "index")]
    fn query(
        &self,
        filter: Filter,
        unreadable: Arc<std::collections::HashMap<String, String>>,
    ) -> Query {
        Query {
            layout: self.layout.clone(),
            review: self.review.clone(),
            filter,
            unreadable,
        }
    }
}

/// [`Bucket::updates`] from the index, produced on a task of its own: the
/// channel's bound holds it back while the screen files what it has, and
/// dropping the stream stops it.
#[cfg(feature = "index")]
fn indexed_updates(
    bucket: Bucket,
    index: Arc<Index>,
) -> impl Stream<Item = Result<Update, BucketError>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = send_indexed(&bucket, &index, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|u| (u, rx)) })
}

#[cfg(feature = "index")]
type UpdateTx = tokio::sync::mpsc::Sender<Result<Update, BucketError>>;

#[cfg(feature = "index")]
async fn send_indexed(
    bucket: &Bucket,
    index: &Arc<Index>,
    tx: &UpdateTx,
) -> Result<(), BucketError> {
    use query::{fingerprint, key_hash};
    use std::collections::HashMap;
    // Fingerprints by key hash: 16 bytes a row, not the rows themselves.
    let mut shown = HashMap::new();
    let mut orphans = HashMap::new();
    let expected = query::count_rows(index, &bucket.layout)?;
    if tx.send(Ok(Update::Expect(expected))).await.is_err() {
        return Ok(());
    }
    let q = bucket.query(Filter::default(), Arc::default());
    let mut rows = std::pin::pin!(batched(query::rows(index, q.clone()).err_into()));
    while let Some(batch) = rows.try_next().await? {
        for a in &batch {
            let h = key_hash(a.key());
            shown.insert(h, fingerprint(a));
            if a.image.is_none() {
                orphans.insert(h, a.key().to_string());
            }
        }
        if tx.send(Ok(Update::Rows(batch))).await.is_err() {
            return Ok(());
        }
    }
    let stats = bucket.refresh(&RefreshOptions::default()).await?;
    let q = Query {
        unreadable: Arc::new(stats.unreadable),
        ..q
    };
    let mut rows = std::pin::pin!(batched(query::rows(index, q).err_into()));
    while let Some(mut batch) = rows.try_next().await? {
        batch.retain(|a| {
            let h = key_hash(a.key());
            orphans.remove(&h);
            shown.get(&h) != Some(&fingerprint(a))
        });
        if !batch.is_empty() && tx.send(Ok(Update::Rows(batch))).await.is_err() {
            return Ok(());
        }
    }
    // Gone: what the refresh dropped, and orphans that are orphans no more.
    let mut keys = stats.removed_keys;
    keys.extend(orphans.into_values());
    if !keys.is_empty() {
        let _ = tx.send(Ok(Update::Gone(keys))).await;
    }
    Ok(())
}

/// Rows in batches of what is ready, at most [`BATCH`]: one message per
/// batch, not per row. A batch ends early at an error, which comes next.
fn batched(
    rows: impl Stream<Item = Result<Assessed, BucketError>> + Send,
) -> impl Stream<Item = Result<Vec<Assessed>, BucketError>> + Send {
    rows.ready_chunks(BATCH).flat_map(|chunk| {
        let mut out = Vec::new();
        let mut batch = Vec::with_capacity(chunk.len());
        for item in chunk {
            match item {
                Ok(a) => batch.push(a),
                Err(e) => {
                    out.push(Ok(std::mem::take(&mut batch)));
                    out.push(Err(e));
                    break;
                }
            }
        }
        if !batch.is_empty() {
            out.push(Ok(batch));
        }
        out.retain(|r| !matches!(r, Ok(b) if b.is_empty()));
        futures::stream::iter(out)
    })
}

/// Rows a batch holds at most.
pub(crate) const BATCH: usize = 1000;
