//! The review queue through the TUI headless (issue 23): `a` accepts the
//! headline, a digit picks a suggested replacement, `e` edits, each moves
//! on to the next image needing review; `u` takes writes back newest
//! first, never over a concurrent change. On a local folder and on the
//! in-process S3 server.

use crate::common;
use common::fixtures::put;

use std::sync::Arc;

use bytes::Bytes;
use common::s3mem;
use common::tui::{Harness, key};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use imgtag::contract::parse_metadata;
use imgtag::detection::{DynDetector, LocalDetector};
use imgtag::status::Status;
use imgtag::storage::{DynStore, LocalStore};
use imgtag::tui::app::Msg;
use imgtag::tui::runtime::DetectorSource;

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const SEED: &str = r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},{"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#;

fn enter() -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
}

/// Four weak cats (the seed's document) and one sure one.
async fn fill(store: &DynStore) {
    for n in 1..=4 {
        put(
            store,
            &format!("uploads/cat{n}.png"),
            Bytes::from_static(CHELSEA),
        )
        .await;
        put(
            store,
            &format!("metadata/cat{n}.png.json"),
            Bytes::from_static(SEED.as_bytes()),
        )
        .await;
    }
    put(store, "uploads/sure.png", Bytes::from_static(CHELSEA)).await;
    let sure = r#"{"Labels":[{"Name":"Cat","Confidence":97.0}]}"#;
    put(
        store,
        "metadata/sure.png.json",
        Bytes::from_static(sure.as_bytes()),
    )
    .await;
}

async fn body(store: &DynStore, key: &str) -> Bytes {
    store.get(key, 1 << 20).await.unwrap().body
}

fn selected(h: &Harness) -> String {
    h.app.selected_row().unwrap().key.to_string()
}

