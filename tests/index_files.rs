//! The index's files as other processes and other users see them: a
//! second process opens and reads an index while the first holds a long
//! write, the files and folders are the owner's only, and only a file
//! proven corrupt is ever deleted.
//!
//! The other process is this test binary run again on one helper,
//! [`child_process`], which does nothing unless `IMGTAG_TEST_CHILD` names
//! its role.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixtures;
use futures::TryStreamExt;
use imgtag::catalog::Filter;
use imgtag::contract::{Layout, parse_metadata};
use imgtag::index::query::{Query, rows};
use imgtag::index::refresh::{RefreshOptions, refresh};
use imgtag::index::{Index, IndexSpec, SCHEMA_VERSION};
use imgtag::storage::{DynStore, LocalStore, ObjectInfo, PutCondition};
use imgtag::summary::summarize;

const ROLE: &str = "IMGTAG_TEST_CHILD";

fn spec() -> IndexSpec {
    IndexSpec::new("file", "/bucket", &Layout::default())
}

async fn bucket(dir: &Path) -> DynStore {
    let path = dir.join("bucket");
    std::fs::create_dir_all(&path).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(&path).unwrap());
    fixtures::populate(&store).await;
    store
}

async fn refreshed(index: &Arc<Index>, store: &DynStore) {
    let opts = RefreshOptions::default();
    refresh(index, store, &Layout::default(), &opts, &|_| {})
        .await
        .unwrap();
}

async fn row_count(index: &Index) -> usize {
    let q = Query {
        layout: Layout::default(),
        review: 70.0.into(),
        filter: Filter::default(),
        unreadable: Arc::default(),
    };
    rows(index, q).try_collect::<Vec<_>>().await.unwrap().len()
}

/// Not a test: the other process of the tests in this module, run by
/// [`spawn`]. Without `IMGTAG_TEST_CHILD` it does nothing.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = PathBuf::from(std::env::var_os("IX_PATH").expect("IX_PATH"));
    match role.as_str() {
        "hold-write" => hold_write(&path),
        "private-files" => private_files(&path),
        other => panic!("unknown role {other}"),
    }
}

/// Says READY on stdout, then waits for stdin to close.
fn ready_until_released() {
    println!("READY");
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

/// Holds a write transaction on the index at `path` (with a change in
/// it) until released: a long refresh committing.
fn hold_write(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("BEGIN IMMEDIATE; DELETE FROM objects;")
        .unwrap();
    ready_until_released();
    c.execute_batch("COMMIT").unwrap();
}

/// Builds an index at `path` (its folder new) and a thumbnail cache in
/// `THUMBS`, and keeps them open (so the -wal and -shm files exist) until
/// released.
fn private_files(path: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = rt.block_on(bucket(tmp.path()));
    let (index, _) = Index::open(path, &spec()).unwrap();
    let index = Arc::new(index);
    rt.block_on(refreshed(&index, &store));
    let thumbs = PathBuf::from(std::env::var_os("THUMBS").expect("THUMBS"));
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    rt.block_on(store.put("uploads/pic.png", Bytes::from(png), PutCondition::None))
        .unwrap();
    let cache = imgtag::tui::thumbs::ThumbCache::new(Some(thumbs.clone()), "b");
    rt.block_on(cache.get(&store, "uploads/pic.png", Some("e1"), 1))
        .unwrap();
    // The disk write runs in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(&thumbs)
        .is_ok_and(|mut d| d.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".jpg")))
    {
        assert!(Instant::now() < deadline, "no thumbnail written");
        std::thread::sleep(Duration::from_millis(20));
    }
    ready_until_released();
    drop(index);
}

