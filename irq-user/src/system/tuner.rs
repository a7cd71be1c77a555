//! `tune`: measure the workload in several windows, plan, apply (journaled), measure it again
//! in as many windows, and keep the change or roll it back on the verdict
//! ([`steering::verdict`]). The probes stay loaded throughout, so every window is measured
//! the same way and nothing is reloaded between the two sides.
//!
//! Whatever happens, the machine is left in the before or the after state: a signal while
//! measuring before changes nothing, during the apply the applier rolls back, during the
//! after windows the change is reverted; killed outright, the journal lets `irqtune revert`
//! put the before state back.

use std::{io::Write, net::IpAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::{
    analysis::plan::Plan,
    analysis::planner::{self, Load, PlanOptions},
    analysis::policy,
    analysis::verdict::{self, Measures, Outcome, Side, Verdict},
    model::cpulist,
    model::machine::Machine,
    model::profile::{FlowTotals, Profile},
    model::snapshot::unix_ms,
    system::applier::{self, ApplyOptions},
    system::journal::Store,
    system::probes::ProbeOptions,
    system::session::{Mark, Recorder, Waited},
    system::stop::Stop,
    system::sysroot::SysRoot,
};

#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// Interfaces to tune (empty: every NIC with queue interrupts); with some, only flows
    /// arriving on their addresses are judged.
    pub ifaces: Vec<String>,
    /// Measurement time of each side.
    pub per_side: Duration,
    /// Windows each side is split into.
    pub windows: u32,
    pub dry_run: bool,
    pub keep_if_worse: bool,
    pub cpus: Option<Vec<u32>>,
    pub force: bool,
    /// Pause after each write of the apply.
    pub pause: Duration,
    /// Judge this plan instead of planning one (a hand-written change, tried the same way).
    pub plan: Option<Plan>,
}

/// How a tune ended.
#[derive(Debug)]
pub enum Ended {
    /// Nothing measured is outside noise.
    NotWorthIt,
    /// The steering already matches the policy.
    NothingToChange,
    DryRun,
    Kept {
        journal: PathBuf,
        verdict: Verdict,
    },
    RolledBack {
        verdict: Verdict,
    },
}

/// A bad request (exit code 2 at the edge).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TuneInputError(pub String);

/// The addresses of `ifaces`: flows are judged only if their local address is one of these
/// (or a wildcard). None without --iface.
fn iface_filter(ifaces: &[String]) -> Option<Vec<IpAddr>> {
    if ifaces.is_empty() {
        return None;
    }
    let all = crate::system::netns::iface_addrs();
    Some(
        ifaces
            .iter()
            .flat_map(|i| all.get(i).cloned().unwrap_or_default())
            .collect(),
    )
}

/// Keeps the flows that arrive on `addrs` (and recomputes the findings).
fn judged(mut p: Profile, addrs: &Option<Vec<IpAddr>>) -> Profile {
    if let Some(addrs) = addrs {
        p.flows.retain(|f| {
            f.local
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().is_unspecified() || addrs.contains(&a.ip()))
                .unwrap_or(true)
        });
        p.flow_totals = FlowTotals::of(&p.flows);
        p.findings = crate::analysis::findings::find(&p);
    }
    p
}

/// `n` consecutive windows of `length`: the marks between them, and whether a stop ended it.
struct Measured {
    marks: Vec<Mark>,
    stopped: bool,
}

async fn measure(
    rec: &mut Recorder,
    length: Duration,
    n: u32,
    stop: &Stop,
) -> anyhow::Result<Measured> {
    let mut marks = vec![rec.mark()?];
    for _ in 0..n {
        if rec.wait(length, stop, false).await == Waited::Stopped {
            return Ok(Measured {
                marks,
                stopped: true,
            });
        }
        marks.push(rec.mark()?);
    }
    Ok(Measured {
        marks,
        stopped: false,
    })
}

