//! Reading the words of detected text: PaddleOCR's PP-OCRv4 recognition
//! model (SVTR-LCNet with a CTC head, `assets/model/ppocr_v4_rec.onnx`)
//! run on tract or onnxruntime ([`super::engine`]) over each line the text
//! detector ([`super::text`]) found, into `ImgTag.Text`
//! ([`crate::contract::RecognizedText`]).
//!
//! Input, as RapidOCR prepares it: the line cropped from the decoded image,
//! scaled to [`HEIGHT`] pixels high keeping its aspect (at most
//! `MAX_WIDTH` wide), B, G, R planes of `(v / 255 - 0.5) / 0.5`, padded
//! with zeros on the right to the next of `WIDTHS` (tract makes a plan per
//! width: it is several times slower with a symbolic dimension). Output: `width / 8` time steps, each a probability
//! per character of the model's dictionary (read from the model's own
//! `character` metadata, `charset`), decoded greedily (`ctc_decode`).

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use image::RgbImage;
use tract_onnx::prelude::Framework;

use super::engine::{Engine, EngineKind};
use super::model_error::ModelError;
use super::text::TextBox;
use super::yolox::{BoxDet, Letterbox};
use crate::contract::{TextLine, clean_line};
use crate::imaging;

/// Identifies this model and its rules in `LabelModelVersion`.
pub const MODEL_VERSION: &str = "ppocr_v4_rec-2";
/// Height of the model's input.
pub const HEIGHT: usize = 48;
/// The input widths a line is padded to. A line's time grows with its
/// input's width (7 ms at 128 on onnxruntime, 18 at 320, 47 at 640), and
/// most lines of a page are short words: padding every line to a multiple
/// of 320 (RapidOCR's width) spent 20-30% of a page's reading on zeros,
/// for the same words (docs/detectors.md, "Reading the words"). Few widths,
/// because tract makes a plan for each (about 130 ms of CPU).
pub(crate) const WIDTHS: [usize; 8] = [64, 128, 192, 320, 448, 640, 960, MAX_WIDTH];
/// Widest input: a longer line is squeezed to it.
pub(crate) const MAX_WIDTH: usize = 1280;
/// Input pixels per output time step.
pub(crate) const STRIDE: usize = 8;
/// Least mean character probability for a line to be kept (RapidOCR's
/// `text_score`).
pub(crate) const MIN_LINE_SCORE: f32 = 0.5;
/// At most this many lines are read per image (the detector's best).
pub(crate) const MAX_READ_LINES: usize = crate::contract::MAX_TEXT_LINES;

const MODEL_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/ppocr_v4_rec.onnx"
));

/// The model's dictionary as its output indexes it: CTC's blank (0), the
/// `character` metadata's entries one per line, then a space.
pub(crate) fn charset(model: &[u8]) -> Result<Vec<String>, ModelError> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut Cursor::new(model))
        .map_err(|e| ModelError::Model(format!("{e:#}")))?;
    let chars = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "character")
        .ok_or_else(|| ModelError::Model("the recognition model has no character list".into()))?;
    let mut set = vec![String::new()];
    set.extend(chars.value.lines().map(String::from));
    set.push(" ".into());
    Ok(set)
}

/// CTC greedy decoding of `steps` x `classes` probabilities: each step's
/// most likely class, repeats merged, blanks (class 0) dropped. Returns the
/// text and the mean probability of its characters (0 for none).
/// Non-finite probabilities count as 0.
pub(crate) fn ctc_decode(probs: &[f32], classes: usize, charset: &[String]) -> (String, f32) {
    let (mut text, mut sum, mut n) = (String::new(), 0f32, 0usize);
    let mut previous = 0;
    for step in probs.chunks_exact(classes.max(1)) {
        let (best, p) = step
            .iter()
            .map(|&p| if p.is_finite() { p } else { 0.0 })
            .enumerate()
            .fold((0, f32::MIN), |b, (i, p)| if p > b.1 { (i, p) } else { b });
        if best != 0
            && best != previous
            && let Some(c) = charset.get(best)
        {
            text.push_str(c);
            sum += p;
            n += 1;
        }
        previous = best;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f32 })
}

/// The input width for a line scaled to `scaled` pixels wide.
fn padded_width(scaled: usize) -> usize {
    WIDTHS
        .into_iter()
        .find(|&w| w >= scaled)
        .unwrap_or(MAX_WIDTH)
}

/// Writes the crop `line` of `img` (x, y, width, height in image pixels)
/// as the model's input: scaled to [`HEIGHT`] high, aspect kept, at most
/// `MAX_WIDTH` wide, padded to `padded_width`. Returns the input and its
/// width.
pub fn line_input(img: &RgbImage, line: [u32; 4]) -> Result<(Vec<f32>, usize), ModelError> {
    let [x, y, w, h] = line;
    let crop = image::imageops::crop_imm(img, x, y, w, h).to_image();
    let (w, h) = (crop.width().max(1) as usize, crop.height().max(1) as usize);
    let scaled_w = (HEIGHT * w).div_ceil(h).clamp(1, MAX_WIDTH);
    let width = padded_width(scaled_w);
    let scaled = imaging::resize_rgb(&crop, scaled_w as u32, HEIGHT as u32)?;
    let mut out = vec![0f32; 3 * HEIGHT * width];
    let plane = HEIGHT * width;
    for (yy, row) in scaled.rows().enumerate() {
        for (xx, px) in row.enumerate() {
            let at = yy * width + xx;
            // Model channel 0 is blue (PaddleOCR reads images with OpenCV).
            out[at] = f32::from(px[2]) / 127.5 - 1.0;
            out[plane + at] = f32::from(px[1]) / 127.5 - 1.0;
            out[2 * plane + at] = f32::from(px[0]) / 127.5 - 1.0;
        }
    }
    Ok((out, width))
}

