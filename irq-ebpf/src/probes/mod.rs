//! The programs, one module per subsystem. Each tracepoint has a BTF tracepoint program
//! (`tp_btf`, cheapest dispatch) and a classic tracepoint program as the fallback user space
//! attaches when the first cannot; both call the same `#[inline(always)]` handler.

mod common;
mod flows;
mod hardirq;
mod netrx;
mod softirq;
