//! The automated path's event handling with JSON fixtures shaped like real
//! S3 notifications and Batch Operations invocations, against the
//! in-process S3 server and the real local model.

use crate::common;
use common::fixtures::put;

use std::sync::Arc;

use bytes::Bytes;
use common::s3mem::{self, MemS3};
use imgtag::contract::{Layout, parse_metadata};
use imgtag::detection::{DynDetector, LocalDetector};
use imgtag::lambda::{
    AllowedBuckets, BatchEvent, HandlerOptions, S3Buckets, S3Event, handle_batch, handle_s3_event,
};
use imgtag::pipeline::{Outcome, TagOptions};
use imgtag::storage::{DynStore, S3Store};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");

/// An S3 event with one record per (bucket, URL-encoded key).
fn event_of(records: &[(&str, &str)]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(b, k)| serde_json::from_str(&record(b, k)).unwrap())
        .collect();
    serde_json::json!({ "Records": records })
}

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
        put(&store, key, Bytes::from_static(CHELSEA)).await;
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
    let opts = HandlerOptions {
        tag: TagOptions::new(Layout::default(), "imgtag-lambda"),
        buckets: AllowedBuckets::only(["events"]),
    };
    let results = handle_s3_event(
        &event,
        &|b: &str| {
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
    assert_eq!(
        doc.doc.imgtag.as_ref().unwrap().tagged_by.as_deref(),
        Some("imgtag-lambda")
    );
    assert!(doc.doc.labels.iter().any(|l| l.name == "Cat"));
    // Nothing was written for the skipped records.
    assert!(
        store
            .head("metadata/metadata/my cat.jpg.json.json")
            .await
            .is_err()
    );

    // Redelivery: at-least-once events do not tag twice.
    let again = handle_s3_event(&event, &|_: &str| store.clone(), &det, &opts).await;
    assert!(
        matches!(again[0].outcome, Outcome::Unchanged { .. }),
        "{:?}",
        again[0]
    );
}

#[tokio::test]
async fn batch_operations_get_one_result_per_task() {
    let (_server, store, det) = setup().await;
    put(&store, "uploads/old cat.png", Bytes::from_static(CHELSEA)).await;
    put(&store, "uploads/notes.jpg", Bytes::from_static(b"text")).await;
    let v1 = r#"{"invocationSchemaVersion":"1.0","invocationId":"inv-1","job":{"id":"job-1"},
      "tasks":[
        {"taskId":"t1","s3Key":"uploads/old+cat.png","s3VersionId":null,"s3BucketArn":"arn:aws:s3:::events"},
        {"taskId":"t2","s3Key":"uploads/notes.jpg","s3VersionId":null,"s3BucketArn":"arn:aws:s3:::events"},
        {"taskId":"t3","s3Key":"uploads/gone.jpg","s3VersionId":null,"s3BucketArn":"arn:aws:s3:::events"}]}"#;
    let event: BatchEvent = serde_json::from_str(v1).unwrap();
    let opts = HandlerOptions {
        tag: TagOptions::new(Layout::default(), "imgtag-lambda"),
        buckets: AllowedBuckets::only(["events"]),
    };
    let store_for = |_: &str| store.clone();
    let resp = handle_batch(&event, &store_for, &det, &opts).await;
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
    let resp = handle_batch(&event, &store_for, &det, &opts).await;
    assert_eq!(resp.results[0].result_code, "Succeeded");
    assert!(resp.results[0].result_string.starts_with("unchanged"));
    let json = serde_json::to_value(&resp).unwrap();
    assert_eq!(json["treatMissingKeysAs"], "PermanentFailure");
    assert_eq!(json["results"][0]["resultCode"], "Succeeded");
}

// ---------------------------------------------------------------------------
// Whole invocations, from JSON fixtures shaped like what S3 and S3 Batch
// Operations send (`tests/fixtures/events/`), through the entry point the
// `imgtag-lambda` binary calls.

use std::sync::atomic::{AtomicUsize, Ordering};

use imgtag::detection::{DetectFailure, DetectInput, DetectParams, Detection, Detector};
use imgtag::lambda::{InvocationError, handle_invocation};
use s3s::S3ErrorCode;

const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");

