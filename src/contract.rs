//! The contract every imgtag writer and reader agrees on: the metadata JSON
//! document, the uploads -> metadata key mapping, and the image statuses.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Schema version written in `ImgTag.SchemaVersion`.
pub const SCHEMA_VERSION: u32 = 1;
/// Default MinConfidence, the same as Rekognition's.
pub(crate) const DEFAULT_MIN_CONFIDENCE: f32 = 55.0;
/// Default review threshold: a headline label below this needs a human look.
pub(crate) const DEFAULT_REVIEW_BELOW: f32 = 70.0;
/// Metadata documents larger than this are not parsed (a detector never
/// writes anything near it; a huge object is a mistake or an attack).
pub const MAX_METADATA_BYTES: u64 = 8 * 1024 * 1024;
/// S3's limit on object key length, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ContractError {
    #[error("prefix {0:?} is invalid: {1}")]
    BadPrefix(String, &'static str),
    #[error("uploads prefix {uploads:?} and metadata prefix {metadata:?} overlap")]
    OverlappingPrefixes { uploads: String, metadata: String },
    #[error("key is not under the uploads prefix {prefix:?}")]
    NotAnUpload { prefix: String },
    #[error("the metadata key for this image would be {len} bytes, over S3's 1024")]
    KeyTooLong { len: usize },
}

// ---------------------------------------------------------------------------
// The document

/// `{"Name": ...}` as used by Parents, Aliases and Categories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameRef {
    #[serde(rename = "Name")]
    pub name: String,
}

impl NameRef {
    pub fn new(name: impl Into<String>) -> Self {
        NameRef { name: name.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct BoundingBox {
    #[serde(default)]
    pub width: f32,
    #[serde(default)]
    pub height: f32,
    #[serde(default)]
    pub left: f32,
    #[serde(default)]
    pub top: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounding_box: Option<BoundingBox>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Kept verbatim: imgtag never interprets colours.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dominant_colors: Vec<Value>,
}

/// One label, exactly as Rekognition DetectLabels returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Label {
    pub name: String,
    pub confidence: f32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub parents: Vec<NameRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub aliases: Vec<NameRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub categories: Vec<NameRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub instances: Vec<Instance>,
    /// Fields imgtag does not model, kept as they were on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Fields of a document that imgtag does not model: read, kept, and
/// written back untouched, so another tool's additions survive.
pub(crate) type Extra = serde_json::Map<String, Value>;

impl Label {
    pub fn new(name: impl Into<String>, confidence: f32) -> Self {
        Label {
            name: name.into(),
            confidence,
            parents: Vec::new(),
            aliases: Vec::new(),
            categories: Vec::new(),
            instances: Vec::new(),
            extra: Extra::new(),
        }
    }
}

/// Where the tagged image came from; the ETag tells a reader whether the
/// image was replaced after tagging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SourceRef {
    pub bucket: String,
    pub key: String,
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

/// Human corrections, kept so that a re-run of detection re-applies them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Review {
    #[serde(default, deserialize_with = "null_as_default")]
    pub added: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub removed: Vec<String>,
    /// Labels the operator flagged as doubtful (an imgtag extension: readers
    /// that do not know it ignore it).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub flagged: Vec<String>,
    /// Labels the operator confirmed as they are (`a` in the TUI,
    /// `imgtag review --accept`): a human's word, like an added label, with
    /// what the detector had said kept here (an imgtag extension).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub confirmed: Vec<Confirmed>,
    #[serde(default)]
    pub reviewed_at: Option<String>,
    /// Who reviewed (`imgtag`, `imgtag-tui`, ...): a review records its own
    /// author, never the tagging's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Review {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.flagged.is_empty()
            && self.confirmed.is_empty()
    }

    /// Whether the operator confirmed this label (any case).
    pub fn is_confirmed(&self, name: &str) -> bool {
        self.confirmed
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// A label an operator confirmed: which, what the detector had said, when
/// and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Confirmed {
    pub name: String,
    /// The detector's confidence when it was confirmed (absent when the
    /// label was already a human's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector_confidence: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The key of the detector's near misses in `ImgTag` (docs/format.md).
pub(crate) const CANDIDATES: &str = "Candidates";
/// At most this many candidates are kept in a document.
pub const MAX_CANDIDATES: usize = 10;

/// What the detector saw below MinConfidence: a name it would have
/// labelled with a lower threshold. Not a label (nothing reads it as one);
/// it ranks the review queue's suggested replacements (`crate::suggest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Candidate {
    pub name: String,
    pub confidence: f32,
}

impl Candidate {
    pub fn new(name: impl Into<String>, confidence: f32) -> Self {
        Candidate {
            name: name.into(),
            confidence,
        }
    }

    /// Whether a writer may keep it: a name a review could add (not empty,
    /// nothing a terminal would act on) and a confidence below
    /// `min_confidence`.
    fn is_valid(&self, min_confidence: f32) -> bool {
        !self.name.trim().is_empty()
            && !self.name.chars().any(crate::sanitize::is_unsafe)
            && self.confidence.is_finite()
            && (0.0..min_confidence.min(100.0)).contains(&self.confidence)
    }
}

/// The candidates a document keeps: valid ones (a name a review could add,
/// a confidence below `min_confidence`), none named like a label, each name once (any case, the most confident),
/// most confident first (then by name), at most [`MAX_CANDIDATES`].
pub(crate) fn normalize_candidates(
    mut candidates: Vec<Candidate>,
    min_confidence: f32,
    labels: &[Label],
) -> Vec<Candidate> {
    let mut seen: std::collections::HashSet<String> =
        labels.iter().map(|l| l.name.to_lowercase()).collect();
    candidates.retain(|c| c.is_valid(min_confidence));
    candidates.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.name.cmp(&b.name))
    });
    candidates.retain(|c| seen.insert(c.name.to_lowercase()));
    candidates.truncate(MAX_CANDIDATES);
    candidates
}

