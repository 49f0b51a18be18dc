//! The TUI at a million rows (issue: a persistent index), measured against
//! baselines in the same run:
//!
//! 1. Heap bytes per row of the app's state beyond the key strings (image
//!    and metadata key), counted by a global allocator: target <= 300 B.
//!    Baseline: the former row (the whole parsed document and a
//!    lowercased search string per row), kept here as `OldRow`.
//! 2. Frame time (`App::update` + `view::draw` on a 160x48 `TestBackend`)
//!    for a scroll step, a sort switch, a status-filter keystroke and a
//!    `/` search keystroke with 1,000,000 rows, against the same with 100
//!    rows.
//!
//! 3. Loading the rows: wall time and the slowest UI-thread turn (filing
//!    plus a draw), summaries built off the UI thread against the former
//!    way (pages of assessed rows summarised on it).
//!
//! Run: `cargo bench --bench tui_memory` (IMGTAG_BENCH_ROWS sets the
//! large size, IMGTAG_BENCH_OLD_ROWS the baseline's, IMGTAG_BENCH_LOAD_ROWS
//! part 3's; IMGTAG_BENCH_LOAD_ONLY=1 runs part 3 alone;
//! IMGTAG_BENCH_LOAD_INDEX=FILE instead loads every row of an index file
//! the index bench kept, through the index's query, and reports the peak
//! resident memory).

mod common;
#[path = "common/measure.rs"]
mod measure;
use measure::median;

use std::time::{Duration, Instant};

use common::{Rng, assessed_of, document, etag_of, live};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use imgtag::catalog::Assessed;
use imgtag::contract::{KeyKind, Label, Layout, MetadataDoc, NameRef, ParsedMetadata};
use imgtag::status::Status;
use imgtag::storage::ObjectInfo;
use imgtag::tui::app::{App, Header, Msg};
use imgtag::tui::keys::Keymap;
use imgtag::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Size;

// ---------------------------------------------------------------------------
// Synthetic bucket

const STEMS: [&str; 20] = [
    "Cat", "Dog", "Bird", "Car", "Tree", "Flower", "Building", "Person", "Food", "Boat",
    "Mountain", "Beach", "Road", "Sky", "Table", "Chair", "Bottle", "Phone", "Book", "Lamp",
];
const KINDS: [&str; 15] = [
    "",
    " Toy",
    " Art",
    " Sign",
    " Logo",
    " Shadow",
    " Outdoors",
    " Indoors",
    " Closeup",
    " Silhouette",
    " Crowd",
    " Pattern",
    " Drawing",
    " Reflection",
    " Night",
];

/// 300 label names, e.g. "Beach Reflection".
fn vocabulary() -> Vec<String> {
    STEMS
        .iter()
        .flat_map(|s| KINDS.iter().map(move |k| format!("{s}{k}")))
        .collect()
}

fn image_key(n: usize) -> String {
    let month = n / 40_000;
    format!(
        "uploads/{}/{:02}/IMG_{n:06}.jpg",
        2020 + month / 12,
        month % 12 + 1
    )
}

fn etag(n: usize) -> String {
    etag_of(n as u64)
}

/// Eight labels, two parents each, from the vocabulary.
fn labels(rng: &mut Rng, vocab: &[String]) -> Vec<Label> {
    let mut conf = 45.0 + rng.below(550) as f32 / 10.0;
    (0..8)
        .map(|_| {
            let mut l = Label::new(vocab[rng.below(vocab.len() as u64) as usize].clone(), conf);
            l.parents = (0..2)
                .map(|_| NameRef::new(vocab[rng.below(vocab.len() as u64) as usize].clone()))
                .collect();
            conf = (conf - rng.below(80) as f32 / 10.0).max(50.0);
            l
        })
        .collect()
}

/// One assessed image, as the listing produces it: 1 in 10 untagged.
fn assessed(n: usize, rng: &mut Rng, vocab: &[String]) -> Assessed {
    assessed_with_doc(n, rng, vocab).0
}

