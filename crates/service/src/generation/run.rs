//! The task behind one reply: build the context, reach a provider, record each piece, store how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::MessageStatus;
use chat_domain::time::now_utc;
use chat_storage::{FinishedReply, StorageError, messages};
use futures_util::StreamExt;
use llm_providers::router::{Alias, RouteError, Routed, Router};
use llm_providers::{ChunkStream, FinishReason, ProviderError, StreamChunk, Usage};
use tokio::task::JoinHandle;

use super::events::{CANCELLED, Ending, StreamFailure};
use super::flusher::FinalState;
use super::record::{Generation, StopReason};
use crate::budget::Hold;
use crate::chats::not_found;
use crate::context::{self, Context};
use crate::{ChatService, ServiceError};

/// Pauses between attempts of a reply's final write; the text was shown, so it is worth retrying.
const FINAL_WRITE_RETRIES: [Duration; 3] =
    [Duration::from_millis(50), Duration::from_millis(250), Duration::from_millis(1000)];

/// What a generation answers and how.
#[derive(Debug)]
pub(crate) struct Job {
    pub generation: Arc<Generation>,
    pub alias: Alias,
    /// The system prompt and its tokens.
    pub system: Option<(String, u32)>,
    /// The user message being answered and its tokens.
    pub prompt: (String, u32),
    /// A regeneration: the replies between the user message and this one go once this one begins.
    pub replacing: bool,
    /// The provider asked while the rows were being stored, or the context built before them; without
    /// it the context is built from the stored history when the job begins.
    pub ask: Option<Ask>,
    /// The reply's share of the user's daily token budget: settled with what the reply spent once it is
    /// stored, or given back when the job ends without reaching a provider.
    pub hold: Option<Hold>,
}

/// How a job reaches its provider, when prepared before its rows were stored.
#[derive(Debug)]
pub(crate) enum Ask {
    Started(EarlyAsk),
    Ready(Context),
}

/// A provider asked ahead of the job that will read its answer, on a task of its own. Dropping it
/// (the rows could not be stored, the reply was stopped) closes the provider's request.
pub(crate) struct EarlyAsk {
    task: JoinHandle<Result<(Routed<ChunkStream>, u32), ServiceError>>,
    at: Instant,
}

impl EarlyAsk {
    /// Asks the provider behind `alias` for a reply to `context` (retrying and falling back) now.
    pub(crate) fn start(router: Router, alias: Alias, context: Context) -> Self {
        let at = Instant::now();
        let task = tokio::spawn(async move {
            let routed = router
                .stream(&alias, &context.messages)
                .await
                .map_err(|error| ServiceError::Provider { alias: alias.name.clone(), error })?;
            Ok((routed, context.tokens))
        });
        Self { task, at }
    }

    async fn answer(mut self) -> Result<(Routed<ChunkStream>, u32), ServiceError> {
        match (&mut self.task).await {
            Ok(answer) => answer,
            Err(err) => Err(ServiceError::Storage(StorageError::TaskFailed(err))),
        }
    }
}

impl std::fmt::Debug for EarlyAsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyAsk").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Drop for EarlyAsk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the provider's stream stopped.
enum Outcome {
    Finished,
    Stopped(StopReason),
    Failed(ProviderError),
}

/// How the reply is stored and told.
struct Verdict {
    status: MessageStatus,
    ending: Ending,
    /// For the caller waiting on the whole reply.
    error: Option<ServiceError>,
}

