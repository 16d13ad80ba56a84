//! Messages: one row each, read in id order within a chat.

use chat_domain::{ChatId, MessageStatus, Role};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::{chats, messages};
use crate::{DbConnection, StorageError};

/// A stored message.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::sqlite::Sqlite))]
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

/// Stores `message` and moves its chat's `updated_at` to the message's time, in one transaction.
pub fn insert_message(conn: &mut DbConnection, message: NewMessage) -> Result<Message, StorageError> {
    let chat_id = message.chat_id.to_string();
    let at = message.created_at;
    conn.transaction(|conn| {
        diesel::insert_into(messages::table).values(message).execute(conn).map_err(StorageError::from_insert)?;
        let id: i64 = diesel::select(last_insert_rowid()).get_result(conn)?;
        diesel::update(chats::table.find(&chat_id)).set(chats::updated_at.eq(at)).execute(conn)?;
        Ok(messages::table.find(id).select(Message::as_select()).first(conn)?)
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
) -> Result<Vec<Message>, StorageError> {
    Ok(messages::table
        .filter(messages::chat_id.eq(chat_id.to_string()))
        .filter(messages::id.lt(before_id))
        .order(messages::id.desc())
        .limit(limit)
        .select(Message::as_select())
        .load(conn)?)
}
