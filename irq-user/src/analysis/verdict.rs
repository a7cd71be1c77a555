//! `tune`'s verdict: did the change make the workload worse? Pure.
//!
//! The workload's outcome is what its applications get: the bytes the judged flows read per
//! second, and the delivery-to-read latency (softirq delivery to the application's read).
//! Proxies such as NET_RX handler time per run or imbalance are not outcomes: RFS moves NET_RX
//! onto the readers' CPUs by design, and a run that handles more packets takes longer while
//! costing less per packet. The risks are what can hurt the machine behind the workload's
//! back: a CPU saturated by interrupt work, receive drops (softnet, NIC) and squeezes.
//!
//! Each side (before, after) is measured in several short windows, and each outcome is
//! judged on its windows against a small practical margin ([`policy::THROUGHPUT_MARGIN`],
//! [`policy::LATENCY_MARGIN`]) with three one-sided permutation tests ([`stats`]): worse
//! beyond the margin, better beyond it, or shown within it (non-inferiority). What none of
//! the three shows is undecided: the trial goes on with more windows, or gives up and says
//! so. A latency rise that comes with a throughput gain beyond its margin is batching (each
//! read takes more data per wake-up): a tradeoff, kept and said.

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
    /// Of those reads, the ones of data whose softirq ran on another CPU.
    pub mismatched: u64,
    /// Delivery-to-read of wake-ups (reads of data delivered while the reader waited), all
    /// judged flows and both placements.
    #[serde(skip)]
    pub latency: [u64; hist::BUCKETS],
    /// Receive drops (softnet backlog, NIC out of rx buffers) + time squeezes in the window.
    pub drops_squeezes: u64,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            secs: 0.0,
            bytes: 0,
            reads: 0,
            mismatched: 0,
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
            o.mismatched += f.mismatched_reads;
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
            .chain(p.proc.nics.iter().map(|n| n.no_buffer()))
            .sum();
        o
    }

    /// Share of the window's reads whose data's softirq ran on another CPU (None: no reads).
    pub fn mismatch(&self) -> Option<f64> {
        (self.reads > 0).then(|| self.mismatched as f64 / self.reads as f64)
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
    /// Softnet backlog drops + NIC no-buffer drops.
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

/// One flow's totals over the windows of a side.
#[derive(Default)]
struct FlowSum {
    reads: u64,
    mismatched: u64,
    bytes: u64,
    wakeups: Vec<Hist>,
}

/// What the windows of one side add up to, on the allowed CPUs.
struct Sums {
    flows: BTreeMap<String, FlowSum>,
    outcome: Outcome,
    irq_ns: BTreeMap<u32, f64>,
    net_rx_ns_by_cpu: BTreeMap<u32, f64>,
    runs: u64,
    ksoft: u64,
    packets: u64,
    drops: u64,
    squeezes: u64,
    dur_ns: u64,
}

impl Sums {
    fn new(cpus: &[u32]) -> Sums {
        Sums {
            flows: BTreeMap::new(),
            outcome: Outcome::default(),
            irq_ns: cpus.iter().map(|&c| (c, 0.0)).collect(),
            net_rx_ns_by_cpu: cpus.iter().map(|&c| (c, 0.0)).collect(),
            runs: 0,
            ksoft: 0,
            packets: 0,
            drops: 0,
            squeezes: 0,
            dur_ns: 0,
        }
    }

    fn add(&mut self, p: &Profile, cpus: &[u32]) {
        let o = Outcome::of(p);
        self.outcome.secs += o.secs;
        self.outcome.bytes += o.bytes;
        self.outcome.reads += o.reads;
        self.outcome.mismatched += o.mismatched;
        self.outcome.drops_squeezes += o.drops_squeezes;
        for (acc, n) in self.outcome.latency.iter_mut().zip(o.latency) {
            *acc += n;
        }
        for f in &p.flows {
            let e = self.flows.entry(f.label()).or_default();
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
            if let Some(s) = self.irq_ns.get_mut(&cpu) {
                *s += t as f64;
            }
        }
        for r in p.softirqs.iter().filter(|r| r.vector == Vector::NetRx) {
            if let Some(t) = self.net_rx_ns_by_cpu.get_mut(&r.cpu) {
                *t += r.time_ns as f64;
                self.runs += r.count;
                self.ksoft += r.ksoftirqd_runs;
            }
        }
        self.packets += p
            .netdevs
            .iter()
            .filter(|r| cpus.contains(&r.cpu))
            .map(|r| r.packets)
            .sum::<u64>();
        self.drops += p.proc.softnet.iter().map(|s| s.dropped).sum::<u64>()
            + p.proc.nics.iter().map(|n| n.no_buffer()).sum::<u64>();
        self.squeezes += p.proc.softnet.iter().map(|s| s.time_squeeze).sum::<u64>();
        self.dur_ns += p.session.duration_ns;
    }

    /// Reads of the busiest flows and the share of them read on another CPU.
    fn busiest_mismatch(&self) -> (u64, f64) {
        let mut by_reads: Vec<&FlowSum> = self.flows.values().filter(|f| f.reads > 0).collect();
        by_reads.sort_by_key(|f| std::cmp::Reverse(f.reads));
        by_reads.truncate(policy::BUSIEST_FLOWS);
        let reads: u64 = by_reads.iter().map(|f| f.reads).sum();
        let mism: u64 = by_reads.iter().map(|f| f.mismatched).sum();
        let share = if reads == 0 {
            0.0
        } else {
            mism as f64 / reads as f64
        };
        (reads, share)
    }

    /// Each flow that moved data, most bytes first: its throughput and latency.
    fn flow_outcomes(&self) -> Vec<FlowOutcome> {
        let secs = self.outcome.secs.max(1e-9);
        let mut by_bytes: Vec<(&String, &FlowSum)> =
            self.flows.iter().filter(|(_, f)| f.bytes > 0).collect();
        by_bytes.sort_by_key(|(_, f)| std::cmp::Reverse(f.bytes));
        by_bytes
            .iter()
            .map(|(label, f)| {
                let (b, max, _) = merged(f.wakeups.iter());
                FlowOutcome {
                    label: (*label).clone(),
                    throughput: f.bytes as f64 / secs,
                    latency: summarize(&b, max),
                }
            })
            .collect()
    }
}

impl Measures {
    pub fn of(p: &Profile, cpus: &[u32]) -> Measures {
        Measures::of_windows(std::slice::from_ref(p), cpus)
    }

    /// The measures of several windows together (the interleaved windows of one side): every
    /// count summed, every share over their summed duration.
    pub fn of_windows(windows: &[Profile], cpus: &[u32]) -> Measures {
        let mut s = Sums::new(cpus);
        for p in windows {
            s.add(p, cpus);
        }
        let (reads, mismatch) = s.busiest_mismatch();
        let dur = s.dur_ns.max(1) as f64;
        let net_rx_ns: f64 = s.net_rx_ns_by_cpu.values().sum();
        let mean = net_rx_ns / s.net_rx_ns_by_cpu.len().max(1) as f64;
        let max_cpu = s.net_rx_ns_by_cpu.values().copied().fold(0.0, f64::max);
        let all: Vec<&Hist> = s.flows.values().flat_map(|f| f.wakeups.iter()).collect();
        let (b, max, _) = merged(all);
        Measures {
            latency: summarize(&b, max),
            flows: s.flow_outcomes(),
            outcome: s.outcome,
            mismatch,
            reads,
            irq_share: s.irq_ns.into_iter().map(|(c, t)| (c, t / dur)).collect(),
            drops: s.drops,
            squeezes: s.squeezes,
            ksoftirqd_share: if s.runs == 0 {
                0.0
            } else {
                s.ksoft as f64 / s.runs as f64
            },
            net_rx_ns_per_packet: (s.packets > 0).then(|| net_rx_ns / s.packets as f64),
            imbalance: if mean > 0.0 { max_cpu / mean } else { 1.0 },
            net_rx_runs: s.runs,
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
    if m.net_rx_runs >= policy::MIN_NET_RX_RUNS && m.ksoftirqd_share > policy::KSOFTIRQD_SHARE {
        why.push(format!(
            "ksoftirqd runs {:.0}% of NET_RX",
            m.ksoftirqd_share * 100.0
        ));
    }
    if m.drops > 0 || m.squeezes > 0 {
        why.push(format!(
            "{} receive drops, {} squeezes",
            m.drops, m.squeezes
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// An outcome of the workload that `tune` judges, and which way is worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Bytes the judged flows' applications read per second: lower is worse.
    Throughput,
    /// Median wake-up delivery-to-read latency: higher is worse.
    WakeUp,
}

impl Measure {
    pub const ALL: [Measure; 2] = [Measure::Throughput, Measure::WakeUp];

    pub fn label(self) -> &'static str {
        match self {
            Measure::Throughput => "throughput, judged flows",
            Measure::WakeUp => "delivery-to-read, median",
        }
    }

    /// The change it may make and still count as no worse (a fraction).
    pub fn margin(self) -> f64 {
        match self {
            Measure::Throughput => policy::THROUGHPUT_MARGIN,
            Measure::WakeUp => policy::LATENCY_MARGIN,
        }
    }

    /// +1 when a larger value is worse, -1 when a smaller one is.
    fn worse_sign(self) -> f64 {
        match self {
            Measure::Throughput => -1.0,
            Measure::WakeUp => 1.0,
        }
    }

    /// The margin as a harm on the log scale: ln(1 + m) for a rise, -ln(1 - m) for a fall.
    fn log_margin(self) -> f64 {
        match self {
            Measure::Throughput => -(1.0 - self.margin()).ln(),
            Measure::WakeUp => (1.0 + self.margin()).ln(),
        }
    }

    /// A harm on the log scale as the fraction of the measure it changes.
    fn as_fraction(self, log_harm: f64) -> f64 {
        match self {
            Measure::Throughput => 1.0 - (-log_harm).exp(),
            Measure::WakeUp => log_harm.exp() - 1.0,
        }
    }

    /// Each window's value (None: the window cannot say; its latency had too few wake-ups).
    fn of(self, w: &Outcome) -> Option<f64> {
        match self {
            // A window in which the flows read nothing is a stall, the worst throughput:
            // floored at 1 byte/s so its logarithm stays finite.
            Measure::Throughput => Some(w.throughput().max(1.0)),
            Measure::WakeUp => w.latency_median_ns().filter(|&ns| ns > 0.0),
        }
    }

    pub fn show(self, v: f64) -> String {
        match self {
            Measure::Throughput => mbps(v),
            Measure::WakeUp => fmt_ns(v as u64),
        }
    }
}

/// What the windows say of one measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Worse by more than the margin, beyond chance.
    Worse,
    /// Better by more than the margin, beyond chance.
    Better,
    /// Shown to be less than the margin worse (non-inferior), beyond chance.
    NoWorse,
    /// Neither: the windows are too few or too noisy to tell.
    Undecided,
}

/// One measure compared window by window, on the logarithms of the window values, so a
/// change is a ratio and a margin means the same at any level.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    pub measure: Measure,
    /// The window values of each side.
    pub before: Vec<f64>,
    pub after: Vec<f64>,
    /// After / before - 1, estimated robustly (Hodges-Lehmann on the logarithms).
    pub change: f64,
    /// Chance of windows this much worse if the change were at most the margin worse: small
    /// means worse beyond the margin.
    pub p_worse: f64,
    /// Chance of windows this good if the change were the margin worse or more: small means
    /// shown no worse than the margin.
    pub p_no_worse: f64,
    /// Chance of windows this good if the change were at most the margin better: small means
    /// better beyond the margin.
    pub p_better: f64,
    /// The smallest harm (a fraction) these windows detect with [`policy::POWER`].
    pub detectable: Option<f64>,
    pub call: Call,
}

impl Judgement {
    /// None when a side has fewer than two windows with a value.
    pub fn of(measure: Measure, before: &[Outcome], after: &[Outcome], alpha: f64) -> Option<Self> {
        let values = |s: &[Outcome]| s.iter().filter_map(|w| measure.of(w)).collect::<Vec<_>>();
        let (b, a) = (values(before), values(after));
        Judgement::of_values(measure, b, a, alpha)
    }

    pub fn of_values(
        measure: Measure,
        before: Vec<f64>,
        after: Vec<f64>,
        alpha: f64,
    ) -> Option<Self> {
        if before.len() < 2 || after.len() < 2 {
            return None;
        }
        let sign = measure.worse_sign();
        let harm = |v: &[f64]| v.iter().map(|x| sign * x.ln()).collect::<Vec<f64>>();
        let (hb, ha) = (harm(&before), harm(&after));
        let m = measure.log_margin();
        let p_worse = stats::rank_p_greater(&hb, &stats::shifted(&ha, m))?;
        let p_no_worse = stats::rank_p_less(&hb, &stats::shifted(&ha, m))?;
        let p_better = stats::rank_p_less(&hb, &stats::shifted(&ha, -m))?;
        let log_change = sign * stats::shift_estimate(&hb, &ha)?;
        let detectable = stats::pooled_robust_sd(&hb, &ha)
            .and_then(|sd| stats::detectable(sd, hb.len(), ha.len(), alpha, policy::POWER))
            .map(|d| measure.as_fraction(d));
        let call = if p_worse < alpha {
            Call::Worse
        } else if p_better < alpha {
            Call::Better
        } else if p_no_worse < alpha {
            Call::NoWorse
        } else {
            Call::Undecided
        };
        Some(Judgement {
            measure,
            before,
            after,
            change: log_change.exp() - 1.0,
            p_worse,
            p_no_worse,
            p_better,
            detectable,
            call,
        })
    }

    /// The median window of each side.
    pub fn medians(&self) -> (f64, f64) {
        let m = |v: &[f64]| stats::median(v).unwrap_or(0.0);
        (m(&self.before), m(&self.after))
    }

    /// "+47.4% (16.8us -> 24.8us)".
    pub fn what(&self) -> String {
        let (b, a) = self.medians();
        format!(
            "{} {:+.1}% ({} -> {})",
            self.measure.label(),
            self.change * 100.0,
            self.measure.show(b),
            self.measure.show(a)
        )
    }
}

/// The spread of the workload itself, from windows of one unchanged state: what a trial of
/// `n` windows a side can tell apart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Noise {
    pub measure: Measure,
    /// Robust standard deviation of the windows' logarithms (about the relative spread).
    pub spread: f64,
    /// The smallest harm (fraction) a trial with as many windows a side would detect.
    pub detectable: Option<f64>,
    /// Windows a side the trial needs to detect the margin, at most `max` (None: not even).
    pub windows_needed: Option<usize>,
}

impl Noise {
    pub fn of(
        measure: Measure,
        windows: &[Outcome],
        n: usize,
        max: usize,
        alpha: f64,
    ) -> Option<Noise> {
        let logs: Vec<f64> = windows
            .iter()
            .filter_map(|w| measure.of(w))
            .map(f64::ln)
            .collect();
        let spread = stats::robust_sd(&logs)?;
        Some(Noise {
            measure,
            spread,
            detectable: stats::detectable(spread, n, n, alpha, policy::POWER)
                .map(|d| measure.as_fraction(d)),
            windows_needed: stats::windows_needed(
                spread,
                measure.log_margin(),
                alpha,
                policy::POWER,
                max,
            ),
        })
    }
}

/// What the comparison concluded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// A judged outcome better beyond its margin, none worse.
    Better,
    /// Every judged outcome shown no worse than its margin.
    NoWorse,
    /// One outcome worse beyond its margin, another better beyond its own: kept, said.
    Tradeoff,
    /// An outcome worse beyond its margin with no gain elsewhere, or a risk to the machine.
    Worse,
    /// The windows cannot tell yet.
    #[default]
    Undecided,
}

impl Conclusion {
    pub fn word(self) -> &'static str {
        match self {
            Conclusion::Better => "BETTER",
            Conclusion::NoWorse => "NO WORSE",
            Conclusion::Tradeoff => "TRADEOFF",
            Conclusion::Worse => "WORSE",
            Conclusion::Undecided => "INCONCLUSIVE",
        }
    }

    pub fn keep(self) -> bool {
        matches!(
            self,
            Conclusion::Better | Conclusion::NoWorse | Conclusion::Tradeoff
        )
    }
}

