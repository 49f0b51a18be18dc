//! The demo bucket: a local folder made from the licensed samples in
//! `assets/`, with images in every status, so imgtag can be tried with no
//! cloud account.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::contract::{ImgTagInfo, Label, MetadataDoc, NameRef, SCHEMA_VERSION, SourceRef};

const CHELSEA: &[u8] = include_bytes!("../assets/samples/chelsea.png");
const COFFEE: &[u8] = include_bytes!("../assets/samples/coffee.jpg");
const ROCKET: &[u8] = include_bytes!("../assets/samples/rocket.jpg");
const ASTRONAUT: &[u8] = include_bytes!("../assets/samples/astronaut.jpg");

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
pub fn default_dir() -> Result<PathBuf, DemoError> {
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

/// The demo's objects: key and content.
pub fn objects() -> Vec<(&'static str, Vec<u8>)> {
    let coffee_key = "uploads/drinks/coffee.jpg";
    vec![
        ("uploads/animals/chelsea.png", CHELSEA.to_vec()),
        // The weak result an operator should fix: a cat that only got
        // "Feline 65.3", in the seed's minimal shape.
        (
            "metadata/animals/chelsea.png.json",
            br#"{"Labels":[{"Name":"Feline","Confidence":65.3}]}"#.to_vec(),
        ),
        (coffee_key, COFFEE.to_vec()),
        (
            "metadata/drinks/coffee.jpg.json",
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
        ("uploads/space/astronaut.jpg", ASTRONAUT.to_vec()),
        (
            "metadata/space/astronaut.json",
            br#"[{"Name":"Person","Confidence":99.2},{"Name":"Astronaut","Confidence":88.5,"Parents":[{"Name":"Person"}]}]"#.to_vec(),
        ),
        ("uploads/space/rocket launch.jpg", ROCKET.to_vec()),
        ("uploads/not-an-image.jpg", b"This is a text file named .jpg.\n".to_vec()),
        ("uploads/corrupt.jpg", COFFEE[..COFFEE.len() / 3].to_vec()),
        // Metadata whose image was deleted.
        (
            "metadata/deleted-photo.jpg.json",
            br#"{"Labels":[{"Name":"Dog","Confidence":90.0}]}"#.to_vec(),
        ),
    ]
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
