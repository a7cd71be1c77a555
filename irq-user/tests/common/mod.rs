//! What the tests on machine-shaped trees share: a fixture machine written to a temporary
//! directory, and irqtune run with `--root` on it.

use std::{path::PathBuf, process::Command};

use irqtune_test_support::MachineSpec;

pub const BIN: &str = env!("CARGO_BIN_EXE_irqtune");

pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new(spec: &MachineSpec) -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        spec.write(&dir.path().join("m")).expect("write fixture");
        Tree { dir }
    }

    /// The machine's root (the temporary directory holds plans and state beside it).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("m")
    }

    pub fn irqtune(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root()).args(args);
        c
    }
}
