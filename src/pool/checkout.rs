//! Checking out a connection: at once when a slot and an idle connection are free, else a
//! place in the fair queue up to `query_wait_timeout` (cancel-safe, see [`Waiting`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::guard::{is_quiet, PoolGuard, Slot};
use super::limits::UserTag;
use super::queue::{TenantTag, Ticket};
use super::slots::{take_idle, Grant};
use super::{Limit, Pool, PoolError, UpstreamConn};

impl Pool {
    /// A connection right now, without waiting, opening, allocating or reading the clock: a
    /// free slot (nobody eligible waits for it, see `Slots::free`), no PAUSE, `tenant` and
    /// `user` under their caps, and a healthy idle connection, preferably one already carrying
    /// `identity` (see `tenant::inject`). One lock. `None` means [`Pool::checkout`] must wait
    /// or open.
    pub fn try_checkout(
        self: &Arc<Self>,
        identity: u64,
        tenant: Option<&Arc<TenantTag>>,
        user: Option<&Arc<UserTag>>,
    ) -> Option<PoolGuard> {
        let mut conn = {
            let mut s = self.slots();
            if s.idle.is_empty() || !s.may_take(tenant.map(Arc::as_ref), user.map(Arc::as_ref)) {
                return None;
            }
            let conn = take_idle(&mut s.idle, identity)?;
            s.take(tenant.map(Arc::as_ref), user.map(Arc::as_ref));
            conn
        };
        let slot = Slot {
            pool: self.clone(),
            tenant: tenant.cloned(),
            user: user.cloned(),
            held: true,
        };
        if !is_quiet(&mut conn) {
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
            // Rare (the server went away): try the others; without one the slot goes back.
            conn = self.pop_idle(identity)?;
        }
        Some(self.hand_out(slot, conn, Duration::ZERO))
    }

    /// Bookkeeping shared by both checkout paths.
    fn hand_out(&self, slot: Slot, conn: Box<UpstreamConn>, waited: Duration) -> PoolGuard {
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = &slot.tenant {
            t.usage.checkouts.fetch_add(1, Ordering::Relaxed);
            if !waited.is_zero() {
                t.usage
                    .wait_us
                    .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
            }
        }
        self.stats
            .wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        crate::metrics::pool_wait(self.name.as_str(), waited);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        conn.info.set_active(true);
        PoolGuard {
            conn: Some(conn),
            slot,
        }
    }

    /// Checks out a connection for `tenant` and `user` (None: the proxy's own work), waiting
    /// up to `query_wait_timeout` for its turn (see `queue`); prefers one carrying `identity`.
    pub async fn checkout(
        self: &Arc<Self>,
        identity: u64,
        tenant: Option<&Arc<TenantTag>>,
        user: Option<&Arc<UserTag>>,
    ) -> Result<PoolGuard, PoolError> {
        let (tag, who) = (tenant.map(Arc::as_ref), user.map(Arc::as_ref));
        let queued = {
            let mut s = self.slots();
            let now = if s.may_take(tag, who) {
                let mut none = None;
                let grant = s.grant(&mut none, identity);
                if grant.is_some() {
                    s.take(tag, who);
                } else {
                    // The database is full: wait in turn, and let the balancer make room.
                    s.set_db_blocked(true);
                }
                grant
            } else {
                None
            };
            match now {
                Some(g) => Ok(g),
                None => Err(s.queue.push(tenant, user)),
            }
        };
        let (granted, waited) = match queued {
            Ok(g) => (g, Duration::ZERO),
            Err((ticket, rx)) => {
                let start = Instant::now();
                let granted = self.wait(ticket, rx, tenant, user).await?;
                (granted, start.elapsed())
            }
        };
        // From here the slot is ours: dropping it (an open that fails or is abandoned) gives it
        // back to the next waiter.
        let slot = Slot {
            pool: self.clone(),
            tenant: tenant.cloned(),
            user: user.cloned(),
            held: true,
        };
        let token = match granted {
            Grant::Conn(mut c) => {
                if is_quiet(&mut c) {
                    return Ok(self.hand_out(slot, c, waited));
                }
                // The server went away while it was idle: another idle one, or a new one in its
                // place (its token counts for the replacement).
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
                if let Some(other) = self.pop_idle(identity) {
                    return Ok(self.hand_out(slot, other, waited));
                }
                c.db_token.take()
            }
            Grant::Open(t) => Some(t),
        };
        let token = match token.or_else(|| self.db.try_reserve()) {
            Some(t) => t,
            None => match self.pop_idle(identity) {
                Some(c) => return Ok(self.hand_out(slot, c, waited)),
                None => return Err(PoolError::Timeout(waited, Limit::DbCap)),
            },
        };
        // Boxed: connecting (TCP, TLS, SCRAM) is rare, and its state would otherwise be part
        // of every session's future.
        let conn = Box::new(Box::pin(self.open(token)).await?);
        Ok(self.hand_out(slot, conn, waited))
    }

