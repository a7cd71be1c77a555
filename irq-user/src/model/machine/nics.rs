//! Network devices: driver, NUMA node, rx/tx queues with their RPS/RFS/XPS settings
//! (/sys/class/net/IFACE/queues, Documentation/networking/scaling.rst) and queue IRQs.

use serde::{Deserialize, Serialize};

use super::ethtool::NicLayer;
use super::irqs::{queue_of, Irq, IrqUse, QueueKind};
use crate::{model::cpulist, model::tree::Tree};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RxQueue {
    pub index: u32,
    /// rps_cpus as the kernel prints it (hex mask); None when the kernel lacks RPS.
    pub rps_cpus: Option<String>,
    pub rps_flow_cnt: Option<u64>,
    pub irq: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TxQueue {
    pub index: u32,
    /// xps_cpus (hex mask); None where the kernel does not show it (single-queue devices).
    pub xps_cpus: Option<String>,
    pub irq: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Nic {
    pub name: String,
    pub driver: Option<String>,
    /// The bus device ("0000:3b:00.0", "virtio2"); None for virtual devices (veth, bridge).
    pub device: Option<String>,
    pub node: Option<u32>,
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    /// Every IRQ of the device, queue or not.
    pub irqs: Vec<u32>,
    /// Channels, rings and coalescing (ethtool-netlink); None: not read (a captured tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<NicLayer>,
    /// The device's NAPI settings in sysfs (Documentation/ABI/testing/sysfs-class-net):
    /// threaded NAPI (5.12+), napi_defer_hard_irqs, gro_flush_timeout (ns); None where the
    /// kernel or the tree lacks the file.
    #[serde(default)]
    pub napi: NicNapi,
}

/// A device's NAPI settings from sysfs (per device; per NAPI ones are in netdev-genl).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NicNapi {
    pub threaded: Option<u32>,
    pub defer_hard_irqs: Option<u32>,
    pub gro_flush_timeout_ns: Option<u64>,
}

impl RxQueue {
    pub fn rps_list(&self) -> Vec<u32> {
        self.rps_cpus
            .as_deref()
            .and_then(|m| cpulist::parse_mask(m).ok())
            .unwrap_or_default()
    }
}

impl Nic {
    /// Number of distinct queue vectors that receive (rx or combined).
    pub fn rx_vectors(&self) -> usize {
        self.rx.iter().filter(|q| q.irq.is_some()).count()
    }
}

fn queue_index(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.parse().ok()
}

/// Reads every network device but `lo`, and marks the IRQs that serve them.
pub fn read(root: &impl Tree, irqs: &mut [Irq]) -> Vec<Nic> {
    let mut nics = Vec::new();
    for name in root.list("sys/class/net") {
        if name == "lo" {
            continue;
        }
        let base = format!("sys/class/net/{name}");
        let has_device = root.exists(&format!("{base}/device"));
        let device = has_device
            .then(|| root.link_name(&format!("{base}/device")))
            .flatten();
        let driver = root.link_name(&format!("{base}/device/driver"));
        // virtio-net's device is the virtio bus device; the PCI function (with numa_node and
        // msi_irqs) is its parent.
        let node = [
            format!("{base}/device/numa_node"),
            format!("{base}/device/../numa_node"),
        ]
        .iter()
        .find_map(|p| root.read_parsed::<i64>(p))
        .and_then(|n| u32::try_from(n).ok());
        let mut msi: Vec<u32> = Vec::new();
        if has_device {
            for dir in [
                format!("{base}/device/msi_irqs"),
                format!("{base}/device/../msi_irqs"),
            ] {
                msi.extend(root.list(&dir).iter().filter_map(|n| n.parse::<u32>().ok()));
            }
        }
        let mut prefixes = vec![name.clone()];
        prefixes.extend(device.clone());
        let (mut rx, mut tx) = queues(root, &base);
        let own = claim_irqs(irqs, &name, &prefixes, &msi, &mut rx, &mut tx);
        let layer = root.nic_layer(&name);
        let napi = NicNapi {
            threaded: root.read_parsed(&format!("{base}/threaded")),
            defer_hard_irqs: root.read_parsed(&format!("{base}/napi_defer_hard_irqs")),
            gro_flush_timeout_ns: root.read_parsed(&format!("{base}/gro_flush_timeout")),
        };
        nics.push(Nic {
            name,
            driver,
            device,
            node,
            rx,
            tx,
            irqs: own,
            layer,
            napi,
        });
    }
    nics
}

/// The device's rx and tx queues with their steering masks (IRQs filled in later).
fn queues(root: &impl Tree, base: &str) -> (Vec<RxQueue>, Vec<TxQueue>) {
    let mut rx: Vec<RxQueue> = Vec::new();
    let mut tx: Vec<TxQueue> = Vec::new();
    for q in root.list(&format!("{base}/queues")) {
        let qdir = format!("{base}/queues/{q}");
        if let Some(index) = queue_index(&q, "rx-") {
            rx.push(RxQueue {
                index,
                rps_cpus: root.read_opt(&format!("{qdir}/rps_cpus")),
                rps_flow_cnt: root.read_parsed(&format!("{qdir}/rps_flow_cnt")),
                irq: None,
            });
        } else if let Some(index) = queue_index(&q, "tx-") {
            tx.push(TxQueue {
                index,
                xps_cpus: root.read_opt(&format!("{qdir}/xps_cpus")),
                irq: None,
            });
        }
    }
    (rx, tx)
}

/// Marks the IRQs that serve device `name` (by MSI vector, queue name or device name) and
/// ties queue vectors to their queues. Returns the device's IRQs.
fn claim_irqs(
    irqs: &mut [Irq],
    name: &str,
    prefixes: &[String],
    msi: &[u32],
    rx: &mut [RxQueue],
    tx: &mut [TxQueue],
) -> Vec<u32> {
    let mut own = Vec::new();
    for irq in irqs.iter_mut() {
        let by_msi = msi.contains(&irq.irq);
        let queue = queue_of(&irq.name, prefixes, by_msi);
        let by_name = prefixes.iter().any(|p| {
            irq.name
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.'))
                .any(|tok| tok == p)
                || irq.name.starts_with(&format!("{p}-"))
        });
        if !(by_msi || queue.is_some() || by_name) {
            continue;
        }
        own.push(irq.irq);
        irq.usage = match queue {
            Some((queue, dir)) => {
                if matches!(dir, QueueKind::Rx | QueueKind::Combined) {
                    if let Some(q) = rx.iter_mut().find(|q| q.index == queue) {
                        q.irq = Some(irq.irq);
                    }
                }
                if matches!(dir, QueueKind::Tx | QueueKind::Combined) {
                    if let Some(q) = tx.iter_mut().find(|q| q.index == queue) {
                        q.irq = Some(irq.irq);
                    }
                }
                IrqUse::NetQueue {
                    iface: name.to_string(),
                    queue,
                    dir,
                }
            }
            None => IrqUse::NetOther {
                iface: name.to_string(),
            },
        };
    }
    own
}
