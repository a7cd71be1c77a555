//! Prometheus text exposition format (version 0.0.4), the same metric families `irqtune
//! watch` serves: histograms in seconds with fixed power-of-two bucket bounds, counters,
//! and one gauge per finding. Names follow the Prometheus naming conventions.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use irq_ebpf::{hist::BUCKETS, LossKind};

use super::metrics::{self as m, Kind, Metric};
use crate::model::{
    hist::{self, Hist},
    procfs::SoftnetRow,
    profile::{loss_kind, Family, Profile, Vector},
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

/// Writes families of the catalogue ([`metrics`]): `# HELP` and `# TYPE`, then samples.
pub struct Writer {
    pub out: String,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { out: String::new() }
    }

    pub fn family(&mut self, m: &Metric) {
        let _ = writeln!(self.out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(self.out, "# TYPE {} {}", m.name, m.kind.name());
    }

    pub fn sample(&mut self, m: &Metric, labels_: &[(&str, String)], value: f64) {
        debug_assert!(m.kind != Kind::Histogram, "{}: use histogram()", m.name);
        self.line(m.name, "", labels_, value);
    }

    fn line(&mut self, name: &str, suffix: &str, labels_: &[(&str, String)], value: f64) {
        let _ = writeln!(
            self.out,
            "{name}{suffix}{} {}",
            labels(labels_),
            fmt_value(value)
        );
    }

    /// One histogram series from a profile histogram.
    pub fn histogram(&mut self, m: &Metric, labels_: &[(&str, String)], h: &Hist) {
        self.buckets(m, labels_, &h.to_buckets(), h.sum_ns);
    }

    /// One histogram series: the sum of several profile histograms.
    pub fn histogram_of<'a>(
        &mut self,
        m: &Metric,
        labels_: &[(&str, String)],
        hists: impl IntoIterator<Item = &'a Hist>,
    ) {
        let (buckets, _max, sum_ns) = hist::merged(hists);
        self.buckets(m, labels_, &buckets, sum_ns);
    }

    /// One histogram series from the kernel's buckets.
    fn buckets(
        &mut self,
        m: &Metric,
        labels_: &[(&str, String)],
        buckets: &[u64; BUCKETS],
        sum_ns: u64,
    ) {
        debug_assert!(m.kind == Kind::Histogram, "{}: not a histogram", m.name);
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
            self.line(m.name, "_bucket", &l, cum as f64);
        }
        let total: u64 = buckets.iter().sum();
        let mut l = labels_.to_vec();
        l.push(("le", "+Inf".into()));
        self.line(m.name, "_bucket", &l, total as f64);
        self.line(m.name, "_sum", labels_, sum_ns as f64 / 1e9);
        self.line(m.name, "_count", labels_, total as f64);
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

/// A per-CPU counter family: whether its probes measured it, and its value.
type CpuCounter = (&'static Metric, bool, fn(&CpuTotals) -> f64);

/// A per-CPU counter family of /proc/net/softnet_stat and its column.
type SoftnetCounter = (&'static Metric, fn(&SoftnetRow) -> u64);

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
        for (cpu, t) in out.iter_mut() {
            t.net_rx_packets = p.net_rx_packets(*cpu);
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
    sampling(w, p);
    handlers(w, p, opts.per_cpu_histograms);
    per_cpu_counters(w, p);
    devices_and_softnet(w, p, opts.per_cpu_histograms);
    flows(w, p);
    losses(w, p);
    w.family(&m::FINDING);
    for f in &p.findings {
        let l = [
            ("id", f.id.name().to_string()),
            ("severity", f.severity.name().to_string()),
        ];
        w.sample(&m::FINDING, &l, 1.0);
    }
}

/// How much of the time the probes saw, and what their maps cost.
fn sampling(w: &mut Writer, p: &Profile) {
    w.family(&m::COVERAGE);
    w.sample(
        &m::COVERAGE,
        &[],
        p.session.sampling.as_ref().map_or(1.0, |s| s.coverage),
    );
    if let Some(bytes) = p.session.bpf_map_bytes {
        w.family(&m::MAP_MEMORY);
        w.sample(&m::MAP_MEMORY, &[], bytes as f64);
    }
}

/// The handler histograms: per IRQ, and per softirq vector (and CPU with `per_cpu`).
fn handlers(w: &mut Writer, p: &Profile, per_cpu: bool) {
    w.family(&m::HARDIRQ_HANDLER);
    for r in &p.irqs {
        let l = vec![
            ("irq", r.irq.map_or("unmapped".into(), |i| i.to_string())),
            ("name", r.name.clone()),
        ];
        w.histogram_of(&m::HARDIRQ_HANDLER, &l, [&r.handler]);
    }
    let by_vector = grouped(&p.softirqs, per_cpu, |r| r.vector, |r| r.cpu);
    let vector_labels =
        |v: Vector, cpu: Option<u32>| with_cpu(vec![("vector", v.name().to_string())], cpu);
    w.family(&m::SOFTIRQ_HANDLER);
    for ((v, cpu), rows) in &by_vector {
        w.histogram_of(
            &m::SOFTIRQ_HANDLER,
            &vector_labels(*v, *cpu),
            rows.iter().map(|r| &r.handler),
        );
    }
    w.family(&m::SOFTIRQ_RAISE_DELAY);
    for ((v, cpu), rows) in &by_vector {
        w.histogram_of(
            &m::SOFTIRQ_RAISE_DELAY,
            &vector_labels(*v, *cpu),
            rows.iter().map(|r| &r.raise_delay),
        );
    }
    w.family(&m::SOFTIRQ_KSOFTIRQD_RUNS);
    for ((v, cpu), rows) in &by_vector {
        let n: u64 = rows.iter().map(|r| r.ksoftirqd_runs).sum();
        w.sample(
            &m::SOFTIRQ_KSOFTIRQD_RUNS,
            &vector_labels(*v, *cpu),
            n as f64,
        );
    }
}

/// Per CPU, always: what a dashboard needs to see one CPU drowning. Only what the probes
/// measured: a family that could not attach has no samples (irqtune_finding and
/// irqtune_probe_attached say why), never zeros that read as an idle CPU.
fn per_cpu_counters(w: &mut Writer, p: &Profile) {
    let cpus = p.cpus();
    let totals = CpuTotals::of(p);
    let zero = CpuTotals::default();
    let (hard, soft, net) = (
        p.measured(Family::Hardirq),
        p.measured(Family::Softirq),
        p.measured(Family::NetRx),
    );
    let counters: [CpuCounter; 8] = [
        (&m::CPU_HARDIRQ_SECONDS, hard, |t| t.hardirq_ns as f64 / 1e9),
        (&m::CPU_HARDIRQS, hard, |t| t.hardirqs as f64),
        (&m::CPU_SOFTIRQ_SECONDS, soft, |t| t.softirq_ns as f64 / 1e9),
        (&m::CPU_SOFTIRQS, soft, |t| t.softirqs as f64),
        (&m::CPU_NET_RX_SECONDS, soft, |t| t.net_rx_ns as f64 / 1e9),
        (&m::CPU_NET_RX_RUNS, soft, |t| t.net_rx_runs as f64),
        (&m::CPU_NET_RX_KSOFTIRQD_RUNS, soft, |t| {
            t.net_rx_ksoftirqd_runs as f64
        }),
        (&m::NET_RX_PACKETS, net, |t| t.net_rx_packets as f64),
    ];
    for (metric, measured, value) in counters {
        w.family(metric);
        if measured {
            for &cpu in &cpus {
                let t = totals.get(&cpu).unwrap_or(&zero);
                w.sample(metric, &[("cpu", cpu.to_string())], value(t));
            }
        }
    }
}

/// Packets per device, and the backlog's drops and squeezes (softnet_stat) per CPU.
fn devices_and_softnet(w: &mut Writer, p: &Profile, per_cpu: bool) {
    w.family(&m::NET_RX_DEVICE_PACKETS);
    for ((device, cpu), rows) in &grouped(&p.netdevs, per_cpu, |r| r.device.clone(), |r| r.cpu) {
        let n: u64 = rows.iter().map(|r| r.packets).sum();
        w.sample(
            &m::NET_RX_DEVICE_PACKETS,
            &with_cpu(vec![("device", device.clone())], *cpu),
            n as f64,
        );
    }
    let softnet: [SoftnetCounter; 3] = [
        (&m::SOFTNET_DROPPED, |s| s.dropped),
        (&m::SOFTNET_TIME_SQUEEZE, |s| s.time_squeeze),
        (&m::SOFTNET_FLOW_LIMIT, |s| s.flow_limit_count),
    ];
    for (metric, value) in softnet {
        w.family(metric);
        for s in &p.proc.softnet {
            w.sample(metric, &[("cpu", s.cpu.to_string())], value(s) as f64);
        }
    }
    w.family(&m::NIC_RX_DROPS);
    for n in &p.proc.nics {
        for (kind, v) in [
            ("dropped", n.rx_dropped),
            ("missed", n.rx_missed_errors),
            ("fifo", n.rx_fifo_errors),
            ("over", n.rx_over_errors),
        ] {
            w.sample(
                &m::NIC_RX_DROPS,
                &[("device", n.device.clone()), ("kind", kind.to_string())],
                v as f64,
            );
        }
    }
    w.family(&m::NIC_SETTING);
    for nic in p.context.iter().flat_map(|c| &c.nics) {
        for (name, v) in nic_settings(nic) {
            w.sample(
                &m::NIC_SETTING,
                &[("device", nic.name.clone()), ("name", name)],
                f64::from(v),
            );
        }
    }
    w.family(&m::SOFTNET_SETTING);
    if let Some(s) = p.context.as_ref().map(|c| &c.softnet) {
        for (name, v) in [
            ("netdev_max_backlog", s.netdev_max_backlog),
            ("netdev_budget", s.netdev_budget),
            ("netdev_budget_usecs", s.netdev_budget_usecs),
            ("dev_weight", s.dev_weight),
        ] {
            if let Some(v) = v {
                w.sample(&m::SOFTNET_SETTING, &[("name", name.to_string())], v as f64);
            }
        }
    }
}

/// What one reading process (comm) did over its flows.
#[derive(Default)]
struct Owner {
    reads: u64,
    mismatched: u64,
    bytes: u64,
    waits: u64,
    wait_ns: u64,
}

/// The owners (comm) with the most reads, at most [`TOP_FLOW_OWNERS`]: bounded cardinality.
fn top_owners(p: &Profile) -> Vec<(&str, Owner)> {
    let mut owners: BTreeMap<&str, Owner> = BTreeMap::new();
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
    owners
}

/// The workload's throughput and its delivery-to-read latency, in all and per owner.
fn flows(w: &mut Writer, p: &Profile) {
    w.family(&m::FLOW_READ_BYTES);
    w.sample(&m::FLOW_READ_BYTES, &[], p.flow_totals.read_bytes as f64);
    w.family(&m::DELIVERY_TO_READ);
    let d = &p.flow_totals.delivery_to_read;
    for (placement, h) in [("same_cpu", &d.same_cpu), ("cross_cpu", &d.cross_cpu)] {
        w.histogram(
            &m::DELIVERY_TO_READ,
            &[("placement", placement.to_string())],
            h,
        );
    }
    let owners = top_owners(p);
    let comm = |c: &str| [("comm", c.to_string())];
    w.family(&m::FLOW_MISMATCH_RATIO);
    for (c, o) in &owners {
        w.sample(
            &m::FLOW_MISMATCH_RATIO,
            &comm(c),
            o.mismatched as f64 / o.reads as f64,
        );
    }
    w.family(&m::FLOW_READ_BYTES_PER_SECOND);
    for (c, o) in &owners {
        let rate = o.bytes as f64 / p.duration_secs().max(1e-9);
        w.sample(&m::FLOW_READ_BYTES_PER_SECOND, &comm(c), rate);
    }
    w.family(&m::FLOW_DELIVERY_TO_READ_MEAN);
    for (c, o) in owners.iter().filter(|(_, o)| o.waits > 0) {
        let mean = o.wait_ns as f64 / o.waits as f64 / 1e9;
        w.sample(&m::FLOW_DELIVERY_TO_READ_MEAN, &comm(c), mean);
    }
}

/// The probes' counters by what they mean: losses, unmatched exits, created entries.
fn losses(w: &mut Writer, p: &Profile) {
    for (metric, kind) in [
        (&m::PROBE_LOSSES, LossKind::Lost),
        (&m::PROBE_UNMATCHED_EXITS, LossKind::Unmatched),
        (&m::PROBE_MAP_ENTRIES_CREATED, LossKind::Created),
    ] {
        w.family(metric);
        for (k, v) in p.losses.iter().filter(|(k, _)| loss_kind(k) == kind) {
            w.sample(metric, &[("kind", k.clone())], *v as f64);
        }
    }
}

pub fn render(p: &Profile, opts: Options) -> String {
    let mut w = Writer::new();
    w.family(&m::PROFILE_DURATION);
    w.sample(&m::PROFILE_DURATION, &[], p.duration_secs());
    write_profile(&mut w, p, opts);
    w.out
}

/// A NIC's ethtool settings as numbered series ("channels_combined", "ring_rx_max",
/// "rx_usecs").
fn nic_settings(nic: &crate::model::machine::Nic) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for v in nic.layer.iter().flat_map(|l| l.values()) {
        let name = match v.group {
            Some(g) => format!("{g}_{}", v.name),
            None => v.name.replace('-', "_"),
        };
        let max = v.max.map(|max| (format!("{name}_max"), max));
        out.push((name, v.current));
        out.extend(max);
    }
    out
}
