//! The kernel/user ABI of irqtune: map names, keys, value layouts, the histogram bucket math,
//! softirq vector names and the load-time globals. The probes (`src/main.rs`, built for
//! `bpfel-unknown-none`) and user space (`irq-user`, with the `user` feature) both compile this
//! file, so a layout can only change on both sides at once.
//!
//! Every value is `#[repr(C)]` without implicit padding (checked by the size asserts at the end),
//! because user space reads the maps' raw bytes.
#![cfg_attr(not(test), no_std)]

pub mod hist;

/// Number of softirq vectors (`NR_SOFTIRQS` in include/linux/interrupt.h).
pub const NR_SOFTIRQS: usize = 10;

/// Softirq vector names, indexed by vector number, as the kernel prints them in /proc/softirqs
/// (`softirq_to_name` in kernel/softirq.c).
pub const SOFTIRQ_NAMES: [&str; NR_SOFTIRQS] = [
    "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU",
];

/// `NET_RX_SOFTIRQ`.
pub const NET_RX_VEC: usize = 3;

/// Largest CPU count the load-time CPU filter covers (`CPU_FILTER`).
pub const MAX_CPUS: usize = 1024;

/// IRQ numbers below this map to a dense slot through [`maps::IRQ_SLOTS`].
pub const MAX_IRQ_NR: u32 = 16384;
/// Most dense IRQ slots the loader may size the IRQ maps to. It sizes them to the IRQs the
/// machine has when the probes load, with headroom for IRQs that appear later; slot 0
/// collects IRQs that had no slot then (counted in [`Loss::IrqUnmapped`]).
pub const MAX_IRQ_SLOTS: u32 = 8192;
/// (network device, CPU) pairs the NET_RX probes track at once (LRU: the least recent is
/// evicted, counted in [`Loss::NetdevMapFull`]).
pub const MAX_NETDEV_CPUS: u32 = 4096;
/// Sockets tracked at the same time by the flow probes (LRU: the least recent is evicted).
pub const MAX_FLOWS: u32 = 8192;
/// (socket, CPU) pairs tracked at the same time (LRU).
pub const MAX_FLOW_CPUS: u32 = 16384;
/// (socket, reader CPU) pairs with a delivery-to-read latency histogram (LRU: the busiest
/// flows stay). Each entry is two histograms, about 2.3 KiB, so this is kept small.
pub const MAX_FLOW_LATENCIES: u32 = 1024;

/// Map names: used by `#[map(name = ...)]` in the probes and by `take_map` in user space.
pub mod maps {
    /// `Array<u32>`, key: IRQ number, value: slot + 1 in [`IRQ_CPU`] and [`IRQ_HIST`] (0: no
    /// slot). Filled by user space before attaching.
    pub const IRQ_SLOTS: &str = "IRQ_SLOTS";
    /// `PerCpuArray<IrqCpu>`, key: IRQ slot: count and time per (IRQ, CPU). Sized at load.
    pub const IRQ_CPU: &str = "IRQ_CPU";
    /// `Array<IrqHist>`, key: IRQ slot: handler time histogram per IRQ, all CPUs together
    /// (atomic adds; an IRQ runs on one CPU at a time). Sized at load.
    pub const IRQ_HIST: &str = "IRQ_HIST";
    /// `PerCpuArray<SoftirqStats>`, key: softirq vector.
    pub const SOFTIRQ_STATS: &str = "SOFTIRQ_STATS";
    /// `PerCpuArray<CpuState>`, one entry: start timestamps of what runs on this CPU now.
    pub const CPU_STATE: &str = "CPU_STATE";
    /// `LruHashMap<NetDevKey, NetDevStats>`: per (device, CPU) where a device is polled.
    pub const NETDEV_STATS: &str = "NETDEV_STATS";
    /// `LruHashMap<FlowKey, FlowInfo>`.
    pub const FLOWS: &str = "FLOWS";
    /// `LruHashMap<FlowCpuKey, FlowCpuCounts>`.
    pub const FLOW_CPUS: &str = "FLOW_CPUS";
    /// `LruHashMap<FlowCpuKey, FlowLatency>`, key CPU: the reader's.
    pub const FLOW_LATENCY: &str = "FLOW_LATENCY";
    /// `PerCpuArray<u64>`, key: [`Loss`](super::Loss) as u32.
    pub const LOSSES: &str = "LOSSES";

