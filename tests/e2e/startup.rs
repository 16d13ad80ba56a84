//! Start-up and configuration: refused settings, the config file, `.env`, token settings, the development secret, shutdown.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitStatus;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::support::{
    TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET, TestDir, TestServer, claims_for, on_postgres, sign, uuid_like,
};

fn new_dir() -> Arc<TestDir> {
    TestDir::new()
}

/// Writes `contents` to `name` in `dir`; returns its absolute path as a string.
fn write_file(dir: &TestDir, name: &str, contents: &str) -> String {
    let path = dir.path().join(name);
    let mut file = std::fs::File::create(&path).expect("create file");
    file.write_all(contents.as_bytes()).expect("write file");
    path.to_string_lossy().into_owned()
}

/// The process ended on its own with a failure code (not a crash by signal, not success).
fn assert_refused(status: ExitStatus, output: &str) {
    assert!(!status.success(), "the server started although it should have refused; output:\n{output}");
    assert!(status.code().is_some(), "the server died by a signal ({status}) instead of exiting; output:\n{output}");
}

/// Registers a fresh user and logs in; returns the login response.
async fn login_response(server: &TestServer) -> Value {
    let user = server.signup().await;
    let (status, login) =
        server.post("/auth/login", None, json!({"email": user.email, "password": user.password})).await;
    assert_eq!(status, StatusCode::OK, "login: {login}");
    login
}

/// The claims of `token`, verified with `secret` and `alg` and the test issuer and audience.
fn verified_claims(token: &str, secret: &str, alg: Algorithm) -> jsonwebtoken::errors::Result<Value> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[TEST_ISSUER]);
    validation.set_audience(&[TEST_AUDIENCE]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .map(|data| data.claims)
}

#[test]
fn production_without_jwt_secret_refuses_to_start_and_names_it() {
    let (status, output) =
        TestServer::run_to_exit(&[("APP_ENV", "production"), ("BCRYPT_COST", "10")], &["JWT_SECRET_KEY"]);
    assert_refused(status, &output);
    assert!(output.contains("JWT_SECRET_KEY"), "the refusal does not name JWT_SECRET_KEY:\n{output}");
    assert!(!output.contains("listening on"), "the server listened before refusing:\n{output}");
}

#[test]
fn production_with_a_short_jwt_secret_refuses_to_start() {
    let (status, output) = TestServer::run_to_exit(
        &[("APP_ENV", "production"), ("BCRYPT_COST", "10"), ("JWT_SECRET_KEY", "0123456789")],
        &[],
    );
    assert_refused(status, &output);
    assert!(output.contains("JWT_SECRET_KEY"), "the refusal does not name JWT_SECRET_KEY:\n{output}");
    assert!(output.contains("too short"), "the refusal does not say the secret is too short:\n{output}");
    assert!(!output.contains("0123456789"), "the refusal echoes the secret:\n{output}");
}

#[test]
fn several_bad_values_are_reported_together_in_one_error() {
    let (status, output) = TestServer::run_to_exit(
        &[("PORT", "abc"), ("JWT_ALGORITHM", "RS256"), ("ACCESS_TOKEN_EXPIRE_MINUTES", "0")],
        &[],
    );
    assert_refused(status, &output);
    for name in ["PORT", "JWT_ALGORITHM", "ACCESS_TOKEN_EXPIRE_MINUTES"] {
        assert!(output.contains(&format!("{name}:")), "{name} is not named in the error:\n{output}");
    }
    assert_eq!(output.matches("invalid configuration").count(), 1, "not one single error:\n{output}");
}

#[test]
fn config_file_with_an_unknown_key_is_refused_naming_the_key() {
    let dir = new_dir();
    let path = write_file(&dir, "chat.toml", "[auth]\naccess_token_expire_minutes = 7\nbogus_setting = 1\n");
    let (status, output) = TestServer::run_to_exit(&[("CONFIG_FILE", &path)], &[]);
    assert_refused(status, &output);
    assert!(output.contains("bogus_setting"), "the error does not name the unknown key:\n{output}");
}

