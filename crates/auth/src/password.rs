//! bcrypt hashing on a few dedicated low-priority threads, with equal work for unknown accounts.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use chat_domain::Password;
use tokio::sync::oneshot;

use crate::AuthError;

/// How much nicer than the rest of the process the hashing threads are. At 10, a busy hashing thread gets
/// about a tenth of a core that a request wants, and a request's thread that wakes takes the core at
/// once: a flood of logins slows logins, not chats. On an otherwise idle machine hashing runs at full speed.
const NICENESS: i32 = 10;

/// The hash checked when an email is unknown, so that the answer takes as long as for a wrong password.
/// Its plaintext is random and discarded.
fn dummy_password() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords with bcrypt.
///
/// bcrypt is deliberately slow (about 250 ms at cost 12), so it never runs on an async worker or on the
/// threads that database calls use: `threads` dedicated threads, at a lower scheduling priority
/// ([`NICENESS`]), take hashes from one queue, so at most that many run at once and a flood of logins
/// queues here. The threads end when the last clone of the hasher is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    threads: usize,
    jobs: mpsc::Sender<Job>,
    dummy_hash: Arc<str>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.cost)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `threads` hashing threads (at least one). Blocking (it computes the dummy hash): build it at
    /// start-up.
    pub fn new(cost: u32, threads: usize) -> Result<Self, AuthError> {
        let dummy_hash = bcrypt::hash(dummy_password(), cost).map_err(AuthError::Hashing)?;
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || hashing_thread(&queue))
                .map_err(AuthError::Thread)?;
        }
        Ok(Self { cost, threads, jobs, dummy_hash: dummy_hash.into() })
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// A bcrypt hash of `password`.
    ///
    /// `Password` guarantees at most 72 bytes, so nothing is truncated. `bcrypt::non_truncating_hash`
    /// is not used because it also refuses exactly 72 bytes (it counts the terminating NUL), which the
    /// contract allows; at 72 bytes bcrypt drops only that NUL, never a byte of the password.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let plain = password.expose().to_owned();
        let cost = self.cost;
        self.run(move || bcrypt::hash(plain, cost).map_err(AuthError::Hashing)).await
    }

    /// Whether `candidate` matches `stored`. With no stored hash (unknown account), or a candidate
    /// longer than bcrypt can compare, the same work is done against a dummy hash and the answer is no.
    pub async fn verify(&self, candidate: &str, stored: Option<&str>) -> Result<bool, AuthError> {
        let comparable = Password::fits_bcrypt(candidate);
        let (hash, genuine) = match stored {
            Some(hash) if comparable => (hash.to_owned(), true),
            _ => (self.dummy_hash.to_string(), false),
        };
        // An over-long candidate is cut to 72 bytes for the dummy check only, to keep the timing equal.
        let candidate: Vec<u8> = candidate.as_bytes().iter().take(72).copied().collect();
        let matched = self.run(move || bcrypt::verify(candidate, &hash).map_err(AuthError::Hashing)).await?;
        Ok(genuine && matched)
    }

    /// Queues `work` for the hashing threads and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let (answer, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone away (a closed connection): then nobody wants the result.
            let _ = answer.send(work());
        });
        self.jobs.send(job).map_err(|_| AuthError::HashingStopped)?;
        result.await.map_err(|_| AuthError::HashingStopped)?
    }
}

/// One hashing thread: lowers its own priority, then runs jobs until every sender is gone.
fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A job that panics drops its answer (its caller gets `HashingStopped`); the thread lives on.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

/// Makes the calling thread [`NICENESS`] nicer. On Linux the nice value belongs to each thread, and
/// `setpriority(PRIO_PROCESS, 0, …)` changes only the caller's; raising it needs no privilege.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let lowered = rustix::process::getpriority_process(None)
        .and_then(|nice| rustix::process::setpriority_process(None, (nice + NICENESS).min(19)));
    if let Err(err) = lowered {
        tracing::warn!(%err, "cannot lower the password hashing thread's priority: logins may slow chats");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(4, 2).unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() {
        let h = hasher();
        let pw = Password::parse("correct horse".into()).unwrap();
        let hash = h.hash(&pw).await.unwrap();
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        assert!(h.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!h.verify("correct hors", Some(&hash)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_72_byte_password_is_hashed_whole() {
        let h = hasher();
        let full = "a".repeat(71) + "b";
        let hash = h.hash(&Password::parse(full.clone()).unwrap()).await.unwrap();
        assert!(h.verify(&full, Some(&hash)).await.unwrap());
        // Its last byte counts.
        assert!(!h.verify(&("a".repeat(71) + "c"), Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_candidate_longer_than_72_bytes_never_matches() {
        let h = hasher();
        let stored = "x".repeat(72);
        let hash = h.hash(&Password::parse(stored.clone()).unwrap()).await.unwrap();
        // bcrypt alone would accept this: its first 72 bytes are the password.
        assert!(!h.verify(&(stored + "extra"), Some(&hash)).await.unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_runs_on_nicer_threads_than_the_callers() {
        let h = hasher();
        let caller = rustix::process::getpriority_process(None).unwrap();
        let hashing = h.run(|| Ok(rustix::process::getpriority_process(None).unwrap())).await.unwrap();
        assert_eq!(hashing, (caller + NICENESS).min(19));
        // Only the hashing threads were lowered.
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), caller);
    }

    #[tokio::test]
    async fn hashes_run_at_most_threads_at_once_and_all_complete() {
        let h = PasswordHasher::new(4, 2).unwrap();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs = (0..8).map(|_| {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            h.run(move || {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        });
        for result in futures_util::future::join_all(jobs).await {
            result.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_job_that_panics_fails_alone_and_the_thread_lives_on() {
        let h = PasswordHasher::new(4, 1).unwrap();
        #[allow(clippy::panic)]
        let failed = h.run(|| -> Result<(), AuthError> { panic!("a hashing job that panics") }).await;
        assert!(matches!(failed, Err(AuthError::HashingStopped)), "{failed:?}");
        let pw = Password::parse("still hashing".into()).unwrap();
        let hash = h.hash(&pw).await.unwrap();
        assert!(h.verify("still hashing", Some(&hash)).await.unwrap());
    }
}
