//! The status line (bucket, detector, thresholds, counts, progress) and
//! the message line under it (a prompt, a message or the key hints).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::sanitize::for_terminal;
use crate::status::Status;

use super::super::app::{App, InputKind, Level, Listing, Mode};
use super::super::keys::Action;

pub(super) fn draw_status(f: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    // The status line has its own background: faint text would be too
    // pale on it.
    let sep = || Span::styled(" │ ", theme.dim);
    let mut spans = vec![
        Span::styled(
            format!(" {}", for_terminal(&app.header.bucket)),
            theme.heading,
        ),
        sep(),
        Span::raw(for_terminal(&app.header.detector).into_owned()),
        sep(),
        Span::raw(format!("MinConfidence {}", app.min_confidence)),
        sep(),
        Span::raw(format!("review <{}", app.review_below)),
        sep(),
    ];
    for s in Status::ALL {
        let n = app.count(s);
        spans.push(Span::styled(
            format!("{}{n} ", s.glyph()),
            theme.status(Some(s)),
        ));
    }
    if app.rows.unreadable() > 0 {
        spans.push(Span::styled(
            format!("E{} ", app.rows.unreadable()),
            theme.error,
        ));
    }
    match app.listing {
        Listing::Running => {
            spans.push(sep());
            spans.push(Span::styled(
                format!("listing… {}", app.rows.len()),
                theme.accent,
            ));
        }
        Listing::Failed => {
            spans.push(sep());
            spans.push(Span::styled("listing failed", theme.error));
        }
        Listing::Done => {}
    }
    if app.work.active() {
        spans.push(sep());
        spans.push(Span::styled(
            format!(
                "tagging {}/{} ({} running{})",
                app.work.done,
                app.work.total,
                app.work.running,
                if app.work.failed > 0 {
                    format!(", {} problems", app.work.failed)
                } else {
                    String::new()
                }
            ),
            theme.accent,
        ));
    }
    if app.queue.reviewed > 0 || app.queue.can_undo() {
        spans.push(sep());
        spans.push(Span::styled(queue_progress(app), theme.accent));
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).style(theme.status_line),
        area,
    );
}

pub(super) fn draw_message(f: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let line = match &app.mode {
        Mode::Input(input) => {
            let prompt = match &input.kind {
                InputKind::Filter => "filter (key or label): ".to_string(),
                InputKind::Threshold => "MinConfidence (0-100): ".to_string(),
                InputKind::Edit { targets, marked } => {
                    let whom = if *marked {
                        format!(" on {} marked", targets.len())
                    } else {
                        String::new()
                    };
                    format!("labels{whom} (+Add -Remove !Flag, _ for spaces): ")
                }
            };
            Line::from(vec![
                Span::styled(prompt, theme.accent),
                Span::raw(for_terminal(&input.buf).into_owned()),
                Span::styled("▏", theme.accent),
                Span::styled("  Enter ok · Esc cancel", theme.faint),
            ])
        }
        _ => match &app.message {
            // Messages are built from sanitised parts already; sanitising
            // again costs nothing when there is nothing to escape.
            Some((Level::Error, m)) => {
                Line::from(Span::styled(format!(" ✗ {}", for_terminal(m)), theme.error))
            }
            Some((Level::Info, m)) => Line::from(Span::raw(format!(" {}", for_terminal(m)))),
            None if app
                .selected_row()
                .is_some_and(|r| r.status == Some(Status::NeedsReview)) =>
            {
                // The review queue's keys, where they are wanted.
                let k = |a| app.keymap.label_for(a);
                Line::from(Span::styled(
                    format!(
                        " {} accept · {} pick a suggestion · {} edit · {} undo · {} sort · {} status · {} help · {} quit",
                        k(Action::Accept),
                        k(Action::Pick),
                        k(Action::Edit),
                        k(Action::Undo),
                        k(Action::Sort),
                        k(Action::StatusFilter),
                        k(Action::Help),
                        k(Action::Quit)
                    ),
                    theme.faint,
                ))
            }
            None => {
                let k = |a| app.keymap.label_for(a);
                Line::from(Span::styled(
                    format!(
                        " {} tag · {} untagged · {}/{} MinConf · {} mark · {} filter · {} status · {} sort · {} edit · {} spot check · {} help · {} quit",
                        k(Action::Tag),
                        k(Action::TagUntagged),
                        k(Action::RaiseThreshold),
                        k(Action::LowerThreshold),
                        k(Action::Mark),
                        k(Action::Filter),
                        k(Action::StatusFilter),
                        k(Action::Sort),
                        k(Action::Edit),
                        k(Action::SpotCheck),
                        k(Action::Help),
                        k(Action::Quit)
                    ),
                    theme.faint,
                ))
            }
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The review session: reviewed, left to review, and the pace.
pub fn queue_progress(app: &App) -> String {
    let left = app.count(Status::NeedsReview);
    let pace = app
        .queue
        .per_minute()
        .map(|r| format!(" · {r:.1}/min"))
        .unwrap_or_default();
    format!("reviewed {} · {left} left{pace}", app.queue.reviewed)
}
