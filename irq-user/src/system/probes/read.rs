//! Reading the maps into a [`Snapshot`].

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use irq_ebpf::{
    maps, FlowCpuCounts, FlowCpuKey, FlowInfo, FlowKey, FlowLatency, IrqCpu, IrqHist, Loss,
    NetDevKey, NetDevStats, SoftirqStats, NR_SOFTIRQS,
};

use super::{LoadError, Probes};
use crate::model::snapshot::{FlowSeries, IrqSeries, NetDevSeries, Snapshot};

fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

impl Probes {
    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, LoadError> {
        self.ebpf
            .as_ref()
            .and_then(|e| e.map(name))
            .ok_or(LoadError::MissingMap(name))
    }

    fn read_irqs(&self) -> Result<Vec<IrqSeries>, LoadError> {
        let per_cpu: PerCpuArray<&MapData, IrqCpu> =
            PerCpuArray::try_from(self.map(maps::IRQ_CPU)?).map_err(err(maps::IRQ_CPU))?;
        let hists: Array<&MapData, IrqHist> =
            Array::try_from(self.map(maps::IRQ_HIST)?).map_err(err(maps::IRQ_HIST))?;
        let mut irqs = Vec::with_capacity(self.slot_irqs.len());
        for (slot, irq) in self.slot_irqs.iter().enumerate() {
            let slot = slot as u32;
            let name = match irq {
                Some(n) => self.irq_names.get(n).cloned().unwrap_or_default(),
                None => "(IRQs without a slot)".to_string(),
            };
            irqs.push(IrqSeries {
                irq: *irq,
                name,
                per_cpu: per_cpu.get(&slot, 0).map_err(err(maps::IRQ_CPU))?.to_vec(),
                hist: hists.get(&slot, 0).map_err(err(maps::IRQ_HIST))?.hist,
            });
        }
        Ok(irqs)
    }

    fn read_softirqs(&self) -> Result<Vec<Vec<SoftirqStats>>, LoadError> {
        let stats: PerCpuArray<&MapData, SoftirqStats> =
            PerCpuArray::try_from(self.map(maps::SOFTIRQ_STATS)?)
                .map_err(err(maps::SOFTIRQ_STATS))?;
        (0..NR_SOFTIRQS as u32)
            .map(|vec| {
                stats
                    .get(&vec, 0)
                    .map(|v| v.to_vec())
                    .map_err(err(maps::SOFTIRQ_STATS))
            })
            .collect()
    }

    fn read_netdevs(&self) -> Result<Vec<NetDevSeries>, LoadError> {
        let stats: HashMap<&MapData, NetDevKey, NetDevStats> =
            HashMap::try_from(self.map(maps::NETDEV_STATS)?).map_err(err(maps::NETDEV_STATS))?;
        let mut by_dev: BTreeMap<u64, BTreeMap<u32, NetDevStats>> = BTreeMap::new();
        for item in stats.iter() {
            let (key, s) = item.map_err(err(maps::NETDEV_STATS))?;
            by_dev.entry(key.dev).or_default().insert(key.cpu, s);
        }
        Ok(by_dev
            .into_iter()
            .map(|(dev, per_cpu)| NetDevSeries::new(dev, per_cpu))
            .collect())
    }

    fn read_flows(&self) -> Result<Vec<FlowSeries>, LoadError> {
        let info: HashMap<&MapData, FlowKey, FlowInfo> =
            HashMap::try_from(self.map(maps::FLOWS)?).map_err(err(maps::FLOWS))?;
        let mut flows: BTreeMap<FlowKey, FlowSeries> = BTreeMap::new();
        for item in info.iter() {
            let (key, mut info) = item.map_err(err(maps::FLOWS))?;
            if info.napi_id < min_napi_id() {
                info.napi_id = 0;
            }
            flows.insert(
                key,
                FlowSeries {
                    key,
                    info,
                    per_cpu: BTreeMap::new(),
                    latency: BTreeMap::new(),
                },
            );
        }
        let cpus: HashMap<&MapData, FlowCpuKey, FlowCpuCounts> =
            HashMap::try_from(self.map(maps::FLOW_CPUS)?).map_err(err(maps::FLOW_CPUS))?;
        for item in cpus.iter() {
            let (key, counts) = item.map_err(err(maps::FLOW_CPUS))?;
            // Counts of a socket whose FLOWS entry was evicted have no addresses: left out,
            // and visible in the eviction count.
            if let Some(f) = flows.get_mut(&key.flow()) {
                f.per_cpu.insert(key.cpu, counts);
            }
        }
        let latency: HashMap<&MapData, FlowCpuKey, FlowLatency> =
            HashMap::try_from(self.map(maps::FLOW_LATENCY)?).map_err(err(maps::FLOW_LATENCY))?;
        for item in latency.iter() {
            let (key, l) = item.map_err(err(maps::FLOW_LATENCY))?;
            if let Some(f) = flows.get_mut(&key.flow()) {
                f.latency.insert(key.cpu, l);
            }
        }
        Ok(flows.into_values().collect())
    }

