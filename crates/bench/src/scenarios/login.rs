//! `login`: `chat` at a fixed rate, alone and then under a flood of logins, to see what bcrypt does to it.

use std::sync::Arc;
use std::time::Instant;

use super::{Bench, chat, direct, drain, read_ok};
use crate::api;
use crate::load::{self, Measure, Pending};
use crate::report::{Latency, Row};

/// Logins in flight during the flood.
const FLOOD_CONCURRENCY: usize = 16;

fn login_op(client: &reqwest::Client, base: &str, email: &str) -> impl Fn(Instant) -> Pending + Clone + Send + use<> {
    let client = client.clone();
    let url: Arc<str> = Arc::from(format!("{base}/auth/login"));
    let body = Arc::new(api::login_body(email));
    move |_| {
        let request = client.post(&*url).json(&*body);
        Box::pin(async move {
            drain(read_ok(request.send().await).await?).await?;
            Ok(Measure::default())
        })
    }
}

pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let rate = bench.options.login_chat_rate;
    direct::ensure_fixed(bench, rate).await?;
    let base = bench.server.base.clone();
    let flooder = api::signup(&bench.client, &base, "flood").await?;
    let pool = bench.chat_pool(bench.pool_size(rate)).await?;

    let (stats, usage) = bench.fixed(rate, chat::op(bench, &pool)).await?;
    let row = Row::new("login.chat.quiet", "login: chat alone", "request", &stats, Latency::Complete)
        .against(bench.row(&direct::fixed_key(rate)))
        .with_usage(&usage);
    bench.push(row);

    let (warmup, duration) = (bench.options.warmup, bench.options.duration);
    let watch = bench.watch();
    let (chat_stats, flood_stats) = tokio::join!(
        load::fixed_rate(rate, warmup, duration, chat::op(bench, &pool)),
        load::saturation(FLOOD_CONCURRENCY, warmup, duration, login_op(&bench.client, &base, &flooder.email)),
    );
    let usage = bench.usage(&watch)?;
    let row = Row::new("login.chat.flood", "login: chat during flood", "request", &chat_stats, Latency::Complete)
        .against(bench.row(&direct::fixed_key(rate)))
        .with_usage(&usage);
    bench.push(row);
    bench
        .push(Row::new("login.flood", "login: the flood", "login", &flood_stats, Latency::Complete).with_usage(&usage));
    Ok(())
}
