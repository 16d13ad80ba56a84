//! `ProviderError`: every way a provider call fails, told apart so callers can retry, fall back and explain.

use std::time::Duration;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// No TCP/TLS connection in time.
    Connect,
    /// Connected, but no response headers (or, streaming, no first token) in time.
    FirstToken,
    /// The whole answer took too long.
    Total,
}

/// A failed provider call. `Display` never includes a key; upstream messages are kept for logs only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("rate limited by the provider{}", retry_after.map(|d| format!(" (retry after {:.1} s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider timed out ({phase:?})")]
    Timeout { phase: TimeoutPhase },
    /// The provider answered with an error status; `message` is its own text, for logs.
    #[error("the provider answered HTTP {status}: {message}")]
    Upstream { status: u16, message: String },
    /// A 2xx whose body could not be used (malformed JSON, no content, a cut stream).
    #[error("the provider's answer was unusable: {0}")]
    UnusableAnswer(String),
    /// No connection could be made (refused, DNS, TLS).
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    /// The provider was reached but dropped the connection before the answer was complete.
    #[error("the provider dropped the connection: {0}")]
    ConnectionLost(String),
    /// No provider is configured for what was asked.
    #[error("no provider is configured")]
    NotConfigured,
}

impl ProviderError {
    /// Whether trying again (the same target, after a pause) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::RateLimited { .. } | ProviderError::Unreachable(_) | ProviderError::ConnectionLost(_) => {
                true
            }
            ProviderError::Timeout { phase } => *phase != TimeoutPhase::Total,
            ProviderError::Upstream { status, .. } => *status >= 500 || *status == 408,
            ProviderError::UnusableAnswer(_) | ProviderError::NotConfigured => false,
        }
    }
}
