//! Findings: what is wrong, in words, with the evidence and the fix, as the source notes
//! teach. Pure: a profile in, findings out.

use std::collections::BTreeMap;

pub use crate::model::finding::{Finding, FindingId, Severity};
use crate::model::profile::{Attach, Family, Source, Vector};
use crate::{
    analysis::policy,
    model::cpulist,
    model::machine::{IrqUse, Machine},
    model::profile::Profile,
};

fn finding(
    id: FindingId,
    severity: Severity,
    title: String,
    evidence: String,
    fix: String,
) -> Finding {
    Finding {
        id,
        severity,
        title,
        evidence,
        fix,
    }
}

/// Interrupts of an IRQ during the profile (probes when recorded, else /proc).
fn irq_count(p: &Profile, irq: u32) -> u64 {
    if p.session.source == Source::Probes {
        let n: u64 = p
            .hardirqs
            .iter()
            .filter(|r| r.irq == Some(irq))
            .map(|r| r.count)
            .sum();
        if n > 0 {
            return n;
        }
    }
    p.proc
        .interrupts
        .iter()
        .find(|r| r.id == irq.to_string())
        .map_or(0, |r| r.counts.iter().sum())
}

/// NET_RX load per CPU: handler time from the probes, or run counts from /proc.
fn net_rx_load(p: &Profile) -> (BTreeMap<u32, u64>, &'static str) {
    let mut load = BTreeMap::new();
    for &cpu in &p.proc.cpus {
        load.insert(cpu, 0);
    }
    if p.session.source == Source::Probes {
        for r in p.softirqs.iter().filter(|r| r.vector == Vector::NetRx) {
            *load.entry(r.cpu).or_default() += r.time_ns;
        }
        (load, "ns of NET_RX time")
    } else {
        for &cpu in &p.proc.cpus {
            load.insert(cpu, p.net_rx_runs(cpu));
        }
        (load, "NET_RX runs")
    }
}

fn concentrated(p: &Profile, out: &mut Vec<Finding>) {
    let (load, unit) = net_rx_load(p);
    let total: u64 = load.values().sum();
    let busy_enough = if p.session.source == Source::Probes {
        total as f64 >= policy::NET_RX_BUSY_SHARE * p.session.duration_ns as f64
    } else {
        total >= policy::NET_RX_BUSY_RUNS
    };
    if load.len() < 2 || !busy_enough {
        return;
    }
    let (&top_cpu, &top) = load.iter().max_by_key(|(_, v)| **v).expect("two CPUs");
    let idle: Vec<u32> = load
        .iter()
        .filter(|(_, v)| (**v as f64) < policy::NET_RX_IDLE_CPU * top as f64)
        .map(|(c, _)| *c)
        .collect();
    let share = top as f64 / total as f64;
    if share >= policy::NET_RX_CONCENTRATED && !idle.is_empty() {
        out.push(finding(
            FindingId::NetRxConcentrated,
            if share >= policy::NET_RX_CONCENTRATED_CRITICAL { Severity::Critical } else { Severity::Warning },
            format!(
                "NET_RX is concentrated on CPU {top_cpu} while CPU {} do almost none",
                cpulist::format(&idle)
            ),
            format!(
                "CPU {top_cpu} carries {:.0}% of NET_RX ({top} {unit}); {} of {} CPUs under 10% of that",
                share * 100.0,
                idle.len(),
                load.len()
            ),
            "spread the NIC queue IRQs over cores (multi-queue NIC) or turn on RPS (single queue): `irqtune plan` proposes both".into(),
        ));
    }
}

fn single_queue(p: &Profile, m: &Machine, out: &mut Vec<Finding>) {
    for nic in &m.nics {
        let vectors: Vec<u32> = nic.rx.iter().filter_map(|q| q.irq).collect();
        if vectors.len() != 1 || nic.rx.iter().any(|q| !q.rps_list().is_empty()) {
            continue;
        }
        let n = irq_count(p, vectors[0]);
        let online = m.topology.online.len();
        if n < policy::SINGLE_QUEUE_MIN_INTERRUPTS || online < 2 {
            continue;
        }
        let cpus = m
            .irq(vectors[0])
            .and_then(|i| i.effective.clone())
            .unwrap_or_default();
        out.push(finding(
            FindingId::SingleQueueWithoutRps,
            Severity::Warning,
            format!("{} has one rx queue and RPS is off", nic.name),
            format!(
                "IRQ {} took {n} interrupts on CPU {}; the other {} CPUs cannot share its receive processing",
                vectors[0],
                cpulist::format(&cpus),
                online - 1
            ),
            format!(
                "set rps_cpus on {} (and RFS): `irqtune plan --iface {}`",
                nic.name, nic.name
            ),
        ));
    }
}

