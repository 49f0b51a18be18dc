//! The inference engine under the local detector's two models: tract (pure
//! Rust, always built) or onnxruntime (feature `ort`, in the default build:
//! the `ort` crate loading `libonnxruntime` at run time, nothing linked or
//! downloaded at build time).
//!
//! Both engines take the same preprocessed tensor and return the model's
//! one output as plain `f32`s, so decoding, preprocessing and everything
//! after the model is shared and their answers differ only by the
//! engines' arithmetic (last digits of a confidence).
//!
//! Which engine runs: [`EngineChoice`], from `IMGTAG_ENGINE`
//! (`auto`, `tract`, `onnxruntime`). The library is looked for by
//! [`Search`], without running anything: `ORT_DYLIB_PATH` (ort's
//! convention) when set, else the loader's directories, else the
//! `onnxruntime` Python package's `capi/libonnxruntime.so.*` in the
//! site-packages a `pip install onnxruntime` writes to (the active virtualenv
//! or conda env, the user's, the system's). `auto` (the default) takes
//! onnxruntime when this build has it and the library loads (about 2x
//! faster, see docs/detectors.md), else tract with one line saying how to
//! get the faster engine; an explicit `onnxruntime` that cannot be had is
//! an error, never a silent fallback. `imgtag env` prints the outcome.

use std::io::Cursor;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::model_error::ModelError;

/// The variable that selects the engine.
pub(crate) const ENGINE_ENV: &str = "IMGTAG_ENGINE";
/// The variable that names the onnxruntime library (the `ort` crate's).
pub(crate) const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// An inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// tract-onnx, pure Rust.
    Tract,
    /// onnxruntime through the `ort` crate (feature `ort`).
    OnnxRuntime,
}

impl EngineKind {
    /// The name used by `IMGTAG_ENGINE` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Tract => "tract",
            EngineKind::OnnxRuntime => "onnxruntime",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which engine to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// onnxruntime if built in and its library loads, else tract.
    #[default]
    Auto,
    /// This engine or an error.
    Exactly(EngineKind),
}

impl std::str::FromStr for EngineChoice {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(EngineChoice::Auto),
            "tract" => Ok(EngineChoice::Exactly(EngineKind::Tract)),
            "onnxruntime" | "ort" => Ok(EngineChoice::Exactly(EngineKind::OnnxRuntime)),
            other => Err(ModelError::Model(format!(
                "unknown engine {other:?} in {ENGINE_ENV} (expected auto, tract or onnxruntime)"
            ))),
        }
    }
}

impl EngineChoice {
    /// From `IMGTAG_ENGINE` (unset: [`EngineChoice::Auto`]).
    pub fn from_env() -> Result<Self, ModelError> {
        std::env::var(ENGINE_ENV).map_or(Ok(EngineChoice::Auto), |v| v.parse())
    }

    /// The engine this choice comes to on this machine: for `Auto`,
    /// onnxruntime when this build has it and the library is found
    /// ([`Search::from_env`]) and loads, else tract with a one-line notice
    /// (a warning in the log) saying how to get the faster engine.
    pub fn resolve(self) -> Result<EngineKind, ModelError> {
        let resolution = self.resolve_in(&Search::from_env())?;
        if let Some(notice) = &resolution.notice {
            tracing::warn!("{notice}");
        }
        Ok(resolution.kind)
    }

    /// [`EngineChoice::resolve`] with the library looked for by `search`,
    /// saying where it was found and why this engine; no notice is
    /// emitted (the caller shows [`Resolution::notice`]).
    pub fn resolve_in(self, search: &Search) -> Result<Resolution, ModelError> {
        if self == EngineChoice::Exactly(EngineKind::Tract) {
            return Ok(Resolution {
                kind: EngineKind::Tract,
                library: None,
                version: None,
                why: format!("asked for (--engine tract, {ENGINE_ENV} or the config's engine)"),
                notice: None,
            });
        }
        if !cfg!(feature = "ort") {
            let why = "this imgtag was built without the onnxruntime engine (cargo feature `ort`)";
            return match self {
                EngineChoice::Auto => Ok(Resolution {
                    kind: EngineKind::Tract,
                    library: None,
                    version: None,
                    why: why.into(),
                    notice: None,
                }),
                EngineChoice::Exactly(_) => Err(ModelError::Model(why.into())),
            };
        }
        let failure = match search.locate() {
            Ok(found) => match load_library(&found.path) {
                Ok(version) => {
                    let asked = match self {
                        EngineChoice::Auto => "auto",
                        EngineChoice::Exactly(_) => "asked for",
                    };
                    return Ok(Resolution {
                        kind: EngineKind::OnnxRuntime,
                        why: format!("{asked}: the library was found {}", found.how),
                        library: Some(found),
                        version: Some(version),
                        notice: None,
                    });
                }
                Err(e) => format!("found {} but it does not load: {e}", found.how),
            },
            Err(reason) => reason,
        };
        match self {
            EngineChoice::Auto => Ok(Resolution {
                kind: EngineKind::Tract,
                library: None,
                version: None,
                why: format!("auto: {failure}"),
                notice: Some(fallback_notice(&failure)),
            }),
            EngineChoice::Exactly(_) => Err(ModelError::Model(format!(
                "onnxruntime engine: {failure}; {HOW_TO_GET}"
            ))),
        }
    }
}

