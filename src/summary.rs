//! What an audit needs of a metadata document, and nothing more: the
//! labels with their parents, the headline, the error, the source and the
//! review flags, and the image quality numbers. Small enough to keep for a million images (in memory or
//! in the persistent index), and the only input of the status rule.

use serde::{Deserialize, Serialize};

use crate::contract::{Malformed, MetadataDoc, ParsedMetadata, Shape, Status, normalize_etag};

/// The status of an image given its metadata (if any).
///
/// `image_etag` is the image's current ETag as listed; when either side
/// lacks one, staleness cannot be told and is not claimed.
pub fn assess(
    metadata: Option<&Result<ParsedMetadata, Malformed>>,
    image_etag: Option<&str>,
    rule: impl Into<ReviewRule>,
) -> Status {
    let summary = metadata.map(summarize);
    status_of(summary.as_ref(), image_etag, rule)
}

/// One label: name, confidence, parent names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary(pub String, pub f32, pub Vec<String>);

impl LabelSummary {
    pub fn name(&self) -> &str {
        &self.0
    }
    pub fn confidence(&self) -> f32 {
        self.1
    }
    pub fn parents(&self) -> &[String] {
        &self.2
    }
}

/// A metadata document as the audit sees it. Field names are short
/// because the index stores a million of these as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocSummary {
    #[serde(rename = "s")]
    pub shape: Shape,
    #[serde(rename = "l", default)]
    pub labels: Vec<LabelSummary>,
    /// Index into `labels` of the headline label.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<u32>,
    /// `code: message` of a recorded failure.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `ImgTag.Source.Key`: the image the document was made for.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    /// `ImgTag.Source.ETag`: the image's ETag when it was tagged.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub source_etag: Option<String>,
    /// An operator flagged it in a review.
    #[serde(rename = "f", default, skip_serializing_if = "std::ops::Not::not")]
    pub flagged: bool,
    /// It has a review (labels added, removed or flagged by hand).
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub reviewed: bool,
    /// `ImageProperties.Quality` Brightness and Sharpness, when the
    /// document has them: what the quality review rule compares.
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualitySummary>,
}

/// Brightness and sharpness (0-100) of an image, as its document records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary(pub Option<f32>, pub Option<f32>);

impl QualitySummary {
    pub fn brightness(&self) -> Option<f32> {
        self.0
    }
    pub fn sharpness(&self) -> Option<f32> {
        self.1
    }
}

/// When an image needs review: its headline label is below its review
/// threshold (`below`, or a per-label one), or (when set) its recorded
/// brightness or sharpness is below the minimum. The quality minimums are
/// off by default; a document without quality numbers is not judged by
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRule {
    pub below: f32,
    /// Per-label thresholds (`--review-below Person=90`, the config's
    /// `[review]` table); empty for most runs.
    pub per_label: LabelThresholds,
    pub min_brightness: Option<f32>,
    pub min_sharpness: Option<f32>,
}

/// Review thresholds by label name (compared case-insensitively), shared
/// cheaply by every copy of a rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelThresholds(std::sync::Arc<[(String, f32)]>);

impl LabelThresholds {
    pub fn new(pairs: impl IntoIterator<Item = (String, f32)>) -> Self {
        LabelThresholds(pairs.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This name's own threshold, if it has one.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, f32)> {
        self.0.iter()
    }
}

impl From<&ReviewRule> for ReviewRule {
    fn from(rule: &ReviewRule) -> Self {
        rule.clone()
    }
}

impl From<f32> for ReviewRule {
    /// The headline threshold alone.
    fn from(below: f32) -> Self {
        ReviewRule {
            below,
            per_label: LabelThresholds::default(),
            min_brightness: None,
            min_sharpness: None,
        }
    }
}

impl ReviewRule {
    /// The review threshold of a headline named `name` with these parents
    /// (docs/format.md, "Statuses"): its own, else its nearest ancestor's
    /// that has one (the document's parents, then the shipped taxonomy's,
    /// nearest first), else `below`.
    pub fn threshold_for(&self, name: &str, parents: &[String]) -> f32 {
        if self.per_label.is_empty() {
            return self.below;
        }
        let t = &self.per_label;
        t.get(name)
            .or_else(|| parents.iter().find_map(|p| t.get(p)))
            .or_else(|| {
                crate::taxonomy::Taxonomy::shipped()
                    .ancestors(name)
                    .find_map(|a| t.get(a))
            })
            .unwrap_or(self.below)
    }

