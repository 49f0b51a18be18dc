//! The one tagging pipeline every front end calls: read the image, detect,
//! build the contract's document, keep the human review, and write it
//! without ever clobbering a concurrent writer.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;

use crate::catalog::{Lookup, MetadataRead, find_metadata};
use crate::claim::Claim;
use crate::contract::{
    Candidate, Confirmed, ErrorInfo, ImgTagInfo, Label, LabelFilters, Layout, MetadataDoc,
    ParsedMetadata, RequestSettings, Review, SCHEMA_VERSION, SourceRef, is_folder_placeholder,
    normalize_candidates, normalize_etag, parse_metadata,
};
use crate::detection::text::TextDetection;
use crate::detection::{
    DetectFailure, DetectInput, DetectParams, Detection, DynDetector, Features,
};
pub use crate::outcome::Outcome;
use crate::storage::{DynStore, ObjectInfo, PutCondition, StorageError};

/// Images larger than this are not downloaded for detection.
pub(crate) const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;
/// Enough of a file to tell its format and dimensions.
const HEADER_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct TagOptions {
    pub layout: Layout,
    pub min_confidence: f32,
    pub max_labels: Option<u32>,
    /// DetectLabels `Features` (`--features`): labels, and image
    /// properties when asked.
    pub features: Features,
    /// DetectLabels `Settings.GeneralLabels` (`--include-labels` and
    /// friends).
    pub filters: LabelFilters,
    /// Re-run even if the metadata already records this image, detector
    /// and threshold.
    pub force: bool,
    /// `ImgTag.TaggedBy`: "imgtag", "imgtag-tui", "imgtag-lambda", ...
    pub tagged_by: String,
    /// Where to write when the caller knows (the catalog's pairing);
    /// otherwise the existing metadata is looked up, canonical key first.
    pub metadata_key: Option<String>,
    /// Replace a metadata document that cannot be read (malformed, not
    /// imgtag's, over the size limit) instead of leaving it alone. Only
    /// ever set for one run, by an explicit `--force`.
    pub replace_unreadable: bool,
    /// Attempts for transient detector failures, with exponential backoff:
    /// the one retry layer for detection (detectors make one call per
    /// attempt; see `RekognitionDetector::from_client`). Also bounds the
    /// retries of a write whose detection is already paid for.
    pub attempts: u32,
    pub backoff: Duration,
    /// Keep what the detector saw below MinConfidence in
    /// `ImgTag.Candidates` (on by default: the local model has them for
    /// free; Rekognition is asked once, at a lower MinConfidence, see
    /// `rekognition::candidate_floor`). They rank the review queue's
    /// suggestions.
    pub candidates: bool,
    /// When the local detector runs its text model.
    pub text_detection: TextDetection,
    /// How long a claim on an image lasts while a paid detector looks at
    /// it ([`crate::claim`]); `None` tags without claims.
    pub claim_lease: Option<Duration>,
}

impl TagOptions {
    pub fn new(layout: Layout, tagged_by: &str) -> Self {
        TagOptions {
            layout,
            min_confidence: crate::contract::DEFAULT_MIN_CONFIDENCE,
            max_labels: None,
            features: Features::default(),
            filters: LabelFilters::default(),
            force: false,
            tagged_by: tagged_by.into(),
            metadata_key: None,
            replace_unreadable: false,
            attempts: 3,
            backoff: Duration::from_millis(500),
            candidates: true,
            text_detection: TextDetection::default(),
            claim_lease: Some(crate::claim::DEFAULT_LEASE),
        }
    }

    /// The options a front end's settings give: layout, thresholds,
    /// features and filters.
    pub fn from_settings(settings: &crate::config::Settings, tagged_by: &str) -> Self {
        TagOptions {
            min_confidence: settings.min_confidence,
            max_labels: settings.max_labels,
            features: settings.features,
            filters: settings.filters.clone(),
            text_detection: settings.text_detection,
            ..TagOptions::new(settings.layout.clone(), tagged_by)
        }
    }

    /// What the detector is asked.
    pub fn params(&self) -> DetectParams {
        DetectParams {
            min_confidence: self.min_confidence,
            max_labels: self.max_labels,
            features: self.features,
            filters: self.filters.clone(),
            candidates: self.candidates,
            text_detection: self.text_detection,
        }
    }
}

