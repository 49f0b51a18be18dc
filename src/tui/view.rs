//! Drawing: a pure function of the [`App`] state. Only the visible rows are
//! built, so a 100,000-image bucket draws as fast as a small one. Every
//! untrusted text (keys, labels, errors) goes through
//! [`crate::sanitize::for_terminal`] before it reaches a cell.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout as Split, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui_image::Image;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::contract::Status;
use crate::sanitize::for_terminal;

use super::app::{App, InputKind, Level, Listing, Mode, Pane, ThumbState};
use super::keys::Action;
use super::rows::Row;

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
    let thumb_h = (detail_inner.height * 2 / 5).min(detail_inner.width / 2);
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

pub fn status_color(s: Option<Status>) -> Color {
    match s {
        Some(Status::Tagged) => Color::Green,
        Some(Status::NeedsReview) => Color::Yellow,
        Some(Status::Untagged) => Color::Gray,
        Some(Status::Stale) => Color::Magenta,
        Some(Status::Failed) | Some(Status::Malformed) | None => Color::Red,
        Some(Status::Orphan) => Color::DarkGray,
    }
}

/// `s` cut to `width` columns, keeping its end (a key's file name matters
/// more than its folders).
pub fn fit_left(s: &str, width: usize) -> String {
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
pub fn fit_right(s: &str, width: usize) -> String {
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
    draw_list(f, app, &a);
    draw_detail(f, app, &a);
    draw_status(f, app, a.status);
    draw_message(f, app, a.message);
    match &app.mode {
        Mode::Help => draw_help(f, app),
        Mode::Confirm { text, .. } => draw_confirm(f, text),
        _ => {}
    }
}

fn pane_block(title: Line<'static>, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        })
        .title(title)
}

fn draw_list(f: &mut Frame, app: &App, a: &Areas) {
    let mut title = vec![Span::raw(format!(
        " {} ⇄ {} ",
        for_terminal(app.layout.uploads_prefix()),
        for_terminal(app.layout.metadata_prefix())
    ))];
    title.push(Span::styled(
        format!(
            "{}/{} · sort: {} · {}",
            app.rows.view().len(),
            app.rows.len(),
            app.rows.sort().label(),
            app.rows.status_filter().map_or("all", Status::as_str)
        ),
        Style::new().fg(Color::Gray),
    ));
    if !app.rows.text_filter().is_empty() {
        title.push(Span::styled(
            format!(" · /{}", for_terminal(app.rows.text_filter())),
            Style::new().fg(Color::Cyan),
        ));
    }
    if !app.marks.is_empty() {
        title.push(Span::styled(
            format!(" · {} marked", app.marks.len()),
            Style::new().fg(Color::Cyan),
        ));
    }
    title.push(Span::raw(" "));
    f.render_widget(
        pane_block(Line::from(title), app.focus == Pane::List),
        a.list,
    );

    let w = a.list_body.width as usize;
    // pointer(1) glyph(1) space image space best sep(3) metadata
    let best_w = 16usize.min(w / 4);
    let rest = w.saturating_sub(best_w + 7);
    let img_w = rest * 11 / 20;
    let meta_w = rest.saturating_sub(img_w);
    let header = format!(
        "  {} {} │ {}",
        fit_right(
            &format!("{}", for_terminal(app.layout.uploads_prefix())),
            img_w + 1
        ),
        fit_right("best label", best_w),
        fit_right(&for_terminal(app.layout.metadata_prefix()), meta_w)
    );
    f.render_widget(
        Paragraph::new(header).style(Style::new().add_modifier(Modifier::BOLD)),
        a.list_header,
    );

    if app.rows.view().is_empty() {
        let text = match app.listing {
            Listing::Running => "listing…",
            _ if app.rows.is_empty() => "no images under this prefix",
            _ => "nothing matches the filter (Esc clears it)",
        };
        f.render_widget(
            Paragraph::new(text).style(Style::new().fg(Color::Gray)),
            a.list_body,
        );
        return;
    }

    let height = a.list_body.height as usize;
    let end = (app.offset + height).min(app.rows.view().len());
    let mut lines = Vec::with_capacity(end - app.offset);
    for pos in app.offset..end {
        let idx = app.rows.view()[pos];
        let row = &app.rows[idx as usize];
        lines.push(list_line(
            app,
            row,
            app.marks.contains(&idx),
            pos == app.cursor,
            img_w,
            best_w,
            meta_w,
        ));
    }
    f.render_widget(Paragraph::new(lines), a.list_body);
}

fn list_line(
    app: &App,
    row: &Row,
    marked: bool,
    selected: bool,
    img_w: usize,
    best_w: usize,
    meta_w: usize,
) -> Line<'static> {
    let color = status_color(row.status);
    let glyph = if row.busy {
        "⟳"
    } else {
        crate::cli::glyph(row.status)
    };
    let image = match &row.image {
        Some(img) => {
            let rest = app.layout.image_rest(&img.key).unwrap_or(&img.key);
            fit_left(&for_terminal(rest), img_w)
        }
        None => fit_right("—", img_w),
    };
    let best = match (row.best(), row.status) {
        (Some((name, c)), _) => {
            let c = format!(" {c:>5.1}");
            format!(
                "{}{c}",
                fit_right(&for_terminal(name), best_w.saturating_sub(c.len()))
            )
        }
        (None, Some(Status::Failed)) => fit_right("failed", best_w),
        (None, Some(Status::Malformed)) => fit_right("malformed", best_w),
        (None, None) => fit_right("unreadable", best_w),
        (None, _) => fit_right("", best_w),
    };
    let meta = match &row.metadata_key {
        Some(k) => {
            let rest = k.strip_prefix(app.layout.metadata_prefix()).unwrap_or(k);
            fit_left(&for_terminal(rest), meta_w)
        }
        None => fit_right("—", meta_w),
    };
    let base = if selected {
        Style::new()
            .bg(Color::DarkGray)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let conf_style = match row.best() {
        Some((_, c)) => base.fg(confidence_color(app, c)),
        None => base.fg(Color::Gray),
    };
    Line::from(vec![
        // The pointer and the mark are glyphs too, not only colours, so the
        // list reads on a monochrome terminal (and in a screen capture).
        Span::styled(
            match (selected, marked) {
                (true, true) => "◉",
                (true, false) => "▶",
                (false, true) => "●",
                (false, false) => " ",
            }
            .to_string(),
            base.fg(Color::Cyan),
        ),
        Span::styled(glyph.to_string(), base.fg(color)),
        Span::styled(format!(" {image} "), base),
        Span::styled(best, conf_style),
        Span::styled(" │ ".to_string(), base.fg(Color::DarkGray)),
        Span::styled(
            meta,
            if row.metadata_key.is_some() {
                base
            } else {
                base.fg(Color::DarkGray)
            },
        ),
    ])
}

/// Green when sure enough not to need review, yellow when kept but weak,
/// red when the current MinConfidence would drop it.
fn confidence_color(app: &App, c: f32) -> Color {
    if c >= app.review_below {
        Color::Green
    } else if c >= app.min_confidence {
        Color::Yellow
    } else {
        Color::Red
    }
}

fn draw_detail(f: &mut Frame, app: &App, a: &Areas) {
    let row = app.selected_row();
    let title = match row {
        Some(r) => format!(
            " {} ",
            fit_left(
                &for_terminal(&r.key),
                a.detail.width.saturating_sub(4) as usize
            )
            .trim_end()
        ),
        None => " detail ".to_string(),
    };
    f.render_widget(
        pane_block(Line::from(title), app.focus == Pane::Detail),
        a.detail,
    );
    let Some(row) = row else { return };

    // The thumbnail; hidden under a dialog (graphics protocols draw over
    // whatever covers them).
    if matches!(app.mode, Mode::Normal | Mode::Input(_)) && a.thumb.height > 0 {
        match app.thumb.as_ref().filter(|t| t.key == row.key) {
            Some(t) => match &t.state {
                ThumbState::Ready(p) => f.render_widget(Image::new(p), a.thumb),
                ThumbState::Loading => f.render_widget(
                    Paragraph::new("loading thumbnail…").style(Style::new().fg(Color::Gray)),
                    a.thumb,
                ),
                ThumbState::Failed(e) => f.render_widget(
                    Paragraph::new(format!("no preview: {}", for_terminal(e)))
                        .style(Style::new().fg(Color::Gray))
                        .wrap(Wrap { trim: true }),
                    a.thumb,
                ),
            },
            None if row.is_orphan() => f.render_widget(
                Paragraph::new("orphan metadata: the image is gone")
                    .style(Style::new().fg(Color::Gray)),
                a.thumb,
            ),
            None => {}
        }
    }

    let width = a.detail_text.width as usize;
    let mut lines: Vec<Line> = Vec::new();
    let status = row.status.map_or("unreadable", Status::as_str);
    let mut first = vec![Span::styled(
        format!("{} {status}", crate::cli::glyph(row.status)),
        Style::new()
            .fg(status_color(row.status))
            .add_modifier(Modifier::BOLD),
    )];
    if let Some(img) = &row.image {
        first.push(Span::raw(format!("  {}", human_size(img.size))));
    }
    if row.busy {
        first.push(Span::styled("  ⟳ tagging", Style::new().fg(Color::Cyan)));
    }
    lines.push(Line::from(first));
    let meta = match (&row.metadata_key, row.key_kind) {
        (Some(k), Some(kind)) if !matches!(kind, crate::contract::KeyKind::Canonical) => {
            format!("{} ({kind:?} key)", for_terminal(k))
        }
        (Some(k), _) => for_terminal(k).into_owned(),
        (None, _) => "— (no metadata)".into(),
    };
    lines.push(Line::from(vec![
        Span::styled("metadata ", Style::new().fg(Color::Gray)),
        Span::raw(meta),
    ]));
    if let Some(t) = row.doc.as_ref().and_then(|d| d.imgtag.as_ref()) {
        lines.push(Line::from(vec![
            Span::styled("tagged   ", Style::new().fg(Color::Gray)),
            Span::raw(format!(
                "{} by {} with {} at {}",
                for_terminal(&t.tagged_at),
                for_terminal(&t.tagged_by),
                for_terminal(&t.detector),
                t.min_confidence
            )),
        ]));
        if let Some(r) = &t.review {
            let mut parts = Vec::new();
            if !r.added.is_empty() {
                parts.push(format!("+{}", for_terminal(&r.added.join(" +"))));
            }
            if !r.removed.is_empty() {
                parts.push(format!("-{}", for_terminal(&r.removed.join(" -"))));
            }
            if !parts.is_empty() {
                lines.push(Line::from(vec![
                    Span::styled("review   ", Style::new().fg(Color::Gray)),
                    Span::raw(parts.join(" ")),
                ]));
            }
        }
    }
    let hint = match row.status {
        Some(Status::Untagged) => Some("not tagged yet: t tags it".to_string()),
        Some(Status::Stale) => Some("the image changed after it was tagged: t re-tags it".into()),
        Some(Status::NeedsReview) => Some(format!(
            "best label under {}: t re-runs (+/- moves MinConfidence), e fixes by hand",
            app.review_below
        )),
        Some(Status::Malformed) => Some("the metadata is not valid: t re-tags the image".into()),
        Some(Status::Orphan) => Some("no image under uploads/ for this metadata".into()),
        _ => None,
    };
    if let Some(h) = hint {
        lines.push(Line::from(Span::styled(h, Style::new().fg(Color::Gray))));
    }
    if let Some(p) = &row.problem {
        lines.push(Line::from(Span::styled(
            for_terminal(p).into_owned(),
            Style::new().fg(Color::Red),
        )));
    }
    lines.push(Line::from(""));

    if let Some(doc) = &row.doc {
        if doc.labels.is_empty() && row.problem.is_none() {
            lines.push(Line::from(Span::styled(
                "no labels",
                Style::new().fg(Color::Gray),
            )));
        }
        let added = doc.review().map(|r| r.added.clone()).unwrap_or_default();
        let name_w = 18.min(width / 3);
        let num_w = 6;
        let bar_w = width.saturating_sub(name_w + num_w + 2);
        let mut labels: Vec<_> = doc.labels.iter().collect();
        labels.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        for l in labels {
            let color = confidence_color(app, l.confidence);
            let filled = ((l.confidence.clamp(0.0, 100.0) / 100.0) * bar_w as f32).round() as usize;
            let mark = ((app.min_confidence / 100.0) * bar_w as f32).round() as usize;
            let bar: String = (0..bar_w)
                .map(|i| {
                    if i < filled {
                        '█'
                    } else if i == mark {
                        '┆'
                    } else {
                        '░'
                    }
                })
                .collect();
            let by_hand = added.iter().any(|a| a.eq_ignore_ascii_case(&l.name));
            lines.push(Line::from(vec![
                Span::raw(fit_right(&for_terminal(&l.name), name_w)),
                Span::raw(" "),
                Span::styled(bar, Style::new().fg(color)),
                Span::styled(format!(" {:>5.1}", l.confidence), Style::new().fg(color)),
            ]));
            let mut extra = Vec::new();
            if !l.parents.is_empty() {
                let parents: Vec<_> = l.parents.iter().map(|p| p.name.as_str()).collect();
                extra.push(format!("↳ {}", for_terminal(&parents.join(", "))));
            }
            if by_hand {
                extra.push("added by hand".into());
            }
            if !extra.is_empty() {
                lines.push(Line::from(Span::styled(
                    format!("  {}", extra.join(" · ")),
                    Style::new().fg(Color::DarkGray),
                )));
            }
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        a.detail_text,
    );
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn draw_status(f: &mut Frame, app: &App, area: Rect) {
    let sep = || Span::styled(" │ ", Style::new().fg(Color::DarkGray));
    let mut spans = vec![
        Span::styled(
            format!(" {}", for_terminal(&app.header.bucket)),
            Style::new().add_modifier(Modifier::BOLD),
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
            format!("{}{n} ", crate::cli::glyph(Some(s))),
            Style::new().fg(status_color(Some(s))),
        ));
    }
    if app.rows.unreadable() > 0 {
        spans.push(Span::styled(
            format!("E{} ", app.rows.unreadable()),
            Style::new().fg(Color::Red),
        ));
    }
    match app.listing {
        Listing::Running => {
            spans.push(sep());
            spans.push(Span::styled(
                format!("listing… {}", app.rows.len()),
                Style::new().fg(Color::Cyan),
            ));
        }
        Listing::Failed => {
            spans.push(sep());
            spans.push(Span::styled("listing failed", Style::new().fg(Color::Red)));
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
            Style::new().fg(Color::Cyan),
        ));
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::Black)),
        area,
    );
}

