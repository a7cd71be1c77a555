//! Steering on the running kernel: a veth's RPS/RFS/XPS in a test namespace and a real
//! virtio IRQ's affinity, applied and reverted byte for byte.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use irqtune_tests::{irqtune_bin, kernel_test, NetnsPair, Restore};

fn irqtune(args: &[&str]) -> Output {
    Command::new(irqtune_bin())
        .args(args)
        .output()
        .expect("run irqtune")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

kernel_test! {
    fn veth_rps_rfs_xps_applied_and_reverted_byte_for_byte() {
        let pair = NetnsPair::with_queues("steer", 2);
        let entries = Restore::new("/proc/sys/net/core/rps_sock_flow_entries");
        entries.set("0");
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = dir.path().join("plan.json");
        let state = dir.path().join("state");
        let files: Vec<String> = (0..2)
            .flat_map(|q| {
                [
                    format!("/sys/class/net/vb/queues/rx-{q}/rps_cpus"),
                    format!("/sys/class/net/vb/queues/rx-{q}/rps_flow_cnt"),
                    format!("/sys/class/net/vb/queues/tx-{q}/xps_cpus"),
                ]
            })
            .collect();
        let read_all = || -> Vec<String> {
            let mut v: Vec<String> = files.iter().map(|f| pair.sysfs_read(&pair.b, f)).collect();
            v.push(fs::read_to_string("/proc/sys/net/core/rps_sock_flow_entries").unwrap());
            v
        };
        let before = read_all();

        let diff = ok(
            irqtune(&[
                "--netns",
                &pair.b,
                "plan",
                "--iface",
                "vb",
                "--output",
                s(&plan),
            ]),
            "plan",
        );
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&plan).unwrap()).unwrap();
        let kinds: Vec<&str> = v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["kind"].as_str().unwrap())
            .collect();
        for k in [
            "rps_cpus",
            "rps_flow_cnt",
            "xps_cpus",
            "rps_sock_flow_entries",
        ] {
            assert!(kinds.contains(&k), "plan lacks {k}:\n{diff}");
        }

        ok(
            irqtune(&[
                "--netns",
                &pair.b,
                "apply",
                "--state-dir",
                s(&state),
                s(&plan),
            ]),
            "apply",
        );
        let ncpus = v["host"]["cpus"].as_u64().unwrap();
        let all = format!("{:x}", (1u64 << ncpus) - 1);
        for q in 0..2 {
            assert_eq!(
                pair.sysfs_read(
                    &pair.b,
                    &format!("/sys/class/net/vb/queues/rx-{q}/rps_cpus")
                ),
                all
            );
            assert_eq!(
                pair.sysfs_read(
                    &pair.b,
                    &format!("/sys/class/net/vb/queues/rx-{q}/rps_flow_cnt")
                ),
                "16384"
            );
            let xps = pair.sysfs_read(
                &pair.b,
                &format!("/sys/class/net/vb/queues/tx-{q}/xps_cpus"),
            );
            assert_ne!(xps.trim_start_matches('0'), "", "tx-{q} xps_cpus set");
        }
        assert_eq!(
            fs::read_to_string("/proc/sys/net/core/rps_sock_flow_entries")
                .unwrap()
                .trim(),
            "32768"
        );
        // The other end of the veth, in the other namespace, is untouched.
        assert_eq!(
            pair.sysfs_read(&pair.a, "/sys/class/net/va/queues/rx-0/rps_cpus")
                .trim_start_matches('0'),
            ""
        );

        ok(
            irqtune(&["--netns", &pair.b, "revert", "--state-dir", s(&state)]),
            "revert",
        );
        assert_eq!(
            read_all(),
            before,
            "revert restores every value byte for byte"
        );
    }
}

struct Irq {
    irq: u32,
    name: String,
}

/// eth0's rx vector (virtio-net): movable, unlike virtio-blk's managed request vector.
fn virtio_net_rx_irq(show: &serde_json::Value) -> Option<Irq> {
    show["machine"]["irqs"].as_array()?.iter().find_map(|i| {
        let name = i["name"].as_str()?;
        let irq = i["irq"].as_u64()? as u32;
        (name.starts_with("virtio") && i["use"]["kind"] == "net_queue" && i["managed"] == false)
            .then(|| Irq {
                irq,
                name: name.to_string(),
            })
    })
}

