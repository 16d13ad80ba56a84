//! The two wire dialects the mock speaks, and the facts about one generation that both render from.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use serde_json::Value;

use crate::behaviour::UsageStyle;
use crate::prompt::ChatRequest;
use crate::{anthropic, openai};

/// Which provider API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

/// One answer's facts, independent of the dialect it is rendered in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generation {
    pub(crate) id: String,
    pub(crate) model: String,
    /// Unix seconds.
    pub(crate) created: u64,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    /// In OpenAI's vocabulary (`stop`, `length`, ...); the Anthropic renderer maps it.
    pub(crate) finish_reason: String,
    pub(crate) usage_style: UsageStyle,
    pub(crate) include_usage: bool,
}

impl Generation {
    pub(crate) fn new(dialect: Dialect, seq: u64, request: &ChatRequest, completion_tokens: u64) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since_epoch| since_epoch.as_secs());
        Self {
            id: dialect.response_id(seq),
            model: request.model.clone(),
            created,
            prompt_tokens: request.prompt_tokens,
            completion_tokens,
            finish_reason: "stop".to_owned(),
            usage_style: UsageStyle::OpenAi,
            include_usage: request.include_usage,
        }
    }
}

/// SSE comment sent between events when a reply asks for keep-alive comments.
pub(crate) const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

impl Dialect {
    fn response_id(self, seq: u64) -> String {
        match self {
            Self::OpenAi => format!("chatcmpl-mock-{seq}"),
            Self::Anthropic => format!("msg_mock_{seq}"),
        }
    }

    /// The non-streamed answer; `None` content is the `null_content` fault.
    pub(crate) fn completion(self, generation: &Generation, content: Option<&str>) -> Value {
        match self {
            Self::OpenAi => openai::completion(generation, content),
            Self::Anthropic => anthropic::completion(generation, content),
        }
    }

    /// Events before the first token.
    pub(crate) fn stream_open(self, generation: &Generation) -> Vec<Bytes> {
        match self {
            Self::OpenAi => vec![openai::stream_open(generation, Some(""))],
            Self::Anthropic => anthropic::stream_open(generation, true),
        }
    }

    /// The event carrying one token.
    pub(crate) fn stream_token(self, generation: &Generation, token: &str) -> Bytes {
        match self {
            Self::OpenAi => openai::stream_token(generation, token),
            Self::Anthropic => anthropic::stream_token(token),
        }
    }

    /// Events after the last token, up to the end of the stream.
    pub(crate) fn stream_close(self, generation: &Generation) -> Vec<Bytes> {
        match self {
            Self::OpenAi => openai::stream_close(generation),
            Self::Anthropic => anthropic::stream_close(generation, true),
        }
    }

    /// A complete stream without content: OpenAI's `content: null` delta, Anthropic's message with no block.
    pub(crate) fn stream_null_content(self, generation: &Generation) -> Vec<Bytes> {
        match self {
            Self::OpenAi => {
                let mut events = vec![openai::stream_open(generation, None)];
                events.extend(openai::stream_close(generation));
                events
            }
            Self::Anthropic => {
                let mut events = anthropic::stream_open(generation, false);
                events.extend(anthropic::stream_close(generation, false));
                events
            }
        }
    }

    /// One stream event whose data is not valid JSON.
    pub(crate) fn malformed_event(self) -> Bytes {
        match self {
            Self::OpenAi => Bytes::from_static(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"unterminated\n\n"),
            Self::Anthropic => Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"text\n\n",
            ),
        }
    }

    /// A status-200 body that is not valid JSON.
    pub(crate) fn malformed_body(self) -> &'static str {
        match self {
            Self::OpenAi => {
                "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
            }
            Self::Anthropic => "{\"id\":\"msg_mock\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":",
        }
    }

    /// The provider's error body for `status`.
    pub(crate) fn error_body(self, status: StatusCode, message: &str) -> Value {
        match self {
            Self::OpenAi => openai::error_body(status, message),
            Self::Anthropic => anthropic::error_body(status, message),
        }
    }
}
