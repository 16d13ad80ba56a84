//! The OpenAI-compatible chat-completions adapter: Groq, OpenAI, and any compatible server (Ollama, vLLM, ...).

use std::fmt;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{HttpClient, Timeouts, add_extra_headers};
use crate::http_provider::{Endpoint, Wire};
use crate::sse::{SseEvent, Step};
use crate::{Completion, CompletionRequest, FinishReason, ProviderError, StreamChunk, Usage};

/// Which request field carries the output limit: OpenAI and Groq now take `max_completion_tokens`
/// (OpenAI's reasoning models refuse `max_tokens`); older compatible servers know only `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

/// How to reach one OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    pub name: String,
    /// Up to and including the version, e.g. `https://api.groq.com/openai/v1`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// Extra headers sent with every request (e.g. OpenRouter's `HTTP-Referer`).
    pub headers: Vec<(String, String)>,
    pub max_tokens_field: MaxTokensField,
    pub timeouts: Timeouts,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct OpenAiCompatible {
    endpoint: Endpoint,
    max_tokens_field: MaxTokensField,
}

impl OpenAiCompatible {
    /// Fails only on a header name or value that HTTP cannot carry.
    pub fn new(config: OpenAiConfig, client: HttpClient) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| format!("provider {}: the API key holds characters HTTP cannot carry", config.name))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        add_extra_headers(&config.name, &config.headers, &mut headers)?;
        let endpoint = Endpoint {
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            name: config.name,
            headers,
            timeouts: config.timeouts,
            client,
        };
        Ok(Self { endpoint, max_tokens_field: config.max_tokens_field })
    }
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: &'a str,
}

/// A chat completions request, serialized straight from the conversation it borrows.
#[derive(Serialize)]
pub(crate) struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    /// Without it, streamed answers carry no token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireContent>,
    delta: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    content: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }
    }
}

/// One streamed chunk: text, a finish reason, and usage (top-level, or Groq's `x_groq.usage`).
#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    x_groq: Option<WireGroq>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireGroq {
    usage: Option<WireUsage>,
}

impl Wire for OpenAiCompatible {
    type Body<'a> = WireRequest<'a>;
    type Parser = fn(&SseEvent) -> Result<Step, ProviderError>;

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn body<'a>(&self, request: &'a CompletionRequest, stream: bool) -> WireRequest<'a> {
        let limit = request.max_output_tokens;
        let (max_tokens, max_completion_tokens) = match self.max_tokens_field {
            MaxTokensField::MaxTokens => (limit, None),
            MaxTokensField::MaxCompletionTokens => (None, limit),
        };
        WireRequest {
            model: &request.model,
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage { role: m.role.as_str(), content: &m.content })
                .collect(),
            stream,
            max_tokens,
            max_completion_tokens,
            // Through its shortest decimal form, so 0.7f32 goes out as 0.7, not 0.699999988079071.
            temperature: request
                .temperature
                .map(|temperature| temperature.to_string().parse::<f64>().unwrap_or(f64::from(temperature))),
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
        }
    }

    fn parse_completion(body: &str) -> Result<Completion, ProviderError> {
        let wire: WireCompletion = serde_json::from_str(body)
            .map_err(|err| ProviderError::UnusableAnswer(format!("malformed JSON: {err}")))?;
        let choice =
            wire.choices.into_iter().next().ok_or_else(|| ProviderError::UnusableAnswer("no choices".into()))?;
        let text = choice
            .message
            .and_then(|m| m.content)
            .filter(|text| !text.is_empty())
            .ok_or_else(|| ProviderError::UnusableAnswer("the answer has no content".into()))?;
        Ok(Completion {
            text,
            usage: wire.usage.map(Usage::from),
            finish_reason: choice.finish_reason.as_deref().map(FinishReason::from_provider),
        })
    }

    fn event_parser() -> Self::Parser {
        parse_event
    }
}

