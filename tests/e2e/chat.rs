//! `POST /chat` and `GET /models` of API.md over real HTTP, against a local mock LLM that answers as it should.

use std::time::{Duration, Instant};

use mock_llm::MockLlm;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::conversation::{messages, say, turns};
use crate::support::llm::{GROQ_KEY, fast_alias, setup, start};
use crate::support::{TestServer, TestUser};

const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful, friendly AI assistant. Answer clearly and concisely.";
pub(crate) const WAIT: Duration = Duration::from_secs(15);
const BUSY: &str = "A reply is already being generated in this chat";

pub(crate) async fn ask(server: &TestServer, user: &TestUser, body: Value) -> (StatusCode, HeaderMap, Value) {
    server.call(Method::POST, "/chat", Some(&user.token), Some(body)).await
}

/// The messages of the last provider request.
async fn last_prompt(mock: &MockLlm) -> Vec<(String, String)> {
    let requests = mock.requests().await;
    turns(requests.last().expect("a provider request").body["messages"].as_array().expect("messages sent"))
}

/// The `loc` and `type` of a 422's single field error.
fn field_error(status: StatusCode, body: &Value) -> (Value, String) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let errors = body["detail"].as_array().unwrap_or_else(|| panic!("detail is not a list: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    (errors[0]["loc"].clone(), errors[0]["type"].as_str().expect("type").to_owned())
}

/// Waits for the log line of the request that answered with `headers`, then checks no secret is in the logs.
pub(crate) async fn assert_logs_clean(server: &TestServer, headers: &HeaderMap, secrets: &[&str]) {
    let request_id = headers.get("x-request-id").expect("X-Request-Id").to_str().expect("ascii request id");
    let logs = server.wait_for_log(request_id).await;
    for secret in secrets {
        assert!(!logs.contains(secret), "the logs contain {secret:?}:\n{logs}");
    }
}

#[tokio::test]
async fn a_reply_is_200_with_ids_alias_and_usage_and_is_stored_as_complete() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let usage = json!({"prompt_tokens": 123, "completion_tokens": 45});
    mock.script([json!({"kind": "reply", "text": "Paris is the capital.", "usage": usage})]).await.unwrap();
    let (_, before) = server.get(&format!("/chats/{chat}"), Some(&user.token)).await;
    let question = "zebra-quartz: what is the capital of France?";

    let (status, headers, reply) = ask(&server, &user, json!({"chat_id": chat, "message": question})).await;

    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["reply"], "Paris is the capital.");
    assert_eq!(reply["chat_id"], json!(chat));
    assert_eq!(reply["model"], "fast", "model defaults to fast");
    assert_eq!(reply["usage"], usage, "usage is the provider's");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(
        turns(&stored),
        [("user".into(), question.into()), ("assistant".into(), "Paris is the capital.".into())],
    );
    assert!(stored.iter().all(|m| m["status"] == "complete"), "{stored:?}");
    assert_eq!(reply["message_id"], stored[1]["id"], "message_id is the stored assistant message");
    let (_, after) = server.get(&format!("/chats/{chat}"), Some(&user.token)).await;
    assert!(after["updated_at"].as_str() > before["updated_at"].as_str(), "{before} -> {after}");
    assert_eq!(after["message_count"], 2);
    assert_logs_clean(&server, &headers, &[GROQ_KEY, "zebra-quartz"]).await;
}

