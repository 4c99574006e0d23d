//! Wire core against a real PostgreSQL: clients cannot tell the proxy from Postgres.

mod common;
use common::{assert_sqlstate, count, expect_sqlstate};
mod support;

use support::{start, stderr, stdout, Opts, PW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_select_through_proxy() {
    let p = start(Opts::default()).await;
    let out = p.psql("acme_app", &["-c", "select 41+1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "42");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_postgres_message() {
    let p = start(Opts::default()).await;
    let db = expect_sqlstate(p.try_connect("acme_app", "wrong").await, "28P01");
    assert_eq!(
        db.message(),
        "password authentication failed for user \"acme_app\""
    );
    // An unknown user is refused alike.
    expect_sqlstate(p.try_connect("nobody", PW).await, "28P01");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_and_missing_user_are_refused() {
    let p = start(Opts::default()).await;
    let url = format!(
        "host=127.0.0.1 port={} user=acme_app password={PW} dbname=nope",
        p.addr.port()
    );
    let Err(err) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        panic!("an unknown database was accepted");
    };
    let db = assert_sqlstate(&err, "3D000");
    assert_eq!(db.message(), "database \"nope\" does not exist");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_authentication_works_when_configured() {
    let p = start(Opts::default()).await;
    let out = p.psql("md5_app", &["-c", "select 1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = p.connect("md5_app").await;
    let r = c.query_one("select 2::int", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_rollback_is_honoured_and_commit_persists() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    let before = count(&c, "services").await;
    c.batch_execute(&format!(
        "begin; insert into services (tenant_id, code, name, price_cents, duration_minutes) values ('{}', 'RB', 'rolled back', 1, 1); rollback",
        common::ACME.id
    ))
    .await
    .unwrap();
    let after = count(&c, "services").await;
    assert_eq!(before, after);
    c.batch_execute(&format!(
        "begin; insert into services (tenant_id, code, name, price_cents, duration_minutes) values ('{}', 'KEPT', 'kept', 1, 1); commit",
        common::ACME.id
    ))
    .await
    .unwrap();
    let kept = count(&c, "services").await;
    assert_eq!(kept, before + 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_recover_and_multi_statement_returns_every_result() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    expect_sqlstate(c.simple_query("select 1/0").await, "22012");
    let rows = c
        .simple_query("select 1; select 2, 3; select 'x'")
        .await
        .unwrap();
    let data = support::first_columns(&rows);
    assert_eq!(data, vec!["1", "2", "x"]);
    // An error inside an explicit transaction aborts it, like PostgreSQL.
    c.batch_execute("begin").await.unwrap();
    assert!(c.simple_query("select 1/0").await.is_err());
    // The transaction is aborted.
    expect_sqlstate(c.simple_query("select 1").await, "25P02");
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(
        c.query_one("select 5::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_move_every_row() {
    use futures_util::{SinkExt, StreamExt};
    let p = start(Opts::default()).await;
    common::cluster()
        .psql(
            &p.db,
            "create table copytest (n int, t text); grant all on copytest to app_user",
        )
        .unwrap();
    let c = p.connect("acme_app").await;
    // Extended-protocol COPY FROM STDIN (tokio-postgres sends Bind/Execute/Sync, then data).
    let sink = c.copy_in("copy copytest from stdin").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 5000);
    let stream = c.copy_out("copy copytest to stdout").await.unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 5000);
    // Simple-protocol COPY through psql both ways, via a file of this process's own.
    let copy_file =
        std::env::temp_dir().join(format!("tenantgate-copy-{}.txt", std::process::id()));
    let o = p.psql(
        "acme_app",
        &[
            "-c",
            &format!("\\copy copytest to '{}'", copy_file.display()),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.psql(
        "acme_app",
        &[
            "-c",
            &format!("\\copy copytest from '{}'", copy_file.display()),
        ],
    );
    let _ = std::fs::remove_file(&copy_file);
    assert!(o.status.success(), "{}", stderr(&o));
    let n = count(&c, "copytest").await;
    assert_eq!(n, 10000);
    // A failed COPY leaves the session usable.
    let o = p.psql("acme_app", &["-c", "copy copytest from stdin"]);
    let _ = o;
    assert_eq!(
        c.query_one("select 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let r = c.simple_query("select pg_sleep(30)").await;
    canceller.await.unwrap().unwrap();
    expect_sqlstate(r, "57014");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The session goes on.
    assert_eq!(
        c.query_one("select 3::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_clients_gets_53300() {
    let p = start(Opts {
        server_extra: "max_client_conn = 2".into(),
        ..Opts::default()
    })
    .await;
    let _a = p.connect("acme_app").await;
    let _b = p.connect("acme_app").await;
    let db = expect_sqlstate(p.try_connect("acme_app", PW).await, "53300");
    assert_eq!(db.message(), "sorry, too many clients already");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_named_statements_and_resets_on_release() {
    let p = start(Opts {
        pool_mode: "session",
        pool_size: 1,
        ..Opts::default()
    })
    .await;
    let c = p.connect("acme_app").await;
    let stmt = c
        .prepare("select count(*) from customers where name like $1")
        .await
        .unwrap();
    for _ in 0..3 {
        c.batch_execute("begin").await.unwrap();
        let n: i64 = c.query_one(&stmt, &[&"acme%"]).await.unwrap().get(0);
        assert_eq!(n, common::ACME.customers);
        c.batch_execute("commit").await.unwrap();
    }
    c.batch_execute("set application_name = 'dirty'")
        .await
        .unwrap();
    drop(c);
    p.released().await;
    // The single server was reset (DISCARD ALL) before the next client got it.
    let c2 = p.connect("globex_app").await;
    let r = c2
        .query_one("select current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_ne!(r.get::<_, String>(0), "dirty");
    let n = count(&c2, "customers").await;
    assert_eq!(n, common::GLOBEX.customers);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_after_ssl_request_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = start(Opts {
        server_extra: tls_keys(),
        ..Opts::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    // SSLRequest immediately followed by a plaintext StartupMessage.
    let mut bytes = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    bytes.extend_from_slice(&[0, 0, 0, 8, 0, 3, 0, 0]);
    s.write_all(&bytes).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(n > 0);
    assert_eq!(buf[0], b'E', "expected an ErrorResponse, not TLS");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.contains("received unencrypted data after SSL request"),
        "{text}"
    );
    // A well-behaved TLS client still works.
    let out = p.psql_env(
        "acme_app",
        &["-c", "select 'tls'"],
        &[("PGSSLMODE", "require")],
    );
    let _ = out;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_works_and_require_tls_refuses_plaintext() {
    let p = start(Opts {
        server_extra: format!("{}\nrequire_tls = true", tls_keys()),
        extra: support::monitor_user_toml(),
        ..Opts::default()
    })
    .await;
    let url = format!(
        "host=127.0.0.1 port={} user=monitor_app dbname={} sslmode=require",
        p.addr.port(),
        p.db
    );
    let out = std::process::Command::new(support::psql_bin())
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &url,
        ])
        .env("PGPASSWORD", PW)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = p.psql("acme_app", &["-c", "select 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no pg_hba.conf entry"),
        "{}",
        stderr(&out)
    );
    p.stop().await;
}

/// A self-signed certificate for 127.0.0.1/localhost, written to temp files.
fn tls_keys() -> String {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir();
    let n = rand_suffix();
    let c = dir.join(format!("tg-cert-{n}.pem"));
    let k = dir.join(format!("tg-key-{n}.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    support::remove_at_exit(&c);
    support::remove_at_exit(&k);
    format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        c.display(),
        k.display()
    )
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ std::process::id() as u64
}

/// pgbench -S in simple and extended mode through pool_size = 4: no failures, and
/// PostgreSQL never shows more than 4 backends for the upstream role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_respects_pool_size() {
    let db = common::fresh_database("bench");
    support::pgbench_init(&db);
    let p = support::start_on(
        db,
        Opts {
            pool_size: 4,
            ..Opts::default()
        },
    )
    .await;
    for mode in ["simple", "extended", "prepared"] {
        let watcher = support::BackendWatcher::start(&p);
        let out = support::pgbench(
            &p,
            "acme_app",
            &["-S", "-M", mode, "-c", "16", "-j", "2", "-T", "4"],
        );
        let max = watcher.stop();
        assert!(
            out.status.success(),
            "{mode}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(text.contains("number of failed transactions: 0"), "{text}");
        assert!(!stderr(&out).contains("does not exist"), "{}", stderr(&out));
        assert!(
            max <= 4,
            "{mode}: saw {max} upstream backends with pool_size = 4"
        );
        assert!(max >= 1, "{mode}: the watcher saw no backend at all");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_cannot_run_in_a_transaction_block_work() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    // VACUUM needs table ownership to do work, but must not fail with "cannot run inside a
    // transaction block" because of the injection.
    let r = c.simple_query("vacuum customers").await;
    if let Err(e) = &r {
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(
            !msg.contains("transaction block") && !msg.contains("pipeline"),
            "{msg}"
        );
    }
    c.batch_execute("discard all").await.unwrap();
    assert_eq!(count(&c, "customers").await, common::ACME.customers);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_hold_in_every_transaction_without_leaking() {
    let p = start(Opts {
        pool_size: 1,
        ..Opts::default()
    })
    .await;
    let out = p.psql_env(
        "acme_app",
        &[
            "-c",
            "show search_path",
            "-c",
            "show statement_timeout",
            "-c",
            "show timezone",
            "-c",
            "select count(*) from customers",
        ],
        &[
            (
                "PGOPTIONS",
                "-c search_path=pg_catalog,public -c statement_timeout=1234",
            ),
            ("PGTZ", "Europe/Paris"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        vec![
            "pg_catalog,public",
            "1234ms",
            "Europe/Paris",
            &common::ACME.customers.to_string()
        ]
    );
    // The next client on the same (single) server connection sees the defaults.
    let out = p.psql(
        "globex_app",
        &["-c", "show statement_timeout", "-c", "show timezone"],
    );
    let text = stdout(&out);
    assert!(
        !text.contains("1234ms") && !text.contains("Europe/Paris"),
        "{text}"
    );
    // A bad value refuses the connection, as PostgreSQL does.
    let out = p.psql_env(
        "acme_app",
        &["-c", "select 1"],
        &[("PGTZ", "Mars/Olympus_Mons")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Mars/Olympus_Mons"),
        "{}",
        stderr(&out)
    );
    // Settings that change who the session is are refused and recorded.
    let out = p.psql_env(
        "acme_app",
        &["-c", "select 1"],
        &[("PGOPTIONS", "-c role=postgres")],
    );
    assert!(!out.status.success());
    let out = p.psql_env(
        "acme_app",
        &["-c", "select 1"],
        &[("PGOPTIONS", "-c row_security=off")],
    );
    assert!(!out.status.success());
    assert_eq!(p.events_named("role_tamper").await.len(), 1);
    assert_eq!(p.events_named("rls_tamper").await.len(), 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_set_of_a_tracked_parameter_follows_it_across_servers() {
    let p = start(Opts {
        pool_size: 2,
        ..Opts::default()
    })
    .await;
    let a = p.connect("acme_app").await;
    a.batch_execute("set timezone = 'Asia/Tokyo'")
        .await
        .unwrap();
    // Other clients keep the default, whichever server they get.
    let b = p.connect("globex_app").await;
    for _ in 0..5 {
        let tz: String = b.query_one("show timezone", &[]).await.unwrap().get(0);
        assert_ne!(tz, "Asia/Tokyo");
        let tz: String = a.query_one("show timezone", &[]).await.unwrap().get(0);
        assert_eq!(tz, "Asia/Tokyo");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_call_is_refused_with_ready_for_query_in_and_out_of_a_transaction() {
    use support::raw::{codes, status};
    // pg_backend_pid; the proxy refuses every FunctionCall message.
    const PG_BACKEND_PID: u32 = 2026;
    for mode in ["transaction", "session"] {
        let p = start(Opts {
            pool_size: 1,
            pool_mode: mode,
            ..Opts::default()
        })
        .await;
        let mut a = p.raw("acme_app").await;
        let got = a.function_call(PG_BACKEND_PID).round(1).await;
        assert_eq!(codes(&got), ["0A000"], "{mode}");
        assert_eq!(status(&got), Some(b'I'), "{mode}");
        // Inside a transaction (the server connection is attached), as PostgreSQL answers an
        // error there: the block is aborted, and ReadyForQuery says so.
        a.query("begin").round(1).await;
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            a.function_call(PG_BACKEND_PID).round(1),
        )
        .await
        .unwrap_or_else(|_| panic!("{mode}: no ReadyForQuery after a FunctionCall"));
        assert_eq!(codes(&got), ["0A000"], "{mode}");
        assert_eq!(status(&got), Some(b'E'), "{mode}");
        let got = a.query("rollback; select 1").round(1).await;
        assert!(codes(&got).is_empty(), "{mode}: {got:?}");
        assert_eq!(status(&got), Some(b'I'), "{mode}");
        a.close_conn().await;
        p.stop().await;
    }
}
