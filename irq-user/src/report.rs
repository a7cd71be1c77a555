//! The text report of a profiling session: where interrupt and softirq time goes per CPU,
//! latency percentiles, NET_RX per device, flows whose data crosses CPUs, and what the probes
//! could not record.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use irq_ebpf::{hist, Loss, NET_RX_VEC, SOFTIRQ_NAMES};

use crate::{
    probes::{AttachKind, Attached, Disabled},
    snapshot::{merge_hists, Snapshot},
};

/// Percentiles and extremes of one bucketed histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
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

pub struct ReportInput<'a> {
    pub delta: &'a Snapshot,
    pub duration_ns: u64,
    pub attached: &'a [Attached],
    pub disabled: &'a [Disabled],
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

pub fn text(input: &ReportInput) -> String {
    let d = input.delta;
    let secs = input.duration_ns as f64 / 1e9;
    let ncpu = d.nr_cpus();
    let mut out = String::new();
    let _ = writeln!(out, "irqtune profile: {secs:.1} s, {ncpu} CPUs");
    let btf = input
        .attached
        .iter()
        .filter(|a| a.kind == AttachKind::Btf)
        .count();
    let _ = writeln!(
        out,
        "probes: {} attached ({btf} BTF tracepoints, {} classic){}",
        input.attached.len(),
        input.attached.len() - btf,
        if input.disabled.is_empty() {
            String::new()
        } else {
            format!(", {} disabled", input.disabled.len())
        }
    );
    for dis in input.disabled {
        let _ = writeln!(
            out,
            "  disabled {}:{}: {}",
            dis.probe.category, dis.probe.name, dis.reason
        );
    }

    // Per-CPU time.
    let _ = writeln!(out, "\nPer CPU (share of wall time):");
    let _ = writeln!(
        out,
        "  {:>4} {:>9} {:>9} {:>9} {:>10} {:>11}",
        "CPU", "hardirq%", "softirq%", "NET_RX%", "NET_RX runs", "ksoftirqd%"
    );
    for cpu in 0..ncpu {
        let hard: u64 = d
            .irqs
            .iter()
            .map(|s| s.per_cpu.get(cpu).map_or(0, |v| v.total_ns))
            .sum();
        let soft: u64 = d
            .softirqs
            .iter()
            .map(|v| v.get(cpu).map_or(0, |s| s.total_ns))
            .sum();
        let runs: u64 = d
            .softirqs
            .iter()
            .map(|v| v.get(cpu).map_or(0, |s| s.count))
            .sum();
        let ksoft: u64 = d
            .softirqs
            .iter()
            .map(|v| v.get(cpu).map_or(0, |s| s.ksoftirqd_runs))
            .sum();
        let netrx = d.softirqs.get(NET_RX_VEC).and_then(|v| v.get(cpu)).copied();
        let _ = writeln!(
            out,
            "  {:>4} {:>8.2}% {:>8.2}% {:>8.2}% {:>10} {:>10.1}%",
            cpu,
            pct(hard, input.duration_ns),
            pct(soft, input.duration_ns),
            pct(netrx.map_or(0, |s| s.total_ns), input.duration_ns),
            netrx.map_or(0, |s| s.count),
            pct(ksoft, runs),
        );
    }

    // Top IRQs by handler time.
    let mut irqs: Vec<_> = d
        .irqs
        .iter()
        .map(|s| {
            let total: u64 = s.per_cpu.iter().map(|v| v.total_ns).sum();
            let count: u64 = s.per_cpu.iter().map(|v| v.count).sum();
            (s, total, count)
        })
        .filter(|(_, _, count)| *count > 0)
        .collect();
    irqs.sort_by_key(|s| std::cmp::Reverse(s.1));
    let _ = writeln!(out, "\nTop IRQs by handler time:");
    let _ = writeln!(
        out,
        "  {:>5} {:<24} {:>10} {:>9} {:>9} {:>9} {:>9}  per CPU",
        "IRQ", "name", "count", "time", "p50", "p99", "max"
    );
    for (s, total, count) in irqs.iter().take(10) {
        let h = merge_hists(s.per_cpu.iter().map(|v| &v.hist));
        let max = s.per_cpu.iter().map(|v| v.max_ns).max().unwrap_or(0);
        let sum = summarize(&h, max);
        let per_cpu: Vec<String> = s
            .per_cpu
            .iter()
            .enumerate()
            .filter(|(_, v)| v.count > 0)
            .map(|(c, v)| format!("{c}:{}", v.count))
            .collect();
        let _ = writeln!(
            out,
            "  {:>5} {:<24} {:>10} {:>9} {:>9} {:>9} {:>9}  {}",
            s.irq.map_or("-".into(), |n| n.to_string()),
            truncate(&s.name, 24),
            count,
            fmt_ns(*total),
            fmt_ns(sum.p50_ns),
            fmt_ns(sum.p99_ns),
            fmt_ns(sum.max_ns),
            per_cpu.join(" ")
        );
    }
    if irqs.is_empty() {
        let _ = writeln!(out, "  (no device interrupts seen)");
    }

    // Softirq latency per vector and CPU.
    let _ = writeln!(
        out,
        "\nSoftirqs per vector and CPU (handler time; raise-to-entry delay):"
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "vector", "CPU", "runs", "h.p50", "h.p99", "h.max", "d.p50", "d.p99", "d.max", "ksoftd"
    );
    for (vec, per_cpu) in d.softirqs.iter().enumerate() {
        for (cpu, s) in per_cpu.iter().enumerate() {
            if s.count == 0 {
                continue;
            }
            let h = summarize(&s.handler_hist, s.max_ns);
            let dl = summarize(&s.delay_hist, s.delay_max_ns);
            let _ = writeln!(
                out,
                "  {:<8} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.1}%",
                SOFTIRQ_NAMES[vec],
                cpu,
                s.count,
                fmt_ns(h.p50_ns),
                fmt_ns(h.p99_ns),
                fmt_ns(h.max_ns),
                fmt_ns(dl.p50_ns),
                fmt_ns(dl.p99_ns),
                fmt_ns(dl.max_ns),
                pct(s.ksoftirqd_runs, s.count)
            );
        }
    }
    if let Some(netrx) = d.softirqs.get(NET_RX_VEC) {
        let h = merge_hists(netrx.iter().map(|s| &s.handler_hist));
        if h.iter().any(|&n| n > 0) {
            let _ = writeln!(out, "\n  NET_RX handler time, all CPUs:");
            out.push_str(&ascii_distribution(&h, "  "));
        }
        let dl = merge_hists(netrx.iter().map(|s| &s.delay_hist));
        if dl.iter().any(|&n| n > 0) {
            let _ = writeln!(out, "\n  NET_RX raise-to-entry delay, all CPUs:");
            out.push_str(&ascii_distribution(&dl, "  "));
        }
    }

    // NET_RX per device.
    let mut devs: Vec<_> = d
        .netdevs
        .iter()
        .filter(|s| s.per_cpu.iter().any(|v| v.polls + v.rx_packets > 0))
        .collect();
    devs.sort_by_key(|s| std::cmp::Reverse(s.per_cpu.iter().map(|v| v.rx_packets).sum::<u64>()));
    let _ = writeln!(out, "\nNET_RX per device and CPU:");
    let _ = writeln!(
        out,
        "  {:<16} {:>4} {:>9} {:>10} {:>12} {:>12}",
        "device", "CPU", "polls", "exhausted", "packets", "bytes"
    );
    for s in &devs {
        for (cpu, v) in s
            .per_cpu
            .iter()
            .enumerate()
            .filter(|(_, v)| v.polls + v.rx_packets > 0)
        {
            let _ = writeln!(
                out,
                "  {:<16} {:>4} {:>9} {:>10} {:>12} {:>12}",
                s.name, cpu, v.polls, v.budget_exhausted, v.rx_packets, v.rx_bytes
            );
        }
    }
    if devs.is_empty() {
        let _ = writeln!(out, "  (no packets received)");
    }

    // Flows.
    let mut flows: Vec<_> = d.flows.iter().filter(|f| f.reads() > 0).collect();
    flows.sort_by_key(|f| std::cmp::Reverse(f.mismatched_reads()));
    let _ = writeln!(
        out,
        "\nFlows (softirq CPU vs reader CPU), most mismatched reads first:"
    );
    let _ = writeln!(
        out,
        "  {:<5} {:<40} {:<40} {:>8} {:<16} {:>9} {:>6}  deliveries@cpu / reads@cpu",
        "proto", "local", "remote", "pid", "comm", "reads", "mism%"
    );
    for f in flows.iter().take(20) {
        let fmt_map = |m: std::collections::BTreeMap<u32, u64>| {
            m.iter()
                .map(|(c, n)| format!("{c}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "  {:<5} {:<40} {:<40} {:>8} {:<16} {:>9} {:>5.1}%  {}{} / {}",
            format!("{:?}", f.protocol()).to_lowercase(),
            f.local().to_string(),
            f.remote().to_string(),
            f.info.tgid,
            f.comm(),
            f.reads(),
            f.mismatch_ratio() * 100.0,
            fmt_map(f.deliveries_by_cpu()),
            match f.backlog_deliveries() {
                0 => String::new(),
                n => format!(" (+{n} from backlog)"),
            },
            fmt_map(f.reads_by_cpu()),
        );
    }
    if flows.is_empty() {
        let _ = writeln!(out, "  (no TCP/UDP reads seen)");
    }

    // Losses.
    let lost: Vec<String> = [
        Loss::IrqExitWithoutEntry,
        Loss::SoftirqExitWithoutEntry,
        Loss::IrqUnmapped,
        Loss::LookupFailed,
        Loss::NetdevMapFull,
        Loss::FlowMapFull,
    ]
    .into_iter()
    .filter(|&l| d.loss(l) > 0)
    .map(|l| format!("{}={}", l.name(), d.loss(l)))
    .collect();
    let _ = writeln!(
        out,
        "\nProbe losses: {}; flow evictions since load: {}",
        if lost.is_empty() {
            "none".to_string()
        } else {
            lost.join(", ")
        },
        d.flow_evictions()
    );
    out
}

fn truncate(s: &str, n: usize) -> String {
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
