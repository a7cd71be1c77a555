//! Every threshold irqtune judges by, in one place, each with the reason for its value.
//! Findings, the planner and `tune`'s verdict read them from here.

/// A flow is "mismatched" when more than this share of its reads ran on another CPU than its
/// latest softirq delivery: below it, occasional migrations of the reader explain the rest.
pub const MISMATCHED_FLOW: f64 = 0.2;

/// Reads a flow needs before its mismatch ratio means anything.
pub const MIN_FLOW_READS: u64 = 100;

// ---- findings ----

/// NET_RX is worth judging from the probes above 0.5% of one CPU over the session: below it
/// the receive load is too light for its placement to matter.
pub const NET_RX_BUSY_SHARE: f64 = 0.005;

/// The same from /proc counts since boot (no handler time there): NET_RX runs.
pub const NET_RX_BUSY_RUNS: u64 = 10_000;

/// A CPU under 10% of the busiest CPU's NET_RX load does almost none of it.
pub const NET_RX_IDLE_CPU: f64 = 0.1;

/// One CPU carrying 60% of the NET_RX load while others idle is concentration; 90% is
/// critical (one CPU is the receive path's ceiling).
pub const NET_RX_CONCENTRATED: f64 = 0.6;
pub const NET_RX_CONCENTRATED_CRITICAL: f64 = 0.9;

/// A single-queue NIC's IRQ below this many interrupts over the session is too quiet for RPS
/// to matter.
pub const SINGLE_QUEUE_MIN_INTERRUPTS: u64 = 1000;

/// NET_RX runs on a CPU before its ksoftirqd share is judged.
pub const KSOFTIRQD_MIN_RUNS: u64 = 100;

/// NET_RX runs in ksoftirqd: above 10% the softirq load outgrows interrupt exit on that CPU
/// (kernel/softirq.c defers after 2 ms or 10 restarts); above half, it lives there.
pub const KSOFTIRQD_SHARE: f64 = 0.1;
pub const KSOFTIRQD_SHARE_CRITICAL: f64 = 0.5;

/// An IRQ firing 100 times a second or more is busy enough that sharing its CPU with another
/// busy IRQ (a disk and a NIC) costs both.
pub const BUSY_IRQ_RATE: f64 = 100.0;

/// RFS table floor (Documentation/networking/scaling.rst suggests 32768 for a moderately
/// loaded server); the table is a power of two of at least twice the concurrent flows.
pub const RFS_MIN_ENTRIES: u64 = 32768;

/// The largest RFS table the kernel takes: rps_sock_flow_sysctl() caps it at 2^29
/// (net/core/sysctl_net_core.c); rps_flow_cnt is capped the same way.
pub const RFS_MAX_ENTRIES: u64 = 1 << 29;

/// RFS table size for `flows` concurrent flows: a power of two >= 2x flows, at least
/// [`RFS_MIN_ENTRIES`], at most [`RFS_MAX_ENTRIES`].
pub fn rfs_entries(flows: u64) -> u64 {
    flows
        .saturating_mul(2)
        .clamp(RFS_MIN_ENTRIES, RFS_MAX_ENTRIES)
        .next_power_of_two()
}

/// Above this many interrupts per second, RPS leaves the IRQ's own CPU out: that CPU is busy
/// enough with the hardirq and the NAPI poll (Documentation/networking/scaling.rst, "RPS
/// Configuration": exclude the CPU that handles the interrupt when its load is high).
pub const RPS_HIGH_IRQ_RATE: f64 = 20_000.0;

/// What to do about irqbalance, which rewrites IRQ affinity every 10 s: said by the finding,
/// the planner and the applier alike.
pub const IRQBALANCE_ADVICE: &str = "stop it (systemctl stop irqbalance) or ban the tuned IRQs (IRQBALANCE_BANNED_CPULIST, --banirq)";

// ---- softnet: backlog and budget ----

/// The largest netdev_max_backlog irqtune proposes: 65536 packets per CPU. A full backlog
/// holds that many buffers on each CPU that fills it (a small packet's buffer is about 1 KiB
/// of truesize: some 64 MiB per CPU); a CPU that needs more cannot keep up, and queueing
/// longer only adds latency. Spreading the receive processing is the cure past it.
pub const BACKLOG_MAX: u64 = 1 << 16;

/// The kernel's default netdev_max_backlog (net/core/hotdata.c; net/core/dev.c before 6.9;
/// Documentation/admin-guide/sysctl/net.rst): a backlog below it is someone's experiment,
/// and the first step of a backlog that drops is back to at least it.
pub const BACKLOG_KERNEL_DEFAULT: u64 = 1000;

/// netdev_max_backlog for a backlog that dropped: room for `need` packets (what arrives
/// while NET_RX waits, measured), at least double `current` and at least the kernel's
/// default (the measured need is a lower bound: the rate is a mean, bursts run above it,
/// and the wait the probes see starts at the raise, after the IPI that RPS sends at the
/// end of the enqueuing CPU's own NET_RX run), a power of two, at most [`BACKLOG_MAX`].
pub fn backlog_size(current: u64, need: u64) -> u64 {
    current
        .saturating_mul(2)
        .max(need)
        .max(BACKLOG_KERNEL_DEFAULT)
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(BACKLOG_MAX)
        .min(BACKLOG_MAX)
}

