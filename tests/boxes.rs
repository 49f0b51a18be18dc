//! Instance boxes drawn into a thumbnail (`imgtag::tui::boxes`): on a real
//! decoded photo, the outline changes the pixels on the box's edge and no
//! other; boxes from a hostile document are clamped or skipped, never a
//! panic.

use image::RgbImage;
use imgtag::contract::{BoundingBox, Instance, Label};
use imgtag::imaging::{DecodeLimits, decode};
use imgtag::tui::boxes::{BOX_COLOUR, EDGE_COLOUR, clamp_box, draw_boxes, label_boxes, stroke_for};
use proptest::prelude::*;

/// A 256x256 crop of a real photo, so that box fractions are exact.
fn chelsea() -> RgbImage {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(root.join("assets/samples/chelsea.png")).unwrap();
    let img = decode(&bytes, &DecodeLimits::default()).unwrap();
    image::imageops::crop_imm(&img, 40, 20, 256, 256).to_image()
}

fn bb(left: f32, top: f32, width: f32, height: f32) -> BoundingBox {
    BoundingBox {
        width,
        height,
        left,
        top,
    }
}

/// The pixels that differ between two images of one size.
fn changed(a: &RgbImage, b: &RgbImage) -> Vec<(u32, u32)> {
    a.enumerate_pixels()
        .filter(|(x, y, p)| b.get_pixel(*x, *y) != *p)
        .map(|(x, y, _)| (x, y))
        .collect()
}

#[test]
fn the_outline_covers_the_box_edge_and_nothing_else() {
    let before = chelsea();
    let (w, h) = before.dimensions();
    assert_eq!((w, h), (256, 256));
    let mut after = before.clone();
    // x 64..=191, y 32..=223.
    let (x0, y0, x1, y1) = (64u32, 32u32, 191u32, 223u32);
    let b = bb(0.25, 0.125, 0.5, 0.75);
    draw_boxes(&mut after, &[b], 3);
    // The outer and inner rings are dark, the middle one amber.
    for (x, y) in [(x0, y0), (x1, y1), (x0 + 50, y0), (x1, y0 + 50)] {
        assert_eq!(*after.get_pixel(x, y), EDGE_COLOUR, "({x}, {y})");
    }
    for (x, y) in [(x0 + 1, y0 + 1), (x1 - 1, y1 - 1), (x0 + 50, y0 + 1)] {
        assert_eq!(*after.get_pixel(x, y), BOX_COLOUR, "({x}, {y})");
    }
    assert_eq!(*after.get_pixel(x0 + 50, y0 + 2), EDGE_COLOUR);
    // Every changed pixel is within 3 pixels of the edge, inside the box.
    let diff = changed(&before, &after);
    assert!(!diff.is_empty());
    for &(x, y) in &diff {
        let inside = (x0..=x1).contains(&x) && (y0..=y1).contains(&y);
        let near_edge = inside && (x - x0 < 3 || x1 - x < 3 || y - y0 < 3 || y1 - y < 3);
        assert!(near_edge, "({x}, {y}) changed");
    }
    // And the whole ring is drawn: perimeter times three, less the corners
    // counted twice.
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let ring = |k: u32| 2 * (bw - 2 * k) + 2 * (bh - 2 * k) - 4;
    let drawn = (0..3).map(ring).sum::<u32>() as usize;
    // A photo pixel may already have had the outline's colour.
    assert!(diff.len() <= drawn && diff.len() > drawn * 9 / 10);
    // Inside and outside, far from the edge: unchanged.
    for (x, y) in [
        (128, 128),
        (x0 + 3, y0 + 3),
        (x0 - 1, y0),
        (x1 + 1, y1),
        (5, 5),
    ] {
        assert_eq!(after.get_pixel(x, y), before.get_pixel(x, y), "({x}, {y})");
    }
}

