//! The offline object detector: Megvii's YOLOX-Nano (COCO, 80 classes) run
//! on tract or onnxruntime ([`super::engine`]). It finds what the ImageNet
//! classifier cannot name (people, vehicles, furniture) and where they are,
//! as Rekognition-style labels with `Instances`.
//!
//! Input: 1x3xHxW, B, G, R, 0-255, the image scaled to fit 416x416 and
//! placed at the top-left of a [`Canvas`] filled with 114 (YOLOX's
//! letterbox); the canvas is the scaled image rounded up to the model's
//! largest stride, so a 3:2 photo runs on 416x288, not 416x416
//! (docs/detectors.md, "The detector's canvas"). Output: 1xAx85, one row
//! per anchor (strides 8, 16, 32; 3549 anchors on 416x416): box offsets
//! and log sizes (not yet decoded), then objectness and 80 class scores
//! (the graph already applies their sigmoid).
//!
//! Model and class names are embedded in the binary (`assets/model/`).

use std::sync::Arc;

use image::RgbImage;
use serde::Deserialize;

use super::calibration::Curve;
use super::engine::{Engine, EngineChoice, EngineKind};
use super::model_error::ModelError;
use crate::contract::{BoundingBox, Instance, Label, NameRef};
use crate::imaging;

/// Identifies this model in `LabelModelVersion` (with the classifier's).
pub const MODEL_VERSION: &str = "yolox_nano-2";
/// Side of the square an image is scaled to fit.
pub const SIDE: usize = 416;
/// Length of the largest input tensor (a full [`Canvas`]).
pub const TENSOR_LEN: usize = 3 * SIDE * SIDE;
/// Number of COCO classes.
pub const NUM_CLASSES: usize = 80;
/// Values per anchor row: 4 box, objectness, 80 classes.
pub const ROW: usize = 5 + NUM_CLASSES;
/// The anchor strides, in output order.
pub(crate) const STRIDES: [usize; 3] = [8, 16, 32];
/// Number of anchors on a full canvas (52² + 26² + 13²).
pub const NUM_ANCHORS: usize = 3549;
/// Padding kept below and right of the image on a [`Canvas`]: without it
/// the network's edge sees the canvas's end for the padding it saw in
/// training, and scores near the edge move by up to 0.20 (0.06 with it, on
/// the evaluation photos; docs/detectors.md, "The detector's canvas").
pub const CANVAS_MARGIN: usize = 16;
/// The sides a [`Canvas`] may have (multiples of the largest stride, 32):
/// few, because tract makes a plan per canvas (about 170 ms of CPU and 5
/// MB each), so at most 11 canvases, one per common photo shape (3:2 on
/// 320, 4:3 on 352, 16:9 on 256, panoramas on 192 or 128).
pub const CANVAS_SIDES: [usize; 6] = [128, 192, 256, 320, 352, SIDE];
/// Grey of the letterbox padding, as YOLOX was trained.
pub(crate) const PAD_VALUE: f32 = 114.0;
/// IoU above which a weaker box of the same class is suppressed (YOLOX's
/// demo value).
pub const NMS_IOU: f32 = 0.45;
/// Below this score a box is never reported, whatever `MinConfidence`
/// says: lower scores are noise and would flood NMS.
pub(crate) const SCORE_FLOOR: f32 = 0.10;

const MODEL_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/yolox_nano.onnx"
));
const CLASSES_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/coco_labels.json"
));

/// A detected box in letterboxed input pixels (x1, y1, x2, y2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxDet {
    /// COCO class index (0 = person).
    pub class: usize,
    /// Objectness x class score, 0-1.
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoxDet {
    fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }
}

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &BoxDet, b: &BoxDet) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = w * h;
    let union = a.area() + b.area() - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// The model's input size for one image: the image scaled to fit
/// [`SIDE`] x [`SIDE`], each side with at least [`CANVAS_MARGIN`] of
/// padding, rounded up to the next of [`CANVAS_SIDES`]. The network is
/// fully convolutional, so a smaller canvas only drops padding: the photo
/// keeps its scale, and the work shrinks with the canvas (a 3:2 photo:
/// 416x320, 0.77 of the square).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
}

impl Canvas {
    /// The square every image used to run on.
    pub const FULL: Canvas = Canvas {
        width: SIDE,
        height: SIDE,
    };

    /// The canvas of a `width` x `height` image.
    pub fn of_image(width: u32, height: u32) -> Canvas {
        let (_, w, h) = imaging::fit(width, height, SIDE as u32);
        let up = |v: u32| {
            let need = v as usize + CANVAS_MARGIN;
            CANVAS_SIDES
                .into_iter()
                .find(|&s| s >= need)
                .unwrap_or(SIDE)
        };
        Canvas {
            width: up(w),
            height: up(h),
        }
    }

