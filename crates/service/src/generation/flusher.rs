//! The flusher: every interval it writes running replies' text in one transaction, marks them alive,
//! retries final writes that failed and, on a shared database, stops replies wanted no more and
//! recovers those of servers that died.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use chat_domain::time::now_utc;
use chat_storage::{DbConnection, FinishedReply, StorageError, messages};

use super::record::{Generation, StopReason};
use super::{Shared, Slot};
use crate::budget::Settlement;

/// A reply's final state: the reply and, with a budget, the settlement of the tokens it spent, written
/// together so that a reply is counted exactly when it is stored.
#[derive(Debug, Clone)]
pub(crate) struct FinalState {
    pub message_id: i64,
    pub reply: FinishedReply,
    pub settlement: Option<Settlement>,
}

impl FinalState {
    /// A reply that ends without tokens to settle.
    pub(crate) fn unpaid(message_id: i64, reply: FinishedReply) -> Self {
        Self { message_id, reply, settlement: None }
    }

    /// Writes it in one transaction; `false` when the message is gone (its chat was deleted), the
    /// settlement being written all the same.
    pub(crate) fn write(self, conn: &mut DbConnection) -> Result<bool, StorageError> {
        let written = messages::finish_reply(conn, self.message_id, self.reply)?;
        if let Some(settlement) = self.settlement {
            settlement.write(conn)?;
        }
        Ok(written)
    }
}

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
            let at = now_utc();
            let (batch, others) = (progress.clone(), alive.clone());
            match self.db.write(move |c| messages::save_progress(c, &batch, &others, at)).await {
                Ok(()) => {
                    if heartbeat {
                        self.heartbeat_written();
                    }
                }
                // One reply the database refuses must not hold back the others: each alone.
                Err(err) => {
                    tracing::error!(error = %err, replies = progress.len(), "could not write running replies together");
                    self.write_one_by_one(&dirty, progress, alive, heartbeat).await;
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
                let wanted: HashSet<i64> = wanted.into_iter().collect();
                for generation in running.iter().filter(|g| !wanted.contains(&g.message_id())) {
                    tracing::info!(message_id = generation.message_id(), "a reply was stopped from another server");
                    generation.stop(StopReason::Cancel);
                }
            }
            Err(err) => tracing::error!(error = %err, "could not check whether running replies are still wanted"),
        }
    }

    /// Writes each reply's progress in its own statement, and the heartbeat apart; what still fails is
    /// marked to be written at the next flush (or by its final write).
    async fn write_one_by_one(
        &self,
        dirty: &[Arc<Generation>],
        progress: Vec<(i64, String)>,
        alive: Vec<i64>,
        heartbeat: bool,
    ) {
        let at = now_utc();
        for (id, content) in progress {
            let one = [(id, content)];
            if let Err(err) = self.db.write(move |c| messages::save_progress(c, &one, &[], at)).await {
                tracing::error!(error = %err, message_id = id, "could not write a running reply's progress");
                if let Some(generation) = dirty.iter().find(|g| g.message_id() == id) {
                    generation.mark_dirty();
                    self.dirty.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(generation));
                }
            }
        }
        if heartbeat {
            match self.db.write(move |c| messages::save_progress(c, &[], &alive, at)).await {
                Ok(()) => self.heartbeat_written(),
                Err(err) => tracing::error!(error = %err, "could not mark running replies alive"),
            }
        }
    }

    /// Whether a third of the lease has passed since running replies were last marked alive.
    fn heartbeat_due(&self) -> bool {
        self.last_heartbeat.lock().unwrap_or_else(PoisonError::into_inner).elapsed() >= self.settings.lease / 3
    }

    /// Running replies were marked alive now: the next heartbeat is due a third of the lease later.
    fn heartbeat_written(&self) {
        *self.last_heartbeat.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// The message ids of the replies running here, but those in `written`.
    fn running_ids(&self, written: &[(i64, String)]) -> Vec<i64> {
        // A set: with thousands of replies streaming, a scan per reply would be quadratic.
        let written: HashSet<i64> = written.iter().map(|(id, _)| *id).collect();
        self.registry()
            .chats
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(generation) if !generation.has_ended() => Some(generation.message_id()),
                _ => None,
            })
            .filter(|id| !written.contains(id))
            .collect()
    }

    /// Stores as `interrupted` the replies of servers that stopped marking them alive (they died).
    async fn interrupt_abandoned(&self) {
        let now = now_utc();
        let stale_before = now - chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
        match self.db.write(move |c| messages::interrupt_generating(c, now, Some(stale_before))).await {
            Ok(0) => {}
            Ok(count) => {
                tracing::warn!(replies = count, "replies abandoned by a stopped server are marked interrupted")
            }
            Err(err) => tracing::error!(error = %err, "could not look for abandoned replies"),
        }
    }

    /// Retries the final writes that failed (with their settlements); those failing again wait for the next flush.
    pub(super) async fn retry_unwritten(&self) {
        let pending = std::mem::take(&mut *self.unwritten());
        for state in pending {
            let (id, attempt) = (state.message_id, state.clone());
            match self.db.write(move |c| attempt.write(c)).await {
                Ok(_) => tracing::info!(message_id = id, "a reply's final state is stored after all"),
                Err(err) => {
                    tracing::error!(error = %err, message_id = id, "a reply's final state still cannot be stored");
                    self.unwritten().push(state);
                }
            }
        }
    }
}
