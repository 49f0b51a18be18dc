//! Reading the words of detected text (PP-OCRv4 rec,
//! `src/detection/words.rs`) into `ImgTag.Text`: the made-up invoice and
//! editor screenshot (`tools/make_text_fixtures.py`) read their known
//! words on both engines, photos get no field, and `imgtag ls --text` and
//! the TUI's `/` find a scan by its words, with and without the index; a
//! foreign or hostile `Text` field reads as little or nothing, never as an
//! unreadable document.

use crate::common;
use common::models::eval;
use common::models::tract as model;

use std::sync::Arc;

use common::bin::{imgtag_async, stdout};
use common::tui::Harness;
use futures::TryStreamExt;
use imgtag::catalog::Filter;
use imgtag::contract::{
    Layout, MAX_LINE_CHARS, MAX_TEXT_CHARS, MAX_TEXT_LINES, MetadataDoc, TextLine,
};
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{LocalModel, ModelOptions};
use imgtag::detection::text::TextDetection;
use imgtag::detection::words::{self, Recognizer};
use imgtag::index::query::{Query, rows};
use imgtag::index::refresh::{RefreshOptions, refresh};
use imgtag::index::{Index, IndexSpec};
use imgtag::storage::{DynStore, LocalStore};
use imgtag::tui::rows::RowSummary;
use imgtag::tui::runtime::DetectorSource;

fn read(model: &LocalModel, name: &str) -> Vec<TextLine> {
    let options = ModelOptions {
        text: TextDetection::Always,
        ..ModelOptions::default()
    };
    model
        .detect_with_candidates(&eval(name), &options)
        .unwrap()
        .text
}

