//! `soak`: minutes of mixed load at a fixed rate, the server's RSS read every few seconds to see that it stays flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Bench, chat, read, stream};
use crate::api::{self, Chat, ChatPool};
use crate::load::{self, Pending};
use crate::processes::rss_kib;
use crate::report::{Latency, Row, SoakReport, kib_to_mb};

/// How often the server's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Left out of the slope: the server's pools, caches and allocator arenas fill during the first minute...
const WARMUP: Duration = Duration::from_secs(60);
/// ...and its finished replies are kept this long for clients resuming their events (`STREAM_RESUME_SECONDS`,
/// within a memory budget), so its memory grows by design for that long too.
const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(300);
/// Progress is printed this often, a long run being otherwise silent.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// What a read without a chat to read means (the pool is never empty in practice).
const NO_CHAT: &str = "bench: no chat to read";
/// Replies a chat takes before its conversation ends and a new chat of the same user takes its place, so that the
/// load stays the same all run long (chats that grew without end would make every later request bigger).
const REPLIES_PER_CHAT: u32 = 25;
/// How often ended chats are replaced.
const REFILL_EVERY: Duration = Duration::from_millis(250);

/// What one request of the mix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Unstreamed `POST /chat`.
    Chat,
    /// Streamed `POST /chat`, read to `done`.
    Stream,
    /// `GET /chats/{id}/messages`.
    Messages,
    /// `GET /chats`.
    List,
}

/// Every ten requests, in the order they are sent: five chats, one stream, three message reads and one list, spread
/// out so that no kind comes in bursts.
const ROTATION: [Kind; 10] = [
    Kind::Chat,
    Kind::Messages,
    Kind::Chat,
    Kind::Stream,
    Kind::Chat,
    Kind::Messages,
    Kind::Chat,
    Kind::List,
    Kind::Chat,
    Kind::Messages,
];

/// The kind of the `i`-th request sent.
fn kind(i: u64) -> Kind {
    let at = i % ROTATION.len() as u64;
    ROTATION.get(at as usize).copied().unwrap_or(Kind::Chat)
}

/// Samples the slope needs after the warm-up, at the least.
const SLOPE_SAMPLES: u32 = 3;

/// How long the server's memory fills by design: a minute, and the resume window the server was given.
fn filling(server_env: &[(String, String)]) -> Duration {
    let resume = server_env
        .iter()
        .rev()
        .find(|(key, _)| key == "STREAM_RESUME_SECONDS")
        .and_then(|(_, value)| value.trim().parse().ok())
        .map_or(DEFAULT_RESUME_WINDOW, Duration::from_secs);
    WARMUP + resume
}

/// The part of a run left out of the slope: the time the server's memory fills (see [`filling`]), unless too few
/// samples would follow it (`--quick`'s 60 s soak); then the first half.
fn warmup(duration: Duration, filling: Duration) -> Duration {
    if duration >= filling + SAMPLE_EVERY * (SLOPE_SAMPLES - 1) { filling } else { duration / 2 }
}

/// The least-squares slope of the `(seconds, MB)` samples taken at or after `after_s`, in MB per minute; `None`
/// with fewer than two of them.
fn slope_mb_per_min(samples: &[(f64, f64)], after_s: f64) -> Option<f64> {
    let kept: Vec<(f64, f64)> = samples.iter().copied().filter(|&(t, _)| t >= after_s).collect();
    if kept.len() < 2 {
        return None;
    }
    let n = kept.len() as f64;
    let mean_t = kept.iter().map(|&(t, _)| t).sum::<f64>() / n;
    let mean_mb = kept.iter().map(|&(_, mb)| mb).sum::<f64>() / n;
    let covariance: f64 = kept.iter().map(|&(t, mb)| (t - mean_t) * (mb - mean_mb)).sum();
    let variance: f64 = kept.iter().map(|&(t, _)| (t - mean_t).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance * 60.0)
}

