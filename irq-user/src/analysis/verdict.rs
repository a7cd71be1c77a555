//! `tune`'s verdict: did the change make the workload worse? Pure.
//!
//! The workload's outcome is what its applications get: the bytes the judged flows read per
//! second, and the delivery-to-read latency (softirq delivery to the application's read).
//! Proxies such as NET_RX handler time per run or imbalance are not outcomes: RFS moves NET_RX
//! onto the readers' CPUs by design, and a run that handles more packets takes longer while
//! costing less per packet. The risks are what can hurt the machine behind the workload's
//! back: a CPU saturated by interrupt work, softnet drops and squeezes.
//!
//! Each side (before, after) is measured in several short windows; a measure is worse only
//! when an exact permutation test says so (p < [`policy::ALPHA`]) *and* the change is beyond
//! its practical margin. A latency rise that comes with a throughput gain is batching (each
//! read takes more data per wake-up), reported as a tradeoff, not as harm.

use std::collections::BTreeMap;

use serde::Serialize;

use irq_ebpf::hist;

use crate::model::profile::Vector;
use crate::{
    analysis::policy,
    analysis::stats,
    model::hist::Hist,
    model::hist::{interpolated_median, merged, summarize, Summary},
    model::profile::Profile,
    model::units::fmt_ns,
};

/// The outcome of the judged flows over one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub secs: f64,
    pub bytes: u64,
    pub reads: u64,
    /// Delivery-to-read of wake-ups (reads of data delivered while the reader waited), all
    /// judged flows and both placements.
    #[serde(skip)]
    pub latency: [u64; hist::BUCKETS],
    /// softnet drops + time squeezes in the window.
    pub drops_squeezes: u64,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            secs: 0.0,
            bytes: 0,
            reads: 0,
            latency: [0; hist::BUCKETS],
            drops_squeezes: 0,
        }
    }
}

impl Outcome {
    pub fn of(p: &Profile) -> Outcome {
        let mut o = Outcome {
            secs: p.duration_secs(),
            ..Outcome::default()
        };
        for f in &p.flows {
            o.bytes += f.read_bytes;
            o.reads += f.reads();
            let d = &f.delivery_to_read;
            for h in [&d.same_cpu, &d.cross_cpu] {
                for (acc, n) in o.latency.iter_mut().zip(h.to_buckets()) {
                    *acc += n;
                }
            }
        }
        o.drops_squeezes = p
            .proc
            .softnet
            .iter()
            .map(|s| s.dropped + s.time_squeeze)
            .sum();
        o
    }

    /// Bytes read per second.
    pub fn throughput(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9)
    }

    /// Median wake-up delivery-to-read latency, when the window has enough samples. The
    /// median, not the mean: a VM's vCPU preemptions put rare millisecond waits into
    /// whichever windows they fall in, and a mean follows them.
    pub fn latency_median_ns(&self) -> Option<f64> {
        let n: u64 = self.latency.iter().sum();
        if n < policy::MIN_LATENCY_SAMPLES {
            return None;
        }
        interpolated_median(&self.latency)
    }
}

/// One of the busiest flows over a side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowOutcome {
    pub label: String,
    pub throughput: f64,
    pub latency: Summary,
}

/// A side's measures over all of its windows: what the table shows, and the risks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measures {
    pub outcome: Outcome,
    /// Delivery-to-read over all judged flows.
    pub latency: Summary,
    /// Every judged flow that read something, busiest (by bytes) first.
    pub flows: Vec<FlowOutcome>,
    /// Mismatched reads / reads over the busiest flows (by reads), and those reads.
    pub mismatch: f64,
    pub reads: u64,
    /// Per allowed CPU: share of time in hardirq + softirq handlers.
    pub irq_share: BTreeMap<u32, f64>,
    pub drops: u64,
    pub squeezes: u64,
    /// NET_RX runs executed by ksoftirqd / NET_RX runs, on the allowed CPUs.
    pub ksoftirqd_share: f64,
    /// NET_RX handler time per packet received, on the allowed CPUs.
    pub net_rx_ns_per_packet: Option<f64>,
    /// NET_RX time: busiest allowed CPU / mean.
    pub imbalance: f64,
    pub net_rx_runs: u64,
}

