//! The scale benchmark (`cargo xtask bench --only scale`), not a test: what `watch` and
//! `record` cost where firmware declares many possible CPUs. Per-CPU maps are allocated for
//! every possible CPU, online or not, so a guest with 2 online vCPUs and `maxcpus=N` shows
//! the memory of an N-CPU host. Each guest (Debian 12's kernel under TCG) has a 32-queue
//! virtio-net NIC: 66 MSI-X vectors, the IRQ count of a busy server. Inside, `watch` runs
//! for minutes (kernel map memory from its own metric, RSS and CPU per interval from
//! /proc), then `record` writes a profile and `report` renders it in every format, timed.
//! CPU times inside a TCG guest are the emulator's, several times a real CPU's: they
//! compare the guests with each other, not with hardware.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use irq_user::{model::procfs, system::sysroot::SysRoot};
use irqtune_tests::{irqtune_bin, qemu, require_root};

const KERNEL: &str = "6.1";
const QUEUES: u32 = 32;
const LISTEN: &str = "127.0.0.1:19815";

fn minutes(maxcpus: u32) -> u64 {
    let default = if maxcpus >= 240 { 10 } else { 2 };
    std::env::var("IRQTUNE_SCALE_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a benchmark: `cargo xtask bench --only scale` runs it"]
fn scale_bench() {
    if !require_root("scale_bench") {
        return;
    }
    let mut rows = Vec::new();
    for maxcpus in [2u32, 64, 240] {
        let Some(mut g) = qemu::Guest::new(KERNEL, &format!("scale{maxcpus}")) else {
            return;
        };
        let pid = std::process::id() % 100_000;
        g.qemu_opts = vec![
            format!("-smp 2,maxcpus={maxcpus}"),
            format!("-netdev tap,id=mq,ifname=iqs{pid},script=no,downscript=no,queues={QUEUES},vhost=off"),
            format!("-device virtio-net-pci,netdev=mq,mq=on,vectors={}", 2 * QUEUES + 2),
        ];
        let m = minutes(maxcpus);
        g.env.push(("IRQTUNE_SCALE_MINUTES".into(), m.to_string()));
        g.timeout = Duration::from_secs(60 * (m + 10));
        let run = g.run("inside_scale_guest --ignored --exact", |_| {});
        run.assert_passed("scale_bench", 1);
        eprintln!("maxcpus={maxcpus}: {}", run.seen.trim());
        rows.push((maxcpus, run.seen.trim().to_string()));
    }
    println!("\n| possible CPUs | result |\n|---|---|");
    for (n, seen) in rows {
        println!("| {n} | {seen} |");
    }
}

/// VmRSS (KiB) and utime + stime (clock ticks) of a process.
fn usage(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss, tick(11) + tick(12))
}

fn metric(name: &str) -> Option<f64> {
    let mut s = TcpStream::connect(LISTEN).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
#[ignore = "runs inside the guest scale_bench boots"]
fn inside_scale_guest() {
    let out = std::env::var("IRQTUNE_COMPAT_OUT").expect("run by scale_bench");
    let minutes: u64 = std::env::var("IRQTUNE_SCALE_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let possible = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    // The guest runs no udev: the NIC's driver is loaded by hand, and its vectors awaited (a
    // guest without them would measure a small machine's IRQ count).
    let _ = Command::new("modprobe").arg("virtio_net").status();
    let irq_count = || {
        procfs::read_interrupts(&SysRoot::default())
            .expect("/proc/interrupts")
            .rows
            .iter()
            .filter(|r| r.irq.is_some())
            .count()
    };
    let start = Instant::now();
    while irq_count() < 2 * QUEUES as usize {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the multi-queue NIC's vectors never appeared: {} IRQs",
            irq_count()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let irqs = irq_count();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut watch = Command::new(irqtune_bin())
        .args(["watch", "--interval", "10", "--listen", LISTEN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watch");
    let start = Instant::now();
    while metric("irqtune_bpf_map_memory_bytes").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "watch never served metrics"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let maps = metric("irqtune_bpf_map_memory_bytes").unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(60));
    let (rss1, t1) = usage(watch.id());
    let mark = Instant::now();
    std::thread::sleep(Duration::from_secs(60 * minutes.saturating_sub(1).max(1)));
    let (rss2, t2) = usage(watch.id());
    let intervals = mark.elapsed().as_secs_f64() / 10.0;
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    let _ = watch.wait();

    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("p.json");
    let rec = Command::new(irqtune_bin())
        .args(["record", "--duration", "5", "--no-flows", "--output"])
        .arg(&profile)
        .stdout(Stdio::null())
        .status()
        .expect("record");
    assert!(rec.success(), "record failed");
    let size = fs::metadata(&profile).map(|m| m.len()).unwrap_or(0);
    let mut reports = Vec::new();
    for f in ["text", "json", "csv", "html", "prometheus", "hdrlog"] {
        let t = Instant::now();
        let ok = Command::new(irqtune_bin())
            .args(["report", "--format", f, "--output", "/dev/null"])
            .arg(&profile)
            .status()
            .expect("report")
            .success();
        assert!(ok, "report --format {f}");
        reports.push(format!("{f} {:.0} ms", t.elapsed().as_secs_f64() * 1e3));
    }
    let line = format!(
        "possible {}, IRQs {irqs}: watch maps {:.1} MiB, RSS {} KiB after 1 min, {} KiB after {minutes} min, CPU {:.1} ms per interval (TCG); profile {:.0} KiB; report {}",
        possible.trim(),
        maps / (1u64 << 20) as f64,
        rss1,
        rss2,
        (t2 - t1) as f64 / hz * 1e3 / intervals.max(1.0),
        size as f64 / 1024.0,
        reports.join(", ")
    );
    fs::write(Path::new(&out), line + "\n").expect("write the result");
}
