//! `ApiError`: every failure a handler can answer, mapped to its status and body in one place.

use std::error::Error as StdError;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use chat_auth::AuthError;
use chat_service::{BudgetSpent, ServiceError, StreamFailure};
use chat_storage::StorageError;
use llm_providers::router::RouteError;
use llm_providers::{FailureKind, ProviderError};
use serde::Serialize;

use crate::validation::FieldError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The body of every error response, FastAPI's `{"detail": ...}`.
#[derive(Serialize)]
struct Detail<T: Serialize> {
    detail: T,
}

#[derive(Debug)]
pub enum ApiError {
    /// 422 with FastAPI's list of field errors.
    Validation(Vec<FieldError>),
    /// No `Authorization: Bearer` header.
    NotAuthenticated,
    /// A token that is malformed, tampered, expired or otherwise unacceptable.
    InvalidToken,
    /// A valid token for a user that no longer exists.
    UserNotFound,
    /// Wrong password or unknown email.
    InvalidLogin,
    /// A refresh token that is unknown, expired, revoked or used before.
    InvalidRefreshToken,
    EmailTaken,
    ChatNotFound(String),
    NotFound,
    /// A method the path does not serve; `allow` lists those it does (`GET, POST`), for the `Allow` header.
    MethodNotAllowed {
        allow: &'static str,
    },
    PayloadTooLarge {
        limit: usize,
    },
    /// A second message while the chat's reply is being generated.
    GenerationInProgress,
    /// Regenerate in a chat with no user message to answer.
    NothingToRegenerate,
    MessageNotFound(String),
    /// The server is shutting down and starts nothing new.
    ShuttingDown,
    /// The client went over one of the server's own rate limits, or its daily token budget.
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    /// The provider rate-limited us; the client may retry after this many seconds.
    ProviderRateLimited {
        detail: String,
        retry_after_secs: u64,
    },
    /// The provider did not answer in time.
    ProviderTimeout(String),
    /// The provider answered with an error or an unusable answer.
    BadGateway(String),
    /// No provider can serve the model now (none configured, or none reachable).
    ModelUnavailable(String),
    /// A dependency (the database) cannot serve now; logged with its cause, never sent.
    Unavailable(BoxError),
    /// Anything else; logged with its cause chain, never sent.
    Internal(BoxError),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unavailable(cause) | ApiError::Internal(cause) => {
                write!(f, "{}", self.detail())?;
                error_chain_fmt(cause.as_ref(), f)
            }
            _ => f.write_str(&self.detail()),
        }
    }
}

