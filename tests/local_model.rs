//! The local label detector end to end: real decoding, real preprocessing,
//! real MobileNetV2 inference with tract, compared with onnxruntime's
//! reference output in `assets/model/reference.json`.

use crate::common;
use common::models::tract as model;
use std::collections::HashMap;
use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use imgtag::contract::Label;
use imgtag::detection::calibration::Calibration;
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{LocalModel, MODEL_VERSION, ModelOptions, NUM_CLASSES};
use imgtag::imaging::{self, DecodeLimits, ImagingError, TENSOR_LEN};

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/assets/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn reference() -> serde_json::Value {
    let path = format!("{}/assets/model/reference.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn reference_sample(file: &str) -> serde_json::Value {
    reference()["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["file"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("{file} not in reference.json"))
        .clone()
}

fn tensor_of(bytes: &[u8]) -> Vec<f32> {
    let img = imaging::decode(bytes, &DecodeLimits::default()).unwrap();
    let mut tensor = vec![0f32; TENSOR_LEN];
    imaging::preprocess(&img, &mut tensor).unwrap();
    tensor
}

fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx
}

fn by_name(labels: &[Label]) -> HashMap<&str, &Label> {
    labels.iter().map(|l| (l.name.as_str(), l)).collect()
}

fn parent_names(label: &Label) -> Vec<&str> {
    label.parents.iter().map(|p| p.name.as_str()).collect()
}

// ---------------------------------------------------------------- model

#[test]
fn model_is_send_sync_and_versioned() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LocalModel>();
    assert!(MODEL_VERSION.starts_with("imgtag-mobilenet_v2-"));
}

#[test]
fn chelsea_is_a_cat_with_parents() {
    // The classifier alone: its labels are exactly its hierarchy (the merge
    // with the object detector is tested in tests/yolox.rs).
    let options = ModelOptions {
        min_confidence: 55.0,
        ..ModelOptions::default()
    };
    let labels = model()
        .classify_bytes(&sample("chelsea.png"), &options)
        .unwrap();
    let names = by_name(&labels);
    for required in ["Cat", "Animal"] {
        assert!(
            names.contains_key(required),
            "{required} missing: {labels:#?}"
        );
    }
    let cat = names["Cat"];
    let cat_parents = parent_names(cat);
    for ancestor in ["Feline", "Mammal", "Animal"] {
        assert!(
            cat_parents.contains(&ancestor),
            "Cat parents {cat_parents:?}"
        );
        // An ancestor is at least as likely as its descendant, so it passes too.
        assert!(names[ancestor].confidence >= cat.confidence);
    }
    // Nearest first: Feline before Mammal before Animal.
    let pos = |n: &str| cat_parents.iter().position(|p| *p == n).unwrap();
    assert!(pos("Feline") < pos("Mammal") && pos("Mammal") < pos("Animal"));
    assert!(names["Animal"].parents.is_empty(), "Animal is a root");
    for label in &labels {
        // Every label's parents are exactly its ancestors in the hierarchy.
        let node = (0..model().hierarchy().len())
            .find(|&i| model().hierarchy().name(i) == Some(label.name.as_str()))
            .unwrap();
        assert_eq!(
            parent_names(label),
            model().hierarchy().ancestor_names(node)
        );
        assert!(label.aliases.is_empty() && label.categories.is_empty());
        assert!(label.instances.is_empty());
    }
}

