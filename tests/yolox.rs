//! The object detector (YOLOX-Nano): tract against onnxruntime's output
//! (`assets/model/yolox_reference.json`, written by
//! `tools/yolox_reference.py`), box decoding, NMS, the merge with the
//! classifier's labels, and `imgtag tag` end to end.

use crate::common;
use common::models::tract as model;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use imgtag::contract::{BoundingBox, Instance, Label, NameRef};
use imgtag::detection::calibration::{Calibration, Curve};
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{self, LocalModel, ModelOptions, merge_labels};
use imgtag::detection::yolox::{
    self, BoxDet, Canvas, ClassNames, Letterbox, NMS_IOU, NUM_ANCHORS, ROW, SIDE, TENSOR_LEN, Yolox,
};
use imgtag::imaging::{self, DecodeLimits};

/// Both models on onnxruntime. The library is required, not optional:
/// `.ci/run` provides it (`ORT_DYLIB_PATH`, from the onnxruntime wheel).
#[cfg(feature = "ort")]
fn ort_model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        LocalModel::load_with(EngineChoice::Exactly(EngineKind::OnnxRuntime)).unwrap_or_else(|e| {
            panic!(
                "the onnxruntime engine is needed by the tests of feature `ort`: {e}\n\
                 (install the onnxruntime wheel and set ORT_DYLIB_PATH to its \
                 onnxruntime/capi/libonnxruntime.so.*, as .ci/run does)"
            )
        })
    })
}

fn detector() -> &'static Yolox {
    model().detector()
}

fn reference() -> &'static serde_json::Value {
    static REF: OnceLock<serde_json::Value> = OnceLock::new();
    REF.get_or_init(|| {
        serde_json::from_str(include_str!("../assets/model/yolox_reference.json")).unwrap()
    })
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/samples")
            .join(name),
    )
    .unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The synthetic input of the reference's "exact" section (its `pattern`).
fn exact_tensor() -> Vec<f32> {
    (0..TENSOR_LEN)
        .map(|i| ((i * 7919 + (i / SIDE) * 104_729) % 256) as f32)
        .collect()
}

fn bx(class: usize, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> BoxDet {
    BoxDet {
        class,
        score,
        x1,
        y1,
        x2,
        y2,
    }
}

// ------------------------------------------------------- against onnxruntime

#[test]
fn raw_output_matches_onnxruntime_on_the_same_input() {
    check_raw_output(detector());
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_engine_raw_output_matches_the_reference() {
    assert_eq!(ort_model().detector().engine(), EngineKind::OnnxRuntime);
    check_raw_output(ort_model().detector());
}

fn check_raw_output(detector: &Yolox) {
    let exact = &reference()["exact"];
    let tensor = exact_tensor();
    // Both sides built the same tensor.
    for c in 0..3 {
        let plane = &tensor[c * SIDE * SIDE..(c + 1) * SIDE * SIDE];
        let sum: f64 = plane.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(
            sum,
            exact["channel_sums"][c].as_f64().unwrap(),
            "channel {c}"
        );
    }
    let raw = detector.raw(&tensor, Canvas::FULL).unwrap();
    assert_eq!(raw.len(), NUM_ANCHORS * ROW);
    let sum: f64 = raw.iter().map(|&v| f64::from(v)).sum();
    let want = exact["output_sum"].as_f64().unwrap();
    assert!(
        (sum - want).abs() <= 1e-4 * want.abs().max(1.0),
        "{sum} vs {want}"
    );
    for (index, row) in exact["rows"].as_object().unwrap() {
        let i: usize = index.parse().unwrap();
        let want = floats(row);
        let got = &raw[i * ROW..(i + 1) * ROW];
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 2e-3, "anchor {i} value {k}: {g} vs {w}");
        }
        let decoded = yolox::decode_box(i, got, Canvas::FULL).unwrap();
        let want = floats(&exact["decoded"][index]);
        for (g, w) in decoded.iter().zip(&want) {
            assert!((g - w).abs() <= 0.05, "anchor {i}: {decoded:?} vs {want:?}");
        }
    }
}

