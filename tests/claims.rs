//! Claims (src/claim.rs, docs/format.md "Claims"): two runs at once pay a
//! paid detector once per image, on the in-memory S3 server, behind the
//! faulty proxy, and on a local folder; live, expired and foreign claims.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::faulty_proxy::{FaultyProxy, Rates};
use common::s3mem::{self, MemS3, TestServer};
use imgtag::catalog::Selection;
use imgtag::contract::{Label, Layout};
use imgtag::detection::{
    DetectFailure, DetectInput, DetectParams, Detection, Detector, DetectorKind, DynDetector,
};
use imgtag::pipeline::{Outcome, TagOptions, tag};
use imgtag::storage::{DynStore, Layer, LocalStore, PutCondition, S3Store, StorageError};

const BUCKET: &str = "claims";

/// A paid detector (priced as Rekognition) that takes `delay` per image
/// and counts its calls.
struct Paid {
    delay: Duration,
    calls: AtomicUsize,
}

impl Paid {
    fn new(delay_ms: u64) -> Arc<Paid> {
        Arc::new(Paid {
            delay: Duration::from_millis(delay_ms),
            calls: AtomicUsize::new(0),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Detector for Paid {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Rekognition
    }
    async fn detect(&self, _: DetectInput, _: DetectParams) -> Result<Detection, DetectFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(Detection {
            labels: vec![Label::new("Cat", 91.0)],
            ..Detection::default()
        })
    }
}

fn opts() -> TagOptions {
    TagOptions {
        backoff: Duration::from_millis(10),
        ..TagOptions::new(Layout::default(), "imgtag")
    }
}

async fn s3_bucket(images: usize) -> (MemS3, TestServer, DynStore) {
    let mem = MemS3::new();
    mem.create_bucket(BUCKET);
    for i in 0..images {
        mem.insert(BUCKET, &format!("uploads/{i:02}.jpg"), vec![i as u8; 64]);
    }
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        BUCKET,
    ));
    (mem, server, store)
}

fn is_busy(o: &Outcome) -> bool {
    matches!(o, Outcome::Retry { message } if message.contains("another run is tagging it"))
}

/// Keys under metadata/ ending in `.lock`: claims left behind.
async fn claims_left(store: &DynStore) -> Vec<String> {
    use futures::TryStreamExt;
    let pages: Vec<Vec<_>> = store.list("metadata/").try_collect().await.unwrap();
    pages
        .into_iter()
        .flatten()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".lock"))
        .collect()
}

async fn two_at_once(store: &DynStore, det: &Arc<Paid>) -> [Outcome; 2] {
    let d: DynDetector = det.clone();
    let o = opts();
    let (a, b) = tokio::join!(
        tag(store, &d, "uploads/00.jpg", &o),
        tag(store, &d, "uploads/00.jpg", &o)
    );
    [a, b]
}

