//! Upstream connection pools: a checkout guard that cleans up on drop (STYLE habit 7).
//!
//! A pool is `pool_size` slots, a stack of idle connections and a [`queue::FairQueue`] of
//! waiting checkouts, all under one lock. A client holds a [`PoolGuard`] (a slot and a
//! connection) while attached; dropping it hands a clean connection (ReadyForQuery `I`, nothing
//! in flight) straight to the next waiter in the tenants' round-robin, or to the idle stack, and
//! closes anything else, so a dirty connection can never reach the next tenant. A tenant never
//! holds more than `[tenant] max_server_connections` slots (see `queue`).

pub mod queue;
pub mod rate;
pub mod reset;
pub mod sizing;
pub mod stats;
pub mod upstream;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::sync::oneshot;

use queue::{FairQueue, TenantTag, TenantTags, Ticket};
pub use sizing::Sizing;
pub use stats::{PoolStats, StatsSnapshot};
pub use upstream::{ConnInfo, UpstreamConn, UpstreamError, UpstreamSpec};

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became free within `pool_timeout`.
    #[error("timed out after {0:?} waiting for a server connection")]
    Timeout(Duration),
    /// A new connection could not be opened.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The pool is shutting down.
    #[error("pool is closed")]
    Closed,
    /// The client cancelled its query while it waited for a connection.
    #[error("canceling statement due to user request")]
    Cancelled,
}

/// A server connection as SHOW SERVERS reports it.
#[derive(Debug, Clone)]
pub struct ServerRow {
    /// The connection's process-unique id.
    pub id: u64,
    /// The backend pid.
    pub pid: i32,
    /// `active` or `idle`.
    pub state: &'static str,
    /// When the connection was opened.
    pub created: std::time::SystemTime,
    /// When it was last checked out or released.
    pub since: std::time::SystemTime,
}

/// What a waiting checkout is handed: a slot, with the connection just released from it when
/// there was a clean one (None: take an idle connection or open one).
type Grant = Option<Box<UpstreamConn>>;

/// Everything a checkout or a release decides on, under one lock (taken once per checkout and
/// once per release): free slots, idle connections, and who waits.
struct Slots {
    /// Slots nobody holds. While it is above zero, every waiter belongs to a tenant at its cap
    /// (or the pool is paused): a release hands its slot to an eligible waiter before counting
    /// it free, so a checkout that finds a free slot never overtakes anyone it should queue
    /// behind.
    free: usize,
    /// Slots to retire as they come back (a reload shrank the pool while they were held).
    debt: usize,
    /// PAUSE: slots are not handed out until RESUME (PgBouncer's semantics, minus waiting for
    /// active ones).
    paused: bool,
    /// `[tenant] max_server_connections`: most slots one tenant may hold (None: no cap).
    tenant_cap: Option<usize>,
    /// Idle connections, most recently used last.
    /// Boxed, like the guard's: a checkout or release moves a pointer, not the ~500-byte
    /// connection (callgrind showed those moves as 4 % of the proxy's instructions).
    #[allow(clippy::vec_box)]
    idle: Vec<Box<UpstreamConn>>,
    /// Checkouts waiting for a slot, per tenant, served round-robin.
    queue: FairQueue<Grant>,
    /// Reserve slots added (see `sizing`) and not yet retired.
    reserve_in_use: usize,
}

impl Slots {
    /// Whether a checkout of `tag` may take a free slot right now.
    #[inline]
    fn may_take(&self, tag: Option<&TenantTag>) -> bool {
        !self.paused && self.free > 0 && queue::under_cap(tag, self.tenant_cap)
    }

    /// Takes a slot for `tag` (after [`Slots::may_take`], or for the waiter `dispatch` serves).
    #[inline]
    fn take(&mut self, tag: Option<&TenantTag>) {
        self.free -= 1;
        if let Some(t) = tag {
            t.acquire();
        }
    }

