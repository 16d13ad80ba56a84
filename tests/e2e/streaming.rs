//! Streaming replies over real HTTP: `POST /chat` with `"stream": true` and the events endpoint.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mock_llm::{Defaults, MockLlm};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::conversation::{ids, message_id_of, messages};
use crate::support::llm::{GROQ_KEY, fast_alias, setup, start};
use crate::support::sse::{self, SseEvent, names, text_of};
use crate::support::{TestServer, TestUser};

/// How long a test waits for something it polls for.
const WAIT: Duration = Duration::from_secs(15);

/// About thirty words: at twenty tokens a second, a reply that streams for about a second and a half.
const SLOW_TEXT: &str = "The quick brown fox jumps over the lazy dog while the patient farmer counts his sheep \
                         one by one under a pale and quiet moon that hangs above the sleeping valley tonight";

/// Polls the chat's messages until `message_id` is no longer `generating`; returns it.
async fn wait_until_finished(server: &TestServer, user: &TestUser, chat: &str, message_id: i64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = messages(server, user, chat).await;
        let message = stored.iter().find(|m| m["id"] == message_id).cloned();
        match message {
            Some(message) if message["status"] != "generating" => return message,
            _ if Instant::now() > deadline => panic!("message {message_id} still not finished: {stored:?}"),
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// The status and body of a request that was answered without a stream.
fn refused(opened: Result<sse::EventStream, (StatusCode, Value)>) -> (StatusCode, Value) {
    match opened {
        Ok(stream) => panic!("expected a plain status, got a stream: {:?}", stream.headers),
        Err(refusal) => refusal,
    }
}

/// Checks a whole stream's shape: ids 1..n, `start` first, only `delta`s between, `ending` last.
fn assert_whole_stream(events: &[SseEvent], ending: &str) {
    assert_eq!(ids(events), (1..=events.len() as u64).collect::<Vec<_>>(), "{events:?}");
    let names = names(events);
    assert!(names.len() >= 2, "{events:?}");
    assert_eq!(names[0], "start", "{events:?}");
    assert_eq!(names[names.len() - 1], ending, "{events:?}");
    assert!(names[1..names.len() - 1].iter().all(|n| *n == "delta"), "{events:?}");
}

/// Sends `body` with `"stream": true` and expects a plain JSON `status`; returns the headers and the detail, and
/// checks the user's message `text` stayed stored alone (no reply, not even a placeholder).
async fn expect_refused(
    server: &TestServer,
    user: &TestUser,
    chat: &str,
    text: &str,
    status: StatusCode,
) -> (reqwest::header::HeaderMap, String) {
    let body = json!({"chat_id": chat, "message": text, "stream": true});
    let (got, headers, answer) = server.call(Method::POST, "/chat", Some(&user.token), Some(body)).await;
    assert_eq!(got, status, "{answer}");
    let content_type = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    assert!(content_type.as_deref().is_some_and(|t| t.starts_with("application/json")), "{content_type:?}");
    let detail = answer["detail"].as_str().unwrap_or_else(|| panic!("detail is not a sentence: {answer}")).to_owned();
    assert!(detail.contains("'fast'"), "the detail does not name the alias: {detail}");
    assert!(!detail.contains(GROQ_KEY), "the detail leaks the key: {detail}");
    let stored = messages(server, user, chat).await;
    assert_eq!(stored.len(), 1, "only the user's message stays: {stored:?}");
    assert_eq!((&stored[0]["role"], &stored[0]["content"]), (&json!("user"), &json!(text)));
    (headers, detail)
}

#[tokio::test]
async fn a_streamed_reply_is_numbered_events_and_stored_as_streamed() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 5});
    let reply = json!({"kind": "reply", "text": "One two three four five", "tokens_per_second": 200, "usage": usage,
        "finish_reason": "length"});
    mock.script([reply]).await.unwrap();

    let stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "count"})).await.unwrap();
    assert_eq!(stream.headers.get(CONTENT_TYPE).unwrap(), "text/event-stream");
    assert_eq!(stream.headers.get(CACHE_CONTROL).unwrap(), "no-cache");
    let events = stream.collect().await;

    assert_whole_stream(&events, "done");
    assert!(events.len() >= 4, "five words in one delta: {events:?}");
    for delta in &events[1..events.len() - 1] {
        let text = delta.data["text"].as_str().unwrap_or_default();
        assert!(!text.is_empty() && delta.data.as_object().unwrap().len() == 1, "{delta:?}");
    }
    assert_eq!(text_of(&events), "One two three four five");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let message_id = stored[1]["id"].as_i64().unwrap();
    assert_eq!(
        events[0].data,
        json!({"chat_id": chat, "user_message_id": stored[0]["id"], "message_id": message_id, "model": "fast"})
    );
    let done = &events[events.len() - 1].data;
    assert_eq!(*done, json!({"message_id": message_id, "finish_reason": "length", "usage": usage}));
    assert_eq!(stored[1]["role"], "assistant");
    assert_eq!(stored[1]["content"], "One two three four five");
    assert_eq!(stored[1]["status"], "complete");
    assert_eq!(stored[1]["model"], "fast");
    assert_eq!(stored[1]["finish_reason"], "length");
    assert_eq!(stored[0]["status"], "complete", "{stored:?}");
}

