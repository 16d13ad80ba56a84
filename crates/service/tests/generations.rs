//! Server-owned generations driven piece by piece: events, flushes, cancel, shutdown, regenerate, recovery.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers, like tests, fail loudly on anything unexpected"
)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_auth::{JwtAlgorithm, PasswordHasher, TokenKeys, TokenSettings};
use chat_domain::time::now_utc;
use chat_domain::{ChatId, Email, MessageStatus, Password, Role, UserId};
use chat_service::{
    CANCELLED, ChatService, ChatSettings, Ending, GenerationSettings, NumberedEvent, ServiceError, StreamEvent,
    StreamFailure, Subscription,
};
use chat_storage::{Database, Message, NewMessage, PoolOptions, messages};
use futures_util::future::BoxFuture;
use llm_providers::retry::RetryPolicy;
use llm_providers::router::{Alias, Router, Target};
use llm_providers::{
    ChatProvider, ChunkStream, Completion, CompletionRequest, FailureKind, FinishReason, ProviderError, StreamChunk,
};
use secrecy::SecretString;
use tokio::sync::mpsc;

type Piece = Result<StreamChunk, ProviderError>;

/// A provider whose answers the test writes piece by piece; it counts the streams that were dropped
/// (closed) before they ended.
#[derive(Debug, Default)]
struct Piped {
    pending: Mutex<VecDeque<Result<mpsc::UnboundedReceiver<Piece>, ProviderError>>>,
    closed_early: Arc<AtomicUsize>,
}

impl Piped {
    /// The sender of the next call's pieces.
    fn next_answer(&self) -> mpsc::UnboundedSender<Piece> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending.lock().unwrap().push_back(Ok(rx));
        tx
    }

    fn next_failure(&self, error: ProviderError) {
        self.pending.lock().unwrap().push_back(Err(error));
    }
}

/// Counts a stream dropped before its end.
struct Watch {
    ended: bool,
    closed_early: Arc<AtomicUsize>,
}

impl Watch {
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.ended {
            self.closed_early.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ChatProvider for Piped {
    fn name(&self) -> &str {
        "piped"
    }

    fn complete<'a>(&'a self, _: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async { Err(ProviderError::NotConfigured) })
    }

    fn stream<'a>(&'a self, _: &'a CompletionRequest) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let rx = self.pending.lock().unwrap().pop_front().unwrap_or(Err(ProviderError::NotConfigured))?;
            let watch = Watch { ended: false, closed_early: Arc::clone(&self.closed_early) };
            let chunks = futures_util::stream::unfold((rx, watch), |(mut rx, mut watch)| async move {
                match rx.recv().await {
                    Some(piece) => Some((piece, (rx, watch))),
                    None => {
                        watch.end();
                        None
                    }
                }
            });
            Ok(Box::pin(chunks) as ChunkStream)
        })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    svc: ChatService,
    provider: Arc<Piped>,
    user: UserId,
    chat: String,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gen.db").display());
    let db = Database::open(&url, &PoolOptions::default()).unwrap();
    let tokens = TokenKeys::new(&TokenSettings {
        secret: SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
        algorithm: JwtAlgorithm::Hs256,
        lifetime: chrono::Duration::minutes(5),
        issuer: "t".into(),
        audience: "t".into(),
    });
    let provider = Arc::new(Piped::default());
    let alias = Alias {
        name: "fast".into(),
        targets: vec![Target {
            provider: Arc::clone(&provider) as Arc<dyn ChatProvider>,
            model: "piped-1".into(),
            context_window: 8192,
            max_output_tokens: 100,
            temperature: None,
        }],
        retry: RetryPolicy { max_retries: 0, ..RetryPolicy::default() },
    };
    let chat = ChatSettings {
        system_prompt: None,
        default_model: "fast".into(),
        generation: GenerationSettings { flush_interval: Duration::from_millis(20), ..GenerationSettings::default() },
        refresh_token_lifetime: chrono::Duration::days(30),
        daily_token_budget: None,
    };
    let svc = ChatService::new(db, PasswordHasher::new(4, 1).unwrap(), tokens, Router::new(vec![alias]), chat);
    let user = svc
        .register(Email::parse("gen@example.com").unwrap(), Password::parse("password123".into()).unwrap())
        .await
        .unwrap()
        .id;
    let chat = svc.create_chat(user, None, None).await.unwrap().chat.id.to_string();
    Setup { _dir: dir, svc, provider, user, chat }
}

