//! Reports of a profile, in every format `irqtune report --format` writes: `text`, `json`,
//! `csv`, `html`, `prometheus`, `hdrlog`. Each is a pure function of the [`Profile`].

pub mod csv;
pub mod hdrlog;
pub mod html;
pub mod metrics;
pub mod prometheus;
pub mod settings;
pub mod show;
pub mod text;
pub mod tune;

use std::fmt::Write as _;

use irq_ebpf::hist;

use crate::model::{profile::Profile, units::fmt_ns};

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

pub use prometheus::Options;

/// Renders `profile` in `format` (`opts` shape the Prometheus exposition).
pub fn render(profile: &Profile, format: Format, opts: Options) -> Vec<u8> {
    match format {
        Format::Text => text::render(profile).into_bytes(),
        Format::Json => profile.to_json().into_bytes(),
        Format::Csv => csv::render(profile),
        Format::Html => html::render(profile).into_bytes(),
        Format::Prometheus => prometheus::render(profile, opts).into_bytes(),
        Format::Hdrlog => hdrlog::render(profile),
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
