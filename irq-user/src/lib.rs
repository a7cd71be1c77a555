//! irqtune's user side: loads the probes, reads /proc, and turns what both saw into reports.
//!
//! - [`preflight`]: checks the machine before loading (privileges, BTF, tracefs).
//! - [`probes`]: loads and attaches the eBPF programs (BTF tracepoints, classic fallback).
//! - [`snapshot`]: typed copies of the probes' maps and their deltas.
//! - [`procfs`], [`cpulist`], [`btf`]: parsers of what the kernel exposes.
//! - [`session`]: a profiling session; [`report`]: its text report.

pub mod btf;
pub mod cpulist;
pub mod findings;
pub mod fixture;
pub mod jsonfile;
pub mod machine;
pub mod netns;
pub mod policy;
pub mod preflight;
pub mod probes;
pub mod procfs;
pub mod profile;
pub mod report;
pub mod session;
pub mod show;
pub mod snapshot;
pub mod stats;
pub mod steering;
pub mod stop;
pub mod sysroot;
pub mod tuner;
pub mod watch;