/// The key of the recognised words in `ImgTag` (docs/format.md).
pub(crate) const TEXT: &str = "Text";
/// At most this many lines are kept in `ImgTag.Text`.
pub const MAX_TEXT_LINES: usize = 100;
/// At most this many characters are kept of one line.
pub const MAX_LINE_CHARS: usize = 200;
/// At most this many characters are kept over all lines: a page of text,
/// so a document stays small and the index holds a bounded amount.
pub const MAX_TEXT_CHARS: usize = 4000;

/// One recognised line of text: what it says, how sure the recogniser is
/// (mean probability of its characters, percent) and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TextLine {
    pub text: String,
    pub confidence: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounding_box: Option<BoundingBox>,
}

/// `ImgTag.Text`: the words the local detector read in the image's lines
/// of text (`Text` label), in reading order. Untrusted like every field:
/// `normalize_text` bounds and cleans it on write and on read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RecognizedText {
    #[serde(default, deserialize_with = "null_as_default")]
    pub lines: Vec<TextLine>,
}

impl RecognizedText {
    /// Every line, one per line of the result: what a word search reads.
    pub fn joined(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&l.text);
        }
        out
    }
}

/// A line's text as kept: whitespace runs (line breaks too) made one
/// space, characters a terminal would act on and invisible ones dropped, trimmed, at
/// most [`MAX_LINE_CHARS`].
pub(crate) fn clean_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LINE_CHARS * 4));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if crate::sanitize::is_unsafe(c) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    match out.char_indices().nth(MAX_LINE_CHARS) {
        Some((at, _)) => out[..at].trim_end().to_string(),
        None => out,
    }
}

/// The lines a document keeps: cleaned ([`clean_line`]), none empty, a
/// finite confidence within 0-100, boxes dropped unless finite, at most
/// [`MAX_TEXT_LINES`] lines and [`MAX_TEXT_CHARS`] characters in all
/// (the first lines kept: they are in reading order).
pub(crate) fn normalize_text(lines: Vec<TextLine>) -> Vec<TextLine> {
    let mut total = 0;
    let mut kept = Vec::new();
    for mut line in lines {
        line.text = clean_line(&line.text);
        let chars = line.text.chars().count();
        if chars == 0 || !line.confidence.is_finite() {
            continue;
        }
        if kept.len() == MAX_TEXT_LINES || total + chars > MAX_TEXT_CHARS {
            break;
        }
        total += chars;
        line.confidence = line.confidence.clamp(0.0, 100.0);
        line.bounding_box = line.bounding_box.filter(|b| {
            [b.left, b.top, b.width, b.height]
                .iter()
                .all(|v| v.is_finite())
        });
        kept.push(line);
    }
    kept
}

