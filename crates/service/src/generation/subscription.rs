//! A listener's view of a reply's events: live from a running generation, or replayed from storage.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use super::events::NumberedEvent;
use super::record::Generation;

/// The events of one reply for one listener, from where it joined until the end.
#[derive(Debug)]
pub struct Subscription {
    source: Source,
    /// The id of the last event handed out.
    last: u64,
}

#[derive(Debug)]
enum Source {
    Live { generation: Arc<Generation>, changes: watch::Receiver<u64> },
    Replay(VecDeque<NumberedEvent>),
}

impl Subscription {
    /// Follows a running (or recently finished) generation from after event `after`.
    pub(crate) fn live(generation: Arc<Generation>, after: u64) -> Self {
        let changes = generation.watch();
        Self { source: Source::Live { generation, changes }, last: after }
    }

    /// Hands out `events`, whatever id the listener last saw.
    pub(crate) fn replay(events: Vec<NumberedEvent>) -> Self {
        Self { source: Source::Replay(events.into()), last: 0 }
    }

    /// The events available after the last one handed out, waiting until there is at least one;
    /// `None` once the ending has been handed out. Cancel-safe: dropping the future loses nothing.
    pub async fn next_batch(&mut self) -> Option<Vec<NumberedEvent>> {
        match &mut self.source {
            Source::Replay(events) => {
                let batch: Vec<NumberedEvent> = events.drain(..).collect();
                (!batch.is_empty()).then_some(batch)
            }
            Source::Live { generation, changes } => loop {
                // Marking the version seen before reading means no change can slip between the two.
                changes.borrow_and_update();
                let (batch, over) = generation.events_after(self.last);
                if let Some(last) = batch.last() {
                    self.last = last.id;
                    return Some(batch);
                }
                if over || changes.changed().await.is_err() {
                    return None;
                }
            },
        }
    }
}
