//! Summary statistics for measurements reported by bots and benches
//! (latency percentiles). A leaf module: it imports nothing of ours, so every
//! layer (the media engines, the bot glue, the CLI) can share it without an
//! import cycle.

use serde::Serialize;

/// The 50th, 95th and 99th percentiles of a set of samples, in the samples'
/// own unit (milliseconds for every latency this crate reports).
///
/// Computed with the nearest-rank method (the smallest sample such that at
/// least p % of the samples are less than or equal to it; see
/// <https://en.wikipedia.org/wiki/Percentile#The_nearest-rank_method>).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (any order, NaN sorts last);
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |p: f64| s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Some(Percentiles { p50: at(50.0), p95: at(95.0), p99: at(99.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Percentiles::of(&s), Some(Percentiles { p50: 50.0, p95: 95.0, p99: 99.0 }));
        assert_eq!(Percentiles::of(&[7.0]), Some(Percentiles { p50: 7.0, p95: 7.0, p99: 7.0 }));
        assert_eq!(Percentiles::of(&[]), None);
        // Order of the input does not matter.
        let mut r = s.clone();
        r.reverse();
        assert_eq!(Percentiles::of(&r), Percentiles::of(&s));
    }
}
