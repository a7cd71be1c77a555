//! irqtune runs as root and writes kernel settings: every file, argument, journal and `--root`
//! tree it is given may be hostile (a sosreport from elsewhere, a typo, a planted symlink).
//! Each case here once made it panic, abort, hang or write where it must not; now it must end
//! with a clear error (or do its job) and write nothing outside what it was asked to change.
//! All on machine-shaped trees; nothing touches the live /proc or /sys.

use std::{
    fs,
    io::Read as _,
    os::unix::fs::{symlink, FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use irqtune_test_support::MachineSpec;

mod common;
use common::{Tree, BIN};

impl Tree {
    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn put(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        let _ = fs::remove_file(&p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// Runs with a deadline; fails on a hang, a panic or an abort.
    fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.irqtune(args), args)
    }

    fn plan(&self) -> PathBuf {
        let p = self.dir.path().join("plan.json");
        let out = self.run(&["plan", "--output", p.to_str().unwrap()]);
        assert!(out.status.success(), "plan: {}", err(&out));
        p
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `cmd` for at most 20 s and checks it ended by itself, without a panic (exit 101) or
/// an abort (SIGABRT, an allocation failure).
fn run_bounded(mut cmd: Command, what: &[&str]) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start irqtune");
    // Drained while it runs: a full pipe must not look like a hang.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let errs = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("irqtune {what:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: errs.join().unwrap(),
    };
    use std::os::unix::process::ExitStatusExt as _;
    assert!(
        o.status.signal().is_none(),
        "irqtune {what:?} died of signal {:?}: {}",
        o.status.signal(),
        err(&o)
    );
    assert_ne!(
        o.status.code(),
        Some(101),
        "irqtune {what:?} panicked: {}",
        err(&o)
    );
    assert!(
        !err(&o).contains("panicked"),
        "irqtune {what:?}: {}",
        err(&o)
    );
    o
}

/// Every file below `dir` (following nothing) with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    fn walk(d: &Path, v: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(&e.path(), v);
            } else if t.is_file() {
                v.push((e.path(), fs::read(e.path()).unwrap()));
            }
        }
    }
    walk(dir, &mut v);
    v.sort();
    v
}

/// Fails naming the files that differ (added, removed or changed), not dumping their bytes.
fn assert_unchanged(before: &[(PathBuf, Vec<u8>)], after: &[(PathBuf, Vec<u8>)], what: &str) {
    let b: std::collections::BTreeMap<_, _> = before.iter().map(|(p, d)| (p, d)).collect();
    let a: std::collections::BTreeMap<_, _> = after.iter().map(|(p, d)| (p, d)).collect();
    let changed: Vec<_> = b
        .keys()
        .chain(a.keys())
        .filter(|p| b.get(*p) != a.get(*p))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(changed.is_empty(), "{what}: changed {changed:?}");
}