fn rfs(p: &Profile, m: &Machine, out: &mut Vec<Finding>) {
    let bad: Vec<_> = p
        .flows
        .iter()
        .filter(|f| {
            f.connected
                && f.reads() >= policy::MIN_FLOW_READS
                && f.mismatch_ratio > policy::MISMATCHED_FLOW
        })
        .collect();
    let entries = m.rps_sock_flow_entries.unwrap_or(0);
    if entries == 0 && !bad.is_empty() {
        let worst = bad
            .iter()
            .max_by(|a, b| a.mismatch_ratio.total_cmp(&b.mismatch_ratio))
            .expect("not empty");
        out.push(finding(
            FindingId::RfsOffWithMismatch,
            Severity::Warning,
            format!("{} flow(s) are read on another CPU than their softirq, and RFS is off", bad.len()),
            format!(
                "{}: {:.0}% of {} reads away from the softirq CPU (deliveries on CPU {}, reads on CPU {}){}",
                worst.label(),
                worst.mismatch_ratio * 100.0,
                worst.reads(),
                cpulist::format(&worst.deliveries_by_cpu.keys().copied().collect::<Vec<_>>()),
                cpulist::format(&worst.reads_by_cpu.keys().copied().collect::<Vec<_>>()),
                wait_cost(p),
            ),
            "turn on RFS: rps_sock_flow_entries (>= 32768) and rps_flow_cnt per rx queue: `irqtune plan`".into(),
        ));
    }
    let sample = u64::from(p.session.flow_sample.max(1));
    let flows = p.flows.len() as u64 * sample;
    if entries > 0 && entries < 2 * flows {
        out.push(finding(
            FindingId::RfsTableUndersized,
            Severity::Warning,
            "the RFS table is small for the flows seen".into(),
            format!("rps_sock_flow_entries {entries}, about {flows} concurrent flows (1 in {sample} tracked)"),
            format!(
                "raise rps_sock_flow_entries to {} (a power of two >= 2x flows) and rps_flow_cnt to match",
                policy::rfs_entries(flows)
            ),
        ));
    }
    for f in p.flows.iter().filter(|f| {
        !f.connected
            && f.reads() >= policy::MIN_FLOW_READS
            && f.mismatch_ratio > policy::MISMATCHED_FLOW
    }) {
        out.push(finding(
            FindingId::UnsteerableFlowMismatch,
            Severity::Info,
            format!(
                "{} is read on another CPU than its softirq, and RFS cannot steer it",
                f.label()
            ),
            format!(
                "{:.0}% of {} reads mismatched; an unconnected UDP socket has no flow for RFS{}",
                f.mismatch_ratio * 100.0,
                f.reads(),
                flow_wait(f),
            ),
            "pin the reader to the CPU that receives, or point RPS at the reader's CPUs".into(),
        ));
    }
}

/// What crossing CPUs costs the readers here: the median wake-up of cross-CPU reads next to
/// same-CPU ones, over all flows (empty when nothing was measured).
fn wait_cost(p: &Profile) -> String {
    wait_text(&p.flow_totals.delivery_to_read)
}

/// The same for one flow.
fn flow_wait(f: &crate::model::profile::FlowRow) -> String {
    wait_text(&f.delivery_to_read)
}

fn wait_text(d: &crate::model::profile::DeliveryToRead) -> String {
    let (same, cross) = (&d.same_cpu, &d.cross_cpu);
    if cross.count() == 0 {
        return String::new();
    }
    let cross_p50 = crate::model::units::fmt_ns(cross.summary.p50_ns);
    if same.count() == 0 {
        return format!("; a reader woken across CPUs waited {cross_p50} (median) for its data");
    }
    format!(
        "; a reader woken across CPUs waited {cross_p50} (median) for its data, on the delivering CPU {}",
        crate::model::units::fmt_ns(same.summary.p50_ns)
    )
}

