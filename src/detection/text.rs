//! The offline text detector: PaddleOCR's PP-OCRv4 detection model (a
//! DBNet, `assets/model/ppocr_v4_det.onnx`) run on tract or onnxruntime
//! ([`super::engine`]). It finds lines of text and where they are, as a
//! `Text` label with `Instances`, and `Document` or `Screenshot` when text
//! fills the image (`layout_label`).
//!
//! Input: 1x3x640x640, B, G, R, each `(v / 255 - 0.5) / 0.5` (RapidOCR's
//! normalisation), the image scaled to fit and placed at the top-left of a
//! canvas of zeros. Output: 1x1x640x640, each pixel's probability of being
//! inside a text line. Post-processing, after DBNet's: pixels above
//! `THRESHOLD`, 4-connected components, each one's axis-aligned box kept
//! when its mean probability is at least `BOX_THRESHOLD` and its short
//! side at least `MIN_SIDE`, then grown by DBNet's unclip distance
//! (area x `UNCLIP_RATIO` / perimeter), since the model is trained to
//! mark a shrunk core of each line.

use image::RgbImage;

use super::engine::{Engine, EngineKind};
use super::model_error::ModelError;
use super::yolox::{BoxDet, Letterbox};
use crate::contract::{Instance, Label, NameRef};
use crate::imaging;

/// Identifies this model and its rules in `LabelModelVersion`.
pub const MODEL_VERSION: &str = "ppocr_v4_det-1";
/// Side of the square input (a multiple of 32, as DBNet needs).
pub const SIDE: usize = 640;
/// Length of the input tensor.
pub const TENSOR_LEN: usize = 3 * SIDE * SIDE;
/// Probability above which a pixel is text (DBNet's `thresh`).
pub(crate) const THRESHOLD: f32 = 0.3;
/// Mean probability a component needs to be a line (RapidOCR's
/// `box_thresh` is 0.5; 0.6 drops the stray marks photos have).
pub(crate) const BOX_THRESHOLD: f32 = 0.6;
/// Least short side of a line's core, input pixels.
pub(crate) const MIN_SIDE: usize = 3;
/// Greatest short side of a line's core, input pixels: taller blobs are
/// textures (grass, foliage), not lines.
pub(crate) const MAX_CORE_SIDE: usize = SIDE / 8;
/// Least fraction of its box a line's core fills: text lines are solid
/// bars, textures are ragged.
pub(crate) const MIN_FILL: f32 = 0.5;
/// Least number of lines for a `Text` label: a lone line is too often a
/// row of knobs or a pizza's crust.
pub const MIN_LINES: usize = 2;
/// DBNet's unclip ratio (RapidOCR's default 1.6 is for rotated boxes;
/// axis-aligned boxes of horizontal lines need a little less).
pub(crate) const UNCLIP_RATIO: f32 = 1.5;
/// At most this many lines are reported (the largest-scoring first).
pub(crate) const MAX_LINES: usize = 200;
/// Least number of lines for `Document` or `Screenshot`.
pub(crate) const LAYOUT_MIN_LINES: usize = 4;
/// Least fraction of the image the text block (the box around every line)
/// covers for `Document` or `Screenshot`.
pub(crate) const LAYOUT_MIN_BLOCK: f32 = 0.35;
/// Least fraction of the image the lines themselves cover for `Document`
/// or `Screenshot`.
pub(crate) const LAYOUT_MIN_COVERAGE: f32 = 0.08;

const MODEL_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/ppocr_v4_det.onnx"
));

/// A line of text in input pixels (x1, y1, x2, y2, after unclip).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    /// Mean probability inside the line's core, 0-1.
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// One connected component of the thresholded map.
#[derive(Debug, Clone, Copy)]
struct Component {
    x1: usize,
    y1: usize,
    x2: usize,
    y2: usize,
    sum: f32,
    pixels: usize,
}

impl Component {
    fn at(x: usize, y: usize) -> Self {
        Component {
            x1: x,
            y1: y,
            x2: x,
            y2: y,
            sum: 0.0,
            pixels: 0,
        }
    }

    fn add(&mut self, x: usize, y: usize, p: f32) {
        self.x1 = self.x1.min(x);
        self.y1 = self.y1.min(y);
        self.x2 = self.x2.max(x);
        self.y2 = self.y2.max(y);
        self.sum += p;
        self.pixels += 1;
    }

