//! Guests: the kernels of the matrix (tests/kernels.txt) booted in QEMU with this machine's
//! root file system, running this same test binary filtered to the tests meant for inside.
//! virtme-ng drives QEMU (TCG: KVM does not nest here); `cargo xtask setup --tests` installs
//! both and extracts the kernels. A guest's output comes back through a shared directory.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::irqtune_bin;

/// Where `cargo xtask setup --tests` extracts the kernels.
pub const KERNEL_DIR: &str = "/tmp/irqtune-kernels";

pub use irqtune_testbed::matrix::{matrix, Kernel};

/// The extracted kernel's image: boot/vmlinuz-VER, or from 7.x (the linux-binary package)
/// usr/lib/modules/VER/vmlinuz.
fn vmlinuz(short: &str) -> Option<PathBuf> {
    irqtune_testbed::matrix::image(&Path::new(KERNEL_DIR).join(short))
}

pub fn vng() -> PathBuf {
    std::env::var_os("IRQTUNE_VNG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/irqtune/venv/bin/vng")
        })
}

/// A guest to boot: the kernel, its shape, and extra QEMU options.
pub struct Guest {
    pub image: PathBuf,
    pub cpus: u32,
    pub memory_mb: u32,
    /// `--numa` values (memory in MB and CPUs per node); empty: one node.
    pub numa: Vec<String>,
    pub qemu_opts: Vec<String>,
    /// Environment for the tests inside.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// The shared directory (host path = guest path).
    pub dir: PathBuf,
}

/// What came back from a guest.
pub struct GuestRun {
    /// The tests' exit code inside; empty when the guest died before writing it.
    pub rc: String,
    pub log: String,
    /// Lines the tests inside report (IRQTUNE_COMPAT_OUT).
    pub seen: String,
    pub console: String,
    pub secs: f64,
}

