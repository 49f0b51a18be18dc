//! What the text models cost an image, per engine: PP-OCRv4's detector
//! (`text::TextDetector::lines`) and its recogniser over the lines found
//! (`words::Recognizer::lines`), on the two text fixtures of
//! `assets/eval/` (the invoice: 19 lines, the editor window: 30). Median of
//! `IMGTAG_BENCH_RUNS` runs (default 7) after one warm-up run (which loads
//! the recogniser's plans), one thread.
//!
//! Run: `ORT_DYLIB_PATH=... cargo bench --no-default-features --features ort
//! --bench text_models` (without the feature or the library, the
//! onnxruntime rows say why they are missing).

use std::path::Path;
use std::time::{Duration, Instant};

use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::LocalModel;
use imgtag::detection::text;
use imgtag::imaging::{self, DecodeLimits};

const FIXTURES: [&str; 2] = ["document-invoice.png", "screenshot-editor.png"];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::var("IMGTAG_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    println!("| engine | image | lines read | detect (ms) | recognise (ms) | ms a line |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for kind in [EngineKind::Tract, EngineKind::OnnxRuntime] {
        let model = match LocalModel::load_with(EngineChoice::Exactly(kind)) {
            Ok(m) => m,
            Err(e) => {
                println!("| {kind} | - | - | - | - | not run: {e} |");
                continue;
            }
        };
        for name in FIXTURES {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/eval")
                .join(name);
            let bytes = std::fs::read(path).expect("fixture");
            let img = imaging::decode(&bytes, &DecodeLimits::default()).expect("decodes");
            let mut tensor = vec![0f32; text::TENSOR_LEN];
            let (mut det, mut rec, mut read) = (Vec::new(), Vec::new(), 0);
            for run in 0..=runs {
                let t = Instant::now();
                let (lines, lb) = model
                    .text_detector()
                    .expect("text model")
                    .lines(&img, &mut tensor)
                    .expect("det");
                let d = t.elapsed();
                let t = Instant::now();
                let words = model.recognizer().lines(&img, &lines, &lb).expect("rec");
                let r = t.elapsed();
                read = words.len();
                if run > 0 {
                    det.push(d);
                    rec.push(r);
                }
            }
            let (d, r) = (median(det), median(rec));
            println!(
                "| {kind} | {name} | {read} | {:.1} | {:.1} | {:.1} |",
                ms(d),
                ms(r),
                ms(r) / read.max(1) as f64
            );
        }
    }
}
