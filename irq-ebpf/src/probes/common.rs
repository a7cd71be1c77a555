//! State shared by the programs: the loss counters, the load-time globals, the CPU filter and
//! the histogram update.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
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
    socket_sk: 0,
    sk_napi_id: 0,
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

/// Whether this CPU is recorded. Globals live in a frozen read-only map, so with the filter
/// off the verifier prunes the rest and this costs one load (and no CPU-number helper call).
#[inline(always)]
pub fn selected() -> bool {
    if CPU_FILTER_ON.load() == 0 {
        return true;
    }
    let cpu = cpu();
    let Some(word) = bounded((cpu / 64) as usize, MAX_CPUS / 64) else {
        return false;
    };
    let bits = unsafe { core::ptr::read_volatile(CPU_FILTER.as_ptr().add(word)) };
    bits & (1 << (cpu % 64)) != 0
}

/// `idx` when it is below `len`, checked in a form every verifier from 5.10 on can follow.
/// The value is reloaded through a volatile read first, so the compiler can neither move the
/// check to another register holding a related value (LLVM turns `bucket < 140` into a test
/// of the power of two the bucket came from) nor check one copy and index with another: the
/// verifiers before 5.12 carry a bound neither across arithmetic they cannot model nor from a
/// register to its copies, and reject the access ("math between map_value pointer and
/// register with unbounded min value").
#[inline(always)]
pub fn bounded(idx: usize, len: usize) -> Option<usize> {
    let idx = unsafe { core::ptr::read_volatile(&idx) };
    if idx < len {
        Some(idx)
    } else {
        None
    }
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
    if let Some(i) = bounded(hist::bucket(ns), hist::BUCKETS) {
        hist[i] += 1;
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

/// `key`'s entry in an LRU map, made by `insert` when absent (true when it created one). A
/// created entry is counted in `created` (when given); no entry afterwards (the kernel refused
/// the insert) in `refused`. Another CPU may create the entry between the lookup and the
/// insert: the insert then fails (BPF_NOEXIST) and the second lookup finds that entry.
#[inline(always)]
pub fn get_or_insert<K, V>(
    map: &LruHashMap<K, V>,
    key: &K,
    insert: impl FnOnce() -> bool,
    created: Option<Loss>,
    refused: Loss,
) -> Option<&'static mut V> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Some(unsafe { &mut *v });
    }
    if insert() {
        if let Some(c) = created {
            count_loss(c);
        }
    }
    match map.get_ptr_mut(key) {
        Some(v) => Some(unsafe { &mut *v }),
        None => {
            count_loss(refused);
            None
        }
    }
}

/// Inserts `value` under `key` unless an entry exists; true when it created one.
#[inline(always)]
pub fn insert_new<K, V>(map: &LruHashMap<K, V>, key: &K, value: &V) -> bool {
    map.insert(key, value, BPF_NOEXIST as u64).is_ok()
}
