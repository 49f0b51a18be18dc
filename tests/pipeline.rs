//! The tagging pipeline end to end, on both stores, with the real local
//! model on real photos.

use crate::common;
use common::fixtures::put;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::s3mem;
use imgtag::contract::{Layout, Review, parse_metadata};
use imgtag::detection::{
    DetectFailure, DetectInput, DetectParams, Detection, Detector, DynDetector, LocalDetector,
};
use imgtag::pipeline::{Outcome, TagOptions, tag};
use imgtag::status::Status;
use imgtag::status::assess;
use imgtag::storage::{DynStore, LocalStore};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");

fn local_detector() -> DynDetector {
    static MODEL: std::sync::OnceLock<Arc<LocalDetector>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(LocalDetector::load().expect("model loads")))
        .clone()
}

fn opts() -> TagOptions {
    TagOptions::new(Layout::default(), "test")
}

async fn doc(store: &DynStore, key: &str) -> imgtag::contract::MetadataDoc {
    let obj = store
        .get(key, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    parse_metadata(&obj.body).unwrap().doc
}

fn names(d: &imgtag::contract::MetadataDoc) -> Vec<&str> {
    d.labels.iter().map(|l| l.name.as_str()).collect()
}

/// A PNG header claiming 20000x20000 with no pixel data behind it.
fn bomb_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&[0, 0, 0, 0]); // CRC (not checked before the size)
    v
}

fn one_pixel_png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(1, 1)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