fn text(piece: &str) -> Piece {
    Ok(StreamChunk::Text(piece.to_owned()))
}

/// The chat's messages as stored (not as `list_messages` shows them, which overlays live text).
fn stored(s: &Setup) -> Vec<Message> {
    let chat: ChatId = s.chat.parse().unwrap();
    s.svc.database().with_connection(|c| messages::list_messages(c, chat, None)).unwrap()
}

/// Polls the stored messages until `done` holds, for up to five seconds.
async fn stored_when(s: &Setup, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    for _ in 0..500 {
        let messages = stored(s);
        if done(&messages) {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the stored messages never got there: {:?}", stored(s));
}

/// Reads events until the stream is over.
async fn drain(subscription: &mut Subscription) -> Vec<NumberedEvent> {
    let mut events = Vec::new();
    while let Some(batch) =
        tokio::time::timeout(Duration::from_secs(5), subscription.next_batch()).await.expect("events in time")
    {
        events.extend(batch);
    }
    events
}

/// Reads events until a delta has arrived.
async fn first_delta(subscription: &mut Subscription) -> Vec<NumberedEvent> {
    let mut events = Vec::new();
    while !events.iter().any(|e: &NumberedEvent| matches!(e.event, StreamEvent::Delta(_))) {
        let batch = tokio::time::timeout(Duration::from_secs(5), subscription.next_batch()).await.unwrap();
        events.extend(batch.expect("the stream goes on"));
    }
    events
}

fn ending(events: &[NumberedEvent]) -> &Ending {
    match &events.last().unwrap().event {
        StreamEvent::End { ending, .. } => ending,
        other => panic!("the last event is {other:?}"),
    }
}

#[tokio::test]
async fn a_streamed_reply_is_told_in_numbered_events_and_stored_whole() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    pipe.send(text("Hel")).unwrap();
    let mut subscription = started.streamed().await.unwrap();
    pipe.send(text("lo")).unwrap();
    pipe.send(Ok(StreamChunk::Finish(FinishReason::Stop))).unwrap();
    drop(pipe);
    let events = drain(&mut subscription).await;
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert!(matches!(&events[0].event, StreamEvent::Start(start) if start.model == "fast"));
    assert_eq!(events[1].event, StreamEvent::Delta("Hel".into()));
    assert_eq!(events[2].event, StreamEvent::Delta("lo".into()));
    assert!(matches!(ending(&events), Ending::Done { finish_reason, .. } if finish_reason == "stop"));
    let messages = stored(&s);
    assert_eq!((messages[1].content.as_str(), messages[1].status), ("Hello", MessageStatus::Complete));
    assert_eq!(s.provider.closed_early.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_stop_the_reply() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    drop(s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap());
    for piece in ["no", "body ", "listens"] {
        pipe.send(text(piece)).unwrap();
    }
    drop(pipe);
    let messages = stored_when(&s, |m| m.len() == 2 && m[1].status == MessageStatus::Complete).await;
    assert_eq!(messages[1].content, "nobody listens");
}

#[tokio::test]
async fn text_is_written_while_the_reply_runs_and_shown_live() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let _started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    pipe.send(text("partial ")).unwrap();
    let messages = stored_when(&s, |m| m.len() == 2 && m[1].content == "partial ").await;
    assert_eq!(messages[1].status, MessageStatus::Generating, "flushed while still running");
    // The listing shows the text so far even between flushes.
    pipe.send(text("and more")).unwrap();
    for _ in 0..500 {
        let listed = s.svc.list_messages(s.user, &s.chat, None).await.unwrap();
        if listed[1].content == "partial and more" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the listing never showed the live text");
}

#[tokio::test]
async fn cancel_closes_the_provider_stream_and_keeps_the_text() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    pipe.send(text("half an ")).unwrap();
    let mut subscription = started.streamed().await.unwrap();
    first_delta(&mut subscription).await;
    assert!(s.svc.cancel(s.user, &s.chat).await.unwrap());
    assert_eq!(s.provider.closed_early.load(Ordering::SeqCst), 1, "the provider's stream was closed");
    assert!(pipe.send(text("answer")).is_err(), "nobody reads the provider any more");
    let rest = drain(&mut subscription).await;
    assert!(matches!(ending(&rest), Ending::Done { finish_reason, .. } if finish_reason == CANCELLED));
    let messages = stored(&s);
    assert_eq!((messages[1].content.as_str(), messages[1].status), ("half an ", MessageStatus::Cancelled));
    assert!(!s.svc.cancel(s.user, &s.chat).await.unwrap(), "nothing runs any more");
    let stranger = UserId::new_random();
    assert!(matches!(s.svc.cancel(stranger, &s.chat).await, Err(ServiceError::ChatNotFound { .. })));
}

#[tokio::test]
async fn a_failure_after_the_first_piece_is_stored_as_error_with_its_text() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    let message_id = started.message_id();
    pipe.send(text("so far")).unwrap();
    let mut listener = s.svc.follow(s.user, &s.chat, message_id, None).await.unwrap();
    first_delta(&mut listener).await;
    pipe.send(Err(ProviderError::ConnectionLost("reset".into()))).unwrap();
    match started.whole().await {
        Err(ServiceError::Provider { alias, error }) => {
            assert_eq!((alias.as_str(), error.error.kind()), ("fast", FailureKind::ConnectionLost));
        }
        other => panic!("{other:?}"),
    }
    let events = drain(&mut listener).await;
    assert!(matches!(
        ending(&events),
        Ending::Failed(StreamFailure::Provider { kind: FailureKind::ConnectionLost, .. })
    ));
    let messages = stored(&s);
    assert_eq!((messages[1].content.as_str(), messages[1].status), ("so far", MessageStatus::Error));
    assert_eq!(messages[1].error_detail.as_deref(), Some("connection_lost"));
}

