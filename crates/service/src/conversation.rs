//! Sending a message: store it, build the context, ask the alias's providers, store the reply.

use std::time::Instant;

use chat_domain::time::now_utc;
use chat_domain::{ChatId, MessageStatus, Role, UserId};
use chat_storage::{Message, NewMessage, StorageError, chats, messages};
use llm_providers::router::RouteError;
use llm_providers::{ProviderError, Usage};

use crate::chats::{not_found, parse_chat_id};
use crate::context::{self, HistoryItem};
use crate::{ChatService, ServiceError};

/// History is read newest first in pages of this many messages, only as far as the budget reaches.
const HISTORY_PAGE: i64 = 200;

/// A stored reply and what produced it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub chat_id: ChatId,
    pub user_message_id: i64,
    pub assistant: Message,
    pub alias: String,
    pub usage: Usage,
}

impl ChatService {
    /// The alias names, in configured order (for `422` details and `/models`).
    pub fn alias_names(&self) -> Vec<String> {
        self.router.aliases().iter().map(|a| a.name.clone()).collect()
    }

    /// Stores `text` as the user's message in the chat, asks the model behind `alias`, and stores the
    /// reply. The user's message stays stored whatever happens after it was written.
    pub async fn send_message(
        &self,
        user_id: UserId,
        chat_id: &str,
        text: String,
        alias: &str,
    ) -> Result<Reply, ServiceError> {
        let alias = self
            .router
            .alias(alias)
            .cloned()
            .ok_or_else(|| ServiceError::UnknownModel { requested: alias.to_owned(), known: self.alias_names() })?;
        let id = parse_chat_id(chat_id)?;
        let chat =
            self.db.run(move |c| chats::find_chat_for_user(c, id, user_id)).await?.ok_or_else(|| not_found(chat_id))?;
        let _slot = self.slots.try_acquire(id).ok_or(ServiceError::GenerationInProgress)?;

        let system_prompt = chat.system_prompt.clone().or_else(|| self.chat.system_prompt.clone());
        let system = system_prompt.as_deref().map(|p| (p, self.tokens_of(p)));
        let new_tokens = self.tokens_of(&text);
        let servable = !alias.targets.is_empty();
        if servable {
            // Refuse a message too large for the model before storing it.
            context::build(system, (&text, new_tokens), Vec::new(), alias.prompt_budget())
                .map_err(ServiceError::MessageTooLarge)?;
        }

        let mut user_message = NewMessage::plain(id, Role::User, text.clone(), now_utc());
        user_message.content_tokens = Some(i32::try_from(new_tokens).unwrap_or(i32::MAX));
        let stored = self.store(chat_id, user_message).await?;
        if !servable {
            // No provider can serve the alias (production without its key): the message is kept.
            let error =
                RouteError { error: ProviderError::NotConfigured, provider: None, attempts: 0, all_unreachable: false };
            return Err(ServiceError::Provider { alias: alias.name.clone(), error });
        }

        let history = self.history_before(id, stored.id, alias.prompt_budget()).await?;
        let context = context::build(system, (&text, new_tokens), history, alias.prompt_budget())
            .map_err(ServiceError::MessageTooLarge)?;

        let started = Instant::now();
        let routed = self
            .router
            .complete(&alias, &context.messages)
            .await
            .map_err(|error| ServiceError::Provider { alias: alias.name.clone(), error })?;
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let completion = routed.value;
        let reply_tokens = self.tokens_of(&completion.text);
        // Providers that count nothing (the offline model, some local servers) get our estimate.
        let usage =
            completion.usage.unwrap_or(Usage { prompt_tokens: context.tokens, completion_tokens: reply_tokens });
        let now = now_utc();
        let assistant = NewMessage {
            status: MessageStatus::Complete,
            model_alias: Some(alias.name.clone()),
            provider: Some(routed.provider),
            provider_model: Some(routed.model),
            prompt_tokens: Some(i32::try_from(usage.prompt_tokens).unwrap_or(i32::MAX)),
            completion_tokens: Some(i32::try_from(usage.completion_tokens).unwrap_or(i32::MAX)),
            content_tokens: Some(i32::try_from(reply_tokens).unwrap_or(i32::MAX)),
            latency_ms: Some(latency_ms),
            finish_reason: completion.finish_reason.map(|r| r.as_str().to_owned()),
            ..NewMessage::plain(id, Role::Assistant, completion.text, now)
        };
        let assistant = self.store(chat_id, assistant).await?;
        Ok(Reply { chat_id: id, user_message_id: stored.id, assistant, alias: alias.name, usage })
    }

    /// Stores a message of the chat; the chat having been deleted meanwhile is a 404, not a failure.
    async fn store(&self, chat_id: &str, message: NewMessage) -> Result<Message, ServiceError> {
        match self.db.run(move |c| messages::insert_message(c, message)).await {
            Err(StorageError::ForeignKeyViolation) => Err(not_found(chat_id)),
            other => Ok(other?),
        }
    }

    fn tokens_of(&self, text: &str) -> u32 {
        self.counter.count(text)
    }

    /// Messages older than `before_id`, newest first, read page by page until `budget` tokens are
    /// covered (so a 10,000-message chat costs one or two small queries).
    async fn history_before(
        &self,
        chat_id: ChatId,
        before_id: i64,
        budget: u32,
    ) -> Result<Vec<HistoryItem>, ServiceError> {
        let mut items = Vec::new();
        let mut covered: u64 = 0;
        let mut cursor = before_id;
        loop {
            let page = self.db.run(move |c| messages::list_recent_messages(c, chat_id, cursor, HISTORY_PAGE)).await?;
            let full_page = page.len() as i64 == HISTORY_PAGE;
            for message in page {
                cursor = message.id;
                let tokens = match message.content_tokens {
                    Some(stored) => u32::try_from(stored).unwrap_or(0),
                    None => self.tokens_of(&message.content),
                };
                covered += u64::from(tokens);
                items.push(HistoryItem {
                    role: message.role,
                    status: message.status,
                    content: message.content,
                    tokens,
                });
            }
            if !full_page || covered > u64::from(budget) {
                return Ok(items);
            }
        }
    }
}
