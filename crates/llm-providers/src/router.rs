//! Model aliases: each an ordered list of targets, tried with retries and then fallback, only before the first token.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, stream};

use crate::retry::RetryPolicy;
use crate::{ChatMessage, ChatProvider, ChunkStream, CompletionRequest, ProviderError, StreamChunk};

/// One way to serve an alias: a provider and a model on it.
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<dyn ChatProvider>,
    pub model: String,
    /// Tokens the model accepts, prompt and answer together.
    pub context_window: u32,
    /// Tokens reserved for the answer (sent as the output limit).
    pub max_output_tokens: u32,
    pub temperature: Option<f32>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("provider", &self.provider.name())
            .field("model", &self.model)
            .field("context_window", &self.context_window)
            .finish_non_exhaustive()
    }
}

/// A name clients use (`fast`, `balanced`, `smart`, ...) and the targets behind it, in order.
#[derive(Debug, Clone)]
pub struct Alias {
    pub name: String,
    /// Empty when none of its configured providers is available (production without keys).
    pub targets: Vec<Target>,
    pub retry: RetryPolicy,
}

impl Alias {
    /// Prompt tokens that fit every target: the smallest context window less its reserved output, so
    /// that a fallback never receives a prompt too large for it.
    pub fn prompt_budget(&self) -> u32 {
        self.targets.iter().map(|t| t.context_window.saturating_sub(t.max_output_tokens)).min().unwrap_or(0)
    }

    /// The most tokens a reply may take, whichever target answers it.
    pub fn max_output_tokens(&self) -> u32 {
        self.targets.iter().map(|t| t.max_output_tokens).max().unwrap_or(0)
    }
}

/// What served a call.
#[derive(Debug)]
pub struct Routed<T> {
    pub value: T,
    pub provider: String,
    pub model: String,
    /// Calls made, all targets together (1 when the first call succeeded).
    pub attempts: u32,
}

/// Why an alias could not be served: the last failure, and on which provider.
#[derive(Debug, Clone)]
pub struct RouteError {
    pub error: ProviderError,
    /// The provider of the last attempt; `None` when the alias has no target.
    pub provider: Option<String>,
    pub attempts: u32,
    /// Every target failed to be reached at all (connection refused, DNS, TLS...).
    pub all_unreachable: bool,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} attempt(s)", self.error, self.attempts)
    }
}

impl std::error::Error for RouteError {}

/// The aliases, in the order they were configured; the first is the default.
#[derive(Debug, Clone)]
pub struct Router {
    aliases: Vec<Alias>,
}

impl Router {
    pub fn new(aliases: Vec<Alias>) -> Self {
        Self { aliases }
    }

    pub fn aliases(&self) -> &[Alias] {
        &self.aliases
    }

    pub fn alias(&self, name: &str) -> Option<&Alias> {
        self.aliases.iter().find(|a| a.name == name)
    }

    /// A stream from the first target whose stream yields text: it begins with the first non-empty
    /// piece of text (and any usage or finish chunk that came before it). After that, failures are the
    /// caller's to report: text may already have been shown, so nothing is retried. A stream that ends
    /// or fails before any text counts as a failed attempt, retried and fallen back from like any other.
    pub async fn stream(&self, alias: &Alias, messages: &[ChatMessage]) -> Result<Routed<ChunkStream>, RouteError> {
        attempt_all(alias, messages, |target, request| {
            let provider = Arc::clone(&target.provider);
            async move {
                let mut chunks = provider.stream(&request).await?;
                let mut before = Vec::new();
                loop {
                    match chunks.next().await {
                        Some(Ok(StreamChunk::Text(text))) if text.is_empty() => {}
                        Some(Ok(first @ StreamChunk::Text(_))) => {
                            before.push(Ok(first));
                            return Ok(Box::pin(stream::iter(before).chain(chunks)) as ChunkStream);
                        }
                        Some(Ok(other)) => before.push(Ok(other)),
                        Some(Err(err)) => return Err(err),
                        None => {
                            return Err(ProviderError::UnusableAnswer("the stream ended without any text".into()));
                        }
                    }
                }
            }
        })
        .await
    }
}