#[tokio::test]
async fn failures_before_the_first_token_are_plain_json_statuses_even_when_streaming() {
    let config = fast_alias(&["primary-model"], 8192, 256);
    let (mock, server, user, rate_limited) = setup(Some(&config), &[("LLM_FIRST_TOKEN_TIMEOUT_MS", "300")]).await;

    // 429: a Retry-After over the alias's cap is not waited for, and is passed on.
    mock.script([json!({"kind": "status", "status": 429, "retry_after": "30"})]).await.unwrap();
    let (headers, _) = expect_refused(&server, &user, &rate_limited, "rate me", StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(headers.get(RETRY_AFTER).map(|v| v.to_str().unwrap()), Some("30"));
    assert_eq!(mock.requests().await.len(), 1);

    // 502: a server error on every attempt.
    mock.reset().await;
    let failing = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let error = json!({"kind": "status", "status": 500});
    mock.script([error.clone(), error]).await.unwrap();
    expect_refused(&server, &user, &failing, "doomed", StatusCode::BAD_GATEWAY).await;
    assert_eq!(mock.requests().await.len(), 2, "one retry, then the failure");

    // 504: a provider that never answers.
    mock.reset().await;
    let hanging = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    mock.script([json!({"kind": "hang"}), json!({"kind": "hang"})]).await.unwrap();
    expect_refused(&server, &user, &hanging, "are you awake?", StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(mock.requests().await.len(), 2);
}

#[tokio::test]
async fn an_unknown_chat_or_a_bad_request_is_a_plain_status_even_when_streaming() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let unknown = "00000000-0000-0000-0000-000000000000";
    let (status, body) = refused(sse::post_chat(&server, &user, json!({"chat_id": unknown, "message": "hi"})).await);
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"detail": format!("Chat with id '{unknown}' not found")}))
    );

    let invalid = [
        (json!({"chat_id": chat, "message": "hi", "model": "gpt-9"}), json!(["body", "model"])),
        (json!({"chat_id": chat, "message": ""}), json!(["body", "message"])),
    ];
    for (request, field) in invalid {
        let (status, body) = refused(sse::post_chat(&server, &user, request).await);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["detail"][0]["loc"], field, "{body}");
    }
    assert!(messages(&server, &user, &chat).await.is_empty(), "a refused message was stored");
    assert!(mock.requests().await.is_empty(), "a refused message reached the provider");
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_stop_the_reply() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([json!({"kind": "reply", "text": SLOW_TEXT, "tokens_per_second": 20})]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "tell me"})).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(stream.next().await.expect("an event"));
    }
    assert_eq!(names(&seen), ["start", "delta", "delta"]);
    drop(stream);

    let message = wait_until_finished(&server, &user, &chat, message_id_of(&seen)).await;
    assert_eq!(message["status"], "complete", "{message}");
    assert_eq!(message["content"], SLOW_TEXT);
    let requests = mock.requests().await;
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].disconnected, "the provider's request was closed when the client left");
}

#[tokio::test]
async fn a_listener_joining_late_gets_everything_and_one_resuming_gets_the_rest() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([json!({"kind": "reply", "text": SLOW_TEXT, "tokens_per_second": 20})]).await.unwrap();
    let mut first = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "tell me"})).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(first.next().await.expect("an event"));
    }
    let message_id = message_id_of(&seen);
    let resume_after = 3;

    let late = sse::follow(&server, &user, &chat, message_id, None).await.unwrap();
    let resumed = sse::follow(&server, &user, &chat, message_id, Some(resume_after)).await.unwrap();
    let (rest, late, resumed) = tokio::join!(first.collect(), late.collect(), resumed.collect());
    seen.extend(rest);

    assert_whole_stream(&seen, "done");
    assert_eq!(text_of(&seen), SLOW_TEXT);
    assert!(seen.len() > 10, "the reply was not streamed word by word: {seen:?}");
    assert_eq!(late, seen, "a late listener gets the same events, with the same ids");
    assert_eq!(ids(&resumed), (resume_after + 1..=seen.len() as u64).collect::<Vec<_>>());
    assert_eq!(resumed, seen[resume_after as usize..], "a resumed listener gets exactly what came after");
    let before = text_of(&seen[..resume_after as usize]);
    assert_eq!(before + &text_of(&resumed), SLOW_TEXT);
    let stored = wait_until_finished(&server, &user, &chat, message_id).await;
    assert_eq!(stored["content"], SLOW_TEXT);
}

