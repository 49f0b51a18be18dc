//! What the detail pane derives from a document, computed once when the
//! document arrives: the label order, the headline, each label's review
//! flags and its boxes. A hostile document (60,000 labels, 400,000 review
//! names, under the 8 MiB limit) costs one linear pass here instead of a
//! scan of every review list for every label on every frame.

use std::collections::HashSet;

use crate::contract::{MetadataDoc, Review};
use crate::headline::{Headline, headline_of};

use super::boxes::{label_boxes, label_order};

/// How the review names a label (names compare ASCII case-insensitively,
/// as the pipeline's review does).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LabelFlags {
    /// In `Review.Added`: added (or confirmed) by hand.
    pub added: bool,
    /// In `Review.Removed` (a reviewer removed it; a re-run drops it).
    pub removed: bool,
    /// In `Review.Flagged`: flagged as doubtful.
    pub flagged: bool,
    /// In `Review.Confirmed`: accepted as it is, with what the detector
    /// had said (`None` when it was a human's label already).
    pub confirmed: Option<Option<f32>>,
}

/// The per-document analysis behind the detail pane.
#[derive(Debug, Clone, PartialEq)]
pub struct DocFacts {
    /// Label indices in the pane's order (highest confidence first).
    pub order: Vec<usize>,
    pub headline: Option<Headline>,
    /// Per label, by document index.
    pub flags: Vec<LabelFlags>,
    /// Per label, by document index: how many boxes can be drawn.
    pub box_counts: Vec<u32>,
    /// The labels with drawable boxes, in the pane's order.
    pub with_boxes: Vec<usize>,
}

impl DocFacts {
    /// One pass over the labels and the review lists, whatever their sizes.
    pub fn of(doc: &MetadataDoc) -> DocFacts {
        let order = label_order(&doc.labels);
        let box_counts: Vec<u32> = doc
            .labels
            .iter()
            .map(|l| {
                // Most labels have no instances: no allocation for them.
                if l.instances.is_empty() {
                    0
                } else {
                    u32::try_from(label_boxes(l).len()).unwrap_or(u32::MAX)
                }
            })
            .collect();
        let with_boxes = order
            .iter()
            .copied()
            .filter(|&i| box_counts[i] > 0)
            .collect();
        DocFacts {
            flags: flags_of(doc),
            headline: headline_of(doc),
            order,
            box_counts,
            with_boxes,
        }
    }
}

/// Each label's review flags, through one lower-cased set per list.
fn flags_of(doc: &MetadataDoc) -> Vec<LabelFlags> {
    let Some(review) = doc.review() else {
        return vec![LabelFlags::default(); doc.labels.len()];
    };
    let [added, removed, flagged] = lowered(review);
    let confirmed: std::collections::HashMap<String, Option<f32>> = review
        .confirmed
        .iter()
        .map(|c| (c.name.to_ascii_lowercase(), c.detector_confidence))
        .collect();
    doc.labels
        .iter()
        .map(|l| {
            // Most names are lower-case already; only then is no copy made.
            let name = l.name.to_ascii_lowercase();
            LabelFlags {
                added: added.contains(name.as_str()),
                removed: removed.contains(name.as_str()),
                flagged: flagged.contains(name.as_str()),
                confirmed: confirmed.get(name.as_str()).copied(),
            }
        })
        .collect()
}

fn lowered(review: &Review) -> [HashSet<String>; 3] {
    let set = |names: &[String]| names.iter().map(|n| n.to_ascii_lowercase()).collect();
    [
        set(&review.added),
        set(&review.removed),
        set(&review.flagged),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{BoundingBox, Instance};

    /// A document from JSON only, so it reads whatever the contract's
    /// structs look like.
    fn doc(
        labels: &[(&str, f32)],
        added: &[&str],
        removed: &[&str],
        flagged: &[&str],
    ) -> MetadataDoc {
        let labels: Vec<_> = labels
            .iter()
            .map(|(n, c)| serde_json::json!({"Name": n, "Confidence": c}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "Labels": labels,
            "ImgTag": {
                "SchemaVersion": 1,
                "Source": {"Bucket": "b", "Key": "uploads/a.jpg"},
                "Detector": "local",
                "MinConfidence": 55.0,
                "TaggedAt": "2024-01-01T00:00:00Z",
                "TaggedBy": "imgtag",
                "Review": {"Added": added, "Removed": removed, "Flagged": flagged},
            },
        }))
        .unwrap()
    }

    /// Flags match names in any ASCII case, each list on its own; a label
    /// no list names has none.
    #[test]
    fn flags_compare_names_case_insensitively() {
        let d = doc(
            &[("Cat", 90.0), ("dog", 80.0), ("Bird", 70.0), ("Fish", 60.0)],
            &["CAT", "snowdog"],
            &["fish"],
            &["DOG", "cat"],
        );
        let f = DocFacts::of(&d);
        let flag = |added, removed, flagged| LabelFlags {
            added,
            removed,
            flagged,
            confirmed: None,
        };
        assert_eq!(
            f.flags,
            [
                flag(true, false, true),
                flag(false, false, true),
                flag(false, false, false),
                flag(false, true, false),
            ]
        );
        assert_eq!(f.order, [0, 1, 2, 3]);
        assert_eq!(f.headline.map(|h| h.index), Some(0));
    }

    /// The order is by confidence; only labels with a drawable box are
    /// listed as boxed, with their counts.
    #[test]
    fn order_and_boxes() {
        let mut d = doc(
            &[("Low", 10.0), ("High", 95.0), ("Mid", 50.0)],
            &[],
            &[],
            &[],
        );
        let bb = |w: f32| Instance {
            bounding_box: Some(BoundingBox {
                width: w,
                height: 0.5,
                left: 0.1,
                top: 0.1,
            }),
            ..Default::default()
        };
        d.labels[0].instances = vec![bb(0.2), bb(0.3)];
        // A box of no width cannot be drawn.
        d.labels[2].instances = vec![bb(0.0)];
        let f = DocFacts::of(&d);
        assert_eq!(f.order, [1, 2, 0]);
        assert_eq!(f.box_counts, [2, 0, 0]);
        assert_eq!(f.with_boxes, [0]);
        assert!(f.flags.iter().all(|x| *x == LabelFlags::default()));
    }
}
