//! Rate limits: sign-up and login attempts per client address, new replies per user; 429 with `Retry-After` in
//! the contract's error shape, and nothing else refused.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::conversation::{cancel, read_deltas, slow_reply, words};
use crate::support::llm;
use crate::support::{TestServer, sse};

#[tokio::test]
async fn auth_attempts_over_the_limit_get_429_with_retry_after_and_other_routes_still_answer() {
    let server = TestServer::start_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let user = server.signup().await; // two attempts: register and login
    let (status, _) =
        server.post("/auth/login", None, json!({"email": user.email, "password": "wrong-password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The fourth attempt, whatever it is (even malformed), is refused before it is read.
    for body in [json!({"email": user.email, "password": "password123"}), json!({"nonsense": true})] {
        let (status, headers, answer) = server.call(reqwest::Method::POST, "/auth/login", None, Some(body)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry), "Retry-After {retry}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains("Too many") && detail.contains("retry after"), "{detail}");
    }
    let form = server.client().post(server.url("/auth/token")).form(&[("username", "a@b.co"), ("password", "x")]);
    assert_eq!(form.send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // The token in hand still works.
    let (status, me) = server.get("/auth/me", Some(&user.token)).await;
    assert_eq!((status, &me["email"]), (StatusCode::OK, &json!(user.email)));
}

#[tokio::test]
async fn behind_a_proxy_each_forwarded_address_has_its_own_budget() {
    let server =
        TestServer::start_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "1"), ("CLIENT_IP_HEADER", "X-Forwarded-For")]).await;
    let attempt = |forwarded: &'static str| {
        server
            .client()
            .post(server.url("/auth/login"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({"email": "nobody@example.com", "password": "password123"}))
            .send()
    };
    assert_eq!(attempt("198.51.100.1").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(attempt("198.51.100.1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // A client cannot escape by claiming another address before the proxy's.
    assert_eq!(attempt("203.0.113.9, 198.51.100.1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt("198.51.100.2").await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn new_replies_over_a_users_limit_get_429_and_other_users_are_not_affected() {
    let (_mock, server, user, chat) = llm::setup(None, &[("REPLY_RATE_LIMIT_PER_MINUTE", "2")]).await;
    for text in ["one", "two"] {
        let (status, reply) = server.post("/chat", Some(&user.token), json!({"chat_id": chat, "message": text})).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let (status, headers, answer) = server
        .call(reqwest::Method::POST, "/chat", Some(&user.token), Some(json!({"chat_id": chat, "message": "three"})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(headers.contains_key("retry-after"));
    assert!(answer["detail"].as_str().unwrap().contains("new replies for this account"), "{answer}");
    let (status, _, _) =
        server.call(reqwest::Method::POST, &format!("/chats/{chat}/regenerate"), Some(&user.token), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Nothing was stored for the refused message.
    let (_, messages) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(messages.as_array().unwrap().len(), 4, "{messages}");
    // Another user has a budget of their own; reading is not limited.
    let other = server.signup().await;
    let theirs = server.create_chat(&other, None).await["id"].as_str().unwrap().to_owned();
    let (status, _) = server.post("/chat", Some(&other.token), json!({"chat_id": theirs, "message": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_user_may_have_only_so_many_replies_running_at_once() {
    let (mock, server, user, first) = llm::setup(None, &[("MAX_REPLIES_PER_USER", "2")]).await;
    mock.script([slow_reply(&words(40), 10), slow_reply(&words(40), 10)]).await.unwrap();
    let second = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let third = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let mut running = Vec::new();
    for chat in [&first, &second] {
        let mut stream = sse::post_chat(&server, &user, json!({"chat_id": chat, "message": "long"})).await.unwrap();
        read_deltas(&mut stream, 1).await;
        running.push(stream);
    }
    let (status, headers, answer) = server
        .call(reqwest::Method::POST, "/chat", Some(&user.token), Some(json!({"chat_id": third, "message": "third"})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(headers["retry-after"], "1");
    assert!(answer["detail"].as_str().unwrap().contains("already has 2 replies being generated"), "{answer}");
    // Nothing was stored for it.
    let (_, messages) = server.get(&format!("/chats/{third}/messages"), Some(&user.token)).await;
    assert_eq!(messages, json!([]));
    // Another user is not held back.
    let other = server.signup().await;
    let theirs = server.create_chat(&other, None).await["id"].as_str().unwrap().to_owned();
    let (status, _) = server.post("/chat", Some(&other.token), json!({"chat_id": theirs, "message": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    // Once one of the user's replies is stopped, the next one runs.
    let (status, _) = cancel(&server, &user, &first).await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = server.post("/chat", Some(&user.token), json!({"chat_id": third, "message": "third"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    drop(running);
}
