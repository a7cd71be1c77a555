//! A duty-cycled recording observed only part of its session; this turns what it observed
//! into figures for the whole session, and says how (`session.sampling`).
//!
//! Where the kernel counts the same events exactly, the observed rows are scaled to those
//! counts: each (IRQ, CPU) row to its /proc/interrupts count, each (vector, CPU) row to its
//! /proc/softirqs count (a ratio estimator: the observed mean handler time times the exact
//! number of runs). Everything else (NET_RX polls per device, flows) is scaled by the
//! inverse of the coverage. Distributions keep their shape (every bucket scaled alike), so
//! percentiles are the observed ones. Ratios (mismatch) are the observed ones.
//!
//! A (vector, CPU) or (IRQ, CPU) that /proc counted runs of but no slice saw gets a row too:
//! its runs are /proc's, its time per run and distribution those its vector or IRQ showed on
//! the other CPUs. Without it, a quiet slice would drop a whole interval's exact count.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    hist::{merged, Hist},
    profile::{FlowTotals, HardirqRow, IrqRow, Profile, Sampling, SoftirqRow, Vector},
};

/// Scales a count, rounding; a nonzero count scaled up stays nonzero.
fn scale(n: u64, k: f64) -> u64 {
    if n == 0 || !k.is_finite() || k <= 0.0 {
        return n;
    }
    ((n as f64 * k).round() as u64).max(1)
}

/// A histogram with every bucket (and the sum) scaled by `k`; the maximum stays.
pub fn scaled(h: &Hist, k: f64) -> Hist {
    let n: u64 = h.to_buckets().iter().sum();
    scaled_to(h, scale(n, k))
}

/// A histogram whose buckets hold `total` events in its observed shape: each bucket scaled
/// alike, the rounding apportioned by largest remainder so they sum to `total` exactly (a
/// histogram's count then equals the count of the row it belongs to); the sum scaled alike,
/// the maximum kept.
pub fn scaled_to(h: &Hist, total: u64) -> Hist {
    let b = h.to_buckets();
    let n: u64 = b.iter().fold(0u64, |a, &c| a.saturating_add(c));
    if n == 0 || n == total {
        return h.clone();
    }
    let k = total as f64 / n as f64;
    let mut out = [0u64; irq_ebpf::hist::BUCKETS];
    let mut remainders = Vec::new();
    let mut given = 0u64;
    for (i, &c) in b.iter().enumerate() {
        let x = c as f64 * k;
        out[i] = x.floor() as u64;
        given = given.saturating_add(out[i]);
        if c > 0 {
            remainders.push((x - x.floor(), i));
        }
    }
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = usize::try_from(total.saturating_sub(given)).unwrap_or(usize::MAX);
    for (_, i) in remainders.into_iter().cycle().take(missing) {
        out[i] += 1;
    }
    Hist::from_buckets(&out, h.summary.max_ns, scale(h.sum_ns, k))
}

/// `exact / observed`, or `fallback` when there is no exact count or nothing observed.
fn ratio(exact: Option<u64>, observed: u64, fallback: f64) -> f64 {
    match exact {
        Some(e) if observed > 0 && e > 0 => e as f64 / observed as f64,
        _ => fallback,
    }
}

/// /proc's counts over the session: per (IRQ, CPU) and per (vector name, CPU).
struct Exact {
    irqs: BTreeMap<(u32, u32), u64>,
    softirqs: BTreeMap<(String, u32), u64>,
}

impl Exact {
    fn of(p: &Profile) -> Exact {
        let mut e = Exact {
            irqs: BTreeMap::new(),
            softirqs: BTreeMap::new(),
        };
        for row in &p.proc.interrupts {
            let Ok(irq) = row.id.parse::<u32>() else {
                continue;
            };
            for (col, &n) in row.counts.iter().enumerate() {
                if let Some(&cpu) = p.proc.cpus.get(col) {
                    e.irqs.insert((irq, cpu), n);
                }
            }
        }
        for (name, counts) in &p.proc.softirqs {
            for (col, &n) in counts.iter().enumerate() {
                if let Some(&cpu) = p.proc.cpus.get(col) {
                    e.softirqs.insert((name.clone(), cpu), n);
                }
            }
        }
        e
    }
}

