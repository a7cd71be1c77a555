//! `irqtune manpages DIR` (hidden; `cargo xtask dist` runs it): section 8 man pages from the
//! clap definitions, so they never drift from `--help`: irqtune(8) and irqtune-SUBCOMMAND(8).

use std::{fs, path::Path};

/// Writes irqtune.8 and one page per visible subcommand (irqtune-record.8, ...) into `dir`.
pub fn write(cli: clap::Command, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let cli = cli.disable_help_subcommand(true);
    page(&cli, &dir.join("irqtune.8"))?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("irqtune-{}", sub.get_name());
        // Titled irqtune-record(8), used as `irqtune record` in its synopsis.
        let bin = format!("irqtune {}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .display_name(name.clone())
            .bin_name(bin);
        page(&sub, &dir.join(format!("{name}.8")))?;
    }
    Ok(())
}

fn page(cmd: &clap::Command, path: &Path) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("irqtune")
        .source(format!("irqtune {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)?;
    fs::write(path, out)?;
    Ok(())
}
