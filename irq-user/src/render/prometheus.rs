//! Prometheus text exposition format (version 0.0.4), the same metric families `irqtune
//! watch` serves: histograms in seconds with fixed power-of-two bucket bounds, counters,
//! and one gauge per finding. Names follow the Prometheus naming conventions.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use irq_ebpf::hist::BUCKETS;

use crate::model::{
    hist::{self, Hist},
    procfs::SoftnetRow,
    profile::{Family, Profile, Vector},
};

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

    /// One histogram series from a profile histogram.
    pub fn histogram(&mut self, name: &str, labels_: &[(&str, String)], h: &Hist) {
        self.buckets(name, labels_, &h.to_buckets(), h.sum_ns);
    }

    /// One histogram series: the sum of several profile histograms.
    pub fn histogram_of<'a>(
        &mut self,
        name: &str,
        labels_: &[(&str, String)],
        hists: impl IntoIterator<Item = &'a Hist>,
    ) {
        let (buckets, _max, sum_ns) = hist::merged(hists);
        self.buckets(name, labels_, &buckets, sum_ns);
    }

    /// One histogram series from the kernel's buckets.
    fn buckets(
        &mut self,
        name: &str,
        labels_: &[(&str, String)],
        buckets: &[u64; BUCKETS],
        sum_ns: u64,
    ) {
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
        self.sample(&format!("{name}_sum"), labels_, sum_ns as f64 / 1e9);
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

/// What the exposition splits by CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The families keyed by softirq vector, IRQ or device also split by CPU: histograms
    /// per (vector, CPU) and (IRQ, CPU). Series then grow as CPUs x vectors x buckets (7,971
    /// for a 64-CPU server instead of about 1,300), so it is opt-in: for one host under
    /// study, not for a fleet.
    pub per_cpu_histograms: bool,
}

/// Rows grouped by `key` (plus the CPU when `per_cpu`), in key order: the unit of one series.
fn grouped<R, K: Ord>(
    rows: &[R],
    per_cpu: bool,
    key: impl Fn(&R) -> K,
    cpu: impl Fn(&R) -> u32,
) -> BTreeMap<(K, Option<u32>), Vec<&R>> {
    let mut out: BTreeMap<(K, Option<u32>), Vec<&R>> = BTreeMap::new();
    for r in rows {
        out.entry((key(r), per_cpu.then(|| cpu(r))))
            .or_default()
            .push(r);
    }
    out
}

