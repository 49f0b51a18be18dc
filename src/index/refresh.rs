//! Bringing the index up to date with the bucket: both prefixes listed at
//! once and reconciled page by page, then only the documents whose ETag
//! the index has not summarised are read (many in flight), then the
//! pairing is stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use rusqlite::{Connection, params};

use super::{Index, IndexError, identity, kind_code, object_from_row, store_doc, upsert_object};
use crate::catalog::{Catalog, read_metadata};
use crate::contract::{KeyKind, Layout};
use crate::storage::{DynStore, ObjectInfo, StorageError};
use crate::summary::{SummaryRead, summarize};

/// How many documents are read at once by default.
pub const DEFAULT_IN_FLIGHT: usize = 64;

#[derive(Clone)]
pub struct RefreshOptions {
    /// Documents read at once.
    pub in_flight: usize,
    /// Where the keys come from: the store's listing, or an S3 Inventory
    /// report (for buckets past what one listing serves).
    pub inventory: Option<Arc<crate::inventory::Listing>>,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            in_flight: DEFAULT_IN_FLIGHT,
            inventory: None,
        }
    }
}

/// What a refresh found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefreshStats {
    /// Objects listed under both prefixes.
    pub listed: u64,
    /// Objects new, changed (other ETag or size) and gone since the last
    /// refresh.
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    /// The keys gone since the last refresh (images and metadata).
    pub removed_keys: Vec<String>,
    /// Documents read (GET) because the index had no summary of them.
    pub read: u64,
    /// Documents that could not be read this time: key and why.
    pub unreadable: HashMap<String, String>,
}

/// Progress, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Listed(u64),
    Read { done: u64, total: u64 },
}

/// Brings `index` up to date with `store`.
pub async fn refresh(
    index: &Arc<Index>,
    store: &DynStore,
    layout: &Layout,
    opts: &RefreshOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RefreshStats, IndexError> {
    let listed = std::sync::atomic::AtomicU64::new(0);
    let sync = |prefix: String| {
        let (index, listed) = (index.clone(), &listed);
        let pages = match &opts.inventory {
            Some(inv) => inv.list(&prefix, 1000),
            None => store.list(&prefix),
        };
        async move {
            sync_prefix(&index, pages, &prefix, &|n| {
                let total = listed.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress(Progress::Listed(total));
            })
            .await
        }
    };
    let (a, b) = futures::try_join!(
        sync(layout.uploads_prefix().to_string()),
        sync(layout.metadata_prefix().to_string())
    )?;
    let mut stats = RefreshStats {
        listed: listed.into_inner(),
        added: a.added + b.added,
        changed: a.changed + b.changed,
        removed: (a.removed.len() + b.removed.len()) as u64,
        removed_keys: [a.removed, b.removed].concat(),
        ..RefreshStats::default()
    };
    // An unchanged bucket (the usual re-open) needs no document read and
    // no pairing: the listing was the whole refresh. The flag also covers
    // a refresh that stopped half-way or left documents unread.
    let ix = index.clone();
    if !blocking(move || ix.with(|c| is_stale(c))).await? {
        return Ok(stats);
    }
    let gone = read_missing(index, store, layout, opts, progress, &mut stats).await?;
    let (ix, l) = (index.clone(), layout.clone());
    let complete = stats.unreadable.is_empty();
    blocking(move || ix.with(|c| store_pairs(c, &l, &gone, complete))).await?;
    Ok(stats)
}

/// Runs index work on a blocking thread, so the listing streams on.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("index work does not panic")
}

/// Whether objects changed (or documents went unread) since the pairing
/// was last stored.
fn is_stale(c: &Connection) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT 1 FROM info WHERE k = 'stale'")?
        .exists([])
}

/// Marks the pairing out of date, in the transaction that changes objects.
fn mark_stale(c: &Connection) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO info(k, v) VALUES ('stale', '1')")?
        .execute([])?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
struct Diff {
    added: u64,
    changed: u64,
    removed: Vec<String>,
}

