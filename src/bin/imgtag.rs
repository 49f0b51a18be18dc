//! `imgtag`: headless audit and tagging of image buckets.

#[path = "shared/common_args.rs"]
mod common_args;
use common_args::CommonArgs;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use imgtag::bucket::Bucket;
use imgtag::catalog::{Filter, Selection};
use imgtag::cli::{self, CliError};
use imgtag::config::Settings;
use imgtag::detection::DynDetector;
use imgtag::index::refresh::RefreshOptions;
use imgtag::pipeline::{ReviewEdit, TagOptions};
use imgtag::sanitize::for_terminal;
use imgtag::status::Status;
use imgtag::storage::{BucketSpec, DynStore};

/// `eprintln!` that never panics: with stderr closed (`2>&-`, or a reader
/// that went away) a message is lost, not the exit code.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "imgtag",
    version,
    about = "Audit and tag the images of an S3 bucket or a local folder",
    long_about = "Audit and tag the images of an S3 bucket or a local folder.\n\n\
Images live under uploads/ and their labels as JSON under metadata/ \
(uploads/a/cat.jpg -> metadata/a/cat.jpg.json). Every option can also be set \
in the config file (see --config) under the same name."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List images with their status, best label and confidence, then orphan
    /// metadata.
    Ls(LsArgs),
    /// Tag images: detect labels and write the metadata JSON.
    Tag(TagArgs),
    /// Watch a local folder or a bucket and tag each new or replaced image
    /// under uploads/ as it arrives, until Ctrl-C.
    ///
    /// A folder is watched with file-system notifications (polling if they
    /// are unavailable, or with --poll); an S3 bucket is listed every
    /// --interval seconds. On start, images that are untagged or stale are
    /// tagged first (unless --no-initial-scan).
    Watch(WatchArgs),
    /// Write an S3 Batch Operations manifest of the images that need tagging
    /// and print the job (for `aws s3control create-job`) that has the
    /// imgtag-lambda function tag them.
    Backfill(BackfillArgs),
    /// Show an image's metadata pairing and labels (KEY may be the image's
    /// or its metadata's key).
    Show(ShowArgs),
    /// Correct labels by hand on one or many images: add, remove or flag
    /// labels. The change is kept in ImgTag.Review, so later re-runs of
    /// detection keep it; every write is conditional on the document read.
    Review(ReviewArgs),
    /// Write the human-reviewed labels of a selection for retraining: a
    /// Ground Truth / Rekognition Custom Labels manifest (JSON Lines with
    /// source-ref) or CSV (key, label, confidence, source). Only reviewed
    /// images are written.
    Export(ExportArgs),
    /// Build or refresh the bucket's persistent index (in the platform cache
    /// dir) and say what changed. Every other command refreshes it too; this
    /// one does only that, with a progress bar.
    Index(IndexArgs),
    /// Print the local model's engine: which one runs (onnxruntime or
    /// tract), the onnxruntime library's path and version, and why.
    Env(EnvArgs),
}

#[derive(clap::Args)]
struct EnvArgs {
    /// The engine to diagnose: auto, tract or onnxruntime.
    #[arg(
        long,
        env = "IMGTAG_ENGINE",
        value_name = "ENGINE",
        default_value = "auto"
    )]
    engine: imgtag::detection::engine::EngineChoice,
}

#[derive(clap::Args)]
struct IndexArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Take the keys from an S3 Inventory report (CSV) instead of listing
    /// the bucket: the bucket (or folder) the reports are delivered to.
    #[arg(long, value_name = "BUCKET|PATH", requires = "inventory_manifest")]
    inventory_bucket: Option<String>,
    /// The report's manifest.json key in --inventory-bucket, or the
    /// configuration's prefix ending in `/` to take the newest report.
    #[arg(long, value_name = "KEY", requires = "inventory_bucket")]
    inventory_manifest: Option<String>,
}

