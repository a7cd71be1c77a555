//! `irqtune show`: the machine's interrupt picture, as text or JSON.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    model::cpulist,
    model::machine::{IrqUse, Machine},
};

/// What `show --json` prints.
#[derive(Serialize)]
pub struct Shown<'a> {
    pub machine: &'a Machine,
    /// Interrupts per second per IRQ and CPU over the sample, when one was taken.
    pub sample_secs: Option<f64>,
    pub rates: BTreeMap<u32, BTreeMap<u32, f64>>,
}

/// Per-IRQ, per-CPU rates between two readings.
pub fn rates(before: &Machine, after: &Machine, secs: f64) -> BTreeMap<u32, BTreeMap<u32, f64>> {
    let mut out = BTreeMap::new();
    for irq in &after.irqs {
        let mut per_cpu = BTreeMap::new();
        for &cpu in &after.interrupt_cpus {
            let d = after
                .irq_count(irq.irq, cpu)
                .saturating_sub(before.irq_count(irq.irq, cpu));
            if d > 0 {
                per_cpu.insert(cpu, d as f64 / secs);
            }
        }
        out.insert(irq.irq, per_cpu);
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn mask_list(mask: Option<&str>) -> String {
    match mask.map(cpulist::parse_mask) {
        Some(Ok(c)) if c.is_empty() => "off".into(),
        Some(Ok(c)) => cpulist::format(&c),
        Some(Err(_)) => "?".into(),
        None => "-".into(),
    }
}

/// A CPU list, or "none".
fn list_or_none(cpus: &[u32]) -> String {
    if cpus.is_empty() {
        "none".into()
    } else {
        cpulist::format(cpus)
    }
}

pub fn text(s: &Shown) -> String {
    let mut o = String::new();
    topology(s.machine, &mut o);
    steering_state(s.machine, &mut o);
    nics(s.machine, &mut o);
    irqs(s, &mut o);
    o
}

/// Host, CPUs, NUMA nodes, SMT siblings and cache groups.
fn topology(m: &Machine, o: &mut String) {
    let t = &m.topology;
    let _ = writeln!(
        o,
        "host {} (kernel {}), {} CPUs online ({}), possible {}",
        m.host.hostname,
        m.host.kernel,
        t.online.len(),
        cpulist::format(&t.online),
        cpulist::format(&t.possible)
    );
    let offline: Vec<u32> = t
        .possible
        .iter()
        .copied()
        .filter(|c| !t.online.contains(c))
        .collect();
    let _ = writeln!(
        o,
        "  isolated: {}   nohz_full: {}   offline: {}",
        list_or_none(&t.isolated),
        list_or_none(&t.nohz_full),
        list_or_none(&offline),
    );
    for (node, cpus) in &t.nodes {
        let _ = writeln!(
            o,
            "  NUMA node {node}: CPUs {} ({} cores)",
            cpulist::format(cpus),
            t.cores_in(cpus)
        );
    }
    let mut smt: Vec<String> = t
        .cpus
        .iter()
        .filter(|c| c.siblings.len() > 1 && c.siblings.first() == Some(&c.id))
        .map(|c| cpulist::format(&c.siblings))
        .collect();
    smt.dedup();
    let _ = writeln!(
        o,
        "  SMT siblings: {}",
        if smt.is_empty() {
            "none".to_string()
        } else {
            smt.join(" ")
        }
    );
    let mut llcs: Vec<String> = t
        .cpus
        .iter()
        .filter(|c| !c.llc.is_empty())
        .map(|c| cpulist::format(&c.llc))
        .collect();
    llcs.sort();
    llcs.dedup();
    if !llcs.is_empty() {
        let _ = writeln!(o, "  last-level cache groups: {}", llcs.join(" "));
    }
}

/// irqbalance, the global RFS table and the softnet settings.
fn steering_state(m: &Machine, o: &mut String) {
    let ib = &m.irqbalance;
    let _ = writeln!(
        o,
        "irqbalance: {}",
        if ib.running {
            format!(
                "RUNNING (pid {}): it rewrites IRQ affinity every 10 s; banned CPUs {}, banned IRQs {}",
                opt(ib.pid),
                list_or_none(&ib.banned_cpus),
                list_or_none(&ib.banned_irqs),
            )
        } else {
            "not running".into()
        }
    );
    let _ = writeln!(o, "rps_sock_flow_entries: {}", opt(m.rps_sock_flow_entries));
    let s = &m.softnet;
    let _ = writeln!(
        o,
        "softnet: netdev_max_backlog {}  netdev_budget {}  netdev_budget_usecs {}  dev_weight {}  flow_limit_cpu_bitmap {}  flow_limit_table_len {}",
        opt(s.netdev_max_backlog),
        opt(s.netdev_budget),
        opt(s.netdev_budget_usecs),
        opt(s.dev_weight),
        opt(s.flow_limit_cpu_bitmap.as_deref()),
        opt(s.flow_limit_table_len),
    );
}

/// Every network device with its queues, their IRQs and steering.
fn nics(m: &Machine, o: &mut String) {
    let _ = writeln!(o, "\nNetwork devices");
    match &m.napi {
        Some(t) if t.napis.is_empty() => {
            let _ = writeln!(o, "  NAPI instances: none read ({})", t.source);
        }
        Some(t) => {
            let _ = writeln!(
                o,
                "  NAPI instances from {} (irq N*: the IRQ of the NAPI's rx queue, where the driver does not tell netdev-genl)",
                t.source
            );
        }
        None => {}
    }
    for nic in &m.nics {
        let _ = writeln!(
            o,
            "  {}  driver {}  device {}  NUMA node {}  {} rx / {} tx queues",
            nic.name,
            opt(nic.driver.as_deref()),
            opt(nic.device.as_deref()),
            opt(nic.node),
            nic.rx.len(),
            nic.tx.len()
        );
        let layer: Vec<String> = super::settings::nic_rows(nic)
            .into_iter()
            .map(|r| format!("{} {}", r.name, r.value))
            .collect();
        if !layer.is_empty() {
            let _ = writeln!(o, "    {}", layer.join("  "));
        }
        let n = &nic.napi;
        if n.threaded.is_some() || n.defer_hard_irqs.is_some() || n.gro_flush_timeout_ns.is_some() {
            let _ = writeln!(
                o,
                "    napi (sysfs, per device): threaded {}  napi_defer_hard_irqs {}  gro_flush_timeout {} ns",
                opt(n.threaded),
                opt(n.defer_hard_irqs),
                opt(n.gro_flush_timeout_ns)
            );
        }
        for napi in super::settings::napis_of(m, nic) {
            let _ = writeln!(
                o,
                "    napi {:<6} {}",
                napi.id,
                super::settings::napi_text(napi)
            );
        }
        for q in &nic.rx {
            let _ = writeln!(
                o,
                "    rx-{:<3} irq {:<5} rps_cpus {:<12} rps_flow_cnt {}",
                q.index,
                opt(q.irq),
                mask_list(q.rps_cpus.as_deref()),
                opt(q.rps_flow_cnt)
            );
        }
        for q in &nic.tx {
            let _ = writeln!(
                o,
                "    tx-{:<3} irq {:<5} xps_cpus {}",
                q.index,
                opt(q.irq),
                mask_list(q.xps_cpus.as_deref())
            );
        }
    }
}

/// Every IRQ: what it serves, where it may and does run, counts or rates per CPU.
fn irqs(s: &Shown, o: &mut String) {
    let m = s.machine;
    let _ = writeln!(
        o,
        "\nIRQs{}",
        s.sample_secs
            .map(|s| format!(" (rates over {s:.1} s)"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  {:>5}  {:<28} {:<18} {:<10} {:<9} {:>12}  per CPU",
        "IRQ", "name", "serves", "allowed", "effective", "total"
    );
    for irq in &m.irqs {
        let serves = match &irq.usage {
            IrqUse::NetQueue { iface, queue, dir } => {
                format!("{iface} {dir:?} {queue}").to_lowercase()
            }
            IrqUse::NetOther { iface } => format!("{iface} other"),
            IrqUse::Block => "disk".into(),
            IrqUse::Other => "-".into(),
        };
        let per_cpu: Vec<String> = match s.rates.get(&irq.irq) {
            Some(r) if s.sample_secs.is_some() => r
                .iter()
                .map(|(cpu, rate)| format!("{cpu}:{rate:.0}/s"))
                .collect(),
            _ => m
                .interrupt_cpus
                .iter()
                .zip(&irq.counts)
                .filter(|(_, n)| **n > 0)
                .map(|(cpu, n)| format!("{cpu}:{n}"))
                .collect(),
        };
        let _ = writeln!(
            o,
            "  {:>5}  {:<28} {:<18} {:<10} {:<9} {:>12}  {}{}",
            irq.irq,
            irq.name,
            serves,
            cpulist::format(&irq.affinity),
            irq.effective
                .as_deref()
                .map(cpulist::format)
                .unwrap_or_else(|| "-".into()),
            irq.total(),
            per_cpu.join(" "),
            if irq.managed { "  [managed]" } else { "" }
        );
    }
}