fn irqbalance(m: &Machine, out: &mut Vec<Finding>) {
    if m.irqbalance.running {
        out.push(finding(
            FindingId::IrqbalanceRunning,
            Severity::Info,
            "irqbalance is running: it rewrites IRQ affinity every 10 s".into(),
            format!("irqbalance pid {}", m.irqbalance.pid.unwrap_or(0)),
            format!(
                "before tuning by hand or with irqtune, {}",
                policy::IRQBALANCE_ADVICE
            ),
        ));
    }
}

fn ksoftirqd(p: &Profile, out: &mut Vec<Finding>) {
    for r in p
        .softirqs
        .iter()
        .filter(|r| r.vector == Vector::NetRx && r.count >= policy::KSOFTIRQD_MIN_RUNS)
    {
        let share = r.ksoftirqd_runs as f64 / r.count as f64;
        if share > policy::KSOFTIRQD_SHARE {
            out.push(finding(
                FindingId::KsoftirqdNetRx,
                if share > policy::KSOFTIRQD_SHARE_CRITICAL { Severity::Critical } else { Severity::Warning },
                format!("ksoftirqd/{} runs {:.0}% of NET_RX: softirq overload on CPU {}", r.cpu, share * 100.0, r.cpu),
                format!("{} of {} NET_RX runs on CPU {} in ksoftirqd", r.ksoftirqd_runs, r.count, r.cpu),
                "spread the receive load over more CPUs (queue IRQs, RPS); if it persists raise net.core.netdev_budget".into(),
            ));
        }
    }
}

fn softnet(p: &Profile, out: &mut Vec<Finding>) {
    let rows = &p.proc.softnet;
    // Flow-limited packets count in `dropped` too (enqueue_to_backlog); told apart here.
    let backlog =
        |r: &crate::model::procfs::SoftnetRow| r.dropped.saturating_sub(r.flow_limit_count);
    let dropped: u64 = rows.iter().map(backlog).sum();
    let limited: u64 = rows.iter().map(|r| r.flow_limit_count).sum();
    let squeezed: u64 = rows.iter().map(|r| r.time_squeeze).sum();
    let cpus = |f: &dyn Fn(&crate::model::procfs::SoftnetRow) -> u64| {
        cpulist::format(
            &rows
                .iter()
                .filter(|r| f(r) > 0)
                .map(|r| r.cpu)
                .collect::<Vec<_>>(),
        )
    };
    let settings = p.context.as_ref().map(|m| &m.softnet);
    let setting = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into());
    if dropped > 0 {
        out.push(finding(
            FindingId::SoftnetDrops,
            Severity::Critical,
            format!(
                "packets dropped: the per-CPU backlog was full (netdev_max_backlog {})",
                setting(settings.and_then(|s| s.netdev_max_backlog))
            ),
            format!(
                "{dropped} backlog drops in /proc/net/softnet_stat (CPU {})",
                cpus(&backlog)
            ),
            "raise net.core.netdev_max_backlog and spread receive processing (RPS): `irqtune tune` tries and judges it".into(),
        ));
    }
    if limited > 0 {
        out.push(finding(
            FindingId::SoftnetFlowLimit,
            Severity::Warning,
            "packets dropped by flow limit: one flow filled half a backlog".into(),
            format!(
                "{limited} flow-limit drops in /proc/net/softnet_stat (CPU {})",
                cpus(&|r| r.flow_limit_count)
            ),
            "the kernel protects the other flows from one heavy flow (flow_limit_cpu_bitmap); spread that flow's processing or raise netdev_max_backlog".into(),
        ));
    }
    for n in p.proc.nics.iter().filter(|n| n.no_buffer() > 0) {
        let ring = p
            .context
            .as_ref()
            .and_then(|m| m.nic(&n.device))
            .and_then(|nic| nic.layer.as_ref()?.rings.clone())
            .and_then(|r| Some(format!(" (rx ring {} of {})", r.rx?, r.rx_max?)))
            .unwrap_or_default();
        out.push(finding(
            FindingId::NicRxNoBuffer,
            Severity::Critical,
            format!("{}: the NIC dropped packets for want of rx descriptors{ring}", n.device),
            format!(
                "missed {}, fifo {}, over {} of {} packets received",
                n.rx_missed_errors, n.rx_fifo_errors, n.rx_over_errors, n.rx_packets
            ),
            "raise the rx ring toward its maximum and spread the queues over more cores: `irqtune tune` tries and judges it".into(),
        ));
    }
    if squeezed > 0 {
        out.push(finding(
            FindingId::SoftnetTimeSqueeze,
            Severity::Warning,
            format!(
                "NET_RX ran out of budget with packets left (netdev_budget {}, netdev_budget_usecs {})",
                setting(settings.and_then(|s| s.netdev_budget)),
                setting(settings.and_then(|s| s.netdev_budget_usecs))
            ),
            format!("time_squeeze {squeezed} (CPU {})", cpus(&|r| r.time_squeeze)),
            "raise net.core.netdev_budget where runs end on packets with time left, else spread the load over more CPUs: `irqtune tune` tries and judges it"
                .into(),
        ));
    }
}

