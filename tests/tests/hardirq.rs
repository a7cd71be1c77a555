//! Hardirq probes against /proc/interrupts, with disk I/O made on purpose.

use std::{path::Path, time::Instant};

use irq_user::system::sysroot::SysRoot;
use irq_user::{
    model::procfs,
    system::probes::{Group, ProbeOptions},
};
use irqtune_tests::{
    agrees_with_proc, arrivals_within, direct_io, kernel_test, load_probes, nanos,
};

/// The virtio block request queue IRQ ("virtio1-req.0"), which fires on disk I/O.
fn block_irq() -> (u32, String) {
    let interrupts = procfs::read_interrupts(&SysRoot::default()).expect("read /proc/interrupts");
    interrupts
        .rows
        .iter()
        .find(|r| r.name.starts_with("virtio") && r.name.contains("-req"))
        .map(|r| (r.irq.expect("numeric IRQ"), r.name.clone()))
        .expect("no virtio block IRQ (virtioN-req.M) in /proc/interrupts on this machine")
}

/// Handler runs of every numbered IRQ between two reads of /proc/interrupts: what the
/// hardirq probe could have been handed.
fn numbered_runs(before: &procfs::Interrupts, after: &procfs::Interrupts) -> u64 {
    after
        .rows
        .iter()
        .filter_map(|r| r.irq)
        .flat_map(|irq| after.cpus.iter().map(move |&c| (irq, c)))
        .map(|(irq, c)| after.count(irq, c).saturating_sub(before.count(irq, c)))
        .sum()
}

kernel_test! {
    fn hardirq_count_matches_proc_interrupts_for_disk_io() {
        let (irq, name) = block_irq();
        // The kernel counts each program's runs while this is held: a count of what the
        // probe was handed, from outside the probe.
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .expect("BPF_ENABLE_STATS (Linux 5.8 and later)");
        let probes = load_probes(&ProbeOptions {
            skip: vec![Group::Flows, Group::NetRx],
            ..Default::default()
        });
        // /var/tmp is on the disk (tmpfs would refuse O_DIRECT and never touch the device).
        let dir = Path::new("/var/tmp");

        let t0 = Instant::now();
        let s0 = probes.snapshot().expect("snapshot");
        let i0 = procfs::read_interrupts(&SysRoot::default()).expect("interrupts");
        let gap0 = t0.elapsed();
        direct_io(dir, 1500);
        let t1 = Instant::now();
        let s1 = probes.snapshot().expect("snapshot");
        let i1 = procfs::read_interrupts(&SysRoot::default()).expect("interrupts");
        let (gap, window) = (gap0 + t1.elapsed(), t1 - t0);

        let proc_delta: u64 = i1
            .cpus
            .iter()
            .map(|&c| i1.count(irq, c) - i0.count(irq, c))
            .sum();
        let d = s1.delta(&s0);
        let series = d
            .irq(irq)
            .unwrap_or_else(|| panic!("IRQ {irq} ({name}) has no statistics slot"));
        let seen: u64 = series.per_cpu.iter().map(|v| v.count).sum();
        let in_hist: u64 = series.hist.iter().sum();
        let seen_all: u64 = d
            .irqs
            .iter()
            .flat_map(|s| s.per_cpu.iter())
            .map(|v| v.count)
            .sum();
        let runs = d.hardirq_runs.expect("the hardirq exit program's run count");
        let counted_all = numbered_runs(&i0, &i1);
        // Runs /proc counted that the kernel never handed to the probe (it happens on the
        // 6.18 test bed: in about one run in four some tens of runs of thousands, with ftrace
        // on the same tracepoint seeing every one and no recursion miss counted).
        let not_handed = counted_all.saturating_sub(runs);
        eprintln!(
            "IRQ {irq} {name}: probes {seen}, /proc/interrupts {proc_delta}, histogram \
             {in_hist}; all IRQs: probes {seen_all}, program runs {runs}, /proc {counted_all} \
             ({not_handed} not handed to the probe); losses {:?}",
            d.losses
        );
        assert!(
            proc_delta >= 1000,
            "disk I/O made only {proc_delta} interrupts on IRQ {irq}"
        );
        // Each O_DIRECT write is one request, one interrupt: two counts read moments apart
        // differ by at most the interrupts that arrive in between.
        let allowed = arrivals_within(counted_all, nanos(window), nanos(gap), 1);
        // The probe counts every run it is handed, once: its counts against the kernel's
        // count of its runs, both read in the same snapshots.
        assert!(
            seen_all.abs_diff(runs) <= allowed,
            "the probe counted {seen_all} handler runs of the {runs} the kernel ran it for \
             (losses {:?})",
            d.losses
        );
        // Against /proc: never more, and fewer only by what the kernel did not hand over.
        assert!(
            seen <= proc_delta + allowed,
            "probes saw {seen}, /proc/interrupts {proc_delta}: more than the {allowed} that \
             could arrive in the {gap:?} between the reads"
        );
        assert!(
            agrees_with_proc(seen, proc_delta, allowed, not_handed),
            "probes saw {seen}, /proc/interrupts {proc_delta}: short by more than the {allowed} \
             that could arrive in the {gap:?} between the reads and the {not_handed} the \
             kernel did not hand to the probe"
        );
        assert_eq!(in_hist, seen, "every handler run is in the histogram");
        let total: u64 = series.per_cpu.iter().map(|v| v.total_ns).sum();
        assert!(total > 0, "handler time recorded");
        for cpu in 0..i1.cpus.len() {
            let per_cpu_proc = i1.count(irq, cpu as u32) - i0.count(irq, cpu as u32);
            let per_cpu_seen = series.per_cpu[cpu].count;
            assert!(
                agrees_with_proc(per_cpu_seen, per_cpu_proc, allowed, not_handed),
                "CPU {cpu}: probes {per_cpu_seen}, /proc/interrupts {per_cpu_proc}"
            );
        }
    }
}
