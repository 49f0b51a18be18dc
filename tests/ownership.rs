//! A document belongs to the image its `ImgTag.Source.Key` names, whatever
//! key it sits at (issue 21, point 1): `metadata/IMG_0001.jpg.json` is the
//! canonical key of `uploads/IMG_0001.jpg` and the flat legacy key of
//! `uploads/2024/IMG_0001.jpg`. Once the 2024 image's document sits there,
//! no path rewrites it for the other image, and every audit pairs it with
//! its owner. And a review never invents provenance (point 11).

use crate::common;
use common::fixtures::put;

use std::sync::Arc;

use bytes::Bytes;
use common::s3mem;
use futures::TryStreamExt;
use imgtag::catalog::{Assessed, audit};
use imgtag::contract::{KeyKind, Layout, parse_metadata};
use imgtag::detection::{DynDetector, LocalDetector};
use imgtag::lambda::{AllowedBuckets, HandlerOptions, S3Event, handle_s3_event};
use imgtag::pipeline::{Outcome, ReviewEdit, TagOptions, edit_review, tag};
use imgtag::status::Status;
use imgtag::storage::{DynStore, LocalStore};

const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");
const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");

const OWNER: &str = "uploads/2024/IMG_0001.jpg";
const NEWCOMER: &str = "uploads/IMG_0001.jpg";
const SHARED: &str = "metadata/IMG_0001.jpg.json";

/// What an older, flattening pipeline wrote for the 2024 image.
fn flat_doc() -> String {
    format!(
        r#"{{"Labels":[{{"Name":"Dog","Confidence":88.0}},{{"Name":"Snow","Confidence":80.0}}],
        "ImgTag":{{"SchemaVersion":1,"Source":{{"Bucket":"photos","Key":"{OWNER}"}},
        "Detector":"rekognition","MinConfidence":55.0,"TaggedAt":"2024-01-01T00:00:00Z",
        "TaggedBy":"old-pipeline"}}}}"#
    )
}

fn opts() -> TagOptions {
    TagOptions {
        backoff: std::time::Duration::from_millis(1),
        ..TagOptions::new(Layout::default(), "test")
    }
}

/// The 2024 image with its flat document, reviewed; then a newcomer whose
/// canonical key is that document's key.
async fn scene(store: &DynStore) -> Bytes {
    put(store, OWNER, Bytes::from_static(CHELSEA)).await;
    put(store, SHARED, Bytes::from(flat_doc())).await;
    let edit = ReviewEdit::parse("+Snowdog !Dog").unwrap();
    let out = edit_review(store, OWNER, &edit, &opts()).await;
    assert!(
        matches!(&out, Outcome::Tagged { metadata_key, .. } if metadata_key == SHARED),
        "the owner's review lands on its own document: {out:?}"
    );
    put(store, NEWCOMER, Bytes::from_static(COFFEE)).await;
    store.get(SHARED, 1 << 20).await.unwrap().body
}

fn skipped_for_owner(out: &Outcome) -> bool {
    matches!(out, Outcome::Skipped { reason } if reason.contains(OWNER) && reason.contains(SHARED))
}

async fn audited(store: &DynStore) -> Vec<Assessed> {
    audit(store.clone(), Layout::default(), 70.0)
        .try_collect()
        .await
        .unwrap()
}

/// The audit pairs the document with its owner and shows the newcomer
/// without one.
fn assert_right_pairing(rows: &[Assessed]) {
    let row = |k: &str| rows.iter().find(|a| a.key() == k).expect(k);
    let owner = row(OWNER);
    assert_eq!(
        owner.metadata.as_ref().map(|m| m.key.as_str()),
        Some(SHARED)
    );
    assert_eq!(owner.key_kind, Some(KeyKind::Flat));
    assert_eq!(owner.status, Some(Status::NeedsReview), "Dog is flagged");
    let newcomer = row(NEWCOMER);
    assert_eq!(newcomer.status, Some(Status::Untagged), "{newcomer:?}");
    assert!(newcomer.metadata.is_none(), "{newcomer:?}");
}

