//! The journal of an apply: every old value, written and fsynced before the first write, so
//! `irqtune revert` can put the machine back after a failure, a crash or a SIGKILL. Journals
//! live in a state directory (default /var/lib/irqtune, below `--root`), one JSON file per
//! apply, named so that they sort by time; a lock file there keeps two applies apart.
//!
//! The state directory decides what irqtune writes as root later, so nobody else may shape
//! it: it is created 0700, and refused when it is not a directory owned by the running user
//! or when group or others may write it. Below `--root` it is resolved inside the tree (a
//! planted `var` symlink cannot move it out). Every file in it is opened relative to it,
//! never following a symlink; temporary files are created exclusively.

use std::{
    io::{self, Read as _, Write as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::analysis::plan::{Knob, Value};
use crate::model::machine::HostId;
use crate::system::sysroot::{SysRoot, MAX_READ};

pub const JOURNAL_FORMAT: &str = "irqtune-journal";
pub const JOURNAL_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Writes may have started; the old values are the truth.
    Applying,
    Applied,
    /// A write failed and everything was put back.
    RolledBack,
    Reverted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub knob: Knob,
    pub path: String,
    /// Exactly what the file held before (trailing newline removed).
    pub old: String,
    pub new: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub format: String,
    pub version: u32,
    pub host: HostId,
    pub created_unix: u64,
    /// The tree the values belong to ("/" on a live machine), canonical.
    pub root: String,
    pub plan: String,
    pub status: Status,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("state directory {path}: {why}; irqtune keeps its journals only where nobody else can write (owned by the running user, mode 0700): fix it or choose another --state-dir")]
    Unsafe { path: PathBuf, why: String },
    #[error("cannot write journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read journal {path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("another irqtune apply, revert or tune is running (pid {pid}, lock {path}); wait for it to finish")]
    Locked { path: PathBuf, pid: String },
    #[error("no journal to revert in {0} (nothing was applied, or it was already reverted)")]
    NothingToRevert(PathBuf),
}

/// Where the state directory is and how it is reached.
#[derive(Clone, Debug)]
enum Place {
    /// A directory the user named (`--state-dir`): the host path as given.
    Given(PathBuf),
    /// The default, `var/lib/irqtune` resolved inside the root.
    InRoot(SysRoot),
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    /// For messages and for the paths of journals shown to the user.
    pub dir: PathBuf,
    place: Place,
}

/// Holds the state directory's lock until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

/// `var/lib/irqtune` below a root.
const DEFAULT_DIR: &str = "var/lib/irqtune";

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Opens `name` in `dir` without following a symlink.
fn open_in(dir: &OwnedFd, name: &str, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::from_raw_mode(mode),
    )?)
}

/// Reads a journal or record from an open file: regular, at most [`MAX_READ`] bytes.
fn read_bounded(fd: OwnedFd) -> io::Result<String> {
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file: refused",
        ));
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_READ + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than any journal: refused",
        ));
    }
    String::from_utf8(data).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

