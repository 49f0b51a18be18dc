//! `imgtag review` and `imgtag ls --sample`: the real binary on a local
//! folder and on an S3-compatible server, and the review write's
//! conflict and ownership rules against a meddling concurrent writer.

use crate::common;
use common::fixtures::put;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::fixtures;
use common::s3mem::{self, MemS3};
use imgtag::contract::{Layout, parse_metadata};
use imgtag::pipeline::{Outcome, ReviewEdit, TagOptions, edit_review};
use imgtag::storage::{DynStore, Layer, LocalStore, PutCondition, S3Store, StorageError};

async fn run(home: &Path, bucket: &[String], args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(bucket.iter().map(String::as_str));
    common::bin::imgtag_async(home, &all).await
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

async fn body(store: &DynStore, key: &str) -> Bytes {
    store.get(key, 1 << 20).await.unwrap().body
}

async fn review_end_to_end(store: DynStore, bucket: Vec<String>) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    fixtures::populate(&store).await;
    let weak = "metadata/weak cat.jpg.json";
    let before = body(&store, weak).await;

    // A selection, dry run: listed, nothing written.
    let sel = ["--label", "feline", "--below", "70", "--add", "Cat"];
    let mut args = vec!["review", "--json", "--dry-run"];
    args.extend(sel);
    let lines = json_lines(&run(h, &bucket, &args).await);
    let keys: Vec<_> = lines.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["uploads/weak cat.jpg"]);
    assert_eq!(lines[0]["outcome"], "would-review");
    assert_eq!(body(&store, weak).await, before);

    // For real: the edit lands in the labels and in ImgTag.Review.
    let mut args = vec!["review", "--json"];
    args.extend(sel);
    let lines = json_lines(&run(h, &bucket, &args).await);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["outcome"], "tagged", "{}", lines[0]);
    let doc = parse_metadata(&body(&store, weak).await).unwrap().doc;
    let cat = doc.labels.iter().find(|l| l.name == "Cat").unwrap();
    assert_eq!(cat.confidence, 100.0);
    assert_eq!(doc.review().unwrap().added, ["Cat"]);

    // A flag keeps the label and makes a tagged image need review.
    let out = run(
        h,
        &bucket,
        &["review", "uploads/2024/cat.jpg", "--flag", "Animal"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let ls = json_lines(&run(h, &bucket, &["ls", "--json", "--status", "needs-review"]).await);
    let flagged = ls.iter().find(|v| v["key"] == "uploads/2024/cat.jpg");
    assert!(flagged.is_some(), "{ls:?}");
    let doc = parse_metadata(&body(&store, "metadata/2024/cat.jpg.json").await)
        .unwrap()
        .doc;
    assert!(doc.labels.iter().any(|l| l.name == "Animal"));
    assert_eq!(doc.review().unwrap().flagged, ["Animal"]);

    // Nothing to change, or keys and a selection at once: a usage error.
    for args in [
        vec!["review", "uploads/2024/cat.jpg"],
        vec![
            "review",
            "uploads/2024/cat.jpg",
            "--status",
            "tagged",
            "--add",
            "X",
        ],
        vec!["review", "--add", "X"],
    ] {
        let out = run(h, &bucket, &args).await;
        assert!(!out.status.success(), "{args:?} should fail");
    }

    // A malformed document is not touched by a review.
    let garbage = body(&store, "metadata/garbage.jpg.json").await;
    let out = run(h, &bucket, &["review", "uploads/garbage.jpg", "--add", "X"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("skipped"));
    assert_eq!(body(&store, "metadata/garbage.jpg.json").await, garbage);
}

const SEED_CAT: &str = r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},{"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#;
const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");

/// `uploads/{k}.png` (a real photo) and its document.
async fn put_pair(store: &DynStore, k: &str, doc: &str) {
    let image = format!("uploads/{k}.png");
    put(store, &image, Bytes::from_static(CHELSEA)).await;
    let meta = format!("metadata/{k}.png.json");
    put(store, &meta, Bytes::from(doc.to_string())).await;
}

/// `--accept` confirms the headline as it is, `--replace` swaps it in one
/// write, and a re-run of detection keeps both (issue 23).
async fn accept_and_replace(store: DynStore, bucket: Vec<String>) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    for k in ["q1", "q2"] {
        put_pair(&store, k, SEED_CAT).await;
    }
    let accepted = run(
        h,
        &bucket,
        &["review", "--json", "--accept", "uploads/q1.png"],
    )
    .await;
    let said = String::from_utf8_lossy(&accepted.stderr);
    assert!(said.contains("reviewed 1 of 1 · 0 left"), "{said}");
    let lines = json_lines(&accepted);
    assert_eq!(lines[0]["outcome"], "tagged", "{}", lines[0]);
    let doc = parse_metadata(&body(&store, "metadata/q1.png.json").await)
        .unwrap()
        .doc;
    assert_eq!(
        doc.headline().map(|l| (l.name.as_str(), l.confidence)),
        Some(("Feline", 100.0))
    );
    let c = &doc.review().unwrap().confirmed[0];
    assert_eq!(
        (c.name.as_str(), c.detector_confidence),
        ("Feline", Some(65.3))
    );
    assert_eq!(c.confirmed_by.as_deref(), Some("imgtag"));
    let weak = json_lines(&run(h, &bucket, &["ls", "--json", "--status", "needs-review"]).await);
    assert!(
        weak.iter().any(|v| v["key"] == "uploads/q2.png"),
        "{weak:?}"
    );
    assert!(
        !weak.iter().any(|v| v["key"] == "uploads/q1.png"),
        "accepted: {weak:?}"
    );
    let shown = run(h, &bucket, &["show", "uploads/q1.png"]).await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("confirmed Feline (detector 65.3)"), "{text}");

    let q2 = ["review", "--json", "uploads/q2.png", "--replace"];
    let lines = json_lines(&run(h, &bucket, &[&q2[..], &["Feline=Cat"]].concat()).await);
    assert_eq!(lines[0]["outcome"], "tagged", "{}", lines[0]);
    let before = body(&store, "metadata/q2.png.json").await;
    let doc = parse_metadata(&before).unwrap().doc;
    assert_eq!(doc.headline().map(|l| l.name.as_str()), Some("Cat"));
    assert!(!doc.labels.iter().any(|l| l.name == "Feline"));
    let lines = json_lines(&run(h, &bucket, &[&q2[..], &["Dog=Wolf"]].concat()).await);
    assert_eq!(lines[0]["outcome"], "skipped", "{}", lines[0]);
    assert_eq!(
        body(&store, "metadata/q2.png.json").await,
        before,
        "nothing written"
    );

    // A re-run of detection keeps the confirmation and the replacement.
    let tag = [
        "tag",
        "--json",
        "--force",
        "--detector",
        "local",
        "uploads/q1.png",
        "uploads/q2.png",
    ];
    let lines = json_lines(&run(h, &bucket, &tag).await);
    assert!(lines.iter().all(|v| v["outcome"] == "tagged"), "{lines:?}");
    let q1 = parse_metadata(&body(&store, "metadata/q1.png.json").await)
        .unwrap()
        .doc;
    assert!(
        q1.labels
            .iter()
            .any(|l| l.name == "Feline" && l.confidence == 100.0),
        "{:?}",
        q1.labels
    );
    assert!(q1.review().unwrap().is_confirmed("feline"));
    let q2 = parse_metadata(&body(&store, "metadata/q2.png.json").await)
        .unwrap()
        .doc;
    assert!(
        q2.labels
            .iter()
            .any(|l| l.name == "Cat" && l.confidence == 100.0)
    );
    assert!(!q2.labels.iter().any(|l| l.name == "Feline"));
}

