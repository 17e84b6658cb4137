//! The arithmetic every report shares: percentiles and rates.

use std::time::Duration;

/// The `p`-th percentile (0.0..=100.0) of `samples` by the nearest-rank
/// method: the smallest sample with at least `p`% of samples at or below it.
/// Sorts `samples` in place. `None` when there are no samples.
pub fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// Events per second: `count` over `elapsed` (0 if no time passed).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A duration in milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s = ms_list(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(percentile(&mut s, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&mut s, 90.0), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&mut s, 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&mut s, 100.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&mut s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&mut [], 99.0), None);
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
