//! The OpenAPI 3.1 document: generated from the handlers' annotations, completed with what holds for every
//! operation (headers, links between operations) and with this server's settings (model aliases, message length).

use serde_json::{Map, Value, json};
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
            under *HTTPBearer*.\n\n\
            Every response carries `X-Request-Id`; every 401 carries `WWW-Authenticate: Bearer`; every 429 \
            carries `Retry-After`. No string in a request body may contain a NUL character (`\\u0000`): 422.",
        license(name = "MIT"),
    ),
    paths(
        meta::root, meta::health, crate::metrics::metrics,
        auth::register, auth::login, auth::token, auth::me, auth::logout, auth::refresh,
        chats::create_chat, chats::list_chats, chats::get_chat, chats::list_messages,
        chats::update_chat, chats::delete_chat,
        chat::send_message, replies::regenerate, replies::cancel, replies::events, chat::list_models, chat::usage,
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

/// What a served document says that depends on the server's configuration.
#[derive(Debug)]
pub struct Served<'a> {
    /// The model aliases that exist, in order.
    pub aliases: &'a [String],
    /// The alias of a request that names none.
    pub default_model: &'a str,
    /// The longest message `POST /chat` accepts, in characters.
    pub max_message_chars: usize,
}

/// The document `GET /openapi.json` serves: the annotations' document, every response with its description and the
/// headers the middleware and the error mapping always add, the links that let a client (or a fuzzer) follow a chat
/// from its creation, and the limits of this server's configuration.
pub fn document(served: &Served<'_>) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|err| {
        // Cannot happen (the document is plain data); an empty but valid document beats a panic.
        tracing::error!(error = %err, "the OpenAPI document could not be serialised");
        json!({"openapi": "3.1.0", "info": {"title": "AI Chat Backend", "version": env!("CARGO_PKG_VERSION")}, "paths": {}})
    });
    for (operation_id, responses) in operations(&mut doc) {
        for (status, response) in responses.iter_mut() {
            complete_response(operation_id.as_str(), status, response);
            if let Some(stream) = response.pointer_mut("/content/text~1event-stream") {
                stream["schema"] = json!({"$ref": "#/components/schemas/ServerSentEvent"});
            }
        }
        for (status, name, link) in links_from(operation_id.as_str()) {
            if let Some(response) = responses.get_mut(status) {
                response["links"][name] = link;
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    schemas["ServerSentEvent"] = server_sent_event();
    let mut aliases: Vec<Value> = served.aliases.iter().map(|alias| json!(alias)).collect();
    // `null` stands for "the default", as leaving the field out does.
    aliases.push(Value::Null);
    for schema in ["ChatRequest", "RegenerateRequest"] {
        schemas[schema]["properties"]["model"]["enum"] = Value::Array(aliases.clone());
    }
    schemas["ChatRequest"]["properties"]["model"]["default"] = json!(served.default_model);
    schemas["ChatRequest"]["properties"]["message"]["maxLength"] = json!(served.max_message_chars);
    schemas["ChatRequest"]["properties"]["message"]["description"] =
        json!(format!("At least 1 character, at most {} (this server's MAX_MESSAGE_CHARS).", served.max_message_chars));
    doc
}

/// Each operation's id and its responses.
fn operations(doc: &mut Value) -> Vec<(String, &mut Map<String, Value>)> {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return Vec::new() };
    paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| {
            let id = operation.get("operationId").and_then(Value::as_str).unwrap_or_default().to_owned();
            Some((id, operation.get_mut("responses")?.as_object_mut()?))
        })
        .collect()
}

/// Gives a response the description OpenAPI requires (the status's name when the annotation has none), and the
/// headers it always carries.
fn complete_response(operation_id: &str, status: &str, response: &mut Value) {
    let Some(response) = response.as_object_mut() else { return };
    if response.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
        let reason = status.parse::<u16>().ok().and_then(|code| actix_web::http::StatusCode::from_u16(code).ok());
        let reason = reason.and_then(|code| code.canonical_reason()).unwrap_or("Response");
        response.insert("description".to_owned(), json!(reason));
    }
    let headers = response.entry("headers").or_insert_with(|| json!({}));
    // Added by the request middleware to every response: the client's own id when sane, else a new UUID.
    headers["X-Request-Id"] =
        header("The request's id, as in the server's log", json!({"type": "string", "minLength": 1, "maxLength": 128}));
    match status {
        "401" => {
            headers["WWW-Authenticate"] = header("How to authenticate", json!({"type": "string", "enum": ["Bearer"]}))
        }
        "429" => {
            headers["Retry-After"] =
                header("Seconds to wait before retrying", json!({"type": "integer", "minimum": 1}));
        }
        // A reply's answer says how long the model took, and the server in all.
        "200" if matches!(operation_id, "send_message" | "regenerate") => {
            headers["Server-Timing"] =
                header("`upstream;dur=…, total;dur=…` in milliseconds", json!({"type": "string", "minLength": 1}));
        }
        _ => {}
    }
}