impl IndexArgs {
    /// Reads the inventory report the flags name, if any: a report of
    /// `indexed` (the bucket being indexed), else an error.
    async fn inventory(
        &self,
        settings: &Settings,
        indexed: &str,
    ) -> anyhow::Result<Option<Arc<imgtag::inventory::Listing>>> {
        let (Some(bucket), Some(key)) = (&self.inventory_bucket, &self.inventory_manifest) else {
            return Ok(None);
        };
        let spec = BucketSpec::parse(bucket).map_err(anyhow::Error::msg)?;
        let store: DynStore = match spec {
            BucketSpec::S3(name) => {
                Arc::new(imgtag::storage::S3Store::connect(&name, &settings.s3).await)
            }
            BucketSpec::Local(path) => Arc::new(imgtag::storage::LocalStore::open(&path)?),
        };
        let key = if key.ends_with('/') {
            imgtag::inventory::latest_manifest(&store, key)
                .await?
                .with_context(|| format!("no inventory report under {}", for_terminal(key)))?
        } else {
            key.clone()
        };
        let manifest = imgtag::inventory::load(&store, &key).await?;
        let layout = &settings.layout;
        let listing = manifest
            .read(
                &store,
                indexed,
                &[layout.uploads_prefix(), layout.metadata_prefix()],
            )
            .await?;
        say!(
            "inventory report {}: {} objects under the two prefixes, {} others left out",
            for_terminal(&key),
            listing.len(),
            listing.outside
        );
        Ok(Some(Arc::new(listing)))
    }
}

#[derive(clap::Args)]
struct ReviewArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Image keys to edit (else choose with --label, --below, --status).
    keys: Vec<String>,
    /// Add this label at confidence 100 (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LABEL")]
    add: Vec<String>,
    /// Remove this label (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LABEL")]
    remove: Vec<String>,
    /// Flag this label as doubtful without removing it: the image then
    /// needs review (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LABEL")]
    flag: Vec<String>,
    /// Confirm each image's headline label as it is: it then reads as a
    /// human's word (confidence 100), and the detector's figure is kept in
    /// ImgTag.Review.Confirmed.
    #[arg(long)]
    accept: bool,
    /// Replace one label by another (OLD=NEW, repeatable), in one write:
    /// `--replace Feline=Cat`. An image without OLD is skipped.
    #[arg(long, value_name = "OLD=NEW", value_parser = ReviewEdit::parse_replace)]
    replace: Vec<(String, String)>,
    #[command(flatten)]
    select: SelectArgs,
    /// Images edited at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    concurrency: usize,
    /// List what would be edited without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object per image instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Image keys to export (else --label, --below, --status, or all).
    keys: Vec<String>,
    /// manifest (JSON Lines, as Ground Truth and Custom Labels read) or csv.
    #[arg(long, default_value = "manifest", value_parser = ["manifest", "csv"])]
    format: String,
    #[command(flatten)]
    select: SelectArgs,
}

/// Which images a bulk command takes, besides keys: every condition must
/// hold.
#[derive(clap::Args)]
struct SelectArgs {
    /// Images with this label (or a label with this parent).
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    /// Images whose headline is below this confidence.
    #[arg(long, value_name = "N")]
    below: Option<f32>,
    /// Images with these statuses (comma-separated).
    #[arg(long, value_delimiter = ',')]
    status: Vec<Status>,
    /// Images whose recognised text (`ImgTag.Text`) has a line containing
    /// these words, case-insensitive.
    #[arg(long, value_name = "WORDS")]
    text: Option<String>,
}

impl SelectArgs {
    fn filter(&self) -> Filter {
        Filter {
            statuses: self.status.clone(),
            label: self.label.clone(),
            below: self.below,
            text: self.text.clone(),
        }
    }
}

