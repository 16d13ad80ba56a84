//! A reply's life over real HTTP: cancel, one reply per chat, regenerate, delete mid-reply, crash and shutdown.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_llm::{MockLlm, RecordedRequest};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::conversation::{
    cancel, messages, pair, read_deltas, say, settled, slow_reply, stored_at_least, turns, wait_disconnected, words,
};
use crate::support::llm::{GROQ_KEY, fast_alias, setup};
use crate::support::sse::{self, names, text_of};
use crate::support::{TestDir, TestServer, TestUser};

const BUSY: &str = "A reply is already being generated in this chat";
/// Slow replies take seconds: the total timeout must not end them.
const SLOW: (&str, &str) = ("LLM_TOTAL_TIMEOUT_MS", "60000");
/// How long to wait for something that should happen at once (a state reached, a request recorded).
const WAIT: Duration = Duration::from_secs(10);

async fn regenerate(server: &TestServer, user: &TestUser, chat: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, _, body) =
        server.call(Method::POST, &format!("/chats/{chat}/regenerate"), Some(&user.token), body).await;
    (status, body)
}

/// The messages a provider request carried.
fn prompt_of(request: &RecordedRequest) -> Vec<(String, String)> {
    turns(request.body["messages"].as_array().expect("messages sent"))
}

/// The environment of a server on `mock` (as `support::llm::start` builds it) with `extra` last, to start
/// the same server again on the same directory.
fn env_on(mock: &MockLlm, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("LLM_FIRST_TOKEN_TIMEOUT_MS".to_owned(), "1500".to_owned()),
        ("GROQ_API_KEY".to_owned(), GROQ_KEY.to_owned()),
        ("GROQ_BASE_URL".to_owned(), format!("{}/v1", mock.base_url())),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

async fn start_on(dir: Arc<TestDir>, env: &[(String, String)]) -> TestServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestServer::start_in(dir, &env, &[]).await
}

/// SIGTERM off the test's thread, so that the test can read the stream meanwhile; returns the exit status
/// and how long the process took to exit.
async fn terminate(mut server: TestServer) -> (TestServer, ExitStatus, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = server.terminate();
        (server, status, started.elapsed())
    })
    .await
    .expect("terminate")
}

/// `(status, content)` of the chat's messages read straight from the database (the server may be gone).
fn stored_rows(server: &TestServer, chat: &str) -> Vec<(String, String, String)> {
    let chat_id: chat_domain::ChatId = chat.parse().expect("chat id");
    let rows = server
        .database()
        .with_connection(|conn| chat_storage::messages::list_messages(conn, chat_id, None))
        .expect("read messages");
    rows.into_iter().map(|m| (m.role.as_str().to_owned(), m.status.as_str().to_owned(), m.content)).collect()
}

#[tokio::test]
async fn cancelling_a_streamed_reply_closes_the_provider_request_and_keeps_the_streamed_text() {
    let (mock, server, user, chat) = setup(None, &[SLOW]).await;
    let full = words(40);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "talk slowly"})).await.unwrap();
    let mut events = read_deltas(&mut stream, 1).await;

    // Someone else's cancel is a 404 and stops nothing.
    let intruder = server.signup().await;
    let (status, body) = cancel(&server, &intruder, &chat).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"detail": format!("Chat with id '{chat}' not found")})));
    events.extend(read_deltas(&mut stream, 1).await);

    assert_eq!(cancel(&server, &user, &chat).await, (StatusCode::OK, json!({"cancelled": true})));
    events.extend(stream.collect().await);
    let last = events.last().unwrap();
    assert_eq!(last.event, "done", "{events:?}");
    assert_eq!(last.data["finish_reason"], "cancelled", "{last:?}");
    assert!(names(&events[1..events.len() - 1]).iter().all(|name| *name == "delta"), "{events:?}");
    let streamed = text_of(&events);
    assert!(streamed.len() < full.len() && full.starts_with(&streamed), "not cut short: {streamed:?}");
    wait_disconnected(&mock, 0, Duration::from_secs(1)).await;

    let stored = settled(&server, &user, &chat, WAIT).await;
    assert_eq!(turns(&stored), [pair("user", "talk slowly"), pair("assistant", &streamed)]);
    assert_eq!(stored[1]["id"], last.data["message_id"]);
    assert_eq!((&stored[1]["status"], &stored[1]["finish_reason"]), (&json!("cancelled"), &json!("cancelled")));

    assert_eq!(cancel(&server, &user, &chat).await, (StatusCode::OK, json!({"cancelled": false})));
    mock.script([json!({"kind": "reply", "text": "Back again."})]).await.unwrap();
    let (status, reply) = say(&server, &user, &chat, "still there?").await;
    assert_eq!((status, &reply["reply"]), (StatusCode::OK, &json!("Back again.")), "{reply}");
    assert_eq!(mock.requests().await.len(), 2);
}

