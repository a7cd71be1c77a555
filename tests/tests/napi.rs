//! The NAPI topology on this machine's own NIC: `show` lists its NAPI instances from
//! netdev-genl, each with the rx queue it serves, the IRQ that schedules it and the CPU it
//! runs on, and these are what /proc says of that IRQ.

use std::process::Command;

use irqtune_tests::{irqtune_bin, kernel_test};

kernel_test! {
    fn show_lists_each_napi_with_its_queue_irq_and_cpu() {
        let out = Command::new(irqtune_bin())
            .args(["show", "--json", "--sample", "0"])
            .output()
            .expect("run show");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = &v["machine"];
        assert_eq!(m["napi"]["source"], "netdev-genl", "{}", m["napi"]);
        let napis = m["napi"]["napis"].as_array().unwrap();
        // Every NIC with rx queue IRQs (the VM's virtio-net): one NAPI per such queue.
        let mut checked = 0;
        for nic in m["nics"].as_array().unwrap() {
            for q in nic["rx"].as_array().unwrap() {
                let Some(irq) = q["irq"].as_u64() else { continue };
                let index = q["index"].as_u64().unwrap();
                let n = napis
                    .iter()
                    .find(|n| {
                        n["device"] == nic["name"]
                            && n["rx_queues"].as_array().unwrap().iter().any(|x| x == index)
                    })
                    .unwrap_or_else(|| panic!("no NAPI for {} rx-{index}: {napis:?}", nic["name"]));
                assert_eq!(n["irq"].as_u64(), Some(irq), "{n}");
                let cpus = irqtune_tests::effective_cpus(irq as u32);
                let got: Vec<u64> = n["cpus"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_u64().unwrap())
                    .collect();
                assert_eq!(got, cpus, "NAPI {} runs where IRQ {irq} does: {n}", n["id"]);
                checked += 1;
            }
        }
        assert!(checked > 0, "no NIC with rx queue IRQs here: {}", m["nics"]);
        let text = String::from_utf8(
            Command::new(irqtune_bin())
                .args(["show", "--sample", "0"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(text.contains("NAPI instances from netdev-genl"), "{text}");
    }
}

kernel_test! {
    /// The per-device NAPI settings (threaded NAPI, napi_defer_hard_irqs, gro_flush_timeout)
    /// on a veth with NAPI (GRO on) in a namespace: a plan of them is applied journaled, read
    /// back, reverted exactly, and judged by `tune --plan` on a 64-byte UDP load, leaving the
    /// state its verdict says.
    fn napi_settings_apply_revert_and_are_judged_by_tune() {
        use irqtune_tests::{sh, NetnsPair};
        let pair = NetnsPair::new("napi");
        // GRO puts vb's traffic through its NAPI, but a UDP skb from a local socket is GRO
        // eligible only with rx-udp-gro-forwarding (veth_skb_is_eligible_for_gro): without
        // it the packets take the backlog, and the sockets carry no NAPI id.
        sh(&format!(
            "ip netns exec {} ethtool -K vb gro on rx-udp-gro-forwarding on",
            pair.b
        ));
        let files = ["threaded", "napi_defer_hard_irqs", "gro_flush_timeout"];
        let read = || -> Vec<String> {
            files
                .iter()
                .map(|f| pair.sysfs_read(&pair.b, &format!("/sys/class/net/vb/{f}")))
                .collect()
        };
        let original = read();
        let state = tempfile::tempdir().unwrap();
        let irqtune = |args: &[&str]| irqtune_in(&pair.b, Some(state.path()), args);
        // A plan of the three settings, on the skeleton `plan` writes for this host.
        let skeleton = state.path().join("skeleton.json");
        let (ok, text) = Command::new(irqtune_bin())
            .args(["--netns", &pair.b, "plan", "--iface", "vb", "--output"])
            .arg(&skeleton)
            .output()
            .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
            .unwrap();
        assert!(ok, "{text}");
        let mut plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&skeleton).unwrap()).unwrap();
        let wanted = ["1", "2", "20000"];
        plan["changes"] = files
            .iter()
            .zip(["napi_threaded", "napi_defer_hard_irqs", "gro_flush_timeout"])
            .zip(original.iter().zip(wanted))
            .map(|((file, kind), (cur, new))| {
                serde_json::json!({
                    "kind": kind, "iface": "vb",
                    "path": format!("/sys/class/net/vb/{file}"),
                    "current": cur, "proposed": new,
                    "reason": "test", "evidence": "test"
                })
            })
            .collect();
        let path = state.path().join("napi.json");
        std::fs::write(&path, plan.to_string()).unwrap();
        let p = path.to_str().unwrap();
        let (ok, text) = irqtune(&["apply", p]);
        assert!(ok, "{text}");
        assert_eq!(read(), wanted, "applied: {text}");
        let (ok, text) = irqtune(&["revert"]);
        assert!(ok, "{text}");
        assert_eq!(read(), original, "revert restores them exactly");

        // Judged on a workload: kept or rolled back, the state is what the verdict says.
        let mut load = irqtune_tests::Procs(vec![irqtune_tests::sockperf(
            &pair.b,
            None,
            &["server", "-i", &pair.ip_b, "-p", "11311"],
        )]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        load.0.push(irqtune_tests::sockperf(
            &pair.a,
            None,
            &[
                "throughput", "-i", &pair.ip_b, "-p", "11311", "-m", "64", "--mps", "50000",
                "-t", "120",
            ],
        ));
        std::thread::sleep(std::time::Duration::from_secs(1));

        // The flow's NAPI id: the receiving socket's sk_napi_id is one of vb's NAPIs as
        // netdev-genl lists them, and the report says which.
        let prof = state.path().join("flows.json");
        let plain = |args: &[&str]| irqtune_in(&pair.b, None, args);
        // Up to three 2 s recordings: the client may still be starting.
        let mut flow = serde_json::Value::Null;
        for _ in 0..3 {
            let (ok, text) =
                plain(&["record", "--duration", "2", "--output", prof.to_str().unwrap()]);
            assert!(ok, "{text}");
            let profile: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&prof).unwrap()).unwrap();
            // Read as well as delivered: the report lists flows with reads.
            let reads = |f: &serde_json::Value| -> u64 {
                f["reads_by_cpu"]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
            };
            if let Some(f) = profile["flows"].as_array().unwrap().iter().find(|f| {
                f["local"].as_str().is_some_and(|l| l.ends_with(":11311"))
                    && f["napi_id"].as_u64().is_some()
                    && reads(f) > 0
            }) {
                flow = f.clone();
                break;
            }
            eprintln!("no flow with a NAPI id on port 11311 yet: {}", profile["flows"]);
        }
        let out = Command::new(irqtune_bin())
            .args(["--netns", &pair.b, "show", "--json", "--sample", "0"])
            .output()
            .expect("run show");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let vb_napis: Vec<u64> = shown["machine"]["napi"]["napis"]
            .as_array()
            .unwrap_or_else(|| panic!("no NAPI list: {}", shown["machine"]["napi"]))
            .iter()
            .filter(|n| n["device"] == "vb")
            .filter_map(|n| n["id"].as_u64())
            .collect();
        assert!(!vb_napis.is_empty(), "vb has NAPIs with GRO on: {}", shown["machine"]["napi"]);
        let id = flow["napi_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("the flow has no NAPI id: {flow}"));
        assert!(vb_napis.contains(&id), "flow NAPI {id}, vb's NAPIs {vb_napis:?}");
        let (ok, report) = plain(&["report", prof.to_str().unwrap()]);
        assert!(ok, "{report}");
        assert!(
            report.contains(&format!("napi {id}")) && report.contains("Readers by NAPI"),
            "the report names the flow's NAPI: {report}"
        );

        let (ok, text) = irqtune(&[
            "tune", "--iface", "vb", "--duration", "4", "--plan", p, "--max-trials", "1",
        ]);
        drop(load);
        eprintln!("{text}");
        assert!(ok, "{text}");
        let verdict = text
            .lines()
            .find(|l| l.starts_with("Verdict:"))
            .unwrap_or_else(|| panic!("no verdict: {text}"));
        if verdict.contains("; kept.") {
            assert_eq!(read(), wanted, "{verdict}");
            let (ok, text) = irqtune(&["revert"]);
            assert!(ok, "{text}");
        }
        assert_eq!(read(), original, "the before state at the end: {verdict}");
    }
}

kernel_test! {
    /// Threaded NAPI where a device's polls take its reader's CPU: a 64-byte UDP flood over
    /// a veth with NAPI (GRO), sender and reader on one CPU (varied: CPU 1, then CPU 0), so
    /// vb's NAPI polls run in softirq context on the reader's CPU. `plan` proposes threaded
    /// NAPI with vb's NAPI kthread on the other CPU; apply turns it on and the kthread runs
    /// there; revert restores threaded 0 and leaves no kthread pinned; `tune --plan` judges
    /// it on the flood and leaves the state its verdict says.
    fn threaded_napi_on_the_readers_cpu_is_planned_placed_judged_and_reverted() {
        for (shared, free) in [(1u32, 0u32), (0, 1)] {
            threaded_case(shared, free);
        }
    }
}

fn threaded_case(shared: u32, free: u32) {
    use irqtune_tests::{sh, NetnsPair};
    let pair = NetnsPair::new(&format!("thr{shared}"));
    sh(&format!(
        "ip netns exec {} ethtool -K vb gro on rx-udp-gro-forwarding on",
        pair.b
    ));
    let threaded = || pair.sysfs_read(&pair.b, "/sys/class/net/vb/threaded");
    assert_eq!(threaded(), "0", "threaded NAPI starts off");
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str], with_state: bool| {
        let (ok, text) = irqtune_in(&pair.b, with_state.then(|| state.path()), args);
        assert!(ok, "irqtune {args:?}: {text}");
        text
    };
    let cpu = shared.to_string();
    let mut load = irqtune_tests::Procs(vec![irqtune_tests::sockperf(
        &pair.b,
        Some(shared as usize),
        &["server", "-i", &pair.ip_b, "-p", "11411"],
    )]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    load.0.push(irqtune_tests::sockperf(
        &pair.a,
        Some(shared as usize),
        &[
            "throughput",
            "-i",
            &pair.ip_b,
            "-p",
            "11411",
            "-m",
            "64",
            "--mps",
            "max",
            "-t",
            "120",
        ],
    ));
    std::thread::sleep(std::time::Duration::from_secs(1));

    let full = state.path().join("plan.json");
    let out = run(
        &[
            "plan",
            "--iface",
            "vb",
            "--duration",
            "3",
            "--output",
            full.to_str().unwrap(),
        ],
        false,
    );
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    let changes: Vec<serde_json::Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "napi_threaded" || c["kind"] == "napi_kthread")
        .cloned()
        .collect();
    assert!(
        changes
            .first()
            .is_some_and(|c| c["kind"] == "napi_threaded" && c["proposed"] == "1"),
        "sender and reader on CPU {cpu}: threaded NAPI proposed first: {out}"
    );
    let kthreads: Vec<&serde_json::Value> = changes
        .iter()
        .filter(|c| c["kind"] == "napi_kthread")
        .collect();
    assert!(!kthreads.is_empty(), "vb's NAPI kthread placed: {out}");
    for k in &kthreads {
        let cpus = irq_user::model::cpulist::parse_mask(k["proposed"].as_str().unwrap()).unwrap();
        assert_eq!(cpus, [free], "off the reader's CPU {cpu}: {k}");
    }
    plan["changes"] = serde_json::Value::Array(changes.clone());
    let path = state.path().join("threaded.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    let p = path.to_str().unwrap();

    // Applied: threaded on, each kthread on the free CPU; reverted: as before.
    run(&["apply", p], true);
    assert_eq!(threaded(), "1");
    for k in &kthreads {
        let napi = k["napi"].as_u64().unwrap();
        let allowed = kthread_cpus(&format!("napi/vb-{napi}"))
            .unwrap_or_else(|| panic!("no kthread napi/vb-{napi}"));
        assert_eq!(allowed, free.to_string(), "NAPI {napi}'s kthread");
    }
    run(&["revert"], true);
    assert_eq!(threaded(), "0", "revert turns threaded NAPI off again");
    for k in &kthreads {
        let napi = k["napi"].as_u64().unwrap();
        // Kernels that keep the kthread after threaded is off have it back on its old CPUs.
        if let Some(allowed) = kthread_cpus(&format!("napi/vb-{napi}")) {
            assert_ne!(
                allowed,
                free.to_string(),
                "the kthread's placement is reverted"
            );
        }
    }

    // Judged on the flood.
    let text = run(
        &[
            "tune",
            "--iface",
            "vb",
            "--duration",
            "4",
            "--plan",
            p,
            "--max-trials",
            "1",
        ],
        true,
    );
    drop(load);
    eprintln!("{text}");
    let verdict = text
        .lines()
        .find(|l| l.starts_with("Verdict:"))
        .unwrap_or_else(|| panic!("no verdict: {text}"));
    // The shown NET_RX figures after the change leave the kthreads' polls out, and say so.
    assert!(
        text.contains(
            "left out of the figures: the receive polls of threaded NAPI after the change (vb)"
        ),
        "{text}"
    );
    if verdict.contains("; kept.") {
        assert_eq!(threaded(), "1", "{verdict}");
        run(&["revert"], true);
    }
    assert_eq!(threaded(), "0", "the before state at the end: {verdict}");
}

/// The allowed CPUs (list) of the kthread with this name, if it runs.
fn kthread_cpus(name: &str) -> Option<String> {
    let comm: String = name.chars().take(15).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
            };
            (field("Name:")? == comm).then(|| field("Cpus_allowed_list:"))?
        })
}

/// irqtune on namespace `ns` (with `state` as its state directory, if given): whether it
/// succeeded, and what it said on both outputs.
fn irqtune_in(ns: &str, state: Option<&std::path::Path>, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(irqtune_bin());
    c.args(["--netns", ns]).args(args);
    if let Some(dir) = state {
        c.arg("--state-dir").arg(dir);
    }
    let out = c.output().expect("run irqtune");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
