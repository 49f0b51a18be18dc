//! Bringing the index up to date with the bucket: both prefixes listed at
//! once and reconciled page by page, then only the documents whose ETag
//! the index has not summarised are read (many in flight), then the
//! pairing is stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rusqlite::{Connection, params};

use super::{
    Index, IndexError, StoredTag, Tag, delete_object, identity, kind_code, object_from_row,
    store_doc, store_pair, upsert_object,
};
use crate::catalog::{Catalog, read_metadata};
use crate::contract::{KeyKind, Layout};
use crate::storage::{DynStore, ObjectInfo, StorageError};
use crate::summary::{SummaryRead, summarize};

/// How many documents are read at once by default.
pub const DEFAULT_IN_FLIGHT: usize = 64;
/// How many listing requests run at once by default (key ranges listed
/// side by side, over both prefixes).
pub(crate) const DEFAULT_LIST_CONCURRENCY: usize = 32;
/// The most keys one listed key range holds by default: ten pages.
pub(crate) const DEFAULT_RANGE_KEYS: usize = 10_000;
/// Attempts in a row at one key range whose listing keeps failing without
/// getting further (each resumes after the last key reconciled), beyond
/// the SDK's own retries (which stop once its retry quota is spent, as it
/// is when many requests are throttled): a probed listing runs many
/// ranges, and one giving up fails the refresh.
const RANGE_ATTEMPTS: u32 = 10;

#[derive(Clone)]
pub struct RefreshOptions {
    /// Documents read at once.
    pub in_flight: usize,
    /// Where the keys come from: the store's listing, or an S3 Inventory
    /// report (for buckets past what one listing serves).
    pub inventory: Option<Arc<crate::inventory::Listing>>,
    /// Listing requests at once: a store that seeks ([`Store::seeks`])
    /// has each prefix split into key ranges listed side by side.
    ///
    /// [`Store::seeks`]: crate::storage::Store::seeks
    pub list_concurrency: usize,
    /// The most keys a key range holds (the boundaries are taken from the
    /// keys the index holds under the prefix, about `list_concurrency`
    /// ranges a prefix, none under a page).
    pub range_keys: usize,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            in_flight: DEFAULT_IN_FLIGHT,
            inventory: None,
            list_concurrency: DEFAULT_LIST_CONCURRENCY,
            range_keys: DEFAULT_RANGE_KEYS,
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
    /// How long documents were being read (from the first GET sent to the
    /// last answered), for a rate.
    pub read_time: Duration,
}

/// Progress, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Listed(u64),
    Read { done: u64, total: u64 },
}

/// Brings `index` up to date with `store`. Documents are read while the
/// listing runs: each reconciled metadata page hands its new or changed
/// documents to the readers at once.
pub async fn refresh(
    index: &Arc<Index>,
    store: &DynStore,
    layout: &Layout,
    opts: &RefreshOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RefreshStats, IndexError> {
    // Writes numbered after this are newer than anything this refresh
    // lists or reads: it leaves them alone.
    let ix = index.clone();
    let since = blocking(move || ix.with(|c| writes_begun(c))).await?;
    let listed = AtomicU64::new(0);
    let queued = AtomicU64::new(0);
    let (want_tx, want_rx) = tokio::sync::mpsc::unbounded_channel();
    let limiter = Limiter::new(opts.list_concurrency);
    let sync = |prefix: String, want: Option<Want>| {
        let (index, listed, queued, limiter) = (index.clone(), &listed, &queued, &limiter);
        async move {
            let want = want.map(|tx| (layout, tx, queued));
            let count = |n| {
                let total = listed.fetch_add(n, Ordering::Relaxed) + n;
                progress(Progress::Listed(total));
            };
            let ctx = SyncCtx {
                index: &index,
                prefix: &prefix,
                want: want.as_ref(),
                since,
                listed: &count,
            };
            match &opts.inventory {
                Some(inv) => ctx.once(inv.list(&prefix, 1000)).await,
                None => sync_ranges(&ctx, store, opts, limiter).await,
            }
        }
    };
    let listing = async {
        futures::try_join!(
            sync(layout.uploads_prefix().to_string(), None),
            // The sender goes with this prefix's listing: the readers stop
            // when it is done and they have read what it sent.
            sync(layout.metadata_prefix().to_string(), Some(want_tx))
        )
    };
    let reading = read_docs(index, store, opts, (want_rx, since), &queued, progress);
    let ((a, b), mut reads) = futures::try_join!(listing, reading)?;
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
        reads.add_to(&mut stats);
        return Ok(stats);
    }
    // Documents unread from before (an interrupted refresh), not those
    // this one already tried.
    let (ix, l) = (index.clone(), layout.clone());
    let tried: HashSet<String> = reads.unreadable.keys().cloned().collect();
    let missing = blocking(move || ix.with(|c| missing_docs(c, &l, &tried))).await?;
    if !missing.is_empty() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        queued.fetch_add(missing.len() as u64, Ordering::Relaxed);
        for obj in missing {
            let _ = tx.send(obj);
        }
        drop(tx);
        let more = read_docs(index, store, opts, (rx, since), &queued, progress).await?;
        reads.merge(more);
    }
    let gone = std::mem::take(&mut reads.gone);
    reads.add_to(&mut stats);
    let (ix, l) = (index.clone(), layout.clone());
    let complete = stats.unreadable.is_empty();
    blocking(move || {
        ix.with(|c| {
            store_pairs(c, &l, &gone, complete)?;
            checkpoint(c)
        })
    })
    .await?;
    Ok(stats)
}