fn fixture(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The real local model, counting how often it is asked.
struct Counting {
    inner: DynDetector,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Detector for Counting {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        self.inner.kind()
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.detect(input, params).await
    }
}

struct Buckets {
    mem: MemS3,
    _server: common::s3mem::TestServer,
    client: aws_sdk_s3::Client,
}

impl Buckets {
    async fn new(names: &[&str]) -> Self {
        let mem = MemS3::new();
        for n in names {
            mem.create_bucket(n);
        }
        let server = s3mem::serve(mem.clone()).await;
        let client = s3mem::client(&server.endpoint());
        Buckets {
            mem,
            _server: server,
            client,
        }
    }

    /// Opens whichever bucket the event names, as the binary does.
    fn store_for(&self) -> impl Fn(&str) -> DynStore + '_ {
        |bucket| Arc::new(S3Store::from_client(self.client.clone(), bucket)) as DynStore
    }

    /// The handler's reply to `event`, which must not fail as a whole.
    async fn invoke(
        &self,
        event: serde_json::Value,
        det: &DynDetector,
        opts: &HandlerOptions,
    ) -> serde_json::Value {
        handle_invocation(event, &self.store_for(), det, opts)
            .await
            .unwrap()
    }

    fn doc(&self, bucket: &str, key: &str) -> imgtag::contract::ParsedMetadata {
        let obj = self
            .mem
            .object(bucket, key)
            .unwrap_or_else(|| panic!("{bucket}/{key} was not written"));
        parse_metadata(&obj.data).unwrap()
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        inner: Arc::new(LocalDetector::load().unwrap()),
        calls: AtomicUsize::new(0),
    })
}

/// The handler's options as the deployed function reads them, trusting
/// the two buckets these tests use.
fn lambda_opts() -> HandlerOptions {
    config(&[]).handler_options()
}

fn config(vars: &[(&str, &str)]) -> imgtag::lambda::LambdaConfig {
    imgtag::lambda::LambdaConfig::from_vars(|name| match name {
        "IMGTAG_BUCKETS" => Some("events,other-bucket".into()),
        _ => vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap()
}

/// (bucket, key, outcome) of each record of a handler's reply.
fn record_outcomes(reply: &serde_json::Value) -> Vec<(&str, &str, &str)> {
    fn field<'a>(r: &'a serde_json::Value, name: &str) -> &'a str {
        r[name].as_str().unwrap()
    }
    let records = reply["records"].as_array().unwrap();
    records
        .iter()
        .map(|r| (field(r, "bucket"), field(r, "key"), field(r, "outcome")))
        .collect()
}

/// The document at `meta` was written by the function for `image` in
/// `bucket`, with the default options, and has `label` among its labels.
fn assert_tagged_by_lambda(b: &Buckets, bucket: &str, meta: &str, image: &str, label: &str) {
    let doc = b.doc(bucket, meta);
    let t = doc.doc.imgtag.as_ref().unwrap();
    assert_eq!(t.tagged_by.as_deref(), Some("imgtag-lambda"));
    assert_eq!(t.detector.as_deref(), Some("local"));
    assert_eq!(t.min_confidence, Some(55.0));
    assert_eq!(
        (t.source.bucket.as_str(), t.source.key.as_str()),
        (bucket, image)
    );
    let etag = b.mem.object(bucket, image).unwrap().etag;
    assert_eq!(
        imgtag::contract::normalize_etag(t.source.etag.as_deref().unwrap()),
        etag
    );
    assert!(
        doc.doc.labels.iter().any(|l| l.name == label),
        "{meta}: {:?}",
        doc.doc.labels
    );
    assert!(doc.doc.labels.iter().all(|l| l.confidence >= 55.0));
}