/// The chunks one SSE event carries; the `[DONE]` sentinel ends the answer. Stateless: every event stands alone.
fn parse_event(event: &SseEvent) -> Result<Step, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(Step::End(Vec::new()));
    }
    let chunk: WireChunk = serde_json::from_str(data)
        .map_err(|err| ProviderError::UnusableAnswer(format!("malformed stream chunk: {err}")))?;
    if let Some(error) = chunk.error {
        let message = crate::http::upstream_message(&error.to_string());
        // An error reported inside a 200 stream: the provider failed while answering.
        return Err(ProviderError::Upstream { status: 500, message });
    }
    let mut out = Vec::new();
    for choice in chunk.choices {
        if let Some(text) = choice.delta.and_then(|d| d.content).filter(|t| !t.is_empty()) {
            out.push(StreamChunk::Text(text));
        }
        if let Some(reason) = choice.finish_reason {
            out.push(StreamChunk::Finish(FinishReason::from_provider(&reason)));
        }
    }
    if let Some(usage) = chunk.usage.or_else(|| chunk.x_groq.and_then(|g| g.usage)) {
        out.push(StreamChunk::Usage(usage.into()));
    }
    Ok(Step::Chunks(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    fn client() -> HttpClient {
        HttpClient::new(Timeouts::default().connect, false).unwrap()
    }

    fn event(data: &str) -> SseEvent {
        SseEvent { event: "message".into(), data: data.into() }
    }

    #[test]
    fn parses_a_completion_and_refuses_null_content() {
        let ok = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi\nthere"},"finish_reason":"stop"}],
                    "usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
        let completion = OpenAiCompatible::parse_completion(ok).unwrap();
        assert_eq!(completion.text, "Hi\nthere");
        assert_eq!(completion.usage, Some(Usage { prompt_tokens: 9, completion_tokens: 3 }));
        assert_eq!(completion.finish_reason, Some(FinishReason::Stop));
        let null = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"stop"}]}"#;
        assert!(matches!(OpenAiCompatible::parse_completion(null), Err(ProviderError::UnusableAnswer(_))));
        assert!(matches!(OpenAiCompatible::parse_completion("{not json"), Err(ProviderError::UnusableAnswer(_))));
        assert!(matches!(
            OpenAiCompatible::parse_completion(r#"{"choices":[]}"#),
            Err(ProviderError::UnusableAnswer(_))
        ));
    }

    #[test]
    fn parses_stream_chunks_including_groq_usage() {
        let text = parse_event(&event(r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#));
        assert_eq!(text.unwrap(), Step::Chunks(vec![StreamChunk::Text("Hel".into())]));
        let groq = parse_event(&event(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":5,"completion_tokens":2}}}"#,
        ));
        assert_eq!(
            groq.unwrap(),
            Step::Chunks(vec![
                StreamChunk::Finish(FinishReason::Stop),
                StreamChunk::Usage(Usage { prompt_tokens: 5, completion_tokens: 2 })
            ])
        );
        assert_eq!(parse_event(&event("[DONE]")).unwrap(), Step::End(Vec::new()));
        assert!(parse_event(&event("{oops")).is_err());
    }

    #[tokio::test]
    async fn a_stream_without_done_is_an_error_not_a_short_answer() {
        let events = stream::iter(vec![Ok(event(r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#))]);
        let chunks: Vec<_> = crate::sse::normalize(events, parse_event).collect().await;
        assert_eq!(chunks.len(), 2);
        assert!(matches!(chunks[1], Err(ProviderError::UnusableAnswer(_))));
    }

    #[test]
    fn request_body_follows_the_spec() {
        let config = OpenAiConfig {
            name: "groq".into(),
            base_url: "http://x/v1/".into(),
            api_key: Some(SecretString::from("k".to_owned())),
            headers: vec![],
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            timeouts: Timeouts::default(),
        };
        let provider = OpenAiCompatible::new(config, client()).unwrap();
        assert_eq!(provider.endpoint.url, "http://x/v1/chat/completions");
        let request = CompletionRequest {
            model: "m".into(),
            messages: vec![crate::ChatMessage::new(crate::ChatRole::User, "hi")],
            max_output_tokens: Some(10),
            temperature: Some(0.5),
        };
        let body = serde_json::to_value(provider.body(&request, true)).unwrap();
        assert!(body.get("max_tokens").is_none(), "{body}");
        assert_eq!(body["max_completion_tokens"], 10);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["role"], "user");
        let warm = CompletionRequest { temperature: Some(0.7), ..request };
        let body = serde_json::to_string(&provider.body(&warm, false)).unwrap();
        assert!(body.contains(r#""temperature":0.7"#), "{body}");
        assert!(!body.contains("stream_options"), "{body}");
    }
}
