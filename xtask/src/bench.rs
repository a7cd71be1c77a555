//! `cargo xtask bench`: the probes' kernel cost per event, next to libbpf-tools' `softirqs -d`
//! and `hardirqs -d` on the same tracepoints, under the same generated load, in one run.
//!
//! The cost is the kernel's own accounting: with `kernel.bpf_stats_enabled=1`, `bpftool prog
//! show` reports each program's run_time_ns and run_cnt; their deltas over the load window give
//! ns per invocation. Load: TCP over loopback in small writes (NET_RX softirqs) and O_DIRECT
//! writes to a file under /var/tmp (disk IRQs), both bounded in time.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::fs::OpenOptionsExt as _,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{build_irqtune, is_root, setup};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds of load per tool.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Length of the recording whose user-space CPU is measured and which is then reported.
    #[arg(long, default_value_t = 60)]
    record_seconds: u64,
    /// Minutes `irqtune watch` runs under load for its CPU and memory footprint (0: skip).
    #[arg(long, default_value_t = 10)]
    watch_minutes: u64,
    /// Runs before and after `irqtune tune` in the effect benchmark.
    #[arg(long, default_value_t = 5)]
    effect_runs: usize,
    /// Rounds of the workload benchmark (every mode once per round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of each workload measurement (UDP rate, TCP round trips, TCP stream).
    #[arg(long, default_value_t = 5)]
    workload_seconds: u64,
    /// Run only these parts (repeatable): probes, record, watch, effect, workload, scale.
    #[arg(long = "only", value_enum)]
    only: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Kernel cost per event of each probe, next to libbpf-tools.
    Probes,
    /// `record`'s user-space CPU and `report`'s time.
    Record,
    /// `watch`'s CPU and memory over minutes.
    Watch,
    /// What `tune` changes for throughput and latency on the mismatch scenario.
    Effect,
    /// What irqtune costs a small-packet workload: sockperf and iperf3 with nothing, watch,
    /// record, record --no-flows and the libbpf-tools pair loaded, interleaved (about 10
    /// minutes).
    Workload,
    /// Kernel map memory, watch's RSS and CPU, profile size and report time in QEMU guests
    /// with 2, 64 and 240 possible CPUs and a 32-queue NIC (about 20 minutes).
    Scale,
}

/// (utime + stime in clock ticks, VmRSS in KiB) of a running process.
fn proc_usage(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok((utime, stime, rss))
}

/// `irqtune watch` with its defaults (10 s interval, flows sampled 1 in 16) under load for
/// `minutes`: user CPU from minute 1 to the end, RSS at 1 minute and at the end.
fn watch_footprint(bin: &str, minutes: u64) -> anyhow::Result<()> {
    if minutes == 0 {
        return Ok(());
    }
    println!("bench: irqtune watch for {minutes} min under load ...");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(stop.clone())?;
    let mut child = Command::new(bin)
        .args(["watch", "--listen", "127.0.0.1:19812"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start irqtune watch")?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(60));
    let (u1, s1, rss1) = proc_usage(pid)?;
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(60 * (minutes - 1).max(1)));
    let (u2, s2, rss2) = proc_usage(pid)?;
    let window = t1.elapsed().as_secs_f64();
    // SAFETY: signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!("\n| irqtune watch, defaults, under load | value |\n|---|---|");
    println!(
        "| user CPU, minute 1 to {minutes} | {:.3} s = {:.3}% of one core |",
        (u2 - u1) as f64 / hz,
        100.0 * (u2 - u1) as f64 / hz / window
    );
    println!(
        "| system CPU, same window | {:.3} s = {:.3}% of one core |",
        (s2 - s1) as f64 / hz,
        100.0 * (s2 - s1) as f64 / hz / window
    );
    println!("| RSS after 1 min | {rss1} KiB |");
    println!(
        "| RSS after {minutes} min | {rss2} KiB ({:+.1}%) |",
        100.0 * (rss2 as f64 - rss1 as f64) / rss1.max(1) as f64
    );
    Ok(())
}

/// User and system CPU of a child that ended, from wait4's rusage.
fn wait_rusage(child: &Child) -> anyhow::Result<(Duration, Duration, i32)> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((tv(ru.ru_utime), tv(ru.ru_stime), status))
}

