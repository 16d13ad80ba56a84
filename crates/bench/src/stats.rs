//! Latency summaries: percentiles of recorded durations, in microseconds.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of one set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_us: u32,
    pub p90_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
}

impl Summary {
    /// Sorts `samples` and summarises them; `None` when there are none.
    pub fn of(samples: &mut [u32]) -> Option<Self> {
        samples.sort_unstable();
        Some(Self {
            count: samples.len(),
            p50_us: percentile(samples, 50.0)?,
            p90_us: percentile(samples, 90.0)?,
            p99_us: percentile(samples, 99.0)?,
            max_us: *samples.last()?,
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest value that at least `p` percent of the samples do
/// not exceed (what HdrHistogram and wrk2 report), so p100 is the maximum and no value is interpolated.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A duration in whole microseconds, saturating (a 71-minute latency is not worth a wider type).
pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// Microseconds as milliseconds, for the report.
pub fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 90.0), Some(90));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn p99_hides_one_outlier_in_a_hundred_but_not_in_four() {
        let mut hundred = vec![1_u32; 99];
        hundred.push(1000);
        assert_eq!(Summary::of(&mut hundred).map(|s| (s.p99_us, s.max_us)), Some((1, 1000)));
        let mut few = vec![1_u32, 2, 3, 1000];
        // Four samples: the 99th percentile is the largest one.
        assert_eq!(Summary::of(&mut few).map(|s| s.p99_us), Some(1000));
    }

    #[test]
    fn summary_sorts_its_input() {
        let mut samples = vec![5, 3, 9, 1, 7];
        let summary = Summary::of(&mut samples);
        assert_eq!(summary, Some(Summary { count: 5, p50_us: 5, p90_us: 9, p99_us: 9, max_us: 9 }));
        assert_eq!(Summary::of(&mut []), None);
    }
}
