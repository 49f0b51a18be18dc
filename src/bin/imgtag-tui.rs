//! `imgtag-tui`: the operator's terminal UI.

#[path = "shared/common_args.rs"]
mod common_args;
use common_args::CommonArgs;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use imgtag::config::ThemeChoice;
use imgtag::tui::{ImageProtocol, TuiOptions};

#[derive(Parser)]
#[command(
    name = "imgtag-tui",
    version,
    about = "Audit and fix the image tags of an S3 bucket or a local folder in a terminal",
    long_about = "Audit and fix the image tags of an S3 bucket or a local folder.\n\n\
uploads/ and metadata/ side by side, thumbnails, label confidence bars; one key \
tags or re-tags at another MinConfidence, writing the same JSON as the \
automated path. Press ? inside for every key. Logs go to imgtag-tui.log in the \
platform state dir (IMGTAG_LOG=debug for more)."
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Images tagged at once (also the cap on Rekognition calls in flight).
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// How thumbnails are drawn: auto asks the terminal (kitty, sixel,
    /// iTerm2) and falls back to half-blocks.
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|halfblocks|sixel|kitty|iterm2|none"
    )]
    image_protocol: ImageProtocol,
    /// Colours for a dark or a light terminal; auto asks the terminal for
    /// its background (falls back to dark). Config file key: `theme`.
    #[arg(long, value_name = "auto|dark|light", value_parser = imgtag::config::parse_theme)]
    theme: Option<ThemeChoice>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = imgtag::tui::init_file_logging();
    let result = (|| -> anyhow::Result<()> {
        let settings = cli.common.resolve().context("reading the options")?;
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        rt.block_on(imgtag::tui::run(
            settings,
            TuiOptions {
                concurrency: cli.concurrency,
                image_protocol: cli.image_protocol,
                theme: cli.theme,
            },
        ))?;
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}");
            // Not eprintln!: with stderr closed it would panic.
            let mut err = std::io::stderr();
            let _ = writeln!(err, "imgtag-tui: {}", imgtag::sanitize::for_terminal(&msg));
            if let Some(log) = log {
                let _ = writeln!(err, "log: {}", log.display());
            }
            ExitCode::FAILURE
        }
    }
}