#[tokio::test]
async fn a_cancel_from_another_client_ends_a_waiting_non_streamed_reply_with_its_partial_text() {
    let (mock, server, user, chat) = setup(None, &[SLOW]).await;
    let full = words(40);
    mock.script([slow_reply(&full, 10)]).await.unwrap();

    let ((status, reply), cancelled) = tokio::join!(say(&server, &user, &chat, "take your time"), async {
        mock.wait_for_requests(WAIT, |r| !r.is_empty()).await.expect("the provider was asked");
        let placeholder = stored_at_least(&server, &user, &chat, 2, WAIT).await[1]["id"].as_i64().expect("reply id");
        // A second client follows the reply and stops it after two pieces.
        let mut follower = sse::follow(&server, &user, &chat, placeholder, None).await.unwrap();
        read_deltas(&mut follower, 2).await;
        cancel(&server, &user, &chat).await
    });

    assert_eq!(cancelled, (StatusCode::OK, json!({"cancelled": true})));
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!((&reply["status"], &reply["finish_reason"]), (&json!("cancelled"), &json!("cancelled")), "{reply}");
    let partial = reply["reply"].as_str().unwrap();
    assert!(partial.starts_with("word01 word02"), "less than was streamed: {reply}");
    assert!(partial.len() < full.len() && full.starts_with(partial), "not a partial reply: {reply}");
    let stored = settled(&server, &user, &chat, WAIT).await;
    assert_eq!(turns(&stored)[1], pair("assistant", partial));
    assert_eq!((&stored[1]["id"], &stored[1]["status"]), (&reply["message_id"], &json!("cancelled")));
    wait_disconnected(&mock, 0, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn while_a_reply_is_generated_its_chat_refuses_messages_and_regenerations_but_other_chats_answer() {
    let (mock, server, user, chat) = setup(None, &[SLOW]).await;
    let other = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    mock.script([slow_reply(&words(30), 10), json!({"kind": "reply", "text": "Meanwhile, elsewhere."})]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "first"})).await.unwrap();
    read_deltas(&mut stream, 1).await;

    let busy = (StatusCode::CONFLICT, json!({"detail": BUSY}));
    assert_eq!(say(&server, &user, &chat, "second").await, busy, "a plain message");
    let streamed = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "third"})).await;
    assert_eq!(streamed.err(), Some(busy.clone()), "a streamed message");
    assert_eq!(regenerate(&server, &user, &chat, None).await, busy, "a regeneration");
    assert_eq!(regenerate(&server, &user, &chat, Some(json!({"stream": true}))).await, busy, "a streamed regeneration");

    let (status, reply) = say(&server, &user, &other, "hello there").await;
    assert_eq!((status, &reply["reply"]), (StatusCode::OK, &json!("Meanwhile, elsewhere.")), "{reply}");
    // The running reply was not disturbed by the refusals.
    assert_eq!(stream.next().await.map(|e| e.event), Some("delta".to_owned()));

    assert_eq!(cancel(&server, &user, &chat).await, (StatusCode::OK, json!({"cancelled": true})));
    let stored = settled(&server, &user, &chat, WAIT).await;
    assert_eq!(stored.len(), 2, "a refused message was stored: {stored:?}");
    assert_eq!(stored[0]["content"], "first");
    assert_eq!(mock.requests().await.len(), 2, "a refused message reached the provider");
}

