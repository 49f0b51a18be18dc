//! The index's refresh lists each prefix as key ranges side by side
//! (`start-after` boundaries from the keys the index holds): what it
//! stores equals a serial listing, on odd keys, with listing requests
//! failing at random, and with boundaries from a stale index.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::s3mem::{self, MemS3};
use futures::TryStreamExt;
use imgtag::contract::Layout;
use imgtag::index::refresh::{RefreshOptions, RefreshStats, refresh};
use imgtag::index::{Index, IndexSpec};
use imgtag::storage::{DynStore, S3Store};

const BUCKET: &str = "ranges";

/// Small pages and small ranges: a few dozen ranges over each prefix.
fn opts() -> RefreshOptions {
    RefreshOptions {
        list_concurrency: 6,
        range_keys: 9,
        ..RefreshOptions::default()
    }
}

async fn server(mem: &MemS3) -> (s3mem::TestServer, DynStore) {
    mem.create_bucket(BUCKET);
    let server = s3mem::serve(mem.clone()).await;
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), BUCKET).with_page_size(4);
    (server, Arc::new(store))
}

/// Keys an encoder or a byte-wise comparison gets wrong: `+` (a space in
/// form encoding), `%`, spaces, multi-byte characters on both sides of
/// ASCII, and the longest key S3 takes (1,024 bytes).
fn odd_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "a+b.jpg",
        "a b.jpg",
        "a%2Bb.jpg",
        "100%.jpg",
        "%.jpg",
        "+.jpg",
        "é.jpg",
        "e\u{301}.jpg",
        "日本/猫.jpg",
        "日本/犬+猫.jpg",
        "🐈.jpg",
        "~tilde.jpg",
        "z/./x.jpg",
        "Z.jpg",
        "\u{7f}del.jpg",
        "\u{ffff}.jpg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push(format!("{}.jpg", "x".repeat(1024 - "uploads/".len() - 4)));
    names.push(format!("{}é.jpg", "ü".repeat(500)));
    for i in 0..120 {
        names.push(format!("n{i:03}{}.jpg", ["", "+", "%", " ", "é"][i % 5]));
    }
    names
}

fn populate(mem: &MemS3, names: &[String]) {
    for (i, n) in names.iter().enumerate() {
        mem.insert(BUCKET, &format!("uploads/{n}"), format!("img {i}"));
        // A document for most, not one for every image.
        if i % 4 != 0 {
            mem.insert(BUCKET, &format!("metadata/{n}.json"), "{}");
        }
    }
    // Keys just outside the prefixes: never listed into them.
    mem.insert(BUCKET, "uploads", "x");
    mem.insert(BUCKET, "uploads0", "x");
    mem.insert(BUCKET, "metadata.json", "x");
}

/// Every object under both prefixes, by a serial listing: key, size, ETag.
async fn serial(store: &DynStore) -> Vec<(String, i64, String)> {
    let mut all = Vec::new();
    for prefix in ["metadata/", "uploads/"] {
        let pages: Vec<_> = store.list(prefix).try_collect().await.unwrap();
        for o in pages.into_iter().flatten() {
            all.push((o.key, o.size as i64, o.etag.unwrap_or_default().to_string()));
        }
    }
    all.sort();
    all
}

