//! `imgtag backfill` against the in-process S3 server: which images go in
//! the Batch Operations manifest, how their keys are encoded, where the
//! manifest goes, and the job the command prints.

use crate::common;
use common::bin::imgtag;

use std::sync::Arc;

use bytes::Bytes;
use common::s3mem::{self, MemS3};
use imgtag::backfill;
use imgtag::contract::{Label, Layout, SourceRef};
use imgtag::pipeline::{TagOptions, build_document};
use imgtag::status::Status;
use imgtag::storage::{DynStore, S3Store};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");

/// A metadata document recording `etag` as the image's ETag.
fn doc_for(key: &str, etag: &str) -> Bytes {
    let source = SourceRef {
        bucket: "backlog".into(),
        key: key.into(),
        etag: Some(format!("\"{etag}\"")),
        size: Some(CHELSEA.len() as u64),
    };
    let opts = TagOptions::new(Layout::default(), "test");
    let doc = build_document(
        source,
        "local",
        &opts,
        Ok((vec![Label::new("Cat", 91.0)], None)),
        None,
    );
    Bytes::from(doc.to_json_bytes())
}

/// A bucket with every kind of image a backfill must tell apart.
fn backlog_bucket() -> MemS3 {
    let mem = MemS3::new();
    mem.create_bucket("backlog");
    for key in [
        "uploads/a b.jpg",
        "uploads/x+y,z%.png",
        "uploads/caf\u{e9} \u{732b}.png",
        "uploads/tagged.png",
        "uploads/stale.png",
    ] {
        mem.insert("backlog", key, CHELSEA);
    }
    mem.insert("backlog", "uploads/2024/", Bytes::new());
    let etag = s3mem::md5_hex(CHELSEA);
    mem.insert(
        "backlog",
        "metadata/tagged.png.json",
        doc_for("uploads/tagged.png", &etag),
    );
    mem.insert(
        "backlog",
        "metadata/stale.png.json",
        doc_for("uploads/stale.png", "0123456789abcdef0123456789abcdef"),
    );
    mem.insert(
        "backlog",
        "metadata/orphan.png.json",
        doc_for("uploads/orphan.png", &etag),
    );
    mem
}

#[tokio::test]
async fn manifest_lists_untagged_and_stale_images_with_encoded_keys() {
    let mem = backlog_bucket();
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "backlog",
    ));
    let layout = Layout::default();
    let bucket = imgtag::bucket::Bucket::new(store.clone(), layout.clone(), 70.0.into());
    let keys = backfill::backlog(&bucket, &[Status::Untagged, Status::Stale])
        .await
        .unwrap();
    assert_eq!(
        keys,
        [
            "uploads/a b.jpg",
            "uploads/caf\u{e9} \u{732b}.png",
            "uploads/stale.png",
            "uploads/x+y,z%.png",
        ]
    );
    let only_untagged = backfill::backlog(&bucket, &[Status::Untagged])
        .await
        .unwrap();
    assert_eq!(only_untagged.len(), 3);

    let csv = backfill::manifest_csv("backlog", &keys);
    assert_eq!(
        csv,
        "backlog,uploads/a%20b.jpg\n\
         backlog,uploads/caf%C3%A9%20%E7%8C%AB.png\n\
         backlog,uploads/stale.png\n\
         backlog,uploads/x%2By%2Cz%25.png\n"
    );
    // What the function receives as s3Key decodes back to the real key.
    for (line, key) in csv.lines().zip(&keys) {
        let (_, encoded) = line.split_once(',').unwrap();
        assert_eq!(&imgtag::lambda::decode_event_key(encoded).unwrap(), key);
    }

    let manifest_key = "imgtag/manifests/test.csv";
    let etag = backfill::upload_manifest(&store, manifest_key, csv.clone())
        .await
        .unwrap();
    let stored = mem.object("backlog", manifest_key).unwrap();
    assert_eq!(stored.data, csv.as_bytes());
    assert_eq!(imgtag::contract::normalize_etag(&etag), stored.etag);
    // A manifest a job may be reading is never replaced.
    assert!(
        backfill::upload_manifest(&store, manifest_key, "other".into())
            .await
            .is_err()
    );
    assert_eq!(mem.object("backlog", manifest_key).unwrap().data, csv);
}

