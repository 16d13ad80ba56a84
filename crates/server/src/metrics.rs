//! Prometheus metrics: requests by route and status with their latency, provider time, replies, tokens, the pool,
//! memory.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chat_service::ChatService;

use crate::error::ApiError;
use crate::state::AppState;

/// Upper bounds of the latency buckets, in seconds: from a fast read to a long model answer.
const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or under each bucket's bound (not cumulative here; summed when written).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// One request's labels: its method, its route pattern (never the raw path, so the label set stays small), and
/// its status.
type RequestKey = (String, String, u16);

#[derive(Debug, Default)]
struct Recorded {
    requests: BTreeMap<RequestKey, u64>,
    latency: BTreeMap<(String, String), Histogram>,
    /// How long a model provider took, by route and measure (`first_token` for streams, `answer` otherwise).
    provider: BTreeMap<(String, &'static str), Histogram>,
}

/// What the server has answered since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    recorded: Mutex<Recorded>,
}

impl Metrics {
    /// Records one answered request; `upstream` is its provider's time, with whether it was a stream's first token.
    pub fn record(&self, method: &str, route: &str, status: u16, took: Duration, upstream: Option<(Duration, bool)>) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        *recorded.requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        recorded.latency.entry((method.to_owned(), route.to_owned())).or_default().observe(took.as_secs_f64());
        if let Some((upstream, streamed)) = upstream {
            let measure = if streamed { "first_token" } else { "answer" };
            recorded.provider.entry((route.to_owned(), measure)).or_default().observe(upstream.as_secs_f64());
        }
    }

    /// The exposition text (Prometheus format 0.0.4).
    pub fn render(&self, service: &ChatService) -> String {
        let mut out = String::new();
        let recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        header(&mut out, "http_requests_total", "counter", "Requests answered, by method, route and status.");
        for ((method, route, status), count) in &recorded.requests {
            let labels = format!("method=\"{}\",route=\"{}\",status=\"{status}\"", escape(method), escape(route));
            let _ = writeln!(out, "http_requests_total{{{labels}}} {count}");
        }
        header(
            &mut out,
            "http_request_duration_seconds",
            "histogram",
            "Time to answer a request, by method and route.",
        );
        for ((method, route), histogram) in &recorded.latency {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            write_histogram(&mut out, "http_request_duration_seconds", &labels, histogram);
        }
        header(
            &mut out,
            "chat_provider_duration_seconds",
            "histogram",
            "A model provider's time: to the first token of a stream, or to the whole answer.",
        );
        for ((route, measure), histogram) in &recorded.provider {
            let labels = format!("route=\"{}\",measure=\"{measure}\"", escape(route));
            write_histogram(&mut out, "chat_provider_duration_seconds", &labels, histogram);
        }
        drop(recorded);

        let activity = service.activity();
        header(&mut out, "chat_replies_running", "gauge", "Replies being generated now.");
        let _ = writeln!(out, "chat_replies_running {}", activity.running);
        header(&mut out, "chat_replies_total", "counter", "Replies stored since start-up, by final status.");
        for (status, count) in &activity.replies {
            let _ = writeln!(out, "chat_replies_total{{status=\"{status}\"}} {count}");
        }
        let tokens = [("prompt", activity.prompt_tokens), ("completion", activity.completion_tokens)];
        let help = "Tokens of the stored replies, as the providers counted them.";
        write_by(&mut out, ("chat_tokens_total", "counter", help), "kind", &tokens);
        let (connections, idle) = service.database().pool_state();
        let pool = [("busy", u64::from(connections.saturating_sub(idle))), ("idle", u64::from(idle))];
        let help = "The database pool's connections, busy and idle.";
        write_by(&mut out, ("db_pool_connections", "gauge", help), "state", &pool);
        if let Some(rss) = crate::memory::resident_bytes() {
            header(&mut out, "process_resident_memory_bytes", "gauge", "The server process's resident memory.");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        if let Some(heap) = crate::memory::heap_stats() {
            let heap = [("allocated", heap.allocated), ("resident", heap.resident)];
            let help =
                "The server's own heap (jemalloc; SQLite's is apart): allocated, and resident with what is kept free.";
            write_by(&mut out, ("process_heap_bytes", "gauge", help), "state", &heap);
        }
        out
    }
}

/// A metric (name, type, help) with one sample per value of its one label.
fn write_by(out: &mut String, (name, kind, help): (&str, &str, &str), label: &str, samples: &[(&str, u64)]) {
    header(out, name, kind, help);
    for (value, sample) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {sample}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn write_histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", histogram.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus metrics in its text format; 404 here when `METRICS_ADDRESS` serves them on an address of their own.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "Prometheus text format"),
        (status = 404, body = crate::dto::ErrorResponse, description = "Served on METRICS_ADDRESS instead"),
))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.metrics_elsewhere {
        return Err(ApiError::NotFound);
    }
    Ok(exposition(&state))
}

/// `GET /metrics` on the metrics address, which serves nothing else.
pub async fn metrics_only(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state)
}

fn exposition(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(state.metrics.render(&state.service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_are_escaped() {
        let mut histogram = Histogram::default();
        for seconds in [0.0004, 0.002, 0.002, 200.0] {
            histogram.observe(seconds);
        }
        let mut out = String::new();
        write_histogram(&mut out, "x", &format!("route=\"{}\"", escape("/a\"b")), &histogram);
        assert!(out.contains("x_bucket{route=\"/a\\\"b\",le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{route=\"/a\\\"b\",le=\"0.0025\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{route=\"/a\\\"b\",le=\"120\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{route=\"/a\\\"b\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{route=\"/a\\\"b\"} 4\n"), "{out}");
    }
}