#[tokio::test]
async fn notification_fixture_tags_every_image_record_in_its_own_bucket() {
    let b = Buckets::new(&["events", "other-bucket"]).await;
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    b.mem.insert("events", "uploads/a+b.png", CHELSEA);
    b.mem
        .insert("other-bucket", "uploads/caf\u{e9} \u{732b}.png", CHELSEA);
    b.mem.insert("events", "uploads/100% sure.jpg", COFFEE);
    b.mem.insert("events", "uploads/2024/", Bytes::new());
    let counter = counting();
    let det: DynDetector = counter.clone();
    let opts = lambda_opts();

    let event = fixture("s3-put-several.json");
    let reply = b.invoke(event.clone(), &det, &opts).await;
    assert_eq!(
        record_outcomes(&reply),
        [
            ("events", "uploads/my cat.jpg", "tagged"),
            ("events", "uploads/a+b.png", "tagged"),
            ("other-bucket", "uploads/caf\u{e9} \u{732b}.png", "tagged"),
            ("events", "uploads/100% sure.jpg", "tagged"),
            ("events", "uploads/2024/", "skipped"),
            ("events", "metadata/my cat.jpg.json", "skipped"),
        ]
    );
    assert_eq!(counter.calls.load(Ordering::SeqCst), 4);

    // The documents, at the canonical keys, in the bucket of each record.
    for (bucket, meta, image, label) in [
        (
            "events",
            "metadata/my cat.jpg.json",
            "uploads/my cat.jpg",
            "Cat",
        ),
        ("events", "metadata/a+b.png.json", "uploads/a+b.png", "Cat"),
        (
            "other-bucket",
            "metadata/caf\u{e9} \u{732b}.png.json",
            "uploads/caf\u{e9} \u{732b}.png",
            "Cat",
        ),
        (
            "events",
            "metadata/100% sure.jpg.json",
            "uploads/100% sure.jpg",
            "Coffee",
        ),
    ] {
        assert_tagged_by_lambda(&b, bucket, meta, image, label);
    }
    // Nothing for the placeholder, nothing tagged from the metadata key.
    assert!(b.mem.object("events", "metadata/2024/.json").is_none());
    assert!(b.mem.object("events", "metadata/2024.json").is_none());
    assert!(
        b.mem
            .object("events", "metadata/metadata/my cat.jpg.json.json")
            .is_none()
    );

    // At-least-once redelivery: no detector call, nothing rewritten.
    let before = b.mem.object("events", "metadata/my cat.jpg.json").unwrap();
    let again = b.invoke(event, &det, &opts).await;
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        4,
        "no second detection"
    );
    let outcomes: Vec<&str> = record_outcomes(&again).iter().map(|r| r.2).collect();
    assert_eq!(
        outcomes,
        [
            "unchanged",
            "unchanged",
            "unchanged",
            "unchanged",
            "skipped",
            "skipped"
        ]
    );
    let after = b.mem.object("events", "metadata/my cat.jpg.json").unwrap();
    assert_eq!(before.etag, after.etag);

    // A new threshold is a different request: the image is tagged again.
    let mut stricter = opts.clone();
    stricter.tag.min_confidence = 80.0;
    b.invoke(fixture("s3-put-several.json"), &det, &stricter)
        .await;
    assert_eq!(counter.calls.load(Ordering::SeqCst), 8);
    assert_eq!(
        b.doc("events", "metadata/my cat.jpg.json")
            .doc
            .imgtag
            .unwrap()
            .min_confidence,
        Some(80.0)
    );
}

#[tokio::test]
async fn a_replaced_image_is_tagged_again_on_its_new_event() {
    let b = Buckets::new(&["events"]).await;
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    let counter = counting();
    let det: DynDetector = counter.clone();
    let opts = lambda_opts();
    let event = serde_json::json!({"Records": [serde_json::from_str::<serde_json::Value>(
        &record("events", "uploads/my+cat.jpg")).unwrap()]});
    b.invoke(event.clone(), &det, &opts).await;
    b.mem.insert("events", "uploads/my cat.jpg", COFFEE);
    let reply = b.invoke(event, &det, &opts).await;
    assert_eq!(reply["records"][0]["outcome"], "tagged");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 2);
    let doc = b.doc("events", "metadata/my cat.jpg.json");
    assert!(doc.doc.labels.iter().any(|l| l.name == "Coffee"));
    assert!(!doc.doc.labels.iter().any(|l| l.name == "Cat"));
}

