//! Upstream connection pools: a checkout guard that cleans up on drop (STYLE habit 7).
//!
//! A pool is a semaphore of `pool_size` permits plus a stack of idle connections. A client
//! holds a [`PoolGuard`] while attached; dropping it returns a clean connection (ReadyForQuery
//! `I`, nothing in flight) to the stack and closes anything else, so a dirty connection can
//! never reach the next tenant.

pub mod reset;
pub mod upstream;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Counters for metrics and the admin console.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections checked out right now.
    pub active: AtomicUsize,
    /// Clients waiting for a permit right now.
    pub waiting: AtomicUsize,
    /// Connections opened since start.
    pub opened: AtomicU64,
    /// Connections closed since start.
    pub closed: AtomicU64,
    /// Checkouts since start.
    pub checkouts: AtomicU64,
    /// Total microseconds clients spent waiting for a connection.
    pub wait_us: AtomicU64,
    /// Transactions completed (ReadyForQuery `I` after client work).
    pub xacts: AtomicU64,
    /// Queries forwarded (simple Query and Execute messages).
    pub queries: AtomicU64,
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

/// One pool per upstream role.
pub struct Pool {
    /// `app` or `breakglass`, for logs and SHOW POOLS.
    pub name: &'static str,
    /// How to open connections.
    spec: UpstreamSpec,
    /// `pool_size` permits: a permit is a right to hold one connection.
    permits: Arc<Semaphore>,
    /// Idle connections, most recently used last.
    /// Boxed, like the guard's: a checkout or release moves a pointer, not the ~500-byte
    /// connection (callgrind showed those moves as 4 % of the proxy's instructions).
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<UpstreamConn>>>,
    /// Configured size, for reporting (changes on reload).
    pub size: AtomicUsize,
    /// How long a checkout may wait.
    timeout: Duration,
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
    /// PAUSE: new checkouts wait until RESUME.
    paused: tokio::sync::watch::Sender<bool>,
}

/// Pool sizing and timing.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Most connections.
    pub size: usize,
    /// Checkout wait limit.
    pub timeout: Duration,
    /// Idle connection lifetime.
    pub idle_timeout: Duration,
    /// Connection lifetime.
    pub lifetime: Duration,
}

impl Pool {
    /// A new, empty pool.
    pub fn new(name: &'static str, spec: UpstreamSpec, limits: PoolLimits) -> Arc<Pool> {
        Arc::new(Pool {
            name,
            spec,
            permits: Arc::new(Semaphore::new(limits.size)),
            idle: Mutex::new(Vec::new()),
            size: AtomicUsize::new(limits.size),
            timeout: limits.timeout,
            idle_timeout: limits.idle_timeout,
            lifetime: limits.lifetime,
            stats: PoolStats::default(),
            server_params: Mutex::new(None),
            conns: Mutex::new(Vec::new()),
            paused: tokio::sync::watch::channel(false).0,
        })
    }

    /// Stops handing out connections until [`Pool::resume`] (admin console PAUSE).
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Hands out connections again.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Whether the pool is paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
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

    /// Changes the number of connections allowed (SIGHUP). Shrinking waits for connections
    /// in use to come back before their slots disappear; nothing is interrupted.
    pub fn resize(&self, new_size: usize) {
        let old = self.size.swap(new_size, Ordering::Relaxed);
        if new_size > old {
            self.permits.add_permits(new_size - old);
        } else if new_size < old {
            let permits = self.permits.clone();
            let n = (old - new_size) as u32;
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(n).await {
                    p.forget();
                }
            });
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

    /// A connection right now, without waiting, opening, or reading the clock: a free slot, no
    /// PAUSE, and a healthy idle connection, preferably one already carrying `identity` (see
    /// `tenant::inject`). `None` means [`Pool::checkout`] must wait or open.
    pub fn try_checkout(self: &Arc<Self>, identity: u64) -> Option<PoolGuard> {
        let permit = self.try_permit()?;
        let conn = self.pop_idle(identity)?;
        Some(self.hand_out(conn, permit, Duration::ZERO))
    }

