//! The TUI's row table: every listed image (and orphan metadata) once,
//! with the filtered, sorted view of it kept up to date incrementally, so
//! a listing page or a tagging result on a 100,000-image bucket costs one
//! pass at worst, never a full re-sort.
//!
//! Invariants, kept by every method:
//! - Keys are unique, and a row keeps its position until [`Rows::clear`]:
//!   rows are only appended or replaced in place. A `u32` position (in the
//!   view, in the app's marks) stays valid until the next `clear`.
//! - [`Rows::count`] and [`Rows::unreadable`] count the rows per status.
//! - After [`Rows::refresh`], [`Rows::view`] is exactly what a full rebuild
//!   gives: the positions of the rows that pass the status and text
//!   filters, ordered by the sort key, ties by position.

use std::cmp::Ordering;
use std::hash::BuildHasher;

use crate::catalog::Assessed;
use crate::contract::KeyKind;
use crate::key_index::KeyIndex;
use crate::status::Status;
use crate::storage::ObjectInfo;

use super::names::{Names, contains_ignore_case};

/// Longest problem text a row keeps (the detail pane shows the whole one
/// from the document when it is loaded).
const PROBLEM_MAX: usize = 240;

/// What the runtime hands the table for one image (or orphan metadata):
/// built from an audit's [`Assessed`] or from an index row. Plain owned
/// data; `upsert` keeps a compact form of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSummary {
    /// The image key, or the metadata key of an orphan.
    pub key: String,
    /// The image (None for orphan metadata); its key is not kept.
    pub image: Option<ObjectInfo>,
    pub metadata_key: Option<String>,
    pub key_kind: Option<KeyKind>,
    /// None: the metadata could not be read (see `problem`).
    pub status: Option<Status>,
    /// The headline label's name and confidence.
    pub headline: Option<(String, f32)>,
    /// Every label and parent name of the document, and each line of its
    /// recognised text (`ImgTag.Text`): what `/` searches.
    pub names: Vec<String>,
    /// Why the metadata is malformed, unreadable or failed.
    pub problem: Option<String>,
    /// The document parsed: the detail pane can load and show it.
    pub readable: bool,
    /// `ImgTag.Review` is present and not empty.
    pub reviewed: bool,
}

impl RowSummary {
    /// [`RowSummary::from_assessed`], taking the row apart instead of
    /// copying it: the keys, label and parent names move (no allocation
    /// but the name list's). What the listing sends the UI thread, built
    /// off it. The image's `key` is left empty: the row's `key` is it.
    pub fn from_owned(mut a: Assessed) -> RowSummary {
        let problem = a.problem();
        let metadata_key = a.metadata.take().map(|m| m.key);
        let mut image = a.image.take();
        let key = match &mut image {
            Some(i) => std::mem::take(&mut i.key),
            None => metadata_key.clone().unwrap_or_default(),
        };
        let (mut names, mut headline, mut readable, mut reviewed) =
            (Vec::new(), None, false, false);
        if let Some(Ok(doc)) = a.doc.take() {
            readable = true;
            reviewed = doc.reviewed;
            let at = doc.headline.map(|h| h as usize);
            names.reserve(doc.labels.iter().map(|l| 1 + l.2.len()).sum());
            for (i, crate::summary::LabelSummary(name, conf, parents)) in
                doc.labels.into_iter().enumerate()
            {
                if at == Some(i) {
                    headline = Some((name.clone(), conf));
                }
                names.push(name);
                names.extend(parents);
            }
            names.extend(doc.text);
        }
        RowSummary {
            key,
            image,
            metadata_key,
            key_kind: a.key_kind,
            status: a.status,
            headline,
            names,
            problem,
            readable,
            reviewed,
        }
    }

    pub fn from_assessed(a: &Assessed) -> RowSummary {
        let problem = a.problem();
        let doc = a.doc();
        let mut names = Vec::new();
        for l in doc.map(|d| d.labels.as_slice()).unwrap_or_default() {
            names.push(l.name().to_string());
            names.extend(l.parents().iter().cloned());
        }
        names.extend(doc.iter().flat_map(|d| d.text.iter().cloned()));
        RowSummary {
            key: a.key().to_string(),
            image: a.image.clone(),
            metadata_key: a.metadata.as_ref().map(|m| m.key.clone()),
            key_kind: a.key_kind,
            status: a.status,
            headline: a.headline().map(|(n, c)| (n.to_string(), c)),
            names,
            problem,
            readable: doc.is_some(),
            reviewed: doc.is_some_and(|d| d.reviewed),
        }
    }
}

/// A page of rows summarised off the UI thread, in a compact form: the
/// keys and problems in one buffer, each label name once per page and
/// each row's names deduplicated, the metadata key and ETag moved out of
/// the audit's row as they are, so filing a page costs the UI thread no
/// allocation, free or sort per row, and one interning per distinct
/// name, not one per name per row. Built by [`SummaryBatch::push`],
/// filed by `upsert_batch`.
#[derive(Debug, Default)]
pub struct SummaryBatch {
    /// Each row's key and problem, end to end.
    text: String,
    rows: Vec<BatchRow>,
    /// The page's label and parent names, each once.
    names: Vec<String>,
    /// Each row's names, as indices into `names`, each once a row.
    name_refs: Vec<u32>,
    /// `names` by name, while the page is built: indices into `names`.
    lookup: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// By index into `names`: the last row (counted from 1) that took the
    /// name, so a row names each once.
    taken_by: Vec<u32>,
}

/// One row of a [`SummaryBatch`]: where its key and problem end in `text`
/// (each starts where the one before ends), and the rest of its summary.
#[derive(Debug)]
struct BatchRow {
    /// Ends of the key and the problem.
    ends: [usize; 2],
    /// The row has an image (else it is orphan metadata) and a problem.
    has: u8,
    metadata_key: Option<Box<str>>,
    etag: Option<Box<str>>,
    size: u64,
    last_modified: Option<i64>,
    key_kind: Option<KeyKind>,
    status: Option<Status>,
    /// Index into the batch's names, and the confidence.
    headline: Option<(u32, f32)>,
    /// End of its names in `name_refs`.
    names_end: usize,
    readable: bool,
    reviewed: bool,
}

const HAS_IMAGE: u8 = 1;
const HAS_PROBLEM: u8 = 2;

/// What a listed row takes in a batch, about: the buffers of a batch
/// built for a known number of rows are sized once.
const TEXT_PER_ROW: usize = 48;
const NAMES_PER_ROW: usize = 16;

impl SummaryBatch {
    pub fn new() -> SummaryBatch {
        SummaryBatch::default()
    }