/// Lists one prefix, reconciling each page with the index as it comes.
async fn sync_prefix(
    index: &Arc<Index>,
    mut pages: futures::stream::BoxStream<'static, crate::storage::Result<Vec<ObjectInfo>>>,
    prefix: &str,
    listed: &(dyn Fn(u64) + Send + Sync),
) -> Result<Diff, IndexError> {
    // The next page is fetched while this one is reconciled: the listing
    // runs at the store's pace, not the store's plus the index's.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ObjectInfo>>(4);
    let lister = async move {
        while let Some(page) = pages.try_next().await? {
            if tx.send(page).await.is_err() {
                break;
            }
        }
        Ok::<_, IndexError>(())
    };
    let syncer = async {
        let mut after: Option<String> = None;
        let mut diff = Diff::default();
        while let Some(page) = rx.recv().await {
            let Some(last) = page.last().map(|o| o.key.clone()) else {
                continue;
            };
            let ordered = page.windows(2).all(|w| w[0].key < w[1].key)
                && after.as_deref().is_none_or(|a| page[0].key.as_str() > a);
            if !ordered {
                return Err(IndexError::Unordered {
                    prefix: prefix.into(),
                });
            }
            listed(page.len() as u64);
            let (ix, p, a) = (index.clone(), prefix.to_string(), after.take());
            let d = blocking(move || ix.with(|c| sync_page(c, &p, a.as_deref(), &page))).await?;
            diff.added += d.added;
            diff.changed += d.changed;
            diff.removed.extend(d.removed);
            after = Some(last);
        }
        Ok((diff, after))
    };
    let (listing, synced) = tokio::join!(lister, syncer);
    let (mut diff, after) = synced?;
    listing?;
    let (ix, p) = (index.clone(), prefix.to_string());
    let removed = blocking(move || ix.with(|c| sync_tail(c, &p, after.as_deref()))).await?;
    diff.removed.extend(removed);
    Ok(diff)
}

/// The smallest string above every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut s: Vec<char> = prefix.chars().collect();
    while let Some(c) = s.pop() {
        let next = (c as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(n) = next {
            s.push(n);
            return Some(s.into_iter().collect());
        }
    }
    None
}

