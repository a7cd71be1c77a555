//! `report`: a profile (or, without one, the /proc counts below --root) in any format.

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use irq_user::{
    model::machine::Machine,
    model::procfs,
    model::profile::Profile,
    model::tree::Tree as _,
    render::{self, Format},
    system::sysroot::SysRoot,
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
}

fn from_proc(root: &SysRoot) -> anyhow::Result<Profile> {
    let machine = Machine::read(root).context("reading /proc/interrupts")?;
    let interrupts = procfs::read_interrupts(root.root())?;
    let softirqs = procfs::read_softirqs(root.root())?;
    let softnet = procfs::read_softnet(root.root()).unwrap_or_default();
    let uptime_ns = root
        .read_opt("proc/uptime")
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1e9) as u64);
    Ok(Profile::from_proc(
        machine,
        &interrupts,
        &softirqs,
        &softnet,
        uptime_ns,
    ))
}

pub fn report(root: &SysRoot, args: ReportArgs) -> anyhow::Result<()> {
    let profile = match &args.profile {
        Some(path) => Profile::load(path).map_err(|e| BadInput(e.into()))?,
        None => from_proc(root)?,
    };
    let data = render::render(&profile, args.format);
    match &args.output {
        Some(path) => super::write_atomically(path, &data)
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout()
            .write_all(&data)
            .context("writing the report")?,
    }
    Ok(())
}
