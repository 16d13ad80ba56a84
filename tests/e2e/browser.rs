//! Browser safety: security headers on every response; CORS off by default and, when configured, for the listed
//! origins only, never with credentials.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::TestServer;

const APP: &str = "https://app.example.com";

async fn request(server: &TestServer, method: Method, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap) {
    let mut request = server.client().request(method, server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.headers().clone())
}

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization, content-type"),
    ]
}

fn assert_secured(headers: &HeaderMap, what: &str) {
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
}

fn assert_no_cors(headers: &HeaderMap, what: &str) {
    for name in ["access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods"] {
        assert!(headers.get(name).is_none(), "{what}: {name} {:?}", headers.get(name));
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await;
    let messages = format!("/chats/{}/messages", chat["id"].as_str().unwrap());
    let bearer = format!("Bearer {}", user.token);
    let auth = [("Authorization", bearer.as_str())];
    for (method, path, headers) in [
        (Method::GET, "/", &[][..]),
        (Method::GET, "/health", &[][..]),
        (Method::GET, "/chats", &auth[..]),
        (Method::GET, messages.as_str(), &auth[..]),
        (Method::GET, "/chats", &[][..]),
        (Method::GET, "/no/such/route", &[][..]),
        (Method::PUT, "/chats", &auth[..]),
    ] {
        let (status, headers) = request(&server, method.clone(), path, headers).await;
        let what = format!("{method} {path} ({status})");
        assert_secured(&headers, &what);
        assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'", "{what}");
        assert_eq!(headers["cache-control"], "no-store", "{what}");
    }
    // An event stream keeps its own cache rule.
    let (status, headers, _) = server
        .call(
            Method::POST,
            "/chat",
            Some(&user.token),
            Some(json!({"chat_id": chat["id"], "message": "Hi", "stream": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_secured(&headers, "POST /chat (stream)");
    assert_eq!(headers["cache-control"], "no-cache");
    // The documentation pages run scripts: they are only kept out of frames.
    for path in ["/docs/", "/redoc"] {
        let (status, headers) = request(&server, Method::GET, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_secured(&headers, path);
        assert_eq!(headers["content-security-policy"], "frame-ancestors 'none'", "{path}");
    }
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let server = TestServer::start().await;
    let (status, headers) = request(&server, Method::OPTIONS, "/chat", &preflight(APP)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_no_cors(&headers, "preflight");
    let (status, headers) = request(&server, Method::GET, "/", &[("Origin", APP)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_no_cors(&headers, "GET /");
}

#[tokio::test]
async fn listed_origins_may_read_answers_and_others_may_not() {
    let server =
        TestServer::start_with(&[("CORS_ALLOWED_ORIGINS", "https://App.Example.com, http://localhost:5173")]).await;
    let user = server.signup().await;

    let (status, headers) = request(&server, Method::OPTIONS, "/chat", &preflight(APP)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["access-control-allow-origin"], APP);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST") && methods.contains("DELETE") && methods.contains("PATCH"), "{methods}");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert!(headers.contains_key("access-control-max-age"));
    assert_secured(&headers, "preflight");

    let bearer = format!("Bearer {}", user.token);
    let (status, headers) =
        request(&server, Method::GET, "/chats", &[("Origin", "http://localhost:5173"), ("Authorization", &bearer)])
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], "http://localhost:5173");
    assert!(headers["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));
    assert!(headers.get_all("vary").iter().any(|v| v.to_str().unwrap().contains("origin")));
    assert!(headers.get("access-control-allow-credentials").is_none());
    // An error is readable too, so the page can show its detail.
    let (status, headers) = request(&server, Method::GET, "/chats", &[("Origin", APP)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["access-control-allow-origin"], APP);

    for stranger in ["https://evil.example.com", "https://app.example.com.evil.com", "http://app.example.com", "null"] {
        let (status, headers) = request(&server, Method::OPTIONS, "/chat", &preflight(stranger)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{stranger}");
        assert_no_cors(&headers, stranger);
        let (_, headers) =
            request(&server, Method::GET, "/chats", &[("Origin", stranger), ("Authorization", &bearer)]).await;
        assert_no_cors(&headers, stranger);
    }
}

#[tokio::test]
async fn a_malformed_origin_list_stops_the_server_with_the_setting_named() {
    let (status, output) = TestServer::run_to_exit(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com/path")], &[]);
    assert!(!status.success());
    assert!(output.contains("CORS_ALLOWED_ORIGINS"), "{output}");
    assert!(output.contains("is not an origin"), "{output}");
}
