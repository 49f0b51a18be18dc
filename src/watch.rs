//! `imgtag watch`: tags new and replaced images as they arrive, through the
//! same pipeline as every other front end, until stopped.
//!
//! - A local folder is watched with file-system notifications on its
//!   uploads folder (polling when notifications are unavailable or asked
//!   for). A file is read only once it has been quiet — same size and
//!   modification time, no event — for the debounce period, so a file still
//!   being written is never read half-way.
//! - Any other store is polled: the uploads prefix is listed every interval
//!   and keys that are new or whose ETag changed are tagged. A failing
//!   listing (a server that went away) is reported and retried with
//!   backoff; polling resumes when the store answers again.
//!
//! The pipeline is idempotent (it compares the image's ETag with the one
//! recorded in the metadata), so a spurious event or a restart costs a
//! metadata read, not a detection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use serde::Serialize;

use crate::bucket::Bucket;
use crate::bulk::{Event, Jobs, Stop};
use crate::catalog::{Filter, Selection};
use crate::clock::now_rfc3339;
use crate::contract::Layout;
use crate::detection::DynDetector;
use crate::outcome::{Outcome, Tally};
use crate::pipeline::TagOptions;
use crate::sanitize::for_terminal;
use crate::status::Status;
use crate::storage::{DynStore, LocalStore, StorageError};
/// Longest wait between listings after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// Neither notifications nor polling could be set up.
    #[error("watching {}: {message}", path.display())]
    Watch { path: PathBuf, message: String },
    /// The store cannot be used at all (missing bucket, access denied).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What is watched.
pub enum WatchSource {
    /// A local folder: notifications on its uploads folder, or polling of
    /// the folder tree every `interval` when `poll` is set (network file
    /// systems, where notifications miss other machines' writes).
    /// `store` is the folder the bucket opened, for its key <-> path
    /// mapping; reads and writes go through the bucket (and its index).
    Folder { store: LocalStore, poll: bool },
    /// Any store, polled by listing the uploads prefix every `interval`.
    Listing,
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub tag: TagOptions,
    /// Between listings (or folder polls).
    pub interval: Duration,
    /// How long a local file must be quiet before it is read.
    pub debounce: Duration,
    /// Images tagged at once.
    pub concurrency: usize,
    /// On start, tag images that are untagged or stale.
    pub initial_scan: bool,
    /// JSON lines instead of text.
    pub json: bool,
}

/// Counts over a watch.
#[derive(Debug, Default, Clone, Serialize)]
pub struct WatchSummary {
    #[serde(flatten)]
    pub tally: Tally,
    pub seconds: f64,
}

impl std::fmt::Display for WatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "watched for {:.1}s: {}", self.seconds, self.tally)
    }
}

/// A local file waiting to be quiet.
struct Pending {
    path: PathBuf,
    /// Size and modification time at the last look.
    sig: Option<(u64, Option<SystemTime>)>,
    /// Last event or observed change.
    changed: Instant,
    /// Not looked at before this (retries wait).
    not_before: Instant,
}

/// What a background scan found.
enum Scan {
    /// Every image under the uploads prefix, with its ETag.
    Listing {
        images: Vec<(String, Option<Box<str>>)>,
        /// Images untagged or stale, from the initial scan.
        initial: Option<Vec<String>>,
    },
    /// Images untagged or stale (a folder's initial scan or rescan).
    Targets(Vec<String>),
}

async fn untagged_or_stale(bucket: &Bucket) -> Result<Vec<String>, StorageError> {
    let sel = Selection::Matching(Filter::statuses(vec![Status::Untagged, Status::Stale]));
    let picked = bucket.select(&sel).await.map_err(|e| e.into_storage())?;
    Ok(picked.into_iter().map(|s| s.key).collect())
}

async fn list_images(
    store: &DynStore,
    layout: &Layout,
) -> Result<Vec<(String, Option<Box<str>>)>, StorageError> {
    let mut out = Vec::new();
    let mut pages = store.list(layout.uploads_prefix());
    while let Some(page) = pages.try_next().await? {
        out.extend(
            page.into_iter()
                .filter(|o| layout.image_rest(&o.key).is_some())
                .map(|o| (o.key, o.etag)),
        );
    }
    Ok(out)
}

