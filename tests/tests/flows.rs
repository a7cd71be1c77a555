//! Flow placement: where the softirq delivered a socket's data vs where the application read
//! it, with RPS/RFS set on purpose on a veth between two namespaces (scaling.rst).

use std::{net::SocketAddr, time::Duration};

use irq_user::{
    model::snapshot::{FlowSeries, Protocol},
    system::probes::{Group, ProbeOptions, Probes},
};
use irqtune_tests::{kernel_test, load_probes, tcp_flow, udp_stream, Limit, NetnsPair, Restore};

const RX_QUEUE: &str = "/sys/class/net/vb/queues/rx-0";
const SOCK_FLOW_ENTRIES: &str = "/proc/sys/net/core/rps_sock_flow_entries";
const READER_CPU: usize = 1;

/// Steering of vb's receive queue: RPS CPU mask, and RFS on or off.
fn steer(pair: &NetnsPair, rps_cpus: &str, rfs: bool, entries: &Restore) {
    pair.sysfs_write(&pair.b, &format!("{RX_QUEUE}/rps_cpus"), rps_cpus);
    pair.sysfs_write(
        &pair.b,
        &format!("{RX_QUEUE}/rps_flow_cnt"),
        if rfs { "32768" } else { "0" },
    );
    entries.set(if rfs { "32768" } else { "0" });
    assert_eq!(
        pair.sysfs_read(&pair.b, &format!("{RX_QUEUE}/rps_cpus"))
            .trim_start_matches('0'),
        rps_cpus
    );
}

/// An unconnected UDP receiver; returns its address.
fn udp_flow(pair: &NetnsPair, port: u16, comm: &str) -> SocketAddr {
    let limit = Limit {
        chunks: 5_000,
        time: Duration::from_secs(4),
        stop: None,
    };
    let (server, got) = udp_stream(pair, port, comm, READER_CPU, limit);
    assert!(got > 1000, "UDP receiver got only {got} datagrams");
    server
}

fn find_flow(probes: &Probes, proto: Protocol, local: SocketAddr, comm: &str) -> FlowSeries {
    let snap = probes.snapshot().expect("snapshot");
    let found: Vec<_> = snap
        .flows
        .into_iter()
        .filter(|f| f.protocol() == proto && f.local() == local)
        .collect();
    let f = found
        .into_iter()
        .max_by_key(|f| f.reads())
        .unwrap_or_else(|| panic!("no {proto:?} flow with local address {local}"));
    assert_eq!(f.comm(), comm, "reader comm");
    assert_eq!(f.info.tgid, std::process::id(), "reader pid");
    eprintln!(
        "{proto:?} {} -> {}: deliveries {:?}, reads {:?}, mismatched {} of {} ({:.1}%)",
        f.remote(),
        f.local(),
        f.deliveries_by_cpu(),
        f.reads_by_cpu(),
        f.mismatched_reads(),
        f.reads(),
        f.mismatch_ratio() * 100.0
    );
    f
}

fn share(map: &std::collections::BTreeMap<u32, u64>, cpu: u32) -> f64 {
    let total: u64 = map.values().sum();
    map.get(&cpu).copied().unwrap_or(0) as f64 / total.max(1) as f64
}

kernel_test! {
    fn flows_report_softirq_and_reader_cpus_with_rps_and_rfs() {
        let entries = Restore::new(SOCK_FLOW_ENTRIES);
        let original_entries = entries.original().to_string();
        {
            let pair = NetnsPair::new("flow");
            let probes = load_probes(&ProbeOptions {
                skip: vec![Group::Hardirq],
                ..Default::default()
            });

            // RPS to CPU 0 only, RFS off: every delivery on CPU 0, every read on CPU 1.
            steer(&pair, "1", false, &entries);
            let local = tcp_flow(&pair, false, 5401, "irqt-tcp-rps1", READER_CPU);
            let f = find_flow(&probes, Protocol::Tcp, local, "irqt-tcp-rps1");
            assert!(
                share(&f.deliveries_by_cpu(), 0) >= 0.9,
                "TCP deliveries not on CPU 0: {:?}",
                f.deliveries_by_cpu()
            );
            assert!(
                share(&f.reads_by_cpu(), 1) >= 0.99,
                "TCP reads not on CPU 1: {:?}",
                f.reads_by_cpu()
            );
            assert!(
                f.mismatch_ratio() >= 0.9,
                "TCP with rps_cpus=1: mismatch {:.3} < 0.9",
                f.mismatch_ratio()
            );
            assert!(
                f.remote().ip().to_string() == pair.ip_a,
                "remote address {}",
                f.remote()
            );

            // RPS over both CPUs with RFS on: deliveries follow the reader to CPU 1.
            steer(&pair, "3", true, &entries);
            let local = tcp_flow(&pair, false, 5402, "irqt-tcp-rfs", READER_CPU);
            let f = find_flow(&probes, Protocol::Tcp, local, "irqt-tcp-rfs");
            assert!(
                f.mismatch_ratio() <= 0.1,
                "TCP with RFS: mismatch {:.3} > 0.1",
                f.mismatch_ratio()
            );

            // IPv6, same steering: reported with its IPv6 addresses.
            let local = tcp_flow(&pair, true, 5403, "irqt-tcp6", READER_CPU);
            let f = find_flow(&probes, Protocol::Tcp, local, "irqt-tcp6");
            assert_eq!(f.info.family, 10);
            assert_eq!(f.local().ip().to_string(), pair.ip6_b);
            assert_eq!(f.remote().ip().to_string(), pair.ip6_a);

            // UDP, unconnected receivers: (rps_cpus, RFS, port, comm, mismatched?).
            // RPS to CPU 0 mismatches; RFS on does not help an unconnected socket (the kernel
            // records no flow hash for it), so it stays mismatched and is reported as such; RPS to
            // the reader's CPU matches.
            let udp_cases = [
                ("1", false, 5404, "irqt-udp-rps1", true),
                ("1", true, 5405, "irqt-udp-rfs", true),
                ("2", false, 5406, "irqt-udp-rps2", false),
            ];
            for (rps, rfs, port, comm, mismatched) in udp_cases {
                steer(&pair, rps, rfs, &entries);
                let local = udp_flow(&pair, port, comm);
                let f = find_flow(&probes, Protocol::Udp, local, comm);
                let ratio = f.mismatch_ratio();
                if mismatched {
                    assert!(
                        ratio >= 0.9,
                        "UDP rps_cpus={rps} rfs={rfs}: mismatch {ratio:.3} < 0.9"
                    );
                } else {
                    assert!(
                        ratio <= 0.1,
                        "UDP rps_cpus={rps} rfs={rfs}: mismatch {ratio:.3} > 0.1"
                    );
                }
            }

            let snap = probes.snapshot().expect("snapshot");
            assert_eq!(snap.flow_evictions, 0, "flows evicted in a small test");
        }
        drop(entries);
        let now = std::fs::read_to_string(SOCK_FLOW_ENTRIES).expect("read back");
        assert_eq!(
            now.trim(),
            original_entries,
            "rps_sock_flow_entries restored"
        );
    }
}
