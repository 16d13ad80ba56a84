//! `/chats` and `/chats/{chat_id}[/messages]`: a user's chats and their history.

use actix_web::{HttpResponse, web};
use chat_domain::{ChatTitle, TitleError};
use chat_storage::PromptChange;
use utoipa::IntoParams;

use crate::dto::{
    ChatListResponse, ChatResponse, CreateChatRequest, ErrorResponse, MessageResponse, UpdateChatRequest,
    ValidationErrorResponse,
};
use crate::error::ApiError;
use crate::extract::{AuthUser, JsonBody, QueryParams, TokenUser};
use crate::state::AppState;
use crate::validation::{FieldError, ObjectReader};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;
const MAX_MESSAGES_PAGE: i64 = 500;

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documents the query string in the OpenAPI document; parsed by QueryParams")]
pub struct ListChatsQuery {
    /// How many chats to return.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<i64>,
    /// How many of the newest chats to skip.
    #[param(minimum = 0, default = 0)]
    offset: Option<i64>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documents the query string in the OpenAPI document; parsed by QueryParams")]
pub struct ListMessagesQuery {
    /// Return only the oldest `limit` messages.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The longest system prompt a chat may carry, in characters.
const MAX_SYSTEM_PROMPT_CHARS: usize = 8000;

/// The optional `system_prompt` field: `None` when absent, `Some(None)` for `""` (no prompt of its own).
fn system_prompt(reader: &mut ObjectReader<'_>) -> Option<Option<String>> {
    let raw = reader.optional_str("system_prompt")?;
    if raw.chars().count() > MAX_SYSTEM_PROMPT_CHARS {
        reader.push(FieldError::too_long(&["body", "system_prompt"], MAX_SYSTEM_PROMPT_CHARS));
        return None;
    }
    Some(Some(raw).filter(|p| !p.trim().is_empty()))
}

fn title_error(err: TitleError) -> FieldError {
    let loc = ["body", "title"];
    match err {
        TitleError::Empty => FieldError::too_short(&loc, 1),
        TitleError::TooLong { max } => FieldError::too_long(&loc, max),
    }
}

/// Create a chat; the body, and its title, are optional.
#[utoipa::path(post, path = "/chats", tag = "chats",
    request_body(content = Option<CreateChatRequest>, description = "May be empty"),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 201, body = ChatResponse),
        (status = 401, body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn create_chat(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let (title, system_prompt) = match body.0 {
        None | Some(serde_json::Value::Null) => (None, None),
        Some(ref value) => {
            let mut reader = ObjectReader::new(Some(value))?;
            let title = reader
                .optional_str("title")
                .and_then(|raw| ChatTitle::parse_for_create(raw).map_err(|err| reader.push(title_error(err))).ok());
            let system_prompt = system_prompt(&mut reader).flatten();
            reader.finish()?;
            (title, system_prompt)
        }
    };
    let chat = state.service.create_chat(user.id, title, system_prompt).await?;
    Ok(HttpResponse::Created().json(ChatResponse::from(&chat)))
}

/// The user's chats, most recently updated first.
#[utoipa::path(get, path = "/chats", tag = "chats", params(ListChatsQuery),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = ChatListResponse),
        (status = 401, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn list_chats(
    state: web::Data<AppState>,
    TokenUser(caller): TokenUser,
    query: QueryParams,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let limit = query.int("limit", 1, Some(MAX_PAGE), &mut errors).unwrap_or(DEFAULT_PAGE);
    let offset = query.int("offset", 0, None, &mut errors).unwrap_or(0);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = state.service.list_chats(caller, limit, offset).await?;
    Ok(HttpResponse::Ok()
        .json(ChatListResponse { chats: page.chats.iter().map(ChatResponse::from).collect(), total: page.total }))
}

/// One chat.
#[utoipa::path(get, path = "/chats/{chat_id}", tag = "chats",
    params(("chat_id" = String, Path, format = "uuid", description = "The chat's id")),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = ChatResponse),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse, description = "No such chat for this user"),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn get_chat(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    chat_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let chat = state.service.get_chat(user.id, &chat_id).await?;
    Ok(HttpResponse::Ok().json(ChatResponse::from(&chat)))
}

/// The chat's messages, oldest first.
#[utoipa::path(get, path = "/chats/{chat_id}/messages", tag = "chats",
    params(("chat_id" = String, Path, format = "uuid", description = "The chat's id"), ListMessagesQuery),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = Vec<MessageResponse>),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn list_messages(
    state: web::Data<AppState>,
    TokenUser(caller): TokenUser,
    chat_id: web::Path<String>,
    query: QueryParams,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let limit = query.int("limit", 1, Some(MAX_MESSAGES_PAGE), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let messages = state.service.list_messages(caller, &chat_id, limit).await?;
    Ok(HttpResponse::Ok().json(messages.iter().map(MessageResponse::from).collect::<Vec<_>>()))
}

/// Rename a chat.
#[utoipa::path(patch, path = "/chats/{chat_id}", tag = "chats", request_body = UpdateChatRequest,
    params(("chat_id" = String, Path, format = "uuid", description = "The chat's id")),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = ChatResponse),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn update_chat(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    chat_id: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut reader = ObjectReader::new(body.0.as_ref())?;
    let title = reader
        .required_str("title")
        .and_then(|raw| ChatTitle::parse_for_rename(raw).map_err(|err| reader.push(title_error(err))).ok());
    let prompt = match system_prompt(&mut reader) {
        None => PromptChange::Keep,
        Some(prompt) => PromptChange::Set(prompt),
    };
    reader.finish()?;
    let Some(title) = title else {
        return Err(ApiError::Internal("validated title missing".into()));
    };
    let chat = state.service.rename_chat(user.id, &chat_id, title, prompt).await?;
    Ok(HttpResponse::Ok().json(ChatResponse::from(&chat)))
}

/// Delete a chat and its messages.
#[utoipa::path(delete, path = "/chats/{chat_id}", tag = "chats",
    params(("chat_id" = String, Path, format = "uuid", description = "The chat's id")),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn delete_chat(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    chat_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.service.delete_chat(user.id, &chat_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
