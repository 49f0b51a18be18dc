//! Runs the app's commands off the UI task and turns their results into
//! messages: the listing streams page by page, tagging, label edits and
//! undos run through the pipeline on the one bulk runner
//! ([`crate::bulk`]), thumbnails decode on blocking threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use image::DynamicImage;
use ratatui::layout::Size;
use ratatui_image::Resize;
use ratatui_image::picker::{Picker, ProtocolType};
use tokio::sync::{OnceCell, mpsc};

use crate::bucket::{Bucket, Update};
use crate::bulk::{Event, Finished, Jobs, Stop};
use crate::catalog::{Assessed, Lookup};
use crate::config::DetectorKind;
use crate::contract::BoundingBox;
use crate::detection::DynDetector;
use crate::pipeline::{
    Outcome, ReviewEdit, ReviewUndo, TagOptions, edit_review_undoable, tag, undo_review,
};
use crate::sanitize::for_terminal;
use crate::storage::S3Options;

use super::app::{Cmd, Msg, TagJob};
use super::thumbs::ThumbCache;

/// Rows per listing message: enough to keep message overhead low, few
/// enough that the first screen appears at once.
const ROWS_PER_MESSAGE: usize = 256;

/// The longest the UI thread files messages already waiting before it
/// draws again: with the draw (1-2 ms at any row count) a turn takes
/// under 10 ms of the thread's time (at 8 ms, up to 11.5 ms in a
/// million-row load), and the rest of a 60 Hz frame is left for a busy
/// machine taking the CPU away mid-turn.
pub const FRAME_BUDGET: std::time::Duration = std::time::Duration::from_millis(6);

/// The least time between two draws while messages keep coming: a
/// listing that sends a page every millisecond is drawn at 60 Hz, not
/// once a page (at a million rows that was 4,000 draws, most of the
/// load's time on the UI thread).
pub(crate) const FRAME_INTERVAL: std::time::Duration = std::time::Duration::from_millis(16);

/// Applies the messages already waiting in `rx` until `budget` has passed
/// since `since` (or the app quits): a listing faster than the screen
/// never holds it for more than a frame; what is left waits for the next
/// turn, after a draw. `run` runs each command the app asks for. Returns
/// whether one was input (a key, the mouse, a resize), to be drawn now.
pub(crate) fn take_waiting(
    app: &mut super::app::App,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    since: std::time::Instant,
    budget: std::time::Duration,
    mut run: impl FnMut(Cmd),
) -> bool {
    let mut input = false;
    while !app.quit && since.elapsed() < budget {
        let Ok(msg) = rx.try_recv() else { break };
        input |= is_input(&msg);
        for cmd in app.update(msg) {
            run(cmd);
        }
    }
    input
}

fn is_input(msg: &Msg) -> bool {
    matches!(msg, Msg::Key(_) | Msg::Mouse(_) | Msg::Resize(..))
}

/// One turn of the UI thread before a draw: `first`, then what waits, for
/// at most [`FRAME_BUDGET`] of work; while the last draw (`drawn`) is
/// less than `FRAME_INTERVAL` ago and no input came, it waits for more
/// rather than draw again. Returns the time spent on messages (the waits
/// excluded).
pub async fn turn(
    app: &mut super::app::App,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    first: Msg,
    drawn: std::time::Instant,
    mut run: impl FnMut(Cmd),
) -> std::time::Duration {
    let due = drawn + FRAME_INTERVAL;
    let mut busy = std::time::Duration::ZERO;
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        let t = std::time::Instant::now();
        let mut input = is_input(&msg);
        for cmd in app.update(msg) {
            run(cmd);
        }
        input |= take_waiting(app, rx, t, FRAME_BUDGET.saturating_sub(busy), &mut run);
        busy += t.elapsed();
        if input || app.quit || busy >= FRAME_BUDGET {
            break;
        }
        // A closed channel or the frame falling due ends the turn.
        next = tokio::time::timeout_at(due.into(), rx.recv())
            .await
            .ok()
            .flatten();
    }
    busy
}

/// How the runtime gets its detector: built on first use, so the UI
/// starts at once and a browse-only session never loads a model.
pub enum DetectorSource {
    Build {
        kind: DetectorKind,
        s3: S3Options,
        concurrency: usize,
        /// Rekognition calls a second, at most (`--rekognition-tps`).
        tps: f64,
        /// The local model's engine (`--engine`).
        engine: crate::detection::engine::EngineChoice,
    },
    Ready(DynDetector),
}