async fn end_to_end(store: DynStore) {
    let det = local_detector();
    put(&store, "uploads/cats/chelsea.png", CHELSEA).await;
    put(&store, "uploads/coffee.jpg", COFFEE).await;

    let out = tag(&store, &det, "uploads/cats/chelsea.png", &opts()).await;
    let Outcome::Tagged { metadata_key, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(metadata_key, "metadata/cats/chelsea.png.json");
    let d = doc(&store, metadata_key).await;
    let n = names(&d);
    assert!(n.contains(&"Cat") && n.contains(&"Animal"), "{n:?}");
    assert!(
        d.labels
            .iter()
            .all(|l| l.confidence >= 55.0 && l.confidence <= 100.0)
    );
    let cat = d.labels.iter().find(|l| l.name == "Cat").unwrap();
    assert!(
        cat.parents.iter().any(|p| p.name == "Animal"),
        "{:?}",
        cat.parents
    );
    let t = d.imgtag.as_ref().unwrap();
    let head = store.head("uploads/cats/chelsea.png").await.unwrap();
    assert_eq!(t.source.etag.as_deref(), head.etag.as_deref());
    assert_eq!(t.source.size, Some(CHELSEA.len() as u64));
    assert_eq!(
        (
            t.detector.as_deref(),
            t.min_confidence,
            t.tagged_by.as_deref()
        ),
        (Some("local"), Some(55.0), Some("test"))
    );
    assert_eq!(
        d.label_model_version.as_deref(),
        Some(imgtag::detection::local::MODEL_VERSION)
    );
    assert!(t.error.is_none());

    // Idempotent: the same image, detector and threshold is not re-run.
    let before = store.head(metadata_key).await.unwrap().etag;
    let again = tag(&store, &det, "uploads/cats/chelsea.png", &opts()).await;
    assert!(matches!(again, Outcome::Unchanged { .. }), "{again:?}");
    assert_eq!(store.head(metadata_key).await.unwrap().etag, before);

    // Another threshold re-runs and changes the labels (a lower one: the
    // cat's labels are all above 99.8).
    let mut low = opts();
    low.min_confidence = 1.0;
    assert!(matches!(
        tag(&store, &det, "uploads/cats/chelsea.png", &low).await,
        Outcome::Tagged { .. }
    ));
    let d1 = doc(&store, metadata_key).await;
    assert!(d1.labels.len() > d.labels.len());
    assert!(d1.labels.iter().all(|l| l.confidence >= 1.0));
    assert_eq!(d1.imgtag.as_ref().unwrap().min_confidence, Some(1.0));

    // A human review survives a re-run.
    let mut reviewed = d.clone();
    reviewed.imgtag.as_mut().unwrap().review = Some(Review {
        added: vec!["Chelsea".into()],
        removed: vec!["Cat".into()],
        ..Default::default()
    });
    put(&store, metadata_key, reviewed.to_json_bytes()).await;
    let mut forced = opts();
    forced.force = true;
    assert!(matches!(
        tag(&store, &det, "uploads/cats/chelsea.png", &forced).await,
        Outcome::Tagged { .. }
    ));
    let d2 = doc(&store, metadata_key).await;
    let n2 = names(&d2);
    assert!(
        n2.contains(&"Chelsea") && !n2.contains(&"Cat") && n2.contains(&"Animal"),
        "{n2:?}"
    );
    assert_eq!(
        d2.labels
            .iter()
            .find(|l| l.name == "Chelsea")
            .unwrap()
            .confidence,
        100.0
    );
    assert_eq!(d2.review().unwrap().removed, ["Cat"]);

    // Coffee, through the same function.
    let out = tag(&store, &det, "uploads/coffee.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    let n = names(&doc(&store, "metadata/coffee.jpg.json").await).join(",");
    assert!(n.contains("Coffee") && n.contains("Beverage"), "{n}");

    bad_inputs_are_recorded_failures(&store, &det).await;
}

/// Bad inputs become recorded, visible failures; none is retried forever,
/// and none crashes anything. Keys that are not images are skipped.
async fn bad_inputs_are_recorded_failures(store: &DynStore, det: &DynDetector) {
    let truncated = &COFFEE[..COFFEE.len() / 2];
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "uploads/text.jpg",
            b"just some text, not a JPEG".to_vec(),
            "NotAnImage",
        ),
        ("uploads/truncated.jpg", truncated.to_vec(), "CorruptImage"),
        ("uploads/empty.jpg", Vec::new(), "NotAnImage"),
        ("uploads/tiny.png", one_pixel_png(), "ImageTooSmall"),
        ("uploads/bomb.png", bomb_png(), "ImageTooLarge"),
    ];
    for (key, data, code) in bad {
        put(store, key, data).await;
        let out = tag(store, det, key, &opts()).await;
        match &out {
            Outcome::Failed {
                code: c,
                metadata_key,
                ..
            } => {
                assert_eq!(c, code, "{key}");
                let read = parse_metadata(&store.get(metadata_key, 1 << 20).await.unwrap().body);
                assert!(read.as_ref().unwrap().doc.labels.is_empty());
                if key == "uploads/empty.jpg" {
                    let error = read.as_ref().unwrap().doc.error().unwrap();
                    assert!(error.message.contains("empty (0 bytes)"), "{error:?}");
                }
                assert_eq!(assess(Some(&read), None, 70.0), Status::Failed);
            }
            other => panic!("{key}: {other:?}"),
        }
        assert!(
            matches!(
                tag(store, det, key, &opts()).await,
                Outcome::Unchanged { .. }
            ),
            "{key}"
        );
    }

    // Not images at all.
    for key in ["uploads/folder/", "metadata/x.jpg.json", "elsewhere/a.jpg"] {
        assert!(
            matches!(tag(store, det, key, &opts()).await, Outcome::Skipped { .. }),
            "{key}"
        );
    }
}

