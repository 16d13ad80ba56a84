//! When to try a provider again: exponential backoff with jitter, honouring `Retry-After` up to a cap.

use std::time::Duration;

use crate::ProviderError;

/// Retry settings of one alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts on the same target after the first one fails.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the next target is tried, or the rate limit
    /// is reported to the client with its `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (0-based) after `error`, or `None` to stop
    /// retrying this target.
    pub fn delay(&self, retry: u32, error: &ProviderError) -> Option<Duration> {
        if retry >= self.max_retries || !error.is_retryable() {
            return None;
        }
        if let ProviderError::RateLimited { retry_after: Some(wait) } = error {
            return (*wait <= self.max_retry_after).then_some(*wait);
        }
        let exponential = self.initial_backoff.saturating_mul(2u32.saturating_pow(retry)).min(self.max_backoff);
        // "Equal jitter": half fixed, half random, so retries from many requests spread out.
        let half = exponential / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        Some(half + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimeoutPhase;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let err = ProviderError::Upstream { status: 503, message: String::new() };
        for (retry, max) in [(0, 100), (1, 200), (2, 300)] {
            let delay = policy().delay(retry, &err).unwrap();
            assert!(
                delay >= Duration::from_millis(max / 2) && delay <= Duration::from_millis(max),
                "{retry}: {delay:?}"
            );
        }
        assert_eq!(policy().delay(3, &err), None, "retries are bounded");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let soon = ProviderError::RateLimited { retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(policy().delay(0, &soon), Some(Duration::from_secs(2)));
        let late = ProviderError::RateLimited { retry_after: Some(Duration::from_secs(60)) };
        assert_eq!(policy().delay(0, &late), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let never = [
            ProviderError::Upstream { status: 400, message: String::new() },
            ProviderError::Upstream { status: 401, message: String::new() },
            ProviderError::UnusableAnswer(String::new()),
            ProviderError::NotConfigured,
            ProviderError::Timeout { phase: TimeoutPhase::Total },
        ];
        for err in never {
            assert_eq!(policy().delay(0, &err), None, "{err:?}");
        }
        assert!(policy().delay(0, &ProviderError::Unreachable(String::new())).is_some());
        assert!(policy().delay(0, &ProviderError::Timeout { phase: TimeoutPhase::FirstToken }).is_some());
    }
}
