//! The machine as the kernel shows it in /proc and /sys: CPU topology, IRQs and where they
//! may run, network devices with their queues and steering settings, irqbalance. Read through
//! a [`Tree`](crate::model::tree::Tree), so it works on the live machine and on a captured
//! tree (`--root`).
//! `irqtune show` prints it, profiles embed it, and the planner starts from it.

pub mod ethtool;
pub mod irqbalance;
pub mod irqs;
pub mod napi;
pub mod nics;
pub mod softnet;
pub mod topology;

use serde::{Deserialize, Serialize};

pub use irqbalance::Irqbalance;
pub use irqs::{Irq, IrqUse, QueueKind};
pub use nics::{Nic, NicNapi, RxQueue, TxQueue};
pub use softnet::Softnet;
pub use topology::{CoreKey, Cpu, Topology};

use crate::{
    model::procfs::{self, Interrupts, ProcError},
    model::tree::Tree,
};

/// rps_sock_flow_entries: the global RFS table (net.core, init network namespace only).
pub const RPS_SOCK_FLOW_ENTRIES: &str = "proc/sys/net/core/rps_sock_flow_entries";

/// Which machine and which boot a plan or profile belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostId {
    pub hostname: String,
    pub boot_id: String,
    pub cpus: u32,
    pub kernel: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Machine {
    pub host: HostId,
    pub topology: Topology,
    /// CPU of each column of `Irq::counts` (offline CPUs have no column).
    pub interrupt_cpus: Vec<u32>,
    pub irqs: Vec<Irq>,
    pub nics: Vec<Nic>,
    pub rps_sock_flow_entries: Option<u64>,
    /// netdev_max_backlog, netdev_budget and the other softnet settings (profiles from
    /// before they were read: all None).
    #[serde(default)]
    pub softnet: Softnet,
    /// The NAPI instances (netdev-genl, the live machine only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napi: Option<napi::NapiTopology>,
    /// The CPUs a new kernel thread gets (kthreadd's, /proc/2/status): where a NAPI kthread
    /// starts when threaded NAPI is turned on. None where the tree lacks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_kthread_cpus: Option<Vec<u32>>,
    pub irqbalance: Irqbalance,
}

impl HostId {
    pub fn read(root: &impl Tree, cpus: u32) -> HostId {
        HostId {
            hostname: root
                .read_opt("proc/sys/kernel/hostname")
                .unwrap_or_default(),
            boot_id: root
                .read_opt("proc/sys/kernel/random/boot_id")
                .unwrap_or_default(),
            cpus,
            kernel: root
                .read_opt("proc/sys/kernel/osrelease")
                .unwrap_or_default(),
        }
    }
}

/// What a long-running reader keeps of the machine between reads: the parts that change
/// rarely and whose reading grows with the host. The topology is a handful of files per
/// possible CPU (about 6,000 reads at 512 CPUs), kept while the CPU lists (online, possible,
/// isolated, nohz_full) read the same; irqbalance is a scan of every process's comm (about
/// 11 ms of CPU per 1,000 processes, measured), kept while its known pid still names irqbalance,
/// and when it was not running, rescanned every [`IRQBALANCE_RESCAN`].
#[derive(Default)]
pub struct MachineCache {
    topology: Option<(String, Topology)>,
    irqbalance: Option<(Irqbalance, std::time::Instant)>,
}

/// How long a reader with a [`MachineCache`] may take to see irqbalance started: a minute,
/// six of `watch`'s default intervals (irqbalance itself rebalances every 10 s).
pub const IRQBALANCE_RESCAN: std::time::Duration = std::time::Duration::from_secs(60);

impl Machine {
    /// Reads the machine. /proc/interrupts is required; everything else is best effort, since
    /// captured trees often lack parts of /sys.
    pub fn read(root: &impl Tree) -> Result<Machine, ProcError> {
        let interrupts = procfs::read_interrupts(root)?;
        Ok(Machine::from_interrupts(root, &interrupts))
    }