/// How to get the onnxruntime engine, for messages.
pub(crate) const HOW_TO_GET: &str = "`pip install onnxruntime` (>= 1.20) puts it where imgtag \
     looks, or set ORT_DYLIB_PATH to a libonnxruntime";

/// The one line `auto` says when it falls back to tract.
pub(crate) fn fallback_notice(failure: &str) -> String {
    if failure.starts_with("no onnxruntime library found") {
        format!("using tract; onnxruntime is about 2x faster: {HOW_TO_GET} (`imgtag env` to check)")
    } else {
        format!("using tract ({failure}); onnxruntime is about 2x faster: {HOW_TO_GET}")
    }
}

/// What an [`EngineChoice`] came to, and why.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The engine that runs.
    pub kind: EngineKind,
    /// The onnxruntime library, when that engine runs.
    pub library: Option<Located>,
    /// The loaded library's version.
    pub version: Option<String>,
    /// Why this engine, in a sentence.
    pub why: String,
    /// The line `auto` shows when it falls back to tract.
    pub notice: Option<String>,
}

impl std::fmt::Display for Resolution {
    /// The diagnostics' lines (`imgtag env`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "engine: {}", self.kind)?;
        writeln!(f, "why: {}", self.why)?;
        if let Some(lib) = &self.library {
            writeln!(f, "library: {}", lib.path.display())?;
        }
        if let Some(v) = &self.version {
            writeln!(f, "version: {v}")?;
        }
        if let Some(n) = &self.notice {
            writeln!(f, "notice: {n}")?;
        }
        Ok(())
    }
}

/// Where the onnxruntime library was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The library file (or, last resort, the bare name for the loader's
    /// own search: `ld.so.cache`).
    pub path: std::path::PathBuf,
    /// How it was found, e.g. "in the user's site-packages (pip install --user onnxruntime)".
    pub how: String,
}

/// Where to look for the onnxruntime library, read from the environment
/// by [`Search::from_env`] (a test builds its own). Nothing is run: the
/// places are directories a documented install writes to.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// `ORT_DYLIB_PATH`: when set, the only place looked at.
    pub dylib_path: Option<std::path::PathBuf>,
    /// `LD_LIBRARY_PATH` (`DYLD_LIBRARY_PATH` on macOS), split.
    pub loader_path: Vec<std::path::PathBuf>,
    /// The system's library directories (/usr/local/lib, /usr/lib, ...).
    pub system_lib_dirs: Vec<std::path::PathBuf>,
    /// `PYTHONPATH`'s directories (a package directly under each).
    pub python_path: Vec<std::path::PathBuf>,
    /// Python prefixes with a `lib/python3.*/site-packages`, with how to
    /// name them: the active virtualenv, conda env, the user's base
    /// (`~/.local`). Looked at before the system's libraries.
    pub python_prefixes: Vec<(std::path::PathBuf, String)>,
    /// The system's Python prefixes (`/usr/local`, `/usr`), looked at
    /// after the system's libraries.
    pub system_python_prefixes: Vec<(std::path::PathBuf, String)>,
    /// Whether, when nothing is found, the bare library name is handed to
    /// the loader (its cache, `ld.so.cache`, knows what `ldconfig` knows).
    pub try_loader_cache: bool,
}

