//! Calibrated confidences for the local models (docs/detectors.md,
//! "Calibration"): a monotone map from a model's own score (percent) to
//! the share of its labels that are right at that score, fitted on the
//! training half of the evaluation set and shipped as
//! `assets/model/calibration.json`.
//!
//! The fit is histogram binning (Zadrozny and Elkan, 2001): the judged
//! labels fall into the bands of [`EDGES`]; each band's share right is
//! pulled towards the model's own claim by [`PRIOR_WEIGHT`] pseudo-labels
//! (a band with few labels stays near the raw score), and adjacent bands
//! that would make the map fall are pooled (pool-adjacent-violators). A
//! band's scores then map linearly onto [`SPREAD`] either side of its
//! share, so order within a band is kept and no label crosses another.
//! Score-only binning suits the evidence: the models' errors sit at 70-89,
//! between right labels, and a smooth curve through them (Platt scaling,
//! interpolated isotonic) would carry the sure bands' 100% down into them.

use serde::{Deserialize, Serialize};

use super::model_error::ModelError;

/// Band edges (percent) of the fit: raw scores under the first are never
/// judged (they are not labels) and are not raised.
pub const EDGES: [f32; 5] = [55.0, 70.0, 85.0, 95.0, 100.0];
/// Pseudo-labels per band at the model's own claim.
pub const PRIOR_WEIGHT: f64 = 2.0;
/// How far (points) a band's scores spread either side of its share.
pub const SPREAD: f64 = 2.5;

const SHIPPED_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/calibration.json"
));

/// Raw scores `from..to` map linearly onto `low..high` (percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub from: f32,
    pub to: f32,
    pub low: f32,
    pub high: f32,
}

/// One model's map from raw score to calibrated confidence (percent);
/// no segments is the identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Curve {
    segments: Vec<Segment>,
}

/// The local models' curves, as `assets/model/calibration.json` holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// MobileNetV2's labels (ImageNet classes and their WordNet parents).
    pub classifier: Curve,
    /// YOLOX-Nano's labels (COCO classes and their parents).
    pub detector: Curve,
}

/// The shipped file: the curves and how they were fitted.
#[derive(Serialize, Deserialize)]
struct CalibrationFile {
    format: u32,
    fitted_on: String,
    #[serde(flatten)]
    calibration: Calibration,
}

impl Calibration {
    /// The curves shipped with this build.
    pub fn shipped() -> Result<Self, ModelError> {
        Self::from_json(SHIPPED_JSON)
    }

    /// Parses a calibration file (format 1) and checks every curve.
    pub fn from_json(json: &str) -> Result<Self, ModelError> {
        let file: CalibrationFile = serde_json::from_str(json)
            .map_err(|e| ModelError::Labels(format!("calibration: {e}")))?;
        if file.format != 1 {
            return Err(ModelError::Labels(format!(
                "calibration: format {} (expected 1)",
                file.format
            )));
        }
        for curve in [&file.calibration.classifier, &file.calibration.detector] {
            curve.check()?;
        }
        Ok(file.calibration)
    }

    /// The file's text for these curves.
    pub fn to_json(&self, fitted_on: &str) -> String {
        let file = CalibrationFile {
            format: 1,
            fitted_on: fitted_on.to_string(),
            calibration: self.clone(),
        };
        serde_json::to_string_pretty(&file).expect("plain data serialises") + "\n"
    }
}

impl Curve {
    /// The map that changes nothing.
    pub fn identity() -> Self {
        Curve::default()
    }