impl ChatService {
    /// Runs one generation to its end; never returns early without storing and telling how it ended.
    pub(crate) async fn generate(self, mut job: Job) {
        let generation = Arc::clone(&job.generation);
        let started = Instant::now();
        let begun = tokio::select! {
            biased;
            () = generation.stopped() => None,
            begun = self.begin(&mut job) => Some(begun),
        };
        let (routed, prompt_tokens) = match begun {
            Some(Ok(begun)) => begun,
            Some(Err(error)) => return self.fail_unstarted(&job, error).await,
            None => return self.stop_unstarted(&job, started).await,
        };
        let Routed { value: mut chunks, provider, model, attempts } = routed;
        if job.replacing {
            let (chat, after, before) =
                (generation.start.chat_id, generation.start.user_message_id, generation.message_id());
            if let Err(err) = self.db.write(move |c| messages::delete_between(c, chat, after, before)).await {
                tracing::error!(error = %err, "could not remove the replies a regenerated one replaces");
            }
        }
        generation.mark_began();

        let (outcome, usage, finish) = self.record_stream(&generation, &mut chunks).await;
        // Closing the provider's stream now ends its HTTP request before the final write.
        drop(chunks);
        generation.mark_answered();

        let text = generation.text();
        let content_tokens = self.counter.count(&text);
        let usage = usage.unwrap_or(Usage { prompt_tokens, completion_tokens: content_tokens });
        let alias = job.alias.name.clone();
        let verdict = match outcome {
            Outcome::Finished if text.is_empty() => {
                let error = ProviderError::UnusableAnswer("the stream ended without any text".into());
                provider_failure(alias, &provider, attempts, error)
            }
            Outcome::Finished => Verdict {
                status: MessageStatus::Complete,
                ending: Ending::Done {
                    finish_reason: finish.map_or_else(|| "stop".to_owned(), |r| r.as_str().to_owned()),
                    usage,
                },
                error: None,
            },
            Outcome::Stopped(reason) => stopped(reason, usage),
            Outcome::Failed(error) => provider_failure(alias, &provider, attempts, error),
        };
        let finish_reason = match &verdict.ending {
            Ending::Done { finish_reason, .. } => Some(finish_reason.clone()),
            Ending::Failed(_) => None,
        };
        let error_detail = match &verdict.ending {
            Ending::Failed(failure) => Some(failure.stored().to_owned()),
            Ending::Done { .. } => None,
        };
        self.generations.count_reply(verdict.status, usage);
        let reply = FinishedReply {
            status: verdict.status,
            content: text,
            provider: Some(provider),
            provider_model: Some(model),
            prompt_tokens: Some(to_i32(usage.prompt_tokens)),
            completion_tokens: Some(to_i32(usage.completion_tokens)),
            content_tokens: Some(to_i32(content_tokens)),
            latency_ms: Some(i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)),
            finish_reason,
            error_detail,
            at: now_utc(),
        };
        // The budget is settled in the reply's final write, before anyone hears the reply ended; a final write that
        // fails goes to the flusher with its settlement, so the hold is settled either way.
        let hold = job.hold.take();
        let settlement =
            hold.as_ref().map(|hold| hold.settlement(usage.prompt_tokens.saturating_add(usage.completion_tokens)));
        self.conclude(&generation, FinalState { message_id: generation.message_id(), reply, settlement }, verdict)
            .await;
        if let Some(hold) = hold {
            hold.settled();
        }
    }

    /// Builds the context and reaches a provider that gives a first chunk (retrying and falling back).
    async fn begin(&self, job: &mut Job) -> Result<(Routed<ChunkStream>, u32), ServiceError> {
        let context = match job.ask.take() {
            Some(Ask::Started(early)) => {
                job.generation.mark_asked_at(early.at);
                return early.answer().await;
            }
            Some(Ask::Ready(context)) => context,
            None => {
                let start = &job.generation.start;
                let budget = job.alias.prompt_budget();
                let history = self.history_before(start.chat_id, start.user_message_id, budget).await?;
                let system = job.system.as_ref().map(|(prompt, tokens)| (prompt.as_str(), *tokens));
                context::build(system, (job.prompt.0.as_str(), job.prompt.1), history, budget)
                    .map_err(ServiceError::MessageTooLarge)?
            }
        };
        job.generation.mark_asked();
        let routed = self
            .router
            .stream(&job.alias, &context.messages)
            .await
            .map_err(|error| ServiceError::Provider { alias: job.alias.name.clone(), error })?;
        Ok((routed, context.tokens))
    }

    /// Records the stream's pieces until it ends, fails or is told to stop.
    async fn record_stream(
        &self,
        generation: &Arc<Generation>,
        chunks: &mut ChunkStream,
    ) -> (Outcome, Option<Usage>, Option<FinishReason>) {
        let (mut usage, mut finish) = (None, None);
        loop {
            let chunk = tokio::select! {
                biased;
                () = generation.stopped() => {
                    let reason = generation.stop_reason().unwrap_or(StopReason::Cancel);
                    return (Outcome::Stopped(reason), usage, finish);
                }
                chunk = chunks.next() => chunk,
            };
            match chunk {
                None => return (Outcome::Finished, usage, finish),
                Some(Ok(StreamChunk::Text(piece))) => {
                    if generation.append(&piece) {
                        self.generations.mark_dirty(Arc::clone(generation));
                    }
                }
                Some(Ok(StreamChunk::Usage(counted))) => usage = Some(counted),
                Some(Ok(StreamChunk::Finish(reason))) => finish = Some(reason),
                Some(Err(error)) => return (Outcome::Failed(error), usage, finish),
            }
        }
    }

    /// No provider gave a first chunk: the placeholder reply goes (the user's message stays) and the
    /// failure is told.
    async fn fail_unstarted(&self, job: &Job, error: ServiceError) {
        let generation = &job.generation;
        let id = generation.message_id();
        if let Err(err) = self.db.write(move |c| messages::delete_message(c, id)).await {
            tracing::error!(error = %err, message_id = id, "could not remove the placeholder of a failed reply");
            // Not left `generating` (which would hold the chat): stored as interrupted by the flusher.
            self.generations
                .keep_unwritten(FinalState::unpaid(id, FinishedReply::interrupted(String::new(), now_utc())));
        }
        let failure = match &error {
            ServiceError::Provider { alias, error } => StreamFailure::Provider {
                alias: alias.clone(),
                provider: error.provider.clone(),
                kind: error.error.kind(),
                retry_after: retry_after(&error.error),
            },
            _ => StreamFailure::Storage,
        };
        generation.end(Ending::Failed(failure), MessageStatus::Error, Some(error));
    }

    /// Stopped before any text: the reply is stored empty, as `cancelled` or `interrupted`; a
    /// regeneration's placeholder goes instead, leaving the reply it was to replace.
    async fn stop_unstarted(&self, job: &Job, started: Instant) {
        let generation = &job.generation;
        let verdict = stopped(generation.stop_reason().unwrap_or(StopReason::Cancel), Usage::default());
        if job.replacing {
            let id = generation.message_id();
            if let Err(err) = self.db.write(move |c| messages::delete_message(c, id)).await {
                tracing::error!(error = %err, message_id = id, "could not remove the placeholder of a stopped regeneration");
                self.generations
                    .keep_unwritten(FinalState::unpaid(id, FinishedReply::interrupted(String::new(), now_utc())));
            }
            generation.end(verdict.ending, verdict.status, verdict.error);
            return;
        }
        let (finish_reason, error_detail) = match &verdict.ending {
            Ending::Done { finish_reason, .. } => (Some(finish_reason.clone()), None),
            Ending::Failed(failure) => (None, Some(failure.stored().to_owned())),
        };
        let reply = FinishedReply {
            status: verdict.status,
            content: String::new(),
            provider: None,
            provider_model: None,
            prompt_tokens: None,
            completion_tokens: None,
            content_tokens: Some(0),
            latency_ms: Some(i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)),
            finish_reason,
            error_detail,
            at: now_utc(),
        };
        self.conclude(generation, FinalState::unpaid(generation.message_id(), reply), verdict).await;
    }

    /// Stores the reply's final state (with the settlement of its tokens, in the same transaction), then tells
    /// everyone waiting on it. A write that keeps failing is handed, settlement and all, to the flusher.
    async fn conclude(&self, generation: &Generation, state: FinalState, verdict: Verdict) {
        let id = generation.message_id();
        match self.write_final(&state).await {
            Ok(true) => generation.end(verdict.ending, verdict.status, verdict.error),
            Ok(false) => {
                // The chat was deleted meanwhile: listeners hear the ending, the waiting caller a 404.
                let missing = not_found(&generation.start.chat_id.to_string());
                generation.end(verdict.ending, verdict.status, Some(missing));
            }
            Err(err) => {
                tracing::error!(error = %err, message_id = id, "could not store a finished reply; retrying in the background");
                self.generations.keep_unwritten(state);
                generation.end(Ending::Failed(StreamFailure::Storage), MessageStatus::Error, Some(err.into()));
            }
        }
    }

    async fn write_final(&self, state: &FinalState) -> Result<bool, StorageError> {
        let mut pauses = FINAL_WRITE_RETRIES.iter();
        loop {
            let attempt = state.clone();
            match self.db.write(move |c| attempt.write(c)).await {
                Ok(written) => return Ok(written),
                Err(err) => match pauses.next() {
                    Some(pause) => {
                        tracing::warn!(error = %err, message_id = state.message_id, "final write of a reply failed; retrying");
                        tokio::time::sleep(*pause).await;
                    }
                    None => return Err(err),
                },
            }
        }
    }
}