/// Copies the write-ahead log into the database after a refresh that
/// wrote: a reader then reads the database alone instead of looking each
/// page up in a log of a million rows' changes (a label query ran several
/// times slower with the log in place). Passive: it never waits for a
/// reader of another process.
fn checkpoint(c: &Connection) -> rusqlite::Result<()> {
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// Where a metadata prefix's listing sends the documents to read: the
/// layout (which keys are documents), the readers' queue, and the count
/// queued (for progress).
type Want = tokio::sync::mpsc::UnboundedSender<ObjectInfo>;
type WantTo<'a> = (&'a Layout, Want, &'a AtomicU64);

/// Runs index work on a blocking thread, so the listing streams on.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("index work does not panic")
}

/// The number of the last write-through so far, after dropping the
/// numbers of writes a day old (no refresh runs that long).
fn writes_begun(c: &Connection) -> rusqlite::Result<i64> {
    let since = c.query_row("SELECT coalesce(max(seq), 0) FROM writes", [], |r| r.get(0))?;
    let day_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 86_400;
    c.prepare_cached("DELETE FROM writes WHERE seq <= ?1 AND at < ?2")?
        .execute(params![since, day_ago])?;
    Ok(since)
}

/// Whether `key` was written through the index after write number
/// `since`: what a refresh begun then listed or read of it may be older.
fn written_since(c: &Connection, key: &str, since: i64) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT 1 FROM writes WHERE key = ?1 AND seq > ?2")?
        .exists(params![key, since])
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
    /// New or changed documents the index has no summary of.
    unread: Vec<ObjectInfo>,
}

/// A listing's pages.
type Pages = futures::stream::BoxStream<'static, crate::storage::Result<Vec<ObjectInfo>>>;

/// A key range of a prefix: the keys after `after` (from the prefix's
/// first with `None`) up to and including `until` (to the prefix's last
/// with `None`). Once `long` keys of it are listed, what remains is cut
/// into ranges of their own while requests are free.
#[derive(Debug, Clone, Default, PartialEq)]
struct KeyRange {
    after: Option<String>,
    until: Option<String>,
    long: usize,
}

/// The ranges `bounds` (sorted) cut a prefix into: every key in exactly
/// one.
fn ranges_between(bounds: Vec<String>, long: usize) -> Vec<KeyRange> {
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut after = None;
    for b in bounds {
        ranges.push(KeyRange {
            after: after.replace(b.clone()),
            until: Some(b),
            long,
        });
    }
    ranges.push(KeyRange {
        after,
        until: None,
        long,
    });
    ranges
}

/// Keys a listing page holds (S3's most): a key range is never cut
/// smaller.
const PAGE_KEYS: usize = 1000;

