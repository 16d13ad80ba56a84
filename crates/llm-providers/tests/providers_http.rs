//! Both HTTP adapters against a local HTTP server: exact requests, real-shaped answers and streams, faults, timeouts.
#![expect(clippy::unwrap_used, clippy::panic, reason = "test helpers, like tests, fail loudly on anything unexpected")]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use llm_providers::anthropic::{Anthropic, AnthropicConfig};
use llm_providers::http::{HttpClient, Timeouts};
use llm_providers::openai::{MaxTokensField, OpenAiCompatible, OpenAiConfig};
use llm_providers::{
    ChatMessage, ChatProvider, ChatRole, Completion, CompletionRequest, FinishReason, ProviderError, StreamChunk,
    TimeoutPhase, Usage,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUTS: Timeouts =
    Timeouts { connect: Duration::from_secs(2), first_token: Duration::from_secs(10), total: Duration::from_secs(20) };

/// A server answering `POST route` with `response`; any other request gets wiremock's 404.
async fn serve(route: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(route)).respond_with(response).mount(&server).await;
    server
}

async fn the_only_request(server: &MockServer) -> wiremock::Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "exactly one request");
    requests.remove(0)
}

fn header<'a>(request: &'a wiremock::Request, name: &str) -> &'a str {
    request.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

fn request(messages: &[(ChatRole, &str)], max_output_tokens: Option<u32>) -> CompletionRequest {
    CompletionRequest {
        model: "the-model".into(),
        messages: messages.iter().map(|&(role, text)| ChatMessage::new(role, text)).collect(),
        max_output_tokens,
        temperature: Some(0.5),
    }
}

fn hello() -> CompletionRequest {
    request(&[(ChatRole::User, "Hello")], None)
}

async fn chunks_of(provider: &dyn ChatProvider) -> Vec<Result<StreamChunk, ProviderError>> {
    provider.stream(&hello()).await.unwrap().collect().await
}

fn text_of(chunks: &[Result<StreamChunk, ProviderError>]) -> String {
    chunks.iter().filter_map(|c| if let Ok(StreamChunk::Text(t)) = c { Some(t.as_str()) } else { None }).collect()
}

