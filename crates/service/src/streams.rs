//! Following a reply's events (live, resumed, or replayed from storage) and stopping a chat's generation.

use std::time::Duration;

use chat_domain::{ChatId, MessageStatus, Role, UserId};
use chat_storage::{chats, messages};

use crate::chats::{not_found, parse_chat_id};
use crate::generation::{CANCELLED, Ending, Kept, StopReason, StreamStart, Subscription, replay};
use crate::{ChatService, ServiceError};

/// How long a cancel waits for the stopped reply to be stored before answering anyway.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

impl ChatService {
    /// The events of an assistant message of the user's chat: live from after `last_event_id` while it
    /// is generated here (or, when resuming, finished recently); otherwise a finished reply told whole
    /// (`start`, one `delta`, its ending).
    pub async fn follow(
        &self,
        user_id: UserId,
        chat_id: &str,
        message_id: i64,
        last_event_id: Option<u64>,
    ) -> Result<Subscription, ServiceError> {
        let id = parse_chat_id(chat_id)?;
        // Looked up first: a reply kept as finished was stored before it was, so the message read
        // next has its final text.
        let kept = self.generations.find(message_id).filter(|kept| kept.chat_id() == id);
        let stored = self
            .db
            .run(move |c| match chats::find_chat_for_user(c, id, user_id)? {
                Some(_) => messages::find_message(c, id, message_id).map(Some),
                None => Ok(None),
            })
            .await?
            .ok_or_else(|| not_found(chat_id))?;
        let missing = || ServiceError::MessageNotFound { message_id };
        let message = stored.filter(|m| m.role == Role::Assistant).ok_or_else(missing)?;
        match kept {
            Some(Kept::Live(generation)) => {
                // A finished reply is told whole, as from storage, unless a listener resumes its stream.
                if last_event_id.is_none()
                    && let Some(summary) = generation.summary()
                {
                    return Ok(Subscription::replay(summary));
                }
                return Ok(Subscription::live(generation, last_event_id.unwrap_or(0)));
            }
            // Its events numbered as they were live, over the text stored.
            Some(Kept::Finished(finished)) => {
                if let Some(events) = finished.events(&message, last_event_id) {
                    return Ok(Subscription::replay(events));
                }
            }
            None => {}
        }
        // Not in memory: the reply is told from what is stored (and followed there while another
        // server generates it). Its `start` tells a resuming listener to begin the message again, as
        // the ids it saw may not match these.
        let user_message_id = self
            .db
            .run(move |c| messages::list_recent_messages(c, id, message_id, 1))
            .await?
            .into_iter()
            .find(|m| m.role == Role::User)
            .map_or(0, |m| m.id);
        if message.status == MessageStatus::Generating {
            let start = StreamStart {
                chat_id: id,
                user_message_id,
                message_id,
                model: message.model_alias.clone().unwrap_or_default(),
            };
            return Ok(Subscription::poll(self.db.clone(), start, self.generations.flush_interval()));
        }
        Ok(Subscription::replay(replay(&message, user_message_id)))
    }

    /// Stops the chat's running generation; its text so far is stored as `cancelled` before this
    /// returns. `false` when nothing was running.
    pub async fn cancel(&self, user_id: UserId, chat_id: &str) -> Result<bool, ServiceError> {
        let id = parse_chat_id(chat_id)?;
        self.db.run(move |c| chats::find_chat_for_user(c, id, user_id)).await?.ok_or_else(|| not_found(chat_id))?;
        let Some(generation) = self.generations.stop_chat(id, StopReason::Cancel) else {
            // Nothing runs here (a reply about to start here is stopped as it does); on a shared
            // database another server may be generating it.
            return self.cancel_elsewhere(id).await;
        };
        if tokio::time::timeout(CANCEL_WAIT, generation.ended()).await.is_err() {
            tracing::warn!(message_id = generation.message_id(), "a cancelled reply was not stored in time");
        }
        Ok(match generation.ending() {
            Some((Ending::Done { finish_reason, .. }, MessageStatus::Cancelled)) => finish_reason == CANCELLED,
            Some(_) => false,
            // Still being stored: it was told to stop before it finished.
            None => true,
        })
    }

    /// Asks the server generating the chat's reply to stop it (it looks at every flush), and waits until
    /// the reply is stored as stopped. `false` when no reply was generating.
    async fn cancel_elsewhere(&self, chat_id: ChatId) -> Result<bool, ServiceError> {
        if self.db.is_exclusive() {
            return Ok(false);
        }
        let Some(id) = self.db.write(move |c| messages::request_cancel(c, chat_id)).await? else {
            return Ok(false);
        };
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        loop {
            let status = self.db.run(move |c| messages::status_of(c, id)).await?;
            match status {
                Some(MessageStatus::Generating) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(self.generations.flush_interval() / 4).await;
                }
                // Still generating at the deadline: its server is slow or gone; the stop stays asked for.
                Some(MessageStatus::Generating) => return Ok(true),
                Some(MessageStatus::Cancelled) | None => return Ok(true),
                Some(_) => return Ok(false),
            }
        }
    }

    /// Marks replies left `generating` by a previous run (a crash) as `interrupted`: all of them on a
    /// database this server holds alone; on a shared one, those no server has marked alive within the
    /// lease (others' running replies are left alone). Blocking: for start-up, before requests are served.
    pub fn recover_interrupted(&self) -> Result<usize, ServiceError> {
        let now = chat_domain::time::now_utc();
        let lease = chrono::Duration::from_std(self.generations.lease()).unwrap_or(chrono::Duration::MAX);
        let stale_before = (!self.db.is_exclusive()).then(|| now - lease);
        Ok(self.db.with_connection(|c| messages::interrupt_generating(c, now, stale_before))?)
    }

    /// Starts the background work of replies (writing their text, marking them alive, recovering those
    /// of servers that died) on the current Tokio runtime; otherwise it starts with the first reply.
    pub fn start_background(&self) {
        self.generations.start_flusher();
    }

    /// Refuses new replies, gives running ones `grace` to finish, then stores the rest as
    /// `interrupted`. Returns how many were interrupted.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.generations.shutdown(grace).await
    }
}
