//! Reports of a profile, in every format `irqtune report --format` writes: `text`, `json`,
//! `csv`, `html`, `prometheus`, `hdrlog`. Each is a pure function of the [`Profile`].

pub mod csv;
pub mod hdrlog;
pub mod html;
pub mod prometheus;
pub mod text;

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use irq_ebpf::hist;

use crate::profile::{Hist, Profile};

/// Output formats of `irqtune report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables, percentiles, ASCII distributions and findings for a terminal.
    Text,
    /// The profile itself.
    Json,
    /// One row per kind, key and CPU, with percentiles.
    Csv,
    /// One self-contained page with inline SVG charts.
    Html,
    /// Prometheus text exposition (histograms, counters, findings).
    Prometheus,
    /// HdrHistogram interval log, one histogram per series.
    Hdrlog,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
            Format::Prometheus => "prom",
            Format::Hdrlog => "hlog",
        }
    }
}

/// Renders `profile` in `format`.
pub fn render(profile: &Profile, format: Format) -> Vec<u8> {
    match format {
        Format::Text => text::render(profile).into_bytes(),
        Format::Json => profile.to_json().into_bytes(),
        Format::Csv => csv::render(profile),
        Format::Html => html::render(profile).into_bytes(),
        Format::Prometheus => prometheus::render(profile).into_bytes(),
        Format::Hdrlog => hdrlog::render(profile),
    }
}

/// Buckets of several histograms added together.
pub fn merged<'a>(hists: impl IntoIterator<Item = &'a Hist>) -> ([u64; hist::BUCKETS], u64, u64) {
    let mut b = [0u64; hist::BUCKETS];
    let (mut max, mut sum) = (0, 0);
    for h in hists {
        for (i, n) in h.to_buckets().iter().enumerate() {
            b[i] += n;
        }
        max = max.max(h.summary.max_ns);
        sum += h.sum_ns;
    }
    (b, max, sum)
}

pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
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
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 {
            let (lo, hi) = hist::bucket_range(i);
            let _ = h.record_n(lo + (hi - lo) / 2, n);
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

/// "1.2ms", "850ns": compact durations for tables.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns}ns"),
        10_000..=9_999_999 => format!("{:.1}us", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// A libbpf-tools style distribution: one line per non-empty bucket.
pub fn ascii_distribution(buckets: &[u64; hist::BUCKETS], indent: &str) -> String {
    let mut out = String::new();
    let max = buckets.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return out;
    }
    let first = buckets.iter().position(|&n| n > 0).unwrap_or(0);
    let last = buckets.iter().rposition(|&n| n > 0).unwrap_or(0);
    for (i, &n) in buckets.iter().enumerate().take(last + 1).skip(first) {
        let (lo, hi) = hist::bucket_range(i);
        let bar = "*".repeat(((n * 40).div_ceil(max)) as usize);
        let _ = writeln!(
            out,
            "{indent}{:>9} .. {:<9} {:>10} |{:<40}|",
            fmt_ns(lo),
            fmt_ns(hi),
            n,
            bar
        );
    }
    out
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "~"
    }
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
    fn formats_durations() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_300), "12.3us");
        assert_eq!(fmt_ns(45_600_000), "45.6ms");
    }

    #[test]
    fn ascii_distribution_scales_bars() {
        let mut b = [0u64; hist::BUCKETS];
        b[10] = 4;
        b[12] = 2;
        let text = ascii_distribution(&b, "");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains(&"*".repeat(40)));
        assert!(lines[2].contains(&format!("|{:<40}|", "*".repeat(20))));
    }
}
