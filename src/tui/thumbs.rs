//! Thumbnails: fetched, decoded at reduced scale where the format allows,
//! cached in memory (LRU) and on disk in the platform cache dir, keyed by
//! bucket, key and ETag (a replaced image gets a new thumbnail).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
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
pub(crate) const MAX_PREVIEW_BYTES: u64 = 64 * 1024 * 1024;
const MEMORY_ENTRIES: usize = 64;
/// What the disk cache may hold before the oldest thumbnails go: about
/// 5,000 thumbnails.
pub(crate) const DEFAULT_DISK_BYTES: u64 = 256 * 1024 * 1024;

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
    /// Bound on the disk cache's size.
    max_disk_bytes: u64,
    /// Bytes on disk as of the last prune plus what was written since
    /// (None: not counted yet), so a write costs no directory scan until
    /// the bound is near.
    disk_bytes: Arc<Mutex<Option<u64>>>,
}

impl ThumbCache {
    /// `dir`: where thumbnails persist between runs (None: memory only).
    /// `bucket_id` distinguishes buckets sharing the cache dir.
    pub fn new(dir: Option<PathBuf>, bucket_id: &str) -> ThumbCache {
        ThumbCache::with_limit(dir, bucket_id, DEFAULT_DISK_BYTES)
    }

    /// As [`ThumbCache::new`], with the disk cache held to `max_disk_bytes`
    /// (the oldest thumbnails are deleted beyond it).
    pub(crate) fn with_limit(
        dir: Option<PathBuf>,
        bucket_id: &str,
        max_disk_bytes: u64,
    ) -> ThumbCache {
        ThumbCache {
            mem: Mutex::new(LruCache::new(
                NonZeroUsize::new(MEMORY_ENTRIES).expect("non-zero"),
            )),
            dir,
            bucket_id: bucket_id.to_string(),
            max_disk_bytes,
            disk_bytes: Arc::new(Mutex::new(None)),
        }
    }

    /// The platform cache dir's thumbnail folder.
    pub(crate) fn default_dir() -> Option<PathBuf> {
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
            let (counted, max) = (self.disk_bytes.clone(), self.max_disk_bytes);
            // Best effort: a cache that cannot be written only costs time.
            tokio::task::spawn_blocking(move || {
                if let Some(written) = write_thumb(&path, &img) {
                    account(&path, written, &counted, max);
                }
            });
        }
        Ok(img)
    }
}

/// Writes a thumbnail through a temporary file; returns its size. The
/// folder is created 0700 and the file 0600 (tempfile's mode): thumbnails
/// show a bucket's pictures, and operators share hosts.
fn write_thumb(path: &Path, img: &RgbImage) -> Option<u64> {
    use std::io::Write;
    let dir = path.parent()?;
    let _ = crate::private::create_dir(dir);
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .ok()?;
    // Named `.tmpXXXXXX`: `prune` counts and deletes a crashed run's.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ok()?;
    tmp.write_all(&jpeg).ok()?;
    tmp.persist(path).ok()?;
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Counts a written thumbnail and prunes the cache when it passes `max`.
fn account(path: &Path, written: u64, counted: &Mutex<Option<u64>>, max: u64) {
    let Some(dir) = path.parent() else { return };
    let mut counted = counted.lock().expect("thumb cache size");
    let total = match *counted {
        Some(n) => n + written,
        // The first write counts what earlier runs left.
        None => prune(dir, u64::MAX).unwrap_or(written),
    };
    *counted = Some(if total > max {
        prune(dir, max).unwrap_or(total)
    } else {
        total
    });
}

/// Deletes the oldest thumbnails (by modification time) in `dir` until
/// the rest hold at most `max` bytes; returns the bytes left. Only
/// regular files named like thumbnails are counted or deleted.
pub(crate) fn prune(dir: &Path, max: u64) -> std::io::Result<u64> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.ends_with(".jpg") || name.contains(".tmp")) {
            continue;
        }
        // `DirEntry::metadata` does not follow symlinks.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        files.push((modified, meta.len(), entry.path()));
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn file(dir: &Path, name: &str, len: usize, age_s: u64) {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; len]).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
    }

    #[test]
    fn prune_deletes_the_oldest_beyond_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        file(d, "old.jpg", 400, 300);
        file(d, "mid.jpg", 400, 200);
        file(d, "new.jpg", 400, 100);
        file(d, "notes.txt", 5000, 400);
        assert_eq!(prune(d, 1000).unwrap(), 800);
        assert!(!d.join("old.jpg").exists());
        assert!(d.join("mid.jpg").exists() && d.join("new.jpg").exists());
        // Not a thumbnail: never counted, never deleted.
        assert!(d.join("notes.txt").exists());
        assert_eq!(prune(d, 0).unwrap(), 0);
        assert!(!d.join("new.jpg").exists());
    }

    /// Waits until the thumbnail of `key` is on disk and counted.
    async fn written(cache: &ThumbCache, key: &str, etag: &str) {
        let path = cache.disk_path(key, etag).unwrap();
        for _ in 0..500 {
            if path.exists() {
                // Counting follows the rename at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{key}: no thumbnail written");
    }

    #[tokio::test]
    async fn the_disk_cache_stays_within_its_bound() {
        let bucket = tempfile::tempdir().unwrap();
        let cache_dir = bucket.path().join(".thumbs");
        let store: DynStore = Arc::new(crate::storage::LocalStore::open(bucket.path()).unwrap());
        std::fs::create_dir_all(bucket.path().join("uploads")).unwrap();
        for n in 0..4u8 {
            // Alike images: thumbnails of about the same size.
            let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, n * 40]));
            let mut png = Vec::new();
            image::DynamicImage::ImageRgb8(img)
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            std::fs::write(bucket.path().join(format!("uploads/{n}.png")), &png).unwrap();
        }
        let probe = ThumbCache::with_limit(Some(cache_dir.clone()), "b", u64::MAX);
        probe
            .get(&store, "uploads/0.png", Some("e0"), 1)
            .await
            .unwrap();
        written(&probe, "uploads/0.png", "e0").await;
        let one = prune(&cache_dir, u64::MAX).unwrap();
        // Room for two and a half thumbnails.
        let bound = one * 5 / 2;
        let cache = ThumbCache::with_limit(Some(cache_dir.clone()), "b", bound);
        for n in 1..4u8 {
            let (key, etag) = (format!("uploads/{n}.png"), format!("e{n}"));
            cache.get(&store, &key, Some(&etag), 1).await.unwrap();
            written(&cache, &key, &etag).await;
        }
        let left = prune(&cache_dir, u64::MAX).unwrap();
        assert!(left <= bound, "{left} bytes left, bound {bound}");
        // The newest two stay, the oldest went.
        let on_disk = |n: u8| {
            let (key, etag) = (format!("uploads/{n}.png"), format!("e{n}"));
            cache.disk_path(&key, &etag).unwrap().exists()
        };
        assert_eq!(
            (0..4).map(on_disk).collect::<Vec<_>>(),
            [false, false, true, true]
        );
    }
}
