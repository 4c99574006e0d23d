//! The pool's state under its one lock: free slots, idle connections and the queue, and the
//! hand-off of a released slot (with its connection) to the next waiter in the fair order.

use super::queue::{self, FairQueue, TenantTag};
use super::UpstreamConn;

/// What a waiting checkout is handed: a slot, with the connection just released from it when
/// there was a clean one (None: take an idle connection or open one).
pub(super) type Grant = Option<Box<UpstreamConn>>;

/// Everything a checkout or a release decides on, under one lock (taken once per checkout and
/// once per release): free slots, idle connections, and who waits.
pub(super) struct Slots {
    /// Slots nobody holds. While it is above zero, every waiter belongs to a tenant at its cap
    /// (or the pool is paused): a release hands its slot to an eligible waiter before counting
    /// it free, so a checkout that finds a free slot never overtakes anyone it should queue
    /// behind.
    pub(super) free: usize,
    /// Slots to retire as they come back (a reload shrank the pool while they were held).
    pub(super) debt: usize,
    /// PAUSE: slots are not handed out until RESUME (PgBouncer's semantics, minus waiting for
    /// active ones).
    pub(super) paused: bool,
    /// `[tenant] max_server_connections`: most slots one tenant may hold (None: no cap).
    pub(super) tenant_cap: Option<usize>,
    /// Idle connections, most recently used last.
    /// Boxed, like the guard's: a checkout or release moves a pointer, not the ~500-byte
    /// connection (callgrind showed those moves as 4 % of the proxy's instructions).
    #[allow(clippy::vec_box)]
    pub(super) idle: Vec<Box<UpstreamConn>>,
    /// Checkouts waiting for a slot, per tenant, served round-robin.
    pub(super) queue: FairQueue<Grant>,
    /// Reserve slots added (see `sizing`) and not yet retired.
    pub(super) reserve_in_use: usize,
}

impl Slots {
    /// Whether a checkout of `tag` may take a free slot right now.
    #[inline]
    pub(super) fn may_take(&self, tag: Option<&TenantTag>) -> bool {
        !self.paused && self.free > 0 && queue::under_cap(tag, self.tenant_cap)
    }

    /// Takes a slot for `tag` (after [`Slots::may_take`], or for the waiter `dispatch` serves).
    #[inline]
    pub(super) fn take(&mut self, tag: Option<&TenantTag>) {
        self.free -= 1;
        if let Some(t) = tag {
            t.acquire();
        }
    }

    /// A slot of `tag` comes back, with its connection if that is clean and young enough.
    pub(super) fn give_back(&mut self, tag: Option<&TenantTag>, conn: Grant) {
        if let Some(t) = tag {
            t.release();
        }
        if self.debt > 0 {
            self.debt -= 1;
            self.idle.extend(conn);
            return;
        }
        let mut conn = conn;
        if self.retire_reserve(&mut conn) {
            return;
        }
        self.free += 1;
        self.dispatch(conn);
    }

    /// Hands free slots to waiters in the queue's order while any may take one; `conn` goes
    /// to the first of them (a direct hand-off: nobody can take it in between), or to the idle
    /// stack when nobody may.
    pub(super) fn dispatch(&mut self, mut conn: Grant) {
        while !self.paused && self.free > 0 && !self.queue.is_empty() {
            let cap = self.tenant_cap;
            let Some((tag, tx)) = self.queue.pop_next(|t| queue::under_cap(t, cap)) else {
                break;
            };
            self.take(tag.as_deref());
            // Sent under the lock: a waiter giving up takes the lock first, so it either finds
            // itself still queued or finds this grant in its channel (see `Waiting`).
            if let Err(back) = tx.send(conn.take()) {
                // The receiver is gone without leaving the queue (not expected): keep the slot.
                conn = back;
                self.free += 1;
                if let Some(t) = tag.as_deref() {
                    t.release();
                }
            }
        }
        self.idle.extend(conn);
    }
}

/// The most recently used idle connection carrying `identity`, else the most recently used.
#[inline]
#[allow(clippy::vec_box)]
pub(super) fn take_idle(
    idle: &mut Vec<Box<UpstreamConn>>,
    identity: u64,
) -> Option<Box<UpstreamConn>> {
    match idle.iter().rposition(|c| c.identity == identity) {
        Some(i) => Some(idle.remove(i)),
        None => idle.pop(),
    }
}
