//! Helpers shared by the suite: starting a mock, sending chat requests, reading SSE bodies.

use std::time::Duration;

use mock_llm::MockLlm;
use serde_json::{Value, json};

/// Upper bound for anything the suite waits on; generous because CI machines are slow, never slept through.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The two provider APIs, with what differs between them in requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

pub const BOTH: [Api; 2] = [Api::OpenAi, Api::Anthropic];

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    /// A chat request saying `user` to the model.
    pub fn body(self, user: &str, stream: bool) -> Value {
        json!({"model": "test-model", "stream": stream, "max_tokens": 64, "messages": [{"role": "user", "content": user}]})
    }

    /// Concatenated text of a streamed answer, from its parsed events.
    pub fn streamed_text(self, events: &[Event]) -> String {
        self.token_events(events)
            .map(|event| match self {
                Api::OpenAi => event.json()["choices"][0]["delta"]["content"].as_str().unwrap().to_owned(),
                Api::Anthropic => event.json()["delta"]["text"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// The events that carry one token each.
    pub fn token_events(self, events: &[Event]) -> impl Iterator<Item = &Event> {
        events.iter().filter(move |event| match self {
            Api::OpenAi => {
                let data = event.json_opt();
                data.as_ref().is_some_and(|data| {
                    data["choices"][0]["delta"].get("content").is_some_and(|content| content != "")
                        && data["choices"][0]["delta"].get("role").is_none()
                })
            }
            Api::Anthropic => event.name.as_deref() == Some("content_block_delta"),
        })
    }

    /// The text of a non-streamed answer.
    pub fn answer_text(self, answer: &Value) -> Option<String> {
        match self {
            Api::OpenAi => answer["choices"][0]["message"]["content"].as_str().map(str::to_owned),
            Api::Anthropic => answer["content"][0]["text"].as_str().map(str::to_owned),
        }
    }
}

pub async fn start() -> MockLlm {
    MockLlm::start().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(PATIENCE).build().unwrap()
}

pub async fn post(mock: &MockLlm, path: &str, body: &Value) -> reqwest::Response {
    client().post(format!("{}{path}", mock.base_url())).json(body).send().await.unwrap()
}

/// One SSE event: its `event:` name if any, and its `data:` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|err| panic!("event data is not JSON ({err}): {}", self.data))
    }

    pub fn json_opt(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// A parsed SSE body.
#[derive(Debug, Clone, Default)]
pub struct Sse {
    pub events: Vec<Event>,
    /// Comment lines (`: ...`).
    pub comments: usize,
}

pub fn parse_sse(text: &str) -> Sse {
    let mut sse = Sse::default();
    for block in text.split("\n\n").filter(|block| !block.is_empty()) {
        let mut event = Event { name: None, data: String::new() };
        let mut has_data = false;
        for line in block.lines() {
            if line.starts_with(':') {
                sse.comments += 1;
            } else if let Some(name) = line.strip_prefix("event: ") {
                event.name = Some(name.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                event.data.push_str(data);
                has_data = true;
            } else {
                panic!("unexpected SSE line {line:?} in {text:?}");
            }
        }
        if has_data {
            sse.events.push(event);
        }
    }
    sse
}

/// Reads a body to its end or to the failure that ended it.
pub async fn read_body(mut response: reqwest::Response) -> (String, Option<reqwest::Error>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return (String::from_utf8(body).unwrap(), None),
            Err(err) => return (String::from_utf8(body).unwrap(), Some(err)),
        }
    }
}

/// Reads a streamed body until it holds `count` token events, and returns what was read so far.
pub async fn read_tokens(api: Api, response: &mut reqwest::Response, count: usize) -> String {
    let mut body = String::new();
    while api.token_events(&parse_sse(complete_events(&body)).events).count() < count {
        let chunk = response.chunk().await.unwrap().expect("the stream ended before the awaited tokens");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    body
}

/// The complete events at the start of a partly received body.
fn complete_events(body: &str) -> &str {
    body.rfind("\n\n").map_or("", |end| &body[..end + 2])
}
