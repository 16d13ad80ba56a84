//! `ApiError`: every failure a handler can answer, mapped to its status and body in one place.

use std::error::Error as StdError;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use chat_auth::AuthError;
use chat_service::ServiceError;
use chat_storage::StorageError;
use llm_providers::ProviderError;
use llm_providers::router::RouteError;
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
    EmailTaken,
    ChatNotFound(String),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge {
        limit: usize,
    },
    /// A second message while the chat's reply is being generated.
    GenerationInProgress,
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
            ApiError::EmailTaken => "Email already registered".to_owned(),
            ApiError::ChatNotFound(id) => format!("Chat with id '{id}' not found"),
            ApiError::NotFound => "Not Found".to_owned(),
            ApiError::MethodNotAllowed => "Method Not Allowed".to_owned(),
            ApiError::PayloadTooLarge { limit } => {
                format!("Request body is too large; the limit is {limit} bytes")
            }
            ApiError::GenerationInProgress => "A reply is already being generated in this chat".to_owned(),
            ApiError::ProviderRateLimited { detail, .. }
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
            ApiError::NotAuthenticated | ApiError::InvalidToken | ApiError::UserNotFound | ApiError::InvalidLogin => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::ChatNotFound(_) | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::GenerationInProgress => StatusCode::CONFLICT,
            ApiError::ProviderRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
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
        if let ApiError::ProviderRateLimited { retry_after_secs, .. } = self {
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
            ServiceError::InvalidToken(reason) => {
                tracing::debug!(%reason, "token refused");
                ApiError::InvalidToken
            }
            ServiceError::UserNotFound => ApiError::UserNotFound,
            ServiceError::ChatNotFound { chat_id } => ApiError::ChatNotFound(chat_id),
            ServiceError::UnknownModel { known, .. } => ApiError::Validation(vec![unknown_model(&known)]),
            ServiceError::MessageTooLarge(too_large) => {
                ApiError::Validation(vec![FieldError::value_error(&["body", "message"], too_large)])
            }
            ServiceError::GenerationInProgress => ApiError::GenerationInProgress,
            ServiceError::Provider { alias, error } => provider_failure(&alias, error),
            ServiceError::Storage(err) => err.into(),
            ServiceError::Auth(err) => err.into(),
        }
    }
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
    match failure.error {
        ProviderError::NotConfigured => {
            ApiError::ModelUnavailable(format!("No provider is configured for the model '{alias}'; {saved}."))
        }
        ProviderError::RateLimited { retry_after } => {
            let seconds = retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
            ApiError::ProviderRateLimited {
                detail: format!(
                    "The model '{alias}' is rate limited by its provider ({provider}); {saved}. Retry after {seconds} seconds."
                ),
                retry_after_secs: seconds,
            }
        }
        ProviderError::Timeout { .. } => ApiError::ProviderTimeout(format!(
            "The model '{alias}' ({provider}) did not answer in time; {saved}. Please retry."
        )),
        ProviderError::Upstream { .. } | ProviderError::Unreachable(_) | ProviderError::ConnectionLost(_) => {
            ApiError::BadGateway(format!(
                "The model '{alias}' ({provider}) answered with an error; {saved}. Please retry."
            ))
        }
        ProviderError::UnusableAnswer(_) => ApiError::BadGateway(format!(
            "The model '{alias}' ({provider}) gave an answer that could not be used; {saved}. Please retry."
        )),
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(_) => ApiError::Unavailable(Box::new(err)),
            StorageError::UniqueViolation
            | StorageError::ForeignKeyViolation
            | StorageError::Query(_)
            | StorageError::InvalidUrl(_)
            | StorageError::Open { .. }
            | StorageError::Migration(_)
            | StorageError::TaskFailed(_) => ApiError::Internal(Box::new(err)),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Hashing(_) | AuthError::TaskFailed(_) | AuthError::LimiterClosed | AuthError::Signing(_) => {
                ApiError::Internal(Box::new(err))
            }
        }
    }
}
