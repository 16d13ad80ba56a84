//! Replies owned by the server: one generation per chat at a time, each a tracked task whose text is
//! written to storage in batches and whose events' numbering stays in memory a while for listeners that
//! come late.

mod events;
mod finished;
mod flusher;
mod record;
mod run;
mod subscription;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chat_domain::time::now_utc;
use chat_domain::{ChatId, MessageStatus, UserId};
use chat_storage::{Database, FinishedReply};
use tokio_util::task::TaskTracker;

pub(crate) use events::replay;
pub use events::{CANCELLED, Ending, NumberedEvent, StreamEvent, StreamFailure, StreamStart};
pub(crate) use finished::Finished;
pub(crate) use flusher::FinalState;
pub(crate) use record::{Generation, StopReason};
pub(crate) use run::{Ask, EarlyAsk, Job};
pub use subscription::Subscription;

use crate::ServiceError;
use crate::activity::{Activity, Tally};
use llm_providers::Usage;

/// Memory a finished reply kept for resuming takes besides its delta offsets and model name: its
/// record, the registry's entries and its place in the eviction queue (an estimate).
const RETAINED_OVERHEAD: usize = 320;
/// How long the final writes of stopped generations may take once the shutdown grace period is over.
const FINAL_WRITES_WAIT: Duration = Duration::from_secs(5);
/// How often shutdown checks whether slots reserved before it have been launched or freed.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// How generations keep their text safe and their events available.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    /// How often the text of running replies is written to storage: a crash loses at most this much.
    pub flush_interval: Duration,
    /// How long a finished reply's event numbering stays in memory (its text is read from storage), so a
    /// listener that lost its connection can resume from its last event id.
    pub resume_window: Duration,
    /// The most memory kept for finished replies' event numbering; the oldest go first beyond it.
    pub resume_bytes: usize,
    /// On a database shared by several servers, a reply not heard of (flushed or marked alive) for this
    /// long is taken as abandoned by a server that died, and stored as `interrupted` by another.
    pub lease: Duration,
    /// The most replies one user may have running at once in this process; 0 for no limit.
    pub max_per_user: usize,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(500),
            resume_window: Duration::from_secs(300),
            resume_bytes: 32 << 20,
            lease: Duration::from_secs(30),
            max_per_user: 0,
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
    /// Final writes that failed; the flusher retries them until they land.
    unwritten: Mutex<Vec<FinalState>>,
    tracker: TaskTracker,
    flusher: OnceLock<()>,
    /// When running replies were last marked alive, and abandoned ones last looked for.
    last_heartbeat: Mutex<Instant>,
    /// Replies ended and tokens counted since start-up.
    tally: Tally,
}

/// A chat's generation: reserved while its messages are stored (a stop asked for meanwhile is kept
/// for the launch), then running.
#[derive(Debug)]
enum Slot {
    Reserved { stop: Option<StopReason> },
    Running(Arc<Generation>),
}

#[derive(Debug, Default)]
struct Registry {
    chats: HashMap<ChatId, Slot>,
    /// Whose each reserved or running chat is, and how many each user has.
    owners: HashMap<ChatId, UserId>,
    per_user: HashMap<UserId, usize>,
    /// Running and recently finished replies, by assistant message id.
    messages: HashMap<i64, Kept>,
    /// Finished replies still in `messages`, oldest first: when each ended, and the memory it holds.
    retained: VecDeque<(Instant, i64, usize)>,
    retained_bytes: usize,
    /// Shutdown has begun: no new reservation.
    closing: bool,
    /// The grace period is over: whatever still launches is stopped at once.
    stopping: bool,
}

/// What is kept of a reply: the generation while its task runs, then a record of its events.
#[derive(Debug, Clone)]
pub(crate) enum Kept {
    Live(Arc<Generation>),
    Finished(Arc<Finished>),
}

