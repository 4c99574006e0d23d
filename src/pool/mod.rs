//! Upstream connection pools: a checkout guard that cleans up on drop (STYLE habit 7).
//!
//! A pool is `pool_size` slots, a stack of idle connections and a [`queue::FairQueue`] of
//! waiting checkouts, all under one lock. A client holds a [`PoolGuard`] (a slot and a
//! connection) while attached; dropping it hands a clean connection (ReadyForQuery `I`, nothing
//! in flight) straight to the next waiter in the tenants' round-robin, or to the idle stack, and
//! closes anything else, so a dirty connection can never reach the next tenant. A tenant never
//! holds more than `[tenant] max_server_connections` slots (see `queue`), a `[[users]]` login
//! no more than its `max_user_connections` / `pool_size`, and the pools of the database
//! together no more than `max_db_connections` connections (see `limits`).
//!
//! Files: `slots.rs` (the state under the lock and the hand-off to the next waiter), `checkout.rs`
//! (getting a connection, waiting in the queue), `guard.rs` (what a checkout holds and how it comes
//! back), `queue.rs` (who is served next), `limits.rs` (caps across pools), `sizing.rs` (min and
//! reserve pool), `upstream.rs` (opening a connection), `reset.rs`, `rate.rs`, `stats.rs`.

mod checkout;
mod guard;
pub mod limits;
pub mod queue;
pub mod rate;
pub mod reset;
pub mod sizing;
mod slots;
pub mod stats;
pub mod upstream;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

pub use guard::PoolGuard;
use limits::{Database, DbToken};
use queue::{FairQueue, TenantTag, TenantTags};
pub use sizing::Sizing;
use slots::{Back, Slots};
pub use stats::{PoolStats, StatsSnapshot};
pub use upstream::{ConnInfo, UpstreamConn, UpstreamError, UpstreamSpec};

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became free within `query_wait_timeout`; what the checkout was waiting
    /// behind when it gave up, so the client's hint names the setting that would have helped.
    #[error("timed out after {0:?} waiting for a server connection ({1:?})")]
    Timeout(Duration, Limit),
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

/// Which limit a checkout that timed out was waiting behind, first match in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The console's PAUSE (or SUSPEND) holds new checkouts.
    Paused,
    /// The tenant holds its `[tenant] max_server_connections`.
    TenantShare,
    /// The user holds its `pool_size` / `max_user_connections`.
    UserCap,
    /// The database holds `[upstream] max_db_connections` server connections.
    DbCap,
    /// Every slot of the pool is in use (`pool_size`, plus the reserve).
    PoolSize,
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

/// Which upstream role a pool connects as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolName {
    /// The application role (`NOSUPERUSER NOBYPASSRLS`): every tenant's sessions.
    App,
    /// The break-glass role (`BYPASSRLS`): audited admin sessions, no tenant.
    Breakglass,
}

impl PoolName {
    /// As SHOW POOLS, SHOW CLIENTS, logs and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolName::App => "app",
            PoolName::Breakglass => "breakglass",
        }
    }
}

/// One pool per upstream role.
pub struct Pool {
    /// Which role, for logs and SHOW POOLS.
    pub name: PoolName,
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
    /// `idle_timeout`: idle connections unused this long are closed by the reaper.
    idle_timeout: Duration,
    /// `server_lifetime`: older connections are closed when released, or by the reaper while idle.
    lifetime: Duration,
    /// Read by SHOW STATS and SHOW POOLS, the health document and `/metrics`.
    pub stats: PoolStats,
    /// ParameterStatus values of the first connection, shown to clients at login.
    server_params: Mutex<Option<Vec<(String, String)>>>,
    /// Every open connection's SHOW SERVERS entry (registered at open, pruned when listed).
    conns: Mutex<Vec<Weak<ConnInfo>>>,
    /// Connections with a smaller id are closed when they come back (console RECONNECT).
    retire_below: AtomicU64,
    /// `min_pool_size` and the reserve pool.
    sizing: Sizing,
    /// The database this pool connects to (`max_db_connections`, users' caps), shared with
    /// the other pools.
    db: Arc<Database>,
}

/// A pool's settings from `[upstream]` (the break-glass pool takes its size from
/// `[upstream.breakglass]`).
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// `pool_size`; reserve slots come on top of it ([`Sizing`]).
    pub size: usize,
    /// Most connections one tenant may hold (`[tenant] max_server_connections`).
    pub tenant_cap: Option<usize>,
    /// `query_wait_timeout` (zero: no limit).
    pub timeout: Duration,
    /// `idle_timeout`: idle connections unused this long are closed by the reaper.
    pub idle_timeout: Duration,
    /// `server_lifetime`: older connections are closed at release, or by the reaper while idle.
    pub lifetime: Duration,
    /// `min_pool_size` and the reserve pool.
    pub sizing: Sizing,
}

impl Pool {
    /// A new, empty pool on `db` (shared by every pool of the same database).
    pub fn new(
        name: PoolName,
        spec: UpstreamSpec,
        limits: PoolLimits,
        db: &Arc<Database>,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
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
                db: db.clone(),
                db_blocked: false,
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
            db: db.clone(),
        });
        db.register(&pool);
        pool
    }

    /// The database this pool connects to (`max_db_connections`, the users' counts).
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Serves waiters again (a cap was raised, or the database has room); returns whether the
    /// pool is still blocked by `max_db_connections`.
    pub(crate) fn redispatch(&self) -> bool {
        let mut s = self.slots();
        s.dispatch(None);
        s.db_blocked
    }

    /// Closes the least recently used idle connection (for the database's cap); returns
    /// whether there was one.
    pub(crate) fn evict_idle(&self) -> bool {
        let conn = {
            let mut s = self.slots();
            if s.idle.is_empty() {
                return false;
            }
            s.idle.remove(0)
        };
        drop(conn);
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            pool = self.name.as_str(),
            "closed an idle connection for max_db_connections"
        );
        true
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

    /// Set by PAUSE, SUSPEND or KILL; SHOW POOLS and SHOW DATABASES show it.
    pub fn is_paused(&self) -> bool {
        self.slots().paused
    }

    /// The counter of `tenant`'s checkouts, shared by its sessions: taken once when a session
    /// starts or switches tenant, passed to every checkout.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantTag> {
        self.tenants.get(tenant)
    }

    /// Each tenant with a live session and the server connections it holds.
    #[cfg(feature = "internals")]
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
    /// Opens a fresh connection, counted against `max_db_connections` by `token` for as long
    /// as it is open.
    pub(super) async fn open(&self, token: DbToken) -> Result<UpstreamConn, UpstreamError> {
        let mut conn = upstream::connect(&self.spec).await?;
        conn.db_token = Some(token);
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

    /// For SHOW POOLS, the health document and `/metrics`.
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
    fn recycle(&self, mut conn: Box<UpstreamConn>) -> Back {
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

#[cfg(test)]
mod tests;
