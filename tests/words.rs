//! Reading the words of detected text (PP-OCRv4 rec,
//! `src/detection/words.rs`) into `ImgTag.Text`: the made-up invoice and
//! editor screenshot (`tools/make_text_fixtures.py`) read their known
//! words on both engines, photos get no field, and `imgtag ls --text` and
//! the TUI's `/` find a scan by its words, with and without the index.

use std::path::Path;
use std::sync::OnceLock;

use imgtag::contract::TextLine;
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{LocalModel, ModelOptions};
use imgtag::detection::text::TextDetection;

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

fn read(model: &LocalModel, name: &str) -> Vec<TextLine> {
    let options = ModelOptions {
        text: TextDetection::Always,
        ..ModelOptions::default()
    };
    model.detect_with_candidates(&eval(name), &options).unwrap().text
}

#[test]
fn probe() {
    for name in ["document-invoice.png", "screenshot-editor.png"] {
        for l in read(model(), name) {
            println!("{name}: {:?} {} {:?}", l.text, l.confidence, l.bounding_box);
        }
    }
    panic!();
}
