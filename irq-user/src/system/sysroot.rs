//! Every read and write of /proc and /sys goes through [`SysRoot`], which holds the directory
//! they are relative to: `/` on a live machine, or a captured tree (`--root DIR`, such as an
//! unpacked sosreport, or a test fixture shaped like a real machine). It implements the
//! model's [`Tree`] for reading the machine, and is the one writer.
//!
//! A tree from elsewhere is untrusted, so every path is resolved inside the root by the
//! kernel (`openat2` with RESOLVE_IN_ROOT, as if the root were `/`, the way systemd's
//! chase() treats `--root`): a symlink in the tree, absolute or with `..`, cannot lead out
//! of it. Only regular files are read or written (procfs and sysfs files are; a FIFO, a
//! device or a directory planted in their place is refused, never waited on), reads stop at
//! [`MAX_READ`], and a write never follows a symlink in the last component: the kernel makes
//! none for the knobs irqtune writes.

use std::{
    io::{self, Read as _, Write as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::model::tree::{ReadError, Tree};

/// The largest file irqtune reads from /proc, /sys or a tree: /proc/interrupts of 512 CPUs
/// and a thousand IRQs is about 6 MB.
pub const MAX_READ: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
}

impl FsError {
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsError::Read { source, .. } | FsError::Write { source, .. } => source.raw_os_error(),
        }
    }
}

impl From<FsError> for ReadError {
    fn from(e: FsError) -> ReadError {
        match e {
            FsError::Read { path, source } | FsError::Write { path, source, .. } => {
                ReadError { path, source }
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct SysRoot {
    root: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot::new("/")
    }
}

/// procfs and sysfs: their files report sizes that mean nothing (0, 4096) and take no
/// truncation.
fn is_kernel_fs(fd: &OwnedFd) -> bool {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    rustix::fs::fstatfs(fd).is_ok_and(|s| {
        // f_type is an i64 on x86_64 but an i32 or u32 on other targets.
        #[allow(clippy::useless_conversion)]
        let t = i64::from(s.f_type);
        t == PROC_SUPER_MAGIC || t == SYSFS_MAGIC
    })
}

fn not_regular(kind: FileType) -> io::Error {
    let what = match kind {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a directory",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symlink",
        _ => "not a regular file",
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file: refused"),
    )
}

fn regular(fd: &OwnedFd) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(()),
        other => Err(not_regular(other)),
    }
}

impl SysRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysRoot { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the live machine rather than a captured tree.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `rel` ("proc/irq/36/smp_affinity") below the root, for messages and for paths
    /// handed to the kernel elsewhere; reads and writes resolve it inside the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Opens `rel` resolved inside the root; a symlink in the last component is followed
    /// only when `follow_last` (and then inside the root too).
    pub fn open(&self, rel: &str, flags: OFlags, follow_last: bool) -> io::Result<OwnedFd> {
        let root = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let rel = rel.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let nofollow = if follow_last {
            OFlags::empty()
        } else {
            OFlags::NOFOLLOW
        };
        // openat2 refuses O_PATH with flags beyond O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        let noctty = if flags.contains(OFlags::PATH) {
            OFlags::empty()
        } else {
            OFlags::NOCTTY
        };
        Ok(rustix::fs::openat2(
            &root,
            rel,
            flags | nofollow | noctty | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// The file's contents with the trailing newline removed: a regular file below the
    /// root, at most [`MAX_READ`] bytes (not UTF-8: replaced characters).
    pub fn read(&self, rel: &str) -> Result<String, FsError> {
        let path = self.path(rel);
        let read = || -> io::Result<String> {
            // Non-blocking, so a FIFO planted in the tree cannot hang the open.
            let fd = self.open(rel, OFlags::RDONLY | OFlags::NONBLOCK, true)?;
            regular(&fd)?;
            let mut data = Vec::new();
            std::fs::File::from(fd)
                .take(MAX_READ + 1)
                .read_to_end(&mut data)?;
            if data.len() as u64 > MAX_READ {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {} MiB: refused", MAX_READ >> 20),
                ));
            }
            Ok(String::from_utf8_lossy(&data)
                .trim_end_matches('\n')
                .to_string())
        };
        read().map_err(|source| FsError::Read { path, source })
    }

    /// Writes `value` in one write(2), as `echo value > file` does; sysfs and procfs take a
    /// value per write. The file must exist and be a regular file that is not a symlink: a
    /// typo must not create files in a captured tree, nor a planted link redirect the write.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), FsError> {
        let path = self.path(rel);
        let write = || -> io::Result<()> {
            let fd = self.open(rel, OFlags::WRONLY | OFlags::NONBLOCK, false)?;
            regular(&fd)?;
            if !is_kernel_fs(&fd) {
                rustix::fs::ftruncate(&fd, 0)?;
            }
            std::fs::File::from(fd).write_all(format!("{value}\n").as_bytes())
        };
        write().map_err(|source| FsError::Write {
            path,
            value: value.to_string(),
            source,
        })
    }
}

impl Tree for SysRoot {
    fn root(&self) -> &Path {
        SysRoot::root(self)
    }

    fn nic_layer(&self, iface: &str) -> Option<crate::model::machine::ethtool::NicLayer> {
        self.is_live().then(|| crate::system::ethtool::read(iface))
    }