impl Measured {
    /// The profile of the whole span (with the machine, for findings and planning).
    fn whole(&self, rec: &Recorder, addrs: &Option<Vec<IpAddr>>) -> Profile {
        let first = &self.marks[0];
        let last = &self.marks[self.marks.len() - 1];
        judged(rec.profile(first, last, false, Some(last.machine())), addrs)
    }

    /// Each window's profile.
    fn windows(&self, rec: &Recorder, addrs: &Option<Vec<IpAddr>>) -> Vec<Profile> {
        self.marks
            .windows(2)
            .map(|w| judged(rec.profile(&w[0], &w[1], false, None), addrs))
            .collect()
    }
}

/// Which state the machine is in during the trial.
enum State {
    Before,
    After(PathBuf),
}

/// The order of the trial's windows: rounds of one window each way, the order reversed every
/// other round (A B, B A, A B, ...), so a drift in the workload over the trial falls on both
/// sides alike; it starts with A, the state the machine is in after planning.
pub fn trial_order(rounds: u32) -> Vec<bool> {
    (0..rounds)
        .flat_map(|r| {
            if r % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            }
        })
        .collect()
}

fn say(out: &mut dyn Write, text: std::fmt::Arguments) {
    let _ = out.write_fmt(text);
}

/// What every step of a tune run needs.
struct Run<'a> {
    root: &'a SysRoot,
    store: &'a Store,
    opts: &'a TuneOptions,
    stop: &'a Stop,
    machine: Machine,
    /// The CPUs tune may use and judges.
    cpus: Vec<u32>,
    /// With --iface, the addresses whose flows are judged.
    addrs: Option<Vec<IpAddr>>,
}

