//! Chat management: create, list, read, rename and delete a user's chats, and read their messages.

use chat_domain::time::now_utc;
use chat_domain::{ChatId, ChatTitle, MessageStatus, UserId};
use chat_storage::chats::{self, ChatPage, ChatSummary, NewChat};
use chat_storage::{Chat, DbConnection, Message, PromptChange, StorageError, messages, users};

use crate::generation::StopReason;
use crate::{Caller, ChatService, ServiceError};

/// A chat id from a URL or body. Only the form the server hands out (lower-case, hyphenated) names a
/// chat, as string comparison did in the original; anything else gets the same 404 as a missing chat.
pub(crate) fn parse_chat_id(raw: &str) -> Result<ChatId, ServiceError> {
    match raw.parse::<ChatId>() {
        Ok(id) if id.to_string() == raw => Ok(id),
        _ => Err(not_found(raw)),
    }
}

pub(crate) fn not_found(raw: &str) -> ServiceError {
    ServiceError::ChatNotFound { chat_id: raw.to_owned() }
}

/// What a read of a user's chat did not find.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Missing {
    /// The token's user no longer exists.
    User,
    /// The user logged out since the token was issued.
    Revoked,
    Chat,
}

impl Missing {
    pub(crate) fn error(self, chat_id: &str) -> ServiceError {
        match self {
            Missing::User => ServiceError::UserNotFound,
            Missing::Revoked => ServiceError::TokenRevoked,
            Missing::Chat => not_found(chat_id),
        }
    }
}

/// Whether `caller` is still a user, with a token of their current version.
pub(crate) fn check_caller(c: &mut DbConnection, caller: Caller) -> Result<Result<(), Missing>, StorageError> {
    Ok(match users::token_version(c, caller.id)? {
        None => Err(Missing::User),
        Some(version) if caller.token_version.is_some_and(|token| token != version) => Err(Missing::Revoked),
        Some(_) => Ok(()),
    })
}

/// The caller's chat `id` and what `then` reads of it, in one database call, after checking the caller: the
/// busiest use cases are given a token that was verified but not looked up, and the check costs a query here
/// rather than a database call of its own.
pub(crate) fn read_users_chat<T>(
    c: &mut DbConnection,
    caller: Caller,
    id: ChatId,
    then: impl FnOnce(&mut DbConnection, Chat) -> Result<T, StorageError>,
) -> Result<Result<T, Missing>, StorageError> {
    if let Err(missing) = check_caller(c, caller)? {
        return Ok(Err(missing));
    }
    match chats::find_chat_for_user(c, id, caller.id)? {
        Some(chat) => then(c, chat).map(Ok),
        None => Ok(Err(Missing::Chat)),
    }
}

impl ChatService {
    /// A new chat; `system_prompt` replaces the global one for its conversations.
    pub async fn create_chat(
        &self,
        user_id: UserId,
        title: Option<ChatTitle>,
        system_prompt: Option<String>,
    ) -> Result<ChatSummary, ServiceError> {
        let now = now_utc();
        let chat = NewChat {
            id: ChatId::new_random(),
            user_id,
            title: title.map(ChatTitle::into_inner),
            system_prompt,
            created_at: now,
            updated_at: now,
        };
        let chat = self.db.write(move |c| chats::insert_chat(c, chat)).await?;
        Ok(ChatSummary { chat, message_count: 0 })
    }

    /// A page of the user's chats, most recently updated first; `limit` and `offset` are validated by the caller.
    /// The caller need not have been looked up (see [`Caller`]).
    pub async fn list_chats(
        &self,
        caller: impl Into<Caller>,
        limit: i64,
        offset: i64,
    ) -> Result<ChatPage, ServiceError> {
        let caller = caller.into();
        let page = self
            .db
            .run(move |c| match check_caller(c, caller)? {
                Ok(()) => Ok(chats::list_chats_for_user(c, caller.id, limit, offset)?.ok_or(Missing::User)),
                Err(missing) => Ok(Err(missing)),
            })
            .await?;
        page.map_err(|missing| missing.error(""))
    }

    pub async fn get_chat(&self, user_id: UserId, chat_id: &str) -> Result<ChatSummary, ServiceError> {
        let id = parse_chat_id(chat_id)?;
        self.db.run(move |c| chats::find_chat_summary_for_user(c, id, user_id)).await?.ok_or_else(|| not_found(chat_id))
    }

    /// The chat's messages, oldest first (the oldest `limit` when given). The caller need not have been looked up
    /// (see [`Caller`]).
    pub async fn list_messages(
        &self,
        caller: impl Into<Caller>,
        chat_id: &str,
        limit: Option<i64>,
    ) -> Result<Vec<Message>, ServiceError> {
        let caller = caller.into();
        let id = parse_chat_id(chat_id)?;
        let mut listed = self
            .db
            .run(move |c| read_users_chat(c, caller, id, |c, _| messages::list_messages(c, id, limit)))
            .await?
            .map_err(|missing| missing.error(chat_id))?;
        // A reply generated here shows its text so far, not only what was last written.
        for message in listed.iter_mut().filter(|m| m.status == MessageStatus::Generating) {
            if let Some(generation) = self.generations.find_running(message.id) {
                message.content = generation.text();
            }
        }
        Ok(listed)
    }

    /// Renames the chat, and changes its system prompt when asked.
    pub async fn rename_chat(
        &self,
        user_id: UserId,
        chat_id: &str,
        title: ChatTitle,
        prompt: PromptChange,
    ) -> Result<ChatSummary, ServiceError> {
        let id = parse_chat_id(chat_id)?;
        let now = now_utc();
        self.db
            .write(move |c| chats::rename_chat_for_user(c, id, user_id, title.as_str(), prompt, now))
            .await?
            .ok_or_else(|| not_found(chat_id))
    }

    /// Deletes the chat and its messages, and stops its running reply.
    pub async fn delete_chat(&self, user_id: UserId, chat_id: &str) -> Result<(), ServiceError> {
        let id = parse_chat_id(chat_id)?;
        let svc = self.clone();
        // Run to the end even if the caller goes away: rows deleted must mean the reply is stopped.
        let deleted = tokio::spawn(async move {
            let deleted = svc.db.write(move |c| chats::delete_chat_for_user(c, id, user_id)).await?;
            if deleted {
                // Stopped after the rows are gone, its final write finds nothing: its caller gets the
                // chat's 404 and its listeners hear it was cancelled.
                svc.generations.stop_chat(id, StopReason::Cancel);
            }
            Ok::<_, StorageError>(deleted)
        })
        .await
        .map_err(StorageError::TaskFailed)??;
        if deleted { Ok(()) } else { Err(not_found(chat_id)) }
    }
}
