//! The automated path's event handling, independent of the Lambda runtime:
//! S3 event notifications and S3 Batch Operations invocations, decoded and
//! run through the same pipeline as the CLI. The `imgtag-lambda` binary
//! (cargo feature `lambda`) only reads [`LambdaConfig`] from the
//! environment and feeds each invocation to [`handle_invocation`].

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{self, DetectorKind};
use crate::contract::{DEFAULT_MIN_CONFIDENCE, LabelFilters, Layout, is_folder_placeholder};
use crate::detection::text::TextDetection;
use crate::detection::{
    DetectFailure, DetectInput, DetectParams, Detection, Detector, DynDetector, Features,
};
use crate::pipeline::{Outcome, TagOptions, tag};
use crate::storage::{DynStore, Layer, Object, ObjectInfo, S3Store, StorageError};

/// `ImgTag.TaggedBy` for documents the Lambda handler writes.
pub(crate) const TAGGED_BY: &str = "imgtag-lambda";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LambdaError {
    #[error("key {0:?} is not valid percent-encoded UTF-8")]
    BadKey(String),
    #[error("bucket ARN {0:?} is not an S3 bucket ARN")]
    BadArn(String),
    #[error("environment variable {var}: {message}")]
    Config { var: &'static str, message: String },
    #[error("unrecognised event: {0}")]
    BadEvent(String),
}

/// The handler's settings, read once at cold start from environment
/// variables. An invalid value fails the cold start instead of tagging
/// with a setting nobody asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaConfig {
    pub layout: Layout,
    pub min_confidence: f32,
    pub max_labels: Option<u32>,
    pub detector: DetectorKind,
    /// Path-style S3 addressing, for S3-compatible endpoints set with
    /// `AWS_ENDPOINT_URL_S3` (tests, the local emulator).
    pub path_style: bool,
    /// The buckets whose events and tasks the function acts on.
    pub buckets: AllowedBuckets,
    /// Images the function would have to decode are refused above this
    /// many pixels (`IMGTAG_MAX_MEGAPIXELS`), so that the decoder's needs
    /// fit the function's memory; `None` leaves the decoder's own limit.
    pub max_pixels: Option<u64>,
    /// DetectLabels `Features` (`IMGTAG_FEATURES`).
    pub features: Features,
    /// DetectLabels `Settings.GeneralLabels` (`IMGTAG_INCLUDE_LABELS`,
    /// `IMGTAG_EXCLUDE_LABELS`, `IMGTAG_INCLUDE_CATEGORIES`,
    /// `IMGTAG_EXCLUDE_CATEGORIES`).
    pub filters: LabelFilters,
    /// When the local detector runs its text model
    /// (`IMGTAG_TEXT_DETECTION`: auto, always, never).
    pub text_detection: TextDetection,
}

/// The decoder's own ceiling ([`crate::imaging::DecodeLimits`]), which
/// `IMGTAG_MAX_MEGAPIXELS` can only lower.
pub const MAX_MEGAPIXELS: f64 = 50.0;

/// Which buckets the function trusts. Anyone who can configure a
/// notification or a Batch Operations job on another bucket could
/// otherwise have the function read and write there with its role.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedBuckets {
    /// `IMGTAG_BUCKETS=*`: any bucket (the role's policy is then the only
    /// limit).
    Any,
    /// `IMGTAG_BUCKETS=a,b`: these buckets only.
    Only(Vec<String>),
}

impl AllowedBuckets {
    /// Parses `*` or a comma-separated list of bucket names.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim() == "*" {
            return Ok(AllowedBuckets::Any);
        }
        let names: Vec<String> = value
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        let bad = |n: &&String| {
            // Legacy us-east-1 names may hold capitals and `_`.
            !n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        };
        match names.iter().find(bad) {
            _ if names.is_empty() => Err("names no bucket".into()),
            Some(n) => Err(format!("{n:?} is not a bucket name (use * alone for any)")),
            None => Ok(AllowedBuckets::Only(names)),
        }
    }

    pub fn allows(&self, bucket: &str) -> bool {
        match self {
            AllowedBuckets::Any => true,
            AllowedBuckets::Only(names) => names.iter().any(|n| n == bucket),
        }
    }

    /// Builds an allow-list from names (tests, embedding).
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        AllowedBuckets::Only(names.into_iter().map(Into::into).collect())
    }
}

/// The claim an invocation takes on its image: a little longer than the
/// function's timeout (120 s in deploy/template.yaml), so a duplicate
/// event is told to try again while the first is alive, and the retry of
/// an invocation that timed out (a minute or more later) finds it over.
pub const CLAIM_LEASE: std::time::Duration = std::time::Duration::from_secs(150);

/// Everything an invocation is handled with: the pipeline's options and
/// the buckets the function trusts.
#[derive(Debug, Clone)]
pub struct HandlerOptions {
    pub tag: TagOptions,
    pub buckets: AllowedBuckets,
}

