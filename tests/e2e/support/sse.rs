//! A small Server-Sent Events client over reqwest: frames parsed as they arrive, comments counted.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{TestServer, TestUser};

/// How long a test waits for the next frame before failing.
const FRAME_WAIT: Duration = Duration::from_secs(20);

/// One event as received.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// An open `text/event-stream` response.
pub struct EventStream {
    pub headers: HeaderMap,
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (`: keep-alive`) received so far.
    pub comments: usize,
    finished: bool,
}

/// Opens an event stream: `Ok` for `200 text/event-stream`, otherwise the status and JSON body.
pub async fn open(
    server: &TestServer,
    method: Method,
    path: &str,
    user: &TestUser,
    body: Option<Value>,
    last_event_id: Option<u64>,
) -> Result<EventStream, (StatusCode, Value)> {
    let mut request = server.client().request(method, server.url(path)).bearer_auth(&user.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let is_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if status != StatusCode::OK || !is_stream {
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        return Err((status, body));
    }
    let headers = response.headers().clone();
    Ok(EventStream { headers, response, buffer: String::new(), comments: 0, finished: false })
}

/// `POST /chat` with `"stream": true` added to `body`.
pub async fn post_chat(
    server: &TestServer,
    user: &TestUser,
    mut body: Value,
) -> Result<EventStream, (StatusCode, Value)> {
    body["stream"] = Value::Bool(true);
    open(server, Method::POST, "/chat", user, Some(body), None).await
}

/// `GET /chats/{chat}/messages/{message}/events`, optionally resuming after `last_event_id`.
pub async fn follow(
    server: &TestServer,
    user: &TestUser,
    chat: &str,
    message_id: i64,
    last_event_id: Option<u64>,
) -> Result<EventStream, (StatusCode, Value)> {
    let path = format!("/chats/{chat}/messages/{message_id}/events");
    open(server, Method::GET, &path, user, None, last_event_id).await
}

impl EventStream {
    /// The next event, or `None` when the server ended the stream. Fails the test after 20 s of silence.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..at + 2).collect();
                if let Some(event) = self.parse(&frame) {
                    return Some(event);
                }
                continue;
            }
            if self.finished {
                assert!(self.buffer.trim().is_empty(), "the stream ended inside a frame: {:?}", self.buffer);
                return None;
            }
            let chunk = tokio::time::timeout(FRAME_WAIT, self.response.chunk())
                .await
                .expect("no frame within 20 s")
                .expect("the stream broke");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).expect("UTF-8 frames")),
                None => self.finished = true,
            }
        }
    }

    /// Every remaining event, until the server ends the stream.
    pub async fn collect(mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    /// Reads until an event named `name` arrives, returning it and everything before it.
    pub async fn until(&mut self, name: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            let found = event.event == name;
            events.push(event);
            if found {
                return events;
            }
        }
        panic!("the stream ended without a {name:?} event: {events:?}");
    }

    /// Parses one frame; comment-only frames are counted and give `None`.
    fn parse(&mut self, frame: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in frame.lines() {
            if line.starts_with(':') {
                self.comments += 1;
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.parse().expect("numeric event id"));
            } else if let Some(value) = line.strip_prefix("event: ") {
                event = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "one data line per event: {frame:?}");
                data = Some(serde_json::from_str(value).expect("JSON data"));
            } else if !line.is_empty() {
                panic!("unexpected line {line:?} in frame {frame:?}");
            }
        }
        let event = event?;
        Some(SseEvent { id, event, data: data.expect("data line") })
    }
}

/// The text of the `delta` events, joined.
pub fn text_of(events: &[SseEvent]) -> String {
    events.iter().filter(|e| e.event == "delta").map(|e| e.data["text"].as_str().expect("delta text")).collect()
}

/// The event names, in order.
pub fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}
