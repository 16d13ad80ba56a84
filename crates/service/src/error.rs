//! What a use-case can answer besides success; the HTTP edge maps each variant to one status.

use chat_auth::{AuthError, TokenError};
use chat_storage::StorageError;
use llm_providers::router::RouteError;

use crate::budget::BudgetSpent;
use crate::context::TooLarge;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh token that is unknown, expired, revoked, or used before (which revokes its family).
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error(transparent)]
    InvalidToken(#[from] TokenError),
    /// A valid token whose user no longer exists.
    #[error("the token's user does not exist")]
    UserNotFound,
    /// The token's version is no longer its user's: the user logged out since it was issued.
    #[error("the token was revoked by a logout")]
    TokenRevoked,
    /// Missing, not the caller's, or not even a UUID: all the same to the caller.
    #[error("chat {chat_id:?} not found")]
    ChatNotFound { chat_id: String },
    #[error("unknown model alias {requested:?}")]
    UnknownModel { requested: String, known: Vec<String> },
    #[error(transparent)]
    MessageTooLarge(TooLarge),
    #[error("a reply is already being generated in this chat")]
    GenerationInProgress,
    /// The user already has this many replies running (in this process).
    #[error("{limit} replies are already running for this user")]
    TooManyGenerations { limit: usize },
    /// The user's daily token budget cannot cover this reply.
    #[error("the daily token budget is spent")]
    TokenBudgetSpent(BudgetSpent),
    /// The server is shutting down and starts no new replies (or stopped this one).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Regenerate in a chat without a user message to answer.
    #[error("the chat has no message to reply to")]
    NothingToRegenerate,
    /// No assistant message with this id in the chat.
    #[error("message {message_id} not found")]
    MessageNotFound { message_id: i64 },
    /// Every target of the alias failed; `error` holds the last failure.
    #[error("model alias {alias:?} failed: {error}")]
    Provider { alias: String, error: RouteError },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}
