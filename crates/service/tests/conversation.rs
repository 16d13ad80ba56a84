//! `send_message` with a scripted fake provider: storage, context, usage, failures and the one-reply-per-chat rule.
#![expect(clippy::unwrap_used, reason = "test helpers, like tests, fail loudly on anything unexpected")]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_auth::{JwtAlgorithm, PasswordHasher, TokenKeys, TokenSettings};
use chat_domain::{Email, MessageStatus, Password, Role, UserId};
use chat_service::{ChatService, ChatSettings, GenerationSettings, Reply, ServiceError};
use chat_storage::{Database, PoolOptions};
use futures_util::future::BoxFuture;
use llm_providers::retry::RetryPolicy;
use llm_providers::router::{Alias, Router, Target};
use llm_providers::{
    ChatMessage, ChatProvider, ChatRole, ChunkStream, Completion, CompletionRequest, FinishReason, ProviderError,
    StreamChunk, Usage,
};
use secrecy::SecretString;

/// Answers from a script, records every request, and can be held at a gate.
#[derive(Debug, Default)]
struct Scripted {
    script: Mutex<VecDeque<Result<Completion, ProviderError>>>,
    seen: Mutex<Vec<CompletionRequest>>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Scripted {
    fn answering(answers: Vec<Result<Completion, ProviderError>>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(answers.into()), ..Default::default() })
    }
}

fn reply(text: &str) -> Result<Completion, ProviderError> {
    Ok(Completion {
        text: text.to_owned(),
        usage: Some(Usage { prompt_tokens: 11, completion_tokens: 7 }),
        finish_reason: Some(FinishReason::Stop),
    })
}

impl ChatProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn complete<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(request.clone());
            if let Some(gate) = &self.gate {
                let _permit = gate.acquire().await.unwrap();
            }
            self.script.lock().unwrap().pop_front().unwrap_or_else(|| reply("default"))
        })
    }

    fn stream<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let completion = self.complete(request).await?;
            let mut chunks = vec![Ok(StreamChunk::Text(completion.text))];
            chunks.extend(completion.finish_reason.map(|r| Ok(StreamChunk::Finish(r))));
            chunks.extend(completion.usage.map(|u| Ok(StreamChunk::Usage(u))));
            Ok(Box::pin(futures_util::stream::iter(chunks)) as ChunkStream)
        })
    }
}

fn alias(provider: Arc<Scripted>, context_window: u32) -> Alias {
    Alias {
        name: "fast".into(),
        targets: vec![Target {
            provider,
            model: "scripted-1".into(),
            context_window,
            max_output_tokens: 100,
            temperature: Some(0.5),
        }],
        retry: RetryPolicy { max_retries: 0, ..RetryPolicy::default() },
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    svc: ChatService,
    user: UserId,
    chat: String,
}

async fn setup(provider: Arc<Scripted>, context_window: u32, system_prompt: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conv.db").display());
    let db = Database::open(&url, &PoolOptions::default()).unwrap();
    let tokens = TokenKeys::new(&TokenSettings {
        secret: SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
        algorithm: JwtAlgorithm::Hs256,
        lifetime: chrono::Duration::minutes(5),
        issuer: "t".into(),
        audience: "t".into(),
    });
    let router = Router::new(vec![alias(provider, context_window)]);
    let chat = ChatSettings {
        system_prompt: system_prompt.map(str::to_owned),
        default_model: "fast".into(),
        generation: GenerationSettings::default(),
        refresh_token_lifetime: chrono::Duration::days(30),
        daily_token_budget: None,
    };
    let svc = ChatService::new(db, PasswordHasher::new(4, 1).unwrap(), tokens, router, chat);
    let user = svc
        .register(Email::parse("conv@example.com").unwrap(), Password::parse("password123".into()).unwrap())
        .await
        .unwrap()
        .id;
    let chat = svc.create_chat(user, None, None).await.unwrap().chat.id.to_string();
    Setup { _dir: dir, svc, user, chat }
}

/// Sends a message and waits for the whole reply, as `POST /chat` without streaming does.
async fn ask(svc: &ChatService, user: UserId, chat: &str, text: String, alias: &str) -> Result<Reply, ServiceError> {
    svc.send_message(user, chat, text, alias).await?.whole().await
}

#[tokio::test]
async fn stores_the_message_and_the_reply_with_what_produced_it() {
    let provider = Scripted::answering(vec![reply("Hi there")]);
    let s = setup(Arc::clone(&provider), 8192, Some("Be brief.")).await;
    let answer = ask(&s.svc, s.user, &s.chat, "Hello".into(), "fast").await.unwrap();
    assert_eq!(answer.content, "Hi there");
    assert_eq!(answer.usage, Usage { prompt_tokens: 11, completion_tokens: 7 });
    let stored = s.svc.list_messages(s.user, &s.chat, None).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[0].role, stored[0].content.as_str()), (Role::User, "Hello"));
    let a = &stored[1];
    assert_eq!((a.role, a.status), (Role::Assistant, MessageStatus::Complete));
    assert_eq!(a.model_alias.as_deref(), Some("fast"));
    assert_eq!(a.provider.as_deref(), Some("scripted"));
    assert_eq!(a.provider_model.as_deref(), Some("scripted-1"));
    assert_eq!((a.prompt_tokens, a.completion_tokens), (Some(11), Some(7)));
    assert!(a.latency_ms.is_some() && a.content_tokens.is_some());
    assert_eq!(a.finish_reason.as_deref(), Some("stop"));
    // The provider got the system prompt first and the new message last.
    let seen = provider.seen.lock().unwrap();
    assert_eq!(seen[0].messages[0], ChatMessage::new(ChatRole::System, "Be brief."));
    assert_eq!(seen[0].messages.last().unwrap(), &ChatMessage::new(ChatRole::User, "Hello"));
    assert_eq!((seen[0].model.as_str(), seen[0].max_output_tokens), ("scripted-1", Some(100)));
}

