//! Throughput of the local label detector (MobileNetV2 + YOLOX-Nano), per
//! engine, against the onnxruntime peer (`tools/ort_peer.py`: Python,
//! onnxruntime, Pillow, two worker processes, the same models and
//! preprocessing), on the same folder of photos in the same run:
//!
//! 1. per-stage latency per image, one thread: decode, preprocess (both
//!    models' inputs), inference of each model, labels and merge;
//! 2. `imgtag tag --detector local --all` end to end per size (index, read, decode,
//!    preprocess, infer, write the metadata), once per engine;
//! 3. the peer on the same folder, when a Python with onnxruntime and
//!    Pillow is found: `IMGTAG_PEER_PYTHON`, else the CI tools venv
//!    (`$IMGTAG_CI_TOOLS` or `$TMPDIR/imgtag-ci-tools`, see `.ci/run`);
//!    twice: its detector on imgtag's canvas (the ratio's yardstick), and
//!    on YOLOX's 416 square as its own demo runs it (the yardstick before
//!    the canvas, `--square`).
//!
//! The photos: the licensed photos of `assets/eval/` and `assets/samples/`
//! (7), each cropped, maybe mirrored and re-encoded as JPEG, in two
//! folders: small (500-580 px on the longer side, about 0.2 MP) and large
//! (1650-1800 px, about 2 MP), 120 files each by default
//! (`IMGTAG_BENCH_IMAGES`). Each end-to-end run reports its wall time and
//! the peak resident memory of its processes (each one's `VmHWM`, summed
//! over the peer's worker processes), in interleaved rounds (3 by default,
//! `IMGTAG_BENCH_ROUNDS`): each run's best and median, and its ratio to
//! the peer best to best and round by round. The onnxruntime engine needs feature `ort` and
//! `ORT_DYLIB_PATH`; without them its rows say why they are missing.
//!
//! Run: `ORT_DYLIB_PATH=... cargo bench --features ort --bench local_detector`
//! (`IMGTAG_BENCH_BIN` runs another `imgtag` binary than the one cargo
//! built beside the bench).

#[path = "common/measure.rs"]
mod measure;
use measure::median;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, RgbImage, imageops};
use imgtag::detection::calibration::Curve;
use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::{LocalModel, ModelOptions};
use imgtag::detection::yolox;
use imgtag::imaging::{self, TENSOR_LEN};