#[test]
fn preprocessing_matches_reference_statistics() {
    for file in ["chelsea.png", "coffee.jpg", "astronaut.jpg", "rocket.jpg"] {
        let tensor = tensor_of(&sample(file));
        let reference = reference_sample(file);
        let plane = TENSOR_LEN / 3;
        for c in 0..3 {
            let mean: f64 = tensor[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / plane as f64;
            let want = reference["input_mean_per_channel"][c].as_f64().unwrap();
            // Pillow's resizer rounds to u8 twice; ours once: ~1/255 at most.
            assert!(
                (mean - want).abs() < 0.01,
                "{file} channel {c}: mean {mean} vs reference {want}"
            );
        }
    }
}

#[test]
fn logits_agree_with_onnxruntime() {
    check_logits(model());
}

/// The onnxruntime engine against the same reference (the library is
/// required: `.ci/run` sets `ORT_DYLIB_PATH`).
#[cfg(feature = "ort")]
#[test]
fn onnxruntime_engine_logits_agree_with_the_reference() {
    let model = LocalModel::load_with(EngineChoice::Exactly(EngineKind::OnnxRuntime))
        .unwrap_or_else(|e| panic!("feature `ort` needs the onnxruntime library: {e}"));
    assert_eq!(model.engine(), EngineKind::OnnxRuntime);
    check_logits(&model);
}

fn check_logits(model: &LocalModel) {
    let tolerance = reference()["suggested_tolerance"]["logit_abs_if_resizer_differs"]
        .as_f64()
        .unwrap() as f32;
    for file in ["chelsea.png", "coffee.jpg", "astronaut.jpg", "rocket.jpg"] {
        let logits = model.logits(&tensor_of(&sample(file))).unwrap();
        assert_eq!(logits.len(), NUM_CLASSES);
        let reference = reference_sample(file);
        let want: Vec<(usize, f32)> = reference["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["index"].as_u64().unwrap() as usize,
                    e["logit"].as_f64().unwrap() as f32,
                )
            })
            .collect();
        let got = top_k(&logits, 5);
        assert_eq!(got[0], want[0].0, "{file}: top-1 {got:?} vs {want:?}");
        let overlap = want.iter().filter(|(i, _)| got.contains(i)).count();
        assert!(overlap >= 4, "{file}: top-5 {got:?} vs {want:?}");
        for (index, logit) in &want {
            assert!(
                (logits[*index] - logit).abs() <= tolerance,
                "{file}: class {index} logit {} vs {logit}",
                logits[*index]
            );
        }
        // Softmax is consistent with the logits: same order, sums to 1.
        let probs = model.classify(&tensor_of(&sample(file))).unwrap();
        assert_eq!(top_k(&probs, 5), got);
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{file}: sum {sum}");
        let log_ratio = (probs[got[0]] / probs[got[1]]).ln();
        assert!((log_ratio - (logits[got[0]] - logits[got[1]])).abs() < 1e-3);
    }
}

