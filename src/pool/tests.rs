//! Cancellation safety of the queue, without a server: the only slot is held by hand, and
//! a connection that would be opened fails at once (port 1 refuses).
use std::future::Future;
use std::task::Poll;

use super::checkout::Waiting;
use super::guard::Slot;
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
