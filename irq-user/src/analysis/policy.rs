//! Every threshold irqtune judges by, in one place, each with the reason for its value.
//! Findings, the planner and `tune`'s verdict read them from here.

/// A flow is "mismatched" when more than this share of its reads ran on another CPU than its
/// latest softirq delivery: below it, occasional migrations of the reader explain the rest.
pub const MISMATCHED_FLOW: f64 = 0.2;

/// Reads a flow needs before its mismatch ratio means anything.
pub const MIN_FLOW_READS: u64 = 100;

/// RFS table floor (Documentation/networking/scaling.rst suggests 32768 for a moderately
/// loaded server); the table is a power of two of at least twice the concurrent flows.
pub const RFS_MIN_ENTRIES: u64 = 32768;

/// RFS table size for `flows` concurrent flows: a power of two >= 2x flows, at least
/// [`RFS_MIN_ENTRIES`].
pub fn rfs_entries(flows: u64) -> u64 {
    flows
        .saturating_mul(2)
        .max(RFS_MIN_ENTRIES)
        .next_power_of_two()
}

// ---- tune: whether a change is worth trying (hysteresis) ----

/// Busiest flows (by bytes read) that `tune` judges one by one and shows.
pub const BUSIEST_FLOWS: usize = 5;

/// Below this share of the busiest flows' reads crossing CPUs, the gain of moving their
/// softirq is within what reader migrations cause anyway.
pub const MISMATCH_NOISE: f64 = 0.10;

/// NET_RX time busiest CPU / mean under this is ordinary unevenness between queues.
pub const IMBALANCE_NOISE: f64 = 1.3;

/// Reads of the busiest flows a mismatch needs to be acted on.
pub const MIN_READS: u64 = 200;

/// NET_RX runs an imbalance needs to be acted on.
pub const MIN_NET_RX_RUNS: u64 = 1000;

// ---- tune: the verdict ----

/// Windows per side (before, after). With 5 a side the permutation test can reach
/// p = 1/252, well under [`ALPHA`]; more windows cost nothing but make each one shorter.
pub const DEFAULT_WINDOWS: u32 = 5;

/// Significance for "worse" and "better": the chance that a change that made no difference
/// is called worse on one measure is at most 5%.
pub const ALPHA: f64 = 0.05;

/// A throughput fall smaller than this is not harm even when consistent: pacing and timer
/// granularity move a steady workload's rate by a few percent.
pub const THROUGHPUT_MARGIN: f64 = 0.05;

/// A rise of the median wake-up (delivery-to-read) smaller than this is not harm. Measured on
/// a 2-CPU VM, interleaved trials, 5 runs of each arrangement of the tune tests: moving a
/// flow's softirq from another CPU to its reader's moved the median by -40% to +10%; by +1% to
/// +44% when a TCP sender shared the reader's CPU (it then runs the receive softirq inline
/// and the reader waits for it: a real but modest cost); placements that hurt raised it by
/// +137% to +511%. Half again sits above the benign spread, well below harm.
pub const LATENCY_MARGIN: f64 = 0.50;

/// Delivery-to-read samples a window needs for its mean to count.
pub const MIN_LATENCY_SAMPLES: u64 = 50;

/// A CPU spending this share of its time in hardirq + softirq handlers is saturated: what is
/// left cannot run the readers, and the kernel starts deferring softirqs to ksoftirqd.
pub const SATURATED_IRQ_SHARE: f64 = 0.80;

/// Time between applying a change and the first "after" window: RFS learns a flow's CPU at
/// its next read and RPS backlogs drain within milliseconds; this leaves a wide margin.
pub const SETTLE_MS: u64 = 300;
