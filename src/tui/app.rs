//! The TUI's state and its one update function (Elm style): every input
//! event, listing page, thumbnail and tagging result arrives as a [`Msg`];
//! [`App::update`] changes the state and returns the slow work to start as
//! [`Cmd`]s, which the runtime runs off the UI task.

use std::cell::RefCell;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Rect, Size};
use ratatui_image::protocol::Protocol;

use crate::catalog::Assessed;
use crate::contract::{BoundingBox, Layout, MetadataDoc};
use crate::detection::DetectorKind;
use crate::pipeline::{Outcome, ReviewEdit, ReviewUndo};
use crate::sanitize::for_terminal;
use crate::status::Status;

use super::boxes;
use super::facts::DocFacts;
use super::keys::{Action, Keymap};
use super::rows::{Row, RowRef, RowSummary, Rows, SummaryBatch};
use super::theme::Theme;

/// Everything that can happen to the app.
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// A page of rows summarised off the UI thread in a compact form: what
    /// the runtime sends for every listing, from the index or an audit
    /// ([`crate::bucket::Bucket::updates`]); filing it allocates little
    /// per row.
    Batch {
        generation: u64,
        rows: SummaryBatch,
    },
    /// About this many rows of listing `generation` are coming: the row
    /// table makes room for them at once.
    Expect {
        generation: u64,
        rows: u64,
    },
    /// These keys (images or orphan metadata) are gone from the bucket:
    /// their rows leave the list.
    Removed {
        generation: u64,
        keys: Vec<String>,
    },
    /// The document of row `key` at revision `rev`, loaded for the detail
    /// pane (an error text if it could not be read).
    Doc {
        key: String,
        rev: u32,
        result: Result<Box<MetadataDoc>, String>,
    },
    /// Listing `generation` ended, with an error text if it failed.
    ListingDone {
        generation: u64,
        error: Option<String>,
    },
    /// A tagging job left the queue and started.
    TagStarted {
        key: String,
    },
    /// A tagging or review job ended; `row` is the image re-read after the
    /// write (None if that read failed).
    Tagged {
        key: String,
        outcome: Outcome,
        row: Option<Box<Assessed>>,
        review: bool,
        /// A review write that was made: what it replaced, for `u`.
        undo: Option<Box<ReviewUndo>>,
    },
    /// An undo ended; `row` is the image re-read after it.
    Undone {
        undo: Box<ReviewUndo>,
        outcome: Outcome,
        row: Option<Box<Assessed>>,
    },
    /// A thumbnail is ready (or failed) for `key` at `area` cells, with
    /// `boxes` drawn on it.
    Thumb {
        key: String,
        area: Size,
        boxes: Vec<BoundingBox>,
        result: Result<Protocol, String>,
    },
}

impl Msg {
    /// Assessed rows (images, then orphan metadata) of listing
    /// `generation` as the page a listing sends ([`Msg::Batch`]): the one
    /// way rows reach the app.
    pub fn rows(generation: u64, rows: impl IntoIterator<Item = Assessed>) -> Msg {
        let rows = rows.into_iter();
        let mut batch = SummaryBatch::with_capacity(rows.size_hint().0);
        for a in rows {
            batch.push(a);
        }
        Msg::Batch {
            generation,
            rows: batch.finish(),
        }
    }
}

/// Slow work for the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    List {
        generation: u64,
    },
    Tag {
        jobs: Vec<TagJob>,
        min_confidence: f32,
        /// Re-run detection even if the metadata records the same
        /// settings: the operator asked for it.
        force: bool,
        /// Overwrite metadata that cannot be read (malformed, foreign,
        /// too large): only after the operator confirmed it for this run.
        replace_unreadable: bool,
    },
    /// The same label edit on each image, one conditional write each.
    Review {
        jobs: Vec<TagJob>,
        edit: ReviewEdit,
    },
    /// Take a review write back, if the document is still what it left.
    Undo {
        undo: Box<ReviewUndo>,
    },
    Thumb {
        key: String,
        etag: Option<String>,
        size: u64,
        area: Size,
        /// Instance boxes to draw on it (clamped to the image).
        boxes: Vec<BoundingBox>,
    },
    /// The selection left the image: stop loading its thumbnail.
    CancelThumb,
    /// Read the document of row `key` (revision `rev`) for the detail
    /// pane; answered by [`Msg::Doc`]. A newer request supersedes it.
    LoadDoc {
        key: String,
        metadata_key: String,
        rev: u32,
    },
}

/// Suggestions kept for one document: (document id, recent picks'
/// version) and the names.
pub(crate) type SuggestCache = ((u64, u64), Vec<crate::suggest::Suggestion>);

/// Documents kept for the detail pane, most recently used first.
pub(crate) const DOC_CACHE: usize = 64;

/// The selected row's document, as the detail pane can show it.
pub enum DocState<'a> {
    /// The row has no readable document.
    None,
    Loading,
    Ready(&'a Loaded),
    Failed(&'a str),
}

/// A document as the detail pane keeps it: with what the pane derives
/// from it, computed once when it arrives (never per frame).
#[derive(Debug)]
pub struct Loaded {
    /// Unique per load: what the detail pane's line cache is keyed on
    /// (an address could be reused by the next document).
    pub id: u64,
    pub doc: MetadataDoc,
    pub facts: DocFacts,
}

impl Loaded {
    pub fn new(id: u64, doc: MetadataDoc) -> Loaded {
        let facts = DocFacts::of(&doc);
        Loaded { id, doc, facts }
    }
}

/// A cached document and the row revision it was loaded for.
type CachedDoc = (u32, Result<Arc<Loaded>, String>);

#[derive(Debug, Clone, PartialEq)]
pub struct TagJob {
    pub key: String,
    pub metadata_key: Option<String>,
}

/// Re-running more marked images than this with Rekognition asks first.
pub(crate) const CONFIRM_PAID_ABOVE: usize = 10;

/// The status filter cycle: the statuses an audit asks for first.
pub(crate) const STATUS_CYCLE: [Option<Status>; 8] = [
    None,
    Some(Status::Untagged),
    Some(Status::NeedsReview),
    Some(Status::Stale),
    Some(Status::Failed),
    Some(Status::Malformed),
    Some(Status::Orphan),
    Some(Status::Tagged),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    List,
    Detail,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Filter,
    Threshold,
    /// Label edit for these images (the marked ones, or the selected).
    Edit {
        targets: Vec<TagJob>,
        /// The targets are the marked images: ask before writing.
        marked: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub kind: InputKind,
    pub buf: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Help,
    /// A question; `y` runs the command.
    Confirm {
        text: String,
        cmd: Cmd,
    },
    Input(Input),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Running,
    Done,
    Failed,
}

/// Progress of tagging work since the queue was last empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    pub total: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
}

impl Work {
    pub fn active(&self) -> bool {
        self.done < self.total
    }
}

pub enum ThumbState {
    Loading,
    Ready(Protocol),
    Failed(String),
}

pub struct Thumb {
    pub key: String,
    pub area: Size,
    /// The boxes asked for; the shown image may still have the previous
    /// label's until the new one is encoded.
    pub boxes: Vec<BoundingBox>,
    pub state: ThumbState,
}

/// Whose instance boxes the thumbnail shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BoxChoice {
    /// The first label with boxes, in the detail pane's order.
    #[default]
    Auto,
    /// The label of this name (Auto again if the document has no such
    /// label with boxes).
    Label(String),
    /// None: the bare thumbnail.
    Off,
}