/// A figure shown before and after, not judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Shown {
    pub measure: String,
    pub before: String,
    pub after: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub conclusion: Conclusion,
    /// The judged outcomes that had windows enough on both sides.
    pub judgements: Vec<Judgement>,
    /// Level of each one-sided test at this look.
    pub alpha: f64,
    /// Why worse (outcomes beyond their margins, risks to the machine).
    pub worse: Vec<String>,
    /// Why better.
    pub better: Vec<String>,
    /// Worse on one outcome, better on another (kept, said plainly).
    pub tradeoffs: Vec<String>,
    /// What could not be judged, and why.
    pub unmeasured: Vec<String>,
    /// Facts worth knowing that are not part of the decision (the mismatch, significant
    /// changes within the margins).
    pub effects: Vec<String>,
    /// The figures shown, not judged.
    pub shown: Vec<Shown>,
    /// What the shown figures leave out, and why (they are not judged: the outcomes are).
    pub left_out: Vec<String>,
    /// Windows per side.
    pub windows: (usize, usize),
    /// Each window's share of reads off their softirq CPU, all flows (shown, not judged):
    /// whether a side's mismatch is in every window or in a few.
    pub mismatch_windows: (Vec<Option<f64>>, Vec<Option<f64>>),
}

impl Verdict {
    pub fn keep(&self) -> bool {
        self.conclusion.keep()
    }

