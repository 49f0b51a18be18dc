//! `imgtag backfill`: the existing backlog at scale. Lists the images that
//! need tagging (untagged, stale, ...), writes them as an S3 Batch
//! Operations CSV manifest, and describes the job that invokes the
//! `imgtag-lambda` function on each of them.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use crate::catalog::{Filter, Selection};
use crate::contract::{Layout, normalize_etag};
use crate::status::Status;
use crate::storage::{DynStore, PutCondition, StorageError};

/// Where manifests go: outside the uploads and metadata prefixes, so they
/// trigger nothing and are never mistaken for images or metadata.
pub const MANIFEST_PREFIX: &str = "imgtag/manifests/";
/// Where the job writes its completion report.
pub const REPORT_PREFIX: &str = "imgtag/reports";

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("writing the manifest: {0}")]
    Storage(#[from] StorageError),
    #[error(
        "manifest key {key:?} is under {prefix:?}; put it outside the image and metadata prefixes"
    )]
    ManifestKey { key: String, prefix: String },
    #[error("{0}")]
    Usage(String),
    #[error("creating the Batch Operations job: {0}")]
    Submit(String),
}

/// Kept as they are in a manifest key: unreserved characters and `/`.
/// Everything else (space, `+`, `,`, `%`, non-ASCII, controls) is
/// percent-encoded, as Batch Operations CSV manifests require; the tasks
/// then carry the key in the same encoding, which
/// [`crate::lambda::decode_event_key`] undoes.
const MANIFEST_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub(crate) fn encode_manifest_key(key: &str) -> String {
    utf8_percent_encode(key, MANIFEST_KEY).to_string()
}

/// A `S3BatchOperations_CSV_20180820` manifest with the fields
/// `Bucket,Key`, one line per image.
pub fn manifest_csv(bucket: &str, keys: &[String]) -> String {
    let mut out = String::with_capacity(keys.len() * 48);
    for k in keys {
        out.push_str(bucket);
        out.push(',');
        out.push_str(&encode_manifest_key(k));
        out.push('\n');
    }
    out
}

/// The images a backfill covers, in key order.
pub async fn backlog(
    bucket: &crate::bucket::Bucket,
    statuses: &[Status],
) -> Result<Vec<String>, crate::bucket::BucketError> {
    let picked = bucket
        .select(&Selection::Matching(Filter::statuses(statuses.to_vec())))
        .await?;
    Ok(picked.into_iter().map(|s| s.key).collect())
}

/// The default manifest key: timestamped, so runs never overwrite each
/// other.
pub fn default_manifest_key(now: time::OffsetDateTime) -> String {
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "manifest".into());
    format!("{MANIFEST_PREFIX}backfill-{stamp}.csv")
}

/// Refuses manifest keys that the function or an audit would pick up.
pub fn check_manifest_key(key: &str, layout: &Layout) -> Result<(), BackfillError> {
    for prefix in [layout.uploads_prefix(), layout.metadata_prefix()] {
        if key.starts_with(prefix) {
            return Err(BackfillError::ManifestKey {
                key: key.into(),
                prefix: prefix.into(),
            });
        }
    }
    if key.is_empty() || key.ends_with('/') {
        return Err(BackfillError::Usage(format!(
            "manifest key {key:?} must name an object, not a folder"
        )));
    }
    Ok(())
}

/// Uploads a manifest (create-only: an existing manifest is never
/// replaced under a job that may be reading it). Returns its ETag.
pub async fn upload_manifest(
    store: &DynStore,
    key: &str,
    csv: String,
) -> Result<String, BackfillError> {
    Ok(store.put(key, csv.into(), PutCondition::CreateOnly).await?)
}

/// What the `CreateJob` request needs besides the manifest.
#[derive(Debug, Clone, Default)]
pub struct JobTarget {
    pub function_arn: Option<String>,
    pub role_arn: Option<String>,
    pub account_id: Option<String>,
    pub priority: i32,
}

impl JobTarget {
    /// The account: given, else the one in the function ARN
    /// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`).
    pub fn account(&self) -> Option<String> {
        self.account_id.clone().or_else(|| {
            self.function_arn
                .as_deref()
                .and_then(|a| a.split(':').nth(4))
                .filter(|a| !a.is_empty())
                .map(str::to_string)
        })
    }

