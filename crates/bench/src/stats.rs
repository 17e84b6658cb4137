//! The arithmetic every report shares: percentiles of latency samples and
//! rates per second. Small on purpose, and tested on inputs whose answers are
//! known, because a benchmark whose arithmetic is wrong is worse than none.

use std::time::Duration;

/// The nearest-rank percentile of samples already sorted in ascending order:
/// the smallest sample such that at least `p` percent of all samples are less
/// than or equal to it. `p` is clamped to 0..=100; `None` for no samples.
///
/// Nearest rank always returns a value that was really measured (no
/// interpolation), which is what a latency table should show.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    // Rank 0 (p = 0) means the smallest sample.
    let index = rank.max(1) - 1;
    sorted.get(index.min(sorted.len() - 1)).copied()
}

/// `count` events over `elapsed`, per second. Zero elapsed time gives 0.0
/// rather than infinity, so a step that did not run shows as nothing done.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 { 0.0 } else { count as f64 / secs }
}

/// What a latency column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// How many samples.
    pub count: usize,
    /// Median, in the samples' unit.
    pub p50: u64,
    /// 99th percentile: one round trip in a hundred was slower than this.
    pub p99: u64,
    /// The slowest sample.
    pub max: u64,
}

/// Sorts the samples and reads off the percentiles; `None` for no samples.
pub fn summarize(mut samples: Vec<u64>) -> Option<Latency> {
    samples.sort_unstable();
    Some(Latency {
        count: samples.len(),
        p50: percentile(&samples, 50.0)?,
        p99: percentile(&samples, 99.0)?,
        max: *samples.last()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_hundred_are_their_own_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&samples, 0.5), Some(1));
        assert_eq!(percentile(&samples, 150.0), Some(100), "clamped");
    }

    #[test]
    fn nearest_rank_on_small_sets() {
        // Ten samples: p50 is the 5th, p99 rounds up to the 10th.
        let samples = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 90.0), Some(90));
        assert_eq!(percentile(&samples, 99.0), Some(1000));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summarize_sorts_first() {
        let got = summarize(vec![5, 1, 4, 2, 3]).expect("five samples");
        assert_eq!(got, Latency { count: 5, p50: 3, p99: 5, max: 5 });
        assert_eq!(summarize(Vec::new()), None);
    }

    #[test]
    fn rates_per_second() {
        assert_eq!(per_second(500, Duration::from_secs(2)), 250.0);
        assert_eq!(per_second(3, Duration::from_millis(1500)), 2.0);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
    }
}
