//! Helpers for irqtune's kernel tests: root checks, network namespaces joined by a veth,
//! sysfs/sysctl values restored on drop, CPU pinning.
//!
//! Every test creates what it uses and removes it on drop, also when it panics. Traffic only
//! goes to addresses inside the namespaces a test created.

pub mod qemu;

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use irq_user::{
    system::preflight,
    system::probes::{ProbeOptions, Probes},
};

/// Whether the kernel tests can run. Without root they cannot; outside CI that is said loudly
/// and the test returns, in CI (CI set) it is a failure.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: kernel tests must run in CI, and they need root");
    }
    eprintln!("NOT RUN: {test} needs root (loads eBPF, creates network namespaces); run `cargo xtask test` as root");
    false
}

/// A kernel test: runs as root (in CI it must, and fails otherwise); elsewhere says loudly on
/// stderr that it did not run, and returns.
///
/// ```ignore
/// kernel_test! {
///     fn counts_match() { /* ... */ }
/// }
/// ```
#[macro_export]
macro_rules! kernel_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            if !$crate::require_root(stringify!($name)) {
                return;
            }
            $body
        }
    };
}

pub fn load_probes(opts: &ProbeOptions) -> Probes {
    let env = preflight::check().unwrap_or_else(|p| panic!("{p}"));
    Probes::load(&env, opts).expect("load and attach the probes")
}

pub fn sh(cmd: &str) -> String {
    irqtune_testbed::sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) {
    irqtune_testbed::pin_to_cpu(cpu).unwrap_or_else(|e| panic!("pin to CPU {cpu}: {e}"));
}

pub use irqtune_testbed::name_thread;

/// Moves the calling thread into a named network namespace.
pub fn enter_netns(ns: &str) {
    irqtune_testbed::enter_netns(ns).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
}

/// Two network namespaces joined by a veth pair (see [`irqtune_testbed::NetnsPair`]), with
/// the tests' convention: a failure panics naming what failed.
pub struct NetnsPair(irqtune_testbed::NetnsPair);