/// A permanent failure recorded instead of labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// imgtag's provenance block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImgTagInfo {
    pub schema_version: u32,
    pub source: SourceRef,
    /// The tagging's provenance: absent when imgtag adopted a document
    /// another tool tagged (a review never invents it; docs/format.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
    #[serde(default)]
    pub max_labels: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged_by: Option<String>,
    #[serde(default)]
    pub review: Option<Review>,
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    /// DetectLabels `Features` the labels were asked with. Absent or empty:
    /// `GENERAL_LABELS` alone (documents written before imgtag recorded it,
    /// and every default request, which writes nothing here).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub features: Vec<String>,
    /// DetectLabels `Settings` the labels were asked with (the label and
    /// category filters). Absent: no filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<RequestSettings>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImgTagInfo {
    /// `ImgTag.Candidates`, read leniently: kept in `extra` as written, so
    /// a value of another shape (another tool's field of that name) never
    /// makes the document unreadable and survives a review's rewrite. Here
    /// it reads as its valid entries only (none when it is not a list).
    pub fn candidates(&self) -> Vec<Candidate> {
        let Some(Value::Array(items)) = self.extra.get(CANDIDATES) else {
            return Vec::new();
        };
        let parsed = items
            .iter()
            .filter_map(|v| Candidate::deserialize(v).ok())
            .collect();
        let min = self.min_confidence.unwrap_or(100.0);
        normalize_candidates(parsed, min, &[])
    }

    /// Sets `ImgTag.Candidates` (a detection's own; none removes the field,
    /// so documents without candidates are as they always were).
    pub(crate) fn set_candidates(&mut self, candidates: &[Candidate]) {
        let value = (!candidates.is_empty())
            .then(|| json_value(&candidates))
            .flatten();
        match value {
            Some(v) => self.extra.insert(CANDIDATES.into(), v),
            None => self.extra.remove(CANDIDATES),
        };
    }

    /// `ImgTag.Text`, read leniently like [`candidates`](Self::candidates):
    /// a value of another shape reads as no text, a line of another shape
    /// is skipped, and what is kept is cleaned and bounded
    /// (`normalize_text`).
    pub fn text(&self) -> RecognizedText {
        let Some(Value::Array(items)) = self
            .extra
            .get(TEXT)
            .and_then(|t| t.as_object())
            .and_then(|t| t.get("Lines"))
        else {
            return RecognizedText::default();
        };
        let parsed = items
            .iter()
            .filter_map(|v| TextLine::deserialize(v).ok())
            .collect();
        RecognizedText {
            lines: normalize_text(parsed),
        }
    }

    /// Sets `ImgTag.Text` (a detection's own; no lines removes the field,
    /// so documents without text are as they always were).
    pub(crate) fn set_text(&mut self, lines: Vec<TextLine>) {
        let lines = normalize_text(lines);
        let value = (!lines.is_empty())
            .then(|| json_value(&RecognizedText { lines }))
            .flatten();
        match value {
            Some(v) => self.extra.insert(TEXT.into(), v),
            None => self.extra.remove(TEXT),
        };
    }

    /// How the labels came to be, as every front end words it: what is
    /// known of the tagging, or "by another tool" when imgtag only adopted
    /// the document to keep a review in it. Untrusted text: sanitise it
    /// before a terminal sees it.
    pub fn provenance(&self) -> String {
        if self.detector.is_none() && self.tagged_by.is_none() && self.tagged_at.is_none() {
            return "by another tool".into();
        }
        let mut out = String::new();
        if let Some(at) = &self.tagged_at {
            out.push_str(at);
            out.push(' ');
        }
        out.push_str("by ");
        out.push_str(self.tagged_by.as_deref().unwrap_or("another tool"));
        if let Some(d) = &self.detector {
            out.push_str(" with ");
            out.push_str(d);
        }
        if let Some(m) = self.min_confidence {
            out.push_str(&format!(" at MinConfidence {m}"));
        }
        if let Some(m) = self.max_labels {
            out.push_str(&format!(", MaxLabels {m}"));
        }
        out
    }

    /// The label filters the document was made with (none when absent).
    pub fn label_filters(&self) -> LabelFilters {
        self.settings
            .as_ref()
            .and_then(|s| s.general_labels.clone())
            .unwrap_or_default()
    }
}

