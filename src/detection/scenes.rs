//! Rekognition-style scene labels (Beach › Shoreline › Outdoors › Nature;
//! Street, City › Urban › Outdoors; Living Room, Kitchen › Room › Indoors)
//! from what the local detector's two models already see: the
//! classifier's scene classes (Seashore, Lakeside, Alp, Valley, Restaurant,
//! Library...) and the objects found together (Couch + Television + Chair:
//! Living Room; Bus + Car + Person: Street, City).
//!
//! Each scene's confidence comes from its evidence: every cue present (a
//! label, or each box of a detected object, up to three) is a piece of
//! evidence of strength `weight × confidence`, combined as a noisy-OR,
//! `1 − Π(1 − weight·confidence)`. One sure cue of weight 1 (Seashore 97)
//! gives 97; three weak ones give less than any sure one; nothing is a
//! fixed 100. A scene needs `min_cues` distinct cues and one of its
//! `anchors` (a room is not a Living Room without a couch or a television),
//! and gets its parents as labels too (raised to its confidence).

use crate::contract::{Label, NameRef};

/// One scene rule.
struct Scene {
    name: &'static str,
    /// Nearest first, as Rekognition lists them.
    parents: &'static [&'static str],
    /// Cue label name, weight (0-1).
    cues: &'static [(&'static str, f32)],
    /// Distinct cues needed.
    min_cues: usize,
    /// At least one of these cues must be present (empty: any cue).
    anchors: &'static [&'static str],
}

const OUT_NATURE: &[&str] = &["Outdoors", "Nature"];
const ROOM: &[&str] = &["Room", "Indoors"];

/// Objects seen on streets and roads.
const STREET_ANCHORS: &[&str] = &[
    "Car",
    "Bus",
    "Truck",
    "Taxi",
    "Traffic Light",
    "Stop Sign",
    "Streetcar",
    "Trolleybus",
    "Parking Meter",
    "Fire Hydrant",
    "Street Sign",
    "Minibus",
];

