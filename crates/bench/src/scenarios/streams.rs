//! `streams`: N slow streams open at once on a second server over a paced mock, every frame checked, memory measured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::chat::NO_IDLE_CHAT;
use super::{Bench, MESSAGE, SETUP_CONCURRENCY, describe, read_ok};
use crate::api::{self, ChatPool};
use crate::load::{self, Measure, Outcome};
use crate::processes::{self, MockSettings, RssSampler, ServerSettings, Watch};
use crate::report::{Latency, Row, StreamsReport, kib_to_mb};
use crate::sse;

/// The paced mock's speed: one token per 100 ms.
const TOKENS_PER_SECOND: f64 = 10.0;
/// Every stream must still be running this long after the last one started, so that all are open at once.
const OVERLAP: Duration = Duration::from_secs(3);
const USERS: usize = 8;
/// Descriptors a server needs besides one per client connection (listener, database, the few upstream connections).
const FD_MARGIN: usize = 200;
const DEFECT_EXAMPLES: usize = 5;
/// Quiet time before the memory reading the streams are compared with.
const SETTLE: Duration = Duration::from_secs(2);

/// A reply of `words` distinct words (the mock sends one per token), so that a lost or repeated token shows.
pub fn reply_text(words: usize) -> String {
    (1..=words).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ")
}

/// What was wrong with one stream's events, if anything.
#[derive(Debug, Default)]
struct StreamCheck {
    next_id: u64,
    missing: u64,
    reordered: u64,
    first_event: Option<String>,
    last_event: Option<String>,
    text: String,
    problems: Vec<String>,
}

impl StreamCheck {
    fn new() -> Self {
        Self { next_id: 1, ..Self::default() }
    }

    fn event(&mut self, event: &sse::Event) {
        match event.id.as_deref().and_then(|id| id.parse::<u64>().ok()) {
            Some(id) if id == self.next_id => self.next_id += 1,
            Some(id) if id > self.next_id => {
                self.missing += id - self.next_id;
                self.next_id = id + 1;
            }
            Some(_) => self.reordered += 1,
            None => self.problems.push(format!("an event without a numeric id: {:?}", event.id)),
        }
        let name = event.event.clone().unwrap_or_default();
        if name == "delta" {
            match serde_json::from_str::<Value>(&event.data).ok().and_then(|d| d["text"].as_str().map(str::to_owned)) {
                Some(text) => self.text.push_str(&text),
                None => self.problems.push(format!("a delta without text: {}", api::truncate(&event.data))),
            }
        }
        if name == "error" {
            self.problems.push(format!("an error event: {}", api::truncate(&event.data)));
        }
        if self.first_event.is_none() {
            self.first_event = Some(name.clone());
        }
        self.last_event = Some(name);
    }

    /// The stream's problems, compared with the reply the mock was told to send.
    fn finish(mut self, reply: &str) -> Self {
        if self.first_event.as_deref() != Some("start") {
            self.problems.push(format!("first event {:?} instead of start", self.first_event));
        }
        if self.last_event.as_deref() != Some("done") {
            self.problems.push(format!("last event {:?} instead of done", self.last_event));
        }
        if self.text != reply {
            self.problems.push(format!(
                "text differs from the reply ({} bytes instead of {})",
                self.text.len(),
                reply.len()
            ));
        }
        if self.missing > 0 || self.reordered > 0 {
            self.problems.push(format!("{} missing and {} reordered frames", self.missing, self.reordered));
        }
        self
    }
}

/// Findings over every stream.
#[derive(Debug, Default)]
struct Findings {
    completed: usize,
    defective: usize,
    missing: u64,
    reordered: u64,
    text_mismatches: usize,
    examples: Vec<String>,
}

#[derive(Debug)]
struct Tracker {
    reply: String,
    open: AtomicUsize,
    peak: AtomicUsize,
    findings: Mutex<Findings>,
}

impl Tracker {
    fn findings(&self) -> std::sync::MutexGuard<'_, Findings> {
        self.findings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn defect(&self, problem: String) {
        let mut findings = self.findings();
        findings.defective += 1;
        if findings.examples.len() < DEFECT_EXAMPLES {
            findings.examples.push(problem);
        }
    }
}