/// The kernel's default netdev_budget (packets per NET_RX run; net/core/hotdata.c).
pub const BUDGET_KERNEL_DEFAULT: u64 = 300;

/// A budget raise is worth a trial only when the time limit lets a run take at least this
/// share more packets: a run that may take under 3% more ends squeezed on almost the same
/// backlog, and a 3% change is what a trial resolves on the workload
/// ([`THROUGHPUT_MARGIN`]). Below it the time limit is what binds (seen: 300 -> 304 at
/// 26 us per GRO packet and 8,000 us, tried and inconclusive).
pub const BUDGET_MIN_RAISE: f64 = THROUGHPUT_MARGIN;

/// netdev_budget for NET_RX runs that end on their packet budget with time left: double, or
/// back to the kernel's default when below it, but never more packets than one run processes
/// in netdev_budget_usecs at the measured cost per packet (`fits`): the time limit stays
/// what bounds a run, so a larger budget cannot hold the CPU longer than it already may.
pub fn budget_size(current: u64, fits: u64) -> u64 {
    current
        .saturating_mul(2)
        .max(BUDGET_KERNEL_DEFAULT)
        .min(fits)
}

// ---- NIC coalescing ----

/// Receive interrupts per second of one NIC above which their cost shows: at about a
/// microsecond for an interrupt's entry, exit and NAPI scheduling (more in a VM, where each
/// is an exit; irqtune's hardirq histograms show the handler part on the machine at hand),
/// 20,000 a second is some 2% of a CPU in interrupt overhead alone; the rate
/// Documentation/networking/scaling.rst treats as high ([`RPS_HIGH_IRQ_RATE`]).
pub const COALESCE_IRQ_RATE: f64 = RPS_HIGH_IRQ_RATE;

/// Packets per NAPI poll below which each interrupt brings about one packet (the poll
/// after it finds one, sometimes two): batching is absent, and coalescing is what brings it.
pub const COALESCE_PACKETS_PER_POLL: f64 = 2.0;

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

/// Windows per side in the trial's first look. With 5 a side the permutation test can reach
/// p = 1/252; the noise measured before the change may ask for more (up to
/// [`MAX_LOOKS`] x this).
pub const DEFAULT_WINDOWS: u32 = 5;

/// Overall significance of each one-sided test: the chance that a change that made no
/// difference is called worse (or a harmful one no worse) on one measure is at most 5%,
/// over all the looks of a trial together.
pub const ALPHA: f64 = 0.05;

/// Looks a trial may take at its windows: the first, then up to two extensions of as many
/// windows again when the first cannot tell. Each look tests at [`ALPHA`] / MAX_LOOKS
/// (Bonferroni), so looking again cannot inflate the error; the trial then takes at most
/// MAX_LOOKS times the --duration per side.
pub const MAX_LOOKS: u32 = 3;

/// Power the detectable effect is quoted at: the usual 80% (a change of that size is found
/// four times in five).
pub const POWER: f64 = 0.8;

/// Throughput may fall by less than this and still count as no worse. A margin is the cost
/// a change may have on an outcome without evidence of a gain elsewhere, so it is set below
/// what a steering change is meant to gain and above what the measurement resolves: on
/// fixed-rate flows the windows of one state spread by about 1% (tune tests, BENCHMARKS.md),
/// so a 3% fall is resolved in 5 windows a side.
pub const THROUGHPUT_MARGIN: f64 = 0.03;

/// A device's NAPI polls on its readers' CPUs are worth moving to a threaded NAPI kthread
/// elsewhere when NET_RX takes at least this share of such a CPU. Moving a share s off a
/// CPU-bound reader's CPU gives the reader at most s / (1 - s) more time; a trial resolves a
/// throughput change of about [`THROUGHPUT_MARGIN`], so below s = m / (1 + m) (2.9%) no trial
/// could show the gain. (ksoftirqd carrying NET_RX there, the kernel's own sign of softirq
/// overload, is the other trigger: [`KSOFTIRQD_SHARE`].)
pub const NAPI_ON_READERS_SHARE: f64 = THROUGHPUT_MARGIN / (1.0 + THROUGHPUT_MARGIN);

/// The median wake-up (delivery-to-read) may rise by less than this and still count as no
/// worse. Moving a flow's softirq onto its reader's CPU is meant to save the cross-CPU
/// wake-up (an IPI and a remote run-queue): the tune tests measured that gain at 10% to 40%
/// of the median on a 2-CPU VM (BENCHMARKS.md), so a change that costs 10% has spent at
/// least what the smallest such fix earns.
pub const LATENCY_MARGIN: f64 = 0.10;

/// Delivery-to-read samples a window needs for its median to count. A sample median's
/// distribution-free 95% interval spans ranks n/2 +- 0.98 sqrt(n): at 50 that is the 36th to
/// the 64th percentile, a value the rank test can order windows by; fewer, and a window's
/// median is mostly chance.
pub const MIN_LATENCY_SAMPLES: u64 = 50;

/// A CPU spending this share of its time in hardirq + softirq handlers is saturated: what is
/// left cannot run the readers, and the kernel starts deferring softirqs to ksoftirqd.
pub const SATURATED_IRQ_SHARE: f64 = 0.80;

/// Time between applying a change and the first "after" window: RFS learns a flow's CPU at
/// its next read and RPS backlogs drain within milliseconds; this leaves a wide margin.
pub const SETTLE_MS: u64 = 300;
