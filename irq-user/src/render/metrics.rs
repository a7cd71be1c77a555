//! Every Prometheus metric family irqtune exports, described once: name, type, help and
//! labels. The writer (`prometheus`, `watch`), the dashboard test and the README's table all
//! read this catalogue; a family used but missing here does not compile.

/// The Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Its labels, besides `le` on histogram buckets.
    pub labels: &'static [&'static str],
    /// Only with `--per-cpu-histograms`: the `cpu` label added to `labels`.
    pub per_cpu_option: bool,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        help,
        labels,
        per_cpu_option: false,
    }
}

/// A family keyed by vector, IRQ or device that `--per-cpu-histograms` also splits by CPU.
const fn split(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        per_cpu_option: true,
        ..metric(name, kind, labels, help)
    }
}

use Kind::{Counter, Gauge, Histogram};

pub const WATCH_START: Metric = metric(
    "irqtune_watch_start_time_seconds",
    Gauge,
    &[],
    "When this irqtune watch started (Unix time).",
);
pub const WATCH_LAST_UPDATE: Metric = metric(
    "irqtune_watch_last_update_time_seconds",
    Gauge,
    &[],
    "When the metrics were last read from the probes (Unix time).",
);
pub const PROBE_ATTACHED: Metric = metric(
    "irqtune_probe_attached",
    Gauge,
    &["tracepoint", "attach"],
    "1 if the tracepoint's probe is attached, 0 if it was disabled (attach=\"disabled\": see the log for why) or not asked for (attach=\"off\").",
);
pub const PROFILE_DURATION: Metric = metric(
    "irqtune_profile_duration_seconds",
    Gauge,
    &[],
    "Length of the recorded profile.",
);
pub const COVERAGE: Metric = metric(
    "irqtune_probe_coverage_ratio",
    Gauge,
    &[],
    "Share of the time the probes were attached (below 1: a duty cycle): counts, times and histograms are extrapolated to the whole time, histograms keeping the observed shape (see the profile session.sampling).",
);
pub const MAP_MEMORY: Metric = metric(
    "irqtune_bpf_map_memory_bytes",
    Gauge,
    &[],
    "Kernel memory of the probes' BPF maps (the memlock the kernel charges, to the memory cgroup since 5.11).",
);
pub const HARDIRQ_HANDLER: Metric = metric(
    "irqtune_hardirq_handler_seconds",
    Histogram,
    &["irq", "name"],
    "Hardirq handler time per IRQ, all CPUs (the probes keep one distribution per IRQ; per-CPU counts are in irqtune_cpu_hardirqs_total).",
);
pub const SOFTIRQ_HANDLER: Metric = split(
    "irqtune_softirq_handler_seconds",
    Histogram,
    &["vector"],
    "Softirq handler time per vector (and CPU with --per-cpu-histograms).",
);
pub const SOFTIRQ_RAISE_DELAY: Metric = split(
    "irqtune_softirq_raise_delay_seconds",
    Histogram,
    &["vector"],
    "Time from softirq raise to handler entry per vector (and CPU with --per-cpu-histograms).",
);
pub const SOFTIRQ_KSOFTIRQD_RUNS: Metric = split(
    "irqtune_softirq_ksoftirqd_runs_total",
    Counter,
    &["vector"],
    "Softirq runs in ksoftirqd per vector (and CPU with --per-cpu-histograms).",
);
pub const CPU_HARDIRQ_SECONDS: Metric = metric(
    "irqtune_cpu_hardirq_seconds_total",
    Counter,
    &["cpu"],
    "Time in hardirq handlers per CPU; its rate() is the CPU's share of time in hardirqs.",
);
pub const CPU_HARDIRQS: Metric = metric(
    "irqtune_cpu_hardirqs_total",
    Counter,
    &["cpu"],
    "Hardirq handler runs per CPU.",
);
pub const CPU_SOFTIRQ_SECONDS: Metric = metric(
    "irqtune_cpu_softirq_seconds_total",
    Counter,
    &["cpu"],
    "Time in softirq handlers (all vectors) per CPU; its rate() is the CPU's share of time in softirqs.",
);
pub const CPU_SOFTIRQS: Metric = metric(
    "irqtune_cpu_softirqs_total",
    Counter,
    &["cpu"],
    "Softirq handler runs (all vectors) per CPU.",
);
pub const CPU_NET_RX_SECONDS: Metric = metric(
    "irqtune_cpu_net_rx_seconds_total",
    Counter,
    &["cpu"],
    "Time in the NET_RX softirq handler per CPU.",
);
pub const CPU_NET_RX_RUNS: Metric = metric(
    "irqtune_cpu_net_rx_runs_total",
    Counter,
    &["cpu"],
    "NET_RX softirq handler runs per CPU.",
);
pub const CPU_NET_RX_KSOFTIRQD_RUNS: Metric = metric(
    "irqtune_cpu_net_rx_ksoftirqd_runs_total",
    Counter,
    &["cpu"],
    "NET_RX softirq runs in ksoftirqd per CPU (the load outgrew interrupt exit).",
);
pub const NET_RX_PACKETS: Metric = metric(
    "irqtune_net_rx_packets_total",
    Counter,
    &["cpu"],
    "Packets received by NET_RX per CPU (all devices).",
);
pub const NET_RX_DEVICE_PACKETS: Metric = split(
    "irqtune_net_rx_device_packets_total",
    Counter,
    &["device"],
    "Packets received by NET_RX per device (and CPU with --per-cpu-histograms).",
);
pub const SOFTNET_DROPPED: Metric = metric(
    "irqtune_softnet_dropped_total",
    Counter,
    &["cpu"],
    "Packets dropped with a full backlog (softnet_stat) per CPU.",
);
pub const SOFTNET_TIME_SQUEEZE: Metric = metric(
    "irqtune_softnet_time_squeeze_total",
    Counter,
    &["cpu"],
    "NET_RX runs that ran out of budget with work left (softnet_stat) per CPU.",
);
pub const SOFTNET_FLOW_LIMIT: Metric = metric(
    "irqtune_softnet_flow_limit_total",
    Counter,
    &["cpu"],
    "Packets dropped by flow limit (one flow filled half a backlog; softnet_stat) per CPU.",
);
pub const NIC_RX_DROPS: Metric = metric(
    "irqtune_nic_rx_drops_total",
    Counter,
    &["device", "kind"],
    "Packets a NIC or its driver dropped on receive (/sys/class/net/*/statistics): kind dropped, missed (no rx descriptor: the ring was full), fifo, over.",
);
pub const NIC_SETTING: Metric = metric(
    "irqtune_nic_setting",
    Gauge,
    &["device", "name"],
    "A NIC's channels, ring sizes and coalescing (ethtool-netlink): channels_combined, channels_combined_max, ring_rx, ring_rx_max, rx_usecs, adaptive_rx (1 on) and the rest the driver reports.",
);
pub const SOFTNET_SETTING: Metric = metric(
    "irqtune_softnet_setting",
    Gauge,
    &["name"],
    "The softnet settings: netdev_max_backlog (packets per CPU backlog), netdev_budget (packets per NET_RX run), netdev_budget_usecs, dev_weight.",
);
pub const FLOW_READ_BYTES: Metric = metric(
    "irqtune_flow_read_bytes_total",
    Counter,
    &[],
    "Bytes the applications read from the tracked flows (the workload's throughput).",
);
pub const DELIVERY_TO_READ: Metric = metric(
    "irqtune_delivery_to_read_seconds",
    Histogram,
    &["placement"],
    "Time from a softirq's delivery of data to a socket to the application's read of it, by whether the read ran on the delivering CPU.",
);
pub const FLOW_MISMATCH_RATIO: Metric = metric(
    "irqtune_flow_mismatch_ratio",
    Gauge,
    &["comm"],
    "Share of reads on another CPU than the flow's softirq, per reading process name (top 10 by reads).",
);
pub const FLOW_READ_BYTES_PER_SECOND: Metric = metric(
    "irqtune_flow_read_bytes_per_second",
    Gauge,
    &["comm"],
    "Bytes read per second, per reading process name (top 10 by reads).",
);
pub const FLOW_DELIVERY_TO_READ_MEAN: Metric = metric(
    "irqtune_flow_delivery_to_read_mean_seconds",
    Gauge,
    &["comm"],
    "Mean delivery-to-read latency per reading process name (top 10 by reads).",
);
pub const PROBE_LOSSES: Metric = metric(
    "irqtune_probe_losses_total",
    Counter,
    &["kind"],
    "Events the probes could not record, by kind (zero on a healthy host).",
);
pub const PROBE_UNMATCHED_EXITS: Metric = metric(
    "irqtune_probe_unmatched_exits_total",
    Counter,
    &["kind"],
    "Handler exits whose entry came before the probes attached (at load and at each duty cycle slice): nothing lost.",
);
pub const PROBE_MAP_ENTRIES_CREATED: Metric = metric(
    "irqtune_probe_map_entries_created_total",
    Counter,
    &["kind"],
    "Entries created in the probes' LRU maps, by kind (with the entries present they give the evictions).",
);
pub const FINDING: Metric = metric(
    "irqtune_finding",
    Gauge,
    &["id", "severity"],
    "1 for each finding that holds (see the report for evidence and fix).",
);