    /// Values in its input tensor.
    pub fn tensor_len(self) -> usize {
        3 * self.width * self.height
    }

    /// Its input shape, NCHW.
    pub fn shape(self) -> [usize; 4] {
        [1, 3, self.height, self.width]
    }

    /// Rows of the model's output on it.
    pub fn anchors(self) -> usize {
        STRIDES
            .iter()
            .map(|s| (self.width / s) * (self.height / s))
            .sum()
    }

    /// (x, y, stride) of output row `index`: each stride's grid, row by
    /// row, in [`STRIDES`] order.
    fn anchor(self, index: usize) -> Option<(f32, f32, f32)> {
        let mut first = 0;
        for s in STRIDES {
            let (nx, ny) = (self.width / s, self.height / s);
            if index < first + nx * ny {
                let i = index - first;
                return Some(((i % nx) as f32, (i / nx) as f32, s as f32));
            }
            first += nx * ny;
        }
        None
    }
}

/// Decodes one raw row's box into letterboxed pixels (x1, y1, x2, y2).
pub fn decode_box(index: usize, row: &[f32], canvas: Canvas) -> Option<[f32; 4]> {
    let (gx, gy, s) = canvas.anchor(index)?;
    let cx = (row[0] + gx) * s;
    let cy = (row[1] + gy) * s;
    let w = row[2].exp() * s;
    let h = row[3].exp() * s;
    Some([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0])
}

/// Every (anchor, class) of `raw` (the output on `canvas`) whose score
/// (objectness x class) is at least `score_min`, decoded. Non-finite
/// values are skipped.
pub fn decode(raw: &[f32], score_min: f32, canvas: Canvas) -> Vec<BoxDet> {
    let mut out = Vec::new();
    for (index, row) in raw.chunks_exact(ROW).enumerate() {
        let objectness = row[4];
        // A class score is at most 1, so a weak objectness rules out the row.
        if objectness.is_nan() || objectness < score_min {
            continue;
        }
        let Some([x1, y1, x2, y2]) = decode_box(index, row, canvas) else {
            break;
        };
        if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) {
            continue;
        }
        for (class, &p) in row[5..].iter().enumerate() {
            let score = objectness * p;
            if score >= score_min && score.is_finite() {
                out.push(BoxDet {
                    class,
                    score,
                    x1,
                    y1,
                    x2,
                    y2,
                });
            }
        }
    }
    out
}

/// Greedy non-maximum suppression within each class: keeps the best box,
/// drops every box of the same class overlapping a kept one by more than
/// `iou_max`. Result sorted by score (descending), then class.
pub fn nms(mut boxes: Vec<BoxDet>, iou_max: f32) -> Vec<BoxDet> {
    boxes.sort_by(|a, b| a.class.cmp(&b.class).then(b.score.total_cmp(&a.score)));
    let mut kept: Vec<BoxDet> = Vec::new();
    let mut class_start = 0;
    for b in boxes {
        if kept.get(class_start).is_some_and(|k| k.class != b.class) {
            class_start = kept.len();
        }
        if kept[class_start..].iter().all(|k| iou(k, &b) <= iou_max) {
            kept.push(b);
        }
    }
    kept.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)));
    kept
}

/// How an image was placed on the input canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Input pixels per original pixel.
    pub ratio: f64,
    /// Original size.
    pub width: u32,
    pub height: u32,
}

impl Letterbox {
    /// The placement of a `width` x `height` image: scaled to fit 416x416,
    /// aspect kept, and the scaled size.
    pub fn new(width: u32, height: u32) -> (Self, u32, u32) {
        let (ratio, w, h) = imaging::fit(width, height, SIDE as u32);
        let lb = Letterbox {
            ratio,
            width,
            height,
        };
        (lb, w, h)
    }

    /// A box in input pixels as Rekognition's fractions of the original
    /// image, clamped to the image.
    pub fn bounding_box(&self, b: &BoxDet) -> BoundingBox {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let fx = |v: f32| (f64::from(v) / self.ratio / w).clamp(0.0, 1.0);
        let fy = |v: f32| (f64::from(v) / self.ratio / h).clamp(0.0, 1.0);
        let (left, top) = (fx(b.x1), fy(b.y1));
        BoundingBox {
            left: left as f32,
            top: top as f32,
            width: (fx(b.x2) - left).max(0.0) as f32,
            height: (fy(b.y2) - top).max(0.0) as f32,
        }
    }
}

/// Writes `img` letterboxed into `out`, resized to its [`Canvas`]: scaled
/// with the bilinear filter the classifier uses, B, G, R planes, 0-255,
/// padding 114.
pub fn letterbox_into(
    img: &RgbImage,
    out: &mut Vec<f32>,
) -> Result<(Letterbox, Canvas), ModelError> {
    let (lb, _, _) = Letterbox::new(img.width(), img.height());
    let canvas = Canvas::of_image(img.width(), img.height());
    out.resize(canvas.tensor_len(), PAD_VALUE);
    imaging::letterbox_bgr(img, SIDE, canvas.width, out, PAD_VALUE, f32::from)?;
    Ok((lb, canvas))
}