/// Turns a profile whose probes were attached for `observed_ns` of its duration into
/// figures for the whole duration. Nothing happens when they were attached throughout.
pub fn extrapolate(p: &mut Profile, observed_ns: u64) {
    let duration = p.session.duration_ns;
    if observed_ns == 0 || observed_ns >= duration {
        return;
    }
    let coverage = observed_ns as f64 / duration as f64;
    let inverse = 1.0 / coverage;
    let exact = Exact::of(p);
    for r in &mut p.hardirqs {
        let k = ratio(
            r.irq.and_then(|i| exact.irqs.get(&(i, r.cpu)).copied()),
            r.count,
            inverse,
        );
        r.count = scale(r.count, k);
        r.time_ns = scale(r.time_ns, k);
    }
    for r in &mut p.irqs {
        let exact_total: Option<u64> = r.irq.map(|i| {
            exact
                .irqs
                .iter()
                .filter(|((irq, _), _)| *irq == i)
                .fold(0u64, |a, (_, &n)| a.saturating_add(n))
        });
        let k = ratio(exact_total, r.count, inverse);
        r.count = scale(r.count, k);
        r.time_ns = scale(r.time_ns, k);
        r.handler = scaled_to(&r.handler, r.count);
    }
    for r in &mut p.softirqs {
        let name = Vector::name(r.vector).to_string();
        let k = ratio(
            exact.softirqs.get(&(name, r.cpu)).copied(),
            r.count,
            inverse,
        );
        r.count = scale(r.count, k);
        r.time_ns = scale(r.time_ns, k);
        r.raises = scale(r.raises, k);
        r.ksoftirqd_runs = scale(r.ksoftirqd_runs, k);
        r.handler = scaled_to(&r.handler, r.count);
        r.raise_delay = scaled(&r.raise_delay, k);
    }
    for r in &mut p.netdevs {
        r.polls = scale(r.polls, inverse);
        r.work = scale(r.work, inverse);
        r.budget_exhausted = scale(r.budget_exhausted, inverse);
        r.packets = scale(r.packets, inverse);
        r.bytes = scale(r.bytes, inverse);
    }
    for f in &mut p.flows {
        for n in f
            .deliveries_by_cpu
            .values_mut()
            .chain(f.reads_by_cpu.values_mut())
        {
            *n = scale(*n, inverse);
        }
        f.backlog_deliveries = scale(f.backlog_deliveries, inverse);
        f.mismatched_reads = scale(f.mismatched_reads, inverse);
        f.read_bytes = scale(f.read_bytes, inverse);
        let d = &mut f.delivery_to_read;
        d.same_cpu = scaled(&d.same_cpu, inverse);
        d.cross_cpu = scaled(&d.cross_cpu, inverse);
        d.queued_reads = scale(d.queued_reads, inverse);
        d.queued_wait_ns = scale(d.queued_wait_ns, inverse);
    }
    p.flow_totals = FlowTotals::of(&p.flows);
    add_unobserved(p, &exact);
    p.session.sampling = Some(Sampling {
        coverage,
        observed_ns,
        method: format!(
            "probes attached {:.1}% of the session (a duty cycle); handler runs and time per (IRQ, CPU) and per (softirq vector, CPU) scaled to the exact counts of /proc/interrupts and /proc/softirqs (pairs with runs no slice saw: those runs, at their vector's or IRQ's time per run on the other CPUs), NET_RX polls per device and flow counts scaled by {inverse:.2}; distributions and mismatch ratios as observed",
            coverage * 100.0
        ),
    });
}

