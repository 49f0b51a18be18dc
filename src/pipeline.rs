//! The one tagging pipeline every front end calls: read the image, detect,
//! build the contract's document, keep the human review, and write it
//! without ever clobbering a concurrent writer.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::catalog::read_metadata;
use crate::contract::{
    ErrorInfo, ImgTagInfo, Label, Layout, MetadataDoc, ParsedMetadata, Review, SCHEMA_VERSION,
    SourceRef, is_folder_placeholder, normalize_etag,
};
use crate::detection::{DetectFailure, DetectInput, DetectParams, DynDetector};
use crate::storage::{DynStore, PutCondition, StorageError, StoreKind};

/// Images larger than this are not downloaded for detection.
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;
/// Enough of a file to tell its format and dimensions.
const HEADER_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct TagOptions {
    pub layout: Layout,
    pub min_confidence: f32,
    pub max_labels: Option<u32>,
    /// Re-run even if the metadata already records this image, detector
    /// and threshold.
    pub force: bool,
    /// `ImgTag.TaggedBy`: "imgtag", "imgtag-tui", "imgtag-lambda", ...
    pub tagged_by: String,
    /// Where to write when the caller knows (the catalog's pairing);
    /// otherwise the existing metadata is looked up, canonical key first.
    pub metadata_key: Option<String>,
    /// Attempts for transient detector failures, with exponential backoff.
    pub attempts: u32,
    pub backoff: Duration,
}

