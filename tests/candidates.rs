//! `ImgTag.Candidates` (issue 23, one-key corrections): what the detector
//! saw below MinConfidence, written by the pipeline for the local model and
//! for Rekognition (one call, asked at a lower floor and split), replaced
//! by each re-run, and read leniently: an old document without them, or a
//! foreign one with a field of that name in another shape, still reads.

use crate::common;
use common::fixtures::put;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use bytes::Bytes;
use common::s3mem;
use imgtag::contract::{Label, Layout, MAX_CANDIDATES, parse_metadata};
use imgtag::detection::{
    DetectFailure, DetectInput, DetectParams, Detection, Detector, DetectorKind, DynDetector,
    LocalDetector, RekognitionDetector,
};
use imgtag::pipeline::{Outcome, ReviewEdit, TagOptions, edit_review, tag};
use imgtag::status::Status;
use imgtag::storage::{DynStore, LocalStore, S3Store};
use imgtag::suggest::Source;
use serde_json::Value;

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const TWO_DOGS: &[u8] = include_bytes!("../assets/eval/two-dogs.jpg");
const IMAGE: &str = "uploads/cat.png";
const META: &str = "metadata/cat.png.json";

fn opts() -> TagOptions {
    TagOptions {
        backoff: std::time::Duration::from_millis(1),
        ..TagOptions::new(Layout::default(), "test")
    }
}

fn folder() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    (dir, store)
}

async fn body(store: &DynStore) -> Bytes {
    store.get(META, 1 << 20).await.unwrap().body
}

/// `ImgTag.Candidates` exactly as written (not through the lenient
/// reader, which would hide a writer's mistakes).
async fn written(store: &DynStore) -> Option<Vec<(String, f64)>> {
    let doc: Value = serde_json::from_slice(&body(store).await).unwrap();
    let list = doc["ImgTag"].get("Candidates")?.as_array()?.clone();
    let pair = |c: &Value| {
        let name = c["Name"].as_str().unwrap().to_string();
        (name, c["Confidence"].as_f64().unwrap())
    };
    Some(list.iter().map(pair).collect())
}

/// The local model on a real photo (two spaniels): the classifier's next
/// names, each below MinConfidence, most confident first, at most ten,
/// none a label; the breed it nearly named is the first suggestion.
#[tokio::test]
async fn the_local_model_writes_what_it_saw_below_min_confidence() {
    let (_dir, store) = folder();
    put(&store, IMAGE, TWO_DOGS).await;
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let out = tag(&store, &det, IMAGE, &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    let seen = written(&store).await.expect("candidates written");
    assert!(seen.len() > 1 && seen.len() <= MAX_CANDIDATES, "{seen:?}");
    assert!(seen.iter().all(|(_, c)| *c < 55.0 && *c > 0.0), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "{seen:?}");
    let doc = parse_metadata(&body(&store).await).unwrap().doc;
    for (name, _) in &seen {
        assert!(!doc.labels.iter().any(|l| l.name.eq_ignore_ascii_case(name)));
    }
    assert_eq!(seen[0].0, "Cocker Spaniel", "{seen:?}");
    let headline = doc.headline().unwrap();
    assert_eq!(headline.name, "Spaniel");
    let first = &imgtag::suggest::ranked(&doc, &[])[0];
    assert_eq!(first.name, "Cocker Spaniel");
    assert!(matches!(first.source, Source::Detector(c) if c < 55.0));
}

/// A detector that answers with fixed labels and candidates, counting.
struct Fixed {
    candidates: Vec<imgtag::contract::Candidate>,
}

#[async_trait]
impl Detector for Fixed {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Local
    }
    async fn detect(&self, _: DetectInput, p: DetectParams) -> Result<Detection, DetectFailure> {
        Ok(Detection {
            labels: vec![Label::new("Animal", 98.0), Label::new("Feline", 65.0)],
            candidates: if p.candidates {
                self.candidates.clone()
            } else {
                Vec::new()
            },
            ..Detection::default()
        })
    }
}

fn fixed(candidates: &[(&str, f32)]) -> DynDetector {
    let candidates = candidates
        .iter()
        .map(|&(n, c)| imgtag::contract::Candidate::new(n, c))
        .collect();
    Arc::new(Fixed { candidates })
}