#[tokio::test]
async fn the_command_uploads_the_manifest_and_prints_the_job() {
    let mem = backlog_bucket();
    let server = s3mem::serve(mem.clone()).await;
    let endpoint = server.endpoint();
    let home = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        let home = home.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            imgtag(&home, &refs)
        })
    };
    let base = [
        "backfill",
        "--bucket",
        "backlog",
        "--endpoint-url",
        &endpoint,
        "--path-style",
    ]
    .map(String::from)
    .to_vec();

    let mut args = base.clone();
    args.extend(
        [
            "--manifest-key",
            "imgtag/manifests/run1.csv",
            "--function-arn",
            "arn:aws:lambda:us-east-1:111122223333:function:imgtag-tagger",
            "--role-arn",
            "arn:aws:iam::111122223333:role/imgtag-batch",
        ]
        .map(String::from),
    );
    let out = run(args).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = mem.object("backlog", "imgtag/manifests/run1.csv").unwrap();
    assert_eq!(
        String::from_utf8(manifest.data.to_vec())
            .unwrap()
            .lines()
            .count(),
        4
    );
    assert_eq!(job["AccountId"], "111122223333");
    assert_eq!(
        job["Operation"]["LambdaInvoke"]["FunctionArn"],
        "arn:aws:lambda:us-east-1:111122223333:function:imgtag-tagger"
    );
    assert_eq!(
        job["Operation"]["LambdaInvoke"]["InvocationSchemaVersion"],
        "2.0"
    );
    assert_eq!(
        job["RoleArn"],
        "arn:aws:iam::111122223333:role/imgtag-batch"
    );
    assert_eq!(
        job["Manifest"]["Spec"]["Format"],
        "S3BatchOperations_CSV_20180820"
    );
    assert_eq!(
        job["Manifest"]["Spec"]["Fields"],
        serde_json::json!(["Bucket", "Key"])
    );
    assert_eq!(
        job["Manifest"]["Location"]["ObjectArn"],
        "arn:aws:s3:::backlog/imgtag/manifests/run1.csv"
    );
    assert_eq!(job["Manifest"]["Location"]["ETag"], manifest.etag);
    assert_eq!(job["Report"]["Prefix"], "imgtag/reports");
    assert_eq!(job["ConfirmationRequired"], true);
    assert!(stderr.contains("aws s3control create-job"), "{stderr}");
    assert!(stderr.contains("4 images"), "{stderr}");

    // The manifest may not land where it would be tagged or audited.
    let mut args = base.clone();
    args.extend(["--manifest-key", "uploads/m.csv"].map(String::from));
    let out = run(args).await.unwrap();
    assert!(!out.status.success());
    assert!(mem.object("backlog", "uploads/m.csv").is_none());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the image and metadata"));

    // --out writes the manifest locally, --status narrows it.
    let file = home.path().join("manifest.csv");
    let mut args = base;
    args.extend(["--status", "stale", "--out", file.to_str().unwrap()].map(String::from));
    let out = run(args).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "backlog,uploads/stale.png\n"
    );
}

/// `--submit` sends the job that is printed (run with
/// `--features backfill-submit`; CI does).
#[cfg(feature = "backfill-submit")]
#[test]
fn submit_builds_the_printed_job() {
    use aws_sdk_s3control::types::{JobManifestFieldName, JobManifestFormat, JobReportScope};

    let conf = aws_sdk_s3control::Config::builder()
        .behavior_version(aws_sdk_s3control::config::BehaviorVersion::latest())
        .region(aws_sdk_s3control::config::Region::new("us-east-1"))
        .build();
    let client = aws_sdk_s3control::Client::from_conf(conf);
    let target = backfill::JobTarget {
        function_arn: Some("arn:aws:lambda:us-east-1:111122223333:function:imgtag-tagger".into()),
        role_arn: Some("arn:aws:iam::111122223333:role/imgtag-batch".into()),
        account_id: None,
        priority: 7,
    };
    let job = backfill::create_job_json(&target, "backlog", "imgtag/manifests/m.csv", "\"e1\"", 4);
    let req = backfill::submit::request(&client, &job).unwrap();
    let input = req.as_input();
    assert_eq!(input.get_account_id().as_deref(), Some("111122223333"));
    assert_eq!(input.get_priority(), &Some(7));
    assert_eq!(input.get_confirmation_required(), &Some(true));
    assert_eq!(
        input.get_role_arn().as_deref(),
        Some("arn:aws:iam::111122223333:role/imgtag-batch")
    );
    let lambda = input
        .get_operation()
        .as_ref()
        .unwrap()
        .lambda_invoke()
        .unwrap();
    assert_eq!(
        lambda.function_arn(),
        Some("arn:aws:lambda:us-east-1:111122223333:function:imgtag-tagger")
    );
    assert_eq!(lambda.invocation_schema_version(), Some("2.0"));
    let manifest = input.get_manifest().as_ref().unwrap();
    let spec = manifest.spec().unwrap();
    assert_eq!(
        spec.format(),
        &JobManifestFormat::S3BatchOperationsCsv20180820
    );
    assert_eq!(
        spec.fields(),
        [JobManifestFieldName::Bucket, JobManifestFieldName::Key]
    );
    let loc = manifest.location().unwrap();
    assert_eq!(
        loc.object_arn(),
        "arn:aws:s3:::backlog/imgtag/manifests/m.csv"
    );
    assert_eq!(loc.e_tag(), "e1");
    let report = input.get_report().as_ref().unwrap();
    assert_eq!(report.bucket(), Some("arn:aws:s3:::backlog"));
    assert_eq!(
        report.report_scope(),
        Some(&JobReportScope::FailedTasksOnly)
    );
    assert_eq!(
        input.get_client_request_token().as_deref(),
        job["ClientRequestToken"].as_str()
    );

    // Placeholders are never sent.
    let job = backfill::create_job_json(
        &backfill::JobTarget::default(),
        "backlog",
        "imgtag/manifests/m.csv",
        "e1",
        4,
    );
    let err = backfill::submit::request(&client, &job).unwrap_err();
    assert!(err.to_string().contains("--submit needs"), "{err}");
}

/// Without the feature, `--submit` says how to get the job created, and
/// uploads nothing.
#[cfg(not(feature = "backfill-submit"))]
#[tokio::test]
async fn submit_without_the_feature_is_a_clear_error() {
    let mem = backlog_bucket();
    let server = s3mem::serve(mem.clone()).await;
    let endpoint = server.endpoint();
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        imgtag(
            &home_path,
            &[
                "backfill",
                "--bucket",
                "backlog",
                "--endpoint-url",
                &endpoint,
                "--path-style",
                "--manifest-key",
                "imgtag/manifests/x.csv",
                "--submit",
            ],
        )
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("backfill-submit"), "{stderr}");
    assert!(mem.object("backlog", "imgtag/manifests/x.csv").is_none());
}