    /// The segments, lowest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The calibrated confidence of a raw score (both percent).
    /// Non-decreasing in `raw`.
    pub fn apply(&self, raw: f32) -> f32 {
        let raw = if raw.is_finite() {
            raw.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let Some(first) = self.segments.first() else {
            return raw;
        };
        if raw < first.from {
            // Never judged (not labels): kept, or lowered with the first
            // band, never raised into labels nobody has judged.
            return raw * (first.low / first.from).min(1.0);
        }
        let s = self
            .segments
            .iter()
            .find(|s| raw < s.to)
            .unwrap_or_else(|| self.segments.last().expect("not empty"));
        let t = f64::from((raw - s.from) / (s.to - s.from)).clamp(0.0, 1.0);
        (f64::from(s.low) + f64::from(s.high - s.low) * t) as f32
    }

    /// The lowest raw score whose calibrated confidence may reach
    /// `calibrated` (a little below it: callers filter what they compute).
    pub fn raw_floor(&self, calibrated: f32) -> f32 {
        let (mut lo, mut hi) = (0.0f32, 100.0f32);
        if self.apply(hi) < calibrated {
            return hi;
        }
        for _ in 0..32 {
            let mid = (lo + hi) / 2.0;
            if self.apply(mid) >= calibrated {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        (lo - 0.01).max(0.0)
    }

    /// The curve of `samples` (raw score in percent, judged right), see the
    /// module's comment.
    pub fn fit(samples: &[(f32, bool)]) -> Self {
        // Per band: pooled range (first, last band), weight, weighted share.
        let mut groups: Vec<(usize, usize, f64, f64)> = Vec::new();
        for band in 0..EDGES.len() - 1 {
            let (lo, hi) = (EDGES[band], EDGES[band + 1]);
            let last = band + 2 == EDGES.len();
            let inside: Vec<_> = samples
                .iter()
                .filter(|(c, _)| *c >= lo && (*c < hi || (last && *c <= hi)))
                .collect();
            let n = inside.len() as f64;
            let claim = if inside.is_empty() {
                f64::from(lo + hi) / 200.0
            } else {
                inside.iter().map(|(c, _)| f64::from(*c)).sum::<f64>() / n / 100.0
            };
            let right = inside.iter().filter(|(_, r)| *r).count() as f64;
            let weight = n + PRIOR_WEIGHT;
            groups.push((band, band, weight, (right + PRIOR_WEIGHT * claim) / weight));
            // Pool while the map would fall.
            while groups.len() > 1 {
                let (a, b) = (groups[groups.len() - 2], groups[groups.len() - 1]);
                if a.3 <= b.3 {
                    break;
                }
                groups.pop();
                let w = a.2 + b.2;
                *groups.last_mut().expect("two") = (a.0, b.1, w, (a.2 * a.3 + b.2 * b.3) / w);
            }
        }
        let mut segments: Vec<Segment> = Vec::new();
        for (i, &(first, last, _, share)) in groups.iter().enumerate() {
            let p = share * 100.0;
            let below = segments.last().map_or(0.0, |s| f64::from(s.high));
            let mut high = (p + SPREAD).min(100.0);
            if let Some(next) = groups.get(i + 1) {
                high = high.min((p + next.3 * 100.0) / 2.0);
            }
            let low = (p - SPREAD).max(below).min(p);
            segments.push(Segment {
                from: EDGES[first],
                to: EDGES[last + 1],
                low: round3(low),
                high: round3(high),
            });
        }
        Curve { segments }
    }

    /// Segments in order, each non-decreasing, none falling below the last.
    fn check(&self) -> Result<(), ModelError> {
        let mut below = (0.0f32, 0.0f32);
        for s in &self.segments {
            let ok = [s.from, s.to, s.low, s.high]
                .iter()
                .all(|v| v.is_finite() && (0.0..=100.0).contains(v))
                && s.from < s.to
                && s.low <= s.high
                && s.from >= below.0
                && s.low >= below.1;
            if !ok {
                return Err(ModelError::Labels(format!(
                    "calibration: segment {s:?} is out of order"
                )));
            }
            below = (s.to, s.high);
        }
        Ok(())
    }
}

fn round3(v: f64) -> f32 {
    ((v * 1000.0).round() / 1000.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn judged(scores: &[(f32, usize, usize)]) -> Vec<(f32, bool)> {
        // (score, right, wrong) repeated.
        scores
            .iter()
            .flat_map(|&(c, r, w)| {
                std::iter::repeat_n((c, true), r).chain(std::iter::repeat_n((c, false), w))
            })
            .collect()
    }

    #[test]
    fn an_often_wrong_band_is_pooled_with_the_surer_band_beneath_it() {
        // 55-70 mostly right, 70-85 half wrong: pooled into one band.
        let curve = Curve::fit(&judged(&[(60.0, 9, 1), (78.0, 6, 6), (97.0, 30, 0)]));
        let pooled = curve.segments()[0];
        assert_eq!((pooled.from, pooled.to), (55.0, 85.0), "{curve:?}");
        // (9 + 2 x 0.60) / 12 and (6 + 2 x 0.78) / 14, weighted 12 : 14.
        let share = (12.0 * (10.2 / 12.0) + 14.0 * (7.56 / 14.0)) / 26.0 * 100.0;
        assert!((curve.apply(70.0) - share as f32).abs() < 0.01, "{curve:?}");
        assert!(curve.apply(84.0) < 71.0, "{curve:?}");
        assert!(curve.apply(97.0) > 95.0, "{curve:?}");
    }

    #[test]
    fn an_empty_band_keeps_the_models_own_claim() {
        let curve = Curve::fit(&[]);
        // Each band maps around its middle.
        assert!((curve.apply(77.5) - 77.5).abs() < 0.01, "{curve:?}");
        assert!((curve.apply(97.5) - 97.5).abs() < 0.01, "{curve:?}");
    }

    #[test]
    fn identity_changes_nothing_and_odd_input_is_clamped() {
        let id = Curve::identity();
        assert_eq!(id.apply(63.25), 63.25);
        assert_eq!(id.apply(f32::NAN), 0.0);
        assert_eq!(id.apply(140.0), 100.0);
    }

    #[test]
    fn a_malformed_or_falling_file_is_refused() {
        let falling = r#"{"format":1,"fitted_on":"x","classifier":[
            {"from":55,"to":70,"low":60,"high":65},{"from":70,"to":100,"low":50,"high":90}],
            "detector":[]}"#;
        assert!(Calibration::from_json(falling).is_err());
        assert!(
            Calibration::from_json(r#"{"format":2,"fitted_on":"x","classifier":[],"detector":[]}"#)
                .is_err()
        );
        assert!(Calibration::from_json("{").is_err());
    }

    #[test]
    fn the_shipped_file_parses_and_round_trips() {
        let shipped = Calibration::shipped().unwrap();
        assert!(!shipped.classifier.segments().is_empty());
        assert_eq!(
            Calibration::from_json(&shipped.to_json("x")).unwrap(),
            shipped
        );
    }

    proptest! {
        /// Any fit is non-decreasing, stays in 0..=100 and its floor finds
        /// the scores that reach a confidence.
        #[test]
        fn fits_are_monotone(
            samples in prop::collection::vec((55.0f32..=100.0, any::<bool>()), 0..80),
            a in 0.0f32..=100.0,
            b in 0.0f32..=100.0,
            want in 1.0f32..99.0,
        ) {
            let curve = Curve::fit(&samples);
            prop_assert!(curve.check().is_ok(), "{:?}", curve);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(curve.apply(lo) <= curve.apply(hi), "{:?}", curve);
            prop_assert!((0.0..=100.0).contains(&curve.apply(a)));
            let floor = curve.raw_floor(want);
            if curve.apply(100.0) >= want {
                prop_assert!(curve.apply(floor + 0.02) >= want || floor + 0.02 > 100.0);
                prop_assert!(floor == 0.0 || curve.apply(floor) < want, "{floor} {:?}", curve);
            }
        }
    }
}
