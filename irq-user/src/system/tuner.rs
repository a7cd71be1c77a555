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
use serde::Serialize;

use crate::{
    analysis::plan::{Change, Knob, Plan, Strategy},
    analysis::planner::{self, Load, PlanOptions},
    analysis::policy,
    analysis::verdict::{self, Conclusion, Measure, Measures, Noise, Outcome, Side, Verdict},
    model::cpulist,
    model::machine::Machine,
    model::profile::{FlowTotals, Profile},
    model::snapshot::unix_ms,
    render,
    system::applier::{self, ApplyOptions},
    system::journal::{Lock, Store},
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
    /// Measurement time of each side in the trial's first look.
    pub per_side: Duration,
    /// Windows each side is split into at the first look.
    pub windows: u32,
    pub dry_run: bool,
    pub keep_if_worse: bool,
    pub cpus: Option<Vec<u32>>,
    pub force: bool,
    /// Pause after each write of the apply.
    pub pause: Duration,
    /// Try this plan first (a hand-written change, judged the same way).
    pub plan: Option<Plan>,
    /// Plans tried at most, each with its own trial, until one is kept.
    pub max_trials: u32,
    /// The command that reverts a journal of this run, its path appended ("irqtune --root
    /// T revert --state-dir D").
    pub undo: String,
}

/// One plan tried, and what became of it.
#[derive(Debug, Serialize)]
pub struct Tried {
    pub plan: Plan,
    /// "the plan given with --plan", or the planner's strategy.
    pub source: String,
    pub verdict: Verdict,
    pub kept: bool,
    /// The journal of the change when kept (`irqtune revert` undoes it).
    pub journal: Option<PathBuf>,
}

/// How a tune ended.
#[derive(Debug)]
pub enum Ended {
    /// Nothing measured is outside noise.
    NotWorthIt,
    /// The steering already matches the policy.
    NothingToChange,
    DryRun,
    /// One plan kept (the last of `tried`), or none (every trial rolled back).
    Tried {
        tried: Vec<Tried>,
    },
}

impl Ended {
    /// The plan kept, if one was.
    pub fn kept(&self) -> Option<&Tried> {
        match self {
            Ended::Tried { tried } => tried.iter().find(|t| t.kept),
            _ => None,
        }
    }
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

/// What the shown NET_RX figures leave out: the polls of devices with threaded NAPI on, on
/// either side of the trial, run in kthreads outside the NET_RX softirq the probes time.
/// (Attributing their time needs the kthreads' CPU time read at each mark.)
fn kthread_polls_unseen(machine: &Machine, plan: &Plan) -> Option<String> {
    let now: Vec<(&str, bool)> = machine
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.napi.threaded.is_some_and(|t| t != 0)))
        .collect();
    threaded_sides(&now, &plan.changes)
}

/// [`kthread_polls_unseen`] from each device's threaded NAPI now and the plan's changes.
fn threaded_sides(now: &[(&str, bool)], changes: &[Change]) -> Option<String> {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for &(name, was) in now {
        let will = changes
            .iter()
            .find_map(|c| match &c.knob {
                Knob::NapiThreaded { iface } if iface == name => Some(c.proposed.trim() != "0"),
                _ => None,
            })
            .unwrap_or(was);
        if was {
            before.push(name);
        }
        if will {
            after.push(name);
        }
    }
    let side = match (before.is_empty(), after.is_empty()) {
        (true, true) => return None,
        (true, false) => format!("after the change ({})", after.join(", ")),
        (false, true) => format!("before the change ({})", before.join(", ")),
        (false, false) if before == after => format!("on both sides ({})", after.join(", ")),
        (false, false) => format!(
            "before ({}) and after ({}) the change",
            before.join(", "),
            after.join(", ")
        ),
    };
    Some(format!(
        "the receive polls of threaded NAPI {side}: they run in kthreads, outside the NET_RX \
         softirq the probes time, so the busiest CPU's softirq share and the NET_RX time per \
         packet shown leave them out (throughput, latency and drops judge the change)"
    ))
}

