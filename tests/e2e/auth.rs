//! The Authentication table of API.md over real HTTP: register, login, token form, me, and every bad token.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TEST_SECRET, TestServer, claims_for, sign};

fn assert_rfc3339_utc(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "{text} should end in Z");
    assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{text} is not RFC 3339");
}

fn detail_types(body: &Value) -> Vec<(String, String)> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is not a list: {body}"))
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["loc"].to_string()))
        .collect()
}

#[tokio::test]
async fn register_answers_201_with_the_normalised_account() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post("/auth/register", None, json!({"email": "  New.User@Example.COM ", "password": "password123"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "new.user@example.com");
    assert!(body["id"].as_str().unwrap().parse::<chat_domain::UserId>().is_ok(), "{body}");
    assert_rfc3339_utc(&body["created_at"]);
    assert!(body.get("password").is_none() && body.get("password_hash").is_none(), "{body}");
}

#[tokio::test]
async fn an_email_in_another_case_is_the_same_account() {
    let server = TestServer::start().await;
    server.signup_as("same@example.com", "password123").await;
    let (status, body) =
        server.post("/auth/register", None, json!({"email": "SAME@example.com", "password": "password456"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"detail": "Email already registered"}));
    let (status, _) =
        server.post("/auth/login", None, json!({"email": "Same@Example.Com", "password": "password123"})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn register_validates_email_and_password_length() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"email": "not-an-email", "password": "password123"}), "value_error", r#"["body","email"]"#),
        (json!({"email": "a@example.com", "password": "short"}), "string_too_short", r#"["body","password"]"#),
        (json!({"email": "a@example.com", "password": "x".repeat(73)}), "string_too_long", r#"["body","password"]"#),
        (json!({"email": "a@example.com"}), "missing", r#"["body","password"]"#),
        (json!({"password": "password123"}), "missing", r#"["body","email"]"#),
        (json!({"email": 42, "password": "password123"}), "string_type", r#"["body","email"]"#),
    ];
    for (body, kind, loc) in cases {
        let (status, answer) = server.post("/auth/register", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {answer}");
        assert!(detail_types(&answer).contains(&(kind.to_owned(), loc.to_owned())), "{body} -> {answer}");
    }
    // Both problems are reported at once.
    let (_, answer) = server.post("/auth/register", None, json!({})).await;
    assert_eq!(detail_types(&answer).len(), 2, "{answer}");
}

#[tokio::test]
async fn a_password_over_72_bytes_is_refused_not_truncated() {
    let server = TestServer::start().await;
    // 30 characters (within the character bound) but 90 bytes.
    let (status, body) =
        server.post("/auth/register", None, json!({"email": "euro@example.com", "password": "€".repeat(30)})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let msg = body["detail"][0]["msg"].as_str().unwrap();
    assert!(msg.contains("72 bytes"), "the message should say why: {msg}");
    // Exactly 72 bytes is accepted, and every byte of it counts.
    let exact = "€".repeat(24);
    server.signup_as("euro@example.com", &exact).await;
    let almost = format!("{}ab", "€".repeat(23));
    let (status, _) = server.post("/auth/login", None, json!({"email": "euro@example.com", "password": almost})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_stored_password_is_a_bcrypt_hash() {
    let server = TestServer::start().await;
    server.signup_as("hash@example.com", "password123").await;
    let user = server
        .database()
        .with_connection(|c| chat_storage::users::find_user_by_email(c, "hash@example.com"))
        .unwrap()
        .unwrap();
    assert!(user.password_hash.starts_with("$2b$04$"), "{}", user.password_hash);
    assert_eq!(user.password_hash.len(), 60);
    assert!(!user.password_hash.contains("password123"));
    assert!(bcrypt::verify("password123", &user.password_hash).unwrap());
}

#[tokio::test]
async fn login_answers_a_bearer_token_with_its_lifetime() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (status, body) =
        server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let claims: Value =
        jsonwebtoken::dangerous::insecure_decode(body["access_token"].as_str().unwrap()).unwrap().claims;
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["iss"], "ai-chat-backend");
    assert_eq!(claims["aud"], "ai-chat-backend");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let wrong = server
        .call(Method::POST, "/auth/login", None, Some(json!({"email": user.email, "password": "nope-nope"})))
        .await;
    let unknown = server
        .call(Method::POST, "/auth/login", None, Some(json!({"email": "ghost@example.com", "password": "password123"})))
        .await;
    for (status, headers, body) in [&wrong, &unknown] {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(*body, json!({"detail": "Invalid email or password"}));
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
}

/// Median wall time of `n` logins.
async fn median_login(server: &TestServer, email: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let (status, _) = server.post("/auth/login", None, json!({"email": email, "password": "wrong-password"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn an_unknown_email_costs_a_bcrypt_check_too() {
    // At cost 10 one check takes tens of milliseconds; without the dummy check an unknown email would
    // answer in about one. The bound is loose so a busy machine cannot make it flaky.
    let server = TestServer::start_with(&[("BCRYPT_COST", "10")]).await;
    let user = server.signup().await;
    let known = median_login(&server, &user.email, 5).await;
    let unknown = median_login(&server, "ghost@example.com", 5).await;
    assert!(unknown * 2 >= known, "unknown email {unknown:?} vs wrong password {known:?}");
}

#[tokio::test]
async fn login_validates_like_the_original() {
    let server = TestServer::start().await;
    for body in [
        json!({"email": "x@example.com", "password": ""}),
        json!({"email": "bad", "password": "password123"}),
        json!({"email": "x@example.com"}),
    ] {
        let (status, answer) = server.post("/auth/login", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {answer}");
    }
}

#[tokio::test]
async fn token_form_logs_in_with_the_email_as_username() {
    let server = TestServer::start().await;
    let user = server.signup_as("form@example.com", "password123").await;
    let response = server
        .client()
        .post(server.url("/auth/token"))
        .form(&[
            ("username", "FORM@example.com"),
            ("password", "password123"),
            ("grant_type", "password"),
            ("scope", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    let (status, me) = server.get("/auth/me", body["access_token"].as_str()).await;
    assert_eq!((status, me["id"].as_str()), (StatusCode::OK, Some(user.id.as_str())));

    let wrong = server
        .client()
        .post(server.url("/auth/token"))
        .form(&[("username", "form@example.com"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    assert_eq!(wrong.json::<Value>().await.unwrap(), json!({"detail": "Invalid email or password"}));

    let missing =
        server.client().post(server.url("/auth/token")).form(&[("username", "form@example.com")]).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(detail_types(&body), [("missing".to_owned(), r#"["body","password"]"#.to_owned())]);
}

#[tokio::test]
async fn me_returns_the_tokens_user() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (status, body) = server.get("/auth/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], user.id.as_str());
    assert_eq!(body["email"], user.email.as_str());
    assert_rfc3339_utc(&body["created_at"]);
}

async fn me_with_header(server: &TestServer, header: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = server.client().get(server.url("/auth/me"));
    if let Some(header) = header {
        request = request.header("Authorization", header);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_authenticated() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, _, _) = me_with_header(&server, Some(&format!("{scheme} {}", user.token))).await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
    }
    for header in [None, Some("Basic dXNlcjpwYXNzd29yZA=="), Some(user.token.as_str())] {
        let (status, headers, body) = me_with_header(&server, header).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(body, json!({"detail": "Not authenticated"}), "{header:?}");
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
}

#[tokio::test]
async fn bad_tokens_are_invalid_credentials() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let now = chrono::Utc::now().timestamp();
    let mut tampered = user.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let mut forged_payload = user.token.split('.').map(str::to_owned).collect::<Vec<_>>();
    forged_payload[1] = base64_url(
        &json!({"sub": uuid_v4(), "iat": now, "exp": now + 3600, "iss": "ai-chat-backend", "aud": "ai-chat-backend"})
            .to_string(),
    );
    let alg_none =
        format!("{}.{}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#), base64_url(&claims_for(&user.id).to_string()));
    let mut expired = claims_for(&user.id);
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    let mut wrong_audience = claims_for(&user.id);
    wrong_audience["aud"] = json!("another-service");
    let mut wrong_issuer = claims_for(&user.id);
    wrong_issuer["iss"] = json!("someone-else");
    let mut no_expiry = claims_for(&user.id);
    no_expiry.as_object_mut().unwrap().remove("exp");
    let cases = [
        ("empty", String::new()),
        ("garbage", "not-a-jwt".to_owned()),
        ("tampered signature", tampered),
        ("payload swapped", forged_payload.join(".")),
        ("alg none", alg_none),
        ("expired", sign(&expired, Algorithm::HS256, TEST_SECRET)),
        ("wrong audience", sign(&wrong_audience, Algorithm::HS256, TEST_SECRET)),
        ("wrong issuer", sign(&wrong_issuer, Algorithm::HS256, TEST_SECRET)),
        ("no expiry", sign(&no_expiry, Algorithm::HS256, TEST_SECRET)),
        ("wrong algorithm", sign(&claims_for(&user.id), Algorithm::HS512, TEST_SECRET)),
        ("wrong secret", sign(&claims_for(&user.id), Algorithm::HS256, "another-secret-another-secret-0000")),
    ];
    // The harness's own signing is right: the same claims, correctly signed, pass.
    let (status, _, _) = me_with_header(
        &server,
        Some(&format!("Bearer {}", sign(&claims_for(&user.id), Algorithm::HS256, TEST_SECRET))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (name, token) in cases {
        let (status, headers, body) = me_with_header(&server, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body, json!({"detail": "Invalid authentication credentials"}), "{name}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{name}");
    }
}

#[tokio::test]
async fn a_valid_token_of_a_deleted_user_is_user_not_found() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await;
    let chat_id = chat["id"].as_str().unwrap().to_owned();
    let id = user.id.clone();
    server
        .database()
        .with_connection(move |c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(format!("DELETE FROM users WHERE id = '{id}'")).execute(c)?;
            Ok(())
        })
        .unwrap();
    let (status, headers, body) = me_with_header(&server, Some(&format!("Bearer {}", user.token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"detail": "User not found"}));
    assert_eq!(headers["www-authenticate"], "Bearer");
    // The busiest routes check the user in their own first read: the same answer.
    let message = json!({"chat_id": chat_id, "message": "Hello", "model": "fast"});
    let requests = [
        (Method::GET, "/chats".to_owned(), None),
        (Method::GET, format!("/chats/{chat_id}/messages"), None),
        (Method::POST, "/chat".to_owned(), Some(message)),
    ];
    for (method, path, body) in requests {
        let (status, headers, answer) = server.call(method.clone(), &path, Some(&user.token), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
        assert_eq!(answer, json!({"detail": "User not found"}), "{method} {path}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{method} {path}");
    }
}

#[tokio::test]
async fn logs_carry_the_user_and_never_passwords_or_tokens() {
    let server = TestServer::start().await;
    let user = server.signup_as("logged@example.com", "Sup3r-Secret-Pa55").await;
    let (status, _) = server.get("/auth/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    let logs = server.wait_for_log(&format!("user_id={}", user.id)).await;
    let line = logs.lines().find(|l| l.contains("route=\"/auth/me\"")).expect("a line for /auth/me");
    for field in ["method=GET", "status=200", "latency_ms=", "request_id="] {
        assert!(line.contains(field), "{field} missing from: {line}");
    }
    assert!(!logs.contains("Sup3r-Secret-Pa55"), "a password reached the logs");
    assert!(!logs.contains(&user.token), "a token reached the logs");
    let signature = user.token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a token signature reached the logs");
}

fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn uuid_v4() -> String {
    chat_domain::UserId::new_random().to_string()
}

#[tokio::test]
async fn logout_revokes_every_token_of_the_account_on_every_route_and_a_new_login_works() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (status, second) =
        server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    assert_eq!(status, StatusCode::OK);
    let second = second["access_token"].as_str().unwrap().to_owned();
    let chat = server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned();
    let (status, _) = server.get("/chats", Some(&second)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, headers, body) = server.call(Method::POST, "/auth/logout", Some(&user.token), None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert!(headers.get("content-length").is_none_or(|length| length == "0"));

    for token in [&user.token, &second] {
        let requests = [
            (Method::GET, "/auth/me".to_owned(), None),
            (Method::GET, "/chats".to_owned(), None),
            (Method::GET, format!("/chats/{chat}"), None),
            (Method::GET, format!("/chats/{chat}/messages"), None),
            (Method::POST, "/chat".to_owned(), Some(json!({"chat_id": chat, "message": "still me?"}))),
            (Method::POST, "/auth/logout".to_owned(), None),
        ];
        for (method, path, body) in requests {
            let (status, headers, answer) = server.call(method.clone(), &path, Some(token), body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
            assert_eq!(answer, json!({"detail": "Invalid authentication credentials"}), "{method} {path}");
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    // Nothing was stored by the refused message; a new login sees everything.
    let (status, again) =
        server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    assert_eq!(status, StatusCode::OK);
    let again = again["access_token"].as_str().unwrap();
    let (status, messages) = server.get(&format!("/chats/{chat}/messages"), Some(again)).await;
    assert_eq!((status, messages), (StatusCode::OK, json!([])));
    let (status, _, _) = server.call(Method::POST, "/auth/logout", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn refresh(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server.post("/auth/refresh", None, json!({"refresh_token": token})).await
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_whole_login() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (status, login) =
        server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(login["refresh_expires_in"], 30 * 24 * 3600);
    let first = login["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 64);
    // The database holds only its hash.
    let stored: Vec<String> = {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            token_hash: String,
        }
        server
            .database()
            .with_connection(|c| Ok(diesel::sql_query("SELECT token_hash FROM refresh_tokens").load::<Row>(c)?))
            .unwrap()
            .into_iter()
            .map(|row| row.token_hash)
            .collect()
    };
    assert!(!stored.is_empty() && !stored.contains(&first), "{stored:?}");

    // Each refresh gives a working access token and the next refresh token.
    let (status, second) = refresh(&server, &first).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let access = second["access_token"].as_str().unwrap();
    let (status, me) = server.get("/auth/me", Some(access)).await;
    assert_eq!((status, &me["email"]), (StatusCode::OK, &json!(user.email)));
    let second = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);

    // The first one again: a copy is in someone's hands. Refused, and the whole login is revoked with it.
    let (status, body) = refresh(&server, &first).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"detail": "Invalid or expired refresh token; log in again"}))
    );
    let (status, _) = refresh(&server, &second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the family's newest token outlived the reuse");
    // Another login (its own family) is not touched.
    let (status, other) =
        server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = refresh(&server, other["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    for (bad, expected) in [
        (json!({"refresh_token": "0".repeat(64)}), StatusCode::UNAUTHORIZED),
        (json!({"refresh_token": ""}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, body) = server.post("/auth/refresh", None, bad.clone()).await;
        assert_eq!(status, expected, "{bad}: {body}");
    }
}

#[tokio::test]
async fn logout_revokes_refresh_tokens_too() {
    let server = TestServer::start().await;
    let user = server.signup().await;
    let (_, login) = server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    let (status, _, _) = server.call(Method::POST, "/auth/logout", Some(&user.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = refresh(&server, login["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
