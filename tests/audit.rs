//! Pairing and statuses over a real bucket, local and S3, including legacy
//! metadata keys, orphans, folder placeholders and stale ETags.

use crate::common;

use std::sync::Arc;

use common::fixtures;
use common::s3mem::{self, MemS3};
use futures::TryStreamExt;
use imgtag::catalog::audit;
use imgtag::contract::{KeyKind, Layout};
use imgtag::status::Status;
use imgtag::storage::{DynStore, LocalStore, S3Store};

async fn check(store: DynStore) {
    let expected = fixtures::populate(&store).await;
    let rows: Vec<_> = audit(store, Layout::default(), 70.0)
        .try_collect()
        .await
        .unwrap();
    let got: Vec<(String, Status)> = rows
        .iter()
        .map(|a| {
            (
                a.key().to_string(),
                a.status.expect("every metadata object is readable"),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let find = |k: &str| rows.iter().find(|a| a.key() == k).unwrap();
    assert_eq!(find("uploads/legacy.png").key_kind, Some(KeyKind::Stem));
    assert_eq!(
        find("uploads/deep/dir/flat.jpg").key_kind,
        Some(KeyKind::FlatStem)
    );
    assert_eq!(
        find("uploads/2024/cat.jpg").key_kind,
        Some(KeyKind::Canonical)
    );
    assert_eq!(
        find("uploads/weak cat.jpg").headline(),
        Some(("Feline", 65.3))
    );
    assert!(
        rows.iter().all(|a| !a.key().ends_with('/')),
        "placeholders are not images"
    );
    assert!(rows.iter().all(|a| a.key() != "metadata/notes.txt"));
}

#[tokio::test]
async fn audit_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("uploads/empty-folder")).unwrap();
    check(Arc::new(
        LocalStore::open(dir.path()).unwrap().with_page_size(3),
    ))
    .await;
}

#[tokio::test]
async fn audit_an_s3_bucket() {
    let mem = MemS3::new();
    mem.create_bucket("audit");
    let server = s3mem::serve(mem).await;
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), "audit").with_page_size(3);
    check(Arc::new(store)).await;
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let mem = MemS3::new();
    let server = s3mem::serve(mem).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "nope",
    ));
    let err = audit(store, Layout::default(), 70.0)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\" does not exist"), "{err}");
}

#[tokio::test]
async fn throttling_is_retried_and_a_dead_server_is_an_error() {
    let mem = MemS3::new();
    mem.create_bucket("thr");
    mem.insert("thr", "uploads/a.jpg", "x");
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "thr",
    ));
    // Two throttled answers, then success: the SDK's retry absorbs them.
    mem.inject_faults([s3s::S3ErrorCode::SlowDown, s3s::S3ErrorCode::SlowDown]);
    let rows: Vec<_> = audit(store.clone(), Layout::default(), 70.0)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // Persistent throttling surfaces as such.
    mem.inject_faults(std::iter::repeat_n(s3s::S3ErrorCode::SlowDown, 10));
    let err = store.head("uploads/a.jpg").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // The server goes away: an error, not a hang or a panic.
    server.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let err = audit(store, Layout::default(), 70.0)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
