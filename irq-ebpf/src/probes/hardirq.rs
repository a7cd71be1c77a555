//! Hardirq handler time per (IRQ, CPU), and its distribution per IRQ: irq_handler_entry/exit.

use aya_ebpf::{
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
};
use irq_ebpf::{hist, tp_format, IrqCpu, IrqHist, Loss, MAX_IRQ_NR};

use super::common::{bounded, count_loss, cpu_state, now_ns, selected};

#[map]
static IRQ_SLOTS: Array<u32> = Array::with_max_entries(MAX_IRQ_NR, 0);

/// Sized by the loader to the machine's IRQs (the 1 here is a placeholder).
#[map]
static IRQ_CPU: PerCpuArray<IrqCpu> = PerCpuArray::with_max_entries(1, 0);

/// One histogram per IRQ, not per (IRQ, CPU): per-CPU histograms of every IRQ would take
/// hundreds of MB where firmware declares hundreds of possible CPUs. Sized by the loader.
/// Plain adds are exact: the kernel never handles one IRQ on two CPUs at once (a descriptor
/// in progress is not handled again, irq_may_run() in kernel/irq/chip.c), so each slot has
/// one writer at a time. Slot 0, shared by IRQs that had no slot, may lose an add to a race.
#[map]
static IRQ_HIST: Array<IrqHist> = Array::with_max_entries(1, 0);

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

    // Dense slot, so the statistics stay arrays (no hash on the hardirq path).
    let slot = match IRQ_SLOTS.get(irq as u32) {
        Some(&s) if s != 0 => s - 1,
        _ => {
            count_loss(Loss::IrqUnmapped);
            0
        }
    };
    let Some(c) = IRQ_CPU.get_ptr_mut(slot) else {
        count_loss(Loss::LookupFailed);
        return;
    };
    let c = unsafe { &mut *c };
    c.count += 1;
    c.total_ns += ns;
    if ns > c.max_ns {
        c.max_ns = ns;
    }
    let Some(h) = IRQ_HIST.get_ptr_mut(slot) else {
        count_loss(Loss::LookupFailed);
        return;
    };
    if let Some(i) = bounded(hist::bucket(ns), hist::BUCKETS) {
        unsafe { (*h).hist[i] += 1 };
    }
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