fn placement(p: &Profile, m: &Machine, out: &mut Vec<Finding>) {
    let t = &m.topology;
    let queue_irqs: Vec<(&crate::model::machine::Irq, &str)> = m
        .irqs
        .iter()
        .filter_map(|i| match &i.usage {
            IrqUse::NetQueue { iface, .. } => Some((i, iface.as_str())),
            _ => None,
        })
        .collect();
    let cpu_of =
        |i: &crate::model::machine::Irq| i.effective.clone().unwrap_or_else(|| i.affinity.clone());
    // Remote NUMA node.
    for nic in &m.nics {
        let Some(node) = nic.node else { continue };
        let Some(local) = t.node_cpus(node) else {
            continue;
        };
        let remote: Vec<u32> = queue_irqs
            .iter()
            .filter(|(i, n)| {
                *n == nic.name && !i.managed && cpu_of(i).iter().all(|c| !local.contains(c))
            })
            .map(|(i, _)| i.irq)
            .collect();
        if !remote.is_empty() {
            out.push(finding(
                FindingId::NicIrqRemoteNuma,
                Severity::Warning,
                format!(
                    "{} queue IRQs run on another NUMA node than the NIC",
                    nic.name
                ),
                format!(
                    "{} is on node {node} (CPUs {}); IRQ {} run elsewhere",
                    nic.name,
                    cpulist::format(local),
                    cpulist::format(&remote)
                ),
                format!(
                    "move them to cores of node {node}: `irqtune plan --iface {}`",
                    nic.name
                ),
            ));
        }
    }
    // Queue IRQs on SMT siblings of each other.
    let mut pairs = Vec::new();
    for (a, _) in &queue_irqs {
        for (b, _) in &queue_irqs {
            if a.irq < b.irq {
                if let ([ca], [cb]) = (cpu_of(a).as_slice(), cpu_of(b).as_slice()) {
                    if t.are_siblings(*ca, *cb) {
                        pairs.push(format!(
                            "IRQ {} (CPU {ca}) and IRQ {} (CPU {cb})",
                            a.irq, b.irq
                        ));
                    }
                }
            }
        }
    }
    if !pairs.is_empty() {
        out.push(finding(
            FindingId::QueueIrqsOnSmtSiblings,
            Severity::Info,
            "NIC queue IRQs share physical cores (SMT siblings)".into(),
            pairs.iter().take(4).cloned().collect::<Vec<_>>().join("; "),
            "hyperthreads add little for interrupt work: give each queue its own core while cores are free (`irqtune plan`)".into(),
        ));
    }
    // Disk and NIC on the same busy CPU.
    let busy =
        |irq: u32| irq_count(p, irq) as f64 / p.duration_secs().max(1e-9) >= policy::BUSY_IRQ_RATE;
    let mut shared = Vec::new();
    for d in m
        .irqs
        .iter()
        .filter(|i| i.usage == IrqUse::Block && busy(i.irq))
    {
        for (n, _) in queue_irqs.iter().filter(|(n, _)| busy(n.irq)) {
            if let ([cd], [cn]) = (cpu_of(d).as_slice(), cpu_of(n).as_slice()) {
                if cd == cn {
                    shared.push(format!("{} and {} on CPU {cd}", d.name, n.name));
                }
            }
        }
    }
    if !shared.is_empty() {
        out.push(finding(
            FindingId::DiskAndNicOnOneCpu,
            Severity::Warning,
            "a busy disk IRQ and a busy NIC IRQ share a CPU".into(),
            shared.join("; "),
            "separate them: move the NIC queue IRQs to other cores (`irqtune plan`)".into(),
        ));
    }
}