    /// `aws`, `aws-cn`, `aws-us-gov`: taken from the function ARN.
    fn partition(&self) -> String {
        self.function_arn
            .as_deref()
            .and_then(|a| a.split(':').nth(1))
            .filter(|p| p.starts_with("aws"))
            .unwrap_or("aws")
            .to_string()
    }

    /// The values still to fill in, if any.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.function_arn.is_none() {
            m.push("--function-arn");
        }
        if self.role_arn.is_none() {
            m.push("--role-arn");
        }
        if self.account().is_none() {
            m.push("--account-id");
        }
        m
    }
}

/// The input of `aws s3control create-job --cli-input-json`: invoke the
/// function (schema 2.0) on every manifest line, report failed tasks.
/// Missing values are left as `<...>` placeholders.
pub fn create_job_json(
    target: &JobTarget,
    bucket: &str,
    manifest_key: &str,
    manifest_etag: &str,
    images: usize,
) -> serde_json::Value {
    let partition = target.partition();
    let etag = normalize_etag(manifest_etag);
    // The same manifest gives the same token: submitting twice makes one job.
    let token = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(format!("{bucket}/{manifest_key}#{etag}")))
    };
    json!({
        "AccountId": target.account().unwrap_or_else(|| "<ACCOUNT_ID>".into()),
        "ConfirmationRequired": true,
        "Operation": {
            "LambdaInvoke": {
                "FunctionArn": target.function_arn.clone().unwrap_or_else(|| "<FUNCTION_ARN>".into()),
                "InvocationSchemaVersion": "2.0",
                "UserArguments": {"source": "imgtag backfill"}
            }
        },
        "Manifest": {
            "Spec": {
                "Format": "S3BatchOperations_CSV_20180820",
                "Fields": ["Bucket", "Key"]
            },
            "Location": {
                "ObjectArn": format!("arn:{partition}:s3:::{bucket}/{manifest_key}"),
                "ETag": etag
            }
        },
        "Report": {
            "Bucket": format!("arn:{partition}:s3:::{bucket}"),
            "Prefix": REPORT_PREFIX,
            "Format": "Report_CSV_20180820",
            "Enabled": true,
            "ReportScope": "FailedTasksOnly"
        },
        "Priority": target.priority,
        "RoleArn": target.role_arn.clone().unwrap_or_else(|| "<BATCH_OPERATIONS_ROLE_ARN>".into()),
        "ClientRequestToken": token,
        "Description": format!("imgtag backfill: {images} images")
    })
}

/// `--submit`: the same job, created through S3 Control's `CreateJob`
/// (cargo feature `backfill-submit`).
#[cfg(feature = "backfill-submit")]
pub mod submit {
    use aws_sdk_s3control::operation::create_job::builders::CreateJobFluentBuilder;
    use aws_sdk_s3control::types::{
        JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
        JobOperation, JobReport, JobReportFormat, JobReportScope, LambdaInvokeOperation,
    };

    use super::BackfillError;

