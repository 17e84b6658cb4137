//! The arithmetic every report shares: percentiles and rates.

use std::time::Duration;

/// The `p`-th percentile (0.0..=100.0) of `sorted` by the nearest-rank
/// method: the smallest value with at least p% of the samples at or below it.
/// `None` for no samples. `sorted` must be in ascending order.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: ceil(p/100 * n), at least 1, as a 1-based index.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Events per second over `elapsed` (0 for an empty interval).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Microseconds as a short human string: `850µs`, `12.3ms`.
pub fn micros(us: u64) -> String {
    if us < 1000 { format!("{us}µs") } else { format!("{:.1}ms", us as f64 / 1000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten samples: p99 is the largest, p90 the ninth.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10));
        assert_eq!(percentile(&ten, 90.0), Some(9));
    }

    #[test]
    fn rate_is_per_second() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn micros_reads_well() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.3ms");
    }
}