impl Measures {
    pub fn of(p: &Profile, cpus: &[u32]) -> Measures {
        Measures::of_windows(std::slice::from_ref(p), cpus)
    }

    /// The measures of several windows together (the interleaved windows of one side): every
    /// count summed, every share over their summed duration.
    pub fn of_windows(windows: &[Profile], cpus: &[u32]) -> Measures {
        #[derive(Default)]
        struct Flow {
            reads: u64,
            mismatched: u64,
            bytes: u64,
            wakeups: Vec<Hist>,
        }
        let mut flows: BTreeMap<String, Flow> = BTreeMap::new();
        let mut outcome = Outcome::default();
        let mut irq_ns: BTreeMap<u32, f64> = cpus.iter().map(|&c| (c, 0.0)).collect();
        let mut net_rx_ns_by_cpu: BTreeMap<u32, f64> = cpus.iter().map(|&c| (c, 0.0)).collect();
        let (mut runs, mut ksoft, mut packets) = (0u64, 0u64, 0u64);
        let (mut drops, mut squeezes, mut dur_ns) = (0u64, 0u64, 0u64);
        for p in windows {
            let o = Outcome::of(p);
            outcome.secs += o.secs;
            outcome.bytes += o.bytes;
            outcome.reads += o.reads;
            outcome.drops_squeezes += o.drops_squeezes;
            for (acc, n) in outcome.latency.iter_mut().zip(o.latency) {
                *acc += n;
            }
            for f in &p.flows {
                let e = flows.entry(f.label()).or_default();
                e.reads += f.reads();
                e.mismatched += f.mismatched_reads;
                e.bytes += f.read_bytes;
                e.wakeups.push(f.delivery_to_read.all());
            }
            for (cpu, t) in p
                .hardirqs
                .iter()
                .map(|r| (r.cpu, r.time_ns))
                .chain(p.softirqs.iter().map(|r| (r.cpu, r.time_ns)))
            {
                if let Some(s) = irq_ns.get_mut(&cpu) {
                    *s += t as f64;
                }
            }
            for r in p.softirqs.iter().filter(|r| r.vector == Vector::NetRx) {
                if let Some(t) = net_rx_ns_by_cpu.get_mut(&r.cpu) {
                    *t += r.time_ns as f64;
                    runs += r.count;
                    ksoft += r.ksoftirqd_runs;
                }
            }
            packets += p
                .netdevs
                .iter()
                .filter(|r| cpus.contains(&r.cpu))
                .map(|r| r.packets)
                .sum::<u64>();
            drops += p.proc.softnet.iter().map(|s| s.dropped).sum::<u64>();
            squeezes += p.proc.softnet.iter().map(|s| s.time_squeeze).sum::<u64>();
            dur_ns += p.session.duration_ns;
        }

        let mut by_reads: Vec<&Flow> = flows.values().filter(|f| f.reads > 0).collect();
        by_reads.sort_by_key(|f| std::cmp::Reverse(f.reads));
        by_reads.truncate(policy::BUSIEST_FLOWS);
        let reads: u64 = by_reads.iter().map(|f| f.reads).sum();
        let mism: u64 = by_reads.iter().map(|f| f.mismatched).sum();
        let secs = outcome.secs.max(1e-9);
        let mut by_bytes: Vec<(&String, &Flow)> =
            flows.iter().filter(|(_, f)| f.bytes > 0).collect();
        by_bytes.sort_by_key(|(_, f)| std::cmp::Reverse(f.bytes));
        let flows_out = by_bytes
            .iter()
            .map(|(label, f)| {
                let (b, max, _) = merged(f.wakeups.iter());
                FlowOutcome {
                    label: (*label).clone(),
                    throughput: f.bytes as f64 / secs,
                    latency: summarize(&b, max),
                }
            })
            .collect();
        let dur = dur_ns.max(1) as f64;
        let net_rx_ns: f64 = net_rx_ns_by_cpu.values().sum();
        let mean = net_rx_ns / net_rx_ns_by_cpu.len().max(1) as f64;
        let max_cpu = net_rx_ns_by_cpu.values().cloned().fold(0.0, f64::max);
        let all: Vec<&Hist> = flows.values().flat_map(|f| f.wakeups.iter()).collect();
        let (b, max, _) = merged(all);
        let latency = summarize(&b, max);
        Measures {
            latency,
            outcome,
            flows: flows_out,
            mismatch: if reads == 0 {
                0.0
            } else {
                mism as f64 / reads as f64
            },
            reads,
            irq_share: irq_ns.into_iter().map(|(c, t)| (c, t / dur)).collect(),
            drops,
            squeezes,
            ksoftirqd_share: if runs == 0 {
                0.0
            } else {
                ksoft as f64 / runs as f64
            },
            net_rx_ns_per_packet: (packets > 0).then(|| net_rx_ns / packets as f64),
            imbalance: if mean > 0.0 { max_cpu / mean } else { 1.0 },
            net_rx_runs: runs,
        }
    }

