//! The use-cases: accounts (register, log in, authenticate) and chat management, driven without HTTP.

mod accounts;
mod chats;
mod error;

use chat_auth::{PasswordHasher, TokenKeys};
use chat_storage::Database;

pub use error::ServiceError;

/// Everything the use-cases need, built once at start-up and shared; cheap to clone.
#[derive(Debug, Clone)]
pub struct ChatService {
    db: Database,
    hasher: PasswordHasher,
    tokens: TokenKeys,
}

impl ChatService {
    pub fn new(db: Database, hasher: PasswordHasher, tokens: TokenKeys) -> Self {
        Self { db, hasher, tokens }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}
