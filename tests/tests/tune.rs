//! The scenarios that prove `irqtune tune`: two namespaces joined by a veth, receivers pinned
//! to one CPU, vb's receive processing steered to the other CPU only (rps_cpus, RFS off): every
//! softirq delivery on one CPU, every read on the other. Tune must find it, fix it, judge the
//! fix by the workload's outcome and keep it, whichever CPU the reader and the sender are on,
//! for TCP, connected and unconnected UDP, one flow or eight; it must roll back a change that
//! hurts; and it must leave the machine in the before or the after state whatever happens.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use irqtune_tests::{
    irqtune_bin, kernel_test, pin_to_cpu, require_root, Limit, NetnsPair, Pace, Proto, Restore,
    Streams,
};

const RX: &str = "/sys/class/net/vb/queues/rx-0";
const ENTRIES: &str = "/proc/sys/net/core/rps_sock_flow_entries";

/// One arrangement of the mismatch scenario.
#[derive(Clone, Copy, Debug)]
struct Case {
    tag: &'static str,
    proto: Proto,
    flows: u16,
    reader_cpu: usize,
    /// None: the scheduler places the senders.
    sender_cpu: Option<usize>,
    pace: Pace,
}

/// The receivers' thread name: the kernel keeps 15 bytes of it.
fn comm(tag: &str) -> String {
    let mut c = format!("irqt-{tag}");
    c.truncate(15);
    c
}

/// A mask with only `cpu`, as rps_cpus takes it.
fn mask(cpu: usize) -> String {
    format!("{:x}", 1u32 << cpu)
}

