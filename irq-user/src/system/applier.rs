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
        Entry, Journal, JournalError, Status, Store, JOURNAL_FORMAT, JOURNAL_VERSION,
    },
};
use crate::{
    model::machine::{HostId, Machine},
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

/// Writes one value and checks it took.
fn write_checked(
    root: &SysRoot,
    knob: &Knob,
    value: &str,
    online: &[u32],
) -> Result<(), WriteError> {
    let path = knob.path();
    root.write(&path, value).map_err(|source| {
        let hint = match (knob, source.raw_os_error()) {
            (Knob::IrqAffinity { .. }, Some(libc::EIO) | Some(libc::EPERM)) => {
                " (the kernel refuses: the IRQ is probably kernel-managed)"
            }
            _ => "",
        };
        WriteError::Write { source, hint }
    })?;
    let back = root.read(&path).map_err(WriteError::Read)?;
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
fn roll_back(root: &SysRoot, entries: &[Entry], online: &[u32]) -> (usize, Vec<String>) {
    let mut restored = 0;
    let mut problems = Vec::new();
    for e in entries.iter().rev() {
        if root.read(&e.path).is_ok_and(|now| now == e.old) {
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
        refusals.push(e.to_string());
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
        let now = root.read(&path).map_err(|e| {
            ApplyError::Refused(format!("{e}; is this the machine the plan was made for?"))
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
    let entries = preflight(root, machine, plan, opts.force)?;
    if opts.dry_run {
        for e in &entries {
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
        root: root.root().display().to_string(),
        plan: plan_name.to_string(),
        status: Status::Applying,
        entries,
    };
    let path = store.create(&journal)?;
    let _ = writeln!(out, "journal: {}", path.display());
    let online = &machine.topology.online;
    for (i, e) in journal.entries.iter().enumerate() {
        if opts.stop.requested() {
            let (restored, problems) = roll_back(root, &journal.entries[..i], online);
            journal.status = Status::RolledBack;
            if problems.is_empty() {
                store.save(&path, &journal)?;
            }
            return Err(ApplyError::Interrupted {
                restored,
                rollback_problems: problems_text(&problems),
                journal: path,
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
                store.save(&path, &j)?;
            }
            return Err(ApplyError::Failed {
                what: format!("{} failed: {what}", e.knob),
                restored,
                rollback_problems: problems_text(&problems),
                journal: path,
            });
        }
        let _ = writeln!(out, "set {}: /{} = {}", e.knob, e.path, e.new);
        if !opts.pause.is_zero() && i + 1 < journal.entries.len() {
            std::thread::sleep(opts.pause);
        }
    }
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
    drop(lock);
    Ok(Applied {
        written: journal.entries.len(),
        journal: Some(path),
    })
}

/// Restores a journal's old values (the newest active journal when `journal` is None) and
/// checks each reads back exactly as it was.
pub fn revert(
    root: &SysRoot,
    store: &Store,
    journal: Option<&Path>,
    out: &mut dyn Write,
) -> Result<PathBuf, ApplyError> {
    let _lock = store.lock()?;
    let path = match journal {
        Some(p) => p.to_path_buf(),
        None => store.latest_active()?,
    };
    let mut j = Store::load(&path)?;
    if j.status == Status::Reverted {
        let _ = writeln!(
            out,
            "{} was already reverted; restoring its old values again",
            path.display()
        );
    }
    let mut problems = Vec::new();
    for e in j.entries.iter().rev() {
        let now = root.read(&e.path).ok();
        if let Err(err) = root.write(&e.path, &e.old) {
            problems.push(format!("  {}: {err}", e.knob));
            continue;
        }
        match root.read(&e.path) {
            Ok(back) if back == e.old => {
                let _ = writeln!(
                    out,
                    "restored {}: /{} = {}{}",
                    e.knob,
                    e.path,
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
