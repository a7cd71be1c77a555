//! The settings a report shows beside the measurements: the softnet sysctls and each NIC's
//! channels, ring sizes and coalescing, as the profile's machine context holds them. One
//! list, so the text, HTML and CSV reports show the same rows.

use crate::model::machine::{napi::Napi, Machine, Nic};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// "softnet", or the NIC's name.
    pub scope: String,
    pub name: String,
    pub value: String,
}

fn row(scope: &str, name: &str, value: impl ToString) -> Setting {
    Setting {
        scope: scope.to_string(),
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// Every setting known in `m`, softnet first, then each NIC's.
pub fn of(m: &Machine) -> Vec<Setting> {
    let mut out = Vec::new();
    let s = &m.softnet;
    for (name, v) in [
        ("netdev_max_backlog", s.netdev_max_backlog),
        ("netdev_budget", s.netdev_budget),
        ("netdev_budget_usecs", s.netdev_budget_usecs),
        ("dev_weight", s.dev_weight),
        ("flow_limit_table_len", s.flow_limit_table_len),
    ] {
        if let Some(v) = v {
            out.push(row("softnet", name, v));
        }
    }
    if let Some(b) = &s.flow_limit_cpu_bitmap {
        out.push(row("softnet", "flow_limit_cpu_bitmap", b));
    }
    for nic in &m.nics {
        out.extend(nic_rows(nic));
        let n = &nic.napi;
        for (name, v) in [
            ("napi threaded", n.threaded.map(u64::from)),
            ("napi_defer_hard_irqs", n.defer_hard_irqs.map(u64::from)),
            ("gro_flush_timeout", n.gro_flush_timeout_ns),
        ] {
            if let Some(v) = v {
                out.push(row(&nic.name, name, v));
            }
        }
        for napi in napis_of(m, nic) {
            out.push(row(
                &nic.name,
                &format!("napi {}", napi.id),
                napi_text(napi),
            ));
        }
    }
    out
}

/// A NIC's channels ("channels combined" "1 of 4"), rings ("ring rx" "128 of 256"),
/// coalescing parameters, and what could not be read ("unavailable" "coalesce: not
/// supported by the driver"). Empty when the layer was not read.
pub fn nic_rows(nic: &Nic) -> Vec<Setting> {
    let mut out = Vec::new();
    let Some(l) = &nic.layer else {
        return out;
    };
    for v in l.values() {
        let name = match v.group {
            Some(g) => format!("{g} {}", v.name),
            None => v.name.to_string(),
        };
        let value = match (v.max, v.switch) {
            (Some(max), _) => format!("{} of {max}", v.current),
            (None, true) => if v.current != 0 { "on" } else { "off" }.to_string(),
            (None, false) => v.current.to_string(),
        };
        out.push(row(&nic.name, &name, value));
    }
    for u in &l.unavailable {
        out.push(row(&nic.name, "unavailable", u));
    }
    out
}

/// The NAPI instances of `nic` (netdev-genl).
pub fn napis_of<'m>(m: &'m Machine, nic: &'m Nic) -> impl Iterator<Item = &'m Napi> {
    m.napi
        .iter()
        .flat_map(|t| &t.napis)
        .filter(move |x| x.device == nic.name)
}

/// One NAPI in words: the queues it serves, its IRQ (`N*`: its rx queue's, where the driver
/// does not tell netdev-genl), where it runs, threaded or not, its deferral settings.
pub fn napi_text(napi: &Napi) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let served: Vec<String> = napi
        .rx_queues
        .iter()
        .map(|q| format!("rx-{q}"))
        .chain(napi.tx_queues.iter().map(|q| format!("tx-{q}")))
        .collect();
    format!(
        "{}  irq {}  CPU {}  {}  defer_hard_irqs {}  gro_flush_timeout {}  irq_suspend_timeout {}",
        if served.is_empty() {
            "-".to_string()
        } else {
            served.join(",")
        },
        match napi.irq {
            Some(i) if napi.irq_from_queue => format!("{i}*"),
            Some(i) => i.to_string(),
            None => "-".into(),
        },
        if napi.cpus.is_empty() {
            "-".to_string()
        } else {
            crate::model::cpulist::format(&napi.cpus)
        },
        match napi.pid {
            Some(p) => format!("threaded (kthread pid {p})"),
            None => "softirq".to_string(),
        },
        opt(napi.defer_hard_irqs.map(u64::from)),
        opt(napi.gro_flush_timeout_ns),
        opt(napi.irq_suspend_timeout_ns),
    )
}
