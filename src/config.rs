//! Options shared by every front end: command-line flags, with the same
//! keys readable from a TOML config file in the platform config dir.
//! Flags win over the file, the file over built-in defaults.

use crate::detection::engine::EngineChoice;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::contract::{
    ContractError, DEFAULT_MIN_CONFIDENCE, DEFAULT_REVIEW_BELOW, LabelFilters, Layout,
};
use crate::detection::Features;
use crate::detection::text::TextDetection;
use crate::status::ReviewRule;
use crate::storage::{BucketSpec, S3Options};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no bucket given: pass --bucket (an S3 bucket name or a local folder such as ./photos)"
    )]
    NoBucket,
    #[error("--bucket: {0}")]
    Bucket(String),
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Layout(#[from] ContractError),
    #[error("{0}")]
    Invalid(String),
}

pub use crate::detection::DetectorKind;

/// imgtag-tui's colours: for a dark or a light terminal background, or
/// `auto`: ask the terminal (falls back to dark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThemeChoice {
    #[default]
    Auto,
    Dark,
    Light,
}

/// `auto`, `dark` or `light`.
pub fn parse_theme(s: &str) -> Result<ThemeChoice, String> {
    match s.trim() {
        "auto" => Ok(ThemeChoice::Auto),
        "dark" => Ok(ThemeChoice::Dark),
        "light" => Ok(ThemeChoice::Light),
        _ => Err(format!("{s:?} is not auto, dark or light")),
    }
}

/// One `--review-below`: the default threshold, or one label's.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewBelow {
    Default(f32),
    Label(String, f32),
}

/// Parses `--review-below 70` or `--review-below Person=90`.
pub fn parse_review_below(s: &str) -> Result<ReviewBelow, String> {
    match s.rsplit_once('=') {
        Some((name, n)) if !name.trim().is_empty() => Ok(ReviewBelow::Label(
            name.trim().to_string(),
            parse_confidence(n)?,
        )),
        Some(_) => Err(format!("{s:?}: write LABEL=N, as Person=90")),
        None => parse_confidence(s).map(ReviewBelow::Default),
    }
}

pub fn parse_confidence(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0-100"))
    }
}

/// `MaxLabels`: at least one label (DetectLabels refuses 0).
pub fn parse_max_labels(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// `rekognition` or `local`.
pub fn parse_detector(s: &str) -> Result<DetectorKind, String> {
    match s.trim() {
        "rekognition" => Ok(DetectorKind::Rekognition),
        "local" => Ok(DetectorKind::Local),
        _ => Err(format!("{s:?} is not rekognition or local")),
    }
}

/// `true`/`false` (or `1`/`0`), as environment variables spell a switch.
pub(crate) fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// `--text-detection`, `text-detection`: auto, always or never.
pub fn parse_text_detection(s: &str) -> Result<TextDetection, String> {
    s.parse()
}

/// A positive, finite number of calls a second.
pub fn parse_tps(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 100_000.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a rate above 0 (calls a second)"))
    }
}