#[test]
fn coffee_labels_are_consistent() {
    let bytes = sample("coffee.jpg");
    let all = model().detect_bytes(&bytes, 0.0, None).unwrap();
    let names = by_name(&all);
    assert!(names["Coffee"].confidence >= 55.0, "{:?}", names["Coffee"]);
    assert!(names["Beverage"].confidence >= names["Coffee"].confidence);
    assert!(names["Espresso"].confidence <= names["Coffee"].confidence);
    assert!(parent_names(names["Coffee"]).contains(&"Beverage"));
    for label in &all {
        assert!((0.0..=100.0).contains(&label.confidence), "{label:?}");
        for parent in &label.parents {
            // A parent-only name (Liquid, Domestic Cat) is never a label.
            let Some(p) = names.get(parent.name.as_str()) else {
                assert!(
                    imgtag::taxonomy::LocalNames::shipped().is_parent_only(&parent.name),
                    "{} missing",
                    parent.name
                );
                continue;
            };
            assert!(
                p.confidence >= label.confidence,
                "{} {} < child {} {}",
                p.name,
                p.confidence,
                label.name,
                label.confidence
            );
        }
    }
    // Sorted by confidence descending, then name.
    for pair in all.windows(2) {
        assert!(
            pair[0].confidence > pair[1].confidence
                || (pair[0].confidence == pair[1].confidence && pair[0].name < pair[1].name),
            "{:?} before {:?}",
            pair[0].name,
            pair[1].name
        );
    }
    // Names are unique.
    assert_eq!(names.len(), all.len());

    // MinConfidence.
    let above = model().detect_bytes(&bytes, 55.0, None).unwrap();
    assert!(above.iter().all(|l| l.confidence >= 55.0));
    let expected: Vec<&str> = all
        .iter()
        .filter(|l| l.confidence >= 55.0)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        above.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        expected
    );
    for required in ["Coffee", "Beverage"] {
        assert!(expected.contains(&required), "{expected:?}");
    }

    // MaxLabels: the best N after sorting.
    let two = model().detect_bytes(&bytes, 55.0, Some(2)).unwrap();
    assert_eq!(two, above[..2].to_vec());
    assert!(
        model()
            .detect_bytes(&bytes, 55.0, Some(0))
            .unwrap()
            .is_empty()
    );
    assert!(
        model()
            .detect_bytes(&bytes, 100.5, None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn labels_from_probabilities_sum_each_class_once() {
    // Raw sums: the calibration is tests/yolox.rs's.
    let raw = model().with_calibration(Calibration::default());
    let h = raw.hierarchy();
    let tabby = (0..NUM_CLASSES)
        .find(|&i| h.class_name(i) == Some("Tabby"))
        .unwrap();
    let espresso = (0..NUM_CLASSES)
        .find(|&i| h.class_name(i) == Some("Espresso"))
        .unwrap();
    let mut probs = vec![0f32; NUM_CLASSES];
    probs[tabby] = 0.6;
    probs[espresso] = 0.4;
    let labels = raw.labels(&probs, 1.0, None);
    let names = by_name(&labels);
    // Tabby reaches Animal through Cat and through Pet: counted once.
    assert_eq!(names["Animal"].confidence, 60.0);
    assert_eq!(names["Cat"].confidence, 60.0);
    // Tabby and Domestic Cat are parents only (assets/taxonomy/local_names.json).
    assert!(!names.contains_key("Tabby") && !names.contains_key("Domestic Cat"));
    assert!(names["Cat"].parents.iter().all(|p| p.name != "Tabby"));
    assert_eq!(names["Coffee"].confidence, 40.0);
    assert_eq!(names["Food"].confidence, 40.0);
    assert!(!names.contains_key("Vehicle"));
}

#[test]
fn detect_many_matches_one_at_a_time() {
    let images = vec![
        sample("chelsea.png"),
        b"not an image".to_vec(),
        sample("coffee.jpg"),
        sample("rocket.jpg"),
        sample("astronaut.jpg"),
    ];
    let options = ModelOptions::default();
    let many = model().detect_many(&images, 2, &options);
    assert_eq!(many.len(), images.len());
    for (bytes, result) in images.iter().zip(&many) {
        let single = model().detect_bytes_with(bytes, &options);
        match (single, result) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b),
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
            (a, b) => panic!("{a:?} vs {b:?}"),
        }
    }
    assert!(many[1].is_err());
}

// ---------------------------------------------------------------- decoding

fn test_image(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut out, format)
        .unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG signature and a valid IHDR chunk announcing `w` x `h` RGB, then a
/// truncated IDAT.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    out.extend_from_slice(&1000u32.to_be_bytes());
    out.extend_from_slice(b"IDAT\x78\x9c");
    out
}

#[test]
fn sniff_uses_magic_bytes() {
    let img = test_image(32, 24);
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        assert_eq!(imaging::sniff(&encode(&img, format)), Some(format));
    }
    assert_eq!(imaging::sniff(b""), None);
    assert_eq!(imaging::sniff(b"<html>hello</html>"), None);
    assert_eq!(imaging::sniff(b"\xFF\xD8"), None);
}

