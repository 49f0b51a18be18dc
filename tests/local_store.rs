//! The local bucket against things planted in its folder: symbolic links
//! (at a key, at the temp-file names, at a folder on the way) are never
//! written through or read through, and special files (FIFOs) never hang a
//! read and are never listed.

use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use imgtag::contract::{Label, Layout};
use imgtag::detection::{
    DetectFailure, DetectInput, DetectParams, Detection, Detector, DynDetector,
};
use imgtag::pipeline::{Outcome, TagOptions, tag};
use imgtag::storage::{DynStore, LocalStore, PutCondition, StorageError, Store};

const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");
/// Long enough for a slow machine, short enough to prove nothing blocks
/// on a FIFO (which would wait forever for a writer).
const PROMPT: Duration = Duration::from_secs(5);
const PRECIOUS: &[u8] = b"outside the bucket: must not change";

/// A bucket folder next to a file and a folder outside it.
struct Setup {
    _dir: tempfile::TempDir,
    bucket: std::path::PathBuf,
    outside_file: std::path::PathBuf,
    outside_dir: std::path::PathBuf,
    store: LocalStore,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let outside_dir = dir.path().join("outside");
    std::fs::create_dir_all(bucket.join("metadata")).unwrap();
    std::fs::create_dir_all(bucket.join("uploads")).unwrap();
    std::fs::create_dir_all(&outside_dir).unwrap();
    let outside_file = dir.path().join("precious.txt");
    std::fs::write(&outside_file, PRECIOUS).unwrap();
    std::fs::write(outside_dir.join("y.json"), PRECIOUS).unwrap();
    let store = LocalStore::open(&bucket).unwrap();
    Setup {
        _dir: dir,
        bucket,
        outside_file,
        outside_dir,
        store,
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    assert!(
        std::fs::symlink_metadata(path)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

async fn keys(store: &LocalStore, prefix: &str) -> Vec<String> {
    let pages: Vec<_> = store.list(prefix).try_collect().await.unwrap();
    pages.into_iter().flatten().map(|o| o.key).collect()
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[tokio::test]
async fn put_never_writes_through_links_at_temp_file_names() {
    let s = setup();
    // Every name the old scheme (`<prefix><pid>-<counter>`) would have
    // used, and a few that merely look alike.
    let meta = s.bucket.join("metadata");
    let mut planted = Vec::new();
    for n in 0..256 {
        planted.push(meta.join(format!(".imgtag-tmp-{}-{n}", std::process::id())));
    }
    for name in [".imgtag-tmp-", ".imgtag-tmp-0", ".imgtag-tmp-aaaaaa"] {
        planted.push(meta.join(name));
    }
    for p in &planted {
        symlink(&s.outside_file, p).unwrap();
    }
    for i in 0..20 {
        let key = format!("metadata/a{i}.json");
        let body = Bytes::from(format!("{{\"n\":{i}}}"));
        s.store
            .put(&key, body.clone(), PutCondition::None)
            .await
            .unwrap();
        assert_eq!(s.store.get(&key, 1 << 20).await.unwrap().body, body);
    }
    assert_eq!(std::fs::read(&s.outside_file).unwrap(), PRECIOUS);
    assert!(
        planted.iter().all(|p| is_link(p)),
        "a planted link was replaced"
    );
    // Neither the links nor any temp file are listed.
    assert_eq!(keys(&s.store, "metadata/").await.len(), 20);
}

#[tokio::test]
async fn a_link_at_a_key_is_refused_not_followed() {
    let s = setup();
    let link = s.bucket.join("metadata/b.json");
    symlink(&s.outside_file, &link).unwrap();
    for condition in [
        PutCondition::None,
        PutCondition::CreateOnly,
        PutCondition::IfMatch("\"x\"".into()),
    ] {
        let err = s
            .store
            .put("metadata/b.json", Bytes::from_static(b"{}"), condition)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidKey { .. }), "{err:?}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    let err = s.store.get("metadata/b.json", 1 << 20).await.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(s.store.head("metadata/b.json").await.is_err());
    assert!(s.store.get_range("metadata/b.json", 0..4).await.is_err());
    assert_eq!(std::fs::read(&s.outside_file).unwrap(), PRECIOUS);
    assert!(is_link(&link));
    // A link to a file is not an object either.
    symlink(&s.outside_file, s.bucket.join("uploads/l.jpg")).unwrap();
    std::fs::write(s.bucket.join("uploads/r.jpg"), COFFEE).unwrap();
    assert_eq!(keys(&s.store, "uploads/").await, ["uploads/r.jpg"]);
    assert!(keys(&s.store, "metadata/").await.is_empty());
}

#[tokio::test]
async fn a_linked_folder_is_neither_written_read_nor_listed() {
    let s = setup();
    symlink(&s.outside_dir, s.bucket.join("metadata/linked")).unwrap();
    symlink(&s.outside_dir, s.bucket.join("linked")).unwrap();
    for key in [
        "metadata/linked/x.json",
        "linked/x.json",
        "linked/deeper/x.json",
    ] {
        let err = s
            .store
            .put(key, Bytes::from_static(b"{}"), PutCondition::None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{key}: {err}");
    }
    assert!(!s.outside_dir.join("x.json").exists());
    assert!(!s.outside_dir.join("deeper").exists());
    for key in ["metadata/linked/y.json", "linked/y.json"] {
        let err = s.store.get(key, 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{key}: {err}");
        assert!(s.store.head(key).await.is_err());
    }
    s.store
        .put(
            "metadata/real.json",
            Bytes::from_static(b"{}"),
            PutCondition::None,
        )
        .await
        .unwrap();
    assert_eq!(keys(&s.store, "").await, ["metadata/real.json"]);
    assert_eq!(keys(&s.store, "metadata/").await, ["metadata/real.json"]);
    assert!(keys(&s.store, "metadata/linked/").await.is_empty());
    assert!(keys(&s.store, "linked/").await.is_empty());
    assert_eq!(
        std::fs::read(s.outside_dir.join("y.json")).unwrap(),
        PRECIOUS
    );
}

#[tokio::test]
async fn a_fifo_at_a_key_fails_promptly_and_is_not_listed() {
    let s = setup();
    let fifo = s.bucket.join("metadata/f.json");
    mkfifo(&fifo);
    let get = tokio::time::timeout(PROMPT, s.store.get("metadata/f.json", 1 << 20)).await;
    let err = get.expect("get hung on a FIFO").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let head = tokio::time::timeout(PROMPT, s.store.head("metadata/f.json")).await;
    assert!(head.expect("head hung on a FIFO").is_err());
    let range = tokio::time::timeout(PROMPT, s.store.get_range("metadata/f.json", 0..4)).await;
    assert!(range.expect("get_range hung on a FIFO").is_err());
    let put = s.store.put(
        "metadata/f.json",
        Bytes::from_static(b"{}"),
        PutCondition::IfMatch("\"x\"".into()),
    );
    let put = tokio::time::timeout(PROMPT, put).await;
    assert!(put.expect("put hung on a FIFO").is_err());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    std::fs::write(s.bucket.join("metadata/g.json"), b"{}").unwrap();
    let listed = tokio::time::timeout(PROMPT, keys(&s.store, "metadata/")).await;
    assert_eq!(listed.expect("listing hung"), ["metadata/g.json"]);
}

/// Answers at once with one label.
struct Fixed;

#[async_trait]
impl Detector for Fixed {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        imgtag::detection::DetectorKind::Local
    }
    fn name(&self) -> &'static str {
        "fixed"
    }
    async fn detect(&self, _: DetectInput, _: DetectParams) -> Result<Detection, DetectFailure> {
        Ok(Detection {
            labels: vec![Label::new("Cup", 90.0)],
            label_model_version: None,
            image_properties: None,
            candidates: Vec::new(),
            text: Vec::new(),
        })
    }
}

#[tokio::test]
async fn tagging_with_a_fifo_or_a_link_at_the_metadata_key_fails_promptly() {
    let s = setup();
    std::fs::write(s.bucket.join("uploads/a.jpg"), COFFEE).unwrap();
    std::fs::write(s.bucket.join("uploads/b.jpg"), COFFEE).unwrap();
    mkfifo(&s.bucket.join("metadata/a.jpg.json"));
    symlink(&s.outside_file, s.bucket.join("metadata/b.jpg.json")).unwrap();
    let store: DynStore = Arc::new(s.store.clone());
    let det: DynDetector = Arc::new(Fixed);
    let opts = TagOptions::new(Layout::default(), "test");
    for key in ["uploads/a.jpg", "uploads/b.jpg"] {
        let out = tokio::time::timeout(PROMPT, tag(&store, &det, key, &opts))
            .await
            .expect("tagging hung");
        assert!(!matches!(out, Outcome::Tagged { .. }), "{key}: {out:?}");
    }
    assert_eq!(std::fs::read(&s.outside_file).unwrap(), PRECIOUS);
    assert!(is_link(&s.bucket.join("metadata/b.jpg.json")));
}