/// Every family, in the order an exposition writes them.
pub const ALL: [&Metric; 34] = [
    &WATCH_START,
    &WATCH_LAST_UPDATE,
    &PROBE_ATTACHED,
    &PROFILE_DURATION,
    &COVERAGE,
    &MAP_MEMORY,
    &HARDIRQ_HANDLER,
    &SOFTIRQ_HANDLER,
    &SOFTIRQ_RAISE_DELAY,
    &SOFTIRQ_KSOFTIRQD_RUNS,
    &CPU_HARDIRQ_SECONDS,
    &CPU_HARDIRQS,
    &CPU_SOFTIRQ_SECONDS,
    &CPU_SOFTIRQS,
    &CPU_NET_RX_SECONDS,
    &CPU_NET_RX_RUNS,
    &CPU_NET_RX_KSOFTIRQD_RUNS,
    &NET_RX_PACKETS,
    &NET_RX_DEVICE_PACKETS,
    &SOFTNET_DROPPED,
    &SOFTNET_TIME_SQUEEZE,
    &SOFTNET_FLOW_LIMIT,
    &NIC_RX_DROPS,
    &NIC_SETTING,
    &SOFTNET_SETTING,
    &FLOW_READ_BYTES,
    &DELIVERY_TO_READ,
    &FLOW_MISMATCH_RATIO,
    &FLOW_READ_BYTES_PER_SECOND,
    &FLOW_DELIVERY_TO_READ_MEAN,
    &PROBE_LOSSES,
    &PROBE_UNMATCHED_EXITS,
    &PROBE_MAP_ENTRIES_CREATED,
    &FINDING,
];

/// The series names a family's samples carry (`_bucket`, `_sum`, `_count` for histograms).
pub fn series_names(m: &Metric) -> Vec<String> {
    match m.kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", m.name))
            .collect(),
        _ => vec![m.name.to_string()],
    }
}

/// The README's table of families, one row each: name, type, labels, help.
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in ALL {
        let mut labels: Vec<String> = m.labels.iter().map(|l| format!("`{l}`")).collect();
        if m.per_cpu_option {
            labels.push("(`cpu`)".into());
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.name(),
            labels.join(", "),
            m.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions_and_are_unique() {
        for m in ALL {
            assert!(m.name.starts_with("irqtune_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only they, end in _total",
                m.name
            );
            assert!(m.help.ends_with('.') || m.help.ends_with(')'), "{}", m.name);
        }
        let names: std::collections::BTreeSet<_> = ALL.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn the_readme_table_is_the_catalogue() {
        let readme = include_str!("../../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's metric table differs from render/metrics.rs; replace it with:\n{table}"
        );
    }
}
