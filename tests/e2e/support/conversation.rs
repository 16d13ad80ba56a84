//! Helpers for talking to a test server's chats — sending, cancelling, reading messages, waiting for replies to settle.

use std::time::{Duration, Instant};

use mock_llm::MockLlm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::sse::{EventStream, SseEvent};
use crate::support::{TestServer, TestUser};

/// `count` distinct words, so that any prefix of the text tells how far it got.
pub fn words(count: usize) -> String {
    (1..=count).map(|i| format!("word{i:02}")).collect::<Vec<_>>().join(" ")
}

/// A reply streamed at `tokens_per_second`, a word per token.
pub fn slow_reply(text: &str, tokens_per_second: u32) -> Value {
    json!({"kind": "reply", "text": text, "tokens_per_second": tokens_per_second})
}

/// Sends `text` to `chat` with the default model.
pub async fn say(server: &TestServer, user: &TestUser, chat: &str, text: &str) -> (StatusCode, Value) {
    server.post("/chat", Some(&user.token), json!({"chat_id": chat, "message": text})).await
}

/// Asks the server to stop the reply being generated in `chat`.
pub async fn cancel(server: &TestServer, user: &TestUser, chat: &str) -> (StatusCode, Value) {
    let (status, _, body) = server.call(Method::POST, &format!("/chats/{chat}/cancel"), Some(&user.token), None).await;
    (status, body)
}

/// The chat's stored messages.
pub async fn messages(server: &TestServer, user: &TestUser, chat: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("messages list").clone()
}

/// The chat's messages once none is `generating` any more (polled, with a deadline `within` from now).
pub async fn settled(server: &TestServer, user: &TestUser, chat: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let stored = messages(server, user, chat).await;
        if !stored.iter().any(|m| m["status"] == "generating") {
            return stored;
        }
        assert!(Instant::now() < deadline, "a reply stayed generating for {within:?}: {stored:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The chat's messages once there are at least `count` (polled, with a deadline `within` from now). On an SQLite
/// database the server asks the provider while the question and the reply's placeholder commit, so a provider
/// that has been asked does not yet mean the rows are readable.
pub async fn stored_at_least(
    server: &TestServer,
    user: &TestUser,
    chat: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let stored = messages(server, user, chat).await;
        if stored.len() >= count {
            return stored;
        }
        assert!(Instant::now() < deadline, "fewer than {count} messages stored after {within:?}: {stored:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `(role, content)` of each message (stored messages, or those sent to a provider).
pub fn turns(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| (m["role"].as_str().expect("role").to_owned(), m["content"].as_str().expect("content").to_owned()))
        .collect()
}

/// A `(role, content)` turn, to compare with [`turns`].
pub fn pair(role: &str, content: &str) -> (String, String) {
    (role.to_owned(), content.to_owned())
}

/// The ids of stream events.
pub fn ids(events: &[SseEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id.expect("every event has an id")).collect()
}

/// The message id a stream's `start` announced.
pub fn message_id_of(events: &[SseEvent]) -> i64 {
    assert_eq!(events[0].event, "start", "{events:?}");
    events[0].data["message_id"].as_i64().expect("message_id")
}

/// Reads events until `count` deltas have come; fails on an ending before that.
pub async fn read_deltas(stream: &mut EventStream, count: usize) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while events.iter().filter(|e: &&SseEvent| e.event == "delta").count() < count {
        let event = stream.next().await.unwrap_or_else(|| panic!("the stream ended early: {events:?}"));
        assert!(event.event == "start" || event.event == "delta", "ended before {count} deltas: {event:?}");
        events.push(event);
    }
    events
}

/// Waits until the provider request `index` was dropped by the server that made it.
pub async fn wait_disconnected(mock: &MockLlm, index: usize, within: Duration) {
    let waited = mock.wait_for_requests(within, |r| r.get(index).is_some_and(|r| r.disconnected)).await;
    assert!(waited.is_ok(), "the provider request was not closed within {within:?}: {:?}", mock.requests().await);
}
