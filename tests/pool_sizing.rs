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

/// The error a checkout gets after `query_wait_timeout`: 53300, as PgBouncer's wait limit.
async fn times_out(c: &tokio_postgres::Client) {
    let started = std::time::Instant::now();
    let e = c
        .simple_query("select 1")
        .await
        .expect_err("waits query_wait_timeout");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53300", "{db:?}");
    assert!(db.message().contains("timed out"), "{db:?}");
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
async fn max_db_connections_caps_the_servers_and_a_release_serves_the_waiter() {
    let p = start(Opts {
        pool_size: 4,
        pool_timeout: 1.0,
        upstream_extra: "max_db_connections = 2\n".into(),
        extra: admin_user(),
        ..Opts::default()
    })
    .await;
    let a = p.connect("acme_app").await;
    a.batch_execute("begin; select 1").await.unwrap();
    let b = p.connect("globex_app").await;
    b.batch_execute("begin; select 1").await.unwrap();
    // Two of the pool's four slots are free, but the database is at its cap.
    let c = p.connect("initech_app").await;
    times_out(&c).await;
    assert_eq!(p.backends(None), 2, "nothing opened past the cap");
    let dbs = console(&p, "SHOW DATABASES");
    let row = dbs
        .lines()
        .find(|l| l.starts_with(&format!("{}|", p.db)))
        .unwrap_or_else(|| panic!("{dbs}"));
    let cols: Vec<&str> = row.split('|').collect();
    assert_eq!(
        (cols[11], cols[12]),
        ("2", "2"),
        "max/current connections: {row}"
    );
    // Waiting when a transaction ends: served with the connection it releases.
    let (most, served) = most_during(|| p.backends(None), async {
        let waiting = c.query_one("select count(*) from customers", &[]);
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            a.batch_execute("commit").await.unwrap();
        };
        tokio::join!(waiting, release).0
    })
    .await;
    assert_eq!(
        served.unwrap().get::<_, i64>(0),
        common::tenant("initech").customers
    );
    assert!(
        most <= 2,
        "{most} server connections with max_db_connections = 2"
    );
    // Reloadable, as in PgBouncer: raised to 3, a third transaction is served at once.
    let path = std::env::temp_dir().join(format!("tg-maxdb-{}.toml", std::process::id()));
    support::remove_at_exit(&path);
    let raised = Opts {
        pool_size: 4,
        pool_timeout: 1.0,
        upstream_extra: "max_db_connections = 3\n".into(),
        extra: admin_user(),
        ..Opts::default()
    };
    std::fs::write(&path, support::config_toml(&p.db, &p.events_path, &raised)).unwrap();
    p.proxy.as_ref().unwrap().shared.reload(&path).await;
    a.batch_execute("begin; select 1").await.unwrap();
    c.batch_execute("begin; select 1")
        .await
        .expect("room for a third");
    assert_eq!(p.backends(None), 3);
    for t in [&a, &b, &c] {
        t.batch_execute("commit").await.unwrap();
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_closes_another_pools_idle_connection_to_make_room() {
    let p = start(Opts {
        pool_size: 2,
        pool_timeout: 5.0,
        upstream_extra: format!(
            "max_db_connections = 1\n[upstream.breakglass]\nuser = \"{}\"\npassword = \"{}\"\npool_size = 1\n",
            common::TENANT_ADMIN,
            common::TENANT_ADMIN_PASSWORD
        ),
        extra: format!(
            "[[users]]\nname = \"root_admin\"\npassword = \"{PW}\"\nkind = \"breakglass\"\n"
        ),
        ..Opts::default()
    })
    .await;
    let open = |role: &str| -> i64 {
        common::cluster()
            .psql(
                "postgres",
                &format!(
                    "select count(*) from pg_stat_activity where usename = '{role}' and datname = '{}' and application_name <> 'tenantgate-posture'",
                    p.db
                ),
            )
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    };
    let settle = || async {
        for _ in 0..50 {
            if open(common::APP_USER) + open(common::TENANT_ADMIN) <= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The break-glass session ends; its pool keeps the connection idle, and that is the
    // database's one.
    let bg = p.connect("root_admin").await;
    bg.simple_query("select 1").await.unwrap();
    drop(bg);
    let app = p.connect("acme_app").await;
    let n: i64 = tokio::time::timeout(
        Duration::from_secs(4),
        app.query_one("select count(*) from customers", &[]),
    )
    .await
    .expect("served once the idle break-glass connection is closed")
    .unwrap()
    .get(0);
    assert_eq!(n, common::ACME.customers);
    settle().await;
    assert_eq!(
        (open(common::APP_USER), open(common::TENANT_ADMIN)),
        (1, 0),
        "the idle break-glass connection made room"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_and_a_users_pool_size_cap_one_user_not_the_others() {
    let p = start(Opts {
        pool_size: 6,
        pool_timeout: 1.0,
        upstream_extra: "max_user_connections = 2\n".into(),
        extra: admin_user()
            + &format!(
                "[[users]]\nname = \"batch\"\npassword = \"{PW}\"\ntenant = \"{}\"\npool_size = 1\n",
                common::ACME.id
            ),
        ..Opts::default()
    })
    .await;
    // batch (its own pool_size = 1) holds its one connection; its next transaction waits.
    let b1 = p.connect("batch").await;
    b1.batch_execute("begin; select 1").await.unwrap();
    let b2 = p.connect("batch").await;
    times_out(&b2).await;
    // Other users are served meanwhile, each up to the [upstream] max_user_connections.
    let g1 = p.connect("globex_app").await;
    let g2 = p.connect("globex_app").await;
    let g3 = p.connect("globex_app").await;
    g1.batch_execute("begin; select 1").await.unwrap();
    g2.batch_execute("begin; select 1").await.unwrap();
    let a = p.connect("acme_app").await;
    a.simple_query("select 1").await.expect("another user");
    times_out(&g3).await;
    assert_eq!(p.backends(Some("idle in transaction")), 3, "1 + 2 held");
    let users = console(&p, "SHOW USERS");
    let user = |name: &str| {
        users
            .lines()
            .find(|l| l.starts_with(&format!("{name}|")))
            .unwrap_or_else(|| panic!("{users}"))
            .to_owned()
    };
    assert!(user("batch").starts_with("batch|1||"), "{users}");
    let cols: Vec<String> = user("globex_app").split('|').map(str::to_owned).collect();
    assert_eq!((cols[4].as_str(), cols[5].as_str()), ("2", "2"), "{users}");
    // batch's transaction ends: its waiting one is served.
    let waiting = b2.query_one("select count(*) from customers", &[]);
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b1.batch_execute("commit").await.unwrap();
    };
    let n: i64 = tokio::join!(waiting, release).0.unwrap().get(0);
    assert_eq!(n, common::ACME.customers);
    g1.batch_execute("commit").await.unwrap();
    g2.batch_execute("commit").await.unwrap();
    p.stop().await;
}
