//! Histogram maths on the kernel's log-linear buckets (`irq_ebpf::hist`): the lossless form
//! a profile stores ([`Hist`]), summaries (percentiles through HdrHistogram), sums of several
//! histograms and an interpolated median.

use hdrhistogram::Histogram;
use irq_ebpf::hist;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A latency histogram: its summary, the exact sum, and every non-empty bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hist {
    pub summary: Summary,
    /// Sum of all recorded values, ns (exact, not derived from the buckets).
    pub sum_ns: u64,
    /// Non-empty buckets as `[low_ns, high_ns, count]`: values v with low <= v < high.
    /// Buckets are log-linear, 4 per power of two (each at most 25% wide).
    pub buckets: Vec<[u64; 3]>,
}

impl Hist {
    pub fn from_buckets(b: &[u64; hist::BUCKETS], max_ns: u64, sum_ns: u64) -> Hist {
        Hist {
            summary: summarize(b, max_ns),
            sum_ns,
            buckets: b
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(i, &n)| {
                    let (lo, hi) = hist::bucket_range(i);
                    [lo, hi, n]
                })
                .collect(),
        }
    }

    /// Back to the kernel's bucket array.
    pub fn to_buckets(&self) -> [u64; hist::BUCKETS] {
        let mut b = [0u64; hist::BUCKETS];
        for [lo, _, n] in &self.buckets {
            // Saturating: a profile's counts are input, and two entries may name one bucket.
            let i = hist::bucket(*lo);
            b[i] = b[i].saturating_add(*n);
        }
        b
    }

    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0u64, |a, b| a.saturating_add(b[2]))
    }
}

/// Buckets of several histograms added together.
pub fn merged<'a>(hists: impl IntoIterator<Item = &'a Hist>) -> ([u64; hist::BUCKETS], u64, u64) {
    let mut b = [0u64; hist::BUCKETS];
    let (mut max, mut sum) = (0u64, 0u64);
    for h in hists {
        for (i, n) in h.to_buckets().iter().enumerate() {
            b[i] = b[i].saturating_add(*n);
        }
        max = max.max(h.summary.max_ns);
        sum = sum.saturating_add(h.sum_ns);
    }
    (b, max, sum)
}

/// Percentiles and extremes of one bucketed histogram.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Summary {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

/// Turns kernel buckets into an HdrHistogram, each bucket's count at its midpoint (the
/// buckets are at most 25% wide, so a percentile is within about 12% of the true value).
pub fn to_hdr(buckets: &[u64; hist::BUCKETS]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    // The HdrHistogram formats hold a total count up to i64::MAX: counts a recording cannot
    // reach (a hostile profile's) are clamped there rather than made unserialisable.
    let mut room = i64::MAX as u64;
    for (i, &n) in buckets.iter().enumerate() {
        let n = n.min(room);
        if n > 0 {
            let (lo, hi) = hist::bucket_range(i);
            if h.record_n(lo + (hi - lo) / 2, n).is_ok() {
                room -= n;
            }
        }
    }
    h
}

pub fn summarize(buckets: &[u64; hist::BUCKETS], max_ns: u64) -> Summary {
    let h = to_hdr(buckets);
    let q = |q: f64| h.value_at_quantile(q).min(max_ns.max(1));
    Summary {
        count: h.len(),
        p50_ns: q(0.5),
        p90_ns: q(0.9),
        p99_ns: q(0.99),
        p999_ns: q(0.999),
        max_ns,
    }
}

/// The median of bucketed values, placing a bucket's values evenly across it (the kernel's
/// buckets are up to 25% wide; a midpoint would move in steps that large).
pub fn interpolated_median(b: &[u64; hist::BUCKETS]) -> Option<f64> {
    let total: u64 = b.iter().fold(0u64, |a, &n| a.saturating_add(n));
    if total == 0 {
        return None;
    }
    let half = total as f64 / 2.0;
    let mut below = 0.0;
    for (i, &n) in b.iter().enumerate() {
        if n > 0 && below + n as f64 >= half {
            let (lo, hi) = hist::bucket_range(i);
            return Some(lo as f64 + (hi - lo) as f64 * (half - below) / n as f64);
        }
        below += n as f64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles_fall_in_the_right_bucket() {
        let mut b = [0u64; hist::BUCKETS];
        b[hist::bucket(1_000)] = 90;
        b[hist::bucket(100_000)] = 9;
        b[hist::bucket(5_000_000)] = 1;
        let s = summarize(&b, 5_100_000);
        assert_eq!(s.count, 100);
        let within = |v: u64, want: u64| (v as f64 - want as f64).abs() / (want as f64) < 0.15;
        assert!(within(s.p50_ns, 1_000), "{s:?}");
        assert!(within(s.p99_ns, 100_000), "{s:?}");
        assert!(within(s.p999_ns, 5_000_000), "{s:?}");
        assert_eq!(s.max_ns, 5_100_000);
    }

    #[test]
    fn the_median_is_placed_within_its_bucket() {
        let mut b = [0u64; hist::BUCKETS];
        let i = hist::bucket(10_000);
        let (lo, hi) = hist::bucket_range(i);
        b[i] = 100;
        // Half of the bucket's values lie below its middle.
        let m = interpolated_median(&b).unwrap();
        assert!((m - (lo + (hi - lo) / 2) as f64).abs() < 1.0, "{m}");
        // 90 values in a low bucket, 10 in a high one: the median is in the low one.
        b[hist::bucket(100_000)] = 10;
        b[i] = 90;
        let m = interpolated_median(&b).unwrap();
        assert!(m >= lo as f64 && m < hi as f64, "{m}");
        assert_eq!(interpolated_median(&[0; hist::BUCKETS]), None);
    }
}
