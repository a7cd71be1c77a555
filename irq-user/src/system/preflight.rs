//! Checks the machine before loading the probes and says, one line per problem, what to do.

use std::{fmt, path::Path};

/// Where tracefs is mounted on current kernels, and the older debugfs location.
pub const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEFS_LEGACY: &str = "/sys/kernel/debug/tracing";

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.what, self.fix)
    }
}

/// Every problem found, so the user fixes them in one go rather than one per run.
#[derive(Debug, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "irqtune cannot load its probes on this machine:")?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// What the checks found usable.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Root of tracefs (holds `events/`).
    pub tracefs: std::path::PathBuf,
    /// Whether irqtune mounted tracefs itself.
    pub mounted_tracefs: bool,
}

impl Environment {
    /// Whether a classic tracepoint exists (`events/<category>/<name>`).
    pub fn has_tracepoint(&self, category: &str, name: &str) -> bool {
        self.tracefs
            .join("events")
            .join(category)
            .join(name)
            .is_dir()
    }
}

/// Effective capability bits of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

fn tracefs_mounted(dir: &Path) -> bool {
    dir.join("events").is_dir()
}

fn mount_tracefs() -> std::io::Result<()> {
    let target = std::ffi::CString::new(TRACEFS).expect("no NUL in a constant");
    let fstype = std::ffi::CString::new("tracefs").expect("no NUL in a constant");
    // SAFETY: plain mount(2) with valid NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (before 5.11). Kernels
/// since then account BPF memory to the memory cgroup, and where CAP_SYS_RESOURCE is dropped
/// the raise fails harmlessly: so a failure is only logged.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11 (memcg accounting)",
            std::io::Error::last_os_error()
        );
    }
}

/// Checks privileges, BTF and tracefs; mounts tracefs when it is missing and that is allowed.
pub fn check() -> Result<Environment, Problems> {
    let mut problems = Vec::new();

    let caps = effective_caps().unwrap_or(0);
    let bpf_ok =
        has_cap(caps, CAP_SYS_ADMIN) || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON));
    if !bpf_ok {
        problems.push(Problem {
            what: "not privileged to load eBPF (needs root, or CAP_BPF and CAP_PERFMON)".into(),
            fix: "run as root (sudo irqtune ...) or grant the capabilities: \
                  setcap cap_bpf,cap_perfmon,cap_sys_admin+ep $(which irqtune)"
                .into(),
        });
    }

    if !Path::new(crate::system::btf::VMLINUX).is_file() {
        problems.push(Problem {
            what: format!("no kernel BTF at {}", crate::system::btf::VMLINUX),
            fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution since 2021)".into(),
        });
    }

    let mut env = None;
    for dir in [TRACEFS, TRACEFS_LEGACY] {
        if tracefs_mounted(Path::new(dir)) {
            env = Some(Environment {
                tracefs: dir.into(),
                mounted_tracefs: false,
            });
            break;
        }
    }
    if env.is_none() {
        match mount_tracefs() {
            Ok(()) if tracefs_mounted(Path::new(TRACEFS)) => {
                log::info!("mounted tracefs at {TRACEFS}");
                env = Some(Environment {
                    tracefs: TRACEFS.into(),
                    mounted_tracefs: true,
                });
            }
            Ok(()) => problems.push(Problem {
                what: format!("tracefs mounted at {TRACEFS} but has no events/"),
                fix: "the kernel needs CONFIG_FTRACE and tracepoints (CONFIG_TRACEPOINTS)".into(),
            }),
            Err(e) => problems.push(Problem {
                what: format!("tracefs is not mounted and mounting it failed ({e})"),
                fix: format!("as root run: mount -t tracefs tracefs {TRACEFS}"),
            }),
        }
    }

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    raise_memlock();
    Ok(env.expect("set when there are no problems"))
}