/// What a command line sets over the config file and the defaults: the
/// options every imgtag command takes. The binaries parse them (their
/// `CommonArgs`, with the help texts); the library only resolves them.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// The bucket: an S3 bucket name (`my-bucket`, `s3://my-bucket`) or a
    /// local folder used as a bucket (`./photos`, `/data/photos`,
    /// `file:///data/photos`). S3 names never contain `/`, so a path is
    /// never mistaken for one.
    pub bucket: Option<String>,

    /// Use the demo bucket: a local folder in the platform data dir made
    /// from the sample photos, with the local detector. No cloud account.
    pub demo: bool,

    /// Work without the persistent index: list both prefixes and read
    /// every document afresh, and keep nothing (the index lives in the
    /// platform cache dir, or IMGTAG_INDEX_DIR).
    pub no_index: bool,

    /// AWS profile from ~/.aws/config (SSO profiles included). Default: the
    /// SDK's credential chain (environment, profile, SSO, instance role).
    pub profile: Option<String>,

    /// AWS region of the bucket (default: from the profile or environment,
    /// else us-east-1).
    pub region: Option<String>,

    /// S3 endpoint for MinIO, LocalStack or another S3-compatible store,
    /// e.g. http://127.0.0.1:9000.
    pub endpoint_url: Option<String>,

    /// Path-style addressing (http://host/bucket/key), needed by most
    /// S3-compatible stores.
    pub path_style: bool,

    /// Do not ask S3 to URL-encode keys in listings. Only for S3-compatible
    /// servers that claim to encode but do not (keys with `+` or `%` come
    /// out wrong there).
    pub no_url_encoded_listing: bool,

    /// Prefix under which images live.
    pub uploads_prefix: Option<String>,

    /// Prefix under which metadata JSON lives.
    pub metadata_prefix: Option<String>,

    /// Label detector: rekognition or local (default: rekognition for S3,
    /// local for a folder).
    pub detector: Option<DetectorKind>,

    /// Labels below this confidence (0-100) are dropped when tagging
    /// (default 55, as Rekognition).
    pub min_confidence: Option<f32>,

    /// Keep at most this many labels per image (default: no limit).
    pub max_labels: Option<u32>,

    /// An image whose headline label is below this confidence needs
    /// review (default 70). `LABEL=N` sets one label's own threshold
    /// (repeatable: `--review-below Person=90`); a headline without one
    /// takes its nearest ancestor's, else the default.
    pub review_below: Vec<ReviewBelow>,

    /// DetectLabels features, comma-separated: GENERAL_LABELS (always
    /// asked) and IMAGE_PROPERTIES (brightness, sharpness, contrast and
    /// dominant colours, stored under ImageProperties; Rekognition bills it
    /// per image on top of the labels, the local model measures quality
    /// itself at no cost). Default: GENERAL_LABELS.
    pub features: Option<Features>,

    /// Only these labels may be returned (Rekognition's
    /// LabelInclusionFilters; comma-separated or repeated; at most 100).
    pub include_labels: Vec<String>,

    /// These labels are never returned (LabelExclusionFilters).
    pub exclude_labels: Vec<String>,

    /// Only labels in these categories may be returned
    /// (LabelCategoryInclusionFilters, e.g. "Animals and Pets").
    pub include_categories: Vec<String>,

    /// Labels in these categories are never returned
    /// (LabelCategoryExclusionFilters).
    pub exclude_categories: Vec<String>,

    /// An image whose ImageProperties.Quality.Brightness is below this
    /// (0-100) needs review (default: off; images without quality numbers
    /// are not judged).
    pub review_min_brightness: Option<f32>,

    /// An image whose ImageProperties.Quality.Sharpness is below this
    /// (0-100) needs review (default: off).
    pub review_min_sharpness: Option<f32>,

    /// Rekognition calls a second at most, across every image being tagged
    /// (default 5, the lowest default quota of any region): set it to your
    /// account's DetectLabels quota, or below it to leave room for other
    /// callers.
    pub rekognition_tps: Option<f64>,

    /// The local model's engine: auto (onnxruntime when this build has it
    /// and its library loads, else tract), tract or onnxruntime.
    pub engine: Option<EngineChoice>,

    pub text_detection: Option<TextDetection>,

    /// Config file (default: config.toml in the platform config dir, e.g.
    /// ~/.config/imgtag/config.toml on Linux).
    pub config: Option<PathBuf>,
}

