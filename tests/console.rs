//! The admin console: PgBouncer-style SHOW commands, PAUSE/RESUME.

mod common;
mod support;

use std::time::Duration;

use common::count;
use support::{start, stderr, stdout, Opts, PW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_list_pools_clients_servers_stats_config() {
    let p = start(Opts::default().with_admin()).await;
    let c = p.connect("acme_app").await;
    count(&c, "customers").await;
    let out = p.console("SHOW POOLS");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|sv_active|sv_active_cancel|sv_being_canceled|sv_idle"),
        "{text}"
    );
    assert!(text.contains(&format!("{}|app_user|", p.db)), "{text}");
    let text = stdout(&p.console("show clients;"));
    assert!(text.contains("acme_app"), "{text}");
    assert!(text.contains(common::ACME.id), "{text}");
    let text = stdout(&p.console("SHOW SERVERS"));
    assert!(text.contains("app_user") && text.contains("idle"), "{text}");
    let text = stdout(&p.console("SHOW STATS"));
    assert!(text.contains("total_xact_count"), "{text}");
    let text = stdout(&p.console("SHOW CONFIG"));
    assert!(text.contains("pool_size|4|1"), "{text}");
    let out = p.console("DROP TABLE customers");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid command 'DROP TABLE customers', use SHOW HELP;"),
        "{}",
        stderr(&out)
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_work_until_resume() {
    let p = start(Opts::default().with_admin()).await;
    let c = p.connect("acme_app").await;
    assert!(p.console("PAUSE").status.success());
    let q = tokio::spawn(async move {
        c.query_one("select 5::int", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    p.queued(1).await;
    assert!(!q.is_finished(), "query ran while paused");
    assert!(
        stdout(&p.console("SHOW POOLS")).contains("|transaction||4|1"),
        "pool shows paused"
    );
    assert!(p.console("RESUME").status.success());
    let v = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v, 5);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_is_only_for_admins_and_admins_only_for_the_console() {
    let p = start(Opts::default().with_admin()).await;
    let out = std::process::Command::new(support::psql_bin())
        .args(["-X", "-c", "SHOW POOLS"])
        .arg(format!(
            "host=127.0.0.1 port={} user=acme_app dbname=tenantgate",
            p.addr.port()
        ))
        .env("PGPASSWORD", PW)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = p.psql("tgadmin", &["-c", "select 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("console database"),
        "{}",
        stderr(&out)
    );
    p.stop().await;
}

/// Every column of `sql`'s answer with its type OID, and the rows, over the raw protocol.
async fn typed(
    p: &support::TestProxy,
    sql: &str,
) -> (Vec<(String, u32)>, Vec<Vec<Option<String>>>) {
    let mut r = support::raw::Raw::connect(p.addr.port(), "tgadmin", PW, "tenantgate").await;
    let msgs = r.query(sql).round(1).await;
    assert!(support::raw::codes(&msgs).is_empty(), "{sql}: {msgs:?}");
    let cols = msgs
        .iter()
        .find(|m| m.tag == b'T')
        .map(|m| m.columns())
        .unwrap_or_default();
    let rows = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| m.cells())
        .collect();
    (cols, rows)
}

const TEXT: u32 = 25;
const INT4: u32 = 23;
const NUMERIC: u32 = 1700;

/// The value of `col` in `row`.
fn cell<'a>(cols: &[(String, u32)], row: &'a [Option<String>], col: &str) -> Option<&'a str> {
    let i = cols.iter().position(|(n, _)| n == col)?;
    row.get(i)?.as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_columns_are_named_and_typed_as_pgbouncer_sends_them() {
    let p = start(Opts::default().with_admin()).await;
    let c = p.connect("acme_app").await;
    for _ in 0..3 {
        count(&c, "customers").await;
    }
    // SHOW STATS: PgBouncer's 25 columns (numeric since 1.12), then tenantgate's three.
    let (cols, rows) = typed(&p, "SHOW STATS").await;
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..9],
        [
            "database",
            "total_server_assignment_count",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_xact_time",
            "total_query_time",
            "total_wait_time"
        ]
    );
    for n in [
        "avg_xact_count",
        "avg_recv",
        "avg_sent",
        "avg_xact_time",
        "avg_query_time",
        "avg_wait_time",
        "total_checkouts",
    ] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    assert_eq!(cols[0].1, TEXT);
    assert!(cols[1..].iter().all(|(_, t)| *t == NUMERIC), "{cols:?}");
    let ours = rows
        .iter()
        .find(|r| r[0].as_deref() == Some(p.db.as_str()))
        .expect("a row for the database");
    let num = |col: &str| -> u64 { cell(&cols, ours, col).unwrap().parse().unwrap() };
    assert!(num("total_xact_count") >= 3);
    assert!(num("total_query_count") >= 3);
    assert!(
        num("total_received") > 0,
        "bytes from the client are counted"
    );
    assert!(num("total_sent") > 0, "bytes to the client are counted");
    assert!(num("total_xact_time") > 0 && num("total_query_time") > 0);
    // SHOW POOLS: counts are int4, pool_mode text.
    let (cols, rows) = typed(&p, "SHOW POOLS").await;
    for (n, t) in &cols {
        let want = match n.as_str() {
            "database" | "user" | "pool_mode" | "load_balance_hosts" => TEXT,
            _ => INT4,
        };
        assert_eq!(*t, want, "SHOW POOLS {n}");
    }
    assert_eq!(cell(&cols, &rows[0], "pool_mode"), Some("transaction"));
    // SHOW DATABASES: the database as clients name it, and the console's.
    let (cols, rows) = typed(&p, "SHOW DATABASES").await;
    assert_eq!(cols[2], ("port".to_owned(), INT4));
    assert_eq!(cols.len(), 17, "{cols:?}");
    let first: Vec<_> = rows
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(first, [p.db.clone(), "tenantgate".to_owned()]);
    assert_eq!(cell(&cols, &rows[0], "force_user"), Some("app_user"));
    // SHOW LISTS, SHOW USERS, SHOW MEM, SHOW TOTALS, SHOW CLIENTS, SHOW SERVERS.
    let (cols, rows) = typed(&p, "SHOW LISTS").await;
    assert_eq!(
        cols,
        [("list".to_owned(), TEXT), ("items".to_owned(), INT4)]
    );
    assert!(rows
        .iter()
        .any(|r| r[0].as_deref() == Some("used_clients") && r[1].as_deref() == Some("1")));
    let (cols, rows) = typed(&p, "SHOW USERS").await;
    assert_eq!(cols[4], ("max_user_connections".to_owned(), INT4));
    assert!(rows.iter().any(|r| r[0].as_deref() == Some("acme_app")
        && cell(&cols, r, "current_client_connections") == Some("1")));
    let (cols, _) = typed(&p, "SHOW MEM").await;
    assert_eq!(
        cols.iter().map(|c| c.1).collect::<Vec<_>>(),
        [TEXT, INT4, INT4, INT4, INT4]
    );
    let (cols, rows) = typed(&p, "SHOW TOTALS").await;
    assert_eq!(
        cols,
        [("name".to_owned(), TEXT), ("value".to_owned(), NUMERIC)]
    );
    assert!(rows
        .iter()
        .any(|r| r[0].as_deref() == Some("total_xact_count")));
    let (cols, rows) = typed(&p, "SHOW CLIENTS").await;
    assert_eq!(cell(&cols, &rows[0], "user"), Some("acme_app"));
    assert!(cols.contains(&("port".to_owned(), INT4)));
    assert!(cols.contains(&("tenant".to_owned(), TEXT)));
    let (cols, rows) = typed(&p, "SHOW SERVERS").await;
    assert!(cols.contains(&("remote_pid".to_owned(), INT4)));
    assert_eq!(cell(&cols, &rows[0], "user"), Some("app_user"));
    let (cols, rows) = typed(&p, "SHOW STATS_TOTALS").await;
    assert_eq!(cols[4], ("bytes_received".to_owned(), NUMERIC));
    assert_eq!(rows.len(), 2);
    let (cols, _) = typed(&p, "SHOW STATS_AVERAGES").await;
    assert_eq!(cols[9], ("avg_client_parse_count".to_owned(), NUMERIC));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_state_and_errors_are_worded_as_pgbouncer_words_them() {
    let p = start(Opts::default().with_admin()).await;
    let mut r = support::raw::Raw::connect(p.addr.port(), "tgadmin", PW, "tenantgate").await;
    let msgs = r.query("SHOW HELP").round(1).await;
    let notice = msgs.iter().find(|m| m.tag == b'N').expect("a notice");
    assert_eq!(notice.field(b'M').as_deref(), Some("Console usage"));
    assert!(notice.field(b'D').unwrap().contains("WAIT_CLOSE [<db>]"));
    let err = |msgs: Vec<support::raw::Msg>| {
        let e = msgs
            .iter()
            .find(|m| m.tag == b'E')
            .expect("an error")
            .clone();
        (e.code().unwrap(), e.field(b'M').unwrap())
    };
    let nope = |m: &str| ("08P01".to_owned(), m.to_owned());
    assert_eq!(
        err(r.query("RESUME").round(1).await),
        nope("pooler is not paused/suspended")
    );
    assert_eq!(
        err(r.query("KILL nosuch").round(1).await),
        nope("no such database: nosuch")
    );
    assert_eq!(
        err(r.query("PAUSE tenantgate").round(1).await),
        nope("cannot pause admin db: tenantgate")
    );
    let msgs = r.query("SUSPEND").round(1).await;
    assert_eq!(msgs[0].command().as_deref(), Some("SUSPEND"), "{msgs:?}");
    let state = |msgs: Vec<support::raw::Msg>| -> Vec<Vec<Option<String>>> {
        msgs.iter()
            .filter(|m| m.tag == b'D')
            .map(|m| m.cells())
            .collect()
    };
    let s = state(r.query("SHOW STATE").round(1).await);
    assert!(
        s.contains(&vec![Some("suspended".into()), Some("yes".into())]),
        "{s:?}"
    );
    assert_eq!(
        err(r.query("PAUSE").round(1).await),
        nope("already suspended/paused")
    );
    assert_eq!(
        err(r.query("KILL").round(1).await),
        nope("already suspended/paused")
    );
    let msgs = r.query("RESUME").round(1).await;
    assert_eq!(msgs[0].command().as_deref(), Some("RESUME"), "{msgs:?}");
    let s = state(r.query("SHOW STATE").round(1).await);
    assert!(
        s.contains(&vec![Some("active".into()), Some("yes".into())]),
        "{s:?}"
    );
    // Served again after RESUME.
    let c = p.connect("acme_app").await;
    c.query_one("select 1", &[]).await.unwrap();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_answers_only_once_transactions_in_flight_are_done() {
    let p = start(Opts::default().with_admin()).await;
    let c = p.connect("acme_app").await;
    c.batch_execute("begin; select 1").await.unwrap();
    let port = p.addr.port();
    let pause = tokio::task::spawn_blocking(move || {
        let r = tokio::runtime::Runtime::new().unwrap();
        r.block_on(async {
            let mut a = support::raw::Raw::connect(port, "tgadmin", PW, "tenantgate").await;
            a.query("PAUSE").round(1).await
        })
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE answered while a transaction held a connection"
    );
    c.batch_execute("commit").await.unwrap();
    let msgs = tokio::time::timeout(Duration::from_secs(10), pause)
        .await
        .expect("PAUSE answers after COMMIT")
        .unwrap();
    assert_eq!(msgs[0].command().as_deref(), Some("PAUSE"), "{msgs:?}");
    assert!(p.console("RESUME").status.success());
    c.query_one("select 1", &[]).await.unwrap();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_clients_and_server_connections_and_holds_new_ones_until_resume() {
    let p = start(Opts::default().with_admin()).await;
    let c = p.connect("acme_app").await;
    c.batch_execute("begin; select 1").await.unwrap();
    let out = p.console(&format!("KILL {}", p.db));
    assert!(out.status.success(), "{}", stderr(&out));
    let e = c.query_one("select 1", &[]).await.expect_err("killed");
    assert!(
        e.as_db_error().map(|d| d.message()) == Some("database removed") || e.is_closed(),
        "{e:?}"
    );
    // No server connection is left: PostgreSQL shows none of the pool's role.
    common::wait_until("server connections closed", || p.backends(None) == 0).await;
    // A new client's work waits until RESUME.
    let d = p.connect("acme_app").await;
    let q = tokio::spawn(async move {
        d.query_one("select 7::int", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    p.queued(1).await;
    assert!(!q.is_finished(), "served while killed");
    assert!(p.console(&format!("RESUME {}", p.db)).status.success());
    let v = tokio::time::timeout(Duration::from_secs(10), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v, 7);
    p.stop().await;
}

/// The ids in SHOW SERVERS.
fn server_ids(p: &support::TestProxy) -> Vec<String> {
    stdout(&p.console("SHOW SERVERS"))
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("S|"))
        .filter_map(|l| l.rsplit('|').next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_retires_connections_and_wait_close_waits_for_them() {
    let p = start(Opts::default().with_admin()).await;
    let c = p.connect("acme_app").await;
    c.query_one("select 1", &[]).await.unwrap();
    c.batch_execute("begin; select 1").await.unwrap();
    let before = server_ids(&p);
    assert!(!before.is_empty());
    assert!(p.console("RECONNECT").status.success());
    let port = p.addr.port();
    let wait = tokio::task::spawn_blocking(move || {
        let r = tokio::runtime::Runtime::new().unwrap();
        r.block_on(async {
            let mut a = support::raw::Raw::connect(port, "tgadmin", PW, "tenantgate").await;
            a.query("WAIT_CLOSE").round(1).await
        })
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !wait.is_finished(),
        "WAIT_CLOSE answered while a retired connection was in use"
    );
    c.batch_execute("commit").await.unwrap();
    let msgs = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("WAIT_CLOSE answers once the connection is back")
        .unwrap();
    assert_eq!(msgs[0].command().as_deref(), Some("WAIT_CLOSE"), "{msgs:?}");
    let after = server_ids(&p);
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "{before:?} {after:?}"
    );
    c.query_one("select 1", &[]).await.unwrap();
    let now = server_ids(&p);
    assert!(
        !now.is_empty() && now.iter().all(|id| !before.contains(id)),
        "{now:?}"
    );
    p.stop().await;
}
