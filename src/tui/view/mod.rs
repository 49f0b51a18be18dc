//! Drawing: a pure function of the [`App`] state. Only the visible rows are
//! built, so a 100,000-image bucket draws as fast as a small one. Every
//! untrusted text (keys, labels, errors) goes through
//! [`crate::sanitize::for_terminal`] before it reaches a cell. Every style
//! comes from the app's [`super::theme::Theme`].
//!
//! - `list`: the list pane; `detail`: the selected image;
//! - `status`: the status and message lines; `overlay`: help and
//!   confirmation dialogs.

mod detail;
mod list;
mod overlay;
pub mod status;

use super::screen::areas;
pub use detail::NAMES_SHOWN;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::app::{App, Mode};
use super::theme::Theme;

/// `s` cut to `width` columns, keeping its end (a key's file name matters
/// more than its folders).
pub(crate) fn fit_left(s: &str, width: usize) -> String {
    if s.width() <= width {
        return format!("{s:<width$}", width = width - s.width() + s.chars().count());
    }
    if width == 0 {
        return String::new();
    }
    let mut out: Vec<char> = Vec::new();
    let mut used = 1; // the ellipsis
    for c in s.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.reverse();
    let mut r = String::from("…");
    r.extend(out);
    r.push_str(&" ".repeat(width - used));
    r
}

/// `s` cut to `width` columns, keeping its start.
pub(crate) fn fit_right(s: &str, width: usize) -> String {
    if s.width() <= width {
        return format!("{s:<width$}", width = width - s.width() + s.chars().count());
    }
    if width == 0 {
        return String::new();
    }
    let mut r = String::new();
    let mut used = 1;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        r.push(c);
    }
    r.push('…');
    r.push_str(&" ".repeat(width - used));
    r
}

pub fn draw(f: &mut Frame, app: &App) {
    let a = areas(f.area());
    list::draw(f, app, &a);
    detail::draw(f, app, &a);
    status::draw_status(f, app, a.status);
    status::draw_message(f, app, a.message);
    match &app.mode {
        Mode::Help => overlay::draw_help(f, app),
        Mode::Confirm { text, .. } => overlay::draw_confirm(f, &app.theme, text),
        _ => {}
    }
}

fn pane_block(theme: &Theme, title: Line<'static>, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme.border_focused
        } else {
            theme.border
        })
        .title(title)
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_width() {
        assert_eq!(fit_left("abc", 5), "abc  ");
        assert_eq!(fit_left("2024/long/cat.jpg", 8), "…cat.jpg");
        assert_eq!(fit_right("Feline", 4), "Fel…");
        assert_eq!(fit_left("猫猫猫.jpg", 6).width(), 6);
        assert_eq!(fit_right("猫猫猫", 4).width(), 4);
    }
}
