//! Recording: the probes are loaded once; a [`Mark`] is what the probes' maps and /proc said at
//! one moment; the window between two marks becomes a profile. `record` takes one window,
//! `tune` several before and after its change, `watch` one per interval.

use std::{io::IsTerminal, time::Duration};

use anyhow::Context as _;

use crate::model::profile::Attach;
use crate::{
    analysis::findings,
    model::machine::{Machine, MachineCache},
    model::procfs::{self, Interrupts, NicCounters, Softirqs, SoftnetRow},
    model::profile::{ProbeRow, Profile, Recorded},
    model::snapshot::{unix_ms, Snapshot},
    model::tree::Tree as _,
    system::preflight,
    system::probes::{ProbeOptions, Probes},
    system::stop::Stop,
    system::sysroot::SysRoot,
};

/// What the probes and /proc said at one moment.
#[derive(Clone, Debug)]
pub struct Mark {
    pub probes: Snapshot,
    pub interrupts: Interrupts,
    pub softirqs: Softirqs,
    /// Empty when the kernel has no /proc/net/softnet_stat (the report then has no drops).
    pub softnet: Vec<SoftnetRow>,
    /// The NICs' receive drop counters.
    pub nics: Vec<NicCounters>,
    pub unix_ms: u64,
    /// Time from the first /proc count read to the end of the maps' snapshot: what arrived
    /// in it is in one source's count and not yet in the other's.
    pub skew_ns: u64,
}

impl Mark {
    pub fn take(probes: &Probes) -> anyhow::Result<Mark> {
        let root = &SysRoot::default();
        let unix_ms = unix_ms();
        // /proc right before the maps, whose snapshot reads the IRQ and softirq statistics
        // first (flows last): each /proc count and its probe count are read moments apart.
        let nics = procfs::read_nic_counters(root);
        let softnet = procfs::read_softnet(root).unwrap_or_default();
        let proc_at = crate::model::snapshot::monotonic_ns();
        let softirqs = procfs::read_softirqs(root)?;
        let interrupts = procfs::read_interrupts(root)?;
        let probes = probes.snapshot()?;
        let skew_ns = crate::model::snapshot::monotonic_ns().saturating_sub(proc_at);
        Ok(Mark {
            probes,
            interrupts,
            softirqs,
            softnet,
            nics,
            unix_ms,
            skew_ns,
        })
    }

    /// The machine now (topology, affinity, NIC queues), from this mark's /proc/interrupts.
    pub fn machine(&self) -> Machine {
        Machine::from_interrupts(&SysRoot::default(), &self.interrupts)
    }

    /// [`Mark::machine`] for a reader that reads it again and again, keeping `cache`.
    pub fn machine_cached(&self, cache: &mut MachineCache) -> Machine {
        Machine::from_interrupts_cached(&SysRoot::default(), &self.interrupts, cache)
    }
}

/// The probes as a profile lists them: attached (BTF or classic), disabled with why, and
/// off by choice.
pub fn probe_rows(probes: &Probes) -> Vec<ProbeRow> {
    let mut rows: Vec<ProbeRow> = probes
        .attached
        .iter()
        .map(|a| ProbeRow {
            tracepoint: format!("{}:{}", a.probe.category, a.probe.name),
            attach: a.kind,
            via: (!a.via.is_empty()).then(|| a.via.clone()),
            limits: a.limits.clone(),
            reason: None,
        })
        .collect();
    rows.extend(probes.disabled.iter().map(|d| ProbeRow {
        tracepoint: format!("{}:{}", d.probe.category, d.probe.name),
        attach: if d.by_choice {
            Attach::Off
        } else {
            Attach::Disabled
        },
        via: None,
        limits: None,
        reason: Some(d.reason.clone()),
    }));
    rows
}

/// How much of the time the probes are attached: `on` out of every `period`. Counts that
/// /proc keeps exactly stay exact; the rest is extrapolated and the profile says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duty {
    pub on: Duration,
    pub period: Duration,
}

impl Duty {
    /// `percent` of each `period` (100: always attached, None).
    pub fn percent(percent: u32, period: Duration) -> Option<Duty> {
        (percent < 100).then(|| Duty {
            on: period.mul_f64(f64::from(percent.max(1)) / 100.0),
            period,
        })
    }
}

/// Loaded probes, ready to take marks.
pub struct Recorder {
    pub probes: Probes,
    pub opts: ProbeOptions,
    rows: Vec<ProbeRow>,
    duty: Option<Duty>,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    Full,
    Stopped,
}

impl Recorder {
    /// Checks the machine and loads the probes, attached throughout.
    pub fn start(opts: &ProbeOptions) -> anyhow::Result<Recorder> {
        Recorder::with_duty(opts, None)
    }

    /// Checks the machine and loads the probes; with a duty cycle they are attached `on` out
    /// of every `period` while [`wait`](Self::wait) runs.
    pub fn with_duty(opts: &ProbeOptions, duty: Option<Duty>) -> anyhow::Result<Recorder> {
        let env = preflight::check()?;
        let probes = Probes::load(&env, opts).context("loading the probes")?;
        let release = SysRoot::default()
            .read_opt("proc/sys/kernel/osrelease")
            .unwrap_or_default();
        let duty = match (duty, probes.attached_once(release.trim())) {
            (Some(_), Some(hook)) => {
                log::warn!(
                    "the duty cycle is off: {hook} cannot be attached again once detached on \
                     this kernel ({}; Linux 5.13 lifted it), so the probes stay attached for \
                     the whole session, at their full cost",
                    release.trim()
                );
                None
            }
            (duty, _) => duty,
        };
        // One mark thrown away: the first pass through the mark code and the maps pages them
        // in, and on a machine whose root file system is a device (a guest's virtio-fs) those
        // page faults are interrupts that /proc counted before the maps were read, a skew of
        // the first window alone.
        Mark::take(&probes).context("reading /proc and the probes' maps")?;
        Ok(Recorder {
            rows: probe_rows(&probes),
            probes,
            opts: opts.clone(),
            duty,
        })
    }

