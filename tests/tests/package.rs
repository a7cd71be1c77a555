//! The Debian package (`cargo xtask dist`) installs like a system tool and leaves cleanly:
//! installed with dpkg on a clean root, used as a user would (`irqtune --version`, `man`, tab
//! completion, the unit), then removed and purged. The clean root is this machine's root file
//! system under a copy-on-write overlay, in a private mount namespace, chrooted into: dpkg
//! and its maintainer scripts run for real, and nothing reaches the host (the namespace and its
//! tmpfs vanish with the process, whatever happens inside). A QEMU guest would do the same at
//! 500 times the cost: dpkg reading its database over 9p under TCG took minutes.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use irqtune_tests::{kernel_test, sh};

/// The package `cargo xtask dist` made: $IRQTUNE_DEB (set by `cargo xtask test`), else the
/// newest .deb in target/dist.
fn deb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IRQTUNE_DEB") {
        return Some(PathBuf::from(p));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dist");
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn run(cmd: &str) -> (bool, String) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("sh -c {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn field(deb: &Path, name: &str) -> String {
    sh(&format!("dpkg-deb --field {} {name}", deb.display()))
        .trim()
        .to_string()
}

kernel_test! {
    fn package_installs_and_removes_cleanly() {
        let Some(deb) = deb().filter(|p| p.is_file()) else {
            let why = "package_installs_and_removes_cleanly: no package in target/dist; run `cargo xtask dist` (cargo xtask test does)";
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("NOT RUN: {why}");
            return;
        };
        // The control file, on the host.
        assert_eq!(field(&deb, "Package"), "irqtune");
        assert_eq!(field(&deb, "Architecture"), "amd64");
        // The binary is static: it needs no C library of a given version (Debian 11 has glibc
        // 2.31; a binary linked here against Debian 12's would not start there).
        let depends = field(&deb, "Depends");
        assert!(
            !depends.contains("libc6"),
            "the static binary depends on no C library: Depends: {depends}"
        );
        let contents = sh(&format!("dpkg-deb --contents {}", deb.display()));
        assert!(
            !contents.contains("./etc/systemd/system/multi-user.target.wants"),
            "the unit is not enabled by the package itself:\n{contents}"
        );
        assert!(
            !host_has_irqtune(),
            "irqtune is installed on this machine: not a clean root"
        );
        // The overlay: lower = this root file system, upper = a tmpfs; /proc, /dev and /sys bound
        // in; then this test binary runs the inside half in the chroot.
        let mnt = tempfile::tempdir().expect("mount point");
        let exe = std::env::current_exe().expect("this test binary");
        let script = format!(
            r#"set -e
    m={mnt}
    mount -t tmpfs irqtune-package $m
    mkdir $m/upper $m/work $m/root
    mount -t overlay irqtune-package -o lowerdir=/,upperdir=$m/upper,workdir=$m/work $m/root
    mount --bind /proc $m/root/proc
    mount --rbind /dev $m/root/dev
    mount --bind /sys $m/root/sys
    exec chroot $m/root env IRQTUNE_PACKAGE_ROOT=1 IRQTUNE_DEB={deb} {exe} inside_package_root --ignored --exact --nocapture --test-threads=1
    "#,
            mnt = mnt.path().display(),
            deb = deb.display(),
            exe = exe.display(),
        );
        let started = std::time::Instant::now();
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .expect("run unshare (util-linux)");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "== in the overlay root, {:.1} s\n{log}",
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success() && log.contains("test result: ok. 1 passed"),
            "the install test failed in the overlay root ({}):\n{log}",
            out.status
        );
        // The host is untouched.
        assert!(
            !host_has_irqtune(),
            "the install reached the host's dpkg database"
        );
        assert!(!Path::new("/usr/bin/irqtune").exists());
    }
}

fn host_has_irqtune() -> bool {
    run("dpkg-query -W -f='${Status}' irqtune")
        .1
        .contains("install ok installed")
}

