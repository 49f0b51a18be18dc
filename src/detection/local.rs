//! The offline label detector: two models run on every image (on tract or
//! onnxruntime, [`super::engine`]), merged into one Rekognition-shaped
//! answer.
//!
//! - torchvision's MobileNetV2 (ImageNet-1k) and a WordNet-derived label
//!   hierarchy that turns the 1000 class probabilities into labels with
//!   parents (scenes, breeds, food, objects);
//! - YOLOX-Nano (COCO, [`super::yolox`]): people, vehicles, furniture...
//!   with bounding boxes (`Instances`), which ImageNet cannot name;
//! - PP-OCRv4's text detector ([`super::text`]): `Text` with a box per
//!   line, and `Document` or `Screenshot` when text fills the image.
//!
//! Models and labels are embedded in the binary (`assets/model/`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Deserialize;

use super::calibration::{Calibration, Curve};
use super::engine::{Engine, EngineChoice, EngineKind};
pub use super::model_error::ModelError;
use super::threads::ModelThreads;
use super::{DetectFailure, DetectInput, DetectParams, Detector, DetectorKind};

use super::text::{self, TextDetection, TextDetector};
use super::words::Recognizer;
use super::yolox::{self, Yolox};
use crate::contract::{Candidate, Label, NameRef, TextLine, normalize_candidates};
use crate::imaging::{self, DecodeLimits, INPUT_SIZE, TENSOR_LEN};

/// `LabelModelVersion` written by the local detector: both models, so a
/// document tagged by the classifier alone is not "the same request", and
/// the label names' curation (`names-2`: `assets/taxonomy/local_names.json`),
/// so documents with the old names (`Sporting Dog`, `Cab`) are re-tagged,
/// the scene rules (`scenes-2`, [`super::scenes`]) and the text detector
/// ([`super::text::MODEL_VERSION`]) and recogniser
/// ([`super::words::MODEL_VERSION`]), so documents without `ImgTag.Text`
/// are re-tagged, and the confidences' calibration (`calibration-1`,
/// [`super::calibration`]), so raw confidences are re-tagged.
pub const MODEL_VERSION: &str = "imgtag-mobilenet_v2-1+yolox_nano-2+names-2+scenes-2+ppocr_v4_det-1+ppocr_v4_rec-2+calibration-1";

/// Whether a document's `LabelModelVersion` is what the local detector
/// writes now (the pipeline re-tags older local results).
pub fn is_current_version(label_model_version: Option<&str>) -> bool {
    label_model_version == Some(MODEL_VERSION)
}
/// Number of ImageNet classes the model outputs.
pub const NUM_CLASSES: usize = 1000;

const MODEL_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/mobilenet_v2.onnx"
));
const LABELS_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/labels.json"
));

#[derive(Deserialize)]
struct LabelsFile {
    format: u32,
    nodes: Vec<NodeJson>,
    classes: Vec<usize>,
}

#[derive(Deserialize)]
struct NodeJson {
    #[allow(dead_code)]
    wnid: String,
    name: String,
    parents: Vec<usize>,
}

/// The label hierarchy: a DAG of named nodes, the first of which are the
/// model's classes.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    names: Vec<String>,
    /// Lower-cased name -> first node of that name.
    index: std::collections::HashMap<String, u32>,
    /// For each node, all its ancestors, nearest first, without duplicates.
    ancestors: Vec<Vec<u32>>,
    /// For each class, its node and all that node's ancestors.
    class_closure: Vec<Vec<u32>>,
    /// Nodes kept as parents only, never output as labels
    /// ([`crate::taxonomy::LocalNames`]).
    parent_only: Vec<bool>,
    /// The classifier's calibration (identity until the model sets it).
    calibration: Curve,
}