    /// An empty batch with room for about `rows` rows: building it then
    /// rarely grows a buffer (copies that were most of building a page).
    pub fn with_capacity(rows: usize) -> SummaryBatch {
        SummaryBatch {
            text: String::with_capacity(rows * TEXT_PER_ROW),
            rows: Vec::with_capacity(rows),
            name_refs: Vec::with_capacity(rows * NAMES_PER_ROW),
            ..SummaryBatch::default()
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds a name to the current row (the `rows.len()`th, counted from 0)
    /// unless it has it already; returns the batch's index of it.
    fn take_name(&mut self, name: String) -> u32 {
        let hash = self.hasher.hash_one(name.as_str());
        let names = &self.names;
        let found = self
            .lookup
            .find(hash, |&i| names[i as usize] == name)
            .copied();
        let i = found.unwrap_or_else(|| {
            let i = self.names.len() as u32;
            self.names.push(name);
            self.taken_by.push(0);
            let (names, hasher) = (&self.names, &self.hasher);
            self.lookup
                .insert_unique(hash, i, |&j| hasher.hash_one(names[j as usize].as_str()));
            i
        });
        let row = self.rows.len() as u32 + 1;
        if std::mem::replace(&mut self.taken_by[i as usize], row) != row {
            self.name_refs.push(i);
        }
        i
    }

    /// Adds a row, taking the audit's row apart (what
    /// [`RowSummary::from_owned`] keeps).
    pub fn push(&mut self, mut a: Assessed) {
        let problem = a.problem();
        let metadata_key = a.metadata.take().map(|m| m.key);
        let mut image = a.image.take();
        let key = match &image {
            Some(i) => i.key.as_str(),
            None => metadata_key.as_deref().unwrap_or_default(),
        };
        let mut has = 0;
        self.text.push_str(key);
        let key_end = self.text.len();
        if let Some(p) = &problem {
            has |= HAS_PROBLEM;
            self.text.push_str(p);
        }
        if image.is_some() {
            has |= HAS_IMAGE;
        }
        let (mut headline, mut readable, mut reviewed) = (None, false, false);
        if let Some(Ok(doc)) = a.doc.take() {
            readable = true;
            reviewed = doc.reviewed;
            let at = doc.headline.map(|h| h as usize);
            for (i, crate::summary::LabelSummary(name, conf, parents)) in
                doc.labels.into_iter().enumerate()
            {
                let r = self.take_name(name);
                if at == Some(i) {
                    headline = Some((r, conf));
                }
                for p in parents {
                    self.take_name(p);
                }
            }
            // Lines of recognised text are searched as names are.
            for line in doc.text {
                self.take_name(line);
            }
        }
        let etag = image.as_mut().and_then(|i| i.etag.take());
        self.rows.push(BatchRow {
            ends: [key_end, self.text.len()],
            has,
            metadata_key: metadata_key.map(String::into_boxed_str),
            etag,
            size: image.as_ref().map_or(0, |i| i.size),
            last_modified: image.as_ref().and_then(|i| i.last_modified),
            key_kind: a.key_kind,
            status: a.status,
            headline,
            names_end: self.name_refs.len(),
            readable,
            reviewed,
        });
    }

    /// Done adding: drops what only building needed, before the batch is
    /// sent (its memory is freed here, not on the UI thread).
    pub fn finish(mut self) -> SummaryBatch {
        self.lookup = Default::default();
        self.taken_by = Vec::new();
        self
    }
}

/// What a row keeps of its image: not its key (the row's key is it).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMeta {
    pub size: u64,
    /// Quoted, as the store gives it.
    pub etag: Option<Box<str>>,
    /// Seconds since the Unix epoch.
    pub last_modified: Option<i64>,
}

const READABLE: u8 = 1;
const REVIEWED: u8 = 2;
const GONE: u8 = 4;
const NO_NAME: u32 = u32::MAX;

/// A row's byte in [`Rows::status_keys`] when it has no status (its
/// metadata could not be read) or is removed; otherwise the status index.
const UNREADABLE_KEY: u8 = 0xfe;
const GONE_KEY: u8 = 0xff;

fn flags_of(readable: bool, reviewed: bool) -> u8 {
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    bit(readable, READABLE) | bit(reviewed, REVIEWED)
}

fn status_key(status: Option<Status>) -> u8 {
    status.map_or(UNREADABLE_KEY, |s| s.index() as u8)
}

/// One line of the list, compact: a summary of the image and its
/// metadata, with label names as ids into the table's [`Names`]. The
/// full document is loaded when the row is selected.
#[derive(Debug, Clone)]
pub struct Row {
    pub metadata_key: Option<Box<str>>,
    pub image: Option<ImageMeta>,
    /// Why the metadata is malformed, unreadable or failed (shortened).
    pub problem: Option<Box<str>>,
    headline_name: u32,
    headline_conf: f32,
    /// Bumped each time the row is replaced: a document loaded for an
    /// older revision is not shown.
    pub rev: u32,
    pub key_kind: Option<KeyKind>,
    /// None: the metadata could not be read (see `problem`).
    pub status: Option<Status>,
    /// A job on this image is queued or running.
    pub busy: bool,
    flags: u8,
}

impl Row {
    pub(crate) fn is_orphan(&self) -> bool {
        self.image.is_none()
    }

    /// The metadata parsed: there is a document to load and show.
    pub fn readable(&self) -> bool {
        self.flags & READABLE != 0
    }

    /// The document has a non-empty `ImgTag.Review`.
    pub fn reviewed(&self) -> bool {
        self.flags & REVIEWED != 0
    }

    /// Removed from the bucket: kept only so positions stay stable.
    pub(crate) fn is_gone(&self) -> bool {
        self.flags & GONE != 0
    }

    /// The headline's name id and confidence.
    pub(crate) fn headline_id(&self) -> Option<(u32, f32)> {
        (self.headline_name != NO_NAME).then_some((self.headline_name, self.headline_conf))
    }
}

/// A row with its position and key (rows keep their keys in one arena,
/// see [`Rows`]).
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub pos: u32,
    /// The image key, or the metadata key of an orphan.
    pub key: &'a str,
    row: &'a Row,
}

impl std::ops::Deref for RowRef<'_> {
    type Target = Row;

    fn deref(&self) -> &Row {
        self.row
    }
}

/// The key at position `i` in an arena of keys end to end.
fn key_at<'a>(text: &'a str, starts: &[u64], i: u32) -> &'a str {
    &text[starts[i as usize] as usize..starts[i as usize + 1] as usize]
}

/// Calls `hit(r)` for each key `r` (the keys in `text` between
/// consecutive `starts`) that contains the lowercase ASCII `needle`,
/// ignoring ASCII case, among those `wanted` accepts: a memchr for the
/// needle's first byte over the whole run of keys, each candidate in a
/// wanted key checked in place.
fn scan_keys(
    text: &[u8],
    starts: &[u64],
    needle: &[u8],
    wanted: impl Fn(usize) -> bool,
    mut hit: impl FnMut(usize),
) {
    let rows = starts.len() - 1;
    let (lower, upper) = (needle[0], needle[0].to_ascii_uppercase());
    let end = starts[rows] as usize;
    let (mut row, mut at) = (0, starts[0] as usize);
    while row < rows {
        let Some(off) = memchr::memchr2(lower, upper, &text[at..end]) else {
            break;
        };
        let p = at + off;
        while starts[row + 1] as usize <= p {
            row += 1;
        }
        let row_end = starts[row + 1] as usize;
        if !wanted(row) {
            row += 1;
            at = row_end;
        } else if p + needle.len() <= row_end
            && text[p..p + needle.len()].eq_ignore_ascii_case(needle)
        {
            hit(row);
            row += 1;
            at = row_end;
        } else {
            at = p + 1;
        }
    }
}

/// An unsigned key whose order is `f32::total_cmp`'s.
fn conf_order(c: f32) -> u32 {
    let b = c.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// A problem text cut to [`PROBLEM_MAX`] bytes at a char boundary.
fn short_problem(p: String) -> Box<str> {
    if p.len() <= PROBLEM_MAX {
        return p.into_boxed_str();
    }
    let mut end = PROBLEM_MAX;
    while !p.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &p[..end]).into_boxed_str()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    LowestConfidence,
    Newest,
}

impl Sort {
    /// The slot of this sort's cached order (the name order is the
    /// position order and needs none).
    fn order_slot(self) -> Option<usize> {
        match self {
            Sort::Name => None,
            Sort::LowestConfidence => Some(0),
            Sort::Newest => Some(1),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::LowestConfidence => "lowest confidence",
            Sort::Newest => "newest",
        }
    }

    pub fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::LowestConfidence,
            Sort::LowestConfidence => Sort::Newest,
            Sort::Newest => Sort::Name,
        }
    }
}

/// The text filter's test for a batch of rows.
enum TextTest<'a> {
    /// No text filter.
    All,
    /// Row by row.
    Each(&'a Needle),
    /// Precomputed for every position.
    Bits(Vec<u64>),
}

/// The rows one needle matched, by name and by key, as bitsets over
/// positions. What a longer needle can match is a subset of each: a
/// name containing `reflec` contains `refle`, and so does a key.
#[derive(Debug, Clone)]
struct Memo {
    /// The needle, lowercase.
    text: String,
    /// Its `Needle::names`: when a longer needle matches the same names
    /// (`refle`, `reflec`), the rows it matches by name are these again.
    names: Vec<bool>,
    by_name: Vec<u64>,
    by_key: Vec<u64>,
}

impl Memo {
    /// Rows matched either way.
    fn bits(&self) -> Vec<u64> {
        self.by_name
            .iter()
            .zip(&self.by_key)
            .map(|(n, k)| n | k)
            .collect()
    }
}

/// A text filter ready to test rows with.
struct Needle {
    /// Lowercase.
    text: String,
    /// By name id: the name contains `text` (empty if none does).
    names: Vec<bool>,
}

/// Every row position in one sort's order, cached so that switching sorts
/// (or filters) costs a pass over it, not a sort of a million rows.
///
/// Invariant: `pos` holds exactly the positions `0..pos.len()`, ordered by
/// their sort key as it was when each was placed (ties by position);
/// `touched` lists those placed whose key may have changed since. Rows
/// appended later and touched rows are merged in when the order is next
/// used ([`Rows::catch_up`]).
#[derive(Debug, Clone, Default)]
struct Order {
    pos: Vec<u32>,
    touched: Vec<u32>,
}

impl Order {
    /// Notes that row `i`'s key changed. Past a few percent of the rows a
    /// rebuild is cheaper than a merge: the order is dropped instead.
    fn touch(&mut self, i: u32) {
        if (i as usize) < self.pos.len() {
            self.touched.push(i);
            if self.touched.len() > self.pos.len() / 8 + 64 {
                self.pos = Vec::new();
                self.touched = Vec::new();
            }
        }
    }

    fn clear(&mut self) {
        self.pos.clear();
        self.touched.clear();
    }
}

