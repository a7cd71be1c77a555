//! Per-flow CPU placement: sock:sk_data_ready runs where the softirq delivered the data,
//! sock:sock_recv_length where the application read it. A read on another CPU than the
//! socket's latest delivery is a mismatched read: the data crossed CPUs (what RFS avoids,
//! Documentation/networking/scaling.rst).

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{Array, HashMap, LruHashMap},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
    Global,
};
use irq_ebpf::{
    tp_format, FlowCpuCounts, FlowCpuKey, FlowInfo, FlowKey, FlowLatency, Loss, MAX_FLOWS,
    MAX_FLOW_CPUS, MAX_FLOW_LATENCIES, NO_CPU,
};

use super::common::{
    count_loss, cpu, cpu_state, get_or_insert, insert_new, now_ns, offset, read_at, record_latency,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

#[map]
static FLOWS: LruHashMap<FlowKey, FlowInfo> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
static FLOW_CPUS: LruHashMap<FlowCpuKey, FlowCpuCounts> =
    LruHashMap::with_max_entries(MAX_FLOW_CPUS, 0);

#[map]
static FLOW_LATENCY: LruHashMap<FlowCpuKey, FlowLatency> =
    LruHashMap::with_max_entries(MAX_FLOW_LATENCIES, 0);

/// Never written: the zeroed value a new FLOW_LATENCY entry starts from (2.3 KiB does not
/// fit on the 512-byte BPF stack). One copy, not one per possible CPU.
#[map]
static FLOW_LATENCY_ZERO: Array<FlowLatency> = Array::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static FLOWS_ON: Global<u32> = Global::new(1);

#[unsafe(no_mangle)]
static FLOW_SAMPLE: Global<u32> = Global::new(1);

#[inline(always)]
fn wanted(sk: u64, family: u16, protocol: u16) -> bool {
    if sk == 0 || FLOWS_ON.load() == 0 {
        return false;
    }
    if !(family == AF_INET || family == AF_INET6)
        || !(protocol == IPPROTO_TCP || protocol == IPPROTO_UDP)
    {
        return false;
    }
    true
}

/// Sampling is per flow (a hash of its ports), so a sampled flow is seen whole. Not of the
/// socket's address: under tp_btf `sk` is a BTF pointer, and the verifier refuses shifts
/// and multiplications of pointers ("pointer arithmetic with >>= operator prohibited").
#[inline(always)]
fn sampled(key: &FlowKey) -> bool {
    let n = FLOW_SAMPLE.load() as u64;
    let ports = ((key.local_port as u64) << 16) | key.remote_port_be as u64;
    n <= 1 || (ports.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % n == 0
}

/// The flow's key: the socket and its current ports, read in one go (`skc_dport` and
/// `skc_num` are adjacent in `skc_portpair`).
#[inline(always)]
fn key(sk: u64) -> FlowKey {
    let [remote_port_be, local_port] =
        read_at::<[u16; 2]>(sk, offset!(skc_dport)).unwrap_or([0; 2]);
    FlowKey {
        sk,
        remote_port_be,
        local_port,
        _pad: 0,
    }
}

/// The flow's entry, created with its addresses on first sight.
#[inline(always)]
fn flow(key: &FlowKey, family: u16, protocol: u16) -> Option<&'static mut FlowInfo> {
    let fresh = || {
        let sk = key.sk;
        let mut f = FlowInfo {
            local_addr: [0; 16],
            remote_addr: [0; 16],
            local_port: key.local_port,
            remote_port: u16::from_be(key.remote_port_be),
            family,
            protocol,
            tgid: 0,
            last_delivery_cpu: NO_CPU,
            comm: [0; 16],
            pending_ns: 0,
            pending_cpu: NO_CPU,
            pending_waiter: 0,
            napi_id: 0,
            _pad: 0,
        };
        if family == AF_INET6 {
            f.local_addr = read_at(sk, offset!(skc_v6_rcv_saddr)).unwrap_or([0; 16]);
            f.remote_addr = read_at(sk, offset!(skc_v6_daddr)).unwrap_or([0; 16]);
        } else {
            let local: [u8; 4] = read_at(sk, offset!(skc_rcv_saddr)).unwrap_or([0; 4]);
            let remote: [u8; 4] = read_at(sk, offset!(skc_daddr)).unwrap_or([0; 4]);
            f.local_addr[..4].copy_from_slice(&local);
            f.remote_addr[..4].copy_from_slice(&remote);
        }
        f
    };
    get_or_insert(
        &FLOWS,
        key,
        || insert_new(&FLOWS, key, &fresh()),
        Some(Loss::FlowsCreated),
        Loss::FlowMapFull,
    )
}

/// This CPU's counts for the socket. Only this CPU writes them, so plain adds are exact.
#[inline(always)]
fn counts(flow: &FlowKey, cpu: u32) -> Option<&'static mut FlowCpuCounts> {
    let zero = || FlowCpuCounts {
        deliveries: 0,
        backlog_deliveries: 0,
        reads: 0,
        mismatched_reads: 0,
        read_bytes: 0,
    };
    let key = flow.on_cpu(cpu);
    get_or_insert(
        &FLOW_CPUS,
        &key,
        || insert_new(&FLOW_CPUS, &key, &zero()),
        Some(Loss::FlowCpusCreated),
        Loss::FlowMapFull,
    )
}