/// The config file: the same keys as the flags, kebab-case.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub bucket: Option<String>,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub path_style: Option<bool>,
    pub no_url_encoded_listing: Option<bool>,
    pub uploads_prefix: Option<String>,
    pub metadata_prefix: Option<String>,
    pub detector: Option<DetectorKind>,
    pub min_confidence: Option<f32>,
    pub max_labels: Option<u32>,
    pub review_below: Option<f32>,
    pub rekognition_tps: Option<f64>,
    pub engine: Option<String>,
    /// `text-detection = "auto"`, `"always"` or `"never"`.
    pub text_detection: Option<String>,
    /// `features = ["GENERAL_LABELS", "IMAGE_PROPERTIES"]`.
    pub features: Option<Vec<String>>,
    pub include_labels: Option<Vec<String>>,
    pub exclude_labels: Option<Vec<String>>,
    pub include_categories: Option<Vec<String>>,
    pub exclude_categories: Option<Vec<String>>,
    pub review_min_brightness: Option<f32>,
    pub review_min_sharpness: Option<f32>,
    /// Key bindings of imgtag-tui.
    pub keys: Option<toml::Table>,
    /// imgtag-tui's theme: auto, dark or light.
    pub theme: Option<ThemeChoice>,
    /// Per-label review thresholds: `[review]` with `Person = 90`.
    pub review: Option<std::collections::BTreeMap<String, f32>>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The platform config file path.
pub(crate) fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "imgtag").map(|d| d.config_dir().join("config.toml"))
}

/// Everything resolved: what the commands work with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bucket is the demo bucket, made on first use.
    pub demo: bool,
    pub bucket: BucketSpec,
    pub s3: S3Options,
    pub layout: Layout,
    pub detector: DetectorKind,
    pub min_confidence: f32,
    pub max_labels: Option<u32>,
    pub review_below: f32,
    /// Per-label review thresholds (the file's `[review]`, then the
    /// flags'), by name.
    pub review_per_label: Vec<(String, f32)>,
    /// Rekognition calls a second, at most (client-side pacing).
    pub rekognition_tps: f64,
    /// The local model's engine.
    pub engine: EngineChoice,
    /// When the local model runs its text model.
    pub text_detection: TextDetection,
    /// DetectLabels `Features`.
    pub features: Features,
    /// DetectLabels `Settings.GeneralLabels`.
    pub filters: LabelFilters,
    /// Quality below which an image needs review (off when `None`).
    pub review_min_brightness: Option<f32>,
    pub review_min_sharpness: Option<f32>,
    pub keys: toml::Table,
    /// imgtag-tui's theme from the config file (its `--theme` wins).
    pub theme: Option<ThemeChoice>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// `--no-index`.
    pub no_index: bool,
}

