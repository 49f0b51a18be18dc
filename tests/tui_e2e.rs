//! The real `imgtag-tui` binary in a pseudo-terminal (tmux): start it on a
//! local-folder bucket, press the keys that tag an untagged image, and check
//! both the screen and the JSON written. Needs tmux (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux must be installed (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn put(root: &Path, key: &str, data: &[u8]) {
    let p = root.join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn tag_an_untagged_image_from_the_keyboard() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let root = bucket.path();
    put(
        root,
        "uploads/pets/my cat.png",
        include_bytes!("../assets/samples/chelsea.png"),
    );
    put(
        root,
        "uploads/coffee.jpg",
        include_bytes!("../assets/samples/coffee.jpg"),
    );
    put(
        root,
        "metadata/coffee.jpg.json",
        br#"{"Labels":[{"Name":"Cup","Confidence":93.0}]}"#,
    );

    let tmux = Tmux {
        socket: format!("imgtag-e2e-{}", std::process::id()),
    };
    let status_file = home.path().join("exit-status");
    // HOME points the data, cache, state and config dirs at the temp dir.
    let script = format!(
        "HOME='{home}' XDG_CONFIG_HOME='{home}/.config' '{bin}' --bucket '{bucket}' --detector local; echo $? > '{status}'",
        home = home.path().display(),
        bin = env!("CARGO_BIN_EXE_imgtag-tui"),
        bucket = root.display(),
        status = status_file.display(),
    );
    start_session(&tmux, &script);

    // Default image protocol (auto): the terminal query must not hang or
    // eat keys inside tmux.
    let s = tmux.wait_for("the listing", |s| {
        s.contains("pets/my cat.png") && s.contains("coffee.jpg.json")
    });
    assert!(s.contains("Cup"), "{s}");
    assert!(s.contains("MinConfidence 55"), "{s}");
    // Sorted by name, coffee.jpg is first; move to the cat, check it is
    // untagged, then tag it.
    tmux.keys(&["j"]);
    let s = tmux.wait_for("the cat selected", |s| {
        s.lines().any(|l| l.contains("▶· pets/my cat.png")) && s.contains("not tagged yet")
    });
    assert!(s.contains("untagged"), "{s}");
    tmux.keys(&["t"]);
    let meta = root.join("metadata/pets/my cat.png.json");
    tmux.wait_for("the tag result on screen", |s| {
        s.contains("pets/my cat.png.json") && s.contains("tagged uploads/pets/my cat.png")
    });
    // The new document is read after the result arrives.
    let s = tmux.wait_for("the new labels", |s| s.contains("Cat ") && s.contains('█'));
    assert!(s.contains("pets/my cat.png.json"), "{s}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("metadata written")).unwrap();
    assert_eq!(doc["ImgTag"]["TaggedBy"], "imgtag-tui");
    assert_eq!(doc["ImgTag"]["Source"]["Key"], "uploads/pets/my cat.png");
    let names: Vec<&str> = doc["Labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Cat"), "{names:?}");
    // The screen shows the new labels with bars.
    assert!(s.contains("Cat "), "{s}");
    assert!(s.contains('█'), "{s}");
    // Help, then quit; the terminal is restored and the exit status is 0.
    tmux.keys(&["?"]);
    tmux.wait_for("help", |s| s.contains("imgtag-tui keys"));
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status_file.exists() {
        assert!(Instant::now() < deadline, "imgtag-tui did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&status_file).unwrap().trim(), "0");
    // No temp files left in the bucket.
    let leftovers: Vec<_> = walk(root)
        .into_iter()
        .filter(|p| p.contains(".imgtag-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// A terminal that answers `--theme auto`'s background query 400 ms late
/// (tests/fixtures/slow_terminal.py), with keys typed while the probe
/// waits: the keys act (`/dog` opens the filter prompt and types `dog`),
/// and the late answer (`ESC ] 11 ; rgb:fdfd/f6f6/e3e3 ESC \`) types
/// nothing and switches nothing.
#[test]
fn a_late_terminal_answer_is_no_keys_and_keys_typed_meanwhile_act() {
    let home = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let root = bucket.path();
    for (name, label) in [("cat", "Cat"), ("dog", "Dog"), ("fern", "Plant")] {
        put(root, &format!("uploads/{name}.jpg"), b"not decoded");
        let doc = format!(r#"{{"Labels":[{{"Name":"{label}","Confidence":93.0}}]}}"#);
        put(root, &format!("metadata/{name}.jpg.json"), doc.as_bytes());
    }
    let tmux = Tmux {
        socket: format!("imgtag-e2e-slow-{}", std::process::id()),
    };
    let done = home.path().join("answered");
    let status_file = home.path().join("exit-status");
    let script = format!(
        "HOME='{home}' XDG_CONFIG_HOME='{home}/.config' SLOW_TERM_DELAY=0.4 SLOW_TERM_KEYS=/dog \
         SLOW_TERM_DONE='{done}' python3 '{wrapper}' '{bin}' --bucket '{bucket}' --detector local \
         --theme auto --image-protocol none; echo $? > '{status}'",
        home = home.path().display(),
        done = done.display(),
        wrapper = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/slow_terminal.py"
        ),
        bin = env!("CARGO_BIN_EXE_imgtag-tui"),
        bucket = root.display(),
        status = status_file.display(),
    );
    start_session(&tmux, &script);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "the slow terminal never answered; screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The answer has been written: give the app time to read it (and
    // more than a held Esc's wait), then confirm the filter.
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the filter typed during the probe", |s| {
        s.contains("dog.jpg") && !s.contains("cat.jpg")
    });
    for leaked in ["e3e3", "f6f6", "rgb", "11;"] {
        assert!(
            !s.contains(leaked),
            "the answer became keys ({leaked}):\n{s}"
        );
    }
    assert!(!s.contains("fern.jpg"), "{s}");
    // The status filter was not switched (still every status) and the
    // text filter is what was typed.
    assert!(s.contains("1/3 · sort: name · all · /dog "), "{s}");
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status_file.exists() {
        assert!(Instant::now() < deadline, "imgtag-tui did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&status_file).unwrap().trim(), "0");
}

/// Starts tmux session `e2e`, 160x48, running `script` under `sh -c`.
fn start_session(tmux: &Tmux, script: &str) {
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "160",
        "-y",
        "48",
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