#[derive(clap::Args)]
struct LsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only these statuses (repeatable or comma-separated): untagged,
    /// tagged, needs-review, stale, failed, malformed, orphan.
    #[arg(long, value_delimiter = ',')]
    status: Vec<Status>,
    /// Only images with this label (or a label with this parent),
    /// case-insensitive.
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    /// Only images whose best label is below this confidence.
    #[arg(long, value_name = "N")]
    below: Option<f32>,
    /// Only images whose recognised text (`ImgTag.Text`: the words the
    /// local detector read on pages and screens) has a line containing
    /// these words, case-insensitive.
    #[arg(long, value_name = "WORDS")]
    text: Option<String>,
    /// A spot check: N images picked at random from what the other options
    /// select (printed once the listing is done, in key order).
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// Seed for --sample, to pick the same images again (default: a random
    /// seed, printed on stderr).
    #[arg(long, value_name = "S", requires = "sample")]
    seed: Option<u64>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Answer from the index as the last refresh left it, without listing
    /// the bucket (instant on any size; see `imgtag index`).
    #[arg(long, conflicts_with = "no_index")]
    no_refresh: bool,
}

#[derive(clap::Args)]
struct TagArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Image keys to tag (else choose with --untagged, --status,
    /// --below or --all).
    keys: Vec<String>,
    /// Tag every untagged image.
    #[arg(long, conflicts_with_all = ["status", "below", "all"])]
    untagged: bool,
    /// Tag images with these statuses (comma-separated), e.g.
    /// untagged,stale,needs-review.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["below", "all"])]
    status: Vec<Status>,
    /// Re-tag images whose best label is below this confidence.
    #[arg(long, value_name = "N", conflicts_with = "all")]
    below: Option<f32>,
    /// Tag every image.
    #[arg(long)]
    all: bool,
    /// Images tagged at once (also the cap on Rekognition calls in
    /// flight).
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// Re-run even where the metadata already records the same image,
    /// detector and threshold, and replace metadata documents that cannot
    /// be read (malformed, another tool's, too large), which are otherwise
    /// never overwritten.
    #[arg(long)]
    force: bool,
    /// List what would be tagged, and the Rekognition cost, without
    /// tagging.
    #[arg(long)]
    dry_run: bool,
    /// Go ahead with a Rekognition run over 1,000 images.
    #[arg(long)]
    yes: bool,
    /// One JSON object per image instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct WatchArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Seconds between listings of an S3 bucket (and between scans of a
    /// polled folder, and before an image is retried).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    interval: Duration,
    /// A new or changed file in a folder is read only once it has been
    /// quiet (same size and modification time) this many milliseconds,
    /// so that files still being copied are not read half-way.
    #[arg(long, default_value_t = 1500, value_name = "MS")]
    debounce: u64,
    /// Images tagged at once (also the cap on Rekognition calls in
    /// flight).
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// Only tag what arrives from now on; by default, images that are
    /// untagged or stale when the watch starts are tagged first.
    #[arg(long)]
    no_initial_scan: bool,
    /// Poll a local folder every --interval instead of using
    /// file-system notifications (network file systems, where
    /// notifications miss other machines' writes).
    #[arg(long)]
    poll: bool,
    /// One JSON object per image (as `tag --json`) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BackfillArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Images with these statuses (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "untagged,stale")]
    status: Vec<Status>,
    /// Key of the manifest in the bucket (default:
    /// imgtag/manifests/backfill-<UTC time>.csv).
    #[arg(long, value_name = "KEY", conflicts_with = "out")]
    manifest_key: Option<String>,
    /// Write the manifest to this local file instead of the bucket (no
    /// job is printed: upload it yourself).
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
    /// ARN of the imgtag-lambda function (stack output FunctionArn).
    #[arg(long, value_name = "ARN")]
    function_arn: Option<String>,
    /// Role S3 Batch Operations assumes (stack output
    /// BatchOperationsRoleArn).
    #[arg(long, value_name = "ARN")]
    role_arn: Option<String>,
    /// AWS account that runs the job (default: the function ARN's).
    #[arg(long, value_name = "ID")]
    account_id: Option<String>,
    /// Job priority.
    #[arg(long, default_value_t = 10)]
    priority: i32,
    /// Create the job (S3 Control CreateJob) instead of only printing
    /// it. It still waits for your confirmation before it runs. Needs a
    /// build with the cargo feature `backfill-submit`.
    #[arg(long, conflicts_with = "out")]
    submit: bool,
}

#[derive(clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Object key, e.g. uploads/2024/cat.jpg.
    key: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (0.05..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{v} is outside 0.05-86400 seconds"))
    }
}