/// What the status line says about the bucket and the detector.
#[derive(Debug, Clone)]
pub struct Header {
    pub bucket: String,
    pub detector: String,
    /// Rekognition: the confirmation states a cost.
    pub paid: bool,
}

pub struct App {
    pub header: Header,
    pub layout: Layout,
    pub keymap: Keymap,
    /// Every colour and style the view draws with.
    pub theme: Theme,
    pub min_confidence: f32,
    pub review_below: f32,
    /// The review rule with its per-label thresholds (the default is
    /// `review_below`).
    pub review_rule: crate::status::ReviewRule,
    /// What a Rekognition call asks for (labels, image properties): part
    /// of the price the confirmations state.
    pub features: crate::detection::Features,

    /// The rows, their counts, the sort, the filters and the view.
    pub rows: Rows,

    pub cursor: usize,
    /// First visible position of the list.
    pub offset: usize,
    pub detail_scroll: u16,
    pub focus: Pane,
    pub marks: HashSet<u32>,
    pub mode: Mode,
    pub message: Option<(Level, String)>,
    /// Said first when the listing fails: the bucket name is also a
    /// folder here (`BucketSpec::folder_hint`).
    pub listing_hint: Option<String>,

    pub listing: Listing,
    pub generation: u64,
    pub work: Work,
    /// Progress of label edits since the last batch ended.
    pub reviews: Work,
    /// The review queue: this session's writes (for undo), recent picks
    /// and the pace.
    pub queue: super::queue::Queue,
    /// Picks the spot check's image (seedable for tests).
    pub rng: fastrand::Rng,
    pub thumb: Option<Thumb>,
    /// Whose boxes the thumbnail shows; back to Auto when the selection
    /// moves to another image.
    pub boxes: BoxChoice,
    /// Recently shown documents by row key (the rows keep only a summary).
    pub docs: lru::LruCache<Box<str>, CachedDoc>,
    /// The document load in flight: row key and revision.
    pub doc_loading: Option<(Box<str>, u32)>,
    /// Documents loaded so far: the next [`Loaded::id`].
    pub docs_loaded: u64,
    /// The detail pane's label lines for the document shown, built once
    /// per document, width and settings (the view fills it while drawing).
    pub detail_cache: RefCell<Option<super::screen::DetailLines>>,
    /// The selected document's suggestions, by document and recent picks.
    pub suggest_cache: RefCell<Option<SuggestCache>>,
    /// The terminal's size in cells.
    pub size: Size,
    /// Thumbnails are drawn (off with `--image-protocol none`).
    pub thumbnails: bool,
    pub quit: bool,
}

impl App {
    pub fn new(
        header: Header,
        layout: Layout,
        keymap: Keymap,
        min_confidence: f32,
        review_below: f32,
    ) -> App {
        App {
            header,
            layout,
            keymap,
            theme: Theme::dark(),
            min_confidence,
            review_below,
            review_rule: review_below.into(),
            features: Default::default(),
            rows: Rows::new(),
            cursor: 0,
            offset: 0,
            detail_scroll: 0,
            focus: Pane::List,
            marks: HashSet::new(),
            mode: Mode::Normal,
            message: None,
            listing_hint: None,
            listing: Listing::Running,
            generation: 0,
            work: Work::default(),
            reviews: Work::default(),
            queue: Default::default(),
            rng: fastrand::Rng::new(),
            thumb: None,
            boxes: BoxChoice::Auto,
            docs: lru::LruCache::new(NonZeroUsize::new(DOC_CACHE).expect("non-zero")),
            doc_loading: None,
            docs_loaded: 0,
            detail_cache: RefCell::new(None),
            suggest_cache: RefCell::new(None),
            size: Size::new(120, 40),
            thumbnails: true,
            quit: false,
        }
    }

    /// The commands to run at start: the first listing.
    pub fn start(&mut self) -> Vec<Cmd> {
        self.reload()
    }

    fn reload(&mut self) -> Vec<Cmd> {
        self.generation += 1;
        self.listing = Listing::Running;
        self.rows.clear();
        self.marks.clear();
        self.refresh_view();
        self.thumb = None;
        self.docs.clear();
        self.doc_loading = None;
        vec![Cmd::List {
            generation: self.generation,
        }]
    }

