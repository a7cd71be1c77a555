//! The subcommands. Exit codes: 0 done, 1 failed (anything written was rolled back),
//! 2 bad input (malformed file, unknown CPU or interface; nothing was done),
//! 3 refused (plan for another host or boot, stale plan, irqbalance running, another apply
//! holds the lock; nothing was written),
//! 4 incomplete (`record`: a probe family could not attach by any method; the report and the
//! profile were still written and their findings say what was not measured; `--no-flows` or
//! `--allow-incomplete` accept it).

pub mod manpages;
pub mod record;
pub mod report;
pub mod steer;
pub mod tune;
pub mod watch;

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

pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Incomplete>() {
            return EXIT_INCOMPLETE;
        }
        if cause.is::<BadInput>()
            || cause
                .downcast_ref::<irq_user::model::jsonfile::JsonFileError>()
                .is_some_and(|e| e.is_bad_input())
        {
            return EXIT_BAD_INPUT;
        }
        if matches!(
            cause.downcast_ref::<ApplyError>(),
            Some(ApplyError::Refused(_))
        ) || matches!(
            cause.downcast_ref::<ApplyError>(),
            Some(ApplyError::Journal(JournalError::Locked { .. }))
        ) || matches!(
            cause.downcast_ref::<JournalError>(),
            Some(JournalError::Locked { .. })
        ) {
            return EXIT_REFUSED;
        }
    }
    EXIT_FAILED
}

/// A CPU list argument ("0-3,8"). A newtype, because clap reads `Option<Vec<_>>` as a
/// repeatable argument.
#[derive(Clone, Debug)]
pub struct CpuList(pub Vec<u32>);

pub fn parse_cpus(s: &str) -> Result<CpuList, cpulist::CpuListError> {
    cpulist::parse(s).map(CpuList)
}
