//! The headless commands behind the `imgtag` binary, written against any
//! `Write` so they can be tested without a terminal.

use std::collections::BTreeMap;
use std::io::Write;

use futures::TryStreamExt;
use serde::Serialize;

use crate::catalog::{Assessed, audit, read_metadata};
use crate::contract::{KeyKind, Layout, ParsedMetadata, Status, assess};
use crate::sanitize::{for_terminal, json_line};
use crate::storage::{DynStore, ObjectInfo, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{count} metadata object(s) could not be read (see the error column)")]
    Partial { count: usize },
}

/// Which entries `ls` prints.
#[derive(Debug, Clone, Default)]
pub struct LsFilter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<Status>,
    /// Only images with a label (or a parent of one) of this name.
    pub label: Option<String>,
    /// Only images whose best label is below this confidence.
    pub below: Option<f32>,
}

impl LsFilter {
    pub fn matches(&self, a: &Assessed) -> bool {
        if !self.statuses.is_empty() && !a.status.is_some_and(|s| self.statuses.contains(&s)) {
            return false;
        }
        if let Some(want) = &self.label {
            let Some(doc) = a.doc() else { return false };
            let hit = doc.doc.labels.iter().any(|l| {
                l.name.eq_ignore_ascii_case(want)
                    || l.parents.iter().any(|p| p.name.eq_ignore_ascii_case(want))
            });
            if !hit {
                return false;
            }
        }
        if let Some(below) = self.below {
            let Some(doc) = a.doc() else { return false };
            if doc.doc.error().is_some() {
                return false;
            }
            if doc.doc.best_label().is_some_and(|b| b.confidence >= below) {
                return false;
            }
        }
        true
    }
}

/// Counts per status, for the summary line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub listed: usize,
    pub shown: usize,
    pub by_status: BTreeMap<String, usize>,
    pub unreadable: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} shown of {} listed", self.shown, self.listed)?;
        let parts: Vec<String> = Status::ALL
            .iter()
            .filter_map(|s| {
                self.by_status
                    .get(s.as_str())
                    .map(|n| format!("{n} {}", s.as_str()))
            })
            .collect();
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        if self.unreadable > 0 {
            write!(f, ", {} unreadable", self.unreadable)?;
        }
        Ok(())
    }
}

const GLYPHS: [(Status, &str); 7] = [
    (Status::Untagged, "·"),
    (Status::Tagged, "✓"),
    (Status::NeedsReview, "?"),
    (Status::Stale, "~"),
    (Status::Failed, "✗"),
    (Status::Malformed, "!"),
    (Status::Orphan, "∅"),
];

pub fn glyph(s: Option<Status>) -> &'static str {
    s.and_then(|s| GLYPHS.iter().find(|g| g.0 == s).map(|g| g.1))
        .unwrap_or("E")
}

