//! How each knob kind is read and written: a file under the root (/proc/irq, /sys/class/net,
//! /proc/sys/net/core), the kernel's ethtool-netlink for a NIC's channels, rings and
//! coalescing, or sched_setaffinity for a NAPI kthread: those exist on the live machine only. The applier and revert go through here,
//! so every kind is journaled, checked and put back the same way.

use std::io;

use crate::{
    analysis::plan::Knob,
    model::{machine::napi::Napi, tree::Tree},
    system::{
        ethtool::{self, EthtoolError, Param},
        kthread, netdev,
        sysroot::{FsError, SysRoot},
    },
};

/// The ethtool parameter behind a knob, if it is one.
fn param(knob: &Knob) -> Option<(&str, Param)> {
    match knob {
        Knob::Channels { iface, channel } => Some((iface, Param::Channels(*channel))),
        Knob::Ring { iface, ring } => Some((iface, Param::Ring(*ring))),
        Knob::Coalesce { iface, param } => Some((iface, Param::Coalesce(*param))),
        _ => None,
    }
}

fn io_error(e: EthtoolError) -> io::Error {
    match e {
        EthtoolError::NotSupported => io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        other => io::Error::other(other.to_string()),
    }
}

/// The live machine only: a captured tree has no NIC to ask.
fn live(root: &SysRoot) -> Result<(), io::Error> {
    if root.is_live() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "a NIC's channels, rings and coalescing (ethtool-netlink) and a NAPI kthread's CPUs are read and set through the kernel, not in the tree {}",
            root.root().display()
        )))
    }
}

/// NAPI `napi`, checked to be `iface`'s (ids are global; a plan or journal must not reach
/// another device's NAPI through an id).
fn own_napi(root: &SysRoot, iface: &str, napi: u32) -> Result<Napi, io::Error> {
    live(root)?;
    let n = netdev::get(napi).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("NAPI {napi}: {e} (netdev-genl napi-get; per-NAPI settings need Linux 6.13+)"),
        )
    })?;
    let ifindex = root.read_parsed::<u32>(&format!("sys/class/net/{iface}/ifindex"));
    if ifindex != Some(n.ifindex) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NAPI {napi} is not {iface}'s (it belongs to ifindex {})",
                n.ifindex
            ),
        ));
    }
    Ok(n)
}

/// The knob's value now, as its file shows it (or its number).
pub fn read(root: &SysRoot, knob: &Knob) -> Result<String, FsError> {
    if let Knob::NapiSetting {
        iface,
        napi,
        setting,
    } = knob
    {
        return own_napi(root, iface, *napi)
            .and_then(|n| {
                setting.of(&n).map(|v| v.to_string()).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "this kernel does not report {} per NAPI (6.13+)",
                            setting.name()
                        ),
                    )
                })
            })
            .map_err(|source| FsError::Read {
                path: root.path(&knob.path()),
                source,
            });
    }
    if let Knob::NapiKthread { iface, napi } = knob {
        return live(root)
            .and_then(|()| kthread::read(root, iface, *napi))
            .map_err(|source| FsError::Read {
                path: root.path(&knob.path()),
                source,
            });
    }
    let Some((iface, p)) = param(knob) else {
        return root.read(&knob.path());
    };
    live(root)
        .and_then(|()| ethtool::get(iface, &p).map_err(io_error))
        .map(|v| v.to_string())
        .map_err(|source| FsError::Read {
            path: root.path(&knob.path()),
            source,
        })
}

/// Sets the knob to `value` (in its file's format).
pub fn write(root: &SysRoot, knob: &Knob, value: &str) -> Result<(), FsError> {
    let err = |source| FsError::Write {
        path: root.path(&knob.path()),
        value: value.to_string(),
        source,
    };
    if let Knob::NapiKthread { iface, napi } = knob {
        live(root).map_err(err)?;
        return kthread::write(root, iface, *napi, value).map_err(err);
    }
    if let Knob::NapiSetting {
        iface,
        napi,
        setting,
    } = knob
    {
        own_napi(root, iface, *napi).map_err(err)?;
        let n: u32 = value
            .trim()
            .parse()
            .map_err(|_| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
        return netdev::set(*napi, *setting, n).map_err(err);
    }
    let Some((iface, p)) = param(knob) else {
        return root.write(&knob.path(), value);
    };
    live(root).map_err(err)?;
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    ethtool::set(iface, &p, n).map_err(|e| err(io_error(e)))
}
