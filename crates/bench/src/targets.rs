//! The project's performance targets, each judged PASS or MISS from the figures this run measured.

use serde::Serialize;

use crate::args::Options;
use crate::report::{IdleReport, Row, SoakReport, StreamsReport};

/// One target's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target: String,
    /// The measured figure(s), as text for the table.
    pub measured: String,
    /// The figure compared with the limit, when there is one.
    pub value: Option<f64>,
    pub limit: f64,
    pub pass: bool,
}

impl Verdict {
    pub fn result(&self) -> &'static str {
        if self.pass { "PASS" } else { "MISS" }
    }
}

fn find<'a>(rows: &'a [Row], key: &str) -> Option<&'a Row> {
    rows.iter().find(|row| row.key == key)
}

fn unmeasured(target: String, limit: f64) -> Verdict {
    Verdict { target, measured: "not measured".to_owned(), value: None, limit, pass: false }
}

fn at_most(target: String, value: Option<f64>, limit: f64, unit: &str) -> Verdict {
    match value {
        Some(value) => {
            Verdict { target, measured: format!("{value:.3} {unit}"), value: Some(value), limit, pass: value <= limit }
        }
        None => unmeasured(target, limit),
    }
}

fn at_least_rate(target: String, row: Option<&Row>, limit: f64) -> Verdict {
    match row {
        Some(row) => Verdict {
            target,
            measured: format!("{:.0} req/s ({} errors)", row.achieved_rate, row.errors),
            value: Some(row.achieved_rate),
            limit,
            pass: row.achieved_rate >= limit && row.errors == 0,
        },
        None => unmeasured(target, limit),
    }
}

/// The largest RSS slope, either way, that counts as flat.
const FLAT_MB_PER_MIN: f64 = 0.5;

/// No errors, and memory neither growing nor shrinking by more than [`FLAT_MB_PER_MIN`] after the warm-up.
fn soak_verdict(soak: Option<&SoakReport>) -> Verdict {
    // No `|x|` for the absolute value: a `|` would end the Markdown table's cell.
    let target = format!("soak: no errors and RSS flat (slope within ±{FLAT_MB_PER_MIN} MB/min)");
    match soak {
        Some(soak) => match soak.slope_mb_per_min {
            Some(slope) => Verdict {
                target,
                measured: format!("{} errors, slope {slope:+.3} MB/min", soak.errors),
                value: Some(slope),
                limit: FLAT_MB_PER_MIN,
                pass: soak.errors == 0 && slope.abs() <= FLAT_MB_PER_MIN,
            },
            None => Verdict {
                measured: format!("{} errors, too few RSS samples for a slope", soak.errors),
                ..unmeasured(target, FLAT_MB_PER_MIN)
            },
        },
        None => unmeasured(target, FLAT_MB_PER_MIN),
    }
}