/// `irqtune record` for `seconds` under load: its user-space CPU share; then `irqtune report`
/// of that profile in every format, timed.
fn record_and_report(bin: &str, seconds: u64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("irqtune-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let profile = dir.join("profile.json");
    println!("bench: irqtune record --duration {seconds} under load ...");
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(stop.clone())?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["record", "--duration", &seconds.to_string(), "--output"])
        .arg(&profile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start irqtune record")?;
    let (user, sys, status) = wait_rusage(&child)?;
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if status != 0 {
        bail!("irqtune record exited with status {status}");
    }
    let size = std::fs::metadata(&profile)?.len();
    println!("\n| irqtune record, {seconds} s under load | value |\n|---|---|");
    println!("| wall time | {:.1} s |", wall.as_secs_f64());
    println!(
        "| user CPU | {:.3} s = {:.3}% of one core |",
        user.as_secs_f64(),
        100.0 * user.as_secs_f64() / wall.as_secs_f64()
    );
    println!(
        "| system CPU (map reads, loading) | {:.3} s = {:.3}% of one core |",
        sys.as_secs_f64(),
        100.0 * sys.as_secs_f64() / wall.as_secs_f64()
    );
    println!("| profile size | {} KiB |", size / 1024);
    println!("\n| irqtune report of that profile | best of 5 |\n|---|---|");
    for format in ["text", "json", "csv", "html", "prometheus", "hdrlog"] {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let out = Command::new(bin)
                .args(["report", "--format", format, "--output"])
                .arg(dir.join(format!("report.{format}")))
                .arg(&profile)
                .output()?;
            if !out.status.success() {
                bail!(
                    "report --format {format}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            best = best.min(t.elapsed());
        }
        println!("| --format {format} | {:.1} ms |", best.as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const TRACEPOINTS: [(&str, &str); 9] = [
    ("irq_handler_entry", "handler_en"),
    ("irq_handler_exit", "handler_ex"),
    ("softirq_raise", "softirq_raise"),
    ("softirq_entry", "softirq_entry"),
    ("softirq_exit", "softirq_exit"),
    ("napi_poll", "napi_poll"),
    ("netif_receive_skb", "netif_receive"),
    ("sk_data_ready", "sk_data_ready"),
    ("sock_recv_length", "sock_recv_len"),
];

#[derive(Clone, Copy, Default)]
struct ProgStats {
    run_time_ns: u64,
    run_cnt: u64,
}

/// Loaded programs by id: (name, stats).
fn programs() -> anyhow::Result<BTreeMap<u64, (String, ProgStats)>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .context("run bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // bpftool prints run_time_ns/run_cnt only while kernel.bpf_stats_enabled=1.
    #[derive(serde::Deserialize)]
    struct Prog {
        id: u64,
        #[serde(default)]
        name: String,
        #[serde(default)]
        run_time_ns: u64,
        #[serde(default)]
        run_cnt: u64,
    }
    let list: Vec<Prog> =
        serde_json::from_slice(&out.stdout).context("parse bpftool prog show -j")?;
    let progs = list
        .into_iter()
        .map(|p| {
            let stats = ProgStats {
                run_time_ns: p.run_time_ns,
                run_cnt: p.run_cnt,
            };
            (p.id, (p.name, stats))
        })
        .collect();
    Ok(progs)
}

/// Restores a sysctl on drop.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> anyhow::Result<Self> {
        let old = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
        std::fs::write(path, value).with_context(|| format!("write {path}"))?;
        Ok(Self { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// Loopback TCP in 1 KiB writes and O_DIRECT disk writes until `stop`.
fn load(stop: Arc<AtomicBool>) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let rx_stop = stop.clone();
    let rx = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 65536];
            while !rx_stop.load(Ordering::Relaxed)
                && s.read(&mut buf).map(|n| n > 0).unwrap_or(false)
            {}
        }
    });
    let tx_stop = stop.clone();
    let tx = std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return;
        };
        let _ = s.set_nodelay(true);
        let chunk = [0x42u8; 1024];
        while !tx_stop.load(Ordering::Relaxed) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let io_stop = stop;
    let io = std::thread::spawn(move || {
        let path =
            std::path::PathBuf::from(format!("/var/tmp/irqtune-bench-{}", std::process::id()));
        let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("layout");
        // SAFETY: non-zero layout; freed below.
        let buf = unsafe { std::alloc::alloc_zeroed(layout) };
        // SAFETY: valid for 4096 bytes.
        let block = unsafe { std::slice::from_raw_parts(buf, 4096) };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
        {
            let mut n = 0u64;
            while !io_stop.load(Ordering::Relaxed) {
                if f.write_all(block).is_err() {
                    break;
                }
                n += 1;
                if n.is_multiple_of(4096) {
                    use std::io::Seek as _;
                    let _ = f.seek(std::io::SeekFrom::Start(0));
                }
            }
        }
        let _ = std::fs::remove_file(&path);
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(buf, layout) };
    });
    Ok(vec![rx, tx, io])
}

struct Tool {
    label: &'static str,
    cmd: Vec<String>,
}

/// Per tracepoint: (ns per event, events) of the tool's program on it.
type Costs = BTreeMap<&'static str, (f64, u64)>;

