//! The profile: everything a session measured, as one versioned, self-contained JSON file
//! (schema: `profile.schema.json` at the repository root, generated from these types).
//! `irqtune record --output` writes it; `irqtune report`, `plan --from` and other tools read it.
//!
//! The contract other tools rely on: top-level arrays `hardirqs`, `softirqs` and `flows`,
//! one row per (IRQ or vector or flow) and CPU, with the field names below. Histograms are
//! stored losslessly as their non-empty buckets `[low_ns, high_ns, count]` plus a summary.

use std::collections::BTreeMap;

use irq_ebpf::{hist, Loss, LossKind, NR_SOFTIRQS, SOFTIRQ_NAMES};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    model::finding::Finding,
    model::hist::Hist,
    model::machine::{HostId, Machine},
    model::procfs::{Interrupts, NicCounters, Softirqs, SoftnetRow},
    model::snapshot::{Protocol, Snapshot},
};

pub const PROFILE_FORMAT: &str = "irqtune-profile";
/// 2: handler time histograms per IRQ (`irqs`), counts and time per (IRQ, CPU) (`hardirqs`);
/// the session says how much of it the probes observed (`session.sampling`).
pub const PROFILE_VERSION: u32 = 2;
/// Versions this irqtune reads. A version 1 profile's per-(IRQ, CPU) histograms are merged
/// into per-IRQ ones on reading.
pub const PROFILE_VERSIONS: [u32; 2] = [1, 2];

/// A softirq vector, named as the kernel names it (kernel/softirq.c, softirq_to_name; the
/// rows of /proc/softirqs).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Vector {
    Hi,
    Timer,
    NetTx,
    NetRx,
    Block,
    IrqPoll,
    Tasklet,
    Sched,
    Hrtimer,
    Rcu,
}

impl Vector {
    /// In vector number order (the ABI's index).
    pub const ALL: [Vector; NR_SOFTIRQS] = [
        Vector::Hi,
        Vector::Timer,
        Vector::NetTx,
        Vector::NetRx,
        Vector::Block,
        Vector::IrqPoll,
        Vector::Tasklet,
        Vector::Sched,
        Vector::Hrtimer,
        Vector::Rcu,
    ];

    pub fn name(self) -> &'static str {
        SOFTIRQ_NAMES[self as usize]
    }
}

impl std::fmt::Display for Vector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// A family of probes: what a measurement lacks when one of its probes cannot attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Hardirq,
    Softirq,
    NetRx,
    Flows,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Hardirq,
        Family::Softirq,
        Family::NetRx,
        Family::Flows,
    ];

    /// What the family measures.
    pub fn name(self) -> &'static str {
        match self {
            Family::Hardirq => "hardirq handler time",
            Family::Softirq => "softirq handler time and raise delay",
            Family::NetRx => "NET_RX load per device",
            Family::Flows => "flow placement and delivery-to-read",
        }
    }

    /// The family of the tracepoint `category:name`: the one place that says which probe
    /// measures what (the loader's table and the findings both ask here).
    pub fn of(category: &str, name: &str) -> Option<Family> {
        match (category, name) {
            ("irq", "irq_handler_entry" | "irq_handler_exit") => Some(Family::Hardirq),
            ("irq", "softirq_raise" | "softirq_entry" | "softirq_exit") => Some(Family::Softirq),
            ("napi", "napi_poll") | ("net", "netif_receive_skb") => Some(Family::NetRx),
            ("sock", "sk_data_ready" | "sock_recv_length") => Some(Family::Flows),
            _ => None,
        }
    }

    /// The family of a probe row's tracepoint ("irq:softirq_exit").
    pub fn of_tracepoint(tracepoint: &str) -> Option<Family> {
        let (category, name) = tracepoint.split_once(':')?;
        Family::of(category, name)
    }
}

/// How a probe ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// A BTF tracepoint (tp_btf): the cheapest dispatch.
    Btf,
    /// A classic tracepoint (the fallback).
    Classic,
    /// fentry/fexit on the kernel functions around the event (BPF trampoline), where the
    /// kernel lacks its tracepoint.
    Fentry,
    /// kprobes/kretprobes on those functions.
    Kprobe,
    /// Not attached; the reason says why.
    Disabled,
    /// Not attached because it was not asked for (per-packet detail); the reason says how
    /// to ask.
    Off,
}

