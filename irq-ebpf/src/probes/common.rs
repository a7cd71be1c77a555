//! State shared by the programs: the loss counters, the load-time globals, the CPU filter and
//! the histogram update.

use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::map,
    maps::PerCpuArray,
    Global,
};
use irq_ebpf::{hist, CpuState, KernelOffsets, Latency, Loss, MAX_CPUS};

// Map and global names are the identifiers; they equal the constants in irq_ebpf::maps and
// irq_ebpf::globals, which user space uses (the `#[map]` macro only takes literals).

#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(Loss::COUNT, 0);

#[map]
pub static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
pub static CPU_FILTER_ON: Global<u32> = Global::new(0);

#[unsafe(no_mangle)]
pub static CPU_FILTER: [u64; MAX_CPUS / 64] = [0; MAX_CPUS / 64];

#[unsafe(no_mangle)]
pub static KSOFTIRQD_PIDS: [u32; MAX_CPUS] = [0; MAX_CPUS];

/// Kernel struct offsets, from the running kernel's BTF (see `irq_ebpf::KernelOffsets`).
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    napi_dev: 0,
    netdev_name: 0,
    netdev_ifindex: 0,
    skb_dev: 0,
    skb_len: 0,
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    skc_num: 0,
    skc_family: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    sk_protocol: 0,
    sk_wq: 0,
    socket_wq_wait: 0,
    wait_queue_head_head: 0,
};

/// One field of [`OFFSETS`], read volatile so the compiler cannot fold the zero it was built
/// with; the loader sets the real values and the verifier sees them as constants.
macro_rules! offset {
    ($field:ident) => {
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!($crate::probes::common::OFFSETS.$field))
        }
    };
}
pub(crate) use offset;

/// Reads a `T` at `base + offset` in kernel memory (offsets from [`OFFSETS`]).
#[inline(always)]
pub fn read_at<T>(base: u64, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn cpu() -> u32 {
    unsafe { bpf_get_smp_processor_id() }
}

#[inline(always)]
pub fn count_loss(loss: Loss) {
    if let Some(n) = LOSSES.get_ptr_mut(loss as u32) {
        unsafe { *n += 1 };
    }
}

/// Whether `cpu` is recorded. Globals live in a frozen read-only map, so with the filter off
/// the verifier prunes the rest and this costs one load.
#[inline(always)]
pub fn cpu_selected(cpu: u32) -> bool {
    if CPU_FILTER_ON.load() == 0 {
        return true;
    }
    let word = (cpu / 64) as usize;
    if word >= MAX_CPUS / 64 {
        return false;
    }
    let bits = unsafe { core::ptr::read_volatile(CPU_FILTER.as_ptr().add(word)) };
    bits & (1 << (cpu % 64)) != 0
}

/// PID of `cpu`'s ksoftirqd, or 0 when unknown.
#[inline(always)]
pub fn ksoftirqd_pid(cpu: u32) -> u32 {
    let cpu = cpu as usize;
    if cpu >= MAX_CPUS {
        return 0;
    }
    unsafe { core::ptr::read_volatile(KSOFTIRQD_PIDS.as_ptr().add(cpu)) }
}

/// This CPU's state entry. A per-CPU array of one entry cannot miss, but the verifier needs the
/// check; a miss is counted, not hidden.
#[inline(always)]
pub fn cpu_state() -> Option<*mut CpuState> {
    let state = CPU_STATE.get_ptr_mut(0);
    if state.is_none() {
        count_loss(Loss::LookupFailed);
    }
    state
}

/// Adds one observation of `ns` to a count/total/max triple and its histogram.
#[inline(always)]
pub fn record(
    count: &mut u64,
    total: &mut u64,
    max: &mut u64,
    hist: &mut [u64; hist::BUCKETS],
    ns: u64,
) {
    *count += 1;
    *total += ns;
    if ns > *max {
        *max = ns;
    }
    if let Some(b) = hist.get_mut(hist::bucket(ns)) {
        *b += 1;
    }
}

#[inline(always)]
pub fn record_latency(l: &mut Latency, ns: u64) {
    record(
        &mut l.count,
        &mut l.total_ns,
        &mut l.max_ns,
        &mut l.hist,
        ns,
    );
}
