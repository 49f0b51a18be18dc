//! Where things go on the screen, and what a frame keeps for the next:
//! what the app (mouse hit-testing, thumbnail sizes) and the drawing
//! share, so neither reaches into the other for it.

use ratatui::layout::{Constraint, Layout as Split, Rect};
use ratatui::text::Line;
use ratatui::widgets::Block;

use super::theme::Theme;

/// Where everything goes, for drawing and for mouse hit-testing.
#[derive(Debug, Clone, Copy)]
pub struct Areas {
    pub list: Rect,
    pub list_header: Rect,
    pub list_body: Rect,
    pub detail: Rect,
    pub thumb: Rect,
    pub detail_text: Rect,
    pub status: Rect,
    pub message: Rect,
}

pub fn areas(full: Rect) -> Areas {
    let [main, status, message] = Split::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(full);
    let [list, detail] =
        Split::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(main);
    let list_inner = Block::bordered().inner(list);
    let [list_header, list_body] =
        Split::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(list_inner);
    let detail_inner = Block::bordered().inner(detail);
    // Tall enough for a 4:3 photo across the pane's full width (a cell is
    // about twice as tall as wide), leaving two fifths for the labels.
    let thumb_h = (detail_inner.width * 3)
        .div_ceil(8)
        .min(detail_inner.height * 3 / 5);
    let [thumb, detail_text] =
        Split::vertical([Constraint::Length(thumb_h), Constraint::Min(0)]).areas(detail_inner);
    Areas {
        list,
        list_header,
        list_body,
        detail,
        thumb,
        detail_text,
        status,
        message,
    }
}

/// What the label lines depend on besides the document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinesKey {
    pub(in crate::tui) doc: u64,
    pub(in crate::tui) width: u16,
    pub(in crate::tui) boxed: Option<usize>,
    pub(in crate::tui) min_confidence: f32,
    pub(in crate::tui) review_below: f32,
    pub(in crate::tui) theme: Theme,
}

/// The label lines of one document, built once for a width and settings
/// (see `view::detail`), with where each starts in rows.
#[derive(Debug)]
pub struct DetailLines {
    pub(in crate::tui) key: LinesKey,
    pub(in crate::tui) lines: Vec<Line<'static>>,
    /// Rows above each line: `starts[i]` for line `i`, then the total.
    pub(in crate::tui) starts: Vec<usize>,
    /// Builds so far (kept across documents), for tests and benches.
    pub(in crate::tui) builds: u64,
}
