//! The mock's shared state: the queue of scripted behaviours and the record of provider requests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::behaviour::{Behaviour, Defaults};
use crate::error::MockError;

/// One provider request as the mock received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1 for the first request after start or reset; also the `N` in the response ids.
    pub seq: u64,
    /// Request path, without the query string.
    pub path: String,
    /// Headers by lower-case name; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a JSON string when it does not parse (`null` when empty).
    pub body: Value,
    /// True when the client went away before the scripted response was complete.
    pub disconnected: bool,
}

/// State shared by the server's workers and the [`crate::MockLlm`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) defaults: Defaults,
    inner: Mutex<Inner>,
    /// Wakes blocking waiters on every change.
    changed: Condvar,
    /// Wakes async waiters on every change; the value is a change counter.
    version: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Behaviour>,
    /// The most recent requests, oldest first, at most `Defaults::max_recorded` of them.
    requests: VecDeque<RecordedRequest>,
    /// Sequence number of the last request recorded since the last reset.
    last_seq: u64,
    /// Bumped by every reset, so a request still in flight cannot flag a record made after the reset.
    generation: u64,
}

impl Shared {
    pub(crate) fn new(defaults: Defaults) -> Self {
        Self { defaults, inner: Mutex::default(), changed: Condvar::new(), version: watch::Sender::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so a panic elsewhere does not make it unusable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.notify_all();
        self.version.send_modify(|version| *version = version.wrapping_add(1));
    }

    pub(crate) fn push_script(&self, behaviours: Vec<Behaviour>) -> usize {
        let queued = {
            let mut inner = self.lock();
            inner.queue.extend(behaviours);
            inner.queue.len()
        };
        self.notify();
        queued
    }

    pub(crate) fn queued(&self) -> Vec<Behaviour> {
        self.lock().queue.iter().cloned().collect()
    }

    pub(crate) fn next_behaviour(&self) -> Option<Behaviour> {
        self.lock().queue.pop_front()
    }

    pub(crate) fn reset(&self) {
        {
            let mut inner = self.lock();
            inner.queue.clear();
            inner.requests.clear();
            inner.last_seq = 0;
            inner.generation = inner.generation.wrapping_add(1);
        }
        self.notify();
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.iter().cloned().collect()
    }

    /// Records a request; the returned ticket flags it as disconnected if dropped before [`Ticket::finish`].
    pub(crate) fn record(self: &Arc<Self>, path: String, headers: BTreeMap<String, String>, body: Value) -> Ticket {
        let (generation, seq) = {
            let mut inner = self.lock();
            inner.last_seq = inner.last_seq.saturating_add(1);
            let seq = inner.last_seq;
            inner.requests.push_back(RecordedRequest { seq, path, headers, body, disconnected: false });
            if let Some(limit) = self.defaults.max_recorded {
                while inner.requests.len() > limit {
                    inner.requests.pop_front();
                }
            }
            (inner.generation, seq)
        };
        self.notify();
        Ticket { shared: Arc::clone(self), generation, seq, finished: false }
    }

    fn mark_disconnected(&self, generation: u64, seq: u64) {
        {
            let mut inner = self.lock();
            if inner.generation != generation {
                return;
            }
            // Sequence numbers are consecutive, so the record (if not yet dropped for space) is found by offset.
            let first = inner.requests.front().map_or(0, |request| request.seq);
            let index = seq.checked_sub(first).and_then(|offset| usize::try_from(offset).ok());
            match index.and_then(|index| inner.requests.get_mut(index)) {
                Some(request) => request.disconnected = true,
                None => return,
            }
        }
        self.notify();
    }

    /// Waits, blocking the thread, until `done` holds for the recorded requests.
    pub(crate) fn wait_blocking(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[RecordedRequest]) -> bool,
    ) -> Result<Vec<RecordedRequest>, MockError> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if done(inner.requests.make_contiguous()) {
                return Ok(inner.requests.iter().cloned().collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MockError::Timeout(timeout));
            }
            inner = self.changed.wait_timeout(inner, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Waits until `done` holds for the recorded requests; needs a Tokio runtime with its timer.
    pub(crate) async fn wait(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[RecordedRequest]) -> bool,
    ) -> Result<Vec<RecordedRequest>, MockError> {
        // Subscribing before the first look means no change between the look and the wait is missed.
        let mut changes = self.version.subscribe();
        let waiting = async {
            loop {
                let requests = self.requests();
                if done(&requests) {
                    return requests;
                }
                if changes.changed().await.is_err() {
                    // Unreachable while `self` holds the sender; waiting on is still the honest answer.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, waiting).await.map_err(|_| MockError::Timeout(timeout))
    }
}

/// Proof that a recorded request is being answered; dropped unfinished, it flags the request as disconnected.
#[derive(Debug)]
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    generation: u64,
    pub(crate) seq: u64,
    finished: bool,
}

impl Ticket {
    /// The scripted response was delivered in full (or the scripted fault happened as planned).
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.mark_disconnected(self.generation, self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(shared: &Arc<Shared>) -> Ticket {
        shared.record("/v1/chat/completions".to_owned(), BTreeMap::new(), Value::Null)
    }

    #[test]
    fn dropping_an_unfinished_ticket_flags_the_request() {
        let shared = Arc::new(Shared::new(Defaults::default()));
        let mut done = record(&shared);
        let abandoned = record(&shared);
        done.finish();
        drop(done);
        drop(abandoned);
        let requests = shared.requests();
        assert_eq!(requests.iter().map(|r| (r.seq, r.disconnected)).collect::<Vec<_>>(), [(1, false), (2, true)]);
    }

    #[test]
    fn a_ticket_from_before_a_reset_leaves_new_records_alone() {
        let shared = Arc::new(Shared::new(Defaults::default()));
        let stale = record(&shared);
        shared.reset();
        let mut fresh = record(&shared);
        drop(stale);
        assert_eq!(shared.requests()[0].seq, 1);
        assert!(!shared.requests()[0].disconnected);
        fresh.finish();
    }

    #[test]
    fn only_the_most_recent_requests_are_kept_when_limited() {
        let shared = Arc::new(Shared::new(Defaults { max_recorded: Some(2), ..Defaults::default() }));
        let tickets: Vec<Ticket> = (0..4).map(|_| record(&shared)).collect();
        drop(tickets);
        let requests = shared.requests();
        assert_eq!(requests.iter().map(|r| (r.seq, r.disconnected)).collect::<Vec<_>>(), [(3, true), (4, true)]);
    }

    #[test]
    fn blocking_wait_times_out_and_succeeds() {
        let shared = Arc::new(Shared::new(Defaults::default()));
        let err = shared.wait_blocking(Duration::from_millis(20), |requests| !requests.is_empty()).unwrap_err();
        assert!(matches!(err, MockError::Timeout(_)));
        let writer = Arc::clone(&shared);
        let thread = std::thread::spawn(move || record(&writer).finish());
        let requests = shared.wait_blocking(Duration::from_secs(10), |requests| !requests.is_empty()).unwrap();
        assert_eq!(requests.len(), 1);
        thread.join().unwrap();
    }
}
