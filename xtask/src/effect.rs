//! The effect of `irqtune tune` on the scenario it is proven on (see tests/tests/tune.rs): two
//! network namespaces joined by a veth, a receiver pinned to CPU 1, vb's receive processing
//! steered to CPU 0 only (rps_cpus=1, RFS off). Receiver throughput (TCP stream) and
//! request/response latency (64-byte ping-pong over TCP, p50 and p99) are measured several
//! times, and irqtune records the stream's delivery-to-read latency; then tune runs (with a
//! stream, so it has something to measure), then all of it is measured again; medians of the
//! runs, before and after, in one session. Everything is put back afterwards: tune's change
//! is reverted and the namespaces are removed.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

const NS_A: &str = "irqtb-a";
const NS_B: &str = "irqtb-b";
const IP_B: &str = "10.232.0.2";
const ENTRIES: &str = "/proc/sys/net/core/rps_sock_flow_entries";

fn sh(cmd: &str) -> anyhow::Result<String> {
    let out = Command::new("sh").args(["-c", cmd]).output()?;
    if !out.status.success() {
        bail!("`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces and the global RFS table, put back on drop.
struct Scenario {
    entries: String,
}

impl Scenario {
    fn new() -> anyhow::Result<Scenario> {
        let _ = sh(&format!("ip netns del {NS_A}; ip netns del {NS_B}"));
        let entries = fs::read_to_string(ENTRIES)?.trim().to_string();
        sh(&format!(
            "set -e; ip netns add {NS_A}; ip netns add {NS_B}
             ip link add va netns {NS_A} type veth peer name vb netns {NS_B}
             ip -n {NS_A} addr add 10.232.0.1/24 dev va; ip -n {NS_B} addr add {IP_B}/24 dev vb
             ip -n {NS_A} link set lo up; ip -n {NS_B} link set lo up
             ip -n {NS_A} link set va up; ip -n {NS_B} link set vb up
             ip netns exec {NS_B} sh -c 'echo 1 > /sys/class/net/vb/queues/rx-0/rps_cpus; echo 0 > /sys/class/net/vb/queues/rx-0/rps_flow_cnt'
             echo 0 > {ENTRIES}"
        ))?;
        Ok(Scenario { entries })
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = fs::write(ENTRIES, &self.entries);
        let _ = sh(&format!("ip netns del {NS_A}; ip netns del {NS_B}"));
    }
}

fn enter(ns: &str, cpu: usize) {
    let f = fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
    // SAFETY: setns and sched_setaffinity on the calling thread with valid arguments.
    unsafe {
        assert_eq!(
            libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET),
            0,
            "setns {ns}"
        );
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The receiver: in namespace b on CPU 1; a connection starting with b'S' is a stream (it
/// counts bytes until EOF and answers the count), b'R' is request/response (echo 64 bytes).
fn serve(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        enter(NS_B, 1);
        let l = TcpListener::bind((IP_B, 7000)).expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).expect("blocking");
            let _ = s.set_nodelay(true);
            let mut kind = [0u8];
            if s.read_exact(&mut kind).is_err() {
                continue;
            }
            let mut buf = vec![0u8; 65536];
            if kind[0] == b'S' {
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_le_bytes());
            } else {
                while s.read_exact(&mut buf[..64]).is_ok() {
                    if s.write_all(&buf[..64]).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

fn client<T: Send + 'static>(f: impl FnOnce(SocketAddr) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        enter(NS_A, 0);
        f(SocketAddr::new(IP_B.parse().expect("ip"), 7000))
    })
    .join()
    .expect("client")
}

/// Receiver throughput of one TCP stream for `secs` (or until `stop`), in MB/s (what the
/// receiver got). With `rate` (bytes/s), 1 KiB writes at that rate: a reader that waits for
/// its data, as an application fed at a fixed rate does.
fn stream(secs: f64, stop: Option<Arc<AtomicBool>>) -> f64 {
    stream_at(secs, stop, None)
}

fn stream_at(secs: f64, stop: Option<Arc<AtomicBool>>, rate: Option<f64>) -> f64 {
    client(move |addr| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"S").expect("kind");
        let chunk = vec![0x5au8; if rate.is_some() { 1024 } else { 16384 }];
        let start = Instant::now();
        let mut sent = 0f64;
        while start.elapsed().as_secs_f64() < secs
            && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
        {
            s.write_all(&chunk).expect("send");
            sent += chunk.len() as f64;
            if let Some(rate) = rate {
                let ahead = sent / rate - start.elapsed().as_secs_f64();
                if ahead > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(ahead));
                }
            }
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut got = [0u8; 8];
        s.read_exact(&mut got).expect("count");
        u64::from_le_bytes(got) as f64 / start.elapsed().as_secs_f64() / 1e6
    })
}