impl Kept {
    pub(crate) fn chat_id(&self) -> ChatId {
        match self {
            Kept::Live(generation) => generation.start.chat_id,
            Kept::Finished(finished) => finished.start.chat_id,
        }
    }
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
            self.shared.registry().free(self.chat_id);
        }
    }
}

impl Registry {
    /// Frees the chat's slot, and its user's count.
    fn free(&mut self, chat_id: ChatId) {
        self.chats.remove(&chat_id);
        if let Some(user) = self.owners.remove(&chat_id)
            && let Some(count) = self.per_user.get_mut(&user)
        {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(&user);
            }
        }
    }
}

/// Frees the chat and retains the events when the task ends, however it ends. A task that ended
/// without telling its ending (it panicked, or its runtime went away) is ended here as interrupted,
/// so nobody waits on it forever, and its text goes to the flusher.
struct Running {
    shared: Arc<Shared>,
    generation: Arc<Generation>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.generation.has_ended() {
            tracing::error!(message_id = self.generation.message_id(), "a reply's task ended without storing it");
            let reply = FinishedReply::interrupted(self.generation.text(), now_utc());
            self.shared.unwritten().push(FinalState::unpaid(self.generation.message_id(), reply));
            let ending = Ending::Failed(StreamFailure::Interrupted);
            self.generation.end(ending, MessageStatus::Interrupted, Some(ServiceError::ShuttingDown));
        }
        self.shared.finished(&self.generation);
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unwritten(&self) -> MutexGuard<'_, Vec<FinalState>> {
        self.unwritten.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self, generation: &Arc<Generation>) {
        let mut registry = self.registry();
        let chat_id = generation.start.chat_id;
        if matches!(registry.chats.get(&chat_id), Some(Slot::Running(g)) if Arc::ptr_eq(g, generation)) {
            registry.free(chat_id);
        }
        // From here on a listener resuming it reads its text from storage: only the numbering of its
        // events stays in memory. `Running`'s drop has ended every generation it hands here.
        let id = generation.message_id();
        let Some(finished) = generation.to_finished() else {
            registry.messages.remove(&id);
            return;
        };
        let size = finished.memory() + RETAINED_OVERHEAD;
        if matches!(registry.messages.get(&id), Some(Kept::Live(g)) if Arc::ptr_eq(g, generation)) {
            registry.messages.insert(id, Kept::Finished(Arc::new(finished)));
        }
        registry.retained.push_back((Instant::now(), id, size));
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

    /// No reservation is waiting to launch and no generation runs.
    fn drained(&self) -> bool {
        let reserved = self.registry().chats.values().any(|slot| matches!(slot, Slot::Reserved { .. }));
        !reserved && self.tracker.is_empty()
    }

    async fn wait_drained(&self) {
        loop {
            self.tracker.wait().await;
            if self.drained() {
                return;
            }
            // A slot reserved before shutdown is about to launch its generation, or to be freed.
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

impl Generations {
    pub(crate) fn new(db: Database, settings: GenerationSettings) -> Self {
        let shared = Shared {
            db,
            settings,
            registry: Mutex::default(),
            dirty: Mutex::default(),
            unwritten: Mutex::default(),
            tracker: TaskTracker::new(),
            flusher: OnceLock::new(),
            last_heartbeat: Mutex::new(Instant::now()),
            tally: Tally::default(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// Takes the chat's slot, or says why not.
    /// Replies running now, and the tally since start-up.
    pub(crate) fn activity(&self) -> Activity {
        let running = self.shared.registry().chats.values().filter(|slot| matches!(slot, Slot::Running(_))).count();
        self.shared.tally.read(running)
    }

    /// Counts a reply that ended (stored with `status`) and its tokens.
    pub(crate) fn count_reply(&self, status: MessageStatus, usage: Usage) {
        self.shared.tally.reply(status, usage);
    }

    pub(crate) fn reserve(&self, chat_id: ChatId, user: UserId) -> Result<Reservation, ServiceError> {
        let mut registry = self.shared.registry();
        if registry.closing {
            return Err(ServiceError::ShuttingDown);
        }
        if registry.chats.contains_key(&chat_id) {
            return Err(ServiceError::GenerationInProgress);
        }
        let limit = self.shared.settings.max_per_user;
        if limit > 0 && registry.per_user.get(&user).is_some_and(|&running| running >= limit) {
            return Err(ServiceError::TooManyGenerations { limit });
        }
        registry.chats.insert(chat_id, Slot::Reserved { stop: None });
        registry.owners.insert(chat_id, user);
        *registry.per_user.entry(user).or_default() += 1;
        Ok(Reservation { shared: Arc::clone(&self.shared), chat_id, used: false })
    }

    /// Registers `generation` in the reserved slot and runs `task` as a tracked task. A stop asked for
    /// while the slot was reserved (or shutdown past its grace) stops it at once.
    pub(crate) fn launch<F>(&self, mut reservation: Reservation, generation: Arc<Generation>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = {
            let mut registry = self.shared.registry();
            let slot = registry.chats.insert(reservation.chat_id, Slot::Running(Arc::clone(&generation)));
            registry.messages.insert(generation.message_id(), Kept::Live(Arc::clone(&generation)));
            let asked = match slot {
                Some(Slot::Reserved { stop }) => stop,
                _ => None,
            };
            asked.or(registry.stopping.then_some(StopReason::Shutdown))
        };
        reservation.used = true;
        if let Some(reason) = stop {
            generation.stop(reason);
        }
        self.start_flusher();
        let running = Running { shared: Arc::clone(&self.shared), generation };
        self.shared.tracker.spawn(async move {
            let _running = running;
            task.await;
        });
    }

    /// Starts the task that writes running replies' text, marks them alive and, on a shared database,
    /// looks for replies abandoned by servers that died. Once per process; needs a Tokio runtime.
    pub(crate) fn start_flusher(&self) {
        self.shared.flusher.get_or_init(|| {
            tokio::spawn(flusher::run(Arc::downgrade(&self.shared), self.shared.settings.flush_interval));
        });
    }

    /// Stops the chat's generation: the running one, or the one about to launch. Returns the running one.
    pub(crate) fn stop_chat(&self, chat_id: ChatId, reason: StopReason) -> Option<Arc<Generation>> {
        let mut registry = self.shared.registry();
        match registry.chats.get_mut(&chat_id)? {
            Slot::Running(generation) => {
                generation.stop(reason);
                Some(Arc::clone(generation))
            }
            Slot::Reserved { stop } => {
                stop.get_or_insert(reason);
                None
            }
        }
    }

    /// What is kept of an assistant message's reply, running or recently finished.
    pub(crate) fn find(&self, message_id: i64) -> Option<Kept> {
        self.shared.registry().messages.get(&message_id).cloned()
    }

    /// The generation of an assistant message whose reply is still running here.
    pub(crate) fn find_running(&self, message_id: i64) -> Option<Arc<Generation>> {
        match self.find(message_id)? {
            Kept::Live(generation) if !generation.has_ended() => Some(generation),
            Kept::Live(_) | Kept::Finished(_) => None,
        }
    }

    /// Hands a reply with unwritten text to the flusher.
    pub(crate) fn mark_dirty(&self, generation: Arc<Generation>) {
        self.shared.dirty.lock().unwrap_or_else(PoisonError::into_inner).push(generation);
    }

    /// How often running replies' text reaches the database (and how often others' are looked at).
    pub(crate) fn flush_interval(&self) -> Duration {
        self.shared.settings.flush_interval
    }

    /// How long a reply may go unheard of before another server takes it as abandoned.
    pub(crate) fn lease(&self) -> Duration {
        self.shared.settings.lease
    }

    /// Keeps a final write that failed for the flusher to retry.
    pub(crate) fn keep_unwritten(&self, state: FinalState) {
        self.shared.unwritten().push(state);
    }

    /// Refuses new generations, lets running ones finish for up to `grace`, then stops the rest (stored
    /// as `interrupted`) and waits for their final writes. Returns how many were interrupted.
    pub(crate) async fn shutdown(&self, grace: Duration) -> usize {
        self.shared.registry().closing = true;
        self.shared.tracker.close();
        let mut interrupted = 0;
        if tokio::time::timeout(grace, self.shared.wait_drained()).await.is_err() {
            let running: Vec<Arc<Generation>> = {
                let mut registry = self.shared.registry();
                registry.stopping = true;
                registry
                    .chats
                    .values()
                    .filter_map(|slot| match slot {
                        Slot::Running(generation) => Some(Arc::clone(generation)),
                        Slot::Reserved { .. } => None,
                    })
                    .collect()
            };
            for generation in &running {
                generation.stop(StopReason::Shutdown);
            }
            interrupted = running.len();
            if tokio::time::timeout(FINAL_WRITES_WAIT, self.shared.wait_drained()).await.is_err() {
                tracing::error!("replies stopped at shutdown were not all stored in time");
            }
        }
        self.shared.retry_unwritten().await;
        interrupted
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::Role;
    use chat_storage::{NewMessage, PoolOptions, chats, messages};

    use super::*;

    /// Generations on a fresh database, with a chat and a `generating` placeholder in it.
    fn fixture() -> (tempfile::TempDir, Generations, Arc<Generation>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let db = Database::open(&url, &PoolOptions::default()).unwrap();
        let now = now_utc();
        let user = chat_storage::NewUser {
            id: chat_domain::UserId::new_random(),
            email: "g@example.com".into(),
            password_hash: "x".into(),
            created_at: now,
            updated_at: now,
        };
        let chat_id = ChatId::new_random();
        let placeholder = NewMessage {
            status: MessageStatus::Generating,
            ..NewMessage::plain(chat_id, Role::Assistant, String::new(), now)
        };
        let user_id = user.id;
        let message = db
            .with_connection(|c| {
                chat_storage::users::insert_user(c, user)?;
                let chat = chats::NewChat {
                    id: chat_id,
                    user_id,
                    title: None,
                    system_prompt: None,
                    created_at: now,
                    updated_at: now,
                };
                chats::insert_chat(c, chat)?;
                messages::insert_message(c, placeholder)
            })
            .unwrap();
        let start = StreamStart { chat_id, user_message_id: 0, message_id: message.id, model: "fast".into() };
        let settings =
            GenerationSettings { flush_interval: Duration::from_millis(10), ..GenerationSettings::default() };
        (dir, Generations::new(db, settings), Arc::new(Generation::new(start)))
    }

    #[tokio::test]
    async fn a_stop_asked_for_before_the_launch_stops_the_generation_as_it_launches() {
        let (_dir, generations, generation) = fixture();
        let chat = generation.start.chat_id;
        let reservation = generations.reserve(chat, UserId::new_random()).unwrap();
        assert!(generations.stop_chat(chat, StopReason::Cancel).is_none(), "nothing runs yet");
        let task_generation = Arc::clone(&generation);
        generations.launch(reservation, Arc::clone(&generation), async move {
            task_generation.stopped().await;
            task_generation.end(Ending::Failed(StreamFailure::Interrupted), MessageStatus::Cancelled, None);
        });
        tokio::time::timeout(Duration::from_secs(5), generation.ended()).await.unwrap();
        assert_eq!(generation.stop_reason(), Some(StopReason::Cancel));
    }

    #[tokio::test]
    async fn shutdown_waits_for_reserved_slots_and_stops_what_launches_after_the_grace() {
        let (_dir, generations, generation) = fixture();
        let reservation = generations.reserve(generation.start.chat_id, UserId::new_random()).unwrap();
        let shutting = tokio::spawn({
            let generations = generations.clone();
            async move { generations.shutdown(Duration::from_millis(30)).await }
        });
        // Reserved before shutdown, launched after its grace: stopped at once.
        while !generations.shared.registry().stopping {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let task_generation = Arc::clone(&generation);
        generations.launch(reservation, Arc::clone(&generation), async move {
            task_generation.stopped().await;
            task_generation.end(Ending::Failed(StreamFailure::Interrupted), MessageStatus::Interrupted, None);
        });
        shutting.await.unwrap();
        assert!(generation.has_ended(), "shutdown returned only once the late generation had ended");
        assert_eq!(generation.stop_reason(), Some(StopReason::Shutdown));
        assert!(matches!(
            generations.reserve(ChatId::new_random(), UserId::new_random()),
            Err(ServiceError::ShuttingDown)
        ));
    }

    #[tokio::test]
    async fn a_user_may_have_at_most_max_per_user_replies_reserved_or_running() {
        let (_dir, fixture, generation) = fixture();
        let settings = GenerationSettings { max_per_user: 2, ..GenerationSettings::default() };
        let generations = Generations::new(fixture.shared.db.clone(), settings);
        let (user, other) = (UserId::new_random(), UserId::new_random());
        let running = generations.reserve(generation.start.chat_id, user).unwrap();
        let second = generations.reserve(ChatId::new_random(), user).unwrap();
        let third = ChatId::new_random();
        assert!(matches!(generations.reserve(third, user), Err(ServiceError::TooManyGenerations { limit: 2 })));
        // Another user has their own count.
        drop(generations.reserve(third, other).unwrap());
        // A reservation given up frees its place.
        drop(second);
        let third = generations.reserve(third, user).unwrap();
        assert!(generations.reserve(ChatId::new_random(), user).is_err());
        // So does a reply that ends.
        let task_generation = Arc::clone(&generation);
        generations.launch(running, Arc::clone(&generation), async move {
            task_generation.end(Ending::Failed(StreamFailure::Interrupted), MessageStatus::Interrupted, None);
        });
        tokio::time::timeout(Duration::from_secs(5), async {
            while generations.reserve(ChatId::new_random(), user).is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        drop(third);
    }

    #[tokio::test]
    async fn a_task_that_ends_without_its_ending_wakes_its_waiters_and_is_stored_interrupted() {
        let (_dir, generations, generation) = fixture();
        generation.append("kept");
        let reservation = generations.reserve(generation.start.chat_id, UserId::new_random()).unwrap();
        generations.launch(reservation, Arc::clone(&generation), async {});
        tokio::time::timeout(Duration::from_secs(5), generation.ended()).await.unwrap();
        assert!(matches!(generation.take_error(), Some(ServiceError::ShuttingDown)));
        // The flusher stores what the task could not.
        let db = generations.shared.db.clone();
        for _ in 0..500 {
            let stored =
                db.with_connection(|c| messages::find_message(c, generation.start.chat_id, generation.message_id()));
            let stored = stored.unwrap().unwrap();
            if stored.status == MessageStatus::Interrupted {
                assert_eq!(stored.content, "kept");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the reply was never stored as interrupted");
    }

    /// The resume window keeps a record of a finished reply's events, not its generation: once its
    /// task has ended and its listeners are gone, the generation (its text, its signals) is freed.
    #[tokio::test]
    async fn a_finished_reply_is_kept_as_a_record_and_its_generation_freed() {
        let (_dir, generations, generation) = fixture();
        let id = generation.message_id();
        let reservation = generations.reserve(generation.start.chat_id, UserId::new_random()).unwrap();
        let task_generation = Arc::clone(&generation);
        generations.launch(reservation, Arc::clone(&generation), async move {
            task_generation.append("done");
            let ending = Ending::Done { finish_reason: "stop".into(), usage: Usage::default() };
            task_generation.end(ending, MessageStatus::Complete, None);
        });
        let freed = Arc::downgrade(&generation);
        drop(generation);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !matches!(generations.find(id), Some(Kept::Finished(_))) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the finished reply is kept as a record");
        assert!(freed.upgrade().is_none(), "nothing holds the generation any more");
        assert!(generations.find_running(id).is_none());
    }
}