impl Search {
    /// The places this process's environment names, then the usual ones.
    pub fn from_env() -> Self {
        use std::path::PathBuf;
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let split = |k: &str| -> Vec<PathBuf> {
            var(k).map_or_else(Vec::new, |v| std::env::split_paths(&v).collect())
        };
        let loader_var = if cfg!(target_os = "macos") {
            "DYLD_LIBRARY_PATH"
        } else {
            "LD_LIBRARY_PATH"
        };
        let mut system_lib_dirs: Vec<PathBuf> = [
            "/usr/local/lib",
            "/usr/lib",
            "/usr/lib64",
            "/opt/onnxruntime/lib",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        system_lib_dirs.push(format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH).into());
        if cfg!(target_os = "macos") {
            system_lib_dirs.push("/opt/homebrew/lib".into());
        }
        let mut python_prefixes = Vec::new();
        if let Some(v) = var("VIRTUAL_ENV") {
            python_prefixes.push((
                PathBuf::from(v),
                "in the active virtualenv (VIRTUAL_ENV)".into(),
            ));
        }
        if let Some(v) = var("CONDA_PREFIX") {
            python_prefixes.push((
                PathBuf::from(v),
                "in the active conda env (CONDA_PREFIX)".into(),
            ));
        }
        let user_base = var("PYTHONUSERBASE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local")));
        if let Some(base) = user_base {
            python_prefixes.push((
                base,
                "in the user's site-packages (pip install --user onnxruntime)".into(),
            ));
        }
        if cfg!(target_os = "macos") {
            if let Some(h) = var("HOME") {
                let root = PathBuf::from(h).join("Library/Python");
                if let Ok(dirs) = std::fs::read_dir(&root) {
                    for d in dirs.flatten() {
                        python_prefixes.push((
                            d.path(),
                            "in the user's site-packages (pip install --user onnxruntime)".into(),
                        ));
                    }
                }
            }
            python_prefixes.push(("/opt/homebrew".into(), "in Homebrew's Python".into()));
        }
        let mut system_python_prefixes = Vec::new();
        for p in ["/usr/local", "/usr"] {
            system_python_prefixes
                .push((p.into(), format!("in the system's Python packages ({p})")));
        }
        Search {
            dylib_path: var(DYLIB_ENV).map(PathBuf::from),
            loader_path: split(loader_var),
            system_lib_dirs,
            python_path: split("PYTHONPATH"),
            python_prefixes,
            system_python_prefixes,
            try_loader_cache: true,
        }
    }

    /// The library, or why none (a sentence: what is wrong with
    /// `ORT_DYLIB_PATH`, or the places looked at).
    pub fn locate(&self) -> Result<Located, String> {
        use std::path::Path;
        if let Some(p) = &self.dylib_path {
            return if p.is_file() {
                Ok(Located {
                    path: p.clone(),
                    how: format!("at {DYLIB_ENV}"),
                })
            } else {
                Err(format!(
                    "cannot load the onnxruntime library: {DYLIB_ENV}={} is not a file",
                    p.display()
                ))
            };
        }
        for dir in &self.loader_path {
            if let Some(path) = library_in(dir) {
                return Ok(Located {
                    path,
                    how: "on the loader's path (LD_LIBRARY_PATH)".into(),
                });
            }
        }
        for dir in &self.python_path {
            if let Some(path) = library_in(&dir.join("onnxruntime").join("capi")) {
                return Ok(Located {
                    path,
                    how: "in a PYTHONPATH directory".into(),
                });
            }
        }
        if let Some(found) = python_package(&self.python_prefixes) {
            return Ok(found);
        }
        for dir in &self.system_lib_dirs {
            if let Some(path) = library_in(dir) {
                return Ok(Located {
                    path,
                    how: format!("in the system's libraries ({})", dir.display()),
                });
            }
        }
        if let Some(found) = python_package(&self.system_python_prefixes) {
            return Ok(found);
        }
        if self.try_loader_cache {
            let name = Path::new(LIBRARY_NAME);
            if loader_knows(name) {
                return Ok(Located {
                    path: name.to_path_buf(),
                    how: "by the loader's cache (ldconfig)".into(),
                });
            }
        }
        Err(format!(
            "no onnxruntime library found (looked in {DYLIB_ENV} (unset), the loader's path, \
             PYTHONPATH, the site-packages of the active virtualenv or conda env and the \
             user's, the system's libraries and site-packages)"
        ))
    }
}

/// The `onnxruntime` Python package's library under the first of
/// `prefixes` that has one.
fn python_package(prefixes: &[(std::path::PathBuf, String)]) -> Option<Located> {
    prefixes.iter().find_map(|(prefix, how)| {
        site_packages(prefix).iter().find_map(|site| {
            library_in(&site.join("onnxruntime").join("capi")).map(|path| Located {
                path,
                how: how.clone(),
            })
        })
    })
}

/// The library's file name on this platform.
const LIBRARY_NAME: &str = if cfg!(target_os = "macos") {
    "libonnxruntime.dylib"
} else if cfg!(windows) {
    "onnxruntime.dll"
} else {
    "libonnxruntime.so"
};

