//! Checks of the code's shape that the compiler does not make, run by the fast tier (`cargo
//! xtask test --unit`): no function in the product and its tooling longer than
//! [`MAX_FN_LINES`]. Tests' scenario bodies (under `tests/`) may be longer where they read as
//! a script.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A function longer than this does several things; split it along the sections it has.
pub const MAX_FN_LINES: usize = 100;

/// The source trees held to it.
pub const TREES: [&str; 4] = [
    "irq-user/src",
    "irq-ebpf/src",
    "xtask/src",
    "test-support/src",
];

/// A function: where, and how many lines from its signature to its closing brace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnLength {
    pub file: PathBuf,
    pub name: String,
    pub line: usize,
    pub lines: usize,
}

struct Lengths<'a> {
    file: &'a Path,
    out: Vec<FnLength>,
}

impl Lengths<'_> {
    fn push(&mut self, name: String, span: proc_macro2::Span) {
        let (start, end) = (span.start().line, span.end().line);
        self.out.push(FnLength {
            file: self.file.to_path_buf(),
            name,
            line: start,
            lines: end.saturating_sub(start) + 1,
        });
    }
}

impl<'ast> Visit<'ast> for Lengths<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.push(f.sig.ident.to_string(), syn::spanned::Spanned::span(f));
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.push(f.sig.ident.to_string(), syn::spanned::Spanned::span(f));
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if f.default.is_some() {
            self.push(f.sig.ident.to_string(), syn::spanned::Spanned::span(f));
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every function's length in the given trees (relative to `root`).
pub fn fn_lengths(root: &Path, trees: &[&str]) -> anyhow::Result<Vec<FnLength>> {
    let mut files = Vec::new();
    for t in trees {
        rust_files(&root.join(t), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let ast = syn::parse_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let rel = f.strip_prefix(root).unwrap_or(&f);
        let mut v = Lengths {
            file: rel,
            out: Vec::new(),
        };
        v.visit_file(&ast);
        out.extend(v.out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_function_is_longer_than_the_limit() {
        let all = fn_lengths(&crate::workspace_root(), &TREES).expect("parse the sources");
        assert!(all.len() > 500, "found only {} functions", all.len());
        let mut long: Vec<&FnLength> = all.iter().filter(|f| f.lines > MAX_FN_LINES).collect();
        long.sort_by_key(|f| std::cmp::Reverse(f.lines));
        let list: Vec<String> = long
            .iter()
            .map(|f| {
                format!(
                    "  {}:{} {} ({} lines)",
                    f.file.display(),
                    f.line,
                    f.name,
                    f.lines
                )
            })
            .collect();
        assert!(
            long.is_empty(),
            "{} function(s) over {MAX_FN_LINES} lines; split them along their sections:\n{}",
            long.len(),
            list.join("\n")
        );
    }

    #[test]
    fn the_count_sees_a_long_function() {
        let dir = std::env::temp_dir().join(format!("irqtune-fnlen-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let body = "    let _x = 1;\n".repeat(120);
        std::fs::write(
            dir.join("src/a.rs"),
            format!("fn short() {{}}\nstruct S;\nimpl S {{\n    fn long() {{\n{body}    }}\n}}\n"),
        )
        .unwrap();
        let v = fn_lengths(&dir, &["src"]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let long = v.iter().find(|f| f.name == "long").unwrap();
        assert_eq!(long.lines, 122);
        assert_eq!(v.iter().find(|f| f.name == "short").unwrap().lines, 1);
    }
}
