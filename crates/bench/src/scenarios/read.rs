//! `read`: the messages of a 100-message chat, and the chat list of a user with 10,000 chats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde_json::Value;

use super::{Bench, MESSAGE, SETUP_CONCURRENCY, drain, read_ok};
use crate::api;
use crate::load::{Measure, Outcome, Pending};
use crate::report::{Latency, Row};

/// Messages in the long chat: each `POST /chat` stores the question and the answer.
const MESSAGES: usize = 100;
/// Chats of the list user.
const LIST_CHATS: usize = 10_000;

/// `GET url` with a token, read to the end.
fn get(client: &reqwest::Client, url: String, token: &str) -> impl Fn(Instant) -> Pending + Clone + Send + use<> {
    let (client, url, token): (_, Arc<str>, Arc<str>) = (client.clone(), Arc::from(url), Arc::from(token));
    move |_| Box::pin(fetch(client.get(&*url).bearer_auth(&token)))
}

/// Sends a `GET` and reads its answer to the end.
pub async fn fetch(request: reqwest::RequestBuilder) -> Outcome {
    drain(read_ok(request.send().await).await?).await?;
    Ok(Measure::default())
}

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let response = client.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", api::truncate(&body));
    }
    Ok(serde_json::from_str(&body)?)
}

pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let base = bench.server.base.clone();
    let rate = bench.options.list_rate;

    bench.ensure_users().await?;
    let owner = bench.users.first().cloned().ok_or_else(|| anyhow!("no pool user"))?;
    let chats = api::create_chats(&bench.client, &base, std::slice::from_ref(&owner), 1, 1).await?;
    let chat = chats.first().ok_or_else(|| anyhow!("no chat was created"))?;
    for _ in 0..MESSAGES / 2 {
        api::send_message(&bench.client, &base, chat, MESSAGE).await?;
    }
    let url = format!("{base}/chats/{}/messages", chat.id);
    let stored = get_json(&bench.client, &url, &owner.token).await?;
    let count = stored.as_array().map_or(0, Vec::len);
    if count != MESSAGES {
        bail!("the long chat has {count} messages instead of {MESSAGES}");
    }
    let (stats, usage) = bench.saturated(get(&bench.client, url.clone(), &owner.token)).await?;
    bench.push(
        Row::new("read.messages.saturation", "read 100 messages", "request", &stats, Latency::Complete)
            .with_usage(&usage),
    );
    let (stats, usage) = bench.fixed(rate, get(&bench.client, url, &owner.token)).await?;
    bench.push(
        Row::new("read.messages.fixed", "read 100 messages", "request", &stats, Latency::Complete).with_usage(&usage),
    );

    let lister = api::signup(&bench.client, &base, "list").await?;
    let started = Instant::now();
    api::create_chats(&bench.client, &base, std::slice::from_ref(&lister), LIST_CHATS, SETUP_CONCURRENCY).await?;
    let creation = started.elapsed();
    let url = format!("{base}/chats");
    let page = get_json(&bench.client, &url, &lister.token).await?;
    let total = page["total"].as_u64().unwrap_or(0);
    if total != LIST_CHATS as u64 {
        bail!("the list user has {total} chats instead of {LIST_CHATS}");
    }
    eprintln!(
        "chat-bench: created {LIST_CHATS} chats in {:.1} s ({:.0}/s)",
        creation.as_secs_f64(),
        LIST_CHATS as f64 / creation.as_secs_f64().max(f64::EPSILON)
    );
    // Let the burst of inserts settle (WAL checkpoints) before measuring reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stats, usage) = bench.fixed(rate, get(&bench.client, url.clone(), &lister.token)).await?;
    bench.push(Row::new("read.list.fixed", "list 10k chats", "request", &stats, Latency::Complete).with_usage(&usage));
    let (stats, usage) = bench.saturated(get(&bench.client, url, &lister.token)).await?;
    bench.push(
        Row::new("read.list.saturation", "list 10k chats", "request", &stats, Latency::Complete).with_usage(&usage),
    );
    Ok(())
}
