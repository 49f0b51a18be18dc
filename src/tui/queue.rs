//! The review queue's session state: the writes this session made (newest
//! last, for `u`), the labels the operator picked recently (for the
//! suggestions) and the pace the status line shows.

use std::time::{Duration, Instant};

use crate::pipeline::ReviewUndo;

/// How many review writes `u` can take back.
pub(crate) const UNDO_DEPTH: usize = 1000;
/// How many recent picks rank the suggestions.
const RECENT: usize = 20;

#[derive(Debug, Default)]
pub struct Queue {
    /// Review writes this session made and has not undone, oldest first.
    undo: Vec<ReviewUndo>,
    /// Picked replacement labels, newest first, each once.
    recent: Vec<String>,
    /// Bumped whenever `recent` changes (the suggestions' cache key).
    pub recent_version: u64,
    /// Review writes made this session, less those undone.
    pub reviewed: usize,
    /// When the first review write of the session landed.
    started: Option<Instant>,
}

impl Queue {
    /// A review write landed: it counts, and `u` can take it back.
    pub fn written(&mut self, undo: ReviewUndo) {
        self.reviewed += 1;
        self.started.get_or_insert_with(Instant::now);
        if self.undo.len() == UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.undo.push(undo);
    }

    /// The newest write still to undo, taken off the stack.
    pub(crate) fn pop_undo(&mut self) -> Option<ReviewUndo> {
        self.undo.pop()
    }

    /// An undo that could not be made now (the store failed for a while):
    /// back on top of the stack, so `u` tries it again.
    pub(crate) fn restore_undo(&mut self, undo: ReviewUndo) {
        self.undo.push(undo);
    }

    /// An undo was made: the review no longer counts.
    pub fn undone(&mut self) {
        self.reviewed = self.reviewed.saturating_sub(1);
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Remembers a picked label (newest first, each name once).
    pub fn picked(&mut self, name: &str) {
        self.recent.retain(|n| !n.eq_ignore_ascii_case(name));
        self.recent.insert(0, name.to_string());
        self.recent.truncate(RECENT);
        self.recent_version += 1;
    }

    pub fn recent(&self) -> &[String] {
        &self.recent
    }

    /// Reviews per minute since the first one (None before a minute's
    /// worth of evidence: two reviews, or ten seconds).
    pub(crate) fn per_minute(&self) -> Option<f64> {
        let elapsed = self.started?.elapsed();
        rate(self.reviewed, elapsed)
    }
}

/// Reviews per minute over `elapsed`, once there is something to tell.
fn rate(reviewed: usize, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64().max(1.0);
    (reviewed >= 2 || secs >= 10.0).then(|| reviewed as f64 * 60.0 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undo(n: u32) -> ReviewUndo {
        ReviewUndo {
            image_key: format!("uploads/{n}.jpg"),
            metadata_key: format!("metadata/{n}.jpg.json"),
            before: bytes::Bytes::new(),
            after_etag: format!("\"{n}\""),
        }
    }

    #[test]
    fn undo_is_newest_first_and_counts() {
        let mut q = Queue::default();
        q.written(undo(1));
        q.written(undo(2));
        assert_eq!(q.reviewed, 2);
        assert_eq!(q.pop_undo().unwrap().image_key, "uploads/2.jpg");
        q.undone();
        assert_eq!(q.reviewed, 1);
        assert_eq!(q.pop_undo().unwrap().image_key, "uploads/1.jpg");
        assert!(q.pop_undo().is_none());
    }

    #[test]
    fn picks_are_newest_first_once() {
        let mut q = Queue::default();
        for n in ["Cat", "Dog", "cat"] {
            q.picked(n);
        }
        assert_eq!(q.recent(), ["cat", "Dog"]);
        assert_eq!(q.recent_version, 3);
    }

    #[test]
    fn the_rate_waits_for_evidence() {
        assert_eq!(rate(1, Duration::from_secs(2)), None);
        assert_eq!(rate(2, Duration::from_secs(30)), Some(4.0));
        assert_eq!(rate(1, Duration::from_secs(60)), Some(1.0));
    }
}