impl Attach {
    pub fn name(self) -> &'static str {
        match self {
            Attach::Btf => "btf",
            Attach::Classic => "classic",
            Attach::Fentry => "fentry",
            Attach::Kprobe => "kprobe",
            Attach::Disabled => "disabled",
            Attach::Off => "off",
        }
    }
}

/// Where a profile's numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A recording with the probes.
    Probes,
    /// Counts since boot from /proc (a captured tree, or `report` without a profile).
    Proc,
}

/// One IRQ on one CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HardirqRow {
    /// The IRQ number; null for IRQs that appeared after the probes were loaded.
    pub irq: Option<u32>,
    pub name: String,
    pub cpu: u32,
    pub count: u64,
    /// Handler time, ns.
    pub time_ns: u64,
    /// Longest handler run on this CPU, ns.
    #[serde(default)]
    pub max_ns: u64,
    /// Version 1 profiles only: this row's own histogram (merged into `irqs` on reading).
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub handler: Option<Hist>,
}

/// One IRQ on all CPUs: its handler time distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IrqRow {
    /// The IRQ number; null for IRQs that appeared after the probes were loaded.
    pub irq: Option<u32>,
    pub name: String,
    pub count: u64,
    pub time_ns: u64,
    pub handler: Hist,
}

/// One softirq vector on one CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SoftirqRow {
    /// The kernel's name: "NET_RX", "TIMER", ... (as in /proc/softirqs).
    pub vector: Vector,
    pub cpu: u32,
    /// Handler runs.
    pub count: u64,
    pub time_ns: u64,
    pub raises: u64,
    /// Runs in ksoftirqd (the softirq load outgrew interrupt exit).
    pub ksoftirqd_runs: u64,
    pub handler: Hist,
    /// Time from raise to handler entry.
    pub raise_delay: Hist,
}

/// NET_RX work of one device on one CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetdevRow {
    /// The device; "(backlog)" for the per-CPU backlog NAPI that RPS and netif_rx() feed.
    pub device: String,
    pub ifindex: u32,
    pub cpu: u32,
    pub polls: u64,
    /// Packets those polls processed (napi_poll's work).
    #[serde(default)]
    pub work: u64,
    /// Polls that used their whole budget.
    pub budget_exhausted: u64,
    /// Packets and bytes as the stack received them (netif_receive_skb, per-packet detail
    /// only; 0 otherwise).
    pub packets: u64,
    pub bytes: u64,
}

/// A socket's traffic: where its softirq ran and where its reader read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowRow {
    pub protocol: Protocol,
    pub local: String,
    pub remote: String,
    /// Latest reader's process.
    pub pid: u32,
    pub comm: String,
    /// TCP, or UDP with a connected peer: RFS can steer it.
    pub connected: bool,
    /// Softirq deliveries per CPU.
    pub deliveries_by_cpu: BTreeMap<u32, u64>,
    /// Deliveries from the socket backlog in the reader's context (not softirq placement).
    pub backlog_deliveries: u64,
    pub reads_by_cpu: BTreeMap<u32, u64>,
    /// Reads on another CPU than the flow's latest softirq delivery.
    pub mismatched_reads: u64,
    pub mismatch_ratio: f64,
    /// Bytes the application read (its throughput is this over the session's duration).
    pub read_bytes: u64,
    /// Time from the softirq's delivery of data to the socket to the application's read of
    /// it (the first delivery after a read, to the next read). Recorded for the busiest flows
    /// (a bounded map).
    #[serde(default)]
    pub delivery_to_read: DeliveryToRead,
    /// The NAPI its data came from (the socket's `sk_napi_id` at a delivery): what busy
    /// polling and IRQ suspension act on. None: no NAPI id seen (data that came through a
    /// CPU's backlog, as over loopback or a veth without GRO, or a kernel without the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napi_id: Option<u32>,
}

