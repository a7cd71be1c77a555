//! Prometheus text exposition format (version 0.0.4), the same metric families `irqtune
//! watch` serves: histograms in seconds with fixed power-of-two bucket bounds, counters,
//! and one gauge per finding. Names follow the Prometheus naming conventions.

use std::fmt::Write as _;

use crate::model::{hist::Hist, profile::Profile};

/// Histogram bucket bounds: 2^8 ns (256 ns) .. 2^30 ns (1.07 s). Powers of two are bucket
/// edges of the kernel histograms, so these cumulative counts are exact.
pub const LE_POW2: std::ops::RangeInclusive<u32> = 8..=30;

/// Cardinality cap for per-flow-owner gauges.
pub const TOP_FLOW_OWNERS: usize = 10;

pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Label set `{a="x",b="y"}` from pairs.
pub fn labels(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Writes `# HELP` and `# TYPE` once per family.
pub struct Writer {
    pub out: String,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { out: String::new() }
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels_: &[(&str, String)], value: f64) {
        let _ = writeln!(self.out, "{name}{} {}", labels(labels_), fmt_value(value));
    }

    /// One histogram series from kernel buckets.
    pub fn histogram(&mut self, name: &str, labels_: &[(&str, String)], h: &Hist) {
        let buckets = h.to_buckets();
        let mut cum = 0u64;
        let mut idx = 0usize;
        for pow in LE_POW2 {
            let le = 1u64 << pow;
            while idx < buckets.len() && irq_ebpf::hist::bucket_range(idx).1 <= le {
                cum += buckets[idx];
                idx += 1;
            }
            let mut l = labels_.to_vec();
            l.push(("le", fmt_value(le as f64 / 1e9)));
            self.sample(&format!("{name}_bucket"), &l, cum as f64);
        }
        let total: u64 = buckets.iter().sum();
        let mut l = labels_.to_vec();
        l.push(("le", "+Inf".into()));
        self.sample(&format!("{name}_bucket"), &l, total as f64);
        self.sample(&format!("{name}_sum"), labels_, h.sum_ns as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels_, total as f64);
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn softirq_labels(r: &crate::model::profile::SoftirqRow) -> [(&'static str, String); 2] {
    [
        ("vector", r.vector.name().to_string()),
        ("cpu", r.cpu.to_string()),
    ]
}

fn irq_labels(irq: Option<u32>, name: &str, cpu: u32) -> Vec<(&'static str, String)> {
    vec![
        ("irq", irq.map_or("unmapped".into(), |i| i.to_string())),
        ("name", name.to_string()),
        ("cpu", cpu.to_string()),
    ]
}

/// Writes every family of a profile (or of one `watch` interval's cumulative state).
pub fn write_profile(w: &mut Writer, p: &Profile) {
    w.family(
        "irqtune_hardirq_handler_seconds",
        "histogram",
        "Hardirq handler time per IRQ and CPU.",
    );
    for r in &p.hardirqs {
        w.histogram(
            "irqtune_hardirq_handler_seconds",
            &irq_labels(r.irq, &r.name, r.cpu),
            &r.handler,
        );
    }
    w.family(
        "irqtune_softirq_handler_seconds",
        "histogram",
        "Softirq handler time per vector and CPU.",
    );
    for r in &p.softirqs {
        let l = softirq_labels(r);
        w.histogram("irqtune_softirq_handler_seconds", &l, &r.handler);
    }
    w.family(
        "irqtune_softirq_raise_delay_seconds",
        "histogram",
        "Time from softirq raise to handler entry per vector and CPU.",
    );
    for r in &p.softirqs {
        let l = softirq_labels(r);
        w.histogram("irqtune_softirq_raise_delay_seconds", &l, &r.raise_delay);
    }
    w.family(
        "irqtune_softirq_ksoftirqd_runs_total",
        "counter",
        "Softirq runs in ksoftirqd per vector and CPU.",
    );
    for r in &p.softirqs {
        let l = softirq_labels(r);
        w.sample(
            "irqtune_softirq_ksoftirqd_runs_total",
            &l,
            r.ksoftirqd_runs as f64,
        );
    }
    w.family(
        "irqtune_net_rx_packets_total",
        "counter",
        "Packets received by NET_RX per device and CPU.",
    );
    for r in &p.netdevs {
        let l = [("device", r.device.clone()), ("cpu", r.cpu.to_string())];
        w.sample("irqtune_net_rx_packets_total", &l, r.packets as f64);
    }
    w.family(
        "irqtune_softnet_dropped_total",
        "counter",
        "Packets dropped with a full backlog (softnet_stat) per CPU.",
    );
    for s in &p.proc.softnet {
        w.sample(
            "irqtune_softnet_dropped_total",
            &[("cpu", s.cpu.to_string())],
            s.dropped as f64,
        );
    }
    w.family(
        "irqtune_softnet_time_squeeze_total",
        "counter",
        "NET_RX runs that ran out of budget with work left (softnet_stat) per CPU.",
    );
    for s in &p.proc.softnet {
        w.sample(
            "irqtune_softnet_time_squeeze_total",
            &[("cpu", s.cpu.to_string())],
            s.time_squeeze as f64,
        );
    }
    w.family(
        "irqtune_flow_read_bytes_total",
        "counter",
        "Bytes the applications read from the tracked flows (the workload's throughput).",
    );
    w.sample(
        "irqtune_flow_read_bytes_total",
        &[],
        p.flow_totals.read_bytes as f64,
    );
    w.family(
        "irqtune_delivery_to_read_seconds",
        "histogram",
        "Time from a softirq's delivery of data to a socket to the application's read of it, by whether the read ran on the delivering CPU.",
    );
    let d = &p.flow_totals.delivery_to_read;
    for (placement, h) in [("same_cpu", &d.same_cpu), ("cross_cpu", &d.cross_cpu)] {
        w.histogram(
            "irqtune_delivery_to_read_seconds",
            &[("placement", placement.to_string())],
            h,
        );
    }
    // Bounded cardinality: the owners (comm) with the most reads.
    #[derive(Default)]
    struct Owner {
        reads: u64,
        mismatched: u64,
        bytes: u64,
        waits: u64,
        wait_ns: u64,
    }
    let mut owners: std::collections::BTreeMap<&str, Owner> = std::collections::BTreeMap::new();
    for f in &p.flows {
        let e = owners.entry(f.comm.as_str()).or_default();
        e.reads += f.reads();
        e.mismatched += f.mismatched_reads;
        e.bytes += f.read_bytes;
        let d = &f.delivery_to_read;
        e.waits += d.count();
        e.wait_ns += d.same_cpu.sum_ns + d.cross_cpu.sum_ns;
    }
    let mut owners: Vec<_> = owners.into_iter().filter(|(_, o)| o.reads > 0).collect();
    owners.sort_by(|a, b| b.1.reads.cmp(&a.1.reads).then(a.0.cmp(b.0)));
    owners.truncate(TOP_FLOW_OWNERS);
    w.family(
        "irqtune_flow_mismatch_ratio",
        "gauge",
        "Share of reads on another CPU than the flow's softirq, per reading process name (top 10 by reads).",
    );
    for (comm, o) in &owners {
        w.sample(
            "irqtune_flow_mismatch_ratio",
            &[("comm", comm.to_string())],
            o.mismatched as f64 / o.reads as f64,
        );
    }
    w.family(
        "irqtune_flow_read_bytes_per_second",
        "gauge",
        "Bytes read per second, per reading process name (top 10 by reads).",
    );
    for (comm, o) in &owners {
        w.sample(
            "irqtune_flow_read_bytes_per_second",
            &[("comm", comm.to_string())],
            o.bytes as f64 / p.duration_secs().max(1e-9),
        );
    }
    w.family(
        "irqtune_flow_delivery_to_read_mean_seconds",
        "gauge",
        "Mean delivery-to-read latency per reading process name (top 10 by reads).",
    );
    for (comm, o) in owners.iter().filter(|(_, o)| o.waits > 0) {
        w.sample(
            "irqtune_flow_delivery_to_read_mean_seconds",
            &[("comm", comm.to_string())],
            o.wait_ns as f64 / o.waits as f64 / 1e9,
        );
    }
    w.family(
        "irqtune_probe_losses_total",
        "counter",
        "Events the probes could not record, by kind.",
    );
    for (k, v) in &p.losses {
        w.sample(
            "irqtune_probe_losses_total",
            &[("kind", k.clone())],
            *v as f64,
        );
    }
    w.family(
        "irqtune_finding",
        "gauge",
        "1 for each finding that holds (see the report for evidence and fix).",
    );
    for f in &p.findings {
        let l = [
            ("id", f.id.name().to_string()),
            ("severity", f.severity.name().to_string()),
        ];
        w.sample("irqtune_finding", &l, 1.0);
    }
}

pub fn render(p: &Profile) -> String {
    let mut w = Writer::new();
    w.family(
        "irqtune_profile_duration_seconds",
        "gauge",
        "Length of the recorded profile.",
    );
    w.sample("irqtune_profile_duration_seconds", &[], p.duration_secs());
    write_profile(&mut w, p);
    w.out
}