    /// Why the conclusion, in one line.
    pub fn reasons(&self) -> Vec<String> {
        let mut why = match self.conclusion {
            Conclusion::Worse => self.worse.clone(),
            Conclusion::Better => self.better.clone(),
            Conclusion::Tradeoff => self.tradeoffs.clone(),
            Conclusion::NoWorse => self
                .judgements
                .iter()
                .map(|j| {
                    format!(
                        "{}, shown within {:.0}% (p={})",
                        j.what(),
                        j.measure.margin() * 100.0,
                        p_text(j.p_no_worse)
                    )
                })
                .collect(),
            Conclusion::Undecided => self.undecided(),
        };
        why.extend(self.effects.iter().cloned());
        why
    }

    /// Which measures the windows cannot decide, and the smallest change they could see.
    fn undecided(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .judgements
            .iter()
            .filter(|j| j.call == Call::Undecided)
            .map(|j| {
                format!(
                    "{}: neither shown within {:.0}% nor beyond it (these windows detect {})",
                    j.what(),
                    j.measure.margin() * 100.0,
                    j.detectable
                        .map(|d| format!("{:.1}%", d * 100.0))
                        .unwrap_or_else(|| "-".into())
                )
            })
            .collect();
        if self.judgements.is_empty() {
            v.push("no judged outcome was measured on both sides".into());
        }
        v
    }
}

