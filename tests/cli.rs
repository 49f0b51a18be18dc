//! The real `imgtag` binary against a local folder and against an
//! S3-compatible server on loopback (`--endpoint-url`).

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;

use common::bin::{imgtag, imgtag_async};
use common::fixtures::{self, ESC_KEY};
use common::s3mem::{self, MemS3};
use imgtag::status::Status;
use imgtag::storage::{DynStore, LocalStore, S3Store};

fn statuses(out: &Output) -> BTreeMap<String, String> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            (
                v["key"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected_map(expected: &[(String, Status)]) -> BTreeMap<String, String> {
    expected
        .iter()
        .map(|(k, s)| (k.clone(), s.as_str().to_string()))
        .collect()
}

fn assert_terminal_safe(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && imgtag::sanitize::is_unsafe(c)),
        "raw control characters reached the terminal: {text:?}"
    );
}

#[tokio::test]
async fn ls_and_show_on_a_local_folder() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(bucket.path()).unwrap());
    let expected = fixtures::populate(&store).await;
    let b = bucket.path().to_str().unwrap();

    let out = imgtag_async(home.path(), &["ls", "--bucket", b, "--json"]).await;
    assert_eq!(statuses(&out), expected_map(&expected));
    assert_terminal_safe(&out.stdout);

    // The table is terminal-safe too, and names the escaped key visibly.
    let out = imgtag_async(home.path(), &["ls", "--bucket", b]).await;
    assert!(out.status.success());
    assert_terminal_safe(&out.stdout);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("uploads/esc\\x1b[2J\\x1b]0;pwned\\x07key.jpg"),
        "{table}"
    );
    assert!(table.contains("needs-review  65.3  Feline"), "{table}");

    // Filters.
    let out = imgtag_async(
        home.path(),
        &["ls", "--bucket", b, "--json", "--status", "untagged,stale"],
    )
    .await;
    let got = statuses(&out);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [
            ESC_KEY,
            "uploads/replaced.jpg",
            "uploads/untagged+plus 100%.jpg"
        ]
    );
    let out = imgtag_async(
        home.path(),
        &["ls", "--bucket", b, "--json", "--label", "feline"],
    )
    .await;
    let got = statuses(&out);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [
            "uploads/2024/cat.jpg",
            "uploads/replaced.jpg",
            "uploads/weak cat.jpg"
        ]
    );
    let out = imgtag_async(
        home.path(),
        &["ls", "--bucket", b, "--json", "--below", "70"],
    )
    .await;
    assert_eq!(
        statuses(&out).keys().cloned().collect::<Vec<_>>(),
        ["uploads/weak cat.jpg"]
    );

    // show: pairing through a legacy key, and a hostile key stays inert.
    let out = imgtag_async(home.path(), &["show", "--bucket", b, "uploads/legacy.png"]).await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("metadata/legacy.json (legacy key without extension)"),
        "{text}"
    );
    assert!(text.contains("Dog"), "{text}");
    let out = imgtag_async(home.path(), &["show", "--bucket", b, ESC_KEY]).await;
    assert!(out.status.success());
    assert_terminal_safe(&out.stdout);
    let out = imgtag_async(
        home.path(),
        &["show", "--bucket", b, "uploads/garbage.jpg", "--json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "malformed");
    assert!(v["malformed"].as_str().unwrap().contains("not JSON"));
}

#[tokio::test]
async fn ls_against_an_s3_compatible_endpoint() {
    let home = tempfile::tempdir().unwrap();
    let mem = MemS3::new();
    mem.create_bucket("cli-bucket");
    let server = s3mem::serve(mem).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "cli-bucket",
    ));
    let expected = fixtures::populate(&store).await;
    let endpoint = server.endpoint();
    let out = imgtag_async(
        home.path(),
        &[
            "ls",
            "--bucket",
            "cli-bucket",
            "--endpoint-url",
            &endpoint,
            "--path-style",
            "--json",
        ],
    )
    .await;
    assert_eq!(statuses(&out), expected_map(&expected));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("1 orphan"), "{summary}");

    // A bucket that does not exist: a clear message and a failing exit code.
    let out = imgtag_async(
        home.path(),
        &[
            "ls",
            "--bucket",
            "no-such-bucket",
            "--endpoint-url",
            &endpoint,
            "--path-style",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bucket \"no-such-bucket\" does not exist"),
        "{err}"
    );

    // Wrong credentials: access denied, said plainly. (Run off the async
    // thread: the server lives on it.)
    let config = home.path().join("empty-config.toml");
    let h = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_imgtag"))
            .args([
                "ls",
                "--bucket",
                "cli-bucket",
                "--endpoint-url",
                &endpoint,
                "--path-style",
            ])
            .arg("--config")
            .arg(config)
            .env_clear()
            .env("HOME", h)
            .env("AWS_ACCESS_KEY_ID", "AKIAWRONG")
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("access denied"), "{err}");
}

