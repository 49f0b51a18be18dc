//! `imgtag-tui`: the operator's terminal UI.
//!
//! Elm style: [`app::App`] holds the state and its `update` is the only
//! place it changes; [`view::draw`] is a pure function of it; slow work
//! (listing, tagging, thumbnails) runs in [`runtime::Runtime`] tasks that
//! answer with messages. The loop below forwards terminal events and those
//! messages into `update` and draws once per batch.

pub mod app;
pub mod boxes;
pub mod facts;
pub mod keys;
pub mod names;
pub mod queue;
pub mod replies;
pub mod rows;
pub mod runtime;
pub mod screen;
pub mod termbg;
pub mod theme;
pub mod thumbs;
pub mod view;

use std::io::Write;
use std::time::Duration;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event, EventStream, KeyEvent};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Size;
use ratatui_image::picker::{Picker, ProtocolType};
use tokio::sync::mpsc;

use crate::bucket::Bucket;
use crate::config::{Settings, ThemeChoice};
use crate::storage::BucketSpec;

use app::{App, Header, Msg};
use keys::Keymap;
use runtime::{DetectorSource, Runtime, RuntimeConfig};
use thumbs::ThumbCache;

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error(transparent)]
    Keys(#[from] keys::KeymapError),
    #[error("opening the bucket: {0}")]
    Store(#[from] crate::storage::StorageError),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// How thumbnails are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageProtocol {
    /// Ask the terminal (kitty, sixel, iTerm2), else half-blocks.
    #[default]
    Auto,
    Halfblocks,
    Sixel,
    Kitty,
    Iterm2,
    /// No thumbnails.
    None,
}

impl std::str::FromStr for ImageProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "auto" => ImageProtocol::Auto,
            "halfblocks" => ImageProtocol::Halfblocks,
            "sixel" => ImageProtocol::Sixel,
            "kitty" => ImageProtocol::Kitty,
            "iterm2" => ImageProtocol::Iterm2,
            "none" => ImageProtocol::None,
            _ => {
                return Err(format!(
                    "{s:?} is not auto, halfblocks, sixel, kitty, iterm2 or none"
                ));
            }
        })
    }
}

pub struct TuiOptions {
    pub concurrency: usize,
    pub image_protocol: ImageProtocol,
    /// `--theme`; None: the config file's, else auto.
    pub theme: Option<ThemeChoice>,
}

/// The theme to draw with, and the keys typed while the terminal was
/// asked. `auto` asks the terminal, so it must run in raw mode and before
/// the event reader starts; no answer means dark.
fn theme_for(choice: ThemeChoice) -> (theme::Theme, Vec<KeyEvent>) {
    match choice {
        ThemeChoice::Dark => (theme::Theme::dark(), Vec::new()),
        ThemeChoice::Light => (theme::Theme::light(), Vec::new()),
        ThemeChoice::Auto => {
            let probe = termbg::query();
            let theme = probe
                .background
                .map(theme::Theme::for_background)
                .unwrap_or_else(theme::Theme::dark);
            (theme, probe.typed)
        }
    }
}

/// The app's header line for these settings.
pub fn header(settings: &Settings) -> Header {
    let bucket = match &settings.bucket {
        BucketSpec::S3(name) => format!("s3://{name}"),
        BucketSpec::Local(p) if settings.demo => format!("demo ({})", p.display()),
        BucketSpec::Local(p) => p.display().to_string(),
    };
    Header {
        bucket,
        detector: settings.detector.as_str().to_string(),
        paid: settings.detector == crate::config::DetectorKind::Rekognition,
    }
}

/// Puts the terminal back: raw mode off, main screen, mouse off, cursor on.
/// Safe to call more than once.
pub(crate) fn restore_terminal() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(
        out,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

/// Restores the terminal before a panic message is printed, so a panic
/// never leaves the operator's shell in raw mode. A panic on another
/// thread (a task, which the runtime reports as a failed job) goes to the
/// log only: printing it would draw over the screen, and restoring the
/// terminal would leave the UI running without raw mode.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            restore_terminal();
            previous(info);
        } else {
            tracing::error!(panic = %info, "a task panicked");
        }
    }));
}

struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// ratatui-image's query gives up after this long without an answer.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1900);

/// When the terminal never answers the graphics query (a detached tmux
/// session forwards it to no one), ratatui-image's reader thread stays
/// blocked on stdin and would swallow the next keys and replies. A Device
/// Status Report, which every terminal (and tmux itself) answers, gives it
/// the end-of-answer marker it waits for, so it ends.
fn unstick_query_reader() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x1b[5n");
    let _ = out.flush();
    std::thread::sleep(Duration::from_millis(250));
    tracing::warn!("terminal did not answer the graphics query; using half-blocks");
}

fn picker_for(choice: ImageProtocol) -> Option<Picker> {
    let mut picker = match choice {
        ImageProtocol::None => return None,
        // Must run after entering the alternate screen and before the
        // event reader starts: it reads the terminal's answers on stdin.
        ImageProtocol::Auto => {
            let started = std::time::Instant::now();
            let picker = Picker::from_query_stdio().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "terminal graphics query failed; using half-blocks");
                Picker::halfblocks()
            });
            if started.elapsed() >= QUERY_TIMEOUT {
                unstick_query_reader();
            }
            tracing::info!(protocol = ?picker.protocol_type(), tmux = picker.tmux_detected(),
                ms = started.elapsed().as_millis() as u64, "terminal graphics");
            picker
        }
        _ => Picker::halfblocks(),
    };
    match choice {
        ImageProtocol::Sixel => picker.set_protocol_type(ProtocolType::Sixel),
        ImageProtocol::Kitty => picker.set_protocol_type(ProtocolType::Kitty),
        ImageProtocol::Iterm2 => picker.set_protocol_type(ProtocolType::Iterm2),
        _ => {}
    }
    Some(picker)
}

/// Names the bucket in the thumbnail cache: endpoint and bucket, or the
/// folder.
fn bucket_id(settings: &Settings) -> String {
    match &settings.bucket {
        BucketSpec::S3(name) => format!(
            "s3:{}:{name}",
            settings.s3.endpoint_url.as_deref().unwrap_or("aws")
        ),
        BucketSpec::Local(p) => format!("local:{}", p.display()),
    }
}

/// Runs the TUI until the operator quits.
pub async fn run(settings: Settings, opts: TuiOptions) -> Result<(), TuiError> {
    // Everything that can fail for a user error fails before the screen
    // changes, so the message lands on a normal terminal.
    let keymap = Keymap::from_config(&settings.keys)?;
    let bucket_id = bucket_id(&settings);
    // Every write the TUI makes goes through the index; one that cannot be
    // opened is noted and the TUI works without it.
    let (bucket, index_note) = Bucket::open(&settings).await?;

    install_panic_hook();
    enable_raw_mode()?;
    let _guard = TerminalGuard;
    execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    let (theme, typed) = theme_for(opts.theme.or(settings.theme).unwrap_or_default());
    let picker = picker_for(opts.image_protocol);
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut app = App::new(
        header(&settings),
        settings.layout.clone(),
        keymap,
        settings.min_confidence,
        settings.review_below,
    );
    app.theme = theme;
    app.features = settings.features;
    app.review_rule = settings.review_rule();
    let size = terminal.size()?;
    app.size = Size::new(size.width, size.height);
    if picker.is_none() {
        app.thumbnails = false;
    }
    if let Some(hint) = settings.bucket.folder_hint() {
        tracing::info!("{hint}");
        app.message = Some((app::Level::Info, hint.clone()));
        app.listing_hint = Some(hint);
    }
    if let Some(note) = index_note {
        tracing::warn!("{note}");
        app.message = Some((app::Level::Info, note));
    }
    let mut rt = Runtime::new(
        bucket,
        RuntimeConfig {
            tag: crate::pipeline::TagOptions::from_settings(&settings, "imgtag-tui"),
            concurrency: opts.concurrency.max(1),
            thumb_delay: Duration::from_millis(40),
        },
        DetectorSource::Build {
            kind: settings.detector,
            s3: settings.s3.clone(),
            concurrency: opts.concurrency.max(1),
            tps: settings.rekognition_tps,
            engine: settings.engine,
        },
        ThumbCache::new(ThumbCache::default_dir(), &bucket_id),
        picker.unwrap_or_else(Picker::halfblocks),
        tx.clone(),
    );
    for cmd in app.start() {
        rt.run(cmd);
    }

    // Keys typed during the probe come first, before the reader's.
    for k in typed {
        let _ = tx.send(Msg::Key(k));
    }
    let reader = spawn_event_reader(tx.clone());

    terminal.draw(|f| view::draw(f, &app))?;
    let mut drawn = std::time::Instant::now();
    while let Some(msg) = rx.recv().await {
        // A turn takes what is already waiting before drawing again (one
        // frame per batch keeps a fast listing from costing a frame per
        // page), no longer than a frame's budget.
        runtime::turn(&mut app, &mut rx, msg, drawn, |c| rt.run(c)).await;
        if app.quit {
            break;
        }
        terminal.draw(|f| view::draw(f, &app))?;
        drawn = std::time::Instant::now();
    }
    reader.abort();
    finish_writes(&mut terminal, &mut app, &mut rt).await?;
    drop(terminal);
    Ok(())
}

