//! What the TUI benches share: a counting allocator (memory measured, not
//! guessed), a deterministic generator and the synthetic rows' documents.
//! Each bench uses a part of it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use imgtag::catalog::Assessed;
use imgtag::contract::{
    ErrorInfo, ImgTagInfo, KeyKind, Label, Malformed, MetadataDoc, ParsedMetadata, Shape, SourceRef,
};
use imgtag::status::assess;
use imgtag::storage::ObjectInfo;

// ---------------------------------------------------------------------------
// Heap accounting

/// Counts live and peak heap bytes.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// A counting allocator must implement the unsafe trait; it only forwards to
// `System`. The only unsafe code in the package (`unsafe_code = "deny"`).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new_size) };
        if !q.is_null() {
            if new_size >= l.size() {
                grew(new_size - l.size());
            } else {
                LIVE.fetch_sub(l.size() - new_size, Ordering::Relaxed);
            }
        }
        q
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes live now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Runs `f`, returning its result and the heap peak above the live bytes
/// at the start.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = live();
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

// ---------------------------------------------------------------------------
// Synthetic bucket

/// A small deterministic generator (PCG-style LCG).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A quoted 32-hex-digit ETag derived from `seed`.
pub fn etag_of(seed: u64) -> String {
    let h = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("\"{h:016x}{:016x}\"", h.rotate_left(29))
}

/// An imgtag document for `image` as the local detector writes it.
pub fn document(
    image: &ObjectInfo,
    source_etag: String,
    labels: Vec<Label>,
    error: Option<ErrorInfo>,
) -> ParsedMetadata {
    ParsedMetadata {
        doc: MetadataDoc {
            labels,
            label_model_version: None,
            extra: Default::default(),
            imgtag: Some(ImgTagInfo {
                extra: Default::default(),
                schema_version: 1,
                source: SourceRef {
                    bucket: "photos".into(),
                    key: image.key.clone(),
                    etag: Some(source_etag),
                    size: Some(image.size),
                },
                detector: Some("local:mobilenetv2".into()),
                min_confidence: Some(55.0),
                max_labels: None,
                tagged_at: Some("2024-06-01T12:00:00Z".into()),
                tagged_by: Some("imgtag 0.1.0".into()),
                review: None,
                error,
                features: Vec::new(),
                settings: None,
            }),
        },
        shape: Shape::ImgTag,
    }
}

/// The image as an audit assesses it, with its canonical metadata object
/// (ETag and time given) when there is a document.
pub fn assessed_of(
    image: ObjectInfo,
    read: Option<&Result<ParsedMetadata, Malformed>>,
    meta_etag: String,
    meta_modified: i64,
) -> Assessed {
    let metadata = read.map(|_| ObjectInfo {
        key: format!("metadata/{}.json", &image.key["uploads/".len()..]),
        size: 1200,
        etag: Some(meta_etag.into()),
        last_modified: Some(meta_modified),
    });
    Assessed {
        status: Some(assess(read, image.etag.as_deref(), 70.0)),
        image: Some(image),
        metadata,
        key_kind: read.map(|_| KeyKind::Canonical),
        doc: read.map(imgtag::summary::summarize),
        read_error: None,
    }
}
