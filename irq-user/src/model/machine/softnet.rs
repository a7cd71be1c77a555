//! The softnet settings (net.core sysctls, Documentation/admin-guide/sysctl/net.rst): how many
//! packets each CPU's backlog queue holds and how much one NET_RX run may do. Global: they
//! exist only in the initial network namespace (net/core/sysctl_net_core.c).

use serde::{Deserialize, Serialize};

use crate::model::tree::Tree;

pub const MAX_BACKLOG: &str = "proc/sys/net/core/netdev_max_backlog";
pub const BUDGET: &str = "proc/sys/net/core/netdev_budget";
pub const BUDGET_USECS: &str = "proc/sys/net/core/netdev_budget_usecs";
pub const DEV_WEIGHT: &str = "proc/sys/net/core/dev_weight";
pub const FLOW_LIMIT_CPU_BITMAP: &str = "proc/sys/net/core/flow_limit_cpu_bitmap";
pub const FLOW_LIMIT_TABLE_LEN: &str = "proc/sys/net/core/flow_limit_table_len";

/// Each value as the kernel shows it; None where the tree lacks the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Softnet {
    /// Packets a CPU's backlog queue (RPS, netif_rx, veth) holds before dropping.
    pub netdev_max_backlog: Option<u64>,
    /// Packets one NET_RX run processes before it yields (time_squeeze).
    pub netdev_budget: Option<u64>,
    /// Microseconds one NET_RX run may take before it yields (time_squeeze).
    pub netdev_budget_usecs: Option<u64>,
    /// Packets one NAPI poll may process (the NAPI weight of the backlog).
    pub dev_weight: Option<u64>,
    /// CPUs on which a flow may take at most half of a full backlog (hex mask).
    pub flow_limit_cpu_bitmap: Option<String>,
    pub flow_limit_table_len: Option<u64>,
}

impl Softnet {
    pub fn read(root: &impl Tree) -> Softnet {
        Softnet {
            netdev_max_backlog: root.read_parsed(MAX_BACKLOG),
            netdev_budget: root.read_parsed(BUDGET),
            netdev_budget_usecs: root.read_parsed(BUDGET_USECS),
            dev_weight: root.read_parsed(DEV_WEIGHT),
            flow_limit_cpu_bitmap: root.read_opt(FLOW_LIMIT_CPU_BITMAP),
            flow_limit_table_len: root.read_parsed(FLOW_LIMIT_TABLE_LEN),
        }
    }
}