/// Reconciles one listing page: the index's keys in (after, last] are
/// replaced by the page's.
fn sync_page(
    c: &mut Connection,
    prefix: &str,
    after: Option<&str>,
    page: &[ObjectInfo],
) -> rusqlite::Result<Diff> {
    let last = &page.last().expect("non-empty").key;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // One lower bound only: given two, SQLite seeks to one and filters
    // on the other, and a seek to the prefix scans every earlier page.
    let sql = match after {
        Some(_) => "SELECT key, size, etag FROM objects WHERE key > ?1 AND key <= ?2 ORDER BY key",
        None => "SELECT key, size, etag FROM objects WHERE key >= ?1 AND key <= ?2 ORDER BY key",
    };
    let old: Vec<(String, u64, String)> = tx
        .prepare_cached(sql)?
        .query_map(params![after.unwrap_or(prefix), last], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut diff = Diff::default();
    let mut old = old.into_iter().peekable();
    for obj in page {
        while let Some((k, ..)) = old.next_if(|(k, ..)| k < &obj.key) {
            delete_object(&tx, &k)?;
            diff.removed.push(k);
        }
        match old.next_if(|(k, ..)| *k == obj.key) {
            Some((_, size, etag)) if size == obj.size && same_identity(&etag, obj) => {}
            Some(_) => {
                upsert_object(&tx, obj)?;
                diff.changed += 1;
            }
            None => {
                upsert_object(&tx, obj)?;
                diff.added += 1;
            }
        }
    }
    for (k, ..) in old {
        delete_object(&tx, &k)?;
        diff.removed.push(k);
    }
    if diff.added + diff.changed > 0 || !diff.removed.is_empty() {
        mark_stale(&tx)?;
    }
    tx.commit()?;
    Ok(diff)
}

/// `identity(obj) == stored`, without building the identity string for
/// the usual object with an ETag.
fn same_identity(stored: &str, obj: &ObjectInfo) -> bool {
    match &obj.etag {
        Some(e) if !e.is_empty() => **e == *stored,
        _ => identity(obj) == stored,
    }
}

/// Drops the keys after the last listed one: gone from the bucket.
fn sync_tail(
    c: &mut Connection,
    prefix: &str,
    after: Option<&str>,
) -> rusqlite::Result<Vec<String>> {
    let end = prefix_end(prefix);
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let removed: Vec<String> = tx
        .prepare(match after {
            Some(_) => {
                "DELETE FROM objects WHERE key > ?1 AND (?2 IS NULL OR key < ?2) RETURNING key"
            }
            None => {
                "DELETE FROM objects WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) RETURNING key"
            }
        })?
        .query_map(params![after.unwrap_or(prefix), end], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !removed.is_empty() {
        mark_stale(&tx)?;
    }
    tx.commit()?;
    Ok(removed)
}

fn delete_object(c: &Connection, key: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM objects WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// Metadata objects whose content the index has not summarised.
fn missing_docs(c: &Connection, layout: &Layout) -> rusqlite::Result<Vec<ObjectInfo>> {
    let prefix = layout.metadata_prefix();
    let mut stmt = c.prepare(
        "SELECT key, size, etag, modified FROM objects o \
         WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND key LIKE '%.json' \
         AND NOT EXISTS (SELECT 1 FROM docs d WHERE d.etag = o.etag) ORDER BY key",
    )?;
    let rows = stmt.query_map(params![prefix, prefix_end(prefix)], object_from_row)?;
    rows.filter(|o| {
        o.as_ref()
            .map_or(true, |o| layout.metadata_rest(&o.key).is_some())
    })
    .collect()
}

/// Reads the documents the index lacks, `in_flight` at a time, storing
/// summaries in batches. Returns the keys found deleted meanwhile.
async fn read_missing(
    index: &Arc<Index>,
    store: &DynStore,
    layout: &Layout,
    opts: &RefreshOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
    stats: &mut RefreshStats,
) -> Result<HashSet<String>, IndexError> {
    let mut gone = HashSet::new();
    let (ix, l) = (index.clone(), layout.clone());
    let missing = blocking(move || ix.with(|c| missing_docs(c, &l))).await?;
    let total = missing.len() as u64;
    // Summaries are stored by their own task, so reading never waits on
    // the disk.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(ObjectInfo, Option<SummaryRead>)>>(4);
    let ix = index.clone();
    let storer = tokio::spawn(async move {
        while let Some(done) = rx.recv().await {
            let ix = ix.clone();
            blocking(move || ix.with(|c| store_batch(c, &done))).await?;
        }
        Ok::<_, IndexError>(())
    });
    let mut reads = futures::stream::iter(missing)
        .map(|obj| {
            let store = store.clone();
            async move {
                let r = read_with_backoff(&store, &obj.key).await;
                (obj, r)
            }
        })
        .buffer_unordered(opts.in_flight.max(1))
        .ready_chunks(256);
    while let Some(batch) = reads.next().await {
        let mut done = Vec::with_capacity(batch.len());
        for (obj, r) in batch {
            match r {
                Ok((read, info)) => done.push((info, Some(summarize(&read)))),
                // Deleted since it was listed.
                Err(StorageError::NotFound { .. }) => {
                    gone.insert(obj.key.clone());
                    done.push((obj, None));
                }
                Err(e) => {
                    stats.unreadable.insert(obj.key, e.to_string());
                }
            }
        }
        stats.read += done.len() as u64;
        progress(Progress::Read {
            done: stats.read + stats.unreadable.len() as u64,
            total,
        });
        if tx.send(done).await.is_err() {
            break;
        }
    }
    drop(tx);
    storer.await.expect("the storing task does not panic")?;
    Ok(gone)
}

/// A GET, retried with backoff when the store says to slow down: a
/// refresh of a large bucket is exactly what makes S3 answer SlowDown.
async fn read_with_backoff(
    store: &DynStore,
    key: &str,
) -> Result<(crate::catalog::MetadataRead, ObjectInfo), StorageError> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match read_metadata(store, key).await {
            Err(e @ StorageError::Throttled { .. }) if attempt >= 5 => return Err(e),
            Err(StorageError::Throttled { .. }) => {
                attempt += 1;
                tokio::time::sleep(delay + Duration::from_millis(fastrand::u64(0..50))).await;
                delay *= 2;
            }
            r => return r,
        }
    }
}

/// Stores read documents; `None` means the object is gone.
fn store_batch(
    c: &mut Connection,
    done: &[(ObjectInfo, Option<SummaryRead>)],
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (info, doc) in done {
        match doc {
            // The GET's ETag wins over the listing's: the document may
            // have changed in between, and the summary is of what was read.
            Some(doc) => {
                upsert_object(&tx, info)?;
                store_doc(&tx, &identity(info), doc)?;
            }
            None => delete_object(&tx, &info.key)?,
        }
    }
    if !done.is_empty() {
        mark_stale(&tx)?;
    }
    tx.commit()
}

/// The pairing of every object the index holds: metadata first, so each
/// image pairs as it is added.
fn catalog_of(c: &Connection, layout: &Layout) -> rusqlite::Result<Catalog> {
    let mut catalog = Catalog::new(layout.clone());
    for prefix in [layout.metadata_prefix(), layout.uploads_prefix()] {
        let mut stmt = c.prepare_cached(
            "SELECT key, size, etag, modified FROM objects \
             WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key",
        )?;
        let mut rows = stmt.query_map(params![prefix, prefix_end(prefix)], object_from_row)?;
        loop {
            let page = rows
                .by_ref()
                .take(4096)
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if page.is_empty() {
                break;
            }
            catalog.add_page(page);
        }
    }
    Ok(catalog)
}

/// Pairs the objects the index holds and stores the pairing (only what
/// differs), passing over legacy documents another image claims, then
/// drops summaries no object uses. One transaction: the pairing is of
/// exactly the objects it reads. The stale flag is cleared when every
/// document was read (`complete`).
fn store_pairs(
    c: &mut Connection,
    layout: &Layout,
    gone: &HashSet<String>,
    complete: bool,
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let catalog = catalog_of(&tx, layout)?;
    let mut want: Vec<(&str, &str, KeyKind)> = Vec::with_capacity(catalog.images().len());
    for img in catalog.images() {
        if let Some((m, kind)) = img.meta {
            let meta = &catalog.metadata(m).key;
            if gone.contains(meta) {
                continue;
            }
            if kind == KeyKind::Canonical || !claimed_by_other(&tx, meta, &img.info.key)? {
                want.push((&img.info.key, meta, kind));
            }
        }
    }
    want.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (upserts, deletes) = pairs_diff(&tx, &want)?;
    for (image, meta, kind) in upserts {
        tx.prepare_cached("INSERT OR REPLACE INTO pairs(image, meta, kind) VALUES (?1, ?2, ?3)")?
            .execute(params![image, meta, kind_code(kind)])?;
    }
    for image in deletes {
        tx.prepare_cached("DELETE FROM pairs WHERE image = ?1")?
            .execute([image])?;
    }
    tx.execute(
        "DELETE FROM docs WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.etag = docs.etag)",
        [],
    )?;
    tx.execute(
        "DELETE FROM doc_names WHERE doc NOT IN (SELECT id FROM docs)",
        [],
    )?;
    if complete {
        tx.execute("DELETE FROM info WHERE k = 'stale'", [])?;
    }
    tx.commit()
}

type Pair<'a> = (&'a str, &'a str, KeyKind);

/// A merge of two sorted lists, what is stored against what is wanted:
/// the pairs to write and the images to unpair.
fn pairs_diff<'a>(
    c: &Connection,
    want: &[Pair<'a>],
) -> rusqlite::Result<(Vec<Pair<'a>>, Vec<String>)> {
    let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
    let mut stmt = c.prepare("SELECT image, meta, kind FROM pairs ORDER BY image")?;
    let mut have = stmt.query([])?;
    let mut want = want.iter().peekable();
    while let Some(r) = have.next()? {
        let image: String = r.get(0)?;
        while let Some(w) = want.next_if(|w| w.0 < image.as_str()) {
            upserts.push(*w);
        }
        match want.next_if(|w| w.0 == image.as_str()) {
            Some(w) if r.get_ref(1)?.as_str()? == w.1 && r.get::<_, i64>(2)? == kind_code(w.2) => {}
            Some(w) => upserts.push(*w),
            None => deletes.push(image),
        }
    }
    upserts.extend(want.copied());
    Ok((upserts, deletes))
}

/// Whether the legacy document at `meta` names another image as its own.
fn claimed_by_other(c: &Connection, meta: &str, image: &str) -> rusqlite::Result<bool> {
    let summary: Option<Option<String>> = rusqlite::OptionalExtension::optional(
        c.prepare_cached(
            "SELECT d.summary FROM objects o JOIN docs d ON d.etag = o.etag WHERE o.key = ?1",
        )?
        .query_row([meta], |r| r.get(0)),
    )?;
    let doc = super::summary_from(summary.flatten(), None);
    Ok(matches!(doc, Some(Ok(s)) if s.source_key.as_deref().is_some_and(|k| k != image)))
}
