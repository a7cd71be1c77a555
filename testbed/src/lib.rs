//! What irqtune's kernel tests (`tests/`) and benchmarks (`xtask bench`) share: network
//! namespaces joined by a veth, CPU pinning, sysfs and sysctl values restored on drop, and the
//! kernel matrix file. Everything a test bed creates is removed on drop, also on a panic;
//! traffic only goes to addresses inside the namespaces it created.

pub mod matrix;
pub mod netns;

pub use netns::{enter_netns, name_thread, pin_to_cpu, sh, NetnsPair, Restore};