#[test]
fn every_supported_format_decodes() {
    let img = test_image(40, 30);
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        let bytes = encode(&img, format);
        assert_eq!(imaging::dimensions(&bytes), Ok((40, 30)), "{format:?}");
        let decoded = imaging::decode(&bytes, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(decoded.dimensions(), (40, 30), "{format:?}");
        if format != ImageFormat::Jpeg && format != ImageFormat::Gif {
            assert_eq!(decoded, img, "{format:?} is lossless");
        }
        let mut tensor = vec![0f32; TENSOR_LEN];
        imaging::preprocess(&decoded, &mut tensor).unwrap();
        assert!(tensor.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn text_named_jpg_is_not_an_image() {
    let bytes = b"This is a text file that someone named photo.jpg\n";
    assert_eq!(
        imaging::decode(bytes, &DecodeLimits::default()),
        Err(ImagingError::NotAnImage)
    );
    assert_eq!(imaging::dimensions(bytes), Err(ImagingError::NotAnImage));
    let err = model().detect_bytes(bytes, 55.0, None).unwrap_err();
    assert_eq!(err.code(), "NotAnImage");
}

#[test]
fn empty_input_is_not_an_image_and_says_it_is_empty() {
    let err = imaging::decode(b"", &DecodeLimits::default()).unwrap_err();
    assert_eq!(err, ImagingError::Empty);
    // The same stable code as any other non-image; a message that says why.
    assert_eq!(err.code(), "NotAnImage");
    assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
    assert_eq!(imaging::dimensions(b""), Err(ImagingError::Empty));
    let err = model().detect_bytes(b"", 55.0, None).unwrap_err();
    assert_eq!(err.code(), "NotAnImage");
}

#[test]
fn known_but_undecodable_formats_are_unsupported() {
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    assert!(matches!(
        imaging::decode(heic, &DecodeLimits::default()),
        Err(ImagingError::Unsupported(_))
    ));
}

#[test]
fn truncated_jpeg_is_corrupt() {
    let bytes = sample("coffee.jpg");
    let len = bytes.len();
    // Cut in the headers, and in the scan data (where the JPEG decoder
    // itself would fill the missing part with grey).
    for cut in [4, 20, 200, 600, len / 4, len / 2, len * 9 / 10, len - 2] {
        let result = imaging::decode(&bytes[..cut], &DecodeLimits::default());
        assert!(
            matches!(result, Err(ImagingError::Corrupt(_))),
            "cut at {cut}: {result:?}"
        );
    }
}

#[test]
fn bytes_after_the_jpeg_end_are_ignored() {
    let mut bytes = sample("coffee.jpg");
    bytes.extend_from_slice(b"\0\0trailing data some cameras append");
    let img = imaging::decode(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(img.dimensions(), (600, 400));
}

#[test]
fn damaged_inputs_never_panic() {
    let img = test_image(64, 48);
    let mut inputs = vec![sample("coffee.jpg"), sample("chelsea.png")];
    for format in [
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        inputs.push(encode(&img, format));
    }
    for bytes in &inputs {
        let len = bytes.len();
        let cuts = (1..24).map(|i| len * i / 24);
        for cut in cuts {
            let _ = imaging::decode(&bytes[..cut], &DecodeLimits::default());
            let _ = imaging::dimensions(&bytes[..cut]);
        }
        for i in 0..24 {
            let mut damaged = bytes.clone();
            let at = (i * 7919 + 13) % len;
            damaged[at] ^= 0x5A;
            if let Ok(decoded) = imaging::decode(&damaged, &DecodeLimits::default()) {
                let mut tensor = vec![0f32; TENSOR_LEN];
                let _ = imaging::preprocess(&decoded, &mut tensor);
            }
        }
    }
}

#[test]
fn one_pixel_png_is_too_small() {
    let bytes = encode(&test_image(1, 1), ImageFormat::Png);
    assert_eq!(
        imaging::decode(&bytes, &DecodeLimits::default()),
        Err(ImagingError::TooSmall {
            width: 1,
            height: 1,
            min_side: 16
        })
    );
    // The threshold is a parameter: Rekognition's is 80 px.
    let rekognition = DecodeLimits {
        min_side: DecodeLimits::REKOGNITION_MIN_SIDE,
        ..DecodeLimits::default()
    };
    let small = encode(&test_image(60, 200), ImageFormat::Png);
    assert!(imaging::decode(&small, &DecodeLimits::default()).is_ok());
    assert!(matches!(
        imaging::decode(&small, &rekognition),
        Err(ImagingError::TooSmall { width: 60, .. })
    ));
}

#[test]
fn decompression_bomb_header_is_rejected_before_allocating() {
    let bytes = png_header_only(20_000, 20_000);
    assert_eq!(imaging::dimensions(&bytes), Ok((20_000, 20_000)));
    let start = Instant::now();
    let result = imaging::decode(&bytes, &DecodeLimits::default());
    assert!(
        matches!(result, Err(ImagingError::TooLarge(_))),
        "{result:?}"
    );
    // Loose enough for a loaded 2-core runner (50 ms was a scheduler's
    // pause away from failing); the error variant is the real check.
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );

    // Within the side limits but over the pixel limit.
    let bytes = png_header_only(12_000, 12_000);
    assert!(matches!(
        imaging::decode(&bytes, &DecodeLimits::default()),
        Err(ImagingError::TooLarge(_))
    ));

    // A complete JPEG whose frame header is patched to claim 60000x60000:
    // rejected by the dimension check, through the JPEG decoder's header.
    let mut jpeg = encode(&test_image(32, 32), ImageFormat::Jpeg);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    assert_eq!(imaging::dimensions(&jpeg), Ok((60_000, 60_000)));
    let start = Instant::now();
    let result = imaging::decode(&jpeg, &DecodeLimits::default());
    assert!(
        matches!(result, Err(ImagingError::TooLarge(_))),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(500));

    // Tighter limits are honoured too.
    let limits = DecodeLimits {
        max_width: 300,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        imaging::decode(&sample("chelsea.png"), &limits),
        Err(ImagingError::TooLarge(_))
    ));
}

#[test]
fn preprocess_rejects_a_wrong_buffer() {
    let img = test_image(300, 200);
    let mut short = vec![0f32; 10];
    assert!(matches!(
        imaging::preprocess(&img, &mut short),
        Err(ImagingError::BadTensorLength { got: 10, .. })
    ));
    // Extreme aspect ratios do not panic.
    for (w, h) in [(16, 4000), (4000, 16), (224, 224), (17, 17)] {
        let mut tensor = vec![0f32; TENSOR_LEN];
        imaging::preprocess(&test_image(w, h), &mut tensor).unwrap();
    }
}

// ------------------------------------------------------- finding onnxruntime

/// The real library `.ci/test` installs (the onnxruntime wheel's
/// `capi/libonnxruntime.so.*`): the tests of feature `ort` need it.
#[cfg(feature = "ort")]
fn real_library() -> std::path::PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH").expect(
        "the tests of feature `ort` need ORT_DYLIB_PATH (the onnxruntime wheel's \
         capi/libonnxruntime.so.*, as .ci/test sets it)",
    );
    std::fs::canonicalize(path).unwrap()
}

