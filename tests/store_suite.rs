//! One behavioural suite, run against every store: a local folder, S3 via
//! `s3s-fs` over HTTP on loopback, and S3 via the in-memory service.

use crate::common;
use common::fixtures::put;

use std::sync::Arc;

use bytes::Bytes;
use common::s3mem::{self, MemS3};
use futures::TryStreamExt;
use imgtag::storage::{DynStore, LocalStore, PutCondition, S3Store, StorageError, Store};

const BUCKET: &str = "suite-bucket";
const ODD_KEYS: &[&str] = &[
    "uploads/with space.jpg",
    "uploads/plus+sign.jpg",
    "uploads/100% real.jpg",
    "uploads/caf\u{e9}/\u{732b} \u{1f431}.png",
    "uploads/quote\"amp&lt<.jpg",
    "uploads/ctl\u{1b}[31mred\u{7}.jpg",
];

fn md5_quoted(data: &[u8]) -> String {
    format!("\"{}\"", s3mem::md5_hex(data))
}

async fn list_all(store: &DynStore, prefix: &str) -> Vec<imgtag::storage::ObjectInfo> {
    let pages: Vec<_> = store.list(prefix).try_collect().await.expect("listing");
    assert!(pages.iter().all(|p| !p.is_empty()), "empty page in listing");
    pages.into_iter().flatten().collect()
}

