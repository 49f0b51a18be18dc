//! Label detectors behind one trait: the offline local model and Amazon
//! Rekognition DetectLabels. Both return Rekognition-shaped labels.

use engine::EngineChoice;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::contract::{Candidate, ImageProperties, Label, LabelFilters, TextLine};

pub mod calibration;
pub mod engine;
pub mod local;
pub mod model_error;
pub mod pacing;
pub mod quality;
pub mod rekognition;
pub mod scenes;
pub mod text;
mod threads;
pub mod words;
pub mod yolox;

pub use local::LocalDetector;
pub use pacing::{DEFAULT_REKOGNITION_TPS, RateLimiter};
pub use rekognition::RekognitionDetector;

/// Which label detector to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// Amazon Rekognition DetectLabels.
    Rekognition,
    /// The offline model shipped with imgtag.
    Local,
}

/// Rekognition DetectLabels' first-tier price, dollars per image.
const REKOGNITION_PRICE_PER_IMAGE: f64 = 0.001;
/// DetectLabels' `IMAGE_PROPERTIES` feature, billed per image on top of
/// the labels: $0.75 per 1,000 images in the first tier, as AWS's
/// Rekognition pricing page lists "Image Properties" (the project's field
/// notes only record that it is billed separately; check the page for
/// your region and tier).
const REKOGNITION_IMAGE_PROPERTIES_PRICE_PER_IMAGE: f64 = 0.00075;

impl DetectorKind {
    /// `ImgTag.Detector`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Rekognition => "rekognition",
            DetectorKind::Local => "local",
        }
    }

    /// What one image costs, in dollars (0 for the local model).
    pub(crate) fn price_per_image(self) -> f64 {
        match self {
            DetectorKind::Rekognition => REKOGNITION_PRICE_PER_IMAGE,
            DetectorKind::Local => 0.0,
        }
    }

    pub fn is_paid(self) -> bool {
        self.price_per_image() > 0.0
    }

    /// What one image costs with these features, in dollars: labels, plus
    /// image properties when asked (billed separately by Rekognition).
    pub(crate) fn price_per_image_with(self, features: Features) -> f64 {
        match self {
            DetectorKind::Rekognition if features.image_properties => {
                REKOGNITION_PRICE_PER_IMAGE + REKOGNITION_IMAGE_PROPERTIES_PRICE_PER_IMAGE
            }
            kind => kind.price_per_image(),
        }
    }

    /// "with Rekognition: about $1.50 at $1.00 per 1,000 images" or "with
    /// the local model (no cost)": the one cost sentence every front end
    /// shows before a bulk run (labels only; see
    /// [`cost_phrase_with`](Self::cost_phrase_with)).
    pub fn cost_phrase(self, images: usize) -> String {
        self.cost_phrase_with(images, Features::default())
    }

    /// [`cost_phrase`](Self::cost_phrase) for a request with these
    /// features: "with Rekognition: about $1.75 at $1.00 per 1,000 images
    /// for labels + $0.75 for image properties".
    pub fn cost_phrase_with(self, images: usize, features: Features) -> String {
        match self {
            DetectorKind::Rekognition => {
                let mut phrase = format!(
                    "with Rekognition: about ${:.2} at ${:.2} per 1,000 images",
                    images as f64 * self.price_per_image_with(features),
                    1000.0 * self.price_per_image()
                );
                if features.image_properties {
                    phrase.push_str(&format!(
                        " for labels + ${:.2} for image properties",
                        1000.0 * REKOGNITION_IMAGE_PROPERTIES_PRICE_PER_IMAGE
                    ));
                }
                phrase
            }
            DetectorKind::Local => "with the local model (no cost)".into(),
        }
    }
}

/// DetectLabels `Features`: what a request asks for. `GENERAL_LABELS` is
/// always asked (imgtag's documents are label documents: a status and a
/// headline need labels); `IMAGE_PROPERTIES` adds image quality and
/// dominant colours, billed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Features {
    pub image_properties: bool,
}

/// The names DetectLabels uses.
pub const GENERAL_LABELS: &str = "GENERAL_LABELS";
pub const IMAGE_PROPERTIES: &str = "IMAGE_PROPERTIES";

impl Features {
    /// Labels and image properties.
    pub const ALL: Features = Features {
        image_properties: true,
    };

    /// The names as DetectLabels takes them, GENERAL_LABELS first.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = vec![GENERAL_LABELS];
        if self.image_properties {
            names.push(IMAGE_PROPERTIES);
        }
        names
    }

    /// What `ImgTag.Features` records: nothing for the default request, so
    /// its documents are as they always were.
    pub fn recorded(self) -> Vec<String> {
        if self == Features::default() {
            Vec::new()
        } else {
            self.names().into_iter().map(String::from).collect()
        }
    }

    /// Reads a list of feature names: `GENERAL_LABELS`, `IMAGE_PROPERTIES`,
    /// any case, `-` for `_`. An empty list is the default.
    pub(crate) fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Features, String> {
        let mut labels = names.is_empty();
        let mut features = Features::default();
        for name in names {
            let norm = name.as_ref().trim().to_ascii_uppercase().replace('-', "_");
            match norm.as_str() {
                GENERAL_LABELS => labels = true,
                IMAGE_PROPERTIES => features.image_properties = true,
                _ => {
                    return Err(format!(
                        "unknown feature {:?}: one of {GENERAL_LABELS}, {IMAGE_PROPERTIES}",
                        name.as_ref()
                    ));
                }
            }
        }
        if !labels {
            return Err(format!(
                "{GENERAL_LABELS} is required: imgtag writes label documents (add \
                 {IMAGE_PROPERTIES} beside it)"
            ));
        }
        Ok(features)
    }

    /// A comma-separated list (`--features`, `IMGTAG_FEATURES`).
    pub fn parse_list(list: &str) -> Result<Features, String> {
        let names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        Features::from_names(&names)
    }

    /// The features a document records (`ImgTag.Features`); `None` when
    /// it names one this imgtag does not know.
    pub(crate) fn of_document(recorded: &[String]) -> Option<Features> {
        Features::from_names(recorded).ok()
    }
}