/// Named server-sent events, as Anthropic sends them.
fn sse(events: &[(&str, &str)]) -> String {
    events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

fn event_stream(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

// ---- Anthropic ------------------------------------------------------------------------------------------------

fn anthropic(server: &MockServer) -> Anthropic {
    let config = AnthropicConfig {
        base_url: server.uri(),
        api_key: Some(SecretString::from("sk-ant-test".to_owned())),
        timeouts: TIMEOUTS,
        ..AnthropicConfig::default()
    };
    Anthropic::new(config, HttpClient::new(TIMEOUTS.connect, false).unwrap()).unwrap()
}

/// Anthropic's documented stream of one text answer, with a text delta that spans lines.
const MESSAGE_START: &str = r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;
const BLOCK_START: &str = r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
const HELLO_DELTA: &str = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#;
const LINES_DELTA: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! Line one\nline two"}}"#;

#[tokio::test]
async fn anthropic_sends_the_messages_api_request_and_reads_the_answer() {
    let answer = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{ "type": "text", "text": "Bonjour" }, { "type": "text", "text": " !" }],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 21, "output_tokens": 5 },
    });
    let server = serve("/v1/messages", ResponseTemplate::new(200).set_body_json(answer)).await;
    let conversation = request(
        &[
            (ChatRole::System, "Be brief."),
            (ChatRole::Assistant, "an answer whose question fell out of the window"),
            (ChatRole::User, "Hi"),
            (ChatRole::Assistant, "Hello"),
            (ChatRole::User, "Say it"),
            (ChatRole::User, "in French"),
            (ChatRole::System, "Never apologise."),
        ],
        Some(256),
    );
    let completion = anthropic(&server).complete(&conversation).await.unwrap();
    let expected = Completion {
        text: "Bonjour !".into(),
        usage: Some(Usage { prompt_tokens: 21, completion_tokens: 5 }),
        finish_reason: Some(FinishReason::Stop),
    };
    assert_eq!(completion, expected);

    let sent = the_only_request(&server).await;
    assert_eq!(sent.url.path(), "/v1/messages");
    assert_eq!(header(&sent, "x-api-key"), "sk-ant-test");
    assert_eq!(header(&sent, "anthropic-version"), "2023-06-01");
    assert_eq!(header(&sent, "content-type"), "application/json");
    assert!(sent.headers.get("authorization").is_none());
    let body: Value = sent.body_json().unwrap();
    let expected = json!({
        "model": "the-model",
        "max_tokens": 256,
        "system": "Be brief.\n\nNever apologise.",
        "messages": [
            { "role": "user", "content": "Hi" },
            { "role": "assistant", "content": "Hello" },
            { "role": "user", "content": "Say it\n\nin French" },
        ],
        "temperature": 0.5,
        "stream": false,
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn anthropic_streams_the_documented_event_sequence() {
    let body = sse(&[
        ("message_start", MESSAGE_START),
        ("content_block_start", BLOCK_START),
        ("ping", r#"{"type": "ping"}"#),
        ("content_block_delta", HELLO_DELTA),
        ("content_block_delta", LINES_DELTA),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    let server = serve("/v1/messages", event_stream(body)).await;
    let chunks = chunks_of(&anthropic(&server)).await;
    let chunks: Vec<StreamChunk> = chunks.into_iter().collect::<Result<_, _>>().unwrap();
    let expected = [
        StreamChunk::Text("Hello".into()),
        StreamChunk::Text("! Line one\nline two".into()),
        StreamChunk::Finish(FinishReason::Stop),
        StreamChunk::Usage(Usage { prompt_tokens: 25, completion_tokens: 15 }),
    ];
    assert_eq!(chunks, expected);

    let body: Value = the_only_request(&server).await.body_json().unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 4096, "Anthropic requires a limit: the default stands in");
    assert!(body.get("system").is_none());
    assert_eq!(body["messages"], json!([{ "role": "user", "content": "Hello" }]));
}

#[tokio::test]
async fn anthropic_error_event_ends_the_stream_with_the_upstream_error() {
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let body = sse(&[("message_start", MESSAGE_START), ("content_block_delta", HELLO_DELTA), ("error", overloaded)]);
    let server = serve("/v1/messages", event_stream(body)).await;
    let chunks = chunks_of(&anthropic(&server)).await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(text_of(&chunks), "Hello");
    let Err(err) = &chunks[1] else { panic!("expected an error, got {chunks:?}") };
    assert!(matches!(err, ProviderError::Upstream { status: 529, message } if message == "Overloaded"), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn anthropic_cut_stream_is_an_error_not_a_short_answer() {
    let body = sse(&[("message_start", MESSAGE_START), ("content_block_delta", HELLO_DELTA)]);
    let server = serve("/v1/messages", event_stream(body)).await;
    let chunks = chunks_of(&anthropic(&server)).await;
    assert_eq!(text_of(&chunks), "Hello");
    let last = chunks.last().unwrap();
    assert!(matches!(last, Err(ProviderError::UnusableAnswer(m)) if m.contains("before the answer was complete")));
}

#[tokio::test]
async fn anthropic_error_statuses_are_typed() {
    let limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "12")
        .set_body_json(json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "slow down" } }));
    let server = serve("/v1/messages", limited).await;
    let err = anthropic(&server).complete(&hello()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(12)),
        "{err:?}"
    );

    let overloaded = ResponseTemplate::new(529)
        .set_body_json(json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }));
    let server = serve("/v1/messages", overloaded).await;
    let err = anthropic(&server).stream(&hello()).await.err().unwrap();
    assert!(matches!(&err, ProviderError::Upstream { status: 529, message } if message == "Overloaded"), "{err:?}");
    assert!(err.is_retryable());

    let unauthorized = ResponseTemplate::new(401).set_body_json(
        json!({ "type": "error", "error": { "type": "authentication_error", "message": "invalid x-api-key" } }),
    );
    let server = serve("/v1/messages", unauthorized).await;
    let err = anthropic(&server).complete(&hello()).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Upstream { status: 401, message } if message == "invalid x-api-key"));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn anthropic_answer_without_text_is_unusable() {
    let empty = json!({ "id": "msg_01", "type": "message", "role": "assistant", "content": [],
                        "stop_reason": "end_turn", "usage": { "input_tokens": 3, "output_tokens": 0 } });
    let server = serve("/v1/messages", ResponseTemplate::new(200).set_body_json(empty)).await;
    let err = anthropic(&server).complete(&hello()).await.unwrap_err();
    assert!(matches!(err, ProviderError::UnusableAnswer(_)), "{err:?}");
}

// ---- OpenAI-compatible ----------------------------------------------------------------------------------------

fn openai(server: &MockServer, max_tokens_field: MaxTokensField, timeouts: Timeouts) -> OpenAiCompatible {
    let config = OpenAiConfig {
        name: "groq".into(),
        base_url: format!("{}/v1", server.uri()),
        api_key: Some(SecretString::from("sk-test".to_owned())),
        headers: vec![("HTTP-Referer".into(), "https://chat.example".into()), ("X-Title".into(), "Chat".into())],
        max_tokens_field,
        timeouts,
    };
    OpenAiCompatible::new(config, HttpClient::new(timeouts.connect, false).unwrap()).unwrap()
}

const CHAT_COMPLETIONS: &str = "/v1/chat/completions";

