//! Before and after: the measures `irqtune tune` compares, whether a change is worth making
//! (hysteresis: tuning is a process of measurement, and a gain within noise is no gain), and
//! whether the change made things better or clearly worse. Pure.

use serde::Serialize;

use crate::{profile::Profile, report::merged, report::summarize};

/// Flows counted as "the busiest" (by reads).
pub const BUSIEST_FLOWS: usize = 5;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measures {
    /// Mismatched reads / reads over the busiest flows.
    pub mismatch: f64,
    /// Reads of those flows (to tell a measure from noise).
    pub reads: u64,
    pub net_rx_p99_ns: u64,
    pub net_rx_delay_p99_ns: u64,
    /// NET_RX time: busiest CPU / mean over `cpus`.
    pub imbalance: f64,
    pub drops: u64,
    pub squeezes: u64,
    pub net_rx_runs: u64,
}

impl Measures {
    pub fn from_profile(p: &Profile, cpus: &[u32]) -> Measures {
        let mut flows: Vec<_> = p.flows.iter().filter(|f| f.reads() > 0).collect();
        flows.sort_by_key(|f| std::cmp::Reverse(f.reads()));
        flows.truncate(BUSIEST_FLOWS);
        let reads: u64 = flows.iter().map(|f| f.reads()).sum();
        let mism: u64 = flows.iter().map(|f| f.mismatched_reads).sum();
        let net_rx: Vec<_> = p.softirqs.iter().filter(|r| r.vector == "NET_RX").collect();
        let (h, hmax, _) = merged(net_rx.iter().map(|r| &r.handler));
        let (d, dmax, _) = merged(net_rx.iter().map(|r| &r.raise_delay));
        let per_cpu: Vec<f64> = cpus
            .iter()
            .map(|c| {
                net_rx
                    .iter()
                    .filter(|r| r.cpu == *c)
                    .map(|r| r.time_ns as f64)
                    .sum()
            })
            .collect();
        let mean = per_cpu.iter().sum::<f64>() / per_cpu.len().max(1) as f64;
        let max = per_cpu.iter().cloned().fold(0.0, f64::max);
        Measures {
            mismatch: if reads == 0 {
                0.0
            } else {
                mism as f64 / reads as f64
            },
            reads,
            net_rx_p99_ns: summarize(&h, hmax).p99_ns,
            net_rx_delay_p99_ns: summarize(&d, dmax).p99_ns,
            imbalance: if mean > 0.0 { max / mean } else { 1.0 },
            drops: p.proc.softnet.iter().map(|s| s.dropped).sum(),
            squeezes: p.proc.softnet.iter().map(|s| s.time_squeeze).sum(),
            net_rx_runs: net_rx.iter().map(|r| r.count).sum(),
        }
    }
}

/// Thresholds: what counts as noise, and what as clearly worse.
pub const MISMATCH_NOISE: f64 = 0.10;
pub const IMBALANCE_NOISE: f64 = 1.3;
pub const MIN_READS: u64 = 200;

