//! Label detectors behind one trait: the offline local model and Amazon
//! Rekognition DetectLabels. Both return Rekognition-shaped labels.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::DetectorKind;
use crate::contract::Label;

pub mod local;
pub mod rekognition;

pub use rekognition::RekognitionDetector;

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
    /// `ImgTag.Detector`: "local" or "rekognition".
    fn name(&self) -> &'static str;
    /// Whether the detector can read an S3 object by reference, so the
    /// pipeline need not download it.
    fn reads_s3(&self) -> bool {
        false
    }
    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure>;
}

pub type DynDetector = Arc<dyn Detector>;

/// The offline model, run off the async threads with at most one
/// inference per core at a time.
pub struct LocalDetector {
    model: local::LocalModel,
    permits: Arc<tokio::sync::Semaphore>,
}

impl LocalDetector {
    /// Loads the embedded model (a few hundred milliseconds).
    pub fn load() -> Result<Self, local::DetectError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(LocalDetector {
            model: local::LocalModel::load()?,
            permits: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    pub fn model(&self) -> &local::LocalModel {
        &self.model
    }
}

#[async_trait]
impl Detector for LocalDetector {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure> {
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
        let model = self.model.clone();
        let labels = tokio::task::spawn_blocking(move || {
            model.detect_bytes(&bytes, params.min_confidence, params.max_labels)
        })
        .await
        .map_err(|e| DetectFailure::Config {
            message: format!("detector task failed: {e}"),
        })?;
        match labels {
            Ok(labels) => Ok(Detection {
                labels,
                label_model_version: Some(local::MODEL_VERSION.into()),
            }),
            Err(local::DetectError::Imaging(e)) => {
                Err(DetectFailure::permanent(e.code(), e.to_string()))
            }
            Err(e) => Err(DetectFailure::Config {
                message: e.to_string(),
            }),
        }
    }
}

/// Builds the detector a run asks for.
pub async fn build(
    kind: DetectorKind,
    s3: &crate::storage::S3Options,
    concurrency: usize,
) -> Result<DynDetector, DetectFailure> {
    Ok(match kind {
        DetectorKind::Local => {
            Arc::new(LocalDetector::load().map_err(|e| DetectFailure::Config {
                message: format!("loading the local model: {e}"),
            })?)
        }
        DetectorKind::Rekognition => Arc::new(RekognitionDetector::connect(s3, concurrency).await),
    })
}