    /// Every map user space takes by name.
    pub const ALL: [&str; 10] = [
        IRQ_SLOTS,
        IRQ_CPU,
        IRQ_HIST,
        SOFTIRQ_STATS,
        CPU_STATE,
        NETDEV_STATS,
        FLOWS,
        FLOW_CPUS,
        FLOW_LATENCY,
        LOSSES,
    ];
}

/// Load-time globals (`EbpfLoader::set_global`): options of the probes, read-only once loaded.
pub mod globals {
    /// u32: 1 when [`CPU_FILTER`] restricts which CPUs are recorded.
    pub const CPU_FILTER_ON: &str = "CPU_FILTER_ON";
    /// `[u64; MAX_CPUS / 64]`: bit N set = record CPU N.
    pub const CPU_FILTER: &str = "CPU_FILTER";
    /// u32: 1 to track flows (sockets) at all.
    pub const FLOWS_ON: &str = "FLOWS_ON";
    /// u32: track one socket in N (by a hash of its address), 1 = every socket.
    pub const FLOW_SAMPLE: &str = "FLOW_SAMPLE";
    /// `KernelOffsets`: offsets into kernel structs, read from the running kernel's BTF.
    pub const OFFSETS: &str = "OFFSETS";

    /// Every global the loader sets.
    pub const ALL: [&str; 5] = [CPU_FILTER_ON, CPU_FILTER, FLOWS_ON, FLOW_SAMPLE, OFFSETS];
}

/// Field offsets into kernel structures that the probes read with `bpf_probe_read_kernel`.
/// User space fills them from /sys/kernel/btf/vmlinux, so no layout is compiled in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct napi_struct`: `dev`.
    pub napi_dev: u32,
    /// `struct net_device`: `name` (char[16]) and `ifindex`.
    pub netdev_name: u32,
    pub netdev_ifindex: u32,
    /// `struct sk_buff`: `dev` and `len`.
    pub skb_dev: u32,
    pub skb_len: u32,
    /// `struct sock_common`: addresses and ports, family.
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_family: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// `struct sock`: `sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `struct sock`: `sk_wq` (the socket's wait queue, where a blocked reader sleeps).
    pub sk_wq: u32,
    /// `struct socket_wq`: `wait`; `struct wait_queue_head`: `head` (its list of waiters).
    pub socket_wq_wait: u32,
    pub wait_queue_head_head: u32,
    /// `struct socket`: `sk` (the reader's side fallbacks get the socket, not the sock).
    pub socket_sk: u32,
    /// `struct sock`: `sk_napi_id` (u32, the NAPI that last delivered to the socket); 0 on
    /// kernels built without CONFIG_NET_RX_BUSY_POLL, where the field is absent (not read).
    pub sk_napi_id: u32,
}

/// Offsets of classic tracepoint record fields (from events/*/format of 6.x kernels; a kernel
/// test compares them with the running kernel's format files). The classic tracepoints are the
/// fallback when BTF tracepoints cannot attach.
pub mod tp_format {
    pub const IRQ_HANDLER_IRQ: usize = 8;
    pub const SOFTIRQ_VEC: usize = 8;
    pub const NAPI_POLL_NAPI: usize = 8;
    pub const NAPI_POLL_WORK: usize = 20;
    pub const NAPI_POLL_BUDGET: usize = 24;
    pub const NETIF_RECEIVE_SKB_SKBADDR: usize = 8;
    pub const NETIF_RECEIVE_SKB_LEN: usize = 16;
    pub const SK_DATA_READY_SKADDR: usize = 8;
    pub const SK_DATA_READY_FAMILY: usize = 16;
    pub const SK_DATA_READY_PROTOCOL: usize = 18;
    pub const SOCK_RECV_LENGTH_SK: usize = 8;
    pub const SOCK_RECV_LENGTH_FAMILY: usize = 16;
    pub const SOCK_RECV_LENGTH_PROTOCOL: usize = 18;
    pub const SOCK_RECV_LENGTH_RET: usize = 20;
}

