//! The flusher: every interval it writes running replies' text in one transaction, marks them alive,
//! retries final writes that failed and, on a shared database, stops replies wanted no more and
//! recovers those of servers that died.

use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use chat_domain::time::now_utc;
use chat_storage::messages;

use super::record::{Generation, StopReason};
use super::{Shared, Slot};

/// Writes running replies' text every `flush_interval`, until the generations are dropped.
pub(super) async fn run(shared: Weak<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        shared.flush().await;
    }
}

impl Shared {
    /// Writes the text of every reply that changed since the last flush, in one transaction, and
    /// retries final writes that failed.
    async fn flush(&self) {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        let progress: Vec<(i64, String)> = dirty.iter().filter_map(|g| g.take_progress()).collect();
        let heartbeat = self.heartbeat_due();
        let alive: Vec<i64> = if heartbeat { self.running_ids(&progress) } else { Vec::new() };
        if !progress.is_empty() || !alive.is_empty() {
            let count = progress.len();
            let at = now_utc();
            if let Err(err) = self.db.run(move |c| messages::save_progress(c, &progress, &alive, at)).await {
                tracing::error!(error = %err, replies = count, "could not write the progress of running replies");
                // Written at the next flush instead (or by their final write).
                for generation in dirty {
                    generation.mark_dirty();
                    self.dirty.lock().unwrap_or_else(PoisonError::into_inner).push(generation);
                }
            }
        }
        self.retry_unwritten().await;
        if !self.db.is_exclusive() {
            self.stop_unwanted().await;
            if heartbeat {
                self.interrupt_abandoned().await;
            }
        }
        self.evict(&mut self.registry());
    }

    /// Stops the replies running here that another server asked to stop, or whose chat it deleted.
    async fn stop_unwanted(&self) {
        let running: Vec<Arc<Generation>> = self
            .registry()
            .chats
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(generation) if !generation.has_ended() => Some(Arc::clone(generation)),
                _ => None,
            })
            .collect();
        if running.is_empty() {
            return;
        }
        let ids: Vec<i64> = running.iter().map(|g| g.message_id()).collect();
        match self.db.run(move |c| messages::still_wanted(c, &ids)).await {
            Ok(wanted) => {
                for generation in running.iter().filter(|g| !wanted.contains(&g.message_id())) {
                    tracing::info!(message_id = generation.message_id(), "a reply was stopped from another server");
                    generation.stop(StopReason::Cancel);
                }
            }
            Err(err) => tracing::error!(error = %err, "could not check whether running replies are still wanted"),
        }
    }

    /// Whether a third of the lease has passed since running replies were last marked alive.
    fn heartbeat_due(&self) -> bool {
        let mut last = self.last_heartbeat.lock().unwrap_or_else(PoisonError::into_inner);
        let due = last.elapsed() >= self.settings.lease / 3;
        if due {
            *last = Instant::now();
        }
        due
    }

    /// The message ids of the replies running here, but those in `written`.
    fn running_ids(&self, written: &[(i64, String)]) -> Vec<i64> {
        self.registry()
            .chats
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(generation) if !generation.has_ended() => Some(generation.message_id()),
                _ => None,
            })
            .filter(|id| !written.iter().any(|(written, _)| written == id))
            .collect()
    }

    /// Stores as `interrupted` the replies of servers that stopped marking them alive (they died).
    async fn interrupt_abandoned(&self) {
        let now = now_utc();
        let stale_before = now - chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
        match self.db.run(move |c| messages::interrupt_generating(c, now, Some(stale_before))).await {
            Ok(0) => {}
            Ok(count) => {
                tracing::warn!(replies = count, "replies abandoned by a stopped server are marked interrupted")
            }
            Err(err) => tracing::error!(error = %err, "could not look for abandoned replies"),
        }
    }

    pub(super) async fn retry_unwritten(&self) {
        let pending = std::mem::take(&mut *self.unwritten());
        for (id, reply) in pending {
            let attempt = reply.clone();
            match self.db.run(move |c| messages::finish_reply(c, id, attempt)).await {
                Ok(_) => tracing::info!(message_id = id, "a reply's final state is stored after all"),
                Err(err) => {
                    tracing::error!(error = %err, message_id = id, "a reply's final state still cannot be stored");
                    self.unwritten().push((id, reply));
                }
            }
        }
    }
}