#[tokio::test]
async fn openai_sends_the_chat_completions_request_and_reads_the_answer() {
    let answer = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "the-model",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Hi\nthere" }, "finish_reason": "length" }],
        "usage": { "prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12 },
    });
    let server = serve(CHAT_COMPLETIONS, ResponseTemplate::new(200).set_body_json(answer)).await;
    let provider = openai(&server, MaxTokensField::MaxCompletionTokens, TIMEOUTS);
    let conversation = request(&[(ChatRole::System, "Be brief."), (ChatRole::User, "Hi")], Some(256));
    let completion = provider.complete(&conversation).await.unwrap();
    let expected = Completion {
        text: "Hi\nthere".into(),
        usage: Some(Usage { prompt_tokens: 9, completion_tokens: 3 }),
        finish_reason: Some(FinishReason::Length),
    };
    assert_eq!(completion, expected);

    let sent = the_only_request(&server).await;
    assert_eq!(sent.url.path(), CHAT_COMPLETIONS);
    assert_eq!(header(&sent, "authorization"), "Bearer sk-test");
    assert_eq!(header(&sent, "http-referer"), "https://chat.example");
    assert_eq!(header(&sent, "x-title"), "Chat");
    assert_eq!(header(&sent, "content-type"), "application/json");
    let body: Value = sent.body_json().unwrap();
    let expected = json!({
        "model": "the-model",
        "messages": [{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "Hi" }],
        "stream": false,
        "max_completion_tokens": 256,
        "temperature": 0.5,
    });
    assert_eq!(body, expected);
    conforms_to_the_published_request_schema(&body);
}

/// A real-shaped OpenAI stream: keep-alive comments, a role-only first chunk, text across lines, one event whose
/// JSON spans two `data:` lines, the usage chunk `include_usage` asks for, and `[DONE]`.
const OPENAI_STREAM: &str = r#": keep-alive

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}

: keep-alive

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Line one\nline two"},"finish_reason":null}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
data: "choices":[{"index":0,"delta":{"content":", more"},"finish_reason":null}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}

data: [DONE]

"#;

#[tokio::test]
async fn openai_streams_a_real_shaped_event_stream() {
    let server = serve(CHAT_COMPLETIONS, event_stream(OPENAI_STREAM.to_owned())).await;
    let provider = openai(&server, MaxTokensField::MaxTokens, TIMEOUTS);
    let streamed = provider.stream(&request(&[(ChatRole::User, "Hi")], Some(64))).await.unwrap();
    let chunks: Vec<StreamChunk> = streamed.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>().unwrap();
    let expected = [
        StreamChunk::Text("Line one\nline two".into()),
        StreamChunk::Text(", more".into()),
        StreamChunk::Finish(FinishReason::Stop),
        StreamChunk::Usage(Usage { prompt_tokens: 9, completion_tokens: 4 }),
    ];
    assert_eq!(chunks, expected);

    let body: Value = the_only_request(&server).await.body_json().unwrap();
    let expected = json!({
        "model": "the-model",
        "messages": [{ "role": "user", "content": "Hi" }],
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": 64,
        "temperature": 0.5,
    });
    assert_eq!(body, expected);
    conforms_to_the_published_request_schema(&body);
}

#[tokio::test]
async fn openai_reads_groq_usage_from_x_groq() {
    let body = concat!(
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],",
        "\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}}\n\n",
        "data: [DONE]\n\n",
    );
    let server = serve(CHAT_COMPLETIONS, event_stream(body.to_owned())).await;
    let chunks = chunks_of(&openai(&server, MaxTokensField::MaxCompletionTokens, TIMEOUTS)).await;
    let chunks: Vec<StreamChunk> = chunks.into_iter().collect::<Result<_, _>>().unwrap();
    let expected = [
        StreamChunk::Text("Hi".into()),
        StreamChunk::Finish(FinishReason::Stop),
        StreamChunk::Usage(Usage { prompt_tokens: 5, completion_tokens: 2 }),
    ];
    assert_eq!(chunks, expected);
}

#[tokio::test]
async fn openai_error_statuses_and_unusable_answers_are_typed() {
    let limited = ResponseTemplate::new(429).insert_header("retry-after", "3").set_body_string("{}");
    let server = serve(CHAT_COMPLETIONS, limited).await;
    let err = openai(&server, MaxTokensField::MaxTokens, TIMEOUTS).complete(&hello()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)),
        "{err:?}"
    );

    let failing =
        ResponseTemplate::new(500).set_body_json(json!({ "error": { "message": "boom", "type": "server_error" } }));
    let server = serve(CHAT_COMPLETIONS, failing).await;
    let err = openai(&server, MaxTokensField::MaxTokens, TIMEOUTS).stream(&hello()).await.err().unwrap();
    assert!(matches!(&err, ProviderError::Upstream { status: 500, message } if message == "boom"), "{err:?}");

    let malformed = ResponseTemplate::new(200).set_body_raw("{\"choices\": [", "application/json");
    let null_content = ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": null }, "finish_reason": "stop" }],
    }));
    for answer in [malformed, null_content] {
        let server = serve(CHAT_COMPLETIONS, answer).await;
        let err = openai(&server, MaxTokensField::MaxTokens, TIMEOUTS).complete(&hello()).await.unwrap_err();
        assert!(matches!(err, ProviderError::UnusableAnswer(_)), "{err:?}");
    }
}

