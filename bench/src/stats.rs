//! Percentiles of latency samples, and medians across repetitions.

use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `sorted` in nanoseconds, ascending.
    pub fn of_sorted(sorted: &[u64]) -> Latency {
        if sorted.is_empty() {
            return Latency::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        Latency {
            samples: sorted.len(),
            mean_ms: sum as f64 / sorted.len() as f64 / 1e6,
            p50_ms: ms(quantile(sorted, 0.50)),
            p90_ms: ms(quantile(sorted, 0.90)),
            p99_ms: ms(quantile(sorted, 0.99)),
            p999_ms: ms(quantile(sorted, 0.999)),
            max_ms: ms(sorted[sorted.len() - 1]),
        }
    }

    /// Field-wise median over repetitions.
    pub fn median_of(runs: &[Latency]) -> Latency {
        let m = |f: fn(&Latency) -> f64| median(runs.iter().map(f));
        Latency {
            samples: median(runs.iter().map(|l| l.samples as f64)) as usize,
            mean_ms: m(|l| l.mean_ms),
            p50_ms: m(|l| l.p50_ms),
            p90_ms: m(|l| l.p90_ms),
            p99_ms: m(|l| l.p99_ms),
            p999_ms: m(|l| l.p999_ms),
            max_ms: m(|l| l.max_ms),
        }
    }
}

/// Nearest-rank quantile of an ascending, non-empty slice.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median (mean of the middle two for an even count); 0 for no values.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0].into_iter()), 2.5);
        let l = Latency::of_sorted(&[1_000_000, 2_000_000, 3_000_000]);
        assert_eq!(l.p50_ms, 2.0);
        assert_eq!(l.max_ms, 3.0);
    }
}
