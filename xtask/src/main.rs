//! Project tasks: `cargo xtask setup | test | run | bench | dist | fixture`.
//!
//! `setup` installs every missing piece the build and the tests need, checking each one on its
//! own, so it is quick when all is there and complete on a bare machine.

mod bench;
mod dist;
mod effect;
mod fuzz;
mod kernels;
mod licenses;
mod setup;
#[cfg(test)]
mod structure;
mod workload;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: the toolchain pieces, LLVM 22 and bpf-linker that building
    /// and running need; with --tests also what the tests and benchmarks use.
    Setup {
        /// Also the test and benchmark tools (promtool, chromium, bpftool, libbpf-tools, ...).
        #[arg(long)]
        tests: bool,
    },
    /// Set up, then run every test: the fast tier (format, lints, licenses, tests without
    /// root), `dist`, and the kernel tests (as root, one at a time), including the kernel
    /// matrix (each kernel of tests/kernels.txt booted in QEMU) and the package's install
    /// test (on an overlay root). Without root it fails: use --unit.
    Test {
        /// Only the fast tier: no root needed, minutes from a warm build.
        #[arg(long)]
        unit: bool,
        /// Only the compatibility suite in this kernel of the matrix (e.g. 6.1), booted in QEMU.
        #[arg(long, value_name = "SHORT", conflicts_with = "unit")]
        kernel: Option<String>,
        /// Extra arguments for the kernel test run (e.g. a test name filter).
        args: Vec<String>,
    },
    /// Set up, build, and run `irqtune ARGS` as root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the release binary and the Debian package (target/dist/irqtune_VERSION_ARCH.deb):
    /// /usr/bin/irqtune, man pages, bash/zsh/fish completions, the systemd unit (not
    /// enabled), the Prometheus and Grafana files under /usr/share/irqtune.
    Dist,
    /// Set up, then measure the probes' cost per event next to libbpf-tools.
    Bench(bench::BenchArgs),
    /// Run every fuzz target (cargo-fuzz on nightly) for --seconds each, growing its corpus.
    Fuzz(fuzz::FuzzArgs),
    /// Check the licenses of every package irqtune is built from.
    Licenses,
    /// Write a machine-shaped /proc and /sys tree (seed-4cpu, two-socket, server-64cpu,
    /// server-256cpu, vm)
    /// to DIR, for trying `irqtune --root DIR show|plan|report`.
    Fixture {
        name: String,
        dir: std::path::PathBuf,
    },
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, streaming its output, and fails naming it.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Builds irqtune (release) and returns its path.
pub fn build_irqtune() -> anyhow::Result<std::path::PathBuf> {
    run(cargo().args(["build", "--release", "-p", "irq-user", "--bin", "irqtune"]))?;
    Ok(workspace_root().join("target/release/irqtune"))
}

/// The fast tier: formatting, lints with warnings denied, licenses, and every test that
/// needs no root (minutes from a warm build).
fn unit_tier() -> anyhow::Result<()> {
    println!("== fast tier: format, lints, licenses, tests without root");
    run(cargo().args(["fmt", "--all", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found warnings")?;
    licenses::check()?;
    // irq-ebpf's binary is the probes (built for BPF by irq-user's build script), so only its
    // library is tested on the host; `--lib` would apply to every -p of one command, so
    // irq-user (library, binary, tests on fixture trees) and the rest get their own.
    run(cargo().args(["test", "-p", "irq-ebpf", "--lib"]))?;
    run(cargo().args([
        "test",
        "-p",
        "irq-user",
        "-p",
        "irqtune-test-support",
        "-p",
        "irqtune-testbed",
        "-p",
        "xtask",
    ]))
}

fn test(unit_only: bool, kernel: Option<&str>, extra: &[String]) -> anyhow::Result<()> {
    setup::setup(setup::Needs::Tests)?;
    if let Some(short) = kernel {
        if !kernels::matrix().iter().any(|k| k.short == short) {
            let shorts: Vec<String> = kernels::matrix().into_iter().map(|k| k.short).collect();
            bail!(
                "no kernel {short} in tests/kernels.txt (there: {})",
                shorts.join(", ")
            );
        }
        let bin = build_irqtune()?;
        let test = format!("kernel_{}", short.replace(['.', '-'], "_"));
        return run(cargo()
            .args([
                "test",
                "--release",
                "-p",
                "irqtune-tests",
                "--test",
                "kernels",
                "--",
            ])
            .args(["--test-threads=1", "--exact", &test])
            .env("IRQTUNE_BIN", &bin));
    }
    if !unit_only && !is_root() {
        bail!("the full test run loads eBPF and creates network namespaces: run it as root (sudo cargo xtask test), or run the fast tier alone with `cargo xtask test --unit`");
    }
    unit_tier()?;
    if unit_only {
        return Ok(());
    }
    println!("== the Debian package (its install test is a kernel test)");
    let deb = dist::dist()?;
    let bin = build_irqtune()?;
    println!("== kernel tests (one at a time: they share the kernel's state)");
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "irqtune-tests",
        "--",
        "--test-threads=1",
    ])
    .args(extra)
    .env("IRQTUNE_BIN", &bin)
    .env("IRQTUNE_DEB", &deb);
    run(&mut cmd)
}

fn run_irqtune(args: &[String]) -> anyhow::Result<()> {
    setup::setup(setup::Needs::Build)?;
    let bin = build_irqtune()?;
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else {
        eprintln!("irqtune needs root to load eBPF; running it with sudo");
        let mut c = Command::new("sudo");
        c.arg(&bin);
        c
    };
    run(cmd.args(args))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup { tests } => setup::setup(if tests {
            setup::Needs::Tests
        } else {
            setup::Needs::Build
        }),
        Task::Test { unit, kernel, args } => test(unit, kernel.as_deref(), &args),
        Task::Run { args } => run_irqtune(&args),
        Task::Bench(args) => bench::bench(&args),
        Task::Fuzz(args) => fuzz::fuzz(&args),
        Task::Licenses => licenses::check(),
        Task::Dist => dist::dist().map(|_| ()),
        Task::Fixture { name, dir } => setup::setup(setup::Needs::Build).and_then(|()| {
            run(cargo()
                .args([
                    "run",
                    "--quiet",
                    "-p",
                    "irqtune-test-support",
                    "--bin",
                    "fixture",
                    "--",
                ])
                .arg(&name)
                .arg(&dir))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
