//! The duty cycle's bias check: a recording whose probes are attached part of the time must
//! tell the same story as one attached throughout. Both run at once over the same traffic (a
//! TCP stream read on CPU 1 while RPS puts its receive processing on CPU 0: every read
//! mismatched), so any difference is the sampling's: the sampled mismatch ratio within 0.05
//! of the full one, NET_RX runs and bytes read within 5%, and the reads within what
//! extrapolating from a few slices can be off by, from how much the reads per slice vary.

use std::{
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use irq_user::{model::profile::Profile, model::profile::Vector, system::files};
use irqtune_tests::{irqtune_bin, kernel_test, Limit, NetnsPair, Pace, Proto, Restore, Streams};

const RX: &str = "/sys/class/net/vb/queues/rx-0";

/// One slice of `--duty 20`: on for 20% of every 2 s.
const SLICE: Duration = Duration::from_millis(400);

fn record(duty: &str, out: &std::path::Path) -> std::process::Child {
    Command::new(irqtune_bin())
        .args(["record", "--duration", "10", "--duty", duty, "--output"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start irqtune record")
}

fn finish(child: std::process::Child, out: &std::path::Path) -> Profile {
    let o = child.wait_with_output().expect("record ends");
    assert!(
        o.status.success(),
        "record: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    files::load_profile(out).expect("a valid profile")
}

fn net_rx_runs(p: &Profile, cpu: u32) -> u64 {
    p.softirqs
        .iter()
        .filter(|r| r.vector == Vector::NetRx && r.cpu == cpu)
        .map(|r| r.count)
        .sum()
}

fn within(what: &str, sampled: f64, full: f64, tolerance: f64) {
    let rel = (sampled - full).abs() / full.max(1e-9);
    assert!(
        rel <= tolerance,
        "{what}: sampled {sampled:.0} vs full {full:.0} ({:.1}% apart, at most {:.0}%)",
        rel * 100.0,
        tolerance * 100.0
    );
    eprintln!(
        "{what}: sampled {sampled:.0} vs full {full:.0} ({:.2}% apart)",
        rel * 100.0
    );
}

kernel_test! {
    fn a_duty_cycled_recording_agrees_with_a_full_one() {
        let pair = NetnsPair::new("duty");
        let entries = Restore::new("/proc/sys/net/core/rps_sock_flow_entries");
        entries.set("0");
        pair.sysfs_write(&pair.b, &format!("{RX}/rps_cpus"), "1");
        pair.sysfs_write(&pair.b, &format!("{RX}/rps_flow_cnt"), "0");
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = Streams::new(
            Proto::Tcp,
            5900,
            "irqt-duty",
            1,
            Limit {
                chunks: u32::MAX,
                time: Duration::from_secs(40),
                stop: Some(Arc::clone(&stop)),
            },
        );
        streams.pace = Pace::Rate(8_000_000);
        let live = Arc::new(AtomicU64::new(0));
        streams.live_reads = Some(Arc::clone(&live));
        let names = pair.names();
        let traffic = std::thread::spawn(move || {
            streams.run(&names);
        });
        std::thread::sleep(Duration::from_secs(1));
        let dir = tempfile::tempdir().expect("tempdir");
        let (full_path, sampled_path) = (dir.path().join("full.json"), dir.path().join("sampled.json"));
        // The reads in each slot as long as one of the duty cycle's slices (20% of 2 s), over
        // the recordings: how much a slice's reads vary, which is what extrapolating from a
        // few slices can be off by.
        let recording = Arc::new(AtomicBool::new(true));
        let slots = {
            let (live, recording) = (Arc::clone(&live), Arc::clone(&recording));
            std::thread::spawn(move || {
                let (start, mut counts, mut last) = (Instant::now(), Vec::new(), live.load(Ordering::Relaxed));
                for i in 1.. {
                    let due = start + SLICE * i;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    if !recording.load(Ordering::Relaxed) {
                        break;
                    }
                    let now = live.load(Ordering::Relaxed);
                    counts.push((now - last) as f64);
                    last = now;
                }
                counts
            })
        };
        let full = record("100", &full_path);
        let sampled = record("20", &sampled_path);
        let (full, sampled) = (finish(full, &full_path), finish(sampled, &sampled_path));
        recording.store(false, Ordering::Relaxed);
        let slots = slots.join().expect("read counter");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().expect("traffic");

        let s = sampled.session.sampling.as_ref().expect("the sampled profile says so");
        assert!(full.session.sampling.is_none(), "the full one was not sampled");
        assert!((0.1..0.3).contains(&s.coverage), "coverage {}", s.coverage);
        eprintln!("sampling: {}", s.method);
        // NET_RX runs per CPU: exact from /proc in both (the sampled one scaled to them).
        for cpu in [0, 1] {
            within(
                &format!("NET_RX runs on CPU {cpu}"),
                net_rx_runs(&sampled, cpu) as f64,
                net_rx_runs(&full, cpu) as f64,
                0.05,
            );
        }
        // The flow: its reads extrapolated from 20% of the time, and its mismatch.
        let flow = |p: &Profile| {
            p.flows
                .iter()
                .filter(|f| f.comm == "irqt-duty")
                .max_by_key(|f| f.reads())
                .cloned()
                .expect("the stream's flow")
        };
        let (ff, sf) = (flow(&full), flow(&sampled));
        // Extrapolating from n slices of N is off by the slices' mean against all of them:
        // relative sd = CV x sqrt((1 - n/N) / n) for slices drawn at random (the duty cycle's
        // are evenly spaced, which does no worse unless the reads vary with its period), and
        // at most 3.89 sd but with probability 1e-4.
        let mean = slots.iter().sum::<f64>() / slots.len().max(1) as f64;
        let var = slots.iter().map(|c| (c - mean).powi(2)).sum::<f64>()
            / (slots.len().max(2) - 1) as f64;
        let cv = var.sqrt() / mean.max(1.0);
        let n = (s.observed_ns as f64 / SLICE.as_nanos() as f64).round().max(1.0);
        let tolerance = 3.89 * cv * ((1.0 - s.coverage).max(0.0) / n).sqrt();
        eprintln!(
            "reads per {SLICE:?}: {} slots, mean {mean:.0}, cv {cv:.3}; {n} slices observed: \
             extrapolated reads within {:.1}%",
            slots.len(),
            tolerance * 100.0
        );
        assert!(slots.len() >= 10, "only {} slots of reads counted", slots.len());
        within("flow reads", sf.reads() as f64, ff.reads() as f64, tolerance);
        within("flow bytes read", sf.read_bytes as f64, ff.read_bytes as f64, 0.05);
        assert!(
            (sf.mismatch_ratio - ff.mismatch_ratio).abs() <= 0.05,
            "mismatch: sampled {:.3} vs full {:.3}",
            sf.mismatch_ratio,
            ff.mismatch_ratio
        );
        assert!(ff.mismatch_ratio > 0.9, "the scenario mismatches every read: {}", ff.mismatch_ratio);
    }
}