const PHOTOS: [&str; 7] = [
    "assets/eval/ascent.png",
    "assets/eval/camera.png",
    "assets/eval/raccoon.jpg",
    "assets/samples/astronaut.jpg",
    "assets/samples/chelsea.png",
    "assets/samples/coffee.jpg",
    "assets/samples/rocket.jpg",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Deterministic photo-sized JPEGs from the real photos: cropped to 75-100%
/// of each side, every other one mirrored, longer side in `long` (px).
fn make_photos(dir: &Path, count: usize, long: std::ops::Range<u32>) -> Vec<PathBuf> {
    let sources: Vec<RgbImage> = PHOTOS
        .iter()
        .map(|p| {
            image::open(root().join(p))
                .expect("photo decodes")
                .into_rgb8()
        })
        .collect();
    std::fs::create_dir_all(dir).expect("photo dir");
    (0..count)
        .map(|i| {
            let src = &sources[i % sources.len()];
            let (w, h) = src.dimensions();
            let k = i as u32;
            let cw = w * (75 + (k * 7) % 26) / 100;
            let ch = h * (75 + (k * 13) % 26) / 100;
            let x = (w - cw) * ((k * 3) % 5) / 4;
            let y = (h - ch) * ((k * 5) % 5) / 4;
            let mut img = imageops::crop_imm(src, x, y, cw, ch).to_image();
            if i % 2 == 1 {
                img = imageops::flip_horizontal(&img);
            }
            let long = long.start + (k * 211) % (long.end - long.start);
            let (tw, th) = if cw >= ch {
                (long, (long * ch / cw).max(1))
            } else {
                ((long * cw / ch).max(1), long)
            };
            let img = imageops::resize(&img, tw, th, imageops::FilterType::Triangle);
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut Cursor::new(&mut bytes), 80 + (i % 3) as u8 * 5)
                .encode_image(&DynamicImage::ImageRgb8(img))
                .expect("encode");
            let path = dir.join(format!("photo-{i:03}.jpg"));
            std::fs::write(&path, bytes).expect("write photo");
            path
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Median per-stage latency over `images`, one image at a time.
fn stages(model: &LocalModel, images: &[Vec<u8>]) -> Vec<(&'static str, Duration)> {
    let options = ModelOptions::default();
    let mut t = [(); 7].map(|()| Vec::new());
    let mut cls = vec![0f32; TENSOR_LEN];
    let mut det = Vec::with_capacity(yolox::TENSOR_LEN);
    for bytes in images {
        let s = Instant::now();
        let img = imaging::decode(bytes, &options.limits).expect("decode");
        t[0].push(s.elapsed());
        let s = Instant::now();
        std::hint::black_box(
            imaging::decode_for_size(bytes, &options.limits, 416).expect("decode"),
        );
        t[1].push(s.elapsed());
        let s = Instant::now();
        imaging::preprocess(&img, &mut cls).expect("preprocess");
        t[2].push(s.elapsed());
        let s = Instant::now();
        let (lb, canvas) = yolox::letterbox_into(&img, &mut det).expect("letterbox");
        t[3].push(s.elapsed());
        let s = Instant::now();
        let probs = model.classify(&cls).expect("classify");
        t[4].push(s.elapsed());
        let s = Instant::now();
        let raw = model.detector().raw(&det, canvas).expect("detect");
        t[5].push(s.elapsed());
        let s = Instant::now();
        let boxes = yolox::nms(yolox::decode(&raw, 0.55, canvas), yolox::NMS_IOU);
        let detected = model
            .detector()
            .classes()
            .labels(&boxes, &lb, 55.0, &Curve::identity());
        let classified = model.labels(&probs, 55.0, None);
        std::hint::black_box(model.merge(classified, detected, None));
        t[6].push(s.elapsed());
    }
    let names = [
        "decode (image crate, full size)",
        "  alternative: DCT-scaled decode",
        "preprocess classifier (224)",
        "preprocess detector (canvas)",
        "infer MobileNetV2",
        "infer YOLOX-Nano",
        "boxes, NMS, labels, merge",
    ];
    names.into_iter().zip(t.map(|v| median(&v))).collect()
}

/// One `imgtag tag --all --detector local` over `bucket` (its metadata
/// removed first) with `engine`; its wall time, or why it failed.
fn imgtag_run(bucket: &Path, engine: EngineKind) -> Result<Run, String> {
    let _ = std::fs::remove_dir_all(bucket.join("metadata"));
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = home.path().join("config.toml");
    std::fs::write(&config, "").map_err(|e| e.to_string())?;
    let start = Instant::now();
    let bin = std::env::var_os("IMGTAG_BENCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_imgtag")),
        PathBuf::from,
    );
    let mut cmd = Command::new(bin);
    cmd.args(["tag", "--all", "--detector", "local", "--bucket"])
        .arg(bucket)
        .arg("--config")
        .arg(&config)
        .env("HOME", home.path())
        .env("IMGTAG_ENGINE", engine.as_str());
    let (out, peak) = run_watched(cmd)?;
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.contains(" 0 failed") {
        return Err(stderr.lines().last().unwrap_or("failed").to_string());
    }
    Ok(Run { elapsed, peak })
}

/// One end-to-end run: wall time, and the peak resident memory of the
/// process and its children (each process's `VmHWM`, summed: the peer's
/// workers are processes, imgtag's are threads).
#[derive(Clone, Copy)]
struct Run {
    elapsed: Duration,
    peak: u64,
}

/// Runs `cmd` to the end, sampling its process tree's peaks every 5 ms.
fn run_watched(mut cmd: Command) -> Result<(std::process::Output, u64), String> {
    use std::collections::HashMap;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Drained on threads so a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let mut peaks: HashMap<u32, u64> = HashMap::new();
    let status = loop {
        for pid in tree(child.id()) {
            if let Some(hwm) = vm_hwm(pid) {
                let p = peaks.entry(pid).or_default();
                *p = (*p).max(hwm);
            }
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    Ok((output, peaks.values().sum()))
}

/// `root` and every process descending from it (Linux's /proc).
fn tree(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The field after the parenthesised name: state, then ppid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    found
}

/// A process's peak resident set, bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A Python that imports onnxruntime and PIL, if any.
fn peer_python() -> Option<PathBuf> {
    let tools = std::env::var_os("IMGTAG_CI_TOOLS").map_or_else(
        || std::env::temp_dir().join("imgtag-ci-tools"),
        PathBuf::from,
    );
    let candidates = [
        std::env::var_os("IMGTAG_PEER_PYTHON").map(PathBuf::from),
        Some(tools.join("bin/python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import onnxruntime, PIL"])
            .env("PYTHONPATH", tools.join("lib"))
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The peer on `photos`; with `square`, its detector on YOLOX's own
/// 416x416 square instead of imgtag's canvas.
fn peer_run(python: &Path, photos: &Path, square: bool) -> Result<Run, String> {
    let out_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut cmd = Command::new(python);
    cmd.arg(root().join("tools/ort_peer.py"))
        .arg(photos)
        .arg(out_dir.path())
        .args(["--workers", "2"]);
    if square {
        cmd.arg("--square");
    }
    let (out, peak) = run_watched(cmd)?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(Run { elapsed, peak })
}

/// What skipping the detector when the classifier is sure would cost on
/// the evaluation photos: how many are "sure" and how many of those lose
/// labels with boxes.
fn skip_detector_impact(model: &LocalModel) {
    for threshold in [0.5f32, 0.8, 0.9] {
        let (mut sure, mut lose) = (0, Vec::new());
        for path in PHOTOS {
            let bytes = std::fs::read(root().join(path)).expect("photo");
            let img = imaging::decode(&bytes, &Default::default()).expect("decode");
            let mut t = vec![0f32; TENSOR_LEN];
            imaging::preprocess(&img, &mut t).expect("preprocess");
            let top = model
                .classify(&t)
                .expect("classify")
                .into_iter()
                .fold(0f32, f32::max);
            if top >= threshold {
                sure += 1;
                let labels = model.detect_bytes(&bytes, 55.0, None).expect("detect");
                let boxed: Vec<_> = labels
                    .iter()
                    .filter(|l| !l.instances.is_empty())
                    .map(|l| l.name.clone())
                    .collect();
                if !boxed.is_empty() {
                    lose.push(format!("{path}: {boxed:?}"));
                }
            }
        }
        println!(
            "skip the detector when the top class >= {threshold}: {sure} of {} photos \
             skipped, {} of them would lose boxed labels {lose:?}",
            PHOTOS.len(),
            lose.len()
        );
    }
}

#[allow(clippy::too_many_lines)]
/// The two sizes the end-to-end comparison runs on: name, longer side (px).
const SIZES: [(&str, std::ops::Range<u32>); 2] = [
    ("small (about 0.2 MP)", 500..580),
    ("large (about 2 MP)", 1650..1800),
];

fn main() {
    let count: usize = std::env::var("IMGTAG_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
        .max(8);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores: {cores}; load average at start: {}", loadavg());
    let mut engines = vec![EngineKind::Tract];
    match EngineChoice::Exactly(EngineKind::OnnxRuntime).resolve() {
        Ok(_) => engines.push(EngineKind::OnnxRuntime),
        Err(e) => println!("onnxruntime engine: not measured ({e})"),
    }
    // One bucket per size, each with its own uploads/.
    let sets: Vec<_> = SIZES
        .iter()
        .map(|(name, long)| {
            let bucket = tempfile::tempdir().expect("temp dir");
            let t = Instant::now();
            let paths = make_photos(&bucket.path().join("uploads"), count, long.clone());
            let images: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
            let mut pixels: Vec<u64> = images
                .iter()
                .map(|b| {
                    let (w, h) = imaging::dimensions(b).unwrap();
                    u64::from(w) * u64::from(h)
                })
                .collect();
            pixels.sort();
            println!(
                "{name}: {count} JPEGs from {} licensed photos in {:.1} s: {:.0} KB average, \
                 median {:.2} MP",
                PHOTOS.len(),
                t.elapsed().as_secs_f64(),
                images.iter().map(Vec::len).sum::<usize>() as f64 / count as f64 / 1024.0,
                pixels[pixels.len() / 2] as f64 / 1e6
            );
            (*name, bucket, images)
        })
        .collect();

    // 1. Per-stage latency, on 20 photos of each size, each size its column.
    let mut table: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    for &engine in &engines {
        let t = Instant::now();
        let model = LocalModel::load_with(EngineChoice::Exactly(engine)).expect("model loads");
        println!("{engine}: both models loaded in {:.0} ms", ms(t.elapsed()));
        for (size, _, images) in &sets {
            let sample = &images[..images.len().min(20)];
            // Warm up: the first image of each canvas makes its plan on tract.
            let _ = stages(&model, &sample[..sample.len().min(4)]);
            for (i, (stage, d)) in stages(&model, sample).into_iter().enumerate() {
                if table.len() <= i {
                    table.push((stage, Vec::new()));
                }
                table[i].1.push(d);
            }
            let size = size.split_whitespace().next().unwrap_or(size);
            header.push(format!("{:>14}", format!("{engine} {size} ms")));
        }
        if engine == EngineKind::Tract {
            skip_detector_impact(&model);
        }
    }
    println!();
    println!("per-image latency, medians over 20 photos of each size, one thread:");
    println!(
        "| stage                            | {} |",
        header.join(" | ")
    );
    println!(
        "|----------------------------------|{}|",
        vec!["--------------:"; header.len()].join("|")
    );
    for (name, ds) in &table {
        let cells: Vec<String> = ds.iter().map(|d| format!("{:14.2}", ms(*d))).collect();
        println!("| {name:32} | {} |", cells.join(" | "));
    }

    // 2 and 3. End to end per size, interleaved rounds.
    let python = peer_python();
    if python.is_none() {
        println!("peer: no Python with onnxruntime and Pillow (IMGTAG_PEER_PYTHON), not run");
    }
    for (name, bucket, _) in &sets {
        end_to_end(name, bucket.path(), count, &engines, python.as_deref());
    }
}

/// Rounds of the end-to-end runs (`IMGTAG_BENCH_ROUNDS`, default 3): in
/// each, every run once, one after the other, so a round's runs share the
/// machine's mood.
fn rounds() -> usize {
    std::env::var("IMGTAG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// imgtag on each engine and the peer on one folder: wall time and peak
/// memory of each run, interleaved rounds. Prints each run's best and
/// median, and the ratios to the peer both best to best and round by round
/// (a shared machine's noise moves a round's runs together).
fn end_to_end(
    name: &str,
    bucket: &Path,
    count: usize,
    engines: &[EngineKind],
    python: Option<&Path>,
) {
    let uploads = bucket.join("uploads");
    let mut rows: Vec<(String, Vec<Result<Run, String>>)> = engines
        .iter()
        .map(|e| (format!("imgtag tag --detector local ({e})"), Vec::new()))
        .collect();
    // The peer as imgtag runs the detector (its canvas), and as YOLOX's
    // own demo does (the full square): the yardstick before the canvas.
    const PEERS: [(&str, bool); 2] = [
        ("Python onnxruntime + Pillow, 2 processes", false),
        ("the same peer, detector on the 416 square", true),
    ];
    if python.is_some() {
        rows.extend(PEERS.map(|(peer, _)| (peer.to_string(), Vec::new())));
    }
    let rounds = rounds();
    for _round in 0..rounds {
        for (i, &engine) in engines.iter().enumerate() {
            rows[i].1.push(imgtag_run(bucket, engine));
        }
        if let Some(py) = python {
            for (k, (_, square)) in PEERS.iter().enumerate() {
                rows[engines.len() + k]
                    .1
                    .push(peer_run(py, &uploads, *square));
            }
        }
    }
    println!();
    println!(
        "{name}: end to end on {count} photos ({rounds} interleaved rounds), load average {}:",
        loadavg()
    );
    println!(
        "| run                                        | images/s |   wall s | median s | peak MB |"
    );
    println!(
        "|--------------------------------------------|---------:|---------:|---------:|--------:|"
    );
    let mut best = Vec::new();
    for (run, runs) in &rows {
        let ok: Vec<Run> = runs
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        match ok.iter().min_by_key(|r| r.elapsed) {
            Some(r) => {
                best.push(*r);
                let walls: Vec<Duration> = ok.iter().map(|r| r.elapsed).collect();
                println!(
                    "| {run:42} | {:8.1} | {:8.2} | {:8.2} | {:7.0} |",
                    count as f64 / r.elapsed.as_secs_f64(),
                    r.elapsed.as_secs_f64(),
                    median(&walls).as_secs_f64(),
                    r.peak as f64 / 1e6
                );
            }
            None => {
                let why = runs.iter().find_map(|r| r.as_ref().err()).cloned();
                println!("| {run:42} |   failed | {} |", why.unwrap_or_default());
            }
        }
    }
    if python.is_some() && best.len() == rows.len() {
        let (peer, square) = (best[engines.len()], best[engines.len() + 1]);
        for (i, e) in engines.iter().enumerate() {
            let by_round: Vec<String> = rows[i]
                .1
                .iter()
                .zip(&rows[engines.len()].1)
                .filter_map(|pair| match pair {
                    (Ok(mine), Ok(peer)) => Some(format!(
                        "{:.2}",
                        mine.elapsed.as_secs_f64() / peer.elapsed.as_secs_f64()
                    )),
                    _ => None,
                })
                .collect();
            println!(
                "{name}: imgtag ({e}) / peer: wall {:.2}x best to best, {} round by round; \
                 peak memory {:.2}x (/ the square peer: wall {:.2}x)",
                best[i].elapsed.as_secs_f64() / peer.elapsed.as_secs_f64(),
                by_round.join(" "),
                best[i].peak as f64 / peer.peak as f64,
                best[i].elapsed.as_secs_f64() / square.elapsed.as_secs_f64(),
            );
        }
    }
}