    pub fn selected_row(&self) -> Option<RowRef<'_>> {
        self.selected_index().map(|i| self.rows.get(i))
    }

    /// The document of `row` for the detail pane: cached for the row's
    /// current revision, or loading.
    pub fn doc_state(&self, row: &RowRef) -> DocState<'_> {
        if !row.readable() {
            return DocState::None;
        }
        match self.docs.peek(row.key) {
            Some((rev, Ok(doc))) if *rev == row.rev => DocState::Ready(doc),
            Some((rev, Err(e))) if *rev == row.rev => DocState::Failed(e),
            _ => DocState::Loading,
        }
    }

    /// The selected row's document, if it is loaded.
    pub fn selected_doc(&self) -> Option<&MetadataDoc> {
        self.selected_loaded().map(|l| &l.doc)
    }

    /// The selected row's document with its derived facts, if loaded.
    pub fn selected_loaded(&self) -> Option<&Loaded> {
        match self.doc_state(&self.selected_row()?) {
            DocState::Ready(d) => Some(d),
            _ => None,
        }
    }

    /// How many times the detail pane built its label lines: once per
    /// document, width and settings, however many frames show them.
    pub fn detail_builds(&self) -> u64 {
        self.detail_cache
            .borrow()
            .as_ref()
            .map_or(0, |c| c.builds())
    }

    fn selected_index(&self) -> Option<u32> {
        self.rows.view().get(self.cursor).copied()
    }

    pub fn count(&self, s: Status) -> usize {
        self.rows.count(s)
    }

    /// Rows per page in the list, from the current terminal size.
    pub fn page_rows(&self) -> usize {
        super::screen::areas(Rect::new(0, 0, self.size.width, self.size.height))
            .list_body
            .height
            .max(1) as usize
    }

    // ------------------------------------------------------------------
    // update

    /// Applies one message; returns the slow work to start.
    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        let before = self.selected_key();
        let mut cmds = match msg {
            Msg::Key(k) => self.on_key(k),
            Msg::Mouse(m) => self.on_mouse(m),
            Msg::Resize(w, h) => {
                self.size = Size::new(w, h);
                // The thumbnail must be re-encoded for the new area.
                self.thumb = None;
                Vec::new()
            }
            Msg::Batch { generation, rows } => self.listed(generation, |t| t.upsert_batch(rows)),
            Msg::Expect { generation, rows } => {
                self.listed(generation, |t| t.reserve(rows as usize))
            }
            Msg::Removed { generation, keys } => self.on_removed(generation, keys),
            Msg::Doc { key, rev, result } => {
                self.on_doc(key, rev, result);
                Vec::new()
            }
            Msg::ListingDone { generation, error } => {
                if generation == self.generation {
                    match error {
                        Some(e) => {
                            self.listing = Listing::Failed;
                            // The hint first: the status line cuts what
                            // does not fit.
                            let text = match &self.listing_hint {
                                Some(hint) => format!("listing failed: {hint}. {e}"),
                                None => format!("listing failed: {e}"),
                            };
                            self.error(text);
                        }
                        None => self.listing = Listing::Done,
                    }
                }
                Vec::new()
            }
            Msg::TagStarted { key } => {
                if let Some(i) = self.rows.find(&key) {
                    self.rows.set_busy(i, true);
                }
                self.work.running += 1;
                Vec::new()
            }
            Msg::Tagged {
                key,
                outcome,
                row,
                review,
                undo,
            } => {
                if let Some(u) = undo {
                    self.queue.written(*u);
                }
                self.on_tagged(key, outcome, row, review)
            }
            Msg::Undone { undo, outcome, row } => self.on_undone(*undo, outcome, row),
            Msg::Thumb {
                key,
                area,
                boxes,
                result,
            } => {
                if let Some(t) = &mut self.thumb
                    && t.key == key
                    && t.area == area
                    && t.boxes == boxes
                {
                    t.state = match result {
                        Ok(p) => ThumbState::Ready(p),
                        Err(e) => ThumbState::Failed(e),
                    };
                }
                Vec::new()
            }
        };
        self.refresh_view();
        self.clamp_scroll();
        if self.selected_key() != before {
            self.detail_scroll = 0;
            self.boxes = BoxChoice::Auto;
        }
        cmds.extend(self.thumb_cmd());
        cmds.extend(self.doc_cmd());
        cmds
    }

    /// Files rows of listing `generation`, unless a newer one began.
    fn listed(&mut self, generation: u64, file: impl FnOnce(&mut Rows)) -> Vec<Cmd> {
        if generation == self.generation {
            file(&mut self.rows);
        }
        Vec::new()
    }

    /// Keys gone from the bucket leave the list (with their marks and
    /// cached documents).
    fn on_removed(&mut self, generation: u64, keys: Vec<String>) -> Vec<Cmd> {
        if generation == self.generation {
            for k in keys {
                if let Some(i) = self.rows.remove(&k) {
                    self.marks.remove(&i);
                    self.docs.pop(k.as_str());
                }
            }
        }
        Vec::new()
    }

    /// Adds or replaces the row of an audited image. Rows carry a summary
    /// only; the document is loaded when the row is selected, so a row
    /// replaced after a write (`fresh`) drops its cached document.
    fn upsert_assessed(&mut self, a: Assessed, fresh: bool) {
        let i = self.rows.upsert(RowSummary::from_assessed(&a));
        if fresh {
            self.docs.pop(self.rows.key(i));
        }
    }

    /// A loaded document: kept if its row has not been replaced since.
    fn on_doc(&mut self, key: String, rev: u32, result: Result<Box<MetadataDoc>, String>) {
        if self
            .doc_loading
            .as_ref()
            .is_some_and(|(k, r)| **k == *key && *r == rev)
        {
            self.doc_loading = None;
        }
        let Some(i) = self.rows.find(&key) else {
            return;
        };
        if self.rows[i as usize].rev == rev {
            self.docs_loaded += 1;
            let id = self.docs_loaded;
            let doc = result.map(|d| Arc::new(Loaded::new(id, *d)));
            self.docs.put(key.into_boxed_str(), (rev, doc));
        }
    }

    /// A document load when the selected row's document is not cached
    /// for its revision.
    fn doc_cmd(&mut self) -> Option<Cmd> {
        let i = self.selected_index()?;
        let row = self.rows.get(i);
        if !row.readable() {
            return None;
        }
        let metadata_key = row.metadata_key.as_deref()?;
        // `get` marks it recently used.
        if self
            .docs
            .get(row.key)
            .is_some_and(|(rev, _)| *rev == row.rev)
        {
            return None;
        }
        let loading: (Box<str>, u32) = (row.key.into(), row.rev);
        if self.doc_loading.as_ref() == Some(&loading) {
            return None;
        }
        let cmd = Cmd::LoadDoc {
            key: row.key.to_string(),
            metadata_key: metadata_key.to_string(),
            rev: row.rev,
        };
        self.doc_loading = Some(loading);
        Some(cmd)
    }

    fn selected_key(&self) -> Option<Box<str>> {
        self.selected_row().map(|r| r.key.into())
    }

    fn info(&mut self, text: impl Into<String>) {
        self.message = Some((Level::Info, text.into()));
    }

    fn error(&mut self, text: impl Into<String>) {
        self.message = Some((Level::Error, text.into()));
    }

    fn on_tagged(
        &mut self,
        key: String,
        outcome: Outcome,
        row: Option<Box<Assessed>>,
        review: bool,
    ) -> Vec<Cmd> {
        if let Some(i) = self.rows.find(&key) {
            self.rows.set_busy(i, false);
        }
        if let Some(a) = row {
            // A row that was in another listing generation is still shown
            // as soon as it is written.
            self.upsert_assessed(*a, true);
        }
        if review {
            self.reviews.done += 1;
        } else {
            self.work.running = self.work.running.saturating_sub(1);
            self.work.done += 1;
        }
        self.report(&key, &outcome, review);
        if review {
            if !self.reviews.active() {
                self.finish_reviews();
            }
        } else if !self.work.active() {
            self.finish_work();
        }
        Vec::new()
    }

    /// The message line for a finished job.
    fn report(&mut self, key: &str, outcome: &Outcome, review: bool) {
        let shown = for_terminal(key).into_owned();
        match outcome {
            Outcome::Tagged {
                headline, labels, ..
            } => {
                let best = headline
                    .as_ref()
                    .map(|(n, c)| {
                        format!(
                            ", headline {} {:.1}",
                            for_terminal(n),
                            crate::status::shown(*c)
                        )
                    })
                    .unwrap_or_default();
                if review {
                    if !self.reviews.active() {
                        let done = if self.left_to_review() == 0 {
                            "; no image left to review in this view"
                        } else {
                            ""
                        };
                        self.info(format!(
                            "review saved for {shown}: {labels} labels{best}{done}"
                        ));
                    }
                } else if !self.work.active() {
                    self.info(format!("tagged {shown}: {labels} labels{best}"));
                }
            }
            Outcome::Unchanged { .. } => {
                if !self.work.active() {
                    self.info(format!("{shown} already tagged with these settings"));
                }
            }
            Outcome::Failed { code, message, .. } => {
                self.count_problem(review);
                self.error(format!(
                    "{shown}: {}: {} (recorded)",
                    for_terminal(code),
                    for_terminal(message)
                ));
            }
            Outcome::Skipped { reason } => {
                self.count_problem(review);
                self.error(format!("{shown}: {}", for_terminal(reason)));
            }
            Outcome::Conflict { metadata_key } => {
                self.count_problem(review);
                self.error(format!(
                    "{} changed while {shown} was being {}; not overwritten (press r to reload)",
                    for_terminal(metadata_key),
                    if review { "edited" } else { "tagged" }
                ));
            }
            Outcome::Retry { message } => {
                self.count_problem(review);
                self.error(format!("{shown}: {}; try again", for_terminal(message)));
            }
            Outcome::Fatal { message } => {
                self.count_problem(review);
                self.error(format!("stopped: {}", for_terminal(message)));
            }
        }
    }

    fn count_problem(&mut self, review: bool) {
        if review {
            self.reviews.failed += 1;
        } else {
            self.work.failed += 1;
        }
    }

    /// The last edit of a batch ended: sums up a batch of more than one
    /// image (a problem's own message stays if it was the only one).
    fn finish_reviews(&mut self) {
        let w = self.reviews;
        if w.total > 1 {
            let text = format!(
                "edit saved on {} of {} images, {} not saved",
                w.done - w.failed,
                w.total,
                w.failed
            );
            if w.failed == 0 {
                self.info(text);
            } else if w.failed > 1 || !matches!(self.message, Some((Level::Error, _))) {
                self.error(text);
            }
        }
        self.reviews = Work::default();
    }

    /// The queue ran empty: sums up a run of more than one image.
    fn finish_work(&mut self) {
        let w = self.work;
        if w.total > 1 {
            let text = format!(
                "done: {} of {} images, {} with problems",
                w.done - w.failed,
                w.total,
                w.failed
            );
            if w.failed == 0 {
                self.info(text);
            } else if !matches!(self.message, Some((Level::Error, _))) {
                self.error(text);
            }
        }
        self.work = Work::default();
    }

    // ------------------------------------------------------------------
    // view maintenance

    /// Brings the row table's view up to date, keeping the selected row
    /// selected.
    pub(crate) fn refresh_view(&mut self) {
        let keep = self.selected_index();
        if !self.rows.refresh() {
            return;
        }
        let view = self.rows.view();
        // Still at the cursor (rows appended after it, as a listing by
        // name does): no search of the view, which at a million rows cost
        // every page filed a scan up to the cursor.
        if let Some(k) = keep
            && view.get(self.cursor) != Some(&k)
            && let Some(pos) = view.iter().position(|&i| i == k)
        {
            self.cursor = pos;
        }
        if self.cursor >= view.len() {
            self.cursor = view.len().saturating_sub(1);
        }
    }

    fn clamp_scroll(&mut self) {
        let page = self.page_rows();
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + page {
            self.offset = self.cursor + 1 - page;
        }
        let max_offset = self.rows.view().len().saturating_sub(page);
        self.offset = self.offset.min(max_offset);
    }

    /// A thumbnail request when the selected image (or the pane) changed.
    fn thumb_cmd(&mut self) -> Option<Cmd> {
        let area = super::screen::areas(Rect::new(0, 0, self.size.width, self.size.height)).thumb;
        let area = Size::new(area.width, area.height);
        let want = self
            .selected_row()
            .filter(|_| self.thumbnails && area.width > 2 && area.height > 1)
            .and_then(|r| {
                let img = r.image.as_ref()?;
                Some((
                    r.key.to_string(),
                    img.etag.as_deref().map(str::to_string),
                    img.size,
                ))
            });
        let Some((key, etag, size)) = want else {
            let had = self.thumb.take().is_some();
            return had.then_some(Cmd::CancelThumb);
        };
        let boxes = self.shown_boxes();
        match &mut self.thumb {
            Some(t) if t.key == key && t.area == area => {
                if t.boxes == boxes {
                    return None;
                }
                // Other boxes on the same image: the image shown stays
                // until the new one is encoded (the decoded thumbnail is
                // cached, so only drawing and encoding repeat).
                t.boxes = boxes.clone();
            }
            _ => {
                self.thumb = Some(Thumb {
                    key: key.clone(),
                    area,
                    boxes: boxes.clone(),
                    state: ThumbState::Loading,
                })
            }
        }
        Some(Cmd::Thumb {
            key,
            etag,
            size,
            area,
            boxes,
        })
    }

    /// The label of `doc` whose boxes the thumbnail shows, by index.
    pub(crate) fn boxed_label(&self, doc: &Loaded) -> Option<usize> {
        let with_boxes = &doc.facts.with_boxes;
        match &self.boxes {
            BoxChoice::Off => None,
            BoxChoice::Label(name) => with_boxes
                .iter()
                .copied()
                .find(|&i| doc.doc.labels[i].name == *name)
                .or_else(|| with_boxes.first().copied()),
            BoxChoice::Auto => with_boxes.first().copied(),
        }
    }

    /// The boxes to draw on the selected image's thumbnail.
    fn shown_boxes(&self) -> Vec<BoundingBox> {
        self.selected_loaded()
            .and_then(|d| {
                self.boxed_label(d)
                    .map(|i| boxes::label_boxes(&d.doc.labels[i]))
            })
            .unwrap_or_default()
    }

    /// Moves to the next (`step` 1) or previous (-1) label with boxes;
    /// past the last comes the bare thumbnail, then the first again.
    fn cycle_boxes(&mut self, step: isize) {
        let Some(loaded) = self.selected_loaded() else {
            return;
        };
        let doc = &loaded.doc;
        let with_boxes = &loaded.facts.with_boxes;
        if with_boxes.is_empty() {
            self.info("no label of this image has boxes");
            return;
        }
        let n = with_boxes.len() as isize;
        // Positions 0..n are the labels, n is "no boxes".
        let at = match self.boxed_label(loaded) {
            Some(i) => with_boxes.iter().position(|&j| j == i).unwrap_or(0) as isize,
            None => n,
        };
        let next = (at + step).rem_euclid(n + 1) as usize;
        let choice = match with_boxes.get(next) {
            Some(&i) => BoxChoice::Label(doc.labels[i].name.clone()),
            None => BoxChoice::Off,
        };
        let text = match &choice {
            BoxChoice::Label(name) => {
                let count = boxes::label_boxes(
                    doc.labels
                        .iter()
                        .find(|l| l.name == *name)
                        .expect("a label of the document"),
                )
                .len();
                format!("boxes: {} ×{count}", for_terminal(name))
            }
            _ => "boxes: none".to_string(),
        };
        self.boxes = choice;
        self.info(text);
    }

    // ------------------------------------------------------------------
    // input

    fn on_key(&mut self, k: KeyEvent) -> Vec<Cmd> {
        if k.kind == KeyEventKind::Release {
            return Vec::new();
        }
        // Ctrl-C always quits, whatever the mode or the keymap says.
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Vec::new();
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.on_action_key(k),
            Mode::Help => {
                // Any key closes the help; q still quits.
                if self.keymap.action(&k) == Some(Action::Quit) {
                    self.quit = true;
                }
                Vec::new()
            }
            Mode::Confirm { text, cmd } => match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => self.start_cmd(cmd),
                KeyCode::Enter if !replaces(&cmd) => self.start_cmd(cmd),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                    self.info("cancelled");
                    Vec::new()
                }
                _ => {
                    self.mode = Mode::Confirm { text, cmd };
                    Vec::new()
                }
            },
            Mode::Input(input) => self.on_input_key(input, k),
        }
    }

    fn on_input_key(&mut self, mut input: Input, k: KeyEvent) -> Vec<Cmd> {
        match k.code {
            KeyCode::Esc => {
                if input.kind == InputKind::Filter {
                    self.rows.clear_text_filter();
                }
                return Vec::new();
            }
            KeyCode::Enter => return self.submit_input(input),
            KeyCode::Backspace => {
                input.buf.pop();
            }
            KeyCode::Tab if matches!(input.kind, InputKind::Edit { .. }) => {
                // Completes the label being typed: recent picks first,
                // then the taxonomy's names.
                if let Some(done) = crate::suggest::complete_edit(&input.buf, self.queue.recent()) {
                    input.buf = done;
                }
            }
            KeyCode::Char(c)
                if !c.is_control()
                    && !k.modifiers.contains(KeyModifiers::CONTROL)
                    && input.buf.chars().count() < 200 =>
            {
                input.buf.push(c);
            }
            _ => {}
        }
        if input.kind == InputKind::Filter {
            // The filter applies as it is typed; a longer filter only
            // narrows the view it already has.
            self.rows.set_text_filter(input.buf.clone());
        }
        self.mode = Mode::Input(input);
        Vec::new()
    }

    fn submit_input(&mut self, input: Input) -> Vec<Cmd> {
        match input.kind {
            InputKind::Filter => {
                self.rows.set_text_filter(input.buf.trim().to_string());
                Vec::new()
            }
            InputKind::Threshold => match crate::config::parse_confidence(&input.buf) {
                Ok(v) => {
                    self.min_confidence = v;
                    self.info(format!(
                        "MinConfidence {v}: press t to re-run the selected or marked images"
                    ));
                    Vec::new()
                }
                Err(e) => {
                    self.error(format!("MinConfidence: {e}"));
                    Vec::new()
                }
            },
            InputKind::Edit { targets, marked } => match ReviewEdit::parse(&input.buf) {
                Ok(edit) if edit_is_empty(&edit) => {
                    self.info("no change");
                    Vec::new()
                }
                Ok(edit) => {
                    // Typed names rank the suggestions and complete first
                    // next time, like digit picks.
                    for name in &edit.add {
                        self.queue.picked(name);
                    }
                    let cmd = Cmd::Review {
                        jobs: targets,
                        edit,
                    };
                    if marked {
                        self.ask_bulk_edit(cmd);
                        Vec::new()
                    } else {
                        let done = self.selected_index();
                        let cmds = self.start_cmd(cmd);
                        self.next_in_queue(done);
                        cmds
                    }
                }
                Err(e) => {
                    self.error(format!("labels: {e}"));
                    Vec::new()
                }
            },
        }
    }

    fn on_action_key(&mut self, k: KeyEvent) -> Vec<Cmd> {
        if k.code == KeyCode::Esc {
            // Esc clears marks, then the filters.
            if !self.marks.is_empty() {
                self.marks.clear();
            } else if !self.rows.text_filter().is_empty() || self.rows.status_filter().is_some() {
                self.rows.clear_filters();
            }
            self.message = None;
            return Vec::new();
        }
        let Some(action) = self.keymap.action(&k) else {
            return Vec::new();
        };
        if action == Action::Pick {
            // The n-th key bound to `pick` picks suggestion n.
            let n = self.keymap.position(Action::Pick, &k).unwrap_or(0);
            return self.pick(n);
        }
        self.act(action)
    }

    /// Runs one action in the normal mode.
    pub fn act(&mut self, action: Action) -> Vec<Cmd> {
        let page = self.page_rows();
        match action {
            Action::Down => self.move_by(1),
            Action::Up => self.move_by(-1),
            Action::PageDown => self.move_by(page as isize),
            Action::PageUp => self.move_by(-(page as isize)),
            Action::Top => {
                if self.focus == Pane::Detail {
                    self.detail_scroll = 0;
                } else {
                    self.cursor = 0;
                }
            }
            Action::Bottom => {
                if self.focus == Pane::List {
                    self.cursor = self.rows.view().len().saturating_sub(1);
                }
            }
            Action::SwitchPane => {
                self.focus = match self.focus {
                    Pane::List => Pane::Detail,
                    Pane::Detail => Pane::List,
                }
            }
            Action::Tag => return self.tag_selected(),
            Action::TagUntagged => self.ask_tag_untagged(),
            Action::RaiseThreshold => self.step_threshold(5.0),
            Action::LowerThreshold => self.step_threshold(-5.0),
            Action::SetThreshold => {
                self.mode = Mode::Input(Input {
                    kind: InputKind::Threshold,
                    buf: String::new(),
                })
            }
            Action::Mark => self.toggle_mark(),
            Action::Filter => {
                self.mode = Mode::Input(Input {
                    kind: InputKind::Filter,
                    buf: self.rows.text_filter().to_string(),
                })
            }
            Action::Sort => {
                let sort = self.rows.sort().next();
                self.rows.set_sort(sort);
                self.info(format!("sorted by {}", sort.label()));
            }
            Action::StatusFilter => {
                let pos = STATUS_CYCLE
                    .iter()
                    .position(|s| *s == self.rows.status_filter())
                    .unwrap_or(0);
                self.rows
                    .set_status_filter(STATUS_CYCLE[(pos + 1) % STATUS_CYCLE.len()]);
            }
            Action::Edit => self.start_edit(),
            Action::Accept => return self.accept(),
            Action::Pick => {}
            Action::Undo => return self.undo(),
            Action::NextBoxes => self.cycle_boxes(1),
            Action::PrevBoxes => self.cycle_boxes(-1),
            Action::SpotCheck => self.spot_check(),
            Action::Reload => return self.reload(),
            Action::Help => self.mode = Mode::Help,
            Action::Quit => self.quit = true,
        }
        Vec::new()
    }

    /// Moves MinConfidence by `step` on the 5-grid (an off-grid value
    /// snaps to the grid first).
    fn step_threshold(&mut self, step: f32) {
        let snapped = (self.min_confidence / 5.0).round() * 5.0;
        let base = if (snapped - self.min_confidence).abs() < 0.01 {
            self.min_confidence
        } else {
            snapped - step
        };
        self.min_confidence = (base + step).clamp(0.0, 100.0);
        self.info(format!(
            "MinConfidence {}: press t to re-run the selected or marked images",
            self.min_confidence
        ));
    }

    fn toggle_mark(&mut self) {
        if let Some(i) = self.selected_index() {
            if !self.marks.remove(&i) {
                self.marks.insert(i);
            }
            self.move_by(1);
        }
    }

    /// Opens the label edit prompt for the marked images, or else the
    /// selected one; only images with labels to edit are taken.
    fn start_edit(&mut self) {
        if !self.marks.is_empty() {
            let mut targets: Vec<u32> = self.marks.iter().copied().collect();
            targets.sort_by(|a, b| self.rows.key(*a).cmp(self.rows.key(*b)));
            let targets: Vec<TagJob> = targets
                .into_iter()
                .filter(|&i| editable(&self.rows[i as usize]))
                .filter_map(|i| self.job_for(i))
                .collect();
            if targets.is_empty() {
                self.error("none of the marked images has labels to edit: tag them first");
                return;
            }
            self.mode = Mode::Input(Input {
                kind: InputKind::Edit {
                    targets,
                    marked: true,
                },
                buf: String::new(),
            });
            return;
        }
        match self.selected_row() {
            Some(r) if r.is_orphan() => self.error("orphan metadata: its image is gone"),
            Some(r) if !editable(&r) => {
                self.error("tag this image first; then its labels can be edited")
            }
            Some(r) => {
                let targets = vec![TagJob {
                    key: r.key.to_string(),
                    metadata_key: r.metadata_key.as_deref().map(str::to_string),
                }];
                self.mode = Mode::Input(Input {
                    kind: InputKind::Edit {
                        targets,
                        marked: false,
                    },
                    buf: String::new(),
                });
            }
            None => {}
        }
    }

    // ------------------------------------------------------------------
    // the review queue: accept, pick, undo, next

    /// `a`: confirms the headline as it is, on the marked images (after a
    /// question) or the selected one, then moves on.
    fn accept(&mut self) -> Vec<Cmd> {
        let edit = ReviewEdit {
            accept: true,
            ..Default::default()
        };
        self.review_selected(edit)
    }

    /// A digit: replaces the selected image's weak headline with the n-th
    /// suggestion (one conditional write), then moves on.
    fn pick(&mut self, n: usize) -> Vec<Cmd> {
        if !matches!(self.selected_row(), Some(r) if r.status == Some(Status::NeedsReview)) {
            self.info("suggestions are for images that need review");
            return Vec::new();
        }
        let Some(loaded) = self.selected_loaded() else {
            self.info("the document is still loading");
            return Vec::new();
        };
        let Some(headline) = loaded.doc.headline().map(|l| l.name.clone()) else {
            self.error("no headline to replace: e adds labels by hand");
            return Vec::new();
        };
        let Some(name) = self.suggestions().get(n).cloned() else {
            self.info(format!("no suggestion {}", n + 1));
            return Vec::new();
        };
        self.queue.picked(&name);
        let edit = ReviewEdit {
            replace: vec![(headline, name)],
            ..Default::default()
        };
        self.review_selected(edit)
    }

    /// One review edit on the selected image (or, for an accept, the marked
    /// ones after a question), then on to the next image needing review.
    fn review_selected(&mut self, edit: ReviewEdit) -> Vec<Cmd> {
        if edit.accept && !self.marks.is_empty() {
            self.start_edit_marked(edit);
            return Vec::new();
        }
        let Some(i) = self.selected_index() else {
            return Vec::new();
        };
        let row = self.rows.get(i);
        if row.is_orphan() || !editable(&row) {
            self.error("tag this image first; then its labels can be reviewed");
            return Vec::new();
        }
        let Some(job) = self.job_for(i) else {
            return Vec::new();
        };
        let cmds = self.start_cmd(Cmd::Review {
            jobs: vec![job],
            edit,
        });
        self.next_in_queue(Some(i));
        cmds
    }

    /// Asks before an accept goes to every marked image that has labels.
    fn start_edit_marked(&mut self, edit: ReviewEdit) {
        let mut targets: Vec<u32> = self.marks.iter().copied().collect();
        targets.sort_by(|a, b| self.rows.key(*a).cmp(self.rows.key(*b)));
        let jobs: Vec<TagJob> = targets
            .into_iter()
            .filter(|&i| editable(&self.rows[i as usize]))
            .filter_map(|i| self.job_for(i))
            .collect();
        if jobs.is_empty() {
            self.error("none of the marked images has labels to review: tag them first");
            return;
        }
        self.ask_bulk_edit(Cmd::Review { jobs, edit });
    }

    /// Moves the selection to the next image of the view (in its order,
    /// wrapping) that still needs review and is not `done` or busy; says
    /// so when none is left.
    fn next_in_queue(&mut self, done: Option<u32>) {
        self.focus = Pane::List;
        let view = self.rows.view();
        let n = view.len();
        let next = (1..=n).map(|step| (self.cursor + step) % n).find(|&pos| {
            let i = view[pos];
            let r = self.rows.get(i);
            Some(i) != done && !r.busy && r.status == Some(Status::NeedsReview)
        });
        match next {
            Some(pos) => self.cursor = pos,
            None => self.info("no image left to review in this view"),
        }
    }

    /// Images of the view that need review and no job is on.
    fn left_to_review(&self) -> usize {
        self.rows
            .view()
            .iter()
            .filter(|&&i| {
                let r = self.rows.get(i);
                !r.busy && r.status == Some(Status::NeedsReview)
            })
            .count()
    }

    /// `u`: takes back this session's newest review write that is still
    /// to undo, if the document is still what it left.
    fn undo(&mut self) -> Vec<Cmd> {
        let Some(undo) = self.queue.pop_undo() else {
            self.info("nothing to undo");
            return Vec::new();
        };
        if let Some(i) = self.rows.find(&undo.image_key) {
            self.rows.set_busy(i, true);
            self.select_index(i);
        }
        self.info(format!(
            "undoing the review of {}…",
            for_terminal(&undo.image_key)
        ));
        vec![Cmd::Undo {
            undo: Box::new(undo),
        }]
    }

    fn on_undone(
        &mut self,
        undo: ReviewUndo,
        outcome: Outcome,
        row: Option<Box<Assessed>>,
    ) -> Vec<Cmd> {
        if let Some(i) = self.rows.find(&undo.image_key) {
            self.rows.set_busy(i, false);
        }
        if let Some(a) = row {
            self.upsert_assessed(*a, true);
        }
        let shown = for_terminal(&undo.image_key).into_owned();
        match outcome {
            Outcome::Tagged { .. } => {
                self.queue.undone();
                self.info(format!("undone: {shown} is as it was before the review"));
            }
            Outcome::Conflict { .. } => self.error(format!(
                "{shown} changed since that review: left alone, not undone"
            )),
            // The store failed past its retries: nothing was written, and
            // the undo is kept rather than lost.
            Outcome::Retry { message } => {
                self.error(format!(
                    "{shown} not undone yet ({}): u tries again",
                    for_terminal(&message)
                ));
                self.queue.restore_undo(undo);
            }
            other => self.report(&undo.image_key, &other, true),
        }
        Vec::new()
    }

    /// Selects row `i` if the view shows it.
    fn select_index(&mut self, i: u32) {
        if let Some(pos) = self.rows.view().iter().position(|&r| r == i) {
            self.focus = Pane::List;
            self.cursor = pos;
        }
    }

    /// The selected document's suggested replacements for its headline.
    pub fn suggestions(&self) -> Vec<String> {
        let ranked = self.ranked_suggestions();
        ranked.into_iter().map(|s| s.name).collect()
    }

    /// [`suggestions`](Self::suggestions) with where each came from,
    /// computed once per document and recent picks.
    pub(crate) fn ranked_suggestions(&self) -> Vec<crate::suggest::Suggestion> {
        let Some(loaded) = self.selected_loaded() else {
            return Vec::new();
        };
        let key = (loaded.id, self.queue.recent_version);
        let mut cache = self.suggest_cache.borrow_mut();
        if cache.as_ref().map(|(k, _)| *k) != Some(key) {
            let ranked = crate::suggest::ranked(&loaded.doc, self.queue.recent());
            *cache = Some((key, ranked));
        }
        cache.as_ref().map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// Asks before one edit goes to every marked image.
    fn ask_bulk_edit(&mut self, cmd: Cmd) {
        let Cmd::Review { jobs, edit } = &cmd else {
            return;
        };
        let n = jobs.len();
        let skipped = self.marks.len().saturating_sub(n);
        let skipped = if skipped > 0 {
            format!(" ({skipped} other marked without labels to edit)")
        } else {
            String::new()
        };
        let text = format!(
            "Apply {} to {n} marked image{}?{skipped}",
            edit_text(edit),
            if n == 1 { "" } else { "s" }
        );
        self.mode = Mode::Confirm { text, cmd };
    }

    /// Jumps to a random image of the view that is tagged and that no one
    /// has reviewed: a quality check on what looked fine.
    fn spot_check(&mut self) {
        let candidates: Vec<usize> = self
            .rows
            .view()
            .iter()
            .enumerate()
            .filter(|(_, i)| unreviewed_tagged(&self.rows[**i as usize]))
            .map(|(pos, _)| pos)
            .collect();
        if candidates.is_empty() {
            self.info("no unreviewed tagged image in this view");
            return;
        }
        self.focus = Pane::List;
        self.cursor = candidates[self.rng.usize(..candidates.len())];
        self.info(format!(
            "spot check: one of {} unreviewed tagged images (x for another)",
            candidates.len()
        ));
    }

    fn move_by(&mut self, delta: isize) {
        if self.focus == Pane::Detail {
            let d = self.detail_scroll as isize + delta;
            self.detail_scroll = d.clamp(0, u16::MAX as isize) as u16;
            return;
        }
        if self.rows.view().is_empty() {
            return;
        }
        let last = self.rows.view().len() as isize - 1;
        self.cursor = (self.cursor as isize + delta).clamp(0, last) as usize;
    }

    fn job_for(&self, i: u32) -> Option<TagJob> {
        let r = self.rows.get(i);
        (!r.is_orphan()).then(|| TagJob {
            key: r.key.to_string(),
            metadata_key: r.metadata_key.as_deref().map(str::to_string),
        })
    }

    fn tag_selected(&mut self) -> Vec<Cmd> {
        let mut targets: Vec<u32> = if self.marks.is_empty() {
            self.selected_index().into_iter().collect()
        } else {
            self.marks.iter().copied().collect()
        };
        targets.sort_by(|a, b| self.rows.key(*a).cmp(self.rows.key(*b)));
        let jobs: Vec<TagJob> = targets.iter().filter_map(|&i| self.job_for(i)).collect();
        if jobs.is_empty() {
            if self.selected_row().is_some_and(|r| r.is_orphan()) {
                self.error("orphan metadata: its image is gone, nothing to tag");
            }
            return Vec::new();
        }
        self.marks.clear();
        let n = jobs.len();
        let unreadable = targets
            .iter()
            .filter(|&&i| self.rows[i as usize].status == Some(Status::Malformed))
            .count();
        let cmd = Cmd::Tag {
            jobs,
            min_confidence: self.min_confidence,
            force: true,
            replace_unreadable: unreadable > 0,
        };
        // Never overwrite what imgtag cannot read without asking (the
        // contract's rule): an explicit yes for this one run.
        if unreadable > 0 {
            self.mode = Mode::Confirm {
                text: replace_question(n, unreadable, self.paid_phrase(n)),
                cmd,
            };
            return Vec::new();
        }
        // A large marked set costs money with Rekognition: say how much.
        if self.header.paid && n > CONFIRM_PAID_ABOVE {
            self.mode = Mode::Confirm {
                text: format!(
                    "Re-run {n} marked images {}, at MinConfidence {}?",
                    DetectorKind::Rekognition.cost_phrase_with(n, self.features),
                    self.min_confidence
                ),
                cmd,
            };
            return Vec::new();
        }
        self.start_cmd(cmd)
    }

    /// The cost of tagging `n` images, if it has one worth stating.
    fn paid_phrase(&self, n: usize) -> Option<String> {
        (self.header.paid && n > CONFIRM_PAID_ABOVE)
            .then(|| DetectorKind::Rekognition.cost_phrase_with(n, self.features))
    }

    fn ask_tag_untagged(&mut self) {
        let jobs: Vec<TagJob> = self
            .rows
            .iter()
            .filter(|r| r.status == Some(Status::Untagged) && !r.busy)
            .filter_map(|r| self.job_for(r.pos))
            .collect();
        if jobs.is_empty() {
            self.info("no untagged images");
            return;
        }
        let n = jobs.len();
        let cost = if self.header.paid {
            format!(
                " {}",
                DetectorKind::Rekognition.cost_phrase_with(n, self.features)
            )
        } else {
            format!(" with the {} model (no cost)", self.header.detector)
        };
        let partial = if self.listing == Listing::Running {
            " (listing still in progress: more may follow)"
        } else {
            ""
        };
        let text = format!(
            "Tag {n} untagged image{}{cost} at MinConfidence {}?{partial}",
            if n == 1 { "" } else { "s" },
            self.min_confidence
        );
        self.mode = Mode::Confirm {
            text,
            cmd: Cmd::Tag {
                jobs,
                min_confidence: self.min_confidence,
                force: false,
                replace_unreadable: false,
            },
        };
    }

    /// Bookkeeping for a command the user started.
    fn start_cmd(&mut self, cmd: Cmd) -> Vec<Cmd> {
        if let Cmd::Tag { jobs, .. } = &cmd {
            for j in jobs {
                if let Some(i) = self.rows.find(&j.key) {
                    self.rows.set_busy(i, true);
                }
            }
            self.work.total += jobs.len();
            self.info(format!(
                "tagging {} image{} at MinConfidence {}…",
                jobs.len(),
                if jobs.len() == 1 { "" } else { "s" },
                self.min_confidence
            ));
        }
        if let Cmd::Review { jobs, edit } = &cmd {
            for j in jobs {
                if let Some(i) = self.rows.find(&j.key) {
                    self.rows.set_busy(i, true);
                }
            }
            self.reviews.total += jobs.len();
            if jobs.len() > 1 {
                self.marks.clear();
                self.info(format!(
                    "applying {} to {} images…",
                    edit_text(edit),
                    jobs.len()
                ));
            }
        }
        vec![cmd]
    }

    fn on_mouse(&mut self, m: MouseEvent) -> Vec<Cmd> {
        if self.mode != Mode::Normal {
            return Vec::new();
        }
        let areas = super::screen::areas(Rect::new(0, 0, self.size.width, self.size.height));
        let inside = |r: Rect| {
            m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height
        };
        match m.kind {
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let delta = if m.kind == MouseEventKind::ScrollDown {
                    3
                } else {
                    -3
                };
                let prev = self.focus;
                self.focus = if inside(areas.detail) {
                    Pane::Detail
                } else {
                    Pane::List
                };
                self.move_by(delta);
                self.focus = prev;
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if inside(areas.list_body) {
                    let pos = self.offset + (m.row - areas.list_body.y) as usize;
                    if pos < self.rows.view().len() {
                        self.cursor = pos;
                    }
                    self.focus = Pane::List;
                } else if inside(areas.detail) {
                    self.focus = Pane::Detail;
                }
            }
            _ => {}
        }
        Vec::new()
    }
}

