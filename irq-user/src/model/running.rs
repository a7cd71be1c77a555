//! Running totals of consecutive windows: `watch` adds each interval's profile to what came
//! before, so every counter it exports only grows. (A since-start delta extrapolated again
//! at each interval would not: its scale factors move with the coverage, and a flow evicted
//! from the kernel's LRU map would take its counts with it.)

use std::collections::BTreeMap;

use crate::model::{
    hist::{merged, Hist},
    procfs::SoftnetRow,
    profile::{HardirqRow, IrqRow, NetdevRow, ProcCounts, ProcIrqRow, Profile, Sampling},
};

fn sum(a: &Hist, b: &Hist) -> Hist {
    let (buckets, max, sum) = merged([a, b]);
    Hist::from_buckets(&buckets, max, sum)
}

/// Rows of `a` and `b` with equal keys added together, in key order.
fn add_rows<R: Clone, K: Ord>(
    a: &[R],
    b: &[R],
    key: impl Fn(&R) -> K,
    add: impl Fn(&mut R, &R),
) -> Vec<R> {
    let mut out: BTreeMap<K, R> = BTreeMap::new();
    for r in a.iter().chain(b) {
        match out.get_mut(&key(r)) {
            Some(acc) => add(acc, r),
            None => {
                out.insert(key(r), r.clone());
            }
        }
    }
    out.into_values().collect()
}

/// /proc counts of two windows added, per CPU (the online CPUs may differ between them).
fn add_proc(a: &ProcCounts, b: &ProcCounts) -> ProcCounts {
    let mut cpus: Vec<u32> = a.cpus.iter().chain(&b.cpus).copied().collect();
    cpus.sort_unstable();
    cpus.dedup();
    let per_cpu = |p: &ProcCounts, counts: &[u64]| -> BTreeMap<u32, u64> {
        p.cpus.iter().copied().zip(counts.iter().copied()).collect()
    };
    let spread = |m: &BTreeMap<u32, u64>| -> Vec<u64> {
        cpus.iter()
            .map(|c| m.get(c).copied().unwrap_or(0))
            .collect()
    };
    let mut irqs: BTreeMap<(String, String), BTreeMap<u32, u64>> = BTreeMap::new();
    for (p, row) in a
        .interrupts
        .iter()
        .map(|r| (a, r))
        .chain(b.interrupts.iter().map(|r| (b, r)))
    {
        let acc = irqs.entry((row.id.clone(), row.name.clone())).or_default();
        for (cpu, n) in per_cpu(p, &row.counts) {
            *acc.entry(cpu).or_default() += n;
        }
    }
    let mut softirqs: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for (p, (name, counts)) in a
        .softirqs
        .iter()
        .map(|r| (a, r))
        .chain(b.softirqs.iter().map(|r| (b, r)))
    {
        let acc = softirqs.entry(name.clone()).or_default();
        for (cpu, n) in per_cpu(p, counts) {
            *acc.entry(cpu).or_default() += n;
        }
    }
    let softnet = add_rows(
        &a.softnet,
        &b.softnet,
        |r| r.cpu,
        |acc: &mut SoftnetRow, r| {
            acc.processed += r.processed;
            acc.dropped += r.dropped;
            acc.time_squeeze += r.time_squeeze;
            acc.received_rps += r.received_rps;
            acc.flow_limit_count += r.flow_limit_count;
        },
    );
    let mut nics = a.nics.clone();
    for n in &b.nics {
        match nics.iter_mut().find(|m| m.device == n.device) {
            Some(m) => m.add(n),
            None => nics.push(n.clone()),
        }
    }
    ProcCounts {
        nics,
        interrupts: irqs
            .into_iter()
            .map(|((id, name), m)| ProcIrqRow {
                id,
                name,
                counts: spread(&m),
            })
            .collect(),
        softirqs: softirqs
            .into_iter()
            .map(|(name, m)| (name, spread(&m)))
            .collect(),
        softnet,
        cpus,
    }
}

/// Time the probes saw of a profile's session.
fn observed_ns(p: &Profile) -> u64 {
    p.session
        .sampling
        .as_ref()
        .map_or(p.session.duration_ns, |s| s.observed_ns)
}

