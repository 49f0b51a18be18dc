//! The review queue's writes against a failing S3 server (issue 23): an
//! undo (`u`, `pipeline::undo_review`) through 5xx and SlowDown answers,
//! past the retries and after a concurrent change; `imgtag export` when
//! GETs fail or break off mid-body: the exact lines or a clear error,
//! never a shorter export reported as done.

use crate::common;
use common::fixtures::put;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use async_trait::async_trait;

use bytes::Bytes;
use common::faulty_proxy::{FaultyProxy, Rates};
use common::s3mem::{self, MemS3};
use imgtag::catalog::Selected;
use imgtag::contract::Layout;
use imgtag::export::{ExportError, Exported, Format, export};
use imgtag::pipeline::{
    Outcome, ReviewEdit, ReviewUndo, TagOptions, edit_review_undoable, undo_review,
};
use imgtag::status::Status;
use imgtag::storage::{DynStore, Layer, PutCondition, S3Store, StorageError};
use s3s::S3ErrorCode;

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const SEED: &str = r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},{"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#;
const IMAGE: &str = "uploads/cat.png";
const META: &str = "metadata/cat.png.json";
/// Every test ends well within this, or fails.
const BOUND: Duration = Duration::from_secs(60);

async fn body(store: &DynStore, key: &str) -> Bytes {
    store.get(key, 1 << 20).await.unwrap().body
}

/// The seed's weak cat on the in-process server, reviewed once (`+Cat`):
/// the undo of that review.
async fn reviewed(store: &DynStore) -> ReviewUndo {
    put(store, IMAGE, CHELSEA).await;
    put(store, META, SEED).await;
    let opts = TagOptions::new(Layout::default(), "test");
    let edit = ReviewEdit::parse("+Cat").unwrap();
    let (out, undo) = edit_review_undoable(store, IMAGE, &edit, &opts).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    undo.expect("an undo for the write")
}

/// 500 and 503 SlowDown answers, then success: the SDK retries the one
/// conditional PUT and the document is as before, byte for byte.
#[tokio::test]
async fn an_undo_goes_through_5xx_and_slowdown() {
    let (_server, mem, store) = s3mem::bucket_store("undo").await;
    let undo = reviewed(&store).await;
    let before = mem.requests();
    mem.inject_faults([
        S3ErrorCode::InternalError,
        S3ErrorCode::SlowDown,
        S3ErrorCode::InternalError,
    ]);
    let out = undo_review(&store, &undo).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(body(&store, META).await, SEED.as_bytes());
    // Three refused PUTs, the one that landed, and the GET above.
    assert_eq!(mem.requests() - before, 3 + 1 + 1);
    let etag = mem.object("undo", META).unwrap().etag;
    assert!(etag.contains(&s3mem::md5_hex(SEED.as_bytes())), "{etag}");
}

/// Failures past the SDK's retries: reported as worth retrying, nothing
/// written; the same undo later lands once.
#[tokio::test]
async fn an_undo_past_the_retries_is_reported_and_can_be_made_later() {
    let (_server, mem, store) = s3mem::bucket_store("later").await;
    let undo = reviewed(&store).await;
    let after_review = body(&store, META).await;
    mem.inject_faults(std::iter::repeat_n(S3ErrorCode::SlowDown, 4));
    let out = undo_review(&store, &undo).await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
    assert_eq!(body(&store, META).await, after_review, "nothing written");
    let out = undo_review(&store, &undo).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(body(&store, META).await, SEED.as_bytes());
}

/// Another writer changed the document since the review: the undo is a
/// conflict and their document stays, also after a 5xx on the way.
#[tokio::test]
async fn an_undo_never_overwrites_a_change_made_since() {
    let (_server, mem, store) = s3mem::bucket_store("since").await;
    let undo = reviewed(&store).await;
    let theirs = r#"{"Labels":[{"Name":"Lynx","Confidence":99.0}]}"#;
    put(&store, META, theirs).await;
    mem.inject_faults([S3ErrorCode::InternalError]);
    let out = undo_review(&store, &undo).await;
    assert!(matches!(out, Outcome::Conflict { .. }), "{out:?}");
    assert_eq!(body(&store, META).await, theirs.as_bytes());
}

/// In the TUI: `u` while the store fails past its retries says so and
/// keeps the undo; `u` again makes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u_keeps_an_undo_the_store_refused() {
    let (_server, mem, store) = s3mem::bucket_store("tui-undo").await;
    put(&store, IMAGE, CHELSEA).await;
    put(&store, META, SEED).await;
    let det: imgtag::detection::DynDetector =
        Arc::new(imgtag::detection::LocalDetector::load().unwrap());
    let source = imgtag::tui::runtime::DetectorSource::Ready(det);
    let dir = tempfile::tempdir().unwrap();
    let mut h = common::tui::Harness::new(store.clone(), source, dir).await;
    h.select("cat.png");
    h.settle().await;
    h.send(common::tui::key('a'));
    h.settle().await;
    assert_eq!(h.status_of("cat.png"), Some(Status::Tagged));
    let accepted = body(&store, META).await;

    mem.inject_faults(std::iter::repeat_n(S3ErrorCode::SlowDown, 4));
    h.send(common::tui::key('u'));
    h.settle().await;
    let (_, text) = h.app.message.clone().unwrap();
    assert!(text.contains("u tries again"), "{text}");
    assert_eq!(body(&store, META).await, accepted);
    assert!(h.app.queue.can_undo(), "the undo is kept");

    h.send(common::tui::key('u'));
    h.settle().await;
    let (_, text) = h.app.message.clone().unwrap();
    assert!(text.contains("undone"), "{text}");
    assert_eq!(body(&store, META).await, SEED.as_bytes());
    assert_eq!(h.status_of("cat.png"), Some(Status::NeedsReview));
}

