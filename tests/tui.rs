//! The TUI without a terminal: render snapshots of each screen state
//! (ratatui's TestBackend + insta), and headless runs that feed key events
//! and real storage results through `App::update` and the runtime, against
//! a real local-folder bucket and the real local model.

use crate::common;
use common::tui::{Harness, key};

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use imgtag::catalog::Assessed;
use imgtag::contract::{Layout, parse_metadata};
use imgtag::detection::{DynDetector, LocalDetector};
use imgtag::status::Status;
use imgtag::status::assess;
use imgtag::storage::{DynStore, LocalStore, ObjectInfo, S3Store};
use imgtag::tui::app::{App, Cmd, DocState, Header, Mode, Msg, ThumbState};
use imgtag::tui::keys::Keymap;
use imgtag::tui::runtime::DetectorSource;
use imgtag::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Size;
use ratatui_image::picker::Picker;

// ---------------------------------------------------------------------------
// helpers

thread_local! {
    /// The documents the test's rows were made from, by image key.
    static DOCS: std::cell::RefCell<std::collections::HashMap<String, imgtag::contract::MetadataDoc>> =
        Default::default();
}

/// Types `text`, a key press a character.
fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        up(app, key(c));
    }
}

/// Updates the app and answers the document loads it asks for from
/// [`DOCS`], as the runtime would; returns the other commands, in order.
fn up(app: &mut App, msg: Msg) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut pending: std::collections::VecDeque<Cmd> = app.update(msg).into();
    while let Some(cmd) = pending.pop_front() {
        let doc = match &cmd {
            Cmd::LoadDoc { key, .. } => DOCS.with(|d| d.borrow().get(key).cloned()),
            _ => None,
        };
        match (cmd, doc) {
            (Cmd::LoadDoc { key, rev, .. }, Some(doc)) => {
                pending.extend(app.update(Msg::Doc {
                    key,
                    rev,
                    result: Ok(Box::new(doc)),
                }));
            }
            (cmd, _) => out.push(cmd),
        }
    }
    out
}

fn header() -> Header {
    Header {
        bucket: "s3://photos".into(),
        detector: "rekognition".into(),
        paid: true,
    }
}

fn new_app(size: Size) -> App {
    let mut app = App::new(header(), Layout::default(), Keymap::default(), 55.0, 70.0);
    app.size = size;
    // Thumbnails are tested on their own: pixels in a text snapshot would
    // tie it to the resizer's rounding.
    app.thumbnails = false;
    app
}

fn image(key: &str, etag: &str, size: u64) -> ObjectInfo {
    ObjectInfo {
        key: key.into(),
        size,
        etag: Some(format!("\"{etag}\"").into()),
        last_modified: Some(1_700_000_000),
    }
}

/// An assessed image with optional metadata text, as the audit yields it.
fn row(key: &str, meta: Option<(&str, &str)>) -> Assessed {
    let img = image(key, "e1", 48_213);
    let (metadata, read) = match meta {
        Some((mkey, json)) => (
            Some(image(mkey, "m1", json.len() as u64)),
            Some(parse_metadata(json.as_bytes())),
        ),
        None => (None, None),
    };
    if let Some(Ok(p)) = &read {
        DOCS.with(|d| d.borrow_mut().insert(key.to_string(), p.doc.clone()));
    }
    Assessed {
        status: Some(assess(read.as_ref(), img.etag.as_deref(), 70.0)),
        image: Some(img),
        metadata,
        key_kind: meta.map(|_| imgtag::contract::KeyKind::Canonical),
        doc: read.as_ref().map(imgtag::summary::summarize),
        read_error: None,
    }
}

fn orphan(mkey: &str) -> Assessed {
    Assessed {
        image: None,
        metadata: Some(image(mkey, "m2", 40)),
        key_kind: None,
        status: Some(Status::Orphan),
        doc: None,
        read_error: None,
    }
}

const CAT: &str = r#"{"Labels":[{"Name":"Cat","Confidence":91.2,"Parents":[{"Name":"Feline"},{"Name":"Animal"}]},{"Name":"Feline","Confidence":65.3,"Parents":[{"Name":"Animal"}]},{"Name":"Animal","Confidence":98.2}],"ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"photos","Key":"uploads/cat.jpg","ETag":"\"e1\"","Size":48213},"Detector":"rekognition","MinConfidence":55.0,"MaxLabels":null,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"imgtag-lambda","Review":null,"Error":null}}"#;
const WEAK: &str = r#"{"Labels":[{"Name":"Feline","Confidence":65.3}]}"#;
const FAILED: &str = r#"{"Labels":[],"ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"photos","Key":"uploads/notes.jpg","ETag":"\"e1\"","Size":30},"Detector":"rekognition","MinConfidence":55.0,"MaxLabels":null,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"imgtag-lambda","Review":null,"Error":{"Code":"InvalidImageFormat","Message":"not an image"}}}"#;
const STALE: &str = r#"{"Labels":[{"Name":"Dog","Confidence":88.0}],"ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"photos","Key":"uploads/dog.jpg","ETag":"\"old\"","Size":1},"Detector":"rekognition","MinConfidence":55.0,"MaxLabels":null,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"imgtag-lambda","Review":null,"Error":null}}"#;

fn mixed_rows() -> Vec<Assessed> {
    vec![
        row("uploads/cat.jpg", Some(("metadata/cat.jpg.json", CAT))),
        row("uploads/dog.jpg", Some(("metadata/dog.jpg.json", STALE))),
        row(
            "uploads/holiday/beach photo.jpg",
            Some(("metadata/holiday/beach photo.jpg.json", WEAK)),
        ),
        row(
            "uploads/holiday/broken.png",
            Some(("metadata/holiday/broken.png.json", "{\"Labels\": [")),
        ),
        row("uploads/new/upload.jpg", None),
        row(
            "uploads/notes.jpg",
            Some(("metadata/notes.jpg.json", FAILED)),
        ),
        orphan("metadata/gone.jpg.json"),
    ]
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn render(app: &App) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(app.size.width, app.size.height)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    t
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    common::tui::text_of(t)
}

fn listed(rows: Vec<Assessed>, done: bool) -> App {
    let mut app = new_app(Size::new(120, 30));
    app.start();
    let generation = app.generation;
    up(&mut app, Msg::rows(generation, rows));
    if done {
        up(
            &mut app,
            Msg::ListingDone {
                generation,
                error: None,
            },
        );
    }
    app
}

// ---------------------------------------------------------------------------
// render snapshots

#[test]
fn snapshot_listing_in_progress() {
    let mut rows = mixed_rows();
    rows.truncate(3);
    let app = listed(rows, false);
    let t = render(&app);
    let text = screen_text(&t);
    assert!(text.contains("listing… 3"), "{text}");
    insta::assert_snapshot!("listing_in_progress", t.backend());
}

#[test]
fn snapshot_mixed_statuses_with_detail_bars() {
    let app = listed(mixed_rows(), true);
    // Counts per status in the status line.
    assert_eq!(app.count(Status::Tagged), 1);
    assert_eq!(app.count(Status::Stale), 1);
    assert_eq!(app.count(Status::NeedsReview), 1);
    assert_eq!(app.count(Status::Malformed), 1);
    assert_eq!(app.count(Status::Untagged), 1);
    assert_eq!(app.count(Status::Failed), 1);
    assert_eq!(app.count(Status::Orphan), 1);
    let t = render(&app);
    let text = screen_text(&t);
    // The selected cat: one bar per label, parents shown.
    assert!(text.contains("↳ Feline, Animal"), "{text}");
    assert!(text.contains("98.2") && text.contains("65.3"), "{text}");
    insta::assert_snapshot!("mixed_statuses_detail", t.backend());
}