/// Rows for the (vector, CPU) and (IRQ, CPU) pairs /proc counted runs of that no slice saw
/// (the rows there are already scaled: their ratios are the observed ones). A vector no CPU's
/// slice saw gets its runs with no time and no distribution; an IRQ no slice saw has no row
/// to take its name and time from, and stays out (its per-IRQ total too).
fn add_unobserved(p: &mut Profile, exact: &Exact) {
    let seen: BTreeSet<(Vector, u32)> = p.softirqs.iter().map(|r| (r.vector, r.cpu)).collect();
    // Each vector's rows on all CPUs, summed once: what its unseen pairs are scaled from.
    let mut all_cpus: BTreeMap<Vector, SoftirqRow> = BTreeMap::new();
    let mut softirqs: Vec<SoftirqRow> = Vec::new();
    for ((name, cpu), &n) in &exact.softirqs {
        let Some(&vector) = Vector::ALL.iter().find(|v| v.name() == name) else {
            continue;
        };
        if n == 0 || seen.contains(&(vector, *cpu)) {
            continue;
        }
        let t = all_cpus
            .entry(vector)
            .or_insert_with(|| vector_on_all_cpus(&p.softirqs, vector));
        let k = n as f64 / t.count.max(1) as f64;
        softirqs.push(SoftirqRow {
            vector,
            cpu: *cpu,
            count: n,
            time_ns: scale(t.time_ns, k),
            raises: scale(t.raises, k),
            ksoftirqd_runs: scale(t.ksoftirqd_runs, k),
            handler: scaled_to(&t.handler, n),
            raise_delay: scaled(&t.raise_delay, k),
        });
    }
    if !softirqs.is_empty() {
        p.softirqs.extend(softirqs);
        p.softirqs.sort_by_key(|r| (r.vector, r.cpu));
    }

    let seen: BTreeSet<(Option<u32>, u32)> = p.hardirqs.iter().map(|r| (r.irq, r.cpu)).collect();
    let all_cpus: BTreeMap<u32, &IrqRow> = p
        .irqs
        .iter()
        .filter(|r| r.count > 0)
        .filter_map(|r| Some((r.irq?, r)))
        .collect();
    let mut hardirqs: Vec<HardirqRow> = Vec::new();
    for (&(irq, cpu), &n) in &exact.irqs {
        if n == 0 || seen.contains(&(Some(irq), cpu)) {
            continue;
        }
        let Some(all) = all_cpus.get(&irq) else {
            continue;
        };
        hardirqs.push(HardirqRow {
            irq: Some(irq),
            name: all.name.clone(),
            cpu,
            count: n,
            time_ns: scale(all.time_ns, n as f64 / all.count as f64),
            max_ns: 0,
            handler: None,
        });
    }
    if !hardirqs.is_empty() {
        p.hardirqs.extend(hardirqs);
        p.hardirqs.sort_by_key(|r| (r.irq, r.cpu));
    }
}