#[test]
fn letterboxed_samples_and_boxes_match_onnxruntime() {
    check_sample_boxes(detector());
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_engine_boxes_match_the_reference() {
    check_sample_boxes(ort_model().detector());
}

fn check_sample_boxes(detector: &Yolox) {
    let mut tensor = Vec::new();
    for s in reference()["samples"].as_array().unwrap() {
        let file = s["file"].as_str().unwrap();
        let img = imaging::decode(&sample(file), &DecodeLimits::default()).unwrap();
        let (lb, canvas) = yolox::letterbox_into(&img, &mut tensor).unwrap();
        assert!(
            (lb.ratio - s["ratio"].as_f64().unwrap()).abs() < 1e-9,
            "{file}"
        );
        assert_eq!(
            [canvas.width, canvas.height],
            [&s["canvas"][0], &s["canvas"][1]].map(|v| v.as_u64().unwrap() as usize),
            "{file}"
        );
        assert_eq!(tensor.len(), canvas.tensor_len());
        // Same resizer family as Pillow's BILINEAR: means within 0.5 of 255.
        let size = canvas.width * canvas.height;
        for c in 0..3 {
            let plane = &tensor[c * size..(c + 1) * size];
            let mean = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / plane.len() as f64;
            let want = s["channel_sums"][c].as_f64().unwrap() / plane.len() as f64;
            assert!(
                (mean - want).abs() < 0.5,
                "{file} channel {c}: {mean} vs {want}"
            );
        }
        let got = detector.boxes(&tensor, canvas, 0.10).unwrap();
        let boxes: Vec<(usize, f32, BoundingBox)> = got
            .iter()
            .map(|b| (b.class, b.score, lb.bounding_box(b)))
            .collect();
        for d in s["detections"].as_array().unwrap() {
            let score = d["score"].as_f64().unwrap() as f32;
            if score < 0.3 {
                continue; // near the threshold a tiny input difference may drop it
            }
            let class = d["class"].as_u64().unwrap() as usize;
            let want = BoundingBox {
                left: d["left"].as_f64().unwrap() as f32,
                top: d["top"].as_f64().unwrap() as f32,
                width: d["width"].as_f64().unwrap() as f32,
                height: d["height"].as_f64().unwrap() as f32,
            };
            let found = boxes.iter().find(|(c, s, b)| {
                *c == class
                    && (s - score).abs() < 0.05
                    && [
                        (b.left, want.left),
                        (b.top, want.top),
                        (b.width, want.width),
                        (b.height, want.height),
                    ]
                    .iter()
                    .all(|(g, w)| (g - w).abs() < 0.01)
            });
            assert!(found.is_some(), "{file}: {d} not in {boxes:?}");
        }
    }
}

#[test]
fn astronaut_is_a_person_with_a_box() {
    let labels = model()
        .detect_bytes(&sample("astronaut.jpg"), 55.0, None)
        .unwrap();
    let person = labels.iter().find(|l| l.name == "Person").expect("Person");
    assert!(person.confidence >= 85.0, "{person:?}");
    assert_eq!(person.instances.len(), 1, "{person:?}");
    let b = person.instances[0].bounding_box.clone().unwrap();
    // She fills most of the frame.
    assert!(b.width > 0.5 && b.height > 0.5, "{b:?}");
    let best = person.instances[0].confidence.unwrap();
    assert_eq!(person.confidence, best);
}

// ---------------------------------------------------------------- decoding

#[test]
fn decode_applies_grid_offsets_strides_and_scores() {
    let mut raw = vec![0f32; NUM_ANCHORS * ROW];
    // Anchor 53 = stride 8, grid (x 1, y 1); anchor 2704 = first of stride 16.
    let set = |raw: &mut Vec<f32>, i: usize, vals: [f32; 4], obj: f32, class: usize, p: f32| {
        raw[i * ROW..i * ROW + 4].copy_from_slice(&vals);
        raw[i * ROW + 4] = obj;
        raw[i * ROW + 5 + class] = p;
    };
    set(&mut raw, 53, [0.5, 0.25, 0.0, 2f32.ln()], 0.9, 2, 0.5);
    set(&mut raw, 2704, [0.0, 0.0, 0.0, 0.0], 0.8, 0, 0.9);
    set(&mut raw, 3548, [0.0, 0.0, 0.0, 0.0], 0.5, 0, 0.1); // 0.05: below
    let got = yolox::decode(&raw, 0.1, Canvas::FULL);
    assert_eq!(got.len(), 2, "{got:?}");
    let a = got.iter().find(|b| b.class == 2).unwrap();
    // cx = (0.5 + 1) * 8 = 12, cy = (0.25 + 1) * 8 = 10, w = 8, h = 16.
    assert_eq!((a.x1, a.y1, a.x2, a.y2), (8.0, 2.0, 16.0, 18.0));
    assert!((a.score - 0.45).abs() < 1e-6);
    let b = got.iter().find(|b| b.class == 0).unwrap();
    assert_eq!((b.x1, b.y1, b.x2, b.y2), (-8.0, -8.0, 8.0, 8.0));
    // Last anchor: stride 32, grid (12, 12).
    assert_eq!(
        yolox::decode_box(3548, &raw[3548 * ROW..], Canvas::FULL).unwrap()[0],
        12.0 * 32.0 - 16.0
    );
    assert!(yolox::decode_box(NUM_ANCHORS, &raw[..ROW], Canvas::FULL).is_none());
    // NaN rows are skipped, not reported.
    raw[53 * ROW] = f32::NAN;
    assert_eq!(yolox::decode(&raw, 0.1, Canvas::FULL).len(), 1);
}

#[test]
fn a_short_canvas_has_its_own_grid() {
    // 600x400 scales to 416x277, 293 with the margin: a 416x320 canvas,
    // 52x40 + 26x20 + 13x10 anchors.
    let canvas = Canvas::of_image(600, 400);
    assert_eq!((canvas.width, canvas.height), (416, 320));
    assert_eq!(canvas.anchors(), 52 * 40 + 26 * 20 + 13 * 10);
    assert_eq!(canvas.shape(), [1, 3, 320, 416]);
    // 16:9 scales to 416x234: 256 high; 1:2 to 208x416: 224 wide.
    assert_eq!(Canvas::of_image(1920, 1080).height, 256);
    // 4:3 scales to 416x312: 352; 1:2 to 208x416: 256 wide (224 is not
    // a canvas side); a 400:1 strip to 416x1: 128.
    assert_eq!(Canvas::of_image(4000, 3000).height, 352);
    assert_eq!(Canvas::of_image(300, 600).width, 256);
    assert_eq!(
        Canvas::of_image(4000, 10),
        Canvas {
            width: 416,
            height: 128
        }
    );
    assert_eq!(Canvas::of_image(512, 512), Canvas::FULL);
    let anchors = canvas.anchors();
    let mut raw = vec![0f32; anchors * ROW];
    // Row 53 on a 52-wide grid is (x 1, y 1) again; the first stride-16
    // row follows the 52x40 grid, the last row is (12, 9) at stride 32.
    let first_16 = 52 * 40;
    for i in [53, first_16, anchors - 1] {
        raw[i * ROW + 4] = 0.9;
        raw[i * ROW + 5] = 0.9;
    }
    let got = yolox::decode(&raw, 0.5, canvas);
    let centres: Vec<(f32, f32)> = got
        .iter()
        .map(|b| ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0))
        .collect();
    assert!(centres.contains(&(8.0, 8.0)), "{centres:?}");
    assert!(centres.contains(&(0.0, 0.0)), "{centres:?}");
    assert!(centres.contains(&(12.0 * 32.0, 9.0 * 32.0)), "{centres:?}");
    assert!(yolox::decode_box(anchors, &raw[..ROW], canvas).is_none());
}

