//! The use-cases: accounts, chat management and conversations with models, driven without HTTP.

mod accounts;
mod activity;
mod budget;
mod chats;
pub mod context;
mod conversation;
mod error;
mod generation;
mod streams;
pub mod tokens;

use chat_auth::{PasswordHasher, TokenKeys};
use chat_storage::Database;
use llm_providers::router::Router;

pub use accounts::{Caller, Session};
pub use activity::Activity;
pub use budget::{BudgetSpent, BudgetToday};
pub use conversation::{Reply, Started};
pub use error::ServiceError;
pub use generation::{
    CANCELLED, Ending, GenerationSettings, NumberedEvent, StreamEvent, StreamFailure, StreamStart, Subscription,
};
pub use tokens::TokenCounter;

use generation::Generations;

/// Settings of conversations.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Sent first in every context unless the chat has its own.
    pub system_prompt: Option<String>,
    /// The alias used when a request names none (and a regenerated reply's alias is gone).
    pub default_model: String,
    pub generation: GenerationSettings,
    /// How long a refresh token may be used (once) to get a new access token.
    pub refresh_token_lifetime: chrono::Duration,
    /// The tokens (prompt and answer, as providers count them) each user may spend per UTC day; `None` for no limit.
    pub daily_token_budget: Option<u64>,
}

/// Everything the use-cases need, built once at start-up and shared; cheap to clone.
#[derive(Debug, Clone)]
pub struct ChatService {
    db: Database,
    hasher: PasswordHasher,
    tokens: TokenKeys,
    router: Router,
    counter: TokenCounter,
    generations: Generations,
    chat: ChatSettings,
}

impl ChatService {
    pub fn new(db: Database, hasher: PasswordHasher, tokens: TokenKeys, router: Router, chat: ChatSettings) -> Self {
        let generations = Generations::new(db.clone(), chat.generation.clone());
        Self { db, hasher, tokens, router, counter: TokenCounter::new(), generations, chat }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Replies running now, and what the service has done since it started (for metrics).
    pub fn activity(&self) -> Activity {
        self.generations.activity()
    }

    /// The same service answering through another router (the rest shared).
    pub fn with_router(&self, router: Router) -> Self {
        Self { router, ..self.clone() }
    }
}
