//! Per-IRQ state: /proc/interrupts joined with /proc/irq/N/{smp_affinity_list,
//! effective_affinity_list,node} and what the IRQ serves (a NIC queue, a disk).

use serde::{Deserialize, Serialize};

use crate::{model::cpulist, model::procfs::Interrupts, model::tree::Tree};

/// Direction of a NIC queue interrupt.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    Rx,
    Tx,
    /// One vector for an rx and a tx queue of the same index ("eth0-TxRx-3", "mlx5_comp3").
    Combined,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IrqUse {
    NetQueue {
        iface: String,
        queue: u32,
        dir: QueueKind,
    },
    /// A NIC's vector that serves no queue (config, link state, admin).
    NetOther {
        iface: String,
    },
    Block,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Irq {
    pub irq: u32,
    pub name: String,
    pub chip: String,
    /// Count per CPU, indexed like `Machine::interrupt_cpus`.
    pub counts: Vec<u64>,
    /// smp_affinity_list: where the IRQ may go.
    pub affinity: Vec<u32>,
    /// effective_affinity_list: where it goes now (updated at the next interrupt after a change).
    pub effective: Option<Vec<u32>>,
    pub node: Option<u32>,
    /// Kernel-managed affinity (multi-queue block devices): user space cannot move it.
    pub managed: bool,
    /// Why we think it is managed.
    pub managed_reason: Option<String>,
    #[serde(rename = "use")]
    pub usage: IrqUse,
}

impl Irq {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Whether the kernel manages this IRQ's affinity. With CONFIG_GENERIC_IRQ_DEBUGFS the
/// debugfs state says so (IRQD_AFFINITY_MANAGED); without it, the drivers known to request
/// managed vectors (blk-mq over MSI-X: nvme I/O queues, virtio-blk request queues) are
/// recognised by name. Writing smp_affinity of a managed IRQ fails with EIO/EPERM.
fn managed(root: &impl Tree, irq: u32, name: &str) -> Option<String> {
    if let Some(state) = root.read_opt(&format!("sys/kernel/debug/irq/irqs/{irq}")) {
        return state
            .contains("AFFINITY_MANAGED")
            .then(|| "debugfs: IRQD_AFFINITY_MANAGED".to_string());
    }
    let first = name.split_whitespace().next().unwrap_or("");
    let nvme_io = first
        .strip_prefix("nvme")
        .and_then(|r| r.split_once('q'))
        .is_some_and(|(ctrl, q)| {
            !ctrl.is_empty()
                && ctrl.bytes().all(|b| b.is_ascii_digit())
                && q.parse::<u32>().is_ok_and(|q| q > 0)
        });
    let virtio_blk = first.starts_with("virtio") && first.contains("-req.");
    (nvme_io || virtio_blk).then(|| format!("{first}: blk-mq queue vectors are kernel-managed"))
}

fn is_block(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("nvme")
        || n.contains("-req.")
        || n.starts_with("ahci")
        || n.contains("megasas")
        || n.contains("mpt")
        || n.starts_with("ata_")
        || n.contains("scsi")
}

/// Reads every numbered IRQ of `interrupts`. `usage` is filled in by the NIC scan.
pub fn read(root: &impl Tree, interrupts: &Interrupts) -> Vec<Irq> {
    interrupts
        .rows
        .iter()
        .filter_map(|row| {
            let irq = row.irq?;
            let dir = format!("proc/irq/{irq}");
            let affinity = root
                .read_opt(&format!("{dir}/smp_affinity_list"))
                .and_then(|s| cpulist::parse(&s).ok())
                .or_else(|| {
                    root.read_opt(&format!("{dir}/smp_affinity"))
                        .and_then(|s| cpulist::parse_mask(&s).ok())
                })
                .unwrap_or_default();
            let effective = root
                .read_opt(&format!("{dir}/effective_affinity_list"))
                .and_then(|s| cpulist::parse(&s).ok());
            let node = root
                .read_parsed::<i64>(&format!("{dir}/node"))
                .and_then(|n| u32::try_from(n).ok());
            let managed_reason = managed(root, irq, &row.name);
            Some(Irq {
                irq,
                name: row.name.clone(),
                chip: row.chip.clone(),
                counts: row.counts.clone(),
                affinity,
                effective,
                node,
                managed: managed_reason.is_some(),
                managed_reason,
                usage: if is_block(&row.name) {
                    IrqUse::Block
                } else {
                    IrqUse::Other
                },
            })
        })
        .collect()
}

/// What queue an IRQ name names, given the prefixes that identify the NIC ("eth0",
/// "virtio2"). Covers the common drivers: "eth0-TxRx-3" (ixgbe, i40e "i40e-eth0-TxRx-3"),
/// "eth0-3" (older igb/bnx2), "eth0-rx-1"/"eth0-tx-1", "virtio2-input.0"/"virtio2-output.0",
/// "mlx5_comp3@pci:..." (matched through the device's msi_irqs), "eth0-fp-2" (bnx2x).
pub fn queue_of(name: &str, prefixes: &[String], msi: bool) -> Option<(u32, QueueKind)> {
    // "mlx5_comp3@pci:0000:3b:00.0": the queue is before the '@'.
    let first = name.split_whitespace().next().unwrap_or(name);
    let first = first.split('@').next().unwrap_or(first);
    let lower = first.to_ascii_lowercase();
    let rest = prefixes
        .iter()
        .find_map(|p| {
            let p = p.to_ascii_lowercase();
            lower
                .find(&p)
                .filter(|&at| {
                    // Whole token: "eth1" must not match "eth10-0".
                    let after = lower.as_bytes().get(at + p.len());
                    !matches!(after, Some(b) if b.is_ascii_alphanumeric())
                })
                .map(|at| lower[at + p.len()..].to_string())
        })
        .or_else(|| msi.then(|| lower.clone()))?;
    let digits_at = rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let index: u32 = rest[digits_at..].parse().ok()?;
    let label = &rest[..digits_at];
    if [
        "config", "async", "event", "lsc", "misc", "ctrl", "admin", "mbx",
    ]
    .iter()
    .any(|w| label.contains(w))
    {
        return None;
    }
    let kind = if label.contains("txrx")
        || label.contains("rxtx")
        || label.contains("comp")
        || label.contains("fp")
        || label.contains("combined")
    {
        QueueKind::Combined
    } else if label.contains("input") || label.contains("rx") {
        QueueKind::Rx
    } else if label.contains("output") || label.contains("tx") {
        QueueKind::Tx
    } else if label
        .trim_matches(|c| c == '-' || c == '.' || c == '_')
        .is_empty()
    {
        QueueKind::Combined
    } else {
        return None;
    };
    Some((index, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, p: &[&str]) -> Option<(u32, QueueKind)> {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        queue_of(name, &p, false)
    }

    #[test]
    fn names_queues_of_common_drivers() {
        use QueueKind::*;
        assert_eq!(q("eth3-TxRx-2", &["eth3"]), Some((2, Combined)));
        assert_eq!(q("i40e-eth3-TxRx-11", &["eth3"]), Some((11, Combined)));
        assert_eq!(q("eth0-1", &["eth0"]), Some((1, Combined)));
        assert_eq!(q("eth0-rx-1", &["eth0"]), Some((1, Rx)));
        assert_eq!(q("eth0-tx-0", &["eth0"]), Some((0, Tx)));
        assert_eq!(q("virtio2-input.0", &["eth0", "virtio2"]), Some((0, Rx)));
        assert_eq!(q("virtio2-output.3", &["eth0", "virtio2"]), Some((3, Tx)));
        assert_eq!(q("virtio2-config", &["virtio2"]), None);
        assert_eq!(q("eth1-0", &["eth10"]), None);
        assert_eq!(q("eth10-0", &["eth1"]), None);
        assert_eq!(q("eth0", &["eth0"]), None);
        let msi = queue_of("mlx5_comp7@pci:0000:3b:00.0", &[], true);
        assert_eq!(msi, Some((7, Combined)));
        assert_eq!(queue_of("mlx5_async0@pci:0000:3b:00.0", &[], true), None);
    }

    use crate::model::tree::Empty as NoFiles;

    #[test]
    fn recognises_managed_block_vectors_by_name() {
        let root = NoFiles;
        assert!(managed(&root, 40, "nvme0q3").is_some());
        assert!(managed(&root, 40, "nvme0q0").is_none());
        assert!(managed(&root, 36, "virtio1-req.0").is_some());
        assert!(managed(&root, 38, "virtio2-input.0").is_none());
    }
}
