//! The documentation: Swagger UI served offline at /docs, ReDoc at /redoc, and an /openapi.json that matches the routes.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{TestServer, TestUser, uuid_like};

/// Every operation the contract names, as `(METHOD, path)` in OpenAPI's spelling.
const CONTRACT_OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/health"),
    ("POST", "/auth/register"),
    ("POST", "/auth/login"),
    ("POST", "/auth/token"),
    ("GET", "/auth/me"),
    ("POST", "/chats"),
    ("GET", "/chats"),
    ("GET", "/chats/{chat_id}"),
    ("PATCH", "/chats/{chat_id}"),
    ("DELETE", "/chats/{chat_id}"),
    ("GET", "/chats/{chat_id}/messages"),
];

const HTTP_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// One operation of the OpenAPI document.
struct Operation {
    method: String,
    path: String,
    spec: Value,
}

impl Operation {
    fn is_public(&self) -> bool {
        chat_server::routes::PUBLIC_ROUTES.iter().any(|(method, path)| *method == self.method && *path == self.path)
    }

    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Every operation of `/openapi.json`, with upper-case methods.
fn operations(doc: &Value) -> Vec<Operation> {
    let paths = doc["paths"].as_object().expect("openapi.json has a `paths` object");
    let mut found = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (method, spec) in item {
            if HTTP_METHODS.contains(&method.as_str()) {
                found.push(Operation { method: method.to_ascii_uppercase(), path: path.clone(), spec: spec.clone() });
            }
        }
    }
    assert!(!found.is_empty(), "openapi.json documents no operation: {doc}");
    found
}

async fn openapi(server: &TestServer) -> Value {
    let (status, doc) = server.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "GET /openapi.json: {doc}");
    assert!(doc.is_object(), "GET /openapi.json is not a JSON object");
    doc
}

/// GETs `path`; returns status, content type and the body as text.
async fn fetch_text(server: &TestServer, path: &str) -> (StatusCode, String, String) {
    let response = server.client().get(server.url(path)).send().await.expect("request");
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("body");
    (status, content_type, text)
}

/// The values of every `src="..."` and `href="..."` attribute in `html`.
fn linked_resources(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            links.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    links
}

/// `path` with `{chat_id}` replaced by `chat_id`.
fn concrete(path: &str, chat_id: &str) -> String {
    path.replace("{chat_id}", chat_id)
}

#[tokio::test]
async fn docs_without_trailing_slash_redirects_to_swagger_ui() {
    let server = TestServer::start().await;
    let (status, headers, _) = server.call(Method::GET, "/docs", None, None).await;
    assert!(status.is_redirection(), "GET /docs answered {status}, not a redirect");
    let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok());
    assert_eq!(location, Some("/docs/"), "GET /docs Location header");
}

#[tokio::test]
async fn docs_serves_the_swagger_ui_page() {
    let server = TestServer::start().await;
    let (status, content_type, html) = fetch_text(&server, "/docs/").await;
    assert_eq!(status, StatusCode::OK, "GET /docs/: {html}");
    assert!(content_type.starts_with("text/html"), "GET /docs/ content type {content_type:?}");
    assert!(html.contains("swagger-ui"), "GET /docs/ is not the Swagger UI page:\n{html}");
}

#[tokio::test]
async fn swagger_initializer_loads_the_servers_openapi_document() {
    let server = TestServer::start().await;
    let (status, _, script) = fetch_text(&server, "/docs/swagger-initializer.js").await;
    assert_eq!(status, StatusCode::OK, "GET /docs/swagger-initializer.js: {script}");
    assert!(script.contains("/openapi.json"), "the initializer does not load /openapi.json:\n{script}");
}

#[tokio::test]
async fn swagger_ui_assets_are_served_locally_so_docs_work_offline() {
    let server = TestServer::start().await;
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let (status, _, body) = fetch_text(&server, asset).await;
        assert_eq!(status, StatusCode::OK, "GET {asset}");
        assert!(body.len() > 10_000, "GET {asset} is only {} bytes", body.len());
    }

    // Whatever the page itself loads must come from this server, not from a CDN.
    let (status, _, html) = fetch_text(&server, "/docs/").await;
    assert_eq!(status, StatusCode::OK, "GET /docs/");
    let links = linked_resources(&html);
    assert!(!links.is_empty(), "the Swagger UI page links no script or stylesheet:\n{html}");
    for link in links {
        assert!(!link.contains("://") && !link.starts_with("//"), "GET /docs/ loads {link} from elsewhere:\n{html}");
        let path = match link.strip_prefix("./") {
            Some(relative) => format!("/docs/{relative}"),
            None if link.starts_with('/') => link.clone(),
            None => format!("/docs/{link}"),
        };
        let (status, _, _) = fetch_text(&server, &path).await;
        assert_eq!(status, StatusCode::OK, "the Swagger UI page links {link}, but GET {path} answered {status}");
    }
}