impl Hierarchy {
    /// Parse a labels.json document (format 1), its names curated by
    /// [`crate::taxonomy::LocalNames`] (renamed; some kept as parents only).
    pub fn from_json(json: &str) -> Result<Self, ModelError> {
        let mut file: LabelsFile =
            serde_json::from_str(json).map_err(|e| ModelError::Labels(e.to_string()))?;
        let local = crate::taxonomy::LocalNames::shipped();
        for node in &mut file.nodes {
            let renamed = local.name(&node.name);
            if renamed != node.name {
                node.name = renamed.to_string();
            }
        }
        let parent_only = file
            .nodes
            .iter()
            .map(|node| local.is_parent_only(&node.name))
            .collect();
        let names: Vec<String> = file.nodes.iter().map(|n| n.name.clone()).collect();
        for node in &mut file.nodes {
            node.parents.retain(|&p| {
                names
                    .get(p)
                    .is_none_or(|parent| !local.drops_edge(&node.name, parent))
            });
        }
        if file.format != 1 {
            return Err(ModelError::Labels(format!(
                "unknown format {}",
                file.format
            )));
        }
        let n = file.nodes.len();
        if n > u32::MAX as usize {
            return Err(ModelError::Labels("too many nodes".into()));
        }
        for (i, node) in file.nodes.iter().enumerate() {
            if let Some(&p) = node.parents.iter().find(|&&p| p >= n || p == i) {
                return Err(ModelError::Labels(format!(
                    "node {i} ({}) has invalid parent {p}",
                    node.name
                )));
            }
        }
        if file.classes.len() != NUM_CLASSES {
            return Err(ModelError::Labels(format!(
                "{} classes, expected {NUM_CLASSES}",
                file.classes.len()
            )));
        }
        if let Some(&c) = file.classes.iter().find(|&&c| c >= n) {
            return Err(ModelError::Labels(format!("class node {c} out of range")));
        }

        // Breadth-first over parents: nearest ancestors first, each once.
        let mut ancestors = Vec::with_capacity(n);
        let mut seen = vec![usize::MAX; n];
        for start in 0..n {
            let mut list: Vec<u32> = Vec::new();
            seen[start] = start;
            let mut head = 0;
            let mut frontier: Vec<usize> = vec![start];
            while head < frontier.len() {
                let current = frontier[head];
                head += 1;
                for &p in &file.nodes[current].parents {
                    if seen[p] != start {
                        seen[p] = start;
                        list.push(p as u32);
                        frontier.push(p);
                    }
                }
            }
            if list.contains(&(start as u32)) {
                return Err(ModelError::Labels(format!("cycle through node {start}")));
            }
            ancestors.push(list);
        }
        let class_closure = file
            .classes
            .iter()
            .map(|&c| {
                let mut v = Vec::with_capacity(ancestors[c].len() + 1);
                v.push(c as u32);
                v.extend_from_slice(&ancestors[c]);
                v
            })
            .collect();
        let mut index = std::collections::HashMap::with_capacity(n);
        for (i, node) in file.nodes.iter().enumerate() {
            index.entry(node.name.to_lowercase()).or_insert(i as u32);
        }
        Ok(Hierarchy {
            parent_only,
            index,
            names: file.nodes.into_iter().map(|node| node.name).collect(),
            ancestors,
            class_closure,
            calibration: Curve::identity(),
        })
    }

    /// Number of nodes (classes and ancestors).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the hierarchy has no nodes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Display name of node `node`.
    pub fn name(&self, node: usize) -> Option<&str> {
        self.names.get(node).map(String::as_str)
    }

    /// The node called `name` (case-insensitive), if any.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.index.get(&name.to_lowercase()).map(|&i| i as usize)
    }

    /// Display name of class `class` (model output index).
    pub fn class_name(&self, class: usize) -> Option<&str> {
        let node = *self.class_closure.get(class)?.first()?;
        self.name(node as usize)
    }

    /// All ancestors of node `node`, nearest first.
    pub fn ancestor_names(&self, node: usize) -> Vec<&str> {
        self.ancestors
            .get(node)
            .map(|a| a.iter().map(|&p| self.names[p as usize].as_str()).collect())
            .unwrap_or_default()
    }

    /// Rekognition-style labels from class probabilities (see
    /// [`LocalModel::labels`]).
    pub fn labels(
        &self,
        probs: &[f32],
        min_confidence: f32,
        max_labels: Option<u32>,
    ) -> Vec<Label> {
        let mut picked = self.confidences(probs, |c| c >= min_confidence);
        if let Some(max) = max_labels {
            picked.truncate(max as usize);
        }
        picked
            .into_iter()
            .map(|(confidence, node)| {
                let mut label = Label::new(self.names[node].clone(), confidence);
                label.parents = self.ancestors[node]
                    .iter()
                    .map(|&p| NameRef::new(self.names[p as usize].clone()))
                    .collect();
                label
            })
            .collect()
    }

    /// This hierarchy with its confidences mapped through `curve`.
    pub fn with_calibration(&self, curve: Curve) -> Self {
        Hierarchy {
            calibration: curve,
            ..self.clone()
        }
    }

    /// Each node's confidence (100 x the summed probability of every class
    /// under it, each class counted once, then calibrated), kept where `keep` says and the
    /// node may be a label, most confident first, then by name.
    fn confidences(&self, probs: &[f32], keep: impl Fn(f32) -> bool) -> Vec<(f32, usize)> {
        let mut sums = vec![0f64; self.names.len()];
        for (closure, &p) in self.class_closure.iter().zip(probs) {
            // NaN or negative inputs must not make a parent smaller than its
            // child: clamp each term into [0, 1].
            let p = if p.is_finite() {
                f64::from(p).clamp(0.0, 1.0)
            } else {
                0.0
            };
            for &node in closure {
                sums[node as usize] += p;
            }
        }
        let mut picked: Vec<(f32, usize)> = sums
            .iter()
            .enumerate()
            .map(|(node, &s)| {
                let calibrated = self.calibration.apply((s * 100.0) as f32);
                (round_confidence(f64::from(calibrated)), node)
            })
            .filter(|&(c, node)| c > 0.0 && keep(c) && !self.parent_only[node])
            .collect();
        picked.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.names[a.1].cmp(&self.names[b.1]))
        });
        picked
    }

    /// The names the classifier saw below `min_confidence` and at least at
    /// `CANDIDATE_FLOOR`, most confident first (`ImgTag.Candidates`).
    pub fn candidates(&self, probs: &[f32], min_confidence: f32) -> Vec<Candidate> {
        self.confidences(probs, |c| (CANDIDATE_FLOOR..min_confidence).contains(&c))
            .into_iter()
            .map(|(c, node)| Candidate::new(self.names[node].clone(), c))
            .collect()
    }
}

