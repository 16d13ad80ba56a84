//! The wire shapes: request bodies as documented and response bodies built from storage rows.

use chat_domain::time::to_rfc3339;
use chat_storage::{ChatSummary, Message, User};
use serde::Serialize;
use utoipa::ToSchema;

use crate::validation::FieldError;

// ----- requests (parsed by hand in the handlers for FastAPI-shaped errors; these document them) -----

#[derive(Debug, ToSchema)]
pub struct RegisterRequest {
    /// Trimmed and lower-cased before it is stored; at most 254 characters, 64 before the `@` and 63 in each label of
    /// the domain.
    #[schema(format = "email", max_length = 254, example = "user@example.com")]
    pub email: String,
    /// 8 to 72 characters, and at most 72 bytes in UTF-8.
    #[schema(min_length = 8, max_length = 72, example = "password123")]
    pub password: String,
}

#[derive(Debug, ToSchema)]
pub struct LoginRequest {
    /// Compared trimmed and lower-cased.
    #[schema(format = "email", max_length = 254, example = "user@example.com")]
    pub email: String,
    #[schema(min_length = 1, max_length = 72, example = "password123")]
    pub password: String,
}

/// OAuth2 password flow form; `username` carries the email. Other OAuth2 fields are accepted and ignored.
#[derive(Debug, ToSchema)]
pub struct TokenForm {
    /// The account's email.
    #[schema(format = "email", min_length = 1, example = "user@example.com")]
    pub username: String,
    #[schema(min_length = 1, example = "password123")]
    pub password: String,
    #[schema(nullable = false, example = "password")]
    pub grant_type: Option<String>,
    #[schema(nullable = false)]
    pub scope: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

#[derive(Debug, ToSchema)]
pub struct CreateChatRequest {
    /// Optional; at most 200 characters.
    #[schema(max_length = 200, example = "My First Chat")]
    pub title: Option<String>,
    /// Replaces the global system prompt in this chat's conversations; at most 8,000 characters.
    #[schema(max_length = 8000)]
    pub system_prompt: Option<String>,
}

#[derive(Debug, ToSchema)]
pub struct UpdateChatRequest {
    #[schema(min_length = 1, max_length = 200, example = "Renamed Chat")]
    pub title: String,
    /// A new system prompt for the chat; `""` returns it to the global one. Absent: unchanged.
    #[schema(max_length = 8000)]
    pub system_prompt: Option<String>,
}

// ----- responses -----

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    #[schema(format = "uuid")]
    pub id: String,
    /// As stored: trimmed and lower-cased.
    #[schema(format = "email")]
    pub email: String,
    #[schema(format = "date-time")]
    pub created_at: String,
}

impl From<&User> for UserResponse {
    fn from(user: &User) -> Self {
        Self { id: user.id.to_string(), email: user.email.clone(), created_at: to_rfc3339(user.created_at) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(value_type = TokenType)]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
    /// Exchanged once at `POST /auth/refresh` for a new access token and a new refresh token.
    pub refresh_token: String,
    /// Seconds the refresh token may be used for.
    pub refresh_expires_in: i64,
}

#[derive(Debug, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the last login or refresh; each can be used once.
    #[schema(min_length = 1, max_length = 128)]
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub user_id: String,
    #[schema(required = true)]
    pub title: Option<String>,
    /// The chat's own system prompt, if it has one.
    #[schema(required = true)]
    pub system_prompt: Option<String>,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub updated_at: String,
    pub message_count: i64,
}

