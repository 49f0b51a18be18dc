//! The detail pane: the selected image's thumbnail, a header (status,
//! metadata key, who tagged it, a hint, the problem) and one confidence bar
//! per label.
//!
//! A document can hold 60,000 labels and 400,000 review names (under the
//! 8 MiB limit), and every key redraws: the label lines are built once per
//! document, width and settings ([`DetailLines`], from the facts computed
//! when the document arrived), the header shows at most [`NAMES_SHOWN`]
//! names a list, and a frame wraps and draws only the visible lines.

use crate::tui::screen::{DetailLines, LinesKey};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_image::Image;

use crate::contract::{KeyKind, MetadataDoc};
use crate::headline::Headline;
use crate::sanitize::for_terminal;
use crate::status::{Status, shown};

use super::super::app::{App, DocState, Loaded, Mode, Pane, ThumbState};
use super::super::facts::LabelFlags;
use super::super::rows::{Row, RowRef};
use super::super::theme::Theme;
use super::{fit_left, fit_right, pane_block};
use crate::tui::screen::Areas;

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
        DocState::Ready(d) if d.doc.labels.is_empty() && row.problem.is_none() => {
            lines.push(Line::from(Span::styled("no labels", app.theme.dim)));
        }
        DocState::Ready(_) | DocState::None => {}
        DocState::Loading => lines.push(Line::from(Span::styled("loading…", app.theme.dim))),
        DocState::Failed(e) => lines.push(Line::from(Span::styled(
            format!("document: {}", for_terminal(e)),
            app.theme.error,
        ))),
    }
    if text_area.is_empty() {
        return;
    }
    let (lines, scroll) = match doc {
        Some(d) => {
            let mut cache = app.detail_cache.borrow_mut();
            let cached = DetailLines::for_doc(&mut cache, app, d, text_area.width);
            visible(lines, cached, app.detail_scroll, text_area)
        }
        None => (lines, app.detail_scroll),
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        text_area,
    );
}

/// Rows a line takes when wrapped at `width`, as the pane wraps it.
fn rows_of(line: &Line<'_>, width: u16) -> usize {
    // One line at a time wraps as it does among others: the wrapper
    // starts every line on a new row.
    Paragraph::new(line.clone())
        .wrap(Wrap { trim: false })
        .line_count(width)
}

/// The lines from the first one on screen at `scroll` rows down (the
/// header's, then the cached label lines'), enough to fill `area`, and
/// the rows of the first one to skip.
fn visible(
    header: Vec<Line<'static>>,
    labels: &DetailLines,
    scroll: u16,
    area: Rect,
) -> (Vec<Line<'static>>, u16) {
    let mut skip = usize::from(scroll);
    let mut out = Vec::new();
    for line in header {
        let rows = rows_of(&line, area.width);
        if skip >= rows && out.is_empty() {
            skip -= rows;
        } else {
            out.push(line);
        }
    }
    let from = if out.is_empty() {
        // Below the header: the last label line starting at or above `skip`.
        let i = labels
            .starts
            .partition_point(|&s| s <= skip)
            .saturating_sub(1);
        skip -= labels.starts[i];
        i
    } else {
        0
    };
    // Every line takes a row at least: this many fill the area.
    let take = usize::from(area.height) + 1;
    out.extend(labels.lines.iter().skip(from).take(take).cloned());
    (out, u16::try_from(skip).unwrap_or(u16::MAX))
}