#[tokio::test]
async fn the_provider_gets_the_aliases_model_the_system_prompt_and_the_message() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    assert_eq!(say(&server, &user, &chat, "Hello there").await.0, StatusCode::OK);
    let (status, _, body) =
        ask(&server, &user, json!({"chat_id": chat, "message": "Think harder", "model": "balanced"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model"], "balanced");

    let requests = mock.requests().await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    let first = &requests[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.headers.get("authorization").map(String::as_str), Some("Bearer test-groq-key"));
    assert_eq!(first.body["model"], "llama-3.1-8b-instant");
    assert_eq!(first.body["max_completion_tokens"], 2048);
    assert_eq!(first.body["temperature"], 0.7);
    // Whole answers are gathered from a stream, so the first-token timeout applies to them too.
    assert_eq!(first.body["stream"], true);
    assert_eq!(first.body["stream_options"]["include_usage"], true);
    assert_eq!(
        first.body["messages"],
        json!([{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "Hello there"}])
    );
    assert_eq!(requests[1].body["model"], "llama-3.3-70b-versatile");
    assert_eq!(requests[1].body["max_completion_tokens"], 4096);
    assert_eq!(last_prompt(&mock).await.last().unwrap(), &("user".to_owned(), "Think harder".to_owned()));
}

#[tokio::test]
async fn bad_messages_and_unknown_models_are_422_and_reach_no_provider() {
    let (mock, server, user, chat) = setup(None, &[("MAX_MESSAGE_CHARS", "50")]).await;
    let message = json!(["body", "message"]);

    let (status, _, body) = ask(&server, &user, json!({"chat_id": chat})).await;
    assert_eq!(field_error(status, &body), (message.clone(), "missing".into()));
    let (status, body) = say(&server, &user, &chat, "").await;
    assert_eq!(field_error(status, &body), (message.clone(), "string_too_short".into()));
    let (status, body) = say(&server, &user, &chat, &"é".repeat(51)).await;
    assert_eq!(field_error(status, &body), (message, "string_too_long".into()));
    let (status, _, body) = ask(&server, &user, json!({"chat_id": chat, "message": "hi", "model": "gpt-9"})).await;
    assert_eq!(field_error(status, &body), (json!(["body", "model"]), "enum".into()));
    let listed = body["detail"][0]["msg"].as_str().unwrap();
    for alias in ["'fast'", "'balanced'", "'smart'"] {
        assert!(listed.contains(alias), "the detail does not list {alias}: {body}");
    }

    assert!(messages(&server, &user, &chat).await.is_empty(), "a refused message was stored");
    assert!(mock.requests().await.is_empty(), "a refused message reached the provider");
    assert_eq!(say(&server, &user, &chat, &"é".repeat(50)).await.0, StatusCode::OK, "exactly the maximum is fine");
}

#[tokio::test]
async fn another_users_chat_and_a_non_uuid_id_are_404() {
    let (mock, server, owner, chat) = setup(None, &[]).await;
    let intruder = server.signup().await;
    for id in [chat.as_str(), "not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let (status, body) = say(&server, &intruder, id, "let me in").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body, json!({"detail": format!("Chat with id '{id}' not found")}));
    }
    assert!(messages(&server, &owner, &chat).await.is_empty(), "the intruder's message was stored");
    assert!(mock.requests().await.is_empty());
}

#[tokio::test]
async fn chat_and_models_without_a_token_are_401() {
    let (mock, server, _user, chat) = setup(None, &[]).await;
    let (status, headers, body) =
        server.call(Method::POST, "/chat", None, Some(json!({"chat_id": chat, "message": "hi"}))).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &json!({"detail": "Not authenticated"})));
    assert_eq!(headers.get(WWW_AUTHENTICATE).unwrap(), "Bearer");
    let (status, headers, body) = server.call(Method::GET, "/models", None, None).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &json!({"detail": "Not authenticated"})));
    assert_eq!(headers.get(WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert!(mock.requests().await.is_empty());
}

#[tokio::test]
async fn earlier_turns_are_sent_in_order_after_the_system_prompt() {
    let (mock, server, user, chat) = setup(None, &[("SYSTEM_PROMPT", "You are a pirate.")]).await;
    let replies = ["Arr, one.", "Arr, two.", "Arr, three."];
    mock.script(replies.map(|text| json!({"kind": "reply", "text": text}))).await.unwrap();
    for question in ["first question", "second question", "third question"] {
        assert_eq!(say(&server, &user, &chat, question).await.0, StatusCode::OK);
    }
    let expected: Vec<(String, String)> = [
        ("system", "You are a pirate."),
        ("user", "first question"),
        ("assistant", "Arr, one."),
        ("user", "second question"),
        ("assistant", "Arr, two."),
        ("user", "third question"),
    ]
    .iter()
    .map(|(role, text)| ((*role).to_owned(), (*text).to_owned()))
    .collect();
    assert_eq!(last_prompt(&mock).await, expected);
}

#[tokio::test]
async fn a_long_chat_sends_its_newest_turns_and_a_message_too_large_for_the_window_is_422() {
    let config = fast_alias(&["small-model"], 600, 100);
    let (mock, server, user, chat) = setup(Some(&config), &[]).await;
    let turn = |i: usize| format!("turn-{i:03} of a long conversation");
    for i in 0..105 {
        let (status, body) = say(&server, &user, &chat, &turn(i)).await;
        assert_eq!(status, StatusCode::OK, "turn {i}: {body}");
    }

    let prompt = last_prompt(&mock).await;
    assert_eq!(prompt[0], ("system".to_owned(), DEFAULT_SYSTEM_PROMPT.to_owned()));
    assert_eq!(prompt.last().unwrap(), &("user".to_owned(), turn(104)), "the new message comes last");
    assert_eq!(prompt[prompt.len() - 2], ("assistant".to_owned(), format!("Mock reply to: {}", turn(103))));
    assert!(!prompt.iter().any(|(_, text)| text.contains(&turn(0))), "the oldest turn was sent: {prompt:?}");
    let sent: Vec<usize> = prompt
        .iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, text)| text[5..8].parse().expect("turn number"))
        .collect();
    assert!(sent.len() >= 5, "too little history kept: {prompt:?}");
    assert_eq!(sent, (105 - sent.len()..105).collect::<Vec<_>>(), "not one unbroken stretch of the newest turns");

    let huge = "elephant ".repeat(700);
    let (status, body) = say(&server, &user, &chat, &huge).await;
    assert_eq!(field_error(status, &body).0, json!(["body", "message"]));
    assert_eq!(messages(&server, &user, &chat).await.len(), 210, "the too-large message was stored");
    assert_eq!(mock.requests().await.len(), 105, "the too-large message reached the provider");
}

