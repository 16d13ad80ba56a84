//! The scripted behaviours a provider request can be given, in the JSON shape the control API accepts.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::MockError;

/// Process-wide settings: what an unscripted request gets, what a behaviour inherits for fields it leaves out, and
/// how much is recorded. Build it with `..Defaults::default()` so that new settings do not break the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    /// Delay before the response headers, in milliseconds.
    pub latency_ms: u64,
    /// Pace of generated tokens; `None` sends them as fast as possible.
    pub tokens_per_second: Option<f64>,
    /// Reply text; `None` answers `Mock reply to: <last user message>`.
    pub reply: Option<String>,
    /// How many recorded requests are kept, the oldest dropped first; `None` keeps them all. A long load test
    /// should set it, since every request's headers and body are kept.
    pub max_recorded: Option<usize>,
}

impl Defaults {
    /// Checks the values a behaviour would also be refused for.
    pub fn validate(&self) -> Result<(), String> {
        self.tokens_per_second.map_or(Ok(()), check_tokens_per_second)
    }
}

/// What the mock does with one provider request. The JSON form is an object tagged by `"kind"`; unknown fields are
/// refused so that a typo fails the script instead of silently falling back to a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Behaviour {
    /// A normal answer, streamed or not as the request asks.
    Reply(Reply),
    /// An HTTP error status with the provider's error body.
    Status(ErrorStatus),
    /// Accept the request and never answer.
    Hang(Fault),
    /// Stream `tokens` tokens, then keep the connection open without sending anything more.
    HangAfter(Partial),
    /// Stream `tokens` tokens, then close the connection without the closing events.
    CutAfter(Partial),
    /// Status 200 with a body (or one SSE event) that is not valid JSON.
    Malformed(Fault),
    /// A well-formed answer without content: OpenAI `message.content: null`, Anthropic `content: []`.
    NullContent(Fault),
    /// Abort the TCP connection with a reset, without any response.
    Reset(Fault),
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::Reply(Reply::default())
    }
}

/// Fields of a [`Behaviour::Reply`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Reply text; by default the process-wide reply, else `Mock reply to: <last user message>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Delay before the response headers; `None` inherits the process-wide default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `None` inherits the process-wide pace, `Some(None)` (JSON `null`) is as fast as possible.
    #[serde(default, deserialize_with = "explicit_null", skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<Option<f64>>,
    /// Token counts to report instead of the counted ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageOverride>,
    /// Where (and whether) usage is reported.
    #[serde(default)]
    pub usage_style: UsageStyle,
    /// Send a `: keep-alive` SSE comment between stream events.
    #[serde(default)]
    pub keep_alive_comments: bool,
    /// OpenAI finish reason to report instead of `stop` (Anthropic: mapped to a stop reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// Token counts reported instead of the counted ones; a missing field keeps the counted value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

/// Where usage is reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageStyle {
    /// `usage` on the answer; when streaming, a final `choices: []` chunk if `stream_options.include_usage`.
    #[default]
    #[serde(rename = "openai")]
    OpenAi,
    /// Groq: when streaming, `x_groq.usage` on the finish chunk instead of a usage chunk.
    #[serde(rename = "groq")]
    Groq,
    /// No usage anywhere (both dialects).
    #[serde(rename = "none")]
    Omitted,
}

/// Fields of a [`Behaviour::Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorStatus {
    /// HTTP status, 200 to 599.
    pub status: u16,
    /// Sent verbatim as the `Retry-After` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// Body sent instead of the provider's error shape: JSON as given, or a JSON string sent as plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Message inside the provider's error shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Delay before the response; `None` inherits the process-wide default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// Fields of [`Behaviour::HangAfter`] and [`Behaviour::CutAfter`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partial {
    /// How many tokens are streamed before the stall or the cut.
    pub tokens: usize,
    /// Reply text the tokens are taken from, as for [`Reply::text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Delay before the response headers; `None` inherits the process-wide default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// As [`Reply::tokens_per_second`].
    #[serde(default, deserialize_with = "explicit_null", skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<Option<f64>>,
}

/// Fields of the faults that need nothing but a delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Delay before the fault; `None` inherits the process-wide default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// Keeps an explicit JSON `null` apart from a missing field (which `#[serde(default)]` turns into `None`).
fn explicit_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(deserializer).map(Some)
}

/// Slowest accepted pace: one token every 1000 s keeps every computed delay far from `Duration`'s limits.
const MIN_TOKENS_PER_SECOND: f64 = 0.001;