/// Judges every target whose scenario was run.
pub fn evaluate(
    options: &Options,
    rows: &[Row],
    streams: Option<&StreamsReport>,
    idle: Option<&IdleReport>,
    soak: Option<&SoakReport>,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if options.runs("chat") {
        let target = format!("chat at fixed {:.0} req/s: added p99 ≤ 1 ms, zero errors", options.rate);
        verdicts.push(match find(rows, "chat.fixed") {
            Some(row) if row.added_p99_ms.is_some() => {
                let added = row.added_p99_ms.unwrap_or(f64::INFINITY);
                Verdict {
                    target,
                    measured: format!("added p99 {added:+.3} ms, {} errors", row.errors),
                    value: Some(added),
                    limit: 1.0,
                    pass: added <= 1.0 && row.errors == 0,
                }
            }
            _ => unmeasured(target, 1.0),
        });
        verdicts.push(at_least_rate(
            "chat at saturation ≥ 3,000 req/s".to_owned(),
            find(rows, "chat.saturation"),
            3000.0,
        ));
    }
    if options.runs("stream") {
        let row = find(rows, "stream.first");
        let mut verdict = at_most(
            format!("stream at fixed {:.0} req/s: added time-to-first-delta p99 ≤ 1 ms", options.stream_rate),
            row.and_then(|row| row.added_p99_ms),
            1.0,
            "ms",
        );
        if let Some(row) = row {
            verdict.measured.push_str(&format!(", {} errors", row.errors));
            verdict.pass &= row.errors == 0;
        }
        verdicts.push(verdict);
    }
    if options.runs("read") {
        verdicts.push(at_least_rate(
            "read: 100-message chat ≥ 5,000 req/s at saturation".to_owned(),
            find(rows, "read.messages.saturation"),
            5000.0,
        ));
        let row = find(rows, "read.list.fixed");
        let mut verdict = at_most(
            format!("read: chat list of a 10,000-chat user at {:.0} req/s, p99 ≤ 5 ms", options.list_rate),
            row.and_then(|row| row.p99_ms),
            5.0,
            "ms",
        );
        if let Some(row) = row {
            verdict.measured.push_str(&format!(", {} errors", row.errors));
            verdict.pass &= row.errors == 0;
        }
        verdicts.push(verdict);
    }
    if options.runs("login") {
        let target = format!("login flood: chat p99 at {:.0} req/s ≤ 2× without it", options.login_chat_rate);
        let quiet = find(rows, "login.chat.quiet").and_then(|row| row.p99_ms);
        let flood = find(rows, "login.chat.flood").and_then(|row| row.p99_ms);
        verdicts.push(match quiet.zip(flood) {
            Some((quiet, flood)) if quiet > 0.0 => {
                let ratio = flood / quiet;
                Verdict {
                    target,
                    measured: format!("{flood:.3} ms vs {quiet:.3} ms: {ratio:.2}×"),
                    value: Some(ratio),
                    limit: 2.0,
                    pass: ratio <= 2.0,
                }
            }
            _ => unmeasured(target, 2.0),
        });
    }
    if options.runs("streams") {
        let n = options.streams;
        let target = format!("streams: {n} concurrent, zero lost or reordered frames");
        verdicts.push(match streams {
            Some(s) => Verdict {
                target,
                measured: format!(
                    "{} concurrent at peak, {} of {} completed; {} defective, {} missing, {} reordered",
                    s.peak_concurrent,
                    s.completed,
                    s.streams,
                    s.defective_streams,
                    s.missing_frames,
                    s.reordered_frames
                ),
                value: Some(s.peak_concurrent as f64),
                limit: n as f64,
                pass: s.peak_concurrent >= n
                    && s.completed == n
                    && s.defective_streams == 0
                    && s.missing_frames == 0
                    && s.reordered_frames == 0,
            },
            None => unmeasured(target, n as f64),
        });
        verdicts.push(at_most(
            "streams: ≤ 64 KiB server memory per stream".to_owned(),
            streams.and_then(|s| s.kib_per_stream),
            64.0,
            "KiB",
        ));
    }
    if options.runs("idle") {
        let mut verdict =
            at_most("idle: ≤ 30 MB RSS after start-up".to_owned(), idle.and_then(|i| i.after_start_mb), 30.0, "MB");
        if let Some(after) = idle.and_then(|i| i.after_load_mb) {
            verdict.measured.push_str(&format!(" (after all load: {after:.1} MB)"));
        }
        verdicts.push(verdict);
    }
    if options.runs("soak") {
        verdicts.push(soak_verdict(soak));
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soak(errors: u64, slope: Option<f64>) -> SoakReport {
        SoakReport {
            duration_s: 600.0,
            rate: 200.0,
            requests: 120_000,
            errors,
            rss_samples_mb: Vec::new(),
            rss_first_mb: None,
            rss_last_mb: None,
            rss_peak_mb: None,
            slope_after_s: 60.0,
            slope_mb_per_min: slope,
        }
    }

    #[test]
    fn a_soak_passes_without_errors_and_with_a_flat_rss_either_way() {
        assert!(soak_verdict(Some(&soak(0, Some(0.5)))).pass);
        assert!(soak_verdict(Some(&soak(0, Some(-0.4)))).pass);
        assert!(!soak_verdict(Some(&soak(0, Some(0.51)))).pass);
        assert!(!soak_verdict(Some(&soak(0, Some(-0.6)))).pass);
        assert!(!soak_verdict(Some(&soak(1, Some(0.0)))).pass);
        let verdict = soak_verdict(Some(&soak(0, None)));
        assert!(!verdict.pass && verdict.measured.contains("too few"), "{verdict:?}");
        assert_eq!(soak_verdict(None).measured, "not measured");
    }
}