/// Canvases met for the first time by several threads at once: each gets
/// the answer one thread alone gets (tract makes each canvas's plan once
/// and shares it); a canvas the network cannot run is an error for that
/// call, not a panic, and the detector goes on.
#[test]
fn canvases_first_met_by_several_threads_give_one_answer() {
    let check = |kind: EngineKind| {
        // Fresh: no canvas met yet.
        let detector = &Yolox::load_with(kind).unwrap();
        let canvases = [
            Canvas {
                width: 416,
                height: 192,
            },
            Canvas {
                width: 128,
                height: 416,
            },
        ];
        let input = |c: Canvas| -> Vec<f32> {
            (0..c.tensor_len())
                .map(|i| ((i * 7919) % 256) as f32)
                .collect()
        };
        let answers: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| canvases.map(|c| detector.raw(&input(c), c).unwrap())))
                .collect();
            runs.into_iter()
                .map(|r| r.join().unwrap().to_vec())
                .collect()
        });
        let alone = Yolox::load_with(kind).unwrap();
        for (k, c) in canvases.into_iter().enumerate() {
            let want = alone.raw(&input(c), c).unwrap();
            assert_eq!(want.len(), c.anchors() * ROW);
            for got in &answers {
                assert_eq!(got[k], want, "{c:?}");
            }
        }
        // 40 is no multiple of the strides: the network's levels disagree.
        let odd = Canvas {
            width: 40,
            height: 40,
        };
        assert!(detector.raw(&input(odd), odd).is_err());
        assert!(detector.raw(&input(canvases[0]), canvases[0]).is_ok());
    };
    check(EngineKind::Tract);
    #[cfg(feature = "ort")]
    check(EngineKind::OnnxRuntime);
}

/// On its canvas a photo's boxes are the full square's, but for a little
/// at the edge the canvas cuts: the padding it drops is only padding.
#[test]
fn the_canvas_keeps_the_boxes_of_the_full_square() {
    let detector = detector();
    for file in ["coffee.jpg", "chelsea.png"] {
        let img = imaging::decode(&sample(file), &DecodeLimits::default()).unwrap();
        let mut fitted = Vec::new();
        let (lb, canvas) = yolox::letterbox_into(&img, &mut fitted).unwrap();
        assert!(canvas.height < SIDE, "{file}: {canvas:?}");
        // The same image on the full square: the canvas's rows, then padding.
        let mut square = vec![114f32; TENSOR_LEN];
        let (w, h) = (canvas.width, canvas.height);
        for c in 0..3 {
            for y in 0..h {
                let from = c * w * h + y * w;
                let to = c * SIDE * SIDE + y * SIDE;
                square[to..to + w].copy_from_slice(&fitted[from..from + w]);
            }
        }
        let on_canvas = detector.boxes(&fitted, canvas, 0.3).unwrap();
        let on_square = detector.boxes(&square, Canvas::FULL, 0.3).unwrap();
        assert_eq!(on_canvas.len(), on_square.len(), "{file}");
        for (a, b) in on_canvas.iter().zip(&on_square) {
            assert_eq!(a.class, b.class, "{file}");
            assert!((a.score - b.score).abs() < 0.03, "{file}: {a:?} vs {b:?}");
            let (ba, bb) = (lb.bounding_box(a), lb.bounding_box(b));
            let near = |x: f32, y: f32| (x - y).abs() < 0.02;
            assert!(
                near(ba.left, bb.left) && near(ba.top, bb.top) && near(ba.width, bb.width),
                "{file}: {ba:?} vs {bb:?}"
            );
        }
    }
}

#[test]
fn boxes_map_back_to_clamped_fractions() {
    // 832x416: ratio 0.5, image occupies 416x208 of the input.
    let (lb, w, h) = Letterbox::new(832, 416);
    assert_eq!((w, h, lb.ratio), (416, 208, 0.5));
    let b = lb.bounding_box(&bx(0, 0.9, 104.0, 52.0, 312.0, 156.0));
    assert_eq!((b.left, b.top, b.width, b.height), (0.25, 0.25, 0.5, 0.5));
    // Past the image (into the padding or off the canvas): clamped.
    let b = lb.bounding_box(&bx(0, 0.9, -20.0, 100.0, 500.0, 300.0));
    assert_eq!((b.left, b.width), (0.0, 1.0));
    assert!((b.top - 100.0 / 208.0).abs() < 1e-6 && b.top + b.height == 1.0);
}

#[test]
fn letterbox_pads_with_114_at_the_bottom_right_in_bgr() {
    let img = image::RgbImage::from_pixel(832, 416, image::Rgb([10, 20, 30]));
    // A buffer of any length is resized to the canvas: 416x256 (208 + 16,
    // rounded up to a canvas side).
    let mut t = vec![0f32; 7];
    let (lb, canvas) = yolox::letterbox_into(&img, &mut t).unwrap();
    assert_eq!(lb.ratio, 0.5);
    assert_eq!((canvas.width, canvas.height), (416, 256));
    let plane = SIDE * 256;
    assert_eq!(t.len(), 3 * plane);
    // Image rows 0..208: blue first.
    assert_eq!((t[0], t[plane], t[2 * plane]), (30.0, 20.0, 10.0));
    assert_eq!(t[207 * SIDE + 415], 30.0);
    // Padding below, to the canvas's edge.
    assert!(t[208 * SIDE..plane].iter().all(|&v| v == 114.0));
    // A wrong tensor length is an error, not a panic.
    let detector = detector();
    assert!(detector.raw(&t[1..], canvas).is_err());
    assert!(detector.raw(&t, Canvas::FULL).is_err());
}

// --------------------------------------------------------------------- NMS