fn measure(tool: &Tool, seconds: u64) -> anyhow::Result<Costs> {
    let before: BTreeSet<u64> = programs()?.keys().copied().collect();
    let mut child: Child = Command::new(&tool.cmd[0])
        .args(&tool.cmd[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", tool.cmd.join(" ")))?;
    let started = Instant::now();
    let ours = loop {
        let now = programs()?;
        let new: Vec<u64> = now
            .keys()
            .filter(|id| !before.contains(id))
            .copied()
            .collect();
        if new.len() >= 2 && started.elapsed() > Duration::from_millis(1500) {
            break new;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            bail!("{}: its programs did not load within 20 s", tool.label);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let s0 = programs()?;
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(stop.clone())?;
    std::thread::sleep(Duration::from_secs(seconds));
    let s1 = programs()?;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // SAFETY: signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();

    let mut costs = Costs::new();
    for id in ours {
        let (Some((name, a)), Some((_, b))) = (s0.get(&id), s1.get(&id)) else {
            continue;
        };
        let Some((tp, _)) = TRACEPOINTS.iter().find(|(_, key)| name.contains(key)) else {
            continue;
        };
        let cnt = b.run_cnt.saturating_sub(a.run_cnt);
        if cnt > 0 {
            costs.insert(
                tp,
                (
                    b.run_time_ns.saturating_sub(a.run_time_ns) as f64 / cnt as f64,
                    cnt,
                ),
            );
        }
    }
    Ok(costs)
}

/// The tools whose per-event cost is compared: irqtune's modes and the libbpf-tools pair,
/// each left running longer than the load lasts.
fn tools(bin: &str, seconds: u64) -> Vec<Tool> {
    let long = (seconds + 30).to_string();
    vec![
        Tool {
            label: "irqtune (tp_btf)",
            cmd: vec![
                bin.to_string(),
                "record".into(),
                "--duration".into(),
                long.clone(),
            ],
        },
        Tool {
            label: "irqtune (classic)",
            cmd: vec![
                bin.to_string(),
                "record".into(),
                "--classic".into(),
                "--duration".into(),
                long.clone(),
            ],
        },
        Tool {
            label: "irqtune watch",
            cmd: vec![
                bin.to_string(),
                "watch".into(),
                "--listen".into(),
                "127.0.0.1:19811".into(),
            ],
        },
        Tool {
            label: "softirqs -d",
            cmd: vec![
                "/usr/sbin/softirqs".into(),
                "-d".into(),
                long.clone(),
                "1".into(),
            ],
        },
        Tool {
            label: "hardirqs -d",
            cmd: vec![
                "/usr/sbin/hardirqs".into(),
                "-d".into(),
                long.clone(),
                "1".into(),
            ],
        },
    ]
}

/// Memory and CPU at many possible CPUs: the scale test in a QEMU guest.
fn scale(bin: &str) -> anyhow::Result<()> {
    crate::run(
        crate::cargo()
            .args([
                "test",
                "--release",
                "-p",
                "irqtune-tests",
                "--test",
                "scale",
                "--",
            ])
            .args(["--ignored", "--exact", "scale_bench", "--nocapture"])
            .env("IRQTUNE_BIN", bin),
    )
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    setup::setup(setup::Needs::Tests)?;
    if !is_root() {
        bail!("the benchmark loads eBPF and sets kernel.bpf_stats_enabled: run it as root");
    }
    let bin = build_irqtune()?.display().to_string();
    if !std::path::Path::new("/sys/kernel/tracing/events").is_dir() {
        crate::run(Command::new("mount").args([
            "-t",
            "tracefs",
            "tracefs",
            "/sys/kernel/tracing",
        ]))?;
    }
    let _stats = Sysctl::set("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let tools = tools(&bin, args.seconds);
    let part = |p: Part| args.only.is_empty() || args.only.contains(&p);
    if part(Part::Probes) {
        probe_costs(&tools, args.seconds)?;
    }
    if part(Part::Record) {
        record_and_report(&bin, args.record_seconds)?;
    }
    if part(Part::Watch) {
        watch_footprint(&bin, args.watch_minutes)?;
    }
    if part(Part::Effect) {
        crate::effect::effect(&bin, args.effect_runs)?;
    }
    if part(Part::Scale) {
        scale(&bin)?;
    }
    if part(Part::Workload) {
        crate::workload::workload(
            std::path::Path::new(&bin),
            &crate::workload::Args {
                rounds: args.rounds,
                seconds: args.workload_seconds,
            },
        )?;
    }
    Ok(())
}

fn probe_costs(tools: &[Tool], seconds: u64) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for tool in tools {
        println!("bench: {} under {seconds} s of load ...", tool.label);
        results.push((tool.label, measure(tool, seconds)?));
    }

    println!(
        "\nns per event (events in the window), kernel.bpf_stats_enabled run_time_ns / run_cnt:\n"
    );
    print!("| tracepoint |");
    for (label, _) in &results {
        print!(" {label} |");
    }
    println!(" irqtune tp_btf / libbpf-tools |");
    println!("|---|{}---|", "---|".repeat(results.len()));
    for (tp, _) in TRACEPOINTS {
        print!("| {tp} |");
        for (_, costs) in &results {
            match costs.get(tp) {
                Some((ns, n)) => print!(" {ns:.0} ({n}) |"),
                None => print!(" - |"),
            }
        }
        let ours = results[0].1.get(tp).map(|c| c.0);
        let peer = results[3..]
            .iter()
            .find_map(|(_, c)| c.get(tp))
            .map(|c| c.0);
        match (ours, peer) {
            (Some(o), Some(p)) => println!(" {:.2}x |", o / p),
            _ => println!(" - |"),
        }
    }
    println!();
    Ok(())
}