#[tokio::test]
async fn regenerate_replaces_the_last_reply_with_a_new_one_for_the_same_message() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let script = ["earlier answer", "first answer", "second answer"].map(|text| json!({"kind": "reply", "text": text}));
    mock.script(script).await.unwrap();
    assert_eq!(say(&server, &user, &chat, "earlier question").await.0, StatusCode::OK);
    let (status, first) = say(&server, &user, &chat, "the question").await;
    assert_eq!((status, &first["reply"]), (StatusCode::OK, &json!("first answer")), "{first}");

    let (status, second) = regenerate(&server, &user, &chat, None).await;

    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["reply"], "second answer");
    assert_eq!(second["chat_id"], json!(chat));
    assert_eq!(second["user_message_id"], first["user_message_id"], "not the same message answered");
    assert_ne!(second["message_id"], first["message_id"]);
    assert_eq!(
        (&second["model"], &second["status"], &second["finish_reason"]),
        (&json!("fast"), &json!("complete"), &json!("stop"))
    );
    assert!(second["usage"]["completion_tokens"].is_u64(), "{second}");
    let stored = messages(&server, &user, &chat).await;
    let expected = [
        pair("user", "earlier question"),
        pair("assistant", "earlier answer"),
        pair("user", "the question"),
        pair("assistant", "second answer"),
    ];
    assert_eq!(turns(&stored), expected, "the old reply is still there");
    assert_eq!((&stored[2]["id"], &stored[3]["id"]), (&first["user_message_id"], &second["message_id"]));
    assert_eq!((&stored[3]["status"], &stored[3]["model"]), (&json!("complete"), &json!("fast")));

    let requests = mock.requests().await;
    assert_eq!(requests.len(), 3);
    let prompt = prompt_of(&requests[2]);
    assert_eq!(&prompt[1..], &expected[..3], "the regeneration was not asked the same question with its history");
    assert!(!prompt.iter().any(|(_, text)| text == "first answer"), "the replaced reply was sent: {prompt:?}");
}

#[tokio::test]
async fn a_streamed_regeneration_with_another_model_is_told_as_events_and_stored() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    let script = ["Quick answer.", "A more careful answer."].map(|text| json!({"kind": "reply", "text": text}));
    mock.script(script).await.unwrap();
    let (status, first) = say(&server, &user, &chat, "think about it").await;
    assert_eq!(status, StatusCode::OK, "{first}");

    let path = format!("/chats/{chat}/regenerate");
    let body = json!({"stream": true, "model": "balanced"});
    let stream = sse::open(&server, Method::POST, &path, &user, Some(body), None).await.unwrap();
    let events = stream.collect().await;

    assert_eq!(names(&events).first(), Some(&"start"), "{events:?}");
    assert_eq!(names(&events).last(), Some(&"done"), "{events:?}");
    let start = &events[0].data;
    assert_eq!((&start["user_message_id"], &start["model"]), (&first["user_message_id"], &json!("balanced")));
    assert_eq!(text_of(&events), "A more careful answer.");
    assert_eq!(events.last().unwrap().data["finish_reason"], "stop");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(turns(&stored), [pair("user", "think about it"), pair("assistant", "A more careful answer.")]);
    assert_eq!((&stored[1]["id"], &stored[1]["model"]), (&start["message_id"], &json!("balanced")));
    assert_eq!(stored[1]["status"], "complete");
    assert_eq!(mock.requests().await[1].body["model"], "llama-3.3-70b-versatile", "not the model asked for");
}

#[tokio::test]
async fn a_regeneration_that_fails_before_its_first_token_keeps_the_old_reply() {
    let (mock, server, user, chat) = setup(Some(&fast_alias(&["primary-model"], 8192, 256)), &[]).await;
    let failure = json!({"kind": "status", "status": 500});
    mock.script([json!({"kind": "reply", "text": "Keep me."}), failure.clone(), failure]).await.unwrap();
    assert_eq!(say(&server, &user, &chat, "question").await.0, StatusCode::OK);

    let (status, body) = regenerate(&server, &user, &chat, None).await;

    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert_eq!(mock.requests().await.len(), 3, "two attempts for the regeneration");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(turns(&stored), [pair("user", "question"), pair("assistant", "Keep me.")], "the old reply was lost");
    assert_eq!(stored[1]["status"], "complete");
    // The failure freed the chat: the next regeneration goes through.
    mock.script([json!({"kind": "reply", "text": "Replaced at last."})]).await.unwrap();
    let (status, body) = regenerate(&server, &user, &chat, None).await;
    assert_eq!((status, &body["reply"]), (StatusCode::OK, &json!("Replaced at last.")), "{body}");
    assert_eq!(turns(&messages(&server, &user, &chat).await)[1], pair("assistant", "Replaced at last."));
}

