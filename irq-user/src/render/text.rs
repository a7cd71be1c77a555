//! The text report: findings, per-CPU time, top IRQs, latency percentiles per vector and CPU,
//! libbpf-tools style distributions, NET_RX per device, flows, and the probes' losses.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{ascii_distribution, truncate};
use crate::model::hist::merged;
use crate::model::profile::Profile;
use crate::model::profile::{loss_kind, Attach, Source, Vector, FLOW_EVICTIONS};
use crate::model::units::{fmt_ns, pct};
use irq_ebpf::LossKind;

fn header(p: &Profile, o: &mut String) {
    let cpus = p.cpus();
    let _ = writeln!(
        o,
        "irqtune profile: {:.1} s, {} CPUs, host {} (kernel {}){}",
        p.duration_secs(),
        cpus.len(),
        p.host.hostname,
        p.host.kernel,
        if p.session.interrupted {
            ", stopped early"
        } else {
            ""
        }
    );
    if p.session.source == Source::Proc {
        let _ = writeln!(
            o,
            "source: /proc counts since boot (no probes; latencies need `irqtune record`)"
        );
        return;
    }
    probes(p, o);
    if let Some(s) = &p.session.sampling {
        let _ = writeln!(
            o,
            "sampled ({:.1} s of {:.1} s seen): {}",
            s.observed_ns as f64 / 1e9,
            p.duration_secs(),
            s.method
        );
    }
    if let (None, Some(runs)) = (&p.session.sampling, p.session.hardirq_probe_runs) {
        let counted = p.proc.numbered_irq_runs();
        let _ = writeln!(
            o,
            "hardirq probe: the kernel ran it {runs} times for the {counted} handler runs \
             /proc/interrupts counted{}",
            if counted > runs {
                // Runs between the reads of /proc and the maps at the two marks are in
                // /proc's count alone: at the session's rate, about this many.
                let between = p.session.mark_skew_ns.map_or(0, |skew| {
                    (counted as f64 * skew as f64 / p.session.duration_ns.max(1) as f64).round()
                        as u64
                });
                format!(
                    ": {} without the probe (about {between} of those can be runs between the \
                     reads)",
                    counted - runs
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(bytes) = p.session.bpf_map_bytes {
        let _ = writeln!(
            o,
            "kernel memory of the probes' maps: {:.1} MiB",
            bytes as f64 / (1u64 << 20) as f64
        );
    }
}

/// Which probes attached and how, which are off, which were disabled and why.
fn probes(p: &Profile, o: &mut String) {
    let attached: Vec<_> = p
        .session
        .probes
        .iter()
        .filter(|r| !matches!(r.attach, Attach::Disabled | Attach::Off))
        .collect();
    let off: Vec<_> = p
        .session
        .probes
        .iter()
        .filter(|r| r.attach == Attach::Off)
        .map(|r| r.tracepoint.as_str())
        .collect();
    let disabled: Vec<_> = p
        .session
        .probes
        .iter()
        .filter(|r| r.attach == Attach::Disabled)
        .collect();
    let methods: Vec<String> = [
        (Attach::Btf, "BTF tracepoints"),
        (Attach::Fentry, "fentry"),
        (Attach::Classic, "classic tracepoints"),
        (Attach::Kprobe, "kprobes"),
    ]
    .iter()
    .filter_map(|&(kind, label)| {
        let n = attached.iter().filter(|r| r.attach == kind).count();
        (n > 0).then(|| format!("{n} {label}"))
    })
    .collect();
    let _ = writeln!(
        o,
        "probes: {} attached ({}){}",
        attached.len(),
        if methods.is_empty() {
            "none".to_string()
        } else {
            methods.join(", ")
        },
        if disabled.is_empty() {
            String::new()
        } else {
            format!(", {} disabled", disabled.len())
        }
    );
    if !off.is_empty() {
        let _ = writeln!(
            o,
            "  off (not asked for): {} (--per-packet attaches it)",
            off.join(", ")
        );
    }
    for a in attached
        .iter()
        .filter(|r| r.via.is_some() || r.limits.is_some())
    {
        let _ = writeln!(
            o,
            "  {} via {}{}",
            a.tracepoint,
            a.via.as_deref().unwrap_or(a.attach.name()),
            a.limits
                .as_deref()
                .map(|l| format!(" (limits: {l})"))
                .unwrap_or_default()
        );
    }
    for d in disabled {
        let _ = writeln!(
            o,
            "  disabled {}: {}",
            d.tracepoint,
            d.reason.as_deref().unwrap_or("")
        );
    }
}

fn findings(p: &Profile, o: &mut String) {
    let _ = writeln!(o, "\nFindings:");
    if p.findings.is_empty() {
        let _ = writeln!(
            o,
            "  none: no interrupt or softirq problem stands out in this profile"
        );
    }
    for f in &p.findings {
        let _ = writeln!(
            o,
            "  [{}] {}\n      evidence: {}\n      fix: {}",
            f.severity.name(),
            f.title,
            f.evidence,
            f.fix
        );
    }
}

fn per_cpu(p: &Profile, o: &mut String) {
    let dur = p.session.duration_ns;
    let mut vectors: Vec<Vector> = Vector::ALL
        .iter()
        .copied()
        .filter(|v| p.softirqs.iter().any(|r| r.vector == *v && r.time_ns > 0))
        .collect();
    if vectors.is_empty() {
        vectors.push(Vector::NetRx);
    }
    let _ = writeln!(o, "\nPer CPU (share of wall time; softirq time by vector):");
    let mut head = format!("  {:>4} {:>9} {:>9}", "CPU", "hardirq%", "softirq%");
    for v in &vectors {
        let _ = write!(head, " {:>8}", format!("{}%", v));
    }
    let _ = write!(
        head,
        " {:>11} {:>11} {:>10} {:>10} {:>8} {:>8}",
        "NET_RX runs", "NET_RX pkts", "NET_RX/pkt", "ksoftirqd%", "dropped", "squeeze"
    );
    let _ = writeln!(o, "{head}");
    for cpu in p.cpus() {
        let hard: u64 = p
            .hardirqs
            .iter()
            .filter(|r| r.cpu == cpu)
            .map(|r| r.time_ns)
            .sum();
        let rows: Vec<_> = p.softirqs.iter().filter(|r| r.cpu == cpu).collect();
        let soft: u64 = rows.iter().map(|r| r.time_ns).sum();
        let runs: u64 = rows.iter().map(|r| r.count).sum();
        let ksoft: u64 = rows.iter().map(|r| r.ksoftirqd_runs).sum();
        let pkts = p.net_rx_packets(cpu);
        let sn = p.proc.softnet.iter().find(|r| r.cpu == cpu);
        let mut line = format!(
            "  {:>4} {:>8.2}% {:>8.2}%",
            cpu,
            pct(hard, dur),
            pct(soft, dur)
        );
        for v in &vectors {
            let t: u64 = rows
                .iter()
                .filter(|r| r.vector == *v)
                .map(|r| r.time_ns)
                .sum();
            let _ = write!(line, " {:>7.2}%", pct(t, dur));
        }
        let net_rx_ns: u64 = rows
            .iter()
            .filter(|r| r.vector == Vector::NetRx)
            .map(|r| r.time_ns)
            .sum();
        let _ = write!(
            line,
            " {:>11} {:>11} {:>10} {:>9.1}% {:>8} {:>8}",
            p.net_rx_runs(cpu),
            pkts,
            net_rx_ns
                .checked_div(pkts)
                .map_or_else(|| "-".to_string(), fmt_ns),
            pct(ksoft, runs),
            sn.map_or(0, |s| s.dropped),
            sn.map_or(0, |s| s.time_squeeze)
        );
        let _ = writeln!(o, "{line}");
    }
}

fn top_irqs(p: &Profile, o: &mut String) {
    let mut irqs: Vec<_> = p.irqs.iter().collect();
    irqs.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
    let _ = writeln!(o, "\nTop IRQs by handler time:");
    let _ = writeln!(
        o,
        "  {:>5} {:<24} {:>10} {:>9} {:>9} {:>9} {:>9}  per CPU",
        "IRQ", "name", "count", "time", "p50", "p99", "max"
    );
    for r in irqs.iter().take(10) {
        let s = &r.handler.summary;
        let per_cpu: Vec<String> = p
            .hardirqs
            .iter()
            .filter(|h| h.irq == r.irq && h.name == r.name)
            .map(|h| format!("{}:{}", h.cpu, h.count))
            .collect();
        let _ = writeln!(
            o,
            "  {:>5} {:<24} {:>10} {:>9} {:>9} {:>9} {:>9}  {}",
            r.irq.map_or("-".into(), |n| n.to_string()),
            truncate(&r.name, 24),
            r.count,
            fmt_ns(r.time_ns),
            fmt_ns(s.p50_ns),
            fmt_ns(s.p99_ns),
            fmt_ns(s.max_ns),
            per_cpu.join(" ")
        );
    }
    if irqs.is_empty() {
        let _ = writeln!(o, "  (no device interrupts seen)");
    }
}

fn softirqs(p: &Profile, o: &mut String) {
    let _ = writeln!(
        o,
        "\nSoftirqs per vector and CPU (handler time; raise-to-entry delay):"
    );
    let _ = writeln!(
        o,
        "  {:<8} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "vector",
        "CPU",
        "runs",
        "h.p50",
        "h.p99",
        "h.p99.9",
        "h.max",
        "d.p50",
        "d.p99",
        "d.max",
        "ksoftd"
    );
    for r in p.softirqs.iter().filter(|r| r.count > 0) {
        let h = &r.handler.summary;
        let d = &r.raise_delay.summary;
        let _ = writeln!(
            o,
            "  {:<8} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.1}%",
            r.vector,
            r.cpu,
            r.count,
            fmt_ns(h.p50_ns),
            fmt_ns(h.p99_ns),
            fmt_ns(h.p999_ns),
            fmt_ns(h.max_ns),
            fmt_ns(d.p50_ns),
            fmt_ns(d.p99_ns),
            fmt_ns(d.max_ns),
            pct(r.ksoftirqd_runs, r.count)
        );
    }
    let net_rx: Vec<_> = p
        .softirqs
        .iter()
        .filter(|r| r.vector == Vector::NetRx)
        .collect();
    let (h, _, _) = merged(net_rx.iter().map(|r| &r.handler));
    if h.iter().any(|&n| n > 0) {
        let _ = writeln!(o, "\n  NET_RX handler time, all CPUs:");
        o.push_str(&ascii_distribution(&h, "  "));
    }
    let (d, _, _) = merged(net_rx.iter().map(|r| &r.raise_delay));
    if d.iter().any(|&n| n > 0) {
        let _ = writeln!(o, "\n  NET_RX raise-to-entry delay, all CPUs:");
        o.push_str(&ascii_distribution(&d, "  "));
    }
}

fn netdevs(p: &Profile, o: &mut String) {
    let _ = writeln!(o, "\nNET_RX per device and CPU:");
    let _ = writeln!(
        o,
        "  {:<16} {:>4} {:>9} {:>10} {:>12} {:>12} {:>12}",
        "device", "CPU", "polls", "exhausted", "polled pkts", "rx packets", "rx bytes"
    );
    let mut rows: Vec<_> = p.netdevs.iter().collect();
    // Busiest first: packets polled, or received where only per-packet detail counted them.
    rows.sort_by(|a, b| {
        (b.work.max(b.packets))
            .cmp(&a.work.max(a.packets))
            .then(a.device.cmp(&b.device))
    });
    for r in &rows {
        let per_packet = |n: u64| {
            if r.packets > 0 {
                n.to_string()
            } else {
                "-".into()
            }
        };
        let _ = writeln!(
            o,
            "  {:<16} {:>4} {:>9} {:>10} {:>12} {:>12} {:>12}",
            r.device,
            r.cpu,
            r.polls,
            r.budget_exhausted,
            // No polls seen: napi_poll counted nothing here (a version 1 profile, or packets
            // only seen per packet), so the polled packets are unknown, not zero.
            if r.polls > 0 {
                r.work.to_string()
            } else {
                "-".into()
            },
            per_packet(r.packets),
            per_packet(r.bytes)
        );
    }
    if rows.is_empty() {
        let _ = writeln!(o, "  (no packets received)");
    }
}

fn flows(p: &Profile, o: &mut String) {
    let _ = writeln!(
        o,
        "\nFlows (softirq CPU vs reader CPU), most mismatched reads first:"
    );
    let _ = writeln!(
        o,
        "  {:<5} {:<40} {:<40} {:>8} {:<16} {:>9} {:>6}  deliveries@cpu / reads@cpu",
        "proto", "local", "remote", "pid", "comm", "reads", "mism%"
    );
    let fmt_map = |m: &BTreeMap<u32, u64>| {
        m.iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let shown: Vec<_> = p.flows.iter().filter(|f| f.reads() > 0).take(20).collect();
    for f in &shown {
        let _ = writeln!(
            o,
            "  {:<5} {:<40} {:<40} {:>8} {:<16} {:>9} {:>5.1}%  {}{} / {}{}",
            f.protocol,
            f.local,
            f.remote,
            f.pid,
            f.comm,
            f.reads(),
            f.mismatch_ratio * 100.0,
            fmt_map(&f.deliveries_by_cpu),
            match f.backlog_deliveries {
                0 => String::new(),
                n => format!(" (+{n} from backlog)"),
            },
            fmt_map(&f.reads_by_cpu),
            f.napi_id.map(|n| format!("  napi {n}")).unwrap_or_default(),
        );
    }
    if shown.is_empty() {
        let _ = writeln!(o, "  (no TCP/UDP reads seen)");
    }
    readers_by_napi(p, o);
    delivery_to_read(p, o);
}

/// Per reading process, the NAPIs its flows' data came from: busy polling and IRQ
/// suspension poll one NAPI per epoll context, so they serve a reader whose sockets share one.
fn readers_by_napi(p: &Profile, o: &mut String) {
    let readers = crate::model::profile::readers_by_napi(&p.flows);
    if readers.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nReaders by NAPI (where their flows' data came from):");
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    for r in &readers {
        let ids: Vec<String> = r
            .napis
            .iter()
            .map(|(id, n)| format!("{id} ({})", plural(*n, "flow")))
            .collect();
        let _ = writeln!(
            o,
            "  {} {}: {} over {}: {}{}",
            r.comm,
            r.pid,
            plural(r.flows, "flow"),
            plural(r.napis.len(), "NAPI"),
            ids.join(", "),
            if r.unknown > 0 {
                format!("; {} without a NAPI id", plural(r.unknown, "flow"))
            } else {
                String::new()
            },
        );
    }
}

/// Throughput and the delivery-to-read wait of the busiest flows, same-CPU vs cross-CPU.
fn delivery_to_read(p: &Profile, o: &mut String) {
    let mut busiest: Vec<_> = p.flows.iter().filter(|f| f.read_bytes > 0).collect();
    busiest.sort_by_key(|f| std::cmp::Reverse(f.read_bytes));
    if busiest.is_empty() {
        return;
    }
    let secs = p.duration_secs().max(1e-9);
    let _ = writeln!(
        o,
        "\nDelivery to read (softirq delivery -> application read), busiest flows; wake-ups of a waiting reader by placement, and data that queued for a busy reader:"
    );
    let _ = writeln!(
        o,
        "  {:<5} {:<40} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "proto",
        "local",
        "MB/s",
        "same n",
        "same p50",
        "same p99",
        "cross n",
        "cross p50",
        "cross p99",
        "queued n",
        "q. mean"
    );
    for f in busiest.iter().take(10) {
        let d = &f.delivery_to_read;
        let _ = writeln!(
            o,
            "  {:<5} {:<40} {:>10.2} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            f.protocol,
            f.local,
            f.read_bytes as f64 / secs / 1e6,
            d.same_cpu.count(),
            fmt_ns(d.same_cpu.summary.p50_ns),
            fmt_ns(d.same_cpu.summary.p99_ns),
            d.cross_cpu.count(),
            fmt_ns(d.cross_cpu.summary.p50_ns),
            fmt_ns(d.cross_cpu.summary.p99_ns),
            d.queued_reads,
            fmt_ns(d.queued_wait_ns.checked_div(d.queued_reads).unwrap_or(0)),
        );
    }
}

fn losses(p: &Profile, o: &mut String) {
    let lost: Vec<String> = p
        .losses
        .iter()
        .filter(|(k, v)| **v > 0 && loss_kind(k) == LossKind::Lost && k.as_str() != FLOW_EVICTIONS)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        o,
        "\nProbe losses: {}; flow evictions in the session: {}",
        if lost.is_empty() {
            "none".to_string()
        } else {
            lost.join(", ")
        },
        p.losses.get(FLOW_EVICTIONS).copied().unwrap_or(0)
    );
}

/// The NICs' receive drops over the session (those that received or dropped anything).
fn nic_drops(p: &Profile, o: &mut String) {
    let rows: Vec<_> = p
        .proc
        .nics
        .iter()
        .filter(|n| n.rx_packets > 0 || n.rx_dropped > 0 || n.no_buffer() > 0)
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nNIC receive drops (/sys/class/net/*/statistics):\n  {:<16} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "device", "rx packets", "dropped", "missed", "fifo", "over"
    );
    for n in rows {
        let _ = writeln!(
            o,
            "  {:<16} {:>12} {:>10} {:>10} {:>10} {:>10}",
            n.device,
            n.rx_packets,
            n.rx_dropped,
            n.rx_missed_errors,
            n.rx_fifo_errors,
            n.rx_over_errors
        );
    }
}

/// The softnet and NIC settings at the end of the session.
fn settings(p: &Profile, o: &mut String) {
    let Some(m) = &p.context else { return };
    let rows = super::settings::of(m);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nSettings at the end of the session:");
    let mut scope = "";
    for r in &rows {
        if r.scope != scope {
            let _ = write!(
                o,
                "{}  {}:",
                if scope.is_empty() { "" } else { "\n" },
                r.scope
            );
            scope = &r.scope;
        }
        let _ = write!(o, " {} {}", r.name, r.value);
    }
    let _ = writeln!(o);
}

/// From /proc alone: counts per CPU since boot.
fn proc_tables(p: &Profile, o: &mut String) {
    let cpus = &p.proc.cpus;
    let _ = writeln!(o, "\nPer CPU (counts since boot):");
    let vectors = ["NET_RX", "NET_TX", "TIMER", "BLOCK", "SCHED", "RCU"];
    let mut head = format!("  {:>4} {:>12}", "CPU", "device IRQs");
    for v in vectors {
        let _ = write!(head, " {v:>12}");
    }
    let _ = writeln!(
        o,
        "{head} {:>12} {:>8} {:>8}",
        "processed", "dropped", "squeeze"
    );
    for (col, cpu) in cpus.iter().enumerate() {
        let irqs: u64 = p
            .proc
            .interrupts
            .iter()
            .filter(|r| r.id.parse::<u32>().is_ok())
            .map(|r| r.counts.get(col).copied().unwrap_or(0))
            .sum();
        let mut line = format!("  {cpu:>4} {irqs:>12}");
        for v in vectors {
            let n = p
                .proc
                .softirqs
                .get(v)
                .and_then(|c| c.get(col))
                .copied()
                .unwrap_or(0);
            let _ = write!(line, " {n:>12}");
        }
        let sn = p.proc.softnet.iter().find(|r| r.cpu == *cpu);
        let _ = writeln!(
            o,
            "{line} {:>12} {:>8} {:>8}",
            sn.map_or(0, |s| s.processed),
            sn.map_or(0, |s| s.dropped),
            sn.map_or(0, |s| s.time_squeeze)
        );
    }
    let mut rows: Vec<_> = p
        .proc
        .interrupts
        .iter()
        .filter(|r| r.id.parse::<u32>().is_ok())
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.counts.iter().sum::<u64>()));
    let _ = writeln!(o, "\nTop IRQs by count:");
    for r in rows.iter().take(10) {
        let per_cpu: Vec<String> = cpus
            .iter()
            .zip(&r.counts)
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        let _ = writeln!(
            o,
            "  {:>5} {:<24} {:>12}  {}",
            r.id,
            truncate(&r.name, 24),
            r.counts.iter().sum::<u64>(),
            per_cpu.join(" ")
        );
    }
}

pub fn render(p: &Profile) -> String {
    let mut o = String::new();
    header(p, &mut o);
    findings(p, &mut o);
    if p.session.source == Source::Proc {
        proc_tables(p, &mut o);
        nic_drops(p, &mut o);
        settings(p, &mut o);
        return o;
    }
    per_cpu(p, &mut o);
    top_irqs(p, &mut o);
    softirqs(p, &mut o);
    netdevs(p, &mut o);
    flows(p, &mut o);
    nic_drops(p, &mut o);
    settings(p, &mut o);
    losses(p, &mut o);
    o
}