/// Applies a human review to detector labels: removed labels go, added
/// ones come in at 100 (or are raised to 100 if detected too).
pub(crate) fn apply_review(mut labels: Vec<Label>, review: Option<&Review>) -> Vec<Label> {
    let Some(r) = review else { return labels };
    // Sets and maps by lower-cased name: linear in a hostile document
    // (60,000 labels, 400,000 review names), never a scan per name.
    let removed: HashSet<String> = r.removed.iter().map(|n| n.to_ascii_lowercase()).collect();
    labels.retain(|l| !removed.contains(&l.name.to_ascii_lowercase()));
    let mut at: HashMap<String, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.to_ascii_lowercase(), i))
        .collect();
    // A confirmed label is a human's word too (docs/format.md, "Review").
    let confirmed = r.confirmed.iter().map(|c| &c.name);
    for name in r.added.iter().chain(confirmed) {
        match at.get(&name.to_ascii_lowercase()) {
            Some(&i) => labels[i].confidence = 100.0,
            None => {
                at.insert(name.to_ascii_lowercase(), labels.len());
                labels.push(Label::new(name.clone(), 100.0));
            }
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
        Ok((labels, version)) => {
            let mut labels = apply_review(labels, review.as_ref());
            // What the reader would refuse is never written: a document
            // imgtag cannot read back would be stuck as "malformed".
            labels.retain(|l| !l.name.trim().is_empty() && (0.0..=100.0).contains(&l.confidence));
            (labels, version, None)
        }
        Err(e) => (Vec::new(), None, Some(e)),
    };
    MetadataDoc {
        labels,
        label_model_version: version,
        extra: Default::default(),
        imgtag: Some(ImgTagInfo {
            extra: Default::default(),
            schema_version: SCHEMA_VERSION,
            source,
            detector: Some(detector.into()),
            min_confidence: Some(opts.min_confidence),
            max_labels: opts.max_labels,
            tagged_at: Some(crate::clock::now_rfc3339()),
            tagged_by: Some(opts.tagged_by.clone()),
            review,
            error,
            features: opts.features.recorded(),
            settings: RequestSettings::for_filters(&opts.filters),
        }),
    }
}