impl From<&ChatSummary> for ChatResponse {
    fn from(summary: &ChatSummary) -> Self {
        let chat = &summary.chat;
        Self {
            id: chat.id.to_string(),
            user_id: chat.user_id.to_string(),
            title: chat.title.clone(),
            system_prompt: chat.system_prompt.clone(),
            created_at: to_rfc3339(chat.created_at),
            updated_at: to_rfc3339(chat.updated_at),
            message_count: summary.message_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatListResponse {
    pub chats: Vec<ChatResponse>,
    /// The exact number of the user's chats.
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub id: i64,
    #[schema(format = "uuid")]
    pub chat_id: String,
    #[schema(value_type = MessageRole)]
    pub role: &'static str,
    pub content: String,
    #[schema(value_type = MessageStatus)]
    pub status: &'static str,
    /// The alias that wrote an assistant message.
    #[schema(required = true)]
    pub model: Option<String>,
    /// Why an assistant message ended: `stop`, `length`, `cancelled`, ...
    #[schema(required = true)]
    pub finish_reason: Option<String>,
    #[schema(format = "date-time")]
    pub created_at: String,
}

impl From<&Message> for MessageResponse {
    fn from(message: &Message) -> Self {
        Self {
            id: message.id,
            chat_id: message.chat_id.to_string(),
            role: message.role.as_str(),
            content: message.content.clone(),
            status: message.status.as_str(),
            model: message.model_alias.clone(),
            finish_reason: message.finish_reason.clone(),
            created_at: to_rfc3339(message.created_at),
        }
    }
}

/// `POST /chat`'s body.
#[derive(Debug, ToSchema)]
pub struct ChatRequest {
    #[schema(format = "uuid")]
    pub chat_id: String,
    /// At least 1 character, at most the configured maximum (32,000 by default).
    #[schema(min_length = 1, example = "Hello, AI!")]
    pub message: String,
    /// A model alias; see `GET /models`.
    #[schema(default = "fast", example = "fast")]
    pub model: Option<String>,
    /// Answer as Server-Sent Events (`text/event-stream`) as the reply is generated.
    #[schema(default = false)]
    pub stream: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReplyResponse {
    pub reply: String,
    #[schema(format = "uuid")]
    pub chat_id: String,
    /// The stored assistant message.
    pub message_id: i64,
    /// The stored user message.
    pub user_message_id: i64,
    /// The alias that answered.
    pub model: String,
    pub usage: UsageResponse,
    #[schema(value_type = ReplyStatus)]
    pub status: &'static str,
    /// `stop`, `length`, `content_filter`, ... or `cancelled`.
    pub finish_reason: String,
}

/// `POST /chats/{chat_id}/regenerate`'s body; it may be empty.
#[derive(Debug, ToSchema)]
#[expect(dead_code, reason = "documents the body in the OpenAPI document; read by ObjectReader")]
pub struct RegenerateRequest {
    /// A model alias; by default the one of the reply being replaced.
    #[schema(example = "fast")]
    model: Option<String>,
    /// Answer as `text/event-stream`, as `POST /chat` does.
    #[schema(default = false)]
    stream: Option<bool>,
}

/// `POST /chats/{chat_id}/cancel`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelResponse {
    /// Whether a running reply was stopped.
    pub cancelled: bool,
}

/// The `data` of a `start` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartEvent {
    #[schema(format = "uuid")]
    pub chat_id: String,
    pub user_message_id: i64,
    /// The assistant message being generated.
    pub message_id: i64,
    /// The alias answering.
    pub model: String,
}

/// The `data` of a `delta` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeltaEvent<'a> {
    /// The next piece of the reply.
    pub text: &'a str,
}

/// The `data` of a `done` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoneEvent<'a> {
    pub message_id: i64,
    /// `stop`, `length`, ... or `cancelled`.
    pub finish_reason: &'a str,
    pub usage: UsageResponse,
}

/// The `data` of an `error` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEvent {
    pub message_id: i64,
    /// What happened, for a person.
    pub detail: String,
    /// The HTTP status the failure would have had before the stream began.
    pub status: u16,
}

/// The caller's daily token budget today (UTC).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageTodayResponse {
    /// The UTC day counted, `YYYY-MM-DD`.
    pub day: String,
    /// Tokens a user may spend per UTC day; null when no budget is set (nothing is counted then).
    pub budget: Option<u64>,
    /// Tokens spent today by replies that ended, as their providers counted them.
    pub used: u64,
    /// Tokens held by replies still running: each holds its prompt and the longest answer it may get.
    pub reserved: u64,
    /// What new replies may still reserve today; null when no budget is set.
    pub remaining: Option<u64>,
    /// When the budget renews: the next 00:00 UTC.
    pub renews_at: String,
}

impl From<chat_service::BudgetToday> for UsageTodayResponse {
    fn from(today: chat_service::BudgetToday) -> Self {
        Self {
            day: today.day.format("%Y-%m-%d").to_string(),
            budget: today.budget,
            used: today.used,
            reserved: today.reserved,
            remaining: today.budget.map(|budget| budget.saturating_sub(today.used.saturating_add(today.reserved))),
            renews_at: to_rfc3339(today.renews_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelResponse {
    pub alias: String,
    /// The provider that serves it first (`offline` for the built-in offline model).
    pub provider: String,
    /// The provider's model id.
    pub model: String,
    /// False when no configured provider can serve it (it answers 503).
    pub available: bool,
    /// Whether requests that name no model use it.
    pub default: bool,
    pub context_window: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RootResponse {
    pub message: &'static str,
    pub version: &'static str,
    pub docs: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(value_type = HealthStatus)]
    pub status: &'static str,
    #[schema(value_type = DatabaseStatus)]
    pub database: &'static str,
    #[schema(value_type = DatabaseBackend)]
    pub backend: &'static str,
    /// The connection pool: connections open, and idle among them.
    pub pool: PoolResponse,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PoolResponse {
    pub connections: u32,
    pub idle: u32,
}

/// Every handled error: one sentence.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub detail: String,
}

/// A 422: every problem with the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrorResponse {
    pub detail: Vec<FieldError>,
}

// ----- the values of the string fields above that have a fixed set (documentation: the fields are `&str`) -----

/// The only token type.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TokenType {
    Bearer,
}

/// Who wrote a message.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
}

/// Where a message stands: a user's is `complete`; a reply is `generating` until it ends as one of the others.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum MessageStatus {
    Generating,
    Complete,
    Cancelled,
    Error,
    Interrupted,
}

/// How a reply answered in JSON ended: `complete`; `cancelled` when it was stopped, `interrupted` when the server
/// stopped first, `error` when it failed once begun (each then holding the text so far).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReplyStatus {
    Complete,
    Cancelled,
    Interrupted,
    Error,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DatabaseStatus {
    Ok,
    Unreachable,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}
