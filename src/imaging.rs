//! Image decoding and model preprocessing.
//!
//! - [`sniff`] recognises an image format from its magic bytes (never from
//!   a file name).
//! - [`dimensions`] reads only the header.
//! - [`decode`] decodes within [`DecodeLimits`]: the dimensions are checked
//!   against the limits before any pixel buffer is allocated, so a
//!   decompression bomb is a clean [`ImagingError::TooLarge`].
//! - [`decode_for_size`] may return a smaller image: a large JPEG is
//!   decoded with DCT scaling (1/2, 1/4 or 1/8), for thumbnails.
//! - [`thumbnail`] decodes and fits an image into a box, for the TUI.
//! - [`preprocess`] turns a decoded image into the 1x3x224x224 NCHW tensor
//!   the local model expects (torchvision's ImageNet recipe).
//!
//! Nothing in this module panics on any input bytes.

use std::cell::RefCell;
use std::io::Cursor;

use fast_image_resize as fir;
pub use image::ImageFormat;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};
use jpeg_decoder::{CodingProcess, PixelFormat};

/// Side of the square model input, in pixels.
pub(crate) const INPUT_SIZE: u32 = 224;
/// The shorter side is resized to this before the centre crop.
pub(crate) const RESIZE_SHORTER: u32 = 256;
/// Number of f32 values in one preprocessed image (3 x 224 x 224).
pub const TENSOR_LEN: usize = 3 * (INPUT_SIZE as usize) * (INPUT_SIZE as usize);

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why an image could not be decoded or preprocessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagingError {
    /// The bytes do not start with the signature of any image format.
    #[error("not an image: unrecognised file signature")]
    NotAnImage,
    /// No bytes at all (an upload that never finished, a placeholder):
    /// recorded under the same code as [`ImagingError::NotAnImage`], with
    /// a message that says what the operator will want to check.
    #[error("not an image: the file is empty (0 bytes)")]
    Empty,
    /// A recognised image format (or a variant of one) this build cannot
    /// decode.
    #[error("unsupported image format: {0}")]
    Unsupported(String),
    /// Smaller than [`DecodeLimits::min_side`] on at least one side.
    #[error("image is too small: {width}x{height}, each side must be at least {min_side} px")]
    TooSmall {
        width: u32,
        height: u32,
        min_side: u32,
    },
    /// Over the dimension, pixel-count or memory limit.
    #[error("image is too large: {0}")]
    TooLarge(String),
    /// Truncated or otherwise malformed data.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// The output slice given to [`preprocess`] has the wrong length.
    #[error("tensor buffer has {got} values, expected {expected}")]
    BadTensorLength { got: usize, expected: usize },
}

impl ImagingError {
    /// A short stable identifier, e.g. for `ImgTag.Error.Code`.
    pub fn code(&self) -> &'static str {
        match self {
            ImagingError::NotAnImage | ImagingError::Empty => "NotAnImage",
            ImagingError::Unsupported(_) => "UnsupportedImage",
            ImagingError::TooSmall { .. } => "ImageTooSmall",
            ImagingError::TooLarge(_) => "ImageTooLarge",
            ImagingError::Corrupt(_) => "CorruptImage",
            ImagingError::BadTensorLength { .. } => "BadTensorLength",
        }
    }
}

/// Bounds applied while decoding untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum width in pixels.
    pub max_width: u32,
    /// Maximum height in pixels.
    pub max_height: u32,
    /// Maximum width x height.
    pub max_pixels: u64,
    /// Maximum bytes the decoder may allocate (output buffer included).
    pub max_alloc: u64,
    /// Each side must be at least this many pixels (Rekognition needs 80;
    /// the local model is usable from 16).
    pub min_side: u32,
    /// Rotate/flip according to the EXIF orientation tag, as a phone photo
    /// is meant to be viewed. Costs a copy only for images that have a
    /// non-identity orientation.
    pub apply_orientation: bool,
}

impl DecodeLimits {
    /// Rekognition's own minimum: 80 px on each side.
    pub const REKOGNITION_MIN_SIDE: u32 = 80;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 16_384,
            max_height: 16_384,
            max_pixels: 50_000_000,
            max_alloc: 512 * 1024 * 1024,
            min_side: 16,
            apply_orientation: true,
        }
    }
}