/// Counters of what the probes could not record, so user space can say how complete a
/// measurement is. Index of [`maps::LOSSES`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// irq_handler_exit without a matching entry (probes attached mid-handler).
    IrqExitWithoutEntry = 0,
    /// softirq_exit without a matching entry.
    SoftirqExitWithoutEntry = 1,
    /// An IRQ number with no slot (appeared after load, or above `MAX_IRQ_NR`): counted in slot 0.
    IrqUnmapped = 2,
    /// A map lookup that cannot fail did (per-CPU array out of range).
    LookupFailed = 3,
    /// NETDEV_STATS was full: a device's packets were not counted.
    NetdevMapFull = 4,
    /// Flows created in FLOWS; minus the entries present, this gives the LRU evictions.
    FlowsCreated = 5,
    /// FLOWS or FLOW_CPUS refused an insert.
    FlowMapFull = 6,
    /// (socket, CPU) entries created in FLOW_CPUS (evictions = created - present).
    FlowCpusCreated = 7,
    /// FLOW_LATENCY refused an insert: a read's delivery-to-read latency was not recorded.
    FlowLatencyMapFull = 8,
}

/// What a [`Loss`] counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Something that happened and was not recorded.
    Lost,
    /// An exit whose entry the probes did not see: the handler began before they attached
    /// (at load, and at each slice of a duty cycle). Nothing was lost.
    Unmatched,
    /// Entries created in an LRU map (minus those present: its evictions).
    Created,
}

impl Loss {
    pub const COUNT: u32 = 9;
    pub const ALL: [Loss; Self::COUNT as usize] = [
        Loss::IrqExitWithoutEntry,
        Loss::SoftirqExitWithoutEntry,
        Loss::IrqUnmapped,
        Loss::LookupFailed,
        Loss::NetdevMapFull,
        Loss::FlowsCreated,
        Loss::FlowMapFull,
        Loss::FlowCpusCreated,
        Loss::FlowLatencyMapFull,
    ];

    pub const fn kind(self) -> LossKind {
        match self {
            Loss::IrqExitWithoutEntry | Loss::SoftirqExitWithoutEntry => LossKind::Unmatched,
            Loss::FlowsCreated | Loss::FlowCpusCreated => LossKind::Created,
            _ => LossKind::Lost,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Loss::IrqExitWithoutEntry => "irq_exit_without_entry",
            Loss::SoftirqExitWithoutEntry => "softirq_exit_without_entry",
            Loss::IrqUnmapped => "irq_unmapped",
            Loss::LookupFailed => "lookup_failed",
            Loss::NetdevMapFull => "netdev_map_full",
            Loss::FlowsCreated => "flows_created",
            Loss::FlowMapFull => "flow_map_full",
            Loss::FlowCpusCreated => "flow_cpus_created",
            Loss::FlowLatencyMapFull => "flow_latency_map_full",
        }
    }
}

/// A latency distribution: count, exact total, maximum and the log-linear histogram.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub hist: [u64; hist::BUCKETS],
}

/// Per (IRQ slot, CPU): hardirq handler runs and time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IrqCpu {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

/// Per IRQ slot, all CPUs: the handler time histogram.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IrqHist {
    pub hist: [u64; hist::BUCKETS],
}

/// Key of [`maps::NETDEV_STATS`]: the kernel's `struct net_device *` (0: the per-CPU backlog
/// NAPI that RPS and netif_rx() feed, which belongs to no device) and the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetDevKey {
    pub dev: u64,
    pub cpu: u32,
    pub _pad: u32,
}

