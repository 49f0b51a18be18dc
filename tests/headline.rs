//! The headline label (docs/format.md, "The headline label"): the four worked examples in every
//! accepted document shape, and properties that must hold for any labels.

use imgtag::contract::{Label, NameRef, Shape, parse_metadata};
use imgtag::headline::{headline, headline_of, weak_specific};
use imgtag::taxonomy::Taxonomy;
use proptest::prelude::*;
use serde_json::{Value, json};

/// One label of an example: name, confidence, the Parents the contract
/// writes for it, and the Parents a full detector response would carry.
struct Ex {
    name: &'static str,
    confidence: f64,
    contract_parents: &'static [&'static str],
    full_parents: &'static [&'static str],
}

const fn ex(
    name: &'static str,
    confidence: f64,
    contract_parents: &'static [&'static str],
    full_parents: &'static [&'static str],
) -> Ex {
    Ex {
        name,
        confidence,
        contract_parents,
        full_parents,
    }
}

const SEED_CAT: &[Ex] = &[
    ex("Animal", 98.2, &[], &[]),
    ex("Mammal", 95.7, &[], &["Animal"]),
    ex("Pet", 91.4, &[], &["Animal"]),
    ex("Feline", 65.3, &[], &["Mammal", "Animal", "Pet"]),
];

const WITH_CAT: &[Ex] = &[
    ex("Animal", 98.2, &[], &[]),
    ex("Mammal", 95.7, &[], &["Animal"]),
    ex("Pet", 91.4, &[], &["Animal"]),
    ex("Feline", 65.3, &[], &["Mammal", "Animal", "Pet"]),
    ex(
        "Cat",
        92.5,
        &["Feline", "Mammal", "Animal", "Pet"],
        &["Feline", "Mammal", "Animal", "Pet"],
    ),
];

const PERSON: &[Ex] = &[
    ex("Person", 99.1, &[], &[]),
    ex("Clothing", 88.0, &[], &[]),
    ex("Shirt", 61.0, &["Clothing"], &["Clothing"]),
    ex("Face", 80.2, &[], &[]),
];

const COFFEE: &[Ex] = &[
    ex("Beverage", 97.4, &[], &[]),
    ex("Coffee", 95.1, &["Beverage"], &["Beverage"]),
    ex("Cup", 93.8, &[], &[]),
    ex("Saucer", 71.0, &[], &[]),
];

/// The examples with their expected headline and whether it is weak at the
/// default review threshold (70).
const EXAMPLES: &[(&str, &[Ex], &str, f32, bool)] = &[
    ("seed cat", SEED_CAT, "Feline", 65.3, true),
    ("with Cat", WITH_CAT, "Cat", 92.5, false),
    ("person", PERSON, "Person", 99.1, false),
    ("coffee", COFFEE, "Coffee", 95.1, false),
];

fn minimal(labels: &[Ex]) -> Vec<Value> {
    labels
        .iter()
        .map(|l| json!({"Name": l.name, "Confidence": l.confidence}))
        .collect()
}

/// Labels as DetectLabels writes them: every field present.
fn full(labels: &[Ex], parents: impl Fn(&Ex) -> &'static [&'static str]) -> Vec<Value> {
    labels
        .iter()
        .map(|l| {
            let names = |v: &[&str]| v.iter().map(|n| json!({"Name": n})).collect::<Vec<_>>();
            json!({
                "Name": l.name,
                "Confidence": l.confidence,
                "Parents": names(parents(l)),
                "Aliases": [],
                "Categories": [{"Name": "Animals and Pets"}],
                "Instances": [],
            })
        })
        .collect()
}

fn imgtag_block() -> Value {
    json!({
        "SchemaVersion": 1,
        "Source": {"Bucket": "b", "Key": "uploads/x.jpg", "ETag": "\"abc\"", "Size": 10},
        "Detector": "rekognition",
        "MinConfidence": 55.0,
        "MaxLabels": null,
        "TaggedAt": "2026-11-24T10:00:00Z",
        "TaggedBy": "imgtag-tui",
        "Review": null,
        "Error": null
    })
}