fn texts(lines: &[TextLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// Whether some line contains `words` exactly (case and all).
fn has(lines: &[TextLine], words: &str) -> bool {
    lines.iter().any(|l| l.text.contains(words))
}

/// What `tools/make_text_fixtures.py` wrote on the invoice, as whole
/// phrases: the title, the addresses, the amounts, the last line.
const INVOICE_WORDS: [&str; 9] = [
    "INVOICE",
    "Imgtag Supplies Ltd",
    "Harbour Road",
    "Billed to: Example Gallery",
    "14 November 2024",
    "Total due",
    "138.00",
    "Payment within 30 days.",
    "Thank you for your business.",
];

/// And on the editor screenshot: the title bar and code.
const SCREEN_WORDS: [&str; 6] = [
    "src/detection/text.rs - imgtag",
    "pub struct TextDetector",
    "engine: Engine,",
    "impl TextDetector {",
    "Finds the lines of text in one image.",
    "let map = self.probability_map(img);",
];

fn check_invoice(lines: &[TextLine]) {
    for w in INVOICE_WORDS {
        assert!(has(lines, w), "{w:?} not in {:?}", texts(lines));
    }
    // Reading order: the title first, the thanks last.
    assert!(lines[0].text.starts_with("INVOICE"), "{:?}", texts(lines));
    assert!(lines.last().unwrap().text.starts_with("Thank you"));
    // An amount split off at the column gap follows its item.
    let item = lines
        .iter()
        .position(|l| l.text.contains("Support"))
        .unwrap();
    assert_eq!(lines[item + 1].text, "90.00", "{:?}", texts(lines));
    for l in lines {
        assert!((50.0..=100.0).contains(&l.confidence), "{l:?}");
        let b = l.bounding_box.as_ref().unwrap();
        assert!(b.left >= 0.0 && b.left + b.width <= 1.0001, "{l:?}");
    }
}

#[test]
fn the_invoice_and_the_screenshot_read_their_words() {
    check_invoice(&read(model(), "document-invoice.png"));
    let screen = read(model(), "screenshot-editor.png");
    for w in SCREEN_WORDS {
        assert!(has(&screen, w), "{w:?} not in {:?}", texts(&screen));
    }
    // Full-width punctuation the Chinese dictionary offers reads as ASCII.
    assert!(
        screen.iter().all(|l| !l.text.contains('，')),
        "{:?}",
        texts(&screen)
    );
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_reads_what_tract_reads() {
    let onnx = LocalModel::load_with(EngineChoice::Exactly(EngineKind::OnnxRuntime))
        .unwrap_or_else(|e| panic!("the onnxruntime engine is needed by feature `ort`: {e}"));
    assert_eq!(onnx.recognizer().engine(), EngineKind::OnnxRuntime);
    for name in ["document-invoice.png", "screenshot-editor.png"] {
        let (a, b) = (read(model(), name), read(&onnx, name));
        assert_eq!(texts(&a), texts(&b), "{name}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.confidence - y.confidence).abs() < 1.0, "{x:?} {y:?}");
        }
    }
    check_invoice(&read(&onnx, "document-invoice.png"));
}

/// Photos, with the text model run on them, have no `Text` label and so
/// nothing is read.
#[test]
fn photos_read_no_words() {
    for name in [
        "pizza.jpg",
        "kitchen.jpg",
        "basilica-cars.jpg",
        "temple.jpg",
    ] {
        assert!(read(model(), name).is_empty(), "{name}");
    }
}

/// The recogniser on its own: a blank line reads as nothing, a wrong-sized
/// input is an error (not a panic), and a one-pixel crop is still an input.
#[test]
fn the_recognizer_rejects_bad_input_and_reads_blank_as_nothing() {
    let r = Recognizer::load_with(EngineKind::Tract).unwrap();
    let blank = image::RgbImage::from_pixel(200, 30, image::Rgb([255, 255, 255]));
    let (input, width) = words::line_input(&blank, [0, 0, 200, 30]).unwrap();
    let (text, _) = r.read(&input, width).unwrap();
    assert_eq!(text.trim(), "", "{text:?}");
    assert!(r.read(&input[..100], width).is_err());
    let (input, width) = words::line_input(&blank, [5, 5, 1, 1]).unwrap();
    assert_eq!(input.len(), 3 * words::HEIGHT * width);
}

fn folder() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    let b = dir.path().to_str().unwrap().to_string();
    (dir, b)
}

/// The keys `ls --json` printed.
fn keys(out: &std::process::Output) -> Vec<String> {
    stdout(out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["key"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `imgtag tag` on the local model writes `ImgTag.Text` for the scan and
/// the screenshot and nothing for a photo; `ls --text` then finds each by
/// its words, any case, through the index and without it.
#[tokio::test]
async fn tag_then_ls_text_finds_the_scan_and_not_the_photo() {
    let home = tempfile::tempdir().unwrap();
    let (bucket, b) = folder();
    for name in ["document-invoice.png", "screenshot-editor.png", "pizza.jpg"] {
        std::fs::write(bucket.path().join("uploads").join(name), eval(name)).unwrap();
    }
    let tag = ["tag", "--bucket", &b, "--all", "--detector", "local"];
    let out = imgtag_async(home.path(), &tag).await;
    stdout(&out);
    let doc = |name: &str| -> serde_json::Value {
        let path = bucket.path().join(format!("metadata/{name}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let invoice = doc("document-invoice.png");
    let lines: Vec<TextLine> =
        serde_json::from_value(invoice["ImgTag"]["Text"]["Lines"].clone()).unwrap();
    check_invoice(&lines);
    let pizza = doc("pizza.jpg");
    assert!(pizza["ImgTag"].get("Text").is_none(), "{pizza}");
    for index in [&[][..], &["--no-index"][..]] {
        let ls = |words: &str| {
            let mut args = vec!["ls", "--bucket", &b, "--json", "--text", words];
            args.extend(index);
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let home = home.path().to_path_buf();
            async move {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                keys(&imgtag_async(&home, &refs).await)
            }
        };
        assert_eq!(ls("invoice").await, ["uploads/document-invoice.png"]);
        assert_eq!(ls("THANK YOU for").await, ["uploads/document-invoice.png"]);
        assert_eq!(ls("textdetector").await, ["uploads/screenshot-editor.png"]);
        assert!(ls("pizza").await.is_empty(), "{index:?}");
    }
}

/// A document as another tool (or an attacker) might write it: `Text` of
/// `text` beside a label.
fn doc_with_text(key: &str, image: &[u8], text: &str) -> String {
    let etag = format!(
        "\"{}\"",
        hex::encode(<md5::Md5 as md5::Digest>::digest(image))
    );
    format!(
        r#"{{"Labels":[{{"Name":"Text","Confidence":90.0}}],"ImgTag":{{"SchemaVersion":1,
        "Source":{{"Bucket":"b","Key":{key:?},"ETag":{etag:?},"Size":{}}},"Detector":"local",
        "MinConfidence":55.0,"MaxLabels":null,"Text":{text}}}}}"#,
        image.len()
    )
}

/// A bucket of four tagged images: a scan with words, a photo without,
/// one whose `Text` is another tool's string, one whose lines are hostile
/// (escapes, hundreds of long lines).
fn text_bucket() -> (tempfile::TempDir, String) {
    let (dir, b) = folder();
    let long = "word ".repeat(300);
    let many: Vec<String> = (0..500)
        .map(|i| format!(r#"{{"Text":"line {i} {long}","Confidence":90}}"#))
        .collect();
    let hostile = format!(
        r#"{{"Lines":[{{"Text":"pwned\u001b]0;title\u0007 HARBOUR","Confidence":99}},
        {{"Text":5}},"not a line",{}]}}"#,
        many.join(",")
    );
    for (name, text) in [
        (
            "scan.png",
            r#"{"Lines":[{"Text":"Imgtag Supplies Ltd, 12 Harbour Road","Confidence":99.1,
            "BoundingBox":{"Width":0.5,"Height":0.03,"Left":0.1,"Top":0.2}}]}"#,
        ),
        ("photo.jpg", "null"),
        ("foreign.jpg", r#""harbour road""#),
        ("hostile.jpg", hostile.as_str()),
    ] {
        let image = format!("image bytes of {name}").into_bytes();
        let key = format!("uploads/{name}");
        std::fs::write(dir.path().join(&key), &image).unwrap();
        let doc = doc_with_text(&key, &image, text);
        std::fs::write(dir.path().join(format!("metadata/{name}.json")), doc).unwrap();
    }
    (dir, b)
}

#[test]
fn a_foreign_or_hostile_text_field_reads_as_little_or_nothing() {
    let (dir, _) = text_bucket();
    let text_of = |name: &str| {
        let bytes = std::fs::read(dir.path().join(format!("metadata/{name}.json"))).unwrap();
        let doc: MetadataDoc = serde_json::from_slice(&bytes).unwrap();
        doc.imgtag.unwrap().text().lines
    };
    assert_eq!(
        texts(&text_of("scan.png")),
        ["Imgtag Supplies Ltd, 12 Harbour Road"]
    );
    assert!(text_of("photo.jpg").is_empty());
    assert!(text_of("foreign.jpg").is_empty());
    let hostile = text_of("hostile.jpg");
    // The escapes are gone, the lines of another shape skipped, the rest
    // bounded.
    assert_eq!(hostile[0].text, "pwned]0;title HARBOUR");
    assert!(
        hostile
            .iter()
            .all(|l| !l.text.chars().any(char::is_control))
    );
    assert!(hostile.len() <= MAX_TEXT_LINES);
    assert!(
        hostile
            .iter()
            .all(|l| l.text.chars().count() <= MAX_LINE_CHARS)
    );
    let total: usize = hostile.iter().map(|l| l.text.chars().count()).sum();
    assert!(total <= MAX_TEXT_CHARS, "{total}");
}

/// `ls --text` over hand-written documents: the scan by any case of its
/// words, the hostile document by its one clean word, never the foreign
/// string; every document stays readable (tagged). With the index, the
/// words come from the index: a document rewritten without them is still
/// found by `--no-refresh` and no longer by `--no-index`.
#[tokio::test]
async fn ls_text_reads_words_from_documents_and_from_the_index() {
    let home = tempfile::tempdir().unwrap();
    let (dir, b) = text_bucket();
    let ls = |extra: &[&str]| {
        let mut args = vec!["ls", "--bucket", b.as_str(), "--json"];
        args.extend(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let home = home.path().to_path_buf();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            imgtag_async(&home, &refs).await
        }
    };
    for index in [None, Some("--no-index")] {
        let extra = |words: &'static str| -> Vec<&'static str> {
            let mut v = vec!["--text", words];
            v.extend(index);
            v
        };
        let harbour = keys(&ls(&extra("harbour")).await);
        assert_eq!(
            harbour,
            ["uploads/hostile.jpg", "uploads/scan.png"],
            "{index:?}"
        );
        let phrase = keys(&ls(&extra("supplies ltd, 12")).await);
        assert_eq!(phrase, ["uploads/scan.png"], "{index:?}");
        assert!(keys(&ls(&extra("pwned]0")).await).len() == 1, "{index:?}");
        assert!(keys(&ls(&extra("road\"")).await).is_empty(), "{index:?}");
    }
    let all = stdout(&ls(&[]).await);
    assert_eq!(all.matches("\"tagged\"").count(), 4, "{all}");
    assert!(!all.contains('\u{1b}'), "{all}");
    // `show` prints the lines, cleaned.
    let show = ["show", "--bucket", b.as_str(), "uploads/hostile.jpg"];
    let shown = stdout(&imgtag_async(home.path(), &show).await);
    assert!(
        shown.contains("text      pwned]0;title HARBOUR (99.0)"),
        "{shown}"
    );
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown}"
    );

    let image = b"image bytes of scan.png";
    let plain = doc_with_text("uploads/scan.png", image, "null");
    std::fs::write(dir.path().join("metadata/scan.png.json"), plain).unwrap();
    let from_index = keys(&ls(&["--text", "supplies", "--no-refresh"]).await);
    assert_eq!(from_index, ["uploads/scan.png"]);
    assert!(keys(&ls(&["--text", "supplies", "--no-index"]).await).is_empty());
    // A refresh reads the new document: the words are gone from the index.
    assert!(keys(&ls(&["--text", "supplies"]).await).is_empty());
}

