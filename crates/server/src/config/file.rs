//! The shape of the optional TOML configuration file; unknown keys are refused so typos cannot pass silently.

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub host: Option<String>,
    pub port: Option<String>,
    pub max_body_bytes: Option<String>,
    pub workers: Option<String>,
    pub shutdown_timeout_seconds: Option<String>,
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