#[tokio::test]
async fn openai_hang_times_out_at_the_first_token_deadline_or_the_total_one() {
    // A whole answer's headers come only once it is generated: the total timeout bounds it. A stream's
    // headers come before its first token: the first-token timeout bounds them.
    let (first_token, total) = (Duration::from_millis(300), Duration::from_millis(700));
    let timeouts = Timeouts { first_token, total, ..TIMEOUTS };
    let hang =
        ResponseTemplate::new(200).set_body_raw(OPENAI_STREAM, "text/event-stream").set_delay(Duration::from_secs(10));
    let server = serve(CHAT_COMPLETIONS, hang).await;
    let provider = openai(&server, MaxTokensField::MaxTokens, timeouts);

    let started = Instant::now();
    let err = provider.complete(&hello()).await.unwrap_err();
    let whole = started.elapsed();
    assert!(matches!(err, ProviderError::Timeout { phase: TimeoutPhase::Total }), "{err:?}");
    assert!(whole >= total && whole < total * 4, "took {whole:?}");
    let started = Instant::now();
    let err = provider.stream(&hello()).await.err().unwrap();
    let streamed = started.elapsed();
    assert!(matches!(err, ProviderError::Timeout { phase: TimeoutPhase::FirstToken }), "{err:?}");
    assert!(streamed >= first_token && streamed < first_token * 4, "took {streamed:?}");
}

// ---- The published OpenAI request schema ----------------------------------------------------------------------

/// The excerpt of OpenAI's OpenAPI document kept in `tests/fixtures` (see its README).
fn openai_spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai-chat-completion-request.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

/// Asserts that `body` passes the structural check below.
fn conforms_to_the_published_request_schema(body: &Value) {
    let problems = schema_problems(body);
    assert!(problems.is_empty(), "{problems:?}");
}

/// A structural check against `CreateChatCompletionRequest`: every field sent, at any depth, is declared by the
/// schema, and every field it requires is sent.
fn schema_problems(body: &Value) -> Vec<String> {
    let spec = openai_spec();
    let schemas = flatten(spec, &spec["components"]["schemas"]["CreateChatCompletionRequest"]);
    let mut problems = Vec::new();
    for schema in &schemas {
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let required = required.as_str().unwrap_or_default();
            if body.get(required).is_none() {
                problems.push(format!("body.{required} is required"));
            }
        }
    }
    undeclared(spec, &schemas, body, "body", &mut problems);
    problems
}

#[test]
fn the_schema_check_catches_undeclared_and_missing_fields() {
    let bad = json!({ "model": "m", "max_output_tokens": 1, "stream_options": { "include_usage": true, "usage": 1 } });
    let problems = schema_problems(&bad);
    let expected = [
        "body.messages is required",
        "body.max_output_tokens is undeclared",
        "body.stream_options.usage is undeclared",
    ];
    assert_eq!(problems, expected);
    let good = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] });
    assert_eq!(schema_problems(&good), Vec::<String>::new());
}

/// `schema` and every schema it is composed of (`$ref`, `allOf`, `anyOf`, `oneOf`).
fn flatten<'a>(spec: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let mut out = vec![schema];
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = spec.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {reference}"));
        out.extend(flatten(spec, target));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for part in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
            out.extend(flatten(spec, part));
        }
    }
    out
}

fn undeclared(spec: &Value, schemas: &[&Value], value: &Value, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let declared: Vec<&Value> = schemas
                    .iter()
                    .filter_map(|s| s.get("properties").and_then(|p| p.get(name)))
                    .flat_map(|s| flatten(spec, s))
                    .collect();
                if declared.is_empty() {
                    problems.push(format!("{at}.{name} is undeclared"));
                } else {
                    undeclared(spec, &declared, field, &format!("{at}.{name}"), problems);
                }
            }
        }
        Value::Array(items) => {
            let declared: Vec<&Value> =
                schemas.iter().filter_map(|s| s.get("items")).flat_map(|s| flatten(spec, s)).collect();
            if declared.is_empty() {
                problems.push(format!("{at} is not an array in the schema"));
                return;
            }
            for (i, item) in items.iter().enumerate() {
                undeclared(spec, &declared, item, &format!("{at}[{i}]"), problems);
            }
        }
        _ => {}
    }
}