#[tokio::test]
async fn a_failed_provider_keeps_the_users_message_and_stores_no_reply() {
    let provider = Scripted::answering(vec![Err(ProviderError::Upstream { status: 500, message: "boom".into() })]);
    let s = setup(provider, 8192, None).await;
    let err = ask(&s.svc, s.user, &s.chat, "Still here?".into(), "fast").await.unwrap_err();
    assert!(matches!(err, ServiceError::Provider { .. }), "{err:?}");
    let stored = s.svc.list_messages(s.user, &s.chat, None).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].content, "Still here?");
}

#[tokio::test]
async fn a_hundred_turn_chat_sends_its_newest_turns() {
    let provider = Scripted::answering(Vec::new());
    // A small window: only the newest turns can fit.
    let s = setup(Arc::clone(&provider), 400, None).await;
    for turn in 0..100 {
        ask(&s.svc, s.user, &s.chat, format!("question number {turn}"), "fast").await.unwrap();
    }
    let seen = provider.seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.messages.last().unwrap().content, "question number 99");
    let contents: Vec<&str> = last.messages.iter().map(|m| m.content.as_str()).collect();
    assert!(contents.contains(&"question number 98"), "the previous turn is kept: {contents:?}");
    assert!(!contents.contains(&"question number 0"), "the oldest turns are dropped");
    assert!(contents.len() > 4, "as many newest turns as fit: {contents:?}");
}

#[tokio::test]
async fn a_message_too_large_for_the_window_is_refused_and_not_stored() {
    let s = setup(Scripted::answering(Vec::new()), 200, None).await;
    let err = ask(&s.svc, s.user, &s.chat, "word ".repeat(500), "fast").await.unwrap_err();
    assert!(matches!(err, ServiceError::MessageTooLarge(_)), "{err:?}");
    assert!(s.svc.list_messages(s.user, &s.chat, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_alias_and_foreign_chat_are_refused() {
    let s = setup(Scripted::answering(Vec::new()), 8192, None).await;
    match ask(&s.svc, s.user, &s.chat, "hi".into(), "turbo").await {
        Err(ServiceError::UnknownModel { known, .. }) => assert_eq!(known, ["fast"]),
        other => panic!("{other:?}"),
    }
    let email = Email::parse("stranger@example.com").unwrap();
    let stranger = s.svc.register(email, Password::parse("password123".into()).unwrap()).await.unwrap().id;
    let err = ask(&s.svc, stranger, &s.chat, "hi".into(), "fast").await.unwrap_err();
    assert!(matches!(err, ServiceError::ChatNotFound { .. }), "{err:?}");
    // A user id that names nobody (a token outliving its user) is refused before the chat is looked at.
    let err = ask(&s.svc, UserId::new_random(), &s.chat, "hi".into(), "fast").await.unwrap_err();
    assert!(matches!(err, ServiceError::UserNotFound), "{err:?}");
}

#[tokio::test]
async fn a_second_message_while_one_is_answered_is_refused() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let provider = Arc::new(Scripted { gate: Some(Arc::clone(&gate)), ..Default::default() });
    let s = setup(Arc::clone(&provider), 8192, None).await;
    let svc = s.svc.clone();
    let (user, chat) = (s.user, s.chat.clone());
    let first = tokio::spawn(async move { ask(&svc, user, &chat, "first".into(), "fast").await });
    // Wait until the provider holds the first request.
    for _ in 0..200 {
        if !provider.seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = ask(&s.svc, s.user, &s.chat, "second".into(), "fast").await.unwrap_err();
    assert!(matches!(err, ServiceError::GenerationInProgress), "{err:?}");
    gate.add_permits(1);
    first.await.unwrap().unwrap();
    // Once the first reply is stored, the chat is free again.
    gate.add_permits(1);
    ask(&s.svc, s.user, &s.chat, "third".into(), "fast").await.unwrap();
}

#[tokio::test]
async fn a_chats_own_system_prompt_replaces_the_global_one() {
    let provider = Scripted::answering(Vec::new());
    let s = setup(Arc::clone(&provider), 8192, Some("Global prompt.")).await;
    let pirate = s.svc.create_chat(s.user, None, Some("Talk like a pirate.".into())).await.unwrap();
    let pirate_id = pirate.chat.id.to_string();
    ask(&s.svc, s.user, &pirate_id, "Hello".into(), "fast").await.unwrap();
    ask(&s.svc, s.user, &s.chat, "Hello".into(), "fast").await.unwrap();
    let seen = provider.seen.lock().unwrap();
    assert_eq!(seen[0].messages[0], ChatMessage::new(ChatRole::System, "Talk like a pirate."));
    assert_eq!(seen[1].messages[0], ChatMessage::new(ChatRole::System, "Global prompt."));
}

#[tokio::test]
async fn an_alias_without_a_usable_provider_keeps_the_message_and_says_not_configured() {
    let s = setup(Scripted::answering(Vec::new()), 8192, None).await;
    let empty = Router::new(vec![Alias { name: "fast".into(), targets: Vec::new(), retry: RetryPolicy::default() }]);
    let svc = s.svc.with_router(empty);
    let err = ask(&svc, s.user, &s.chat, "anyone there?".into(), "fast").await.unwrap_err();
    match err {
        ServiceError::Provider { error, .. } => assert!(matches!(error.error, ProviderError::NotConfigured)),
        other => panic!("{other:?}"),
    }
    assert_eq!(svc.list_messages(s.user, &s.chat, None).await.unwrap().len(), 1);
}