fn stopped(reason: StopReason, usage: Usage) -> Verdict {
    match reason {
        StopReason::Cancel => Verdict {
            status: MessageStatus::Cancelled,
            ending: Ending::Done { finish_reason: CANCELLED.to_owned(), usage },
            error: None,
        },
        StopReason::Shutdown => Verdict {
            status: MessageStatus::Interrupted,
            ending: Ending::Failed(StreamFailure::Interrupted),
            error: Some(ServiceError::ShuttingDown),
        },
    }
}

/// A provider failure after the reply began: stored as `error`, told to listeners and to the caller.
fn provider_failure(alias: String, provider: &str, attempts: u32, error: ProviderError) -> Verdict {
    tracing::warn!(alias = %alias, provider, error = %error, "the provider failed during a reply");
    let failure = StreamFailure::Provider {
        alias: alias.clone(),
        provider: Some(provider.to_owned()),
        kind: error.kind(),
        retry_after: retry_after(&error),
    };
    let route = RouteError { error, provider: Some(provider.to_owned()), attempts, all_unreachable: false };
    Verdict {
        status: MessageStatus::Error,
        ending: Ending::Failed(failure),
        error: Some(ServiceError::Provider { alias, error: route }),
    }
}

fn retry_after(error: &ProviderError) -> Option<Duration> {
    match error {
        ProviderError::RateLimited { retry_after } => *retry_after,
        _ => None,
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