    /// A free slot right now, unless the pool is paused.
    fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        if *self.paused.borrow() {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Bookkeeping shared by both checkout paths.
    fn hand_out(
        self: &Arc<Self>,
        conn: Box<UpstreamConn>,
        permit: OwnedSemaphorePermit,
        waited: Duration,
    ) -> PoolGuard {
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        crate::metrics::pool_wait(self.name, waited);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        conn.info.set_active(true);
        PoolGuard {
            conn: Some(conn),
            _permit: permit,
            pool: self.clone(),
        }
    }

    /// Checks out a connection, waiting up to `pool_timeout` for a free slot; prefers one
    /// carrying `identity`.
    pub async fn checkout(self: &Arc<Self>, identity: u64) -> Result<PoolGuard, PoolError> {
        // Fast path: a free slot and no PAUSE, without arming a timer or reading the clock.
        let fast = self.try_permit();
        let start = fast.is_none().then(Instant::now);
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = match fast {
            Some(p) => Ok(Ok(p)),
            None => {
                let mut paused = self.paused.subscribe();
                let permits = self.permits.clone();
                tokio::time::timeout(self.timeout, async move {
                    // PAUSE holds new checkouts (PgBouncer's semantics, minus waiting for active ones).
                    let _ = paused.wait_for(|p| !*p).await;
                    permits.acquire_owned().await
                })
                .await
            }
        };
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        let permit = match permit {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(PoolError::Closed),
            Err(_) => return Err(PoolError::Timeout(self.timeout)),
        };
        let conn = match self.pop_idle(identity) {
            Some(c) => c,
            // Boxed: connecting (TCP, TLS, SCRAM) is rare, and its state would otherwise be
            // part of every session's future.
            None => Box::new(Box::pin(self.open()).await?),
        };
        let waited = start.map(|s| s.elapsed()).unwrap_or_default();
        Ok(self.hand_out(conn, permit, waited))
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

    /// Takes the most recently used idle connection that still carries `identity`, else the
    /// most recently used one, if healthy. (Connections past `server_lifetime` are retired at
    /// release and by the reaper, not here: no clock read.)
    fn pop_idle(&self, identity: u64) -> Option<Box<UpstreamConn>> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().ok()?;
                match idle.iter().rposition(|c| c.identity == identity) {
                    Some(i) => idle.remove(i),
                    None => idle.pop()?,
                }
            };
            if is_quiet(&mut conn) {
                return Some(conn);
            }
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Number of idle connections.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Closes idle connections unused for longer than `idle_timeout` or older than
    /// `server_lifetime`.
    pub fn reap_idle(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let before = idle.len();
        let now = Instant::now();
        idle.retain(|c| {
            now.saturating_duration_since(c.last_used) < self.idle_timeout
                && now.saturating_duration_since(c.created) < self.lifetime
        });
        let dropped = before - idle.len();
        self.stats
            .closed
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Closes every idle connection (shutdown, or after an upstream restart).
    pub fn clear_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let n = idle.len();
            idle.clear();
            self.stats.closed.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn release(&self, mut conn: Box<UpstreamConn>) {
        conn.last_used = Instant::now();
        conn.info.set_active(false);
        if conn.last_used.saturating_duration_since(conn.created) >= self.lifetime {
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(_) => {
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
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
    /// The slot this connection occupies; freed on drop.
    _permit: OwnedSemaphorePermit,
    /// Where to return it.
    pool: Arc<Pool>,
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
        &self.pool
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
            self.pool.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        self.pool.stats.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(conn) = self.conn.take() {
            if conn.status == b'I'
                && !conn.busy
                && conn.stream.buffered_len() == 0
                && !conn.stream.has_pending_writes()
            {
                self.pool.release(conn);
            } else {
                // Not idle: closing the socket makes PostgreSQL roll the transaction back.
                self.pool.stats.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
