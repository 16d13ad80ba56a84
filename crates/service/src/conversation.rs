//! Sending a message and regenerating a reply: check, store, and start the generation that answers.

use std::sync::Arc;
use std::time::Duration;

use chat_domain::time::now_utc;
use chat_domain::{ChatId, MessageStatus, Role, UserId};
use chat_storage::{DbConnection, Message, NewMessage, StorageError, chats, messages};
use llm_providers::router::{Alias, RouteError};
use llm_providers::{ProviderError, Usage};

use crate::budget::Hold;
use crate::chats::{not_found, parse_chat_id, read_users_chat};
use crate::context::{self, HistoryItem};
use crate::generation::{Ask, EarlyAsk, Ending, Generation, Job, Reservation, StreamStart, Subscription};
use crate::tokens::TokenCounter;

/// What a generation is launched with, once its rows are stored.
struct Launch {
    reservation: Reservation,
    alias: Alias,
    system: Option<(String, u32)>,
    prompt: (String, u32),
    replacing: bool,
    /// The provider already asked, or the context to ask it with.
    ask: Option<Ask>,
    /// The reply's share of the user's daily token budget, when one is set.
    hold: Option<Hold>,
}
use crate::{Caller, ChatService, ServiceError};

/// History is read newest first in pages of this many messages, only as far as the budget reaches.
const HISTORY_PAGE: i64 = 200;

/// A finished reply, for a caller that waited for all of it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub chat_id: ChatId,
    pub user_message_id: i64,
    pub message_id: i64,
    pub content: String,
    pub status: MessageStatus,
    /// `stop`, `length`, ... or `cancelled`.
    pub finish_reason: String,
    /// The alias that answered.
    pub alias: String,
    pub usage: Usage,
    /// How long the provider took to answer (retries and fallbacks included).
    pub upstream: Option<Duration>,
}

/// A reply that has been started: its messages are stored and its generation runs on the server,
/// whatever becomes of the caller.
#[derive(Debug)]
pub struct Started {
    generation: Arc<Generation>,
}

impl Started {
    /// The assistant message being generated.
    pub fn message_id(&self) -> i64 {
        self.generation.message_id()
    }

    /// Waits for the whole reply. A failure before or during it comes back as the error it was.
    pub async fn whole(self) -> Result<Reply, ServiceError> {
        let generation = self.generation;
        generation.ended().await;
        if let Some(error) = generation.take_error() {
            return Err(error);
        }
        let (ending, status) = generation.ending().ok_or(ServiceError::ShuttingDown)?;
        let (finish_reason, usage) = match ending {
            Ending::Done { finish_reason, usage } => (finish_reason, usage),
            Ending::Failed(_) => (String::new(), Usage::default()),
        };
        let start = &generation.start;
        Ok(Reply {
            chat_id: start.chat_id,
            user_message_id: start.user_message_id,
            message_id: start.message_id,
            content: generation.text(),
            status,
            finish_reason,
            alias: start.model.clone(),
            usage,
            upstream: generation.upstream(),
        })
    }

    /// Waits for the first piece of the reply, then hands its events from the start. A failure before
    /// the first piece comes back as the error it was, so that it can still be answered with a status.
    pub async fn streamed(self) -> Result<Subscription, ServiceError> {
        let generation = self.generation;
        generation.began_or_ended().await;
        if !generation.has_begun()
            && let Some(error) = generation.take_error()
        {
            return Err(error);
        }
        Ok(Subscription::live(generation, 0))
    }
}

impl ChatService {
    /// The alias names, in configured order (for `422` details and `/models`).
    pub fn alias_names(&self) -> Vec<String> {
        self.router.aliases().iter().map(|a| a.name.clone()).collect()
    }

    fn alias(&self, name: &str) -> Result<Alias, ServiceError> {
        self.router
            .alias(name)
            .cloned()
            .ok_or_else(|| ServiceError::UnknownModel { requested: name.to_owned(), known: self.alias_names() })
    }

