//! The `ChatProvider` trait: one model call, whole or streamed; object-safe so providers live behind `Arc<dyn>`.

use std::pin::Pin;

use futures_util::Stream;
use futures_util::future::BoxFuture;

use crate::{Completion, CompletionRequest, ProviderError, StreamChunk};

/// The normalized chunks of a streamed answer.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, ProviderError>> + Send>>;

/// A way to reach models: an HTTP API or the built-in offline model.
pub trait ChatProvider: Send + Sync + std::fmt::Debug {
    /// The provider's configured name (`groq`, `anthropic`, `offline`, ...), for logs and `/models`.
    fn name(&self) -> &str;

    /// The whole answer at once.
    fn complete<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>>;

    /// The answer as it is generated. The future resolves once the provider has accepted the request
    /// (an error status is an `Err` here); failures after that arrive as `Err` items of the stream.
    fn stream<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<ChunkStream, ProviderError>>;
}
