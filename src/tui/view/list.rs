//! The list pane: a title with counts and filters, column headings, and
//! one line per visible row.

use ratatui::Frame;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::sanitize::for_terminal;
use crate::status::Status;

use super::super::app::{App, Listing, Pane};
use super::super::rows::{Row, RowRef};
use super::{fit_left, fit_right, pane_block};
use crate::tui::screen::Areas;

/// Column widths of the list body.
struct Columns {
    image: usize,
    best: usize,
    meta: usize,
}

impl Columns {
    fn for_width(w: usize) -> Columns {
        // pointer(1) glyph(1) space image space best sep(3) metadata
        let best = 16usize.min(w / 4);
        let rest = w.saturating_sub(best + 7);
        let image = rest * 11 / 20;
        Columns {
            image,
            best,
            meta: rest.saturating_sub(image),
        }
    }
}

pub(super) fn draw(f: &mut Frame, app: &App, a: &Areas) {
    f.render_widget(
        pane_block(&app.theme, title(app), app.focus == Pane::List),
        a.list,
    );
    let cols = Columns::for_width(a.list_body.width as usize);
    let header = format!(
        "  {} {} │ {}",
        fit_right(
            &format!("{}", for_terminal(app.layout.uploads_prefix())),
            cols.image + 1
        ),
        fit_right("headline", cols.best),
        fit_right(&for_terminal(app.layout.metadata_prefix()), cols.meta)
    );
    f.render_widget(
        Paragraph::new(header).style(app.theme.heading),
        a.list_header,
    );

    let view = app.rows.view();
    if view.is_empty() {
        let text = match app.listing {
            Listing::Running => "listing…",
            _ if app.rows.is_empty() => "no images under this prefix",
            _ => "nothing matches the filter (Esc clears it)",
        };
        f.render_widget(Paragraph::new(text).style(app.theme.dim), a.list_body);
        return;
    }

    let height = a.list_body.height as usize;
    let end = (app.offset + height).min(view.len());
    let lines: Vec<Line> = (app.offset..end)
        .map(|pos| {
            let idx = view[pos];
            let marked = app.marks.contains(&idx);
            list_line(app, &app.rows.get(idx), marked, pos == app.cursor, &cols)
        })
        .collect();
    f.render_widget(Paragraph::new(lines), a.list_body);
}

/// Prefixes, counts, sort, filters and marks.
fn title(app: &App) -> Line<'static> {
    let theme = &app.theme;
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
        theme.dim,
    ));
    if !app.rows.text_filter().is_empty() {
        title.push(Span::styled(
            format!(" · /{}", for_terminal(app.rows.text_filter())),
            theme.accent,
        ));
    }
    if !app.marks.is_empty() {
        title.push(Span::styled(
            format!(" · {} marked", app.marks.len()),
            theme.accent,
        ));
    }
    title.push(Span::raw(" "));
    Line::from(title)
}

/// The headline cell: name and confidence, or why there is none.
fn headline_cell(app: &App, row: &Row, width: usize) -> String {
    match (app.rows.headline(row), row.status) {
        (Some((name, c)), _) => {
            let c = format!(" {:>5.1}", crate::status::shown(c));
            format!(
                "{}{c}",
                fit_right(&for_terminal(name), width.saturating_sub(c.len()))
            )
        }
        (None, Some(Status::Failed)) => fit_right("failed", width),
        (None, Some(Status::Malformed)) => fit_right("malformed", width),
        (None, None) => fit_right("unreadable", width),
        (None, _) => fit_right("", width),
    }
}

fn list_line(
    app: &App,
    row: &RowRef,
    marked: bool,
    selected: bool,
    cols: &Columns,
) -> Line<'static> {
    let theme = &app.theme;
    let glyph = if row.busy {
        "⟳"
    } else {
        row.status.map_or("E", crate::status::Status::glyph)
    };
    let image = if row.is_orphan() {
        fit_right("—", cols.image)
    } else {
        let rest = app.layout.image_rest(row.key).unwrap_or(row.key);
        fit_left(&for_terminal(rest), cols.image)
    };
    let meta = match &row.metadata_key {
        Some(k) => {
            let rest = k.strip_prefix(app.layout.metadata_prefix()).unwrap_or(k);
            fit_left(&for_terminal(rest), cols.meta)
        }
        None => fit_right("—", cols.meta),
    };
    // The selected row is one colour pair end to end: status and
    // confidence colours on the selection bar read poorly in some themes,
    // and the glyphs and numbers still say the same.
    let base = if selected {
        theme.selection
    } else {
        Style::new()
    };
    let paint = |s: Style| if selected { base } else { s };
    let conf_style = match app.rows.headline(row) {
        Some((_, c)) => theme.confidence(c, app.min_confidence, app.review_below),
        None => theme.dim,
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
            paint(theme.pointer),
        ),
        Span::styled(glyph.to_string(), paint(theme.status(row.status))),
        Span::styled(format!(" {image} "), base),
        Span::styled(headline_cell(app, row, cols.best), paint(conf_style)),
        Span::styled(" │ ".to_string(), paint(theme.faint)),
        Span::styled(
            meta,
            if row.metadata_key.is_some() {
                base
            } else {
                paint(theme.faint)
            },
        ),
    ])
}