#[tokio::test]
async fn throttled_notification_fails_the_invocation_and_redelivery_finishes_it() {
    let b = Buckets::new(&["events", "other-bucket"]).await;
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    b.mem.insert("events", "uploads/a+b.png", CHELSEA);
    b.mem
        .insert("other-bucket", "uploads/caf\u{e9} \u{732b}.png", CHELSEA);
    b.mem.insert("events", "uploads/100% sure.jpg", COFFEE);
    let counter = counting();
    let det: DynDetector = counter.clone();
    let opts = lambda_opts();
    // Enough SlowDown answers to exhaust the client's 4 attempts on the
    // first record's first request.
    b.mem
        .inject_faults(std::iter::repeat_n(S3ErrorCode::SlowDown, 4));
    let err = handle_invocation(fixture("s3-put-several.json"), &b.store_for(), &det, &opts)
        .await
        .unwrap_err();
    match &err {
        InvocationError::Incomplete {
            failed,
            total,
            first,
        } => {
            assert_eq!((*failed, *total), (1, 6));
            assert!(first.contains("uploads/my cat.jpg"), "{first}");
        }
        e => panic!("{e}"),
    }
    // The other records were tagged despite the failure.
    assert!(b.mem.object("events", "metadata/a+b.png.json").is_some());
    assert!(b.mem.object("events", "metadata/my cat.jpg.json").is_none());
    assert_eq!(counter.calls.load(Ordering::SeqCst), 3);

    // Lambda's async retry redelivers the whole event: only the missing
    // image costs a detection.
    let reply = b.invoke(fixture("s3-put-several.json"), &det, &opts).await;
    assert_eq!(reply["records"][0]["outcome"], "tagged");
    assert_eq!(reply["records"][1]["outcome"], "unchanged");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn batch_fixtures_schema_1_and_2_get_one_result_per_task() {
    let b = Buckets::new(&["events"]).await;
    b.mem.insert("events", "uploads/old cat.png", CHELSEA);
    b.mem
        .insert("events", "uploads/notes.jpg", &b"not an image"[..]);
    b.mem
        .insert("events", "uploads/r\u{e9}sum\u{e9} +1.png", CHELSEA);
    let counter = counting();
    let det: DynDetector = counter.clone();
    let opts = lambda_opts();
    // As the binary opens buckets (versions from HeadObject).
    let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);

    let reply = handle_invocation(fixture("batch-1.0.json"), &s3, &det, &opts)
        .await
        .unwrap();
    assert_eq!(reply["invocationSchemaVersion"], "1.0");
    assert_eq!(
        reply["invocationId"],
        "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo"
    );
    assert_eq!(reply["treatMissingKeysAs"], "PermanentFailure");
    let results: Vec<(&str, &str, &str)> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["taskId"].as_str().unwrap(),
                r["resultCode"].as_str().unwrap(),
                r["resultString"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(results.len(), 6);
    assert_eq!(results[0].0, "dGFza2lkZ29lc2hlcmUK");
    assert_eq!(results[0].1, "Succeeded");
    assert!(
        results[0].2.contains("metadata/old cat.png.json"),
        "{results:?}"
    );
    assert_eq!(results[1].1, "PermanentFailure");
    assert!(results[1].2.contains("NotAnImage"), "{results:?}");
    assert_eq!(results[2].1, "PermanentFailure");
    assert!(results[2].2.contains("does not exist"), "{results:?}");
    assert_eq!(results[3].1, "Succeeded", "{results:?}");
    // A task for a version that is not the current one (the server keeps
    // no versions, so the current one is S3's "null") is not tagged.
    assert_eq!(
        results[4],
        (
            "dGFza2lkZ29lc2hlcmUO",
            "PermanentFailure",
            "version 3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY is no longer current; not tagging an old \
             version"
        )
    );
    // A bucket the function was not configured for is never touched.
    assert_eq!(results[5].1, "PermanentFailure");
    assert!(results[5].2.contains("IMGTAG_BUCKETS"), "{results:?}");
    assert!(results.iter().all(|r| r.2.chars().count() <= 200));
    // The permanent failure is recorded, so audits show it and nobody
    // pays for it again.
    let failed = b.doc("events", "metadata/notes.jpg.json");
    assert_eq!(failed.doc.error().unwrap().code, "NotAnImage");
    assert!(
        b.doc("events", "metadata/r\u{e9}sum\u{e9} +1.png.json")
            .doc
            .labels
            .iter()
            .any(|l| l.name == "Cat")
    );
    assert_eq!(counter.calls.load(Ordering::SeqCst), 3);

    // Schema 2.0 names the bucket; the first task is a retry of work done.
    let reply = b.invoke(fixture("batch-2.0.json"), &det, &opts).await;
    assert_eq!(reply["invocationSchemaVersion"], "2.0");
    assert_eq!(reply["results"][0]["resultCode"], "Succeeded");
    assert!(
        reply["results"][0]["resultString"]
            .as_str()
            .unwrap()
            .starts_with("unchanged"),
        "{reply}"
    );
    // A metadata key in a manifest is refused, never tagged.
    assert_eq!(reply["results"][1]["resultCode"], "PermanentFailure");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 3, "no new detection");
}