/// The rows, their index by key, and the filtered, sorted view.
#[derive(Debug, Clone)]
pub struct Rows {
    rows: Vec<Row>,
    /// Every row's key end to end, and where each starts (one entry more
    /// than rows): a `/` search scans one buffer, not a million
    /// allocations. A position's key never changes until a clear.
    key_text: String,
    key_starts: Vec<u64>,
    /// Rows whose key is not ASCII: the byte scan can miss a match there
    /// that only a char-wise lowercasing finds (the Kelvin sign is a k).
    non_ascii: Vec<u32>,
    /// Row positions by key: the keys live only in `key_text`.
    index: KeyIndex,
    /// Every row's label and parent name ids (each once), as a span
    /// `(start, len)` into `name_ids` per row, so a search reads two
    /// arrays in order. A replaced row's longer span goes at the end; the
    /// old one is garbage until [`Rows::compact_names`].
    name_ids: Vec<u32>,
    name_spans: Vec<(u32, u32)>,
    name_garbage: usize,
    /// Label and parent names, by the ids rows hold.
    names: Names,
    /// Rows not removed.
    live: usize,
    /// Rows announced by [`Rows::reserve`] whose key and name arenas are
    /// not sized yet (the next page sizes them: `reserve_like`).
    announced: usize,
    /// The last revision given to a row.
    rev: u32,
    /// Sort keys, parallel to `rows` and compact, so sorting and merging
    /// 100,000 rows touches a few hundred KB, not the rows themselves.
    conf_keys: Vec<f32>,
    time_keys: Vec<i64>,
    /// Each row's status as one byte ([`status_key`], [`GONE_KEY`]),
    /// parallel to `rows`: a status filter reads a megabyte, not the rows.
    status_keys: Vec<u8>,
    /// The cached orders of the sorts by confidence and by time.
    orders: [Order; 2],
    counts: [usize; Status::ALL.len()],
    unreadable: usize,

    sort: Sort,
    status_filter: Option<Status>,
    text_filter: String,

    /// Row positions shown, filtered and sorted.
    view: Vec<u32>,
    /// The view must be rebuilt (filter, sort or reload).
    view_dirty: bool,
    /// The text filter only grew since the view was built: narrow it.
    narrowed: bool,
    /// Rows from this position on are not in the view yet.
    appended_from: Option<usize>,
    /// Rows changed in place since the view was last updated.
    touched: Vec<u32>,
    /// What each needle typed in this search matched (each a prefix of
    /// the next; the last is the current one): a longer needle tests only
    /// its prefix's matches, a backspace reuses its bits. Dropped when
    /// any row's names or the row count change.
    memo: Vec<Memo>,
}

impl Default for Rows {
    fn default() -> Self {
        Rows::new()
    }
}

impl std::ops::Index<usize> for Rows {
    type Output = Row;

    fn index(&self, i: usize) -> &Row {
        &self.rows[i]
    }
}

impl Rows {
    /// No rows, sorted by name, unfiltered.
    pub fn new() -> Rows {
        Rows {
            rows: Vec::new(),
            key_text: String::new(),
            key_starts: vec![0],
            non_ascii: Vec::new(),
            index: KeyIndex::new(),
            name_ids: Vec::new(),
            name_spans: Vec::new(),
            name_garbage: 0,
            names: Names::new(),
            live: 0,
            announced: 0,
            rev: 0,
            conf_keys: Vec::new(),
            time_keys: Vec::new(),
            status_keys: Vec::new(),
            orders: Default::default(),
            counts: [0; Status::ALL.len()],
            unreadable: 0,
            sort: Sort::Name,
            status_filter: None,
            text_filter: String::new(),
            view: Vec::new(),
            view_dirty: false,
            narrowed: false,
            appended_from: None,
            touched: Vec::new(),
            memo: Vec::new(),
        }
    }