/// The least confidence a local candidate needs, percent: below it the
/// classifier is spreading what is left over its 1000 classes.
pub(crate) const CANDIDATE_FLOOR: f32 = 1.0;

/// Percent rounded to 3 decimals, within 0..=100. Monotonic, so a parent
/// never ends up below its child.
fn round_confidence(percent: f64) -> f32 {
    ((percent.clamp(0.0, 100.0) * 1000.0).round() / 1000.0) as f32
}

/// Softmax over `logits`, computed stably in f64.
pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f64> = logits
        .iter()
        .map(|&v| {
            if v.is_finite() {
                f64::from(v - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Options for [`LocalModel::detect_bytes_with`] and
/// [`LocalModel::detect_many`].
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Labels below this confidence (percent) are dropped.
    pub min_confidence: f32,
    /// Keep at most this many labels (highest confidence first).
    pub max_labels: Option<u32>,
    /// Decoding limits.
    pub limits: DecodeLimits,
    /// When to run the text model.
    pub text: TextDetection,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            min_confidence: crate::contract::DEFAULT_MIN_CONFIDENCE,
            max_labels: None,
            limits: DecodeLimits::default(),
            text: TextDetection::default(),
        }
    }
}

/// The outcome for one image: its labels or why it failed.
pub(crate) type ModelLabels = Result<Vec<Label>, ModelError>;

/// The models' labels for one image, and the classifier's candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub labels: Vec<Label>,
    pub candidates: Vec<Candidate>,
    /// Whether the text model ran ([`ModelOptions::text`]): what the gate
    /// decided, for tests and measurements.
    pub text_ran: bool,
    /// The words read in the lines of a `Text` label, in reading order
    /// (none without one): `ImgTag.Text`.
    pub text: Vec<TextLine>,
}

/// MobileNetV2 + label hierarchy, ready to run. `Send + Sync`: share it
/// (e.g. in an `Arc`) and call it from several threads at once; every call
/// runs with its own state.
#[derive(Debug, Clone)]
pub struct LocalModel {
    classifier: Engine,
    hierarchy: Arc<Hierarchy>,
    detector: Yolox,
    /// Loaded on first use: a run over photos the text gate keeps closed
    /// never pays its load (160 ms on tract, 76 ms on onnxruntime).
    text: Arc<OnceLock<TextDetector>>,
    words: Recognizer,
}

/// Per-worker input tensors of the models (reused between images).
struct Buffers {
    classifier: Vec<f32>,
    detector: Vec<f32>,
    text: Vec<f32>,
}

impl Buffers {
    /// The text model's tensor is made when it first runs: most images
    /// never need it.
    fn new() -> Self {
        Buffers {
            classifier: vec![0f32; TENSOR_LEN],
            detector: vec![0f32; yolox::TENSOR_LEN],
            text: Vec::new(),
        }
    }

    /// `f` with this thread's buffers, reused from one image to the next
    /// (a fresh set was megabytes zeroed per image: a tenth of the CPU a
    /// small photo costs on onnxruntime went to `memset`, copies and page
    /// faults). Every stage overwrites the whole tensor it uses.
    fn with<T>(f: impl FnOnce(&mut Buffers) -> T) -> T {
        thread_local! {
            static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::new());
        }
        BUFFERS.with(|b| match b.try_borrow_mut() {
            Ok(mut b) => f(&mut b),
            // Re-entered on this thread (never by the models): a fresh set.
            Err(_) => f(&mut Buffers::new()),
        })
    }
}