#[test]
fn absurd_cpu_numbers_in_a_tree_or_an_argument_are_errors_not_crashes() {
    // Each of these once panicked (index out of bounds) or aborted (a 16 GiB allocation).
    let t = Tree::new(&MachineSpec::seed_4cpu());
    t.put("proc/irq/24/smp_affinity_list", "4294967295");
    for args in [&["plan"][..], &["show", "--sample", "0"], &["report"]] {
        t.run(args);
    }
    for file in [
        "sys/devices/system/cpu/online",
        "sys/devices/system/cpu/possible",
        "proc/irq/24/smp_affinity_list",
    ] {
        let t = Tree::new(&MachineSpec::seed_4cpu());
        t.put(file, "0-4294967295");
        for args in [&["plan"][..], &["show", "--sample", "0"], &["report"]] {
            t.run(args);
        }
        t.put(file, "0-99999999");
        t.run(&["plan"]);
    }
    let t = Tree::new(&MachineSpec::seed_4cpu());
    let o = t.run(&["plan", "--cpus", "0-4294967295"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("beyond"), "{}", err(&o));
    let mut spec = MachineSpec::seed_4cpu();
    spec.irqbalance = true;
    let t = Tree::new(&spec);
    t.put(
        "proc/4242/environ",
        "IRQBALANCE_BANNED_CPULIST=0-4294967295\0",
    );
    t.run(&["plan"]);
    t.run(&["show", "--sample", "0"]);
}

#[test]
fn special_files_in_a_tree_are_refused_not_read_or_waited_on() {
    let t = Tree::new(&MachineSpec::seed_4cpu());
    fs::remove_file(t.path("proc/interrupts")).unwrap();
    symlink("/dev/zero", t.path("proc/interrupts")).unwrap();
    let o = t.run(&["show", "--sample", "0"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("proc/interrupts"), "{}", err(&o));
    fs::remove_file(t.path("proc/interrupts")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.path("proc/interrupts"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let o = t.run(&["plan"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("FIFO"), "{}", err(&o));
}

#[test]
fn hostile_numbers_in_a_profile_or_an_argument_are_bad_input() {
    let t = Tree::new(&MachineSpec::vm());
    let profile = t.dir.path().join("p.json");
    let synthetic = MachineSpec::vm().synthetic_profile(&t.root(), 5);
    fs::write(&profile, synthetic.to_json()).unwrap();
    let ok = t.run(&["report", "--format", "hdrlog", profile.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", err(&ok));
    let mut v: serde_json::Value = serde_json::from_str(&synthetic.to_json()).unwrap();
    v["softirqs"][0]["handler"]["buckets"][0][2] = serde_json::json!(u64::MAX);
    fs::write(&profile, v.to_string()).unwrap();
    for format in ["hdrlog", "text", "json", "csv", "html", "prometheus"] {
        let o = t.run(&["report", "--format", format, profile.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{format}: {}", err(&o));
        assert!(err(&o).contains("2^53"), "{}", err(&o));
    }
    for s in ["1e300", "inf", "NaN", "-1"] {
        let o = t.run(&["show", "--sample", s]);
        assert_eq!(o.status.code(), Some(2), "--sample {s}: {}", err(&o));
    }
    t.put(
        "proc/sys/net/core/rps_sock_flow_entries",
        &u64::MAX.to_string(),
    );
    t.run(&["plan"]);
}

#[test]
fn a_closed_stdout_does_not_leave_an_apply_half_done() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    let plan = t.plan();
    let mut child = t
        .irqtune(&["apply", plan.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before irqtune writes a line.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut e = String::new();
    child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
    assert!(status.success(), "exit {status}: {e}");
    assert!(!e.contains("panicked"), "{e}");
    let j = t.path("var/lib/irqtune");
    let journal = fs::read_dir(&j)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .expect("a journal");
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(journal.path()).unwrap()).unwrap();
    assert_eq!(v["status"], "applied");
    let o = t.run(&["show", "--sample", "0"]);
    assert!(o.status.success());
}

#[test]
fn the_undo_hint_names_the_tree_and_state_dir() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    let plan = t.plan();
    let state = t.dir.path().join("state dir");
    let o = t.run(&[
        "apply",
        "--state-dir",
        state.to_str().unwrap(),
        plan.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let hint = out(&o);
    let line = hint
        .lines()
        .find(|l| l.contains("undo with"))
        .expect("hint");
    let cmd = line.split('`').nth(1).expect("a command in backquotes");
    assert!(
        cmd.starts_with(&format!(
            "irqtune --root {} revert --state-dir '",
            t.root().display()
        )),
        "{cmd}"
    );
    // Run as printed (through a shell): it reverts the tree, not the live machine.
    let before_revert = snapshot(&t.root());
    let o = run_bounded(
        {
            let mut c = Command::new("sh");
            c.arg("-c").arg(cmd.replacen("irqtune", BIN, 1));
            c
        },
        &["sh", cmd],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_ne!(snapshot(&t.root()), before_revert, "the tree was restored");
}

#[test]
fn revert_checks_the_journal_before_writing_anything() {
    let a = Tree::new(&MachineSpec::two_socket_server());
    let plan = a.plan();
    let state = a.dir.path().join("state");
    let o = a.run(&[
        "apply",
        "--state-dir",
        state.to_str().unwrap(),
        plan.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let journal = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal-")
        })
        .unwrap();

    // Another tree (host, boot and root differ): refused, nothing written in it.
    let mut spec = MachineSpec::two_socket_server();
    spec.boot_id = "99999999-2222-4333-8444-555555555555".into();
    let b = Tree::new(&spec);
    let before = snapshot(&b.root());
    let o = b.run(&["revert", journal.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("made for the tree"), "{}", err(&o));
    assert_unchanged(&before, &snapshot(&b.root()), "tree");

    // A journal whose entry points outside its knob's file: bad input, nothing written.
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&journal).unwrap()).unwrap();
    v["entries"][0]["path"] = format!("../../../../../../../../{}", victim.display()).into();
    let evil = a.dir.path().join("evil.json");
    fs::write(&evil, v.to_string()).unwrap();
    let before = snapshot(&a.root());
    let o = a.run(&["revert", "--force", evil.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    assert_unchanged(&before, &snapshot(&a.root()), "tree");

    // A journal naming a NIC setting (channels: set through ethtool-netlink, on the live
    // machine only) reverted in a tree: bad input before any write, not a NIC of this host.
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&journal).unwrap()).unwrap();
    let first = v["entries"][0].clone();
    // The same for a NAPI kthread's CPUs (sched_setaffinity on a live kthread): a tree has
    // no task to set, and a journal must not make irqtune pin one of this host's.
    for live_only in [
        serde_json::json!({
            "kind": "channels", "iface": "eth0", "channel": "combined",
            "path": "ethtool/eth0/channels/combined", "old": "1", "new": "4"
        }),
        serde_json::json!({
            "kind": "napi_kthread", "iface": "eth0", "napi": 8193,
            "path": "napi/eth0/8193/kthread_cpus", "old": "3", "new": "1"
        }),
    ] {
        v["entries"] = serde_json::json!([first.clone(), live_only]);
        let evil = a.dir.path().join("nic.json");
        fs::write(&evil, v.to_string()).unwrap();
        let before = snapshot(&a.root());
        let o = a.run(&["revert", "--force", evil.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(err(&o).contains("live machine only"), "{}", err(&o));
        assert_unchanged(&before, &snapshot(&a.root()), "tree");
    }

    // The right journal on its own tree reverts.
    let o = a.run(&["revert", "--state-dir", state.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn symlinks_in_a_tree_cannot_lead_writes_or_journals_out_of_it() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    let t = Tree::new(&MachineSpec::two_socket_server());
    let plan = t.plan();
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&plan).unwrap()).unwrap();
    let first = v["changes"][0]["path"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let current = fs::read_to_string(t.path(&first)).unwrap();
    // The knob file becomes a link to a file outside the tree holding the same value.
    fs::write(&victim, &current).unwrap();
    fs::remove_file(t.path(&first)).unwrap();
    symlink(&victim, t.path(&first)).unwrap();
    // And var/ is a link out of the tree.
    let out_var = tempfile::tempdir().unwrap();
    symlink(out_var.path(), t.path("var")).unwrap();
    let o = t.run(&["apply", "--force", plan.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", out(&o));
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        current,
        "nothing written outside"
    );
    assert!(
        fs::read_dir(out_var.path()).unwrap().next().is_none(),
        "no journal outside the tree"
    );
}

#[test]
fn a_state_dir_others_shaped_is_refused() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    let plan = t.plan();
    let state = t.dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    let before = snapshot(&t.root());
    let o = t.run(&[
        "apply",
        "--state-dir",
        state.to_str().unwrap(),
        plan.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert_unchanged(&before, &snapshot(&t.root()), "tree");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let target = t.dir.path().join("precious");
    fs::write(&target, "keep").unwrap();
    symlink(&target, state.join("lock")).unwrap();
    let o = t.run(&[
        "apply",
        "--state-dir",
        state.to_str().unwrap(),
        plan.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("symlink"), "{}", err(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    assert_unchanged(&before, &snapshot(&t.root()), "tree");
}

#[test]
fn report_output_never_replaces_a_device_or_follows_a_link_to_a_file() {
    let t = Tree::new(&MachineSpec::vm());
    let o = t.run(&["report", "-o", "/dev/null"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    let link = t.dir.path().join("to-stdout");
    symlink("/dev/stdout", &link).unwrap();
    let o = t.run(&["report", "-o", link.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("Findings"),
        "written through to stdout: {}",
        out(&o)
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let precious = t.dir.path().join("precious");
    fs::write(&precious, "keep").unwrap();
    let link = t.dir.path().join("to-file");
    symlink(&precious, &link).unwrap();
    let o = t.run(&["report", "-o", link.to_str().unwrap()]);
    assert!(!o.status.success());
    assert_eq!(fs::read_to_string(&precious).unwrap(), "keep");
}

/// Kills apply with SIGKILL right after each write index in turn (the fault-injection hook),
/// and once with SIGHUP between writes; each time `revert` must restore the tree byte for
/// byte from the journal.
#[test]
fn apply_killed_after_any_write_is_reverted_byte_for_byte() {
    let t = Tree::new(&MachineSpec::two_socket_server());
    let plan = t.plan();
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&plan).unwrap()).unwrap();
    let n = v["changes"].as_array().unwrap().len();
    assert!(n >= 8, "{n} changes");
    let before = snapshot(&t.root());
    let tree_only = |s: Vec<(PathBuf, Vec<u8>)>| -> Vec<(PathBuf, Vec<u8>)> {
        s.into_iter()
            .filter(|(p, _)| !p.to_string_lossy().contains("var/lib/irqtune"))
            .collect()
    };
    let before = tree_only(before);
    for k in 1..=n {
        let mut c = t.irqtune(&["apply", plan.to_str().unwrap()]);
        c.env("IRQTUNE_FAULT_KILL_AFTER_WRITE", k.to_string());
        let status = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "killed after write {k}"
        );
        let changed = tree_only(snapshot(&t.root()))
            .iter()
            .zip(&before)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, k, "{k} write(s) made before the kill");
        let o = t.run(&["revert"]);
        assert!(o.status.success(), "after write {k}: {}", err(&o));
        assert_eq!(tree_only(snapshot(&t.root())), before, "after write {k}");
    }
    // SIGHUP (the SSH session dropped) between two writes: rolled back by irqtune itself.
    let mut child = t
        .irqtune(&["apply", "--pause-ms", "400", plan.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while tree_only(snapshot(&t.root())) == before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no write happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(tree_only(snapshot(&t.root())), before, "SIGHUP rolled back");
}

/// A seeded generator (xorshift64*): the sweep below is the same run for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that once broke a parser somewhere: limits, signs, huge lists and masks, paths.
const HOSTILE_TEXT: [&str; 14] = [
    "18446744073709551615",
    "4294967295",
    "-1",
    "0-4294967295",
    "0-99999999",
    "9223372036854775808",
    "1e300",
    "NaN",
    "",
    "\u{0}\u{0}\u{0}",
    "ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff",
    "../../../../../../../../tmp/x",
    "/etc/passwd",
    "0-3,,,5-,-7,8-2",
];

/// Replaces one file of the tree by something hostile: a hostile value, random bytes, a
/// copy of itself a thousand times, half of itself, a FIFO, a directory, or a link out of
/// the tree (to `outside`).
fn mutate_file(rng: &mut Rng, path: &Path, outside: &Path) {
    // Only a regular file is read (a FIFO made by an earlier pick would block).
    let old = match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => fs::read(path).unwrap_or_default(),
        Ok(m) if m.is_dir() => return,
        _ => Vec::new(),
    };
    let _ = fs::remove_file(path);
    let kind = rng.below(8);
    eprintln!("  {} -> kind {kind}", path.display());
    match kind {
        0 | 1 => {
            let text = HOSTILE_TEXT[rng.below(HOSTILE_TEXT.len())];
            eprintln!("    {text:?}");
            fs::write(path, text).unwrap();
        }
        2 => {
            let n = rng.below(4096);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            fs::write(path, bytes).unwrap();
        }
        3 => fs::write(path, old.repeat(1000)).unwrap(),
        4 => fs::write(path, &old[..old.len() / 2]).unwrap(),
        5 => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string; mkfifo has no other preconditions.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        6 => fs::create_dir(path).unwrap(),
        _ => symlink(outside.join("canary"), path).unwrap(),
    }
}

/// Replaces one value of a JSON document (plan or journal) by a hostile one.
fn mutate_json(rng: &mut Rng, text: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    let mut leaves = Vec::new();
    fn walk(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
                walk(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                )
            }),
            serde_json::Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, format!("{at}/{i}"), out)),
            _ => out.push(at),
        }
    }
    walk(&v, String::new(), &mut leaves);
    if leaves.is_empty() {
        return text.to_string();
    }
    let at = &leaves[rng.below(leaves.len())];
    let hostile: serde_json::Value = match rng.below(4) {
        0 => u64::MAX.into(),
        1 => (-1i64).into(),
        2 => serde_json::Value::Null,
        _ => HOSTILE_TEXT[rng.below(HOSTILE_TEXT.len())].into(),
    };
    if let Some(x) = v.pointer_mut(at) {
        *x = hostile;
    }
    v.to_string()
}

/// One case of the sweep: a machine tree with `n` files made hostile; show, plan, apply
/// (of a plan made hostile or not), revert (of a journal made hostile or not). Every run
/// must end by itself without a panic or an abort (`run_bounded`), and nothing outside the
/// tree may change: neither the canary nor the directory it is in.
fn adversarial_case(rng: &mut Rng, case: usize) -> (bool, bool) {
    let specs = [
        MachineSpec::two_socket_server,
        MachineSpec::server_64cpu,
        MachineSpec::vm,
    ];
    let t = Tree::new(&specs[case % specs.len()]());
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("canary"), "keep").unwrap();
    let state = outside.path().join("state");
    let files = snapshot(&t.root());
    // The clean plan first: what a hostile plan is made from.
    let clean_plan = t.dir.path().join("clean-plan.json");
    let _ = t.run(&["plan", "--output", clean_plan.to_str().unwrap()]);
    for _ in 0..=rng.below(3) {
        let (p, _) = &files[rng.below(files.len())];
        mutate_file(rng, p, outside.path());
    }
    let outside_before = snapshot(outside.path());
    let _ = t.run(&["show"]);
    let _ = t.run(&["show", "--json"]);
    let plan = t.dir.path().join("plan.json");
    let made = t.run(&["plan", "--output", plan.to_str().unwrap()]);
    let source = if made.status.success() {
        &plan
    } else {
        &clean_plan
    };
    let mut text = fs::read_to_string(source).unwrap_or_default();
    if rng.below(2) == 0 {
        text = mutate_json(rng, &text);
    }
    let hostile_plan = t.dir.path().join("hostile-plan.json");
    fs::write(&hostile_plan, &text).unwrap();
    let s = state.to_str().unwrap();
    let hp = hostile_plan.to_str().unwrap();
    let _ = t.run(&["apply", "--dry-run", "--state-dir", s, hp]);
    let tree_before = snapshot(&t.root());
    let applied = t.run(&["apply", "--force", "--state-dir", s, hp]);
    let journal = fs::read_dir(&state).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("journal-"))
    });
    let mut reverted = false;
    if let (true, Some(j)) = (applied.status.success(), journal) {
        if rng.below(2) == 0 {
            let evil = outside.path().join("evil-journal.json");
            fs::write(&evil, mutate_json(rng, &fs::read_to_string(&j).unwrap())).unwrap();
            let _ = t.run(&["revert", "--state-dir", s, evil.to_str().unwrap()]);
            let _ = fs::remove_file(&evil);
        }
        let o = t.run(&["revert", "--state-dir", s]);
        if o.status.success() {
            // Byte for byte but for a final newline: a knob is written back as the kernel
            // shows it (value and newline), and a hostile file here may have had none.
            let strip = |v: Vec<(PathBuf, Vec<u8>)>| -> Vec<(PathBuf, Vec<u8>)> {
                v.into_iter()
                    .map(|(p, mut d)| {
                        if d.last() == Some(&b'\n') {
                            d.pop();
                        }
                        (p, d)
                    })
                    .collect()
            };
            assert_unchanged(
                &strip(tree_before.clone()),
                &strip(snapshot(&t.root())),
                "apply then revert",
            );
            reverted = true;
        }
    }
    let _ = fs::remove_dir_all(&state);
    assert_eq!(
        fs::read_to_string(outside.path().join("canary")).unwrap(),
        "keep",
        "case {case}: written through a link out of the tree"
    );
    assert_unchanged(
        &outside_before,
        &snapshot(outside.path()),
        "outside the tree",
    );
    (applied.status.success(), reverted)
}

/// The adversarial sweep: hostile trees, plans and journals from a seeded generator
/// (IRQTUNE_ADVERSARIAL_SEED, IRQTUNE_ADVERSARIAL_CASES: 24 cases in every test run; the
/// pass of 1,000 cases with seed 777 found nothing: 538 applied, 523 reverted exactly; the
/// other 15 reverts ended in an error, without a crash or a write outside the tree).
#[test]
fn an_adversarial_sweep_finds_no_crash_hang_or_write_out_of_the_tree() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seed = env("IRQTUNE_ADVERSARIAL_SEED", 0x1f2e_3d4c_5b6a_7988);
    let cases = env("IRQTUNE_ADVERSARIAL_CASES", 24) as usize;
    let mut rng = Rng(seed.max(1));
    let (mut applied, mut reverted) = (0, 0);
    for case in 0..cases {
        eprintln!("adversarial case {case} (seed {seed})");
        let (a, r) = adversarial_case(&mut rng, case);
        applied += usize::from(a);
        reverted += usize::from(r);
    }
    eprintln!("{cases} cases: {applied} applied, {reverted} of them reverted byte for byte");
    // A sweep where nothing gets applied tests only the refusals.
    assert!(
        applied * 4 >= cases,
        "only {applied} of {cases} cases applied"
    );
}
