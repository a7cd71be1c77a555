//! The applier: checks a plan against the machine, journals the old values, writes, reads
//! back, and rolls back everything written when anything fails. `revert` restores a
//! journal's old values exactly.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    analysis::plan::{Knob, Plan, Value, ValueKind},
    system::journal::{
        canonical_root, Entry, Journal, JournalError, Lock, Status, Store, JOURNAL_FORMAT,
        JOURNAL_VERSION,
    },
};
use crate::{
    model::machine::{HostId, Machine},
    system::knobs,
    system::stop::Stop,
    system::sysroot::{FsError, SysRoot},
};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The plan does not fit this machine now; nothing was written.
    #[error("refusing to apply: {0}")]
    Refused(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A write or its check failed; what was written has been put back.
    #[error("{what}; rolled back {restored} change(s) already written{rollback_problems}; journal {journal}")]
    Failed {
        what: String,
        restored: usize,
        rollback_problems: String,
        journal: PathBuf,
    },
    #[error("interrupted; rolled back {restored} change(s) already written{rollback_problems}; journal {journal}")]
    Interrupted {
        restored: usize,
        rollback_problems: String,
        journal: PathBuf,
    },
    /// A journal irqtune did not write, or that was changed: nothing was written.
    #[error("refusing to revert: the journal is not one irqtune writes: {0}")]
    BadJournal(String),
    #[error("revert of {journal} left {count} value(s) wrong:\n{problems}")]
    RevertIncomplete {
        journal: PathBuf,
        count: usize,
        problems: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub force: bool,
    /// Pause after each write (to watch a change take effect step by step).
    pub pause: Duration,
    /// Set by a signal: stop after the current write and roll back.
    pub stop: Stop,
}

pub struct Applied {
    pub journal: Option<PathBuf>,
    pub written: usize,
}

/// Whether `read` (what the file shows) is `wanted`. Masks compare as sets of online CPUs
/// (the kernel drops what it cannot use), counts as numbers.
fn matches(kind: ValueKind, read: &str, wanted: &str, online: &[u32]) -> bool {
    match (Value::parse(kind, read), Value::parse(kind, wanted)) {
        (Ok(Value::Cpus(a)), Ok(Value::Cpus(b))) => {
            let on = |v: Vec<u32>| {
                v.into_iter()
                    .filter(|c| online.contains(c))
                    .collect::<Vec<_>>()
            };
            on(a) == on(b)
        }
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Why a write did not take.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{source}{hint}")]
    Write { source: FsError, hint: &'static str },
    #[error(transparent)]
    Read(FsError),
    #[error("/{path}: wrote {wrote:?} but it reads back {back:?}")]
    ReadBack {
        path: String,
        wrote: String,
        back: String,
    },
}

/// The plan's host, boot and CPU count against this machine's: what differs, in words.
fn same_host(plan: &HostId, here: &HostId) -> Result<(), String> {
    let mut diffs = Vec::new();
    if plan.hostname != here.hostname {
        diffs.push(format!(
            "host {:?}, this is {:?}",
            plan.hostname, here.hostname
        ));
    }
    if plan.boot_id != here.boot_id {
        diffs.push(format!(
            "boot {}, this boot is {} (IRQ numbers and devices can change across boots)",
            plan.boot_id, here.boot_id
        ));
    }
    if plan.cpus != here.cpus {
        diffs.push(format!(
            "{} CPUs, this machine has {}",
            plan.cpus, here.cpus
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!("the plan was made for {}", diffs.join("; ")))
    }
}

/// Fault injection for the tests of crash safety: with `IRQTUNE_FAULT_KILL_AFTER_WRITE=N`
/// the process kills itself (SIGKILL: no handler, no cleanup) right after the N-th write of
/// an apply has been made and read back, as a power cut or an OOM kill would. The journal
/// must then let `irqtune revert` restore everything.
fn fault_point(written: usize) {
    let at = std::env::var("IRQTUNE_FAULT_KILL_AFTER_WRITE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if at == Some(written) {
        // SAFETY: raise has no preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

/// Writes one value and checks it took.
fn write_checked(
    root: &SysRoot,
    knob: &Knob,
    value: &str,
    online: &[u32],
) -> Result<(), WriteError> {
    let path = knob.path();
    knobs::write(root, knob, value).map_err(|source| {
        let hint = match (knob, source.raw_os_error()) {
            (Knob::IrqAffinity { .. }, Some(libc::EIO | libc::EPERM)) => {
                " (the kernel refuses: the IRQ is probably kernel-managed)"
            }
            (Knob::IrqAffinity { .. }, Some(libc::ENOENT)) => {
                " (the IRQ is gone: a channel change before it may have given the NIC other IRQs; set the channels first, then make a new plan)"
            }
            (_, Some(libc::EOPNOTSUPP)) => " (the driver does not support this setting)",
            _ => "",
        };
        WriteError::Write { source, hint }
    })?;
    let back = knobs::read(root, knob).map_err(WriteError::Read)?;
    if !matches(knob.value_kind(), &back, value, online) {
        return Err(WriteError::ReadBack {
            path,
            wrote: value.to_string(),
            back,
        });
    }
    Ok(())
}

/// Puts back `entries` in reverse order; returns how many were restored and the problems.
/// A value that already reads as its old one (a write that failed before it changed
/// anything) is left as it is.
/// The order in which old values go back: the reverse of the writes, but a NIC's channel
/// counts first: a driver that changes its queues resets their IRQs' affinity (virtio-net,
/// mlx5 do), which would undo affinities restored before it.
fn restore_order(entries: &[Entry]) -> Vec<&Entry> {
    let mut order: Vec<&Entry> = entries.iter().rev().collect();
    order.sort_by_key(|e| !matches!(e.knob, Knob::Channels { .. }));
    order
}

fn roll_back(root: &SysRoot, entries: &[Entry], online: &[u32]) -> (usize, Vec<String>) {
    let mut restored = 0;
    let mut problems = Vec::new();
    for e in restore_order(entries) {
        if knobs::read(root, &e.knob).is_ok_and(|now| now == e.old) {
            restored += 1;
            continue;
        }
        match write_checked(root, &e.knob, &e.old, online) {
            Ok(()) => restored += 1,
            Err(err) => problems.push(err.to_string()),
        }
    }
    (restored, problems)
}

fn problems_text(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(
            " (but {} could not be restored: {}; run `irqtune revert`)",
            problems.len(),
            problems.join("; ")
        )
    }
}

/// Checks done before anything is written; `Err` means refuse.
fn preflight(
    root: &SysRoot,
    machine: &Machine,
    plan: &Plan,
    force: bool,
) -> Result<Vec<Entry>, ApplyError> {
    let mut refusals = Vec::new();
    if let Err(e) = same_host(&plan.host, &machine.host) {
        refusals.push(e.clone());
    }
    let ib = &machine.irqbalance;
    let moved: Vec<u32> = plan
        .changes
        .iter()
        .filter_map(|c| match c.knob {
            Knob::IrqAffinity { irq } if !ib.banned_irqs.contains(&irq) => Some(irq),
            _ => None,
        })
        .collect();
    if ib.running && !moved.is_empty() {
        let list: Vec<String> = moved.iter().map(|i| i.to_string()).collect();
        refusals.push(format!(
            "irqbalance is running (pid {}) and will overwrite the affinity of IRQ {} within seconds; stop it (`systemctl stop irqbalance`, and `systemctl disable irqbalance` to keep it off), or ban these IRQs: add `--banirq={}` to IRQBALANCE_ARGS (one per IRQ) in /etc/default/irqbalance, or IRQBALANCE_BANNED_CPULIST for the CPUs, and restart it",
            ib.pid.unwrap_or(0),
            list.join(", "),
            list.join(" --banirq=")
        ));
    }
    let mut entries = Vec::new();
    for c in &plan.changes {
        if let Knob::IrqAffinity { irq } = c.knob {
            if machine.irq(irq).is_some_and(|i| i.managed) {
                refusals.push(format!(
                    "IRQ {irq} is kernel-managed here; its affinity cannot be set"
                ));
            }
        }
        let path = c.knob.path();
        let now = knobs::read(root, &c.knob).map_err(|e| {
            ApplyError::Refused(if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                format!("{}: the driver does not support this setting ({e})", c.knob)
            } else {
                format!("{e}; is this the machine the plan was made for?")
            })
        })?;
        if !matches(
            c.knob.value_kind(),
            &now,
            &c.current,
            &machine.topology.online,
        ) {
            refusals.push(format!(
                "/{path} is {now:?} now, the plan expected {:?} (the machine changed since the plan was made: make a new plan)",
                c.current
            ));
        }
        entries.push(Entry {
            knob: c.knob.clone(),
            path,
            old: now,
            new: c.proposed.clone(),
        });
    }
    if !refusals.is_empty() && !force {
        return Err(ApplyError::Refused(format!(
            "{}\n  (--force applies anyway)",
            refusals.join("\n  ")
        )));
    }
    Ok(entries)
}

/// Applies a plan. With `dry_run` it only prints the writes it would make.
pub fn apply(
    root: &SysRoot,
    machine: &Machine,
    plan: &Plan,
    plan_name: &str,
    store: &Store,
    opts: &ApplyOptions,
    out: &mut dyn Write,
) -> Result<Applied, ApplyError> {
    // The lock comes first, so the values checked are the values written over.
    let lock = if opts.dry_run {
        None
    } else {
        Some(store.lock()?)
    };
    apply_held(
        root,
        machine,
        plan,
        plan_name,
        store,
        lock.as_ref(),
        opts,
        out,
    )
}

/// What a dry run would write, and what each value is now.
fn dry_run(root: &SysRoot, entries: &[Entry], out: &mut dyn Write) {
    for e in entries {
        let _ = writeln!(
            out,
            "would write {:?} to {}   (now {:?})",
            e.new,
            root.path(&e.path).display(),
            e.old
        );
    }
    if entries.is_empty() {
        let _ = writeln!(out, "nothing to write");
    }
}

/// Writes the journal's entries in order, each checked; on a failure or a stop, rolls back
/// what was written and records the rollback.
fn write_entries(
    root: &SysRoot,
    store: &Store,
    path: &Path,
    journal: &mut Journal,
    online: &[u32],
    opts: &ApplyOptions,
    out: &mut dyn Write,
) -> Result<(), ApplyError> {
    for (i, e) in journal.entries.iter().enumerate() {
        if opts.stop.requested() {
            let (restored, problems) = roll_back(root, &journal.entries[..i], online);
            journal.status = Status::RolledBack;
            if problems.is_empty() {
                store.save(path, journal)?;
            }
            return Err(ApplyError::Interrupted {
                restored,
                rollback_problems: problems_text(&problems),
                journal: path.to_path_buf(),
            });
        }
        if let Err(what) = write_checked(root, &e.knob, &e.new, online) {
            // The failed write may have half-happened: put it back too (roll_back leaves a
            // value that still reads as its old one alone). Count only the writes that took.
            let (_, mut problems) = roll_back(root, &journal.entries[i..=i], online);
            let (restored, earlier) = roll_back(root, &journal.entries[..i], online);
            problems.extend(earlier);
            let mut j = journal.clone();
            j.status = Status::RolledBack;
            if problems.is_empty() {
                store.save(path, &j)?;
            }
            return Err(ApplyError::Failed {
                what: format!("{} failed: {what}", e.knob),
                restored,
                rollback_problems: problems_text(&problems),
                journal: path.to_path_buf(),
            });
        }
        let _ = writeln!(out, "set {}: /{} = {}", e.knob, e.path, e.new);
        fault_point(i + 1);
        if !opts.pause.is_zero() && i + 1 < journal.entries.len() {
            std::thread::sleep(opts.pause);
        }
    }
    Ok(())
}

/// [`apply`] under a lock the caller holds (`tune`, which keeps it for its whole run so no
/// other apply slips in between its trial's toggles); None only for a dry run.
#[allow(clippy::too_many_arguments)]
pub fn apply_held(
    root: &SysRoot,
    machine: &Machine,
    plan: &Plan,
    plan_name: &str,
    store: &Store,
    _lock: Option<&Lock>,
    opts: &ApplyOptions,
    out: &mut dyn Write,
) -> Result<Applied, ApplyError> {
    let entries = preflight(root, machine, plan, opts.force)?;
    if opts.dry_run {
        dry_run(root, &entries, out);
        return Ok(Applied {
            journal: None,
            written: 0,
        });
    }
    if entries.is_empty() {
        let _ = writeln!(out, "nothing to write: the plan has no changes");
        return Ok(Applied {
            journal: None,
            written: 0,
        });
    }
    let mut journal = Journal {
        format: JOURNAL_FORMAT.into(),
        version: JOURNAL_VERSION,
        host: machine.host.clone(),
        created_unix: plan.created_unix,
        root: canonical_root(root),
        plan: plan_name.to_string(),
        status: Status::Applying,
        entries,
    };
    let path = store.create(&journal)?;
    let _ = writeln!(out, "journal: {}", path.display());
    write_entries(
        root,
        store,
        &path,
        &mut journal,
        &machine.topology.online,
        opts,
        out,
    )?;
    if journal
        .entries
        .iter()
        .any(|e| matches!(e.knob, Knob::IrqAffinity { .. }))
    {
        let _ = writeln!(
            out,
            "note: effective_affinity follows at each IRQ's next interrupt"
        );
    }
    journal.status = Status::Applied;
    store.save(&path, &journal)?;
    Ok(Applied {
        written: journal.entries.len(),
        journal: Some(path),
    })
}

/// Restores a journal's old values (the newest active journal when `journal` is None) and
/// checks each reads back exactly as it was. Nothing is written when the journal is not for
/// this root, host and boot (unless `force`), or when any entry names another file than its
/// knob's or holds a value its knob cannot: each value goes to its knob's own file, never to
/// a path the journal names.
pub fn revert(
    root: &SysRoot,
    store: &Store,
    journal: Option<&Path>,
    here: &HostId,
    force: bool,
    out: &mut dyn Write,
) -> Result<PathBuf, ApplyError> {
    if let Some(path) = journal {
        // A journal named on the command line is checked before the lock is taken, so a
        // refused revert leaves no trace (not even a state directory) in the tree.
        checked(root, store, path, here, force)?;
    }
    let lock = store.lock()?;
    revert_held(root, store, &lock, journal, here, force, out)
}

/// Loads the journal at `path` and checks it belongs to `root` and this host; a journal
/// for another tree is refused unless `force`, one that is invalid always.
fn checked(
    root: &SysRoot,
    store: &Store,
    path: &Path,
    here: &HostId,
    force: bool,
) -> Result<Journal, ApplyError> {
    let j = store.load_in(path)?;
    let (mismatch, mut invalid) = j.check(root, here);
    if !root.is_live() {
        invalid.extend(j.entries.iter().filter(|e| e.knob.is_live_only()).map(|e| {
            format!(
                "{}: set through the kernel on the live machine only, not in the tree {}",
                e.knob,
                root.root().display()
            )
        }));
    }
    if !invalid.is_empty() {
        return Err(ApplyError::BadJournal(format!(
            "{}: {}",
            path.display(),
            invalid.join("; ")
        )));
    }
    if !mismatch.is_empty() && !force {
        return Err(ApplyError::Refused(format!(
            "not reverting {}: {}\n  (--force reverts anyway)",
            path.display(),
            mismatch.join("; ")
        )));
    }
    Ok(j)
}

/// [`revert`] under a lock the caller holds.
pub fn revert_held(
    root: &SysRoot,
    store: &Store,
    _lock: &Lock,
    journal: Option<&Path>,
    here: &HostId,
    force: bool,
    out: &mut dyn Write,
) -> Result<PathBuf, ApplyError> {
    let path = match journal {
        Some(p) => p.to_path_buf(),
        None => store.latest_active()?,
    };
    let mut j = checked(root, store, &path, here, force)?;
    if j.status == Status::Reverted {
        let _ = writeln!(
            out,
            "{} was already reverted; restoring its old values again",
            path.display()
        );
    }
    let mut problems = Vec::new();
    for e in restore_order(&j.entries) {
        let file = e.knob.path();
        let now = knobs::read(root, &e.knob).ok();
        if let Err(err) = knobs::write(root, &e.knob, &e.old) {
            problems.push(format!("  {}: {err}", e.knob));
            continue;
        }
        match knobs::read(root, &e.knob) {
            Ok(back) if back == e.old => {
                let _ = writeln!(
                    out,
                    "restored {}: /{} = {}{}",
                    e.knob,
                    file,
                    e.old,
                    match &now {
                        Some(n) if n != &e.new && n != &e.old =>
                            format!(" (it was {n:?}, changed since the apply)"),
                        _ => String::new(),
                    }
                );
            }
            Ok(back) => problems.push(format!(
                "  {}: wrote {:?}, reads back {back:?}",
                e.knob, e.old
            )),
            Err(err) => problems.push(format!("  {}: {err}", e.knob)),
        }
    }
    // With a channel count among them, each value once more after all the writes: a driver
    // that changes its queues resets their IRQs' affinity. (Only then: an IRQ whose move is
    // pending until its next interrupt can show its previous mask for a while, which is not
    // a failure of this revert.)
    let channels = j
        .entries
        .iter()
        .any(|e| matches!(e.knob, Knob::Channels { .. }));
    if problems.is_empty() && channels {
        for e in &j.entries {
            match knobs::read(root, &e.knob) {
                Ok(v) if v == e.old => {}
                Ok(v) => problems.push(format!(
                    "  {}: restored to {:?}, but it reads {v:?} after the rest was restored",
                    e.knob, e.old
                )),
                Err(err) => problems.push(format!("  {}: {err}", e.knob)),
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApplyError::RevertIncomplete {
            journal: path,
            count: problems.len(),
            problems: problems.join("\n"),
        });
    }
    j.status = Status::Reverted;
    store.save(&path, &j)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::machine::ethtool::ChannelKind;

    fn entry(knob: Knob) -> Entry {
        Entry {
            path: knob.path(),
            knob,
            old: "1".into(),
            new: "2".into(),
        }
    }

    #[test]
    fn channel_counts_go_back_before_the_affinities_they_would_reset() {
        let channels = Knob::Channels {
            iface: "eth0".into(),
            channel: ChannelKind::Combined,
        };
        let entries = vec![
            entry(Knob::NetdevMaxBacklog),
            entry(channels.clone()),
            entry(Knob::IrqAffinity { irq: 40 }),
            entry(Knob::IrqAffinity { irq: 41 }),
        ];
        let order: Vec<&Knob> = restore_order(&entries).iter().map(|e| &e.knob).collect();
        assert_eq!(
            order,
            vec![
                &channels,
                &Knob::IrqAffinity { irq: 41 },
                &Knob::IrqAffinity { irq: 40 },
                &Knob::NetdevMaxBacklog,
            ]
        );
    }
}