/// The image format, from the magic bytes at the start of `bytes`.
///
/// Only the formats this build decodes are recognised: JPEG, PNG, WebP,
/// GIF, BMP and TIFF.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(PNG) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else if bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(b"II+\0")
        || bytes.starts_with(b"MM\0+")
    {
        Some(ImageFormat::Tiff)
    } else if bytes.len() >= 18 && bytes.starts_with(b"BM") {
        Some(ImageFormat::Bmp)
    } else {
        None
    }
}

/// Name of an image format this build recognises but cannot decode.
fn sniff_unsupported(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return match &bytes[8..12] {
            b"avif" | b"avis" => Some("AVIF"),
            b"heic" | b"heix" | b"hevc" | b"heim" | b"heis" | b"mif1" | b"msf1" => Some("HEIF"),
            _ => None,
        };
    }
    if bytes.starts_with(b"8BPS") {
        return Some("PSD");
    }
    if bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some("JPEG XL");
    }
    if bytes.starts_with(b"\0\0\0\x0cjP  \r\n\x87\n") || bytes.starts_with(&[0xFF, 0x4F, 0xFF]) {
        return Some("JPEG 2000");
    }
    match image::guess_format(bytes) {
        Ok(format) if sniff(bytes).is_none() => Some(format_name(format)),
        _ => None,
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    format
        .extensions_str()
        .first()
        .copied()
        .unwrap_or("unknown")
}

/// The format `bytes` are in, or why they cannot be an image this build
/// decodes (empty, an unsupported format, no known signature).
pub(crate) fn classify_format(bytes: &[u8]) -> Result<ImageFormat, ImagingError> {
    if bytes.is_empty() {
        return Err(ImagingError::Empty);
    }
    match sniff(bytes) {
        Some(format) => Ok(format),
        None => match sniff_unsupported(bytes) {
            Some(name) => Err(ImagingError::Unsupported(name.to_string())),
            None => Err(ImagingError::NotAnImage),
        },
    }
}

fn map_image_error(err: ImageError) -> ImagingError {
    match err {
        ImageError::Limits(e) => ImagingError::TooLarge(e.to_string()),
        ImageError::Unsupported(e) => ImagingError::Unsupported(e.to_string()),
        ImageError::Decoding(e) => ImagingError::Corrupt(e.to_string()),
        ImageError::IoError(e) => ImagingError::Corrupt(format!("truncated or unreadable: {e}")),
        ImageError::Parameter(e) => ImagingError::Corrupt(e.to_string()),
        ImageError::Encoding(e) => ImagingError::Corrupt(e.to_string()),
    }
}

/// Width and height read from the fixed-position header fields of formats
/// where that is trivial, without involving a decoder. Used so that a
/// header announcing a huge image is rejected even if the rest is missing.
fn fixed_header_dimensions(format: ImageFormat, bytes: &[u8]) -> Option<(u32, u32)> {
    let be32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let le16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
    };
    match format {
        // signature, IHDR length, "IHDR", width, height
        ImageFormat::Png if bytes.get(12..16) == Some(b"IHDR") => Some((be32(16)?, be32(20)?)),
        ImageFormat::Gif => Some((le16(6)?, le16(8)?)),
        _ => None,
    }
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), ImagingError> {
    if width > limits.max_width || height > limits.max_height {
        return Err(ImagingError::TooLarge(format!(
            "{width}x{height} exceeds {}x{}",
            limits.max_width, limits.max_height
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ImagingError::TooLarge(format!(
            "{width}x{height} = {pixels} pixels exceeds {}",
            limits.max_pixels
        )));
    }
    if width < limits.min_side || height < limits.min_side {
        return Err(ImagingError::TooSmall {
            width,
            height,
            min_side: limits.min_side,
        });
    }
    Ok(())
}

fn image_limits(limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc);
    l
}

fn make_decoder<'a>(
    format: ImageFormat,
    bytes: &'a [u8],
    limits: &DecodeLimits,
) -> Result<impl ImageDecoder + 'a, ImagingError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(image_limits(limits));
    reader.into_decoder().map_err(map_image_error)
}