    /// The line, if it scores and is large enough: grown by the unclip
    /// distance.
    fn line(&self) -> Option<TextBox> {
        let (w, h) = (
            (self.x2 - self.x1 + 1) as f32,
            (self.y2 - self.y1 + 1) as f32,
        );
        let score = self.sum / self.pixels.max(1) as f32;
        let fill = self.pixels as f32 / (w * h);
        let short = w.min(h);
        if score < BOX_THRESHOLD
            || short < MIN_SIDE as f32
            || short > MAX_CORE_SIDE as f32
            || fill < MIN_FILL
        {
            return None;
        }
        let d = w * h * UNCLIP_RATIO / (2.0 * (w + h));
        Some(TextBox {
            score,
            x1: self.x1 as f32 - d,
            y1: self.y1 as f32 - d,
            x2: self.x2 as f32 + 1.0 + d,
            y2: self.y2 as f32 + 1.0 + d,
        })
    }
}

/// The 4-connected components of the pixels above [`THRESHOLD`] in the
/// top-left `width` x `height` of a `SIDE`-wide map.
fn components(map: &[f32], width: usize, height: usize) -> Vec<Component> {
    let mut seen = vec![false; width * height];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..width * height {
        let (sx, sy) = (start % width, start / width);
        if seen[start] || !is_text(map[sy * SIDE + sx]) {
            continue;
        }
        let mut c = Component::at(sx, sy);
        seen[start] = true;
        stack.push((sx, sy));
        while let Some((x, y)) = stack.pop() {
            c.add(x, y, map[y * SIDE + x]);
            for (nx, ny) in neighbours(x, y, width, height) {
                let i = ny * width + nx;
                if !seen[i] && is_text(map[ny * SIDE + nx]) {
                    seen[i] = true;
                    stack.push((nx, ny));
                }
            }
        }
        found.push(c);
    }
    found
}

/// Whether a pixel's probability makes it text (NaN does not).
fn is_text(p: f32) -> bool {
    p > THRESHOLD
}

/// The 4 neighbours of (x, y) inside a `width` x `height` grid.
fn neighbours(
    x: usize,
    y: usize,
    width: usize,
    height: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let left = x.checked_sub(1).map(|x| (x, y));
    let up = y.checked_sub(1).map(|y| (x, y));
    let right = (x + 1 < width).then_some((x + 1, y));
    let down = (y + 1 < height).then_some((x, y + 1));
    [left, up, right, down].into_iter().flatten()
}

/// The lines in a probability map (`SIDE` x `SIDE`) of which the top-left
/// `width` x `height` is the image: best first, at most `MAX_LINES`.
/// Non-finite probabilities count as background.
pub fn lines(map: &[f32], width: usize, height: usize) -> Result<Vec<TextBox>, ModelError> {
    if map.len() != SIDE * SIDE {
        return Err(ModelError::BadLength {
            expected: SIDE * SIDE,
            got: map.len(),
        });
    }
    let (width, height) = (width.min(SIDE), height.min(SIDE));
    let mut found: Vec<TextBox> = components(map, width, height)
        .iter()
        .filter_map(Component::line)
        .collect();
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    found.truncate(MAX_LINES);
    Ok(found)
}

/// Writes `img` into `out` (length [`TENSOR_LEN`]): scaled to fit with
/// the classifier's bilinear filter, B, G, R planes normalised to -1..1,
/// padding 0. Returns the placement and the scaled size.
pub fn letterbox_into(
    img: &RgbImage,
    out: &mut [f32],
) -> Result<(Letterbox, usize, usize), ModelError> {
    if out.len() != TENSOR_LEN {
        return Err(ModelError::BadLength {
            expected: TENSOR_LEN,
            got: out.len(),
        });
    }
    let (lb, _, _) = placement(img.width(), img.height());
    let norm = |v: u8| f32::from(v) / 127.5 - 1.0;
    let (_, w, h) = imaging::letterbox_bgr(img, SIDE, SIDE, out, 0.0, norm)?;
    Ok((lb, w as usize, h as usize))
}

