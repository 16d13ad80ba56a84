//! The results: one row per measured run, the Markdown tables and the JSON report.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::args::Options;
use crate::load::{Mode, RunStats};
use crate::processes::Usage;
use crate::stats::{Summary, ms};
use crate::targets::Verdict;

/// Which latency of a run a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// To completion (the end of a stream).
    Complete,
    /// To the first useful piece of a stream.
    First,
}

/// One line of the table: a run, one of its latencies, and the difference to the `direct` run it is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// A stable name targets look rows up by, e.g. `chat.fixed`.
    pub key: String,
    pub scenario: String,
    /// What was timed: `request`, `first delta`, `done`, `login`...
    pub metric: String,
    pub mode: Mode,
    pub offered_rate: Option<f64>,
    pub achieved_rate: f64,
    pub sent: u64,
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// This row's p50/p99 minus its `direct` counterpart's, measured in the same run.
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    /// Which row the added figures are against.
    pub baseline: Option<String>,
    /// The server's own view of its added time, `total - upstream` of `Server-Timing`.
    pub server_timing_added_p50_ms: Option<f64>,
    pub server_timing_added_p99_ms: Option<f64>,
    pub errors: u64,
    pub error_examples: Vec<String>,
    /// The highest VmRSS of the chat-server under test during the run.
    pub peak_rss_mb: Option<f64>,
    /// CPU used during the run (warm-up included), in percent of one core: who had the machine's time.
    pub server_cpu_percent: Option<f64>,
    pub mock_cpu_percent: Option<f64>,
    pub bench_cpu_percent: Option<f64>,
    pub others_cpu_percent: Option<f64>,
}

impl Row {
    pub fn new(key: &str, scenario: &str, metric: &str, stats: &RunStats, latency: Latency) -> Self {
        let summary = pick(stats, latency);
        Self {
            key: key.to_owned(),
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            mode: stats.mode,
            offered_rate: stats.offered_rate(),
            achieved_rate: stats.achieved_rate,
            sent: stats.sent,
            samples: summary.map_or(0, |s| s.count),
            p50_ms: summary.map(|s| ms(s.p50_us)),
            p90_ms: summary.map(|s| ms(s.p90_us)),
            p99_ms: summary.map(|s| ms(s.p99_us)),
            max_ms: summary.map(|s| ms(s.max_us)),
            added_p50_ms: None,
            added_p99_ms: None,
            baseline: None,
            server_timing_added_p50_ms: stats.server_added.map(|s| ms(s.p50_us)),
            server_timing_added_p99_ms: stats.server_added.map(|s| ms(s.p99_us)),
            errors: stats.errors,
            error_examples: stats.error_examples.clone(),
            peak_rss_mb: None,
            server_cpu_percent: None,
            mock_cpu_percent: None,
            bench_cpu_percent: None,
            others_cpu_percent: None,
        }
    }

    /// A row with only a memory reading, for the server at rest.
    pub fn at_rest(key: &str, scenario: &str, metric: &str, rss_kib: Option<u64>) -> Self {
        Self {
            key: key.to_owned(),
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            mode: Mode::Idle,
            offered_rate: None,
            achieved_rate: 0.0,
            sent: 0,
            samples: 0,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            max_ms: None,
            added_p50_ms: None,
            added_p99_ms: None,
            baseline: None,
            server_timing_added_p50_ms: None,
            server_timing_added_p99_ms: None,
            errors: 0,
            error_examples: Vec::new(),
            peak_rss_mb: rss_kib.map(kib_to_mb),
            server_cpu_percent: None,
            mock_cpu_percent: None,
            bench_cpu_percent: None,
            others_cpu_percent: None,
        }
    }

    /// Sets the added figures against `baseline` (a `direct` row).
    pub fn against(mut self, baseline: Option<&Row>) -> Self {
        if let Some(base) = baseline {
            self.added_p50_ms = self.p50_ms.zip(base.p50_ms).map(|(a, b)| a - b);
            self.added_p99_ms = self.p99_ms.zip(base.p99_ms).map(|(a, b)| a - b);
            self.baseline = Some(base.key.clone());
        }
        self
    }