/// DetectLabels `Settings` as imgtag records it in `ImgTag.Settings`: the
/// request's shape, so a reader sees exactly what was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RequestSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_labels: Option<LabelFilters>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RequestSettings {
    /// `Settings` for these filters, or `None` when there are none (so a
    /// default request records nothing).
    pub(crate) fn for_filters(filters: &LabelFilters) -> Option<Self> {
        (!filters.is_empty()).then(|| RequestSettings {
            general_labels: Some(filters.clone()),
            extra: Extra::new(),
        })
    }
}

/// DetectLabels `Settings.GeneralLabels`: which labels and categories the
/// answer may hold. Rekognition allows at most 100 entries of 50
/// characters in each list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct LabelFilters {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub label_inclusion_filters: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub label_exclusion_filters: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub label_category_inclusion_filters: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub label_category_exclusion_filters: Vec<String>,
}

/// Rekognition's limits on each filter list.
pub(crate) const MAX_FILTERS: usize = 100;
pub(crate) const MAX_FILTER_CHARS: usize = 50;

impl LabelFilters {
    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|(_, l)| l.is_empty())
    }

    /// Each list with the name of the option that sets it.
    fn lists(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("include-labels", &self.label_inclusion_filters),
            ("exclude-labels", &self.label_exclusion_filters),
            ("include-categories", &self.label_category_inclusion_filters),
            ("exclude-categories", &self.label_category_exclusion_filters),
        ]
    }

    /// Rekognition's limits, checked before any paid call: at most 100
    /// non-empty names of at most 50 characters, no control characters.
    pub fn validate(&self) -> Result<(), String> {
        for (what, list) in self.lists() {
            if list.len() > MAX_FILTERS {
                return Err(format!(
                    "{what}: {} names, Rekognition takes at most {MAX_FILTERS}",
                    list.len()
                ));
            }
            for name in list {
                if name.trim().is_empty() || name.chars().any(char::is_control) {
                    return Err(format!("{what}: {name:?} is not a label or category name"));
                }
                if name.chars().count() > MAX_FILTER_CHARS {
                    return Err(format!(
                        "{what}: {name:?} is over Rekognition's {MAX_FILTER_CHARS} characters"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The same filters whatever the order or case of the names: what the
    /// "same request" comparison looks at.
    pub(crate) fn normalized(&self) -> LabelFilters {
        let norm = |l: &Vec<String>| {
            let mut v: Vec<String> = l.iter().map(|n| n.trim().to_lowercase()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        LabelFilters {
            label_inclusion_filters: norm(&self.label_inclusion_filters),
            label_exclusion_filters: norm(&self.label_exclusion_filters),
            label_category_inclusion_filters: norm(&self.label_category_inclusion_filters),
            label_category_exclusion_filters: norm(&self.label_category_exclusion_filters),
        }
    }

    /// Applies the filters to labels a detector returned without them (the
    /// local model): inclusion keeps only the names (or categories) listed,
    /// exclusion drops them; names compare case-insensitively.
    pub fn apply(&self, labels: &mut Vec<Label>) {
        labels.retain(|l| self.keeps(&l.name, &l.categories));
    }

    /// [`apply`](Self::apply) for candidates, which have no categories: a
    /// name the filters would drop as a label is not offered either.
    pub(crate) fn apply_to_candidates(&self, candidates: &mut Vec<Candidate>) {
        candidates.retain(|c| self.keeps(&c.name, &[]));
    }

    fn keeps(&self, name: &str, categories: &[NameRef]) -> bool {
        let has = |list: &[String], name: &str| list.iter().any(|n| n.eq_ignore_ascii_case(name));
        let in_category = |list: &[String]| categories.iter().any(|c| has(list, &c.name));
        (self.label_inclusion_filters.is_empty() || has(&self.label_inclusion_filters, name))
            && !has(&self.label_exclusion_filters, name)
            && (self.label_category_inclusion_filters.is_empty()
                || in_category(&self.label_category_inclusion_filters))
            && !in_category(&self.label_category_exclusion_filters)
    }
}

// ---------------------------------------------------------------------------
// Image properties

/// The key of DetectLabels' `ImageProperties` in a document.
pub const IMAGE_PROPERTIES: &str = "ImageProperties";

/// DetectLabels `ImageProperties`: image quality, dominant colours, and
/// the same for the foreground and background. Kept in the document as the
/// API returned it (every field, known or not); this type is the typed
/// view imgtag writes and reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ImageProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<ImageQuality>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dominant_colors: Vec<DominantColor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreground: Option<ImageRegion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<ImageRegion>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Quality`: each 0-100, higher is brighter, sharper, more contrasted.
/// Foreground and background carry Brightness and Sharpness only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ImageQuality {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharpness: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<f32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Foreground` / `Background`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRegion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<ImageQuality>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dominant_colors: Vec<DominantColor>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One of `DominantColors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DominantColor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub red: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex_code: Option<String>,
    #[serde(rename = "CSSColor", default, skip_serializing_if = "Option::is_none")]
    pub css_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simplified_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_percent: Option<f32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The metadata document. Unknown fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetadataDoc {
    pub labels: Vec<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_model_version: Option<String>,
    #[serde(rename = "ImgTag", default, skip_serializing_if = "Option::is_none")]
    pub imgtag: Option<ImgTagInfo>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl MetadataDoc {
    /// The label with the highest confidence.
    pub fn best_label(&self) -> Option<&Label> {
        self.labels
            .iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    }

    pub fn error(&self) -> Option<&ErrorInfo> {
        self.imgtag.as_ref().and_then(|t| t.error.as_ref())
    }

    pub fn review(&self) -> Option<&Review> {
        self.imgtag.as_ref().and_then(|t| t.review.as_ref())
    }

    /// `ImageProperties`, when the document has them in a shape imgtag
    /// reads (anything else stays in the document untouched, and reads as
    /// `None` here).
    pub fn image_properties(&self) -> Option<ImageProperties> {
        serde_json::from_value(self.extra.get(IMAGE_PROPERTIES)?.clone()).ok()
    }

    /// Sets (or, with `None`, removes) `ImageProperties`.
    pub(crate) fn set_image_properties(&mut self, properties: Option<&ImageProperties>) {
        match properties.and_then(json_value) {
            Some(v) => self.extra.insert(IMAGE_PROPERTIES.into(), v),
            None => self.extra.remove(IMAGE_PROPERTIES),
        };
    }

    /// Serialises the document: the one writer every path uses.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("metadata documents always serialise");
        out.push(b'\n');
        out
    }
}

/// A value as JSON, its `f32` fields written as their shortest decimal
/// (`46.85`, not the `46.849998474121094` a direct `to_value` gives by
/// widening to `f64`), like every other number in the document.
pub(crate) fn json_value<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::from_str(&serde_json::to_string(value).ok()?).ok()
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// The reader

/// Which of the accepted shapes a document had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// The full imgtag document, with the `ImgTag` block.
    ImgTag,
    /// A full DetectLabels response (`LabelModelVersion` and friends).
    DetectLabels,
    /// The seed's `{"Labels":[{"Name","Confidence"}]}`.
    Seed,
    /// A bare array of labels.
    BareArray,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMetadata {
    pub doc: MetadataDoc,
    pub shape: Shape,
}

/// Why a metadata object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed metadata: {reason}")]
pub struct Malformed {
    pub reason: String,
}

impl Malformed {
    fn new(reason: impl Into<String>) -> Self {
        Malformed {
            reason: reason.into(),
        }
    }
}

/// Reads a metadata object in any accepted shape. Never panics: anything
/// that is not one of the shapes is `Malformed` with a reason.
pub fn parse_metadata(bytes: &[u8]) -> Result<ParsedMetadata, Malformed> {
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(Malformed::new(format!(
            "{} bytes, over the {} byte limit for metadata",
            bytes.len(),
            MAX_METADATA_BYTES
        )));
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(Malformed::new("empty document"));
    }
    // serde_json caps nesting at 128 levels, so deeply nested input is an
    // error here rather than a stack overflow.
    let value: Value =
        serde_json::from_slice(text).map_err(|e| Malformed::new(format!("not JSON: {e}")))?;
    match value {
        Value::Array(items) => Ok(ParsedMetadata {
            doc: MetadataDoc {
                labels: parse_labels(items)?,
                label_model_version: None,
                imgtag: None,
                extra: Extra::new(),
            },
            shape: Shape::BareArray,
        }),
        Value::Object(mut map) => {
            let labels = match map.remove("Labels") {
                Some(Value::Array(items)) => parse_labels(items)?,
                Some(other) => {
                    return Err(Malformed::new(format!(
                        "\"Labels\" is {}, not an array",
                        kind_of(&other)
                    )));
                }
                None => return Err(Malformed::new("no \"Labels\" field")),
            };
            let label_model_version = match map.remove("LabelModelVersion") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(other) => {
                    return Err(Malformed::new(format!(
                        "\"LabelModelVersion\" is {}, not a string",
                        kind_of(&other)
                    )));
                }
            };
            let imgtag = match map.remove("ImgTag") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    serde_json::from_value::<ImgTagInfo>(v)
                        .map_err(|e| Malformed::new(format!("\"ImgTag\": {e}")))?,
                ),
            };
            let shape = if imgtag.is_some() {
                Shape::ImgTag
            } else if label_model_version.is_some()
                || map.contains_key("OrientationCorrection")
                || map.contains_key("ImageProperties")
            {
                Shape::DetectLabels
            } else {
                Shape::Seed
            };
            Ok(ParsedMetadata {
                doc: MetadataDoc {
                    labels,
                    label_model_version,
                    imgtag,
                    extra: map,
                },
                shape,
            })
        }
        other => Err(Malformed::new(format!(
            "top level is {}, not an object or array",
            kind_of(&other)
        ))),
    }
}

fn parse_labels(items: Vec<Value>) -> Result<Vec<Label>, Malformed> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let label: Label = serde_json::from_value(item)
                .map_err(|e| Malformed::new(format!("Labels[{i}]: {e}")))?;
            if !(0.0..=100.0).contains(&label.confidence) {
                return Err(Malformed::new(format!(
                    "Labels[{i}]: confidence {} is outside 0-100",
                    label.confidence
                )));
            }
            if label.name.trim().is_empty() {
                return Err(Malformed::new(format!("Labels[{i}]: empty name")));
            }
            Ok(label)
        })
        .collect()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Key mapping

/// How a metadata key was matched to its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// `metadata/<rest>.json`, the key imgtag writes.
    Canonical,
    /// `metadata/<rest without extension>.json`.
    Stem,
    /// `metadata/<file name>.json`, directories dropped.
    Flat,
    /// `metadata/<file name without extension>.json`.
    FlatStem,
}