#[derive(Deserialize)]
struct ClassesFile {
    format: u32,
    classes: Vec<ClassJson>,
    /// Ancestors of every name that is some class's parent.
    parents: std::collections::HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ClassJson {
    name: String,
    parents: Vec<String>,
}

/// Everyday names and parents (all ancestors, nearest first) of the 80
/// classes, from `assets/model/coco_labels.json`.
#[derive(Debug, Clone)]
pub struct ClassNames {
    classes: Vec<(String, Vec<String>)>,
    parents: std::collections::HashMap<String, Vec<String>>,
}

impl ClassNames {
    /// Parses a coco_labels.json document (format 1, 80 classes).
    pub fn from_json(json: &str) -> Result<Self, ModelError> {
        let file: ClassesFile =
            serde_json::from_str(json).map_err(|e| ModelError::Labels(e.to_string()))?;
        if file.format != 1 || file.classes.len() != NUM_CLASSES {
            return Err(ModelError::Labels(format!(
                "coco_labels.json: format {}, {} classes (expected 1, {NUM_CLASSES})",
                file.format,
                file.classes.len()
            )));
        }
        Ok(ClassNames {
            classes: file
                .classes
                .into_iter()
                .map(|c| (c.name, c.parents))
                .collect(),
            parents: file.parents,
        })
    }

    /// The embedded class names.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::from_json(CLASSES_JSON)
    }

    /// Name of class `class`.
    pub fn name(&self, class: usize) -> Option<&str> {
        self.classes.get(class).map(|c| c.0.as_str())
    }

    /// Ancestors of class `class`, nearest first.
    pub fn parents(&self, class: usize) -> &[String] {
        self.classes.get(class).map_or(&[], |c| c.1.as_slice())
    }

    /// One label per class with a box at or above `min_confidence`
    /// (percent): its confidence is its best box's, every such box is an
    /// instance. Then each ancestor as a label of its own (as Rekognition
    /// returns them), as confident as its best descendant. Sorted by
    /// confidence, then name. Scores are mapped through `calibration`.
    pub fn labels(
        &self,
        boxes: &[BoxDet],
        lb: &Letterbox,
        min_confidence: f32,
        calibration: &Curve,
    ) -> Vec<Label> {
        let mut labels: Vec<Label> = Vec::new();
        for b in boxes {
            let confidence = percent(calibration.apply(b.score * 100.0) / 100.0);
            let Some((name, parents)) = self.classes.get(b.class) else {
                continue;
            };
            if confidence < min_confidence || confidence <= 0.0 {
                continue;
            }
            let instance = Instance {
                bounding_box: Some(lb.bounding_box(b)),
                confidence: Some(confidence),
                dominant_colors: Vec::new(),
            };
            let label = upsert(&mut labels, name, confidence);
            label.instances.push(instance);
            if label.parents.is_empty() {
                label.parents = parents.iter().map(NameRef::new).collect();
            }
            for parent in parents {
                let p = upsert(&mut labels, parent, confidence);
                if p.parents.is_empty() {
                    let above = self.parents.get(parent).map_or(&[][..], Vec::as_slice);
                    p.parents = above.iter().map(NameRef::new).collect();
                }
            }
        }
        sort_labels(&mut labels);
        labels
    }
}

/// The label called `name` (raising its confidence to `confidence`), added
/// if missing.
pub(crate) fn upsert<'a>(labels: &'a mut Vec<Label>, name: &str, confidence: f32) -> &'a mut Label {
    let at = match labels
        .iter()
        .position(|l| l.name.eq_ignore_ascii_case(name))
    {
        Some(i) => {
            labels[i].confidence = labels[i].confidence.max(confidence);
            i
        }
        None => {
            labels.push(Label::new(name, confidence));
            labels.len() - 1
        }
    };
    &mut labels[at]
}

