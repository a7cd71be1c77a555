//! `irqtune`: finds and fixes interrupt and softirq bottlenecks.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use irq_user::{
    cpulist,
    probes::{Group, ProbeOptions},
    session,
};

#[derive(Parser)]
#[command(
    name = "irqtune",
    version,
    about = "Find and fix interrupt and softirq bottlenecks"
)]
struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Profile hardirqs, softirqs, NET_RX and flows for a while, then print a report.
    Record(RecordArgs),
}

#[derive(clap::Args)]
struct RecordArgs {
    /// How long to record, in seconds.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
    duration: u64,
    /// Record only these CPUs (a CPU list such as 0-3,8).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<Vec<u32>>,
    /// Do not track flows (sockets).
    #[arg(long)]
    no_flows: bool,
    /// Track one socket in N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    flow_sample: u32,
    /// Use classic tracepoints even where BTF tracepoints work.
    #[arg(long)]
    classic: bool,
    /// Print the probes' own diagnostics (aya-log).
    #[arg(long)]
    kernel_log: bool,
}

fn parse_cpus(s: &str) -> Result<Vec<u32>, String> {
    cpulist::parse(s).map_err(|e| e.to_string())
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let mut skip = Vec::new();
    if args.no_flows {
        skip.push(Group::Flows);
    }
    let opts = ProbeOptions {
        cpus: args.cpus,
        skip,
        flow_sample: args.flow_sample,
        force_classic: args.classic,
        kernel_log: args.kernel_log,
    };
    let session = session::record(&opts, Duration::from_secs(args.duration), stop_signal()).await?;
    if session.interrupted {
        eprintln!(
            "stopped early; reporting the {:.1} s recorded",
            session.duration_ns as f64 / 1e9
        );
    }
    print!("{}", session.text_report());
    Ok(())
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("irqtune: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Record(args) => record(args).await.context("record"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("irqtune: {e:#}");
            ExitCode::FAILURE
        }
    }
}
