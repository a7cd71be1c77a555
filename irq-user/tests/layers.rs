//! The layering of irq-user (ARCHITECTURE.md): each layer imports only those below it.
//!
//!   model  <-  analysis  <-  render  <-  system  <-  cmd (the binary)
//!
//! This test reads every source file and fails on an import of a higher layer, naming the
//! file, the line and the layers. Test modules count too: a model test that needs the system
//! layer is a sign the model does I/O it should not.

use std::{
    fs,
    path::{Path, PathBuf},
};

const LAYERS: [&str; 5] = ["model", "analysis", "render", "system", "cmd"];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code without comments (a doc comment may name any module).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Layers a file refers to, with the line: `crate::L`, `irq_user::L`, and the first
/// segments of grouped trees `use crate::{L::..., ...}`.
fn references(code: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for root in ["crate::", "irq_user::"] {
            let mut rest = line;
            while let Some(i) = rest.find(root) {
                rest = &rest[i + root.len()..];
                let seg: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !seg.is_empty() {
                    refs.push((n + 1, seg));
                }
            }
        }
    }
    // Grouped trees span lines: `use crate::{\n    model::x,\n    analysis::{...},\n};`
    for root in ["use crate::{", "use irq_user::{"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(root) {
            let start = from + i + root.len();
            let (mut depth, mut end) = (1, start);
            for (k, c) in code[start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = start + k;
                    break;
                }
            }
            let line = code[..start].lines().count();
            let (mut depth, mut item) = (0, String::new());
            for c in code[start..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let seg: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !seg.is_empty() {
                            refs.push((line, seg));
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            from = end;
        }
    }
    refs
}

#[test]
fn no_layer_imports_a_higher_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("below src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let Some(own) = rank(top) else {
            continue; // lib.rs and main.rs only declare modules
        };
        checked += 1;
        let code = strip_comments(&fs::read_to_string(f).expect("read source"));
        for (line, seg) in references(&code) {
            if let Some(r) = rank(&seg) {
                if r > own {
                    violations.push(format!(
                        "{}:{line}: the {top} layer imports {seg}, a layer above it",
                        rel.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} files found below {}",
        src.display()
    );
    assert!(
        violations.is_empty(),
        "layers: {} (each imports only those to its left)\n{}",
        LAYERS.join(" <- "),
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_single_and_grouped_imports() {
    let code =
        "use crate::{\n    model::x,\n    system::{a, b},\n};\nfn f() { crate::render::y(); }";
    let segs: Vec<String> = references(code).into_iter().map(|(_, s)| s).collect();
    for want in ["model", "system", "render"] {
        assert!(segs.contains(&want.to_string()), "{want} in {segs:?}");
    }
    assert!(references(&strip_comments("// crate::system::x")).is_empty());
}

#[test]
fn every_file_says_what_it_owns() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let silent: Vec<String> = files
        .iter()
        .filter(|f| {
            !fs::read_to_string(f)
                .expect("read source")
                .trim_start()
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        silent.is_empty(),
        "files without a //! header saying what they own:\n{}",
        silent.join("\n")
    );
}

/// What in a line of code opens or reads a file directly.
fn file_access(line: &str) -> Vec<&'static str> {
    const FORBIDDEN: [&str; 7] = [
        "std::fs",
        "fs::read",
        "fs::write",
        "File::open",
        "File::create",
        "OpenOptions",
        "rustix::fs",
    ];
    FORBIDDEN
        .into_iter()
        .filter(|b| {
            // `procfs::read_…` and `sysfs::…` are the model's own parsers, not std::fs.
            line.match_indices(*b)
                .any(|(i, _)| !line[..i].ends_with("proc") && !line[..i].ends_with("sys"))
        })
        .collect()
}

/// The model, the analysis and the renderers touch no file: the model reads through `Tree`
/// (the one reader of /proc and /sys, hardened against what a tree may hold), the analysis
/// and the renderers work on values.
#[test]
fn model_analysis_and_render_open_no_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for layer in ["model", "analysis", "render"] {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources in {layer}");
        for f in files {
            let code = strip_comments(&fs::read_to_string(&f).expect("read source"));
            for (n, line) in code.lines().enumerate() {
                for bad in file_access(line) {
                    found.push(format!("{}:{}: {bad}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "file access outside system/:\n{}",
        found.join("\n")
    );
    // The check itself sees a direct read, and not the model's own parsers.
    assert_eq!(file_access("let t = std::fs::read_to_string(p)?;").len(), 2);
    assert!(file_access("let i = procfs::read_interrupts(root)?;").is_empty());
}
