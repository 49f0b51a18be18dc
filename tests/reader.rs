//! The metadata reader: every accepted shape, and malformed input that must
//! come back as `Malformed` with a reason, never a panic.

use imgtag::contract::{Label, MAX_METADATA_BYTES, MetadataDoc, Shape, parse_metadata};
use imgtag::status::Status;
use imgtag::status::assess;

const FULL: &str = r#"{
  "Labels": [
    {"Name": "Cat", "Confidence": 91.2,
     "Parents": [{"Name": "Feline"}, {"Name": "Mammal"}, {"Name": "Animal"}],
     "Aliases": [], "Categories": [{"Name": "Animals and Pets"}], "Instances": []},
    {"Name": "Pet", "Confidence": 60.0}
  ],
  "LabelModelVersion": "3.0",
  "ImgTag": {
    "SchemaVersion": 1,
    "Source": {"Bucket": "my-bucket", "Key": "uploads/cat.jpg",
               "ETag": "\"9b2cf535f27731c974343645a3985328\"", "Size": 48213},
    "Detector": "rekognition", "MinConfidence": 55.0, "MaxLabels": null,
    "TaggedAt": "2026-11-24T10:00:00Z", "TaggedBy": "imgtag-tui",
    "Review": {"Added": ["Cat"], "Removed": ["Pet"], "ReviewedAt": "2026-11-24T10:05:00Z"},
    "Error": null,
    "FutureField": {"ignored": true}
  }
}"#;

#[test]
fn reads_the_full_imgtag_document() {
    let p = parse_metadata(FULL.as_bytes()).unwrap();
    assert_eq!(p.shape, Shape::ImgTag);
    let cat = &p.doc.labels[0];
    assert_eq!((cat.name.as_str(), cat.confidence), ("Cat", 91.2));
    assert_eq!(cat.parents.len(), 3);
    assert_eq!(cat.categories[0].name, "Animals and Pets");
    let t = p.doc.imgtag.as_ref().unwrap();
    assert_eq!(
        t.source.etag.as_deref(),
        Some("\"9b2cf535f27731c974343645a3985328\"")
    );
    assert_eq!(t.source.size, Some(48213));
    assert_eq!(t.review.as_ref().unwrap().removed, ["Pet"]);
    assert_eq!(p.doc.best_label().unwrap().name, "Cat");
    // Written back, it reads the same.
    let again = parse_metadata(&p.doc.to_json_bytes()).unwrap();
    assert_eq!(again.doc, p.doc);
}

#[test]
fn reads_the_seed_shape() {
    let p = parse_metadata(
        br#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Feline","Confidence":65.3}]}"#,
    )
    .unwrap();
    assert_eq!(p.shape, Shape::Seed);
    assert_eq!(p.doc.labels.len(), 2);
    assert!(p.doc.imgtag.is_none());
    assert!(p.doc.labels[1].parents.is_empty());
}

#[test]
fn reads_a_bare_array() {
    let p = parse_metadata(br#"[{"Name":"Feline","Confidence":65.3}]"#).unwrap();
    assert_eq!(p.shape, Shape::BareArray);
    assert_eq!(p.doc.labels[0].name, "Feline");
    let empty = parse_metadata(b"[]").unwrap();
    assert!(empty.doc.labels.is_empty());
}

#[test]
fn reads_a_full_detect_labels_response() {
    let raw = br##"{"Labels":[{"Name":"Car","Confidence":99.1,
        "Instances":[{"BoundingBox":{"Width":0.5,"Height":0.4,"Left":0.1,"Top":0.2},"Confidence":99.1,
                      "DominantColors":[{"Red":1,"Green":2,"Blue":3,"HexCode":"#010203"}]}],
        "Parents":[{"Name":"Vehicle"},{"Name":"Transportation"}],"Aliases":[{"Name":"Automobile"}],
        "Categories":[{"Name":"Vehicles and Automotive"}]}],
        "LabelModelVersion":"3.0","OrientationCorrection":"ROTATE_0",
        "ImageProperties":{"Quality":{"Brightness":80.0}}}"##;
    let p = parse_metadata(raw).unwrap();
    assert_eq!(p.shape, Shape::DetectLabels);
    let car = &p.doc.labels[0];
    assert_eq!(car.aliases[0].name, "Automobile");
    let bb = car.instances[0].bounding_box.as_ref().unwrap();
    assert_eq!((bb.width, bb.top), (0.5, 0.2));
    assert_eq!(car.instances[0].dominant_colors.len(), 1);
    assert_eq!(p.doc.label_model_version.as_deref(), Some("3.0"));
}

fn malformed(bytes: &[u8]) -> String {
    match parse_metadata(bytes) {
        Err(m) => m.reason,
        Ok(p) => panic!("accepted as {:?}", p.shape),
    }
}

