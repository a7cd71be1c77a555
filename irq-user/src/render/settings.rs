//! The settings a report shows beside the measurements: the softnet sysctls and each NIC's
//! channels, ring sizes and coalescing, as the profile's machine context holds them. One
//! list, so the text, HTML and CSV reports show the same rows.

use crate::model::machine::Machine;

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
    out
}
