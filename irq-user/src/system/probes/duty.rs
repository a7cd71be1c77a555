//! The duty cycle: detach every program for a while and attach it again. A program attached
//! costs its dispatch on every event even when it returns at once, so sampling inside the
//! programs cannot go below that floor; only detaching can. Programs and maps stay loaded;
//! the time the programs were attached is counted, for the profile to say what it covers.

use super::{attach, load, Hook, LoadError, Probes};
use crate::model::snapshot::monotonic_ns;

/// Whether this kernel (its release, "5.10.0-32-amd64") attaches a BPF trampoline program
/// (fentry, fexit) again after a detach. Before Linux 5.13 it attaches once per load: the
/// first attach consumes the program's trampoline target ("bpf: Allow trampoline re-attach
/// for tracing and lsm programs"). An unreadable release is taken for a current kernel: a
/// failed attach then ends the duty cycle's observation, which the profile's coverage says.
pub fn reattaches_trampolines(release: &str) -> bool {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 13),
        _ => true,
    }
}

impl Probes {
    /// The first attached hook that could not be attached again after a pause on a kernel of
    /// this release: a duty cycle would lose that probe, and with it every probe, after its
    /// first slice.
    pub fn attached_once(&self, release: &str) -> Option<String> {
        if reattaches_trampolines(release) {
            return None;
        }
        self.attached
            .iter()
            .flat_map(|a| a.parts.iter())
            .find(|p| matches!(p.hook, Hook::Fentry(_) | Hook::Fexit(_)))
            .map(|p| p.hook.to_string())
    }

    /// Whether the programs are attached now.
    pub fn is_attached(&self) -> bool {
        self.attached_since.is_some()
    }

    /// Time the programs have been attached since they were loaded, ns.
    pub fn observed_ns(&self) -> u64 {
        self.observed_ns
            + self
                .attached_since
                .map_or(0, |s| monotonic_ns().saturating_sub(s))
    }

    /// Detaches every program, entries first (a handler running now still has its exit
    /// recorded while the exit stays attached). Nothing is lost but what happens meanwhile.
    pub fn pause(&mut self) {
        let Some(since) = self.attached_since.take() else {
            return;
        };
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        for link in self.links.drain(..) {
            if let Err(e) = attach::detach(ebpf, link) {
                log::warn!("detaching a probe: {e}");
            }
        }
        self.observed_ns += monotonic_ns().saturating_sub(since);
    }

    /// Attaches every program again in table order (entries before exits), after putting each
    /// CPU's state back as it was at load: an entry timestamp left from before the pause must
    /// not be taken for the start of a handler that began while detached.
    pub fn resume(&mut self) -> Result<(), LoadError> {
        if self.attached_since.is_some() {
            return Ok(());
        }
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(());
        };
        load::set_cpu_state(ebpf, &self.initial_state)?;
        for a in &self.attached {
            for part in &a.parts {
                match attach::reattach(ebpf, part) {
                    Ok(link) => self.links.push(link),
                    Err(e) => {
                        for link in self.links.drain(..) {
                            let _ = attach::detach(ebpf, link);
                        }
                        return Err(LoadError::Reattach(format!("{}: {e}", part.hook)));
                    }
                }
            }
        }
        self.attached_since = Some(monotonic_ns());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::reattaches_trampolines;

    #[test]
    fn trampolines_attach_again_from_5_13() {
        for (release, again) in [
            ("5.10.0-32-amd64", false),
            ("5.12.19", false),
            ("4.18.0-553.el8_10.x86_64", false),
            ("5.13.0", true),
            ("6.1.0-rt-amd64", true),
            ("6.18.44-fc-v657", true),
            ("10.0", true),
            ("", true),
            ("linux", true),
        ] {
            assert_eq!(reattaches_trampolines(release), again, "{release}");
        }
    }
}
