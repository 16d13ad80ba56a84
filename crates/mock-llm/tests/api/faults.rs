//! Every fault kind, in both dialects, streamed and not.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Api, BOTH, PATIENCE, client, parse_sse, post, read_body, read_tokens, start};

/// How long a "nothing more arrives" assertion watches; only ever a lower bound on a silence, never a wait for work.
const SILENCE: Duration = Duration::from_millis(300);

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

#[tokio::test]
async fn status_sends_the_provider_error_shape_and_retry_after() {
    for api in BOTH {
        for stream in [false, true] {
            let mock = start().await;
            mock.script([
                json!({"kind": "status", "status": 429, "retry_after": "1"}),
                json!({"kind": "status", "status": 503}),
                json!({"kind": "status", "status": 500, "message": "boom"}),
            ])
            .await
            .unwrap();
            let response = post(&mock, api.path(), &api.body("q", stream)).await;
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.unwrap();
            let overloaded: Value = post(&mock, api.path(), &api.body("q", stream)).await.json().await.unwrap();
            let response = post(&mock, api.path(), &api.body("q", stream)).await;
            assert!(response.headers().get("retry-after").is_none());
            let boom: Value = response.json().await.unwrap();
            match api {
                Api::OpenAi => {
                    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
                    assert!(body["error"]["message"].is_string() && body["error"]["type"].is_string());
                    assert_eq!(overloaded["error"]["type"], "server_error");
                    assert_eq!(boom["error"]["message"], "boom");
                }
                Api::Anthropic => {
                    assert_eq!(body["type"], "error");
                    assert_eq!(body["error"]["type"], "rate_limit_error");
                    assert!(body["error"]["message"].is_string());
                    assert_eq!(overloaded["error"]["type"], "overloaded_error");
                    assert_eq!(boom["error"], json!({"type": "api_error", "message": "boom"}));
                }
            }
        }
    }
}

#[tokio::test]
async fn status_body_can_be_any_json_or_raw_text() {
    let mock = start().await;
    mock.script([
        json!({"kind": "status", "status": 401, "body": {"detail": "custom"}}),
        json!({"kind": "status", "status": 502, "body": "<html>Bad gateway</html>"}),
    ])
    .await
    .unwrap();
    let response = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", false)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"detail": "custom"}));
    let response = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", false)).await;
    assert_eq!(response.status(), 502);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "<html>Bad gateway</html>");
}

#[tokio::test]
async fn hang_never_answers_and_does_not_block_other_requests() {
    for api in BOTH {
        for stream in [false, true] {
            let mock = start().await;
            mock.script([json!({"kind": "hang"})]).await.unwrap();
            let url = format!("{}{}", mock.base_url(), api.path());
            let body = api.body("q", stream);
            let hung = tokio::spawn(async move { client().post(url).json(&body).send().await });
            mock.wait_for_requests(PATIENCE, |requests| requests.len() == 1).await.unwrap();

            let answer = post(&mock, api.path(), &api.body("other", false)).await;
            assert_eq!(answer.status(), 200, "a hung request must not hold up the next one");
            assert!(!hung.is_finished());

            hung.abort();
            let requests = mock.wait_for_requests(PATIENCE, |requests| requests[0].disconnected).await.unwrap();
            assert!(!requests[1].disconnected);
        }
    }
}

#[tokio::test]
async fn hang_after_streams_some_tokens_then_stalls() {
    for api in BOTH {
        let mock = start().await;
        mock.script([json!({"kind": "hang_after", "tokens": 2, "text": "one two three four"})]).await.unwrap();
        let mut response = post(&mock, api.path(), &api.body("q", true)).await;
        assert_eq!(response.status(), 200);
        let received = read_tokens(api, &mut response, 2).await;
        assert_eq!(api.streamed_text(&parse_sse(&received).events), "one two");
        let next = tokio::time::timeout(SILENCE, response.chunk()).await;
        assert!(next.is_err(), "{api:?}: something arrived after the stall: {next:?}");
        assert!(!received.contains("[DONE]") && !received.contains("message_stop"));
        drop(response);
        mock.wait_for_requests(PATIENCE, |requests| requests[0].disconnected).await.unwrap();
    }
}

