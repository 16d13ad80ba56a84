//! `ApiError`: every failure a handler can answer, mapped to its status and body in one place.

use std::error::Error as StdError;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use chat_auth::AuthError;
use chat_service::ServiceError;
use chat_storage::StorageError;
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
            ServiceError::Storage(err) => err.into(),
            ServiceError::Auth(err) => err.into(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(_) => ApiError::Unavailable(Box::new(err)),
            StorageError::UniqueViolation
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