/// Delivery-to-read latency of one flow. Deliveries that found the reader waiting on the
/// socket are wake-ups, split by placement: what a mismatch costs. Deliveries that found the
/// reader busy queued until it came back (the application's own pace), counted apart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryToRead {
    /// Wake-ups by a softirq on the reader's own CPU.
    pub same_cpu: Hist,
    /// Wake-ups by a softirq on another CPU (a cross-CPU wake-up).
    pub cross_cpu: Hist,
    /// Reads whose data arrived while the reader was busy, and their total wait.
    #[serde(default)]
    pub queued_reads: u64,
    #[serde(default)]
    pub queued_wait_ns: u64,
}

impl DeliveryToRead {
    pub fn from_latency(per_reader_cpu: &BTreeMap<u32, irq_ebpf::FlowLatency>) -> Self {
        let sum = |pick: fn(&irq_ebpf::FlowLatency) -> &irq_ebpf::Latency| {
            let mut b = [0u64; hist::BUCKETS];
            let (mut max, mut total) = (0, 0);
            for l in per_reader_cpu.values().map(pick) {
                for (o, v) in b.iter_mut().zip(l.hist.iter()) {
                    *o += v;
                }
                max = max.max(l.max_ns);
                total += l.total_ns;
            }
            Hist::from_buckets(&b, max, total)
        };
        DeliveryToRead {
            same_cpu: sum(|l| &l.same_cpu),
            cross_cpu: sum(|l| &l.cross_cpu),
            queued_reads: per_reader_cpu.values().map(|l| l.queued_count).sum(),
            queued_wait_ns: per_reader_cpu.values().map(|l| l.queued_total_ns).sum(),
        }
    }

    /// Wake-ups of both placements together.
    pub fn all(&self) -> Hist {
        let (b, max, sum) = crate::model::hist::merged([&self.same_cpu, &self.cross_cpu]);
        Hist::from_buckets(&b, max, sum)
    }

    /// Wake-ups measured.
    pub fn count(&self) -> u64 {
        self.same_cpu.count() + self.cross_cpu.count()
    }

    /// Adds `other`'s samples (running totals across windows).
    pub fn add(&mut self, other: &DeliveryToRead) {
        let sum = |a: &Hist, b: &Hist| {
            let (buckets, max, sum) = crate::model::hist::merged([a, b]);
            Hist::from_buckets(&buckets, max, sum)
        };
        self.same_cpu = sum(&self.same_cpu, &other.same_cpu);
        self.cross_cpu = sum(&self.cross_cpu, &other.cross_cpu);
        self.queued_reads += other.queued_reads;
        self.queued_wait_ns += other.queued_wait_ns;
    }
}

/// One reading process and the NAPIs its flows' data came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderNapis {
    pub pid: u32,
    pub comm: String,
    pub flows: usize,
    /// Reads over all its flows.
    pub reads: u64,
    /// NAPI id -> flows of this reader from it.
    pub napis: BTreeMap<u32, usize>,
    /// Flows without a NAPI id.
    pub unknown: usize,
}

/// Readers (by pid) whose flows carry at least one NAPI id, most NAPIs first.
pub fn readers_by_napi(flows: &[FlowRow]) -> Vec<ReaderNapis> {
    let mut by_pid: BTreeMap<u32, ReaderNapis> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.pid != 0 && f.reads() > 0) {
        let r = by_pid.entry(f.pid).or_insert_with(|| ReaderNapis {
            pid: f.pid,
            comm: f.comm.clone(),
            ..ReaderNapis::default()
        });
        r.flows += 1;
        r.reads += f.reads();
        match f.napi_id {
            Some(id) => *r.napis.entry(id).or_default() += 1,
            None => r.unknown += 1,
        }
    }
    let mut out: Vec<ReaderNapis> = by_pid
        .into_values()
        .filter(|r| !r.napis.is_empty())
        .collect();
    out.sort_by(|a, b| b.napis.len().cmp(&a.napis.len()).then(a.pid.cmp(&b.pid)));
    out
}