    fn field<'a>(job: &'a serde_json::Value, path: &[&str]) -> Result<&'a str, BackfillError> {
        let mut v = job;
        for p in path {
            v = &v[*p];
        }
        match v.as_str() {
            Some(s) if !s.starts_with('<') => Ok(s),
            _ => Err(BackfillError::Usage(format!(
                "--submit needs {} (pass --function-arn, --role-arn and --account-id)",
                path.join(".")
            ))),
        }
    }

    /// The `CreateJob` request for the JSON [`super::create_job_json`]
    /// prints, so that the printed job and the submitted one cannot differ.
    pub fn request(
        client: &aws_sdk_s3control::Client,
        job: &serde_json::Value,
    ) -> Result<CreateJobFluentBuilder, BackfillError> {
        let build = |e: aws_sdk_s3control::error::BuildError| BackfillError::Usage(e.to_string());
        let lambda = LambdaInvokeOperation::builder()
            .function_arn(field(job, &["Operation", "LambdaInvoke", "FunctionArn"])?)
            .invocation_schema_version(field(
                job,
                &["Operation", "LambdaInvoke", "InvocationSchemaVersion"],
            )?)
            .user_arguments("source", "imgtag backfill")
            .build();
        let manifest = JobManifest::builder()
            .spec(
                JobManifestSpec::builder()
                    .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                    .fields(JobManifestFieldName::Bucket)
                    .fields(JobManifestFieldName::Key)
                    .build()
                    .map_err(build)?,
            )
            .location(
                JobManifestLocation::builder()
                    .object_arn(field(job, &["Manifest", "Location", "ObjectArn"])?)
                    .e_tag(field(job, &["Manifest", "Location", "ETag"])?)
                    .build()
                    .map_err(build)?,
            )
            .build();
        let report = JobReport::builder()
            .bucket(field(job, &["Report", "Bucket"])?)
            .prefix(field(job, &["Report", "Prefix"])?)
            .format(JobReportFormat::ReportCsv20180820)
            .enabled(true)
            .report_scope(JobReportScope::FailedTasksOnly)
            .build();
        Ok(client
            .create_job()
            .account_id(field(job, &["AccountId"])?)
            .confirmation_required(job["ConfirmationRequired"].as_bool().unwrap_or(true))
            .operation(JobOperation::builder().lambda_invoke(lambda).build())
            .manifest(manifest)
            .report(report)
            .priority(job["Priority"].as_i64().unwrap_or(10) as i32)
            .role_arn(field(job, &["RoleArn"])?)
            .client_request_token(field(job, &["ClientRequestToken"])?)
            .description(field(job, &["Description"])?))
    }

    /// Creates the job; returns its id.
    pub async fn create_job(
        client: &aws_sdk_s3control::Client,
        job: &serde_json::Value,
    ) -> Result<String, BackfillError> {
        let out = request(client, job)?
            .send()
            .await
            .map_err(|e| BackfillError::Submit(crate::storage::error_chain(&e)))?;
        Ok(out.job_id().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_are_percent_encoded_and_round_trip() {
        assert_eq!(
            encode_manifest_key("uploads/my cat+1,2%.jpg"),
            "uploads/my%20cat%2B1%2C2%25.jpg"
        );
        assert_eq!(
            encode_manifest_key("uploads/caf\u{e9}.png"),
            "uploads/caf%C3%A9.png"
        );
        assert_eq!(encode_manifest_key("uploads/a\nb"), "uploads/a%0Ab");
        for key in ["uploads/my cat+1,2%.jpg", "uploads/\u{732b} \u{e9}+.png"] {
            let back = crate::lambda::decode_event_key(&encode_manifest_key(key)).unwrap();
            assert_eq!(back, key);
        }
        assert_eq!(
            manifest_csv("b", &["uploads/a b.jpg".into(), "uploads/c.png".into()]),
            "b,uploads/a%20b.jpg\nb,uploads/c.png\n"
        );
    }

    #[test]
    fn manifest_keys_stay_out_of_the_layout() {
        let layout = Layout::default();
        assert!(check_manifest_key("imgtag/manifests/x.csv", &layout).is_ok());
        assert!(check_manifest_key("uploads/x.csv", &layout).is_err());
        assert!(check_manifest_key("metadata/x.csv", &layout).is_err());
        assert!(check_manifest_key("imgtag/", &layout).is_err());
        let t = time::macros::datetime!(2026-11-24 10:00:05 UTC);
        assert_eq!(
            default_manifest_key(t),
            "imgtag/manifests/backfill-20261124T100005Z.csv"
        );
    }

    #[test]
    fn job_json_takes_account_and_partition_from_the_function() {
        let target = JobTarget {
            function_arn: Some("arn:aws-cn:lambda:cn-north-1:111122223333:function:t".into()),
            role_arn: Some("arn:aws-cn:iam::111122223333:role/r".into()),
            account_id: None,
            priority: 10,
        };
        assert!(target.missing().is_empty());
        let j = create_job_json(&target, "b", "imgtag/manifests/m.csv", "\"abc\"", 3);
        assert_eq!(j["AccountId"], "111122223333");
        assert_eq!(
            j["Manifest"]["Location"]["ObjectArn"],
            "arn:aws-cn:s3:::b/imgtag/manifests/m.csv"
        );
        assert_eq!(j["Manifest"]["Location"]["ETag"], "abc");
        assert_eq!(j["Report"]["Bucket"], "arn:aws-cn:s3:::b");
        assert_eq!(
            j["Operation"]["LambdaInvoke"]["InvocationSchemaVersion"],
            "2.0"
        );
        assert_eq!(j["ClientRequestToken"].as_str().unwrap().len(), 32);

        let none = JobTarget::default();
        assert_eq!(
            none.missing(),
            ["--function-arn", "--role-arn", "--account-id"]
        );
        let j = create_job_json(&none, "b", "k", "e", 0);
        assert_eq!(j["RoleArn"], "<BATCH_OPERATIONS_ROLE_ARN>");
    }
}
