//! `record`: a profiling session with a report.

use std::time::Duration;

use anyhow::Context as _;
use irq_user::{
    model::finding::FindingId,
    render,
    system::probes::{Group, ProbeOptions},
    system::stop::Stop,
    system::{files, session},
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
    /// Exit 0 even when a probe family could not attach (the findings still say what is not
    /// measured); without it such a record exits 4.
    #[arg(long)]
    allow_incomplete: bool,
    /// Use classic tracepoints even where BTF tracepoints work.
    #[arg(long)]
    classic: bool,
    /// Percent of the time the probes are attached (a duty cycle: on for this share of every
    /// 2 s). Counts /proc keeps exactly stay exact, the rest is extrapolated and the report
    /// says so; 100 attaches them throughout.
    #[arg(long, default_value_t = DEFAULT_DUTY, value_parser = clap::value_parser!(u32).range(1..=100))]
    duty: u32,
    /// Also the per-packet probe (netif_receive_skb): bytes per device and CPU, at a cost on
    /// every packet received.
    #[arg(long)]
    per_packet: bool,
    /// Also write the profile (JSON) here; `irqtune report` turns it into other formats.
    #[arg(short, long, value_name = "PROFILE.json")]
    output: Option<std::path::PathBuf>,
}

/// `record`'s duty cycle by default, percent: see BENCHMARKS.md for what it costs a
/// small-packet workload against attaching throughout.
pub const DEFAULT_DUTY: u32 = 50;

/// The period of `record`'s duty cycle: short enough that a 10 s recording samples five
/// stretches of it, long enough that attaching and detaching (milliseconds) is negligible.
pub const DUTY_PERIOD: Duration = Duration::from_secs(2);

/// Records `secs` with the default probes attached throughout (a plan wants every event),
/// until done or stopped: the profile, and whether it was cut short (`plan --duration`).
pub async fn measure(
    secs: u64,
    stop: &Stop,
) -> anyhow::Result<(irq_user::model::profile::Profile, bool)> {
    session::record(
        &ProbeOptions::default(),
        None,
        Duration::from_secs(secs),
        stop,
    )
    .await
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
        per_packet: args.per_packet,
    };
    let stop = Stop::on_signals().context("installing the signal handlers")?;
    let (profile, stopped) = session::record(
        &opts,
        session::Duty::percent(args.duty, DUTY_PERIOD),
        Duration::from_secs(args.duration),
        &stop,
    )
    .await?;
    if stopped {
        super::err(&format!(
            "stopped early; reporting the {:.1} s recorded\n",
            profile.duration_secs()
        ));
    }
    if let Some(path) = &args.output {
        files::write_output(path, profile.to_json().as_bytes())
            .with_context(|| format!("writing the profile to {}", path.display()))?;
        super::err(&format!("profile written to {}\n", path.display()));
    }
    super::out(&render::text::render(&profile));
    let missing: Vec<&str> = profile
        .findings
        .iter()
        .filter(|f| f.id == FindingId::MeasurementIncomplete)
        .map(|f| f.title.as_str())
        .collect();
    if !missing.is_empty() && !args.allow_incomplete {
        return Err(super::Incomplete(missing.join("; ")).into());
    }
    Ok(())
}