    /// Room for `additional` more rows, asked before a long listing: the
    /// table then never doubles (a copy of every column in one turn of
    /// the UI thread, hundreds of milliseconds at a million rows). The key
    /// and name arenas are sized by the first page filed after this, which
    /// shows what a row takes.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.rows.reserve(additional);
        self.key_starts.reserve(additional);
        self.name_spans.reserve(additional);
        self.conf_keys.reserve(additional);
        self.time_keys.reserve(additional);
        self.status_keys.reserve(additional);
        // Unfiltered, the view shows every row.
        self.view.reserve(additional);
        self.announced = additional;
        let (text, starts) = (&self.key_text, &self.key_starts);
        self.index.reserve(additional, |i| key_at(text, starts, i));
    }

    /// Drops every row (a reload); the sort and the filters stay. The
    /// names stay interned: a reload lists the same vocabulary.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.key_text.clear();
        self.key_starts.truncate(1);
        self.non_ascii.clear();
        self.index.clear();
        self.name_ids.clear();
        self.name_spans.clear();
        self.name_garbage = 0;
        self.live = 0;
        self.announced = 0;
        self.conf_keys.clear();
        self.time_keys.clear();
        self.status_keys.clear();
        for o in &mut self.orders {
            o.clear();
        }
        self.counts = [0; Status::ALL.len()];
        self.unreadable = 0;
        self.view.clear();
        self.appended_from = None;
        self.touched.clear();
        self.memo.clear();
        self.view_dirty = true;
    }

    /// Rows listed and not removed.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Positions ever given out since the last [`Rows::clear`] (removed
    /// rows keep theirs).
    pub fn slots(&self) -> usize {
        self.rows.len()
    }

    /// Every row not removed, in position order.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        (0..self.rows.len() as u32)
            .map(|i| self.get(i))
            .filter(|r| !r.is_gone())
    }

    /// The row at position `i` with its key.
    pub fn get(&self, i: u32) -> RowRef<'_> {
        RowRef {
            pos: i,
            key: self.key(i),
            row: &self.rows[i as usize],
        }
    }

    /// The key of the row at position `i`.
    pub fn key(&self, i: u32) -> &str {
        key_at(&self.key_text, &self.key_starts, i)
    }

    /// The label and parent name ids of the row at position `i`.
    pub(crate) fn names_of(&self, i: u32) -> &[u32] {
        let (start, len) = self.name_spans[i as usize];
        &self.name_ids[start as usize..(start + len) as usize]
    }

    /// The position of the row with this key (None if removed).
    pub fn find(&self, key: &str) -> Option<u32> {
        self.slot(key).filter(|&i| !self.rows[i as usize].is_gone())
    }

    /// The position of this key, removed or not.
    fn slot(&self, key: &str) -> Option<u32> {
        let (text, starts) = (&self.key_text, &self.key_starts);
        self.index.find(key, |i| key_at(text, starts, i))
    }

    /// A label name by the id a row holds.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id)
    }

    /// The row's headline label name and confidence.
    pub fn headline<'a>(&'a self, row: &Row) -> Option<(&'a str, f32)> {
        row.headline_id().map(|(id, c)| (self.names.get(id), c))
    }

    /// The compact row for a summary (its key aside), with a fresh
    /// revision, and its name ids.
    fn compact(&mut self, s: RowSummary) -> (Row, Vec<u32>) {
        let mut names: Vec<u32> = s.names.iter().map(|n| self.names.intern(n)).collect();
        names.sort_unstable();
        names.dedup();
        let (headline_name, headline_conf) = match &s.headline {
            Some((n, c)) => (self.names.intern(n), *c),
            None => (NO_NAME, f32::INFINITY),
        };
        self.rev = self.rev.wrapping_add(1);
        let flags = flags_of(s.readable, s.reviewed);
        let row = Row {
            metadata_key: s.metadata_key.map(String::into_boxed_str),
            image: s.image.map(|i| ImageMeta {
                size: i.size,
                etag: i.etag,
                last_modified: i.last_modified,
            }),
            problem: s.problem.map(short_problem),
            headline_name,
            headline_conf,
            rev: self.rev,
            key_kind: s.key_kind,
            status: s.status,
            busy: false,
            flags,
        };
        (row, names)
    }

    /// Adds a row, or replaces the row with its key in place (keeping its
    /// `busy` flag; a removed row comes back at its old position); the
    /// view catches up on the next [`Rows::refresh`]. Returns the row's
    /// position.
    pub(crate) fn upsert(&mut self, mut summary: RowSummary) -> u32 {
        let key = std::mem::take(&mut summary.key);
        let (row, names) = self.compact(summary);
        self.upsert_row(&key, row, &names)
    }

    /// Files a page of rows summarised off the UI thread: what
    /// [`Rows::upsert`] of each row's summary does, in order, without an
    /// allocation per row (the row's strings move in).
    pub(crate) fn upsert_batch(&mut self, batch: SummaryBatch) {
        self.reserve_like(&batch);
        let ids: Vec<u32> = batch.names.iter().map(|n| self.names.intern(n)).collect();
        let (mut names, mut from, mut names_from) = (Vec::new(), 0, 0);
        for b in batch.rows {
            // Each once already (the batch's `take_name`).
            names.clear();
            names.extend(
                batch.name_refs[names_from..b.names_end]
                    .iter()
                    .map(|&r| ids[r as usize]),
            );
            let (headline_name, headline_conf) = match b.headline {
                Some((r, c)) => (ids[r as usize], c),
                None => (NO_NAME, f32::INFINITY),
            };
            self.rev = self.rev.wrapping_add(1);
            let [key_end, end] = b.ends;
            let row = Row {
                metadata_key: b.metadata_key,
                image: (b.has & HAS_IMAGE != 0).then_some(ImageMeta {
                    size: b.size,
                    etag: b.etag,
                    last_modified: b.last_modified,
                }),
                problem: (b.has & HAS_PROBLEM != 0)
                    .then(|| short_problem(batch.text[key_end..end].to_string())),
                headline_name,
                headline_conf,
                rev: self.rev,
                key_kind: b.key_kind,
                status: b.status,
                busy: false,
                flags: flags_of(b.readable, b.reviewed),
            };
            self.upsert_row(&batch.text[from..key_end], row, &names);
            from = end;
            names_from = b.names_end;
        }
    }

    /// After a count was announced ([`Rows::reserve`]), the first page
    /// shows what a row takes: room for the key and name arenas of every
    /// row announced is made now, while they are small, so that neither
    /// doubles later (a copy of tens of megabytes in one turn, the
    /// slowest turn of a million-row load).
    fn reserve_like(&mut self, batch: &SummaryBatch) {
        let rows = batch.rows.len();
        if self.announced == 0 || rows == 0 {
            return;
        }
        let more = std::mem::take(&mut self.announced);
        let (mut key_bytes, mut start) = (0, 0);
        for b in &batch.rows {
            key_bytes += b.ends[0] - start;
            start = b.ends[1];
        }
        // A quarter more than the page's average: keys and names vary.
        let slack = |per_page: usize| (per_page * more).div_ceil(rows) * 5 / 4;
        self.key_text.reserve(slack(key_bytes));
        self.name_ids.reserve(slack(batch.name_refs.len()));
    }

    /// [`Rows::upsert`] of a compact row and its name ids.
    fn upsert_row(&mut self, key: &str, row: Row, names: &[u32]) -> u32 {
        let conf = row.headline_conf;
        let time = row
            .image
            .as_ref()
            .and_then(|i| i.last_modified)
            .unwrap_or(i64::MIN);
        match self.slot(key) {
            Some(i) => {
                self.set_names(i, names);
                let old = &self.rows[i as usize];
                let (old_status, busy, gone) = (old.status, old.busy, old.is_gone());
                if gone {
                    self.live += 1;
                } else {
                    self.count_row(old_status, -1);
                }
                self.count_row(row.status, 1);
                self.status_keys[i as usize] = status_key(row.status);
                self.rows[i as usize] = Row { busy, ..row };
                self.conf_keys[i as usize] = conf;
                self.time_keys[i as usize] = time;
                self.touched.push(i);
                for o in &mut self.orders {
                    o.touch(i);
                }
                i
            }
            None => {
                let i = self.rows.len() as u32;
                self.count_row(row.status, 1);
                self.live += 1;
                self.key_text.push_str(key);
                self.key_starts.push(self.key_text.len() as u64);
                if !key.is_ascii() {
                    self.non_ascii.push(i);
                }
                let (text, starts) = (&self.key_text, &self.key_starts);
                self.index
                    .insert_unique(key, i, |j| key_at(text, starts, j));
                self.name_spans.push((0, 0));
                self.set_names(i, names);
                self.status_keys.push(status_key(row.status));
                self.rows.push(row);
                self.conf_keys.push(conf);
                self.time_keys.push(time);
                self.appended_from.get_or_insert(i as usize);
                i
            }
        }
    }

    /// The image (or orphan metadata) `key` is gone from the bucket: the
    /// row leaves the view and the counts but keeps its position (and its
    /// key, so it can come back there), as a tombstone without its
    /// summary. Returns its position if it was listed.
    pub fn remove(&mut self, key: &str) -> Option<u32> {
        let i = self.find(key)?;
        let row = &mut self.rows[i as usize];
        let status = row.status;
        row.flags = GONE;
        row.busy = false;
        row.problem = None;
        row.metadata_key = None;
        row.image = None;
        row.headline_name = NO_NAME;
        self.status_keys[i as usize] = GONE_KEY;
        self.set_names(i, &[]);
        self.count_row(status, -1);
        self.live -= 1;
        self.touched.push(i);
        Some(i)
    }

    /// Gives row `i` these name ids: in place if they fit its span, else
    /// at the end of the arena.
    fn set_names(&mut self, i: u32, names: &[u32]) {
        self.memo.clear();
        let (start, len) = self.name_spans[i as usize];
        let new_len = names.len() as u32;
        if new_len <= len {
            let start = start as usize;
            self.name_ids[start..start + names.len()].copy_from_slice(names);
            self.name_garbage += (len - new_len) as usize;
            self.name_spans[i as usize] = (start as u32, new_len);
            return;
        }
        self.name_garbage += len as usize;
        let start = self.name_ids.len() as u32;
        self.name_ids.extend_from_slice(names);
        self.name_spans[i as usize] = (start, new_len);
        if self.name_garbage > 4096 && self.name_garbage * 2 > self.name_ids.len() {
            self.compact_names();
        }
    }

    /// Rewrites the name arena without garbage, in position order.
    fn compact_names(&mut self) {
        let mut ids = Vec::with_capacity(self.name_ids.len() - self.name_garbage);
        for span in &mut self.name_spans {
            let (start, len) = *span;
            *span = (ids.len() as u32, len);
            ids.extend_from_slice(&self.name_ids[start as usize..(start + len) as usize]);
        }
        self.name_ids = ids;
        self.name_garbage = 0;
    }

    /// Marks a row as having a job queued or running (or not). Busy is
    /// not sorted or filtered on, so the view stays as it is.
    pub(crate) fn set_busy(&mut self, i: u32, busy: bool) {
        self.rows[i as usize].busy = busy;
    }

    fn count_row(&mut self, status: Option<Status>, delta: isize) {
        let slot = match status {
            Some(s) => &mut self.counts[s.index()],
            None => &mut self.unreadable,
        };
        *slot = slot.saturating_add_signed(delta);
    }

    /// Rows with this status.
    pub fn count(&self, s: Status) -> usize {
        self.counts[s.index()]
    }

    /// Rows whose metadata could not be read (no status).
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// Positions of the rows shown, filtered and sorted, as of the last
    /// [`Rows::refresh`].
    pub fn view(&self) -> &[u32] {
        &self.view
    }

    pub fn sort(&self) -> Sort {
        self.sort
    }

    pub(crate) fn set_sort(&mut self, sort: Sort) {
        self.sort = sort;
        self.view_dirty = true;
    }

    pub fn status_filter(&self) -> Option<Status> {
        self.status_filter
    }

    pub(crate) fn set_status_filter(&mut self, filter: Option<Status>) {
        self.status_filter = filter;
        self.view_dirty = true;
    }

    /// The text filter as typed.
    pub fn text_filter(&self) -> &str {
        &self.text_filter
    }

    /// A longer filter only narrows the view the table has; any other
    /// change rebuilds it.
    pub(crate) fn set_text_filter(&mut self, text: String) {
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

    pub(crate) fn clear_text_filter(&mut self) {
        self.text_filter.clear();
        self.memo = Vec::new();
        self.view_dirty = true;
    }

    /// Both filters off.
    pub(crate) fn clear_filters(&mut self) {
        self.status_filter = None;
        self.clear_text_filter();
    }

    /// Brings the view up to date: appended rows are merged in and changed
    /// rows moved; only a filter or sort change rebuilds it. Returns false
    /// if it was up to date already.
    pub fn refresh(&mut self) -> bool {
        if !self.view_dirty
            && !self.narrowed
            && self.appended_from.is_none()
            && self.touched.is_empty()
        {
            return false;
        }
        let needle = self.needle();
        if std::mem::take(&mut self.view_dirty) {
            self.narrowed = false;
            self.appended_from = None;
            self.touched.clear();
            self.memoize(&needle, self.rows.len());
            let mut view = std::mem::take(&mut self.view);
            self.rebuild_view(&needle, &mut view);
            self.view = view;
            return true;
        }
        if std::mem::take(&mut self.narrowed) {
            self.memoize(&needle, self.view.len());
            // Only rows shown now can match a longer filter.
            let mut view = std::mem::take(&mut self.view);
            let text = self.text_test(&needle, view.len());
            view.retain(|&i| self.shown(i, &text));
            drop(text);
            self.view = view;
        }
        // A row appended since the last refresh is merged in with its page,
        // however often it changed.
        let appended = self.appended_from.unwrap_or(usize::MAX);
        let mut touched = std::mem::take(&mut self.touched);
        touched.retain(|&i| (i as usize) < appended);
        self.move_touched(touched, &needle);
        if let Some(from) = self.appended_from.take() {
            self.merge_appended(from, &needle);
        }
        true
    }

    /// Takes changed rows out of the view and merges back those still
    /// shown where they belong now. All leave first: a row moved while
    /// another changed row still sat at its old place would be placed by
    /// a search over a view out of order.
    fn move_touched(&mut self, mut touched: Vec<u32>, needle: &Needle) {
        if touched.is_empty() {
            return;
        }
        touched.sort_unstable();
        touched.dedup();
        let mut view = std::mem::take(&mut self.view);
        view.retain(|v| touched.binary_search(v).is_err());
        let text = self.text_test(needle, touched.len());
        touched.retain(|&i| self.shown(i, &text));
        drop(text);
        self.sort_positions(self.sort, &mut touched);
        self.view = self.merge(self.sort, view, touched);
    }

    /// Sorts the rows appended since position `from` and merges them in;
    /// a page that sorts after the view (a listing by name) is appended.
    fn merge_appended(&mut self, from: usize, needle: &Needle) {
        let text = self.text_test(needle, self.rows.len() - from);
        let mut new: Vec<u32> = (from as u32..self.rows.len() as u32)
            .filter(|&i| self.shown(i, &text))
            .collect();
        drop(text);
        self.sort_positions(self.sort, &mut new);
        if self.view.last().is_none_or(|&last| {
            new.first()
                .is_none_or(|&first| self.cmp_rows(last, first) != Ordering::Greater)
        }) {
            self.view.extend(new);
        } else {
            let old = std::mem::take(&mut self.view);
            self.view = self.merge(self.sort, old, new);
        }
    }

    /// The view from scratch into `view`: the current sort's cached order
    /// (caught up first), filtered. The view's buffer is reused: the room
    /// [`Rows::reserve`] made for a listing survives the rebuild a reload
    /// begins with, so the view never doubles while rows come in.
    fn rebuild_view(&mut self, needle: &Needle, view: &mut Vec<u32>) {
        let n = self.rows.len() as u32;
        if let Some(slot) = self.sort.order_slot() {
            self.catch_up(slot);
        }
        let text = self.text_test(needle, n as usize);
        view.clear();
        match self.sort.order_slot() {
            None => view.extend((0..n).filter(|&i| self.shown(i, &text))),
            Some(slot) => view.extend(
                self.orders[slot]
                    .pos
                    .iter()
                    .copied()
                    .filter(|&i| self.shown(i, &text)),
            ),
        }
    }

    /// Brings a cached order up to date: touched rows are taken out, then
    /// they and the rows appended since are sorted and merged in.
    fn catch_up(&mut self, slot: usize) {
        let sort = [Sort::LowestConfidence, Sort::Newest][slot];
        let mut order = std::mem::take(&mut self.orders[slot]);
        let covered = order.pos.len();
        let mut new = std::mem::take(&mut order.touched);
        if !new.is_empty() {
            new.sort_unstable();
            new.dedup();
            let mut out = vec![0u64; covered.div_ceil(64)];
            for &i in &new {
                out[i as usize / 64] |= 1 << (i % 64);
            }
            order
                .pos
                .retain(|&i| out[i as usize / 64] & (1 << (i % 64)) == 0);
        }
        new.extend(covered as u32..self.rows.len() as u32);
        if !new.is_empty() {
            self.sort_positions(sort, &mut new);
            order.pos = self.merge(sort, order.pos, new);
        }
        self.orders[slot] = order;
    }

    /// Whether row `i` passes the status filter and `text`, the text
    /// filter's test ([`Rows::text_test`]).
    fn shown(&self, i: u32, text: &TextTest) -> bool {
        let status = self.status_keys[i as usize];
        if status == GONE_KEY {
            return false;
        }
        if let Some(f) = self.status_filter
            && status != f.index() as u8
        {
            return false;
        }
        match text {
            TextTest::All => true,
            TextTest::Each(needle) => self.matches_text(i, needle),
            TextTest::Bits(bits) => bits[i as usize / 64] >> (i % 64) & 1 != 0,
        }
    }

    /// How to test the text filter on `asked` rows: one scan of every
    /// row when many are asked, row by row when few are.
    fn text_test<'a>(&'a self, needle: &'a Needle, asked: usize) -> TextTest<'a> {
        if needle.text.is_empty() {
            TextTest::All
        } else if let Some(memo) = self.memo.last().filter(|m| m.text == needle.text) {
            TextTest::Bits(memo.bits())
        } else if self.bulk(asked) {
            TextTest::Bits(self.text_matches(needle, None).bits())
        } else {
            TextTest::Each(needle)
        }
    }

    /// Whether testing `asked` rows is better done by one scan of all.
    fn bulk(&self, asked: usize) -> bool {
        asked >= 4096 && asked * 8 >= self.rows.len()
    }

    /// Computes and keeps the bits of `needle` when `asked` rows are to
    /// be tested, from the bits of the longest needle typed before it
    /// that it extends.
    fn memoize(&mut self, needle: &Needle, asked: usize) {
        if needle.text.is_empty() || !self.bulk(asked) {
            return;
        }
        self.memo
            .retain(|m| needle.text.starts_with(m.text.as_str()));
        if self.memo.last().is_some_and(|m| m.text == needle.text) {
            return;
        }
        let memo = self.text_matches(needle, self.memo.last());
        self.memo.push(memo);
    }

    /// Whether row `i`'s names or key match the text filter.
    fn matches_text(&self, i: u32, needle: &Needle) -> bool {
        (!needle.names.is_empty() && self.names_of(i).iter().any(|&id| needle.names[id as usize]))
            || contains_ignore_case(self.key(i), &needle.text)
    }

    /// The rows whose names or key match the text filter, as bitsets
    /// over positions: the arenas are read in order, split across the
    /// cores, so a keystroke on a million rows stays within a frame.
    /// `prev`, if given, is what a shorter needle matched: only its rows
    /// are tested, and its name matches are taken as they are when the
    /// needle matches the same names.
    fn text_matches(&self, needle: &Needle, prev: Option<&Memo>) -> Memo {
        let words = self.rows.len().div_ceil(64);
        let same_names = prev.filter(|p| p.names == needle.names);
        let mut by_name = same_names.map_or_else(|| vec![0u64; words], |p| p.by_name.clone());
        let mut by_key = vec![0u64; words];
        let threads = if self.rows.len() < 1 << 16 {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        };
        let per = words.div_ceil(threads).max(1);
        let test_names = same_names.is_none() && !needle.names.is_empty();
        std::thread::scope(|s| {
            let chunks = by_name.chunks_mut(per).zip(by_key.chunks_mut(per));
            for (c, (names, keys)) in chunks.enumerate() {
                let span = c * per..c * per + names.len();
                let prev = prev.map(|p| (&p.by_name[span.clone()], &p.by_key[span]));
                s.spawn(move || {
                    if test_names {
                        self.names_range(c * per * 64, names, needle, prev.map(|p| p.0));
                    }
                    self.keys_range(c * per * 64, keys, needle, prev.map(|p| p.1));
                });
            }
        });
        Memo {
            text: needle.text.clone(),
            names: needle.names.clone(),
            by_name,
            by_key,
        }
    }

    /// Sets the bits of the rows from position `from` on whose names
    /// match, one bit per row of `words`; only rows set in `within` (if
    /// given) can match.
    fn names_range(&self, from: usize, words: &mut [u64], needle: &Needle, within: Option<&[u64]>) {
        let to = (from + words.len() * 64).min(self.rows.len());
        let hit = |i: usize| {
            self.names_of(i as u32)
                .iter()
                .any(|&id| needle.names[id as usize])
        };
        let Some(within) = within else {
            for i in from..to {
                if hit(i) {
                    words[(i - from) / 64] |= 1 << ((i - from) % 64);
                }
            }
            return;
        };
        for (k, word) in words.iter_mut().enumerate() {
            let mut cand = within[k];
            while cand != 0 {
                let b = cand.trailing_zeros();
                cand &= cand - 1;
                if hit(from + k * 64 + b as usize) {
                    *word |= 1 << b;
                }
            }
        }
    }

    /// Sets the bits of the rows from position `from` on whose key
    /// matches, as [`Rows::names_range`] does for names.
    fn keys_range(&self, from: usize, words: &mut [u64], needle: &Needle, within: Option<&[u64]>) {
        let to = (from + words.len() * 64).min(self.rows.len());
        let can =
            |i: usize| within.is_none_or(|w| w[(i - from) / 64] >> ((i - from) % 64) & 1 != 0);
        let mut set = |i: usize| words[(i - from) / 64] |= 1 << ((i - from) % 64);
        if !needle.text.is_ascii() {
            for i in (from..to).filter(|&i| can(i)) {
                if contains_ignore_case(self.key(i as u32), &needle.text) {
                    set(i);
                }
            }
            return;
        }
        let starts = &self.key_starts[from..=to];
        scan_keys(
            self.key_text.as_bytes(),
            starts,
            needle.text.as_bytes(),
            |r| can(from + r),
            |r| set(from + r),
        );
        let first = self.non_ascii.partition_point(|&i| (i as usize) < from);
        for &i in &self.non_ascii[first..] {
            if i as usize >= to {
                break;
            }
            if can(i as usize) && contains_ignore_case(self.key(i), &needle.text) {
                set(i as usize);
            }
        }
    }

    /// The text filter, lowercased, and the names it matches.
    fn needle(&self) -> Needle {
        let text = self.text_filter.to_lowercase();
        let mut names = if text.is_empty() {
            Vec::new()
        } else {
            self.names.matching(&text)
        };
        // A key search matches no name: rows skip their names.
        if !names.contains(&true) {
            names.clear();
        }
        Needle { text, names }
    }

    /// What `sort` orders row `i` by, as an unsigned integer (ties go by
    /// position). Rows arrive in key order (images, then orphans), so the
    /// name order is the position order.
    fn sort_key(&self, sort: Sort, i: u32) -> u64 {
        match sort {
            Sort::Name => 0,
            // Rows without labels carry +inf: last.
            Sort::LowestConfidence => u64::from(conf_order(self.conf_keys[i as usize])),
            // Newest first: the time's order, reversed.
            Sort::Newest => !((self.time_keys[i as usize] as u64) ^ (1 << 63)),
        }
    }

    /// The order of two rows under the current sort.
    fn cmp_rows(&self, a: u32, b: u32) -> Ordering {
        self.sort_key(self.sort, a)
            .cmp(&self.sort_key(self.sort, b))
            .then(a.cmp(&b))
    }

    /// Sorts positions, given in position order, as `sort` orders them: a
    /// radix sort on the integer keys, so a million rows sort in a few
    /// passes over 16 MB.
    fn sort_positions(&self, sort: Sort, v: &mut [u32]) {
        debug_assert!(v.is_sorted());
        if sort != Sort::Name {
            radix_sort(v, |i| self.sort_key(sort, i));
        }
    }

    /// Merges two lists sorted by `sort`. A short list is placed by binary
    /// search, so the long one is copied in runs rather than compared
    /// element by element.
    fn merge(&self, sort: Sort, a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
        let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
        let key = |i: u32| (self.sort_key(sort, i), i);
        let mut out = Vec::with_capacity(long.len() + short.len());
        let mut from = 0;
        if short.len() * 16 < long.len() {
            for &x in &short {
                let kx = key(x);
                let at = from + long[from..].partition_point(|&o| key(o) < kx);
                out.extend_from_slice(&long[from..at]);
                out.push(x);
                from = at;
            }
            out.extend_from_slice(&long[from..]);
            return out;
        }
        let mut j = 0;
        for &x in &short {
            let kx = key(x);
            while j < long.len() && key(long[j]) < kx {
                out.push(long[j]);
                j += 1;
            }
            out.push(x);
        }
        out.extend_from_slice(&long[j..]);
        out
    }
}

