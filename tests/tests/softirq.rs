//! Softirq probes against /proc/softirqs, with TCP traffic between two namespaces.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use irq_ebpf::NET_RX_VEC;
use irq_user::system::sysroot::SysRoot;
use irq_user::{
    model::procfs,
    system::probes::{Group, ProbeOptions},
};
use irqtune_tests::{
    arrivals_within, enter_netns, kernel_test, load_probes, nanos, pin_to_cpu, NetnsPair,
};

/// Streams data from namespace `a` to `b` over one TCP connection per CPU, each sender pinned
/// to its CPU so both CPUs run NET_RX. Bounded by `limit` bytes and `deadline`.
fn tcp_traffic(pair: &NetnsPair, port: u16, cpus: &[usize], limit: usize, run_for: Duration) {
    let b = pair.b.clone();
    let ip_b = pair.ip_b.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let n = cpus.len();
    let server = std::thread::spawn(move || {
        enter_netns(&b);
        let l = TcpListener::bind((ip_b.as_str(), port)).expect("bind in namespace b");
        ready_tx.send(()).expect("signal ready");
        let mut readers = Vec::new();
        for _ in 0..n {
            let (mut s, _) = l.accept().expect("accept");
            readers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while s.read(&mut buf).map(|r| r > 0).unwrap_or(false) {}
            }));
        }
        for r in readers {
            r.join().expect("reader");
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let senders: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let a = pair.a.clone();
            let ip_b = pair.ip_b.clone();
            std::thread::spawn(move || {
                enter_netns(&a);
                pin_to_cpu(cpu);
                let mut s = TcpStream::connect((ip_b.as_str(), port)).expect("connect");
                let chunk = vec![0x42u8; 16384];
                let start = Instant::now();
                let mut sent = 0;
                while sent < limit && start.elapsed() < run_for {
                    s.write_all(&chunk).expect("send");
                    sent += chunk.len();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    server.join().expect("server");
}

kernel_test! {
    fn net_rx_counts_match_proc_softirqs() {
        let pair = NetnsPair::new("sirq");
        let probes = load_probes(&ProbeOptions {
            skip: vec![Group::Flows],
            per_packet: true,
            ..Default::default()
        });
        let root = &SysRoot::default();

        let t0 = Instant::now();
        let s0 = probes.snapshot().expect("snapshot");
        let p0 = procfs::read_softirqs(root).expect("softirqs");
        let gap0 = t0.elapsed();
        tcp_traffic(&pair, 5301, &[0, 1], 256 << 20, Duration::from_secs(2));
        let t1 = Instant::now();
        let s1 = probes.snapshot().expect("snapshot");
        let p1 = procfs::read_softirqs(root).expect("softirqs");
        let (gap, window) = (gap0 + t1.elapsed(), t1 - t0);

        let d = s1.delta(&s0);
        for (col, &cpu) in p1.cpus.iter().enumerate() {
            let proc = p1.count("NET_RX", cpu) - p0.count("NET_RX", cpu);
            let seen = d.softirq_count(NET_RX_VEC, cpu as usize);
            eprintln!("CPU {cpu}: NET_RX probes {seen}, /proc/softirqs {proc}");
            assert!(
                proc >= 100,
                "CPU {cpu} (column {col}) ran only {proc} NET_RX softirqs: traffic did not reach it"
            );
            let allowed = arrivals_within(proc, nanos(window), nanos(gap), 1);
            assert!(
                seen.abs_diff(proc) <= allowed,
                "CPU {cpu}: probes {seen} vs /proc/softirqs {proc}, more than the {allowed} \
                 that could run in the {gap:?} between the reads"
            );
        }
        let netrx = &d.softirqs[NET_RX_VEC];
        let delays: u64 = netrx.iter().flat_map(|s| s.delay_hist.iter()).sum();
        let handler: u64 = netrx.iter().flat_map(|s| s.handler_hist.iter()).sum();
        eprintln!(
            "NET_RX raise-to-entry delays recorded: {delays}; handler runs in histogram: {handler}"
        );
        assert!(delays > 0, "the NET_RX raise-to-entry histogram is empty");
        assert_eq!(handler, netrx.iter().map(|s| s.count).sum::<u64>());

        // The per-packet probe saw the veth receiving; napi_poll saw the backlog NAPI (the
        // veth hands its packets to netif_rx) process them.
        let vb = d
            .netdevs
            .iter()
            .find(|n| n.name == "vb")
            .expect("veth vb seen by netif_receive_skb");
        let packets: u64 = vb.per_cpu.values().map(|v| v.rx_packets).sum();
        assert!(packets > 1000, "vb received only {packets} packets");
        let backlog = d
            .netdevs
            .iter()
            .find(|n| n.dev == 0)
            .expect("the backlog NAPI seen by napi_poll");
        let polled: u64 = backlog.per_cpu.values().map(|v| v.work).sum();
        eprintln!("vb: {packets} packets received; backlog NAPI: {polled} packets polled");
        assert!(
            polled >= packets,
            "the backlog polled {polled} packets, fewer than vb's {packets} (both directions pass it)"
        );
    }
}
