//! `tune`: parses the options and prints; the steps are in `irq_user::system::tuner`.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use irq_user::{
    analysis::policy,
    model::machine::Machine,
    system::files,
    system::stop::Stop,
    system::sysroot::SysRoot,
    system::tuner::{self, TuneInputError, TuneOptions},
};

use super::{steer::StateDir, BadInput};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Tune only this interface (repeatable); default: every NIC with queue interrupts.
    /// Only flows arriving on its addresses are judged.
    #[arg(long = "iface")]
    ifaces: Vec<String>,
    /// Seconds of measurement on each side (before and after the change).
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Windows each side is split into at the trial's first look; the verdict compares them
    /// window by window, and a trial that cannot tell goes on with as many again (at most
    /// 3 looks).
    #[arg(long, default_value_t = policy::DEFAULT_WINDOWS, value_parser = clap::value_parser!(u32).range(2..=10))]
    windows: u32,
    /// Plans to try at most, each judged by its own trial, until one is kept: the planner's
    /// strategies in turn (after the --plan given, if any).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=5))]
    max_trials: u32,
    /// Measure and plan, show the diff, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep the change even when the verdict is worse.
    #[arg(long)]
    keep_if_worse: bool,
    /// Use only these CPUs.
    #[arg(long, value_parser = super::parse_cpus)]
    cpus: Option<super::CpuList>,
    /// Apply even if irqbalance runs (see `irqtune apply --force`).
    #[arg(long)]
    force: bool,
    /// Try this plan (from `irqtune plan --output`, or written by hand) first, and keep or
    /// roll it back on the same verdict; the planner's own follow when it is rolled back
    /// and --max-trials allows.
    #[arg(long, value_name = "PLAN.json")]
    plan: Option<PathBuf>,
    #[command(flatten)]
    state: StateDir,
    /// Milliseconds to wait after each write of the apply step.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
}

pub async fn tune(root: &SysRoot, how: &super::Invocation, args: TuneArgs) -> anyhow::Result<()> {
    // Before anything is loaded or written: a signal stops at the next step boundary, and
    // the steps leave the machine in the before or the after state.
    let stop = Stop::on_signals().context("installing the signal handlers")?;
    let plan = match &args.plan {
        Some(path) => {
            let m = Machine::read(root).context("reading the machine's IRQs")?;
            let t = &m.topology;
            Some(files::load_plan(path, &t.possible, &t.online).map_err(|e| BadInput(e.into()))?)
        }
        None => None,
    };
    let opts = TuneOptions {
        ifaces: args.ifaces,
        per_side: Duration::from_secs(args.duration),
        windows: args.windows,
        dry_run: args.dry_run,
        keep_if_worse: args.keep_if_worse,
        cpus: args.cpus.map(|c| c.0),
        force: args.force,
        pause: Duration::from_millis(args.pause_ms),
        plan,
        max_trials: args.max_trials,
        undo: {
            let mut a = vec!["revert".to_string()];
            a.extend(args.state.args());
            how.command(&a.iter().map(String::as_str).collect::<Vec<_>>())
        },
    };
    let store = args.state.store(root);
    match tuner::tune(
        root,
        &store,
        &opts,
        &stop,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is::<TuneInputError>() => Err(BadInput(e).into()),
        Err(e) => Err(e),
    }
}