/// Terminal events arrive as messages like everything else; terminal
/// replies that crossterm read as keys are dropped on the way.
fn spawn_event_reader(tx: mpsc::UnboundedSender<Msg>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut events = EventStream::new();
        let mut filter = replies::ReplyFilter::default();
        loop {
            let ev = match filter.deadline() {
                Some(at) => tokio::select! {
                    ev = events.next() => ev,
                    () = tokio::time::sleep_until(at.into()) => {
                        let keys = filter.expire(std::time::Instant::now());
                        if !send_keys(&tx, keys) {
                            break;
                        }
                        continue;
                    }
                },
                None => events.next().await,
            };
            let msg = match ev {
                Some(Ok(Event::Key(k))) => {
                    if !send_keys(&tx, filter.key(k, std::time::Instant::now())) {
                        break;
                    }
                    continue;
                }
                Some(Ok(Event::Mouse(m))) => Msg::Mouse(m),
                Some(Ok(Event::Resize(w, h))) => Msg::Resize(w, h),
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "reading terminal events");
                    break;
                }
                None => break,
            };
            // Keys held as a possible reply come before a later event.
            if !send_keys(&tx, filter.flush()) || tx.send(msg).is_err() {
                break;
            }
        }
    })
}

/// Sends keys as messages; false once the app is gone.
fn send_keys(tx: &mpsc::UnboundedSender<Msg>, keys: Vec<KeyEvent>) -> bool {
    keys.into_iter().all(|k| tx.send(Msg::Key(k)).is_ok())
}

/// On quit: drops queued work and waits (up to 30 s) for the writes in
/// flight, saying so on the screen.
async fn finish_writes(
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    app: &mut App,
    rt: &mut Runtime,
) -> Result<(), TuiError> {
    rt.stop_listing();
    rt.stop_queued();
    if rt.jobs() > 0 {
        app.message = Some((
            app::Level::Info,
            format!("finishing {} write(s) in flight…", rt.jobs()),
        ));
        terminal.draw(|f| view::draw(f, app))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while rt.jobs() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Sets up `tracing` to write to a log file in the platform state (or
/// cache) dir, never to the screen. Returns the file's path.
pub fn init_file_logging() -> Option<std::path::PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "imgtag")?;
    let dir = dirs
        .state_dir()
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| dirs.cache_dir().to_path_buf());
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("imgtag-tui.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMGTAG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        // Keys and error texts in log fields are escaped: they can neither
        // forge log lines nor act on a terminal that shows the log.
        .with_writer(std::sync::Mutex::new(crate::sanitize::SafeLogWriter(file)))
        .try_init()
        .ok()?;
    Some(path)
}