pub struct RuntimeConfig {
    /// What every tagging job asks the detector and writes, built once
    /// from the settings; a job sets only what the operator chose for it
    /// (threshold, force) and the metadata key the listing paired.
    pub tag: TagOptions,
    /// Images tagged at once.
    pub concurrency: usize,
    /// How long a thumbnail request waits before starting, so that keys
    /// held down to scroll do not decode every image passed.
    pub thumb_delay: std::time::Duration,
}

pub struct Runtime {
    /// Listing, reads and writes all go through the opened bucket (and its
    /// index, when it has one).
    bucket: Bucket,
    config: Arc<RuntimeConfig>,
    detector_source: Arc<DetectorSource>,
    detector: Arc<OnceCell<Result<DynDetector, String>>>,
    tx: mpsc::UnboundedSender<Msg>,
    /// Jobs go to the task that runs them (see [`drive`]).
    submit: mpsc::UnboundedSender<Submitted>,
    /// Set by a fatal outcome (credentials, permissions): queued tagging
    /// jobs do not start.
    stop: Stop,
    thumbs: Arc<ThumbCache>,
    picker: Picker,
    thumb_generation: Arc<AtomicU64>,
    doc_generation: Arc<AtomicU64>,
    pending: Arc<AtomicUsize>,
    jobs: Arc<AtomicUsize>,
    listing: Option<tokio::task::JoinHandle<()>>,
}

/// A job on its way to [`drive`].
struct Submitted {
    key: String,
    job: BoxFuture<'static, Sent>,
    /// An edit or undo the operator asked for: written even after a stop.
    after_stop: bool,
}

/// A finished job: its outcome (for the stop rule) and the message that
/// reports it.
struct Sent {
    outcome: Outcome,
    msg: Msg,
}

impl Finished for Sent {
    fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn failed(key: &str, outcome: Outcome) -> Self {
        Sent {
            msg: tagged(key.to_string(), outcome.clone(), None),
            outcome,
        }
    }
}

/// The message of a tagging job that ended with `outcome`.
fn tagged(key: String, outcome: Outcome, row: Option<Box<Assessed>>) -> Msg {
    Msg::Tagged {
        key,
        outcome,
        row,
        review: false,
        undo: None,
    }
}

/// Runs the TUI's jobs through the one bulk runner until the runtime is
/// dropped. A tagging job the stop keeps from starting is reported as not
/// started, so its row stops being busy. `counts` are the runtime's jobs
/// and pending tasks, each job counted until its message is sent.
async fn drive(
    mut queue: mpsc::UnboundedReceiver<Submitted>,
    mut jobs: Jobs<Sent>,
    tx: mpsc::UnboundedSender<Msg>,
    counts: [Arc<AtomicUsize>; 2],
) {
    let done = |n: usize| {
        for c in &counts {
            c.fetch_sub(n, Ordering::SeqCst);
        }
    };
    loop {
        tokio::select! {
            submitted = queue.recv() => match submitted {
                Some(Submitted { key, job, after_stop: true }) => jobs.push_after_stop(key, job),
                Some(Submitted { key, job, .. }) => jobs.push(key, job),
                None => break,
            },
            Some(event) = jobs.next(), if !jobs.is_empty() => {
                if let Event::Done(_, sent) = event {
                    let _ = tx.send(sent.msg);
                    done(1);
                }
            }
        }
        for key in jobs.take_unstarted() {
            let _ = tx.send(Msg::TagStarted { key: key.clone() });
            let _ = tx.send(tagged(key, Outcome::not_started(), None));
            done(1);
        }
    }
}

