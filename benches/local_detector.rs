//! Throughput of the local label detector, end to end (JPEG decode ->
//! preprocess -> MobileNetV2 inference -> labels), measured with
//! `std::time` over a folder of generated photo-sized JPEGs.
//!
//! Run with `cargo bench --bench local_detector`. Set `IMGTAG_BENCH_IMAGES`
//! to change the number of generated photos (default 60).

use std::io::Cursor;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, RgbImage, imageops};
use imgtag::detection::local::{DetectOptions, LocalModel};
use imgtag::imaging::{self, DecodeLimits, TENSOR_LEN};

const SAMPLES: [&str; 4] = ["chelsea.png", "coffee.jpg", "astronaut.jpg", "rocket.jpg"];

/// Deterministic photo-like JPEGs: each sample cropped, maybe mirrored and
/// scaled so that its longer side is between 1024 and 2048 px.
fn generate_photos(dir: &Path, count: usize) -> Vec<std::path::PathBuf> {
    let sources: Vec<RgbImage> = SAMPLES
        .iter()
        .map(|name| {
            let path = format!("{}/assets/samples/{name}", env!("CARGO_MANIFEST_DIR"));
            image::open(&path).expect("sample decodes").into_rgb8()
        })
        .collect();
    (0..count)
        .map(|i| {
            let src = &sources[i % sources.len()];
            let (w, h) = src.dimensions();
            // Crop 80..100% of each side, offset varying with i.
            let cw = w * (80 + (i as u32 * 7) % 21) / 100;
            let ch = h * (80 + (i as u32 * 13) % 21) / 100;
            let x = (w - cw) * ((i as u32 * 3) % 5) / 4;
            let y = (h - ch) * ((i as u32 * 5) % 5) / 4;
            let mut img = imageops::crop_imm(src, x, y, cw, ch).to_image();
            if i % 2 == 1 {
                img = imageops::flip_horizontal(&img);
            }
            let long = 1024 + (i as u32 * 211) % 1025;
            let (tw, th) = if cw >= ch {
                (long, (long * ch / cw).max(1))
            } else {
                ((long * cw / ch).max(1), long)
            };
            let img = imageops::resize(&img, tw, th, imageops::FilterType::Triangle);
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut Cursor::new(&mut bytes), 85)
                .encode_image(&DynamicImage::ImageRgb8(img))
                .expect("encode");
            let path = dir.join(format!("photo-{i:03}.jpg"));
            std::fs::write(&path, bytes).expect("write photo");
            path
        })
        .collect()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Stages {
    decode: Vec<Duration>,
    preprocess: Vec<Duration>,
    inference: Vec<Duration>,
}

/// (a) one image at a time on one thread.
fn sequential(
    model: &LocalModel,
    images: &[Vec<u8>],
    options: &DetectOptions,
) -> (Duration, Stages) {
    let mut stages = Stages {
        decode: Vec::new(),
        preprocess: Vec::new(),
        inference: Vec::new(),
    };
    let mut tensor = vec![0f32; TENSOR_LEN];
    let start = Instant::now();
    for bytes in images {
        let t = Instant::now();
        let img = imaging::decode(bytes, &options.limits).expect("decode");
        stages.decode.push(t.elapsed());
        let t = Instant::now();
        imaging::preprocess(&img, &mut tensor).expect("preprocess");
        stages.preprocess.push(t.elapsed());
        let t = Instant::now();
        let probs = model.classify(&tensor).expect("inference");
        let labels = model.labels(&probs, options.min_confidence, options.max_labels);
        stages.inference.push(t.elapsed());
        std::hint::black_box(labels);
    }
    (start.elapsed(), stages)
}

/// (b) the library's code path: `workers` threads, each doing everything.
fn workers(model: &LocalModel, images: &[Vec<u8>], options: &DetectOptions, n: usize) -> Duration {
    let start = Instant::now();
    let results = model.detect_many(images, n, options);
    let elapsed = start.elapsed();
    assert!(results.iter().all(Result::is_ok));
    elapsed
}

