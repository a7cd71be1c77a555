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

use std::collections::{BTreeMap, BTreeSet};

use crate::analysis::plan::{Change, Knob, Plan, Value, PLAN_FORMAT, PLAN_VERSION};
use crate::{
    model::cpulist,
    model::machine::{IrqUse, Machine, Nic, QueueKind},
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
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            ifaces: Vec::new(),
            cpus: None,
            high_irq_rate: 20_000.0,
            mismatch_threshold: 0.2,
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
}

/// RFS table size for `flows` concurrent flows: a power of two >= 2x flows, at least 32768.
pub fn rfs_entries(flows: u64) -> u64 {
    (flows.saturating_mul(2)).max(32768).next_power_of_two()
}

struct Planner<'a> {
    m: &'a Machine,
    load: &'a Load,
    opts: &'a PlanOptions,
    changes: Vec<Change>,
    notes: Vec<String>,
    /// Load per CPU of the IRQs that stay where they are, plus what the plan put there.
    cpu_load: BTreeMap<u32, f64>,
}

fn pct(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        "0%".into()
    } else {
        format!("{:.0}%", 100.0 * part / whole)
    }
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

    fn plan_nic(&mut self, nic: &Nic, allowed: &[u32]) {
        let topo = &self.m.topology;
        let node_cpus: Vec<u32> = match nic.node.and_then(|n| topo.node_cpus(n)) {
            Some(cpus) => allowed
                .iter()
                .copied()
                .filter(|c| cpus.contains(c))
                .collect(),
            None => allowed.to_vec(),
        };
        let (pool_src, where_) = if node_cpus.is_empty() {
            if let Some(n) = nic.node {
                self.notes.push(format!(
                    "{}: no usable CPU on its NUMA node {n}; using CPUs {}",
                    nic.name,
                    cpulist::format(allowed)
                ));
            }
            (allowed.to_vec(), "the usable CPUs".to_string())
        } else {
            let w = match nic.node {
                Some(n) => format!("NUMA node {n} (the NIC's)"),
                None => "the usable CPUs".to_string(),
            };
            (node_cpus, w)
        };
        let order = topo.spread_order(&pool_src);
        let cores = topo.cores_in(&pool_src);

        // Queue vectors that receive, heaviest first; managed ones are reported, not planned.
        let mut vectors: Vec<(u32, u32, f64)> = Vec::new(); // (irq, queue, weight)
        let mut tx_only: Vec<(u32, u32)> = Vec::new();
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
                QueueKind::Tx => tx_only.push((irq.irq, *queue)),
                _ => vectors.push((irq.irq, *queue, self.load.weight(irq.irq))),
            }
        }
        vectors.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)));
        let nic_total: f64 = vectors.iter().map(|v| v.2).sum();

        // rx queue -> CPUs serving it after the plan.
        let mut serving: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        if vectors.len() >= 2 {
            let slots = vectors.len().min(order.len());
            let pool: Vec<u32> = order[..slots].to_vec();
            let siblings_used = slots > cores;
            for (irq, queue, w) in &vectors {
                let cpu = *pool
                    .iter()
                    .enumerate()
                    .min_by(|(ia, a), (ib, b)| {
                        let la = self.cpu_load.get(a).copied().unwrap_or(0.0);
                        let lb = self.cpu_load.get(b).copied().unwrap_or(0.0);
                        la.total_cmp(&lb).then(ia.cmp(ib))
                    })
                    .map(|(_, c)| c)
                    .expect("pool is not empty");
                let before = self.cpu_load.get(&cpu).copied().unwrap_or(0.0);
                *self.cpu_load.entry(cpu).or_default() += w;
                serving.insert(*queue, vec![cpu]);
                let irq_info = self.m.irq(*irq).expect("vector comes from the IRQ list");
                let now = self.irq_cpus(*irq);
                self.propose(
                    Knob::IrqAffinity { irq: *irq },
                    Some(&self.mask(&irq_info.affinity)),
                    self.mask(&[cpu]),
                    format!(
                        "spread {}'s {} queue vectors over {}physical cores of {where_}{}",
                        nic.name,
                        vectors.len(),
                        if siblings_used { "" } else { "separate " },
                        if siblings_used {
                            " (more vectors than cores: SMT siblings too)"
                        } else {
                            ""
                        }
                    ),
                    format!(
                        "{} {}: {:.0} {} ({} of the NIC's), on CPU {} now; CPU {cpu} had the least load ({:.0} {}) among CPUs {}",
                        irq_info.irq,
                        irq_info.name,
                        w,
                        self.load.unit,
                        pct(*w, nic_total),
                        cpulist::format(&now),
                        before,
                        self.load.unit,
                        cpulist::format(&pool),
                    ),
                );
            }
            for (irq, queue) in tx_only {
                if let Some(cpus) = serving.get(&queue).cloned() {
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
            }
        } else if let Some((irq, queue, _)) = vectors.first() {
            serving.insert(*queue, self.irq_cpus(*irq));
        }

        // RPS when the rx vectors are fewer than the CPUs that read the traffic.
        let readers: BTreeSet<u32> = self
            .load
            .flows
            .iter()
            .flat_map(|f| f.reads_by_cpu.keys().copied())
            .filter(|c| pool_src.contains(c))
            .collect();
        let wanted = if readers.is_empty() {
            cores
        } else {
            readers.len().max(2)
        };
        let mut rps_on = nic.rx.iter().any(|q| !q.rps_list().is_empty());
        // Flows read away from their softirq CPU, split by whether RFS can steer them.
        // Unsteerable ones (unconnected UDP), when they are the only ones, get RPS toward their
        // readers' CPUs: the one steering that reaches them.
        let load = self.load;
        let (steerable_bad, unsteerable_bad): (Vec<&FlowLoad>, Vec<&FlowLoad>) = load
            .flows
            .iter()
            .filter(|f| f.mismatch_ratio() > self.opts.mismatch_threshold)
            .partition(|f| f.steerable);
        let unsteerable_readers: Vec<u32> = if steerable_bad.is_empty() {
            let mut r: Vec<u32> = unsteerable_bad
                .iter()
                .flat_map(|f| f.reads_by_cpu.keys().copied())
                .filter(|c| pool_src.contains(c))
                .collect();
            r.sort_unstable();
            r.dedup();
            r
        } else {
            Vec::new()
        };
        if !unsteerable_readers.is_empty() && vectors.len() < 2 && !nic.rx.is_empty() {
            let labels: Vec<&str> = unsteerable_bad.iter().map(|f| f.label.as_str()).collect();
            for q in &nic.rx {
                serving.insert(q.index, unsteerable_readers.clone());
                self.propose(
                    Knob::RpsCpus {
                        iface: nic.name.clone(),
                        queue: q.index,
                    },
                    q.rps_cpus.as_deref(),
                    self.mask(&unsteerable_readers),
                    "RPS toward the CPU(s) that read flows RFS cannot steer (unconnected UDP), so their softirq runs where they are read".to_string(),
                    format!(
                        "{} read on CPU {}",
                        labels.join("; "),
                        cpulist::format(&unsteerable_readers)
                    ),
                );
            }
            rps_on = true;
        } else if vectors.len() < 2 && vectors.len() < wanted && !nic.rx.is_empty() {
            for q in &nic.rx {
                let irq_cpus: Vec<u32> = q.irq.map(|i| self.irq_cpus(i)).unwrap_or_default();
                let rate = q.irq.and_then(|i| self.load.irq_rate.get(&i).copied());
                let mut cpus: Vec<u32> = order
                    .iter()
                    .copied()
                    .take(cores.max(2).min(order.len()))
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
                        "{} has {} rx vector(s) for {wanted} CPUs; IRQ {irq} on CPU {} at {rate:.0}/s{why_exclude}",
                        nic.name,
                        vectors.len(),
                        cpulist::format(&irq_cpus)
                    ),
                    (Some(irq), None) => format!(
                        "{} has {} rx vector(s) for {wanted} CPUs; IRQ {irq} on CPU {} ({:.0} {}){why_exclude}",
                        nic.name,
                        vectors.len(),
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
                        "RPS: spread {}'s receive processing over cores of {where_}",
                        nic.name
                    ),
                    evidence,
                );
                rps_on = true;
            }
        }

        // RFS whenever RPS is on or flows are read away from their softirq CPU.
        let steerable = steerable_bad.len();
        for f in &unsteerable_bad {
            self.notes.push(format!(
                "{}: {:.0}% of reads on another CPU than the softirq, and RFS cannot steer it (unconnected UDP: the kernel records no flow hash for it); {}",
                f.label,
                100.0 * f.mismatch_ratio(),
                if unsteerable_readers.is_empty() {
                    "pin the reader to the CPU that receives it, or point RPS at the reader's CPUs".to_string()
                } else {
                    format!("{} RPS goes to its reader CPU(s) {} instead", nic.name, cpulist::format(&unsteerable_readers))
                }
            ));
        }
        if rps_on || steerable > 0 {
            let flows = self.load.flows.len() as u64;
            let entries = rfs_entries(flows);
            let worst = steerable_bad
                .iter()
                .max_by(|a, b| a.mismatch_ratio().total_cmp(&b.mismatch_ratio()));
            let why = if let Some(worst) = worst {
                format!(
                    "RFS: {steerable} flow(s) read on another CPU than their softirq (worst: {} at {:.0}%)",
                    worst.label,
                    100.0 * worst.mismatch_ratio()
                )
            } else {
                "RFS with RPS: steer each flow's receive processing to the CPU of its reader"
                    .to_string()
            };
            let cur = self.m.rps_sock_flow_entries;
            if cur.is_some_and(|c| c >= entries) {
                // A larger table is kept: shrinking it would only add collisions.
            } else {
                self.propose(
                    Knob::RpsSockFlowEntries,
                    cur.map(|c| c.to_string()).as_deref(),
                    entries.to_string(),
                    why.clone(),
                    format!(
                        "{flows} flow(s) seen; table = power of two >= 2x flows, at least 32768"
                    ),
                );
            }
            let table = cur.unwrap_or(0).max(entries);
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

        // XPS: tx queue q sends from the CPUs that serve rx queue q.
        if nic.tx.len() >= 2 {
            let rx_count = serving.len().max(1);
            for (i, q) in nic.tx.iter().enumerate() {
                let cpus = match serving.get(&q.index) {
                    Some(c) if !c.is_empty() => c.clone(),
                    _ if !serving.is_empty() && serving.len() >= 2 => serving
                        .values()
                        .nth(i % rx_count)
                        .cloned()
                        .unwrap_or_default(),
                    _ => vec![order[i % order.len()]],
                };
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
    }
}

/// Makes a plan. `created_unix` is the plan's timestamp (passed in: the planner does no I/O).
pub fn plan(
    m: &Machine,
    load: &Load,
    opts: &PlanOptions,
    created_unix: u64,
) -> Result<Plan, PlanningError> {
    let topo = &m.topology;
    let mut allowed = topo.housekeeping();
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
    let mut notes = Vec::new();
    if m.irqbalance.running {
        notes.push(format!(
            "irqbalance is running (pid {}): it will overwrite IRQ affinity every 10 s; stop it (systemctl stop irqbalance) or ban the planned IRQs (IRQBALANCE_BANNED_CPULIST / --banirq)",
            m.irqbalance.pid.unwrap_or(0)
        ));
    }
    let nics: Vec<&Nic> = if opts.ifaces.is_empty() {
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
    };
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
    };
    p.seed_cpu_load(&moving);
    // Heaviest NIC first, so it gets the pick of the cores.
    let mut nics = nics;
    nics.sort_by(|a, b| {
        let w = |n: &Nic| n.irqs.iter().map(|i| load.weight(*i)).sum::<f64>();
        w(b).total_cmp(&w(a)).then(a.name.cmp(&b.name))
    });
    for nic in nics {
        p.plan_nic(nic, &allowed);
    }
    // One write per knob: several NICs propose the same global table.
    let mut seen = BTreeSet::new();
    p.changes.retain(|c| seen.insert(c.knob.clone()));
    Ok(Plan {
        format: PLAN_FORMAT.into(),
        version: PLAN_VERSION,
        host: m.host.clone(),
        created_unix,
        load_source: load.source.clone(),
        changes: p.changes,
        notes: p.notes,
    })
}
