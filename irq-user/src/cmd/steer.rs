//! `show`, `plan`, `apply`, `revert`.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use irq_user::{
    analysis::planner::{self, Load, PlanOptions},
    model::machine::Machine,
    render::show,
    system::applier::{self, ApplyOptions},
    system::files,
    system::journal::Store,
    system::stop::Stop,
    system::sysroot::SysRoot,
};

use super::BadInput;

#[derive(clap::Args)]
pub struct ShowArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds between the two readings of /proc/interrupts that give the rates (0: none;
    /// always none with --root; at most 3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_sample)]
    sample: f64,
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Weigh IRQs and flows by this profile (from `irqtune record --output`).
    #[arg(long, value_name = "PROFILE.json", conflicts_with = "duration")]
    from: Option<PathBuf>,
    /// Record this many seconds first (probes: handler time and flows) and plan from that.
    /// Without --from or --duration: the /proc/interrupts counts since boot.
    #[arg(short, long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: Option<u64>,
    /// Plan only this interface (repeatable); default: every NIC with queue interrupts.
    #[arg(long = "iface")]
    ifaces: Vec<String>,
    /// Use only these CPUs (a CPU list such as 2-7).
    #[arg(long, value_parser = super::parse_cpus)]
    cpus: Option<super::CpuList>,
    /// Write the plan here (JSON) as well as printing the diff.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The plan (from `irqtune plan --output`).
    plan: PathBuf,
    /// Print the writes without making them.
    #[arg(long)]
    dry_run: bool,
    /// Apply even if the plan is from another host or boot, the machine changed since, or
    /// irqbalance runs.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    state: StateDir,
    /// Milliseconds to wait after each write (watch each change take effect).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
}

#[derive(clap::Args)]
pub struct RevertArgs {
    /// The journal to restore [default: the newest one still applied].
    journal: Option<PathBuf>,
    /// Revert even a journal made for another host, boot or --root tree.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    state: StateDir,
}

fn parse_sample(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        Ok(_) => Err("seconds from 0 to 3600".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--state-dir`, shared by the commands that write or read journals.
#[derive(clap::Args, Clone)]
pub struct StateDir {
    /// Where journals and the lock live [default: /var/lib/irqtune below --root].
    #[arg(long = "state-dir", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl StateDir {
    pub fn store(&self, root: &SysRoot) -> Store {
        match &self.dir {
            Some(d) => Store::new(d),
            None => Store::in_root(root),
        }
    }

    /// The arguments that name it again ("--state-dir DIR", or none for the default).
    pub fn args(&self) -> Vec<String> {
        match &self.dir {
            Some(d) => vec!["--state-dir".into(), d.display().to_string()],
            None => Vec::new(),
        }
    }
}

pub fn read_machine(root: &SysRoot) -> anyhow::Result<Machine> {
    Machine::read(root).context("reading the machine's IRQs")
}

pub fn show(root: &SysRoot, args: ShowArgs) -> anyhow::Result<()> {
    let before = read_machine(root)?;
    let (machine, secs, rates) = if root.is_live() && args.sample > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(args.sample));
        let after = read_machine(root)?;
        let rates = show::rates(&before, &after, args.sample);
        (after, Some(args.sample), rates)
    } else {
        (before, None, Default::default())
    };
    let shown = show::Shown {
        machine: &machine,
        sample_secs: secs,
        rates,
    };
    if args.json {
        super::out(&(serde_json::to_string_pretty(&shown)? + "\n"));
    } else {
        super::out(&show::text(&shown));
    }
    Ok(())
}

pub async fn plan(root: &SysRoot, args: PlanArgs) -> anyhow::Result<()> {
    let load = match (&args.from, args.duration) {
        (Some(path), _) => {
            let p = files::load_profile(path).map_err(|e| BadInput(e.into()))?;
            Some((
                Load::from_profile(&p, &format!("profile {}", path.display())),
                Some(p.host),
            ))
        }
        (None, Some(secs)) => {
            if !root.is_live() {
                return Err(BadInput(anyhow::anyhow!(
                    "--duration records this machine, which does not go with --root; use --from PROFILE.json"
                ))
                .into());
            }
            let stop = Stop::on_signals().context("installing the signal handlers")?;
            let (p, interrupted) = super::record::measure(secs, &stop).await?;
            if interrupted {
                anyhow::bail!("interrupted while measuring; nothing was planned");
            }
            Some((
                Load::from_profile(&p, &format!("a {secs} s recording")),
                None,
            ))
        }
        (None, None) => None,
    };
    let machine = read_machine(root)?;
    if let Some((_, Some(host))) = &load {
        if host.hostname != machine.host.hostname || host.boot_id != machine.host.boot_id {
            super::err(&format!(
                "warning: the profile is from host {:?} boot {}, this is {:?} boot {}: IRQ numbers and devices may not match\n",
                host.hostname, host.boot_id, machine.host.hostname, machine.host.boot_id
            ));
        }
    }
    let load = load.map(|(l, _)| l).unwrap_or_else(|| {
        let src = format!(
            "{} counts since boot",
            root.path("proc/interrupts").display()
        );
        Load::from_counts(&machine, &src)
    });
    let opts = PlanOptions {
        ifaces: args.ifaces,
        cpus: args.cpus.map(|c| c.0),
        ..PlanOptions::default()
    };
    let plan = planner::plan(
        &machine,
        &load,
        &opts,
        irq_user::model::snapshot::unix_ms() / 1000,
    )
    .map_err(|e| BadInput(e.into()))?;
    super::out(&plan.diff());
    if let Some(out) = args.output {
        files::write_output(&out, plan.to_json().as_bytes())
            .with_context(|| format!("writing the plan to {}", out.display()))?;
        super::err(&format!(
            "plan written to {}; check it with `irqtune apply --dry-run {}`\n",
            out.display(),
            out.display()
        ));
    }
    Ok(())
}

pub fn apply(root: &SysRoot, how: &super::Invocation, args: ApplyArgs) -> anyhow::Result<()> {
    let machine = read_machine(root)?;
    let t = &machine.topology;
    let plan =
        files::load_plan(&args.plan, &t.possible, &t.online).map_err(|e| BadInput(e.into()))?;
    let stop = Stop::on_signals().context("installing the signal handlers")?;
    let opts = ApplyOptions {
        dry_run: args.dry_run,
        force: args.force,
        pause: Duration::from_millis(args.pause_ms),
        stop,
    };
    let store = args.state.store(root);
    let name = args.plan.display().to_string();
    let done = applier::apply(
        root,
        &machine,
        &plan,
        &name,
        &store,
        &opts,
        &mut std::io::stdout(),
    )?;
    if let Some(j) = done.journal {
        let mut undo = vec!["revert".to_string()];
        undo.extend(args.state.args());
        undo.push(j.display().to_string());
        let undo: Vec<&str> = undo.iter().map(String::as_str).collect();
        super::out(&format!(
            "applied {} change(s); undo with `{}`\n",
            done.written,
            how.command(&undo)
        ));
    }
    Ok(())
}

pub fn revert(root: &SysRoot, args: RevertArgs) -> anyhow::Result<()> {
    let store = args.state.store(root);
    let machine = read_machine(root)?;
    let path = applier::revert(
        root,
        &store,
        args.journal.as_deref(),
        &machine.host,
        args.force,
        &mut std::io::stdout(),
    )?;
    super::out(&format!("reverted {}\n", path.display()));
    Ok(())
}
