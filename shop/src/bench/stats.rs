//! Percentiles of measured durations.

use std::time::Duration;

/// The `p` quantile (0..=1) of `sorted` by the nearest-rank method; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let d: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_millis(500));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(990));
        assert_eq!(percentile(&d, 0.999), Duration::from_millis(999));
        assert_eq!(percentile(&d, 1.0), Duration::from_millis(1000));
        assert_eq!(percentile(&d[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