/// What the applications got from all flows together: the outcome of the steering.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowTotals {
    /// Bytes read by every tracked flow (all sampled flows, not only those listed).
    pub read_bytes: u64,
    pub delivery_to_read: DeliveryToRead,
}

impl FlowTotals {
    pub fn of(flows: &[FlowRow]) -> FlowTotals {
        let mut t = FlowTotals::default();
        for f in flows {
            t.add(&FlowTotals {
                read_bytes: f.read_bytes,
                delivery_to_read: f.delivery_to_read.clone(),
            });
        }
        t
    }

    pub fn add(&mut self, other: &FlowTotals) {
        self.read_bytes += other.read_bytes;
        self.delivery_to_read.add(&other.delivery_to_read);
    }
}

impl FlowRow {
    pub fn reads(&self) -> u64 {
        self.reads_by_cpu.values().sum()
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries_by_cpu.values().sum()
    }

    pub fn label(&self) -> String {
        format!(
            "{} {} <- {} ({} pid {})",
            self.protocol, self.local, self.remote, self.comm, self.pid
        )
    }
}

/// One /proc/interrupts row's counts over the session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcIrqRow {
    /// First column: "36", "LOC", "NMI".
    pub id: String,
    pub name: String,
    /// Per CPU, in the order of `ProcCounts::cpus`.
    pub counts: Vec<u64>,
}

/// What /proc said over the same window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcCounts {
    pub cpus: Vec<u32>,
    pub interrupts: Vec<ProcIrqRow>,
    /// Vector name -> counts per CPU.
    pub softirqs: BTreeMap<String, Vec<u64>>,
    pub softnet: Vec<SoftnetRow>,
    /// The NICs' receive drop counters over the same window (/sys/class/net/*/statistics;
    /// profiles from before they were read: empty).
    #[serde(default)]
    pub nics: Vec<NicCounters>,
}