/// Writes `err` and each of its sources, for the log line of an opaque 5xx.
fn error_chain_fmt(err: &(dyn StdError + 'static), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, ": {err}")?;
    let mut source = err.source();
    while let Some(cause) = source {
        write!(f, ": {cause}")?;
        source = cause.source();
    }
    Ok(())
}

impl ApiError {
    /// The sentence sent as `detail` (validation errors send their list instead).
    fn detail(&self) -> String {
        match self {
            ApiError::Validation(_) => "Request validation failed".to_owned(),
            ApiError::NotAuthenticated => "Not authenticated".to_owned(),
            ApiError::InvalidToken => "Invalid authentication credentials".to_owned(),
            ApiError::UserNotFound => "User not found".to_owned(),
            ApiError::InvalidLogin => "Invalid email or password".to_owned(),
            ApiError::InvalidRefreshToken => "Invalid or expired refresh token; log in again".to_owned(),
            ApiError::EmailTaken => "Email already registered".to_owned(),
            ApiError::ChatNotFound(id) => format!("Chat with id '{id}' not found"),
            ApiError::NotFound => "Not Found".to_owned(),
            ApiError::MethodNotAllowed { .. } => "Method Not Allowed".to_owned(),
            ApiError::PayloadTooLarge { limit } => {
                format!("Request body is too large; the limit is {limit} bytes")
            }
            ApiError::GenerationInProgress => "A reply is already being generated in this chat".to_owned(),
            ApiError::NothingToRegenerate => {
                "This chat has no message to reply to; send one with POST /chat first".to_owned()
            }
            ApiError::MessageNotFound(id) => format!("Message with id '{id}' not found in this chat"),
            ApiError::ShuttingDown => "The server is shutting down; please retry in a moment".to_owned(),
            ApiError::ProviderRateLimited { detail, .. }
            | ApiError::TooManyRequests { detail, .. }
            | ApiError::ProviderTimeout(detail)
            | ApiError::BadGateway(detail)
            | ApiError::ModelUnavailable(detail) => detail.clone(),
            ApiError::Unavailable(_) => "The service is temporarily unavailable; please retry shortly".to_owned(),
            ApiError::Internal(_) => "Internal server error".to_owned(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        // No wildcard arm: a new variant must choose its status here.
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotAuthenticated
            | ApiError::InvalidToken
            | ApiError::UserNotFound
            | ApiError::InvalidLogin
            | ApiError::InvalidRefreshToken => StatusCode::UNAUTHORIZED,
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::ChatNotFound(_) | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::GenerationInProgress | ApiError::NothingToRegenerate => StatusCode::CONFLICT,
            ApiError::MessageNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ProviderRateLimited { .. } | ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ProviderTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::ModelUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // The full cause goes to the log (inside the request's span, so with its request id).
            tracing::error!(error = %self, "request failed");
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            // RFC 9110: a 405 lists the methods the resource does serve.
            response.insert_header((header::ALLOW, *allow));
        }
        if let ApiError::ProviderRateLimited { retry_after_secs, .. }
        | ApiError::TooManyRequests { retry_after_secs, .. } = self
        {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        match self {
            ApiError::Validation(errors) => response.json(Detail { detail: errors }),
            _ => response.json(Detail { detail: self.detail() }),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::EmailTaken => ApiError::EmailTaken,
            ServiceError::InvalidCredentials => ApiError::InvalidLogin,
            ServiceError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
            ServiceError::InvalidToken(reason) => {
                tracing::debug!(%reason, "token refused");
                ApiError::InvalidToken
            }
            ServiceError::UserNotFound => ApiError::UserNotFound,
            ServiceError::TokenRevoked => ApiError::InvalidToken,
            ServiceError::ChatNotFound { chat_id } => ApiError::ChatNotFound(chat_id),
            ServiceError::UnknownModel { known, .. } => ApiError::Validation(vec![unknown_model(&known)]),
            ServiceError::MessageTooLarge(too_large) => {
                ApiError::Validation(vec![FieldError::value_error(&["body", "message"], too_large)])
            }
            ServiceError::GenerationInProgress => ApiError::GenerationInProgress,
            ServiceError::TooManyGenerations { limit } => ApiError::TooManyRequests {
                detail: format!(
                    "This account already has {limit} replies being generated; wait for one to finish, or cancel one"
                ),
                retry_after_secs: 1,
            },
            ServiceError::TokenBudgetSpent(spent) => budget_spent(&spent),
            ServiceError::NothingToRegenerate => ApiError::NothingToRegenerate,
            ServiceError::MessageNotFound { message_id } => ApiError::MessageNotFound(message_id.to_string()),
            ServiceError::ShuttingDown => ApiError::ShuttingDown,
            ServiceError::Provider { alias, error } => provider_failure(&alias, error),
            ServiceError::Storage(err) => err.into(),
            ServiceError::Auth(err) => err.into(),
        }
    }
}

/// A reply the user's daily token budget cannot cover: a 429 until the budget renews at 00:00 UTC.
fn budget_spent(spent: &BudgetSpent) -> ApiError {
    let BudgetSpent { budget, committed, needed, renews_in } = spent;
    let left = budget.saturating_sub(*committed);
    let detail = if needed > budget {
        format!(
            "This reply may need up to {needed} tokens (its prompt and the longest answer the model may give), more \
             than the daily token budget of {budget}: use a model with a shorter answer limit, or a shorter chat"
        )
    } else {
        format!(
            "Daily token budget spent: {committed} of {budget} tokens are used or held by running replies, {left} \
             are left and this reply may need up to {needed}; the budget renews at 00:00 UTC"
        )
    };
    ApiError::TooManyRequests { detail, retry_after_secs: renews_in.as_secs().max(1) }
}

/// FastAPI's `enum` error for a `model` that names no alias, listing the ones that exist.
pub fn unknown_model(known: &[String]) -> FieldError {
    let quoted: Vec<String> = known.iter().map(|name| format!("'{name}'")).collect();
    let expected = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "a configured model alias".to_owned(),
    };
    FieldError::new("enum", &["body", "model"], format!("Input should be {expected}"))
        .with_ctx(serde_json::json!({ "expected": expected }))
}

/// The status a kind of provider failure is answered with.
fn failure_status(kind: FailureKind) -> StatusCode {
    match kind {
        FailureKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureKind::Upstream | FailureKind::UnusableAnswer | FailureKind::ConnectionLost => StatusCode::BAD_GATEWAY,
        FailureKind::Unreachable | FailureKind::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Maps a failed model call to its status, naming the alias and provider (never a key, never the
/// provider's own text, which is logged instead).
fn provider_failure(alias: &str, failure: RouteError) -> ApiError {
    let provider = failure.provider.clone().unwrap_or_else(|| "none".to_owned());
    tracing::warn!(alias, provider = %provider, attempts = failure.attempts, error = %failure.error, "model call failed");
    let saved = "your message was saved";
    if failure.all_unreachable {
        return ApiError::ModelUnavailable(format!(
            "The providers of the model '{alias}' cannot be reached right now; {saved}. Please retry shortly."
        ));
    }
    let kind = failure.error.kind();
    match kind {
        FailureKind::NotConfigured => {
            ApiError::ModelUnavailable(format!("No provider is configured for the model '{alias}'; {saved}."))
        }
        FailureKind::RateLimited => {
            let retry_after = match failure.error {
                ProviderError::RateLimited { retry_after } => retry_after,
                _ => None,
            };
            let seconds = retry_after_seconds(retry_after);
            ApiError::ProviderRateLimited {
                detail: format!(
                    "The model '{alias}' is rate limited by its provider ({provider}); {saved}. Retry after {seconds} seconds."
                ),
                retry_after_secs: seconds,
            }
        }
        FailureKind::Timeout => ApiError::ProviderTimeout(format!(
            "The model '{alias}' ({provider}) did not answer in time; {saved}. Please retry."
        )),
        FailureKind::Upstream | FailureKind::Unreachable | FailureKind::ConnectionLost => ApiError::BadGateway(
            format!("The model '{alias}' ({provider}) answered with an error; {saved}. Please retry."),
        ),
        FailureKind::UnusableAnswer => ApiError::BadGateway(format!(
            "The model '{alias}' ({provider}) gave an answer that could not be used; {saved}. Please retry."
        )),
    }
}

fn retry_after_seconds(retry_after: Option<std::time::Duration>) -> u64 {
    retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64)
}

/// The status and sentence of an `error` event: a reply that began and then could not finish.
pub fn stream_failure(failure: &StreamFailure) -> (u16, String) {
    let kept = "the text so far is kept; regenerate to try again";
    match failure {
        StreamFailure::Provider { alias, provider, kind, retry_after } => {
            let provider = provider.as_deref().unwrap_or("none");
            let what = match kind {
                FailureKind::RateLimited => {
                    format!("was rate limited (retry after {} seconds)", retry_after_seconds(*retry_after))
                }
                FailureKind::Timeout => "did not answer in time".to_owned(),
                FailureKind::Upstream => "answered with an error".to_owned(),
                FailureKind::UnusableAnswer => "gave an answer that could not be used".to_owned(),
                FailureKind::ConnectionLost => "dropped the connection".to_owned(),
                FailureKind::Unreachable => "could not be reached".to_owned(),
                FailureKind::NotConfigured => "has no provider configured".to_owned(),
            };
            let status = failure_status(*kind).as_u16();
            (status, format!("The model '{alias}' ({provider}) {what} before the reply was finished; {kept}."))
        }
        StreamFailure::Interrupted => (503, format!("The server stopped before this reply was finished; {kept}.")),
        StreamFailure::Storage => {
            (503, "The reply could not be saved completely; the chat's history may hold only part of it.".to_owned())
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(_) | StorageError::Busy(_) => ApiError::Unavailable(Box::new(err)),
            StorageError::UniqueViolation
            | StorageError::ForeignKeyViolation
            | StorageError::Query(_)
            | StorageError::InvalidUrl(_)
            | StorageError::Open { .. }
            | StorageError::Migration(_)
            | StorageError::WriteFailed(_)
            | StorageError::NoAnswer
            | StorageError::TaskFailed(_) => ApiError::Internal(Box::new(err)),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Hashing(_) | AuthError::Thread(_) | AuthError::HashingStopped | AuthError::Signing(_) => {
                ApiError::Internal(Box::new(err))
            }
        }
    }
}
