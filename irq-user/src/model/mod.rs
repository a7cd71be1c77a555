//! The model: what irqtune measures and what the machine is. Profile types, probe snapshots
//! and their deltas, histogram summaries, the machine's topology, IRQs and NICs, the parsers
//! of /proc and of CPU lists. It imports only the kernel/user ABI (`irq-ebpf`): no analysis,
//! no rendering, no I/O shell (a machine is read through [`tree::Tree`], which the system
//! layer implements).

pub mod cpulist;
pub mod extrapolate;
pub mod finding;
pub mod hist;
pub mod jsonfile;
pub mod machine;
pub mod procfs;
pub mod profile;
pub mod running;
pub mod snapshot;
pub mod tree;
pub mod units;
