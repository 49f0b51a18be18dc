//! The text detector (PP-OCRv4 det, `src/detection/text.rs`) on real
//! images: the made-up invoice and editor screenshot in `assets/eval/`
//! (`tools/make_text_fixtures.py`) and photos without text, on tract and
//! onnxruntime, in the local detector's answer and through `imgtag tag`;
//! and the gate that runs the text model only when the classifier sees
//! text (`TextDetection::Auto`).

use crate::common;
use common::models::eval;
use common::models::tract as model;
use std::path::Path;
use std::process::Command;

use imgtag::contract::Label;
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{self, LocalModel, ModelOptions};
use imgtag::detection::text::{self, TextDetection, TextDetector};
use imgtag::detection::{DetectInput, DetectParams, Detector, LocalDetector};
use imgtag::imaging::{self, DecodeLimits};

fn labels_of(model: &LocalModel, name: &str) -> Vec<Label> {
    model
        .detect_bytes_with(&eval(name), &ModelOptions::default())
        .unwrap()
}

/// The local detector's answer with the text model run as `text` says.
fn answer(name: &str, text: TextDetection) -> local::Answer {
    let options = ModelOptions {
        text,
        ..ModelOptions::default()
    };
    model()
        .detect_with_candidates(&eval(name), &options)
        .unwrap()
}

fn find<'a>(labels: &'a [Label], name: &str) -> Option<&'a Label> {
    labels.iter().find(|l| l.name == name)
}

/// The invoice: 13 lines of text (some split in two by the column gap),
/// the title first, all starting at the page's left margin (60 px of 600).
fn check_invoice(labels: &[Label]) {
    let text = find(labels, "Text").unwrap_or_else(|| panic!("no Text: {labels:?}"));
    assert!(text.parents.is_empty());
    assert!(
        (90.0..100.0).contains(&text.confidence),
        "{}",
        text.confidence
    );
    let boxes: Vec<_> = text
        .instances
        .iter()
        .map(|i| i.bounding_box.clone().unwrap())
        .collect();
    assert!((13..=20).contains(&boxes.len()), "{} lines", boxes.len());
    let title = boxes.iter().min_by(|a, b| a.top.total_cmp(&b.top)).unwrap();
    // "INVOICE 2024-11" at (60, 60)-(385, 95) of 600x800.
    assert!((title.left - 0.1).abs() < 0.03, "{title:?}");
    assert!((title.top - 0.075).abs() < 0.03, "{title:?}");
    assert!((title.width - 0.54).abs() < 0.06, "{title:?}");
    let at_margin = boxes.iter().filter(|b| (b.left - 0.1).abs() < 0.03);
    assert!(at_margin.count() >= 11, "{boxes:?}");
    // Nothing below the last line ("Thank you...", y 620-640 of 800).
    assert!(boxes.iter().all(|b| b.top + b.height < 0.83), "{boxes:?}");
    let document = find(labels, "Document").unwrap_or_else(|| panic!("{labels:?}"));
    assert_eq!(document.parents[0].name, "Text");
    assert_eq!(document.confidence, text.confidence);
    assert!(find(labels, "Screenshot").is_none());
}

#[test]
fn an_invoice_is_text_with_a_box_per_line_and_a_document() {
    check_invoice(&labels_of(model(), "document-invoice.png"));
}

#[test]
fn an_editor_window_is_text_and_a_screenshot() {
    let labels = labels_of(model(), "screenshot-editor.png");
    let text = find(&labels, "Text").unwrap_or_else(|| panic!("no Text: {labels:?}"));
    // 13 lines of code and their numbers, and the title bar.
    assert!(text.instances.len() >= 14, "{}", text.instances.len());
    let title_bar = text.instances.iter().any(|i| {
        let b = i.bounding_box.as_ref().unwrap();
        b.top < 0.064 && b.left < 0.03
    });
    assert!(title_bar, "{:?}", text.instances);
    assert!(find(&labels, "Screenshot").is_some(), "{labels:?}");
    assert!(find(&labels, "Document").is_none());
}

