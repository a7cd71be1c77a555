//! Files irqtune reads and writes for its user (profiles, reports, plans). Inputs are read
//! only when they are regular files, never waited on and never larger than [`MAX_READ`];
//! outputs are complete or absent, never half written, with the mode a plain create would
//! give them, and a special file (a pipe, `/dev/stdout`, `/dev/null`) is written into, never
//! replaced by a regular file.

use std::{
    io::{self, Read as _, Write as _},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

use crate::{
    analysis::plan::{Plan, PlanError},
    model::{
        jsonfile::JsonFileError,
        profile::{Profile, ProfileError},
    },
    system::sysroot::MAX_READ,
};

/// Reads a file the user named: a regular file (opened without blocking, so a FIFO cannot
/// hang irqtune), at most [`MAX_READ`] bytes.
pub fn read_input(path: &Path) -> io::Result<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut data = Vec::new();
    (&mut f).take(MAX_READ + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_READ >> 20),
        ));
    }
    String::from_utf8(data).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

fn input(path: &Path, kind: &'static str) -> Result<String, JsonFileError> {
    read_input(path).map_err(|source| JsonFileError::Io {
        kind,
        path: path.display().to_string(),
        source,
    })
}

/// Reads and checks a profile file.
pub fn load_profile(path: &Path) -> Result<Profile, ProfileError> {
    let text = input(path, "profile")?;
    Profile::parse(&text, &path.display().to_string())
}

/// Reads and checks a plan: its format and version, each knob's value, and that every CPU it
/// names exists (`possible`) and is online.
pub fn load_plan(path: &Path, possible: &[u32], online: &[u32]) -> Result<Plan, PlanError> {
    let text = input(path, "plan")?;
    Plan::parse(&text, &path.display().to_string(), possible, online)
}

/// Writes `data` where the user asked. A regular file (or none yet) is replaced atomically;
/// a pipe, a character device or a socket, or a symlink to one (`/dev/stdout`), is written
/// into as it is; anything else (a directory, a block device, a symlink to a regular file)
/// is refused, never replaced.
pub fn write_output(path: &Path, data: &[u8]) -> io::Result<()> {
    let refuse = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: refused (irqtune replaces only regular files)"),
        ))
    };
    let lmeta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return write_atomically(path, data),
        Err(e) => return Err(e),
        Ok(m) => m,
    };
    let t = lmeta.file_type();
    if t.is_file() {
        return write_atomically(path, data);
    }
    let special = |t: std::fs::FileType| t.is_fifo() || t.is_char_device() || t.is_socket();
    if t.is_symlink() {
        let target = std::fs::metadata(path)?;
        if special(target.file_type()) {
            return write_into(path, data);
        }
        return refuse("a symlink to a regular file or directory; name its target instead");
    }
    if special(t) {
        return write_into(path, data);
    }
    if t.is_dir() {
        return refuse("a directory");
    }
    refuse("not a regular file")
}

/// Writes into an existing special file: no create, no truncate, no replace.
fn write_into(path: &Path, data: &[u8]) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?
        .write_all(data)
}

/// Writes a file so that it is either complete or absent: a temporary file created
/// exclusively in the same directory, fsynced, then renamed over the target.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // A temporary file is 0600; give the result the mode a plain create would (0666 & ~umask).
    // SAFETY: umask only swaps the process mask; it is restored at once.
    let mask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o666 & !mask))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_written_into_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        // /dev/null stays a device.
        write_output(Path::new("/dev/null"), b"x").unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        // A symlink to a device is written through.
        let link = d.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        write_output(&link, b"x").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A symlink to a regular file is refused; the file is untouched.
        let precious = d.path().join("precious");
        std::fs::write(&precious, "keep").unwrap();
        let to_file = d.path().join("report");
        std::os::unix::fs::symlink(&precious, &to_file).unwrap();
        assert!(write_output(&to_file, b"x").is_err());
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
        // A directory is refused; a regular file is replaced whole.
        assert!(write_output(d.path(), b"x").is_err());
        let f = d.path().join("out.txt");
        write_output(&f, b"one").unwrap();
        write_output(&f, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "two");
    }

    #[test]
    fn inputs_must_be_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(
            read_input(&fifo).is_err(),
            "a FIFO is refused, not waited on"
        );
        assert!(read_input(Path::new("/dev/zero")).is_err());
        assert!(read_input(d.path()).is_err());
    }
}
