//! Audits answered from the index: every image with its status in key
//! order, then the orphans; a label search goes through the name index,
//! so it reads only the images that have the label.

use std::collections::HashMap;
use std::sync::Arc;

use futures::Stream;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::refresh::prefix_end;
use super::{
    Index, IndexError, Labels, StoredTag, etag_of_identity, kind_of, object_from_row, summary_from,
};
use crate::catalog::{Assessed, Filter};
use crate::contract::Layout;
use crate::status::ReviewRule;
use crate::status::Status;
use crate::status::status_of;
use crate::storage::ObjectInfo;

/// Rows sent per message from the query thread.
const CHUNK: usize = 512;

/// What an audit from the index needs besides the index.
#[derive(Debug, Clone)]
pub struct Query {
    pub layout: Layout,
    /// When an image needs review.
    pub review: ReviewRule,
    pub filter: Filter,
    /// Documents the last refresh could not read: key and why.
    pub unreadable: Arc<HashMap<String, String>>,
}

/// Every image, with its pair and document if it has them.
const ALL: &str = "SELECT o.key, o.size, o.etag, o.modified, p.meta, p.kind, m.size, m.etag, \
    m.modified, d.summary, d.malformed FROM objects o LEFT JOIN pairs p ON p.image = o.key \
    LEFT JOIN objects m ON m.key = p.meta LEFT JOIN docs d ON d.etag = m.etag \
    WHERE o.key >= ?1 AND (?2 IS NULL OR o.key < ?2) ORDER BY o.key";

/// The images whose document has a label (or parent) named ?3: a range of
/// the name index (one label's hits sit together, by rank), then per hit
/// the summary, the pair's entry in `pairs_doc` (image and kind, no row of
/// `pairs`) and the two objects, each by key: four lookups. A canonical
/// pair's document key is made from the image key (?5 the metadata
/// prefix, ?6 where the image key's rest starts, in characters); another
/// pair's is looked up after ([`LEGACY_META`]): naming `p.meta` here would
/// have SQLite read every hit's row of `pairs`.
macro_rules! by_label {
    ($below:literal) => {
        concat!(
            "SELECT p.image, o.size, o.etag, o.modified, m.key, p.kind, m.size, m.etag, \
             m.modified, d.summary, d.malformed FROM names n JOIN doc_names dn ON dn.name = n.id \
             JOIN docs d ON d.id = dn.doc JOIN pairs p INDEXED BY pairs_doc ON p.mdoc = d.id \
             JOIN objects o ON o.key = p.image LEFT JOIN objects m ON m.key = CASE p.kind \
             WHEN 0 THEN ?5 || substr(p.image, ?6) || '.json' END \
             WHERE n.name = ?3 ",
            $below,
            " AND p.image >= ?1 AND (?2 IS NULL OR p.image < ?2) ORDER BY p.image"
        )
    };
}

/// The document of a pair whose key is not the canonical one: the columns
/// 4, 6, 7 and 8 of a row of [`ALL`].
const LEGACY_META: &str = "SELECT p.meta, m.size, m.etag, m.modified FROM pairs p \
    LEFT JOIN objects m ON m.key = p.meta WHERE p.image = ?1";

const LABEL: &str = by_label!("AND ?4 IS NULL");
const LABEL_BELOW: &str = by_label!("AND dn.rank < ?4");