impl ProcCounts {
    /// Handler runs of the numbered IRQs, all CPUs: what the hardirq probe could be handed
    /// (the architecture's rows, LOC, NMI and the like, have no handler probe).
    pub fn numbered_irq_runs(&self) -> u64 {
        self.interrupts
            .iter()
            .filter(|r| r.id.parse::<u32>().is_ok())
            .flat_map(|r| r.counts.iter())
            .sum()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeRow {
    /// "irq:irq_handler_entry".
    pub tracepoint: String,
    pub attach: Attach,
    /// The kernel hooks used instead of the tracepoint itself ("fexit inet_recvmsg").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// What this probe does not see, when it sees less than the tracepoint would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
    /// Why it was disabled.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    /// Wall-clock start, ms since the Unix epoch.
    pub start_unix_ms: u64,
    pub duration_ns: u64,
    /// Ended early (Ctrl-C, SIGTERM): the data covers `duration_ns`.
    pub interrupted: bool,
    pub source: Source,
    /// CPUs the probes recorded.
    pub cpus: Vec<u32>,
    pub probes: Vec<ProbeRow>,
    /// One socket in N was tracked.
    pub flow_sample: u32,
    pub irqtune_version: String,
    /// The probes were attached for part of the session only (a duty cycle): how much, and
    /// how the figures were extrapolated. Absent: attached throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Kernel memory the probes' BPF maps took, bytes (the memlock the kernel charged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_bytes: Option<u64>,
    /// How far apart /proc's counts and the probes' were read, both ends of the session
    /// together (an upper bound): what arrived in between is in one source only, so the
    /// two agree up to the events of that long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark_skew_ns: Option<u64>,
    /// Times the kernel ran the hardirq probe in the session, by its own count of program
    /// runs (kept only while BPF statistics are on: `kernel.bpf_stats_enabled`). A check
    /// from outside the probes: handler runs /proc/interrupts counted beyond it are runs the
    /// kernel never handed to the probe. Absent: the kernel did not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardirq_probe_runs: Option<u64>,
}

/// What a duty-cycled recording observed, and how its figures stand for the whole session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sampling {
    /// Share of the session the probes were attached (0..1).
    pub coverage: f64,
    pub observed_ns: u64,
    /// How counts, times and distributions were extrapolated to the whole session.
    pub method: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Profile {
    /// Always "irqtune-profile".
    pub format: String,
    pub version: u32,
    pub host: HostId,
    pub session: SessionInfo,
    pub hardirqs: Vec<HardirqRow>,
    /// Per IRQ, all CPUs: the handler time distribution.
    #[serde(default)]
    pub irqs: Vec<IrqRow>,
    pub softirqs: Vec<SoftirqRow>,
    pub netdevs: Vec<NetdevRow>,
    pub flows: Vec<FlowRow>,
    /// All flows together: bytes read and delivery-to-read latency.
    #[serde(default)]
    pub flow_totals: FlowTotals,
    /// What the probes could not record, by kind (see irq_ebpf::Loss), plus flow evictions.
    pub losses: BTreeMap<String, u64>,
    pub proc: ProcCounts,
    /// The machine at the end of the session: topology, IRQ affinity, NIC queues and
    /// their steering, irqbalance.
    pub context: Option<Machine>,
    pub findings: Vec<Finding>,
}

pub use crate::model::jsonfile::JsonFileError as ProfileError;

/// The name of the loss entry for flows evicted from the kernel's LRU map (their counts are
/// gone: a loss).
pub const FLOW_EVICTIONS: &str = "flow_evictions";

/// What an entry of a profile's `losses` counts, by its name (unknown names, from a newer
/// irqtune, count as losses: the cautious reading).
pub fn loss_kind(name: &str) -> LossKind {
    Loss::ALL
        .iter()
        .find(|l| l.name() == name)
        .map_or(LossKind::Lost, |l| l.kind())
}

/// What a session hands over to become a profile.
pub struct Recorded<'a> {
    pub delta: &'a Snapshot,
    pub start_unix_ms: u64,
    pub duration_ns: u64,
    /// How long the probes were attached within it (a duty cycle: less than the duration).
    pub observed_ns: u64,
    /// Kernel memory of the probes' maps.
    pub bpf_map_bytes: Option<u64>,
    /// Time between reading /proc and the maps, both marks together.
    pub mark_skew_ns: u64,
    pub interrupted: bool,
    pub cpus: Vec<u32>,
    pub probes: Vec<ProbeRow>,
    pub flow_sample: u32,
    pub interrupts: (&'a Interrupts, &'a Interrupts),
    pub softirqs: (&'a Softirqs, &'a Softirqs),
    pub softnet: (&'a [SoftnetRow], &'a [SoftnetRow]),
    pub nics: (&'a [NicCounters], &'a [NicCounters]),
    pub machine: Option<Machine>,
}

/// The probes' IRQ series as rows: counts and time per (IRQ, CPU), the distribution per IRQ.
fn hardirq_rows(d: &Snapshot) -> (Vec<HardirqRow>, Vec<IrqRow>) {
    let (mut rows, mut irqs) = (Vec::new(), Vec::new());
    for s in &d.irqs {
        for (cpu, v) in s.per_cpu.iter().enumerate() {
            if v.count > 0 {
                rows.push(HardirqRow {
                    irq: s.irq,
                    name: s.name.clone(),
                    cpu: cpu as u32,
                    count: v.count,
                    time_ns: v.total_ns,
                    max_ns: v.max_ns,
                    handler: None,
                });
            }
        }
        let count = s
            .per_cpu
            .iter()
            .fold(0u64, |a, v| a.saturating_add(v.count));
        if count > 0 {
            let time_ns = s
                .per_cpu
                .iter()
                .fold(0u64, |a, v| a.saturating_add(v.total_ns));
            let max = s.per_cpu.iter().map(|v| v.max_ns).max().unwrap_or(0);
            irqs.push(IrqRow {
                irq: s.irq,
                name: s.name.clone(),
                count,
                time_ns,
                handler: Hist::from_buckets(&s.hist, max, time_ns),
            });
        }
    }
    (rows, irqs)
}

/// /proc/interrupts and /proc/softirqs differences, by row and CPU column.
pub fn proc_counts(
    interrupts: (&Interrupts, &Interrupts),
    softirqs: (&Softirqs, &Softirqs),
    softnet: (&[SoftnetRow], &[SoftnetRow]),
    nics: (&[NicCounters], &[NicCounters]),
) -> ProcCounts {
    let (ib, ia) = interrupts;
    let cpus = ia.cpus.clone();
    let interrupts = ia
        .rows
        .iter()
        .map(|r| {
            let before = ib.rows.iter().find(|b| b.id == r.id);
            ProcIrqRow {
                id: r.id.clone(),
                name: r.name.clone(),
                counts: r
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        n.saturating_sub(before.and_then(|b| b.counts.get(i)).copied().unwrap_or(0))
                    })
                    .collect(),
            }
        })
        .collect();
    let (sb, sa) = softirqs;
    let softirqs = sa
        .rows
        .iter()
        .map(|(name, counts)| {
            let before = sb.rows.iter().find(|(n, _)| n == name).map(|(_, c)| c);
            let d = counts
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    n.saturating_sub(before.and_then(|b| b.get(i)).copied().unwrap_or(0))
                })
                .collect();
            (name.clone(), d)
        })
        .collect();
    let (nb, na) = softnet;
    let softnet = na
        .iter()
        .map(|a| match nb.iter().find(|b| b.cpu == a.cpu) {
            Some(b) => a.minus(b),
            None => a.clone(),
        })
        .collect();
    let (cb, ca) = nics;
    let nics = ca
        .iter()
        .map(|a| match cb.iter().find(|b| b.device == a.device) {
            Some(b) => a.minus(b),
            None => a.clone(),
        })
        .collect();
    ProcCounts {
        cpus,
        interrupts,
        softirqs,
        softnet,
        nics,
    }
}

