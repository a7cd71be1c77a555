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
    model::machine::MachineCache,
    model::procfs::SoftnetRow,
    model::profile::{ProbeRow, Profile},
    model::snapshot::unix_ms,
    render::{metrics, prometheus},
    system::session::{Mark, Recorder, Waited},
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
    pub count: u64,
    pub time_ns: u64,
    /// Handler time, all CPUs.
    pub handler: Summary,
    /// Runs per CPU.
    pub per_cpu: BTreeMap<u32, u64>,
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
    prev: Mark,
    /// Everything since the start, summed interval by interval (see `model::running`):
    /// counters never go down.
    total: Option<Profile>,
    opts: prometheus::Options,
    /// The machine's rarely changing parts, kept between intervals.
    machine: MachineCache,
}

impl Watcher {
    pub fn new(recorder: Recorder, opts: prometheus::Options) -> anyhow::Result<Watcher> {
        let prev = recorder.mark()?;
        Ok(Watcher {
            recorder,
            start_unix_ms: unix_ms(),
            prev,
            total: None,
            opts,
            machine: MachineCache::default(),
        })
    }

    /// Waits an interval (cycling the probes if they have a duty cycle) or until stopped.
    pub async fn wait(
        &mut self,
        interval: std::time::Duration,
        stop: &crate::system::stop::Stop,
    ) -> Waited {
        self.recorder.wait(interval, stop, false).await
    }

    /// Reads the maps and /proc once: the metrics text (totals since start; flows and
    /// findings of the last interval) and the interval's record.
    pub fn tick(&mut self) -> anyhow::Result<(String, IntervalRecord)> {
        let now = self.recorder.mark()?;
        let interval = self.recorder.profile(
            &self.prev,
            &now,
            false,
            Some(now.machine_cached(&mut self.machine)),
        );
        let total = match self.total.as_mut() {
            Some(t) => {
                t.add_window(&interval);
                t
            }
            None => self.total.insert(Profile {
                context: None,
                ..interval.clone()
            }),
        };
        total.flows.clone_from(&interval.flows);
        total.findings.clone_from(&interval.findings);
        // The settings now (softnet, NICs), for the metrics that show them.
        total.context.clone_from(&interval.context);
        let text = metrics_text(
            total,
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
    w.family(&metrics::WATCH_START);
    w.sample(&metrics::WATCH_START, &[], start_unix_ms as f64 / 1e3);
    w.family(&metrics::WATCH_LAST_UPDATE);
    w.sample(&metrics::WATCH_LAST_UPDATE, &[], now_unix_ms as f64 / 1e3);
    w.family(&metrics::PROBE_ATTACHED);
    for r in probes {
        let l = [
            ("tracepoint", r.tracepoint.clone()),
            ("attach", r.attach.name().to_string()),
        ];
        let attached = !matches!(r.attach, Attach::Disabled | Attach::Off);
        w.sample(&metrics::PROBE_ATTACHED, &l, f64::from(u8::from(attached)));
    }
    prometheus::write_profile(&mut w, total, opts);
    w.out
}

/// The JSON line of an interval that ended at `unix_ms`.
fn record(p: &Profile, unix_ms: u64) -> IntervalRecord {
    let net_rx_packets_by_cpu: BTreeMap<u32, u64> = p
        .cpus()
        .into_iter()
        .map(|c| (c, p.net_rx_packets(c)))
        .collect();
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
            .irqs
            .iter()
            .map(|r| HardirqSummary {
                irq: r.irq,
                name: r.name.clone(),
                count: r.count,
                time_ns: r.time_ns,
                handler: r.handler.summary,
                per_cpu: p
                    .hardirqs
                    .iter()
                    .filter(|h| h.irq == r.irq && h.name == r.name)
                    .map(|h| (h.cpu, h.count))
                    .collect(),
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
