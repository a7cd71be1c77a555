//! Softirq handler time, raise-to-entry delay and ksoftirqd share per (vector, CPU):
//! softirq_raise/entry/exit.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, map, tracepoint},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, TracePointContext},
};
use irq_ebpf::{tp_format, Loss, SoftirqStats, NET_RX_VEC, NR_SOFTIRQS};

use super::common::{bounded, count_loss, cpu_state, now_ns, record, selected};

#[map]
static SOFTIRQ_STATS: PerCpuArray<SoftirqStats> =
    PerCpuArray::with_max_entries(NR_SOFTIRQS as u32, 0);

#[inline(always)]
fn stats(vec: usize) -> Option<&'static mut SoftirqStats> {
    match SOFTIRQ_STATS.get_ptr_mut(vec as u32) {
        Some(s) => Some(unsafe { &mut *s }),
        None => {
            count_loss(Loss::LookupFailed);
            None
        }
    }
}

/// raise_softirq() marks the vector pending on the local CPU (kernel/softirq.c), so the delay
/// is measured per CPU from the first raise while pending to the handler's entry.
#[inline(always)]
fn on_raise(vec: u32) {
    let Some(vec) = bounded(vec as usize, NR_SOFTIRQS) else {
        return;
    };
    if !selected() {
        return;
    }
    let Some(state) = cpu_state() else { return };
    let Some(s) = stats(vec) else { return };
    s.raises += 1;
    let raised = unsafe { &mut (*state).softirq_raise_ns[vec] };
    if *raised == 0 {
        *raised = now_ns();
    }
}

#[inline(always)]
fn on_entry(vec: u32) {
    let Some(vec) = bounded(vec as usize, NR_SOFTIRQS) else {
        return;
    };
    let Some(state) = cpu_state() else { return };
    let state = unsafe { &mut *state };
    // Marked whatever the CPU filter: the flow probes rely on it on every CPU.
    if vec == NET_RX_VEC {
        state.in_net_rx = 1;
    }
    if !selected() {
        return;
    }
    let pid = bpf_get_current_pid_tgid() as u32;
    state.in_ksoftirqd = (pid != 0 && pid == state.ksoftirqd_pid) as u32;
    let now = now_ns();
    let raised = state.softirq_raise_ns[vec];
    if raised != 0 {
        state.softirq_raise_ns[vec] = 0;
        if let Some(s) = stats(vec) {
            record(
                &mut s.delay_count,
                &mut s.delay_total_ns,
                &mut s.delay_max_ns,
                &mut s.delay_hist,
                now.saturating_sub(raised),
            );
        }
    }
    state.softirq_entry_ns[vec] = now;
}

#[inline(always)]
fn on_exit(vec: u32) {
    let Some(vec) = bounded(vec as usize, NR_SOFTIRQS) else {
        return;
    };
    let Some(state) = cpu_state() else { return };
    let state = unsafe { &mut *state };
    if vec == NET_RX_VEC {
        state.in_net_rx = 0;
    }
    if !selected() {
        return;
    }
    let entered = state.softirq_entry_ns[vec];
    if entered == 0 {
        count_loss(Loss::SoftirqExitWithoutEntry);
        return;
    }
    state.softirq_entry_ns[vec] = 0;
    let ns = now_ns().saturating_sub(entered);
    let Some(s) = stats(vec) else { return };
    record(
        &mut s.count,
        &mut s.total_ns,
        &mut s.max_ns,
        &mut s.handler_hist,
        ns,
    );
    // Whether this run is ksoftirqd's was decided at its entry, in the state already at hand.
    s.ksoftirqd_runs += state.in_ksoftirqd as u64;
}

#[btf_tracepoint(function = "softirq_raise")]
pub fn softirq_raise_btf(ctx: BtfTracePointContext) -> i32 {
    on_raise(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "softirq_entry")]
pub fn softirq_entry_btf(ctx: BtfTracePointContext) -> i32 {
    on_entry(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "softirq_exit")]
pub fn softirq_exit_btf(ctx: BtfTracePointContext) -> i32 {
    on_exit(ctx.arg(0));
    0
}

#[inline(always)]
fn tp_vec(ctx: &TracePointContext) -> u32 {
    // An unreadable record yields an out-of-range vector, which the handlers ignore.
    unsafe { ctx.read_at::<u32>(tp_format::SOFTIRQ_VEC) }.unwrap_or(u32::MAX)
}

#[tracepoint(category = "irq", name = "softirq_raise")]
pub fn softirq_raise_tp(ctx: TracePointContext) -> u32 {
    on_raise(tp_vec(&ctx));
    0
}

#[tracepoint(category = "irq", name = "softirq_entry")]
pub fn softirq_entry_tp(ctx: TracePointContext) -> u32 {
    on_entry(tp_vec(&ctx));
    0
}

#[tracepoint(category = "irq", name = "softirq_exit")]
pub fn softirq_exit_tp(ctx: TracePointContext) -> u32 {
    on_exit(tp_vec(&ctx));
    0
}