#[tokio::test]
async fn pipeline_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    end_to_end(Arc::new(LocalStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn pipeline_on_s3() {
    let (_server, _, store) = s3mem::bucket_store("pipe").await;
    end_to_end(store).await;
}

/// A detector that lets a "concurrent writer" change the metadata while
/// detection runs, then answers with a fixed label.
struct Racing {
    store: DynStore,
    key: String,
    calls: AtomicUsize,
}

#[async_trait]
impl Detector for Racing {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        imgtag::detection::DetectorKind::Local
    }
    fn name(&self) -> &'static str {
        "racing"
    }
    async fn detect(&self, _: DetectInput, _: DetectParams) -> Result<Detection, DetectFailure> {
        // Different bytes each time, so the ETag really changes.
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let theirs = format!(
            r#"{{"Labels":[{{"Name":"Theirs","Confidence":{}}}]}}"#,
            90 + n
        );
        put(&self.store, &self.key, Bytes::from(theirs)).await;
        Ok(Detection {
            labels: vec![imgtag::contract::Label::new("Ours", 90.0)],
            label_model_version: None,
            image_properties: None,
            candidates: Vec::new(),
            text: Vec::new(),
        })
    }
}

#[tokio::test]
async fn a_concurrent_write_is_detected_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/a.jpg", COFFEE).await;
    let det: DynDetector = Arc::new(Racing {
        store: store.clone(),
        key: "metadata/a.jpg.json".into(),
        calls: AtomicUsize::new(0),
    });
    // No metadata when we read: our create-only write loses.
    let out = tag(&store, &det, "uploads/a.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Conflict { .. }), "{out:?}");
    assert_eq!(names(&doc(&store, "metadata/a.jpg.json").await), ["Theirs"]);
    // Metadata present when we read, changed before we write: If-Match loses.
    let mut forced = opts();
    forced.force = true;
    let out = tag(&store, &det, "uploads/a.jpg", &forced).await;
    assert!(matches!(out, Outcome::Conflict { .. }), "{out:?}");
    assert_eq!(names(&doc(&store, "metadata/a.jpg.json").await), ["Theirs"]);
}

/// Fails transiently `fails` times, then answers.
struct Flaky {
    fails: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl Detector for Flaky {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        imgtag::detection::DetectorKind::Local
    }
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn detect(&self, _: DetectInput, _: DetectParams) -> Result<Detection, DetectFailure> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fails {
            return Err(DetectFailure::Transient {
                message: "throttled".into(),
            });
        }
        Ok(Detection {
            labels: vec![imgtag::contract::Label::new("Fine", 80.0)],
            label_model_version: None,
            image_properties: None,
            candidates: Vec::new(),
            text: Vec::new(),
        })
    }
}