#[tokio::test]
async fn two_runs_at_once_pay_for_an_image_once_on_s3() {
    let (mem, _server, store) = s3_bucket(1).await;
    let det = Paid::new(300);
    let outs = two_at_once(&store, &det).await;
    assert_eq!(det.calls(), 1, "{outs:?}");
    assert_eq!(outs.iter().filter(|o| is_busy(o)).count(), 1, "{outs:?}");
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Outcome::Tagged { .. }))
            .count(),
        1,
        "{outs:?}"
    );
    assert!(mem.object(BUCKET, "metadata/00.jpg.json").is_some());
    assert!(
        claims_left(&store).await.is_empty(),
        "the claim is released"
    );
    // The one told to try again finds the work done, and pays nothing.
    let d: DynDetector = det.clone();
    let again = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(matches!(again, Outcome::Unchanged { .. }), "{again:?}");
    assert_eq!(det.calls(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn two_runs_at_once_pay_for_an_image_once_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
    std::fs::write(dir.path().join("uploads/00.jpg"), [0u8; 64]).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let det = Paid::new(300);
    let outs = two_at_once(&store, &det).await;
    assert_eq!(det.calls(), 1, "{outs:?}");
    assert_eq!(outs.iter().filter(|o| is_busy(o)).count(), 1, "{outs:?}");
    assert!(dir.path().join("metadata/00.jpg.json").is_file());
    assert!(!dir.path().join("metadata/00.jpg.lock").exists());
}

/// What happens around the first claim write of a test.
enum OnClaim {
    /// Another run finishes the image between our first look and our
    /// claim: its claim taken and released, its document written.
    OtherRunFinishes(DynDetector),
    /// The write is applied, then answered with this error as if its reply
    /// had been lost: a transient error, or the retry's refusal.
    ReplyLost(StorageError),
}

/// A store that plays [`OnClaim`] once, on the first claim write.
struct FirstClaim {
    inner: DynStore,
    hook: Mutex<Option<OnClaim>>,
}

impl FirstClaim {
    fn wrap(inner: DynStore, hook: OnClaim) -> DynStore {
        Arc::new(FirstClaim {
            inner,
            hook: Mutex::new(Some(hook)),
        })
    }
}

#[async_trait]
impl Layer for FirstClaim {
    fn inner(&self) -> &DynStore {
        &self.inner
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> imgtag::storage::Result<String> {
        let hook = key
            .ends_with(".lock")
            .then(|| self.hook.lock().unwrap().take());
        match hook.flatten() {
            None => self.inner.put(key, body, condition).await,
            Some(OnClaim::OtherRunFinishes(det)) => {
                let other = tag(&self.inner, &det, "uploads/00.jpg", &opts()).await;
                assert!(matches!(other, Outcome::Tagged { .. }), "{other:?}");
                self.inner.put(key, body, condition).await
            }
            Some(OnClaim::ReplyLost(e)) => {
                self.inner.put(key, body, condition).await?;
                Err(e)
            }
        }
    }
}

#[tokio::test]
async fn an_image_tagged_while_we_claimed_it_is_not_detected_again() {
    let (_mem, _server, inner) = s3_bucket(1).await;
    let det = Paid::new(0);
    let d: DynDetector = det.clone();
    let store = FirstClaim::wrap(inner, OnClaim::OtherRunFinishes(d.clone()));
    let out = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Unchanged { .. }), "{out:?}");
    assert_eq!(det.calls(), 1, "only the other run paid");
    assert!(claims_left(&store).await.is_empty());
}

