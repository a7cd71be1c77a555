//! A profiling session: load the probes, take a snapshot, wait for the duration (or until
//! stopped), take another, and keep the difference together with what /proc said over the
//! same window.

use std::{future::Future, io::IsTerminal, path::Path, time::Duration};

use anyhow::Context as _;

use crate::{
    machine::Machine,
    preflight,
    probes::{AttachKind, ProbeOptions, Probes},
    procfs::{self, Interrupts, Softirqs, SoftnetRow},
    profile::{ProbeRow, Profile, Recorded},
    snapshot::{unix_ms, Snapshot},
    sysroot::SysRoot,
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
    pub softnet_before: Vec<SoftnetRow>,
    pub softnet_after: Vec<SoftnetRow>,
    pub start_unix_ms: u64,
    /// The machine at the end (topology, affinity, NIC queues), from the same
    /// /proc/interrupts reading as `interrupts_after`.
    pub machine: Machine,
    pub opts: ProbeOptions,
}

/// The probes as the profile lists them: attached (BTF or classic) and disabled with why.
pub fn probe_rows(probes_: &Probes) -> Vec<ProbeRow> {
    let mut probes: Vec<ProbeRow> = probes_
        .attached
        .iter()
        .map(|a| ProbeRow {
            tracepoint: format!("{}:{}", a.probe.category, a.probe.name),
            attach: match a.kind {
                AttachKind::Btf => "btf",
                AttachKind::Classic => "classic",
            }
            .into(),
            reason: None,
        })
        .collect();
    probes.extend(probes_.disabled.iter().map(|d| ProbeRow {
        tracepoint: format!("{}:{}", d.probe.category, d.probe.name),
        attach: "disabled".into(),
        reason: Some(d.reason.clone()),
    }));
    probes
}

impl Session {
    pub fn profile(&self) -> Profile {
        let probes = probe_rows(&self.probes);
        let cpus = match &self.opts.cpus {
            Some(c) => c.clone(),
            None => self.interrupts_after.cpus.clone(),
        };
        Profile::from_recording(Recorded {
            delta: &self.delta,
            start_unix_ms: self.start_unix_ms,
            duration_ns: self.duration_ns,
            interrupted: self.interrupted,
            cpus,
            probes,
            flow_sample: self.opts.flow_sample,
            interrupts: (&self.interrupts_before, &self.interrupts_after),
            softirqs: (&self.softirqs_before, &self.softirqs_after),
            softnet: (&self.softnet_before, &self.softnet_after),
            machine: Some(self.machine.clone()),
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
    // softnet_stat is absent without CONFIG_PROC_FS networking: the report then has no drops.
    let softnet_before = procfs::read_softnet(root).unwrap_or_default();
    let start_unix_ms = unix_ms();
    let before = probes.snapshot()?;

    // Quiet when the output goes to a file or a pipe (scripts, CI), as well as off a terminal.
    let progress = if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
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
    let softnet_after = procfs::read_softnet(root).unwrap_or_default();
    let machine = Machine::from_interrupts(&SysRoot::new(root), &interrupts_after);
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
        softnet_before,
        softnet_after,
        start_unix_ms,
        machine,
        opts: opts.clone(),
    })
}
