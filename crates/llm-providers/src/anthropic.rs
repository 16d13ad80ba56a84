//! The Anthropic Messages API adapter (`POST /v1/messages`), spoken natively: its wire format is not OpenAI's.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::{HttpClient, Timeouts, add_extra_headers, upstream_message};
use crate::http_provider::{Endpoint, Wire};
use crate::sse::{EventParser, SseEvent, Step};
use crate::{ChatMessage, ChatRole, Completion, CompletionRequest, FinishReason, ProviderError, StreamChunk, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` this adapter is written against.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens` on every request; this is used when the caller sets no limit.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// How to reach Anthropic (or a server speaking its Messages API).
#[derive(Clone)]
pub struct AnthropicConfig {
    pub name: String,
    /// Without the version: the adapter appends `/v1/messages`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// The `anthropic-version` header.
    pub version: String,
    /// Extra headers sent with every request (e.g. `anthropic-beta`).
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        Self {
            name: "anthropic".to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            version: DEFAULT_VERSION.to_owned(),
            headers: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Anthropic {
    endpoint: Endpoint,
}

impl Anthropic {
    /// Fails only on a header name or value that HTTP cannot carry.
    pub fn new(config: AnthropicConfig, client: HttpClient) -> Result<Self, String> {
        let name = &config.name;
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(key.expose_secret())
                .map_err(|_| format!("provider {name}: the API key holds characters HTTP cannot carry"))?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        let version = HeaderValue::from_str(&config.version)
            .map_err(|_| format!("provider {name}: invalid anthropic-version {:?}", config.version))?;
        headers.insert("anthropic-version", version);
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        add_extra_headers(name, &config.headers, &mut headers)?;
        let endpoint = Endpoint {
            url: format!("{}/v1/messages", config.base_url.trim_end_matches('/')),
            name: config.name,
            headers,
            timeouts: config.timeouts,
            client,
        };
        Ok(Self { endpoint })
    }
}

#[derive(Serialize)]
pub(crate) struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
}

#[derive(Serialize, Debug, PartialEq)]
struct WireMessage {
    role: &'static str,
    content: String,
}

/// Splits the conversation into Anthropic's shape: the system prompt apart, then turns that start with the user
/// and alternate, as the Messages API requires.
fn conversation(messages: &[ChatMessage]) -> (Option<String>, Vec<WireMessage>) {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<WireMessage> = Vec::new();
    // Anthropic refuses blank text blocks with a 400, so a blank message (an answer that failed before its first
    // token, say) is left out rather than sent.
    for message in messages.iter().filter(|m| !m.content.trim().is_empty()) {
        let role = match message.role {
            ChatRole::System => {
                system.push(&message.content);
                continue;
            }
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            // The first turn must be the user's. An assistant message comes first when the context window cut off
            // the question it answered; an answer without its question is the least useful context there is, so it
            // is dropped rather than paired with an invented user turn.
            None if role == "assistant" => {}
            _ => turns.push(WireMessage { role, content: message.content.clone() }),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (system, turns)
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct WireUsage {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    cache_creation_input_tokens: Option<u32>,
    cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Anthropic counts cached prompt tokens apart from `input_tokens`; OpenAI's `prompt_tokens`, which `Usage`
    /// follows, includes them.
    fn prompt_tokens(&self) -> Option<u32> {
        let cached =
            self.cache_creation_input_tokens.unwrap_or(0).saturating_add(self.cache_read_input_tokens.unwrap_or(0));
        self.input_tokens.map(|input| input.saturating_add(cached))
    }
}

impl Wire for Anthropic {
    type Body<'a> = WireRequest<'a>;
    type Parser = Progress;

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn body<'a>(&self, request: &'a CompletionRequest, stream: bool) -> WireRequest<'a> {
        let (system, messages) = conversation(&request.messages);
        WireRequest {
            model: &request.model,
            max_tokens: request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            messages,
            system,
            temperature: request.temperature,
            stream,
        }
    }

    fn parse_completion(body: &str) -> Result<Completion, ProviderError> {
        let wire: WireResponse = serde_json::from_str(body)
            .map_err(|err| ProviderError::UnusableAnswer(format!("malformed JSON: {err}")))?;
        // Citations split one answer into several text blocks; other block types (tool use, thinking) are not text.
        let text: String = wire
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text.as_deref())
            .collect();
        if text.is_empty() {
            return Err(ProviderError::UnusableAnswer("the answer has no text".into()));
        }
        Ok(Completion {
            text,
            usage: wire.usage.map(|u| Usage {
                prompt_tokens: u.prompt_tokens().unwrap_or(0),
                completion_tokens: u.output_tokens.unwrap_or(0),
            }),
            finish_reason: wire.stop_reason.as_deref().map(FinishReason::from_provider),
        })
    }

    fn event_parser() -> Progress {
        Progress::default()
    }
}

/// The fields of Anthropic's stream events that this adapter reads; which are set depends on the event.
#[derive(Deserialize)]
struct WireEvent {
    /// `message_start`.
    message: Option<WireStarted>,
    /// `content_block_delta` (the text) and `message_delta` (the stop reason).
    #[serde(default)]
    delta: WireDelta,
    /// `message_delta`.
    usage: Option<WireUsage>,
    /// `error`.
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireStarted {
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
}

fn parse(event: &SseEvent) -> Result<WireEvent, ProviderError> {
    serde_json::from_str(&event.data)
        .map_err(|err| ProviderError::UnusableAnswer(format!("malformed {} event: {err}", event.event)))
}

/// What a stream has learnt so far: the token counts arrive split over `message_start` and `message_delta`.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

impl Progress {
    fn absorb(&mut self, usage: Option<WireUsage>) {
        let usage = usage.unwrap_or_default();
        self.prompt_tokens = usage.prompt_tokens().or(self.prompt_tokens);
        self.completion_tokens = usage.output_tokens.or(self.completion_tokens);
    }
}

impl EventParser for Progress {
    /// The chunks one event carries; `message_stop` ends the answer.
    fn on_event(&mut self, event: &SseEvent) -> Result<Step, ProviderError> {
        match event.event.as_str() {
            "message_start" => {
                self.absorb(parse(event)?.message.and_then(|m| m.usage));
                Ok(Step::Chunks(Vec::new()))
            }
            "content_block_delta" => {
                // Other deltas (`input_json_delta`, `thinking_delta`, ...) carry no answer text.
                let WireDelta { kind, text, .. } = parse(event)?.delta;
                let text = text.filter(|text| kind.as_deref() == Some("text_delta") && !text.is_empty());
                Ok(Step::Chunks(text.map(StreamChunk::Text).into_iter().collect()))
            }
            "message_delta" => {
                let WireEvent { delta, usage, .. } = parse(event)?;
                // Its counts are cumulative: they replace those of `message_start`.
                self.absorb(usage);
                let finish = delta.stop_reason.map(|reason| StreamChunk::Finish(FinishReason::from_provider(&reason)));
                Ok(Step::Chunks(finish.into_iter().collect()))
            }
            "message_stop" => {
                // Sent once, here, so that several `message_delta` events cannot yield several counts (the shared
                // loop puts a `stop` finish before it if no stop reason came).
                let usage = (self.prompt_tokens.is_some() || self.completion_tokens.is_some()).then(|| Usage {
                    prompt_tokens: self.prompt_tokens.unwrap_or(0),
                    completion_tokens: self.completion_tokens.unwrap_or(0),
                });
                Ok(Step::End(usage.map(StreamChunk::Usage).into_iter().collect()))
            }
            "error" => {
                let kind = parse(event).ok().and_then(|e| e.error).map(|e| e.kind);
                // 529 is the status Anthropic gives `overloaded_error` outside a stream.
                let status = if kind.as_deref() == Some("overloaded_error") { 529 } else { 500 };
                Err(ProviderError::Upstream { status, message: upstream_message(&event.data) })
            }
            // `ping`, `content_block_start`/`_stop`, and the event types Anthropic says it may add.
            _ => Ok(Step::Chunks(Vec::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    fn client() -> HttpClient {
        HttpClient::new(Timeouts::default().connect, false).unwrap()
    }

    fn message(role: ChatRole, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent { event: name.into(), data: data.into() }
    }

    fn text_delta(text: &str) -> SseEvent {
        let data = serde_json::json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": text } });
        event("content_block_delta", &data.to_string())
    }

    async fn run(events: Vec<SseEvent>) -> Vec<Result<StreamChunk, ProviderError>> {
        crate::sse::normalize(stream::iter(events.into_iter().map(Ok)), Progress::default()).collect().await
    }

    #[test]
    fn system_goes_apart_and_turns_alternate_from_the_user() {
        let (system, turns) = conversation(&[
            message(ChatRole::System, "Be brief."),
            message(ChatRole::Assistant, "an answer whose question was cut"),
            message(ChatRole::User, "one"),
            message(ChatRole::User, "two"),
            message(ChatRole::System, "Answer in French."),
            message(ChatRole::Assistant, "un"),
            message(ChatRole::Assistant, "  "),
            message(ChatRole::Assistant, "deux"),
            message(ChatRole::User, "three"),
        ]);
        assert_eq!(system.as_deref(), Some("Be brief.\n\nAnswer in French."));
        let expected = [("user", "one\n\ntwo"), ("assistant", "un\n\ndeux"), ("user", "three")]
            .map(|(role, content)| WireMessage { role, content: content.into() });
        assert_eq!(turns, expected);
        assert_eq!(conversation(&[message(ChatRole::User, "hi")]).0, None);
    }

    #[test]
    fn request_body_has_the_required_max_tokens_and_omits_unset_fields() {
        let provider = Anthropic::new(AnthropicConfig::default(), client()).unwrap();
        assert_eq!(provider.endpoint.url, "https://api.anthropic.com/v1/messages");
        let request = CompletionRequest {
            model: "claude-x".into(),
            messages: vec![message(ChatRole::User, "hi")],
            max_output_tokens: None,
            temperature: None,
        };
        let body = serde_json::to_value(provider.body(&request, false)).unwrap();
        let expected = serde_json::json!({
            "model": "claude-x", "max_tokens": DEFAULT_MAX_TOKENS, "stream": false,
            "messages": [{ "role": "user", "content": "hi" }],
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn the_key_stays_out_of_debug_and_bad_headers_are_refused() {
        let config =
            AnthropicConfig { api_key: Some(SecretString::from("sk-ant-secret".to_owned())), ..Default::default() };
        assert!(!format!("{config:?}").contains("sk-ant-secret"));
        let provider = Anthropic::new(config, client()).unwrap();
        assert!(!format!("{provider:?}").contains("sk-ant-secret"));
        let bad_key = AnthropicConfig { api_key: Some(SecretString::from("a\nb".to_owned())), ..Default::default() };
        assert!(Anthropic::new(bad_key, client()).is_err());
        let bad_header = AnthropicConfig { headers: vec![("bad name".into(), "v".into())], ..Default::default() };
        assert!(Anthropic::new(bad_header, client()).is_err());
    }

    #[test]
    fn parses_an_answer_and_refuses_one_without_text() {
        let ok = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"text","text":"Hello\n"},{"type":"tool_use","id":"t","name":"f","input":{}},
                       {"type":"text","text":"world"}],
            "stop_reason":"max_tokens","stop_sequence":null,
            "usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":4}}"#;
        let completion = Anthropic::parse_completion(ok).unwrap();
        assert_eq!(completion.text, "Hello\nworld");
        assert_eq!(completion.usage, Some(Usage { prompt_tokens: 15, completion_tokens: 4 }));
        assert_eq!(completion.finish_reason, Some(FinishReason::Length));
        let empty =
            r#"{"type":"message","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":0}}"#;
        assert!(matches!(Anthropic::parse_completion(empty), Err(ProviderError::UnusableAnswer(_))));
        assert!(matches!(Anthropic::parse_completion("{oops"), Err(ProviderError::UnusableAnswer(_))));
    }

    #[tokio::test]
    async fn a_whole_stream_gives_text_then_finish_then_one_usage() {
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#;
        let tool = r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}}"#;
        let stop = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#;
        let events = vec![
            event("message_start", start),
            event("ping", "{}"),
            text_delta("Hi"),
            event("content_block_delta", tool),
            event("some_future_event", "not even JSON"),
            event("message_delta", stop),
            event("message_stop", "{}"),
            text_delta("late"),
        ];
        let chunks: Vec<StreamChunk> = run(events).await.into_iter().collect::<Result<_, _>>().unwrap();
        let usage = Usage { prompt_tokens: 25, completion_tokens: 7 };
        let expected =
            [StreamChunk::Text("Hi".into()), StreamChunk::Finish(FinishReason::Stop), StreamChunk::Usage(usage)];
        assert_eq!(chunks, expected);
        // With no stop reason and no counts, `message_stop` still ends the answer.
        let chunks = run(vec![event("message_stop", "{}")]).await;
        assert_eq!(
            chunks.into_iter().collect::<Result<Vec<_>, _>>().unwrap(),
            [StreamChunk::Finish(FinishReason::Stop)]
        );
    }

    #[tokio::test]
    async fn error_events_cut_streams_and_malformed_events_fail() {
        let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let chunks = run(vec![event("error", overloaded), event("message_stop", "{}")]).await;
        assert_eq!(chunks.len(), 1);
        assert!(matches!(&chunks[0], Err(ProviderError::Upstream { status: 529, message }) if message == "Overloaded"));
        let chunks = run(vec![event("error", r#"{"type":"error","error":{"type":"api_error","message":"x"}}"#)]).await;
        assert!(matches!(&chunks[0], Err(ProviderError::Upstream { status: 500, .. })));

        let chunks = run(vec![text_delta("Hi")]).await;
        assert_eq!(chunks.len(), 2);
        assert!(matches!(&chunks[1], Err(ProviderError::UnusableAnswer(m)) if m.contains("before the answer")));

        let chunks = run(vec![event("content_block_delta", "{oops"), event("message_stop", "{}")]).await;
        assert_eq!(chunks.len(), 1);
        assert!(matches!(&chunks[0], Err(ProviderError::UnusableAnswer(_))));
    }
}
