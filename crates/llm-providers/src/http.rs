//! The providers' HTTP client and what every HTTP adapter needs: timeouts, error statuses, `Retry-After`.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::HeaderMap;

use crate::{ChunkStream, ProviderError, TimeoutPhase};

/// The longest upstream error text kept (for logs).
const MAX_UPSTREAM_MESSAGE: usize = 500;

/// How long a provider call may take, by phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the response headers arrive, and for streams until the first chunk.
    pub first_token: Duration,
    /// The whole call, streamed or not.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(5), first_token: Duration::from_secs(60), total: Duration::from_secs(300) }
    }
}

/// Adds a provider's configured extra headers to `headers`. Their values are marked sensitive: they often
/// carry keys (Azure's `api-key`), and must never show in `Debug` output.
pub(crate) fn add_extra_headers(
    provider: &str,
    extra: &[(String, String)],
    headers: &mut reqwest::header::HeaderMap,
) -> Result<(), String> {
    for (name, value) in extra {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("provider {provider}: invalid header name {name:?}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| format!("provider {provider}: invalid value for header {name}"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(())
}

/// Whether `url` can be a provider's base URL: absolute `http` or `https` with a host.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|err| format!("{url:?} is not a URL ({err})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} must be an http:// or https:// URL with a host"));
    }
    Ok(())
}

/// The providers' HTTP client: connection pooling, rustls, `TCP_NODELAY` (a Nagle/delayed-ACK stall adds ~40 ms
/// per request otherwise), and the connect timeout. With `http2_prior_knowledge` it speaks HTTP/2 from the first
/// byte (h2c), for plain-`http` servers that accept it.
///
/// It is one `reqwest::Client` per thread that sends requests. A pooled connection is driven by a task on the
/// runtime that opened it, and the server runs a runtime per worker thread: with one client for all, a reply
/// generated on one worker was often answered over a connection driven by the other, and each piece of the answer
/// woke the other thread (a write to its runtime's eventfd). Under the soak's mixed load that was 9 of the server's
/// 12 `write` calls per request (`perf record -e syscalls:sys_enter_write --call-graph dwarf`).
#[derive(Debug, Clone)]
pub struct HttpClient {
    settings: ClientSettings,
    /// The client built when this was made: used on a thread where another cannot be built.
    fallback: reqwest::Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientSettings {
    connect_timeout: Duration,
    http2_prior_knowledge: bool,
}

impl ClientSettings {
    fn build(self) -> Result<reqwest::Client, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("ai-chat-backend/", env!("CARGO_PKG_VERSION")));
        if self.http2_prior_knowledge { builder.http2_prior_knowledge() } else { builder }.build()
    }
}

thread_local! {
    /// This thread's clients, by settings (the server has at most two: HTTP/1.1 and h2c).
    static CLIENTS: RefCell<Vec<(ClientSettings, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

impl HttpClient {
    /// Builds a client, which tells whether one can be built with these settings at all; it becomes this thread's
    /// when the thread has none with these settings yet.
    pub fn new(connect_timeout: Duration, http2_prior_knowledge: bool) -> Result<Self, reqwest::Error> {
        let settings = ClientSettings { connect_timeout, http2_prior_knowledge };
        let client = settings.build()?;
        CLIENTS.with_borrow_mut(|clients| {
            if !clients.iter().any(|(kept, _)| *kept == settings) {
                clients.push((settings, client.clone()));
            }
        });
        Ok(Self { settings, fallback: client })
    }

    /// The calling thread's client, built on its first use there.
    pub(crate) fn current(&self) -> reqwest::Client {
        CLIENTS.with_borrow_mut(|clients| {
            if let Some((_, client)) = clients.iter().find(|(settings, _)| *settings == self.settings) {
                return client.clone();
            }
            match self.settings.build() {
                Ok(client) => {
                    clients.push((self.settings, client.clone()));
                    client
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot build this thread's HTTP client; sharing another thread's");
                    self.fallback.clone()
                }
            }
        })
    }
}

/// Classifies a transport error of `reqwest`.
pub(crate) fn transport_error(err: &reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        // reqwest's own timeouts are the connect timeout and the request's total timeout; the
        // first-token deadline is enforced around them (see `send` and `with_deadlines`).
        let phase = if err.is_connect() { TimeoutPhase::Connect } else { TimeoutPhase::Total };
        ProviderError::Timeout { phase }
    } else if err.is_connect() {
        ProviderError::Unreachable(without_url(err))
    } else if err.is_decode() {
        ProviderError::UnusableAnswer(without_url(err))
    } else {
        // Connected, then the request or the body was cut (a reset, a closed connection).
        ProviderError::ConnectionLost(without_url(err))
    }
}

/// The error's text without the request URL (which can carry a key in a query string).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<provider url>");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the response headers are waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaiting {
    /// A whole answer: providers send headers only once it is generated, so the total timeout applies.
    WholeAnswer,
    /// A stream: headers come before the first token, within the first-token timeout.
    Stream,
}

