//! No noisy neighbour between tenants (issue 17): a tenant flooding the shared pool holds at
//! most `[tenant] max_server_connections` of it while another tenant is served, and when the
//! pool is exhausted, waiting transactions are served round-robin across tenants, so one queued
//! client of a quiet tenant is not stuck behind a busy tenant's queue. A tenant past
//! `[tenant] max_client_connections` sessions is refused with `53300` and recorded.
//!
//! Every served client holds its server connection in an open transaction until the test lets
//! it go, so each release serves exactly one waiter and the order is observed, never timed.

mod common;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::{count, expect_sqlstate, ACME, GLOBEX};
use support::{start, Opts, TestProxy};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A connected client that, on `go`, opens a transaction (holding a server connection),
/// reports that it was served, and commits on `release`.
struct Holder {
    /// Starts the transaction.
    go: oneshot::Sender<()>,
    /// Lets the client commit.
    release: oneshot::Sender<()>,
    /// The client's task: Ok when its transaction ran and committed.
    task: JoinHandle<Result<(), String>>,
}

/// Connects `user` now (before the pool is exhausted), ready to start on `go`.
async fn holder(
    p: &TestProxy,
    user: &str,
    name: &str,
    served: &mpsc::UnboundedSender<String>,
) -> Holder {
    let client = p.connect(user).await;
    let (go, started) = oneshot::channel::<()>();
    let (release, released) = oneshot::channel::<()>();
    let (name, served) = (name.to_owned(), served.clone());
    let task = tokio::spawn(async move {
        let _ = started.await;
        client
            .batch_execute("begin; select count(*) from customers")
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let _ = served.send(name.clone());
        let _ = released.await;
        client
            .batch_execute("commit")
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    Holder { go, release, task }
}

/// Receives the next served client's name.
async fn next_served(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a waiter is served after a release")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_holds_at_most_its_share_and_the_quiet_one_is_served() {
    let opts = Opts {
        pool_size: 4,
        pool_timeout: 5.0,
        extra: "[tenant]\nmax_server_connections = 2\n".into(),
        ..Opts::default()
    };
    let p = start(opts.clone()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for i in 0..8 {
        flood.push(holder(&p, "acme_app", &format!("acme{i}"), &tx).await);
    }
    let quiet = p.connect("globex_app").await;
    // 8 open transactions of ACME against a pool of 4.
    let mut tasks = Vec::new();
    let mut releases = HashMap::new();
    for (i, h) in flood.into_iter().enumerate() {
        let _ = h.go.send(());
        tasks.push(h.task);
        releases.insert(format!("acme{i}"), h.release);
    }
    let mut served = Vec::new();
    common::wait_until("the flood to be served or queued", || {
        while let Ok(n) = rx.try_recv() {
            served.push(n);
        }
        served.len() + p.waiting() == 8
    })
    .await;
    assert_eq!(
        served.len(),
        2,
        "ACME holds more than its share: {served:?}"
    );
    assert_eq!(p.waiting(), 6);
    assert!(p
        .shared()
        .pool
        .tenants_held()
        .contains(&(ACME.id.to_string(), 2)));
    assert_eq!(p.backends(Some("idle in transaction")), 2);

    // The quiet tenant gets a connection at once, while ACME's six still wait.
    assert_eq!(count(&quiet, "customers").await, GLOBEX.customers);
    assert_eq!(p.waiting(), 6);

    // SIGHUP raising the share to 3 admits one more ACME transaction at once.
    p.reload(&Opts {
        extra: "[tenant]\nmax_server_connections = 3\n".into(),
        ..opts
    })
    .await;
    served.push(next_served(&mut rx).await);
    assert_eq!(p.waiting(), 5);
    assert_eq!(p.backends(Some("idle in transaction")), 3);

    // Each ACME commit lets exactly one more ACME transaction in: never more than three.
    let first = releases.remove(&served[0]).expect("served holder");
    let _ = first.send(());
    served.push(next_served(&mut rx).await);
    assert_eq!(p.waiting(), 4);
    assert_eq!(p.backends(Some("idle in transaction")), 3);
    for (_, r) in releases {
        let _ = r.send(());
    }
    // The rest commit as soon as they are served (their release is already sent).
    for t in tasks {
        t.await.expect("task").expect("every ACME transaction ran");
    }
    assert_eq!(p.waiting(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_tenants_are_served_in_turn_not_in_arrival_order() {
    let p = start(Opts {
        pool_size: 2,
        pool_timeout: 30.0,
        ..Opts::default()
    })
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Everyone connects first.
    let mut holders: HashMap<String, Holder> = HashMap::new();
    for i in 0..8 {
        let name = format!("acme{i}");
        holders.insert(name.clone(), holder(&p, "acme_app", &name, &tx).await);
    }
    holders.insert(
        "globex".into(),
        holder(&p, "globex_app", "globex", &tx).await,
    );
    let mut go = |name: &str| {
        let (tx, _) = oneshot::channel();
        let h = holders.get_mut(name).expect("holder");
        let _ = std::mem::replace(&mut h.go, tx).send(());
    };
    // ACME's first two take the whole pool.
    go("acme0");
    go("acme1");
    let mut order = vec![next_served(&mut rx).await, next_served(&mut rx).await];
    order.sort();
    assert_eq!(order, ["acme0", "acme1"]);
    // ACME queues six more, one after the other, then GLOBEX queues one.
    for i in 2..8 {
        go(&format!("acme{i}"));
        common::wait_until("the ACME checkout to queue", || p.waiting() == i - 1).await;
    }
    go("globex");
    common::wait_until("the GLOBEX checkout to queue", || p.waiting() == 7).await;

    // Release connections one at a time: each release serves exactly one waiter.
    let mut after = Vec::new();
    let mut to_release = order.clone();
    while after.len() < 7 {
        let name = to_release.remove(0);
        let h = holders.remove(&name).expect("holder");
        let _ = h.release.send(());
        h.task.await.expect("task").expect("transaction ran");
        let next = next_served(&mut rx).await;
        after.push(next.clone());
        to_release.push(next);
    }
    let globex_at = after
        .iter()
        .position(|n| n == "globex")
        .expect("GLOBEX was served");
    assert!(
        globex_at < 2,
        "GLOBEX's one transaction waited behind ACME's queue: served in order {after:?}"
    );
    // FIFO within ACME.
    let acme: Vec<&String> = after.iter().filter(|n| n.starts_with("acme")).collect();
    assert_eq!(acme, ["acme2", "acme3", "acme4", "acme5", "acme6", "acme7"]);
    for (_, h) in holders.drain() {
        let _ = h.release.send(());
        h.task.await.expect("task").expect("transaction ran");
    }
    assert_eq!(p.waiting(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_past_its_client_limit_is_refused_53300_and_recorded() {
    let p = start(Opts {
        extra: "[tenant]\nmax_client_connections = 2\n".into(),
        ..Opts::default()
    })
    .await;
    let a1 = p.connect("acme_app").await;
    let a2 = p.connect("acme_app").await;
    // A third ACME session is over the limit.
    let db = expect_sqlstate(p.try_connect("acme_app", support::PW).await, "53300");
    assert_eq!(
        db.message(),
        format!("too many connections for tenant \"{}\"", ACME.id)
    );
    // Another tenant is not affected, and ACME's sessions keep working.
    let g = p.connect("globex_app").await;
    g.query_one("select 1::int", &[]).await.expect("globex");
    a1.query_one("select 1::int", &[]).await.expect("acme");
    // A session that leaves gives its seat back.
    drop(a2);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = p.try_connect("acme_app", support::PW).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = again.expect("a seat came back when a session ended");
    again.query_one("select 1::int", &[]).await.expect("acme");
    let limited = p.events_named("tenant_limited").await;
    assert!(!limited.is_empty(), "no tenant_limited event");
    assert_eq!(limited[0]["tenant"], ACME.id);
    assert_eq!(limited[0]["action"], "block");
    assert_eq!(limited[0]["sqlstate"], "53300");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_switch_counts_against_the_tenant_it_switches_to() {
    let p = start(Opts {
        extra: format!(
            "[tenant]\nmax_client_connections = 1\n\n[[users]]\nname = \"switcher\"\npassword = \"{}\"\ntenants = \"*\"\nallow_switch = true\n",
            support::PW
        ),
        ..Opts::default()
    })
    .await;
    let _acme = p.connect("acme_app").await;
    let s = p.connect(&format!("switcher.{}", common::INITECH.id)).await;
    // ACME is at its limit.
    expect_sqlstate(
        s.simple_query(&format!("SET app.tenant_id = '{}'", ACME.id))
            .await,
        "53300",
    );
    s.simple_query(&format!("SET app.tenant_id = '{}'", GLOBEX.id))
        .await
        .expect("GLOBEX has room");
    assert_eq!(count(&s, "customers").await, GLOBEX.customers);
    // The switched session holds GLOBEX's only seat now.
    // GLOBEX is at its limit.
    expect_sqlstate(p.try_connect("globex_app", support::PW).await, "53300");
    assert_eq!(p.events_named("tenant_limited").await.len(), 2);
    p.stop().await;
}
