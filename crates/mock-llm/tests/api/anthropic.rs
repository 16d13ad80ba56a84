//! The Anthropic Messages dialect: answer shape and the named stream events.

use serde_json::{Value, json};

use crate::common::{Api, parse_sse, post, start};

#[tokio::test]
async fn answer_has_the_messages_shape_and_counts_the_system_prompt() {
    let mock = start().await;
    let body = json!({
        "model": "claude-test",
        "max_tokens": 100,
        "system": "you are terse",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "tell me\nsomething"}]}],
    });
    let response = post(&mock, "/v1/messages", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({
            "id": "msg_mock_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": "Mock reply to: tell me\nsomething"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 6, "output_tokens": 6},
        })
    );
}

#[tokio::test]
async fn stream_sends_the_named_events_in_order() {
    let mock = start().await;
    let text = "first line\nsecond";
    mock.script([json!({"kind": "reply", "text": text})]).await.unwrap();
    let response = post(&mock, "/v1/messages", &Api::Anthropic.body("hello there", true)).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = parse_sse(&response.text().await.unwrap()).events;
    let names: Vec<&str> = events.iter().map(|event| event.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for event in &events {
        assert_eq!(event.json()["type"], event.name.as_deref().unwrap(), "data.type names the event");
    }
    let start = events[0].json();
    assert_eq!(start["message"]["id"], "msg_mock_1");
    assert_eq!(start["message"]["role"], "assistant");
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["usage"], json!({"input_tokens": 2, "output_tokens": 1}));
    assert_eq!(events[1].json()["content_block"], json!({"type": "text", "text": ""}));
    assert_eq!(events[3].json()["delta"], json!({"type": "text_delta", "text": "first"}));
    assert_eq!(Api::Anthropic.streamed_text(&events), text);
    assert_eq!(
        events[7].json(),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 3}})
    );
}

#[tokio::test]
async fn finish_reason_maps_to_a_stop_reason_and_the_short_path_works() {
    let mock = start().await;
    mock.script([json!({"kind": "reply", "text": "partial", "finish_reason": "length"})]).await.unwrap();
    let answer: Value = post(&mock, "/messages", &Api::Anthropic.body("q", false)).await.json().await.unwrap();
    assert_eq!(answer["stop_reason"], "max_tokens");
    assert_eq!(answer["content"][0]["text"], "partial");
    assert_eq!(mock.requests().await[0].path, "/messages");
}
