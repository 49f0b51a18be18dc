//! The inference engine under the local detector's two models: tract (pure
//! Rust, always built) or onnxruntime (feature `ort`: the `ort` crate
//! loading `libonnxruntime` at run time, nothing linked or downloaded at
//! build time).
//!
//! Both engines take the same preprocessed tensor and return the model's
//! one output as plain `f32`s, so decoding, preprocessing and everything
//! after the model is shared and their answers differ only by the
//! engines' arithmetic (last digits of a confidence).
//!
//! Which engine runs: [`EngineChoice`], from `IMGTAG_ENGINE`
//! (`auto`, `tract`, `onnxruntime`); the library from `ORT_DYLIB_PATH`
//! (ort's convention), else `libonnxruntime.so` on the loader's path.
//! `auto` (the default) takes onnxruntime when this build has it and the
//! library loads (about 2x faster, see docs/detectors.md), else tract; an
//! explicit `onnxruntime` that cannot be had is an error, never a silent
//! fallback.

use std::io::Cursor;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::local::DetectError;

/// The variable that selects the engine.
pub const ENGINE_ENV: &str = "IMGTAG_ENGINE";
/// The variable that names the onnxruntime library (the `ort` crate's).
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

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
    type Err = DetectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(EngineChoice::Auto),
            "tract" => Ok(EngineChoice::Exactly(EngineKind::Tract)),
            "onnxruntime" | "ort" => Ok(EngineChoice::Exactly(EngineKind::OnnxRuntime)),
            other => Err(DetectError::Model(format!(
                "unknown engine {other:?} in {ENGINE_ENV} (expected auto, tract or onnxruntime)"
            ))),
        }
    }
}

impl EngineChoice {
    /// From `IMGTAG_ENGINE` (unset: [`EngineChoice::Auto`]).
    pub fn from_env() -> Result<Self, DetectError> {
        std::env::var(ENGINE_ENV).map_or(Ok(EngineChoice::Auto), |v| v.parse())
    }

    /// The engine this choice comes to on this machine: for `Auto`,
    /// onnxruntime when this build has it and the library loads.
    pub fn resolve(self) -> Result<EngineKind, DetectError> {
        match self {
            EngineChoice::Exactly(EngineKind::Tract) => Ok(EngineKind::Tract),
            EngineChoice::Exactly(EngineKind::OnnxRuntime) => {
                onnxruntime_available().map(|()| EngineKind::OnnxRuntime)
            }
            EngineChoice::Auto => match onnxruntime_available() {
                Ok(()) => Ok(EngineKind::OnnxRuntime),
                Err(e) => {
                    if cfg!(feature = "ort") {
                        tracing::warn!("onnxruntime unavailable, using tract: {e}");
                    }
                    Ok(EngineKind::Tract)
                }
            },
        }
    }
}

/// Whether the onnxruntime engine can run here: `Ok` when this build has
/// it and the library loads (loaded once per process).
pub fn onnxruntime_available() -> Result<(), DetectError> {
    #[cfg(feature = "ort")]
    {
        onnx::environment().map(|_| ())
    }
    #[cfg(not(feature = "ort"))]
    {
        Err(DetectError::Model(
            "this imgtag was built without the onnxruntime engine (cargo feature `ort`)".into(),
        ))
    }
}

/// A loaded model with a fixed input shape and one `f32` output. Cheap to
/// clone, `Send + Sync`: every call runs with its own state.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Inner,
    input_shape: [usize; 4],
}

#[derive(Debug, Clone)]
enum Inner {
    Tract(Arc<TypedRunnableModel>),
    #[cfg(feature = "ort")]
    Ort(Arc<onnx::Pool>),
}

impl Engine {
    /// Loads `model` (ONNX bytes) on `kind` for input `input_shape`, fixed
    /// (tract is several times slower with a symbolic dimension).
    pub fn load(
        kind: EngineKind,
        model: &'static [u8],
        input_shape: [usize; 4],
    ) -> Result<Self, DetectError> {
        let inner = match kind {
            EngineKind::Tract => Inner::Tract(tract_plan(model, input_shape)?),
            #[cfg(feature = "ort")]
            EngineKind::OnnxRuntime => Inner::Ort(Arc::new(onnx::Pool::new(model)?)),
            #[cfg(not(feature = "ort"))]
            EngineKind::OnnxRuntime => return Err(onnxruntime_available().unwrap_err()),
        };
        Ok(Engine { inner, input_shape })
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        match self.inner {
            Inner::Tract(_) => EngineKind::Tract,
            #[cfg(feature = "ort")]
            Inner::Ort(_) => EngineKind::OnnxRuntime,
        }
    }

