//! The review queue as an operator clears it: the real `App` and runtime,
//! headless, over a bucket of weak images on the in-process S3 server
//! (10 ms added to every request). Of the images that need review, 70% are
//! right as they are (`a`), 20% have the right label among the numbered
//! suggestions (a digit), 10% need a typed edit (`e`, `+Right -Wrong`,
//! Enter). The operator presses a key only once the screen shows the
//! selected image's document, as a person reads before deciding.
//!
//! Prints keystrokes per reviewed image (goal <= 1.5; 10 before the
//! queue), the slowest and median key-to-frame time (`App::update` of the
//! key + drawing on a 160x48 `TestBackend`; goal <= 16 ms), writes,
//! conflicts, whether every document reads back as its edit said, and
//! whether undoing the last 50 restores them byte for byte.
//!
//! Run: `cargo bench --bench review_queue` (IMGTAG_BENCH_IMAGES resizes it).

#[path = "../tests/common/s3mem.rs"]
mod s3mem;
#[path = "../tests/common/tui.rs"]
#[allow(dead_code)]
mod tui;

use std::time::{Duration, Instant};

use bytes::Bytes;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use imgtag::contract::parse_metadata;
use imgtag::detection::DetectorKind;
use imgtag::pipeline::Outcome;
use imgtag::status::Status;
use imgtag::storage::{DynStore, PutCondition};
use imgtag::tui::app::{DocState, Msg};
use imgtag::tui::runtime::DetectorSource;
use imgtag::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Size;

/// Weak generic headlines, the specific label a person would confirm or
/// pick (one of the headline's suggestions) and one no suggestion offers.
const KINDS: [(&str, &str, &str); 4] = [
    ("Feline", "Cat", "Otter"),
    ("Canine", "Dog", "Badger"),
    ("Bird", "Parrot", "Mongoose"),
    ("Beverage", "Coffee", "Dinosaur"),
];

/// What the operator will do to image `i`: accept, pick, or type.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fix {
    Accept,
    Pick,
    Type,
}

fn fix_of(i: usize) -> Fix {
    match i % 10 {
        0..=6 => Fix::Accept,
        7 | 8 => Fix::Pick,
        _ => Fix::Type,
    }
}

fn doc(i: usize) -> String {
    let (weak, _, _) = KINDS[i % KINDS.len()];
    let d = i % 10;
    // A sure generic root over a weak specific label, as the seed's cat;
    // a weak root alone for the drinks.
    if weak == "Beverage" {
        return format!(
            r#"{{"Labels":[{{"Name":"Beverage","Confidence":6{d}.5}},{{"Name":"Cup","Confidence":5{d}.0}}]}}"#
        );
    }
    format!(
        r#"{{"Labels":[{{"Name":"Animal","Confidence":97.{d}}},{{"Name":"{weak}","Confidence":6{d}.5,"Parents":[{{"Name":"Animal"}}]}}]}}"#
    )
}

fn key_of(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn enter() -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
}

struct Run {
    h: tui::Harness,
    term: Terminal<TestBackend>,
    frames: Vec<Duration>,
    keys: usize,
}

impl Run {
    /// One key: update and draw, timed.
    fn press(&mut self, msg: Msg) {
        let t = Instant::now();
        for cmd in self.h.app.update(msg) {
            self.h.rt.run(cmd);
        }
        self.term.draw(|f| view::draw(f, &self.h.app)).unwrap();
        self.frames.push(t.elapsed());
        self.keys += 1;
    }

