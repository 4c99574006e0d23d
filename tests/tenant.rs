//! Tenant enforcement against a real PostgreSQL with forced RLS and a NOBYPASSRLS role.

mod common;
mod support;

use common::{assert_sqlstate, count, expect_sqlstate, ACME, GLOBEX, INITECH, UMBRELLA};
use support::{start, stderr, stdout, Opts, PW};

async fn setting(c: &tokio_postgres::Client) -> String {
    c.query_one("select current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_tenant_sees_only_its_rows_in_and_out_of_transactions() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    assert_eq!(count(&c, "customers").await, ACME.customers);
    assert_eq!(setting(&c).await, ACME.id);
    // Simple protocol too, and every name carries the tenant's slug.
    for m in c.simple_query("select name from customers").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            assert!(r.get(0).unwrap().starts_with("acme"), "{:?}", r.get(0));
        }
    }
    c.batch_execute("begin").await.unwrap();
    assert_eq!(count(&c, "vehicles").await, ACME.vehicles);
    assert_eq!(setting(&c).await, ACME.id);
    c.batch_execute("commit").await.unwrap();
    // BEGIN inside a multi-statement string, and statements after COMMIT in the same string.
    let msgs = c
        .simple_query("begin; select count(*) from customers; commit; select current_setting('app.tenant_id', true)")
        .await
        .unwrap();
    let rows = support::first_columns(&msgs);
    assert_eq!(rows[0], ACME.customers.to_string());
    assert_eq!(rows.len(), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chooser_picks_tenant_by_suffix_or_options() {
    let p = start(Opts::default()).await;
    let c = p.connect(&format!("shared_app.{}", GLOBEX.id)).await;
    assert_eq!(count(&c, "customers").await, GLOBEX.customers);
    let out = p.psql_env(
        "shared_app",
        &["-c", "select count(*) from customers"],
        &[("PGOPTIONS", &format!("-c app.tenant_id={}", INITECH.id))],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), INITECH.customers.to_string());
    // The option never reaches the upstream as a session setting.
    let out = p.psql_env(
        "shared_app",
        &["-c", "select current_setting('app.tenant_id', true) is null or current_setting('app.tenant_id', true) = ''"],
        &[("PGOPTIONS", &format!("-c app.tenant_id={}", INITECH.id))],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "f",
        "inside the proxy's transaction the tenant is set"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_tenant_user_cannot_choose_another_tenant() {
    let p = start(Opts::default()).await;
    expect_sqlstate(
        p.try_connect(&format!("acme_app.{}", GLOBEX.id), PW).await,
        "42501",
    );
    let out = p.psql_env(
        "acme_app",
        &["-c", "select 1"],
        &[("PGOPTIONS", &format!("-c app.tenant_id={}", GLOBEX.id))],
    );
    assert!(!out.status.success());
    let ev = p.events_named("tenant_tamper").await;
    assert!(ev.len() >= 2, "{ev:?}");
    assert_eq!(ev[0]["user"], "acme_app");
    assert_eq!(ev[0]["action"], "block");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_without_tenant_is_refused_fail_closed() {
    let p = start(Opts::default()).await;
    let c = p.connect("shared_app").await;
    let db = expect_sqlstate(c.simple_query("select * from customers").await, "42501");
    assert_eq!(
        db.message(),
        "tenantgate: no tenant context for this session"
    );
    assert!(db.hint().unwrap_or("").contains("shared_app.<tenant>"));
    // Extended protocol is refused too, and the session stays usable for more refusals.
    expect_sqlstate(c.query("select 1", &[]).await, "42501");
    let ev = p.events_named("no_tenant_refused").await;
    assert!(!ev.is_empty());
    assert_eq!(ev[0]["statement"], "select * from customers");
    assert!(ev[0]["tenant"].is_null());
    assert_eq!(ev[0]["user"], "shared_app");
    // No upstream connection was ever used for it.
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_refused_logged_and_the_session_keeps_its_tenant() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    let cases = [
        (
            format!("set app.tenant_id = '{}'", GLOBEX.id),
            "tenant_tamper",
        ),
        (
            format!("select set_config('app.tenant_id', '{}', false)", GLOBEX.id),
            "tenant_tamper",
        ),
        ("set role postgres".to_owned(), "role_tamper"),
        ("set row_security = off".to_owned(), "rls_tamper"),
    ];
    for (sql, _) in &cases {
        let e = c
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} was allowed"));
        assert_sqlstate(&e, "42501");
        // Extended protocol too.
        let e = c
            .query(sql.as_str(), &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} was allowed (extended)"));
        assert_sqlstate(&e, "42501");
        assert_eq!(count(&c, "customers").await, ACME.customers);
        assert_eq!(setting(&c).await, ACME.id);
    }
    // Inside an explicit transaction the refusal aborts the block, as any error would.
    c.batch_execute("begin").await.unwrap();
    assert!(c.simple_query("set role postgres").await.is_err());
    expect_sqlstate(c.simple_query("select 1").await, "25P02");
    c.batch_execute("rollback").await.unwrap();
    // RESET ALL and DISCARD ALL keep working (drivers' pools send them).
    c.batch_execute("reset all").await.unwrap();
    c.batch_execute("discard all").await.unwrap();
    assert_eq!(count(&c, "customers").await, ACME.customers);
    let events = p.events().await;
    for (sql, name) in &cases {
        let e = events
            .iter()
            .find(|e| e["event"] == *name && e["statement"] == sql.as_str())
            .unwrap_or_else(|| panic!("no {name} event for {sql}: {events:?}"));
        assert_eq!(e["action"], "block");
        assert_eq!(e["tenant"], ACME.id);
        assert_eq!(e["sqlstate"], "42501");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_mode_forwards_and_records() {
    let p = start(Opts {
        probe_action: "log",
        ..Opts::default()
    })
    .await;
    let c = p.connect("acme_app").await;
    c.batch_execute("set row_security = on").await.unwrap();
    let ev = p.events_named("rls_tamper").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["action"], "log");
    p.stop().await;
}

/// ≥ 3 tenants × several clients over pool_size = 2: simple and extended protocol,
/// explicit transactions, errors inside transactions, and clients dropped mid-transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_never_leak_a_tenant() {
    let p = std::sync::Arc::new(
        start(Opts {
            pool_size: 2,
            ..Opts::default()
        })
        .await,
    );
    let mut tasks = Vec::new();
    for t in [ACME, GLOBEX, INITECH, UMBRELLA] {
        for client_no in 0..3 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let user = if client_no == 0 {
                    format!("shared_app.{}", t.id)
                } else {
                    format!("{}_app", t.slug)
                };
                for round in 0..15 {
                    let c = p.connect(&user).await;
                    match (round + client_no) % 5 {
                        0 => {
                            assert_eq!(count(&c, "customers").await, t.customers);
                            assert_eq!(setting(&c).await, t.id);
                        }
                        1 => {
                            for m in c
                                .simple_query(
                                    "select name, current_setting('app.tenant_id') from customers",
                                )
                                .await
                                .unwrap()
                            {
                                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                                    assert!(r.get(0).unwrap().starts_with(t.slug));
                                    assert_eq!(r.get(1).unwrap(), t.id);
                                }
                            }
                        }
                        2 => {
                            c.batch_execute("begin").await.unwrap();
                            assert_eq!(count(&c, "appointments").await, t.appointments);
                            assert!(c.simple_query("select 1/0").await.is_err());
                            c.batch_execute("rollback").await.unwrap();
                            assert_eq!(setting(&c).await, t.id);
                        }
                        3 => {
                            // Dropped mid-transaction: the server must be rolled back or closed.
                            c.batch_execute("begin").await.unwrap();
                            assert_eq!(count(&c, "vehicles").await, t.vehicles);
                            drop(c);
                            continue;
                        }
                        _ => {
                            let stmt = c
                                .prepare("select count(*) from customers where name like $1")
                                .await
                                .unwrap();
                            let n: i64 = c
                                .query_one(&stmt, &[&format!("{}%", t.slug)])
                                .await
                                .unwrap()
                                .get(0);
                            assert_eq!(n, t.customers);
                            let other: i64 = c
                                .query_one(
                                    "select count(*) from customers where name not like $1",
                                    &[&format!("{}%", t.slug)],
                                )
                                .await
                                .unwrap()
                                .get(0);
                            assert_eq!(other, 0);
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("client task");
    }
    p.released().await;
    assert!(
        p.backends(None) <= 2,
        "more upstream backends than pool_size"
    );
    assert_eq!(p.backends(Some("idle in transaction")), 0);
}

/// The tenant-checking pgbench script: 3 tenants × 4 clients over a pool of 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tenant_script_never_sees_a_wrong_tenant() {
    let p = start(Opts {
        pool_size: 2,
        ..Opts::default()
    })
    .await;
    let script = std::env::temp_dir().join(format!("tg-tenant-check-{}.sql", std::process::id()));
    std::fs::write(&script, support::TENANT_CHECK_SCRIPT).unwrap();
    support::remove_at_exit(&script);
    for mode in ["simple", "extended"] {
        let mut children = Vec::new();
        for t in [ACME, GLOBEX, INITECH] {
            children.push(support::pgbench_tenant(&p, t, mode, &script, 4, 3));
        }
        for (t, child) in children {
            let out = child.wait_with_output().unwrap();
            let err = stderr(&out);
            assert!(
                out.status.success(),
                "{} {mode}: {}\n{}",
                t.slug,
                stdout(&out),
                err
            );
            assert!(
                stdout(&out).contains("number of failed transactions: 0"),
                "{}",
                stdout(&out)
            );
        }
    }
    p.stop().await;
}

/// The same script in `-M prepared`: 2 tenants × 4 clients over a pool of 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tenant_script_prepared_mode() {
    let p = start(Opts {
        pool_size: 3,
        ..Opts::default()
    })
    .await;
    let script =
        std::env::temp_dir().join(format!("tg-tenant-check-prep-{}.sql", std::process::id()));
    std::fs::write(&script, support::TENANT_CHECK_SCRIPT).unwrap();
    support::remove_at_exit(&script);
    let children: Vec<_> = [ACME, UMBRELLA]
        .into_iter()
        .map(|t| support::pgbench_tenant(&p, t, "prepared", &script, 4, 3))
        .collect();
    for (t, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}\n{}",
            t.slug,
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("number of failed transactions: 0"),
            "{}",
            stdout(&out)
        );
        assert!(!stderr(&out).contains("does not exist"), "{}", stderr(&out));
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slug_directory_maps_a_name_to_the_tenant_id() {
    // The directory query runs without tenant context, so it needs a readable mapping: a
    // SECURITY DEFINER function owned by the superuser, as a deployment would provide.
    let db = common::fresh_database("directory");
    common::cluster()
        .psql(
            &db,
            "create function tenant_by_slug(s text) returns text language sql security definer \
             set search_path = public as $$ select id::text from tenants where slug = s $$; \
             grant execute on function tenant_by_slug(text) to app_user;",
        )
        .unwrap();
    let p = support::start_on(
        db,
        Opts {
            extra:
                "[tenant]\ndirectory_query = \"select tenant_by_slug($1)\"\ndirectory_ttl = 60\n"
                    .into(),
            ..Opts::default()
        },
    )
    .await;
    let c = p.connect("shared_app.globex").await;
    assert_eq!(count(&c, "customers").await, GLOBEX.customers);
    assert_eq!(setting(&c).await, GLOBEX.id);
    // An unknown slug.
    expect_sqlstate(p.try_connect("shared_app.nosuchtenant", PW).await, "42501");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_name_picks_the_tenant() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "*.db.example.test".into()])
            .unwrap();
    let dir = std::env::temp_dir();
    let n = std::process::id();
    let (c, k) = (
        dir.join(format!("tg-sni-cert-{n}.pem")),
        dir.join(format!("tg-sni-key-{n}.pem")),
    );
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    support::remove_at_exit(&c);
    support::remove_at_exit(&k);
    let p = start(Opts {
        server_extra: format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            c.display(),
            k.display()
        ),
        extra: "[tenant]\nsni_suffix = \".db.example.test\"\n".into(),
        ..Opts::default()
    })
    .await;
    // libpq sends SNI from `host`; resolve the name to the proxy with hostaddr.
    let url = format!(
        "host={}.db.example.test hostaddr=127.0.0.1 port={} user=shared_app dbname={} sslmode=require sslsni=1",
        UMBRELLA.id,
        p.addr.port(),
        p.db
    );
    let out = std::process::Command::new(support::psql_bin())
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "select count(*) from customers",
            &url,
        ])
        .env("PGPASSWORD", PW)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), UMBRELLA.customers.to_string());
    p.stop().await;
}