impl LambdaConfig {
    /// Reads `IMGTAG_BUCKETS` (required), `IMGTAG_MIN_CONFIDENCE`,
    /// `IMGTAG_MAX_LABELS`, `IMGTAG_UPLOADS_PREFIX`,
    /// `IMGTAG_METADATA_PREFIX`, `IMGTAG_DETECTOR`,
    /// `IMGTAG_MAX_MEGAPIXELS`, `IMGTAG_PATH_STYLE`, `IMGTAG_FEATURES`,
    /// `IMGTAG_TEXT_DETECTION` and the label filters
    /// (`IMGTAG_INCLUDE_LABELS`, ...) from the process environment.
    pub fn from_env() -> Result<Self, LambdaError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Same as [`from_env`](Self::from_env) over any lookup. Empty values
    /// count as unset, so a template can pass an empty parameter.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, LambdaError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // The same checks as the command line's flags (`config`).
        let min_confidence = var_of(&get, "IMGTAG_MIN_CONFIDENCE", config::parse_confidence)?
            .unwrap_or(DEFAULT_MIN_CONFIDENCE);
        let max_labels = var_of(&get, "IMGTAG_MAX_LABELS", config::parse_max_labels)?;
        let uploads = get("IMGTAG_UPLOADS_PREFIX").unwrap_or_else(|| Layout::UPLOADS.into());
        let metadata = get("IMGTAG_METADATA_PREFIX").unwrap_or_else(|| Layout::METADATA.into());
        let layout = Layout::new(&uploads, &metadata).map_err(|e| LambdaError::Config {
            var: "IMGTAG_UPLOADS_PREFIX/IMGTAG_METADATA_PREFIX",
            message: e.to_string(),
        })?;
        let detector = var_of(&get, "IMGTAG_DETECTOR", config::parse_detector)?
            .unwrap_or(DetectorKind::Rekognition);
        let path_style = var_of(&get, "IMGTAG_PATH_STYLE", config::parse_switch)?.unwrap_or(false);
        let buckets = buckets_var(get("IMGTAG_BUCKETS"))?;
        let max_pixels = max_pixels_var(get("IMGTAG_MAX_MEGAPIXELS"))?;
        let features = var_of(&get, "IMGTAG_FEATURES", Features::parse_list)?.unwrap_or_default();
        let filters = filters_vars(&get)?;
        let text_detection = var_of(&get, "IMGTAG_TEXT_DETECTION", config::parse_text_detection)?
            .unwrap_or_default();
        Ok(LambdaConfig {
            layout,
            min_confidence,
            max_labels,
            detector,
            path_style,
            buckets,
            max_pixels,
            features,
            filters,
            text_detection,
        })
    }

    /// The pipeline options every invocation uses. One attempt per
    /// detection, and the detector's client makes one call per attempt:
    /// Lambda's asynchronous retry (S3 events) and Batch Operations'
    /// `TemporaryFailure` retry are the only retry layer, so an image costs
    /// at most as many calls as the event is delivered.
    pub fn tag_options(&self) -> TagOptions {
        let mut opts = TagOptions::new(self.layout.clone(), TAGGED_BY);
        opts.min_confidence = self.min_confidence;
        opts.max_labels = self.max_labels;
        opts.features = self.features;
        opts.filters = self.filters.clone();
        opts.text_detection = self.text_detection;
        opts.attempts = 1;
        opts.claim_lease = Some(CLAIM_LEASE);
        opts
    }

    pub fn handler_options(&self) -> HandlerOptions {
        HandlerOptions {
            tag: self.tag_options(),
            buckets: self.buckets.clone(),
        }
    }

    /// The detector with this configuration's pixel bound applied.
    pub fn bound_detector(&self, inner: DynDetector) -> DynDetector {
        match self.max_pixels {
            Some(max_pixels) => PixelBound::wrap(inner, max_pixels),
            None => inner,
        }
    }
}