/// Width and height from the image header, without decoding pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    let format = classify_format(bytes)?;
    if let Some(dims) = fixed_header_dimensions(format, bytes) {
        return Ok(dims);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.no_limits();
    reader.into_dimensions().map_err(map_image_error)
}

/// Decode `bytes` to 8-bit RGB within `limits`.
///
/// Alpha is dropped (as Pillow's `convert("RGB")`), 16-bit samples are
/// reduced to 8 bits, an animation yields its first frame.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImagingError> {
    let format = classify_format(bytes)?;
    if let Some((w, h)) = fixed_header_dimensions(format, bytes) {
        check_dimensions(w, h, limits)?;
    }
    let mut decoder = make_decoder(format, bytes, limits)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end_after_scan(bytes) {
        // The JPEG decoder silently fills a truncated scan with grey.
        return Err(ImagingError::Corrupt(
            "truncated JPEG: no end-of-image marker after the scan data".into(),
        ));
    }
    if decoder.total_bytes() > limits.max_alloc {
        return Err(ImagingError::TooLarge(format!(
            "decoding needs {} bytes, over the {} byte limit",
            decoder.total_bytes(),
            limits.max_alloc
        )));
    }
    let orientation = if limits.apply_orientation {
        decoder.orientation().ok()
    } else {
        None
    };
    let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if let Some(orientation) = orientation {
        img.apply_orientation(orientation);
    }
    Ok(img.into_rgb8())
}

/// Decode `bytes` to 8-bit RGB within `limits`, possibly at a reduced size:
/// the result's shorter side is at least `min_shorter_side` (or the image's
/// own shorter side, if that is smaller), and may be up to twice that.
///
/// A JPEG big enough is decoded with DCT scaling: the decoder computes only
/// the 1/2, 1/4 or 1/8 scale image (the largest reduction that keeps the
/// shorter side at least `min_shorter_side`), which skips most of the IDCT,
/// upsampling and colour conversion work and allocates a smaller buffer.
/// The limits apply to the full-size image exactly as in [`decode`]
/// (checked from the header before any pixel buffer is allocated), EXIF
/// orientation is applied the same way, and a truncated JPEG is
/// [`ImagingError::Corrupt`].
///
/// Cost: the scaling decoder (`jpeg-decoder`) has a slower entropy decoder
/// than the one [`decode`] uses, so the time saved in the IDCT and colour
/// conversion is mostly spent there: a 12-megapixel JPEG takes 0.75-0.96x
/// the time of a full decode and resize (`cargo bench --bench tui`), while
/// its peak heap is 0.1-0.2x (no full-size pixel buffer). Use it where
/// memory matters (thumbnails of huge photos), not for throughput.
///
/// Any other image, a JPEG that needs no reduction, and a JPEG the scaling
/// decoder cannot handle (lossless or 16-bit JPEG, or one it rejects) go
/// through [`decode`], so failures are reported exactly as [`decode`]
/// reports them.
pub fn decode_for_size(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_shorter_side: u32,
) -> Result<RgbImage, ImagingError> {
    if sniff(bytes) == Some(ImageFormat::Jpeg)
        && let Some(img) = decode_jpeg_scaled(bytes, limits, min_shorter_side)?
    {
        return Ok(img);
    }
    decode(bytes, limits)
}

/// The DCT scale, in eighths (1, 2, 4 or 8), for decoding a `width` x
/// `height` JPEG so that its shorter side is at least `min_shorter_side`.
fn jpeg_dct_scale(width: u32, height: u32, min_shorter_side: u32) -> u32 {
    let shorter = width.min(height);
    [1, 2, 4]
        .into_iter()
        .find(|&eighths| scaled_side(shorter, eighths) >= min_shorter_side)
        .unwrap_or(8)
}

/// A side of `len` pixels at a DCT scale of `eighths`/8 (rounded up, as
/// the decoder does).
fn scaled_side(len: u32, eighths: u32) -> u32 {
    (len * eighths).div_ceil(8)
}

