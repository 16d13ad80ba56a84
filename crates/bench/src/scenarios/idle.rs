//! `idle`: the server's memory at rest, once after start-up and once after all the load.

use std::time::Duration;

use super::Bench;
use crate::api;
use crate::processes::rss_kib;
use crate::report::{Row, kib_to_mb};

/// Quiet time before the reading after start-up.
const SETTLE_AFTER_START: Duration = Duration::from_secs(2);
/// Quiet time before the reading after the load (connections closing, buffers returned).
const SETTLE_AFTER_LOAD: Duration = Duration::from_secs(3);

/// After start-up and the registration of the pool users.
pub async fn after_start(bench: &mut Bench) -> anyhow::Result<()> {
    bench.ensure_users().await?;
    tokio::time::sleep(SETTLE_AFTER_START).await;
    let rss = rss_kib(bench.server.pid());
    bench.idle.after_start_mb = rss.map(kib_to_mb);
    bench.push(Row::at_rest("idle.start", "idle", "after start-up", rss));
    Ok(())
}

/// After every other scenario.
pub async fn after_load(bench: &mut Bench) -> anyhow::Result<()> {
    // A new client closes the old one's idle keep-alive connections: "at rest" means no client is connected.
    bench.client = api::client()?;
    tokio::time::sleep(SETTLE_AFTER_LOAD).await;
    bench.server.check_alive()?;
    let rss = rss_kib(bench.server.pid());
    bench.idle.after_load_mb = rss.map(kib_to_mb);
    bench.push(Row::at_rest("idle.end", "idle", "after all load", rss));
    Ok(())
}