/// `prefix/lib/python3.12/site-packages/onnxruntime/capi/` as `pip install`
/// lays it out, the library a link to the real one; beside it an older
/// Python without the package, and the provider library that is not it.
#[cfg(feature = "ort")]
fn pip_layout(prefix: &std::path::Path) -> std::path::PathBuf {
    let real = real_library();
    let name = real.file_name().unwrap();
    std::fs::create_dir_all(prefix.join("lib/python3.9/site-packages")).unwrap();
    let capi = prefix.join("lib/python3.12/site-packages/onnxruntime/capi");
    std::fs::create_dir_all(&capi).unwrap();
    std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"not it").unwrap();
    std::fs::write(capi.join("__init__.py"), b"").unwrap();
    std::os::unix::fs::symlink(&real, capi.join(name)).unwrap();
    capi.join(name)
}

#[cfg(feature = "ort")]
#[test]
fn auto_finds_onnxruntime_in_the_users_site_packages() {
    use imgtag::detection::engine::Search;
    let home = tempfile::tempdir().unwrap();
    let user_base = home.path().join(".local");
    let lib = pip_layout(&user_base);
    let search = Search {
        python_prefixes: vec![(user_base, "in the user's site-packages".into())],
        ..Search::default()
    };
    let found = search.locate().unwrap();
    assert_eq!(found.path, lib);
    assert_eq!(found.how, "in the user's site-packages");

    // A library on the loader's path (LD_LIBRARY_PATH) comes first; one
    // under /usr/lib-like directories only after the Python packages.
    let libdir = home.path().join("lib");
    std::fs::create_dir_all(&libdir).unwrap();
    std::os::unix::fs::symlink(real_library(), libdir.join("libonnxruntime.so")).unwrap();
    let loader = Search {
        loader_path: vec![libdir.clone()],
        ..search.clone()
    };
    assert_eq!(
        loader.locate().unwrap().path,
        libdir.join("libonnxruntime.so")
    );
    let system = Search {
        system_lib_dirs: vec![libdir.clone()],
        ..search.clone()
    };
    assert_eq!(system.locate().unwrap().path, lib);

    let resolution = EngineChoice::Auto.resolve_in(&search).unwrap();
    assert_eq!(resolution.kind, EngineKind::OnnxRuntime);
    assert!(resolution.notice.is_none());
    let version = resolution.version.unwrap();
    let file = lib.file_name().unwrap().to_str().unwrap();
    assert!(
        file.ends_with(&version),
        "the loaded version {version} is the wheel's ({file})"
    );
}

