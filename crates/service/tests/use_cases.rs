//! The account and chat use-cases on a real SQLite file, without HTTP.
#![expect(clippy::unwrap_used, reason = "test helpers, like tests, fail loudly on anything unexpected")]

use chat_auth::{JwtAlgorithm, PasswordHasher, TokenKeys, TokenSettings};
use chat_domain::{ChatTitle, Email, Password};
use chat_service::{ChatService, ServiceError};
use chat_storage::{Database, PoolOptions};
use secrecy::SecretString;

fn service() -> (tempfile::TempDir, ChatService) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("svc.db").display());
    let db = Database::open(&url, &PoolOptions::default()).unwrap();
    let tokens = TokenKeys::new(&TokenSettings {
        secret: SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
        algorithm: JwtAlgorithm::Hs256,
        lifetime: chrono::Duration::minutes(5),
        issuer: "test".into(),
        audience: "test".into(),
    });
    let router = llm_providers::router::Router::new(Vec::new());
    let chat = chat_service::ChatSettings {
        system_prompt: None,
        default_model: "fast".into(),
        generation: chat_service::GenerationSettings::default(),
        refresh_token_lifetime: chrono::Duration::days(30),
        daily_token_budget: None,
    };
    (dir, ChatService::new(db, PasswordHasher::new(4, 2).unwrap(), tokens, router, chat))
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn password(s: &str) -> Password {
    Password::parse(s.to_owned()).unwrap()
}

#[tokio::test]
async fn register_login_authenticate() {
    let (_dir, svc) = service();
    let user = svc.register(email("Ann@Example.com"), password("password123")).await.unwrap();
    assert_eq!(user.email, "ann@example.com");
    assert!(user.password_hash.starts_with("$2b$"));
    let token = svc.login("ANN@example.COM ", "password123").await.unwrap();
    assert_eq!(svc.authenticate(&token.access.token).await.unwrap().id, user.id);
}

#[tokio::test]
async fn same_email_in_another_case_is_taken() {
    let (_dir, svc) = service();
    svc.register(email("bo@example.com"), password("password123")).await.unwrap();
    let err = svc.register(email("BO@example.com"), password("password456")).await.unwrap_err();
    assert!(matches!(err, ServiceError::EmailTaken), "{err:?}");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_the_same_error() {
    let (_dir, svc) = service();
    svc.register(email("cy@example.com"), password("password123")).await.unwrap();
    for (who, pw) in
        [("cy@example.com", "wrong-password"), ("nobody@example.com", "password123"), ("not an email", "x")]
    {
        let err = svc.login(who, pw).await.unwrap_err();
        assert!(matches!(err, ServiceError::InvalidCredentials), "{who}: {err:?}");
    }
}

#[tokio::test]
async fn another_users_chat_is_not_found_for_every_use_case() {
    let (_dir, svc) = service();
    let owner = svc.register(email("own@example.com"), password("password123")).await.unwrap();
    let intruder = svc.register(email("int@example.com"), password("password123")).await.unwrap();
    let chat = svc.create_chat(owner.id, None, None).await.unwrap();
    let id = chat.chat.id.to_string();
    let title = || ChatTitle::parse_for_rename("mine now".into()).unwrap();
    assert!(matches!(svc.get_chat(intruder.id, &id).await, Err(ServiceError::ChatNotFound { .. })));
    assert!(matches!(svc.list_messages(intruder.id, &id, None).await, Err(ServiceError::ChatNotFound { .. })));
    assert!(matches!(
        svc.rename_chat(intruder.id, &id, title(), chat_storage::PromptChange::Keep).await,
        Err(ServiceError::ChatNotFound { .. })
    ));
    assert!(matches!(svc.delete_chat(intruder.id, &id).await, Err(ServiceError::ChatNotFound { .. })));
    // Still there, unchanged, for its owner.
    let again = svc.get_chat(owner.id, &id).await.unwrap();
    assert_eq!(again.chat.title, None);
}

#[tokio::test]
async fn a_chat_id_that_is_not_a_uuid_is_not_found_with_its_text() {
    let (_dir, svc) = service();
    let user = svc.register(email("dee@example.com"), password("password123")).await.unwrap();
    match svc.get_chat(user.id, "not-a-uuid").await {
        Err(ServiceError::ChatNotFound { chat_id }) => assert_eq!(chat_id, "not-a-uuid"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn authenticate_refuses_the_token_of_a_deleted_user() {
    let (_dir, svc) = service();
    let user = svc.register(email("gone@example.com"), password("password123")).await.unwrap();
    let token = svc.login("gone@example.com", "password123").await.unwrap();
    let id = user.id.to_string();
    svc.database()
        .run(move |c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(format!("DELETE FROM users WHERE id = '{id}'")).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    assert!(matches!(svc.authenticate(&token.access.token).await, Err(ServiceError::UserNotFound)));
}
