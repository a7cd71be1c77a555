//! The scenario that proves `irqtune tune`: two namespaces joined by a veth, a receiver pinned
//! to CPU 1, vb's receive processing steered to CPU 0 only (rps_cpus=1, RFS off): every
//! delivery on CPU 0, every read on CPU 1. Tune must find it, fix it, show it fixed, and
//! leave the machine in the before or the after state whatever happens to it.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use irqtune_tests::{irqtune_bin, require_root, tcp_stream, udp_stream, Limit, NetnsPair, Restore};

const RX: &str = "/sys/class/net/vb/queues/rx-0";
const ENTRIES: &str = "/proc/sys/net/core/rps_sock_flow_entries";
const READER_CPU: usize = 1;

struct Scenario {
    pair: NetnsPair,
    entries: Restore,
    state: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    traffic: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Proto {
    Tcp,
    Udp,
}

impl Scenario {
    fn new(tag: &str, proto: Proto) -> Scenario {
        let pair = NetnsPair::new(tag);
        let entries = Restore::new(ENTRIES);
        entries.set("0");
        pair.sysfs_write(&pair.b, &format!("{RX}/rps_cpus"), "1");
        pair.sysfs_write(&pair.b, &format!("{RX}/rps_flow_cnt"), "0");
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = Scenario {
            pair,
            entries,
            state: tempfile::tempdir().expect("tempdir"),
            stop,
            traffic: None,
        };
        s.start_traffic(proto);
        s
    }

    /// Traffic until stopped (60 s at most), from a clone of the pair's names.
    fn start_traffic(&mut self, proto: Proto) {
        let pair = NetnsPair {
            a: self.pair.a.clone(),
            b: self.pair.b.clone(),
            ip_a: self.pair.ip_a.clone(),
            ip_b: self.pair.ip_b.clone(),
            ip6_a: self.pair.ip6_a.clone(),
            ip6_b: self.pair.ip6_b.clone(),
        };
        let limit = Limit {
            chunks: u32::MAX,
            time: Duration::from_secs(60),
            stop: Some(Arc::clone(&self.stop)),
        };
        self.traffic = Some(std::thread::spawn(move || {
            match proto {
                Proto::Tcp => {
                    tcp_stream(&pair, false, 5701, "irqt-tune-tcp", READER_CPU, limit);
                }
                Proto::Udp => {
                    udp_stream(&pair, 5702, "irqt-tune-udp", READER_CPU, limit);
                }
            }
            // The pair's Drop must not run here: the scenario owns the namespaces.
            std::mem::forget(pair);
        }));
        std::thread::sleep(Duration::from_millis(500));
    }

    /// (rps_cpus, rps_flow_cnt, rps_sock_flow_entries) now.
    fn values(&self) -> (String, String, String) {
        (
            self.pair
                .sysfs_read(&self.pair.b, &format!("{RX}/rps_cpus")),
            self.pair
                .sysfs_read(&self.pair.b, &format!("{RX}/rps_flow_cnt")),
            std::fs::read_to_string(ENTRIES).unwrap().trim().to_string(),
        )
    }

    fn tune(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(irqtune_bin());
        c.args([
            "--netns",
            &self.pair.b,
            "tune",
            "--iface",
            "vb",
            "--state-dir",
        ])
        .arg(self.state.path())
        .args(extra);
        c
    }

    fn revert(&self) -> std::process::Output {
        Command::new(irqtune_bin())
            .args(["--netns", &self.pair.b, "revert", "--state-dir"])
            .arg(self.state.path())
            .output()
            .expect("run revert")
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.traffic.take() {
            let _ = t.join();
        }
        let _ = &self.entries;
    }
}

/// "mismatch, busiest flows   100.0%   0.0%" -> (1.0, 0.0).
fn mismatch_row(out: &str) -> (f64, f64) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("mismatch, busiest flows"))
        .unwrap_or_else(|| panic!("no before/after table in:\n{out}"));
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('%')?.parse::<f64>().ok())
        .collect();
    (v[0] / 100.0, v[1] / 100.0)
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("run tune");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tune failed:\n{text}");
    text
}