fn check_tokens_per_second(rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate >= MIN_TOKENS_PER_SECOND {
        Ok(())
    } else {
        Err(format!("tokens_per_second must be a number of at least {MIN_TOKENS_PER_SECOND}, got {rate}"))
    }
}

impl Behaviour {
    /// Checks the values serde cannot: ranges and header-safe strings.
    pub fn validate(&self) -> Result<(), String> {
        let rate = match self {
            Self::Reply(reply) => reply.tokens_per_second.flatten(),
            Self::HangAfter(partial) | Self::CutAfter(partial) => partial.tokens_per_second.flatten(),
            Self::Status(status) => {
                if !(200..=599).contains(&status.status) {
                    return Err(format!("status must be between 200 and 599, got {}", status.status));
                }
                if let Some(retry_after) = &status.retry_after
                    && actix_web::http::header::HeaderValue::from_str(retry_after).is_err()
                {
                    return Err("retry_after is not a valid header value".to_owned());
                }
                None
            }
            Self::Hang(_) | Self::Malformed(_) | Self::NullContent(_) | Self::Reset(_) => None,
        };
        rate.map_or(Ok(()), check_tokens_per_second)
    }

    /// Reads and validates one behaviour from its JSON form; `index` names it in the error.
    pub fn from_json(index: usize, value: Value) -> Result<Self, MockError> {
        let behaviour: Self = serde_json::from_value(value)
            .map_err(|err| MockError::InvalidBehaviour { index, reason: err.to_string() })?;
        behaviour.validate().map_err(|reason| MockError::InvalidBehaviour { index, reason })?;
        Ok(behaviour)
    }
}

/// Reads a script: a JSON array of behaviours, or a single behaviour object. Nothing is returned unless all are valid.
pub(crate) fn parse_script(value: Value) -> Result<Vec<Behaviour>, MockError> {
    match value {
        Value::Array(items) => {
            items.into_iter().enumerate().map(|(index, item)| Behaviour::from_json(index, item)).collect()
        }
        single @ Value::Object(_) => Ok(vec![Behaviour::from_json(0, single)?]),
        _ => Err(MockError::InvalidBehaviour {
            index: 0,
            reason: "a script is a JSON array of behaviour objects".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_every_kind() {
        let script = json!([
            {"kind": "reply", "text": "hi", "tokens_per_second": 20, "usage_style": "groq"},
            {"kind": "status", "status": 429, "retry_after": "1"},
            {"kind": "hang"},
            {"kind": "hang_after", "tokens": 2},
            {"kind": "cut_after", "tokens": 3, "text": "a b c d"},
            {"kind": "malformed"},
            {"kind": "null_content", "latency_ms": 5},
            {"kind": "reset"},
        ]);
        let parsed = parse_script(script).unwrap();
        assert_eq!(parsed.len(), 8);
        let Behaviour::Reply(reply) = &parsed[0] else { panic!("not a reply: {:?}", parsed[0]) };
        assert_eq!(reply.tokens_per_second, Some(Some(20.0)));
        assert_eq!(reply.usage_style, UsageStyle::Groq);
        assert_eq!(parsed[6], Behaviour::NullContent(Fault { latency_ms: Some(5) }));
    }

    #[test]
    fn null_pace_differs_from_missing_pace() {
        let explicit = Behaviour::from_json(0, json!({"kind": "reply", "tokens_per_second": null})).unwrap();
        let missing = Behaviour::from_json(0, json!({"kind": "reply"})).unwrap();
        assert_eq!(explicit, Behaviour::Reply(Reply { tokens_per_second: Some(None), ..Reply::default() }));
        assert_eq!(missing, Behaviour::default());
        let round_trip = serde_json::to_value(&explicit).unwrap();
        assert_eq!(round_trip["tokens_per_second"], Value::Null);
        assert_eq!(Behaviour::from_json(0, round_trip).unwrap(), explicit);
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        for bad in [
            json!({"kind": "reply", "latency": 5}),
            json!({"kind": "sing"}),
            json!({"kind": "status"}),
            json!({"kind": "status", "status": 99}),
            json!({"kind": "status", "status": 503, "retry_after": "1\n2"}),
            json!({"kind": "reply", "tokens_per_second": 0}),
            json!({"kind": "hang_after"}),
            json!({"kind": "hang", "tokens": 1}),
        ] {
            assert!(Behaviour::from_json(0, bad.clone()).is_err(), "accepted {bad}");
        }
        let err = parse_script(json!([{"kind": "reply"}, {"kind": "nope"}])).unwrap_err();
        assert!(err.to_string().contains("#1"), "{err}");
    }
}
