//! The bootstrap: each piece is checked on its own and installed only when missing. What
//! building and running irqtune need ([`Needs::Build`]) is kept apart from what only the
//! tests and benchmarks use, so a user who wants a profile gets nothing else.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _};

use crate::{is_root, run};

/// The toolchain that builds irqtune and its probes, from rust-toolchain.toml (the one place
/// it is named; irq-user/build.rs reads it too): its LLVM must match the one bpf-linker
/// links against.
pub static EBPF_TOOLCHAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../rust-toolchain.toml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("rust-toolchain.toml names a channel")
});
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Makes the Debian package (`cargo xtask dist`).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Debian packages bpf-linker is built against: LLVM 22 and the libraries it links.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// Debian packages the tests and benchmarks use: iproute2 for the kernel tests' namespaces,
/// bpftool and libbpf-tools for the benchmarks' measurements and peers, sockperf and iperf3
/// as the workload benchmark's load generators (util-linux for taskset), and the real
/// consumers the report formats are tested with: promtool (prometheus), headless chromium,
/// a JSON Schema validator (python3-jsonschema), systemd-analyze (systemd) for the unit,
/// man-db for the package's install test (`man -w irqtune`), ethtool for the guest tests'
/// NIC scenarios (channels, rings) and as the second opinion on what irqtune reads.
/// The kernel matrix's QEMU and kernels are in [`crate::kernels`].
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "libbpf-tools",
    "sockperf",
    "iperf3",
    "util-linux",
    "prometheus",
    "chromium",
    "python3-jsonschema",
    "systemd",
    "man-db",
    "ethtool",
];

/// Debian packages `cargo xtask dist` uses besides cargo-deb: dpkg-shlibdeps (dpkg-dev)
/// for the package's library dependencies, gzip for the man pages.
const DIST_PACKAGES: &[&str] = &["dpkg-dev", "gzip"];

/// What is being set up for; each includes the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// Building and running irqtune (`cargo xtask run`).
    Build,
    /// That, and making the Debian package (`cargo xtask dist`).
    Dist,
    /// That, and everything the tests and benchmarks use (the package's install test too).
    Tests,
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin").join(name)
}

pub fn step(what: &str, present: bool) -> bool {
    println!(
        "setup: {what}: {}",
        if present {
            "present"
        } else {
            "missing, installing"
        }
    );
    present
}

fn toolchain() -> anyhow::Result<()> {
    let tc = EBPF_TOOLCHAIN.as_str();
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup not found: install Rust with rustup first")?
        .lines()
        .any(|l| l.starts_with(tc) || l.starts_with(&format!("{tc}-")));
    if !step(&format!("Rust toolchain {tc}"), installed) {
        run(Command::new("rustup").args(["toolchain", "install", tc, "--profile", "minimal"]))?;
    }
    let sysroot = output(Command::new("rustup").args(["run", tc, "rustc", "--print", "sysroot"]))
        .context("cannot ask the toolchain for its sysroot")?;
    let core_src =
        PathBuf::from(sysroot.trim()).join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !step(&format!("rust-src for {tc}"), core_src.is_file()) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", tc]))?;
    }
    Ok(())
}

pub fn apt(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if !step(
        &format!("Debian packages {}", packages.join(" ")),
        missing.is_empty(),
    ) {
        if !is_root() {
            bail!(
                "missing Debian packages; as root run: apt-get update && apt-get install -y {}",
                missing.join(" ")
            );
        }
        println!("setup: installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

/// The Rust target of the packaged, static binary.
fn musl_target() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup not found: install Rust with rustup first")?;
    if !step(
        &format!("Rust target {}", crate::dist::TARGET),
        installed.lines().any(|l| l.trim() == crate::dist::TARGET),
    ) {
        run(Command::new("rustup").args(["target", "add", crate::dist::TARGET]))?;
    }
    Ok(())
}

fn cargo_deb() -> anyhow::Result<()> {
    let version = output(Command::new(cargo_bin("cargo-deb")).arg("--version")).unwrap_or_default();
    if !step(
        &format!("cargo-deb {CARGO_DEB_VERSION}"),
        version.contains(CARGO_DEB_VERSION),
    ) {
        run(Command::new("cargo").args([
            "install",
            "cargo-deb",
            "--version",
            CARGO_DEB_VERSION,
            "--locked",
            "--force",
        ]))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let bin = cargo_bin("bpf-linker");
    let version = output(Command::new(&bin).arg("--version")).unwrap_or_default();
    if !step(
        &format!("bpf-linker {BPF_LINKER_VERSION}"),
        version.contains(BPF_LINKER_VERSION),
    ) {
        // Without LLVM_PREFIX the build looks for libLLVM in /usr and fails to link.
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
                "--force",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
    }
    Ok(())
}

pub fn setup(needs: Needs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    toolchain()?;
    apt(BUILD_PACKAGES)?;
    bpf_linker()?;
    if needs >= Needs::Dist {
        apt(DIST_PACKAGES)?;
        musl_target()?;
        cargo_deb()?;
    }
    if needs >= Needs::Tests {
        apt(TEST_PACKAGES)?;
        crate::kernels::setup()?;
    }
    println!("setup: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