impl Run<'_> {
    fn apply_options(&self) -> ApplyOptions {
        ApplyOptions {
            force: self.opts.force,
            stop: self.stop.clone(),
            pause: self.opts.pause,
            ..ApplyOptions::default()
        }
    }

    /// Applies the plan (journaled); the journal of the change.
    fn apply(&self, plan: &Plan, out: &mut dyn Write) -> anyhow::Result<PathBuf> {
        let applied = applier::apply(
            self.root,
            &self.machine,
            plan,
            "irqtune tune",
            self.store,
            &self.apply_options(),
            out,
        )?;
        applied
            .journal
            .context("the plan had changes but nothing was journaled")
    }

    fn revert(&self, journal: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<()> {
        applier::revert(self.root, self.store, Some(journal), out)?;
        Ok(())
    }

    /// Step 1: one window before any change; its profile (findings printed).
    async fn measure_before(
        &self,
        rec: &mut Recorder,
        out: &mut dyn Write,
    ) -> anyhow::Result<Profile> {
        let before = measure(rec, self.opts.per_side, 1, self.stop).await?;
        if before.stopped {
            anyhow::bail!("interrupted while measuring; nothing was changed");
        }
        let p = before.whole(rec, &self.addrs);
        say(out, format_args!("Findings before:\n"));
        for f in &p.findings {
            say(
                out,
                format_args!(
                    "  [{}] {}\n      evidence: {}\n",
                    f.severity.name(),
                    f.title,
                    f.evidence
                ),
            );
        }
        if p.findings.is_empty() {
            say(out, format_args!("  none\n"));
        }
        Ok(p)
    }

    /// Step 2: the plan (the one given, or the planner's when the gain is outside noise) and
    /// why; None when there is nothing worth changing.
    fn choose_plan(
        &self,
        before: &Profile,
        out: &mut dyn Write,
    ) -> anyhow::Result<Option<(Plan, String)>> {
        if let Some(p) = &self.opts.plan {
            return Ok(Some((p.clone(), "the plan given with --plan".to_string())));
        }
        let m = Measures::of(before, &self.cpus);
        let Some(why) = verdict::worth_changing(&m) else {
            say(out, format_args!(
                "\nNo change: nothing measured is outside noise (busiest flows {:.1}% mismatched, NET_RX imbalance {:.2}, no softnet drops or squeezes).\n",
                m.mismatch * 100.0,
                m.imbalance
            ));
            return Ok(None);
        };
        let plan_opts = PlanOptions {
            ifaces: self.opts.ifaces.clone(),
            cpus: self.opts.cpus.clone(),
            ..PlanOptions::default()
        };
        let secs = self.opts.per_side.as_secs_f64();
        let load = Load::from_profile(before, &format!("tune's {secs:.0} s measurement"));
        let plan = planner::plan(&self.machine, &load, &plan_opts, unix_ms() / 1000)
            .map_err(|e| TuneInputError(e.to_string()))?;
        Ok(Some((plan, why)))
    }

    /// Step 4: the trial. Windows alternate between the before and the after state (the
    /// change is toggled between rounds, journaled each time), so drift in the workload falls
    /// on both sides; returns the windows of each side and the state the machine is in.
    async fn trial(
        &self,
        rec: &mut Recorder,
        plan: &Plan,
        mut state: State,
        out: &mut dyn Write,
    ) -> anyhow::Result<(Vec<Profile>, Vec<Profile>, State)> {
        let n = self.opts.windows.max(1);
        let window = self.opts.per_side / n;
        let mut quiet = std::io::sink();
        let (mut a_windows, mut b_windows) = (Vec::new(), Vec::new());
        for after in trial_order(n) {
            // Toggle to the side this window measures, then let it settle.
            state = match (state, after) {
                (State::After(j), false) => {
                    self.revert(&j, &mut quiet)?;
                    State::Before
                }
                (State::Before, true) => State::After(self.apply(plan, &mut quiet)?),
                (s, _) => s,
            };
            let settled = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(policy::SETTLE_MS)) => true,
                _ = self.stop.wait() => false,
            };
            let m = if settled {
                measure(rec, window, 1, self.stop).await
            } else {
                Ok(Measured {
                    marks: Vec::new(),
                    stopped: true,
                })
            };
            let m = match m {
                Ok(m) if !m.stopped => m,
                failed => {
                    if let State::After(j) = &state {
                        self.revert(j, out)?;
                    }
                    return match failed {
                        Err(e) => Err(e.context("a trial window failed; the before state is back")),
                        Ok(_) => Err(anyhow::anyhow!(
                            "interrupted during the trial; the before state is back"
                        )),
                    };
                }
            };
            let w = m.windows(rec, &self.addrs).remove(0);
            if after {
                b_windows.push(w);
            } else {
                a_windows.push(w);
            }
        }
        Ok((a_windows, b_windows, state))
    }

    /// Step 5: the verdict, and the machine left in the state it chose.
    fn conclude(
        &self,
        plan: &Plan,
        a_windows: &[Profile],
        b_windows: &[Profile],
        state: State,
        out: &mut dyn Write,
    ) -> anyhow::Result<Ended> {
        let n = self.opts.windows.max(1);
        let window = self.opts.per_side / n;
        let side = |windows: &[Profile]| Side {
            windows: windows.iter().map(Outcome::of).collect(),
            whole: Measures::of_windows(windows, &self.cpus),
        };
        let v = verdict::compare(&side(a_windows), &side(b_windows));
        say(
            out,
            format_args!(
                "\nBefore and after ({n} windows of {:.1} s each way, interleaved):\n{}",
                window.as_secs_f64(),
                v.table()
            ),
        );
        for u in &v.unmeasured {
            say(out, format_args!("  not measured: {u}\n"));
        }
        for t in &v.tradeoffs {
            say(out, format_args!("  tradeoff: {t}\n"));
        }
        let keep = v.keep() || self.opts.keep_if_worse;
        let journal = match (state, keep) {
            (State::After(j), true) => Some(j),
            (State::Before, true) => Some(self.apply(plan, out)?),
            (State::After(j), false) => {
                self.revert(&j, out)?;
                None
            }
            (State::Before, false) => None,
        };
        let Some(journal) = journal else {
            say(
                out,
                format_args!(
                    "Verdict: {}; rolled back to the before state.\n",
                    v.headline()
                ),
            );
            return Ok(Ended::RolledBack { verdict: v });
        };
        let kept = if v.keep() {
            "kept"
        } else {
            "kept because of --keep-if-worse"
        };
        say(
            out,
            format_args!(
                "Verdict: {}; {kept}. Undo with `irqtune revert {}`.\n",
                v.headline(),
                journal.display()
            ),
        );
        Ok(Ended::Kept {
            journal,
            verdict: v,
        })
    }
}