impl std::ops::Deref for NetnsPair {
    type Target = irqtune_testbed::NetnsPair;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl NetnsPair {
    pub fn new(tag: &str) -> Self {
        NetnsPair::with_queues(tag, 1)
    }

    /// Each veth end with `queues` rx and tx queues.
    pub fn with_queues(tag: &str, queues: u32) -> Self {
        NetnsPair(
            irqtune_testbed::NetnsPair::with_queues(tag, queues)
                .unwrap_or_else(|e| panic!("namespaces for {tag}: {e}")),
        )
    }

    /// Writes a sysfs value as seen from inside namespace `ns`.
    pub fn sysfs_write(&self, ns: &str, path: &str, value: &str) {
        self.0
            .sysfs_write(ns, path, value)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn sysfs_read(&self, ns: &str, path: &str) -> String {
        self.0
            .sysfs_read(ns, path)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same names and addresses, for another thread; dropping it removes nothing.
    pub fn names(&self) -> NetnsPair {
        NetnsPair(self.0.names())
    }
}

/// A file value restored on drop (see [`irqtune_testbed::Restore`]); failures panic.
pub struct Restore(irqtune_testbed::Restore);

impl Restore {
    pub fn new(path: impl AsRef<Path>) -> Self {
        let p = path.as_ref();
        Restore(
            irqtune_testbed::Restore::new(p)
                .unwrap_or_else(|e| panic!("read {}: {e}", p.display())),
        )
    }

    pub fn set(&self, value: &str) {
        self.0
            .set(value)
            .unwrap_or_else(|e| panic!("write {value}: {e}"));
    }

    pub fn original(&self) -> &str {
        self.0.original()
    }
}

/// The irqtune binary built by `cargo xtask test` (IRQTUNE_BIN), or the release build.
pub fn irqtune_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IRQTUNE_BIN") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/irqtune");
    assert!(p.is_file(), "irqtune binary not found: run through `cargo xtask test` or build it with cargo build --release -p irq-user");
    p
}

/// Names of loaded BPF programs (`bpftool prog show`), as the kernel keeps them (15 chars).
pub fn loaded_program_names() -> Vec<String> {
    let out = sh("bpftool prog show -j");
    let v: serde_json::Value = serde_json::from_str(&out).expect("bpftool JSON");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// irqtune's program names. bpftool prints the full name from BTF, or the kernel's copy cut
/// to 15 characters when there is no BTF: both match.
pub fn irqtune_programs_loaded() -> Vec<String> {
    let ours: Vec<&str> = irq_user::system::probes::PROBES
        .iter()
        .flat_map(|p| p.program_names())
        .collect();
    loaded_program_names()
        .into_iter()
        .filter(|n| {
            ours.iter()
                .any(|o| *o == n || (n.len() == 15 && o.starts_with(n.as_str())))
        })
        .collect()
}

/// Relative difference |a - b| / b.
pub fn rel_diff(a: u64, b: u64) -> f64 {
    (a as f64 - b as f64).abs() / (b.max(1) as f64)
}

/// Whether a probe's count `seen` agrees with /proc's `counted`: never more than the
/// `allowed` arrivals between the reads above it, and below it by at most those and the
/// `not_handed` runs the kernel did not hand to the probe.
pub fn agrees_with_proc(seen: u64, counted: u64, allowed: u64, not_handed: u64) -> bool {
    seen <= counted + allowed && counted - seen.min(counted) <= allowed + not_handed
}

/// A duration in nanoseconds, saturating.
pub fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The most events that arrive within `gap_ns` of a window of `duration_ns` that saw `count`,
/// but with probability 1e-4: arrivals Poisson at the window's mean rate, in bursts of `burst`
/// events each (one I/O request's several interrupts), a burst cut by the gap counted whole.
/// The bound on how far two counters read `gap_ns` apart can disagree.
pub fn arrivals_within(count: u64, duration_ns: u64, gap_ns: u64, burst: u64) -> u64 {
    let burst = burst.max(1);
    let mean = count as f64 / burst as f64 * gap_ns as f64 / duration_ns.max(1) as f64;
    // Smallest k with P(N > k) <= 1e-4, summing the Poisson pmf.
    let (mut k, mut pmf) = (0u64, (-mean).exp());
    let mut cdf = pmf;
    while 1.0 - cdf > 1e-4 && k < 1_000_000 {
        k += 1;
        pmf *= mean / k as f64;
        cdf += pmf;
    }
    // A burst straddling either end of the gap adds one more.
    (k + 1) * burst
}

/// How long a generated stream runs: at most `chunks` writes and `time`, and until `stop` is
/// set when there is one.
#[derive(Clone)]
pub struct Limit {
    pub chunks: u32,
    pub time: Duration,
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Limit {
    fn done(&self, i: u32, start: Instant) -> bool {
        i >= self.chunks
            || start.elapsed() > self.time
            || self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// How a sender spaces its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the sender can.
    Unpaced,
    /// A short sleep after every few writes: the rate then depends on what each write costs
    /// the sender's CPU (a local, closed-loop sender).
    Sleeps,
    /// This many bytes per second whatever each write costs (an open-loop sender, like a
    /// remote one whose rate does not depend on this machine's CPUs), with at most 20 ms of
    /// catch-up after a stall.
    Rate(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    /// UDP whose receiver is connected to its sender: RFS can steer it.
    ConnectedUdp,
    /// UDP to a bound, unconnected receiver: RFS cannot steer it (no flow hash recorded).
    Udp,
}

/// Streams from namespace a to receivers in namespace b: `flows` of them on consecutive
/// ports from `port`, every receiver thread pinned to `reader_cpu` and named `comm`, every
/// sender thread pinned to `sender_cpu` (None: the scheduler places it). Paced so the
/// receivers keep up: deliveries then mostly happen in softirq context, not from a TCP
/// socket's backlog when the reader releases the socket lock (`paced: false` sends as fast
/// as the sender can).
#[derive(Clone)]
pub struct Streams {
    pub proto: Proto,
    pub v6: bool,
    pub pace: Pace,
    pub flows: u16,
    pub port: u16,
    pub comm: String,
    pub reader_cpu: usize,
    pub sender_cpu: Option<usize>,
    pub limit: Limit,
    /// Counted up at every read, while the streams run (None: not counted live).
    pub live_reads: Option<Arc<AtomicU64>>,
}

impl Streams {
    pub fn new(proto: Proto, port: u16, comm: &str, reader_cpu: usize, limit: Limit) -> Self {
        Streams {
            proto,
            v6: false,
            pace: Pace::Sleeps,
            flows: 1,
            port,
            comm: comm.to_string(),
            reader_cpu,
            sender_cpu: Some(0),
            limit,
            live_reads: None,
        }
    }

    /// Runs them to the end of the limit; per flow, the receiver's address and the reads
    /// it made.
    pub fn run(&self, pair: &NetnsPair) -> Vec<(SocketAddr, u64)> {
        let (ip_a, ip_b) = if self.v6 {
            (&pair.ip6_a, &pair.ip6_b)
        } else {
            (&pair.ip_a, &pair.ip_b)
        };
        let ip_a: IpAddr = ip_a.parse().expect("ip");
        let ip_b: IpAddr = ip_b.parse().expect("ip");
        let mut receivers = Vec::new();
        let mut ready = Vec::new();
        for i in 0..self.flows {
            let server = SocketAddr::new(ip_b, self.port + i);
            let client = SocketAddr::new(ip_a, self.port + i + 1000);
            let (tx, rx) = std::sync::mpsc::channel();
            ready.push(rx);
            let (ns, cpu, comm, proto, live) = (
                pair.b.clone(),
                self.reader_cpu,
                self.comm.clone(),
                self.proto,
                self.live_reads.clone(),
            );
            receivers.push(std::thread::spawn(move || {
                enter_netns(&ns);
                pin_to_cpu(cpu);
                name_thread(&comm);
                receive(proto, server, client, live, move || {
                    tx.send(()).expect("ready")
                })
            }));
        }
        for r in ready {
            r.recv_timeout(Duration::from_secs(5))
                .expect("receiver ready");
        }
        let mut senders = Vec::new();
        for i in 0..self.flows {
            let server = SocketAddr::new(ip_b, self.port + i);
            let client = SocketAddr::new(ip_a, self.port + i + 1000);
            let (ns, cpu, proto, limit) = (
                pair.a.clone(),
                self.sender_cpu,
                self.proto,
                self.limit.clone(),
            );
            let pace = self.pace;
            senders.push(std::thread::spawn(move || {
                enter_netns(&ns);
                if let Some(cpu) = cpu {
                    pin_to_cpu(cpu);
                }
                send(proto, pace, server, client, &limit);
            }));
        }
        for s in senders {
            s.join().expect("sender");
        }
        receivers
            .into_iter()
            .map(|r| r.join().expect("receiver"))
            .collect()
    }
}

/// One receiver: binds, says it is ready, reads until the sender is done; its address and
/// how many reads returned data.
fn receive(
    proto: Proto,
    server: SocketAddr,
    client: SocketAddr,
    live: Option<Arc<AtomicU64>>,
    ready: impl FnOnce(),
) -> (SocketAddr, u64) {
    let counted = || {
        if let Some(l) = &live {
            l.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Small reads, so the reader records its CPU often (sock_rps_record_flow) and reads as
    // data arrives rather than in a few large gulps.
    let mut buf = [0u8; 4096];
    let mut reads = 0;
    match proto {
        Proto::Tcp => {
            let l = TcpListener::bind(server).expect("bind");
            ready();
            let (mut s, _) = l.accept().expect("accept");
            while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
                reads += 1;
                counted();
            }
        }
        Proto::Udp | Proto::ConnectedUdp => {
            let s = std::net::UdpSocket::bind(server).expect("bind");
            if proto == Proto::ConnectedUdp {
                s.connect(client).expect("connect to the sender");
            }
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            ready();
            while let Ok(n) = s.recv(&mut buf) {
                if n == 1 && buf[0] == 0 {
                    break; // end marker
                }
                reads += 1;
                counted();
            }
        }
    }
    (server, reads)
}

/// Sleeps as `pace` asks after write `i` (0-based) of `size` bytes.
struct Pacer {
    pace: Pace,
    /// When the schedule started, moved forward after stalls.
    origin: Instant,
    sent: u64,
}

impl Pacer {
    fn after_write(&mut self, i: u32, size: u64, every: u32) {
        self.sent += size;
        match self.pace {
            Pace::Unpaced => {}
            Pace::Sleeps => {
                if i.is_multiple_of(every) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Pace::Rate(rate) => {
                let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
                let now = self.origin.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > Duration::from_millis(20) {
                    self.origin += now - due - Duration::from_millis(20);
                }
            }
        }
    }
}

fn send(proto: Proto, pace: Pace, server: SocketAddr, client: SocketAddr, limit: &Limit) {
    let start = Instant::now();
    let mut pacer = Pacer {
        pace,
        origin: start,
        sent: 0,
    };
    let mut i = 0;
    match proto {
        Proto::Tcp => {
            let mut s = TcpStream::connect(server).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let chunk = [0x42u8; 1024];
            while !limit.done(i, start) {
                s.write_all(&chunk).expect("send");
                pacer.after_write(i, chunk.len() as u64, 4);
                i += 1;
            }
        }
        Proto::Udp | Proto::ConnectedUdp => {
            // From a fixed port: a connected receiver only accepts its peer's datagrams.
            let s = std::net::UdpSocket::bind(client).expect("bind sender");
            let payload = [0x42u8; 512];
            while !limit.done(i, start) {
                let _ = s.send_to(&payload, server);
                pacer.after_write(i, payload.len() as u64, 8);
                i += 1;
            }
            let _ = s.send_to(&[0u8], server);
        }
    }
}

/// A TCP receiver fed from namespace a for a bounded time; returns its address.
pub fn tcp_flow(
    pair: &NetnsPair,
    v6: bool,
    port: u16,
    comm: &str,
    reader_cpu: usize,
) -> SocketAddr {
    let limit = Limit {
        chunks: 10_000,
        time: Duration::from_secs(4),
        stop: None,
    };
    tcp_stream(pair, v6, port, comm, reader_cpu, limit)
}

/// A TCP stream from namespace a (sender on CPU 0) to a receiver in b pinned to
/// `reader_cpu`, for as long as `limit` allows; returns the receiver's address.
pub fn tcp_stream(
    pair: &NetnsPair,
    v6: bool,
    port: u16,
    comm: &str,
    reader_cpu: usize,
    limit: Limit,
) -> SocketAddr {
    let mut s = Streams::new(Proto::Tcp, port, comm, reader_cpu, limit);
    s.v6 = v6;
    s.run(pair)[0].0
}

/// Datagrams to an unconnected UDP receiver in b pinned to `reader_cpu`, for as long as
/// `limit` allows; returns the receiver's address and how many datagrams it read.
pub fn udp_stream(
    pair: &NetnsPair,
    port: u16,
    comm: &str,
    reader_cpu: usize,
    limit: Limit,
) -> (SocketAddr, u64) {
    Streams::new(Proto::Udp, port, comm, reader_cpu, limit).run(pair)[0]
}

/// Writes and re-reads `blocks` 4 KiB blocks with O_DIRECT, so each is a request to the disk.
pub fn direct_io(dir: &Path, blocks: usize) {
    let path = dir.join(format!("irqtune-direct-io-{}", std::process::id()));
    let _cleanup = scopeguard(path.clone());
    let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("layout");
    // SAFETY: the layout is non-zero; the buffer is freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: buf is valid for 4096 bytes.
    let block = unsafe { std::slice::from_raw_parts_mut(buf, 4096) };
    block.fill(0x5a);
    {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {} with O_DIRECT: {e}", path.display()));
        for _ in 0..blocks {
            f.write_all(block).expect("direct write");
        }
    }
    {
        use std::io::Read as _;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .expect("open for direct read");
        for _ in 0..blocks {
            f.read_exact(block).expect("direct read");
        }
    }
    // SAFETY: allocated above with the same layout.
    unsafe { std::alloc::dealloc(buf, layout) };
}

struct RemoveOnDrop(std::path::PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
fn scopeguard(p: std::path::PathBuf) -> RemoveOnDrop {
    RemoveOnDrop(p)
}

/// Processes killed when the test ends, however it ends.
pub struct Procs(pub Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `sockperf ARGS` in namespace `ns`, pinned to `cpu` when given, its output discarded.
pub fn sockperf(ns: &str, cpu: Option<usize>, args: &[&str]) -> std::process::Child {
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", ns]);
    if let Some(cpu) = cpu {
        c.args(["taskset", "-c", &cpu.to_string()]);
    }
    c.arg("sockperf")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sockperf (installed by `cargo xtask setup --tests`)")
}

/// The CPUs an IRQ last ran on (/proc/irq/N/effective_affinity_list), as JSON numbers compare.
pub fn effective_cpus(irq: u32) -> Vec<u64> {
    let list = std::fs::read_to_string(format!("/proc/irq/{irq}/effective_affinity_list"))
        .unwrap_or_else(|e| panic!("IRQ {irq}'s effective affinity: {e}"));
    irq_user::model::cpulist::parse(list.trim())
        .unwrap_or_else(|e| panic!("IRQ {irq}'s effective affinity {list:?}: {e}"))
        .into_iter()
        .map(u64::from)
        .collect()
}
