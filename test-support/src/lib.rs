//! Machine-shaped /proc and /sys trees for tests and offline demos: a [`MachineSpec`] says
//! what the machine has (sockets, cores, SMT, isolated CPUs, NICs with their queue IRQs,
//! disks), and [`MachineSpec::write`] lays out the files the kernel would show, with the
//! same formats and the same quirks (masks as wide as nr_cpu_ids, virtio's PCI parent,
//! xps_cpus missing on single-queue devices). The specs in `tests/` model real machines.

pub mod fuzz;

use std::{fs, io, os::unix::fs::symlink, path::Path};

use irq_user::model::cpulist;

/// How a NIC's drivers name its queue IRQs in /proc/interrupts.
#[derive(Clone, Debug)]
pub enum IrqNaming {
    /// "eth2-TxRx-3" (ixgbe, igb), one vector per queue pair, plus "eth2" for the link.
    TxRx,
    /// "virtioN-input.Q" / "virtioN-output.Q" (virtio-net), plus "virtioN-config".
    Virtio { dev: String },
    /// "mlx5_compQ@pci:BDF" (mlx5), plus "mlx5_async0@pci:BDF"; found through msi_irqs.
    Mlx5,
    /// No IRQs (veth, bridge).
    None,
}

#[derive(Clone, Debug)]
pub struct NicSpec {
    pub name: String,
    pub driver: String,
    pub pci: String,
    pub node: i32,
    pub queues: u32,
    pub naming: IrqNaming,
    pub first_irq: u32,
    /// Interrupts per queue vector so far (the load signal of an offline plan).
    pub counts: Vec<u64>,
    /// Where the queue IRQs are allowed to go today.
    pub affinity: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct DiskSpec {
    /// Vector name with `{q}` for its index: "nvme0q{q}" (q0 is the admin queue),
    /// "virtio1-req.{q}".
    pub pattern: String,
    pub vectors: u32,
    pub first_irq: u32,
    pub counts: Vec<u64>,
    /// Vectors from this index on are kernel-managed (1 for NVMe, 0 for virtio-blk).
    pub managed_from: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct MachineSpec {
    pub hostname: String,
    pub boot_id: String,
    pub kernel: String,
    pub sockets: u32,
    pub cores_per_socket: u32,
    pub threads_per_core: u32,
    pub isolated: Vec<u32>,
    pub nohz_full: Vec<u32>,
    pub offline: Vec<u32>,
    pub nics: Vec<NicSpec>,
    pub disks: Vec<DiskSpec>,
    pub rps_sock_flow_entries: u64,
    /// net.core.netdev_max_backlog, netdev_budget, netdev_budget_usecs (the kernel's
    /// defaults: 1000, 300, 2000).
    pub netdev_max_backlog: u64,
    pub netdev_budget: u64,
    pub netdev_budget_usecs: u64,
    pub irqbalance: bool,
    /// Leave out topology/thread_siblings_list, as some captured trees do: cores are then
    /// known only by (physical_package_id, core_id), and core_id repeats in every package.
    pub no_siblings_lists: bool,
}

impl Default for MachineSpec {
    fn default() -> Self {
        MachineSpec {
            hostname: "fixture".into(),
            boot_id: "00000000-0000-4000-8000-000000000001".into(),
            kernel: "6.18.0".into(),
            sockets: 1,
            cores_per_socket: 2,
            threads_per_core: 1,
            isolated: vec![],
            nohz_full: vec![],
            offline: vec![],
            nics: vec![],
            disks: vec![],
            rps_sock_flow_entries: 0,
            netdev_max_backlog: 1000,
            netdev_budget: 300,
            netdev_budget_usecs: 2000,
            irqbalance: false,
            no_siblings_lists: false,
        }
    }
}

struct IrqLine {
    irq: u32,
    chip: String,
    name: String,
    counts: u64,
    affinity: Vec<u32>,
    node: i32,
    managed: bool,
}

fn put(root: &Path, rel: &str, text: &str) -> io::Result<()> {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(p, format!("{text}\n"))
}

impl MachineSpec {
    pub fn nr_cpus(&self) -> u32 {
        self.sockets * self.cores_per_socket * self.threads_per_core
    }

    /// Linux's x86 enumeration: first thread of every core of every socket, then the second
    /// threads. Returns (socket, core, thread) of `cpu`.
    pub fn place(&self, cpu: u32) -> (u32, u32, u32) {
        let per_thread = self.sockets * self.cores_per_socket;
        let thread = cpu / per_thread;
        let rest = cpu % per_thread;
        (
            rest / self.cores_per_socket,
            rest % self.cores_per_socket,
            thread,
        )
    }

    pub fn socket_cpus(&self, socket: u32) -> Vec<u32> {
        (0..self.nr_cpus())
            .filter(|&c| self.place(c).0 == socket)
            .collect()
    }

    fn irq_lines(&self) -> Vec<IrqLine> {
        let all: Vec<u32> = (0..self.nr_cpus()).collect();
        let mut lines = vec![IrqLine {
            irq: 0,
            chip: "IO-APIC   2-edge".into(),
            name: "timer".into(),
            counts: 44,
            affinity: all.clone(),
            node: -1,
            managed: false,
        }];
        for nic in &self.nics {
            let pci_chip = format!("PCI-MSIX-{}", nic.pci);
            let mut irq = nic.first_irq;
            let mut push = |name: String, counts: u64| {
                lines.push(IrqLine {
                    irq,
                    chip: pci_chip.clone(),
                    name,
                    counts,
                    affinity: nic.affinity.clone(),
                    node: nic.node,
                    managed: false,
                });
                irq += 1;
            };
            let count = |q: u32| nic.counts.get(q as usize).copied().unwrap_or(0);
            match &nic.naming {
                IrqNaming::TxRx => {
                    push(nic.name.clone(), 3334);
                    for q in 0..nic.queues {
                        push(format!("{}-TxRx-{q}", nic.name), count(q));
                    }
                }
                IrqNaming::Virtio { dev } => {
                    push(format!("{dev}-config"), 0);
                    for q in 0..nic.queues {
                        push(format!("{dev}-input.{q}"), count(q));
                        push(format!("{dev}-output.{q}"), count(q) / 4);
                    }
                }
                IrqNaming::Mlx5 => {
                    push(format!("mlx5_async0@pci:{}", nic.pci), 120);
                    for q in 0..nic.queues {
                        push(format!("mlx5_comp{q}@pci:{}", nic.pci), count(q));
                    }
                }
                IrqNaming::None => {}
            }
        }
        for disk in &self.disks {
            for q in 0..disk.vectors {
                let managed = disk.managed_from.is_some_and(|m| q >= m);
                let q_cpus = if managed {
                    vec![(q - disk.managed_from.unwrap_or(0)) % self.nr_cpus()]
                } else {
                    all.clone()
                };
                lines.push(IrqLine {
                    irq: disk.first_irq + q,
                    chip: "PCI-MSIX-0000:5e:00.0".into(),
                    name: disk.pattern.replace("{q}", &q.to_string()),
                    counts: disk.counts.get(q as usize).copied().unwrap_or(0),
                    affinity: q_cpus,
                    node: 0,
                    managed,
                });
            }
        }
        lines
    }

    /// Writes the tree under `root`.
    pub fn write(&self, root: &Path) -> io::Result<()> {
        let online: Vec<u32> = (0..self.nr_cpus())
            .filter(|c| !self.offline.contains(c))
            .collect();
        self.write_cpus(root, &online)?;
        let lines = self.write_irqs(root, &online)?;
        self.write_softirqs(root, &online)?;
        self.write_host(root)?;
        self.write_nics(root, &lines)
    }

    /// sys/devices/system/cpu and node: the CPU lists, each CPU's topology and cache.
    fn write_cpus(&self, root: &Path, online: &[u32]) -> io::Result<()> {
        let n = self.nr_cpus();
        let cpu = "sys/devices/system/cpu";
        put(root, &format!("{cpu}/possible"), &format!("0-{}", n - 1))?;
        put(root, &format!("{cpu}/present"), &format!("0-{}", n - 1))?;
        put(root, &format!("{cpu}/online"), &cpulist::format(online))?;
        put(
            root,
            &format!("{cpu}/offline"),
            &cpulist::format(&self.offline),
        )?;
        put(
            root,
            &format!("{cpu}/isolated"),
            &cpulist::format(&self.isolated),
        )?;
        if !self.nohz_full.is_empty() {
            put(
                root,
                &format!("{cpu}/nohz_full"),
                &cpulist::format(&self.nohz_full),
            )?;
        }
        for c in online {
            let (s, core, _) = self.place(*c);
            let siblings: Vec<u32> = (0..n)
                .filter(|&o| {
                    let (os, oc, _) = self.place(o);
                    os == s && oc == core
                })
                .collect();
            let d = format!("{cpu}/cpu{c}");
            put(
                root,
                &format!("{d}/topology/physical_package_id"),
                &s.to_string(),
            )?;
            put(root, &format!("{d}/topology/core_id"), &core.to_string())?;
            if !self.no_siblings_lists {
                put(
                    root,
                    &format!("{d}/topology/thread_siblings_list"),
                    &cpulist::format(&siblings),
                )?;
            }
            put(root, &format!("{d}/cache/index3/level"), "3")?;
            put(
                root,
                &format!("{d}/cache/index3/shared_cpu_list"),
                &cpulist::format(&self.socket_cpus(s)),
            )?;
        }
        for s in 0..self.sockets {
            put(
                root,
                &format!("sys/devices/system/node/node{s}/cpulist"),
                &cpulist::format(&self.socket_cpus(s)),
            )?;
        }
        Ok(())
    }

    /// /proc/interrupts and /proc/irq/N (and the debugfs state of managed IRQs).
    fn write_irqs(&self, root: &Path, online: &[u32]) -> io::Result<Vec<IrqLine>> {
        let n = self.nr_cpus();
        let mut lines = self.irq_lines();
        lines.sort_by_key(|l| l.irq);
        let mut text = String::from("     ");
        for c in online {
            text.push_str(&format!(" {:>10}", format!("CPU{c}")));
        }
        text.push('\n');
        for l in &lines {
            text.push_str(&format!("{:>4}:", l.irq));
            let target = l.affinity.first().copied().unwrap_or(0);
            for c in online {
                let v = if *c == target { l.counts } else { 0 };
                text.push_str(&format!(" {v:>10}"));
            }
            text.push_str(&format!("  {}  {}\n", l.chip, l.name));
            let d = format!("proc/irq/{}", l.irq);
            put(
                root,
                &format!("{d}/smp_affinity"),
                &cpulist::format_mask(&l.affinity, n),
            )?;
            put(
                root,
                &format!("{d}/smp_affinity_list"),
                &cpulist::format(&l.affinity),
            )?;
            put(
                root,
                &format!("{d}/effective_affinity_list"),
                &target.to_string(),
            )?;
            put(root, &format!("{d}/node"), &l.node.to_string())?;
            if l.managed {
                put(
                    root,
                    &format!("sys/kernel/debug/irq/irqs/{}", l.irq),
                    "handler:  handle_edge_irq\ndstate:   0x3400 IRQD_AFFINITY_MANAGED",
                )?;
            } else if self.disks.iter().any(|d| d.managed_from.is_some()) {
                put(
                    root,
                    &format!("sys/kernel/debug/irq/irqs/{}", l.irq),
                    "handler:  handle_edge_irq\ndstate:   0x3000",
                )?;
            }
        }
        text.push_str(&format!("{:>4}:", "NMI"));
        for _ in online {
            text.push_str(&format!(" {:>10}", 0));
        }
        text.push_str("   Non-maskable interrupts\n");
        put(root, "proc/interrupts", text.trim_end())?;
        Ok(lines)
    }

    /// /proc/softirqs, all zero.
    fn write_softirqs(&self, root: &Path, online: &[u32]) -> io::Result<()> {
        let mut softirqs = String::from("                ");
        for c in online {
            softirqs.push_str(&format!(" {:>10}", format!("CPU{c}")));
        }
        softirqs.push('\n');
        for v in irq_ebpf::SOFTIRQ_NAMES {
            softirqs.push_str(&format!("{v:>12}:"));
            for _ in online {
                softirqs.push_str(&format!(" {:>10}", 0));
            }
            softirqs.push('\n');
        }
        put(root, "proc/softirqs", softirqs.trim_end())?;
        Ok(())
    }

    /// Host identity, the RFS table size and an irqbalance process.
    fn write_host(&self, root: &Path) -> io::Result<()> {
        put(root, "proc/sys/kernel/hostname", &self.hostname)?;
        put(root, "proc/sys/kernel/random/boot_id", &self.boot_id)?;
        put(root, "proc/sys/kernel/osrelease", &self.kernel)?;
        put(
            root,
            "proc/sys/net/core/rps_sock_flow_entries",
            &self.rps_sock_flow_entries.to_string(),
        )?;
        for (name, v) in [
            ("netdev_max_backlog", self.netdev_max_backlog),
            ("netdev_budget", self.netdev_budget),
            ("netdev_budget_usecs", self.netdev_budget_usecs),
        ] {
            put(root, &format!("proc/sys/net/core/{name}"), &v.to_string())?;
        }
        if self.irqbalance {
            put(root, "proc/4242/comm", "irqbalance")?;
            put(
                root,
                "proc/4242/cmdline",
                "/usr/sbin/irqbalance\0--foreground",
            )?;
        }
        Ok(())
    }

    /// sys/class/net: each NIC's device, driver, MSI-X vectors and queues.
    fn write_nics(&self, root: &Path, lines: &[IrqLine]) -> io::Result<()> {
        let n = self.nr_cpus();
        for nic in &self.nics {
            let net = format!("sys/class/net/{}", nic.name);
            fs::create_dir_all(root.join(&net))?;
            if !matches!(nic.naming, IrqNaming::None) {
                let pci_dir = format!("sys/devices/pci0000:00/{}", nic.pci);
                let dev_dir = match &nic.naming {
                    IrqNaming::Virtio { dev } => format!("{pci_dir}/{dev}"),
                    _ => pci_dir.clone(),
                };
                fs::create_dir_all(root.join(&dev_dir))?;
                put(root, &format!("{pci_dir}/numa_node"), &nic.node.to_string())?;
                let chip = format!("PCI-MSIX-{}", nic.pci);
                for l in lines.iter().filter(|l| l.chip == chip) {
                    put(root, &format!("{pci_dir}/msi_irqs/{}", l.irq), "msix")?;
                }
                symlink(
                    format!("../../../bus/pci/drivers/{}", nic.driver),
                    root.join(&dev_dir).join("driver"),
                )?;
                symlink(
                    format!("../../../../{dev_dir}"),
                    root.join(&net).join("device"),
                )?;
            }
            let tx_visible = nic.queues > 1;
            for q in 0..nic.queues {
                let rx = format!("{net}/queues/rx-{q}");
                put(
                    root,
                    &format!("{rx}/rps_cpus"),
                    &cpulist::format_mask(&[], n),
                )?;
                put(root, &format!("{rx}/rps_flow_cnt"), "0")?;
                let tx = format!("{net}/queues/tx-{q}");
                fs::create_dir_all(root.join(&tx))?;
                if tx_visible {
                    put(
                        root,
                        &format!("{tx}/xps_cpus"),
                        &cpulist::format_mask(&[], n),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Per-queue interrupt counts of the 4-queue ixgbe NIC in the source notes
/// (eth3-TxRx-0..3, all on CPU 0 of a 4-CPU server).
pub const SEED_ETH3_COUNTS: [u64; 4] = [746827548, 2674693551, 2341522223, 3587929355];

fn seed_counts(n: u32) -> Vec<u64> {
    (0..n)
        .map(|q| SEED_ETH3_COUNTS[(q % 4) as usize] / (1 + u64::from(q / 4)))
        .collect()
}

impl MachineSpec {
    /// The 4-CPU server of the source notes: eth3 (ixgbe, 4 TxRx vectors), all on CPU 0.
    pub fn seed_4cpu() -> MachineSpec {
        MachineSpec {
            hostname: "103-17-164-sh-100-k07".into(),
            cores_per_socket: 4,
            nics: vec![NicSpec {
                name: "eth3".into(),
                driver: "ixgbe".into(),
                pci: "0000:01:00.0".into(),
                node: 0,
                queues: 4,
                naming: IrqNaming::TxRx,
                first_irq: 54,
                counts: SEED_ETH3_COUNTS.to_vec(),
                affinity: vec![0],
            }],
            ..MachineSpec::default()
        }
    }

    /// A 2-socket server with SMT (2 x 12 cores x 2 threads = 48 CPUs, so masks take two
    /// 32-bit groups), CPUs 20-23 and their siblings 44-47 isolated, an 8-queue ixgbe NIC
    /// on node 1 with every vector on CPU 0 (the state the source notes start from), and
    /// an NVMe drive whose I/O vectors are kernel-managed.
    pub fn two_socket_server() -> MachineSpec {
        MachineSpec {
            hostname: "db-7".into(),
            sockets: 2,
            cores_per_socket: 12,
            threads_per_core: 2,
            isolated: vec![20, 21, 22, 23, 44, 45, 46, 47],
            nics: vec![NicSpec {
                name: "eth2".into(),
                driver: "ixgbe".into(),
                pci: "0000:af:00.0".into(),
                node: 1,
                queues: 8,
                naming: IrqNaming::TxRx,
                first_irq: 120,
                counts: seed_counts(8),
                affinity: vec![0],
            }],
            disks: vec![DiskSpec {
                pattern: "nvme0q{q}".into(),
                vectors: 9,
                first_irq: 90,
                counts: vec![
                    51, 9_000_000, 8_500_000, 7_000_000, 6_000_000, 5_000_000, 4_000_000,
                    3_000_000, 2_000_000,
                ],
                managed_from: Some(1),
            }],
            rps_sock_flow_entries: 0,
            ..MachineSpec::default()
        }
    }

    /// A 64-CPU server (2 x 16 cores x 2 threads) with a 16-queue mlx5 NIC on node 0, its
    /// vectors spread by the driver over CPUs 0-15 but all counts on few CPUs.
    pub fn server_64cpu() -> MachineSpec {
        MachineSpec {
            hostname: "edge-lb-3".into(),
            sockets: 2,
            cores_per_socket: 16,
            threads_per_core: 2,
            nics: vec![NicSpec {
                name: "ens1f0np0".into(),
                driver: "mlx5_core".into(),
                pci: "0000:3b:00.0".into(),
                node: 0,
                queues: 16,
                naming: IrqNaming::Mlx5,
                first_irq: 200,
                counts: seed_counts(16),
                affinity: vec![0, 1],
            }],
            ..MachineSpec::default()
        }
    }

    /// A 256-CPU server (2 x 64 cores x 2 threads) with a 64-queue mlx5 NIC on node 0 and
    /// an NVMe drive with one kernel-managed vector per CPU of the first 64: the size of the
    /// largest hosts irqtune's users run, for the exposition's series count.
    pub fn server_256cpu() -> MachineSpec {
        MachineSpec {
            hostname: "edge-big-1".into(),
            sockets: 2,
            cores_per_socket: 64,
            threads_per_core: 2,
            nics: vec![NicSpec {
                name: "ens2f0np0".into(),
                driver: "mlx5_core".into(),
                pci: "0000:3b:00.0".into(),
                node: 0,
                queues: 64,
                naming: IrqNaming::Mlx5,
                first_irq: 300,
                counts: seed_counts(64),
                affinity: (0..64).collect(),
            }],
            disks: vec![DiskSpec {
                pattern: "nvme0q{q}".into(),
                vectors: 65,
                first_irq: 200,
                counts: std::iter::once(51)
                    .chain((0..64).map(|q| 1_000_000 + q * 1000))
                    .collect(),
                managed_from: Some(1),
            }],
            ..MachineSpec::default()
        }
    }

    /// A 2-CPU VM with a single-queue virtio NIC, like the machines irqtune is tested on.
    pub fn vm() -> MachineSpec {
        MachineSpec {
            hostname: "vm".into(),
            cores_per_socket: 2,
            nics: vec![NicSpec {
                name: "eth0".into(),
                driver: "virtio_net".into(),
                pci: "0000:00:03.0".into(),
                node: -1,
                queues: 1,
                naming: IrqNaming::Virtio {
                    dev: "virtio2".into(),
                },
                first_irq: 37,
                counts: vec![3544],
                affinity: vec![0, 1],
            }],
            disks: vec![DiskSpec {
                pattern: "virtio1-req.{q}".into(),
                vectors: 1,
                first_irq: 36,
                counts: vec![40275],
                managed_from: Some(0),
            }],
            ..MachineSpec::default()
        }
    }
}

/// A histogram with `count` values spread as `shape` (value ns, weight) says.
fn synthetic_hist(count: u64, shape: &[(u64, u64)]) -> irq_user::model::hist::Hist {
    let mut b = [0u64; irq_ebpf::hist::BUCKETS];
    let weights: u64 = shape.iter().map(|s| s.1).sum::<u64>().max(1);
    let mut left = count;
    let mut sum = 0u64;
    let mut max = 0u64;
    for (i, (v, w)) in shape.iter().enumerate() {
        let n = if i + 1 == shape.len() {
            left
        } else {
            count * w / weights
        };
        let n = n.min(left);
        left -= n;
        if n > 0 {
            b[irq_ebpf::hist::bucket(*v)] += n;
            sum += v * n;
            max = max.max(*v);
        }
    }
    irq_user::model::hist::Hist::from_buckets(&b, max, sum)
}

impl MachineSpec {
    /// The profile such a machine records over `secs` seconds, with the tree already written
    /// at `root`: queue IRQs where their affinity puts them today, NET_RX on those CPUs (the
    /// busiest partly in ksoftirqd), timers everywhere, disk I/O, and three flows: a TCP one
    /// read on another CPU than its softirq, one read in place, and unconnected UDP read
    /// elsewhere. Deterministic, for golden tests of the report formats.
    pub fn synthetic_profile(&self, root: &Path, secs: u64) -> Profile {
        let m = Machine::read(&SysRoot::new(root)).expect("fixture tree reads");
        let cpus = m.interrupt_cpus.clone();
        let irqs = SyntheticIrqs::of(&m, secs);
        let busiest = irqs.net_rx.iter().max_by_key(|(_, n)| **n).map(|(c, _)| *c);
        let softirqs = synthetic_softirqs(&cpus, secs, &irqs, busiest);
        let netdevs = synthetic_netdevs(&m, &irqs.net_rx, busiest);
        let soft_cpu = busiest.unwrap_or(0);
        let flows = synthetic_flows(&cpus, soft_cpu, secs);
        let proc = synthetic_proc(&cpus, &irqs, &softirqs, busiest);
        let mut p = Profile {
            format: PROFILE_FORMAT.into(),
            version: PROFILE_VERSION,
            host: m.host.clone(),
            session: SessionInfo {
                start_unix_ms: 1_795_000_000_000,
                duration_ns: secs * 1_000_000_000,
                interrupted: false,
                source: Source::Probes,
                cpus: cpus.clone(),
                probes: synthetic_probes(),
                flow_sample: 1,
                irqtune_version: "fixture".into(),
                sampling: None,
                bpf_map_bytes: None,
                mark_skew_ns: None,
                hardirq_probe_runs: None,
            },
            hardirqs: irqs.rows,
            irqs: irqs.irqs,
            softirqs,
            netdevs,
            flow_totals: FlowTotals::of(&flows),
            flows,
            losses: irq_ebpf::Loss::ALL
                .iter()
                .map(|l| (l.name().to_string(), 0))
                .collect(),
            proc,
            context: Some(m),
            findings: Vec::new(),
        };
        p.findings = irq_user::analysis::findings::find(&p);
        p
    }
}

use std::collections::BTreeMap;

use irq_user::{
    model::hist::Hist,
    model::machine::{IrqUse, Machine},
    model::procfs::SoftnetRow,
    model::profile::{
        Attach, DeliveryToRead, FlowRow, FlowTotals, HardirqRow, IrqRow, NetdevRow, ProbeRow,
        ProcCounts, ProcIrqRow, Profile, SessionInfo, SoftirqRow, Source, Vector, PROFILE_FORMAT,
        PROFILE_VERSION,
    },
    model::snapshot::Protocol,
    system::sysroot::SysRoot,
};

/// The synthetic IRQ load: NIC queues and busy disks, each on its effective CPU.
struct SyntheticIrqs {
    rows: Vec<HardirqRow>,
    irqs: Vec<IrqRow>,
    /// Interrupts per CPU that bring NET_RX and BLOCK softirqs.
    net_rx: BTreeMap<u32, u64>,
    block: BTreeMap<u32, u64>,
}

impl SyntheticIrqs {
    fn of(m: &Machine, secs: u64) -> SyntheticIrqs {
        let mut s = SyntheticIrqs {
            rows: Vec::new(),
            irqs: Vec::new(),
            net_rx: BTreeMap::new(),
            block: BTreeMap::new(),
        };
        for irq in &m.irqs {
            let cpu = irq
                .effective
                .as_ref()
                .and_then(|e| e.first().copied())
                .unwrap_or(0);
            let count = match &irq.usage {
                IrqUse::NetQueue { queue, .. } => 4000 * secs * u64::from(queue % 4 + 1),
                IrqUse::Block if irq.total() > 100 => 900 * secs,
                _ => continue,
            };
            let shape: &[(u64, u64)] = match irq.usage {
                IrqUse::Block => &[(3000, 70), (6000, 25), (40_000, 5)],
                _ => &[(1500, 60), (2500, 35), (9000, 5)],
            };
            let handler = synthetic_hist(count, shape);
            match irq.usage {
                IrqUse::Block => *s.block.entry(cpu).or_default() += count,
                _ => *s.net_rx.entry(cpu).or_default() += count,
            }
            s.rows.push(HardirqRow {
                irq: Some(irq.irq),
                name: irq.name.clone(),
                cpu,
                count,
                time_ns: handler.sum_ns,
                max_ns: handler.summary.max_ns,
                handler: None,
            });
            s.irqs.push(IrqRow {
                irq: Some(irq.irq),
                name: irq.name.clone(),
                count,
                time_ns: handler.sum_ns,
                handler,
            });
        }
        s
    }
}

fn synthetic_softirqs(
    cpus: &[u32],
    secs: u64,
    irqs: &SyntheticIrqs,
    busiest: Option<u32>,
) -> Vec<SoftirqRow> {
    let mut softirqs = Vec::new();
    for &cpu in cpus {
        let mut push =
            |vector: Vector, count: u64, ksoft: u64, h: &[(u64, u64)], d: &[(u64, u64)]| {
                if count == 0 {
                    return;
                }
                let handler = synthetic_hist(count, h);
                softirqs.push(SoftirqRow {
                    vector,
                    cpu,
                    count,
                    time_ns: handler.sum_ns,
                    raises: count + count / 10,
                    ksoftirqd_runs: ksoft,
                    handler,
                    raise_delay: synthetic_hist(count, d),
                });
            };
        push(
            Vector::Timer,
            250 * secs,
            0,
            &[(4000, 80), (12_000, 20)],
            &[(2000, 90), (9000, 10)],
        );
        let b = irqs.block.get(&cpu).copied().unwrap_or(0);
        push(
            Vector::Block,
            b,
            0,
            &[(5000, 90), (30_000, 10)],
            &[(1200, 100)],
        );
        let n = irqs.net_rx.get(&cpu).copied().unwrap_or(0);
        let ksoft = if Some(cpu) == busiest { n / 4 } else { 0 };
        push(
            Vector::NetRx,
            n,
            ksoft,
            &[(18_000, 70), (60_000, 25), (900_000, 5)],
            &[(3000, 60), (20_000, 30), (2_000_000, 10)],
        );
        push(Vector::Rcu, 40 * secs, 0, &[(1500, 100)], &[(12_000, 100)]);
    }
    softirqs
}

fn synthetic_netdevs(
    m: &Machine,
    net_rx: &BTreeMap<u32, u64>,
    busiest: Option<u32>,
) -> Vec<NetdevRow> {
    let mut netdevs = Vec::new();
    for nic in m.nics.iter().filter(|n| !n.irqs.is_empty()) {
        for (&cpu, &n) in net_rx {
            netdevs.push(NetdevRow {
                device: nic.name.clone(),
                ifindex: 2,
                cpu,
                polls: n,
                work: n * 8,
                budget_exhausted: if Some(cpu) == busiest { n / 50 } else { 0 },
                packets: n * 8,
                bytes: n * 8 * 1400,
            });
        }
    }
    netdevs
}

/// A flow whose softirq runs on `soft_cpu`, read `reads` times on `read_cpu`.
#[allow(clippy::too_many_arguments)]
fn synthetic_flow(
    protocol: Protocol,
    local: &str,
    remote: &str,
    pid: u32,
    comm: &str,
    connected: bool,
    (soft_cpu, read_cpu): (u32, u32),
    reads: u64,
) -> FlowRow {
    let mismatched = if read_cpu == soft_cpu { 0 } else { reads };
    // A cross-CPU read waits for a wake-up IPI; a same-CPU one for the softirq to finish
    // its batch.
    let wakeups = if mismatched > 0 {
        &[(28_000, 70), (95_000, 30)][..]
    } else {
        &[(9_000, 90), (24_000, 10)][..]
    };
    let hist = synthetic_hist(reads * 9 / 10, wakeups);
    let (same_cpu, cross_cpu) = if mismatched > 0 {
        (Hist::default(), hist)
    } else {
        (hist, Hist::default())
    };
    FlowRow {
        protocol,
        local: local.into(),
        remote: remote.into(),
        pid,
        comm: comm.into(),
        connected,
        deliveries_by_cpu: [(soft_cpu, reads * 2)].into(),
        backlog_deliveries: 0,
        reads_by_cpu: [(read_cpu, reads)].into(),
        mismatched_reads: mismatched,
        mismatch_ratio: mismatched as f64 / reads as f64,
        read_bytes: reads * 1400,
        delivery_to_read: DeliveryToRead {
            same_cpu,
            cross_cpu,
            queued_reads: reads / 10,
            queued_wait_ns: reads / 10 * 6_000,
        },
        napi_id: None,
    }
}

/// A TCP flow read on another CPU than its softirq, unconnected UDP read elsewhere, and a
/// TCP flow read in place.
fn synthetic_flows(cpus: &[u32], soft_cpu: u32, secs: u64) -> Vec<FlowRow> {
    let other = cpus
        .iter()
        .copied()
        .find(|&c| c != soft_cpu)
        .unwrap_or(soft_cpu);
    let napi = |mut f: FlowRow, id: u32| {
        f.napi_id = Some(id);
        f
    };
    vec![
        napi(
            synthetic_flow(
                Protocol::Tcp,
                "10.0.0.10:443",
                "10.0.3.7:51234",
                4242,
                "nginx",
                true,
                (soft_cpu, other),
                9000 * secs,
            ),
            8193,
        ),
        napi(
            synthetic_flow(
                Protocol::Udp,
                "0.0.0.0:53",
                "0.0.0.0:0",
                812,
                "named",
                false,
                (soft_cpu, other),
                3000 * secs,
            ),
            8194,
        ),
        synthetic_flow(
            Protocol::Tcp,
            "10.0.0.10:22",
            "10.0.3.9:40022",
            977,
            "sshd",
            true,
            (soft_cpu, soft_cpu),
            40 * secs,
        ),
    ]
}

/// What /proc would have said over the same window.
fn synthetic_proc(
    cpus: &[u32],
    irqs: &SyntheticIrqs,
    softirqs: &[SoftirqRow],
    busiest: Option<u32>,
) -> ProcCounts {
    let interrupts = irqs
        .rows
        .iter()
        .map(|r| ProcIrqRow {
            id: r.irq.unwrap_or(0).to_string(),
            name: r.name.clone(),
            counts: cpus
                .iter()
                .map(|&c| if c == r.cpu { r.count } else { 0 })
                .collect(),
        })
        .collect();
    let mut proc_softirqs = BTreeMap::new();
    for v in Vector::ALL {
        let counts = cpus
            .iter()
            .map(|&c| {
                softirqs
                    .iter()
                    .filter(|r| r.vector == v && r.cpu == c)
                    .map(|r| r.count)
                    .sum()
            })
            .collect();
        proc_softirqs.insert(v.name().to_string(), counts);
    }
    let softnet = cpus
        .iter()
        .map(|&cpu| SoftnetRow {
            cpu,
            processed: irqs.net_rx.get(&cpu).copied().unwrap_or(0) * 8,
            dropped: 0,
            time_squeeze: if Some(cpu) == busiest { 37 } else { 0 },
            received_rps: 0,
            flow_limit_count: 0,
        })
        .collect();
    ProcCounts {
        cpus: cpus.to_vec(),
        interrupts,
        softirqs: proc_softirqs,
        softnet,
        nics: Vec::new(),
    }
}

fn synthetic_probes() -> Vec<ProbeRow> {
    [
        "irq:irq_handler_entry",
        "irq:irq_handler_exit",
        "irq:softirq_raise",
        "irq:softirq_entry",
        "irq:softirq_exit",
        "napi:napi_poll",
        "net:netif_receive_skb",
        "sock:sk_data_ready",
        "sock:sock_recv_length",
    ]
    .iter()
    .map(|t| ProbeRow {
        tracepoint: (*t).into(),
        attach: Attach::Btf,
        via: None,
        limits: None,
        reason: None,
    })
    .collect()
}
