//! CPU topology from /sys/devices/system/{cpu,node}: packages, cores, SMT siblings, NUMA
//! nodes, last-level cache groups, and the CPUs that must not get interrupts (offline,
//! isolated, nohz_full). Documentation/ABI/stable/sysfs-devices-system-cpu.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{model::cpulist, model::tree::Tree};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cpu {
    pub id: u32,
    pub online: bool,
    pub package: Option<u32>,
    pub core: Option<u32>,
    pub node: Option<u32>,
    /// SMT siblings including this CPU (thread_siblings_list).
    pub siblings: Vec<u32>,
    /// CPUs sharing the last-level cache.
    pub llc: Vec<u32>,
    pub isolated: bool,
    pub nohz_full: bool,
}

/// A physical core's identity (see [`Topology::core_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CoreKey {
    PackageCore(u32, u32),
    FirstSibling(u32),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Topology {
    pub possible: Vec<u32>,
    pub online: Vec<u32>,
    /// Width of kernel CPU masks (highest possible CPU + 1).
    pub nr_cpu_ids: u32,
    pub cpus: Vec<Cpu>,
    /// NUMA node → its CPUs.
    pub nodes: BTreeMap<u32, Vec<u32>>,
    pub isolated: Vec<u32>,
    pub nohz_full: Vec<u32>,
}

fn list(root: &impl Tree, rel: &str) -> Vec<u32> {
    root.read_opt(rel)
        .and_then(|s| cpulist::parse(&s).ok())
        .unwrap_or_default()
}

impl Topology {
    /// The CPU lists the topology is read for (online, possible, isolated, nohz_full), as
    /// read: when they read the same, so does the rest of the topology (CPU hotplug changes
    /// `online`).
    pub fn key(root: &impl Tree) -> String {
        ["online", "possible", "isolated", "nohz_full"]
            .iter()
            .map(|f| {
                root.read_opt(&format!("sys/devices/system/cpu/{f}"))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    /// Reads the topology. `online_fallback` gives the CPUs when the tree has no
    /// /sys/devices/system/cpu (a capture with only /proc): the /proc/interrupts columns.
    pub fn read(root: &impl Tree, online_fallback: &[u32]) -> Topology {
        let base = "sys/devices/system/cpu";
        let mut online = list(root, &format!("{base}/online"));
        if online.is_empty() {
            online = online_fallback.to_vec();
        }
        let mut possible = list(root, &format!("{base}/possible"));
        if possible.is_empty() {
            possible = online.clone();
        }
        let isolated = list(root, &format!("{base}/isolated"));
        let nohz_full = list(root, &format!("{base}/nohz_full"));
        let mut nodes = BTreeMap::new();
        for name in root.list("sys/devices/system/node") {
            let Some(n) = name.strip_prefix("node").and_then(|n| n.parse().ok()) else {
                continue;
            };
            nodes.insert(
                n,
                list(root, &format!("sys/devices/system/node/{name}/cpulist")),
            );
        }
        let node_of = |cpu: u32| {
            nodes
                .iter()
                .find(|(_, cpus)| cpus.contains(&cpu))
                .map(|(n, _)| *n)
        };
        let cpus = possible
            .iter()
            .map(|&id| {
                let dir = format!("{base}/cpu{id}");
                let topo = |f: &str| root.read_parsed::<u32>(&format!("{dir}/topology/{f}"));
                let mut siblings = list(root, &format!("{dir}/topology/thread_siblings_list"));
                if siblings.is_empty() {
                    siblings = vec![id];
                }
                let llc = root
                    .list(&format!("{dir}/cache"))
                    .iter()
                    .filter(|idx| idx.starts_with("index"))
                    .filter_map(|idx| {
                        let level = root.read_parsed::<u32>(&format!("{dir}/cache/{idx}/level"))?;
                        Some((
                            level,
                            list(root, &format!("{dir}/cache/{idx}/shared_cpu_list")),
                        ))
                    })
                    .max_by_key(|(level, _)| *level)
                    .map(|(_, cpus)| cpus)
                    .unwrap_or_default();
                Cpu {
                    id,
                    online: online.contains(&id),
                    package: topo("physical_package_id"),
                    core: topo("core_id"),
                    node: node_of(id),
                    siblings,
                    llc,
                    isolated: isolated.contains(&id),
                    nohz_full: nohz_full.contains(&id),
                }
            })
            .collect();
        let nr_cpu_ids = possible.iter().max().map_or(1, |m| m + 1);
        Topology {
            possible,
            online,
            nr_cpu_ids,
            cpus,
            nodes,
            isolated,
            nohz_full,
        }
    }

    pub fn cpu(&self, id: u32) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    /// Online CPUs that may take interrupts: not isolated, not nohz_full.
    pub fn housekeeping(&self) -> Vec<u32> {
        self.online
            .iter()
            .copied()
            .filter(|c| !self.isolated.contains(c) && !self.nohz_full.contains(c))
            .collect()
    }

    pub fn node_cpus(&self, node: u32) -> Option<&[u32]> {
        self.nodes.get(&node).map(Vec::as_slice)
    }

    /// `cpu`'s physical core: CPUs with the same key share one. core_id repeats in every
    /// package (and QEMU's default topology repeats it in every socket), so the key is the
    /// (package, core) pair where sysfs gives both, else the first of the SMT siblings.
    pub fn core_of(&self, cpu: u32) -> CoreKey {
        match self.cpu(cpu) {
            Some(Cpu {
                package: Some(p),
                core: Some(c),
                ..
            }) => CoreKey::PackageCore(*p, *c),
            Some(c) => CoreKey::FirstSibling(c.siblings.iter().min().copied().unwrap_or(cpu)),
            None => CoreKey::FirstSibling(cpu),
        }
    }

    /// The lowest-numbered SMT thread of `cpu`'s core (itself without SMT).
    pub fn first_thread(&self, cpu: u32) -> u32 {
        self.cpu(cpu)
            .and_then(|c| c.siblings.iter().min().copied())
            .unwrap_or(cpu)
    }

    /// Number of physical cores among `cpus`.
    pub fn cores_in(&self, cpus: &[u32]) -> usize {
        let mut cores: Vec<CoreKey> = cpus.iter().map(|&c| self.core_of(c)).collect();
        cores.sort_unstable();
        cores.dedup();
        cores.len()
    }

    /// `cpus` ordered for spreading interrupts: one thread of each physical core first, then
    /// the SMT siblings (a sibling shares the core's execution units, so a second interrupt
    /// load on it gains little, as the source notes on hyperthreading say).
    pub fn spread_order(&self, cpus: &[u32]) -> Vec<u32> {
        let mut sorted = cpus.to_vec();
        sorted.sort_unstable();
        let mut rank: BTreeMap<CoreKey, usize> = BTreeMap::new();
        let mut keyed: Vec<(usize, u32)> = sorted
            .iter()
            .map(|&c| {
                let r = rank.entry(self.core_of(c)).or_insert(0);
                let k = *r;
                *r += 1;
                (k, c)
            })
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, c)| c).collect()
    }

    /// Whether two CPUs are SMT siblings (different CPUs on one core).
    pub fn are_siblings(&self, a: u32, b: u32) -> bool {
        a != b && self.core_of(a) == self.core_of(b)
    }
}
