//! How each knob kind is read and written: a file under the root (/proc/irq, /sys/class/net,
//! /proc/sys/net/core), the kernel's ethtool-netlink for a NIC's channels, rings and
//! coalescing, or sched_setaffinity for a NAPI kthread: those exist on the live machine only. The applier and revert go through here,
//! so every kind is journaled, checked and put back the same way.

use std::io;

use crate::{
    analysis::plan::Knob,
    system::{
        ethtool::{self, EthtoolError, Param},
        kthread,
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

/// The knob's value now, as its file shows it (or its number).
pub fn read(root: &SysRoot, knob: &Knob) -> Result<String, FsError> {
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