impl Profile {
    /// Adds the next window's counts, times and distributions to this one's: the running
    /// total from this window's start to the end of `next`. Flows and findings are the
    /// caller's to choose (the last window's, for `watch`); the flows' totals add up.
    pub fn add_window(&mut self, next: &Profile) {
        let observed = observed_ns(self).saturating_add(observed_ns(next));
        self.session.duration_ns = self
            .session
            .duration_ns
            .saturating_add(next.session.duration_ns);
        self.session.sampling = (observed < self.session.duration_ns).then(|| Sampling {
            coverage: observed as f64 / self.session.duration_ns.max(1) as f64,
            observed_ns: observed,
            method: next
                .session
                .sampling
                .as_ref()
                .map(|s| s.method.clone())
                .unwrap_or_default(),
        });
        self.session.probes = next.session.probes.clone();
        self.session.bpf_map_bytes = next.session.bpf_map_bytes;
        // The running window's ends are this one's start and next's end: the sum bounds them.
        self.session.mark_skew_ns = match (self.session.mark_skew_ns, next.session.mark_skew_ns) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        };
        self.session.hardirq_probe_runs = self
            .session
            .hardirq_probe_runs
            .zip(next.session.hardirq_probe_runs)
            .map(|(a, b)| a.saturating_add(b));
        self.hardirqs = add_rows(
            &self.hardirqs,
            &next.hardirqs,
            |r| (r.irq, r.name.clone(), r.cpu),
            |acc: &mut HardirqRow, r| {
                acc.count += r.count;
                acc.time_ns += r.time_ns;
                acc.max_ns = acc.max_ns.max(r.max_ns);
            },
        );
        self.irqs = add_rows(
            &self.irqs,
            &next.irqs,
            |r| (r.irq, r.name.clone()),
            |acc: &mut IrqRow, r| {
                acc.count += r.count;
                acc.time_ns += r.time_ns;
                acc.handler = sum(&acc.handler, &r.handler);
            },
        );
        self.softirqs = add_rows(
            &self.softirqs,
            &next.softirqs,
            |r| (r.vector, r.cpu),
            |acc, r| {
                acc.count += r.count;
                acc.time_ns += r.time_ns;
                acc.raises += r.raises;
                acc.ksoftirqd_runs += r.ksoftirqd_runs;
                acc.handler = sum(&acc.handler, &r.handler);
                acc.raise_delay = sum(&acc.raise_delay, &r.raise_delay);
            },
        );
        self.netdevs = add_rows(
            &self.netdevs,
            &next.netdevs,
            |r| (r.device.clone(), r.ifindex, r.cpu),
            |acc: &mut NetdevRow, r| {
                acc.polls += r.polls;
                acc.work += r.work;
                acc.budget_exhausted += r.budget_exhausted;
                acc.packets += r.packets;
                acc.bytes += r.bytes;
            },
        );
        for (k, v) in &next.losses {
            *self.losses.entry(k.clone()).or_default() += v;
        }
        self.flow_totals.add(&next.flow_totals);
        self.proc = add_proc(&self.proc, &next.proc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::profile::Vector;

    fn window(net_rx: u64, ksoftirqd: u64, coverage: Option<f64>) -> Profile {
        let mut p = Profile::parse(
            include_str!("../../tests/fixtures/vm-profile.json"),
            "vm-profile.json",
        )
        .expect("fixture");
        p.session.duration_ns = 1_000_000_000;
        p.session.sampling = coverage.map(|c| Sampling {
            coverage: c,
            observed_ns: (c * 1e9) as u64,
            method: "m".into(),
        });
        for r in p.softirqs.iter_mut().filter(|r| r.vector == Vector::NetRx) {
            r.count = net_rx;
            r.ksoftirqd_runs = ksoftirqd;
        }
        p
    }

    #[test]
    fn windows_add_up_and_nothing_goes_down() {
        let mut total = window(100, 3, Some(0.1));
        let before = total.clone();
        total.add_window(&window(50, 0, Some(0.3)));
        for (a, b) in before.softirqs.iter().zip(&total.softirqs) {
            assert_eq!((a.vector, a.cpu), (b.vector, b.cpu));
            assert!(b.count >= a.count && b.ksoftirqd_runs >= a.ksoftirqd_runs);
            assert_eq!(b.handler.count(), a.handler.count() * 2);
        }
        let net_rx = |p: &Profile| p.net_rx_runs(0);
        assert_eq!(net_rx(&total), 150);
        assert_eq!(total.session.duration_ns, 2_000_000_000);
        let s = total.session.sampling.as_ref().expect("sampled");
        assert!((s.coverage - 0.2).abs() < 1e-9, "{}", s.coverage);
        let proc_sum = |p: &Profile| -> u64 { p.proc.softirqs["NET_RX"].iter().sum() };
        assert_eq!(proc_sum(&total), 2 * proc_sum(&before));
        // Two full windows stay unsampled.
        let mut full = window(1, 0, None);
        full.add_window(&window(1, 0, None));
        assert!(full.session.sampling.is_none());
    }
}