    pub fn with_usage(mut self, usage: &Usage) -> Self {
        self.peak_rss_mb = usage.peak_rss_kib.map(kib_to_mb);
        self.server_cpu_percent = usage.server_cpu_percent;
        self.mock_cpu_percent = usage.mock_cpu_percent;
        self.bench_cpu_percent = usage.bench_cpu_percent;
        self.others_cpu_percent = usage.others_cpu_percent;
        self
    }
}

fn pick(stats: &RunStats, latency: Latency) -> Option<Summary> {
    match latency {
        Latency::Complete => stats.latency,
        Latency::First => stats.first,
    }
}

/// KiB as (decimal) megabytes, the unit of the memory targets.
pub fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1_000_000.0
}

/// The streams scenario's own figures.
#[derive(Debug, Clone, Serialize)]
pub struct StreamsReport {
    pub streams: usize,
    pub ramp_s: f64,
    pub reply_words: usize,
    pub tokens_per_second: f64,
    pub peak_concurrent: usize,
    pub completed: usize,
    /// Streams with any defect: an error, a missing `start` or `done`, a gap or disorder in the ids, or text that
    /// differs from the mock's reply.
    pub defective_streams: usize,
    /// `id`s skipped (a gap of three counts three), summed over streams.
    pub missing_frames: u64,
    /// Events whose id was not above the previous one's.
    pub reordered_frames: u64,
    pub text_mismatches: usize,
    pub rss_before_mb: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub kib_per_stream: Option<f64>,
    pub open_files_limit: Option<u64>,
    pub defect_examples: Vec<String>,
}

/// The soak scenario's own figures: minutes of mixed load, and whether the server's memory stayed flat.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub rate: f64,
    pub requests: u64,
    pub errors: u64,
    /// `[seconds since the start, MB]`, one reading every few seconds.
    pub rss_samples_mb: Vec<(f64, f64)>,
    pub rss_first_mb: Option<f64>,
    pub rss_last_mb: Option<f64>,
    pub rss_peak_mb: Option<f64>,
    /// The samples before this many seconds are warm-up, left out of the slope.
    pub slope_after_s: f64,
    /// The least-squares slope of the samples after the warm-up; `None` with fewer than two.
    pub slope_mb_per_min: Option<f64>,
}

impl SoakReport {
    /// The paragraph printed under the tables.
    pub fn paragraph(&self) -> String {
        let warmup = if self.slope_after_s == 60.0 {
            "the first minute".to_owned()
        } else if self.slope_after_s >= 120.0 && self.slope_after_s % 60.0 == 0.0 {
            format!("the first {:.0} minutes (while caches fill)", self.slope_after_s / 60.0)
        } else {
            format!("the first {:.0} s", self.slope_after_s)
        };
        format!(
            "soak: {} requests over {:.0} s at {:.0} req/s, {} errors; RSS {} → {} MB (peak {}), slope {} MB/min after \
             {warmup}",
            self.requests,
            self.duration_s,
            self.rate,
            self.errors,
            fmt_mb(self.rss_first_mb),
            fmt_mb(self.rss_last_mb),
            fmt_mb(self.rss_peak_mb),
            self.slope_mb_per_min.map_or_else(|| "–".to_owned(), |slope| format!("{slope:+.3}")),
        )
    }
}

/// Server memory at rest.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// After start-up and the setup of the first users, once settled.
    pub after_start_mb: Option<f64>,
    /// After every scenario, once settled.
    pub after_load_mb: Option<f64>,
}

/// Where and on what the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    /// 1, 5 and 15 minute load averages when the run started and when it ended.
    pub load_average_start: Option<[f64; 3]>,
    pub load_average_end: Option<[f64; 3]>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub memory_total_kib: Option<u64>,
}

