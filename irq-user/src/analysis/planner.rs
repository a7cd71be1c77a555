//! The planner: measurements + topology + current state in, a [`Plan`] out. No I/O.
//!
//! Policies, from the source notes and Documentation/networking/scaling.rst:
//! - Multi-queue NIC: one queue vector per physical core of the NIC's NUMA node, SMT siblings
//!   only when the cores run out, never isolated, nohz_full or offline CPUs; the heaviest
//!   vector goes to the least loaded core, where load already counts the IRQs that stay
//!   (so NIC vectors move away from a busy disk's CPU).
//! - Single-queue NIC, or fewer rx vectors than CPUs that read the traffic: RPS over the
//!   cores of the NIC's node, leaving out the IRQ's own CPU when its rate is high.
//! - RFS whenever RPS is on or flows are read on another CPU than their softirq ran on:
//!   rps_sock_flow_entries = a power of two >= 2x the concurrent flows (at least 32768),
//!   rps_flow_cnt = entries / rx queues.
//! - XPS: tx queue q to the CPUs that serve rx queue q.
//! - Receive drops ([`Strategy::Drops`], a plan of its own so `tune` judges it alone): a
//!   NIC out of rx descriptors doubles its rx ring (up to the driver's maximum); backlog
//!   drops raise netdev_max_backlog to what the measured arrival rate fills during the
//!   longest measured wait for NET_RX (at least double and the kernel's default); time
//!   squeezes that end on the packet budget raise
//!   netdev_budget (double, at least the kernel's default) but never past what one run
//!   processes in netdev_budget_usecs at the measured cost per packet. Bounds in [`policy`].

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    analysis::{
        plan::{Change, Knob, Plan, Strategy, Value, PLAN_FORMAT, PLAN_VERSION},
        policy,
    },
    model::{
        cpulist,
        machine::{
            ethtool::{ChannelKind, CoalesceParam, RingKind},
            CoreKey, IrqUse, Machine, Nic, QueueKind, RxQueue,
        },
        procfs::{NicCounters, SoftnetRow},
        profile::Vector,
    },
};

/// A flow as a profile saw it.
#[derive(Clone, Debug, Default)]
pub struct FlowLoad {
    /// "tcp 10.0.0.2:5201 <- 10.0.0.1:40112 (iperf3 pid 812)".
    pub label: String,
    /// TCP or connected UDP: RFS can steer it (the kernel records the flow hash only for
    /// connected sockets).
    pub steerable: bool,
    pub deliveries_by_cpu: BTreeMap<u32, u64>,
    pub reads_by_cpu: BTreeMap<u32, u64>,
    pub reads: u64,
    pub mismatched_reads: u64,
}

impl FlowLoad {
    pub fn mismatch_ratio(&self) -> f64 {
        if self.reads == 0 {
            0.0
        } else {
            self.mismatched_reads as f64 / self.reads as f64
        }
    }
}

/// What the plan weighs IRQs by.
#[derive(Clone, Debug, Default)]
pub struct Load {
    /// Where the figures come from, for the plan's header.
    pub source: String,
    /// Unit of `irq_weight` ("ns of handler time", "interrupts").
    pub unit: String,
    pub irq_weight: BTreeMap<u32, f64>,
    /// Interrupts per second, where a rate was measured.
    pub irq_rate: BTreeMap<u32, f64>,
    pub flows: Vec<FlowLoad>,
    /// The softnet counters over the measurement, per CPU (empty without a profile).
    pub softnet: Vec<SoftnetRow>,
    /// Per CPU: NET_RX's longest ordinary wait between two drains of the backlog, ns (p99
    /// of raise-to-entry plus p99 of the handler run), and its handler time per packet.
    pub net_rx: BTreeMap<u32, NetRxCpu>,
    /// Seconds measured (0 without a profile).
    pub secs: f64,
    /// Packets NET_RX polled per (device, CPU) over the measurement (napi_poll's work).
    pub device_packets: BTreeMap<(String, u32), u64>,
    /// Each NIC's receive drop counters over the measurement.
    pub nics: BTreeMap<String, NicCounters>,
    /// NAPI polls per device over the measurement (all CPUs).
    pub device_polls: BTreeMap<String, u64>,
}

/// NET_RX on one CPU as the probes measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NetRxCpu {
    pub gap_p99_ns: u64,
    pub time_ns: u64,
    /// NET_RX runs, and those ksoftirqd ran (the load outgrew interrupt exit).
    pub runs: u64,
    pub ksoftirqd_runs: u64,
}

impl Load {
    /// The counts in /proc/interrupts since boot: the load signal of an offline plan.
    pub fn from_counts(machine: &Machine, source: &str) -> Load {
        Load {
            source: source.to_string(),
            unit: "interrupts".into(),
            irq_weight: machine
                .irqs
                .iter()
                .map(|i| (i.irq, i.total() as f64))
                .collect(),
            ..Load::default()
        }
    }

    /// A profile's measurements: IRQs weighed by handler time, rates from their counts, and
    /// the flows with where their softirq ran and where they were read.
    pub fn from_profile(p: &crate::model::profile::Profile, source: &str) -> Load {
        let secs = p.duration_secs().max(1e-9);
        let mut load = Load {
            source: source.to_string(),
            unit: "ns of handler time".into(),
            ..Load::default()
        };
        for r in &p.hardirqs {
            if let Some(irq) = r.irq {
                *load.irq_weight.entry(irq).or_default() += r.time_ns as f64;
                *load.irq_rate.entry(irq).or_default() += r.count as f64 / secs;
            }
        }
        load.flows = p
            .flows
            .iter()
            .map(|f| FlowLoad {
                label: f.label(),
                steerable: f.connected,
                deliveries_by_cpu: f.deliveries_by_cpu.clone(),
                reads_by_cpu: f.reads_by_cpu.clone(),
                reads: f.reads(),
                mismatched_reads: f.mismatched_reads,
            })
            .collect();
        load.softnet = p.proc.softnet.clone();
        load.nics = p
            .proc
            .nics
            .iter()
            .map(|n| (n.device.clone(), n.clone()))
            .collect();
        for r in &p.netdevs {
            *load
                .device_packets
                .entry((r.device.clone(), r.cpu))
                .or_default() += r.work;
            *load.device_polls.entry(r.device.clone()).or_default() += r.polls;
        }
        load.secs = p.duration_secs();
        for r in p.softirqs.iter().filter(|r| r.vector == Vector::NetRx) {
            load.net_rx.insert(
                r.cpu,
                NetRxCpu {
                    gap_p99_ns: r
                        .raise_delay
                        .summary
                        .p99_ns
                        .saturating_add(r.handler.summary.p99_ns),
                    time_ns: r.time_ns,
                    runs: r.count,
                    ksoftirqd_runs: r.ksoftirqd_runs,
                },
            );
        }
        load
    }

    fn weight(&self, irq: u32) -> f64 {
        self.irq_weight.get(&irq).copied().unwrap_or(0.0)
    }
}

