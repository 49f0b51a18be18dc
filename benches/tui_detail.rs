//! The detail pane on a hostile document: 60,000 labels and 400,000
//! `Review.Added` names (about 6 MB, under the 8 MiB metadata limit).
//! The document is loaded into the app as the runtime would deliver it,
//! then ~50 frames are drawn (`App::update` of a key + `view::draw` on a
//! 160x48 `TestBackend`): the detail pane scrolled down and up, the
//! selection's thumbnail boxes switched, the list pane focused again.
//!
//! Prints the first frame (the document's analysis and the pane's lines
//! are built there) and the median and max of the frames after it.
//! Target: every frame after the first <= 16 ms.
//!
//! Run: `cargo bench --bench tui_detail` (IMGTAG_BENCH_LABELS,
//! IMGTAG_BENCH_ADDED and IMGTAG_BENCH_FRAMES resize it).

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use imgtag::catalog::Assessed;
use imgtag::contract::{KeyKind, Layout, MAX_METADATA_BYTES, parse_metadata};
use imgtag::status::assess;
use imgtag::storage::ObjectInfo;
use imgtag::tui::app::{App, Cmd, Header, Msg};
use imgtag::tui::keys::Keymap;
use imgtag::tui::view;
#[path = "common/measure.rs"]
mod measure;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Size;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `labels` labels (`Label00000`..., some with parents), every other one
/// named again in `Review.Added` in another case, among `added` names.
fn hostile(labels: usize, added: usize) -> String {
    let mut out = String::from("{\"Labels\":[");
    for i in 0..labels {
        if i > 0 {
            out.push(',');
        }
        let conf = 99.9 - (i % 800) as f32 * 0.1;
        if i % 10 == 0 {
            out.push_str(&format!(
                "{{\"Name\":\"Label{i:05}\",\"Confidence\":{conf:.1},\"Parents\":[{{\"Name\":\"Label{:05}\"}}]}}",
                i / 10
            ));
        } else {
            out.push_str(&format!(
                "{{\"Name\":\"Label{i:05}\",\"Confidence\":{conf:.1}}}"
            ));
        }
    }
    out.push_str("],\"ImgTag\":{\"SchemaVersion\":1,\"Source\":{\"Bucket\":\"photos\",\"Key\":\"uploads/huge.jpg\",\"ETag\":\"\\\"e1\\\"\"},\"Detector\":\"rekognition\",\"MinConfidence\":55.0,\"TaggedAt\":\"2026-01-01T00:00:00Z\",\"TaggedBy\":\"imgtag\",\"Review\":{\"Added\":[");
    for j in 0..added {
        if j > 0 {
            out.push(',');
        }
        if j < labels && j % 2 == 0 {
            out.push_str(&format!("\"LABEL{j:05}\""));
        } else {
            out.push_str(&format!("\"a{j}\""));
        }
    }
    out.push_str("],\"Flagged\":[\"label00001\"]}}}");
    out
}

fn main() {
    let labels = measure::env("IMGTAG_BENCH_LABELS", 60_000) as usize;
    let added = measure::env("IMGTAG_BENCH_ADDED", 400_000) as usize;
    let frames = measure::env("IMGTAG_BENCH_FRAMES", 50) as usize;
    let json = hostile(labels, added);
    assert!(
        json.len() as u64 <= MAX_METADATA_BYTES,
        "{} bytes",
        json.len()
    );
    let parsed = parse_metadata(json.as_bytes()).expect("the document parses");
    println!(
        "document: {labels} labels, {added} Review.Added names, {:.1} MB",
        json.len() as f64 / 1e6
    );

    let image = ObjectInfo {
        key: "uploads/huge.jpg".into(),
        size: 48_213,
        etag: Some("\"e1\"".into()),
        last_modified: Some(1_700_000_000),
    };
    let read = Some(Ok(parsed.clone()));
    let row = Assessed {
        status: Some(assess(read.as_ref(), image.etag.as_deref(), 70.0)),
        metadata: Some(ObjectInfo {
            key: "metadata/huge.jpg.json".into(),
            size: json.len() as u64,
            etag: Some("\"m1\"".into()),
            last_modified: Some(1_700_000_000),
        }),
        image: Some(image),
        key_kind: Some(KeyKind::Canonical),
        doc: read.as_ref().map(imgtag::summary::summarize),
        read_error: None,
    };

    let header = Header {
        bucket: "s3://photos".into(),
        detector: "rekognition".into(),
        paid: true,
    };
    let mut app = App::new(header, Layout::default(), Keymap::default(), 55.0, 70.0);
    app.size = Size::new(160, 48);
    app.start();
    let generation = app.generation;
    let cmds = app.update(Msg::rows(generation, vec![row]));
    let Some(Cmd::LoadDoc { key, rev, .. }) =
        cmds.into_iter().find(|c| matches!(c, Cmd::LoadDoc { .. }))
    else {
        panic!("the selected row's document is asked for");
    };
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();

    // First frame: the document arrives and is drawn.
    let started = Instant::now();
    app.update(Msg::Doc {
        key,
        rev,
        result: Ok(Box::new(parsed.doc)),
    });
    terminal.draw(|f| view::draw(f, &app)).unwrap();
    let first = started.elapsed();

    let press = |c: KeyCode| Msg::Key(KeyEvent::new(c, KeyModifiers::NONE));
    app.update(press(KeyCode::Tab));
    let mut times = Vec::with_capacity(frames);
    for n in 0..frames {
        let msg = match n % 10 {
            0..=5 => press(KeyCode::PageDown),
            6 | 7 => press(KeyCode::PageUp),
            8 => press(KeyCode::Char(']')),
            _ => press(KeyCode::Char('j')),
        };
        let started = Instant::now();
        app.update(msg);
        terminal.draw(|f| view::draw(f, &app)).unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = *times.last().expect("frames drawn");
    println!(
        "first frame (document analysed, lines built): {:.1} ms",
        ms(first)
    );
    println!(
        "later frames ({frames}): median {:.3} ms, max {:.3} ms; detail lines built {} time(s)",
        ms(median),
        ms(max),
        app.detail_builds()
    );
    let ok = max <= Duration::from_millis(16);
    println!(
        "target: every frame after the first <= 16 ms: {}",
        if ok { "met" } else { "NOT met" }
    );
}