#[test]
fn hostile_boxes_are_clamped_or_skipped() {
    let before = chelsea();
    let (w, h) = before.dimensions();
    // Skipped: nothing of them is in the image, or they are not numbers.
    let mut after = before.clone();
    let skipped = [
        bb(f32::NAN, 0.1, 0.2, 0.2),
        bb(0.1, 0.1, f32::INFINITY, 0.2),
        bb(0.1, 0.1, -0.3, 0.2),
        bb(0.1, 0.1, 0.0, 0.0),
        bb(2.0, 0.1, 0.5, 0.5),
        bb(-3.0, 0.1, 1.0, 0.5),
        bb(f32::MAX, f32::MAX, f32::MAX, f32::MAX),
    ];
    draw_boxes(&mut after, &skipped, 3);
    assert!(changed(&before, &after).is_empty());
    for b in &skipped {
        assert_eq!(clamp_box(b), None, "{b:?}");
    }
    // Larger than the image: its outline runs along the image's border.
    let mut after = before.clone();
    draw_boxes(&mut after, &[bb(-0.5, -0.5, 2.0, 2.0)], 2);
    for (x, y) in [
        (0, 0),
        (w - 1, h - 1),
        (w / 2, 0),
        (0, h / 2),
        (w - 2, h / 2),
    ] {
        assert_ne!(after.get_pixel(x, y), before.get_pixel(x, y), "({x}, {y})");
    }
    assert_eq!(
        after.get_pixel(w / 2, h / 2),
        before.get_pixel(w / 2, h / 2)
    );
    // Thinner than the stroke: filled, within its bounds.
    let mut after = before.clone();
    draw_boxes(&mut after, &[bb(0.5, 0.5, 0.001, 0.001)], 8);
    let diff = changed(&before, &after);
    assert!(!diff.is_empty() && diff.len() <= 4, "{diff:?}");
}

#[test]
fn only_drawable_boxes_of_a_label_are_taken() {
    let mut person = Label::new("Person", 90.0);
    let instance = |b: Option<BoundingBox>| Instance {
        bounding_box: b,
        confidence: Some(90.0),
        ..Instance::default()
    };
    person.instances = vec![
        instance(Some(bb(0.1, 0.1, 0.2, 0.3))),
        instance(None),
        instance(Some(bb(f32::NAN, 0.1, 0.2, 0.3))),
        instance(Some(bb(0.9, 0.9, 0.5, 0.5))),
    ];
    let boxes = label_boxes(&person);
    assert_eq!(boxes.len(), 2);
    assert!(((boxes[1].left + boxes[1].width) - 1.0).abs() < 1e-6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any four floats, any image size and stroke: no panic, and nothing
    /// drawn outside the clamped box.
    #[test]
    fn arbitrary_boxes_never_panic(
        left in any::<f32>(), top in any::<f32>(),
        width in any::<f32>(), height in any::<f32>(),
        w in 1u32..40, h in 1u32..40, stroke in 0u32..50,
        shown_w in any::<u32>(), shown_h in any::<u32>(),
    ) {
        let before = RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut after = before.clone();
        let b = bb(left, top, width, height);
        draw_boxes(&mut after, std::slice::from_ref(&b), stroke);
        let s = stroke_for((w, h), (shown_w, shown_h));
        prop_assert!((2..=(w.min(h) / 8).max(2)).contains(&s));
        match clamp_box(&b) {
            None => prop_assert!(changed(&before, &after).is_empty()),
            Some(c) => {
                prop_assert!(c.left >= 0.0 && c.top >= 0.0 && c.width > 0.0 && c.height > 0.0);
                prop_assert!(c.left + c.width <= 1.0 + 1e-6 && c.top + c.height <= 1.0 + 1e-6);
                // Drawn pixels lie within the box, rounded outwards.
                for (x, y) in changed(&before, &after) {
                    prop_assert!(x as f32 + 1.0 >= c.left * w as f32);
                    prop_assert!(x as f32 <= (c.left + c.width) * w as f32);
                    prop_assert!(y as f32 + 1.0 >= c.top * h as f32);
                    prop_assert!(y as f32 <= (c.top + c.height) * h as f32);
                }
            }
        }
    }
}
