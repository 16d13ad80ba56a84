//! The shape of the optional TOML configuration file; unknown keys are refused so typos cannot pass silently.

use std::collections::BTreeMap;

use llm_providers::openai::MaxTokensField;
use llm_providers::registry::ProviderKind;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSettings {
    pub app_env: Option<String>,
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub database: FileDatabase,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub chat: FileChat,
    #[serde(default)]
    pub llm: FileLlm,
    /// Providers by name; `groq`, `openai` and `anthropic` exist already and may be adjusted here.
    #[serde(default)]
    pub providers: BTreeMap<String, FileProvider>,
    /// Aliases by name; one named like a built-in alias replaces it.
    #[serde(default)]
    pub aliases: BTreeMap<String, FileAlias>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileChat {
    pub system_prompt: Option<String>,
    pub max_message_chars: Option<String>,
    pub default_model: Option<String>,
    pub stream_flush_ms: Option<String>,
    pub stream_resume_seconds: Option<String>,
    pub keep_alive_seconds: Option<String>,
    pub generation_lease_seconds: Option<String>,
    pub max_replies_per_user: Option<String>,
    pub daily_token_budget: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLlm {
    pub connect_timeout_ms: Option<String>,
    pub first_token_timeout_ms: Option<String>,
    pub total_timeout_ms: Option<String>,
    pub offline_word_delay_ms: Option<String>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileProvider {
    pub kind: Option<ProviderKind>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    /// The name of an environment variable holding the key.
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub max_tokens_field: Option<MaxTokensField>,
    pub anthropic_version: Option<String>,
    pub requires_key: Option<bool>,
    /// Speak HTTP/2 without TLS from the first byte (h2c), for plain-`http` servers that accept it.
    pub http2_prior_knowledge: Option<bool>,
}

/// Keys and header values (which often carry keys) never appear in `Debug`.
impl std::fmt::Debug for FileProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileProvider")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("api_key_env", &self.api_key_env)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAlias {
    pub targets: Vec<FileTarget>,
    pub max_retries: Option<u32>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub max_retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTarget {
    pub provider: String,
    pub model: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub temperature: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub host: Option<String>,
    pub port: Option<String>,
    pub max_body_bytes: Option<String>,
    pub workers: Option<String>,
    pub shutdown_timeout_seconds: Option<String>,
    pub cors_allowed_origins: Option<String>,
    pub auth_rate_limit_per_minute: Option<String>,
    pub reply_rate_limit_per_minute: Option<String>,
    pub client_ip_header: Option<String>,
    pub metrics_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDatabase {
    pub url: Option<String>,
    pub max_connections: Option<String>,
    pub acquire_timeout_ms: Option<String>,
    pub busy_timeout_ms: Option<String>,
    pub sqlite_synchronous: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    pub jwt_secret_key: Option<String>,
    pub jwt_algorithm: Option<String>,
    pub access_token_expire_minutes: Option<String>,
    pub refresh_token_expire_days: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub bcrypt_cost: Option<String>,
    pub max_concurrent_hashes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    pub filter: Option<String>,
    pub format: Option<String>,
}

/// Reads and parses the file with the `config` crate (which turns TOML numbers into the strings asked for).
pub(super) fn read(path: &str) -> Result<FileSettings, String> {
    if !std::path::Path::new(path).is_file() {
        return Err(format!("CONFIG_FILE: no such file: {path}"));
    }
    config::Config::builder()
        .add_source(config::File::new(path, config::FileFormat::Toml))
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|err| format!("CONFIG_FILE {path}: {err}"))
}