impl Flags {
    /// Merges flags over the config file over defaults.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let (file, config_file) = match &self.config {
            Some(p) => (FileConfig::load(p)?, Some(p.clone())),
            None => match default_config_path().filter(|p| p.is_file()) {
                Some(p) => (FileConfig::load(&p)?, Some(p)),
                None => (FileConfig::default(), None),
            },
        };
        let (features, filters) = self.request(&file)?;
        let (review_below, review_per_label) = self.review_thresholds(&file)?;
        let text_detection = self.text_detection(&file)?;
        let bucket = if self.demo {
            BucketSpec::Local(
                crate::demo::default_dir().map_err(|e| ConfigError::Invalid(e.to_string()))?,
            )
        } else {
            let bucket = self
                .bucket
                .clone()
                .or(file.bucket)
                .ok_or(ConfigError::NoBucket)?;
            BucketSpec::parse(&bucket).map_err(ConfigError::Bucket)?
        };
        let layout = Layout::new(
            self.uploads_prefix
                .as_deref()
                .or(file.uploads_prefix.as_deref())
                .unwrap_or(Layout::UPLOADS),
            self.metadata_prefix
                .as_deref()
                .or(file.metadata_prefix.as_deref())
                .unwrap_or(Layout::METADATA),
        )?;
        let detector = self.detector.or(file.detector).unwrap_or(match bucket {
            BucketSpec::S3(_) => DetectorKind::Rekognition,
            BucketSpec::Local(_) => DetectorKind::Local,
        });
        let check = |what: &str, v: Option<f32>| -> Result<Option<f32>, ConfigError> {
            match v {
                Some(x) if !(0.0..=100.0).contains(&x) => {
                    Err(ConfigError::Invalid(format!("{what} {x} is outside 0-100")))
                }
                v => Ok(v),
            }
        };
        let min_confidence = self
            .min_confidence
            .or(check("min-confidence", file.min_confidence)?)
            .unwrap_or(DEFAULT_MIN_CONFIDENCE);
        let review_min_brightness = self
            .review_min_brightness
            .or(check("review-min-brightness", file.review_min_brightness)?);
        let review_min_sharpness = self
            .review_min_sharpness
            .or(check("review-min-sharpness", file.review_min_sharpness)?);
        let rekognition_tps = match (self.rekognition_tps, file.rekognition_tps) {
            (Some(v), _) => v,
            (None, Some(v)) => parse_tps(&v.to_string())
                .map_err(|e| ConfigError::Invalid(format!("rekognition-tps: {e}")))?,
            (None, None) => crate::detection::DEFAULT_REKOGNITION_TPS,
        };
        let engine = match (self.engine, &file.engine) {
            (Some(e), _) => e,
            (None, Some(e)) => e
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("engine: {e}")))?,
            (None, None) => EngineChoice::Auto,
        };
        Ok(Settings {
            demo: self.demo,
            bucket,
            s3: S3Options {
                profile: self.profile.clone().or(file.profile),
                region: self.region.clone().or(file.region),
                endpoint_url: self.endpoint_url.clone().or(file.endpoint_url),
                path_style: self.path_style || file.path_style.unwrap_or(false),
                no_url_encoded_listing: self.no_url_encoded_listing
                    || file.no_url_encoded_listing.unwrap_or(false),
            },
            layout,
            detector,
            min_confidence,
            max_labels: self.max_labels.or(file.max_labels),
            review_below,
            review_per_label,
            rekognition_tps,
            engine,
            text_detection,
            features,
            filters,
            review_min_brightness,
            review_min_sharpness,
            keys: file.keys.unwrap_or_default(),
            theme: file.theme,
            config_file,
            no_index: self.no_index,
        })
    }

    /// `--text-detection`, else the file's `text-detection`, else auto.
    fn text_detection(&self, file: &FileConfig) -> Result<TextDetection, ConfigError> {
        match (self.text_detection, &file.text_detection) {
            (Some(t), _) => Ok(t),
            (None, Some(t)) => parse_text_detection(t)
                .map_err(|e| ConfigError::Invalid(format!("text-detection: {e}"))),
            (None, None) => Ok(TextDetection::Auto),
        }
    }

    /// The default review threshold (the last `--review-below N`, else the
    /// file's `review-below`, else 70) and the per-label ones: the file's
    /// `[review]` with the flags' `LABEL=N` over them (a name given twice
    /// keeps the flag's value).
    fn review_thresholds(
        &self,
        file: &FileConfig,
    ) -> Result<(f32, Vec<(String, f32)>), ConfigError> {
        let flag_default = self.review_below.iter().rev().find_map(|r| match r {
            ReviewBelow::Default(v) => Some(*v),
            ReviewBelow::Label(..) => None,
        });
        let default = match (flag_default, file.review_below) {
            (Some(v), _) => v,
            (None, Some(v)) if (0.0..=100.0).contains(&v) => v,
            (None, Some(v)) => {
                return Err(ConfigError::Invalid(format!(
                    "review-below {v} is outside 0-100"
                )));
            }
            (None, None) => DEFAULT_REVIEW_BELOW,
        };
        let mut out: Vec<(String, f32)> = Vec::new();
        for (name, &v) in file.review.iter().flatten() {
            if !(0.0..=100.0).contains(&v) || name.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "[review] {name:?} = {v}: a label name and a threshold in 0-100"
                )));
            }
            out.push((name.clone(), v));
        }
        for r in &self.review_below {
            if let ReviewBelow::Label(name, v) = r {
                out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                out.push((name.clone(), *v));
            }
        }
        Ok((default, out))
    }

    /// DetectLabels `Features` and `Settings.GeneralLabels`: the flags, else
    /// the file's keys. A filter list given as flags replaces the file's.
    fn request(&self, file: &FileConfig) -> Result<(Features, LabelFilters), ConfigError> {
        let features = match (self.features, &file.features) {
            (Some(f), _) => f,
            (None, Some(names)) => Features::from_names(names)
                .map_err(|e| ConfigError::Invalid(format!("features: {e}")))?,
            (None, None) => Features::default(),
        };
        let list = |flag: &Vec<String>, file: &Option<Vec<String>>| -> Vec<String> {
            let v = if flag.is_empty() {
                file.clone().unwrap_or_default()
            } else {
                flag.clone()
            };
            v.into_iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        };
        let filters = LabelFilters {
            label_inclusion_filters: list(&self.include_labels, &file.include_labels),
            label_exclusion_filters: list(&self.exclude_labels, &file.exclude_labels),
            label_category_inclusion_filters: list(
                &self.include_categories,
                &file.include_categories,
            ),
            label_category_exclusion_filters: list(
                &self.exclude_categories,
                &file.exclude_categories,
            ),
        };
        filters.validate().map_err(ConfigError::Invalid)?;
        Ok((features, filters))
    }
}

