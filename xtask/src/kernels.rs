//! The kernel matrix's set-up: QEMU, virtme-ng (in a venv), and each kernel of
//! tests/kernels.txt from Debian's archive by package name. Downloads are cached in
//! ~/.cache/irqtune; kernels are extracted under /tmp/irqtune-kernels (a guest mounts the
//! host's root over 9p and finds its modules in /lib/modules, where they are installed).
//! Each piece is checked on its own and fetched only when missing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{is_root, run, setup};

/// What booting a kernel in QEMU takes (vng drives qemu; busybox builds its initramfs).
const QEMU_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "kmod",
    "busybox-static",
    "python3-venv",
    "xz-utils",
];
const VIRTME_NG_VERSION: &str = "1.42";
/// Where the tests look for the kernels (tests/tests/kernels.rs).
pub const KERNEL_DIR: &str = "/tmp/irqtune-kernels";
const MIRROR: &str = "http://deb.debian.org/debian";

pub use irqtune_testbed::matrix::{matrix, Kernel};

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/irqtune")
}

pub fn vng() -> PathBuf {
    cache().join("venv/bin/vng")
}

fn virtme_ng() -> anyhow::Result<()> {
    let version = Command::new(vng())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if setup::step(
        &format!("virtme-ng {VIRTME_NG_VERSION}"),
        version.contains(VIRTME_NG_VERSION),
    ) {
        return Ok(());
    }
    let venv = cache().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("virtme-ng=={VIRTME_NG_VERSION}"),
    ]))
}

/// The kernel's version as its modules directory names it, once extracted.
fn extracted_version(dir: &Path) -> Option<String> {
    ["lib/modules", "usr/lib/modules"].iter().find_map(|m| {
        fs::read_dir(dir.join(m))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
    })
}

fn has_image(dir: &Path) -> bool {
    irqtune_testbed::matrix::image(dir).is_some()
}

/// `apt-get download` of one package with a private configuration: the matrix's suites,
/// nothing of the host's apt state touched.
fn download(package: &str, debs: &Path) -> anyhow::Result<PathBuf> {
    let found = |debs: &Path| {
        fs::read_dir(debs).ok().and_then(|d| {
            d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
            })
        })
    };
    if let Some(deb) = found(debs) {
        return Ok(deb);
    }
    let apt = cache().join("apt");
    let lists = apt.join("lists");
    fs::create_dir_all(lists.join("partial"))?;
    fs::create_dir_all(apt.join("cache/archives/partial"))?;
    fs::create_dir_all(debs)?;
    let mut sources = String::new();
    let mut suites: Vec<(String, bool)> = matrix()
        .into_iter()
        .map(|k| (k.suite.clone(), k.is_backports()))
        .collect();
    suites.sort();
    suites.dedup();
    for (s, backports) in &suites {
        sources.push_str(&format!("deb [trusted=yes] {MIRROR} {s} main\n"));
        // A backports suite has no security suite of its own.
        if !backports {
            sources.push_str(&format!(
                "deb [trusted=yes] {MIRROR}-security {s}-security main\n"
            ));
        }
    }
    let list = apt.join("sources.list");
    fs::write(&list, sources)?;
    let opts = |c: &mut Command| {
        c.arg("-o")
            .arg(format!("Dir::Etc::sourcelist={}", list.display()))
            .args(["-o", "Dir::Etc::sourceparts=-"])
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", lists.display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()))
            .args([
                "-o",
                "APT::Get::List-Cleanup=0",
                "-o",
                "APT::Sandbox::User=root",
                "-q",
            ]);
    };
    let mut update = Command::new("apt-get");
    opts(&mut update);
    run(update.arg("update"))?;
    let mut get = Command::new("apt-get");
    opts(&mut get);
    run(get.arg("download").arg(package).current_dir(debs))?;
    found(debs).with_context(|| format!("apt-get download {package} left no .deb"))
}

/// Downloads, extracts and installs the modules of one kernel.
fn kernel(k: &Kernel) -> anyhow::Result<()> {
    let dir = Path::new(KERNEL_DIR).join(&k.short);
    let installed = extracted_version(&dir).is_some_and(|v| {
        Path::new("/lib/modules")
            .join(v)
            .join("modules.dep")
            .is_file()
    });
    if setup::step(
        &format!("kernel {} ({})", k.short, k.package_list()),
        has_image(&dir) && installed,
    ) {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "installing the kernel modules of {} needs root",
            k.package_list()
        );
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    for package in &k.packages {
        let deb = download(package, &cache().join("debs"))?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    }
    let version =
        extracted_version(&dir).with_context(|| format!("{} has no modules", k.package_list()))?;
    let from = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&version))
        .find(|p| p.is_dir())
        .context("modules directory")?;
    fs::create_dir_all("/lib/modules")?;
    let to = Path::new("/lib/modules").join(&version);
    let _ = fs::remove_dir_all(&to);
    run(Command::new("cp").arg("-a").arg(&from).arg(&to))?;
    // virtme-ng's initramfs loads the root file system's modules with busybox, which cannot
    // read compressed ones (Debian 13 ships .ko.xz): those few are decompressed.
    for m in INITRAMFS_MODULES {
        let xz = to.join("kernel").join(format!("{m}.ko.xz"));
        if xz.is_file() {
            run(Command::new("unxz").arg("-f").arg(&xz))?;
        }
    }
    run(Command::new("depmod").arg(&version))
}

/// The modules virtme-ng's initramfs loads to mount the host's root (9p) and its overlays.
const INITRAMFS_MODULES: &[&str] = &[
    "fs/netfs/netfs",
    "fs/9p/9p",
    "net/9p/9pnet",
    "net/9p/9pnet_virtio",
    "fs/overlayfs/overlay",
];

/// Everything the kernel matrix needs.
pub fn setup() -> anyhow::Result<()> {
    setup::apt(QEMU_PACKAGES)?;
    virtme_ng()?;
    for k in matrix() {
        kernel(&k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_file_parses() {
        let m = matrix();
        assert!(m.len() >= 2);
        for k in &m {
            assert!(
                k.packages
                    .iter()
                    .any(|p| p.starts_with("linux-image-") || p.starts_with("linux-binary-")),
                "{:?}",
                k.packages
            );
            let base = k.suite.trim_end_matches("-backports");
            assert!(
                ["bullseye", "bookworm", "trixie"].contains(&base),
                "{}",
                k.suite
            );
        }
    }
}