/// The scaled JPEG path of [`decode_for_size`]. `Ok(None)`: use [`decode`]
/// instead (no reduction possible, or the image is something this decoder
/// does not handle; [`decode`] then decodes it or reports the error).
fn decode_jpeg_scaled(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_shorter_side: u32,
) -> Result<Option<RgbImage>, ImagingError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    // Reads the markers up to the frame header only.
    if decoder.read_info().is_err() {
        return Ok(None);
    }
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_dimensions(width, height, limits)?;
    if info.coding_process == CodingProcess::Lossless || info.pixel_format == PixelFormat::L16 {
        return Ok(None);
    }
    let eighths = jpeg_dct_scale(width, height, min_shorter_side);
    if eighths == 8 {
        // Full size: the default decoder is the faster one.
        return Ok(None);
    }
    if !jpeg_has_end_after_scan(bytes) {
        return Err(ImagingError::Corrupt(
            "truncated JPEG: no end-of-image marker after the scan data".into(),
        ));
    }
    let (out_w, out_h) = (scaled_side(width, eighths), scaled_side(height, eighths));
    let channels = info.pixel_format.pixel_bytes() as u64;
    let mut needed = u64::from(out_w) * u64::from(out_h) * channels;
    if info.pixel_format != PixelFormat::RGB24 {
        needed += u64::from(out_w) * u64::from(out_h) * 3;
    }
    if needed > limits.max_alloc {
        return Err(ImagingError::TooLarge(format!(
            "decoding needs {needed} bytes, over the {} byte limit",
            limits.max_alloc
        )));
    }
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    // The decoder picks the smallest scale at which either requested side
    // is reached: ask for the shorter side only.
    let shorter = u16::try_from(scaled_side(width.min(height), eighths)).unwrap_or(u16::MAX);
    let request = if width <= height {
        (shorter, u16::MAX)
    } else {
        (u16::MAX, shorter)
    };
    if decoder.scale(request.0, request.1).is_err() {
        return Ok(None);
    }
    let Ok(pixels) = decoder.decode() else {
        return Ok(None);
    };
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (out_w, out_h) = (u32::from(info.width), u32::from(info.height));
    let Some(img) = jpeg_pixels_to_rgb(info.pixel_format, out_w, out_h, pixels) else {
        return Ok(None);
    };
    let orientation = if limits.apply_orientation {
        decoder.exif_data().and_then(Orientation::from_exif_chunk)
    } else {
        None
    };
    Ok(Some(match orientation {
        None | Some(Orientation::NoTransforms) => img,
        Some(orientation) => {
            let mut img = DynamicImage::ImageRgb8(img);
            img.apply_orientation(orientation);
            img.into_rgb8()
        }
    }))
}

/// RGB from the decoder's output. CMYK comes out of the decoder as ink
/// amounts (the Adobe inversion and any YCCK transform already undone).
fn jpeg_pixels_to_rgb(
    format: PixelFormat,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
) -> Option<RgbImage> {
    let count = usize::try_from(u64::from(width) * u64::from(height)).ok()?;
    if pixels.len() != count.checked_mul(format.pixel_bytes())? {
        return None;
    }
    let rgb = match format {
        PixelFormat::RGB24 => pixels,
        PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        PixelFormat::CMYK32 => {
            let ink = |v: u8, k: u8| {
                let (white, black) = (255 - u32::from(v), 255 - u32::from(k));
                ((white * black + 127) / 255) as u8
            };
            pixels
                .chunks_exact(4)
                .flat_map(|p| [ink(p[0], p[3]), ink(p[1], p[3]), ink(p[2], p[3])])
                .collect()
        }
        PixelFormat::L16 => return None,
    };
    RgbImage::from_raw(width, height, rgb)
}

/// Whether a JPEG has an end-of-image marker (FF D9) after the start of its
/// first scan. Marker segments before the scan are skipped by their
/// lengths, so an EXIF thumbnail's own end marker does not count; inside
/// entropy-coded data a literal FF is always followed by 00 or a restart
/// marker, so FF D9 there is the real end. Data after the end is allowed.
fn jpeg_has_end_after_scan(bytes: &[u8]) -> bool {
    let mut pos = 2; // after FF D8
    let scan_start = loop {
        // Skip fill bytes, then read the marker.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(0xFF), Some(0xDA)) => break pos,
            (Some(0xFF), Some(marker)) if (0xD0..=0xD8).contains(marker) || *marker == 0x01 => {
                pos += 2;
            }
            (Some(0xFF), Some(_)) => {
                let Some(len) = bytes.get(pos + 2..pos + 4) else {
                    return false;
                };
                pos += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
            _ => return false,
        }
    };
    bytes
        .get(scan_start..)
        .is_some_and(|scan| scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]))
}

