//! `POST /chat` (a message and its reply) and `GET /models` (the aliases that can answer).

use actix_web::{HttpResponse, web};

use crate::dto::{
    ChatReplyResponse, ChatRequest, ErrorResponse, ModelResponse, UsageResponse, ValidationErrorResponse,
};
use crate::error::{ApiError, unknown_model};
use crate::extract::{AuthUser, JsonBody};
use crate::state::AppState;
use crate::validation::{FieldError, ObjectReader};

/// Send a message to a chat and get the model's reply. The message is stored before the model is asked
/// and stays stored if the model fails.
#[utoipa::path(post, path = "/chat", tag = "chat", request_body = ChatRequest,
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = ChatReplyResponse),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse, description = "No such chat for this user"),
        (status = 409, body = ErrorResponse, description = "A reply is already being generated in this chat"),
        (status = 413, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse, description = "Empty or too long message, unknown model"),
        (status = 429, body = ErrorResponse, description = "The provider is rate limiting; see Retry-After"),
        (status = 502, body = ErrorResponse, description = "The provider failed or answered unusably"),
        (status = 503, body = ErrorResponse, description = "No provider can serve the model"),
        (status = 504, body = ErrorResponse, description = "The provider did not answer in time"),
))]
pub async fn send_message(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut reader = ObjectReader::new(body.0.as_ref())?;
    let chat_id = reader.required_str("chat_id");
    let message = reader.required_str("message").filter(|text| {
        let length = text.chars().count();
        if length < 1 {
            reader.push(FieldError::too_short(&["body", "message"], 1));
        } else if length > state.max_message_chars {
            reader.push(FieldError::too_long(&["body", "message"], state.max_message_chars));
        }
        (1..=state.max_message_chars).contains(&length)
    });
    let model = reader.optional_str("model").unwrap_or_else(|| state.default_model.clone());
    let known = state.service.alias_names();
    if !known.contains(&model) {
        reader.push(unknown_model(&known));
    }
    if reader.optional_bool("stream") == Some(true) {
        reader.push(FieldError::value_error(
            &["body", "stream"],
            "streaming replies are not available in this version; omit \"stream\" or set it to false",
        ));
    }
    reader.finish()?;
    let (Some(chat_id), Some(message)) = (chat_id, message) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    let reply = state.service.send_message(user.id, &chat_id, message, &model).await?;
    Ok(HttpResponse::Ok().json(ChatReplyResponse {
        reply: reply.assistant.content,
        chat_id: reply.chat_id.to_string(),
        message_id: reply.assistant.id,
        user_message_id: reply.user_message_id,
        model: reply.alias,
        usage: UsageResponse {
            prompt_tokens: reply.usage.prompt_tokens,
            completion_tokens: reply.usage.completion_tokens,
        },
    }))
}

/// The model aliases, what serves each, and whether it can answer now.
#[utoipa::path(get, path = "/models", tag = "chat",
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = Vec<ModelResponse>),
        (status = 401, body = ErrorResponse),
))]
pub async fn list_models(state: web::Data<AppState>, _user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(&state.models)
}
