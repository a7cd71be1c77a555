//! The journal of an apply: every old value, written and fsynced before the first write, so
//! `irqtune revert` can put the machine back after a failure, a crash or a SIGKILL. Journals
//! live in a state directory (default /var/lib/irqtune, below `--root`), one JSON file per
//! apply, named so that they sort by time; a lock file there keeps two applies apart.

use std::{
    fs,
    io::Write as _,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::analysis::plan::Knob;
use crate::model::machine::HostId;

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
    /// The tree the values belong to ("/" on a live machine).
    pub root: String,
    pub plan: String,
    pub status: Status,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write journal {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read journal {path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("another irqtune apply or revert is running (pid {pid}, lock {path}); wait for it to finish")]
    Locked { path: PathBuf, pid: String },
    #[error("no journal to revert in {0} (nothing was applied, or it was already reverted)")]
    NothingToRevert(PathBuf),
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    pub dir: PathBuf,
}

/// Holds the state directory's lock until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: fs::File,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    fn ensure_dir(&self) -> Result<(), JournalError> {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| JournalError::Dir {
                path: self.dir.clone(),
                source,
            })
    }

    /// Takes the lock without waiting: a second apply refuses rather than interleaving.
    pub fn lock(&self) -> Result<Lock, JournalError> {
        self.ensure_dir()?;
        let path = self.dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| JournalError::Dir {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let pid = fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string();
            return Err(JournalError::Locked { path, pid });
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Lock { _file: file })
    }

    /// Writes a new journal durably (temporary file, fsync, rename, fsync of the directory)
    /// and returns its path.
    pub fn create(&self, journal: &Journal) -> Result<PathBuf, JournalError> {
        self.ensure_dir()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "journal-{:012}-{:09}-{}.json",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        );
        let path = self.dir.join(name);
        self.save(&path, journal)?;
        Ok(path)
    }

    /// Writes a record of another kind (a tune run's trials) durably, named like the
    /// journals so they sort together: `KIND-SECS-NANOS-PID.json`.
    pub fn write_record(&self, kind: &str, text: &str) -> Result<PathBuf, JournalError> {
        self.ensure_dir()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let path = self.dir.join(format!(
            "{kind}-{:012}-{:09}-{}.json",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        ));
        let err = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        fsync_dir(&self.dir).map_err(err)?;
        Ok(path)
    }

    /// Replaces a journal atomically.
    pub fn save(&self, path: &Path, journal: &Journal) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let mut f = fs::File::create(&tmp).map_err(err)?;
        let text = serde_json::to_string_pretty(journal).expect("a journal serialises");
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)?;
        fsync_dir(&self.dir).map_err(err)
    }

    pub fn load(path: &Path) -> Result<Journal, JournalError> {
        let read = |msg: String| JournalError::Read {
            path: path.to_path_buf(),
            msg,
        };
        let text = fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
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
        let mut v: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("journal-") && n.ends_with(".json"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The newest journal whose changes may still be in place (applying or applied).
    pub fn latest_active(&self) -> Result<PathBuf, JournalError> {
        self.list()
            .into_iter()
            .rev()
            .find(|p| {
                Store::load(p).is_ok_and(|j| matches!(j.status, Status::Applying | Status::Applied))
            })
            .ok_or_else(|| JournalError::NothingToRevert(self.dir.clone()))
    }
}