/// Per (softirq vector, CPU): handler time, raise-to-entry delay, and who ran it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SoftirqStats {
    /// Handler runs (softirq_entry/exit pairs).
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Runs executed by this CPU's ksoftirqd thread; the rest ran inline, on irq exit or
    /// local_bh_enable (kernel/softirq.c: __do_softirq callers).
    pub ksoftirqd_runs: u64,
    /// softirq_raise events, including raises of an already pending vector.
    pub raises: u64,
    /// Raise-to-entry delays recorded: one per run that had a raise pending (the first raise).
    pub delay_count: u64,
    pub delay_total_ns: u64,
    pub delay_max_ns: u64,
    pub handler_hist: [u64; hist::BUCKETS],
    pub delay_hist: [u64; hist::BUCKETS],
}

/// Per CPU: when the current hardirq handler and softirq vectors started, and when each vector
/// was first raised while not yet running (0: nothing pending). Index [`maps::CPU_STATE`] 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuState {
    pub irq_entry_ns: u64,
    /// 1 while this CPU runs the NET_RX softirq: tells the flow probes whether a delivery is
    /// the softirq's or comes from a socket backlog processed in the reader's context.
    pub in_net_rx: u32,
    /// PID of this CPU's ksoftirqd thread (0: unknown), set by user space before the probes
    /// attach: the softirq entry compares it with the current PID at no extra lookup.
    pub ksoftirqd_pid: u32,
    /// 1 while the running softirq runs in ksoftirqd: set at entry, counted at exit (softirqs
    /// do not nest on a CPU), so the exit, the costlier probe, makes no helper call for it.
    pub in_ksoftirqd: u32,
    pub _pad: u32,
    pub softirq_entry_ns: [u64; NR_SOFTIRQS],
    pub softirq_raise_ns: [u64; NR_SOFTIRQS],
}

/// Per (network device, CPU): NAPI polls and received packets.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetDevStats {
    /// Device name, read when the entry was created.
    pub name: [u8; 16],
    pub ifindex: u32,
    pub _pad: u32,
    pub polls: u64,
    /// Packets processed by those polls (the `work` of napi_poll).
    pub work: u64,
    /// Polls that used their whole budget (the device had more to give: softnet pressure).
    pub budget_exhausted: u64,
    /// netif_receive_skb (attached only for per-packet detail): packets and bytes.
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

/// `FlowInfo::last_delivery_cpu` before any delivery.
pub const NO_CPU: u32 = u32::MAX;

/// Per socket: its addresses, who reads it and where its data was last delivered. The counts
/// live per (socket, CPU) in [`FlowCpuCounts`], each written only by its own CPU, so no
/// counter is shared between CPUs and none needs an atomic add.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlowInfo {
    /// Local and remote addresses as the kernel stores them (network order); IPv4 in the
    /// first 4 bytes.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Host order.
    pub local_port: u16,
    /// Host order (converted from `skc_dport`).
    pub remote_port: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub protocol: u16,
    /// Thread group (process) and thread name of the latest reader (0 and zeros: none yet).
    pub tgid: u32,
    /// CPU of the latest softirq delivery, or [`NO_CPU`].
    pub last_delivery_cpu: u32,
    pub comm: [u8; 16],
    /// When the first softirq delivery since the latest read happened (0: none pending):
    /// the next read measures its delivery-to-read latency from here.
    pub pending_ns: u64,
    /// CPU of that delivery.
    pub pending_cpu: u32,
    /// 1 if a reader was waiting on the socket at that delivery (the read that follows is a
    /// wake-up), 0 if the reader was busy elsewhere (the data queued until it came back).
    pub pending_waiter: u32,
    /// The socket's `sk_napi_id` at the latest delivery that started a wait: the NAPI its data
    /// came from (0: none, the backlog of a device without NAPI ids, or not read).
    pub napi_id: u32,
    pub _pad: u32,
}

/// A flow: the socket, and its ports as the kernel stores them side by side
/// (`skc_portpair`: `skc_dport` big-endian, then `skc_num`). The ports are part of the key
/// because a closed socket's memory is soon reused for a new socket: without them the new
/// socket would inherit the old one's entry and addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub sk: u64,
    pub remote_port_be: u16,
    pub local_port: u16,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowCpuKey {
    pub sk: u64,
    pub remote_port_be: u16,
    pub local_port: u16,
    pub cpu: u32,
}

