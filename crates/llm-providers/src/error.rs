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

/// What kind of failure a [`ProviderError`] is, without its details: what a stored reply keeps to
/// explain how it ended, and what the HTTP edge maps to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    RateLimited,
    Timeout,
    Upstream,
    UnusableAnswer,
    Unreachable,
    ConnectionLost,
    NotConfigured,
}

impl FailureKind {
    const ALL: [FailureKind; 7] = [
        FailureKind::RateLimited,
        FailureKind::Timeout,
        FailureKind::Upstream,
        FailureKind::UnusableAnswer,
        FailureKind::Unreachable,
        FailureKind::ConnectionLost,
        FailureKind::NotConfigured,
    ];

    /// The stable name stored with a failed reply.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Timeout => "timeout",
            FailureKind::Upstream => "upstream_error",
            FailureKind::UnusableAnswer => "unusable_answer",
            FailureKind::Unreachable => "unreachable",
            FailureKind::ConnectionLost => "connection_lost",
            FailureKind::NotConfigured => "not_configured",
        }
    }

    /// The kind named by [`FailureKind::as_str`], if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl ProviderError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ProviderError::RateLimited { .. } => FailureKind::RateLimited,
            ProviderError::Timeout { .. } => FailureKind::Timeout,
            ProviderError::Upstream { .. } => FailureKind::Upstream,
            ProviderError::UnusableAnswer(_) => FailureKind::UnusableAnswer,
            ProviderError::Unreachable(_) => FailureKind::Unreachable,
            ProviderError::ConnectionLost(_) => FailureKind::ConnectionLost,
            ProviderError::NotConfigured => FailureKind::NotConfigured,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_round_trip_through_their_names() {
        for kind in FailureKind::ALL {
            assert_eq!(FailureKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(FailureKind::parse("exploded"), None);
    }
}
