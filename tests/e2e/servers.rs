//! Several server processes on one PostgreSQL database, over real HTTP: shared accounts and chats, one reply per
//! chat whichever server runs it, following, stopping and deleting a reply from another server, and a server
//! that dies mid-reply.
//!
//! Every test returns at once on SQLite: an SQLite file is served by one process (a second one refuses to start,
//! which `startup.rs` tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_llm::MockLlm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::conversation::{
    cancel, ids, message_id_of, messages, pair, read_deltas, say, settled, slow_reply, turns, wait_disconnected, words,
};
use crate::support::llm::GROQ_KEY;
use crate::support::sse::{self, EventStream, SseEvent, names, text_of};
use crate::support::{TestDir, TestServer, TestUser, on_postgres};

const BUSY: &str = "A reply is already being generated in this chat";
/// How long to wait for something that should happen soon (a state reached, a request recorded).
const WAIT: Duration = Duration::from_secs(10);

/// A mock LLM and two servers on it sharing one fresh database (the same `TestDir`), with the same environment:
/// text written every 100 ms (so a server follows another's reply quickly), slow replies not cut by the total
/// timeout, and `extra` last.
async fn two_servers(extra: &[(&str, &str)]) -> (MockLlm, TestServer, TestServer) {
    let mock = MockLlm::start().await.expect("start mock");
    let groq_base = format!("{}/v1", mock.base_url());
    let mut env = vec![
        ("GROQ_API_KEY", GROQ_KEY),
        ("GROQ_BASE_URL", groq_base.as_str()),
        ("LLM_FIRST_TOKEN_TIMEOUT_MS", "1500"),
        ("LLM_TOTAL_TIMEOUT_MS", "20000"),
        ("STREAM_FLUSH_MS", "100"),
    ];
    env.extend_from_slice(extra);
    let dir = TestDir::new();
    // One after the other: the first applies the migrations.
    let a = TestServer::start_in(Arc::clone(&dir), &env, &[]).await;
    let b = TestServer::start_in(dir, &env, &[]).await;
    (mock, a, b)
}

/// Two servers on one database, a user signed up on the first and one of their chats created there.
async fn setup(extra: &[(&str, &str)]) -> (MockLlm, TestServer, TestServer, TestUser, String) {
    let (mock, a, b) = two_servers(extra).await;
    let user = a.signup().await;
    let chat = chat_id(&a.create_chat(&user, None).await);
    (mock, a, b, user, chat)
}

fn chat_id(chat: &Value) -> String {
    chat["id"].as_str().expect("chat id").to_owned()
}

/// The rest of a stream, which must end within `within` (not run on until the reply would have finished).
async fn rest_within(stream: EventStream, within: Duration) -> Vec<SseEvent> {
    tokio::time::timeout(within, stream.collect())
        .await
        .unwrap_or_else(|_| panic!("the stream went on past {within:?}"))
}

