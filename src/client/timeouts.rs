//! PgBouncer's client-side timeouts: `client_idle_timeout`, `idle_transaction_timeout` and
//! `query_timeout`, kept by one timer per session.
//!
//! The limits are atomics (reloadable, read with a relaxed load), so a session with every
//! timeout off pays three loads per wait and no clock read, timer or allocation. With one on, a
//! session arms its single timer once per wait: when it starts waiting for its client (idle,
//! or idle inside a transaction) or sends a query; more wake-ups within the same wait (a
//! partial message, a NOTICE) keep the deadline already armed.
//!
//! What each wait is, and what happens when its timeout fires (the session ends; its server
//! connection goes to the release policy in `pool::reset`):
//! - **client idle**: no transaction open, nothing in flight. `FATAL 57P05 terminating
//!   connection due to idle-session timeout` (PostgreSQL's `idle_session_timeout`).
//! - **idle in transaction**: the session holds a server connection inside a transaction
//!   (ReadyForQuery `T` or `E`) or in the middle of an extended-protocol batch, and the client
//!   is silent. `FATAL 25P03 terminating connection due to idle-in-transaction timeout`
//!   (PostgreSQL's `idle_in_transaction_session_timeout`); the connection is rolled back and
//!   pooled again.
//! - **query**: a Query, or a batch up to its Sync, has not got its ReadyForQuery. As PgBouncer
//!   does, the client is disconnected and the server connection closed; before closing, the
//!   proxy sends PostgreSQL a cancel for the query, so it does not run on upstream.
//!   `FATAL 57014 canceling statement due to statement timeout`.

use std::pin::Pin;
use std::time::Instant;

use tokio::time::Sleep;

use crate::protocol::messages::PgError;
use crate::shared::limits::{Limits, Wait};

/// One session's timer: at most one deadline armed at a time.
#[derive(Default)]
pub struct Timer {
    /// Created at the first deadline a session needs (never, with every timeout off), then
    /// reset for later ones.
    sleep: Option<Pin<Box<Sleep>>>,
    /// What the sleep is armed for, and until when.
    armed: Option<(Wait, Instant)>,
    /// When the query in flight times out (`query_timeout` on and a query sent).
    query_deadline: Option<Instant>,
}

impl Timer {
    /// A query (a Query, or a batch up to its Sync) was sent: its deadline starts now. Reads
    /// the clock only when `query_timeout` is on.
    #[inline]
    pub fn query_sent(&mut self, limits: &Limits) {
        self.query_deadline = limits.get(Wait::Query).map(|d| Instant::now() + d);
    }

    /// The client sent something: it is not idle, so an idle wait starts over.
    #[inline]
    pub fn client_spoke(&mut self) {
        if matches!(
            self.armed,
            Some((Wait::ClientIdle | Wait::IdleInTransaction, _))
        ) {
            self.armed = None;
        }
    }

    /// Arms the timer for the wait ahead (None: no timeout applies to it). A wait of the kind
    /// already armed keeps its deadline. Returns whether the timer is armed.
    pub fn arm(&mut self, wait: Wait, limits: &Limits) -> bool {
        let want = match (wait, self.armed) {
            (Wait::Query, _) => self.query_deadline.map(|at| (Wait::Query, at)),
            (w, Some((k, at))) if k == w => Some((k, at)),
            (w, _) => limits.get(w).map(|d| (w, Instant::now() + d)),
        };
        if want != self.armed {
            if let Some((_, at)) = want {
                match self.sleep.as_mut() {
                    Some(s) => s.as_mut().reset(at.into()),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at.into()))),
                }
            }
            self.armed = want;
        }
        self.armed.is_some()
    }

    /// Completes when the armed deadline passes, with what it was armed for; never when
    /// nothing is armed.
    pub async fn fired(&mut self) -> Wait {
        match (self.sleep.as_mut(), self.armed) {
            (Some(s), Some((wait, _))) => {
                s.as_mut().await;
                wait
            }
            _ => std::future::pending().await,
        }
    }
}

/// What the client is told when `wait` timed out (the session then ends).
pub fn error(wait: Wait) -> PgError {
    match wait {
        Wait::ClientIdle => crate::error::idle_session_timeout(),
        Wait::IdleInTransaction => crate::error::idle_in_transaction_timeout(),
        Wait::Query => crate::error::query_timeout(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(idle: f64, txn: f64, query: f64) -> Limits {
        let l = Limits::default();
        l.set(idle, txn, query);
        l
    }

    #[tokio::test]
    async fn nothing_is_armed_with_the_timeouts_off() {
        let l = limits(0.0, 0.0, 0.0);
        let mut t = Timer::default();
        t.query_sent(&l);
        for w in [Wait::ClientIdle, Wait::IdleInTransaction, Wait::Query] {
            assert!(!t.arm(w, &l));
        }
        assert!(t.sleep.is_none(), "no timer is created");
    }

    #[tokio::test]
    async fn a_wait_keeps_its_deadline_until_the_client_speaks() {
        let l = limits(10.0, 5.0, 0.001);
        let mut t = Timer::default();
        assert!(t.arm(Wait::ClientIdle, &l));
        let first = t.armed;
        assert!(t.arm(Wait::ClientIdle, &l));
        assert_eq!(t.armed, first, "the same wait keeps its deadline");
        t.client_spoke();
        assert_eq!(t.armed, None);
        assert!(t.arm(Wait::IdleInTransaction, &l));
        assert_eq!(t.armed.map(|a| a.0), Some(Wait::IdleInTransaction));
        // A query's deadline is fixed when it is sent, and fires.
        t.query_sent(&l);
        assert!(t.arm(Wait::Query, &l));
        t.client_spoke();
        assert_eq!(t.armed.map(|a| a.0), Some(Wait::Query), "pipelined input");
        assert_eq!(t.fired().await, Wait::Query);
    }
}
