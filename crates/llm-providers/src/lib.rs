//! Talking to language models: the `ChatProvider` trait, its adapters (OpenAI-compatible, Anthropic, the
//! offline model), the shared HTTP client, and the alias router that retries and falls back.

pub mod anthropic;
mod error;
pub mod http;
mod http_provider;
pub mod offline;
pub mod openai;
mod provider;
pub mod registry;
pub mod retry;
pub mod router;
mod sse;
mod types;

pub use error::{FailureKind, ProviderError, TimeoutPhase};
pub use provider::{ChatProvider, ChunkStream};
pub use types::{ChatMessage, ChatRole, Completion, CompletionRequest, FinishReason, StreamChunk, Usage};