/// Where a `width` x `height` image goes on the input: scaled to fit,
/// aspect kept, and the scaled size.
fn placement(width: u32, height: u32) -> (Letterbox, u32, u32) {
    let (ratio, w, h) = imaging::fit(width, height, SIDE as u32);
    let lb = Letterbox {
        ratio,
        width,
        height,
    };
    (lb, w, h)
}

/// A 0-1 score as a percentage rounded to 3 decimals.
pub(crate) fn percent(score: f32) -> f32 {
    ((f64::from(score).clamp(0.0, 1.0) * 100_000.0).round() / 1000.0) as f32
}

/// The `Text` label: as confident as its lines' mean score, each line at or
/// above `min_confidence` an instance; none below `min_confidence` or
/// with fewer than [`MIN_LINES`] lines. Then `Document` or `Screenshot` (`layout_label`).
pub fn labels(found: &[TextBox], lb: &Letterbox, min_confidence: f32) -> Vec<Label> {
    if found.len() < MIN_LINES {
        return Vec::new();
    }
    let mean = found.iter().map(|b| b.score).sum::<f32>() / found.len() as f32;
    let confidence = percent(mean);
    if confidence < min_confidence || confidence <= 0.0 {
        return Vec::new();
    }
    let mut text = Label::new("Text", confidence);
    text.instances = found
        .iter()
        .filter(|b| percent(b.score) >= min_confidence)
        .map(|b| instance(b, lb))
        .collect();
    let mut out = vec![text];
    out.extend(layout_label(found, lb, confidence));
    out
}

fn instance(b: &TextBox, lb: &Letterbox) -> Instance {
    let as_box = BoxDet {
        class: 0,
        score: b.score,
        x1: b.x1,
        y1: b.y1,
        x2: b.x2,
        y2: b.y2,
    };
    Instance {
        bounding_box: Some(lb.bounding_box(&as_box)),
        confidence: Some(percent(b.score)),
        dominant_colors: Vec::new(),
    }
}

/// How much of the image the text takes: the fraction the lines' boxes
/// cover (summed, clamped to 1) and the fraction the box around all of them
/// covers.
pub(crate) fn coverage(found: &[TextBox], lb: &Letterbox) -> (f32, f32) {
    let boxes: Vec<_> = found.iter().map(|b| instance(b, lb).bounding_box).collect();
    let area = |b: &crate::contract::BoundingBox| b.width * b.height;
    let lines: f32 = boxes.iter().flatten().map(area).sum();
    let (mut l, mut t, mut r, mut b) = (1f32, 1f32, 0f32, 0f32);
    for bb in boxes.iter().flatten() {
        l = l.min(bb.left);
        t = t.min(bb.top);
        r = r.max(bb.left + bb.width);
        b = b.max(bb.top + bb.height);
    }
    let block = (r - l).max(0.0) * (b - t).max(0.0);
    (lines.min(1.0), block.min(1.0))
}

/// `Document` or `Screenshot` (parent `Text`, as confident as `Text`) when
/// text fills the image: at least [`LAYOUT_MIN_LINES`] lines, the box
/// around them covering at least [`LAYOUT_MIN_BLOCK`] of the image and the
/// lines themselves at least [`LAYOUT_MIN_COVERAGE`]. `Screenshot` when the
/// image is landscape (wider than tall, as screens are), else `Document`
/// (a page is portrait). A landscape scan is thus a `Screenshot`: the rule
/// is deliberately simple.
pub(crate) fn layout_label(found: &[TextBox], lb: &Letterbox, confidence: f32) -> Option<Label> {
    let (lines, block) = coverage(found, lb);
    if found.len() < LAYOUT_MIN_LINES || block < LAYOUT_MIN_BLOCK || lines < LAYOUT_MIN_COVERAGE {
        return None;
    }
    let name = if lb.width > lb.height {
        "Screenshot"
    } else {
        "Document"
    };
    let mut label = Label::new(name, confidence);
    label.parents = vec![NameRef::new("Text")];
    Some(label)
}

/// When the local detector runs the text model (`--text-detection`,
/// `text-detection`, `IMGTAG_TEXT_DETECTION`). It costs more than the
/// other two models together and most photos have no text, so by default
/// it runs only when the classifier says text is likely ([`likely`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TextDetection {
    /// Only when [`likely`]: the classifier's text-bearing classes
    /// (`TEXT_CLASSES`) hold at least `GATE_PROBABILITY`.
    #[default]
    Auto,
    /// On every image.
    Always,
    /// Never: no `Text`, `Document` or `Screenshot`.
    Never,
}