#[test]
fn snapshot_help_overlay_lists_every_key() {
    let mut app = listed(mixed_rows(), true);
    app.size = Size::new(120, 36);
    up(&mut app, key('?'));
    assert_eq!(app.mode, Mode::Help);
    let t = render(&app);
    let text = screen_text(&t);
    for a in imgtag::tui::keys::Action::ALL {
        assert!(text.contains(a.describe()), "help lacks {a:?}");
    }
    insta::assert_snapshot!("help_overlay", t.backend());
    up(&mut app, key('x'));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn snapshot_confirmation_states_count_and_cost() {
    let mut app = listed(mixed_rows(), true);
    up(&mut app, key('T'));
    let Mode::Confirm { text, .. } = &app.mode else {
        panic!("no confirmation: {:?}", app.mode)
    };
    assert!(
        text.contains("Tag 1 untagged image with Rekognition"),
        "{text}"
    );
    assert!(text.contains("$0.00"), "{text}");
    let t = render(&app);
    insta::assert_snapshot!("confirm_tag_untagged", t.backend());
    // n cancels without any command.
    assert!(up(&mut app, key('n')).is_empty());
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn snapshot_error_in_status_line() {
    let mut app = listed(mixed_rows()[..2].to_vec(), false);
    let generation = app.generation;
    up(
        &mut app,
        Msg::ListingDone {
            generation,
            error: Some("access denied: s3:ListBucket on photos".into()),
        },
    );
    let t = render(&app);
    let text = screen_text(&t);
    assert!(text.contains("listing failed: access denied"), "{text}");
    insta::assert_snapshot!("error_in_status_line", t.backend());
    // The UI keeps working.
    up(&mut app, key('j'));
    assert_eq!(app.cursor, 1);
}

/// `--bucket photos` with ./photos here: a failed listing says first how
/// to get the folder.
#[test]
fn a_failed_listing_says_first_how_to_get_the_folder_of_that_name() {
    let mut app = listed(mixed_rows()[..2].to_vec(), false);
    let here = tempfile::tempdir().unwrap();
    std::fs::create_dir(here.path().join("photos")).unwrap();
    app.listing_hint = imgtag::storage::BucketSpec::S3("photos".into()).folder_hint_in(here.path());
    let generation = app.generation;
    up(
        &mut app,
        Msg::ListingDone {
            generation,
            error: Some("access denied: no usable AWS credentials".into()),
        },
    );
    let text = screen_text(&render(&app));
    assert!(
        text.contains("listing failed: photos is read as an S3 bucket name; for the folder"),
        "{text}"
    );
}

#[test]
fn snapshot_escape_sequences_in_keys_and_labels_are_made_visible() {
    let evil_key = "uploads/\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mred\u{202e}gpj.exe";
    let evil_doc = r#"{"Labels":[{"Name":"\u001b[5mBlink\u009b","Confidence":80.0}]}"#;
    let mut app = listed(
        vec![
            row(evil_key, Some(("metadata/evil.json", evil_doc))),
            row("uploads/plain.jpg", None),
        ],
        true,
    );
    app.size = Size::new(200, 24);
    let t = render(&app);
    let buf = t.backend().buffer();
    for cell in buf.content() {
        assert!(
            !cell.symbol().chars().any(imgtag::sanitize::is_unsafe),
            "raw control character in a cell: {:?}",
            cell.symbol()
        );
    }
    let text = screen_text(&t);
    assert!(text.contains("\\x1b]0;pwned\\x07"), "{text}");
    assert!(text.contains("\\u{202e}gpj.exe"), "{text}");
    assert!(text.contains("\\x1b[5mBlink\\x9b"), "{text}");
    insta::assert_snapshot!("escape_sequences", t.backend());
}

#[test]
fn keys_filter_sort_marks_and_resize() {
    let mut app = listed(mixed_rows(), true);
    assert_eq!(app.rows.view().len(), 7);
    // Status filter cycles: untagged first.
    up(&mut app, key('f'));
    assert_eq!(app.rows.status_filter(), Some(Status::Untagged));
    assert_eq!(app.rows.view().len(), 1);
    up(&mut app, key('f'));
    assert_eq!(app.rows.status_filter(), Some(Status::NeedsReview));
    assert_eq!(
        app.selected_row().unwrap().key,
        "uploads/holiday/beach photo.jpg"
    );
    up(&mut app, code(KeyCode::Esc));
    assert_eq!(app.rows.view().len(), 7);
    // Text filter matches keys and labels (and parents), live.
    up(&mut app, key('/'));
    type_text(&mut app, "feline");
    let keys: Vec<_> = app
        .rows
        .view()
        .iter()
        .map(|&i| app.rows.key(i).to_string())
        .collect();
    assert_eq!(keys, ["uploads/cat.jpg", "uploads/holiday/beach photo.jpg"]);
    up(&mut app, code(KeyCode::Enter));
    assert_eq!(app.rows.text_filter(), "feline");
    up(&mut app, code(KeyCode::Esc));
    // Lowest headline confidence first; images without labels last. The
    // cat's headline is Cat 91.2 (the specific label), not Animal 98.2.
    up(&mut app, key('s'));
    let best: Vec<_> = app
        .rows
        .view()
        .iter()
        .map(|&i| app.rows.headline(&app.rows[i as usize]).map(|b| b.1))
        .collect();
    assert_eq!(best[..3], [Some(65.3), Some(88.0), Some(91.2)]);
    assert!(best[3..].iter().all(Option::is_none));
    // Marks, and t acts on the marked set.
    up(&mut app, key('g'));
    up(&mut app, key(' '));
    up(&mut app, key(' '));
    assert_eq!(app.marks.len(), 2);
    let cmds = up(&mut app, key('t'));
    let [
        Cmd::Tag {
            jobs,
            force,
            min_confidence,
            replace_unreadable: false,
        },
    ] = &cmds[..]
    else {
        panic!("{cmds:?}")
    };
    assert_eq!((jobs.len(), *force, *min_confidence), (2, true, 55.0));
    assert!(app.marks.is_empty());
    // Threshold keys and exact entry.
    up(&mut app, key('+'));
    assert_eq!(app.min_confidence, 60.0);
    up(&mut app, key('-'));
    up(&mut app, key('-'));
    assert_eq!(app.min_confidence, 50.0);
    up(&mut app, key('='));
    type_text(&mut app, "72.5");
    up(&mut app, code(KeyCode::Enter));
    assert_eq!(app.min_confidence, 72.5);
    up(&mut app, key('='));
    type_text(&mut app, "150");
    up(&mut app, code(KeyCode::Enter));
    assert_eq!(app.min_confidence, 72.5);
    assert!(app.message.as_ref().unwrap().1.contains("outside 0-100"));
    // Paging and jumps; a resize changes the page and still draws.
    up(&mut app, key('G'));
    assert_eq!(app.cursor, 6);
    up(&mut app, code(KeyCode::Home));
    assert_eq!(app.cursor, 0);
    up(&mut app, Msg::Resize(60, 12));
    up(&mut app, code(KeyCode::PageDown));
    assert_eq!(app.cursor, app.page_rows().min(6));
    let t = render(&app);
    assert_eq!(t.backend().buffer().area.width, 60);
    // Mouse: a click on the third list row selects it.
    up(&mut app, Msg::Resize(120, 30));
    let body = imgtag::tui::screen::areas(ratatui::layout::Rect::new(0, 0, 120, 30)).list_body;
    up(
        &mut app,
        Msg::Mouse(crossterm::event::MouseEvent {
            kind: crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
            column: body.x + 3,
            row: body.y + 2,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(app.cursor, app.offset + 2);
    up(
        &mut app,
        Msg::Mouse(crossterm::event::MouseEvent {
            kind: crossterm::event::MouseEventKind::ScrollDown,
            column: body.x + 3,
            row: body.y + 2,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(app.cursor, (app.offset + 2 + 3).min(6));
    // q quits.
    up(&mut app, key('q'));
    assert!(app.quit);
}

// ---------------------------------------------------------------------------
// headless runs against a real bucket

fn label_names(doc: &serde_json::Value) -> Vec<String> {
    doc["Labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_one_with_t_writes_the_pipeline_document_and_shows_it() {
    let mut h = Harness::demo().await;
    assert_eq!(
        h.app.rows.len(),
        13,
        "seven of every kind, six in the review queue"
    );
    assert_eq!(h.app.listing, imgtag::tui::app::Listing::Done);
    h.select("rocket launch");
    assert_eq!(h.status_of("rocket launch"), Some(Status::Untagged));
    h.send(key('t'));
    assert!(h.app.selected_row().unwrap().busy);
    h.settle().await;
    let doc = h.doc("metadata/space/rocket launch.jpg.json");
    assert_eq!(doc["ImgTag"]["TaggedBy"], "imgtag-tui");
    assert_eq!(doc["ImgTag"]["Detector"], "local");
    assert_eq!(
        doc["ImgTag"]["Source"]["Key"],
        "uploads/space/rocket launch.jpg"
    );
    assert_eq!(doc["ImgTag"]["MinConfidence"], 55.0);
    let row = h.app.selected_row().unwrap();
    assert!(!row.busy);
    assert_eq!(
        row.metadata_key.as_deref(),
        Some("metadata/space/rocket launch.jpg.json")
    );
    assert_ne!(row.status, Some(Status::Untagged));
    // The thumbnail of the selected image decoded and encoded.
    h.select("chelsea");
    h.settle().await;
    let thumb = h.app.thumb.as_ref().unwrap();
    assert!(thumb.key.ends_with("chelsea.png"));
    assert!(
        matches!(thumb.state, ThumbState::Ready(_)),
        "thumbnail not ready"
    );
    // ...and it was cached on disk.
    assert!(
        std::fs::read_dir(h.dir.path().join(".cache"))
            .unwrap()
            .count()
            >= 1
    );
    // The corrupt image: no thumbnail, a clear reason.
    h.select("corrupt");
    h.settle().await;
    match &h.app.thumb.as_ref().unwrap().state {
        ThumbState::Failed(e) => assert!(e.contains("corrupt"), "{e}"),
        _ => panic!("corrupt image gave a thumbnail"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_all_untagged_after_confirmation() {
    let mut h = Harness::demo().await;
    assert_eq!(h.app.count(Status::Untagged), 3);
    h.send(key('T'));
    let Mode::Confirm { text, .. } = &h.app.mode else {
        panic!("no confirmation")
    };
    assert!(
        text.contains("Tag 3 untagged images with the local model (no cost)"),
        "{text}"
    );
    h.send(key('y'));
    assert_eq!(h.app.work.total, 3);
    h.settle().await;
    assert_eq!(h.app.count(Status::Untagged), 0);
    assert!(!h.app.work.active());
    let corrupt = h.doc("metadata/corrupt.jpg.json");
    assert_eq!(corrupt["ImgTag"]["Error"]["Code"], "CorruptImage");
    let text = h.doc("metadata/not-an-image.jpg.json");
    assert_eq!(text["ImgTag"]["Error"]["Code"], "NotAnImage");
    assert_eq!(h.status_of("corrupt"), Some(Status::Failed));
    let rocket = h.doc("metadata/space/rocket launch.jpg.json");
    assert!(rocket["ImgTag"]["Error"].is_null());
    // The already-tagged images were not touched.
    assert!(
        !h.dir
            .path()
            .join("metadata/animals/chelsea.png.json.bak")
            .exists()
    );
    let chelsea = h.doc("metadata/animals/chelsea.png.json");
    assert!(chelsea.get("ImgTag").is_none());
    let msg = &h.app.message.as_ref().unwrap().1;
    assert!(
        msg.contains("done: 1 of 3 images, 2 with problems"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_change_then_rerun_writes_at_the_new_threshold() {
    let mut h = Harness::demo().await;
    h.select("chelsea");
    // The weak seed result: one label.
    assert_eq!(
        h.app.rows.headline(&h.app.selected_row().unwrap()),
        Some(("Feline", 65.3))
    );
    // 55 -> 5: the cat's own labels are all above 99.8, so only a low
    // threshold adds some (the local detector's weak Dog 10.6).
    h.keys("----------");
    assert_eq!(h.app.min_confidence, 5.0);
    h.send(key('t'));
    h.settle().await;
    let low = h.doc("metadata/animals/chelsea.png.json");
    assert_eq!(low["ImgTag"]["MinConfidence"], 5.0);
    let confs: Vec<f64> = low["Labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Confidence"].as_f64().unwrap())
        .collect();
    assert!(confs.iter().all(|&c| c >= 5.0), "{confs:?}");
    assert!(label_names(&low).contains(&"Cat".to_string()), "{low}");
    let n_low = confs.len();
    // Raise it well above: fewer labels, all above the new threshold.
    h.send(key('='));
    h.keys("90");
    h.send(code(KeyCode::Enter));
    h.send(key('t'));
    h.settle().await;
    let high = h.doc("metadata/animals/chelsea.png.json");
    assert_eq!(high["ImgTag"]["MinConfidence"], 90.0);
    let n_high = high["Labels"].as_array().unwrap().len();
    assert!(n_high < n_low, "{n_high} vs {n_low}");
    assert!(
        high["Labels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["Confidence"].as_f64().unwrap() >= 90.0)
    );
    // The row shows the new document at once.
    let shown = h.app.selected_doc().unwrap();
    assert_eq!(shown.imgtag.as_ref().unwrap().min_confidence, Some(90.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_edit_is_kept_by_a_rerun() {
    let mut h = Harness::demo().await;
    h.select("chelsea");
    h.send(key('e'));
    h.keys("+Tabby_Cat -Feline");
    h.send(code(KeyCode::Enter));
    h.settle().await;
    let doc = h.doc("metadata/animals/chelsea.png.json");
    assert_eq!(doc["ImgTag"]["Review"]["Added"][0], "Tabby Cat");
    assert_eq!(doc["ImgTag"]["Review"]["Removed"][0], "Feline");
    assert_eq!(label_names(&doc), ["Tabby Cat", "Animal", "Mammal", "Pet"]);
    assert_eq!(doc["Labels"][0]["Confidence"], 100.0);
    // A human fix with a sure label is no longer "needs review".
    assert_eq!(h.status_of("chelsea"), Some(Status::Tagged));
    // Re-run detection: the model's labels come back, the review stays.
    // (The edit moved the selection on to the next image to review.)
    assert!(!h.app.selected_row().unwrap().key.contains("chelsea"));
    h.select("chelsea");
    h.send(key('t'));
    h.settle().await;
    let doc = h.doc("metadata/animals/chelsea.png.json");
    let names = label_names(&doc);
    assert!(names.contains(&"Tabby Cat".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n == "Feline"), "{names:?}");
    assert!(names.len() > 1, "detector labels missing: {names:?}");
    assert_eq!(doc["ImgTag"]["Detector"], "local");
    assert_eq!(doc["ImgTag"]["Review"]["Added"][0], "Tabby Cat");
    // Editing an untagged image is refused with a message, not a crash.
    h.select("rocket launch");
    h.send(key('e'));
    assert_eq!(h.app.mode, Mode::Normal);
    assert!(
        h.app
            .message
            .as_ref()
            .unwrap()
            .1
            .contains("tag this image first")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_show_in_the_status_line_and_the_ui_keeps_working() {
    use common::s3mem::{self, MemS3};
    let mem = MemS3::new();
    mem.create_bucket("photos");
    mem.insert("photos", "uploads/a.jpg", &b"x"[..]);
    mem.inject_faults([s3s::S3ErrorCode::AccessDenied]);
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "photos",
    ));
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(store, DetectorSource::Ready(det), dir).await;
    assert_eq!(h.app.listing, imgtag::tui::app::Listing::Failed);
    let (_, msg) = h.app.message.clone().unwrap();
    assert!(msg.to_lowercase().contains("access denied"), "{msg}");
    // Reload works once the server lets us in.
    h.send(key('r'));
    h.settle().await;
    assert_eq!(h.app.listing, imgtag::tui::app::Listing::Done);
    assert_eq!(h.app.rows.len(), 1);
    // The server goes away: tagging reports it, nothing crashes.
    server.stop();
    h.send(key('t'));
    h.settle().await;
    let (_, msg) = h.app.message.clone().unwrap();
    assert!(msg.contains("uploads/a.jpg"), "{msg}");
    assert!(!h.app.work.active());
    h.send(key('j'));
    h.send(key('?'));
    assert_eq!(h.app.mode, Mode::Help);
}

#[test]
fn a_large_marked_rerun_with_rekognition_asks_first() {
    let rows: Vec<_> = (0..12)
        .map(|i| row(&format!("uploads/{i:02}.jpg"), None))
        .collect();
    let mut app = listed(rows, true);
    for _ in 0..12 {
        up(&mut app, key(' '));
    }
    assert_eq!(app.marks.len(), 12);
    assert!(up(&mut app, key('t')).is_empty());
    let Mode::Confirm { text, .. } = &app.mode else {
        panic!("no confirmation")
    };
    assert!(
        text.contains("Re-run 12 marked images with Rekognition: about $0.01"),
        "{text}"
    );
    let cmds = up(&mut app, key('y'));
    let [Cmd::Tag { jobs, .. }] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    assert_eq!(jobs.len(), 12);
    assert_eq!(app.work.total, 12);
    assert!(app.rows.iter().all(|r| r.busy));
}

// ---------------------------------------------------------------------------
// headline, bulk review, spot checks, themes

/// The seed's cat: sure generic labels, a weak specific one, no "Cat".
const SEED_CAT: &str = r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},{"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#;
/// The same with a sure "Cat": tagged.
const STRONG_CAT: &str = r#"{"Labels":[{"Name":"Animal","Confidence":99.1},{"Name":"Mammal","Confidence":97.0},{"Name":"Pet","Confidence":95.2},{"Name":"Feline","Confidence":93.0},{"Name":"Cat","Confidence":92.5}]}"#;
const DOG: &str =
    r#"{"Labels":[{"Name":"Animal","Confidence":97.0},{"Name":"Dog","Confidence":80.5}]}"#;
const REVIEWED: &str = r#"{"Labels":[{"Name":"Dog","Confidence":100.0}],"ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"photos","Key":"uploads/reviewed.jpg","ETag":"\"e1\"","Size":1},"Detector":"rekognition","MinConfidence":55.0,"MaxLabels":null,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"imgtag-tui","Review":{"Added":["Dog"],"Removed":[],"ReviewedAt":"2026-11-25T10:00:00Z"},"Error":null}}"#;
const FLAGGED: &str = r#"{"Labels":[{"Name":"Animal","Confidence":99.0},{"Name":"Mammal","Confidence":97.0},{"Name":"Pet","Confidence":95.0},{"Name":"Feline","Confidence":93.0},{"Name":"Cat","Confidence":92.0}],"ImgTag":{"SchemaVersion":1,"Source":{"Bucket":"photos","Key":"uploads/flagged.jpg","ETag":"\"e1\"","Size":1},"Detector":"rekognition","MinConfidence":55.0,"MaxLabels":null,"TaggedAt":"2026-11-24T10:00:00Z","TaggedBy":"imgtag-tui","Review":{"Added":[],"Removed":[],"Flagged":["Pet"],"ReviewedAt":"2026-11-25T10:00:00Z"},"Error":null}}"#;

fn audit_rows() -> Vec<Assessed> {
    vec![
        row(
            "uploads/cats/seed.jpg",
            Some(("metadata/cats/seed.jpg.json", SEED_CAT)),
        ),
        row(
            "uploads/cats/strong.jpg",
            Some(("metadata/cats/strong.jpg.json", STRONG_CAT)),
        ),
        row("uploads/dog.jpg", Some(("metadata/dog.jpg.json", DOG))),
        row(
            "uploads/flagged.jpg",
            Some(("metadata/flagged.jpg.json", FLAGGED)),
        ),
        row(
            "uploads/holiday/beach photo.jpg",
            Some(("metadata/holiday/beach photo.jpg.json", WEAK)),
        ),
        row(
            "uploads/reviewed.jpg",
            Some(("metadata/reviewed.jpg.json", REVIEWED)),
        ),
        row("uploads/new/upload.jpg", None),
    ]
}

#[test]
fn the_seed_cat_leads_the_lowest_confidence_sort_and_needs_review() {
    let mut app = listed(audit_rows(), true);
    let seed = app.rows.find("uploads/cats/seed.jpg").unwrap() as usize;
    assert_eq!(app.rows[seed].status, Some(Status::NeedsReview));
    assert_eq!(app.rows.headline(&app.rows[seed]), Some(("Feline", 65.3)));
    let strong = app.rows.find("uploads/cats/strong.jpg").unwrap() as usize;
    assert_eq!(app.rows[strong].status, Some(Status::Tagged));
    up(&mut app, key('s'));
    assert_eq!(app.rows.sort().label(), "lowest confidence");
    // Among tagged and needs-review images, the seed cat comes first
    // (its most confident label, 98.2, would have put it near the end).
    let order: Vec<&str> = app
        .rows
        .view()
        .iter()
        .map(|&i| app.rows.get(i))
        .filter(|r| matches!(r.status, Some(Status::Tagged | Status::NeedsReview)))
        .map(|r| r.key)
        .collect();
    assert_eq!(order[0], "uploads/cats/seed.jpg", "{order:?}");
    // The same holds with only needs-review shown.
    up(&mut app, key('f'));
    up(&mut app, key('f'));
    assert_eq!(app.rows.status_filter(), Some(Status::NeedsReview));
    assert_eq!(app.selected_row().unwrap().key, "uploads/cats/seed.jpg");
}

fn seed_cat_app(theme: imgtag::tui::theme::Theme) -> App {
    let mut app = new_app(Size::new(170, 24));
    app.theme = theme;
    app.start();
    let generation = app.generation;
    up(&mut app, Msg::rows(generation, audit_rows()));
    up(
        &mut app,
        Msg::ListingDone {
            generation,
            error: None,
        },
    );
    app
}

/// The screen's text, then its style runs per line: what the text-only
/// snapshot cannot show, so that each theme's colours are reviewed too.
fn styled_dump(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = screen_text(t);
    out.push_str("--- styles (x0-x1 fg bg modifiers) ---\n");
    for y in 0..buf.area.height {
        let mut runs = Vec::new();
        let mut x = 0;
        while x < buf.area.width {
            let c = &buf[(x, y)];
            let style = (c.fg, c.bg, c.modifier);
            let start = x;
            while x < buf.area.width {
                let d = &buf[(x, y)];
                if (d.fg, d.bg, d.modifier) != style {
                    break;
                }
                x += 1;
            }
            if style
                != (
                    ratatui::style::Color::Reset,
                    ratatui::style::Color::Reset,
                    ratatui::style::Modifier::empty(),
                )
            {
                runs.push(format!(
                    "{start}-{} {:?} {:?} {:?}",
                    x - 1,
                    style.0,
                    style.1,
                    style.2
                ));
            }
        }
        out.push_str(&format!("{y:2}: {}\n", runs.join(" | ")));
    }
    out
}

#[test]
fn snapshot_seed_cat_detail_marks_the_weak_headline() {
    use imgtag::tui::theme::Theme;
    for (name, theme) in [("dark", Theme::dark()), ("light", Theme::light())] {
        let app = seed_cat_app(theme);
        assert_eq!(app.selected_row().unwrap().key, "uploads/cats/seed.jpg");
        let t = render(&app);
        let text = screen_text(&t);
        assert!(
            text.contains("Feline 65.3 is the headline and below the review threshold 70"),
            "{text}"
        );
        assert!(text.contains("headline ▶ Feline 65.3"), "{text}");
        assert!(text.contains("(Animal › Mammal › Feline)"), "{text}");
        // The bar of the headline label carries the marker.
        let bar_line = text
            .lines()
            .find(|l| l.contains("▶ Feline ") && l.contains("65.3") && l.contains('█'))
            .unwrap_or_else(|| panic!("no marked bar: {text}"));
        assert!(!bar_line.contains("▶ Animal"), "{bar_line}");
        if name == "dark" {
            insta::assert_snapshot!("seed_cat_detail", t.backend());
        }
        insta::assert_snapshot!(format!("seed_cat_styles_{name}"), styled_dump(&t));
    }
}

#[test]
fn flagged_labels_show_as_flagged() {
    let mut app = seed_cat_app(imgtag::tui::theme::Theme::dark());
    let pos = app
        .rows
        .view()
        .iter()
        .position(|&i| app.rows.key(i) == "uploads/flagged.jpg")
        .unwrap();
    app.cursor = pos;
    // Moved without a key press: hand it the document it would load.
    let rev = app.selected_row().unwrap().rev;
    let doc = DOCS.with(|d| d.borrow()["uploads/flagged.jpg"].clone());
    up(
        &mut app,
        Msg::Doc {
            key: "uploads/flagged.jpg".into(),
            rev,
            result: Ok(Box::new(doc)),
        },
    );
    let r = app.selected_row().unwrap();
    assert_eq!(r.status, Some(Status::NeedsReview));
    let text = screen_text(&render(&app));
    assert!(text.contains("flagged as doubtful: Pet"), "{text}");
    assert!(text.contains("flagged as doubtful"), "{text}");
    assert!(text.contains("! Pet"), "{text}");
    assert!(text.contains("review   !Pet"), "{text}");
    // The flagged headline-strong image is not weak: no threshold claim.
    assert!(!text.contains("below the review threshold"), "{text}");
}

#[test]
fn spot_check_jumps_to_unreviewed_tagged_images_only() {
    let mut app = seed_cat_app(imgtag::tui::theme::Theme::dark());
    app.rng = fastrand::Rng::with_seed(7);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        up(&mut app, key('x'));
        let r = app.selected_row().unwrap();
        assert_eq!(r.status, Some(Status::Tagged), "{}", r.key);
        assert!(!r.reviewed(), "{}", r.key);
        let doc = app.selected_doc().unwrap();
        assert!(doc.review().is_none(), "{}", r.key);
        seen.insert(r.key.to_string());
    }
    // Tagged and unreviewed: the strong cat and the dog; never the
    // reviewed dog, the flagged cat or the seed cat.
    let mut seen: Vec<_> = seen.into_iter().collect();
    seen.sort();
    assert_eq!(seen, ["uploads/cats/strong.jpg", "uploads/dog.jpg"]);
    // Only in the current view.
    up(&mut app, key('/'));
    for c in "holiday".chars() {
        up(&mut app, key(c));
    }
    up(&mut app, code(KeyCode::Enter));
    up(&mut app, key('x'));
    let (_, msg) = app.message.clone().unwrap();
    assert!(msg.contains("no unreviewed tagged image"), "{msg}");
    assert_eq!(
        app.selected_row().unwrap().key,
        "uploads/holiday/beach photo.jpg"
    );
}

/// A local-folder bucket with these images (and metadata, if any).
fn folder_bucket(files: &[(&str, Option<&str>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (key, meta) in files {
        let img = dir.path().join("uploads").join(key);
        std::fs::create_dir_all(img.parent().unwrap()).unwrap();
        std::fs::write(&img, b"not really a jpeg").unwrap();
        if let Some(json) = meta {
            let m = dir.path().join("metadata").join(format!("{key}.json"));
            std::fs::create_dir_all(m.parent().unwrap()).unwrap();
            std::fs::write(&m, json).unwrap();
        }
    }
    dir
}

/// `+Cat -Feline !Pet` is in the cat's document, its labels and status.
fn assert_cat_fixed(h: &Harness, k: &str) {
    let doc = h.doc(&format!("metadata/cats/{k}.jpg.json"));
    let review = &doc["ImgTag"]["Review"];
    assert_eq!(review["Added"], serde_json::json!(["Cat"]), "{doc}");
    assert_eq!(review["Removed"], serde_json::json!(["Feline"]), "{doc}");
    assert_eq!(review["Flagged"], serde_json::json!(["Pet"]), "{doc}");
    let names = label_names(&doc);
    assert!(names.contains(&"Cat".to_string()), "{names:?}");
    assert!(!names.contains(&"Feline".to_string()), "{names:?}");
    // Pet is flagged, not removed: the image still needs review.
    assert!(names.contains(&"Pet".to_string()), "{names:?}");
    assert_eq!(
        h.status_of(&format!("cats/{k}.jpg")),
        Some(Status::NeedsReview)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_edit_on_marked_images_asks_then_writes_each() {
    let dir = folder_bucket(&[
        ("cats/a.jpg", Some(SEED_CAT)),
        ("cats/b.jpg", Some(SEED_CAT)),
        ("cats/c.jpg", Some(SEED_CAT)),
        ("new.jpg", None),
    ]);
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let source = DetectorSource::Build {
        kind: imgtag::config::DetectorKind::Local,
        s3: Default::default(),
        concurrency: 1,
        tps: 5.0,
        engine: Default::default(),
    };
    let mut h = Harness::new(store, source, dir).await;
    assert_eq!(h.app.rows.len(), 4);
    let untouched = std::fs::read(h.dir.path().join("metadata/cats/c.jpg.json")).unwrap();
    // Mark a, b and the untagged image; c stays unmarked.
    h.select("cats/a.jpg");
    h.keys("  ");
    h.select("new.jpg");
    h.send(key(' '));
    assert_eq!(h.app.marks.len(), 3);
    h.send(key('e'));
    let prompt = screen_text(&render(&h.app));
    assert!(
        prompt.contains("labels on 2 marked (+Add -Remove !Flag"),
        "{prompt}"
    );
    h.keys("+Cat -Feline !Pet");
    h.send(code(KeyCode::Enter));
    let Mode::Confirm { text, .. } = &h.app.mode else {
        panic!("no confirmation: {:?}", h.app.mode)
    };
    assert!(
        text.starts_with("Apply +Cat -Feline !Pet to 2 marked images?"),
        "{text}"
    );
    assert!(text.contains("1 other marked without labels"), "{text}");
    // "n" writes nothing and keeps the marks.
    h.send(key('n'));
    h.settle().await;
    assert_eq!(
        h.doc("metadata/cats/a.jpg.json")["ImgTag"],
        serde_json::Value::Null
    );
    assert_eq!(h.app.marks.len(), 3);
    // Again, and yes.
    h.send(key('e'));
    h.keys("+Cat -Feline !Pet");
    h.send(code(KeyCode::Enter));
    h.send(key('y'));
    h.settle().await;
    assert_cat_fixed(&h, "a");
    assert_cat_fixed(&h, "b");
    assert_eq!(
        std::fs::read(h.dir.path().join("metadata/cats/c.jpg.json")).unwrap(),
        untouched
    );
    assert!(!h.dir.path().join("metadata/new.jpg.json").exists());
    assert!(h.app.marks.is_empty());
    assert!(h.app.rows.iter().all(|r| !r.busy));
    let (_, msg) = h.app.message.clone().unwrap();
    assert_eq!(msg, "edit saved on 2 of 2 images, 0 not saved");
    // Without marks, e edits the selected image alone, without asking.
    h.select("cats/c.jpg");
    h.send(key('e'));
    h.keys("+Cat");
    h.send(code(KeyCode::Enter));
    assert_eq!(h.app.mode, Mode::Normal);
    h.settle().await;
    let doc = h.doc("metadata/cats/c.jpg.json");
    assert_eq!(doc["ImgTag"]["Review"]["Added"], serde_json::json!(["Cat"]));
    let (_, msg) = h.app.message.clone().unwrap();
    assert!(
        msg.starts_with("review saved for uploads/cats/c.jpg"),
        "{msg}"
    );
}

/// Every cell of these screens is readable in both themes: foreground and
/// background differ, and text on the terminal's own background never uses
/// a colour that some palette draws (nearly) as that background.
#[test]
fn every_screen_reads_in_both_themes() {
    use imgtag::tui::theme::Theme;
    use ratatui::style::Color;
    for theme in [Theme::dark(), Theme::light()] {
        let mut app = seed_cat_app(theme);
        let mut screens = Vec::new();
        // Every row selected in turn: every status, detail and selection.
        for _ in 0..app.rows.view().len() {
            screens.push(("row", render(&app)));
            up(&mut app, key('j'));
        }
        up(&mut app, key(' '));
        up(&mut app, key('k'));
        up(&mut app, key(' '));
        screens.push(("marks", render(&app)));
        up(&mut app, key('e'));
        up(&mut app, key('+'));
        screens.push(("prompt", render(&app)));
        up(&mut app, code(KeyCode::Esc));
        up(&mut app, key('?'));
        screens.push(("help", render(&app)));
        up(&mut app, key('q'));
        let mut app = seed_cat_app(theme);
        up(&mut app, key('T'));
        screens.push(("confirm", render(&app)));
        up(&mut app, key('n'));
        app.message = Some((
            imgtag::tui::app::Level::Error,
            "listing failed: boom".into(),
        ));
        screens.push(("error", render(&app)));
        let mut app = listed(mixed_rows(), false);
        app.theme = theme;
        screens.push(("listing", render(&app)));
        up(&mut app, key('x'));
        screens.push(("spot", render(&app)));

        let vanishing = theme.vanishing();
        for (what, t) in &screens {
            let buf = t.backend().buffer();
            for y in 0..buf.area.height {
                for x in 0..buf.area.width {
                    let c = &buf[(x, y)];
                    let at = format!("{:?} {what} at {x},{y} {:?}", theme.background, c.symbol());
                    if c.fg != Color::Reset && c.bg != Color::Reset {
                        assert_ne!(c.fg, c.bg, "{at}");
                    }
                    if c.symbol().trim().is_empty() {
                        continue;
                    }
                    if c.bg == Color::Reset {
                        assert!(!vanishing.contains(&c.fg), "{at}: {:?}", c.fg);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// compact rows: documents on selection, removals, search, trust

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_loads_the_document_of_the_selected_row() {
    let mut h = Harness::demo().await;
    h.app.docs.clear();
    h.select("chelsea");
    assert!(matches!(
        h.app.doc_state(&h.app.selected_row().unwrap()),
        DocState::Loading
    ));
    let text = screen_text(&render(&h.app));
    assert!(
        text.contains("loading…") && !text.contains("▶ Feline"),
        "{text}"
    );
    h.settle().await;
    let text = screen_text(&render(&h.app));
    assert!(
        text.contains("▶ Feline 65.3") && !text.contains("loading…"),
        "{text}"
    );
    assert_eq!(
        h.app.selected_doc().unwrap().labels.len(),
        4,
        "the seed's four labels"
    );

    // Another process rewrites the document; the index replaces the row:
    // the old document is not shown, the new one is read.
    let path = "metadata/animals/chelsea.png.json";
    let mut doc = h.doc(path);
    assert_eq!(doc["Labels"][3]["Name"], "Feline");
    doc["Labels"][3]["Confidence"] = serde_json::json!(12.5);
    std::fs::write(h.dir.path().join(path), doc.to_string()).unwrap();
    // What the index's refresh sends for it: the row assessed afresh.
    let image = h.app.selected_row().unwrap().key.to_string();
    let store: DynStore = Arc::new(LocalStore::open(h.dir.path()).unwrap());
    let bucket = imgtag::bucket::Bucket::new(store, Layout::default(), h.app.review_rule.clone());
    let row = bucket.reassess(&image, Some(path)).await.unwrap();
    let generation = h.app.generation;
    h.send(Msg::rows(generation, [row]));
    assert!(h.app.selected_doc().is_none());
    h.settle().await;
    let text = screen_text(&render(&h.app));
    assert!(text.contains("▶ Feline 12.5"), "{text}");
}

#[test]
fn removed_keys_leave_the_list_and_the_counts() {
    let mut app = listed(mixed_rows(), true);
    assert_eq!(app.selected_row().unwrap().key, "uploads/cat.jpg");
    up(&mut app, key(' ')); // marks the cat, moves to the dog
    up(&mut app, key('k'));
    let generation = app.generation;
    // An old listing's removals are ignored.
    up(
        &mut app,
        Msg::Removed {
            generation: generation - 1,
            keys: vec!["uploads/cat.jpg".into()],
        },
    );
    assert_eq!(app.rows.len(), 7);
    up(
        &mut app,
        Msg::Removed {
            generation,
            keys: vec!["uploads/cat.jpg".into(), "metadata/gone.jpg.json".into()],
        },
    );
    assert_eq!((app.rows.len(), app.rows.view().len()), (5, 5));
    assert_eq!(
        (app.count(Status::Tagged), app.count(Status::Orphan)),
        (0, 0)
    );
    assert!(app.marks.is_empty());
    assert_eq!(app.selected_row().unwrap().key, "uploads/dog.jpg");
    let text = screen_text(&render(&app));
    assert!(
        !text.contains("cat.jpg") && !text.contains("gone.jpg"),
        "{text}"
    );
    assert!(text.contains(" 5/5 "), "{text}");
    // Listed again: back in its place.
    up(
        &mut app,
        Msg::rows(generation, vec![mixed_rows().remove(0)]),
    );
    assert_eq!(app.rows.view()[0], 0);
    assert_eq!(app.count(Status::Tagged), 1);
}

#[test]
fn slash_search_matches_labels_and_their_parents() {
    const TABBY: &str =
        r#"{"Labels":[{"Name":"Tabby","Confidence":88.0,"Parents":[{"Name":"Housecat"}]}]}"#;
    let mut rows = mixed_rows();
    rows.push(row("uploads/zz.jpg", Some(("metadata/zz.jpg.json", TABBY))));
    let mut app = listed(rows, true);
    let shown = |app: &mut App, needle: &str| {
        up(app, key('/'));
        for c in needle.chars() {
            up(app, key(c));
        }
        up(app, code(KeyCode::Enter));
        let keys: Vec<String> = (app.rows.view().iter())
            .map(|&i| app.rows.key(i).to_string())
            .collect();
        up(app, code(KeyCode::Esc));
        keys
    };
    assert_eq!(shown(&mut app, "HOUSEC"), ["uploads/zz.jpg"]);
    assert_eq!(shown(&mut app, "tabb"), ["uploads/zz.jpg"]);
    // Animal is a label of the cat and a parent of its Feline.
    assert_eq!(shown(&mut app, "animal"), ["uploads/cat.jpg"]);
    assert_eq!(
        shown(&mut app, "Holiday/BEA"),
        ["uploads/holiday/beach photo.jpg"]
    );
    assert!(shown(&mut app, "nothing-like-it").is_empty());
}

/// A detector whose task panics: the pipeline never answers.
struct Panicking;

#[async_trait::async_trait]
impl imgtag::detection::Detector for Panicking {
    fn kind(&self) -> imgtag::detection::DetectorKind {
        imgtag::detection::DetectorKind::Local
    }
    async fn detect(
        &self,
        _: imgtag::detection::DetectInput,
        _: imgtag::detection::DetectParams,
    ) -> Result<imgtag::detection::Detection, imgtag::detection::DetectFailure> {
        panic!("detector bug")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicked_tag_job_is_reported_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    imgtag::demo::ensure(dir.path()).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let mut h = Harness::new(store, DetectorSource::Ready(Arc::new(Panicking)), dir).await;
    h.select("chelsea");
    h.send(key('t'));
    assert!(h.app.selected_row().unwrap().busy);
    h.settle().await;
    assert!(!h.app.selected_row().unwrap().busy, "still busy");
    assert!(h.app.rows.iter().all(|r| !r.busy));
    let (level, msg) = h.app.message.clone().unwrap();
    assert_eq!(level, imgtag::tui::app::Level::Error);
    assert!(
        msg.contains("stopped unexpectedly") && msg.contains("detector bug"),
        "{msg}"
    );
    // The run is over: the next one counts from zero.
    assert_eq!(h.app.work, imgtag::tui::app::Work::default());
    assert_eq!(h.status_of("chelsea"), Some(Status::NeedsReview));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_document_is_replaced_only_after_a_yes() {
    const FOREIGN: &str = r#"{"tags":["x"],"owner":"another tool"}"#;
    let dir = tempfile::tempdir().unwrap();
    imgtag::demo::ensure(dir.path()).unwrap();
    let path = dir.path().join("metadata/animals/chelsea.png.json");
    std::fs::write(&path, FOREIGN).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
    let mut h = Harness::new(store, DetectorSource::Ready(det), dir).await;
    h.select("chelsea");
    assert_eq!(h.status_of("chelsea"), Some(Status::Malformed));
    h.send(key('t'));
    let Mode::Confirm { text, cmd } = &h.app.mode else {
        panic!("{:?}", h.app.mode)
    };
    assert!(
        text.contains("Replace the unreadable metadata document"),
        "{text}"
    );
    assert!(matches!(
        cmd,
        Cmd::Tag {
            replace_unreadable: true,
            ..
        }
    ));
    // Enter is not a yes here; n keeps the document.
    h.send(code(KeyCode::Enter));
    assert!(matches!(h.app.mode, Mode::Confirm { .. }));
    h.send(key('n'));
    h.settle().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FOREIGN);
    // y replaces it, for this run only.
    h.send(key('t'));
    h.send(key('y'));
    h.settle().await;
    let doc = h.doc("metadata/animals/chelsea.png.json");
    assert!(
        doc["ImgTag"].is_object() && !label_names(&doc).is_empty(),
        "{doc}"
    );
    assert_ne!(h.status_of("chelsea"), Some(Status::Malformed));
    // The next t on a readable document asks nothing.
    h.send(key('t'));
    assert_eq!(h.app.mode, Mode::Normal);
}

// ---------------------------------------------------------------------------
// instance boxes on the thumbnail

/// Three people (one box hostile: a negative width), a dog, and a label
/// without boxes.
const PEOPLE_AND_DOG: &str = r#"{"Labels":[
 {"Name":"Animal","Confidence":97.0},
 {"Name":"Person","Confidence":99.0,"Instances":[
  {"BoundingBox":{"Width":0.2,"Height":0.5,"Left":0.1,"Top":0.2},"Confidence":99.0},
  {"BoundingBox":{"Width":0.2,"Height":0.5,"Left":0.4,"Top":0.2},"Confidence":95.0},
  {"BoundingBox":{"Width":0.1,"Height":0.4,"Left":0.7,"Top":0.3},"Confidence":80.0},
  {"BoundingBox":{"Width":-0.1,"Height":0.4,"Left":0.7,"Top":0.3},"Confidence":70.0}]},
 {"Name":"Dog","Confidence":88.0,"Parents":[{"Name":"Animal"}],"Instances":[
  {"BoundingBox":{"Width":0.3,"Height":0.3,"Left":0.6,"Top":0.6},"Confidence":88.0}]}]}"#;

/// The boxes of the last thumbnail request among `cmds` (None: no
/// request). A request made before the document was loaded is superseded
/// by the one made when it arrives.
fn thumb_boxes(cmds: &[Cmd]) -> Option<Vec<(f32, f32)>> {
    cmds.iter().rev().find_map(|c| match c {
        Cmd::Thumb { boxes, .. } => Some(boxes.iter().map(|b| (b.left, b.top)).collect()),
        _ => None,
    })
}

#[test]
fn label_boxes_are_drawn_on_the_thumbnail_and_switched_with_brackets() {
    let mut app = new_app(Size::new(120, 30));
    app.thumbnails = true;
    app.start();
    let generation = app.generation;
    let rows = vec![
        row("uploads/a.jpg", Some(("metadata/a.jpg.json", CAT))),
        row(
            "uploads/park.jpg",
            Some(("metadata/park.jpg.json", PEOPLE_AND_DOG)),
        ),
    ];
    let first = up(&mut app, Msg::rows(generation, rows));
    // No label of the cat has boxes: a bare thumbnail.
    assert_eq!(thumb_boxes(&first), Some(vec![]));
    let text = screen_text(&render(&app));
    assert!(!text.contains('×') && !text.contains("boxes"), "{text}");

    // The park: the first label with boxes (Person) is drawn at once; the
    // hostile box is left out.
    let cmds = up(&mut app, key('j'));
    assert_eq!(
        thumb_boxes(&cmds),
        Some(vec![(0.1, 0.2), (0.4, 0.2), (0.7, 0.3)])
    );
    let text = screen_text(&render(&app));
    assert!(
        text.contains("Person ×3") && text.contains("Dog ×1"),
        "{text}"
    );
    assert!(text.contains("□ boxes on the thumbnail"), "{text}");
    assert!(!text.contains("Animal ×"), "{text}");

    // The thumbnail arrives with Person's boxes; `]` asks for Dog's, and
    // the Person image stays on screen until they are drawn.
    let area = app.thumb.as_ref().unwrap().area;
    let proto = |boxes| {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(8, 8));
        let p = Picker::halfblocks()
            .new_protocol(img, Size::new(4, 4), ratatui_image::Resize::Fit(None))
            .unwrap();
        Msg::Thumb {
            key: "uploads/park.jpg".into(),
            area,
            boxes,
            result: Ok(p),
        }
    };
    let person = app.thumb.as_ref().unwrap().boxes.clone();
    up(&mut app, proto(person.clone()));
    assert!(matches!(
        app.thumb.as_ref().unwrap().state,
        ThumbState::Ready(_)
    ));
    let cmds = up(&mut app, key(']'));
    assert_eq!(thumb_boxes(&cmds), Some(vec![(0.6, 0.6)]));
    assert!(matches!(
        app.thumb.as_ref().unwrap().state,
        ThumbState::Ready(_)
    ));
    assert!(app.message.as_ref().unwrap().1.contains("Dog ×1"));
    // A late answer with Person's boxes is not taken for Dog's.
    up(&mut app, proto(person));
    let dog = app.thumb.as_ref().unwrap();
    assert_eq!(dog.boxes.len(), 1);
    // Then no boxes, then Person again; `[` goes back.
    assert_eq!(thumb_boxes(&up(&mut app, key(']'))), Some(vec![]));
    assert_eq!(
        thumb_boxes(&up(&mut app, key(']'))).map(|b| b.len()),
        Some(3)
    );
    assert_eq!(thumb_boxes(&up(&mut app, key('['))), Some(vec![]));
    // Nothing changes: no new request.
    assert_eq!(thumb_boxes(&up(&mut app, key('?'))), None);
    up(&mut app, code(KeyCode::Esc));

    // Another image and back: the first label with boxes again.
    assert_eq!(thumb_boxes(&up(&mut app, key('k'))), Some(vec![]));
    assert_eq!(
        thumb_boxes(&up(&mut app, key('j'))).map(|b| b.len()),
        Some(3)
    );
    // On the cat, `]` says why nothing happens.
    up(&mut app, key('k'));
    assert_eq!(thumb_boxes(&up(&mut app, key(']'))), None);
    assert!(
        app.message
            .as_ref()
            .unwrap()
            .1
            .contains("no label of this image has boxes")
    );
}

// ---------------------------------------------------------------------------
// a hostile document

/// `labels` labels named `Label00000`...; every other one of the first is
/// named again in `Review.Added` in capitals, among `added` names;
/// `label00001` is flagged.
fn hostile_json(labels: usize, added: usize) -> String {
    let labels: Vec<_> = (0..labels)
        .map(|i| {
            serde_json::json!({"Name": format!("Label{i:05}"),
                "Confidence": 99.9 - i as f64 * 0.004})
        })
        .collect();
    let added: Vec<_> = (0..added)
        .map(|j| match j {
            j if j < labels.len() && j % 2 == 0 => format!("LABEL{j:05}"),
            j => format!("a{j}"),
        })
        .collect();
    serde_json::json!({
        "Labels": labels,
        "ImgTag": {"SchemaVersion": 1,
            "Source": {"Bucket": "photos", "Key": "uploads/huge.jpg", "ETag": "\"e1\""},
            "Detector": "rekognition", "MinConfidence": 55.0,
            "TaggedAt": "2026-01-01T00:00:00Z", "TaggedBy": "imgtag",
            "Review": {"Added": added, "Flagged": ["label00001"]}},
    })
    .to_string()
}

/// A document of 20,000 labels and 100,000 `Review.Added` names: its
/// facts are computed once when it arrives (flags matched in any case),
/// the pane's lines are built once for it however many frames and
/// scrolls follow (again only when the width changes), and 40 frames take
/// seconds, not the hours of a scan of every review list for every label
/// on every frame.
#[test]
fn a_huge_document_is_analysed_once_and_frames_stay_cheap() {
    let json = hostile_json(20_000, 100_000);
    let mut app = listed(
        vec![row(
            "uploads/huge.jpg",
            Some(("metadata/huge.jpg.json", &json)),
        )],
        true,
    );
    app.size = Size::new(160, 48);
    let loaded = app.selected_loaded().expect("the document is loaded");
    let facts = &loaded.facts;
    assert_eq!(facts.flags.len(), 20_000);
    for (i, f) in facts.flags.iter().enumerate() {
        assert_eq!(f.added, i % 2 == 0, "label {i}");
        assert_eq!(f.flagged, i == 1, "label {i}");
        assert!(!f.removed, "label {i}");
    }
    let facts_at: *const _ = facts;

    // Frames on another thread: the test fails (rather than hangs) when
    // they are slow.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut frames = Vec::new();
        up(&mut app, code(KeyCode::Tab));
        for n in 0..40 {
            let key = if n % 4 == 3 {
                KeyCode::PageUp
            } else {
                KeyCode::PageDown
            };
            if n == 0 {
                frames.push(screen_text(&render(&app)));
            }
            up(&mut app, code(key));
            frames.push(screen_text(&render(&app)));
        }
        let _ = tx.send((app, frames));
    });
    let (mut app, frames) = rx
        .recv_timeout(std::time::Duration::from_secs(90))
        .expect("40 frames of one document within 90 s");
    // The pane shows the flags, in the detail pane's order.
    let first = &frames[0];
    let line_of = |name: &str| first.lines().find(|l| l.contains(name)).unwrap_or("");
    assert!(line_of("Label00001").contains("! Label00001"), "{first}");
    assert!(first.contains("flagged as doubtful"), "{first}");
    assert!(first.contains("added by hand"), "{first}");
    // The review line names the first names of each list, not 100,000.
    assert!(first.contains("+LABEL00000 +a1 +LABEL00002"), "{first}");
    assert_eq!(view::NAMES_SHOWN, 20);
    assert!(
        first.contains("+a19 ") && !first.contains("+a21 "),
        "{first}"
    );
    assert!(first.contains("more)"), "{first}");
    // Scrolling moved the labels shown.
    assert_ne!(frames[1], frames[2]);
    assert!(!frames[3].contains("Label00001 "), "{}", frames[3]);
    assert_eq!(app.detail_builds(), 1, "lines built once for 41 frames");
    assert!(std::ptr::eq(
        facts_at,
        &app.selected_loaded().unwrap().facts
    ));
    up(&mut app, Msg::Resize(140, 48));
    app.size = Size::new(140, 48);
    render(&app);
    render(&app);
    assert_eq!(
        app.detail_builds(),
        2,
        "a new width builds them again, once"
    );
}

/// A turn of the UI thread (`runtime::turn`) files the messages that come
/// within a frame of the last draw before drawing again, and input (a key,
/// a resize) ends it at once: a listing that sends a page every few
/// milliseconds is drawn once a frame, not once a page. The last draw is
/// put ten seconds ahead so that no scheduling delay ends the turn early.
#[tokio::test]
async fn a_turn_files_what_comes_within_a_frame_and_input_ends_it() {
    use imgtag::tui::runtime::turn;
    let mut app = new_app(Size::new(120, 40));
    app.start();
    let generation = app.generation;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sender = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let rows = vec![row("uploads/b.jpg", None)];
        sender.send(Msg::rows(generation, rows)).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        sender.send(Msg::Resize(100, 30)).unwrap();
    });
    let drawn = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let first = Msg::rows(generation, [row("uploads/a.jpg", None)]);
    turn(&mut app, &mut rx, first, drawn, |_| {}).await;
    // The page that came 20 ms later was filed in the same turn, and the
    // resize after it ended the turn long before the frame was due.
    assert_eq!(app.rows.len(), 2);
    assert_eq!(app.size, Size::new(100, 30));
    assert!(std::time::Instant::now() < drawn);
    drop(tx);
}