/// A store whose next `n` document writes land and then fail as if every
/// reply had been lost (the SDK's retries included).
struct LostReplies {
    inner: DynStore,
    left: AtomicUsize,
}

impl LostReplies {
    fn wrap(inner: DynStore, n: usize) -> DynStore {
        Arc::new(LostReplies {
            inner,
            left: AtomicUsize::new(n),
        })
    }
}

#[async_trait]
impl Layer for LostReplies {
    fn inner(&self) -> &DynStore {
        &self.inner
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<String, StorageError> {
        let etag = self.inner.put(key, body, condition).await?;
        let lose = |n: usize| n.checked_sub(1);
        match self.left.fetch_update(SeqCst, SeqCst, lose) {
            Ok(_) => Err(StorageError::Unavailable {
                message: "connection reset".into(),
            }),
            Err(_) => Ok(etag),
        }
    }
}

/// A review whose write landed but whose replies were all lost is made,
/// not "retry": the operator is not sent to make it again, and it can be
/// undone like any other.
#[tokio::test]
async fn a_review_that_landed_without_a_reply_is_made_and_undoable() {
    let (_server, _mem, inner) = s3mem::bucket_store("lost-review").await;
    put(&inner, IMAGE, CHELSEA).await;
    put(&inner, META, SEED).await;
    let store = LostReplies::wrap(inner.clone(), 1);
    let opts = TagOptions::new(Layout::default(), "test");
    let edit = ReviewEdit::parse("+Cat").unwrap();
    let (out, undo) = edit_review_undoable(&store, IMAGE, &edit, &opts).await;
    assert!(
        matches!(&out, Outcome::Tagged { headline: Some((h, _)), .. } if h == "Cat"),
        "{out:?}"
    );
    let undo = undo.expect("an undo for the write that landed");
    let out = undo_review(&store, &undo).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(body(&inner, META).await, SEED.as_bytes());
}

/// An undo whose write landed without a reply, then `u` again: the
/// document is already as it was, so it is undone, not a conflict; a
/// document changed since is still a conflict, left alone.
#[tokio::test]
async fn an_undo_that_landed_without_a_reply_is_not_a_conflict_on_the_next_u() {
    let (_server, _mem, inner) = s3mem::bucket_store("lost-undo").await;
    let undo = reviewed(&inner).await;
    let store = LostReplies::wrap(inner.clone(), 1);
    // The undo lands without a reply; `u` again is refused (the document is
    // no longer the review's): both say it is undone.
    for _ in 0..2 {
        let out = undo_review(&store, &undo).await;
        assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
        assert_eq!(body(&inner, META).await, SEED.as_bytes());
    }
    let theirs = r#"{"Labels":[{"Name":"Lynx","Confidence":99.0}]}"#;
    put(&inner, META, theirs).await;
    let out = undo_review(&store, &undo).await;
    assert!(matches!(out, Outcome::Conflict { .. }), "{out:?}");
    assert_eq!(body(&inner, META).await, theirs.as_bytes());
}

// ------------------------------------------------------------- export

const BUCKET: &str = "export";
const IMAGES: usize = 40;

/// Forty images, the even ones reviewed; documents padded with labels so
/// a body broken off halfway is a real loss.
fn fill(mem: &MemS3) -> Vec<Selected> {
    mem.create_bucket(BUCKET);
    (0..IMAGES)
        .map(|i| {
            let key = format!("uploads/{i:02}.jpg");
            mem.insert(BUCKET, &key, "x");
            let labels: Vec<String> = (0..40)
                .map(|n| format!(r#"{{"Name":"Thing {i} {n}","Confidence":{}}}"#, 60 + n % 40))
                .collect();
            let review = if i % 2 == 0 {
                r#","Review":{"Added":["Cat"],"Removed":[]}"#
            } else {
                ""
            };
            let doc = format!(
                r#"{{"Labels":[{}],"ImgTag":{{"SchemaVersion":1,"Source":{{"Bucket":"{BUCKET}","Key":"{key}"}}{review}}}}}"#,
                labels.join(",")
            );
            mem.insert(BUCKET, &format!("metadata/{i:02}.jpg.json"), doc);
            Selected {
                key,
                metadata_key: None,
            }
        })
        .collect()
}

struct Rig {
    _server: s3mem::TestServer,
    proxy: FaultyProxy,
    clean: DynStore,
    faulty: DynStore,
    targets: Vec<Selected>,
}

async fn rig(rates: Rates) -> Rig {
    let mem = MemS3::new();
    let targets = fill(&mem);
    let server = s3mem::serve(mem.clone()).await;
    let proxy = FaultyProxy::start(server.addr, rates, 0x23).await;
    let clean: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        BUCKET,
    ));
    let faulty: DynStore = Arc::new(
        S3Store::from_client(s3mem::client(&proxy.endpoint()), BUCKET)
            .with_body_idle_timeout(Duration::from_millis(300)),
    );
    Rig {
        _server: server,
        proxy,
        clean,
        faulty,
        targets,
    }
}

async fn run(store: &DynStore, targets: &[Selected]) -> (Result<Exported, ExportError>, String) {
    let mut out = Vec::new();
    let done = tokio::time::timeout(
        BOUND,
        export(
            &imgtag::bucket::Bucket::new(store.clone(), Layout::default(), 70.0.into()),
            targets.to_vec(),
            Format::Csv,
            &mut out,
        ),
    )
    .await
    .expect("bounded");
    (done, String::from_utf8(out).unwrap())
}

/// Resets mid-body, 500s and SlowDowns now and then: every one retried,
/// and the export is line for line the one a healthy server gives.
#[tokio::test]
async fn export_through_resets_and_5xx_is_exact() {
    let rates = Rates {
        internal_error: 400,
        slow_down: 400,
        reset_body: 1000,
        ..Rates::default()
    };
    let rig = rig(rates).await;
    let (clean, expected) = run(&rig.clean, &rig.targets).await;
    let clean = clean.unwrap();
    assert_eq!((clean.images, clean.skipped), (IMAGES / 2, IMAGES / 2));
    let (done, got) = run(&rig.faulty, &rig.targets).await;
    let counts = rig.proxy.counts();
    assert!(counts.reset_body > 0 && counts.internal_error + counts.slow_down > 0);
    assert_eq!(done.unwrap(), clean, "{counts:?}");
    assert_eq!(got, expected);
}

/// Every reply broken off mid-body, or every GET a 500: an error, never
/// an export that quietly counts the unread documents as not reviewed.
#[tokio::test]
async fn export_when_every_read_fails_is_an_error() {
    for rates in [
        Rates {
            reset_body: 10_000,
            ..Rates::default()
        },
        Rates {
            internal_error: 10_000,
            ..Rates::default()
        },
    ] {
        let rig = rig(rates).await;
        let (done, got) = run(&rig.faulty, &rig.targets).await;
        let err = done.expect_err("a failed read is not a skipped image");
        assert!(matches!(err, ExportError::Storage(_)), "{err:?}");
        assert!(got.lines().count() <= 1, "no label line: {got}");
    }
}

/// The command: exit status and message when its reads keep failing.
#[tokio::test]
async fn imgtag_export_fails_loudly() {
    let rig = rig(Rates {
        internal_error: 10_000,
        ..Rates::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let endpoint = rig.proxy.endpoint();
    let out = common::bin::imgtag_async(
        home.path(),
        &[
            "export",
            "--bucket",
            BUCKET,
            "--endpoint-url",
            &endpoint,
            "--path-style",
            "--format",
            "csv",
            "uploads/00.jpg",
            "uploads/02.jpg",
        ],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("exporting"), "{err}");
    assert!(!err.contains("exported"), "{err}");
}
