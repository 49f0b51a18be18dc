//! The Rekognition detector through the pipeline, with the SDK's own mock
//! layer answering like the real API (Parents, Categories, Instances,
//! throttling, permanent and configuration errors).

use crate::common;
use common::fixtures::put;

use std::sync::Arc;

use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::operation::detect_labels::{DetectLabelsError, DetectLabelsOutput};
use aws_sdk_rekognition::types::{BoundingBox, Instance, Label, LabelAlias, LabelCategory, Parent};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use bytes::Bytes;
use common::s3mem::{self, MemS3};
use imgtag::contract::{Layout, parse_metadata};
use imgtag::detection::{DynDetector, RekognitionDetector};
use imgtag::pipeline::{Outcome, TagOptions, tag};
use imgtag::storage::{DynStore, LocalStore, S3Store};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");

fn cat_response() -> DetectLabelsOutput {
    let cat = Label::builder()
        .name("Cat")
        .confidence(91.2)
        .parents(Parent::builder().name("Feline").build())
        .parents(Parent::builder().name("Mammal").build())
        .parents(Parent::builder().name("Animal").build())
        .aliases(LabelAlias::builder().name("Kitty").build())
        .categories(LabelCategory::builder().name("Animals and Pets").build())
        .instances(
            Instance::builder()
                .confidence(90.5)
                .bounding_box(
                    BoundingBox::builder()
                        .width(0.5)
                        .height(0.6)
                        .left(0.1)
                        .top(0.2)
                        .build(),
                )
                .build(),
        )
        .build();
    let animal = Label::builder().name("Animal").confidence(98.2).build();
    DetectLabelsOutput::builder()
        .labels(animal)
        .labels(cat)
        .label_model_version("3.0")
        .build()
}

fn client(rules: &[&Rule]) -> Client {
    mock_client!(
        aws_sdk_rekognition,
        RuleMode::MatchAny,
        rules.iter().copied(),
        |c| c.retry_config(
            aws_sdk_rekognition::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(1))
        )
    )
}

fn detector(rules: &[&Rule]) -> DynDetector {
    Arc::new(RekognitionDetector::from_client(client(rules), 2))
}

fn opts() -> TagOptions {
    TagOptions::new(Layout::default(), "test")
}

async fn s3_store(mem: &MemS3, bucket: &str) -> (common::s3mem::TestServer, DynStore) {
    mem.create_bucket(bucket);
    let server = s3mem::serve(mem.clone()).await;
    // The loopback server stands in for AWS S3 here, which Rekognition
    // could read by reference.
    let store = Arc::new(
        S3Store::from_client(s3mem::client(&server.endpoint()), bucket).with_aws_readable(true),
    );
    (server, store)
}