const SCENES: &[Scene] = &[
    // --- nature, from the classifier's scene classes
    Scene {
        name: "Beach",
        parents: &["Shoreline", "Outdoors", "Nature"],
        cues: &[("Seashore", 1.0), ("Sandbar", 0.9), ("Surfboard", 0.4)],
        min_cues: 1,
        anchors: &["Seashore", "Sandbar"],
    },
    Scene {
        name: "Shoreline",
        parents: OUT_NATURE,
        cues: &[
            ("Seashore", 1.0),
            ("Sandbar", 1.0),
            ("Lakeside", 1.0),
            ("Promontory", 0.7),
            ("Breakwater", 0.8),
        ],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Lake",
        parents: OUT_NATURE,
        cues: &[("Lakeside", 1.0)],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Sea",
        parents: OUT_NATURE,
        cues: &[("Seashore", 0.8), ("Coral Reef", 0.9), ("Promontory", 0.6)],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Mountain",
        parents: OUT_NATURE,
        cues: &[
            ("Alp", 1.0),
            ("Volcano", 0.9),
            ("Valley", 0.5),
            ("Cliff", 0.4),
        ],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Landscape",
        parents: OUT_NATURE,
        cues: &[
            ("Alp", 0.9),
            ("Valley", 0.9),
            ("Lakeside", 0.8),
            ("Cliff", 0.8),
            ("Promontory", 0.8),
            ("Volcano", 0.8),
            ("Seashore", 0.6),
        ],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Valley",
        parents: OUT_NATURE,
        cues: &[("Valley", 1.0)],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Cliff",
        parents: OUT_NATURE,
        cues: &[("Cliff", 1.0), ("Promontory", 0.8)],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Sky",
        parents: OUT_NATURE,
        cues: &[
            ("Kite", 0.7),
            ("Airliner", 0.6),
            ("Warplane", 0.6),
            ("Airship", 0.7),
            ("Parachute", 0.7),
            ("Balloon", 0.5),
        ],
        min_cues: 1,
        anchors: &[],
    },
    // --- towns, from the detector's objects
    Scene {
        name: "Street",
        parents: &["City", "Urban", "Outdoors"],
        cues: &[
            ("Car", 0.45),
            ("Bus", 0.6),
            ("Truck", 0.4),
            ("Taxi", 0.7),
            ("Motorcycle", 0.4),
            ("Bicycle", 0.3),
            ("Person", 0.25),
            ("Traffic Light", 0.9),
            ("Stop Sign", 0.9),
            ("Street Sign", 0.9),
            ("Parking Meter", 0.8),
            ("Fire Hydrant", 0.8),
            ("Streetcar", 0.7),
            ("Trolleybus", 0.7),
        ],
        min_cues: 2,
        anchors: STREET_ANCHORS,
    },
    Scene {
        name: "Road",
        parents: &["Outdoors"],
        cues: &[
            ("Car", 0.5),
            ("Bus", 0.5),
            ("Truck", 0.5),
            ("Taxi", 0.5),
            ("Motorcycle", 0.4),
            ("Traffic Light", 0.6),
            ("Stop Sign", 0.6),
        ],
        min_cues: 1,
        anchors: STREET_ANCHORS,
    },
    Scene {
        name: "City",
        parents: &["Urban", "Outdoors"],
        cues: &[
            ("Bus", 0.7),
            ("Traffic Light", 0.7),
            ("Taxi", 0.6),
            ("Streetcar", 0.7),
            ("Trolleybus", 0.7),
            ("Street Sign", 0.6),
            ("Car", 0.35),
            ("Person", 0.2),
        ],
        min_cues: 2,
        anchors: STREET_ANCHORS,
    },
    // --- rooms, from the detector's objects and the classifier's classes
    Scene {
        name: "Living Room",
        parents: ROOM,
        cues: &[
            ("Couch", 0.7),
            ("Television", 0.6),
            ("Entertainment Center", 0.7),
            ("Home Theater", 0.7),
            ("Chair", 0.3),
            ("Potted Plant", 0.3),
            ("Remote Control", 0.4),
            ("Table Lamp", 0.3),
            ("Bookcase", 0.3),
            ("Window Shade", 0.2),
            ("Fire Screen", 0.4),
            ("Vase", 0.2),
        ],
        min_cues: 2,
        anchors: &[
            "Couch",
            "Television",
            "Entertainment Center",
            "Home Theater",
        ],
    },
    Scene {
        name: "Kitchen",
        parents: ROOM,
        cues: &[
            ("Oven", 0.7),
            ("Refrigerator", 0.7),
            ("Microwave", 0.7),
            ("Stove", 0.7),
            ("Dishwasher", 0.6),
            ("Toaster", 0.5),
            ("Sink", 0.4),
            ("Kitchen Appliance", 0.5),
            ("Espresso Maker", 0.3),
            ("Frying Pan", 0.3),
            ("Wok", 0.3),
        ],
        min_cues: 2,
        anchors: &["Oven", "Refrigerator", "Microwave", "Stove", "Dishwasher"],
    },
    Scene {
        name: "Dining Room",
        parents: ROOM,
        cues: &[
            ("Dining Table", 0.6),
            ("Chair", 0.4),
            ("Wine Glass", 0.2),
            ("Plate", 0.2),
            ("Bowl", 0.1),
        ],
        min_cues: 2,
        anchors: &["Dining Table"],
    },
    Scene {
        name: "Bedroom",
        parents: ROOM,
        cues: &[
            ("Bed", 0.8),
            ("Four-poster", 0.8),
            ("Crib", 0.6),
            ("Quilt", 0.5),
            ("Pillow", 0.3),
            ("Wardrobe", 0.3),
        ],
        min_cues: 1,
        anchors: &["Bed", "Four-poster", "Crib"],
    },
    Scene {
        name: "Bathroom",
        parents: ROOM,
        cues: &[
            ("Toilet", 0.8),
            ("Toilet Seat", 0.8),
            ("Bathtub", 0.7),
            ("Shower Curtain", 0.7),
            ("Washbasin", 0.6),
            ("Sink", 0.3),
            ("Toilet Tissue", 0.4),
            ("Toothbrush", 0.3),
        ],
        min_cues: 1,
        anchors: &[
            "Toilet",
            "Toilet Seat",
            "Bathtub",
            "Shower Curtain",
            "Washbasin",
        ],
    },
    Scene {
        name: "Room",
        parents: &["Indoors"],
        cues: &[
            ("Couch", 0.5),
            ("Bed", 0.5),
            ("Chair", 0.4),
            ("Dining Table", 0.4),
            ("Television", 0.4),
            ("Bookcase", 0.4),
            ("Wardrobe", 0.4),
            ("Desk", 0.3),
            ("Window Shade", 0.3),
            ("Potted Plant", 0.2),
            ("Clock", 0.2),
        ],
        min_cues: 2,
        anchors: &[],
    },
    Scene {
        name: "Restaurant",
        parents: &["Indoors"],
        cues: &[("Restaurant", 1.0)],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Library",
        parents: &["Indoors"],
        cues: &[("Library", 1.0), ("Bookshop", 0.5)],
        min_cues: 1,
        anchors: &[],
    },
    Scene {
        name: "Shop",
        parents: &["Indoors"],
        cues: &[
            ("Bakery", 1.0),
            ("Barbershop", 1.0),
            ("Bookshop", 1.0),
            ("Butcher Shop", 1.0),
            ("Grocery Store", 1.0),
            ("Shoe Shop", 1.0),
            ("Tobacco Shop", 1.0),
            ("Toyshop", 1.0),
            ("Confectionery", 1.0),
        ],
        min_cues: 1,
        anchors: &[],
    },
    // --- outdoors without a named scene
    Scene {
        name: "Outdoors",
        parents: &[],
        cues: &[
            ("Kite", 0.7),
            ("Zebra", 0.6),
            ("Giraffe", 0.6),
            ("Elephant", 0.5),
            ("Horse", 0.4),
            ("Cow", 0.4),
            ("Sheep", 0.4),
            ("Boat", 0.4),
            ("Bench", 0.2),
            ("Surfboard", 0.5),
            ("Ski", 0.5),
            ("Snowboard", 0.5),
        ],
        min_cues: 1,
        anchors: &[],
    },
];

