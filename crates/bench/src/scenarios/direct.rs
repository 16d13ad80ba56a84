//! `direct`: the chat request's shape sent straight to mock-llm, the floor the server's figures are compared to.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Bench, MESSAGE, describe, drain, read_ok};
use crate::load::{Measure, Outcome};
use crate::processes::Usage;
use crate::report::{Latency, Row};
use crate::sse;

/// The model id the server's `fast` alias sends to Groq by default, so that the mock answers alike.
const MODEL: &str = "llama-3.1-8b-instant";

/// The key of the unstreamed direct row at `rate`.
pub fn fixed_key(rate: f64) -> String {
    format!("direct.fixed.{rate}")
}
pub const SATURATION_KEY: &str = "direct.saturation";
pub const STREAM_FIRST_KEY: &str = "direct.stream.first";
pub const STREAM_DONE_KEY: &str = "direct.stream.done";

fn body(stream: bool) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": MESSAGE}], "stream": stream})
}

async fn complete(client: reqwest::Client, url: Arc<str>) -> Outcome {
    let response = read_ok(client.post(&*url).json(&body(false)).send().await).await?;
    drain(response).await?;
    Ok(Measure::default())
}

/// A streamed completion: the first chunk with text, then `[DONE]`.
async fn stream(client: reqwest::Client, url: Arc<str>) -> Outcome {
    let response = read_ok(client.post(&*url).json(&body(true)).send().await).await?;
    let mut parser = sse::Parser::default();
    let mut first = None;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| describe(&err))?;
        for event in parser.push(&chunk) {
            if event.data == "[DONE]" {
                return Ok(Measure { first, server_added: None });
            }
            if first.is_none() && has_content(&event.data) {
                first = Some(Instant::now());
            }
        }
    }
    Err("direct stream ended without [DONE]".to_owned())
}

/// Whether an OpenAI chunk carries text (the first one only announces the role, with empty content).
fn has_content(data: &str) -> bool {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|chunk| chunk.pointer("/choices/0/delta/content").and_then(Value::as_str).map(|t| !t.is_empty()))
        .unwrap_or(false)
}

/// The unstreamed direct run at `rate`, unless this run already has it.
pub async fn ensure_fixed(bench: &mut Bench, rate: f64) -> anyhow::Result<()> {
    let key = fixed_key(rate);
    if bench.row(&key).is_some() {
        return Ok(());
    }
    let (client, url) = (bench.client.clone(), endpoint(bench));
    let (stats, usage) = bench.fixed(rate, move |_| complete(client.clone(), Arc::clone(&url))).await?;
    bench.push(Row::new(&key, "direct", "request", &stats, Latency::Complete).with_usage(&mock_only(usage)));
    Ok(())
}

/// The server takes no part in a direct run: its (idle) memory would only confuse the table.
fn mock_only(usage: Usage) -> Usage {
    Usage { peak_rss_kib: None, server_cpu_percent: None, ..usage }
}

fn endpoint(bench: &Bench) -> Arc<str> {
    Arc::from(format!("{}/v1/chat/completions", bench.mock.base))
}

/// Every direct run the selected scenarios compare with.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let options = bench.options.clone();
    if options.runs("chat") || options.runs("direct") {
        ensure_fixed(bench, options.rate).await?;
        let (client, url) = (bench.client.clone(), endpoint(bench));
        let (stats, usage) = bench.saturated(move |_| complete(client.clone(), Arc::clone(&url))).await?;
        bench.push(
            Row::new(SATURATION_KEY, "direct", "request", &stats, Latency::Complete).with_usage(&mock_only(usage)),
        );
    }
    if options.runs("stream") || options.runs("direct") {
        let (client, url) = (bench.client.clone(), endpoint(bench));
        let (stats, usage) =
            bench.fixed(options.stream_rate, move |_| stream(client.clone(), Arc::clone(&url))).await?;
        let usage = mock_only(usage);
        bench.push(
            Row::new(STREAM_FIRST_KEY, "direct stream", "first content", &stats, Latency::First).with_usage(&usage),
        );
        bench.push(Row::new(STREAM_DONE_KEY, "direct stream", "[DONE]", &stats, Latency::Complete).with_usage(&usage));
    }
    if options.runs("login") {
        ensure_fixed(bench, options.login_chat_rate).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunks_with_text_count_as_content() {
        assert!(!has_content(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#));
        assert!(!has_content(r#"{"choices":[{"delta":{}}]}"#));
        assert!(has_content(r#"{"choices":[{"delta":{"content":" Mock"}}]}"#));
        assert!(!has_content("not json"));
    }
}