impl Store {
    /// A state directory the user named.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        let dir = dir.into();
        Store {
            place: Place::Given(dir.clone()),
            dir,
        }
    }

    /// The default state directory of `root`: var/lib/irqtune resolved inside it.
    pub fn in_root(root: &SysRoot) -> Store {
        Store {
            dir: root.path(DEFAULT_DIR),
            place: Place::InRoot(root.clone()),
        }
    }

    fn dir_err(&self) -> impl Fn(io::Error) -> JournalError + '_ {
        move |source| JournalError::Dir {
            path: self.dir.clone(),
            source,
        }
    }

    /// The directory, created (0700) when missing, opened, and checked: a directory owned by
    /// the running user that neither group nor others may write.
    fn open_dir(&self) -> Result<OwnedFd, JournalError> {
        let fd = match &self.place {
            Place::Given(dir) => {
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(self.dir_err())?;
                rustix::fs::open(
                    dir,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.dir_err()(e.into()))?
            }
            Place::InRoot(root) => {
                // Each missing component is made in its parent as resolved inside the root.
                let mut prefix = String::new();
                for (i, comp) in DEFAULT_DIR.split('/').enumerate() {
                    let parent = prefix.clone();
                    prefix = if prefix.is_empty() {
                        comp.to_string()
                    } else {
                        format!("{prefix}/{comp}")
                    };
                    if root
                        .open(&prefix, OFlags::PATH | OFlags::DIRECTORY, true)
                        .is_ok()
                    {
                        continue;
                    }
                    let p = root
                        .open(&parent, OFlags::PATH | OFlags::DIRECTORY, true)
                        .map_err(|e| {
                            self.dir_err()(io::Error::new(
                                e.kind(),
                                format!("{e} (resolving {parent:?} inside the root; a symlink leading out of the tree is not followed: choose --state-dir)"),
                            ))
                        })?;
                    let mode = if i == 2 { 0o700 } else { 0o755 };
                    match rustix::fs::mkdirat(&p, comp, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(self.dir_err()(e.into())),
                    }
                }
                root.open(DEFAULT_DIR, OFlags::RDONLY | OFlags::DIRECTORY, false)
                    .map_err(self.dir_err())?
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.dir_err()(e.into()))?;
        let unsafe_because = if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            Some("not a directory".to_string())
        } else if st.st_uid != euid() {
            Some(format!(
                "owned by uid {}, not by the running user (uid {})",
                st.st_uid,
                euid()
            ))
        } else if st.st_mode & 0o022 != 0 {
            Some(format!(
                "mode {:o}: group or others may write it",
                st.st_mode & 0o777
            ))
        } else {
            None
        };
        match unsafe_because {
            Some(why) => Err(JournalError::Unsafe {
                path: self.dir.clone(),
                why,
            }),
            None => Ok(fd),
        }
    }

    /// Takes the lock without waiting: a second apply refuses rather than interleaving. The
    /// lock file is never a symlink and is the running user's.
    pub fn lock(&self) -> Result<Lock, JournalError> {
        let dir = self.open_dir()?;
        let path = self.dir.join("lock");
        let err = |source: io::Error| JournalError::Dir {
            path: path.clone(),
            source,
        };
        let planted = |why: &str| JournalError::Unsafe {
            path: path.clone(),
            why: format!("{why} (planted?); remove it"),
        };
        let fd = open_in(&dir, "lock", OFlags::RDWR | OFlags::CREATE, 0o600).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                planted("the lock is a symlink")
            } else {
                err(e)
            }
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_uid != euid() {
            return Err(planted(
                "the lock is not a regular file of the running user",
            ));
        }
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            let pid = read_bounded(fd).unwrap_or_default().trim().to_string();
            return Err(JournalError::Locked { path, pid });
        }
        let mut file = std::fs::File::from(fd);
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Lock { _file: file })
    }

    /// Writes `text` durably as `name` in the directory (an exclusive temporary file,
    /// fsync, rename, fsync of the directory).
    fn write_file(&self, name: &str, text: &str) -> Result<PathBuf, JournalError> {
        let dir = self.open_dir()?;
        let path = self.dir.join(name);
        let err = |source: io::Error| JournalError::Write {
            path: path.clone(),
            source,
        };
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        let fd = open_in(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            0o600,
        )
        .map_err(err)?;
        let mut f = std::fs::File::from(fd);
        let written = f
            .write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| Ok(rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?))
            .and_then(|()| Ok(rustix::fs::fsync(&dir)?));
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
            return Err(err(e));
        }
        Ok(path)
    }

    /// A name that sorts by time: `KIND-SECS-NANOS-PID.json`.
    fn new_name(kind: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{kind}-{:012}-{:09}-{}.json",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        )
    }

    /// Writes a new journal durably and returns its path.
    pub fn create(&self, journal: &Journal) -> Result<PathBuf, JournalError> {
        self.save_as(&Store::new_name("journal"), journal)
    }

    fn save_as(&self, name: &str, journal: &Journal) -> Result<PathBuf, JournalError> {
        let text = serde_json::to_string_pretty(journal).map_err(|e| JournalError::Write {
            path: self.dir.join(name),
            source: io::Error::other(e),
        })?;
        self.write_file(name, &text)
    }

    /// Writes a record of another kind (a tune run's trials) durably, named like the
    /// journals so they sort together.
    pub fn write_record(&self, kind: &str, text: &str) -> Result<PathBuf, JournalError> {
        self.write_file(&Store::new_name(kind), text)
    }

    /// Replaces a journal of this directory atomically.
    pub fn save(&self, path: &Path, journal: &Journal) -> Result<(), JournalError> {
        let name = Store::own_name(path).ok_or_else(|| JournalError::Write {
            path: path.to_path_buf(),
            source: io::Error::other("not a journal of this state directory"),
        })?;
        self.save_as(&name, journal).map(|_| ())
    }

    /// The file name of a journal of this directory, if `path` is one.
    fn own_name(path: &Path) -> Option<String> {
        let name = path.file_name()?.to_str()?;
        (name.starts_with("journal-") && name.ends_with(".json") && !name.contains('/'))
            .then(|| name.to_string())
    }

    /// Reads a journal: one of this directory (opened inside it), or a file the user named.
    pub fn load_in(&self, path: &Path) -> Result<Journal, JournalError> {
        let read = |msg: String| JournalError::Read {
            path: path.to_path_buf(),
            msg,
        };
        let in_dir = path.parent() == Some(self.dir.as_path());
        let fd = match Store::own_name(path) {
            Some(name) if in_dir => {
                let dir = self.open_dir()?;
                open_in(&dir, &name, OFlags::RDONLY | OFlags::NONBLOCK, 0)
            }
            _ => rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )
            .map_err(io::Error::from),
        }
        .map_err(|e| read(e.to_string()))?;
        let text = read_bounded(fd).map_err(|e| read(e.to_string()))?;
        let j: Journal = serde_json::from_str(&text)
            .map_err(|e| read(format!("line {} column {}: {e}", e.line(), e.column())))?;
        if j.format != JOURNAL_FORMAT || j.version != JOURNAL_VERSION {
            return Err(read(format!(
                "not an irqtune journal version {JOURNAL_VERSION} (format {:?}, version {})",
                j.format, j.version
            )));
        }
        Ok(j)
    }

    /// Journals, oldest first.
    pub fn list(&self) -> Vec<PathBuf> {
        let Ok(dir) = self.open_dir() else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = crate::system::sysroot::entry_names(&dir)
            .into_iter()
            .filter(|n| n.starts_with("journal-") && n.ends_with(".json"))
            .map(|n| self.dir.join(n))
            .collect();
        v.sort();
        v
    }

    /// The newest journal whose changes may still be in place (applying or applied).
    pub fn latest_active(&self) -> Result<PathBuf, JournalError> {
        self.list()
            .into_iter()
            .rev()
            .find(|p| {
                self.load_in(p)
                    .is_ok_and(|j| matches!(j.status, Status::Applying | Status::Applied))
            })
            .ok_or_else(|| JournalError::NothingToRevert(self.dir.clone()))
    }
}