/// Every accepted shape of the same labels, with the shape the reader must
/// recognise.
fn shapes(labels: &[Ex]) -> Vec<(String, Shape, Value)> {
    let contract = |l: &Ex| l.contract_parents;
    let fullp = |l: &Ex| l.full_parents;
    let mut out = vec![
        (
            "seed".into(),
            Shape::Seed,
            json!({"Labels": minimal(labels)}),
        ),
        (
            "bare array".into(),
            Shape::BareArray,
            json!(minimal(labels)),
        ),
    ];
    for (what, labels) in [
        ("contract parents", full(labels, contract)),
        ("full parents", full(labels, fullp)),
    ] {
        out.push((
            format!("DetectLabels, {what}"),
            Shape::DetectLabels,
            json!({"Labels": labels, "LabelModelVersion": "3.0", "OrientationCorrection": "ROTATE_0"}),
        ));
        out.push((
            format!("imgtag, {what}"),
            Shape::ImgTag,
            json!({"Labels": labels, "LabelModelVersion": "3.0", "ImgTag": imgtag_block()}),
        ));
    }
    out
}

#[test]
fn contract_examples_hold_in_every_shape() {
    let taxonomy = Taxonomy::shipped();
    for &(example, labels, name, confidence, weak) in EXAMPLES {
        for (shape_name, shape, doc) in shapes(labels) {
            let bytes = serde_json::to_vec(&doc).unwrap();
            let parsed = parse_metadata(&bytes).unwrap_or_else(|e| panic!("{example}: {e}"));
            assert_eq!(parsed.shape, shape, "{example}, {shape_name}");
            let labels = &parsed.doc.labels;
            let h = headline(labels, taxonomy).expect("labels are not empty");
            let what = format!("{example}, {shape_name}");
            assert_eq!(h.name(labels), name, "{what}");
            assert_eq!(h.confidence(labels), confidence, "{what}");
            assert_eq!(h.is_weak(labels, 70.0), weak, "{what}");
            assert_eq!(headline_of(&parsed.doc), Some(h.clone()), "{what}");
            assert_eq!(
                weak_specific(labels, taxonomy, 70.0),
                weak.then_some(h.index),
                "{what}"
            );
            // The chain runs from the root to the headline, each a label.
            assert_eq!(h.chain.first(), Some(&h.root), "{what}");
            assert_eq!(h.chain.last(), Some(&h.index), "{what}");
            assert_eq!(h.chain.len(), h.depth as usize + 1, "{what}");
        }
    }
}

#[test]
fn seed_cat_chain_reads_top_down() {
    let doc = serde_json::to_vec(&json!({"Labels": minimal(SEED_CAT)})).unwrap();
    let parsed = parse_metadata(&doc).unwrap();
    let labels = &parsed.doc.labels;
    let h = headline_of(&parsed.doc).unwrap();
    let chain: Vec<&str> = h.chain.iter().map(|&i| labels[i].name.as_str()).collect();
    // Feline's longest chain goes through Mammal (Pet is a peer route).
    assert_eq!(chain.first(), Some(&"Animal"));
    assert_eq!(chain.last(), Some(&"Feline"));
    assert_eq!(chain.len(), 3);
}

/// 300,000 labels of every kind at once: known names (many duplicates),
/// unknown names with Parents pointing anywhere, and cycles. Completes (no
/// timing asserted) and answers a label of the document.
#[test]
fn three_hundred_thousand_labels_complete() {
    let known = [
        "Animal", "Mammal", "Pet", "Feline", "Cat", "Dog", "Person", "Shirt",
    ];
    let n = 300_000usize;
    let labels: Vec<Label> = (0..n)
        .map(|i| {
            let confidence = (i % 1000) as f32 / 10.0;
            let mut label = if i % 3 == 0 {
                Label::new(known[i % known.len()], confidence)
            } else {
                Label::new(format!("label {i}"), confidence)
            };
            if i % 3 == 1 {
                // Parents: the previous label (long chains), one far ahead
                // (cycles), and a known name.
                label.parents = vec![
                    NameRef::new(format!("label {}", i.saturating_sub(3))),
                    NameRef::new(format!("label {}", (i * 7919) % n)),
                    NameRef::new("Animal"),
                ];
            }
            label
        })
        .collect();
    let h = headline(&labels, Taxonomy::shipped()).unwrap();
    assert!(h.index < n && h.root < n);
    assert_eq!(h.chain.first(), Some(&h.root));
    assert_eq!(h.chain.last(), Some(&h.index));
}

// ---------------------------------------------------------------------------
// Properties

