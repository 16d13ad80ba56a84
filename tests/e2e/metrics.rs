//! `GET /metrics`: requests by route and status with latencies, provider time, replies, tokens and the pool, in
//! Prometheus's text format; on an address of its own with `METRICS_ADDRESS`.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::conversation::say;
use crate::support::llm::setup;

/// The value of the sample `name_and_labels` in an exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_replies_and_tokens_by_route_never_by_raw_path() {
    let (_mock, server, user, chat) = setup(None, &[]).await;
    let (status, _) = say(&server, &user, &chat, "Hello").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/no/such/secret-path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let response = server.client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    assert_eq!(value(r#"http_requests_total{method="POST",route="/chat",status="200"}"#), 1.0);
    assert_eq!(value(r#"http_requests_total{method="GET",route="/chats",status="200"}"#), 1.0);
    assert_eq!(value(r#"http_requests_total{method="GET",route="/chats/{chat_id}/messages",status="200"}"#), 1.0);
    assert_eq!(value(r#"http_requests_total{method="GET",route="(unmatched)",status="404"}"#), 1.0);
    assert!(!text.contains("secret-path"), "a raw path became a label:\n{text}");
    assert_eq!(value(r#"http_request_duration_seconds_count{method="POST",route="/chat"}"#), 1.0);
    assert_eq!(value(r#"http_request_duration_seconds_bucket{method="POST",route="/chat",le="+Inf"}"#), 1.0);
    assert_eq!(value(r#"chat_provider_duration_seconds_count{route="/chat",measure="answer"}"#), 1.0);
    assert_eq!(value(r#"chat_replies_total{status="complete"}"#), 1.0);
    assert!(value(r#"chat_tokens_total{kind="completion"}"#) > 0.0);
    assert!(value(r#"chat_tokens_total{kind="prompt"}"#) > 0.0);
    assert_eq!(value("chat_replies_running"), 0.0);
    assert!(value(r#"db_pool_connections{state="idle"}"#) >= 1.0);
    // The server's memory: the process, and its own heap within it.
    let (rss, allocated, resident) = (
        value("process_resident_memory_bytes"),
        value(r#"process_heap_bytes{state="allocated"}"#),
        value(r#"process_heap_bytes{state="resident"}"#),
    );
    assert!(allocated > 1e5 && allocated <= resident && resident < rss, "{allocated} {resident} {rss}");
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));

    // A stream's provider time is its time to the first token.
    let (status, _, _) = server
        .call(
            reqwest::Method::POST,
            "/chat",
            Some(&user.token),
            Some(json!({"chat_id": chat, "message": "Hi", "stream": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = server.client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        sample(&text, r#"chat_provider_duration_seconds_count{route="/chat",measure="first_token"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn with_a_metrics_address_metrics_are_served_there_and_only_there() {
    let (_mock, server, user, _chat) = setup(None, &[("METRICS_ADDRESS", "127.0.0.1:0")]).await;
    let logs = server.wait_for_log("metrics on http://").await;
    let line = logs.lines().find(|line| line.contains("metrics on http://")).unwrap();
    let after = &line[line.find("http://").unwrap() + "http://".len()..];
    let address: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || ".:".contains(*c)).collect();
    let base = format!("http://{address}");
    let (status, body) = server.get("/metrics", None).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"detail": "Not Found"})));
    let client = reqwest::Client::new();
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"http_requests_total{method="POST",route="/auth/register",status="201"}"#), "{text}");
    // The metrics address serves nothing else.
    let response = client.get(format!("{base}/chats")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