/// The pipeline keeps the contract whatever a detector returns: below
/// MinConfidence, no label's name, no unsafe name, each once, sorted,
/// bounded; a re-run replaces them, and a run without any leaves none.
#[tokio::test]
async fn the_pipeline_normalises_and_replaces_candidates() {
    let (_dir, store) = folder();
    put(&store, IMAGE, CHELSEA).await;
    let mut many: Vec<(String, f32)> = (0..14).map(|i| (format!("Cat {i}"), i as f32)).collect();
    many.extend([
        ("Feline".into(), 40.0),
        ("Too Sure".into(), 55.0),
        ("Bad\u{1b}[31m".into(), 50.0),
        ("cat 13".into(), 1.0),
        ("Tabby".into(), 41.5),
    ]);
    let refs: Vec<(&str, f32)> = many.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let out = tag(&store, &fixed(&refs), IMAGE, &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    let seen = written(&store).await.unwrap();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), MAX_CANDIDATES);
    assert_eq!(names[..3], ["Tabby", "Cat 13", "Cat 12"], "{names:?}");
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "{seen:?}");

    // A re-run replaces them (the detector's, never a human's).
    let again = TagOptions {
        force: true,
        ..opts()
    };
    tag(&store, &fixed(&[("Lynx", 30.0)]), IMAGE, &again).await;
    assert_eq!(written(&store).await.unwrap(), [("Lynx".to_string(), 30.0)]);
    // A run that keeps none leaves no field: the document is as before.
    let none = TagOptions {
        candidates: false,
        ..again
    };
    tag(&store, &fixed(&[("Lynx", 30.0)]), IMAGE, &none).await;
    assert!(written(&store).await.is_none());
    assert!(!String::from_utf8_lossy(&body(&store).await).contains("Candidates"));
}

fn rekognition_answer() -> DetectLabelsOutput {
    let label = |n: &str, c: f32| {
        aws_sdk_rekognition::types::Label::builder()
            .name(n)
            .confidence(c)
            .build()
    };
    DetectLabelsOutput::builder()
        .labels(label("Animal", 98.2))
        .labels(label("Feline", 60.0))
        .labels(label("Pet", 55.0))
        .labels(label("Cat", 52.4))
        .labels(label("Lynx", 41.0))
        .label_model_version("3.0")
        .build()
}

async fn rekognition_run(opts: &TagOptions, floor: f32) -> (usize, Bytes) {
    let (_server, _mem, store) = s3mem::bucket_store("rek").await;
    put(&store, IMAGE, CHELSEA).await;
    let rule = mock!(Client::detect_labels)
        .match_requests(move |r| r.min_confidence() == Some(floor))
        .then_output(rekognition_answer);
    let client = mock_client!(aws_sdk_rekognition, RuleMode::MatchAny, [&rule]);
    let det: DynDetector = Arc::new(RekognitionDetector::from_client(client, 1));
    let out = tag(&store, &det, IMAGE, opts).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    (rule.num_calls(), body(&store).await)
}

/// Rekognition: one call, asked at MinConfidence - 25 (never under 40),
/// split at MinConfidence: labels at or above it, candidates below.
#[tokio::test]
async fn rekognition_is_asked_once_at_a_lower_floor_and_split() {
    let (calls, bytes) = rekognition_run(&opts(), 40.0).await;
    assert_eq!(calls, 1, "one paid call, never a second");
    let doc = parse_metadata(&bytes).unwrap().doc;
    let labels: Vec<&str> = doc.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(labels, ["Animal", "Feline", "Pet"]);
    let info = doc.imgtag.unwrap();
    assert_eq!(
        info.min_confidence,
        Some(55.0),
        "the operator's, not the floor"
    );
    let seen: Vec<(String, f32)> = info
        .candidates()
        .into_iter()
        .map(|c| (c.name, c.confidence))
        .collect();
    assert_eq!(
        seen,
        [("Cat".to_string(), 52.4), ("Lynx".to_string(), 41.0)]
    );

    // Without candidates the request is what it always was.
    let plain = TagOptions {
        candidates: false,
        ..opts()
    };
    let (calls, bytes) = rekognition_run(&plain, 55.0).await;
    assert_eq!(calls, 1);
    assert!(!String::from_utf8_lossy(&bytes).contains("Candidates"));
    assert_eq!(parse_metadata(&bytes).unwrap().doc.labels.len(), 3);
}