#[test]
fn malformed_inputs_are_reported_not_panicked() {
    let truncated = &FULL.as_bytes()[..FULL.len() / 2];
    assert!(malformed(truncated).contains("not JSON"));
    assert!(malformed(b"").contains("empty"));
    assert!(malformed(b"   \n").contains("empty"));
    assert!(malformed(b"\xff\xfe garbage").contains("not JSON"));
    assert!(malformed(b"42").contains("top level"));
    assert!(malformed(b"{}").contains("no \"Labels\""));
    assert!(malformed(br#"{"Labels": "Cat"}"#).contains("not an array"));
    assert!(malformed(br#"{"Labels": [{"Name": 3, "Confidence": 50}]}"#).contains("Labels[0]"));
    assert!(
        malformed(br#"{"Labels": [{"Name": "Cat", "Confidence": "high"}]}"#).contains("Labels[0]")
    );
    assert!(malformed(br#"{"Labels": [{"Name": "Cat"}]}"#).contains("Confidence"));
    assert!(malformed(br#"[{"Name": "Cat", "Confidence": 150}]"#).contains("outside 0-100"));
    assert!(malformed(br#"[{"Name": "", "Confidence": 50}]"#).contains("empty name"));
    assert!(malformed(br#"{"Labels": [], "ImgTag": {"SchemaVersion": "one"}}"#).contains("ImgTag"));
    assert!(
        malformed(br#"{"Labels": [], "LabelModelVersion": [1]}"#).contains("LabelModelVersion")
    );
}

#[test]
fn deeply_nested_arrays_are_malformed() {
    let depth = 100_000;
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    assert!(malformed(s.as_bytes()).contains("not JSON"));
    let nested_label = format!(
        r#"{{"Labels":[{{"Name":"x","Confidence":1,"Instances":{}{}}}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(!malformed(nested_label.as_bytes()).is_empty());
}

#[test]
fn a_fifty_megabyte_document_is_malformed() {
    // Valid JSON, but far beyond anything a detector writes.
    let mut big = Vec::with_capacity(50 * 1024 * 1024 + 64);
    big.extend_from_slice(br#"{"Labels":[{"Name":""#);
    big.resize(50 * 1024 * 1024, b'a');
    big.extend_from_slice(br#"","Confidence":50}]}"#);
    assert!(big.len() as u64 > MAX_METADATA_BYTES);
    assert!(malformed(&big).contains("limit"));
}

#[test]
fn statuses_follow_the_contract() {
    let doc = |labels: Vec<Label>| {
        Ok(imgtag::contract::ParsedMetadata {
            doc: MetadataDoc {
                labels,
                label_model_version: None,
                imgtag: None,
                extra: Default::default(),
            },
            shape: Shape::Seed,
        })
    };
    assert_eq!(assess(None, Some("\"e\""), 70.0), Status::Untagged);
    let weak = doc(vec![Label::new("Animal", 60.0), Label::new("Feline", 65.3)]);
    assert_eq!(assess(Some(&weak), None, 70.0), Status::NeedsReview);
    assert_eq!(assess(Some(&weak), None, 60.0), Status::Tagged);
    assert_eq!(assess(Some(&doc(vec![])), None, 70.0), Status::NeedsReview);
    let bad = parse_metadata(b"{").map(|_| unreachable!());
    assert_eq!(assess(Some(&bad), None, 70.0), Status::Malformed);

    let full = parse_metadata(FULL.as_bytes());
    assert_eq!(
        assess(
            Some(&full),
            Some("\"9b2cf535f27731c974343645a3985328\""),
            70.0
        ),
        Status::Tagged
    );
    assert_eq!(
        assess(Some(&full), Some("9b2cf535f27731c974343645a3985328"), 70.0),
        Status::Tagged,
        "quoting differences are not staleness"
    );
    assert_eq!(assess(Some(&full), Some("\"0000\""), 70.0), Status::Stale);
    assert_eq!(assess(Some(&full), None, 70.0), Status::Tagged);

    let failed = FULL.replace(
        r#""Error": null"#,
        r#""Error": {"Code": "InvalidImageFormat", "Message": "not an image"}"#,
    );
    let failed = parse_metadata(failed.as_bytes());
    assert_eq!(
        assess(Some(&failed), Some("\"0000\""), 70.0),
        Status::Failed
    );

    let flagged = FULL.replace(
        r#""Removed": ["Pet"]"#,
        r#""Removed": ["Pet"], "Flagged": ["Cat"]"#,
    );
    let flagged = parse_metadata(flagged.as_bytes());
    assert_eq!(
        assess(
            Some(&flagged),
            Some("\"9b2cf535f27731c974343645a3985328\""),
            70.0
        ),
        Status::NeedsReview
    );
}
