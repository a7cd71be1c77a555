//! `cargo xtask fuzz`: runs every fuzz target (fuzz/fuzz_targets, bodies in
//! test-support/src/fuzz.rs) with cargo-fuzz (libFuzzer) for the given time, growing its corpus
//! under fuzz/corpus/TARGET. cargo-fuzz needs a nightly toolchain; both are installed when
//! missing. A crash leaves its input in fuzz/artifacts/TARGET and fails the task: fix the
//! bug, then add the input to the corpus, where `cargo test` replays it ever after.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use crate::{run, setup, workspace_root};

/// The toolchain cargo-fuzz builds with (sanitizers and coverage need a nightly).
const NIGHTLY: &str = "nightly";

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only these targets (repeatable); default: all.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Targets run at once (each takes a core).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// Cargo of the nightly toolchain, through rustup: `cargo +nightly` works only through
/// rustup's proxy, and xtask runs under the toolchain's own cargo (`$CARGO`).
fn nightly_cargo(dir: &std::path::Path) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", NIGHTLY, "cargo"]).current_dir(dir);
    c
}

fn tools() -> anyhow::Result<()> {
    let have_nightly = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !setup::step("a nightly toolchain for cargo-fuzz", have_nightly) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let have_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !setup::step("cargo-fuzz", have_fuzz) {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// The targets: the files in fuzz/fuzz_targets.
fn all_targets() -> anyhow::Result<Vec<String>> {
    let dir = workspace_root().join("fuzz/fuzz_targets");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_string)
        })
        .collect();
    v.sort();
    Ok(v)
}

pub fn fuzz(args: &FuzzArgs) -> anyhow::Result<()> {
    setup::setup(setup::Needs::Build)?;
    tools()?;
    let targets = if args.targets.is_empty() {
        all_targets()?
    } else {
        args.targets.clone()
    };
    let fuzz_dir = workspace_root().join("fuzz");
    // Build once, then run the targets `jobs` at a time.
    run(nightly_cargo(&fuzz_dir).args(["fuzz", "build", "-O"]))?;
    let mut failed = Vec::new();
    for batch in targets.chunks(args.jobs.max(1)) {
        let mut children = Vec::new();
        for t in batch {
            let corpus = fuzz_dir.join("corpus").join(t);
            std::fs::create_dir_all(&corpus)?;
            println!("fuzz: {t} for {} s ...", args.seconds);
            let child = nightly_cargo(&fuzz_dir)
                .args(["fuzz", "run", "-O", t])
                .arg(&corpus)
                .arg("--")
                .arg(format!("-max_total_time={}", args.seconds))
                .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
                .spawn()
                .with_context(|| format!("starting cargo fuzz run {t}"))?;
            children.push((t.clone(), child));
        }
        for (t, mut c) in children {
            if !c.wait()?.success() {
                failed.push(t);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets found crashes: {} (inputs in fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    Ok(())
}
