//! HdrHistogram interval log (the hdrhistogram crate's V2 + deflate format), one histogram
//! per series, tagged `hardirq.IRQ` (all CPUs), `softirq.VECTOR.handler.cpuN`,
//! `softirq.VECTOR.raise_delay.cpuN`, `delivery_to_read.same_cpu|cross_cpu` (all flows).
//! Values in ns; readers such as HistogramLogAnalyzer
//! or `hdrhistogram::serialization::interval_log::IntervalLogIterator` read it.

use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::{interval_log, V2DeflateSerializer};

use crate::model::hist::to_hdr;
use crate::model::{hist::Hist, profile::Profile};

/// Series tags: no whitespace, commas or colons (the log's field separators).
fn tag(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn render(p: &Profile) -> Vec<u8> {
    let start = UNIX_EPOCH + Duration::from_millis(p.session.start_unix_ms);
    let duration = Duration::from_nanos(p.session.duration_ns);
    let mut series: Vec<(String, &Hist)> = Vec::new();
    for r in &p.irqs {
        let irq = r.irq.map_or("unmapped".to_string(), |i| i.to_string());
        series.push((tag(&format!("hardirq.{irq}")), &r.handler));
    }
    for r in &p.softirqs {
        series.push((
            tag(&format!("softirq.{}.handler.cpu{}", r.vector, r.cpu)),
            &r.handler,
        ));
        series.push((
            tag(&format!("softirq.{}.raise_delay.cpu{}", r.vector, r.cpu)),
            &r.raise_delay,
        ));
    }
    let d = &p.flow_totals.delivery_to_read;
    for (placement, h) in [("same_cpu", &d.same_cpu), ("cross_cpu", &d.cross_cpu)] {
        if h.count() > 0 {
            series.push((format!("delivery_to_read.{placement}"), h));
        }
    }
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut builder = interval_log::IntervalLogWriterBuilder::new();
        builder
            .add_comment(&format!(
                "irqtune profile of {} (kernel {}), values in ns",
                p.host.hostname, p.host.kernel
            ))
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1.0);
        let mut log = builder
            .begin_log_with(&mut out, &mut serializer)
            .expect("write to memory");
        for (name, h) in series {
            let hdr = to_hdr(&h.to_buckets());
            let t = interval_log::Tag::new(&name).expect("sanitised tag");
            log.write_histogram(&hdr, Duration::ZERO, duration, Some(t))
                .expect("write to memory");
        }
    }
    out
}
