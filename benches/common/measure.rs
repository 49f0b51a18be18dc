//! What every bench shares: its knobs from the environment, the median of
//! repeated runs, and whether it was started to measure (`cargo bench`
//! passes `--bench`; `cargo test --benches` runs each once without it, and
//! a bench then does nothing).
#![allow(dead_code)] // each bench uses a part

use std::time::Duration;

/// A number from the environment, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle of `runs` (the upper middle of an even count); zero for none.
pub fn median(runs: &[Duration]) -> Duration {
    let mut v = runs.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Whether `cargo bench` started this bench (rather than `cargo test`).
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The runtime the listing benches measure on: two workers, as the
/// machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