#[test]
fn nms_suppresses_overlaps_within_a_class_only() {
    let boxes = vec![
        bx(0, 0.6, 0.0, 0.0, 100.0, 100.0),
        bx(0, 0.9, 5.0, 5.0, 105.0, 105.0),   // best person
        bx(0, 0.5, 200.0, 0.0, 300.0, 100.0), // another person, apart
        bx(16, 0.7, 0.0, 0.0, 100.0, 100.0),  // a dog at the same place
        bx(16, 0.65, 0.0, 0.0, 100.0, 60.0),  // IoU 0.6 with the dog: dropped
        bx(16, 0.3, 0.0, 0.0, 100.0, 40.0),   // IoU 0.4: kept
    ];
    let kept = yolox::nms(boxes, NMS_IOU);
    let got: Vec<(usize, f32)> = kept.iter().map(|b| (b.class, b.score)).collect();
    assert_eq!(got, [(0, 0.9), (16, 0.7), (0, 0.5), (16, 0.3)]);
    assert!(yolox::nms(Vec::new(), NMS_IOU).is_empty());
}

#[test]
fn iou_of_known_boxes() {
    let a = bx(0, 1.0, 0.0, 0.0, 10.0, 10.0);
    assert_eq!(yolox::iou(&a, &a), 1.0);
    assert_eq!(
        yolox::iou(&a, &bx(0, 1.0, 5.0, 0.0, 15.0, 10.0)),
        50.0 / 150.0
    );
    assert_eq!(yolox::iou(&a, &bx(0, 1.0, 20.0, 20.0, 30.0, 30.0)), 0.0);
    assert_eq!(yolox::iou(&bx(0, 1.0, 1.0, 1.0, 1.0, 1.0), &a), 0.0);
}

// ------------------------------------------------------------------- names

