//! The OpenAI chat-completions dialect: answer shapes, stream framing, usage styles.

use serde_json::{Value, json};

use crate::common::{Api, parse_sse, post, start};

#[tokio::test]
async fn default_reply_answers_the_last_user_message() {
    let mock = start().await;
    let body = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "an older question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "line one\nline two"},
        ],
    });
    let response = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"], "chatcmpl-mock-1");
    assert_eq!(answer["object"], "chat.completion");
    assert!(answer["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(answer["model"], "gpt-test");
    assert_eq!(answer["choices"].as_array().unwrap().len(), 1);
    assert_eq!(answer["choices"][0]["index"], 0);
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    assert_eq!(answer["choices"][0]["message"]["content"], "Mock reply to: line one\nline two");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    // "Mock", " reply", " to:", " line", " one", "\nline", " two"; the prompt has 2 + 3 + 2 + 4 words.
    assert_eq!(answer["usage"], json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}));
}

#[tokio::test]
async fn stream_concatenates_to_the_text_and_ends_with_done() {
    let mock = start().await;
    let text = "one two\nthree  four\n";
    mock.script([json!({"kind": "reply", "text": text})]).await.unwrap();
    let response = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("hi", true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let sse = parse_sse(&response.text().await.unwrap());
    let events = &sse.events;
    assert!(events.iter().all(|event| event.name.is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|event| event.json()).collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-mock-1");
        assert_eq!(chunk["model"], "test-model");
        assert!(chunk.get("usage").is_none(), "usage without include_usage: {chunk}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let finish = chunks.last().unwrap();
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(Api::OpenAi.streamed_text(events), text);
    assert_eq!(Api::OpenAi.token_events(events).count(), 4);
}

#[tokio::test]
async fn usage_chunk_comes_only_with_include_usage() {
    let mock = start().await;
    let mut body = Api::OpenAi.body("count these words", true);
    body["stream_options"] = json!({"include_usage": true});
    let events = parse_sse(&post(&mock, "/v1/chat/completions", &body).await.text().await.unwrap()).events;
    let usage_chunk = events[events.len() - 2].json();
    assert_eq!(usage_chunk["choices"], json!([]));
    // "Mock reply to: count these words" is 6 tokens; the prompt is 3 words.
    assert_eq!(usage_chunk["usage"], json!({"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}));
    for event in &events[..events.len() - 2] {
        assert_eq!(event.json()["usage"], Value::Null, "as OpenAI does, other chunks carry usage: null");
    }

    body["stream_options"] = json!({"include_usage": false});
    let events = parse_sse(&post(&mock, "/v1/chat/completions", &body).await.text().await.unwrap()).events;
    assert!(events.iter().filter_map(|event| event.json_opt()).all(|chunk| chunk.get("usage").is_none()));
    assert!(events.iter().filter_map(|event| event.json_opt()).all(|chunk| chunk["choices"] != json!([])));
}

#[tokio::test]
async fn groq_style_puts_usage_on_the_finish_chunk() {
    let mock = start().await;
    mock.script([json!({"kind": "reply", "text": "a b c", "usage_style": "groq"})]).await.unwrap();
    let mut body = Api::OpenAi.body("x y", true);
    body["stream_options"] = json!({"include_usage": true});
    let events = parse_sse(&post(&mock, "/v1/chat/completions", &body).await.text().await.unwrap()).events;
    let chunks: Vec<Value> = events.iter().filter_map(|event| event.json_opt()).collect();
    let finish = chunks.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["x_groq"]["usage"], json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}));
    assert!(chunks.iter().all(|chunk| chunk["choices"] != json!([])), "no separate usage chunk");
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn usage_and_finish_reason_can_be_overridden_or_left_out() {
    let mock = start().await;
    mock.script([
        json!({"kind": "reply", "text": "cut short", "finish_reason": "length",
               "usage": {"prompt_tokens": 1000, "completion_tokens": 4096}}),
        json!({"kind": "reply", "usage_style": "none"}),
    ])
    .await
    .unwrap();
    let answer: Value = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", false)).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"], json!({"prompt_tokens": 1000, "completion_tokens": 4096, "total_tokens": 5096}));
    let answer: Value = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", false)).await.json().await.unwrap();
    assert!(answer.get("usage").is_none());
}

#[tokio::test]
async fn keep_alive_comments_go_between_events() {
    let mock = start().await;
    mock.script([json!({"kind": "reply", "text": "a b", "keep_alive_comments": true})]).await.unwrap();
    let sse = parse_sse(&post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", true)).await.text().await.unwrap());
    // Role chunk, 2 tokens, finish, [DONE]: 5 events, 4 gaps.
    assert_eq!(sse.events.len(), 5);
    assert_eq!(sse.comments, 4);
    assert_eq!(Api::OpenAi.streamed_text(&sse.events), "a b");
}

#[tokio::test]
async fn paths_without_v1_and_the_model_list() {
    let mock = start().await;
    let answer: Value = post(&mock, "/chat/completions", &Api::OpenAi.body("short", false)).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Mock reply to: short");
    let models: Value = reqwest::get(format!("{}/v1/models", mock.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert!(data.len() >= 2);
    assert!(data.iter().all(|model| model["object"] == "model" && model["id"].is_string()));
}

/// Clients that multiplex speak HTTP/2 from the first byte (h2c): many concurrent streams share one connection,
/// each answered whole.
#[tokio::test]
async fn h2c_clients_get_concurrent_streams_over_http2() {
    let mock = start().await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let url = format!("{}/v1/chat/completions", mock.base_url());
    let requests = (0..20).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response =
                client.post(&url).json(&Api::OpenAi.body(&format!("question {i}"), true)).send().await.unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            let sse = parse_sse(&response.text().await.unwrap());
            assert_eq!(Api::OpenAi.streamed_text(&sse.events), format!("Mock reply to: question {i}"));
        }
    });
    futures_util::future::join_all(requests).await;
}