#[test]
#[ignore = "runs in the overlay root that package_installs_and_removes_cleanly makes"]
fn inside_package_root() {
    assert!(
        std::env::var_os("IRQTUNE_PACKAGE_ROOT").is_some(),
        "run by package_installs_and_removes_cleanly, in its overlay root, never on the host"
    );
    let deb = std::env::var("IRQTUNE_DEB").expect("IRQTUNE_DEB");
    // A clean root: no irqtune installed.
    assert!(
        !run("dpkg-query -W irqtune").0,
        "irqtune is already installed"
    );
    assert!(!Path::new("/usr/bin/irqtune").exists());

    let t = std::time::Instant::now();
    let step = |what: &str| eprintln!("{:6.2} s  {what}", t.elapsed().as_secs_f64());
    sh(&format!("dpkg --install {deb}"));
    step("installed");
    let files: Vec<String> = sh("dpkg-query --listfiles irqtune")
        .lines()
        .map(str::to_string)
        .collect();

    step("listed");
    // Static: no shared library to load on any distribution.
    let (dynamic, ldd) = run("ldd /usr/bin/irqtune");
    assert!(
        !dynamic || ldd.contains("statically linked"),
        "ldd /usr/bin/irqtune: {ldd}"
    );
    // The binary, on PATH, names its release and git revision.
    let version = sh("env PATH=/usr/sbin:/usr/bin:/sbin:/bin irqtune --version");
    assert!(
        version.starts_with(&format!("irqtune {}", env!("CARGO_PKG_VERSION")))
            && version.contains('('),
        "{version}"
    );
    assert!(sh("irqtune report --help").contains("--per-cpu-histograms"));

    // man finds and renders the pages: irqtune(8) and one per subcommand.
    let page = sh("man -w irqtune");
    assert_eq!(page.trim(), "/usr/share/man/man8/irqtune.8.gz");
    for sub in [
        "record", "report", "tune", "watch", "show", "plan", "apply", "revert",
    ] {
        let p = sh(&format!("man -w 8 irqtune-{sub}"));
        assert!(p.trim().ends_with(&format!("irqtune-{sub}.8.gz")), "{p}");
    }
    let text = sh("MANPAGER=cat MANWIDTH=100 man 8 irqtune 2>/dev/null");
    for want in ["irqtune", "record", "Exit status", "irqtune-record(8)"] {
        assert!(text.contains(want), "man irqtune lacks {want:?}:\n{text}");
    }
    let text = sh("MANPAGER=cat MANWIDTH=100 man 8 irqtune-watch 2>/dev/null");
    assert!(text.contains("--per-cpu-histograms"), "{text}");

    step("man pages");
    // Completions where each shell looks, and bash's loads.
    for f in [
        "/usr/share/bash-completion/completions/irqtune",
        "/usr/share/zsh/vendor-completions/_irqtune",
        "/usr/share/fish/vendor_completions.d/irqtune.fish",
    ] {
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains("irqtune") && text.contains("record"), "{f}");
    }
    let complete =
        sh("bash -c '. /usr/share/bash-completion/completions/irqtune && complete -p irqtune'");
    assert!(complete.contains("irqtune"), "{complete}");

    // The unit: installed, pointing at the packaged binary, valid, and not enabled.
    let unit = "/usr/lib/systemd/system/irqtune-watch.service";
    let text = fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    assert!(text.contains("ExecStart=/usr/bin/irqtune watch"), "{text}");
    let (valid, out) = run(&format!("systemd-analyze verify {unit}"));
    assert!(
        valid && out.trim().is_empty(),
        "systemd-analyze verify: {out}"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/irqtune-watch.service").exists(),
        "the unit was enabled on install"
    );

    // The Prometheus and Grafana files, as in deploy/.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for f in ["prometheus.yml", "grafana-dashboard.json"] {
        assert_eq!(
            fs::read(format!("/usr/share/irqtune/{f}")).unwrap(),
            fs::read(repo.join(f)).unwrap(),
            "/usr/share/irqtune/{f}"
        );
    }

    step("unit and files");
    // Remove, then purge: nothing of the package is left (the directories it shares with
    // other packages, such as /usr/share/man/man8, stay as dpkg's policy has it).
    sh("dpkg --remove irqtune");
    assert!(!Path::new("/usr/bin/irqtune").exists());
    sh("dpkg --purge irqtune");
    step("removed and purged");
    assert!(
        !run("dpkg-query -W irqtune").0,
        "still known to dpkg after purge"
    );
    let shared = ["/.", "/usr", "/usr/bin", "/usr/lib", "/usr/share"];
    let left: Vec<&String> = files
        .iter()
        .filter(|f| !shared.contains(&f.as_str()))
        .filter(|f| {
            let p = Path::new(f.as_str());
            // Directories other packages also own stay; everything irqtune brought goes.
            p.is_file() || (p.is_dir() && (f.contains("irqtune")))
        })
        .collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    let (_, state) =
        run("ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | grep irqtune");
    assert!(
        state.trim().is_empty(),
        "systemd helper state left: {state}"
    );
    assert!(
        files.iter().any(|f| f == "/usr/bin/irqtune"),
        "the file list was read: {files:?}"
    );
}
