//! The TUI's state and its one update function (Elm style): every input
//! event, listing page, thumbnail and tagging result arrives as a [`Msg`];
//! [`App::update`] changes the state and returns the slow work to start as
//! [`Cmd`]s, which the runtime runs off the UI task.

use std::collections::HashSet;
use std::hash::BuildHasher;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Rect, Size};
use ratatui_image::protocol::Protocol;

use crate::catalog::Assessed;
use crate::contract::{KeyKind, Layout, MetadataDoc, Status};
use crate::detection::DetectorKind;
use crate::pipeline::{Outcome, ReviewEdit};
use crate::sanitize::for_terminal;
use crate::storage::ObjectInfo;

use super::keys::{Action, Keymap};
use super::view;

/// Everything that can happen to the app.
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// Assessed images (then orphan metadata) from listing `generation`,
    /// in listing order.
    Rows {
        generation: u64,
        rows: Vec<Assessed>,
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
    },
    /// A thumbnail is ready (or failed) for `key` at `area` cells.
    Thumb {
        key: String,
        area: Size,
        result: Result<Protocol, String>,
    },
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
    },
    Review {
        key: String,
        metadata_key: Option<String>,
        edit: ReviewEdit,
    },
    Thumb {
        key: String,
        etag: Option<String>,
        size: u64,
        area: Size,
    },
    /// The selection left the image: stop loading its thumbnail.
    CancelThumb,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagJob {
    pub key: String,
    pub metadata_key: Option<String>,
}

/// One line of the list: an image with its metadata, or orphan metadata.
#[derive(Debug, Clone)]
pub struct Row {
    /// The image key, or the metadata key of an orphan.
    pub key: String,
    pub image: Option<ObjectInfo>,
    pub metadata_key: Option<String>,
    pub key_kind: Option<KeyKind>,
    /// None: the metadata could not be read (see `problem`).
    pub status: Option<Status>,
    pub doc: Option<MetadataDoc>,
    /// Why the metadata is malformed, unreadable or failed.
    pub problem: Option<String>,
    /// A job on this image is queued or running.
    pub busy: bool,
    /// The best label's confidence, cached for sorting.
    best_conf: Option<f32>,
    /// Key, label and parent names, lowercased and joined: what `/`
    /// searches, built once so filtering a large bucket is one scan a row.
    search: Box<str>,
}

impl Row {
    pub fn from_assessed(a: Assessed) -> Row {
        let problem = a
            .read_error
            .clone()
            .or_else(|| {
                a.read
                    .as_ref()
                    .and_then(|r| r.as_ref().err())
                    .map(|m| m.to_string())
            })
            .or_else(|| {
                a.doc()
                    .and_then(|d| d.doc.error())
                    .map(|e| format!("{}: {}", e.code, e.message))
            });
        let key = a.key().to_string();
        let doc = match a.read {
            Some(Ok(p)) => Some(p.doc),
            _ => None,
        };
        let best_conf = doc
            .as_ref()
            .and_then(|d| d.headline())
            .map(|l| l.confidence);
        let mut search = key.to_lowercase();
        if let Some(d) = &doc {
            for l in &d.labels {
                search.push('\n');
                search.push_str(&l.name.to_lowercase());
                for p in &l.parents {
                    search.push('\n');
                    search.push_str(&p.name.to_lowercase());
                }
            }
        }
        Row {
            search: search.into_boxed_str(),
            key,
            metadata_key: a.metadata.map(|m| m.key),
            image: a.image,
            key_kind: a.key_kind,
            status: a.status,
            doc,
            problem,
            busy: false,
            best_conf,
        }
    }

    pub fn best(&self) -> Option<(&str, f32)> {
        self.doc
            .as_ref()
            .and_then(|d| d.headline())
            .map(|l| (l.name.as_str(), l.confidence))
    }

    pub fn is_orphan(&self) -> bool {
        self.image.is_none()
    }

