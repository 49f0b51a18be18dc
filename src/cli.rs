//! The headless commands behind the `imgtag` binary, written against any
//! `Write` so they can be tested without a terminal.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use serde::Serialize;

use crate::bucket::{Bucket, BucketError};
use crate::bulk::{Event, Jobs, Stop};
use crate::catalog::{
    Assessed, FoundMetadata, Lookup, Selected, Selection, find_metadata, read_metadata_bytes,
};
use crate::contract::{KeyKind, Layout, ParsedMetadata};
use crate::detection::{DetectorKind, DynDetector};
use crate::outcome::{Outcome, Tally};
use crate::pipeline::{self, ReviewEdit, TagOptions};
use crate::sanitize::{for_terminal, json_line};
use crate::status::Status;
use crate::status::{assess, shown};
use crate::storage::{DynStore, ObjectInfo, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{count} metadata object(s) could not be read (see the error column)")]
    Partial { count: usize },
}

/// Counts per status, for the summary line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub listed: usize,
    pub shown: usize,
    pub by_status: BTreeMap<String, usize>,
    pub unreadable: usize,
}

impl Summary {
    fn count(&mut self, a: &Assessed) {
        self.listed += 1;
        let status = a.status.map_or("unknown", Status::as_str);
        *self.by_status.entry(status.to_string()).or_default() += 1;
        if a.read_error.is_some() {
            self.unreadable += 1;
        }
    }
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

/// The status column's glyph; `E` when the metadata could not be read.
fn glyph(s: Option<Status>) -> &'static str {
    s.map_or("E", Status::glyph)
}

/// A spot check: `size` images picked at random from what the filter
/// shows, reproducibly for a given seed.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub size: usize,
    pub seed: u64,
}

/// Keeps a uniform random sample of a stream of unknown length in O(size)
/// memory (reservoir sampling, Algorithm R).
struct Reservoir {
    rng: fastrand::Rng,
    size: usize,
    seen: u64,
    kept: Vec<Assessed>,
}

impl Reservoir {
    fn new(s: Sample) -> Self {
        Reservoir {
            rng: fastrand::Rng::with_seed(s.seed),
            size: s.size,
            seen: 0,
            kept: Vec::with_capacity(s.size.min(4096)),
        }
    }

    fn offer(&mut self, a: Assessed) {
        self.seen += 1;
        if self.kept.len() < self.size {
            self.kept.push(a);
        } else {
            let j = self.rng.u64(0..self.seen);
            if let Some(slot) = self.kept.get_mut(j as usize) {
                *slot = a;
            }
        }
    }

    /// The sample in key order, so that two runs with one seed diff well.
    fn into_sorted(mut self) -> Vec<Assessed> {
        self.kept.sort_by(|a, b| a.key().cmp(b.key()));
        self.kept
    }
}

