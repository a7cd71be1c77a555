//! irqtune's library: the layers, each importing only those below it (a test checks it; see
//! ARCHITECTURE.md):
//!
//! - [`model`]: what is measured and what the machine is (types, parsers, histogram maths);
//! - [`analysis`]: findings, planner, plan, verdict, thresholds (pure);
//! - [`render`]: the report formats and `show`;
//! - [`system`]: probes, recording, /proc and /sys, apply and revert, tune, watch, signals.
//!
//! The kernel/user ABI below them all is the `irq-ebpf` crate; the binary's `cmd/` on top
//! only parses arguments and prints.

pub mod analysis;
pub mod model;
pub mod render;
pub mod system;