/// Boundaries that cut `prefix` into ranges, at the keys the index holds
/// under it: about `concurrency` ranges, each of at least a page (or
/// `most`, if less) and at most `most` keys. Keys added or removed since
/// only make the ranges uneven: every key still falls in exactly one.
fn boundaries(
    c: &Connection,
    prefix: &str,
    most: usize,
    concurrency: usize,
) -> rusqlite::Result<Vec<String>> {
    let end = prefix_end(prefix);
    let mut stmt = c.prepare_cached(match end {
        Some(_) => "SELECT key FROM objects WHERE key >= ?1 AND key < ?2 ORDER BY key",
        None => "SELECT key FROM objects WHERE key >= ?1 AND ?2 IS NULL ORDER BY key",
    })?;
    let mut rows = stmt.query(params![prefix, end])?;
    // Every `step`-th key in one pass, then as many of them as make
    // ranges of the size wanted.
    let most = most.max(1);
    let step = most.min(PAGE_KEYS);
    let (mut fine, mut n) = (Vec::new(), 0usize);
    while let Some(r) = rows.next()? {
        n += 1;
        if n.is_multiple_of(step) {
            fine.push(r.get::<_, String>(0)?);
        }
    }
    let keys = (n / concurrency.max(1)).clamp(step, most);
    let every = (keys / step).max(1);
    Ok(fine.into_iter().skip(every - 1).step_by(every).collect())
}

/// Listing requests at once, one fewer each time the store says to slow
/// down (down to one).
struct Limiter {
    sem: tokio::sync::Semaphore,
    permits: std::sync::atomic::AtomicUsize,
    /// Permits to drop as they come back.
    owed: std::sync::atomic::AtomicUsize,
}

impl Limiter {
    fn new(n: usize) -> Self {
        let n = n.max(1);
        Limiter {
            sem: tokio::sync::Semaphore::new(n),
            permits: n.into(),
            owed: 0.into(),
        }
    }

    async fn acquire(&self) -> tokio::sync::SemaphorePermit<'_> {
        loop {
            let permit = self.sem.acquire().await.expect("never closed");
            let owed = self
                .owed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            match owed {
                Ok(_) => permit.forget(),
                Err(_) => return permit,
            }
        }
    }

    fn slow_down(&self) {
        let fewer = self
            .permits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > 1).then(|| n - 1)
            });
        if fewer.is_ok() {
            self.owed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What reconciling one prefix needs.
struct SyncCtx<'a> {
    index: &'a Arc<Index>,
    prefix: &'a str,
    want: Option<&'a WantTo<'a>>,
    since: i64,
    listed: &'a (dyn Fn(u64) + Send + Sync),
}

/// Cuts what remains of a long range into ranges of their own (sent to
/// [`sync_ranges`]), as many as requests are free.
struct Splitter {
    tx: tokio::sync::mpsc::UnboundedSender<KeyRange>,
    /// Ranges not done yet (listing or waiting for a request).
    active: std::sync::atomic::AtomicUsize,
    /// Requests at once.
    most: usize,
}

impl Splitter {
    /// After `page` of a range that ends at `until`: the rest is cut at
    /// points spread over the keys ([`super::probe::cuts`]); the range
    /// keeps the first piece (`until` moves), the others are sent as new
    /// ranges, cut in turn once `long` of their keys are listed.
    fn split(
        &self,
        prefix: &str,
        page: &[ObjectInfo],
        until: &std::sync::Mutex<Option<String>>,
        long: usize,
    ) {
        let free = self
            .most
            .saturating_sub(self.active.load(Ordering::Relaxed));
        let Some(last) = page.last() else { return };
        if free == 0 {
            return;
        }
        let mut until = until.lock().expect("not poisoned");
        let seen = page.iter().map(|o| o.key.as_str());
        let cuts = super::probe::cuts(prefix, &last.key, until.as_deref(), seen, free.min(16) + 1);
        let Some(first) = cuts.first().cloned() else {
            return;
        };
        let mut rest = ranges_between(cuts, long);
        rest.remove(0);
        if let Some(r) = rest.last_mut() {
            r.until = until.replace(first);
        }
        self.active.fetch_add(rest.len(), Ordering::Relaxed);
        for r in rest {
            // The receiver lives as long as the listing.
            let _ = self.tx.send(r);
        }
    }
}