#[test]
fn auto_falls_back_to_tract_with_one_line_saying_how_to_get_onnxruntime() {
    use imgtag::detection::engine::Search;
    let home = tempfile::tempdir().unwrap();
    // A virtualenv without the package, a dangling link where the library
    // would be, and nothing else.
    let capi = home
        .path()
        .join("venv/lib/python3.12/site-packages/onnxruntime/capi");
    std::fs::create_dir_all(&capi).unwrap();
    std::os::unix::fs::symlink(
        home.path().join("gone"),
        capi.join("libonnxruntime.so.1.31.1"),
    )
    .unwrap();
    let search = Search {
        python_prefixes: vec![(home.path().join("venv"), "in the virtualenv".into())],
        loader_path: vec![home.path().to_path_buf()],
        ..Search::default()
    };
    assert!(search.locate().is_err());
    let resolution = EngineChoice::Auto.resolve_in(&search).unwrap();
    assert_eq!(resolution.kind, EngineKind::Tract);
    if cfg!(feature = "ort") {
        let notice = resolution.notice.expect("a fallback says so");
        assert!(!notice.contains('\n'), "one line: {notice}");
        assert!(
            notice.contains("pip install onnxruntime") && notice.contains("ORT_DYLIB_PATH"),
            "{notice}"
        );
        let err = EngineChoice::Exactly(EngineKind::OnnxRuntime)
            .resolve_in(&search)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no onnxruntime library found"), "{err}");
    }
}

/// `imgtag env` with only a virtualenv that has the wheel: onnxruntime,
/// the library's path and version, and why.
#[cfg(feature = "ort")]
#[test]
fn env_diagnostics_name_the_engine_library_version_and_why() {
    let home = tempfile::tempdir().unwrap();
    let venv = home.path().join("venv");
    let lib = pip_layout(&venv);
    let run = |envs: &[(&str, &std::ffi::OsStr)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imgtag"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", home.path())
            .arg("env")
            .args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };

    let (ok, text) = run(&[("VIRTUAL_ENV", venv.as_os_str())], &[]);
    assert!(ok, "{text}");
    let version =
        lib.file_name().unwrap().to_str().unwrap()["libonnxruntime.so.".len()..].to_string();
    for line in [
        "engine: onnxruntime".to_string(),
        "why: auto: the library was found in the active virtualenv (VIRTUAL_ENV)".into(),
        format!("library: {}", lib.display()),
        format!("version: {version}"),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }

    // ORT_DYLIB_PATH, when set, is the only place looked at: a wrong one
    // falls back under auto (with the notice) and fails when asked for.
    let gone = home.path().join("gone.so");
    let (ok, text) = run(&[("ORT_DYLIB_PATH", gone.as_os_str())], &[]);
    assert!(ok, "{text}");
    assert!(text.contains("engine: tract\n"), "{text}");
    assert!(text.contains("notice: using tract"), "{text}");
    let (ok, text) = run(
        &[("ORT_DYLIB_PATH", gone.as_os_str())],
        &["--engine", "onnxruntime"],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("engine: none"), "{text}");
    let (ok, text) = run(&[("IMGTAG_ENGINE", "tract".as_ref())], &[]);
    assert!(
        ok && text.contains("engine: tract\nwhy: asked for (--engine tract, IMGTAG_ENGINE"),
        "{text}"
    );
}
