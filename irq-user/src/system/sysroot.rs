//! Every read and write of /proc and /sys goes through [`SysRoot`], which holds the directory
//! they are relative to: `/` on a live machine, or a captured tree (`--root DIR`, such as an
//! unpacked sosreport, or a test fixture shaped like a real machine). It implements the
//! model's [`Tree`] for reading the machine, and is the one writer.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::model::tree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
}

impl FsError {
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsError::Read { source, .. } | FsError::Write { source, .. } => source.raw_os_error(),
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

    /// `rel` ("proc/irq/36/smp_affinity") below the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The file's contents with the trailing newline removed.
    pub fn read(&self, rel: &str) -> Result<String, FsError> {
        let path = self.path(rel);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim_end_matches('\n').to_string()),
            Err(source) => Err(FsError::Read { path, source }),
        }
    }

    /// Writes `value` in one write(2), as `echo value > file` does; sysfs and procfs take a
    /// value per write. The file must exist: a typo must not create files in a captured tree.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), FsError> {
        let path = self.path(rel);
        let err = |source| FsError::Write {
            path: path.clone(),
            value: value.to_string(),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(err)?;
        f.write_all(format!("{value}\n").as_bytes()).map_err(err)?;
        Ok(())
    }
}

impl Tree for SysRoot {
    fn root(&self) -> &Path {
        SysRoot::root(self)
    }

    /// Like [`read`](Self::read), `None` when the file does not exist (or the kernel refuses to
    /// show it, as xps_cpus on a single-queue device).
    fn read_opt(&self, rel: &str) -> Option<String> {
        self.read(rel).ok()
    }

    /// Names in a directory, sorted; empty when it does not exist.
    fn list(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by(|a, b| natural_cmp(a, b));
        names
    }

    /// Last component of a symlink's target ("virtio_net" for .../drivers/virtio_net).
    fn link_name(&self, rel: &str) -> Option<String> {
        let target = fs::read_link(self.path(rel)).ok()?;
        target.file_name()?.to_str().map(str::to_string)
    }

    fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sorts_naturally() {
        let mut v = vec!["rx-10", "rx-2", "rx-1", "tx-0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["rx-1", "rx-2", "rx-10", "tx-0"]);
    }
}
