//! Label detectors behind one trait: the offline local model and Amazon
//! Rekognition DetectLabels. Both return Rekognition-shaped labels.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::contract::Label;

pub mod engine;
pub mod local;
pub mod pacing;
pub mod rekognition;
pub mod yolox;

pub use local::LocalDetector;
pub use pacing::{DEFAULT_REKOGNITION_TPS, RateLimiter};
pub use rekognition::RekognitionDetector;

/// Which label detector to run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// Amazon Rekognition DetectLabels.
    Rekognition,
    /// The offline model shipped with imgtag.
    Local,
}

/// Rekognition DetectLabels' first-tier price, dollars per image.
const REKOGNITION_PRICE_PER_IMAGE: f64 = 0.001;

impl DetectorKind {
    /// `ImgTag.Detector`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Rekognition => "rekognition",
            DetectorKind::Local => "local",
        }
    }

    /// What one image costs, in dollars (0 for the local model).
    pub fn price_per_image(self) -> f64 {
        match self {
            DetectorKind::Rekognition => REKOGNITION_PRICE_PER_IMAGE,
            DetectorKind::Local => 0.0,
        }
    }

    pub fn is_paid(self) -> bool {
        self.price_per_image() > 0.0
    }

    /// "with Rekognition: about $1.50 at $1.00 per 1,000 images" or "with
    /// the local model (no cost)": the one cost sentence every front end
    /// shows before a bulk run.
    pub fn cost_phrase(self, images: usize) -> String {
        match self {
            DetectorKind::Rekognition => format!(
                "with Rekognition: about ${:.2} at ${:.2} per 1,000 images",
                images as f64 * self.price_per_image(),
                1000.0 * self.price_per_image()
            ),
            DetectorKind::Local => "with the local model (no cost)".into(),
        }
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectParams {
    pub min_confidence: f32,
    pub max_labels: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub labels: Vec<Label>,
    pub label_model_version: Option<String>,
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
    build_paced(kind, s3, concurrency, DEFAULT_REKOGNITION_TPS).await
}

/// Builds the detector a run asks for; Rekognition calls are paced at
/// `rekognition_tps` a second across all images in flight
/// (`Settings::rekognition_tps`).
pub async fn build_paced(
    kind: DetectorKind,
    s3: &crate::storage::S3Options,
    concurrency: usize,
    rekognition_tps: f64,
) -> Result<DynDetector, DetectFailure> {
    Ok(match kind {
        DetectorKind::Local => {
            Arc::new(LocalDetector::load().map_err(|e| DetectFailure::Config {
                message: format!("loading the local model: {e}"),
            })?)
        }
        DetectorKind::Rekognition => {
            Arc::new(RekognitionDetector::connect(s3, concurrency, Some(rekognition_tps)).await)
        }
    })
}