#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Plan only these interfaces; empty = every NIC with queue IRQs.
    pub ifaces: Vec<String>,
    /// Use only these CPUs (further limited to online, non-isolated, non-nohz_full ones).
    pub cpus: Option<Vec<u32>>,
    /// Above this many interrupts per second, RPS leaves the IRQ's CPU out (scaling.rst).
    pub high_irq_rate: f64,
    /// A flow counts as mismatched above this share of reads on another CPU.
    pub mismatch_threshold: f64,
    /// Where the receive processing of mismatched flows goes.
    pub strategy: Strategy,
    /// Whether a steering plan carries the levers `tune` judges in trials of their own too
    /// (the drop levers, threaded NAPI): `irqtune plan` makes one plan of everything measured.
    pub separate_trials: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            ifaces: Vec::new(),
            cpus: None,
            high_irq_rate: policy::RPS_HIGH_IRQ_RATE,
            mismatch_threshold: policy::MISMATCHED_FLOW,
            strategy: Strategy::default(),
            separate_trials: true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanningError {
    #[error("no network interface {0:?} here (interfaces: {1})")]
    NoIface(String, String),
    #[error("none of the CPUs {0} may take interrupts (online, not isolated, not nohz_full: {1})")]
    NoCpus(String, String),
    #[error("CPU {0} does not exist here (possible CPUs: {1})")]
    UnknownCpu(u32, String),
    #[error("CPU {0} is offline (online CPUs: {1})")]
    OfflineCpu(u32, String),
    #[error("no CPU here may take interrupts: every online CPU ({online}) is isolated (isolated: {isolated}; nohz_full: {nohz_full}), and irqtune does not move interrupts onto those; boot with fewer CPUs in isolcpus= / nohz_full= to leave some for housekeeping")]
    NoHousekeepingCpus {
        online: String,
        isolated: String,
        nohz_full: String,
    },
}

/// RFS table size for `flows` concurrent flows: a power of two >= 2x flows, at least 32768.
struct Planner<'a> {
    m: &'a Machine,
    load: &'a Load,
    opts: &'a PlanOptions,
    changes: Vec<Change>,
    notes: Vec<String>,
    /// Load per CPU of the IRQs that stay where they are, plus what the plan put there.
    cpu_load: BTreeMap<u32, f64>,
    /// Queue vectors the plan put on each CPU (the tie-break when loads are equal, as on an
    /// idle machine: a second NIC then takes other cores than the first).
    placed: BTreeMap<u32, u32>,
    /// The CPUs reading mismatched flows (set by [`Strategy::AwayFromReaders`]).
    readers: Vec<u32>,
}

fn pct(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        "0%".into()
    } else {
        format!("{:.0}%", 100.0 * part / whole)
    }
}

/// The CPUs one NIC's steering may use: the usable CPUs of the NIC's NUMA node (all usable
/// CPUs when the node has none or is unknown), in spreading order: one thread of each
/// physical core, then the SMT siblings.
struct Pool {
    order: Vec<u32>,
    cores: usize,
    /// "NUMA node 1 (the NIC's)" or "the usable CPUs", for the reasons.
    place: String,
}

/// A receive queue's interrupt vector to place.
struct QueueVector {
    irq: u32,
    queue: u32,
    weight: f64,
}