/// [`assessed`] and the full document, which rows used to hold.
fn assessed_with_doc(
    n: usize,
    rng: &mut Rng,
    vocab: &[String],
) -> (
    Assessed,
    Option<Result<ParsedMetadata, imgtag::contract::Malformed>>,
) {
    let key = image_key(n);
    let image_etag = etag(n);
    let size = 800_000 + rng.below(5_000_000);
    let mut image = ObjectInfo {
        key,
        size,
        etag: Some(image_etag.clone().into()),
        last_modified: None,
    };
    let read =
        (!n.is_multiple_of(10)).then(|| Ok(document(&image, image_etag, labels(rng, vocab), None)));
    image.last_modified = Some(1_700_000_000 + n as i64 * 60 + rng.below(600) as i64);
    let a = assessed_of(
        image,
        read.as_ref(),
        etag(n + 7),
        1_700_000_000 + n as i64 * 60,
    );
    (a, read)
}

/// Image and metadata key bytes of one image: what the target leaves out.
fn key_bytes(a: &Assessed) -> usize {
    a.key().len() + a.metadata.as_ref().map_or(0, |m| m.key.len())
}

// ---------------------------------------------------------------------------
// Part 1: memory

/// The row as it was before the compact summary: the whole document and
/// a lowercased search string.
#[allow(dead_code)] // held for its size only
struct OldRow {
    key: String,
    image: Option<ObjectInfo>,
    metadata_key: Option<String>,
    key_kind: Option<KeyKind>,
    status: Option<Status>,
    doc: Option<MetadataDoc>,
    problem: Option<String>,
    busy: bool,
    headline_conf: Option<f32>,
    search: Box<str>,
}

impl OldRow {
    fn from_assessed(
        a: Assessed,
        read: Option<Result<ParsedMetadata, imgtag::contract::Malformed>>,
    ) -> OldRow {
        let key = a.key().to_string();
        let doc = read.and_then(Result::ok).map(|p| p.doc);
        let mut search = key.to_lowercase();
        for l in doc.iter().flat_map(|d| &d.labels) {
            search.push('\n');
            search.push_str(&l.name.to_lowercase());
            for p in &l.parents {
                search.push('\n');
                search.push_str(&p.name.to_lowercase());
            }
        }
        OldRow {
            headline_conf: doc
                .as_ref()
                .and_then(|d| d.headline())
                .map(|l| l.confidence),
            search: search.into_boxed_str(),
            key,
            metadata_key: a.metadata.map(|m| m.key),
            image: a.image,
            key_kind: a.key_kind,
            status: a.status,
            doc,
            problem: None,
            busy: false,
        }
    }
}

fn new_app() -> App {
    let header = Header {
        bucket: "s3://photos".into(),
        detector: "local".into(),
        paid: false,
    };
    let mut app = App::new(header, Layout::default(), Keymap::default(), 55.0, 70.0);
    app.size = Size::new(WIDTH, HEIGHT);
    app.thumbnails = false;
    app
}

/// The app with `rows` images listed, and the heap bytes it holds beyond
/// the key strings.
fn listed_app(rows: usize) -> (App, usize) {
    let vocab = vocabulary();
    let mut rng = Rng(7);
    let before = live();
    let mut app = new_app();
    app.start();
    let generation = app.generation;
    let mut keys = 0;
    for start in (0..rows).step_by(1000) {
        let batch: Vec<Assessed> = (start..(start + 1000).min(rows))
            .map(|n| assessed(n, &mut rng, &vocab))
            .collect();
        keys += batch.iter().map(key_bytes).sum::<usize>();
        app.update(Msg::rows(generation, batch));
    }
    app.update(Msg::ListingDone {
        generation,
        error: None,
    });
    let held = live().saturating_sub(before).saturating_sub(keys);
    (app, held)
}

/// Heap bytes per row of the former representation, beyond the keys.
fn old_bytes_per_row(rows: usize) -> f64 {
    let vocab = vocabulary();
    let mut rng = Rng(7);
    let before = live();
    let mut table = Vec::new();
    let mut keys = 0;
    for n in 0..rows {
        let (a, read) = assessed_with_doc(n, &mut rng, &vocab);
        keys += key_bytes(&a);
        table.push(OldRow::from_assessed(a, read));
    }
    let held = live().saturating_sub(before).saturating_sub(keys);
    drop(table);
    held as f64 / rows as f64
}