/// A detected line (input pixels of the text detector) in image pixels:
/// x, y, width, height, clamped to the image; `None` when nothing is left.
fn crop_of(b: &TextBox, lb: &Letterbox) -> Option<[u32; 4]> {
    let to_px = |v: f32, max: u32| (f64::from(v) / lb.ratio).clamp(0.0, f64::from(max)).round();
    let (x1, y1) = (to_px(b.x1, lb.width), to_px(b.y1, lb.height));
    let (x2, y2) = (to_px(b.x2, lb.width), to_px(b.y2, lb.height));
    (x2 - x1 >= 1.0 && y2 - y1 >= 1.0).then_some([
        x1 as u32,
        y1 as u32,
        (x2 - x1) as u32,
        (y2 - y1) as u32,
    ])
}

/// PP-OCRv4's recognition model, ready to run. `Send + Sync`, cheap to
/// clone; the model loads on first use, each input width's plan when first
/// met ([`Engine::run_shaped`]).
#[derive(Debug, Clone)]
pub struct Recognizer {
    kind: EngineKind,
    charset: Arc<[String]>,
    engine: Arc<OnceLock<Engine>>,
}

impl Recognizer {
    /// Reads the model's dictionary; the model loads on first use.
    pub fn load_with(kind: EngineKind) -> Result<Self, ModelError> {
        Ok(Recognizer {
            kind,
            charset: charset(MODEL_BYTES)?.into(),
            engine: Arc::default(),
        })
    }

    /// The engine the model runs on.
    pub fn engine(&self) -> EngineKind {
        self.kind
    }

    /// The dictionary (`charset`).
    pub fn charset(&self) -> &[String] {
        &self.charset
    }

    /// The model, loaded on the first call (ready for `width`; two
    /// threads may both load it the first time and one copy is kept).
    fn engine_for(&self, width: usize) -> Result<&Engine, ModelError> {
        if let Some(loaded) = self.engine.get() {
            return Ok(loaded);
        }
        let loaded = Engine::load(self.kind, MODEL_BYTES, [1, 3, HEIGHT, width])?;
        Ok(self.engine.get_or_init(|| loaded))
    }

    /// The text of one prepared input ([`line_input`]) and its mean
    /// character probability, 0-1.
    pub fn read(&self, input: &[f32], width: usize) -> Result<(String, f32), ModelError> {
        let probs = self
            .engine_for(width)?
            .run_shaped(input, [1, 3, HEIGHT, width])?;
        let (steps, classes) = (width / STRIDE, self.charset.len());
        if probs.len() != steps * classes {
            return Err(ModelError::BadLength {
                expected: steps * classes,
                got: probs.len(),
            });
        }
        Ok(ctc_decode(&probs, classes, &self.charset))
    }

    /// The text of `lines` (the text detector's, placed by `lb`) in `img`:
    /// the `MAX_READ_LINES` best read, those scoring at least
    /// `MIN_LINE_SCORE` kept, in reading order (top to bottom, then left
    /// to right), each with its confidence (percent) and box.
    pub fn lines(
        &self,
        img: &RgbImage,
        lines: &[TextBox],
        lb: &Letterbox,
    ) -> Result<Vec<TextLine>, ModelError> {
        let mut read = Vec::new();
        for b in lines.iter().take(MAX_READ_LINES) {
            let Some(crop) = crop_of(b, lb) else { continue };
            let (input, width) = line_input(img, crop)?;
            let (text, score) = self.read(&input, width)?;
            let text = clean_line(&halfwidth(&text));
            if score < MIN_LINE_SCORE || text.is_empty() {
                continue;
            }
            let as_box = BoxDet {
                class: 0,
                score,
                x1: b.x1,
                y1: b.y1,
                x2: b.x2,
                y2: b.y2,
            };
            read.push(TextLine {
                text,
                confidence: percent(score),
                bounding_box: Some(lb.bounding_box(&as_box)),
            });
        }
        reading_order(&mut read);
        Ok(read)
    }
}

/// `text` with full-width ASCII forms (U+FF01-FF5E, U+3000) as ASCII: the
/// model's dictionary is Chinese and English, and reads a comma or a
/// bracket as either form; a search types the ASCII one.
pub(crate) fn halfwidth(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect()
}

/// A 0-1 score as a percentage rounded to 3 decimals.
fn percent(score: f32) -> f32 {
    ((f64::from(score).clamp(0.0, 1.0) * 100_000.0).round() / 1000.0) as f32
}

