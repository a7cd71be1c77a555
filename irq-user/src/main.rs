//! `irqtune`: finds and fixes interrupt and softirq bottlenecks.

mod cmd;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use irq_user::{system::netns, system::sysroot::SysRoot};

#[derive(Parser)]
#[command(
    name = "irqtune",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("IRQTUNE_GIT_REV"), ")"),
    about = "Find and fix interrupt and softirq bottlenecks",
    long_about = "Find and fix interrupt and softirq bottlenecks: measure per-CPU hardirq and softirq \
        handler time, softirq queueing delay, NET_RX load and which CPU reads each flow, with eBPF \
        probes; report it; plan IRQ affinity, RPS, RFS and XPS from it, apply the plan journaled \
        and checked, and revert it.",
    after_long_help = EXIT_STATUS
)]
struct Cli {
    /// Read and write /proc and /sys below DIR instead of / (a captured tree, e.g. a sosreport).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<std::path::PathBuf>,
    /// Network devices of this network namespace (a name under /var/run/netns); global
    /// settings such as rps_sock_flow_entries stay the host's.
    #[arg(long, global = true, value_name = "NAME")]
    netns: Option<String>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The exit codes (cmd/mod.rs), for --help and the man page.
const EXIT_STATUS: &str = "Exit status:
  0  done
  1  failed (anything written was rolled back)
  2  bad input (malformed file, unknown CPU or interface; nothing was done)
  3  refused (plan or journal for another host, boot or root, stale plan, irqbalance running, another apply holds the lock, a state directory others can write; nothing was written)
  4  incomplete (record: a probe family could not attach by any method; the report and profile were written and say what was not measured)";

#[derive(Subcommand)]
enum Command {
    /// Profile hardirqs, softirqs, NET_RX and flows for a while, then print a report.
    Record(cmd::record::RecordArgs),
    /// Turn a profile into text, JSON, CSV, HTML, Prometheus or HdrHistogram log.
    Report(cmd::report::ReportArgs),
    /// Measure, plan, apply, measure again; keep the change if it helped, else roll back.
    Tune(cmd::tune::TuneArgs),
    /// Run continuously and serve Prometheus metrics (for fleets: low overhead, always on).
    Watch(cmd::watch::WatchArgs),
    /// Show IRQs, NIC queues and their steering, irqbalance and the CPU topology.
    Show(cmd::steer::ShowArgs),
    /// Plan IRQ affinity, RPS, RFS and XPS from measured load; print the diff, save the plan.
    Plan(cmd::steer::PlanArgs),
    /// Apply a plan: journaled, checked after each write, rolled back on any failure.
    Apply(cmd::steer::ApplyArgs),
    /// Put back the values an apply changed, from its journal.
    Revert(cmd::steer::RevertArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (irqtune.8 and one per subcommand, irqtune-record.8, ...) into DIR.
    #[command(hide = true)]
    Manpages { dir: std::path::PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .init();
    if let Some(ns) = &cli.netns {
        // Before any thread exists: it unshares the mount namespace.
        if let Err(e) = netns::use_netns_devices(ns) {
            cmd::err(&format!("irqtune: {e}\n"));
            return ExitCode::from(cmd::EXIT_BAD_INPUT);
        }
    }
    if let (Some(dir), Command::Record(_) | Command::Watch(_)) = (&cli.root, &cli.command) {
        cmd::err(&format!(
            "irqtune: --root {} reads a captured tree, but record and watch load probes into this machine's kernel and measure it; drop --root (for a tree's counts since boot: irqtune --root {} report)\n",
            dir.display(),
            dir.display()
        ));
        return ExitCode::from(cmd::EXIT_BAD_INPUT);
    }
    let root = SysRoot::new(cli.root.clone().unwrap_or_else(|| "/".into()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            cmd::err(&format!("irqtune: cannot start the runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    let how = cmd::Invocation {
        root: cli.root.clone(),
        netns: cli.netns.clone(),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Record(args) => cmd::record::record(args).await.context("record"),
            Command::Report(args) => cmd::report::report(&root, args).context("report"),
            Command::Tune(args) => cmd::tune::tune(&root, &how, args).await.context("tune"),
            Command::Watch(args) => cmd::watch::watch(args).await.context("watch"),
            Command::Show(args) => cmd::steer::show(&root, args).context("show"),
            Command::Plan(args) => cmd::steer::plan(&root, args).await.context("plan"),
            Command::Apply(args) => cmd::steer::apply(&root, &how, args).context("apply"),
            Command::Revert(args) => cmd::steer::revert(&root, args).context("revert"),
            Command::Completions { shell } => {
                use clap::CommandFactory as _;
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "irqtune", &mut script);
                cmd::out(&String::from_utf8_lossy(&script));
                Ok(())
            }
            Command::Manpages { dir } => {
                use clap::CommandFactory as _;
                cmd::manpages::write(Cli::command(), &dir)
                    .with_context(|| format!("writing the man pages into {}", dir.display()))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cmd::err(&format!("irqtune: {}\n", cmd::message(&e)));
            ExitCode::from(cmd::exit_code(&e))
        }
    }
}
