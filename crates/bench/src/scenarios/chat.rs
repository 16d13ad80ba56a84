//! `chat`: unstreamed `POST /chat` at a fixed rate and at saturation, each chat answering one request at a time.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{Bench, MESSAGE, direct, drain, read_ok};
use crate::api::{ChatPool, server_added_of};
use crate::load::{Measure, Outcome, Pending};
use crate::report::{Latency, Row};

/// What an empty pool means: more requests in flight than chats, a limit of the generator, not of the server.
pub const NO_IDLE_CHAT: &str = "bench: no idle chat in the pool (more requests in flight than chats)";

/// One unstreamed message to an idle chat of the pool.
pub async fn send(client: reqwest::Client, url: Arc<str>, pool: ChatPool) -> Outcome {
    let Some(chat) = pool.take() else {
        return Err(NO_IDLE_CHAT.to_owned());
    };
    let body = json!({"chat_id": chat.id, "message": MESSAGE, "model": "fast"});
    let result = async {
        let response = read_ok(client.post(&*url).bearer_auth(&chat.token).json(&body).send().await).await?;
        let server_added = server_added_of(&response);
        drain(response).await?;
        Ok(Measure { first: None, server_added })
    }
    .await;
    pool.give_back(chat);
    result
}

/// The request a run sends, as the load drivers take it.
pub fn op(bench: &Bench, pool: &ChatPool) -> impl Fn(Instant) -> Pending + Clone + Send + use<> {
    let client = bench.client.clone();
    let url: Arc<str> = Arc::from(format!("{}/chat", bench.server.base));
    let pool = pool.clone();
    move |_| Box::pin(send(client.clone(), Arc::clone(&url), pool.clone()))
}

pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let rate = bench.options.rate;
    direct::ensure_fixed(bench, rate).await?;
    let pool = bench.chat_pool(bench.pool_size(rate)).await?;
    let (stats, usage) = bench.fixed(rate, op(bench, &pool)).await?;
    let row = Row::new("chat.fixed", "chat", "request", &stats, Latency::Complete)
        .against(bench.row(&direct::fixed_key(rate)))
        .with_usage(&usage);
    bench.push(row);
    let (stats, usage) = bench.saturated(op(bench, &pool)).await?;
    let row = Row::new("chat.saturation", "chat", "request", &stats, Latency::Complete)
        .against(bench.row(direct::SATURATION_KEY))
        .with_usage(&usage);
    bench.push(row);
    Ok(())
}