/// A child in `role` under umask 022, and its stdout once it said READY.
fn spawn(role: &str, envs: &[(&str, &Path)]) -> (Child, BufReader<ChildStdout>) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args([
            "index_files::child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The harness prints the test's name on the same line.
    while !line.trim_end().ends_with("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
    }
    (child, out)
}

/// Closes the child's stdin and waits for it to succeed.
fn release(mut child: Child, mut out: BufReader<ChildStdout>) {
    drop(child.stdin.take());
    let _ = out.read_to_end(&mut Vec::new());
    assert!(child.wait().unwrap().success());
}

/// Another process commits a long refresh: this one opens the index and
/// reads it at once (WAL: readers never wait for the writer), without a
/// temporary index, and its own write waits its turn and lands.
#[tokio::test]
async fn a_second_process_opens_and_reads_while_another_holds_a_long_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket(dir.path()).await;
    let path = dir.path().join("ix.sqlite");
    let (index, _) = Index::open(&path, &spec()).unwrap();
    let index = Arc::new(index);
    refreshed(&index, &store).await;
    let want = row_count(&index).await;
    assert!(want > 0);
    drop(index);

    let (mut child, out) = spawn("hold-write", &[("IX_PATH", &path)]);
    let started = Instant::now();
    let p = path.clone();
    let opening = tokio::task::spawn_blocking(move || Index::open(&p, &spec()).unwrap());
    let Ok(opened) = tokio::time::timeout(Duration::from_secs(5), opening).await else {
        let _ = child.kill();
        panic!("the open waited for the other process's write");
    };
    let (index, note) = opened.unwrap();
    assert_eq!(note, None, "no temporary index");
    assert_eq!(index.path(), path);
    // The rows as last committed: the child's uncommitted delete unseen.
    assert_eq!(row_count(&index).await, want);
    assert!(started.elapsed() < Duration::from_secs(3));

    // A write waits for the other process's commit, then lands.
    let index = Arc::new(index);
    let ix = index.clone();
    let writing = tokio::task::spawn_blocking(move || {
        let doc = summarize(&parse_metadata(br#"{"Labels":[]}"#));
        let info = ObjectInfo {
            key: "metadata/late.jpg.json".into(),
            size: 13,
            etag: Some("\"late\"".into()),
            last_modified: Some(1),
        };
        ix.record_document(&Layout::default(), &info, &doc)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!writing.is_finished(), "the write waits its turn");
    release(child, out);
    tokio::time::timeout(Duration::from_secs(10), writing)
        .await
        .expect("the write lands after the commit")
        .unwrap()
        .unwrap();
    let (objects, _) = index.counts().unwrap();
    assert_eq!(objects, 1, "the child's delete, then this write");
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Under umask 022 the index's folder, file, -wal and -shm, and the
/// thumbnail cache's folder and files, are the owner's only.
#[cfg(unix)]
#[test]
fn index_and_thumbnails_are_private_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let ix_dir = dir.path().join("cache/index");
    let path = ix_dir.join("ix.sqlite");
    let thumbs = dir.path().join("cache/thumbs");
    let (child, out) = spawn("private-files", &[("IX_PATH", &path), ("THUMBS", &thumbs)]);
    let mut got = vec![
        (dir.path().join("cache"), mode(&dir.path().join("cache"))),
        (ix_dir.clone(), mode(&ix_dir)),
        (thumbs.clone(), mode(&thumbs)),
    ];
    let mut want = vec![0o700, 0o700, 0o700];
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        got.push((p.clone(), mode(&p)));
        want.push(0o600);
    }
    for e in std::fs::read_dir(&thumbs).unwrap() {
        let p = e.unwrap().path();
        got.push((p.clone(), mode(&p)));
        want.push(0o600);
    }
    release(child, out);
    let modes: Vec<u32> = got.iter().map(|g| g.1).collect();
    assert_eq!(modes, want, "{got:?}");
}

/// Rows of the `objects` table, read straight from the file.
fn objects_in(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
        .unwrap()
}

/// An index a newer imgtag wrote is left as it is (a temporary index
/// serves this run, and says why): the two versions never rebuild each
/// other's file.
#[tokio::test]
async fn a_newer_schema_survives_an_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket(dir.path()).await;
    let path = dir.path().join("ix.sqlite");
    let (index, _) = Index::open(&path, &spec()).unwrap();
    let index = Arc::new(index);
    refreshed(&index, &store).await;
    drop(index);
    let newer = SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let before = objects_in(&path);

    let (index, note) = Index::open(&path, &spec()).unwrap();
    let note = note.unwrap();
    assert!(
        note.contains(&format!("schema version {newer}")) && note.contains("temporary"),
        "{note}"
    );
    assert_ne!(index.path(), path);
    let index = Arc::new(index);
    refreshed(&index, &store).await;
    assert!(row_count(&index).await > 0, "the temporary index works");
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!((v, objects_in(&path)), (newer, before), "left as it was");
}

/// An error that says nothing of the file's content (here SQLite cannot
/// open the write-ahead log: a folder is in its place) leaves the index
/// file alone; a temporary index serves.
#[tokio::test]
async fn an_index_that_cannot_be_opened_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket(dir.path()).await;
    let path = dir.path().join("ix.sqlite");
    let (index, _) = Index::open(&path, &spec()).unwrap();
    let index = Arc::new(index);
    refreshed(&index, &store).await;
    drop(index);
    let before = objects_in(&path);
    assert!(before > 0);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let _ = std::fs::remove_file(&wal);
    std::fs::create_dir(&wal).unwrap();

    let opened = Index::open(&path, &spec());
    assert!(path.exists(), "the index file is still there");
    let (index, note) = opened.unwrap();
    assert_ne!(index.path(), path);
    assert!(note.unwrap().contains("cannot be written"));
    assert!(wal.is_dir());
    std::fs::remove_dir(&wal).unwrap();
    assert_eq!(objects_in(&path), before, "and holds what it held");
}