/// Photos without text get no Text label (a lone line, such as a row of
/// oven knobs, is not enough: [`text::MIN_LINES`]), with the text model
/// run on them (`always`: in `auto` it would not run at all).
#[test]
fn photos_without_text_have_no_text_label() {
    for name in [
        "pizza.jpg",
        "kitchen.jpg",
        "german-shepherd.jpg",
        "temple.jpg",
        "basilica-cars.jpg",
        "samoyeds.jpg",
    ] {
        let answer = answer(name, TextDetection::Always);
        assert!(answer.text_ran, "{name}");
        let labels = answer.labels;
        for text in ["Text", "Document", "Screenshot"] {
            assert!(
                find(&labels, text).is_none(),
                "{name}: {text} in {labels:?}"
            );
        }
    }
}

/// `auto` runs the text model on both text fixtures, and finds there what
/// `always` finds.
#[test]
fn auto_runs_the_text_model_on_a_page_and_a_screen() {
    let invoice = answer("document-invoice.png", TextDetection::Auto);
    assert!(invoice.text_ran);
    check_invoice(&invoice.labels);
    let always = answer("document-invoice.png", TextDetection::Always);
    assert!(always.text_ran);
    assert_eq!(always.labels, invoice.labels);
    let screen = answer("screenshot-editor.png", TextDetection::Auto);
    assert!(screen.text_ran);
    assert!(find(&screen.labels, "Screenshot").is_some(), "{screen:?}");
}