impl Planner<'_> {
    fn nbits(&self) -> u32 {
        self.m.topology.nr_cpu_ids
    }

    fn mask(&self, cpus: &[u32]) -> String {
        cpulist::format_mask(cpus, self.nbits())
    }

    /// Records a change unless the current value already equals the proposal.
    fn propose(
        &mut self,
        knob: Knob,
        current: Option<&str>,
        proposed: String,
        reason: String,
        evidence: String,
    ) {
        let Some(current) = current else {
            self.notes.push(format!(
                "{knob}: /{} is missing here, so it cannot be set (kernel without this feature?)",
                knob.path()
            ));
            return;
        };
        let kind = knob.value_kind();
        if Value::parse(kind, current).ok() == Value::parse(kind, &proposed).ok() {
            return;
        }
        self.changes.push(Change {
            path: format!("/{}", knob.path()),
            knob,
            current: current.to_string(),
            proposed,
            reason,
            evidence,
        });
    }

    /// Where an IRQ runs: its effective CPU, else its allowed CPUs.
    fn irq_cpus(&self, irq: u32) -> Vec<u32> {
        self.m
            .irq(irq)
            .map(|i| i.effective.clone().unwrap_or_else(|| i.affinity.clone()))
            .unwrap_or_default()
    }

    /// Spreads each IRQ's weight over the CPUs where it was counted.
    fn seed_cpu_load(&mut self, moving: &BTreeSet<u32>) {
        for irq in &self.m.irqs {
            if moving.contains(&irq.irq) {
                continue;
            }
            let w = self.load.weight(irq.irq);
            let total = irq.total() as f64;
            if w <= 0.0 || total <= 0.0 {
                continue;
            }
            for (col, &n) in irq.counts.iter().enumerate() {
                if let Some(&cpu) = self.m.interrupt_cpus.get(col) {
                    *self.cpu_load.entry(cpu).or_default() += w * n as f64 / total;
                }
            }
        }
    }

    fn pool(&mut self, nic: &Nic, allowed: &[u32]) -> Pool {
        let topo = &self.m.topology;
        let node_cpus: Vec<u32> = match nic.node.and_then(|n| topo.node_cpus(n)) {
            Some(cpus) => allowed
                .iter()
                .copied()
                .filter(|c| cpus.contains(c))
                .collect(),
            None => allowed.to_vec(),
        };
        let (cpus, place) = match (node_cpus.is_empty(), nic.node) {
            (true, Some(n)) => {
                self.notes.push(format!(
                    "{}: no usable CPU on its NUMA node {n}; using CPUs {}",
                    nic.name,
                    cpulist::format(allowed)
                ));
                (allowed.to_vec(), "the usable CPUs".to_string())
            }
            (false, Some(n)) => (node_cpus, format!("NUMA node {n} (the NIC's)")),
            (_, None) => (node_cpus, "the usable CPUs".to_string()),
        };
        Pool {
            order: topo.spread_order(&cpus),
            cores: topo.cores_in(&cpus),
            place,
        }
    }

    /// The NIC's receive vectors, heaviest first (queue order among equals); its tx-only
    /// vectors; kernel-managed ones are noted and left alone.
    fn vectors(&mut self, nic: &Nic) -> (Vec<QueueVector>, Vec<(u32, u32)>) {
        let (mut rx, mut tx) = (Vec::new(), Vec::new());
        for irq in self.m.irqs.iter() {
            let IrqUse::NetQueue { iface, queue, dir } = &irq.usage else {
                continue;
            };
            if iface != &nic.name {
                continue;
            }
            if irq.managed {
                self.notes.push(format!(
                    "IRQ {} {} is kernel-managed ({}); left alone",
                    irq.irq,
                    irq.name,
                    irq.managed_reason.as_deref().unwrap_or("managed")
                ));
                continue;
            }
            match dir {
                QueueKind::Tx => tx.push((irq.irq, *queue)),
                _ => rx.push(QueueVector {
                    irq: irq.irq,
                    queue: *queue,
                    weight: self.load.weight(irq.irq),
                }),
            }
        }
        rx.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.queue.cmp(&b.queue)));
        (rx, tx)
    }

    /// One vector per slot, slots taken in rounds of the pool's spreading order: each core
    /// once before any core twice, SMT siblings before a second vector on one thread. Within
    /// a round the heaviest vector gets the least loaded CPU. Two vectors share a CPU only when
    /// there are more vectors than CPUs. Returns rx queue -> the CPUs serving it.
    fn place_vectors(
        &mut self,
        nic: &Nic,
        pool: &Pool,
        vectors: &[QueueVector],
        tx_only: &[(u32, u32)],
    ) -> BTreeMap<u32, Vec<u32>> {
        let mut serving = BTreeMap::new();
        let n = vectors.len();
        let cpus = pool.order.len();
        let reason = spread_reason(nic, pool, n);
        let total: f64 = vectors.iter().map(|v| v.weight).sum();
        for (round, chunk) in vectors.chunks(cpus.max(1)).enumerate() {
            let slots = self.round_slots(pool, round, chunk.len());
            for (v, &cpu) in chunk.iter().zip(&slots) {
                serving.insert(v.queue, vec![cpu]);
                self.place_vector(v, cpu, pool, total, &reason);
            }
        }
        for &(irq, queue) in tx_only {
            let Some(cpus) = serving.get(&queue).cloned() else {
                continue;
            };
            let cur = self.m.irq(irq).map(|i| self.mask(&i.affinity));
            self.propose(
                Knob::IrqAffinity { irq },
                cur.as_deref(),
                self.mask(&cpus),
                format!("tx vector with its rx queue {queue}"),
                format!(
                    "rx queue {queue} of {} goes to CPU {}",
                    nic.name,
                    cpulist::format(&cpus)
                ),
            );
        }
        serving
    }

    /// A round's slots, least loaded first (then the fewest vectors, then the pool's order).
    fn round_slots(&self, pool: &Pool, round: usize, len: usize) -> Vec<u32> {
        let (cpus, cores) = (pool.order.len(), pool.cores);
        let mut slots: Vec<u32> = pool.order.iter().copied().take(len).collect();
        if round == 0 && len < cpus {
            // A short first round may pick the least loaded cores, not the first ones:
            // rank all cores' first threads (then siblings) and take the best.
            slots = pool.order.iter().copied().take(cores.max(len)).collect();
        }
        let key = |p: &Self, c: u32| {
            (
                p.cpu_load.get(&c).copied().unwrap_or(0.0),
                p.placed.get(&c).copied().unwrap_or(0),
            )
        };
        slots.sort_by(|&a, &b| {
            let (ka, kb) = (key(self, a), key(self, b));
            ka.0.total_cmp(&kb.0).then(ka.1.cmp(&kb.1)).then(
                pool.order
                    .iter()
                    .position(|&x| x == a)
                    .cmp(&pool.order.iter().position(|&x| x == b)),
            )
        });
        slots
    }

    /// Moves vector `v` to `cpu`, counting its load there.
    fn place_vector(&mut self, v: &QueueVector, cpu: u32, pool: &Pool, total: f64, reason: &str) {
        let before = self.cpu_load.get(&cpu).copied().unwrap_or(0.0);
        *self.cpu_load.entry(cpu).or_default() += v.weight;
        *self.placed.entry(cpu).or_default() += 1;
        let Some(info) = self.m.irq(v.irq) else {
            return;
        };
        let (now, affinity) = (self.irq_cpus(v.irq), info.affinity.clone());
        let core = match self.m.topology.core_of(cpu) {
            CoreKey::PackageCore(p, c) => format!("package {p} core {c}"),
            CoreKey::FirstSibling(f) => format!("the core of CPU {f}"),
        };
        let evidence = format!(
            "{} {}: {:.0} {} ({} of the NIC's), on CPU {} now; CPU {cpu} ({core}) had the least load ({before:.0} {}) of the CPUs left in this round of {}",
            info.irq,
            info.name,
            v.weight,
            self.load.unit,
            pct(v.weight, total),
            cpulist::format(&now),
            self.load.unit,
            cpulist::format(&pool.order),
        );
        self.propose(
            Knob::IrqAffinity { irq: v.irq },
            Some(&self.mask(&affinity)),
            self.mask(&[cpu]),
            reason.to_string(),
            evidence,
        );
    }

    /// RPS when the NIC has fewer receive vectors than the CPUs that read its traffic: toward
    /// the readers of flows RFS cannot steer (when those are the only mismatched ones), else
    /// over the pool's cores (leaving out the IRQ's CPU when its rate is high).
    fn plan_rps(
        &mut self,
        nic: &Nic,
        pool: &Pool,
        rx_vectors: usize,
        mismatched: &Mismatched,
        serving: &mut BTreeMap<u32, Vec<u32>>,
    ) -> Rps {
        let in_pool = |c: &u32| pool.order.contains(c);
        let readers: BTreeSet<u32> = self
            .load
            .flows
            .iter()
            .flat_map(|f| f.reads_by_cpu.keys().copied())
            .filter(in_pool)
            .collect();
        let wanted = if readers.is_empty() {
            pool.cores
        } else {
            readers.len().max(2)
        };
        let rps_on = nic.rx.iter().any(|q| !q.rps_list().is_empty());
        let kept = Rps {
            on: rps_on,
            to_readers: Vec::new(),
        };
        if rx_vectors >= 2 || nic.rx.is_empty() {
            return kept;
        }
        let unsteerable_readers: Vec<u32> = if mismatched.steerable.is_empty() {
            let mut r: Vec<u32> = mismatched
                .unsteerable
                .iter()
                .flat_map(|f| f.reads_by_cpu.keys().copied())
                .filter(in_pool)
                .collect();
            r.sort_unstable();
            r.dedup();
            r
        } else {
            Vec::new()
        };
        if !unsteerable_readers.is_empty() {
            self.rps_to_readers(nic, mismatched, &unsteerable_readers, serving);
            return Rps {
                on: true,
                to_readers: unsteerable_readers,
            };
        }
        if rx_vectors >= wanted {
            return kept;
        }
        for q in &nic.rx {
            self.rps_spread(nic, q, pool, rx_vectors, wanted, serving);
        }
        Rps {
            on: true,
            to_readers: Vec::new(),
        }
    }

    /// RPS of every rx queue toward the CPUs that read flows RFS cannot steer.
    fn rps_to_readers(
        &mut self,
        nic: &Nic,
        mismatched: &Mismatched,
        readers: &[u32],
        serving: &mut BTreeMap<u32, Vec<u32>>,
    ) {
        let labels: Vec<&str> = mismatched
            .unsteerable
            .iter()
            .map(|f| f.label.as_str())
            .collect();
        for q in &nic.rx {
            serving.insert(q.index, readers.to_vec());
            self.propose(
                Knob::RpsCpus {
                    iface: nic.name.clone(),
                    queue: q.index,
                },
                q.rps_cpus.as_deref(),
                self.mask(readers),
                "RPS toward the CPU(s) that read flows RFS cannot steer (unconnected UDP), so their softirq runs where they are read".to_string(),
                format!(
                    "{} read on CPU {}",
                    labels.join("; "),
                    cpulist::format(readers)
                ),
            );
        }
    }

    /// RPS of rx queue `q` over the pool's cores, leaving out the IRQ's CPU when its rate is
    /// high.
    fn rps_spread(
        &mut self,
        nic: &Nic,
        q: &RxQueue,
        pool: &Pool,
        rx_vectors: usize,
        wanted: usize,
        serving: &mut BTreeMap<u32, Vec<u32>>,
    ) {
        let irq_cpus: Vec<u32> = q.irq.map(|i| self.irq_cpus(i)).unwrap_or_default();
        let rate = q.irq.and_then(|i| self.load.irq_rate.get(&i).copied());
        let mut cpus: Vec<u32> = pool
            .order
            .iter()
            .copied()
            .take(pool.cores.max(2).min(pool.order.len()))
            .collect();
        let mut why_exclude = String::new();
        if let (Some(rate), [irq_cpu]) = (rate, irq_cpus.as_slice()) {
            if rate > self.opts.high_irq_rate && cpus.len() > 2 {
                cpus.retain(|c| c != irq_cpu);
                why_exclude = format!(
                    "; CPU {irq_cpu} left out: it takes the IRQ at {rate:.0}/s (scaling.rst)"
                );
            }
        }
        cpus.sort_unstable();
        let evidence = match (q.irq, rate) {
            (Some(irq), Some(rate)) => format!(
                "{} has {rx_vectors} rx vector(s) for {wanted} CPUs; IRQ {irq} on CPU {} at {rate:.0}/s{why_exclude}",
                nic.name,
                cpulist::format(&irq_cpus)
            ),
            (Some(irq), None) => format!(
                "{} has {rx_vectors} rx vector(s) for {wanted} CPUs; IRQ {irq} on CPU {} ({:.0} {}){why_exclude}",
                nic.name,
                cpulist::format(&irq_cpus),
                self.load.weight(irq),
                self.load.unit
            ),
            _ => format!(
                "{} has no rx interrupt vectors (virtual device) and {} rx queue(s) for {wanted} CPUs",
                nic.name,
                nic.rx.len()
            ),
        };
        serving.entry(q.index).or_insert_with(|| cpus.clone());
        self.propose(
            Knob::RpsCpus {
                iface: nic.name.clone(),
                queue: q.index,
            },
            q.rps_cpus.as_deref(),
            self.mask(&cpus),
            format!(
                "RPS: spread {}'s receive processing over cores of {}",
                nic.name, pool.place
            ),
            evidence,
        );
    }

    /// RFS whenever RPS is on or flows are read away from their softirq CPU: the global table
    /// and each rx queue's share of it. Unsteerable mismatched flows are explained in notes.
    fn plan_rfs(&mut self, nic: &Nic, rps: &Rps, mismatched: &Mismatched) {
        for f in &mismatched.unsteerable {
            self.notes.push(format!(
                "{}: {:.0}% of reads on another CPU than the softirq, and RFS cannot steer it (unconnected UDP: the kernel records no flow hash for it); {}",
                f.label,
                100.0 * f.mismatch_ratio(),
                if !rps.to_readers.is_empty() {
                    format!(
                        "{} RPS goes to its reader CPU(s) {} instead",
                        nic.name,
                        cpulist::format(&rps.to_readers)
                    )
                } else {
                    "pin the reader to the CPU that receives it, or point RPS at the reader's CPUs".to_string()
                }
            ));
        }
        let steerable = mismatched.steerable.len();
        if !rps.on && steerable == 0 {
            return;
        }
        let flows = self.load.flows.len() as u64;
        let entries = policy::rfs_entries(flows);
        let worst = mismatched
            .steerable
            .iter()
            .max_by(|a, b| a.mismatch_ratio().total_cmp(&b.mismatch_ratio()));
        let why = match worst {
            Some(worst) => format!(
                "RFS: {steerable} flow(s) read on another CPU than their softirq (worst: {} at {:.0}%)",
                worst.label,
                100.0 * worst.mismatch_ratio()
            ),
            None => "RFS with RPS: steer each flow's receive processing to the CPU of its reader"
                .to_string(),
        };
        let cur = self.m.rps_sock_flow_entries;
        // A larger table is kept: shrinking it would only add collisions.
        if cur.is_none_or(|c| c < entries) {
            self.propose(
                Knob::RpsSockFlowEntries,
                cur.map(|c| c.to_string()).as_deref(),
                entries.to_string(),
                why.clone(),
                format!(
                    "{flows} flow(s) seen; table = power of two >= 2x flows, at least {}",
                    policy::RFS_MIN_ENTRIES
                ),
            );
        }
        let table = cur.unwrap_or(0).max(entries).min(policy::RFS_MAX_ENTRIES);
        let per_queue = (table / nic.rx.len().max(1) as u64).next_power_of_two();
        for q in &nic.rx {
            if q.rps_flow_cnt.is_some_and(|c| c >= per_queue) {
                continue;
            }
            self.propose(
                Knob::RpsFlowCnt {
                    iface: nic.name.clone(),
                    queue: q.index,
                },
                q.rps_flow_cnt.map(|c| c.to_string()).as_deref(),
                per_queue.to_string(),
                why.clone(),
                format!(
                    "rps_sock_flow_entries {table} / {} rx queue(s)",
                    nic.rx.len()
                ),
            );
        }
    }

    /// XPS: tx queue q sends from the CPUs that serve rx queue q (a multi-queue device only).
    fn plan_xps(&mut self, nic: &Nic, pool: &Pool, serving: &BTreeMap<u32, Vec<u32>>) {
        if nic.tx.len() < 2 {
            return;
        }
        let rx_count = serving.len().max(1);
        for (i, q) in nic.tx.iter().enumerate() {
            let cpus = match serving.get(&q.index) {
                Some(c) if !c.is_empty() => c.clone(),
                _ if serving.len() >= 2 => serving
                    .values()
                    .nth(i % rx_count)
                    .cloned()
                    .unwrap_or_default(),
                _ => pool
                    .order
                    .get(i % pool.order.len().max(1))
                    .map(|&c| vec![c])
                    .unwrap_or_default(),
            };
            if cpus.is_empty() {
                continue;
            }
            self.propose(
                Knob::XpsCpus {
                    iface: nic.name.clone(),
                    queue: q.index,
                },
                q.xps_cpus.as_deref(),
                self.mask(&cpus),
                format!(
                    "XPS: transmit on the queue of the CPU that receives (tx-{} with rx-{})",
                    q.index, q.index
                ),
                format!(
                    "rx queue {} served by CPU {}",
                    q.index,
                    cpulist::format(&cpus)
                ),
            );
        }
    }

    fn into_plan(mut self, created_unix: u64) -> Plan {
        // One write per knob: several NICs propose the same global table.
        let mut seen = BTreeSet::new();
        self.changes.retain(|c| seen.insert(c.knob.clone()));
        Plan {
            format: PLAN_FORMAT.into(),
            version: PLAN_VERSION,
            host: self.m.host.clone(),
            created_unix,
            load_source: self.load.source.clone(),
            strategy: self.opts.strategy,
            changes: self.changes,
            notes: self.notes,
        }
    }

    /// The receive drop levers: the backlog where it dropped, the budget where NET_RX ran out
    /// of packets before time, the rx ring of a NIC that ran out of descriptors.
    fn plan_drops(&mut self, nics: &[&Nic]) {
        let load = self.load;
        if load.secs <= 0.0 {
            return;
        }
        self.plan_backlog();
        self.plan_budget();
        for nic in nics {
            self.plan_ring(nic);
        }
        let limited: u64 = load.softnet.iter().map(|r| r.flow_limit_count).sum();
        if limited > 0 {
            self.notes.push(format!(
                "{limited} packet(s) dropped by flow limit (flow_limit_cpu_bitmap): one flow filled half a backlog and the kernel dropped it to keep room for the others; left as it is"
            ));
        }
    }

    /// A NIC's rx ring: when the NIC dropped packets for want of a descriptor (missed, fifo,
    /// over) and its ring is below the driver's maximum, double it (at most the maximum):
    /// room for a longer burst between two polls. One step, judged by `tune` on the drops.
    fn plan_ring(&mut self, nic: &Nic) {
        let Some(counters) = self.load.nics.get(&nic.name) else {
            return;
        };
        let drops = counters.no_buffer();
        if drops == 0 {
            return;
        }
        let rings = nic.layer.as_ref().and_then(|l| l.rings.as_ref());
        let (Some(cur), Some(max)) = (
            rings.and_then(|r| r.get(RingKind::Rx)),
            rings.and_then(|r| r.max(RingKind::Rx)),
        ) else {
            self.notes.push(format!(
                "{}: {drops} packet(s) dropped for want of an rx descriptor, but its ring size cannot be read or set here ({})",
                nic.name,
                nic.layer
                    .as_ref()
                    .map(|l| l.unavailable.join("; "))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "no ethtool-netlink: a captured tree?".into())
            ));
            return;
        };
        let evidence = format!(
            "{drops} no-buffer drops (missed {}, fifo {}, over {}) of {} packets in {:.1} s; rx ring {cur} of {max}",
            counters.rx_missed_errors,
            counters.rx_fifo_errors,
            counters.rx_over_errors,
            counters.rx_packets,
            self.load.secs
        );
        if cur >= max {
            self.notes.push(format!(
                "{}: the rx ring is at its maximum and the NIC still drops ({evidence}); spread the receive load over more queues or CPUs",
                nic.name
            ));
            return;
        }
        self.propose(
            Knob::Ring {
                iface: nic.name.clone(),
                ring: RingKind::Rx,
            },
            Some(&cur.to_string()),
            cur.saturating_mul(2).min(max).to_string(),
            format!("the NIC ran out of rx descriptors: double the ring (the driver's maximum is {max})"),
            evidence,
        );
    }

    /// netdev_max_backlog: large enough for the packets that arrive at a CPU while it waits
    /// for its NET_RX run (the measured rate times the measured p99 gap), at least double.
    fn plan_backlog(&mut self) {
        let load = self.load;
        let mut want = 0u64;
        let mut evidence = Vec::new();
        for r in &load.softnet {
            let drops = r.dropped.saturating_sub(r.flow_limit_count);
            if drops == 0 {
                continue;
            }
            let rate = r.processed.saturating_add(drops) as f64 / load.secs;
            let gap = load.net_rx.get(&r.cpu).map(|n| n.gap_p99_ns).unwrap_or(0);
            let need = (rate * gap as f64 / 1e9).ceil() as u64;
            want = want.max(need);
            evidence.push(format!(
                "CPU {}: {drops} backlog drops in {:.1} s, {:.0} packets/s arriving, NET_RX waits and runs up to {} (p99) -> {need} packets queue",
                r.cpu,
                load.secs,
                rate,
                crate::model::units::fmt_ns(gap)
            ));
        }
        if evidence.is_empty() {
            return;
        }
        let Some(current) = self.m.softnet.netdev_max_backlog else {
            self.propose(
                Knob::NetdevMaxBacklog,
                None,
                String::new(),
                String::new(),
                String::new(),
            );
            return;
        };
        if current >= policy::BACKLOG_MAX {
            self.notes.push(format!(
                "netdev_max_backlog is {current}, at or above the {} irqtune proposes at most: the CPUs that drop cannot keep up; spread the receive processing instead ({})",
                policy::BACKLOG_MAX,
                evidence.join("; ")
            ));
            return;
        }
        let proposed = policy::backlog_size(current, want);
        self.propose(
            Knob::NetdevMaxBacklog,
            Some(&current.to_string()),
            proposed.to_string(),
            format!(
                "the backlog filled and dropped: room for what arrives while NET_RX waits (a power of two, at least double {current} and at least the kernel's default {}, at most {})",
                policy::BACKLOG_KERNEL_DEFAULT,
                policy::BACKLOG_MAX
            ),
            evidence.join("; "),
        );
    }

    /// netdev_budget: when NET_RX runs end on the packet budget before the time limit, the
    /// packets one run can process in netdev_budget_usecs at the measured cost, at most
    /// double. A run that ends on time is left alone: a longer run delays everything else
    /// on the CPU, and spreading the load is the cure.
    fn plan_budget(&mut self) {
        let load = self.load;
        let (Some(budget), Some(usecs)) = (
            self.m.softnet.netdev_budget,
            self.m.softnet.netdev_budget_usecs,
        ) else {
            return;
        };
        let mut fits = u64::MAX;
        let mut evidence = Vec::new();
        let mut on_time = Vec::new();
        for r in load.softnet.iter().filter(|r| r.time_squeeze > 0) {
            let Some(n) = load.net_rx.get(&r.cpu).filter(|n| n.time_ns > 0) else {
                continue;
            };
            if r.processed == 0 {
                continue;
            }
            let per_packet = n.time_ns as f64 / r.processed as f64;
            let in_time = (usecs as f64 * 1000.0 / per_packet).floor() as u64;
            let line = format!(
                "CPU {}: {} time squeezes in {:.1} s, NET_RX {per_packet:.0} ns per packet: {in_time} packets fit in {usecs} us",
                r.cpu, r.time_squeeze, load.secs
            );
            if in_time as f64 >= budget as f64 * (1.0 + policy::BUDGET_MIN_RAISE) {
                fits = fits.min(in_time);
                evidence.push(line);
            } else {
                on_time.push(line);
            }
        }
        if !on_time.is_empty() {
            self.notes.push(format!(
                "NET_RX runs out of time (netdev_budget_usecs {usecs}) before its packet budget: left alone, a longer run delays everything else on the CPU; spread the receive load ({})",
                on_time.join("; ")
            ));
        }
        if evidence.is_empty() {
            return;
        }
        let proposed = policy::budget_size(budget, fits);
        self.propose(
            Knob::NetdevBudget,
            Some(&budget.to_string()),
            proposed.to_string(),
            format!(
                "NET_RX runs end on the packet budget with time left: double it (at least the kernel's default {}), never past what fits in netdev_budget_usecs ({usecs} us) at the measured cost",
                policy::BUDGET_KERNEL_DEFAULT
            ),
            evidence.join("; "),
        );
    }

    /// The share of `nic`'s receive work on its busiest CPU, with where it comes from: the
    /// packets its NAPI polled per CPU (a profile), else its queue interrupts per CPU since
    /// boot. None when it received nothing measurable.
    fn receive_concentration(&self, nic: &Nic) -> Option<(f64, u32, String)> {
        let mut per_cpu: BTreeMap<u32, u64> = BTreeMap::new();
        let what = if self.load.device_packets.keys().any(|(d, _)| d == &nic.name) {
            for ((d, cpu), n) in &self.load.device_packets {
                if d == &nic.name {
                    *per_cpu.entry(*cpu).or_default() += n;
                }
            }
            "packets polled"
        } else {
            for irq in &nic.irqs {
                for &cpu in &self.m.interrupt_cpus {
                    *per_cpu.entry(cpu).or_default() += self.m.irq_count(*irq, cpu);
                }
            }
            "queue interrupts since boot"
        };
        let total: u64 = per_cpu.values().sum();
        let (&cpu, &most) = per_cpu.iter().max_by_key(|(_, n)| **n)?;
        (total > 0).then(|| {
            (
                most as f64 / total as f64,
                cpu,
                format!("{most} of {total} {what} on CPU {cpu}"),
            )
        })
    }

    /// Channels: a NIC with fewer queues than the usable cores of its node, its receive work
    /// concentrated on one CPU, gets as many queues as those cores (up to its maximum). Its
    /// queue vectors are then placed with the rest (they exist for every queue the driver
    /// allows on most drivers; the applier checks each IRQ before it moves it).
    fn plan_channels(&mut self, nic: &Nic, pool: &Pool) {
        let Some(c) = nic.layer.as_ref().and_then(|l| l.channels.as_ref()) else {
            return;
        };
        let kind = if c.combined_max.unwrap_or(0) > 0 {
            ChannelKind::Combined
        } else if c.rx_max.unwrap_or(0) > 0 {
            ChannelKind::Rx
        } else {
            return;
        };
        let (Some(cur), Some(max)) = (c.get(kind), c.max(kind)) else {
            return;
        };
        let want = u32::try_from(pool.cores).unwrap_or(u32::MAX).min(max);
        if cur >= want {
            return;
        }
        let Some((share, cpu, evidence)) = self.receive_concentration(nic) else {
            return;
        };
        if share < policy::NET_RX_CONCENTRATED {
            self.notes.push(format!(
                "{}: {cur} {} channel(s) of {max}, but its receive work is not concentrated ({:.0}% on CPU {cpu}); channels left as they are",
                nic.name,
                kind.name(),
                share * 100.0
            ));
            return;
        }
        self.propose(
            Knob::Channels {
                iface: nic.name.clone(),
                channel: kind,
            },
            Some(&cur.to_string()),
            want.to_string(),
            format!(
                "{} {} channel(s) for {} core(s) of {}: one queue (and queue IRQ) per core, up to the NIC's {max}",
                cur,
                kind.name(),
                pool.cores,
                pool.place
            ),
            format!("{evidence} ({:.0}%)", share * 100.0),
        );
    }

    /// Coalescing: a NIC whose receive interrupts come faster than
    /// [`policy::COALESCE_IRQ_RATE`] while each poll finds fewer than
    /// [`policy::COALESCE_PACKETS_PER_POLL`] packets spends its CPU on interrupts that bring
    /// one packet each: adaptive rx coalescing (where the driver has it) lets the NIC batch
    /// under load and interrupt at once when idle. A fixed rx-usecs would trade latency for
    /// it at every load: not proposed, said.
    /// Receive interrupts that each bring about one packet at a rate where their cost shows:
    /// adaptive rx coalescing where the driver has it.
    fn plan_coalesce(&mut self, nic: &Nic) {
        let rate: f64 = nic
            .rx
            .iter()
            .filter_map(|q| q.irq)
            .filter_map(|irq| self.load.irq_rate.get(&irq))
            .sum();
        let polls = self.load.device_polls.get(&nic.name).copied().unwrap_or(0);
        let packets: u64 = self
            .load
            .device_packets
            .iter()
            .filter(|((d, _), _)| d == &nic.name)
            .map(|(_, n)| n)
            .sum();
        if rate < policy::COALESCE_IRQ_RATE || polls == 0 {
            return;
        }
        let per_poll = packets as f64 / polls as f64;
        if per_poll >= policy::COALESCE_PACKETS_PER_POLL {
            return;
        }
        let evidence = format!(
            "{rate:.0} rx interrupts/s, {per_poll:.2} packets per poll ({packets} packets in {polls} polls)"
        );
        self.propose_adaptive(nic, CoalesceParam::AdaptiveRx, evidence);
    }

    /// The same for transmit completions, on the NIC's tx-only vectors (a combined vector's
    /// interrupts are the receive rule's): packets sent per tx interrupt, from the device's
    /// tx_packets and the vectors' measured interrupt counts.
    fn plan_tx_coalesce(&mut self, nic: &Nic, tx_only: &[(u32, u32)]) {
        let rate: f64 = tx_only
            .iter()
            .filter_map(|(irq, _)| self.load.irq_rate.get(irq))
            .sum();
        let interrupts = rate * self.load.secs;
        let Some(sent) = self.load.nics.get(&nic.name).map(|c| c.tx_packets) else {
            return;
        };
        if rate < policy::COALESCE_IRQ_RATE || interrupts < 1.0 {
            return;
        }
        let per_irq = sent as f64 / interrupts;
        if per_irq >= policy::COALESCE_PACKETS_PER_POLL {
            return;
        }
        let evidence = format!(
            "{rate:.0} tx completion interrupts/s on {} tx-only vector(s), {per_irq:.2} packets sent per interrupt ({sent} packets)",
            tx_only.len()
        );
        self.propose_adaptive(nic, CoalesceParam::AdaptiveTx, evidence);
    }

    /// Adaptive coalescing on where the driver has it and it is off; said where the driver
    /// lacks it: a fixed usecs/frames value trades latency at every load and is not guessed.
    fn propose_adaptive(&mut self, nic: &Nic, param: CoalesceParam, evidence: String) {
        let coalesce = nic.layer.as_ref().and_then(|l| l.coalesce.as_ref());
        let (state, dir) = match param {
            CoalesceParam::AdaptiveTx => (coalesce.and_then(|c| c.adaptive_tx), "tx"),
            _ => (coalesce.and_then(|c| c.adaptive_rx), "rx"),
        };
        match state {
            Some(false) => self.propose(
                Knob::Coalesce {
                    iface: nic.name.clone(),
                    param,
                },
                Some("0"),
                "1".into(),
                format!("{dir} interrupts that bring about one packet each: adaptive {dir} coalescing batches them under load and keeps the idle latency"),
                evidence,
            ),
            Some(true) => {}
            None => self.notes.push(format!(
                "{}: {evidence}, but the driver has no adaptive {dir} coalescing ({}); a fixed {dir}-usecs or {dir}-frames trades latency at every load and is not proposed",
                nic.name,
                if coalesce.is_some() { "not in what it reports" } else { "coalescing not readable" }
            )),
        }
    }

    /// Threaded NAPI for a device whose NAPI polls run on its readers' CPUs, taking a share
    /// of them a trial could show the gain of, or falling to ksoftirqd there: the polls move
    /// from softirq context (which runs where the IRQ or the sender was) into kthreads,
    /// placed on the NIC's node off the readers' CPUs where there are such CPUs (else left to
    /// the scheduler, and said).
    fn plan_threaded(&mut self, nics: &[&Nic], allowed: &[u32]) {
        let readers: BTreeSet<u32> = self
            .load
            .flows
            .iter()
            .flat_map(|f| {
                f.reads_by_cpu
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, _)| *c)
            })
            .collect();
        for nic in nics {
            let hot: Vec<String> = self
                .load
                .device_packets
                .iter()
                .filter(|((d, cpu), n)| d == &nic.name && **n > 0 && readers.contains(cpu))
                .filter_map(|((_, cpu), n)| {
                    let r = self.load.net_rx.get(cpu)?;
                    let ksoftirqd = r.ksoftirqd_runs as f64 / r.runs.max(1) as f64;
                    let time = if self.load.secs > 0.0 {
                        r.time_ns as f64 / (self.load.secs * 1e9)
                    } else {
                        0.0
                    };
                    let overloaded = r.runs >= policy::KSOFTIRQD_MIN_RUNS
                        && ksoftirqd > policy::KSOFTIRQD_SHARE;
                    (overloaded || time >= policy::NAPI_ON_READERS_SHARE).then(|| {
                        format!(
                            "CPU {cpu}: readers read there, {} polled {n} packets there, NET_RX took {:.1}% of it, ksoftirqd ran {:.0}% of its NET_RX runs ({} of {})",
                            nic.name,
                            time * 100.0,
                            ksoftirqd * 100.0,
                            r.ksoftirqd_runs,
                            r.runs
                        )
                    })
                })
                .collect();
            if hot.is_empty() {
                continue;
            }
            let evidence = hot.join("; ");
            match nic.napi.threaded {
                Some(0) => {}
                Some(_) => continue,
                None => {
                    self.notes.push(format!(
                        "{}: {evidence}; threaded NAPI would move its polls to kthreads, but this kernel has no /sys/class/net/{}/threaded (5.12+)",
                        nic.name, nic.name
                    ));
                    continue;
                }
            }
            self.propose(
                Knob::NapiThreaded { iface: nic.name.clone() },
                Some("0"),
                "1".into(),
                format!("{}'s receive work runs on its readers' CPUs (in softirq context, or ksoftirqd): threaded NAPI polls it in kthreads the scheduler can place, and irqtune places off the readers", nic.name),
                evidence,
            );
            self.place_napi_kthreads(nic, allowed, &readers);
        }
    }

    /// Each of the device's NAPI kthreads on the NIC's node's CPUs without readers.
    fn place_napi_kthreads(&mut self, nic: &Nic, allowed: &[u32], readers: &BTreeSet<u32>) {
        let napis: Vec<u32> = self
            .m
            .napi
            .iter()
            .flat_map(|t| &t.napis)
            .filter(|n| n.device == nic.name)
            .map(|n| n.id)
            .collect();
        let pool = self.pool(nic, allowed);
        let away: Vec<u32> = pool
            .order
            .iter()
            .copied()
            .filter(|c| !readers.contains(c))
            .collect();
        let Some(start) = self.m.new_kthread_cpus.clone() else {
            self.notes.push(format!(
                "{}: kthreadd's CPUs unknown: its NAPI kthreads are left to the scheduler",
                nic.name
            ));
            return;
        };
        if napis.is_empty() {
            self.notes.push(format!(
                "{}: its NAPI ids are unknown (netdev-genl napi-get, Linux 6.8+): its kthreads are left to the scheduler",
                nic.name
            ));
            return;
        }
        if away.is_empty() {
            self.notes.push(format!(
                "{}: every usable CPU of {} has readers: its NAPI kthreads are left to the scheduler",
                nic.name, pool.place
            ));
            return;
        }
        let (current, proposed) = (self.mask(&start), self.mask(&away));
        for napi in napis {
            self.propose(
                Knob::NapiKthread {
                    iface: nic.name.clone(),
                    napi,
                },
                Some(&current),
                proposed.clone(),
                format!(
                    "NAPI {napi}'s kthread on {} without the readers' CPUs",
                    pool.place
                ),
                format!(
                    "readers on CPUs {}",
                    cpulist::format(&readers.iter().copied().collect::<Vec<_>>())
                ),
            );
        }
    }

    fn plan_nic(&mut self, nic: &Nic, allowed: &[u32]) {
        let mismatched = Mismatched::of(self.load, self.opts.mismatch_threshold);
        let allowed = match self.opts.strategy {
            Strategy::FollowReaders => allowed.to_vec(),
            Strategy::AwayFromReaders => match self.away_from_readers(nic, allowed, &mismatched) {
                Some(rest) => rest,
                None => return,
            },
            Strategy::Drops | Strategy::Threaded => return,
        };
        let pool = self.pool(nic, &allowed);
        self.plan_channels(nic, &pool);
        self.plan_coalesce(nic);
        let (vectors, tx_only) = self.vectors(nic);
        self.plan_tx_coalesce(nic, &tx_only);
        let mut serving = if vectors.len() >= 2 {
            self.place_vectors(nic, &pool, &vectors, &tx_only)
        } else {
            vectors
                .first()
                .map(|v| (v.queue, self.irq_cpus(v.irq)))
                .into_iter()
                .collect()
        };
        match self.opts.strategy {
            Strategy::FollowReaders => {
                let rps = self.plan_rps(nic, &pool, vectors.len(), &mismatched, &mut serving);
                self.plan_rfs(nic, &rps, &mismatched);
            }
            Strategy::AwayFromReaders => {
                self.plan_rps_away(nic, &pool, vectors.len(), &mut serving);
            }
            Strategy::Drops | Strategy::Threaded => {}
        }
        self.plan_xps(nic, &pool, &serving);
    }

    /// The usable CPUs without the readers of the mismatched flows; None (with a note) when
    /// there are no such readers or no CPU is left.
    fn away_from_readers(
        &mut self,
        nic: &Nic,
        allowed: &[u32],
        mismatched: &Mismatched,
    ) -> Option<Vec<u32>> {
        let readers: BTreeSet<u32> = mismatched
            .steerable
            .iter()
            .chain(&mismatched.unsteerable)
            .flat_map(|f| f.reads_by_cpu.keys().copied())
            .collect();
        if readers.is_empty() {
            self.notes.push(format!(
                "{}: no flow is read away from its softirq, so there are no readers to keep the receive processing away from",
                nic.name
            ));
            return None;
        }
        let rest: Vec<u32> = allowed
            .iter()
            .copied()
            .filter(|c| !readers.contains(c))
            .collect();
        if rest.is_empty() {
            self.notes.push(format!(
                "{}: every usable CPU ({}) reads the flows; none is left to take their receive processing",
                nic.name,
                cpulist::format(allowed)
            ));
            return None;
        }
        self.readers = readers.into_iter().collect();
        Some(rest)
    }

    /// RPS over the pool (the CPUs other than the readers') where the NIC has fewer than two
    /// receive vectors, and RFS off on its queues: RFS would steer the flows back onto their
    /// readers' CPUs.
    fn plan_rps_away(
        &mut self,
        nic: &Nic,
        pool: &Pool,
        rx_vectors: usize,
        serving: &mut BTreeMap<u32, Vec<u32>>,
    ) {
        let why = format!(
            "keep {}'s receive processing off the CPUs that read its flows ({}), which are busy with the readers",
            nic.name,
            cpulist::format(&self.readers)
        );
        if rx_vectors < 2 {
            let mut cpus = pool.order.clone();
            cpus.sort_unstable();
            for q in &nic.rx {
                serving.insert(q.index, cpus.clone());
                self.propose(
                    Knob::RpsCpus {
                        iface: nic.name.clone(),
                        queue: q.index,
                    },
                    q.rps_cpus.as_deref(),
                    self.mask(&cpus),
                    format!("RPS over {}: {why}", pool.place),
                    format!(
                        "{} has {rx_vectors} rx vector(s); readers on CPU {}",
                        nic.name,
                        cpulist::format(&self.readers)
                    ),
                );
            }
        }
        for q in &nic.rx {
            if q.rps_flow_cnt.is_some_and(|c| c > 0) {
                self.propose(
                    Knob::RpsFlowCnt {
                        iface: nic.name.clone(),
                        queue: q.index,
                    },
                    q.rps_flow_cnt.map(|c| c.to_string()).as_deref(),
                    "0".into(),
                    format!("RFS off on this queue: {why}"),
                    "RFS steers each flow to its reader's CPU".into(),
                );
            }
        }
    }
}