    fn napi_topology(&self) -> Option<crate::model::machine::napi::NapiTopology> {
        self.is_live().then(crate::system::netdev::read)
    }

    fn read(&self, rel: &str) -> Result<String, ReadError> {
        SysRoot::read(self, rel).map_err(ReadError::from)
    }

    /// Names in a directory, sorted; empty when it does not exist.
    fn list(&self, rel: &str) -> Vec<String> {
        let Ok(fd) = self.open(rel, OFlags::RDONLY | OFlags::DIRECTORY, true) else {
            return Vec::new();
        };
        let mut names = entry_names(&fd);
        names.sort_by(|a, b| natural_cmp(a, b));
        names
    }

    /// Last component of a symlink's target ("virtio_net" for .../drivers/virtio_net).
    fn link_name(&self, rel: &str) -> Option<String> {
        let rel = rel.trim_start_matches('/');
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = self
            .open(parent, OFlags::PATH | OFlags::DIRECTORY, true)
            .ok()?;
        let target = rustix::fs::readlinkat(&dir, name, Vec::new()).ok()?;
        let target = target.to_str().ok()?;
        target
            .rsplit('/')
            .find(|c| !c.is_empty())
            .map(str::to_string)
    }

    fn exists(&self, rel: &str) -> bool {
        self.open(rel, OFlags::PATH, true).is_ok()
    }
}

/// Orders "rx-2" before "rx-10" and "cpu2" before "cpu10".
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        let idx = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        (&s[..idx], s[idx..].parse().ok())
    }
    let (pa, na) = split(a);
    let (pb, nb) = split(b);
    pa.cmp(pb).then(na.cmp(&nb)).then(a.cmp(b))
}

/// The names in an open directory, "." and ".." left out, unsorted; names that are not UTF-8
/// are skipped (no knob or journal irqtune reads has one). Empty when it cannot be read.
pub(crate) fn entry_names(dir: &impl rustix::fd::AsFd) -> Vec<String> {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_and_writes_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::new(dir.path());
        fs::create_dir_all(root.path("proc/irq/5")).unwrap();
        fs::write(root.path("proc/irq/5/smp_affinity"), "f\n").unwrap();
        assert_eq!(root.read("/proc/irq/5/smp_affinity").unwrap(), "f");
        root.write("proc/irq/5/smp_affinity", "1").unwrap();
        assert_eq!(root.read("proc/irq/5/smp_affinity").unwrap(), "1");
        let err = root.write("proc/irq/6/smp_affinity", "1").unwrap_err();
        assert!(err.to_string().contains("proc/irq/6/smp_affinity"), "{err}");
        assert!(!root.exists("proc/irq/6/smp_affinity"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_never_lead_out() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "untouched\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::new(dir.path());
        fs::create_dir_all(root.path("proc/irq/7")).unwrap();
        fs::create_dir_all(root.path("tmp")).unwrap();
        fs::write(root.path("tmp/victim"), "inside\n").unwrap();
        // An absolute link resolves as if the tree were `/`: to the tree's own file.
        std::os::unix::fs::symlink(&victim, root.path("proc/irq/7/smp_affinity_list")).unwrap();
        std::os::unix::fs::symlink("/tmp/victim", root.path("proc/irq/7/smp_affinity")).unwrap();
        assert_eq!(root.read("proc/irq/7/smp_affinity").unwrap(), "inside");
        // `..` cannot climb above the root either.
        std::os::unix::fs::symlink(
            "../../../../../../../../tmp/victim",
            root.path("proc/irq/7/node"),
        )
        .unwrap();
        assert_eq!(root.read("proc/irq/7/node").unwrap(), "inside");
        // The host path does not exist inside the tree.
        assert!(root.read("proc/irq/7/smp_affinity_list").is_err());
        // A write never follows a link in the last component.
        let e = root.write("proc/irq/7/smp_affinity", "2").unwrap_err();
        assert!(e.to_string().contains("smp_affinity"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
        assert_eq!(
            fs::read_to_string(root.path("tmp/victim")).unwrap(),
            "inside\n"
        );
    }

    #[test]
    fn fifos_devices_and_huge_files_are_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::new(dir.path());
        fs::create_dir_all(root.path("proc")).unwrap();
        let fifo = root.path("proc/interrupts");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = root.read("proc/interrupts").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = root.write("proc/interrupts", "1").unwrap_err();
        assert!(
            e.to_string().contains("FIFO") || e.raw_os_error() == Some(libc::ENXIO),
            "{e}"
        );
        std::os::unix::fs::symlink("/dev/zero", root.path("proc/softirqs")).unwrap();
        assert!(
            root.read("proc/softirqs").is_err(),
            "/dev/zero is not inside the tree"
        );
        fs::create_dir_all(root.path("dev")).unwrap();
        let big = fs::File::create(root.path("dev/zero")).unwrap();
        big.set_len(MAX_READ + 10).unwrap();
        let e = root.read("proc/softirqs").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn sorts_naturally() {
        let mut v = vec!["rx-10", "rx-2", "rx-1", "tx-0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["rx-1", "rx-2", "rx-10", "tx-0"]);
    }
}