#[tokio::test]
async fn accounts_chats_and_messages_are_shared_by_the_servers_of_one_database() {
    // An SQLite file is served by one process; several servers need PostgreSQL.
    if !on_postgres() {
        return;
    }
    let (mock, a, b) = two_servers(&[]).await;
    let user = a.signup().await;

    let (status, me) = b.get("/auth/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "a token issued by A is refused by B: {me}");
    assert_eq!((&me["id"], &me["email"]), (&json!(user.id), &json!(user.email)), "{me}");

    let chat = a.create_chat(&user, Some("Made on A")).await;
    let id = chat_id(&chat);
    let (status, seen) = b.get(&format!("/chats/{id}"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "B does not see A's chat: {seen}");
    assert_eq!((&seen["id"], &seen["title"]), (&json!(id), &json!("Made on A")), "{seen}");
    let (status, list) = b.get("/chats", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["chats"][0]["id"], json!(id), "{list}");

    mock.script([json!({"kind": "reply", "text": "Answered by B."})]).await.unwrap();
    let (status, reply) = say(&b, &user, &id, "hello from B").await;
    assert_eq!((status, &reply["reply"]), (StatusCode::OK, &json!("Answered by B.")), "{reply}");
    let stored = messages(&a, &user, &id).await;
    assert_eq!(turns(&stored), [pair("user", "hello from B"), pair("assistant", "Answered by B.")], "listed on A");
    assert_eq!((&stored[0]["id"], &stored[1]["id"]), (&reply["user_message_id"], &reply["message_id"]));
    assert_eq!(stored[1]["status"], "complete");
}

#[tokio::test]
async fn while_one_server_generates_a_reply_another_refuses_a_second_one_in_that_chat_but_answers_other_chats() {
    // An SQLite file is served by one process; several servers need PostgreSQL.
    if !on_postgres() {
        return;
    }
    let (mock, a, b, user, chat) = setup(&[]).await;
    let other = chat_id(&b.create_chat(&user, None).await);
    mock.script([slow_reply(&words(30), 10), json!({"kind": "reply", "text": "Meanwhile, elsewhere."})]).await.unwrap();
    let mut stream = sse::post_chat(&a, &user, json!({"chat_id": chat, "message": "first"})).await.unwrap();
    read_deltas(&mut stream, 1).await;

    let busy = (StatusCode::CONFLICT, json!({"detail": BUSY}));
    assert_eq!(say(&b, &user, &chat, "second").await, busy, "a plain message on B");
    let streamed = sse::post_chat(&b, &user, json!({"chat_id": chat, "message": "third"})).await;
    assert_eq!(streamed.err(), Some(busy), "a streamed message on B");
    let stored = messages(&b, &user, &chat).await;
    assert_eq!(turns(&stored)[..1], [pair("user", "first")], "{stored:?}");
    assert_eq!(stored.len(), 2, "B stored a refused message: {stored:?}");
    assert_eq!(stored[1]["status"], "generating", "{stored:?}");

    let (status, reply) = say(&b, &user, &other, "hello there").await;
    assert_eq!((status, &reply["reply"]), (StatusCode::OK, &json!("Meanwhile, elsewhere.")), "{reply}");
    // A's reply was not disturbed by B's refusals.
    assert_eq!(stream.next().await.map(|e| e.event), Some("delta".to_owned()));

    assert_eq!(cancel(&a, &user, &chat).await, (StatusCode::OK, json!({"cancelled": true})));
    let stored = settled(&b, &user, &chat, WAIT).await;
    assert_eq!(stored.len(), 2, "a refused message was stored: {stored:?}");
    assert_eq!(stored[0]["content"], "first");
    assert_eq!(mock.requests().await.len(), 2, "a refused message reached the provider");
}

#[tokio::test]
async fn the_events_of_a_reply_generated_by_one_server_are_followed_live_on_another_to_the_end() {
    // An SQLite file is served by one process; several servers need PostgreSQL.
    if !on_postgres() {
        return;
    }
    let (mock, a, b, user, chat) = setup(&[]).await;
    let full = words(30);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut on_a = sse::post_chat(&a, &user, json!({"chat_id": chat, "message": "tell me"})).await.unwrap();
    let mut streamed = read_deltas(&mut on_a, 1).await;
    let message_id = message_id_of(&streamed);

    let on_b = sse::follow(&b, &user, &chat, message_id, None).await.unwrap();
    let (rest, followed) = tokio::join!(on_a.collect(), on_b.collect());
    streamed.extend(rest);

    assert_eq!(text_of(&streamed), full, "A's own stream: {streamed:?}");
    assert_eq!(ids(&followed), (1..=followed.len() as u64).collect::<Vec<_>>(), "{followed:?}");
    let names = names(&followed);
    assert!(names.len() >= 2, "{followed:?}");
    assert_eq!((names[0], names[names.len() - 1]), ("start", "done"), "{followed:?}");
    assert!(names[1..names.len() - 1].iter().all(|n| *n == "delta"), "{followed:?}");
    assert!(names.len() - 2 >= 3, "B did not follow the reply as it grew, it told it at the end: {followed:?}");
    assert_eq!(text_of(&followed), full, "B's stream");
    assert_eq!(followed[0].data, streamed[0].data, "B's start says what A's did");
    let done = &followed[followed.len() - 1].data;
    assert_eq!((&done["message_id"], &done["finish_reason"]), (&json!(message_id), &json!("stop")), "{done}");

    for server in [&a, &b] {
        let stored = settled(server, &user, &chat, WAIT).await;
        assert_eq!(stored[1]["id"], message_id);
        assert_eq!((&stored[1]["status"], &stored[1]["content"]), (&json!("complete"), &json!(full)), "{stored:?}");
    }
}

#[tokio::test]
async fn a_cancel_on_another_server_stops_the_reply_and_closes_the_provider_request() {
    // An SQLite file is served by one process; several servers need PostgreSQL.
    if !on_postgres() {
        return;
    }
    let (mock, a, b, user, chat) = setup(&[]).await;
    let full = words(40);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut stream = sse::post_chat(&a, &user, json!({"chat_id": chat, "message": "talk slowly"})).await.unwrap();
    let mut events = read_deltas(&mut stream, 2).await;

    assert_eq!(cancel(&b, &user, &chat).await, (StatusCode::OK, json!({"cancelled": true})));
    // It answered once the reply was stored as stopped: no polling here.
    let stored = messages(&b, &user, &chat).await;
    assert_eq!(stored[1]["status"], "cancelled", "B answered before the reply was stored as stopped: {stored:?}");

    events.extend(rest_within(stream, Duration::from_secs(3)).await);
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), &last.data["finish_reason"]), ("done", &json!("cancelled")), "{events:?}");
    assert!(names(&events[1..events.len() - 1]).iter().all(|name| *name == "delta"), "{events:?}");
    let streamed = text_of(&events);
    assert!(streamed.len() < full.len() && full.starts_with(&streamed), "not cut short: {streamed:?}");
    wait_disconnected(&mock, 0, Duration::from_secs(2)).await;

    let stored = messages(&a, &user, &chat).await;
    assert_eq!(turns(&stored), [pair("user", "talk slowly"), pair("assistant", &streamed)], "not what A streamed");
    assert_eq!(stored[1]["id"], last.data["message_id"]);
    assert_eq!((&stored[1]["status"], &stored[1]["finish_reason"]), (&json!("cancelled"), &json!("cancelled")));
    assert_eq!(cancel(&b, &user, &chat).await, (StatusCode::OK, json!({"cancelled": false})), "nothing runs now");
}

