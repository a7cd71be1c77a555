//! The system: everything that touches the running machine. Loading and reading the probes
//! ([`probes`], [`btf`], [`preflight`]), recording windows ([`session`]), reading and writing
//! /proc and /sys below a root ([`sysroot`], [`netns`]), applying and reverting plans
//! ([`applier`], [`journal`]), tune's closed loop ([`tuner`]), the exporter ([`watch`]) and
//! signals ([`stop`]), and dropping privileges once loaded ([`privileges`]). It may import every layer below: analysis, rendering, model.

pub mod applier;
pub mod btf;
pub mod ethtool;
pub mod files;
pub mod genl;
pub mod journal;
pub mod knobs;
pub mod kthread;
pub mod netdev;
pub mod netns;
pub mod preflight;
pub mod privileges;
pub mod probes;
pub mod session;
pub mod stop;
pub mod sysroot;
pub mod tuner;
pub mod watch;