/// Tag and review of the newcomer leave the owner's document byte for
/// byte, and nothing is paid for: the check comes before detection.
async fn tag_and_review_refuse(store: &DynStore) {
    let before = scene(store).await;
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let out = tag(store, &det, NEWCOMER, &opts()).await;
    assert!(skipped_for_owner(&out), "{out:?}");
    let mut forced = opts();
    forced.force = true;
    forced.replace_unreadable = true;
    let out = tag(store, &det, NEWCOMER, &forced).await;
    assert!(skipped_for_owner(&out), "not even forced: {out:?}");
    let edit = ReviewEdit::parse("+Pizza").unwrap();
    let out = edit_review(store, NEWCOMER, &edit, &opts()).await;
    assert!(skipped_for_owner(&out), "{out:?}");
    assert_eq!(store.get(SHARED, 1 << 20).await.unwrap().body, before);
    let doc = parse_metadata(&before).unwrap().doc;
    let t = doc.imgtag.as_ref().unwrap();
    assert_eq!(t.source.key, OWNER);
    assert!(doc.labels.iter().any(|l| l.name == "Snowdog"));
    assert_right_pairing(&audited(store).await);
    // The owner is still the one it is written for.
    let out = tag(store, &det, OWNER, &opts()).await;
    assert!(
        matches!(&out, Outcome::Tagged { metadata_key, .. } if metadata_key == SHARED),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_canonical_key_owned_by_another_image_is_never_rewritten_local() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    tag_and_review_refuse(&store).await;
}

#[tokio::test]
async fn a_canonical_key_owned_by_another_image_is_never_rewritten_s3() {
    let (_server, _, store) = s3mem::bucket_store("photos").await;
    tag_and_review_refuse(&store).await;
}

/// The Lambda, on the newcomer's PUT event, skips it with the reason.
#[tokio::test]
async fn the_lambda_skips_an_upload_whose_key_is_taken() {
    let (_server, _, store) = s3mem::bucket_store("photos").await;
    let before = scene(&store).await;
    let event: S3Event = serde_json::from_str(&format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2026-11-24T10:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{{"s3SchemaVersion":"1.0","configurationId":"tag",
        "bucket":{{"name":"photos","arn":"arn:aws:s3:::photos"}},
        "object":{{"key":"{NEWCOMER}","size":1,"eTag":"x","sequencer":"0A"}}}}}}]}}"#
    ))
    .unwrap();
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let opts = HandlerOptions {
        tag: TagOptions::new(Layout::default(), "imgtag-lambda"),
        buckets: AllowedBuckets::only(["photos"]),
    };
    let s = store.clone();
    let results = handle_s3_event(&event, &|_: &str| s.clone(), &det, &opts).await;
    assert_eq!(results.len(), 1);
    assert!(skipped_for_owner(&results[0].outcome), "{results:?}");
    assert_eq!(store.get(SHARED, 1 << 20).await.unwrap().body, before);
}

/// The index pairs like the live audit: the same rule, one place.
#[tokio::test]
async fn the_index_pairs_a_taken_document_with_its_owner() {
    use imgtag::index::query::{Query, rows};
    use imgtag::index::refresh::{RefreshOptions, refresh};
    use imgtag::index::{Index, IndexSpec};
    let data = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(data.path()).unwrap());
    scene(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec::new("http://127.0.0.1", "b", &Layout::default());
    let (index, _) = Index::open(&dir.path().join("i.sqlite"), &spec).unwrap();
    let index = Arc::new(index);
    let layout = Layout::default();
    refresh(&index, &store, &layout, &RefreshOptions::default(), &|_| {})
        .await
        .unwrap();
    let q = Query {
        layout,
        review: 70.0.into(),
        filter: Default::default(),
        unreadable: Arc::default(),
    };
    let got: Vec<Assessed> = rows(&index, q).try_collect().await.unwrap();
    assert_right_pairing(&got);
}

/// A review of a document another tool wrote records who reviewed and
/// when, and invents nothing about the tagging (point 11).
#[tokio::test]
async fn a_review_never_invents_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/cat.jpg", Bytes::from_static(CHELSEA)).await;
    let seed =
        r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Feline","Confidence":65.3}]}"#;
    put(&store, "metadata/cat.jpg.json", Bytes::from(seed)).await;
    let edit = ReviewEdit::parse("+Feline").unwrap();
    let mut o = opts();
    o.tagged_by = "imgtag".into();
    let out = edit_review(&store, "uploads/cat.jpg", &edit, &o).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    let body = store
        .get("metadata/cat.jpg.json", 1 << 20)
        .await
        .unwrap()
        .body;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let t = &v["ImgTag"];
    for absent in ["TaggedAt", "TaggedBy", "Detector", "MinConfidence"] {
        assert!(t.get(absent).is_none(), "{absent} invented: {t}");
    }
    assert_eq!(t["Source"]["Key"], "uploads/cat.jpg");
    assert!(
        t["Source"]["ETag"].is_null(),
        "labels of an unknown image version: {t}"
    );
    assert_eq!(t["Review"]["ReviewedBy"], "imgtag");
    assert!(t["Review"]["ReviewedAt"].is_string());
    let doc = parse_metadata(&body).unwrap().doc;
    assert_eq!(doc.imgtag.as_ref().unwrap().provenance(), "by another tool");
    // `show` says so too.
    let s = imgtag::cli::lookup(
        &imgtag::bucket::Bucket::new(store.clone(), Layout::default(), 70.0.into()),
        "uploads/cat.jpg",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    imgtag::cli::print_shown(&s, false, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("tagged    by another tool"), "{text}");
    assert!(!text.contains("unknown"), "{text}");
}
