//! The shipped local models, loaded once for the whole test binary (each
//! load is tens of megabytes), and the evaluation photos.

use std::path::Path;
use std::sync::OnceLock;

use imgtag::detection::engine::{EngineChoice, EngineKind};
use imgtag::detection::local::LocalModel;

/// The local detector on tract (the engine every build has).
pub fn tract() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        LocalModel::load_with(EngineChoice::Exactly(EngineKind::Tract))
            .expect("the embedded models load")
    })
}

/// The bytes of `assets/eval/NAME`.
pub fn eval(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/eval")
            .join(name),
    )
    .unwrap()
}