struct Scenario {
    pair: NetnsPair,
    _entries: Restore,
    state: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Scenario {
    /// The namespaces, receive processing steered to `rps_cpu` with RFS off, and `streams`
    /// running (until dropped, 90 s at most).
    fn new(tag: &str, rps_cpu: usize, streams: Streams) -> Scenario {
        Scenario::with_rps(tag, &mask(rps_cpu), streams)
    }

    /// The same with vb's rps_cpus set to `rps_mask`.
    fn with_rps(tag: &str, rps_mask: &str, streams: Streams) -> Scenario {
        let pair = NetnsPair::new(tag);
        let entries = Restore::new(ENTRIES);
        entries.set("0");
        pair.sysfs_write(&pair.b, &format!("{RX}/rps_cpus"), rps_mask);
        pair.sysfs_write(&pair.b, &format!("{RX}/rps_flow_cnt"), "0");
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = Scenario {
            pair,
            _entries: entries,
            state: tempfile::tempdir().expect("tempdir"),
            stop,
            threads: Vec::new(),
        };
        let mut streams = streams;
        streams.limit = Limit {
            chunks: u32::MAX,
            time: Duration::from_secs(90),
            stop: Some(Arc::clone(&s.stop)),
        };
        let pair = s.pair.names();
        s.threads.push(std::thread::spawn(move || {
            streams.run(&pair);
        }));
        std::thread::sleep(Duration::from_millis(500));
        s
    }

    fn of(case: &Case) -> Scenario {
        let mut streams = Streams::new(
            case.proto,
            5700,
            &comm(case.tag),
            case.reader_cpu,
            Limit {
                chunks: 0,
                time: Duration::ZERO,
                stop: None,
            },
        );
        streams.flows = case.flows;
        streams.sender_cpu = case.sender_cpu;
        streams.pace = case.pace;
        Scenario::new(case.tag, 1 - case.reader_cpu, streams)
    }

    /// A thread spinning on `cpu` until the scenario ends: that CPU stays saturated.
    fn busy_loop(&mut self, cpu: usize) {
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || {
            pin_to_cpu(cpu);
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }));
    }

    /// (rps_cpus, rps_flow_cnt, rps_sock_flow_entries) now.
    fn values(&self) -> (String, String, String) {
        (
            self.pair
                .sysfs_read(&self.pair.b, &format!("{RX}/rps_cpus")),
            self.pair
                .sysfs_read(&self.pair.b, &format!("{RX}/rps_flow_cnt")),
            std::fs::read_to_string(ENTRIES)
                .expect("read rps_sock_flow_entries")
                .trim()
                .to_string(),
        )
    }

    fn irqtune(&self) -> Command {
        let mut c = Command::new(irqtune_bin());
        c.args(["--netns", &self.pair.b]);
        c
    }

    fn tune(&self, extra: &[&str]) -> Command {
        let mut c = self.irqtune();
        c.args(["tune", "--iface", "vb", "--state-dir"])
            .arg(self.state.path())
            .args(extra);
        c
    }

    fn revert(&self) -> std::process::Output {
        self.irqtune()
            .args(["revert", "--state-dir"])
            .arg(self.state.path())
            .output()
            .expect("run revert")
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A row of the before/after table, "mismatch, busiest flows   100.0%   0.0%" -> (1.0, 0.0).
/// The steering plan's trial in tune's output, from its "Plan N of M" line to the next plan
/// or the summary: tune may try another lever first (the drop levers, when squeezes or drops
/// were seen in every window before), and these cases judge the steering.
fn steering_trial(out: &str) -> &str {
    let start = out
        .match_indices("\nPlan ")
        .map(|(i, _)| i + 1)
        .find(|&i| {
            out[i..]
                .lines()
                .next()
                .is_some_and(|l| l.contains("receive processing follows the readers"))
        })
        .unwrap_or_else(|| panic!("no steering plan tried:\n{out}"));
    let rest = &out[start..];
    let end = ["\nPlan ", "\nTried ("]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

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

/// The estimated change, in percent, of a judged row of a trial's before-and-after table.
fn change_of(trial: &str, row: &str) -> f64 {
    let line = trial
        .lines()
        .find(|l| l.trim_start().starts_with(row))
        .unwrap_or_else(|| panic!("no {row:?} row in:\n{trial}"));
    line.split_whitespace()
        .filter(|w| w.starts_with(['+', '-']))
        .find_map(|w| w.strip_suffix('%')?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no change in {line:?}"))
}

fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd.output().expect("run tune");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    (out.status.success(), text)
}

/// Fix trials of this run of the file that ended inconclusive (see [`tune_fixes`]).
static INCONCLUSIVE_FIXES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Tune finds the mismatch, plans the fix, measures the outcome on both sides, keeps it with
/// the mismatch gone; revert restores the scenario byte for byte.
fn tune_fixes(case: Case) {
    if !require_root(case.tag) {
        return;
    }
    let s = Scenario::of(&case);
    let original = s.values();
    let (ok, out) = run(s.tune(&["--duration", "4"]));
    assert!(ok, "{case:?}: tune failed:\n{out}");
    // The finding names the flows' process.
    assert!(
        out.lines()
            .skip_while(|l| !l.starts_with("Findings before"))
            .any(|l| l.contains(&comm(case.tag))),
        "{case:?}: no finding naming the flow:\n{out}"
    );
    let (to_reader, rfs) = (mask(case.reader_cpu), "rps_sock_flow_entries: 0 -> 32768");
    match case.proto {
        Proto::Udp => {
            assert!(
                out.contains("RFS cannot steer"),
                "{case:?}: says why RFS does not help:\n{out}"
            );
            let rps = format!(
                "rx-0/rps_cpus: {} -> {to_reader}",
                mask(1 - case.reader_cpu)
            );
            assert!(
                out.contains(&rps),
                "{case:?}: RPS toward the reader ({rps}):\n{out}"
            );
        }
        Proto::Tcp | Proto::ConnectedUdp => {
            assert!(out.contains(rfs), "{case:?}: RFS planned:\n{out}");
        }
    }
    let (before, after) = mismatch_row(steering_trial(&out));
    assert!(before >= 0.9, "{case:?}: mismatch before {before}:\n{out}");
    assert!(after <= 0.05, "{case:?}: mismatch after {after}:\n{out}");
    // Judged on the outcome, measured on both sides.
    for row in ["throughput, judged flows", "delivery-to-read, median"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(row)),
            "{case:?}: no {row:?} row:\n{out}"
        );
    }
    assert!(!out.contains("not measured"), "{case:?}:\n{out}");
    let verdict = steering_trial(&out)
        .lines()
        .find(|l| l.starts_with("Verdict:"))
        .unwrap_or_else(|| panic!("{case:?}: no verdict:\n{out}"));
    if verdict.starts_with("Verdict: INCONCLUSIVE") {
        // The rule may fail to show a fix is no worse when the workload drifts during the
        // trial (10 runs of this file: 1 such verdict in 140 fix trials, BENCHMARKS.md); it
        // then rolls back. One in a run of this file is that; two or more in its 14 fix
        // trials has a probability of about 0.5% at that rate: a regression.
        let n = INCONCLUSIVE_FIXES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        assert!(
            n <= 1 && verdict.contains("rolled back"),
            "{case:?}: {n} fix(es) inconclusive in this run: {verdict}"
        );
        assert_eq!(
            s.values(),
            original,
            "{case:?}: rolled back means the before state"
        );
        return;
    }
    assert!(
        verdict.contains("; kept.") && !verdict.starts_with("Verdict: WORSE"),
        "{case:?}: the fix is kept: {verdict}"
    );
    assert_ne!(s.values(), original, "{case:?}: the change is in place");
    let rev = s.revert();
    assert!(
        rev.status.success(),
        "{case:?}: {}",
        String::from_utf8_lossy(&rev.stderr)
    );
    assert_eq!(
        s.values(),
        original,
        "{case:?}: revert restores the scenario byte for byte"
    );
}