/// (c) a two-stage pipeline: one thread decodes and preprocesses, the other
/// runs inference.
fn pipeline(model: &LocalModel, images: &[Vec<u8>], options: &DetectOptions) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<f32>>(4);
        scope.spawn(move || {
            for bytes in images {
                let img = imaging::decode(bytes, &options.limits).expect("decode");
                let mut tensor = vec![0f32; TENSOR_LEN];
                imaging::preprocess(&img, &mut tensor).expect("preprocess");
                if tx.send(tensor).is_err() {
                    break;
                }
            }
        });
        for tensor in rx {
            let probs = model.classify(&tensor).expect("inference");
            std::hint::black_box(model.labels(&probs, options.min_confidence, options.max_labels));
        }
    });
    start.elapsed()
}

fn best_of<F: FnMut() -> Duration>(runs: usize, mut f: F) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let count: usize = std::env::var("IMGTAG_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
        .max(4);
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let paths = generate_photos(dir.path(), count);
    let images: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let total_bytes: usize = images.iter().map(Vec::len).sum();
    let mut pixels: Vec<u64> = images
        .iter()
        .map(|b| {
            let (w, h) = imaging::dimensions(b).unwrap();
            u64::from(w) * u64::from(h)
        })
        .collect();
    pixels.sort();
    println!(
        "generated {count} JPEGs in {:.1} s: {:.0} KB average, median {:.1} MP",
        t.elapsed().as_secs_f64(),
        total_bytes as f64 / count as f64 / 1024.0,
        pixels[pixels.len() / 2] as f64 / 1e6
    );

    let t = Instant::now();
    let model = LocalModel::load().expect("model loads");
    println!("model load: {:.0} ms", ms(t.elapsed()));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cores: {cores}; load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // Warm up (page in the model weights, allocate buffers).
    let options = DetectOptions::default();
    let _ = sequential(&model, &images[..4], &options);

    // Inference only.
    let mut tensor = vec![0f32; TENSOR_LEN];
    let img = imaging::decode(&images[0], &DecodeLimits::default()).unwrap();
    imaging::preprocess(&img, &mut tensor).unwrap();
    let runs = 40;
    let inference_only = best_of(2, || {
        let t = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(model.logits(&tensor).unwrap());
        }
        t.elapsed()
    }) / runs;

    let n = images.len() as f64;
    let mut stages = None;
    let seq = best_of(2, || {
        let (d, s) = sequential(&model, &images, &options);
        stages = Some(s);
        d
    });
    let two_workers = best_of(2, || workers(&model, &images, &options, 2));
    let piped = best_of(2, || pipeline(&model, &images, &options));
    let mut s = stages.expect("ran");

    let rate = |d: Duration| n / d.as_secs_f64();
    println!();
    println!("| mode                                   | images/s | ms/image | vs (a) |");
    println!("|----------------------------------------|---------:|---------:|-------:|");
    for (name, d) in [
        ("(a) sequential, 1 thread", seq),
        ("(b) detect_many, 2 workers (library)", two_workers),
        ("(c) pipeline: decode thread -> infer", piped),
    ] {
        println!(
            "| {name:38} | {:8.1} | {:8.2} | {:5.2}x |",
            rate(d),
            ms(d) / n,
            seq.as_secs_f64() / d.as_secs_f64()
        );
    }
    println!();
    println!("per-image latency, medians over the sequential run:");
    println!("| stage                      | median ms |");
    println!("|----------------------------|----------:|");
    println!(
        "| decode (JPEG, full size)   | {:9.2} |",
        ms(median(&mut s.decode))
    );
    println!(
        "| preprocess (resize+norm)   | {:9.2} |",
        ms(median(&mut s.preprocess))
    );
    println!(
        "| inference + labels         | {:9.2} |",
        ms(median(&mut s.inference))
    );
    println!(
        "| inference only (same img)  | {:9.2} |",
        ms(inference_only)
    );
    println!();
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
