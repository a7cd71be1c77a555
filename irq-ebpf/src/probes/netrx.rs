//! NET_RX load per (network device, CPU): napi_poll (polls, packets, budget exhausted), and
//! with per-packet detail netif_receive_skb (packets and bytes as the stack receives them).
//! The per-CPU backlog NAPI (RPS, netif_rx) belongs to no device: it is counted under device 0.

use aya_ebpf::{
    macros::{btf_tracepoint, map, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use irq_ebpf::{tp_format, Loss, NetDevKey, NetDevStats, MAX_NETDEV_CPUS};

use super::common::{cpu, get_or_insert, insert_new, offset, read_at, selected};

/// Only the (device, CPU) pairs that occur, each written by its own CPU: per-CPU values of
/// every device would grow with the possible CPUs.
#[map]
static NETDEV_STATS: LruHashMap<NetDevKey, NetDevStats> =
    LruHashMap::with_max_entries(MAX_NETDEV_CPUS, 0);

/// This CPU's entry for `dev`, created on first sight with the device's name.
#[inline(always)]
fn dev_stats(dev: u64) -> Option<&'static mut NetDevStats> {
    let key = NetDevKey {
        dev,
        cpu: cpu(),
        _pad: 0,
    };
    let fresh = || {
        let mut s = NetDevStats {
            name: [0; 16],
            ifindex: 0,
            _pad: 0,
            polls: 0,
            work: 0,
            budget_exhausted: 0,
            rx_packets: 0,
            rx_bytes: 0,
        };
        if dev != 0 {
            s.ifindex = read_at::<u32>(dev, offset!(netdev_ifindex)).unwrap_or(0);
            if let Some(name) = read_at::<[u8; 16]>(dev, offset!(netdev_name)) {
                s.name = name;
            }
        }
        s
    };
    get_or_insert(
        &NETDEV_STATS,
        &key,
        || insert_new(&NETDEV_STATS, &key, &fresh()),
        None,
        Loss::NetdevMapFull,
    )
}

#[inline(always)]
fn on_napi_poll(napi: u64, work: i32, budget: i32) {
    if napi == 0 || !selected() {
        return;
    }
    // The backlog NAPI has no device: dev reads as 0, kept as the backlog's key.
    let dev = read_at::<u64>(napi, offset!(napi_dev)).unwrap_or(0);
    let Some(s) = dev_stats(dev) else { return };
    s.polls += 1;
    if work > 0 {
        s.work += work as u64;
    }
    if work >= budget {
        s.budget_exhausted += 1;
    }
}

#[inline(always)]
fn on_receive_skb(skb: u64, len: Option<u32>) {
    if skb == 0 || !selected() {
        return;
    }
    let Some(dev) = read_at::<u64>(skb, offset!(skb_dev)) else {
        return;
    };
    if dev == 0 {
        return;
    }
    let len = match len {
        Some(len) => len,
        None => read_at::<u32>(skb, offset!(skb_len)).unwrap_or(0),
    };
    let Some(s) = dev_stats(dev) else { return };
    s.rx_packets += 1;
    s.rx_bytes += len as u64;
}

#[btf_tracepoint(function = "napi_poll")]
pub fn napi_poll_btf(ctx: BtfTracePointContext) -> i32 {
    let napi: u64 = ctx.arg(0);
    on_napi_poll(napi, ctx.arg(1), ctx.arg(2));
    0
}

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netif_receive_skb_btf(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    on_receive_skb(skb, None);
    0
}

#[tracepoint(category = "napi", name = "napi_poll")]
pub fn napi_poll_tp(ctx: TracePointContext) -> u32 {
    let read = || unsafe {
        Some((
            ctx.read_at::<u64>(tp_format::NAPI_POLL_NAPI).ok()?,
            ctx.read_at::<i32>(tp_format::NAPI_POLL_WORK).ok()?,
            ctx.read_at::<i32>(tp_format::NAPI_POLL_BUDGET).ok()?,
        ))
    };
    if let Some((napi, work, budget)) = read() {
        on_napi_poll(napi, work, budget);
    }
    0
}

#[tracepoint(category = "net", name = "netif_receive_skb")]
pub fn netif_receive_skb_tp(ctx: TracePointContext) -> u32 {
    let skb = unsafe { ctx.read_at::<u64>(tp_format::NETIF_RECEIVE_SKB_SKBADDR) }.unwrap_or(0);
    let len = unsafe { ctx.read_at::<u32>(tp_format::NETIF_RECEIVE_SKB_LEN) }.ok();
    on_receive_skb(skb, len);
    0
}
