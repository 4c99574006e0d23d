//! PgBouncer's pool sizing beyond `pool_size`: `min_pool_size` (connections kept open, also
//! after PostgreSQL restarts) and `reserve_pool_size` + `reserve_pool_timeout` (extra slots
//! for checkouts that waited that long).
//!
//! A reserve slot is an ordinary slot added while a checkout has waited `reserve_pool_timeout`;
//! it goes to the queue's next waiter (the fair order holds), and it is retired, its
//! connection kept idle, when it comes back and nobody waits.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::guard::{is_quiet, Slot};
use super::{Pool, Slots};

/// `min_pool_size`, `reserve_pool_size`, `reserve_pool_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Connections kept open while nobody uses them.
    pub min: usize,
    /// Extra slots for checkouts that waited `reserve_timeout`.
    pub reserve: usize,
    /// How long a checkout waits before a reserve slot is added.
    pub reserve_timeout: Duration,
}

impl Default for Sizing {
    fn default() -> Sizing {
        Sizing {
            min: 0,
            reserve: 0,
            reserve_timeout: Duration::from_secs(5),
        }
    }
}

impl Slots {
    /// Adds a reserve slot for the queue (a checkout waited `reserve_pool_timeout`), when one
    /// is left; returns whether it did.
    pub(super) fn add_reserve(&mut self, reserve: usize) -> bool {
        if self.paused || self.reserve_in_use >= reserve || self.queue.is_empty() {
            return false;
        }
        self.reserve_in_use += 1;
        self.free += 1;
        self.dispatch(None);
        true
    }

    /// A returning slot that is a reserve one and nobody waits for: retired (its connection
    /// stays idle until `idle_timeout`). Returns whether it was.
    pub(super) fn retire_reserve(&mut self, conn: &mut super::slots::Back) -> bool {
        if self.reserve_in_use == 0 || !self.queue.is_empty() {
            return false;
        }
        self.reserve_in_use -= 1;
        self.keep_idle(conn.take());
        true
    }
}

impl Pool {
    /// How long a checkout waits before a reserve slot is added; `None` without a reserve or
    /// when the wait would outlast `limit`, the whole wait allowed (0: no limit).
    pub(super) fn reserve_after(&self, limit: Duration) -> Option<Duration> {
        let within = limit.is_zero() || self.sizing.reserve_timeout < limit;
        (self.sizing.reserve > 0 && within).then_some(self.sizing.reserve_timeout)
    }

    /// A checkout waited `reserve_pool_timeout`: add a reserve slot for the queue.
    pub(super) fn use_reserve(&self) {
        if self.slots().add_reserve(self.sizing.reserve) {
            tracing::info!(pool = self.name.as_str(), "using a reserve pool connection");
        }
    }

    /// Reserve slots in use now (SHOW POOLS).
    pub fn reserve_in_use(&self) -> usize {
        self.slots().reserve_in_use
    }

    /// As built at start: these keys change only with a restart.
    pub fn sizing(&self) -> Sizing {
        self.sizing
    }

    /// `min_pool_size`: closes idle connections the server closed (a restart of PostgreSQL),
    /// then opens connections until `min` are open, taking only slots nobody waits for.
    /// Called every second by the server's warmer.
    pub async fn keep_warm(self: &Arc<Self>) {
        if self.sizing.min == 0 {
            return;
        }
        {
            let mut s = self.slots();
            let before = s.idle.len();
            s.idle.retain_mut(|c| is_quiet(c));
            let gone = before - s.idle.len();
            self.stats.closed.fetch_add(gone as u64, Ordering::Relaxed);
        }
        while self.server_rows().len() < self.sizing.min {
            let token = {
                let mut s = self.slots();
                if !s.may_take(None, None) || !s.queue.is_empty() {
                    return;
                }
                // Within `max_db_connections`: warming never takes a waiter's place.
                let Some(token) = s.db.try_reserve() else {
                    return;
                };
                s.take(None, None);
                token
            };
            let mut slot = Slot {
                pool: self.clone(),
                tenant: None,
                user: None,
                held: true,
            };
            match Box::pin(self.open(token)).await {
                Ok(conn) => slot.give_back(Some(Box::new(conn))),
                Err(e) => {
                    tracing::warn!(pool = self.name.as_str(), error = %e, "min_pool_size: cannot open a connection");
                    return;
                }
            }
        }
    }
}