#[tokio::test]
async fn a_finished_reply_is_told_whole_or_resumed_with_its_live_numbering() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let text = "Alpha beta gamma delta epsilon zeta";
    mock.script([json!({"kind": "reply", "text": text})]).await.unwrap();
    let streamed =
        sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "letters"})).await.unwrap().collect().await;
    assert_whole_stream(&streamed, "done");
    assert!(streamed.len() >= 5, "{streamed:?}");
    let message_id = message_id_of(&streamed);

    // Told whole, the delta and the ending keep their live ids, so that resuming from either is exact.
    let last = streamed.len() as u64;
    let whole = sse::follow(&server, &user, &chat, message_id, None).await.unwrap().collect().await;
    assert_eq!(names(&whole), ["start", "delta", "done"]);
    assert_eq!(ids(&whole), [1, last - 1, last]);
    assert_eq!(whole[0].data, streamed[0].data);
    assert_eq!(whole[1].data, json!({"text": text}));
    assert_eq!(whole[2].data, streamed[streamed.len() - 1].data);
    let after_whole = sse::follow(&server, &user, &chat, message_id, Some(last - 1)).await.unwrap().collect().await;
    assert_eq!(after_whole, streamed[streamed.len() - 1..], "after the whole text, only the ending is left");
    let nothing = sse::follow(&server, &user, &chat, message_id, Some(last)).await.unwrap().collect().await;
    assert!(nothing.is_empty(), "a listener that saw the ending gets nothing again: {nothing:?}");

    let resume_after = 3;
    let rest = sse::follow(&server, &user, &chat, message_id, Some(resume_after)).await.unwrap().collect().await;
    assert_eq!(rest, streamed[resume_after as usize..], "resuming a finished reply continues its numbering");
}

#[tokio::test]
async fn without_a_resume_window_a_finished_reply_is_told_whole_even_when_resuming() {
    let (mock, server, user, chat) = setup(None, &[("STREAM_RESUME_SECONDS", "0")]).await;
    let text = "Alpha beta gamma delta epsilon zeta";
    mock.script([json!({"kind": "reply", "text": text})]).await.unwrap();
    let streamed =
        sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "letters"})).await.unwrap().collect().await;
    assert_whole_stream(&streamed, "done");
    assert!(streamed.len() >= 5, "{streamed:?}");
    let message_id = message_id_of(&streamed);

    let told = sse::follow(&server, &user, &chat, message_id, Some(3)).await.unwrap().collect().await;
    assert_eq!(names(&told), ["start", "delta", "done"], "{told:?}");
    assert_eq!(ids(&told), [1, 2, 3]);
    assert_eq!(told[0].data, streamed[0].data, "the stored reply's start says the same");
    assert_eq!(told[1].data, json!({"text": text}));
    assert_eq!(told[2].data, streamed[streamed.len() - 1].data, "the stored reply's ending says the same");
}

#[tokio::test]
async fn a_stream_cut_after_the_first_tokens_ends_with_an_error_event_and_keeps_the_text() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([json!({"kind": "cut_after", "tokens": 3, "text": "alpha beta gamma delta epsilon"})]).await.unwrap();
    let events =
        sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "go"})).await.unwrap().collect().await;

    assert_whole_stream(&events, "error");
    assert_eq!(text_of(&events), "alpha beta gamma");
    let message_id = message_id_of(&events);
    let error = &events[events.len() - 1].data;
    assert_eq!((&error["status"], &error["message_id"]), (&json!(502), &json!(message_id)), "{error}");
    let detail = error["detail"].as_str().unwrap();
    assert!(detail.contains("'fast'") && !detail.contains(GROQ_KEY), "{detail}");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(stored[1]["id"], message_id);
    assert_eq!((&stored[1]["status"], &stored[1]["content"]), (&json!("error"), &json!("alpha beta gamma")));
    assert_eq!(mock.requests().await.len(), 1, "a provider failing after the first token is not retried");
}

