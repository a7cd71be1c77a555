//! `cargo xtask bench --only workload`: what irqtune costs the workload it watches. Real load
//! generators from Debian between two network namespaces joined by a veth, the sender pinned
//! to CPU 0 and the receiver to CPU 1; rounds in which every mode runs once, in an order that
//! rotates from round to round so a drift of the machine falls on every mode alike:
//!
//! - nothing loaded;
//! - `irqtune watch` with its defaults;
//! - `irqtune record` with its defaults, and with `--no-flows`;
//! - libbpf-tools `softirqs -d` and `hardirqs -d` together (the peers).
//!
//! Measured in each: the 64-byte UDP message rate (sockperf throughput as the sender; counted
//! where it is received, as the receiving namespace's UDP InDatagrams), TCP request/response
//! round trips (sockperf ping-pong, 64 bytes; p50 and p99 from its full log of every message)
//! and a TCP stream's bytes per second (iperf3, from its JSON). Ratios are taken within each
//! round against that round's "nothing", then the median over rounds.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use irqtune_testbed::NetnsPair;

const UDP_PORT: u16 = 11111;
const TCP_PORT: u16 = 11112;
const IPERF_PORT: u16 = 5201;
const WATCH_LISTEN: &str = "127.0.0.1:19813";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Nothing,
    Watch,
    Record,
    RecordNoFlows,
    Libbpf,
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::Nothing,
        Mode::Watch,
        Mode::Record,
        Mode::RecordNoFlows,
        Mode::Libbpf,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Nothing => "nothing loaded",
            Mode::Watch => "`irqtune watch` (defaults)",
            Mode::Record => "`irqtune record` (defaults)",
            Mode::RecordNoFlows => "`irqtune record --no-flows`",
            Mode::Libbpf => "libbpf-tools `softirqs -d` + `hardirqs -d`",
        }
    }
}

/// One mode's measurements in one round.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    udp_msgs_per_s: f64,
    rr_p50_us: f64,
    rr_p99_us: f64,
    stream_mb_per_s: f64,
}

/// A command inside namespace `ns`, pinned to `cpu`.
fn in_ns(ns: &str, cpu: usize, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        ns,
        "taskset",
        "-c",
        &cpu.to_string(),
        program,
    ]);
    c
}

/// Stops a child and reaps it (SIGINT first: record and the libbpf-tools print and detach on it).
fn stop(mut child: Child) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The servers of the three measurements, in namespace b on CPU 1, for the whole benchmark.
struct Servers {
    children: Vec<Child>,
}

impl Servers {
    fn start(pair: &NetnsPair) -> anyhow::Result<Servers> {
        let quiet = |mut c: Command| c.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let ip = pair.ip_b.as_str();
        let children = vec![
            quiet({
                let mut c = in_ns(&pair.b, 1, "sockperf");
                c.args(["server", "-i", ip, "-p", &UDP_PORT.to_string()]);
                c
            })
            .context(
                "start sockperf server (UDP); is sockperf installed? cargo xtask setup --tests",
            )?,
            quiet({
                let mut c = in_ns(&pair.b, 1, "sockperf");
                c.args(["server", "--tcp", "-i", ip, "-p", &TCP_PORT.to_string()]);
                c
            })
            .context("start sockperf server (TCP)")?,
            quiet({
                let mut c = in_ns(&pair.b, 1, "iperf3");
                c.args(["-s", "-B", ip, "-p", &IPERF_PORT.to_string()]);
                c
            })
            .context("start iperf3 server")?,
        ];
        std::thread::sleep(Duration::from_millis(800));
        Ok(Servers { children })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in self.children.drain(..) {
            stop(c);
        }
    }
}

/// Datagrams delivered to UDP sockets in namespace `ns` (Udp InDatagrams of /proc/net/snmp).
fn udp_in_datagrams(ns: &str) -> anyhow::Result<u64> {
    let text = irqtune_testbed::sh(&format!("ip netns exec {ns} cat /proc/net/snmp"))?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp rows in /proc/net/snmp of {ns}");
    };
    let col = names
        .split_whitespace()
        .position(|n| n == "InDatagrams")
        .context("no InDatagrams column")?;
    values
        .split_whitespace()
        .nth(col)
        .and_then(|v| v.parse().ok())
        .context("InDatagrams is not a number")
}