/// A variable read by `parse`, its message naming the variable.
fn var_of<T>(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, LambdaError> {
    get(name)
        .map(|v| parse(&v))
        .transpose()
        .map_err(|message| LambdaError::Config { var: name, message })
}

/// `IMGTAG_BUCKETS`, required: a function that silently trusts every
/// bucket is the unsafe default; `*` says so explicitly.
fn buckets_var(value: Option<String>) -> Result<AllowedBuckets, LambdaError> {
    match value {
        None => Err("is required: the bucket(s) to tag, comma-separated, or * for any".into()),
        Some(v) => AllowedBuckets::parse(&v).map_err(|m| format!("{v:?} {m}")),
    }
    .map_err(|message| LambdaError::Config {
        var: "IMGTAG_BUCKETS",
        message,
    })
}

/// `IMGTAG_MAX_MEGAPIXELS`: a bound below the decoder's own, in pixels.
fn max_pixels_var(value: Option<String>) -> Result<Option<u64>, LambdaError> {
    let Some(v) = value else { return Ok(None) };
    match v.parse::<f64>() {
        Ok(mp) if mp > 0.0 && mp <= MAX_MEGAPIXELS => Ok(Some((mp * 1e6) as u64)),
        _ => Err(LambdaError::Config {
            var: "IMGTAG_MAX_MEGAPIXELS",
            message: format!(
                "{v:?} is not a number of megapixels above 0 and at most {MAX_MEGAPIXELS}"
            ),
        }),
    }
}

/// Refuses, as a permanent `ImageTooLarge`, images given as bytes whose
/// header declares more pixels than the bound, before anything decodes
/// them: the function records an error document instead of running out of
/// memory. Images Rekognition reads from S3 itself are not decoded here and
/// pass through.
pub(crate) struct PixelBound {
    inner: DynDetector,
    max_pixels: u64,
}

impl PixelBound {
    pub fn wrap(inner: DynDetector, max_pixels: u64) -> DynDetector {
        std::sync::Arc::new(PixelBound { inner, max_pixels })
    }
}

#[async_trait::async_trait]
impl Detector for PixelBound {
    fn kind(&self) -> crate::detection::DetectorKind {
        self.inner.kind()
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn model_version(&self) -> Option<&str> {
        self.inner.model_version()
    }
    fn applies_filters(&self) -> bool {
        self.inner.applies_filters()
    }
    fn reads_s3(&self) -> bool {
        self.inner.reads_s3()
    }
    fn accepts_s3_object(&self, header: &[u8], size: u64) -> bool {
        self.inner.accepts_s3_object(header, size)
    }
    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure> {
        if let DetectInput::Bytes(bytes) = &input
            && let Ok((w, h)) = crate::imaging::dimensions(bytes)
            && u64::from(w) * u64::from(h) > self.max_pixels
        {
            return Err(DetectFailure::permanent(
                "ImageTooLarge",
                format!(
                    "{w}x{h} is {:.1} megapixels, over this function's limit of {:.1} \
                     (IMGTAG_MAX_MEGAPIXELS)",
                    (u64::from(w) * u64::from(h)) as f64 / 1e6,
                    self.max_pixels as f64 / 1e6
                ),
            ));
        }
        self.inner.detect(input, params).await
    }
}

/// The label filters from their comma-separated variables.
fn filters_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<LabelFilters, LambdaError> {
    let list = |var| -> Vec<String> {
        get(var)
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let filters = LabelFilters {
        label_inclusion_filters: list("IMGTAG_INCLUDE_LABELS"),
        label_exclusion_filters: list("IMGTAG_EXCLUDE_LABELS"),
        label_category_inclusion_filters: list("IMGTAG_INCLUDE_CATEGORIES"),
        label_category_exclusion_filters: list("IMGTAG_EXCLUDE_CATEGORIES"),
    };
    filters.validate().map_err(|message| LambdaError::Config {
        var: "IMGTAG_INCLUDE_LABELS/IMGTAG_EXCLUDE_LABELS/IMGTAG_INCLUDE_CATEGORIES/\
                  IMGTAG_EXCLUDE_CATEGORIES",
        message,
    })?;
    Ok(filters)
}

/// S3 event keys are form-encoded (see [`crate::contract::decode_form_key`]).
pub fn decode_event_key(raw: &str) -> Result<String, LambdaError> {
    crate::contract::decode_form_key(raw).ok_or_else(|| LambdaError::BadKey(raw.to_string()))
}

/// The parts of an S3 event notification imgtag reads.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Event {
    #[serde(rename = "Records", default)]
    pub records: Vec<S3EventRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3EventRecord {
    #[serde(default)]
    pub event_name: String,
    pub s3: S3Entity,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Object {
    pub key: String,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordResult {
    pub bucket: String,
    pub key: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How the handler reaches the buckets an invocation names.
#[async_trait::async_trait]
pub trait Buckets: Send + Sync {
    /// The store for a bucket the function trusts.
    fn store(&self, bucket: &str) -> DynStore;
    /// The version id of the object's current version, for Batch
    /// Operations tasks that name a version. The default cannot tell.
    async fn current_version(&self, _bucket: &str, _key: &str) -> VersionLookup {
        VersionLookup::Unsupported
    }
}

/// Any `Fn(&str) -> DynStore` opens buckets (without version lookups).
impl<F> Buckets for F
where
    F: Fn(&str) -> DynStore + Send + Sync,
{
    fn store(&self, bucket: &str) -> DynStore {
        self(bucket)
    }
}

/// What [`Buckets::current_version`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionLookup {
    /// The current version's id; `None` for an object in a bucket that was
    /// never versioned (S3 calls that version `null`).
    Current(Option<String>),
    /// Deleted, or not readable by the function (403 without ListBucket).
    Gone,
    /// Throttling, 5xx, network: worth retrying.
    Temporary(String),
    /// Anything else.
    Failed(String),
    /// This way of reaching buckets cannot tell.
    Unsupported,
}

/// The buckets as the deployed function sees them: one shared SDK client,
/// each bucket wrapped in [`WithoutListBucket`] because the role has no
/// `s3:ListBucket`, versions from `HeadObject`.
pub struct S3Buckets {
    client: aws_sdk_s3::Client,
    layout: Layout,
}

impl S3Buckets {
    pub fn new(client: aws_sdk_s3::Client, layout: &Layout) -> Self {
        S3Buckets {
            client,
            layout: layout.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Buckets for S3Buckets {
    fn store(&self, bucket: &str) -> DynStore {
        WithoutListBucket::wrap(
            std::sync::Arc::new(S3Store::from_client(self.client.clone(), bucket)),
            &self.layout,
        )
    }

    async fn current_version(&self, bucket: &str, key: &str) -> VersionLookup {
        use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        let err = match head {
            Ok(out) => return VersionLookup::Current(out.version_id().map(str::to_string)),
            Err(e) => e,
        };
        let message = crate::storage::error_chain(&err);
        match &err {
            SdkError::ServiceError(se) => match (se.raw().status().as_u16(), se.err().code()) {
                (403 | 404, _) => VersionLookup::Gone,
                (429 | 500.., _) | (_, Some("SlowDown" | "Throttling")) => {
                    VersionLookup::Temporary(message)
                }
                _ => VersionLookup::Failed(message),
            },
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => VersionLookup::Temporary(message),
            _ => VersionLookup::Failed(message),
        }
    }
}

/// Why a record or task naming `bucket` is refused, if it is.
fn untrusted(bucket: &str, allowed: &AllowedBuckets) -> Option<String> {
    if allowed.allows(bucket) {
        return None;
    }
    tracing::warn!(bucket, "bucket not in IMGTAG_BUCKETS; ignored");
    Some(format!(
        "bucket {bucket:?} is not one this function tags (IMGTAG_BUCKETS)"
    ))
}

/// The function has no `s3:ListBucket`, so an image deleted before its
/// event is handled reads as 403, which [`WithoutListBucket`] reports as
/// not found: say that it may also be unreadable.
fn explain_missing(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Skipped { reason } if reason.ends_with("does not exist") => Outcome::Skipped {
            reason: format!("{reason} or is not readable"),
        },
        o => o,
    }
}

/// Handles every record of an S3 event (not only the first). The bucket
/// comes from each record and must be one the function trusts; `buckets`
/// opens it. Records outside the uploads prefix, metadata keys and folder
/// placeholders are skipped, so a misconfigured trigger cannot make the
/// function tag its own output.
pub async fn handle_s3_event<B>(
    event: &S3Event,
    buckets: &B,
    detector: &DynDetector,
    opts: &HandlerOptions,
) -> Vec<RecordResult>
where
    B: Buckets + ?Sized,
{
    let layout = &opts.tag.layout;
    let mut out = Vec::with_capacity(event.records.len());
    for rec in &event.records {
        let bucket = rec.s3.bucket.name.clone();
        let skipped = |reason: String| Outcome::Skipped { reason };
        let key = decode_event_key(&rec.s3.object.key);
        let refusal = untrusted(&bucket, &opts.buckets);
        let (key, outcome) = match (key, refusal) {
            (Err(e), _) => (rec.s3.object.key.clone(), skipped(e.to_string())),
            (Ok(key), Some(why)) => (key, skipped(why)),
            (Ok(key), None)
                if !rec.event_name.is_empty() && !rec.event_name.starts_with("ObjectCreated") =>
            {
                let why = format!("event {} is not an object creation", rec.event_name);
                (key, skipped(why))
            }
            (Ok(key), None) if is_folder_placeholder(&key) || layout.image_rest(&key).is_none() => {
                let why = format!("not an image under {}", layout.uploads_prefix());
                (key, skipped(why))
            }
            (Ok(key), None) => {
                let outcome = tag(&buckets.store(&bucket), detector, &key, &opts.tag).await;
                (key, explain_missing(outcome))
            }
        };
        log_outcome(&bucket, &key, &outcome);
        out.push(RecordResult {
            bucket,
            key,
            outcome,
        });
    }
    out
}

/// An S3 Batch Operations invocation (schema 1.0 or 2.0).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEvent {
    pub invocation_schema_version: String,
    pub invocation_id: String,
    pub tasks: Vec<BatchTask>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchTask {
    pub task_id: String,
    pub s3_key: String,
    /// Schema 1.0 names the bucket by ARN; 2.0 by name (`s3Bucket`).
    #[serde(default)]
    pub s3_bucket_arn: Option<String>,
    #[serde(default)]
    pub s3_bucket: Option<String>,
    /// Set when the manifest names object versions; `null` otherwise.
    #[serde(default)]
    pub s3_version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub invocation_schema_version: String,
    pub treat_missing_keys_as: String,
    pub invocation_id: String,
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub task_id: String,
    pub result_code: String,
    pub result_string: String,
}

fn bucket_of(task: &BatchTask) -> Result<String, LambdaError> {
    if let Some(b) = &task.s3_bucket {
        return Ok(b.clone());
    }
    let arn = task.s3_bucket_arn.clone().unwrap_or_default();
    arn.strip_prefix("arn:aws:s3:::")
        .or_else(|| arn.rsplit_once(":::").map(|(_, b)| b))
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .ok_or(LambdaError::BadArn(arn))
}

/// Handles a Batch Operations invocation: one result per task. Throttling
/// and 5xx become `TemporaryFailure` (S3 retries them); images that can
/// never be tagged, buckets the function does not trust and versions that
/// are no longer current, `PermanentFailure`.
pub async fn handle_batch<B>(
    event: &BatchEvent,
    buckets: &B,
    detector: &DynDetector,
    opts: &HandlerOptions,
) -> BatchResponse
where
    B: Buckets + ?Sized,
{
    let mut results = Vec::with_capacity(event.tasks.len());
    for task in &event.tasks {
        let (code, text) = run_task(task, buckets, detector, opts).await;
        // Result strings are shown in the job report; keep them short.
        let text: String = text.chars().take(200).collect();
        tracing::info!(
            task_id = %task.task_id,
            result_code = code,
            result = %text,
            "batch task"
        );
        results.push(BatchResult {
            task_id: task.task_id.clone(),
            result_code: code.into(),
            result_string: text,
        });
    }
    BatchResponse {
        invocation_schema_version: event.invocation_schema_version.clone(),
        treat_missing_keys_as: "PermanentFailure".into(),
        invocation_id: event.invocation_id.clone(),
        results,
    }
}

const PERMANENT: &str = "PermanentFailure";
const TEMPORARY: &str = "TemporaryFailure";

/// One task's result code and string.
async fn run_task<B>(
    task: &BatchTask,
    buckets: &B,
    detector: &DynDetector,
    opts: &HandlerOptions,
) -> (&'static str, String)
where
    B: Buckets + ?Sized,
{
    let (bucket, key) = match (bucket_of(task), decode_event_key(&task.s3_key)) {
        (Err(e), _) | (_, Err(e)) => return (PERMANENT, e.to_string()),
        (Ok(bucket), Ok(key)) => (bucket, key),
    };
    if let Some(why) = untrusted(&bucket, &opts.buckets) {
        return (PERMANENT, why);
    }
    let layout = &opts.tag.layout;
    if is_folder_placeholder(&key) || layout.image_rest(&key).is_none() {
        return (
            PERMANENT,
            format!("not an image under {}", layout.uploads_prefix()),
        );
    }
    if let Some(version) = task.s3_version_id.as_deref().filter(|v| !v.is_empty())
        && let Err(refusal) = check_version(buckets, &bucket, &key, version).await
    {
        return refusal;
    }
    let outcome = explain_missing(tag(&buckets.store(&bucket), detector, &key, &opts.tag).await);
    log_outcome(&bucket, &key, &outcome);
    match outcome {
        Outcome::Tagged {
            metadata_key,
            labels,
            ..
        } => ("Succeeded", format!("{labels} labels -> {metadata_key}")),
        Outcome::Unchanged { metadata_key } => ("Succeeded", format!("unchanged {metadata_key}")),
        Outcome::Failed { code, .. } => (PERMANENT, code),
        Outcome::Skipped { reason } => (PERMANENT, reason),
        Outcome::Conflict { metadata_key } => {
            (TEMPORARY, format!("{metadata_key} changed while tagging"))
        }
        Outcome::Retry { message } => (TEMPORARY, message),
        Outcome::Fatal { message } => (PERMANENT, message),
    }
}

/// A task that names a version is only tagged if that version is still
/// the current one: the pipeline reads (and `ImgTag.Source` describes)
/// the current object, so tagging it for an older version's task would
/// label the wrong image. The version that replaced it had its own event.
async fn check_version<B>(
    buckets: &B,
    bucket: &str,
    key: &str,
    version: &str,
) -> Result<(), (&'static str, String)>
where
    B: Buckets + ?Sized,
{
    match buckets.current_version(bucket, key).await {
        VersionLookup::Current(current) => {
            let current = current.unwrap_or_else(|| "null".into());
            if current == version {
                return Ok(());
            }
            tracing::info!(bucket, key, version, current = %current, "old version not tagged");
            Err((
                PERMANENT,
                format!("version {version} is no longer current; not tagging an old version"),
            ))
        }
        VersionLookup::Gone => Err((
            PERMANENT,
            format!("{key:?} does not exist or is not readable"),
        )),
        VersionLookup::Temporary(message) => Err((TEMPORARY, message)),
        VersionLookup::Failed(message) => Err((PERMANENT, message)),
        VersionLookup::Unsupported => Err((
            PERMANENT,
            format!("cannot check that version {version} is current"),
        )),
    }
}

/// A bucket seen through the function's role, which has no `s3:ListBucket`
/// (the operator's alone): S3 then answers 403, not 404, for an object that
/// does not exist. Denied reads under the metadata and uploads prefixes
/// count as "not found":
/// - a metadata object that does not exist yet: that cannot clobber
///   anything, as the pipeline then writes create-only (`If-None-Match: *`),
///   which S3 refuses if an object is there after all, and a real
///   permission problem surfaces on the write;
/// - an image deleted before its event is handled: there is nothing to tag,
///   and retrying cannot bring it back. An image that exists but that the
///   role cannot read (a misconfigured policy) is skipped the same way; the
///   handler says "does not exist or is not readable".
pub struct WithoutListBucket {
    inner: DynStore,
    prefixes: [String; 2],
}

impl WithoutListBucket {
    pub fn wrap(inner: DynStore, layout: &Layout) -> DynStore {
        std::sync::Arc::new(WithoutListBucket {
            inner,
            prefixes: [
                layout.metadata_prefix().to_string(),
                layout.uploads_prefix().to_string(),
            ],
        })
    }

    fn absent_if_denied<T>(
        &self,
        key: &str,
        r: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match r {
            Err(StorageError::AccessDenied { .. })
                if self.prefixes.iter().any(|p| key.starts_with(p.as_str())) =>
            {
                Err(StorageError::NotFound { key: key.into() })
            }
            r => r,
        }
    }
}

#[async_trait::async_trait]
impl Layer for WithoutListBucket {
    fn inner(&self) -> &DynStore {
        &self.inner
    }
    async fn get(&self, key: &str, limit: u64) -> Result<Object, StorageError> {
        self.absent_if_denied(key, self.inner.get(key, limit).await)
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.absent_if_denied(key, self.inner.get_range(key, range).await)
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, StorageError> {
        self.absent_if_denied(key, self.inner.head(key).await)
    }
}

/// One structured log line per image: key and outcome as fields, so that
/// CloudWatch Logs Insights can filter on them.
fn log_outcome(bucket: &str, key: &str, outcome: &Outcome) {
    let name = outcome.name();
    match outcome {
        Outcome::Tagged {
            metadata_key,
            labels,
            headline,
        } => tracing::info!(
            bucket,
            key,
            outcome = name,
            metadata_key = %metadata_key,
            labels,
            headline = headline.as_ref().map(|b| b.0.as_str()),
            "image"
        ),
        Outcome::Unchanged { metadata_key } | Outcome::Conflict { metadata_key } => {
            tracing::info!(bucket, key, outcome = name, metadata_key = %metadata_key, "image")
        }
        Outcome::Failed {
            metadata_key,
            code,
            message,
        } => tracing::info!(
            bucket, key, outcome = name, metadata_key = %metadata_key, code = %code,
            message = %message, "image"
        ),
        Outcome::Skipped { reason } => {
            tracing::info!(bucket, key, outcome = name, reason = %reason, "image")
        }
        Outcome::Retry { message } | Outcome::Fatal { message } => {
            tracing::warn!(bucket, key, outcome = name, message = %message, "image")
        }
    }
}

/// One invocation, of either kind the function is subscribed to.
#[derive(Debug, Clone)]
pub(crate) enum Invocation {
    /// An S3 event notification (`Records`).
    Notification(S3Event),
    /// An S3 Batch Operations task list (`invocationSchemaVersion`).
    Batch(BatchEvent),
    /// The `s3:TestEvent` S3 sends when a notification is configured.
    TestEvent,
}

/// Tells the event kinds apart by their top-level fields.
pub(crate) fn parse_invocation(event: serde_json::Value) -> Result<Invocation, LambdaError> {
    let bad = |e: serde_json::Error| LambdaError::BadEvent(e.to_string());
    if event.get("Records").is_some() {
        return serde_json::from_value(event)
            .map(Invocation::Notification)
            .map_err(bad);
    }
    if event.get("invocationSchemaVersion").is_some() {
        return serde_json::from_value(event)
            .map(Invocation::Batch)
            .map_err(bad);
    }
    if event.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Invocation::TestEvent);
    }
    let fields: Vec<String> = event
        .as_object()
        .map(|o| o.keys().take(5).cloned().collect())
        .unwrap_or_default();
    Err(LambdaError::BadEvent(format!(
        "neither an S3 notification (Records) nor a Batch Operations invocation \
         (invocationSchemaVersion); top-level fields: {fields:?}"
    )))
}

/// The reply to an S3 notification: what happened to each record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NotificationReply {
    pub records: Vec<RecordResult>,
}

/// Why an invocation is reported as failed to the Lambda service.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    Event(#[from] LambdaError),
    /// Some records could not be tagged now (throttling, 5xx, a concurrent
    /// write) or at all with this configuration (access denied). The error
    /// makes Lambda's asynchronous retry redeliver the whole event; the
    /// records that did succeed come back `unchanged` without another
    /// detector call.
    #[error("{failed} of {total} records not tagged: {first}")]
    Incomplete {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// Handles one invocation of the `imgtag-lambda` function.
///
/// - S3 notification: every record, in order, one image at a time. Returns
///   the per-record results, or [`InvocationError::Incomplete`] if any
///   record must be retried.
/// - Batch Operations: one result per task, always `Ok` (the job retries
///   `TemporaryFailure` tasks itself).
pub async fn handle_invocation<B>(
    event: serde_json::Value,
    buckets: &B,
    detector: &DynDetector,
    opts: &HandlerOptions,
) -> Result<serde_json::Value, InvocationError>
where
    B: Buckets + ?Sized,
{
    let value = match parse_invocation(event)? {
        Invocation::TestEvent => {
            tracing::info!("s3:TestEvent ignored");
            serde_json::json!({ "records": [] })
        }
        Invocation::Batch(batch) => {
            let reply = handle_batch(&batch, buckets, detector, opts).await;
            serde_json::to_value(reply).expect("plain structs serialize")
        }
        Invocation::Notification(event) => {
            let records = handle_s3_event(&event, buckets, detector, opts).await;
            let failed: Vec<&RecordResult> = records
                .iter()
                .filter(|r| {
                    matches!(
                        r.outcome,
                        Outcome::Retry { .. } | Outcome::Conflict { .. } | Outcome::Fatal { .. }
                    )
                })
                .collect();
            if let Some(first) = failed.first() {
                return Err(InvocationError::Incomplete {
                    failed: failed.len(),
                    total: records.len(),
                    first: format!("{} ({})", first.key, first.outcome.name()),
                });
            }
            serde_json::to_value(NotificationReply { records }).expect("plain structs serialize")
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_decode_plus_first() {
        assert_eq!(
            decode_event_key("uploads/my+cat.jpg").unwrap(),
            "uploads/my cat.jpg"
        );
        assert_eq!(
            decode_event_key("uploads/a%2Bb.jpg").unwrap(),
            "uploads/a+b.jpg"
        );
        assert_eq!(
            decode_event_key("uploads/caf%C3%A9.jpg").unwrap(),
            "uploads/café.jpg"
        );
        assert_eq!(
            decode_event_key("uploads/100%25.jpg").unwrap(),
            "uploads/100%.jpg"
        );
        assert!(decode_event_key("uploads/bad%FF.jpg").is_err());
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn features_and_filters_come_from_the_environment() {
        let c = LambdaConfig::from_vars(vars(&[("IMGTAG_BUCKETS", "b")])).unwrap();
        assert_eq!(c.features, Features::default());
        assert!(c.filters.is_empty());
        let c = LambdaConfig::from_vars(vars(&[
            ("IMGTAG_BUCKETS", "b"),
            ("IMGTAG_FEATURES", "GENERAL_LABELS, image_properties"),
            ("IMGTAG_INCLUDE_LABELS", "Cat, Dog"),
            ("IMGTAG_EXCLUDE_CATEGORIES", "Weapons and Military"),
        ]))
        .unwrap();
        let opts = c.tag_options();
        assert_eq!(opts.features, Features::ALL);
        assert_eq!(opts.filters.label_inclusion_filters, ["Cat", "Dog"]);
        assert_eq!(
            opts.filters.label_category_exclusion_filters,
            ["Weapons and Military"]
        );
        for (var, value) in [
            ("IMGTAG_FEATURES", "IMAGE_PROPERTIES"),
            ("IMGTAG_FEATURES", "FACES"),
            ("IMGTAG_EXCLUDE_LABELS", &"x".repeat(51)),
        ] {
            let err = LambdaConfig::from_vars(vars(&[("IMGTAG_BUCKETS", "b"), (var, value)]))
                .unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn text_detection_comes_from_the_environment() {
        let c = LambdaConfig::from_vars(vars(&[("IMGTAG_BUCKETS", "b")])).unwrap();
        assert_eq!(c.text_detection, TextDetection::Auto);
        assert_eq!(c.tag_options().params().text_detection, TextDetection::Auto);
        for (value, want) in [
            ("never", TextDetection::Never),
            (" Always ", TextDetection::Always),
            ("", TextDetection::Auto),
        ] {
            let c = LambdaConfig::from_vars(vars(&[
                ("IMGTAG_BUCKETS", "b"),
                ("IMGTAG_TEXT_DETECTION", value),
            ]))
            .unwrap();
            assert_eq!(c.tag_options().params().text_detection, want, "{value:?}");
        }
        let err = LambdaConfig::from_vars(vars(&[
            ("IMGTAG_BUCKETS", "b"),
            ("IMGTAG_TEXT_DETECTION", "sometimes"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("IMGTAG_TEXT_DETECTION"), "{err}");
    }

    #[test]
    fn config_defaults_and_overrides() {
        let c = LambdaConfig::from_vars(vars(&[("IMGTAG_BUCKETS", "imgtag-bucket")])).unwrap();
        assert_eq!(c.buckets, AllowedBuckets::only(["imgtag-bucket"]));
        assert_eq!(c.max_pixels, None);
        assert_eq!(c.min_confidence, 55.0);
        assert_eq!(c.max_labels, None);
        assert_eq!(c.detector, DetectorKind::Rekognition);
        assert_eq!(c.layout.uploads_prefix(), "uploads/");
        assert_eq!(c.layout.metadata_prefix(), "metadata/");
        assert!(!c.path_style);
        let opts = c.tag_options();
        assert_eq!(opts.tagged_by, "imgtag-lambda");
        // One retry layer: Lambda's (or Batch Operations'), not the
        // pipeline's on top.
        assert_eq!(opts.attempts, 1);
        assert_eq!(c.handler_options().buckets, c.buckets);

        let c = LambdaConfig::from_vars(vars(&[
            ("IMGTAG_MIN_CONFIDENCE", "72.5"),
            ("IMGTAG_MAX_LABELS", "10"),
            ("IMGTAG_UPLOADS_PREFIX", "in/"),
            ("IMGTAG_METADATA_PREFIX", "out/"),
            ("IMGTAG_DETECTOR", "local"),
            ("IMGTAG_PATH_STYLE", "true"),
            ("IMGTAG_BUCKETS", " a-bucket , b.bucket,Legacy_Bucket "),
            ("IMGTAG_MAX_MEGAPIXELS", "12.5"),
        ]))
        .unwrap();
        assert_eq!(
            c.buckets,
            AllowedBuckets::only(["a-bucket", "b.bucket", "Legacy_Bucket"])
        );
        assert!(c.buckets.allows("b.bucket") && !c.buckets.allows("c-bucket"));
        assert_eq!(c.max_pixels, Some(12_500_000));
        assert_eq!(c.min_confidence, 72.5);
        assert_eq!(c.max_labels, Some(10));
        assert_eq!(c.detector, DetectorKind::Local);
        assert_eq!(c.layout.uploads_prefix(), "in/");
        assert_eq!(c.layout.metadata_prefix(), "out/");
        assert!(c.path_style);
        let opts = c.tag_options();
        assert_eq!((opts.min_confidence, opts.max_labels), (72.5, Some(10)));

        // An empty template parameter means "not set"; `*` trusts any
        // bucket, but only when said explicitly.
        let c = LambdaConfig::from_vars(vars(&[
            ("IMGTAG_MAX_LABELS", ""),
            ("IMGTAG_MAX_MEGAPIXELS", ""),
            ("IMGTAG_BUCKETS", "*"),
        ]))
        .unwrap();
        assert_eq!(c.max_labels, None);
        assert_eq!(c.max_pixels, None);
        assert_eq!(c.buckets, AllowedBuckets::Any);
        assert!(c.buckets.allows("anything"));
    }

    #[test]
    fn invalid_config_names_the_variable() {
        for (var, value) in [
            ("IMGTAG_MIN_CONFIDENCE", "high"),
            ("IMGTAG_MIN_CONFIDENCE", "101"),
            ("IMGTAG_MAX_LABELS", "0"),
            ("IMGTAG_MAX_LABELS", "-3"),
            ("IMGTAG_DETECTOR", "openai"),
            ("IMGTAG_PATH_STYLE", "yes please"),
            ("IMGTAG_BUCKETS", "a,*"),
            ("IMGTAG_BUCKETS", "arn:aws:s3:::a"),
            ("IMGTAG_BUCKETS", ","),
            ("IMGTAG_MAX_MEGAPIXELS", "0"),
            ("IMGTAG_MAX_MEGAPIXELS", "51"),
            ("IMGTAG_MAX_MEGAPIXELS", "lots"),
        ] {
            let mut given = vec![(var, value)];
            if var != "IMGTAG_BUCKETS" {
                given.push(("IMGTAG_BUCKETS", "b"));
            }
            let err = LambdaConfig::from_vars(vars(&given)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(value), "{text}");
        }
        // Unset, the allow-list refuses the cold start instead of trusting
        // every bucket.
        let err = LambdaConfig::from_vars(vars(&[])).unwrap_err();
        assert!(err.to_string().contains("IMGTAG_BUCKETS"), "{err}");
        // Overlapping prefixes would let the function trigger itself.
        let err = LambdaConfig::from_vars(vars(&[
            ("IMGTAG_BUCKETS", "b"),
            ("IMGTAG_UPLOADS_PREFIX", "data/"),
            ("IMGTAG_METADATA_PREFIX", "data/"),
        ]))
        .unwrap_err();
        assert!(matches!(err, LambdaError::Config { .. }), "{err}");
    }

    #[test]
    fn invocations_are_told_apart() {
        let n = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "uploads/a.jpg"}}}]});
        assert!(matches!(
            parse_invocation(n).unwrap(),
            Invocation::Notification(e) if e.records.len() == 1
        ));
        let b = serde_json::json!({"invocationSchemaVersion": "1.0", "invocationId": "i",
            "job": {"id": "j"}, "tasks": []});
        assert!(matches!(parse_invocation(b).unwrap(), Invocation::Batch(_)));
        let t = serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
            "Bucket": "b"});
        assert!(matches!(
            parse_invocation(t).unwrap(),
            Invocation::TestEvent
        ));
        let err = parse_invocation(serde_json::json!({"detail-type": "x"})).unwrap_err();
        assert!(err.to_string().contains("detail-type"), "{err}");
        let err = parse_invocation(serde_json::json!({"Records": "nope"})).unwrap_err();
        assert!(matches!(err, LambdaError::BadEvent(_)));
    }
}