fn draw_message(f: &mut Frame, app: &App, area: Rect) {
    let line = match &app.mode {
        Mode::Input(input) => {
            let prompt = match &input.kind {
                InputKind::Filter => "filter (key or label): ".to_string(),
                InputKind::Threshold => "MinConfidence (0-100): ".to_string(),
                InputKind::Edit { .. } => "labels (+Add -Remove, _ for spaces): ".to_string(),
            };
            Line::from(vec![
                Span::styled(prompt, Style::new().fg(Color::Cyan)),
                Span::raw(for_terminal(&input.buf).into_owned()),
                Span::styled("▏", Style::new().fg(Color::Cyan)),
                Span::styled("  Enter ok · Esc cancel", Style::new().fg(Color::DarkGray)),
            ])
        }
        _ => match &app.message {
            // Messages are built from sanitised parts already; sanitising
            // again costs nothing when there is nothing to escape.
            Some((Level::Error, m)) => Line::from(Span::styled(
                format!(" ✗ {}", for_terminal(m)),
                Style::new().fg(Color::Red),
            )),
            Some((Level::Info, m)) => Line::from(Span::raw(format!(" {}", for_terminal(m)))),
            None => {
                let k = |a| app.keymap.label_for(a);
                Line::from(Span::styled(
                    format!(
                        " {} tag · {} tag untagged · {}/{} threshold · {} mark · {} filter · {} status · {} sort · {} edit · {} help · {} quit",
                        k(Action::Tag),
                        k(Action::TagUntagged),
                        k(Action::RaiseThreshold),
                        k(Action::LowerThreshold),
                        k(Action::Mark),
                        k(Action::Filter),
                        k(Action::StatusFilter),
                        k(Action::Sort),
                        k(Action::Edit),
                        k(Action::Help),
                        k(Action::Quit)
                    ),
                    Style::new().fg(Color::DarkGray),
                ))
            }
        },
    };
    f.render_widget(Paragraph::new(line), area);
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

fn draw_help(f: &mut Frame, app: &App) {
    let mut lines = Vec::new();
    for a in super::keys::Action::ALL {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:>16}  ", app.keymap.label_for(a)),
                Style::new().fg(Color::Cyan),
            ),
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
            Span::styled(format!("{k:>16}  "), Style::new().fg(Color::Cyan)),
            Span::raw(d),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Glyphs: ✓ tagged  ? needs review  · untagged  ~ stale  ✗ failed  ! malformed  ∅ orphan  ⟳ busy",
        Style::new().fg(Color::Gray),
    )));
    lines.push(Line::from(Span::styled(
        "Keys are remappable in the config file's [keys] table. Any key closes this help.",
        Style::new().fg(Color::Gray),
    )));
    let area = centered(f.area(), 100, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" imgtag-tui keys ")
                .border_style(Style::new().fg(Color::Cyan)),
        ),
        area,
    );
}

fn draw_confirm(f: &mut Frame, text: &str) {
    let area = centered(f.area(), 72, 7);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(for_terminal(text).into_owned()),
            Line::from(""),
            Line::from(vec![
                Span::styled("[y]", Style::new().fg(Color::Green)),
                Span::raw(" yes   "),
                Span::styled("[n]", Style::new().fg(Color::Red)),
                Span::raw(" no"),
            ]),
        ])
        .wrap(Wrap { trim: true })
        .block(
            Block::bordered()
                .title(" confirm ")
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        area,
    );
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
