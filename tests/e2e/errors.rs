//! The Errors table of API.md and the cross-cutting rules: error shapes, 401 headers, body limits, opaque 5xx, health.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, TRANSFER_ENCODING, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::support::{TEST_SECRET, TestServer, claims_for, on_postgres, sign};

pub(crate) const REQUEST_ID: &str = "x-request-id";

/// What came back: status, headers, the raw body and the body as JSON (`Null` when it is not JSON).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
    pub(crate) json: Value,
}

impl Answer {
    pub(crate) fn request_id(&self) -> String {
        self.headers
            .get(REQUEST_ID)
            .unwrap_or_else(|| panic!("no X-Request-Id on a {} response", self.status))
            .to_str()
            .expect("X-Request-Id is text")
            .to_owned()
    }
}

pub(crate) async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

pub(crate) fn request(server: &TestServer, method: Method, path: &str) -> RequestBuilder {
    server.client().request(method, server.url(path))
}

/// A JSON body sent as raw text with `Content-Type: application/json`.
pub(crate) fn json_text(server: &TestServer, method: Method, path: &str, body: &str) -> RequestBuilder {
    request(server, method, path).header(CONTENT_TYPE, "application/json").body(body.to_owned())
}

/// The `(type, loc)` pairs of a 422 body, `loc` as compact JSON.
fn validation_errors(answer: &Answer) -> Vec<(String, String)> {
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.text);
    answer.json["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is not a list: {}", answer.text))
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string(), "every entry has a msg: {e}");
            (e["type"].as_str().unwrap_or_else(|| panic!("type: {e}")).to_owned(), e["loc"].to_string())
        })
        .collect()
}

fn assert_bearer_challenge(answer: &Answer, case: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{case}: {}", answer.text);
    assert_eq!(
        answer.headers.get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap_or_default()),
        Some("Bearer"),
        "{case}: a 401 carries WWW-Authenticate: Bearer"
    );
    assert!(answer.json["detail"].is_string(), "{case}: {}", answer.text);
}

/// The log line that closes the request with id `id`, once it has been written.
pub(crate) async fn completion_line(server: &TestServer, id: &str) -> String {
    server.wait_for_log(id).await;
    for _ in 0..200 {
        if let Some(line) = server.logs().lines().find(|l| l.contains(id) && l.contains("request completed")) {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no \"request completed\" line for {id}:\n{}", server.logs());
}

/// A request id the server may keep: what its middleware accepts (and a generated UUID satisfies).
pub(crate) fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A registration body of about `size` bytes that is valid JSON (the padding is an ignored extra field).
pub(crate) fn register_body_of(size: usize) -> String {
    let head = format!(r#"{{"email": "big-{}@example.com", "password": "password123", "pad": ""#, size);
    let pad = "x".repeat(size.saturating_sub(head.len() + 2));
    format!("{head}{pad}\"}}")
}

// ----- 404 and 405 -----

#[tokio::test]
async fn an_unknown_path_is_404_not_found() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    for (method, path) in
        [(Method::GET, "/nope"), (Method::POST, "/auth/nothing"), (Method::GET, "/chats/a/b/c"), (Method::DELETE, "/x")]
    {
        let answer = send(request(&server, method.clone(), path)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer.json, json!({"detail": "Not Found"}), "{method} {path}: {}", answer.text);
        let answer = send(request(&server, method.clone(), path).bearer_auth(&user.token)).await;
        assert_eq!((answer.status, answer.json), (StatusCode::NOT_FOUND, json!({"detail": "Not Found"})));
    }
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_405_method_not_allowed() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, Some("x")).await;
    let chat_path = format!("/chats/{}", chat["id"].as_str().expect("id"));
    let cases = [
        (Method::PUT, "/chats".to_owned()),
        (Method::DELETE, "/chats".to_owned()),
        (Method::DELETE, "/auth/login".to_owned()),
        (Method::GET, "/auth/register".to_owned()),
        (Method::POST, "/health".to_owned()),
        (Method::POST, "/auth/me".to_owned()),
        (Method::PUT, chat_path.clone()),
        (Method::POST, format!("{chat_path}/messages")),
    ];
    for (method, path) in cases {
        for token in [None, Some(user.token.as_str())] {
            let mut builder = request(&server, method.clone(), &path);
            if let Some(token) = token {
                builder = builder.bearer_auth(token);
            }
            let answer = send(builder).await;
            assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {}", answer.text);
            assert_eq!(answer.json, json!({"detail": "Method Not Allowed"}), "{method} {path}");
        }
    }
    let (status, _) = server.get(&chat_path, Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "PUT did nothing to the chat");
}

