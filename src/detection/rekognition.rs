//! Amazon Rekognition DetectLabels.
//!
//! Images in an S3 bucket that Rekognition accepts as they are (JPEG or PNG,
//! at most 15 MB) are sent by reference, so nothing is downloaded. Anything
//! else that decodes (WebP, GIF, BMP, TIFF, or too large) is downscaled and
//! re-encoded as JPEG under the 5 MB limit for bytes and sent inline: the
//! operator gets labels rather than an error for a format Rekognition does
//! not read. Images under 80 px a side are a permanent failure.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsError;
use aws_sdk_rekognition::primitives::Blob;
use aws_sdk_rekognition::types::{
    DetectLabelsFeatureName, DetectLabelsSettings, GeneralLabelsSettings, Image, S3Object,
};
use bytes::Bytes;
use image::ImageFormat;

use super::pacing::RateLimiter;
use super::{DetectFailure, DetectInput, DetectParams, Detection, Detector, DetectorKind};
use crate::contract::{
    BoundingBox, Candidate, DominantColor, ImageProperties, ImageQuality, ImageRegion, Instance,
    Label, LabelFilters, NameRef,
};
use crate::imaging::{self, DecodeLimits};

/// Rekognition's limits.
pub(crate) const MAX_S3_BYTES: u64 = 15 * 1024 * 1024;
pub(crate) const MAX_INLINE_BYTES: usize = 5 * 1024 * 1024;
pub(crate) const MIN_SIDE: u32 = 80;
/// DetectLabels refuses images over this many pixels a side; larger ones
/// are downscaled and sent as bytes.
pub(crate) const MAX_SIDE: u32 = 10_000;
/// Longest side of a re-encoded image: plenty for labels, well under 5 MB.
const REENCODE_MAX_SIDE: u32 = 2048;

/// Candidates are asked for this far below MinConfidence...
pub(crate) const CANDIDATE_MARGIN: f32 = 25.0;
/// ...but never below this: under it DetectLabels' guesses are noise to a
/// reviewer.
pub(crate) const CANDIDATE_FLOOR: f32 = 40.0;

/// The MinConfidence sent when candidates are kept: one call answers both
/// (labels at or above `min_confidence`, candidates below), never a second
/// paid call. Never above `min_confidence`.
pub(crate) fn candidate_floor(min_confidence: f32) -> f32 {
    (min_confidence - CANDIDATE_MARGIN)
        .max(CANDIDATE_FLOOR)
        .min(min_confidence)
}

/// The MinConfidence a request sends.
fn request_min_confidence(params: &DetectParams) -> f32 {
    if params.candidates {
        candidate_floor(params.min_confidence)
    } else {
        params.min_confidence
    }
}

/// Splits an answer asked at a lower floor: labels at or above
/// `min_confidence`, the rest as candidates (name and confidence only).
fn split_at(labels: Vec<Label>, min_confidence: f32) -> (Vec<Label>, Vec<Candidate>) {
    let (labels, below): (Vec<Label>, Vec<Label>) = labels
        .into_iter()
        .partition(|l| l.confidence >= min_confidence);
    let candidates = below
        .into_iter()
        .map(|l| Candidate::new(l.name, l.confidence))
        .collect();
    (labels, candidates)
}

pub struct RekognitionDetector {
    client: Client,
    /// Client-side cap on calls in flight, to stay under the account's TPS
    /// quota instead of leaning on throttling.
    permits: Arc<tokio::sync::Semaphore>,
    /// Client-side calls per second, shared by every image being tagged.
    pacing: Option<Arc<RateLimiter>>,
}