/// Round trips of 64 bytes: (p50, p99) in microseconds.
fn request_response(n: usize) -> (f64, f64) {
    client(move |addr| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.write_all(b"R").expect("kind");
        let mut buf = [0x11u8; 64];
        let mut rtts = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            s.write_all(&buf).expect("request");
            s.read_exact(&mut buf).expect("response");
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        rtts.sort_by(f64::total_cmp);
        (rtts[n / 2], rtts[n * 99 / 100])
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Runs {
    mbps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// Delivery-to-read wake-ups of the full-speed stream and of a 12 MB/s one, as irqtune
    /// recorded them: (p50, p99) in us, and the share of wake-ups on the delivering CPU.
    d2r: (f64, f64, f64),
    paced: (f64, f64, f64),
}

/// Rate of the paced stream: what the tune tests run, a reader that waits for its data.
const PACED: f64 = 12e6;

/// irqtune's record of a 3 s stream (at `rate`, or full speed): delivery-to-read wake-up p50
/// and p99 (us) over all flows, and the share of wake-ups on the delivering CPU.
fn record_stream(bin: &str, rate: Option<f64>) -> anyhow::Result<(f64, f64, f64)> {
    let profile = std::env::temp_dir().join(format!("irqtune-effect-{}.json", std::process::id()));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let traffic = std::thread::spawn(move || stream_at(10.0, Some(s), rate));
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(bin)
        .args(["--netns", NS_B, "record", "--duration", "3", "--output"])
        .arg(&profile)
        .output()
        .context("run irqtune record")?;
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    if !out.status.success() {
        bail!("record failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let p: serde_json::Value = serde_json::from_str(&fs::read_to_string(&profile)?)?;
    let _ = fs::remove_file(&profile);
    let d = &p["flow_totals"]["delivery_to_read"];
    let n = |k: &str| d[k]["summary"]["count"].as_u64().unwrap_or(0);
    let (same, cross) = (n("same_cpu"), n("cross_cpu"));
    // The merged percentile is the larger placement's when one dominates, as here (all reads
    // one way or the other); report the dominant one's.
    let main = if same >= cross {
        "same_cpu"
    } else {
        "cross_cpu"
    };
    let us = |q: &str| d[main]["summary"][q].as_f64().unwrap_or(0.0) / 1e3;
    Ok((
        us("p50_ns"),
        us("p99_ns"),
        same as f64 / (same + cross).max(1) as f64,
    ))
}

fn measure(bin: &str, runs: usize) -> anyhow::Result<Runs> {
    let mut r = Runs {
        mbps: vec![],
        p50: vec![],
        p99: vec![],
        d2r: record_stream(bin, None)?,
        paced: record_stream(bin, Some(PACED))?,
    };
    for _ in 0..runs {
        r.mbps.push(stream(2.0, None));
        let (p50, p99) = request_response(5000);
        r.p50.push(p50);
        r.p99.push(p99);
    }
    Ok(r)
}

pub fn effect(bin: &str, runs: usize) -> anyhow::Result<()> {
    println!("bench: tune effect on the RPS-mismatch scenario ({runs} runs before and after) ...");
    let _scenario = Scenario::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let before = measure(bin, runs)?;

    // Tune measures what is going on: keep one stream running while it works.
    let state = std::env::temp_dir().join(format!("irqtune-effect-{}", std::process::id()));
    let tune_text = run_tune(bin, &state)?;
    let after = measure(bin, runs)?;
    let _ = Command::new(bin)
        .args(["--netns", NS_B, "revert", "--state-dir"])
        .arg(&state)
        .output();
    let _ = fs::remove_dir_all(&state);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();

    println!("\ntune's own account (plans, tables, verdicts):\n```\n{tune_text}```\n");
    print_effect(runs, &before, &after);
    Ok(())
}

/// Runs `irqtune tune` with one stream running (tune measures what is going on) and
/// returns its account from the first plan on.
fn run_tune(bin: &str, state: &std::path::Path) -> anyhow::Result<String> {
    let traffic_stop = Arc::new(AtomicBool::new(false));
    let ts = traffic_stop.clone();
    let traffic = std::thread::spawn(move || stream(120.0, Some(ts)));
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(bin)
        .args([
            "--netns",
            NS_B,
            "tune",
            "--iface",
            "vb",
            "--duration",
            "5",
            "--state-dir",
        ])
        .arg(state)
        .output()
        .context("run irqtune tune")?;
    traffic_stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "tune failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let from_plans: String = text
        .lines()
        .skip_while(|l| !l.starts_with("Plan "))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(from_plans)
}

/// The before and after table of the runs, and every run's numbers.
fn print_effect(runs: usize, before: &Runs, after: &Runs) {
    println!("| medians of {runs} runs | before tune | after tune | after / before |");
    println!("|---|---|---|---|");
    let row = |name: &str, b: f64, a: f64, unit: &str| {
        println!("| {name} | {b:.1} {unit} | {a:.1} {unit} | {:.2}x |", a / b);
    };
    row(
        "receiver throughput (TCP stream, 2 s)",
        median(before.mbps.clone()),
        median(after.mbps.clone()),
        "MB/s",
    );
    row(
        "request/response p50 (64 B, 5000)",
        median(before.p50.clone()),
        median(after.p50.clone()),
        "us",
    );
    row(
        "request/response p99",
        median(before.p99.clone()),
        median(after.p99.clone()),
        "us",
    );
    for (name, b, a) in [
        ("full-speed stream", before.d2r, after.d2r),
        ("12 MB/s stream", before.paced, after.paced),
    ] {
        row(
            &format!("{name}: delivery-to-read wake-up p50 (irqtune record, 3 s)"),
            b.0,
            a.0,
            "us",
        );
        row(&format!("{name}: wake-up p99"), b.1, a.1, "us");
        println!(
            "| {name}: wake-ups on the delivering CPU | {:.0}% | {:.0}% | |",
            b.2 * 100.0,
            a.2 * 100.0
        );
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "\nall runs: throughput before [{}] after [{}] MB/s",
        fmt(&before.mbps),
        fmt(&after.mbps)
    );
    println!(
        "p50 before [{}] after [{}] us; p99 before [{}] after [{}] us",
        fmt(&before.p50),
        fmt(&after.p50),
        fmt(&before.p99),
        fmt(&after.p99)
    );
}
