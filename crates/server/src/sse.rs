//! Server-Sent Events: a reply's events as `text/event-stream` frames, with keep-alive comments in silences.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use bytes::Bytes;
use chat_service::{Ending, NumberedEvent, StreamEvent, Subscription};
use serde::Serialize;

use crate::dto::{DeltaEvent, DoneEvent, ErrorEvent, StartEvent, UsageResponse};
use crate::error::stream_failure;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// A `200 text/event-stream` response that follows `subscription` to its end. Events that are ready
/// together go out in one write; a comment goes out after every `keep_alive` of silence.
pub fn response(subscription: Subscription, keep_alive: Duration) -> HttpResponse {
    let body = futures_util::stream::unfold(subscription, move |mut subscription| async move {
        let frame = match tokio::time::timeout(keep_alive, subscription.next_batch()).await {
            Ok(Some(batch)) => Bytes::from(encode(&batch)),
            Ok(None) => return None,
            Err(_silence) => Bytes::from_static(KEEP_ALIVE),
        };
        Some((Ok::<_, Infallible>(frame), subscription))
    });
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// The frames of `events`, each `id:`, `event:` and one `data:` line of JSON.
pub fn encode(events: &[NumberedEvent]) -> String {
    let mut out = String::new();
    for numbered in events {
        let (name, data) = match &numbered.event {
            StreamEvent::Start(start) => (
                "start",
                json(&StartEvent {
                    chat_id: start.chat_id.to_string(),
                    user_message_id: start.user_message_id,
                    message_id: start.message_id,
                    model: start.model.clone(),
                }),
            ),
            StreamEvent::Delta(text) => ("delta", json(&DeltaEvent { text })),
            StreamEvent::End { message_id, ending: Ending::Done { finish_reason, usage } } => (
                "done",
                json(&DoneEvent {
                    message_id: *message_id,
                    finish_reason,
                    usage: UsageResponse {
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                    },
                }),
            ),
            StreamEvent::End { message_id, ending: Ending::Failed(failure) } => {
                let (status, detail) = stream_failure(failure);
                ("error", json(&ErrorEvent { message_id: *message_id, detail, status }))
            }
        };
        // JSON has no raw newlines, so one `data:` line carries it whole.
        let _ = write!(out, "id: {}\nevent: {name}\ndata: {data}\n\n", numbered.id);
    }
    out
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use chat_domain::ChatId;
    use chat_service::StreamStart;
    use llm_providers::Usage;

    use super::*;

    #[test]
    fn frames_carry_id_name_and_one_json_line() {
        let chat_id = ChatId::new_random();
        let events = [
            NumberedEvent {
                id: 1,
                event: StreamEvent::Start(StreamStart {
                    chat_id,
                    user_message_id: 7,
                    message_id: 8,
                    model: "fast".into(),
                }),
            },
            NumberedEvent { id: 2, event: StreamEvent::Delta("two\nlines \"quoted\"".into()) },
            NumberedEvent {
                id: 3,
                event: StreamEvent::End {
                    message_id: 8,
                    ending: Ending::Done {
                        finish_reason: "stop".into(),
                        usage: Usage { prompt_tokens: 5, completion_tokens: 2 },
                    },
                },
            },
        ];
        let text = encode(&events);
        let frames: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0],
            format!(
                "id: 1\nevent: start\ndata: {{\"chat_id\":\"{chat_id}\",\"user_message_id\":7,\"message_id\":8,\"model\":\"fast\"}}"
            )
        );
        assert_eq!(frames[1], "id: 2\nevent: delta\ndata: {\"text\":\"two\\nlines \\\"quoted\\\"\"}");
        assert_eq!(
            frames[2],
            "id: 3\nevent: done\ndata: {\"message_id\":8,\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}"
        );
    }
}
