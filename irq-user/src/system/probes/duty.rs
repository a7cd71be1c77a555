//! The duty cycle: detach every program for a while and attach it again. A program attached
//! costs its dispatch on every event even when it returns at once, so sampling inside the
//! programs cannot go below that floor; only detaching can. Programs and maps stay loaded;
//! the time the programs were attached is counted, for the profile to say what it covers.

use super::{attach, load, LoadError, Probes};
use crate::model::snapshot::monotonic_ns;

impl Probes {
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