impl DetailLines {
    /// The cached lines for `doc` at `width`, rebuilt only when the
    /// document or a setting they show changed.
    fn for_doc<'c>(
        cache: &'c mut Option<DetailLines>,
        app: &App,
        doc: &Loaded,
        width: u16,
    ) -> &'c DetailLines {
        let key = LinesKey {
            doc: doc.id,
            width,
            boxed: app.thumbnails.then(|| app.boxed_label(doc)).flatten(),
            min_confidence: app.min_confidence,
            review_below: app.review_below,
            theme: app.theme,
        };
        if cache.as_ref().is_none_or(|c| c.key != key) {
            let builds = cache.as_ref().map_or(0, |c| c.builds) + 1;
            let lines = label_lines(app, doc, key.boxed, usize::from(width));
            let mut starts = Vec::with_capacity(lines.len() + 1);
            let mut at = 0;
            for l in &lines {
                starts.push(at);
                at += rows_of(l, width);
            }
            starts.push(at);
            *cache = Some(DetailLines {
                key,
                lines,
                starts,
                builds,
            });
        }
        cache.as_ref().expect("filled above")
    }

    /// How many times lines were built.
    pub fn builds(&self) -> u64 {
        self.builds
    }
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
fn header_lines(app: &App, row: &Row, loaded: Option<&Loaded>) -> Vec<Line<'static>> {
    let doc = loaded.map(|l| &l.doc);
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
            for (names, sign) in [(&r.added, "+"), (&r.removed, "-"), (&r.flagged, "!")] {
                if !names.is_empty() {
                    parts.push(name_list(names, sign, " "));
                }
            }
            if !parts.is_empty() {
                lines.push(field(theme, "review   ", parts.join(" ")));
            }
        }
    }
    let headline = loaded.and_then(|l| l.facts.headline.as_ref());
    if let (Some(d), Some(h)) = (doc, headline) {
        lines.push(headline_field(theme, d, h));
    }
    if let Some(h) = hint(app, row, doc, headline) {
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
            row.status.map_or("E", crate::status::Status::glyph)
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
            format!(
                "▶ {} {:.1}",
                for_terminal(&label.name),
                shown(label.confidence)
            ),
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
    let threshold = headline.map(|h| {
        let l = h.label(&doc.labels);
        let parents: Vec<String> = l.parents.iter().map(|p| p.name.clone()).collect();
        app.review_rule.threshold_for(&l.name, &parents)
    });
    match (headline, threshold) {
        (Some(h), Some(t)) if h.is_weak(&doc.labels, t) => {
            let l = h.label(&doc.labels);
            why.push(format!(
                "{} {:.1} is the headline and below the review threshold {t}",
                for_terminal(&l.name),
                shown(l.confidence),
            ));
        }
        (Some(_), _) => {}
        (None, _) => why.push("no labels".into()),
    }
    if let Some(r) = doc.review().filter(|r| !r.flagged.is_empty()) {
        why.push(format!(
            "flagged as doubtful: {}",
            name_list(&r.flagged, "", ", ")
        ));
    }
    let picks = app.ranked_suggestions();
    let picks = if picks.is_empty() {
        String::new()
    } else {
        let numbered: Vec<String> = picks
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} {}", i + 1, suggestion_text(s)))
            .collect();
        format!("\nreplace with: {}", numbered.join("  "))
    };
    format!(
        "{}{picks}\na accepts it as it is, 1-9 picks a replacement, e fixes by hand \
         (+Add -Remove !Flag), u undoes; t re-runs",
        why.join("; ")
    )
}

/// A suggestion as the pane lists it: what the detector saw carries its
/// confidence (`Tabby 41%`), a recent pick a `↺`; the taxonomy's stand
/// bare.
fn suggestion_text(s: &crate::suggest::Suggestion) -> String {
    let name = for_terminal(&s.name);
    match s.source {
        crate::suggest::Source::Detector(c) => format!("{name} {c:.0}%"),
        crate::suggest::Source::Recent => format!("{name} ↺"),
        crate::suggest::Source::Taxonomy => name.into_owned(),
    }
}

/// Review lists longer than this show their first names and a count:
/// a line of 400,000 names helps nobody and would be wrapped on every
/// frame.
pub const NAMES_SHOWN: usize = 20;

/// `+a +b … (+3 more)`: at most [`NAMES_SHOWN`] names, each after `sign`,
/// made safe for the terminal.
fn name_list(names: &[String], sign: &str, sep: &str) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("{sign}{}", for_terminal(n)))
        .collect();
    let mut out = shown.join(sep);
    if names.len() > NAMES_SHOWN {
        out.push_str(&format!("{sep}… ({} more)", names.len() - NAMES_SHOWN));
    }
    out
}

/// One bar per label, highest confidence first, with the MinConfidence
/// mark on it; `▶` marks the headline and `!` a flagged label; a label
/// with instance boxes shows their count (`Person ×3`); parents,
/// hand-added, flagged and whether its boxes are on the thumbnail on a
/// line under it. `boxed`: the label whose boxes the thumbnail shows.
fn label_lines(
    app: &App,
    loaded: &Loaded,
    boxed: Option<usize>,
    width: usize,
) -> Vec<Line<'static>> {
    let (doc, facts) = (&loaded.doc, &loaded.facts);
    let headline = facts.headline.as_ref().map(|h| h.index);
    let several = facts.with_boxes.len() > 1;
    let mark_w = 2;
    let name_w = 18.min(width.saturating_sub(mark_w) / 3);
    let num_w = 6;
    let bar_w = width.saturating_sub(mark_w + name_w + num_w + 2);
    let mut lines = Vec::with_capacity(doc.labels.len() * 2);
    for &i in &facts.order {
        let l = &doc.labels[i];
        let theme = &app.theme;
        let style = theme.confidence(l.confidence, app.min_confidence, app.review_below);
        let is_headline = headline == Some(i);
        let flags = facts.flags[i];
        let mark = match (is_headline, flags.flagged) {
            (true, true) => "▶!",
            (true, false) => "▶ ",
            (false, true) => "! ",
            (false, false) => "  ",
        };
        let mark_style = if flags.flagged {
            theme.flagged
        } else {
            theme.headline
        };
        let count = facts.box_counts[i];
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
            Span::styled(format!(" {:>5.1}", shown(l.confidence)), style),
        ]));
        let extra = extra_spans(
            theme,
            l,
            is_headline,
            flags,
            (boxed == Some(i)).then_some(several),
        );
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
    lines.extend(text_lines(&app.theme, doc));
    lines
}

