//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::routes::{auth, chat, chats, meta, replies};
use crate::validation::FieldError;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "AI Chat Backend",
        description = "Accounts, chats and conversations with language models.\n\n\
            To call protected endpoints, click **Authorize** and either log in with your email as \
            *username* and your password (OAuth2 password flow), or paste a token from `POST /auth/login` \
            under *HTTPBearer*.",
        license(name = "MIT"),
    ),
    paths(
        meta::root, meta::health, crate::metrics::metrics,
        auth::register, auth::login, auth::token, auth::me, auth::logout, auth::refresh,
        chats::create_chat, chats::list_chats, chats::get_chat, chats::list_messages,
        chats::update_chat, chats::delete_chat,
        chat::send_message, replies::regenerate, replies::cancel, replies::events, chat::list_models,
    ),
    components(schemas(
        FieldError, dto::ErrorResponse, dto::ValidationErrorResponse,
        dto::StartEvent, dto::DeltaEvent, dto::DoneEvent, dto::ErrorEvent,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "chats", description = "Chats and their messages"),
        (name = "chat", description = "Talking to the models"),
        (name = "meta", description = "Service information"),
    ),
)]
pub struct ApiDoc;

/// Declares the two ways to present a token: the OAuth2 password flow against `/auth/token` (what
/// Swagger UI's Authorize dialog drives) and a plain bearer token.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "OAuth2PasswordBearer",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new("/auth/token", Scopes::new()))])),
        );
        components.add_security_scheme(
            "HTTPBearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
