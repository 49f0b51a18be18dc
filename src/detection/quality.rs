//! Image quality measured offline, in the shape of DetectLabels'
//! `ImageProperties.Quality` (Brightness, Sharpness, Contrast, each 0-100),
//! so the local detector answers `IMAGE_PROPERTIES` like Rekognition.
//!
//! The numbers are imgtag's own, not Rekognition's (whose method is not
//! published): comparable between images measured the same way, which is
//! what a review threshold needs. All three are taken on the image scaled
//! to fit `MEASURE_SIDE` px, so a 12-megapixel photo and its thumbnail
//! score alike and the cost stays a few milliseconds:
//! - Brightness: the mean luma (Rec. 601) over 0-255, as 0-100.
//! - Contrast: the luma's standard deviation over its largest possible
//!   value (127.5), as 0-100.
//! - Sharpness: the variance `v` of the 4-neighbour Laplacian of the luma,
//!   mapped to 0-100 by `100 v / (v + SHARPNESS_HALF)`: 0 for a flat image,
//!   50 at `v` = `SHARPNESS_HALF`, approaching 100 for fine detail. A
//!   blurred copy of a photo always scores lower than the photo.

use std::future::Future;

use bytes::Bytes;
use image::RgbImage;

use super::DetectParams;
use crate::contract::{ImageProperties, ImageQuality};
use crate::imaging::{self, DecodeLimits, ImagingError};

/// Longest side of the image the measures are taken on.
pub(crate) const MEASURE_SIDE: u32 = 512;
/// The Laplacian variance that maps to sharpness 50: about where a photo
/// at this size stops looking crisp.
pub(crate) const SHARPNESS_HALF: f64 = 300.0;

/// Brightness, sharpness and contrast of an image, each 0-100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub brightness: f32,
    pub sharpness: f32,
    pub contrast: f32,
}

impl Quality {
    /// `ImageProperties` holding this quality (no colours: the local
    /// detector does not measure them).
    pub(crate) fn to_properties(self) -> ImageProperties {
        ImageProperties {
            quality: Some(ImageQuality {
                brightness: Some(self.brightness),
                sharpness: Some(self.sharpness),
                contrast: Some(self.contrast),
                extra: Default::default(),
            }),
            ..Default::default()
        }
    }
}

/// Measures an image already decoded.
pub fn measure(img: &RgbImage) -> Result<Quality, ImagingError> {
    let small = if img.width().max(img.height()) > MEASURE_SIDE {
        let scale = f64::from(MEASURE_SIDE) / f64::from(img.width().max(img.height()));
        let w = ((f64::from(img.width()) * scale).round() as u32).max(1);
        let h = ((f64::from(img.height()) * scale).round() as u32).max(1);
        imaging::resize_rgb(img, w, h)?
    } else {
        img.clone()
    };
    Ok(measure_luma(&luma(&small), small.width() as usize))
}

/// Decodes an image (at a reduced scale when it is a large JPEG) and
/// measures it.
pub fn measure_bytes(bytes: &[u8]) -> Result<Quality, ImagingError> {
    let img = imaging::decode_for_size(bytes, &DecodeLimits::default(), MEASURE_SIDE)?;
    measure(&img)
}

/// Starts measuring `bytes` on the blocking pool when the request asks
/// for `IMAGE_PROPERTIES`; the future gives `None` otherwise (or if the
/// image cannot be decoded, which the labels then report).
pub fn spawn(
    bytes: &Bytes,
    params: &DetectParams,
) -> impl Future<Output = Option<ImageProperties>> + Send + use<> {
    let task = params.features.image_properties.then(|| {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || measure_bytes(&bytes).ok())
    });
    async move {
        match task {
            Some(t) => t.await.ok().flatten().map(Quality::to_properties),
            None => None,
        }
    }
}

/// Rec. 601 luma, 0-255.
fn luma(img: &RgbImage) -> Vec<f32> {
    img.pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

/// The three measures on a luma plane `width` pixels wide.
fn measure_luma(y: &[f32], width: usize) -> Quality {
    let n = y.len().max(1) as f64;
    let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = y
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    Quality {
        brightness: percent(mean / 255.0),
        contrast: percent(var.sqrt() / 127.5),
        sharpness: percent({
            let v = laplacian_variance(y, width);
            v / (v + SHARPNESS_HALF)
        }),
    }
}

/// Variance of the 4-neighbour Laplacian over the interior pixels (0 when
/// the image is under 3 px a side).
fn laplacian_variance(y: &[f32], width: usize) -> f64 {
    let height = y.len().checked_div(width).unwrap_or(0);
    if width < 3 || height < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0f64);
    for row in 1..height - 1 {
        for col in 1..width - 1 {
            let i = row * width + col;
            let lap = f64::from(y[i - 1] + y[i + 1] + y[i - width] + y[i + width] - 4.0 * y[i]);
            sum += lap;
            sum_sq += lap * lap;
            count += 1.0;
        }
    }
    let mean = sum / count;
    (sum_sq / count - mean * mean).max(0.0)
}

/// A 0-1 ratio as 0-100 with two decimals, like Rekognition's numbers.
fn percent(ratio: f64) -> f32 {
    ((ratio.clamp(0.0, 1.0) * 10_000.0).round() / 100.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_images_have_no_sharpness_or_contrast() {
        let grey = RgbImage::from_pixel(64, 48, image::Rgb([128, 128, 128]));
        let q = measure(&grey).unwrap();
        assert_eq!((q.sharpness, q.contrast), (0.0, 0.0));
        assert!((q.brightness - 50.2).abs() < 0.1, "{q:?}");
        let white = RgbImage::from_pixel(8, 8, image::Rgb([255, 255, 255]));
        assert_eq!(measure(&white).unwrap().brightness, 100.0);
    }

    #[test]
    fn a_checkerboard_is_sharp_and_contrasted() {
        let board = RgbImage::from_fn(64, 64, |x, y| {
            if (x + y) % 2 == 0 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let q = measure(&board).unwrap();
        assert!(q.sharpness > 99.0 && q.contrast > 99.0, "{q:?}");
        // Tiny images are measured without a Laplacian.
        assert_eq!(laplacian_variance(&[1.0, 2.0, 3.0, 4.0], 2), 0.0);
    }
}
