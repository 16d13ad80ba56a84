//! Resolving each setting from the environment, the file and its default, collecting every problem at once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chat_auth::JwtAlgorithm;
use chat_storage::{DatabaseLocation, SqliteSynchronous};
use secrecy::{ExposeSecret, SecretString};

use super::file::{self, FileSettings};
use super::llm;
use super::{AppEnv, AuthSettings, ChatConfig, DatabaseSettings, LogFormat, LogSettings, ServerSettings, Settings};
use llm_providers::http::Timeouts;

use crate::browser::CorsPolicy;

/// The original service's system prompt, kept as the default.
const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful, friendly AI assistant. Answer clearly and concisely.";
/// The shortest JWT secret accepted in production: 256 bits, as HS256 needs.
const MIN_SECRET_BYTES: usize = 32;
/// bcrypt costs below this are for tests: refused in production.
const MIN_PRODUCTION_BCRYPT_COST: u32 = 10;

/// Settings together with the warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Every problem found in the configuration, each naming the variable or key and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Builds the settings from `env` (a variable lookup; the process environment in production).
pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut r = Resolver { env, problems: Vec::new(), warnings: Vec::new() };
    let file = match env("CONFIG_FILE").filter(|p| !p.trim().is_empty()) {
        Some(path) => file::read(&path).unwrap_or_else(|problem| {
            r.problems.push(problem);
            FileSettings::default()
        }),
        None => FileSettings::default(),
    };

    let app_env = r.pick("APP_ENV", "app_env", file.app_env, AppEnv::Development, parse_app_env);
    let production = app_env == AppEnv::Production;

    let server = ServerSettings {
        host: r.pick("HOST", "server.host", file.server.host, "127.0.0.1".to_owned(), non_empty),
        port: r.pick("PORT", "server.port", file.server.port, 8000, |s| parse_num(s, 0, u16::MAX)),
        max_body_bytes: r.pick("MAX_BODY_BYTES", "server.max_body_bytes", file.server.max_body_bytes, 1 << 20, |s| {
            parse_num(s, 1024, 64 << 20)
        }),
        workers: r.pick("WORKERS", "server.workers", file.server.workers, 0, |s| parse_num(s, 0, 1024)),
        shutdown_timeout: r.pick(
            "SHUTDOWN_TIMEOUT_SECONDS",
            "server.shutdown_timeout_seconds",
            file.server.shutdown_timeout_seconds,
            Duration::from_secs(30),
            |s| parse_num(s, 0, 3600).map(Duration::from_secs),
        ),
        cors: r.pick(
            "CORS_ALLOWED_ORIGINS",
            "server.cors_allowed_origins",
            file.server.cors_allowed_origins,
            CorsPolicy::Off,
            CorsPolicy::parse,
        ),
        auth_rate_limit_per_minute: r.pick(
            "AUTH_RATE_LIMIT_PER_MINUTE",
            "server.auth_rate_limit_per_minute",
            file.server.auth_rate_limit_per_minute,
            30,
            |s| parse_num(s, 0, 1_000_000),
        ),
        reply_rate_limit_per_minute: r.pick(
            "REPLY_RATE_LIMIT_PER_MINUTE",
            "server.reply_rate_limit_per_minute",
            file.server.reply_rate_limit_per_minute,
            120,
            |s| parse_num(s, 0, 1_000_000),
        ),
        metrics_address: r.pick_optional(
            "METRICS_ADDRESS",
            "server.metrics_address",
            file.server.metrics_address,
            |s| {
                s.trim()
                    .parse::<std::net::SocketAddr>()
                    .map(|_| s.trim().to_owned())
                    .map_err(|_| format!("{s:?} is not an address: write it as host:port, such as 127.0.0.1:9100"))
            },
        ),
        client_ip_header: r.pick_optional(
            "CLIENT_IP_HEADER",
            "server.client_ip_header",
            file.server.client_ip_header,
            |s| {
                actix_web::http::header::HeaderName::from_bytes(s.trim().as_bytes())
                    .map_err(|_| format!("{s:?} is not a header name"))
            },
        ),
    };

    let database = DatabaseSettings {
        url: r.pick("DATABASE_URL", "database.url", file.database.url, "sqlite://./ai_chat.db".to_owned(), |s| {
            DatabaseLocation::parse(s).map(|_| s.trim().to_owned()).map_err(|err| err.to_string())
        }),
        max_connections: r.pick(
            "DATABASE_MAX_CONNECTIONS",
            "database.max_connections",
            file.database.max_connections,
            8,
            |s| parse_num(s, 1, 512),
        ),
        acquire_timeout: r.pick(
            "DATABASE_ACQUIRE_TIMEOUT_MS",
            "database.acquire_timeout_ms",
            file.database.acquire_timeout_ms,
            Duration::from_secs(5),
            |s| parse_num(s, 1, 600_000).map(Duration::from_millis),
        ),
        busy_timeout: r.pick(
            "SQLITE_BUSY_TIMEOUT_MS",
            "database.busy_timeout_ms",
            file.database.busy_timeout_ms,
            Duration::from_secs(5),
            |s| parse_num(s, 0, 600_000).map(Duration::from_millis),
        ),
        sqlite_synchronous: r.pick(
            "SQLITE_SYNCHRONOUS",
            "database.sqlite_synchronous",
            file.database.sqlite_synchronous,
            SqliteSynchronous::Full,
            parse_synchronous,
        ),
    };

    let auth = AuthSettings {
        // An empty value (`JWT_SECRET_KEY=` in a .env) means unset, never an empty HMAC key.
        jwt_secret_key: r
            .pick_optional("JWT_SECRET_KEY", "auth.jwt_secret_key", file.auth.jwt_secret_key, |s| {
                Ok(SecretString::from(s.to_owned()))
            })
            .filter(|secret| !secret.expose_secret().is_empty()),
        jwt_algorithm: r.pick(
            "JWT_ALGORITHM",
            "auth.jwt_algorithm",
            file.auth.jwt_algorithm,
            JwtAlgorithm::Hs256,
            JwtAlgorithm::from_str,
        ),
        access_token_expire_minutes: r.pick(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            "auth.access_token_expire_minutes",
            file.auth.access_token_expire_minutes,
            60,
            |s| parse_num(s, 1, 525_600),
        ),
        refresh_token_expire_days: r.pick(
            "REFRESH_TOKEN_EXPIRE_DAYS",
            "auth.refresh_token_expire_days",
            file.auth.refresh_token_expire_days,
            30,
            |s| parse_num(s, 1, 3650),
        ),
        jwt_issuer: r.pick(
            "JWT_ISSUER",
            "auth.jwt_issuer",
            file.auth.jwt_issuer,
            "ai-chat-backend".to_owned(),
            non_empty,
        ),
        jwt_audience: r.pick(
            "JWT_AUDIENCE",
            "auth.jwt_audience",
            file.auth.jwt_audience,
            "ai-chat-backend".to_owned(),
            non_empty,
        ),
        bcrypt_cost: r.pick("BCRYPT_COST", "auth.bcrypt_cost", file.auth.bcrypt_cost, 12, |s| parse_num(s, 4, 31)),
        max_concurrent_hashes: r.pick(
            "MAX_CONCURRENT_HASHES",
            "auth.max_concurrent_hashes",
            file.auth.max_concurrent_hashes,
            0,
            |s| parse_num(s, 0, 1024),
        ),
    };

    let log = LogSettings {
        filter: r.pick("RUST_LOG", "log.filter", file.log.filter, "info".to_owned(), |s| {
            let filter = non_empty(s)?;
            tracing_subscriber::EnvFilter::try_new(&filter)
                .map_err(|err| format!("{s:?} is not a valid filter: {err}"))?;
            Ok(filter)
        }),
        format: r.pick("LOG_FORMAT", "log.format", file.log.format, LogFormat::Text, parse_log_format),
    };

    let chat = ChatConfig {
        system_prompt: r
            .pick_optional("SYSTEM_PROMPT", "chat.system_prompt", file.chat.system_prompt, |s| Ok(s.to_owned()))
            .or_else(|| Some(DEFAULT_SYSTEM_PROMPT.to_owned()))
            .filter(|p| !p.trim().is_empty()),
        max_message_chars: r.pick(
            "MAX_MESSAGE_CHARS",
            "chat.max_message_chars",
            file.chat.max_message_chars,
            32_000,
            |s| parse_num(s, 1, 1_000_000),
        ),
        default_model: r.pick(
            "DEFAULT_MODEL",
            "chat.default_model",
            file.chat.default_model,
            "fast".to_owned(),
            non_empty,
        ),
        flush_interval: r.pick(
            "STREAM_FLUSH_MS",
            "chat.stream_flush_ms",
            file.chat.stream_flush_ms,
            Duration::from_millis(500),
            |s| parse_num(s, 10, 60_000).map(Duration::from_millis),
        ),
        resume_window: r.pick(
            "STREAM_RESUME_SECONDS",
            "chat.stream_resume_seconds",
            file.chat.stream_resume_seconds,
            Duration::from_secs(300),
            |s| parse_num(s, 0, 86_400).map(Duration::from_secs),
        ),
        keep_alive: r.pick(
            "SSE_KEEP_ALIVE_SECONDS",
            "chat.keep_alive_seconds",
            file.chat.keep_alive_seconds,
            Duration::from_secs(15),
            |s| parse_num(s, 1, 3600).map(Duration::from_secs),
        ),
        generation_lease: r.pick(
            "GENERATION_LEASE_SECONDS",
            "chat.generation_lease_seconds",
            file.chat.generation_lease_seconds,
            Duration::from_secs(30),
            |s| parse_num(s, 1, 3600).map(Duration::from_secs),
        ),
        max_replies_per_user: r.pick(
            "MAX_REPLIES_PER_USER",
            "chat.max_replies_per_user",
            file.chat.max_replies_per_user,
            4,
            |s| parse_num(s, 0, 1_000_000),
        ),
        daily_token_budget: r.pick(
            "DAILY_TOKEN_BUDGET",
            "chat.daily_token_budget",
            file.chat.daily_token_budget,
            0,
            |s| parse_num(s, 0, 1_000_000_000_000),
        ),
    };
    let timeouts = Timeouts {
        connect: r.pick(
            "LLM_CONNECT_TIMEOUT_MS",
            "llm.connect_timeout_ms",
            file.llm.connect_timeout_ms,
            Duration::from_secs(5),
            |s| parse_num(s, 1, 600_000).map(Duration::from_millis),
        ),
        first_token: r.pick(
            "LLM_FIRST_TOKEN_TIMEOUT_MS",
            "llm.first_token_timeout_ms",
            file.llm.first_token_timeout_ms,
            Duration::from_secs(60),
            |s| parse_num(s, 1, 3_600_000).map(Duration::from_millis),
        ),
        total: r.pick(
            "LLM_TOTAL_TIMEOUT_MS",
            "llm.total_timeout_ms",
            file.llm.total_timeout_ms,
            Duration::from_secs(300),
            |s| parse_num(s, 1, 3_600_000).map(Duration::from_millis),
        ),
    };
    let offline_word_delay = r.pick(
        "OFFLINE_WORD_DELAY_MS",
        "llm.offline_word_delay_ms",
        file.llm.offline_word_delay_ms,
        Duration::from_millis(15),
        |s| parse_num(s, 0, 10_000).map(Duration::from_millis),
    );
    let providers = llm::providers(env, &file.providers, &mut r.problems);
    let aliases = llm::aliases(&file.aliases, &providers, &mut r.problems);
    if !aliases.iter().any(|a| a.name == chat.default_model) {
        r.problems.push(format!("DEFAULT_MODEL: {:?} is not a configured model alias", chat.default_model));
    }
    for provider in providers.iter().filter(|p| p.is_usable()) {
        if let Err(problem) = llm_providers::http::check_base_url(&provider.base_url) {
            r.problems.push(format!("base URL of provider {}: {problem}", provider.name));
        }
    }
    if chat.generation_lease < chat.flush_interval * 3 {
        r.problems.push(format!(
            "GENERATION_LEASE_SECONDS: {} s is shorter than three flushes (STREAM_FLUSH_MS is {} ms): running \
             replies would be taken for abandoned",
            chat.generation_lease.as_secs(),
            chat.flush_interval.as_millis()
        ));
    }
    if timeouts.first_token > timeouts.total {
        r.problems.push(format!(
            "LLM_FIRST_TOKEN_TIMEOUT_MS: {} ms is longer than LLM_TOTAL_TIMEOUT_MS ({} ms)",
            timeouts.first_token.as_millis(),
            timeouts.total.as_millis()
        ));
    }
    let usable = providers.iter().any(|p| p.is_usable());
    let default_servable = aliases
        .iter()
        .filter(|a| a.name == chat.default_model)
        .any(|alias| alias.targets.iter().any(|t| providers.iter().any(|p| p.name == t.provider && p.is_usable())));
    if production && usable && !default_servable {
        r.problems.push(format!(
            "DEFAULT_MODEL: no configured provider can serve the default model alias {:?}; give its provider a key \
             or point the alias at a provider that has one",
            chat.default_model
        ));
    }
    if production && !usable {
        r.problems.push(
            "GROQ_API_KEY: no LLM provider is configured; production needs a key (GROQ_API_KEY, OPENAI_API_KEY, \
             ANTHROPIC_API_KEY) or a provider in CONFIG_FILE"
                .to_owned(),
        );
    } else if !usable {
        r.warnings.push(
            "no LLM provider key is set: model aliases are served by the built-in offline model, whose replies are \
             not from an LLM (set GROQ_API_KEY for real answers)"
                .to_owned(),
        );
    }
    let llm = llm::registry(providers, aliases, timeouts, (!production).then_some(offline_word_delay));

    match &auth.jwt_secret_key {
        None if production => r.problems.push(
            "JWT_SECRET_KEY: required when APP_ENV=production (at least 32 bytes, e.g. `openssl rand -hex 32`)"
                .to_owned(),
        ),
        None => r.warnings.push(
            "JWT_SECRET_KEY is not set: using a generated development secret kept beside the database".to_owned(),
        ),
        Some(secret) if secret.expose_secret().len() < MIN_SECRET_BYTES => {
            let message = format!(
                "JWT_SECRET_KEY: {} bytes is too short; use at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)",
                secret.expose_secret().len()
            );
            if production { r.problems.push(message) } else { r.warnings.push(message) }
        }
        Some(_) => {}
    }
    if production && auth.bcrypt_cost < MIN_PRODUCTION_BCRYPT_COST {
        r.problems.push(format!(
            "BCRYPT_COST: {} is for tests only; production needs at least {MIN_PRODUCTION_BCRYPT_COST}",
            auth.bcrypt_cost
        ));
    }

    if !r.problems.is_empty() {
        return Err(ConfigError { problems: r.problems });
    }
    Ok(Loaded { settings: Settings { app_env, server, database, auth, log, chat, llm }, warnings: r.warnings })
}

struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    /// The environment's value if set, else the file's, else `default`; a bad value is recorded and
    /// replaced by the default so that later settings are still checked.
    fn pick<T>(
        &mut self,
        var: &str,
        key: &str,
        from_file: Option<String>,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        self.pick_optional(var, key, from_file, parse).unwrap_or(default)
    }

    fn pick_optional<T>(
        &mut self,
        var: &str,
        key: &str,
        from_file: Option<String>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (raw, source) = match (self.env)(var) {
            Some(value) => (value, var.to_owned()),
            None => (from_file?, format!("{key} (in CONFIG_FILE)")),
        };
        match parse(&raw) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.problems.push(format!("{source}: {problem}"));
                None
            }
        }
    }
}

fn parse_num<T>(raw: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let value: T = raw.trim().parse().map_err(|_| format!("{raw:?} is not a whole number between {min} and {max}"))?;
    if value < min || value > max {
        return Err(format!("{value} is out of range; use a value between {min} and {max}"));
    }
    Ok(value)
}

fn non_empty(raw: &str) -> Result<String, String> {
    let value = raw.trim();
    if value.is_empty() { Err("must not be empty".to_owned()) } else { Ok(value.to_owned()) }
}

fn parse_app_env(raw: &str) -> Result<AppEnv, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "development" | "dev" => Ok(AppEnv::Development),
        "production" | "prod" => Ok(AppEnv::Production),
        _ => Err(format!("{raw:?} is not known; use development or production")),
    }
}

