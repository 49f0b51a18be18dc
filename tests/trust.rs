//! Every paid call bounded, configuration errors stop the run, and no
//! write is ever made under an empty ETag (issue 12).

use crate::common;
use common::fixtures::put;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use bytes::Bytes;
use common::s3mem::{self, MemS3};
use imgtag::catalog::Selection;
use imgtag::contract::Layout;
use imgtag::detection::{DynDetector, RekognitionDetector};
use imgtag::pipeline::{Outcome, ReviewEdit, TagOptions, edit_review, tag};
use imgtag::storage::{
    DynStore, Layer, Object, ObjectInfo, PutCondition, S3Store, StorageError, Store,
};

const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");

fn output() -> DetectLabelsOutput {
    DetectLabelsOutput::builder()
        .labels(
            aws_sdk_rekognition::types::Label::builder()
                .name("Coffee")
                .confidence(95.0)
                .build(),
        )
        .label_model_version("3.0")
        .build()
}

/// A mocked Rekognition client that would itself retry three times, as
/// the SDK's default standard retry does.
fn rek_client(rules: &[&Rule]) -> Client {
    mock_client!(
        aws_sdk_rekognition,
        RuleMode::MatchAny,
        rules.iter().copied(),
        |c| c.retry_config(
            aws_sdk_rekognition::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
        )
    )
}

fn opts() -> TagOptions {
    TagOptions {
        backoff: Duration::from_millis(1),
        ..TagOptions::new(Layout::default(), "test")
    }
}

async fn local_with_images(n: usize) -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(imgtag::storage::LocalStore::open(dir.path()).unwrap());
    for i in 0..n {
        put(
            &store,
            &format!("uploads/{i:02}.jpg"),
            Bytes::from_static(COFFEE),
        )
        .await;
    }
    (dir, store)
}

fn error_rule(type_: &'static str) -> Rule {
    let body = format!(r#"{{"__type":"{type_}","message":"refused by the test"}}"#);
    mock!(Client::detect_labels)
        .sequence()
        .http_status(400, Some(body))
        .repeatedly()
        .build()
}

/// `InvalidParameterException` and `InvalidS3ObjectException` are the
/// configuration's fault: the run stops with one clear message, nothing is
/// recorded against the image, nothing is retried.
#[tokio::test]
async fn invalid_parameter_and_s3_object_stop_the_run() {
    for (type_, hint) in [
        ("InvalidParameterException", "--max-labels"),
        ("InvalidS3ObjectException", "region"),
    ] {
        let (_dir, store) = local_with_images(5).await;
        let rule = error_rule(type_);
        let det: DynDetector = Arc::new(RekognitionDetector::from_client(rek_client(&[&rule]), 1));
        let out = tag(&store, &det, "uploads/00.jpg", &opts()).await;
        let Outcome::Fatal { message } = &out else {
            panic!("{type_}: {out:?}")
        };
        assert!(message.contains(hint), "{message}");
        assert_eq!(rule.num_calls(), 1, "{type_}: not retried");
        assert!(store.head("metadata/00.jpg.json").await.is_err(), "no doc");

        // A bulk run stops at the first: with one image at a time, the
        // other four are never sent.
        let run = imgtag::cli::TagRun {
            selection: Selection::All,
            concurrency: 1,
            dry_run: false,
            yes: true,
            json: true,
            progress: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = imgtag::cli::tag(
            &imgtag::bucket::Bucket::new(store, Layout::default(), 70.0.into()),
            det,
            opts(),
            &run,
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
        assert!(summary.tally.fatal.is_some(), "{summary:?}");
        assert_eq!(summary.tally.failed, 0, "not the image's failure");
        assert_eq!(rule.num_calls(), 2, "{type_}: the run stopped");
    }
}

/// Throttled every time: the pipeline's attempts are the only retries,
/// however the client was configured.
#[tokio::test]
async fn a_throttled_image_costs_exactly_the_pipelines_attempts() {
    let (_dir, store) = local_with_images(3).await;
    let rule = error_rule("ThrottlingException");
    let det: DynDetector = Arc::new(RekognitionDetector::from_client(rek_client(&[&rule]), 2));
    for i in 0..3 {
        let out = tag(&store, &det, &format!("uploads/{i:02}.jpg"), &opts()).await;
        assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
        assert_eq!(rule.num_calls(), 3 * (i + 1), "3 attempts, 1 call each");
    }
    // The Lambda's options: one call per delivery.
    let mut once = opts();
    once.attempts = 1;
    let out = tag(&store, &det, "uploads/00.jpg", &once).await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
    assert_eq!(rule.num_calls(), 10);
}

/// Every call, retries included, goes through the shared rate limit.
#[tokio::test]
async fn every_call_and_retry_takes_a_token() {
    let (_dir, store) = local_with_images(12).await;
    let ok = mock!(Client::detect_labels)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ThrottlingException","message":"slow"}"#.into()),
        )
        .times(4)
        .output(output)
        .repeatedly()
        .build();
    let det = Arc::new(RekognitionDetector::from_client(rek_client(&[&ok]), 4).with_rate(1000.0));
    let dyn_det: DynDetector = det.clone();
    let outcomes = futures::future::join_all((0..12).map(|i| {
        let (store, det) = (store.clone(), dyn_det.clone());
        async move { tag(&store, &det, &format!("uploads/{i:02}.jpg"), &opts()).await }
    }))
    .await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Tagged { .. })),
        "{outcomes:?}"
    );
    assert_eq!(ok.num_calls(), 12 + 4);
    assert_eq!(det.pacing().unwrap().granted(), 16);
}