/// One row per softirq vector and CPU that ran or was raised.
fn softirq_rows(d: &Snapshot) -> Vec<SoftirqRow> {
    let mut softirqs = Vec::new();
    for (vec, per_cpu) in d.softirqs.iter().enumerate() {
        for (cpu, s) in per_cpu.iter().enumerate() {
            if s.count == 0 && s.raises == 0 {
                continue;
            }
            softirqs.push(SoftirqRow {
                vector: Vector::ALL[vec],
                cpu: cpu as u32,
                count: s.count,
                time_ns: s.total_ns,
                raises: s.raises,
                ksoftirqd_runs: s.ksoftirqd_runs,
                handler: Hist::from_buckets(&s.handler_hist, s.max_ns, s.total_ns),
                raise_delay: Hist::from_buckets(&s.delay_hist, s.delay_max_ns, s.delay_total_ns),
            });
        }
    }
    softirqs
}

/// One row per device and CPU that polled or received.
fn netdev_rows(d: &Snapshot) -> Vec<NetdevRow> {
    let mut netdevs = Vec::new();
    for s in &d.netdevs {
        for (&cpu, v) in &s.per_cpu {
            if v.polls + v.rx_packets == 0 {
                continue;
            }
            netdevs.push(NetdevRow {
                device: s.name.clone(),
                ifindex: s.ifindex,
                cpu,
                polls: v.polls,
                work: v.work,
                budget_exhausted: v.budget_exhausted,
                packets: v.rx_packets,
                bytes: v.rx_bytes,
            });
        }
    }
    netdevs
}

/// The flows with traffic, most mismatched reads first.
fn flow_rows(d: &Snapshot) -> Vec<FlowRow> {
    let mut flows: Vec<FlowRow> = d
        .flows
        .iter()
        .filter(|f| f.reads() + f.deliveries() > 0)
        .map(|f| {
            let protocol = f.protocol();
            FlowRow {
                protocol,
                local: f.local().to_string(),
                remote: f.remote().to_string(),
                pid: f.info.tgid,
                comm: f.comm(),
                connected: protocol == Protocol::Tcp || f.info.remote_port != 0,
                deliveries_by_cpu: f.deliveries_by_cpu(),
                backlog_deliveries: f.backlog_deliveries(),
                reads_by_cpu: f.reads_by_cpu(),
                mismatched_reads: f.mismatched_reads(),
                mismatch_ratio: f.mismatch_ratio(),
                read_bytes: f.per_cpu.values().map(|c| c.read_bytes).sum(),
                delivery_to_read: DeliveryToRead::from_latency(&f.latency),
                napi_id: f.napi_id(),
            }
        })
        .collect();
    flows.sort_by(|a, b| {
        b.mismatched_reads
            .cmp(&a.mismatched_reads)
            .then(b.reads().cmp(&a.reads()))
    });
    flows
}