/// S3 Control in the same account and region as the bucket (the S3
/// endpoint override does not apply: S3 Control is a different service).
#[cfg(feature = "backfill-submit")]
async fn s3control_client(s3: &imgtag::storage::S3Options) -> aws_sdk_s3control::Client {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig};
    // A service that stops answering gives an error, not a hang.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(60))
        .operation_timeout(Duration::from_secs(180))
        .build();
    let shared = imgtag::storage::s3::aws_config(s3, RetryConfig::standard(), timeouts).await;
    aws_sdk_s3control::Client::new(&shared)
}

/// `imgtag env`: the engine diagnostics; exit 1 when the engine asked
/// for cannot run.
fn env(args: &EnvArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    use imgtag::detection::engine::Search;
    writeln!(out, "imgtag {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(
        out,
        "built with onnxruntime engine: {}",
        if cfg!(feature = "ort") { "yes" } else { "no" }
    )?;
    match args.engine.resolve_in(&Search::from_env()) {
        Ok(resolution) => {
            write!(out, "{resolution}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            writeln!(out, "engine: none\nwhy: {e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn init_logging() {
    // Logs go to stderr, quiet unless IMGTAG_LOG asks (e.g. IMGTAG_LOG=debug).
    // aws-config warns of every source it could not use (no instance
    // metadata on a laptop, say) before the one error that matters, which
    // already says how to give credentials.
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMGTAG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error"));
    // Keys and error texts in log fields are escaped like on screen.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| imgtag::sanitize::SafeLogWriter(std::io::stderr()))
        // Its own report of a failed write is an eprintln!, which panics
        // when stderr is closed.
        .log_internal_errors(false)
        .try_init();
}

type Out<'a> = std::io::BufWriter<std::io::StdoutLock<'a>>;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let code = match cli.command {
        Command::Ls(args) => ls(args, &mut out).await?,
        Command::Tag(args) => tag(args, &mut out).await?,
        Command::Watch(args) => watch(args, &mut out).await?,
        Command::Backfill(args) => backfill(args, &mut out).await?,
        Command::Show(args) => show(args, &mut out).await?,
        Command::Review(args) => review(args, &mut out).await?,
        Command::Export(args) => export(args, &mut out).await?,
        Command::Index(args) => index(args, &mut out).await?,
        Command::Env(args) => env(&args, &mut out)?,
    };
    out.flush()?;
    Ok(code)
}

/// The settings and the opened bucket every subcommand starts from: its
/// index unless `--no-index` (one that cannot be opened is reported and
/// the command goes on without it), with a progress bar for refreshes.
async fn open(common: &CommonArgs) -> anyhow::Result<(Settings, Bucket)> {
    let settings = settings(common)?;
    let bucket = open_bucket(&settings).await?;
    Ok((settings, bucket))
}

/// [`open`] and the detector, started side by side: the bucket's index
/// opens on a blocking thread while the engine is found and its models
/// begin to load (docs/detectors.md, "How fast").
async fn open_with_detector(
    common: &CommonArgs,
    concurrency: usize,
) -> anyhow::Result<(Settings, Bucket, DynDetector)> {
    let settings = settings(common)?;
    // The bucket is polled first: its index is opening before the engine
    // search blocks this thread.
    let (bucket, detector) = tokio::join!(open_bucket(&settings), settings.detector(concurrency));
    let bucket = bucket?;
    let detector = detector.context("starting the detector")?;
    Ok((settings, bucket, detector))
}

fn settings(common: &CommonArgs) -> anyhow::Result<Settings> {
    let settings = common.resolve()?;
    if let Some(hint) = settings.bucket.folder_hint() {
        say!("imgtag: note: {}", for_terminal(&hint));
    }
    Ok(settings)
}

async fn open_bucket(settings: &Settings) -> anyhow::Result<Bucket> {
    let (bucket, note) = Bucket::open(settings)
        .await
        .with_context(|| format!("opening bucket {:?}", settings.bucket))?;
    if let Some(note) = note {
        say!("{}", for_terminal(&note));
    }
    Ok(bucket.with_progress(cli::refresh_progress()))
}

async fn ls(args: LsArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let (_, bucket) = open(&args.common).await?;
    let filter = Filter {
        statuses: args.status,
        label: args.label,
        below: args.below,
        text: args.text,
    };
    let sample = args.sample.map(|size| cli::Sample {
        size,
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
    });
    if let Some(s) = sample {
        say!(
            "sampling {} images (--seed {} picks the same ones again)",
            s.size,
            s.seed
        );
    }
    let listing = || format!("listing {}", bucket.describe());
    let (rows, listed) = bucket
        .rows(filter, !args.no_refresh)
        .await
        .with_context(listing)?;
    let mut summary = cli::ls(rows, sample, args.json, out)
        .await
        .with_context(listing)?;
    summary.listed = listed.count() as usize;
    out.flush()?;
    say!("{summary}");
    if summary.unreadable > 0 {
        return Err(CliError::Partial {
            count: summary.unreadable,
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

impl TagArgs {
    fn selection(&self) -> anyhow::Result<Selection> {
        Ok(if !self.keys.is_empty() {
            Selection::Keys(self.keys.clone())
        } else if self.untagged {
            Selection::Matching(Filter::statuses(vec![Status::Untagged]))
        } else if !self.status.is_empty() {
            Selection::Matching(Filter::statuses(self.status.clone()))
        } else if let Some(n) = self.below {
            Selection::Matching(Filter {
                below: Some(n),
                ..Filter::default()
            })
        } else if self.all {
            Selection::All
        } else {
            anyhow::bail!(
                "say which images to tag: KEY..., --untagged, --status S, --below N or --all"
            );
        })
    }
}

async fn tag(args: TagArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let selection = args.selection()?;
    let (settings, bucket, detector) = open_with_detector(&args.common, args.concurrency).await?;
    let opts = TagOptions {
        force: args.force,
        replace_unreadable: args.force,
        ..TagOptions::from_settings(&settings, "imgtag")
    };
    let run = cli::TagRun {
        selection,
        concurrency: args.concurrency,
        dry_run: args.dry_run,
        yes: args.yes,
        json: args.json,
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let mut err = std::io::stderr();
    let summary = cli::tag(&bucket, detector, opts, &run, out, &mut err)
        .await
        .context("tagging")?;
    out.flush()?;
    if !args.dry_run {
        say!("{summary}");
    }
    exit_code(&summary)
}

async fn watch(args: WatchArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let (settings, bucket, detector) = open_with_detector(&args.common, args.concurrency).await?;
    let source = match &settings.bucket {
        // Opened again as the concrete type: notifications need the
        // folder's path (open_store made the demo folder if needed).
        BucketSpec::Local(path) => imgtag::watch::WatchSource::Folder {
            store: imgtag::storage::LocalStore::open(path)
                .with_context(|| format!("opening folder {}", path.display()))?,
            poll: args.poll,
        },
        BucketSpec::S3(_) => imgtag::watch::WatchSource::Listing,
    };
    let opts = imgtag::watch::WatchOptions {
        tag: TagOptions::from_settings(&settings, "imgtag"),
        interval: args.interval,
        debounce: Duration::from_millis(args.debounce),
        concurrency: args.concurrency,
        initial_scan: !args.no_initial_scan,
        json: args.json,
    };
    let mut err = std::io::stderr();
    let summary =
        imgtag::watch::watch(bucket, source, detector, opts, cli::ctrl_c(), out, &mut err)
            .await
            .context("watching")?;
    out.flush()?;
    say!("{summary}");
    if let Some(fatal) = &summary.tally.fatal {
        anyhow::bail!("stopped: {fatal}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn backfill(args: BackfillArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    use imgtag::backfill;
    if args.submit && !cfg!(feature = "backfill-submit") {
        anyhow::bail!(
            "this imgtag was built without --submit (cargo feature backfill-submit); \
             run without it and pass the printed job to `aws s3control create-job`"
        );
    }
    let (settings, bucket) = open(&args.common).await?;
    let store = bucket.store();
    let keys = backfill::backlog(&bucket, &args.status)
        .await
        .with_context(|| format!("listing {}", bucket.describe()))?;
    let csv = backfill::manifest_csv(store.bucket_name(), &keys);
    if let Some(path) = &args.out {
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
        say!(
            "{} images in {}",
            keys.len(),
            for_terminal(&path.display().to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    if store.kind() != imgtag::storage::StoreKind::S3 {
        anyhow::bail!("S3 Batch Operations needs an S3 bucket; for a local folder use --out FILE");
    }
    if keys.is_empty() {
        say!("nothing to backfill: no image has the status asked for");
        return Ok(ExitCode::SUCCESS);
    }
    let key = args
        .manifest_key
        .clone()
        .unwrap_or_else(|| backfill::default_manifest_key(time::OffsetDateTime::now_utc()));
    backfill::check_manifest_key(&key, &settings.layout)?;
    let etag = backfill::upload_manifest(store, &key, csv)
        .await
        .with_context(|| format!("uploading the manifest to {}", store.describe()))?;
    let target = backfill::JobTarget {
        function_arn: args.function_arn,
        role_arn: args.role_arn,
        account_id: args.account_id,
        priority: args.priority,
    };
    let job = backfill::create_job_json(&target, store.bucket_name(), &key, &etag, keys.len());
    writeln!(out, "{}", imgtag::sanitize::json_line(&job))?;
    out.flush()?;
    let manifest = Manifest {
        bucket: store.bucket_name(),
        key: &key,
        images: keys.len(),
    };
    #[cfg(feature = "backfill-submit")]
    if args.submit {
        let client = s3control_client(&settings.s3).await;
        let id = backfill::submit::create_job(&client, &job).await?;
        manifest.report_submitted(&id, job["AccountId"].as_str().unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    manifest.report_written(settings.s3.region.as_deref());
    let missing = target.missing();
    if !missing.is_empty() {
        say!(
            "fill in the <...> placeholders or pass {}",
            missing.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A backfill manifest written to the bucket, for the closing message.
struct Manifest<'a> {
    bucket: &'a str,
    key: &'a str,
    images: usize,
}

impl Manifest<'_> {
    #[cfg(feature = "backfill-submit")]
    fn report_submitted(&self, id: &str, account: &str) {
        say!(
            "created Batch Operations job {} for {} images (manifest s3://{}/{}); it runs \
             once confirmed in the S3 console or with\n  aws s3control update-job-status \
             --account-id {} --job-id {} --requested-job-status Ready",
            for_terminal(id),
            self.images,
            for_terminal(self.bucket),
            for_terminal(self.key),
            for_terminal(account),
            for_terminal(id),
        );
    }

    fn report_written(&self, region: Option<&str>) {
        say!(
            "wrote s3://{}/{} ({} images). Create the job with:\n  aws s3control create-job{} --cli-input-json file://job.json\n\
             where job.json is the JSON above, then confirm it in the S3 console or with\n  \
             aws s3control update-job-status --account-id ID --job-id JOB --requested-job-status Ready",
            for_terminal(self.bucket),
            for_terminal(self.key),
            self.images,
            region
                .map(|r| format!(" --region {}", for_terminal(r)))
                .unwrap_or_default(),
        );
    }
}

async fn show(args: ShowArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let (_, bucket) = open(&args.common).await?;
    let shown = cli::lookup(&bucket, &args.key)
        .await
        .with_context(|| format!("looking up {}", for_terminal(&args.key)))?;
    cli::print_shown(&shown, args.json, out)?;
    Ok(ExitCode::SUCCESS)
}

impl ReviewArgs {
    fn selection(&self) -> anyhow::Result<Selection> {
        let filter = self.select.filter();
        match (self.keys.is_empty(), filter == Filter::default()) {
            (false, true) => Ok(Selection::Keys(self.keys.clone())),
            (true, false) => Ok(Selection::Matching(filter)),
            (false, false) => {
                anyhow::bail!(
                    "give image keys or a selection (--label, --below, --status, --text), not both"
                )
            }
            (true, true) => anyhow::bail!(
                "say which images to edit: KEY..., or --label, --below, --status and/or --text"
            ),
        }
    }
}

async fn review(args: ReviewArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let edit = ReviewEdit {
        add: args.add.clone(),
        remove: args.remove.clone(),
        flag: args.flag.clone(),
        accept: args.accept,
        replace: args.replace.clone(),
    };
    edit.validate().map_err(|e| {
        anyhow::anyhow!("{e} (use --add, --remove, --flag, --accept or --replace OLD=NEW)")
    })?;
    let (settings, bucket) = open(&args.common).await?;
    let selection = args.selection()?;
    let run = cli::ReviewRun {
        selection,
        edit,
        dry_run: args.dry_run,
        bulk: cli::Bulk {
            concurrency: args.concurrency,
            json: args.json,
            progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
    };
    let opts = TagOptions::from_settings(&settings, "imgtag");
    let summary = cli::review(&bucket, opts, &run, out)
        .await
        .context("reviewing")?;
    out.flush()?;
    if !args.dry_run {
        say!("{summary}");
        say!("{}", cli::review_progress(&summary));
    } else {
        say!("{} images would be edited", summary.selected);
    }
    exit_code(&summary)
}

async fn export(args: ExportArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let filter = args.select.filter();
    let selection = match (args.keys.is_empty(), filter == Filter::default()) {
        (false, true) => Selection::Keys(args.keys.clone()),
        (true, false) => Selection::Matching(filter),
        (true, true) => Selection::All,
        (false, false) => anyhow::bail!("give image keys or a selection, not both"),
    };
    let (_, bucket) = open(&args.common).await?;
    let targets = bucket
        .select(&selection)
        .await
        .with_context(|| format!("listing {}", bucket.describe()))?;
    let format = match args.format.as_str() {
        "csv" => imgtag::export::Format::Csv,
        _ => imgtag::export::Format::Manifest,
    };
    let done = imgtag::export::export(&bucket, targets, format, out)
        .await
        .context("exporting")?;
    out.flush()?;
    say!(
        "exported {} reviewed images ({} labels); {} selected images not reviewed or unreadable",
        done.images,
        done.labels,
        done.skipped
    );
    Ok(ExitCode::SUCCESS)
}

/// A bulk run's exit: an error when it stopped on its own, 1 when
/// anything conflicted, must be retried or was interrupted.
fn exit_code(summary: &cli::TagSummary) -> anyhow::Result<ExitCode> {
    if let Some(fatal) = &summary.tally.fatal {
        anyhow::bail!("stopped: {fatal}");
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            say!("imgtag: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // `imgtag ls | head` closes the pipe early: not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let msg = format!("{e:#}");
            say!("imgtag: {}", for_terminal(&msg));
            ExitCode::FAILURE
        }
    }
}

async fn index(args: IndexArgs, out: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let (settings, bucket) = open(&args.common).await?;
    let Some(index) = bucket.index().cloned() else {
        anyhow::bail!("there is no index to build with --no-index");
    };
    let store = bucket.store();
    let started = std::time::Instant::now();
    let opts = RefreshOptions {
        inventory: args.inventory(&settings, store.bucket_name()).await?,
        ..RefreshOptions::default()
    };
    let stats = bucket
        .refresh(&opts)
        .await
        .with_context(|| format!("indexing {}", store.describe()))?;
    let (objects, docs) = index.counts()?;
    writeln!(
        out,
        "{}: {} objects listed ({} new, {} changed, {} gone), {} documents read, {} unreadable, in {:.1} s",
        for_terminal(&index.path().display().to_string()),
        stats.listed,
        stats.added,
        stats.changed,
        stats.removed,
        stats.read,
        stats.unreadable.len(),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "the index holds {objects} objects and {docs} document summaries"
    )?;
    let mut unreadable: Vec<_> = stats.unreadable.iter().collect();
    unreadable.sort();
    for (key, why) in unreadable {
        say!("unreadable: {}: {}", for_terminal(key), for_terminal(why));
    }
    if !stats.unreadable.is_empty() {
        return Err(CliError::Partial {
            count: stats.unreadable.len(),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