/// Geometry of the resize + centre crop for an image of `width` x `height`:
/// the source rectangle `(left, top, width, height)` (fractional, in source
/// pixels) that maps onto the 224x224 crop.
pub(crate) fn crop_source_rect(width: u32, height: u32) -> (f64, f64, f64, f64) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let short = u64::from(RESIZE_SHORTER);
    // torchvision Resize(256): the longer side is truncated.
    let (rw, rh) = if w <= h {
        (short, short * h / w)
    } else {
        (short * w / h, short)
    };
    let size = u64::from(INPUT_SIZE);
    let left = rw.saturating_sub(size) / 2;
    let top = rh.saturating_sub(size) / 2;
    let sx = w as f64 / rw as f64;
    let sy = h as f64 / rh as f64;
    let (left, top) = (left as f64 * sx, top as f64 * sy);
    // Keep the box inside the image despite floating-point rounding.
    (
        left,
        top,
        (size as f64 * sx).min(w as f64 - left),
        (size as f64 * sy).min(h as f64 - top),
    )
}

thread_local! {
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
}

/// Resize + centre-crop `img` to 224x224 RGB (bilinear/triangle filter,
/// antialiased when shrinking, like Pillow's BILINEAR).
pub(crate) fn resize_crop(img: &RgbImage) -> Result<RgbImage, ImagingError> {
    let (width, height) = img.dimensions();
    if width == 0 || height == 0 {
        return Err(ImagingError::TooSmall {
            width,
            height,
            min_side: 1,
        });
    }
    let src = fir::images::ImageRef::new(width, height, img.as_raw(), fir::PixelType::U8x3)
        .map_err(|e| ImagingError::Corrupt(format!("pixel buffer: {e}")))?;
    let mut dst = fir::images::Image::new(INPUT_SIZE, INPUT_SIZE, fir::PixelType::U8x3);
    let (left, top, w, h) = crop_source_rect(width, height);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
        .crop(left, top, w, h);
    RESIZER
        .with_borrow_mut(|resizer| resizer.resize(&src, &mut dst, &options))
        .map_err(|e| ImagingError::Corrupt(format!("resize: {e}")))?;
    RgbImage::from_raw(INPUT_SIZE, INPUT_SIZE, dst.into_vec())
        .ok_or_else(|| ImagingError::Corrupt("resize produced a short buffer".into()))
}

fn normalise_lut() -> &'static [[f32; 256]; 3] {
    static LUT: std::sync::OnceLock<[[f32; 256]; 3]> = std::sync::OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
        lut
    })
}

/// Write the normalised NCHW tensor of a 224x224 RGB crop into `out`.
pub(crate) fn normalise_into(crop: &RgbImage, out: &mut [f32]) -> Result<(), ImagingError> {
    if out.len() != TENSOR_LEN {
        return Err(ImagingError::BadTensorLength {
            got: out.len(),
            expected: TENSOR_LEN,
        });
    }
    if crop.dimensions() != (INPUT_SIZE, INPUT_SIZE) {
        return Err(ImagingError::Corrupt(format!(
            "crop is {:?}, expected {INPUT_SIZE}x{INPUT_SIZE}",
            crop.dimensions()
        )));
    }
    let lut = normalise_lut();
    let plane = TENSOR_LEN / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in crop.as_raw().chunks_exact(3).enumerate() {
        r[i] = lut[0][usize::from(px[0])];
        g[i] = lut[1][usize::from(px[1])];
        b[i] = lut[2][usize::from(px[2])];
    }
    Ok(())
}

/// Preprocess `img` for the model into `out` (length [`TENSOR_LEN`]):
/// shorter side resized to 256 (longer side truncated), centre crop
/// 224x224 (`left = (W - 224) / 2`, floor), `x / 255`, then
/// `(x - mean) / std` per channel with ImageNet's mean and std, NCHW.
pub fn preprocess(img: &RgbImage, out: &mut [f32]) -> Result<(), ImagingError> {
    if out.len() != TENSOR_LEN {
        return Err(ImagingError::BadTensorLength {
            got: out.len(),
            expected: TENSOR_LEN,
        });
    }
    let crop = resize_crop(img)?;
    normalise_into(&crop, out)
}

