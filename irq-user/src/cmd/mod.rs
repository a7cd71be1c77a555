//! The subcommands. Exit codes: 0 done, 1 failed (anything written was rolled back),
//! 2 bad input (malformed file, unknown CPU or interface; nothing was done),
//! 3 refused (plan or journal for another host, boot or root, stale plan, irqbalance
//! running, another apply holds the lock, a state directory others can write; nothing was
//! written),
//! 4 incomplete (`record`: a probe family could not attach by any method; the report and the
//! profile were still written and their findings say what was not measured; `--no-flows` or
//! `--allow-incomplete` accept it).

pub mod manpages;
pub mod record;
pub mod report;
pub mod steer;
pub mod tune;
pub mod watch;

use std::{io::Write as _, path::PathBuf};

use irq_user::{model::cpulist, system::applier::ApplyError, system::journal::JournalError};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_INCOMPLETE: u8 = 4;

/// A measurement that lacks a probe family the user did not give up (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("the measurement is incomplete: {0}; the findings above say why (pass --allow-incomplete to accept it and exit 0)")]
pub struct Incomplete(pub String);

/// Marks an error as the user's input being wrong (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BadInput(pub anyhow::Error);

/// The error and its causes on one line, each cause shown once: a cause whose text its
/// wrapper already quotes (an error type that prints its source) is not repeated.
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Incomplete>() {
            return EXIT_INCOMPLETE;
        }
        if cause.is::<BadInput>()
            || cause
                .downcast_ref::<irq_user::model::jsonfile::JsonFileError>()
                .is_some_and(|e| e.is_bad_input())
            || matches!(
                cause.downcast_ref::<ApplyError>(),
                Some(ApplyError::BadJournal(_))
            )
        {
            return EXIT_BAD_INPUT;
        }
        let refused_journal = |e: &JournalError| {
            matches!(e, JournalError::Locked { .. } | JournalError::Unsafe { .. })
        };
        if matches!(
            cause.downcast_ref::<ApplyError>(),
            Some(ApplyError::Refused(_))
        ) || matches!(
            cause.downcast_ref::<ApplyError>(),
            Some(ApplyError::Journal(j)) if refused_journal(j)
        ) || cause
            .downcast_ref::<JournalError>()
            .is_some_and(refused_journal)
        {
            return EXIT_REFUSED;
        }
    }
    EXIT_FAILED
}

/// Writes to standard output. A closed pipe (`irqtune apply ... | head -1`) must not end the
/// command half-way: its work goes on to a consistent end and its exit code stands.
pub fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// The same for standard error.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The global options a command was run with, to print commands that act on the same tree
/// and namespace (the undo hint after an apply).
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    pub root: Option<PathBuf>,
    pub netns: Option<String>,
}

/// A word as a POSIX shell reads it back: bare when it is plain, else single-quoted.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Invocation {
    /// "irqtune --root A --netns N SUBCOMMAND ARGS...", each word quoted for a shell.
    pub fn command(&self, args: &[&str]) -> String {
        let mut words = vec!["irqtune".to_string()];
        if let Some(r) = &self.root {
            words.push("--root".into());
            words.push(shell_word(&r.display().to_string()));
        }
        if let Some(n) = &self.netns {
            words.push("--netns".into());
            words.push(shell_word(n));
        }
        words.extend(args.iter().map(|a| shell_word(a)));
        words.join(" ")
    }
}

/// A CPU list argument ("0-3,8"). A newtype, because clap reads `Option<Vec<_>>` as a
/// repeatable argument.
#[derive(Clone, Debug)]
pub struct CpuList(pub Vec<u32>);

pub fn parse_cpus(s: &str) -> Result<CpuList, cpulist::CpuListError> {
    cpulist::parse(s).map(CpuList)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_commands_name_the_tree_and_namespace_and_survive_a_shell() {
        let i = Invocation {
            root: Some("/tmp/my tree".into()),
            netns: Some("ns1".into()),
        };
        assert_eq!(
            i.command(&["revert", "--state-dir", "/s", "/s/journal-1.json"]),
            "irqtune --root '/tmp/my tree' --netns ns1 revert --state-dir /s /s/journal-1.json"
        );
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(
            Invocation::default().command(&["revert", "j"]),
            "irqtune revert j"
        );
    }
}
