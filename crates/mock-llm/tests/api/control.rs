//! The control API and the library handle: scripting, recording, disconnection, pacing, defaults, the binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use mock_llm::{Behaviour, Defaults, ErrorStatus, MockLlm, Reply};
use serde_json::{Value, json};

use crate::common::{Api, PATIENCE, client, parse_sse, post, read_tokens, start};

#[tokio::test]
async fn behaviours_are_taken_in_order_then_the_default() {
    let mock = start().await;
    let control = format!("{}/_mock/script", mock.base_url());
    let queued: Value = client()
        .post(&control)
        .json(&json!([{"kind": "reply", "text": "first"}, {"kind": "status", "status": 503}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued, json!({"queued": 2}));
    mock.script([Behaviour::Reply(Reply { text: Some("third".to_owned()), ..Reply::default() })]).await.unwrap();
    let pending: Value = client().get(&control).send().await.unwrap().json().await.unwrap();
    assert_eq!(pending.as_array().unwrap().len(), 3);
    assert_eq!(pending[1], json!({"kind": "status", "status": 503}));

    let api = Api::OpenAi;
    let first: Value = post(&mock, api.path(), &api.body("q", false)).await.json().await.unwrap();
    assert_eq!(api.answer_text(&first).unwrap(), "first");
    assert_eq!(post(&mock, api.path(), &api.body("q", false)).await.status(), 503);
    let third: Value = post(&mock, api.path(), &api.body("q", false)).await.json().await.unwrap();
    assert_eq!(api.answer_text(&third).unwrap(), "third");
    let default: Value = post(&mock, api.path(), &api.body("q", false)).await.json().await.unwrap();
    assert_eq!(api.answer_text(&default).unwrap(), "Mock reply to: q");
}

#[tokio::test]
async fn an_invalid_script_is_refused_whole() {
    let mock = start().await;
    let response = client()
        .post(format!("{}/_mock/script", mock.base_url()))
        .json(&json!([{"kind": "reply"}, {"kind": "status", "status": 429, "retry_afterr": "1"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("#1"), "{error}");
    let typed = mock.script([Behaviour::Status(ErrorStatus { status: 42, ..ErrorStatus::default() })]).await;
    assert!(typed.is_err());
    let pending: Value =
        client().get(format!("{}/_mock/script", mock.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(pending, json!([]));
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_body_and_reset_clears_them() {
    let mock = start().await;
    let body = Api::Anthropic.body("recorded", false);
    client()
        .post(format!("{}/v1/messages", mock.base_url()))
        .header("X-Api-Key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let not_json = client()
        .post(format!("{}/v1/chat/completions", mock.base_url()))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert!(not_json.json::<Value>().await.unwrap()["error"]["message"].is_string());

    let recorded: Vec<Value> =
        client().get(format!("{}/_mock/requests", mock.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0]["seq"], 1);
    assert_eq!(recorded[0]["path"], "/v1/messages");
    assert_eq!(recorded[0]["headers"]["x-api-key"], "sk-test");
    assert_eq!(recorded[0]["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(recorded[0]["body"], body);
    assert_eq!(recorded[0]["disconnected"], false);
    assert_eq!(recorded[1]["body"], "{oops");

    let requests = mock.requests().await;
    assert_eq!(requests[1].seq, 2);
    assert_eq!(requests[0].headers["x-api-key"], "sk-test");

    mock.script([json!({"kind": "hang"})]).await.unwrap();
    client().post(format!("{}/_mock/reset", mock.base_url())).send().await.unwrap();
    assert!(mock.requests().await.is_empty());
    let answer = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", false)).await;
    assert_eq!(answer.status(), 200, "reset also emptied the queue");
    assert_eq!(mock.requests().await[0].seq, 1);
}

#[tokio::test]
async fn dropping_a_stream_midway_marks_the_request_disconnected() {
    for api in [Api::OpenAi, Api::Anthropic] {
        let mock = start().await;
        let text = "one two three four five six seven eight nine ten";
        mock.script([
            json!({"kind": "reply", "text": text, "tokens_per_second": 20}),
            json!({"kind": "reply", "text": text}),
        ])
        .await
        .unwrap();
        let mut response = post(&mock, api.path(), &api.body("q", true)).await;
        read_tokens(api, &mut response, 2).await;
        assert!(!mock.requests().await[0].disconnected);
        drop(response);
        mock.wait_for_requests(PATIENCE, |requests| requests[0].disconnected).await.unwrap();

        let complete = post(&mock, api.path(), &api.body("q", true)).await.text().await.unwrap();
        assert_eq!(api.streamed_text(&parse_sse(&complete).events), text);
        // The stream is complete when the client has it all; the record may settle a moment after.
        mock.wait_for_requests(PATIENCE, |requests| requests.len() == 2).await.unwrap();
        assert!(!mock.requests().await[1].disconnected);
    }
}

#[tokio::test]
async fn tokens_per_second_paces_the_stream_and_the_answer() {
    let mock = start().await;
    let five = "a b c d e";
    mock.script(vec![json!({"kind": "reply", "text": five, "tokens_per_second": 20}); 2]).await.unwrap();
    let started = Instant::now();
    let streamed = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", true)).await.text().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200), "5 tokens at 20/s took {:?}", started.elapsed());
    assert_eq!(Api::OpenAi.streamed_text(&parse_sse(&streamed).events), five);
    let started = Instant::now();
    post(&mock, "/v1/messages", &Api::Anthropic.body("q", false)).await.json::<Value>().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200), "unstreamed took {:?}", started.elapsed());
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let mock = start().await;
    mock.script([json!({"kind": "reply", "latency_ms": 150})]).await.unwrap();
    let started = Instant::now();
    let response = post(&mock, "/v1/chat/completions", &Api::OpenAi.body("q", true)).await;
    assert!(started.elapsed() >= Duration::from_millis(150), "headers after {:?}", started.elapsed());
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn process_defaults_apply_when_nothing_is_scripted() {
    let defaults = Defaults {
        latency_ms: 100,
        reply: Some("canned\nanswer".to_owned()),
        max_recorded: Some(1),
        ..Defaults::default()
    };
    let mock = MockLlm::start_with(defaults).await.unwrap();
    let started = Instant::now();
    let answer: Value = post(&mock, "/v1/messages", &Api::Anthropic.body("q", false)).await.json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(answer["content"][0]["text"], "canned\nanswer");
    post(&mock, "/v1/messages", &Api::Anthropic.body("again", false)).await;
    let kept = mock.requests().await;
    assert_eq!(kept.len(), 1, "only the most recent request is kept");
    assert_eq!(kept[0].seq, 2);
    let invalid = Defaults { tokens_per_second: Some(0.0), ..Defaults::default() };
    assert!(MockLlm::start_with(invalid).await.is_err());
}

/// Sends one HTTP/1.1 request over a plain socket and returns the whole response.
fn raw_http(base_url: &str, request: &str) -> String {
    let address = base_url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_blocking_api_needs_no_runtime() {
    let mock = MockLlm::start_blocking().unwrap();
    mock.script_blocking([json!({"kind": "reply", "text": "from a plain test"})]).unwrap();
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw_http(&mock.base_url(), &request);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("from a plain test"), "{response}");
    let requests = mock.wait_for_requests_blocking(PATIENCE, |requests| requests.len() == 1).unwrap();
    assert_eq!(requests[0].headers["host"], "mock");
    mock.reset_blocking();
    assert!(mock.requests_blocking().is_empty());
}

/// The binary started by a test, killed when the test ends however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_announces_its_address_and_serves() {
    let binary = env!("CARGO_BIN_EXE_mock-llm");
    let help = std::process::Command::new(binary).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8(help.stdout).unwrap().contains("/_mock/script"));
    let refused = std::process::Command::new(binary).args(["--port", "x"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));

    let mut child = Running(
        std::process::Command::new(binary)
            .args(["--port", "0", "--reply", "from the binary", "--workers", "1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base_url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("announced {line:?}")).to_owned();
    let request = "GET /v1/models HTTP/1.1\r\nhost: mock\r\nconnection: close\r\n\r\n";
    let models = raw_http(&base_url, request);
    let body = r#"{"messages":[]}"#;
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_http(&base_url, &request);
    assert!(models.starts_with("HTTP/1.1 200") && models.contains("\"object\":\"list\""), "{models}");
    assert!(answer.contains("from the binary"), "{answer}");
}
