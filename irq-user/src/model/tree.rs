//! The files a machine is read from: /proc and /sys below some root. The model reads the
//! machine through this trait; the system layer's `SysRoot` implements it for a directory
//! (`/` on the live machine, or a captured tree), and is also the only writer. So the model
//! depends on what it needs to read, not on how the files are reached or written.

use std::path::{Path, PathBuf};

/// A file that could not be read, or should not be: outside the root, not a regular file
/// (a FIFO, a device), or larger than anything /proc or /sys holds.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub trait Tree {
    /// The directory the paths are relative to.
    fn root(&self) -> &Path;

    /// The file `rel` ("proc/irq/36/smp_affinity") with its trailing newline removed.
    fn read(&self, rel: &str) -> Result<String, ReadError>;

    /// Like [`read`](Self::read), None when it does not exist or the kernel refuses to show
    /// it (xps_cpus on a single-queue device).
    fn read_opt(&self, rel: &str) -> Option<String> {
        self.read(rel).ok()
    }

    /// Names in a directory in natural order ("rx-2" before "rx-10"); empty when absent.
    fn list(&self, rel: &str) -> Vec<String>;

    /// Last component of a symlink's target ("virtio_net" for .../drivers/virtio_net).
    fn link_name(&self, rel: &str) -> Option<String>;

    fn exists(&self, rel: &str) -> bool;

    /// A NIC's channels, rings and coalescing, from the kernel (ethtool-netlink); None where
    /// there is no kernel to ask (a captured tree).
    fn nic_layer(&self, _iface: &str) -> Option<crate::model::machine::ethtool::NicLayer> {
        None
    }

    /// The NAPI instances (netdev-genl); None where there is no kernel to ask.
    fn napi_topology(&self) -> Option<crate::model::machine::napi::NapiTopology> {
        None
    }

    /// Reads, trims and parses.
    fn read_parsed<T: std::str::FromStr>(&self, rel: &str) -> Option<T>
    where
        Self: Sized,
    {
        self.read_opt(rel)?.trim().parse().ok()
    }
}

/// A tree with no files: what a reader makes of names alone (and of /proc/interrupts given to
/// it), for tests and fuzzing.
pub struct Empty;

impl Tree for Empty {
    fn root(&self) -> &Path {
        Path::new("/nonexistent")
    }

    fn read(&self, rel: &str) -> Result<String, ReadError> {
        Err(ReadError {
            path: PathBuf::from(rel),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    fn list(&self, _: &str) -> Vec<String> {
        Vec::new()
    }

    fn link_name(&self, _: &str) -> Option<String> {
        None
    }

    fn exists(&self, _: &str) -> bool {
        false
    }
}