    /// A slot of `tag` comes back, with its connection if that is clean and young enough.
    fn give_back(&mut self, tag: Option<&TenantTag>, conn: Grant) {
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
    fn dispatch(&mut self, mut conn: Grant) {
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

/// One pool per upstream role.
pub struct Pool {
    /// `app` or `breakglass`, for logs and SHOW POOLS.
    pub name: &'static str,
    /// How to open connections.
    spec: UpstreamSpec,
    /// Free slots, idle connections and waiters (see [`Slots`]).
    slots: Mutex<Slots>,
    /// One counter per tenant with a live session, so a checkout counts against its tenant's
    /// cap without hashing the tenant id on every transaction.
    tenants: TenantTags,
    /// Configured size, for reporting (changes on reload).
    pub size: AtomicUsize,
    /// How long a checkout may wait, in microseconds (`query_wait_timeout`, reloadable; 0: no
    /// limit).
    timeout_us: AtomicU64,
    /// Close idle connections unused for this long.
    idle_timeout: Duration,
    /// Retire connections older than this when released.
    lifetime: Duration,
    /// Counters.
    pub stats: PoolStats,
    /// ParameterStatus values of the first connection, shown to clients at login.
    server_params: Mutex<Option<Vec<(String, String)>>>,
    /// Every open connection's SHOW SERVERS entry (registered at open, pruned when listed).
    conns: Mutex<Vec<Weak<ConnInfo>>>,
    /// Connections with a smaller id are closed when they come back (console RECONNECT).
    retire_below: AtomicU64,
    /// `min_pool_size` and the reserve pool.
    sizing: Sizing,
}

/// Pool sizing and timing.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Most connections.
    pub size: usize,
    /// Most connections one tenant may hold (`[tenant] max_server_connections`).
    pub tenant_cap: Option<usize>,
    /// Checkout wait limit.
    pub timeout: Duration,
    /// Idle connection lifetime.
    pub idle_timeout: Duration,
    /// Connection lifetime.
    pub lifetime: Duration,
    /// `min_pool_size` and the reserve pool.
    pub sizing: Sizing,
}

impl Pool {
    /// A new, empty pool.
    pub fn new(name: &'static str, spec: UpstreamSpec, limits: PoolLimits) -> Arc<Pool> {
        Arc::new(Pool {
            name,
            spec,
            slots: Mutex::new(Slots {
                free: limits.size,
                debt: 0,
                paused: false,
                tenant_cap: limits.tenant_cap,
                idle: Vec::new(),
                queue: FairQueue::default(),
                reserve_in_use: 0,
            }),
            tenants: TenantTags::default(),
            size: AtomicUsize::new(limits.size),
            timeout_us: AtomicU64::new(limits.timeout.as_micros() as u64),
            idle_timeout: limits.idle_timeout,
            lifetime: limits.lifetime,
            stats: PoolStats::default(),
            server_params: Mutex::new(None),
            conns: Mutex::new(Vec::new()),
            retire_below: AtomicU64::new(0),
            sizing: limits.sizing,
        })
    }

    /// The slot state. A panic while it was held cannot leave it half-updated in a way worse
    /// than refusing service (every update is a few integer and list operations), so a
    /// poisoned lock is used as it is.
    #[inline]
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops handing out connections until [`Pool::resume`] (admin console PAUSE).
    pub fn pause(&self) {
        self.slots().paused = true;
    }

    /// Hands out connections again, to the waiters first.
    pub fn resume(&self) {
        let mut s = self.slots();
        s.paused = false;
        s.dispatch(None);
    }

    /// Whether the pool is paused.
    pub fn is_paused(&self) -> bool {
        self.slots().paused
    }

    /// The counter of `tenant`'s checkouts, shared by its sessions: taken once when a session
    /// starts or switches tenant, passed to every checkout.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantTag> {
        self.tenants.get(tenant)
    }

    /// Each tenant with a live session and the server connections it holds.
    pub fn tenants_held(&self) -> Vec<(String, usize)> {
        self.tenants.held()
    }

    /// Each tenant with a live session (SHOW TENANTS, per-tenant metrics).
    pub fn tenant_tags(&self) -> Vec<Arc<TenantTag>> {
        self.tenants.all()
    }

    /// Changes how long a checkout may wait (SIGHUP; zero: no limit); applies to new waits.
    pub fn set_wait_timeout(&self, timeout: Duration) {
        self.timeout_us
            .store(timeout.as_micros() as u64, Ordering::Relaxed);
    }

    /// Changes the per-tenant cap (SIGHUP). Raising it serves the waiters it now admits;
    /// lowering it lets connections in use finish, new checkouts wait.
    pub fn set_tenant_cap(&self, cap: Option<usize>) {
        let mut s = self.slots();
        s.tenant_cap = cap;
        s.dispatch(None);
    }

    /// Every server connection, active and idle, for SHOW SERVERS.
    pub fn server_rows(&self) -> Vec<ServerRow> {
        let Ok(mut conns) = self.conns.lock() else {
            return Vec::new();
        };
        conns.retain(|w| w.strong_count() > 0);
        let mut rows: Vec<ServerRow> = conns
            .iter()
            .filter_map(Weak::upgrade)
            .map(|c| ServerRow {
                id: c.id,
                pid: c.pid.load(Ordering::Relaxed),
                state: if c.active.load(Ordering::Relaxed) {
                    "active"
                } else {
                    "idle"
                },
                created: c.created,
                since: UNIX_EPOCH + Duration::from_micros(c.since_us.load(Ordering::Relaxed)),
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// Console RECONNECT: every connection open now is closed as soon as it is idle (idle
    /// ones at once, the others when released); new ones are opened as needed.
    pub fn reconnect(&self) {
        self.retire_below
            .store(upstream::next_conn_id(), Ordering::Relaxed);
        let mut s = self.slots();
        let before = s.idle.len();
        s.idle.retain(|c| !self.retired(c));
        let n = before - s.idle.len();
        self.stats.closed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Connections a RECONNECT (or KILL) asked to close that are still open (WAIT_CLOSE).
    pub fn retiring(&self) -> usize {
        let mark = self.retire_below.load(Ordering::Relaxed);
        self.server_rows().iter().filter(|r| r.id < mark).count()
    }

    /// Whether `conn` was open at the last RECONNECT.
    fn retired(&self, conn: &UpstreamConn) -> bool {
        conn.info.id < self.retire_below.load(Ordering::Relaxed)
    }

    /// Changes the number of connections allowed (SIGHUP). Shrinking waits for connections
    /// in use to come back before their slots disappear; nothing is interrupted.
    pub fn resize(&self, new_size: usize) {
        let old = self.size.swap(new_size, Ordering::Relaxed);
        let mut s = self.slots();
        if new_size > old {
            let grow = new_size - old;
            let repaid = grow.min(s.debt);
            s.debt -= repaid;
            s.free += grow - repaid;
            s.dispatch(None);
        } else if new_size < old {
            let shrink = old - new_size;
            let now = shrink.min(s.free);
            s.free -= now;
            s.debt += shrink - now;
        }
    }

    /// The configured size now.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// The connection spec (host/port are needed to forward cancels).
    pub fn spec(&self) -> &UpstreamSpec {
        &self.spec
    }

    /// A connection right now, without waiting, opening, allocating or reading the clock: a
    /// free slot (nobody eligible waits for it, see [`Slots::free`]), no PAUSE, `tenant` under
    /// its cap, and a healthy idle connection, preferably one already carrying `identity` (see
    /// `tenant::inject`). One lock. `None` means [`Pool::checkout`] must wait or open.
    pub fn try_checkout(
        self: &Arc<Self>,
        identity: u64,
        tenant: Option<&Arc<TenantTag>>,
    ) -> Option<PoolGuard> {
        let mut conn = {
            let mut s = self.slots();
            if s.idle.is_empty() || !s.may_take(tenant.map(Arc::as_ref)) {
                return None;
            }
            let conn = take_idle(&mut s.idle, identity)?;
            s.take(tenant.map(Arc::as_ref));
            conn
        };
        let slot = Slot {
            pool: self.clone(),
            tenant: tenant.cloned(),
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
        crate::metrics::pool_wait(self.name, waited);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        conn.info.set_active(true);
        PoolGuard {
            conn: Some(conn),
            slot,
        }
    }

    /// Checks out a connection for `tenant` (None: the proxy's own work), waiting up to
    /// `pool_timeout` for its turn (see `queue`); prefers one carrying `identity`.
    pub async fn checkout(
        self: &Arc<Self>,
        identity: u64,
        tenant: Option<&Arc<TenantTag>>,
    ) -> Result<PoolGuard, PoolError> {
        let queued = {
            let mut s = self.slots();
            if s.may_take(tenant.map(Arc::as_ref)) {
                s.take(tenant.map(Arc::as_ref));
                None
            } else {
                Some(s.queue.push(tenant))
            }
        };
        let (granted, waited) = match queued {
            None => (None, Duration::ZERO),
            Some((ticket, rx)) => {
                let start = Instant::now();
                let granted = self.wait(ticket, rx, tenant).await?;
                (granted, start.elapsed())
            }
        };
        // From here the slot is ours: dropping it (an open that fails or is abandoned) gives it
        // back to the next waiter.
        let slot = Slot {
            pool: self.clone(),
            tenant: tenant.cloned(),
            held: true,
        };
        let conn = match granted.or_else(|| self.pop_idle(identity)) {
            Some(c) => c,
            // Boxed: connecting (TCP, TLS, SCRAM) is rare, and its state would otherwise be
            // part of every session's future.
            None => Box::new(Box::pin(self.open()).await?),
        };
        Ok(self.hand_out(slot, conn, waited))
    }

    /// Waits for the queue to hand this checkout a slot, up to `pool_timeout`. Cancel-safe:
    /// dropped at any point (timeout, the client's cancel, the client gone), it leaves the
    /// queue, or gives back what it was handed (see [`Waiting`]).
    async fn wait(
        &self,
        ticket: Ticket,
        rx: oneshot::Receiver<Grant>,
        tenant: Option<&Arc<TenantTag>>,
    ) -> Result<Grant, PoolError> {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = tenant {
            t.usage.waiting.fetch_add(1, Ordering::Relaxed);
        }
        let mut w = Waiting {
            pool: self,
            tenant,
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
            Err(_) => Err(PoolError::Timeout(total)),
        }
    }

    /// Opens a fresh connection (also used at start-up to learn server parameters).
    pub async fn open(&self) -> Result<UpstreamConn, UpstreamError> {
        let conn = upstream::connect(&self.spec).await?;
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.conns.lock() {
            conns.retain(|w| w.strong_count() > 0);
            conns.push(Arc::downgrade(&conn.info));
        }
        if let Ok(mut p) = self.server_params.lock() {
            if p.is_none() {
                *p = Some(conn.params.clone());
            }
        }
        Ok(conn)
    }

    /// Parameters to report to clients; `None` until one connection has been made.
    pub fn server_params(&self) -> Option<Vec<(String, String)>> {
        self.server_params.lock().ok().and_then(|p| p.clone())
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

    /// Number of idle connections.
    pub fn idle_count(&self) -> usize {
        self.slots().idle.len()
    }

    /// Closes idle connections unused for longer than `idle_timeout` or older than
    /// `server_lifetime`.
    pub fn reap_idle(&self) {
        let mut s = self.slots();
        let before = s.idle.len();
        let now = Instant::now();
        s.idle.retain(|c| {
            now.saturating_duration_since(c.last_used) < self.idle_timeout
                && now.saturating_duration_since(c.created) < self.lifetime
        });
        let dropped = before - s.idle.len();
        self.stats
            .closed
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Closes every idle connection (shutdown, or after an upstream restart).
    pub fn clear_idle(&self) {
        let mut s = self.slots();
        let n = s.idle.len();
        s.idle.clear();
        self.stats.closed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A clean connection coming back: None when it is past `server_lifetime` (closed).
    fn recycle(&self, mut conn: Box<UpstreamConn>) -> Grant {
        conn.last_used = Instant::now();
        conn.info.set_active(false);
        if conn.last_used.saturating_duration_since(conn.created) >= self.lifetime
            || self.retired(&conn)
        {
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(conn)
    }
}

/// The most recently used idle connection carrying `identity`, else the most recently used.
#[inline]
#[allow(clippy::vec_box)]
fn take_idle(idle: &mut Vec<Box<UpstreamConn>>, identity: u64) -> Option<Box<UpstreamConn>> {
    match idle.iter().rposition(|c| c.identity == identity) {
        Some(i) => Some(idle.remove(i)),
        None => idle.pop(),
    }
}

/// A checkout queued in the pool's [`FairQueue`]. Dropped before it was served (timeout,
/// cancel, client gone), it takes itself out of the queue, or, when a release handed it a slot
/// in the meantime, gives that slot and connection back: nothing leaks.
struct Waiting<'a> {
    /// The pool it waits in.
    pool: &'a Pool,
    /// Its tenant (whose count the grant incremented).
    tenant: Option<&'a Arc<TenantTag>>,
    /// Its place in the queue.
    ticket: Ticket,
    /// Where the grant arrives.
    rx: oneshot::Receiver<Grant>,
    /// The grant was received (or can never come): nothing to undo.
    done: bool,
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
            return;
        }
        // No longer queued: served, and the grant was sent under the lock we now hold.
        if let Ok(grant) = self.rx.try_recv() {
            s.give_back(self.tenant.map(Arc::as_ref), grant);
        }
    }
}

/// One held slot of a pool, counted against its tenant; given back exactly once.
struct Slot {
    /// Where it belongs.
    pool: Arc<Pool>,
    /// The tenant it counts against.
    tenant: Option<Arc<TenantTag>>,
    /// Still held (false once given back).
    held: bool,
}

impl Slot {
    /// Gives the slot back with `conn` (a clean connection, or None), to the next waiter.
    fn give_back(&mut self, conn: Grant) {
        if std::mem::take(&mut self.held) {
            self.pool.slots().give_back(self.tenant.as_deref(), conn);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.give_back(None);
    }
}

/// Whether an idle connection has neither closed nor sent anything unexpected.
///
/// An idle server only speaks when something is wrong (admin shutdown FATAL, EOF), so any
/// readable data or EOF means the connection must not be reused.
fn is_quiet(conn: &mut UpstreamConn) -> bool {
    if conn.stream.buffered_len() > 0 {
        return false;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let fut = conn.stream.fill();
    let mut fut = std::pin::pin!(fut);
    matches!(fut.as_mut().poll(&mut cx), Poll::Pending)
}

/// A checked-out connection; dropping it returns it to the pool only if it is clean.
pub struct PoolGuard {
    /// The connection (taken out on drop).
    conn: Option<Box<UpstreamConn>>,
    /// The slot this connection occupies; given back (with the connection when clean) on drop.
    slot: Slot,
}

impl PoolGuard {
    /// The connection.
    #[inline]
    pub fn conn(&mut self) -> &mut UpstreamConn {
        // Invariant: `conn` is Some from checkout until drop.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("guard used after drop"))
    }

    /// Read-only access.
    #[inline]
    pub fn conn_ref(&self) -> &UpstreamConn {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("guard used after drop"))
    }

    /// The pool this connection belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.slot.pool
    }

    /// Closes the connection and keeps its slot until the server has ended the backend
    /// (Terminate, then EOF, bounded), so PostgreSQL never shows more than `pool_size`
    /// backends for the role while a replacement is opened.
    pub async fn close_gracefully(mut self) {
        if let Some(conn) = self.conn.as_mut() {
            crate::protocol::messages::write_msg(conn.stream.out(), b'X', |_| {});
            let drain = async {
                if conn.stream.flush().await.is_err() {
                    return;
                }
                // Discard whatever is still in flight (an error for a cancelled query ...).
                while conn.stream.fill().await.is_ok() {
                    while let Ok(Some(_)) = conn.stream.try_buffered_frame() {}
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
        }
        self.discard();
    }

    /// Marks the connection unusable: it will be closed, not returned.
    pub fn discard(mut self) {
        if self.conn.take().is_some() {
            self.slot.pool.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let pool = &self.slot.pool;
        pool.stats.active.fetch_sub(1, Ordering::Relaxed);
        let back = match self.conn.take() {
            Some(conn)
                if conn.status == b'I'
                    && !conn.busy
                    && conn.stream.buffered_len() == 0
                    && !conn.stream.has_pending_writes() =>
            {
                pool.recycle(conn)
            }
            Some(_) => {
                // Not idle: closing the socket makes PostgreSQL roll the transaction back.
                pool.stats.closed.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        self.slot.give_back(back);
    }
}

#[cfg(test)]
mod tests {
    //! Cancellation safety of the queue, without a server: the only slot is held by hand, and
    //! a connection that would be opened fails at once (port 1 refuses).
    use super::*;

    fn pool(size: usize) -> Arc<Pool> {
        let spec = UpstreamSpec {
            host: "127.0.0.1".into(),
            port: 1,
            database: "x".into(),
            user: "x".into(),
            password: None,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            max_message: 1 << 20,
        };
        Pool::new(
            "test",
            spec,
            PoolLimits {
                size,
                tenant_cap: None,
                timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(60),
                lifetime: Duration::from_secs(60),
                sizing: Sizing::default(),
            },
        )
    }

    /// Takes a free slot as a checkout would.
    fn hold(pool: &Arc<Pool>, tenant: Option<&Arc<TenantTag>>) -> Slot {
        pool.slots().take(tenant.map(|t| &**t));
        Slot {
            pool: pool.clone(),
            tenant: tenant.cloned(),
            held: true,
        }
    }

    #[test]
    fn a_waiter_served_as_it_gives_up_gives_the_slot_back() {
        let pool = pool(1);
        let a = pool.tenant("a");
        let held = hold(&pool, None);
        let (ticket, rx) = pool.slots().queue.push(Some(&a));
        pool.stats.waiting.fetch_add(1, Ordering::Relaxed);
        a.usage.waiting.fetch_add(1, Ordering::Relaxed);
        let waiter = Waiting {
            pool: &pool,
            tenant: Some(&a),
            ticket,
            rx,
            done: false,
        };
        // The release hands the slot to the waiter: sent, not yet received.
        drop(held);
        assert_eq!((a.held(), pool.slots().free), (1, 0));
        // The waiter gives up (timeout, cancel) before it polls again: nothing leaks.
        drop(waiter);
        assert_eq!((a.held(), pool.slots().free), (0, 1));
        assert_eq!(pool.stats.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(a.usage.waiting.load(Ordering::Relaxed), 0);
        assert!(pool.slots().queue.is_empty());
    }

    #[tokio::test]
    async fn abandoned_and_failed_checkouts_leave_the_queue_and_the_slot() {
        let pool = pool(1);
        let a = pool.tenant("a");
        let held = hold(&pool, None);
        // Abandoned while queued (the session's select! on a cancel drops the future).
        {
            let waiting = pool.checkout(0, Some(&a));
            tokio::pin!(waiting);
            let polled = futures_poll_once(waiting.as_mut()).await;
            assert!(polled.is_none(), "queued behind the held slot");
            assert_eq!(pool.slots().queue.len(), 1);
        }
        assert!(pool.slots().queue.is_empty());
        assert_eq!(pool.stats.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(
            a.usage.waiting.load(Ordering::Relaxed),
            0,
            "the tenant's count too"
        );
        // Served a slot, then the connection cannot be opened: the slot comes back.
        let waiting = tokio::spawn({
            let (pool, a) = (pool.clone(), a.clone());
            async move { pool.checkout(0, Some(&a)).await.map(|_| ()) }
        });
        while pool.slots().queue.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(held);
        let r = waiting.await.expect("task");
        assert!(matches!(r, Err(PoolError::Upstream(_))), "{r:?}");
        assert_eq!((a.held(), pool.slots().free), (0, 1));
    }

    /// Polls a future once: Some(output) if it finished.
    async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            })
        })
        .await
    }
}