/// Names from a small pool so that parents, duplicates (in any case) and
/// taxonomy links actually occur.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Animal", "animal", "Mammal", "Pet", "Feline", "Cat", "CAT", "Dog", "Puppy", "Person",
            "Human", "Clothing", "Shirt", "Indoors", "Room", "Beverage", "Coffee", "Cup",
        ])
        .prop_map(String::from),
        "[a-e]{1,2}",
    ]
}

fn label() -> impl Strategy<Value = Label> {
    (
        name(),
        0.0f32..=100.0,
        prop::collection::vec(name(), 0..4),
        prop::collection::vec(name(), 0..2),
    )
        .prop_map(|(name, confidence, parents, aliases)| {
            let mut label = Label::new(name, confidence);
            label.parents = parents.into_iter().map(NameRef::new).collect();
            label.aliases = aliases.into_iter().map(NameRef::new).collect();
            label
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never panics, and answers exactly what a naive reading of the rule
    /// (reachability by brute force) answers: the headline is a label, a
    /// descendant-or-self of the most confident root.
    #[test]
    fn headline_matches_the_naive_rule(labels in prop::collection::vec(label(), 0..40)) {
        let h = headline(&labels, Taxonomy::shipped());
        let naive = Naive::new(&labels);
        prop_assert_eq!(h.is_none(), labels.is_empty());
        if let Some(h) = h {
            let (root, best, depth) = naive.headline();
            prop_assert_eq!(h.root, naive.rep[root]);
            prop_assert_eq!(h.index, naive.rep[best]);
            prop_assert_eq!(h.depth, depth);
            prop_assert!(naive.reach[best][root] || naive.same(best, root));
            // The chain steps down from the root to the headline.
            prop_assert_eq!(h.chain.first(), Some(&h.root));
            prop_assert_eq!(h.chain.last(), Some(&h.index));
            for pair in h.chain.windows(2) {
                let (upper, lower) = (naive.node_of[pair[0]], naive.node_of[pair[1]]);
                prop_assert!(naive.reach[lower][upper], "{:?}", pair);
            }
        }
    }

    /// A lone label more confident than all others takes the headline
    /// (unless another root ties at 100 before it).
    #[test]
    fn a_more_confident_lone_label_takes_over(labels in prop::collection::vec(label(), 1..30)) {
        let mut labels = labels;
        labels.push(Label::new("zz lone", 100.0));
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        prop_assert!(h.index == labels.len() - 1 || labels[h.root].confidence == 100.0);
    }
}

/// The rule computed the slow, obvious way (O(n³)), as an oracle.
struct Naive {
    /// Per label: its node; per node: its representative label.
    node_of: Vec<usize>,
    rep: Vec<usize>,
    conf: Vec<f32>,
    setting: Vec<bool>,
    /// `reach[a][b]`: b is an ancestor of a through one or more edges.
    reach: Vec<Vec<bool>>,
}

impl Naive {
    fn new(labels: &[Label]) -> Naive {
        let t = Taxonomy::shipped();
        let key = |name: &str| {
            let lower = name.trim().to_lowercase();
            t.id(&lower).map_or(lower, |id| format!("#{id}"))
        };
        let mut keys: Vec<String> = Vec::new();
        let (mut node_of, mut rep) = (Vec::new(), Vec::<usize>::new());
        for (i, l) in labels.iter().enumerate() {
            let k = key(&l.name);
            let n = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
                keys.push(k);
                rep.push(i);
                keys.len() - 1
            });
            if l.confidence > labels[rep[n]].confidence {
                rep[n] = i;
            }
            node_of.push(n);
        }
        let mut lookup: Vec<(String, usize)> = keys.iter().cloned().zip(0..).collect();
        for (i, l) in labels.iter().enumerate() {
            for a in &l.aliases {
                let k = key(&a.name);
                if !lookup.iter().any(|(x, _)| *x == k) {
                    lookup.push((k, node_of[i]));
                }
            }
        }
        let find = |k: &str| lookup.iter().find(|(x, _)| x == k).map(|&(_, n)| n);
        let n = keys.len();
        let mut reach = vec![vec![false; n]; n];
        for me in 0..n {
            let mine: Vec<&Label> = (0..labels.len())
                .filter(|&i| node_of[i] == me)
                .map(|i| &labels[i])
                .collect();
            let given = mine.iter().any(|l| !l.parents.is_empty());
            let parents: Vec<usize> = if given {
                mine.iter()
                    .flat_map(|l| &l.parents)
                    .filter_map(|p| find(&key(&p.name)))
                    .collect()
            } else {
                t.ancestors(&labels[rep[me]].name)
                    .filter_map(|a| find(&key(a)))
                    .collect()
            };
            for p in parents {
                if p != me {
                    reach[me][p] = true;
                }
            }
        }
        for k in 0..n {
            for a in 0..n {
                for b in 0..n {
                    if reach[a][k] && reach[k][b] {
                        reach[a][b] = true;
                    }
                }
            }
        }
        Naive {
            conf: rep.iter().map(|&i| labels[i].confidence).collect(),
            setting: rep.iter().map(|&i| t.is_setting(&labels[i].name)).collect(),
            node_of,
            rep,
            reach,
        }
    }

    fn same(&self, a: usize, b: usize) -> bool {
        a == b || (self.reach[a][b] && self.reach[b][a])
    }

    fn strictly_above(&self, a: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.rep.len()).filter(move |&b| self.reach[a][b] && !self.same(a, b))
    }

    fn depth(&self, a: usize) -> u32 {
        self.strictly_above(a)
            .map(|b| self.depth(b) + 1)
            .max()
            .unwrap_or(0)
    }

    /// Greater is better: confidence, then earlier label.
    fn rank(&self, a: usize) -> (f32, std::cmp::Reverse<usize>) {
        (self.conf[a], std::cmp::Reverse(self.rep[a]))
    }

    /// (root node, headline node, depth).
    fn headline(&self) -> (usize, usize, u32) {
        let n = self.rep.len();
        let roots = (0..n).filter(|&a| self.strictly_above(a).next().is_none());
        let root = roots
            .max_by(|&a, &b| {
                (!self.setting[a])
                    .cmp(&!self.setting[b])
                    .then(self.rank(a).0.total_cmp(&self.rank(b).0))
                    .then(self.rank(a).1.cmp(&self.rank(b).1))
            })
            .unwrap();
        let best = (0..n)
            .filter(|&a| self.same(a, root) || self.reach[a][root])
            .max_by(|&a, &b| {
                self.depth(a)
                    .cmp(&self.depth(b))
                    .then(self.rank(a).0.total_cmp(&self.rank(b).0))
                    .then(self.rank(a).1.cmp(&self.rank(b).1))
            })
            .unwrap();
        (root, best, self.depth(best))
    }
}

