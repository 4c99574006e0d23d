//! PgBouncer's pool sizing: `reserve_pool_size` + `reserve_pool_timeout`, `min_pool_size`
//! (also after PostgreSQL restarts), and a per-user `pool_mode`.

mod common;
mod support;

use std::time::Duration;

use support::{start, stdout, Opts, PW};

fn admin_user() -> String {
    format!("[[users]]\nname = \"tgadmin\"\npassword = \"{PW}\"\nkind = \"admin\"\n")
}

fn console(p: &support::TestProxy, sql: &str) -> String {
    let out = std::process::Command::new(support::psql_bin())
        .args(["-X", "-A", "-F", "|", "-t", "-c", sql])
        .arg(format!(
            "host=127.0.0.1 port={} user=tgadmin dbname=tenantgate",
            p.addr.port()
        ))
        .env("PGPASSWORD", PW)
        .output()
        .unwrap();
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_connection_serves_a_client_that_waited_reserve_pool_timeout() {
    let p = start(Opts {
        pool_size: 1,
        pool_timeout: 30.0,
        upstream_extra: "reserve_pool_size = 1\nreserve_pool_timeout = \"500ms\"\n".into(),
        extra: admin_user(),
        ..Opts::default()
    })
    .await;
    let a = p.connect("acme_app").await;
    a.batch_execute("begin; select 1").await.unwrap();
    // The one pooled connection is held; the next client gets a reserve one after 500 ms,
    // while the transaction is still open (without the reserve it would wait for COMMIT).
    let b = p.connect("globex_app").await;
    let n: i64 = tokio::time::timeout(
        Duration::from_secs(15),
        b.query_one("select count(*) from customers", &[]),
    )
    .await
    .expect("served by a reserve connection while the pool is full")
    .unwrap()
    .get(0);
    assert_eq!(n, common::GLOBEX.customers);
    // It was a reserve connection: two server connections with a pool of one, and the wait
    // was at least reserve_pool_timeout.
    let stats = console(&p, "SHOW STATS_TOTALS");
    let row = stats
        .lines()
        .find(|l| l.starts_with(&format!("{}|", p.db)))
        .unwrap_or_else(|| panic!("{stats}"));
    let wait_us: u64 = row.split('|').nth(8).unwrap().parse().unwrap();
    assert!(
        wait_us >= 500_000,
        "waited {wait_us} µs before the reserve: {row}"
    );
    assert_eq!(p.backends(None), 2);
    a.batch_execute("commit").await.unwrap();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_pool_mode_overrides_the_pools() {
    let p = start(Opts {
        extra: admin_user()
            + &format!(
                "[[users]]\nname = \"batch\"\npassword = \"{PW}\"\ntenant = \"{}\"\npool_mode = \"session\"\n",
                common::ACME.id
            ),
        ..Opts::default()
    })
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
    let until = |want: i64| async move {
        for _ in 0..100 {
            if open() == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    // No client has connected: min_pool_size alone opens them.
    assert!(until(3).await, "3 connections kept open, found {}", open());
    cluster.restart_fast().unwrap();
    assert!(
        until(3).await,
        "3 connections again after the restart, found {}",
        open()
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}