/// What a storage error means for the image: gone, a reason to stop the
/// run, worth another try later, or a permanent problem with this one key.
fn storage_outcome(e: StorageError) -> Outcome {
    use std::io::ErrorKind;
    match e {
        // Deleted since it was listed or announced: nothing to tag.
        StorageError::NotFound { key } => Outcome::Skipped {
            reason: format!("{key:?} does not exist"),
        },
        StorageError::AccessDenied { .. } | StorageError::NoSuchBucket { .. } => Outcome::Fatal {
            message: e.to_string(),
        },
        // Nothing else will be writable either: stop instead of paying for
        // detections whose results cannot be kept.
        StorageError::Io { ref source, .. }
            if matches!(
                source.kind(),
                ErrorKind::StorageFull
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::PermissionDenied
                    | ErrorKind::QuotaExceeded
            ) =>
        {
            Outcome::Fatal {
                message: e.to_string(),
            }
        }
        e if e.is_transient() => Outcome::Retry {
            message: e.to_string(),
        },
        // This key can never be read or written (too long for the file
        // system, refused by the store): trying again changes nothing.
        StorageError::Io { .. }
        | StorageError::InvalidKey { .. }
        | StorageError::TooLarge { .. }
        | StorageError::Rejected { .. } => Outcome::Skipped {
            reason: e.to_string(),
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
    match tag_steps(store, detector, key, opts).await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

/// The steps of [`tag`]; each returns early with its `Outcome`.
async fn tag_steps(
    store: &DynStore,
    detector: &DynDetector,
    key: &str,
    opts: &TagOptions,
) -> Result<Outcome, Outcome> {
    let canonical = canonical_key(key, &opts.layout)?;
    let target = Target::find(store, opts, key, canonical.clone()).await?;
    let head = store.head(key).await.map_err(storage_outcome)?;
    target.skip_if_done(detector.as_ref(), opts, &head)?;
    let lease = opts.claim_lease.filter(|_| detector.kind().is_paid());
    let Some(lease) = lease else {
        return tag_found(store, detector, key, opts, target, head).await;
    };
    let claim_key = crate::claim::claim_key(&canonical);
    let claim = crate::claim::take(store, &claim_key, &opts.tagged_by, lease)
        .await
        .map_err(storage_outcome)?;
    if let Claim::Busy { message } = claim {
        return Err(Outcome::Retry { message });
    }
    let outcome = tag_claimed(store, detector, key, opts, (target, canonical), head).await;
    crate::claim::release(store, &claim).await;
    outcome
}

/// Under a claim: looks again, as another run may have written since our
/// first look and let its claim go, then detects and writes. One HEAD when
/// the document is as we found it.
async fn tag_claimed(
    store: &DynStore,
    detector: &DynDetector,
    key: &str,
    opts: &TagOptions,
    (target, canonical): (Target, String),
    head: ObjectInfo,
) -> Result<Outcome, Outcome> {
    if target.is_current(store).await? {
        return tag_found(store, detector, key, opts, target, head).await;
    }
    let target = Target::find(store, opts, key, canonical).await?;
    target.skip_if_done(detector.as_ref(), opts, &head)?;
    tag_found(store, detector, key, opts, target, head).await
}

/// Reads, detects and writes an image whose metadata was found.
async fn tag_found(
    store: &DynStore,
    detector: &DynDetector,
    key: &str,
    opts: &TagOptions,
    target: Target,
    head: ObjectInfo,
) -> Result<Outcome, Outcome> {
    let (result, source) = match read_input(store, detector.as_ref(), key, &head).await? {
        Ok((input, info)) => {
            let source = source_ref(store, key, &info);
            (detect(detector, input, opts, key).await?, source)
        }
        Err(too_large) => (Err(too_large), source_ref(store, key, &head)),
    };
    Ok(write(store, detector.name(), opts, &target, source, result).await)
}

/// The canonical metadata key of an image key, or why it is not one.
fn canonical_key(key: &str, layout: &Layout) -> Result<String, Outcome> {
    if is_folder_placeholder(key) || layout.image_rest(key).is_none() {
        return Err(Outcome::Skipped {
            reason: format!("not an image under {}", layout.uploads_prefix()),
        });
    }
    layout.metadata_key(key).map_err(|e| Outcome::Skipped {
        reason: e.to_string(),
    })
}

fn source_ref(store: &DynStore, key: &str, info: &ObjectInfo) -> SourceRef {
    SourceRef {
        bucket: store.bucket_name().into(),
        key: key.into(),
        etag: info.etag.as_deref().map(str::to_string),
        size: Some(info.size),
    }
}

/// Where a document goes, the condition it is written under, and what it
/// replaces.
struct Target {
    key: String,
    condition: PutCondition,
    prior: Option<ParsedMetadata>,
}

impl Target {
    /// Create-only at the canonical key when the image has no metadata;
    /// If-Match on what was read otherwise.
    async fn find(
        store: &DynStore,
        opts: &TagOptions,
        key: &str,
        canonical: String,
    ) -> Result<Target, Outcome> {
        let found = find_metadata(store, &opts.layout, key, opts.metadata_key.as_deref())
            .await
            .map_err(storage_outcome)?;
        Ok(match found {
            Lookup::Absent { taken: Some(t) } => return Err(skipped(t.reason())),
            Lookup::Absent { taken: None } => Target {
                key: canonical,
                condition: PutCondition::CreateOnly,
                prior: None,
            },
            Lookup::Found(f) => Target {
                condition: if_match(&f.info)?,
                prior: rewritable(&f.key, f.read, opts.replace_unreadable)?,
                key: f.key,
            },
        })
    }

    /// Whether the document is still as it was found: absent for a
    /// create, the same ETag for a rewrite.
    async fn is_current(&self, store: &DynStore) -> Result<bool, Outcome> {
        match (store.head(&self.key).await, &self.condition) {
            (Err(StorageError::NotFound { .. }), PutCondition::CreateOnly) => Ok(true),
            (Ok(info), PutCondition::IfMatch(etag)) => Ok(info
                .etag
                .is_some_and(|e| normalize_etag(&e) == normalize_etag(etag))),
            (Ok(_) | Err(StorageError::NotFound { .. }), _) => Ok(false),
            (Err(e), _) => Err(storage_outcome(e)),
        }
    }

    /// The human review to carry over to the new document.
    fn review(&self) -> Option<Review> {
        self.prior
            .as_ref()
            .and_then(|p| p.doc.review().cloned())
            .filter(|r| !r.is_empty())
    }

    /// At-least-once callers must not pay twice: when the metadata already
    /// records this image (same ETag), detector and parameters, the image
    /// is `Unchanged`. Checked before the image is read.
    fn skip_if_done(
        &self,
        detector: &dyn crate::detection::Detector,
        opts: &TagOptions,
        head: &ObjectInfo,
    ) -> Result<(), Outcome> {
        let Some(t) = self.prior.as_ref().and_then(|p| p.doc.imgtag.as_ref()) else {
            return Ok(());
        };
        let same_image = matches!(
            (t.source.etag.as_deref(), head.etag.as_deref()),
            (Some(a), Some(b)) if normalize_etag(a) == normalize_etag(b)
        );
        if !opts.force
            && same_image
            && t.detector.as_deref() == Some(detector.name())
            && t.min_confidence == Some(opts.min_confidence)
            && t.max_labels == opts.max_labels
            && self.same_models(detector.model_version())
            && self.same_features(t, opts)
        {
            return Err(Outcome::Unchanged {
                metadata_key: self.key.clone(),
            });
        }
        Ok(())
    }

    /// A result is only "the same request" when it was asked with the same
    /// features and label filters (a document without them was asked for
    /// GENERAL_LABELS alone, unfiltered; filters compare as sets of names,
    /// any case). A recorded failure is about the image, whatever was asked.
    fn same_features(&self, t: &ImgTagInfo, opts: &TagOptions) -> bool {
        t.error.is_some()
            || (Features::of_document(&t.features) == Some(opts.features)
                && t.label_filters().normalized() == opts.filters.normalized())
    }

    /// A result is only "the same request" when it came from the models
    /// the detector runs now (the local detector once ran one model, now
    /// two). A recorded failure is about the image, whatever the model.
    fn same_models(&self, version: Option<&str>) -> bool {
        let Some(version) = version else {
            return true;
        };
        self.prior.as_ref().is_some_and(|p| {
            p.doc.error().is_some() || p.doc.label_model_version.as_deref() == Some(version)
        })
    }
}

/// The document a rewrite replaces, if imgtag may rewrite it: never one
/// it cannot read (unless `replace` is set for this run), never one written
/// by a newer imgtag whose fields it could lose.
fn rewritable(
    key: &str,
    read: MetadataRead,
    replace: bool,
) -> Result<Option<ParsedMetadata>, Outcome> {
    match read {
        Ok(p) => match p.doc.imgtag.as_ref().map(|t| t.schema_version) {
            Some(v) if v > SCHEMA_VERSION => Err(skipped(format!(
                "{key} has SchemaVersion {v}, newer than this imgtag's {SCHEMA_VERSION}: \
                 not rewritten (upgrade imgtag)"
            ))),
            _ => Ok(Some(p)),
        },
        Err(_) if replace => Ok(None),
        Err(m) => Err(skipped(format!(
            "{key} cannot be read ({}): not overwritten; --force replaces it",
            m.reason
        ))),
    }
}

/// Keeps what a rewrite must not lose from the document it replaces: the
/// fields imgtag does not model (top level, `ImgTag`, each label still
/// present by name).
fn carry_unknown_fields(doc: &mut MetadataDoc, prior: &MetadataDoc) {
    doc.extra.clone_from(&prior.extra);
    if let (Some(new), Some(old)) = (doc.imgtag.as_mut(), prior.imgtag.as_ref()) {
        new.extra.clone_from(&old.extra);
    }
    // The first of each name, as a scan would find it; by map, so a
    // hostile prior document costs one pass.
    let mut old: HashMap<String, &crate::contract::Extra> = HashMap::new();
    for l in &prior.labels {
        old.entry(l.name.to_ascii_lowercase()).or_insert(&l.extra);
    }
    for label in &mut doc.labels {
        if let Some(extra) = old.get(&label.name.to_ascii_lowercase()) {
            label.extra.clone_from(extra);
        }
    }
}

/// What the detector is given: a reference to the S3 object when the
/// detector reads it itself and accepts it as it is (only the first bytes
/// are read), else the whole image. An image over the download limit is a
/// permanent failure to record (the inner `Err`).
async fn read_input(
    store: &DynStore,
    detector: &dyn crate::detection::Detector,
    key: &str,
    head: &ObjectInfo,
) -> Result<Result<(DetectInput, ObjectInfo), ErrorInfo>, Outcome> {
    if detector.reads_s3() && store.aws_readable() {
        let header = store
            .get_range(key, 0..HEADER_BYTES.min(head.size))
            .await
            .map_err(storage_outcome)?;
        if detector.accepts_s3_object(&header, head.size) {
            let input = DetectInput::S3 {
                bucket: store.bucket_name().to_string(),
                key: key.to_string(),
                size: head.size,
                header,
            };
            return Ok(Ok((input, head.clone())));
        }
    }
    match store.get(key, MAX_IMAGE_BYTES).await {
        Ok(obj) => Ok(Ok((DetectInput::Bytes(obj.body), obj.info))),
        Err(StorageError::TooLarge { size, limit, .. }) => Ok(Err(ErrorInfo {
            code: "ImageTooLarge".into(),
            message: format!("{size} bytes, over imgtag's {limit} byte limit"),
        })),
        Err(e) => Err(storage_outcome(e)),
    }
}

/// Runs the detector, retrying transient failures with backoff. A
/// permanent failure is the inner `Err`, to be recorded.
async fn detect(
    detector: &DynDetector,
    input: DetectInput,
    opts: &TagOptions,
    key: &str,
) -> Result<Result<Detection, ErrorInfo>, Outcome> {
    let params = opts.params();
    let mut delay = opts.backoff;
    let mut attempt = 1;
    loop {
        match detector.detect(input.clone(), params.clone()).await {
            Ok(mut d) => {
                // The local model knows no filters: they apply to its answer
                // here, so a document records only what it holds.
                if !detector.applies_filters() {
                    params.filters.apply(&mut d.labels);
                    params.filters.apply_to_candidates(&mut d.candidates);
                }
                return Ok(Ok(d));
            }
            Err(DetectFailure::Permanent { code, message }) => {
                return Ok(Err(ErrorInfo { code, message }));
            }
            Err(DetectFailure::Config { message }) => return Err(Outcome::Fatal { message }),
            Err(DetectFailure::Transient { message }) => {
                if attempt >= opts.attempts.max(1) {
                    return Err(Outcome::Retry { message });
                }
                tracing::warn!(key, attempt, %message, "transient detector failure, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

async fn write(
    store: &DynStore,
    detector: &str,
    opts: &TagOptions,
    target: &Target,
    source: SourceRef,
    result: Result<Detection, ErrorInfo>,
) -> Outcome {
    let (properties, candidates, text) = match &result {
        Ok(d) => (
            d.image_properties.clone(),
            d.candidates.clone(),
            d.text.clone(),
        ),
        Err(_) => (None, Vec::new(), Vec::new()),
    };
    let result = result.map(|d| (d.labels, d.label_model_version));
    let mut doc = build_document(source, detector, opts, result, target.review());
    if let Some(prior) = &target.prior {
        carry_unknown_fields(&mut doc, &prior.doc);
    }
    // This detection's answer, never the one it replaces: a re-run without
    // IMAGE_PROPERTIES leaves none, and candidates and text are the
    // detector's (never a human's), replaced by each run.
    doc.set_image_properties(properties.as_ref());
    set_candidates(&mut doc, candidates, opts.min_confidence);
    if let Some(t) = doc.imgtag.as_mut() {
        t.set_text(text);
    }
    // The detection is paid for: a transient write failure is retried
    // here rather than reported, which would make the caller detect again.
    let (mut delay, mut attempt) = (opts.backoff, 1);
    loop {
        match put_document(store, &target.key, &doc, target.condition.clone()).await {
            Outcome::Retry { message } if attempt < opts.attempts.max(1) => {
                tracing::warn!(key = %target.key, attempt, %message, "write failed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            // A failed attempt may have landed all the same (a lost reply):
            // then the refusal is our own document, byte for byte.
            Outcome::Conflict { metadata_key }
                if attempt > 1 && holds_document(store, &metadata_key, &doc).await =>
            {
                return written(&metadata_key, &doc);
            }
            outcome => return outcome,
        }
    }
}

/// Whether the object at `key` is exactly `doc` as this run wrote it.
async fn holds_document(store: &DynStore, key: &str, doc: &MetadataDoc) -> bool {
    stored_document(store, key, doc).await.is_some()
}

/// The object at `key` when it is exactly `doc` as this run wrote it.
async fn stored_document(store: &DynStore, key: &str, doc: &MetadataDoc) -> Option<ObjectInfo> {
    stored_bytes(store, key, &doc.to_json_bytes()).await
}

/// The object at `key` when its body is exactly `ours`.
async fn stored_bytes(store: &DynStore, key: &str, ours: &[u8]) -> Option<ObjectInfo> {
    let obj = store.get(key, ours.len() as u64).await.ok()?;
    (obj.body[..] == ours[..]).then_some(obj.info)
}

async fn holds_bytes(store: &DynStore, key: &str, ours: &[u8]) -> bool {
    stored_bytes(store, key, ours).await.is_some()
}

/// Writes a detection's candidates into `ImgTag.Candidates`, normalised
/// against the document's labels ([`normalize_candidates`]).
fn set_candidates(doc: &mut MetadataDoc, candidates: Vec<Candidate>, min_confidence: f32) {
    let kept = normalize_candidates(candidates, min_confidence, &doc.labels);
    if let Some(t) = doc.imgtag.as_mut() {
        t.set_candidates(&kept);
    }
}

/// A human correction of one image's labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewEdit {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// Labels marked as doubtful without removing them: the image then
    /// needs review.
    pub flag: Vec<String>,
    /// Confirm the image's headline label as it is (`--accept`, `a`).
    pub accept: bool,
    /// `(old, new)`: the label `old` is replaced by `new` (`--replace
    /// Feline=Cat`, a digit in the TUI); an image without `old` is skipped.
    pub replace: Vec<(String, String)>,
}

impl ReviewEdit {
    /// Parses `+Cat -Feline !Pet Dog`: `-` removes, `!` flags, `+` or
    /// nothing adds. Names with spaces use `_` (`+Tabby_Cat`) or quotes
    /// (`+"Tabby Cat"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut edit = ReviewEdit::default();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            if matches!(first, '-' | '+' | '!') {
                chars.next();
            }
            let name = if chars.next_if_eq(&'"').is_some() {
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break quoted,
                        Some(c) => quoted.push(c),
                        None => return Err("unterminated quote".into()),
                    }
                }
            } else {
                let mut s = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    s.push(if c == '_' { ' ' } else { c });
                }
                s
            };
            let list = match first {
                '-' => &mut edit.remove,
                '!' => &mut edit.flag,
                _ => &mut edit.add,
            };
            list.push(name.trim().to_string());
        }
        edit.validate()?;
        Ok(edit)
    }

    /// Parses `--replace Feline=Cat`.
    pub fn parse_replace(text: &str) -> Result<(String, String), String> {
        match text.split_once('=') {
            Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
                Ok((old.trim().to_string(), new.trim().to_string()))
            }
            _ => Err(format!("{text:?}: write OLD=NEW, as Feline=Cat")),
        }
    }

    /// Names must be non-empty and printable; an edit must change something.
    pub fn validate(&self) -> Result<(), String> {
        let replaced = self.replace.iter().flat_map(|(o, n)| [o, n]);
        let names = self
            .add
            .iter()
            .chain(&self.remove)
            .chain(&self.flag)
            .chain(replaced);
        for name in names {
            if name.trim().is_empty() {
                return Err("empty label name".into());
            }
            if name.chars().any(crate::sanitize::is_unsafe) {
                return Err("label names cannot contain control characters".into());
            }
        }
        if self.add.is_empty()
            && self.remove.is_empty()
            && self.flag.is_empty()
            && self.replace.is_empty()
            && !self.accept
        {
            return Err(
                "nothing to change: type +Label to add, -Label to remove, !Label to flag".into(),
            );
        }
        Ok(())
    }
}

/// Merges an edit into a review: adding a label cancels an earlier
/// removal of it and the other way round; confirming one clears its flag.
/// `replace` and `accept` come resolved against the document
/// ([`resolve_edit`]).
fn merge_review(mut review: Review, edit: &Resolved, now: String, by: &str) -> Review {
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
        review.confirmed.retain(|c| !same(&c.name, name));
        if !review.removed.iter().any(|r| same(r, name)) {
            review.removed.push(name.clone());
        }
    }
    for name in &edit.flag {
        if !review.flagged.iter().any(|f| same(f, name)) {
            review.flagged.push(name.clone());
        }
    }
    if let Some((name, detector_confidence)) = &edit.confirm {
        review.flagged.retain(|f| !same(f, name));
        review.removed.retain(|r| !same(r, name));
        if !review.is_confirmed(name) {
            review.confirmed.push(Confirmed {
                name: name.clone(),
                detector_confidence: *detector_confidence,
                confirmed_at: Some(now.clone()),
                confirmed_by: Some(by.to_string()),
                extra: Default::default(),
            });
        }
    }
    review.reviewed_at = Some(now);
    review.reviewed_by = Some(by.to_string());
    review
}

/// An edit made concrete for one document: what to add, remove and flag,
/// and the label to confirm with the detector's confidence for it.
#[derive(Debug, Default)]
struct Resolved {
    add: Vec<String>,
    remove: Vec<String>,
    flag: Vec<String>,
    confirm: Option<(String, Option<f32>)>,
}

/// Resolves `replace` and `accept` against the document: a replacement
/// needs the old label there, an accept needs a headline. The reason is
/// why the image is skipped.
fn resolve_edit(edit: &ReviewEdit, doc: &MetadataDoc) -> Result<Resolved, String> {
    let mut r = Resolved {
        add: edit.add.clone(),
        remove: edit.remove.clone(),
        flag: edit.flag.clone(),
        confirm: None,
    };
    let has = |name: &str| doc.labels.iter().any(|l| l.name.eq_ignore_ascii_case(name));
    for (old, new) in &edit.replace {
        if !has(old) {
            return Err(format!("no label {old:?} to replace"));
        }
        r.remove.push(old.clone());
        r.add.push(new.clone());
    }
    if edit.accept {
        let h = doc.headline().ok_or("no headline label to accept")?;
        let human = doc
            .review()
            .is_some_and(|rv| rv.added.iter().any(|a| a.eq_ignore_ascii_case(&h.name)));
        let detector_confidence = (!human).then_some(h.confidence);
        r.confirm = Some((h.name.clone(), detector_confidence));
    }
    Ok(r)
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
    edit_review_undoable(store, key, edit, opts).await.0
}

/// What a review write replaced: enough to take it back ([`undo_review`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewUndo {
    pub image_key: String,
    pub metadata_key: String,
    /// The document as it was before the write, byte for byte.
    pub before: Bytes,
    /// The ETag the write left: the undo's If-Match.
    pub after_etag: String,
}