/// Lists one prefix and reconciles it with the index: a store that seeks
/// has the prefix cut into key ranges at the keys the index holds, listed
/// side by side (at most `limiter`'s requests at once), each reconciled
/// page by page; a range still long after a page (the index did not know
/// the prefix, or it grew) has its rest cut off into ranges of their own.
/// A range whose listing fails is listed again alone, from the last key
/// it reconciled.
async fn sync_ranges(
    ctx: &SyncCtx<'_>,
    store: &DynStore,
    opts: &RefreshOptions,
    limiter: &Limiter,
) -> Result<Diff, IndexError> {
    use futures::StreamExt;
    let ranges = if store.seeks() {
        let (ix, p) = (ctx.index.clone(), ctx.prefix.to_string());
        let (most, conc) = (opts.range_keys, opts.list_concurrency);
        let bounds = blocking(move || ix.with(|c| boundaries(c, &p, most, conc))).await?;
        // Without keys to cut at (the first open), the prefix is probed:
        // cut after its first page.
        let long = if bounds.is_empty() {
            PAGE_KEYS.min(most)
        } else {
            most
        };
        ranges_between(bounds, long)
    } else {
        vec![KeyRange {
            long: usize::MAX,
            ..KeyRange::default()
        }]
    };
    let (tx, mut cut) = tokio::sync::mpsc::unbounded_channel();
    let splitter = Splitter {
        tx,
        active: ranges.len().into(),
        most: opts.list_concurrency,
    };
    let mut running: futures::stream::FuturesUnordered<_> = ranges
        .into_iter()
        .map(|r| ctx.retried(store, r, limiter, &splitter))
        .collect();
    let mut diff = Diff::default();
    loop {
        let done = tokio::select! {
            biased;
            Some(r) = cut.recv() => {
                running.push(ctx.retried(store, r, limiter, &splitter));
                continue;
            }
            done = running.next() => done,
        };
        let Some(d) = done else {
            // A range sends its cuts before it is done.
            match cut.try_recv() {
                Ok(r) => running.push(ctx.retried(store, r, limiter, &splitter)),
                Err(_) => break,
            }
            continue;
        };
        let d = d?;
        splitter.active.fetch_sub(1, Ordering::Relaxed);
        diff.added += d.added;
        diff.changed += d.changed;
        diff.removed.extend(d.removed);
    }
    Ok(diff)
}

