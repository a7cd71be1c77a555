//! Hardirq handler time per (IRQ, CPU): irq_handler_entry/exit.

use aya_ebpf::{
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
};
use irq_ebpf::{tp_format, IrqStats, Loss, MAX_IRQ_NR, MAX_IRQ_SLOTS};

use super::common::{count_loss, cpu_state, now_ns, record_latency, selected};

#[map]
static IRQ_SLOTS: Array<u32> = Array::with_max_entries(MAX_IRQ_NR, 0);

#[map]
static IRQ_STATS: PerCpuArray<IrqStats> = PerCpuArray::with_max_entries(MAX_IRQ_SLOTS, 0);

#[inline(always)]
fn on_entry() {
    if !selected() {
        return;
    }
    if let Some(state) = cpu_state() {
        unsafe { (*state).irq_entry_ns = now_ns() };
    }
}

#[inline(always)]
fn on_exit(irq: i32) {
    if !selected() {
        return;
    }
    let Some(state) = cpu_state() else { return };
    let start = unsafe { (*state).irq_entry_ns };
    if start == 0 {
        count_loss(Loss::IrqExitWithoutEntry);
        return;
    }
    unsafe { (*state).irq_entry_ns = 0 };
    let ns = now_ns().saturating_sub(start);

    // Dense slot, so the statistics stay a per-CPU array (no hash on the hardirq path).
    let slot = match IRQ_SLOTS.get(irq as u32) {
        Some(&s) if s != 0 => s - 1,
        _ => {
            count_loss(Loss::IrqUnmapped);
            0
        }
    };
    let Some(stats) = IRQ_STATS.get_ptr_mut(slot) else {
        count_loss(Loss::LookupFailed);
        return;
    };
    record_latency(unsafe { &mut *stats }, ns);
}

#[btf_tracepoint(function = "irq_handler_entry")]
pub fn irq_handler_entry_btf(_ctx: BtfTracePointContext) -> i32 {
    on_entry();
    0
}

#[btf_tracepoint(function = "irq_handler_exit")]
pub fn irq_handler_exit_btf(ctx: BtfTracePointContext) -> i32 {
    on_exit(ctx.arg(0));
    0
}

#[tracepoint(category = "irq", name = "irq_handler_entry")]
pub fn irq_handler_entry_tp(_ctx: TracePointContext) -> u32 {
    on_entry();
    0
}

#[tracepoint(category = "irq", name = "irq_handler_exit")]
pub fn irq_handler_exit_tp(ctx: TracePointContext) -> u32 {
    if let Ok(irq) = unsafe { ctx.read_at::<i32>(tp_format::IRQ_HANDLER_IRQ) } {
        on_exit(irq);
    }
    0
}