/// Sorts `v` stably by `key`: an LSD radix sort a byte per pass, with the
/// passes in which every key has the same byte skipped (timestamps and
/// confidences share their high bytes).
fn radix_sort(v: &mut [u32], key: impl Fn(u32) -> u64) {
    if v.len() < 256 {
        v.sort_by_key(|&i| key(i));
        return;
    }
    let mut a: Vec<(u64, u32)> = v.iter().map(|&i| (key(i), i)).collect();
    let mut counts = [[0usize; 256]; 8];
    for &(k, _) in &a {
        for (byte, c) in counts.iter_mut().enumerate() {
            c[((k >> (byte * 8)) & 0xff) as usize] += 1;
        }
    }
    let mut b = vec![(0u64, 0u32); a.len()];
    for (byte, c) in counts.iter_mut().enumerate() {
        if c.contains(&a.len()) {
            continue;
        }
        let mut at = 0;
        for slot in c.iter_mut() {
            let n = *slot;
            *slot = at;
            at += n;
        }
        for &e in &a {
            let d = ((e.0 >> (byte * 8)) & 0xff) as usize;
            b[c[d]] = e;
            c[d] += 1;
        }
        std::mem::swap(&mut a, &mut b);
    }
    for (slot, (_, i)) in v.iter_mut().zip(a) {
        *slot = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::parse_metadata;
    use crate::status::assess;

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
            doc: read.as_ref().map(crate::summary::summarize),
            read_error: None,
        }
    }

    /// Rows announced before a listing are filed without growing any
    /// column or the key index: nothing is copied in one turn.
    #[test]
    fn a_reserved_table_files_its_rows_without_growing() {
        let n = 20_000;
        let mut t = Rows::new();
        // As a reload does: cleared, the view rebuilt after the count.
        t.clear();
        t.reserve(n);
        t.refresh();
        let caps = |t: &Rows| {
            (
                t.rows.capacity(),
                t.key_starts.capacity(),
                t.conf_keys.capacity(),
                t.status_keys.capacity(),
                t.index.capacity(),
                t.view.capacity(),
            )
        };
        let before = caps(&t);
        // The key and name arenas are sized by the first page.
        let arenas = |t: &Rows| (t.key_text.capacity(), t.name_ids.capacity());
        let mut sized = None;
        let mut batch = SummaryBatch::new();
        for i in 0..n {
            batch.push(assessed(i, Some(60.0 + (i % 40) as f32), "Cat"));
            if batch.len() == 256 {
                t.upsert_batch(std::mem::replace(&mut batch, SummaryBatch::new()).finish());
                t.refresh();
                sized.get_or_insert(arenas(&t));
            }
        }
        t.upsert_batch(batch.finish());
        t.refresh();
        assert_eq!(t.len(), n);
        assert_eq!(t.view().len(), n);
        assert_eq!(caps(&t), before);
        assert_eq!(Some(arenas(&t)), sized);
        assert!(t.key_text.len() > t.key_text.capacity() * 3 / 5);
    }

    /// A batch names each of a row's labels and parents once, however
    /// often the document repeats it (as filing a summary does), and
    /// keeps one copy of a name per page.
    #[test]
    fn a_batch_names_each_name_once_a_row() {
        let doc = br#"{"Labels":[
            {"Name":"Cat","Confidence":91,"Parents":[{"Name":"Animal"},{"Name":"Pet"}]},
            {"Name":"Dog","Confidence":80,"Parents":[{"Name":"Animal"},{"Name":"Pet"}]},
            {"Name":"Animal","Confidence":79}]}"#;
        let mut batch = SummaryBatch::with_capacity(3);
        let mut one_by_one = Rows::new();
        for n in 0..3 {
            let mut a = assessed(n, Some(50.0), "x");
            a.doc = Some(crate::summary::summarize(&parse_metadata(doc)));
            one_by_one.upsert(RowSummary::from_assessed(&a));
            batch.push(a);
        }
        let batch = batch.finish();
        assert_eq!(batch.names, ["Cat", "Animal", "Pet", "Dog"]);
        assert_eq!(batch.name_refs.len(), 3 * 4);
        let mut rows = Rows::new();
        rows.upsert_batch(batch);
        assert_eq!(shown(&rows), shown(&one_by_one));
        for i in 0..3 {
            let mut names: Vec<&str> = rows.names_of(i).iter().map(|&n| rows.name(n)).collect();
            names.sort_unstable();
            assert_eq!(names, ["Animal", "Cat", "Dog", "Pet"]);
        }
    }

    /// Taking a row apart gives what copying it gives (the image's key
    /// aside, which the row's key holds): tagged with parents, untagged,
    /// malformed, unreadable, orphan.
    #[test]
    fn an_owned_summary_equals_a_copied_one() {
        let doc = br#"{"Labels":[{"Name":"Cat","Confidence":91,"Parents":[{"Name":"Animal"},{"Name":"Pet"}]},{"Name":"Sofa","Confidence":40}]}"#;
        let mut cases = vec![assessed(1, Some(80.0), "Dog"), assessed(2, None, "")];
        let mut tagged = assessed(3, Some(50.0), "Cat");
        tagged.doc = Some(crate::summary::summarize(&parse_metadata(doc)));
        cases.push(tagged);
        let mut malformed = assessed(4, Some(50.0), "Cat");
        malformed.doc = Some(crate::summary::summarize(&parse_metadata(b"{nope")));
        cases.push(malformed);
        let mut unreadable = assessed(5, None, "");
        unreadable.read_error = Some("503".into());
        unreadable.status = None;
        cases.push(unreadable);
        let mut orphan = assessed(6, Some(99.0), "Cup");
        orphan.image = None;
        cases.push(orphan);
        for a in cases {
            let mut want = RowSummary::from_assessed(&a);
            if let Some(i) = &mut want.image {
                i.key.clear();
            }
            assert_eq!(RowSummary::from_owned(a), want);
        }
    }

    /// Everything a row shows, by position: its key, the row itself,
    /// its names and headline by text.
    fn shown(rows: &Rows) -> Vec<String> {
        (0..rows.slots() as u32)
            .map(|i| {
                let r = rows.get(i);
                let mut names: Vec<&str> = rows.names_of(i).iter().map(|&n| rows.name(n)).collect();
                names.sort_unstable();
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?} {} {} {} {names:?} {:?}",
                    r.key,
                    r.metadata_key,
                    r.image,
                    r.problem,
                    r.status,
                    r.key_kind,
                    r.readable(),
                    r.reviewed(),
                    r.rev,
                    rows.headline(&r),
                )
            })
            .collect()
    }

    /// A page filed as a batch gives the table that filing each row's
    /// summary in turn gives: tagged with parents, untagged, malformed,
    /// unreadable, orphan, a key listed twice (replaced in place) and a
    /// removed row that comes back; names interned once.
    #[test]
    fn a_batch_files_what_its_summaries_file() {
        let doc = br#"{"Labels":[{"Name":"Cat","Confidence":91,"Parents":[{"Name":"Animal"},{"Name":"Pet"}]},{"Name":"Sofa","Confidence":40}]}"#;
        let mut cases = vec![assessed(1, Some(80.0), "Dog"), assessed(2, None, "")];
        let mut tagged = assessed(3, Some(50.0), "Cat");
        tagged.doc = Some(crate::summary::summarize(&parse_metadata(doc)));
        cases.push(tagged);
        let mut malformed = assessed(4, Some(50.0), "Cat");
        malformed.doc = Some(crate::summary::summarize(&parse_metadata(b"{nope")));
        cases.push(malformed);
        let mut unreadable = assessed(5, None, "");
        unreadable.read_error = Some("503 ".repeat(100));
        unreadable.status = None;
        cases.push(unreadable);
        let mut orphan = assessed(6, Some(99.0), "Cup");
        orphan.image = None;
        cases.push(orphan);
        cases.push(assessed(1, Some(60.0), "Cat"));
        cases.push(assessed(7, Some(75.0), "Été"));
        let (mut one_by_one, mut batched) = (Rows::new(), Rows::new());
        for rows in [&mut one_by_one, &mut batched] {
            rows.upsert(RowSummary::from_assessed(&assessed(7, Some(10.0), "Old")));
            rows.remove("uploads/00007.jpg");
        }
        let mut batch = SummaryBatch::new();
        for a in cases {
            one_by_one.upsert(RowSummary::from_assessed(&a));
            batch.push(a);
        }
        let batch = batch.finish();
        assert_eq!(batch.len(), 8);
        assert!(
            batch.names.len() < batch.name_refs.len(),
            "names once a page"
        );
        batched.upsert_batch(batch);
        assert_eq!(shown(&batched), shown(&one_by_one));
        assert_eq!(batched.len(), 7);
        for rows in [&mut one_by_one, &mut batched] {
            rows.set_sort(Sort::LowestConfidence);
            rows.refresh();
        }
        assert_eq!(batched.view(), one_by_one.view());
        assert_eq!(batched.unreadable(), 1);
    }

    #[test]
    fn status_index_is_the_position_in_all() {
        for (i, s) in Status::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i, "{s}");
        }
    }

    /// The incremental view (merged pages, moved rows) always equals a
    /// full rebuild, whatever the sort and filter.
    #[test]
    fn incremental_view_matches_a_rebuild() {
        let names = ["Cat", "Dog", "Feline", "Cup"];
        for sort in [Sort::Name, Sort::LowestConfidence, Sort::Newest] {
            for (status, text) in [(None, ""), (Some(Status::NeedsReview), ""), (None, "cat")] {
                let mut rows = Rows::new();
                rows.set_sort(sort);
                rows.set_status_filter(status);
                rows.set_text_filter(text.into());
                rows.refresh();
                let mut seed = 17u64;
                let mut next = || {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as usize
                };
                for page in 0..6 {
                    for k in 0..50 {
                        let n = page * 50 + k;
                        let r = next();
                        let conf = (r % 5 != 0).then_some((r % 1000) as f32 / 10.0);
                        rows.upsert(RowSummary::from_assessed(&assessed(n, conf, names[r % 4])));
                    }
                    rows.refresh();
                    // Results of tagging runs change rows in place.
                    for _ in 0..5 {
                        let n = next() % ((page + 1) * 50);
                        let r = next();
                        let a = assessed(n, Some((r % 1000) as f32 / 10.0), names[r % 4]);
                        rows.upsert(RowSummary::from_assessed(&a));
                        rows.refresh();
                    }
                    // The index reports keys that vanished; some come back.
                    let gone = format!("uploads/{:05}.jpg", next() % ((page + 1) * 50));
                    rows.remove(&gone);
                    rows.refresh();
                    if next() % 2 == 0 {
                        let n: usize = gone[8..13].parse().unwrap();
                        rows.upsert(RowSummary::from_assessed(&assessed(n, Some(50.0), "Cat")));
                        rows.refresh();
                    }
                    let incremental = rows.view.clone();
                    let counts = (rows.counts, rows.unreadable);
                    rows.view_dirty = true;
                    assert!(rows.refresh());
                    assert_eq!(
                        incremental, rows.view,
                        "{sort:?} {status:?} {text:?} page {page}"
                    );
                    let mut fresh = [0usize; 7];
                    assert_eq!(rows.iter().count(), rows.len());
                    for r in rows.iter() {
                        fresh[Status::ALL
                            .iter()
                            .position(|x| Some(*x) == r.status)
                            .unwrap()] += 1;
                    }
                    assert_eq!(counts, (fresh, 0));
                    assert_eq!(rows.index.len(), rows.slots());
                }
                assert!(!rows.view().is_empty());
                // Typing a longer filter narrows the view it has.
                for t in ["d", "do", "dog", "dogs"] {
                    rows.set_text_filter(format!("{text}{t}"));
                    rows.refresh();
                    let incremental = rows.view.clone();
                    rows.view_dirty = true;
                    rows.refresh();
                    assert_eq!(incremental, rows.view, "{sort:?} {status:?} {text:?}+{t}");
                }
            }
        }
    }

    /// A removed row leaves the view and the counts, keeps its position,
    /// and comes back there when its key is listed again.
    #[test]
    fn removed_rows_are_tombstones() {
        let mut rows = Rows::new();
        for n in 0..4 {
            rows.upsert(RowSummary::from_assessed(&assessed(n, Some(90.0), "Cat")));
        }
        rows.refresh();
        let tagged = rows.count(Status::Tagged);
        assert_eq!(rows.remove("uploads/00001.jpg"), Some(1));
        assert_eq!(rows.remove("uploads/00001.jpg"), None);
        assert_eq!(rows.remove("uploads/nope.jpg"), None);
        rows.refresh();
        assert_eq!(rows.view(), [0, 2, 3]);
        assert_eq!((rows.len(), rows.slots()), (3, 4));
        assert_eq!(rows.count(Status::Tagged), tagged - 1);
        assert_eq!(rows.find("uploads/00001.jpg"), None);
        assert!(rows[1].is_gone() && rows.names_of(1).is_empty());
        // A later position stays where it was.
        assert_eq!(rows.find("uploads/00003.jpg"), Some(3));
        assert_eq!(
            rows.upsert(RowSummary::from_assessed(&assessed(1, None, ""))),
            1
        );
        rows.refresh();
        assert_eq!(rows.view(), [0, 1, 2, 3]);
        assert_eq!(rows.count(Status::Untagged), 1);
        assert_eq!(rows.len(), 4);
    }

    /// `/` matches a row by its key (any case) or by one of its label or
    /// parent names, held as interned ids.
    #[test]
    fn text_filter_matches_keys_labels_and_parents() {
        let mut rows = Rows::new();
        let mut with_parent = RowSummary::from_assessed(&assessed(0, Some(80.0), "Tabby"));
        with_parent.names.push("Feline".into());
        rows.upsert(with_parent);
        rows.upsert(RowSummary::from_assessed(&assessed(1, Some(80.0), "Dog")));
        let mut upper = RowSummary::from_assessed(&assessed(2, None, ""));
        upper.key = "uploads/HOLIDAY/Beach.JPG".into();
        rows.upsert(upper);
        for (needle, want) in [
            ("tabby", vec![0]),
            ("FELI", vec![0]),
            ("dog", vec![1]),
            ("holiday/beach", vec![2]),
            ("uploads/0000", vec![0, 1]),
            ("cat", vec![]),
        ] {
            rows.set_text_filter(needle.into());
            rows.refresh();
            assert_eq!(rows.view(), want, "{needle}");
        }
        // Names are stored once, whatever the number of rows.
        for n in 3..100 {
            rows.upsert(RowSummary::from_assessed(&assessed(n, Some(80.0), "Dog")));
        }
        assert_eq!(rows.names.len(), 3);
    }

    /// On a table large enough for the one-scan search (split across
    /// threads), `/` finds exactly what a plain lowercase `contains` over
    /// keys and names finds: mixed case, a needle across a key boundary,
    /// non-ASCII keys (the Kelvin sign lowercases to `k`), names changed
    /// in place and moved to the end of the name arena, and compacted.
    #[test]
    fn the_bulk_search_finds_what_a_plain_scan_finds() {
        let labels = ["Cat", "Dog", "Kite", "Tabby Cat", "Cup"];
        let summary = |n: usize, label: &str, extra: usize| {
            let key = match n % 7 {
                0 => format!("uploads/Été/IMG_{n:05}.JPG"),
                1 => format!("uploads/\u{212A}ite_{n:05}.jpg"),
                2 => format!("uploads/jpg{n:05}"),
                _ => format!("uploads/a/img_{n:05}.jpg"),
            };
            let mut s = RowSummary::from_assessed(&assessed(n, Some(80.0), label));
            s.key = key;
            s.names
                .extend((0..extra).map(|k| format!("Extra {}", (n + k) % 11)));
            s
        };
        let mut rows = Rows::new();
        let n = 70_000;
        for i in 0..n {
            rows.upsert(summary(i, labels[i % labels.len()], i % 3));
        }
        // Rows re-tagged with fewer and with more names, some removed.
        for i in (0..n).step_by(3) {
            rows.upsert(summary(i, labels[(i + 1) % labels.len()], (i / 3) % 4));
        }
        for i in (0..n).step_by(1001) {
            let key = rows.key(i as u32).to_string();
            rows.remove(&key);
        }
        assert!(rows.name_garbage * 2 <= rows.name_ids.len().max(8192));
        for needle in [
            "cat",
            "CAT",
            "kite",
            "k",
            "gu",
            "jpg0",
            "été",
            "ÉTÉ/img_0001",
            "extra 1",
            "9",
            "00042",
            "zzz",
        ] {
            rows.set_text_filter(needle.into());
            rows.refresh();
            assert_eq!(rows.view(), props::reference(&rows), "{needle}");
        }
        // Typed a key at a time (narrowing from the shorter needle's
        // matches), erased (its bits reused), re-tagged mid-search (the
        // kept bits dropped), typed again.
        // `kite_000` matches the same names from `k` to `kite` (rows
        // matched by name are taken as they were) and keys with the Kelvin
        // sign all along.
        for (typed, retag) in [("img_0001", 0), ("tabby c", 3), ("kite_000", 0)] {
            rows.clear_text_filter();
            for end in (1..=typed.len()).chain((1..typed.len()).rev()) {
                rows.set_text_filter(typed[..end].into());
                rows.refresh();
                assert_eq!(rows.view(), props::reference(&rows), "{}", &typed[..end]);
                if end == retag {
                    // Row 8 was a Tabby Cat, row 1 was not.
                    rows.upsert(summary(8, "Dog", 0));
                    rows.upsert(summary(1, "Tabby Cat", 0));
                }
            }
            assert!(!rows.memo.is_empty(), "a bulk search keeps its bits");
        }
        // The names a row shows are the last ones it was given.
        let r = 3 * 5;
        let mut got: Vec<&str> = rows.names_of(r).iter().map(|&id| rows.name(id)).collect();
        got.sort_unstable();
        let mut want = summary(r as usize, labels[(r as usize + 1) % labels.len()], 1).names;
        want.sort_unstable();
        want.dedup();
        assert_eq!(got, want);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        const LABELS: [&str; 4] = ["Cat", "Dog", "Catalog", "Cup"];
        const TEXTS: [&str; 8] = ["", "c", "ca", "cat", "0", "01", "dog", "D"];

        #[derive(Debug, Clone)]
        enum Op {
            Upsert {
                n: u8,
                conf: Option<u8>,
                time: u8,
                label: u8,
            },
            Remove(u8),
            Sort(u8),
            Status(Option<u8>),
            Text(u8),
            Refresh,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0u8..40, proptest::option::of(0u8..6), 0u8..5, 0u8..4)
                    .prop_map(|(n, conf, time, label)| Op::Upsert { n, conf, time, label }),
                1 => (0u8..40).prop_map(Op::Remove),
                1 => (0u8..3).prop_map(Op::Sort),
                1 => proptest::option::of(0u8..3).prop_map(Op::Status),
                1 => (0u8..8).prop_map(Op::Text),
                2 => Just(Op::Refresh),
            ]
        }

        fn summary(n: u8, conf: Option<u8>, time: u8, label: u8) -> RowSummary {
            let key = format!("uploads/{n:03}.jpg");
            // Few distinct confidences and times: many ties.
            let conf = conf.map(|c| 40.0 + 10.0 * f32::from(c));
            RowSummary {
                image: Some(ObjectInfo {
                    key: key.clone(),
                    size: 1,
                    etag: None,
                    last_modified: Some(i64::from(time) * 100),
                }),
                key,
                status: Some(match conf {
                    None => Status::Untagged,
                    Some(c) if c < 70.0 => Status::NeedsReview,
                    Some(_) => Status::Tagged,
                }),
                headline: conf.map(|c| (LABELS[label as usize].to_string(), c)),
                names: conf
                    .map(|_| vec![LABELS[label as usize].to_string()])
                    .unwrap_or_default(),
                readable: conf.is_some(),
                ..RowSummary::default()
            }
        }

        /// The view by definition: every live row that passes the
        /// filters, fully sorted.
        pub(super) fn reference(rows: &Rows) -> Vec<u32> {
            let needle = rows.text_filter.to_lowercase();
            let mut v: Vec<u32> = rows
                .iter()
                .filter(|r| rows.status_filter.is_none_or(|f| r.status == Some(f)))
                .filter(|r| {
                    r.key.to_lowercase().contains(&needle)
                        || rows
                            .names_of(r.pos)
                            .iter()
                            .any(|&id| rows.name(id).to_lowercase().contains(&needle))
                })
                .map(|r| r.pos)
                .collect();
            let (c, t) = (&rows.conf_keys, &rows.time_keys);
            match rows.sort {
                Sort::Name => {}
                Sort::LowestConfidence => {
                    v.sort_by(|&a, &b| c[a as usize].total_cmp(&c[b as usize]).then(a.cmp(&b)))
                }
                Sort::Newest => {
                    v.sort_by(|&a, &b| t[b as usize].cmp(&t[a as usize]).then(a.cmp(&b)))
                }
            }
            v
        }

        proptest! {
            /// Whatever the upserts, removals, sort and filter switches,
            /// the view after a refresh is the view by definition, and the
            /// cached orders, caught up, are full sorts.
            #[test]
            fn cached_orders_and_view_agree_with_a_full_sort(
                ops in proptest::collection::vec(op(), 1..120)
            ) {
                let mut rows = Rows::new();
                for op in ops {
                    match op {
                        Op::Upsert { n, conf, time, label } => {
                            rows.upsert(summary(n, conf, time, label));
                        }
                        Op::Remove(n) => {
                            rows.remove(&format!("uploads/{n:03}.jpg"));
                        }
                        Op::Sort(s) => rows.set_sort(
                            [Sort::Name, Sort::LowestConfidence, Sort::Newest][s as usize],
                        ),
                        Op::Status(f) => rows.set_status_filter(f.map(|f| {
                            [Status::Untagged, Status::NeedsReview, Status::Tagged][f as usize]
                        })),
                        Op::Text(t) => rows.set_text_filter(TEXTS[t as usize].to_string()),
                        Op::Refresh => {
                            rows.refresh();
                            prop_assert_eq!(rows.view().to_vec(), reference(&rows));
                        }
                    }
                }
                rows.refresh();
                prop_assert_eq!(rows.view().to_vec(), reference(&rows));
                for (slot, sort) in [Sort::LowestConfidence, Sort::Newest].into_iter().enumerate() {
                    rows.catch_up(slot);
                    let mut full: Vec<u32> = (0..rows.slots() as u32).collect();
                    full.sort_by_key(|&i| (rows.sort_key(sort, i), i));
                    prop_assert_eq!(&rows.orders[slot].pos, &full);
                    prop_assert!(rows.orders[slot].touched.is_empty());
                }
            }
        }

        /// The radix sort orders by key and keeps ties in position order,
        /// over sizes above its cut to a comparison sort.
        #[test]
        fn radix_sort_is_a_stable_sort() {
            let mut seed = 5u64;
            for n in [0usize, 1, 255, 256, 1000, 70_000] {
                let keys: Vec<u64> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        // Shared high bytes, a few distinct values: ties.
                        0x1234_5600_0000_0000 | ((seed >> 40) % 300) << 8
                    })
                    .collect();
                let mut v: Vec<u32> = (0..n as u32).collect();
                radix_sort(&mut v, |i| keys[i as usize]);
                let mut want: Vec<u32> = (0..n as u32).collect();
                want.sort_by_key(|&i| (keys[i as usize], i));
                assert_eq!(v, want, "{n}");
            }
        }
    }
}
