//! The Chats table of API.md over real HTTP: create, list, read, rename and delete chats, and a chat's system prompt.

use std::collections::HashSet;

use chat_domain::Role;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, TestUser, seed_message};

/// A canonical (hyphenated, lower-case) UUID string.
fn assert_uuid(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    let shape_ok = text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        });
    assert!(shape_ok, "{text:?} is not a canonical UUID");
    assert!(text.parse::<chat_domain::ChatId>().is_ok(), "{text:?} does not parse as a UUID");
}

/// RFC 3339 in UTC with microseconds and a `Z`: `2026-11-24T10:05:00.112398Z`.
pub(crate) fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    let pattern = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    let shape_ok = text.len() == pattern.len()
        && text.chars().zip(pattern.chars()).all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p });
    assert!(shape_ok, "{text:?} is not RFC 3339 UTC with microseconds and a Z");
}

/// Every field of API.md's `Chat`, with its JSON type, owned by `user`.
fn assert_chat_shape(chat: &Value, user: &TestUser) {
    assert_uuid(&chat["id"]);
    assert_eq!(chat["user_id"], json!(user.id), "user_id: {chat}");
    assert!(chat["title"].is_string() || chat["title"].is_null(), "title: {chat}");
    assert!(chat.get("title").is_some(), "title must be present, even when null: {chat}");
    assert_timestamp(&chat["created_at"]);
    assert_timestamp(&chat["updated_at"]);
    assert!(chat["message_count"].is_i64(), "message_count: {chat}");
}

/// The list of `{type, loc}` pairs of a 422, as compact JSON for easy comparison.
pub(crate) fn validation_errors(status: StatusCode, body: &Value) -> Vec<(String, String)> {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is not a list: {body}"))
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string(), "msg: {e}");
            (e["type"].as_str().unwrap_or_else(|| panic!("type: {e}")).to_owned(), e["loc"].to_string())
        })
        .collect()
}

pub(crate) fn one_error(kind: &str, loc: &str) -> Vec<(String, String)> {
    vec![(kind.to_owned(), loc.to_owned())]
}

pub(crate) fn not_found_body(chat_id: &str) -> Value {
    json!({"detail": format!("Chat with id '{chat_id}' not found")})
}

fn ids(list: &Value) -> Vec<String> {
    list["chats"]
        .as_array()
        .unwrap_or_else(|| panic!("chats is not a list: {list}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_else(|| panic!("id: {c}")).to_owned())
        .collect()
}

pub(crate) fn id_of(chat: &Value) -> String {
    chat["id"].as_str().unwrap_or_else(|| panic!("chat without id: {chat}")).to_owned()
}

/// A request with a raw body (or none) and an optional content type; returns status, headers and raw bytes.
async fn raw(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = server.client().request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.expect("body").to_vec())
}

pub(crate) async fn patch(server: &TestServer, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, body) = server.call(Method::PATCH, path, Some(token), Some(body)).await;
    (status, body)
}

// ----- POST /chats -----

#[tokio::test]
async fn create_chat_answers_201_with_every_chat_field() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (status, chat) = server.post("/chats", Some(&user.token), json!({"title": "My First Chat"})).await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    assert_chat_shape(&chat, &user);
    assert_eq!(chat["title"], "My First Chat");
    assert_eq!(chat["message_count"], 0);
    assert_eq!(chat["created_at"], chat["updated_at"], "a new chat was never updated: {chat}");

    let (status, again) = server.get(&format!("/chats/{}", id_of(&chat)), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, chat, "the created chat is the stored one");
}