/// The wait after `failures` failed listings in a row: doubling from the
/// interval, capped at eight intervals or a minute, whichever is shorter
/// (but never below the interval).
fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = (interval * 8).min(MAX_BACKOFF).max(interval);
    interval.saturating_mul(1u32 << failures.min(16)).min(cap)
}

/// The image key of a path in a local bucket, if it can be one: a key of
/// the store under the uploads prefix.
fn image_key(store: &LocalStore, layout: &Layout, path: &Path) -> Option<String> {
    let key = store.key_for_path(path)?;
    layout.image_rest(&key).is_some().then_some(key)
}

type EventRx = tokio::sync::mpsc::UnboundedReceiver<notify::Result<notify::Event>>;

/// A running watcher, its events, and whether it polls.
type FsWatch = (Box<dyn notify::Watcher + Send>, EventRx, bool);

/// Starts notifications on `dir`, falling back to polling (with a message
/// saying why) when the platform's notifications cannot be had.
fn start_watcher(
    dir: &Path,
    poll: bool,
    interval: Duration,
    err: &mut dyn Write,
) -> Result<FsWatch, WatchError> {
    use notify::Watcher;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = move |ev| {
        let _ = tx.send(ev);
    };
    if !poll {
        let native = notify::recommended_watcher(handler.clone()).and_then(|mut w| {
            w.watch(dir, notify::RecursiveMode::Recursive)?;
            Ok(w)
        });
        match native {
            Ok(w) => return Ok((Box::new(w), rx, false)),
            Err(e) => {
                let hint = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    " (raise the limit with sysctl fs.inotify.max_user_watches)"
                } else {
                    ""
                };
                writeln!(
                    err,
                    "imgtag watch: file-system notifications unavailable: {}{hint}; \
                     polling every {:.1}s instead",
                    for_terminal(&e.to_string()),
                    interval.as_secs_f64()
                )?;
            }
        }
    }
    let config = notify::Config::default().with_poll_interval(interval);
    let mut w = notify::PollWatcher::new(handler, config).map_err(|e| WatchError::Watch {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    w.watch(dir, notify::RecursiveMode::Recursive)
        .map_err(|e| WatchError::Watch {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok((Box::new(w), rx, true))
}

/// The watch loop's state.
struct State<'w> {
    bucket: Bucket,
    /// The bucket's store (through its index, when it has one).
    store: DynStore,
    detector: DynDetector,
    opts: WatchOptions,
    out: &'w mut dyn Write,
    err: &'w mut dyn Write,
    /// A local folder's store (for its key <-> path mapping).
    local: Option<LocalStore>,
    /// File-system notifications on a local folder, the watcher sending
    /// them, and the folder watched with whether it is polled.
    events: Option<EventRx>,
    fs_watcher: Option<Box<dyn notify::Watcher + Send>>,
    watched: Option<(PathBuf, bool)>,
    /// One background scan at a time: a listing (remote store) or a search
    /// for untagged and stale images (a folder's initial scan, or a rescan
    /// after the platform dropped events).
    scan: Option<tokio::task::JoinHandle<Result<Scan, StorageError>>>,
    listed_once: bool,
    /// Failed scans in a row.
    failures: u32,
    /// A local folder: search again (events were lost, or a scan failed).
    rescan: bool,
    next_scan: tokio::time::Instant,
    pending: HashMap<String, Pending>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// The images being tagged, through the one bulk runner (its stop is
    /// set by the first fatal outcome: nothing new is queued).
    jobs: Jobs<Outcome>,
    /// Listing: the ETag each image had when last queued or seen.
    seen: HashMap<String, Option<Box<str>>>,
    /// Listing: images to queue on the next listing whatever their ETag.
    retry: HashSet<String>,
    summary: WatchSummary,
    /// Why outcomes can no longer be written (stdout closed): stop.
    out_error: Option<std::io::Error>,
}

impl<'w> State<'w> {
    /// Starts watching: notifications first (the initial scan comes after,
    /// so nothing that arrives in between is missed).
    fn new(
        bucket: Bucket,
        source: WatchSource,
        detector: DynDetector,
        opts: WatchOptions,
        out: &'w mut dyn Write,
        err: &'w mut dyn Write,
    ) -> Result<Self, WatchError> {
        let store = bucket.store().clone();
        let (local, folder) = match source {
            WatchSource::Folder { store, poll } => {
                let folder = watch_folder(&store, &opts, poll, err)?;
                (Some(store), Some(folder))
            }
            WatchSource::Listing => {
                writeln!(
                    err,
                    "watching {}/{} (listing every {:.1}s); Ctrl-C to stop",
                    for_terminal(&store.describe()),
                    for_terminal(opts.tag.layout.uploads_prefix()),
                    opts.interval.as_secs_f64()
                )?;
                (None, None)
            }
        };
        let (fs_watcher, events, watched) = match folder {
            Some(((w, rx, polling), dir)) => (Some(w), Some(rx), Some((dir, polling))),
            None => (None, None, None),
        };
        Ok(State {
            bucket,
            store,
            detector,
            rescan: local.is_some() && opts.initial_scan,
            out,
            err,
            local,
            events,
            fs_watcher,
            watched,
            scan: None,
            listed_once: false,
            failures: 0,
            next_scan: tokio::time::Instant::now(),
            pending: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            jobs: Jobs::new(opts.concurrency, Stop::default()),
            opts,
            seen: HashMap::new(),
            retry: HashSet::new(),
            summary: WatchSummary::default(),
            out_error: None,
        })
    }

    /// A key's path in the local folder.
    fn path_of(&self, key: &str) -> Option<PathBuf> {
        self.local.as_ref()?.path_for_key(key).ok()
    }

    /// Notes a file-system event on `path` (or a file found by a scan).
    fn touch(&mut self, path: &Path, walk_dirs: bool, now: Instant) {
        let Some(local) = &self.local else { return };
        // Not following links, as the store's listing does: they can loop.
        if walk_dirs && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            // A folder moved or created in: its files bring no events of
            // their own.
            let Ok(rd) = std::fs::read_dir(path) else {
                return;
            };
            for e in rd.flatten() {
                self.touch(&e.path(), true, now);
            }
            return;
        }
        let Some(key) = image_key(local, &self.opts.tag.layout, path) else {
            return;
        };
        tracing::debug!(key = %key, "change noted");
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            path: path.to_path_buf(),
            sig: None,
            changed: now,
            not_before: now,
        });
        p.changed = now;
    }

    fn on_event(&mut self, ev: notify::Event) -> bool {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        if ev.need_rescan() {
            return true;
        }
        let walk = match ev.kind {
            // Our own reads open files: not a change.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Access(_) => return false,
            EventKind::Remove(_) => {
                for p in &ev.paths {
                    if let Some(local) = &self.local
                        && let Some(k) = image_key(local, &self.opts.tag.layout, p)
                    {
                        self.pending.remove(&k);
                    }
                }
                return false;
            }
            // A folder created or moved in may hold files already.
            EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => true,
            _ => false,
        };
        let now = Instant::now();
        for p in &ev.paths {
            self.touch(p, walk, now);
        }
        false
    }

    /// Moves local files that have been quiet for the debounce period to
    /// the queue.
    fn check_quiet(&mut self) {
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut gone = Vec::new();
        for (key, p) in self.pending.iter_mut() {
            if now < p.not_before {
                continue;
            }
            // A link is not followed, as the store would refuse to read it.
            match std::fs::symlink_metadata(&p.path) {
                Ok(m) if m.is_file() => {
                    let sig = (m.len(), m.modified().ok());
                    if p.sig != Some(sig) {
                        p.sig = Some(sig);
                        p.changed = now;
                    } else if now.duration_since(p.changed) >= self.opts.debounce
                        && !self.jobs.has(key)
                    {
                        ready.push(key.clone());
                    }
                }
                // Deleted or renamed away before it settled, a folder or a
                // link.
                _ => gone.push(key.clone()),
            }
        }
        for k in gone {
            self.pending.remove(&k);
        }
        ready.sort();
        for k in ready {
            self.pending.remove(&k);
            tracing::debug!(key = %k, "quiet: queued");
            self.enqueue(k);
        }
    }

    fn enqueue(&mut self, key: String) {
        if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    /// Starts queued images while under the concurrency cap. An image
    /// being tagged waits for that to finish, so two writers of one
    /// document never race.
    fn fill(&mut self) {
        let mut waiting = Vec::new();
        while self.jobs.wants_more() {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            if self.jobs.has(&key) {
                waiting.push(key);
                continue;
            }
            self.queued.remove(&key);
            let store = self.store.clone();
            let detector = self.detector.clone();
            let opts = self.opts.tag.clone();
            self.jobs.push(key.clone(), async move {
                crate::pipeline::tag(&store, &detector, &key, &opts).await
            });
        }
        for k in waiting.into_iter().rev() {
            self.queue.push_front(k);
        }
    }

    fn on_outcome(&mut self, key: String, outcome: Outcome) -> Result<(), WatchError> {
        tracing::info!(key = %for_terminal(&key), outcome = outcome.name(), "watch outcome");
        let line = if self.opts.json {
            outcome.json_line(&key)
        } else {
            format!("{}  {}", now_rfc3339(), outcome.text(&key))
        };
        // Output that cannot be written (a closed pipe) ends the watch once
        // what is being tagged has finished; see `watch`.
        if self.out_error.is_none()
            && let Err(e) = writeln!(self.out, "{line}").and_then(|()| self.out.flush())
        {
            self.out_error = Some(e);
        }
        self.summary.tally.add(&outcome);
        if let Outcome::Retry { .. } = &outcome {
            // Tried again after an interval: from the folder, or on a
            // later listing.
            match self.path_of(&key) {
                Some(path) => {
                    let now = Instant::now();
                    self.pending.insert(
                        key,
                        Pending {
                            path,
                            sig: None,
                            changed: now,
                            not_before: now + self.opts.interval,
                        },
                    );
                }
                None => {
                    self.retry.insert(key);
                }
            }
        }
        Ok(())
    }

    /// Queues what a listing shows as new or changed (or what the first
    /// listing's initial scan selected).
    fn on_listing(
        &mut self,
        images: Vec<(String, Option<Box<str>>)>,
        initial: Option<Vec<String>>,
        first: bool,
    ) {
        let mut now_seen = HashMap::with_capacity(images.len());
        for (key, etag) in images {
            let changed = match self.seen.get(&key) {
                Some(old) => *old != etag,
                // The first listing is the baseline; the initial scan
                // decides what of it needs tagging.
                None => !first,
            };
            if changed || self.retry.remove(&key) {
                self.enqueue(key.clone());
            }
            now_seen.insert(key, etag);
        }
        // Deleted images are forgotten: if one comes back, it is new.
        self.retry.retain(|k| now_seen.contains_key(k));
        self.seen = now_seen;
        for key in initial.into_iter().flatten() {
            self.enqueue(key);
        }
    }

    /// Reports a finished tagging job (a task that failed is an outcome
    /// too, see [`crate::bulk`]).
    fn on_job(&mut self, event: Event<Outcome>) -> Result<(), WatchError> {
        match event {
            Event::Started(_) => Ok(()),
            Event::Done(key, outcome) => self.on_outcome(key, outcome),
        }
    }

    async fn drain(&mut self) -> Result<(), WatchError> {
        // Queued jobs stay unstarted: stopping means nothing new starts.
        self.jobs.stop().set();
        while let Some(event) = self.jobs.next().await {
            self.on_job(event)?;
        }
        Ok(())
    }
}