macro_rules! cases {
    ($($name:ident: $proto:ident, flows $flows:literal, reader $r:literal, sender $s:expr, $pace:expr;)*) => {$(
        #[test]
        fn $name() {
            tune_fixes(Case {
                tag: stringify!($name),
                proto: Proto::$proto,
                flows: $flows,
                reader_cpu: $r,
                sender_cpu: $s,
                pace: $pace,
            });
        }
    )*};
}

// Every arrangement runs the same offered load (12 MB/s in all, open loop), so before and
// after are the same workload: a local sender that paced itself by sleeping would slow down
// when its own CPU takes on the receive processing, and the test would measure the sender.
// The sender sits on the other CPU than the readers, where the scheduler puts it, or (UDP)
// on the readers' CPU. Tags become namespace and thread names: short.
cases! {
    tcp_r1_s0: Tcp, flows 1, reader 1, sender Some(0), Pace::Rate(12_000_000);
    tcp_r0_s1: Tcp, flows 1, reader 0, sender Some(1), Pace::Rate(12_000_000);
    tcp_r1_any: Tcp, flows 1, reader 1, sender None, Pace::Rate(12_000_000);
    tcp_r0_any: Tcp, flows 1, reader 0, sender None, Pace::Rate(12_000_000);
    tcp8_r1_s0: Tcp, flows 8, reader 1, sender Some(0), Pace::Rate(1_500_000);
    tcp8_r0_any: Tcp, flows 8, reader 0, sender None, Pace::Rate(1_500_000);
    cudp_r1_s0: ConnectedUdp, flows 1, reader 1, sender Some(0), Pace::Rate(12_000_000);
    cudp_r0_any: ConnectedUdp, flows 1, reader 0, sender None, Pace::Rate(12_000_000);
    cudp8_r0_s1: ConnectedUdp, flows 8, reader 0, sender Some(1), Pace::Rate(1_500_000);
    udp_r1_s0: Udp, flows 1, reader 1, sender Some(0), Pace::Rate(12_000_000);
    udp_r0_any: Udp, flows 1, reader 0, sender None, Pace::Rate(12_000_000);
    udp_r1_s1: Udp, flows 1, reader 1, sender Some(1), Pace::Rate(12_000_000);
    udp8_r0_s1: Udp, flows 8, reader 0, sender Some(1), Pace::Rate(1_500_000);
}

kernel_test! {
    /// A TCP sender on the reader's CPU: after RFS that CPU runs the receive softirq inline in the
    /// sender's write, and the reader waits for the sender to yield it. Over 5 runs of 2 such
    /// arrangements the median wake-up moved by +1% to +44% (UDP's shorter receive path: -12% to
    /// -42%), a real cost near the 50% margin: tune may keep the fix or roll it back. Whichever it
    /// decides, the machine must be in the state it says.
    fn tcp_sender_on_the_readers_cpu_is_judged_and_left_as_the_verdict_says() {
        for reader in [1, 0] {
            let case = Case {
                tag: if reader == 1 {
                    "tcp_r1_s1"
                } else {
                    "tcp_r0_s0"
                },
                proto: Proto::Tcp,
                flows: 1,
                reader_cpu: reader,
                sender_cpu: Some(reader),
                pace: Pace::Rate(12_000_000),
            };
            let s = Scenario::of(&case);
            let original = s.values();
            let (ok, out) = run(s.tune(&["--duration", "4"]));
            assert!(ok, "{case:?}: tune failed:\n{out}");
            let (before, _) = mismatch_row(steering_trial(&out));
            assert!(before >= 0.9, "{case:?}: mismatch before {before}:\n{out}");
            let verdict = steering_trial(&out)
                .lines()
                .find(|l| l.starts_with("Verdict:"))
                .unwrap_or_else(|| panic!("{case:?}: no verdict:\n{out}"));
            if verdict.contains("; kept.") {
                assert_ne!(s.values(), original, "{case:?}: kept means in place");
                assert!(s.revert().status.success());
            } else {
                assert!(
                    verdict.starts_with("Verdict: WORSE") && verdict.contains("delivery-to-read"),
                    "{case:?}: rolled back only on the readers' wait: {verdict}"
                );
            }
            assert_eq!(
                s.values(),
                original,
                "{case:?}: the before state at the end"
            );
        }
    }
}