/// An image whose labels can be edited: tagged, readable, not an orphan.
fn editable(r: &Row) -> bool {
    !r.is_orphan() && r.readable() && r.problem.is_none()
}

/// Tagged and never reviewed (`ImgTag.Review` absent or empty).
fn unreviewed_tagged(r: &Row) -> bool {
    r.status == Some(Status::Tagged) && !r.busy && !r.reviewed()
}

/// A tagging command that overwrites unreadable documents: Enter alone
/// does not confirm it.
fn replaces(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Tag {
            replace_unreadable: true,
            ..
        }
    )
}

/// The question before tagging overwrites unreadable documents.
fn replace_question(n: usize, unreadable: usize, cost: Option<String>) -> String {
    let what = if unreadable == 1 {
        "the unreadable metadata document (malformed or not imgtag's)".to_string()
    } else {
        format!("{unreadable} unreadable metadata documents (malformed or not imgtag's)")
    };
    let cost = cost
        .map(|c| format!(" Tagging {n} images {c}."))
        .unwrap_or_default();
    format!("Replace {what}? It is overwritten and lost.{cost} y/N")
}

fn edit_is_empty(e: &ReviewEdit) -> bool {
    e.add.is_empty()
        && e.remove.is_empty()
        && e.flag.is_empty()
        && e.replace.is_empty()
        && !e.accept
}

/// An edit as the operator typed it: `+Cat -Feline !Pet` (names with
/// spaces quoted).
pub(crate) fn edit_text(e: &ReviewEdit) -> String {
    let name = |n: &String| {
        if n.contains(char::is_whitespace) {
            format!("\"{n}\"")
        } else {
            n.clone()
        }
    };
    let parts = (e.add.iter().map(|n| format!("+{}", name(n))))
        .chain(e.remove.iter().map(|n| format!("-{}", name(n))))
        .chain(e.flag.iter().map(|n| format!("!{}", name(n))))
        .chain(
            e.replace
                .iter()
                .map(|(o, n)| format!("{}→{}", name(o), name(n))),
        )
        .chain(e.accept.then(|| "accept".to_string()));
    parts.collect::<Vec<_>>().join(" ")
}
