//! The automated path's event handling, independent of the Lambda runtime:
//! S3 event notifications and S3 Batch Operations invocations, decoded and
//! run through the same pipeline as the CLI. The `imgtag-lambda` binary
//! (cargo feature `lambda`) only reads [`LambdaConfig`] from the
//! environment and feeds each invocation to [`handle_invocation`].

use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::config::DetectorKind;
use crate::contract::{DEFAULT_MIN_CONFIDENCE, Layout, is_folder_placeholder};
use crate::detection::DynDetector;
use crate::pipeline::{Outcome, TagOptions, tag};
use crate::storage::{DynStore, Object, ObjectInfo, PutCondition, StorageError, Store, StoreKind};

/// `ImgTag.TaggedBy` for documents the Lambda handler writes.
pub const TAGGED_BY: &str = "imgtag-lambda";

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
}

impl LambdaConfig {
    /// Reads `IMGTAG_MIN_CONFIDENCE`, `IMGTAG_MAX_LABELS`,
    /// `IMGTAG_UPLOADS_PREFIX`, `IMGTAG_METADATA_PREFIX`, `IMGTAG_DETECTOR`
    /// and `IMGTAG_PATH_STYLE` from the process environment.
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
        let min_confidence = match get("IMGTAG_MIN_CONFIDENCE") {
            None => DEFAULT_MIN_CONFIDENCE,
            Some(v) => match v.parse::<f32>() {
                Ok(x) if (0.0..=100.0).contains(&x) => x,
                _ => {
                    return Err(LambdaError::Config {
                        var: "IMGTAG_MIN_CONFIDENCE",
                        message: format!("{v:?} is not a number from 0 to 100"),
                    });
                }
            },
        };
        let max_labels = match get("IMGTAG_MAX_LABELS") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(LambdaError::Config {
                        var: "IMGTAG_MAX_LABELS",
                        message: format!("{v:?} is not a whole number of at least 1"),
                    });
                }
            },
        };
        let uploads = get("IMGTAG_UPLOADS_PREFIX").unwrap_or_else(|| "uploads/".into());
        let metadata = get("IMGTAG_METADATA_PREFIX").unwrap_or_else(|| "metadata/".into());
        let layout = Layout::new(&uploads, &metadata).map_err(|e| LambdaError::Config {
            var: "IMGTAG_UPLOADS_PREFIX/IMGTAG_METADATA_PREFIX",
            message: e.to_string(),
        })?;
        let detector = match get("IMGTAG_DETECTOR").as_deref() {
            None | Some("rekognition") => DetectorKind::Rekognition,
            Some("local") => DetectorKind::Local,
            Some(v) => {
                return Err(LambdaError::Config {
                    var: "IMGTAG_DETECTOR",
                    message: format!("{v:?} is not rekognition or local"),
                });
            }
        };
        let path_style = match get("IMGTAG_PATH_STYLE").as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(v) => {
                return Err(LambdaError::Config {
                    var: "IMGTAG_PATH_STYLE",
                    message: format!("{v:?} is not true or false"),
                });
            }
        };
        Ok(LambdaConfig {
            layout,
            min_confidence,
            max_labels,
            detector,
            path_style,
        })
    }

    /// The pipeline options every invocation uses.
    pub fn tag_options(&self) -> TagOptions {
        let mut opts = TagOptions::new(self.layout.clone(), TAGGED_BY);
        opts.min_confidence = self.min_confidence;
        opts.max_labels = self.max_labels;
        opts
    }
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