/// The body every store must pass. `page_size` is the page size the store
/// was built with; `control_keys` is false only for a server that cannot
/// list keys holding control characters (s3s-fs, which does not encode).
async fn exercise(store: DynStore, page_size: usize, control_keys: bool) {
    let odd_keys: Vec<&str> = ODD_KEYS
        .iter()
        .copied()
        .filter(|k| control_keys || !k.chars().any(char::is_control))
        .collect();
    // Conditional writes.
    let key = "metadata/cond.jpg.json";
    let e1 = store
        .put(key, Bytes::from_static(b"one"), PutCondition::CreateOnly)
        .await
        .expect("first create-only put");
    assert_eq!(
        imgtag::contract::normalize_etag(&e1),
        s3mem::md5_hex(b"one")
    );
    let err = store
        .put(key, Bytes::from_static(b"two"), PutCondition::CreateOnly)
        .await
        .expect_err("second create-only put must fail");
    assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
    let err = store
        .put(
            key,
            Bytes::from_static(b"two"),
            PutCondition::IfMatch(md5_quoted(b"nope")),
        )
        .await
        .expect_err("wrong If-Match must fail");
    assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
    let e2 = store
        .put(
            key,
            Bytes::from_static(b"two"),
            PutCondition::IfMatch(e1.clone()),
        )
        .await
        .expect("right If-Match");
    assert_eq!(normalize(&e2), s3mem::md5_hex(b"two"));
    let err = store
        .put(
            "metadata/gone.json",
            Bytes::from_static(b"x"),
            PutCondition::IfMatch(e2.clone()),
        )
        .await
        .expect_err("If-Match on a missing object must fail");
    assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
    // Another writer's identical body is still another writer's: two runs
    // can build the same document in the same second.
    let err = store
        .put(key, Bytes::from_static(b"two"), PutCondition::CreateOnly)
        .await
        .expect_err("create-only over an identical body must fail");
    assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
    let got = store.get(key, 1 << 20).await.unwrap();
    assert_eq!(&got.body[..], b"two", "the failed writes changed nothing");

    // Deletes: gone after, and deleting what is gone is no error.
    let doomed = "metadata/doomed.jpg.lock";
    put(&store, doomed, Bytes::from_static(b"x")).await;
    store.delete(doomed, None).await.expect("delete");
    let err = store.head(doomed).await.expect_err("deleted");
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    store
        .delete(doomed, None)
        .await
        .expect("delete of a missing key");

    // Whole, limited and ranged reads; head; missing keys.
    let body = Bytes::from_static(b"0123456789");
    let k = "uploads/range.bin";
    put(&store, k, body.clone()).await;
    let got = store.get(k, 10).await.unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.info.size, 10);
    assert_eq!(
        got.info.etag.as_deref().map(normalize),
        Some(s3mem::md5_hex(&body))
    );
    let err = store.get(k, 9).await.expect_err("over the limit");
    assert!(
        matches!(
            err,
            StorageError::TooLarge {
                size: 10,
                limit: 9,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(&store.get_range(k, 2..5).await.unwrap()[..], b"234");
    assert_eq!(&store.get_range(k, 7..100).await.unwrap()[..], b"789");
    let head = store.head(k).await.unwrap();
    assert_eq!((head.size, head.etag), (10, got.info.etag.clone()));
    assert!(matches!(
        store.get("uploads/missing.jpg", 10).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.head("uploads/missing.jpg").await,
        Err(StorageError::NotFound { .. })
    ));

    // Odd keys round-trip through put, get and list.
    for (i, key) in odd_keys.iter().enumerate() {
        let data = Bytes::from(format!("odd {i}"));
        store
            .put(key, data.clone(), PutCondition::CreateOnly)
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
        let got = store
            .get(key, 100)
            .await
            .unwrap_or_else(|e| panic!("get {key:?}: {e}"));
        assert_eq!(got.body, data, "{key:?}");
    }

    // Many pages, in S3 key order, prefix respected.
    let mut expected: Vec<String> = (0..3 * page_size + 2)
        .map(|i| format!("uploads/p/{i:05}.jpg"))
        .collect();
    for k in &expected {
        put(&store, k, Bytes::from_static(b"x")).await;
    }
    for k in [
        "uploads/a-b.jpg",
        "uploads/a/b.jpg",
        "uploads/a0.jpg",
        "uploadsX/no.jpg",
    ] {
        put(&store, k, Bytes::from_static(b"y")).await;
    }
    let pages: Vec<_> = store.list("uploads/p/").try_collect().await.unwrap();
    assert_eq!(pages.len(), 4, "3 full pages and a short one");
    assert!(pages[..3].iter().all(|p| p.len() == page_size));
    let listed: Vec<String> = pages.into_iter().flatten().map(|o| o.key).collect();
    assert_eq!(listed, expected);

    let all = list_all(&store, "uploads/").await;
    let keys: Vec<&str> = all.iter().map(|o| o.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "listing is in byte order");
    let pos = |k: &str| {
        keys.iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{k:?} not listed"))
    };
    assert!(pos("uploads/a-b.jpg") < pos("uploads/a/b.jpg"));
    assert!(pos("uploads/a/b.jpg") < pos("uploads/a0.jpg"));
    for k in &odd_keys {
        pos(k);
    }
    assert!(!keys.contains(&"uploadsX/no.jpg"));
    for o in &all {
        if let Some(e) = &o.etag {
            let h = store.head(&o.key).await.unwrap();
            assert_eq!(
                Some(normalize(e)),
                h.etag.as_deref().map(normalize),
                "{:?}",
                o.key
            );
        }
    }
    let partial: Vec<String> = list_all(&store, "uploads/a")
        .await
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        partial,
        ["uploads/a-b.jpg", "uploads/a/b.jpg", "uploads/a0.jpg"]
    );
    assert!(list_all(&store, "nothing/here/").await.is_empty());
    expected.clear();
}

fn normalize(e: &str) -> String {
    imgtag::contract::normalize_etag(e).to_string()
}

#[tokio::test]
async fn local_folder_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap().with_page_size(7);
    exercise(Arc::new(store), 7, true).await;
    // No temp files are left behind by the writes.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains(".imgtag-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn s3_store_on_in_memory_server() {
    let mem = MemS3::new();
    mem.create_bucket(BUCKET);
    let server = s3mem::serve(mem.clone()).await;
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), BUCKET).with_page_size(7);
    exercise(Arc::new(store), 7, true).await;
}

#[tokio::test]
async fn s3_store_on_s3s_fs_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
    let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
    let server = s3mem::serve(fs).await;
    // s3s-fs echoes `encoding-type=url` without encoding the keys.
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), BUCKET)
        .with_page_size(7)
        .with_url_encoded_listing(false);
    exercise(Arc::new(store), 7, false).await;
}

#[tokio::test]
async fn local_store_refuses_escaping_keys_and_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("bucket").as_path());
    assert!(matches!(store, Err(StorageError::NoSuchBucket { .. })));
    let store = LocalStore::open(dir.path()).unwrap();
    for key in ["../escape.json", "uploads/../../x", "/etc/passwd", "a//b"] {
        let err = store
            .put(key, Bytes::from_static(b"x"), PutCondition::None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidKey { .. }),
            "{key:?}: {err:?}"
        );
    }
    assert!(!dir.path().parent().unwrap().join("escape.json").exists());
}
