//! One running reply in memory: its text as numbered deltas, how it ended, and the signals around it.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chat_domain::MessageStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::{Ending, NumberedEvent, StreamStart, numbered_after, numbered_whole};
use super::finished::Finished;
use crate::ServiceError;

/// Why a generation was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Someone pressed Stop (or deleted the chat): stored as `cancelled`.
    Cancel,
    /// The server is shutting down and the grace period is over: stored as `interrupted`.
    Shutdown,
}

/// A reply being generated (or recently finished), shared by its task, its listeners and the registry.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) start: StreamStart,
    cancel: CancellationToken,
    stop: AtomicU8,
    /// Set when text arrived that the flusher has not written yet.
    dirty: AtomicBool,
    state: Mutex<State>,
    /// Bumped on every change of `state`; listeners wait on it.
    version: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    text: String,
    /// The end offset in `text` of each delta, in order: delta `i` has event id `i + 2`.
    ends: Vec<u32>,
    /// The provider's first chunk has arrived.
    began: bool,
    ending: Option<Ending>,
    /// The status the reply was stored with.
    status: Option<MessageStatus>,
    /// The failure to hand to the one caller waiting on the outcome.
    error: Option<ServiceError>,
    /// When the provider was asked, its first text arrived, and its stream ended.
    asked: Option<Instant>,
    first_text: Option<Instant>,
    answered: Option<Instant>,
}

impl Generation {
    pub(crate) fn new(start: StreamStart) -> Self {
        Self {
            start,
            cancel: CancellationToken::new(),
            stop: AtomicU8::new(0),
            dirty: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            version: watch::Sender::new(0),
        }
    }

    pub(crate) fn message_id(&self) -> i64 {
        self.start.message_id
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Appends a piece of the reply. Returns whether the reply just became dirty (the caller then
    /// hands it to the flusher).
    pub(crate) fn append(&self, piece: &str) -> bool {
        if piece.is_empty() {
            return false;
        }
        {
            let mut state = self.state();
            // PostgreSQL's text cannot hold NUL; a model that sends one gets the replacement character.
            if piece.contains('\0') {
                state.text.push_str(&piece.replace('\0', "\u{FFFD}"));
            } else {
                state.text.push_str(piece);
            }
            let end = u32::try_from(state.text.len()).unwrap_or(u32::MAX);
            state.ends.push(end);
        }
        self.changed();
        !self.dirty.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn mark_began(&self) {
        {
            let mut state = self.state();
            state.began = true;
            state.first_text = Some(Instant::now());
        }
        self.changed();
    }

    /// The provider is being asked (the first attempt; retries and fallbacks count as its time).
    pub(crate) fn mark_asked(&self) {
        self.mark_asked_at(Instant::now());
    }

    /// The provider was asked at `at` (before the generation was launched).
    pub(crate) fn mark_asked_at(&self, at: Instant) {
        self.state().asked.get_or_insert(at);
    }

    /// The provider's stream has ended (or was closed).
    pub(crate) fn mark_answered(&self) {
        self.state().answered = Some(Instant::now());
    }

    /// The time spent waiting on the provider: until its stream ended, or until its first text while
    /// it runs.
    pub(crate) fn upstream(&self) -> Option<Duration> {
        let state = self.state();
        let asked = state.asked?;
        Some(state.answered.or(state.first_text)?.saturating_duration_since(asked))
    }

    /// Records how the reply ended (after it was stored), waking every listener.
    pub(crate) fn end(&self, ending: Ending, status: MessageStatus, error: Option<ServiceError>) {
        {
            let mut state = self.state();
            state.ending = Some(ending);
            state.status = Some(status);
            state.error = error;
        }
        self.changed();
    }

    pub(crate) fn text(&self) -> String {
        self.state().text.clone()
    }

    /// Marks the reply as having text to write again (its last write failed).
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// The text to write now, if the reply is still running and has changed since the last write.
    pub(crate) fn take_progress(&self) -> Option<(i64, String)> {
        self.dirty.store(false, Ordering::Release);
        let state = self.state();
        state.ending.is_none().then(|| (self.message_id(), state.text.clone()))
    }

    pub(crate) fn ending(&self) -> Option<(Ending, MessageStatus)> {
        let state = self.state();
        Some((state.ending.clone()?, state.status?))
    }

    pub(crate) fn take_error(&self) -> Option<ServiceError> {
        self.state().error.take()
    }

    pub(crate) fn stop(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Cancel => 1,
            StopReason::Shutdown => 2,
        };
        // The first reason wins: a cancel during shutdown stays a cancel.
        let _ = self.stop.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.cancel.cancel();
    }

    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::Acquire) {
            1 => Some(StopReason::Cancel),
            2 => Some(StopReason::Shutdown),
            _ => None,
        }
    }

