//! Hardirq probes against /proc/interrupts, with disk I/O made on purpose.

use std::{path::Path, time::Instant};

use irq_user::system::sysroot::SysRoot;
use irq_user::{
    model::procfs,
    system::probes::{Group, ProbeOptions},
};
use irqtune_tests::{arrivals_within, direct_io, kernel_test, load_probes, nanos};

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

kernel_test! {
    fn hardirq_count_matches_proc_interrupts_for_disk_io() {
        let (irq, name) = block_irq();
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
        eprintln!(
            "IRQ {irq} {name}: probes {seen}, /proc/interrupts {proc_delta}, histogram {in_hist}"
        );
        assert!(
            proc_delta >= 1000,
            "disk I/O made only {proc_delta} interrupts on IRQ {irq}"
        );
        // Each O_DIRECT write is one request, one interrupt: the two counts differ by at most
        // the interrupts that arrive while the two are read.
        let allowed = arrivals_within(proc_delta, nanos(window), nanos(gap), 1);
        assert!(
            seen.abs_diff(proc_delta) <= allowed,
            "probes saw {seen}, /proc/interrupts {proc_delta}: more than the {allowed} that \
             could arrive in the {gap:?} between the reads"
        );
        assert_eq!(in_hist, seen, "every handler run is in the histogram");
        let total: u64 = series.per_cpu.iter().map(|v| v.total_ns).sum();
        assert!(total > 0, "handler time recorded");
        for cpu in 0..i1.cpus.len() {
            let per_cpu_proc = i1.count(irq, cpu as u32) - i0.count(irq, cpu as u32);
            let per_cpu_seen = series.per_cpu[cpu].count;
            assert!(
                per_cpu_seen.abs_diff(per_cpu_proc) <= per_cpu_proc / 50 + 2,
                "CPU {cpu}: probes {per_cpu_seen}, /proc/interrupts {per_cpu_proc}"
            );
        }
    }
}