/// Streams the audit the index holds: images in key order, then orphan
/// metadata, each filtered by `q.filter` (a label filter is answered from
/// the name index). Runs on a blocking thread with its own read-only
/// connection.
pub fn rows(index: &Index, q: Query) -> impl Stream<Item = Result<Assessed, IndexError>> + use<> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Assessed>, IndexError>>(4);
    let conn = index.reader();
    let err = {
        let path = index.path().display().to_string();
        move |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        }
    };
    tokio::task::spawn_blocking(move || {
        let result = conn.and_then(|c| send_rows(&c, &q, &tx).map_err(err));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
    .flat_map(|chunk| {
        let items: Vec<Result<Assessed, IndexError>> = match chunk {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    })
}

use futures::StreamExt;

type Sender = tokio::sync::mpsc::Sender<Result<Vec<Assessed>, IndexError>>;

fn send_rows(c: &Connection, q: &Query, tx: &Sender) -> rusqlite::Result<()> {
    let up = q.layout.uploads_prefix();
    let mut chunk = Vec::with_capacity(CHUNK);
    let emit = |a: Assessed, chunk: &mut Vec<Assessed>| -> bool {
        if q.filter.matches(&a) {
            chunk.push(a);
        }
        chunk.len() < CHUNK || tx.blocking_send(Ok(std::mem::take(chunk))).is_ok()
    };
    let label = q.filter.label.as_ref().map(|l| l.to_lowercase());
    // NaN (which SQLite binds as NULL) keeps every row for the filter in
    // Rust to judge.
    let below = q
        .filter
        .label
        .as_ref()
        .and(q.filter.below.filter(|b| !b.is_nan()));
    let sql = match (&label, below) {
        (Some(_), Some(_)) => LABEL_BELOW,
        (Some(_), None) => LABEL,
        (None, _) => ALL,
    };
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = match &label {
        Some(label) => {
            let (mp, rest) = (q.layout.metadata_prefix(), up.chars().count() + 1);
            stmt.query(params![up, prefix_end(up), label, below, mp, rest as i64])?
        }
        None => stmt.query(params![up, prefix_end(up)])?,
    };
    let mut labels = Labels::default();
    // The recognised words, kept apart from the summaries (`text`).
    let lines = super::text::by_metadata_key(c, q.filter.text.as_deref())?;
    let mut legacy = c.prepare_cached(LEGACY_META)?;
    let mut legacy = |image: &str| legacy.query_row([image], meta_from_row).optional();
    while let Some(r) = rows.next()? {
        if let Some(mut a) = image_row(r, q, |id| labels.name(c, id), &mut legacy)? {
            super::text::attach(&mut a, &lines);
            if !emit(a, &mut chunk) {
                return Ok(());
            }
        }
    }
    if q.filter.label.is_none() {
        for a in orphans(c, &q.layout)? {
            if !emit(a, &mut chunk) {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
    Ok(())
}

/// An audit row from a row of [`ALL`] or [`by_label`]'s query; `legacy`
/// looks up a pair's document the row leaves out (column 4 empty, column
/// 5 a kind).
fn image_row(
    r: &Row,
    q: &Query,
    label: impl FnMut(u32) -> Option<String>,
    legacy: impl FnOnce(&str) -> rusqlite::Result<Option<ObjectInfo>>,
) -> rusqlite::Result<Option<Assessed>> {
    let key: String = r.get(0)?;
    if q.layout.image_rest(&key).is_none() {
        return Ok(None);
    }
    let image = ObjectInfo {
        key,
        size: r.get::<_, i64>(1)? as u64,
        etag: etag_of_identity(r.get(2)?),
        last_modified: r.get(3)?,
    };
    let paired = r.get::<_, Option<i64>>(5)?.is_some();
    let metadata = match r.get::<_, Option<String>>(4)? {
        Some(key) => Some(meta_from(r, key, [6, 7, 8])?),
        None if paired => legacy(&image.key)?,
        None => None,
    };
    let Some(metadata) = metadata else {
        return Ok(Some(Assessed::undocumented(image, Status::Untagged)));
    };
    let doc = summary_from(r.get(9)?, r.get(10)?, label);
    let read_error = match doc {
        Some(_) => None,
        None => Some(
            q.unreadable
                .get(&metadata.key)
                .cloned()
                .unwrap_or_else(|| "not read yet".to_string()),
        ),
    };
    Ok(Some(Assessed {
        status: doc
            .is_some()
            .then(|| status_of(doc.as_ref(), image.etag.as_deref(), &q.review)),
        image: Some(image),
        key_kind: Some(kind_of(r.get(5)?)),
        metadata: Some(metadata),
        doc,
        read_error,
    }))
}

/// A document's object from columns `at` (size, ETag, modified) of a row,
/// each empty if the object is missing.
fn meta_from(r: &Row, key: String, at: [usize; 3]) -> rusqlite::Result<ObjectInfo> {
    Ok(ObjectInfo {
        size: r.get::<_, Option<i64>>(at[0])?.unwrap_or(0) as u64,
        etag: r
            .get::<_, Option<StoredTag>>(at[1])?
            .and_then(etag_of_identity),
        last_modified: r.get(at[2])?,
        key,
    })
}

/// A row of [`LEGACY_META`].
fn meta_from_row(r: &Row) -> rusqlite::Result<ObjectInfo> {
    meta_from(r, r.get(0)?, [1, 2, 3])
}

fn orphans(c: &Connection, layout: &Layout) -> rusqlite::Result<Vec<Assessed>> {
    let mp = layout.metadata_prefix();
    let mut stmt = c.prepare(
        "SELECT key, size, etag, modified FROM objects m \
         WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) \
         AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.meta = m.key) ORDER BY key",
    )?;
    let rows = stmt.query_map(params![mp, prefix_end(mp)], object_from_row)?;
    let mut out = Vec::new();
    for info in rows {
        let info = info?;
        if layout.metadata_rest(&info.key).is_some() {
            out.push(Assessed {
                image: None,
                metadata: Some(info),
                key_kind: None,
                status: Some(Status::Orphan),
                doc: None,
                read_error: None,
            });
        }
    }
    Ok(out)
}

/// Images and orphans the index holds: the rows [`rows`] streams without
/// a filter, announced before them (and "N shown of M listed").
pub fn count_rows(index: &Index, layout: &Layout) -> Result<u64, IndexError> {
    let up = layout.uploads_prefix();
    let mp = layout.metadata_prefix();
    index.with(|c| {
        let images: u64 = c.query_row(
            "SELECT count(*) FROM objects WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND key NOT LIKE '%/'",
            params![up, prefix_end(up)],
            |r| r.get(0),
        )?;
        let orphans: u64 = c.query_row(
            "SELECT count(*) FROM objects m WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) \
             AND key LIKE '%.json' AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.meta = m.key)",
            params![mp, prefix_end(mp)],
            |r| r.get(0),
        )?;
        Ok(images + orphans)
    })
}

/// What a row shows, hashed: after a refresh a TUI is sent only the rows
/// whose fingerprint changed (the document is identified by its ETag).
pub(crate) fn fingerprint(a: &Assessed) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.key().hash(&mut h);
    a.status.map(Status::index).hash(&mut h);
    a.key_kind.map(super::kind_code).hash(&mut h);
    a.image.as_ref().map(|i| (&i.etag, i.size)).hash(&mut h);
    a.metadata
        .as_ref()
        .map(|m| (&m.key, &m.etag, m.size))
        .hash(&mut h);
    a.read_error.hash(&mut h);
    h.finish()
}

/// A key's hash, for remembering a million rows in little memory.
pub(crate) fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}