/// One event of a reply's stream. As before OpenAPI 3.2's `itemSchema`, the schema of a `text/event-stream` describes
/// each event: its `id`, its name and its one line of JSON `data`, whose shape the name decides.
fn server_sent_event() -> Value {
    let named = |name: &str, data: &str| {
        json!({"properties": {
            "event": {"const": name},
            "data": {"contentMediaType": "application/json", "contentSchema": {"$ref": format!("#/components/schemas/{data}")}},
        }})
    };
    json!({
        "type": "object",
        "description": "One Server-Sent Event: `start` first, `delta` for each piece of the reply, then `done` or `error` \
            last. Comment lines (`: keep-alive`) come between events while the model is silent.",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "1, 2, 3, ... within the message"},
            "event": {"type": "string", "enum": ["start", "delta", "done", "error"]},
            "data": {"type": "string"},
        },
        "oneOf": [
            named("start", "StartEvent"),
            named("delta", "DeltaEvent"),
            named("done", "DoneEvent"),
            named("error", "ErrorEvent"),
        ],
    })
}

fn header(description: &str, schema: Value) -> Value {
    json!({"description": description, "required": true, "schema": schema})
}

/// The links from the responses of `operation_id`: `(status, name, link)`.
fn links_from(operation_id: &str) -> Vec<(&'static str, &'static str, Value)> {
    let path_link = |target: &str, chat_id: &str| json!({"operationId": target, "parameters": {"chat_id": chat_id}});
    match operation_id {
        "create_chat" => {
            let id = "$response.body#/id";
            vec![
                ("201", "GetChat", path_link("get_chat", id)),
                ("201", "RenameChat", path_link("update_chat", id)),
                ("201", "DeleteChat", path_link("delete_chat", id)),
                ("201", "ListMessages", path_link("list_messages", id)),
                ("201", "SendMessage", json!({"operationId": "send_message", "requestBody": {"chat_id": id}})),
                ("201", "Regenerate", path_link("regenerate", id)),
                ("201", "Cancel", path_link("cancel", id)),
            ]
        }
        "send_message" | "regenerate" => {
            let chat_id = "$response.body#/chat_id";
            vec![
                (
                    "200",
                    "FollowReply",
                    json!({"operationId": "events",
                        "parameters": {"chat_id": chat_id, "message_id": "$response.body#/message_id"}}),
                ),
                ("200", "ListMessages", path_link("list_messages", chat_id)),
                ("200", "Regenerate", path_link("regenerate", chat_id)),
                ("200", "Cancel", path_link("cancel", chat_id)),
            ]
        }
        "login" | "token" | "refresh" => vec![(
            "200",
            "Refresh",
            json!({"operationId": "refresh", "requestBody": {"refresh_token": "$response.body#/refresh_token"}}),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_response_has_a_description_and_links_name_existing_operations() {
        let aliases = ["fast".to_owned(), "smart".to_owned()];
        let doc = document(&Served { aliases: &aliases, default_model: "fast", max_message_chars: 100 });
        let mut ids = Vec::new();
        let mut targets = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                ids.push(operation["operationId"].as_str().unwrap().to_owned());
                for (status, response) in operation["responses"].as_object().unwrap() {
                    assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{status}: {response}");
                    assert_eq!(response["headers"]["X-Request-Id"]["required"], true, "{status}: {response}");
                    if let Some(links) = response.get("links").and_then(Value::as_object) {
                        targets.extend(links.values().map(|link| link["operationId"].as_str().unwrap().to_owned()));
                    }
                }
            }
        }
        assert!(!targets.is_empty());
        for target in targets {
            assert!(ids.contains(&target), "a link names {target}, which is no operation");
        }
        let model = &doc["components"]["schemas"]["ChatRequest"]["properties"]["model"];
        assert_eq!(model["enum"], json!(["fast", "smart", null]));
        assert_eq!(doc["components"]["schemas"]["ChatRequest"]["properties"]["message"]["maxLength"], 100);
    }
}