/// `imgtag ls`: prints audit rows as they come (with a sample: once they
/// are all in). The rows come from an audit of the bucket or from its
/// index.
pub async fn ls<E>(
    rows: impl Stream<Item = Result<Assessed, E>>,
    sample: Option<Sample>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Summary, CliError>
where
    CliError: From<E>,
{
    let mut summary = Summary::default();
    let mut rows = std::pin::pin!(rows);
    let mut reservoir = sample.map(Reservoir::new);
    if !json {
        print_ls_header(out)?;
    }
    while let Some(a) = rows.try_next().await? {
        summary.count(&a);
        match reservoir.as_mut() {
            Some(r) => r.offer(a),
            None => print_ls_row(&a, json, &mut summary, out)?,
        }
    }
    for a in reservoir.map(Reservoir::into_sorted).unwrap_or_default() {
        print_ls_row(&a, json, &mut summary, out)?;
    }
    Ok(summary)
}

/// A refresh's progress as a spinner on stderr, cleared when it ends.
pub fn refresh_progress() -> crate::bucket::DynReport {
    Arc::new(RefreshBar(std::sync::Mutex::new(None)))
}

struct RefreshBar(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl crate::bucket::RefreshReport for RefreshBar {
    fn progress(&self, p: crate::index::refresh::Progress) {
        use crate::index::refresh::Progress;
        let mut bar = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        match p {
            Progress::Listed(n) => bar.set_message(format!("listed {n} objects")),
            Progress::Read { done, total } => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(format!("read {done}/{total} changed documents"));
            }
        }
    }

    fn finished(&self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

fn print_ls_header(out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(
        out,
        "{:<2} {:<12} {:>5}  {:<20} {:<40} METADATA",
        "", "STATUS", "CONF", "LABEL", "KEY"
    )?;
    Ok(())
}

fn print_ls_row(
    a: &Assessed,
    json: bool,
    summary: &mut Summary,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    summary.shown += 1;
    if json {
        writeln!(out, "{}", json_line(&a.to_json()))?;
        return Ok(());
    }
    let (label, conf) = match a.headline() {
        Some((l, c)) => (for_terminal(l).into_owned(), format!("{:.1}", shown(c))),
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
        a.status.map_or("unknown", Status::as_str),
        conf,
        label,
        for_terminal(a.key()),
        meta
    );
    if let Some(e) = &a.read_error {
        line.push_str(&format!("  [{}]", for_terminal(e)));
    }
    writeln!(out, "{}", line.trim_end())?;
    Ok(())
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
    /// The threshold the status was assessed at.
    pub review_below: f32,
    /// The image's canonical key holds another image's document.
    pub taken: Option<crate::catalog::Taken>,
}

/// Finds an image (or metadata) key's pair and reads the metadata.
pub async fn lookup(bucket: &Bucket, key: &str) -> Result<Shown, CliError> {
    let (store, layout, rule) = (bucket.store(), bucket.layout(), bucket.review());
    let (image_key, image, lookup) = match layout.metadata_rest(key) {
        Some(rest) => lookup_metadata_key(store, layout, key, rest).await?,
        None => lookup_image_key(store, layout, key).await?,
    };
    let (found, taken) = match lookup {
        Lookup::Found(f) => (Some(*f), None),
        Lookup::Absent { taken } => (None, taken),
    };
    if image.is_none() && found.is_none() {
        return Err(StorageError::NotFound { key: key.into() }.into());
    }
    let status = match &image {
        None => Status::Orphan,
        Some(i) => assess(found.as_ref().map(|f| &f.read), i.etag.as_deref(), rule),
    };
    Ok(Shown {
        image_key,
        image,
        metadata_key: found.as_ref().map(|f| f.key.clone()),
        key_kind: found.as_ref().map(|f| f.kind),
        read: found.map(|f| f.read),
        status,
        review_below: rule.below,
        taken,
    })
}

type Looked = (String, Option<ObjectInfo>, Lookup);

async fn lookup_image_key(
    store: &DynStore,
    layout: &Layout,
    key: &str,
) -> Result<Looked, CliError> {
    if layout.image_rest(key).is_none() {
        return Err(CliError::Usage(format!(
            "{} is neither under {} nor under {}",
            for_terminal(key),
            layout.uploads_prefix(),
            layout.metadata_prefix()
        )));
    }
    let image = match store.head(key).await {
        Ok(i) => Some(i),
        Err(StorageError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let found = find_metadata(store, layout, key, None).await?;
    Ok((key.to_string(), image, found))
}

async fn lookup_metadata_key(
    store: &DynStore,
    layout: &Layout,
    key: &str,
    rest: &str,
) -> Result<Looked, CliError> {
    let read = match read_metadata_bytes(store, key).await {
        Ok(r) => Some(r),
        Err(StorageError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    // A document that names its image is that image's, wherever it sits.
    let owner = read
        .as_ref()
        .and_then(|(r, _, _)| r.as_ref().ok()?.doc.imgtag.as_ref())
        .map(|t| t.source.key.clone())
        .filter(|s| layout.key_kind(s, key).is_some());
    let image = match &owner {
        Some(o) => head_if_exists(store, o).await?,
        None => find_image_for_metadata(store, layout, rest).await?,
    };
    let image_key = owner.unwrap_or_else(|| {
        image
            .as_ref()
            .map_or_else(|| layout.image_key(rest), |i| i.key.clone())
    });
    let kind = layout
        .key_kind(&image_key, key)
        .unwrap_or(KeyKind::Canonical);
    let found = read.map(|(read, info, body)| FoundMetadata {
        key: key.to_string(),
        kind,
        info,
        read,
        body,
    });
    let lookup = found.map_or(Lookup::Absent { taken: None }, |f| {
        Lookup::Found(Box::new(f))
    });
    Ok((image_key, image, lookup))
}

async fn head_if_exists(store: &DynStore, key: &str) -> Result<Option<ObjectInfo>, CliError> {
    match store.head(key).await {
        Ok(i) => Ok(Some(i)),
        Err(StorageError::NotFound { .. } | StorageError::InvalidKey { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
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
        print_shown_json(s, out)
    } else {
        print_shown_text(s, out)
    }
}

fn print_shown_json(s: &Shown, out: &mut dyn Write) -> Result<(), CliError> {
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
        /// The headline label's name and confidence.
        headline: Option<&'a str>,
        confidence: Option<f32>,
        metadata: Option<&'a crate::contract::MetadataDoc>,
        /// The canonical key, when it holds another image's document.
        taken_by: Option<&'a crate::catalog::Taken>,
    }
    let parsed = s.read.as_ref().and_then(|r| r.as_ref().ok());
    let headline = parsed.and_then(|p| p.doc.headline());
    let v = ShownJson {
        headline: headline.map(|l| l.name.as_str()),
        confidence: headline.map(|l| l.confidence),
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
        taken_by: s.taken.as_ref(),
    };
    writeln!(out, "{}", json_line(&v))?;
    Ok(())
}

fn print_shown_text(s: &Shown, out: &mut dyn Write) -> Result<(), CliError> {
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
    if let Some(t) = &s.taken {
        writeln!(out, "note      {}", for_terminal(&t.reason()))?;
    }
    writeln!(out, "status    {}", s.status)?;
    match &s.read {
        Some(Err(m)) => writeln!(out, "problem   {}", for_terminal(&m.reason))?,
        Some(Ok(p)) => {
            if let Some(t) = &p.doc.imgtag {
                print_provenance(t, out)?;
            }
            print_headline(&p.doc, s.review_below, out)?;
            print_quality(&p.doc, out)?;
            print_labels(&p.doc.labels, out)?;
            if let Some(t) = &p.doc.imgtag {
                print_text(t, out)?;
            }
        }
        None => {}
    }
    Ok(())
}

/// `ImgTag.Text`'s lines, one a row, with the recogniser's confidence.
fn print_text(t: &crate::contract::ImgTagInfo, out: &mut dyn Write) -> Result<(), CliError> {
    for (i, l) in t.text().lines.iter().enumerate() {
        let head = if i == 0 { "text" } else { "" };
        writeln!(
            out,
            "{head:<9} {} ({:.1})",
            for_terminal(&l.text),
            shown(l.confidence)
        )?;
    }
    Ok(())
}

fn print_provenance(t: &crate::contract::ImgTagInfo, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "tagged    {}", for_terminal(&t.provenance()))?;
    if let Some(e) = &t.error {
        writeln!(
            out,
            "error     {}: {}",
            for_terminal(&e.code),
            for_terminal(&e.message)
        )?;
    }
    print_request(t, out)?;
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
        for c in &r.confirmed {
            // What the detector said stays visible after a confirmation.
            let detector = c
                .detector_confidence
                .map_or_else(|| "a human's label".into(), |d| format!("detector {d}"));
            writeln!(
                out,
                "confirmed {} ({detector}) {} by {}",
                for_terminal(&c.name),
                for_terminal(c.confirmed_at.as_deref().unwrap_or("-")),
                for_terminal(c.confirmed_by.as_deref().unwrap_or("-")),
            )?;
        }
        if let Some(at) = &r.reviewed_at {
            let by = r.reviewed_by.as_deref().unwrap_or("-");
            writeln!(
                out,
                "reviewed  {} by {}",
                for_terminal(at),
                for_terminal(by)
            )?;
        }
    }
    Ok(())
}

/// The DetectLabels features and filters the labels were asked with, when
/// not the default (GENERAL_LABELS, unfiltered).
fn print_request(t: &crate::contract::ImgTagInfo, out: &mut dyn Write) -> Result<(), CliError> {
    let filters = t.label_filters();
    if t.features.is_empty() && filters.is_empty() {
        return Ok(());
    }
    let list = |v: &[String]| {
        v.iter()
            .map(|s| for_terminal(s).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = if t.features.is_empty() {
        crate::detection::GENERAL_LABELS.to_string()
    } else {
        list(&t.features)
    };
    for (what, names) in [
        ("include-labels", &filters.label_inclusion_filters),
        ("exclude-labels", &filters.label_exclusion_filters),
        (
            "include-categories",
            &filters.label_category_inclusion_filters,
        ),
        (
            "exclude-categories",
            &filters.label_category_exclusion_filters,
        ),
    ] {
        if !names.is_empty() {
            line.push_str(&format!("; {what} [{}]", list(names)));
        }
    }
    writeln!(out, "request   {line}")?;
    Ok(())
}

/// `ImageProperties.Quality` in one line ("quality   brightness 46.85 ·
/// sharpness 57.27 · contrast 25.19"), when the document has it.
pub fn print_quality(
    doc: &crate::contract::MetadataDoc,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(q) = doc.image_properties().and_then(|p| p.quality) else {
        return Ok(());
    };
    let parts: Vec<String> = [
        ("brightness", q.brightness),
        ("sharpness", q.sharpness),
        ("contrast", q.contrast),
    ]
    .into_iter()
    .filter_map(|(what, v)| v.map(|v| format!("{what} {v}")))
    .collect();
    if !parts.is_empty() {
        writeln!(out, "quality   {}", parts.join(" · "))?;
    }
    Ok(())
}

/// The headline with the chain that leads to it, and whether it is the
/// weak specific label an operator should look at.
fn print_headline(
    doc: &crate::contract::MetadataDoc,
    review_below: f32,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(h) = crate::headline::headline_of(doc) else {
        return Ok(());
    };
    let chain: Vec<String> = h
        .chain
        .iter()
        .map(|&i| for_terminal(&doc.labels[i].name).into_owned())
        .collect();
    let weak = if h.is_weak(&doc.labels, review_below) {
        format!("  (weak: below the review threshold {review_below})")
    } else {
        String::new()
    };
    writeln!(
        out,
        "headline  {} {:.1}{weak}  [{}]",
        for_terminal(h.name(&doc.labels)),
        shown(h.confidence(&doc.labels)),
        chain.join(" > ")
    )?;
    Ok(())
}

fn print_labels(labels: &[crate::contract::Label], out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "labels    {}", labels.len())?;
    for l in labels {
        let filled = (l.confidence / 10.0).round().clamp(0.0, 10.0) as usize;
        let parents: Vec<String> = l
            .parents
            .iter()
            .map(|p| for_terminal(&p.name).into_owned())
            .collect();
        let line = format!(
            "  {:<24} {:>5.1} {}{}  {}",
            for_terminal(&l.name),
            shown(l.confidence),
            "█".repeat(filled),
            "░".repeat(10 - filled),
            if parents.is_empty() {
                String::new()
            } else {
                format!("< {}", parents.join(" < "))
            }
        );
        writeln!(out, "{}", line.trim_end())?;
        print_instances(l, out)?;
    }
    Ok(())
}

/// One line per instance box of a label, as the document gives it
/// (fractions of the image; a box without fields or with odd values is
/// printed as it is, not judged).
fn print_instances(l: &crate::contract::Label, out: &mut dyn Write) -> Result<(), CliError> {
    for i in &l.instances {
        let conf = i
            .confidence
            .map(|c| format!("  conf {:.1}", shown(c)))
            .unwrap_or_default();
        match &i.bounding_box {
            Some(b) => writeln!(
                out,
                "    box  left {:.2} top {:.2} width {:.2} height {:.2}{conf}",
                b.left, b.top, b.width, b.height
            )?,
            None => writeln!(out, "    instance without a box{conf}")?,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// imgtag tag

/// Runs over this many paid detector calls need `--yes`.
pub(crate) const CONFIRM_ABOVE: usize = 1000;

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
    #[serde(flatten)]
    pub tally: Tally,
    pub interrupted: bool,
    pub seconds: f64,
}

impl TagSummary {
    pub fn ok(&self) -> bool {
        self.tally.ok() && !self.interrupted
    }
}

impl std::fmt::Display for TagSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, of {} in {:.1}s",
            self.tally, self.selected, self.seconds
        )?;
        if self.interrupted {
            write!(f, " (interrupted)")?;
        }
        Ok(())
    }
}

/// `imgtag review`'s pace, as the TUI's status line gives it: reviewed,
/// left of the selection, and reviews per minute.
pub fn review_progress(s: &TagSummary) -> String {
    let reviewed = s.tally.tagged;
    let per_minute = reviewed as f64 * 60.0 / s.seconds.max(0.001);
    format!(
        "reviewed {reviewed} of {} · {} left · {per_minute:.0}/min",
        s.selected,
        s.selected.saturating_sub(reviewed)
    )
}

/// Resolves on the first Ctrl-C, after which a second Ctrl-C quits at once
/// (every write is atomic, so that loses nothing written). `tag` and
/// `watch` stop scheduling on it and let the writes in flight finish.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling: run until killed.
        std::future::pending::<()>().await;
    }
    // Ignored if stderr is gone: the stop goes on all the same.
    let _ = writeln!(
        std::io::stderr(),
        "\nstopping: finishing the writes in flight (Ctrl-C again to quit now)"
    );
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

/// `imgtag tag`: tags the selected images through the pipeline with
/// bounded concurrency. Ctrl-C stops scheduling; writes in flight finish
/// (each is atomic), nothing is half-written.
pub async fn tag(
    bucket: &Bucket,
    detector: DynDetector,
    opts: TagOptions,
    run: &TagRun,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<TagSummary, CliError> {
    let started = std::time::Instant::now();
    let targets = bucket.select(&run.selection).await?;
    let store = bucket.store();
    let kind = detector.kind();
    if run.dry_run {
        print_dry_run(&targets, kind, opts.features, run.json, out, err)?;
        return Ok(TagSummary {
            selected: targets.len(),
            ..Default::default()
        });
    }
    if kind.is_paid() && targets.len() > CONFIRM_ABOVE && !run.yes {
        return Err(CliError::Usage(format!(
            "this would tag {} images {}; check with --dry-run, then pass --yes",
            targets.len(),
            kind.cost_phrase_with(targets.len(), opts.features)
        )));
    }
    let bulk = Bulk {
        concurrency: run.concurrency,
        json: run.json,
        progress: run.progress,
    };
    let job = |t: Selected| {
        let (store, detector) = (store.clone(), detector.clone());
        let opts = TagOptions {
            metadata_key: t.metadata_key,
            ..opts.clone()
        };
        async move { pipeline::tag(&store, &detector, &t.key, &opts).await }
    };
    let mut summary =
        until_ctrl_c(|stop| async move { run_bulk(targets, bulk, &stop, out, job).await }).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn print_dry_run(
    targets: &[Selected],
    kind: DetectorKind,
    features: crate::detection::Features,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    for t in targets {
        if json {
            let line = serde_json::json!({
                "key": t.key, "metadata_key": t.metadata_key, "outcome": "would-tag"
            });
            writeln!(out, "{}", json_line(&line))?;
        } else {
            writeln!(out, "would tag {}", for_terminal(&t.key))?;
        }
    }
    write!(
        err,
        "{} images {}",
        targets.len(),
        kind.cost_phrase_with(targets.len(), features)
    )?;
    if kind.is_paid() {
        write!(
            err,
            "; images already tagged with the same settings are skipped and not charged"
        )?;
    }
    writeln!(err)?;
    Ok(())
}

fn progress_bar(len: usize, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// How a bulk run (`tag`, `review`) goes: concurrency and output.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    pub concurrency: usize,
    pub json: bool,
    pub progress: bool,
}

/// Runs `job` over `targets` through the one bulk runner, `concurrency`
/// at a time, until done, `stop` or a fatal outcome; prints each outcome
/// as it comes.
async fn run_bulk<F, Fut>(
    targets: Vec<Selected>,
    bulk: Bulk,
    stop: &Stop,
    out: &mut dyn Write,
    job: F,
) -> Result<TagSummary, CliError>
where
    F: Fn(Selected) -> Fut,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let selected = targets.len();
    let bar = progress_bar(selected, bulk.progress);
    let mut jobs = Jobs::new(bulk.concurrency, stop.clone());
    let mut targets = targets.into_iter();
    let mut tally = Tally::default();
    let mut done = 0usize;
    // Output that cannot be written (`| head -1` closed the pipe) stops
    // the run like Ctrl-C: nothing new starts, the writes in flight finish
    // (dropping them could cut a paid detection off from its write), then
    // the error is returned.
    let mut closed: Option<std::io::Error> = None;
    loop {
        while jobs.wants_more() {
            let Some(t) = targets.next() else { break };
            jobs.push(t.key.clone(), job(t));
        }
        let Some(event) = jobs.next().await else {
            break;
        };
        let Event::Done(key, outcome) = event else {
            continue;
        };
        done += 1;
        bar.inc(1);
        tracing::info!(key = %for_terminal(&key), outcome = outcome.name(), "done");
        tally.add(&outcome);
        if closed.is_some() {
            continue;
        }
        let line = if bulk.json {
            outcome.json_line(&key)
        } else {
            outcome.text(&key)
        };
        // Each line as it happens, for scripts that read the stream.
        if let Err(e) = bar.suspend(|| writeln!(out, "{line}").and_then(|()| out.flush())) {
            stop.set();
            closed = Some(e);
        }
    }
    bar.finish_and_clear();
    if let Some(e) = closed {
        return Err(CliError::Output(e));
    }
    Ok(TagSummary {
        selected,
        interrupted: stop.is_set() && done < selected && tally.fatal.is_none(),
        tally,
        seconds: 0.0,
    })
}

/// Runs `body` with a stop flag that the first Ctrl-C sets.
async fn until_ctrl_c<T, F, Fut>(body: F) -> T
where
    F: FnOnce(Stop) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let stop = Stop::default();
    let watcher = tokio::spawn({
        let stop = stop.clone();
        async move {
            ctrl_c().await;
            stop.set();
        }
    });
    let result = body(stop).await;
    watcher.abort();
    result
}

// ---------------------------------------------------------------------------
// imgtag review

pub struct ReviewRun {
    pub selection: Selection,
    pub edit: ReviewEdit,
    pub dry_run: bool,
    pub bulk: Bulk,
}

/// `imgtag review`: applies one edit to every selected image, each write
/// conditional on the document read (a concurrent change is a conflict,
/// never overwritten).
pub async fn review(
    bucket: &Bucket,
    opts: TagOptions,
    run: &ReviewRun,
    out: &mut dyn Write,
) -> Result<TagSummary, CliError> {
    let started = std::time::Instant::now();
    let targets = bucket.select(&run.selection).await?;
    let store = bucket.store();
    if run.dry_run {
        for t in &targets {
            if run.bulk.json {
                let line = serde_json::json!({
                    "key": t.key, "metadata_key": t.metadata_key, "outcome": "would-review",
                    "add": run.edit.add, "remove": run.edit.remove, "flag": run.edit.flag,
                    "accept": run.edit.accept, "replace": run.edit.replace,
                });
                writeln!(out, "{}", json_line(&line))?;
            } else {
                writeln!(out, "would review {}", for_terminal(&t.key))?;
            }
        }
        return Ok(TagSummary {
            selected: targets.len(),
            ..Default::default()
        });
    }
    let job = |t: Selected| {
        let (store, edit) = (store.clone(), run.edit.clone());
        let opts = TagOptions {
            metadata_key: t.metadata_key,
            ..opts.clone()
        };
        async move { pipeline::edit_review(&store, &t.key, &edit, &opts).await }
    };
    let mut summary =
        until_ctrl_c(|stop| async move { run_bulk(targets, run.bulk, &stop, out, job).await })
            .await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