/// How many boxes of one object count as separate evidence.
const MAX_INSTANCES: usize = 3;

/// The classifier's place classes: they count as cues from
/// [`SCENE_CUE_FLOOR`], below the labels' threshold, because a landscape
/// spreads the classifier's belief over several of them (Alp 44, Valley
/// 28, Lakeside 16 on a mountain lake) with none of them sure. Objects
/// count only as labels.
const PLACE_CLASSES: &[&str] = &[
    "Seashore",
    "Sandbar",
    "Lakeside",
    "Promontory",
    "Breakwater",
    "Coral Reef",
    "Alp",
    "Volcano",
    "Valley",
    "Cliff",
    "Restaurant",
    "Library",
    "Bakery",
    "Barbershop",
    "Bookshop",
    "Butcher Shop",
    "Grocery Store",
    "Shoe Shop",
    "Tobacco Shop",
    "Toyshop",
    "Confectionery",
];

/// The lowest classifier confidence a place class counts from as a cue.
pub(crate) const SCENE_CUE_FLOOR: f32 = 5.0;

/// The scene labels `labels` (one image's merged answer) and `weak` (the
/// classifier's labels from [`SCENE_CUE_FLOOR`]; only its place classes
/// count) support at `min_confidence` or more, each with its parents as
/// labels; to be merged into the answer ([`super::local::merge_labels`]).
pub(crate) fn scene_labels(labels: &[Label], weak: &[Label], min_confidence: f32) -> Vec<Label> {
    let same = |l: &&Label, name: &str| l.name.eq_ignore_ascii_case(name);
    let find = |name: &str| {
        labels.iter().find(|l| same(l, name)).or_else(|| {
            PLACE_CLASSES
                .iter()
                .any(|p| p.eq_ignore_ascii_case(name))
                .then(|| weak.iter().find(|l| same(l, name)))
                .flatten()
        })
    };
    let mut out: Vec<Label> = Vec::new();
    for scene in SCENES {
        let mut miss = 1.0f64;
        let mut cues = 0;
        let mut anchored = scene.anchors.is_empty();
        for &(cue, weight) in scene.cues {
            let Some(label) = find(cue) else { continue };
            cues += 1;
            anchored |= scene.anchors.iter().any(|a| a.eq_ignore_ascii_case(cue));
            let mut evidence: Vec<f32> = label
                .instances
                .iter()
                .filter_map(|i| i.confidence)
                .collect();
            evidence.sort_by(|a, b| b.total_cmp(a));
            evidence.truncate(MAX_INSTANCES);
            if evidence.is_empty() {
                evidence.push(label.confidence);
            }
            for c in evidence {
                let p = f64::from(weight) * f64::from(c.clamp(0.0, 100.0)) / 100.0;
                miss *= 1.0 - p;
            }
        }
        if cues < scene.min_cues || !anchored {
            continue;
        }
        let confidence = ((1.0 - miss) * 100_000.0).round() / 1000.0;
        let confidence = confidence as f32;
        if confidence <= 0.0 || confidence < min_confidence {
            continue;
        }
        let label = upsert(&mut out, scene.name, confidence);
        for p in scene.parents {
            if !label.parents.iter().any(|x| x.name == *p) {
                label.parents.push(NameRef::new(*p));
            }
        }
        for (i, p) in scene.parents.iter().enumerate() {
            let parent = upsert(&mut out, p, confidence);
            for q in &scene.parents[i + 1..] {
                if !parent.parents.iter().any(|x| x.name == *q) {
                    parent.parents.push(NameRef::new(*q));
                }
            }
        }
    }
    out
}