impl TextDetection {
    pub fn as_str(self) -> &'static str {
        match self {
            TextDetection::Auto => "auto",
            TextDetection::Always => "always",
            TextDetection::Never => "never",
        }
    }

    /// Whether to run the text model, given the classifier's softmax
    /// probabilities.
    pub fn runs(self, probs: &[f32]) -> bool {
        match self {
            TextDetection::Auto => likely(probs),
            TextDetection::Always => true,
            TextDetection::Never => false,
        }
    }
}

impl std::str::FromStr for TextDetection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(TextDetection::Auto),
            "always" => Ok(TextDetection::Always),
            "never" => Ok(TextDetection::Never),
            _ => Err(format!("{s:?} is not auto, always or never")),
        }
    }
}

/// ImageNet classes (index, the classifier's name for it) whose
/// pictures are mostly print or a screen: pages, packaging, signs and
/// displays. Left out on purpose: shops, libraries and the cinema, whose
/// shelves and facades fire on ordinary street and indoor photos.
pub(crate) const TEXT_CLASSES: [(usize, &str); 18] = [
    (446, "Binder"),
    (478, "Carton"),
    (527, "Desktop Computer"),
    (549, "Envelope"),
    (590, "Hand-held Computer"),
    (620, "Laptop"),
    (664, "Monitor"),
    (681, "Notebook"),
    (692, "Packet"),
    (781, "Scoreboard"),
    (782, "Screen"),
    (851, "Television"),
    (916, "Web Site"),
    (917, "Comic Book"),
    (918, "Crossword Puzzle"),
    (919, "Street Sign"),
    (921, "Book Jacket"),
    (922, "Menu"),
];

/// Least summed probability of [`TEXT_CLASSES`] for [`TextDetection::Auto`]
/// to run the text model. The repo's invoice and screenshot hold 0.83 and
/// 0.92 (Menu, Web Site); its photos at most 0.008: a wide margin either
/// side (docs/detectors.md).
pub(crate) const GATE_PROBABILITY: f32 = 0.05;

/// Whether the classifier's probabilities make text likely: the summed
/// probability of `TEXT_CLASSES` is at least `GATE_PROBABILITY`. A sum,
/// not the top class, since a page splits its probability between Menu,
/// Web Site, Envelope... NaN counts as nothing.
pub fn likely(probs: &[f32]) -> bool {
    let mass: f32 = TEXT_CLASSES
        .iter()
        .filter_map(|&(i, _)| probs.get(i))
        .filter(|p| p.is_finite())
        .sum();
    mass >= GATE_PROBABILITY
}

/// PP-OCRv4's detection model, ready to run. `Send + Sync`, cheap to
/// clone; every call runs with its own state.
#[derive(Debug, Clone)]
pub struct TextDetector {
    engine: Engine,
}

impl TextDetector {
    /// Loads the embedded model (fixed 1x3x640x640 input) on `engine`.
    pub fn load_with(engine: EngineKind) -> Result<Self, ModelError> {
        Ok(TextDetector {
            engine: Engine::load(engine, MODEL_BYTES, [1, 3, SIDE, SIDE])?,
        })
    }

    /// The engine the model runs on.
    pub fn engine(&self) -> EngineKind {
        self.engine.kind()
    }

    /// The probability map (`SIDE` x `SIDE`) for one input tensor.
    pub fn map(&self, tensor: &[f32]) -> Result<Vec<f32>, ModelError> {
        let map = self.engine.run(tensor)?;
        if map.len() != SIDE * SIDE {
            return Err(ModelError::BadLength {
                expected: SIDE * SIDE,
                got: map.len(),
            });
        }
        Ok(map)
    }

    /// The lines of text in `img` (input pixels) and where it was placed;
    /// `tensor` is the input buffer (length [`TENSOR_LEN`]).
    pub fn lines(
        &self,
        img: &RgbImage,
        tensor: &mut [f32],
    ) -> Result<(Vec<TextBox>, Letterbox), ModelError> {
        let (lb, w, h) = letterbox_into(img, tensor)?;
        let map = self.map(tensor)?;
        Ok((lines(&map, w, h)?, lb))
    }

