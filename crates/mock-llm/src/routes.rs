//! The route table: the provider endpoints, the `/_mock/` control API, and their handlers.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use crate::behaviour::parse_script;
use crate::dialect::Dialect;
use crate::prompt::ChatRequest;
use crate::respond::{Exchange, respond};
use crate::state::Shared;

/// Largest request body accepted: long prompts are the point of some load tests.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Paths under this prefix drive the mock and are never recorded.
const CONTROL_PREFIX: &str = "/_mock/";

/// Model ids listed by `GET /v1/models`.
const MODELS: [&str; 2] = ["mock-gpt", "mock-claude"];

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/v1/chat/completions", web::post().to(openai_chat))
        .route("/chat/completions", web::post().to(openai_chat))
        .route("/v1/messages", web::post().to(anthropic_messages))
        .route("/messages", web::post().to(anthropic_messages))
        .route("/v1/models", web::get().to(models))
        .route("/models", web::get().to(models))
        .route("/_mock/script", web::post().to(push_script))
        .route("/_mock/script", web::get().to(show_script))
        .route("/_mock/reset", web::post().to(reset))
        .route("/_mock/requests", web::get().to(requests))
        .default_service(web::to(unknown_route));
}

async fn openai_chat(http: HttpRequest, body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    chat(http, body, state, Dialect::OpenAi).await
}

async fn anthropic_messages(http: HttpRequest, body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    chat(http, body, state, Dialect::Anthropic).await
}

/// Records the request, takes the next scripted behaviour (or the default reply) and plays it.
async fn chat(http: HttpRequest, body: Bytes, state: web::Data<Shared>, dialect: Dialect) -> HttpResponse {
    let shared = state.into_inner();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let recorded = parsed.clone().unwrap_or_else(|| raw_body(&body));
    let mut ticket = shared.record(http.path().to_owned(), headers(&http), recorded);
    let Some(json) = parsed.filter(Value::is_object) else {
        ticket.finish();
        let message = "the request body must be a JSON object";
        return HttpResponse::BadRequest().json(dialect.error_body(StatusCode::BAD_REQUEST, message));
    };
    let chat = ChatRequest::read(&json, dialect);
    let behaviour = shared.next_behaviour().unwrap_or_default();
    respond(Exchange { http: &http, dialect, chat, ticket, defaults: &shared.defaults }, behaviour).await
}

async fn models(http: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    state.into_inner().record(http.path().to_owned(), headers(&http), Value::Null).finish();
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock-llm"}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

async fn unknown_route(http: HttpRequest, body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let path = http.path().to_owned();
    if !path.starts_with(CONTROL_PREFIX) {
        // Recorded so that a client aimed at the wrong path shows up in the test that made it.
        let recorded = serde_json::from_slice(&body).unwrap_or_else(|_| raw_body(&body));
        state.into_inner().record(path.clone(), headers(&http), recorded).finish();
    }
    let message = format!("mock-llm has no route {} {path}", http.method());
    HttpResponse::NotFound().json(json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": "unknown_url"}
    }))
}

async fn push_script(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let script = serde_json::from_slice(&body)
        .map_err(|err| format!("the script is not JSON: {err}"))
        .and_then(|value| parse_script(value).map_err(|err| err.to_string()));
    match script {
        Ok(behaviours) => HttpResponse::Ok().json(json!({"queued": state.push_script(behaviours)})),
        Err(message) => HttpResponse::BadRequest().json(json!({"error": message})),
    }
}

async fn show_script(state: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(state.queued())
}

async fn reset(state: web::Data<Shared>) -> HttpResponse {
    state.reset();
    HttpResponse::Ok().json(json!({"reset": true}))
}

async fn requests(state: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(state.requests())
}

/// A body that is not JSON, kept as text (`null` when empty).
fn raw_body(body: &[u8]) -> Value {
    if body.is_empty() { Value::Null } else { Value::String(String::from_utf8_lossy(body).into_owned()) }
}

/// Headers by lower-case name (actix already lower-cases them), repeated ones joined with `", "`.
fn headers(http: &HttpRequest) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for (name, value) in http.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.entry(name.as_str().to_owned()) {
            Entry::Vacant(entry) => {
                entry.insert(value);
            }
            Entry::Occupied(mut entry) => {
                let joined: &mut String = entry.get_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
        }
    }
    headers
}
