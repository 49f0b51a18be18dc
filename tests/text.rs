//! The text detector (PP-OCRv4 det, `src/detection/text.rs`) on real
//! images: the made-up invoice and editor screenshot in `assets/eval/`
//! (`tools/make_text_fixtures.py`) and photos without text, on tract and
//! onnxruntime, in the local detector's answer and through `imgtag tag`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use imgtag::contract::Label;
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{self, DetectOptions, LocalModel};
use imgtag::detection::text::{self, TextDetector};
use imgtag::imaging::{self, DecodeLimits};

/// The local detector on tract (the engine every build has).
fn model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        LocalModel::load_with(EngineChoice::Exactly(EngineKind::Tract)).expect("models load")
    })
}

fn eval(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/eval")
            .join(name),
    )
    .unwrap()
}

fn labels_of(model: &LocalModel, name: &str) -> Vec<Label> {
    model
        .detect_bytes_with(&eval(name), &DetectOptions::default())
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
/// oven knobs, is not enough: [`text::MIN_LINES`]).
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
        let labels = labels_of(model(), name);
        for text in ["Text", "Document", "Screenshot"] {
            assert!(
                find(&labels, text).is_none(),
                "{name}: {text} in {labels:?}"
            );
        }
    }
}

#[test]
fn corrupt_or_empty_input_is_a_clean_error() {
    let mut truncated = eval("document-invoice.png");
    truncated.truncate(truncated.len() / 3);
    for bytes in [Vec::new(), b"not an image".to_vec(), truncated] {
        let err = model()
            .detect_bytes_with(&bytes, &DetectOptions::default())
            .unwrap_err();
        assert!(matches!(err, local::DetectError::Imaging(_)), "{err}");
    }
    // A wrong-sized buffer or map is an error, not a panic.
    let detector = model().text_detector();
    assert!(detector.map(&[0.0; 10]).is_err());
    assert!(text::lines(&[0.0; 10], 10, 10).is_err());
}

/// A higher MinConfidence than the lines' mean score drops Text and its
/// layout label; the lines' scores are the confidence, not a fixed 100.
#[test]
fn text_confidence_is_the_lines_mean_score() {
    let img = imaging::decode(&eval("document-invoice.png"), &DecodeLimits::default()).unwrap();
    let detector = model().text_detector();
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
    let tract = model().text_detector();
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