    /// Attaches or detaches the probes as the duty cycle wants them `elapsed` into a wait.
    fn cycle(&mut self, elapsed: Duration) -> anyhow::Result<()> {
        let Some(d) = self.duty else { return Ok(()) };
        let into = Duration::from_nanos((elapsed.as_nanos() % d.period.as_nanos().max(1)) as u64);
        if into < d.on {
            self.probes.resume().context("attaching the probes again")?;
        } else {
            self.probes.pause();
        }
        Ok(())
    }

    pub fn mark(&self) -> anyhow::Result<Mark> {
        Mark::take(&self.probes)
    }

    pub fn probe_rows(&self) -> &[ProbeRow] {
        &self.rows
    }

    /// Waits `duration` or until a stop is requested, printing what the probes logged;
    /// with `progress`, a bar on a terminal (never in a pipe or a file).
    pub async fn wait(&mut self, duration: Duration, stop: &Stop, progress: bool) -> Waited {
        let bar = (progress && std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
            .then(|| {
                let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "recording {bar:40} {pos}/{len} s (Ctrl-C stops early and keeps the data)",
                ) {
                    bar.set_style(style);
                }
                bar
            });
        if progress && bar.is_none() {
            // For scripts and logs (-v): the moment the probes are in place.
            log::info!("probes attached; recording for {} s", duration.as_secs());
        }
        let start = tokio::time::Instant::now();
        let deadline = start + duration;
        // Fine enough for the progress bar and for a duty cycle's slices (a slice of a 10 s
        // interval at 10% is 1 s; 50 ms is 5% of it).
        let step = self.duty.map_or(Duration::from_millis(250), |d| {
            (d.on / 20).clamp(Duration::from_millis(5), Duration::from_millis(250))
        });
        let mut tick = tokio::time::interval(step);
        let waited = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break Waited::Full,
                _ = stop.wait() => break Waited::Stopped,
                _ = tick.tick() => {
                    if let Err(e) = self.cycle(start.elapsed()) {
                        log::warn!("{e:#}");
                    }
                    if let Some(bar) = &bar {
                        bar.set_position(start.elapsed().as_secs());
                    }
                }
            }
        };
        // Marks are read with the programs detached (a consistent snapshot); the next wait
        // starts a new cycle.
        if self.duty.is_some() {
            self.probes.pause();
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        waited
    }

    /// The profile of the window between two marks, with its findings; `machine` is the
    /// context it carries (None keeps window profiles cheap).
    pub fn profile(
        &self,
        from: &Mark,
        to: &Mark,
        interrupted: bool,
        machine: Option<Machine>,
    ) -> Profile {
        let cpus = match &self.opts.cpus {
            Some(c) => c.clone(),
            None => to.interrupts.cpus.clone(),
        };
        let delta = to.probes.delta(&from.probes);
        let duration_ns = to.probes.taken_ns.saturating_sub(from.probes.taken_ns);
        let mut p = Profile::from_recording(Recorded {
            delta: &delta,
            start_unix_ms: from.unix_ms,
            duration_ns,
            // Without a duty cycle the probes were attached throughout (the two clocks'
            // readings differ by the time between them, not by anything unseen).
            observed_ns: if self.duty.is_some() {
                delta.observed_ns
            } else {
                duration_ns
            },
            bpf_map_bytes: crate::system::probes::map_memory(),
            mark_skew_ns: from.skew_ns.saturating_add(to.skew_ns),
            interrupted,
            cpus,
            probes: self.rows.clone(),
            flow_sample: self.opts.flow_sample,
            interrupts: (&from.interrupts, &to.interrupts),
            softirqs: (&from.softirqs, &to.softirqs),
            softnet: (&from.softnet, &to.softnet),
            nics: (&from.nics, &to.nics),
            machine,
        });
        p.findings = findings::find(&p);
        p
    }
}

/// A profiling session: load, mark, wait `duration` (or until stopped), mark, and the profile
/// of that window with the machine at its end. The second value is whether it was stopped.
pub async fn record(
    opts: &ProbeOptions,
    duty: Option<Duty>,
    duration: Duration,
    stop: &Stop,
) -> anyhow::Result<(Profile, bool)> {
    let mut rec = Recorder::with_duty(opts, duty)?;
    let from = rec.mark()?;
    let waited = rec.wait(duration, stop, true).await;
    let to = rec.mark()?;
    let stopped = waited == Waited::Stopped;
    let machine = to.machine();
    Ok((rec.profile(&from, &to, stopped, Some(machine)), stopped))
}

/// The profile of the counts since boot in /proc (no probes), with its findings: what
/// `report` shows without a recording, also for a tree captured on another machine.
pub fn since_boot(root: &SysRoot) -> anyhow::Result<Profile> {
    let machine = Machine::read(root).context("reading /proc/interrupts")?;
    let interrupts = procfs::read_interrupts(root)?;
    let softirqs = procfs::read_softirqs(root)?;
    let softnet = procfs::read_softnet(root).unwrap_or_default();
    let nics = procfs::read_nic_counters(root);
    let uptime_ns = root
        .read_opt("proc/uptime")
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1e9) as u64);
    let mut p = Profile::from_proc(machine, &interrupts, &softirqs, &softnet, &nics, uptime_ns);
    p.findings = findings::find(&p);
    Ok(p)
}