#[cfg(feature = "index")]
/// An opened index, and a note for the user when it was rebuilt or
/// replaced for this run.
pub(crate) type OpenedIndex = (std::sync::Arc<crate::index::Index>, Option<String>);

impl Settings {
    /// The detector these settings name (`--detector`, `--engine`, the S3
    /// options, `--rekognition-tps`), `concurrency` calls at a time.
    pub async fn detector(
        &self,
        concurrency: usize,
    ) -> Result<crate::detection::DynDetector, crate::detection::DetectFailure> {
        crate::detection::build_paced(
            self.detector,
            &self.s3,
            concurrency,
            self.rekognition_tps,
            self.engine,
        )
        .await
    }
    /// When an image needs review: the headline threshold and the quality
    /// thresholds.
    pub fn review_rule(&self) -> ReviewRule {
        ReviewRule {
            below: self.review_below,
            per_label: crate::status::LabelThresholds::new(self.review_per_label.clone()),
            min_brightness: self.review_min_brightness,
            min_sharpness: self.review_min_sharpness,
        }
    }

    /// What the bucket's index belongs to: for S3, the endpoint `store`
    /// resolved when opened (the flag, the environment or a profile may
    /// set it), not only the flag.
    #[cfg(feature = "index")]
    pub(crate) fn index_spec(&self, store: &crate::storage::DynStore) -> crate::index::IndexSpec {
        match &self.bucket {
            BucketSpec::S3(name) => {
                crate::index::IndexSpec::new(store.endpoint(), name, &self.layout)
            }
            BucketSpec::Local(path) => {
                let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                crate::index::IndexSpec::new("file", &path.to_string_lossy(), &self.layout)
            }
        }
    }

    #[cfg(feature = "index")]
    /// Opens the index of `store` (the bucket the settings name, opened)
    /// unless `--no-index`; the message says when it was rebuilt or
    /// replaced for this run.
    pub(crate) fn open_index(
        &self,
        store: &crate::storage::DynStore,
    ) -> Result<Option<OpenedIndex>, crate::index::IndexError> {
        if self.no_index {
            return Ok(None);
        }
        let spec = self.index_spec(store);
        let Some(dir) = crate::index::default_dir() else {
            return Ok(None);
        };
        let (index, note) = crate::index::Index::open(&dir.join(spec.file_name()), &spec)?;
        Ok(Some((std::sync::Arc::new(index), note)))
    }