#[tokio::test]
async fn a_second_message_while_a_reply_is_generated_is_409() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    // The first token comes at once (within the first-token timeout), the rest slowly.
    mock.script([json!({"kind": "reply", "text": "A slow answer.", "tokens_per_second": 2})]).await.unwrap();
    let (first, second) = tokio::join!(say(&server, &user, &chat, "first"), async {
        mock.wait_for_requests(WAIT, |r| !r.is_empty()).await.expect("the first message reached the provider");
        say(&server, &user, &chat, "second").await
    });
    assert_eq!(second, (StatusCode::CONFLICT, json!({"detail": BUSY})));
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(first.1["reply"], "A slow answer.");
    assert_eq!(mock.requests().await.len(), 1);
    assert_eq!(say(&server, &user, &chat, "third").await.0, StatusCode::OK, "the chat stayed busy after its reply");
}

#[tokio::test]
async fn messages_in_different_chats_are_answered_at_the_same_time() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let other = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    // Three tokens at two a second: about 1.5 s each, the first token at once.
    let slow = json!({"kind": "reply", "text": "In due time.", "tokens_per_second": 2});
    mock.script([slow.clone(), slow]).await.unwrap();
    let started = Instant::now();
    let (first, second) = tokio::join!(say(&server, &user, &chat, "one"), async {
        mock.wait_for_requests(WAIT, |r| !r.is_empty()).await.expect("the first message reached the provider");
        say(&server, &user, &other, "two").await
    });
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK), "{} / {}", first.1, second.1);
    assert_eq!((first.1["reply"].as_str(), second.1["reply"].as_str()), (Some("In due time."), Some("In due time.")));
    assert!(started.elapsed() < Duration::from_millis(2800), "the chats were served one after the other");
}

