//! The normalized request and answer shapes every provider adapter translates to and from.

use std::fmt;

/// Who speaks in a message sent to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// One request to one model.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The provider's own model id (e.g. `llama-3.1-8b-instant`).
    pub model: String,
    /// The conversation, system prompt first when there is one.
    pub messages: Vec<ChatMessage>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// Tokens counted by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It hit the output token limit.
    Length,
    /// A content filter stopped it.
    ContentFilter,
    /// Anything else the provider said, verbatim.
    Other(String),
}

impl FinishReason {
    /// Maps both OpenAI's (`stop`, `length`) and Anthropic's (`end_turn`, `max_tokens`) vocabularies.
    pub fn from_provider(raw: &str) -> Self {
        match raw {
            "stop" | "end_turn" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "content_filter" | "refusal" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(other) => other,
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub usage: Option<Usage>,
    pub finish_reason: Option<FinishReason>,
}

/// One piece of a streamed answer, normalized across providers.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamChunk {
    /// More text, in order.
    Text(String),
    /// Token counts (usually once, near the end).
    Usage(Usage),
    /// The model stopped; no more text follows.
    Finish(FinishReason),
}
