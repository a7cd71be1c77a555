//! `record`: a profiling session with a report.

use std::time::Duration;

use anyhow::Context as _;
use irq_user::{
    probes::{Group, ProbeOptions},
    report, session,
};

#[derive(clap::Args)]
pub struct RecordArgs {
    /// How long to record, in seconds.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
    duration: u64,
    /// Record only these CPUs (a CPU list such as 0-3,8).
    #[arg(long, value_parser = super::parse_cpus)]
    cpus: Option<super::CpuList>,
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
    /// Also write the profile (JSON) here; `irqtune report` turns it into other formats.
    #[arg(short, long, value_name = "PROFILE.json")]
    output: Option<std::path::PathBuf>,
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed here,
/// before anything is loaded, so a signal that arrives while the probes attach is not lost to
/// the default action (which would end the process without a report).
pub fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Records `secs` with the default probes until `stop` completes; the profile and whether
/// it was cut short (shared by `plan --duration` and `tune`).
pub async fn measure(
    secs: u64,
    flow_sample: u32,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<(irq_user::profile::Profile, bool)> {
    let opts = ProbeOptions {
        flow_sample,
        ..ProbeOptions::default()
    };
    let session = session::record(&opts, Duration::from_secs(secs), stop).await?;
    Ok((session.profile(), session.interrupted))
}

pub async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let mut skip = Vec::new();
    if args.no_flows {
        skip.push(Group::Flows);
    }
    let opts = ProbeOptions {
        cpus: args.cpus.map(|c| c.0),
        skip,
        flow_sample: args.flow_sample,
        force_classic: args.classic,
        kernel_log: args.kernel_log,
    };
    let stop = stop_signal()?;
    let session = session::record(&opts, Duration::from_secs(args.duration), stop).await?;
    if session.interrupted {
        eprintln!(
            "stopped early; reporting the {:.1} s recorded",
            session.duration_ns as f64 / 1e9
        );
    }
    let profile = session.profile();
    if let Some(path) = &args.output {
        super::write_atomically(path, profile.to_json().as_bytes())
            .with_context(|| format!("writing the profile to {}", path.display()))?;
        eprintln!("profile written to {}", path.display());
    }
    print!("{}", report::text::render(&profile));
    Ok(())
}
