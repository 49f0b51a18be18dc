//! The automated path's event handling with JSON fixtures shaped like real
//! S3 notifications and Batch Operations invocations, against the
//! in-process S3 server and the real local model.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::s3mem::{self, MemS3};
use imgtag::contract::{Layout, parse_metadata};
use imgtag::detection::{DynDetector, LocalDetector};
use imgtag::lambda::{BatchEvent, S3Event, handle_batch, handle_s3_event};
use imgtag::pipeline::{Outcome, TagOptions};
use imgtag::storage::{DynStore, PutCondition, S3Store};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");

fn record(bucket: &str, key: &str) -> String {
    format!(
        r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2026-11-24T10:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{{"s3SchemaVersion":"1.0","configurationId":"tag",
        "bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},
        "object":{{"key":"{key}","size":240512,"eTag":"x","sequencer":"0A1B"}}}}}}"#
    )
}

async fn setup() -> (common::s3mem::TestServer, DynStore, DynDetector) {
    let mem = MemS3::new();
    mem.create_bucket("events");
    let server = s3mem::serve(mem).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "events",
    ));
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    (server, store, det)
}

#[tokio::test]
async fn every_record_is_decoded_and_tagged_and_recursion_is_impossible() {
    let (_server, store, det) = setup().await;
    for key in [
        "uploads/my cat.jpg",
        "uploads/a+b.png",
        "uploads/caf\u{e9} \u{732b}.png",
    ] {
        store
            .put(key, Bytes::from_static(CHELSEA), PutCondition::None)
            .await
            .unwrap();
    }
    let records = [
        record("events", "uploads/my+cat.jpg"),
        record("events", "uploads/a%2Bb.png"),
        record("events", "uploads/caf%C3%A9+%E7%8C%AB.png"),
        record("events", "uploads/"),
        record("events", "metadata/my+cat.jpg.json"),
    ];
    let event: S3Event =
        serde_json::from_str(&format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap();
    let s = store.clone();
    let opts = TagOptions::new(Layout::default(), "imgtag-lambda");
    let results = handle_s3_event(
        &event,
        |b| {
            assert_eq!(b, "events", "the bucket comes from the record");
            s.clone()
        },
        &det,
        &opts,
    )
    .await;
    let got: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r.key.as_str(), matches!(r.outcome, Outcome::Tagged { .. })))
        .collect();
    assert_eq!(
        got,
        [
            ("uploads/my cat.jpg", true),
            ("uploads/a+b.png", true),
            ("uploads/caf\u{e9} \u{732b}.png", true),
            ("uploads/", false),
            ("metadata/my cat.jpg.json", false),
        ]
    );
    let doc = parse_metadata(
        &store
            .get("metadata/my cat.jpg.json", 1 << 20)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(doc.doc.imgtag.as_ref().unwrap().tagged_by, "imgtag-lambda");
    assert!(doc.doc.labels.iter().any(|l| l.name == "Cat"));
    // Nothing was written for the skipped records.
    assert!(
        store
            .head("metadata/metadata/my cat.jpg.json.json")
            .await
            .is_err()
    );

    // Redelivery: at-least-once events do not tag twice.
    let again = handle_s3_event(&event, |_| store.clone(), &det, &opts).await;
    assert!(
        matches!(again[0].outcome, Outcome::Unchanged { .. }),
        "{:?}",
        again[0]
    );
}

#[tokio::test]
async fn batch_operations_get_one_result_per_task() {
    let (_server, store, det) = setup().await;
    store
        .put(
            "uploads/old cat.png",
            Bytes::from_static(CHELSEA),
            PutCondition::None,
        )
        .await
        .unwrap();
    store
        .put(
            "uploads/notes.jpg",
            Bytes::from_static(b"text"),
            PutCondition::None,
        )
        .await
        .unwrap();
    let v1 = r#"{"invocationSchemaVersion":"1.0","invocationId":"inv-1","job":{"id":"job-1"},
      "tasks":[
        {"taskId":"t1","s3Key":"uploads/old+cat.png","s3VersionId":null,"s3BucketArn":"arn:aws:s3:::events"},
        {"taskId":"t2","s3Key":"uploads/notes.jpg","s3VersionId":null,"s3BucketArn":"arn:aws:s3:::events"},
        {"taskId":"t3","s3Key":"uploads/gone.jpg","s3VersionId":null,"s3BucketArn":"arn:aws:s3:::events"}]}"#;
    let event: BatchEvent = serde_json::from_str(v1).unwrap();
    let opts = TagOptions::new(Layout::default(), "imgtag-lambda");
    let resp = handle_batch(&event, |_| store.clone(), &det, &opts).await;
    assert_eq!(resp.invocation_id, "inv-1");
    assert_eq!(resp.invocation_schema_version, "1.0");
    let codes: Vec<(&str, &str)> = resp
        .results
        .iter()
        .map(|r| (r.task_id.as_str(), r.result_code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("t1", "Succeeded"),
            ("t2", "PermanentFailure"),
            ("t3", "PermanentFailure")
        ]
    );
    assert!(resp.results[1].result_string.contains("NotAnImage"));
    assert!(resp.results[2].result_string.contains("does not exist"));

    let v2 = r#"{"invocationSchemaVersion":"2.0","invocationId":"inv-2","job":{"id":"job-2","userArguments":{}},
      "tasks":[{"taskId":"t1","s3Key":"uploads/old+cat.png","s3VersionId":null,"s3Bucket":"events"}]}"#;
    let event: BatchEvent = serde_json::from_str(v2).unwrap();
    let resp = handle_batch(&event, |_| store.clone(), &det, &opts).await;
    assert_eq!(resp.results[0].result_code, "Succeeded");
    assert!(resp.results[0].result_string.starts_with("unchanged"));
    let json = serde_json::to_value(&resp).unwrap();
    assert_eq!(json["treatMissingKeysAs"], "PermanentFailure");
    assert_eq!(json["results"][0]["resultCode"], "Succeeded");
}