/// An imgtag document from before candidates: read, reviewed, and
/// rewritten without the field.
#[tokio::test]
async fn an_old_document_is_rewritten_without_candidates() {
    let (_dir, store) = folder();
    put(&store, IMAGE, CHELSEA).await;
    let old = r#"{"Labels":[{"Name":"Animal","Confidence":98.2,"Parents":[],"Aliases":[],"Categories":[],"Instances":[]},{"Name":"Feline","Confidence":65.3,"Parents":[],"Aliases":[],"Categories":[],"Instances":[]}],"ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"b","Key":"uploads/cat.png","ETag":null,"Size":null},"Detector":"local","MinConfidence":55.0,"MaxLabels":null,"Review":null,"Error":null}}"#;
    put(&store, META, old).await;
    let parsed = parse_metadata(old.as_bytes()).unwrap();
    assert!(parsed.doc.imgtag.as_ref().unwrap().candidates().is_empty());
    // Parsed and written again: byte for byte what it was.
    assert_eq!(parsed.doc.to_json_bytes(), format!("{old}\n").into_bytes());
    let edit = ReviewEdit::parse("+Cat").unwrap();
    let out = edit_review(&store, IMAGE, &edit, &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert!(written(&store).await.is_none());
    // Re-tagged by a detector that saw nothing below MinConfidence: still
    // no field, not an empty one.
    let again = TagOptions {
        force: true,
        ..opts()
    };
    let out = tag(&store, &fixed(&[]), IMAGE, &again).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert!(!String::from_utf8_lossy(&body(&store).await).contains("Candidates"));
}

/// A foreign document whose `Candidates` has another shape: its labels
/// and status read as ever, it offers no candidates, and a review keeps
/// the field as it was.
#[tokio::test]
async fn malformed_candidates_never_break_reading_labels() {
    let (_dir, store) = folder();
    put(&store, IMAGE, CHELSEA).await;
    for odd in [
        r#""many""#,
        r#"{"Name":"Cat"}"#,
        r#"[{"Name":7},{"Confidence":"x"}]"#,
    ] {
        let doc = format!(
            r#"{{"Labels":[{{"Name":"Feline","Confidence":65.3}}],"ImgTag":{{"SchemaVersion":1,"Source":{{"Bucket":"b","Key":"uploads/cat.png"}},"MinConfidence":55,"Candidates":{odd}}}}}"#
        );
        put(&store, META, doc.clone()).await;
        let parsed = parse_metadata(doc.as_bytes()).expect("still readable");
        assert_eq!(parsed.doc.labels[0].name, "Feline");
        assert!(parsed.doc.imgtag.as_ref().unwrap().candidates().is_empty());
        let status = imgtag::status::assess(Some(&Ok(parsed.clone())), None, 70.0);
        assert_eq!(status, Status::NeedsReview);
        let out = edit_review(&store, IMAGE, &ReviewEdit::parse("+Cat").unwrap(), &opts()).await;
        assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
        let after: Value = serde_json::from_slice(&body(&store).await).unwrap();
        let kept: Value = serde_json::from_str(odd).unwrap();
        assert_eq!(after["ImgTag"]["Candidates"], kept, "kept as it was");
    }
}

/// Rekognition through the S3 store, by reference: the floor is sent on
/// the one call there too.
#[tokio::test]
async fn rekognition_by_reference_sends_the_floor() {
    let mem = s3mem::MemS3::new();
    mem.create_bucket("ref");
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(
        S3Store::from_client(s3mem::client(&server.endpoint()), "ref").with_aws_readable(true),
    );
    put(&store, IMAGE, CHELSEA).await;
    let rule = mock!(Client::detect_labels)
        .match_requests(|r| {
            r.image().and_then(|i| i.s3_object()).is_some() && r.min_confidence() == Some(55.0)
        })
        .then_output(rekognition_answer);
    let client = mock_client!(aws_sdk_rekognition, RuleMode::MatchAny, [&rule]);
    let det: DynDetector = Arc::new(RekognitionDetector::from_client(client, 1));
    let high = TagOptions {
        min_confidence: 80.0,
        ..opts()
    };
    let out = tag(&store, &det, IMAGE, &high).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(rule.num_calls(), 1);
    let doc = parse_metadata(&body(&store).await).unwrap().doc;
    let labels: Vec<&str> = doc.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(labels, ["Animal"]);
    let seen: Vec<String> = doc
        .imgtag
        .unwrap()
        .candidates()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(seen, ["Feline", "Pet", "Cat", "Lynx"]);
}

/// In the TUI: the detail pane lists the detector's candidate first with
/// its confidence, and `1` makes it the headline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_picks_what_the_detector_nearly_said() {
    let (_data, store) = folder();
    put(&store, IMAGE, TWO_DOGS).await;
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    tag(&store, &det, IMAGE, &opts()).await;
    let dir = tempfile::tempdir().unwrap();
    // Spaniel 76 needs review under 80.
    let source = imgtag::tui::runtime::DetectorSource::Ready(det);
    let mut h = common::tui::Harness::with_rule(store.clone(), source, dir, 2, 80.0.into()).await;
    h.select("cat.png");
    h.settle().await;
    let text = common::tui::screen(&h.app);
    assert!(text.contains("1 Cocker Spaniel 42%"), "{text}");
    h.send(common::tui::key('1'));
    h.settle().await;
    let doc = parse_metadata(&body(&store).await).unwrap().doc;
    assert_eq!(doc.headline().unwrap().name, "Cocker Spaniel");
    assert!(!doc.labels.iter().any(|l| l.name == "Spaniel"));
}