#[test]
fn coco_names_are_everyday_names_with_parents() {
    let names = ClassNames::embedded().unwrap();
    assert_eq!(names.name(0), Some("Person"));
    assert_eq!(names.name(2), Some("Car"));
    assert_eq!(names.parents(2), ["Vehicle", "Transportation"]);
    assert_eq!(names.name(16), Some("Dog"));
    for p in ["Canine", "Mammal", "Animal", "Pet"] {
        assert!(names.parents(16).iter().any(|n| n == p), "{p}");
    }
    assert_eq!(names.name(62), Some("Television"));
    assert_eq!(names.parents(63), ["Computer", "Electronics"]); // Laptop
    assert_eq!(names.name(80), None);
    // Every name the detector uses agrees with the shipped taxonomy.
    let taxonomy = imgtag::taxonomy::Taxonomy::shipped();
    let mut disagree = Vec::new();
    for class in 0..yolox::NUM_CLASSES {
        let name = names.name(class).unwrap();
        for parent in names.parents(class) {
            if taxonomy.id(name).is_some()
                && taxonomy.id(parent).is_some()
                && !taxonomy.is_ancestor(parent, name)
            {
                disagree.push(format!("{parent} of {name}"));
            }
        }
    }
    assert!(disagree.is_empty(), "{disagree:?}");
    assert!(ClassNames::from_json(r#"{"format":1,"classes":[],"parents":{}}"#).is_err());
}

#[test]
fn detector_labels_carry_instances_and_parent_labels() {
    let names = ClassNames::embedded().unwrap();
    let (lb, _, _) = Letterbox::new(416, 416);
    let boxes = [
        bx(16, 0.8, 0.0, 0.0, 208.0, 208.0),
        bx(16, 0.6, 208.0, 208.0, 416.0, 416.0),
        bx(2, 0.5, 0.0, 0.0, 10.0, 10.0), // below MinConfidence 55
    ];
    let labels = names.labels(&boxes, &lb, 55.0, &Curve::identity());
    let dog = labels.iter().find(|l| l.name == "Dog").unwrap();
    assert_eq!(dog.confidence, 80.0);
    assert_eq!(dog.instances.len(), 2);
    assert_eq!(dog.instances[1].confidence, Some(60.0));
    let b = dog.instances[1].bounding_box.clone().unwrap();
    assert_eq!((b.left, b.top, b.width, b.height), (0.5, 0.5, 0.5, 0.5));
    let mammal = labels.iter().find(|l| l.name == "Mammal").unwrap();
    assert_eq!(mammal.confidence, 80.0);
    assert!(mammal.instances.is_empty());
    assert_eq!(mammal.parents, [NameRef::new("Animal")]);
    assert!(
        !labels
            .iter()
            .any(|l| l.name == "Car" || l.name == "Vehicle")
    );
}

// ------------------------------------------------------------------- merge

fn label(name: &str, confidence: f32, parents: &[&str]) -> Label {
    let mut l = Label::new(name, confidence);
    l.parents = parents.iter().map(|p| NameRef::new(*p)).collect();
    l
}

#[test]
fn a_name_both_models_give_is_one_label() {
    let classified = vec![
        label("Cat", 70.0, &["Feline", "Animal"]),
        label("Feline", 75.0, &["Animal"]),
        label("Animal", 80.0, &[]),
    ];
    let mut cat = label("cat", 90.0, &["Pet", "Animal"]);
    cat.instances.push(Instance {
        bounding_box: Some(BoundingBox::default()),
        confidence: Some(90.0),
        dominant_colors: Vec::new(),
    });
    let detected = vec![
        cat,
        label("Pet", 90.0, &["Animal"]),
        label("Animal", 90.0, &[]),
    ];
    let merged = merge_labels(classified, detected);
    let names: Vec<&str> = merged.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Animal", "Cat", "Feline", "Pet"]);
    let cat = &merged[1];
    assert_eq!(cat.confidence, 90.0);
    assert_eq!(cat.instances.len(), 1);
    let parents: Vec<&str> = cat.parents.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(parents, ["Feline", "Animal", "Pet"]);
    // Feline was 75 but is Cat's parent: raised to Cat's 90.
    assert_eq!(merged[2].confidence, 90.0);
    assert!(merged.iter().all(|l| l.confidence == 90.0));
}

#[test]
fn merged_local_answer_keeps_parents_above_children() {
    use imgtag::taxonomy::LocalNames;
    let options = ModelOptions::default();
    for file in ["astronaut.jpg", "chelsea.png", "coffee.jpg", "rocket.jpg"] {
        let labels = model().detect_bytes_with(&sample(file), &options).unwrap();
        for l in &labels {
            for p in &l.parents {
                let parent = labels.iter().find(|x| x.name == p.name);
                if parent.is_none() && LocalNames::shipped().is_parent_only(&p.name) {
                    continue; // a parent only (Domestic Cat), never a label
                }
                let parent = parent.unwrap_or_else(|| panic!("{file}: {} missing", p.name));
                assert!(
                    parent.confidence >= l.confidence,
                    "{file}: {p:?} < {}",
                    l.name
                );
            }
        }
        let mut names: Vec<String> = labels.iter().map(|l| l.name.to_lowercase()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), labels.len(), "{file}: duplicate names");
    }
    let chelsea = model()
        .detect_bytes_with(&sample("chelsea.png"), &options)
        .unwrap();
    let cat = chelsea.iter().find(|l| l.name == "Cat").unwrap();
    // Both models: the classifier's parents and the detector's box.
    assert!(cat.parents.iter().any(|p| p.name == "Feline"));
    assert_eq!(cat.instances.len(), 1, "{cat:?}");
    assert!(local::is_current_version(Some(local::MODEL_VERSION)));
    assert!(!local::is_current_version(Some("imgtag-mobilenet_v2-1")));
    assert!(!local::is_current_version(None));
}

// -------------------------------------------------------------- end to end

fn imgtag(home: &Path, args: &[&str]) -> std::process::Output {
    let config = home.join("empty-config.toml");
    std::fs::write(&config, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run imgtag")
}

#[test]
fn tag_local_finds_a_person_and_retags_classifier_only_results() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bucket.path().join("uploads")).unwrap();
    std::fs::write(
        bucket.path().join("uploads/astronaut.jpg"),
        sample("astronaut.jpg"),
    )
    .unwrap();
    let b = bucket.path().to_str().unwrap();
    let args = ["tag", "--bucket", b, "--all", "--detector", "local"];
    let out = imgtag(home.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = bucket.path().join("metadata/astronaut.jpg.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let person = doc["Labels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["Name"] == "Person")
        .unwrap_or_else(|| panic!("no Person: {doc}"));
    let instance = &person["Instances"][0];
    for field in ["Width", "Height", "Left", "Top"] {
        let v = instance["BoundingBox"][field].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{field} {v}");
    }
    assert!(instance["Confidence"].as_f64().unwrap() >= 55.0);
    assert_eq!(doc["LabelModelVersion"], local::MODEL_VERSION);

    // Same request: skipped.
    let again = imgtag(home.path(), &args);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 tagged, 1 unchanged"));
    // A result of the classifier alone is not the same request: re-tagged.
    doc["LabelModelVersion"] = "imgtag-mobilenet_v2-1".into();
    std::fs::write(&meta, serde_json::to_vec(&doc).unwrap()).unwrap();
    let old = imgtag(home.path(), &args);
    let summary = String::from_utf8_lossy(&old.stderr);
    assert!(summary.contains("1 tagged, 0 unchanged"), "{summary}");
}

// -------------------------------------------------------------- evaluation

/// The licensed evaluation set (`assets/eval/`): Person (with a box) on
/// every photo with people, and every expected label found, as today; the
/// classifier alone finds fewer (printed for comparison).
#[test]
fn evaluation_set_finds_people_and_expected_labels() {
    check_evaluation(model());
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_engine_passes_the_evaluation_set() {
    check_evaluation(ort_model());
}

/// Expected labels the shipped models find on the evaluation set (both
/// engines), and the photos they give no label at all.
const FOUND_FLOOR: usize = 48;
const UNLABELLED_CEILING: usize = 6;

fn check_evaluation(model: &LocalModel) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("assets/eval/expected.json")).unwrap())
            .unwrap();
    let options = ModelOptions {
        min_confidence: expected["min_confidence"].as_f64().unwrap() as f32,
        ..ModelOptions::default()
    };
    let (mut wanted, mut found, mut classifier_found) = (0, 0, 0);
    // Expected labels found on the held-out half (odd photos), of wanted.
    let mut held_out = (0, 0);
    // Photos with people, and those where a Person was boxed.
    let mut people = (0, 0);
    let mut missing = Vec::new();
    for (index, photo) in expected["photos"].as_array().unwrap().iter().enumerate() {
        let path = photo["path"].as_str().unwrap();
        let bytes = std::fs::read(root.join(path)).unwrap();
        let labels = model.detect_bytes_with(&bytes, &options).unwrap();
        let alone = model.classify_bytes(&bytes, &options).unwrap();
        let has = |name: &str| labels.iter().any(|l| l.name == name);
        if photo["people"].as_bool().unwrap() {
            people.0 += 1;
            let person = labels.iter().find(|l| l.name == "Person");
            if person.is_some_and(|p| !p.instances.is_empty()) {
                people.1 += 1;
            } else {
                missing.push(format!("{path}: Person with a box"));
            }
        }
        for name in photo["labels"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            wanted += 1;
            classifier_found += usize::from(alone.iter().any(|l| l.name == name));
            if index % 2 == 1 {
                held_out.1 += 1;
                held_out.0 += usize::from(has(name));
            }
            if has(name) {
                found += 1;
            } else {
                missing.push(format!("{path}: {name}"));
            }
        }
    }
    eprintln!(
        "evaluation: {found} of {wanted} expected labels found ({classifier_found} by the \
         classifier alone; {} of {} on the held-out odd photos), people boxed in {} of {}; \
         missing {missing:?}",
        held_out.0, held_out.1, people.1, people.0
    );
    // Floors, not goals: what the shipped models find today (docs/detectors.md,
    // "Evaluation"). The photos added for issue 24's gaps (landscapes, a
    // skyline, a print of waves, a rocket, handwriting, a blurred clock)
    // are mostly missed; a change that finds fewer fails here.
    assert!(
        found >= FOUND_FLOOR,
        "{found} of {wanted}; missing {missing:?}"
    );
    assert!(
        people.1 + 1 >= people.0,
        "people {people:?}; missing {missing:?}"
    );
    assert!(classifier_found < found);
}