/// Busy polling and IRQ suspension, per reading process: they poll one NAPI per epoll
/// context, so a reader whose flows all come from one NAPI can use them (what it must set is
/// the application's part; irqtune sets the NAPI's part), and one whose flows span several
/// cannot until they are split or steered.
fn busy_poll(p: &Profile, out: &mut Vec<Finding>) {
    for r in crate::model::profile::readers_by_napi(&p.flows) {
        let reads = r.reads;
        if reads < policy::MIN_FLOW_READS {
            continue;
        }
        let ids: Vec<String> = r.napis.keys().map(|id| id.to_string()).collect();
        let evidence = format!(
            "{} (pid {}): {} flow(s) with {reads} reads from NAPI {}{}",
            r.comm,
            r.pid,
            r.flows,
            ids.join(", "),
            if r.unknown > 0 {
                format!("; {} without a NAPI id", r.unknown)
            } else {
                String::new()
            }
        );
        if r.napis.len() == 1 && r.unknown == 0 {
            out.push(finding(
                FindingId::BusyPollAlignment,
                Severity::Info,
                format!("{}'s flows all come from one NAPI: it can busy poll it", r.comm),
                evidence,
                format!("in the application: epoll busy polling (ioctl EPIOCSPARAMS: busy_poll_usecs, busy_poll_budget, prefer_busy_poll 1; Linux 6.9+), or SO_BUSY_POLL and SO_PREFER_BUSY_POLL on its sockets; then NAPI {}'s irq-suspend-timeout, with gro-flush-timeout and defer-hard-irqs as the fallback timer (6.13+; irqtune's napi_setting knobs), keeps its IRQ off while the application finds events: judge it with `irqtune tune --plan`", ids[0]),
            ));
        } else if r.napis.len() > 1 {
            out.push(finding(
                FindingId::BusyPollAlignment,
                Severity::Info,
                format!("{}'s flows come from {} NAPIs: busy polling would serve one of them", r.comm, r.napis.len()),
                evidence,
                "busy polling and IRQ suspension poll one NAPI per epoll context: give each NAPI's flows their own thread and epoll set (SO_INCOMING_NAPI_ID tells a socket's NAPI), or steer the flows to one queue (ethtool ntuple rules) first".into(),
            ));
        }
    }
}

/// Every finding the profile supports, most severe first.
pub fn find(p: &Profile) -> Vec<Finding> {
    let mut out = Vec::new();
    concentrated(p, &mut out);
    ksoftirqd(p, &mut out);
    softnet(p, &mut out);
    busy_poll(p, &mut out);
    if let Some(m) = &p.context {
        single_queue(p, m, &mut out);
        rfs(p, m, &mut out);
        irqbalance(m, &mut out);
        placement(p, m, &mut out);
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    // What was not measured comes first: every other finding is read in its light.
    let mut missing = incomplete(p);
    missing.append(&mut out);
    missing
}

/// A probe family with a probe that could not attach: what is not measured and why. Never
/// silence: a profile without flows must not read as "no flow problem".
fn incomplete(p: &Profile) -> Vec<Finding> {
    let mut out = Vec::new();
    for family in Family::ALL {
        let rows: Vec<_> = p
            .session
            .probes
            .iter()
            .filter(|r| r.attach == Attach::Disabled)
            .filter(|r| Family::of_tracepoint(&r.tracepoint) == Some(family))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let names: Vec<&str> = rows.iter().map(|r| r.tracepoint.as_str()).collect();
        let reasons: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.tracepoint,
                    r.reason.as_deref().unwrap_or("no reason recorded")
                )
            })
            .collect();
        let fix = match family {
            Family::Flows => "findings about flow placement (RPS/RFS mismatch) cannot be made from this profile; \
                 run on a kernel with sock tracepoints (6.3+), BPF trampolines (fentry) or kprobes, \
                 or pass --no-flows to record without flows on purpose",
            _ => "findings that need this family cannot be made from this profile; \
                  the reasons above say what the kernel refused (run with -v for each method tried)",
        };
        out.push(finding(
            FindingId::MeasurementIncomplete,
            Severity::Warning,
            format!(
                "not measured: {} ({} could not attach)",
                family.name(),
                names.join(", ")
            ),
            reasons.join("; "),
            fix.into(),
        ));
    }
    out
}
