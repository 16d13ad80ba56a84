//! Messages: one row each, read in id order within a chat.

use chat_domain::{ChatId, MessageStatus, Role};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::{chats, messages};
use crate::{DbConnection, StorageError};

/// A stored message.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Message {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub chat_id: ChatId,
    #[diesel(deserialize_as = String)]
    pub role: Role,
    pub content: String,
    #[diesel(deserialize_as = String)]
    pub status: MessageStatus,
    pub model_alias: Option<String>,
    pub provider: Option<String>,
    pub provider_model: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub content_tokens: Option<i32>,
    pub latency_ms: Option<i32>,
    pub finish_reason: Option<String>,
    pub error_detail: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// What a conversation's context needs of an earlier message: no timestamps or provider details to decode.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct HistoryRow {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub role: Role,
    pub content: String,
    #[diesel(deserialize_as = String)]
    pub status: MessageStatus,
    pub content_tokens: Option<i32>,
}

/// A message to store. Fields a user message has no use for stay `None`.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage {
    #[diesel(serialize_as = String)]
    pub chat_id: ChatId,
    #[diesel(serialize_as = String)]
    pub role: Role,
    pub content: String,
    #[diesel(serialize_as = String)]
    pub status: MessageStatus,
    pub model_alias: Option<String>,
    pub provider: Option<String>,
    pub provider_model: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub content_tokens: Option<i32>,
    pub latency_ms: Option<i32>,
    pub finish_reason: Option<String>,
    pub error_detail: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl NewMessage {
    /// The row this message is once stored under `id`.
    pub fn stored_as(&self, id: i64) -> Message {
        Message {
            id,
            chat_id: self.chat_id,
            role: self.role,
            content: self.content.clone(),
            status: self.status,
            model_alias: self.model_alias.clone(),
            provider: self.provider.clone(),
            provider_model: self.provider_model.clone(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            content_tokens: self.content_tokens,
            latency_ms: self.latency_ms,
            finish_reason: self.finish_reason.clone(),
            error_detail: self.error_detail.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// A complete message with only the essentials set.
    pub fn plain(chat_id: ChatId, role: Role, content: String, now: NaiveDateTime) -> Self {
        Self {
            chat_id,
            role,
            content,
            status: MessageStatus::Complete,
            model_alias: None,
            provider: None,
            provider_model: None,
            prompt_tokens: None,
            completion_tokens: None,
            content_tokens: None,
            latency_ms: None,
            finish_reason: None,
            error_detail: None,
            created_at: now,
            updated_at: now,
        }
    }
}

diesel::define_sql_function! {
    /// SQLite's id of the row this connection inserted last.
    fn last_insert_rowid() -> BigInt;
}

/// Inserts a message and returns its id, as each backend tells it (the multi-connection has no
/// `RETURNING` of its own).
fn insert_returning_id(conn: &mut DbConnection, message: NewMessage) -> Result<i64, StorageError> {
    let insert = diesel::insert_into(messages::table).values(message);
    match conn {
        DbConnection::Sqlite(conn) => {
            insert.execute(conn).map_err(StorageError::from_insert)?;
            Ok(diesel::select(last_insert_rowid()).get_result(conn)?)
        }
        DbConnection::Postgres(conn) => {
            insert.returning(messages::id).get_result(conn).map_err(StorageError::from_insert)
        }
    }
}

/// How a generated reply ended: everything its final write sets.
#[derive(Debug, Clone)]
pub struct FinishedReply {
    pub status: MessageStatus,
    pub content: String,
    pub provider: Option<String>,
    pub provider_model: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub content_tokens: Option<i32>,
    pub latency_ms: Option<i32>,
    pub finish_reason: Option<String>,
    pub error_detail: Option<String>,
    pub at: NaiveDateTime,
}

impl FinishedReply {
    /// A reply stopped with the server, holding the text it had.
    pub fn interrupted(content: String, at: NaiveDateTime) -> Self {
        Self {
            status: MessageStatus::Interrupted,
            content,
            provider: None,
            provider_model: None,
            prompt_tokens: None,
            completion_tokens: None,
            content_tokens: None,
            latency_ms: None,
            finish_reason: None,
            error_detail: Some("interrupted".to_owned()),
            at,
        }
    }
}

/// Stores `message` and moves its chat's `updated_at` to the message's time, in one transaction.
pub fn insert_message(conn: &mut DbConnection, message: NewMessage) -> Result<Message, StorageError> {
    let mut stored = insert_messages(conn, vec![message])?;
    stored.pop().ok_or(StorageError::Query(diesel::result::Error::NotFound))
}

/// Stores a user message and the placeholder of its reply in one transaction (one commit).
pub fn insert_pair(
    conn: &mut DbConnection,
    first: NewMessage,
    second: NewMessage,
) -> Result<(Message, Message), StorageError> {
    let mut stored = insert_messages(conn, vec![first, second])?.into_iter();
    match (stored.next(), stored.next()) {
        (Some(first), Some(second)) => Ok((first, second)),
        _ => Err(StorageError::Query(diesel::result::Error::NotFound)),
    }
}

/// Stores `batch` (all of one chat) in order and moves the chat's `updated_at` to the latest one's time,
/// in one transaction.
pub fn insert_messages(conn: &mut DbConnection, batch: Vec<NewMessage>) -> Result<Vec<Message>, StorageError> {
    let Some(chat_id) = batch.first().map(|message| message.chat_id.to_string()) else {
        return Ok(Vec::new());
    };
    let latest = batch.iter().map(|message| message.created_at).max().unwrap_or_default();
    conn.transaction(|conn| {
        // The chat row first, then its messages: the order a chat's deletion takes its locks in, so that
        // the two cannot deadlock on PostgreSQL.
        diesel::update(chats::table.find(&chat_id)).set(chats::updated_at.eq(latest)).execute(conn)?;
        let mut stored = Vec::with_capacity(batch.len());
        for message in batch {
            // Every column is one of the message's fields, so the row is not read back.
            let row = message.stored_as(0);
            let id = insert_returning_id(conn, message)?;
            stored.push(Message { id, ..row });
        }
        Ok(stored)
    })
}

/// The message `id` of the chat, if it exists there.
pub fn find_message(conn: &mut DbConnection, chat_id: ChatId, id: i64) -> Result<Option<Message>, StorageError> {
    Ok(messages::table
        .filter(messages::id.eq(id))
        .filter(messages::chat_id.eq(chat_id.to_string()))
        .select(Message::as_select())
        .first(conn)
        .optional()?)
}

/// The chat's newest user message and every message after it (its replies), oldest first; empty when
/// the chat has no user message.
pub fn last_exchange(conn: &mut DbConnection, chat_id: ChatId) -> Result<Vec<Message>, StorageError> {
    let chat = chat_id.to_string();
    let last_user: Option<i64> = messages::table
        .filter(messages::chat_id.eq(&chat))
        .filter(messages::role.eq(Role::User.as_str()))
        .select(diesel::dsl::max(messages::id))
        .first(conn)?;
    let Some(from) = last_user else { return Ok(Vec::new()) };
    Ok(messages::table
        .filter(messages::chat_id.eq(&chat))
        .filter(messages::id.ge(from))
        .order(messages::id.asc())
        .select(Message::as_select())
        .load(conn)?)
}

/// Writes the text generated so far into replies still `generating`, and marks the `others` (running,
/// nothing new to write) as alive, all in one transaction (one commit however many replies are
/// streaming). `updated_at` is each reply's heartbeat. A reply that has ended meanwhile is left as it ended.
pub fn save_progress(
    conn: &mut DbConnection,
    progress: &[(i64, String)],
    others: &[i64],
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    if progress.is_empty() && others.is_empty() {
        return Ok(());
    }
    let generating = MessageStatus::Generating.as_str();
    conn.transaction(|conn| {
        for (id, content) in progress {
            diesel::update(messages::table.filter(messages::id.eq(id)).filter(messages::status.eq(generating)))
                .set((messages::content.eq(content), messages::updated_at.eq(at)))
                .execute(conn)?;
        }
        if !others.is_empty() {
            diesel::update(messages::table.filter(messages::id.eq_any(others)).filter(messages::status.eq(generating)))
                .set(messages::updated_at.eq(at))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// The final write of a generated reply, which moves its chat's `updated_at` too. It wins over
/// whatever was written before (a flush, or a recovery that thought the reply abandoned). `false` when
/// the reply is gone (its chat was deleted, or a regeneration replaced it).
pub fn finish_reply(conn: &mut DbConnection, id: i64, reply: FinishedReply) -> Result<bool, StorageError> {
    conn.transaction(|conn| {
        // The chat row first, then the message: the lock order of a chat's deletion (no deadlock on
        // PostgreSQL). A write as the first statement: on SQLite a transaction that reads first may not
        // write once another connection has (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
        let chat_of_reply = messages::table.filter(messages::id.eq(id)).select(messages::chat_id);
        diesel::update(chats::table.filter(chats::id.eq_any(chat_of_reply)))
            .set(chats::updated_at.eq(reply.at))
            .execute(conn)?;
        let updated = diesel::update(messages::table.filter(messages::id.eq(id)))
            .set((
                messages::status.eq(reply.status.as_str()),
                messages::content.eq(reply.content),
                messages::provider.eq(reply.provider),
                messages::provider_model.eq(reply.provider_model),
                messages::prompt_tokens.eq(reply.prompt_tokens),
                messages::completion_tokens.eq(reply.completion_tokens),
                messages::content_tokens.eq(reply.content_tokens),
                messages::latency_ms.eq(reply.latency_ms),
                messages::finish_reason.eq(reply.finish_reason),
                messages::error_detail.eq(reply.error_detail),
                messages::updated_at.eq(reply.at),
            ))
            .execute(conn)?;
        Ok(updated > 0)
    })
}

/// Deletes the message `id`; `false` when there was none.
pub fn delete_message(conn: &mut DbConnection, id: i64) -> Result<bool, StorageError> {
    Ok(diesel::delete(messages::table.find(id)).execute(conn)? > 0)
}

/// Deletes the chat's messages strictly between two ids: the replies a regenerated one replaces.
pub fn delete_between(
    conn: &mut DbConnection,
    chat_id: ChatId,
    after: i64,
    before: i64,
) -> Result<usize, StorageError> {
    Ok(diesel::delete(
        messages::table
            .filter(messages::chat_id.eq(chat_id.to_string()))
            .filter(messages::id.gt(after))
            .filter(messages::id.lt(before)),
    )
    .execute(conn)?)
}

/// Asks the server generating the chat's reply to stop it (when it is another one). Returns the id of
/// the reply asked, if one was generating.
pub fn request_cancel(conn: &mut DbConnection, chat_id: ChatId) -> Result<Option<i64>, StorageError> {
    conn.transaction(|conn| {
        let generating: Option<i64> = messages::table
            .filter(messages::chat_id.eq(chat_id.to_string()))
            .filter(messages::status.eq(MessageStatus::Generating.as_str()))
            .select(messages::id)
            .first(conn)
            .optional()?;
        let Some(id) = generating else { return Ok(None) };
        diesel::update(messages::table.find(id)).set(messages::cancel_requested.eq(true)).execute(conn)?;
        Ok(Some(id))
    })
}

/// Of the replies `ids` (running here), those still wanted: stored, and with no stop asked for. The
/// others were deleted with their chat or stopped from another server. (One another server took for
/// abandoned is still wanted: its final write will tell how it really ended.)
pub fn still_wanted(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<i64>, StorageError> {
    Ok(messages::table
        .filter(messages::id.eq_any(ids))
        .filter(messages::cancel_requested.eq(false))
        .select(messages::id)
        .load(conn)?)
}

/// The status of a message, if it exists.
pub fn status_of(conn: &mut DbConnection, id: i64) -> Result<Option<MessageStatus>, StorageError> {
    let status: Option<String> = messages::table.find(id).select(messages::status).first(conn).optional()?;
    status
        .map(|s| {
            s.parse().map_err(|err: chat_domain::UnknownValue| {
                StorageError::Query(diesel::result::Error::DeserializationError(Box::new(err)))
            })
        })
        .transpose()
}

/// Marks replies still `generating` as `interrupted`: those not heard of since `stale_before` (their
/// server is gone), or with `None` every one (at the start of the only server of a database). Returns
/// how many.
pub fn interrupt_generating(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    stale_before: Option<NaiveDateTime>,
) -> Result<usize, StorageError> {
    let generating = messages::table.filter(messages::status.eq(MessageStatus::Generating.as_str()));
    let interrupted = (messages::status.eq(MessageStatus::Interrupted.as_str()), messages::updated_at.eq(at));
    Ok(match stale_before {
        Some(before) => {
            diesel::update(generating.filter(messages::updated_at.lt(before))).set(interrupted).execute(conn)?
        }
        None => diesel::update(generating).set(interrupted).execute(conn)?,
    })
}

/// The chat's messages, oldest first; with `limit`, the oldest `limit`.
pub fn list_messages(
    conn: &mut DbConnection,
    chat_id: ChatId,
    limit: Option<i64>,
) -> Result<Vec<Message>, StorageError> {
    let query = messages::table
        .filter(messages::chat_id.eq(chat_id.to_string()))
        .order(messages::id.asc())
        .select(Message::as_select());
    Ok(match limit {
        Some(limit) => query.limit(limit).load(conn)?,
        None => query.load(conn)?,
    })
}

/// Up to `limit` of the chat's messages older than `before_id`, newest first: the history a context
/// window is filled from, one page at a time.
pub fn list_recent_messages(
    conn: &mut DbConnection,
    chat_id: ChatId,
    before_id: i64,
    limit: i64,
) -> Result<Vec<HistoryRow>, StorageError> {
    Ok(messages::table
        .filter(messages::chat_id.eq(chat_id.to_string()))
        .filter(messages::id.lt(before_id))
        .order(messages::id.desc())
        .limit(limit)
        .select(HistoryRow::as_select())
        .load(conn)?)
}