kernel_test! {
    /// The same fix on eight times the load, all eight readers on one CPU, the senders at a fixed
    /// rate: RFS moves every flow's receive processing onto that CPU, the readers queue behind it
    /// and wait several times longer for their data at the same throughput. The mismatch goes,
    /// the workload suffers: tune judges the workload and rolls it back. (Senders that pace
    /// themselves instead gain about 40% throughput from the CPU RFS frees, and tune keeps that
    /// as a tradeoff: the same fix, another workload, another verdict.)
    fn tune_rolls_back_rfs_that_overloads_the_readers_cpu() {
        let case = Case {
            tag: "tcp8heavy",
            proto: Proto::Tcp,
            flows: 8,
            reader_cpu: 1,
            sender_cpu: Some(0),
            pace: Pace::Rate(8_000_000),
        };
        let s = Scenario::of(&case);
        let original = s.values();
        let (ok, out) = run(s.tune(&["--duration", "4"]));
        assert!(ok, "tune failed:\n{out}");
        let (before, after) = mismatch_row(steering_trial(&out));
        assert!(before >= 0.9 && after <= 0.05, "RFS did its part:\n{out}");
        let verdict = steering_trial(&out)
            .lines()
            .find(|l| l.starts_with("Verdict:"))
            .unwrap_or_else(|| panic!("no verdict:\n{out}"));
        assert!(
            verdict.starts_with("Verdict: WORSE")
                && verdict.contains("delivery-to-read")
                && verdict.contains("rolled back"),
            "judged by the readers' wait, not the mismatch: {verdict}"
        );
        assert_eq!(s.values(), original, "the before state is back");
    }
}

kernel_test! {
    /// A plan that sends the receive processing away from the reader, onto the CPU a busy loop
    /// and the sender already saturate: the workload gets slower, tune measures it so and puts
    /// the before state back.
    fn tune_rolls_back_a_harmful_change() {
        let mut streams = Streams::new(
            Proto::Tcp,
            5790,
            "irqt-harm",
            1,
            Limit {
                chunks: 0,
                time: Duration::ZERO,
                stop: None,
            },
        );
        streams.pace = Pace::Unpaced;
        // Receive processing on the reader's CPU: nothing wrong to begin with.
        let mut s = Scenario::new("harm", 1, streams);
        s.busy_loop(0);
        let original = s.values();
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.json");
        let (ok, out) = run({
            let mut c = s.irqtune();
            c.args(["plan", "--iface", "vb", "--output"]).arg(&base);
            c
        });
        assert!(ok, "plan: {out}");
        // The plan file of this host and boot, its changes replaced by the harmful one.
        let mut plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&base).expect("plan")).expect("plan JSON");
        plan["changes"] = serde_json::json!([{
            "kind": "rps_cpus",
            "iface": "vb",
            "queue": 0,
            "path": format!("{RX}/rps_cpus"),
            "current": original.0,
            "proposed": "1",
            "reason": "test: receive processing onto the busy CPU, away from the reader",
            "evidence": "forced by the test"
        }]);
        let harm = dir.path().join("harm.json");
        std::fs::write(&harm, plan.to_string()).expect("write plan");
        let harm = harm.to_string_lossy().to_string();
        let (ok, out) = run(s.tune(&["--duration", "4", "--plan", &harm]));
        assert!(ok, "tune failed:\n{out}");
        let verdict = out
            .lines()
            .find(|l| l.starts_with("Verdict:"))
            .unwrap_or_else(|| panic!("no verdict:\n{out}"));
        assert!(
            verdict.contains("WORSE") && verdict.contains("rolled back"),
            "the harmful change is measured worse and undone: {verdict}\n{out}"
        );
        assert_eq!(s.values(), original, "the before state is back");
    }
}