/// Highest confidence first, then name (the order every label list uses).
pub(crate) fn sort_labels(labels: &mut [Label]) {
    labels.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// A 0-1 score as a percentage rounded to 3 decimals (like the
/// classifier's labels).
fn percent(score: f32) -> f32 {
    ((f64::from(score).clamp(0.0, 1.0) * 100_000.0).round() / 1000.0) as f32
}

/// YOLOX-Nano and its class names, ready to run. `Send + Sync`, cheap to
/// clone; every call runs with its own state.
#[derive(Debug, Clone)]
pub struct Yolox {
    engine: Engine,
    classes: Arc<ClassNames>,
    /// Maps box scores to calibrated confidences.
    calibration: Curve,
}

impl Yolox {
    /// Loads the embedded model (analysed once for every canvas, each
    /// canvas made ready when first met, [`Engine::run_shaped`]) and class
    /// names on the engine `IMGTAG_ENGINE` asks for.
    pub fn load() -> Result<Self, ModelError> {
        Self::load_with(EngineChoice::from_env()?.resolve()?)
    }

    /// [`Yolox::load`] on `engine`.
    pub fn load_with(engine: EngineKind) -> Result<Self, ModelError> {
        Ok(Yolox {
            engine: Engine::load_sides_multiple_of(
                engine,
                MODEL_BYTES,
                Canvas::FULL.shape(),
                STRIDES[STRIDES.len() - 1],
            )?,
            classes: Arc::new(ClassNames::embedded()?),
            calibration: Curve::identity(),
        })
    }

    /// This detector with its confidences mapped through `curve` (it loads
    /// with raw scores; [`super::local::LocalModel`] sets the shipped
    /// calibration).
    pub fn with_calibration(&self, curve: Curve) -> Self {
        Yolox {
            calibration: curve,
            ..self.clone()
        }
    }

    /// The engine the model runs on.
    pub fn engine(&self) -> EngineKind {
        self.engine.kind()
    }

    /// The class names.
    pub fn classes(&self) -> &ClassNames {
        &self.classes
    }

    /// The raw output ([`Canvas::anchors`] x 85 values) for one input
    /// tensor on `canvas`.
    pub fn raw(&self, tensor: &[f32], canvas: Canvas) -> Result<Vec<f32>, ModelError> {
        let raw = self.engine.run_shaped(tensor, canvas.shape())?;
        if raw.len() != canvas.anchors() * ROW {
            return Err(ModelError::BadLength {
                expected: canvas.anchors() * ROW,
                got: raw.len(),
            });
        }
        Ok(raw)
    }

    /// Boxes after NMS, in input pixels, scoring at least `score_min`
    /// (never below `SCORE_FLOOR`).
    pub fn boxes(
        &self,
        tensor: &[f32],
        canvas: Canvas,
        score_min: f32,
    ) -> Result<Vec<BoxDet>, ModelError> {
        let raw = self.raw(tensor, canvas)?;
        Ok(nms(
            decode(&raw, score_min.max(SCORE_FLOOR), canvas),
            NMS_IOU,
        ))
    }

    /// Letterboxes `img` into `tensor`, runs the model and returns its
    /// labels at or above `min_confidence` (percent).
    pub fn detect(
        &self,
        img: &RgbImage,
        min_confidence: f32,
        tensor: &mut Vec<f32>,
    ) -> Result<Vec<Label>, ModelError> {
        let (lb, canvas) = letterbox_into(img, tensor)?;
        let floor = self.calibration.raw_floor(min_confidence);
        let boxes = self.boxes(tensor, canvas, floor / 100.0)?;
        Ok(self
            .classes
            .labels(&boxes, &lb, min_confidence, &self.calibration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tract's plans made from the model decluttered once for every canvas
    /// give exactly what a plan made from the file for that one shape
    /// gives (`tools/yolox_dynamic.py` rewrote the Focus layer and the
    /// stride-2 padding so that tract can analyse it once).
    #[test]
    fn plans_from_the_shared_analysis_agree_with_plans_from_the_file() {
        let side = STRIDES[STRIDES.len() - 1];
        let shared = Engine::load_sides_multiple_of(
            EngineKind::Tract,
            MODEL_BYTES,
            Canvas::FULL.shape(),
            side,
        )
        .unwrap();
        for canvas in [
            Canvas {
                width: 416,
                height: 320,
            },
            Canvas {
                width: 128,
                height: 416,
            },
        ] {
            let own = Engine::load(EngineKind::Tract, MODEL_BYTES, canvas.shape()).unwrap();
            let input: Vec<f32> = (0..canvas.tensor_len())
                .map(|i| ((i * 7919) % 255) as f32)
                .collect();
            let expected = own.run(&input).unwrap();
            assert_eq!(expected.len(), canvas.anchors() * 85);
            let got = shared.run_shaped(&input, canvas.shape()).unwrap();
            assert_eq!(got.len(), expected.len());
            // The shared analysis leaves out two of tract's declutter passes
            // (engine::lean_declutter): the same numbers but for rounding.
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
                .fold(0f32, f32::max);
            eprintln!("{canvas:?}: worst relative difference {worst:e}");
            assert!(worst < 1e-4, "{canvas:?}: {worst}");
        }
        // 400 is no multiple of 32: refused before tract sees it.
        let err = shared
            .run_shaped(&vec![0.0; 3 * 400 * 416], [1, 3, 400, 416])
            .unwrap_err();
        assert!(err.to_string().contains("multiples of 32"), "{err}");
    }
}