/// Adds `names` to `label`'s parents, skipping those already there.
fn add_parents<'a>(label: &mut Label, names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        if !label
            .parents
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(name))
        {
            label.parents.push(NameRef::new(name));
        }
    }
}

/// One label per name (case-insensitive) from both models' labels: the
/// higher confidence, every instance, the parents of both (the
/// classifier's first). Then every label present as another's parent is
/// raised to at least that label's confidence, so a parent is never less
/// confident than its child. Sorted by confidence, then name.
pub fn merge_labels(classified: Vec<Label>, detected: Vec<Label>) -> Vec<Label> {
    let mut merged: Vec<Label> = Vec::with_capacity(classified.len() + detected.len());
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for label in classified.into_iter().chain(detected) {
        match index.get(&label.name.to_lowercase()) {
            Some(&i) => {
                let kept = &mut merged[i];
                kept.confidence = kept.confidence.max(label.confidence);
                add_parents(kept, label.parents.iter().map(|p| p.name.as_str()));
                kept.instances.extend(label.instances);
            }
            None => {
                index.insert(label.name.to_lowercase(), merged.len());
                merged.push(label);
            }
        }
    }
    // Raise parents to their children's confidence, to a fixed point (at
    // most one round per level of depth).
    let edges: Vec<(usize, usize)> = merged
        .iter()
        .enumerate()
        .flat_map(|(child, l)| {
            l.parents
                .iter()
                .filter_map(|p| index.get(&p.name.to_lowercase()))
                .map(move |&parent| (child, parent))
        })
        .collect();
    for _ in 0..=merged.len() {
        let mut changed = false;
        for &(child, parent) in &edges {
            if merged[parent].confidence < merged[child].confidence {
                merged[parent].confidence = merged[child].confidence;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    yolox::sort_labels(&mut merged);
    merged
}

impl LocalModel {
    /// Load the embedded model (optimised for batch 1) and label hierarchy
    /// on the engine `IMGTAG_ENGINE` asks for ([`EngineChoice::from_env`]).
    /// Takes a few hundred milliseconds: do it once and share the result.
    pub fn load() -> Result<Self, ModelError> {
        Self::load_with(EngineChoice::from_env()?)
    }

    /// [`LocalModel::load`] on the engine `choice` comes to.
    pub fn load_with(choice: EngineChoice) -> Result<Self, ModelError> {
        let engine = choice.resolve()?;
        let calibration = Calibration::shipped()?;
        let hierarchy = Hierarchy::from_json(LABELS_JSON)?.with_calibration(calibration.classifier);
        let side = INPUT_SIZE as usize;
        // The two models load side by side: tract spends about 0.1 s of
        // CPU optimising each, and a short run waits for both. The
        // recogniser's dictionary (read from its 11 MB file, about 15 ms)
        // is read on the classifier's side, the quicker one on
        // onnxruntime, not after both.
        let (classifier, words, detector) = std::thread::scope(|s| {
            let detector = s.spawn(|| Yolox::load_with(engine));
            let classifier = Engine::load_channels_last(engine, MODEL_BYTES, [1, 3, side, side]);
            let words = Recognizer::load_with(engine);
            let detector = detector
                .join()
                .unwrap_or_else(|_| Err(ModelError::Model("loading the detector panicked".into())));
            (classifier, words, detector)
        });
        Ok(LocalModel {
            classifier: classifier?,
            hierarchy: Arc::new(hierarchy),
            detector: detector?.with_calibration(calibration.detector),
            text: Arc::default(),
            words: words?,
        })
    }

    /// This model with its scores mapped through `calibration` (the
    /// shipped one is loaded; [`Calibration::default`] gives raw scores,
    /// which the calibration's fit needs).
    pub fn with_calibration(&self, calibration: Calibration) -> Self {
        LocalModel {
            hierarchy: Arc::new(self.hierarchy.with_calibration(calibration.classifier)),
            detector: self.detector.with_calibration(calibration.detector),
            ..self.clone()
        }
    }

    /// The engine both models run on.
    pub fn engine(&self) -> EngineKind {
        self.classifier.kind()
    }

    /// The object detector.
    pub fn detector(&self) -> &Yolox {
        &self.detector
    }

    /// The text detector, loaded on the first call.
    pub fn text_detector(&self) -> Result<&TextDetector, ModelError> {
        if let Some(loaded) = self.text.get() {
            return Ok(loaded);
        }
        // Two threads may both load it the first time; one copy is kept.
        let loaded = TextDetector::load_with(self.engine())?;
        Ok(self.text.get_or_init(|| loaded))
    }

    /// The text recogniser.
    pub fn recognizer(&self) -> &Recognizer {
        &self.words
    }

    /// The text model's labels for `img` and, when there is a `Text`
    /// label, the words of its lines (those at or above `min_confidence`):
    /// photos without text pay for no recognition.
    fn read_text(
        &self,
        img: &image::RgbImage,
        min_confidence: f32,
        tensor: &mut [f32],
    ) -> Result<(Vec<Label>, Vec<TextLine>), ModelError> {
        let (found, lb) = self.text_detector()?.lines(img, tensor)?;
        let labels = text::labels(&found, &lb, min_confidence);
        if labels.is_empty() {
            return Ok((labels, Vec::new()));
        }
        let kept: Vec<_> = found
            .into_iter()
            .filter(|b| text::percent(b.score) >= min_confidence)
            .collect();
        let words = self.words.lines(img, &kept, &lb)?;
        Ok((labels, words))
    }

    /// Both models' labels as one answer ([`merge_labels`]), after placing
    /// the detector's labels in the classifier's hierarchy too (a detected
    /// "Cup" gets the classifier's ancestors of "Cup", each added as a
    /// label, but for parent-only names), so a label's parents depend on its
    /// name only. Truncated to `max_labels`.
    pub fn merge(
        &self,
        classified: Vec<Label>,
        mut detected: Vec<Label>,
        max_labels: Option<u32>,
    ) -> Vec<Label> {
        let h = &self.hierarchy;
        for i in 0..detected.len() {
            let Some(node) = h.node(&detected[i].name) else {
                continue;
            };
            let confidence = detected[i].confidence;
            add_parents(&mut detected[i], h.ancestor_names(node));
            for &a in &h.ancestors[node] {
                if h.parent_only[a as usize] {
                    continue;
                }
                let label = yolox::upsert(&mut detected, &h.names[a as usize], confidence);
                add_parents(label, h.ancestor_names(a as usize));
            }
        }
        let mut labels = merge_labels(classified, detected);
        if let Some(max) = max_labels {
            labels.truncate(max as usize);
        }
        labels
    }

    /// The label hierarchy.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Raw logits (1000) for one preprocessed tensor (length
    /// [`TENSOR_LEN`], as written by [`imaging::preprocess`]).
    pub fn logits(&self, tensor: &[f32]) -> Result<Vec<f32>, ModelError> {
        if tensor.len() != TENSOR_LEN {
            return Err(ModelError::BadLength {
                expected: TENSOR_LEN,
                got: tensor.len(),
            });
        }
        let logits = self.classifier.run(tensor)?;
        if logits.len() != NUM_CLASSES {
            return Err(ModelError::BadLength {
                expected: NUM_CLASSES,
                got: logits.len(),
            });
        }
        Ok(logits)
    }

    /// Softmax probabilities (1000, summing to 1) for one preprocessed
    /// tensor.
    pub fn classify(&self, tensor: &[f32]) -> Result<Vec<f32>, ModelError> {
        Ok(softmax(&self.logits(tensor)?))
    }

    /// Rekognition-style labels from class probabilities: one label per
    /// hierarchy node whose confidence (100 x the summed probability of
    /// every class under it, each class counted once) is at least
    /// `min_confidence`; `Parents` lists all the node's ancestors, nearest
    /// first. Sorted by confidence (descending) then name, then truncated
    /// to `max_labels`.
    pub fn labels(
        &self,
        probs: &[f32],
        min_confidence: f32,
        max_labels: Option<u32>,
    ) -> Vec<Label> {
        self.hierarchy.labels(probs, min_confidence, max_labels)
    }

    /// Decode one image, run both models and merge their labels.
    pub fn detect_bytes(
        &self,
        bytes: &[u8],
        min_confidence: f32,
        max_labels: Option<u32>,
    ) -> Result<Vec<Label>, ModelError> {
        self.detect_bytes_with(
            bytes,
            &ModelOptions {
                min_confidence,
                max_labels,
                ..ModelOptions::default()
            },
        )
    }

    /// [`LocalModel::detect_bytes`] with explicit decoding limits.
    pub fn detect_bytes_with(
        &self,
        bytes: &[u8],
        options: &ModelOptions,
    ) -> Result<Vec<Label>, ModelError> {
        Ok(Buffers::with(|b| self.detect_into(bytes, options, b))?.labels)
    }

    /// [`LocalModel::detect_bytes_with`], and what the classifier saw below
    /// MinConfidence ([`Hierarchy::candidates`], none named like a label,
    /// at most [`crate::contract::MAX_CANDIDATES`]).
    pub fn detect_with_candidates(
        &self,
        bytes: &[u8],
        options: &ModelOptions,
    ) -> Result<Answer, ModelError> {
        Buffers::with(|b| self.detect_into(bytes, options, b))
    }

    /// The classifier's labels alone (no object detector) for one image.
    pub fn classify_bytes(
        &self,
        bytes: &[u8],
        options: &ModelOptions,
    ) -> Result<Vec<Label>, ModelError> {
        let img = imaging::decode(bytes, &options.limits)?;
        let mut tensor = vec![0f32; TENSOR_LEN];
        imaging::preprocess(&img, &mut tensor)?;
        drop(img);
        let probs = self.classify(&tensor)?;
        Ok(self.labels(&probs, options.min_confidence, options.max_labels))
    }

    /// Decodes once, runs the models, merges their labels.
    fn detect_into(
        &self,
        bytes: &[u8],
        options: &ModelOptions,
        buffers: &mut Buffers,
    ) -> Result<Answer, ModelError> {
        let img = imaging::decode(bytes, &options.limits)?;
        imaging::preprocess(&img, &mut buffers.classifier)?;
        let detected = self
            .detector
            .detect(&img, options.min_confidence, &mut buffers.detector)?;
        // The classifier first: in `auto` its answer decides whether the
        // text model, the costliest of the three, runs at all.
        let probs = self.classify(&buffers.classifier)?;
        let text_ran = options.text.runs(&probs);
        let (texts, words) = if text_ran {
            buffers.text.resize(text::TENSOR_LEN, 0.0);
            self.read_text(&img, options.min_confidence, &mut buffers.text)?
        } else {
            Default::default()
        };
        drop(img);
        let classified = self.labels(&probs, options.min_confidence, None);
        let labels = self.merge(classified, detected, None);
        // Scenes (Beach, Street, Living Room...) from what both models saw,
        // the classifier's place classes counted from a lower floor.
        let weak = self.labels(&probs, super::scenes::SCENE_CUE_FLOOR, None);
        let scenes = super::scenes::scene_labels(&labels, &weak, options.min_confidence);
        let mut labels = merge_labels(merge_labels(labels, scenes), texts);
        // Against every label, truncated or not: a candidate is a name the
        // answer lacks, not one MaxLabels cut.
        let candidates = normalize_candidates(
            self.hierarchy.candidates(&probs, options.min_confidence),
            options.min_confidence,
            &labels,
        );
        if let Some(max) = options.max_labels {
            labels.truncate(max as usize);
        }
        Ok(Answer {
            labels,
            candidates,
            text_ran,
            text: words,
        })
    }

    /// Detect labels in many images using `workers` threads (0 = one per
    /// available core). Each worker takes the next image, decodes,
    /// preprocesses and runs it; results come back in input order.
    pub fn detect_many<B>(
        &self,
        images: &[B],
        workers: usize,
        options: &ModelOptions,
    ) -> Vec<ModelLabels>
    where
        B: AsRef<[u8]> + Sync,
    {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        }
        .min(images.len().max(1));
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<ModelLabels>> = (0..images.len()).map(|_| None).collect();
        let chunks: Vec<Vec<(usize, ModelLabels)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut buffers = Buffers::new();
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(bytes) = images.get(i) else { break };
                            let answer = self.detect_into(bytes.as_ref(), options, &mut buffers);
                            done.push((i, answer.map(|a| a.labels)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Vec::new()))
                .collect()
        });
        for (i, result) in chunks.into_iter().flatten() {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ModelError::Model("worker thread panicked".into()))))
            .collect()
    }
}