impl FlowKey {
    /// The key of this flow's counts on `cpu`.
    pub const fn on_cpu(&self, cpu: u32) -> FlowCpuKey {
        FlowCpuKey {
            sk: self.sk,
            remote_port_be: self.remote_port_be,
            local_port: self.local_port,
            cpu,
        }
    }
}

impl FlowCpuKey {
    pub const fn flow(&self) -> FlowKey {
        FlowKey {
            sk: self.sk,
            remote_port_be: self.remote_port_be,
            local_port: self.local_port,
            _pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowCpuCounts {
    /// sk_data_ready on this CPU from the NET_RX softirq.
    pub deliveries: u64,
    /// sk_data_ready on this CPU outside NET_RX: packets queued to the socket backlog while
    /// the reader held the socket, processed when it released it (release_sock), on its CPU.
    pub backlog_deliveries: u64,
    /// Successful receive calls on this CPU (sock_recv_length with ret > 0).
    pub reads: u64,
    /// Reads on this CPU while the socket's latest softirq delivery was on another CPU.
    pub mismatched_reads: u64,
    pub read_bytes: u64,
}

/// Per (socket, reader CPU): the delivery-to-read latency, from the first softirq delivery
/// after the previous read to the read. Deliveries that found the reader waiting on the
/// socket are wake-ups, split by whether the delivery ran on the reader's CPU: the wait a
/// mismatch adds (a cross-CPU wake-up) or saves. Deliveries that found the reader busy
/// queued until it came back: that wait is the application's, counted apart.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlowLatency {
    pub same_cpu: Latency,
    pub cross_cpu: Latency,
    pub queued_count: u64,
    pub queued_total_ns: u64,
}

macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $n);
    };
}
assert_size!(KernelOffsets, 18 * 4);
assert_size!(Latency, 3 * 8 + hist::BUCKETS * 8);
assert_size!(IrqCpu, 3 * 8);
assert_size!(IrqHist, hist::BUCKETS * 8);
assert_size!(NetDevKey, 16);
assert_size!(SoftirqStats, 8 * 8 + 2 * hist::BUCKETS * 8);
assert_size!(CpuState, 24 + 2 * NR_SOFTIRQS * 8);
assert_size!(NetDevStats, 16 + 8 + 5 * 8);
assert_size!(FlowInfo, 32 + 8 + 8 + 16 + 16 + 8);
assert_size!(FlowKey, 16);
assert_size!(FlowCpuKey, 16);
assert_size!(FlowCpuCounts, 40);
assert_size!(FlowLatency, 2 * core::mem::size_of::<Latency>() + 16);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, contain only integers and have no padding
    // (the size asserts above would fail otherwise).
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for Latency {}
    unsafe impl aya::Pod for IrqCpu {}
    unsafe impl aya::Pod for IrqHist {}
    unsafe impl aya::Pod for NetDevKey {}
    unsafe impl aya::Pod for FlowLatency {}
    unsafe impl aya::Pod for SoftirqStats {}
    unsafe impl aya::Pod for CpuState {}
    unsafe impl aya::Pod for NetDevStats {}
    unsafe impl aya::Pod for FlowInfo {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowCpuKey {}
    unsafe impl aya::Pod for FlowCpuCounts {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn abi_sizes() {
        use super::*;
        assert_eq!(hist::BUCKETS, 140);
        assert_eq!(core::mem::size_of::<IrqCpu>(), 24);
        assert_eq!(core::mem::size_of::<IrqHist>(), 1120);
        assert_eq!(core::mem::size_of::<SoftirqStats>(), 2304);
        assert_eq!(core::mem::size_of::<FlowInfo>(), 88);
        assert_eq!(core::mem::size_of::<FlowLatency>(), 2304);
        assert_eq!(core::mem::size_of::<NetDevStats>(), 64);
        assert_eq!(Loss::ALL.len(), Loss::COUNT as usize);
        for (i, l) in Loss::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "Loss::ALL is in index order");
        }
    }
}