#[test]
fn config_file_that_does_not_exist_is_refused_naming_it() {
    let dir = new_dir();
    let path = dir.path().join("missing.toml").to_string_lossy().into_owned();
    let (status, output) = TestServer::run_to_exit(&[("CONFIG_FILE", &path)], &[]);
    assert_refused(status, &output);
    assert!(output.contains("CONFIG_FILE") && output.contains(&path), "the error does not name the file:\n{output}");
}

#[tokio::test]
async fn config_file_sets_the_token_lifetime() {
    let dir = new_dir();
    let path = write_file(&dir, "chat.toml", "[auth]\naccess_token_expire_minutes = 7\n");
    let server = TestServer::start_with(&[("CONFIG_FILE", &path)]).await;
    let login = login_response(&server).await;
    assert_eq!(login["expires_in"], 420, "expires_in with access_token_expire_minutes = 7 in the file: {login}");
}

#[tokio::test]
async fn environment_wins_over_the_config_file() {
    // The file names a port that is taken: the server only starts if PORT from the environment wins.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let taken_port = taken.local_addr().expect("local addr").port();
    let dir = new_dir();
    let path = write_file(
        &dir,
        "chat.toml",
        &format!("[server]\nport = {taken_port}\n[auth]\naccess_token_expire_minutes = 7\n"),
    );
    let server =
        TestServer::start_with(&[("CONFIG_FILE", &path), ("PORT", "0"), ("ACCESS_TOKEN_EXPIRE_MINUTES", "8")]).await;
    assert!(!server.base.ends_with(&format!(":{taken_port}")), "listening on the file's port: {}", server.base);
    let login = login_response(&server).await;
    assert_eq!(login["expires_in"], 480, "expires_in with 7 in the file and 8 in the environment: {login}");
    drop(taken);
}

#[tokio::test]
async fn dotenv_in_the_working_directory_is_read() {
    let dir = new_dir();
    write_file(&dir, ".env", "ACCESS_TOKEN_EXPIRE_MINUTES=9\n");
    let server = TestServer::start_in(Arc::clone(&dir), &[], &[]).await;
    let login = login_response(&server).await;
    assert_eq!(login["expires_in"], 540, "expires_in with ACCESS_TOKEN_EXPIRE_MINUTES=9 in .env: {login}");
}

#[tokio::test]
async fn real_environment_variables_win_over_dotenv() {
    let dir = new_dir();
    write_file(&dir, ".env", "ACCESS_TOKEN_EXPIRE_MINUTES=9\nJWT_ALGORITHM=HS384\n");
    let server = TestServer::start_in(Arc::clone(&dir), &[("ACCESS_TOKEN_EXPIRE_MINUTES", "11")], &[]).await;
    let login = login_response(&server).await;
    assert_eq!(login["expires_in"], 660, "expires_in with 9 in .env and 11 in the environment: {login}");
    // What only .env sets still applies.
    let token = login["access_token"].as_str().expect("access_token");
    let header = jsonwebtoken::decode_header(token).expect("token header");
    assert_eq!(header.alg, Algorithm::HS384, "JWT_ALGORITHM=HS384 from .env");
}

