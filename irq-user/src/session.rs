//! A profiling session: load the probes, take a snapshot, wait for the duration (or until
//! stopped), take another, and keep the difference together with what /proc said over the
//! same window.

use std::{future::Future, io::IsTerminal, path::Path, time::Duration};

use anyhow::Context as _;

use crate::{
    preflight,
    probes::{ProbeOptions, Probes},
    procfs::{self, Interrupts, Softirqs},
    report::{self, ReportInput},
    snapshot::Snapshot,
};

pub struct Session {
    pub probes: Probes,
    /// What the probes counted during the session.
    pub delta: Snapshot,
    pub duration_ns: u64,
    /// Whether the session ended before its duration (Ctrl-C, SIGTERM).
    pub interrupted: bool,
    pub interrupts_before: Interrupts,
    pub interrupts_after: Interrupts,
    pub softirqs_before: Softirqs,
    pub softirqs_after: Softirqs,
}

impl Session {
    pub fn text_report(&self) -> String {
        report::text(&ReportInput {
            delta: &self.delta,
            duration_ns: self.duration_ns,
            attached: &self.probes.attached,
            disabled: &self.probes.disabled,
        })
    }
}

/// Runs a session of `duration`, ending early when `stop` completes.
pub async fn record(
    opts: &ProbeOptions,
    duration: Duration,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Session> {
    let env = preflight::check()?;
    let mut probes = Probes::load(&env, opts).context("loading the probes")?;
    let root = Path::new("/");
    let interrupts_before = procfs::read_interrupts(root)?;
    let softirqs_before = procfs::read_softirqs(root)?;
    let before = probes.snapshot()?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "recording {bar:40} {pos}/{len} s (Ctrl-C stops early and keeps the data)",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };

    let deadline = tokio::time::Instant::now() + duration;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tokio::pin!(stop);
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = &mut stop => { interrupted = true; break; }
            _ = tick.tick() => {
                probes.flush_log();
                if let Some(bar) = &progress {
                    bar.set_position((duration.as_secs_f64() - (deadline - tokio::time::Instant::now()).as_secs_f64()) as u64);
                }
            }
        }
    }
    let after = probes.snapshot()?;
    let interrupts_after = procfs::read_interrupts(root)?;
    let softirqs_after = procfs::read_softirqs(root)?;
    probes.flush_log();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(Session {
        duration_ns: after.taken_ns - before.taken_ns,
        delta: after.delta(&before),
        probes,
        interrupted,
        interrupts_before,
        interrupts_after,
        softirqs_before,
        softirqs_after,
    })
}