/// Starts tune and returns once its stderr shows `phase`.
fn tune_until(s: &Scenario, extra: &[&str], phase: &str) -> std::process::Child {
    let mut child = s
        .tune(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tune");
    let stderr = child.stderr.take().expect("stderr is piped");
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

kernel_test! {
    fn interrupted_tune_leaves_the_before_state_or_revert_restores_it() {
        let s = Scenario::of(&Case {
            tag: "tuneint",
            proto: Proto::Tcp,
            flows: 1,
            reader_cpu: 1,
            sender_cpu: Some(0),
            pace: Pace::Sleeps,
        });
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
                // Killed mid-apply, the change is half made; killed during the trial, the machine
                // is in the before state or the after one (the trial alternates them).
                if phase == "tune 3/5" {
                    assert_ne!(
                        s.values(),
                        original,
                        "{what}: killed with changes in place (the test hit the window)"
                    );
                } else if s.values() == original {
                    continue;
                }
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
    }
}

kernel_test! {
    /// Two plans for one problem. Sixteen busy fixed-rate flows, all read on CPU 1, their receive
    /// processing spread over both CPUs by RPS (each flow's hash picks one): about half of them
    /// are read away from their softirq. The planner's first choice, RFS, moves every flow's
    /// processing onto the readers' CPU, where the readers then wait behind it: rolled back.
    /// Its next, keeping the processing off the readers' CPU, relieves them: kept. The record
    /// of the run names both plans and their verdicts.
    fn tune_keeps_the_second_plan_when_the_first_hurts() {
        let mut streams = Streams::new(
            Proto::Tcp,
            5800,
            "irqt-two",
            1,
            Limit {
                chunks: 0,
                time: Duration::ZERO,
                stop: None,
            },
        );
        // Sixteen flows, so that the hash leaves all of them on one CPU once in 2^15 boots.
        streams.flows = 16;
        streams.pace = Pace::Rate(4_000_000);
        let s = Scenario::with_rps("two", "3", streams);
        let original = s.values();
        let (ok, out) = run(s.tune(&["--duration", "4", "--max-trials", "2"]));
        assert!(ok, "tune failed:\n{out}");
        let verdicts: Vec<&str> = out.lines().filter(|l| l.starts_with("Verdict:")).collect();
        assert_eq!(verdicts.len(), 2, "two trials:\n{out}");
        // The harm is measured by the readers' wait, whose window medians are spread widely here
        // (16 flows, half of them crossing CPUs before the change): in the study the first plan
        // was WORSE 10 of 10 at +65% to +210%, and a CI run met +38% at a 37% spread, which 15
        // windows a side cannot separate from 10% (INCONCLUSIVE). Either way it is not kept:
        // rolled back, its estimated change in the harmful direction, and the next plan tried.
        assert!(
            (verdicts[0].starts_with("Verdict: WORSE")
                || verdicts[0].starts_with("Verdict: INCONCLUSIVE"))
                && verdicts[0].contains("rolled back"),
            "RFS onto the readers' CPU hurts them: {}",
            verdicts[0]
        );
        let wait = change_of(steering_trial(&out), "delivery-to-read, median");
        assert!(
            wait > 0.0,
            "RFS onto the readers' CPU makes them wait longer ({wait:+.1}%):\n{out}"
        );
        assert!(
            verdicts[1].contains("; kept."),
            "keeping the processing off the readers' CPU is kept: {}",
            verdicts[1]
        );
        let tried: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("Tried (2)"))
            .skip(1)
            .take(2)
            .collect();
        assert!(
            tried.len() == 2
                && tried[0].contains("follows the readers")
                && tried[0].ends_with("rolled back")
                && tried[1].contains("other CPUs than the readers'")
                && tried[1].ends_with("kept"),
            "the summary ranks both: {tried:?}\n{out}"
        );
        // In place: RPS on CPU 0 only, RFS as it was.
        let now = s.values();
        assert_eq!(
            (now.0.trim_start_matches('0'), &now.1, &now.2),
            ("1", &original.1, &original.2),
            "the second plan's state: {now:?}"
        );
        // The record names both plans and their verdicts.
        let record = std::fs::read_dir(s.state.path())
            .expect("state dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("tune-"))
            })
            .expect("a tune record in the state dir");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&record).expect("read record"))
                .expect("record JSON");
        let tried = r["tried"].as_array().expect("tried");
        assert_eq!(tried.len(), 2, "{r}");
        assert_eq!(tried[0]["kept"], false);
        let printed = if verdicts[0].starts_with("Verdict: WORSE") {
            "worse"
        } else {
            "undecided"
        };
        assert_eq!(
            tried[0]["verdict"]["conclusion"], printed,
            "the record's first verdict is the printed one: {}",
            verdicts[0]
        );
        assert_eq!(tried[1]["kept"], true);
        assert_eq!(tried[1]["plan"]["strategy"], "away_from_readers");
        let rev = s.revert();
        assert!(
            rev.status.success(),
            "{}",
            String::from_utf8_lossy(&rev.stderr)
        );
        assert_eq!(s.values(), original, "revert restores the spread");
    }
}