/// [`edit_review`], and what the write replaced when it was made.
pub async fn edit_review_undoable(
    store: &DynStore,
    key: &str,
    edit: &ReviewEdit,
    opts: &TagOptions,
) -> (Outcome, Option<ReviewUndo>) {
    match review_steps(store, key, edit, opts).await {
        Ok(done) => done,
        Err(outcome) => (outcome, None),
    }
}

/// Takes a review write back: the document as it was, written only if
/// it is still what that write left (If-Match); a document changed since
/// is a `Conflict`, left alone.
pub async fn undo_review(store: &DynStore, undo: &ReviewUndo) -> Outcome {
    let condition = PutCondition::IfMatch(undo.after_etag.clone());
    let put = store
        .put(&undo.metadata_key, undo.before.clone(), condition)
        .await;
    // An earlier try whose reply was lost may have landed: a document that
    // is already the one from before is undone, not a conflict to the
    // operator who pressed `u` again.
    let put = match put {
        Err(e)
            if (matches!(e, StorageError::Conflict { .. }) || e.is_transient())
                && holds_bytes(store, &undo.metadata_key, &undo.before).await =>
        {
            Ok(String::new())
        }
        put => put,
    };
    match put {
        Ok(_) => {
            let doc = parse_metadata(&undo.before).ok().map(|p| p.doc);
            Outcome::Tagged {
                metadata_key: undo.metadata_key.clone(),
                labels: doc.as_ref().map_or(0, |d| d.labels.len()),
                headline: doc
                    .as_ref()
                    .and_then(|d| d.headline())
                    .map(|l| (l.name.clone(), l.confidence)),
            }
        }
        Err(StorageError::Conflict { .. }) => Outcome::Conflict {
            metadata_key: undo.metadata_key.clone(),
        },
        Err(e) => storage_outcome(e),
    }
}