/// `--review-below LABEL=N`: a headline's own threshold, else its
/// nearest ancestor's (Feline's is Mammal's in the taxonomy), in `ls`.
async fn per_label_thresholds(store: DynStore, bucket: Vec<String>) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let person = r#"{"Labels":[{"Name":"Person","Confidence":85.0}]}"#;
    for (k, doc) in [("th-person", person), ("th-cat", SEED_CAT)] {
        put_pair(&store, k, doc).await;
    }
    let status_of = |lines: &[serde_json::Value], key: &str| {
        lines
            .iter()
            .find(|v| v["key"] == key)
            .map(|v| v["status"].as_str().unwrap().to_string())
    };
    let plain = json_lines(&run(h, &bucket, &["ls", "--json"]).await);
    assert_eq!(
        status_of(&plain, "uploads/th-person.png").as_deref(),
        Some("tagged")
    );
    assert_eq!(
        status_of(&plain, "uploads/th-cat.png").as_deref(),
        Some("needs-review")
    );
    let args = [
        "ls",
        "--json",
        "--review-below",
        "Person=90",
        "--review-below",
        "Mammal=60",
    ];
    let per_label = json_lines(&run(h, &bucket, &args).await);
    assert_eq!(
        status_of(&per_label, "uploads/th-person.png").as_deref(),
        Some("needs-review")
    );
    assert_eq!(
        status_of(&per_label, "uploads/th-cat.png").as_deref(),
        Some("tagged")
    );
}