/// The bucket layout: where images and metadata live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    uploads: String,
    metadata: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            uploads: Layout::UPLOADS.into(),
            metadata: Layout::METADATA.into(),
        }
    }
}

impl Layout {
    /// The prefixes when none are configured (docs/format.md).
    pub(crate) const UPLOADS: &str = "uploads/";
    pub(crate) const METADATA: &str = "metadata/";

    /// Prefixes get a trailing `/` if they lack one; they must not overlap,
    /// or writing metadata could trigger tagging of the metadata itself.
    pub fn new(uploads: &str, metadata: &str) -> Result<Self, ContractError> {
        let norm = |p: &str| -> Result<String, ContractError> {
            let p = p.trim_start_matches('/');
            if p.is_empty() {
                return Err(ContractError::BadPrefix(p.into(), "must not be empty"));
            }
            if p.chars().any(char::is_control) {
                return Err(ContractError::BadPrefix(
                    p.into(),
                    "must not contain control characters",
                ));
            }
            Ok(if p.ends_with('/') {
                p.to_string()
            } else {
                format!("{p}/")
            })
        };
        let uploads = norm(uploads)?;
        let metadata = norm(metadata)?;
        if uploads.starts_with(&metadata) || metadata.starts_with(&uploads) {
            return Err(ContractError::OverlappingPrefixes { uploads, metadata });
        }
        Ok(Layout { uploads, metadata })
    }

