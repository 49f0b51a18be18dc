//! The one bulk runner. `imgtag tag` and `review`, the TUI and `watch` run
//! their jobs (a tagging, a label edit, an undo) through [`Jobs`]: at most
//! `limit` at once, one at a time per image (two writers of one document
//! never race), a job whose task fails (a panic) reported as an outcome for
//! its image, and the one stop rule, [`Stop`]: at Ctrl-C or at the first
//! fatal outcome nothing new starts, and what is running finishes (each
//! write is atomic).
//!
//! Each front end keeps only its own policy: what to queue, how to show an
//! outcome. See docs/development.md, "Bulk runs".

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use tokio::task::{Id, JoinError, JoinSet};

use crate::outcome::Outcome;

/// When a bulk run stops starting jobs: at Ctrl-C, or at the first fatal
/// outcome (credentials, permissions), after which nothing new would
/// succeed.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// A new run starts (the TUI's next `t`).
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Stops the run if `outcome` is fatal.
    pub fn after(&self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Fatal { .. }) {
            self.set();
        }
    }
}

/// What a job returns: its outcome drives the stop rule, and a job whose
/// task failed becomes one.
pub trait Finished: Send + 'static {
    fn outcome(&self) -> &Outcome;
    /// The result of `key`'s job whose task panicked or was cancelled.
    fn failed(key: &str, outcome: Outcome) -> Self;
}

impl Finished for Outcome {
    fn outcome(&self) -> &Outcome {
        self
    }

    fn failed(_key: &str, outcome: Outcome) -> Self {
        outcome
    }
}

/// What [`Jobs::next`] reports.
#[derive(Debug)]
pub enum Event<T> {
    /// The image's job left the queue and runs now.
    Started(String),
    Done(String, T),
}

struct Queued<T> {
    key: String,
    job: BoxFuture<'static, T>,
    /// Starts even after a stop: an edit the operator asked for (the TUI
    /// writes queued reviews before quitting).
    after_stop: bool,
}

/// Jobs by image key: a queue, and the ones running.
pub struct Jobs<T> {
    limit: usize,
    stop: Stop,
    queue: VecDeque<Queued<T>>,
    running: JoinSet<(String, T)>,
    keys: HashMap<Id, String>,
    busy: HashSet<String>,
}

impl<T: Finished> Jobs<T> {
    pub fn new(limit: usize, stop: Stop) -> Jobs<T> {
        Jobs {
            limit: limit.max(1),
            stop,
            queue: VecDeque::new(),
            running: JoinSet::new(),
            keys: HashMap::new(),
            busy: HashSet::new(),
        }
    }

    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    /// Queues `job` for `key`; it starts once a slot is free and no other
    /// job of that image runs, unless the run stops first.
    pub fn push(&mut self, key: String, job: impl Future<Output = T> + Send + 'static) {
        self.queue_job(key, Box::pin(job), false);
    }

    /// [`Jobs::push`] for a job that starts even after a stop.
    pub fn push_after_stop(&mut self, key: String, job: impl Future<Output = T> + Send + 'static) {
        self.queue_job(key, Box::pin(job), true);
    }

    fn queue_job(&mut self, key: String, job: BoxFuture<'static, T>, after_stop: bool) {
        self.queue.push_back(Queued {
            key,
            job,
            after_stop,
        });
    }