/// A call that has not answered in this long is given up (and is a
/// transient failure the pipeline may retry).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl RekognitionDetector {
    /// The detector for a run, paced at `tps` calls a second (`None`: not
    /// paced). Its client makes one attempt per call: see
    /// [`from_client`](Self::from_client).
    pub async fn connect(
        opts: &crate::storage::S3Options,
        concurrency: usize,
        tps: Option<f64>,
    ) -> Self {
        let shared = crate::storage::s3::aws_config(
            opts,
            RetryConfig::disabled(),
            // A service that stops answering must give an error, not a
            // hang: every attempt is bounded.
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(ATTEMPT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .await;
        let det = Self::from_client(Client::new(&shared), concurrency);
        match tps {
            Some(tps) => det.with_rate(tps),
            None => det,
        }
    }

    /// Wraps a client, turning its own retries off. Detection is retried
    /// in exactly one place, the pipeline (`TagOptions::attempts`; none in
    /// the Lambda, whose invocation retry is its layer), because there a
    /// retry goes through this detector's rate limit and is counted like
    /// any call; SDK retries inside one call would bypass both and
    /// multiply with the pipeline's (5 x 3 x 3 calls per image before).
    pub fn from_client(client: Client, concurrency: usize) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        RekognitionDetector {
            client: Client::from_conf(conf),
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            pacing: None,
        }
    }

    /// Paces calls at `tps` a second (burst: one second's worth, at least
    /// one call). A non-positive or non-finite rate leaves calls unpaced.
    pub fn with_rate(mut self, tps: f64) -> Self {
        self.pacing = (tps.is_finite() && tps > 0.0)
            .then(|| Arc::new(RateLimiter::new(tps, tps.floor().max(1.0) as u32)));
        self
    }

    /// The rate limit calls go through, if paced.
    pub fn pacing(&self) -> Option<&RateLimiter> {
        self.pacing.as_deref()
    }

    /// Whether an S3 object can be sent by reference, judging by its first
    /// bytes and size.
    pub(crate) fn accepts_by_reference(header: &[u8], size: u64) -> bool {
        matches!(
            imaging::sniff(header),
            Some(ImageFormat::Jpeg | ImageFormat::Png)
        ) && size <= MAX_S3_BYTES
            && imaging::dimensions(header)
                .is_ok_and(|(w, h)| w.min(h) >= MIN_SIDE && w.max(h) <= MAX_SIDE)
    }

    /// The bytes to send inline: the image itself when Rekognition takes
    /// it, else a downscaled JPEG.
    fn inline_bytes(bytes: &[u8]) -> Result<Bytes, DetectFailure> {
        let format = imaging::classify_format(bytes)
            .map_err(|e| DetectFailure::permanent(e.code(), e.to_string()))?;
        if let Ok((w, h)) = imaging::dimensions(bytes)
            && (w < MIN_SIDE || h < MIN_SIDE)
        {
            return Err(DetectFailure::permanent(
                "ImageTooSmall",
                format!("{w}x{h}: Rekognition needs at least {MIN_SIDE} px a side"),
            ));
        }
        let within_sides = imaging::dimensions(bytes).is_ok_and(|(w, h)| w.max(h) <= MAX_SIDE);
        if matches!(format, ImageFormat::Jpeg | ImageFormat::Png)
            && bytes.len() <= MAX_INLINE_BYTES
            && within_sides
        {
            return Ok(Bytes::copy_from_slice(bytes));
        }
        let limits = DecodeLimits {
            min_side: MIN_SIDE,
            ..DecodeLimits::default()
        };
        let img = imaging::decode(bytes, &limits)
            .map_err(|e| DetectFailure::permanent(e.code(), e.to_string()))?;
        let img = if img.width().max(img.height()) > REENCODE_MAX_SIDE {
            // Keeps the aspect ratio.
            image::DynamicImage::ImageRgb8(img)
                .thumbnail(REENCODE_MAX_SIDE, REENCODE_MAX_SIDE)
                .into_rgb8()
        } else {
            img
        };
        for quality in [90u8, 75, 60] {
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                .encode_image(&img)
                .map_err(|e| DetectFailure::permanent("EncodeFailed", e.to_string()))?;
            if out.len() <= MAX_INLINE_BYTES {
                return Ok(Bytes::from(out));
            }
        }
        Err(DetectFailure::permanent(
            "ImageTooLarge",
            "still over 5 MB after re-encoding",
        ))
    }
}

fn to_label(l: &aws_sdk_rekognition::types::Label) -> Label {
    let names = |v: Vec<Option<&str>>| -> Vec<NameRef> {
        v.into_iter().flatten().map(NameRef::new).collect()
    };
    Label {
        extra: Default::default(),
        name: l.name().unwrap_or_default().to_string(),
        confidence: l.confidence().unwrap_or(0.0),
        parents: names(l.parents().iter().map(|p| p.name()).collect()),
        aliases: names(l.aliases().iter().map(|p| p.name()).collect()),
        categories: names(l.categories().iter().map(|p| p.name()).collect()),
        instances: l
            .instances()
            .iter()
            .map(|i| Instance {
                bounding_box: i.bounding_box().map(|b| BoundingBox {
                    width: b.width().unwrap_or(0.0),
                    height: b.height().unwrap_or(0.0),
                    left: b.left().unwrap_or(0.0),
                    top: b.top().unwrap_or(0.0),
                }),
                confidence: i.confidence(),
                dominant_colors: i
                    .dominant_colors()
                    .iter()
                    .filter_map(|c| crate::contract::json_value(&to_color(c)))
                    .collect(),
            })
            .collect(),
    }
}

