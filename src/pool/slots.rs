//! The pool's state under its one lock: free slots, idle connections and the queue, and the
//! hand-off of a released slot (with its connection) to the next waiter in the fair order.

use std::sync::Arc;

use super::limits::{under_user_cap, Database, DbToken, UserTag};
use super::queue::{self, FairQueue, TenantTag};
use super::{Limit, UpstreamConn};

/// A connection coming back with its slot: None when it was closed (dirty, too old, failed).
pub(super) type Back = Option<Box<UpstreamConn>>;

/// What a checkout is handed with its slot, decided under the lock so the database's cap holds:
/// a connection (released just now or idle), or the right to open one.
pub(super) enum Grant {
    Conn(Box<UpstreamConn>),
    /// No connection was free: open one, counted by this token.
    Open(DbToken),
}

impl Grant {
    /// The connection, if this grant carries one (an unused token is simply dropped).
    pub(super) fn into_conn(self) -> Back {
        match self {
            Grant::Conn(c) => Some(c),
            Grant::Open(_) => None,
        }
    }
}

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
    /// The database (`max_db_connections`), shared with the other pools.
    pub(super) db: Arc<Database>,
    /// Waiters are held back by `max_db_connections` alone: new checkouts queue behind them,
    /// and the database's balancer serves this pool when a connection comes free.
    pub(super) db_blocked: bool,
}

impl Slots {
    /// Whether a checkout of `tag` and `user` may take a free slot right now (it still needs a
    /// connection: an idle one, or a token to open one, see [`Slots::grant`]).
    #[inline]
    pub(super) fn may_take(&self, tag: Option<&TenantTag>, user: Option<&UserTag>) -> bool {
        !self.paused
            && self.free > 0
            && !self.db_blocked
            && queue::under_cap(tag, self.tenant_cap)
            && under_user_cap(user)
    }

    /// Why [`Slots::may_take`] says no (or would have, for a waiter that was never served).
    pub(super) fn limit(&self, tag: Option<&TenantTag>, user: Option<&UserTag>) -> Limit {
        if self.paused {
            Limit::Paused
        } else if !queue::under_cap(tag, self.tenant_cap) {
            Limit::TenantShare
        } else if !under_user_cap(user) {
            Limit::UserCap
        } else if self.db_blocked {
            Limit::DbCap
        } else {
            Limit::PoolSize
        }
    }

    /// Takes a slot for `tag` and `user` (after [`Slots::may_take`], or for the waiter
    /// `dispatch` serves).
    #[inline]
    pub(super) fn take(&mut self, tag: Option<&TenantTag>, user: Option<&UserTag>) {
        self.free -= 1;
        if let Some(t) = tag {
            t.held.acquire();
        }
        if let Some(u) = user {
            u.held.acquire();
        }
    }

    /// Undoes [`Slots::take`]'s counts (the slot itself is counted by the caller).
    #[inline]
    fn untake(tag: Option<&TenantTag>, user: Option<&UserTag>) {
        if let Some(t) = tag {
            t.held.release();
        }
        if let Some(u) = user {
            u.held.release();
        }
    }

    /// A connection for a slot about to be handed out: `conn` (just released), else an idle
    /// one (preferring `identity`), else a token to open one while the database is under
    /// `max_db_connections`. None: the database is full.
    #[inline]
    pub(super) fn grant(&mut self, conn: &mut Back, identity: u64) -> Option<Grant> {
        if let Some(c) = conn.take() {
            return Some(Grant::Conn(c));
        }
        if let Some(c) = take_idle(&mut self.idle, identity) {
            return Some(Grant::Conn(c));
        }
        self.db.try_reserve().map(Grant::Open)
    }

    /// Marks the pool blocked by the database's cap, or not.
    pub(super) fn set_db_blocked(&mut self, blocked: bool) {
        if self.db_blocked != blocked {
            self.db_blocked = blocked;
            self.db.set_blocked(blocked);
        }
    }

    /// A slot of `tag` and `user` comes back, with its connection if that is clean and young
    /// enough.
    pub(super) fn give_back(
        &mut self,
        tag: Option<&TenantTag>,
        user: Option<&UserTag>,
        conn: Back,
    ) {
        Self::untake(tag, user);
        if self.debt > 0 {
            self.debt -= 1;
            self.keep_idle(conn);
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
    /// stack when nobody may. Each waiter is handed a connection or a token to open one; when
    /// the database has none left, the pool is marked blocked (see `limits`).
    pub(super) fn dispatch(&mut self, mut conn: Back) {
        let mut blocked = false;
        while !self.paused && self.free > 0 && !self.queue.is_empty() {
            let Some(grant) = self.grant(&mut conn, 0) else {
                blocked = true;
                break;
            };
            let cap = self.tenant_cap;
            let Some((tag, user, tx)) = self.queue.pop_next(|t| queue::under_cap(t, cap)) else {
                conn = grant.into_conn();
                break;
            };
            self.take(tag.as_deref(), user.as_deref());
            // Sent under the lock: a waiter giving up takes the lock first, so it either finds
            // itself still queued or finds this grant in its channel (see `Waiting`).
            if let Err(back) = tx.send(grant) {
                // The receiver is gone without leaving the queue (not expected): keep the slot.
                conn = back.into_conn();
                self.free += 1;
                Self::untake(tag.as_deref(), user.as_deref());
            }
        }
        self.set_db_blocked(blocked);
        self.keep_idle(conn);
    }

    /// Keeps a clean connection for later (another pool blocked by the database's cap may
    /// have it closed to open its own).
    pub(super) fn keep_idle(&mut self, conn: Back) {
        if let Some(c) = conn {
            self.idle.push(c);
            self.db.went_idle();
        }
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