#[tokio::test]
async fn regenerate_refuses_unknown_models_empty_chats_and_other_users_chats() {
    let (mock, server, user, chat) = setup(None, &[]).await;

    let (status, body) = regenerate(&server, &user, &chat, Some(json!({"model": "gpt-9"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "model"]), "{body}");

    let (status, body) = regenerate(&server, &user, &chat, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let detail = body["detail"].as_str().unwrap_or_else(|| panic!("detail is not a sentence: {body}"));
    assert!(detail.contains("no message to reply to"), "{detail}");

    let intruder = server.signup().await;
    let (status, body) = regenerate(&server, &intruder, &chat, None).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"detail": format!("Chat with id '{chat}' not found")})));

    assert!(messages(&server, &user, &chat).await.is_empty(), "a refused regeneration stored something");
    assert!(mock.requests().await.is_empty(), "a refused regeneration reached the provider");
}

#[tokio::test]
async fn regenerate_after_a_failed_send_answers_the_message_left_without_a_reply() {
    let (mock, server, user, chat) = setup(Some(&fast_alias(&["primary-model"], 8192, 256)), &[]).await;
    let failure = json!({"kind": "status", "status": 500});
    mock.script([failure.clone(), failure, json!({"kind": "reply", "text": "Sorry for the wait."})]).await.unwrap();
    assert_eq!(say(&server, &user, &chat, "unanswered").await.0, StatusCode::BAD_GATEWAY);
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(turns(&stored), [pair("user", "unanswered")]);

    let (status, reply) = regenerate(&server, &user, &chat, None).await;

    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!((&reply["reply"], &reply["user_message_id"]), (&json!("Sorry for the wait."), &stored[0]["id"]));
    let after = messages(&server, &user, &chat).await;
    assert_eq!(turns(&after), [pair("user", "unanswered"), pair("assistant", "Sorry for the wait.")]);
    let requests = mock.requests().await;
    assert_eq!(prompt_of(&requests[2]).last(), Some(&pair("user", "unanswered")));
    assert_eq!(prompt_of(&requests[2]).len(), 2, "only the system prompt and the message: {:?}", requests[2].body);
}

#[tokio::test]
async fn deleting_a_chat_cancels_its_running_reply() {
    let (mock, server, user, chat) = setup(None, &[SLOW]).await;
    mock.script([slow_reply(&words(40), 10)]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "doomed"})).await.unwrap();
    let mut events = read_deltas(&mut stream, 2).await;

    let (status, _, _) = server.call(Method::DELETE, &format!("/chats/{chat}"), Some(&user.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The stream ends as a cancel does (not left hanging until the reply would have finished).
    let rest = tokio::time::timeout(Duration::from_secs(3), stream.collect()).await.expect("the stream went on");
    events.extend(rest);
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), &last.data["finish_reason"]), ("done", &json!("cancelled")), "{events:?}");
    assert!(text_of(&events).len() < words(40).len(), "the whole reply was streamed: {events:?}");
    wait_disconnected(&mock, 0, Duration::from_secs(2)).await;
    let (status, _) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(stored_rows(&server, &chat).is_empty(), "messages outlived their chat");
}