/// The offline model, run off the async threads with at most one
/// inference per core at a time.
pub struct LocalDetector {
    model: ModelSlot,
    permits: Arc<tokio::sync::Semaphore>,
    /// Where the models run: one thread per core.
    threads: ModelThreads,
}

/// The model, loaded, or being loaded on a model thread.
#[derive(Default)]
struct ModelSlot {
    ready: tokio::sync::OnceCell<Result<LocalModel, String>>,
    /// Left in place while awaited: a caller dropped mid-wait (a
    /// cancelled job) leaves it to the next.
    loading: tokio::sync::Mutex<Option<Loading>>,
}

type Loading = tokio::sync::oneshot::Receiver<Result<LocalModel, ModelError>>;

impl LocalDetector {
    /// Loads the embedded model (a few hundred milliseconds) on the engine
    /// `IMGTAG_ENGINE` asks for.
    pub fn load() -> Result<Self, ModelError> {
        Self::load_with(EngineChoice::from_env()?)
    }

    /// [`LocalDetector::load`] on the engine `choice` comes to (for a
    /// front end's engine option).
    pub fn load_with(choice: EngineChoice) -> Result<Self, ModelError> {
        let detector = Self::with_threads()?;
        let model = LocalModel::load_with(choice)?;
        detector.model.ready.set(Ok(model)).ok();
        Ok(detector)
    }