/// The label called `name` in `labels`, raised to `confidence`, or a new one.
fn upsert<'a>(labels: &'a mut Vec<Label>, name: &str, confidence: f32) -> &'a mut Label {
    let i = match labels.iter().position(|l| l.name == name) {
        Some(i) => {
            labels[i].confidence = labels[i].confidence.max(confidence);
            i
        }
        None => {
            labels.push(Label::new(name.to_string(), confidence));
            labels.len() - 1
        }
    };
    &mut labels[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, confidence: f32) -> Label {
        Label::new(name.to_string(), confidence)
    }

    fn find<'a>(labels: &'a [Label], name: &str) -> Option<&'a Label> {
        labels.iter().find(|l| l.name == name)
    }

    #[test]
    fn seashore_is_a_beach_outdoors_in_nature_as_sure_as_the_evidence() {
        let scenes = scene_labels(&[label("Seashore", 80.0)], &[], 55.0);
        let beach = find(&scenes, "Beach").unwrap();
        assert_eq!(beach.confidence, 80.0);
        let parents: Vec<&str> = beach.parents.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(parents, ["Shoreline", "Outdoors", "Nature"]);
        for p in ["Shoreline", "Outdoors", "Nature"] {
            assert!(find(&scenes, p).unwrap().confidence >= 80.0, "{p}");
        }
        assert!(find(&scenes, "Indoors").is_none());
    }

    #[test]
    fn objects_together_make_a_room_one_alone_does_not() {
        let alone = scene_labels(&[label("Couch", 90.0)], &[], 55.0);
        assert!(find(&alone, "Living Room").is_none());
        let together = scene_labels(
            &[
                label("Couch", 90.0),
                label("Television", 80.0),
                label("Chair", 70.0),
            ],
            &[],
            55.0,
        );
        let room = find(&together, "Living Room").unwrap();
        // 1 - (1 - .63)(1 - .48)(1 - .21) = 0.848
        assert!((room.confidence - 84.8).abs() < 0.1, "{room:?}");
        assert!(find(&together, "Indoors").unwrap().confidence >= room.confidence);
        // Chairs alone are no living room.
        let chairs = scene_labels(
            &[label("Chair", 90.0), label("Potted Plant", 90.0)],
            &[],
            0.0,
        );
        assert!(find(&chairs, "Living Room").is_none());
    }

    #[test]
    fn bus_cars_and_people_are_a_city_street() {
        let scenes = scene_labels(
            &[
                label("Bus", 85.0),
                label("Car", 80.0),
                label("Person", 90.0),
            ],
            &[],
            55.0,
        );
        for name in ["Street", "City", "Urban", "Outdoors", "Road"] {
            let l = find(&scenes, name).unwrap_or_else(|| panic!("{name} in {scenes:?}"));
            assert!(l.confidence < 100.0, "{l:?}");
        }
        // People and a bicycle in a park are no street.
        let park = scene_labels(&[label("Person", 95.0), label("Bicycle", 90.0)], &[], 0.0);
        assert!(find(&park, "Street").is_none());
    }

    #[test]
    fn weak_place_classes_add_up_but_weak_objects_do_not() {
        // A mountain lake as the classifier sees it: no class sure.
        let weak = [
            label("Alp", 43.8),
            label("Valley", 28.4),
            label("Lakeside", 16.1),
            label("Car", 40.0),
            label("Bus", 40.0),
        ];
        let scenes = scene_labels(&[], &weak, 55.0);
        // 1 - (1 - .9 x .438)(1 - .9 x .284)(1 - .8 x .161) = 0.607
        let landscape = find(&scenes, "Landscape").unwrap_or_else(|| panic!("{scenes:?}"));
        assert!((landscape.confidence - 60.7).abs() < 0.1, "{landscape:?}");
        assert!(find(&scenes, "Outdoors").unwrap().confidence >= landscape.confidence);
        assert!(
            find(&scenes, "Lake").is_none(),
            "Lakeside 16 alone is no lake"
        );
        for name in ["Street", "City", "Road"] {
            assert!(find(&scenes, name).is_none(), "weak objects made {name}");
        }
        // The same classes as labels count as well.
        let strong = scene_labels(&weak[..3], &[], 55.0);
        assert!(find(&strong, "Landscape").is_some());
    }
}