fn one_change_plan(show: &serde_json::Value, irq: u32, current: &str, proposed: &str, path: &Path) {
    let plan = serde_json::json!({
        "format": "irqtune-plan",
        "version": 1,
        "host": show["machine"]["host"],
        "created_unix": 0,
        "load_source": "kernel test",
        "changes": [{
            "kind": "irq_affinity", "irq": irq,
            "path": format!("/proc/irq/{irq}/smp_affinity"),
            "current": current, "proposed": proposed,
            "reason": "test", "evidence": "test"
        }],
        "notes": []
    });
    fs::write(path, plan.to_string()).unwrap();
}

kernel_test! {
    fn virtio_irq_affinity_applied_and_reverted() {
        let show: serde_json::Value =
            serde_json::from_str(&ok(irqtune(&["show", "--json", "--sample", "0"]), "show")).unwrap();
        let ncpus = show["machine"]["topology"]["online"]
            .as_array()
            .unwrap()
            .len();
        assert!(ncpus >= 2, "needs two CPUs to move an IRQ");
        let irq = virtio_net_rx_irq(&show).expect("a virtio-net rx IRQ (this test bed's eth0)");
        let path = PathBuf::from(format!("/proc/irq/{}/smp_affinity", irq.irq));
        let guard = Restore::new(&path);
        let current = guard.original().to_string();
        let cpus = irq_user::model::cpulist::parse_mask(&current).unwrap();
        // Move it to a single CPU it is not limited to today (CPU 1, or CPU 0 if it is on 1).
        let target = if cpus == [1] { 0 } else { 1 };
        let nbits = show["machine"]["topology"]["nr_cpu_ids"].as_u64().unwrap() as u32;
        let proposed = irq_user::model::cpulist::format_mask(&[target], nbits);
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("plan.json");
        let state = dir.path().join("state");
        one_change_plan(&show, irq.irq, &current, &proposed, &plan);

        let out = ok(
            irqtune(&["apply", "--state-dir", s(&state), s(&plan)]),
            "apply",
        );
        assert!(out.contains(&format!("IRQ {} affinity", irq.irq)), "{out}");
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            proposed,
            "{} moved",
            irq.name
        );
        let list = fs::read_to_string(format!("/proc/irq/{}/smp_affinity_list", irq.irq)).unwrap();
        assert_eq!(list.trim(), target.to_string());

        ok(irqtune(&["revert", "--state-dir", s(&state)]), "revert");
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            current,
            "byte for byte"
        );
    }
}

kernel_test! {
    fn managed_irq_is_refused_and_a_forced_write_rolls_back() {
        let show: serde_json::Value =
            serde_json::from_str(&ok(irqtune(&["show", "--json", "--sample", "0"]), "show")).unwrap();
        let Some(managed) = show["machine"]["irqs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["managed"] == true)
        else {
            panic!(
                "this test bed has a managed virtio-blk vector (virtioN-req.0); none found in {show}"
            );
        };
        let irq = managed["irq"].as_u64().unwrap() as u32;
        let path = PathBuf::from(format!("/proc/irq/{irq}/smp_affinity"));
        let guard = Restore::new(&path);
        let current = guard.original().to_string();
        let nbits = show["machine"]["topology"]["nr_cpu_ids"].as_u64().unwrap() as u32;
        let cpus = irq_user::model::cpulist::parse_mask(&current).unwrap();
        let target = if cpus == [1] { 0 } else { 1 };
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("plan.json");
        let state = dir.path().join("state");
        one_change_plan(
            &show,
            irq,
            &current,
            &irq_user::model::cpulist::format_mask(&[target], nbits),
            &plan,
        );

        let out = irqtune(&["apply", "--state-dir", s(&state), s(&plan)]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("kernel-managed"));

        // Forced, the kernel itself refuses the write: the apply fails and nothing changed.
        let out = irqtune(&["apply", "--force", "--state-dir", s(&state), s(&plan)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("IRQ {irq} affinity failed")), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), current);
    }
}