/// The rows the TUI files from the index carry the words, as names `/`
/// searches; from a fresh audit too ([`tui_slash_finds_a_scan_by_its_words`]).
#[tokio::test]
async fn index_rows_carry_the_words_for_the_tui() {
    let (dir, _) = text_bucket();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let ix_dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec::new("file", "words", &Layout::default());
    let (index, _) = Index::open(&ix_dir.path().join("ix.sqlite"), &spec).unwrap();
    let index = Arc::new(index);
    let options = RefreshOptions::default();
    refresh(&index, &store, &Layout::default(), &options, &|_| {})
        .await
        .unwrap();
    let q = Query {
        layout: Layout::default(),
        review: 70.0.into(),
        filter: Filter::default(),
        unreadable: Arc::default(),
    };
    let got: Vec<_> = rows(&index, q).try_collect().await.unwrap();
    let names = |key: &str| {
        let a = got.iter().find(|a| a.key() == key).unwrap().clone();
        RowSummary::from_owned(a).names
    };
    assert!(
        names("uploads/scan.png").contains(&"Imgtag Supplies Ltd, 12 Harbour Road".to_string()),
        "{:?}",
        names("uploads/scan.png")
    );
    assert_eq!(names("uploads/photo.jpg"), ["Text"]);
    assert_eq!(names("uploads/foreign.jpg"), ["Text"]);
}

