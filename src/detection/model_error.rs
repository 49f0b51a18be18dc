//! Why running the local models failed: one error for the classifier,
//! the object detector and the engines that run them.

use crate::imaging::ImagingError;

/// Why the local detector failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The image could not be decoded or preprocessed.
    #[error(transparent)]
    Imaging(#[from] ImagingError),
    /// Loading or running the model failed.
    #[error("model error: {0}")]
    Model(String),
    /// The embedded labels.json is malformed.
    #[error("label hierarchy error: {0}")]
    Labels(String),
    /// The input tensor or probability vector has the wrong length.
    #[error("expected {expected} values, got {got}")]
    BadLength { expected: usize, got: usize },
}

impl ModelError {
    /// A short stable identifier, e.g. for `ImgTag.Error.Code`.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Imaging(e) => e.code(),
            ModelError::Model(_) => "ModelError",
            ModelError::Labels(_) => "LabelsError",
            ModelError::BadLength { .. } => "BadLength",
        }
    }
}
