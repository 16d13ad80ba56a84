//! `POST /chat` when the provider fails: rate limits, retries and fallbacks, errors, timeouts, missing providers.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use mock_llm::RecordedRequest;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::json;

use crate::chat::{WAIT, ask, assert_logs_clean};
use crate::support::conversation::{messages, say, stored_at_least, turns};
use crate::support::llm::{GROQ_KEY, TOTAL_TIMEOUT, fast_alias, setup, start};
use crate::support::{TestServer, TestUser};

fn sent_models(requests: &[RecordedRequest]) -> Vec<&str> {
    requests.iter().map(|r| r.body["model"].as_str().expect("model sent")).collect()
}

/// Sends `text` with `model`, expects `status` from a failing provider, and checks the promises every failure keeps:
/// a sentence naming the alias, never the key, and the user's message still stored with no finished reply.
async fn expect_failure(
    server: &TestServer,
    user: &TestUser,
    chat: &str,
    (text, model): (&str, &str),
    status: StatusCode,
) -> (HeaderMap, String) {
    let (got, headers, body) = ask(server, user, json!({"chat_id": chat, "message": text, "model": model})).await;
    assert_eq!(got, status, "{body}");
    let detail = body["detail"].as_str().unwrap_or_else(|| panic!("detail is not a sentence: {body}")).to_owned();
    assert!(detail.contains(&format!("'{model}'")), "detail does not name the alias {model}: {detail}");
    assert!(!detail.contains(GROQ_KEY), "detail leaks the key: {detail}");
    let stored = messages(server, user, chat).await;
    let last_user = stored.iter().rev().find(|m| m["role"] == "user").unwrap_or_else(|| panic!("lost: {stored:?}"));
    assert_eq!(last_user["content"], json!(text), "the user's message was lost: {stored:?}");
    assert!(!stored.iter().any(|m| m["role"] == "assistant" && m["status"] == "complete"), "{stored:?}");
    (headers, detail)
}

#[tokio::test]
async fn an_upstream_rate_limit_is_429_with_its_retry_after() {
    let (mock, server, user, chat) = setup(Some(&fast_alias(&["primary-model"], 8192, 256)), &[]).await;
    mock.script([json!({"kind": "status", "status": 429, "retry_after": "7"})]).await.unwrap();
    let (headers, detail) =
        expect_failure(&server, &user, &chat, ("rate me", "fast"), StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(headers.get(RETRY_AFTER).map(|v| v.to_str().unwrap()), Some("7"));
    assert!(detail.contains("groq"), "the detail does not name the provider: {detail}");
    assert_eq!(mock.requests().await.len(), 1, "a 7 s Retry-After over the 2 s cap must not be waited for");
    assert_logs_clean(&server, &headers, &[GROQ_KEY, "rate me"]).await;
}

#[tokio::test]
async fn a_short_rate_limit_is_waited_out_and_retried() {
    let config = fast_alias(&["primary-model", "fallback-model"], 8192, 256);
    let (mock, server, user, chat) = setup(Some(&config), &[]).await;
    mock.script([json!({"kind": "status", "status": 429, "retry_after": "1"})]).await.unwrap();
    let started = Instant::now();
    let (status, body) = say(&server, &user, &chat, "patience").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reply"], "Mock reply to: patience");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not honoured");
    assert_eq!(sent_models(&mock.requests().await), ["primary-model", "primary-model"], "a retry, not a fallback");
}

#[tokio::test]
async fn server_errors_are_retried_then_the_next_target_answers() {
    let config = fast_alias(&["primary-model", "fallback-model"], 8192, 256);
    let (mock, server, user, chat) = setup(Some(&config), &[]).await;
    mock.script([json!({"kind": "status", "status": 500}), json!({"kind": "status", "status": 500})]).await.unwrap();
    let (status, body) = say(&server, &user, &chat, "anyone there?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reply"], "Mock reply to: anyone there?");
    assert_eq!(sent_models(&mock.requests().await), ["primary-model", "primary-model", "fallback-model"]);
    assert_eq!(turns(&messages(&server, &user, &chat).await).len(), 2);
}

#[tokio::test]
async fn server_errors_on_every_attempt_are_502_without_the_providers_text() {
    let config = fast_alias(&["primary-model", "fallback-model"], 8192, 256);
    let (mock, server, user, chat) = setup(Some(&config), &[]).await;
    let failure = json!({"kind": "status", "status": 500, "message": "mock-internal-meltdown"});
    mock.script([failure.clone(), failure.clone(), failure.clone(), failure]).await.unwrap();
    let (headers, detail) = expect_failure(&server, &user, &chat, ("doomed", "fast"), StatusCode::BAD_GATEWAY).await;
    assert!(!detail.contains("mock-internal-meltdown"), "the provider's own text reached the client: {detail}");
    assert_eq!(mock.requests().await.len(), 4, "two attempts on each of the two targets");
    server.wait_for_log("mock-internal-meltdown").await;
    assert_logs_clean(&server, &headers, &[GROQ_KEY, "doomed"]).await;
}

