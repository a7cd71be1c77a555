//! Replays the fuzz corpus (fuzz/corpus/TARGET/*) through the targets' bodies: every input
//! the fuzzer kept, and every input that once crashed irqtune, must parse or be refused
//! without a panic, on the stable toolchain, in every `cargo test`.

use std::path::Path;

#[test]
fn every_corpus_input_is_handled_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut seen = 0;
    for (name, target) in irqtune_test_support::fuzz::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(
            !files.is_empty(),
            "target {name} has no corpus in {}",
            dir.display()
        );
        for f in files {
            let data = match std::fs::read(&f) {
                Ok(d) => d,
                // A fuzzer running on the corpus replaces inputs by smaller ones as it goes.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("read {}: {e}", f.display()),
            };
            let ok = std::panic::catch_unwind(|| target(&data));
            assert!(ok.is_ok(), "{name}: {} panics", f.display());
            seen += 1;
        }
    }
    assert!(seen >= irqtune_test_support::fuzz::TARGETS.len());
}
