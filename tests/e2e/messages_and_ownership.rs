//! A chat's messages and who may reach a chat, over real HTTP: `GET /chats/{chat_id}/messages`, ownership, 401s.

use chat_domain::Role;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::chats::{assert_timestamp, id_of, not_found_body, one_error, patch, validation_errors};
use crate::support::{TestServer, seed_message};

// ----- GET /chats/{chat_id}/messages -----

#[tokio::test]
async fn a_new_chat_has_no_messages() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await;
    let (status, messages) = server.get(&format!("/chats/{}/messages", id_of(&chat)), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(messages, json!([]));
}

#[tokio::test]
async fn messages_come_oldest_first_with_every_field_and_are_counted() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat_id = id_of(&server.create_chat(&user, Some("talk")).await);
    let other_chat = id_of(&server.create_chat(&user, Some("other")).await);
    let db = server.database();
    let seeded = [
        (Role::User, "first question"),
        (Role::Assistant, "first answer"),
        (Role::User, "second question"),
        (Role::Assistant, "second answer"),
    ];
    let seeded_ids: Vec<i64> = seeded.iter().map(|(role, text)| seed_message(&db, &chat_id, *role, text)).collect();
    seed_message(&db, &other_chat, Role::User, "elsewhere");

    let (status, messages) = server.get(&format!("/chats/{chat_id}/messages"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{messages}");
    let messages = messages.as_array().expect("a list");
    assert_eq!(messages.len(), seeded.len(), "only this chat's messages: {messages:?}");
    for (message, ((role, text), id)) in messages.iter().zip(seeded.iter().zip(&seeded_ids)) {
        assert!(message["id"].is_i64(), "id is an integer: {message}");
        assert_eq!(message["id"], *id);
        assert_eq!(message["chat_id"], json!(chat_id));
        assert_eq!(message["role"], if *role == Role::User { "user" } else { "assistant" });
        assert_eq!(message["content"], *text);
        assert_eq!(message["status"], "complete");
        assert_timestamp(&message["created_at"]);
    }
    let created: Vec<&str> = messages.iter().map(|m| m["created_at"].as_str().expect("created_at")).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "oldest first: {created:?}");

    let (status, oldest) = server.get(&format!("/chats/{chat_id}/messages?limit=2"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(oldest, json!(messages[..2]), "limit alone gives the oldest N");
    let (_, all) = server.get(&format!("/chats/{chat_id}/messages?limit=500"), Some(&user.token)).await;
    assert_eq!(all.as_array().map(Vec::len), Some(4));

    let (_, chat) = server.get(&format!("/chats/{chat_id}"), Some(&user.token)).await;
    assert_eq!(chat["message_count"], 4);
    let (_, list) = server.get("/chats", Some(&user.token)).await;
    let counts: Vec<(String, Value)> =
        list["chats"].as_array().expect("chats").iter().map(|c| (id_of(c), c["message_count"].clone())).collect();
    assert_eq!(counts, [(other_chat, json!(1)), (chat_id, json!(4))], "counts in the list");
}

#[tokio::test]
async fn messages_refuse_a_limit_out_of_range() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat_id = id_of(&server.create_chat(&user, None).await);
    seed_message(&server.database(), &chat_id, Role::User, "hi");
    let cases = [
        ("limit=0", "greater_than_equal"),
        ("limit=501", "less_than_equal"),
        ("limit=-1", "greater_than_equal"),
        ("limit=many", "int_parsing"),
    ];
    for (query, kind) in cases {
        let (status, body) = server.get(&format!("/chats/{chat_id}/messages?{query}"), Some(&user.token)).await;
        assert_eq!(validation_errors(status, &body), one_error(kind, r#"["query","limit"]"#), "?{query}");
    }
    for query in ["limit=1", "limit=500"] {
        let (status, body) = server.get(&format!("/chats/{chat_id}/messages?{query}"), Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "?{query}: {body}");
        assert_eq!(body.as_array().map(Vec::len), Some(1));
    }
}

// ----- ownership and authentication -----

#[tokio::test]
async fn another_users_chat_is_indistinguishable_from_a_missing_one_and_stays_untouched() {
    let server = TestServer::start().await;
    let owner = server.signup().await;
    let intruder = server.signup().await;
    let chat = server.create_chat(&owner, Some("Private")).await;
    let id = id_of(&chat);
    seed_message(&server.database(), &id, Role::User, "secret");
    let (_, chat) = server.get(&format!("/chats/{id}"), Some(&owner.token)).await;
    let (_, messages) = server.get(&format!("/chats/{id}/messages"), Some(&owner.token)).await;

    let missing = "5c0c7d8e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    let (_, missing_body) = server.get(&format!("/chats/{missing}"), Some(&intruder.token)).await;
    let expected = json!({"detail": missing_body["detail"].as_str().expect("detail").replace(missing, &id)});
    assert_eq!(expected, not_found_body(&id), "the same sentence as for a missing chat");

    let (status, body) = server.get(&format!("/chats/{id}"), Some(&intruder.token)).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, expected.clone()), "GET");
    let (status, body) = server.get(&format!("/chats/{id}/messages"), Some(&intruder.token)).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, expected.clone()), "GET messages");
    let (status, body) = server.get(&format!("/chats/{id}/messages?limit=1"), Some(&intruder.token)).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, expected.clone()), "GET messages?limit=1");
    let (status, body) = patch(&server, &format!("/chats/{id}"), &intruder.token, json!({"title": "pwned"})).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, expected.clone()), "PATCH");
    let (status, _, body) = server.call(Method::DELETE, &format!("/chats/{id}"), Some(&intruder.token), None).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, expected), "DELETE");

    let (status, after) = server.get(&format!("/chats/{id}"), Some(&owner.token)).await;
    assert_eq!(status, StatusCode::OK, "the chat was not deleted: {after}");
    assert_eq!(after, chat, "the chat was not renamed or touched");
    let (_, messages_after) = server.get(&format!("/chats/{id}/messages"), Some(&owner.token)).await;
    assert_eq!(messages_after, messages, "its messages are intact");
    let (_, intruder_list) = server.get("/chats", Some(&intruder.token)).await;
    assert_eq!(intruder_list, json!({"chats": [], "total": 0}));
}

#[tokio::test]
async fn every_chat_route_without_a_token_is_401_with_www_authenticate_bearer() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, Some("guarded")).await;
    let id = id_of(&chat);
    let routes = [
        (Method::POST, "/chats".to_owned(), Some(json!({"title": "anonymous"}))),
        (Method::GET, "/chats".to_owned(), None),
        (Method::GET, format!("/chats/{id}"), None),
        (Method::GET, format!("/chats/{id}/messages"), None),
        (Method::PATCH, format!("/chats/{id}"), Some(json!({"title": "anonymous"}))),
        (Method::DELETE, format!("/chats/{id}"), None),
    ];
    for (method, path, body) in routes {
        let (status, headers, answer) = server.call(method.clone(), &path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
        assert_eq!(answer, json!({"detail": "Not authenticated"}), "{method} {path}");
        assert_eq!(
            headers.get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap_or_default()),
            Some("Bearer"),
            "{method} {path}"
        );
    }
    let (status, after) = server.get(&format!("/chats/{id}"), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, chat, "nothing changed without a token");
    let (_, list) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(list["total"], 1, "no chat was created without a token");
}