fn parse_synchronous(raw: &str) -> Result<SqliteSynchronous, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "full" => Ok(SqliteSynchronous::Full),
        "normal" => Ok(SqliteSynchronous::Normal),
        _ => Err(format!("{raw:?} is not known; use full or normal")),
    }
}

fn parse_log_format(raw: &str) -> Result<LogFormat, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{raw:?} is not known; use text or json")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    fn load_with(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        load(&move |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let loaded = load_with(&[]).unwrap();
        let s = loaded.settings;
        assert_eq!(s.app_env, AppEnv::Development);
        assert_eq!((s.server.host.as_str(), s.server.port), ("127.0.0.1", 8000));
        assert_eq!(s.database.url, "sqlite://./ai_chat.db");
        assert_eq!(s.auth.jwt_algorithm, JwtAlgorithm::Hs256);
        assert_eq!(s.auth.access_token_expire_minutes, 60);
        assert_eq!(s.auth.bcrypt_cost, 12);
        assert_eq!(s.log.filter, "info");
        assert!(loaded.warnings.iter().any(|w| w.contains("JWT_SECRET_KEY")));
    }

    #[test]
    fn every_bad_value_is_named_at_once() {
        let err = load_with(&[
            ("PORT", "eighty"),
            ("JWT_ALGORITHM", "RS256"),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
            ("DATABASE_URL", "mysql://x"),
            ("APP_ENV", "staging"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for name in ["PORT", "JWT_ALGORITHM", "ACCESS_TOKEN_EXPIRE_MINUTES", "DATABASE_URL", "APP_ENV"] {
            assert!(text.contains(&format!("{name}:")), "{name} not named in:\n{text}");
        }
        assert_eq!(err.problems.len(), 5, "{text}");
    }

    #[test]
    fn production_refuses_missing_or_short_secrets_and_test_costs() {
        let missing = load_with(&[("APP_ENV", "production")]).unwrap_err();
        assert!(missing.to_string().contains("JWT_SECRET_KEY: required"));
        let short = load_with(&[("APP_ENV", "production"), ("JWT_SECRET_KEY", "short")]).unwrap_err();
        assert!(short.to_string().contains("too short"));
        let cheap = load_with(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET_KEY", &"k".repeat(32)),
            ("BCRYPT_COST", "4"),
            ("GROQ_API_KEY", "gsk_x"),
        ])
        .unwrap_err();
        assert!(cheap.to_string().contains("BCRYPT_COST"));
        let no_provider = load_with(&[("APP_ENV", "production"), ("JWT_SECRET_KEY", &"k".repeat(32))]).unwrap_err();
        assert!(no_provider.to_string().contains("no LLM provider is configured"), "{no_provider}");
        assert!(
            load_with(&[("APP_ENV", "production"), ("JWT_SECRET_KEY", &"k".repeat(32)), ("GROQ_API_KEY", "gsk_x")])
                .is_ok()
        );
    }

    #[test]
    fn bad_urls_filters_and_timeouts_are_named() {
        let err = load_with(&[
            ("GROQ_API_KEY", "k"),
            ("GROQ_BASE_URL", "notaurl"),
            ("RUST_LOG", "[["),
            ("LLM_FIRST_TOKEN_TIMEOUT_MS", "10000"),
            ("LLM_TOTAL_TIMEOUT_MS", "10"),
        ])
        .unwrap_err()
        .to_string();
        for name in ["provider groq", "RUST_LOG", "LLM_FIRST_TOKEN_TIMEOUT_MS"] {
            assert!(err.contains(name), "{name} not named in:\n{err}");
        }
    }

    #[test]
    fn production_needs_a_provider_for_the_default_alias() {
        let err = load_with(&[("APP_ENV", "production"), ("JWT_SECRET_KEY", &"k".repeat(32)), ("OPENAI_API_KEY", "k")])
            .unwrap_err();
        assert!(err.to_string().contains("DEFAULT_MODEL"), "{err}");
    }

    #[test]
    fn an_empty_secret_is_no_secret() {
        let loaded = load_with(&[("JWT_SECRET_KEY", "")]).unwrap();
        assert!(loaded.settings.auth.jwt_secret_key.is_none(), "an empty HMAC key must never be used");
        assert!(load_with(&[("APP_ENV", "production"), ("JWT_SECRET_KEY", ""), ("GROQ_API_KEY", "k")]).is_err());
    }

    #[test]
    fn development_only_warns_about_a_short_secret() {
        let loaded = load_with(&[("JWT_SECRET_KEY", "short")]).unwrap();
        assert!(loaded.warnings.iter().any(|w| w.contains("too short")));
    }

    #[test]
    fn file_values_apply_and_the_environment_wins() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        writeln!(file, "[server]\nport = 9001\nhost = \"0.0.0.0\"\n[auth]\naccess_token_expire_minutes = 15").unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let loaded = load_with(&[("CONFIG_FILE", &path), ("PORT", "9002")]).unwrap();
        assert_eq!(loaded.settings.server.port, 9002);
        assert_eq!(loaded.settings.server.host, "0.0.0.0");
        assert_eq!(loaded.settings.auth.access_token_expire_minutes, 15);
    }

    #[test]
    fn unknown_file_keys_and_missing_files_are_refused() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        writeln!(file, "[server]\nprot = 9001").unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let err = load_with(&[("CONFIG_FILE", &path)]).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err = load_with(&[("CONFIG_FILE", "/nonexistent/chat.toml")]).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }
}