#[tokio::test]
async fn shutdown_interrupts_replies_that_outlive_the_grace_and_refuses_new_ones() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    pipe.send(text("cut short")).unwrap();
    let mut subscription = started.streamed().await.unwrap();
    assert_eq!(s.svc.shutdown(Duration::from_millis(50)).await, 1);
    let events = drain(&mut subscription).await;
    assert_eq!(ending(&events), &Ending::Failed(StreamFailure::Interrupted));
    let messages = stored(&s);
    assert_eq!((messages[1].content.as_str(), messages[1].status), ("cut short", MessageStatus::Interrupted));
    let refused = s.svc.send_message(s.user, &s.chat, "again".into(), "fast").await.unwrap_err();
    assert!(matches!(refused, ServiceError::ShuttingDown), "{refused:?}");
}

#[tokio::test]
async fn a_reply_that_finishes_within_the_grace_is_complete() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let _started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    pipe.send(text("in time")).unwrap();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(pipe);
    });
    assert_eq!(s.svc.shutdown(Duration::from_secs(5)).await, 0);
    closer.await.unwrap();
    assert_eq!(stored(&s)[1].status, MessageStatus::Complete);
}

#[tokio::test]
async fn regenerate_replaces_the_last_reply_once_the_new_one_begins() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    pipe.send(text("first")).unwrap();
    drop(pipe);
    let first = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap().whole().await.unwrap();

    // A regeneration that fails before it begins leaves the old reply alone.
    s.provider.next_failure(ProviderError::Upstream { status: 500, message: "down".into() });
    let failed = s.svc.regenerate(s.user, &s.chat, None).await.unwrap().whole().await.unwrap_err();
    assert!(matches!(failed, ServiceError::Provider { .. }), "{failed:?}");
    let contents: Vec<String> = stored(&s).into_iter().map(|m| m.content).collect();
    assert_eq!(contents, ["Hi", "first"]);

    // So does one whose answer has no text at all (a finish reason and nothing else).
    let pipe = s.provider.next_answer();
    pipe.send(Ok(StreamChunk::Finish(FinishReason::Stop))).unwrap();
    drop(pipe);
    let empty = s.svc.regenerate(s.user, &s.chat, None).await.unwrap().whole().await.unwrap_err();
    assert!(
        matches!(&empty, ServiceError::Provider { error, .. } if error.error.kind() == FailureKind::UnusableAnswer)
    );
    let contents: Vec<String> = stored(&s).into_iter().map(|m| m.content).collect();
    assert_eq!(contents, ["Hi", "first"]);

    let pipe = s.provider.next_answer();
    let started = s.svc.regenerate(s.user, &s.chat, None).await.unwrap();
    assert_eq!(stored(&s).len(), 3, "the old reply stays until the new one begins");
    pipe.send(text("second")).unwrap();
    drop(pipe);
    let second = started.whole().await.unwrap();
    assert_eq!((second.content.as_str(), second.user_message_id), ("second", first.user_message_id));
    let messages = stored(&s);
    let turns: Vec<(Role, &str)> = messages.iter().map(|m| (m.role, m.content.as_str())).collect();
    assert_eq!(turns, [(Role::User, "Hi"), (Role::Assistant, "second")]);
}

