//! Streaming replies over real HTTP: `POST /chat` with `"stream": true` and the events endpoint.

use serde_json::json;

use crate::support::llm::setup;
use crate::support::sse::{self, names, text_of};

#[tokio::test]
async fn a_streamed_reply_is_numbered_events_and_stored_as_streamed() {
    let (mock, server, user, chat) = setup(None, &[]).await;
    mock.script([json!({"kind": "reply", "text": "One two three four five", "tokens_per_second": 200})]).await.unwrap();
    let stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "count"})).await.unwrap();
    let events = stream.collect().await;
    assert_eq!(names(&events)[0], "start");
    assert_eq!(*names(&events).last().unwrap(), "done");
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(text_of(&events), "One two three four five");
    let message_id = events[0].data["message_id"].as_i64().unwrap();
    let (_, stored) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(stored[1]["id"], message_id);
    assert_eq!(stored[1]["content"], "One two three four five");
    assert_eq!(stored[1]["status"], "complete");
    let replay = sse::follow(&server, &user, &chat, message_id, None).await.unwrap().collect().await;
    assert_eq!(names(&replay), ["start", "delta", "done"]);
}
