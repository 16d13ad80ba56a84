//! What every scenario shares: the running processes, the client, the users, and runs measured with the server's RSS.

pub mod chat;
pub mod direct;
pub mod idle;
pub mod login;
pub mod read;
pub mod soak;
pub mod stream;
pub mod streams;

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use futures_util::StreamExt;

use crate::api::{self, Chat, ChatPool, User};
use crate::args::Options;
use crate::load::{self, Outcome, RunStats};
use crate::processes::{RssSampler, Running, Usage, Watch};
use crate::report::{IdleReport, Row, SoakReport, StreamsReport};

/// The message every chat request sends, and the content of every direct request.
pub const MESSAGE: &str = "How fast can a small model answer a short question like this one?";
/// Requests at a time while creating data.
pub const SETUP_CONCURRENCY: usize = 32;
/// Users the chat pools are spread over.
const POOL_USERS: usize = 8;

/// The state of a bench run.
#[derive(Debug)]
pub struct Bench {
    pub options: Options,
    pub bin_dir: PathBuf,
    pub client: reqwest::Client,
    /// Keeps the SQLite files until the end.
    pub workdir: tempfile::TempDir,
    pub mock: Running,
    pub server: Running,
    pub server_rss: RssSampler,
    /// The users chats are created for.
    pub users: Vec<User>,
    pub open_files_limit: Option<u64>,
    pub rows: Vec<Row>,
    pub streams: Option<StreamsReport>,
    pub idle: IdleReport,
    pub soak: Option<SoakReport>,
    pub warnings: Vec<String>,
}

impl Bench {
    /// Registers the pool users once.
    pub async fn ensure_users(&mut self) -> anyhow::Result<()> {
        while self.users.len() < POOL_USERS {
            let user = api::signup(&self.client, &self.server.base, "pool").await?;
            self.users.push(user);
        }
        Ok(())
    }

    /// `size` fresh chats spread over the pool users.
    pub async fn chats(&mut self, size: usize) -> anyhow::Result<Vec<Chat>> {
        self.ensure_users().await?;
        api::create_chats(&self.client, &self.server.base, &self.users, size, SETUP_CONCURRENCY).await
    }

    /// A pool of `size` fresh chats (fresh, so that every scenario starts from the same short history).
    pub async fn chat_pool(&mut self, size: usize) -> anyhow::Result<ChatPool> {
        Ok(ChatPool::new(self.chats(size).await?))
    }

    /// How many chats a pool needs: every request in flight holds one, so enough for two seconds of the rate (a
    /// server stalling longer than that shows up as "no idle chat" errors, which the report names). The chats take
    /// turns, so each one's history grows slowly.
    pub fn pool_size(&self, rate: f64) -> usize {
        ((2.0 * rate).ceil() as usize).max(self.options.concurrency * 2).max(256)
    }

    /// An open-loop run, with what the processes used.
    pub async fn fixed<F, Fut>(&mut self, rate: f64, op: F) -> anyhow::Result<(RunStats, Usage)>
    where
        F: Fn(Instant) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let watch = self.watch();
        let stats = load::fixed_rate(rate, self.options.warmup, self.options.duration, op).await;
        let usage = self.usage(&watch)?;
        Ok((stats, usage))
    }

    /// Starts watching the processes' resources for a run.
    pub fn watch(&self) -> Watch {
        self.server_rss.reset();
        Watch::start(self.server.pid(), self.mock.pid())
    }

    /// What the processes used since `watch`; fails if the server died meanwhile.
    pub fn usage(&mut self, watch: &Watch) -> anyhow::Result<Usage> {
        let usage = watch.finish(self.server_rss.peak_kib());
        self.server.check_alive()?;
        Ok(usage)
    }

    /// A closed-loop run at `--concurrency`, with what the processes used.
    pub async fn saturated<F, Fut>(&mut self, op: F) -> anyhow::Result<(RunStats, Usage)>
    where
        F: Fn(Instant) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let watch = self.watch();
        let stats = load::saturation(self.options.concurrency, self.options.warmup, self.options.duration, op).await;
        let usage = self.usage(&watch)?;
        Ok((stats, usage))
    }

    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.key == key)
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }
}

/// A transport error with its causes (reqwest's own message is only "error sending request").
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a whole answer; non-2xx is an error naming the status and the start of the body.
pub async fn read_ok(response: Result<reqwest::Response, reqwest::Error>) -> Result<reqwest::Response, String> {
    let response = response.map_err(|err| describe(&err))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!("HTTP {}: {}", status.as_u16(), api::truncate(&body)))
}

/// Drains a body, failing on a transport error mid-way.
pub async fn drain(response: reqwest::Response) -> Result<(), String> {
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        chunk.map_err(|err| describe(&err))?;
    }
    Ok(())
}