/// `pairs`, plus `cpu` when the series is split by CPU.
fn with_cpu(
    mut pairs: Vec<(&'static str, String)>,
    cpu: Option<u32>,
) -> Vec<(&'static str, String)> {
    if let Some(c) = cpu {
        pairs.push(("cpu", c.to_string()));
    }
    pairs
}

/// A per-CPU counter family: name, help, whether its probes measured it, its value.
type CpuCounter = (&'static str, &'static str, bool, fn(&CpuTotals) -> f64);

/// A per-CPU counter family of /proc/net/softnet_stat: name, help, its column.
type SoftnetCounter = (&'static str, &'static str, fn(&SoftnetRow) -> u64);

/// What the per-CPU counters show, summed over a profile's rows in one pass.
#[derive(Default)]
struct CpuTotals {
    hardirq_ns: u64,
    hardirqs: u64,
    softirq_ns: u64,
    softirqs: u64,
    net_rx_ns: u64,
    net_rx_runs: u64,
    net_rx_ksoftirqd_runs: u64,
    net_rx_packets: u64,
}

impl CpuTotals {
    fn of(p: &Profile) -> BTreeMap<u32, CpuTotals> {
        let mut out: BTreeMap<u32, CpuTotals> = BTreeMap::new();
        for r in &p.hardirqs {
            let t = out.entry(r.cpu).or_default();
            t.hardirq_ns += r.time_ns;
            t.hardirqs += r.count;
        }
        for r in &p.softirqs {
            let t = out.entry(r.cpu).or_default();
            t.softirq_ns += r.time_ns;
            t.softirqs += r.count;
            if r.vector == Vector::NetRx {
                t.net_rx_ns += r.time_ns;
                t.net_rx_runs += r.count;
                t.net_rx_ksoftirqd_runs += r.ksoftirqd_runs;
            }
        }
        for r in &p.netdevs {
            out.entry(r.cpu).or_default().net_rx_packets += r.packets;
        }
        out
    }
}

/// Writes every family of a profile (or of one `watch` interval's cumulative state).
///
/// Cardinality is bounded by default: histograms per softirq vector and per IRQ (no cpu
/// label), and per-CPU counters (handler time and runs, NET_RX packets, drops, squeezes):
/// series grow as O(CPUs + IRQs). `opts.per_cpu_histograms` adds the cpu label to the keyed
/// families; a query that sums over `cpu` reads both forms alike.
pub fn write_profile(w: &mut Writer, p: &Profile, opts: Options) {
    let per_cpu = opts.per_cpu_histograms;
    w.family(
        "irqtune_hardirq_handler_seconds",
        "histogram",
        "Hardirq handler time per IRQ (and CPU with --per-cpu-histograms).",
    );
    let by_irq = grouped(&p.hardirqs, per_cpu, |r| (r.irq, r.name.clone()), |r| r.cpu);
    for (((irq, name), cpu), rows) in &by_irq {
        let l = vec![
            ("irq", irq.map_or("unmapped".into(), |i| i.to_string())),
            ("name", name.clone()),
        ];
        w.histogram_of(
            "irqtune_hardirq_handler_seconds",
            &with_cpu(l, *cpu),
            rows.iter().map(|r| &r.handler),
        );
    }
    let by_vector = grouped(&p.softirqs, per_cpu, |r| r.vector, |r| r.cpu);
    let vector_labels =
        |v: Vector, cpu: Option<u32>| with_cpu(vec![("vector", v.name().to_string())], cpu);
    w.family(
        "irqtune_softirq_handler_seconds",
        "histogram",
        "Softirq handler time per vector (and CPU with --per-cpu-histograms).",
    );
    for ((v, cpu), rows) in &by_vector {
        w.histogram_of(
            "irqtune_softirq_handler_seconds",
            &vector_labels(*v, *cpu),
            rows.iter().map(|r| &r.handler),
        );
    }
    w.family(
        "irqtune_softirq_raise_delay_seconds",
        "histogram",
        "Time from softirq raise to handler entry per vector (and CPU with --per-cpu-histograms).",
    );
    for ((v, cpu), rows) in &by_vector {
        w.histogram_of(
            "irqtune_softirq_raise_delay_seconds",
            &vector_labels(*v, *cpu),
            rows.iter().map(|r| &r.raise_delay),
        );
    }
    w.family(
        "irqtune_softirq_ksoftirqd_runs_total",
        "counter",
        "Softirq runs in ksoftirqd per vector (and CPU with --per-cpu-histograms).",
    );
    for ((v, cpu), rows) in &by_vector {
        let n: u64 = rows.iter().map(|r| r.ksoftirqd_runs).sum();
        w.sample(
            "irqtune_softirq_ksoftirqd_runs_total",
            &vector_labels(*v, *cpu),
            n as f64,
        );
    }
    // Per CPU, always: what a dashboard needs to see one CPU drowning. Only what the probes
    // measured: a family that could not attach has no samples (irqtune_finding and
    // irqtune_probe_attached say why), never zeros that read as an idle CPU.
    let cpus = p.cpus();
    let totals = CpuTotals::of(p);
    let zero = CpuTotals::default();
    let (hard, soft, net) = (
        p.measured(Family::Hardirq),
        p.measured(Family::Softirq),
        p.measured(Family::NetRx),
    );
    let counters: [CpuCounter; 8] = [
        (
            "irqtune_cpu_hardirq_seconds_total",
            "Time in hardirq handlers per CPU; its rate() is the CPU's share of time in hardirqs.",
            hard,
            |t| t.hardirq_ns as f64 / 1e9,
        ),
        (
            "irqtune_cpu_hardirqs_total",
            "Hardirq handler runs per CPU.",
            hard,
            |t| t.hardirqs as f64,
        ),
        (
            "irqtune_cpu_softirq_seconds_total",
            "Time in softirq handlers (all vectors) per CPU; its rate() is the CPU's share of time in softirqs.",
            soft,
            |t| t.softirq_ns as f64 / 1e9,
        ),
        (
            "irqtune_cpu_softirqs_total",
            "Softirq handler runs (all vectors) per CPU.",
            soft,
            |t| t.softirqs as f64,
        ),
        (
            "irqtune_cpu_net_rx_seconds_total",
            "Time in the NET_RX softirq handler per CPU.",
            soft,
            |t| t.net_rx_ns as f64 / 1e9,
        ),
        (
            "irqtune_cpu_net_rx_runs_total",
            "NET_RX softirq handler runs per CPU.",
            soft,
            |t| t.net_rx_runs as f64,
        ),
        (
            "irqtune_cpu_net_rx_ksoftirqd_runs_total",
            "NET_RX softirq runs in ksoftirqd per CPU (the load outgrew interrupt exit).",
            soft,
            |t| t.net_rx_ksoftirqd_runs as f64,
        ),
        (
            "irqtune_net_rx_packets_total",
            "Packets received by NET_RX per CPU (all devices).",
            net,
            |t| t.net_rx_packets as f64,
        ),
    ];
    for (name, help, measured, value) in counters {
        w.family(name, "counter", help);
        if measured {
            for &cpu in &cpus {
                let t = totals.get(&cpu).unwrap_or(&zero);
                w.sample(name, &[("cpu", cpu.to_string())], value(t));
            }
        }
    }
    w.family(
        "irqtune_net_rx_device_packets_total",
        "counter",
        "Packets received by NET_RX per device (and CPU with --per-cpu-histograms).",
    );
    for ((device, cpu), rows) in &grouped(&p.netdevs, per_cpu, |r| r.device.clone(), |r| r.cpu) {
        let n: u64 = rows.iter().map(|r| r.packets).sum();
        w.sample(
            "irqtune_net_rx_device_packets_total",
            &with_cpu(vec![("device", device.clone())], *cpu),
            n as f64,
        );
    }
    let softnet: [SoftnetCounter; 2] = [
        (
            "irqtune_softnet_dropped_total",
            "Packets dropped with a full backlog (softnet_stat) per CPU.",
            |s| s.dropped,
        ),
        (
            "irqtune_softnet_time_squeeze_total",
            "NET_RX runs that ran out of budget with work left (softnet_stat) per CPU.",
            |s| s.time_squeeze,
        ),
    ];
    for (name, help, value) in softnet {
        w.family(name, "counter", help);
        for s in &p.proc.softnet {
            w.sample(name, &[("cpu", s.cpu.to_string())], value(s) as f64);
        }
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

pub fn render(p: &Profile, opts: Options) -> String {
    let mut w = Writer::new();
    w.family(
        "irqtune_profile_duration_seconds",
        "gauge",
        "Length of the recorded profile.",
    );
    w.sample("irqtune_profile_duration_seconds", &[], p.duration_secs());
    write_profile(&mut w, p, opts);
    w.out
}