    /// `needle` is lowercase and has no newline.
    fn matches_text(&self, needle: &str) -> bool {
        self.search.contains(needle)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    LowestConfidence,
    Newest,
}

impl Sort {
    pub fn label(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::LowestConfidence => "lowest confidence",
            Sort::Newest => "newest",
        }
    }
    fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::LowestConfidence,
            Sort::LowestConfidence => Sort::Newest,
            Sort::Newest => Sort::Name,
        }
    }
}

/// Re-running more marked images than this with Rekognition asks first.
pub const CONFIRM_PAID_ABOVE: usize = 10;

/// The status filter cycle: the statuses an audit asks for first.
pub const STATUS_CYCLE: [Option<Status>; 8] = [
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
    /// Label edit for this image.
    Edit {
        key: String,
        metadata_key: Option<String>,
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
    pub state: ThumbState,
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
    pub min_confidence: f32,
    pub review_below: f32,

    pub rows: Vec<Row>,
    /// Row indices by key hash: the keys live only in the rows.
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    /// Sort keys, parallel to `rows` and compact, so sorting and merging
    /// 100,000 rows touches a few hundred KB, not the rows themselves.
    conf_keys: Vec<f32>,
    time_keys: Vec<i64>,
    /// The text filter only grew since the view was built: narrow it.
    narrowed: bool,
    /// Row indices shown, filtered and sorted.
    pub view: Vec<u32>,
    /// The view must be rebuilt (filter, sort or reload).
    view_dirty: bool,
    /// Rows from this index on are not in the view yet.
    appended_from: Option<usize>,
    /// Rows changed in place since the view was last updated.
    touched: Vec<u32>,
    pub counts: [usize; 7],
    pub unreadable: usize,

    pub cursor: usize,
    /// First visible position of the list.
    pub offset: usize,
    pub detail_scroll: u16,
    pub focus: Pane,
    pub marks: HashSet<u32>,
    pub sort: Sort,
    pub status_filter: Option<Status>,
    pub text_filter: String,
    pub mode: Mode,
    pub message: Option<(Level, String)>,

    pub listing: Listing,
    pub generation: u64,
    pub work: Work,
    pub thumb: Option<Thumb>,
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
            min_confidence,
            review_below,
            rows: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            conf_keys: Vec::new(),
            time_keys: Vec::new(),
            narrowed: false,
            view: Vec::new(),
            view_dirty: false,
            appended_from: None,
            touched: Vec::new(),
            counts: [0; 7],
            unreadable: 0,
            cursor: 0,
            offset: 0,
            detail_scroll: 0,
            focus: Pane::List,
            marks: HashSet::new(),
            sort: Sort::Name,
            status_filter: None,
            text_filter: String::new(),
            mode: Mode::Normal,
            message: None,
            listing: Listing::Running,
            generation: 0,
            work: Work::default(),
            thumb: None,
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
        self.index.clear();
        self.conf_keys.clear();
        self.time_keys.clear();
        self.marks.clear();
        self.view.clear();
        self.counts = [0; 7];
        self.unreadable = 0;
        self.view_dirty = true;
        self.refresh_view();
        self.thumb = None;
        vec![Cmd::List {
            generation: self.generation,
        }]
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.view.get(self.cursor).map(|&i| &self.rows[i as usize])
    }

    fn selected_index(&self) -> Option<u32> {
        self.view.get(self.cursor).copied()
    }

    pub fn count(&self, s: Status) -> usize {
        self.counts[Status::ALL.iter().position(|x| *x == s).unwrap_or(0)]
    }

    /// Rows per page in the list, from the current terminal size.
    pub fn page_rows(&self) -> usize {
        view::areas(Rect::new(0, 0, self.size.width, self.size.height))
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
            Msg::Rows { generation, rows } => {
                if generation == self.generation {
                    for a in rows {
                        self.upsert(Row::from_assessed(a));
                    }
                }
                Vec::new()
            }
            Msg::ListingDone { generation, error } => {
                if generation == self.generation {
                    match error {
                        Some(e) => {
                            self.listing = Listing::Failed;
                            self.error(format!("listing failed: {e}"));
                        }
                        None => self.listing = Listing::Done,
                    }
                }
                Vec::new()
            }
            Msg::TagStarted { key } => {
                if let Some(i) = self.find(&key) {
                    self.rows[i as usize].busy = true;
                }
                self.work.running += 1;
                Vec::new()
            }
            Msg::Tagged {
                key,
                outcome,
                row,
                review,
            } => self.on_tagged(key, outcome, row, review),
            Msg::Thumb { key, area, result } => {
                if let Some(t) = &mut self.thumb
                    && t.key == key
                    && t.area == area
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
        }
        cmds.extend(self.thumb_cmd());
        cmds
    }

    fn selected_key(&self) -> Option<String> {
        self.selected_row().map(|r| r.key.clone())
    }

    /// The row index of `key`.
    pub fn find(&self, key: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.rows[i as usize].key == key)
            .copied()
    }

    fn upsert(&mut self, row: Row) {
        let conf = row.best_conf.unwrap_or(f32::INFINITY);
        let time = row
            .image
            .as_ref()
            .and_then(|i| i.last_modified)
            .unwrap_or(i64::MIN);
        match self.find(&row.key) {
            Some(i) => {
                let (old_status, busy) = {
                    let old = &self.rows[i as usize];
                    (old.status, old.busy)
                };
                self.count_row(old_status, -1);
                self.count_row(row.status, 1);
                self.rows[i as usize] = Row { busy, ..row };
                self.conf_keys[i as usize] = conf;
                self.time_keys[i as usize] = time;
                self.touched.push(i);
            }
            None => {
                let i = self.rows.len() as u32;
                self.count_row(row.status, 1);
                let hash = self.hasher.hash_one(row.key.as_str());
                let (rows, hasher) = (&self.rows, &self.hasher);
                self.index
                    .insert_unique(hash, i, |&j| hasher.hash_one(rows[j as usize].key.as_str()));
                self.rows.push(row);
                self.conf_keys.push(conf);
                self.time_keys.push(time);
                self.appended_from.get_or_insert(i as usize);
            }
        }
    }

    fn count_row(&mut self, status: Option<Status>, delta: isize) {
        let slot = match status {
            Some(s) => &mut self.counts[Status::ALL.iter().position(|x| *x == s).unwrap_or(0)],
            None => &mut self.unreadable,
        };
        *slot = slot.saturating_add_signed(delta);
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
        if let Some(i) = self.find(&key) {
            self.rows[i as usize].busy = false;
        }
        if let Some(a) = row {
            // A row that was in another listing generation is still shown
            // as soon as it is written.
            self.upsert(Row::from_assessed(*a));
        }
        if !review {
            self.work.running = self.work.running.saturating_sub(1);
            self.work.done += 1;
        }
        let shown = for_terminal(&key).into_owned();
        match &outcome {
            Outcome::Tagged {
                headline, labels, ..
            } => {
                let best = headline
                    .as_ref()
                    .map(|(n, c)| format!(", headline {} {c:.1}", for_terminal(n)))
                    .unwrap_or_default();
                if review {
                    self.info(format!("review saved for {shown}: {labels} labels{best}"));
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
                self.work.failed += usize::from(!review);
                self.error(format!(
                    "{shown}: {}: {} (recorded)",
                    for_terminal(code),
                    for_terminal(message)
                ));
            }
            Outcome::Skipped { reason } => {
                self.work.failed += usize::from(!review);
                self.error(format!("{shown}: {}", for_terminal(reason)));
            }
            Outcome::Conflict { metadata_key } => {
                self.work.failed += usize::from(!review);
                self.error(format!(
                    "{} changed while {shown} was being tagged; not overwritten (press r to reload)",
                    for_terminal(metadata_key)
                ));
            }
            Outcome::Retry { message } => {
                self.work.failed += usize::from(!review);
                self.error(format!("{shown}: {}; try again", for_terminal(message)));
            }
            Outcome::Fatal { message } => {
                self.work.failed += usize::from(!review);
                self.error(format!("stopped: {}", for_terminal(message)));
            }
        }
        if !self.work.active() && !review {
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
        Vec::new()
    }

    // ------------------------------------------------------------------
    // view maintenance

    /// Brings the filtered, sorted view up to date, keeping the selected
    /// row selected. Appended rows are merged in and changed rows moved,
    /// so a listing page or a tagging result costs O(rows) at worst, with
    /// no full re-sort; only a filter or sort change rebuilds the view.
    pub fn refresh_view(&mut self) {
        if !self.view_dirty
            && !self.narrowed
            && self.appended_from.is_none()
            && self.touched.is_empty()
        {
            return;
        }
        let keep = self.selected_index();
        let needle = self.text_filter.to_lowercase();
        if self.view_dirty {
            self.view_dirty = false;
            self.narrowed = false;
            self.appended_from = None;
            self.touched.clear();
            let mut view: Vec<u32> = (0..self.rows.len() as u32)
                .filter(|&i| self.shown(i, &needle))
                .collect();
            self.sort_slice(&mut view);
            self.view = view;
        } else {
            if std::mem::take(&mut self.narrowed) {
                // Only rows shown now can match a longer filter.
                let mut view = std::mem::take(&mut self.view);
                view.retain(|&i| self.shown(i, &needle));
                self.view = view;
            }
            for i in std::mem::take(&mut self.touched) {
                if let Some(pos) = self.view.iter().position(|&v| v == i) {
                    self.view.remove(pos);
                }
                if self.shown(i, &needle) {
                    let at = self
                        .view
                        .partition_point(|&v| self.cmp_rows(v, i) == std::cmp::Ordering::Less);
                    self.view.insert(at, i);
                }
            }
            if let Some(from) = self.appended_from.take() {
                let mut new: Vec<u32> = (from as u32..self.rows.len() as u32)
                    .filter(|&i| self.shown(i, &needle))
                    .collect();
                self.sort_slice(&mut new);
                if self.view.last().is_none_or(|&last| {
                    new.first().is_none_or(|&first| {
                        self.cmp_rows(last, first) != std::cmp::Ordering::Greater
                    })
                }) {
                    self.view.extend(new);
                } else {
                    let old = std::mem::take(&mut self.view);
                    self.view = self.merge(old, new);
                }
            }
        }
        if let Some(k) = keep
            && let Some(pos) = self.view.iter().position(|&i| i == k)
        {
            self.cursor = pos;
        }
        if self.cursor >= self.view.len() {
            self.cursor = self.view.len().saturating_sub(1);
        }
    }

    fn shown(&self, i: u32, needle: &str) -> bool {
        let r = &self.rows[i as usize];
        if let Some(f) = self.status_filter
            && r.status != Some(f)
        {
            return false;
        }
        needle.is_empty() || r.matches_text(needle)
    }

    /// The order of two rows under the current sort. Rows arrive in key
    /// order (images, then orphans), so the name order is the index order.
    fn cmp_rows(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let (x, y) = (a as usize, b as usize);
        match self.sort {
            Sort::Name => std::cmp::Ordering::Equal,
            // Rows without labels carry +inf: last.
            Sort::LowestConfidence => self.conf_keys[x].total_cmp(&self.conf_keys[y]),
            Sort::Newest => self.time_keys[y].cmp(&self.time_keys[x]),
        }
        .then(a.cmp(&b))
    }

    fn sort_slice(&self, v: &mut [u32]) {
        if self.sort != Sort::Name {
            v.sort_unstable_by(|&a, &b| self.cmp_rows(a, b));
        }
    }

    fn merge(&self, a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if self.cmp_rows(a[i], b[j]) != std::cmp::Ordering::Greater {
                out.push(a[i]);
                i += 1;
            } else {
                out.push(b[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        out
    }

    fn clamp_scroll(&mut self) {
        let page = self.page_rows();
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + page {
            self.offset = self.cursor + 1 - page;
        }
        let max_offset = self.view.len().saturating_sub(page);
        self.offset = self.offset.min(max_offset);
    }

    /// A thumbnail request when the selected image (or the pane) changed.
    fn thumb_cmd(&mut self) -> Option<Cmd> {
        let area = view::areas(Rect::new(0, 0, self.size.width, self.size.height)).thumb;
        let area = Size::new(area.width, area.height);
        let want = self
            .selected_row()
            .and_then(|r| r.image.as_ref())
            .filter(|_| self.thumbnails && area.width > 2 && area.height > 1)
            .map(|img| {
                (
                    img.key.clone(),
                    img.etag.as_deref().map(str::to_string),
                    img.size,
                )
            });
        match want {
            None => {
                let had = self.thumb.take().is_some();
                had.then_some(Cmd::CancelThumb)
            }
            Some((key, etag, size)) => {
                if let Some(t) = &self.thumb
                    && t.key == key
                    && t.area == area
                {
                    return None;
                }
                self.thumb = Some(Thumb {
                    key: key.clone(),
                    area,
                    state: ThumbState::Loading,
                });
                Some(Cmd::Thumb {
                    key,
                    etag,
                    size,
                    area,
                })
            }
        }
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
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => self.start_cmd(cmd),
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
                    self.text_filter.clear();
                    self.view_dirty = true;
                }
                return Vec::new();
            }
            KeyCode::Enter => return self.submit_input(input),
            KeyCode::Backspace => {
                input.buf.pop();
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
            self.set_text_filter(input.buf.clone());
        }
        self.mode = Mode::Input(input);
        Vec::new()
    }

    fn set_text_filter(&mut self, text: String) {
        if text == self.text_filter {
            return;
        }
        if text.starts_with(self.text_filter.as_str()) && !text.contains('\n') {
            self.narrowed = true;
        } else {
            self.view_dirty = true;
        }
        self.text_filter = text;
    }

    fn submit_input(&mut self, input: Input) -> Vec<Cmd> {
        match input.kind {
            InputKind::Filter => {
                self.set_text_filter(input.buf.trim().to_string());
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
            InputKind::Edit { key, metadata_key } => match ReviewEdit::parse(&input.buf) {
                Ok(edit) => vec![Cmd::Review {
                    key,
                    metadata_key,
                    edit,
                }],
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
            } else if !self.text_filter.is_empty() || self.status_filter.is_some() {
                self.text_filter.clear();
                self.status_filter = None;
                self.view_dirty = true;
            }
            self.message = None;
            return Vec::new();
        }
        let Some(action) = self.keymap.action(&k) else {
            return Vec::new();
        };
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
                    self.cursor = self.view.len().saturating_sub(1);
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
            Action::RaiseThreshold | Action::LowerThreshold => {
                let step = if action == Action::RaiseThreshold {
                    5.0
                } else {
                    -5.0
                };
                // Snap to the 5-grid, then step.
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
            Action::SetThreshold => {
                self.mode = Mode::Input(Input {
                    kind: InputKind::Threshold,
                    buf: String::new(),
                })
            }
            Action::Mark => {
                if let Some(i) = self.selected_index() {
                    if !self.marks.remove(&i) {
                        self.marks.insert(i);
                    }
                    self.move_by(1);
                }
            }
            Action::Filter => {
                self.mode = Mode::Input(Input {
                    kind: InputKind::Filter,
                    buf: self.text_filter.clone(),
                })
            }
            Action::Sort => {
                self.sort = self.sort.next();
                self.view_dirty = true;
                self.info(format!("sorted by {}", self.sort.label()));
            }
            Action::StatusFilter => {
                let pos = STATUS_CYCLE
                    .iter()
                    .position(|s| *s == self.status_filter)
                    .unwrap_or(0);
                self.status_filter = STATUS_CYCLE[(pos + 1) % STATUS_CYCLE.len()];
                self.view_dirty = true;
            }
            Action::Edit => match self.selected_row() {
                Some(r) if r.is_orphan() => self.error("orphan metadata: its image is gone"),
                Some(r) if r.doc.is_none() || r.problem.is_some() => {
                    self.error("tag this image first; then its labels can be edited")
                }
                Some(r) => {
                    let (key, metadata_key) = (r.key.clone(), r.metadata_key.clone());
                    self.mode = Mode::Input(Input {
                        kind: InputKind::Edit { key, metadata_key },
                        buf: String::new(),
                    });
                }
                None => {}
            },
            Action::Reload => return self.reload(),
            Action::Help => self.mode = Mode::Help,
            Action::Quit => self.quit = true,
        }
        Vec::new()
    }

    fn move_by(&mut self, delta: isize) {
        if self.focus == Pane::Detail {
            let d = self.detail_scroll as isize + delta;
            self.detail_scroll = d.clamp(0, u16::MAX as isize) as u16;
            return;
        }
        if self.view.is_empty() {
            return;
        }
        let last = self.view.len() as isize - 1;
        self.cursor = (self.cursor as isize + delta).clamp(0, last) as usize;
    }

    fn job_for(&self, i: u32) -> Option<TagJob> {
        let r = &self.rows[i as usize];
        (!r.is_orphan()).then(|| TagJob {
            key: r.key.clone(),
            metadata_key: r.metadata_key.clone(),
        })
    }

    fn tag_selected(&mut self) -> Vec<Cmd> {
        let mut targets: Vec<u32> = if self.marks.is_empty() {
            self.selected_index().into_iter().collect()
        } else {
            self.marks.iter().copied().collect()
        };
        targets.sort_by(|a, b| self.rows[*a as usize].key.cmp(&self.rows[*b as usize].key));
        let jobs: Vec<TagJob> = targets.iter().filter_map(|&i| self.job_for(i)).collect();
        if jobs.is_empty() {
            if self.selected_row().is_some_and(Row::is_orphan) {
                self.error("orphan metadata: its image is gone, nothing to tag");
            }
            return Vec::new();
        }
        self.marks.clear();
        let n = jobs.len();
        let cmd = Cmd::Tag {
            jobs,
            min_confidence: self.min_confidence,
            force: true,
        };
        // A large marked set costs money with Rekognition: say how much.
        if self.header.paid && n > CONFIRM_PAID_ABOVE {
            self.mode = Mode::Confirm {
                text: format!(
                    "Re-run {n} marked images {}, at MinConfidence {}?",
                    DetectorKind::Rekognition.cost_phrase(n),
                    self.min_confidence
                ),
                cmd,
            };
            return Vec::new();
        }
        self.start_cmd(cmd)
    }

    fn ask_tag_untagged(&mut self) {
        let jobs: Vec<TagJob> = self
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == Some(Status::Untagged) && !r.busy)
            .filter_map(|(i, _)| self.job_for(i as u32))
            .collect();
        if jobs.is_empty() {
            self.info("no untagged images");
            return;
        }
        let n = jobs.len();
        let cost = if self.header.paid {
            format!(" {}", DetectorKind::Rekognition.cost_phrase(n))
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
            },
        };
    }

    /// Bookkeeping for a command the user started.
    fn start_cmd(&mut self, cmd: Cmd) -> Vec<Cmd> {
        if let Cmd::Tag { jobs, .. } = &cmd {
            for j in jobs {
                if let Some(i) = self.find(&j.key) {
                    self.rows[i as usize].busy = true;
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
        vec![cmd]
    }

    fn on_mouse(&mut self, m: MouseEvent) -> Vec<Cmd> {
        if self.mode != Mode::Normal {
            return Vec::new();
        }
        let areas = view::areas(Rect::new(0, 0, self.size.width, self.size.height));
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
                    if pos < self.view.len() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{assess, parse_metadata};

    fn assessed(n: usize, conf: Option<f32>, label: &str) -> Assessed {
        let img = ObjectInfo {
            key: format!("uploads/{n:05}.jpg"),
            size: 1,
            etag: Some("\"e\"".into()),
            last_modified: Some((n * 7919 % 1000) as i64),
        };
        let read = conf.map(|c| {
            parse_metadata(
                format!(r#"{{"Labels":[{{"Name":"{label}","Confidence":{c}}}]}}"#).as_bytes(),
            )
        });
        Assessed {
            status: Some(assess(read.as_ref(), img.etag.as_deref(), 70.0)),
            metadata: read.as_ref().map(|_| ObjectInfo {
                key: format!("metadata/{n:05}.jpg.json"),
                size: 1,
                etag: None,
                last_modified: None,
            }),
            image: Some(img),
            key_kind: None,
            read,
            read_error: None,
        }
    }

    /// The incremental view (merged pages, moved rows) always equals a
    /// full rebuild, whatever the sort and filter.
    #[test]
    fn incremental_view_matches_a_rebuild() {
        let names = ["Cat", "Dog", "Feline", "Cup"];
        for sort in [Sort::Name, Sort::LowestConfidence, Sort::Newest] {
            for (status, text) in [(None, ""), (Some(Status::NeedsReview), ""), (None, "cat")] {
                let mut app = App::new(
                    Header {
                        bucket: "b".into(),
                        detector: "local".into(),
                        paid: false,
                    },
                    Layout::default(),
                    Keymap::default(),
                    55.0,
                    70.0,
                );
                app.start();
                app.sort = sort;
                app.status_filter = status;
                app.text_filter = text.into();
                let generation = app.generation;
                let mut seed = 17u64;
                let mut next = || {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as usize
                };
                for page in 0..6 {
                    let rows: Vec<_> = (0..50)
                        .map(|k| {
                            let n = page * 50 + k;
                            let r = next();
                            let conf = (r % 5 != 0).then_some((r % 1000) as f32 / 10.0);
                            assessed(n, conf, names[r % 4])
                        })
                        .collect();
                    app.update(Msg::Rows { generation, rows });
                    // Results of tagging runs change rows in place.
                    for _ in 0..5 {
                        let n = next() % ((page + 1) * 50);
                        let r = next();
                        app.update(Msg::Tagged {
                            key: format!("uploads/{n:05}.jpg"),
                            outcome: Outcome::Skipped { reason: "x".into() },
                            row: Some(Box::new(assessed(
                                n,
                                Some((r % 1000) as f32 / 10.0),
                                names[r % 4],
                            ))),
                            review: true,
                        });
                    }
                    let incremental = app.view.clone();
                    let counts = (app.counts, app.unreadable);
                    app.view_dirty = true;
                    app.refresh_view();
                    assert_eq!(
                        incremental, app.view,
                        "{sort:?} {status:?} {text:?} page {page}"
                    );
                    let mut fresh = [0usize; 7];
                    for r in &app.rows {
                        fresh[Status::ALL
                            .iter()
                            .position(|x| Some(*x) == r.status)
                            .unwrap()] += 1;
                    }
                    assert_eq!(counts, (fresh, 0));
                }
                assert!(!app.view.is_empty());
                // Typing a longer filter narrows the view it has.
                for t in ["d", "do", "dog", "dogs"] {
                    app.set_text_filter(format!("{text}{t}"));
                    app.refresh_view();
                    let incremental = app.view.clone();
                    app.view_dirty = true;
                    app.refresh_view();
                    assert_eq!(incremental, app.view, "{sort:?} {status:?} {text:?}+{t}");
                }
            }
        }
    }
}
