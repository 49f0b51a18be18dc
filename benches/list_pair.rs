//! Lists and pairs 100,000 objects (uploads + metadata) from the in-process
//! S3 server, against a bare `aws-sdk-s3` ListObjectsV2 paginator loop over
//! the same objects in the same run. Reports the time ratio and the memory
//! the catalog holds per listed object beyond the key strings.
//!
//! Run: `cargo bench --bench list_pair` (IMGTAG_BENCH_OBJECTS to resize).

#[path = "common/measure.rs"]
mod measure;
#[path = "../tests/common/s3mem.rs"]
mod s3mem;
use measure::{measuring, median};

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::TryStreamExt;
use imgtag::catalog::Catalog;
use imgtag::contract::Layout;
use imgtag::storage::{S3Store, Store};

/// Counts live and peak heap bytes, so memory is measured, not guessed.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// A counting allocator must implement the unsafe trait; it only forwards to
// `System`. The only unsafe code in the package (`unsafe_code = "deny"`).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BUCKET: &str = "bench-bucket";

async fn bare_loop(client: &aws_sdk_s3::Client) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    for prefix in ["metadata/", "uploads/"] {
        let mut pages = client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page.expect("listing").contents() {
                n += 1;
                bytes += o.key().map_or(0, str::len);
            }
        }
    }
    (n, bytes)
}

async fn list_and_pair(store: &S3Store) -> Catalog {
    let mut cat = Catalog::new(Layout::default());
    for prefix in ["metadata/", "uploads/"] {
        let mut pages = store.list(prefix);
        while let Some(page) = pages.try_next().await.expect("listing") {
            cat.add_page(page);
        }
    }
    cat
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run
    // passes nothing and would take minutes: skip there.
    if !measuring() {
        return;
    }
    let total: usize = std::env::var("IMGTAG_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let images = total / 2;
    measure::runtime().block_on(async {
        let mem = s3mem::MemS3::new();
        mem.create_bucket(BUCKET);
        // Half images; of their metadata 90% paired canonically, the rest
        // orphans, so pairing does real lookups both ways.
        for i in 0..images {
            mem.insert(BUCKET, &format!("uploads/2024/{i:07}-photo.jpg"), "i");
            let meta = if i % 10 == 0 {
                format!("metadata/gone/{i:07}-photo.jpg.json")
            } else {
                format!("metadata/2024/{i:07}-photo.jpg.json")
            };
            mem.insert(BUCKET, &meta, "m");
        }
        let server = s3mem::serve(mem).await;
        let client = s3mem::client(&server.endpoint());
        let store = S3Store::from_client(client.clone(), BUCKET);

        // Warm up connections and caches once each.
        let (n, key_bytes) = bare_loop(&client).await;
        assert_eq!(n, total);
        drop(list_and_pair(&store).await);

        let reps = 5;
        let (mut bare, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            std::hint::black_box(bare_loop(&client).await);
            bare.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(list_and_pair(&store).await);
            ours.push(t.elapsed());
        }

        // Memory: what the finished catalog holds, beyond the key strings.
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let cat = list_and_pair(&store).await;
        let held = LIVE.load(Ordering::Relaxed) - before;
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert_eq!(cat.images().len(), images);
        let paired = cat.images().iter().filter(|i| i.meta.is_some()).count();
        assert_eq!(paired, images - images / 10);
        assert_eq!(cat.orphans().len(), images / 10);
        let per_obj = (held as f64 - key_bytes as f64) / total as f64;

        let (b, o) = (median(&bare), median(&ours));
        println!(
            "list_pair: {total} objects ({images} images, {} metadata), {reps} runs each, medians",
            total - images
        );
        println!(
            "  bare aws-sdk-s3 paginator loop : {:>8.1} ms",
            b.as_secs_f64() * 1e3
        );
        println!(
            "  imgtag list + pair (Catalog)   : {:>8.1} ms",
            o.as_secs_f64() * 1e3
        );
        println!(
            "  ratio imgtag / bare            : {:>8.3}x (target <= 1.2x)",
            o.as_secs_f64() / b.as_secs_f64()
        );
        println!(
            "  catalog heap held              : {held} bytes, of which key strings {key_bytes}"
        );
        println!("  per object beyond keys         : {per_obj:>8.1} bytes (target <= 300)");
        println!(
            "  peak heap while listing        : {:>8.1} bytes/object",
            peak as f64 / total as f64
        );
    });
}
