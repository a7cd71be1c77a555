//! `--netns NAME`: the network devices of another network namespace, the rest of the host.
//!
//! /sys/class/net shows the devices of the namespace that mounted sysfs, while
//! /proc/sys/net/core/rps_sock_flow_entries exists only in the initial namespace
//! (net/core/sysctl_net_core.c registers it for init_net). So, like `ip netns exec` but
//! returning to the host's namespace afterwards: a private mount namespace, a sysfs mounted
//! from inside the target namespace, then back. Must run before any thread is started.

use std::{ffi::CString, fs::File, os::fd::AsRawFd, path::PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("--netns {name}: {step}: {source}")]
pub struct NetnsError {
    name: String,
    step: String,
    source: std::io::Error,
}

fn check(rc: libc::c_int, name: &str, step: &str) -> Result<(), NetnsError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(NetnsError {
            name: name.to_string(),
            step: step.to_string(),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Makes /sys/class/net show the devices of network namespace `name` (a name under
/// /var/run/netns, or a path such as /proc/PID/ns/net) for the rest of this process.
pub fn use_netns_devices(name: &str) -> Result<(), NetnsError> {
    let path: PathBuf = if name.contains('/') {
        name.into()
    } else {
        PathBuf::from("/var/run/netns").join(name)
    };
    let open = |p: &std::path::Path, step: &str| {
        File::open(p).map_err(|source| NetnsError {
            name: name.to_string(),
            step: format!("{step} {}", p.display()),
            source,
        })
    };
    let target = open(&path, "open")?;
    let home = open(std::path::Path::new("/proc/self/ns/net"), "open")?;
    let sysfs = CString::new("sysfs").expect("no NUL");
    let sys = CString::new("/sys").expect("no NUL");
    let slash = CString::new("/").expect("no NUL");
    // SAFETY: plain syscalls with valid, NUL-terminated strings and owned descriptors.
    unsafe {
        check(
            libc::unshare(libc::CLONE_NEWNS),
            name,
            "unshare the mount namespace",
        )?;
        check(
            libc::mount(
                std::ptr::null(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            name,
            "make mounts private",
        )?;
        check(
            libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET),
            name,
            "enter",
        )?;
        let _ = libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
        let mounted = libc::mount(
            sysfs.as_ptr(),
            sys.as_ptr(),
            sysfs.as_ptr(),
            0,
            std::ptr::null(),
        );
        let err = std::io::Error::last_os_error();
        check(
            libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET),
            name,
            "return to the host namespace",
        )?;
        if mounted != 0 {
            return Err(NetnsError {
                name: name.to_string(),
                step: "mount its sysfs".into(),
                source: err,
            });
        }
    }
    Ok(())
}