async fn queue_on(store: DynStore, dir: tempfile::TempDir) {
    fill(&store).await;
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let mut h = Harness::new(store.clone(), DetectorSource::Ready(det), dir).await;
    h.select("cat1");
    h.settle().await;
    let mut keys = 0;

    // `a`: accepted as it is, and the next weak image is selected at once.
    h.send(key('a'));
    keys += 1;
    assert_eq!(selected(&h), "uploads/cat2.png");
    h.settle().await;
    let doc = parse_metadata(&body(&store, "metadata/cat1.png.json").await)
        .unwrap()
        .doc;
    let c = &doc.review().unwrap().confirmed[0];
    assert_eq!(
        (c.name.as_str(), c.detector_confidence),
        ("Feline", Some(65.3))
    );
    assert_eq!(c.confirmed_by.as_deref(), Some("imgtag-tui"));
    assert_eq!(h.status_of("cat1"), Some(Status::Tagged));

    // A digit: the headline is replaced by that suggestion.
    let picks = h.app.suggestions();
    assert!(picks.iter().any(|p| p == "Cat"), "{picks:?}");
    let before_pick = body(&store, "metadata/cat2.png.json").await;
    h.send(key('1'));
    keys += 1;
    assert_eq!(selected(&h), "uploads/cat3.png");
    h.settle().await;
    let doc = parse_metadata(&body(&store, "metadata/cat2.png.json").await)
        .unwrap()
        .doc;
    assert_eq!(
        doc.headline().map(|l| l.name.as_str()),
        Some(picks[0].as_str())
    );
    assert!(!doc.labels.iter().any(|l| l.name == "Feline"));
    assert_eq!(h.status_of("cat2"), Some(Status::Tagged));
    // The pick ranks first next time.
    assert_eq!(h.app.suggestions().first(), Some(&picks[0]));

    // `e` with a flag: written, and on to the next.
    let before_edit = body(&store, "metadata/cat3.png.json").await;
    h.send(key('e'));
    h.keys("!Pet");
    h.send(enter());
    keys += 6;
    assert_eq!(selected(&h), "uploads/cat4.png");
    h.settle().await;
    let doc = parse_metadata(&body(&store, "metadata/cat3.png.json").await)
        .unwrap()
        .doc;
    assert_eq!(doc.review().unwrap().flagged, ["Pet"]);
    let progress = imgtag::tui::view::status::queue_progress(&h.app);
    assert!(progress.starts_with("reviewed 3 · 2 left"), "{progress}");

    // `u`: the newest write goes back byte for byte.
    h.send(key('u'));
    h.settle().await;
    assert_eq!(body(&store, "metadata/cat3.png.json").await, before_edit);
    assert_eq!(
        selected(&h),
        "uploads/cat3.png",
        "the undone image is selected"
    );
    assert_eq!(h.app.queue.reviewed, 2);

    // A concurrent writer changed cat2 since the pick: `u` leaves it alone.
    let theirs = Bytes::from_static(br#"{"Labels":[{"Name":"Lynx","Confidence":99.0}]}"#);
    put(&store, "metadata/cat2.png.json", theirs.clone()).await;
    h.send(key('u'));
    h.settle().await;
    assert_eq!(body(&store, "metadata/cat2.png.json").await, theirs);
    let (_, text) = h.app.message.clone().unwrap();
    assert!(text.contains("left alone"), "{text}");
    assert_ne!(theirs, before_pick);

    // Then cat1's accept, then nothing left to undo.
    h.send(key('u'));
    h.settle().await;
    assert_eq!(
        body(&store, "metadata/cat1.png.json").await,
        SEED.as_bytes()
    );
    h.send(key('u'));
    let (_, text) = h.app.message.clone().unwrap();
    assert!(text.contains("nothing to undo"), "{text}");

    // Accepting the last weak ones: the queue says when none is left.
    h.select("cat4");
    h.settle().await;
    for _ in 0..3 {
        h.send(key('a'));
        keys += 1;
        h.settle().await;
    }
    let weak: Vec<_> = ["cat1", "cat3", "cat4"]
        .iter()
        .map(|n| h.status_of(n))
        .collect();
    assert!(weak.iter().all(|s| *s == Some(Status::Tagged)), "{weak:?}");
    let (_, text) = h.app.message.clone().unwrap();
    assert!(text.contains("no image left to review"), "{text}");
    // Six reviews (one of them a typed edit of six keys) took 11 keys.
    assert_eq!(keys, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(data.path()).unwrap());
    queue_on(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_on_s3() {
    let (_server, _, store) = s3mem::bucket_store("queue").await;
    queue_on(store, tempfile::tempdir().unwrap()).await;
}

/// Per-label thresholds in the TUI: the runtime's statuses and the detail
/// pane's reason follow the headline's own threshold, or its ancestor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_label_thresholds_in_the_tui() {
    let data = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(data.path()).unwrap());
    fill(&store).await;
    let person = r#"{"Labels":[{"Name":"Person","Confidence":85.0}]}"#;
    put(&store, "uploads/person.png", Bytes::from_static(CHELSEA)).await;
    put(
        &store,
        "metadata/person.png.json",
        Bytes::from_static(person.as_bytes()),
    )
    .await;
    let rule = imgtag::status::ReviewRule {
        per_label: imgtag::status::LabelThresholds::new([
            ("Person".to_string(), 90.0),
            ("Mammal".to_string(), 60.0),
        ]),
        ..70.0.into()
    };
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::with_rule(store, DetectorSource::Ready(det), dir, 2, rule).await;
    // Feline 65.3 clears Mammal's 60 (its ancestor); Person 85 is under 90.
    assert_eq!(h.status_of("cat1"), Some(Status::Tagged));
    assert_eq!(h.status_of("person"), Some(Status::NeedsReview));
    h.select("person");
    h.settle().await;
    let text = common::tui::screen(&h.app);
    assert!(
        text.contains("Person 85.0 is the headline and below"),
        "{text}"
    );
    assert!(text.contains("review threshold 90"), "{text}");
}
