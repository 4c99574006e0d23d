//! PgBouncer's pool sizing: `reserve_pool_size` + `reserve_pool_timeout`, `min_pool_size`
//! (also after PostgreSQL restarts), and a per-user `pool_mode`.

mod common;
mod support;

use std::time::Duration;

use common::{count, count_within, expect_sqlstate, ACME, GLOBEX};
use support::{start, stdout, Opts, TestProxy, PW};
use tokio_postgres::Client;

/// The admin console's answer to `sql`: one `|`-separated line per row.
fn console(p: &TestProxy, sql: &str) -> String {
    stdout(&p.console(sql))
}

/// The line of a console answer whose first column is `key` (a database, a user).
fn row(text: &str, key: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(&format!("{key}|")))
        .unwrap_or_else(|| panic!("no row for {key}: {text}"))
        .to_owned()
}

/// A login `batch` for ACME with `setting` (a per-user pool key) of its own.
fn batch_user(setting: &str) -> String {
    format!(
        "[[users]]\nname = \"batch\"\npassword = \"{PW}\"\ntenant = \"{}\"\n{setting}\n",
        ACME.id
    )
}

/// Opens a transaction on `c`: it holds a server connection until [`commit`].
async fn hold(c: &Client) {
    c.batch_execute("begin; select 1").await.unwrap();
}

async fn commit(c: &Client) {
    c.batch_execute("commit").await.unwrap();
}

/// The customers `waiter` counts, asked while `holder` holds the connection it waits for and
/// commits 300 ms later: served with the connection that commit releases.
async fn served_on_release(waiter: &Client, holder: &Client) -> i64 {
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        commit(holder).await;
    };
    tokio::join!(count(waiter, "customers"), release).0
}

