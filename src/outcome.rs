//! What happened to one image in the tagging pipeline, how every front end
//! names, prints and counts it.

use serde::Serialize;

use crate::sanitize::{for_terminal, json_line};

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Labels written.
    Tagged {
        metadata_key: String,
        labels: usize,
        /// The headline label's name and confidence.
        headline: Option<(String, f32)>,
    },
    /// A permanent failure, recorded in `ImgTag.Error`.
    Failed {
        metadata_key: String,
        code: String,
        message: String,
    },
    /// The metadata already records this image, detector and threshold.
    Unchanged { metadata_key: String },
    /// Not an image key (folder placeholder, outside uploads/).
    Skipped { reason: String },
    /// The metadata changed between our read and our write: not
    /// overwritten.
    Conflict { metadata_key: String },
    /// Nothing written; worth trying again later.
    Retry { message: String },
    /// Nothing written; the run should stop (credentials, permissions).
    Fatal { message: String },
}

impl Outcome {
    /// Whether a document was written.
    pub fn wrote(&self) -> bool {
        matches!(self, Outcome::Tagged { .. } | Outcome::Failed { .. })
    }

    /// The outcome's name, as in its JSON (`tagged`, `unchanged`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Tagged { .. } => "tagged",
            Outcome::Failed { .. } => "failed",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Conflict { .. } => "conflict",
            Outcome::Retry { .. } => "retry",
            Outcome::Fatal { .. } => "fatal",
        }
    }

    /// One human line for an image's outcome, as `imgtag tag` and
    /// `imgtag watch` print it. Keys and messages are untrusted: escaped.
    pub fn text(&self, key: &str) -> String {
        let key = for_terminal(key);
        match self {
            Outcome::Tagged {
                headline, labels, ..
            } => format!(
                "tagged     {key}  {labels} labels{}",
                headline
                    .as_ref()
                    .map(|(n, c)| {
                        format!(
                            ", headline {} {:.1}",
                            for_terminal(n),
                            crate::status::shown(*c)
                        )
                    })
                    .unwrap_or_default()
            ),
            Outcome::Unchanged { .. } => format!("unchanged  {key}"),
            Outcome::Failed { code, message, .. } => format!(
                "failed     {key}  {}: {}",
                for_terminal(code),
                for_terminal(message)
            ),
            Outcome::Conflict { metadata_key } => format!(
                "conflict   {key}  {} changed while tagging; not overwritten",
                for_terminal(metadata_key)
            ),
            Outcome::Retry { message } => format!("retry      {key}  {}", for_terminal(message)),
            Outcome::Skipped { reason } => format!("skipped    {key}  {}", for_terminal(reason)),
            Outcome::Fatal { message } => format!("stopped    {key}  {}", for_terminal(message)),
        }
    }

    /// One JSON line: `{"key": ..., "outcome": ...}` plus the outcome's
    /// fields, as `imgtag tag --json` and `imgtag watch --json` print it.
    pub fn json_line(&self, key: &str) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            key: &'a str,
            #[serde(flatten)]
            outcome: &'a Outcome,
        }
        json_line(&Line { key, outcome: self })
    }
}

/// Outcomes counted over a run (`tag`, `watch`, the TUI, a Lambda batch).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Tally {
    pub tagged: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub conflicts: usize,
    pub retry: usize,
    pub skipped: usize,
    /// The first fatal message: why the run stopped on its own.
    pub fatal: Option<String>,
}

impl Outcome {
    /// An image a stopped run did not start.
    pub fn not_started() -> Outcome {
        Outcome::Skipped {
            reason: "not started: an earlier error stopped the run".into(),
        }
    }
}

impl Tally {
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Tagged { .. } => self.tagged += 1,
            Outcome::Unchanged { .. } => self.unchanged += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Conflict { .. } => self.conflicts += 1,
            Outcome::Retry { .. } => self.retry += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Fatal { message } => {
                self.fatal.get_or_insert_with(|| message.clone());
            }
        }
    }

    /// Nothing conflicted, nothing left to retry, nothing fatal.
    pub fn ok(&self) -> bool {
        self.conflicts == 0 && self.retry == 0 && self.fatal.is_none()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tagged, {} unchanged, {} failed (recorded), {} conflicts, {} to retry, {} skipped",
            self.tagged, self.unchanged, self.failed, self.conflicts, self.retry, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_json_tag() {
        let all = [
            Outcome::Tagged {
                metadata_key: "m".into(),
                labels: 1,
                headline: None,
            },
            Outcome::Failed {
                metadata_key: "m".into(),
                code: "c".into(),
                message: "x".into(),
            },
            Outcome::Unchanged {
                metadata_key: "m".into(),
            },
            Outcome::Skipped { reason: "r".into() },
            Outcome::Conflict {
                metadata_key: "m".into(),
            },
            Outcome::Retry {
                message: "x".into(),
            },
            Outcome::Fatal {
                message: "x".into(),
            },
        ];
        let mut tally = Tally::default();
        for o in &all {
            let v: serde_json::Value = serde_json::from_str(&o.json_line("k")).unwrap();
            assert_eq!(v["outcome"], o.name());
            assert_eq!(v["key"], "k");
            tally.add(o);
        }
        assert_eq!(tally.tagged + tally.unchanged + tally.failed, 3);
        assert_eq!(tally.fatal.as_deref(), Some("x"));
        assert!(!tally.ok());
    }

    #[test]
    fn text_escapes_untrusted_parts() {
        let o = Outcome::Retry {
            message: "bad\x1b[2J".into(),
        };
        let line = o.text("uploads/\u{202e}a.jpg");
        assert!(
            !line.contains('\x1b') && !line.contains('\u{202e}'),
            "{line:?}"
        );
    }
}
