//! The real `imgtag` binary on a hostile bucket and a hostile terminal
//! (issue 12): output closed early (`| head -1`), and a folder bucket full
//! of keys and objects meant to break it. No panic, no hang (every run has
//! a deadline), no raw control bytes on stdout or stderr, clear messages,
//! nothing overwritten.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");
/// Every run ends within this, or the test fails.
const DEADLINE: Duration = Duration::from_secs(90);

/// The binary with a clean environment, its output piped to the test.
fn spawn(home: &Path, args: &[&str]) -> Child {
    crate::common::bin::command(home, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imgtag")
}

/// Waits for the child, killing it (and failing) past the deadline.
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("{what}: still running after {DEADLINE:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs to the end, reading both streams as they come.
fn run(home: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = spawn(home, args);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let status = wait(&mut child, &args.join(" "));
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert_terminal_safe(&out, "stdout");
    assert_terminal_safe(&err, "stderr");
    (
        status,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn assert_terminal_safe(bytes: &[u8], stream: &str) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && imgtag::sanitize::is_unsafe(c)),
        "raw control characters on {stream}: {text:?}"
    );
    assert!(!text.contains("panicked"), "{stream}: {text}");
}

/// Reads one line of stdout, then closes it as `head -1` does, and waits.
fn first_line_then_close(home: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = spawn(home, args);
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: the pipe is closed.
    let status = wait(&mut child, &args.join(" "));
    let err = err_reader.join().unwrap();
    assert_terminal_safe(&err, "stderr");
    (status, first, String::from_utf8_lossy(&err).into_owned())
}

fn folder_with_images(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(bucket.join("uploads")).unwrap();
    for i in 0..n {
        std::fs::write(bucket.join(format!("uploads/{i:04}.jpg")), COFFEE).unwrap();
    }
    (dir, bucket)
}

/// Metadata documents in the folder; every one must be whole.
fn documents(bucket: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(bucket.join("metadata")) else {
        return 0;
    };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        imgtag::contract::parse_metadata(&bytes)
            .unwrap_or_else(|m| panic!("{} is not whole: {m}", path.display()));
        n += 1;
    }
    n
}

#[test]
fn tag_json_into_a_closed_pipe_stops_and_exits_quietly() {
    let (home, bucket) = folder_with_images(40);
    let b = bucket.to_str().unwrap();
    let args = [
        "tag",
        "--all",
        "--json",
        "--concurrency",
        "2",
        "--bucket",
        b,
    ];
    let (status, first, err) = first_line_then_close(home.path(), &args);
    assert!(status.success(), "{status:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["outcome"], "tagged", "{first}");
    // Scheduling stopped: far from all 40 were tagged, and what was
    // written is whole.
    let written = documents(&bucket);
    assert!((1..40).contains(&written), "{written} documents");
}

#[test]
fn watch_into_a_closed_pipe_stops_and_exits_quietly() {
    let (home, bucket) = folder_with_images(40);
    let b = bucket.to_str().unwrap();
    let args = [
        "watch",
        "--json",
        "--poll",
        "--interval",
        "1",
        "--bucket",
        b,
    ];
    let (status, first, err) = first_line_then_close(home.path(), &args);
    assert!(status.success(), "{status:?}: {err}");
    assert!(first.contains("\"tagged\""), "{first}");
    let written = documents(&bucket);
    assert!((1..40).contains(&written), "{written} documents");
}

#[test]
fn ls_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(bucket.join("uploads")).unwrap();
    // More rows than a pipe holds.
    for i in 0..3000 {
        std::fs::write(
            bucket.join(format!("uploads/{i:05}-a-fairly-long-name.jpg")),
            b"x",
        )
        .unwrap();
    }
    let args = ["ls", "--bucket", bucket.to_str().unwrap()];
    let (status, first, err) = first_line_then_close(dir.path(), &args);
    assert!(status.success(), "{status:?}: {err}");
    assert!(!first.is_empty());
}