// ----- 422 -----

#[tokio::test]
async fn malformed_json_is_422_json_invalid_located_in_the_body() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    for body in [r#"{"email": "a@example.com","#, "{not json}", r#"{"email": "a@example.com" "password": "x"}"#] {
        let answer = send(json_text(&server, Method::POST, "/auth/register", body)).await;
        let errors = validation_errors(&answer);
        assert_eq!(errors.len(), 1, "{body}: {}", answer.text);
        assert_eq!(errors[0].0, "json_invalid", "{body}: {}", answer.text);
        let loc = answer.json["detail"][0]["loc"].as_array().expect("loc is a list");
        assert_eq!(loc[0], "body", "{body}: loc starts with body: {}", answer.text);
    }
    let answer = send(json_text(&server, Method::POST, "/chats", "{\"title\": ").bearer_auth(&user.token)).await;
    assert_eq!(validation_errors(&answer)[0].0, "json_invalid", "POST /chats too");
    let (_, list) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(list["total"], 0, "no chat from a malformed body");
}

#[tokio::test]
async fn missing_fields_are_422_missing_each_with_its_location() {
    let server = TestServer::start().await;
    let answer = send(json_text(&server, Method::POST, "/auth/register", "{}")).await;
    assert_eq!(
        validation_errors(&answer),
        [
            ("missing".to_owned(), r#"["body","email"]"#.to_owned()),
            ("missing".to_owned(), r#"["body","password"]"#.to_owned())
        ],
        "every missing field is reported"
    );
    let answer = send(json_text(&server, Method::POST, "/auth/login", r#"{"email": "a@example.com"}"#)).await;
    assert_eq!(validation_errors(&answer), [("missing".to_owned(), r#"["body","password"]"#.to_owned())]);
    let answer = send(json_text(&server, Method::POST, "/auth/login", r#"{"password": "password123"}"#)).await;
    assert_eq!(validation_errors(&answer), [("missing".to_owned(), r#"["body","email"]"#.to_owned())]);
}

#[tokio::test]
async fn nul_characters_in_any_string_field_are_422_on_either_database() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let bodies = [
        ("/chat", format!(r#"{{"chat_id": "{chat}", "message": "a\u0000b"}}"#), "message"),
        ("/chats", r#"{"title": "nul\u0000title"}"#.to_owned(), "title"),
        ("/auth/login", r#"{"email": "a\u0000@example.com", "password": "password123"}"#.to_owned(), "email"),
    ];
    for (path, body, field) in bodies {
        let answer = send(json_text(&server, Method::POST, path, &body).bearer_auth(&user.token)).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {}", answer.text);
        let errors = validation_errors(&answer);
        assert!(
            errors.contains(&("string_pattern_mismatch".to_owned(), format!(r#"["body","{field}"]"#))),
            "{errors:?}"
        );
    }
    let (_, messages) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(messages, json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_422() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    for body in ["[]", r#"[{"email": "a@example.com", "password": "password123"}]"#, r#""text""#, "42"] {
        let answer = send(json_text(&server, Method::POST, "/auth/register", body)).await;
        let errors = validation_errors(&answer);
        assert_eq!(errors.len(), 1, "{body}: {}", answer.text);
        assert_eq!(errors[0].1, r#"["body"]"#, "{body}: {}", answer.text);
        let answer = send(json_text(&server, Method::POST, "/chats", body).bearer_auth(&user.token)).await;
        assert_eq!(validation_errors(&answer).len(), 1, "POST /chats {body}");
    }
    let (_, list) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(list["total"], 0, "no chat from a non-object body");
}

#[tokio::test]
async fn a_json_body_sent_as_text_plain_is_422_and_does_nothing() {
    let server = TestServer::start().await;
    let body = r#"{"email": "plain@example.com", "password": "password123"}"#;
    let answer =
        send(request(&server, Method::POST, "/auth/register").header(CONTENT_TYPE, "text/plain").body(body)).await;
    let errors = validation_errors(&answer);
    assert_eq!(errors.len(), 1, "{}", answer.text);
    assert_eq!(errors[0].1, r#"["body"]"#, "{}", answer.text);
    let answer = send(json_text(&server, Method::POST, "/auth/register", body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "the text/plain request registered nobody: {}", answer.text);
}

// ----- 413 -----

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_content_length_or_chunked() {
    let server = TestServer::start_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let small = register_body_of(1500);
    assert!(small.len() < 2048);
    let answer = send(json_text(&server, Method::POST, "/auth/register", &small)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "a body under the limit is served: {}", answer.text);

    let big = register_body_of(4096);
    assert!(big.len() > 2048 && serde_json::from_str::<Value>(&big).is_ok());
    let answer = send(json_text(&server, Method::POST, "/auth/register", &big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "with Content-Length: {}", answer.text);
    assert!(answer.json["detail"].is_string(), "413 has a detail sentence: {}", answer.text);
    assert!(is_sane_request_id(&answer.request_id()));

    let chunked = |body: &str| {
        let chunks: Vec<Vec<u8>> = body.as_bytes().chunks(1024).map(<[u8]>::to_vec).collect();
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        request(&server, Method::POST, "/auth/register")
            .header(CONTENT_TYPE, "application/json")
            .body(reqwest::Body::wrap_stream(stream))
    };
    let probe = chunked(&big).build().expect("request");
    assert!(probe.headers().get(CONTENT_LENGTH).is_none(), "the streamed request declares no length");
    assert!(probe.headers().get(TRANSFER_ENCODING).is_none_or(|v| v == "chunked"));

    let answer = send(chunked(&big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "chunked: {}", answer.text);
    assert!(answer.json["detail"].is_string(), "413 has a detail sentence: {}", answer.text);

    let small_chunked = register_body_of(1800);
    let answer = send(chunked(&small_chunked)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "a chunked body under the limit is served: {}", answer.text);

    let (status, _) =
        server.post("/auth/login", None, json!({"email": "big-4096@example.com", "password": "password123"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the refused bodies registered nobody");
}

// ----- 401 -----

#[tokio::test]
async fn every_kind_of_401_carries_www_authenticate_bearer() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let mut expired = claims_for(&user.id);
    expired["exp"] = json!(1_000_000_000);
    expired["iat"] = json!(999_000_000);
    let ghost = sign(&claims_for("6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"), Algorithm::HS256, TEST_SECRET);
    let cases = [
        ("no header", request(&server, Method::GET, "/auth/me")),
        ("another scheme", request(&server, Method::GET, "/auth/me").header("Authorization", "Basic dXNlcjpwYXNz")),
        ("garbage token", request(&server, Method::GET, "/chats").bearer_auth("not.a.token")),
        ("empty token", request(&server, Method::GET, "/chats").header("Authorization", "Bearer ")),
        (
            "expired token",
            request(&server, Method::GET, "/chats").bearer_auth(sign(&expired, Algorithm::HS256, TEST_SECRET)),
        ),
        (
            "wrong secret",
            request(&server, Method::GET, "/chats").bearer_auth(sign(
                &claims_for(&user.id),
                Algorithm::HS256,
                "another-secret-another-secret-another",
            )),
        ),
        ("user not found", request(&server, Method::GET, "/auth/me").bearer_auth(ghost)),
        (
            "wrong password",
            request(&server, Method::POST, "/auth/login")
                .json(&json!({"email": user.email, "password": "wrong-password"})),
        ),
        (
            "unknown email",
            request(&server, Method::POST, "/auth/login")
                .json(&json!({"email": "nobody@example.com", "password": "password123"})),
        ),
        (
            "token form, wrong password",
            request(&server, Method::POST, "/auth/token")
                .form(&[("username", user.email.as_str()), ("password", "wrong-password")]),
        ),
    ];
    for (case, builder) in cases {
        let answer = send(builder).await;
        assert_bearer_challenge(&answer, case);
    }
}

// ----- 5xx -----

#[tokio::test]
async fn a_500_never_leaks_internals_but_the_log_has_the_cause() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    server.create_chat(&user, Some("before the crash")).await;
    server.execute_sql("DROP TABLE messages; DROP TABLE chats;");

    for (method, path, id) in [(Method::GET, "/chats", "broken-list-1"), (Method::POST, "/chats", "broken-create-2")] {
        let answer = send(request(&server, method.clone(), path).bearer_auth(&user.token).header(REQUEST_ID, id)).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}: {}", answer.text);
        assert_eq!(answer.json, json!({"detail": "Internal server error"}), "{method} {path}: {}", answer.text);
        let lower = answer.text.to_lowercase();
        for secret in ["sqlite", "no such table", "relation", "select", "insert", "diesel", "test.db", "/tmp"] {
            assert!(!lower.contains(secret), "{method} {path}: the body leaks {secret:?}: {}", answer.text);
        }
        assert_eq!(answer.request_id(), id);
        let line = completion_line(&server, id).await;
        assert!(line.contains("status=500"), "{line}");
        let logs = server.logs();
        let missing = if on_postgres() { "does not exist" } else { "no such table" };
        let cause = logs.lines().find(|l| l.contains(id) && l.contains(missing));
        assert!(cause.is_some(), "the log names the cause under the request's id:\n{logs}");
    }
}

// ----- the service's own endpoints -----

#[tokio::test]
async fn health_is_200_healthy_and_root_describes_the_api() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "healthy");

    let (status, body) = server.get("/", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "AI Chat Backend API");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "version is the crate's, as a string: {body}");
    assert_eq!(body["docs"], "/docs");
}

#[tokio::test]
async fn health_is_503_unhealthy_when_the_database_cannot_answer() {
    let server = TestServer::start().await;
    let (status, _) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    server.execute_sql(
        "DROP TABLE messages; DROP TABLE chats; DROP TABLE refresh_tokens; DROP TABLE token_usage; DROP TABLE users;",
    );
    let answer = send(request(&server, Method::GET, "/health")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.text);
    assert_eq!(answer.json["status"], "unhealthy", "{}", answer.text);
    assert!(!answer.text.to_lowercase().contains("no such table"), "{}", answer.text);
}

#[tokio::test]
async fn a_request_that_finds_every_database_thread_busy_is_503_and_the_busy_one_still_completes() {
    // A lock that a query waits on, held from outside: on PostgreSQL. SQLite's readers never wait in WAL mode.
    if !on_postgres() {
        return;
    }
    let server =
        TestServer::start_with(&[("DATABASE_MAX_CONNECTIONS", "1"), ("DATABASE_ACQUIRE_TIMEOUT_MS", "300")]).await;
    let user = server.signup().await;
    let (outside, watcher) = (server.database(), server.database());
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    // An operator's transaction holds the users table, which every authenticated request reads.
    let holder = std::thread::spawn(move || {
        outside.with_connection(|conn| {
            use diesel::Connection;
            use diesel::connection::SimpleConnection;
            conn.transaction(|conn| {
                conn.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")?;
                locked.send(()).unwrap();
                released.recv().unwrap();
                Ok(())
            })
        })
    });
    is_locked.await.unwrap();

    // The first request's query waits on the lock on the server's one database thread; the second waits for that
    // thread, and gives up after DATABASE_ACQUIRE_TIMEOUT_MS.
    let first = send(request(&server, Method::GET, "/chats").bearer_auth(&user.token));
    let second = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queries_waiting_on_users(&watcher) == 0 {
            assert!(std::time::Instant::now() < deadline, "the first request never reached the lock");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answer = send(request(&server, Method::GET, "/chats").bearer_auth(&user.token)).await;
        release.send(()).unwrap();
        answer
    };
    let (first, second) = tokio::join!(first, second);
    holder.join().unwrap().unwrap();
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{}", second.text);
    assert_eq!(second.json, json!({"detail": "The service is temporarily unavailable; please retry shortly"}));
    let logs = server.wait_for_log("no database thread was free within 300ms").await;
    assert!(logs.contains(&second.request_id()), "the 503's log line names its request");
    assert_eq!(first.status, StatusCode::OK, "the request that held the thread: {}", first.text);
    assert_eq!(first.json["total"], 0, "{}", first.text);
    let (status, _) = server.get("/chats", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "once the lock is gone");
}

/// How many queries wait for a lock on this test's `users` table (PostgreSQL).
fn queries_waiting_on_users(db: &chat_storage::Database) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        waiting: i64,
    }
    let sql = "SELECT count(*) AS waiting FROM pg_locks WHERE relation = 'users'::regclass AND NOT granted";
    db.with_connection(|c| Ok(diesel::sql_query(sql).get_result::<Row>(c)?)).unwrap().waiting
}

#[tokio::test]
async fn other_methods_on_the_documentation_paths_are_405() {
    let server = TestServer::start().await;
    for path in ["/openapi.json", "/redoc", "/docs/", "/docs/swagger-ui.css"] {
        let (status, _, body) = server.call(Method::POST, path, None, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(body, json!({"detail": "Method Not Allowed"}), "{path}");
        assert_eq!(server.get(path, None).await.0, StatusCode::OK, "GET {path} still works");
    }
}