    /// Stores `text` as the user's message in the chat with a placeholder for the reply, and starts
    /// the generation of the reply by the model behind `alias`. The user's message stays stored
    /// whatever happens after it was written. The caller need not have been looked up (see [`Caller`]).
    pub async fn send_message(
        &self,
        caller: impl Into<Caller>,
        chat_id: &str,
        text: String,
        alias: &str,
    ) -> Result<Started, ServiceError> {
        let caller = caller.into();
        let user_id = caller.id;
        let alias = self.alias(alias)?;
        let id = parse_chat_id(chat_id)?;
        let servable = !alias.targets.is_empty();
        let budget = alias.prompt_budget();
        // The chat and its history in one read: no reply can be added meanwhile, as the chat's slot
        // is reserved before anything is stored.
        let counter = self.counter.clone();
        let (chat, history) = self
            .db
            .run(move |c| {
                read_users_chat(c, caller, id, |c, chat| {
                    let history = if servable { read_history(c, &counter, id, i64::MAX, budget)? } else { Vec::new() };
                    Ok((chat, history))
                })
            })
            .await?
            .map_err(|missing| missing.error(chat_id))?;
        let reservation = self.generations.reserve(id, user_id)?;

        let system = self.system_prompt(chat.system_prompt);
        let new_tokens = self.tokens_of(&text);
        let now = now_utc();
        let mut user_message = NewMessage::plain(id, Role::User, text.clone(), now);
        user_message.content_tokens = Some(i32::try_from(new_tokens).unwrap_or(i32::MAX));
        if !servable {
            // No provider can serve the alias (production without its key): the message is kept.
            self.store(chat_id, move |c| messages::insert_message(c, user_message)).await?;
            return Err(not_configured(&alias));
        }
        // Refuse a message too large for the model before storing it.
        let system_ref = system.as_ref().map(|(prompt, tokens)| (prompt.as_str(), *tokens));
        let context = context::build(system_ref, (text.as_str(), new_tokens), history, budget)
            .map_err(ServiceError::MessageTooLarge)?;
        let hold = self.reserve_tokens(user_id, context.tokens.saturating_add(alias.max_output_tokens())).await?;
        // When this process alone decides which chats are busy (it holds the SQLite file), the reservation
        // above stands and the provider is asked now, while the rows are being committed: the commit hides
        // behind the first token instead of adding to it. On a shared database the insert may still be
        // refused (another server's reply), so the provider is asked only once the rows are stored.
        let ask = if self.db.is_exclusive() {
            Ask::Started(EarlyAsk::start(self.router.clone(), alias.clone(), context))
        } else {
            Ask::Ready(context)
        };
        let reply = placeholder(id, &alias, now);
        let launch =
            Launch { reservation, alias, system, prompt: (text, new_tokens), replacing: false, ask: Some(ask), hold };
        self.store_and_launch(chat_id, launch, move |c| {
            messages::insert_pair(c, user_message, reply).map(|(question, reply)| (question.id, reply))
        })
        .await
    }

    /// Replaces the chat's last reply with a new one for the same user message (or answers a last
    /// user message that has none). `alias` defaults to the one of the reply being replaced.
    pub async fn regenerate(
        &self,
        user_id: UserId,
        chat_id: &str,
        alias: Option<&str>,
    ) -> Result<Started, ServiceError> {
        let requested = alias.map(|name| self.alias(name)).transpose()?;
        let id = parse_chat_id(chat_id)?;
        let chat =
            self.db.run(move |c| chats::find_chat_for_user(c, id, user_id)).await?.ok_or_else(|| not_found(chat_id))?;
        let reservation = self.generations.reserve(id, user_id)?;
        let exchange = self.db.run(move |c| messages::last_exchange(c, id)).await?;
        let Some((question, replies)) = exchange.split_first() else {
            return Err(ServiceError::NothingToRegenerate);
        };
        let alias = match requested {
            Some(alias) => alias,
            None => {
                let previous = replies.iter().rev().find_map(|m| m.model_alias.clone());
                match previous.and_then(|name| self.router.alias(&name).cloned()) {
                    Some(alias) => alias,
                    None => self.alias(&self.chat.default_model)?,
                }
            }
        };
        if alias.targets.is_empty() {
            return Err(not_configured(&alias));
        }
        let system = self.system_prompt(chat.system_prompt);
        let tokens = match question.content_tokens {
            Some(stored) => u32::try_from(stored).unwrap_or(0),
            None => self.tokens_of(&question.content),
        };
        let question_id = question.id;
        // The context before anything is stored, so that a reply the budget refuses leaves the chat as it was.
        let budget = alias.prompt_budget();
        let history = self.history_before(id, question_id, budget).await?;
        let system_ref = system.as_ref().map(|(prompt, tokens)| (prompt.as_str(), *tokens));
        let context = context::build(system_ref, (question.content.as_str(), tokens), history, budget)
            .map_err(ServiceError::MessageTooLarge)?;
        let hold = self.reserve_tokens(user_id, context.tokens.saturating_add(alias.max_output_tokens())).await?;
        let reply = placeholder(id, &alias, now_utc());
        let launch = Launch {
            reservation,
            alias,
            system,
            prompt: (question.content.clone(), tokens),
            replacing: true,
            ask: Some(Ask::Ready(context)),
            hold,
        };
        self.store_and_launch(chat_id, launch, move |c| {
            let reply = messages::insert_message(c, reply)?;
            Ok((question_id, reply))
        })
        .await
    }