// ------------------------------------------------------------------ engines

/// Every photo of the evaluation set and the samples.
#[cfg(feature = "ort")]
fn evaluation_photos() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut photos = Vec::new();
    for dir in ["assets/eval", "assets/samples"] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
            .collect();
        names.sort();
        for path in names {
            photos.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(photos.len() >= 7, "{}", photos.len());
    photos
}

/// tract and onnxruntime give the same answer on every evaluation photo:
/// the same labels (but those within 1 point of MinConfidence, which the
/// engines' last digits may put on either side), confidences within 0.5,
/// the same instances with boxes within 0.005 of the image's side.
#[cfg(feature = "ort")]
#[test]
fn both_engines_give_the_same_labels_and_boxes() {
    const MIN: f32 = 55.0;
    let (tract, onnx) = (model(), ort_model());
    assert_eq!(tract.engine(), EngineKind::Tract);
    assert_eq!(onnx.engine(), EngineKind::OnnxRuntime);
    let mut compared = 0;
    for (path, bytes) in evaluation_photos() {
        let a = tract.detect_bytes(&bytes, MIN, None).unwrap();
        let b = onnx.detect_bytes(&bytes, MIN, None).unwrap();
        let clear = |l: &&Label| l.confidence >= MIN + 1.0;
        for (one, other, which) in [(&a, &b, "tract"), (&b, &a, "onnxruntime")] {
            for label in one.iter().filter(clear) {
                let twin = other.iter().find(|l| l.name == label.name);
                let twin = twin.unwrap_or_else(|| panic!("{path}: only {which} has {label:?}"));
                assert!(
                    (label.confidence - twin.confidence).abs() <= 0.5,
                    "{path}: {label:?} vs {twin:?}"
                );
                assert_eq!(
                    label.instances.len(),
                    twin.instances.len(),
                    "{path}: {label:?} vs {twin:?}"
                );
                for (x, y) in label.instances.iter().zip(&twin.instances) {
                    let (x, y) = (
                        x.bounding_box.clone().unwrap(),
                        y.bounding_box.clone().unwrap(),
                    );
                    for (g, w) in [
                        (x.left, y.left),
                        (x.top, y.top),
                        (x.width, y.width),
                        (x.height, y.height),
                    ] {
                        assert!(
                            (g - w).abs() <= 0.005,
                            "{path} {}: {x:?} vs {y:?}",
                            label.name
                        );
                    }
                }
                compared += 1;
            }
        }
    }
    assert!(compared >= 40, "only {compared} labels compared");
}

