//! The detail pane: the selected image's thumbnail, a header (status,
//! metadata key, who tagged it, a hint, the problem) and one confidence bar
//! per label.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_image::Image;

use crate::contract::{KeyKind, MetadataDoc, Status};
use crate::headline::{Headline, headline_of};
use crate::sanitize::for_terminal;

use super::super::app::{App, DocState, Mode, Pane, ThumbState, labels_with_boxes};
use super::super::boxes::{label_boxes, label_order};
use super::super::rows::{Row, RowRef};
use super::super::theme::Theme;
use super::{Areas, fit_left, fit_right, pane_block};

pub(super) fn draw(f: &mut Frame, app: &App, a: &Areas) {
    let row = app.selected_row();
    let title = match row {
        Some(r) => format!(
            " {} ",
            fit_left(
                &for_terminal(r.key),
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
    if matches!(app.mode, Mode::Normal | Mode::Input(_)) && a.thumb.height > 0 && app.thumbnails {
        draw_thumbnail(f, app, &row, a.thumb);
    }
    // Without thumbnails (`--image-protocol none`) the text takes the pane.
    let text_area = if app.thumbnails {
        a.detail_text
    } else {
        a.detail_text.union(a.thumb)
    };
    let state = app.doc_state(&row);
    let doc = match state {
        DocState::Ready(d) => Some(d),
        _ => None,
    };
    let mut lines = header_lines(app, &row, doc);
    match state {
        DocState::Ready(doc) => label_lines(app, &row, doc, text_area.width as usize, &mut lines),
        DocState::Loading => lines.push(Line::from(Span::styled("loading…", app.theme.dim))),
        DocState::Failed(e) => lines.push(Line::from(Span::styled(
            format!("document: {}", for_terminal(e)),
            app.theme.error,
        ))),
        DocState::None => {}
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        text_area,
    );
}

fn draw_thumbnail(f: &mut Frame, app: &App, row: &RowRef, area: Rect) {
    let dim = app.theme.dim;
    match app.thumb.as_ref().filter(|t| *t.key == *row.key) {
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
fn header_lines(app: &App, row: &Row, doc: Option<&MetadataDoc>) -> Vec<Line<'static>> {
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
    if let Some(t) = doc.and_then(|d| d.imgtag.as_ref()) {
        let tagged = for_terminal(&t.provenance()).into_owned();
        lines.push(field(theme, "tagged   ", tagged));
        if let Some(r) = &t.review {
            let mut parts = Vec::new();
            if !r.added.is_empty() {
                parts.push(format!("+{}", for_terminal(&r.added.join(" +"))));
            }
            if !r.removed.is_empty() {
                parts.push(format!("-{}", for_terminal(&r.removed.join(" -"))));
            }
            if !r.flagged.is_empty() {
                parts.push(format!("!{}", for_terminal(&r.flagged.join(" !"))));
            }
            if !parts.is_empty() {
                lines.push(field(theme, "review   ", parts.join(" ")));
            }
        }
    }
    let headline = doc.and_then(headline_of);
    if let (Some(d), Some(h)) = (doc, &headline) {
        lines.push(headline_field(theme, d, h));
    }
    if let Some(h) = hint(app, row, doc, headline.as_ref()) {
        for part in h.lines() {
            lines.push(Line::from(Span::styled(part.to_string(), theme.dim)));
        }
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

/// `headline ▶ Feline 65.3  (Animal › Mammal › Pet › Feline)`.
fn headline_field(theme: &Theme, doc: &MetadataDoc, h: &Headline) -> Line<'static> {
    let label = h.label(&doc.labels);
    let mut spans = vec![
        Span::styled("headline ", theme.dim),
        Span::styled(
            format!("▶ {} {:.1}", for_terminal(&label.name), label.confidence),
            theme.headline,
        ),
    ];
    if h.chain.len() > 1 {
        let names: Vec<_> = h
            .chain
            .iter()
            .map(|&i| doc.labels[i].name.as_str())
            .collect();
        spans.push(Span::styled(
            format!("  ({})", for_terminal(&names.join(" › "))),
            theme.dim,
        ));
    }
    Line::from(spans)
}

fn field(theme: &Theme, name: &'static str, value: String) -> Line<'static> {
    Line::from(vec![Span::styled(name, theme.dim), Span::raw(value)])
}

/// What to do about a row in this status; for one that needs review, why:
/// which specific label is weak, or which labels were flagged.
fn hint(
    app: &App,
    row: &Row,
    doc: Option<&MetadataDoc>,
    headline: Option<&Headline>,
) -> Option<String> {
    match row.status {
        Some(Status::Untagged) => Some("not tagged yet: t tags it".to_string()),
        Some(Status::Stale) => Some("the image changed after it was tagged: t re-tags it".into()),
        Some(Status::NeedsReview) => Some(review_hint(app, doc, headline)),
        Some(Status::Malformed) => Some("the metadata is not valid: t re-tags the image".into()),
        Some(Status::Orphan) => Some("no image under uploads/ for this metadata".into()),
        _ => None,
    }
}

fn review_hint(app: &App, doc: Option<&MetadataDoc>, headline: Option<&Headline>) -> String {
    let Some(doc) = doc else {
        return "needs review".into();
    };
    let mut why = Vec::new();
    match headline {
        Some(h) if h.is_weak(&doc.labels, app.review_below) => {
            let l = h.label(&doc.labels);
            why.push(format!(
                "{} {:.1} is the headline and below the review threshold {}",
                for_terminal(&l.name),
                l.confidence,
                app.review_below
            ));
        }
        Some(_) => {}
        None => why.push("no labels".into()),
    }
    if let Some(r) = doc.review().filter(|r| !r.flagged.is_empty()) {
        why.push(format!(
            "flagged as doubtful: {}",
            for_terminal(&r.flagged.join(", "))
        ));
    }
    format!(
        "{}\nt re-runs (+/- moves MinConfidence), e fixes by hand (+Add -Remove !Flag)",
        why.join("; ")
    )
}

/// One bar per label, highest confidence first, with the MinConfidence
/// mark on it; `▶` marks the headline and `!` a flagged label; a label
/// with instance boxes shows their count (`Person ×3`); parents,
/// hand-added, flagged and whether its boxes are on the thumbnail on a
/// line under it.
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
    let review = doc.review();
    let added = review.map(|r| r.added.as_slice()).unwrap_or_default();
    let flagged = review.map(|r| r.flagged.as_slice()).unwrap_or_default();
    let headline = headline_of(doc).map(|h| h.index);
    let boxed = app.thumbnails.then(|| app.boxed_label(doc)).flatten();
    let several = labels_with_boxes(doc).len() > 1;
    let mark_w = 2;
    let name_w = 18.min(width.saturating_sub(mark_w) / 3);
    let num_w = 6;
    let bar_w = width.saturating_sub(mark_w + name_w + num_w + 2);
    for i in label_order(&doc.labels) {
        let l = &doc.labels[i];
        let style = theme.confidence(l.confidence, app.min_confidence, app.review_below);
        let is_headline = headline == Some(i);
        let is_flagged = flagged.iter().any(|f| f.eq_ignore_ascii_case(&l.name));
        let mark = match (is_headline, is_flagged) {
            (true, true) => "▶!",
            (true, false) => "▶ ",
            (false, true) => "! ",
            (false, false) => "  ",
        };
        let mark_style = if is_flagged {
            theme.flagged
        } else {
            theme.headline
        };
        let count = label_boxes(l).len();
        let shown_name = if count > 0 {
            format!("{} ×{count}", for_terminal(&l.name))
        } else {
            for_terminal(&l.name).into_owned()
        };
        let name = Span::raw(fit_right(&shown_name, name_w));
        lines.push(Line::from(vec![
            Span::styled(mark, mark_style),
            if is_headline {
                name.style(theme.headline)
            } else {
                name
            },
            Span::raw(" "),
            Span::styled(bar(l.confidence, app.min_confidence, bar_w), style),
            Span::styled(format!(" {:>5.1}", l.confidence), style),
        ]));
        let mut extra = Vec::new();
        if is_headline {
            extra.push(Span::styled("headline", theme.headline));
        }
        if is_flagged {
            extra.push(Span::styled("flagged as doubtful", theme.flagged));
        }
        if boxed == Some(i) {
            let keys = if several {
                "[ ] other labels' boxes"
            } else {
                "] hides them"
            };
            extra.push(Span::styled(
                format!("□ boxes on the thumbnail ({keys})"),
                theme.accent,
            ));
        }
        if !l.parents.is_empty() {
            let parents: Vec<_> = l.parents.iter().map(|p| p.name.as_str()).collect();
            extra.push(Span::styled(
                format!("↳ {}", for_terminal(&parents.join(", "))),
                theme.faint,
            ));
        }
        if added.iter().any(|a| a.eq_ignore_ascii_case(&l.name)) {
            extra.push(Span::styled("added by hand", theme.faint));
        }
        if !extra.is_empty() {
            let mut spans = vec![Span::raw("    ")];
            for (n, e) in extra.into_iter().enumerate() {
                if n > 0 {
                    spans.push(Span::styled(" · ", theme.faint));
                }
                spans.push(e);
            }
            lines.push(Line::from(spans));
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
