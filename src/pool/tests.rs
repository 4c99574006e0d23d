//! Cancellation safety of the queue, without a server: the only slot is held by hand, and
//! a connection that would be opened fails at once (port 1 refuses).
use std::future::Future;
use std::task::Poll;

use super::checkout::Waiting;
use super::guard::Slot;
use super::limits::UserTag;
use super::*;

fn pool(size: usize) -> Arc<Pool> {
    pool_on(size, &Database::new(0), Duration::from_secs(30))
}

/// A pool of `size` on `db`, whose checkouts wait at most `timeout`.
fn pool_on(size: usize, db: &Arc<Database>, timeout: Duration) -> Arc<Pool> {
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
        PoolName::App,
        spec,
        PoolLimits {
            size,
            tenant_cap: None,
            timeout,
            idle_timeout: Duration::from_secs(60),
            lifetime: Duration::from_secs(60),
            sizing: Sizing::default(),
        },
        db,
    )
}

/// Takes a free slot as a checkout would.
fn hold(pool: &Arc<Pool>, tenant: Option<&Arc<TenantTag>>) -> Slot {
    hold_as(pool, tenant, None)
}

/// Takes a free slot for `tenant` and `user` as a checkout would, past their caps if need be.
fn hold_as(pool: &Arc<Pool>, tenant: Option<&Arc<TenantTag>>, user: Option<&Arc<UserTag>>) -> Slot {
    pool.slots().take(tenant.map(|t| &**t), user.map(|u| &**u));
    Slot {
        pool: pool.clone(),
        tenant: tenant.cloned(),
        user: user.cloned(),
        held: true,
    }
}

#[test]
fn a_waiter_served_as_it_gives_up_gives_the_slot_back() {
    let pool = pool(1);
    let a = pool.tenant("a");
    let held = hold(&pool, None);
    let (ticket, rx) = pool.slots().queue.push(Some(&a), None);
    pool.stats.waiting.fetch_add(1, Ordering::Relaxed);
    a.usage.waiting.fetch_add(1, Ordering::Relaxed);
    let waiter = Waiting {
        pool: &pool,
        tenant: Some(&a),
        user: None,
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
        let waiting = pool.checkout(0, Some(&a), None);
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
        async move { pool.checkout(0, Some(&a), None).await.map(|_| ()) }
    });
    while pool.slots().queue.is_empty() {
        tokio::task::yield_now().await;
    }
    drop(held);
    let r = waiting.await.expect("task");
    assert!(matches!(r, Err(PoolError::Upstream(_))), "{r:?}");
    assert_eq!((a.held(), pool.slots().free), (0, 1));
}

#[tokio::test]
async fn at_max_db_connections_a_checkout_waits_for_a_connection_to_close() {
    let db = Database::new(1);
    let pool = pool_on(2, &db, Duration::from_millis(300));
    // The database's one connection is open elsewhere (another pool).
    let elsewhere = db.try_reserve().expect("the first connection");
    // A free slot is not enough: the checkout waits, and times out with the pool's error.
    let r = pool.checkout(0, None, None).await.map(|_| ());
    assert!(
        matches!(r, Err(PoolError::Timeout(_, Limit::DbCap))),
        "{r:?}"
    );
    assert_eq!(db.open(), 1, "nothing opened past the cap");
    assert!(
        !pool.slots().db_blocked,
        "a waiter that left unblocks the pool"
    );
    assert_eq!(pool.slots().free, 2, "no slot kept");
    // Waiting when the other connection closes: served (the open then fails on port 1).
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.checkout(0, None, None).await.map(|_| ()) }
    });
    while pool.slots().queue.is_empty() {
        tokio::task::yield_now().await;
    }
    assert!(pool.slots().db_blocked);
    // Blocked: a new checkout queues behind it rather than taking the next token first.
    assert!(!pool.slots().may_take(None, None));
    drop(elsewhere);
    let r = waiting.await.expect("task");
    assert!(matches!(r, Err(PoolError::Upstream(_))), "{r:?}");
    assert_eq!((db.open(), pool.slots().free), (0, 2));
}

#[tokio::test]
async fn a_user_at_its_cap_waits_while_other_users_are_served() {
    let pool = pool(3);
    let db = pool.database().clone();
    db.configure(0, [("batch".to_string(), 1)]);
    let (batch, web) = (db.user("batch"), db.user("web"));
    // batch holds its one connection.
    let held = hold_as(&pool, None, Some(&batch));
    let waiting = pool.checkout(0, None, Some(&batch));
    tokio::pin!(waiting);
    assert!(
        futures_poll_once(waiting.as_mut()).await.is_none(),
        "batch waits"
    );
    assert_eq!(pool.slots().queue.len(), 1);
    // Another user goes ahead with a free slot (its open fails on port 1: it was served).
    let r = pool.checkout(0, None, Some(&web)).await.map(|_| ());
    assert!(matches!(r, Err(PoolError::Upstream(_))), "{r:?}");
    assert_eq!(batch.held.get(), 1, "never past the cap");
    // batch's connection comes back: its waiter is next.
    drop(held);
    let r = waiting.await.map(|_| ());
    assert!(matches!(r, Err(PoolError::Upstream(_))), "{r:?}");
    assert_eq!((batch.held.get(), web.held.get(), pool.slots().free), (0, 0, 3));
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

/// A timed-out checkout names what it waited behind, so the client's 53300 hint points at the
/// setting that would have helped (a tenant at its share must not be told to raise pool_size).
#[tokio::test]
async fn a_timed_out_checkout_names_the_limit_it_waited_behind() {
    let quick = Duration::from_millis(50);
    let timed_out = |r: Result<PoolGuard, PoolError>| match r {
        Err(PoolError::Timeout(_, limit)) => limit,
        other => panic!("expected a timeout, got {:?}", other.map(|_| ())),
    };
    // Every slot in use.
    let pool = pool_on(1, &Database::new(0), quick);
    let held = hold(&pool, None);
    assert_eq!(timed_out(pool.checkout(0, None, None).await), Limit::PoolSize);
    drop(held);
    // The tenant at its share, with slots free.
    let pool = pool_on(3, &Database::new(0), quick);
    pool.set_tenant_cap(Some(1));
    let a = pool.tenant("a");
    let held = hold(&pool, Some(&a));
    assert_eq!(timed_out(pool.checkout(0, Some(&a), None).await), Limit::TenantShare);
    drop(held);
    // The user at its cap, with slots free.
    let pool = pool_on(3, &Database::new(0), quick);
    let db = pool.database().clone();
    db.configure(0, [("batch".to_string(), 1)]);
    let batch = db.user("batch");
    let held = hold_as(&pool, None, Some(&batch));
    assert_eq!(timed_out(pool.checkout(0, None, Some(&batch)).await), Limit::UserCap);
    drop(held);
    // Paused by the console.
    let pool = pool_on(3, &Database::new(0), quick);
    pool.pause();
    assert_eq!(timed_out(pool.checkout(0, None, None).await), Limit::Paused);
}
