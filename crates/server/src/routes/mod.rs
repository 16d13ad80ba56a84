//! The route table: every path, in one place, with the few that need no token listed in `PUBLIC_ROUTES`.

pub mod auth;
pub mod chat;
pub mod chats;
pub mod meta;
pub mod replies;

use actix_web::{Resource, web};
use utoipa_redoc::{Redoc, Servable};
use utoipa_swagger_ui::SwaggerUi;

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

/// A resource whose other methods answer 405 in the contract's shape, with `Allow: <allow>`: the methods its
/// routes serve, listed beside them (a test checks each against the OpenAPI document).
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || meta::method_not_allowed(allow)))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET").route(web::get().to(meta::root)))
        .service(resource("/health", "GET").route(web::get().to(meta::health)))
        .service(resource("/metrics", "GET").route(web::get().to(crate::metrics::metrics)))
        .service(resource("/auth/register", "POST").route(web::post().to(auth::register)))
        .service(resource("/auth/login", "POST").route(web::post().to(auth::login)))
        .service(resource("/auth/token", "POST").route(web::post().to(auth::token)))
        .service(resource("/auth/me", "GET").route(web::get().to(auth::me)))
        .service(resource("/auth/logout", "POST").route(web::post().to(auth::logout)))
        .service(resource("/auth/refresh", "POST").route(web::post().to(auth::refresh)))
        .service(
            resource("/chats", "GET, POST")
                .route(web::get().to(chats::list_chats))
                .route(web::post().to(chats::create_chat)),
        )
        .service(
            resource("/chats/{chat_id}", "GET, PATCH, DELETE")
                .route(web::get().to(chats::get_chat))
                .route(web::patch().to(chats::update_chat))
                .route(web::delete().to(chats::delete_chat)),
        )
        .service(resource("/chats/{chat_id}/messages", "GET").route(web::get().to(chats::list_messages)))
        .service(resource("/chats/{chat_id}/messages/{message_id}/events", "GET").route(web::get().to(replies::events)))
        .service(resource("/chats/{chat_id}/regenerate", "POST").route(web::post().to(replies::regenerate)))
        .service(resource("/chats/{chat_id}/cancel", "POST").route(web::post().to(replies::cancel)))
        .service(resource("/chat", "POST").route(web::post().to(chat::send_message)))
        .service(resource("/models", "GET").route(web::get().to(chat::list_models)))
        .service(resource("/usage", "GET").route(web::get().to(chat::usage)))
        .service(resource("/openapi.json", "GET").route(web::get().to(meta::openapi_json)))
        .service(resource("/docs", "GET").route(web::get().to(meta::docs_redirect)))
        // Both pages load the document from /openapi.json, which carries this server's settings.
        .service(
            SwaggerUi::new("/docs/{_:.*}")
                .config(utoipa_swagger_ui::Config::new(["/openapi.json"]).persist_authorization(true)),
        )
        .service(Redoc::with_url("/redoc", "/openapi.json"))
        // Swagger UI and ReDoc register GET-only resources; other methods on their paths fall through
        // to these, registered after them, and get 405 like every other known path.
        .service(resource("/redoc", "GET"))
        .service(resource("/docs/{_:.*}", "GET"))
        .default_service(web::to(meta::not_found));
}