impl TagOptions {
    pub fn new(layout: Layout, tagged_by: &str) -> Self {
        TagOptions {
            layout,
            min_confidence: crate::contract::DEFAULT_MIN_CONFIDENCE,
            max_labels: None,
            force: false,
            tagged_by: tagged_by.into(),
            metadata_key: None,
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Labels written.
    Tagged {
        metadata_key: String,
        labels: usize,
        best: Option<(String, f32)>,
    },
    /// A permanent failure, recorded in `ImgTag.Error`.
    Failed {
        metadata_key: String,
        code: String,
        message: String,
    },
    /// The metadata already records this image, detector and threshold.
    Unchanged { metadata_key: String },
    /// Not an image key (folder placeholder, outside uploads/).
    Skipped { reason: String },
    /// The metadata changed between our read and our write: not
    /// overwritten.
    Conflict { metadata_key: String },
    /// Nothing written; worth trying again later.
    Retry { message: String },
    /// Nothing written; the run should stop (credentials, permissions).
    Fatal { message: String },
}

impl Outcome {
    pub fn wrote(&self) -> bool {
        matches!(self, Outcome::Tagged { .. } | Outcome::Failed { .. })
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Applies a human review to detector labels: removed labels go, added
/// ones come in at 100 (or are raised to 100 if detected too).
pub fn apply_review(mut labels: Vec<Label>, review: Option<&Review>) -> Vec<Label> {
    let Some(r) = review else { return labels };
    labels.retain(|l| !r.removed.iter().any(|x| x.eq_ignore_ascii_case(&l.name)));
    for name in &r.added {
        match labels
            .iter_mut()
            .find(|l| l.name.eq_ignore_ascii_case(name))
        {
            Some(l) => l.confidence = 100.0,
            None => labels.push(Label::new(name.clone(), 100.0)),
        }
    }
    labels.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.name.cmp(&b.name))
    });
    labels
}

/// The document every writer writes.
pub fn build_document(
    source: SourceRef,
    detector: &str,
    opts: &TagOptions,
    result: Result<(Vec<Label>, Option<String>), ErrorInfo>,
    review: Option<Review>,
) -> MetadataDoc {
    let (labels, version, error) = match result {
        Ok((labels, version)) => (apply_review(labels, review.as_ref()), version, None),
        Err(e) => (Vec::new(), None, Some(e)),
    };
    MetadataDoc {
        labels,
        label_model_version: version,
        imgtag: Some(ImgTagInfo {
            schema_version: SCHEMA_VERSION,
            source,
            detector: detector.into(),
            min_confidence: opts.min_confidence,
            max_labels: opts.max_labels,
            tagged_at: now_rfc3339(),
            tagged_by: opts.tagged_by.clone(),
            review,
            error,
        }),
    }
}

/// Finds the image's existing metadata: its key, ETag and parsed content.
async fn existing_metadata(
    store: &DynStore,
    opts: &TagOptions,
    image_key: &str,
) -> Result<
    Option<(
        String,
        String,
        Result<ParsedMetadata, crate::contract::Malformed>,
    )>,
    StorageError,
> {
    let candidates: Vec<String> = match &opts.metadata_key {
        Some(k) => vec![k.clone()],
        None => {
            let rest = opts.layout.image_rest(image_key).unwrap_or_default();
            Layout::candidate_rests(rest)
                .map(|(_, r)| format!("{}{r}.json", opts.layout.metadata_prefix()))
                .collect()
        }
    };
    for key in candidates {
        match read_metadata(store, &key).await {
            Ok((read, info)) => {
                let etag = info.etag.as_deref().unwrap_or_default().to_string();
                return Ok(Some((key, etag, read)));
            }
            Err(StorageError::NotFound { .. } | StorageError::InvalidKey { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn storage_outcome(e: StorageError) -> Outcome {
    match e {
        // Deleted since it was listed or announced: nothing to tag.
        StorageError::NotFound { key } => Outcome::Skipped {
            reason: format!("{key:?} does not exist"),
        },
        StorageError::AccessDenied { .. } | StorageError::NoSuchBucket { .. } => Outcome::Fatal {
            message: e.to_string(),
        },
        e => Outcome::Retry {
            message: e.to_string(),
        },
    }
}

/// Tags one image. Never panics and never overwrites a concurrent change;
/// every failure is an `Outcome`.
pub async fn tag(
    store: &DynStore,
    detector: &DynDetector,
    key: &str,
    opts: &TagOptions,
) -> Outcome {
    if is_folder_placeholder(key) || opts.layout.image_rest(key).is_none() {
        return Outcome::Skipped {
            reason: format!("not an image under {}", opts.layout.uploads_prefix()),
        };
    }
    let canonical = match opts.layout.metadata_key(key) {
        Ok(k) => k,
        Err(e) => {
            return Outcome::Skipped {
                reason: e.to_string(),
            };
        }
    };

    let existing = match existing_metadata(store, opts, key).await {
        Ok(x) => x,
        Err(e) => return storage_outcome(e),
    };
    // Where to write and under what condition: create-only when there is
    // no metadata, If-Match on what we read otherwise.
    // A legacy key (a.json) may belong to another image (a.jpg vs a.png):
    // then this image gets its own canonical key instead.
    let existing = existing.filter(|(_, _, read)| {
        read.as_ref()
            .ok()
            .and_then(|p| p.doc.imgtag.as_ref())
            .is_none_or(|t| t.source.key == key)
    });
    let (meta_key, condition, prior) = match existing {
        None => (canonical, PutCondition::CreateOnly, None),
        Some((k, etag, read)) => (k, PutCondition::IfMatch(etag), read.ok()),
    };
    let review = prior
        .as_ref()
        .and_then(|p| p.doc.review().cloned())
        .filter(|r| !r.is_empty());

    let head = match store.head(key).await {
        Ok(i) => i,
        Err(e) => return storage_outcome(e),
    };
    // At-least-once callers must not pay twice: checked before the image
    // is read.
    if !opts.force
        && let Some(t) = prior.as_ref().and_then(|p| p.doc.imgtag.as_ref())
        && t.detector == detector.name()
        && t.min_confidence == opts.min_confidence
        && t.max_labels == opts.max_labels
        && let (Some(a), Some(b)) = (t.source.etag.as_deref(), head.etag.as_deref())
        && normalize_etag(a) == normalize_etag(b)
    {
        return Outcome::Unchanged {
            metadata_key: meta_key,
        };
    }

    // Read the image, or only its first bytes when the detector reads the
    // object from S3 itself.
    let mut by_reference = None;
    if detector.reads_s3() && store.kind() == StoreKind::S3 {
        let header = match store.get_range(key, 0..HEADER_BYTES.min(head.size)).await {
            Ok(h) => h,
            Err(e) => return storage_outcome(e),
        };
        if crate::detection::rekognition::RekognitionDetector::accepts_by_reference(
            &header, head.size,
        ) {
            by_reference = Some(DetectInput::S3 {
                bucket: store.bucket_name().to_string(),
                key: key.to_string(),
                size: head.size,
                header,
            });
        }
    }
    let (input, info) = match by_reference {
        Some(input) => (input, head),
        None => match store.get(key, MAX_IMAGE_BYTES).await {
            Ok(obj) => (DetectInput::Bytes(obj.body), obj.info),
            Err(StorageError::TooLarge { size, limit, .. }) => {
                let source = SourceRef {
                    bucket: store.bucket_name().into(),
                    key: key.into(),
                    etag: head.etag.as_deref().map(str::to_string),
                    size: Some(size),
                };
                let err = ErrorInfo {
                    code: "ImageTooLarge".into(),
                    message: format!("{size} bytes, over imgtag's {limit} byte limit"),
                };
                let target = Target {
                    key: &meta_key,
                    condition,
                };
                return write(
                    store,
                    detector.name(),
                    opts,
                    target,
                    source,
                    Err(err),
                    review,
                )
                .await;
            }
            Err(e) => return storage_outcome(e),
        },
    };
    let image_etag = info.etag.as_deref().map(str::to_string);

    let source = SourceRef {
        bucket: store.bucket_name().into(),
        key: key.into(),
        etag: image_etag,
        size: Some(info.size),
    };
    let params = DetectParams {
        min_confidence: opts.min_confidence,
        max_labels: opts.max_labels,
    };
    let mut delay = opts.backoff;
    let mut attempt = 1;
    let result = loop {
        match detector.detect(input.clone(), params).await {
            Ok(d) => break Ok((d.labels, d.label_model_version)),
            Err(DetectFailure::Permanent { code, message }) => {
                break Err(ErrorInfo { code, message });
            }
            Err(DetectFailure::Config { message }) => return Outcome::Fatal { message },
            Err(DetectFailure::Transient { message }) => {
                if attempt >= opts.attempts.max(1) {
                    return Outcome::Retry { message };
                }
                tracing::warn!(key, attempt, %message, "transient detector failure, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    };
    let target = Target {
        key: &meta_key,
        condition,
    };
    write(store, detector.name(), opts, target, source, result, review).await
}

/// Where a document goes, and the condition it is written under.
struct Target<'a> {
    key: &'a str,
    condition: PutCondition,
}

async fn write(
    store: &DynStore,
    detector: &str,
    opts: &TagOptions,
    target: Target<'_>,
    source: SourceRef,
    result: Result<(Vec<Label>, Option<String>), ErrorInfo>,
    review: Option<Review>,
) -> Outcome {
    let doc = build_document(source, detector, opts, result, review);
    let body = Bytes::from(doc.to_json_bytes());
    let meta_key = target.key;
    match store.put(meta_key, body, target.condition).await {
        Ok(_) => match doc.error() {
            Some(e) => Outcome::Failed {
                metadata_key: meta_key.into(),
                code: e.code.clone(),
                message: e.message.clone(),
            },
            None => Outcome::Tagged {
                metadata_key: meta_key.into(),
                labels: doc.labels.len(),
                best: doc.best_label().map(|l| (l.name.clone(), l.confidence)),
            },
        },
        Err(StorageError::Conflict { .. }) => Outcome::Conflict {
            metadata_key: meta_key.into(),
        },
        Err(e) => storage_outcome(e),
    }
}

/// A human correction of one image's labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewEdit {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl ReviewEdit {
    /// Parses `+Cat -Feline Dog`: `-` removes, `+` or nothing adds. Names
    /// with spaces use `_` (`+Tabby_Cat`) or quotes (`+"Tabby Cat"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut edit = ReviewEdit::default();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let remove = first == '-';
            if first == '-' || first == '+' {
                chars.next();
            }
            let name: String = if chars.next_if_eq(&'"').is_some() {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated quote".into()),
                    }
                }
                s
            } else {
                let mut s = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    s.push(if c == '_' { ' ' } else { c });
                }
                s
            };
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err("empty label name".into());
            }
            if name.chars().any(crate::sanitize::is_unsafe) {
                return Err("label names cannot contain control characters".into());
            }
            if remove {
                edit.remove.push(name);
            } else {
                edit.add.push(name);
            }
        }
        if edit.add.is_empty() && edit.remove.is_empty() {
            return Err("nothing to change: type +Label to add, -Label to remove".into());
        }
        Ok(edit)
    }
}

/// Merges an edit into a review: adding a label cancels an earlier
/// removal of it and the other way round.
fn merge_review(mut review: Review, edit: &ReviewEdit, now: String) -> Review {
    let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
    for name in &edit.add {
        review.removed.retain(|r| !same(r, name));
        review.flagged.retain(|r| !same(r, name));
        if !review.added.iter().any(|a| same(a, name)) {
            review.added.push(name.clone());
        }
    }
    for name in &edit.remove {
        review.added.retain(|a| !same(a, name));
        review.flagged.retain(|r| !same(r, name));
        if !review.removed.iter().any(|r| same(r, name)) {
            review.removed.push(name.clone());
        }
    }
    review.reviewed_at = Some(now);
    review
}

/// Applies a human correction to an image's metadata, recorded in
/// `ImgTag.Review` so that later re-runs of detection keep it. The write
/// is conditional on the document read (If-Match): a concurrent change is a
/// `Conflict`, never overwritten. An image without metadata, or with a
/// malformed or failed document, is `Skipped`: tag it first.
pub async fn edit_review(
    store: &DynStore,
    key: &str,
    edit: &ReviewEdit,
    opts: &TagOptions,
) -> Outcome {
    if opts.layout.image_rest(key).is_none() {
        return Outcome::Skipped {
            reason: format!("not an image under {}", opts.layout.uploads_prefix()),
        };
    }
    let existing = match existing_metadata(store, opts, key).await {
        Ok(x) => x,
        Err(e) => return storage_outcome(e),
    };
    let Some((meta_key, etag, read)) = existing else {
        return Outcome::Skipped {
            reason: "no metadata yet: tag the image first".into(),
        };
    };
    let mut doc = match read {
        Ok(p) => p.doc,
        Err(m) => {
            return Outcome::Skipped {
                reason: format!("metadata is malformed ({m}); re-tag the image first"),
            };
        }
    };
    if doc.error().is_some() {
        return Outcome::Skipped {
            reason: "the image failed to tag; nothing to review".into(),
        };
    }
    let now = now_rfc3339();
    let info = match doc.imgtag.take() {
        Some(t) => t,
        // A document from another writer (the seed's bare shape): imgtag
        // adds its own block so the review can be kept.
        None => {
            let head = match store.head(key).await {
                Ok(h) => h,
                Err(e) => return storage_outcome(e),
            };
            ImgTagInfo {
                schema_version: SCHEMA_VERSION,
                source: SourceRef {
                    bucket: store.bucket_name().into(),
                    key: key.into(),
                    etag: head.etag.as_deref().map(str::to_string),
                    size: Some(head.size),
                },
                detector: "unknown".into(),
                min_confidence: opts.min_confidence,
                max_labels: None,
                tagged_at: now.clone(),
                tagged_by: opts.tagged_by.clone(),
                review: None,
                error: None,
            }
        }
    };
    let review = merge_review(info.review.clone().unwrap_or_default(), edit, now);
    doc.labels = apply_review(std::mem::take(&mut doc.labels), Some(&review));
    doc.imgtag = Some(ImgTagInfo {
        review: Some(review),
        ..info
    });
    let body = Bytes::from(doc.to_json_bytes());
    match store
        .put(&meta_key, body, PutCondition::IfMatch(etag))
        .await
    {
        Ok(_) => Outcome::Tagged {
            labels: doc.labels.len(),
            best: doc.best_label().map(|l| (l.name.clone(), l.confidence)),
            metadata_key: meta_key,
        },
        Err(StorageError::Conflict { .. }) => Outcome::Conflict {
            metadata_key: meta_key,
        },
        Err(e) => storage_outcome(e),
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    #[test]
    fn review_edits_parse_and_merge() {
        let e = ReviewEdit::parse(" +Cat -Feline Dog +Tabby_Cat -\"Pet Shop\"").unwrap();
        assert_eq!(e.add, vec!["Cat", "Dog", "Tabby Cat"]);
        assert_eq!(e.remove, vec!["Feline", "Pet Shop"]);
        assert!(ReviewEdit::parse("  ").is_err());
        assert!(ReviewEdit::parse("+\"open").is_err());
        assert!(ReviewEdit::parse("+a\u{1b}[31m").is_err());
        let r = merge_review(
            Review {
                removed: vec!["cat".into()],
                added: vec!["Feline".into()],
                ..Default::default()
            },
            &e,
            "t".into(),
        );
        assert_eq!(r.added, vec!["Cat", "Dog", "Tabby Cat"]);
        assert_eq!(r.removed, vec!["Feline", "Pet Shop"]);
        assert_eq!(r.reviewed_at.as_deref(), Some("t"));
    }
}