#[tokio::test]
async fn malformed_and_empty_answers_are_502() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([json!({"kind": "malformed"}), json!({"kind": "null_content"})]).await.unwrap();
    let (_, detail) = expect_failure(&server, &user, &chat, ("garbled", "fast"), StatusCode::BAD_GATEWAY).await;
    assert!(detail.contains("groq"), "{detail}");
    expect_failure(&server, &user, &chat, ("silent", "fast"), StatusCode::BAD_GATEWAY).await;
    assert_eq!(mock.requests().await.len(), 2);
}

#[tokio::test]
async fn a_hanging_provider_is_504_within_the_timeout_and_the_message_was_stored_before_the_call() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([json!({"kind": "hang"}), json!({"kind": "hang"}), json!({"kind": "hang"})]).await.unwrap();
    let started = Instant::now();
    let (failed, stored_meanwhile) = tokio::join!(
        expect_failure(&server, &user, &chat, ("are you awake?", "fast"), StatusCode::GATEWAY_TIMEOUT),
        async {
            mock.wait_for_requests(WAIT, |r| !r.is_empty()).await.expect("the provider was called");
            stored_at_least(&server, &user, &chat, 2, WAIT).await
        }
    );
    let elapsed = started.elapsed();
    assert!(elapsed < TOTAL_TIMEOUT * 3, "504 took {elapsed:?}");
    assert!(failed.1.contains("groq"), "{}", failed.1);
    // While the provider was called, the reply's placeholder stood beside the stored message.
    let expected = [("user".to_owned(), "are you awake?".to_owned()), ("assistant".to_owned(), String::new())];
    assert_eq!(turns(&stored_meanwhile), expected);
    assert_eq!(stored_meanwhile[1]["status"], "generating");
    // The reply never began, so its placeholder is gone and the message stays alone.
    assert_eq!(turns(&messages(&server, &user, &chat).await), expected[..1]);
}

#[tokio::test]
async fn an_unreachable_provider_is_503() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = start(Some(&format!("http://127.0.0.1:{port}")), None, &[]).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let (headers, _) = expect_failure(&server, &user, &chat, ("hello?", "fast"), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_logs_clean(&server, &headers, &[GROQ_KEY, "hello?"]).await;
}

#[tokio::test]
async fn in_production_an_alias_whose_provider_has_no_key_is_unavailable_and_503() {
    let config = r#"[aliases.smart]
targets = [{ provider = "openai", model = "gpt-4o-mini", context_window = 128000, max_output_tokens = 1024 }]
"#;
    let (mock, server, user, chat) = setup(Some(config), &[("APP_ENV", "production"), ("BCRYPT_COST", "10")]).await;
    let (status, models) = server.get("/models", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{models}");
    let by_alias = |alias: &str| models.as_array().unwrap().iter().find(|m| m["alias"] == alias).unwrap().clone();
    assert_eq!(by_alias("smart")["available"], false, "{models}");
    assert_eq!(by_alias("smart")["provider"], "openai", "{models}");
    assert_eq!((&by_alias("fast")["available"], &by_alias("fast")["provider"]), (&json!(true), &json!("groq")));
    expect_failure(&server, &user, &chat, ("smart question", "smart"), StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(mock.requests().await.is_empty());
    let (status, body) = say(&server, &user, &chat, "fast question").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_provider_that_resets_the_connection_is_retried_then_502_not_unreachable() {
    let (mock, server, user, chat) = setup(Some(&fast_alias(&["primary-model"], 8192, 256)), &[]).await;
    // A reset after connecting: the provider was reached, so it is an upstream failure, and retried.
    mock.script([json!({"kind": "reset"}), json!({"kind": "reset"})]).await.unwrap();
    expect_failure(&server, &user, &chat, ("still there?", "fast"), StatusCode::BAD_GATEWAY).await;
    assert_eq!(sent_models(&mock.requests().await), ["primary-model", "primary-model"]);
    // One reset then an answer: the retry succeeds.
    mock.reset().await;
    mock.script([json!({"kind": "reset"})]).await.unwrap();
    let (status, body) = say(&server, &user, &chat, "and now?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
