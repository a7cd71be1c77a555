//! Files irqtune writes for its user (profiles, reports, plans): complete or absent, never
//! half written, with the mode a plain create would give them.

/// Writes a file so that it is either complete or absent: a temporary file in the same
/// directory, fsynced, then renamed over the target.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    use std::os::unix::fs::PermissionsExt as _;
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