#[tokio::test]
async fn throttling_in_a_batch_is_a_temporary_failure() {
    let b = Buckets::new(&["events"]).await;
    b.mem.insert("events", "uploads/old cat.png", CHELSEA);
    let det: DynDetector = counting();
    let opts = lambda_opts();
    b.mem
        .inject_faults(std::iter::repeat_n(S3ErrorCode::SlowDown, 4));
    let reply = b.invoke(fixture("batch-2.0.json"), &det, &opts).await;
    assert_eq!(reply["results"][0]["resultCode"], "TemporaryFailure");
    assert!(
        reply["results"][0]["resultString"]
            .as_str()
            .unwrap()
            .contains("throttled"),
        "{reply}"
    );
    assert!(
        b.mem
            .object("events", "metadata/old cat.png.json")
            .is_none()
    );
    // S3 retries the task; this time it goes through.
    let reply = b.invoke(fixture("batch-2.0.json"), &det, &opts).await;
    assert_eq!(reply["results"][0]["resultCode"], "Succeeded");
}

#[tokio::test]
async fn a_5xx_in_a_batch_is_a_temporary_failure() {
    let b = Buckets::new(&["events"]).await;
    b.mem.insert("events", "uploads/old cat.png", CHELSEA);
    let det: DynDetector = counting();
    b.mem
        .inject_faults(std::iter::repeat_n(S3ErrorCode::InternalError, 4));
    let reply = b
        .invoke(fixture("batch-2.0.json"), &det, &lambda_opts())
        .await;
    assert_eq!(
        reply["results"][0]["resultCode"], "TemporaryFailure",
        "{reply}"
    );
}

#[tokio::test]
async fn an_unknown_event_is_an_error_not_a_silent_success() {
    let b = Buckets::new(&["events"]).await;
    let det: DynDetector = counting();
    let err = handle_invocation(
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
        &b.store_for(),
        &det,
        &lambda_opts(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InvocationError::Event(_)), "{err}");
}

#[tokio::test]
async fn without_list_bucket_a_missing_metadata_object_is_not_a_fatal_error() {
    // The function's role has no s3:ListBucket, so S3 answers 403 for the
    // metadata object that does not exist yet.
    let b = Buckets::new(&["events"]).await;
    b.mem.deny_missing(true);
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    let det: DynDetector = counting();
    let opts = lambda_opts();
    let event = serde_json::json!({"Records": [serde_json::from_str::<serde_json::Value>(
        &record("events", "uploads/my+cat.jpg")).unwrap()]});

    // Unwrapped, the pipeline rightly stops at the AccessDenied.
    let err = handle_invocation(event.clone(), &b.store_for(), &det, &opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fatal"), "{err}");
    assert!(b.mem.object("events", "metadata/my cat.jpg.json").is_none());

    // As the binary opens buckets: tagged, then unchanged on redelivery.
    let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);
    let reply = handle_invocation(event.clone(), &s3, &det, &opts)
        .await
        .unwrap();
    assert_eq!(reply["records"][0]["outcome"], "tagged", "{reply}");
    assert!(b.mem.object("events", "metadata/my cat.jpg.json").is_some());
    let reply = handle_invocation(event, &s3, &det, &opts).await.unwrap();
    assert_eq!(reply["records"][0]["outcome"], "unchanged", "{reply}");
}

#[tokio::test]
async fn an_image_deleted_before_its_event_is_gone_not_denied_and_not_retried() {
    // Without s3:ListBucket, S3 answers 403 for the deleted image too.
    let b = Buckets::new(&["events"]).await;
    b.mem.deny_missing(true);
    let counter = counting();
    let det: DynDetector = counter.clone();
    let opts = lambda_opts();
    let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);
    let gone = serde_json::json!({"Records": [serde_json::from_str::<serde_json::Value>(
        &record("events", "uploads/gone.jpg")).unwrap()]});

    // Unwrapped, the 403 is an access problem that fails the invocation
    // (and Lambda would retry it).
    let err = handle_invocation(gone.clone(), &b.store_for(), &det, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, InvocationError::Incomplete { .. }), "{err}");

    // As the binary opens buckets: skipped, so the invocation succeeds and
    // Lambda does not redeliver it.
    let reply = handle_invocation(gone, &s3, &det, &opts).await.unwrap();
    let rec = &reply["records"][0];
    assert_eq!(rec["outcome"], "skipped", "{reply}");
    assert_eq!(
        rec["reason"], "\"uploads/gone.jpg\" does not exist or is not readable",
        "{reply}"
    );

    // In a Batch Operations job: a permanent failure, which the job does
    // not retry.
    let batch = serde_json::json!({"invocationSchemaVersion": "2.0", "invocationId": "i",
        "job": {"id": "j"}, "tasks": [{"taskId": "t", "s3Key": "uploads/gone.jpg",
        "s3VersionId": null, "s3Bucket": "events"}]});
    let reply = handle_invocation(batch, &s3, &det, &opts).await.unwrap();
    assert_eq!(reply["results"][0]["resultCode"], "PermanentFailure");
    assert!(
        reply["results"][0]["resultString"]
            .as_str()
            .unwrap()
            .ends_with("does not exist or is not readable"),
        "{reply}"
    );
    assert_eq!(counter.calls.load(Ordering::SeqCst), 0);
    assert!(b.mem.object("events", "metadata/gone.jpg.json").is_none());
}

