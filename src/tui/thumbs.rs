//! Thumbnails: fetched, decoded at reduced scale where the format allows,
//! cached in memory (LRU) and on disk in the platform cache dir, keyed by
//! bucket, key and ETag (a replaced image gets a new thumbnail).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use image::RgbImage;
use lru::LruCache;
use md5::{Digest, Md5};

use crate::imaging::{self, DecodeLimits};
use crate::storage::{DynStore, StorageError};

/// Longest side of a cached thumbnail: enough for a detail pane on a large
/// terminal with a pixel protocol.
pub const THUMB_SIDE: u32 = 512;
/// Images above this are not downloaded for a preview.
pub const MAX_PREVIEW_BYTES: u64 = 64 * 1024 * 1024;
const MEMORY_ENTRIES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Image(#[from] imaging::ImagingError),
    #[error("{size} bytes, too large to preview")]
    TooLarge { size: u64 },
    #[error("thumbnail task failed: {0}")]
    Task(String),
}

pub struct ThumbCache {
    mem: Mutex<LruCache<(String, String), Arc<RgbImage>>>,
    dir: Option<PathBuf>,
    bucket_id: String,
}

impl ThumbCache {
    /// `dir`: where thumbnails persist between runs (None: memory only).
    /// `bucket_id` distinguishes buckets sharing the cache dir.
    pub fn new(dir: Option<PathBuf>, bucket_id: &str) -> ThumbCache {
        ThumbCache {
            mem: Mutex::new(LruCache::new(
                NonZeroUsize::new(MEMORY_ENTRIES).expect("non-zero"),
            )),
            dir,
            bucket_id: bucket_id.to_string(),
        }
    }

    /// The platform cache dir's thumbnail folder.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "imgtag").map(|d| d.cache_dir().join("thumbs"))
    }

    fn disk_path(&self, key: &str, etag: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = Md5::new();
        for part in [self.bucket_id.as_str(), key, etag] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        Some(dir.join(format!("{}.jpg", hex::encode(h.finalize()))))
    }

    /// The thumbnail of `key`: from memory, from disk, or fetched and
    /// decoded (off the async threads).
    pub async fn get(
        &self,
        store: &DynStore,
        key: &str,
        etag: Option<&str>,
        size: u64,
    ) -> Result<Arc<RgbImage>, ThumbError> {
        let mem_key = (key.to_string(), etag.unwrap_or("").to_string());
        if let Some(img) = self.mem.lock().expect("thumb cache").get(&mem_key) {
            return Ok(img.clone());
        }
        let disk = etag.and_then(|e| self.disk_path(key, e));
        if let Some(path) = &disk {
            let path = path.clone();
            let cached = tokio::task::spawn_blocking(move || {
                let bytes = std::fs::read(path).ok()?;
                imaging::decode(&bytes, &DecodeLimits::default()).ok()
            })
            .await
            .ok()
            .flatten();
            if let Some(img) = cached {
                let img = Arc::new(img);
                self.mem
                    .lock()
                    .expect("thumb cache")
                    .put(mem_key, img.clone());
                return Ok(img);
            }
        }
        if size > MAX_PREVIEW_BYTES {
            return Err(ThumbError::TooLarge { size });
        }
        let obj = store
            .get(key, MAX_PREVIEW_BYTES)
            .await
            .map_err(|e| match e {
                StorageError::TooLarge { size, .. } => ThumbError::TooLarge { size },
                e => ThumbError::Storage(e),
            })?;
        let img = tokio::task::spawn_blocking(move || {
            imaging::thumbnail(&obj.body, &DecodeLimits::default(), THUMB_SIDE)
        })
        .await
        .map_err(|e| ThumbError::Task(e.to_string()))??;
        let img = Arc::new(img);
        self.mem
            .lock()
            .expect("thumb cache")
            .put(mem_key, img.clone());
        if let Some(path) = disk {
            let img = img.clone();
            // Best effort: a cache that cannot be written only costs time.
            tokio::task::spawn_blocking(move || {
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let ok = image::DynamicImage::ImageRgb8((*img).clone())
                    .save_with_format(&tmp, image::ImageFormat::Jpeg)
                    .is_ok();
                if ok {
                    let _ = std::fs::rename(&tmp, &path);
                } else {
                    let _ = std::fs::remove_file(&tmp);
                }
            });
        }
        Ok(img)
    }
}