/// The local detector's scene labels (src/detection/scenes.rs) are
/// settings in the shipped taxonomy, so a sure scene never hides a weak
/// subject, even when `MaxLabels` cut the scene's Outdoors and Nature and
/// the document has no other parents: Shoreline, Street, Dining Room,
/// Restaurant are below Outdoors or Indoors.
#[test]
fn a_sure_scene_does_not_hide_a_weak_subject() {
    let t = Taxonomy::shipped();
    let with_parents = |name: &str, confidence: f32, parents: &[&str]| {
        let mut l = Label::new(name.to_string(), confidence);
        l.parents = parents.iter().map(|p| NameRef::new(*p)).collect();
        l
    };
    for scene in [
        vec![
            with_parents("Beach", 97.0, &["Shoreline", "Outdoors", "Nature"]),
            with_parents("Shoreline", 97.0, &["Outdoors", "Nature"]),
        ],
        vec![
            with_parents("Street", 96.0, &["City", "Urban", "Outdoors"]),
            with_parents("City", 96.0, &["Urban", "Outdoors"]),
            with_parents("Urban", 96.0, &["Outdoors"]),
        ],
        vec![with_parents("Dining Room", 95.0, &["Room", "Indoors"])],
        vec![with_parents("Restaurant", 95.0, &["Indoors"])],
        vec![with_parents("Lake", 95.0, &[]), Label::new("Valley", 90.0)],
    ] {
        let mut labels = scene.clone();
        labels.push(Label::new("Cat".to_string(), 61.0));
        let h = headline(&labels, t).unwrap();
        assert_eq!(h.name(&labels), "Cat", "{scene:?}");
        // Alone, the scene is the headline.
        assert_ne!(headline(&scene, t).unwrap().name(&scene), "Cat");
    }
}