fn udp_rate(pair: &NetnsPair, secs: u64) -> anyhow::Result<f64> {
    let before = udp_in_datagrams(&pair.b)?;
    let t = Instant::now();
    let out = in_ns(&pair.a, 0, "sockperf")
        .args(["throughput", "-i", &pair.ip_b, "-p", &UDP_PORT.to_string()])
        .args(["-m", "64", "-t", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("sockperf throughput")?;
    let elapsed = t.elapsed().as_secs_f64();
    if !out.success() {
        bail!("sockperf throughput failed: {out}");
    }
    let after = udp_in_datagrams(&pair.b)?;
    Ok(after.saturating_sub(before) as f64 / elapsed)
}

/// Round trips from sockperf's full log: after its summary, a CSV of every message (`packet,
/// txTime(sec), rxTime(sec), latency(usec)`, the last being half the round trip).
fn full_log_rtts_us(path: &Path) -> anyhow::Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<f64> = l
                .split(',')
                .map(str::trim)
                .map(str::parse::<f64>)
                .collect::<Result<_, _>>()
                .ok()?;
            match f[..] {
                [_, tx, rx, ..] if rx > tx && tx > 0.0 => Some((rx - tx) * 1e6),
                _ => None,
            }
        })
        .collect();
    if rtts.is_empty() {
        bail!("no messages in sockperf's full log {}", path.display());
    }
    rtts.sort_by(f64::total_cmp);
    Ok(rtts)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ping_pong(pair: &NetnsPair, secs: u64, log: &Path) -> anyhow::Result<(f64, f64)> {
    let _ = std::fs::remove_file(log);
    let out = in_ns(&pair.a, 0, "sockperf")
        .args([
            "ping-pong",
            "--tcp",
            "-i",
            &pair.ip_b,
            "-p",
            &TCP_PORT.to_string(),
        ])
        .args(["-m", "64", "-t", &secs.to_string(), "--full-log"])
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("sockperf ping-pong")?;
    if !out.success() {
        bail!("sockperf ping-pong failed: {out}");
    }
    let rtts = full_log_rtts_us(log)?;
    Ok((quantile(&rtts, 0.5), quantile(&rtts, 0.99)))
}

fn stream(pair: &NetnsPair, secs: u64) -> anyhow::Result<f64> {
    let out = in_ns(&pair.a, 0, "iperf3")
        .args(["-c", &pair.ip_b, "-p", &IPERF_PORT.to_string()])
        .args(["-t", &secs.to_string(), "-J"])
        .stderr(Stdio::null())
        .output()
        .context("iperf3 client")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("iperf3's JSON report")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 8e6)
        .with_context(|| format!("no end.sum_received in iperf3's report: {}", v["error"]))
}