/// No credentials and no instance metadata (a laptop): one clear error,
/// none of the SDK's warnings about each source it tried; and a bucket name
/// that is also a folder here says how to mean the folder.
#[test]
fn no_credentials_is_one_clear_error_and_a_folder_of_that_name_gets_a_hint() {
    let home = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    std::fs::create_dir(here.path().join("photos-here")).unwrap();
    let config = home.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    // A loopback port with nothing listening: instance metadata is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args(["ls", "--bucket", "photos-here", "--no-index", "--config"])
        .arg(&config)
        .current_dir(here.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("photos-here is read as an S3 bucket name")
            && lines[0].contains("write ./photos-here"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("imgtag: ") && lines[1].contains("no usable AWS credentials"),
        "{err}"
    );
}

#[test]
fn demo_bucket_lists_every_kind_of_image() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args(["ls", "--demo", "--json", "--config"])
        .arg(&config)
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    let got = statuses(&out);
    assert_eq!(got["uploads/animals/chelsea.png"], "needs-review");
    assert_eq!(got["uploads/drinks/coffee.jpg"], "tagged");
    assert_eq!(got["uploads/space/astronaut.jpg"], "tagged");
    assert_eq!(got["uploads/space/rocket launch.jpg"], "untagged");
    assert_eq!(got["metadata/deleted-photo.jpg.json"], "orphan");
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args(["ls", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bucket",
        "--demo",
        "--profile",
        "--region",
        "--endpoint-url",
        "--path-style",
        "--uploads-prefix",
        "--metadata-prefix",
        "--detector",
        "--min-confidence",
        "--max-labels",
        "--review-below",
        "--config",
        "--status",
        "--label",
        "--below",
        "--json",
        "--text-detection",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
}

/// The binaries parse the flags (the library only resolves them): a bad
/// value is refused with the accepted ones named, before anything runs.
#[test]
fn flag_values_are_checked_by_the_binary() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_imgtag"))
            .args(args)
            .env_remove("IMGTAG_TEXT_DETECTION")
            .output()
            .unwrap()
    };
    for (flag, value, says) in [
        ("--text-detection", "on", "auto, always or never"),
        ("--detector", "openai", "rekognition or local"),
        ("--max-labels", "0", "at least 1"),
        ("--min-confidence", "101", "0-100"),
    ] {
        let out = run(&["ls", "--bucket", "b", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}

#[test]
fn tag_untagged_then_nothing_left_to_do() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let up = bucket.path().join("uploads");
    std::fs::create_dir_all(up.join("cats")).unwrap();
    std::fs::write(
        up.join("cats/chelsea.png"),
        include_bytes!("../assets/samples/chelsea.png"),
    )
    .unwrap();
    std::fs::write(
        up.join("coffee cup.jpg"),
        include_bytes!("../assets/samples/coffee.jpg"),
    )
    .unwrap();
    std::fs::write(up.join("notes.jpg"), b"not an image").unwrap();
    let b = bucket.path().to_str().unwrap();

    let dry = imgtag(
        home.path(),
        &["tag", "--bucket", b, "--untagged", "--dry-run"],
    );
    assert!(dry.status.success());
    assert_eq!(String::from_utf8_lossy(&dry.stdout).lines().count(), 3);
    assert!(
        !bucket.path().join("metadata").exists(),
        "a dry run writes nothing"
    );

    let out = imgtag(home.path(), &["tag", "--bucket", b, "--untagged", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcome = |k: &str| lines.iter().find(|v| v["key"] == k).unwrap()["outcome"].clone();
    assert_eq!(outcome("uploads/cats/chelsea.png"), "tagged");
    assert_eq!(outcome("uploads/coffee cup.jpg"), "tagged");
    assert_eq!(outcome("uploads/notes.jpg"), "failed");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("2 tagged, 0 unchanged, 1 failed"),
        "{summary}"
    );

    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bucket.path().join("metadata/cats/chelsea.png.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = doc["Labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Cat") && names.contains(&"Animal"),
        "{names:?}"
    );
    assert_eq!(doc["ImgTag"]["TaggedBy"], "imgtag");
    assert_eq!(doc["ImgTag"]["Detector"], "local");

    // Nothing is untagged any more; re-running everything changes nothing.
    let again = imgtag(home.path(), &["tag", "--bucket", b, "--all"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 tagged, 3 unchanged"));
    let ls = imgtag(
        home.path(),
        &["ls", "--bucket", b, "--status", "untagged", "--json"],
    );
    assert!(ls.stdout.is_empty());

    // Saying nothing about which images is an error, not "everything".
    let none = imgtag(home.path(), &["tag", "--bucket", b]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("say which images"));
}

#[test]
fn ctrl_c_stops_cleanly_keeping_finished_writes() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let up = bucket.path().join("uploads");
    std::fs::create_dir_all(&up).unwrap();
    // Distinct bytes per image, so none is a copy of another.
    let base = image::load_from_memory(include_bytes!("../assets/samples/coffee.jpg")).unwrap();
    for i in 0..80u32 {
        let img = base.crop_imm(i % 40, i / 40, 500, 350);
        img.save(up.join(format!("img{i:03}.png"))).unwrap();
    }
    let config = home.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_imgtag"))
        .args([
            "tag",
            "--untagged",
            "--concurrency",
            "1",
            "--json",
            "--config",
        ])
        .arg(&config)
        .arg("--bucket")
        .arg(bucket.path())
        .env("HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first result, then interrupt.
    let meta = bucket.path().join("metadata");
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&meta).map_or(0, |d| d.count()) == 0 {
        assert!(t0.elapsed().as_secs() < 60, "no image was tagged");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
    // Every result reported is on disk and whole; nothing half-written.
    let reported = String::from_utf8(out.stdout).unwrap().lines().count();
    let docs: Vec<_> = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(docs.len() < 80, "the run stopped early");
    assert_eq!(docs.len(), reported);
    for d in &docs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".imgtag-tmp-"), "temp file left: {name}");
        imgtag::contract::parse_metadata(&std::fs::read(d).unwrap()).unwrap();
    }
}

/// `show` prints each label's instance boxes under it; `--json` carries
/// them in the document.
#[test]
fn show_prints_instance_boxes() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let root = bucket.path();
    std::fs::create_dir_all(root.join("uploads")).unwrap();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    std::fs::write(root.join("uploads/park.jpg"), b"not looked at").unwrap();
    let doc = r#"{"Labels":[
      {"Name":"Person","Confidence":99.1,"Instances":[
        {"BoundingBox":{"Width":0.4,"Height":0.55,"Left":0.12,"Top":0.3},"Confidence":91.2},
        {"BoundingBox":{"Width":0.1,"Height":0.2,"Left":0.7,"Top":0.05}},
        {"Confidence":60.0}]},
      {"Name":"Grass","Confidence":80.0},
      {"Name":"Dog\u001b[2J","Confidence":70.0,"Instances":[
        {"BoundingBox":{"Width":0.3,"Height":0.25,"Left":0.5,"Top":0.6},"Confidence":70.04}]}]}"#;
    std::fs::write(root.join("metadata/park.jpg.json"), doc).unwrap();
    let b = root.to_str().unwrap();

    let out = imgtag(home.path(), &["show", "--bucket", b, "uploads/park.jpg"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_terminal_safe(&out.stdout);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
    };
    let person = at("  Person");
    assert_eq!(
        &lines[person + 1..person + 4],
        [
            "    box  left 0.12 top 0.30 width 0.40 height 0.55  conf 91.2",
            "    box  left 0.70 top 0.05 width 0.10 height 0.20",
            "    instance without a box  conf 60.0",
        ]
    );
    // A label without instances has no box line under it.
    let grass = at("  Grass");
    assert!(!lines[grass + 1].contains("box"), "{text}");
    let dog = at("  Dog");
    assert_eq!(
        lines[dog + 1],
        "    box  left 0.50 top 0.60 width 0.30 height 0.25  conf 70.0"
    );
    assert_eq!(text.matches("    box ").count(), 3);

    let out = imgtag(
        home.path(),
        &["show", "--bucket", b, "uploads/park.jpg", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let person = &v["metadata"]["Labels"][0];
    assert_eq!(person["Instances"].as_array().unwrap().len(), 3);
    assert!(
        (person["Instances"][0]["BoundingBox"]["Left"]
            .as_f64()
            .unwrap()
            - 0.12)
            .abs()
            < 1e-6
    );
}