/// Tries each target in order, retrying each per the alias's policy, until one call succeeds.
async fn attempt_all<T, F, Fut>(alias: &Alias, messages: &[ChatMessage], call: F) -> Result<Routed<T>, RouteError>
where
    F: Fn(&Target, CompletionRequest) -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempts = 0;
    let mut last: Option<(ProviderError, String)> = None;
    let mut all_unreachable = true;
    for target in &alias.targets {
        let request = CompletionRequest {
            model: target.model.clone(),
            messages: messages.to_vec(),
            max_output_tokens: Some(target.max_output_tokens),
            temperature: target.temperature,
        };
        let mut retry = 0;
        loop {
            attempts += 1;
            let started = Instant::now();
            match call(target, request.clone()).await {
                Ok(value) => {
                    return Ok(Routed {
                        value,
                        provider: target.provider.name().to_owned(),
                        model: target.model.clone(),
                        attempts,
                    });
                }
                Err(error) => {
                    all_unreachable &= matches!(error, ProviderError::Unreachable(_));
                    let delay = alias.retry.delay(retry, &error);
                    tracing::warn!(
                        alias = %alias.name,
                        provider = target.provider.name(),
                        model = %target.model,
                        attempt = attempts,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        error = %error,
                        next = if delay.is_some() { "retry" } else { "next target" },
                        "provider call failed"
                    );
                    last = Some((error, target.provider.name().to_owned()));
                    match delay {
                        Some(delay) => {
                            tokio::time::sleep(delay).await;
                            retry += 1;
                        }
                        None => break,
                    }
                }
            }
        }
    }
    Err(match last {
        Some((error, provider)) => RouteError { error, provider: Some(provider), attempts, all_unreachable },
        None => RouteError { error: ProviderError::NotConfigured, provider: None, attempts, all_unreachable: false },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::{ChatRole, Completion, FinishReason};

    /// One scripted call: its chunks (an `Err` chunk after text is a mid-stream failure), or a failure.
    type Outcome = Result<Vec<Result<StreamChunk, ProviderError>>, ProviderError>;

    /// Plays a script of outcomes.
    #[derive(Debug)]
    struct Scripted {
        name: &'static str,
        outcomes: Mutex<VecDeque<Outcome>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn new(name: &'static str, outcomes: Vec<Outcome>) -> Arc<Self> {
            Arc::new(Self { name, outcomes: Mutex::new(outcomes.into()), calls: Mutex::new(0) })
        }

        fn next(&self) -> Outcome {
            *self.calls.lock().unwrap() += 1;
            self.outcomes.lock().unwrap().pop_front().unwrap_or(Err(ProviderError::NotConfigured))
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    fn text(t: &str) -> Outcome {
        Ok(vec![Ok(StreamChunk::Text(t.into())), Ok(StreamChunk::Finish(FinishReason::Stop))])
    }

    impl ChatProvider for Scripted {
        fn name(&self) -> &str {
            self.name
        }

        fn complete<'a>(&'a self, _: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
            Box::pin(async move {
                let chunks = self.next()?;
                let text = chunks
                    .into_iter()
                    .filter_map(|c| match c {
                        Ok(StreamChunk::Text(t)) => Some(t),
                        _ => None,
                    })
                    .collect();
                Ok(Completion { text, usage: None, finish_reason: Some(FinishReason::Stop) })
            })
        }

        fn stream<'a>(&'a self, _: &'a CompletionRequest) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
            Box::pin(async move {
                let chunks = self.next()?;
                Ok(Box::pin(stream::iter(chunks)) as ChunkStream)
            })
        }
    }

    fn alias(targets: Vec<Arc<Scripted>>, max_retries: u32) -> Alias {
        Alias {
            name: "fast".into(),
            targets: targets
                .into_iter()
                .map(|p| Target {
                    provider: p,
                    model: "m".into(),
                    context_window: 1000,
                    max_output_tokens: 100,
                    temperature: None,
                })
                .collect(),
            retry: RetryPolicy {
                max_retries,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
                max_retry_after: Duration::from_millis(50),
            },
        }
    }

    /// The routed stream read whole: its text and finish reason, with what served it.
    async fn whole(a: &Alias) -> Result<Routed<(String, Option<FinishReason>)>, RouteError> {
        let routed = Router::new(vec![a.clone()]).stream(a, &hello()).await?;
        let (mut text, mut finish) = (String::new(), None);
        let chunks: Vec<_> = routed.value.collect().await;
        for chunk in chunks {
            match chunk {
                Ok(StreamChunk::Text(piece)) => text.push_str(&piece),
                Ok(StreamChunk::Finish(reason)) => finish = Some(reason),
                Ok(StreamChunk::Usage(_)) | Err(_) => {}
            }
        }
        Ok(Routed { value: (text, finish), provider: routed.provider, model: routed.model, attempts: routed.attempts })
    }

    fn hello() -> Vec<ChatMessage> {
        vec![ChatMessage::new(ChatRole::User, "hi")]
    }

    fn server_error() -> ProviderError {
        ProviderError::Upstream { status: 503, message: "busy".into() }
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let p =
            Scripted::new("a", vec![Err(server_error()), Err(ProviderError::Unreachable("reset".into())), text("ok")]);
        let a = alias(vec![Arc::clone(&p)], 2);
        let routed = whole(&a).await.unwrap();
        assert_eq!((routed.value.0.as_str(), routed.attempts, routed.provider.as_str()), ("ok", 3, "a"));
    }

    #[tokio::test]
    async fn falls_back_to_the_next_target_when_retries_run_out() {
        let first = Scripted::new("first", vec![Err(server_error()), Err(server_error())]);
        let second = Scripted::new("second", vec![text("from second")]);
        let a = alias(vec![Arc::clone(&first), Arc::clone(&second)], 1);
        let routed = whole(&a).await.unwrap();
        assert_eq!(routed.provider, "second");
        assert_eq!((first.calls(), second.calls(), routed.attempts), (2, 1, 3));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried_but_falls_back() {
        let first =
            Scripted::new("first", vec![Err(ProviderError::Upstream { status: 401, message: "bad key".into() })]);
        let second = Scripted::new("second", vec![text("ok")]);
        let a = alias(vec![Arc::clone(&first), Arc::clone(&second)], 3);
        whole(&a).await.unwrap();
        assert_eq!(first.calls(), 1);
    }

    #[tokio::test]
    async fn a_long_retry_after_is_reported_not_waited_for() {
        let p =
            Scripted::new("a", vec![Err(ProviderError::RateLimited { retry_after: Some(Duration::from_secs(30)) })]);
        let a = alias(vec![Arc::clone(&p)], 3);
        let err = whole(&a).await.unwrap_err();
        assert!(matches!(err.error, ProviderError::RateLimited { retry_after: Some(_) }));
        assert_eq!((p.calls(), err.provider.as_deref()), (1, Some("a")));
    }

    #[tokio::test]
    async fn a_stream_without_text_is_unusable_and_not_retried() {
        let empty = Scripted::new("e", vec![Ok(vec![Ok(StreamChunk::Finish(FinishReason::Stop))])]);
        let a = alias(vec![Arc::clone(&empty)], 3);
        let err = whole(&a).await.unwrap_err();
        assert!(matches!(err.error, ProviderError::UnusableAnswer(_)));
        assert_eq!(empty.calls(), 1);
    }

    #[tokio::test]
    async fn every_target_unreachable_is_flagged() {
        let down = || Scripted::new("down", vec![Err(ProviderError::Unreachable("refused".into()))]);
        let a = alias(vec![down(), down()], 0);
        let err = whole(&a).await.unwrap_err();
        assert!(err.all_unreachable);
        assert_eq!(err.attempts, 2);
    }

    #[tokio::test]
    async fn an_alias_without_targets_is_not_configured() {
        let a = alias(Vec::new(), 0);
        let err = whole(&a).await.unwrap_err();
        assert!(matches!(err.error, ProviderError::NotConfigured));
        assert!(err.provider.is_none() && !err.all_unreachable);
    }

    #[tokio::test]
    async fn streams_retry_and_fall_back_only_before_the_first_chunk() {
        // The first target fails before any chunk: the second one serves.
        let early = Scripted::new("early", vec![Ok(vec![Err(server_error())])]);
        let good = Scripted::new("good", vec![text("streamed")]);
        let a = alias(vec![Arc::clone(&early), Arc::clone(&good)], 0);
        let routed = Router::new(vec![a.clone()]).stream(&a, &hello()).await.unwrap();
        let chunks: Vec<_> = routed.value.collect().await;
        assert_eq!(chunks[0].as_ref().unwrap(), &StreamChunk::Text("streamed".into()));
        assert_eq!(routed.provider, "good");

        // A failure after the first chunk reaches the caller; nothing else is called.
        let midway = Scripted::new("midway", vec![Ok(vec![Ok(StreamChunk::Text("par".into())), Err(server_error())])]);
        let spare = Scripted::new("spare", vec![text("never")]);
        let a = alias(vec![Arc::clone(&midway), Arc::clone(&spare)], 3);
        let routed = Router::new(vec![a.clone()]).stream(&a, &hello()).await.unwrap();
        let chunks: Vec<_> = routed.value.collect().await;
        assert_eq!(chunks.len(), 2);
        assert!(chunks[1].is_err());
        assert_eq!((midway.calls(), spare.calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_stream_begins_with_its_first_text_and_one_without_text_falls_back() {
        // No text at all (a null content with a finish reason): not begun, so the next target serves.
        let empty = Scripted::new(
            "empty",
            vec![Ok(vec![Ok(StreamChunk::Text(String::new())), Ok(StreamChunk::Finish(FinishReason::Stop))])],
        );
        let good = Scripted::new(
            "good",
            vec![Ok(vec![
                Ok(StreamChunk::Usage(crate::Usage { prompt_tokens: 1, completion_tokens: 0 })),
                Ok(StreamChunk::Text("hi".into())),
            ])],
        );
        let a = alias(vec![Arc::clone(&empty), Arc::clone(&good)], 0);
        let routed = Router::new(vec![a.clone()]).stream(&a, &hello()).await.unwrap();
        assert_eq!(routed.provider, "good");
        let chunks: Vec<_> = routed.value.map(Result::unwrap).collect().await;
        assert!(matches!(chunks[0], StreamChunk::Usage(_)), "chunks before the text are kept: {chunks:?}");
        assert_eq!(chunks[1], StreamChunk::Text("hi".into()));
    }

    #[test]
    fn the_prompt_budget_fits_every_target() {
        let mut a = alias(vec![Scripted::new("x", vec![]), Scripted::new("y", vec![])], 0);
        a.targets[1].context_window = 500;
        assert_eq!(a.prompt_budget(), 400);
    }
}
