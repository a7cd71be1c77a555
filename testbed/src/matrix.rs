//! The kernel matrix (`tests/kernels.txt`): the kernels irqtune is tested on in QEMU. One
//! parser for the tests, which boot them, and for `cargo xtask setup`, which fetches them.

/// One kernel of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The name tests and `cargo xtask test --kernel` use ("6.1-rt").
    pub short: String,
    /// Debian suite the package comes from ("bookworm").
    pub suite: String,
    /// Debian package name.
    pub package: String,
}

/// The matrix file's text.
pub const FILE: &str = include_str!("../../tests/kernels.txt");

/// Parses the matrix: `short suite package` per line, `#` comments and blank lines skipped.
/// A line with another number of fields is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<Kernel>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [short, suite, package] => out.push(Kernel {
                short: short.into(),
                suite: suite.into(),
                package: package.into(),
            }),
            _ => {
                return Err(format!(
                    "tests/kernels.txt line {}: {line:?} is not `short suite package`",
                    n + 1
                ))
            }
        }
    }
    Ok(out)
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
        assert_eq!(parse("x y z # note\n").unwrap()[0].package, "z");
    }
}