    /// Opens the store the settings name.
    pub async fn open_store(
        &self,
    ) -> Result<crate::storage::DynStore, crate::storage::StorageError> {
        Ok(match &self.bucket {
            BucketSpec::S3(name) => {
                std::sync::Arc::new(crate::storage::S3Store::connect(name, &self.s3).await)
            }
            BucketSpec::Local(path) => {
                if self.demo {
                    crate::demo::ensure(path).map_err(|e| crate::storage::StorageError::Other {
                        message: e.to_string(),
                    })?;
                }
                std::sync::Arc::new(crate::storage::LocalStore::open(path)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks the flags and the Lambda's variables share.
    #[test]
    fn shared_setting_checks() {
        assert_eq!(parse_max_labels(" 10 "), Ok(10));
        for bad in ["0", "-3", "ten", ""] {
            assert!(parse_max_labels(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_detector("local"), Ok(DetectorKind::Local));
        assert!(
            parse_detector("openai")
                .unwrap_err()
                .contains("rekognition or local")
        );
        assert_eq!(parse_switch("1"), Ok(true));
        assert_eq!(parse_switch("false"), Ok(false));
        assert!(parse_switch("yes").is_err());
        assert_eq!(parse_theme("light"), Ok(ThemeChoice::Light));
        assert!(parse_theme("blue").is_err());
    }

    /// `[review]` in the file, `--review-below` flags over it; the rule
    /// applies a headline's own threshold, else its nearest ancestor's
    /// (the document's parents, then the taxonomy's), else the default.
    #[test]
    fn per_label_review_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bucket = \"photos\"\nreview-below = 65\n[review]\nPerson = 80\nFeline = 60\n",
        )
        .unwrap();
        let args = Flags {
            config: Some(path.clone()),
            review_below: vec![
                parse_review_below("person=90").unwrap(),
                parse_review_below("75").unwrap(),
            ],
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.review_below, 75.0, "the flag's default wins");
        let rule = s.review_rule();
        assert_eq!(
            rule.threshold_for("Person", &[]),
            90.0,
            "the flag's Person wins"
        );
        assert_eq!(rule.threshold_for("feline", &[]), 60.0);
        // By the document's parents, then by the taxonomy (Cat < Feline).
        assert_eq!(rule.threshold_for("Tabby", &["Feline".into()]), 60.0);
        assert_eq!(rule.threshold_for("Cat", &[]), 60.0);
        assert_eq!(rule.threshold_for("Pizza", &[]), 75.0);
        for bad in ["=90", "Person=101", "Person=x", "x"] {
            assert!(parse_review_below(bad).is_err(), "{bad}");
        }
        std::fs::write(&path, "bucket = \"photos\"\n[review]\nPerson = 120\n").unwrap();
        let args = Flags {
            config: Some(path),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
    }

    #[test]
    fn flags_win_over_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bucket = \"from-file\"\nmin-confidence = 80\nregion = \"eu-west-1\"\ntheme = \"light\"\n[keys]\nquit = \"x\"\n",
        )
        .unwrap();
        let args = Flags {
            config: Some(path.clone()),
            region: Some("us-west-2".into()),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.bucket, BucketSpec::S3("from-file".into()));
        assert_eq!(s.min_confidence, 80.0);
        assert_eq!(s.s3.region.as_deref(), Some("us-west-2"));
        assert_eq!(s.detector, DetectorKind::Rekognition);
        assert_eq!(s.review_below, DEFAULT_REVIEW_BELOW);
        assert_eq!(s.keys["quit"].as_str(), Some("x"));
        assert_eq!(s.theme, Some(ThemeChoice::Light));
        assert_eq!(s.rekognition_tps, crate::detection::DEFAULT_REKOGNITION_TPS);

        let args = Flags {
            config: Some(path.clone()),
            bucket: Some("./here".into()),
            ..Default::default()
        };
        assert_eq!(args.resolve().unwrap().detector, DetectorKind::Local);

        std::fs::write(&path, "bucket = \"b\"\nmin-confidnce = 3\n").unwrap();
        let err = Flags {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("min-confidnce"), "{err}");

        // Pacing: the file's key, the flag over it, nonsense refused.
        std::fs::write(&path, "bucket = \"bkt\"\nrekognition-tps = 20\n").unwrap();
        let mut args = Flags {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(args.resolve().unwrap().rekognition_tps, 20.0);
        args.rekognition_tps = Some(2.5);
        assert_eq!(args.resolve().unwrap().rekognition_tps, 2.5);
        std::fs::write(&path, "bucket = \"bkt\"\nrekognition-tps = 0\n").unwrap();
        args.rekognition_tps = None;
        let err = args.resolve().unwrap_err();
        assert!(err.to_string().contains("rekognition-tps"), "{err}");
        assert!(parse_tps("-1").is_err() && parse_tps("nan").is_err());

        // Features, filters and quality thresholds: the file's keys, flags
        // over them, nonsense refused.
        std::fs::write(
            &path,
            "bucket = \"bkt\"\nfeatures = [\"GENERAL_LABELS\", \"IMAGE_PROPERTIES\"]\n\
             include-labels = [\"Cat\"]\nexclude-categories = [\"Weapons and Military\"]\n\
             review-min-sharpness = 30\n",
        )
        .unwrap();
        let mut args = Flags {
            config: Some(path.clone()),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.features, Features::ALL);
        assert_eq!(s.filters.label_inclusion_filters, ["Cat"]);
        assert_eq!(
            s.filters.label_category_exclusion_filters,
            ["Weapons and Military"]
        );
        let rule = s.review_rule();
        assert_eq!(
            (rule.min_sharpness, rule.min_brightness),
            (Some(30.0), None)
        );
        args.include_labels = vec!["Dog".into()];
        args.features = Some(Features::default());
        args.review_min_brightness = Some(20.0);
        let s = args.resolve().unwrap();
        assert_eq!(s.filters.label_inclusion_filters, ["Dog"]);
        assert_eq!(s.features, Features::default());
        assert_eq!(s.review_rule().min_brightness, Some(20.0));
        args.exclude_labels = vec!["x".repeat(51)];
        assert!(
            args.resolve()
                .unwrap_err()
                .to_string()
                .contains("exclude-labels")
        );
        std::fs::write(&path, "bucket = \"bkt\"\nfeatures = [\"FACES\"]\n").unwrap();
        let err = Flags {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("features"), "{err}");
        assert!(Features::parse_list("image-properties").is_err());
        assert_eq!(
            Features::parse_list("general_labels,IMAGE-PROPERTIES"),
            Ok(Features::ALL)
        );
        assert_eq!(parse_tps("0.5"), Ok(0.5));
    }

    #[test]
    fn text_detection_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "bucket = \"bkt\"\n").unwrap();
        let mut args = Flags {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(args.resolve().unwrap().text_detection, TextDetection::Auto);
        std::fs::write(&path, "bucket = \"bkt\"\ntext-detection = \"never\"\n").unwrap();
        let s = args.resolve().unwrap();
        assert_eq!(s.text_detection, TextDetection::Never);
        let opts = crate::pipeline::TagOptions::from_settings(&s, "imgtag");
        assert_eq!(opts.params().text_detection, TextDetection::Never);
        args.text_detection = Some(TextDetection::Always);
        assert_eq!(
            args.resolve().unwrap().text_detection,
            TextDetection::Always
        );
        std::fs::write(&path, "bucket = \"bkt\"\ntext-detection = \"often\"\n").unwrap();
        args.text_detection = None;
        let err = args.resolve().unwrap_err();
        assert!(err.to_string().contains("text-detection"), "{err}");

        assert_eq!(parse_text_detection("Always"), Ok(TextDetection::Always));
    }

    #[test]
    fn the_engine_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "bucket = \"bkt\"\nengine = \"tract\"\n").unwrap();
        let mut args = Flags {
            config: Some(path.clone()),
            ..Default::default()
        };
        let tract = EngineChoice::Exactly(crate::detection::engine::EngineKind::Tract);
        assert_eq!(args.resolve().unwrap().engine, tract);
        args.engine = Some(EngineChoice::Auto);
        assert_eq!(args.resolve().unwrap().engine, EngineChoice::Auto);
        std::fs::write(&path, "bucket = \"bkt\"\nengine = \"cuda\"\n").unwrap();
        args.engine = None;
        let err = args.resolve().unwrap_err();
        assert!(err.to_string().contains("engine"), "{err}");
    }
}