#[tokio::test]
async fn records_and_tasks_naming_an_untrusted_bucket_are_never_tagged() {
    let b = Buckets::new(&["events", "stranger"]).await;
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    b.mem.insert("stranger", "uploads/my cat.jpg", CHELSEA);
    let counter = counting();
    let det: DynDetector = counter.clone();
    let mut opts = lambda_opts();
    opts.buckets = AllowedBuckets::only(["events"]);
    let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);
    let event = event_of(&[
        ("stranger", "uploads/my+cat.jpg"),
        ("events", "uploads/my+cat.jpg"),
    ]);
    // Skipped, not failed: redelivering it would not make it trusted.
    let reply = handle_invocation(event, &s3, &det, &opts).await.unwrap();
    assert_eq!(reply["records"][0]["outcome"], "skipped", "{reply}");
    assert_eq!(
        reply["records"][0]["reason"],
        "bucket \"stranger\" is not one this function tags (IMGTAG_BUCKETS)"
    );
    assert_eq!(reply["records"][1]["outcome"], "tagged", "{reply}");
    let batch = serde_json::json!({"invocationSchemaVersion": "2.0", "invocationId": "i",
        "job": {"id": "j"}, "tasks": [{"taskId": "t", "s3Key": "uploads/my+cat.jpg",
        "s3VersionId": null, "s3Bucket": "stranger"}]});
    let reply = handle_invocation(batch, &s3, &det, &opts).await.unwrap();
    assert_eq!(reply["results"][0]["resultCode"], "PermanentFailure");
    assert!(
        b.mem
            .object("stranger", "metadata/my cat.jpg.json")
            .is_none()
    );
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1);

    // `*` is the explicit way to trust any bucket.
    opts.buckets = AllowedBuckets::Any;
    let batch = serde_json::json!({"invocationSchemaVersion": "2.0", "invocationId": "i",
        "job": {"id": "j"}, "tasks": [{"taskId": "t", "s3Key": "uploads/my+cat.jpg",
        "s3VersionId": null, "s3Bucket": "stranger"}]});
    let reply = handle_invocation(batch, &s3, &det, &opts).await.unwrap();
    assert_eq!(reply["results"][0]["resultCode"], "Succeeded", "{reply}");
}

/// Buckets whose objects all have the given current version.
struct Versioned {
    s3: S3Buckets,
    current: Option<String>,
}

#[async_trait::async_trait]
impl imgtag::lambda::Buckets for Versioned {
    fn store(&self, bucket: &str) -> DynStore {
        self.s3.store(bucket)
    }
    async fn current_version(&self, _: &str, _: &str) -> imgtag::lambda::VersionLookup {
        imgtag::lambda::VersionLookup::Current(self.current.clone())
    }
}