/// Whether a task waits on the socket now: a reader blocked in recv (or a poll/epoll entry)
/// on `sk->sk_wq->wait`, the queue sock_def_readable() wakes (include/net/sock.h,
/// skwq_has_sleeper). An unreadable pointer counts as no waiter.
#[inline(always)]
fn has_waiter(sk: u64) -> bool {
    let Some(wq) = read_at::<u64>(sk, offset!(sk_wq)) else {
        return false;
    };
    if wq == 0 {
        return false;
    }
    let head = wq + offset!(socket_wq_wait) as u64 + offset!(wait_queue_head_head) as u64;
    // An empty list points at itself.
    read_at::<u64>(head, 0).is_some_and(|next| next != 0 && next != head)
}

/// The reader CPU's latency entry for the socket, created zeroed on first use. The value
/// (2.3 KiB) does not fit on the 512-byte BPF stack: it is copied from a zeroed map entry.
#[inline(always)]
fn latency(flow: &FlowKey, cpu: u32) -> Option<&'static mut FlowLatency> {
    let key = flow.on_cpu(cpu);
    let insert = || match FLOW_LATENCY_ZERO.get_ptr(0) {
        Some(zero) => insert_new(&FLOW_LATENCY, &key, unsafe { &*zero }),
        None => false,
    };
    get_or_insert(&FLOW_LATENCY, &key, insert, None, Loss::FlowLatencyMapFull)
}

#[inline(always)]
fn on_data_ready(sk: u64, family: u16, protocol: u16) {
    if !wanted(sk, family, protocol) {
        return;
    }
    let key = key(sk);
    if !sampled(&key) {
        return;
    }
    let cpu = cpu();
    let in_softirq = cpu_state().is_some_and(|s| unsafe { (*s).in_net_rx } != 0);
    let Some(f) = flow(&key, family, protocol) else {
        return;
    };
    if in_softirq {
        f.last_delivery_cpu = cpu;
        if f.pending_ns == 0 {
            f.pending_ns = now_ns();
            f.pending_cpu = cpu;
            f.pending_waiter = has_waiter(key.sk).into();
            // Once per read cycle, like the waiter check: not on every delivery.
            let at = offset!(sk_napi_id);
            if at != 0 {
                f.napi_id = read_at::<u32>(key.sk, at).unwrap_or(0);
            }
        }
    }
    if let Some(c) = counts(&key, cpu) {
        if in_softirq {
            c.deliveries += 1;
        } else {
            c.backlog_deliveries += 1;
        }
    }
}

/// A read that returned data: `bytes` of it (0 when the hook does not say how much).
#[inline(always)]
fn on_recv(sk: u64, family: u16, protocol: u16, bytes: u64) {
    if !wanted(sk, family, protocol) {
        return;
    }
    let key = key(sk);
    if !sampled(&key) {
        return;
    }
    let cpu = cpu();
    let Some(f) = flow(&key, family, protocol) else {
        return;
    };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if f.tgid != tgid {
        f.tgid = tgid;
        f.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    let delivered_on = f.last_delivery_cpu;
    if f.pending_ns != 0 {
        let waited = now_ns().saturating_sub(f.pending_ns);
        let (same_cpu, woke) = (f.pending_cpu == cpu, f.pending_waiter != 0);
        f.pending_ns = 0;
        if let Some(l) = latency(&key, cpu) {
            if !woke {
                l.queued_count += 1;
                l.queued_total_ns += waited;
            } else if same_cpu {
                record_latency(&mut l.same_cpu, waited);
            } else {
                record_latency(&mut l.cross_cpu, waited);
            }
        }
    }
    let Some(c) = counts(&key, cpu) else { return };
    c.reads += 1;
    c.read_bytes += bytes;
    if delivered_on != NO_CPU && delivered_on != cpu {
        c.mismatched_reads += 1;
    }
}

/// The BTF tracepoints pass only the socket; family and protocol come from the socket itself.
#[inline(always)]
fn family_protocol(sk: u64) -> (u16, u16) {
    (
        read_at::<u16>(sk, offset!(skc_family)).unwrap_or(0),
        read_at::<u16>(sk, offset!(sk_protocol)).unwrap_or(0),
    )
}

#[btf_tracepoint(function = "sk_data_ready")]
pub fn sk_data_ready_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if FLOWS_ON.load() != 0 && sk != 0 {
        let (family, protocol) = family_protocol(sk);
        on_data_ready(sk, family, protocol);
    }
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    if FLOWS_ON.load() != 0 && sk != 0 && ret > 0 {
        let (family, protocol) = family_protocol(sk);
        on_recv(sk, family, protocol, ret as u64);
    }
    0
}