/// Counts a spawned task until it ends, however it ends.
struct PendingGuard(Arc<AtomicUsize>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runtime {
    pub fn new(
        bucket: Bucket,
        config: RuntimeConfig,
        detector: DetectorSource,
        thumbs: ThumbCache,
        picker: Picker,
        tx: mpsc::UnboundedSender<Msg>,
    ) -> Runtime {
        let stop = Stop::default();
        let (pending, jobs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (submit, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(
            queue,
            Jobs::new(config.concurrency, stop.clone()),
            tx.clone(),
            [pending.clone(), jobs.clone()],
        ));
        Runtime {
            bucket,
            config: Arc::new(config),
            detector_source: Arc::new(detector),
            detector: Arc::new(OnceCell::new()),
            tx,
            submit,
            stop,
            thumbs: Arc::new(thumbs),
            picker,
            thumb_generation: Arc::new(AtomicU64::new(0)),
            doc_generation: Arc::new(AtomicU64::new(0)),
            pending,
            jobs,
            listing: None,
        }
    }

    /// Tasks still running (listing, tagging, thumbnails).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Tagging or review jobs queued or running: quitting waits for these.
    pub fn jobs(&self) -> usize {
        self.jobs.load(Ordering::SeqCst)
    }

    /// Stops the listing (quitting does not wait for it).
    pub(crate) fn stop_listing(&mut self) {
        if let Some(l) = self.listing.take() {
            l.abort();
        }
    }

    /// Stops queued tagging jobs from starting (running ones finish).
    pub(crate) fn stop_queued(&self) {
        self.stop.set();
    }

    fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let guard = PendingGuard(self.pending.clone());
        tokio::spawn(async move {
            let _guard = guard;
            fut.await
        })
    }

    /// A job that writes metadata, run by [`drive`]: counted so that
    /// quitting can wait for it (a write cut short would leave nothing
    /// behind, but the operator asked for it).
    fn submit_job<F>(&self, key: String, job: F, after_stop: bool)
    where
        F: std::future::Future<Output = Sent> + Send + 'static,
    {
        self.jobs.fetch_add(1, Ordering::SeqCst);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let job = Box::pin(job);
        if self
            .submit
            .send(Submitted {
                key,
                job,
                after_stop,
            })
            .is_err()
        {
            // The runner is gone (the runtime is shutting down).
            self.jobs.fetch_sub(1, Ordering::SeqCst);
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn run(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::List { generation } => self.list(generation),
            Cmd::Tag {
                jobs,
                min_confidence,
                force,
                replace_unreadable,
            } => {
                self.stop.clear();
                for job in jobs {
                    let opts = TagOptions {
                        min_confidence,
                        force,
                        replace_unreadable,
                        metadata_key: job.metadata_key.clone(),
                        ..self.config.tag.clone()
                    };
                    self.tag_job(job.key, opts);
                }
            }
            Cmd::Review { jobs, edit } => {
                for job in jobs {
                    self.review_job(job, edit.clone());
                }
            }
            Cmd::Undo { undo } => self.undo_job(*undo),
            Cmd::Thumb {
                key,
                etag,
                size,
                area,
                boxes,
            } => self.thumb(key, etag, size, area, boxes),
            Cmd::CancelThumb => {
                self.thumb_generation.fetch_add(1, Ordering::SeqCst);
            }
            Cmd::LoadDoc {
                key,
                metadata_key,
                rev,
            } => self.load_doc(key, metadata_key, rev),
        }
    }

    /// Reads a row's document for the detail pane. Waits like a thumbnail
    /// does, so holding a key down to scroll reads only where it stops.
    fn load_doc(&self, key: String, metadata_key: String, rev: u32) {
        let generation = self.doc_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = self.doc_generation.clone();
        let bucket = self.bucket.clone();
        let tx = self.tx.clone();
        let delay = self.config.thumb_delay;
        self.spawn(async move {
            if !still_wanted(delay, &current, generation).await {
                return;
            }
            let found = bucket.find(&key, Some(&metadata_key)).await;
            let result = match found.map(Lookup::found) {
                Ok(Some(f)) => f.read.map(|p| Box::new(p.doc)).map_err(|m| m.to_string()),
                Ok(None) => Err("the metadata is gone (press r to reload)".into()),
                Err(e) => Err(crate::storage::error_chain(&e)),
            };
            let _ = tx.send(Msg::Doc { key, rev, result });
        });
    }

    fn list(&mut self, generation: u64) {
        if let Some(old) = self.listing.take() {
            old.abort();
        }
        let updates = self.bucket.updates();
        let tx = self.tx.clone();
        self.listing = Some(self.spawn(async move {
            let result = send_updates(updates, generation, &tx).await;
            let _ = tx.send(Msg::ListingDone {
                generation,
                error: result.err(),
            });
        }));
    }

    fn tag_job(&self, key: String, opts: TagOptions) {
        let bucket = self.bucket.clone();
        let tx = self.tx.clone();
        let source = self.detector_source.clone();
        let cell = self.detector.clone();
        let job = {
            let key = key.clone();
            async move {
                let _ = tx.send(Msg::TagStarted { key: key.clone() });
                let detector = cell.get_or_init(|| build_detector(&source)).await.clone();
                let outcome = match detector {
                    Ok(d) => {
                        let (bucket, key, opts) = (bucket.clone(), key.clone(), opts.clone());
                        contained(async move { tag(bucket.store(), &d, &key, &opts).await }).await
                    }
                    Err(message) => Outcome::Fatal { message },
                };
                tracing::info!(key = %for_terminal(&key), outcome = outcome.name(), "tagged");
                let row = reread(&bucket, &key, &outcome).await;
                Sent {
                    msg: tagged(key, outcome.clone(), row),
                    outcome,
                }
            }
        };
        self.submit_job(key, job, false);
    }

    /// One image's label edit: a conditional write through the pipeline
    /// (a conflict comes back as an outcome, never an overwrite).
    fn review_job(&self, job: TagJob, edit: ReviewEdit) {
        let bucket = self.bucket.clone();
        let opts = TagOptions {
            metadata_key: job.metadata_key,
            ..self.config.tag.clone()
        };
        let key = job.key;
        let job = {
            let key = key.clone();
            async move {
                let done = {
                    let (bucket, key) = (bucket.clone(), key.clone());
                    contained_any(async move {
                        edit_review_undoable(bucket.store(), &key, &edit, &opts).await
                    })
                    .await
                };
                let (outcome, undo) = done.unwrap_or_else(|failed| (failed, None));
                let row = reread(&bucket, &key, &outcome).await;
                Sent {
                    msg: Msg::Tagged {
                        key,
                        outcome: outcome.clone(),
                        row,
                        review: true,
                        undo: undo.map(Box::new),
                    },
                    outcome,
                }
            }
        };
        self.submit_job(key, job, true);
    }

    /// Takes one review write back (conditional on the document being
    /// what that write left).
    fn undo_job(&self, undo: ReviewUndo) {
        let bucket = self.bucket.clone();
        let key = undo.image_key.clone();
        let job = async move {
            let outcome = {
                let (bucket, undo) = (bucket.clone(), undo.clone());
                contained(async move { undo_review(bucket.store(), &undo).await }).await
            };
            let row = reread(&bucket, &undo.image_key, &outcome).await;
            Sent {
                msg: Msg::Undone {
                    undo: Box::new(undo),
                    outcome: outcome.clone(),
                    row,
                },
                outcome,
            }
        };
        self.submit_job(key, job, true);
    }

    fn thumb(
        &self,
        key: String,
        etag: Option<String>,
        size: u64,
        area: Size,
        boxes: Vec<BoundingBox>,
    ) {
        let generation = self.thumb_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = self.thumb_generation.clone();
        let bucket = self.bucket.clone();
        let thumbs = self.thumbs.clone();
        let picker = self.picker.clone();
        let tx = self.tx.clone();
        let delay = self.config.thumb_delay;
        self.spawn(async move {
            if !still_wanted(delay, &current, generation).await {
                return;
            }
            let result = match thumbs
                .get(bucket.store(), &key, etag.as_deref(), size)
                .await
            {
                Ok(img) => {
                    if current.load(Ordering::SeqCst) != generation {
                        return;
                    }
                    let drawn = boxes.clone();
                    tokio::task::spawn_blocking(move || {
                        let mut img = (*img).clone();
                        if !drawn.is_empty() {
                            // Half-blocks show two pixels a cell, whatever
                            // the font: the outline must survive that.
                            let font = match picker.protocol_type() {
                                ProtocolType::Halfblocks => (1, 2),
                                _ => (picker.font_size().width, picker.font_size().height),
                            };
                            let shown = (
                                u32::from(area.width) * u32::from(font.0),
                                u32::from(area.height) * u32::from(font.1),
                            );
                            let stroke = super::boxes::stroke_for(img.dimensions(), shown);
                            super::boxes::draw_boxes(&mut img, &drawn, stroke);
                        }
                        picker
                            .new_protocol(
                                DynamicImage::ImageRgb8(img),
                                area,
                                // Scale, not Fit: Fit never enlarges, so a
                                // 512-px thumbnail filled a third of a wide
                                // pane.
                                Resize::Scale(None),
                            )
                            .map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(Msg::Thumb {
                key,
                area,
                boxes,
                result,
            });
        });
    }
}

/// Runs a job on its own task, so that a panic in it comes back as an
/// outcome (and the row stops being busy) instead of ending the job
/// silently.
async fn contained<F>(job: F) -> Outcome
where
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    contained_any(job).await.unwrap_or_else(|failed| failed)
}

/// [`contained`] for a job with any result: `Err` is the outcome a failed
/// task reports.
async fn contained_any<F, T>(job: F) -> Result<T, Outcome>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(job).await.map_err(crate::bulk::task_failed)
}

/// Waits `delay`, then whether request `generation` is still the latest
/// (the selection has not moved on): holding a key down to scroll makes a
/// request per row passed, and only where it stops is served.
async fn still_wanted(delay: std::time::Duration, latest: &AtomicU64, generation: u64) -> bool {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    latest.load(Ordering::SeqCst) == generation
}

/// The detector, built once on the first tagging job.
async fn build_detector(source: &DetectorSource) -> Result<DynDetector, String> {
    match source {
        DetectorSource::Ready(d) => Ok(d.clone()),
        DetectorSource::Build {
            kind,
            s3,
            concurrency,
            tps,
            engine,
        } => crate::detection::build_paced(*kind, s3, *concurrency, *tps, *engine)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// The image's row after a write, so the list shows the result at once.
async fn reread(
    bucket: &Bucket,
    key: &str,
    outcome: &Outcome,
) -> Option<Box<crate::catalog::Assessed>> {
    let meta = match outcome {
        Outcome::Tagged { metadata_key, .. }
        | Outcome::Failed { metadata_key, .. }
        | Outcome::Unchanged { metadata_key }
        | Outcome::Conflict { metadata_key } => Some(metadata_key.as_str()),
        Outcome::Skipped { .. } | Outcome::Retry { .. } | Outcome::Fatal { .. } => None,
    };
    match bucket.reassess(key, meta).await {
        Ok(a) => Some(Box::new(a)),
        Err(e) => {
            tracing::warn!(key = %for_terminal(key), error = %e, "re-reading after a write failed");
            None
        }
    }
}

/// Sends the listing's updates as messages of at most
/// [`ROWS_PER_MESSAGE`] rows; stops at the first error, or quietly when
/// the app has gone.
async fn send_updates(
    updates: impl futures::Stream<Item = Result<Update, crate::bucket::BucketError>>,
    generation: u64,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<(), String> {
    let mut updates = std::pin::pin!(updates);
    while let Some(update) = updates.next().await {
        match update.map_err(|e| crate::storage::error_chain(&e))? {
            Update::Rows(rows) => {
                if !send_rows(rows, generation, tx) {
                    return Ok(());
                }
            }
            Update::Gone(keys) => {
                let _ = tx.send(Msg::Removed { generation, keys });
            }
            Update::Expect(rows) => {
                let _ = tx.send(Msg::Expect { generation, rows });
            }
        }
    }
    Ok(())
}

/// The compact pages are built here, off the UI thread, taking each row
/// apart (and freeing what is left of it here): the UI thread only files
/// them. False when the app has gone.
fn send_rows(rows: Vec<Assessed>, generation: u64, tx: &mpsc::UnboundedSender<Msg>) -> bool {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let page = Msg::rows(generation, rows.by_ref().take(ROWS_PER_MESSAGE));
        if tx.send(page).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Layout;
    use crate::status::Status;
    use crate::storage::ObjectInfo;
    use crate::tui::app::{App, Header};
    use crate::tui::keys::Keymap;

    fn app() -> App {
        let header = Header {
            bucket: "s3://b".into(),
            detector: "local".into(),
            paid: false,
        };
        let mut app = App::new(header, Layout::default(), Keymap::default(), 55.0, 70.0);
        app.start();
        app
    }

    fn untagged(n: usize) -> Assessed {
        Assessed {
            image: Some(ObjectInfo {
                key: format!("uploads/{n:04}.jpg"),
                size: 1,
                etag: Some(format!("\"{n}\"").into()),
                last_modified: Some(n as i64),
            }),
            metadata: None,
            key_kind: None,
            status: Some(Status::Untagged),
            doc: None,
            read_error: None,
        }
    }

    /// Filing stops when the turn's budget is spent, whatever waits: the
    /// pages left are filed by the next turn, and the table ends as one
    /// page of every row leaves it.
    #[test]
    fn a_spent_budget_leaves_the_pages_to_the_next_turn() {
        let mut paged = app();
        let generation = paged.generation;
        let (tx, mut rx) = mpsc::unbounded_channel();
        for page in 0..4 {
            let rows = (page * 10..page * 10 + 10).rev().map(untagged);
            tx.send(Msg::rows(generation, rows)).unwrap();
        }
        let now = std::time::Instant::now();
        take_waiting(&mut paged, &mut rx, now, std::time::Duration::ZERO, |_| {});
        assert_eq!(paged.rows.len(), 0, "nothing filed on a spent budget");
        let hour = std::time::Duration::from_secs(3600);
        take_waiting(&mut paged, &mut rx, now, hour, |_| {});
        assert_eq!(paged.rows.len(), 40);
        assert!(rx.try_recv().is_err());

        let mut once = app();
        let all = (0..4).flat_map(|p| (p * 10..p * 10 + 10).rev().map(untagged));
        once.update(Msg::rows(once.generation, all));
        let keys = |a: &App| -> Vec<String> {
            a.rows
                .view()
                .iter()
                .map(|&i| a.rows.key(i).to_string())
                .collect()
        };
        assert_eq!(keys(&paged), keys(&once));
        assert_eq!(paged.rows.count(Status::Untagged), 40);
    }
}
