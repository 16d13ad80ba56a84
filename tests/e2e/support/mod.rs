//! The harness: the real `chat-server` binary on a random port with a fresh database in its own directory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};

pub mod conversation;
pub mod llm;
pub mod sse;
use serde_json::{Value, json};

/// The secret the test servers sign with, so tests can forge tokens to attack them.
pub const TEST_SECRET: &str = "e2e-test-secret-0123456789abcdef0123456789";
pub const TEST_ISSUER: &str = "ai-chat-backend";
pub const TEST_AUDIENCE: &str = "ai-chat-backend";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a test's servers keep their state: a temporary directory (their working directory, and the
/// SQLite file), and with `E2E_DATABASE=postgres` a fresh PostgreSQL schema instead of the file. A
/// restart on the same `TestDir` finds the same database.
pub struct TestDir {
    dir: tempfile::TempDir,
    postgres: Option<chat_storage::scratch::ScratchSchema>,
}

impl TestDir {
    pub fn new() -> Arc<Self> {
        let postgres = on_postgres().then(|| {
            let url = chat_storage::scratch::ScratchSchema::reachable_url("TEST_POSTGRES_URL")
                .expect("E2E_DATABASE=postgres, but no PostgreSQL answers at TEST_POSTGRES_URL");
            chat_storage::scratch::ScratchSchema::create(&url).expect("create a scratch schema")
        });
        Arc::new(Self { dir: tempfile::tempdir().expect("temp dir"), postgres })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The `DATABASE_URL` of servers started here.
    pub fn database_url(&self) -> String {
        match &self.postgres {
            Some(schema) => schema.url().to_owned(),
            None => format!("sqlite://{}", self.dir.path().join("test.db").display()),
        }
    }
}

/// Whether this run of the suite is against PostgreSQL (`E2E_DATABASE=postgres`) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("E2E_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A running server; killed when dropped.
pub struct TestServer {
    pub base: String,
    pub dir: Arc<TestDir>,
    child: Child,
    logs: Arc<Mutex<String>>,
    client: reqwest::Client,
}

/// A registered user and a token for them.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

/// The environment every test server gets, before a test's own variables.
fn base_env(dir: &TestDir) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", dir.database_url()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("BCRYPT_COST", "4".to_owned()),
        ("JWT_SECRET_KEY", TEST_SECRET.to_owned()),
        ("RUST_LOG", "info".to_owned()),
        ("WORKERS", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The command for the binary with a clean environment: nothing from the developer's shell (provider
/// keys, a DATABASE_URL) leaks in, and the working directory is the test's own (so no stray `.env`).
fn command(dir: &TestDir, env: &[(&str, &str)], unset: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    cmd.env_clear().current_dir(dir.path());
    for (key, value) in base_env(dir) {
        if !unset.contains(&key.as_str()) {
            cmd.env(key, value);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_in(TestDir::new(), env, &[]).await
    }

    /// Starts a server in `dir` (to restart on the same database), with `env` added and `unset` removed.
    pub async fn start_in(dir: Arc<TestDir>, env: &[(&str, &str)], unset: &[&str]) -> Self {
        let mut child =
            command(&dir, env, unset).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn chat-server");
        let logs = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = Arc::clone(&logs);
            let address_tx = address_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("listening on http://") {
                        let address = line[at + "listening on ".len()..].split_whitespace().next().unwrap_or("");
                        let _ = address_tx.send(address.to_owned());
                    }
                    let mut logs = logs.lock().expect("logs lock");
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let base = match address_rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; its output:\n{}", logs.lock().expect("logs lock"));
            }
        };
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { base, dir, child, logs, client }
    }

    /// Runs the binary to completion (for start-up failures); returns its status and combined output.
    pub fn run_to_exit(env: &[(&str, &str)], unset: &[&str]) -> (ExitStatus, String) {
        Self::run_command_without(&TestDir::new(), &[], env, unset)
    }

    /// Runs the binary with `args` (a subcommand) in `dir` to completion; returns its status and output.
    pub fn run_command(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
        Self::run_command_without(dir, args, env, &[])
    }

    fn run_command_without(dir: &TestDir, args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> (ExitStatus, String) {
        let output = command(dir, env, unset).args(args).output().expect("run chat-server");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status, text)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The SQLite file of a server on SQLite.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("test.db")
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs lock").clone()
    }

    /// Polls the logs until `needle` appears (log lines are written after the response is sent).
    pub async fn wait_for_log(&self, needle: &str) -> String {
        for _ in 0..200 {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{needle:?} never appeared in the logs:\n{}", self.logs());
    }

    /// Kills the process with SIGKILL (a crash: nothing runs on the way out) and waits for it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait for the killed server");
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM failed");
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server did not stop within 10 s of SIGTERM");
    }

    /// Sends a request with an optional bearer token and JSON body; returns status, headers and JSON
    /// body (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (status, _, body) = self.call(Method::GET, path, token, None).await;
        (status, body)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.call(Method::POST, path, token, Some(body)).await;
        (status, body)
    }

    /// Registers `email` with `password` and logs in.
    pub async fn signup_as(&self, email: &str, password: &str) -> TestUser {
        let (status, user) = self.post("/auth/register", None, json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::CREATED, "register: {user}");
        let (status, login) = self.post("/auth/login", None, json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "login: {login}");
        TestUser {
            id: user["id"].as_str().expect("id").to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            token: login["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// A fresh user with a unique email.
    pub async fn signup(&self) -> TestUser {
        let email = format!("user-{}@example.com", uuid_like());
        self.signup_as(&email, "password123").await
    }

    /// Creates a chat for `user`; returns its JSON.
    pub async fn create_chat(&self, user: &TestUser, title: Option<&str>) -> Value {
        let (status, chat) = self.post("/chats", Some(&user.token), json!({ "title": title })).await;
        assert_eq!(status, StatusCode::CREATED, "create chat: {chat}");
        chat
    }

    /// Opens the server's database directly (to seed messages or inspect rows the API does not show).
    pub fn database(&self) -> chat_storage::Database {
        chat_storage::Database::open(&self.dir.database_url(), &chat_storage::PoolOptions::default())
            .expect("open test database")
    }

    /// Runs SQL on the server's database from outside, as an operator, a failing disk or a bad migration would.
    pub fn execute_sql(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        self.database()
            .with_connection(|conn| conn.batch_execute(sql).map_err(chat_storage::StorageError::from))
            .unwrap_or_else(|err| panic!("run {sql:?} on the test database: {err}"));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique-enough suffix for emails within one test run.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Signs `claims` with `secret` and `alg`, to present forged or altered tokens.
pub fn sign(claims: &Value, alg: jsonwebtoken::Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Valid claims for `user_id`, to be altered by a test.
pub fn claims_for(user_id: &str) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    json!({"sub": user_id, "iat": now, "exp": now + 3600, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE})
}

/// Inserts a message straight into the database (until `POST /chat` exists, the only way to have some).
pub fn seed_message(db: &chat_storage::Database, chat_id: &str, role: chat_domain::Role, text: &str) -> i64 {
    let chat_id: chat_domain::ChatId = chat_id.parse().expect("chat id");
    let message = chat_storage::NewMessage::plain(chat_id, role, text.to_owned(), chat_domain::time::now_utc());
    db.with_connection(|conn| chat_storage::messages::insert_message(conn, message)).expect("seed message").id
}
