//! `imgtag watch`, the real binary: on a local folder (file-system
//! notifications, debounce) and polling an S3-compatible server on loopback
//! that goes away and comes back.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::s3mem::{self, MemS3};

const ASTRONAUT: &[u8] = include_bytes!("../assets/samples/astronaut.jpg");
const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");
const ROCKET: &[u8] = include_bytes!("../assets/samples/rocket.jpg");

/// The model is real and CI machines are slow.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A running `imgtag watch`, its output collected as it comes. Killed if
/// a test fails before interrupting it.
struct Watch {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(home: &Path, args: &[&str]) -> Watch {
        let mut all = vec!["watch"];
        all.extend(args);
        let mut child = crate::common::bin::command(home, &all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imgtag watch");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = BufReader::new(child.stdout.take().unwrap());
        let err = BufReader::new(child.stderr.take().unwrap());
        let (o, e) = (stdout.clone(), stderr.clone());
        let readers = vec![
            std::thread::spawn(move || {
                for line in out.lines().map_while(Result::ok) {
                    o.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                for line in err.lines().map_while(Result::ok) {
                    let mut e = e.lock().unwrap();
                    e.push_str(&line);
                    e.push('\n');
                }
            }),
        ];
        Watch {
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    /// The outcome lines printed so far for `key`.
    fn outcomes(&self, key: &str) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
            })
            .filter(|v| v["key"] == key)
            .map(|v| v["outcome"].as_str().unwrap().to_string())
            .collect()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn still_running(&mut self) {
        let status = self.child.as_mut().unwrap().try_wait().unwrap();
        assert!(
            status.is_none(),
            "the watcher exited ({status:?}); stderr:\n{}",
            self.stderr()
        );
    }

    /// Waits for the watcher to exit on its own.
    fn exited(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(t0.elapsed() < TIMEOUT, "still running:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        (status, self.stderr())
    }

    /// SIGINT, as Ctrl-C sends; returns the exit status once all output
    /// is read.
    fn interrupt(mut self) -> (ExitStatus, Vec<String>, String) {
        let mut child = self.child.take().unwrap();
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > TIMEOUT {
                let _ = child.kill();
                panic!("the watcher did not stop on SIGINT:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let out = self.stdout.lock().unwrap().clone();
        (status, out, self.stderr())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` until it returns something, failing after [`TIMEOUT`].
fn wait_for<T>(what: &str, w: &mut Watch, mut f: impl FnMut(&Watch) -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f(w) {
            return v;
        }
        w.still_running();
        assert!(
            t0.elapsed() < TIMEOUT,
            "timed out waiting for {what}; stdout:\n{}\nstderr:\n{}",
            w.stdout.lock().unwrap().join("\n"),
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn md5_etag(data: &[u8]) -> String {
    format!("\"{}\"", s3mem::md5_hex(data))
}

fn label_names(doc: &serde_json::Value) -> Vec<String> {
    doc["Labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Name"].as_str().unwrap().to_string())
        .collect()
}

/// The document for a complete image: real labels, no error, and the
/// ETag and size of every byte of it.
fn assert_tagged(doc: &serde_json::Value, key: &str, data: &[u8]) {
    assert_tagged_at(doc, key, data, 10.0);
}

fn assert_tagged_at(doc: &serde_json::Value, key: &str, data: &[u8], min_confidence: f64) {
    let t = &doc["ImgTag"];
    assert_eq!(t["Source"]["Key"], key, "{doc}");
    assert!(t["Error"].is_null(), "{doc}");
    assert_eq!(t["Source"]["ETag"], md5_etag(data), "{doc}");
    assert_eq!(t["Source"]["Size"], data.len(), "{doc}");
    assert_eq!(t["Detector"], "local");
    assert_eq!(t["MinConfidence"], min_confidence);
    assert!(!label_names(doc).is_empty(), "{doc}");
}

fn read_doc(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).expect("metadata documents are written whole"))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn watch_a_folder_tags_new_images_once_they_are_complete() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let up = bucket.path().join("uploads");
    let meta = bucket.path().join("metadata");
    std::fs::create_dir_all(&up).unwrap();
    // Already there when the watch starts: the initial scan tags it.
    std::fs::write(up.join("before.jpg"), ASTRONAUT).unwrap();

    let b = bucket.path().to_str().unwrap();
    let mut w = Watch::start(
        home.path(),
        &[
            "--bucket",
            b,
            "--json",
            "--debounce",
            "1000",
            // Low enough that every sample gets labels (ImageNet has no
            // class for people or rockets).
            "--min-confidence",
            "10",
        ],
    );
    wait_for("the initial scan", &mut w, |w| {
        (!w.outcomes("uploads/before.jpg").is_empty()).then_some(())
    });
    assert_eq!(w.outcomes("uploads/before.jpg"), ["tagged"]);

    // Three images: one plain, one in a new folder, and one written slowly,
    // in chunks with pauses well under the debounce, so that a watcher that
    // read on the first event (or on a fixed delay) would see a truncated
    // file.
    std::fs::write(up.join("coffee.jpg"), COFFEE).unwrap();
    std::fs::create_dir(up.join("cats")).unwrap();
    std::fs::write(up.join("cats/chelsea.png"), CHELSEA).unwrap();
    {
        let mut f = std::fs::File::create(up.join("rocket.jpg")).unwrap();
        for chunk in ROCKET.chunks(ROCKET.len().div_ceil(10)) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let docs = wait_for("three documents", &mut w, |_| {
        Some([
            read_doc(&meta.join("coffee.jpg.json"))?,
            read_doc(&meta.join("cats/chelsea.png.json"))?,
            read_doc(&meta.join("rocket.jpg.json"))?,
        ])
    });
    assert_tagged(&docs[0], "uploads/coffee.jpg", COFFEE);
    assert_tagged(&docs[1], "uploads/cats/chelsea.png", CHELSEA);
    assert_tagged(&docs[2], "uploads/rocket.jpg", ROCKET);
    let cat = label_names(&docs[1]);
    assert!(cat.iter().any(|n| n == "Cat"), "{cat:?}");

    // A corrupt JPEG (a real one, cut short) gets an Error document.
    let broken = &COFFEE[..COFFEE.len() / 3];
    std::fs::write(up.join("broken.jpg"), broken).unwrap();
    let doc = wait_for("the Error document", &mut w, |_| {
        read_doc(&meta.join("broken.jpg.json"))
    });
    let err = &doc["ImgTag"]["Error"];
    assert!(err["Code"].is_string(), "{doc}");
    assert!(label_names(&doc).is_empty(), "{doc}");
    assert_eq!(doc["ImgTag"]["Source"]["ETag"], md5_etag(broken));

    // Still running: a new image, and a replaced one (new content, new
    // ETag) is tagged again.
    std::fs::write(up.join("after.jpg"), ROCKET).unwrap();
    std::fs::write(up.join("before.jpg"), COFFEE).unwrap();
    wait_for("the image after the corrupt one", &mut w, |_| {
        let after = read_doc(&meta.join("after.jpg.json"))?;
        let before = read_doc(&meta.join("before.jpg.json"))?;
        (before["ImgTag"]["Source"]["ETag"] == md5_etag(COFFEE)).then_some((after, before))
    });
    let after = read_doc(&meta.join("after.jpg.json")).unwrap();
    assert_tagged(&after, "uploads/after.jpg", ROCKET);
    let before = read_doc(&meta.join("before.jpg.json")).unwrap();
    assert_tagged(&before, "uploads/before.jpg", COFFEE);
    // Let the outcome lines reach us before stopping.
    wait_for("the outcome lines", &mut w, |w| {
        (w.outcomes("uploads/after.jpg").len() == 1 && w.outcomes("uploads/before.jpg").len() == 2)
            .then_some(())
    });

    let (status, out, stderr) = w.interrupt();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("watched for"), "{stderr}");
    // Each image was read once, complete: one outcome each.
    let count = |key: &str, what: &str| {
        out.iter()
            .filter(|l| l.contains(&format!("\"key\":\"{key}\"")))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["outcome"], what, "{l}");
            })
            .count()
    };
    assert_eq!(count("uploads/coffee.jpg", "tagged"), 1, "{out:?}");
    assert_eq!(count("uploads/cats/chelsea.png", "tagged"), 1, "{out:?}");
    assert_eq!(count("uploads/rocket.jpg", "tagged"), 1, "{out:?}");
    assert_eq!(count("uploads/broken.jpg", "failed"), 1, "{out:?}");
    assert_eq!(count("uploads/after.jpg", "tagged"), 1, "{out:?}");
    assert_eq!(count("uploads/before.jpg", "tagged"), 2, "{out:?}");
    assert_eq!(out.len(), 7, "nothing else was tagged: {out:?}");
    let left: Vec<String> = files_under(bucket.path())
        .into_iter()
        .filter(|n| n.starts_with(".imgtag-tmp-"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

/// `--poll` (for network file systems, and the fallback when notifications
/// are unavailable): the same debounce on top of polling. With
/// `--no-initial-scan`, what was there before is left alone.
#[test]
fn watch_a_folder_by_polling() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let up = bucket.path().join("uploads");
    // Untagged, but there before the watch and no initial scan asked for.
    std::fs::create_dir_all(up.join("old")).unwrap();
    std::fs::write(up.join("old/chelsea.png"), CHELSEA).unwrap();
    let b = bucket.path().to_str().unwrap();
    let mut w = Watch::start(
        home.path(),
        &[
            "--bucket",
            b,
            "--json",
            "--no-initial-scan",
            "--poll",
            "--interval",
            "0.1",
            "--debounce",
            "1000",
        ],
    );
    wait_for("the watch to start", &mut w, |w| {
        w.stderr().contains("(polling").then_some(())
    });
    std::fs::create_dir(up.join("in")).unwrap();
    {
        let mut f = std::fs::File::create(up.join("in/coffee.jpg")).unwrap();
        for chunk in COFFEE.chunks(COFFEE.len().div_ceil(8)) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let doc = wait_for("the document", &mut w, |_| {
        read_doc(&bucket.path().join("metadata/in/coffee.jpg.json"))
    });
    assert_tagged_at(&doc, "uploads/in/coffee.jpg", COFFEE, 55.0);
    wait_for("the outcome line", &mut w, |w| {
        (!w.outcomes("uploads/in/coffee.jpg").is_empty()).then_some(())
    });
    let (status, out, stderr) = w.interrupt();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert_eq!(
        out.len(),
        1,
        "read once, complete, and nothing else: {out:?}"
    );
    assert!(!bucket.path().join("metadata/old").exists());
    assert!(out[0].contains("\"outcome\":\"tagged\""), "{out:?}");
}

/// Polls the in-memory bucket (off the server's threads) until `key` exists.
async fn wait_for_object(mem: &MemS3, key: &str, w: &mut Watch) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        if let Some(o) = mem.object("watched", key) {
            return serde_json::from_slice(&o.data).unwrap();
        }
        w.still_running();
        assert!(
            t0.elapsed() < TIMEOUT,
            "timed out waiting for {key}; stderr:\n{}",
            w.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_polls_a_bucket_and_survives_an_outage() {
    let home = tempfile::tempdir().unwrap();
    let mem = MemS3::new();
    mem.create_bucket("watched");
    mem.insert("watched", "uploads/", "");
    mem.insert("watched", "uploads/before.jpg", ASTRONAUT);
    let server = s3mem::serve(mem.clone()).await;
    let addr = server.addr;
    let endpoint = server.endpoint();

    let mut w = Watch::start(
        home.path(),
        &[
            "--bucket",
            "watched",
            "--endpoint-url",
            &endpoint,
            "--path-style",
            "--detector",
            "local",
            "--interval",
            "0.5",
            "--min-confidence",
            "10",
            "--json",
        ],
    );
    // A bucket that does not exist is a mistake to report, not to wait out.
    let missing = Watch::start(
        home.path(),
        &[
            "--bucket",
            "no-such-bucket",
            "--endpoint-url",
            &endpoint,
            "--path-style",
            "--detector",
            "local",
        ],
    );
    let (status, stderr) = tokio::task::spawn_blocking(move || missing.exited())
        .await
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("bucket \"no-such-bucket\" does not exist"),
        "{stderr}"
    );

    let doc = wait_for_object(&mem, "metadata/before.jpg.json", &mut w).await;
    assert_tagged(&doc, "uploads/before.jpg", ASTRONAUT);

    mem.insert("watched", "uploads/new/coffee.jpg", COFFEE);
    let doc = wait_for_object(&mem, "metadata/new/coffee.jpg.json", &mut w).await;
    assert_tagged(&doc, "uploads/new/coffee.jpg", COFFEE);

    // The server goes away: the watcher says so and keeps going.
    server.stop();
    drop(server);
    let t0 = Instant::now();
    while !w.stderr().contains("trying again") {
        w.still_running();
        assert!(
            t0.elapsed() < TIMEOUT,
            "no listing error reported:\n{}",
            w.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An image arrives while it is down, and is tagged once it is back.
    mem.insert("watched", "uploads/during.png", CHELSEA);
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.still_running();
    let _server = s3mem::serve_at(mem.clone(), addr).await;
    let doc = wait_for_object(&mem, "metadata/during.png.json", &mut w).await;
    assert_tagged(&doc, "uploads/during.png", CHELSEA);
    assert!(w.stderr().contains("listing works again"), "{}", w.stderr());
    let t0 = Instant::now();
    while w.outcomes("uploads/during.png").is_empty() {
        assert!(t0.elapsed() < TIMEOUT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A replaced image (new content, new ETag in the listing) is tagged
    // again.
    mem.insert("watched", "uploads/before.jpg", COFFEE);
    let t0 = Instant::now();
    loop {
        let doc = wait_for_object(&mem, "metadata/before.jpg.json", &mut w).await;
        if doc["ImgTag"]["Source"]["ETag"] == md5_etag(COFFEE) {
            assert_tagged(&doc, "uploads/before.jpg", COFFEE);
            break;
        }
        assert!(t0.elapsed() < TIMEOUT, "not re-tagged: {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while w.outcomes("uploads/before.jpg").len() < 2 {
        assert!(t0.elapsed() < TIMEOUT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, out, stderr) = tokio::task::spawn_blocking(move || w.interrupt())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    let keys: Vec<String> = out
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["outcome"], "tagged", "{l}");
            v["key"].as_str().unwrap().to_string()
        })
        .collect();
    // Each image once per content; the folder placeholder never.
    assert_eq!(
        keys,
        [
            "uploads/before.jpg",
            "uploads/new/coffee.jpg",
            "uploads/during.png",
            "uploads/before.jpg"
        ],
        "{stderr}"
    );
}
