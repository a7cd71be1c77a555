//! One self-contained HTML page (no scripts, no network): findings, per-CPU stacked time,
//! latency distributions per softirq vector, the flow placement matrix, and tables. Charts
//! are inline SVG.

use std::{collections::BTreeMap, fmt::Write as _};

use irq_ebpf::hist;

use crate::model::hist::merged;
use crate::model::profile::Profile;
use crate::model::profile::{Source, Vector};
use crate::model::units::{fmt_ns, pct};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 11] = [
    "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79",
];

/// Per CPU: hardirq and each softirq vector's share of wall time, stacked.
fn cpu_chart(p: &Profile, o: &mut String) {
    let dur = p.session.duration_ns.max(1);
    let cpus = p.cpus();
    let mut series: Vec<(String, &str, BTreeMap<u32, u64>)> = Vec::new();
    let mut hard = BTreeMap::new();
    for r in &p.hardirqs {
        *hard.entry(r.cpu).or_insert(0) += r.time_ns;
    }
    series.push(("hardirq".into(), COLORS[10], hard));
    for (i, v) in Vector::ALL.iter().enumerate() {
        let mut m = BTreeMap::new();
        for r in p.softirqs.iter().filter(|r| r.vector == *v) {
            *m.entry(r.cpu).or_insert(0) += r.time_ns;
        }
        if m.values().any(|&t| t > 0) {
            series.push((v.to_string(), COLORS[i], m));
        }
    }
    let max_total = cpus
        .iter()
        .map(|c| {
            series
                .iter()
                .map(|(_, _, m)| m.get(c).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let row_h = 22;
    let (left, width) = (60, 640);
    let height = cpus.len() * row_h + 50;
    let _ = writeln!(
        o,
        r#"<svg class="chart" width="{}" height="{height}" role="img" aria-label="per-CPU interrupt and softirq time">"#,
        left + width + 180
    );
    for (row, cpu) in cpus.iter().enumerate() {
        let y = 10 + row * row_h;
        let _ = writeln!(
            o,
            r#"<text x="4" y="{}" class="lbl">CPU {cpu}</text>"#,
            y + 15
        );
        let mut x = left as f64;
        for (name, color, m) in &series {
            let t = m.get(cpu).copied().unwrap_or(0);
            if t == 0 {
                continue;
            }
            let w = t as f64 / max_total as f64 * width as f64;
            let _ = writeln!(
                o,
                r#"<rect x="{x:.1}" y="{y}" width="{:.1}" height="{}" fill="{color}"><title>CPU {cpu} {name}: {:.2}% ({})</title></rect>"#,
                w.max(0.5),
                row_h - 4,
                pct(t, dur),
                fmt_ns(t)
            );
            x += w;
        }
        let total: u64 = series
            .iter()
            .map(|(_, _, m)| m.get(cpu).copied().unwrap_or(0))
            .sum();
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{}" class="lbl">{:.2}%</text>"#,
            x + 6.0,
            y + 15,
            pct(total, dur)
        );
    }
    let ly = 20 + cpus.len() * row_h;
    for (i, (name, color, _)) in series.iter().enumerate() {
        let x = left + (i % 6) * 110;
        let y = ly + (i / 6) * 16;
        let _ = writeln!(
            o,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/><text x="{}" y="{}" class="lbl">{}</text>"#,
            x + 14,
            y + 10,
            esc(name)
        );
    }
    let _ = writeln!(o, "</svg>");
}

/// A bar chart of one histogram's buckets.
fn dist_chart(title: &str, b: &[u64; hist::BUCKETS], o: &mut String) {
    let Some(first) = b.iter().position(|&n| n > 0) else {
        return;
    };
    let last = b.iter().rposition(|&n| n > 0).unwrap_or(first);
    let max = *b.iter().max().unwrap_or(&1) as f64;
    let n = last - first + 1;
    let bw = (560 / n).clamp(4, 24);
    let (h, base) = (120, 140);
    let _ = writeln!(o, "<h3>{}</h3>", esc(title));
    let _ = writeln!(
        o,
        r#"<svg class="chart" width="{}" height="{}" role="img" aria-label="{}">"#,
        n * bw + 80,
        base + 30,
        esc(title)
    );
    for (k, i) in (first..=last).enumerate() {
        let v = b[i] as f64;
        let bh = (v / max * h as f64).max(if v > 0.0 { 1.0 } else { 0.0 });
        let (lo, hi) = hist::bucket_range(i);
        let x = 40 + k * bw;
        let _ = writeln!(
            o,
            r##"<rect x="{x}" y="{:.1}" width="{}" height="{bh:.1}" fill="#1f77b4"><title>{} .. {}: {}</title></rect>"##,
            base as f64 - bh,
            bw.saturating_sub(1).max(1),
            fmt_ns(lo),
            fmt_ns(hi),
            b[i]
        );
        if k % 4 == 0 {
            let _ = writeln!(
                o,
                r#"<text x="{x}" y="{}" class="tick">{}</text>"#,
                base + 14,
                fmt_ns(lo)
            );
        }
    }
    let _ = writeln!(
        o,
        r##"<line x1="38" y1="{base}" x2="{}" y2="{base}" stroke="#444"/></svg>"##,
        40 + n * bw
    );
}

/// Softirq CPU x reader CPU, estimated per flow from its deliveries and reads per CPU.
fn flow_matrix(p: &Profile, o: &mut String) {
    let mut cells: BTreeMap<(u32, u32), f64> = BTreeMap::new();
    for f in &p.flows {
        let d_total = f.deliveries() as f64;
        if d_total == 0.0 {
            continue;
        }
        for (&dc, &dn) in &f.deliveries_by_cpu {
            for (&rc, &rn) in &f.reads_by_cpu {
                *cells.entry((dc, rc)).or_default() += rn as f64 * dn as f64 / d_total;
            }
        }
    }
    if cells.is_empty() {
        let _ = writeln!(o, "<p>No flow deliveries and reads were seen.</p>");
        return;
    }
    // Only CPUs that delivered or read: a 64-CPU matrix of empty cells says nothing.
    let mut cpus: Vec<u32> = cells.keys().flat_map(|(d, r)| [*d, *r]).collect();
    cpus.sort_unstable();
    cpus.dedup();
    let max = cells.values().copied().fold(0.0, f64::max).max(1.0);
    let c = 36;
    let size = cpus.len() * c + 90;
    let _ = writeln!(
        o,
        r#"<svg class="chart" width="{size}" height="{size}" role="img" aria-label="flow placement matrix">"#
    );
    let _ = writeln!(
        o,
        r#"<text x="80" y="14" class="lbl">reader (application) CPU &#8594;</text>"#
    );
    for (j, cpu) in cpus.iter().enumerate() {
        let _ = writeln!(
            o,
            r#"<text x="{}" y="34" class="lbl">{cpu}</text>"#,
            80 + j * c + 10
        );
    }
    for (i, dc) in cpus.iter().enumerate() {
        let y = 40 + i * c;
        let _ = writeln!(
            o,
            r#"<text x="4" y="{}" class="lbl">softirq {dc}</text>"#,
            y + 22
        );
        for (j, rc) in cpus.iter().enumerate() {
            let v = cells.get(&(*dc, *rc)).copied().unwrap_or(0.0);
            let a = v / max;
            let color = if dc == rc { "44,160,44" } else { "214,39,40" };
            let _ = writeln!(
                o,
                r##"<rect x="{}" y="{y}" width="{}" height="{}" fill="rgba({color},{:.3})" stroke="#ccc"><title>softirq CPU {dc}, read on CPU {rc}: {:.0} reads</title></rect>"##,
                80 + j * c,
                c - 2,
                c - 2,
                0.08 + 0.92 * a,
                v
            );
        }
    }
    let _ = writeln!(o, "</svg>");
    let _ = writeln!(
        o,
        "<p class=\"note\">Green: read on the CPU that ran the softirq. Red: read elsewhere (a cache miss and an IPI per wakeup). Estimated per flow from its deliveries and reads per CPU.</p>"
    );
}

/// The page's head, style and title line.
fn head(p: &Profile, o: &mut String) {
    let title = format!("irqtune profile of {}", p.host.hostname);
    let _ = writeln!(
        o,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }}
th {{ background: #f0f0f0; }} td.l {{ text-align: left; }}
.finding {{ border-left: 6px solid #ff7f0e; padding: 6px 12px; margin: 8px 0; background: #fff7ee; }}
.critical {{ border-color: #d62728; background: #fdeeee; }} .info {{ border-color: #1f77b4; background: #eef5fd; }}
.lbl {{ font-size: 12px; }} .tick {{ font-size: 10px; }} .note {{ font-size: 12px; color: #555; }}
</style></head><body>"#,
        esc(&title)
    );
    let _ = writeln!(
        o,
        "<h1>{}</h1><p>{:.1} s, {} CPUs, kernel {}{}</p>",
        esc(&title),
        p.duration_secs(),
        p.cpus().len(),
        esc(&p.host.kernel),
        if p.session.source == Source::Proc {
            ", counts since boot from /proc"
        } else {
            ""
        }
    );
}

/// The findings, most severe first as the analysis ordered them.
fn findings_section(p: &Profile, o: &mut String) {
    let _ = writeln!(o, "<h2>Findings</h2>");
    if p.findings.is_empty() {
        let _ = writeln!(o, "<p>No interrupt or softirq problem stands out.</p>");
    }
    for f in &p.findings {
        let sev = f.severity.name();
        let _ = writeln!(
            o,
            "<div class=\"finding {sev}\"><b>[{sev}] {}</b><br>Evidence: {}<br>Fix: {}</div>",
            esc(&f.title),
            esc(&f.evidence),
            esc(&f.fix)
        );
    }
}

/// Softirq distributions per vector and percentiles per vector and CPU.
fn softirq_section(p: &Profile, o: &mut String) {
    let _ = writeln!(o, "<h2>Latency distributions per vector (all CPUs)</h2>");
    for v in Vector::ALL {
        let rows: Vec<_> = p.softirqs.iter().filter(|r| r.vector == v).collect();
        let (h, _, _) = merged(rows.iter().map(|r| &r.handler));
        dist_chart(&format!("{v} handler time"), &h, o);
        let (d, _, _) = merged(rows.iter().map(|r| &r.raise_delay));
        dist_chart(&format!("{v} raise-to-entry delay"), &d, o);
    }
    let _ = writeln!(o, "<h2>Softirq percentiles per vector and CPU</h2><table><tr><th>vector</th><th>CPU</th><th>runs</th><th>p50</th><th>p99</th><th>p99.9</th><th>max</th><th>delay p50</th><th>delay p99</th><th>ksoftirqd</th></tr>");
    for r in p.softirqs.iter().filter(|r| r.count > 0) {
        let (h, d) = (&r.handler.summary, &r.raise_delay.summary);
        let _ = writeln!(
            o,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
            r.vector, r.cpu, r.count, fmt_ns(h.p50_ns), fmt_ns(h.p99_ns), fmt_ns(h.p999_ns), fmt_ns(h.max_ns), fmt_ns(d.p50_ns), fmt_ns(d.p99_ns), pct(r.ksoftirqd_runs, r.count)
        );
    }
    let _ = writeln!(o, "</table>");
}

/// Flow placement: the matrix, the flows, and what a mismatch costs.
fn flow_section(p: &Profile, o: &mut String) {
    let _ = writeln!(o, "<h2>Flow placement: softirq CPU x reader CPU</h2>");
    flow_matrix(p, o);
    let _ = writeln!(o, "<table><tr><th>proto</th><th>local</th><th>remote</th><th>pid</th><th>comm</th><th>reads</th><th>mismatch</th><th>MB/s</th><th>same-CPU p50</th><th>same-CPU p99</th><th>cross-CPU p50</th><th>cross-CPU p99</th><th>NAPI</th></tr>");
    let secs = p.duration_secs().max(1e-9);
    for f in p.flows.iter().filter(|f| f.reads() > 0).take(20) {
        let (same, cross) = (
            &f.delivery_to_read.same_cpu.summary,
            &f.delivery_to_read.cross_cpu.summary,
        );
        let _ = writeln!(
            o,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{:.1}%</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.protocol, esc(&f.local), esc(&f.remote), f.pid, esc(&f.comm), f.reads(), f.mismatch_ratio * 100.0,
            f.read_bytes as f64 / secs / 1e6, fmt_ns(same.p50_ns), fmt_ns(same.p99_ns), fmt_ns(cross.p50_ns), fmt_ns(cross.p99_ns),
            f.napi_id.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(o, "</table>");
    let d = &p.flow_totals.delivery_to_read;
    if d.count() > 0 {
        let _ = writeln!(
            o,
            "<h2>Delivery to read: what a mismatch costs the reader</h2>"
        );
        let _ = writeln!(o, "<p class=\"note\">Time from the softirq's delivery of data to a socket to the application's read of it, all flows.</p>");
        dist_chart("read on the delivering CPU", &d.same_cpu.to_buckets(), o);
        dist_chart("read on another CPU", &d.cross_cpu.to_buckets(), o);
    }
}

/// The IRQs with the most handler time.
fn irq_section(p: &Profile, o: &mut String) {
    let _ = writeln!(o, "<h2>Top IRQs</h2><table><tr><th>IRQ</th><th>name</th><th>count</th><th>time</th><th>p50</th><th>p99</th><th>max</th><th>per CPU</th></tr>");
    let mut irqs: Vec<_> = p.irqs.iter().collect();
    irqs.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
    for r in irqs.iter().take(20) {
        let h = &r.handler.summary;
        let per_cpu: Vec<String> = p
            .hardirqs
            .iter()
            .filter(|x| x.irq == r.irq && x.name == r.name)
            .map(|x| format!("{}:{}", x.cpu, x.count))
            .collect();
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            r.irq.map_or("-".into(), |i| i.to_string()), esc(&r.name), r.count, fmt_ns(r.time_ns), fmt_ns(h.p50_ns), fmt_ns(h.p99_ns), fmt_ns(h.max_ns), per_cpu.join(" ")
        );
    }
    let _ = writeln!(o, "</table>");
}

fn nic_drops_section(p: &Profile, o: &mut String) {
    if p.proc.nics.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<h2>NIC receive drops</h2><table><tr><th>device</th><th>rx packets</th><th>dropped</th><th>missed</th><th>fifo</th><th>over</th></tr>"
    );
    for n in &p.proc.nics {
        let _ = writeln!(
            o,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.device),
            n.rx_packets,
            n.rx_dropped,
            n.rx_missed_errors,
            n.rx_fifo_errors,
            n.rx_over_errors
        );
    }
    let _ = writeln!(o, "</table>");
}

fn settings_section(p: &Profile, o: &mut String) {
    let Some(m) = &p.context else { return };
    let _ = writeln!(
        o,
        "<h2>Settings at the end of the session</h2><table><tr><th>scope</th><th>setting</th><th>value</th></tr>"
    );
    for r in super::settings::of(m) {
        let _ = writeln!(
            o,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
            esc(&r.scope),
            esc(&r.name),
            esc(&r.value)
        );
    }
    let _ = writeln!(o, "</table>");
}

pub fn render(p: &Profile) -> String {
    let mut o = String::new();
    head(p, &mut o);
    findings_section(p, &mut o);
    let _ = writeln!(o, "<h2>Interrupt and softirq time per CPU</h2>");
    cpu_chart(p, &mut o);
    softirq_section(p, &mut o);
    flow_section(p, &mut o);
    irq_section(p, &mut o);
    nic_drops_section(p, &mut o);
    settings_section(p, &mut o);
    let _ = writeln!(o, "</body></html>");
    o
}
