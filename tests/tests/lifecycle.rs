//! The probes' life cycle and the kernel facts the loader relies on.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use irq_ebpf::tp_format;
use irq_user::system::probes::{ProbeDef, PROBES};
use irqtune_tests::{irqtune_bin, irqtune_programs_loaded, kernel_test};

/// How many probes attach by default, and with `--per-packet`.
fn attached_by_default() -> usize {
    ProbeDef::by_default().count()
}

/// Runs `irqtune record ARGS`, checks it succeeded, returns its report.
fn record(args: &[&str]) -> String {
    let out = Command::new(irqtune_bin())
        .arg("record")
        .args(args)
        .output()
        .expect("run irqtune");
    assert!(
        out.status.success(),
        "irqtune record {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

kernel_test! {
    fn nothing_stays_loaded_after_exit_and_a_second_run_works() {
        assert!(
            irqtune_programs_loaded().is_empty(),
            "irqtune programs loaded before the test: {:?}",
            irqtune_programs_loaded()
        );
        for (run, args, want) in [
            (1, &["--duration", "1"][..], attached_by_default()),
            (2, &["--duration", "1", "--per-packet"][..], PROBES.len()),
        ] {
            let stdout = record(args);
            assert!(
                stdout.contains(&format!("probes: {want} attached")),
                "run {run} report:\n{stdout}"
            );
            let left = irqtune_programs_loaded();
            assert!(left.is_empty(), "after run {run}, still loaded: {left:?}");
        }
    }
}

struct KillOnDrop(u32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill with a pid we spawned.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

kernel_test! {
    fn sigterm_and_sigint_detach_and_still_report() {
        for signal in [libc::SIGTERM, libc::SIGINT] {
            let child = Command::new(irqtune_bin())
                .args(["record", "--duration", "60"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn irqtune");
            // Killed if an assertion below fails, so no recorder outlives the test.
            let guard = KillOnDrop(child.id());
            let start = Instant::now();
            while irqtune_programs_loaded().len() < attached_by_default() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "probes never showed up in bpftool"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            // SAFETY: kill with the child's valid pid.
            unsafe { libc::kill(child.id() as i32, signal) };
            let sent = Instant::now();
            let out = child.wait_with_output().expect("wait");
            std::mem::forget(guard);
            let took = sent.elapsed();
            assert!(
                out.status.success(),
                "signal {signal}: exit {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                took < Duration::from_secs(2),
                "signal {signal}: took {took:?} to exit"
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("Per CPU"),
                "signal {signal}: no report"
            );
            assert!(
                irqtune_programs_loaded().is_empty(),
                "signal {signal}: programs left: {:?}",
                irqtune_programs_loaded()
            );
        }
    }
}

kernel_test! {
    fn classic_tracepoint_fallback_attaches_everything() {
        let stdout = record(&["--duration", "1", "--classic", "--per-packet"]);
        let n = PROBES.len();
        assert!(
            stdout.contains(&format!("probes: {n} attached ({n} classic tracepoints)")),
            "{stdout}"
        );
    }
}

kernel_test! {
    /// The classic fallback reads records at fixed offsets: they must be this kernel's.
    fn tracepoint_record_offsets_match_this_kernel() {
        let env = irq_user::system::preflight::check().unwrap_or_else(|p| panic!("{p}"));
        let offset = |event: &str, field: &str| -> usize {
            let format = std::fs::read_to_string(env.tracefs.join("events").join(event).join("format"))
                .expect("format file");
            let line = format
                .lines()
                .find(|l| l.contains(&format!(" {field};")))
                .unwrap_or_else(|| panic!("{event} has no field {field}"));
            let at = line
                .split("offset:")
                .nth(1)
                .and_then(|r| r.split(';').next())
                .expect("offset");
            at.parse().expect("number")
        };
        assert_eq!(
            offset("irq/irq_handler_exit", "irq"),
            tp_format::IRQ_HANDLER_IRQ
        );
        assert_eq!(offset("irq/softirq_entry", "vec"), tp_format::SOFTIRQ_VEC);
        assert_eq!(offset("napi/napi_poll", "napi"), tp_format::NAPI_POLL_NAPI);
        assert_eq!(offset("napi/napi_poll", "work"), tp_format::NAPI_POLL_WORK);
        assert_eq!(
            offset("napi/napi_poll", "budget"),
            tp_format::NAPI_POLL_BUDGET
        );
        assert_eq!(
            offset("net/netif_receive_skb", "skbaddr"),
            tp_format::NETIF_RECEIVE_SKB_SKBADDR
        );
        assert_eq!(
            offset("net/netif_receive_skb", "len"),
            tp_format::NETIF_RECEIVE_SKB_LEN
        );
        assert_eq!(
            offset("sock/sk_data_ready", "skaddr"),
            tp_format::SK_DATA_READY_SKADDR
        );
        assert_eq!(
            offset("sock/sk_data_ready", "family"),
            tp_format::SK_DATA_READY_FAMILY
        );
        assert_eq!(
            offset("sock/sk_data_ready", "protocol"),
            tp_format::SK_DATA_READY_PROTOCOL
        );
        assert_eq!(
            offset("sock/sock_recv_length", "sk"),
            tp_format::SOCK_RECV_LENGTH_SK
        );
        assert_eq!(
            offset("sock/sock_recv_length", "family"),
            tp_format::SOCK_RECV_LENGTH_FAMILY
        );
        assert_eq!(
            offset("sock/sock_recv_length", "protocol"),
            tp_format::SOCK_RECV_LENGTH_PROTOCOL
        );
        assert_eq!(
            offset("sock/sock_recv_length", "ret"),
            tp_format::SOCK_RECV_LENGTH_RET
        );
    }
}

/// The BTF reader finds this kernel's offsets; `struct sock_common` starts with the address
/// pair (include/net/sock.h), a layout stable for a decade.
#[test]
fn kernel_offsets_from_btf() {
    let btf = irq_user::system::btf::Btf::from_file(Path::new(irq_user::system::btf::VMLINUX))
        .expect("kernel BTF");
    let o = btf.kernel_offsets().expect("offsets");
    assert_eq!((o.skc_daddr, o.skc_rcv_saddr), (0, 4));
    assert_eq!(
        o.skc_num,
        o.skc_dport + 2,
        "skc_dport and skc_num are adjacent (skc_portpair)"
    );
    assert!(o.sk_protocol > o.skc_v6_rcv_saddr && o.skb_len > 0 && o.napi_dev > 0);
}

kernel_test! {
    fn flow_sampling_keeps_btf_tracepoints() {
        // Sampling hashes the flow's ports, not the socket pointer: the verifier refuses shifts of
        // a BTF pointer, which once sent the flow probes to the dearer classic tracepoints.
        let stdout = record(&["--duration", "1", "--flow-sample", "16"]);
        let n = attached_by_default();
        assert!(
            stdout.contains(&format!("probes: {n} attached ({n} BTF tracepoints)")),
            "{stdout}"
        );
    }
}