    /// Waits for the queue to hand this checkout a slot, up to `query_wait_timeout`. Cancel-safe:
    /// dropped at any point (timeout, the client's cancel, the client gone), it leaves the
    /// queue, or gives back what it was handed (see [`Waiting`]).
    async fn wait(
        &self,
        ticket: Ticket,
        rx: oneshot::Receiver<Grant>,
        tenant: Option<&Arc<TenantTag>>,
        user: Option<&Arc<UserTag>>,
    ) -> Result<Grant, PoolError> {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = tenant {
            t.usage.waiting.fetch_add(1, Ordering::Relaxed);
        }
        let mut w = Waiting {
            pool: self,
            tenant,
            user,
            ticket,
            rx,
            done: false,
        };
        let total = Duration::from_micros(self.timeout_us.load(Ordering::Relaxed));
        let mut limit = total;
        if let Some(after) = self.reserve_after(limit) {
            if let Ok(got) = tokio::time::timeout(after, &mut w.rx).await {
                w.done = true;
                return got.map_err(|_| PoolError::Closed);
            }
            self.use_reserve();
            limit = limit.saturating_sub(after);
        }
        // 0: no limit (`query_wait_timeout = 0`, as in PgBouncer).
        let granted = if limit.is_zero() {
            Ok((&mut w.rx).await)
        } else {
            tokio::time::timeout(limit, &mut w.rx).await
        };
        match granted {
            Ok(Ok(grant)) => {
                w.done = true;
                Ok(grant)
            }
            Ok(Err(_)) => {
                // The sender went away without a grant: only when the pool itself is dropped.
                w.done = true;
                Err(PoolError::Closed)
            }
            Err(_) => {
                let limit = self
                    .slots()
                    .limit(tenant.map(Arc::as_ref), user.map(Arc::as_ref));
                Err(PoolError::Timeout(total, limit))
            }
        }
    }

    /// A healthy idle connection for a checkout that already holds its slot, preferring one
    /// carrying `identity`. (Connections past `server_lifetime` are retired at release and by
    /// the reaper, not here: no clock read.)
    fn pop_idle(&self, identity: u64) -> Option<Box<UpstreamConn>> {
        loop {
            let mut conn = take_idle(&mut self.slots().idle, identity)?;
            if is_quiet(&mut conn) {
                return Some(conn);
            }
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A checkout queued in the pool's [`FairQueue`](super::queue::FairQueue). Dropped before it was served (timeout,
/// cancel, client gone), it takes itself out of the queue, or, when a release handed it a slot
/// in the meantime, gives that slot and connection back: nothing leaks.
pub(super) struct Waiting<'a> {
    pub(super) pool: &'a Pool,
    /// Its tenant (whose count the grant incremented).
    pub(super) tenant: Option<&'a Arc<TenantTag>>,
    /// Its user (whose count the grant incremented).
    pub(super) user: Option<&'a Arc<UserTag>>,
    pub(super) ticket: Ticket,
    /// Where the grant arrives.
    pub(super) rx: oneshot::Receiver<Grant>,
    /// The grant was received (or can never come): nothing to undo.
    pub(super) done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pool.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = self.tenant {
            t.usage.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        if self.done {
            return;
        }
        let mut s = self.pool.slots();
        if s.queue.remove(self.ticket) {
            if s.queue.is_empty() {
                s.set_db_blocked(false);
            }
            return;
        }
        // No longer queued: served, and the grant was sent under the lock we now hold.
        if let Ok(grant) = self.rx.try_recv() {
            s.give_back(
                self.tenant.map(Arc::as_ref),
                self.user.map(Arc::as_ref),
                grant.into_conn(),
            );
        }
    }
}