#[tokio::test]
async fn deleting_a_chat_on_another_server_stops_its_running_reply() {
    // An SQLite file is served by one process; several servers need PostgreSQL.
    if !on_postgres() {
        return;
    }
    let (mock, a, b, user, chat) = setup(&[]).await;
    let full = words(40);
    mock.script([slow_reply(&full, 10)]).await.unwrap();
    let mut stream = sse::post_chat(&a, &user, json!({"chat_id": chat, "message": "doomed"})).await.unwrap();
    let mut events = read_deltas(&mut stream, 2).await;

    let (status, _, body) = b.call(Method::DELETE, &format!("/chats/{chat}"), Some(&user.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // A notices at its next flush, stops the provider and ends its stream as a cancel does.
    wait_disconnected(&mock, 0, Duration::from_secs(2)).await;
    events.extend(rest_within(stream, Duration::from_secs(3)).await);
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), &last.data["finish_reason"]), ("done", &json!("cancelled")), "{events:?}");
    assert!(text_of(&events).len() < full.len(), "the whole reply was streamed: {events:?}");
    let (status, _) = a.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the chat outlived its deletion on A");
}

#[tokio::test]
async fn a_reply_of_a_server_that_died_is_stored_interrupted_by_another_and_its_chat_freed() {
    // An SQLite file is served by one process; several servers need PostgreSQL.
    if !on_postgres() {
        return;
    }
    let lease = Duration::from_secs(2);
    let (mock, mut a, b, user, chat) = setup(&[("GENERATION_LEASE_SECONDS", "2")]).await;
    let full = words(60);
    mock.script([slow_reply(&full, 10), json!({"kind": "reply", "text": "B took over."})]).await.unwrap();
    let stream = sse::post_chat(&a, &user, json!({"chat_id": chat, "message": "long story"})).await.unwrap();

    // A task reads A's stream and hands its events over, so that what A sent before it died is still read when
    // the connection breaks (the task then fails, and its channel closes).
    let (sender, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(event) = stream.next().await {
            if sender.send(event).is_err() {
                return;
            }
        }
    });

    // A streams for longer than the lease: B must leave a reply that A keeps alive alone.
    let started = Instant::now();
    let mut events: Vec<SseEvent> = Vec::new();
    while started.elapsed() < lease + Duration::from_millis(500) {
        let event = tokio::time::timeout(WAIT, received.recv()).await.expect("no event from A").expect("A's stream");
        assert!(event.event == "start" || event.event == "delta", "A's reply ended: {events:?} {event:?}");
        events.push(event);
    }
    let message_id = message_id_of(&events);
    let stored = messages(&b, &user, &chat).await;
    assert_eq!(stored[1]["status"], "generating", "B took A's live reply for abandoned: {stored:?}");

    a.kill();
    let killed_at = Instant::now();
    while let Ok(Some(event)) = tokio::time::timeout(WAIT, received.recv()).await {
        events.push(event);
    }
    let streamed = text_of(&events);
    assert!(streamed.len() < full.len(), "A finished before it was killed: {events:?}");

    let deadline = killed_at + lease + Duration::from_secs(5);
    let reply = loop {
        let stored = messages(&b, &user, &chat).await;
        assert_eq!(stored[1]["id"], message_id, "{stored:?}");
        if stored[1]["status"] != "generating" {
            break stored[1].clone();
        }
        assert!(Instant::now() < deadline, "B left A's reply generating {:?} after A died", killed_at.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply["status"], "interrupted", "{reply}");
    let content = reply["content"].as_str().unwrap();
    assert!(!content.is_empty(), "the text A flushed before dying is lost: {reply}");
    assert!(streamed.starts_with(content), "stored {content:?}, which A did not stream ({streamed:?})");

    let (status, answer) = say(&b, &user, &chat, "are you there?").await;
    assert_eq!((status, &answer["reply"]), (StatusCode::OK, &json!("B took over.")), "{answer}");
}
