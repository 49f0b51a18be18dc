//! The options every imgtag binary takes, as clap parses them: argument
//! parsing belongs to the binaries; the library resolves what they set
//! (`imgtag::config::Flags`). Included by `imgtag` and `imgtag-tui`.

use std::path::PathBuf;

use imgtag::config::{
    ConfigError, DetectorKind, Flags, ReviewBelow, Settings, parse_confidence, parse_detector,
    parse_max_labels, parse_review_below, parse_tps,
};
use imgtag::detection::Features;
use imgtag::detection::engine::EngineChoice;

/// The options every imgtag command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// The bucket: an S3 bucket name (`my-bucket`, `s3://my-bucket`) or a
    /// local folder used as a bucket (`./photos`, `/data/photos`,
    /// `file:///data/photos`). S3 names never contain `/`, so a path is
    /// never mistaken for one.
    #[arg(long, short = 'b', env = "IMGTAG_BUCKET", value_name = "BUCKET|PATH")]
    pub bucket: Option<String>,

    /// Use the demo bucket: a local folder in the platform data dir made
    /// from the sample photos, with the local detector. No cloud account.
    #[arg(long, conflicts_with = "bucket")]
    pub demo: bool,

    /// Work without the persistent index: list both prefixes and read
    /// every document afresh, and keep nothing (the index lives in the
    /// platform cache dir, or IMGTAG_INDEX_DIR).
    #[arg(long)]
    pub no_index: bool,

    /// AWS profile from ~/.aws/config (SSO profiles included). Default: the
    /// SDK's credential chain (environment, profile, SSO, instance role).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// AWS region of the bucket (default: from the profile or environment,
    /// else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// S3 endpoint for MinIO, LocalStack or another S3-compatible store,
    /// e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Path-style addressing (http://host/bucket/key), needed by most
    /// S3-compatible stores.
    #[arg(long)]
    pub path_style: bool,

    /// Do not ask S3 to URL-encode keys in listings. Only for S3-compatible
    /// servers that claim to encode but do not (keys with `+` or `%` come
    /// out wrong there).
    #[arg(long)]
    pub no_url_encoded_listing: bool,

    /// Prefix under which images live.
    #[arg(long, value_name = "PREFIX")]
    pub uploads_prefix: Option<String>,

    /// Prefix under which metadata JSON lives.
    #[arg(long, value_name = "PREFIX")]
    pub metadata_prefix: Option<String>,

    /// Label detector: rekognition or local (default: rekognition for S3,
    /// local for a folder).
    #[arg(long, value_name = "rekognition|local", value_parser = parse_detector)]
    pub detector: Option<DetectorKind>,

    /// Labels below this confidence (0-100) are dropped when tagging
    /// (default 55, as Rekognition).
    #[arg(long, value_name = "N", value_parser = parse_confidence)]
    pub min_confidence: Option<f32>,

    /// Keep at most this many labels per image (default: no limit).
    #[arg(long, value_name = "N", value_parser = parse_max_labels)]
    pub max_labels: Option<u32>,

    /// An image whose headline label is below this confidence needs
    /// review (default 70). `LABEL=N` sets one label's own threshold
    /// (repeatable: `--review-below Person=90`); a headline without one
    /// takes its nearest ancestor's, else the default.
    #[arg(long, value_name = "N|LABEL=N", value_parser = parse_review_below)]
    pub review_below: Vec<ReviewBelow>,

    /// DetectLabels features, comma-separated: GENERAL_LABELS (always
    /// asked) and IMAGE_PROPERTIES (brightness, sharpness, contrast and
    /// dominant colours, stored under ImageProperties; Rekognition bills it
    /// per image on top of the labels, the local model measures quality
    /// itself at no cost). Default: GENERAL_LABELS.
    #[arg(long, value_name = "LIST", value_parser = Features::parse_list)]
    pub features: Option<Features>,

    /// Only these labels may be returned (Rekognition's
    /// LabelInclusionFilters; comma-separated or repeated; at most 100).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub include_labels: Vec<String>,

    /// These labels are never returned (LabelExclusionFilters).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub exclude_labels: Vec<String>,

    /// Only labels in these categories may be returned
    /// (LabelCategoryInclusionFilters, e.g. "Animals and Pets").
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub include_categories: Vec<String>,

    /// Labels in these categories are never returned
    /// (LabelCategoryExclusionFilters).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub exclude_categories: Vec<String>,

    /// An image whose ImageProperties.Quality.Brightness is below this
    /// (0-100) needs review (default: off; images without quality numbers
    /// are not judged).
    #[arg(long, value_name = "N", value_parser = parse_confidence)]
    pub review_min_brightness: Option<f32>,

    /// An image whose ImageProperties.Quality.Sharpness is below this
    /// (0-100) needs review (default: off).
    #[arg(long, value_name = "N", value_parser = parse_confidence)]
    pub review_min_sharpness: Option<f32>,

    /// Rekognition calls a second at most, across every image being tagged
    /// (default 5, the lowest default quota of any region): set it to your
    /// account's DetectLabels quota, or below it to leave room for other
    /// callers.
    #[arg(long, value_name = "N", value_parser = parse_tps)]
    pub rekognition_tps: Option<f64>,

    /// The local model's engine: auto (onnxruntime when this build has it
    /// and its library loads, else tract), tract or onnxruntime.
    #[arg(long, env = "IMGTAG_ENGINE", value_name = "ENGINE")]
    pub engine: Option<EngineChoice>,

    /// When the local model looks for text (Text, Document, Screenshot):
    /// auto (default: only when its classifier sees a page, a sign or a
    /// screen, which skips the costly text model on most photos), always
    /// or never.
    #[arg(
        long,
        env = "IMGTAG_TEXT_DETECTION",
        value_name = "auto|always|never",
        value_parser = imgtag::config::parse_text_detection
    )]
    pub text_detection: Option<imgtag::detection::text::TextDetection>,

    /// Config file (default: config.toml in the platform config dir, e.g.
    /// ~/.config/imgtag/config.toml on Linux).
    #[arg(long, env = "IMGTAG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl CommonArgs {
    /// Merges these flags over the config file over the defaults.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        Flags::from(self.clone()).resolve()
    }
}

impl From<CommonArgs> for Flags {
    fn from(a: CommonArgs) -> Flags {
        Flags {
            bucket: a.bucket,
            demo: a.demo,
            no_index: a.no_index,
            profile: a.profile,
            region: a.region,
            endpoint_url: a.endpoint_url,
            path_style: a.path_style,
            no_url_encoded_listing: a.no_url_encoded_listing,
            uploads_prefix: a.uploads_prefix,
            metadata_prefix: a.metadata_prefix,
            detector: a.detector,
            min_confidence: a.min_confidence,
            max_labels: a.max_labels,
            review_below: a.review_below,
            features: a.features,
            include_labels: a.include_labels,
            exclude_labels: a.exclude_labels,
            include_categories: a.include_categories,
            exclude_categories: a.exclude_categories,
            review_min_brightness: a.review_min_brightness,
            review_min_sharpness: a.review_min_sharpness,
            rekognition_tps: a.rekognition_tps,
            engine: a.engine,
            text_detection: a.text_detection,
            config: a.config,
        }
    }
}
