//! Every colour and text style the TUI draws with, in one place, so a
//! theme is one value: [`Theme::dark`] (the default) and [`Theme::light`].
//! The view asks for styles by meaning (`theme.dim`,
//! `theme.confidence(..)`), never for colours.
//!
//! Both themes avoid the ANSI colours that some common palettes draw in (or
//! next to) the background: bright black is Solarized-dark's background,
//! and white, grey, yellow and the light colours vanish on a white xterm.
//! Where the 16 named colours are too pale on white, the light theme uses
//! fixed 256-palette colours, which no terminal theme remaps.

use ratatui::style::{Color, Modifier, Style};

use crate::status::Status;

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

/// The terminal background a theme is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Dark,
    Light,
}

/// The TUI's styles, named by what they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// The background this theme is made for.
    pub background: Background,
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
    /// The headline label's marker and name in the detail pane.
    pub headline: Style,
    /// A label the operator flagged as doubtful.
    pub flagged: Style,
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
            background: Background::Dark,
            status: StatusStyles {
                untagged: fg(Color::Gray),
                tagged: fg(Color::Green),
                needs_review: fg(Color::Yellow),
                stale: fg(Color::Magenta),
                failed: fg(Color::Red),
                malformed: fg(Color::Red),
                orphan: fg(Color::Gray).add_modifier(Modifier::DIM),
                unreadable: fg(Color::Red),
            },
            confidence_high: fg(Color::Green),
            confidence_mid: fg(Color::Yellow),
            confidence_low: fg(Color::Red),
            border_focused: fg(Color::Cyan),
            border: fg(Color::Gray).add_modifier(Modifier::DIM),
            heading: Style::new().add_modifier(Modifier::BOLD),
            // One colour pair for the whole selected row: a status colour
            // on a grey bar reads poorly.
            selection: Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
            pointer: fg(Color::Cyan),
            accent: fg(Color::Cyan),
            dim: fg(Color::Gray),
            // DIM of a readable colour, never bright black, which is the
            // background itself in Solarized dark.
            faint: fg(Color::Gray).add_modifier(Modifier::DIM),
            error: fg(Color::LightRed),
            status_line: Style::new().fg(Color::White).bg(Color::Black),
            status_heading: Style::new().add_modifier(Modifier::BOLD),
            dialog_border: fg(Color::Cyan),
            confirm_border: fg(Color::Yellow),
            confirm_yes: fg(Color::Green),
            confirm_no: fg(Color::LightRed),
            headline: fg(Color::Cyan).add_modifier(Modifier::BOLD),
            flagged: fg(Color::LightMagenta).add_modifier(Modifier::BOLD),
        }
    }

    /// For a light terminal background (black on white, xterm's default).
    pub fn light() -> Theme {
        let fg = |c: Color| Style::new().fg(c);
        // Fixed 256-palette colours, dark enough for white.
        let green = Color::Indexed(28); // #008700
        let amber = Color::Indexed(130); // #af5f00
        let red = Color::Indexed(124); // #af0000
        let blue = Color::Indexed(25); // #005faf
        let purple = Color::Indexed(90); // #870087
        let grey = Color::Indexed(240); // #585858
        let pale = Color::Indexed(244); // #808080
        Theme {
            background: Background::Light,
            status: StatusStyles {
                untagged: fg(grey),
                tagged: fg(green),
                needs_review: fg(amber),
                stale: fg(purple),
                failed: fg(red),
                malformed: fg(red),
                orphan: fg(pale),
                unreadable: fg(red),
            },
            confidence_high: fg(green),
            confidence_mid: fg(amber),
            confidence_low: fg(red),
            border_focused: fg(blue),
            border: fg(pale),
            heading: Style::new().add_modifier(Modifier::BOLD),
            selection: Style::new()
                .fg(Color::Indexed(231)) // #ffffff
                .bg(blue)
                .add_modifier(Modifier::BOLD),
            pointer: fg(blue),
            accent: fg(blue),
            dim: fg(grey),
            faint: fg(pale),
            error: fg(red),
            // Black on light grey: a bar that is not the terminal's
            // background, whatever its foreground.
            status_line: Style::new()
                .fg(Color::Indexed(16)) // #000000
                .bg(Color::Indexed(253)), // #dadada
            status_heading: Style::new().add_modifier(Modifier::BOLD),
            dialog_border: fg(blue),
            confirm_border: fg(amber),
            confirm_yes: fg(green),
            confirm_no: fg(red),
            headline: fg(blue).add_modifier(Modifier::BOLD),
            flagged: fg(purple).add_modifier(Modifier::BOLD),
        }
    }

    /// The theme for a background.
    pub(crate) fn for_background(b: Background) -> Theme {
        match b {
            Background::Dark => Theme::dark(),
            Background::Light => Theme::light(),
        }
    }

    /// Foreground colours that some common palette draws in or next to
    /// this theme's background: text on the terminal's own background must
    /// not use them.
    pub fn vanishing(&self) -> &'static [Color] {
        match self.background {
            Background::Dark => &[
                Color::Black,
                Color::DarkGray,
                Color::Indexed(0),
                Color::Indexed(8),
            ],
            Background::Light => &[
                Color::White,
                Color::Gray,
                Color::DarkGray,
                Color::Yellow,
                Color::LightYellow,
                Color::LightGreen,
                Color::LightCyan,
                Color::Cyan,
                Color::Green,
                Color::Indexed(7),
                Color::Indexed(15),
                Color::Indexed(231),
            ],
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