/// `vector`'s rows summed over CPUs (distributions merged); all zero when none.
fn vector_on_all_cpus(rows: &[SoftirqRow], vector: Vector) -> SoftirqRow {
    let rows: Vec<&SoftirqRow> = rows.iter().filter(|r| r.vector == vector).collect();
    let total = |f: fn(&SoftirqRow) -> u64| rows.iter().map(|r| f(r)).sum();
    let hist = |f: fn(&SoftirqRow) -> &Hist| {
        let (b, max, sum) = merged(rows.iter().map(|r| f(r)));
        Hist::from_buckets(&b, max, sum)
    };
    SoftirqRow {
        vector,
        cpu: 0,
        count: total(|r| r.count),
        time_ns: total(|r| r.time_ns),
        raises: total(|r| r.raises),
        ksoftirqd_runs: total(|r| r.ksoftirqd_runs),
        handler: hist(|r| &r.handler),
        raise_delay: hist(|r| &r.raise_delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_keeps_the_shape_and_nonzero_counts() {
        let mut b = [0u64; irq_ebpf::hist::BUCKETS];
        b[40] = 10;
        b[60] = 1;
        let h = Hist::from_buckets(&b, 5000, 12345);
        let s = scaled(&h, 10.0);
        let sb = s.to_buckets();
        assert_eq!((sb[40], sb[60]), (100, 10));
        assert_eq!(s.summary.p50_ns, h.summary.p50_ns);
        assert_eq!(s.summary.max_ns, 5000);
        assert_eq!(scale(1, 0.4), 1, "an observed event stays observed");
        assert_eq!(scale(0, 10.0), 0);
        assert_eq!(ratio(Some(50), 10, 3.0), 5.0);
        assert_eq!(ratio(None, 10, 3.0), 3.0);
        assert_eq!(ratio(Some(50), 0, 3.0), 3.0);
    }

    #[test]
    fn a_histogram_scaled_to_a_count_holds_exactly_that_count() {
        let mut b = [0u64; irq_ebpf::hist::BUCKETS];
        (b[30], b[31], b[32], b[50]) = (7, 7, 7, 1);
        let h = Hist::from_buckets(&b, 5000, 1000);
        for total in [0u64, 1, 5, 22, 23, 100, 1001, 383_454, 383_456] {
            let s = scaled_to(&h, total);
            let got: u64 = s.to_buckets().iter().sum();
            assert_eq!(got, if total == 0 { 0 } else { total }, "total {total}");
        }
        let s = scaled_to(&h, 220).to_buckets();
        assert_eq!(
            (s[30], s[31], s[32], s[50]),
            (70, 70, 70, 10),
            "the shape kept"
        );
    }

    /// A slice that saw no run of a (vector, CPU) or (IRQ, CPU) that /proc counted: the
    /// row is added with /proc's runs, not dropped with them.
    #[test]
    fn pairs_no_slice_saw_keep_their_exact_runs() {
        let mut p = Profile::parse(
            include_str!("../../tests/fixtures/vm-profile.json"),
            "vm-profile.json",
        )
        .expect("fixture");
        p.session.duration_ns = 1_000_000_000;
        p.softirqs
            .retain(|r| !(r.vector == Vector::NetRx && r.cpu == 1) && r.vector != Vector::Block);
        let cpu0 = p
            .softirqs
            .iter()
            .find(|r| r.vector == Vector::NetRx)
            .cloned()
            .expect("NET_RX on CPU 0");
        p.proc
            .softirqs
            .insert("NET_RX".into(), vec![cpu0.count * 10, 5000]);
        p.proc.softirqs.insert("BLOCK".into(), vec![0, 7]);
        let row = p
            .proc
            .interrupts
            .iter_mut()
            .find(|r| r.id == "31")
            .expect("IRQ 31");
        row.counts = vec![4, 9];
        extrapolate(&mut p, 100_000_000);

        let row = |v: Vector, cpu: u32| {
            p.softirqs
                .iter()
                .find(|r| r.vector == v && r.cpu == cpu)
                .unwrap_or_else(|| panic!("no {v:?} row on CPU {cpu}"))
        };
        let net_rx = row(Vector::NetRx, 1);
        assert_eq!(net_rx.count, 5000);
        assert_eq!(
            net_rx.handler.count(),
            5000,
            "the distribution holds the runs"
        );
        let per_run = cpu0.time_ns as f64 / cpu0.count as f64;
        assert_eq!(
            net_rx.time_ns,
            (per_run * 5000.0).round() as u64,
            "CPU 0's time per run"
        );
        assert_eq!(
            row(Vector::NetRx, 0).count,
            cpu0.count * 10,
            "the seen row scaled"
        );
        let block = row(Vector::Block, 1);
        assert_eq!(
            (block.count, block.time_ns, block.handler.count()),
            (7, 0, 0)
        );
        assert!(p
            .softirqs
            .windows(2)
            .all(|w| (w[0].vector, w[0].cpu) < (w[1].vector, w[1].cpu)));

        let irq31: Vec<(u32, u64)> = p
            .hardirqs
            .iter()
            .filter(|r| r.irq == Some(31))
            .map(|r| (r.cpu, r.count))
            .collect();
        assert_eq!(irq31, vec![(0, 4), (1, 9)]);
    }
}
