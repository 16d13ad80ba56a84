//! Anthropic Messages API shapes: the answer, the named stream events and the error body.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use serde_json::{Map, Value, json};

use crate::behaviour::UsageStyle;
use crate::dialect::Generation;

/// One named SSE event, as Anthropic frames them.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Anthropic's stop reason for an OpenAI finish reason; unknown ones are passed through.
fn stop_reason(finish_reason: &str) -> &str {
    match finish_reason {
        "stop" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        other => other,
    }
}

fn reports_usage(generation: &Generation) -> bool {
    generation.usage_style != UsageStyle::Omitted
}

/// The message object; `stop_reason` is `None` in `message_start`, as Anthropic sends it.
fn message(generation: &Generation, content: Value, stop_reason: Option<&str>, output_tokens: u64) -> Value {
    let mut message = Map::new();
    message.insert("id".to_owned(), json!(generation.id));
    message.insert("type".to_owned(), json!("message"));
    message.insert("role".to_owned(), json!("assistant"));
    message.insert("model".to_owned(), json!(generation.model));
    message.insert("content".to_owned(), content);
    message.insert("stop_reason".to_owned(), json!(stop_reason));
    message.insert("stop_sequence".to_owned(), Value::Null);
    if reports_usage(generation) {
        message.insert(
            "usage".to_owned(),
            json!({"input_tokens": generation.prompt_tokens, "output_tokens": output_tokens}),
        );
    }
    Value::Object(message)
}

/// The non-streamed message; `None` content gives an empty `content` array.
pub(crate) fn completion(generation: &Generation, content: Option<&str>) -> Value {
    let blocks = content.map_or_else(|| json!([]), |text| json!([{"type": "text", "text": text}]));
    let stop = stop_reason(&generation.finish_reason);
    message(generation, blocks, Some(stop), generation.completion_tokens)
}

/// `message_start`, `content_block_start` (when there is a text block) and `ping`.
pub(crate) fn stream_open(generation: &Generation, with_block: bool) -> Vec<Bytes> {
    let start = json!({"type": "message_start", "message": message(generation, json!([]), None, 1)});
    let mut events = vec![event("message_start", &start)];
    if with_block {
        let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
        events.push(event("content_block_start", &block));
    }
    events.push(event("ping", &json!({"type": "ping"})));
    events
}

pub(crate) fn stream_token(token: &str) -> Bytes {
    let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}});
    event("content_block_delta", &delta)
}

/// `content_block_stop` (when a block was opened), `message_delta` and `message_stop`.
pub(crate) fn stream_close(generation: &Generation, with_block: bool) -> Vec<Bytes> {
    let mut events = Vec::new();
    if with_block {
        events.push(event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    }
    let mut delta = Map::new();
    delta.insert("type".to_owned(), json!("message_delta"));
    delta.insert(
        "delta".to_owned(),
        json!({"stop_reason": stop_reason(&generation.finish_reason), "stop_sequence": null}),
    );
    if reports_usage(generation) {
        delta.insert("usage".to_owned(), json!({"output_tokens": generation.completion_tokens}));
    }
    events.push(event("message_delta", &Value::Object(delta)));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// `{"type":"error","error":{...}}` with the error type Anthropic documents for the status.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Value {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation() -> Generation {
        Generation {
            id: "msg_mock_1".to_owned(),
            model: "claude-mock".to_owned(),
            created: 1,
            prompt_tokens: 4,
            completion_tokens: 2,
            finish_reason: "length".to_owned(),
            usage_style: UsageStyle::OpenAi,
            include_usage: false,
        }
    }

    #[test]
    fn events_are_named_and_framed() {
        let open = stream_open(&generation(), true);
        let text = std::str::from_utf8(&open[0]).unwrap();
        assert!(text.starts_with("event: message_start\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
        assert_eq!(open.len(), 3);
        let close = stream_close(&generation(), true);
        let delta = std::str::from_utf8(&close[1]).unwrap();
        assert!(delta.contains("\"stop_reason\":\"max_tokens\""), "{delta}");
        assert!(delta.contains("\"output_tokens\":2"), "{delta}");
    }

    #[test]
    fn errors_use_anthropic_types() {
        assert_eq!(error_body(StatusCode::TOO_MANY_REQUESTS, "m")["error"]["type"], "rate_limit_error");
        assert_eq!(error_body(StatusCode::SERVICE_UNAVAILABLE, "m")["error"]["type"], "overloaded_error");
        assert_eq!(error_body(StatusCode::INTERNAL_SERVER_ERROR, "m")["type"], "error");
    }
}