/// A limiter shared by many tasks never lets more through than its rate
/// allows, counted in tokens against the limiter's own clock.
#[tokio::test]
async fn the_rate_limit_holds_across_tasks() {
    let limiter = Arc::new(imgtag::detection::RateLimiter::new(200.0, 5));
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let l = limiter.clone();
            tokio::spawn(async move { l.acquire().await })
        })
        .collect();
    // However the tasks are scheduled, tokens granted by any instant stay
    // within the allowance for the time elapsed by then.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let granted = limiter.granted();
        assert!(
            granted <= limiter.allowance(started.elapsed()),
            "{granted} tokens after {:?}",
            started.elapsed()
        );
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(limiter.granted(), 40);
    assert!(started.elapsed() >= Duration::from_millis(35 * 5 - 1));
}

/// Hands out metadata with an empty ETag, as a broken server might, and
/// counts writes.
struct EmptyEtags {
    inner: DynStore,
    puts: AtomicUsize,
}

#[async_trait]
impl Layer for EmptyEtags {
    fn inner(&self) -> &DynStore {
        &self.inner
    }
    async fn get(&self, key: &str, limit: u64) -> Result<Object, StorageError> {
        let mut o = self.inner.get(key, limit).await?;
        if key.starts_with("metadata/") {
            o.info.etag = Some("\"\"".into());
        }
        Ok(o)
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, StorageError> {
        let mut o = self.inner.head(key).await?;
        if key.starts_with("metadata/") {
            o.etag = Some(" ".into());
        }
        Ok(o)
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<String, StorageError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, body, condition).await
    }
}

/// An empty ETag never becomes `If-Match: ""`: the pipeline refuses to
/// rewrite blind, and the S3 store refuses such a condition without
/// sending anything.
#[tokio::test]
async fn an_empty_etag_is_never_a_write_condition() {
    let (_dir, inner) = local_with_images(1).await;
    let seed = br#"{"Labels":[{"Name":"Cup","Confidence":90.0}]}"#;
    put(&inner, "metadata/00.jpg.json", Bytes::from_static(seed)).await;
    let store: DynStore = Arc::new(EmptyEtags {
        inner: inner.clone(),
        puts: AtomicUsize::new(0),
    });
    let never = mock!(Client::detect_labels).then_output(output);
    let det: DynDetector = Arc::new(RekognitionDetector::from_client(rek_client(&[&never]), 1));
    let mut o = opts();
    o.force = true;
    let out = tag(&store, &det, "uploads/00.jpg", &o).await;
    assert!(
        matches!(&out, Outcome::Skipped { reason } if reason.contains("ETag")),
        "{out:?}"
    );
    let edit = ReviewEdit::parse("+Mug").unwrap();
    let out = edit_review(&store, "uploads/00.jpg", &edit, &o).await;
    assert!(
        matches!(&out, Outcome::Skipped { reason } if reason.contains("ETag")),
        "{out:?}"
    );
    assert_eq!(
        inner
            .get("metadata/00.jpg.json", 1 << 20)
            .await
            .unwrap()
            .body,
        &seed[..]
    );
    assert_eq!(
        never.num_calls(),
        0,
        "nothing paid for a write that cannot be made"
    );

    let mem = MemS3::new();
    mem.create_bucket("b");
    mem.insert("b", "metadata/a.json", "theirs");
    let server = s3mem::serve(mem.clone()).await;
    let s3 = S3Store::from_client(s3mem::client(&server.endpoint()), "b");
    for empty in ["", "\"\"", " W/\"\" "] {
        let before = mem.requests();
        let err = s3
            .put(
                "metadata/a.json",
                Bytes::from_static(b"ours"),
                PutCondition::IfMatch(empty.into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
        assert_eq!(mem.requests(), before, "nothing sent for {empty:?}");
    }
    assert_eq!(mem.object("b", "metadata/a.json").unwrap().data, "theirs");
}

/// Output that fails after its first line, as a pipe closed by `head -1`.
struct ClosedAfterOneLine {
    lines: usize,
}

impl std::io::Write for ClosedAfterOneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.lines >= 1 {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.lines += buf.iter().filter(|b| **b == b'\n').count();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On a closed output the run stops scheduling, but every image already
/// being tagged finishes: each paid detection has its document.
#[tokio::test]
async fn a_closed_output_stops_the_run_after_the_writes_in_flight() {
    let (_dir, store) = local_with_images(30).await;
    let rule = mock!(Client::detect_labels).then_output(output);
    let det: DynDetector = Arc::new(RekognitionDetector::from_client(rek_client(&[&rule]), 4));
    let run = imgtag::cli::TagRun {
        selection: Selection::All,
        concurrency: 4,
        dry_run: false,
        yes: true,
        json: true,
        progress: false,
    };
    let mut out = ClosedAfterOneLine { lines: 0 };
    let err = imgtag::cli::tag(
        &imgtag::bucket::Bucket::new(store.clone(), Layout::default(), 70.0.into()),
        det,
        opts(),
        &run,
        &mut out,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, imgtag::cli::CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe),
        "{err:?}"
    );
    let mut written = 0;
    for i in 0..30 {
        if store
            .head(&format!("metadata/{i:02}.jpg.json"))
            .await
            .is_ok()
        {
            written += 1;
        }
    }
    assert_eq!(written, rule.num_calls(), "a detection without its write");
    assert!(written < 30, "scheduling went on: {written}");
}
