//! The analysis: pure functions of the model. What is wrong ([`findings`]), what to change
//! ([`planner`], written as a [`plan`]), whether a change helped ([`verdict`], with the
//! statistics in [`stats`]), and every threshold they judge by ([`policy`]). No I/O; it
//! imports the model only.

pub mod findings;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod stats;
pub mod verdict;
