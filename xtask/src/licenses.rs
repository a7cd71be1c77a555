//! The licenses of everything irqtune is built from, checked against an allow list: every
//! package's SPDX expression (cargo metadata) must be satisfiable with licenses compatible
//! with distributing irqtune under MIT OR Apache-2.0 (and its probes under MIT OR GPL-2.0).
//! Run by the fast tier; `cargo xtask licenses` runs it alone.

use std::process::Command;

use anyhow::{bail, Context as _};

use crate::workspace_root;

/// Permissive licenses (the probes' own "MIT OR GPL-2.0-only" passes on its MIT side; a
/// dependency under the GPL alone would not).
const ALLOWED: [&str; 14] = [
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "0BSD",
    "CC0-1.0",
    "BSL-1.0",
    "Unlicense",
    "MPL-2.0",
];

/// Whether an SPDX expression can be satisfied from [`ALLOWED`].
pub fn acceptable(expr: &str) -> Result<bool, String> {
    let e = spdx::Expression::parse_mode(expr, spdx::ParseMode::LAX).map_err(|e| e.to_string())?;
    Ok(e.evaluate(|req| match &req.license {
        spdx::LicenseItem::Spdx { id, .. } => ALLOWED.contains(&id.name),
        spdx::LicenseItem::Other { .. } => false,
    }))
}

pub fn check() -> anyhow::Result<()> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("its JSON")?;
    let mut bad = Vec::new();
    let packages = meta["packages"].as_array().context("no packages")?;
    for p in packages {
        let name = format!(
            "{} {}",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?")
        );
        match p["license"].as_str() {
            Some(l) => match acceptable(l) {
                Ok(true) => {}
                Ok(false) => bad.push(format!("{name}: {l}")),
                Err(e) => bad.push(format!("{name}: {l:?} is not SPDX ({e})")),
            },
            None => bad.push(format!("{name}: no license field")),
        }
    }
    if !bad.is_empty() {
        bail!(
            "licenses outside the allow list (xtask/src/licenses.rs):\n  {}",
            bad.join("\n  ")
        );
    }
    println!("licenses: {} packages, all allowed", packages.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        assert_eq!(acceptable("MIT OR Apache-2.0"), Ok(true));
        assert_eq!(acceptable("MIT/Apache-2.0"), Ok(true));
        assert_eq!(acceptable("Apache-2.0 WITH LLVM-exception"), Ok(true));
        assert_eq!(acceptable("GPL-3.0-only"), Ok(false));
        assert_eq!(acceptable("AGPL-3.0 OR MIT"), Ok(true));
        assert_eq!(acceptable("SSPL-1.0"), Ok(false));
        assert!(acceptable("not a license !!").is_err());
    }
}