/// Sends `request` and waits for the response headers (see [`Awaiting`]); a non-2xx status becomes the
/// matching error.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    timeouts: &Timeouts,
    awaiting: Awaiting,
) -> Result<reqwest::Response, ProviderError> {
    let (limit, phase) = match awaiting {
        Awaiting::WholeAnswer => (timeouts.total, TimeoutPhase::Total),
        Awaiting::Stream => (timeouts.first_token, TimeoutPhase::FirstToken),
    };
    let response = match tokio::time::timeout(limit, request.send()).await {
        Err(_) => return Err(ProviderError::Timeout { phase }),
        Ok(Err(err)) => return Err(transport_error(&err)),
        Ok(Ok(response)) => response,
    };
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = tokio::time::timeout(timeouts.first_token, response.text()).await.ok().and_then(Result::ok);
    Err(status_error(status, retry_after, body.as_deref().unwrap_or("")))
}

/// The error for an HTTP error status and its body.
pub(crate) fn status_error(status: u16, retry_after: Option<Duration>, body: &str) -> ProviderError {
    if status == 429 {
        return ProviderError::RateLimited { retry_after };
    }
    ProviderError::Upstream { status, message: upstream_message(body) }
}

/// The provider's own error message from an OpenAI- or Anthropic-shaped error body, else the text.
pub(crate) fn upstream_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")))
        .and_then(serde_json::Value::as_str)
        .unwrap_or(body);
    message.chars().take(MAX_UPSTREAM_MESSAGE).collect()
}

/// `Retry-After` in seconds or as an HTTP date, or OpenAI's `retry-after-ms`.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) =
        headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
    {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate_to_unix(value)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(date.saturating_sub(now)))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since the epoch; `None` for
/// anything malformed or outside 1970..=9999 (so the arithmetic below cannot overflow).
fn httpdate_to_unix(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|m| m == month)? as u64 + 1;
    let (day, year): (u64, u64) = (day.parse().ok()?, year.parse().ok()?);
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) {
        return None;
    }
    let hms: Vec<u64> = time.split(':').map(str::parse).collect::<Result<_, _>>().ok()?;
    let [h, m, s] = hms.as_slice() else { return None };
    if *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Wraps a chunk stream with the first-token deadline and the total deadline, both counted from `started`.
pub(crate) fn with_deadlines(stream: ChunkStream, started: Instant, timeouts: Timeouts) -> ChunkStream {
    let first_deadline = started + timeouts.first_token;
    let total_deadline = started + timeouts.total;
    let state = (stream, false, false);
    Box::pin(futures_util::stream::unfold(state, move |(mut inner, got_first, done)| async move {
        if done {
            return None;
        }
        let deadline = if got_first { total_deadline } else { first_deadline.min(total_deadline) };
        match tokio::time::timeout_at(deadline.into(), inner.next()).await {
            Ok(Some(item)) => Some((item, (inner, true, false))),
            Ok(None) => None,
            Err(_) => {
                let phase = if got_first { TimeoutPhase::Total } else { TimeoutPhase::FirstToken };
                Some((Err(ProviderError::Timeout { phase }), (inner, got_first, true)))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn extra_headers_are_sensitive_and_checked() {
        let mut headers = HeaderMap::new();
        let extra = vec![("api-key".to_owned(), "secret-value".to_owned())];
        add_extra_headers("azure", &extra, &mut headers).unwrap();
        assert!(headers["api-key"].is_sensitive());
        assert!(!format!("{headers:?}").contains("secret-value"));
        let bad = vec![("bad header".to_owned(), "x".to_owned())];
        assert!(add_extra_headers("p", &bad, &mut headers).unwrap_err().contains("invalid header name"));
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(check_base_url("https://api.groq.com/openai/v1").is_ok());
        assert!(check_base_url("http://127.0.0.1:11434/v1").is_ok());
        for bad in ["notaurl", "ftp://x/v1", "http://", "/v1"] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_after_in_seconds_ms_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        let mut dated = HeaderMap::new();
        dated.insert("retry-after", HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&dated), Some(Duration::ZERO), "a past date means now");
        assert_eq!(httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(httpdate_to_unix("Wed, 31 Dec 1969 23:59:59 GMT"), None, "before the epoch");
        assert_eq!(httpdate_to_unix("Sat, 01 Jan 0000 00:00:00 GMT"), None);
        assert_eq!(httpdate_to_unix("Sat, 01 Jan 99999999999 00:00:00 GMT"), None);
        let mut junk = HeaderMap::new();
        junk.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&junk), None);
    }

    #[test]
    fn upstream_messages_are_extracted_and_bounded() {
        assert_eq!(upstream_message(r#"{"error":{"message":"model not found"}}"#), "model not found");
        assert_eq!(upstream_message(r#"{"type":"error","error":{"type":"x","message":"overloaded"}}"#), "overloaded");
        assert_eq!(upstream_message("plain text").as_str(), "plain text");
        assert_eq!(upstream_message(&"x".repeat(2000)).len(), MAX_UPSTREAM_MESSAGE);
        assert!(matches!(status_error(429, None, ""), ProviderError::RateLimited { retry_after: None }));
        assert!(matches!(status_error(503, None, "busy"), ProviderError::Upstream { status: 503, .. }));
    }
}
