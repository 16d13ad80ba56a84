//! The route table: every path, in one place, with the few that need no token listed in `PUBLIC_ROUTES`.

pub mod auth;
pub mod chat;
pub mod chats;
pub mod meta;
pub mod replies;

use actix_web::{Resource, web};
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};
use utoipa_swagger_ui::SwaggerUi;

use crate::openapi::ApiDoc;

/// The routes served without a bearer token. Every other handler takes an `AuthUser` (or, on the busiest
/// routes, a `TokenUser` whose user its service call checks), and a test
/// checks that each documented operation not listed here answers 401 without a token.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("POST", "/auth/register"),
    ("POST", "/auth/login"),
    ("POST", "/auth/token"),
    ("POST", "/auth/refresh"),
    ("GET", "/docs"),
    ("GET", "/docs/{file}"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
];

/// A resource whose unsupported methods answer 405 in the contract's shape.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(meta::method_not_allowed))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let openapi = ApiDoc::openapi();
    cfg.service(resource("/").route(web::get().to(meta::root)))
        .service(resource("/health").route(web::get().to(meta::health)))
        .service(resource("/metrics").route(web::get().to(crate::metrics::metrics)))
        .service(resource("/auth/register").route(web::post().to(auth::register)))
        .service(resource("/auth/login").route(web::post().to(auth::login)))
        .service(resource("/auth/token").route(web::post().to(auth::token)))
        .service(resource("/auth/me").route(web::get().to(auth::me)))
        .service(resource("/auth/logout").route(web::post().to(auth::logout)))
        .service(resource("/auth/refresh").route(web::post().to(auth::refresh)))
        .service(resource("/chats").route(web::get().to(chats::list_chats)).route(web::post().to(chats::create_chat)))
        .service(
            resource("/chats/{chat_id}")
                .route(web::get().to(chats::get_chat))
                .route(web::patch().to(chats::update_chat))
                .route(web::delete().to(chats::delete_chat)),
        )
        .service(resource("/chats/{chat_id}/messages").route(web::get().to(chats::list_messages)))
        .service(resource("/chats/{chat_id}/messages/{message_id}/events").route(web::get().to(replies::events)))
        .service(resource("/chats/{chat_id}/regenerate").route(web::post().to(replies::regenerate)))
        .service(resource("/chats/{chat_id}/cancel").route(web::post().to(replies::cancel)))
        .service(resource("/chat").route(web::post().to(chat::send_message)))
        .service(resource("/models").route(web::get().to(chat::list_models)))
        .service(resource("/docs").route(web::get().to(meta::docs_redirect)))
        .service(
            SwaggerUi::new("/docs/{_:.*}")
                .url("/openapi.json", openapi.clone())
                .config(utoipa_swagger_ui::Config::default().persist_authorization(true)),
        )
        .service(Redoc::with_url("/redoc", openapi))
        // Swagger UI and ReDoc register GET-only resources; other methods on their paths fall through
        // to these, registered after them, and get 405 like every other known path.
        .service(resource("/openapi.json"))
        .service(resource("/redoc"))
        .service(resource("/docs/{_:.*}"))
        .default_service(web::to(meta::not_found));
}
