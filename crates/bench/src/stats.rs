//! The arithmetic every report shares: percentiles and rates.

use std::time::Duration;

/// The `p`-th percentile (0.0..=100.0) of `sorted` by the nearest-rank
/// method: the smallest value with at least p% of the samples at or below it.
/// `None` for no samples. `sorted` must be in ascending order.
pub fn percentile_sorted<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: ceil(p/100 * n), at least 1, as a 1-based index.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// [`percentile_sorted`] for samples in any order: sorts `samples` in place
/// first.
pub fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    samples.sort_unstable();
    percentile_sorted(samples, p)
}

/// Events per second: `count` over `elapsed` (0 if no time passed).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
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
        p50: percentile_sorted(&samples, 50.0)?,
        p99: percentile_sorted(&samples, 99.0)?,
        max: *samples.last()?,
    })
}

/// A duration in milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Microseconds as a short human string: `850µs`, `12.3ms`.
pub fn micros(us: u64) -> String {
    if us < 1000 { format!("{us}µs") } else { format!("{:.1}ms", us as f64 / 1000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_use_nearest_rank_on_unsorted_durations() {
        let mut s = ms_list(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(percentile(&mut s, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&mut s, 90.0), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&mut s, 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&mut s, 100.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&mut s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&mut [], 99.0), None);
    }

    #[test]
    fn percentile_sorted_uses_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50));
        assert_eq!(percentile_sorted(&v, 99.0), Some(99));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1));
        assert_eq!(percentile_sorted(&[7u64], 99.0), Some(7));
        assert_eq!(percentile_sorted::<u64>(&[], 50.0), None);
        // Ten samples: p99 is the largest, p90 the ninth.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile_sorted(&ten, 99.0), Some(10));
        assert_eq!(percentile_sorted(&ten, 90.0), Some(9));
    }

    #[test]
    fn nearest_rank_rounds_up_on_small_sets() {
        // Ten samples: p50 is the 5th, p99 rounds up to the 10th.
        let samples = [10u64, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
        assert_eq!(percentile_sorted(&samples, 50.0), Some(50));
        assert_eq!(percentile_sorted(&samples, 99.0), Some(1000));
        assert_eq!(percentile_sorted(&samples, 150.0), Some(1000), "clamped");
    }

    #[test]
    fn summarize_sorts_first() {
        let got = summarize(vec![5, 1, 4, 2, 3]).expect("five samples");
        assert_eq!(got, Latency { count: 5, p50: 3, p99: 5, max: 5 });
        assert_eq!(summarize(Vec::new()), None);
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(rate(3, Duration::from_millis(1500)), 2.0);
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.3ms");
        assert_eq!(ms(Duration::from_micros(1_234)), "1.23");
    }
}