#[tokio::test]
async fn batch_tasks_tag_only_the_current_version() {
    use imgtag::lambda::Buckets as _;
    let b = Buckets::new(&["events"]).await;
    b.mem.insert("events", "uploads/old cat.png", CHELSEA);
    let counter = counting();
    let det: DynDetector = counter.clone();
    let opts = lambda_opts();
    let versioned = Versioned {
        s3: S3Buckets::new(b.client.clone(), &opts.tag.layout),
        current: Some("v2".into()),
    };
    let task = |version: Option<&str>| {
        serde_json::json!({"invocationSchemaVersion": "2.0", "invocationId": "i",
            "job": {"id": "j"}, "tasks": [{"taskId": "t", "s3Key": "uploads/old+cat.png",
            "s3VersionId": version, "s3Bucket": "events"}]})
    };
    let result = |reply: &serde_json::Value| {
        (
            reply["results"][0]["resultCode"]
                .as_str()
                .unwrap()
                .to_string(),
            reply["results"][0]["resultString"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };

    // An overwritten version: nothing read, nothing written.
    let reply = handle_invocation(task(Some("v1")), &versioned, &det, &opts)
        .await
        .unwrap();
    assert_eq!(
        result(&reply),
        (
            "PermanentFailure".into(),
            "version v1 is no longer current; not tagging an old version".into()
        )
    );
    assert!(
        b.mem
            .object("events", "metadata/old cat.png.json")
            .is_none()
    );
    assert_eq!(counter.calls.load(Ordering::SeqCst), 0);

    // The current version is tagged.
    let reply = handle_invocation(task(Some("v2")), &versioned, &det, &opts)
        .await
        .unwrap();
    assert_eq!(result(&reply).0, "Succeeded", "{reply}");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1);

    // Without a way to look versions up, a versioned task is refused
    // rather than tagged blindly; unversioned tasks need no lookup.
    let plain = |bucket: &str| versioned.store(bucket);
    let reply = handle_invocation(task(Some("v2")), &plain, &det, &opts)
        .await
        .unwrap();
    assert_eq!(
        result(&reply),
        (
            "PermanentFailure".into(),
            "cannot check that version v2 is current".into()
        )
    );
    let reply = handle_invocation(task(None), &plain, &det, &opts)
        .await
        .unwrap();
    assert_eq!(result(&reply).0, "Succeeded", "{reply}");

    // Against a bucket that keeps no versions (HeadObject names none), the
    // current version is S3's "null".
    let reply = handle_invocation(task(Some("null")), &versioned.s3, &det, &opts)
        .await
        .unwrap();
    assert_eq!(result(&reply).0, "Succeeded", "{reply}");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1, "no new detection");
}

#[tokio::test]
async fn an_image_over_the_pixel_bound_gets_an_error_document_not_a_crash() {
    // 1.2 megapixels of one colour: a few kilobytes of PNG, 3.6 MB decoded.
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        1200,
        1000,
        image::Rgb([200, 120, 40]),
    ))
    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
    .unwrap();
    assert!(png.len() < 64 * 1024, "{}", png.len());
    let b = Buckets::new(&["events"]).await;
    b.mem.insert("events", "uploads/wide.png", png);
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    let counter = counting();
    let config = config(&[("IMGTAG_MAX_MEGAPIXELS", "1")]);
    let det = config.bound_detector(counter.clone());
    let opts = config.handler_options();
    let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);
    let event = event_of(&[
        ("events", "uploads/wide.png"),
        ("events", "uploads/my+cat.jpg"),
    ]);
    let reply = handle_invocation(event, &s3, &det, &opts).await.unwrap();
    assert_eq!(reply["records"][0]["outcome"], "failed", "{reply}");
    assert_eq!(reply["records"][0]["code"], "ImageTooLarge", "{reply}");
    let doc = b.doc("events", "metadata/wide.png.json");
    let err = doc.doc.error().unwrap();
    assert_eq!(err.code, "ImageTooLarge");
    assert!(err.message.contains("1200x1000"), "{}", err.message);
    assert!(doc.doc.labels.is_empty());
    // Refused before the detector (and its decoder) saw it; images under
    // the bound are tagged as usual, by the detector's own name.
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1);
    assert_eq!(reply["records"][1]["outcome"], "tagged", "{reply}");
    let t = b
        .doc("events", "metadata/my cat.jpg.json")
        .doc
        .imgtag
        .unwrap();
    assert_eq!(t.detector.as_deref(), Some("local"));
}

// ---------------------------------------------------------------------------
// The same invocations with Rekognition (mocked with the SDK's own mock
// layer), which reads the image from S3 by reference.

mod rekognition_mock {
    use super::*;
    use aws_sdk_rekognition::Client;
    use aws_sdk_rekognition::operation::detect_labels::DetectLabelsOutput;
    use aws_sdk_rekognition::types::{Label, Parent};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use imgtag::detection::RekognitionDetector;

    fn cat() -> DetectLabelsOutput {
        DetectLabelsOutput::builder()
            .labels(
                Label::builder()
                    .name("Cat")
                    .confidence(91.2)
                    .parents(Parent::builder().name("Animal").build())
                    .build(),
            )
            .label_model_version("3.0")
            .build()
    }

    fn detector(rules: &[&Rule]) -> DynDetector {
        let client: Client = mock_client!(
            aws_sdk_rekognition,
            RuleMode::MatchAny,
            rules.iter().copied(),
            |c| c.retry_config(
                aws_sdk_rekognition::config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(std::time::Duration::from_millis(1))
            )
        );
        Arc::new(RekognitionDetector::from_client(client, 1))
    }

