//! The database's own threads, shared by every runtime and never more than the pool has connections, running
//! [`Database::run`]'s work.
//!
//! On tokio's blocking pool each runtime (one per HTTP worker) started a thread whenever a call found none idle, up to
//! its cap, and kept it while calls kept coming: up to the cap per worker, though no more calls than the pool has
//! connections can run at once, and after a stall the process held them all, each with its stack and allocator
//! caches. Here a thread starts when a call finds none idle and fewer than the pool's connections running, and
//! stays; past that, a call waits in their queue instead of on a thread of its own.
//!
//! [`Database::run`]: crate::Database::run

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::StorageError;

/// A queued call. Given the count of idle threads, it returns whether it added its own thread to it already.
type Job = Box<dyn FnOnce(&AtomicUsize) -> bool + Send>;

/// The sending side of the threads' queue; they end when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Threads {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    /// How long a call may wait for a thread and then a connection, together.
    wait: Duration,
}

/// What the threads and the callers share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<mpsc::Receiver<Job>>,
    name: String,
    max: usize,
    started: AtomicUsize,
    /// Threads waiting for a job that no call queued since has counted on.
    idle: AtomicUsize,
}

impl Threads {
    /// Starts the first of at most `max` threads (at least one), named `name-0`, `name-1`...; a call waits at most
    /// `wait` in all.
    pub(crate) fn start(max: usize, name: &str, wait: Duration) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            name: name.to_owned(),
            max: max.max(1),
            started: AtomicUsize::new(1),
            idle: AtomicUsize::new(1),
        });
        spawn(&shared, 0)?;
        Ok(Self { jobs, shared, wait })
    }

    /// Runs `work` on one of the threads and returns its result. `work` is given what is left of the wait, for
    /// its connection. A call still queued when the wait is over is taken back and never runs: its caller is told
    /// [`StorageError::Busy`]. Once started, it runs to the end, even if its caller has gone away meanwhile.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(Duration) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let queued = Instant::now();
        let wait = self.wait;
        let claimed = Arc::new(AtomicBool::new(false));
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new({
            let claimed = Arc::clone(&claimed);
            move |idle| {
                if claimed.swap(true, Ordering::AcqRel) {
                    return false;
                }
                let result = work(wait.saturating_sub(queued.elapsed()));
                // Idle from now on: a call its caller makes on hearing this answer counts on this thread.
                idle.fetch_add(1, Ordering::AcqRel);
                let _ = answer.send(result);
                true
            }
        });
        self.jobs.send(job).map_err(|_| StorageError::NoAnswer)?;
        self.count_on_a_thread();
        let mut answered = pin!(answered);
        if let Ok(result) = tokio::time::timeout(wait, &mut answered).await {
            return result.map_err(|_| StorageError::NoAnswer)?;
        }
        // Taken back unless a thread took it first: then it holds a connection, and its answer is awaited.
        if !claimed.swap(true, Ordering::AcqRel) {
            return Err(StorageError::Busy(wait));
        }
        answered.await.map_err(|_| StorageError::NoAnswer)?
    }

    /// Counts on an idle thread for the call just queued, or starts one while fewer than `max` run; past that the
    /// call waits for one to finish. (Once all `max` have started, `idle` may overcount, which no longer matters.)
    fn count_on_a_thread(&self) {
        let shared = &self.shared;
        if shared.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| idle.checked_sub(1)).is_ok() {
            return;
        }
        let Ok(index) =
            shared.started.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < shared.max).then_some(n + 1))
        else {
            return;
        };
        if let Err(err) = spawn(shared, index) {
            shared.started.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%err, "cannot start another database thread: calls wait for the ones running");
        }
    }
}

/// Starts thread number `index`.
fn spawn(shared: &Arc<Shared>, index: usize) -> std::io::Result<()> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new().name(format!("{}-{index}", shared.name)).spawn(move || serve(&shared))?;
    Ok(())
}

/// One thread: runs jobs until every sender is gone.
fn serve(shared: &Shared) {
    loop {
        let job = shared.queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A job that panics drops its answer (its caller gets `NoAnswer`); the thread lives on.
        let counted = catch_unwind(AssertUnwindSafe(|| job(&shared.idle))).unwrap_or_else(|_| {
            tracing::error!("a database call panicked");
            false
        });
        if !counted {
            shared.idle.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn one_call_at_a_time_is_served_by_one_thread() {
        let threads = Threads::start(4, "test-db", Duration::from_secs(30)).unwrap();
        let mut ran_on = HashSet::new();
        for _ in 0..20 {
            ran_on.insert(threads.run(|_| Ok(std::thread::current().id())).await.unwrap());
        }
        assert_eq!(ran_on.len(), 1);
        assert_eq!(threads.shared.started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn calls_run_at_most_max_threads_at_once_and_all_complete() {
        let threads = Threads::start(2, "test-db", Duration::from_secs(30)).unwrap();
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let calls = (0..8).map(|i| {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            threads.run(move |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            })
        });
        let results: Vec<_> = futures_util::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, (0..8).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_that_waits_longer_than_allowed_is_taken_back_and_never_runs() {
        let threads = Threads::start(1, "test-db", Duration::from_millis(50)).unwrap();
        let (release, released) = mpsc::channel::<()>();
        let (started, has_started) = oneshot::channel();
        let holding = tokio::spawn({
            let threads = threads.clone();
            async move {
                threads
                    .run(move |_| {
                        started.send(()).unwrap();
                        Ok(released.recv().is_ok())
                    })
                    .await
            }
        });
        has_started.await.unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let waiting = threads
            .run({
                let ran = Arc::clone(&ran);
                move |_| {
                    ran.store(true, Ordering::SeqCst);
                    Ok(())
                }
            })
            .await;
        assert!(matches!(waiting, Err(StorageError::Busy(_))), "{waiting:?}");
        release.send(()).unwrap();
        // The one that held the thread is answered though it ran past the wait, and the queue moves on.
        assert!(holding.await.unwrap().unwrap());
        threads.run(|_| Ok(())).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst), "the call taken back ran after all");
    }

    #[tokio::test]
    async fn work_is_given_what_is_left_of_the_wait() {
        let threads = Threads::start(1, "test-db", Duration::from_secs(30)).unwrap();
        let left = threads.run(Ok).await.unwrap();
        assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(20), "{left:?}");
    }

    #[tokio::test]
    async fn a_call_whose_caller_went_away_still_runs_to_the_end() {
        let threads = Threads::start(1, "test-db", Duration::from_secs(30)).unwrap();
        let (release, released) = mpsc::channel::<()>();
        let ran = Arc::new(AtomicBool::new(false));
        let call = threads.run({
            let ran = Arc::clone(&ran);
            move |_| {
                released.recv().unwrap();
                ran.store(true, Ordering::SeqCst);
                Ok(())
            }
        });
        // Polled until its job is queued, then dropped.
        assert!(futures_util::poll!(Box::pin(call)).is_pending());
        release.send(()).unwrap();
        threads.run(|_| Ok(())).await.unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_call_that_panics_fails_alone_and_the_thread_lives_on() {
        let threads = Threads::start(1, "test-db", Duration::from_secs(30)).unwrap();
        #[allow(clippy::panic)]
        let failed = threads.run(|_| -> Result<(), StorageError> { panic!("a database call that panics") }).await;
        assert!(matches!(failed, Err(StorageError::NoAnswer)), "{failed:?}");
        assert_eq!(threads.run(|_| Ok(7)).await.unwrap(), 7);
    }
}