/// A thumbnail of `bytes` that fits in `max_side` x `max_side`, aspect kept.
///
/// Large JPEGs are decoded at reduced scale ([`decode_for_size`]), so a
/// 12-megapixel photo never exists at full size in memory; other formats
/// are decoded in full and the full-size pixels dropped as soon as the
/// thumbnail is made.
pub fn thumbnail(
    bytes: &[u8],
    limits: &DecodeLimits,
    max_side: u32,
) -> Result<RgbImage, ImagingError> {
    let img = decode_for_size(bytes, limits, max_side)?;
    let (w, h) = img.dimensions();
    let scale = (max_side as f64 / w.max(h) as f64).min(1.0);
    if scale >= 1.0 {
        return Ok(img);
    }
    let tw = ((w as f64 * scale).round() as u32).max(1);
    let th = ((h as f64 * scale).round() as u32).max(1);
    resize_rgb(&img, tw, th)
}

/// The scale (canvas pixels per image pixel) that fits a `width` x
/// `height` image into a `side` square with its aspect kept, and the
/// scaled size (each side at least 1).
pub fn fit(width: u32, height: u32, side: u32) -> (f64, u32, u32) {
    let s = f64::from(side);
    let ratio = (s / f64::from(height.max(1))).min(s / f64::from(width.max(1)));
    let scaled = |v: u32| ((f64::from(v) * ratio).round() as u32).clamp(1, side);
    (ratio, scaled(width), scaled(height))
}

/// The object and text detectors' input: `img` scaled by [`fit`] into a
/// `side` square with the classifier's bilinear filter, written at the top
/// left of `out` (3 planes of a canvas `canvas_width` wide and
/// `out.len() / 3 / canvas_width` high, which must hold the scaled image)
/// as B, G, R planes of `value(byte)`, the rest `pad`. Returns what
/// [`fit`] does.
pub(crate) fn letterbox_bgr(
    img: &RgbImage,
    side: usize,
    canvas_width: usize,
    out: &mut [f32],
    pad: f32,
    value: impl Fn(u8) -> f32,
) -> Result<(f64, u32, u32), ImagingError> {
    let (ratio, w, h) = fit(img.width(), img.height(), side as u32);
    let plane = out.len() / 3;
    let canvas_height = plane / canvas_width.max(1);
    if w as usize > canvas_width || h as usize > canvas_height || plane * 3 != out.len() {
        let (cw, ch) = (canvas_width.max(w as usize), canvas_height.max(h as usize));
        return Err(ImagingError::BadTensorLength {
            got: out.len(),
            expected: 3 * cw * ch,
        });
    }
    let scaled;
    let src = if (w, h) == img.dimensions() {
        img
    } else {
        scaled = resize_rgb(img, w, h)?;
        &scaled
    };
    out.fill(pad);
    for (y, row) in src.rows().enumerate() {
        for (x, px) in row.enumerate() {
            let at = y * canvas_width + x;
            // Model channel 0 is blue.
            out[at] = value(px[2]);
            out[plane + at] = value(px[1]);
            out[2 * plane + at] = value(px[0]);
        }
    }
    Ok((ratio, w, h))
}

/// Resizes an RGB image with a bilinear filter (fast_image_resize).
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, ImagingError> {
    let src = fir::images::ImageRef::new(
        img.width(),
        img.height(),
        img.as_raw(),
        fir::PixelType::U8x3,
    )
    .map_err(|e| ImagingError::Corrupt(e.to_string()))?;
    let mut dst = fir::images::Image::new(width, height, fir::PixelType::U8x3);
    let mut resizer = fir::Resizer::new();
    resizer
        .resize(
            &src,
            &mut dst,
            &fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)),
        )
        .map_err(|e| ImagingError::Corrupt(e.to_string()))?;
    RgbImage::from_raw(width, height, dst.into_vec())
        .ok_or_else(|| ImagingError::Corrupt("resize produced a wrong-sized buffer".into()))
}