/// A file that is not a database is rebuilt where it is.
#[tokio::test]
async fn a_garbage_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket(dir.path()).await;
    let path = dir.path().join("ix.sqlite");
    std::fs::write(&path, b"not a database, only text ".repeat(300)).unwrap();
    let (index, note) = Index::open(&path, &spec()).unwrap();
    assert!(note.unwrap().contains("rebuilding"));
    assert_eq!(index.path(), path);
    let index = Arc::new(index);
    refreshed(&index, &store).await;
    assert!(row_count(&index).await > 0);
    drop(index);
    assert!(objects_in(&path) > 0, "rebuilt in place");
}

/// `imgtag index --bucket photos --path-style` with `env` set; the index
/// file it used (the first word of its report) and the report.
async fn index_photos(home: &Path, env: Vec<(&'static str, String)>) -> (String, String) {
    let mut cmd = common::bin::command(home, &["index", "--bucket", "photos", "--path-style"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = common::bin::stdout(&out);
    let path = text.split(": ").next().unwrap().to_string();
    (path, text)
}

/// Two servers each with a bucket `photos`, reached through the
/// environment and a profile (never the flag): each endpoint has its own
/// index, and one endpoint one index whatever named it.
#[tokio::test]
async fn the_index_is_the_one_of_the_endpoint_the_sdk_resolved() {
    use common::s3mem::{self, MemS3};
    let (a, b) = (MemS3::new(), MemS3::new());
    for (mem, key) in [(&a, "uploads/on-a.jpg"), (&b, "uploads/on-b.jpg")] {
        mem.create_bucket("photos");
        mem.insert("photos", key, "image");
    }
    let (server_a, server_b) = (s3mem::serve(a).await, s3mem::serve(b).await);
    let (url_a, url_b) = (server_a.endpoint(), server_b.endpoint());
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[default]\nendpoint_url = {url_b}\n\n[profile minio]\nservices = local-s3\n\n\
             [services local-s3]\ns3 =\n  endpoint_url = {url_a}\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();

    let (ix_a, text) = index_photos(home.path(), vec![("AWS_ENDPOINT_URL", url_a.clone())]).await;
    assert!(text.contains("(1 new, 0 changed, 0 gone)"), "{text}");
    let (ix_b, text) =
        index_photos(home.path(), vec![("AWS_ENDPOINT_URL_S3", url_b.clone())]).await;
    assert!(text.contains("(1 new, 0 changed, 0 gone)"), "{text}");
    assert_ne!(ix_a, ix_b, "two endpoints, two indexes");

    // The same endpoints named by the profile file: the same indexes,
    // nothing new.
    let cases = [
        (vec![("AWS_CONFIG_FILE", config.clone())], &ix_b),
        (
            vec![
                ("AWS_CONFIG_FILE", config.clone()),
                ("AWS_PROFILE", "minio".to_string()),
            ],
            &ix_a,
        ),
        (vec![("AWS_ENDPOINT_URL", url_b.clone())], &ix_b),
    ];
    for (env, want) in cases {
        let (ix, text) = index_photos(home.path(), env.clone()).await;
        assert_eq!(&ix, want, "{env:?}");
        assert!(
            text.contains("(0 new, 0 changed, 0 gone)"),
            "{env:?}: {text}"
        );
    }
}