fn skipped(reason: impl Into<String>) -> Outcome {
    Outcome::Skipped {
        reason: reason.into(),
    }
}

async fn review_steps(
    store: &DynStore,
    key: &str,
    edit: &ReviewEdit,
    opts: &TagOptions,
) -> Result<(Outcome, Option<ReviewUndo>), Outcome> {
    canonical_key(key, &opts.layout)?;
    let found = match find_metadata(store, &opts.layout, key, opts.metadata_key.as_deref())
        .await
        .map_err(storage_outcome)?
    {
        Lookup::Found(f) => f,
        Lookup::Absent { taken: Some(t) } => return Err(skipped(t.reason())),
        Lookup::Absent { taken: None } => {
            return Err(skipped("no metadata yet: tag the image first"));
        }
    };
    let condition = if_match(&found.info)?;
    // Never `None`: unreadable documents are refused when not replacing.
    let Some(ParsedMetadata { mut doc, .. }) = rewritable(&found.key, found.read, false)? else {
        return Err(skipped("metadata cannot be read; re-tag the image first"));
    };
    if doc.error().is_some() {
        return Err(skipped("the image failed to tag; nothing to review"));
    }
    let now = crate::clock::now_rfc3339();
    let info = match doc.imgtag.take() {
        Some(t) => t,
        None => adopt(store, key),
    };
    let resolved = resolve_edit(edit, &doc).map_err(skipped)?;
    let review = merge_review(
        info.review.clone().unwrap_or_default(),
        &resolved,
        now,
        &opts.tagged_by,
    );
    doc.labels = apply_review(std::mem::take(&mut doc.labels), Some(&review));
    doc.imgtag = Some(ImgTagInfo {
        review: Some(review),
        ..info
    });
    let (mut outcome, mut etag) = put_document_etag(store, &found.key, &doc, condition).await;
    // A write whose every reply was lost may have landed: then the edit is
    // made (and can be undone), not "retry", which would send the operator
    // to make it again over their own.
    if matches!(outcome, Outcome::Retry { .. })
        && let Some(stored) = stored_document(store, &found.key, &doc).await
    {
        outcome = written(&found.key, &doc);
        // An empty ETag would make an undo's If-Match mean "any".
        etag = stored
            .etag
            .map(String::from)
            .filter(|e| !normalize_etag(e).is_empty());
    }
    let undo = etag.map(|after_etag| ReviewUndo {
        image_key: key.to_string(),
        metadata_key: found.key.clone(),
        before: found.body.clone(),
        after_etag,
    });
    Ok((outcome, undo))
}

