//! The TUI driven headless against a real bucket: key events and the
//! runtime's messages go through `App::update`, commands to the runtime,
//! until nothing is left to do.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use imgtag::contract::{Layout, Status};
use imgtag::detection::{DynDetector, LocalDetector};
use imgtag::pipeline::Outcome;
use imgtag::storage::{DynStore, LocalStore};
use imgtag::tui::app::{App, Header, Msg};
use imgtag::tui::keys::Keymap;
use imgtag::tui::runtime::{DetectorSource, Runtime, RuntimeConfig};
use imgtag::tui::thumbs::ThumbCache;
use ratatui::layout::Size;
use ratatui_image::picker::Picker;
use tokio::sync::mpsc;

/// A key press of character `c`.
pub fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub struct Harness {
    pub app: App,
    pub rt: Runtime,
    pub rx: mpsc::UnboundedReceiver<Msg>,
    pub dir: tempfile::TempDir,
    /// Every tagging or review job's outcome, by image key, in the order
    /// the jobs ended.
    pub outcomes: Vec<(String, Outcome)>,
}

impl Harness {
    pub async fn demo() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        imgtag::demo::ensure(dir.path()).unwrap();
        let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
        let det: DynDetector = Arc::new(LocalDetector::load().unwrap());
        Harness::new(store, DetectorSource::Ready(det), dir).await
    }

    pub async fn new(store: DynStore, detector: DetectorSource, dir: tempfile::TempDir) -> Harness {
        Harness::with_concurrency(store, detector, dir, 2).await
    }

    pub async fn with_concurrency(
        store: DynStore,
        detector: DetectorSource,
        dir: tempfile::TempDir,
        concurrency: usize,
    ) -> Harness {
        Harness::with_rule(store, detector, dir, concurrency, 70.0.into()).await
    }

    /// A harness whose runtime and app judge statuses by `rule`.
    pub async fn with_rule(
        store: DynStore,
        detector: DetectorSource,
        dir: tempfile::TempDir,
        concurrency: usize,
        rule: imgtag::summary::ReviewRule,
    ) -> Harness {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut app = App::new(
            Header {
                bucket: "demo".into(),
                detector: "local".into(),
                paid: false,
            },
            Layout::default(),
            Keymap::default(),
            55.0,
            70.0,
        );
        app.size = Size::new(120, 30);
        app.review_rule = rule.clone();
        let mut rt = Runtime::new(
            imgtag::bucket::Bucket::new(store, Layout::default(), rule.clone()),
            RuntimeConfig {
                features: Default::default(),
                filters: Default::default(),
                text_detection: Default::default(),
                max_labels: None,
                concurrency,
                thumb_delay: Duration::ZERO,
            },
            detector,
            ThumbCache::new(Some(dir.path().join(".cache")), "test"),
            Picker::halfblocks(),
            tx,
        );
        for cmd in app.start() {
            rt.run(cmd);
        }
        let mut h = Harness {
            app,
            rt,
            rx,
            dir,
            outcomes: Vec::new(),
        };
        h.settle().await;
        h
    }

    pub fn send(&mut self, msg: Msg) {
        if let Msg::Tagged { key, outcome, .. } = &msg {
            self.outcomes.push((key.clone(), outcome.clone()));
        }
        for cmd in self.app.update(msg) {
            self.rt.run(cmd);
        }
    }

    pub fn keys(&mut self, s: &str) {
        for c in s.chars() {
            self.send(key(c));
        }
    }

    /// Runs until no task is left and no message is waiting.
    pub async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                self.send(msg);
            }
            if self.rt.pending() == 0 && self.rx.is_empty() {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "did not settle");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn select(&mut self, needle: &str) {
        let pos = self
            .app
            .rows
            .view()
            .iter()
            .position(|&i| self.app.rows.key(i).contains(needle))
            .unwrap_or_else(|| panic!("{needle} not listed"));
        self.send(key('g'));
        for _ in 0..pos {
            self.send(key('j'));
        }
        assert!(self.app.selected_row().unwrap().key.contains(needle));
    }

    pub fn doc(&self, key: &str) -> serde_json::Value {
        let bytes = std::fs::read(self.dir.path().join(key)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    pub fn status_of(&self, needle: &str) -> Option<Status> {
        self.app
            .rows
            .iter()
            .find(|r| r.key.contains(needle))
            .unwrap()
            .status
    }
}

/// The screen `app` draws, as text (a `TestBackend` of its size).
pub fn screen(app: &App) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(
        app.size.width,
        app.size.height,
    ))
    .unwrap();
    t.draw(|f| imgtag::tui::view::draw(f, app)).unwrap();
    text_of(&t)
}

/// A drawn terminal's cells, as text, a line per row.
pub fn text_of(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}
