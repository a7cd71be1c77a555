//! A typed copy of the probes' maps at one moment, per CPU, and the difference of two.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use irq_ebpf::{
    hist, FlowCpuCounts, FlowInfo, FlowKey, FlowLatency, IrqCpu, Latency, Loss, NetDevStats,
    SoftirqStats, NR_SOFTIRQS,
};

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time, ms since the Unix epoch (for profiles and metrics; intervals use
/// [`monotonic_ns`]).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Debug)]
pub struct IrqSeries {
    /// None for slot 0, which collects IRQs that had no slot.
    pub irq: Option<u32>,
    pub name: String,
    /// Runs and time, indexed by CPU number.
    pub per_cpu: Vec<IrqCpu>,
    /// Handler time histogram, all CPUs together.
    pub hist: [u64; hist::BUCKETS],
}

#[derive(Clone, Debug)]
pub struct NetDevSeries {
    /// The kernel's `struct net_device *`: unique even across network namespaces; 0 for
    /// the per-CPU backlog NAPI (RPS and netif_rx), which has no device.
    pub dev: u64,
    pub name: String,
    pub ifindex: u32,
    /// The CPUs that polled it.
    pub per_cpu: BTreeMap<u32, NetDevStats>,
}

/// The name the backlog NAPI is reported under.
pub const BACKLOG_DEVICE: &str = "(backlog)";

impl NetDevSeries {
    pub fn new(dev: u64, per_cpu: BTreeMap<u32, NetDevStats>) -> Self {
        let named = per_cpu.values().find(|s| s.name[0] != 0);
        let name = match named {
            _ if dev == 0 => BACKLOG_DEVICE.to_string(),
            Some(s) => c_str(&s.name),
            None => format!("dev@{dev:x}"),
        };
        let ifindex = named.map(|s| s.ifindex).unwrap_or(0);
        Self {
            dev,
            name,
            ifindex,
            per_cpu,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FlowSeries {
    /// The kernel's `struct sock *` and the ports.
    pub key: FlowKey,
    pub info: FlowInfo,
    /// Counts per CPU that saw the socket.
    pub per_cpu: BTreeMap<u32, FlowCpuCounts>,
    /// Delivery-to-read latency per reader CPU (only the busiest flows have one: the map is
    /// small, see `irq_ebpf::MAX_FLOW_LATENCIES`).
    pub latency: BTreeMap<u32, FlowLatency>,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Other,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Other => "other",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl FlowSeries {
    pub fn protocol(&self) -> Protocol {
        match self.info.protocol {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            _ => Protocol::Other,
        }
    }

    fn addr(&self, raw: &[u8; 16], port: u16) -> SocketAddr {
        let ip = if self.info.family == 10 {
            IpAddr::V6(Ipv6Addr::from(*raw))
        } else {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        };
        SocketAddr::new(ip, port)
    }

    pub fn local(&self) -> SocketAddr {
        self.addr(&self.info.local_addr, self.info.local_port)
    }

    pub fn remote(&self) -> SocketAddr {
        self.addr(&self.info.remote_addr, self.info.remote_port)
    }

    pub fn comm(&self) -> String {
        c_str(&self.info.comm)
    }

    pub fn deliveries(&self) -> u64 {
        self.per_cpu.values().map(|c| c.deliveries).sum()
    }

    /// Deliveries from the socket backlog, in the reader's context (see FlowCpuCounts).
    pub fn backlog_deliveries(&self) -> u64 {
        self.per_cpu.values().map(|c| c.backlog_deliveries).sum()
    }

    pub fn reads(&self) -> u64 {
        self.per_cpu.values().map(|c| c.reads).sum()
    }

    pub fn mismatched_reads(&self) -> u64 {
        self.per_cpu.values().map(|c| c.mismatched_reads).sum()
    }

    /// The NAPI the flow's data came from, if the probes saw one.
    pub fn napi_id(&self) -> Option<u32> {
        (self.info.napi_id != 0).then_some(self.info.napi_id)
    }

    /// Mismatched reads / reads (0 without reads).
    pub fn mismatch_ratio(&self) -> f64 {
        let reads = self.reads();
        if reads == 0 {
            0.0
        } else {
            self.mismatched_reads() as f64 / reads as f64
        }
    }

    pub fn deliveries_by_cpu(&self) -> BTreeMap<u32, u64> {
        self.per_cpu
            .iter()
            .filter(|(_, c)| c.deliveries > 0)
            .map(|(&cpu, c)| (cpu, c.deliveries))
            .collect()
    }

    pub fn reads_by_cpu(&self) -> BTreeMap<u32, u64> {
        self.per_cpu
            .iter()
            .filter(|(_, c)| c.reads > 0)
            .map(|(&cpu, c)| (cpu, c.reads))
            .collect()
    }
}

pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Everything the probes have counted since they were loaded.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC when it was read.
    pub taken_ns: u64,
    /// Time the probes have been attached since they were loaded (all of it, but for a
    /// duty cycle): what the counts cover.
    pub observed_ns: u64,
    pub irqs: Vec<IrqSeries>,
    /// `softirqs[vector][cpu]`.
    pub softirqs: Vec<Vec<SoftirqStats>>,
    pub netdevs: Vec<NetDevSeries>,
    pub flows: Vec<FlowSeries>,
    /// Flows evicted from the FLOWS LRU map since the probes loaded (entries created minus
    /// entries present, when read); in a delta, since the earlier snapshot.
    pub flow_evictions: u64,
    /// Summed over CPUs, indexed by [`Loss`].
    pub losses: [u64; Loss::COUNT as usize],
    /// Times the kernel ran the hardirq exit program, where it counts program runs (BPF
    /// statistics on: `kernel.bpf_stats_enabled` or a BPF_ENABLE_STATS holder; otherwise the
    /// kernel's count stays 0). None: the program is not attached or its count unreadable.
    pub hardirq_runs: Option<u64>,
}

/// Counters that can be subtracted. `max_ns` fields cannot: a delta keeps the later maximum,
/// which is the maximum since the probes were loaded.
pub trait Counters: Sized {
    fn minus(&self, earlier: &Self) -> Self;
}

fn hist_minus(a: &[u64; hist::BUCKETS], b: &[u64; hist::BUCKETS]) -> [u64; hist::BUCKETS] {
    std::array::from_fn(|i| a[i].saturating_sub(b[i]))
}

impl Counters for IrqCpu {
    fn minus(&self, e: &Self) -> Self {
        IrqCpu {
            count: self.count.saturating_sub(e.count),
            total_ns: self.total_ns.saturating_sub(e.total_ns),
            max_ns: self.max_ns,
        }
    }
}

impl Counters for Latency {
    fn minus(&self, e: &Self) -> Self {
        Latency {
            count: self.count.saturating_sub(e.count),
            total_ns: self.total_ns.saturating_sub(e.total_ns),
            max_ns: self.max_ns,
            hist: hist_minus(&self.hist, &e.hist),
        }
    }
}

impl Counters for FlowLatency {
    fn minus(&self, e: &Self) -> Self {
        FlowLatency {
            same_cpu: self.same_cpu.minus(&e.same_cpu),
            cross_cpu: self.cross_cpu.minus(&e.cross_cpu),
            queued_count: self.queued_count.saturating_sub(e.queued_count),
            queued_total_ns: self.queued_total_ns.saturating_sub(e.queued_total_ns),
        }
    }
}

impl Counters for SoftirqStats {
    fn minus(&self, e: &Self) -> Self {
        SoftirqStats {
            count: self.count.saturating_sub(e.count),
            total_ns: self.total_ns.saturating_sub(e.total_ns),
            max_ns: self.max_ns,
            ksoftirqd_runs: self.ksoftirqd_runs.saturating_sub(e.ksoftirqd_runs),
            raises: self.raises.saturating_sub(e.raises),
            delay_count: self.delay_count.saturating_sub(e.delay_count),
            delay_total_ns: self.delay_total_ns.saturating_sub(e.delay_total_ns),
            delay_max_ns: self.delay_max_ns,
            handler_hist: hist_minus(&self.handler_hist, &e.handler_hist),
            delay_hist: hist_minus(&self.delay_hist, &e.delay_hist),
        }
    }
}

impl Counters for NetDevStats {
    fn minus(&self, e: &Self) -> Self {
        NetDevStats {
            polls: self.polls.saturating_sub(e.polls),
            work: self.work.saturating_sub(e.work),
            budget_exhausted: self.budget_exhausted.saturating_sub(e.budget_exhausted),
            rx_packets: self.rx_packets.saturating_sub(e.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(e.rx_bytes),
            ..*self
        }
    }
}

impl Counters for FlowCpuCounts {
    fn minus(&self, e: &Self) -> Self {
        FlowCpuCounts {
            deliveries: self.deliveries.saturating_sub(e.deliveries),
            backlog_deliveries: self.backlog_deliveries.saturating_sub(e.backlog_deliveries),
            reads: self.reads.saturating_sub(e.reads),
            mismatched_reads: self.mismatched_reads.saturating_sub(e.mismatched_reads),
            read_bytes: self.read_bytes.saturating_sub(e.read_bytes),
        }
    }
}

/// Per-CPU entries of a series keyed by CPU: what appeared since counts whole.
fn keyed_minus<T: Counters + Copy>(
    later: &BTreeMap<u32, T>,
    earlier: Option<&BTreeMap<u32, T>>,
) -> BTreeMap<u32, T> {
    later
        .iter()
        .map(|(cpu, c)| {
            (
                *cpu,
                earlier
                    .and_then(|e| e.get(cpu))
                    .map_or(*c, |ec| c.minus(ec)),
            )
        })
        .collect()
}

fn per_cpu_minus<T: Counters + Clone>(later: &[T], earlier: Option<&[T]>) -> Vec<T> {
    later
        .iter()
        .enumerate()
        .map(|(cpu, v)| match earlier.and_then(|e| e.get(cpu)) {
            Some(e) => v.minus(e),
            None => v.clone(),
        })
        .collect()
}

impl Snapshot {
    /// What happened between `earlier` and `self`. Series that appeared since count whole;
    /// series that disappeared (evicted flows) are left out.
    pub fn delta(&self, earlier: &Snapshot) -> Snapshot {
        let irqs = self
            .irqs
            .iter()
            .map(|s| {
                let e = earlier.irqs.iter().find(|e| e.irq == s.irq);
                IrqSeries {
                    per_cpu: per_cpu_minus(&s.per_cpu, e.map(|e| e.per_cpu.as_slice())),
                    hist: match e {
                        Some(e) => hist_minus(&s.hist, &e.hist),
                        None => s.hist,
                    },
                    ..s.clone()
                }
            })
            .collect();
        let softirqs = (0..self.softirqs.len())
            .map(|v| {
                per_cpu_minus(
                    &self.softirqs[v],
                    earlier.softirqs.get(v).map(Vec::as_slice),
                )
            })
            .collect();
        let netdevs = self
            .netdevs
            .iter()
            .map(|s| {
                let e = earlier.netdevs.iter().find(|e| e.dev == s.dev);
                NetDevSeries {
                    per_cpu: keyed_minus(&s.per_cpu, e.map(|e| &e.per_cpu)),
                    ..s.clone()
                }
            })
            .collect();
        let flows = self
            .flows
            .iter()
            .map(|f| {
                let e = earlier.flows.iter().find(|e| e.key == f.key);
                FlowSeries {
                    per_cpu: keyed_minus(&f.per_cpu, e.map(|e| &e.per_cpu)),
                    latency: keyed_minus(&f.latency, e.map(|e| &e.latency)),
                    ..f.clone()
                }
            })
            .collect();
        Snapshot {
            taken_ns: self.taken_ns,
            observed_ns: self.observed_ns.saturating_sub(earlier.observed_ns),
            irqs,
            softirqs,
            netdevs,
            flows,
            flow_evictions: self.flow_evictions.saturating_sub(earlier.flow_evictions),
            losses: std::array::from_fn(|i| self.losses[i].saturating_sub(earlier.losses[i])),
            hardirq_runs: self
                .hardirq_runs
                .zip(earlier.hardirq_runs)
                .map(|(now, then)| now.saturating_sub(then)),
        }
    }

    pub fn loss(&self, loss: Loss) -> u64 {
        self.losses[loss as usize]
    }

    /// Flows evicted from the LRU map: created minus present, at the time of reading.
    pub fn evictions(created: u64, present: u64) -> u64 {
        created.saturating_sub(present)
    }

    /// Handler runs of `vector` on `cpu`.
    pub fn softirq_count(&self, vector: usize, cpu: usize) -> u64 {
        self.softirqs
            .get(vector)
            .and_then(|v| v.get(cpu))
            .map_or(0, |s| s.count)
    }

    pub fn irq(&self, irq: u32) -> Option<&IrqSeries> {
        self.irqs.iter().find(|s| s.irq == Some(irq))
    }

    pub fn nr_cpus(&self) -> usize {
        self.softirqs.first().map_or(0, Vec::len)
    }
}

const _: () = assert!(NR_SOFTIRQS == irq_ebpf::SOFTIRQ_NAMES.len());

#[cfg(test)]
mod tests {
    use super::*;

    fn irq_cpu(count: u64, total: u64) -> IrqCpu {
        IrqCpu {
            count,
            total_ns: total,
            max_ns: total,
        }
    }

    fn snapshot(irq_count: u64, flows: Vec<FlowSeries>, created: u64) -> Snapshot {
        let mut losses = [0; Loss::COUNT as usize];
        losses[Loss::FlowsCreated as usize] = created;
        let mut hist = [0; hist::BUCKETS];
        hist[40] = irq_count;
        Snapshot {
            taken_ns: irq_count,
            observed_ns: irq_count,
            irqs: vec![IrqSeries {
                irq: Some(36),
                name: "virtio1-req.0".into(),
                per_cpu: vec![irq_cpu(0, 0), irq_cpu(irq_count, irq_count * 1000)],
                hist,
            }],
            softirqs: vec![vec![]; NR_SOFTIRQS],
            netdevs: vec![],
            flow_evictions: Snapshot::evictions(created, flows.len() as u64),
            flows,
            losses,
            hardirq_runs: Some(irq_count),
        }
    }

    fn flow(sk: u64, reads_cpu1: u64, mismatched: u64) -> FlowSeries {
        let info = FlowInfo {
            local_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            local_port: 5201,
            remote_port: 40000,
            family: 2,
            protocol: 6,
            tgid: 42,
            last_delivery_cpu: 0,
            comm: *b"receiver\0\0\0\0\0\0\0\0",
            pending_ns: 0,
            pending_cpu: 0,
            pending_waiter: 0,
            napi_id: 0,
            _pad: 0,
        };
        let mut per_cpu = BTreeMap::new();
        per_cpu.insert(
            0,
            FlowCpuCounts {
                deliveries: reads_cpu1,
                backlog_deliveries: 0,
                reads: 0,
                mismatched_reads: 0,
                read_bytes: 0,
            },
        );
        per_cpu.insert(
            1,
            FlowCpuCounts {
                deliveries: 0,
                backlog_deliveries: 1,
                reads: reads_cpu1,
                mismatched_reads: mismatched,
                read_bytes: reads_cpu1 * 100,
            },
        );
        FlowSeries {
            key: FlowKey {
                sk,
                remote_port_be: 40000u16.to_be(),
                local_port: 5201,
                _pad: 0,
            },
            info,
            per_cpu,
            latency: BTreeMap::new(),
        }
    }

    #[test]
    fn delta_subtracts_counts_and_histograms_per_cpu() {
        let a = snapshot(100, vec![flow(1, 10, 9)], 1);
        let b = snapshot(250, vec![flow(1, 30, 28), flow(2, 5, 0)], 3);
        let d = b.delta(&a);
        let irq = d.irq(36).unwrap();
        assert_eq!(irq.per_cpu[1].count, 150);
        assert_eq!(irq.per_cpu[1].total_ns, 150_000);
        assert_eq!(irq.hist[40], 150);
        assert_eq!(d.observed_ns, 150);
        assert_eq!(irq.per_cpu[0].count, 0);
        let f1 = d.flows.iter().find(|f| f.key.sk == 1).unwrap();
        assert_eq!(
            (f1.reads(), f1.mismatched_reads(), f1.deliveries()),
            (20, 19, 20)
        );
        let f2 = d.flows.iter().find(|f| f.key.sk == 2).unwrap();
        assert_eq!(f2.reads(), 5, "a flow that appeared counts whole");
        assert_eq!(d.loss(Loss::FlowsCreated), 2);
    }

    #[test]
    fn flow_views() {
        let f = flow(1, 10, 9);
        assert_eq!(f.local().to_string(), "10.0.0.2:5201");
        assert_eq!(f.remote().to_string(), "10.0.0.1:40000");
        assert_eq!(f.comm(), "receiver");
        assert_eq!(f.protocol(), Protocol::Tcp);
        assert!((f.mismatch_ratio() - 0.9).abs() < 1e-9);
        assert_eq!(
            f.deliveries_by_cpu().into_iter().collect::<Vec<_>>(),
            vec![(0, 10)]
        );
        assert_eq!(
            f.reads_by_cpu().into_iter().collect::<Vec<_>>(),
            vec![(1, 10)]
        );
    }

    #[test]
    fn evictions_are_created_minus_present() {
        let s = snapshot(1, vec![flow(1, 1, 0)], 5);
        assert_eq!(s.flow_evictions, 4);
    }

    /// A window's evictions are those since its start, whether flows were created before it
    /// (all still present: none evicted) or the map was full and churned (each new flow
    /// evicted one): created in the window minus present at its end says 0 for both.
    #[test]
    fn a_windows_evictions_are_the_growth_of_the_count() {
        let flows = |n: u64| (0..n).map(|sk| flow(sk, 1, 0)).collect::<Vec<_>>();
        // 3 flows before the window, 2 more in it, none evicted.
        let (then, now) = (snapshot(1, flows(3), 3), snapshot(2, flows(5), 5));
        assert_eq!(now.delta(&then).flow_evictions, 0);
        // A full map of 4: 10 created by the start (6 evicted), 25 by the end (21 evicted).
        let (then, now) = (snapshot(1, flows(4), 10), snapshot(2, flows(4), 25));
        assert_eq!(now.delta(&then).flow_evictions, 15);
    }
}