/// The If-Match condition for rewriting an object: never an empty ETag,
/// which some servers would take as "any".
fn if_match(info: &ObjectInfo) -> Result<PutCondition, Outcome> {
    match info.etag.as_deref().map(str::trim) {
        Some(e) if !normalize_etag(e).is_empty() => Ok(PutCondition::IfMatch(e.to_string())),
        _ => Err(skipped(format!(
            "the store gave no ETag for {:?}: not rewriting it blind",
            info.key
        ))),
    }
}

/// imgtag's block for a document another writer made (the seed's bare
/// shape), so that a review can be kept in it. Only what is known: the
/// image it is for (so no other image's path rewrites it), never how it
/// was tagged. No ETag either: the labels may describe an older version
/// of the image, so staleness cannot be told and is not claimed.
fn adopt(store: &DynStore, key: &str) -> ImgTagInfo {
    ImgTagInfo {
        extra: Default::default(),
        schema_version: SCHEMA_VERSION,
        source: SourceRef {
            bucket: store.bucket_name().into(),
            key: key.into(),
            etag: None,
            size: None,
        },
        detector: None,
        min_confidence: None,
        max_labels: None,
        tagged_at: None,
        tagged_by: None,
        review: None,
        error: None,
        features: Vec::new(),
        settings: None,
    }
}