/// Asking for onnxruntime where it cannot be had is a clear error at
/// start-up, never a panic or a silent fallback to tract.
#[test]
fn onnxruntime_engine_that_cannot_load_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bucket.path().join("uploads")).unwrap();
    std::fs::write(bucket.path().join("uploads/a.jpg"), sample("astronaut.jpg")).unwrap();
    let config = home.path().join("empty-config.toml");
    std::fs::write(&config, "").unwrap();
    let b = bucket.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args([
            "tag",
            "--bucket",
            b,
            "--all",
            "--detector",
            "local",
            "--config",
        ])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("IMGTAG_ENGINE", "onnxruntime")
        .env(
            "ORT_DYLIB_PATH",
            home.path().join("no-such-libonnxruntime.so"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let want = if cfg!(feature = "ort") {
        "cannot load the onnxruntime library"
    } else {
        "built without the onnxruntime engine"
    };
    assert!(stderr.contains(want), "{stderr}");
    assert!(!bucket.path().join("metadata/a.jpg.json").exists());
}

/// The headline of each evaluation photo is a name a person would write
/// for it, as it is (`headlines` in `assets/eval/expected.json`), and
/// never a parent-only name (`Sporting Dog`, `Egyptian Cat`,
/// `assets/taxonomy/local_names.json`). Before the names' curation: 16 of
/// 23 (`Egyptian Cat`, `Toy Kite`, `Sporting Dog`, `Kite` for an osprey).
#[test]
fn evaluation_headlines_are_names_a_person_would_write() {
    check_headlines(model());
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_engine_headlines_are_names_a_person_would_write() {
    check_headlines(ort_model());
}

fn check_headlines(model: &LocalModel) {
    use imgtag::taxonomy::{LocalNames, Taxonomy};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("assets/eval/expected.json")).unwrap())
            .unwrap();
    let options = ModelOptions {
        min_confidence: expected["min_confidence"].as_f64().unwrap() as f32,
        ..ModelOptions::default()
    };
    let (mut right, mut wrong, mut unlabelled) = (0, Vec::new(), Vec::new());
    let photos = expected["photos"].as_array().unwrap();
    for photo in photos {
        let path = photo["path"].as_str().unwrap();
        let bytes = std::fs::read(root.join(path)).unwrap();
        let labels = model.detect_bytes_with(&bytes, &options).unwrap();
        for label in &labels {
            assert!(
                !LocalNames::shipped().is_parent_only(&label.name),
                "{path}: parent-only {label:?}"
            );
        }
        let Some(headline) = imgtag::headline::headline(&labels, Taxonomy::shipped()) else {
            unlabelled.push(path.to_string());
            continue;
        };
        let name = headline.name(&labels);
        let ok = photo["headlines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().eq_ignore_ascii_case(name));
        if ok {
            right += 1;
        } else {
            wrong.push(format!(
                "{path}: {name} {:.1}",
                headline.confidence(&labels)
            ));
        }
    }
    eprintln!(
        "headlines a person would write: {right} of {} ({:.0}%); not: {wrong:?}; \
         no label at all: {unlabelled:?}",
        photos.len(),
        100.0 * f64::from(right) / photos.len() as f64
    );
    assert!(right >= 20, "{right} of {}: {wrong:?}", photos.len());
    assert!(
        unlabelled.len() <= UNLABELLED_CEILING,
        "no label: {unlabelled:?}"
    );
}

/// Scenes on real photos, from what both models saw: the kitchen's oven
/// and dishwasher make a Kitchen › Room › Indoors, the kites a Sky ›
/// Outdoors, the parked cars a Road; each as sure as its evidence (never
/// a fixed 100), none without evidence. A sure scene does not hide the
/// subject: the headline is Kite, not Sky.
#[test]
fn scenes_come_from_what_the_models_see() {
    let taxonomy = imgtag::taxonomy::Taxonomy::shipped();
    let options = ModelOptions {
        min_confidence: 55.0,
        ..ModelOptions::default()
    };
    let detect = |file: &str| {
        let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        model().detect_bytes_with(&bytes, &options).unwrap()
    };
    let find = |labels: &[Label], name: &str| {
        labels
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {labels:?}"))
    };
    let parents = |l: &Label| l.parents.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let headline = |labels: &[Label]| {
        imgtag::headline::headline(labels, taxonomy)
            .unwrap()
            .name(labels)
            .to_string()
    };

    let kitchen = detect("assets/eval/kitchen.jpg");
    let room = find(&kitchen, "Kitchen");
    assert_eq!(parents(&room), ["Room", "Indoors"]);
    assert!((55.0..100.0).contains(&room.confidence), "{room:?}");
    assert!(find(&kitchen, "Indoors").confidence >= room.confidence);
    assert!(!kitchen.iter().any(|l| l.name == "Outdoors"));
    assert_eq!(headline(&kitchen), "Oven");

    let kites = detect("assets/eval/kites-park.jpg");
    let sky = find(&kites, "Sky");
    assert_eq!(parents(&sky), ["Outdoors", "Nature"]);
    assert!(sky.confidence < 100.0);
    // Several kites make a sure sky; the headline is still the kite
    // (tests/headline.rs holds the rule for a sky surer than its subject).
    assert!(sky.confidence >= 85.0, "{sky:?}");
    assert_eq!(headline(&kites), "Kite");
    assert!(!kites.iter().any(|l| l.name == "Indoors"));

    // The third parked car scores 0.55 raw (0.549-0.553 by engine and
    // canvas), at the threshold: the Road is asked for at 50, where the
    // cars it rests on are all seen whatever the engine.
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/eval/basilica-cars.jpg"))
            .unwrap();
    let at_50 = ModelOptions {
        min_confidence: 50.0,
        ..ModelOptions::default()
    };
    let cars = model().detect_bytes_with(&bytes, &at_50).unwrap();
    let road = find(&cars, "Road");
    assert_eq!(parents(&road), ["Outdoors"]);
    // Parked cars, each a calibrated 57-62, make a Road no surer than a
    // review would accept without a look.
    assert!(road.confidence < 85.0, "{road:?}");
    // The subject, not the Road: the basilica (Building, the classifier's
    // 61.8 calibrated to 69) or the cars (the detector's 71.4, to 60).
    let subject = headline(&cars);
    assert!(["Building", "Car"].contains(&subject.as_str()), "{subject}");

    // No evidence, no scene.
    for file in ["assets/eval/samoyeds.jpg", "assets/eval/pizza.jpg"] {
        let labels = detect(file);
        for scene in ["Indoors", "Outdoors", "Nature", "Room", "Street", "City"] {
            assert!(
                !labels.iter().any(|l| l.name == scene),
                "{file}: {labels:?}"
            );
        }
    }
}

/// The reliability table (confidence band → share of labels right) of the
/// local detector on the evaluation set, every label it gives at 55 or
/// more judged (`wrong` and `unsure` in `assets/eval/expected.json`; the
/// rest right): raw scores on all photos, then calibrated confidences on
/// the training half (even photos, which the calibration was fitted on)
/// and on the held-out half (odd photos). Printed for the docs
/// (docs/detectors.md); asserted: calibrated labels at 70 or more (the
/// default review threshold) are right at least 95% of the time on the
/// held-out half, and labels at 85 or more on all photos.
#[test]
fn reliability_table_of_the_evaluation_set() {
    const BANDS: [(f32, f32); 4] = [(55.0, 70.0), (70.0, 85.0), (85.0, 95.0), (95.0, 100.1)];
    let options = ModelOptions {
        min_confidence: 55.0,
        ..ModelOptions::default()
    };
    let raw = model().with_calibration(Calibration::default());
    // Per column (raw all, calibrated even, calibrated odd), per band:
    // (right, total).
    let mut table = [[(0u32, 0u32); BANDS.len()]; 3];
    let mut confident_errors = Vec::new();
    // Raw labels at 70 or more on the held-out half: what calibration is
    // compared with.
    let mut raw_held_out = (0u32, 0u32);
    for Judged {
        index,
        path,
        bytes,
        wrong,
        unsure,
    } in judged_photos()
    {
        let calibrated = model().detect_bytes_with(&bytes, &options).unwrap();
        let uncalibrated = raw.detect_bytes_with(&bytes, &options).unwrap();
        for (column, labels) in [(0, &uncalibrated), (1 + index % 2, &calibrated)] {
            for label in labels.iter().filter(|l| !unsure.contains(&l.name)) {
                let right = !wrong.contains(&label.name);
                let band = BANDS
                    .iter()
                    .position(|&(lo, hi)| (lo..hi).contains(&label.confidence))
                    .unwrap();
                let cell = &mut table[column][band];
                cell.0 += u32::from(right);
                cell.1 += 1;
                if column == 0 && index % 2 == 1 && label.confidence >= 70.0 {
                    raw_held_out.0 += u32::from(right);
                    raw_held_out.1 += 1;
                }
                if column > 0 && !right && label.confidence >= 70.0 {
                    confident_errors
                        .push(format!("{path}: {} {:.1}", label.name, label.confidence));
                }
            }
        }
    }
    let mut text = String::from(
        "| confidence | raw, all photos | calibrated, training (even) | calibrated, held out (odd) |\n",
    );
    text.push_str("| --- | --- | --- | --- |\n");
    let cell = |(r, t): (u32, u32)| {
        if t == 0 {
            "-".to_string()
        } else {
            format!("{r}/{t} ({:.0}%)", 100.0 * f64::from(r) / f64::from(t))
        }
    };
    for (b, &(lo, hi)) in BANDS.iter().enumerate() {
        text.push_str(&format!(
            "| {lo:.0}-{:.0} | {} | {} | {} |\n",
            hi.min(100.0),
            cell(table[0][b]),
            cell(table[1][b]),
            cell(table[2][b])
        ));
    }
    let from = |column: usize, first: usize| {
        (first..BANDS.len()).fold((0, 0), |(r, t), b| {
            (r + table[column][b].0, t + table[column][b].1)
        })
    };
    let held_out = from(2, 1);
    eprintln!(
        "{text}at 70 or more: raw {:?} (held out {raw_held_out:?}), training {:?}, \
         held out {held_out:?}; calibrated errors at 70 or more: {confident_errors:?}",
        from(0, 1),
        from(1, 1)
    );
    let total: u32 = table[0].iter().map(|c| c.1).sum();
    assert!(total >= 100, "{total} labels judged");
    assert!(held_out.0 * 100 >= held_out.1 * 95, "{held_out:?}");
    let sure = (from(1, 2).0 + from(2, 2).0, from(1, 2).1 + from(2, 2).1);
    assert!(sure.0 * 100 >= sure.1 * 95, "{sure:?}");
}

/// One photo of the evaluation set with its judgements.
struct Judged {
    /// Its place in `expected.json`: even photos train, odd are held out.
    index: usize,
    path: String,
    bytes: Vec<u8>,
    /// Names judged wrong for it, and names that cannot be judged.
    wrong: Vec<String>,
    unsure: Vec<String>,
}

/// The evaluation set's photos with their judgements.
fn judged_photos() -> Vec<Judged> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("assets/eval/expected.json")).unwrap())
            .unwrap();
    let names = |photo: &serde_json::Value, key: &str| -> Vec<String> {
        photo[key].as_array().map_or_else(Vec::new, |a| {
            a.iter().map(|v| v.as_str().unwrap().to_string()).collect()
        })
    };
    expected["photos"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, photo)| {
            let path = photo["path"].as_str().unwrap().to_string();
            Judged {
                index,
                bytes: std::fs::read(root.join(&path)).unwrap(),
                path,
                wrong: names(photo, "wrong"),
                unsure: names(photo, "unsure"),
            }
        })
        .collect()
}

