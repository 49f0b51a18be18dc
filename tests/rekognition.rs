//! The Rekognition detector through the pipeline, with the SDK's own mock
//! layer answering like the real API (Parents, Categories, Instances,
//! throttling, permanent and configuration errors).

use crate::common;

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
use imgtag::storage::{DynStore, LocalStore, PutCondition, S3Store};

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
    store
        .put(
            "uploads/cat.png",
            Bytes::from_static(CHELSEA),
            PutCondition::None,
        )
        .await
        .unwrap();
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
    store
        .put(
            "uploads/cat.png",
            Bytes::from_static(CHELSEA),
            PutCondition::None,
        )
        .await
        .unwrap();
    let rule = mock!(Client::detect_labels)
        .match_requests(|r| {
            let s3 = r.image().and_then(|i| i.s3_object());
            s3.is_some_and(|o| o.bucket() == Some("rek") && o.name() == Some("uploads/cat.png"))
                && r.image().and_then(|i| i.bytes()).is_none()
                && r.min_confidence() == Some(55.0)
        })
        .then_output(cat_response);
    let reads_before = mem.requests();
    let out = tag(&store, &detector(&[&rule]), "uploads/cat.png", &opts()).await;
    assert!(matches!(out, Outcome::Tagged { .. }), "{out:?}");
    assert_eq!(rule.num_calls(), 1);
    // head + header range + metadata lookups + put: the image body itself
    // was never downloaded (it would be one more GET of 240 KB).
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
    assert_eq!(doc.imgtag.as_ref().unwrap().detector, "rekognition");
    assert_eq!(doc.best_label().unwrap().name, "Animal");
}

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let mem = MemS3::new();
    let (_server, store) = s3_store(&mem, "thr").await;
    store
        .put(
            "uploads/cat.png",
            Bytes::from_static(CHELSEA),
            PutCondition::None,
        )
        .await
        .unwrap();
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
    store
        .put(
            "uploads/bad.jpg",
            Bytes::from_static(COFFEE),
            PutCondition::None,
        )
        .await
        .unwrap();
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

    store
        .put(
            "uploads/denied.jpg",
            Bytes::from_static(COFFEE),
            PutCondition::None,
        )
        .await
        .unwrap();
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
    store
        .put(
            "uploads/cat.gif",
            Bytes::from(gif.into_inner()),
            PutCondition::None,
        )
        .await
        .unwrap();
    store
        .put(
            "uploads/coffee.jpg",
            Bytes::from_static(COFFEE),
            PutCondition::None,
        )
        .await
        .unwrap();

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
    store
        .put(
            "uploads/tiny.png",
            Bytes::from(tiny.into_inner()),
            PutCondition::None,
        )
        .await
        .unwrap();
    let never = mock!(Client::detect_labels).then_output(cat_response);
    let out = tag(&store, &detector(&[&never]), "uploads/tiny.png", &opts()).await;
    assert!(
        matches!(&out, Outcome::Failed { code, .. } if code == "ImageTooSmall"),
        "{out:?}"
    );
    assert_eq!(never.num_calls(), 0);
}
