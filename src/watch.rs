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

use crate::catalog::{Filter, Selection, select};
use crate::contract::{Layout, Status};
use crate::detection::DynDetector;
use crate::outcome::{Outcome, Tally};
use crate::pipeline::TagOptions;
use crate::sanitize::for_terminal;
use crate::storage::{DynStore, LocalStore, StorageError};

/// Temp files of the local store's in-flight writes (see `storage::local`).
const TMP_PREFIX: &str = ".imgtag-tmp-";
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
    Folder { store: LocalStore, poll: bool },
    /// Any store, polled by listing the uploads prefix every `interval`.
    Listing(DynStore),
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub tag: TagOptions,
    /// For the initial scan's statuses.
    pub review_below: f32,
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

async fn untagged_or_stale(
    store: &DynStore,
    layout: &Layout,
    review_below: f32,
) -> Result<Vec<String>, StorageError> {
    let sel = Selection::Matching(Filter::statuses(vec![Status::Untagged, Status::Stale]));
    let picked = select(store, layout, review_below, &sel).await?;
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

/// The key of a path under the store's root, if it can be one: UTF-8,
/// under the uploads prefix, not one of the store's temp files.
fn key_for(root: &Path, layout: &Layout, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let std::path::Component::Normal(s) = c else {
            return None;
        };
        let s = s.to_str()?;
        if s.starts_with(TMP_PREFIX) {
            return None;
        }
        parts.push(s);
    }
    let key = parts.join("/");
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
    store: DynStore,
    detector: DynDetector,
    opts: WatchOptions,
    out: &'w mut dyn Write,
    err: &'w mut dyn Write,
    /// Local folder: its root.
    root: Option<PathBuf>,
    pending: HashMap<String, Pending>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    in_flight: HashSet<String>,
    tasks: tokio::task::JoinSet<(String, Outcome)>,
    /// Which image each task tags, to free its key should it panic.
    task_keys: HashMap<tokio::task::Id, String>,
    /// Listing: the ETag each image had when last queued or seen.
    seen: HashMap<String, Option<Box<str>>>,
    /// Listing: images to queue on the next listing whatever their ETag.
    retry: HashSet<String>,
    summary: WatchSummary,
}