/// The shipped calibration (`assets/model/calibration.json`) is the fit of
/// each model's raw labels at 55 or more on the training half (even
/// photos), judged as the reliability table judges them; the odd photos
/// are held out. `IMGTAG_WRITE_CALIBRATION=1` writes the fit instead
/// (after a change to the models, the names or the judgements).
#[test]
fn shipped_calibration_is_the_fit_of_the_training_half() {
    let raw = model().with_calibration(Calibration::default());
    let options = ModelOptions {
        min_confidence: 55.0,
        ..ModelOptions::default()
    };
    let (mut classifier, mut detector) = (Vec::new(), Vec::new());
    for Judged {
        index,
        bytes,
        wrong,
        unsure,
        ..
    } in judged_photos()
    {
        if index % 2 == 1 {
            continue;
        }
        let answer = raw.detect_bytes_with(&bytes, &options).unwrap();
        let classified = raw.classify_bytes(&bytes, &options).unwrap();
        let img = imaging::decode(&bytes, &DecodeLimits::default()).unwrap();
        let mut tensor = vec![0f32; TENSOR_LEN];
        let found = raw.detector().detect(&img, 55.0, &mut tensor).unwrap();
        // With the classifier's parents, as the merged answer has them.
        let detected = raw.merge(Vec::new(), found, None);
        // Each label of the answer counts for the model whose score it
        // shows (scenes and text for neither): a detector's label the
        // classifier outscored is never seen.
        let score = |labels: &[Label], name: &str| {
            labels.iter().find(|l| l.name == name).map(|l| l.confidence)
        };
        for l in answer.iter().filter(|l| !unsure.contains(&l.name)) {
            let sample = (l.confidence, !wrong.contains(&l.name));
            if score(&classified, &l.name) == Some(l.confidence) {
                classifier.push(sample);
            } else if score(&detected, &l.name) == Some(l.confidence) {
                detector.push(sample);
            }
        }
    }
    let fitted = Calibration {
        classifier: Curve::fit(&classifier),
        detector: Curve::fit(&detector),
    };
    eprintln!(
        "fitted on {} classifier and {} detector labels: {fitted:?}",
        classifier.len(),
        detector.len()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/model/calibration.json");
    if std::env::var_os("IMGTAG_WRITE_CALIBRATION").is_some() {
        let how = "each local model's labels at 55 or more on the even photos of \
                   assets/eval/expected.json (tract), judged by its wrong and unsure lists; \
                   see docs/detectors.md, Calibration";
        std::fs::write(&path, fitted.to_json(how)).unwrap();
    }
    let shipped = Calibration::shipped().unwrap();
    for (got, want) in [
        (&fitted.classifier, &shipped.classifier),
        (&fitted.detector, &shipped.detector),
    ] {
        let (got, want) = (got.segments(), want.segments());
        assert_eq!(got.len(), want.len(), "fitted {got:?}, shipped {want:?}");
        for (g, w) in got.iter().zip(want) {
            let close = (g.from, g.to) == (w.from, w.to)
                && (g.low - w.low).abs() < 0.5
                && (g.high - w.high).abs() < 0.5;
            assert!(close, "fitted {got:?}, shipped {want:?}");
        }
    }
}
