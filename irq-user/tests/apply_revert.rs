//! `irqtune apply` and `revert` on machine-shaped trees (`--root`): the journal, the
//! rollback, the lock, and what bad input does. No privileges needed; as root, the test
//! that needs an unwritable file runs irqtune as `nobody`, for whom file modes hold.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use irqtune_test_support::MachineSpec;

mod common;
use common::{Tree, BIN};

impl Tree {
    fn plan_path(&self) -> PathBuf {
        self.dir.path().join("plan.json")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.irqtune(args).output().expect("run irqtune")
    }

    /// Starts `apply` of the plan pausing `pause_ms` after each write, so a test can act
    /// between writes; returns once `writes` files have changed since `before`.
    fn start_paced_apply(
        &self,
        pause_ms: &str,
        before: &BTreeMap<PathBuf, Vec<u8>>,
        writes: usize,
        stderr: Stdio,
    ) -> std::process::Child {
        let child = self
            .irqtune(&[
                "apply",
                "--pause-ms",
                pause_ms,
                self.plan_path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn apply");
        wait_for(
            &format!("{writes} write(s)"),
            Duration::from_secs(20),
            || self.changed_files(before).len() >= writes,
        );
        child
    }

    fn make_plan(&self) {
        let out = self.run(&["plan", "--output", self.plan_path().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "plan: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn plan_json(&self) -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(self.plan_path()).unwrap()).unwrap()
    }

    /// Every file below the tree but irqtune's own state, with its contents.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    if !p.ends_with("var/lib/irqtune") {
                        walk(&p, out);
                    }
                } else if ft.is_file() {
                    out.insert(p.clone(), fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root(), &mut out);
        out
    }

    fn changed_files(&self, before: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<PathBuf> {
        let now = self.files();
        now.iter()
            .filter(|(p, v)| before.get(*p) != Some(v))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn journals(&self) -> Vec<PathBuf> {
        let dir = self.root().join("var/lib/irqtune");
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn apply_then_revert_restores_every_byte() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    let before = t.files();
    t.make_plan();
    let n = t.plan_json()["changes"].as_array().unwrap().len();
    assert!(n >= 16, "8 affinities + 8 XPS, got {n}");

    let dry = t.run(&["apply", "--dry-run", t.plan_path().to_str().unwrap()]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry).matches("would write").count(),
        n,
        "{}",
        stdout(&dry)
    );
    assert!(t.changed_files(&before).is_empty(), "dry run wrote");
    assert!(t.journals().is_empty(), "dry run journaled");

    let out = t.run(&["apply", t.plan_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let changed = t.changed_files(&before);
    assert_eq!(changed.len(), n, "{changed:?}");
    let aff = fs::read_to_string(t.root().join("proc/irq/124/smp_affinity")).unwrap();
    assert_eq!(aff.trim(), "0000,00001000");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&t.journals()[0]).unwrap()).unwrap();
    assert_eq!(j["status"], "applied");

    // The same plan again: the machine no longer matches its "current" values.
    let again = t.run(&["apply", t.plan_path().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("the plan expected"),
        "{}",
        stderr(&again)
    );

    let rev = t.run(&["revert"]);
    assert!(rev.status.success(), "{}", stderr(&rev));
    assert_eq!(t.files(), before, "revert restores byte for byte");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&t.journals()[0]).unwrap()).unwrap();
    assert_eq!(j["status"], "reverted");
    let none = t.run(&["revert"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("no journal to revert"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn malformed_plan_or_unknown_cpu_exits_2_and_writes_nothing() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    t.make_plan();
    let before = t.files();
    let text = fs::read_to_string(t.plan_path()).unwrap();
    let bad = t.dir.path().join("bad.json");

    fs::write(&bad, &text[..text.len() / 3]).unwrap();
    let out = t.run(&["apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("bad.json:") && msg.contains("EOF"),
        "names file and position: {msg}"
    );

    let mut v = t.plan_json();
    v["changes"][0]["proposed"] = "10000,00000000".into(); // CPU 48 of 48
    fs::write(&bad, v.to_string()).unwrap();
    let out = t.run(&["apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("CPU 48 does not exist"),
        "{}",
        stderr(&out)
    );

    let mut v = t.plan_json();
    v["changes"][0]["path"] = "/etc/passwd".into();
    fs::write(&bad, v.to_string()).unwrap();
    let out = t.run(&["apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = t.run(&["plan", "--cpus", "99"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = t.run(&["plan", "--cpus", "3-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = t.run(&["plan", "--iface", "nope0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("eth2"),
        "lists the interfaces: {}",
        stderr(&out)
    );

    assert!(t.changed_files(&before).is_empty());
    assert!(t.journals().is_empty());
}

#[test]
fn plan_from_another_host_or_with_irqbalance_is_refused_unless_forced() {
    let t = Tree::new(&MachineSpec::seed_4cpu());
    t.make_plan();
    let before = t.files();
    let mut v = t.plan_json();
    v["host"]["boot_id"] = "11111111-2222-4333-8444-555555555555".into();
    let other = t.dir.path().join("other.json");
    fs::write(&other, v.to_string()).unwrap();
    let out = t.run(&["apply", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("boot"), "{}", stderr(&out));
    assert!(t.changed_files(&before).is_empty());
    let forced = t.run(&["apply", "--force", other.to_str().unwrap()]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(t.run(&["revert"]).status.success());
    assert_eq!(t.files(), before);

    let mut spec = MachineSpec::seed_4cpu();
    spec.irqbalance = true;
    let t = Tree::new(&spec);
    t.make_plan();
    let out = t.run(&["apply", t.plan_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("irqbalance is running")
            && msg.contains("--banirq=")
            && msg.contains("systemctl stop irqbalance"),
        "{msg}"
    );
}

/// Makes the tree writable by `nobody` and returns a command running as `nobody` when we
/// are root (root ignores file modes); as another user the modes already bind.
fn as_unprivileged(t: &Tree, args: &[&str]) -> Command {
    let mut c = t.irqtune(args);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        fn open_up(p: &Path) {
            let meta = fs::symlink_metadata(p).unwrap();
            if meta.file_type().is_symlink() {
                return;
            }
            let mode = if meta.is_dir() { 0o777 } else { 0o666 };
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
            if meta.is_dir() {
                for e in fs::read_dir(p).unwrap().flatten() {
                    open_up(&e.path());
                }
            }
        }
        open_up(t.dir.path());
        // The binary must be reachable by nobody too.
        let bin = t.dir.path().join("irqtune");
        fs::copy(BIN, &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let mut nc = Command::new(&bin);
        nc.arg("--root").arg(t.root()).args(args);
        nc.uid(65534).gid(65534);
        c = nc;
    }
    c
}

#[test]
fn a_write_failing_halfway_rolls_back_what_was_written() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    t.make_plan();
    let v = t.plan_json();
    let changes = v["changes"].as_array().unwrap();
    let victim = changes[5]["path"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let before = t.files();
    let mut cmd = as_unprivileged(&t, &["apply", t.plan_path().to_str().unwrap()]);
    fs::set_permissions(t.root().join(&victim), fs::Permissions::from_mode(0o444)).unwrap();
    let out = cmd.output().expect("run irqtune");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let msg = stderr(&out);
    assert!(msg.contains(&victim), "names the file that failed: {msg}");
    assert!(msg.contains("rolled back 5 change(s)"), "{msg}");
    assert_eq!(
        stdout(&out).matches("set ").count(),
        5,
        "five writes happened first"
    );
    assert!(
        t.changed_files(&before).is_empty(),
        "rolled back: {:?}",
        t.changed_files(&before)
    );
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&t.journals()[0]).unwrap()).unwrap();
    assert_eq!(j["status"], "rolled_back");
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_between_writes_then_revert_restores_from_the_journal() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    t.make_plan();
    let before = t.files();
    let mut child = t.start_paced_apply("300", &before, 2, Stdio::inherit());
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let written = t.changed_files(&before).len();
    let total = t.plan_json()["changes"].as_array().unwrap().len();
    assert!(
        written >= 2 && written < total,
        "killed between writes: {written} of {total}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&t.journals()[0]).unwrap()).unwrap();
    assert_eq!(j["status"], "applying");
    let rev = t.run(&["revert"]);
    assert!(rev.status.success(), "{}", stderr(&rev));
    assert_eq!(t.files(), before);
}

#[test]
fn a_second_concurrent_apply_refuses() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    t.make_plan();
    let before = t.files();
    let mut first = t.start_paced_apply("200", &before, 1, Stdio::inherit());
    let second = t.run(&["apply", t.plan_path().to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another irqtune apply, revert or tune is running"),
        "{}",
        stderr(&second)
    );
    let status = first.wait().unwrap();
    assert!(status.success(), "the first apply finishes undisturbed");
    assert_eq!(t.journals().len(), 1);
    assert!(t.run(&["revert"]).status.success());
    assert_eq!(t.files(), before);
}

#[test]
fn sigint_during_apply_rolls_back() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    t.make_plan();
    let before = t.files();
    let child = t.start_paced_apply("300", &before, 1, Stdio::piped());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted; rolled back"),
        "{}",
        stderr(&out)
    );
    assert!(t.changed_files(&before).is_empty());
}

#[test]
fn show_reads_a_captured_tree() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    let out = t.run(&["show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "host db-7",
        "isolated: 20-23,44-47",
        "NUMA node 1: CPUs 12-23,36-47 (12 cores)",
        "eth2  driver ixgbe",
        "eth2-TxRx-3",
        "[managed]",
        "irqbalance: not running",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = t.run(&["show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["machine"]["nics"][0]["node"], 1);
    assert_eq!(v["machine"]["topology"]["nr_cpu_ids"], 48);
}
