//! `X-Request-Id` and the request log over real HTTP: ids generated or echoed, one log line per request.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::errors::{REQUEST_ID, completion_line, is_sane_request_id, json_text, register_body_of, request, send};
use crate::support::TestServer;

// ----- X-Request-Id and the request log -----

#[tokio::test]
async fn every_response_carries_an_x_request_id() {
    let server = TestServer::start_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await;
    let chat_path = format!("/chats/{}", chat["id"].as_str().expect("id"));
    let cases = [
        (StatusCode::OK, request(&server, Method::GET, "/health")),
        (StatusCode::CREATED, request(&server, Method::POST, "/chats").bearer_auth(&user.token)),
        (StatusCode::NO_CONTENT, request(&server, Method::DELETE, &chat_path).bearer_auth(&user.token)),
        (StatusCode::UNAUTHORIZED, request(&server, Method::GET, "/chats")),
        (StatusCode::NOT_FOUND, request(&server, Method::GET, "/no/such/path")),
        (StatusCode::METHOD_NOT_ALLOWED, request(&server, Method::PUT, "/chats")),
        (StatusCode::PAYLOAD_TOO_LARGE, json_text(&server, Method::POST, "/auth/register", &register_body_of(4096))),
        (StatusCode::UNPROCESSABLE_ENTITY, json_text(&server, Method::POST, "/auth/register", "{")),
    ];
    let mut seen = std::collections::HashSet::new();
    for (expected, builder) in cases {
        let answer = send(builder).await;
        assert_eq!(answer.status, expected, "{}", answer.text);
        let id = answer.request_id();
        assert!(is_sane_request_id(&id), "{expected}: generated id {id:?}");
        assert!(seen.insert(id.clone()), "{expected}: each request gets its own id, {id} repeats");
        let line = completion_line(&server, &id).await;
        assert!(line.contains(&format!("status={}", expected.as_u16())), "{expected}: {line}");
    }
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed_and_logged() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let cases = [
        ("abc-123", request(&server, Method::GET, "/health")),
        ("req_42.retry:1", request(&server, Method::GET, "/chats").bearer_auth(&user.token)),
        ("0b7f2c1e-6a3d-4f5e-9a8b-1c2d3e4f5a6b", request(&server, Method::GET, "/chats")),
        ("bad-json-7", json_text(&server, Method::POST, "/auth/login", "[")),
        ("nowhere-9", request(&server, Method::GET, "/nowhere")),
    ];
    for (id, builder) in cases {
        let answer = send(builder.header(REQUEST_ID, id)).await;
        assert_eq!(answer.request_id(), id, "echoed verbatim on a {}", answer.status);
        let line = completion_line(&server, id).await;
        assert!(line.contains(&format!("status={}", answer.status.as_u16())), "{line}");
    }
}

#[tokio::test]
async fn an_insane_client_request_id_is_replaced_by_a_generated_one_which_is_logged() {
    let server = TestServer::start().await;
    let insane = [
        "a b".to_owned(),
        "a".repeat(300),
        "x status=200 route=\"/admin\"".to_owned(),
        "quote\"d".to_owned(),
        "semi;colon".to_owned(),
        "slash/id".to_owned(),
    ];
    for sent in insane {
        let answer = send(request(&server, Method::GET, "/health").header(REQUEST_ID, sent.as_str())).await;
        assert_eq!(answer.status, StatusCode::OK);
        let id = answer.request_id();
        assert_ne!(id, sent, "an insane id is not echoed");
        assert!(is_sane_request_id(&id), "the replacement is sane: {id:?}");
        let line = completion_line(&server, &id).await;
        assert!(line.contains("status=200"), "{line}");
        if sent.len() > 8 {
            assert!(!server.logs().contains(&sent), "the insane id never reaches the log: {sent:?}");
        }
    }
}

#[tokio::test]
async fn each_request_logs_one_line_with_method_route_status_and_latency() {
    let server = TestServer::start().await;
    let user = server.signup().await;

    let answer = send(
        request(&server, Method::POST, "/chats")
            .bearer_auth(&user.token)
            .header(REQUEST_ID, "log-create-1")
            .json(&json!({"title": "logged"})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let line = completion_line(&server, "log-create-1").await;
    for needle in ["method=POST", "route=\"/chats\"", "status=201", "latency_ms="] {
        assert!(line.contains(needle), "{needle} missing from {line}");
    }
    let latency = line.split("latency_ms=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("latency");
    assert!(latency.parse::<f64>().is_ok_and(|ms| ms >= 0.0), "latency is a number of ms: {latency}");

    let chat_id = answer.json["id"].as_str().expect("id").to_owned();
    let answer = send(
        request(&server, Method::GET, &format!("/chats/{chat_id}"))
            .bearer_auth(&user.token)
            .header(REQUEST_ID, "log-get-2"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let line = completion_line(&server, "log-get-2").await;
    for needle in ["method=GET", "route=\"/chats/{chat_id}\"", "status=200", "latency_ms="] {
        assert!(line.contains(needle), "{needle} missing from {line}");
    }

    let answer = send(request(&server, Method::GET, "/chats").header(REQUEST_ID, "log-401-3")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let line = completion_line(&server, "log-401-3").await;
    for needle in ["method=GET", "route=\"/chats\"", "status=401", "latency_ms="] {
        assert!(line.contains(needle), "{needle} missing from {line}");
    }
    let lines = server.logs().lines().filter(|l| l.contains("log-create-1") && l.contains("request completed")).count();
    assert_eq!(lines, 1, "one line per request");
}