#[tokio::test]
async fn a_stream_that_stalls_after_the_first_tokens_ends_with_a_504_error_event() {
    let timeouts = [("LLM_FIRST_TOKEN_TIMEOUT_MS", "500"), ("LLM_TOTAL_TIMEOUT_MS", "1000")];
    let (mock, server, user, chat) = setup(None, &timeouts).await;
    mock.script([json!({"kind": "hang_after", "tokens": 2, "text": "alpha beta gamma delta"})]).await.unwrap();
    let events =
        sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "go"})).await.unwrap().collect().await;

    assert_whole_stream(&events, "error");
    assert_eq!(text_of(&events), "alpha beta");
    let error = &events[events.len() - 1].data;
    assert_eq!(error["status"], 504, "{error}");
    let detail = error["detail"].as_str().unwrap();
    assert!(detail.contains("'fast'") && !detail.contains(GROQ_KEY), "{detail}");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(stored[1]["id"], message_id_of(&events));
    assert_eq!((&stored[1]["status"], &stored[1]["content"]), (&json!("error"), &json!("alpha beta")));
    let requests = mock
        .wait_for_requests(WAIT, |r| r.first().is_some_and(|r| r.disconnected))
        .await
        .expect("the stalled provider request was closed");
    assert_eq!(requests.len(), 1, "a provider failing after the first token is not retried");
}

#[tokio::test]
async fn keep_alive_comments_fill_silences_and_the_stream_still_ends_with_done() {
    let env =
        [("SSE_KEEP_ALIVE_SECONDS", "1"), ("LLM_FIRST_TOKEN_TIMEOUT_MS", "5000"), ("LLM_TOTAL_TIMEOUT_MS", "10000")];
    let (mock, server, user, chat) = setup(None, &env).await;
    // Two tokens, two seconds apart: a silence of two seconds after the first.
    mock.script([json!({"kind": "reply", "text": "Slow reply", "tokens_per_second": 0.5})]).await.unwrap();
    let mut stream =
        sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "take your time"})).await.unwrap();
    let events = stream.until("done").await;
    assert!(stream.comments > 0, "no keep-alive comment in a two-second silence");
    assert!(stream.next().await.is_none(), "the stream goes on after done");
    assert_whole_stream(&events, "done");
    assert_eq!(text_of(&events), "Slow reply");
}

#[tokio::test]
async fn the_offline_model_streams_too() {
    let server = TestServer::start_with(&[("OFFLINE_WORD_DELAY_MS", "1")]).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let events = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "Are you real?"}))
        .await
        .unwrap()
        .collect()
        .await;

    assert_whole_stream(&events, "done");
    assert!(events.len() >= 5, "the offline reply came in fewer than three pieces: {events:?}");
    let text = text_of(&events);
    assert!(text.contains("not from a language model"), "{text}");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(stored[1]["id"], message_id_of(&events));
    assert_eq!((&stored[1]["status"], &stored[1]["content"]), (&json!("complete"), &json!(text)));
}

#[tokio::test]
async fn the_events_of_anything_but_ones_own_assistant_message_are_404() {
    let (_mock, server, owner, chat) = setup(None, &[]).await;
    let (status, reply) = server.post("/chat", Some(&owner.token), json!({"chat_id": chat, "message": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (message_id, user_message_id) =
        (reply["message_id"].as_i64().unwrap(), reply["user_message_id"].as_i64().unwrap());
    let other_chat = server.create_chat(&owner, None).await["id"].as_str().unwrap().to_owned();
    let intruder = server.signup().await;
    let path = |chat: &str, message: &str| format!("/chats/{chat}/messages/{message}/events");
    let message = message_id.to_string();
    let chat_missing = json!({"detail": format!("Chat with id '{chat}' not found")});
    let message_missing = |id: &str| json!({"detail": format!("Message with id '{id}' not found in this chat")});

    let (status, _) = server.get(&path(&chat, &message), Some(&owner.token)).await;
    assert_eq!(status, StatusCode::OK, "the owner can follow the reply");
    assert_eq!(server.get(&path(&chat, &message), Some(&intruder.token)).await, (StatusCode::NOT_FOUND, chat_missing));
    for id in [(message_id + 1000).to_string(), user_message_id.to_string(), "abc".to_owned()] {
        let (status, body) = server.get(&path(&chat, &id), Some(&owner.token)).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, message_missing(&id)), "message {id}");
    }
    let (status, body) = server.get(&path(&other_chat, &message), Some(&owner.token)).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, message_missing(&message)), "another chat's message");
    let (status, body) = server.get(&path(&chat, &message), None).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!({"detail": "Not authenticated"})));
}

