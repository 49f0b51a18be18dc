//! The demo bucket: a local folder made from the licensed samples in
//! `assets/`, with images in every status, so imgtag can be tried with no
//! cloud account.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::contract::{ImgTagInfo, Label, Layout, MetadataDoc, NameRef, SCHEMA_VERSION, SourceRef};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");
const ROCKET: &[u8] = include_bytes!("../assets/samples/rocket.jpg");
const ASTRONAUT: &[u8] = include_bytes!("../assets/samples/astronaut.jpg");
// The review queue's photos: licensed in assets/eval/LICENSES.md (CC0,
// public domain, CC-BY-4.0, BSD-3-clause), 30-60 KB each.
const TWO_DOGS: &[u8] = include_bytes!("../assets/eval/two-dogs.jpg");
const OSPREY: &[u8] = include_bytes!("../assets/eval/osprey.jpg");
const WINE: &[u8] = include_bytes!("../assets/eval/wine-room.jpg");
const ROOM: &[u8] = include_bytes!("../assets/eval/room-chairs.jpg");
const KITES: &[u8] = include_bytes!("../assets/eval/kites-park.jpg");
const PIZZA: &[u8] = include_bytes!("../assets/eval/pizza.jpg");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot find a data directory for the demo bucket (is $HOME set?)")]
    NoDataDir,
    #[error("writing the demo bucket at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where `--demo` keeps its bucket: the platform data dir.
pub(crate) fn default_dir() -> Result<PathBuf, DemoError> {
    directories::ProjectDirs::from("", "", "imgtag")
        .map(|d| d.data_dir().join("demo-bucket"))
        .ok_or(DemoError::NoDataDir)
}

fn label(name: &str, confidence: f32, parents: &[&str]) -> Label {
    Label {
        parents: parents.iter().map(|p| NameRef::new(*p)).collect(),
        ..Label::new(name, confidence)
    }
}

fn tagged_doc(key: &str, data: &[u8], labels: Vec<Label>) -> Vec<u8> {
    MetadataDoc {
        labels,
        label_model_version: Some("3.0".into()),
        extra: Default::default(),
        imgtag: Some(ImgTagInfo {
            schema_version: SCHEMA_VERSION,
            source: SourceRef {
                bucket: "demo-bucket".into(),
                key: key.into(),
                etag: Some(format!("\"{}\"", hex::encode(Md5::digest(data)))),
                size: Some(data.len() as u64),
            },
            detector: Some("rekognition".into()),
            min_confidence: Some(55.0),
            max_labels: None,
            tagged_at: Some("2026-11-24T10:00:00Z".into()),
            tagged_by: Some("imgtag-lambda".into()),
            review: None,
            error: None,
            features: Vec::new(),
            settings: None,
            extra: Default::default(),
        }),
    }
    .to_json_bytes()
}

/// The seed's own document, verbatim: a cat whose generic labels are sure
/// and whose specific one is weak (`Feline 65.3`).
const SEED_CAT: &[u8] = br#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},{"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#;
/// An older pipeline's bare array of labels.
const LEGACY_ASTRONAUT: &[u8] = br#"[{"Name":"Person","Confidence":99.2},{"Name":"Astronaut","Confidence":88.5,"Parents":[{"Name":"Person"}]}]"#;
const ORPHAN: &[u8] = br#"{"Labels":[{"Name":"Dog","Confidence":90.0}]}"#;

/// Labels as a detector reports them: name, confidence, parents.
type Labels = &'static [(&'static str, f32, &'static [&'static str])];