/// `imgtag export`: the manifest's lines parse and name only the reviewed
/// images, with whose word each label is; the CSV says the same.
async fn export_names_only_reviewed(bucket: Vec<String>, base: &str) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = run(h, &bucket, &["export"]).await;
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut refs: Vec<&str> = lines
        .iter()
        .map(|v| v["source-ref"].as_str().unwrap())
        .collect();
    refs.sort_unstable();
    let want: Vec<String> = [
        "uploads/2024/cat.jpg",
        "uploads/q1.png",
        "uploads/q2.png",
        "uploads/weak cat.jpg",
    ]
    .iter()
    .map(|k| format!("{base}/{k}"))
    .collect();
    assert_eq!(refs, want);
    let q1 = lines
        .iter()
        .find(|v| v["source-ref"].as_str().unwrap().ends_with("q1.png"))
        .unwrap();
    let labels: Vec<(&str, &str)> = (0..)
        .map_while(|i| q1.get(format!("label-{i}-metadata")))
        .map(|m| {
            (
                m["class-name"].as_str().unwrap(),
                m["human-annotated"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(labels.contains(&("Feline", "yes")), "{labels:?}");
    assert!(
        labels.iter().any(|(_, h)| *h == "no"),
        "the detector's labels too: {labels:?}"
    );

    let csv = run(h, &bucket, &["export", "--format", "csv", "--label", "cat"]).await;
    let text = String::from_utf8_lossy(&csv.stdout);
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("key,label,confidence,source"));
    let rows: Vec<&str> = rows.collect();
    assert!(
        rows.contains(&"uploads/weak cat.jpg,Cat,100,human"),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.split(',').count() == 4), "{text}");
    let reviewed = [
        "uploads/2024/cat.jpg",
        "uploads/q1.png",
        "uploads/q2.png",
        "uploads/weak cat.jpg",
    ];
    assert!(
        rows.iter()
            .all(|r| reviewed.iter().any(|k| r.starts_with(&format!("{k},")))),
        "{text}"
    );
}

async fn sample_is_reproducible(bucket: Vec<String>) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let pick = |seed: &'static str| {
        let bucket = bucket.clone();
        async move {
            let args = ["ls", "--json", "--status", "tagged,untagged,needs-review"];
            let mut args = args.to_vec();
            args.extend(["--sample", "3", "--seed", seed]);
            let lines = json_lines(&run(h, &bucket, &args).await);
            lines
                .iter()
                .map(|v| {
                    let st = v["status"].as_str().unwrap();
                    assert!(["tagged", "untagged", "needs-review"].contains(&st));
                    v["key"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
        }
    };
    let a = pick("7").await;
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a, pick("7").await, "same seed, same sample");
    let mut sorted = a.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, a, "a sample is sorted and has no repeats");
    // Over the whole bucket, some seed picks another set.
    let mut differs = false;
    for seed in ["1", "2", "3", "4", "5"] {
        differs |= pick(seed).await != a;
    }
    assert!(differs);
}