    /// Why the image's quality needs review ("sharpness 12.5 is below
    /// 30"), or `None`.
    pub fn quality_reason(&self, s: &DocSummary) -> Option<String> {
        let q = s.quality?;
        let low = |what: &str, value: Option<f32>, min: Option<f32>| match (value, min) {
            (Some(v), Some(m)) if v < m => Some(format!("{what} {v} is below {m}")),
            _ => None,
        };
        low("brightness", q.brightness(), self.min_brightness)
            .or_else(|| low("sharpness", q.sharpness(), self.min_sharpness))
    }
}

/// A document read: its summary, or why it could not be read.
pub type SummaryRead = Result<DocSummary, Malformed>;

impl DocSummary {
    pub fn of(parsed: &ParsedMetadata) -> Self {
        let doc: &MetadataDoc = &parsed.doc;
        let headline = crate::headline::headline_of(doc).map(|h| h.index as u32);
        let source = doc.imgtag.as_ref().map(|t| &t.source);
        DocSummary {
            shape: parsed.shape,
            labels: doc
                .labels
                .iter()
                .map(|l| {
                    LabelSummary(
                        l.name.clone(),
                        l.confidence,
                        l.parents.iter().map(|p| p.name.clone()).collect(),
                    )
                })
                .collect(),
            headline,
            error: doc.error().map(|e| format!("{}: {}", e.code, e.message)),
            source_key: source.map(|s| s.key.clone()),
            source_etag: source.and_then(|s| s.etag.clone()),
            flagged: doc.review().is_some_and(|r| !r.flagged.is_empty()),
            reviewed: doc.review().is_some_and(|r| !r.is_empty()),
            quality: doc
                .image_properties()
                .and_then(|p| p.quality)
                .map(|q| QualitySummary(q.brightness, q.sharpness))
                .filter(|q| q.0.is_some() || q.1.is_some()),
        }
    }

    /// (name, confidence) of the headline label.
    pub fn headline(&self) -> Option<(&str, f32)> {
        let l = self.labels.get(self.headline? as usize)?;
        Some((l.name(), l.confidence()))
    }

    /// Whether a label or a parent of one has this name (any case).
    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|l| {
            l.name().eq_ignore_ascii_case(name)
                || l.parents().iter().any(|p| p.eq_ignore_ascii_case(name))
        })
    }

    /// Every label and parent name once, lowercased: what a label search
    /// matches.
    pub fn search_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .labels
            .iter()
            .flat_map(|l| std::iter::once(l.name()).chain(l.parents().iter().map(String::as_str)))
            .map(str::to_lowercase)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The status rule (docs/format.md, "Statuses") on a summary: untagged without a
/// document, malformed, failed, stale when the image changed since it was
/// tagged, needs-review when the headline is weak, missing or flagged, or
/// the image's quality is below the rule's minimums. `rule` may be the
/// bare headline threshold (`70.0`).
pub fn status_of(
    doc: Option<&SummaryRead>,
    image_etag: Option<&str>,
    rule: impl Into<ReviewRule>,
) -> Status {
    let rule = rule.into();
    let s = match doc {
        None => return Status::Untagged,
        Some(Err(_)) => return Status::Malformed,
        Some(Ok(s)) => s,
    };
    if s.error.is_some() {
        return Status::Failed;
    }
    if let (Some(now), Some(then)) = (image_etag, s.source_etag.as_deref())
        && normalize_etag(now) != normalize_etag(then)
    {
        return Status::Stale;
    }
    if rule.quality_reason(s).is_some() {
        return Status::NeedsReview;
    }
    let headline = s.headline.and_then(|i| s.labels.get(i as usize));
    match headline {
        Some(h) if h.confidence() >= rule.threshold_for(h.name(), h.parents()) && !s.flagged => {
            Status::Tagged
        }
        // No labels at all is as doubtful as a weak one.
        _ => Status::NeedsReview,
    }
}

/// Summarises a document read.
pub fn summarize(read: &Result<ParsedMetadata, Malformed>) -> SummaryRead {
    read.as_ref().map(DocSummary::of).map_err(Clone::clone)
}