impl State<'_> {
    /// Notes a file-system event on `path` (or a file found by a scan).
    fn touch(&mut self, path: &Path, walk_dirs: bool, now: Instant) {
        let Some(root) = &self.root else { return };
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
        let Some(key) = key_for(root, &self.opts.tag.layout, path) else {
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
                    if let Some(root) = &self.root
                        && let Some(k) = key_for(root, &self.opts.tag.layout, p)
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
            match std::fs::metadata(&p.path) {
                Ok(m) if m.is_file() => {
                    let sig = (m.len(), m.modified().ok());
                    if p.sig != Some(sig) {
                        p.sig = Some(sig);
                        p.changed = now;
                    } else if now.duration_since(p.changed) >= self.opts.debounce
                        && !self.in_flight.contains(key)
                    {
                        ready.push(key.clone());
                    }
                }
                // Deleted or renamed away before it settled, or a folder.
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
        while self.in_flight.len() < self.opts.concurrency.max(1) {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            if self.in_flight.contains(&key) {
                waiting.push(key);
                continue;
            }
            self.queued.remove(&key);
            self.in_flight.insert(key.clone());
            let store = self.store.clone();
            let detector = self.detector.clone();
            let opts = self.opts.tag.clone();
            let key2 = key.clone();
            let handle = self.tasks.spawn(async move {
                let outcome = crate::pipeline::tag(&store, &detector, &key2, &opts).await;
                (key2, outcome)
            });
            self.task_keys.insert(handle.id(), key);
        }
        for k in waiting.into_iter().rev() {
            self.queue.push_front(k);
        }
    }

    fn on_outcome(&mut self, key: String, outcome: Outcome) -> Result<(), WatchError> {
        self.in_flight.remove(&key);
        tracing::info!(key = %key, outcome = ?outcome, "watch outcome");
        let line = if self.opts.json {
            outcome.json_line(&key)
        } else {
            format!("{}  {}", crate::clock::now_rfc3339(), outcome.text(&key))
        };
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        self.summary.tally.add(&outcome);
        if let Outcome::Retry { .. } = &outcome {
            // Tried again after an interval: from the folder, or on a
            // later listing.
            match &self.root {
                Some(root) => {
                    let now = Instant::now();
                    let path = key.split('/').fold(root.clone(), |p, c| p.join(c));
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

    /// Reports a finished tagging task.
    fn on_task(
        &mut self,
        done: Result<(tokio::task::Id, (String, Outcome)), tokio::task::JoinError>,
    ) -> Result<(), WatchError> {
        match done {
            Ok((id, (key, outcome))) => {
                self.task_keys.remove(&id);
                self.on_outcome(key, outcome)
            }
            Err(e) => {
                let key = self.task_keys.remove(&e.id()).unwrap_or_default();
                self.in_flight.remove(&key);
                writeln!(
                    self.err,
                    "imgtag watch: tagging {} failed: {e}",
                    for_terminal(&key)
                )?;
                Ok(())
            }
        }
    }

    async fn drain(&mut self) -> Result<(), WatchError> {
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.on_task(done)?;
        }
        Ok(())
    }
}

/// Watches until `stop` resolves (or a fatal outcome), then lets the
/// images being tagged finish and returns the counts. Outcomes go to `out`,
/// one line each; problems (listing failures, fallbacks) to `err`.
pub async fn watch(
    source: WatchSource,
    detector: DynDetector,
    opts: WatchOptions,
    stop: impl Future<Output = ()>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<WatchSummary, WatchError> {
    let started = Instant::now();
    let mut stop = std::pin::pin!(stop);
    let layout = opts.tag.layout.clone();
    let (store, folder): (DynStore, Option<(PathBuf, bool)>) = match source {
        WatchSource::Folder { store, poll } => {
            let root = store.root().to_path_buf();
            (std::sync::Arc::new(store), Some((root, poll)))
        }
        WatchSource::Listing(store) => (store, None),
    };

    // Notifications first, then the initial scan, so nothing that arrives
    // in between is missed.
    let mut events: Option<EventRx> = None;
    // The folder watched, and whether it is polled.
    let mut watched: Option<(PathBuf, bool)> = None;
    let mut fs_watcher = match &folder {
        Some((root, poll)) => {
            let parts: Vec<&str> = layout
                .uploads_prefix()
                .trim_end_matches('/')
                .split('/')
                .collect();
            let dir = parts.iter().fold(root.clone(), |p, c| p.join(c));
            if parts.iter().any(|c| matches!(*c, "" | "." | "..")) {
                return Err(WatchError::Watch {
                    path: dir,
                    message: "the uploads prefix must be a plain folder path inside the bucket"
                        .into(),
                });
            }
            // Notifications need the folder to exist; it is where images go.
            std::fs::create_dir_all(&dir).map_err(|e| WatchError::Watch {
                path: dir.clone(),
                message: e.to_string(),
            })?;
            let (w, rx, polling) = start_watcher(&dir, *poll, opts.interval, err)?;
            events = Some(rx);
            watched = Some((dir.clone(), polling));
            writeln!(
                err,
                "watching {} ({}, debounce {} ms); Ctrl-C to stop",
                for_terminal(&dir.display().to_string()),
                if polling {
                    "polling"
                } else {
                    "file-system notifications"
                },
                opts.debounce.as_millis()
            )?;
            Some(w)
        }
        None => {
            writeln!(
                err,
                "watching {}/{} (listing every {:.1}s); Ctrl-C to stop",
                for_terminal(&store.describe()),
                for_terminal(layout.uploads_prefix()),
                opts.interval.as_secs_f64()
            )?;
            None
        }
    };
    let local = folder.is_some();

    let mut w = State {
        store: store.clone(),
        detector,
        opts: opts.clone(),
        out,
        err,
        root: folder.map(|(r, _)| r),
        pending: HashMap::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        in_flight: HashSet::new(),
        tasks: tokio::task::JoinSet::new(),
        task_keys: HashMap::new(),
        seen: HashMap::new(),
        retry: HashSet::new(),
        summary: WatchSummary::default(),
    };

    // One background scan at a time: a listing (remote store) or a search
    // for untagged and stale images (a folder's initial scan, or a rescan
    // after the platform dropped events).
    let mut scan: Option<tokio::task::JoinHandle<Result<Scan, StorageError>>> = None;
    let mut listed_once = false;
    let mut failures = 0u32;
    let mut rescan = local && opts.initial_scan;
    let mut next_scan = tokio::time::Instant::now();
    let tick = (opts.debounce / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if w.summary.tally.fatal.is_some() {
            break;
        }
        let want_scan = scan.is_none() && (!local || rescan);
        if want_scan && tokio::time::Instant::now() >= next_scan {
            let store = store.clone();
            let layout = layout.clone();
            let review_below = opts.review_below;
            let initial = opts.initial_scan && !listed_once;
            rescan = false;
            scan = Some(tokio::spawn(async move {
                if local {
                    return untagged_or_stale(&store, &layout, review_below)
                        .await
                        .map(Scan::Targets);
                }
                let images = list_images(&store, &layout).await?;
                let initial = match initial {
                    true => Some(untagged_or_stale(&store, &layout, review_below).await?),
                    false => None,
                };
                Ok(Scan::Listing { images, initial })
            }));
        }
        w.fill();
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(done) = w.tasks.join_next_with_id(), if !w.tasks.is_empty() => w.on_task(done)?,
            res = async { scan.as_mut().expect("guarded").await }, if scan.is_some() => {
                scan = None;
                let res = res.unwrap_or_else(|e| Err(StorageError::Other {
                    message: format!("scan task failed: {e}"),
                }));
                match res {
                    Ok(Scan::Targets(keys)) => {
                        let now = Instant::now();
                        let root = w.root.clone().expect("folder scans have a root");
                        for k in keys {
                            let path = k.split('/').fold(root.clone(), |p, c| p.join(c));
                            w.touch(&path, false, now);
                        }
                        listed_once = true;
                    }
                    Ok(Scan::Listing { images, initial }) => {
                        if failures > 0 {
                            writeln!(w.err, "imgtag watch: listing works again")?;
                        }
                        failures = 0;
                        w.on_listing(images, initial, !listed_once);
                        listed_once = true;
                        next_scan = tokio::time::Instant::now() + opts.interval;
                    }
                    Err(e) => {
                        let fatal_at_start = !listed_once
                            && matches!(e, StorageError::NoSuchBucket { .. } | StorageError::AccessDenied { .. });
                        if fatal_at_start {
                            w.drain().await?;
                            return Err(e.into());
                        }
                        failures += 1;
                        let wait = if local { opts.interval } else { backoff(opts.interval, failures) };
                        writeln!(
                            w.err,
                            "imgtag watch: {} {}: {}; trying again in {:.1}s",
                            if local { "scanning" } else { "listing" },
                            for_terminal(&store.describe()),
                            for_terminal(&e.to_string()),
                            wait.as_secs_f64()
                        )?;
                        w.err.flush()?;
                        rescan = local;
                        next_scan = tokio::time::Instant::now() + wait;
                    }
                }
            }
            Some(ev) = async { events.as_mut().expect("guarded").recv().await }, if events.is_some() => {
                match ev {
                    Ok(ev) => {
                        if w.on_event(ev) {
                            tracing::debug!("events were dropped: rescanning");
                            rescan = true;
                        }
                    }
                    Err(e) => {
                        writeln!(w.err, "imgtag watch: {}", for_terminal(&e.to_string()))?;
                        // Folders created since the start took the watches
                        // left: poll from now on, or they would go unseen.
                        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
                            && let Some((dir, polling)) = &mut watched
                            && !*polling
                        {
                            writeln!(
                                w.err,
                                "imgtag watch: out of file-system watches (raise sysctl \
                                 fs.inotify.max_user_watches); polling every {:.1}s instead",
                                opts.interval.as_secs_f64()
                            )?;
                            let (nw, rx, _) = start_watcher(dir, true, opts.interval, w.err)?;
                            fs_watcher = Some(nw);
                            events = Some(rx);
                            *polling = true;
                            rescan = true;
                        }
                        w.err.flush()?;
                    }
                }
            }
            _ = tokio::time::sleep_until(next_scan), if scan.is_none() && (!local || rescan) => {}
            _ = ticker.tick(), if !w.pending.is_empty() => w.check_quiet(),
        }
    }
    // Stopped: nothing new starts; what is being tagged finishes.
    drop(fs_watcher);
    if let Some(s) = scan {
        s.abort();
    }
    w.drain().await?;
    w.summary.seconds = started.elapsed().as_secs_f64();
    Ok(w.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_for_paths() {
        let layout = Layout::default();
        let root = Path::new("/r");
        assert_eq!(
            key_for(root, &layout, Path::new("/r/uploads/a b/c.jpg")).as_deref(),
            Some("uploads/a b/c.jpg")
        );
        assert_eq!(key_for(root, &layout, Path::new("/r/uploads")), None);
        assert_eq!(
            key_for(root, &layout, Path::new("/r/metadata/a.json")),
            None
        );
        assert_eq!(
            key_for(root, &layout, Path::new("/r/uploads/.imgtag-tmp-1-2")),
            None
        );
        assert_eq!(key_for(root, &layout, Path::new("/elsewhere/x.jpg")), None);
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
