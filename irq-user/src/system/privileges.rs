//! Privileges after loading: a long-running irqtune (`watch`) keeps only what its probes
//! need from then on. Loading took CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), mounting
//! tracefs CAP_SYS_ADMIN, raising RLIMIT_MEMLOCK CAP_SYS_RESOURCE; reading the maps through
//! their open descriptors takes none, and attaching a loaded program again (the duty cycle)
//! takes CAP_BPF and CAP_PERFMON. Everything else is dropped from every set, the bounding set
//! included, and no new privileges can be gained by exec.

use caps::{CapSet, Capability, CapsHashSet};

/// What the probes need once loaded.
pub const PROBE_CAPABILITIES: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_PERFMON];

pub fn keep_only_probe_capabilities() -> Result<(), String> {
    let keep: CapsHashSet = PROBE_CAPABILITIES.into_iter().collect();
    // The bounding set first, while CAP_SETPCAP is still held.
    for cap in caps::all() {
        if !keep.contains(&cap) {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let have = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    let keep: CapsHashSet = keep.intersection(&have).copied().collect();
    for set in [CapSet::Ambient, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|e| format!("{set:?}: {e}"))?;
    }
    caps::set(None, CapSet::Effective, &keep).map_err(|e| format!("effective: {e}"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| format!("permitted: {e}"))?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) with its documented arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
