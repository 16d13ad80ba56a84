//! `stream`: streamed `POST /chat` at a fixed rate, timed to the first `delta` and to `done`.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::json;

use super::chat::NO_IDLE_CHAT;
use super::{Bench, MESSAGE, describe, direct, read_ok};
use crate::api::{ChatPool, server_added_of};
use crate::load::{Measure, Outcome, Pending};
use crate::report::{Latency, Row};
use crate::sse;

/// One streamed message to an idle chat of the pool; an `error` event or a stream without `done` is an error.
pub async fn send(client: reqwest::Client, url: Arc<str>, pool: ChatPool) -> Outcome {
    let Some(chat) = pool.take() else {
        return Err(NO_IDLE_CHAT.to_owned());
    };
    let body = json!({"chat_id": chat.id, "message": MESSAGE, "model": "fast", "stream": true});
    let result = async {
        let response = read_ok(client.post(&*url).bearer_auth(&chat.token).json(&body).send().await).await?;
        let server_added = server_added_of(&response);
        let mut parser = sse::Parser::default();
        let mut first = None;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| describe(&err))?;
            for event in parser.push(&chunk) {
                match event.event.as_deref() {
                    Some("delta") if first.is_none() => first = Some(Instant::now()),
                    Some("done") => return Ok(Measure { first, server_added }),
                    Some("error") => return Err(format!("error event: {}", event.data)),
                    _ => {}
                }
            }
        }
        Err("stream ended without done".to_owned())
    }
    .await;
    pool.give_back(chat);
    result
}

fn op(bench: &Bench, pool: &ChatPool) -> impl Fn(Instant) -> Pending + use<> {
    let client = bench.client.clone();
    let url: Arc<str> = Arc::from(format!("{}/chat", bench.server.base));
    let pool = pool.clone();
    move |_| Box::pin(send(client.clone(), Arc::clone(&url), pool.clone()))
}

pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let rate = bench.options.stream_rate;
    let pool = bench.chat_pool(bench.pool_size(rate)).await?;
    let (stats, usage) = bench.fixed(rate, op(bench, &pool)).await?;
    let first = Row::new("stream.first", "stream", "first delta", &stats, Latency::First)
        .against(bench.row(direct::STREAM_FIRST_KEY))
        .with_usage(&usage);
    let done = Row::new("stream.done", "stream", "done", &stats, Latency::Complete)
        .against(bench.row(direct::STREAM_DONE_KEY))
        .with_usage(&usage);
    bench.push(first);
    bench.push(done);
    Ok(())
}
