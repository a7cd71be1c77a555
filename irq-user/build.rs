//! Builds the probes (irq-ebpf's binary) for the BPF target with aya-build; the object is
//! embedded in irqtune with `include_bytes_aligned!`.

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// The probes build with the pinned toolchain of rust-toolchain.toml: its LLVM (22.1) matches
/// the one bpf-linker is built against (`cargo xtask setup`); a nightly with a newer LLVM
/// would not. `-Z build-std=core` needs RUSTC_BOOTSTRAP=1 on stable, which aya-build honours.
const TOOLCHAIN_FILE: &str = include_str!("../rust-toolchain.toml");

/// The `channel = "..."` of rust-toolchain.toml.
fn ebpf_toolchain() -> anyhow::Result<&'static str> {
    TOOLCHAIN_FILE
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"'))
        .ok_or_else(|| anyhow!("no channel in rust-toolchain.toml"))
}

fn main() -> anyhow::Result<()> {
    git_revision();
    println!("cargo:rerun-if-changed=../rust-toolchain.toml");
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .iter()
        .find(|p| p.name.as_str() == "irq-ebpf")
        .ok_or_else(|| anyhow!("irq-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("irq-ebpf manifest has no parent directory"))?;

    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    aya_build::build_ebpf(
        [Package {
            name: "irq-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(ebpf_toolchain()?),
    )
    .context("building the eBPF probes failed; run `cargo xtask setup` to install rust-src and bpf-linker")
}

/// The source's git revision for `irqtune --version` ("unknown" outside a git checkout).
fn git_revision() {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=IRQTUNE_GIT_REV={rev}");
    // A new commit changes HEAD (or the branch it points to).
    for f in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