    fn read_losses(&self) -> Result<[u64; Loss::COUNT as usize], LoadError> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(maps::LOSSES)?).map_err(err(maps::LOSSES))?;
        let mut losses = [0u64; Loss::COUNT as usize];
        for loss in Loss::ALL {
            losses[loss as usize] = map
                .get(&(loss as u32), 0)
                .map_err(err(maps::LOSSES))?
                .iter()
                .fold(0u64, |a, &n| a.saturating_add(n));
        }
        Ok(losses)
    }

    /// Reads every map. Per-CPU values are kept per CPU.
    pub fn snapshot(&self) -> Result<Snapshot, LoadError> {
        let taken_ns = crate::model::snapshot::monotonic_ns();
        let observed_ns = self.observed_ns();
        let irqs = self.read_irqs()?;
        let softirqs = self.read_softirqs()?;
        let netdevs = self.read_netdevs()?;
        // The loss counters before the flow maps: evictions are entries created minus entries
        // present, so a flow created between the two reads must not be counted created and
        // missed as present (that read order showed a healthy host one eviction). Read in this
        // order, such a flow is present and not yet counted: the difference can only fall
        // short of the evictions, never invent one.
        let losses = self.read_losses()?;
        let flows = self.read_flows()?;
        Ok(Snapshot {
            taken_ns,
            observed_ns,
            irqs,
            softirqs,
            netdevs,
            flow_evictions: Snapshot::evictions(
                losses[Loss::FlowsCreated as usize],
                flows.len() as u64,
            ),
            flows,
            losses,
            hardirq_runs: self.hardirq_runs(),
        })
    }

    /// The kernel's run count of the hardirq exit program (the one that counts handler runs):
    /// a check on the probes from outside them. The kernel counts runs only while BPF
    /// statistics are on, so 0 can mean "not counted"; the profile tells the two apart.
    fn hardirq_runs(&self) -> Option<u64> {
        let attached = self
            .attached
            .iter()
            .find(|a| a.probe.name == "irq_handler_exit")?;
        let program = self.ebpf.as_ref()?.program(attached.programs.first()?)?;
        program.info().ok().map(|i| i.run_count())
    }
}

/// Kernel memory of the BPF maps this process holds, bytes: the `memlock` the kernel charges
/// for each map (/proc/self/fdinfo; since 5.11 charged to the memory cgroup). None when
/// /proc/self/fdinfo cannot be read.
pub fn map_memory() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fdinfo").ok()?;
    let mut total = 0u64;
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if !text.lines().any(|l| l.starts_with("map_type:")) {
            continue;
        }
        let memlock = text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        total = total.saturating_add(memlock);
    }
    Some(total)
}

/// The smallest NAPI id the kernel hands out: NR_CPUS + 1 (include/net/busy_poll.h,
/// MIN_NAPI_ID), NR_CPUS being /sys/devices/system/cpu/kernel_max + 1. Below it, a socket's
/// `sk_napi_id` holds what an skb carried in the same field on transmit (its sender CPU + 1,
/// as loopback delivers it), not a NAPI. 8193 (x86's largest NR_CPUS + 1) if unreadable.
fn min_napi_id() -> u32 {
    static MIN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/kernel_max")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .map_or(8193, |max| max.saturating_add(2))
    })
}
