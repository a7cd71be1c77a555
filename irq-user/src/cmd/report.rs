//! `report`: a profile (or, without one, the /proc counts below --root) in any format.

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use irq_user::{
    render::{self, Format},
    system::{files, session, sysroot::SysRoot},
};

use super::BadInput;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A profile from `irqtune record --output`. Without it, the report covers the counts
    /// since boot in /proc (of --root DIR: a captured tree works).
    profile: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// prometheus: histograms per softirq vector and CPU and per IRQ and CPU, not only per
    /// vector and per IRQ (series grow as CPUs x vectors x buckets).
    #[arg(long)]
    per_cpu_histograms: bool,
}

pub fn report(root: &SysRoot, args: ReportArgs) -> anyhow::Result<()> {
    let profile = match &args.profile {
        Some(path) => files::load_profile(path).map_err(|e| BadInput(e.into()))?,
        None => session::since_boot(root)?,
    };
    if args.per_cpu_histograms && args.format != Format::Prometheus {
        return Err(BadInput(anyhow::anyhow!(
            "--per-cpu-histograms shapes the prometheus format only; add --format prometheus"
        ))
        .into());
    }
    let opts = render::Options {
        per_cpu_histograms: args.per_cpu_histograms,
    };
    let data = render::render(&profile, args.format, opts);
    match &args.output {
        Some(path) => files::write_output(path, &data)
            .with_context(|| format!("writing {}", path.display()))?,
        // A reader that went away (`| head`) has what it wanted.
        None => {
            let _ = std::io::stdout().lock().write_all(&data);
        }
    }
    Ok(())
}