/// What a detector is given.
#[derive(Debug, Clone)]
pub enum DetectInput {
    /// The whole image.
    Bytes(Bytes),
    /// An S3 object the detector reads itself (Rekognition's `S3Object`),
    /// with the first bytes of the image for validation.
    S3 {
        bucket: String,
        key: String,
        size: u64,
        header: Bytes,
    },
}

/// What a detection asks for: everything that changes the answer
/// (besides the models), so all of it is recorded in `ImgTag`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetectParams {
    pub min_confidence: f32,
    pub max_labels: Option<u32>,
    /// DetectLabels `Features`.
    pub features: Features,
    /// DetectLabels `Settings.GeneralLabels`.
    pub filters: LabelFilters,
    /// Keep what the detector saw below `min_confidence` as
    /// [`Detection::candidates`] (Rekognition: on the same single call,
    /// asked with a lower MinConfidence, `candidate_floor`).
    pub candidates: bool,
    /// When the local detector runs its text model (Rekognition ignores
    /// it). Not recorded: it says how much work to spend, not what is
    /// asked, like the engine; `LabelModelVersion` names the same models
    /// whatever it is, so switching it never re-tags a bucket
    /// (docs/detectors.md).
    pub text_detection: text::TextDetection,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detection {
    pub labels: Vec<Label>,
    pub label_model_version: Option<String>,
    /// `ImageProperties`, when `IMAGE_PROPERTIES` was asked for.
    pub image_properties: Option<ImageProperties>,
    /// What the detector saw below MinConfidence, when asked
    /// ([`DetectParams::candidates`]); `ImgTag.Candidates`.
    pub candidates: Vec<Candidate>,
    /// The words read in the image's lines of text, when it has a `Text`
    /// label (the local detector only, [`words`]); `ImgTag.Text`.
    pub text: Vec<TextLine>,
}

/// Why detection failed, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectFailure {
    /// This image can never be tagged (not an image, unsupported, too
    /// small, too large, corrupt): record it in `ImgTag.Error`.
    #[error("{code}: {message}")]
    Permanent { code: String, message: String },
    /// Worth retrying later (throttling, network, 5xx): write nothing.
    #[error("temporary failure: {message}")]
    Transient { message: String },
    /// Nothing will work until the operator fixes something (credentials,
    /// permissions, region): stop the run.
    #[error("configuration problem: {message}")]
    Config { message: String },
}

impl DetectFailure {
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        DetectFailure::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait Detector: Send + Sync {
    /// Which detector this is (its price, its name).
    fn kind(&self) -> DetectorKind;
    /// `ImgTag.Detector`: "local" or "rekognition".
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }
    /// The models that answer, as recorded in `LabelModelVersion`, when the
    /// detector knows it before answering: a document from other models
    /// is not "the same request" and is re-tagged.
    fn model_version(&self) -> Option<&str> {
        None
    }
    /// Whether the detector applies `DetectParams::filters` itself
    /// (Rekognition does, server-side); otherwise the pipeline applies
    /// them to what it returns.
    fn applies_filters(&self) -> bool {
        false
    }
    /// Whether the detector can read an S3 object by reference, so the
    /// pipeline need not download it.
    fn reads_s3(&self) -> bool {
        false
    }
    /// Whether this object, judged by its first bytes and size, can be
    /// sent by reference as it is (only asked when `reads_s3`).
    fn accepts_s3_object(&self, _header: &[u8], _size: u64) -> bool {
        false
    }
    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure>;
}

pub type DynDetector = Arc<dyn Detector>;

/// Builds the detector a run asks for, Rekognition paced at
/// [`DEFAULT_REKOGNITION_TPS`].
pub async fn build(
    kind: DetectorKind,
    s3: &crate::storage::S3Options,
    concurrency: usize,
) -> Result<DynDetector, DetectFailure> {
    let engine = EngineChoice::from_env().map_err(|e| DetectFailure::Config {
        message: e.to_string(),
    })?;
    build_paced(kind, s3, concurrency, DEFAULT_REKOGNITION_TPS, engine).await
}

/// Builds the detector a run asks for; Rekognition calls are paced at
/// `rekognition_tps` a second across all images in flight
/// (`Settings::rekognition_tps`).
pub(crate) async fn build_paced(
    kind: DetectorKind,
    s3: &crate::storage::S3Options,
    concurrency: usize,
    rekognition_tps: f64,
    engine: EngineChoice,
) -> Result<DynDetector, DetectFailure> {
    Ok(match kind {
        // The model loads while the caller lists what to tag.
        DetectorKind::Local => {
            Arc::new(
                LocalDetector::start_with(engine).map_err(|e| DetectFailure::Config {
                    message: format!("loading the local model: {e}"),
                })?,
            )
        }
        DetectorKind::Rekognition => {
            Arc::new(RekognitionDetector::connect(s3, concurrency, Some(rekognition_tps)).await)
        }
    })
}