// ---------------------------------------------------------------------------
// Part 2: frames

const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// One frame: the message, then a draw.
fn frame(app: &mut App, term: &mut Terminal<TestBackend>, msg: Msg) -> Duration {
    let t = Instant::now();
    app.update(msg);
    term.draw(|f| view::draw(f, app)).expect("draw");
    t.elapsed()
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

/// (median, max) per operation: scroll, sort, status filter, `/` key.
fn measure(app: &mut App) -> [(Duration, Duration); 4] {
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("terminal");
    frame(app, &mut term, Msg::Resize(WIDTH, HEIGHT));
    let scroll: Vec<_> = (0..300)
        .map(|_| frame(app, &mut term, key(KeyCode::Char('j'))))
        .collect();
    // Name, lowest confidence, newest, three times.
    let sort: Vec<_> = (0..9)
        .map(|_| frame(app, &mut term, key(KeyCode::Char('s'))))
        .collect();
    // Every status, and back to all.
    let filter: Vec<_> = (0..8)
        .map(|_| frame(app, &mut term, key(KeyCode::Char('f'))))
        .collect();
    // A label name typed a key at a time (the first key scans every row,
    // the next ones narrow), a key name, then erased.
    let mut search = Vec::new();
    for needle in ["reflec", "img_0420", "night"] {
        frame(app, &mut term, key(KeyCode::Char('/')));
        for c in needle.chars() {
            search.push(frame(app, &mut term, key(KeyCode::Char(c))));
        }
        search.push(frame(app, &mut term, key(KeyCode::Backspace)));
        frame(app, &mut term, key(KeyCode::Esc));
    }
    [
        (median(&scroll), max(&scroll)),
        (median(&sort), max(&sort)),
        (median(&filter), max(&filter)),
        (median(&search), max(&search)),
    ]
}

// ---------------------------------------------------------------------------
// Part 3: loading the rows

/// What loading `rows` rows costs the UI thread: (wall time to the last
/// row filed, the slowest UI-thread turn, turns). `off_thread`: the
/// runtime's way now (a producer thread builds compact pages, the UI
/// files what waits for at most `FRAME_BUDGET`, then draws); otherwise
/// the former way (each page of 1,000 assessed rows summarised and filed
/// on the UI thread, a draw after each).
fn load(rows: usize, off_thread: bool) -> (Duration, Duration, usize) {
    let vocab = vocabulary();
    let mut rng = Rng(11);
    // The rows as the index query hands them over, made beforehand: the
    // query's own cost is not the UI thread's.
    let pages: Vec<Vec<Assessed>> = (0..rows)
        .step_by(1000)
        .map(|s| {
            (s..(s + 1000).min(rows))
                .map(|n| assessed(n, &mut rng, &vocab))
                .collect()
        })
        .collect();
    let mut app = new_app();
    app.start();
    let generation = app.generation;
    let t = Instant::now();
    let (slowest, turns) = if off_thread {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // As `Bucket::updates` does from the index: the count first.
        let total = pages.iter().map(Vec::len).sum::<usize>() as u64;
        // The producer's time on a CPU, returned when it is done: with the
        // UI thread's, the load's work whatever else runs on the machine.
        let producer = std::thread::spawn(move || {
            let _ = tx.send(Msg::Expect {
                generation,
                rows: total,
            });
            for page in pages {
                send_pages(page, generation, &tx);
            }
            on_cpu()
        });
        ui_turns(&mut app, rx, producer)
    } else {
        let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("terminal");
        let mut slowest = Duration::ZERO;
        let turns = pages.len();
        for page in pages {
            // The former way: the UI thread summarised each page itself,
            // so building the page is part of the turn.
            let started = Instant::now();
            app.update(Msg::rows(generation, page));
            term.draw(|f| view::draw(f, &app)).expect("draw");
            slowest = slowest.max(started.elapsed());
        }
        (slowest, turns)
    };
    let took = t.elapsed();
    assert_eq!(app.rows.len(), rows);
    (took, slowest, turns)
}

/// Sends one page of the listing as the runtime does (`send_rows`):
/// compact pages of 256 rows built here, off the UI thread.
fn send_pages(page: Vec<Assessed>, generation: u64, tx: &tokio::sync::mpsc::UnboundedSender<Msg>) {
    let mut page = page.into_iter().peekable();
    while page.peek().is_some() {
        let _ = tx.send(Msg::rows(generation, page.by_ref().take(256)));
    }
}

/// The UI thread's side of a load: the runtime's own turn
/// (`runtime::turn`: what waits, at most `FRAME_BUDGET` of it, and no
/// draw sooner than a frame after the last), on a runtime of its own as
/// in the TUI, then a draw, until the producer is done. Prints the
/// threads' CPU time; returns the slowest turn and the turns.
fn ui_turns(
    app: &mut App,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    producer: std::thread::JoinHandle<Duration>,
) -> (Duration, usize) {
    use imgtag::tui::runtime::turn;
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("terminal");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let (mut slowest, mut turns, mut over) = (Duration::ZERO, 0, 0);
    // Where the slowest turn was: rows filed by then, and its filing time.
    let mut worst = (0, Duration::ZERO);
    let mut drawn = Instant::now();
    // The slowest turn by the UI thread's time on a CPU: a busy machine
    // can take the CPU away from it in the middle of a turn.
    let mut slowest_cpu = Duration::ZERO;
    let ui_start = on_cpu();
    while let Some(msg) = rx.blocking_recv() {
        let cpu = on_cpu();
        let filed = rt.block_on(turn(app, &mut rx, msg, drawn, |_| {}));
        let started = Instant::now();
        term.draw(|f| view::draw(f, app)).expect("draw");
        drawn = Instant::now();
        slowest_cpu = slowest_cpu.max(on_cpu().saturating_sub(cpu));
        let turn = filed + (drawn - started);
        if turn > slowest {
            slowest = turn;
            worst = (app.rows.slots(), filed);
        }
        over += usize::from(turn > Duration::from_millis(16));
        turns += 1;
    }
    let ui_cpu = on_cpu().saturating_sub(ui_start);
    let producer_cpu = producer.join().unwrap();
    println!(
        "    slowest turn by the UI thread's CPU time: {:.2} ms; CPU time in all: UI thread {:.2} s, producer {:.2} s",
        ms(slowest_cpu),
        ui_cpu.as_secs_f64(),
        producer_cpu.as_secs_f64()
    );
    println!(
        "    slowest turn at {} rows: filing {:.2} ms, draw {:.2} ms; {over} turns over 16 ms",
        worst.0,
        ms(worst.1),
        ms(slowest - worst.1)
    );
    (slowest, turns)
}

/// Loading every row of an index file the index bench kept
/// (`IMGTAG_BENCH_INDEX`): the producer thread runs the index's own
/// query (`query::rows`, on a blocking thread of its own) and builds the
/// pages as the runtime does, so the query's cost is in the wall time
/// here. Also prints the process's peak resident memory.
fn load_from_index(path: &std::path::Path) {
    use imgtag::index::query::{Query, count_rows, rows};
    use imgtag::index::{Index, IndexSpec};
    let layout = Layout::default();
    // The index bench's bucket.
    let spec = IndexSpec::new("bench", "bench-bucket", &layout);
    let index = Index::open(path, &spec).expect("index").0;
    let total = count_rows(&index, &layout).expect("count");
    println!("loading {total} rows from the index {}:", path.display());
    let before = status_kb("VmHWM");
    let mut app = new_app();
    app.start();
    let generation = app.generation;
    let t = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let producer = std::thread::spawn(move || {
        use futures::StreamExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _ = tx.send(Msg::Expect {
            generation,
            rows: total,
        });
        let q = Query {
            layout,
            review: 70.0.into(),
            filter: Default::default(),
            unreadable: Default::default(),
        };
        rt.block_on(async {
            let mut pages = std::pin::pin!(rows(&index, q).ready_chunks(1000));
            while let Some(page) = pages.next().await {
                let page: Vec<Assessed> = page.into_iter().map(|r| r.expect("row")).collect();
                send_pages(page, generation, &tx);
            }
        });
        on_cpu()
    });
    let (slowest, turns) = ui_turns(&mut app, rx, producer);
    let took = t.elapsed();
    assert_eq!(app.rows.len() as u64, total);
    println!(
        "  from the index       {:>7.2} s, {:>9.0} rows/s, slowest turn {:>7.2} ms over {turns} turns",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        ms(slowest)
    );
    // The peak counts the index's pages the query mapped; the anonymous
    // memory left after the load is the table's (and the allocator's).
    println!(
        "  peak resident memory {:.2} GB ({:.2} GB before the load); after it, {:.2} GB anonymous ({:.0} bytes a row), {:.2} GB of mapped file pages",
        status_kb("VmHWM") as f64 / 1e6,
        before as f64 / 1e6,
        status_kb("RssAnon") as f64 / 1e6,
        status_kb("RssAnon") as f64 * 1e3 / total as f64,
        status_kb("RssFile") as f64 / 1e6,
    );
}

/// A field of this process's /proc/self/status in kB (VmHWM: the peak
/// resident memory; RssAnon, RssFile: what is resident now).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.split(':').next() == Some(field))?;
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// This thread's time on a CPU so far (Linux's schedstat; zero
/// elsewhere).
fn on_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Part 3, both ways.
fn load_part(load_rows: usize) {
    println!(
        "loading {load_rows} rows (wall time to the last row filed, slowest UI-thread turn incl. draw):"
    );
    // IMGTAG_BENCH_LOAD_FORMER=0 skips the baseline (for profiling).
    let former = std::env::var("IMGTAG_BENCH_LOAD_FORMER").map_or(true, |v| v != "0");
    for (name, off) in [("former (UI thread)", false), ("off the UI thread", true)] {
        if !off && !former {
            continue;
        }
        let (took, slowest, turns) = load(load_rows, off);
        println!(
            "  {name:<20} {:>7.2} s, {:>9.0} rows/s, slowest turn {:>7.2} ms over {turns} turns",
            took.as_secs_f64(),
            load_rows as f64 / took.as_secs_f64(),
            ms(slowest)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rows = measure::env("IMGTAG_BENCH_ROWS", 1_000_000) as usize;
    if let Some(path) = std::env::var_os("IMGTAG_BENCH_LOAD_INDEX") {
        return load_from_index(path.as_ref());
    }
    if std::env::var_os("IMGTAG_BENCH_LOAD_ONLY").is_some() {
        load_part(measure::env("IMGTAG_BENCH_LOAD_ROWS", rows as u64) as usize);
        return;
    }
    let old_rows = measure::env("IMGTAG_BENCH_OLD_ROWS", 50_000) as usize;
    println!("tui_memory: {rows} rows, 8 labels + 2 parents each from 300 names");

    let t = Instant::now();
    let (mut big, held) = listed_app(rows);
    let per_row = held as f64 / rows as f64;
    println!(
        "  listed in {:.1} s; state holds {:.1} MB beyond keys",
        t.elapsed().as_secs_f64(),
        held as f64 / 1e6
    );
    let old = old_bytes_per_row(old_rows);
    println!(
        "memory per row beyond key strings: {per_row:.0} B (target <= 300: {}); \
         former row: {old:.0} B (measured on {old_rows} rows), {:.1}x less",
        if per_row <= 300.0 { "met" } else { "NOT met" },
        old / per_row
    );

    load_part(measure::env("IMGTAG_BENCH_LOAD_ROWS", rows as u64) as usize);

    let (mut small, _) = listed_app(100);
    let b = measure(&mut big);
    let s = measure(&mut small);
    println!("frame time (update + draw, 160x48), median / max, {rows} rows vs 100 rows:");
    for (i, name) in [
        "scroll (j)",
        "sort switch (s)",
        "status filter (f)",
        "/ search key",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "  {name:<18} {:>8.2} / {:>8.2} ms   vs {:>6.3} / {:>6.3} ms   ratio {:>7.1}x",
            ms(b[i].0),
            ms(b[i].1),
            ms(s[i].0),
            ms(s[i].1),
            ms(b[i].0) / ms(s[i].0).max(1e-6)
        );
    }
    assert_eq!(big.rows.len(), rows);
}