/// What the index holds of each object.
fn indexed(path: &Path) -> Vec<(String, i64, String)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        // An MD5 ETag is stored as its 16 bytes: shown as the store gives it.
        .prepare(
            "SELECT key, size, CASE typeof(etag) WHEN 'blob' \
             THEN '\"' || lower(hex(etag)) || '\"' ELSE etag END FROM objects ORDER BY key",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

async fn refreshed(index: &Arc<Index>, store: &DynStore) -> RefreshStats {
    refresh(index, store, &Layout::default(), &opts(), &|_| {})
        .await
        .unwrap()
}

fn open(path: &Path) -> Arc<Index> {
    let spec = IndexSpec::new("http://127.0.0.1", BUCKET, &Layout::default());
    Arc::new(Index::open(path, &spec).unwrap().0)
}

#[tokio::test]
async fn list_after_seeks_past_odd_keys() {
    let mem = MemS3::new();
    let (_server, store) = server(&mem).await;
    populate(&mem, &odd_names());
    assert!(store.seeks());
    let all: Vec<String> = store
        .list("uploads/")
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .map(|o| o.key)
        .collect();
    for (i, after) in all.iter().enumerate().step_by(7) {
        let rest: Vec<String> = store
            .list_after("uploads/", Some(after))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .flatten()
            .map(|o| o.key)
            .collect();
        assert_eq!(rest, all[i + 1..], "after {after:?}");
    }
}

#[tokio::test]
async fn a_split_listing_equals_a_serial_one_on_odd_keys() {
    let mem = MemS3::new();
    let (_server, store) = server(&mem).await;
    let names = odd_names();
    populate(&mem, &names);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.sqlite");
    let index = open(&path);
    let want = serial(&store).await;
    let first = refreshed(&index, &store).await;
    assert_eq!(first.listed as usize, want.len());
    assert_eq!(indexed(&path), want);

    // The re-open lists in ranges cut at the index's keys, side by side.
    mem.set_latency(std::time::Duration::from_millis(5));
    let again = refreshed(&index, &store).await;
    assert_eq!(again.listed as usize, want.len(), "{again:?}");
    assert_eq!((again.added, again.changed, again.removed), (0, 0, 0));
    assert_eq!(indexed(&path), want);
    // One stream per prefix would make two at once.
    assert!(
        mem.lists_peak() > 2,
        "{} listing requests at once at most",
        mem.lists_peak()
    );
}

#[tokio::test]
async fn a_split_listing_survives_requests_failing_at_random() {
    let mem = MemS3::new();
    let (_server, store) = server(&mem).await;
    let names = odd_names();
    populate(&mem, &names);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.sqlite");
    let index = open(&path);
    refreshed(&index, &store).await;
    // Changes since, then a quarter of all listing requests fail: the
    // SDK's retries give up on some pages, whose ranges are listed again.
    // (Not a half: once the SDK's retry quota is spent, each attempt is
    // one request, and ten failures in a row at one page end the refresh,
    // by design; at a half that is one page in a thousand, at a quarter
    // one in a million.)
    for (i, n) in names.iter().enumerate().step_by(3) {
        mem.insert(BUCKET, &format!("uploads/{n}"), format!("new {i}"));
    }
    for seed in 1..=3 {
        mem.list_faults(FAULT_RATE, seed);
        let stats = refreshed(&index, &store).await;
        mem.list_faults(0.0, 0);
        let want = serial(&store).await;
        assert_eq!(stats.listed as usize, want.len(), "{stats:?}");
        assert_eq!(indexed(&path), want, "seed {seed}");
    }
}

#[tokio::test]
async fn boundaries_from_a_stale_index_list_every_key_once() {
    let mem = MemS3::new();
    let (_server, store) = server(&mem).await;
    let names = odd_names();
    populate(&mem, &names);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.sqlite");
    let index = open(&path);
    refreshed(&index, &store).await;

    // Since: every fifth key gone (many of them the ranges' boundaries),
    // keys added before the first, after the last and between others,
    // some replaced.
    let before: BTreeSet<String> = serial(&store).await.into_iter().map(|o| o.0).collect();
    let mut removed = BTreeSet::new();
    for (i, key) in before.iter().enumerate() {
        if i % 5 == 2 {
            mem.delete(BUCKET, key);
            removed.insert(key.clone());
        }
    }
    let mut added = BTreeSet::new();
    for key in before.iter().step_by(4).filter(|k| !removed.contains(*k)) {
        added.insert(format!("{key}~added"));
        added.insert(format!("{key}+"));
    }
    added.extend(
        [
            "uploads/!first",
            "uploads/\u{10ffff}last",
            "metadata/ first.json",
        ]
        .map(String::from),
    );
    for key in &added {
        mem.insert(BUCKET, key, "added");
    }
    let mut changed = 0;
    for key in before
        .iter()
        .skip(1)
        .step_by(6)
        .filter(|k| !removed.contains(*k))
    {
        mem.insert(BUCKET, key, "replaced");
        changed += 1;
    }

    let stats = refreshed(&index, &store).await;
    let want = serial(&store).await;
    assert_eq!(indexed(&path), want);
    assert_eq!(stats.listed as usize, want.len(), "each key listed once");
    assert_eq!(stats.added as usize, added.len());
    assert_eq!(stats.changed as usize, changed);
    let gone: Vec<String> = stats.removed_keys.clone();
    assert_eq!(gone.len(), removed.len(), "each key removed once");
    assert_eq!(gone.into_iter().collect::<BTreeSet<_>>(), removed);
}

/// Many keys of the bucket's usual shape around the odd ones: enough
/// pages for a first open to probe and cut its ranges.
/// The share of listing requests the fault tests fail (see
/// `a_split_listing_survives_requests_failing_at_random`'s comment).
const FAULT_RATE: f64 = 0.25;

fn many_names() -> Vec<String> {
    let mut names = odd_names();
    names.extend((0..400).map(|i| format!("2024/{:05}-photo.jpg", i * 37)));
    names
}

#[tokio::test]
async fn a_first_open_probes_and_lists_side_by_side() {
    let mem = MemS3::new();
    let (_server, store) = server(&mem).await;
    populate(&mem, &many_names());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.sqlite");
    let index = open(&path);
    let want = serial(&store).await;
    // No key in the index to cut at: the ranges come from probing.
    mem.set_latency(std::time::Duration::from_millis(5));
    let first = refreshed(&index, &store).await;
    assert_eq!(first.listed as usize, want.len(), "each key listed once");
    assert_eq!(first.added as usize, want.len());
    assert_eq!(indexed(&path), want);
    assert!(
        mem.lists_peak() > 2,
        "{} listing requests at once at most",
        mem.lists_peak()
    );
}

#[tokio::test]
async fn a_probed_first_open_survives_requests_failing_at_random() {
    for seed in 1..=3 {
        let mem = MemS3::new();
        let (_server, store) = server(&mem).await;
        populate(&mem, &many_names());
        let want = serial(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ix.sqlite");
        let index = open(&path);
        mem.list_faults(FAULT_RATE, seed);
        let stats = refreshed(&index, &store).await;
        mem.list_faults(0.0, 0);
        assert_eq!(stats.listed as usize, want.len(), "seed {seed}: {stats:?}");
        assert_eq!(indexed(&path), want, "seed {seed}");
    }
}
