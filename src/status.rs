//! The status concept in one place (docs/format.md, "Statuses"): the
//! statuses, the review rule that decides when an image needs review
//! (headline thresholds, per-label ones, quality minimums), and the rule
//! itself, on a document summary or a document read. The catalog and the
//! index assess rows with it; `catalog::Filter` selects by it.

use serde::{Deserialize, Serialize};

use crate::contract::{Malformed, ParsedMetadata, normalize_etag};
use crate::summary::{DocSummary, SummaryRead, summarize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Untagged,
    Tagged,
    NeedsReview,
    Stale,
    Failed,
    Malformed,
    /// Metadata whose image is gone.
    Orphan,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Untagged,
        Status::Tagged,
        Status::NeedsReview,
        Status::Stale,
        Status::Failed,
        Status::Malformed,
        Status::Orphan,
    ];

    /// One character for tables and the TUI's list.
    pub fn glyph(self) -> &'static str {
        match self {
            Status::Untagged => "·",
            Status::Tagged => "✓",
            Status::NeedsReview => "?",
            Status::Stale => "~",
            Status::Failed => "✗",
            Status::Malformed => "!",
            Status::Orphan => "∅",
        }
    }

    /// The position in [`Status::ALL`], for per-status tables.
    pub const fn index(self) -> usize {
        match self {
            Status::Untagged => 0,
            Status::Tagged => 1,
            Status::NeedsReview => 2,
            Status::Stale => 3,
            Status::Failed => 4,
            Status::Malformed => 5,
            Status::Orphan => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Untagged => "untagged",
            Status::Tagged => "tagged",
            Status::NeedsReview => "needs-review",
            Status::Stale => "stale",
            Status::Failed => "failed",
            Status::Malformed => "malformed",
            Status::Orphan => "orphan",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == norm || (norm == "review" && *st == Status::NeedsReview))
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; one of: {}",
                    Status::ALL.map(Status::as_str).join(", ")
                )
            })
    }
}

/// The status of an image given its metadata (if any).
///
/// `image_etag` is the image's current ETag as listed; when either side
/// lacks one, staleness cannot be told and is not claimed.
/// `confidence` as imgtag prints it, to one decimal: cut, not rounded, so
/// a label below a threshold never reads as at it (69.97 is 69.9, not 70.0
/// beside "below the review threshold 70").
pub fn shown(confidence: f32) -> f32 {
    // The 1e-3 tenth absorbs f32's binary form (65.7 is 65.69999…).
    ((f64::from(confidence) * 10.0 + 1e-3).floor() / 10.0) as f32
}

pub fn assess(
    metadata: Option<&Result<ParsedMetadata, Malformed>>,
    image_etag: Option<&str>,
    rule: impl Into<ReviewRule>,
) -> Status {
    let summary = metadata.map(summarize);
    status_of(summary.as_ref(), image_etag, rule)
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
    pub(crate) fn threshold_for(&self, name: &str, parents: &[String]) -> f32 {
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
    pub(crate) fn quality_reason(&self, s: &DocSummary) -> Option<String> {
        let q = s.quality?;
        let low = |what: &str, value: Option<f32>, min: Option<f32>| match (value, min) {
            (Some(v), Some(m)) if v < m => Some(format!("{what} {v} is below {m}")),
            _ => None,
        };
        low("brightness", q.brightness(), self.min_brightness)
            .or_else(|| low("sharpness", q.sharpness(), self.min_sharpness))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every confidence a document can carry to three decimals prints at
    /// or below itself, within a tenth: 69.966 is 69.9, 65.3 stays 65.3.
    #[test]
    fn confidences_print_cut_never_rounded_up() {
        let print = |c: f32| format!("{:.1}", shown(c));
        assert_eq!(print(69.966), "69.9");
        assert_eq!(print(99.993), "99.9");
        for (c, text) in [
            (65.3, "65.3"),
            (65.7, "65.7"),
            (98.2, "98.2"),
            (70.0, "70.0"),
        ] {
            assert_eq!(print(c), text);
        }
        for thousandths in 0..=100_000u32 {
            let decimal = format!("{}.{:03}", thousandths / 1000, thousandths % 1000);
            let printed = print(decimal.parse().unwrap());
            let tenths: u32 = printed.replace('.', "").parse().unwrap();
            assert!(
                tenths * 100 <= thousandths && thousandths < tenths * 100 + 100,
                "{decimal} printed as {printed}"
            );
        }
    }

    #[test]
    fn status_parses_loosely() {
        assert_eq!("needs_review".parse::<Status>(), Ok(Status::NeedsReview));
        assert_eq!("Review".parse::<Status>(), Ok(Status::NeedsReview));
        assert!("bogus".parse::<Status>().is_err());
    }
}
