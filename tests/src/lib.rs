//! Helpers for irqtune's kernel tests: root checks, network namespaces joined by a veth,
//! sysfs/sysctl values restored on drop, CPU pinning.
//!
//! Every test creates what it uses and removes it on drop, also when it panics. Traffic only
//! goes to addresses inside the namespaces a test created.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use irq_user::{
    preflight,
    probes::{ProbeOptions, Probes},
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

pub fn load_probes(opts: &ProbeOptions) -> Probes {
    let env = preflight::check().unwrap_or_else(|p| panic!("{p}"));
    Probes::load(&env, opts).expect("load and attach the probes")
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin to CPU {cpu}"
        );
    }
}

/// Sets the calling thread's name (the `comm` the flow probes report).
pub fn name_thread(name: &str) {
    let c = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: valid NUL-terminated name of at most 15 bytes for the current thread.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Two network namespaces joined by a veth pair: `va` (10.231.N.1, fd00:231:N::1) in `a`,
/// `vb` (10.231.N.2, fd00:231:N::2) in `b`. Removed on drop.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub ip_a: String,
    pub ip_b: String,
    pub ip6_a: String,
    pub ip6_b: String,
}

impl NetnsPair {
    pub fn new(tag: &str) -> Self {
        NetnsPair::with_queues(tag, 1)
    }

    /// Like [`new`](Self::new), each veth end with `queues` rx and tx queues (a multi-queue
    /// device shows xps_cpus; single-queue ones do not).
    pub fn with_queues(tag: &str, queues: u32) -> Self {
        let pid = std::process::id();
        let a = format!("irqt-{tag}-a-{pid}");
        let b = format!("irqt-{tag}-b-{pid}");
        let n = pid % 200 + 1;
        let pair = NetnsPair {
            a: a.clone(),
            b: b.clone(),
            ip_a: format!("10.231.{n}.1"),
            ip_b: format!("10.231.{n}.2"),
            ip6_a: format!("fd00:231:{n}::1"),
            ip6_b: format!("fd00:231:{n}::2"),
        };
        // Remove leftovers of a killed run with the same names first.
        let _ = Command::new("ip").args(["netns", "del", &a]).output();
        let _ = Command::new("ip").args(["netns", "del", &b]).output();
        sh(&format!(
            "set -e
             ip netns add {a}; ip netns add {b}
             ip link add va numrxqueues {queues} numtxqueues {queues} netns {a} type veth peer name vb numrxqueues {queues} numtxqueues {queues} netns {b}
             ip -n {a} addr add {ipa}/24 dev va; ip -n {b} addr add {ipb}/24 dev vb
             ip -n {a} addr add {ip6a}/64 dev va nodad; ip -n {b} addr add {ip6b}/64 dev vb nodad
             ip -n {a} link set lo up; ip -n {b} link set lo up
             ip -n {a} link set va up; ip -n {b} link set vb up",
            ipa = pair.ip_a,
            ipb = pair.ip_b,
            ip6a = pair.ip6_a,
            ip6b = pair.ip6_b,
        ));
        pair
    }

    /// Writes a sysfs value as seen from inside namespace `ns` (`ip netns exec` mounts that
    /// namespace's sysfs), and reads it back.
    pub fn sysfs_write(&self, ns: &str, path: &str, value: &str) {
        sh(&format!("ip netns exec {ns} sh -c 'echo {value} > {path}'"));
    }

    pub fn sysfs_read(&self, ns: &str, path: &str) -> String {
        sh(&format!("ip netns exec {ns} cat {path}"))
            .trim()
            .to_string()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Moves the calling thread into a named network namespace (setns affects only this thread).
pub fn enter_netns(ns: &str) {
    let f = fs::File::open(format!("/var/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    // SAFETY: setns with a valid namespace fd.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// A file value (sysctl, sysfs, /proc/irq) restored to what it was when the guard was made.
pub struct Restore {
    path: PathBuf,
    original: String,
}

impl Restore {
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let original =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Restore { path, original }
    }

    pub fn set(&self, value: &str) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        f.write_all(value.as_bytes())
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", self.path.display()));
    }

    pub fn original(&self) -> &str {
        self.original.trim()
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let value = self.original.trim().to_string();
        if let Err(e) = fs::write(&self.path, &value) {
            eprintln!("could not restore {} to {value}: {e}", self.path.display());
        }
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
    let ours: Vec<&str> = irq_user::probes::PROBES
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

/// Runs `receive` in namespace b, pinned to `reader_cpu`, with thread name `comm` (it calls
/// `ready` once bound), and `send` in namespace a pinned to CPU 0; returns what `receive` did.
pub fn exchange<T: Send + 'static>(
    pair: &NetnsPair,
    reader_cpu: usize,
    comm: &str,
    receive: impl FnOnce(Box<dyn FnOnce() + Send>) -> T + Send + 'static,
    send: impl FnOnce() + Send + 'static,
) -> T {
    let (b, a, comm) = (pair.b.clone(), pair.a.clone(), comm.to_string());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        enter_netns(&b);
        pin_to_cpu(reader_cpu);
        name_thread(&comm);
        receive(Box::new(move || ready_tx.send(()).expect("ready")))
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    let sender = std::thread::spawn(move || {
        enter_netns(&a);
        pin_to_cpu(0);
        send();
    });
    sender.join().expect("sender");
    receiver.join().expect("receiver")
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

/// A TCP stream from namespace a to a receiver in b pinned to `reader_cpu`, paced so the
/// receiver keeps up, for as long as `limit` allows; returns the receiver's address.
pub fn tcp_stream(
    pair: &NetnsPair,
    v6: bool,
    port: u16,
    comm: &str,
    reader_cpu: usize,
    limit: Limit,
) -> SocketAddr {
    let ip_b = if v6 { &pair.ip6_b } else { &pair.ip_b };
    let server = SocketAddr::new(ip_b.parse::<IpAddr>().expect("ip"), port);
    let receive = move |ready: Box<dyn FnOnce() + Send>| {
        let l = TcpListener::bind(server).expect("bind");
        ready();
        let (mut s, _) = l.accept().expect("accept");
        // Small reads, so the reader records its CPU often (sock_rps_record_flow) and reads
        // as data arrives rather than in a few large gulps.
        let mut buf = [0u8; 4096];
        while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    };
    let send = move || {
        let mut s = TcpStream::connect(server).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let chunk = [0x42u8; 1024];
        let start = Instant::now();
        // Paced so the receiver keeps up: deliveries then mostly happen in softirq context,
        // not from the socket backlog when the reader releases the socket lock.
        let mut i = 0;
        while !limit.done(i, start) {
            s.write_all(&chunk).expect("send");
            if i % 4 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            i += 1;
        }
    };
    exchange(pair, reader_cpu, comm, receive, send);
    server
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
    let server = SocketAddr::new(pair.ip_b.parse::<IpAddr>().expect("ip"), port);
    let receive = move |ready: Box<dyn FnOnce() + Send>| {
        let s = std::net::UdpSocket::bind(server).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        ready();
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            if n == 1 && buf[0] == 0 {
                break; // end marker
            }
            got += 1;
        }
        got
    };
    let send = move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind sender");
        let payload = [0x42u8; 512];
        let start = Instant::now();
        let mut i = 0;
        while !limit.done(i, start) {
            let _ = s.send_to(&payload, server);
            if i % 8 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            i += 1;
        }
        let _ = s.send_to(&[0u8], server);
    };
    let got = exchange(pair, reader_cpu, comm, receive, send);
    (server, got)
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
