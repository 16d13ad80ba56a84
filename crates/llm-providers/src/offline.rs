//! The built-in offline model: deterministic replies that say plainly they are not from a language model.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream;

use crate::{
    ChatProvider, ChatRole, ChunkStream, Completion, CompletionRequest, FinishReason, ProviderError, StreamChunk, Usage,
};

/// The provider name shown for the offline model.
pub const OFFLINE_PROVIDER: &str = "offline";
/// Its model id.
pub const OFFLINE_MODEL: &str = "offline-echo";
/// The most of the user's message quoted back.
const QUOTE_CHARS: usize = 200;

/// Answers without any network: for development without a provider key.
#[derive(Debug, Clone)]
pub struct OfflineModel {
    /// Pause between streamed words, so clients can see streaming work.
    word_delay: Duration,
}

impl OfflineModel {
    pub fn new(word_delay: Duration) -> Self {
        Self { word_delay }
    }

    /// The reply to `request`: always the same for the same last user message.
    pub fn reply(request: &CompletionRequest) -> String {
        let said = request.messages.iter().rev().find(|m| m.role == ChatRole::User).map_or("", |m| m.content.as_str());
        let mut quote: String = said.chars().take(QUOTE_CHARS).collect();
        if said.chars().count() > QUOTE_CHARS {
            quote.push('…');
        }
        format!(
            "This reply comes from the built-in offline model, not from a language model: no LLM provider is \
             configured (set GROQ_API_KEY to get real answers). You said: \"{quote}\""
        )
    }

    /// The reply cut into words, each but the first with its leading space, so that they join back exactly.
    fn pieces(text: &str) -> Vec<String> {
        let mut pieces = Vec::new();
        for (i, word) in text.split(' ').enumerate() {
            pieces.push(if i == 0 { word.to_owned() } else { format!(" {word}") });
        }
        pieces
    }

    fn usage(request: &CompletionRequest, pieces: usize) -> Usage {
        let prompt: usize = request.messages.iter().map(|m| m.content.split_whitespace().count()).sum();
        Usage {
            prompt_tokens: u32::try_from(prompt).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(pieces).unwrap_or(u32::MAX),
        }
    }
}

impl ChatProvider for OfflineModel {
    fn name(&self) -> &str {
        OFFLINE_PROVIDER
    }

    fn complete<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let text = Self::reply(request);
            let usage = Self::usage(request, Self::pieces(&text).len());
            Ok(Completion { text, usage: Some(usage), finish_reason: Some(FinishReason::Stop) })
        })
    }

    fn stream<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let pieces = Self::pieces(&Self::reply(request));
            let usage = Self::usage(request, pieces.len());
            let delay = self.word_delay;
            let words = stream::iter(pieces).then(move |piece| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(StreamChunk::Text(piece))
            });
            let tail = stream::iter([Ok(StreamChunk::Finish(FinishReason::Stop)), Ok(StreamChunk::Usage(usage))]);
            Ok(Box::pin(words.chain(tail)) as ChunkStream)
        })
    }
}

use futures_util::StreamExt;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatMessage;

    fn request(text: &str) -> CompletionRequest {
        CompletionRequest {
            model: OFFLINE_MODEL.into(),
            messages: vec![ChatMessage::new(ChatRole::System, "be nice"), ChatMessage::new(ChatRole::User, text)],
            max_output_tokens: None,
            temperature: None,
        }
    }

    #[tokio::test]
    async fn says_it_is_not_an_llm_and_is_deterministic() {
        let model = OfflineModel::new(Duration::ZERO);
        let a = model.complete(&request("Hello, AI!")).await.unwrap();
        let b = model.complete(&request("Hello, AI!")).await.unwrap();
        assert_eq!(a, b);
        assert!(a.text.contains("not from a language model"));
        assert!(a.text.contains("Hello, AI!"));
    }

    #[tokio::test]
    async fn streams_word_by_word_and_joins_back_exactly() {
        let model = OfflineModel::new(Duration::ZERO);
        let whole = model.complete(&request("multi\nline  text")).await.unwrap().text;
        let chunks: Vec<StreamChunk> =
            model.stream(&request("multi\nline  text")).await.unwrap().map(|c| c.unwrap()).collect().await;
        let texts: Vec<&str> =
            chunks.iter().filter_map(|c| if let StreamChunk::Text(t) = c { Some(t.as_str()) } else { None }).collect();
        assert!(texts.len() > 10, "word by word");
        assert_eq!(texts.concat(), whole);
        assert!(matches!(chunks[chunks.len() - 2], StreamChunk::Finish(FinishReason::Stop)));
    }

    #[test]
    fn quotes_at_most_200_characters() {
        let text = OfflineModel::reply(&request(&"x".repeat(1000)));
        assert!(text.contains(&format!("{}…", "x".repeat(200))));
        assert!(!text.contains(&"x".repeat(201)));
    }
}
