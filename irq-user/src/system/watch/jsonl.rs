//! `--jsonl FILE`: one JSON line per interval, size-capped: past the cap FILE becomes FILE.1
//! (replacing an older FILE.1) and a new FILE starts, so at most twice the cap is on disk.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

pub struct JsonlWriter {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

impl JsonlWriter {
    pub fn open(path: &Path, cap: u64) -> std::io::Result<JsonlWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            file,
            size,
            cap,
        })
    }

    pub fn rotated_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        p.into()
    }

    /// Appends one line (and rotates first if it would pass the cap).
    pub fn write(&mut self, record: &impl serde::Serialize) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.cap {
            self.file.sync_all()?;
            fs::rename(&self.path, self.rotated_path())?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.jsonl");
        let mut w = JsonlWriter::open(&path, 100).unwrap();
        for i in 0..20 {
            w.write(&serde_json::json!({ "i": i, "pad": "xxxxxxxxxx" }))
                .unwrap();
        }
        w.flush().unwrap();
        let cur = fs::read_to_string(&path).unwrap();
        let old = fs::read_to_string(w.rotated_path()).unwrap();
        assert!(
            cur.len() <= 100 && old.len() <= 100,
            "{} {}",
            cur.len(),
            old.len()
        );
        assert!(
            cur.ends_with("\"i\":19,\"pad\":\"xxxxxxxxxx\"}\n") || cur.contains("\"i\":19"),
            "{cur}"
        );
        for line in cur.lines().chain(old.lines()) {
            serde_json::from_str::<serde_json::Value>(line).expect("whole lines");
        }
    }
}
