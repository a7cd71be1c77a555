//! `cargo xtask dist`: the release binary (the probes embedded, as always) and a Debian
//! package around it, made by cargo-deb from `[package.metadata.deb]` in irq-user/Cargo.toml.
//! The binary is linked statically against musl: a glibc build made here would require the
//! build machine's glibc (2.34 symbols from Debian 12), and Debian 11 has 2.31; the static one
//! runs on every distribution and kernel irqtune supports, and the package depends on nothing.
//! What the package holds besides the binary is generated here from the binary itself, so it
//! cannot drift from it: the man pages (clap_mangen, `irqtune manpages`), the completions
//! (`irqtune completions`), and the systemd unit of deploy/ pointed at /usr/bin/irqtune.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{cargo, run, setup, workspace_root};

/// The binary's target (static, no C library needed on the server).
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Where the generated files are staged (irq-user/Cargo.toml names them from there).
pub const STAGE: &str = "target/dist-stage";

/// The completion scripts: shell, file name, and where Debian's shells look.
pub const COMPLETIONS: [(&str, &str, &str); 3] = [
    ("bash", "irqtune", "usr/share/bash-completion/completions"),
    ("zsh", "_irqtune", "usr/share/zsh/vendor-completions"),
    (
        "fish",
        "irqtune.fish",
        "usr/share/fish/vendor_completions.d",
    ),
];

/// Builds the package; returns the .deb's path (under target/dist).
pub fn dist() -> anyhow::Result<PathBuf> {
    setup::setup(setup::Needs::Dist)?;
    let root = workspace_root();
    run(cargo().args([
        "build",
        "--release",
        "--target",
        TARGET,
        "-p",
        "irq-user",
        "--bin",
        "irqtune",
    ]))?;
    let bin = root.join("target").join(TARGET).join("release/irqtune");
    let stage = root.join(STAGE);
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;

    man_pages(&bin, &stage)?;
    completions(&bin, &stage)?;
    systemd_unit(&root, &stage)?;
    let deb = package(&root)?;
    check(&deb)?;
    println!("dist: {}", deb.display());
    Ok(deb)
}

/// The man pages, from the binary's own clap definitions, gzipped reproducibly.
fn man_pages(bin: &Path, stage: &Path) -> anyhow::Result<()> {
    println!("dist: man pages");
    let man = stage.join("man");
    run(Command::new(bin).arg("manpages").arg(&man))?;
    let mut pages = 0;
    for entry in fs::read_dir(&man)? {
        let path = entry?.path();
        // -n: no name or time stamp in the header, so the package is reproducible.
        run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&path))?;
        pages += 1;
    }
    if pages < 2 {
        bail!(
            "irqtune manpages wrote {pages} page(s) into {}",
            man.display()
        );
    }

    Ok(())
}

/// The shell completions, from the binary.
fn completions(bin: &Path, stage: &Path) -> anyhow::Result<()> {
    println!("dist: completions");
    let comp = stage.join("completions");
    fs::create_dir_all(&comp)?;
    for (shell, file, _) in COMPLETIONS {
        let out = Command::new(bin)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("running {} completions {shell}", bin.display()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "irqtune completions {shell} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::write(comp.join(file), &out.stdout)?;
    }

    Ok(())
}

/// The watch service, pointed at the packaged binary.
fn systemd_unit(root: &Path, stage: &Path) -> anyhow::Result<()> {
    println!("dist: systemd unit");
    let unit = fs::read_to_string(root.join("deploy/irqtune-watch.service"))?;
    if !unit.contains("ExecStart=/usr/local/bin/irqtune ") {
        bail!("deploy/irqtune-watch.service: no `ExecStart=/usr/local/bin/irqtune ` to point at the packaged binary");
    }
    let systemd = stage.join("systemd");
    fs::create_dir_all(&systemd)?;
    // debhelper's naming: PACKAGE.UNIT.service is installed as UNIT.service.
    fs::write(
        systemd.join("irqtune.irqtune-watch.service"),
        unit.replace("/usr/local/bin/irqtune ", "/usr/bin/irqtune "),
    )?;
    // cargo-deb adds the unit's maintainer-script fragments (daemon-reload; not enabled, not
    // started) to the scripts of this directory, and needs it to exist even when empty.
    fs::create_dir_all(stage.join("debian"))?;

    Ok(())
}

/// The Debian package (cargo-deb); returns its path.
fn package(root: &Path) -> anyhow::Result<PathBuf> {
    println!("dist: Debian package");
    let out_dir = root.join("target/dist");
    fs::create_dir_all(&out_dir)?;
    let out = cargo()
        // --target: cargo-deb reads the binary (`target/release/irqtune` in the assets) from
        // target/TARGET/release.
        .args([
            "deb",
            "-p",
            "irq-user",
            "--no-build",
            "--target",
            TARGET,
            "--output",
        ])
        .arg(&out_dir)
        .output()
        .context("running cargo deb")?;
    if !out.status.success() {
        bail!(
            "cargo deb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deb = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo deb did not say where it wrote the package")?;
    Ok(deb)
}

/// The package holds what it must, at the places Debian expects.
fn check(deb: &Path) -> anyhow::Result<()> {
    let out = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(deb)
        .output()
        .context("running dpkg-deb --contents")?;
    let contents = String::from_utf8_lossy(&out.stdout);
    let mut want = vec![
        "./usr/bin/irqtune".to_string(),
        "./usr/share/man/man8/irqtune.8.gz".into(),
        "./usr/share/man/man8/irqtune-record.8.gz".into(),
        "./usr/lib/systemd/system/irqtune-watch.service".into(),
        "./usr/share/irqtune/prometheus.yml".into(),
        "./usr/share/irqtune/grafana-dashboard.json".into(),
    ];
    want.extend(
        COMPLETIONS
            .iter()
            .map(|(_, file, dir)| format!("./{dir}/{file}")),
    );
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| !contents.lines().any(|l| l.ends_with(w.as_str())))
        .collect();
    if !missing.is_empty() {
        bail!("{} lacks {missing:?}; it holds:\n{contents}", deb.display());
    }
    Ok(())
}