/// With stderr closed, an error still exits 1 (not a panic's 101) and a
/// run's summary on stderr does not break the run.
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-such-bucket");
    let run = |args: &[&str]| {
        let mut child = crate::common::bin::command(home.path(), args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (wait(&mut child, "imgtag"), out)
    };
    let (status, _) = run(&["ls", "--bucket", missing.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{status:?}");
    let (_dir, bucket) = folder_with_images(3);
    let args = [
        "tag",
        "--all",
        "--yes",
        "--json",
        "--bucket",
        bucket.to_str().unwrap(),
    ];
    let (status, out) = run(&args);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// A folder bucket built to break things, and the files outside it that
/// it points at.
struct Hostile {
    home: tempfile::TempDir,
    bucket: PathBuf,
    outside: PathBuf,
}

const OUTSIDE_DOC: &str = r#"{"Labels":[{"Name":"Outside","Confidence":99.0}]}"#;

fn write(bucket: &Path, key: &str, data: &[u8]) {
    let path = bucket.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn hostile_bucket() -> Hostile {
    let home = tempfile::tempdir().unwrap();
    let bucket = home.path().join("bucket");
    let outside = home.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("doc.json"), OUTSIDE_DOC).unwrap();
    std::fs::write(outside.join("image.jpg"), COFFEE).unwrap();
    for key in [
        "uploads/esc\x1b[31mred\x07.jpg",
        "uploads/\u{202e}gpj.exe",
        "uploads/new\nline\r.jpg",
        "uploads/a..b/..hidden.jpg",
        "uploads/bomb.jpg",
        "uploads/many.jpg",
        "uploads/fifo-meta.jpg",
        "uploads/link-meta.jpg",
    ] {
        write(&bucket, key, COFFEE);
    }
    // A 1,024-byte key, in segments a file system accepts.
    let mut long = String::from("uploads/");
    while long.len() < 1024 - 4 {
        let room = (1024 - 4 - long.len()).min(200);
        long.push_str(&"k".repeat(room));
        if long.len() < 1024 - 4 {
            long.push('/');
        }
    }
    long.push_str(".jpg");
    assert_eq!(long.len(), 1024);
    write(&bucket, &long, COFFEE);
    write(&bucket, "uploads/empty.jpg", b"");
    // Over the 64 MiB download limit (sparse: takes no space). Not 5 GB:
    // the folder store hashes whole files for their ETags, which takes a
    // minute there.
    let huge = std::fs::File::create(bucket.join("uploads/huge.jpg")).unwrap();
    huge.set_len(70 << 20).unwrap();
    // 100,000 levels of nesting.
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    write(&bucket, "metadata/bomb.jpg.json", bomb.as_bytes());
    // 290,000 labels, just under the 8 MiB limit for metadata.
    let many = format!(
        "[{}]",
        vec![r#"{"Name":"a","Confidence":1}"#; 290_000].join(",")
    );
    write(&bucket, "metadata/many.jpg.json", many.as_bytes());
    let mkfifo = |p: PathBuf| {
        let ok = Command::new("mkfifo").arg(&p).status().unwrap().success();
        assert!(ok, "mkfifo {}", p.display());
    };
    mkfifo(bucket.join("uploads/pipe.jpg"));
    mkfifo(bucket.join("metadata/fifo-meta.jpg.json"));
    std::os::unix::fs::symlink(outside.join("image.jpg"), bucket.join("uploads/link.jpg")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("doc.json"),
        bucket.join("metadata/link-meta.jpg.json"),
    )
    .unwrap();
    Hostile {
        home,
        bucket,
        outside,
    }
}

impl Hostile {
    fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--bucket", self.bucket.to_str().unwrap()]);
        let (status, out, err) = run(self.home.path(), &all);
        // An exit code, not a signal (a crash).
        assert!(status.code().is_some(), "{args:?}: {status:?} {err}");
        (status, out, err)
    }

    /// Nothing outside the bucket changed, nothing unreadable was replaced.
    fn assert_untouched(&self, bomb: &[u8]) {
        let read = |p: PathBuf| std::fs::read(p).unwrap();
        assert_eq!(read(self.outside.join("doc.json")), OUTSIDE_DOC.as_bytes());
        assert_eq!(read(self.outside.join("image.jpg")), COFFEE);
        let names: Vec<_> = std::fs::read_dir(&self.outside).unwrap().collect();
        assert_eq!(names.len(), 2, "nothing written outside the bucket");
        assert_eq!(read(self.bucket.join("metadata/bomb.jpg.json")), bomb);
        let many = read(self.bucket.join("metadata/many.jpg.json"));
        assert!(imgtag::contract::parse_metadata(&many).is_ok());
        let meta = |k: &str| std::fs::symlink_metadata(self.bucket.join(k)).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(meta("metadata/fifo-meta.jpg.json").file_type().is_fifo());
        assert!(meta("metadata/link-meta.jpg.json").file_type().is_symlink());
    }
}

#[test]
fn a_hostile_bucket_is_listed_shown_tagged_and_reviewed_safely() {
    let h = hostile_bucket();
    let bomb = std::fs::read(h.bucket.join("metadata/bomb.jpg.json")).unwrap();

    let (_, out, err) = h.run(&["ls"]);
    assert!(out.contains("malformed"), "{out}\n{err}");
    assert!(out.contains("\\x1b[31mred"), "escaped, still there: {out}");
    let (_, out, _) = h.run(&["ls", "--json"]);
    for line in out.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    for key in [
        "uploads/esc\x1b[31mred\x07.jpg",
        "uploads/\u{202e}gpj.exe",
        "uploads/bomb.jpg",
        "uploads/many.jpg",
        "uploads/fifo-meta.jpg",
        "uploads/pipe.jpg",
        "uploads/huge.jpg",
        "uploads/../outside/doc.json",
        "metadata/../../outside/doc.json",
    ] {
        h.run(&["show", key]);
    }

    let (_, out, err) = h.run(&["tag", "--all", "--json"]);
    let by_key: std::collections::BTreeMap<String, serde_json::Value> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let outcome = |k: &str| by_key.get(k).map(|v| v["outcome"].clone());
    assert_eq!(outcome("uploads/bomb.jpg"), Some("skipped".into()), "{err}");
    // Readable, if large: re-tagged like any other document.
    assert_eq!(outcome("uploads/many.jpg"), Some("tagged".into()));
    assert_eq!(outcome("uploads/huge.jpg"), Some("failed".into()));
    // A FIFO or a link at a metadata key is in the way, not followed.
    assert_eq!(outcome("uploads/fifo-meta.jpg"), Some("skipped".into()));
    assert_eq!(outcome("uploads/link-meta.jpg"), Some("skipped".into()));
    // A FIFO or a link in place of an image is not an image of the bucket.
    assert_eq!(outcome("uploads/pipe.jpg"), None);
    assert_eq!(outcome("uploads/link.jpg"), None);
    // The 1,024-byte key has no room for its metadata key: said, not hidden.
    let long = by_key
        .keys()
        .find(|k| k.len() == 1024)
        .expect("the long key");
    assert_eq!(outcome(long), Some("skipped".into()), "{:?}", by_key[long]);
    assert_eq!(outcome("uploads/empty.jpg"), Some("failed".into()));
    assert_eq!(
        outcome("uploads/esc\x1b[31mred\x07.jpg"),
        Some("tagged".into())
    );
    h.assert_untouched(&bomb);

    // Keys outside the bucket are refused, with a message.
    let (status, _, err) = h.run(&["tag", "uploads/../outside/image.jpg"]);
    assert!(!status.success() || !err.is_empty(), "{err}");
    let (_, _, err) = h.run(&["review", "--add", "Cat", "--status", "malformed"]);
    assert!(!err.is_empty());
    h.run(&[
        "review",
        "uploads/bomb.jpg",
        "uploads/link-meta.jpg",
        "--add",
        "Cat",
    ]);
    h.assert_untouched(&bomb);
}

/// The hostile keys of an S3 bucket, where keys can hold `..` segments
/// and be 1,024 bytes long in one piece; each holds a real photo.
fn s3_hostile_keys() -> Vec<String> {
    let long = format!("uploads/{}.jpg", "k".repeat(1024 - 12));
    [
        "uploads/esc\x1b]0;title\x07.jpg",
        "uploads/\u{202e}gpj.exe",
        "uploads/../../etc/passwd.jpg",
        "uploads/a/../b.jpg",
        "uploads/bomb.jpg",
        "uploads/many.jpg",
        long.as_str(),
    ]
    .map(String::from)
    .to_vec()
}

/// The hostile S3 bucket: the keys above, a zero-byte image, one that
/// claims 5 GiB, and a JSON bomb as a document. Returns the bomb.
fn s3_hostile_bucket(mem: &crate::common::s3mem::MemS3) -> String {
    mem.create_bucket("hostile");
    for k in s3_hostile_keys() {
        mem.insert("hostile", &k, COFFEE);
    }
    mem.insert("hostile", "uploads/empty.jpg", "");
    // Claims 5 GiB (and would stream them): never downloaded whole.
    mem.insert_zeros("hostile", "uploads/huge.jpg", 5 << 30);
    let bomb = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    mem.insert("hostile", "metadata/bomb.jpg.json", bomb.clone());
    // 300,000 labels: over the 8 MiB limit, so an unreadable document.
    let many = format!(
        "[{}]",
        vec![r#"{"Name":"a","Confidence":1}"#; 300_000].join(",")
    );
    assert!(many.len() as u64 > imgtag::contract::MAX_METADATA_BYTES);
    mem.insert("hostile", "metadata/many.jpg.json", many);
    bomb
}

/// Neither unreadable document of the S3 hostile bucket was rewritten.
fn assert_s3_documents_kept(mem: &crate::common::s3mem::MemS3, bomb: &str) {
    let data = |k: &str| mem.object("hostile", k).unwrap().data;
    assert_eq!(data("metadata/bomb.jpg.json"), bomb);
    assert!(data("metadata/many.jpg.json").len() as u64 > imgtag::contract::MAX_METADATA_BYTES);
    assert!(data("metadata/many.jpg.json").starts_with(br#"[{"Name":"a""#));
}

/// The same through the binary on an S3-compatible server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_s3_bucket_is_listed_shown_tagged_and_reviewed_safely() {
    use crate::common::s3mem::{self, MemS3};
    let mem = MemS3::new();
    let bomb = s3_hostile_bucket(&mem);
    let keys = s3_hostile_keys();
    let long = keys.last().unwrap().clone();
    let server = s3mem::serve(mem.clone()).await;
    let home = tempfile::tempdir().unwrap();
    let endpoint = server.endpoint();
    let imgtag = |args: Vec<String>| {
        let home = home.path().to_path_buf();
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend([
                "--bucket",
                "hostile",
                "--endpoint-url",
                &endpoint,
                "--path-style",
            ]);
            let (status, out, err) = run(&home, &all);
            assert!(status.code().is_some(), "{args:?}: {status:?} {err}");
            (out, err)
        })
    };
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (out, _) = imgtag(argv(&["ls", "--json"])).await.unwrap();
    assert_eq!(out.lines().count(), keys.len() + 2, "{out}");
    let huge = out
        .lines()
        .find(|l| l.contains("uploads/huge.jpg"))
        .unwrap();
    assert!(huge.contains(&(5u64 << 30).to_string()), "{huge}");
    for k in keys.iter().map(String::as_str).chain(["uploads/huge.jpg"]) {
        imgtag(argv(&["show", k])).await.unwrap();
    }
    let (out, err) = imgtag(argv(&["tag", "--all", "--json", "--detector", "local"]))
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcome = |k: &str| {
        let v = lines
            .iter()
            .find(|v| v["key"] == k)
            .unwrap_or_else(|| panic!("{k}: {err}"));
        (v["outcome"].as_str().unwrap().to_string(), v.clone())
    };
    let (o, v) = outcome("uploads/../../etc/passwd.jpg");
    assert_eq!(o, "tagged", "{v}");
    // `..` is only text in an S3 key: the document stays under metadata/.
    assert_eq!(v["metadata_key"], "metadata/../../etc/passwd.jpg.json");
    assert_eq!(outcome("uploads/bomb.jpg").0, "skipped");
    assert_eq!(
        outcome("uploads/many.jpg").0,
        "skipped",
        "over the size limit"
    );
    assert_eq!(outcome("uploads/empty.jpg").0, "failed");
    let (o, v) = outcome("uploads/huge.jpg");
    assert_eq!(o, "failed", "{v}");
    assert_eq!(outcome(&long).0, "skipped", "no room for its metadata key");
    imgtag(argv(&["review", "--add", "Cat", "--status", "malformed"]))
        .await
        .unwrap();
    imgtag(argv(&["review", "uploads/bomb.jpg", "--add", "Cat"]))
        .await
        .unwrap();
    assert_s3_documents_kept(&mem, &bomb);
}

/// No control character and no bidi override reaches the terminal.
fn assert_screen_safe(screen: &str) {
    let bad = |c: char| {
        (c.is_control() && c != '\n')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    assert!(
        !screen.chars().any(bad),
        "raw control on screen: {screen:?}"
    );
}

/// The outcome of the TUI's job on image `k`, as text.
fn tui_outcome(h: &crate::common::tui::Harness, k: &str) -> String {
    let found = h.outcomes.iter().find(|(key, _)| key == k);
    format!("{:?}", found.unwrap_or_else(|| panic!("{k} not tagged")).1)
}

/// The TUI on `store` with the local model, its listing done.
async fn tui_on(store: imgtag::storage::DynStore) -> crate::common::tui::Harness {
    let det: imgtag::detection::DynDetector =
        std::sync::Arc::new(imgtag::detection::LocalDetector::load().unwrap());
    let source = imgtag::tui::runtime::DetectorSource::Ready(det);
    let dir = tempfile::tempdir().unwrap();
    crate::common::tui::Harness::new(store, source, dir).await
}

/// Selects every row in turn (its document and thumbnail load) and draws
/// the screen each time, then tags the untagged (`T`, confirmed).
async fn walk_draw_and_tag(h: &mut crate::common::tui::Harness) {
    use crate::common::tui::key;
    use ratatui::{Terminal, backend::TestBackend};
    h.send(key('g'));
    for _ in 0..h.app.rows.len() {
        h.settle().await;
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| imgtag::tui::view::draw(f, &h.app)).unwrap();
        let buf = t.backend().buffer();
        let screen: String = buf.content().iter().map(|c| c.symbol()).collect();
        assert_screen_safe(&screen);
        h.send(key('j'));
    }
    h.keys("Ty");
    h.settle().await;
}

/// The TUI, headless, over the hostile folder bucket: walked and drawn,
/// then `T` tags the untagged; nothing outside the bucket or unreadable
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_lists_shows_and_tags_a_hostile_folder_safely() {
    use std::sync::Arc;
    let hb = hostile_bucket();
    let bomb = std::fs::read(hb.bucket.join("metadata/bomb.jpg.json")).unwrap();
    let store: imgtag::storage::DynStore =
        Arc::new(imgtag::storage::LocalStore::open(&hb.bucket).unwrap());
    let mut h = tui_on(store).await;
    assert!(h.app.rows.len() >= 11, "{:?}", h.app.message);
    walk_draw_and_tag(&mut h).await;
    let outcome = |k: &str| tui_outcome(&h, k);
    assert!(outcome("uploads/huge.jpg").starts_with("Failed"));
    assert!(outcome("uploads/esc\x1b[31mred\x07.jpg").starts_with("Tagged"));
    assert!(!h.outcomes.iter().any(|(k, _)| k == "uploads/pipe.jpg"));
    hb.assert_untouched(&bomb);
}

/// The TUI, headless, over the hostile S3 bucket: every row selected (its
/// document and thumbnail loaded) and drawn, then `T` tags the untagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_lists_shows_and_tags_a_hostile_s3_bucket_safely() {
    use crate::common::s3mem::{self, MemS3};
    use crate::common::tui::key;
    use imgtag::storage::{DynStore, S3Store};
    use std::sync::Arc;

    let mem = MemS3::new();
    let bomb = s3_hostile_bucket(&mem);
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "hostile",
    ));
    let mut h = tui_on(store).await;
    let n = s3_hostile_keys().len() + 2;
    assert_eq!(h.app.rows.len(), n, "{:?}", h.app.message);
    walk_draw_and_tag(&mut h).await;
    let outcome = |k: &str| tui_outcome(&h, k);
    assert!(outcome("uploads/huge.jpg").starts_with("Failed"));
    assert!(outcome("uploads/empty.jpg").starts_with("Failed"));
    assert!(outcome("uploads/../../etc/passwd.jpg").starts_with("Tagged"));
    let long = s3_hostile_keys().pop().unwrap();
    assert!(outcome(&long).starts_with("Skipped"), "{}", outcome(&long));
    // The bomb is not untagged, and not imgtag's to replace unasked.
    assert!(!h.outcomes.iter().any(|(k, _)| k == "uploads/bomb.jpg"));
    h.select("bomb");
    h.send(key('t'));
    let confirm = matches!(h.app.mode, imgtag::tui::app::Mode::Confirm { .. });
    assert!(confirm, "replacing an unreadable document asks first");
    h.send(key('n'));
    h.settle().await;
    assert!(!h.outcomes.iter().any(|(k, _)| k == "uploads/many.jpg"));
    assert_s3_documents_kept(&mem, &bomb);
}