    /// Letterboxes `img` into `tensor`, runs the model and returns `Text`
    /// (and `Document` or `Screenshot`) at or above `min_confidence`.
    pub fn detect(
        &self,
        img: &RgbImage,
        min_confidence: f32,
        tensor: &mut [f32],
    ) -> Result<Vec<Label>, ModelError> {
        let (found, lb) = self.lines(img, tensor)?;
        Ok(labels(&found, &lb, min_confidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(rects: &[(usize, usize, usize, usize, f32)]) -> Vec<f32> {
        let mut map = vec![0f32; SIDE * SIDE];
        for &(x1, y1, x2, y2, p) in rects {
            for y in y1..y2 {
                map[y * SIDE + x1..y * SIDE + x2].fill(p);
            }
        }
        map
    }

    #[test]
    fn text_detection_parses_and_gates_on_the_text_classes_mass() {
        for (s, want) in [
            ("auto", TextDetection::Auto),
            (" Always ", TextDetection::Always),
            ("NEVER", TextDetection::Never),
        ] {
            assert_eq!(s.parse::<TextDetection>(), Ok(want));
            assert_eq!(want.as_str().parse::<TextDetection>(), Ok(want));
        }
        for bad in ["", "on", "yes", "sometimes"] {
            assert!(bad.parse::<TextDetection>().is_err(), "{bad:?}");
        }
        assert_eq!(TextDetection::default(), TextDetection::Auto);

        let mut probs = vec![0f32; 1000];
        probs[963] = 0.99; // Pizza
        assert!(!likely(&probs));
        assert!(TextDetection::Always.runs(&probs));
        assert!(!TextDetection::Auto.runs(&probs));
        // Spread over two text classes, each below the threshold.
        probs[922] = 0.03; // Menu
        probs[916] = 0.025; // Web Site
        assert!(likely(&probs));
        assert!(TextDetection::Auto.runs(&probs));
        assert!(!TextDetection::Never.runs(&probs));
        probs[916] = f32::NAN;
        assert!(!likely(&probs));
    }

    #[test]
    fn components_become_unclipped_lines_and_weak_thin_or_tall_ones_are_dropped() {
        let map = map_with(&[
            (10, 10, 110, 20, 0.9),
            (10, 40, 110, 50, 0.4),
            (10, 60, 110, 62, 0.9),
            (200, 10, 210, 12, f32::NAN),
            (300, 100, 400, 300, 0.9),
        ]);
        let found = lines(&map, SIDE, SIDE).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let d = 100.0 * 10.0 * UNCLIP_RATIO / 220.0;
        let b = found[0];
        assert!(
            (b.x1 - (10.0 - d)).abs() < 1e-3 && (b.y2 - (20.0 + d)).abs() < 1e-3,
            "{b:?}"
        );
        assert!((b.score - 0.9).abs() < 1e-4);
    }

    #[test]
    fn only_the_image_part_of_the_map_counts() {
        let map = map_with(&[(300, 10, 400, 20, 0.9)]);
        assert!(lines(&map, 200, SIDE).unwrap().is_empty());
        assert!(lines(&map[..10], 200, 200).is_err());
    }

    #[test]
    fn layout_needs_lines_filling_the_page() {
        let (lb, _, _) = placement(600, 800);
        let row = |i: usize| TextBox {
            score: 0.8,
            x1: 40.0,
            y1: 40.0 + 60.0 * i as f32,
            x2: 400.0,
            y2: 60.0 + 60.0 * i as f32,
        };
        let page: Vec<_> = (0..8).map(row).collect();
        let labels = labels(&page, &lb, 55.0);
        let names: Vec<_> = labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Text", "Document"]);
        assert_eq!(labels[0].instances.len(), 8);
        assert!((labels[0].confidence - 80.0).abs() < 1e-3);
        let (wide, _, _) = placement(800, 600);
        assert_eq!(layout_label(&page, &wide, 80.0).unwrap().name, "Screenshot");
        assert!(layout_label(&page[..2], &lb, 80.0).is_none());
        assert!(super::labels(&page, &lb, 90.0).is_empty());
    }
}