    /// [`LocalDetector::load_with`], the model loading on a model thread
    /// while the caller goes on (lists the images, say): the first
    /// [`Detector::detect`] waits for it, and a run that detects nothing
    /// (a dry run, nothing selected) never waits. Which engine runs is
    /// settled now, so a missing onnxruntime is an error here, and `auto`'s
    /// fallback notice is logged now, not in the middle of a run.
    pub fn start_with(choice: EngineChoice) -> Result<Self, ModelError> {
        let engine = EngineChoice::Exactly(choice.resolve()?);
        let mut detector = Self::with_threads()?;
        let loading = detector
            .threads
            .queue(move || LocalModel::load_with(engine))
            .ok_or_else(|| ModelError::Model("the model threads are gone".into()))?;
        *detector.model.loading.get_mut() = Some(loading);
        Ok(detector)
    }

    fn with_threads() -> Result<Self, ModelError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = ModelThreads::start(cores)
            .map_err(|e| ModelError::Model(format!("starting the model threads: {e}")))?;
        Ok(LocalDetector {
            model: ModelSlot::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(cores)),
            threads,
        })
    }

    /// The model, once loaded; why it could not be, every time asked.
    pub async fn model(&self) -> Result<&LocalModel, String> {
        let loaded = self.model.ready.get_or_init(|| async {
            let mut loading = self.model.loading.lock().await;
            match loading.as_mut() {
                Some(rx) => match rx.await {
                    Ok(loaded) => loaded.map_err(|e| e.to_string()),
                    Err(_) => Err("loading the model panicked".into()),
                },
                None => Err("the model was never loaded".into()),
            }
        });
        loaded
            .await
            .as_ref()
            .map_err(|e| format!("loading the local model: {e}"))
    }
}

