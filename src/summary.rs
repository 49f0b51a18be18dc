//! What an audit needs of a metadata document, and nothing more: the
//! labels with their parents, the headline, the error, the source and the
//! review flags, and the image quality numbers. Small enough to keep for a million images (in memory or
//! in the persistent index), and the only input of the status rule.

use serde::{Deserialize, Serialize};

use crate::contract::{Malformed, MetadataDoc, ParsedMetadata, Shape};

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
    /// `ImgTag.Text`'s lines (cleaned and bounded, as `ImgTagInfo::text`
    /// reads them): what a word search matches. Empty for a photo. The
    /// index keeps them in a table of their own ([`crate::index`]), not in
    /// the encoded summary.
    #[serde(rename = "w", default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
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

/// A document read: its summary, or why it could not be read.
pub(crate) type SummaryRead = Result<DocSummary, Malformed>;

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
            text: doc
                .imgtag
                .as_ref()
                .map(|t| t.text().lines.into_iter().map(|l| l.text).collect())
                .unwrap_or_default(),
        }
    }

    /// Whether a line of recognised text contains `needle` (any case;
    /// an empty needle matches nothing).
    pub(crate) fn has_text(&self, needle: &str) -> bool {
        let needle = needle.trim().to_lowercase();
        !needle.is_empty() && self.text.iter().any(|l| l.to_lowercase().contains(&needle))
    }

    /// (name, confidence) of the headline label.
    pub fn headline(&self) -> Option<(&str, f32)> {
        let l = self.labels.get(self.headline? as usize)?;
        Some((l.name(), l.confidence()))
    }

    /// Whether a label or a parent of one has this name (any case).
    pub(crate) fn has_label(&self, name: &str) -> bool {
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

/// Summarises a document read.
pub fn summarize(read: &Result<ParsedMetadata, Malformed>) -> SummaryRead {
    read.as_ref().map(DocSummary::of).map_err(Clone::clone)
}
