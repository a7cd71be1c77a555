//! A finding: what is wrong, with the evidence and the fix. The analysis makes them
//! (`analysis::findings`), profiles carry them, the reports print them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// As the reports print it (and as the JSON spells it).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a finding is about: a stable identifier, also the Prometheus `id` label.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingId {
    MeasurementIncomplete,
    NetRxConcentrated,
    SingleQueueWithoutRps,
    RfsOffWithMismatch,
    RfsTableUndersized,
    UnsteerableFlowMismatch,
    IrqbalanceRunning,
    KsoftirqdNetRx,
    SoftnetDrops,
    SoftnetFlowLimit,
    NicRxNoBuffer,
    SoftnetTimeSqueeze,
    NicIrqRemoteNuma,
    QueueIrqsOnSmtSiblings,
    DiskAndNicOnOneCpu,
    BusyPollAlignment,
}

impl FindingId {
    /// The identifier as the JSON and the metrics spell it ("net_rx_concentrated").
    pub fn name(self) -> &'static str {
        match self {
            FindingId::MeasurementIncomplete => "measurement_incomplete",
            FindingId::NetRxConcentrated => "net_rx_concentrated",
            FindingId::SingleQueueWithoutRps => "single_queue_without_rps",
            FindingId::RfsOffWithMismatch => "rfs_off_with_mismatch",
            FindingId::RfsTableUndersized => "rfs_table_undersized",
            FindingId::UnsteerableFlowMismatch => "unsteerable_flow_mismatch",
            FindingId::IrqbalanceRunning => "irqbalance_running",
            FindingId::KsoftirqdNetRx => "ksoftirqd_net_rx",
            FindingId::SoftnetDrops => "softnet_drops",
            FindingId::SoftnetFlowLimit => "softnet_flow_limit",
            FindingId::NicRxNoBuffer => "nic_rx_no_buffer",
            FindingId::SoftnetTimeSqueeze => "softnet_time_squeeze",
            FindingId::NicIrqRemoteNuma => "nic_irq_remote_numa",
            FindingId::QueueIrqsOnSmtSiblings => "queue_irqs_on_smt_siblings",
            FindingId::DiskAndNicOnOneCpu => "disk_and_nic_on_one_cpu",
            FindingId::BusyPollAlignment => "busy_poll_alignment",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    pub id: FindingId,
    pub severity: Severity,
    pub title: String,
    /// The numbers behind it.
    pub evidence: String,
    /// What to do.
    pub fix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for id in [FindingId::NetRxConcentrated, FindingId::DiskAndNicOnOneCpu] {
            assert_eq!(
                serde_json::to_string(&id).unwrap(),
                format!("\"{}\"", id.name())
            );
        }
    }
}