#[tokio::test]
async fn an_anthropic_target_is_asked_through_the_messages_api() {
    let mock = MockLlm::start().await.unwrap();
    let config = r#"[aliases.smart]
targets = [{ provider = "anthropic", model = "claude-test", context_window = 200000, max_output_tokens = 1024 }]
"#;
    let base = mock.base_url();
    let env = [("ANTHROPIC_API_KEY", "test-anthropic-key"), ("ANTHROPIC_BASE_URL", base.as_str())];
    let server = start(None, Some(config), &env).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let usage = json!({"prompt_tokens": 31, "completion_tokens": 7});
    mock.script([json!({"kind": "reply", "text": "Bonjour from Claude.", "usage": usage})]).await.unwrap();

    let (status, headers, body) =
        ask(&server, &user, json!({"chat_id": chat, "message": "Say hi", "model": "smart"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["reply"], &body["model"], &body["usage"]),
        (&json!("Bonjour from Claude."), &json!("smart"), &usage)
    );
    let requests = mock.requests().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.headers.get("x-api-key").map(String::as_str), Some("test-anthropic-key"));
    assert_eq!(request.headers.get("anthropic-version").map(String::as_str), Some("2023-06-01"));
    assert!(!request.headers.contains_key("authorization"), "{:?}", request.headers);
    assert_eq!(request.body["model"], "claude-test");
    assert_eq!(request.body["max_tokens"], 1024);
    assert_eq!(request.body["system"], DEFAULT_SYSTEM_PROMPT);
    assert_eq!(request.body["messages"], json!([{"role": "user", "content": "Say hi"}]));
    assert_logs_clean(&server, &headers, &["test-anthropic-key"]).await;
}

#[tokio::test]
async fn without_any_key_the_offline_model_answers_and_says_it_is_not_an_llm() {
    let mock = MockLlm::start().await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    let server = start(None, None, &[("GROQ_BASE_URL", base.as_str())]).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();

    let (status, body) = say(&server, &user, &chat, "Are you real?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model"], "fast");
    let reply = body["reply"].as_str().unwrap();
    assert!(reply.contains("not from a language model"), "{reply}");
    assert!(mock.requests().await.is_empty(), "no key, yet the Groq URL was called");
    let (status, models) = server.get("/models", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{models}");
    for model in models.as_array().unwrap() {
        assert_eq!((&model["provider"], &model["available"]), (&json!("offline"), &json!(true)), "{model}");
    }
}

#[tokio::test]
async fn models_lists_every_alias_with_its_provider_model_and_the_default() {
    let (_mock, server, user, _chat) = setup(None, &[]).await;
    let (status, models) = server.get("/models", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{models}");
    let expected = [
        ("fast", "llama-3.1-8b-instant", true),
        ("balanced", "llama-3.3-70b-versatile", false),
        ("smart", "openai/gpt-oss-120b", false),
    ];
    let models = models.as_array().expect("a list");
    assert_eq!(models.len(), expected.len(), "{models:?}");
    for (model, (alias, id, default)) in models.iter().zip(expected) {
        let want = json!({"alias": alias, "provider": "groq", "model": id, "available": true, "default": default,
            "context_window": 131_072});
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&model[field], value, "{field} of {model}");
        }
    }
}

#[tokio::test]
async fn a_chat_deleted_while_its_reply_is_generated_is_404_not_a_server_error() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    // The first token comes at once, the whole reply over about two seconds.
    mock.script([json!({"kind": "reply", "text": "Too late for this chat.", "tokens_per_second": 2})]).await.unwrap();
    let (reply, deleted) = tokio::join!(say(&server, &user, &chat, "hello?"), async {
        mock.wait_for_requests(WAIT, |r| !r.is_empty()).await.expect("the message reached the provider");
        server.call(Method::DELETE, &format!("/chats/{chat}"), Some(&user.token), None).await.0
    });
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    assert_eq!(reply.0, StatusCode::NOT_FOUND, "{}", reply.1);
    assert_eq!(reply.1, json!({"detail": format!("Chat with id '{chat}' not found")}));
}

#[tokio::test]
async fn only_the_canonical_form_of_a_chat_id_names_the_chat() {
    let (_mock, server, user, chat) = setup(None, &[]).await;
    for other_form in [chat.to_uppercase(), format!("{{{chat}}}"), chat.replace('-', ""), format!("urn:uuid:{chat}")] {
        let (status, body) = server.get(&format!("/chats/{other_form}"), Some(&user.token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other_form}: {body}");
        let (status, _) = say(&server, &user, &other_form, "hi").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other_form}");
    }
    assert_eq!(server.get(&format!("/chats/{chat}"), Some(&user.token)).await.0, StatusCode::OK);
}
