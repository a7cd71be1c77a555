//! NET_RX load per (network device, CPU): napi_poll (polls, work, budget exhausted) and
//! netif_receive_skb (packets, bytes).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::{btf_tracepoint, map, tracepoint},
    maps::PerCpuHashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use irq_ebpf::{tp_format, Loss, NetDevStats, MAX_NETDEVS};

use super::common::{count_loss, offset, read_at, selected};

#[map]
static NETDEV_STATS: PerCpuHashMap<u64, NetDevStats> =
    PerCpuHashMap::with_max_entries(MAX_NETDEVS, 0);

/// This CPU's entry for `dev`, created on first sight with the device's name.
#[inline(always)]
fn dev_stats<C: aya_ebpf::EbpfContext>(ctx: &C, dev: u64) -> Option<&'static mut NetDevStats> {
    if let Some(s) = NETDEV_STATS.get_ptr_mut(dev) {
        return Some(unsafe { &mut *s });
    }
    let mut fresh = NetDevStats {
        name: [0; 16],
        ifindex: read_at::<u32>(dev, offset!(netdev_ifindex)).unwrap_or(0),
        _pad: 0,
        polls: 0,
        work: 0,
        budget_exhausted: 0,
        rx_packets: 0,
        rx_bytes: 0,
    };
    if let Some(name) = read_at::<[u8; 16]>(dev, offset!(netdev_name)) {
        fresh.name = name;
    }
    // Another CPU may have created the entry meanwhile (NOEXIST fails): its per-CPU copy for
    // this CPU exists then, so look up again.
    if NETDEV_STATS.insert(dev, fresh, BPF_NOEXIST as u64).is_err()
        && NETDEV_STATS.get_ptr_mut(dev).is_none()
    {
        count_loss(Loss::NetdevMapFull);
        warn!(ctx, "irqtune: NETDEV_STATS full, device not counted");
        return None;
    }
    NETDEV_STATS.get_ptr_mut(dev).map(|s| unsafe { &mut *s })
}

#[inline(always)]
fn on_napi_poll<C: aya_ebpf::EbpfContext>(ctx: &C, napi: u64, work: i32, budget: i32) {
    if napi == 0 || !selected() {
        return;
    }
    let Some(dev) = read_at::<u64>(napi, offset!(napi_dev)) else {
        return;
    };
    if dev == 0 {
        return;
    }
    let Some(s) = dev_stats(ctx, dev) else { return };
    s.polls += 1;
    if work > 0 {
        s.work += work as u64;
    }
    if work >= budget {
        s.budget_exhausted += 1;
    }
}

#[inline(always)]
fn on_receive_skb<C: aya_ebpf::EbpfContext>(ctx: &C, skb: u64, len: Option<u32>) {
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
    let Some(s) = dev_stats(ctx, dev) else { return };
    s.rx_packets += 1;
    s.rx_bytes += len as u64;
}

#[btf_tracepoint(function = "napi_poll")]
pub fn napi_poll_btf(ctx: BtfTracePointContext) -> i32 {
    let napi: u64 = ctx.arg(0);
    on_napi_poll(&ctx, napi, ctx.arg(1), ctx.arg(2));
    0
}

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netif_receive_skb_btf(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    on_receive_skb(&ctx, skb, None);
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
        on_napi_poll(&ctx, napi, work, budget);
    }
    0
}

#[tracepoint(category = "net", name = "netif_receive_skb")]
pub fn netif_receive_skb_tp(ctx: TracePointContext) -> u32 {
    let skb = unsafe { ctx.read_at::<u64>(tp_format::NETIF_RECEIVE_SKB_SKBADDR) }.unwrap_or(0);
    let len = unsafe { ctx.read_at::<u32>(tp_format::NETIF_RECEIVE_SKB_LEN) }.ok();
    on_receive_skb(&ctx, skb, len);
    0
}
