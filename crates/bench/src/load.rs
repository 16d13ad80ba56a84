//! The load drivers: open-loop at a fixed rate (latency from the intended send time) and closed-loop saturation.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::stats::{Summary, micros};

/// What a successful request reports besides its completion time (which the driver takes itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct Measure {
    /// When the first useful piece of a streamed answer arrived (first `delta`, first content chunk).
    pub first: Option<Instant>,
    /// The server's own time on top of the provider, from `Server-Timing`.
    pub server_added: Option<Duration>,
}

/// A request's result: a measure, or why it counts as an error.
pub type Outcome = Result<Measure, String>;

/// A request on its way, as the scenarios hand them to the drivers.
pub type Pending = std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How load was offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// Open loop: requests sent at `rate` per second whatever the answers do.
    Fixed { rate: f64 },
    /// Closed loop: `concurrency` workers, each sending its next request when the last one is answered.
    Saturation { concurrency: usize },
    /// No load: a memory reading at rest.
    Idle,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub mode: Mode,
    /// Requests whose (intended) send time fell in the measured window.
    pub sent: u64,
    /// Successful requests per second over the measured window.
    pub achieved_rate: f64,
    /// Completion latency.
    pub latency: Option<Summary>,
    /// Latency to the first useful piece of a stream.
    pub first: Option<Summary>,
    /// The server's own added time, from `Server-Timing`.
    pub server_added: Option<Summary>,
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_examples: Vec<String>,
}

impl RunStats {
    pub fn offered_rate(&self) -> Option<f64> {
        match self.mode {
            Mode::Fixed { rate } => Some(rate),
            Mode::Saturation { .. } | Mode::Idle => None,
        }
    }
}

const ERROR_EXAMPLES: usize = 5;

/// Samples of the measured window.
#[derive(Debug, Default)]
struct Samples {
    sent: u64,
    latency: Vec<u32>,
    first: Vec<u32>,
    server_added: Vec<u32>,
    errors: u64,
    error_examples: Vec<String>,
    ok: u64,
    last_done: Option<Instant>,
}

impl Samples {
    fn record(&mut self, start: Instant, done: Instant, outcome: Outcome) {
        self.sent += 1;
        match outcome {
            Ok(measure) => {
                self.ok += 1;
                self.latency.push(micros(done.saturating_duration_since(start)));
                if let Some(first) = measure.first {
                    self.first.push(micros(first.saturating_duration_since(start)));
                }
                if let Some(added) = measure.server_added {
                    self.server_added.push(micros(added));
                }
                self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
            }
            Err(problem) => {
                self.errors += 1;
                if self.error_examples.len() < ERROR_EXAMPLES && !self.error_examples.contains(&problem) {
                    self.error_examples.push(problem);
                }
            }
        }
    }

    fn finish(mut self, mode: Mode, measured_from: Instant) -> RunStats {
        let elapsed = self.last_done.map_or(Duration::ZERO, |last| last.saturating_duration_since(measured_from));
        let achieved_rate = if elapsed.is_zero() { 0.0 } else { self.ok as f64 / elapsed.as_secs_f64() };
        RunStats {
            mode,
            sent: self.sent,
            achieved_rate,
            latency: Summary::of(&mut self.latency),
            first: Summary::of(&mut self.first),
            server_added: Summary::of(&mut self.server_added),
            errors: self.errors,
            error_examples: self.error_examples,
        }
    }
}

type Shared = Arc<Mutex<Samples>>;

fn record(samples: &Shared, start: Instant, done: Instant, outcome: Outcome) {
    samples.lock().unwrap_or_else(PoisonError::into_inner).record(start, done, outcome);
}

fn take(samples: Shared) -> Samples {
    match Arc::try_unwrap(samples) {
        Ok(mutex) => mutex.into_inner().unwrap_or_else(PoisonError::into_inner),
        Err(shared) => std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner)),
    }
}

/// Offers `rate` requests per second for `warmup` (discarded) then `duration`, open loop: request `i` is due at
/// `t0 + i / rate` and its latency is measured from then, so a stall delays, and is charged to, every request due
/// during it. `op` gets the due time and runs the request.
///
/// The schedule is kept by a plain thread sleeping to each due time: Tokio's timer has a 1 ms resolution, the whole
/// gap between two requests at 1,000 req/s, and would add up to 1 ms of its own to every measured latency.
pub async fn fixed_rate<F, Fut>(rate: f64, warmup: Duration, duration: Duration, op: F) -> RunStats
where
    F: Fn(Instant) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let total = ((warmup + duration).as_secs_f64() * rate).round() as u64;
    let measured_after = (warmup.as_secs_f64() * rate).round() as u64;
    let t0 = Instant::now() + Duration::from_millis(2);
    let measured_from = t0 + warmup;
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if due_tx.send((i, due)).is_err() {
                return;
            }
        }
    });
    let samples = Shared::default();
    let mut tasks = JoinSet::new();
    while let Some((i, due)) = due_rx.recv().await {
        let request = op(due);
        let samples = Arc::clone(&samples);
        tasks.spawn(async move {
            let outcome = request.await;
            let done = Instant::now();
            if i >= measured_after {
                record(&samples, due, done, outcome);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let _ = pacer.join();
    take(samples).finish(Mode::Fixed { rate }, measured_from)
}

/// `concurrency` closed-loop workers for `warmup` (discarded) then `duration`; latency is measured from each send.
pub async fn saturation<F, Fut>(concurrency: usize, warmup: Duration, duration: Duration, op: F) -> RunStats
where
    F: Fn(Instant) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let t0 = Instant::now();
    let measured_from = t0 + warmup;
    let end = measured_from + duration;
    let samples = Shared::default();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let op = op.clone();
        let samples = Arc::clone(&samples);
        workers.spawn(async move {
            loop {
                let start = Instant::now();
                if start >= end {
                    return;
                }
                let outcome = op(start).await;
                let done = Instant::now();
                if start >= measured_from {
                    record(&samples, start, done, outcome);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    take(samples).finish(Mode::Saturation { concurrency }, measured_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_open_loop_run_charges_a_stall_to_every_request_due_during_it() {
        // Every request waits until a fixed instant: those due earlier wait longer, and it shows in their latency.
        let release = Instant::now() + Duration::from_millis(300);
        let stats = fixed_rate(100.0, Duration::ZERO, Duration::from_millis(200), move |_| async move {
            tokio::time::sleep_until(release.into()).await;
            Ok(Measure::default())
        })
        .await;
        assert_eq!(stats.sent, 20);
        assert_eq!(stats.errors, 0);
        let latency = stats.latency.unwrap();
        assert!(latency.max_us >= 280_000, "{latency:?}");
        assert!(latency.p50_us >= 180_000, "{latency:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn saturation_counts_errors_apart_from_completions() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stats = saturation(4, Duration::from_millis(20), Duration::from_millis(100), move |_| {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if n.is_multiple_of(2) { Err("even".to_owned()) } else { Ok(Measure::default()) }
            }
        })
        .await;
        let latency = stats.latency.unwrap();
        assert!(stats.errors > 0 && latency.count > 0, "{stats:?}");
        assert_eq!(stats.sent, stats.errors + latency.count as u64);
        assert_eq!(stats.error_examples, ["even"]);
        assert!(stats.achieved_rate > 0.0);
        assert_eq!(stats.offered_rate(), None);
    }
}
