//! `irqtune watch`: the probes stay loaded; once per interval user space reads the maps and
//! /proc, and publishes the totals since the start as Prometheus metrics (and, optionally, one
//! JSON line per interval). Everything is aggregated in the kernel; between intervals user
//! space sleeps. A scrape reads the last published text and never waits for the maps.

pub mod http;
pub mod jsonl;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::profile::{Attach, Vector};
use crate::{
    analysis::findings::Finding,
    model::hist::Summary,
    model::procfs::SoftnetRow,
    model::profile::{FlowTotals, ProbeRow, Profile},
    model::snapshot::unix_ms,
    render::prometheus,
    system::session::{Mark, Recorder},
};

/// One interval, as a JSON line: summaries, not buckets.
#[derive(Serialize)]
pub struct IntervalRecord {
    pub unix_ms: u64,
    pub interval_s: f64,
    pub softirqs: Vec<SoftirqSummary>,
    pub hardirqs: Vec<HardirqSummary>,
    pub net_rx_packets_by_cpu: BTreeMap<u32, u64>,
    pub softnet: Vec<SoftnetRow>,
    pub flows: Vec<FlowSummary>,
    pub findings: Vec<Finding>,
    pub losses: BTreeMap<String, u64>,
}

#[derive(Serialize)]
pub struct SoftirqSummary {
    pub vector: Vector,
    pub cpu: u32,
    pub count: u64,
    pub time_ns: u64,
    pub ksoftirqd_runs: u64,
    pub handler: Summary,
    pub raise_delay: Summary,
}

#[derive(Serialize)]
pub struct HardirqSummary {
    pub irq: Option<u32>,
    pub name: String,
    pub cpu: u32,
    pub count: u64,
    pub time_ns: u64,
    pub handler: Summary,
}

#[derive(Serialize)]
pub struct FlowSummary {
    pub flow: String,
    pub reads: u64,
    pub mismatch_ratio: f64,
    pub read_bytes: u64,
    /// Delivery-to-read latency, same-CPU and cross-CPU reads together.
    pub delivery_to_read: Summary,
}

/// Flows per interval in the JSON line (the most mismatched).
const JSONL_FLOWS: usize = 10;

pub struct Watcher {
    recorder: Recorder,
    start_unix_ms: u64,
    base: Mark,
    prev: Mark,
    /// All flows' reads since the start, summed interval by interval: a flow evicted from
    /// the kernel's LRU map would otherwise take its counts out of a since-start delta, and
    /// counters must never go down.
    flow_totals: FlowTotals,
    opts: prometheus::Options,
}

impl Watcher {
    pub fn new(recorder: Recorder, opts: prometheus::Options) -> anyhow::Result<Watcher> {
        let base = recorder.mark()?;
        let prev = recorder.mark()?;
        Ok(Watcher {
            recorder,
            start_unix_ms: unix_ms(),
            base,
            prev,
            flow_totals: FlowTotals::default(),
            opts,
        })
    }

    /// Reads the maps and /proc once: the metrics text (totals since start; flows and
    /// findings of the last interval) and the interval's record.
    pub fn tick(&mut self) -> anyhow::Result<(String, IntervalRecord)> {
        self.recorder.probes.flush_log();
        let now = self.recorder.mark()?;
        let interval = self
            .recorder
            .profile(&self.prev, &now, false, Some(now.machine()));
        let mut total = self.recorder.profile(&self.base, &now, false, None);
        self.flow_totals.add(&interval.flow_totals);
        total.flow_totals = self.flow_totals.clone();
        total.flows = interval.flows.clone();
        total.findings = interval.findings.clone();
        let text = metrics_text(
            &total,
            self.recorder.probe_rows(),
            self.start_unix_ms,
            unix_ms(),
            self.opts,
        );
        let record = record(&interval, now.unix_ms);
        self.prev = now;
        Ok((text, record))
    }
}