#[tokio::test]
async fn transient_failures_are_retried_then_reported_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/a.jpg", COFFEE).await;
    let mut o = opts();
    o.backoff = std::time::Duration::from_millis(1);
    let det: DynDetector = Arc::new(Flaky {
        fails: 2,
        calls: AtomicUsize::new(0),
    });
    assert!(matches!(
        tag(&store, &det, "uploads/a.jpg", &o).await,
        Outcome::Tagged { .. }
    ));
    put(&store, "uploads/b.jpg", CHELSEA).await;
    let det: DynDetector = Arc::new(Flaky {
        fails: 100,
        calls: AtomicUsize::new(0),
    });
    assert!(matches!(
        tag(&store, &det, "uploads/b.jpg", &o).await,
        Outcome::Retry { .. }
    ));
    assert!(
        store.head("metadata/b.jpg.json").await.is_err(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_legacy_key_is_updated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/old/cat.png", CHELSEA).await;
    put(
        &store,
        "metadata/old/cat.json",
        r#"[{"Name":"Feline","Confidence":65.3}]"#,
    )
    .await;
    let out = tag(&store, &local_detector(), "uploads/old/cat.png", &opts()).await;
    let Outcome::Tagged { metadata_key, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(metadata_key, "metadata/old/cat.json");
    assert!(store.head("metadata/old/cat.png.json").await.is_err());

    // A second image with the same stem does not take over that key.
    put(&store, "uploads/old/cat.jpg", COFFEE).await;
    let out = tag(&store, &local_detector(), "uploads/old/cat.jpg", &opts()).await;
    let Outcome::Tagged { metadata_key, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(metadata_key, "metadata/old/cat.jpg.json");
    let first = doc(&store, "metadata/old/cat.json").await;
    assert_eq!(first.imgtag.unwrap().source.key, "uploads/old/cat.png");
}

/// docs/format.md, "The metadata JSON": a document imgtag cannot read is never overwritten unless
/// the run is forced; unknown fields survive a re-tag and a review; a
/// document from a newer imgtag is not rewritten.
async fn foreign_documents_survive(store: DynStore) {
    let det = local_detector();
    let foreign = br#"{"tags":["x"],"owner":"another tool"}"#;
    let truncated = br#"{"Labels":[{"Name":"Cat","Confid"#;
    for (name, body) in [("a", &foreign[..]), ("b", &truncated[..])] {
        let image = format!("uploads/{name}.png");
        let meta = format!("metadata/{name}.png.json");
        put(&store, &image, CHELSEA).await;
        put(&store, &meta, body.to_vec()).await;
        let mut forced_rerun = opts();
        forced_rerun.force = true;
        for o in [opts(), forced_rerun] {
            let out = tag(&store, &det, &image, &o).await;
            assert!(matches!(out, Outcome::Skipped { .. }), "{name}: {out:?}");
            let now = store.get(&meta, 1 << 20).await.unwrap().body;
            assert_eq!(&now[..], body, "{name} was overwritten");
        }
        let edit = imgtag::pipeline::ReviewEdit::parse("+Cat").unwrap();
        let out = imgtag::pipeline::edit_review(&store, &image, &edit, &opts()).await;
        assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
        assert_eq!(&store.get(&meta, 1 << 20).await.unwrap().body[..], body);
        // Forced for this run: replaced.
        let mut replace = opts();
        replace.replace_unreadable = true;
        let out = tag(&store, &det, &image, &replace).await;
        assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
        assert!(doc(&store, &meta).await.imgtag.is_some());
    }

    // Unknown fields, at every level, survive a re-tag and a review.
    put(&store, "uploads/c.png", CHELSEA).await;
    let with_extras = r#"{"Labels":[{"Name":"Cat","Confidence":80.0,"Note":"by hand"}],
        "Owner":"team-a","ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"b","Key":"uploads/c.png"},
        "Detector":"local","MinConfidence":55.0,"TaggedAt":"t","TaggedBy":"x","Pipeline":"v2"}}"#;
    put(&store, "metadata/c.png.json", with_extras).await;
    let check = |raw: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(v["Owner"], "team-a", "{v}");
        assert_eq!(v["ImgTag"]["Pipeline"], "v2", "{v}");
        let cat = v["Labels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["Name"] == "Cat")
            .expect("Cat kept");
        assert_eq!(cat["Note"], "by hand", "{v}");
    };
    let edit = imgtag::pipeline::ReviewEdit::parse("+Cat !Animal").unwrap();
    let out = imgtag::pipeline::edit_review(&store, "uploads/c.png", &edit, &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    check(
        &store
            .get("metadata/c.png.json", 1 << 20)
            .await
            .unwrap()
            .body,
    );
    let out = tag(&store, &det, "uploads/c.png", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    check(
        &store
            .get("metadata/c.png.json", 1 << 20)
            .await
            .unwrap()
            .body,
    );

    // A newer schema is left alone, forced or not.
    put(&store, "uploads/d.png", CHELSEA).await;
    let newer = with_extras.replace("\"SchemaVersion\":1", "\"SchemaVersion\":99");
    put(&store, "metadata/d.png.json", newer.clone()).await;
    let mut forced = opts();
    forced.force = true;
    forced.replace_unreadable = true;
    let out = tag(&store, &det, "uploads/d.png", &forced).await;
    assert!(
        matches!(&out, Outcome::Skipped { reason } if reason.contains("SchemaVersion 99")),
        "{out:?}"
    );
    assert_eq!(
        store
            .get("metadata/d.png.json", 1 << 20)
            .await
            .unwrap()
            .body,
        newer.as_bytes()
    );
}

#[tokio::test]
async fn foreign_documents_survive_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    foreign_documents_survive(Arc::new(LocalStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn foreign_documents_survive_on_s3() {
    let (_server, _, store) = s3mem::bucket_store("foreign").await;
    foreign_documents_survive(store).await;
}

/// A real photo changed by `f`, as PNG.
fn variant(photo: &[u8], f: impl Fn(image::DynamicImage) -> image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    f(image::load_from_memory(photo).unwrap())
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// The local detector measures quality itself when IMAGE_PROPERTIES is
/// asked: a blurred copy of a photo is less sharp, a darkened one less
/// bright; the numbers land in `ImageProperties.Quality` like
/// Rekognition's, and the review rule's sharpness minimum flags the
/// blurred image, only when it is set.
#[tokio::test]
async fn local_quality_is_measured_stored_and_reviewed() {
    use imgtag::detection::quality::measure_bytes;
    use imgtag::status::ReviewRule;
    let blurred = variant(CHELSEA, |i| i.blur(4.0));
    let dark = variant(CHELSEA, |i| i.brighten(-90));
    let (q, qb, qd) = (
        measure_bytes(CHELSEA).unwrap(),
        measure_bytes(&blurred).unwrap(),
        measure_bytes(&dark).unwrap(),
    );
    assert!(qb.sharpness < q.sharpness / 2.0, "{q:?} vs blurred {qb:?}");
    assert!(qb.contrast < q.contrast, "{q:?} vs blurred {qb:?}");
    assert!(
        (qb.brightness - q.brightness).abs() < 3.0,
        "{q:?} vs {qb:?}"
    );
    assert!(qd.brightness < q.brightness - 25.0, "{q:?} vs dark {qd:?}");
    // Same for the other sample photo, a JPEG.
    let c = measure_bytes(COFFEE).unwrap();
    let cb = measure_bytes(&variant(COFFEE, |i| i.blur(4.0))).unwrap();
    assert!(cb.sharpness < c.sharpness / 2.0, "{c:?} vs blurred {cb:?}");

    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/cat.png", CHELSEA).await;
    put(&store, "uploads/blurred.png", blurred).await;
    put(&store, "uploads/coffee.jpg", COFFEE).await;
    let mut asked = opts();
    asked.features = imgtag::detection::Features::ALL;
    let det = local_detector();
    for key in ["uploads/cat.png", "uploads/blurred.png"] {
        let out = tag(&store, &det, key, &asked).await;
        assert!(matches!(out, Outcome::Tagged { .. }), "{key}: {out:?}");
    }
    // Labels only: no quality measured, none stored.
    let out = tag(&store, &det, "uploads/coffee.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert!(
        doc(&store, "metadata/coffee.jpg.json")
            .await
            .image_properties()
            .is_none()
    );

    let stored = doc(&store, "metadata/blurred.png.json").await;
    let sq = stored.image_properties().unwrap().quality.unwrap();
    assert_eq!(
        (sq.brightness, sq.sharpness, sq.contrast),
        (Some(qb.brightness), Some(qb.sharpness), Some(qb.contrast))
    );
    // Written as short decimals, like Rekognition's numbers.
    let text = String::from_utf8(
        store
            .get("metadata/blurred.png.json", 1 << 20)
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(&format!("\"Sharpness\":{}", qb.sharpness)),
        "{text}"
    );
    assert_eq!(
        stored.imgtag.as_ref().unwrap().features,
        ["GENERAL_LABELS", "IMAGE_PROPERTIES"]
    );

    let status = |key: &'static str, rule: &ReviewRule| {
        let rule = rule.clone();
        let store = store.clone();
        async move {
            let head = store.head(&format!("uploads/{key}")).await.unwrap();
            let body = store
                .get(&format!("metadata/{key}.json"), 1 << 20)
                .await
                .unwrap()
                .body;
            assess(Some(&parse_metadata(&body)), head.etag.as_deref(), rule)
        }
    };
    // The headline rule out of the way (0), so only quality decides.
    let off = ReviewRule::from(0.0);
    let sharp = ReviewRule {
        min_sharpness: Some((q.sharpness + qb.sharpness) / 2.0),
        ..off.clone()
    };
    assert_eq!(status("cat.png", &off).await, Status::Tagged);
    assert_eq!(status("blurred.png", &off).await, Status::Tagged);
    assert_eq!(status("cat.png", &sharp).await, Status::Tagged);
    assert_eq!(status("blurred.png", &sharp).await, Status::NeedsReview);
    // A document without quality numbers is not judged by them.
    assert_eq!(status("coffee.jpg", &sharp).await, Status::Tagged);
    let bright = ReviewRule {
        min_brightness: Some(q.brightness + 1.0),
        ..off
    };
    assert_eq!(status("cat.png", &bright).await, Status::NeedsReview);
}

/// The local model knows no filters: the pipeline applies them to its
/// answer, and the document records them like Rekognition's.
#[tokio::test]
async fn label_filters_apply_to_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/coffee.jpg", COFFEE).await;
    let det = local_detector();
    let out = tag(&store, &det, "uploads/coffee.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    let all: Vec<String> = names(&doc(&store, "metadata/coffee.jpg.json").await)
        .into_iter()
        .map(String::from)
        .collect();
    assert!(all.len() >= 2, "{all:?}");
    let mut filtered = opts();
    filtered.filters.label_exclusion_filters = vec![all[0].to_uppercase()];
    let out = tag(&store, &det, "uploads/coffee.jpg", &filtered).await;
    assert!(
        matches!(out, Outcome::Tagged { .. }),
        "a new request: {out:?}"
    );
    let d = doc(&store, "metadata/coffee.jpg.json").await;
    assert!(!names(&d).contains(&all[0].as_str()), "{:?}", names(&d));
    assert_eq!(names(&d).len(), all.len() - 1);
    assert_eq!(
        d.imgtag.unwrap().label_filters().label_exclusion_filters,
        [all[0].to_uppercase()]
    );
    filtered.filters.label_inclusion_filters = vec![all[1].clone()];
    let out = tag(&store, &det, "uploads/coffee.jpg", &filtered).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(
        names(&doc(&store, "metadata/coffee.jpg.json").await),
        [all[1].as_str()]
    );
}

/// `imgtag show` says what was asked when it was not the default, and
/// the quality a document records; the status follows the review rule.
#[tokio::test]
async fn show_prints_the_request_and_the_quality() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/cat.png", CHELSEA).await;
    let mut asked = opts();
    asked.features = imgtag::detection::Features::ALL;
    asked.filters.label_exclusion_filters = vec!["Pet".into()];
    let out = tag(&store, &local_detector(), "uploads/cat.png", &asked).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    let rule = imgtag::status::ReviewRule {
        min_sharpness: Some(99.0),
        ..imgtag::status::ReviewRule::from(0.0)
    };
    let shown = imgtag::cli::lookup(
        &imgtag::bucket::Bucket::new(store.clone(), Layout::default(), rule),
        "uploads/cat.png",
    )
    .await
    .unwrap();
    assert_eq!(shown.status, Status::NeedsReview);
    let mut text = Vec::new();
    imgtag::cli::print_shown(&shown, false, &mut text).unwrap();
    let parsed = shown.read.as_ref().unwrap().as_ref().unwrap();
    imgtag::cli::print_quality(&parsed.doc, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("request   GENERAL_LABELS, IMAGE_PROPERTIES; exclude-labels [Pet]\n"),
        "{text}"
    );
    assert!(text.contains("quality   brightness "), "{text}");
    let shown = imgtag::cli::lookup(
        &imgtag::bucket::Bucket::new(store.clone(), Layout::default(), 0.0.into()),
        "uploads/cat.png",
    )
    .await
    .unwrap();
    assert_eq!(shown.status, Status::Tagged, "the rule off");
}