/// Starts watching a local folder's uploads folder (creating it: it is
/// where images go) and says so; returns the watcher and the folder.
fn watch_folder(
    store: &LocalStore,
    opts: &WatchOptions,
    poll: bool,
    err: &mut dyn Write,
) -> Result<(FsWatch, PathBuf), WatchError> {
    let prefix = opts.tag.layout.uploads_prefix().trim_end_matches('/');
    let dir = store.path_for_key(prefix).map_err(|_| WatchError::Watch {
        path: store.root().join(prefix),
        message: "the uploads prefix must be a plain folder path inside the bucket".into(),
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| WatchError::Watch {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let fs = start_watcher(&dir, poll, opts.interval, err)?;
    writeln!(
        err,
        "watching {} ({}, debounce {} ms); Ctrl-C to stop",
        for_terminal(&dir.display().to_string()),
        if fs.2 {
            "polling"
        } else {
            "file-system notifications"
        },
        opts.debounce.as_millis()
    )?;
    Ok((fs, dir))
}

type ScanResult = Result<Result<Scan, StorageError>, tokio::task::JoinError>;

/// The running scan's result (the handle is cleared once it is in).
async fn join_scan(
    scan: &mut Option<tokio::task::JoinHandle<Result<Scan, StorageError>>>,
) -> ScanResult {
    let res = scan.as_mut().expect("guarded").await;
    *scan = None;
    res
}

async fn next_event(events: &mut Option<EventRx>) -> Option<notify::Result<notify::Event>> {
    events.as_mut().expect("guarded").recv().await
}

impl State<'_> {
    /// Whether a scan should run (now or at `next_scan`).
    fn scan_wanted(&self) -> bool {
        self.scan.is_none() && (self.local.is_none() || self.rescan)
    }

    /// Starts the background scan when one is wanted and due.
    fn start_scan(&mut self) {
        if !self.scan_wanted() || tokio::time::Instant::now() < self.next_scan {
            return;
        }
        let bucket = self.bucket.clone();
        let initial = self.opts.initial_scan && !self.listed_once;
        let local = self.local.is_some();
        self.rescan = false;
        self.scan = Some(tokio::spawn(async move {
            if local {
                return untagged_or_stale(&bucket).await.map(Scan::Targets);
            }
            let images = list_images(bucket.store(), bucket.layout()).await?;
            let initial = match initial {
                true => Some(untagged_or_stale(&bucket).await?),
                false => None,
            };
            Ok(Scan::Listing { images, initial })
        }));
    }

    /// Takes in a finished scan.
    async fn on_scan(&mut self, res: ScanResult) -> Result<(), WatchError> {
        let res = res.unwrap_or_else(|e| {
            Err(StorageError::Other {
                message: format!("scan task failed: {e}"),
            })
        });
        match res {
            Ok(Scan::Targets(keys)) => {
                let now = Instant::now();
                for k in keys {
                    if let Some(path) = self.path_of(&k) {
                        self.touch(&path, false, now);
                    }
                }
                self.listed_once = true;
            }
            Ok(Scan::Listing { images, initial }) => {
                if self.failures > 0 {
                    writeln!(self.err, "imgtag watch: listing works again")?;
                }
                self.failures = 0;
                self.on_listing(images, initial, !self.listed_once);
                self.listed_once = true;
                self.next_scan = tokio::time::Instant::now() + self.opts.interval;
            }
            Err(e) => self.on_scan_error(e).await?,
        }
        Ok(())
    }

    /// A failed scan: fatal if the store cannot be used at all from the
    /// start, else reported and tried again later.
    async fn on_scan_error(&mut self, e: StorageError) -> Result<(), WatchError> {
        let fatal_at_start = !self.listed_once
            && matches!(
                e,
                StorageError::NoSuchBucket { .. } | StorageError::AccessDenied { .. }
            );
        if fatal_at_start {
            self.drain().await?;
            return Err(e.into());
        }
        self.failures += 1;
        let local = self.local.is_some();
        let wait = match local {
            true => self.opts.interval,
            false => backoff(self.opts.interval, self.failures),
        };
        writeln!(
            self.err,
            "imgtag watch: {} {}: {}; trying again in {:.1}s",
            if local { "scanning" } else { "listing" },
            for_terminal(&self.store.describe()),
            for_terminal(&e.to_string()),
            wait.as_secs_f64()
        )?;
        self.err.flush()?;
        self.rescan = local;
        self.next_scan = tokio::time::Instant::now() + wait;
        Ok(())
    }

    /// A file-system notification, or the watcher's error.
    fn on_notify(&mut self, ev: notify::Result<notify::Event>) -> Result<(), WatchError> {
        let e = match ev {
            Ok(ev) => {
                if self.on_event(ev) {
                    tracing::debug!("events were dropped: rescanning");
                    self.rescan = true;
                }
                return Ok(());
            }
            Err(e) => e,
        };
        writeln!(self.err, "imgtag watch: {}", for_terminal(&e.to_string()))?;
        // Folders created since the start took the watches left: poll from
        // now on, or they would go unseen.
        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
            && let Some((dir, polling)) = &mut self.watched
            && !*polling
        {
            writeln!(
                self.err,
                "imgtag watch: out of file-system watches (raise sysctl \
                 fs.inotify.max_user_watches); polling every {:.1}s instead",
                self.opts.interval.as_secs_f64()
            )?;
            let (nw, rx, _) = start_watcher(dir, true, self.opts.interval, self.err)?;
            self.fs_watcher = Some(nw);
            self.events = Some(rx);
            *polling = true;
            self.rescan = true;
        }
        self.err.flush()?;
        Ok(())
    }
}

/// Watches until `stop` resolves (or a fatal outcome), then lets the
/// images being tagged finish and returns the counts. Outcomes go to `out`,
/// one line each; problems (listing failures, fallbacks) to `err`.
pub async fn watch(
    bucket: Bucket,
    source: WatchSource,
    detector: DynDetector,
    opts: WatchOptions,
    stop: impl Future<Output = ()>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<WatchSummary, WatchError> {
    let started = Instant::now();
    let mut stop = std::pin::pin!(stop);
    let tick = (opts.debounce / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
    let mut w = State::new(bucket, source, detector, opts, out, err)?;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while !w.jobs.stop().is_set() && w.out_error.is_none() {
        w.start_scan();
        w.fill();
        let (scan_wanted, next_scan) = (w.scan_wanted(), w.next_scan);
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(event) = w.jobs.next(), if !w.jobs.is_empty() => w.on_job(event)?,
            res = join_scan(&mut w.scan), if w.scan.is_some() => w.on_scan(res).await?,
            Some(ev) = next_event(&mut w.events), if w.events.is_some() => w.on_notify(ev)?,
            _ = tokio::time::sleep_until(next_scan), if scan_wanted => {}
            _ = ticker.tick(), if !w.pending.is_empty() => w.check_quiet(),
        }
    }
    // Stopped: nothing new starts; what is being tagged finishes.
    w.fs_watcher = None;
    if let Some(s) = w.scan.take() {
        s.abort();
    }
    w.drain().await?;
    if let Some(e) = w.out_error.take() {
        return Err(WatchError::Output(e));
    }
    w.summary.seconds = started.elapsed().as_secs_f64();
    Ok(w.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_for_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let root = store.root().to_path_buf();
        let layout = Layout::default();
        let key = |p: &str| image_key(&store, &layout, &root.join(p));
        assert_eq!(
            key("uploads/a b/c.jpg").as_deref(),
            Some("uploads/a b/c.jpg")
        );
        assert_eq!(key("uploads"), None);
        assert_eq!(key("metadata/a.json"), None);
        assert_eq!(key("uploads/.imgtag-tmp-1-2"), None);
        assert_eq!(
            image_key(&store, &layout, Path::new("/elsewhere/x.jpg")),
            None
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(1), 1), s(2));
        assert_eq!(backoff(s(1), 2), s(4));
        assert_eq!(backoff(s(1), 10), s(8));
        assert_eq!(backoff(s(10), 10), s(60));
        assert_eq!(backoff(s(120), 3), s(120));
    }
}
