//! `imgtag export`: the human-reviewed labels of a selection, for
//! retraining (docs/cli.md, "Exporting reviews"). Two formats:
//!
//! - `manifest`: JSON Lines as SageMaker Ground Truth and Rekognition
//!   Custom Labels read them (image-level, multi-label): one line per
//!   image with its `source-ref` and one `label-N` / `label-N-metadata`
//!   pair per label, `human-annotated` saying whose word it is;
//! - `csv`: `key,label,confidence,source` (source `human` or `detector`).
//!
//! Only images a person reviewed are written; documents are read as the
//! lines go out, a few at a time, so memory stays flat.

use std::io::Write;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

use crate::catalog::Selected;
use crate::contract::MetadataDoc;
use crate::storage::{DynStore, StorageError};

/// Documents read at once.
const IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Manifest,
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("writing the export: {0}")]
    Output(#[from] std::io::Error),
}

/// What an export wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Reviewed images written.
    pub images: usize,
    /// Labels written (lines of a CSV).
    pub labels: usize,
    /// Selected images left out: not reviewed, or no readable document.
    pub skipped: usize,
}

/// One label as exported: whose word it is.
struct Row<'a> {
    name: &'a str,
    confidence: f32,
    human: bool,
}

/// Writes the reviewed images among `targets` in `format`.
pub async fn export(
    bucket: &crate::bucket::Bucket,
    targets: Vec<Selected>,
    format: Format,
    out: &mut dyn Write,
) -> Result<Exported, ExportError> {
    let mut done = Exported::default();
    if format == Format::Csv {
        writeln!(out, "key,label,confidence,source")?;
    }
    let store = bucket.store();
    let mut docs = futures::stream::iter(targets)
        .map(|t| async move {
            let found = bucket.find(&t.key, t.metadata_key.as_deref()).await?;
            let doc = found.found().and_then(|f| f.read.ok()).map(|p| p.doc);
            Ok::<_, StorageError>((t.key, doc))
        })
        .buffered(IN_FLIGHT);
    let created = crate::clock::now_rfc3339();
    while let Some((key, doc)) = docs.try_next().await? {
        let Some(doc) = doc.filter(|d| d.review().is_some_and(|r| !r.is_empty())) else {
            done.skipped += 1;
            continue;
        };
        let rows = rows(&doc);
        done.images += 1;
        done.labels += rows.len();
        match format {
            Format::Csv => write_csv(out, &key, &rows)?,
            Format::Manifest => {
                let line = manifest_line(store, &key, &rows, &created);
                writeln!(out, "{}", crate::sanitize::json_line(&line))?;
            }
        }
    }
    Ok(done)
}

/// The document's effective labels, each marked human (added or
/// confirmed by a reviewer) or the detector's.
fn rows(doc: &MetadataDoc) -> Vec<Row<'_>> {
    let review = doc.review();
    let human = |name: &str| {
        review.is_some_and(|r| {
            r.is_confirmed(name) || r.added.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    };
    doc.labels
        .iter()
        .map(|l| Row {
            name: &l.name,
            confidence: l.confidence,
            human: human(&l.name),
        })
        .collect()
}

fn manifest_line(store: &DynStore, key: &str, rows: &[Row], created: &str) -> Value {
    let mut line = Map::new();
    // A folder used as a bucket has no S3 URI: its file's path stands in.
    let source = match store.kind() {
        crate::storage::StoreKind::S3 => format!("s3://{}/{key}", store.bucket_name()),
        _ => format!("file://{}/{key}", store.describe()),
    };
    line.insert("source-ref".into(), Value::String(source));
    for (i, r) in rows.iter().enumerate() {
        line.insert(format!("label-{i}"), json!(1));
        let confidence = if r.human {
            1.0
        } else {
            f64::from(r.confidence) / 100.0
        };
        line.insert(
            format!("label-{i}-metadata"),
            json!({
                "class-name": r.name,
                "confidence": confidence,
                "type": "groundtruth/image-classification",
                "job-name": "imgtag-review",
                "human-annotated": if r.human { "yes" } else { "no" },
                "creation-date": created,
            }),
        );
    }
    Value::Object(line)
}

fn write_csv(out: &mut dyn Write, key: &str, rows: &[Row]) -> std::io::Result<()> {
    for r in rows {
        let source = if r.human { "human" } else { "detector" };
        writeln!(
            out,
            "{},{},{},{source}",
            csv_field(key),
            csv_field(r.name),
            r.confidence
        )?;
    }
    Ok(())
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'`
/// so that a spreadsheet never runs an object key as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("uploads/a.jpg"), "uploads/a.jpg");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
