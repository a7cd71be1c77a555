//! A threaded NAPI's kthread ("napi/IFACE-ID", Linux 5.12+): found by its NAPI, its CPUs
//! read from /proc/PID/status and set with sched_setaffinity. The kthread exists only while
//! threaded NAPI is on (it is created when `threaded` is set), so before that its CPUs are
//! the ones it will be created with: kthreadd's (a kthread inherits them).

use std::io;

use crate::{
    model::{
        cpulist,
        procfs::{status_field, status_value},
        tree::Tree,
    },
    system::{netdev, sysroot::SysRoot},
};

/// The kthread of NAPI `napi` of `iface`: netdev-genl's pid (6.9+), else the kthread whose
/// name is "napi/IFACE-ID" (cut to the kernel's 15 characters) and whose parent is kthreadd.
pub fn find(root: &SysRoot, iface: &str, napi: u32) -> Option<u32> {
    let ifindex = root.read_parsed::<u32>(&format!("sys/class/net/{iface}/ifindex"))?;
    let from_genl = netdev::get(napi)
        .ok()
        .filter(|n| n.ifindex == ifindex)
        .and_then(|n| n.pid);
    if from_genl.is_some() {
        return from_genl;
    }
    let name = format!("napi/{iface}-{napi}");
    let comm: String = name.chars().take(15).collect();
    let exact = name.len() <= 15;
    let mut found = root
        .list("proc")
        .into_iter()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| {
            let status = root
                .read_opt(&format!("proc/{pid}/status"))
                .unwrap_or_default();
            status_value(&status, "Name") == Some(comm.as_str())
                && status_value(&status, "PPid") == Some("2")
        });
    let first = found.next()?;
    // A cut name may match another NAPI of a long-named device: then it is not this one.
    (exact || found.next().is_none()).then_some(first)
}

/// The kthread's CPUs (the hex mask /proc/PID/status shows as `Cpus_allowed`), or kthreadd's
/// when it does not exist yet.
pub fn read(root: &SysRoot, iface: &str, napi: u32) -> io::Result<String> {
    let pid = find(root, iface, napi).unwrap_or(2);
    status_field(root, pid, "Cpus_allowed").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("/proc/{pid}/status has no Cpus_allowed"),
        )
    })
}

/// Sets the kthread's CPUs; the kthread must exist (threaded NAPI on).
pub fn write(root: &SysRoot, iface: &str, napi: u32, mask: &str) -> io::Result<()> {
    let cpus =
        cpulist::parse_mask(mask).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let Some(pid) = find(root, iface, napi) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no kthread napi/{iface}-{napi}: threaded NAPI is off on {iface}, or the NAPI is gone"),
        ));
    };
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus {
        if c as usize >= rustix::thread::CpuSet::MAX_CPU {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        set.set(c as usize);
    }
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    rustix::thread::sched_setaffinity(Some(pid), &set).map_err(io::Error::from)
}