#[tracepoint(category = "sock", name = "sk_data_ready")]
pub fn sk_data_ready_tp(ctx: TracePointContext) -> u32 {
    let read = || unsafe {
        Some((
            ctx.read_at::<u64>(tp_format::SK_DATA_READY_SKADDR).ok()?,
            ctx.read_at::<u16>(tp_format::SK_DATA_READY_FAMILY).ok()?,
            ctx.read_at::<u16>(tp_format::SK_DATA_READY_PROTOCOL).ok()?,
        ))
    };
    if let Some((sk, family, protocol)) = read() {
        on_data_ready(sk, family, protocol);
    }
    0
}

#[tracepoint(category = "sock", name = "sock_recv_length")]
pub fn sock_recv_length_tp(ctx: TracePointContext) -> u32 {
    let read = || unsafe {
        Some((
            ctx.read_at::<u64>(tp_format::SOCK_RECV_LENGTH_SK).ok()?,
            ctx.read_at::<u16>(tp_format::SOCK_RECV_LENGTH_FAMILY)
                .ok()?,
            ctx.read_at::<u16>(tp_format::SOCK_RECV_LENGTH_PROTOCOL)
                .ok()?,
            ctx.read_at::<i32>(tp_format::SOCK_RECV_LENGTH_RET).ok()?,
        ))
    };
    if let Some((sk, family, protocol, ret)) = read() {
        if ret > 0 {
            on_recv(sk, family, protocol, ret as u64);
        }
    }
    0
}

// ---- Fallbacks for kernels without the sock tracepoints (added in 6.3), cheapest first ----

/// A delivery seen at the socket's own data-ready callback, for a hook that passes the sock.
#[inline(always)]
fn delivered(sk: u64) {
    if FLOWS_ON.load() != 0 && sk != 0 {
        let (family, protocol) = family_protocol(sk);
        on_data_ready(sk, family, protocol);
    }
}

/// A read returned by inet_recvmsg/inet6_recvmsg(struct socket *, ...): `ret` bytes.
#[inline(always)]
fn returned(sock: u64, ret: i64) {
    if FLOWS_ON.load() == 0 || sock == 0 || ret <= 0 {
        return;
    }
    let Some(sk) = read_at::<u64>(sock, offset!(socket_sk)) else {
        return;
    };
    if sk != 0 {
        let (family, protocol) = family_protocol(sk);
        on_recv(sk, family, protocol, ret as u64);
    }
}

/// sock_def_readable() is the data-ready callback of TCP and UDP sockets
/// (sk->sk_data_ready, net/core/sock.c): the sk_data_ready tracepoint fires inside it.
#[fentry(function = "sock_def_readable")]
pub fn sock_def_readable_fentry(ctx: FEntryContext) -> i32 {
    delivered(ctx.arg(0));
    0
}

/// inet_recvmsg() and inet6_recvmsg() return what every TCP/UDP recv, read and recvmsg got
/// (sock_recvmsg_nosec calls them; the sock_recv_length tracepoint sits right after). The
/// return value follows the four arguments (bpf_get_func_ret needs 5.17).
#[fexit(function = "inet_recvmsg")]
pub fn inet_recvmsg_fexit(ctx: FExitContext) -> i32 {
    returned(ctx.arg(0), ctx.arg(4));
    0
}

#[fexit(function = "inet6_recvmsg")]
pub fn inet6_recvmsg_fexit(ctx: FExitContext) -> i32 {
    returned(ctx.arg(0), ctx.arg(4));
    0
}

#[kprobe]
pub fn sock_def_readable_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        delivered(sk);
    }
    0
}

/// The socket of each thread's recvmsg in flight, from the kprobe at entry to the kretprobe
/// (which sees only the return value).
#[map]
static RECV_SOCKETS: HashMap<u64, u64> = HashMap::with_max_entries(8192, 0);

#[kprobe]
pub fn inet_recvmsg_kprobe(ctx: ProbeContext) -> u32 {
    if FLOWS_ON.load() != 0 {
        if let Some(sock) = ctx.arg::<u64>(0) {
            let tid = bpf_get_current_pid_tgid();
            if RECV_SOCKETS.insert(&tid, &sock, 0).is_err() {
                count_loss(Loss::FlowMapFull);
            }
        }
    }
    0
}

#[kretprobe]
pub fn inet_recvmsg_kretprobe(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    if let Some(&sock) = unsafe { RECV_SOCKETS.get(&tid) } {
        let _ = RECV_SOCKETS.remove(&tid);
        returned(sock, ctx.ret::<i64>());
    }
    0
}

/// TCP only, the last resort: tcp_probe fires for each segment tcp_rcv_established() takes
/// (in the softirq, or from the backlog in the reader's context).
#[btf_tracepoint(function = "tcp_probe")]
pub fn tcp_probe_btf(ctx: BtfTracePointContext) -> i32 {
    delivered(ctx.arg(0));
    0
}

/// TCP only: tcp_rcv_space_adjust fires in tcp_recvmsg for each segment copied to the reader
/// (so reads count per segment, and their sizes are unknown).
#[btf_tracepoint(function = "tcp_rcv_space_adjust")]
pub fn tcp_rcv_space_adjust_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if FLOWS_ON.load() != 0 && sk != 0 {
        let (family, protocol) = family_protocol(sk);
        on_recv(sk, family, protocol, 0);
    }
    0
}
