//! `tune`: measure, plan, apply (journaled), measure again, keep or roll back.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use irq_user::{
    cpulist,
    profile::Profile,
    steering::{
        applier::{self, ApplyOptions},
        planner::{self, Load, PlanOptions},
        verdict::{compare, worth_changing, Measures},
    },
    sysroot::SysRoot,
};

use super::{
    steer::{read_machine, StateDir},
    BadInput,
};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Tune only this interface (repeatable); default: every NIC with queue interrupts.
    #[arg(long = "iface")]
    ifaces: Vec<String>,
    /// Seconds of each measurement (before and after).
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Measure and plan, show the diff, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep the change even when a measure is clearly worse afterwards.
    #[arg(long)]
    keep_if_worse: bool,
    /// Use only these CPUs.
    #[arg(long, value_parser = super::parse_cpus)]
    cpus: Option<super::CpuList>,
    /// Apply even if irqbalance runs (see `irqtune apply --force`).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    state: StateDir,
    /// Milliseconds to wait after each write of the apply step.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
}

/// With --iface, the addresses of those interfaces: flows are judged only if they arrive on
/// them (their local address is one of these, or a wildcard).
fn iface_filter(ifaces: &[String]) -> Option<Vec<std::net::IpAddr>> {
    if ifaces.is_empty() {
        return None;
    }
    let all = irq_user::netns::iface_addrs();
    log::info!("interface addresses: {all:?}");
    Some(
        ifaces
            .iter()
            .flat_map(|i| all.get(i).cloned().unwrap_or_default())
            .collect(),
    )
}

fn only_their_flows(mut p: Profile, addrs: &Option<Vec<std::net::IpAddr>>) -> Profile {
    if let Some(addrs) = addrs {
        p.flows.retain(|f| {
            f.local
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().is_unspecified() || addrs.contains(&a.ip()))
                .unwrap_or(true)
        });
        p.findings = irq_user::findings::find(&p);
    }
    p
}

fn stopped(flag: &Arc<AtomicBool>) -> impl std::future::Future<Output = ()> {
    let flag = Arc::clone(flag);
    async move {
        while !flag.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn tune(root: &SysRoot, args: TuneArgs) -> anyhow::Result<()> {
    if !root.is_live() {
        return Err(BadInput(anyhow::anyhow!(
            "tune measures and changes this machine: it does not work with --root"
        ))
        .into());
    }
    // One flag for the whole run: a signal ends a measurement early or stops the apply
    // between writes; what follows decides which state the machine is left in.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let secs = args.duration;

    eprintln!("tune 1/5: measuring {secs} s before any change ...");
    let (before, interrupted) = super::record::measure(secs, 1, stopped(&stop)).await?;
    if interrupted {
        anyhow::bail!("interrupted while measuring; nothing was changed");
    }
    let addrs = iface_filter(&args.ifaces);
    let before = only_their_flows(before, &addrs);
    let machine = read_machine(root)?;
    let mut cpus = machine.topology.housekeeping();
    if let Some(only) = &args.cpus {
        cpus.retain(|c| only.0.contains(c));
    }
    let mb = Measures::from_profile(&before, &cpus);
    println!("Findings before:");
    for f in &before.findings {
        println!(
            "  [{:?}] {}\n      evidence: {}",
            f.severity, f.title, f.evidence
        );
    }
    if before.findings.is_empty() {
        println!("  none");
    }
    let Some(why) = worth_changing(&mb) else {
        println!(
            "\nNo change: nothing measured is outside noise (busiest flows {:.1}% mismatched, NET_RX imbalance {:.2}, no softnet drops or squeezes).",
            mb.mismatch * 100.0,
            mb.imbalance
        );
        return Ok(());
    };

    eprintln!("tune 2/5: planning ...");
    let opts = PlanOptions {
        ifaces: args.ifaces.clone(),
        cpus: args.cpus.as_ref().map(|c| c.0.clone()),
        ..PlanOptions::default()
    };
    let load = Load::from_profile(&before, &format!("tune's {secs} s measurement"));
    let plan = planner::plan(&machine, &load, &opts, irq_user::snapshot::unix_ms() / 1000)
        .map_err(|e| BadInput(e.into()))?;
    println!(
        "\nWhy change: {why}\nPlan ({} change(s)) on CPUs {}:",
        plan.changes.len(),
        cpulist::format(&cpus)
    );
    print!("{}", plan.diff());
    if plan.changes.is_empty() {
        println!(
            "Nothing to change: the steering already matches the policy for what was measured."
        );
        return Ok(());
    }
    if args.dry_run {
        println!("Dry run: nothing applied.");
        return Ok(());
    }

    eprintln!("tune 3/5: applying (journaled) ...");
    let store = args.state.store(root);
    let apply_opts = ApplyOptions {
        force: args.force,
        stop: Some(Arc::clone(&stop)),
        pause: Duration::from_millis(args.pause_ms),
        ..ApplyOptions::default()
    };
    let applied = applier::apply(
        root,
        &machine,
        &plan,
        "irqtune tune",
        &store,
        &apply_opts,
        &mut std::io::stdout(),
    )?;
    let journal = applied
        .journal
        .context("the plan had changes but nothing was journaled")?;

    eprintln!("tune 4/5: measuring {secs} s after the change ...");
    let measured = super::record::measure(secs, 1, stopped(&stop)).await;
    let (after, interrupted) = match measured {
        Ok(m) => m,
        Err(e) => {
            applier::revert(root, &store, Some(&journal), &mut std::io::stdout())?;
            return Err(e.context("the second measurement failed; the change was reverted"));
        }
    };
    if interrupted {
        applier::revert(root, &store, Some(&journal), &mut std::io::stdout())?;
        anyhow::bail!("interrupted during the second measurement; the change was reverted (the before state is back)");
    }

    let after = only_their_flows(after, &addrs);
    eprintln!("tune 5/5: comparing ...");
    let ma = Measures::from_profile(&after, &cpus);
    let v = compare(&mb, &ma);
    println!("\nBefore and after ({secs} s each):");
    print!("{}", v.table());
    if !v.keep() && !args.keep_if_worse {
        applier::revert(root, &store, Some(&journal), &mut std::io::stdout())?;
        println!(
            "Verdict: WORSE ({}); rolled back to the before state.",
            v.worse.join("; ")
        );
        return Ok(());
    }
    let verdict = if !v.keep() {
        format!(
            "WORSE ({}), kept because of --keep-if-worse",
            v.worse.join("; ")
        )
    } else if v.better.is_empty() {
        "no measure clearly worse; kept".to_string()
    } else {
        format!("BETTER ({}); kept", v.better.join("; "))
    };
    println!(
        "Verdict: {verdict}. Undo with `irqtune revert {}`.",
        journal.display()
    );
    Ok(())
}