    pub fn uploads_prefix(&self) -> &str {
        &self.uploads
    }

    pub fn metadata_prefix(&self) -> &str {
        &self.metadata
    }

    /// The part of an image key after the uploads prefix, or `None` if the
    /// key is not an image key (outside uploads/, or a folder placeholder).
    pub fn image_rest<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.uploads.as_str())?;
        if rest.is_empty() || is_folder_placeholder(key) {
            return None;
        }
        Some(rest)
    }

    /// The part of a metadata key between the prefix and `.json`.
    pub fn metadata_rest<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.metadata.as_str())?;
        let rest = rest.strip_suffix(".json")?;
        (!rest.is_empty()).then_some(rest)
    }

    /// The canonical metadata key for an image key.
    pub fn metadata_key(&self, image_key: &str) -> Result<String, ContractError> {
        let rest = self
            .image_rest(image_key)
            .ok_or_else(|| ContractError::NotAnUpload {
                prefix: self.uploads.clone(),
            })?;
        let key = format!("{}{rest}.json", self.metadata);
        if key.len() > MAX_KEY_BYTES {
            return Err(ContractError::KeyTooLong { len: key.len() });
        }
        Ok(key)
    }

    /// The image key a canonical metadata rest maps back to.
    pub fn image_key(&self, rest: &str) -> String {
        format!("{}{rest}", self.uploads)
    }

    /// The metadata keys an image may be paired with, best first: the
    /// canonical key, then the legacy ones (empty for a non-image key).
    pub fn metadata_candidates(&self, image_key: &str) -> Vec<(KeyKind, String)> {
        let Some(rest) = self.image_rest(image_key) else {
            return Vec::new();
        };
        Layout::candidate_rests(rest)
            .map(|(kind, r)| (kind, format!("{}{r}.json", self.metadata)))
            .collect()
    }

    /// Whether the document at `metadata_key` is another image's than
    /// `image_key`: it names its image in `ImgTag.Source.Key`, whatever key
    /// it sits at (canonical or legacy), so no path reads it as this
    /// image's or writes it for this image. The one rule: the catalog, the
    /// pipeline's writers and the index all ask it (docs/format.md, "Who
    /// owns a document"). A `Source.Key` that could not own this key (the
    /// document was copied or moved with its prefix) says nothing, and the
    /// image that pairs with it keeps it.
    pub(crate) fn owned_by_other(
        &self,
        metadata_key: &str,
        source_key: Option<&str>,
        image_key: &str,
    ) -> bool {
        source_key.is_some_and(|s| s != image_key && self.key_kind(s, metadata_key).is_some())
    }

    /// How `metadata_key` pairs with `image_key`, if it is one of its
    /// candidates.
    pub fn key_kind(&self, image_key: &str, metadata_key: &str) -> Option<KeyKind> {
        let rest = self.metadata_rest(metadata_key)?;
        Layout::candidate_rests(self.image_rest(image_key)?)
            .find(|(_, r)| *r == rest)
            .map(|(k, _)| k)
    }

    /// The metadata rests an image may be paired with, best first. All are
    /// slices of `rest`, so looking them up allocates nothing.
    pub(crate) fn candidate_rests(rest: &str) -> impl Iterator<Item = (KeyKind, &str)> {
        let file = rest.rsplit_once('/').map_or(rest, |(_, f)| f);
        let stem = |s: &'_ str| -> Option<usize> {
            // A leading dot is a hidden file, not an extension.
            let (base, _) = s.rsplit_once('.')?;
            let base_name = base.rsplit_once('/').map_or(base, |(_, f)| f);
            (!base_name.is_empty()).then_some(base.len())
        };
        let rest_stem = stem(rest).map(|n| &rest[..n]);
        let file_stem = stem(file).map(|n| &file[..n]);
        let mut out: [(KeyKind, Option<&str>); 4] = [
            (KeyKind::Canonical, Some(rest)),
            (KeyKind::Stem, rest_stem),
            (KeyKind::Flat, (file.len() != rest.len()).then_some(file)),
            (
                KeyKind::FlatStem,
                file_stem.filter(|_| file.len() != rest.len()),
            ),
        ];
        // Drop duplicates so each candidate is looked up once.
        for i in 1..out.len() {
            if out[..i].iter().any(|(_, p)| p.is_some() && *p == out[i].1) {
                out[i].1 = None;
            }
        }
        out.into_iter().filter_map(|(k, r)| r.map(|r| (k, r)))
    }
}