    /// The allowed CPU with the largest interrupt share.
    pub fn busiest_cpu(&self) -> Option<(u32, f64)> {
        self.irq_share
            .iter()
            .map(|(&c, &s)| (c, s))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// One side of the comparison: its windows and the measures over all of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Side {
    pub windows: Vec<Outcome>,
    pub whole: Measures,
}

/// Why a change is worth trying, or None when the expected gain is within noise.
pub fn worth_changing(m: &Measures) -> Option<String> {
    let mut why = Vec::new();
    if m.reads >= policy::MIN_READS && m.mismatch > policy::MISMATCH_NOISE {
        why.push(format!(
            "{:.0}% of the busiest flows' reads cross CPUs",
            m.mismatch * 100.0
        ));
    }
    if m.net_rx_runs >= policy::MIN_NET_RX_RUNS && m.imbalance > policy::IMBALANCE_NOISE {
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

/// A measure compared window by window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Test {
    pub before: f64,
    pub after: f64,
    /// (after - before) / before.
    pub change: f64,
    /// One-sided p-values: after larger, after smaller.
    pub p_up: f64,
    pub p_down: f64,
}

impl Test {
    fn of(before: &[f64], after: &[f64]) -> Option<Test> {
        let (b, a) = (stats::mean(before)?, stats::mean(after)?);
        Some(Test {
            before: b,
            after: a,
            change: if b > 0.0 {
                (a - b) / b
            } else if a > 0.0 {
                f64::INFINITY
            } else {
                0.0
            },
            p_up: stats::p_greater(before, after)?,
            p_down: stats::p_less(before, after)?,
        })
    }

    fn rose(&self, margin: f64) -> bool {
        self.p_up < policy::ALPHA && self.change > margin
    }

    fn fell(&self, margin: f64) -> bool {
        self.p_down < policy::ALPHA && self.change < -margin
    }

    /// A change in either direction that chance explains poorly, whatever its size.
    fn significant(&self) -> bool {
        self.p_up < policy::ALPHA || self.p_down < policy::ALPHA
    }

    fn pct(&self) -> String {
        if self.change.is_finite() {
            format!("{:+.1}%", self.change * 100.0)
        } else {
            "new".into()
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// (measure, before, after, change, p of "worse") for the table.
    pub rows: Vec<[String; 5]>,
    pub worse: Vec<String>,
    pub better: Vec<String>,
    /// Worse on one measure, better on another (kept, said plainly).
    pub tradeoffs: Vec<String>,
    /// Significant changes within their margins, and the mismatch: worth knowing, not part
    /// of the decision.
    pub effects: Vec<String>,
    /// What could not be judged, and why.
    pub unmeasured: Vec<String>,
    /// Windows per side.
    pub windows: (usize, usize),
}

impl Verdict {
    pub fn keep(&self) -> bool {
        self.worse.is_empty()
    }

    pub fn table(&self) -> String {
        let mut o = format!(
            "  {:<38} {:>16} {:>16} {:>8} {:>9}\n",
            "measure", "before", "after", "change", "p(worse)"
        );
        for [k, b, a, c, p] in &self.rows {
            o.push_str(&format!("  {k:<38} {b:>16} {a:>16} {c:>8} {p:>9}\n"));
        }
        o.push_str(&format!(
            "  p(worse): exact one-sided permutation test over {} and {} windows, the chance that a change that made no difference looks this much worse; worse needs p < {} and a change beyond {:.0}% (throughput) or {:.0}% (latency)\n",
            self.windows.0,
            self.windows.1,
            policy::ALPHA,
            policy::THROUGHPUT_MARGIN * 100.0,
            policy::LATENCY_MARGIN * 100.0
        ));
        o
    }

    /// "BETTER (...)", "NO WORSE (...)" or "WORSE (...)".
    pub fn headline(&self) -> String {
        let mut why = if !self.keep() {
            self.worse.clone()
        } else {
            self.better.clone()
        };
        if self.keep() {
            if self.better.is_empty() && !self.effects.iter().any(|e| e.contains("p=")) {
                why.push("the workload's outcome is unchanged within noise".to_string());
            }
            why.extend(self.effects.iter().cloned());
        }
        let word = if !self.keep() {
            "WORSE"
        } else if !self.better.is_empty() {
            "BETTER"
        } else {
            "NO WORSE"
        };
        format!("{word} ({})", why.join("; "))
    }
}

fn mbps(bps: f64) -> String {
    format!("{:.2} MB/s", bps / 1e6)
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Compares the two sides.
pub fn compare(before: &Side, after: &Side) -> Verdict {
    let mut v = Verdict {
        windows: (before.windows.len(), after.windows.len()),
        ..Verdict::default()
    };
    let (bw, aw) = (&before.whole, &after.whole);

    // Throughput.
    let tput = |s: &Side| {
        s.windows
            .iter()
            .map(Outcome::throughput)
            .collect::<Vec<_>>()
    };
    let t = Test::of(&tput(before), &tput(after));
    let read_any = before
        .windows
        .iter()
        .chain(&after.windows)
        .any(|w| w.bytes > 0);
    let mut tput_rose = false;
    match &t {
        Some(t) if read_any => {
            v.rows.push([
                "throughput, judged flows".into(),
                mbps(t.before),
                mbps(t.after),
                t.pct(),
                p_text(t.p_down),
            ]);
            let ps = format!("p={}", p_text(t.p_down.min(t.p_up)));
            let what = format!(
                "{} ({} -> {}, {ps})",
                t.pct(),
                mbps(t.before),
                mbps(t.after)
            );
            if t.fell(policy::THROUGHPUT_MARGIN) {
                v.worse.push(format!("throughput fell {what}"));
            } else if t.rose(policy::THROUGHPUT_MARGIN) {
                tput_rose = true;
                v.better.push(format!("throughput rose {what}"));
            } else if t.significant() {
                v.effects
                    .push(format!("throughput {what}, within the margin"));
            }
        }
        _ => v.unmeasured.push(
            "throughput: the judged flows read nothing in either side (no socket reads seen)"
                .into(),
        ),
    }

    // Delivery-to-read latency of wake-ups, window medians.
    let lat = |s: &Side| {
        s.windows
            .iter()
            .filter_map(Outcome::latency_median_ns)
            .collect::<Vec<_>>()
    };
    let (lb, la) = (lat(before), lat(after));
    match Test::of(&lb, &la) {
        Some(l) if lb.len() >= 2 && la.len() >= 2 => {
            v.rows.push([
                "delivery-to-read, median".into(),
                fmt_ns(l.before as u64),
                fmt_ns(l.after as u64),
                l.pct(),
                p_text(l.p_up),
            ]);
            let ps = format!("p={}", p_text(l.p_up.min(l.p_down)));
            let what = format!(
                "delivery-to-read median {} -> {} ({}, {ps})",
                fmt_ns(l.before as u64),
                fmt_ns(l.after as u64),
                l.pct()
            );
            if l.rose(policy::LATENCY_MARGIN) {
                if tput_rose {
                    v.tradeoffs.push(format!(
                        "{what}: reads wait longer but each takes more data (throughput rose: batching); kept, since the flows get more done. If this workload needs latency more than throughput, undo it"
                    ));
                } else {
                    v.worse.push(format!(
                        "{what} while throughput did not rise"
                    ));
                }
            } else if l.fell(policy::LATENCY_MARGIN) {
                v.better.push(what);
            } else if l.significant() {
                v.effects.push(format!("{what}, within the margin"));
            }
        }
        _ => v.unmeasured.push(format!(
            "delivery-to-read: fewer than 2 windows a side with {} or more wake-ups ({} before, {} after); the flow probes may be off, the flows idle, or their readers always busy (their data queues: throughput is their outcome)",
            policy::MIN_LATENCY_SAMPLES,
            lb.len(),
            la.len()
        )),
    }
    v.rows.push([
        "delivery-to-read p50 / p99".into(),
        format!(
            "{} / {}",
            fmt_ns(bw.latency.p50_ns),
            fmt_ns(bw.latency.p99_ns)
        ),
        format!(
            "{} / {}",
            fmt_ns(aw.latency.p50_ns),
            fmt_ns(aw.latency.p99_ns)
        ),
        String::new(),
        String::new(),
    ]);

    // Risk: a CPU that became saturated by interrupt work.
    for (&cpu, &share) in &aw.irq_share {
        let was = bw.irq_share.get(&cpu).copied().unwrap_or(0.0);
        if share >= policy::SATURATED_IRQ_SHARE && was < policy::SATURATED_IRQ_SHARE {
            v.worse.push(format!(
                "CPU {cpu} became saturated: {:.0}% of its time in hardirq + softirq (was {:.0}%)",
                share * 100.0,
                was * 100.0
            ));
        }
    }
    let busiest = |m: &Measures| {
        m.busiest_cpu()
            .map(|(c, s)| format!("{:.1}% (CPU {c})", s * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    v.rows.push([
        "busiest CPU, hardirq+softirq time".into(),
        busiest(bw),
        busiest(aw),
        String::new(),
        String::new(),
    ]);

    // Risk: drops and squeezes, window by window.
    let ds = |s: &Side| {
        s.windows
            .iter()
            .map(|w| w.drops_squeezes as f64)
            .collect::<Vec<_>>()
    };
    if let Some(d) = Test::of(&ds(before), &ds(after)) {
        v.rows.push([
            "softnet drops + squeezes".into(),
            format!("{} + {}", bw.drops, bw.squeezes),
            format!("{} + {}", aw.drops, aw.squeezes),
            String::new(),
            p_text(d.p_up),
        ]);
        let (b, a) = (bw.drops + bw.squeezes, aw.drops + aw.squeezes);
        if a > b && d.p_up < policy::ALPHA {
            v.worse.push(format!(
                "softnet drops + squeezes {b} -> {a} (p={})",
                p_text(d.p_up)
            ));
        } else if b > a && d.p_down < policy::ALPHA {
            v.better.push(format!(
                "softnet drops + squeezes {b} -> {a} (p={})",
                p_text(d.p_down)
            ));
        }
    }

    // Shown, not judged: the placement and cost figures.
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    v.rows.push([
        "mismatch, busiest flows".into(),
        pct(bw.mismatch),
        pct(aw.mismatch),
        String::new(),
        String::new(),
    ]);
    v.rows.push([
        "reads, busiest flows".into(),
        bw.reads.to_string(),
        aw.reads.to_string(),
        String::new(),
        String::new(),
    ]);
    v.rows.push([
        "NET_RX run in ksoftirqd".into(),
        pct(bw.ksoftirqd_share),
        pct(aw.ksoftirqd_share),
        String::new(),
        String::new(),
    ]);
    let per_packet = |m: &Measures| {
        m.net_rx_ns_per_packet
            .map(|n| fmt_ns(n as u64))
            .unwrap_or_else(|| "-".into())
    };
    v.rows.push([
        "NET_RX time per packet".into(),
        per_packet(bw),
        per_packet(aw),
        String::new(),
        String::new(),
    ]);
    v.rows.push([
        "NET_RX imbalance (max/mean)".into(),
        format!("{:.2}", bw.imbalance),
        format!("{:.2}", aw.imbalance),
        String::new(),
        String::new(),
    ]);
    for (i, f) in aw.flows.iter().enumerate().take(3) {
        let b = bw.flows.iter().find(|x| x.label == f.label);
        v.rows.push([
            format!("flow {}: MB/s, d2r p50", i + 1),
            b.map(|b| format!("{:.2}, {}", b.throughput / 1e6, fmt_ns(b.latency.p50_ns)))
                .unwrap_or_else(|| "-".into()),
            format!("{:.2}, {}", f.throughput / 1e6, fmt_ns(f.latency.p50_ns)),
            String::new(),
            String::new(),
        ]);
    }
    if bw.reads >= policy::MIN_READS && aw.mismatch + policy::MISMATCH_NOISE < bw.mismatch {
        v.effects.push(format!(
            "mismatch {:.0}% -> {:.0}%",
            bw.mismatch * 100.0,
            aw.mismatch * 100.0
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(mbps: f64, latency_us: f64) -> Outcome {
        let mut latency = [0; hist::BUCKETS];
        if latency_us > 0.0 {
            latency[hist::bucket((latency_us * 1e3) as u64)] = 10_000;
        }
        Outcome {
            secs: 1.0,
            bytes: (mbps * 1e6) as u64,
            reads: 10_000,
            latency,
            drops_squeezes: 0,
        }
    }

    fn side(tput: &[f64], lat: &[f64]) -> Side {
        Side {
            windows: tput.iter().zip(lat).map(|(&t, &l)| window(t, l)).collect(),
            whole: Measures {
                reads: 50_000,
                ..Measures::default()
            },
        }
    }

    #[test]
    fn unchanged_outcome_is_kept() {
        let b = side(
            &[12.0, 12.4, 11.8, 12.1, 12.2],
            &[34.0, 36.0, 33.0, 35.0, 34.5],
        );
        let a = side(
            &[12.2, 11.9, 12.3, 12.0, 12.1],
            &[36.0, 38.0, 35.0, 37.5, 36.0],
        );
        let v = compare(&b, &a);
        assert!(v.keep(), "{v:?}");
        assert!(v.better.is_empty());
        assert!(v.headline().starts_with("NO WORSE"), "{}", v.headline());
    }

    #[test]
    fn a_consistent_throughput_fall_beyond_the_margin_is_worse() {
        let b = side(&[100.0, 102.0, 99.0, 101.0, 100.5], &[20.0; 5]);
        let a = side(&[80.0, 82.0, 79.0, 81.0, 80.5], &[20.0; 5]);
        let v = compare(&b, &a);
        assert!(!v.keep(), "{v:?}");
        assert!(v.worse[0].contains("throughput fell"), "{:?}", v.worse);
    }

    #[test]
    fn a_fall_within_the_margin_is_not_harm_however_consistent() {
        let b = side(&[100.0, 100.1, 100.2, 100.3, 100.4], &[20.0; 5]);
        let a = side(&[97.0, 97.1, 97.2, 97.3, 97.4], &[20.0; 5]);
        assert!(compare(&b, &a).keep());
    }

    #[test]
    fn a_significant_change_within_the_margin_is_named_not_hidden() {
        let b = side(&[12.0; 5], &[20.0, 20.5, 19.8, 20.2, 20.1]);
        let a = side(&[12.0; 5], &[12.0, 12.3, 11.9, 12.1, 12.2]);
        let v = compare(&b, &a);
        assert!(v.keep() && v.better.is_empty(), "{v:?}");
        let h = v.headline();
        assert!(
            h.starts_with("NO WORSE")
                && h.contains("delivery-to-read median")
                && !h.contains("unchanged"),
            "{h}"
        );
    }

    #[test]
    fn one_noisy_window_is_not_a_trend() {
        // Four windows equal, one slow window after: not significant at 5%.
        let b = side(&[100.0, 101.0, 99.0, 100.0, 100.5], &[20.0; 5]);
        let a = side(&[100.0, 101.0, 99.5, 100.2, 40.0], &[20.0; 5]);
        let v = compare(&b, &a);
        assert!(v.keep(), "{v:?}");
    }

    #[test]
    fn latency_rise_without_throughput_gain_is_worse() {
        let b = side(&[12.0; 5], &[25.0, 24.0, 26.0, 25.5, 24.5]);
        let a = side(&[12.0; 5], &[40.0, 41.0, 39.0, 42.0, 40.5]);
        let v = compare(&b, &a);
        assert!(!v.keep(), "{v:?}");
        assert!(v.worse[0].contains("delivery-to-read"), "{:?}", v.worse);
    }

    #[test]
    fn latency_rise_with_a_throughput_gain_is_a_tradeoff_and_kept() {
        // Unpaced stream after RFS: twice the bytes, each read taking more (batching).
        let b = side(
            &[83.0, 84.0, 82.0, 83.5, 82.5],
            &[11.6, 11.0, 12.0, 11.5, 11.8],
        );
        let a = side(
            &[176.0, 175.0, 178.0, 174.0, 177.0],
            &[24.4, 25.0, 23.0, 24.0, 26.0],
        );
        let v = compare(&b, &a);
        assert!(v.keep(), "{v:?}");
        assert_eq!(v.tradeoffs.len(), 1, "{v:?}");
        assert!(v.headline().starts_with("BETTER"), "{}", v.headline());
    }

    #[test]
    fn a_saturated_cpu_or_new_drops_is_worse() {
        let b = side(&[12.0; 5], &[25.0; 5]);
        let mut a = side(&[12.0; 5], &[25.0; 5]);
        a.whole.irq_share.insert(1, 0.93);
        let v = compare(&b, &a);
        assert!(
            v.worse.iter().any(|w| w.contains("CPU 1 became saturated")),
            "{v:?}"
        );

        let mut a = side(&[12.0; 5], &[25.0; 5]);
        for w in &mut a.windows {
            w.drops_squeezes = 40;
        }
        a.whole.drops = 200;
        let v = compare(&b, &a);
        assert!(v.worse.iter().any(|w| w.contains("drops")), "{v:?}");
    }

    #[test]
    fn what_cannot_be_measured_is_said() {
        // No reads at all, and no wake-ups (a zero latency records none).
        let b = side(&[0.0; 5], &[0.0; 5]);
        let v = compare(&b, &b.clone());
        assert!(v.keep());
        assert_eq!(v.unmeasured.len(), 2, "{v:?}");
    }

    #[test]
    fn worth_changing_hysteresis() {
        let m = |mismatch: f64, imbalance: f64| Measures {
            mismatch,
            reads: 10_000,
            imbalance,
            net_rx_runs: 50_000,
            ..Measures::default()
        };
        assert!(worth_changing(&m(0.05, 1.1)).is_none());
        assert!(worth_changing(&m(0.95, 1.1)).unwrap().contains("95%"));
        assert!(worth_changing(&m(0.0, 2.0)).unwrap().contains("imbalance"));
        let few = Measures {
            reads: 10,
            ..m(1.0, 1.0)
        };
        assert!(worth_changing(&few).is_none(), "10 reads say nothing");
    }
}