    /// Runs the model on `input` (the full input tensor, NCHW) and returns
    /// its first output, flattened.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, DetectError> {
        let expected: usize = self.input_shape.iter().product();
        if input.len() != expected {
            return Err(DetectError::BadLength {
                expected,
                got: input.len(),
            });
        }
        match &self.inner {
            Inner::Tract(plan) => tract_run(plan, input, self.input_shape),
            #[cfg(feature = "ort")]
            Inner::Ort(pool) => pool.run(input, self.input_shape),
        }
    }
}

fn model_err(e: impl std::fmt::Display) -> DetectError {
    DetectError::Model(format!("{e:#}"))
}

fn tract_plan(
    model: &'static [u8],
    shape: [usize; 4],
) -> Result<Arc<TypedRunnableModel>, DetectError> {
    tract_onnx::onnx()
        .model_for_read(&mut Cursor::new(model))
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(model_err)
}

fn tract_run(
    plan: &Arc<TypedRunnableModel>,
    input: &[f32],
    shape: [usize; 4],
) -> Result<Vec<f32>, DetectError> {
    let input = Tensor::from_shape(&shape, input).map_err(model_err)?;
    let outputs = plan.run(tvec!(input.into())).map_err(model_err)?;
    let output = outputs
        .first()
        .ok_or_else(|| DetectError::Model("model produced no output".into()))?;
    let view = output.to_plain_array_view::<f32>().map_err(model_err)?;
    Ok(view.iter().copied().collect())
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

    use super::{DYLIB_ENV, DetectError, model_err};

    static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

    /// The process's onnxruntime environment, the library loaded on first
    /// use from `ORT_DYLIB_PATH`. A failure is remembered and reported
    /// the same way on every call (no panic, no retry storm).
    pub(super) fn environment() -> Result<&'static ort::environment::Environment, DetectError> {
        let env = ENVIRONMENT.get_or_init(|| {
            let path = std::env::var_os(DYLIB_ENV)
                .filter(|p| !p.is_empty())
                .map_or_else(
                    || {
                        format!(
                            "{}onnxruntime{}",
                            std::env::consts::DLL_PREFIX,
                            std::env::consts::DLL_SUFFIX
                        )
                        .into()
                    },
                    std::path::PathBuf::from,
                );
            let builder = ort::init_from(&path).map_err(|e| {
                format!(
                    "cannot load the onnxruntime library ({e}); set {DYLIB_ENV} to a \
                     libonnxruntime.so (>= 1.20, e.g. onnxruntime/capi/libonnxruntime.so.* \
                     from the onnxruntime Python wheel)"
                )
            })?;
            builder
                .with_name("imgtag")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("onnxruntime environment: {e}"))
        });
        env.as_ref()
            .map_err(|e| DetectError::Model(format!("onnxruntime engine: {e}")))
    }

    /// Idle sessions of one model.
    #[derive(Debug)]
    pub(super) struct Pool {
        model: &'static [u8],
        idle: Mutex<Vec<Session>>,
    }

    impl Pool {
        /// Loads one session now, so a broken model fails at load time.
        pub(super) fn new(model: &'static [u8]) -> Result<Self, DetectError> {
            let first = session(model)?;
            Ok(Pool {
                model,
                idle: Mutex::new(vec![first]),
            })
        }

        pub(super) fn run(
            &self,
            input: &[f32],
            shape: [usize; 4],
        ) -> Result<Vec<f32>, DetectError> {
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
    fn session(model: &[u8]) -> Result<Session, DetectError> {
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
    ) -> Result<Vec<f32>, DetectError> {
        let shape: [i64; 4] = shape.map(|d| d as i64);
        let tensor = TensorRef::from_array_view((shape, input)).map_err(model_err)?;
        let outputs = session.run(ort::inputs![tensor]).map_err(model_err)?;
        let output = outputs
            .values()
            .next()
            .ok_or_else(|| DetectError::Model("model produced no output".into()))?;
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
