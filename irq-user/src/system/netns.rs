//! `--netns NAME`: the network devices of another network namespace, the rest of the host.
//!
//! /sys/class/net shows the devices of the namespace that mounted sysfs, while
//! /proc/sys/net/core/rps_sock_flow_entries exists only in the initial namespace
//! (net/core/sysctl_net_core.c registers it for init_net). So, like `ip netns exec` but
//! returning to the host's namespace afterwards: a private mount namespace, a sysfs mounted
//! from inside the target namespace, then back. Must run before any thread is started.

use std::{
    collections::BTreeMap,
    ffi::{CStr, CString},
    fs::File,
    net::IpAddr,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::OnceLock,
};

/// Addresses of the network devices irqtune works on, captured inside `--netns` (sockets'
/// local addresses tell which device a flow came in on).
static NETNS_ADDRS: OnceLock<BTreeMap<String, Vec<IpAddr>>> = OnceLock::new();

/// IP addresses per interface in the current network namespace (getifaddrs(3)).
fn current_addrs() -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur is a valid node of the list until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: sa_family tells which sockaddr the pointer holds.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                }
                _ => None,
            }
        };
        if let Some(ip) = ip {
            out.entry(name).or_default().push(ip);
        }
    }
    // SAFETY: the list came from getifaddrs.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// IP addresses of each interface irqtune works on: those of `--netns` when given, else the
/// host's.
pub fn iface_addrs() -> BTreeMap<String, Vec<IpAddr>> {
    NETNS_ADDRS.get().cloned().unwrap_or_else(current_addrs)
}

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
        let _ = NETNS_ADDRS.set(current_addrs());
        // ethtool-netlink for the namespace's devices: the socket stays in it.
        crate::system::genl::open_in_current_netns();
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