#[test]
fn tune_fixes_tcp_rps_mismatch_with_rfs_and_revert_restores() {
    if !require_root("tune_fixes_tcp_rps_mismatch_with_rfs_and_revert_restores") {
        return;
    }
    let s = Scenario::new("tunetcp", Proto::Tcp);
    let original = s.values();
    assert_eq!(original.0.trim_start_matches('0'), "1");
    let out = run_ok(s.tune(&["--duration", "3"]));
    eprintln!("{out}");
    // The finding names the flow, its process and the mismatch.
    let finding = out
        .lines()
        .skip_while(|l| !l.starts_with("Findings before"))
        .find(|l| l.contains("evidence") && l.contains("irqt-tune-tcp"))
        .unwrap_or_else(|| panic!("no finding naming the flow:\n{out}"));
    assert!(
        finding.contains(&format!("pid {}", std::process::id())) && finding.contains("100%"),
        "{finding}"
    );
    // RFS planned (and RPS over the allowed CPUs).
    assert!(out.contains("rps_sock_flow_entries: 0 -> 32768"), "{out}");
    assert!(out.contains("rps_flow_cnt: 0 -> "), "{out}");
    let (before, after) = mismatch_row(&out);
    assert!(before >= 0.9, "mismatch before {before}");
    assert!(after <= 0.05, "mismatch after {after}");
    assert!(out.contains("Verdict: BETTER"), "{out}");
    let tuned = s.values();
    assert_ne!(tuned, original);
    let rev = s.revert();
    assert!(
        rev.status.success(),
        "{}",
        String::from_utf8_lossy(&rev.stderr)
    );
    assert_eq!(
        s.values(),
        original,
        "revert restores the scenario byte for byte"
    );
}

#[test]
fn tune_steers_unconnected_udp_with_rps_toward_the_reader() {
    if !require_root("tune_steers_unconnected_udp_with_rps_toward_the_reader") {
        return;
    }
    let s = Scenario::new("tuneudp", Proto::Udp);
    let original = s.values();
    let out = run_ok(s.tune(&["--duration", "3"]));
    eprintln!("{out}");
    assert!(
        out.contains("RFS cannot steer"),
        "says why RFS does not help:\n{out}"
    );
    assert!(
        out.contains("rx-0/rps_cpus: 1 -> 2") || out.contains("rps_cpus: 01 -> 02"),
        "RPS toward CPU 1:\n{out}"
    );
    let (before, after) = mismatch_row(&out);
    assert!(before >= 0.9, "mismatch before {before}");
    assert!(after <= 0.05, "mismatch after {after}");
    assert!(s.revert().status.success());
    assert_eq!(s.values(), original);
}

/// Starts tune and returns once its stderr shows `phase`.
fn tune_until(s: &Scenario, extra: &[&str], phase: &str) -> std::process::Child {
    let mut child = s
        .tune(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tune");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(phase) => return child,
            Ok(_) => {}
            Err(_) => panic!("tune never reached {phase:?}"),
        }
    }
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn interrupted_tune_leaves_the_before_state_or_revert_restores_it() {
    if !require_root("interrupted_tune_leaves_the_before_state_or_revert_restores_it") {
        return;
    }
    let s = Scenario::new("tuneint", Proto::Tcp);
    let original = s.values();
    for (sig, phase, pause) in [
        (libc::SIGINT, "tune 3/5", "400"),
        (libc::SIGINT, "tune 4/5", "0"),
        (libc::SIGKILL, "tune 3/5", "400"),
        (libc::SIGKILL, "tune 4/5", "0"),
    ] {
        let mut child = tune_until(&s, &["--duration", "3", "--pause-ms", pause], phase);
        if phase == "tune 3/5" {
            // Between writes: after the first one.
            std::thread::sleep(Duration::from_millis(600));
        } else {
            std::thread::sleep(Duration::from_millis(1000));
        }
        signal(&child, sig);
        let status = child.wait().expect("tune ends");
        let what = format!("signal {sig} during {phase:?}");
        assert!(!status.success(), "{what}: tune reports it did not finish");
        if sig == libc::SIGINT {
            assert_eq!(
                s.values(),
                original,
                "{what}: tune itself restored the before state"
            );
        } else {
            assert_ne!(
                s.values(),
                original,
                "{what}: killed with changes in place (the test hit the window)"
            );
            let rev = s.revert();
            assert!(
                rev.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&rev.stderr)
            );
            assert_eq!(
                s.values(),
                original,
                "{what}: revert restored the before state"
            );
        }
    }
    assert!(Path::new(s.state.path()).is_dir());
}