/// The TUI's `/` finds the scan by a word of its text, in any case, and
/// not the photos.
#[tokio::test]
async fn tui_slash_finds_a_scan_by_its_words() {
    let (dir, _) = text_bucket();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let mut h = Harness::new(store, DetectorSource::Ready(Arc::new(Unused)), dir).await;
    assert_eq!(h.app.rows.view().len(), 4);
    h.send(common::tui::key('/'));
    h.keys("SUPPLIES");
    let shown: Vec<_> = h
        .app
        .rows
        .view()
        .iter()
        .map(|&i| h.app.rows.key(i).to_string())
        .collect();
    assert_eq!(shown, ["uploads/scan.png"]);
    // The detail pane shows what was read.
    h.send(imgtag::tui::app::Msg::Key(crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Enter,
        crossterm::event::KeyModifiers::NONE,
    )));
    h.select("scan.png");
    h.settle().await;
    let screen = common::tui::screen(&h.app);
    assert!(screen.contains("text read"), "{screen}");
    assert!(
        screen.contains("Imgtag Supplies Ltd, 12 Harbour Road"),
        "{screen}"
    );
}

/// A detector the TUI test never calls (it only lists and searches).
struct Unused;

#[async_trait::async_trait]
impl imgtag::detection::Detector for Unused {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        imgtag::detection::DetectorKind::Local
    }
    async fn detect(
        &self,
        _: imgtag::detection::DetectInput,
        _: imgtag::detection::DetectParams,
    ) -> Result<imgtag::detection::Detection, imgtag::detection::DetectFailure> {
        Err(imgtag::detection::DetectFailure::Config {
            message: "not used".into(),
        })
    }
}