    pub fn from_interrupts(root: &impl Tree, interrupts: &Interrupts) -> Machine {
        let topology = Topology::read(root, &interrupts.cpus);
        Machine::assemble(root, interrupts, topology, irqbalance::read(root))
    }

    /// The machine read again by a reader that keeps `cache` between reads (`watch`): the
    /// topology and irqbalance come from the cache while a cheap check says they have not
    /// changed (see [`MachineCache`]); everything else is read as by [`Machine::from_interrupts`].
    pub fn from_interrupts_cached(
        root: &impl Tree,
        interrupts: &Interrupts,
        cache: &mut MachineCache,
    ) -> Machine {
        let key = format!("{}|{:?}", Topology::key(root), interrupts.cpus);
        let topology = match &cache.topology {
            Some((k, t)) if *k == key => t.clone(),
            _ => {
                let t = Topology::read(root, &interrupts.cpus);
                cache.topology = Some((key, t.clone()));
                t
            }
        };
        let irqbalance = irqbalance::read_cached(root, &mut cache.irqbalance);
        Machine::assemble(root, interrupts, topology, irqbalance)
    }

    fn assemble(
        root: &impl Tree,
        interrupts: &Interrupts,
        topology: Topology,
        irqbalance: Irqbalance,
    ) -> Machine {
        let mut irqs = irqs::read(root, interrupts);
        let nics = nics::read(root, &mut irqs);
        let napi = root
            .napi_topology()
            .map(|t| napi_placed(root, t, &nics, &irqs));
        Machine {
            host: HostId::read(root, topology.online.len() as u32),
            topology,
            interrupt_cpus: interrupts.cpus.clone(),
            irqs,
            nics,
            rps_sock_flow_entries: root.read_parsed(RPS_SOCK_FLOW_ENTRIES),
            softnet: Softnet::read(root),
            napi,
            new_kthread_cpus: procfs::task_cpus(root, 2),
            irqbalance,
        }
    }

    pub fn irq(&self, irq: u32) -> Option<&Irq> {
        self.irqs.iter().find(|i| i.irq == irq)
    }

    pub fn nic(&self, name: &str) -> Option<&Nic> {
        self.nics.iter().find(|n| n.name == name)
    }

    /// Count of `irq` on `cpu` (0 if either is absent).
    pub fn irq_count(&self, irq: u32, cpu: u32) -> u64 {
        let Some(col) = self.interrupt_cpus.iter().position(|&c| c == cpu) else {
            return 0;
        };
        self.irq(irq)
            .and_then(|i| i.counts.get(col).copied())
            .unwrap_or(0)
    }
}

/// The NAPIs of the devices read (others dropped), each named and placed: its kthread's
/// allowed CPUs when threaded, else its IRQ's effective (or allowed) CPUs.
fn napi_placed(
    root: &impl Tree,
    mut t: napi::NapiTopology,
    nics: &[Nic],
    irqs: &[Irq],
) -> napi::NapiTopology {
    let by_index: std::collections::BTreeMap<u32, &str> = nics
        .iter()
        .filter_map(|n| {
            let i = root.read_parsed::<u32>(&format!("sys/class/net/{}/ifindex", n.name))?;
            Some((i, n.name.as_str()))
        })
        .collect();
    t.napis.retain_mut(|n| {
        let Some(name) = by_index.get(&n.ifindex) else {
            return false;
        };
        n.device = (*name).to_string();
        if n.irq.is_none() {
            let nic = nics.iter().find(|x| x.name == *name);
            n.irq = n
                .rx_queues
                .first()
                .and_then(|q| nic?.rx.iter().find(|r| r.index == *q)?.irq);
            n.irq_from_queue = n.irq.is_some();
        }
        // netdev-genl reports a pid only for a threaded NAPI.
        let kthread = n.pid.and_then(|pid| procfs::task_cpus(root, pid));
        n.cpus = kthread.unwrap_or_else(|| {
            n.irq
                .and_then(|i| irqs.iter().find(|q| q.irq == i))
                .map(|q| q.effective.clone().unwrap_or_else(|| q.affinity.clone()))
                .unwrap_or_default()
        });
        true
    });
    t
}
