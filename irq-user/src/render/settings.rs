//! The settings a report shows beside the measurements: the softnet sysctls and each NIC's
//! channels, ring sizes and coalescing, as the profile's machine context holds them. One
//! list, so the text, HTML and CSV reports show the same rows.

use crate::model::machine::{
    ethtool::{ChannelKind, CoalesceParam, RingKind},
    Machine, Nic,
};

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
        for napi in m
            .napi
            .iter()
            .flat_map(|t| &t.napis)
            .filter(|x| x.device == nic.name)
        {
            let queues: Vec<String> = napi
                .rx_queues
                .iter()
                .map(|q| format!("rx-{q}"))
                .chain(napi.tx_queues.iter().map(|q| format!("tx-{q}")))
                .collect();
            out.push(row(
                &nic.name,
                &format!("napi {}", napi.id),
                format!(
                    "{} irq {} CPU {} {}",
                    queues.join(","),
                    napi.irq.map_or("-".to_string(), |i| i.to_string()),
                    crate::model::cpulist::format(&napi.cpus),
                    napi.pid
                        .map_or("softirq".to_string(), |p| format!("threaded pid {p}"))
                ),
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
    let of = |v: Option<u32>, max: Option<u32>| match (v, max) {
        (Some(v), Some(m)) => Some(format!("{v} of {m}")),
        (Some(v), None) => Some(v.to_string()),
        _ => None,
    };
    if let Some(c) = &l.channels {
        for k in [ChannelKind::Combined, ChannelKind::Rx, ChannelKind::Tx] {
            if let Some(v) = of(c.get(k), c.max(k)) {
                out.push(row(&nic.name, &format!("channels {}", k.name()), v));
            }
        }
    }
    if let Some(r) = &l.rings {
        for k in [RingKind::Rx, RingKind::Tx] {
            if let Some(v) = of(r.get(k), r.max(k)) {
                out.push(row(&nic.name, &format!("ring {}", k.name()), v));
            }
        }
    }
    if let Some(c) = &l.coalesce {
        for p in CoalesceParam::ALL {
            if let Some(v) = c.get(p) {
                let v = if p.is_switch() {
                    if v != 0 { "on" } else { "off" }.to_string()
                } else {
                    v.to_string()
                };
                out.push(row(&nic.name, p.name(), v));
            }
        }
    }
    for u in &l.unavailable {
        out.push(row(&nic.name, "unavailable", u));
    }
    out
}