#[tokio::test]
async fn two_hundred_concurrent_streams_each_get_their_own_reply_whole_and_in_order() {
    const STREAMS: usize = 200;
    let mock = MockLlm::start_with(Defaults { tokens_per_second: Some(50.0), ..Defaults::default() }).await.unwrap();
    // One user's 200 replies at once: over the default limits on new replies, which are not what is tested here.
    let env = [
        ("LLM_FIRST_TOKEN_TIMEOUT_MS", "15000"),
        ("LLM_TOTAL_TIMEOUT_MS", "20000"),
        ("REPLY_RATE_LIMIT_PER_MINUTE", "0"),
        ("MAX_REPLIES_PER_USER", "0"),
    ];
    let server = start(Some(&mock.base_url()), None, &env).await;
    let user = server.signup().await;
    let started = Instant::now();
    let chats: Vec<String> = join_all((0..STREAMS).map(|_| server.create_chat(&user, None)))
        .await
        .into_iter()
        .map(|chat| chat["id"].as_str().unwrap().to_owned())
        .collect();
    let question = |i: usize| format!("crowd member {i} asks a short polite question");

    let streams = join_all(chats.iter().enumerate().map(|(i, chat)| {
        let (server, user) = (&server, &user);
        async move {
            let body = json!({"chat_id": chat, "message": question(i)});
            let stream = sse::post_chat(server, user, body).await.unwrap_or_else(|e| panic!("stream {i}: {e:?}"));
            stream.collect().await
        }
    }))
    .await;
    let stored = join_all(chats.iter().map(|chat| messages(&server, &user, chat))).await;

    for (i, (events, stored)) in streams.iter().zip(&stored).enumerate() {
        assert_whole_stream(events, "done");
        let expected = format!("Mock reply to: {}", question(i));
        assert_eq!(text_of(events), expected, "stream {i}");
        assert_eq!(events[0].data["chat_id"], json!(chats[i]), "stream {i}");
        assert_eq!(stored.len(), 2, "chat {i}: {stored:?}");
        assert_eq!(stored[1]["id"], message_id_of(events), "chat {i}");
        assert_eq!((&stored[1]["status"], &stored[1]["content"]), (&json!("complete"), &json!(expected)), "chat {i}");
    }
    let requests = mock.requests().await;
    assert_eq!(requests.len(), STREAMS);
    assert!(requests.iter().all(|r| !r.disconnected), "a provider request was closed early");
    assert!(started.elapsed() < Duration::from_secs(20), "{STREAMS} streams took {:?}", started.elapsed());
}

/// `upstream;dur=U, total;dur=T` in milliseconds, from a `Server-Timing` header.
fn server_timing(headers: &reqwest::header::HeaderMap) -> (f64, f64) {
    let value = headers.get("server-timing").expect("a Server-Timing header").to_str().unwrap();
    let dur = |name: &str| -> f64 {
        let part = value.split(',').map(str::trim).find(|p| p.starts_with(name)).expect(name);
        part.split("dur=").nth(1).unwrap().parse().unwrap()
    };
    (dur("upstream;"), dur("total;"))
}

#[tokio::test]
async fn server_timing_tells_the_upstream_and_the_total_time_of_a_reply() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([
        json!({"kind": "reply", "text": "Slow to start.", "latency_ms": 300}),
        json!({"kind": "reply", "text": "Slow to start, streamed.", "latency_ms": 300}),
    ])
    .await
    .unwrap();
    let (status, headers, body) = server
        .call(reqwest::Method::POST, "/chat", Some(&user.token), Some(json!({"chat_id": chat, "message": "hi"})))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (upstream, total) = server_timing(&headers);
    assert!(upstream >= 300.0, "the provider took 300 ms, the header says {upstream}");
    assert!(total >= upstream, "total {total} < upstream {upstream}");

    let stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "again"})).await.unwrap();
    let (upstream, total) = server_timing(&stream.headers);
    assert!(upstream >= 300.0, "the first token took 300 ms, the header says {upstream}");
    assert!(total >= upstream, "total {total} < upstream {upstream}");
    let (_, headers, _) = server.call(reqwest::Method::GET, "/chats", Some(&user.token), None).await;
    assert!(headers.get("server-timing").is_none(), "only replies of a model carry it");
}