/// `auto` does not run the text model on photos: through the detector on
/// a few, and by the gate on the classifier's answer for every photo in
/// `assets/eval` and `assets/samples` (none triggers it, docs/detectors.md).
#[test]
fn auto_skips_the_text_model_on_photos() {
    for name in ["pizza.jpg", "kitchen.jpg", "basilica-cars.jpg"] {
        let answer = answer(name, TextDetection::Auto);
        assert!(!answer.text_ran, "{name}");
        assert!(find(&answer.labels, "Text").is_none(), "{name}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut photos = 0;
    for dir in ["assets/eval", "assets/samples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let is_image = name.ends_with(".jpg") || name.ends_with(".png");
            // The pages with text: the gate must open on those.
            let text = name.starts_with("document-")
                || name.starts_with("screenshot-")
                || name == "handwriting.png";
            if !is_image || text {
                continue;
            }
            let img =
                imaging::decode(&std::fs::read(&path).unwrap(), &DecodeLimits::default()).unwrap();
            let mut tensor = vec![0f32; imaging::TENSOR_LEN];
            imaging::preprocess(&img, &mut tensor).unwrap();
            let probs = model().classify(&tensor).unwrap();
            assert!(!TextDetection::Auto.runs(&probs), "{name}");
            photos += 1;
        }
    }
    assert!(photos >= 20, "{photos} photos");
    // Handwritten equations on paper open it (the model then finds no
    // line it is sure of: the evaluation set counts that miss).
    assert!(answer("handwriting.png", TextDetection::Auto).text_ran);
}

/// `never` skips the text model even on a page.
#[test]
fn never_finds_no_text_on_the_invoice() {
    let answer = answer("document-invoice.png", TextDetection::Never);
    assert!(!answer.text_ran);
    for text in ["Text", "Document", "Screenshot"] {
        assert!(find(&answer.labels, text).is_none(), "{answer:?}");
    }
    // The classifier still answers (Menu, Web Site, below MinConfidence).
    assert!(!answer.candidates.is_empty(), "{answer:?}");
}

/// The setting reaches the model through the `Detector` trait, as the
/// pipeline calls it (`DetectParams::text_detection`), and leaves
/// `LabelModelVersion` alone.
#[tokio::test]
async fn the_detector_passes_text_detection_to_the_model() {
    let detector = LocalDetector::load_with(EngineChoice::Exactly(EngineKind::Tract)).unwrap();
    let bytes = bytes::Bytes::from(eval("document-invoice.png"));
    let mut seen = Vec::new();
    for text_detection in [TextDetection::Never, TextDetection::Auto] {
        let params = DetectParams {
            min_confidence: 55.0,
            text_detection,
            ..DetectParams::default()
        };
        let d = detector
            .detect(DetectInput::Bytes(bytes.clone()), params)
            .await
            .unwrap();
        assert_eq!(d.label_model_version.as_deref(), Some(local::MODEL_VERSION));
        seen.push(find(&d.labels, "Document").is_some());
    }
    assert_eq!(seen, [false, true]);
}

#[test]
fn corrupt_or_empty_input_is_a_clean_error() {
    let mut truncated = eval("document-invoice.png");
    truncated.truncate(truncated.len() / 3);
    for bytes in [Vec::new(), b"not an image".to_vec(), truncated] {
        let err = model()
            .detect_bytes_with(&bytes, &ModelOptions::default())
            .unwrap_err();
        assert!(matches!(err, local::ModelError::Imaging(_)), "{err}");
    }
    // A wrong-sized buffer or map is an error, not a panic.
    let detector = model().text_detector().unwrap();
    assert!(detector.map(&[0.0; 10]).is_err());
    assert!(text::lines(&[0.0; 10], 10, 10).is_err());
}

/// A higher MinConfidence than the lines' mean score drops Text and its
/// layout label; the lines' scores are the confidence, not a fixed 100.
#[test]
fn text_confidence_is_the_lines_mean_score() {
    let img = imaging::decode(&eval("document-invoice.png"), &DecodeLimits::default()).unwrap();
    let detector = model().text_detector().unwrap();
    let mut tensor = vec![0f32; text::TENSOR_LEN];
    let (lines, _) = detector.lines(&img, &mut tensor).unwrap();
    let mean = lines.iter().map(|l| l.score).sum::<f32>() / lines.len() as f32;
    let labels = detector.detect(&img, 55.0, &mut tensor).unwrap();
    assert!((labels[0].confidence - 100.0 * mean).abs() < 0.01);
    assert!(labels[0].confidence < 100.0);
    let above = (100.0 * mean).ceil() + 0.5;
    assert!(
        detector
            .detect(&img, above, &mut tensor)
            .unwrap()
            .is_empty()
    );
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_engine_finds_the_same_lines() {
    let onnx = TextDetector::load_with(EngineKind::OnnxRuntime).unwrap_or_else(|e| {
        panic!("the onnxruntime engine is needed by the tests of feature `ort`: {e}")
    });
    assert_eq!(onnx.engine(), EngineKind::OnnxRuntime);
    let tract = model().text_detector().unwrap();
    for name in ["document-invoice.png", "screenshot-editor.png", "pizza.jpg"] {
        let img = imaging::decode(&eval(name), &DecodeLimits::default()).unwrap();
        let mut tensor = vec![0f32; text::TENSOR_LEN];
        let (a, _) = tract.lines(&img, &mut tensor).unwrap();
        let (b, _) = onnx.lines(&img, &mut tensor).unwrap();
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.score - y.score).abs() < 0.01, "{name}: {x:?} {y:?}");
            assert!((x.x1 - y.x1).abs() < 2.0 && (x.y2 - y.y2).abs() < 2.0);
        }
    }
}

fn imgtag(home: &Path, args: &[&str]) -> std::process::Output {
    let config = home.join("empty-config.toml");
    std::fs::write(&config, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("IMGTAG_ENGINE", "tract")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run imgtag")
}

#[test]
fn tag_local_writes_text_with_boxes() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bucket.path().join("uploads")).unwrap();
    for name in ["document-invoice.png", "pizza.jpg"] {
        std::fs::write(bucket.path().join("uploads").join(name), eval(name)).unwrap();
    }
    let b = bucket.path().to_str().unwrap();
    let out = imgtag(
        home.path(),
        &["tag", "--bucket", b, "--all", "--detector", "local"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = |name: &str| -> serde_json::Value {
        let path = bucket.path().join(format!("metadata/{name}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let labels = |d: &serde_json::Value| -> Vec<Label> {
        serde_json::from_value(d["Labels"].clone()).unwrap()
    };
    let invoice = doc("document-invoice.png");
    assert_eq!(invoice["LabelModelVersion"], local::MODEL_VERSION);
    check_invoice(&labels(&invoice));
    let pizza = labels(&doc("pizza.jpg"));
    assert!(find(&pizza, "Text").is_none(), "{pizza:?}");
    assert!(find(&pizza, "Pizza").is_some(), "{pizza:?}");
}
