//! The detail pane: the selected image's thumbnail, a header (status,
//! metadata key, who tagged it, a hint, the problem) and one confidence bar
//! per label.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_image::Image;

use crate::contract::{KeyKind, MetadataDoc, Status};
use crate::sanitize::for_terminal;

use super::super::app::{App, Mode, Pane, ThumbState};
use super::super::rows::Row;
use super::super::theme::Theme;
use super::{Areas, fit_left, fit_right, pane_block};

pub(super) fn draw(f: &mut Frame, app: &App, a: &Areas) {
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
        pane_block(&app.theme, Line::from(title), app.focus == Pane::Detail),
        a.detail,
    );
    let Some(row) = row else { return };

    // Hidden under a dialog: graphics protocols draw over whatever covers
    // them.
    if matches!(app.mode, Mode::Normal | Mode::Input(_)) && a.thumb.height > 0 {
        draw_thumbnail(f, app, row, a.thumb);
    }
    let mut lines = header_lines(app, row);
    if let Some(doc) = &row.doc {
        label_lines(app, row, doc, a.detail_text.width as usize, &mut lines);
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        a.detail_text,
    );
}

fn draw_thumbnail(f: &mut Frame, app: &App, row: &Row, area: Rect) {
    let dim = app.theme.dim;
    match app.thumb.as_ref().filter(|t| t.key == row.key) {
        Some(t) => match &t.state {
            ThumbState::Ready(p) => f.render_widget(Image::new(p), area),
            ThumbState::Loading => {
                f.render_widget(Paragraph::new("loading thumbnail…").style(dim), area)
            }
            ThumbState::Failed(e) => f.render_widget(
                Paragraph::new(format!("no preview: {}", for_terminal(e)))
                    .style(dim)
                    .wrap(Wrap { trim: true }),
                area,
            ),
        },
        None if row.is_orphan() => f.render_widget(
            Paragraph::new("orphan metadata: the image is gone").style(dim),
            area,
        ),
        None => {}
    }
}

/// Status, metadata key, tagging record, hint and problem, then a blank
/// line.
fn header_lines(app: &App, row: &Row) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let mut lines = vec![status_line(theme, row)];
    let meta = match (&row.metadata_key, row.key_kind) {
        (Some(k), Some(kind)) if !matches!(kind, KeyKind::Canonical) => {
            format!("{} ({kind:?} key)", for_terminal(k))
        }
        (Some(k), _) => for_terminal(k).into_owned(),
        (None, _) => "— (no metadata)".into(),
    };
    lines.push(field(theme, "metadata ", meta));
    if let Some(t) = row.doc.as_ref().and_then(|d| d.imgtag.as_ref()) {
        let tagged = format!(
            "{} by {} with {} at {}",
            for_terminal(&t.tagged_at),
            for_terminal(&t.tagged_by),
            for_terminal(&t.detector),
            t.min_confidence
        );
        lines.push(field(theme, "tagged   ", tagged));
        if let Some(r) = &t.review {
            let mut parts = Vec::new();
            if !r.added.is_empty() {
                parts.push(format!("+{}", for_terminal(&r.added.join(" +"))));
            }
            if !r.removed.is_empty() {
                parts.push(format!("-{}", for_terminal(&r.removed.join(" -"))));
            }
            if !parts.is_empty() {
                lines.push(field(theme, "review   ", parts.join(" ")));
            }
        }
    }
    if let Some(h) = hint(app, row.status) {
        lines.push(Line::from(Span::styled(h, theme.dim)));
    }
    if let Some(p) = &row.problem {
        lines.push(Line::from(Span::styled(
            for_terminal(p).into_owned(),
            theme.error,
        )));
    }
    lines.push(Line::from(""));
    lines
}

/// Glyph and status, the image's size, and whether a job is on it.
fn status_line(theme: &Theme, row: &Row) -> Line<'static> {
    let status = row.status.map_or("unreadable", Status::as_str);
    let mut first = vec![Span::styled(
        format!(
            "{} {status}",
            row.status.map_or("E", crate::contract::Status::glyph)
        ),
        theme.status(row.status).patch(theme.status_heading),
    )];
    if let Some(img) = &row.image {
        first.push(Span::raw(format!("  {}", human_size(img.size))));
    }
    if row.busy {
        first.push(Span::styled("  ⟳ tagging", theme.accent));
    }
    Line::from(first)
}

fn field(theme: &Theme, name: &'static str, value: String) -> Line<'static> {
    Line::from(vec![Span::styled(name, theme.dim), Span::raw(value)])
}

/// What to do about a row in this status.
fn hint(app: &App, status: Option<Status>) -> Option<String> {
    match status {
        Some(Status::Untagged) => Some("not tagged yet: t tags it".to_string()),
        Some(Status::Stale) => Some("the image changed after it was tagged: t re-tags it".into()),
        Some(Status::NeedsReview) => Some(format!(
            "best label under {}: t re-runs (+/- moves MinConfidence), e fixes by hand",
            app.review_below
        )),
        Some(Status::Malformed) => Some("the metadata is not valid: t re-tags the image".into()),
        Some(Status::Orphan) => Some("no image under uploads/ for this metadata".into()),
        _ => None,
    }
}

/// One bar per label, highest confidence first, with the MinConfidence
/// mark on it; parents and hand-added labels on a line under it.
fn label_lines(
    app: &App,
    row: &Row,
    doc: &MetadataDoc,
    width: usize,
    lines: &mut Vec<Line<'static>>,
) {
    let theme = &app.theme;
    if doc.labels.is_empty() && row.problem.is_none() {
        lines.push(Line::from(Span::styled("no labels", theme.dim)));
    }
    let added = doc.review().map(|r| r.added.clone()).unwrap_or_default();
    let name_w = 18.min(width / 3);
    let num_w = 6;
    let bar_w = width.saturating_sub(name_w + num_w + 2);
    let mut labels: Vec<_> = doc.labels.iter().collect();
    labels.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    for l in labels {
        let style = theme.confidence(l.confidence, app.min_confidence, app.review_below);
        lines.push(Line::from(vec![
            Span::raw(fit_right(&for_terminal(&l.name), name_w)),
            Span::raw(" "),
            Span::styled(bar(l.confidence, app.min_confidence, bar_w), style),
            Span::styled(format!(" {:>5.1}", l.confidence), style),
        ]));
        let mut extra = Vec::new();
        if !l.parents.is_empty() {
            let parents: Vec<_> = l.parents.iter().map(|p| p.name.as_str()).collect();
            extra.push(format!("↳ {}", for_terminal(&parents.join(", "))));
        }
        if added.iter().any(|a| a.eq_ignore_ascii_case(&l.name)) {
            extra.push("added by hand".into());
        }
        if !extra.is_empty() {
            lines.push(Line::from(Span::styled(
                format!("  {}", extra.join(" · ")),
                theme.faint,
            )));
        }
    }
}

/// `width` cells filled to `confidence`, with `┆` at MinConfidence.
fn bar(confidence: f32, min_confidence: f32, width: usize) -> String {
    let filled = ((confidence.clamp(0.0, 100.0) / 100.0) * width as f32).round() as usize;
    let mark = ((min_confidence / 100.0) * width as f32).round() as usize;
    (0..width)
        .map(|i| {
            if i < filled {
                '█'
            } else if i == mark {
                '┆'
            } else {
                '░'
            }
        })
        .collect()
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