    /// Resolves when the generation is told to stop.
    pub(crate) async fn stopped(&self) {
        self.cancel.cancelled().await;
    }

    /// A receiver of change notifications, marked as having seen the current state.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Waits until the provider's first chunk arrived or the generation ended, whichever is first.
    pub(crate) async fn began_or_ended(&self) {
        let mut changes = self.watch();
        loop {
            {
                let state = self.state();
                if state.began || state.ending.is_some() {
                    return;
                }
            }
            // The sender lives as long as `self`: this cannot fail while we hold it.
            let _ = changes.changed().await;
        }
    }

    /// Waits until the generation has ended (and been stored).
    pub(crate) async fn ended(&self) {
        let mut changes = self.watch();
        while self.state().ending.is_none() {
            let _ = changes.changed().await;
        }
    }

    pub(crate) fn has_begun(&self) -> bool {
        self.state().began
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.state().ending.is_some()
    }

    /// A finished reply told whole, as a stored one is (see [`numbered_whole`]).
    pub(crate) fn summary(&self) -> Option<Vec<NumberedEvent>> {
        let state = self.state();
        Some(numbered_whole(&self.start, &state.text, state.ends.len(), state.ending.as_ref()?))
    }

    /// The events after id `after`, and whether the stream is over once they are sent.
    pub(crate) fn events_after(&self, after: u64) -> (Vec<NumberedEvent>, bool) {
        let state = self.state();
        numbered_after(&self.start, &state.text, &state.ends, state.ending.as_ref(), after)
    }

    /// What a listener resuming it needs once it has ended, without its text (which is stored).
    pub(crate) fn to_finished(&self) -> Option<Finished> {
        let state = self.state();
        let ending = state.ending.clone()?;
        let status = state.status?;
        Some(Finished::new(self.start.clone(), state.ends.as_slice().into(), ending, status))
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::ChatId;
    use llm_providers::Usage;

    use super::super::StreamEvent;
    use super::*;

    fn generation() -> Generation {
        let start =
            StreamStart { chat_id: ChatId::new_random(), user_message_id: 1, message_id: 2, model: "fast".into() };
        Generation::new(start)
    }

    fn ids(events: &[NumberedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn events_are_numbered_and_read_from_any_id() {
        let g = generation();
        assert!(g.append("Hel"), "the first piece makes the reply dirty");
        assert!(!g.append("lo"), "it stays dirty until written");
        assert!(!g.append(""), "empty pieces are not events");
        let (all, over) = g.events_after(0);
        assert_eq!(ids(&all), [1, 2, 3]);
        assert!(!over);
        assert_eq!(all[2].event, StreamEvent::Delta("lo".into()));
        let ending = Ending::Done { finish_reason: "stop".into(), usage: Usage::default() };
        g.end(ending.clone(), MessageStatus::Complete, None);
        let (rest, over) = g.events_after(2);
        assert_eq!(ids(&rest), [3, 4]);
        assert_eq!(rest[1].event, StreamEvent::End { message_id: 2, ending });
        assert!(over);
        let (nothing, over) = g.events_after(4);
        assert!(nothing.is_empty() && over);
    }

    #[test]
    fn progress_is_taken_once_per_change_and_never_after_the_end() {
        let g = generation();
        g.append("a");
        assert_eq!(g.take_progress(), Some((2, "a".to_owned())));
        assert!(g.append("b"), "a change after a write makes it dirty again");
        g.end(Ending::Failed(super::super::StreamFailure::Storage), MessageStatus::Error, None);
        assert_eq!(g.take_progress(), None);
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let g = generation();
        assert_eq!(g.stop_reason(), None);
        g.stop(StopReason::Cancel);
        g.stop(StopReason::Shutdown);
        assert_eq!(g.stop_reason(), Some(StopReason::Cancel));
    }
}
