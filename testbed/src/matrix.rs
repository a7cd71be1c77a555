//! The kernel matrix (`tests/kernels.txt`): the kernels irqtune is tested on in QEMU. One
//! parser for the tests, which boot them, and for `cargo xtask setup`, which fetches them.

/// One kernel of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The name tests and `cargo xtask test --kernel` use ("6.1-rt").
    pub short: String,
    /// Debian suite the package comes from ("bookworm").
    pub suite: String,
    /// Debian package names: the image package, or from 7.x (where `linux-image-VER` is a
    /// metapackage) `linux-binary-VER` and `linux-modules-VER`, comma-separated in the file.
    pub packages: Vec<String>,
}

impl Kernel {
    /// The packages as the file names them.
    pub fn package_list(&self) -> String {
        self.packages.join(",")
    }

    /// Whether the suite is a backports suite (it has no security suite of its own).
    pub fn is_backports(&self) -> bool {
        self.suite.ends_with("-backports")
    }
}

/// The matrix file's text.
pub const FILE: &str = include_str!("../../tests/kernels.txt");

/// Parses the matrix: `short suite package[,package]` per line, `#` comments and blank lines
/// skipped.
/// A line with another number of fields is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<Kernel>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [short, suite, packages] if packages.split(',').all(|p| !p.is_empty()) => {
                out.push(Kernel {
                    short: short.into(),
                    suite: suite.into(),
                    packages: packages.split(',').map(str::to_string).collect(),
                })
            }
            _ => {
                return Err(format!(
                    "tests/kernels.txt line {}: {line:?} is not `short suite package[,package]`",
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

/// The image of a kernel extracted into `dir`: boot/vmlinuz-VER, or from 7.x (the
/// linux-binary package) usr/lib/modules/VER/vmlinuz.
pub fn image(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let in_boot = std::fs::read_dir(dir.join("boot")).ok().and_then(|d| {
        d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
    });
    in_boot.or_else(|| {
        std::fs::read_dir(dir.join("usr/lib/modules"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("vmlinuz"))
            .find(|p| p.is_file())
    })
}

/// The matrix of this source tree.
pub fn matrix() -> Vec<Kernel> {
    parse(FILE).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_and_names_each_kernel_once() {
        let m = matrix();
        assert!(m.len() >= 4, "{m:?}");
        let mut shorts: Vec<&str> = m.iter().map(|k| k.short.as_str()).collect();
        shorts.sort_unstable();
        shorts.dedup();
        assert_eq!(shorts.len(), m.len(), "{m:?}");
    }

    #[test]
    fn a_short_line_is_an_error_naming_it() {
        let e = parse("# c\n5.10 bullseye pkg\n6.1 bookworm\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert_eq!(parse("x y z # note\n").unwrap()[0].packages, ["z"]);
        let split = parse("7.3 trixie-backports a,b\n").unwrap();
        assert_eq!(split[0].packages, ["a", "b"]);
        assert!(split[0].is_backports());
        assert!(parse("7.3 trixie-backports a,\n").is_err());
    }
}