impl Profile {
    pub fn from_recording(r: Recorded) -> Profile {
        let d = r.delta;
        let (hardirqs, irqs) = hardirq_rows(d);
        let softirqs = softirq_rows(d);
        let netdevs = netdev_rows(d);
        let flows = flow_rows(d);
        let mut losses: BTreeMap<String, u64> = Loss::ALL
            .iter()
            .map(|&l| (l.name().to_string(), d.loss(l)))
            .collect();
        losses.insert(FLOW_EVICTIONS.into(), d.flow_evictions);
        let host = r
            .machine
            .as_ref()
            .map(|m| m.host.clone())
            .unwrap_or_default();
        let mut p = Profile {
            format: PROFILE_FORMAT.into(),
            version: PROFILE_VERSION,
            host,
            session: SessionInfo {
                start_unix_ms: r.start_unix_ms,
                duration_ns: r.duration_ns,
                interrupted: r.interrupted,
                source: Source::Probes,
                cpus: r.cpus,
                probes: r.probes,
                flow_sample: r.flow_sample,
                irqtune_version: env!("CARGO_PKG_VERSION").into(),
                sampling: None,
                bpf_map_bytes: r.bpf_map_bytes,
                mark_skew_ns: Some(r.mark_skew_ns),
                // A count of 0 with handler runs recorded is a kernel that was not counting.
                hardirq_probe_runs: d
                    .hardirq_runs
                    .filter(|&n| n > 0 || hardirqs.iter().all(|h| h.count == 0)),
            },
            hardirqs,
            irqs,
            softirqs,
            netdevs,
            flow_totals: FlowTotals::of(&flows),
            flows,
            losses,
            proc: proc_counts(r.interrupts, r.softirqs, r.softnet, r.nics),
            context: r.machine,
            findings: Vec::new(),
        };
        crate::model::extrapolate::extrapolate(&mut p, r.observed_ns);
        p
    }