    /// Jobs queued or running.
    pub fn len(&self) -> usize {
        self.queue.len() + self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a feeder should queue more: fewer than `limit` jobs queued
    /// or running, and not stopped. Feeding this way keeps a million
    /// targets from becoming a million queued futures.
    pub fn wants_more(&self) -> bool {
        self.len() < self.limit && !self.stop.is_set()
    }

    /// Whether a job of `key` is queued or running.
    pub fn has(&self, key: &str) -> bool {
        self.busy.contains(key) || self.queue.iter().any(|q| q.key == key)
    }

    /// The queued jobs that will not start because the run stopped, by
    /// key, in queue order.
    pub fn take_unstarted(&mut self) -> Vec<String> {
        if !self.stop.is_set() {
            return Vec::new();
        }
        let (keep, dropped): (VecDeque<_>, VecDeque<_>) =
            self.queue.drain(..).partition(|q| q.after_stop);
        self.queue = keep;
        dropped.into_iter().map(|q| q.key).collect()
    }

    /// Starts the next job that can start and reports it, or waits for a
    /// running one to finish. `None` when nothing runs and nothing can
    /// start. Cancel safe (for `select!`).
    pub async fn next(&mut self) -> Option<Event<T>> {
        if let Some(key) = self.start_one() {
            return Some(Event::Started(key));
        }
        let done = self.running.join_next_with_id().await?;
        Some(self.finished(done))
    }

    /// Starts the first queued job whose image has no job running.
    fn start_one(&mut self) -> Option<String> {
        if self.running.len() >= self.limit {
            return None;
        }
        let stopped = self.stop.is_set();
        let at = self
            .queue
            .iter()
            .position(|q| (q.after_stop || !stopped) && !self.busy.contains(&q.key))?;
        let Queued { key, job, .. } = self.queue.remove(at)?;
        let handle = self.running.spawn({
            let key = key.clone();
            async move { (key, job.await) }
        });
        self.keys.insert(handle.id(), key.clone());
        self.busy.insert(key.clone());
        Some(key)
    }

    fn finished(&mut self, done: Result<(Id, (String, T)), JoinError>) -> Event<T> {
        let (key, result) = match done {
            Ok((id, (key, result))) => {
                self.keys.remove(&id);
                (key, result)
            }
            Err(e) => {
                let key = self.keys.remove(&e.id()).unwrap_or_default();
                let failed = T::failed(&key, task_failed(e));
                (key, failed)
            }
        };
        self.busy.remove(&key);
        self.stop.after(result.outcome());
        Event::Done(key, result)
    }
}

/// The outcome of a job whose task panicked or was cancelled: nothing was
/// written by it after that point, and the image is free again.
pub(crate) fn task_failed(e: JoinError) -> Outcome {
    let why = if e.is_panic() {
        let payload = e.into_panic();
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    } else {
        "cancelled".into()
    };
    tracing::error!(error = %crate::sanitize::for_terminal(&why), "a job's task failed");
    Outcome::Skipped {
        reason: format!("failed: the job stopped unexpectedly ({why}); nothing written"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(key: &str) -> Outcome {
        Outcome::Unchanged {
            metadata_key: key.into(),
        }
    }

    /// Runs `jobs` to the end; the events in order.
    async fn drain(jobs: &mut Jobs<Outcome>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(ev) = jobs.next().await {
            seen.push(match ev {
                Event::Started(k) => format!("start {k}"),
                Event::Done(k, o) => format!("done {k} {}", o.name()),
            });
        }
        seen
    }

    #[tokio::test]
    async fn at_most_limit_run_at_once() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut jobs = Jobs::new(3, Stop::default());
        for i in 0..20 {
            let (running, most) = (running.clone(), most.clone());
            jobs.push(format!("k{i}"), async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done("m")
            });
        }
        let seen = drain(&mut jobs).await;
        assert_eq!(seen.iter().filter(|e| e.starts_with("done")).count(), 20);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn one_job_per_image_at_a_time() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut jobs = Jobs::new(4, Stop::default());
        jobs.push("a".into(), async move {
            let _ = rx.await;
            done("first")
        });
        jobs.push("a".into(), async { done("second") });
        jobs.push("b".into(), async { done("b") });
        // "a" starts, the second "a" waits, "b" passes it.
        assert!(matches!(jobs.next().await, Some(Event::Started(k)) if k == "a"));
        assert!(matches!(jobs.next().await, Some(Event::Started(k)) if k == "b"));
        assert!(matches!(jobs.next().await, Some(Event::Done(k, _)) if k == "b"));
        assert!(jobs.has("a"));
        tx.send(()).unwrap();
        let rest = drain(&mut jobs).await;
        assert_eq!(
            rest,
            ["done a unchanged", "start a", "done a unchanged"],
            "the second job of an image starts after the first ends"
        );
    }

    #[tokio::test]
    async fn a_fatal_outcome_stops_what_has_not_started() {
        let mut jobs = Jobs::new(1, Stop::default());
        jobs.push("a".into(), async {
            Outcome::Fatal {
                message: "expired".into(),
            }
        });
        jobs.push("b".into(), async { done("b") });
        jobs.push_after_stop("c".into(), async { done("c") });
        jobs.push("d".into(), async { done("d") });
        let seen = drain(&mut jobs).await;
        assert_eq!(
            seen,
            ["start a", "done a fatal", "start c", "done c unchanged"]
        );
        assert!(jobs.stop().is_set());
        assert!(!jobs.wants_more());
        assert_eq!(jobs.take_unstarted(), ["b", "d"]);
        assert!(jobs.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_outcome_and_frees_its_image() {
        let mut jobs = Jobs::new(2, Stop::default());
        jobs.push("a".into(), async { panic!("boom") });
        jobs.push("a".into(), async { done("a") });
        let seen = drain(&mut jobs).await;
        assert_eq!(
            seen,
            ["start a", "done a skipped", "start a", "done a unchanged"]
        );
    }
}
