//! A bucket with one image in every status, in every accepted metadata
//! shape and key layout.

#![allow(dead_code)]

use bytes::Bytes;
use imgtag::status::Status;
use imgtag::storage::{DynStore, PutCondition, StoreKind};

pub const ESC_KEY: &str = "uploads/esc\u{1b}[2J\u{1b}]0;pwned\u{7}key.jpg";

fn full_doc(key: &str, etag: &str, labels: &str) -> String {
    format!(
        r#"{{"Labels":{labels},"LabelModelVersion":"3.0","ImgTag":{{"SchemaVersion":1,
        "Source":{{"Bucket":"b","Key":{key:?},"ETag":{etag:?},"Size":10}},"Detector":"rekognition",
        "MinConfidence":55.0,"MaxLabels":null,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"test",
        "Review":null,"Error":null}}}}"#
    )
}

/// A full imgtag document for the image `key` of ETag `etag` (quoted)
/// with `labels` (a JSON array).
pub fn tagged_doc(key: &str, etag: &str, labels: &str) -> String {
    full_doc(key, etag, labels)
}

/// Puts `data` at `key` unconditionally: a test's set-up, which must not
/// fail.
pub async fn put(store: &DynStore, key: &str, data: impl Into<Bytes>) {
    store
        .put(key, data.into(), PutCondition::None)
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
}

/// Fills a store and returns every key `ls` must list with its status.
pub async fn populate(store: &DynStore) -> Vec<(String, Status)> {
    let img = |s: &str| Bytes::from(format!("image bytes of {s}"));
    let md5 = |b: &Bytes| format!("\"{}\"", hex::encode(<md5::Md5 as md5::Digest>::digest(b)));
    let strong = r#"[{"Name":"Cat","Confidence":91.2,"Parents":[{"Name":"Feline"},{"Name":"Animal"}]},{"Name":"Animal","Confidence":97.0}]"#;

    if store.kind() == StoreKind::S3 {
        // Folder placeholders as the S3 console creates them.
        put(store, "uploads/", Bytes::new()).await;
        put(store, "uploads/2024/", Bytes::new()).await;
        put(store, "metadata/", Bytes::new()).await;
    }

    let cat = img("cat");
    put(store, "uploads/2024/cat.jpg", cat.clone()).await;
    put(
        store,
        "metadata/2024/cat.jpg.json",
        full_doc("uploads/2024/cat.jpg", &md5(&cat), strong),
    )
    .await;

    put(store, "uploads/weak cat.jpg", img("weak")).await;
    put(
        store,
        "metadata/weak cat.jpg.json",
        r#"{"Labels":[{"Name":"Animal","Confidence":60.1},{"Name":"Feline","Confidence":65.3}]}"#,
    )
    .await;

    put(store, "uploads/legacy.png", img("legacy")).await;
    put(
        store,
        "metadata/legacy.json",
        r#"[{"Name":"Dog","Confidence":88.0}]"#,
    )
    .await;

    put(store, "uploads/deep/dir/flat.jpg", img("flat")).await;
    put(
        store,
        "metadata/flat.json",
        r#"{"Labels":[{"Name":"Car","Confidence":99.0,"Parents":[{"Name":"Vehicle"}]}],"LabelModelVersion":"3.0","OrientationCorrection":"ROTATE_0"}"#,
    )
    .await;

    put(store, "uploads/replaced.jpg", img("new content")).await;
    put(
        store,
        "metadata/replaced.jpg.json",
        full_doc("uploads/replaced.jpg", &md5(&img("old content")), strong),
    )
    .await;

    put(store, "uploads/broken.jpg", img("broken")).await;
    let failed = full_doc("uploads/broken.jpg", &md5(&img("broken")), "[]").replace(
        r#""Error":null"#,
        r#""Error":{"Code":"InvalidImageFormat","Message":"not a JPEG or PNG"}"#,
    );
    put(store, "metadata/broken.jpg.json", failed).await;

    put(store, "uploads/garbage.jpg", img("garbage")).await;
    put(
        store,
        "metadata/garbage.jpg.json",
        "{\"Labels\": [ {\"Name\": ",
    )
    .await;

    put(store, "uploads/untagged+plus 100%.jpg", img("untagged")).await;
    put(store, ESC_KEY, img("esc")).await;

    put(store, "metadata/gone.jpg.json", r#"{"Labels":[]}"#).await;
    put(store, "metadata/notes.txt", "not metadata").await;

    let mut expected: Vec<(String, Status)> = [
        ("uploads/2024/cat.jpg", Status::Tagged),
        ("uploads/weak cat.jpg", Status::NeedsReview),
        ("uploads/legacy.png", Status::Tagged),
        ("uploads/deep/dir/flat.jpg", Status::Tagged),
        ("uploads/replaced.jpg", Status::Stale),
        ("uploads/broken.jpg", Status::Failed),
        ("uploads/garbage.jpg", Status::Malformed),
        ("uploads/untagged+plus 100%.jpg", Status::Untagged),
        (ESC_KEY, Status::Untagged),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_string(), s))
    .collect();
    expected.sort();
    expected.push(("metadata/gone.jpg.json".into(), Status::Orphan));
    expected
}