    /// Handles what arrived until the selected document is on screen.
    async fn until_shown(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Ok(msg) = self.h.rx.try_recv() {
                self.h.send(msg);
            }
            let ready = self
                .h
                .app
                .selected_row()
                .map(|r| matches!(self.h.app.doc_state(&r), DocState::Ready(_)));
            if ready != Some(false) {
                self.term.draw(|f| view::draw(f, &self.h.app)).unwrap();
                return;
            }
            assert!(Instant::now() < deadline, "the document never loaded");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn index_of(key: &str) -> usize {
    key.trim_start_matches("uploads/img")
        .trim_end_matches(".jpg")
        .parse()
        .expect("bench keys")
}

/// Clears the queue; returns each image's expected headline afterwards.
async fn clear(run: &mut Run, n: usize) -> Vec<(usize, String)> {
    let mut expected = Vec::new();
    for _ in 0..n {
        run.until_shown().await;
        let Some(row) = run.h.app.selected_row() else {
            break;
        };
        if row.status != Some(Status::NeedsReview) || row.busy {
            break;
        }
        let i = index_of(row.key);
        let (weak, right, odd) = KINDS[i % KINDS.len()];
        match fix_of(i) {
            Fix::Accept => {
                run.press(key_of('a'));
                expected.push((i, weak.to_string()));
            }
            Fix::Pick => {
                let pos = run.h.app.suggestions().iter().position(|s| s == right);
                let pos = pos.expect("the right label is among the suggestions");
                let digit = char::from_digit(pos as u32 + 1, 10).expect("1-9");
                run.press(key_of(digit));
                expected.push((i, right.to_string()));
            }
            Fix::Type => {
                // `e`, as few letters as Tab needs to complete the name,
                // Tab, Enter: an added sure label becomes the headline.
                run.press(key_of('e'));
                let recent = run.h.app.queue.recent().to_vec();
                let n = (1..=odd.len())
                    .find(|&n| {
                        imgtag::suggest::complete(&odd[..n], &recent).as_deref() == Some(odd)
                    })
                    .expect("the name completes");
                for c in odd[..n].chars() {
                    run.press(key_of(c));
                }
                run.press(Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)));
                run.press(enter());
                expected.push((i, odd.to_string()));
            }
        }
    }
    expected
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("IMGTAG_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (_server, mem, store) = s3mem::bucket_store("queue").await;
    for i in 0..n {
        let image = format!("uploads/img{i:05}.jpg");
        put(&store, &image, Bytes::from(format!("image {i}"))).await;
        let meta = format!("metadata/img{i:05}.jpg.json");
        put(&store, &meta, Bytes::from(doc(i))).await;
    }
    mem.set_latency(Duration::from_millis(10));
    let dir = tempfile::tempdir().unwrap();
    // Never built: a review reads no image and detects nothing.
    let detector = DetectorSource::Build {
        kind: DetectorKind::Local,
        s3: Default::default(),
        concurrency: 1,
        tps: 1.0,
        engine: imgtag::detection::engine::EngineChoice::Auto,
    };
    let mut h = tui::Harness::new(store.clone(), detector, dir).await;
    h.app.thumbnails = false;
    h.app.size = Size::new(160, 48);
    let term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    let mut run = Run {
        h,
        term,
        frames: Vec::new(),
        keys: 0,
    };
    let started = Instant::now();
    let expected = clear(&mut run, n).await;
    run.h.settle().await;
    let took = started.elapsed();
    report(&run, &expected, took, &store).await;
    undo_last(&mut run, &store, 50).await;
}

async fn put(store: &DynStore, key: &str, body: Bytes) {
    store.put(key, body, PutCondition::None).await.unwrap();
}

async fn report(run: &Run, expected: &[(usize, String)], took: Duration, store: &DynStore) {
    let reviewed = expected.len();
    let writes = run
        .h
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Tagged { .. }))
        .count();
    let conflicts = run
        .h
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Conflict { .. }))
        .count();
    let mut wrong = 0;
    for (i, want) in expected {
        let body = store
            .get(&format!("metadata/img{i:05}.jpg.json"), 1 << 20)
            .await
            .unwrap()
            .body;
        let doc = parse_metadata(&body).unwrap().doc;
        let head = doc.headline().map(|l| (l.name.clone(), l.confidence));
        if head != Some((want.clone(), 100.0)) {
            wrong += 1;
        }
    }
    let mut frames: Vec<f64> = run.frames.iter().copied().map(ms).collect();
    frames.sort_by(f64::total_cmp);
    println!(
        "reviewed images        {reviewed} in {:.1} s",
        took.as_secs_f64()
    );
    println!(
        "keystrokes per image   {:.2} ({} keys)",
        run.keys as f64 / reviewed.max(1) as f64,
        run.keys
    );
    println!(
        "key to frame           median {:.2} ms, slowest {:.2} ms",
        frames[frames.len() / 2],
        frames[frames.len() - 1]
    );
    println!("writes {writes}, conflicts {conflicts}, documents not as edited {wrong}");
    println!(
        "left to review         {}",
        run.h.app.count(Status::NeedsReview)
    );
}

/// Undoes the last `k` review writes and checks each document is back to
/// the bytes it had before its review.
async fn undo_last(run: &mut Run, store: &DynStore, k: usize) {
    let mut restored = 0;
    for _ in 0..k {
        run.press(key_of('u'));
        run.h.settle().await;
        let key = run.h.app.selected_row().map(|r| r.key.to_string());
        let Some(key) = key else { continue };
        let i = index_of(&key);
        let body = store
            .get(&format!("metadata/img{i:05}.jpg.json"), 1 << 20)
            .await
            .unwrap()
            .body;
        if body == doc(i).as_bytes() {
            restored += 1;
        }
    }
    println!("undo of the last {k}: {restored} restored byte for byte");
}