impl Guest {
    /// The guest for `short` with 2 vCPUs, or None (said, or a failure in CI) when setup has
    /// not fetched it.
    pub fn new(short: &str, test: &str) -> Option<Guest> {
        let kernel = matrix()
            .into_iter()
            .find(|k| k.short == short)
            .unwrap_or_else(|| panic!("{short} is not in tests/kernels.txt"));
        let (Some(image), true) = (vmlinuz(short), vng().is_file()) else {
            let why = format!(
                "{test}: kernel {} or virtme-ng missing (under {KERNEL_DIR}/{short}, {}); run `cargo xtask setup --tests`",
                kernel.package_list(),
                vng().display()
            );
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("NOT RUN: {why}");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "irqtune-guest-{}-{}",
            test.replace(['/', ' '], "_"),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("guest output directory");
        Some(Guest {
            image,
            cpus: 2,
            memory_mb: 2048,
            numa: Vec::new(),
            qemu_opts: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(10 * 60),
            dir,
        })
    }

    /// Boots, runs this test binary's tests matching `filter` inside, as root, and returns
    /// what they said. `host` is called about every half second while the guest runs (for a
    /// test's host side: TAP devices, traffic); its argument is the shared directory. A guest
    /// that outlives the timeout is killed with its QEMU.
    pub fn run(&self, filter: &str, mut host: impl FnMut(&Path)) -> GuestRun {
        let out = &self.dir;
        let exe = std::env::current_exe().expect("this test binary");
        let cwd = std::env::current_dir().expect("cwd");
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let script = format!(
            "cd {cwd} && CI=true IRQTUNE_GUEST_DIR={out} IRQTUNE_BIN={bin} IRQTUNE_COMPAT_OUT={out}/seen RUST_BACKTRACE=1 {env}{exe} {filter} --test-threads=1 --nocapture > {out}/log 2>&1; echo $? > {out}/rc",
            cwd = cwd.display(),
            bin = irqtune_bin().display(),
            out = out.display(),
            exe = exe.display(),
        );
        let vng_path = vng();
        let path = format!(
            "{}:{}",
            vng_path.parent().expect("venv bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&vng_path);
        cmd.arg("--run")
            .arg(&self.image)
            // --verbose: the guest kernel's messages go to the console file.
            .args(["--verbose", "--disable-kvm"])
            .args(["--cpus", &self.cpus.to_string()])
            .args(["--memory", &format!("{}M", self.memory_mb)]);
        for n in &self.numa {
            cmd.args(["--numa", n]);
        }
        if let Some(lpj) = host_lpj() {
            // Secondary vCPUs otherwise time their delay loop against jiffies, which under TCG
            // failed ("Consider using \"lpj=\" boot option") and once hung a 7.3 guest's SMP
            // bring-up for the whole timeout.
            cmd.args(["--append", &format!("lpj={lpj}")]);
        }
        // One host thread for all vCPUs: with multi-threaded TCG a vCPU could run a stale
        // translation of kernel text being patched (tracepoint and trampoline sites patched
        // through int3 at attach and detach): guests oopsed ("int3" in handle_softirqs,
        // 6.12) or livelocked (6.1). Single-threaded TCG has no such race.
        let mut opts = vec!["-accel tcg,thread=single".to_string()];
        opts.extend(self.qemu_opts.iter().cloned());
        cmd.arg(format!("--qemu-opts={}", opts.join(" ")));
        let console = fs::File::create(out.join("console")).expect("console file");
        let started = Instant::now();
        let mut child = cmd
            .arg("--rwdir")
            .arg(out)
            .args(["--exec", &script])
            .env("PATH", path)
            .stdin(std::process::Stdio::null())
            .stdout(console.try_clone().expect("console file"))
            .stderr(console)
            .process_group(0)
            .spawn()
            .expect("start vng");
        let deadline = started + self.timeout;
        while child.try_wait().expect("wait for vng").is_none() {
            if Instant::now() > deadline {
                // SAFETY: kill has no memory preconditions; the group is the one spawned above.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                let log = fs::read_to_string(out.join("log")).unwrap_or_default();
                let console = fs::read_to_string(out.join("console")).unwrap_or_default();
                // An empty log is a guest that never reached the test: its console says how
                // far the boot got.
                panic!(
                    "the guest did not finish in {} s; its output so far:\n{log}\n== console (last 40 lines):\n{}",
                    self.timeout.as_secs(),
                    tail(&console, 40)
                );
            }
            host(out);
            std::thread::sleep(Duration::from_millis(500));
        }
        let read = |f: &str| fs::read_to_string(out.join(f)).unwrap_or_default();
        GuestRun {
            rc: read("rc").trim().to_string(),
            log: read("log"),
            seen: read("seen"),
            console: read("console"),
            secs: started.elapsed().as_secs_f64(),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl GuestRun {
    /// The tests inside passed, `n` of them.
    pub fn assert_passed(&self, test: &str, n: usize) {
        assert_eq!(
            self.rc,
            "0",
            "{test}: the tests failed in the guest (exit {:?}):\n{}\n== console (last 40 lines):\n{}",
            self.rc,
            self.log,
            tail(&self.console, 40)
        );
        assert!(
            self.log.contains(&format!("test result: ok. {n} passed")),
            "{test}: not all {n} tests ran in the guest:\n{}",
            self.log
        );
    }
}

/// The guest kernels' loops per jiffy, from this host's BogoMIPS (the same TSC under TCG):
/// BogoMIPS = lpj * HZ / 500000, and Debian's kernels are built with HZ=250.
fn host_lpj() -> Option<u64> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    let bogomips: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("bogomips"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    const HZ: f64 = 250.0;
    Some((bogomips * 500_000.0 / HZ) as u64).filter(|&l| l > 0)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Inside a guest: the shared directory, or None on the host.
pub fn guest_dir() -> Option<PathBuf> {
    std::env::var_os("IRQTUNE_GUEST_DIR").map(PathBuf::from)
}
