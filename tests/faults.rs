//! The S3 store against a network that breaks: a proxy in front of the
//! in-memory S3 server injects 500 and 503 SlowDown answers, resets in the
//! middle of reply bodies, slow and stalled bodies and lost PUT replies,
//! at fixed rates from a seeded counter. Requests are made one at a time,
//! so each run meets the same faults.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::faulty_proxy::{Counts, FaultyProxy, Rates};
use common::s3mem::{self, ListQuirk, MemS3, TestServer};
use futures::TryStreamExt;
use imgtag::storage::{PutCondition, S3Store, StorageError, Store};

const BUCKET: &str = "faulty";
const SEED: u64 = 0x1D_7A_65;
/// Every test ends well within this, or fails.
const BOUND: Duration = Duration::from_secs(60);

struct Rig {
    mem: MemS3,
    _server: TestServer,
    proxy: FaultyProxy,
    store: S3Store,
}

async fn rig(rates: Rates) -> Rig {
    let mem = MemS3::new();
    mem.create_bucket(BUCKET);
    let server = s3mem::serve(mem.clone()).await;
    let proxy = FaultyProxy::start(server.addr, rates, SEED).await;
    let store = S3Store::from_client(s3mem::client(&proxy.endpoint()), BUCKET)
        .with_body_idle_timeout(Duration::from_millis(300));
    Rig {
        mem,
        _server: server,
        proxy,
        store,
    }
}

/// Distinct, incompressible-looking bytes for object `i`.
fn body(i: usize, len: usize) -> Bytes {
    let mut x = i as u64 + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", s3mem::md5_hex(data))
}

#[tokio::test]
async fn gets_survive_resets_mid_body_with_the_exact_bytes() {
    let rates = Rates {
        internal_error: 200,
        slow_down: 200,
        reset_body: 600,
        slow_body: 500,
        stall_body: 100,
        ..Rates::default()
    };
    let rig = rig(rates).await;
    let n = 150;
    for i in 0..n {
        rig.mem
            .insert(BUCKET, &format!("uploads/{i:03}.jpg"), body(i, 48 * 1024));
    }
    tokio::time::timeout(BOUND, async {
        for i in 0..n {
            let key = format!("uploads/{i:03}.jpg");
            let want = body(i, 48 * 1024);
            let obj = rig.store.get(&key, 1 << 20).await.expect("get");
            assert_eq!(obj.body, want, "{key}");
            assert_eq!(obj.info.etag.as_deref(), Some(quoted_md5(&want).as_str()));
            let part = rig.store.get_range(&key, 1000..9000).await.expect("range");
            assert_eq!(part, want.slice(1000..9000), "{key}");
        }
    })
    .await
    .expect("bounded");
    let c = rig.proxy.counts();
    eprintln!("faults injected: {c:?}");
    // The faults did happen: otherwise this test proves nothing.
    assert!(c.reset_body >= 10, "{c:?}");
    assert!(c.stall_body >= 1, "{c:?}");
    assert!(c.slow_body >= 10, "{c:?}");
    assert!(c.internal_error + c.slow_down >= 5, "{c:?}");
}