#[tokio::test]
async fn hs512_signs_tokens_and_refuses_hs256_ones() {
    let server = TestServer::start_with(&[("JWT_ALGORITHM", "HS512")]).await;
    let user = server.signup().await;
    let header = jsonwebtoken::decode_header(&user.token).expect("token header");
    assert_eq!(header.alg, Algorithm::HS512, "alg of an issued token with JWT_ALGORITHM=HS512");
    let (status, me) = server.get("/auth/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "GET /auth/me with the issued HS512 token: {me}");

    // The same claims and secret: accepted as HS512, refused as HS256.
    let hs512 = sign(&claims_for(&user.id), Algorithm::HS512, TEST_SECRET);
    let (status, me) = server.get("/auth/me", Some(&hs512)).await;
    assert_eq!(status, StatusCode::OK, "GET /auth/me with a forged HS512 token: {me}");
    let hs256 = sign(&claims_for(&user.id), Algorithm::HS256, TEST_SECRET);
    let (status, headers, body) = server.call(reqwest::Method::GET, "/auth/me", Some(&hs256), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "GET /auth/me with an HS256 token on an HS512 server: {body}");
    assert_eq!(body["detail"], "Invalid authentication credentials", "401 body");
    let challenge = headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
    assert_eq!(challenge, Some("Bearer"), "401 WWW-Authenticate header");
}

#[tokio::test]
async fn access_token_expire_minutes_sets_the_token_lifetime() {
    let server = TestServer::start_with(&[("ACCESS_TOKEN_EXPIRE_MINUTES", "5")]).await;
    let login = login_response(&server).await;
    assert_eq!(login["expires_in"], 300, "expires_in with ACCESS_TOKEN_EXPIRE_MINUTES=5: {login}");
    let token = login["access_token"].as_str().expect("access_token");
    let claims = verified_claims(token, TEST_SECRET, Algorithm::HS256).expect("the token verifies");
    let (exp, iat) = (claims["exp"].as_i64().expect("exp"), claims["iat"].as_i64().expect("iat"));
    assert_eq!(exp - iat, 300, "exp - iat in {claims}");
}

#[tokio::test]
async fn development_secret_is_kept_beside_the_database_and_survives_a_restart() {
    let dir = new_dir();
    let mut first = TestServer::start_in(Arc::clone(&dir), &[], &["JWT_SECRET_KEY"]).await;
    // Beside the SQLite file (`test.db.jwt-secret`); for PostgreSQL, in the working directory under the
    // database's name.
    let location = chat_storage::DatabaseLocation::parse(&dir.database_url()).expect("the test's database URL");
    let secret_path = dir.path().join(format!("{}.jwt-secret", location.file_name()));
    assert!(secret_path.is_file(), "no secret file at {}", secret_path.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path).expect("secret file metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "secret file mode {:o}", mode & 0o777);
    }
    let secret = std::fs::read_to_string(&secret_path).expect("read secret file").trim().to_owned();
    assert!(secret.len() >= 32, "the generated secret is only {} bytes", secret.len());
    let logs = first.logs();
    assert!(
        logs.lines().any(|line| line.contains("WARN") && line.contains("JWT_SECRET_KEY")),
        "no warning about the development secret:\n{logs}"
    );

    let user = first.signup().await;
    verified_claims(&user.token, &secret, Algorithm::HS256).expect("the token is signed with the secret in the file");
    assert!(first.terminate().success(), "the first server did not stop cleanly:\n{}", first.logs());

    let second = TestServer::start_in(Arc::clone(&dir), &[], &["JWT_SECRET_KEY"]).await;
    let (status, me) = second.get("/auth/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "GET /auth/me after a restart with the first server's token: {me}");
    assert_eq!(me["id"].as_str(), Some(user.id.as_str()), "GET /auth/me: {me}");
    let again = std::fs::read_to_string(&secret_path).expect("read secret file");
    assert_eq!(again.trim(), secret, "the restart replaced the secret file");
}

#[tokio::test]
async fn original_sqlite_url_form_creates_the_database_in_the_working_directory() {
    // The test sets its own SQLite URL: the same on either run of the suite.
    let dir = new_dir();
    let server = TestServer::start_in(Arc::clone(&dir), &[("DATABASE_URL", "sqlite:///./ai_chat.db")], &[]).await;
    let (status, body) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "GET /health: {body}");
    let user = server.signup_as(&format!("url-{}@example.com", uuid_like()), "password123").await;
    let (status, me) = server.get("/auth/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "GET /auth/me: {me}");
    let database = dir.path().join("ai_chat.db");
    let size = std::fs::metadata(&database).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no database at {} (working directory listing: {:?})", database.display(), {
        std::fs::read_dir(dir.path()).map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect::<Vec<_>>())
    });
    assert!(!server.db_path().exists(), "the default test database was used instead");
}

#[tokio::test]
async fn sigterm_stops_the_server_successfully() {
    let mut server = TestServer::start().await;
    let (status, body) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "GET /health: {body}");
    let exit = server.terminate();
    assert!(exit.success(), "exit status after SIGTERM: {exit}\n{}", server.logs());
    server.wait_for_log("server stopped").await;
    let after = server.client().get(server.url("/health")).send().await;
    assert!(after.is_err(), "the server still answers after SIGTERM");
}