/// The /metrics text: totals since the start in `total` (its flows and findings being the
/// last interval's), the probes' state, and when it was read.
pub fn metrics_text(
    total: &Profile,
    probes: &[ProbeRow],
    start_unix_ms: u64,
    now_unix_ms: u64,
    opts: prometheus::Options,
) -> String {
    let mut w = prometheus::Writer::new();
    w.family(
        "irqtune_watch_start_time_seconds",
        "gauge",
        "When this irqtune watch started (Unix time).",
    );
    w.sample(
        "irqtune_watch_start_time_seconds",
        &[],
        start_unix_ms as f64 / 1e3,
    );
    w.family(
        "irqtune_watch_last_update_time_seconds",
        "gauge",
        "When the metrics were last read from the probes (Unix time).",
    );
    w.sample(
        "irqtune_watch_last_update_time_seconds",
        &[],
        now_unix_ms as f64 / 1e3,
    );
    w.family(
        "irqtune_probe_attached",
        "gauge",
        "1 if the tracepoint's probe is attached, 0 if it was disabled (see the log for why).",
    );
    for r in probes {
        let l = [
            ("tracepoint", r.tracepoint.clone()),
            ("attach", r.attach.name().to_string()),
        ];
        w.sample(
            "irqtune_probe_attached",
            &l,
            if r.attach == Attach::Disabled {
                0.0
            } else {
                1.0
            },
        );
    }
    prometheus::write_profile(&mut w, total, opts);
    w.out
}

/// The JSON line of an interval that ended at `unix_ms`.
fn record(p: &Profile, unix_ms: u64) -> IntervalRecord {
    let mut net_rx_packets_by_cpu = BTreeMap::new();
    for r in &p.netdevs {
        *net_rx_packets_by_cpu.entry(r.cpu).or_default() += r.packets;
    }
    let mut flows: Vec<FlowSummary> = p
        .flows
        .iter()
        .filter(|f| f.reads() > 0)
        .map(|f| FlowSummary {
            flow: f.label(),
            reads: f.reads(),
            mismatch_ratio: f.mismatch_ratio,
            read_bytes: f.read_bytes,
            delivery_to_read: f.delivery_to_read.all().summary,
        })
        .collect();
    flows.sort_by(|a, b| {
        b.mismatch_ratio
            .total_cmp(&a.mismatch_ratio)
            .then(b.reads.cmp(&a.reads))
    });
    flows.truncate(JSONL_FLOWS);
    IntervalRecord {
        unix_ms,
        interval_s: p.duration_secs(),
        softirqs: p
            .softirqs
            .iter()
            .filter(|r| r.count > 0)
            .map(|r| SoftirqSummary {
                vector: r.vector,
                cpu: r.cpu,
                count: r.count,
                time_ns: r.time_ns,
                ksoftirqd_runs: r.ksoftirqd_runs,
                handler: r.handler.summary,
                raise_delay: r.raise_delay.summary,
            })
            .collect(),
        hardirqs: p
            .hardirqs
            .iter()
            .map(|r| HardirqSummary {
                irq: r.irq,
                name: r.name.clone(),
                cpu: r.cpu,
                count: r.count,
                time_ns: r.time_ns,
                handler: r.handler.summary,
            })
            .collect(),
        net_rx_packets_by_cpu,
        softnet: p.proc.softnet.clone(),
        flows,
        findings: p.findings.clone(),
        losses: p.losses.clone(),
    }
}

/// Prometheus text (0.0.4) to OpenMetrics text (1.0): counter families lose their `_total`
/// in the metadata, and the exposition ends with `# EOF`.
pub fn to_openmetrics(text: &str) -> String {
    let mut counters = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        let meta = line
            .strip_prefix("# TYPE ")
            .map(|r| ("# TYPE ", r))
            .or_else(|| line.strip_prefix("# HELP ").map(|r| ("# HELP ", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    name.trim_end_matches("_total")
                } else {
                    name
                };
                out.push_str(kind);
                out.push_str(name);
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}