    /// A profile from /proc alone (counts since boot): what `report` shows for a captured
    /// tree without a recording.
    pub fn from_proc(
        machine: Machine,
        interrupts: &Interrupts,
        softirqs: &Softirqs,
        softnet: &[SoftnetRow],
        nics: &[NicCounters],
        uptime_ns: u64,
    ) -> Profile {
        let empty_i = Interrupts {
            cpus: interrupts.cpus.clone(),
            rows: Vec::new(),
        };
        let empty_s = Softirqs::default();
        Profile {
            format: PROFILE_FORMAT.into(),
            version: PROFILE_VERSION,
            host: machine.host.clone(),
            session: SessionInfo {
                start_unix_ms: 0,
                duration_ns: uptime_ns,
                interrupted: false,
                source: Source::Proc,
                cpus: interrupts.cpus.clone(),
                probes: Vec::new(),
                flow_sample: 0,
                irqtune_version: env!("CARGO_PKG_VERSION").into(),
                sampling: None,
                bpf_map_bytes: None,
                mark_skew_ns: None,
                hardirq_probe_runs: None,
            },
            hardirqs: Vec::new(),
            irqs: Vec::new(),
            softirqs: Vec::new(),
            netdevs: Vec::new(),
            flows: Vec::new(),
            flow_totals: FlowTotals::default(),
            losses: BTreeMap::new(),
            proc: proc_counts(
                (&empty_i, interrupts),
                (&empty_s, softirqs),
                (&[], softnet),
                (&[], nics),
            ),
            context: Some(machine),
            findings: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a profile serialises") + "\n"
    }

    pub fn parse(text: &str, name: &str) -> Result<Profile, ProfileError> {
        let mut p: Profile = crate::model::jsonfile::parse(text, name, "irqtune profile")?;
        if p.format != PROFILE_FORMAT || !PROFILE_VERSIONS.contains(&p.version) {
            return Err(ProfileError::Invalid {
                path: name.to_string(),
                msg: format!(
                    "format {:?} version {}: this irqtune reads {PROFILE_FORMAT:?} versions {PROFILE_VERSIONS:?}",
                    p.format, p.version
                ),
            });
        }
        p.upgrade();
        Ok(p)
    }

    /// A version 1 profile in version 2's shape: its per-(IRQ, CPU) histograms merged per IRQ.
    fn upgrade(&mut self) {
        if self.version >= 2 {
            return;
        }
        let mut by_irq: BTreeMap<(Option<u32>, String), Vec<&HardirqRow>> = BTreeMap::new();
        for r in &self.hardirqs {
            by_irq.entry((r.irq, r.name.clone())).or_default().push(r);
        }
        let irqs: Vec<IrqRow> = by_irq
            .into_iter()
            .map(|((irq, name), rows)| {
                let (b, max, sum) =
                    crate::model::hist::merged(rows.iter().filter_map(|r| r.handler.as_ref()));
                IrqRow {
                    irq,
                    name,
                    count: rows.iter().fold(0u64, |a, r| a.saturating_add(r.count)),
                    time_ns: rows.iter().fold(0u64, |a, r| a.saturating_add(r.time_ns)),
                    handler: Hist::from_buckets(&b, max, sum),
                }
            })
            .collect();
        for r in &mut self.hardirqs {
            r.max_ns = r.handler.as_ref().map_or(0, |h| h.summary.max_ns);
            r.handler = None;
        }
        self.irqs = irqs;
        self.version = PROFILE_VERSION;
    }

    /// The JSON Schema of the profile file.
    pub fn schema() -> String {
        serde_json::to_string_pretty(&schemars::schema_for!(Profile)).expect("schema serialises")
            + "\n"
    }

    pub fn duration_secs(&self) -> f64 {
        self.session.duration_ns as f64 / 1e9
    }

    /// Whether the probes measured `family`: a recording with none of its probes disabled.
    pub fn measured(&self, family: Family) -> bool {
        self.session.source == Source::Probes
            && !self.session.probes.iter().any(|r| {
                r.attach == Attach::Disabled && Family::of_tracepoint(&r.tracepoint) == Some(family)
            })
    }

    /// CPUs that appear anywhere in the profile, sorted.
    pub fn cpus(&self) -> Vec<u32> {
        let mut c: Vec<u32> = self.proc.cpus.clone();
        c.extend(self.hardirqs.iter().map(|r| r.cpu));
        c.extend(self.softirqs.iter().map(|r| r.cpu));
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Packets the network stack received on `cpu`: counted per packet when the per-packet
    /// probe ran, else /proc/net/softnet_stat's exact count (`processed`).
    pub fn net_rx_packets(&self, cpu: u32) -> u64 {
        let per_packet: u64 = self
            .netdevs
            .iter()
            .filter(|r| r.cpu == cpu)
            .fold(0u64, |a, r| a.saturating_add(r.packets));
        if per_packet > 0 {
            return per_packet;
        }
        self.proc
            .softnet
            .iter()
            .find(|r| r.cpu == cpu)
            .map_or(0, |r| r.processed)
    }

    /// NET_RX runs on `cpu`: from the probes, or /proc/softirqs for a /proc-only profile.
    pub fn net_rx_runs(&self, cpu: u32) -> u64 {
        if self.session.source == Source::Probes {
            self.softirqs
                .iter()
                .filter(|r| r.vector == Vector::NetRx && r.cpu == cpu)
                .map(|r| r.count)
                .sum()
        } else {
            let col = self.proc.cpus.iter().position(|&c| c == cpu);
            self.proc
                .softirqs
                .get(Vector::NetRx.name())
                .and_then(|v| v.get(col?).copied())
                .unwrap_or(0)
        }
    }
}
