//! Is irqbalance running, and what has it been told to leave alone? It rewrites
//! smp_affinity every 10 s, so any manual or irqtune change to an IRQ it manages is undone
//! (the first lesson of the source notes). Bans come from IRQBALANCE_BANNED_CPULIST /
//! IRQBALANCE_BANNED_CPUS and `--banirq` (irqbalance(1)).

use serde::{Deserialize, Serialize};

use crate::{model::cpulist, model::tree::Tree};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Irqbalance {
    pub running: bool,
    pub pid: Option<u32>,
    pub banned_cpus: Vec<u32>,
    pub banned_irqs: Vec<u32>,
}

/// Applies one `KEY=value` or argument list to the bans.
fn apply_setting(ib: &mut Irqbalance, text: &str) {
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("IRQBALANCE_BANNED_CPULIST=") {
            ib.banned_cpus
                .extend(cpulist::parse(v.trim_matches('"')).unwrap_or_default());
        } else if let Some(v) = line.strip_prefix("IRQBALANCE_BANNED_CPUS=") {
            ib.banned_cpus
                .extend(cpulist::parse_mask(v.trim_matches('"')).unwrap_or_default());
        } else {
            let args = line.strip_prefix("IRQBALANCE_ARGS=").unwrap_or(line);
            let mut words = args.trim_matches('"').split_whitespace().peekable();
            while let Some(w) = words.next() {
                let irq: Option<u32> = if let Some(v) = w.strip_prefix("--banirq=") {
                    v.parse().ok()
                } else if w == "--banirq" || w == "-i" {
                    words.next().and_then(|v| v.parse().ok())
                } else {
                    None
                };
                ib.banned_irqs.extend(irq);
            }
        }
    }
}

/// Whether process `pid` of the tree is irqbalance (by its comm).
fn is_irqbalance(root: &impl Tree, pid: u32) -> bool {
    root.read_opt(&format!("proc/{pid}/comm")).as_deref() == Some("irqbalance")
}

pub fn read(root: &impl Tree) -> Irqbalance {
    let mut ib = Irqbalance::default();
    for pid in root.list("proc") {
        let Ok(n) = pid.parse::<u32>() else { continue };
        if is_irqbalance(root, n) {
            ib.running = true;
            ib.pid = Some(n);
            if let Some(args) = root.read_opt(&format!("proc/{pid}/cmdline")) {
                apply_setting(&mut ib, &args.replace('\0', " "));
            }
            if let Some(env) = root.read_opt(&format!("proc/{pid}/environ")) {
                apply_setting(&mut ib, &env.replace('\0', "\n"));
            }
            break;
        }
    }
    for conf in ["etc/default/irqbalance", "etc/sysconfig/irqbalance"] {
        if let Some(text) = root.read_opt(conf) {
            apply_setting(&mut ib, &text);
        }
    }
    ib.banned_cpus.sort_unstable();
    ib.banned_cpus.dedup();
    ib.banned_irqs.sort_unstable();
    ib.banned_irqs.dedup();
    ib
}

/// [`read`], kept in `cache` between calls: while the pid found still names irqbalance (its
/// arguments and environment do not change while it runs), or while it was not running and
/// the last scan is younger than [`super::IRQBALANCE_RESCAN`].
pub fn read_cached(
    root: &impl Tree,
    cache: &mut Option<(Irqbalance, std::time::Instant)>,
) -> Irqbalance {
    if let Some((ib, at)) = cache.as_ref() {
        let alive = ib.pid.is_some_and(|pid| is_irqbalance(root, pid));
        let fresh = !ib.running && at.elapsed() < super::IRQBALANCE_RESCAN;
        if alive || fresh {
            return ib.clone();
        }
    }
    let ib = read(root);
    *cache = Some((ib.clone(), std::time::Instant::now()));
    ib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bans_from_config_and_arguments() {
        let mut ib = Irqbalance::default();
        apply_setting(
            &mut ib,
            "# comment\nIRQBALANCE_BANNED_CPULIST=\"2-3\"\nIRQBALANCE_ARGS=\"--banirq=40 -i 41\"\n",
        );
        apply_setting(&mut ib, "/usr/sbin/irqbalance --foreground --banirq 42");
        assert_eq!(ib.banned_cpus, vec![2, 3]);
        assert_eq!(ib.banned_irqs, vec![40, 41, 42]);
    }

    /// A /proc of comm files only, in memory.
    struct Procs(std::cell::RefCell<std::collections::BTreeMap<u32, String>>);

    impl Tree for Procs {
        fn root(&self) -> &std::path::Path {
            std::path::Path::new("/")
        }

        fn read(&self, rel: &str) -> Result<String, crate::model::tree::ReadError> {
            let pid = rel
                .strip_prefix("proc/")
                .and_then(|r| r.strip_suffix("/comm"))
                .and_then(|p| p.parse::<u32>().ok());
            pid.and_then(|p| self.0.borrow().get(&p).cloned())
                .ok_or_else(|| crate::model::tree::ReadError {
                    path: rel.into(),
                    source: std::io::ErrorKind::NotFound.into(),
                })
        }

        fn list(&self, rel: &str) -> Vec<String> {
            match rel {
                "proc" => self.0.borrow().keys().map(u32::to_string).collect(),
                _ => Vec::new(),
            }
        }

        fn link_name(&self, _: &str) -> Option<String> {
            None
        }

        fn exists(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn cached_read_rescans_when_irqbalance_may_have_changed() {
        let procs = Procs(Default::default());
        let comm = |pid: u32, name: &str| {
            procs.0.borrow_mut().insert(pid, name.to_string());
        };
        comm(10, "sshd");
        let mut cache = None;
        assert!(!read_cached(&procs, &mut cache).running);
        // Started since the last scan: not seen until the rescan is due.
        comm(20, "irqbalance");
        assert!(!read_cached(&procs, &mut cache).running);
        let old = std::time::Instant::now()
            .checked_sub(super::super::IRQBALANCE_RESCAN)
            .unwrap();
        cache.as_mut().unwrap().1 = old;
        let ib = read_cached(&procs, &mut cache);
        assert!(ib.running && ib.pid == Some(20), "{ib:?}");
        // Kept while its pid names it; gone (the pid reused) means a rescan at once.
        assert_eq!(read_cached(&procs, &mut cache), ib);
        comm(20, "bash");
        assert!(!read_cached(&procs, &mut cache).running);
    }
}
