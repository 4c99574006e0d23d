//! Limits that span pools, as PgBouncer has them: `max_db_connections` and
//! `max_user_connections` (with a user's own `pool_size`).
//!
//! - **The database** ([`Database`]): every pool (app and break-glass) connects to the one
//!   upstream database, so `max_db_connections` counts every server connection open to it,
//!   idle ones included: what PostgreSQL's `max_connections` sees. Each open connection (or
//!   one being opened) holds a [`DbToken`]; a pool that needs a new connection and finds none
//!   left keeps its waiters queued (in their fair order) and is marked *blocked*. A background
//!   balancer then closes an idle connection of another pool (PgBouncer's `evict_connection`)
//!   and serves the blocked pool as soon as a token comes back.
//! - **A user** ([`UserTag`]): the server connections a `[[users]]` login's sessions hold at
//!   once, capped by the smaller of its `pool_size` and `max_user_connections`. In PgBouncer a
//!   user owns the connections of its pools; here users share one upstream role's pool, so a
//!   user's connections are the ones its sessions hold, and its checkouts past the cap wait
//!   like any other (up to `query_wait_timeout`) while other users' go first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::queue::Held;
use super::Pool;

/// The upstream database every pool connects to: `max_db_connections` and the users' counts.
#[derive(Debug, Default)]
pub struct Database {
    /// `max_db_connections` (0: no limit). Reloadable; lowering it closes idle connections
    /// past it and lets busy ones finish.
    cap: AtomicUsize,
    /// Server connections open or being opened, every pool together (one [`DbToken`] each).
    open: AtomicUsize,
    /// Pools with waiters held back only by the cap: while above zero, a closed or newly idle
    /// connection wakes the balancer.
    blocked: AtomicUsize,
    wake: Notify,
    /// The balancer task was started (on the first block or a lowered cap).
    balancing: AtomicBool,
    /// The pools on this database, for the balancer.
    pools: Mutex<Vec<Weak<Pool>>>,
    /// Each user's cap (the smaller of its `pool_size` and `max_user_connections`), set from
    /// the configuration at start and on reload.
    user_caps: Mutex<HashMap<Box<str>, usize>>,
    /// One counter per user with a live session.
    users: Mutex<HashMap<Box<str>, Weak<UserTag>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Database {
    /// A database with `max_db_connections = cap` (0: none) and no user caps.
    pub fn new(cap: usize) -> Arc<Database> {
        let db = Database::default();
        db.cap.store(cap, Ordering::Relaxed);
        Arc::new(db)
    }

    /// `max_db_connections` now (0: none).
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// Server connections open to the database now (SHOW DATABASES `current_connections`).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Applies `max_db_connections` and the users' caps (start and SIGHUP). `user_caps` names
    /// each user with a cap; users not named have none.
    pub fn configure(
        self: &Arc<Self>,
        max_db_connections: usize,
        user_caps: impl IntoIterator<Item = (String, usize)>,
    ) {
        let caps: HashMap<Box<str>, usize> = user_caps
            .into_iter()
            .map(|(n, c)| (n.into_boxed_str(), c))
            .collect();
        // The table first: a session starting meanwhile reads the new cap.
        *lock(&self.user_caps) = caps.clone();
        for tag in lock(&self.users).values().filter_map(Weak::upgrade) {
            let cap = caps.get(&tag.name).copied().unwrap_or(NO_CAP);
            tag.cap.store(cap, Ordering::Relaxed);
        }
        let old = self.cap.swap(max_db_connections, Ordering::Relaxed);
        if max_db_connections != 0 && (old == 0 || max_db_connections < old) {
            self.start_balancer();
        }
        // A raised cap (of either kind) may admit waiters now.
        for pool in self.pools() {
            pool.redispatch();
        }
        self.wake.notify_one();
    }

    /// The counter of `user`'s server connections, shared by its sessions (taken once per
    /// session).
    pub fn user(&self, user: &str) -> Arc<UserTag> {
        let mut map = lock(&self.users);
        super::queue::intern(&mut map, user, || UserTag {
            name: user.into(),
            held: Held::default(),
            cap: AtomicUsize::new(lock(&self.user_caps).get(user).copied().unwrap_or(NO_CAP)),
        })
    }

    /// Server connections each user with a live session holds now (SHOW USERS).
    pub fn users_held(&self) -> HashMap<String, usize> {
        lock(&self.users)
            .values()
            .filter_map(Weak::upgrade)
            .map(|t| (t.name.to_string(), t.held.get()))
            .collect()
    }

    /// Registers a pool on this database (at its creation).
    pub(super) fn register(&self, pool: &Arc<Pool>) {
        let mut pools = lock(&self.pools);
        pools.retain(|w| w.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools).iter().filter_map(Weak::upgrade).collect()
    }

    /// A token for one more server connection, unless the database is at its cap.
    pub(super) fn try_reserve(self: &Arc<Self>) -> Option<DbToken> {
        let cap = self.cap();
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (cap == 0 || n < cap).then_some(n + 1)
            })
            .ok()?;
        Some(DbToken { db: self.clone() })
    }

    /// A pool became blocked by the cap (`now`) or stopped being (`!now`).
    pub(super) fn set_blocked(self: &Arc<Self>, now: bool) {
        if now {
            self.blocked.fetch_add(1, Ordering::AcqRel);
            self.start_balancer();
            self.wake.notify_one();
        } else {
            self.blocked.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A connection went idle: a blocked pool elsewhere may have it closed to open its own.
    #[inline]
    pub(super) fn went_idle(&self) {
        if self.blocked.load(Ordering::Relaxed) > 0 {
            self.wake.notify_one();
        }
    }

    /// Starts the balancer once (needs a Tokio runtime; without one, as in unit tests, the
    /// pools still never exceed the cap, they only wait for a release of their own).
    fn start_balancer(self: &Arc<Self>) {
        if self.balancing.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.balancing.swap(true, Ordering::AcqRel) {
            rt.spawn(balance(Arc::downgrade(self)));
        }
    }

    /// Whether more connections are open than the cap allows (it was lowered).
    fn over_cap(&self) -> bool {
        let cap = self.cap();
        cap != 0 && self.open() > cap
    }
}

/// The balancer: serves pools blocked by `max_db_connections`, closing idle connections of
/// other pools to make room (PgBouncer's `evict_connection`), and closes idle connections
/// past a lowered cap. Woken by a closed or newly idle connection; also looks every 100 ms
/// while a pool is blocked, in case a wake-up raced with a pool's own release.
async fn balance(db: Weak<Database>) {
    loop {
        let Some(d) = db.upgrade() else {
            return;
        };
        let tick = if d.blocked.load(Ordering::Relaxed) > 0 {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let _ = tokio::time::timeout(tick, d.wake.notified()).await;
        let pools = d.pools();
        while d.over_cap() && pools.iter().any(|p| p.evict_idle()) {}
        for p in &pools {
            if !p.redispatch() {
                continue;
            }
            // Still blocked: make room with another pool's idle connection, then serve.
            if pools.iter().any(|q| !Arc::ptr_eq(q, p) && q.evict_idle()) {
                p.redispatch();
            }
        }
    }
}

/// One server connection counted against `max_db_connections`; held by the connection (or the
/// checkout opening it) and given back when it closes.
#[derive(Debug)]
pub struct DbToken {
    db: Arc<Database>,
}

impl Drop for DbToken {
    fn drop(&mut self) {
        self.db.open.fetch_sub(1, Ordering::AcqRel);
        if self.db.blocked.load(Ordering::Relaxed) > 0 {
            self.db.wake.notify_one();
        }
    }
}

/// Each user's cap from the configuration: the smaller of its `pool_size` and its
/// `max_user_connections` (0 or absent: `[upstream] max_user_connections`; 0 there too: none).
/// Users without either are left out (no cap).
pub fn user_caps(config: &crate::config::Config) -> Vec<(String, usize)> {
    let default = config.upstream.max_user_connections;
    config
        .users
        .iter()
        .filter_map(|u| {
            let max = u.max_user_connections.filter(|&n| n > 0).unwrap_or(default);
            let max = (max > 0).then_some(max);
            let cap = match (u.pool_size, max) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            };
            Some((u.name.clone(), cap))
        })
        .collect()
}

/// The stored cap of a user without one: `held < cap` then always holds, with no branch.
const NO_CAP: usize = usize::MAX;

/// One `[[users]]` login as the pools count it, shared by all of its sessions.
#[derive(Debug)]
pub struct UserTag {
    name: Box<str>,
    /// Server connections its sessions hold now, counted under the lock of the pool the user
    /// checks out from (a user uses one pool: its kind decides which).
    pub(super) held: Held,
    /// Most it may hold (`usize::MAX`: no cap). Reloadable.
    cap: AtomicUsize,
}

impl UserTag {
    /// Which user this tag counts (the tests check the interning by it).
    #[cfg(test)]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cap (None: none).
    #[cfg(test)]
    pub fn cap(&self) -> Option<usize> {
        let c = self.cap.load(Ordering::Relaxed);
        (c != NO_CAP).then_some(c)
    }
}

/// Whether a checkout of `user` may hold one more connection.
#[inline]
pub fn under_user_cap(user: Option<&UserTag>) -> bool {
    user.is_none_or(|u| u.held.get() < u.cap.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_stop_at_the_cap_and_come_back_when_dropped() {
        let db = Database::new(2);
        let a = db.try_reserve().expect("first");
        let b = db.try_reserve().expect("second");
        assert!(db.try_reserve().is_none(), "third past the cap");
        assert_eq!(db.open(), 2);
        drop(a);
        let c = db.try_reserve().expect("one came back");
        db.configure(0, []);
        let more: Vec<_> = (0..10).filter_map(|_| db.try_reserve()).collect();
        assert_eq!(more.len(), 10, "no cap");
        drop((b, c, more));
        assert_eq!(db.open(), 0);
    }

    #[test]
    fn user_caps_follow_the_configuration_also_for_live_sessions() {
        let db = Database::new(0);
        db.configure(0, [("batch".to_string(), 1)]);
        let batch = db.user("batch");
        let other = db.user("web");
        assert_eq!((batch.cap(), other.cap()), (Some(1), None));
        assert!(Arc::ptr_eq(&batch, &db.user("batch")));
        batch.held.acquire();
        assert!(!under_user_cap(Some(&batch)));
        assert!(under_user_cap(Some(&other)));
        db.configure(0, [("batch".to_string(), 2)]);
        assert!(under_user_cap(Some(&batch)), "raised on reload");
        batch.held.release();
        batch.held.release();
        assert_eq!(db.users_held().get("batch"), Some(&0));
    }
}