/// Which state the machine is in during the trial.
enum State {
    Before,
    After(PathBuf),
}

/// The order of round `r` of the trial: one window each way, the order reversed every other
/// round (A B, B A, A B, ...), so a drift in the workload over the trial falls on both sides
/// alike; it starts with A, the state the machine is in after planning. True: after.
fn round_order(r: u32) -> [bool; 2] {
    if r.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    }
}

pub fn trial_order(rounds: u32) -> Vec<bool> {
    (0..rounds).flat_map(round_order).collect()
}

fn say(out: &mut dyn Write, text: std::fmt::Arguments) {
    let _ = out.write_fmt(text);
}

/// The windows of a trial so far, by side.
#[derive(Default)]
struct Windows {
    before: Vec<Profile>,
    after: Vec<Profile>,
    rounds: u32,
}

/// What every step of a tune run needs.
struct Run<'a> {
    root: &'a SysRoot,
    store: &'a Store,
    /// The state directory's lock, held for the whole run: no other apply or revert can
    /// slip in between the trial's toggles and be undone by them.
    lock: Lock,
    opts: &'a TuneOptions,
    stop: &'a Stop,
    machine: Machine,
    /// The CPUs tune may use and judges.
    cpus: Vec<u32>,
    /// With --iface, the addresses whose flows are judged.
    addrs: Option<Vec<IpAddr>>,
}

/// The receive drops + squeezes of each window before the change.
#[derive(Clone, Debug)]
struct DropWindows {
    counts: Vec<f64>,
}

impl DropWindows {
    fn with(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0.0).count()
    }

    /// Whether a trial of the drop levers could show the drops fall even in the best case:
    /// the windows before as measured (repeated for every look a trial may take) against as
    /// many windows with no drop at all, by the trial's own rank test at its level. Drops in
    /// a few windows only tie with the zeros after and cannot show a fall (with 5 windows a
    /// side, every window must drop); a change that cannot be kept is not worth a trial.
    fn triable(&self) -> bool {
        let looks = policy::MAX_LOOKS as usize;
        let before: Vec<f64> = self.counts.repeat(looks);
        let after = vec![0.0; before.len()];
        crate::analysis::stats::p_less(&before, &after).is_some_and(|p| p < alpha_per_look())
    }
}

