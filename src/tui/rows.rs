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

use crate::catalog::Assessed;
use crate::contract::{KeyKind, MetadataDoc, Status};
use crate::key_index::KeyIndex;
use crate::storage::ObjectInfo;

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
    headline_conf: Option<f32>,
    /// Key, label and parent names, lowercased and joined: what `/`
    /// searches, built once so filtering a large bucket is one scan a row.
    search: Box<str>,
}

impl Row {
    pub fn from_assessed(a: Assessed) -> Row {
        let problem = a.problem();
        let key = a.key().to_string();
        let headline_conf = a.headline().map(|h| h.1);
        let mut search = key.to_lowercase();
        if let Some(d) = a.doc() {
            for name in d.search_names() {
                search.push('\n');
                search.push_str(&name);
            }
        }
        Row {
            search: search.into_boxed_str(),
            key,
            metadata_key: a.metadata.map(|m| m.key),
            image: a.image,
            key_kind: a.key_kind,
            status: a.status,
            doc: None,
            problem,
            busy: false,
            headline_conf,
        }
    }

    pub fn headline(&self) -> Option<(&str, f32)> {
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

    pub fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::LowestConfidence,
            Sort::LowestConfidence => Sort::Newest,
            Sort::Newest => Sort::Name,
        }
    }
}

/// The rows, their index by key, and the filtered, sorted view.
#[derive(Debug, Clone)]
pub struct Rows {
    rows: Vec<Row>,
    /// Row positions by key: the keys live only in the rows.
    index: KeyIndex,
    /// Sort keys, parallel to `rows` and compact, so sorting and merging
    /// 100,000 rows touches a few hundred KB, not the rows themselves.
    conf_keys: Vec<f32>,
    time_keys: Vec<i64>,
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
            index: KeyIndex::new(),
            conf_keys: Vec::new(),
            time_keys: Vec::new(),
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
        }
    }

    /// Drops every row (a reload); the sort and the filters stay.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
        self.conf_keys.clear();
        self.time_keys.clear();
        self.counts = [0; Status::ALL.len()];
        self.unreadable = 0;
        self.view.clear();
        self.appended_from = None;
        self.touched.clear();
        self.view_dirty = true;
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every row, in position order.
    pub fn iter(&self) -> std::slice::Iter<'_, Row> {
        self.rows.iter()
    }

    /// The position of the row with this key.
    pub fn find(&self, key: &str) -> Option<u32> {
        let rows = &self.rows;
        self.index.find(key, |i| rows[i as usize].key.as_str())
    }

    /// Adds a row, or replaces the row with its key in place (keeping its
    /// `busy` flag); the view catches up on the next [`Rows::refresh`].
    pub fn upsert(&mut self, row: Row) {
        let conf = row.headline_conf.unwrap_or(f32::INFINITY);
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
                let rows = &self.rows;
                self.index
                    .insert_unique(&row.key, i, |j| rows[j as usize].key.as_str());
                self.rows.push(row);
                self.conf_keys.push(conf);
                self.time_keys.push(time);
                self.appended_from.get_or_insert(i as usize);
            }
        }
    }

    /// Marks a row as having a job queued or running (or not). Busy is
    /// not sorted or filtered on, so the view stays as it is.
    pub fn set_busy(&mut self, i: u32, busy: bool) {
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

    pub fn set_sort(&mut self, sort: Sort) {
        self.sort = sort;
        self.view_dirty = true;
    }

    pub fn status_filter(&self) -> Option<Status> {
        self.status_filter
    }

    pub fn set_status_filter(&mut self, filter: Option<Status>) {
        self.status_filter = filter;
        self.view_dirty = true;
    }

    /// The text filter as typed.
    pub fn text_filter(&self) -> &str {
        &self.text_filter
    }

    /// A longer filter only narrows the view the table has; any other
    /// change rebuilds it.
    pub fn set_text_filter(&mut self, text: String) {
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

    pub fn clear_text_filter(&mut self) {
        self.text_filter.clear();
        self.view_dirty = true;
    }

    /// Both filters off.
    pub fn clear_filters(&mut self) {
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
        let needle = self.text_filter.to_lowercase();
        if std::mem::take(&mut self.view_dirty) {
            self.narrowed = false;
            self.appended_from = None;
            self.touched.clear();
            let mut view: Vec<u32> = (0..self.rows.len() as u32)
                .filter(|&i| self.shown(i, &needle))
                .collect();
            self.sort_slice(&mut view);
            self.view = view;
            return true;
        }
        if std::mem::take(&mut self.narrowed) {
            // Only rows shown now can match a longer filter.
            let mut view = std::mem::take(&mut self.view);
            view.retain(|&i| self.shown(i, &needle));
            self.view = view;
        }
        for i in std::mem::take(&mut self.touched) {
            self.move_touched(i, &needle);
        }
        if let Some(from) = self.appended_from.take() {
            self.merge_appended(from, &needle);
        }
        true
    }

    /// Takes a changed row out of the view and puts it back where it
    /// belongs now, if it is still shown.
    fn move_touched(&mut self, i: u32, needle: &str) {
        if let Some(pos) = self.view.iter().position(|&v| v == i) {
            self.view.remove(pos);
        }
        if self.shown(i, needle) {
            let at = self
                .view
                .partition_point(|&v| self.cmp_rows(v, i) == Ordering::Less);
            self.view.insert(at, i);
        }
    }

    /// Sorts the rows appended since position `from` and merges them in;
    /// a page that sorts after the view (a listing by name) is appended.
    fn merge_appended(&mut self, from: usize, needle: &str) {
        let mut new: Vec<u32> = (from as u32..self.rows.len() as u32)
            .filter(|&i| self.shown(i, needle))
            .collect();
        self.sort_slice(&mut new);
        if self.view.last().is_none_or(|&last| {
            new.first()
                .is_none_or(|&first| self.cmp_rows(last, first) != Ordering::Greater)
        }) {
            self.view.extend(new);
        } else {
            let old = std::mem::take(&mut self.view);
            self.view = self.merge(old, new);
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
    fn cmp_rows(&self, a: u32, b: u32) -> Ordering {
        let (x, y) = (a as usize, b as usize);
        match self.sort {
            Sort::Name => Ordering::Equal,
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
            if self.cmp_rows(a[i], b[j]) != Ordering::Greater {
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
                        rows.upsert(Row::from_assessed(assessed(n, conf, names[r % 4])));
                    }
                    rows.refresh();
                    // Results of tagging runs change rows in place.
                    for _ in 0..5 {
                        let n = next() % ((page + 1) * 50);
                        let r = next();
                        let a = assessed(n, Some((r % 1000) as f32 / 10.0), names[r % 4]);
                        rows.upsert(Row::from_assessed(a));
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
                    for r in rows.iter() {
                        fresh[Status::ALL
                            .iter()
                            .position(|x| Some(*x) == r.status)
                            .unwrap()] += 1;
                    }
                    assert_eq!(counts, (fresh, 0));
                    assert_eq!(rows.index.len(), rows.len());
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
}