#[tokio::test]
async fn regenerate_needs_a_message_to_answer() {
    let s = setup().await;
    let err = s.svc.regenerate(s.user, &s.chat, None).await.unwrap_err();
    assert!(matches!(err, ServiceError::NothingToRegenerate), "{err:?}");
    let err = s.svc.regenerate(s.user, &s.chat, Some("turbo")).await.unwrap_err();
    assert!(matches!(err, ServiceError::UnknownModel { .. }), "{err:?}");
}

#[tokio::test]
async fn on_a_shared_database_only_replies_past_their_lease_are_recovered() {
    // This setup's database is not held exclusively, as a PostgreSQL one shared by several servers.
    let s = setup().await;
    let chat: ChatId = s.chat.parse().unwrap();
    let now = now_utc();
    let leftover = |content: &str, heard_of: chrono::NaiveDateTime| NewMessage {
        status: MessageStatus::Generating,
        updated_at: heard_of,
        ..NewMessage::plain(chat, Role::Assistant, content.into(), now)
    };
    let abandoned = leftover("abandoned", now - chrono::Duration::hours(1));
    s.svc.database().with_connection(|c| messages::insert_message(c, abandoned)).unwrap();
    assert_eq!(s.svc.recover_interrupted().unwrap(), 1);
    // Another server's reply, heard of just now: left alone.
    let other_chat = s.svc.create_chat(s.user, None, None).await.unwrap().chat.id;
    let live = NewMessage { chat_id: other_chat, ..leftover("live", now) };
    s.svc.database().with_connection(|c| messages::insert_message(c, live)).unwrap();
    assert_eq!(s.svc.recover_interrupted().unwrap(), 0);
    let statuses: Vec<(String, MessageStatus)> = [chat, other_chat]
        .into_iter()
        .flat_map(|chat| s.svc.database().with_connection(|c| messages::list_messages(c, chat, None)).unwrap())
        .map(|m| (m.content, m.status))
        .collect();
    assert_eq!(
        statuses,
        [("abandoned".to_owned(), MessageStatus::Interrupted), ("live".to_owned(), MessageStatus::Generating)]
    );
}

#[tokio::test]
async fn a_reply_another_server_took_for_abandoned_runs_on_and_is_stored_as_it_ends() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    let started = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap();
    pipe.send(text("still ")).unwrap();
    // Another server's sweep, with a clock far ahead, marks the live reply interrupted.
    let ahead = now_utc() + chrono::Duration::hours(1);
    s.svc.database().with_connection(|c| messages::interrupt_generating(c, ahead, Some(ahead))).unwrap();
    assert_eq!(stored_when(&s, |m| m.len() == 2).await[1].status, MessageStatus::Interrupted);
    // No condition to poll for: the flushes that could wrongly stop it get a chance to run.
    tokio::time::sleep(Duration::from_millis(150)).await;
    pipe.send(text("alive")).unwrap();
    drop(pipe);
    let reply = started.whole().await.unwrap();
    assert_eq!((reply.content.as_str(), reply.status), ("still alive", MessageStatus::Complete));
    assert_eq!(stored(&s)[1].status, MessageStatus::Complete, "the final write tells how it really ended");
    assert_eq!(s.provider.closed_early.load(Ordering::SeqCst), 0, "the provider was not cut off");
}

#[tokio::test]
async fn nul_characters_from_a_model_are_stored_as_replacement_characters() {
    let s = setup().await;
    let pipe = s.provider.next_answer();
    pipe.send(text("a\0b")).unwrap();
    drop(pipe);
    let reply = s.svc.send_message(s.user, &s.chat, "Hi".into(), "fast").await.unwrap().whole().await.unwrap();
    assert_eq!(reply.content, "a\u{FFFD}b");
    assert_eq!(stored(&s)[1].content, "a\u{FFFD}b");
}