/// With a custom endpoint (MinIO, LocalStack) the bucket is not AWS's:
/// a reference would make Rekognition read a same-named bucket in AWS, so
/// the image goes as bytes.
#[tokio::test]
async fn a_custom_endpoint_sends_bytes_not_a_reference() {
    let mem = MemS3::new();
    mem.create_bucket("minio");
    let server = s3mem::serve(mem.clone()).await;
    // What `--endpoint-url` gives (connect sends nothing yet).
    let s3 = imgtag::storage::S3Options {
        endpoint_url: Some(server.endpoint()),
        ..Default::default()
    };
    let connected: DynStore = Arc::new(S3Store::connect("minio", &s3).await);
    assert!(!connected.aws_readable());
    let store: DynStore = Arc::new(
        S3Store::from_client(s3mem::client(&server.endpoint()), "minio").with_aws_readable(false),
    );
    put(&store, "uploads/cat.png", Bytes::from_static(CHELSEA)).await;
    let rule = mock!(Client::detect_labels)
        .match_requests(|r| {
            r.image().and_then(|i| i.s3_object()).is_none()
                && r.image().and_then(|i| i.bytes()).is_some()
        })
        .then_output(cat_response);
    let out = tag(&store, &detector(&[&rule]), "uploads/cat.png", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn s3_images_go_by_reference_and_labels_keep_their_shape() {
    let mem = MemS3::new();
    let (_server, store) = s3_store(&mem, "rek").await;
    put(&store, "uploads/cat.png", Bytes::from_static(CHELSEA)).await;
    let rule = mock!(Client::detect_labels)
        .match_requests(|r| {
            let s3 = r.image().and_then(|i| i.s3_object());
            s3.is_some_and(|o| o.bucket() == Some("rek") && o.name() == Some("uploads/cat.png"))
                && r.image().and_then(|i| i.bytes()).is_none()
                // MinConfidence 55, asked 25 lower for the candidates.
                && r.min_confidence() == Some(40.0)
        })
        .then_output(cat_response);
    let reads_before = mem.requests();
    let out = tag(&store, &detector(&[&rule]), "uploads/cat.png", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(rule.num_calls(), 1);
    // head + header range + metadata lookups + claim (put, the document's
    // head, delete) + put: the image body itself was never downloaded (it
    // would be one more GET of 240 KB).
    assert!(mem.requests() - reads_before <= 8);
    let obj = store.get("metadata/cat.png.json", 1 << 20).await.unwrap();
    let doc = parse_metadata(&obj.body).unwrap().doc;
    assert_eq!(doc.label_model_version.as_deref(), Some("3.0"));
    let cat = doc.labels.iter().find(|l| l.name == "Cat").unwrap();
    let parents: Vec<&str> = cat.parents.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(parents, ["Feline", "Mammal", "Animal"]);
    assert_eq!(cat.aliases[0].name, "Kitty");
    assert_eq!(cat.categories[0].name, "Animals and Pets");
    let bb = cat.instances[0].bounding_box.as_ref().unwrap();
    assert_eq!((bb.width, bb.height, bb.left, bb.top), (0.5, 0.6, 0.1, 0.2));
    assert_eq!(
        doc.imgtag.as_ref().unwrap().detector.as_deref(),
        Some("rekognition")
    );
    assert_eq!(doc.best_label().unwrap().name, "Animal");
}

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let mem = MemS3::new();
    let (_server, store) = s3_store(&mem, "thr").await;
    put(&store, "uploads/cat.png", Bytes::from_static(CHELSEA)).await;
    let rule = mock!(Client::detect_labels)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into()),
        )
        .output(cat_response)
        .build();
    let out = tag(&store, &detector(&[&rule]), "uploads/cat.png", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(rule.num_calls(), 2, "one throttled call, one retry");
}

#[tokio::test]
async fn permanent_and_configuration_errors() {
    let mem = MemS3::new();
    let (_server, store) = s3_store(&mem, "errs").await;
    put(&store, "uploads/bad.jpg", Bytes::from_static(COFFEE)).await;
    let invalid = mock!(Client::detect_labels).then_error(|| {
        DetectLabelsError::InvalidImageFormatException(
            aws_sdk_rekognition::types::error::InvalidImageFormatException::builder()
                .message("Request has invalid image format")
                .build(),
        )
    });
    let out = tag(&store, &detector(&[&invalid]), "uploads/bad.jpg", &opts()).await;
    let Outcome::Failed {
        code, metadata_key, ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(code, "InvalidImageFormat");
    let doc = parse_metadata(&store.get(metadata_key, 1 << 20).await.unwrap().body)
        .unwrap()
        .doc;
    assert!(doc.labels.is_empty());
    assert_eq!(doc.error().unwrap().code, "InvalidImageFormat");

    put(&store, "uploads/denied.jpg", Bytes::from_static(COFFEE)).await;
    let denied = mock!(Client::detect_labels).then_error(|| {
        DetectLabelsError::AccessDeniedException(
            aws_sdk_rekognition::types::error::AccessDeniedException::builder()
                .message("not authorized to perform: rekognition:DetectLabels")
                .build(),
        )
    });
    let out = tag(&store, &detector(&[&denied]), "uploads/denied.jpg", &opts()).await;
    let Outcome::Fatal { message } = &out else {
        panic!("{out:?}")
    };
    assert!(message.contains("rekognition:DetectLabels"), "{message}");
    assert!(
        store.head("metadata/denied.jpg.json").await.is_err(),
        "nothing written"
    );
}

#[tokio::test]
async fn local_images_go_as_bytes_and_unsupported_formats_are_reencoded() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let mut gif = std::io::Cursor::new(Vec::new());
    image::load_from_memory(CHELSEA)
        .unwrap()
        .write_to(&mut gif, image::ImageFormat::Gif)
        .unwrap();
    put(&store, "uploads/cat.gif", Bytes::from(gif.into_inner())).await;
    put(&store, "uploads/coffee.jpg", Bytes::from_static(COFFEE)).await;

    let as_jpeg = mock!(Client::detect_labels)
        .match_requests(|r| {
            r.image()
                .and_then(|i| i.bytes())
                .is_some_and(|b| b.as_ref().starts_with(&[0xFF, 0xD8]) && b.as_ref() != COFFEE)
        })
        .then_output(cat_response);
    let original = mock!(Client::detect_labels)
        .match_requests(|r| {
            r.image()
                .and_then(|i| i.bytes())
                .is_some_and(|b| b.as_ref() == COFFEE)
        })
        .then_output(cat_response);
    let det = detector(&[&as_jpeg, &original]);
    let out = tag(&store, &det, "uploads/cat.gif", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(as_jpeg.num_calls(), 1, "the GIF went as a re-encoded JPEG");
    let out = tag(&store, &det, "uploads/coffee.jpg", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(original.num_calls(), 1, "a JPEG under 5 MB goes as it is");

    // Under 80 px a side: a recorded failure, and no call is paid for.
    let mut tiny = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(40, 40)
        .write_to(&mut tiny, image::ImageFormat::Png)
        .unwrap();
    put(&store, "uploads/tiny.png", Bytes::from(tiny.into_inner())).await;
    let never = mock!(Client::detect_labels).then_output(cat_response);
    let out = tag(&store, &detector(&[&never]), "uploads/tiny.png", &opts()).await;
    assert!(
        matches!(&out, Outcome::Failed { code, .. } if code == "ImageTooSmall"),
        "{out:?}"
    );
    assert_eq!(never.num_calls(), 0);
}

/// The cat, with what IMAGE_PROPERTIES adds: quality, dominant colours
/// (whole image, foreground, background, and per instance).
fn cat_with_properties() -> DetectLabelsOutput {
    use aws_sdk_rekognition::types::{
        DetectLabelsImageBackground, DetectLabelsImageForeground, DetectLabelsImageProperties,
        DetectLabelsImageQuality, DominantColor,
    };
    let color = || {
        DominantColor::builder()
            .red(120)
            .green(80)
            .blue(40)
            .hex_code("#785028")
            .css_color("sienna")
            .simplified_color("brown")
            .pixel_percent(41.7)
            .build()
    };
    let quality = DetectLabelsImageQuality::builder()
        .brightness(61.3)
        .sharpness(87.5)
        .contrast(70.75)
        .build();
    let properties = DetectLabelsImageProperties::builder()
        .quality(quality)
        .dominant_colors(color())
        .foreground(
            DetectLabelsImageForeground::builder()
                .quality(
                    DetectLabelsImageQuality::builder()
                        .brightness(55.0)
                        .sharpness(90.0)
                        .build(),
                )
                .dominant_colors(color())
                .build(),
        )
        .background(
            DetectLabelsImageBackground::builder()
                .quality(DetectLabelsImageQuality::builder().brightness(70.0).build())
                .build(),
        )
        .build();
    let cat = Label::builder()
        .name("Cat")
        .confidence(91.2)
        .instances(
            Instance::builder()
                .confidence(90.5)
                .dominant_colors(color())
                .build(),
        )
        .build();
    DetectLabelsOutput::builder()
        .labels(cat)
        .label_model_version("3.0")
        .image_properties(properties)
        .build()
}

fn filters() -> imgtag::contract::LabelFilters {
    imgtag::contract::LabelFilters {
        label_inclusion_filters: vec!["Cat".into(), "Animal".into()],
        label_exclusion_filters: vec!["Pet".into()],
        label_category_inclusion_filters: Vec::new(),
        label_category_exclusion_filters: vec!["Weapons and Military".into()],
    }
}

async fn raw(store: &DynStore, key: &str) -> serde_json::Value {
    serde_json::from_slice(&store.get(key, 1 << 20).await.unwrap().body).unwrap()
}

/// The document of `cat_with_properties` asked with `filters()`:
/// ImageProperties field for field, and what ImgTag records.
fn assert_stored_as_returned(v: &serde_json::Value) {
    let p = &v["ImageProperties"];
    assert_eq!(
        p["Quality"],
        serde_json::json!({"Brightness": 61.3, "Sharpness": 87.5, "Contrast": 70.75})
    );
    let colour = serde_json::json!({
        "Red": 120, "Green": 80, "Blue": 40, "HexCode": "#785028",
        "CSSColor": "sienna", "SimplifiedColor": "brown", "PixelPercent": 41.7
    });
    assert_eq!(p["DominantColors"], serde_json::json!([colour]));
    assert_eq!(
        p["Foreground"],
        serde_json::json!({"Quality": {"Brightness": 55.0, "Sharpness": 90.0},
                           "DominantColors": [colour]})
    );
    assert_eq!(
        p["Background"],
        serde_json::json!({"Quality": {"Brightness": 70.0}})
    );
    assert_eq!(
        v["Labels"][0]["Instances"][0]["DominantColors"],
        serde_json::json!([colour])
    );
    assert_eq!(
        v["ImgTag"]["Features"],
        serde_json::json!(["GENERAL_LABELS", "IMAGE_PROPERTIES"])
    );
    assert_eq!(
        v["ImgTag"]["Settings"],
        serde_json::json!({"GeneralLabels": {
            "LabelInclusionFilters": ["Cat", "Animal"],
            "LabelExclusionFilters": ["Pet"],
            "LabelCategoryExclusionFilters": ["Weapons and Military"]
        }})
    );
}

/// `--features IMAGE_PROPERTIES` and the label filters are sent as
/// DetectLabels `Features` and `Settings.GeneralLabels`; the answer's
/// `ImageProperties` is stored as the API returned it, and `ImgTag`
/// records what was asked. The same request is then skipped (no second
/// paid call); other features or filters are a new request.
#[tokio::test]
async fn features_and_filters_are_sent_recorded_and_part_of_the_same_request() {
    use aws_sdk_rekognition::types::DetectLabelsFeatureName as F;
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    put(&store, "uploads/cat.png", Bytes::from_static(CHELSEA)).await;
    let with_all = mock!(Client::detect_labels)
        .match_requests(|r| {
            let general = r.settings().and_then(|s| s.general_labels());
            r.features() == [F::GeneralLabels, F::ImageProperties]
                && general.is_some_and(|g| {
                    g.label_inclusion_filters() == ["Cat", "Animal"]
                        && g.label_exclusion_filters() == ["Pet"]
                        && g.label_category_inclusion_filters().is_empty()
                        && g.label_category_exclusion_filters() == ["Weapons and Military"]
                })
        })
        .then_output(cat_with_properties);
    let labels_only = mock!(Client::detect_labels)
        .match_requests(|r| r.features() == [F::GeneralLabels] && r.settings().is_none())
        .then_output(cat_response);
    let det = detector(&[&with_all, &labels_only]);
    let mut asked = opts();
    asked.features = imgtag::detection::Features::ALL;
    asked.filters = filters();

    let out = tag(&store, &det, "uploads/cat.png", &asked).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(with_all.num_calls(), 1);
    assert_stored_as_returned(&raw(&store, "metadata/cat.png.json").await);

    // The same request: skipped, not paid again; the filters compare as
    // sets of names, whatever their order or case.
    let out = tag(&store, &det, "uploads/cat.png", &asked).await;
    assert!(matches!(out, Outcome::Unchanged { .. }), "{out:?}");
    let mut reordered = asked.clone();
    reordered.filters.label_inclusion_filters = vec!["animal".into(), "CAT".into()];
    let out = tag(&store, &det, "uploads/cat.png", &reordered).await;
    assert!(matches!(out, Outcome::Unchanged { .. }), "{out:?}");
    assert_eq!(with_all.num_calls(), 1);

    // Other filters are another request: re-tagged (the rule above no
    // longer matches, so nothing answers it but a fresh mock).
    let other_filters = mock!(Client::detect_labels)
        .match_requests(|r| {
            r.settings()
                .and_then(|s| s.general_labels())
                .is_some_and(|g| g.label_exclusion_filters() == ["Pet", "Animal"])
        })
        .then_output(cat_with_properties);
    let det2 = detector(&[&other_filters, &labels_only]);
    let mut other = asked.clone();
    other.filters.label_exclusion_filters.push("Animal".into());
    let out = tag(&store, &det2, "uploads/cat.png", &other).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(other_filters.num_calls(), 1);

    // Labels only, unfiltered: another request again, and its document
    // holds no ImageProperties and records nothing (the default shape).
    let out = tag(&store, &det2, "uploads/cat.png", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(labels_only.num_calls(), 1);
    let v = raw(&store, "metadata/cat.png.json").await;
    assert!(v.get("ImageProperties").is_none(), "{v}");
    assert!(v["ImgTag"].get("Features").is_none(), "{v}");
    assert!(v["ImgTag"].get("Settings").is_none(), "{v}");
    let out = tag(&store, &det2, "uploads/cat.png", &opts()).await;
    assert!(matches!(out, Outcome::Unchanged { .. }), "{out:?}");
    assert_eq!(labels_only.num_calls(), 1);

    // Asking for image properties now is a new request too.
    let out = tag(&store, &det, "uploads/cat.png", &asked).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(with_all.num_calls(), 2);
}

/// A document another tool (or a newer Rekognition) wrote with fields
/// imgtag does not model inside `ImageProperties` and `ImgTag.Settings`
/// reads, and writes back, with every one of them.
#[test]
fn image_properties_round_trip_with_unknown_fields() {
    let text = serde_json::json!({
        "Labels": [{"Name": "Cat", "Confidence": 91.2, "Parents": [], "Aliases": [],
                    "Categories": [], "Instances": []}],
        "LabelModelVersion": "3.0",
        "ImageProperties": {
            "Quality": {"Brightness": 61.25, "Sharpness": 12.5, "Contrast": 70.0, "Noise": 3.0},
            "DominantColors": [{"Red": 1, "Green": 2, "Blue": 3, "CSSColor": "black",
                                "Luminance": 0.1}],
            "Foreground": {"Quality": {"Brightness": 50.0}, "Mask": "rle:abc"},
            "Depth": {"Near": 0.2}
        },
        "ImgTag": {
            "SchemaVersion": 1,
            "Source": {"Bucket": "b", "Key": "uploads/cat.png", "ETag": "\"e\"", "Size": 1},
            "Detector": "rekognition", "MinConfidence": 55.0, "MaxLabels": null,
            "TaggedAt": "t", "TaggedBy": "other", "Review": null, "Error": null,
            "Features": ["GENERAL_LABELS", "IMAGE_PROPERTIES"],
            "Settings": {"GeneralLabels": {"LabelInclusionFilters": ["Cat"]},
                         "ImageProperties": {"MaxDominantColors": 3}}
        }
    });
    let parsed = parse_metadata(text.to_string().as_bytes()).unwrap();
    let props = parsed.doc.image_properties().expect("typed view");
    let q = props.quality.as_ref().unwrap();
    assert_eq!(
        (q.brightness, q.sharpness, q.contrast),
        (Some(61.25), Some(12.5), Some(70.0))
    );
    assert_eq!(q.extra["Noise"], 3.0);
    assert_eq!(props.dominant_colors[0].css_color.as_deref(), Some("black"));
    let t = parsed.doc.imgtag.as_ref().unwrap();
    assert_eq!(t.label_filters().label_inclusion_filters, ["Cat"]);
    let back: serde_json::Value = serde_json::from_slice(&parsed.doc.to_json_bytes()).unwrap();
    assert_eq!(back, text);
    // The quality the audit keeps (what the review rule and the index use).
    let s = imgtag::summary::DocSummary::of(&parsed);
    let q = s.quality.unwrap();
    assert_eq!((q.brightness(), q.sharpness()), (Some(61.25), Some(12.5)));
    let stored = serde_json::to_value(&s).unwrap();
    assert_eq!(stored["q"], serde_json::json!([61.25, 12.5]));
    let again: imgtag::summary::DocSummary = serde_json::from_value(stored).unwrap();
    assert_eq!(again, s);
}

/// Cost: image properties are billed per image on top of the labels.
#[test]
fn image_properties_add_to_the_cost_estimate() {
    use imgtag::detection::{DetectorKind, Features};
    let labels = DetectorKind::Rekognition.cost_phrase_with(2000, Features::default());
    assert_eq!(labels, DetectorKind::Rekognition.cost_phrase(2000));
    assert!(labels.contains("$2.00"), "{labels}");
    let both = DetectorKind::Rekognition.cost_phrase_with(2000, Features::ALL);
    assert!(
        both.contains("$3.50") && both.contains("image properties"),
        "{both}"
    );
    assert_eq!(
        DetectorKind::Local.cost_phrase_with(2000, Features::ALL),
        "with the local model (no cost)"
    );
}