impl SyncCtx<'_> {
    /// Lists `range` (again after a failure, from the last key
    /// reconciled, backing off) and reconciles it.
    async fn retried(
        &self,
        store: &DynStore,
        range: KeyRange,
        limiter: &Limiter,
        splitter: &Splitter,
    ) -> Result<Diff, IndexError> {
        let mut diff = Diff::default();
        let mut after = range.after;
        let until = std::sync::Mutex::new(range.until);
        let mut attempt = 0;
        loop {
            let permit = limiter.acquire().await;
            let from = after.clone();
            let pages = store.list_after(self.prefix, after.as_deref());
            let split = (range.long < usize::MAX).then_some((splitter, range.long));
            let r = self
                .pages(pages, &mut after, &until, split, &mut diff)
                .await;
            drop(permit);
            match r {
                Ok(()) => break,
                Err(IndexError::Storage(e)) if e.is_transient() && attempt + 1 < RANGE_ATTEMPTS => {
                    if matches!(e, StorageError::Throttled { .. }) {
                        limiter.slow_down();
                    }
                    // Attempts count failures in a row: a long range
                    // that moved on since its last failure starts again.
                    attempt = if after == from { attempt + 1 } else { 1 };
                    tracing::debug!(prefix = self.prefix, attempt, error = %e, "listing a key range again");
                    let pause =
                        Duration::from_millis((50u64 << attempt).min(2_000) + fastrand::u64(0..50));
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
        // The range ends where the last cut left it.
        let until = until.into_inner().expect("not poisoned");
        self.tail(after, until, &mut diff).await?;
        Ok(diff)
    }

    /// Lists `pages` (a listing of one range) in one go and reconciles
    /// it: an inventory report, read once.
    async fn once(&self, pages: Pages) -> Result<Diff, IndexError> {
        let (mut diff, mut after) = (Diff::default(), None);
        let until = std::sync::Mutex::new(None);
        self.pages(pages, &mut after, &until, None, &mut diff)
            .await?;
        self.tail(after, None, &mut diff).await?;
        Ok(diff)
    }

    /// Reconciles each page of `pages` with the index as it comes, up to
    /// the key `until`; `after` follows the last key reconciled, where a
    /// listing that failed resumes. With `split`, once that many keys are
    /// listed, the rest of the range may be cut off after each page
    /// (`until` moves nearer).
    async fn pages(
        &self,
        mut pages: Pages,
        after: &mut Option<String>,
        until: &std::sync::Mutex<Option<String>>,
        split: Option<(&Splitter, usize)>,
        diff: &mut Diff,
    ) -> Result<(), IndexError> {
        let (index, prefix, want, since) = (self.index, self.prefix, self.want, self.since);
        // The next page is fetched while this one is reconciled: the
        // listing runs at the store's pace, not the store's plus the
        // index's.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ObjectInfo>>(4);
        let lister = async move {
            let mut listed = 0;
            while let Some(mut page) = pages.try_next().await? {
                let (end, past) = page_end(&page, until.lock().expect("not poisoned").as_deref());
                listed += end;
                if let Some((splitter, long)) = split
                    && !past
                    && listed >= long
                {
                    splitter.split(prefix, &page, until, long);
                }
                page.truncate(end);
                if !page.is_empty() && tx.send(page).await.is_err() {
                    break;
                }
                if past {
                    break;
                }
            }
            Ok::<_, IndexError>(())
        };
        let syncer = async {
            while let Some(page) = rx.recv().await {
                let Some(last) = page.last().map(|o| o.key.clone()) else {
                    continue;
                };
                let ordered = page.windows(2).all(|w| w[0].key < w[1].key)
                    && after.as_deref().is_none_or(|a| page[0].key.as_str() > a)
                    && page[0].key.starts_with(prefix);
                if !ordered {
                    return Err(IndexError::Unordered {
                        prefix: prefix.into(),
                    });
                }
                (self.listed)(page.len() as u64);
                let (ix, p, a) = (index.clone(), prefix.to_string(), after.clone());
                let layout = want.map(|w| w.0.clone());
                let d = blocking(move || {
                    ix.with(|c| sync_page(c, &p, a.as_deref(), &page, layout.as_ref(), since))
                })
                .await?;
                diff.added += d.added;
                diff.changed += d.changed;
                diff.removed.extend(d.removed);
                if let Some((_, tx, queued)) = want {
                    queued.fetch_add(d.unread.len() as u64, Ordering::Relaxed);
                    for obj in d.unread {
                        // The readers are gone only when the refresh failed.
                        let _ = tx.send(obj);
                    }
                }
                *after = Some(last);
            }
            Ok(())
        };
        let (listing, synced) = tokio::join!(lister, syncer);
        synced?;
        listing
    }

    /// Drops the keys in the range after the last one listed: gone from
    /// the bucket.
    async fn tail(
        &self,
        after: Option<String>,
        until: Option<String>,
        diff: &mut Diff,
    ) -> Result<(), IndexError> {
        let (ix, p, since) = (self.index.clone(), self.prefix.to_string(), self.since);
        let removed = blocking(move || {
            ix.with(|c| sync_tail(c, &p, after.as_deref(), until.as_deref(), since))
        })
        .await?;
        diff.removed.extend(removed);
        Ok(())
    }
}

/// How much of `page` falls in a range that ends at `until`, and whether
/// the range ends in it (keys are unique: none follows `until` in it once
/// `until` or a key past it is listed).
fn page_end(page: &[ObjectInfo], until: Option<&str>) -> (usize, bool) {
    let end = until.map_or(page.len(), |u| {
        page.iter()
            .position(|o| o.key.as_str() > u)
            .unwrap_or(page.len())
    });
    let past = end < page.len() || until.is_some_and(|u| page.last().is_some_and(|o| o.key == u));
    (end, past)
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
/// replaced by the page's, but for keys written through the index after
/// write number `since` (the page may have been listed before the write).
/// With the layout (a metadata prefix), the new or changed documents
/// without a summary are returned, to be read.
fn sync_page(
    c: &mut Connection,
    prefix: &str,
    after: Option<&str>,
    page: &[ObjectInfo],
    docs_of: Option<&Layout>,
    since: i64,
) -> rusqlite::Result<Diff> {
    let last = &page.last().expect("non-empty").key;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // One lower bound only: given two, SQLite seeks to one and filters
    // on the other, and a seek to the prefix scans every earlier page.
    let sql = match after {
        Some(_) => "SELECT key, size, etag FROM objects WHERE key > ?1 AND key <= ?2 ORDER BY key",
        None => "SELECT key, size, etag FROM objects WHERE key >= ?1 AND key <= ?2 ORDER BY key",
    };
    let old: Vec<(String, u64, StoredTag)> = tx
        .prepare_cached(sql)?
        .query_map(params![after.unwrap_or(prefix), last], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut diff = Diff::default();
    let mut old = old.into_iter().peekable();
    for obj in page {
        while let Some((k, ..)) = old.next_if(|(k, ..)| k < &obj.key) {
            if !written_since(&tx, &k, since)? {
                delete_object(&tx, &k)?;
                diff.removed.push(k);
            }
        }
        match old.next_if(|(k, ..)| *k == obj.key) {
            Some((_, size, etag)) if size == obj.size && same_identity(&etag.0, obj) => {}
            Some(_) if written_since(&tx, &obj.key, since)? => {}
            Some(_) => {
                upsert_object(&tx, obj)?;
                diff.changed += 1;
                note_unread(&tx, obj, docs_of, &mut diff.unread)?;
            }
            None => {
                upsert_object(&tx, obj)?;
                diff.added += 1;
                note_unread(&tx, obj, docs_of, &mut diff.unread)?;
            }
        }
    }
    for (k, ..) in old {
        if !written_since(&tx, &k, since)? {
            delete_object(&tx, &k)?;
            diff.removed.push(k);
        }
    }
    if diff.added + diff.changed > 0 || !diff.removed.is_empty() {
        mark_stale(&tx)?;
    }
    tx.commit()?;
    Ok(diff)
}

/// Adds `obj` to `unread` if it is a document (by `layout`) whose content
/// the index has not summarised.
fn note_unread(
    c: &Connection,
    obj: &ObjectInfo,
    layout: Option<&Layout>,
    unread: &mut Vec<ObjectInfo>,
) -> rusqlite::Result<()> {
    let Some(layout) = layout else { return Ok(()) };
    if layout.metadata_rest(&obj.key).is_some()
        && !c
            .prepare_cached("SELECT 1 FROM docs WHERE etag = ?1")?
            .exists([Tag(&identity(obj))])?
    {
        unread.push(obj.clone());
    }
    Ok(())
}

/// `identity(obj) == stored`, without building the identity string for
/// the usual object with an ETag.
fn same_identity(stored: &str, obj: &ObjectInfo) -> bool {
    match &obj.etag {
        Some(e) if !e.is_empty() => **e == *stored,
        _ => identity(obj) == stored,
    }
}

/// Drops the keys after the last listed one, up to `until` (to the
/// prefix's end with `None`): gone from the bucket (but for those written
/// after write number `since`).
fn sync_tail(
    c: &mut Connection,
    prefix: &str,
    after: Option<&str>,
    until: Option<&str>,
    since: i64,
) -> rusqlite::Result<Vec<String>> {
    // Plain bounds, no `?n IS NULL OR`: SQLite seeks only on those.
    let lower = if after.is_some() {
        "key > ?1"
    } else {
        "key >= ?1"
    };
    let (upper, end) = match until {
        Some(u) => ("key <= ?2", Some(u.to_string())),
        None => match prefix_end(prefix) {
            Some(e) => ("key < ?2", Some(e)),
            None => ("?2 IS NULL", None),
        },
    };
    let sql = format!(
        "DELETE FROM objects WHERE {lower} AND {upper} \
         AND key NOT IN (SELECT key FROM writes WHERE seq > ?3) RETURNING key"
    );
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let removed: Vec<String> = tx
        .prepare_cached(&sql)?
        .query_map(params![after.unwrap_or(prefix), end, since], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for key in &removed {
        delete_object(&tx, key)?;
    }
    if !removed.is_empty() {
        mark_stale(&tx)?;
    }
    tx.commit()?;
    Ok(removed)
}

/// Metadata objects whose content the index has not summarised, but for
/// those in `tried`.
fn missing_docs(
    c: &Connection,
    layout: &Layout,
    tried: &HashSet<String>,
) -> rusqlite::Result<Vec<ObjectInfo>> {
    let prefix = layout.metadata_prefix();
    let mut stmt = c.prepare(
        "SELECT key, size, etag, modified FROM objects o \
         WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND key LIKE '%.json' \
         AND NOT EXISTS (SELECT 1 FROM docs d WHERE d.etag = o.etag) ORDER BY key",
    )?;
    let rows = stmt.query_map(params![prefix, prefix_end(prefix)], object_from_row)?;
    rows.filter(|o| {
        o.as_ref().map_or(true, |o| {
            layout.metadata_rest(&o.key).is_some() && !tried.contains(&o.key)
        })
    })
    .collect()
}

/// What reading documents found.
#[derive(Debug, Default)]
struct Reads {
    /// Read, or found deleted.
    read: u64,
    unreadable: HashMap<String, String>,
    /// Deleted since they were listed.
    gone: HashSet<String>,
    /// From the first GET sent to the last answered.
    busy: Duration,
}

impl Reads {
    fn merge(&mut self, more: Reads) {
        self.read += more.read;
        self.unreadable.extend(more.unreadable);
        self.gone.extend(more.gone);
        self.busy += more.busy;
    }

    fn add_to(self, stats: &mut RefreshStats) {
        stats.read += self.read;
        stats.unreadable.extend(self.unreadable);
        stats.read_time += self.busy;
    }
}

/// A document read: the object as listed, and the summary of what the GET
/// returned with the object as read, or why not.
type Done = (ObjectInfo, Result<(SummaryRead, ObjectInfo), StorageError>);

/// Reads the documents `want` names as they come, `in_flight` GETs at any
/// moment (each its own task: a slot is refilled the moment its GET is
/// answered), and hands the summaries to one writer that stores them in
/// batches, so no read waits on the disk. Keys written after write number
/// `since` keep what the write stored.
async fn read_docs(
    index: &Arc<Index>,
    store: &DynStore,
    opts: &RefreshOptions,
    (mut want, since): (tokio::sync::mpsc::UnboundedReceiver<ObjectInfo>, i64),
    queued: &AtomicU64,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Reads, IndexError> {
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Done>(8192);
    let writer = tokio::spawn(write_docs(index.clone(), done_rx, since));
    let mut reads = Reads::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut started: Option<Instant> = None;
    let mut open = true;
    let limit = opts.in_flight.max(1);
    loop {
        tokio::select! {
            biased;
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let done: Done = joined.expect("a document read does not panic");
                match &done.1 {
                    Ok(_) => reads.read += 1,
                    Err(StorageError::NotFound { .. }) => {
                        reads.read += 1;
                        reads.gone.insert(done.0.key.clone());
                    }
                    Err(e) => {
                        reads.unreadable.insert(done.0.key.clone(), e.to_string());
                    }
                }
                progress(Progress::Read {
                    done: reads.read + reads.unreadable.len() as u64,
                    total: queued.load(Ordering::Relaxed),
                });
                if done_tx.send(done).await.is_err() {
                    break;
                }
            }
            obj = want.recv(), if open && tasks.len() < limit => match obj {
                Some(obj) => {
                    started.get_or_insert_with(Instant::now);
                    let store = store.clone();
                    tasks.spawn(async move {
                        let r = read_with_backoff(&store, &obj.key)
                            .await
                            .map(|(read, info)| (summarize(&read), info));
                        (obj, r)
                    });
                }
                None => open = false,
            },
            else => break,
        }
    }
    reads.busy = started.map_or(Duration::ZERO, |t| t.elapsed());
    drop(done_tx);
    writer.await.expect("the writer does not panic")?;
    Ok(reads)
}

/// Stores what the readers send, as many at a time as have arrived.
async fn write_docs(
    index: Arc<Index>,
    mut done: tokio::sync::mpsc::Receiver<Done>,
    since: i64,
) -> Result<(), IndexError> {
    while let Some(first) = done.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match done.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let ix = index.clone();
        blocking(move || ix.with(|c| store_batch(c, &batch, since))).await?;
    }
    Ok(())
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

/// Stores read documents; a document not found is deleted, one that
/// could not be read is left for the next refresh. A document written
/// through the index after write number `since` keeps what the write
/// stored: the GET may have been answered before it.
fn store_batch(c: &mut Connection, done: &[Done], since: i64) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (listed, read) in done {
        match read {
            // The GET's ETag wins over the listing's: the document may
            // have changed in between, and the summary is of what was read.
            // The summary first: the pair's `mdoc` is looked up from it.
            Ok((doc, info)) => {
                store_doc(&tx, &identity(info), doc)?;
                if !written_since(&tx, &info.key, since)? {
                    upsert_object(&tx, info)?;
                }
            }
            Err(StorageError::NotFound { .. }) if !written_since(&tx, &listed.key, since)? => {
                delete_object(&tx, &listed.key)?
            }
            Err(_) => {}
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
/// differs), passing over documents another image owns, then
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
    let mut want: Vec<Pair> = Vec::with_capacity(catalog.images().len());
    for img in catalog.images() {
        if let Some((m, kind)) = img.meta {
            let meta = catalog.metadata(m);
            if gone.contains(&meta.key) {
                continue;
            }
            if !claimed_by_other(&tx, layout, &meta.key, &img.info.key)? {
                want.push((&img.info, meta, kind));
            }
        }
    }
    want.sort_unstable_by(|a, b| a.0.key.cmp(&b.0.key));
    let (upserts, deletes) = pairs_diff(&tx, &want)?;
    for (image, meta, kind) in upserts {
        store_pair(&tx, image, meta, kind)?;
    }
    for image in deletes {
        tx.prepare_cached("DELETE FROM pairs WHERE image = ?1")?
            .execute([image])?;
    }
    // One pass over the objects' identities (no index on them: a pass
    // per stale refresh costs less than an index kept on every write).
    let dropped = tx.execute(
        "DELETE FROM docs WHERE etag NOT IN (SELECT etag FROM objects)",
        [],
    )?;
    if dropped > 0 {
        tx.execute(
            "DELETE FROM doc_names WHERE doc NOT IN (SELECT id FROM docs)",
            [],
        )?;
        super::text::drop_orphans(&tx)?;
        // Names only dropped documents used (each an index lookup: the
        // name leads `doc_names`' key).
        tx.execute(
            "DELETE FROM names WHERE id NOT IN (SELECT name FROM doc_names)",
            [],
        )?;
    }
    if complete {
        tx.execute("DELETE FROM info WHERE k = 'stale'", [])?;
    }
    tx.commit()
}

/// An image, its document, and how the document's key was found.
type Pair<'a> = (&'a ObjectInfo, &'a ObjectInfo, KeyKind);

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
        while let Some(w) = want.next_if(|w| w.0.key < image) {
            upserts.push(*w);
        }
        match want.next_if(|w| w.0.key == image) {
            Some(w) if same_pair(r, w)? => {}
            Some(w) => upserts.push(*w),
            None => deletes.push(image),
        }
    }
    upserts.extend(want.copied());
    Ok((upserts, deletes))
}

/// Whether a stored pair (a row of `pairs_diff`'s query) is `want`.
fn same_pair(r: &rusqlite::Row, want: &Pair) -> rusqlite::Result<bool> {
    Ok(r.get_ref(1)?.as_str()? == want.1.key && r.get::<_, i64>(2)? == kind_code(want.2))
}

/// Whether the document at `meta` is another image's
/// ([`Layout::owned_by_other`], the one rule the live audit applies too).
fn claimed_by_other(
    c: &Connection,
    layout: &Layout,
    meta: &str,
    image: &str,
) -> rusqlite::Result<bool> {
    let summary: Option<Option<Vec<u8>>> = rusqlite::OptionalExtension::optional(
        c.prepare_cached(
            "SELECT d.summary FROM objects o JOIN docs d ON d.etag = o.etag WHERE o.key = ?1",
        )?
        .query_row([meta], |r| r.get(0)),
    )?;
    let source_key = summary.flatten().and_then(|s| super::codec::source_key(&s));
    Ok(layout.owned_by_other(meta, source_key.as_deref(), image))
}