/// The request's `Features`: GENERAL_LABELS, and IMAGE_PROPERTIES when asked.
fn features(params: &DetectParams) -> Vec<DetectLabelsFeatureName> {
    params
        .features
        .names()
        .into_iter()
        .map(DetectLabelsFeatureName::from)
        .collect()
}

/// The request's `Settings`, only when there are filters (a default
/// request sends none, as before).
fn settings(filters: &LabelFilters) -> Option<DetectLabelsSettings> {
    if filters.is_empty() {
        return None;
    }
    let general = GeneralLabelsSettings::builder()
        .set_label_inclusion_filters(Some(filters.label_inclusion_filters.clone()))
        .set_label_exclusion_filters(Some(filters.label_exclusion_filters.clone()))
        .set_label_category_inclusion_filters(Some(
            filters.label_category_inclusion_filters.clone(),
        ))
        .set_label_category_exclusion_filters(Some(
            filters.label_category_exclusion_filters.clone(),
        ))
        .build();
    Some(
        DetectLabelsSettings::builder()
            .general_labels(general)
            .build(),
    )
}

fn to_quality(q: &aws_sdk_rekognition::types::DetectLabelsImageQuality) -> ImageQuality {
    ImageQuality {
        brightness: q.brightness(),
        sharpness: q.sharpness(),
        contrast: q.contrast(),
        extra: Default::default(),
    }
}

fn to_color(c: &aws_sdk_rekognition::types::DominantColor) -> DominantColor {
    DominantColor {
        red: c.red(),
        green: c.green(),
        blue: c.blue(),
        hex_code: c.hex_code().map(str::to_string),
        css_color: c.css_color().map(str::to_string),
        simplified_color: c.simplified_color().map(str::to_string),
        pixel_percent: c.pixel_percent(),
        extra: Default::default(),
    }
}

/// `ImageProperties` as the API returned it, field for field.
fn to_properties(p: &aws_sdk_rekognition::types::DetectLabelsImageProperties) -> ImageProperties {
    let colors = |v: &[aws_sdk_rekognition::types::DominantColor]| v.iter().map(to_color).collect();
    ImageProperties {
        quality: p.quality().map(to_quality),
        dominant_colors: colors(p.dominant_colors()),
        foreground: p.foreground().map(|f| ImageRegion {
            quality: f.quality().map(to_quality),
            dominant_colors: colors(f.dominant_colors()),
            extra: Default::default(),
        }),
        background: p.background().map(|b| ImageRegion {
            quality: b.quality().map(to_quality),
            dominant_colors: colors(b.dominant_colors()),
            extra: Default::default(),
        }),
        extra: Default::default(),
    }
}