/// The words read on a page or screen (`ImgTag.Text`), under the labels:
/// a heading, then a line each, as cleaned on reading.
fn text_lines(theme: &Theme, doc: &MetadataDoc) -> Vec<Line<'static>> {
    let text = doc.imgtag.as_ref().map(|t| t.text()).unwrap_or_default();
    if text.lines.is_empty() {
        return Vec::new();
    }
    let mut out = vec![
        Line::from(""),
        Line::from(Span::styled("text read", theme.dim)),
    ];
    for l in text.lines {
        let shown = for_terminal(&l.text).into_owned();
        out.push(Line::from(vec![Span::raw("  "), Span::raw(shown)]));
    }
    out
}

/// What the line under a label's bar says: headline, flagged, its boxes
/// on the thumbnail (`boxed`: whether other labels have boxes too),
/// parents, added by hand.
fn extra_spans(
    theme: &Theme,
    l: &crate::contract::Label,
    is_headline: bool,
    flags: LabelFlags,
    boxed: Option<bool>,
) -> Vec<Span<'static>> {
    let mut extra = Vec::new();
    if is_headline {
        extra.push(Span::styled("headline", theme.headline));
    }
    if flags.flagged {
        extra.push(Span::styled("flagged as doubtful", theme.flagged));
    }
    if let Some(several) = boxed {
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
    match flags.confirmed {
        Some(Some(d)) => extra.push(Span::styled(
            format!("confirmed (detector {d})"),
            theme.faint,
        )),
        Some(None) => extra.push(Span::styled("confirmed", theme.faint)),
        None if flags.added => extra.push(Span::styled("added by hand", theme.faint)),
        None => {}
    }
    extra
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

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::buffer::Buffer;
    use ratatui::widgets::Widget;

    fn rendered(lines: Vec<Line<'static>>, scroll: u16, area: Rect) -> Buffer {
        let mut buf = Buffer::empty(area);
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0))
            .render(area, &mut buf);
        buf
    }

    /// Drawing only the lines on screen shows, at every scroll, what
    /// wrapping and scrolling all of them shows: with header and label
    /// lines that wrap (long words, spaces at the cut, wide characters)
    /// and empty ones.
    #[test]
    fn the_visible_window_draws_what_the_whole_text_draws() {
        let area = Rect::new(0, 0, 13, 6);
        let text = |s: &str| Line::from(s.to_string());
        let header = vec![
            text("status"),
            text("review   +Cat +Dog +averyveryverylongname +Fish"),
            text(""),
            text("t re-runs (+/- moves MinConfidence)"),
        ];
        let labels: Vec<Line<'static>> = (0..12)
            .map(|i| match i % 4 {
                0 => text(&format!("▶ Label{i} ██████")),
                1 => Line::from(vec![
                    Span::raw("    "),
                    Span::raw("headline · ↳ 猫猫猫猫猫猫猫 · added"),
                ]),
                2 => text(""),
                _ => text(&format!("  L{i}")),
            })
            .collect();
        let mut starts = vec![0];
        for l in &labels {
            starts.push(starts.last().unwrap() + rows_of(l, area.width));
        }
        let cached = DetailLines {
            key: LinesKey {
                doc: 1,
                width: area.width,
                boxed: None,
                min_confidence: 55.0,
                review_below: 70.0,
                theme: Theme::dark(),
            },
            lines: labels.clone(),
            starts,
            builds: 1,
        };
        let all: Vec<Line<'static>> = header.iter().cloned().chain(labels).collect();
        let total: usize = all.iter().map(|l| rows_of(l, area.width)).sum();
        assert!(total > all.len() + 5, "lines wrap: {total} rows");
        for scroll in 0..total as u16 + 3 {
            let (lines, skip) = visible(header.clone(), &cached, scroll, area);
            assert!(lines.len() <= header.len() + usize::from(area.height) + 1);
            assert_eq!(
                rendered(lines, skip, area),
                rendered(all.clone(), scroll, area),
                "scroll {scroll}"
            );
        }
    }
}
