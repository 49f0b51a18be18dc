//! A fixed set of threads the local models run on. On tokio's blocking
//! pool, inference wandered over many threads, and glibc gives each thread
//! it sees an arena that keeps what the models freed: a run over 60 photos
//! of 2 MP peaked at 418 MB against 276 MB with two arenas
//! (docs/detectors.md, "How fast"). Here it stays on `n` threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// `n` threads taking jobs in turn; they end when this is dropped.
#[derive(Debug)]
pub(crate) struct ModelThreads {
    jobs: Mutex<Sender<Job>>,
}

impl ModelThreads {
    /// Starts `n` (at least one) threads named `imgtag-model-<i>`.
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("imgtag-model-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(ModelThreads {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `f` on one of the threads; `None` when it panicked (the thread
    /// lives on) or the threads are gone.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.queue(f)?.await.ok()
    }

    /// Queues `f` now; its value comes on the receiver (closed if `f`
    /// panicked). `None` when the threads are gone.
    pub(crate) fn queue<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<tokio::sync::oneshot::Receiver<T>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic drops `tx`: the caller sees the channel closed.
            if let Ok(value) = catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(value);
            }
        });
        self.jobs.lock().ok()?.send(job).ok()?;
        Some(rx)
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test]
    async fn jobs_run_on_the_pools_threads_and_a_panic_is_none() {
        let threads = ModelThreads::start(2).unwrap();
        let mut names = HashSet::new();
        for _ in 0..20 {
            let name = threads
                .run(|| std::thread::current().name().map(str::to_string))
                .await
                .unwrap();
            names.insert(name.unwrap());
        }
        assert!(
            names.iter().all(|n| n.starts_with("imgtag-model-")),
            "{names:?}"
        );
        assert!(names.len() <= 2, "{names:?}");
        let panicked: Option<()> = threads.run(|| panic!("model bug")).await;
        assert!(panicked.is_none());
        // The pool still works after a panic.
        assert_eq!(threads.run(|| 7).await, Some(7));
    }
}