/// Writes a document under its condition: the one place a document is
/// put, so every writer reports the same outcomes.
async fn put_document(
    store: &DynStore,
    meta_key: &str,
    doc: &MetadataDoc,
    condition: PutCondition,
) -> Outcome {
    put_document_etag(store, meta_key, doc, condition).await.0
}

/// What writing `doc` at `meta_key` did: a recorded failure or labels.
fn written(meta_key: &str, doc: &MetadataDoc) -> Outcome {
    match doc.error() {
        Some(e) => Outcome::Failed {
            metadata_key: meta_key.into(),
            code: e.code.clone(),
            message: e.message.clone(),
        },
        None => Outcome::Tagged {
            metadata_key: meta_key.into(),
            labels: doc.labels.len(),
            headline: doc.headline().map(|l| (l.name.clone(), l.confidence)),
        },
    }
}

/// [`put_document`], and the ETag the write left (when it was made).
async fn put_document_etag(
    store: &DynStore,
    meta_key: &str,
    doc: &MetadataDoc,
    condition: PutCondition,
) -> (Outcome, Option<String>) {
    let body = Bytes::from(doc.to_json_bytes());
    let etag = match store.put(meta_key, body, condition).await {
        Ok(etag) => etag,
        Err(StorageError::Conflict { .. }) => {
            let conflict = Outcome::Conflict {
                metadata_key: meta_key.into(),
            };
            return (conflict, None);
        }
        Err(e) => return (storage_outcome(e), None),
    };
    let outcome = written(meta_key, doc);
    // An empty ETag would make an undo's If-Match mean "any": no undo then.
    let etag = Some(etag).filter(|e| !normalize_etag(e).is_empty());
    (outcome, etag)
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
            &plain(&e),
            "t".into(),
            "imgtag",
        );
        assert_eq!(r.added, vec!["Cat", "Dog", "Tabby Cat"]);
        assert_eq!(r.removed, vec!["Feline", "Pet Shop"]);
        assert_eq!(r.reviewed_at.as_deref(), Some("t"));
        assert_eq!(r.reviewed_by.as_deref(), Some("imgtag"));
        // Flags keep the label and mark it; adding it again confirms it.
        let f = ReviewEdit::parse("!Pet !\"Pet Shop\"").unwrap();
        assert_eq!(f.flag, vec!["Pet", "Pet Shop"]);
        let r = merge_review(r, &plain(&f), "u".into(), "imgtag-tui");
        assert_eq!(r.flagged, vec!["Pet", "Pet Shop"]);
        let r = merge_review(
            r,
            &plain(&ReviewEdit::parse("+pet").unwrap()),
            "v".into(),
            "imgtag",
        );
        assert_eq!(r.flagged, vec!["Pet Shop"]);
        assert!(ReviewEdit::parse("!").is_err());
    }

    fn plain(e: &ReviewEdit) -> Resolved {
        Resolved {
            add: e.add.clone(),
            remove: e.remove.clone(),
            flag: e.flag.clone(),
            confirm: None,
        }
    }

    /// The seed's weak cat: accept confirms `Feline` with what the detector
    /// said; a replacement needs the old label; a confirmed label reads at
    /// 100 and a removal takes the confirmation back.
    #[test]
    fn accept_and_replace_resolve_against_the_document() {
        let doc: MetadataDoc = serde_json::from_str(
            r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},
            {"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#,
        )
        .unwrap();
        let accept = ReviewEdit {
            accept: true,
            ..Default::default()
        };
        assert!(accept.validate().is_ok());
        let r = resolve_edit(&accept, &doc).unwrap();
        assert_eq!(r.confirm, Some(("Feline".to_string(), Some(65.3))));
        let review = merge_review(Review::default(), &r, "t".into(), "imgtag-tui");
        let c = &review.confirmed[0];
        assert_eq!(
            (c.confirmed_by.as_deref(), c.confirmed_at.as_deref()),
            (Some("imgtag-tui"), Some("t"))
        );
        let labels = apply_review(doc.labels.clone(), Some(&review));
        assert_eq!(
            (labels[0].name.as_str(), labels[0].confidence),
            ("Feline", 100.0)
        );

        let swap = ReviewEdit {
            replace: vec![ReviewEdit::parse_replace("feline=Cat").unwrap()],
            ..Default::default()
        };
        let r = resolve_edit(&swap, &doc).unwrap();
        assert_eq!(
            (r.remove.as_slice(), r.add.as_slice()),
            (&["feline".to_string()][..], &["Cat".to_string()][..])
        );
        let review = merge_review(review, &r, "u".into(), "imgtag");
        assert!(
            review.confirmed.is_empty(),
            "removing Feline takes its confirmation back"
        );
        let missing = ReviewEdit {
            replace: vec![("Dog".into(), "Wolf".into())],
            ..Default::default()
        };
        assert!(resolve_edit(&missing, &doc).unwrap_err().contains("Dog"));
        assert!(ReviewEdit::parse_replace("Feline").is_err());
        assert!(ReviewEdit::parse_replace("=Cat").is_err());
    }
}
