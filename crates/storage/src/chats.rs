//! Chats, always looked up together with their owner so that another user's chat cannot be reached.

use std::collections::HashMap;

use chat_domain::{ChatId, UserId};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::{chats, messages, users};
use crate::{DbConnection, StorageError};

/// A stored chat.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = chats, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Chat {
    #[diesel(deserialize_as = String)]
    pub id: ChatId,
    #[diesel(deserialize_as = String)]
    pub user_id: UserId,
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A chat with the number of its messages.
#[derive(Debug, Clone)]
pub struct ChatSummary {
    pub chat: Chat,
    pub message_count: i64,
}

/// One page of a user's chats and how many they have in all.
#[derive(Debug, Clone)]
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    pub total: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = chats)]
pub struct NewChat {
    #[diesel(serialize_as = String)]
    pub id: ChatId,
    #[diesel(serialize_as = String)]
    pub user_id: UserId,
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn insert_chat(conn: &mut DbConnection, chat: NewChat) -> Result<Chat, StorageError> {
    let id = chat.id;
    let owner = chat.user_id.to_string();
    conn.transaction(|conn| {
        diesel::insert_into(chats::table).values(chat).execute(conn)?;
        diesel::update(users::table.find(owner)).set(users::chat_count.eq(users::chat_count + 1)).execute(conn)?;
        Ok(chats::table.find(id.to_string()).select(Chat::as_select()).first(conn)?)
    })
}

/// The chat, if it exists and belongs to `user_id`.
pub fn find_chat_for_user(
    conn: &mut DbConnection,
    chat_id: ChatId,
    user_id: UserId,
) -> Result<Option<Chat>, StorageError> {
    Ok(chats::table
        .filter(chats::id.eq(chat_id.to_string()))
        .filter(chats::user_id.eq(user_id.to_string()))
        .select(Chat::as_select())
        .first(conn)
        .optional()?)
}

/// The chat with its message count, if it exists and belongs to `user_id`.
pub fn find_chat_summary_for_user(
    conn: &mut DbConnection,
    chat_id: ChatId,
    user_id: UserId,
) -> Result<Option<ChatSummary>, StorageError> {
    let Some(chat) = find_chat_for_user(conn, chat_id, user_id)? else {
        return Ok(None);
    };
    let message_count = messages::table.filter(messages::chat_id.eq(chat_id.to_string())).count().get_result(conn)?;
    Ok(Some(ChatSummary { chat, message_count }))
}

/// A page of the user's chats, most recently updated first, and the exact number of their chats; `None` when
/// the user does not exist.
pub fn list_chats_for_user(
    conn: &mut DbConnection,
    user_id: UserId,
    limit: i64,
    offset: i64,
) -> Result<Option<ChatPage>, StorageError> {
    let owner = user_id.to_string();
    let Some(total) = users::table.find(&owner).select(users::chat_count).first(conn).optional()? else {
        return Ok(None);
    };
    let page: Vec<Chat> = chats::table
        .filter(chats::user_id.eq(&owner))
        .order((chats::updated_at.desc(), chats::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Chat::as_select())
        .load(conn)?;
    let mut counts = message_counts(conn, &page)?;
    let chats = page
        .into_iter()
        .map(|chat| {
            let message_count = counts.remove(&chat.id.to_string()).unwrap_or(0);
            ChatSummary { chat, message_count }
        })
        .collect();
    Ok(Some(ChatPage { chats, total }))
}

/// Message counts of `chats`, in one grouped query.
fn message_counts(conn: &mut DbConnection, chats: &[Chat]) -> Result<HashMap<String, i64>, StorageError> {
    if chats.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = chats.iter().map(|chat| chat.id.to_string()).collect();
    let rows: Vec<(String, i64)> = messages::table
        .filter(messages::chat_id.eq_any(ids))
        .group_by(messages::chat_id)
        .select((messages::chat_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// A chat's new system prompt: `Keep` leaves it, `Set(None)` clears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptChange {
    Keep,
    Set(Option<String>),
}

/// Sets the title (and the system prompt, if asked) and moves `updated_at`; `None` when the chat is not
/// the user's.
pub fn rename_chat_for_user(
    conn: &mut DbConnection,
    chat_id: ChatId,
    user_id: UserId,
    title: &str,
    prompt: PromptChange,
    now: NaiveDateTime,
) -> Result<Option<ChatSummary>, StorageError> {
    conn.transaction(|conn| {
        let target =
            chats::table.filter(chats::id.eq(chat_id.to_string())).filter(chats::user_id.eq(user_id.to_string()));
        let updated = match prompt {
            PromptChange::Keep => {
                diesel::update(target).set((chats::title.eq(title), chats::updated_at.eq(now))).execute(conn)?
            }
            PromptChange::Set(prompt) => diesel::update(target)
                .set((chats::title.eq(title), chats::system_prompt.eq(prompt), chats::updated_at.eq(now)))
                .execute(conn)?,
        };
        if updated == 0 {
            return Ok(None);
        }
        find_chat_summary_for_user(conn, chat_id, user_id)
    })
}

/// Deletes the chat and (by cascade) its messages; `false` when the chat is not the user's.
pub fn delete_chat_for_user(conn: &mut DbConnection, chat_id: ChatId, user_id: UserId) -> Result<bool, StorageError> {
    let owner = user_id.to_string();
    conn.transaction(|conn| {
        let deleted =
            diesel::delete(chats::table.filter(chats::id.eq(chat_id.to_string())).filter(chats::user_id.eq(&owner)))
                .execute(conn)?;
        if deleted > 0 {
            diesel::update(users::table.find(&owner)).set(users::chat_count.eq(users::chat_count - 1)).execute(conn)?;
        }
        Ok(deleted > 0)
    })
}