/// Puts `lines` in reading order: by top edge, then each row (the lines
/// whose middle is within half a line's height of the row's first line's)
/// left to right, so a line split in two at a column gap reads in order.
pub(crate) fn reading_order(lines: &mut [TextLine]) {
    let frame = |l: &TextLine| {
        l.bounding_box
            .as_ref()
            .map_or((0.0, 0.0, 0.0), |b| (b.top, b.left, b.height))
    };
    lines.sort_by(|a, b| frame(a).0.total_cmp(&frame(b).0));
    let mut start = 0;
    while start < lines.len() {
        let (top, _, height) = frame(&lines[start]);
        let middle = top + height / 2.0;
        let end = start
            + lines[start..]
                .iter()
                .take_while(|l| {
                    let (t, _, h) = frame(l);
                    (t + h / 2.0 - middle).abs() <= height.min(h) / 2.0
                })
                .count()
                .max(1);
        lines[start..end].sort_by(|a, b| frame(a).1.total_cmp(&frame(b).1));
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_matches_the_output_and_holds_latin_letters() {
        let set = charset(MODEL_BYTES).unwrap();
        // 6623 characters in the metadata, the blank and the space.
        assert_eq!(set.len(), 6625);
        assert_eq!(set[0], "");
        assert_eq!(set[set.len() - 1], " ");
        for c in ["A", "z", "0", "9", "-", ","] {
            assert!(set.iter().any(|s| s == c), "{c}");
        }
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let set: Vec<String> = ["", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        let step = |i: usize, p: f32| {
            let mut v = vec![0.0; 4];
            v[i] = p;
            v
        };
        // a a _ a b b _ NaN  ->  "aab"
        let probs: Vec<f32> = [
            step(1, 0.9),
            step(1, 0.7),
            step(0, 0.9),
            step(1, 0.8),
            step(2, 0.6),
            step(2, 0.6),
            step(0, 0.5),
            vec![f32::NAN; 4],
        ]
        .concat();
        let (text, score) = ctc_decode(&probs, 4, &set);
        assert_eq!(text, "aab");
        assert!((score - (0.9 + 0.8 + 0.6) / 3.0).abs() < 1e-6, "{score}");
        assert_eq!(ctc_decode(&step(0, 1.0), 4, &set), (String::new(), 0.0));
        // An index past the dictionary is skipped, not a panic.
        assert_eq!(ctc_decode(&[0.0, 0.0, 1.0], 3, &set[..2]).0, "");
    }

    #[test]
    fn full_width_forms_read_as_ascii() {
        assert_eq!(halfwidth("fn a(&self，img）　x"), "fn a(&self,img) x");
        assert_eq!(halfwidth("发票 INVOICE"), "发票 INVOICE");
    }

    #[test]
    fn widths_are_padded_to_steps_and_capped() {
        assert_eq!(padded_width(1), 64);
        assert_eq!(padded_width(64), 64);
        assert_eq!(padded_width(65), 128);
        assert_eq!(padded_width(193), 320);
        assert_eq!(padded_width(MAX_WIDTH), MAX_WIDTH);
        assert_eq!(padded_width(10 * MAX_WIDTH), MAX_WIDTH);
        // Every width is whole time steps.
        assert!(WIDTHS.iter().all(|w| w % STRIDE == 0));
        let img = RgbImage::from_pixel(100, 10, image::Rgb([255, 255, 255]));
        let (input, width) = line_input(&img, [0, 0, 100, 10]).unwrap();
        // 100x10 scales to 480x48: padded to 640.
        assert_eq!(width, 640);
        assert_eq!(input.len(), 3 * HEIGHT * width);
        assert!((input[0] - 1.0).abs() < 1e-6 && input[width - 1] == 0.0);
    }

    #[test]
    fn lines_read_top_to_bottom_and_each_row_left_to_right() {
        let at = |text: &str, left: f32, top: f32| TextLine {
            text: text.into(),
            confidence: 90.0,
            bounding_box: Some(crate::contract::BoundingBox {
                left,
                top,
                width: 0.2,
                height: 0.04,
            }),
        };
        // "36.00" sits a hair higher than its item; the next row is below.
        let mut lines = vec![
            at("next", 0.1, 0.10),
            at("36.00", 0.6, 0.049),
            at("Photo tagging", 0.1, 0.05),
            at("TITLE", 0.1, 0.0),
        ];
        reading_order(&mut lines);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["TITLE", "Photo tagging", "36.00", "next"]);
    }

    #[test]
    fn a_line_outside_the_image_is_no_crop() {
        let (lb, _, _) = Letterbox::new(200, 100);
        let b = |x1, y1, x2, y2| TextBox {
            score: 0.9,
            x1,
            y1,
            x2,
            y2,
        };
        assert!(crop_of(&b(-50.0, -50.0, -10.0, -10.0), &lb).is_none());
        let [x, y, w, h] = crop_of(&b(-5.0, 0.0, 1000.0, 10.0), &lb).unwrap();
        assert_eq!((x, y, w), (0, 0, 200));
        assert!(h >= 1);
    }
}