/// Whether `name` is the onnxruntime library (not one of its provider
/// libraries): `libonnxruntime.so`, `libonnxruntime.so.1.31.1`,
/// `libonnxruntime.1.31.1.dylib`, `onnxruntime.dll`.
fn is_library_name(name: &str) -> bool {
    name == LIBRARY_NAME
        || name.starts_with("libonnxruntime.so.")
        || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
}

/// The onnxruntime library in `dir`, the highest version if several.
fn library_in(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut found: Vec<(Vec<u32>, std::path::PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !is_library_name(&name) {
                return None;
            }
            let path = e.path();
            // A dangling link or a directory is not a library.
            path.is_file().then(|| (version_in(&name), path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The numbers in a library's file name (`libonnxruntime.so.1.31.1`: 1, 31, 1).
fn version_in(name: &str) -> Vec<u32> {
    name.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// `prefix/lib/python3.*/{site,dist}-packages` and Debian's
/// `prefix/lib/python3/dist-packages`, newest Python first.
fn site_packages(prefix: &std::path::Path) -> Vec<std::path::PathBuf> {
    let lib = prefix.join("lib");
    let mut pythons: Vec<(Vec<u32>, std::path::PathBuf)> = std::fs::read_dir(&lib)
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.starts_with("python3")
                        .then(|| (version_in(name.trim_start_matches("python")), e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    pythons.sort();
    let mut out = Vec::new();
    for (_, p) in pythons.into_iter().rev() {
        out.push(p.join("site-packages"));
        out.push(p.join("dist-packages"));
    }
    // macOS user installs: ~/Library/Python/3.x/lib/python/site-packages.
    out.push(lib.join("python").join("site-packages"));
    out
}

/// Whether the loader's cache lists the library (`/etc/ld.so.cache`
/// holds the names `ldconfig` found; a byte search, nothing run).
fn loader_knows(name: &std::path::Path) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    std::fs::read("/etc/ld.so.cache")
        .map(|cache| {
            let needle = format!("{name}\0");
            cache.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .unwrap_or(false)
}

/// Loads the library at `path` (once per process: a second call reports
/// the first outcome) and returns its version.
fn load_library(path: &std::path::Path) -> Result<String, ModelError> {
    #[cfg(feature = "ort")]
    {
        onnx::environment_at(path).map(|(_, version)| version)
    }
    #[cfg(not(feature = "ort"))]
    {
        let _ = path;
        Err(onnxruntime_available().unwrap_err())
    }
}

/// Whether the onnxruntime engine can run here: `Ok` when this build has
/// it and the library is found and loads (loaded once per process).
pub fn onnxruntime_available() -> Result<(), ModelError> {
    #[cfg(feature = "ort")]
    {
        onnx::environment().map(|_| ())
    }
    #[cfg(not(feature = "ort"))]
    {
        Err(ModelError::Model(
            "this imgtag was built without the onnxruntime engine (cargo feature `ort`)".into(),
        ))
    }
}

/// A loaded model with one `f32` output, ready for its load-time input
/// shape and able to run others (a fully convolutional model on a smaller
/// canvas, a text line of another width). Cheap to clone, `Send + Sync`:
/// every call runs with its own state.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Inner,
    input_shape: [usize; 4],
    /// Every input's height and width is a multiple of this (1: any).
    step: usize,
}

#[derive(Debug, Clone)]
enum Inner {
    Tract(Arc<TractPlans>),
    #[cfg(feature = "ort")]
    Ort(Arc<onnx::Pool>),
}

/// tract's optimised plans of one model, one per input shape: tract is
/// several times slower with a symbolic dimension, so each shape gets a
/// plan of its own when first met, kept for the process.
#[derive(Debug)]
struct TractPlans {
    source: PlanSource,
    plans: std::sync::Mutex<Vec<([usize; 4], Arc<TypedRunnableModel>)>>,
}

/// Where a shape's plan is made from.
#[derive(Debug)]
enum PlanSource {
    /// The ONNX file, parsed, analysed and decluttered again for each
    /// shape (YOLOX-Nano: about 190 ms); its convolutions run channels
    /// last if `channels_last`.
    File {
        model: &'static [u8],
        channels_last: bool,
    },
    /// The model decluttered once ([`lean_declutter`]) with its input
    /// `step·h x step·w`, `h` and `w` symbols: a shape's plan only binds
    /// them and optimises (YOLOX-Nano: about 70 ms).
    Symbolic {
        model: TypedModel,
        height: Symbol,
        width: Symbol,
        step: usize,
    },
}

impl TractPlans {
    /// With the plan for `shape` made now (a model that cannot run it
    /// fails here).
    fn fixed(
        model: &'static [u8],
        shape: [usize; 4],
        channels_last: bool,
    ) -> Result<Self, ModelError> {
        let plans = vec![(shape, file_plan(model, shape, channels_last)?)];
        Ok(TractPlans {
            source: PlanSource::File {
                model,
                channels_last,
            },
            plans: std::sync::Mutex::new(plans),
        })
    }

    /// Decluttered now for any height and width that are multiples of
    /// `step`; no plan until a shape is met.
    fn symbolic(model: &'static [u8], step: usize) -> Result<Self, ModelError> {
        let mut parsed = tract_onnx::onnx()
            .model_for_read(&mut Cursor::new(model))
            .map_err(model_err)?;
        let (height, width) = (parsed.symbols.sym("h"), parsed.symbols.sym("w"));
        let side = |s: &Symbol| TDim::from(s.clone()) * step as i64;
        let shape = ShapeFact::from(&[1.into(), 3.into(), side(&height), side(&width)]);
        parsed
            .set_input_fact(0, f32::fact(shape).into())
            .map_err(model_err)?;
        let mut model = parsed.into_typed().map_err(model_err)?;
        lean_declutter(&mut model)?;
        Ok(TractPlans {
            source: PlanSource::Symbolic {
                model,
                height,
                width,
                step,
            },
            plans: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The plan for `shape`, made outside the lock if need be (another
    /// shape may be wanted meanwhile; two threads racing on one shape both
    /// make it and one copy is kept).
    fn plan(&self, shape: [usize; 4]) -> Result<Arc<TypedRunnableModel>, ModelError> {
        let lock = || self.plans.lock().unwrap_or_else(|e| e.into_inner());
        let find = |plans: &[([usize; 4], Arc<TypedRunnableModel>)]| {
            plans
                .iter()
                .find(|(s, _)| *s == shape)
                .map(|(_, p)| p.clone())
        };
        if let Some(plan) = find(&lock()) {
            return Ok(plan);
        }
        let made = self.make(shape)?;
        let mut plans = lock();
        if let Some(plan) = find(&plans) {
            return Ok(plan);
        }
        plans.push((shape, made.clone()));
        Ok(made)
    }

    fn make(&self, shape: [usize; 4]) -> Result<Arc<TypedRunnableModel>, ModelError> {
        match &self.source {
            PlanSource::File {
                model,
                channels_last,
            } => file_plan(model, shape, *channels_last),
            PlanSource::Symbolic {
                model,
                height,
                width,
                step,
            } => {
                let sides = std::collections::HashMap::from([
                    (height.clone(), TDim::from((shape[2] / step) as i64)),
                    (width.clone(), TDim::from((shape[3] / step) as i64)),
                ]);
                let mut model = model.set_symbols(&sides).map_err(model_err)?;
                lean_declutter(&mut model)?;
                model
                    .optimize()
                    .and_then(|()| model.into_runnable())
                    .map_err(model_err)
            }
        }
    }
}

impl Engine {
    /// Loads `model` (ONNX bytes) on `kind`, ready for `input_shape` (a
    /// model that cannot run it fails here).
    pub fn load(
        kind: EngineKind,
        model: &'static [u8],
        input_shape: [usize; 4],
    ) -> Result<Self, ModelError> {
        Self::load_on(kind, model, input_shape, 1, || {
            TractPlans::fixed(model, input_shape, false)
        })
    }

    /// [`Engine::load`], with tract running the model's convolutions
    /// channels last: MobileNetV2 takes 17 ms a run instead of 19, its
    /// depthwise convolutions 3.9 ms instead of 5.7 (docs/detectors.md,
    /// "Levers"); the numbers differ only in rounding. onnxruntime is
    /// unchanged.
    pub fn load_channels_last(
        kind: EngineKind,
        model: &'static [u8],
        input_shape: [usize; 4],
    ) -> Result<Self, ModelError> {
        Self::load_on(kind, model, input_shape, 1, || {
            TractPlans::fixed(model, input_shape, true)
        })
    }

    /// [`Engine::load`] for a fully convolutional model whose every run
    /// may have another height and width, each a multiple of `step` (its
    /// coarsest stride). tract declutters it once for any such size and
    /// makes no plan until a size is met; a size that is no multiple of
    /// `step` is an error on both engines. `input_shape` is only the
    /// shape [`Engine::run`] takes.
    pub fn load_sides_multiple_of(
        kind: EngineKind,
        model: &'static [u8],
        input_shape: [usize; 4],
        step: usize,
    ) -> Result<Self, ModelError> {
        let step = step.max(1);
        Self::load_on(kind, model, input_shape, step, || {
            TractPlans::symbolic(model, step)
        })
    }

    fn load_on(
        kind: EngineKind,
        model: &'static [u8],
        input_shape: [usize; 4],
        step: usize,
        tract: impl FnOnce() -> Result<TractPlans, ModelError>,
    ) -> Result<Self, ModelError> {
        let inner = match kind {
            EngineKind::Tract => Inner::Tract(Arc::new(tract()?)),
            EngineKind::OnnxRuntime => Self::load_ort(model)?,
        };
        Ok(Engine {
            inner,
            input_shape,
            step,
        })
    }

    #[cfg(feature = "ort")]
    fn load_ort(model: &'static [u8]) -> Result<Inner, ModelError> {
        Ok(Inner::Ort(Arc::new(onnx::Pool::new(model)?)))
    }

    #[cfg(not(feature = "ort"))]
    fn load_ort(_: &'static [u8]) -> Result<Inner, ModelError> {
        Err(onnxruntime_available().unwrap_err())
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        match self.inner {
            Inner::Tract(_) => EngineKind::Tract,
            #[cfg(feature = "ort")]
            Inner::Ort(_) => EngineKind::OnnxRuntime,
        }
    }

    /// Runs the model on `input` (the full input tensor, NCHW, of the
    /// load-time shape) and returns its first output, flattened.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.run_shaped(input, self.input_shape)
    }

    /// [`Engine::run`] on an input of `shape`.
    pub fn run_shaped(&self, input: &[f32], shape: [usize; 4]) -> Result<Vec<f32>, ModelError> {
        let expected: usize = shape.iter().product();
        if input.len() != expected {
            return Err(ModelError::BadLength {
                expected,
                got: input.len(),
            });
        }
        if !shape[2].is_multiple_of(self.step) || !shape[3].is_multiple_of(self.step) {
            return Err(ModelError::Model(format!(
                "input {}x{}: this model takes sides that are multiples of {}",
                shape[2], shape[3], self.step
            )));
        }
        match &self.inner {
            Inner::Tract(plans) => tract_run(&plans.plan(shape)?, input, shape),
            #[cfg(feature = "ort")]
            Inner::Ort(pool) => pool.run(input, shape),
        }
    }
}

#[cfg(test)]
impl Engine {
    /// The operators of tract's plan for the load-time shape, in order.
    pub(crate) fn tract_ops(&self) -> Vec<String> {
        let Inner::Tract(plans) = &self.inner else {
            return Vec::new();
        };
        let plan = plans.plan(self.input_shape).unwrap();
        plan.model()
            .nodes
            .iter()
            .map(|n| n.op().name().to_string())
            .collect()
    }
}

fn model_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Model(format!("{e:#}"))
}

/// tract's declutter passes the detector's plans leave out, by name (see
/// `lean_declutter`, docs/detectors.md "Levers").
pub const PASSES_LEFT_OUT: [&str; 2] = ["ChangeAxes", "ConcatThenEinsum"];

/// tract's declutter without [`PASSES_LEFT_OUT`], for the detector and the
/// classifier's first declutter (docs/detectors.md, "Levers"). The text
/// models keep tract's own: there the lean plans kept layout moves and ran
/// no faster. On YOLOX-Nano, `ChangeAxes` took about
/// 180 ms of a 300 ms load (it tries to drop each unit axis, the batch of
/// every tensor, across the whole graph) and changed no node of the plan;
/// `ConcatThenEinsum` splits each 1x1 convolution after a concatenation
/// into one product per input, which tract ran 3-7% slower than the one
/// product it replaces. Without both: load about 110 ms, a canvas's plan
/// 70 ms instead of 85, outputs equal but for rounding.
fn lean_declutter(model: &mut TypedModel) -> Result<(), ModelError> {
    lean_optimizer().optimize(model).map_err(model_err)
}

/// tract's declutter without [`PASSES_LEFT_OUT`], as the detector's plans are
/// made (public for `examples/tract_ops`).
pub fn lean_optimizer() -> tract_onnx::tract_core::optim::Optimizer {
    let mut optimizer = tract_onnx::tract_core::optim::Optimizer::declutter();
    optimizer.passes.retain(|pass| {
        let name = format!("{pass:?}");
        !PASSES_LEFT_OUT.iter().any(|left| name.starts_with(left))
    });
    optimizer
}

fn file_plan(
    model: &'static [u8],
    shape: [usize; 4],
    channels_last: bool,
) -> Result<Arc<TypedRunnableModel>, ModelError> {
    let mut typed = tract_onnx::onnx()
        .model_for_read(&mut Cursor::new(model))
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_typed())
        .map_err(model_err)?;
    if channels_last {
        // tract's own rewrite, on the decluttered graph; the moves between
        // layouts cancel out (in `into_optimized`'s full declutter, which
        // needs `ChangeAxes`) but at the input, which stays channels first
        // (0.6 ms a run). Lean before it: the same plan, 30 ms less load.
        lean_declutter(&mut typed)?;
        let rewrite = tract_onnx::tract_core::transform::get_transform("conv_nhwc")
            .map_err(model_err)?
            .ok_or_else(|| ModelError::Model("tract has no conv_nhwc transform".into()))?;
        typed.transform(&*rewrite).map_err(model_err)?;
    }
    // Declutters (again, after the rewrite) and optimises.
    typed
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(model_err)
}

fn tract_run(
    plan: &Arc<TypedRunnableModel>,
    input: &[f32],
    shape: [usize; 4],
) -> Result<Vec<f32>, ModelError> {
    let input = Tensor::from_shape(&shape, input).map_err(model_err)?;
    let outputs = plan.run(tvec!(input.into())).map_err(model_err)?;
    let output = outputs
        .first()
        .ok_or_else(|| ModelError::Model("model produced no output".into()))?;
    // One copy of the whole buffer: iterating a view copies element by
    // element (about 1% of a small photo's CPU on YOLOX's 0.9 MB output).
    let plain = output.try_as_plain_ram().map_err(model_err)?;
    Ok(plain.as_slice::<f32>().map_err(model_err)?.to_vec())
}

#[cfg(feature = "ort")]
mod onnx {
    //! onnxruntime sessions. `Session::run` takes `&mut self` (onnxruntime
    //! is not safe to call concurrently on one session), so each model
    //! keeps a pool: a call takes an idle session or makes one, and gives
    //! it back. The pool grows to the number of images in flight (the
    //! detector caps that at one per core).

    use std::sync::{Mutex, OnceLock};

    use ort::session::Session;
    use ort::session::builder::GraphOptimizationLevel;
    use ort::value::TensorRef;

    use super::{DYLIB_ENV, HOW_TO_GET, ModelError, Search, model_err};

    type Loaded = (ort::environment::Environment, String);
    static ENVIRONMENT: OnceLock<Result<Loaded, String>> = OnceLock::new();

    /// The process's onnxruntime environment, the library found by
    /// [`Search::from_env`] loaded on first use.
    pub(super) fn environment() -> Result<&'static ort::environment::Environment, ModelError> {
        if let Some(loaded) = ENVIRONMENT.get() {
            return reported(loaded).map(|(env, _)| env);
        }
        let found = Search::from_env().locate().map_err(|reason| {
            ModelError::Model(format!("onnxruntime engine: {reason}; {HOW_TO_GET}"))
        })?;
        environment_at(&found.path).map(|(env, _)| env)
    }

    /// The environment with the library at `path`, and its version. The
    /// library is loaded once per process: a failure is remembered and
    /// reported the same way on every call (no panic, no retry storm), and
    /// a later call with another path gets the first library.
    pub(super) fn environment_at(
        path: &std::path::Path,
    ) -> Result<(&'static ort::environment::Environment, String), ModelError> {
        let loaded = ENVIRONMENT.get_or_init(|| {
            let builder = ort::init_from(path).map_err(|e| {
                format!(
                    "cannot load the onnxruntime library {} ({e}); {DYLIB_ENV} names a \
                     libonnxruntime.so (>= 1.20, e.g. onnxruntime/capi/libonnxruntime.so.* \
                     from the onnxruntime Python wheel)",
                    path.display()
                )
            })?;
            let env = builder
                .with_name("imgtag")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("onnxruntime environment: {e}"))?;
            Ok((env, version(path)))
        });
        reported(loaded).map(|(env, v)| (env, v.clone()))
    }

    fn reported(loaded: &'static Result<Loaded, String>) -> Result<&'static Loaded, ModelError> {
        loaded
            .as_ref()
            .map_err(|e| ModelError::Model(format!("onnxruntime engine: {e}")))
    }

    /// The library's version: from its file name, the link followed
    /// (`libonnxruntime.so.1.31.1`; onnxruntime's C API says its version
    /// only through a call ort keeps to itself), else its build info's
    /// commit. ort has already refused anything older than 1.20.
    fn version(path: &std::path::Path) -> String {
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let numbers = file
            .file_name()
            .and_then(|n| n.to_str())
            .map(super::version_in)
            .unwrap_or_default();
        if numbers.len() >= 2 {
            numbers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".")
        } else {
            let info = ort::info();
            let commit = info
                .split([',', ' '])
                .find_map(|p| p.trim().strip_prefix("git-commit-id="))
                .unwrap_or("unknown");
            format!(">= 1.20 (file name has none; build {commit})")
        }
    }

    /// Idle sessions of one model.
    #[derive(Debug)]
    pub(super) struct Pool {
        model: &'static [u8],
        idle: Mutex<Vec<Session>>,
    }

    impl Pool {
        /// Loads one session now, so a broken model fails at load time.
        pub(super) fn new(model: &'static [u8]) -> Result<Self, ModelError> {
            let first = session(model)?;
            Ok(Pool {
                model,
                idle: Mutex::new(vec![first]),
            })
        }

        pub(super) fn run(&self, input: &[f32], shape: [usize; 4]) -> Result<Vec<f32>, ModelError> {
            let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut session = match taken {
                Some(s) => s,
                None => session(self.model)?,
            };
            let result = run_one(&mut session, input, shape);
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(session);
            }
            result
        }
    }

    /// One session on one thread (`IMGTAG_ORT_THREADS` to change it):
    /// images run in parallel instead, one per core, which beats several
    /// threads per image on small models (see docs/detectors.md's figures).
    fn session(model: &[u8]) -> Result<Session, ModelError> {
        let env = environment()?;
        let threads = std::env::var("IMGTAG_ORT_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        Session::builder(env)
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(model))
            .map_err(model_err)
    }

    fn run_one(
        session: &mut Session,
        input: &[f32],
        shape: [usize; 4],
    ) -> Result<Vec<f32>, ModelError> {
        let shape: [i64; 4] = shape.map(|d| d as i64);
        let tensor = TensorRef::from_array_view((shape, input)).map_err(model_err)?;
        let outputs = session.run(ort::inputs![tensor]).map_err(model_err)?;
        let output = outputs
            .values()
            .next()
            .ok_or_else(|| ModelError::Model("model produced no output".into()))?;
        let (_, values) = output.try_extract_tensor::<f32>().map_err(model_err)?;
        Ok(values.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_unknown_is_an_error() {
        assert_eq!("auto".parse::<EngineChoice>().unwrap(), EngineChoice::Auto);
        assert_eq!(
            " Tract ".parse::<EngineChoice>().unwrap(),
            EngineChoice::Exactly(EngineKind::Tract)
        );
        assert_eq!(
            "onnxruntime".parse::<EngineChoice>().unwrap(),
            EngineChoice::Exactly(EngineKind::OnnxRuntime)
        );
        let err = "cuda".parse::<EngineChoice>().unwrap_err().to_string();
        assert!(
            err.contains("IMGTAG_ENGINE") && err.contains("cuda"),
            "{err}"
        );
    }

    #[test]
    fn library_names_and_versions() {
        for name in [
            "libonnxruntime.so",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime.1.31.1.dylib",
        ] {
            assert!(is_library_name(name) || cfg!(not(unix)), "{name}");
        }
        for name in [
            "libonnxruntime_providers_shared.so",
            "libonnxruntime_providers_cuda.so",
            "onnxruntime_pybind11_state.so",
        ] {
            assert!(!is_library_name(name), "{name}");
        }
        assert_eq!(version_in("libonnxruntime.so.1.31.1"), [1, 31, 1]);
        assert!(version_in("libonnxruntime.so.1.9.0") < version_in("libonnxruntime.so.1.31.1"));
    }

    #[test]
    fn the_lean_declutter_leaves_out_exactly_its_two_passes() {
        // Fails if a tract upgrade renames a pass: the plans would quietly
        // go back to the slower load and runs.
        let full = tract_onnx::tract_core::optim::Optimizer::declutter().passes;
        let names = |passes: &[Box<dyn tract_onnx::tract_core::optim::TypedPass>]| {
            passes.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>()
        };
        let (full, lean) = (names(&full), names(&lean_optimizer().passes));
        assert_eq!(lean.len() + PASSES_LEFT_OUT.len(), full.len(), "{full:?}");
        for left in PASSES_LEFT_OUT {
            assert!(
                full.iter().any(|n| n.starts_with(left)),
                "{left} in {full:?}"
            );
            assert!(
                !lean.iter().any(|n| n.starts_with(left)),
                "{left} in {lean:?}"
            );
        }
    }

    #[test]
    fn tract_is_always_there() {
        assert_eq!(
            EngineChoice::Exactly(EngineKind::Tract).resolve().unwrap(),
            EngineKind::Tract
        );
    }

    #[cfg(not(feature = "ort"))]
    #[test]
    fn onnxruntime_without_the_feature_is_a_clear_error() {
        let err = EngineChoice::Exactly(EngineKind::OnnxRuntime)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("feature `ort`"), "{err}");
        assert_eq!(EngineChoice::Auto.resolve().unwrap(), EngineKind::Tract);
    }
}