/// Reads the server's RSS now and every [`SAMPLE_EVERY`] until `length` has passed, as `(seconds, MB)`.
async fn sample_rss(pid: u32, length: Duration) -> Vec<(f64, f64)> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = Duration::ZERO;
    while next <= length {
        tokio::time::sleep_until((started + next).into()).await;
        if let Some(kib) = rss_kib(pid) {
            let at = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
            samples.push((at, kib_to_mb(kib)));
            if !next.is_zero() && next.as_secs().is_multiple_of(PROGRESS_EVERY.as_secs()) {
                eprintln!("chat-bench: soak: {at:.0} of {} s, server RSS {:.1} MB", length.as_secs(), kib_to_mb(kib));
            }
        }
        next += SAMPLE_EVERY;
    }
    samples
}

/// The mixed requests as the load driver takes them: the `i`-th one sent is of kind `kind(i)`; the posts take an
/// idle chat from `pool` (which sets it aside after [`REPLIES_PER_CHAT`] replies, for [`refill`] to replace), the
/// reads walk the first `chats` in turn (a chat may be answering meanwhile, as in real use).
fn op(bench: &Bench, chats: Vec<Chat>, pool: &ChatPool) -> impl Fn(Instant) -> Pending + use<> {
    let client = bench.client.clone();
    let base = bench.server.base.clone();
    let chat_url: Arc<str> = Arc::from(format!("{base}/chat"));
    let pool = pool.clone();
    let (sent, reads) = (AtomicU64::new(0), AtomicU64::new(0));
    move |_| {
        let kind = kind(sent.fetch_add(1, Ordering::Relaxed));
        match kind {
            Kind::Chat => Box::pin(chat::send(client.clone(), Arc::clone(&chat_url), pool.clone())),
            Kind::Stream => Box::pin(stream::send(client.clone(), Arc::clone(&chat_url), pool.clone())),
            Kind::Messages | Kind::List => {
                let n = reads.fetch_add(1, Ordering::Relaxed);
                let Some(chat) = chats.get((n % chats.len().max(1) as u64) as usize) else {
                    return Box::pin(async { Err(NO_CHAT.to_owned()) });
                };
                let url = match kind {
                    Kind::Messages => format!("{base}/chats/{}/messages", chat.id),
                    _ => format!("{base}/chats"),
                };
                Box::pin(read::fetch(client.get(url).bearer_auth(&chat.token)))
            }
        }
    }
}

/// Replaces the chats whose conversation ended with new chats of the same users, as they end; a failed creation
/// counts as an error of the soak.
async fn refill(client: reqwest::Client, base: String, pool: ChatPool, errors: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep(REFILL_EVERY).await;
        for ended in pool.retired() {
            match api::create_chat(&client, &base, ended.token).await {
                Ok(chat) => pool.add(vec![chat]),
                Err(err) => {
                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("chat-bench: soak: {err:#}");
                    }
                }
            }
        }
    }
}

pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let (rate, duration) = (bench.options.soak_rate, bench.options.soak_duration);
    let chats = bench.chats(bench.pool_size(rate)).await?;
    let pool = ChatPool::retiring(chats.clone(), REPLIES_PER_CHAT);
    let op = op(bench, chats, &pool);
    let pid = bench.server.pid();
    let watch = bench.watch();
    let refill_errors = Arc::new(AtomicU64::new(0));
    let refill =
        tokio::spawn(refill(bench.client.clone(), bench.server.base.clone(), pool.clone(), Arc::clone(&refill_errors)));
    // No warm-up discarded: every request of the soak counts, errors above all.
    let (stats, samples) =
        tokio::join!(load::fixed_rate(rate, Duration::ZERO, duration, op), sample_rss(pid, duration));
    refill.abort();
    let refill_errors = refill_errors.load(Ordering::Relaxed);
    let usage = bench.usage(&watch)?;
    let after_s = warmup(duration, filling(&bench.options.server_env)).as_secs_f64();
    let peak = samples.iter().map(|&(_, mb)| mb).chain(usage.peak_rss_kib.map(kib_to_mb)).reduce(f64::max);
    bench.soak = Some(SoakReport {
        duration_s: duration.as_secs_f64(),
        rate,
        requests: stats.sent,
        errors: stats.errors + refill_errors,
        rss_first_mb: samples.first().map(|&(_, mb)| mb),
        rss_last_mb: samples.last().map(|&(_, mb)| mb),
        rss_peak_mb: peak,
        slope_after_s: after_s,
        slope_mb_per_min: slope_mb_per_min(&samples, after_s),
        rss_samples_mb: samples,
    });
    bench.push(Row::new("soak.mixed", "soak", "request", &stats, Latency::Complete).with_usage(&usage));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ten_requests_hold_five_chats_one_stream_three_reads_and_one_list() {
        for start in [0, 10, 7, 1_000_003] {
            let window: Vec<Kind> = (start..start + 10).map(kind).collect();
            let count = |k: Kind| window.iter().filter(|&&w| w == k).count();
            assert_eq!(
                [count(Kind::Chat), count(Kind::Stream), count(Kind::Messages), count(Kind::List)],
                [5, 1, 3, 1],
                "from {start}"
            );
        }
        assert_eq!(kind(0), kind(10));
        assert_eq!(kind(3), Kind::Stream);
        assert_eq!(kind(7), Kind::List);
        // No kind twice in a row, even across the end of the rotation.
        assert!((0..20).all(|i| kind(i) != kind(i + 1)));
    }

    #[test]
    fn the_slope_is_fitted_after_the_warm_up_in_mb_per_minute() {
        // 0.01 MB/s from 60 s on, after a warm-up that first climbs then drops.
        let mut samples = vec![(0.0, 10.0), (30.0, 40.0)];
        samples.extend((12..=24).map(|i| {
            let t = f64::from(i) * 5.0;
            (t, 20.0 + 0.01 * t)
        }));
        let slope = slope_mb_per_min(&samples, 60.0).unwrap();
        assert!((slope - 0.6).abs() < 1e-9, "{slope}");
        // Points scattered evenly around a flat line.
        let flat = [(60.0, 20.0), (65.0, 21.0), (70.0, 19.0), (75.0, 19.0), (80.0, 21.0), (85.0, 20.0)];
        let slope = slope_mb_per_min(&flat, 60.0).unwrap();
        assert!(slope.abs() < 1e-9, "{slope}");
        let falling = [(60.0, 30.0), (120.0, 29.0), (180.0, 28.0)];
        assert!((slope_mb_per_min(&falling, 0.0).unwrap() + 1.0).abs() < 1e-9);
    }

    #[test]
    fn too_few_samples_have_no_slope() {
        assert_eq!(slope_mb_per_min(&[], 60.0), None);
        assert_eq!(slope_mb_per_min(&[(0.0, 1.0), (30.0, 2.0), (60.0, 3.0)], 60.0), None);
        assert_eq!(slope_mb_per_min(&[(60.0, 1.0), (60.0, 2.0)], 60.0), None);
    }

    #[test]
    fn a_soak_too_short_for_its_warm_up_keeps_half_of_it_for_the_slope() {
        let minute = Duration::from_secs(60);
        assert_eq!(warmup(Duration::from_secs(600), Duration::from_secs(360)), Duration::from_secs(360));
        // 60, 65 and 70 s: three samples after the first minute.
        assert_eq!(warmup(Duration::from_secs(70), minute), minute);
        assert_eq!(warmup(Duration::from_secs(69), minute), Duration::from_secs_f64(34.5));
        assert_eq!(warmup(Duration::from_secs(60), minute), Duration::from_secs(30));
    }

    #[test]
    fn the_warm_up_covers_the_resume_window_the_server_was_given() {
        assert_eq!(filling(&[]), Duration::from_secs(360));
        let given = |v: &str| vec![("STREAM_RESUME_SECONDS".to_owned(), v.to_owned())];
        assert_eq!(filling(&given("30")), Duration::from_secs(90));
        assert_eq!(filling(&given("nonsense")), Duration::from_secs(360));
    }
}
