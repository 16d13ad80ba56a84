//! The use-cases: accounts, chat management and conversations with models, driven without HTTP.

mod accounts;
mod chats;
pub mod context;
mod conversation;
mod error;
mod slots;
pub mod tokens;

use chat_auth::{PasswordHasher, TokenKeys};
use chat_storage::Database;
use llm_providers::router::Router;

pub use conversation::Reply;
pub use error::ServiceError;
pub use slots::GenerationSlots;
pub use tokens::TokenCounter;

/// Settings of conversations.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Sent first in every context unless the chat has its own.
    pub system_prompt: Option<String>,
}

/// Everything the use-cases need, built once at start-up and shared; cheap to clone.
#[derive(Debug, Clone)]
pub struct ChatService {
    db: Database,
    hasher: PasswordHasher,
    tokens: TokenKeys,
    router: Router,
    counter: TokenCounter,
    slots: GenerationSlots,
    chat: ChatSettings,
}

impl ChatService {
    pub fn new(db: Database, hasher: PasswordHasher, tokens: TokenKeys, router: Router, chat: ChatSettings) -> Self {
        Self { db, hasher, tokens, router, counter: TokenCounter::new(), slots: GenerationSlots::default(), chat }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The same service answering through another router (the rest shared).
    pub fn with_router(&self, router: Router) -> Self {
        Self { router, ..self.clone() }
    }
}