    /// Stores the reply's placeholder (with the user's message, for a new one) and launches its
    /// generation, as one task that runs to its end even if the caller goes away: stored rows always
    /// get their generation.
    /// `insert` stores the rows and returns the id of the user message answered and the placeholder.
    async fn store_and_launch(
        &self,
        chat_id: &str,
        launch: Launch,
        insert: impl FnOnce(&mut DbConnection) -> Result<(i64, Message), StorageError> + Send + 'static,
    ) -> Result<Started, ServiceError> {
        let svc = self.clone();
        let chat = chat_id.to_owned();
        tokio::spawn(async move {
            let (question, reply) = svc.store(&chat, insert).await?;
            let Launch { reservation, alias, system, prompt, replacing, ask, hold } = launch;
            let start = StreamStart {
                chat_id: reply.chat_id,
                user_message_id: question,
                message_id: reply.id,
                model: alias.name.clone(),
            };
            let generation = Arc::new(Generation::new(start));
            let job = Job { generation: Arc::clone(&generation), alias, system, prompt, replacing, ask, hold };
            svc.generations.launch(reservation, Arc::clone(&generation), svc.clone().generate(job));
            Ok(Started { generation })
        })
        .await
        .map_err(|err| ServiceError::Storage(StorageError::TaskFailed(err)))?
    }

    /// The chat's own system prompt, else the global one, with its tokens.
    fn system_prompt(&self, own: Option<String>) -> Option<(String, u32)> {
        own.or_else(|| self.chat.system_prompt.clone()).map(|prompt| {
            let tokens = self.tokens_of(&prompt);
            (prompt, tokens)
        })
    }

    /// Stores messages of a chat; the chat having been deleted meanwhile is a 404.
    async fn store<T: Send + 'static>(
        &self,
        chat_id: &str,
        insert: impl FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        match self.db.write(insert).await {
            Err(StorageError::ForeignKeyViolation) => Err(not_found(chat_id)),
            // Another server is generating a reply in this chat: the database's unique index says so.
            Err(StorageError::UniqueViolation) => Err(ServiceError::GenerationInProgress),
            other => Ok(other?),
        }
    }

    fn tokens_of(&self, text: &str) -> u32 {
        self.counter.count(text)
    }

    /// Messages older than `before_id`, newest first, as far as `budget` tokens reach (one hop to the
    /// database, however many pages).
    pub(crate) async fn history_before(
        &self,
        chat_id: ChatId,
        before_id: i64,
        budget: u32,
    ) -> Result<Vec<HistoryItem>, ServiceError> {
        let counter = self.counter.clone();
        Ok(self.db.run(move |c| read_history(c, &counter, chat_id, before_id, budget)).await?)
    }
}

/// Messages older than `before_id`, newest first, read page by page until `budget` tokens are covered
/// (so a 10,000-message chat costs one or two small queries). Tokens are stored with each message;
/// only rows stored without them are counted here.
fn read_history(
    conn: &mut DbConnection,
    counter: &TokenCounter,
    chat_id: ChatId,
    before_id: i64,
    budget: u32,
) -> Result<Vec<HistoryItem>, StorageError> {
    let mut items = Vec::new();
    let mut covered: u64 = 0;
    let mut cursor = before_id;
    loop {
        let page = messages::list_recent_messages(conn, chat_id, cursor, HISTORY_PAGE)?;
        let full_page = page.len() as i64 == HISTORY_PAGE;
        for message in page {
            cursor = message.id;
            let tokens = match message.content_tokens {
                Some(stored) => u32::try_from(stored).unwrap_or(0),
                None => counter.count(&message.content),
            };
            covered += u64::from(tokens);
            items.push(HistoryItem { role: message.role, status: message.status, content: message.content, tokens });
        }
        if !full_page || covered > u64::from(budget) {
            return Ok(items);
        }
    }
}

/// The row a reply is generated into, stored with the message it answers.
fn placeholder(chat_id: ChatId, alias: &Alias, now: chrono::NaiveDateTime) -> NewMessage {
    NewMessage {
        status: MessageStatus::Generating,
        model_alias: Some(alias.name.clone()),
        ..NewMessage::plain(chat_id, Role::Assistant, String::new(), now)
    }
}

fn not_configured(alias: &Alias) -> ServiceError {
    let error = RouteError { error: ProviderError::NotConfigured, provider: None, attempts: 0, all_unreachable: false };
    ServiceError::Provider { alias: alias.name.clone(), error }
}