/// A queue to try the review keys on (`f` to needs-review, then `a`,
/// digits, `u`): weak generic headlines whose fix is a suggestion (Dog,
/// Wine, Chair, Pizza), one right as it is (Bird), and one the detector
/// got wrong (a kite read as an aircraft: `e`).
const QUEUE: [(&str, &[u8], Labels); 6] = [
    (
        "uploads/queue/two-dogs.jpg",
        TWO_DOGS,
        &[
            ("Animal", 98.1, &[]),
            ("Mammal", 96.4, &["Animal"]),
            ("Pet", 90.2, &["Animal"]),
            ("Canine", 63.8, &["Mammal", "Animal"]),
        ],
    ),
    (
        "uploads/queue/osprey.jpg",
        OSPREY,
        &[("Animal", 97.5, &[]), ("Bird", 61.2, &["Animal"])],
    ),
    (
        "uploads/queue/wine-room.jpg",
        WINE,
        &[
            ("Beverage", 67.5, &[]),
            ("Alcohol", 62.0, &["Beverage"]),
            ("Indoors", 93.0, &[]),
        ],
    ),
    (
        "uploads/queue/room-chairs.jpg",
        ROOM,
        &[("Furniture", 68.0, &[]), ("Indoors", 97.2, &[])],
    ),
    (
        "uploads/queue/kites-park.jpg",
        KITES,
        &[
            ("Outdoors", 96.5, &[]),
            ("Aircraft", 57.9, &["Vehicle", "Transportation"]),
        ],
    ),
    ("uploads/queue/pizza.jpg", PIZZA, &[("Food", 68.2, &[])]),
];

/// A weak document for a queue image, as the Lambda would have written it.
fn weak(image: &'static str, data: &[u8], labels: &[(&str, f32, &[&str])]) -> (String, Vec<u8>) {
    let meta = Layout::default()
        .metadata_key(image)
        .expect("demo images are under uploads/");
    let labels = labels.iter().map(|(n, c, p)| label(n, *c, p)).collect();
    (meta, tagged_doc(image, data, labels))
}

/// The demo's objects: key and content.
pub fn objects() -> Vec<(String, Vec<u8>)> {
    let coffee_key = "uploads/drinks/coffee.jpg";
    let queue = QUEUE
        .iter()
        .flat_map(|&(k, data, labels)| [(k.into(), data.to_vec()), weak(k, data, labels)]);
    let mut all = vec![
        ("uploads/animals/chelsea.png".into(), CHELSEA.to_vec()),
        (
            "metadata/animals/chelsea.png.json".into(),
            SEED_CAT.to_vec(),
        ),
        (coffee_key.into(), COFFEE.to_vec()),
        (
            "metadata/drinks/coffee.jpg.json".into(),
            tagged_doc(
                coffee_key,
                COFFEE,
                vec![
                    label("Beverage", 97.4, &[]),
                    label("Coffee", 95.1, &["Beverage"]),
                    label("Cup", 93.8, &[]),
                    label("Saucer", 71.0, &["Pottery"]),
                ],
            ),
        ),
        // Tagged by an older pipeline: legacy key without the extension.
        ("uploads/space/astronaut.jpg".into(), ASTRONAUT.to_vec()),
        (
            "metadata/space/astronaut.json".into(),
            LEGACY_ASTRONAUT.to_vec(),
        ),
        ("uploads/space/rocket launch.jpg".into(), ROCKET.to_vec()),
        (
            "uploads/not-an-image.jpg".into(),
            b"This is a text file named .jpg.\n".to_vec(),
        ),
        (
            "uploads/corrupt.jpg".into(),
            COFFEE[..COFFEE.len() / 3].to_vec(),
        ),
        // Metadata whose image was deleted.
        ("metadata/deleted-photo.jpg.json".into(), ORPHAN.to_vec()),
    ];
    all.extend(queue);
    all
}

/// Makes the demo bucket at `dir` if it is not there yet (an existing demo
/// keeps the operator's changes) and returns its path.
pub fn ensure(dir: &Path) -> Result<PathBuf, DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    if !dir.join(".imgtag-demo").exists() {
        for (key, data) in objects() {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().expect("keys have a folder"))
                .map_err(io(&path))?;
            std::fs::write(&path, data).map_err(io(&path))?;
        }
        std::fs::write(dir.join(".imgtag-demo"), b"made by imgtag --demo\n").map_err(io(dir))?;
    }
    Ok(dir.to_path_buf())
}
