//! Steering: IRQ affinity, RPS, RFS and XPS. [`planner`] decides (pure), [`plan`] is the file
//! it writes, [`applier`] writes the machine through a journal and can put it back.

pub mod applier;
pub mod journal;
pub mod plan;
pub mod planner;
pub mod verdict;