fn mbps(bps: f64) -> String {
    format!("{:.2} MB/s", bps / 1e6)
}

pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Compares the two sides, each one-sided test at level `alpha`.
///
/// The rule: a risk to the machine (a CPU newly saturated by interrupt work, more softnet
/// drops and squeezes beyond chance) is worse. A judged outcome worse beyond its margin is
/// worse, unless it is the wake-up latency and the workload got more done (throughput better
/// beyond its margin, or fewer drops beyond chance): batching, a tradeoff kept and said. A
/// latency gain never pays for lost throughput. An outcome better beyond its margin with none
/// worse is better. Every judged outcome shown within its margin is no worse. Anything else
/// is undecided: the trial must go on or give up. With `fewer_drops` (a change of the
/// softnet backlog or budget, whose only purpose is fewer drops) a change is kept only when
/// the drops and squeezes fell beyond chance; otherwise it is undecided.
pub fn compare(before: &Side, after: &Side, alpha: f64, fewer_drops: bool) -> Verdict {
    let mut v = Verdict {
        windows: (before.windows.len(), after.windows.len()),
        mismatch_windows: (
            before.windows.iter().map(Outcome::mismatch).collect(),
            after.windows.iter().map(Outcome::mismatch).collect(),
        ),
        alpha,
        ..Verdict::default()
    };
    for m in Measure::ALL {
        match Judgement::of(m, &before.windows, &after.windows, alpha) {
            Some(j) => v.judgements.push(j),
            None => v.unmeasured.push(unmeasured(m, before, after)),
        }
    }
    let risks = risks(before, after, alpha, &mut v);
    let worse: Vec<&Judgement> = v
        .judgements
        .iter()
        .filter(|j| j.call == Call::Worse)
        .collect();
    let better: Vec<&Judgement> = v
        .judgements
        .iter()
        .filter(|j| j.call == Call::Better)
        .collect();
    let line = |j: &Judgement, p: f64| format!("{} (p={})", j.what(), p_text(p));
    v.worse = worse.iter().map(|j| line(j, j.p_worse)).collect();
    v.better = better.iter().map(|j| line(j, j.p_better)).collect();
    // What the workload gets done: throughput, and packets not dropped. A latency rise that
    // buys more of it is batching; a latency gain never pays for less of it.
    let work_gained: Vec<String> = better
        .iter()
        .filter(|j| j.measure == Measure::Throughput)
        .map(|j| line(j, j.p_better))
        .chain(risks.better.iter().cloned())
        .collect();
    let drops_fell = !risks.better.is_empty();
    v.better.extend(risks.better);
    let only_latency_worse = worse.iter().all(|j| j.measure == Measure::WakeUp);
    v.conclusion = if !risks.harm.is_empty() {
        v.worse.extend(risks.harm);
        Conclusion::Worse
    } else if !worse.is_empty() && only_latency_worse && !work_gained.is_empty() {
        v.tradeoffs = worse
            .iter()
            .map(|j| {
                format!(
                    "{} while {}: reads wait longer but the workload gets more done (batching); kept. If it needs the shorter wait more, undo it",
                    line(j, j.p_worse),
                    work_gained.join(", ")
                )
            })
            .collect();
        Conclusion::Tradeoff
    } else if !worse.is_empty() {
        Conclusion::Worse
    } else if !v.better.is_empty() {
        Conclusion::Better
    } else if !v.judgements.is_empty() && v.judgements.iter().all(|j| j.call == Call::NoWorse) {
        Conclusion::NoWorse
    } else {
        Conclusion::Undecided
    };
    if fewer_drops && v.conclusion.keep() && !drops_fell {
        v.effects.push(
            "receive drops + squeezes did not fall beyond chance: a backlog, budget or ring change is kept only for fewer drops"
                .into(),
        );
        v.conclusion = Conclusion::Undecided;
    }
    show(before, after, &mut v);
    v
}

