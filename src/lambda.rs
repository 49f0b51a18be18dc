//! The automated path's event handling, independent of the Lambda runtime:
//! S3 event notifications and S3 Batch Operations invocations, decoded and
//! run through the same pipeline as the CLI.

use serde::{Deserialize, Serialize};

use crate::contract::is_folder_placeholder;
use crate::detection::DynDetector;
use crate::pipeline::{Outcome, TagOptions, tag};
use crate::storage::DynStore;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LambdaError {
    #[error("key {0:?} is not valid percent-encoded UTF-8")]
    BadKey(String),
    #[error("bucket ARN {0:?} is not an S3 bucket ARN")]
    BadArn(String),
}

/// S3 event keys are form-encoded: `+` is a space and is decoded before
/// the percent escapes (`%2B` is a literal `+`).
pub fn decode_event_key(raw: &str) -> Result<String, LambdaError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| LambdaError::BadKey(raw.to_string()))
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
        let key = match decode_event_key(&rec.s3.object.key) {
            Ok(k) => k,
            Err(e) => {
                out.push(RecordResult {
                    bucket,
                    key: rec.s3.object.key.clone(),
                    outcome: Outcome::Skipped {
                        reason: e.to_string(),
                    },
                });
                continue;
            }
        };
        if !rec.event_name.is_empty() && !rec.event_name.starts_with("ObjectCreated") {
            out.push(RecordResult {
                bucket,
                key,
                outcome: Outcome::Skipped {
                    reason: format!("event {} is not an object creation", rec.event_name),
                },
            });
            continue;
        }
        if is_folder_placeholder(&key) || opts.layout.image_rest(&key).is_none() {
            out.push(RecordResult {
                bucket,
                key,
                outcome: Outcome::Skipped {
                    reason: format!("not an image under {}", opts.layout.uploads_prefix()),
                },
            });
            continue;
        }
        let store = store_for(&bucket);
        let outcome = tag(&store, detector, &key, opts).await;
        tracing::info!(bucket = %bucket, key = %key, outcome = ?outcome, "record");
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
}
