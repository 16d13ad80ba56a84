//! OpenAI chat-completions shapes: the answer, the stream chunks and the error body.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use serde_json::{Map, Value, json};

use crate::behaviour::UsageStyle;
use crate::dialect::Generation;

fn usage(generation: &Generation) -> Value {
    json!({
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens.saturating_add(generation.completion_tokens),
    })
}

/// `CreateChatCompletionResponse`.
pub(crate) fn completion(generation: &Generation, content: Option<&str>) -> Value {
    let mut body = Map::new();
    body.insert("id".to_owned(), json!(generation.id));
    body.insert("object".to_owned(), json!("chat.completion"));
    body.insert("created".to_owned(), json!(generation.created));
    body.insert("model".to_owned(), json!(generation.model));
    body.insert(
        "choices".to_owned(),
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": generation.finish_reason,
        }]),
    );
    if generation.usage_style != UsageStyle::Omitted {
        body.insert("usage".to_owned(), usage(generation));
    }
    Value::Object(body)
}

/// Whether the stream ends with a `choices: []` usage chunk (and, as OpenAI does, carries `usage: null` before it).
fn usage_chunk_wanted(generation: &Generation) -> bool {
    generation.include_usage && generation.usage_style == UsageStyle::OpenAi
}

/// `CreateChatCompletionStreamResponse` as one SSE event.
fn chunk(generation: &Generation, choices: Value, extra: Option<(&str, Value)>) -> Bytes {
    let mut chunk = Map::new();
    chunk.insert("id".to_owned(), json!(generation.id));
    chunk.insert("object".to_owned(), json!("chat.completion.chunk"));
    chunk.insert("created".to_owned(), json!(generation.created));
    chunk.insert("model".to_owned(), json!(generation.model));
    chunk.insert("choices".to_owned(), choices);
    if usage_chunk_wanted(generation) {
        chunk.insert("usage".to_owned(), Value::Null);
    }
    if let Some((key, value)) = extra {
        chunk.insert(key.to_owned(), value);
    }
    Bytes::from(format!("data: {}\n\n", Value::Object(chunk)))
}

/// The first chunk: the assistant role, with empty content (or `null` for the `null_content` fault).
pub(crate) fn stream_open(generation: &Generation, content: Option<&str>) -> Bytes {
    let choices = json!([{
        "index": 0,
        "delta": {"role": "assistant", "content": content},
        "logprobs": null,
        "finish_reason": null,
    }]);
    chunk(generation, choices, None)
}

pub(crate) fn stream_token(generation: &Generation, token: &str) -> Bytes {
    let choices = json!([{"index": 0, "delta": {"content": token}, "logprobs": null, "finish_reason": null}]);
    chunk(generation, choices, None)
}

/// The finish chunk, the usage chunk when asked for, and `[DONE]`.
pub(crate) fn stream_close(generation: &Generation) -> Vec<Bytes> {
    let finish = json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": generation.finish_reason}]);
    let groq = (generation.usage_style == UsageStyle::Groq).then(|| ("x_groq", json!({"usage": usage(generation)})));
    let mut events = vec![chunk(generation, finish, groq)];
    if usage_chunk_wanted(generation) {
        events.push(chunk(generation, json!([]), Some(("usage", usage(generation)))));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// `ErrorResponse`, with the `type` and `code` OpenAI uses for the status.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Value {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(style: UsageStyle, include_usage: bool) -> Generation {
        Generation {
            id: "chatcmpl-mock-1".to_owned(),
            model: "m".to_owned(),
            created: 1,
            prompt_tokens: 3,
            completion_tokens: 2,
            finish_reason: "stop".to_owned(),
            usage_style: style,
            include_usage,
        }
    }

    fn data(event: &Bytes) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap()
    }

    #[test]
    fn usage_chunk_only_when_asked() {
        let plain = stream_close(&generation(UsageStyle::OpenAi, false));
        assert_eq!(plain.len(), 2);
        assert!(data(&plain[0]).get("usage").is_none());
        let with_usage = stream_close(&generation(UsageStyle::OpenAi, true));
        assert_eq!(with_usage.len(), 3);
        assert_eq!(data(&with_usage[0])["usage"], Value::Null);
        assert_eq!(data(&with_usage[1])["usage"]["total_tokens"], 5);
        assert_eq!(data(&with_usage[1])["choices"], json!([]));
        assert_eq!(&with_usage[2][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn groq_usage_rides_on_the_finish_chunk() {
        let events = stream_close(&generation(UsageStyle::Groq, true));
        assert_eq!(events.len(), 2);
        let finish = data(&events[0]);
        assert_eq!(finish["x_groq"]["usage"]["completion_tokens"], 2);
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn usage_none_omits_it_from_the_answer() {
        assert!(completion(&generation(UsageStyle::Omitted, false), Some("x")).get("usage").is_none());
        let answer = completion(&generation(UsageStyle::OpenAi, false), None);
        assert_eq!(answer["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(answer["usage"]["prompt_tokens"], 3);
    }
}