#[tokio::test]
async fn create_chat_without_a_title_in_every_form_gives_a_null_title() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let token = Some(user.token.as_str());
    let cases: [(&str, Option<&str>, Option<&str>); 4] = [
        ("no body, no content type", None, None),
        ("empty JSON body", Some("application/json"), Some("")),
        ("empty object", Some("application/json"), Some("{}")),
        ("null title", Some("application/json"), Some(r#"{"title": null}"#)),
    ];
    let mut created = HashSet::new();
    for (case, content_type, body) in cases {
        let (status, _, bytes) = raw(&server, Method::POST, "/chats", token, content_type, body).await;
        let chat: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::CREATED, "{case}: {chat}");
        assert_chat_shape(&chat, &user);
        assert_eq!(chat["title"], Value::Null, "{case}: {chat}");
        assert_eq!(chat["message_count"], 0, "{case}");
        created.insert(id_of(&chat));
    }
    assert_eq!(created.len(), cases.len(), "each request made its own chat");
    let (_, list) = server.get("/chats", token).await;
    assert_eq!(list["total"], cases.len());
}

#[tokio::test]
async fn create_chat_accepts_200_characters_and_refuses_201() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let token = Some(user.token.as_str());
    for title in ["t".repeat(200), "é".repeat(200)] {
        let (status, chat) = server.post("/chats", token, json!({ "title": title })).await;
        assert_eq!(status, StatusCode::CREATED, "{} chars ({} bytes): {chat}", title.chars().count(), title.len());
        assert_eq!(chat["title"], json!(title));
    }
    for title in ["t".repeat(201), "é".repeat(201)] {
        let (status, body) = server.post("/chats", token, json!({ "title": title })).await;
        assert_eq!(validation_errors(status, &body), one_error("string_too_long", r#"["body","title"]"#));
    }
    let (_, list) = server.get("/chats", token).await;
    assert_eq!(list["total"], 2, "the refused titles made no chat: {list}");
}

#[tokio::test]
async fn create_chat_refuses_a_title_that_is_not_a_string() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    for title in [json!(42), json!(true), json!(["a"]), json!({"text": "a"})] {
        let (status, body) = server.post("/chats", Some(&user.token), json!({ "title": title })).await;
        assert_eq!(validation_errors(status, &body), one_error("string_type", r#"["body","title"]"#), "title {title}");
    }
    let (_, list) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(list["total"], 0, "{list}");
}

// ----- GET /chats -----

#[tokio::test]
async fn list_is_newest_updated_first_and_renames_and_messages_move_a_chat_up() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let token = Some(user.token.as_str());
    let a = id_of(&server.create_chat(&user, Some("A")).await);
    let b = id_of(&server.create_chat(&user, Some("B")).await);
    let c = id_of(&server.create_chat(&user, Some("C")).await);

    let (status, list) = server.get("/chats", token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(ids(&list), [c.clone(), b.clone(), a.clone()], "newest first");
    assert_eq!(list["total"], 3);
    for chat in list["chats"].as_array().expect("chats") {
        assert_chat_shape(chat, &user);
    }

    let (status, renamed) = patch(&server, &format!("/chats/{a}"), &user.token, json!({"title": "A, renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    let (_, list) = server.get("/chats", token).await;
    assert_eq!(ids(&list), [a.clone(), c.clone(), b.clone()], "a rename moves the chat to the top");
    assert_eq!(list["chats"][0]["title"], "A, renamed");

    let message_id = seed_message(&server.database(), &b, Role::User, "hello");
    let (_, list) = server.get("/chats", token).await;
    assert_eq!(ids(&list), [b.clone(), a, c], "a new message moves the chat to the top");
    assert_eq!(list["chats"][0]["message_count"], 1);
    let (_, messages) = server.get(&format!("/chats/{b}/messages"), token).await;
    assert_eq!(messages[0]["id"], message_id);
    assert_eq!(list["chats"][0]["updated_at"], messages[0]["created_at"], "updated_at is the message's time");
}

#[tokio::test]
async fn list_pages_beyond_100_with_an_exact_total() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let token = Some(user.token.as_str());
    let mut created = Vec::new();
    for n in 0..105 {
        created.push(id_of(&server.create_chat(&user, Some(&format!("chat {n}"))).await));
    }
    // Newest first: the reverse of creation order.
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let (status, default_page) = server.get("/chats", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&default_page), newest_first[..50], "default limit is 50, offset 0");
    assert_eq!(default_page["total"], 105);

    let (_, big) = server.get("/chats?limit=100", token).await;
    assert_eq!(ids(&big), newest_first[..100]);
    assert_eq!(big["total"], 105, "total is exact beyond 100");

    let (_, rest) = server.get("/chats?limit=100&offset=100", token).await;
    assert_eq!(ids(&rest), newest_first[100..]);
    assert_eq!(rest["total"], 105);

    let mut seen = HashSet::new();
    for offset in [0, 50, 100] {
        let (status, page) = server.get(&format!("/chats?limit=50&offset={offset}"), token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 105);
        for id in ids(&page) {
            assert!(seen.insert(id.clone()), "{id} appears on two pages");
        }
    }
    assert_eq!(seen, created.iter().cloned().collect::<HashSet<_>>(), "the pages cover every chat once");

    let (_, limit_one) = server.get("/chats?limit=1&offset=104", token).await;
    assert_eq!(ids(&limit_one), [created[0].clone()], "limit=1 and the last offset are in range");
    let (status, past_end) = server.get("/chats?offset=500", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&past_end), Vec::<String>::new());
    assert_eq!(past_end["total"], 105, "total does not depend on the page");
}

#[tokio::test]
async fn list_refuses_out_of_range_and_non_integer_query_values() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    server.create_chat(&user, Some("present")).await;
    let cases = [
        ("limit=0", "greater_than_equal", r#"["query","limit"]"#),
        ("limit=-5", "greater_than_equal", r#"["query","limit"]"#),
        ("limit=101", "less_than_equal", r#"["query","limit"]"#),
        ("offset=-1", "greater_than_equal", r#"["query","offset"]"#),
        ("limit=abc", "int_parsing", r#"["query","limit"]"#),
        ("offset=abc", "int_parsing", r#"["query","offset"]"#),
        ("limit=1.5", "int_parsing", r#"["query","limit"]"#),
    ];
    for (query, kind, loc) in cases {
        let (status, body) = server.get(&format!("/chats?{query}"), Some(&user.token)).await;
        assert_eq!(validation_errors(status, &body), one_error(kind, loc), "?{query}");
    }
    let (status, body) = server.get("/chats?limit=0&offset=-1", Some(&user.token)).await;
    assert_eq!(
        validation_errors(status, &body),
        [
            ("greater_than_equal".to_owned(), r#"["query","limit"]"#.to_owned()),
            ("greater_than_equal".to_owned(), r#"["query","offset"]"#.to_owned())
        ],
        "every problem is reported at once"
    );
    for query in ["limit=1", "limit=100", "offset=0"] {
        let (status, body) = server.get(&format!("/chats?{query}"), Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "?{query} is in range: {body}");
        assert_eq!(body["total"], 1);
    }
}

#[tokio::test]
async fn list_shows_and_counts_only_the_users_own_chats() {
    let server = TestServer::start().await;
    let alice = server.signup().await;
    let bob = server.signup().await;
    let alice_chats: HashSet<String> = [
        id_of(&server.create_chat(&alice, Some("alice 1")).await),
        id_of(&server.create_chat(&alice, Some("alice 2")).await),
    ]
    .into();
    let bob_chat = id_of(&server.create_chat(&bob, Some("bob 1")).await);

    let (_, list) = server.get("/chats", Some(&alice.token)).await;
    assert_eq!(ids(&list).into_iter().collect::<HashSet<_>>(), alice_chats);
    assert_eq!(list["total"], 2, "bob's chat is not counted for alice");
    assert!(list["chats"].as_array().expect("chats").iter().all(|c| c["user_id"] == json!(alice.id)));

    let (_, list) = server.get("/chats", Some(&bob.token)).await;
    assert_eq!(ids(&list), [bob_chat]);
    assert_eq!(list["total"], 1, "alice's chats are not counted for bob");

    let carol = server.signup().await;
    let (status, list) = server.get("/chats", Some(&carol.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({"chats": [], "total": 0}));
}

// ----- GET /chats/{chat_id} -----

#[tokio::test]
async fn get_chat_answers_the_chat() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let created = server.create_chat(&user, Some("Trip")).await;
    let (status, chat) = server.get(&format!("/chats/{}", id_of(&created)), Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    assert_chat_shape(&chat, &user);
    assert_eq!(chat, created);
}

#[tokio::test]
async fn a_missing_chat_or_a_non_uuid_id_is_404_naming_the_id_for_every_verb() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    server.create_chat(&user, Some("exists")).await;
    for id in ["0b7f2c1e-6a3d-4f5e-9a8b-1c2d3e4f5a6b", "not-a-uuid", "12345"] {
        let (status, body) = server.get(&format!("/chats/{id}"), Some(&user.token)).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found_body(id)), "GET /chats/{id}");
        let (status, body) = server.get(&format!("/chats/{id}/messages"), Some(&user.token)).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found_body(id)), "GET /chats/{id}/messages");
        let (status, body) = patch(&server, &format!("/chats/{id}"), &user.token, json!({"title": "x"})).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found_body(id)), "PATCH /chats/{id}");
        let (status, _, body) = server.call(Method::DELETE, &format!("/chats/{id}"), Some(&user.token), None).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found_body(id)), "DELETE /chats/{id}");
    }
}

// ----- PATCH /chats/{chat_id} -----

#[tokio::test]
async fn rename_answers_the_chat_with_the_new_title_and_a_later_updated_at() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let before = server.create_chat(&user, Some("Old")).await;
    let id = id_of(&before);
    seed_message(&server.database(), &id, Role::User, "kept");
    let (_, before) = server.get(&format!("/chats/{id}"), Some(&user.token)).await;

    let (status, renamed) = patch(&server, &format!("/chats/{id}"), &user.token, json!({"title": "New"})).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_chat_shape(&renamed, &user);
    assert_eq!(renamed["id"], json!(id));
    assert_eq!(renamed["title"], "New");
    assert_eq!(renamed["created_at"], before["created_at"]);
    assert_eq!(renamed["message_count"], 1);
    let (earlier, later) = (before["updated_at"].as_str().expect("ts"), renamed["updated_at"].as_str().expect("ts"));
    assert!(later > earlier, "updated_at must move forward: {earlier} -> {later}");

    let (_, stored) = server.get(&format!("/chats/{id}"), Some(&user.token)).await;
    assert_eq!(stored, renamed, "the rename is stored");

    let long = "é".repeat(200);
    let (status, renamed) = patch(&server, &format!("/chats/{id}"), &user.token, json!({"title": long})).await;
    assert_eq!(status, StatusCode::OK, "200 characters are allowed: {renamed}");
    assert_eq!(renamed["title"], json!(long));
}

#[tokio::test]
async fn rename_refuses_bad_titles_and_bodies_and_keeps_the_old_title() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, Some("Keep me")).await;
    let path = format!("/chats/{}", id_of(&chat));
    let cases = [
        (json!({"title": ""}), "string_too_short", r#"["body","title"]"#),
        (json!({"title": "x".repeat(201)}), "string_too_long", r#"["body","title"]"#),
        (json!({"title": "é".repeat(201)}), "string_too_long", r#"["body","title"]"#),
        (json!({}), "missing", r#"["body","title"]"#),
        (json!({"name": "x"}), "missing", r#"["body","title"]"#),
        (json!({"title": null}), "string_type", r#"["body","title"]"#),
        (json!({"title": 7}), "string_type", r#"["body","title"]"#),
    ];
    for (body, kind, loc) in cases {
        let (status, answer) = patch(&server, &path, &user.token, body.clone()).await;
        assert_eq!(validation_errors(status, &answer), one_error(kind, loc), "PATCH {body}");
    }
    for body in [json!(["title", "x"]), json!("x"), json!(5)] {
        let (status, answer) = patch(&server, &path, &user.token, body.clone()).await;
        let errors = validation_errors(status, &answer);
        assert_eq!(errors.len(), 1, "PATCH {body}: {answer}");
        assert_eq!(errors[0].1, r#"["body"]"#, "PATCH {body}: {answer}");
    }
    let (status, _, bytes) = raw(&server, Method::PATCH, &path, Some(&user.token), None, None).await;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(validation_errors(status, &answer), one_error("missing", r#"["body"]"#), "PATCH without a body");

    let (_, stored) = server.get(&path, Some(&user.token)).await;
    assert_eq!(stored, chat, "nothing was changed by the refused renames");
}

// ----- DELETE /chats/{chat_id} -----

#[tokio::test]
async fn delete_answers_204_with_an_empty_body_and_takes_the_messages_along() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat_id = id_of(&server.create_chat(&user, Some("doomed")).await);
    let kept = id_of(&server.create_chat(&user, Some("kept")).await);
    let db = server.database();
    seed_message(&db, &chat_id, Role::User, "q");
    seed_message(&db, &chat_id, Role::Assistant, "a");
    seed_message(&db, &kept, Role::User, "stays");

    let (status, _, body) =
        raw(&server, Method::DELETE, &format!("/chats/{chat_id}"), Some(&user.token), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty(), "204 has an empty body, got {:?}", String::from_utf8_lossy(&body));

    let (status, answer) = server.get(&format!("/chats/{chat_id}"), Some(&user.token)).await;
    assert_eq!((status, answer), (StatusCode::NOT_FOUND, not_found_body(&chat_id)));
    let (status, answer) = server.get(&format!("/chats/{chat_id}/messages"), Some(&user.token)).await;
    assert_eq!((status, answer), (StatusCode::NOT_FOUND, not_found_body(&chat_id)));
    let (status, _, answer) = server.call(Method::DELETE, &format!("/chats/{chat_id}"), Some(&user.token), None).await;
    assert_eq!((status, answer), (StatusCode::NOT_FOUND, not_found_body(&chat_id)), "a second delete");

    let parsed: chat_domain::ChatId = chat_id.parse().expect("chat id");
    let left = db.with_connection(|c| chat_storage::messages::list_messages(c, parsed, None)).expect("list messages");
    assert!(left.is_empty(), "the chat's messages are gone from the database: {left:?}");
    let parsed_kept: chat_domain::ChatId = kept.parse().expect("chat id");
    let others = db.with_connection(|c| chat_storage::messages::list_messages(c, parsed_kept, None)).expect("list");
    assert_eq!(others.len(), 1, "another chat's messages stay");

    let (_, list) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(ids(&list), [kept]);
    assert_eq!(list["total"], 1);
}

// ----- a chat's own system prompt -----

#[tokio::test]
async fn a_chat_carries_its_own_system_prompt_which_patch_changes_or_clears() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (status, chat) = server
        .post("/chats", Some(&user.token), json!({"title": "Pirate", "system_prompt": "Talk like a pirate."}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    assert_eq!(chat["system_prompt"], "Talk like a pirate.");
    let path = format!("/chats/{}", chat["id"].as_str().unwrap());
    // A rename without the field keeps the prompt.
    let (_, _, kept) = server.call(Method::PATCH, &path, Some(&user.token), Some(json!({"title": "Renamed"}))).await;
    assert_eq!(kept["system_prompt"], "Talk like a pirate.");
    // "" returns the chat to the global prompt.
    let (_, _, cleared) = server
        .call(Method::PATCH, &path, Some(&user.token), Some(json!({"title": "Plain", "system_prompt": ""})))
        .await;
    assert_eq!(cleared["system_prompt"], Value::Null);
    let (status, _, body) = server
        .call(Method::PATCH, &path, Some(&user.token), Some(json!({"title": "x", "system_prompt": "y".repeat(8001)})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "system_prompt"]));
}
