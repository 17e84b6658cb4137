//! Arithmetic shared by the reports: percentiles and rates.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `sorted` by the nearest-rank method:
/// the smallest value with at least `p`% of the samples at or below it.
/// `None` for no samples. `sorted` must be in ascending order.
pub fn percentile_sorted<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Events per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs == 0.0 { 0.0 } else { count as f64 / secs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50));
        assert_eq!(percentile_sorted(&v, 99.0), Some(99));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1));
        assert_eq!(percentile_sorted(&[7u32], 99.0), Some(7));
        assert_eq!(percentile_sorted::<u32>(&[], 50.0), None);
        // Ten samples: p99 is the largest, p90 the ninth.
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(
            (percentile_sorted(&ten, 90.0), percentile_sorted(&ten, 99.0)),
            (Some(9), Some(10))
        );
    }

    #[test]
    fn rates() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