#[tokio::test]
async fn a_reply_cut_by_a_crash_is_interrupted_at_the_next_start_with_the_text_flushed_before() {
    let mock = MockLlm::start().await.unwrap();
    // On PostgreSQL (shared by design) a reply is recovered once its lease has run out, not at once.
    let env = env_on(&mock, &[SLOW, ("STREAM_FLUSH_MS", "100"), ("GENERATION_LEASE_SECONDS", "1")]);
    let mut server = start_on(TestDir::new(), &env).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let full = words(60);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "crash test"})).await.unwrap();

    // Each piece with when it arrived.
    let mut received: Vec<(Instant, String)> = Vec::new();
    while received.len() < 12 {
        let event = stream.next().await.expect("the stream ended early");
        match event.event.as_str() {
            "start" => {}
            "delta" => received.push((Instant::now(), event.data["text"].as_str().unwrap().to_owned())),
            other => panic!("unexpected {other} event: {event:?}"),
        }
    }
    let killed_at = Instant::now();
    server.kill();
    drop(stream);
    let streamed: String = received.iter().map(|(_, text)| text.as_str()).collect();
    // Flushed every 100 ms: whatever arrived well before the crash was written.
    let surely_flushed: String = received
        .iter()
        .filter(|(at, _)| killed_at.duration_since(*at) >= Duration::from_millis(600))
        .map(|(_, text)| text.as_str())
        .collect();
    assert!(!surely_flushed.is_empty(), "the test streamed too little before the crash");

    let server = start_on(Arc::clone(&server.dir), &env).await;

    // At start-up on SQLite; within the lease, by the start-up or the running server, on PostgreSQL.
    let line = server.wait_for_log("marked interrupted").await;
    assert!(line.contains("replies=1"), "the server did not tell of the interrupted reply: {line}");
    let stored = messages(&server, &user, &chat).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1]["status"], "interrupted", "{stored:?}");
    let content = stored[1]["content"].as_str().unwrap();
    assert!(streamed.starts_with(content), "stored {content:?}, which was not streamed ({streamed:?})");
    assert!(
        content.starts_with(&surely_flushed),
        "stored only {content:?} though {surely_flushed:?} had been streamed over 600 ms before the crash"
    );

    mock.script([json!({"kind": "reply", "text": "Up again."})]).await.unwrap();
    let (status, reply) = say(&server, &user, &chat, "are you back?").await;
    assert_eq!((status, &reply["reply"]), (StatusCode::OK, &json!("Up again.")), "{reply}");
}

#[tokio::test]
async fn at_shutdown_a_reply_longer_than_the_grace_is_stored_interrupted_and_its_stream_told_why() {
    let (mock, server, user, chat) = setup(None, &[SLOW, ("SHUTDOWN_TIMEOUT_SECONDS", "1")]).await;
    let full = words(60);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "long story"})).await.unwrap();
    let mut events = read_deltas(&mut stream, 3).await;

    let ((server, exit, took), rest) = tokio::join!(terminate(server), stream.collect());

    assert!(exit.success(), "{exit:?}\n{}", server.logs());
    assert!(took < Duration::from_secs(5), "took {took:?} to stop with a 1 s grace");
    events.extend(rest);
    let last = events.last().unwrap();
    assert_eq!(last.event, "error", "{events:?}");
    assert_eq!(last.data["status"], 503, "{last:?}");
    let detail = last.data["detail"].as_str().unwrap();
    assert!(detail.contains("server stopped"), "{detail}");
    let streamed = text_of(&events);
    assert!(streamed.len() < full.len() && full.starts_with(&streamed), "not cut by the shutdown: {streamed:?}");
    // Read before any restart could mark it: the shutdown itself stored it.
    let rows = stored_rows(&server, &chat);
    assert_eq!(rows[1], ("assistant".to_owned(), "interrupted".to_owned(), streamed), "{rows:?}");
    assert!(server.logs().contains("stored as interrupted"), "{}", server.logs());
}

#[tokio::test]
async fn at_shutdown_a_reply_that_finishes_within_the_grace_is_stored_complete() {
    let (mock, server, user, chat) = setup(None, &[SLOW, ("SHUTDOWN_TIMEOUT_SECONDS", "5")]).await;
    let full = words(12);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "short story"})).await.unwrap();
    let mut events = read_deltas(&mut stream, 2).await;

    let ((server, exit, took), rest) = tokio::join!(terminate(server), stream.collect());

    assert!(exit.success(), "{exit:?}\n{}", server.logs());
    assert!(took < Duration::from_secs(4), "waited {took:?}: the whole grace, not just the reply");
    events.extend(rest);
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), &last.data["finish_reason"]), ("done", &json!("stop")), "{events:?}");
    assert_eq!(text_of(&events), full);
    let rows = stored_rows(&server, &chat);
    assert_eq!(rows[1], ("assistant".to_owned(), "complete".to_owned(), full), "{rows:?}");
}