impl Machine {
    pub fn probe(load_average_start: Option<[f64; 3]>) -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        });
        let memory_total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()))
        });
        Self {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            load_average_start,
            load_average_end: crate::processes::load_average(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_owned()),
            cpu_model,
            memory_total_kib,
        }
    }
}

/// Which build of a binary was measured (the binaries are rebuilt between runs, the commit alone does not say).
#[derive(Debug, Clone, Serialize)]
pub struct Binary {
    pub path: String,
    pub modified: Option<String>,
    pub bytes: Option<u64>,
}

impl Binary {
    pub fn probe(path: &Path) -> Self {
        let metadata = std::fs::metadata(path).ok();
        let modified = metadata
            .as_ref()
            .and_then(|m| m.modified().ok())
            .map(|time| chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        Self { path: path.display().to_string(), modified, bytes: metadata.map(|m| m.len()) }
    }
}

/// The whole JSON report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub timestamp: String,
    pub git_commit: Option<String>,
    pub machine: Machine,
    pub binaries: Vec<Binary>,
    pub options: Options,
    pub open_files_limit: Option<u64>,
    pub elapsed_s: f64,
    pub scenarios: Vec<Row>,
    pub streams: Option<StreamsReport>,
    pub idle: Option<IdleReport>,
    pub soak: Option<SoakReport>,
    pub targets: Vec<Verdict>,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self).context("cannot serialise the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
    }

    /// The Markdown tables: every run, then the targets.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| scenario | mode | offered req/s | achieved req/s | p50 | p90 | p99 | max (ms) | added p50 | added p99 | \
             errors | peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for row in &self.scenarios {
            let mode = match row.mode {
                Mode::Fixed { .. } => "fixed".to_owned(),
                Mode::Saturation { concurrency } => format!("saturation ×{concurrency}"),
                Mode::Idle => "at rest".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} · {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.scenario,
                row.metric,
                mode,
                row.offered_rate.map_or_else(|| "–".to_owned(), |r| format!("{r:.0}")),
                row.achieved_rate,
                fmt_ms(row.p50_ms),
                fmt_ms(row.p90_ms),
                fmt_ms(row.p99_ms),
                fmt_ms(row.max_ms),
                fmt_signed(row.added_p50_ms),
                fmt_signed(row.added_p99_ms),
                row.errors,
                fmt_mb(row.peak_rss_mb),
            );
        }
        out.push_str("\n| target | measured | result |\n|---|---|---|\n");
        for verdict in &self.targets {
            let _ = writeln!(out, "| {} | {} | {} |", verdict.target, verdict.measured, verdict.result());
        }
        if let Some(soak) = &self.soak {
            let _ = writeln!(out, "\n{}", soak.paragraph());
        }
        if !self.warnings.is_empty() {
            out.push('\n');
            for warning in &self.warnings {
                let _ = writeln!(out, "- warning: {warning}");
            }
        }
        out
    }
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.3}") })
}

fn fmt_mb(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |mb| format!("{mb:.1}"))
}

fn fmt_signed(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:+.3}"))
}

/// The current commit, when run inside a git checkout.
pub fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_paragraph_names_every_figure() {
        let mut soak = SoakReport {
            duration_s: 600.0,
            rate: 200.0,
            requests: 120_000,
            errors: 0,
            rss_samples_mb: vec![(0.0, 20.0), (600.0, 21.5)],
            rss_first_mb: Some(20.0),
            rss_last_mb: Some(21.5),
            rss_peak_mb: Some(22.04),
            slope_after_s: 60.0,
            slope_mb_per_min: Some(0.0123),
        };
        assert_eq!(
            soak.paragraph(),
            "soak: 120000 requests over 600 s at 200 req/s, 0 errors; RSS 20.0 → 21.5 MB (peak 22.0), slope +0.012 \
             MB/min after the first minute"
        );
        soak.slope_after_s = 30.0;
        soak.slope_mb_per_min = None;
        assert!(soak.paragraph().ends_with("slope – MB/min after the first 30 s"), "{}", soak.paragraph());
    }
}