#[tokio::test]
async fn review_and_sample_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let bucket = vec!["--bucket".into(), dir.path().display().to_string()];
    review_end_to_end(store.clone(), bucket.clone()).await;
    accept_and_replace(store.clone(), bucket.clone()).await;
    per_label_thresholds(store, bucket.clone()).await;
    let base = format!("file://{}", dir.path().display());
    export_names_only_reviewed(bucket.clone(), &base).await;
    sample_is_reproducible(bucket).await;
}

#[tokio::test]
async fn review_and_sample_on_s3() {
    let mem = MemS3::new();
    mem.create_bucket("rev");
    let server = s3mem::serve(mem).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "rev",
    ));
    let bucket = vec![
        "--bucket".into(),
        "rev".into(),
        "--endpoint-url".into(),
        server.endpoint(),
        "--path-style".into(),
    ];
    review_end_to_end(store.clone(), bucket.clone()).await;
    accept_and_replace(store.clone(), bucket.clone()).await;
    per_label_thresholds(store, bucket.clone()).await;
    export_names_only_reviewed(bucket.clone(), "s3://rev").await;
    sample_is_reproducible(bucket).await;
}

/// A store on which another writer changes every metadata document just
/// before imgtag's write lands.
struct Meddling {
    inner: DynStore,
}

#[async_trait]
impl Layer for Meddling {
    fn inner(&self) -> &DynStore {
        &self.inner
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<String, StorageError> {
        let theirs = r#"{"Labels":[{"Name":"Theirs","Confidence":99.0}]}"#;
        self.inner
            .put(
                key,
                Bytes::from_static(theirs.as_bytes()),
                PutCondition::None,
            )
            .await?;
        self.inner.put(key, body, condition).await
    }
}

#[tokio::test]
async fn review_never_overwrites_a_concurrent_change_or_another_images_document() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let put = |k: &'static str, v: &'static str| {
        let store = store.clone();
        async move {
            put(&store, k, Bytes::from_static(v.as_bytes())).await;
        }
    };
    put("uploads/x.jpg", "x").await;
    put(
        "metadata/x.jpg.json",
        r#"{"Labels":[{"Name":"Cat","Confidence":80.0}]}"#,
    )
    .await;
    let opts = TagOptions::new(Layout::default(), "test");
    let edit = ReviewEdit::parse("+Dog").unwrap();
    let meddling: DynStore = Arc::new(Meddling {
        inner: store.clone(),
    });
    let out = edit_review(&meddling, "uploads/x.jpg", &edit, &opts).await;
    assert!(matches!(out, Outcome::Conflict { .. }), "{out:?}");
    let now = body(&store, "metadata/x.jpg.json").await;
    assert!(
        String::from_utf8_lossy(&now).contains("Theirs"),
        "overwritten"
    );

    // a.json is a.png's (its Source.Key says so): a review of a.jpg
    // never writes into it.
    put("uploads/a.jpg", "a").await;
    put("uploads/a.png", "b").await;
    let theirs = r#"{"Labels":[{"Name":"Dog","Confidence":90.0}],"ImgTag":{"SchemaVersion":1,
        "Source":{"Bucket":"b","Key":"uploads/a.png"},"Detector":"local","MinConfidence":55.0,
        "TaggedAt":"t","TaggedBy":"x"}}"#;
    put("metadata/a.json", theirs).await;
    let out = edit_review(&store, "uploads/a.jpg", &edit, &opts).await;
    assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
    assert_eq!(body(&store, "metadata/a.json").await, theirs.as_bytes());
    // The image it names can be reviewed through it.
    let out = edit_review(&store, "uploads/a.png", &edit, &opts).await;
    assert!(
        matches!(&out, Outcome::Tagged { metadata_key, .. } if metadata_key == "metadata/a.json"),
        "{out:?}"
    );
}