/// Handles every record of an S3 event (not only the first). The bucket
/// comes from each record; `store_for` opens it. Records outside the
/// uploads prefix, metadata keys and folder placeholders are skipped, so a
/// misconfigured trigger cannot make the function tag its own output.
pub async fn handle_s3_event<F>(
    event: &S3Event,
    store_for: F,
    detector: &DynDetector,
    opts: &TagOptions,
) -> Vec<RecordResult>
where
    F: Fn(&str) -> DynStore,
{
    let mut out = Vec::with_capacity(event.records.len());
    for rec in &event.records {
        let bucket = rec.s3.bucket.name.clone();
        let skipped = |reason: String| Outcome::Skipped { reason };
        let (key, outcome) = match decode_event_key(&rec.s3.object.key) {
            Err(e) => (rec.s3.object.key.clone(), skipped(e.to_string())),
            Ok(key)
                if !rec.event_name.is_empty() && !rec.event_name.starts_with("ObjectCreated") =>
            {
                let why = format!("event {} is not an object creation", rec.event_name);
                (key, skipped(why))
            }
            Ok(key) if is_folder_placeholder(&key) || opts.layout.image_rest(&key).is_none() => {
                let why = format!("not an image under {}", opts.layout.uploads_prefix());
                (key, skipped(why))
            }
            Ok(key) => {
                let outcome = tag(&store_for(&bucket), detector, &key, opts).await;
                (key, outcome)
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
/// never be tagged, `PermanentFailure`.
pub async fn handle_batch<F>(
    event: &BatchEvent,
    store_for: F,
    detector: &DynDetector,
    opts: &TagOptions,
) -> BatchResponse
where
    F: Fn(&str) -> DynStore,
{
    let mut results = Vec::with_capacity(event.tasks.len());
    for task in &event.tasks {
        let (code, text) = match (bucket_of(task), decode_event_key(&task.s3_key)) {
            (Err(e), _) | (_, Err(e)) => ("PermanentFailure", e.to_string()),
            (Ok(bucket), Ok(key)) => {
                let outcome = tag(&store_for(&bucket), detector, &key, opts).await;
                log_outcome(&bucket, &key, &outcome);
                match outcome {
                    Outcome::Tagged {
                        metadata_key,
                        labels,
                        ..
                    } => ("Succeeded", format!("{labels} labels -> {metadata_key}")),
                    Outcome::Unchanged { metadata_key } => {
                        ("Succeeded", format!("unchanged {metadata_key}"))
                    }
                    Outcome::Failed { code, .. } => ("PermanentFailure", code),
                    Outcome::Skipped { reason } => ("PermanentFailure", reason),
                    Outcome::Conflict { metadata_key } => (
                        "TemporaryFailure",
                        format!("{metadata_key} changed while tagging"),
                    ),
                    Outcome::Retry { message } => ("TemporaryFailure", message),
                    Outcome::Fatal { message } => ("PermanentFailure", message),
                }
            }
        };
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

/// A bucket seen through the function's role, which has no `s3:ListBucket`
/// (the operator's alone): S3 then answers 403, not 404, for a metadata
/// object that does not exist yet. Denied reads under the metadata prefix
/// count as "not found". That cannot clobber anything: the pipeline then
/// writes create-only (`If-None-Match: *`), which S3 refuses if an object
/// is there after all, and a real permission problem surfaces on the write.
pub struct WithoutListBucket {
    inner: DynStore,
    metadata_prefix: String,
}

impl WithoutListBucket {
    pub fn wrap(inner: DynStore, layout: &Layout) -> DynStore {
        std::sync::Arc::new(WithoutListBucket {
            inner,
            metadata_prefix: layout.metadata_prefix().to_string(),
        })
    }

    fn absent_if_denied<T>(
        &self,
        key: &str,
        r: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match r {
            Err(StorageError::AccessDenied { .. }) if key.starts_with(&self.metadata_prefix) => {
                Err(StorageError::NotFound { key: key.into() })
            }
            r => r,
        }
    }
}

#[async_trait::async_trait]
impl Store for WithoutListBucket {
    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }
    fn bucket_name(&self) -> &str {
        self.inner.bucket_name()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>, StorageError>> {
        self.inner.list(prefix)
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
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<String, StorageError> {
        self.inner.put(key, body, condition).await
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
pub enum Invocation {
    /// An S3 event notification (`Records`).
    Notification(S3Event),
    /// An S3 Batch Operations task list (`invocationSchemaVersion`).
    Batch(BatchEvent),
    /// The `s3:TestEvent` S3 sends when a notification is configured.
    TestEvent,
}

/// Tells the event kinds apart by their top-level fields.
pub fn parse_invocation(event: serde_json::Value) -> Result<Invocation, LambdaError> {
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
pub struct NotificationReply {
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
pub async fn handle_invocation<F>(
    event: serde_json::Value,
    store_for: F,
    detector: &DynDetector,
    opts: &TagOptions,
) -> Result<serde_json::Value, InvocationError>
where
    F: Fn(&str) -> DynStore,
{
    let value = match parse_invocation(event)? {
        Invocation::TestEvent => {
            tracing::info!("s3:TestEvent ignored");
            serde_json::json!({ "records": [] })
        }
        Invocation::Batch(batch) => {
            let reply = handle_batch(&batch, store_for, detector, opts).await;
            serde_json::to_value(reply).expect("plain structs serialize")
        }
        Invocation::Notification(event) => {
            let records = handle_s3_event(&event, store_for, detector, opts).await;
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
    fn config_defaults_and_overrides() {
        let c = LambdaConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(c.min_confidence, 55.0);
        assert_eq!(c.max_labels, None);
        assert_eq!(c.detector, DetectorKind::Rekognition);
        assert_eq!(c.layout.uploads_prefix(), "uploads/");
        assert_eq!(c.layout.metadata_prefix(), "metadata/");
        assert!(!c.path_style);
        let opts = c.tag_options();
        assert_eq!(opts.tagged_by, "imgtag-lambda");

        let c = LambdaConfig::from_vars(vars(&[
            ("IMGTAG_MIN_CONFIDENCE", "72.5"),
            ("IMGTAG_MAX_LABELS", "10"),
            ("IMGTAG_UPLOADS_PREFIX", "in/"),
            ("IMGTAG_METADATA_PREFIX", "out/"),
            ("IMGTAG_DETECTOR", "local"),
            ("IMGTAG_PATH_STYLE", "true"),
        ]))
        .unwrap();
        assert_eq!(c.min_confidence, 72.5);
        assert_eq!(c.max_labels, Some(10));
        assert_eq!(c.detector, DetectorKind::Local);
        assert_eq!(c.layout.uploads_prefix(), "in/");
        assert_eq!(c.layout.metadata_prefix(), "out/");
        assert!(c.path_style);
        let opts = c.tag_options();
        assert_eq!((opts.min_confidence, opts.max_labels), (72.5, Some(10)));

        // An empty template parameter means "not set".
        let c = LambdaConfig::from_vars(vars(&[("IMGTAG_MAX_LABELS", "")])).unwrap();
        assert_eq!(c.max_labels, None);
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
        ] {
            let err = LambdaConfig::from_vars(vars(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(value), "{text}");
        }
        // Overlapping prefixes would let the function trigger itself.
        let err = LambdaConfig::from_vars(vars(&[
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