/// RPS after the plan: on or not, and the reader CPUs it was pointed at for unsteerable flows.
struct Rps {
    on: bool,
    to_readers: Vec<u32>,
}

/// Flows read away from their softirq CPU, split by whether RFS can steer them (the kernel
/// records a flow hash only for connected sockets).
struct Mismatched<'a> {
    steerable: Vec<&'a FlowLoad>,
    unsteerable: Vec<&'a FlowLoad>,
}

impl<'a> Mismatched<'a> {
    fn of(load: &'a Load, threshold: f64) -> Self {
        let (steerable, unsteerable) = load
            .flows
            .iter()
            .filter(|f| f.mismatch_ratio() > threshold)
            .partition(|f| f.steerable);
        Mismatched {
            steerable,
            unsteerable,
        }
    }
}

/// Makes a plan. `created_unix` is the plan's timestamp (passed in: the planner does no I/O).
pub fn plan(
    m: &Machine,
    load: &Load,
    opts: &PlanOptions,
    created_unix: u64,
) -> Result<Plan, PlanningError> {
    let allowed = allowed_cpus(m, opts)?;
    let mut notes = Vec::new();
    if m.irqbalance.running {
        notes.push(format!(
            "irqbalance is running (pid {}): it will overwrite IRQ affinity every 10 s; {}",
            m.irqbalance.pid.unwrap_or(0),
            policy::IRQBALANCE_ADVICE
        ));
    }
    let nics = chosen_nics(m, opts)?;
    let moving: BTreeSet<u32> = nics
        .iter()
        .flat_map(|n| {
            m.irqs.iter().filter(move |i| {
                matches!(&i.usage, IrqUse::NetQueue { iface, .. } if iface == &n.name) && !i.managed
            })
        })
        .map(|i| i.irq)
        .collect();
    let mut p = Planner {
        m,
        load,
        opts,
        changes: Vec::new(),
        notes,
        cpu_load: BTreeMap::new(),
        placed: BTreeMap::new(),
        readers: Vec::new(),
    };
    if opts.strategy == Strategy::Drops {
        p.plan_drops(&nics);
        return Ok(p.into_plan(created_unix));
    }
    if opts.strategy == Strategy::Threaded {
        p.plan_threaded(&nics, &allowed);
        return Ok(p.into_plan(created_unix));
    }
    p.seed_cpu_load(&moving);
    // Heaviest NIC first, so it gets the pick of the cores.
    let mut nics = nics;
    nics.sort_by(|a, b| {
        let w = |n: &Nic| n.irqs.iter().map(|i| load.weight(*i)).sum::<f64>();
        w(b).total_cmp(&w(a)).then(a.name.cmp(&b.name))
    });
    for nic in &nics {
        p.plan_nic(nic, &allowed);
    }
    if opts.separate_trials {
        p.plan_drops(&nics);
        p.plan_threaded(&nics, &allowed);
    }
    Ok(p.into_plan(created_unix))
}