#[tokio::test]
async fn hang_after_without_streaming_sends_no_headers() {
    let mock = start().await;
    mock.script([json!({"kind": "hang_after", "tokens": 2})]).await.unwrap();
    let body = Api::Anthropic.body("q", false);
    let sending = post(&mock, "/v1/messages", &body);
    assert!(tokio::time::timeout(SILENCE, sending).await.is_err());
    mock.wait_for_requests(PATIENCE, |requests| requests.first().is_some_and(|request| request.disconnected))
        .await
        .unwrap();
}

#[tokio::test]
async fn cut_after_closes_the_stream_without_its_end() {
    for api in BOTH {
        let mock = start().await;
        mock.script([json!({"kind": "cut_after", "tokens": 3, "text": "a b c d e"})]).await.unwrap();
        let response = post(&mock, api.path(), &api.body("q", true)).await;
        assert_eq!(response.status(), 200);
        let (received, failure) = read_body(response).await;
        assert!(failure.is_some(), "{api:?}: the stream ended cleanly: {received}");
        let events = parse_sse(&received).events;
        assert_eq!(api.streamed_text(&events), "a b c");
        assert!(!received.contains("[DONE]") && !received.contains("message_stop") && !received.contains("\"stop\""));
        let requests = mock.requests().await;
        assert!(!requests[0].disconnected, "the mock closed the connection, the client did not leave");
    }
}

#[tokio::test]
async fn cut_after_without_streaming_truncates_the_json() {
    for api in BOTH {
        let mock = start().await;
        mock.script([json!({"kind": "cut_after", "tokens": 1})]).await.unwrap();
        let response = post(&mock, api.path(), &api.body("q", false)).await;
        assert_eq!(response.status(), 200);
        let (received, failure) = read_body(response).await;
        assert!(failure.is_some(), "{api:?}: the body ended cleanly: {received}");
        assert!(received.starts_with('{'));
        assert!(serde_json::from_str::<Value>(&received).is_err());
    }
}

#[tokio::test]
async fn malformed_sends_json_that_does_not_parse() {
    for api in BOTH {
        let mock = start().await;
        mock.script([json!({"kind": "malformed"}), json!({"kind": "malformed"})]).await.unwrap();
        let response = post(&mock, api.path(), &api.body("q", false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());

        let text = post(&mock, api.path(), &api.body("q", true)).await.text().await.unwrap();
        let events = parse_sse(&text).events;
        let unparsable = events.iter().filter(|event| event.data != "[DONE]" && event.json_opt().is_none()).count();
        assert_eq!(unparsable, 1, "{api:?}: {text}");
    }
}

#[tokio::test]
async fn null_content_is_well_formed_but_empty() {
    let mock = start().await;
    mock.script(vec![json!({"kind": "null_content"}); 4]).await.unwrap();
    let answer: Value = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", false)).await.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    let answer: Value = post(&mock, "/v1/messages", &Api::Anthropic.body("q", false)).await.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"], json!([]));

    let events =
        parse_sse(&post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", true)).await.text().await.unwrap())
            .events;
    assert_eq!(events[0].json()["choices"][0]["delta"]["content"], Value::Null);
    assert_eq!(Api::OpenAi.token_events(&events).count(), 0);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let events =
        parse_sse(&post(&mock, "/v1/messages", &Api::Anthropic.body("q", true)).await.text().await.unwrap()).events;
    let names: Vec<&str> = events.iter().filter_map(|event| event.name.as_deref()).collect();
    assert_eq!(names, ["message_start", "ping", "message_delta", "message_stop"]);
}

#[tokio::test]
async fn reset_aborts_the_connection_without_a_response() {
    for api in BOTH {
        for stream in [false, true] {
            let mock = start().await;
            mock.script([json!({"kind": "reset"})]).await.unwrap();
            let url = format!("{}{}", mock.base_url(), api.path());
            let err = client().post(&url).json(&api.body("q", stream)).send().await.unwrap_err();
            assert!(err.status().is_none());
            let chain = error_chain(&err);
            if cfg!(target_os = "linux") {
                assert!(chain.to_lowercase().contains("reset"), "{api:?}: not a reset: {chain}");
            }
            let after = post(&mock, api.path(), &api.body("q", stream)).await;
            assert_eq!(after.status(), 200, "the server keeps serving after a reset");
            assert!(!mock.requests().await[0].disconnected);
        }
    }
}
