//! Pool controls a PgBouncer operator expects (issue 17): the client timeouts with PgBouncer's
//! names, a per-tenant transaction rate, SHOW TENANTS and the per-tenant metrics, each against
//! a real PostgreSQL.
//!
//! Timeouts are set short (0.3–0.5 s) so the tests are quick; nothing here asserts how long
//! anything took: each test waits for the outcome (an error, a closed connection, a backend
//! gone), bounded only against hanging.

mod common;
mod support;

use common::{count, expect_sqlstate, ACME, GLOBEX};
use support::raw::Raw;
use support::{start, Opts, PW};
use tenantgate::config::Config;

/// The FATAL the proxy sent before closing the connection: (SQLSTATE, message).
async fn fatal_then_closed(c: &mut Raw) -> (String, String) {
    let (closed, msgs) = c.closed_after().await;
    assert!(closed, "the connection stayed open: {msgs:?}");
    let e = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("no error before the close: {msgs:?}"));
    assert_eq!(e.field(b'S').as_deref(), Some("FATAL"), "{e:?}");
    (
        e.code().unwrap_or_default(),
        e.field(b'M').unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_is_closed_25p03_and_its_connection_rolled_back_and_pooled() {
    let p = start(Opts {
        pool_size: 1,
        pool_timeout: 20.0,
        upstream_extra: "idle_transaction_timeout = 0.3".into(),
        ..Opts::default()
    })
    .await;
    let mut a = p.raw("acme_app").await;
    let msgs = a
        .query("begin; insert into customers (tenant_id, name) values (current_setting('app.tenant_id')::uuid, 'leftover'); select pg_backend_pid()")
        .round(1)
        .await;
    assert!(support::raw::codes(&msgs).is_empty(), "{msgs:?}");
    let pid = support::raw::rows(&msgs).pop().expect("the backend pid");
    assert_eq!(support::raw::status(&msgs), Some(b'T'));
    // A now sits idle in its transaction, holding the only server connection.
    let (code, message) = fatal_then_closed(&mut a).await;
    assert_eq!(code, "25P03");
    assert_eq!(
        message,
        "terminating connection due to idle-in-transaction timeout"
    );
    // The connection was rolled back and pooled: the next client gets it, clean.
    let b = p.connect("acme_app").await;
    let row = b
        .query_one(
            "select pg_backend_pid()::text, (select count(*) from customers where name = 'leftover')",
            &[],
        )
        .await
        .expect("the next client is served by the pooled connection");
    assert_eq!(row.get::<_, String>(0), pid, "the same server connection");
    assert_eq!(row.get::<_, i64>(1), 0, "the insert was rolled back");
    // Nothing left open upstream.
    assert_eq!(p.backends(Some("idle in transaction")), 0);
    assert_eq!(p.backends(None), 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_query_timeout_is_cancelled_upstream_and_the_client_closed() {
    let p = start(Opts {
        pool_size: 1,
        upstream_extra: "query_timeout = 0.5".into(),
        ..Opts::default()
    })
    .await;
    let mut a = p.raw("acme_app").await;
    a.query("select pg_sleep(20)").flush().await;
    let (code, message) = fatal_then_closed(&mut a).await;
    assert_eq!(code, "57014");
    assert_eq!(message, "canceling statement due to statement timeout");
    // The query does not run on upstream, and the pool's one slot came back.
    common::wait_until("the sleeping backend to go", || {
        p.backends(Some("active")) == 0
    })
    .await;
    let b = p.connect("globex_app").await;
    // Served: the slot was given back.
    assert_eq!(count(&b, "customers").await, GLOBEX.customers);
    // A quick query is not affected.
    b.simple_query("select pg_sleep(0.01)").await.expect("fast");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_is_closed_57p05_after_client_idle_timeout() {
    let p = start(Opts {
        server_extra: "client_idle_timeout = 0.3".into(),
        ..Opts::default()
    })
    .await;
    let mut a = p.raw("acme_app").await;
    let msgs = a.query("select 1").round(1).await;
    assert_eq!(support::raw::rows(&msgs), ["1"]);
    let (code, message) = fatal_then_closed(&mut a).await;
    assert_eq!(code, "57P05");
    assert_eq!(
        message,
        "terminating connection due to idle-session timeout"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_is_the_new_name_of_pool_timeout() {
    // Written with the new name only: a pool of one held by an open transaction makes the
    // next transaction wait query_wait_timeout, then 53300.
    let opts = Opts {
        pool_size: 1,
        ..Opts::default()
    };
    let text = support::config_toml("tg", std::path::Path::new("events.jsonl"), &opts);
    let old_key = "pool_timeout = 10\n";
    assert!(text.contains(old_key), "{text}");
    let both = text.replace(old_key, "pool_timeout = 10\nquery_wait_timeout = 0.3\n");
    let e = Config::from_toml(&both).expect_err("both names");
    assert!(
        e.to_string().contains("pool_timeout") && e.to_string().contains("only one"),
        "{e}"
    );
    let new_name = |text: String| text.replace(old_key, "query_wait_timeout = 0.3\n");
    let cfg = Config::from_toml(&new_name(text)).expect("the new name alone");
    assert_eq!(cfg.upstream.pool_timeout, 0.3);
    let p = support::start_edited(common::fresh_database("tg"), &opts, new_name)
        .await
        .expect("starts");
    let a = p.connect("acme_app").await;
    a.batch_execute("begin; select 1")
        .await
        .expect("holds the pool");
    let g = p.connect("globex_app").await;
    // Waits query_wait_timeout.
    let db = expect_sqlstate(g.simple_query("select 1").await, "53300");
    assert!(db.message().contains("timed out"), "{db:?}");
    assert!(
        db.hint()
            .is_some_and(|h| h.contains("[upstream] pool_size")),
        "{db:?}"
    );
    a.batch_execute("commit").await.expect("commit");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_transaction_rate_gets_53400_while_another_is_served() {
    let limited = "[tenant]\nmax_transactions_per_second = 0.01\nmax_transactions_burst = 3\n";
    let opts = Opts {
        extra: limited.into(),
        ..Opts::default()
    };
    let p = start(opts.clone()).await;
    let acme = p.connect("acme_app").await;
    let acme2 = p.connect("acme_app").await;
    let globex = p.connect("globex_app").await;
    // The bucket is shared by ACME's sessions: three transactions, then none.
    acme.simple_query("select 1").await.expect("1st");
    acme2.simple_query("select 1").await.expect("2nd");
    acme.simple_query("begin; select 1; commit")
        .await
        .expect("3rd");
    // The 4th is over the rate.
    let db = expect_sqlstate(acme2.simple_query("select 1").await, "53400");
    assert_eq!(
        db.message(),
        format!(
            "too many transactions per second for tenant \"{}\"",
            ACME.id
        )
    );
    // Another tenant has a bucket of its own, full: ACME's use costs it nothing.
    for _ in 0..3 {
        let rows = globex
            .simple_query("select count(*) from customers")
            .await
            .expect("GLOBEX is not limited by ACME's rate");
        let n = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(n, Some(GLOBEX.customers.to_string()));
    }
    let limited = p.events_named("tenant_limited").await;
    assert!(!limited.is_empty(), "no tenant_limited event");
    assert_eq!(limited[0]["tenant"], ACME.id);
    assert_eq!(limited[0]["sqlstate"], "53400");
    // The sessions keep working: a reload lifting the limit serves the same session again.
    p.reload(&Opts {
        extra: String::new(),
        ..opts
    })
    .await;
    // Served after the reload.
    assert_eq!(count(&acme2, "customers").await, ACME.customers);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tenants_and_the_tenant_metrics_count_each_tenant_with_typed_columns() {
    let p = start(
        Opts {
            extra: "[tenant]\nmetrics_top_n = 1\n".into(),
            ..Opts::default()
        }
        .with_admin()
        .with_admin_http(),
    )
    .await;
    let a1 = p.connect("acme_app").await;
    let a2 = p.connect("acme_app").await;
    let g = p.connect("globex_app").await;
    for _ in 0..3 {
        a1.simple_query("select 1").await.expect("acme");
    }
    g.simple_query("select 1").await.expect("globex");
    // ACME holds a server connection in an open transaction.
    a2.batch_execute("begin; select 1").await.expect("open");

    let mut console = Raw::connect(p.addr.port(), support::ADMIN_USER, PW, "tenantgate").await;
    let msgs = console.query("SHOW TENANTS").round(1).await;
    let desc = msgs.iter().find(|m| m.tag == b'T').expect("RowDescription");
    let columns = desc.columns();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenant",
            "clients",
            "cl_active",
            "cl_waiting",
            "sv_held",
            "total_xact_count",
            "avg_wait_time",
            "total_rate_limited"
        ]
    );
    let types: Vec<u32> = columns.iter().map(|(_, t)| *t).collect();
    assert_eq!(types, [25, 20, 20, 20, 20, 20, 20, 20], "text, then int8");
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            m.cells()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect()
        })
        .collect();
    let row = |t: &str| {
        rows.iter()
            .find(|r| r[0] == t)
            .unwrap_or_else(|| panic!("no row for {t}: {rows:?}"))
            .clone()
    };
    let (acme, globex) = (row(ACME.id), row(GLOBEX.id));
    // clients, cl_active, cl_waiting, sv_held, total_xact_count
    assert_eq!(acme[1..6], ["2", "1", "0", "1", "3"], "{acme:?}");
    assert_eq!(globex[1..6], ["1", "0", "0", "0", "1"], "{globex:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");

    // /metrics names the most active tenant (top 1) and sums the other as "other".
    let (_, body) = support::http_get(p.admin_http(), "/metrics");
    let line = |name: &str, tenant: &str| format!("{name}{{tenant=\"{tenant}\"}} ");
    let value = |name: &str, tenant: &str| -> Option<String> {
        body.lines()
            .find_map(|l| l.strip_prefix(&line(name, tenant)).map(str::to_owned))
    };
    assert_eq!(
        value("tenantgate_tenant_transactions_total", ACME.id).as_deref(),
        Some("3"),
        "{body}"
    );
    assert_eq!(
        value("tenantgate_tenant_transactions_total", "other").as_deref(),
        Some("1"),
        "{body}"
    );
    assert_eq!(
        value("tenantgate_tenant_server_connections", ACME.id).as_deref(),
        Some("1")
    );
    assert_eq!(
        value("tenantgate_tenant_clients", "other").as_deref(),
        Some("1")
    );
    assert!(!body.contains(GLOBEX.id), "GLOBEX is past the cap: {body}");
    a2.batch_execute("commit").await.expect("commit");
    p.stop().await;
}