/// Why a change is worth trying, or None when the expected gain is within noise.
pub fn worth_changing(m: &Measures) -> Option<String> {
    let mut why = Vec::new();
    if m.reads >= MIN_READS && m.mismatch > MISMATCH_NOISE {
        why.push(format!(
            "{:.0}% of the busiest flows' reads cross CPUs",
            m.mismatch * 100.0
        ));
    }
    if m.net_rx_runs >= 1000 && m.imbalance > IMBALANCE_NOISE {
        why.push(format!(
            "NET_RX imbalance {:.2} (busiest CPU / mean)",
            m.imbalance
        ));
    }
    if m.drops > 0 || m.squeezes > 0 {
        why.push(format!(
            "{} softnet drops, {} squeezes",
            m.drops, m.squeezes
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub rows: Vec<(String, String, String)>,
    pub worse: Vec<String>,
    pub better: Vec<String>,
}

impl Verdict {
    pub fn keep(&self) -> bool {
        self.worse.is_empty()
    }

    pub fn table(&self) -> String {
        let mut o = format!("  {:<34} {:>14} {:>14}\n", "measure", "before", "after");
        for (k, b, a) in &self.rows {
            o.push_str(&format!("  {k:<34} {b:>14} {a:>14}\n"));
        }
        o
    }
}

/// A latency is clearly worse when it grew by half and by more than 5 us (histogram buckets
/// are up to 25% wide, and short runs move p99 by a bucket or two).
fn latency_worse(b: u64, a: u64) -> bool {
    a as f64 > 1.5 * b as f64 && a > b + 5_000
}

pub fn compare(b: &Measures, a: &Measures) -> Verdict {
    let fmt_ns = crate::report::fmt_ns;
    let mut worse = Vec::new();
    let mut better = Vec::new();
    if a.mismatch > b.mismatch + MISMATCH_NOISE {
        worse.push(format!(
            "mismatch rose from {:.0}% to {:.0}%",
            b.mismatch * 100.0,
            a.mismatch * 100.0
        ));
    } else if a.mismatch + MISMATCH_NOISE < b.mismatch {
        better.push(format!(
            "mismatch fell from {:.0}% to {:.0}%",
            b.mismatch * 100.0,
            a.mismatch * 100.0
        ));
    }
    if latency_worse(b.net_rx_p99_ns, a.net_rx_p99_ns) {
        worse.push(format!(
            "NET_RX p99 handler time {} -> {}",
            fmt_ns(b.net_rx_p99_ns),
            fmt_ns(a.net_rx_p99_ns)
        ));
    }
    if latency_worse(b.net_rx_delay_p99_ns, a.net_rx_delay_p99_ns) {
        worse.push(format!(
            "NET_RX p99 raise delay {} -> {}",
            fmt_ns(b.net_rx_delay_p99_ns),
            fmt_ns(a.net_rx_delay_p99_ns)
        ));
    }
    if a.imbalance > b.imbalance + 0.5 && a.imbalance > IMBALANCE_NOISE {
        worse.push(format!(
            "NET_RX imbalance {:.2} -> {:.2}",
            b.imbalance, a.imbalance
        ));
    } else if a.imbalance + 0.3 < b.imbalance {
        better.push(format!(
            "NET_RX imbalance {:.2} -> {:.2}",
            b.imbalance, a.imbalance
        ));
    }
    let (bd, ad) = (b.drops + b.squeezes, a.drops + a.squeezes);
    if ad > 2 * bd + 100 {
        worse.push(format!("softnet drops+squeezes {bd} -> {ad}"));
    } else if bd > 2 * ad + 100 {
        better.push(format!("softnet drops+squeezes {bd} -> {ad}"));
    }
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let rows = vec![
        (
            "mismatch, busiest flows".into(),
            pct(b.mismatch),
            pct(a.mismatch),
        ),
        (
            "reads, busiest flows".into(),
            b.reads.to_string(),
            a.reads.to_string(),
        ),
        (
            "NET_RX p99 handler time".into(),
            fmt_ns(b.net_rx_p99_ns),
            fmt_ns(a.net_rx_p99_ns),
        ),
        (
            "NET_RX p99 raise-to-entry delay".into(),
            fmt_ns(b.net_rx_delay_p99_ns),
            fmt_ns(a.net_rx_delay_p99_ns),
        ),
        (
            "NET_RX imbalance (max/mean)".into(),
            format!("{:.2}", b.imbalance),
            format!("{:.2}", a.imbalance),
        ),
        (
            "softnet drops".into(),
            b.drops.to_string(),
            a.drops.to_string(),
        ),
        (
            "softnet time squeezes".into(),
            b.squeezes.to_string(),
            a.squeezes.to_string(),
        ),
    ];
    Verdict {
        rows,
        worse,
        better,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mismatch: f64, p99: u64, imbalance: f64) -> Measures {
        Measures {
            mismatch,
            reads: 10_000,
            net_rx_p99_ns: p99,
            net_rx_delay_p99_ns: 2_000,
            imbalance,
            net_rx_runs: 50_000,
            ..Measures::default()
        }
    }

    #[test]
    fn hysteresis_skips_gains_within_noise() {
        assert!(worth_changing(&m(0.05, 10_000, 1.1)).is_none());
        assert!(worth_changing(&m(0.95, 10_000, 1.1))
            .unwrap()
            .contains("95%"));
        assert!(worth_changing(&m(0.0, 10_000, 2.0))
            .unwrap()
            .contains("imbalance"));
        let few = Measures {
            reads: 10,
            ..m(1.0, 0, 1.0)
        };
        assert!(worth_changing(&few).is_none(), "10 reads say nothing");
    }

    #[test]
    fn verdicts() {
        let v = compare(&m(1.0, 20_000, 2.0), &m(0.0, 21_000, 2.0));
        assert!(
            v.keep() && v.better.iter().any(|b| b.contains("mismatch")),
            "{v:?}"
        );
        let v = compare(&m(0.0, 20_000, 1.0), &m(0.5, 20_000, 1.0));
        assert!(!v.keep(), "{v:?}");
        let v = compare(&m(0.0, 20_000, 1.0), &m(0.0, 60_000, 1.0));
        assert!(!v.keep(), "p99 tripled: {v:?}");
        let v = compare(&m(0.0, 20_000, 1.0), &m(0.0, 24_000, 1.0));
        assert!(v.keep(), "within a bucket or two: {v:?}");
    }
}
