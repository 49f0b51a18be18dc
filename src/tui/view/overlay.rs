//! Dialogs drawn over the panes: the key help and the confirmation.

use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::sanitize::for_terminal;

use super::super::app::App;
use super::super::keys::Action;
use super::super::theme::Theme;
use super::centered;

pub(super) fn draw_help(f: &mut Frame, app: &App) {
    let theme = &app.theme;
    let mut lines = Vec::new();
    for a in Action::ALL {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>16}  ", app.keymap.label_for(a)), theme.accent),
            Span::raw(a.describe()),
        ]));
    }
    lines.push(Line::from(""));
    for (k, d) in [
        ("Esc", "clear marks, then filters; cancel a prompt"),
        ("Ctrl-c", "quit"),
        ("mouse", "wheel scrolls, click selects"),
    ] {
        lines.push(Line::from(vec![
            Span::styled(format!("{k:>16}  "), theme.accent),
            Span::raw(d),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Glyphs: ✓ tagged  ? needs review  · untagged  ~ stale  ✗ failed  ! malformed  ∅ orphan  ⟳ busy",
        theme.dim,
    )));
    lines.push(Line::from(Span::styled(
        "Keys are remappable in the config file's [keys] table. Any key closes this help.",
        theme.dim,
    )));
    let area = centered(f.area(), 100, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" imgtag-tui keys ")
                .border_style(theme.dialog_border),
        ),
        area,
    );
}

pub(super) fn draw_confirm(f: &mut Frame, theme: &Theme, text: &str) {
    let area = centered(f.area(), 72, 7);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(for_terminal(text).into_owned()),
            Line::from(""),
            Line::from(vec![
                Span::styled("[y]", theme.confirm_yes),
                Span::raw(" yes   "),
                Span::styled("[n]", theme.confirm_no),
                Span::raw(" no"),
            ]),
        ])
        .wrap(Wrap { trim: true })
        .block(
            Block::bordered()
                .title(" confirm ")
                .border_style(theme.confirm_border),
        ),
        area,
    );
}