#[async_trait]
impl Detector for LocalDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Local
    }

    fn model_version(&self) -> Option<&str> {
        Some(MODEL_VERSION)
    }

    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<super::Detection, DetectFailure> {
        let DetectInput::Bytes(bytes) = input else {
            return Err(DetectFailure::Config {
                message: "the local detector needs the image bytes".into(),
            });
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DetectFailure::Config {
                message: "detector shut down".into(),
            })?;
        let model = self
            .model()
            .await
            .map_err(|message| DetectFailure::Config { message })?
            .clone();
        let quality = super::quality::spawn(&bytes, &params);
        let options = ModelOptions {
            min_confidence: params.min_confidence,
            max_labels: params.max_labels,
            limits: DecodeLimits::default(),
            text: params.text_detection,
        };
        let answer = self
            .threads
            .run(move || model.detect_with_candidates(&bytes, &options))
            .await
            .ok_or_else(|| DetectFailure::Config {
                message: "detector task failed: the model panicked".into(),
            })?;
        match answer {
            Ok(answer) => Ok(super::Detection {
                labels: answer.labels,
                label_model_version: Some(MODEL_VERSION.into()),
                image_properties: quality.await,
                candidates: if params.candidates {
                    answer.candidates
                } else {
                    Vec::new()
                },
                text: answer.text,
            }),
            Err(ModelError::Imaging(e)) => Err(DetectFailure::permanent(e.code(), e.to_string())),
            Err(e) => Err(DetectFailure::Config {
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detector whose model loads on a model thread answers the first
    /// image only once loaded, and exactly as one loaded before it.
    #[tokio::test]
    async fn a_model_loading_in_the_background_answers_as_one_loaded_first() {
        let photo = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/samples/chelsea.png"
        ))
        .unwrap();
        let tract = EngineChoice::Exactly(EngineKind::Tract);
        let started = LocalDetector::start_with(tract).unwrap();
        let loaded = LocalDetector::load_with(tract).unwrap();
        let params = DetectParams {
            min_confidence: 55.0,
            ..DetectParams::default()
        };
        let mut answers = Vec::new();
        for detector in [&started, &loaded] {
            let d = detector
                .detect(DetectInput::Bytes(photo.clone().into()), params.clone())
                .await
                .unwrap();
            answers.push(d.labels);
        }
        assert!(
            answers[0].iter().any(|l| l.name == "Cat"),
            "{:?}",
            answers[0]
        );
        assert_eq!(answers[0], answers[1]);
        assert_eq!(started.model().await.unwrap().engine(), EngineKind::Tract);
    }

    /// A wait for the model that is given up (its job cancelled) leaves
    /// the load for the next caller.
    #[tokio::test]
    async fn a_cancelled_wait_for_the_model_does_not_lose_it() {
        let started = LocalDetector::start_with(EngineChoice::Exactly(EngineKind::Tract)).unwrap();
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(1), started.model());
        assert!(gave_up.await.is_err(), "the model loaded in 1 ms");
        assert_eq!(started.model().await.unwrap().engine(), EngineKind::Tract);
    }

    /// On tract the classifier runs channels last: its depthwise
    /// convolutions between two moves of the whole input only, with the
    /// outputs of the ONNX file's own layout but for rounding.
    #[test]
    fn the_classifier_runs_channels_last_with_the_same_outputs() {
        let shape = [1, 3, INPUT_SIZE as usize, INPUT_SIZE as usize];
        let last = Engine::load_channels_last(EngineKind::Tract, MODEL_BYTES, shape).unwrap();
        let first = Engine::load(EngineKind::Tract, MODEL_BYTES, shape).unwrap();
        let moves = |e: &Engine| e.tract_ops().iter().filter(|o| *o == "MoveAxis").count();
        assert_eq!(
            (moves(&last), moves(&first)),
            (1, 0),
            "{:?}",
            last.tract_ops()
        );
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/samples/chelsea.png"
        ))
        .unwrap();
        let img = crate::imaging::decode(&bytes, &Default::default()).unwrap();
        let mut input = vec![0f32; crate::imaging::TENSOR_LEN];
        crate::imaging::preprocess(&img, &mut input).unwrap();
        let (a, b) = (last.run(&input).unwrap(), first.run(&input).unwrap());
        assert_eq!(a.len(), 1000);
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "outputs differ by up to {worst}");
        let top = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
        assert_eq!(top(&a), top(&b));
    }

    /// Photos the text gate keeps closed never load the text model; the
    /// first scan does.
    #[test]
    fn the_text_model_loads_only_when_the_gate_opens() {
        let model = LocalModel::load_with(EngineChoice::Exactly(EngineKind::Tract)).unwrap();
        let eval = |name: &str| {
            std::fs::read(format!("{}/assets/eval/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let options = ModelOptions::default();
        let photo = model
            .detect_bytes_with(&eval("pizza.jpg"), &options)
            .unwrap();
        assert!(photo.iter().any(|l| l.name == "Pizza"), "{photo:?}");
        assert!(model.text.get().is_none());
        let scan = model
            .detect_bytes_with(&eval("document-invoice.png"), &options)
            .unwrap();
        assert!(scan.iter().any(|l| l.name == "Text"), "{scan:?}");
        assert!(model.text.get().is_some());
    }

    #[test]
    fn hierarchy_parses_and_cat_has_parents() {
        let h = Hierarchy::from_json(LABELS_JSON).unwrap();
        assert_eq!(h.class_name(281), Some("Tabby"));
        let tabby = h.ancestor_names(281);
        for a in ["Cat", "Feline", "Mammal", "Animal", "Pet", "Domestic Cat"] {
            assert!(tabby.contains(&a), "{a} missing from {tabby:?}");
        }
        assert_eq!(tabby[0], "Domestic Cat");
    }

    #[test]
    fn the_text_gate_names_classes_by_their_index() {
        let h = Hierarchy::from_json(LABELS_JSON).unwrap();
        for (class, name) in text::TEXT_CLASSES {
            assert_eq!(h.class_name(class), Some(name), "class {class}");
        }
    }

    /// Each model's own version is in the one documents carry, so a
    /// model's change re-tags what it labelled.
    #[test]
    fn the_version_names_every_models_version() {
        let parts: Vec<&str> = MODEL_VERSION.split('+').collect();
        for part in [
            super::super::yolox::MODEL_VERSION,
            text::MODEL_VERSION,
            super::super::words::MODEL_VERSION,
        ] {
            assert!(parts.contains(&part), "{part} not in {MODEL_VERSION}");
        }
    }

    #[test]
    fn softmax_is_stable() {
        let p = softmax(&[1000.0, 1000.0, f32::NAN]);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    }
}
