//! A chat's replies beyond sending: regenerate the last one, stop the running one, follow one's events.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::dto::{CancelResponse, ChatReplyResponse, ErrorResponse, RegenerateRequest, ValidationErrorResponse};
use crate::error::{ApiError, unknown_model};
use crate::extract::{AuthUser, JsonBody};
use crate::routes::chat::answer;
use crate::sse;
use crate::state::AppState;
use crate::validation::ObjectReader;

/// Replace the chat's last reply with a new one for the same message (or answer a last message that
/// has no reply). The old reply goes once the new one begins; if the model fails first, it stays.
#[utoipa::path(post, path = "/chats/{chat_id}/regenerate", tag = "chat",
    params(("chat_id" = String, Path, format = "uuid", description = "The chat's id")),
    request_body(content = Option<RegenerateRequest>, description = "May be empty"),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, description = "The new reply (JSON), or with `stream` its events (`text/event-stream`)",
            content((ChatReplyResponse = "application/json"), (String = "text/event-stream"))),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse, description = "No such chat for this user"),
        (status = 409, body = ErrorResponse, description = "A reply is being generated, or there is no message to reply to"),
        (status = 413, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse, description = "Unknown model"),
        (status = 429, body = ErrorResponse, description = "Too many new replies for this account, its daily token budget spent, or the provider is rate limiting; see Retry-After"),
        (status = 502, body = ErrorResponse, description = "The provider failed or answered unusably"),
        (status = 503, body = ErrorResponse, description = "No provider can serve the model, the server is shutting down, or the database cannot be reached"),
        (status = 504, body = ErrorResponse, description = "The provider did not answer in time"),
))]
pub async fn regenerate(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let (model, stream) = match body.0 {
        None | Some(serde_json::Value::Null) => (None, false),
        Some(ref value) => {
            let mut reader = ObjectReader::new(Some(value))?;
            let model = reader.optional_str("model");
            let known = state.service.alias_names();
            if model.as_ref().is_some_and(|m| !known.contains(m)) {
                reader.push(unknown_model(&known));
            }
            let stream = reader.optional_bool("stream").unwrap_or(false);
            reader.finish()?;
            (model, stream)
        }
    };
    state.limits.reply(user.id)?;
    let started = state.service.regenerate(user.id, &path, model.as_deref()).await?;
    answer(&state, started, stream).await
}

/// Stop the chat's running reply. Its text so far is stored with status `cancelled`, and its
/// listeners get `done` with `finish_reason: "cancelled"`.
#[utoipa::path(post, path = "/chats/{chat_id}/cancel", tag = "chat",
    params(("chat_id" = String, Path, format = "uuid", description = "The chat's id")),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = CancelResponse, description = "`cancelled` is false when nothing was running"),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse, description = "No such chat for this user"),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn cancel(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cancelled = state.service.cancel(user.id, &path).await?;
    Ok(HttpResponse::Ok().json(CancelResponse { cancelled }))
}

/// The events of an assistant message: from the start (or after the `Last-Event-ID` header's id), then
/// live until `done` or `error`. A reply no longer in memory is told again from the database as
/// `start`, one `delta` with all its text, and its ending; a `start` always means "begin the message again".
#[utoipa::path(get, path = "/chats/{chat_id}/messages/{message_id}/events", tag = "chat",
    params(
        ("chat_id" = String, Path, format = "uuid", description = "The chat's id"),
        ("message_id" = i64, Path, minimum = 1, description = "The assistant message's id"),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Resume after this event id"),
    ),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse, description = "No such chat for this user, or no such assistant message in it"),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn events(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (chat_id, message_id) = path.into_inner();
    let last_event_id = request
        .headers()
        .get("Last-Event-ID")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let Ok(message_id) = message_id.parse::<i64>() else {
        // Still a 404 for the chat first, as for every other path under a chat that is not the caller's.
        state.service.get_chat(user.id, &chat_id).await?;
        return Err(ApiError::MessageNotFound(message_id));
    };
    let subscription = state.service.follow(user.id, &chat_id, message_id, last_event_id).await?;
    Ok(sse::response(subscription, state.keep_alive))
}