#[tokio::test]
async fn unknown_file_under_docs_is_404_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/docs/no-such-file.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "GET /docs/no-such-file.js: {body}");
    assert_eq!(body, json!({"detail": "Not Found"}), "an unknown path gets the contract's 404 body");

    let (status, _, _) = fetch_text(&server, "/docs/").await;
    assert_eq!(status, StatusCode::OK, "GET /docs/ after a 404 under /docs/");
    let (status, body) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "GET /health after a 404 under /docs/: {body}");
}

#[tokio::test]
async fn redoc_serves_its_page() {
    let server = TestServer::start().await;
    let (status, content_type, html) = fetch_text(&server, "/redoc").await;
    assert_eq!(status, StatusCode::OK, "GET /redoc: {html}");
    assert!(content_type.starts_with("text/html"), "GET /redoc content type {content_type:?}");
    assert!(html.to_ascii_lowercase().contains("redoc"), "GET /redoc is not a ReDoc page:\n{html}");
}

#[tokio::test]
async fn openapi_is_version_3_1_and_carries_the_crate_version() {
    let server = TestServer::start().await;
    let doc = openapi(&server).await;
    let openapi_version = doc["openapi"].as_str().unwrap_or_default();
    assert!(openapi_version.starts_with("3.1"), "openapi is {:?}, not 3.1", doc["openapi"]);

    let (status, root) = server.get("/", None).await;
    assert_eq!(status, StatusCode::OK, "GET /: {root}");
    let version = root["version"].as_str().expect("GET / has a version");
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "GET / version");
    assert_eq!(doc["info"]["version"].as_str(), Some(version), "info.version of /openapi.json");
}

#[tokio::test]
async fn openapi_documents_every_operation_of_the_contract() {
    let server = TestServer::start().await;
    let doc = openapi(&server).await;
    let documented: Vec<String> = operations(&doc).iter().map(Operation::label).collect();
    let missing: Vec<String> = CONTRACT_OPERATIONS
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .filter(|label| !documented.contains(label))
        .collect();
    assert!(missing.is_empty(), "not documented in /openapi.json: {missing:?} (documented: {documented:?})");
}