fn unmeasured(m: Measure, before: &Side, after: &Side) -> String {
    let n = |s: &Side| s.windows.iter().filter(|w| m.of(w).is_some()).count();
    match m {
        Measure::Throughput => {
            "throughput: fewer than 2 windows a side (the judged flows read nothing?)".into()
        }
        Measure::WakeUp => format!(
            "delivery-to-read: fewer than 2 windows a side with {} or more wake-ups ({} before, {} after); the flow probes may be off, the flows idle, or their readers always busy (their data queues: throughput is their outcome)",
            policy::MIN_LATENCY_SAMPLES,
            n(before),
            n(after)
        ),
    }
}

/// What the risks say: harm to the machine (decides alone), and drops that fell.
#[derive(Default)]
struct Risks {
    harm: Vec<String>,
    better: Vec<String>,
}

fn risks(before: &Side, after: &Side, alpha: f64, v: &mut Verdict) -> Risks {
    let mut r = Risks::default();
    let (bw, aw) = (&before.whole, &after.whole);
    for (&cpu, &share) in &aw.irq_share {
        let was = bw.irq_share.get(&cpu).copied().unwrap_or(0.0);
        if share >= policy::SATURATED_IRQ_SHARE && was < policy::SATURATED_IRQ_SHARE {
            r.harm.push(format!(
                "CPU {cpu} became saturated: {:.0}% of its time in hardirq + softirq (was {:.0}%)",
                share * 100.0,
                was * 100.0
            ));
        }
    }
    // Drops and squeezes, window by window: counts (often zero), so compared as they are.
    let ds = |s: &Side| {
        s.windows
            .iter()
            .map(|w| w.drops_squeezes as f64)
            .collect::<Vec<_>>()
    };
    let (db, da) = (ds(before), ds(after));
    let (b, a) = (bw.drops + bw.squeezes, aw.drops + aw.squeezes);
    let p_up = stats::p_greater(&db, &da).unwrap_or(1.0);
    let p_down = stats::p_less(&db, &da).unwrap_or(1.0);
    if a > b && p_up < alpha {
        r.harm.push(format!(
            "receive drops + squeezes {b} -> {a} (p={})",
            p_text(p_up)
        ));
    } else if b > a && p_down < alpha {
        r.better.push(format!(
            "receive drops + squeezes {b} -> {a} (p={})",
            p_text(p_down)
        ));
    } else if a + b > 0 {
        v.effects.push(format!(
            "receive drops + squeezes {b} -> {a}, not beyond chance"
        ));
    }
    r
}