/// Level of each one-sided test at one look: the overall [`policy::ALPHA`] split over the
/// looks a trial may take (Bonferroni).
pub fn alpha_per_look() -> f64 {
    policy::ALPHA / policy::MAX_LOOKS as f64
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

    fn window(&self) -> Duration {
        self.opts.per_side / self.opts.windows.max(1)
    }

    /// Windows a side: the first look's, and the most the trial may take.
    fn first_and_max(&self, noise: &[Noise]) -> (u32, u32) {
        let n = self.opts.windows.max(2);
        let max = n * policy::MAX_LOOKS;
        // The noise before the change asks for this many to detect the margins; a measure
        // too noisy even for the maximum leaves the first look at the maximum.
        let needed = noise
            .iter()
            .map(|x| x.windows_needed.map(|w| w as u32).unwrap_or(max))
            .max()
            .unwrap_or(n);
        (needed.clamp(n, max), max)
    }

    /// Applies the plan (journaled); the journal of the change.
    fn apply(&self, plan: &Plan, out: &mut dyn Write) -> anyhow::Result<PathBuf> {
        let applied = applier::apply_held(
            self.root,
            &self.machine,
            plan,
            "irqtune tune",
            self.store,
            Some(&self.lock),
            &self.apply_options(),
            out,
        )?;
        applied
            .journal
            .context("the plan had changes but nothing was journaled")
    }

    fn revert(&self, journal: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<()> {
        applier::revert_held(
            self.root,
            self.store,
            &self.lock,
            Some(journal),
            &self.machine.host,
            false,
            out,
        )?;
        Ok(())
    }

    /// Step 1: the workload before any change, in as many windows as the trial's first look
    /// takes: its profile (findings printed) and its spread (the noise the trial must see
    /// through).
    async fn measure_before(
        &self,
        rec: &mut Recorder,
        out: &mut dyn Write,
    ) -> anyhow::Result<(Profile, Vec<Noise>, DropWindows)> {
        let n = self.opts.windows.max(2);
        let before = measure(rec, self.window(), n, self.stop).await?;
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
        let windows: Vec<Outcome> = before
            .windows(rec, &self.addrs)
            .iter()
            .map(Outcome::of)
            .collect();
        let max = (n * policy::MAX_LOOKS) as usize;
        let noise = Measure::ALL
            .iter()
            .filter_map(|&m| Noise::of(m, &windows, n as usize, max, alpha_per_look()))
            .collect();
        let drops = DropWindows {
            counts: windows.iter().map(|w| w.drops_squeezes as f64).collect(),
        };
        Ok((p, noise, drops))
    }

    /// Step 2: the plans to try, in order (the one given first, then the planner's
    /// strategies when the gain is outside noise), at most --max-trials; empty when there is
    /// nothing worth changing.
    fn candidates(
        &self,
        before: &Profile,
        drops: &DropWindows,
        out: &mut dyn Write,
    ) -> anyhow::Result<Vec<(Plan, String)>> {
        let mut plans = Vec::new();
        if let Some(p) = &self.opts.plan {
            plans.push((p.clone(), "the plan given with --plan".to_string()));
        }
        let m = Measures::of(before, &self.cpus);
        match verdict::worth_changing(&m) {
            None if plans.is_empty() => say(out, format_args!(
                "\nNo change: nothing measured is outside noise (busiest flows {:.1}% mismatched, NET_RX imbalance {:.2}, no receive drops or squeezes).\n",
                m.mismatch * 100.0,
                m.imbalance
            )),
            None => {}
            Some(why) => {
                say(out, format_args!("\nWhy change: {why}\n"));
                let plan_opts = PlanOptions {
                    ifaces: self.opts.ifaces.clone(),
                    cpus: self.opts.cpus.clone(),
                    ..PlanOptions::default()
                };
                let secs = self.opts.per_side.as_secs_f64();
                let load = Load::from_profile(before, &format!("tune's {secs:.0} s measurement"));
                let found = planner::candidates(&self.machine, &load, &plan_opts, unix_ms() / 1000)
                    .map_err(|e| TuneInputError(e.to_string()))?;
                plans.extend(
                    found
                        .into_iter()
                        .filter(|p| {
                            let triable = p.strategy != Strategy::Drops || drops.triable();
                            if !triable {
                                say(out, format_args!(
                                    "\nNot tried: {} ({} change(s)): drops or squeezes in {} of {} windows before, too few for a trial to show them fall even if they stopped\n",
                                    p.strategy.describe(),
                                    p.changes.len(),
                                    drops.with(),
                                    drops.counts.len()
                                ));
                            }
                            triable
                        })
                        .map(|p| {
                            let s = format!("the planner: {}", p.strategy.describe());
                            (p, s)
                        }),
                );
            }
        }
        plans.truncate(self.opts.max_trials.max(1) as usize);
        Ok(plans)
    }

    /// One window in the state `after` asks for (toggling the change, journaled, and letting
    /// it settle); on a stop or an error the before state is put back.
    async fn one_window(
        &self,
        rec: &mut Recorder,
        plan: &Plan,
        state: State,
        after: bool,
        out: &mut dyn Write,
    ) -> anyhow::Result<(Profile, State)> {
        let mut quiet = std::io::sink();
        let state = match (state, after) {
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
            measure(rec, self.window(), 1, self.stop).await
        } else {
            Ok(Measured {
                marks: Vec::new(),
                stopped: true,
            })
        };
        match m {
            Ok(m) if !m.stopped => {
                let w = m.windows(rec, &self.addrs).remove(0);
                Ok((w, state))
            }
            failed => {
                if let State::After(j) = &state {
                    self.revert(j, out)?;
                }
                match failed {
                    Err(e) => Err(e.context("a trial window failed; the before state is back")),
                    Ok(_) => Err(anyhow::anyhow!(
                        "interrupted during the trial; the before state is back"
                    )),
                }
            }
        }
    }

    fn show_plan(&self, i: usize, of: usize, plan: &Plan, source: &str, out: &mut dyn Write) {
        say(
            out,
            format_args!(
                "\nPlan {} of {of}, {source} ({} change(s)) on CPUs {}:\n{}",
                i + 1,
                plan.changes.len(),
                cpulist::format(&self.cpus),
                plan.diff()
            ),
        );
    }

    /// Applies, judges and keeps or rolls back each plan in turn, until one is kept.
    async fn try_plans(
        &self,
        plans: &[(Plan, String)],
        rec: &mut Recorder,
        noise: &[Noise],
        out: &mut dyn Write,
        progress: &mut dyn Write,
    ) -> anyhow::Result<Vec<Tried>> {
        let mut tried = Vec::new();
        for (i, (plan, source)) in plans.iter().enumerate() {
            if self.stop.requested() {
                break;
            }
            self.show_plan(i, plans.len(), plan, source, out);
            say(
                progress,
                format_args!("tune 3/5: applying plan {} (journaled) ...\n", i + 1),
            );
            let state = State::After(self.apply(plan, out)?);
            let (verdict, state) = self.trial(rec, plan, state, noise, out, progress).await?;
            say(progress, format_args!("tune 5/5: comparing ...\n"));
            let journal = self.conclude(plan, &verdict, state, out)?;
            let kept = journal.is_some();
            tried.push(Tried {
                plan: plan.clone(),
                source: source.clone(),
                verdict,
                kept,
                journal,
            });
            if kept {
                break;
            }
        }
        Ok(tried)
    }

    fn compare(&self, plan: &Plan, w: &Windows) -> Verdict {
        let side = |windows: &[Profile]| Side {
            windows: windows.iter().map(Outcome::of).collect(),
            whole: Measures::of_windows(windows, &self.cpus),
        };
        let fewer_drops = plan.changes.iter().any(|c| c.knob.is_drop_lever());
        let mut v = verdict::compare(
            &side(&w.before),
            &side(&w.after),
            alpha_per_look(),
            fewer_drops,
        );
        v.left_out.extend(kthread_polls_unseen(&self.machine, plan));
        v
    }

    /// Step 4: the trial. Windows alternate between the before and the after state (the
    /// change is toggled between them, journaled each time), so drift in the workload falls
    /// on both sides. At each look the verdict is taken; while it cannot tell, the trial
    /// goes on with as many windows again, up to the bound. Returns the last verdict and the
    /// state the machine is in.
    async fn trial(
        &self,
        rec: &mut Recorder,
        plan: &Plan,
        mut state: State,
        noise: &[Noise],
        out: &mut dyn Write,
        progress: &mut dyn Write,
    ) -> anyhow::Result<(Verdict, State)> {
        let (first, max) = self.first_and_max(noise);
        let step = self.opts.windows.max(2);
        let mut w = Windows::default();
        let mut target = first;
        let mut look = 1;
        loop {
            say(
                progress,
                format_args!(
                    "tune 4/5: trial look {look}: {target} windows of {:.1} s each way, alternating before and after ...\n",
                    self.window().as_secs_f64()
                ),
            );
            while w.rounds < target {
                for after in round_order(w.rounds) {
                    let (p, s) = self.one_window(rec, plan, state, after, out).await?;
                    state = s;
                    if after {
                        w.after.push(p);
                    } else {
                        w.before.push(p);
                    }
                }
                w.rounds += 1;
            }
            let v = self.compare(plan, &w);
            if v.conclusion != Conclusion::Undecided || target >= max {
                return Ok((v, state));
            }
            say(
                out,
                format_args!(
                    "  look {look} ({target} windows a side): {}; extending the trial\n",
                    render::tune::headline(&v)
                ),
            );
            target = (target + step).min(max);
            look += 1;
        }
    }

    /// Step 5: the verdict, and the machine left in the state it chose.
    fn conclude(
        &self,
        plan: &Plan,
        v: &Verdict,
        state: State,
        out: &mut dyn Write,
    ) -> anyhow::Result<Option<PathBuf>> {
        say(
            out,
            format_args!(
                "\nBefore and after ({} and {} windows of {:.1} s, interleaved):\n{}",
                v.windows.0,
                v.windows.1,
                self.window().as_secs_f64(),
                render::tune::table(v)
            ),
        );
        for u in &v.unmeasured {
            say(out, format_args!("  not measured: {u}\n"));
        }
        for l in &v.left_out {
            say(out, format_args!("  left out of the figures: {l}\n"));
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
        let headline = render::tune::headline(v);
        match &journal {
            None if v.conclusion == Conclusion::Undecided => say(
                out,
                format_args!(
                    "Verdict: {headline}; rolled back to the before state: after {} windows a side the trial could not show the change is no worse.\n",
                    v.windows.1
                ),
            ),
            None => say(
                out,
                format_args!("Verdict: {headline}; rolled back to the before state.\n"),
            ),
            Some(j) => {
                let kept = if v.keep() {
                    "kept"
                } else {
                    "kept because of --keep-if-worse"
                };
                say(
                    out,
                    format_args!(
                        "Verdict: {headline}; {kept}. Undo with `{} {}`.\n",
                        self.opts.undo,
                        j.display()
                    ),
                );
            }
        }
        Ok(journal)
    }
}

/// The record of a tune run, kept in the state directory next to the journals: every plan
/// tried, its windows and verdict, and which one stayed.
#[derive(Serialize)]
struct Record<'a> {
    format: &'static str,
    version: u32,
    created_unix: u64,
    noise: &'a [Noise],
    tried: &'a [Tried],
}

fn save_record(store: &Store, noise: &[Noise], tried: &[Tried]) -> anyhow::Result<PathBuf> {
    let r = Record {
        format: "irqtune-tune",
        version: 1,
        created_unix: unix_ms() / 1000,
        noise,
        tried,
    };
    let text = serde_json::to_string_pretty(&r).context("serialising the tune record")?;
    store
        .write_record("tune", &text)
        .context("writing the tune record")
}

fn summary(tried: &[Tried], out: &mut dyn Write) {
    say(out, format_args!("\nTried ({}):\n", tried.len()));
    for (i, t) in tried.iter().enumerate() {
        say(
            out,
            format_args!(
                "  {}. {} ({} change(s)): {}, {}\n",
                i + 1,
                t.source,
                t.plan.changes.len(),
                t.verdict.conclusion.word(),
                if t.kept { "kept" } else { "rolled back" }
            ),
        );
    }
    if !tried.iter().any(|t| t.kept) {
        say(
            out,
            format_args!("  none kept: the machine is as it was before tune.\n"),
        );
    }
}

/// Runs tune. `out` gets the findings, plans, tables and verdicts; `progress` the step lines.
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
    let lock = store.lock()?;
    let run = Run {
        root,
        store,
        lock,
        opts,
        stop,
        machine,
        cpus,
        addrs: iface_filter(&opts.ifaces),
    };
    let secs = opts.per_side.as_secs_f64();

    say(
        progress,
        format_args!("tune 1/5: measuring {secs:.0} s before any change ...\n"),
    );
    let mut rec = Recorder::start(&ProbeOptions::default())?;
    let (before, noise, drops) = run.measure_before(&mut rec, out).await?;

    say(progress, format_args!("tune 2/5: planning ...\n"));
    let plans = run.candidates(&before, &drops, out)?;
    if plans.is_empty() {
        return Ok(Ended::NotWorthIt);
    }
    let n = opts.windows.max(2) as usize;
    say(
        out,
        format_args!("\n{}", render::tune::noise(&noise, n, alpha_per_look())),
    );
    if plans.iter().all(|(p, _)| p.changes.is_empty()) {
        say(
            out,
            format_args!(
                "\nPlan on CPUs {}:\n{}Nothing to change: the steering already matches the policy for what was measured.\n",
                cpulist::format(&run.cpus),
                plans[0].0.diff()
            ),
        );
        return Ok(Ended::NothingToChange);
    }
    let plans: Vec<(Plan, String)> = plans
        .into_iter()
        .filter(|(p, _)| !p.changes.is_empty())
        .collect();
    if opts.dry_run {
        for (i, (plan, source)) in plans.iter().enumerate() {
            run.show_plan(i, plans.len(), plan, source, out);
        }
        say(out, format_args!("Dry run: nothing applied.\n"));
        return Ok(Ended::DryRun);
    }
    let tried = run
        .try_plans(&plans, &mut rec, &noise, out, progress)
        .await?;
    drop(rec);
    summary(&tried, out);
    match save_record(store, &noise, &tried) {
        Ok(path) => say(
            out,
            format_args!("Record of this tune: {}\n", path.display()),
        ),
        Err(e) => say(out, format_args!("warning: {e:#}\n")),
    }
    if tried.is_empty() {
        anyhow::bail!("interrupted before the change; nothing was changed");
    }
    Ok(Ended::Tried { tried })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_levers_are_tried_only_when_a_trial_could_show_the_drops_fall() {
        let w = |c: &[f64]| DropWindows { counts: c.to_vec() };
        // Drops in every window: a trial can show them stop.
        assert!(w(&[30.0, 12.0, 50.0, 8.0, 20.0]).triable());
        // None, or a burst in one window of five: it cannot, whatever the change does.
        assert!(!w(&[0.0; 5]).triable());
        assert!(!w(&[0.0, 0.0, 400.0, 0.0, 0.0]).triable());
        // The rank test decides, not a share: in 3 of 5 windows, tied zeros dominate.
        let three = w(&[9.0, 0.0, 4.0, 0.0, 7.0]);
        let p = crate::analysis::stats::p_less(&three.counts.repeat(3), &[0.0; 15]).unwrap();
        assert_eq!(three.triable(), p < alpha_per_look(), "p={p}");
    }

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

    #[test]
    fn the_polls_of_threaded_napi_are_said_unmeasured_on_the_side_they_run() {
        let threaded = |iface: &str, from: &str, to: &str| Change {
            knob: Knob::NapiThreaded {
                iface: iface.into(),
            },
            path: format!("sys/class/net/{iface}/threaded"),
            current: from.into(),
            proposed: to.into(),
            reason: String::new(),
            evidence: String::new(),
        };
        let off = [("eth0", false), ("eth1", false)];
        // Nothing threaded either side: nothing left out.
        assert_eq!(threaded_sides(&off, &[]), None);
        // Turned on: the after side's polls are unseen; turned off: the before side's.
        let on = threaded_sides(&off, &[threaded("eth1", "0", "1\n")]).unwrap();
        assert!(on.contains("after the change (eth1)"), "{on}");
        let was = [("eth0", true), ("eth1", false)];
        let off_again = threaded_sides(&was, &[threaded("eth0", "1", "0")]).unwrap();
        assert!(
            off_again.contains("before the change (eth0)"),
            "{off_again}"
        );
        // Already on and left alone: both sides; a change to another device adds it after.
        let both = threaded_sides(&was, &[]).unwrap();
        assert!(both.contains("on both sides (eth0)"), "{both}");
        let more = threaded_sides(&was, &[threaded("eth1", "0", "1")]).unwrap();
        assert!(
            more.contains("before (eth0) and after (eth0, eth1)"),
            "{more}"
        );
    }

    #[test]
    fn looking_again_cannot_inflate_the_error() {
        assert!((alpha_per_look() * policy::MAX_LOOKS as f64 - policy::ALPHA).abs() < 1e-12);
        // The smallest p of the first look's exact test is below the per-look level.
        let n = policy::DEFAULT_WINDOWS as u64;
        let splits = (1..=2 * n).product::<u64>() / (1..=n).product::<u64>().pow(2);
        assert!(1.0 / (splits as f64) < alpha_per_look(), "{splits}");
    }
}