fn map_err(
    err: SdkError<DetectLabelsError, aws_sdk_rekognition::config::http::HttpResponse>,
) -> DetectFailure {
    let message = crate::storage::error_chain(&err);
    match &err {
        SdkError::ServiceError(se) => {
            use DetectLabelsError as E;
            let status = se.raw().status().as_u16();
            match se.err() {
                E::InvalidImageFormatException(_) => {
                    DetectFailure::permanent("InvalidImageFormat", message)
                }
                E::ImageTooLargeException(_) => DetectFailure::permanent("ImageTooLarge", message),
                // imgtag checks what it sends (sizes, formats, limits): a
                // refused parameter is a setting (MaxLabels, MinConfidence)
                // or an imgtag bug, the same for every image. Stop the run
                // rather than record it against each image or retry it.
                E::InvalidParameterException(_) => DetectFailure::Config {
                    message: format!(
                        "Rekognition refused the request's parameters (check --min-confidence, \
                         --max-labels, --features and the label filters): {message}"
                    ),
                },
                // A wrongly decoded key, a bucket in another region than
                // Rekognition's, or a missing s3:GetObject for Rekognition:
                // not the image's fault, and the next image fails the same.
                E::InvalidS3ObjectException(_) => DetectFailure::Config {
                    message: format!(
                        "Rekognition could not read the image from S3 (check that the bucket \
                         is in Rekognition's region, --region, and that the caller may \
                         s3:GetObject it): {message}"
                    ),
                },
                E::AccessDeniedException(_) => DetectFailure::Config { message },
                E::ThrottlingException(_)
                | E::ProvisionedThroughputExceededException(_)
                | E::InternalServerError(_) => DetectFailure::Transient { message },
                other => match other.code() {
                    Some(
                        "UnrecognizedClientException"
                        | "InvalidSignatureException"
                        | "ExpiredTokenException"
                        | "AccessDeniedException",
                    ) => DetectFailure::Config { message },
                    _ if status == 403 || status == 401 => DetectFailure::Config { message },
                    _ => DetectFailure::Transient { message },
                },
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            DetectFailure::Transient { message }
        }
        _ => DetectFailure::Config { message },
    }
}

#[async_trait]
impl Detector for RekognitionDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Rekognition
    }

    fn reads_s3(&self) -> bool {
        true
    }

    fn applies_filters(&self) -> bool {
        true
    }

    fn accepts_s3_object(&self, header: &[u8], size: u64) -> bool {
        Self::accepts_by_reference(header, size)
    }

    async fn detect(
        &self,
        input: DetectInput,
        params: DetectParams,
    ) -> Result<Detection, DetectFailure> {
        let image = match input {
            DetectInput::S3 { bucket, key, .. } => Image::builder()
                .s3_object(S3Object::builder().bucket(bucket).name(key).build())
                .build(),
            DetectInput::Bytes(bytes) => {
                let inline = tokio::task::spawn_blocking(move || Self::inline_bytes(&bytes))
                    .await
                    .map_err(|e| DetectFailure::Config {
                        message: format!("encoding task failed: {e}"),
                    })??;
                Image::builder().bytes(Blob::new(inline.to_vec())).build()
            }
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DetectFailure::Config {
                message: "detector shut down".into(),
            })?;
        if let Some(pacing) = &self.pacing {
            pacing.acquire().await;
        }
        let out = self
            .client
            .detect_labels()
            .image(image)
            .min_confidence(request_min_confidence(&params))
            .set_max_labels(params.max_labels.map(|m| m.min(i32::MAX as u32) as i32))
            .set_features(Some(features(&params)))
            .set_settings(settings(&params.filters))
            .send()
            .await
            .map_err(map_err)?;
        let answer: Vec<Label> = out.labels().iter().map(to_label).collect();
        // Labels are kept at MinConfidence even if the response carries
        // more (asked lower for candidates, or not).
        let (labels, candidates) = split_at(answer, params.min_confidence);
        Ok(Detection {
            labels,
            label_model_version: out.label_model_version().map(str::to_string),
            image_properties: out.image_properties().map(to_properties),
            candidates: if params.candidates {
                candidates
            } else {
                Vec::new()
            },
            // DetectLabels reads no words (DetectText is another API,
            // another price).
            text: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(w, h, image::Rgb([120, 80, 40]))
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    /// Candidates lower the sent MinConfidence by 25, never under 40, and
    /// never raise it.
    #[test]
    fn the_candidate_floor() {
        assert_eq!(candidate_floor(55.0), 40.0);
        assert_eq!(candidate_floor(80.0), 55.0);
        assert_eq!(candidate_floor(30.0), 30.0);
        let (labels, below) = split_at(
            vec![Label::new("Cat", 91.0), Label::new("Tabby", 54.9)],
            55.0,
        );
        assert_eq!(labels.len(), 1);
        assert_eq!(below, vec![Candidate::new("Tabby", 54.9)]);
    }

    /// Over 10,000 px a side DetectLabels refuses the image: it is never
    /// sent by reference nor as it is, but downscaled like other oversize
    /// images.
    #[test]
    fn images_over_ten_thousand_pixels_a_side_are_downscaled() {
        let wide = png(12_000, 120);
        assert!(!RekognitionDetector::accepts_by_reference(
            &wide,
            wide.len() as u64
        ));
        let sent = RekognitionDetector::inline_bytes(&wide).unwrap();
        assert_eq!(imaging::sniff(&sent), Some(ImageFormat::Jpeg));
        let (w, h) = imaging::dimensions(&sent).unwrap();
        assert!(w <= REENCODE_MAX_SIDE && h >= MIN_SIDE.min(h), "{w}x{h}");
        let ok = png(9_000, 120);
        assert!(RekognitionDetector::accepts_by_reference(
            &ok,
            ok.len() as u64
        ));
        assert_eq!(RekognitionDetector::inline_bytes(&ok).unwrap(), ok);
    }

    /// What is never sent (no paid call for it) says why, as the local
    /// detector does: empty, an undecodable format, no image signature.
    #[test]
    fn bytes_that_are_no_image_fail_before_the_call_and_say_why() {
        let cases: [(&[u8], &str, &str); 3] = [
            (b"", "NotAnImage", "empty (0 bytes)"),
            (
                b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
                "UnsupportedImage",
                "HEIF",
            ),
            (
                b"plain text named photo.jpg",
                "NotAnImage",
                "unrecognised file signature",
            ),
        ];
        for (bytes, code, says) in cases {
            match RekognitionDetector::inline_bytes(bytes) {
                Err(DetectFailure::Permanent { code: c, message }) => {
                    assert_eq!(c, code, "{bytes:?}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }
}