/// `imgtag ls`: streams the audit, printing as it goes.
pub async fn ls(
    store: DynStore,
    layout: Layout,
    review_below: f32,
    filter: &LsFilter,
    json: bool,
    out: &mut dyn Write,
) -> Result<Summary, CliError> {
    let mut summary = Summary::default();
    let mut rows = std::pin::pin!(audit(store, layout, review_below));
    let mut header = !json;
    while let Some(a) = rows.try_next().await? {
        if std::mem::take(&mut header) {
            writeln!(
                out,
                "{:<2} {:<12} {:>5}  {:<20} {:<40} METADATA",
                "", "STATUS", "CONF", "LABEL", "KEY"
            )?;
        }
        summary.listed += 1;
        let status = a.status.map_or("unknown", Status::as_str);
        *summary.by_status.entry(status.to_string()).or_default() += 1;
        if a.read_error.is_some() {
            summary.unreadable += 1;
        }
        if !filter.matches(&a) {
            continue;
        }
        summary.shown += 1;
        if json {
            writeln!(out, "{}", json_line(&a.to_json()))?;
        } else {
            let (label, conf) = match a.best() {
                Some((l, c)) => (for_terminal(l).into_owned(), format!("{c:.1}")),
                None => ("-".into(), "-".into()),
            };
            let meta = match (&a.metadata, a.image.is_some()) {
                (Some(m), true) => for_terminal(&m.key).into_owned(),
                (None, true) => "—".into(),
                (_, false) => "(no image)".into(),
            };
            let mut line = format!(
                "{:<2} {:<12} {:>5}  {:<20} {:<40} {}",
                glyph(a.status),
                status,
                conf,
                label,
                for_terminal(a.key()),
                meta
            );
            if let Some(e) = &a.read_error {
                line.push_str(&format!("  [{}]", for_terminal(e)));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(summary)
}

/// What `show` found for one key.
#[derive(Debug)]
pub struct Shown {
    pub image_key: String,
    pub image: Option<ObjectInfo>,
    pub metadata_key: Option<String>,
    pub key_kind: Option<KeyKind>,
    pub read: Option<Result<ParsedMetadata, crate::contract::Malformed>>,
    pub status: Status,
}

/// Finds an image (or metadata) key's pair and reads the metadata.
pub async fn lookup(
    store: &DynStore,
    layout: &Layout,
    review_below: f32,
    key: &str,
) -> Result<Shown, CliError> {
    let (image_key, image, found) = match layout.metadata_rest(key) {
        Some(rest) => {
            let read = match read_metadata(store, key).await {
                Ok((read, _)) => Some(read),
                Err(StorageError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let image = find_image_for_metadata(store, layout, rest).await?;
            let image_key = image
                .as_ref()
                .map_or_else(|| layout.image_key(rest), |i| i.key.clone());
            let kind = image.as_ref().and_then(|i| {
                let irest = layout.image_rest(&i.key)?;
                Layout::candidate_rests(irest)
                    .find(|(_, c)| *c == rest)
                    .map(|(k, _)| k)
            });
            if image.is_none() && read.is_none() {
                return Err(StorageError::NotFound { key: key.into() }.into());
            }
            (
                image_key,
                image,
                read.map(|r| (key.to_string(), kind.unwrap_or(KeyKind::Canonical), r)),
            )
        }
        None => {
            let rest = layout.image_rest(key).ok_or_else(|| {
                CliError::Usage(format!(
                    "{} is neither under {} nor under {}",
                    for_terminal(key),
                    layout.uploads_prefix(),
                    layout.metadata_prefix()
                ))
            })?;
            let image = match store.head(key).await {
                Ok(i) => Some(i),
                Err(StorageError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let mut found = None;
            for (kind, cand) in Layout::candidate_rests(rest) {
                let mkey = format!("{}{cand}.json", layout.metadata_prefix());
                match read_metadata(store, &mkey).await {
                    Ok((read, _)) => {
                        found = Some((mkey, kind, read));
                        break;
                    }
                    Err(StorageError::NotFound { .. } | StorageError::InvalidKey { .. }) => {
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if image.is_none() && found.is_none() {
                return Err(StorageError::NotFound { key: key.into() }.into());
            }
            (key.to_string(), image, found)
        }
    };
    let (metadata_key, key_kind, read) = match found {
        Some((k, kind, read)) => (Some(k), Some(kind), Some(read)),
        None => (None, None, None),
    };
    let status = if image.is_none() {
        Status::Orphan
    } else {
        assess(
            read.as_ref(),
            image.as_ref().and_then(|i| i.etag.as_deref()),
            review_below,
        )
    };
    Ok(Shown {
        image_key,
        image,
        metadata_key,
        key_kind,
        read,
        status,
    })
}

/// The image a metadata rest belongs to: the canonical one, else one with
/// the rest as its stem (`metadata/a.json` for `uploads/a.png`). Flattened
/// legacy keys would need a listing of every image and are not searched.
async fn find_image_for_metadata(
    store: &DynStore,
    layout: &Layout,
    rest: &str,
) -> Result<Option<ObjectInfo>, CliError> {
    match store.head(&layout.image_key(rest)).await {
        Ok(i) => return Ok(Some(i)),
        Err(StorageError::NotFound { .. } | StorageError::InvalidKey { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let prefix = format!("{}{rest}.", layout.uploads_prefix());
    let mut pages = store.list(&prefix);
    while let Some(page) = pages.try_next().await? {
        if let Some(hit) = page.into_iter().find(|o| {
            layout.image_rest(&o.key).is_some_and(|r| {
                Layout::candidate_rests(r).any(|(k, c)| k == KeyKind::Stem && c == rest)
            })
        }) {
            return Ok(Some(hit));
        }
    }
    Ok(None)
}

/// `imgtag show`: the pairing and the metadata of one image.
pub fn print_shown(s: &Shown, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    if json {
        #[derive(Serialize)]
        struct ImageJson<'a> {
            size: u64,
            etag: Option<&'a str>,
            last_modified: Option<i64>,
        }
        #[derive(Serialize)]
        struct ShownJson<'a> {
            key: &'a str,
            status: &'a str,
            image: Option<ImageJson<'a>>,
            metadata_key: Option<&'a str>,
            metadata_match: Option<KeyKind>,
            shape: Option<crate::contract::Shape>,
            malformed: Option<&'a str>,
            metadata: Option<&'a crate::contract::MetadataDoc>,
        }
        let parsed = s.read.as_ref().and_then(|r| r.as_ref().ok());
        let v = ShownJson {
            key: &s.image_key,
            status: s.status.as_str(),
            image: s.image.as_ref().map(|i| ImageJson {
                size: i.size,
                etag: i.etag.as_deref(),
                last_modified: i.last_modified,
            }),
            metadata_key: s.metadata_key.as_deref(),
            metadata_match: s.key_kind,
            shape: parsed.map(|p| p.shape),
            malformed: s
                .read
                .as_ref()
                .and_then(|r| r.as_ref().err())
                .map(|m| m.reason.as_str()),
            metadata: parsed.map(|p| &p.doc),
        };
        writeln!(out, "{}", json_line(&v))?;
        return Ok(());
    }
    writeln!(out, "image     {}", for_terminal(&s.image_key))?;
    match &s.image {
        Some(i) => writeln!(
            out,
            "          {} bytes, ETag {}",
            i.size,
            for_terminal(i.etag.as_deref().unwrap_or("-"))
        )?,
        None => writeln!(out, "          (missing: the metadata is an orphan)")?,
    }
    match (&s.metadata_key, s.key_kind) {
        (Some(k), Some(kind)) => writeln!(
            out,
            "metadata  {} ({})",
            for_terminal(k),
            match kind {
                KeyKind::Canonical => "canonical key",
                KeyKind::Stem => "legacy key without extension",
                KeyKind::Flat => "legacy flattened key",
                KeyKind::FlatStem => "legacy flattened key without extension",
            }
        )?,
        _ => writeln!(out, "metadata  — (untagged)")?,
    }
    writeln!(out, "status    {}", s.status)?;
    match &s.read {
        Some(Err(m)) => writeln!(out, "problem   {}", for_terminal(&m.reason))?,
        Some(Ok(p)) => {
            if let Some(t) = &p.doc.imgtag {
                writeln!(
                    out,
                    "tagged    {} by {} with {} at MinConfidence {}{}",
                    for_terminal(&t.tagged_at),
                    for_terminal(&t.tagged_by),
                    for_terminal(&t.detector),
                    t.min_confidence,
                    t.max_labels
                        .map(|m| format!(", MaxLabels {m}"))
                        .unwrap_or_default()
                )?;
                if let Some(e) = &t.error {
                    writeln!(
                        out,
                        "error     {}: {}",
                        for_terminal(&e.code),
                        for_terminal(&e.message)
                    )?;
                }
                if let Some(r) = t.review.as_ref().filter(|r| !r.is_empty()) {
                    let list = |v: &[String]| {
                        v.iter()
                            .map(|s| for_terminal(s).into_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    writeln!(
                        out,
                        "review    added [{}] removed [{}] flagged [{}]",
                        list(&r.added),
                        list(&r.removed),
                        list(&r.flagged)
                    )?;
                }
            }
            writeln!(out, "labels    {}", p.doc.labels.len())?;
            for l in &p.doc.labels {
                let filled = (l.confidence / 10.0).round().clamp(0.0, 10.0) as usize;
                let parents: Vec<String> = l
                    .parents
                    .iter()
                    .map(|p| for_terminal(&p.name).into_owned())
                    .collect();
                let line = format!(
                    "  {:<24} {:>5.1} {}{}  {}",
                    for_terminal(&l.name),
                    l.confidence,
                    "█".repeat(filled),
                    "░".repeat(10 - filled),
                    if parents.is_empty() {
                        String::new()
                    } else {
                        format!("< {}", parents.join(" < "))
                    }
                );
                writeln!(out, "{}", line.trim_end())?;
            }
        }
        None => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// imgtag tag

/// Which images `tag` works on.
#[derive(Debug, Clone)]
pub enum Selection {
    Keys(Vec<String>),
    /// Images with these statuses (untagged, stale, ...).
    Status(Vec<Status>),
    /// Images whose best label is below this confidence.
    Below(f32),
    All,
}

/// Rekognition's first-tier price, dollars per image.
pub const REKOGNITION_PRICE_PER_IMAGE: f64 = 0.001;
/// Runs over this many Rekognition calls need `--yes`.
pub const CONFIRM_ABOVE: usize = 1000;

pub struct TagRun {
    pub selection: Selection,
    pub concurrency: usize,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    /// Draw a progress bar (stderr is a terminal and output is not JSON).
    pub progress: bool,
}

/// Counts of a finished run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TagSummary {
    pub selected: usize,
    pub tagged: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub conflicts: usize,
    pub retry: usize,
    pub skipped: usize,
    pub interrupted: bool,
    pub fatal: Option<String>,
    pub seconds: f64,
}

impl TagSummary {
    pub fn ok(&self) -> bool {
        self.conflicts == 0 && self.retry == 0 && self.fatal.is_none() && !self.interrupted
    }
}

impl std::fmt::Display for TagSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tagged, {} unchanged, {} failed (recorded), {} conflicts, {} to retry, {} skipped, of {} in {:.1}s",
            self.tagged,
            self.unchanged,
            self.failed,
            self.conflicts,
            self.retry,
            self.skipped,
            self.selected,
            self.seconds
        )?;
        if self.interrupted {
            write!(f, " (interrupted)")?;
        }
        Ok(())
    }
}

/// The images a selection names, with the metadata key each pairs with.
pub async fn select(
    store: &DynStore,
    layout: &Layout,
    review_below: f32,
    selection: &Selection,
) -> Result<Vec<(String, Option<String>)>, CliError> {
    if let Selection::Keys(keys) = selection {
        return Ok(keys.iter().map(|k| (k.clone(), None)).collect());
    }
    let mut out = Vec::new();
    let mut rows = std::pin::pin!(audit(store.clone(), layout.clone(), review_below));
    while let Some(a) = rows.try_next().await? {
        let Some(image) = &a.image else { continue };
        let keep = match selection {
            Selection::All => true,
            Selection::Status(s) => a.status.is_some_and(|st| s.contains(&st)),
            Selection::Below(n) => {
                a.doc().is_some_and(|d| d.doc.error().is_none())
                    && a.best().is_none_or(|(_, c)| c < *n)
            }
            Selection::Keys(_) => unreachable!("handled above"),
        };
        if keep {
            out.push((
                image.key.clone(),
                a.metadata.as_ref().map(|m| m.key.clone()),
            ));
        }
    }
    Ok(out)
}

/// `imgtag tag`: tags the selected images through the pipeline with
/// bounded concurrency. Ctrl-C stops scheduling; writes in flight finish
/// (each is atomic), nothing is half-written.
pub async fn tag(
    store: DynStore,
    detector: crate::detection::DynDetector,
    opts: crate::pipeline::TagOptions,
    review_below: f32,
    run: &TagRun,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<TagSummary, CliError> {
    use futures::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::pipeline::{Outcome, tag as tag_one};

    let started = std::time::Instant::now();
    let targets = select(&store, &opts.layout, review_below, &run.selection).await?;
    let mut summary = TagSummary {
        selected: targets.len(),
        ..Default::default()
    };
    let paid = detector.name() == "rekognition";
    let cost = targets.len() as f64 * REKOGNITION_PRICE_PER_IMAGE;
    if run.dry_run {
        for (k, m) in &targets {
            if run.json {
                writeln!(
                    out,
                    "{}",
                    json_line(
                        &serde_json::json!({"key": k, "metadata_key": m, "outcome": "would-tag"})
                    )
                )?;
            } else {
                writeln!(out, "would tag {}", for_terminal(k))?;
            }
        }
        if paid {
            writeln!(
                err,
                "{} images with Rekognition: about ${cost:.2} at $1.00 per 1,000 (first tier); \
                 images already tagged with the same settings are skipped and not charged",
                targets.len()
            )?;
        } else {
            writeln!(
                err,
                "{} images with the local model (no cost)",
                targets.len()
            )?;
        }
        return Ok(summary);
    }
    if paid && targets.len() > CONFIRM_ABOVE && !run.yes {
        return Err(CliError::Usage(format!(
            "this would send {} images to Rekognition, about ${cost:.2} at $1.00 per 1,000; \
             check with --dry-run, then pass --yes",
            targets.len()
        )));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ctrl_c = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
                eprintln!("\nstopping: finishing the writes in flight (Ctrl-C again to quit now)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    // Every write is atomic, so quitting now loses nothing
                    // that was written and leaves nothing half-written.
                    std::process::exit(130);
                }
            }
        })
    };

    let bar = if run.progress {
        let pb = indicatif::ProgressBar::new(targets.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };

    let stop2 = stop.clone();
    let mut results = futures::stream::iter(targets)
        .take_while(move |_| futures::future::ready(!stop2.load(Ordering::SeqCst)))
        .map(|(key, meta)| {
            let store = store.clone();
            let detector = detector.clone();
            let mut opts = opts.clone();
            opts.metadata_key = meta;
            async move {
                let outcome = tag_one(&store, &detector, &key, &opts).await;
                (key, outcome)
            }
        })
        .buffer_unordered(run.concurrency.max(1));
    let mut done = 0usize;
    while let Some((key, outcome)) = results.next().await {
        done += 1;
        bar.inc(1);
        tracing::info!(key = %key, outcome = ?outcome, "tagged");
        match &outcome {
            Outcome::Tagged { .. } => summary.tagged += 1,
            Outcome::Unchanged { .. } => summary.unchanged += 1,
            Outcome::Failed { .. } => summary.failed += 1,
            Outcome::Conflict { .. } => summary.conflicts += 1,
            Outcome::Retry { .. } => summary.retry += 1,
            Outcome::Skipped { .. } => summary.skipped += 1,
            Outcome::Fatal { message } => {
                if summary.fatal.is_none() {
                    summary.fatal = Some(message.clone());
                }
                stop.store(true, Ordering::SeqCst);
            }
        }
        let line = if run.json {
            outcome_json(&key, &outcome)
        } else {
            outcome_text(&key, &outcome)
        };
        bar.suspend(|| writeln!(out, "{line}"))?;
    }
    bar.finish_and_clear();
    ctrl_c.abort();
    summary.interrupted =
        stop.load(Ordering::SeqCst) && done < summary.selected && summary.fatal.is_none();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// One human line for an image's outcome, as `imgtag tag` and
/// `imgtag watch` print it. Keys and messages are untrusted: escaped.
pub fn outcome_text(key: &str, outcome: &crate::pipeline::Outcome) -> String {
    use crate::pipeline::Outcome;
    match outcome {
        Outcome::Tagged { best, labels, .. } => format!(
            "tagged     {}  {} labels{}",
            for_terminal(key),
            labels,
            best.as_ref()
                .map(|(n, c)| format!(", best {} {c:.1}", for_terminal(n)))
                .unwrap_or_default()
        ),
        Outcome::Unchanged { .. } => format!("unchanged  {}", for_terminal(key)),
        Outcome::Failed { code, message, .. } => format!(
            "failed     {}  {}: {}",
            for_terminal(key),
            for_terminal(code),
            for_terminal(message)
        ),
        Outcome::Conflict { metadata_key } => format!(
            "conflict   {}  {} changed while tagging; not overwritten",
            for_terminal(key),
            for_terminal(metadata_key)
        ),
        Outcome::Retry { message } => {
            format!(
                "retry      {}  {}",
                for_terminal(key),
                for_terminal(message)
            )
        }
        Outcome::Skipped { reason } => {
            format!("skipped    {}  {}", for_terminal(key), for_terminal(reason))
        }
        Outcome::Fatal { message } => {
            format!(
                "stopped    {}  {}",
                for_terminal(key),
                for_terminal(message)
            )
        }
    }
}

/// One JSON line for an image's outcome: `{"key": ..., "outcome": ...}`
/// plus the outcome's fields, as `imgtag tag --json` and
/// `imgtag watch --json` print it.
pub fn outcome_json(key: &str, outcome: &crate::pipeline::Outcome) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        key: &'a str,
        #[serde(flatten)]
        outcome: &'a crate::pipeline::Outcome,
    }
    json_line(&Line { key, outcome })
}
