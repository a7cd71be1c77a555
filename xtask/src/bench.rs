//! Benchmarks (filled in below).

#[derive(clap::Args)]
pub struct BenchArgs {}

pub fn bench(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
