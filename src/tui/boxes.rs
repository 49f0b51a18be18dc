//! Instance boxes on the thumbnail: drawn into the decoded image before it
//! is encoded, so every graphics protocol and the half-block fallback show
//! them alike.
//!
//! Boxes come from documents that may be foreign or hostile: a box is
//! clamped to the image, and one that is empty, negative or not finite is
//! skipped. Nothing here can panic on any `f32`.

use image::{Rgb, RgbImage};

use crate::contract::{BoundingBox, Label};

/// The outline's colour: bright amber, which stands out on most photos.
pub const BOX_COLOUR: Rgb<u8> = Rgb([255, 200, 0]);
/// The outline's border, so it also stands out on bright yellow or white.
pub const EDGE_COLOUR: Rgb<u8> = Rgb([0, 0, 0]);
/// How many screen pixels (or half-block rows) wide an outline shows.
const SHOWN_STROKE: f32 = 3.0;

/// The labels in the order the detail pane lists them: highest confidence
/// first, ties in document order.
pub(crate) fn label_order(labels: &[Label]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| labels[b].confidence.total_cmp(&labels[a].confidence));
    order
}

/// The boxes of a label that can be drawn, clamped to the image.
pub fn label_boxes(label: &Label) -> Vec<BoundingBox> {
    label
        .instances
        .iter()
        .filter_map(|i| i.bounding_box.as_ref())
        .filter_map(clamp_box)
        .collect()
}

/// A box as fractions within `0..=1` on both axes, or None when nothing of
/// it is inside the image (empty, negative, NaN or infinite fields).
pub fn clamp_box(b: &BoundingBox) -> Option<BoundingBox> {
    let axis = |start: f32, len: f32| -> Option<(f32, f32)> {
        if !(start.is_finite() && len.is_finite() && len > 0.0) {
            return None;
        }
        // In f64 so that start + len cannot overflow.
        let end = (f64::from(start) + f64::from(len)).clamp(0.0, 1.0) as f32;
        let start = start.clamp(0.0, 1.0);
        (end > start).then_some((start, end - start))
    };
    let (left, width) = axis(b.left, b.width)?;
    let (top, height) = axis(b.top, b.height)?;
    Some(BoundingBox {
        width,
        height,
        left,
        top,
    })
}

/// The outline width in image pixels for an image of `image` pixels shown
/// in about `shown` screen pixels, so that it is about three screen pixels
/// wide whatever the scale (and at least 2, at most an eighth of the
/// shorter side).
pub fn stroke_for(image: (u32, u32), shown: (u32, u32)) -> u32 {
    let (iw, ih) = (image.0.max(1) as f32, image.1.max(1) as f32);
    let max = (image.0.min(image.1) / 8).max(2);
    if shown.0 == 0 || shown.1 == 0 {
        return 3.min(max);
    }
    let scale = (shown.0 as f32 / iw).min(shown.1 as f32 / ih);
    let stroke = (SHOWN_STROKE / scale).ceil();
    // `as` saturates, and NaN becomes 0.
    (stroke as u32).clamp(2, max)
}

/// Draws each box's outline, `stroke` pixels wide, inside the box's edge:
/// an amber band with a dark line on either side when it is 3 pixels or
/// wider. Boxes that [`clamp_box`] rejects are skipped.
pub fn draw_boxes(img: &mut RgbImage, boxes: &[BoundingBox], stroke: u32) {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return;
    }
    let stroke = stroke.max(1);
    for b in boxes.iter().filter_map(clamp_box) {
        let (x0, x1) = pixel_span(b.left, b.width, w);
        let (y0, y1) = pixel_span(b.top, b.height, h);
        for ring in 0..stroke {
            let (rx0, ry0) = (x0 + ring, y0 + ring);
            if rx0 > x1.saturating_sub(ring) || ry0 > y1.saturating_sub(ring) {
                break;
            }
            let (rx1, ry1) = (x1 - ring, y1 - ring);
            let edge = stroke >= 3 && (ring == 0 || ring == stroke - 1);
            let colour = if edge { EDGE_COLOUR } else { BOX_COLOUR };
            ring_pixels(img, (rx0, ry0, rx1, ry1), colour);
        }
    }
}

/// First and last pixel (inclusive) covered by a clamped span of `len`
/// pixels.
fn pixel_span(start: f32, size: f32, len: u32) -> (u32, u32) {
    let first = (start * len as f32).floor() as u32;
    let end = ((start + size) * len as f32).ceil() as u32;
    let first = first.min(len - 1);
    let last = end.saturating_sub(1).clamp(first, len - 1);
    (first, last)
}

/// Sets the pixels of one rectangle's border (inclusive corners).
fn ring_pixels(img: &mut RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32), colour: Rgb<u8>) {
    for x in x0..=x1 {
        img.put_pixel(x, y0, colour);
        img.put_pixel(x, y1, colour);
    }
    for y in y0..=y1 {
        img.put_pixel(x0, y, colour);
        img.put_pixel(x1, y, colour);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bb(left: f32, top: f32, width: f32, height: f32) -> BoundingBox {
        BoundingBox {
            width,
            height,
            left,
            top,
        }
    }

    #[test]
    fn clamping_keeps_the_inside_part_and_drops_the_rest() {
        let c = clamp_box(&bb(-0.5, 0.9, 1.0, 0.5)).unwrap();
        assert_eq!((c.left, c.width), (0.0, 0.5));
        assert!((c.top - 0.9).abs() < 1e-6 && (c.height - 0.1).abs() < 1e-6);
        for bad in [
            bb(f32::NAN, 0.0, 0.5, 0.5),
            bb(0.0, 0.0, f32::INFINITY, 0.5),
            bb(0.0, 0.0, -0.2, 0.5),
            bb(0.0, 0.0, 0.5, 0.0),
            bb(1.5, 0.0, 0.5, 0.5),
            bb(0.0, -2.0, 0.5, 1.0),
        ] {
            assert_eq!(clamp_box(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_stroke_follows_the_scale() {
        // Shown at a quarter of its size: 12 image pixels make 3 shown.
        assert_eq!(stroke_for((512, 512), (128, 128)), 12);
        // Shown larger than it is: never below 2.
        assert_eq!(stroke_for((512, 384), (2048, 2048)), 2);
        // A tiny thumbnail: never more than an eighth of the short side.
        assert_eq!(stroke_for((40, 24), (4, 4)), 3);
        assert_eq!(stroke_for((512, 512), (0, 10)), 3);
    }
}