/// The plans `tune` tries for the same measurements, in order: each [`Strategy`] that
/// changes something, without repeating a set of changes an earlier one makes.
pub fn candidates(
    m: &Machine,
    load: &Load,
    opts: &PlanOptions,
    created_unix: u64,
) -> Result<Vec<Plan>, PlanningError> {
    let mut out: Vec<Plan> = Vec::new();
    // The softnet levers first, on their own: drops are the most direct evidence, and a
    // trial of them alone says whether they, not the steering, helped.
    let alone = |strategy| {
        plan(
            m,
            load,
            &PlanOptions {
                strategy,
                ..opts.clone()
            },
            created_unix,
        )
    };
    let drops = alone(Strategy::Drops)?;
    if !drops.changes.is_empty() {
        out.push(drops);
    }
    // The first steering plan even when it changes nothing, if nothing else does: its notes
    // say why (kept aside so a threaded NAPI plan, if any, comes first then).
    let mut empty = None;
    for strategy in Strategy::STEERING {
        let o = PlanOptions {
            strategy,
            separate_trials: false,
            ..opts.clone()
        };
        let p = plan(m, load, &o, created_unix)?;
        let same = |q: &Plan| {
            q.changes.len() == p.changes.len()
                && q.changes
                    .iter()
                    .zip(&p.changes)
                    .all(|(a, b)| a.knob == b.knob && a.proposed == b.proposed)
        };
        if !p.changes.is_empty() && !out.iter().any(same) {
            out.push(p);
        } else if strategy == Strategy::FollowReaders && out.is_empty() {
            empty = Some(p);
        }
    }
    // Threaded NAPI last, alone: it moves all of a device's receive work, a bigger step than
    // steering the flows that need it.
    let threaded = alone(Strategy::Threaded)?;
    if !threaded.changes.is_empty() {
        out.push(threaded);
    }
    if out.is_empty() {
        out.extend(empty);
    }
    Ok(out)
}

