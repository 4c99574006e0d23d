//! The client-side timeout limits every session reads, updated in place by a reload
//! (`client/timeouts.rs` keeps each session's timer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Config;

/// What the session is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its client, outside a transaction.
    ClientIdle,
    /// Its client, while holding a server connection in a transaction.
    IdleInTransaction,
    /// The server's answer to a query.
    Query,
}

/// The configured limits, in milliseconds (0: off), shared by every session and updated by a
/// reload.
#[derive(Debug, Default)]
pub struct Limits {
    /// `[server] client_idle_timeout`.
    client_idle: AtomicU64,
    /// `[upstream] idle_transaction_timeout`.
    idle_transaction: AtomicU64,
    /// `[upstream] query_timeout`.
    query: AtomicU64,
}

/// Seconds from the configuration as whole milliseconds (a positive value never rounds to 0).
fn millis(secs: f64) -> u64 {
    if secs > 0.0 {
        ((secs * 1000.0).ceil() as u64).max(1)
    } else {
        0
    }
}

impl Limits {
    /// Built once at start; a reload updates it in place ([`Limits::update`]).
    pub fn new(config: &Config) -> Limits {
        let l = Limits::default();
        l.update(config);
        l
    }

    /// Takes the limits of a reloaded configuration; sessions use them from their next wait.
    pub fn update(&self, config: &Config) {
        self.set(
            config.server.client_idle_timeout,
            config.upstream.idle_transaction_timeout,
            config.upstream.query_timeout,
        );
    }

    /// Sets the three limits, in seconds (0: off).
    pub(crate) fn set(&self, client_idle: f64, idle_transaction: f64, query: f64) {
        self.client_idle
            .store(millis(client_idle), Ordering::Relaxed);
        self.idle_transaction
            .store(millis(idle_transaction), Ordering::Relaxed);
        self.query.store(millis(query), Ordering::Relaxed);
    }

    /// The limit of one kind of wait; None when it is off.
    #[inline]
    pub fn get(&self, wait: Wait) -> Option<Duration> {
        let a = match wait {
            Wait::ClientIdle => &self.client_idle,
            Wait::IdleInTransaction => &self.idle_transaction,
            Wait::Query => &self.query,
        };
        match a.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_positive_timeout_never_rounds_to_off() {
        assert_eq!(millis(0.0001), 1);
        assert_eq!(millis(0.0), 0);
        assert_eq!(millis(2.5), 2500);
    }
}
