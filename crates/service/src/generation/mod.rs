//! Replies owned by the server: one generation per chat at a time, each a tracked task whose text is
//! written to storage in batches and whose events stay in memory a while for listeners that come late.

mod events;
mod record;
mod run;
mod subscription;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use chat_domain::ChatId;
use chat_storage::{Database, messages};
use tokio_util::task::TaskTracker;

pub(crate) use events::replay;
pub use events::{CANCELLED, Ending, NumberedEvent, StreamEvent, StreamFailure, StreamStart};
pub(crate) use record::{Generation, StopReason};
pub(crate) use run::Job;
pub use subscription::Subscription;

use crate::ServiceError;

/// Memory a finished generation kept for resuming takes besides its text (an estimate).
const RETAINED_OVERHEAD: usize = 512;
/// How long the final write of stopped generations may take once the shutdown grace period is over.
const FINAL_WRITES_WAIT: Duration = Duration::from_secs(10);

/// How generations keep their text safe and their events available.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    /// How often the text of running replies is written to storage: a crash loses at most this much.
    pub flush_interval: Duration,
    /// How long a finished reply's events stay in memory, so a listener that lost its connection can
    /// resume from its last event id.
    pub resume_window: Duration,
    /// The most text kept in memory for finished replies; the oldest go first beyond it.
    pub resume_bytes: usize,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(500),
            resume_window: Duration::from_secs(300),
            resume_bytes: 32 << 20,
        }
    }
}

/// The generations of this process; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Generations {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    db: Database,
    settings: GenerationSettings,
    registry: Mutex<Registry>,
    /// Generations with text the flusher has not written yet.
    dirty: Mutex<Vec<Arc<Generation>>>,
    tracker: TaskTracker,
    closing: AtomicBool,
    flusher: OnceLock<()>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Chats with a generation: reserved while its messages are being stored, then running.
    chats: HashMap<ChatId, Option<Arc<Generation>>>,
    /// Running and recently finished generations, by assistant message id.
    messages: HashMap<i64, Arc<Generation>>,
    /// Finished generations still in `messages`, oldest first: when each ended, and its text's size.
    retained: VecDeque<(Instant, i64, usize)>,
    retained_bytes: usize,
}

/// A chat's generation slot, held from before its messages are stored; dropping it unused frees it.
#[derive(Debug)]
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    chat_id: ChatId,
    used: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            self.shared.registry().chats.remove(&self.chat_id);
        }
    }
}

/// Frees the chat and retains the events when the task ends, however it ends.
struct Running {
    shared: Arc<Shared>,
    generation: Arc<Generation>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.finished(&self.generation);
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self, generation: &Arc<Generation>) {
        let mut registry = self.registry();
        let chat_id = generation.start.chat_id;
        if registry.chats.get(&chat_id).and_then(Option::as_ref).is_some_and(|g| Arc::ptr_eq(g, generation)) {
            registry.chats.remove(&chat_id);
        }
        // The text plus what a kept generation costs besides it, so that many tiny replies count too.
        let size = generation.text_len() + RETAINED_OVERHEAD;
        registry.retained.push_back((Instant::now(), generation.message_id(), size));
        registry.retained_bytes += size;
        self.evict(&mut registry);
    }

    /// Forgets finished generations past the resume window or beyond the memory budget.
    fn evict(&self, registry: &mut Registry) {
        let now = Instant::now();
        while let Some(&(ended, id, size)) = registry.retained.front() {
            let expired = now.duration_since(ended) >= self.settings.resume_window;
            if !expired && registry.retained_bytes <= self.settings.resume_bytes {
                break;
            }
            registry.retained.pop_front();
            registry.retained_bytes -= size;
            registry.messages.remove(&id);
        }
    }

    /// Writes the text of every reply that changed since the last flush, in one transaction.
    async fn flush(&self) {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        let progress: Vec<(i64, String)> = dirty.iter().filter_map(|g| g.take_progress()).collect();
        if !progress.is_empty() {
            let count = progress.len();
            if let Err(err) = self.db.run(move |c| messages::save_progress(c, &progress)).await {
                // The next change of each reply marks it again; its final write stores the whole text anyway.
                tracing::error!(error = %err, replies = count, "could not write the progress of running replies");
            }
        }
        self.evict(&mut self.registry());
    }
}

/// Writes running replies' text every `flush_interval`, until the generations are dropped.
async fn flush_loop(shared: Weak<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        shared.flush().await;
    }
}

impl Generations {
    pub(crate) fn new(db: Database, settings: GenerationSettings) -> Self {
        let shared = Shared {
            db,
            settings,
            registry: Mutex::default(),
            dirty: Mutex::default(),
            tracker: TaskTracker::new(),
            closing: AtomicBool::new(false),
            flusher: OnceLock::new(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// Takes the chat's slot, or says why not.
    pub(crate) fn reserve(&self, chat_id: ChatId) -> Result<Reservation, ServiceError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown);
        }
        let mut registry = self.shared.registry();
        if registry.chats.contains_key(&chat_id) {
            return Err(ServiceError::GenerationInProgress);
        }
        registry.chats.insert(chat_id, None);
        Ok(Reservation { shared: Arc::clone(&self.shared), chat_id, used: false })
    }

    /// Registers `generation` in the reserved slot and runs `task` as a tracked task.
    pub(crate) fn launch<F>(&self, mut reservation: Reservation, generation: Arc<Generation>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        {
            let mut registry = self.shared.registry();
            registry.chats.insert(reservation.chat_id, Some(Arc::clone(&generation)));
            registry.messages.insert(generation.message_id(), Arc::clone(&generation));
        }
        reservation.used = true;
        self.shared.flusher.get_or_init(|| {
            tokio::spawn(flush_loop(Arc::downgrade(&self.shared), self.shared.settings.flush_interval));
        });
        let running = Running { shared: Arc::clone(&self.shared), generation };
        self.shared.tracker.spawn(async move {
            let _running = running;
            task.await;
        });
    }

    /// The generation running in the chat, if any.
    pub(crate) fn running(&self, chat_id: ChatId) -> Option<Arc<Generation>> {
        self.shared.registry().chats.get(&chat_id).cloned().flatten()
    }

    /// The running or recently finished generation of an assistant message.
    pub(crate) fn find(&self, message_id: i64) -> Option<Arc<Generation>> {
        self.shared.registry().messages.get(&message_id).cloned()
    }

    /// Hands a reply with unwritten text to the flusher.
    pub(crate) fn mark_dirty(&self, generation: Arc<Generation>) {
        self.shared.dirty.lock().unwrap_or_else(PoisonError::into_inner).push(generation);
    }

    /// Refuses new generations, lets running ones finish for up to `grace`, then stops the rest (stored
    /// as `interrupted`) and waits for their final writes. Returns how many were interrupted.
    pub(crate) async fn shutdown(&self, grace: Duration) -> usize {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.tracker.close();
        if tokio::time::timeout(grace, self.shared.tracker.wait()).await.is_ok() {
            return 0;
        }
        let running: Vec<Arc<Generation>> = self.shared.registry().chats.values().flatten().cloned().collect();
        for generation in &running {
            generation.stop(StopReason::Shutdown);
        }
        if tokio::time::timeout(FINAL_WRITES_WAIT, self.shared.tracker.wait()).await.is_err() {
            tracing::error!("replies stopped at shutdown were not all stored in time");
        }
        running.len()
    }
}