/// The figures shown with the verdict, not judged.
fn show(before: &Side, after: &Side, v: &mut Verdict) {
    let (bw, aw) = (&before.whole, &after.whole);
    let mut row = |m: &str, b: String, a: String| {
        v.shown.push(Shown {
            measure: m.into(),
            before: b,
            after: a,
        })
    };
    row(
        "delivery-to-read p50 / p99",
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
    );
    let busiest = |m: &Measures| {
        m.busiest_cpu()
            .map(|(c, s)| format!("{:.1}% (CPU {c})", s * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    row(
        "busiest CPU, hardirq+softirq time",
        busiest(bw),
        busiest(aw),
    );
    row(
        "receive drops (softnet + NIC) + squeezes",
        format!("{} + {}", bw.drops, bw.squeezes),
        format!("{} + {}", aw.drops, aw.squeezes),
    );
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    row(
        "mismatch, busiest flows",
        pct(bw.mismatch),
        pct(aw.mismatch),
    );
    row(
        "reads, busiest flows",
        bw.reads.to_string(),
        aw.reads.to_string(),
    );
    row(
        "NET_RX run in ksoftirqd",
        pct(bw.ksoftirqd_share),
        pct(aw.ksoftirqd_share),
    );
    let per_packet = |m: &Measures| {
        m.net_rx_ns_per_packet
            .map(|n| fmt_ns(n as u64))
            .unwrap_or_else(|| "-".into())
    };
    row("NET_RX time per packet", per_packet(bw), per_packet(aw));
    row(
        "NET_RX imbalance (max/mean)",
        format!("{:.2}", bw.imbalance),
        format!("{:.2}", aw.imbalance),
    );
    for (i, f) in aw.flows.iter().enumerate().take(3) {
        let b = bw.flows.iter().find(|x| x.label == f.label);
        row(
            &format!("flow {}: MB/s, d2r p50", i + 1),
            b.map(|b| format!("{:.2}, {}", b.throughput / 1e6, fmt_ns(b.latency.p50_ns)))
                .unwrap_or_else(|| "-".into()),
            format!("{:.2}, {}", f.throughput / 1e6, fmt_ns(f.latency.p50_ns)),
        );
    }
    if bw.reads >= policy::MIN_READS && aw.mismatch + policy::MISMATCH_NOISE < bw.mismatch {
        v.effects.push(format!(
            "mismatch {:.0}% -> {:.0}%",
            bw.mismatch * 100.0,
            aw.mismatch * 100.0
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: f64 = 0.05;

    fn window(mbps: f64, latency_us: f64) -> Outcome {
        let mut latency = [0; hist::BUCKETS];
        if latency_us > 0.0 {
            latency[hist::bucket((latency_us * 1e3) as u64)] = 10_000;
        }
        Outcome {
            secs: 1.0,
            bytes: (mbps * 1e6) as u64,
            reads: 10_000,
            mismatched: 0,
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

    /// Latency values whose medians land on distinct histogram buckets' interpolations:
    /// the judgement is tested on values directly.
    fn judge(m: Measure, b: &[f64], a: &[f64]) -> Judgement {
        Judgement::of_values(m, b.to_vec(), a.to_vec(), ALPHA).expect("judged")
    }

    #[test]
    fn an_unchanged_outcome_with_little_noise_is_shown_no_worse() {
        let j = judge(
            Measure::WakeUp,
            &[34.0, 35.0, 33.0, 34.5, 34.2],
            &[34.4, 34.1, 35.2, 33.6, 34.8],
        );
        assert_eq!(j.call, Call::NoWorse, "{j:?}");
        assert!(j.detectable.unwrap() < 0.10, "{j:?}");
    }

    #[test]
    fn an_unchanged_outcome_with_much_noise_is_undecided_not_kept() {
        let j = judge(
            Measure::WakeUp,
            &[20.0, 34.0, 27.0, 45.0, 30.0],
            &[33.0, 22.0, 41.0, 26.0, 35.0],
        );
        assert_eq!(j.call, Call::Undecided, "{j:?}");
        assert!(j.detectable.unwrap() > 0.10, "{j:?}");
    }

    #[test]
    fn a_rise_beyond_the_margin_is_worse_however_small_the_old_margin_made_it_look() {
        // +35%: what a fixed 50% margin kept.
        let j = judge(
            Measure::WakeUp,
            &[18.0, 17.5, 18.3, 17.9, 18.1],
            &[24.4, 24.0, 24.8, 23.9, 24.6],
        );
        assert_eq!(j.call, Call::Worse, "{j:?}");
        assert!((j.change - 0.35).abs() < 0.01, "{j:?}");
    }

    #[test]
    fn a_rise_within_the_margin_is_no_worse_when_the_windows_show_it() {
        let j = judge(
            Measure::WakeUp,
            &[20.0, 20.1, 19.9, 20.05, 19.95],
            &[21.0, 21.1, 20.9, 21.05, 20.95],
        );
        assert_eq!(j.call, Call::NoWorse, "+5% with 0.3% noise: {j:?}");
    }

    #[test]
    fn throughput_margin_is_a_fall() {
        let b = [100.0, 102.0, 99.0, 101.0, 100.5];
        let fell = judge(Measure::Throughput, &b, &[80.0, 82.0, 79.0, 81.0, 80.5]);
        assert_eq!(fell.call, Call::Worse, "{fell:?}");
        let rose = judge(
            Measure::Throughput,
            &b,
            &[120.0, 122.0, 119.0, 121.0, 120.5],
        );
        assert_eq!(rose.call, Call::Better, "{rose:?}");
        let same = judge(Measure::Throughput, &b, &[100.2, 101.1, 99.4, 100.8, 100.0]);
        assert_eq!(same.call, Call::NoWorse, "{same:?}");
    }

    #[test]
    fn a_consistent_throughput_fall_beyond_the_margin_is_worse() {
        let b = side(&[100.0, 102.0, 99.0, 101.0, 100.5], &[20.0; 5]);
        let a = side(&[80.0, 82.0, 79.0, 81.0, 80.5], &[20.0; 5]);
        let v = compare(&b, &a, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Worse, "{v:?}");
        assert!(v.worse[0].contains("throughput"), "{:?}", v.worse);
    }

    #[test]
    fn one_noisy_window_is_not_a_trend() {
        let b = side(&[100.0, 101.0, 99.0, 100.0, 100.5], &[20.0; 5]);
        let a = side(&[100.0, 101.0, 99.5, 100.2, 40.0], &[20.0; 5]);
        let v = compare(&b, &a, ALPHA, false);
        assert_ne!(v.conclusion, Conclusion::Worse, "{v:?}");
    }

    #[test]
    fn a_latency_rise_with_a_throughput_gain_is_a_tradeoff_and_kept() {
        // Unpaced stream after RFS: twice the bytes, each read taking more (batching).
        let b = side(
            &[83.0, 84.0, 82.0, 83.5, 82.5],
            &[11.6, 11.0, 12.0, 11.5, 11.8],
        );
        let a = side(
            &[176.0, 175.0, 178.0, 174.0, 177.0],
            &[24.4, 25.0, 23.0, 24.0, 26.0],
        );
        let v = compare(&b, &a, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Tradeoff, "{v:?}");
        assert!(v.keep());
        assert_eq!(v.tradeoffs.len(), 1, "{v:?}");
    }

    #[test]
    fn a_latency_gain_never_pays_for_lost_throughput() {
        // What a plan that starves the senders' CPU looks like: half the bytes, each wake-up
        // quicker because less data flows.
        let b = side(
            &[108.0, 110.0, 107.0, 109.0, 108.5],
            &[29.0, 30.0, 28.5, 29.5, 29.1],
        );
        let a = side(
            &[57.0, 58.0, 56.5, 57.5, 57.2],
            &[23.8, 24.0, 23.5, 24.2, 23.9],
        );
        let v = compare(&b, &a, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Worse, "{v:?}");
        assert!(v.tradeoffs.is_empty(), "{v:?}");
    }

    #[test]
    fn a_saturated_cpu_or_new_drops_is_worse_whatever_else_gained() {
        let b = side(&[12.0; 5], &[25.0; 5]);
        let mut a = side(&[15.0; 5], &[25.0; 5]);
        a.whole.irq_share.insert(1, 0.93);
        let v = compare(&b, &a, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Worse, "{v:?}");
        assert!(
            v.worse.iter().any(|w| w.contains("CPU 1 became saturated")),
            "{v:?}"
        );

        let mut a = side(&[12.0; 5], &[25.0; 5]);
        for w in &mut a.windows {
            w.drops_squeezes = 40;
        }
        a.whole.drops = 200;
        let v = compare(&b, &a, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Worse, "{v:?}");
        assert!(v.worse.iter().any(|w| w.contains("drops")), "{v:?}");
    }

    #[test]
    fn fewer_drops_beyond_chance_is_a_gain() {
        let mut b = side(&[12.0; 5], &[25.0; 5]);
        for (i, w) in b.windows.iter_mut().enumerate() {
            w.drops_squeezes = 500 + i as u64;
        }
        b.whole.drops = 2510;
        let a = side(&[12.0; 5], &[25.0; 5]);
        let v = compare(&b, &a, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Better, "{v:?}");
    }

    #[test]
    fn a_softnet_change_is_kept_only_for_fewer_drops() {
        // A better throughput alone does not keep a backlog change: it is not what it is for.
        let b = side(&[100.0, 101.0, 99.0, 100.5, 100.2], &[25.0; 5]);
        let a = side(&[120.0, 121.0, 119.0, 120.5, 120.2], &[25.0; 5]);
        assert_eq!(compare(&b, &a, ALPHA, false).conclusion, Conclusion::Better);
        let v = compare(&b, &a, ALPHA, true);
        assert_eq!(v.conclusion, Conclusion::Undecided, "{v:?}");
        assert!(!v.keep());
        assert!(
            v.reasons()
                .iter()
                .any(|r| r.contains("kept only for fewer drops")),
            "{v:?}"
        );
        // Drops that fell with the workload no worse: kept.
        let mut b = side(&[12.0; 5], &[25.0; 5]);
        for (i, w) in b.windows.iter_mut().enumerate() {
            w.drops_squeezes = 500 + i as u64;
        }
        b.whole.drops = 2510;
        let a = side(&[12.0; 5], &[25.0; 5]);
        let v = compare(&b, &a, ALPHA, true);
        assert_eq!(v.conclusion, Conclusion::Better, "{v:?}");
        // Drops that fell while the throughput fell beyond its margin: worse all the same.
        let a = side(&[9.0, 9.1, 8.9, 9.05, 8.95], &[25.0; 5]);
        let v = compare(&b, &a, ALPHA, true);
        assert_eq!(v.conclusion, Conclusion::Worse, "{v:?}");
    }

    #[test]
    fn nothing_measured_is_undecided_and_says_why() {
        let b = side(&[0.0; 5], &[0.0; 5]);
        let v = compare(&b, &b.clone(), ALPHA, false);
        // Throughput is judged (a stall is a value), latency cannot be.
        assert_eq!(v.unmeasured.len(), 1, "{v:?}");
        assert!(v.unmeasured[0].starts_with("delivery-to-read"), "{v:?}");
        let empty = Side::default();
        let v = compare(&empty, &empty, ALPHA, false);
        assert_eq!(v.conclusion, Conclusion::Undecided);
        assert!(!v.keep());
        assert!(
            v.reasons().iter().any(|r| r.contains("no judged outcome")),
            "{v:?}"
        );
    }

    #[test]
    fn noise_predicts_what_a_trial_can_detect() {
        let quiet: Vec<Outcome> = [12.0, 12.1, 11.9, 12.05, 11.95]
            .iter()
            .map(|&t| window(t, 20.0))
            .collect();
        let n = Noise::of(Measure::Throughput, &quiet, 5, 15, ALPHA).unwrap();
        assert!(n.spread < 0.01 && n.detectable.unwrap() < 0.03, "{n:?}");
        assert!(n.windows_needed.unwrap() <= 5, "{n:?}");
        let loud: Vec<Outcome> = [12.0, 16.0, 9.0, 14.0, 10.0]
            .iter()
            .map(|&t| window(t, 20.0))
            .collect();
        let n = Noise::of(Measure::Throughput, &loud, 5, 15, ALPHA).unwrap();
        assert_eq!(
            n.windows_needed, None,
            "too noisy for 3% in 15 windows: {n:?}"
        );
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