fn claim_json(until: time::OffsetDateTime) -> Vec<u8> {
    let f = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    serde_json::json!({
        "By": "imgtag-tui\u{1b}[31m",
        "Token": "0123",
        "At": f(until - Duration::from_secs(300)),
        "Until": f(until),
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn live_claims_are_respected_expired_ones_taken_over_foreign_ones_left_alone() {
    let (mem, _server, store) = s3_bucket(3).await;
    let now = time::OffsetDateTime::now_utc();
    let live = claim_json(now + Duration::from_secs(3600));
    mem.insert(BUCKET, "metadata/00.jpg.lock", live.clone());
    mem.insert(
        BUCKET,
        "metadata/01.jpg.lock",
        claim_json(now - Duration::from_secs(1)),
    );
    mem.insert(BUCKET, "metadata/02.jpg.lock", &b"someone's notes"[..]);
    let det = Paid::new(0);
    let d: DynDetector = det.clone();

    let out = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(is_busy(&out), "{out:?}");
    let Outcome::Retry { message } = &out else {
        unreachable!()
    };
    assert!(
        message.contains("imgtag-tui"),
        "names the holder: {message}"
    );
    assert_eq!(det.calls(), 0, "nothing paid while another holds it");
    assert_eq!(
        mem.object(BUCKET, "metadata/00.jpg.lock").unwrap().data,
        live
    );
    assert!(mem.object(BUCKET, "metadata/00.jpg.json").is_none());

    let out = tag(&store, &d, "uploads/01.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert!(mem.object(BUCKET, "metadata/01.jpg.lock").is_none());

    let out = tag(&store, &d, "uploads/02.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(
        &mem.object(BUCKET, "metadata/02.jpg.lock").unwrap().data[..],
        b"someone's notes",
        "not ours: neither overwritten nor deleted"
    );
    assert_eq!(det.calls(), 2);
}

#[tokio::test]
async fn a_claim_that_cannot_be_written_costs_nothing_and_is_retried() {
    let (mem, _server, store) = s3_bucket(1).await;
    // More 503s than the SDK's four attempts: the claim never lands.
    mem.inject_faults(std::iter::repeat_n(s3s::S3ErrorCode::SlowDown, 5));
    let det = Paid::new(0);
    let d: DynDetector = det.clone();
    let out = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
    assert_eq!(det.calls(), 0);
}

#[tokio::test]
async fn a_deleted_claim_is_gone_and_a_changed_one_is_not_deleted() {
    let (_mem, _server, store) = s3_bucket(0).await;
    let dir = tempfile::tempdir().unwrap();
    let local: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    for store in [store, local] {
        let key = "metadata/x.jpg.lock";
        let etag = store
            .put(key, Bytes::from_static(b"a"), PutCondition::CreateOnly)
            .await
            .unwrap();
        let err = store
            .delete(key, Some("\"0123456789abcdef0123456789abcdef\""))
            .await
            .expect_err("a changed claim is not ours to delete");
        assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
        store.delete(key, Some(&etag)).await.unwrap();
        assert!(matches!(
            store.head(key).await,
            Err(StorageError::NotFound { .. })
        ));
    }
}

/// Two bulk runs at once over 60 images behind a network that fails
/// (500s, SlowDown, lost PUT replies), then a third to finish what they
/// were told to retry: every image is detected exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bulk_runs_through_faults_pay_once_per_image() {
    let n = 60;
    let (mem, server, _) = s3_bucket(n).await;
    let rates = Rates {
        internal_error: 300,
        slow_down: 300,
        lost_put_reply: 1500,
        ..Rates::default()
    };
    let proxy = FaultyProxy::start(server.addr, rates, 0xC1A1).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&proxy.endpoint()),
        BUCKET,
    ));
    let det = Paid::new(20);
    let bucket = imgtag::bucket::Bucket::new(store.clone(), Layout::default(), 70.0.into());
    let run = imgtag::cli::TagRun {
        selection: Selection::All,
        concurrency: 8,
        dry_run: false,
        yes: true,
        json: true,
        progress: false,
    };
    let go = || async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let d: DynDetector = det.clone();
        tokio::time::timeout(
            Duration::from_secs(60),
            imgtag::cli::tag(&bucket, d, opts(), &run, &mut out, &mut err),
        )
        .await
        .expect("bounded")
        .expect("the run itself never fails")
    };
    let (a, b) = tokio::join!(go(), go());
    assert_eq!(a.tally.conflicts + b.tally.conflicts, 0, "{a:?} {b:?}");
    assert!(a.tally.tagged + b.tally.tagged > 0, "{a:?} {b:?}");
    let last = go().await;
    assert_eq!(
        a.tally.tagged + b.tally.tagged + last.tally.tagged,
        n,
        "{a:?} {b:?} {last:?}"
    );
    assert_eq!(det.calls(), n, "each image paid for exactly once");
    for i in 0..n {
        assert!(
            mem.object(BUCKET, &format!("metadata/{i:02}.jpg.json"))
                .is_some()
        );
    }
    assert!(claims_left(&store).await.is_empty());
    let c = proxy.counts();
    assert!(
        c.lost_put_reply >= 5 && c.internal_error + c.slow_down >= 5,
        "{c:?}"
    );
}

async fn losing(answer: StorageError) -> (MemS3, TestServer, DynStore) {
    let (mem, server, inner) = s3_bucket(1).await;
    (
        mem,
        server,
        FirstClaim::wrap(inner, OnClaim::ReplyLost(answer)),
    )
}

#[tokio::test]
async fn a_claim_whose_write_failed_but_landed_is_not_left_behind() {
    let (_mem, _server, store) = losing(StorageError::Unavailable {
        message: "connection reset".into(),
    })
    .await;
    let det = Paid::new(0);
    let d: DynDetector = det.clone();
    let out = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
    assert_eq!(det.calls(), 0);
    assert!(claims_left(&store).await.is_empty(), "nobody would free it");
    let out = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
}

#[tokio::test]
async fn our_own_claim_met_on_a_retry_is_ours() {
    let (_mem, _server, store) = losing(StorageError::Conflict {
        key: "metadata/00.jpg.lock".into(),
        reason: "object already exists".into(),
    })
    .await;
    let det = Paid::new(0);
    let d: DynDetector = det.clone();
    let out = tag(&store, &d, "uploads/00.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(det.calls(), 1);
    assert!(claims_left(&store).await.is_empty());
}