/// The canonical form of a root, as journals record it.
pub fn canonical_root(root: &SysRoot) -> String {
    std::fs::canonicalize(root.root())
        .unwrap_or_else(|_| root.root().to_path_buf())
        .display()
        .to_string()
}

impl Journal {
    /// What makes a journal unfit to revert here, checked before any write. `mismatch`:
    /// another root, host or boot (refused unless forced); `invalid`: an entry that names
    /// another file than its knob's, or a value its knob cannot hold (never written).
    pub fn check(&self, root: &SysRoot, here: &HostId) -> (Vec<String>, Vec<String>) {
        let mut mismatch = Vec::new();
        let this_root = canonical_root(root);
        let journal_root = std::fs::canonicalize(&self.root)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| self.root.clone());
        if journal_root != this_root {
            mismatch.push(format!(
                "it was made for the tree {:?}, not {this_root:?} (--root)",
                self.root
            ));
        }
        if self.host.hostname != here.hostname {
            mismatch.push(format!(
                "it was made on host {:?}, this is {:?}",
                self.host.hostname, here.hostname
            ));
        }
        if self.host.boot_id != here.boot_id {
            mismatch.push(format!(
                "it was made in boot {}, this boot is {} (IRQ numbers and devices can change across boots)",
                self.host.boot_id, here.boot_id
            ));
        }
        let mut invalid = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let at = |msg: String| format!("entry {} ({}): {msg}", i + 1, e.knob);
            if let Err(err) = e.knob.check() {
                invalid.push(at(err.to_string()));
                continue;
            }
            if e.path.trim_start_matches('/') != e.knob.path() {
                invalid.push(at(format!(
                    "path {:?} is not the knob's file /{}",
                    e.path,
                    e.knob.path()
                )));
            }
            for v in [&e.old, &e.new] {
                if let Err(err) = Value::parse(e.knob.value_kind(), v) {
                    invalid.push(at(format!("value {v:?}: {err}")));
                }
            }
        }
        (mismatch, invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn journal(root: &str) -> Journal {
        Journal {
            format: JOURNAL_FORMAT.into(),
            version: JOURNAL_VERSION,
            host: HostId {
                hostname: "h".into(),
                boot_id: "b".into(),
                cpus: 2,
                kernel: "k".into(),
            },
            created_unix: 1,
            root: root.into(),
            plan: "p".into(),
            status: Status::Applied,
            entries: vec![Entry {
                knob: Knob::RpsSockFlowEntries,
                path: "/proc/sys/net/core/rps_sock_flow_entries".into(),
                old: "0".into(),
                new: "32768".into(),
            }],
        }
    }

    #[test]
    fn a_state_dir_others_can_write_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let store = Store::new(&dir);
        store.lock().unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = store.lock().unwrap_err();
        assert!(matches!(e, JournalError::Unsafe { .. }), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A planted lock symlink is refused and its target left alone.
        let target = d.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        std::fs::remove_file(dir.join("lock")).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("lock")).unwrap();
        let e = store.lock().unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }

    #[test]
    fn the_default_dir_stays_inside_the_root_whatever_var_points_to() {
        let outside = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        // An absolute link resolves as if the tree were `/`: to a directory the tree lacks.
        std::os::unix::fs::symlink(outside.path(), tree.path().join("var")).unwrap();
        let root = SysRoot::new(tree.path());
        let e = Store::in_root(&root).create(&journal("/")).unwrap_err();
        assert!(e.to_string().contains("var/lib/irqtune"), "{e}");
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing written outside the tree"
        );
        // A link to a directory inside the tree is followed there.
        std::fs::remove_file(tree.path().join("var")).unwrap();
        std::fs::create_dir_all(tree.path().join("data/var")).unwrap();
        std::os::unix::fs::symlink("/data/var", tree.path().join("var")).unwrap();
        let store = Store::in_root(&root);
        store.create(&journal("/")).unwrap();
        assert!(tree.path().join("data/var/lib/irqtune").is_dir());
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn a_journal_is_checked_before_any_write() {
        let tree = tempfile::tempdir().unwrap();
        let root = SysRoot::new(tree.path());
        let here = journal("/").host;
        let mut j = journal(&tree.path().display().to_string());
        let (m, i) = j.check(&root, &here);
        assert!(m.is_empty() && i.is_empty(), "{m:?} {i:?}");
        j.root = "/".into();
        j.host.boot_id = "other".into();
        let (m, _) = j.check(&root, &here);
        assert_eq!(m.len(), 2, "{m:?}");
        j.entries[0].path = "../../../tmp/victim".into();
        j.entries[0].old = "x; rm -rf /".into();
        let (_, i) = j.check(&root, &here);
        assert_eq!(i.len(), 2, "{i:?}");
    }
}
