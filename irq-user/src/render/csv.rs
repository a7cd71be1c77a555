//! CSV: one row per kind, key and CPU, with percentiles (ns). Kinds: hardirq (per IRQ, all
//! CPUs, cpu empty), hardirq_cpu (count and time per IRQ and CPU; extra: max_ns),
//! softirq_handler, softirq_raise_delay, netdev (count: packets polled; extra: per-packet
//! bytes), flow (cpu empty), flow_delivery_to_read (name: same_cpu or cross_cpu; cpu empty),
//! proc_softnet, nic (key: the device; count: rx packets; extra: its receive drops), setting
//! (key: softnet or the NIC; extra: the value).

use crate::model::{hist::Hist, profile::Profile};

const HEADER: [&str; 13] = [
    "kind",
    "key",
    "name",
    "cpu",
    "count",
    "sum_ns",
    "p50_ns",
    "p90_ns",
    "p99_ns",
    "p999_ns",
    "max_ns",
    "extra_name",
    "extra",
];

fn hist_row(
    kind: &str,
    key: &str,
    name: &str,
    cpu: Option<u32>,
    count: u64,
    h: &Hist,
) -> Vec<String> {
    let s = &h.summary;
    vec![
        kind.into(),
        key.into(),
        name.into(),
        cpu.map(|c| c.to_string()).unwrap_or_default(),
        count.to_string(),
        h.sum_ns.to_string(),
        s.p50_ns.to_string(),
        s.p90_ns.to_string(),
        s.p99_ns.to_string(),
        s.p999_ns.to_string(),
        s.max_ns.to_string(),
        String::new(),
        String::new(),
    ]
}

fn plain_row(
    kind: &str,
    key: &str,
    name: &str,
    cpu: Option<u32>,
    count: u64,
    extra: (&str, String),
) -> Vec<String> {
    let mut r = vec![
        kind.into(),
        key.into(),
        name.into(),
        cpu.map(|c| c.to_string()).unwrap_or_default(),
        count.to_string(),
    ];
    r.extend(std::iter::repeat_n(String::new(), 6));
    r.push(extra.0.into());
    r.push(extra.1);
    r
}

pub fn render(p: &Profile) -> Vec<u8> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &p.irqs {
        let key = r.irq.map_or("-".into(), |i| i.to_string());
        rows.push(hist_row(
            "hardirq", &key, &r.name, None, r.count, &r.handler,
        ));
    }
    for r in &p.hardirqs {
        let key = r.irq.map_or("-".into(), |i| i.to_string());
        let mut row = plain_row(
            "hardirq_cpu",
            &key,
            &r.name,
            Some(r.cpu),
            r.count,
            ("max_ns", r.max_ns.to_string()),
        );
        row[5] = r.time_ns.to_string();
        rows.push(row);
    }
    for r in &p.softirqs {
        rows.push(hist_row(
            "softirq_handler",
            r.vector.name(),
            r.vector.name(),
            Some(r.cpu),
            r.count,
            &r.handler,
        ));
        rows.push(hist_row(
            "softirq_raise_delay",
            r.vector.name(),
            r.vector.name(),
            Some(r.cpu),
            r.raise_delay.count(),
            &r.raise_delay,
        ));
    }
    for r in &p.netdevs {
        rows.push(plain_row(
            "netdev",
            &r.ifindex.to_string(),
            &r.device,
            Some(r.cpu),
            r.work,
            ("bytes", r.bytes.to_string()),
        ));
    }
    for f in &p.flows {
        let key = format!("{} {} {}", f.protocol, f.local, f.remote);
        rows.push(plain_row(
            "flow",
            &key,
            &format!("{} {}", f.comm, f.pid),
            None,
            f.reads(),
            ("mismatch_ratio", format!("{:.4}", f.mismatch_ratio)),
        ));
        if let Some(id) = f.napi_id {
            rows.push(plain_row(
                "flow_napi",
                &key,
                &id.to_string(),
                None,
                f.reads(),
                ("napi_id", id.to_string()),
            ));
        }
        let d = &f.delivery_to_read;
        for (placement, h) in [("same_cpu", &d.same_cpu), ("cross_cpu", &d.cross_cpu)] {
            if h.count() > 0 {
                rows.push(hist_row(
                    "flow_delivery_to_read",
                    &key,
                    placement,
                    None,
                    h.count(),
                    h,
                ));
            }
        }
    }
    rows.extend(softnet_and_settings(p));
    w.write_record(HEADER).expect("write to memory");
    for r in rows {
        w.write_record(&r).expect("write to memory");
    }
    w.into_inner().expect("flush to memory")
}

/// The softnet counters per CPU, and the settings at the end of the session.
fn softnet_and_settings(p: &Profile) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for s in &p.proc.softnet {
        rows.push(plain_row(
            "proc_softnet",
            "softnet_stat",
            "processed",
            Some(s.cpu),
            s.processed,
            (
                "dropped/time_squeeze",
                format!("{}/{}", s.dropped, s.time_squeeze),
            ),
        ));
    }
    for n in &p.proc.nics {
        rows.push(plain_row(
            "nic",
            &n.device,
            "rx_packets",
            None,
            n.rx_packets,
            (
                "dropped/missed/fifo/over",
                format!(
                    "{}/{}/{}/{}",
                    n.rx_dropped, n.rx_missed_errors, n.rx_fifo_errors, n.rx_over_errors
                ),
            ),
        ));
    }
    if let Some(m) = &p.context {
        for r in super::settings::of(m) {
            rows.push(plain_row(
                "setting",
                &r.scope,
                &r.name,
                None,
                0,
                ("value", r.value),
            ));
        }
    }
    rows
}
