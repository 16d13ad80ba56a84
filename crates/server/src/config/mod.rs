//! Typed settings, layered as defaults, then the optional TOML file (`CONFIG_FILE`), then the environment.

mod file;
mod llm;
mod load;

use std::time::Duration;

use chat_auth::JwtAlgorithm;
use chat_storage::SqliteSynchronous;
use secrecy::SecretString;

use crate::browser::CorsPolicy;

pub use load::{ConfigError, Loaded, load};

/// Whether development conveniences are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server is configured with, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub chat: ChatConfig,
    /// Providers, aliases and timeouts of the model layer.
    pub llm: llm_providers::registry::RegistrySettings,
}

#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Sent first in every context (a chat's own prompt replaces it); `None` sends none.
    pub system_prompt: Option<String>,
    /// The longest message `POST /chat` accepts, in characters.
    pub max_message_chars: usize,
    /// The alias used when a request names none.
    pub default_model: String,
    /// How often streamed text is written to the database while a reply is generated.
    pub flush_interval: Duration,
    /// How long a finished reply's events stay in memory for listeners resuming by event id.
    pub resume_window: Duration,
    /// The longest silence on an event stream before a `: keep-alive` comment.
    pub keep_alive: Duration,
    /// On a shared database, how long a reply may go unheard of before another server stores it as
    /// `interrupted` (its server died).
    pub generation_lease: Duration,
    /// The most replies one user may have running at once (per server process); 0 for no limit.
    pub max_replies_per_user: usize,
    /// The tokens each user may spend per UTC day, across every server on the database; 0 for no budget.
    pub daily_token_budget: u64,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    /// 0 asks the OS for a free port (the one chosen is logged).
    pub port: u16,
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// After SIGTERM or Ctrl-C, how long running replies may take to finish before they are stored as
    /// `interrupted` (in-flight requests get as long).
    pub shutdown_timeout: Duration,
    /// Which browser origins may read the API's answers; none by default.
    pub cors: CorsPolicy,
    /// Sign-up and login attempts a minute per client address; 0 for no limit.
    pub auth_rate_limit_per_minute: u32,
    /// New replies (messages and regenerations) a minute per user; 0 for no limit.
    pub reply_rate_limit_per_minute: u32,
    /// Where `GET /metrics` is served instead of the API's address (`host:port`), if anywhere.
    pub metrics_address: Option<String>,
    /// Behind a proxy, the header it puts the client's address in (the last address in it counts).
    pub client_ip_header: Option<actix_web::http::header::HeaderName>,
}

/// `Debug` shows the URL's location without its password.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub busy_timeout: Duration,
    pub sqlite_synchronous: SqliteSynchronous,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let location = chat_storage::DatabaseLocation::parse(&self.url)
            .map_or_else(|_| "<invalid>".to_owned(), |location| location.to_string());
        f.debug_struct("DatabaseSettings")
            .field("url", &location)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `None` in development means: use (or create) the secret kept beside the database.
    pub jwt_secret_key: Option<SecretString>,
    pub jwt_algorithm: JwtAlgorithm,
    pub access_token_expire_minutes: i64,
    /// How long a refresh token may be used (once), in days.
    pub refresh_token_expire_days: i64,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub bcrypt_cost: u32,
    /// How many bcrypt computations may run at once; 0 means one per CPU core.
    pub max_concurrent_hashes: usize,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive, as `RUST_LOG` takes.
    pub filter: String,
    pub format: LogFormat,
}