#[tokio::test]
async fn openapi_declares_oauth2_password_flow_and_bearer_schemes() {
    let server = TestServer::start().await;
    let doc = openapi(&server).await;
    let schemes = doc["components"]["securitySchemes"].as_object().expect("components.securitySchemes");

    let oauth2 = schemes.values().find(|scheme| scheme["type"] == "oauth2");
    let oauth2 = oauth2.unwrap_or_else(|| panic!("no oauth2 security scheme in {schemes:?}"));
    assert_eq!(
        oauth2["flows"]["password"]["tokenUrl"].as_str(),
        Some("/auth/token"),
        "the oauth2 scheme's password flow: {oauth2}"
    );

    let bearer = schemes.values().find(|scheme| {
        scheme["type"] == "http" && scheme["scheme"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
    });
    assert!(bearer.is_some(), "no http bearer security scheme in {schemes:?}");
}

#[tokio::test]
async fn every_protected_operation_declares_security() {
    let server = TestServer::start().await;
    let doc = openapi(&server).await;
    let scheme_names: Vec<String> =
        doc["components"]["securitySchemes"].as_object().map(|s| s.keys().cloned().collect()).unwrap_or_default();
    let protected: Vec<Operation> = operations(&doc).into_iter().filter(|op| !op.is_public()).collect();
    assert!(!protected.is_empty(), "/openapi.json documents no protected operation");
    for op in protected {
        let requirements = op.spec["security"].as_array();
        let requirements = requirements.unwrap_or_else(|| panic!("{} declares no `security`", op.label()));
        assert!(!requirements.is_empty(), "{} declares an empty `security`", op.label());
        for requirement in requirements {
            let names = requirement.as_object().expect("a security requirement is an object");
            assert!(!names.is_empty(), "{} lists an empty security requirement (= anonymous access)", op.label());
            for name in names.keys() {
                assert!(scheme_names.contains(name), "{} names unknown security scheme {name}", op.label());
            }
        }
    }
}

#[tokio::test]
async fn every_protected_operation_answers_401_without_a_token() {
    let server = TestServer::start().await;
    let doc = openapi(&server).await;
    let chat_id = uuid::Uuid::new_v4().to_string();
    let protected: Vec<Operation> = operations(&doc).into_iter().filter(|op| !op.is_public()).collect();
    assert!(!protected.is_empty(), "/openapi.json documents no protected operation");
    for op in protected {
        let method = Method::from_bytes(op.method.as_bytes()).expect("method");
        let body = op.spec.get("requestBody").map(|_| json!({"title": "no token"}));
        let (status, headers, body) = server.call(method, &concrete(&op.path, &chat_id), None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} without a token: {body}", op.label());
        let challenge = headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
        assert_eq!(challenge, Some("Bearer"), "{} 401 WWW-Authenticate header", op.label());
        assert_eq!(body["detail"], "Not authenticated", "{} 401 body", op.label());
    }
}

/// A request body for `op` that a client using the API correctly would send.
fn smoke_body(op: &Operation, user: &TestUser) -> Option<Value> {
    op.spec.get("requestBody")?;
    Some(match op.path.as_str() {
        "/auth/register" => json!({"email": format!("smoke-{}@example.com", uuid_like()), "password": "password123"}),
        "/auth/login" => json!({"email": user.email, "password": user.password}),
        _ => json!({"title": "smoke test"}),
    })
}

#[tokio::test]
async fn every_documented_operation_answers_without_a_server_error_given_a_token() {
    let server = TestServer::start().await;
    let doc = openapi(&server).await;
    let user = server.signup().await;
    let mut operations = operations(&doc);
    // Logging out revokes the token the others use: it goes last.
    operations.sort_by_key(|op| op.path == "/auth/logout");
    for op in operations {
        // A chat of the user's own for each operation, so the happy path runs (and DELETE has one to delete).
        let chat = server.create_chat(&user, Some("smoke")).await;
        let path = concrete(&op.path, chat["id"].as_str().expect("chat id"));
        let mut request = server
            .client()
            .request(Method::from_bytes(op.method.as_bytes()).expect("method"), server.url(&path))
            .bearer_auth(&user.token);
        let form = op.spec["requestBody"]["content"].get("application/x-www-form-urlencoded").is_some();
        if form {
            request = request.form(&[("username", user.email.as_str()), ("password", user.password.as_str())]);
        } else if let Some(body) = smoke_body(&op, &user) {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(!status.is_server_error(), "{} with a token answered {status}: {text}", op.label());
        let documented = op.spec["responses"]
            .as_object()
            .is_some_and(|responses| responses.contains_key(status.as_str()) || responses.contains_key("default"));
        assert!(documented, "{} answered {status}, which its documented responses do not list: {text}", op.label());
    }
}

#[tokio::test]
async fn every_documented_path_answers_other_methods_405_with_an_allow_header_of_its_documented_methods() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let doc = openapi(&server).await;
    let chat_id = uuid::Uuid::new_v4().to_string();
    let paths = doc["paths"].as_object().expect("openapi.json has a `paths` object");
    for (path, item) in paths {
        let mut documented: Vec<String> = item
            .as_object()
            .expect("a path item is an object")
            .keys()
            .filter(|method| HTTP_METHODS.contains(&method.as_str()))
            .map(|method| method.to_ascii_uppercase())
            .collect();
        documented.sort();
        let other = ["PUT", "PATCH", "DELETE", "POST"].into_iter().find(|m| !documented.iter().any(|d| d == m));
        let other = other.unwrap_or_else(|| panic!("{path} documents every method"));
        let concrete_path = concrete(path, &chat_id).replace("{message_id}", "1");
        let method = Method::from_bytes(other.as_bytes()).expect("method");
        let (status, headers, body) = server.call(method, &concrete_path, Some(&user.token), None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}: {body}");
        assert_eq!(body, json!({"detail": "Method Not Allowed"}), "{other} {path}");
        let allow = headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mut allowed: Vec<String> =
            allow.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
        allowed.sort();
        assert_eq!(allowed, documented, "{other} {path}: `Allow: {allow}` against the documented methods");
    }
}

#[tokio::test]
async fn openapi_names_this_servers_model_aliases_and_message_limit() {
    let server = TestServer::start_with(&[("MAX_MESSAGE_CHARS", "1234")]).await;
    let user = server.signup().await;
    let doc = openapi(&server).await;
    let (status, models) = server.get("/models", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "GET /models: {models}");
    let mut aliases: Vec<Value> =
        models.as_array().expect("a list of models").iter().map(|model| model["alias"].clone()).collect();
    aliases.push(Value::Null);
    let schemas = &doc["components"]["schemas"];
    for schema in ["ChatRequest", "RegenerateRequest"] {
        assert_eq!(schemas[schema]["properties"]["model"]["enum"], Value::Array(aliases.clone()), "{schema}.model");
    }
    assert_eq!(schemas["ChatRequest"]["properties"]["message"]["maxLength"], 1234, "ChatRequest.message");
}

#[tokio::test]
async fn swagger_authorize_flow_gets_a_token_that_works() {
    let server = TestServer::start().await;
    let email = format!("swagger-{}@example.com", uuid_like());
    let user = server.signup_as(&email, "password123").await;

    // What Swagger UI's Authorize dialog sends, with the email typed in another case.
    let typed = email.to_ascii_uppercase();
    let form = [
        ("grant_type", "password"),
        ("username", typed.as_str()),
        ("password", "password123"),
        ("scope", ""),
        ("client_id", ""),
        ("client_secret", ""),
    ];
    for basic in [false, true] {
        let mut request = server
            .client()
            .post(server.url("/auth/token"))
            .header(header::ACCEPT, "application/json")
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&form);
        if basic {
            request = request.header(header::AUTHORIZATION, "Basic Og==");
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "POST /auth/token (Basic header: {basic}): {body}");
        assert_eq!(body["token_type"], "bearer", "POST /auth/token token_type: {body}");
        let token = body["access_token"].as_str().expect("access_token");

        let (status, me) = server.get("/auth/me", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "GET /auth/me with the Authorize token: {me}");
        assert_eq!(me["id"].as_str(), Some(user.id.as_str()), "GET /auth/me: {me}");
        assert_eq!(me["email"].as_str(), Some(email.as_str()), "GET /auth/me: {me}");
    }
}