/// Decodes a form-encoded key, as S3 event notifications and
/// `encoding-type=url` listings deliver them: `+` is a space and is decoded
/// before the percent escapes (`%2B` is a literal `+`). `None` when the
/// escapes are not UTF-8.
pub fn decode_form_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Keys ending in `/` are the "folder" placeholders consoles create: never
/// images, never sent to a detector.
pub(crate) fn is_folder_placeholder(key: &str) -> bool {
    key.ends_with('/')
}

/// Strips quotes and a weak-validator prefix, so `"abc"`, `abc` and
/// `W/"abc"` compare equal: stores disagree about quoting.
pub fn normalize_etag(etag: &str) -> &str {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(extra: &str) -> ImgTagInfo {
        let json = format!(r#"{{"SchemaVersion":1,"Source":{{"Bucket":"b","Key":"k"}}{extra}}}"#);
        serde_json::from_str(&json).unwrap()
    }

    /// No lines write no field, so a photo's document is byte-for-byte
    /// what it was; lines round-trip, cleaned; a second set replaces.
    #[test]
    fn text_is_omitted_when_empty_and_round_trips() {
        let mut t = info("");
        let before = serde_json::to_string(&t).unwrap();
        t.set_text(Vec::new());
        assert_eq!(serde_json::to_string(&t).unwrap(), before);
        let line = |s: &str| TextLine {
            text: s.into(),
            confidence: 97.5,
            bounding_box: Some(BoundingBox::default()),
        };
        t.set_text(vec![line("  INVOICE\n 2024 "), line(" \u{202e} ")]);
        assert_eq!(t.text().lines, [line("INVOICE 2024")]);
        assert_eq!(t.text().joined(), "INVOICE 2024");
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""Text":{"Lines":[{"Text":"INVOICE 2024","Confidence":97.5,"#));
        t.set_text(Vec::new());
        assert_eq!(serde_json::to_string(&t).unwrap(), before);
    }

    /// Another shape reads as no text; a bad line is skipped; a NaN or
    /// out-of-range confidence and a non-finite box are not kept as such.
    #[test]
    fn foreign_text_reads_as_none_or_its_valid_lines() {
        for other in [
            r#""words""#,
            "[]",
            "5",
            r#"{"Lines":"x"}"#,
            r#"{"lines":[]}"#,
        ] {
            assert!(
                info(&format!(r#","Text":{other}"#)).text().lines.is_empty(),
                "{other}"
            );
        }
        let t = info(
            r#","Text":{"Lines":[{"Text":1},{"Text":"a","Confidence":"high"},
            {"Text":"ok","Confidence":250},{"Text":"box","Confidence":9,
            "BoundingBox":{"Width":1e39}}]}"#,
        );
        let lines = t.text().lines;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].confidence, 100.0);
        assert_eq!(lines[1].bounding_box, None);
        assert_eq!(
            clean_line(&"é".repeat(MAX_LINE_CHARS + 5)).chars().count(),
            MAX_LINE_CHARS
        );
    }

    #[test]
    fn candidates_cover_legacy_shapes() {
        let c: Vec<_> = Layout::candidate_rests("2024/cat.jpg").collect();
        assert_eq!(
            c,
            vec![
                (KeyKind::Canonical, "2024/cat.jpg"),
                (KeyKind::Stem, "2024/cat"),
                (KeyKind::Flat, "cat.jpg"),
                (KeyKind::FlatStem, "cat"),
            ]
        );
        let c: Vec<_> = Layout::candidate_rests("cat.jpg").collect();
        assert_eq!(
            c,
            vec![(KeyKind::Canonical, "cat.jpg"), (KeyKind::Stem, "cat")]
        );
        let c: Vec<_> = Layout::candidate_rests("dir.v2/.hidden").collect();
        assert_eq!(
            c,
            vec![
                (KeyKind::Canonical, "dir.v2/.hidden"),
                (KeyKind::Flat, ".hidden")
            ]
        );
    }

    #[test]
    fn canonical_key_keeps_extension() {
        let l = Layout::default();
        assert_eq!(
            l.metadata_key("uploads/2024/cat.jpg").unwrap(),
            "metadata/2024/cat.jpg.json"
        );
        assert_ne!(
            l.metadata_key("uploads/a.jpg").unwrap(),
            l.metadata_key("uploads/a.png").unwrap()
        );
        assert!(l.metadata_key("metadata/x.jpg").is_err());
        assert!(l.metadata_key("uploads/").is_err());
        let long = format!("uploads/{}", "a".repeat(1015));
        assert_eq!(long.len(), 1023);
        assert!(matches!(
            l.metadata_key(&long),
            Err(ContractError::KeyTooLong { .. })
        ));
    }

    #[test]
    fn layout_rejects_overlap() {
        assert!(Layout::new("uploads", "uploads/meta").is_err());
        assert!(Layout::new("", "metadata").is_err());
        let l = Layout::new("in", "out/").unwrap();
        assert_eq!(l.uploads_prefix(), "in/");
        assert_eq!(l.metadata_rest("out/a.jpg.json"), Some("a.jpg"));
        assert_eq!(l.metadata_rest("out/a.jpg"), None);
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }
}