/// Counts a stream as open while alive.
struct Open<'a>(&'a Tracker);

impl<'a> Open<'a> {
    fn new(tracker: &'a Tracker) -> Self {
        let open = tracker.open.fetch_add(1, Ordering::Relaxed) + 1;
        tracker.peak.fetch_max(open, Ordering::Relaxed);
        Self(tracker)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn one(client: reqwest::Client, url: Arc<str>, pool: ChatPool, tracker: Arc<Tracker>) -> Outcome {
    let Some(chat) = pool.take() else {
        return Err(NO_IDLE_CHAT.to_owned());
    };
    let body = json!({"chat_id": chat.id, "message": MESSAGE, "model": "fast", "stream": true});
    let result = async {
        let response = read_ok(client.post(&*url).bearer_auth(&chat.token).json(&body).send().await).await?;
        let _open = Open::new(&tracker);
        let mut parser = sse::Parser::default();
        let mut check = StreamCheck::new();
        let mut first = None;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| describe(&err))?;
            for event in parser.push(&chunk) {
                if first.is_none() && event.event.as_deref() == Some("delta") {
                    first = Some(Instant::now());
                }
                check.event(&event);
            }
        }
        Ok::<_, String>((first, check.finish(&tracker.reply)))
    }
    .await;
    match result {
        Ok((first, check)) => {
            let mut findings = tracker.findings();
            findings.completed += 1;
            findings.missing += check.missing;
            findings.reordered += check.reordered;
            findings.text_mismatches += usize::from(check.text != tracker.reply);
            drop(findings);
            if check.problems.is_empty() {
                Ok(Measure { first, server_added: None })
            } else {
                let problem = check.problems.join("; ");
                tracker.defect(problem.clone());
                Err(problem)
            }
        }
        Err(problem) => {
            tracker.defect(problem.clone());
            Err(problem)
        }
    }
}

pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let options = bench.options.clone();
    let n = options.streams;
    let words = ((options.ramp + OVERLAP).as_secs_f64() * TOKENS_PER_SECOND).ceil() as usize;
    let reply = reply_text(words);
    // The server reaches the mock over HTTP/2 (h2c, below): one descriptor per client connection, and a few
    // shared upstream connections.
    let needed = n + FD_MARGIN;
    if let Some(limit) = bench.open_files_limit
        && needed as u64 > limit
    {
        let warning = format!(
            "streams: {n} streams need about {needed} open files in chat-server (one per client connection), but \
             the limit is {limit}: some streams may fail for want of descriptors"
        );
        eprintln!("chat-bench: warning: {warning}");
        bench.warnings.push(warning);
    }

    let settings =
        MockSettings { latency_ms: 0, tokens_per_second: Some(TOKENS_PER_SECOND), reply: Some(reply.clone()) };
    let mock = processes::start_mock(&bench.bin_dir, &settings)?;
    let dir = bench.workdir.path().join("streams");
    std::fs::create_dir_all(&dir)?;
    let database_url =
        options.database.clone().unwrap_or_else(|| format!("sqlite://{}", dir.join("streams.db").display()));
    // Many concurrent provider requests multiplexed over a few HTTP/2 connections, as they are with a hosted
    // provider over TLS: HTTP/1.1 would need a descriptor per stream on both sides of the server.
    let config = dir.join("chat.toml");
    std::fs::write(&config, "[providers.groq]\nhttp2_prior_knowledge = true\n")?;
    let mut extra_env = vec![("CONFIG_FILE".to_owned(), config.display().to_string())];
    extra_env.extend(options.server_env.iter().cloned());
    let settings =
        ServerSettings { database_url, dir, mock_base: mock.base.clone(), bcrypt_cost: options.bcrypt_cost, extra_env };
    let mut server = processes::start_server(&bench.bin_dir, &settings)?;
    // Its own client, so that the streams' connections do not linger in the main one's pool.
    let client = api::client()?;
    processes::wait_healthy(&client, &mut server).await?;
    let mut users = Vec::with_capacity(USERS);
    for _ in 0..USERS {
        users.push(api::signup(&client, &server.base, "streams").await?);
    }
    let chats = api::create_chats(&client, &server.base, &users, n, SETUP_CONCURRENCY).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_before = processes::rss_kib(server.pid());
    let sampler = RssSampler::start(server.pid());
    sampler.reset();
    let watch = Watch::start(server.pid(), mock.pid());

    let tracker = Arc::new(Tracker {
        reply,
        open: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        findings: Mutex::new(Findings::default()),
    });
    let pool = ChatPool::new(chats);
    let url: Arc<str> = Arc::from(format!("{}/chat", server.base));
    let rate = n as f64 / options.ramp.as_secs_f64().max(0.001);
    let op = {
        let tracker = Arc::clone(&tracker);
        move |_| one(client.clone(), Arc::clone(&url), pool.clone(), Arc::clone(&tracker))
    };
    let stats = load::fixed_rate(rate, Duration::ZERO, options.ramp, op).await;
    let usage = watch.finish(sampler.peak_kib());
    let peak_kib = usage.peak_rss_kib;
    server.check_alive()?;

    let peak_concurrent = tracker.peak.load(Ordering::Relaxed);
    let findings = tracker.findings();
    let kib_per_stream = rss_before
        .zip(peak_kib)
        .filter(|_| peak_concurrent > 0)
        .map(|(before, peak)| peak.saturating_sub(before) as f64 / peak_concurrent as f64);
    bench.streams = Some(StreamsReport {
        streams: n,
        ramp_s: options.ramp.as_secs_f64(),
        reply_words: words,
        tokens_per_second: TOKENS_PER_SECOND,
        peak_concurrent,
        completed: findings.completed,
        defective_streams: findings.defective,
        missing_frames: findings.missing,
        reordered_frames: findings.reordered,
        text_mismatches: findings.text_mismatches,
        rss_before_mb: rss_before.map(kib_to_mb),
        peak_rss_mb: peak_kib.map(kib_to_mb),
        kib_per_stream,
        open_files_limit: bench.open_files_limit,
        defect_examples: findings.examples.clone(),
    });
    drop(findings);
    bench.push(Row::at_rest("streams.before", "streams", "server before", rss_before));
    bench.push(Row::new("streams.first", "streams", "first delta", &stats, Latency::First).with_usage(&usage));
    bench.push(Row::new("streams.done", "streams", "done", &stats, Latency::Complete).with_usage(&usage));
    drop(server);
    drop(mock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, name: &str, data: &str) -> sse::Event {
        sse::Event { id: Some(id.to_string()), event: Some(name.to_owned()), data: data.to_owned() }
    }

    fn check(events: &[sse::Event], reply: &str) -> StreamCheck {
        let mut check = StreamCheck::new();
        for e in events {
            check.event(e);
        }
        check.finish(reply)
    }

    #[test]
    fn a_whole_stream_in_order_has_no_problems() {
        let events = [
            event(1, "start", "{}"),
            event(2, "delta", r#"{"text":"word1"}"#),
            event(3, "delta", r#"{"text":" word2"}"#),
            event(4, "done", "{}"),
        ];
        let check = check(&events, &reply_text(2));
        assert!(check.problems.is_empty(), "{:?}", check.problems);
    }

    #[test]
    fn gaps_disorder_and_wrong_text_are_counted() {
        let events = [
            event(1, "start", "{}"),
            event(3, "delta", r#"{"text":" word2"}"#),
            event(2, "delta", r#"{"text":"word1"}"#),
            event(6, "done", "{}"),
        ];
        let check = check(&events, &reply_text(2));
        assert_eq!((check.missing, check.reordered), (3, 1));
        assert_eq!(check.problems.len(), 2, "{:?}", check.problems);
    }

    #[test]
    fn a_stream_cut_short_or_ending_in_error_is_defective() {
        let check = check(&[event(1, "start", "{}"), event(2, "error", r#"{"status":504}"#)], "");
        assert_eq!(check.problems.len(), 2, "{:?}", check.problems);
        assert!(check.problems[0].contains(r#"an error event: {"status":504}"#));
        assert!(check.problems[1].contains("instead of done"));
    }
}