/// The error a checkout gets after `query_wait_timeout`: 53300, as PgBouncer's wait limit,
/// with a hint naming the setting the checkout waited behind.
async fn times_out(c: &Client, setting: &str) {
    let started = std::time::Instant::now();
    let db = expect_sqlstate(c.simple_query("select 1").await, "53300");
    assert!(db.message().contains("timed out"), "{db:?}");
    assert!(
        db.hint().is_some_and(|h| h.contains(setting)),
        "the hint names {setting}: {db:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900), "waited");
}

/// Samples `count` every 50 ms while `work` runs and returns the largest value seen.
async fn most_during<F: std::future::Future>(count: impl Fn() -> i64, work: F) -> (i64, F::Output) {
    let done = std::sync::atomic::AtomicBool::new(false);
    let sample = async {
        let mut most = count();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            most = most.max(count());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let work = async {
        let out = work.await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let (most, out) = tokio::join!(sample, work);
    (most, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_connection_serves_a_client_that_waited_reserve_pool_timeout() {
    let p = start(
        Opts {
            pool_size: 1,
            pool_timeout: 30.0,
            upstream_extra: "reserve_pool_size = 1\nreserve_pool_timeout = \"500ms\"\n".into(),
            ..Opts::default()
        }
        .with_admin(),
    )
    .await;
    let a = p.connect("acme_app").await;
    hold(&a).await;
    // The one pooled connection is held; the next client gets a reserve one after 500 ms,
    // while the transaction is still open (without the reserve it would wait for COMMIT).
    let b = p.connect("globex_app").await;
    let n = count_within(
        &b,
        "customers",
        15,
        "served by a reserve connection while the pool is full",
    )
    .await;
    assert_eq!(n, GLOBEX.customers);
    // It was a reserve connection: two server connections with a pool of one, and the wait
    // was at least reserve_pool_timeout.
    let row = row(&console(&p, "SHOW STATS_TOTALS"), &p.db);
    let wait_us: u64 = row.split('|').nth(8).unwrap().parse().unwrap();
    assert!(
        wait_us >= 500_000,
        "waited {wait_us} µs before the reserve: {row}"
    );
    assert_eq!(p.backends(None), 2);
    commit(&a).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_pool_mode_overrides_the_pools() {
    let p = start(
        Opts {
            extra: batch_user("pool_mode = \"session\""),
            ..Opts::default()
        }
        .with_admin(),
    )
    .await;
    let t = p.connect("globex_app").await;
    t.query_one("select 1", &[]).await.unwrap();
    let s = p.connect("batch").await;
    s.query_one("select 1", &[]).await.unwrap();
    // The session-mode user keeps its server connection while idle; the transaction-mode
    // user's went back to the pool.
    let clients = console(&p, "SHOW CLIENTS");
    let state = |user: &str| {
        clients
            .lines()
            .find(|l| l.split('|').nth(1) == Some(user))
            .and_then(|l| l.split('|').nth(4))
            .map(str::to_owned)
    };
    assert_eq!(state("batch").as_deref(), Some("active"), "{clients}");
    assert_eq!(state("globex_app").as_deref(), Some("idle"), "{clients}");
    let users = console(&p, "SHOW USERS");
    assert!(
        users.lines().any(|l| l.starts_with("batch|||session|")),
        "{users}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_keeps_connections_open_also_after_a_restart() {
    let (cluster, proxy) =
        support::private_cluster_proxy("pool_size = 4\nmin_pool_size = 3\n").await;
    let open = || -> i64 {
        cluster
            .psql("app", "select count(*) from pg_stat_activity where usename = 'app_user' and application_name <> 'tenantgate-posture'")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    };
    // No client has connected: min_pool_size alone opens them.
    common::wait_until("3 connections kept open", || open() == 3).await;
    cluster.restart_fast().unwrap();
    common::wait_until("3 connections again after the restart", || open() == 3).await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_caps_the_servers_and_a_release_serves_the_waiter() {
    let capped = |max_db_connections: u32| {
        Opts {
            pool_size: 4,
            pool_timeout: 1.0,
            upstream_extra: format!("max_db_connections = {max_db_connections}\n"),
            ..Opts::default()
        }
        .with_admin()
    };
    let p = start(capped(2)).await;
    let a = p.connect("acme_app").await;
    hold(&a).await;
    let b = p.connect("globex_app").await;
    hold(&b).await;
    // Two of the pool's four slots are free, but the database is at its cap.
    let c = p.connect("initech_app").await;
    times_out(&c, "max_db_connections").await;
    assert_eq!(p.backends(None), 2, "nothing opened past the cap");
    let row = row(&console(&p, "SHOW DATABASES"), &p.db);
    let cols: Vec<&str> = row.split('|').collect();
    assert_eq!(
        (cols[11], cols[12]),
        ("2", "2"),
        "max/current connections: {row}"
    );
    // Waiting when a transaction ends: served with the connection it releases.
    let (most, served) = most_during(|| p.backends(None), served_on_release(&c, &a)).await;
    assert_eq!(served, common::tenant("initech").customers);
    assert!(
        most <= 2,
        "{most} server connections with max_db_connections = 2"
    );
    // Reloadable, as in PgBouncer: raised to 3, a third transaction is served at once.
    p.reload(&capped(3)).await;
    hold(&a).await;
    hold(&c).await;
    assert_eq!(p.backends(None), 3);
    for t in [&a, &b, &c] {
        commit(t).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_closes_another_pools_idle_connection_to_make_room() {
    let p = start(
        Opts {
            pool_size: 2,
            pool_timeout: 5.0,
            upstream_extra: "max_db_connections = 1\n".into(),
            ..Opts::default()
        }
        .with_breakglass(),
    )
    .await;
    // The break-glass session ends; its pool keeps the connection idle, and that is the
    // database's one.
    let bg = p.connect("root_admin").await;
    bg.simple_query("select 1").await.unwrap();
    drop(bg);
    let app = p.connect("acme_app").await;
    let n = count_within(
        &app,
        "customers",
        4,
        "served once the idle break-glass connection is closed",
    )
    .await;
    assert_eq!(n, ACME.customers);
    let open = |role: &str| p.backends_of(role, None);
    common::wait_until("one server connection left", || {
        open(common::APP_USER) + open(common::TENANT_ADMIN) <= 1
    })
    .await;
    assert_eq!(
        (open(common::APP_USER), open(common::TENANT_ADMIN)),
        (1, 0),
        "the idle break-glass connection made room"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_and_a_users_pool_size_cap_one_user_not_the_others() {
    let p = start(
        Opts {
            pool_size: 6,
            pool_timeout: 1.0,
            upstream_extra: "max_user_connections = 2\n".into(),
            extra: batch_user("pool_size = 1"),
            ..Opts::default()
        }
        .with_admin(),
    )
    .await;
    // batch (its own pool_size = 1) holds its one connection; its next transaction waits.
    let b1 = p.connect("batch").await;
    hold(&b1).await;
    let b2 = p.connect("batch").await;
    times_out(&b2, "the user's pool_size or max_user_connections").await;
    // Other users are served meanwhile, each up to the [upstream] max_user_connections.
    let g1 = p.connect("globex_app").await;
    let g2 = p.connect("globex_app").await;
    let g3 = p.connect("globex_app").await;
    hold(&g1).await;
    hold(&g2).await;
    let a = p.connect("acme_app").await;
    a.simple_query("select 1").await.expect("another user");
    times_out(&g3, "the user's pool_size or max_user_connections").await;
    assert_eq!(p.backends(Some("idle in transaction")), 3, "1 + 2 held");
    let users = console(&p, "SHOW USERS");
    assert!(row(&users, "batch").starts_with("batch|1||"), "{users}");
    let globex = row(&users, "globex_app");
    let cols: Vec<&str> = globex.split('|').collect();
    assert_eq!((cols[4], cols[5]), ("2", "2"), "{users}");
    // batch's transaction ends: its waiting one is served.
    assert_eq!(served_on_release(&b2, &b1).await, ACME.customers);
    commit(&g1).await;
    commit(&g2).await;
    p.stop().await;
}