/// Why a NIC's vectors go where they go: one per core, per SMT thread, or shared.
fn spread_reason(nic: &Nic, pool: &Pool, n: usize) -> String {
    let (cpus, cores) = (pool.order.len(), pool.cores);
    if n <= cores {
        format!(
            "spread {}'s {n} queue vectors over separate physical cores of {}",
            nic.name, pool.place
        )
    } else if n <= cpus {
        format!(
            "{}'s {n} queue vectors for {cores} physical cores of {}: each core takes one before any takes two, on its SMT siblings",
            nic.name, pool.place
        )
    } else {
        format!(
            "{}'s {n} queue vectors for {cpus} CPUs ({cores} cores) of {}: each CPU takes one before any takes two",
            nic.name, pool.place
        )
    }
}

/// The CPUs a plan may use: the housekeeping CPUs, narrowed to `--cpus` (each checked).
fn allowed_cpus(m: &Machine, opts: &PlanOptions) -> Result<Vec<u32>, PlanningError> {
    let topo = &m.topology;
    let mut allowed = topo.housekeeping();
    if allowed.is_empty() {
        let list = |c: &[u32]| match c {
            [] => "none".to_string(),
            c => cpulist::format(c),
        };
        return Err(PlanningError::NoHousekeepingCpus {
            online: list(&topo.online),
            isolated: list(&topo.isolated),
            nohz_full: list(&topo.nohz_full),
        });
    }
    if let Some(cpus) = &opts.cpus {
        for &c in cpus {
            if !topo.possible.contains(&c) {
                return Err(PlanningError::UnknownCpu(
                    c,
                    cpulist::format(&topo.possible),
                ));
            }
            if !topo.online.contains(&c) {
                return Err(PlanningError::OfflineCpu(c, cpulist::format(&topo.online)));
            }
        }
        allowed.retain(|c| cpus.contains(c));
        if allowed.is_empty() {
            return Err(PlanningError::NoCpus(
                cpulist::format(cpus),
                cpulist::format(&topo.housekeeping()),
            ));
        }
    }
    Ok(allowed)
}

/// The NICs a plan steers: those named with `--iface` (each checked), else every NIC with
/// queue interrupts.
fn chosen_nics<'m>(m: &'m Machine, opts: &PlanOptions) -> Result<Vec<&'m Nic>, PlanningError> {
    Ok(if opts.ifaces.is_empty() {
        m.nics
            .iter()
            .filter(|n| {
                m.irqs
                    .iter()
                    .any(|i| matches!(&i.usage, IrqUse::NetQueue { iface, .. } if iface == &n.name))
            })
            .collect()
    } else {
        opts.ifaces
            .iter()
            .map(|name| {
                m.nic(name).ok_or_else(|| {
                    PlanningError::NoIface(
                        name.clone(),
                        m.nics
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })
            })
            .collect::<Result<_, _>>()?
    })
}