/// Runs tune. `out` gets the findings, plan, table and verdict; `progress` the step lines.
pub async fn tune(
    root: &SysRoot,
    store: &Store,
    opts: &TuneOptions,
    stop: &Stop,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> anyhow::Result<Ended> {
    if !root.is_live() {
        return Err(TuneInputError(
            "tune measures and changes this machine: it does not work with --root".into(),
        )
        .into());
    }
    let machine = Machine::read(root).context("reading the machine's IRQs")?;
    let mut cpus = machine.topology.housekeeping();
    if let Some(only) = &opts.cpus {
        cpus.retain(|c| only.contains(c));
    }
    let run = Run {
        root,
        store,
        opts,
        stop,
        machine,
        cpus,
        addrs: iface_filter(&opts.ifaces),
    };
    let (n, secs) = (opts.windows.max(1), opts.per_side.as_secs_f64());

    say(
        progress,
        format_args!("tune 1/5: measuring {secs:.0} s before any change ...\n"),
    );
    let mut rec = Recorder::start(&ProbeOptions::default())?;
    let before = run.measure_before(&mut rec, out).await?;

    say(progress, format_args!("tune 2/5: planning ...\n"));
    let Some((plan, why)) = run.choose_plan(&before, out)? else {
        return Ok(Ended::NotWorthIt);
    };
    say(
        out,
        format_args!(
            "\nWhy change: {why}\nPlan ({} change(s)) on CPUs {}:\n{}",
            plan.changes.len(),
            cpulist::format(&run.cpus),
            plan.diff()
        ),
    );
    if plan.changes.is_empty() {
        say(
            out,
            format_args!(
            "Nothing to change: the steering already matches the policy for what was measured.\n"
        ),
        );
        return Ok(Ended::NothingToChange);
    }
    if opts.dry_run {
        say(out, format_args!("Dry run: nothing applied.\n"));
        return Ok(Ended::DryRun);
    }
    if stop.requested() {
        anyhow::bail!("interrupted before the change; nothing was changed");
    }

    say(
        progress,
        format_args!("tune 3/5: applying (journaled) ...\n"),
    );
    let state = State::After(run.apply(&plan, out)?);

    say(
        progress,
        format_args!(
            "tune 4/5: trial, {n} windows of {:.1} s each way, alternating before and after ...\n",
            (opts.per_side / n).as_secs_f64()
        ),
    );
    let (a_windows, b_windows, state) = run.trial(&mut rec, &plan, state, out).await?;
    drop(rec);

    say(progress, format_args!("tune 5/5: comparing ...\n"));
    run.conclude(&plan, &a_windows, &b_windows, state, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trial_alternates_and_balances_its_sides() {
        let o = trial_order(5);
        assert_eq!(
            o,
            [false, true, true, false, false, true, true, false, false, true]
        );
        assert_eq!(o.iter().filter(|a| **a).count(), 5);
        // Each side's mean position is the same: a linear drift weighs on both alike.
        let mean = |want: bool| {
            let pos: Vec<usize> = (0..o.len()).filter(|&i| o[i] == want).collect();
            pos.iter().sum::<usize>() as f64 / pos.len() as f64
        };
        assert!((mean(true) - mean(false)).abs() <= 0.5, "{o:?}");
    }
}