#[tokio::test]
async fn health_reports_healthy() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "GET /health: {body}");
    assert_eq!(body["status"], "healthy", "GET /health: {body}");
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_is_refused_and_the_first_keeps_serving() {
    if on_postgres() {
        // Several servers on one PostgreSQL database are the point of PostgreSQL: nothing to refuse.
        return;
    }
    let first = TestServer::start().await;
    let url = format!("sqlite://{}", first.db_path().display());
    let (status, output) = TestServer::run_to_exit(&[("DATABASE_URL", &url)], &[]);
    assert_refused(status, &output);
    assert!(output.contains("another chat-server is using this database"), "{output}");
    let (status, body) = first.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn an_unreachable_postgres_is_named_with_its_real_cause_and_without_its_password() {
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
    let url = format!("postgres://chat:hunter2-secret@127.0.0.1:{port}/ai_chat");
    let (status, output) = TestServer::run_to_exit(&[("DATABASE_URL", &url)], &[]);
    assert_refused(status, &output);
    assert!(output.contains("Connection refused"), "the cause is not named:\n{output}");
    assert!(output.contains(&format!("127.0.0.1:{port}/ai_chat")), "the database is not named:\n{output}");
    assert!(!output.contains("hunter2"), "the password was printed:\n{output}");
}

/// What `migrate` logs when it applied every migration of the tree.
fn all_applied() -> String {
    let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    format!("applied={}", std::fs::read_dir(tree).expect("the migrations tree").count())
}

/// `migrate` once opened a pool, whose threads open its idle connections; exiting while one was still connecting
/// to PostgreSQL crashed the process in OpenSSL's exit handler, about one run in ten (exit status 139). Twenty runs
/// on PostgreSQL found it in each of three tries before the fix.
#[test]
fn migrate_exits_cleanly_run_after_run() {
    let dir = new_dir();
    for run in 1..=20 {
        let (status, output) = TestServer::run_command(&dir, &["migrate"], &[]);
        assert!(status.success(), "`migrate` run {run} ended with {status}:\n{output}");
    }
}

#[tokio::test]
async fn migrate_applies_pending_migrations_and_exits_and_serve_then_starts_on_them() {
    let dir = new_dir();
    let (status, output) = TestServer::run_command(&dir, &["migrate"], &[]);
    assert!(status.success(), "{output}");
    assert!(output.contains("the database is up to date") && output.contains(&all_applied()), "{output}");
    let (status, output) = TestServer::run_command(&dir, &["migrate"], &[]);
    assert!(status.success() && output.contains("applied=0"), "a second run has nothing to do:\n{output}");
    let server = TestServer::start_in(Arc::clone(&dir), &[], &[]).await;
    server.signup().await;
    assert!(!server.logs().contains("database migrations applied"), "serve found them applied already");
}

#[tokio::test]
async fn health_command_says_whether_the_server_on_host_and_port_is_healthy() {
    let server = TestServer::start().await;
    let port = server.base.rsplit(':').next().expect("port").to_owned();
    let (status, output) = TestServer::run_command(&server.dir, &["health"], &[("PORT", &port)]);
    assert!(status.success(), "{output}");
    let (status, body) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    let backend = if on_postgres() { "postgres" } else { "sqlite" };
    assert_eq!((body["database"].as_str(), body["backend"].as_str()), (Some("ok"), Some(backend)), "{body}");
    assert!(body["pool"]["connections"].as_u64().is_some_and(|n| n >= 1), "{body}");

    let closed = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
    let (status, output) = TestServer::run_command(&server.dir, &["health"], &[("PORT", &closed.to_string())]);
    assert!(!status.success(), "a closed port is not healthy: {output}");
}

#[test]
fn servers_migrating_one_postgres_database_together_take_turns() {
    if !on_postgres() {
        // An SQLite file is migrated by its one server (it holds the file's lock).
        return;
    }
    let dir = new_dir();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let dir = Arc::clone(&dir);
            std::thread::spawn(move || TestServer::run_command(&dir, &["migrate"], &[]))
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        let (status, output) = run.join().expect("migrate thread");
        assert!(status.success(), "a concurrent migrate failed:\n{output}");
        applied.push(output.contains(&all_applied()));
    }
    assert_eq!(applied.iter().filter(|&&a| a).count(), 1, "exactly one run applied the migrations");
}
