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
