//! The one way irqtune stops early: SIGINT (Ctrl-C), SIGTERM, SIGHUP (the SSH session that
//! ran it dropped) and SIGQUIT set a flag. Recording waits on
//! it (and still writes what it recorded), the applier checks it between writes (and rolls
//! back), `tune` checks it between its steps (and leaves the before state).
//!
//! The handlers are installed before anything is loaded, so a signal that arrives while the
//! probes attach is not lost to the default action (which would end the process without a
//! report or a rollback).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// How often an awaiting task looks at the flag: short enough that Ctrl-C feels immediate.
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag that SIGINT, SIGTERM, SIGHUP and SIGQUIT set: each would otherwise end the
    /// process between two writes of an apply, leaving it half made.
    pub fn on_signals() -> std::io::Result<Stop> {
        let stop = Stop::default();
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
            signal_hook::flag::register(sig, Arc::clone(&stop.0))?;
        }
        Ok(stop)
    }

    /// A flag nothing sets (tests, and callers that stop by other means).
    pub fn never() -> Stop {
        Stop::default()
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the flag (what a signal does).
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Completes once a stop is requested.
    pub async fn wait(&self) {
        while !self.requested() {
            tokio::time::sleep(POLL).await;
        }
    }
}