#[tokio::test]
async fn a_body_that_always_breaks_is_a_transient_error_after_three_attempts() {
    let rig = rig(Rates {
        reset_body: 10_000,
        ..Rates::default()
    })
    .await;
    rig.mem.insert(BUCKET, "uploads/a.jpg", body(1, 10_000));
    let err = tokio::time::timeout(BOUND, rig.store.get("uploads/a.jpg", 1 << 20))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Interrupted { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("uploads/a.jpg"), "{err}");
    assert_eq!(rig.proxy.counts().reset_body, 3);
    // A stalled body is given up on by the idle timeout, not waited for.
    rig.proxy.set_rates(Rates {
        stall_body: 10_000,
        ..Rates::default()
    });
    let t0 = std::time::Instant::now();
    let err = rig.store.get("uploads/a.jpg", 1 << 20).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Interrupted { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

const PUT_RATES: Rates = Rates {
    internal_error: 100,
    slow_down: 100,
    lost_put_reply: 800,
    reset_body: 0,
    slow_body: 0,
    stall_body: 0,
};

#[tokio::test]
async fn puts_whose_replies_are_lost_are_not_conflicts() {
    let rig = rig(PUT_RATES).await;
    tokio::time::timeout(BOUND, async {
        for i in 0..120 {
            let key = format!("metadata/{i:03}.jpg.json");
            let first = body(i, 300);
            let etag = rig
                .store
                .put(&key, first.clone(), PutCondition::CreateOnly)
                .await
                .unwrap_or_else(|e| panic!("create-only {key}: {e:?}"));
            assert_eq!(etag, quoted_md5(&first), "{key}");
            assert_eq!(rig.mem.object(BUCKET, &key).unwrap().data, first);
            // An update under If-Match whose reply is lost is ours too.
            let second = body(i + 1000, 300);
            let etag = rig
                .store
                .put(&key, second.clone(), PutCondition::IfMatch(etag))
                .await
                .unwrap_or_else(|e| panic!("if-match {key}: {e:?}"));
            assert_eq!(etag, quoted_md5(&second), "{key}");
            assert_eq!(rig.mem.object(BUCKET, &key).unwrap().data, second);
        }
    })
    .await
    .expect("bounded");
    let c = rig.proxy.counts();
    eprintln!("faults injected: {c:?}");
    assert!(c.lost_put_reply >= 10, "{c:?}");
}

#[tokio::test]
async fn a_genuine_concurrent_writer_is_still_a_conflict() {
    let rig = rig(PUT_RATES).await;
    tokio::time::timeout(BOUND, async {
        for i in 0..40 {
            // Someone else created the document first.
            let key = format!("metadata/{i:03}.jpg.json");
            let theirs = body(i + 5000, 200);
            rig.mem.insert(BUCKET, &key, theirs.clone());
            let err = rig
                .store
                .put(&key, body(i, 200), PutCondition::CreateOnly)
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
            assert_eq!(rig.mem.object(BUCKET, &key).unwrap().data, theirs);
            // Someone else rewrote it between our read and our write.
            let read_etag = quoted_md5(&theirs);
            let newer = body(i + 9000, 200);
            rig.mem.insert(BUCKET, &key, newer.clone());
            let err = rig
                .store
                .put(&key, body(i, 200), PutCondition::IfMatch(read_etag))
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
            assert_eq!(rig.mem.object(BUCKET, &key).unwrap().data, newer);
        }
    })
    .await
    .expect("bounded");
    let c = rig.proxy.counts();
    eprintln!("faults injected: {c:?}");
    assert!(c.lost_put_reply >= 1, "{c:?}");
}

#[tokio::test]
async fn listing_through_faults_returns_every_key_once() {
    let rig = rig(Rates {
        internal_error: 300,
        slow_down: 300,
        reset_body: 1000,
        slow_body: 500,
        ..Rates::default()
    })
    .await;
    let want: BTreeSet<String> = (0..2500).map(|i| format!("uploads/{i:05}.jpg")).collect();
    for k in &want {
        rig.mem.insert(BUCKET, k, Bytes::from_static(b"x"));
    }
    let store = rig.store.with_page_size(50);
    let pages: Vec<Vec<_>> = tokio::time::timeout(BOUND, store.list("uploads/").try_collect())
        .await
        .expect("bounded")
        .expect("listing");
    let keys: Vec<String> = pages.into_iter().flatten().map(|o| o.key).collect();
    assert_eq!(keys.len(), want.len(), "a key twice or missing");
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), want);
    let c: Counts = rig.proxy.counts();
    eprintln!("faults injected: {c:?}");
    assert!(
        c.reset_body >= 1 && c.internal_error + c.slow_down >= 1,
        "{c:?}"
    );
}

async fn broken_listing(quirk: ListQuirk) -> (StorageError, u64) {
    let mem = MemS3::new();
    mem.create_bucket(BUCKET);
    for i in 0..50 {
        mem.insert(BUCKET, &format!("uploads/{i:02}.jpg"), "x");
    }
    mem.list_quirk(Some(quirk));
    let server = s3mem::serve(mem.clone()).await;
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), BUCKET).with_page_size(10);
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        store.list("uploads/").try_collect::<Vec<_>>(),
    )
    .await
    .expect("the listing must end")
    .unwrap_err();
    (err, mem.requests())
}

#[tokio::test]
async fn a_repeated_continuation_token_ends_the_listing_with_an_error() {
    let (err, requests) = broken_listing(ListQuirk::RepeatToken).await;
    assert!(matches!(err, StorageError::BrokenListing { .. }), "{err:?}");
    assert!(err.to_string().contains("continuation token"), "{err}");
    assert!(!err.is_transient());
    // Page one, page two with the repeated token: no third request.
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn endless_empty_pages_end_the_listing_with_an_error() {
    let (err, requests) = broken_listing(ListQuirk::EmptyPages).await;
    assert!(matches!(err, StorageError::BrokenListing { .. }), "{err:?}");
    assert!(err.to_string().contains("empty pages"), "{err}");
    assert_eq!(requests, 101);
}

#[tokio::test]
async fn a_4xx_other_than_throttling_is_rejected_not_transient() {
    let mem = MemS3::new();
    mem.create_bucket(BUCKET);
    mem.insert(BUCKET, "uploads/a.jpg", "x");
    let server = s3mem::serve(mem.clone()).await;
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), BUCKET);
    mem.inject_faults([s3s::S3ErrorCode::InvalidRequest]);
    let err = store.get("uploads/a.jpg", 100).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    // Not retried: one request.
    assert_eq!(mem.requests(), 1);
    mem.inject_faults([s3s::S3ErrorCode::EntityTooLarge]);
    let err = store
        .put(
            "metadata/a.json",
            Bytes::from_static(b"{}"),
            PutCondition::None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Rejected { .. }), "{err:?}");
    assert!(!err.is_transient());
    // Throttling stays transient.
    mem.inject_faults(std::iter::repeat_n(s3s::S3ErrorCode::SlowDown, 4));
    let err = store.get("uploads/a.jpg", 100).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
