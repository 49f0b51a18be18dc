//! The recognised words of the documents that have them
//! (`ImgTag.Text`, [`DocSummary::text`]), in a table of their own: a photo
//! adds no row and no byte to its summary, and a word search
//! (`ls --text`, the TUI's `/`) reads the lines of the pages and screens
//! only. Lines are kept as the document's reader cleaned and bounded them
//! ([`crate::contract::MAX_TEXT_CHARS`] a document).

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::catalog::Assessed;
use crate::summary::DocSummary;

/// `doc_text.doc` is `docs.id`; `lines` the document's lines, each ended
/// by a newline (a line never holds one: the reader makes whitespace runs
/// one space).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS doc_text(doc INTEGER PRIMARY KEY, lines TEXT NOT NULL);
";

/// Records the lines of document `id` (none: no row). Replaces: a
/// document id freed by a refresh may be given again.
pub(super) fn store(c: &Connection, id: i64, s: &DocSummary) -> rusqlite::Result<()> {
    if s.text.is_empty() {
        c.prepare_cached("DELETE FROM doc_text WHERE doc = ?1")?
            .execute([id])?;
        return Ok(());
    }
    let mut lines = String::new();
    for l in &s.text {
        lines.push_str(l);
        lines.push('\n');
    }
    c.prepare_cached("INSERT OR REPLACE INTO doc_text(doc, lines) VALUES (?1, ?2)")?
        .execute(params![id, lines])?;
    Ok(())
}

/// Drops the lines of documents no longer stored.
pub(super) fn drop_orphans(c: &Connection) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM doc_text WHERE doc NOT IN (SELECT id FROM docs)",
        [],
    )?;
    Ok(())
}

/// The lines of every paired document that has some, by metadata key;
/// with `needle`, only those with a line that contains it (any case).
pub(super) fn by_metadata_key(
    c: &Connection,
    needle: Option<&str>,
) -> rusqlite::Result<HashMap<String, String>> {
    // CROSS JOIN fixes the order: the few documents with words first, each
    // pair found by `pairs_doc`. A plain JOIN let SQLite scan every pair
    // (190 ms at 1M objects, on every query, with no words at all).
    let mut stmt = c.prepare_cached(
        "SELECT p.meta, t.lines FROM doc_text t CROSS JOIN pairs p ON p.mdoc = t.doc",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let needle = needle.map(|n| n.trim().to_lowercase());
    let mut out = HashMap::new();
    for row in rows {
        let (meta, lines) = row?;
        let keep = needle
            .as_ref()
            .is_none_or(|n| lines.lines().any(|l| l.to_lowercase().contains(n)));
        if keep {
            out.insert(meta, lines);
        }
    }
    Ok(out)
}

/// Gives a row read from the index its document's lines, from `lines`
/// ([`by_metadata_key`]).
pub(super) fn attach(a: &mut Assessed, lines: &HashMap<String, String>) {
    if lines.is_empty() {
        return;
    }
    let Some(meta) = a.metadata.as_ref() else {
        return;
    };
    if let (Some(text), Some(Ok(doc))) = (lines.get(&meta.key), a.doc.as_mut()) {
        doc.text = text.lines().map(String::from).collect();
    }
}