/// Whether `GET /metrics` answers 200 on `addr`.
fn metrics_up(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Id and name of every loaded BPF program (bpftool's JSON).
fn loaded_programs() -> Vec<(u64, String)> {
    Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Whether programs loaded since `before` include each of `names` (a name matches with or
/// without the `_btf` suffix: irqtune and the libbpf-tools load the BTF variant where the
/// kernel has it, and the two use the same names, hence "since").
fn loaded_since(before: &[(u64, String)], names: &[&str]) -> bool {
    let new: Vec<String> = loaded_programs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .map(|(_, n)| n)
        .collect();
    names.iter().all(|n| {
        new.iter()
            .any(|x| x == n || x.strip_suffix("_btf") == Some(n))
    })
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} did not come up within 60 s")
}

/// A mode's processes, stopped when dropped (also when starting or measuring failed).
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in self.0.drain(..) {
            stop(c);
        }
    }
}

/// Starts a mode and returns once its probes are in place.
fn start(mode: Mode, bin: &Path, dir: &Path) -> anyhow::Result<Running> {
    let mut running = Running(Vec::new());
    let mut spawn = |c: &mut Command| -> anyhow::Result<()> {
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {c:?}"))?;
        running.0.push(child);
        Ok(())
    };
    let before = loaded_programs();
    match mode {
        Mode::Nothing => {}
        Mode::Watch => {
            spawn(Command::new(bin).args(["watch", "--listen", WATCH_LISTEN]))?;
            wait_for("irqtune watch", || metrics_up(WATCH_LISTEN))?;
        }
        Mode::Record | Mode::RecordNoFlows => {
            let mut cmd = Command::new(bin);
            cmd.args(["record", "--duration", "3600", "--output"])
                .arg(dir.join("profile.json"));
            if mode == Mode::RecordNoFlows {
                cmd.arg("--no-flows");
            }
            spawn(&mut cmd)?;
            wait_for("irqtune record", || {
                loaded_since(&before, &["softirq_exit"])
            })?;
        }
        Mode::Libbpf => {
            spawn(Command::new("softirqs").args(["-d", "3600", "1"]))?;
            spawn(Command::new("hardirqs").args(["-d", "3600", "1"]))?;
            wait_for("libbpf-tools softirqs and hardirqs", || {
                loaded_since(&before, &["softirq_entry", "irq_handler_entry"])
            })?;
        }
    }
    Ok(running)
}

pub struct Args {
    pub rounds: usize,
    pub seconds: u64,
}

/// Runs the rounds and prints the tables (markdown, for BENCHMARKS.md).
pub fn workload(bin: &Path, args: &Args) -> anyhow::Result<()> {
    let pair = NetnsPair::with_queues("wl", 1).context("the benchmark's namespaces")?;
    let _servers = Servers::start(&pair)?;
    let dir = tempfile_dir()?;
    let log = dir.join("pingpong.csv");
    let mut samples: BTreeMap<Mode, Vec<Sample>> = BTreeMap::new();
    for round in 0..args.rounds {
        let order: Vec<Mode> = (0..Mode::ALL.len())
            .map(|i| Mode::ALL[(i + round) % Mode::ALL.len()])
            .collect();
        for mode in order {
            println!("bench workload: round {}, {} ...", round + 1, mode.name());
            let running = start(mode, bin, &dir)?;
            let measured = (|| -> anyhow::Result<Sample> {
                let udp = udp_rate(&pair, args.seconds)?;
                let (p50, p99) = ping_pong(&pair, args.seconds, &log)?;
                let mb = stream(&pair, args.seconds)?;
                Ok(Sample {
                    udp_msgs_per_s: udp,
                    rr_p50_us: p50,
                    rr_p99_us: p99,
                    stream_mb_per_s: mb,
                })
            })();
            drop(running);
            samples.entry(mode).or_default().push(measured?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_tables(&samples, args);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("irqtune-workload-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_tables(samples: &BTreeMap<Mode, Vec<Sample>>, args: &Args) {
    let base = &samples[&Mode::Nothing];
    println!(
        "\n{} rounds of {} s per measurement, modes interleaved (order rotated each round); ratio = median over rounds of (mode / nothing loaded in the same round)\n",
        args.rounds, args.seconds
    );
    println!("| mode | UDP 64 B msg/s (median, range) | vs nothing | TCP RR p50 | p99 | vs nothing (p50) | TCP stream MB/s | vs nothing |");
    println!("|---|---|---|---|---|---|---|---|");
    for (mode, s) in samples {
        let ratio =
            |f: fn(&Sample) -> f64| median(s.iter().zip(base).map(|(x, b)| f(x) / f(b)).collect());
        let col = |f: fn(&Sample) -> f64| s.iter().map(f).collect::<Vec<f64>>();
        let udp = col(|x| x.udp_msgs_per_s);
        let (lo, hi) = udp
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        println!(
            "| {} | {:.0}k ({:.0}k-{:.0}k) | {:.3} | {:.1} us | {:.1} us | {:.3} | {:.0} | {:.3} |",
            mode.name(),
            median(udp) / 1e3,
            lo / 1e3,
            hi / 1e3,
            ratio(|x| x.udp_msgs_per_s),
            median(col(|x| x.rr_p50_us)),
            median(col(|x| x.rr_p99_us)),
            ratio(|x| x.rr_p50_us),
            median(col(|x| x.stream_mb_per_s)),
            ratio(|x| x.stream_mb_per_s),
        );
    }
    println!("\nEvery round (UDP msg/s; RR p50/p99 us; stream MB/s):\n");
    println!(
        "| round | mode | UDP msg/s | RR p50 | RR p99 | stream MB/s |\n|---|---|---|---|---|---|"
    );
    for r in 0..args.rounds {
        for (mode, s) in samples {
            if let Some(x) = s.get(r) {
                println!(
                    "| {} | {} | {:.0} | {:.1} | {:.1} | {:.0} |",
                    r + 1,
                    mode.name(),
                    x.udp_msgs_per_s,
                    x.rr_p50_us,
                    x.rr_p99_us,
                    x.stream_mb_per_s
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_log_rows_become_round_trips_and_headers_are_skipped() {
        let dir = std::env::temp_dir().join(format!("irqtune-fl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log.csv");
        std::fs::write(
            &p,
            "sockperf: ---> percentile 50.000 =   63.888\n------------------------------\npacket, txTime(sec), rxTime(sec), latency(usec)\n0, 10.000000000, 10.000020000, 10.000\n1, 10.000100000, 10.000130000, 15.000\n",
        )
        .unwrap();
        let r = full_log_rtts_us(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert!(
            (r[0] - 20.0).abs() < 0.01 && (r[1] - 30.0).abs() < 0.01,
            "{r:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let v: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
    }
}
