//! Every colour and text style the TUI draws with, in one place, so a
//! theme is one value: [`Theme::dark`] is the default look. The view asks
//! for styles by meaning (`theme.dim`, `theme.confidence(..)`), never for
//! colours.

use ratatui::style::{Color, Modifier, Style};

use crate::contract::Status;

/// The style of each status's glyph and word, and of unreadable metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusStyles {
    pub untagged: Style,
    pub tagged: Style,
    pub needs_review: Style,
    pub stale: Style,
    pub failed: Style,
    pub malformed: Style,
    pub orphan: Style,
    /// The metadata could not be read: no status.
    pub unreadable: Style,
}

/// The TUI's styles, named by what they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub status: StatusStyles,

    /// Confidence at or above the review threshold: no review needed.
    pub confidence_high: Style,
    /// Kept at the current MinConfidence, but under the review threshold.
    pub confidence_mid: Style,
    /// Under the current MinConfidence: a re-run would drop the label.
    pub confidence_low: Style,

    /// The border of the focused pane.
    pub border_focused: Style,
    /// The border of the other pane.
    pub border: Style,
    /// Column headings and the bucket name in the status line.
    pub heading: Style,
    /// The selected list row (patched under every span of that row).
    pub selection: Style,
    /// The list's pointer and mark glyphs.
    pub pointer: Style,
    /// Live or active things: the text filter, marks, a running listing
    /// or tagging, prompts, key names in the help.
    pub accent: Style,
    /// Secondary text: counts in the list title, placeholders, field
    /// names, hints.
    pub dim: Style,
    /// Text further back: separators, missing metadata, label parents,
    /// the key hints.
    pub faint: Style,
    /// Problems: error messages, a failed listing, metadata problems.
    pub error: Style,
    /// The status line's background.
    pub status_line: Style,
    /// The detail pane's status heading, patched over the status's style.
    pub status_heading: Style,

    /// The help overlay's border.
    pub dialog_border: Style,
    /// The confirmation dialog's border.
    pub confirm_border: Style,
    /// The confirmation's `[y]`.
    pub confirm_yes: Style,
    /// The confirmation's `[n]`.
    pub confirm_no: Style,
}

impl Default for Theme {
    fn default() -> Self {
        Theme::dark()
    }
}

impl Theme {
    /// For a dark terminal background: the default.
    pub fn dark() -> Theme {
        let fg = |c: Color| Style::new().fg(c);
        Theme {
            status: StatusStyles {
                untagged: fg(Color::Gray),
                tagged: fg(Color::Green),
                needs_review: fg(Color::Yellow),
                stale: fg(Color::Magenta),
                failed: fg(Color::Red),
                malformed: fg(Color::Red),
                orphan: fg(Color::DarkGray),
                unreadable: fg(Color::Red),
            },
            confidence_high: fg(Color::Green),
            confidence_mid: fg(Color::Yellow),
            confidence_low: fg(Color::Red),
            border_focused: fg(Color::Cyan),
            border: fg(Color::DarkGray),
            heading: Style::new().add_modifier(Modifier::BOLD),
            selection: Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
            pointer: fg(Color::Cyan),
            accent: fg(Color::Cyan),
            dim: fg(Color::Gray),
            faint: fg(Color::DarkGray),
            error: fg(Color::Red),
            status_line: Style::new().bg(Color::Black),
            status_heading: Style::new().add_modifier(Modifier::BOLD),
            dialog_border: fg(Color::Cyan),
            confirm_border: fg(Color::Yellow),
            confirm_yes: fg(Color::Green),
            confirm_no: fg(Color::Red),
        }
    }

    /// The style of a status (None: unreadable metadata).
    pub fn status(&self, s: Option<Status>) -> Style {
        let t = &self.status;
        match s {
            Some(Status::Untagged) => t.untagged,
            Some(Status::Tagged) => t.tagged,
            Some(Status::NeedsReview) => t.needs_review,
            Some(Status::Stale) => t.stale,
            Some(Status::Failed) => t.failed,
            Some(Status::Malformed) => t.malformed,
            Some(Status::Orphan) => t.orphan,
            None => t.unreadable,
        }
    }

    /// High when sure enough not to need review, mid when kept but weak,
    /// low when the current MinConfidence would drop it.
    pub fn confidence(&self, c: f32, min_confidence: f32, review_below: f32) -> Style {
        if c >= review_below {
            self.confidence_high
        } else if c >= min_confidence {
            self.confidence_mid
        } else {
            self.confidence_low
        }
    }
}
