//! The command line as an operator meets it: `--version` names the source revision, and
//! `completions` prints a script each shell accepts.

use std::process::Command;

fn irqtune(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_irqtune"))
        .args(args)
        .output()
        .expect("run irqtune");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn version_names_the_release_and_the_revision() {
    let (ok, out) = irqtune(&["--version"]);
    assert!(ok);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("irqtune {} (", env!("CARGO_PKG_VERSION")))
            && line.ends_with(')'),
        "{line}"
    );
    let rev = &line[line.find('(').unwrap() + 1..line.len() - 1];
    assert!(
        rev == "unknown" || (rev.len() == 12 && rev.chars().all(|c| c.is_ascii_hexdigit())),
        "revision {rev:?}"
    );
}

#[test]
fn completions_for_each_shell_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out) = irqtune(&["completions", shell]);
        assert!(ok, "{shell}");
        for sub in [
            "record", "report", "tune", "watch", "show", "plan", "apply", "revert",
        ] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    // bash itself parses the script and registers the completion.
    let (_, script) = irqtune(&["completions", "bash"]);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{script}\ncomplete -p irqtune"))
        .output()
        .expect("run bash");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("irqtune"),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _) = irqtune(&["completions", "tcsh"]);
    assert!(!ok, "an unknown shell is an error");
}

/// The man pages come from the same definitions as --help: one per subcommand, each naming
/// its options, the main one the exit codes; groff reads them without warnings.
#[test]
fn manpages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _) = irqtune(&["manpages", dir.path().to_str().unwrap()]);
    assert!(ok);
    let read = |name: &str| {
        std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let main = read("irqtune.8");
    assert!(main.contains(".TH irqtune 8"), "{main}");
    assert!(
        main.contains("Exit status"),
        "the exit codes are in irqtune(8)"
    );
    for sub in [
        "record",
        "report",
        "tune",
        "watch",
        "show",
        "plan",
        "apply",
        "revert",
        "completions",
    ] {
        assert!(
            main.contains(&format!("irqtune\\-{sub}(8)")),
            "irqtune(8) lists {sub}"
        );
        let page = read(&format!("irqtune-{sub}.8"));
        assert!(page.contains(&format!(".TH irqtune-{sub} 8")), "{page}");
        assert!(
            page.contains(&format!("\\fBirqtune {sub}\\fR")),
            "the synopsis shows `irqtune {sub}`: {page}"
        );
    }
    assert!(read("irqtune-watch.8").contains("per\\-cpu\\-histograms"));
    assert!(
        !dir.path().join("irqtune-manpages.8").exists(),
        "the hidden subcommand has no page"
    );
    let pages = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(pages, 10, "irqtune.8 and 9 subcommands");
    // groff (man-db's formatter) reads each without a warning.
    if std::process::Command::new("groff")
        .arg("-v")
        .output()
        .is_ok()
    {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn per_cpu_histograms_shape_prometheus_only() {
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/server-64cpu.json"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_irqtune"))
        .args(["report", golden, "--format", "text", "--per-cpu-histograms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format prometheus"));
    let (ok, default) = irqtune(&["report", golden, "--format", "prometheus"]);
    assert!(ok);
    let (ok, per_cpu) = irqtune(&[
        "report",
        golden,
        "--format",
        "prometheus",
        "--per-cpu-histograms",
    ]);
    assert!(ok);
    let bucket_with_cpu = |t: &str| {
        t.lines().any(|l| {
            l.starts_with("irqtune_softirq_handler_seconds_bucket{") && l.contains("cpu=\"")
        })
    };
    assert!(!bucket_with_cpu(&default));
    assert!(bucket_with_cpu(&per_cpu));
}