    #[tokio::test]
    async fn redelivery_does_not_call_rekognition_again() {
        let b = Buckets::new(&["events"]).await;
        b.mem.deny_missing(true);
        b.mem.insert("events", "uploads/old cat.png", CHELSEA);
        let rule = mock!(Client::detect_labels)
            .match_requests(|r| {
                r.image().and_then(|i| i.s3_object()).is_some_and(|o| {
                    o.bucket() == Some("events") && o.name() == Some("uploads/old cat.png")
                })
            })
            .then_output(cat);
        let det = detector(&[&rule]);
        let opts = lambda_opts();
        let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);
        let reply = handle_invocation(fixture("batch-2.0.json"), &s3, &det, &opts)
            .await
            .unwrap();
        assert_eq!(reply["results"][0]["resultCode"], "Succeeded", "{reply}");
        assert_eq!(rule.num_calls(), 1, "the image went by S3 reference");
        let doc = b.doc("events", "metadata/old cat.png.json");
        assert_eq!(doc.doc.label_model_version.as_deref(), Some("3.0"));
        let t = doc.doc.imgtag.as_ref().unwrap();
        assert_eq!(t.detector.as_deref(), Some("rekognition"));
        assert_eq!(t.tagged_by.as_deref(), Some("imgtag-lambda"));
        assert_eq!(doc.doc.labels[0].name, "Cat");

        // At-least-once: the same task again costs no DetectLabels call.
        let reply = handle_invocation(fixture("batch-2.0.json"), &s3, &det, &opts)
            .await
            .unwrap();
        assert_eq!(reply["results"][0]["resultCode"], "Succeeded");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn rekognition_throttling_is_a_temporary_failure_and_writes_nothing() {
        let b = Buckets::new(&["events"]).await;
        b.mem.insert("events", "uploads/old cat.png", CHELSEA);
        let throttled = mock!(Client::detect_labels)
            .sequence()
            .http_status(
                400,
                Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into()),
            )
            .repeatedly()
            .build();
        let det = detector(&[&throttled]);
        let reply = b
            .invoke(fixture("batch-2.0.json"), &det, &lambda_opts())
            .await;
        assert_eq!(
            reply["results"][0]["resultCode"], "TemporaryFailure",
            "{reply}"
        );
        assert!(
            b.mem
                .object("events", "metadata/old cat.png.json")
                .is_none()
        );
        // One retry layer: the job retries the task later. Neither the
        // client (2 attempts configured here) nor the pipeline retries.
        assert_eq!(throttled.num_calls(), 1);
    }
}

/// The real local model, priced and named as Rekognition, slowed down:
/// what a paid detector costs an overlapping invocation.
struct PaidSlow(Arc<Counting>);

#[async_trait::async_trait]
impl Detector for PaidSlow {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        imgtag::detection::DetectorKind::Rekognition
    }
    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure> {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.0.detect(input, params).await
    }
}

/// S3 delivers events at least once, and a duplicate can arrive while the
/// first is being handled: the second invocation sees the claim, pays
/// nothing and fails so that Lambda retries it; the retry finds the image
/// tagged.
#[tokio::test]
async fn a_duplicate_event_at_the_same_moment_pays_once() {
    let b = Buckets::new(&["events"]).await;
    // As deployed: no s3:ListBucket, so a missing document or claim is a 403.
    b.mem.deny_missing(true);
    b.mem.insert("events", "uploads/my cat.jpg", CHELSEA);
    let counter = counting();
    let det: DynDetector = Arc::new(PaidSlow(counter.clone()));
    let opts = lambda_opts();
    let event = serde_json::json!({"Records": [serde_json::from_str::<serde_json::Value>(
        &record("events", "uploads/my+cat.jpg")).unwrap()]});
    // Buckets opened as the binary opens them.
    let s3 = S3Buckets::new(b.client.clone(), &opts.tag.layout);
    let (first, second) = tokio::join!(
        handle_invocation(event.clone(), &s3, &det, &opts),
        handle_invocation(event.clone(), &s3, &det, &opts)
    );
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1, "paid once");
    let (ok, err) = match (first, second) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok, err),
        other => panic!("one tags, one is retried: {other:?}"),
    };
    assert_eq!(ok["records"][0]["outcome"], "tagged");
    assert!(
        matches!(err, InvocationError::Incomplete { failed: 1, .. }),
        "{err:?}"
    );
    let retry = handle_invocation(event, &s3, &det, &opts).await.unwrap();
    assert_eq!(retry["records"][0]["outcome"], "unchanged");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1);
    assert!(b.mem.object("events", "metadata/my cat.jpg.lock").is_none());
}
