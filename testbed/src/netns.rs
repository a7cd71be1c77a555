//! Network namespaces joined by a veth, CPU pinning, values restored on drop.

use std::{
    fs, io,
    io::Write as _,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
};

/// Runs `cmd` with `sh -c`; its standard output, or an error with its standard error.
pub fn sh(cmd: &str) -> io::Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the calling thread's name (the `comm` the flow probes report; 15 bytes kept).
pub fn name_thread(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // SAFETY: a valid NUL-terminated name for the current thread.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

/// Moves the calling thread into a named network namespace (setns affects only this thread).
pub fn enter_netns(ns: &str) -> io::Result<()> {
    let f = fs::File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: setns with a valid namespace fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    /// Whether dropping this value removes the namespaces (false for [`NetnsPair::names`]).
    owner: bool,
}

impl NetnsPair {
    /// Namespaces `irqt-TAG-a-PID` and `irqt-TAG-b-PID`, each veth end with `queues` rx and
    /// tx queues (a multi-queue device shows xps_cpus; single-queue ones do not).
    pub fn with_queues(tag: &str, queues: u32) -> io::Result<Self> {
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
            owner: true,
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
        ))?;
        Ok(pair)
    }

    /// Writes a sysfs value as seen from inside namespace `ns` (`ip netns exec` mounts that
    /// namespace's sysfs).
    pub fn sysfs_write(&self, ns: &str, path: &str, value: &str) -> io::Result<()> {
        sh(&format!("ip netns exec {ns} sh -c 'echo {value} > {path}'")).map(|_| ())
    }

    pub fn sysfs_read(&self, ns: &str, path: &str) -> io::Result<String> {
        sh(&format!("ip netns exec {ns} cat {path}")).map(|s| s.trim().to_string())
    }

    /// The same names and addresses, for another thread; dropping it removes nothing.
    pub fn names(&self) -> NetnsPair {
        NetnsPair {
            a: self.a.clone(),
            b: self.b.clone(),
            ip_a: self.ip_a.clone(),
            ip_b: self.ip_b.clone(),
            ip6_a: self.ip6_a.clone(),
            ip6_b: self.ip6_b.clone(),
            owner: false,
        }
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A file value (sysctl, sysfs, /proc/irq) restored to what it was when the guard was made.
pub struct Restore {
    path: PathBuf,
    original: String,
}

impl Restore {
    pub fn new(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let original = fs::read_to_string(&path)?;
        Ok(Restore { path, original })
    }

    pub fn set(&self, value: &str) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .write_all(value.as_bytes())
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
