//! Security events, probes, operator and break-glass sessions (the event log contract).

mod common;
mod support;

use common::{count, count_within, expect_sqlstate, ACME, GLOBEX};
use support::{start, Opts, PW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_failed_event() {
    let p = start(Opts::default()).await;
    assert!(p.try_connect("acme_app", "not-the-password").await.is_err());
    let ev = p.events_named("auth_failed").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["user"], "acme_app");
    assert!(ev[0]["client_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(ev[0]["sqlstate"], "28P01");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_is_bound_to_one_tenant_and_audited() {
    let p = start(Opts::default()).await;
    let c = p.connect(&format!("alice.{}", GLOBEX.id)).await;
    let n = count(&c, "customers").await;
    assert_eq!(n, GLOBEX.customers);
    c.simple_query("select make from vehicles limit 1")
        .await
        .unwrap();
    // Switching is a tamper attempt, like for apps.
    assert!(c
        .simple_query(&format!("set app.tenant_id = '{}'", ACME.id))
        .await
        .is_err());
    let ops = p.events_named("operator_statement").await;
    assert!(
        ops.iter()
            .any(|e| e["statement"] == "select count(*) from customers"),
        "{ops:?}"
    );
    assert!(ops
        .iter()
        .any(|e| e["statement"] == "select make from vehicles limit 1"));
    for e in &ops {
        assert_eq!(e["user"], "alice");
        assert_eq!(e["kind"], "operator");
        assert_eq!(e["tenant"], GLOBEX.id);
        assert_eq!(e["action"], "allow");
    }
    // Without a tenant she is refused.
    let c = p.connect("alice").await;
    expect_sqlstate(c.simple_query("select 1").await, "42501");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakglass_sees_everything_and_is_recorded() {
    let p = start(Opts::default().with_breakglass()).await;
    let c = p.connect("root_admin").await;
    let n = count(&c, "customers").await;
    assert_eq!(n, common::TOTAL_CUSTOMERS);
    let user: String = c
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, common::TENANT_ADMIN);
    assert_eq!(p.events_named("breakglass_session").await.len(), 1);
    let st = p.events_named("breakglass_statement").await;
    assert!(
        st.iter()
            .any(|e| e["statement"] == "select count(*) from customers"),
        "{st:?}"
    );
    assert!(st
        .iter()
        .all(|e| e["tenant"].is_null() && e["kind"] == "breakglass"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_tenant_literal_is_detected_with_the_sessions_own_tenant() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    let sql = format!("select * from customers where tenant_id = '{}'", GLOBEX.id);
    expect_sqlstate(c.simple_query(&sql).await, "42501");
    // Its own id is fine.
    c.simple_query(&format!(
        "select * from customers where tenant_id = '{}'",
        ACME.id
    ))
    .await
    .unwrap();
    let ev = p.events_named("cross_tenant_literal").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["tenant"], ACME.id);
    assert_eq!(ev[0]["statement"], sql.as_str());
    assert_eq!(ev[0]["action"], "block");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_mode_forwards_cross_tenant_literals_and_rls_returns_nothing() {
    let p = start(Opts {
        probe_action: "log",
        ..Opts::default()
    })
    .await;
    let c = p.connect("acme_app").await;
    let rows = c
        .query(
            &format!("select * from customers where tenant_id = '{}'", GLOBEX.id),
            &[],
        )
        .await
        .unwrap();
    assert!(rows.is_empty());
    let ev = p.events_named("cross_tenant_literal").await;
    assert_eq!(ev[0]["action"], "log");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_set_config_event_and_log_hygiene() {
    let p = start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    let sql = format!("select set_config('app.tenant_id', '{}', false)", GLOBEX.id);
    assert!(c.simple_query(&sql).await.is_err());
    // A statement carrying a password is redacted.
    let _ = c
        .simple_query("alter role acme_app password 'hunter2-secret'")
        .await;
    assert!(p
        .try_connect("acme_app", "wrong-password-xyz")
        .await
        .is_err());
    let events = p.events().await;
    let tamper = events
        .iter()
        .find(|e| e["event"] == "tenant_tamper")
        .expect("tenant_tamper");
    assert_eq!(tamper["action"], "block");
    assert_eq!(tamper["statement"], sql.as_str());
    for e in &events {
        assert!(e["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        assert!(e["event"].is_string() && e["session_id"].is_string(), "{e}");
        for field in [
            "user",
            "kind",
            "tenant",
            "client_addr",
            "application_name",
            "database",
            "action",
        ] {
            assert!(e.get(field).is_some(), "missing {field} in {e}");
        }
    }
    let raw = std::fs::read_to_string(&p.events_path).unwrap();
    assert!(!raw.contains("hunter2-secret"));
    assert!(!raw.contains("wrong-password-xyz"));
    assert!(!raw.contains(PW));
    p.stop().await;
}

/// Repeats of one probe are written once, then counted into one `repeat` line when the
/// window closes (here: at shutdown, so nothing depends on timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_probes_are_aggregated() {
    let p = start(Opts {
        security_extra: "event_window = 3600\n".into(),
        ..Opts::default()
    })
    .await;
    let c = p.connect("acme_app").await;
    for _ in 0..50 {
        assert!(c.simple_query("set role postgres").await.is_err());
    }
    let first = p.events_named("role_tamper").await;
    assert_eq!(first.len(), 1, "written once while the window is open");
    let all: Vec<serde_json::Value> = p
        .stop()
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "role_tamper")
        .collect();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["count"], 49);
    assert_eq!(all[1]["aggregate"], "repeat");
}

/// A proxy with a trusted backend user that may switch between ACME and GLOBEX, connected as
/// ACME over a pool of one.
async fn switching_backend() -> (support::TestProxy, tokio_postgres::Client) {
    let p = start(Opts {
        extra: format!(
            "[[users]]\nname = \"backend\"\npassword = \"{PW}\"\ntenants = [\"{}\", \"{}\"]\nallow_switch = true\n",
            ACME.id, GLOBEX.id
        ),
        pool_size: 1,
        ..Opts::default()
    })
    .await;
    let c = p.connect(&format!("backend.{}", ACME.id)).await;
    (p, c)
}

/// The session remembers Parse texts it forwarded as plain, per tenant: after a switch, the
/// text that named the old tenant (its own then) names another tenant and is a probe again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_statement_is_judged_again_after_a_tenant_switch() {
    let (p, c) = switching_backend().await;
    let sql = format!(
        "select count(*) from customers where tenant_id = '{}'",
        ACME.id
    );
    for _ in 0..3 {
        let n: i64 = c.query_one(sql.as_str(), &[]).await.unwrap().get(0);
        assert_eq!(n, ACME.customers);
    }
    c.batch_execute(&format!("SET app.tenant_id = '{}'", GLOBEX.id))
        .await
        .unwrap();
    // A probe now.
    expect_sqlstate(c.query_one(sql.as_str(), &[]).await, "42501");
    let ev = p.events_named("cross_tenant_literal").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["tenant"], GLOBEX.id);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_backend_switches_tenant_by_intercepted_set() {
    let (p, c) = switching_backend().await;
    let n = count(&c, "customers").await;
    assert_eq!(n, ACME.customers);
    // The Flask-style SET is intercepted, not forwarded: it switches later transactions.
    c.batch_execute(&format!("SET app.tenant_id = '{}'", GLOBEX.id))
        .await
        .unwrap();
    let n = count(&c, "customers").await;
    assert_eq!(n, GLOBEX.customers);
    let s: String = c
        .query_one("select current_setting('app.tenant_id')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(s, GLOBEX.id);
    // A tenant outside the list is a tamper attempt; the session keeps its tenant.
    expect_sqlstate(
        c.simple_query(&format!("SET app.tenant_id = '{}'", common::INITECH.id))
            .await,
        "42501",
    );
    let n = count(&c, "customers").await;
    assert_eq!(n, GLOBEX.customers);
    let switches = p.events_named("tenant_switch").await;
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(switches[0]["action"], "allow");
    let tamper = p.events_named("tenant_tamper").await;
    assert_eq!(tamper.len(), 1, "{tamper:?}");
    // The SHOW CLIENTS view and later events carry the new tenant.
    assert!(c.simple_query("set role postgres").await.is_err());
    let role = p.events_named("role_tamper").await;
    assert_eq!(role[0]["tenant"], GLOBEX.id);
    p.stop().await;
}

/// With one event loop (`worker_threads = 1`, the default), a stuck event log must not stall
/// sessions: the writer has its own thread. The log here is a FIFO nobody reads, so writes block
/// once its 64 KiB buffer is full; every statement of an operator is an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_event_log_does_not_stall_sessions() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    let fifo = std::env::temp_dir().join(format!("tg-stuck-events-{}.fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    support::remove_at_exit(&fifo);
    // A reader that never reads: the proxy's open succeeds, its writes then block.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let db = common::fresh_database("stuck");
    let text = support::config_toml(&db, &fifo, &Opts::default());
    let cfg = std::sync::Arc::new(tenantgate::config::Config::from_toml(&text).unwrap());
    // The proxy on its own current-thread runtime, as `serve` runs it by default.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let proxy = tenantgate::server::Proxy::start(cfg).await.unwrap();
            addr_tx.send(proxy.addr).unwrap();
            let _ = stop_rx.await;
            proxy.shutdown(Duration::from_secs(2)).await;
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let connect = |user: String| {
        let url = format!(
            "host=127.0.0.1 port={} user={user} password={PW} dbname={db} sslmode=disable",
            addr.port()
        );
        async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        }
    };
    let op = connect(format!("alice.{}", GLOBEX.id)).await;
    let filler = "x".repeat(400);
    // 400 events of about 700 bytes: four times what the FIFO holds.
    for i in 0..400 {
        let sql = format!("select {i} as n, '{filler}' as filler");
        tokio::time::timeout(Duration::from_secs(5), op.simple_query(&sql))
            .await
            .unwrap_or_else(|_| panic!("statement {i} stalled behind the event log"))
            .unwrap();
    }
    let app = connect("acme_app".into()).await;
    let n = count_within(
        &app,
        "customers",
        5,
        "another session stalled behind the event log",
    )
    .await;
    assert_eq!(n, ACME.customers);
    // Unblock the writer (its writes now fail with EPIPE) and stop.
    drop(reader);
    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || proxy_thread.join())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&fifo);
}

/// The proxy's diagnostics (tracing output) of this test binary, captured in memory so a test
/// can count the warnings one session caused. Installed once; spans at INFO so that every line
/// carries its session's `session_id`.
fn diagnostics() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || W(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

/// Issue 19.6: one client looping over distinct probes must not flood the event log or the
/// diagnostics, every event must still be counted, and the flooding tenant's budget must not
/// suppress another tenant's events.
///
/// Measured with this test (5,000 distinct cross-tenant probes from one session, 50 more from
/// five other sessions of the same tenant, 5 from another tenant):
/// - before (only identical probes were aggregated): 5,055 `cross_tenant_literal` lines,
///   2,445,405 bytes of event log; 5,000 WARN lines (2,098,890 bytes) of diagnostics for the
///   flooding session alone — one of each per probe, whatever the rate.
/// - after (`events_per_session = 20`, `events_per_tenant = 50`): 57 lines, 27,858 bytes of
///   event log (counts adding up to all 5,055 events); 21 WARN lines (8,567 bytes) for the
///   flooding session. Per window the bound is the budgets plus one aggregate line per exceeded
///   budget and event kind, independent of how many probes are sent.
///
/// Fails without the limits: 5,000 lines for the flooding session instead of 21.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_flood_is_bounded_counted_and_does_not_silence_other_tenants() {
    let diag = diagnostics();
    let p = start(Opts {
        // One window for the whole test, so the bounds below are exact counts; the closing
        // aggregates are written at shutdown.
        security_extra: "event_window = 3600\nevents_per_session = 20\nevents_per_tenant = 50\n"
            .into(),
        ..Opts::default()
    })
    .await;
    let probe = |victim: &str, tag: String| {
        format!("select * from customers where tenant_id = '{victim}' and name = '{tag}'")
    };
    let flood = p.connect("acme_app").await;
    for i in 0..5000 {
        expect_sqlstate(
            flood
                .simple_query(&probe(GLOBEX.id, format!("flood {i}")))
                .await,
            "42501",
        );
    }
    // Five more sessions of the same tenant share its budget.
    for s in 0..5 {
        let c = p.connect("acme_app").await;
        for i in 0..10 {
            assert!(c
                .simple_query(&probe(GLOBEX.id, format!("more {s}-{i}")))
                .await
                .is_err());
        }
    }
    // Another tenant, after the flood: its events are written line by line.
    let other = p.connect("globex_app").await;
    for i in 0..5 {
        assert!(other
            .simple_query(&probe(ACME.id, format!("other {i}")))
            .await
            .is_err());
    }
    let raw = p.stop().await;
    let events: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "cross_tenant_literal")
        .collect();
    let weight = |e: &serde_json::Value| e["count"].as_u64().unwrap_or(1);
    let of = |tenant: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["tenant"] == tenant).collect()
    };
    let (acme, globex) = (of(ACME.id), of(GLOBEX.id));
    let flood_lines: Vec<_> = acme
        .iter()
        .filter(|e| e["statement"].as_str().unwrap().contains("'flood "))
        .collect();
    let session = flood_lines[0]["session_id"].as_str().unwrap().to_owned();
    let diag_text = String::from_utf8_lossy(&diag.lock().unwrap()).into_owned();
    let warning_lines: Vec<&str> = diag_text
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&session))
        .collect();
    let warnings = warning_lines.len();
    eprintln!(
        "flood: {} event lines, {} bytes in the event log; {} warning lines ({} bytes) of the flooding session",
        events.len(),
        raw.len(),
        warnings,
        warning_lines.iter().map(|l| l.len() + 1).sum::<usize>()
    );

    // Nothing lost: the lines add up to every event.
    assert_eq!(acme.iter().map(|e| weight(e)).sum::<u64>(), 5050);
    assert_eq!(globex.iter().map(|e| weight(e)).sum::<u64>(), 5);
    // Nothing flooding: the tenant's budget plus one aggregate per budget that ran out.
    assert!(acme.len() <= 50 + 2, "{} lines for acme", acme.len());
    assert_eq!(flood_lines.len(), 21, "20 lines, then one aggregate");
    let agg = flood_lines.iter().find(|e| e["count"].is_u64()).unwrap();
    assert_eq!(agg["count"], 4980);
    assert_eq!(agg["aggregate"], "session");
    assert!(
        agg["first_ts"].is_string() && agg["last_ts"].is_string(),
        "{agg}"
    );
    assert!(warnings <= 21, "{warnings} warnings for one session");
    // The other tenant was not silenced by the flood.
    assert_eq!(globex.len(), 5, "{globex:?}");
    assert!(globex.iter().all(|e| e["count"].is_null()));
}

/// Failed logins have no tenant: they share the budget of their client address, so a password
/// guesser reconnecting for every attempt is bounded too, and every attempt is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_address_are_bounded_and_counted() {
    let p = start(Opts {
        security_extra: "event_window = 3600\nevents_per_tenant = 10\n".into(),
        ..Opts::default()
    })
    .await;
    // md5 and unknown users (the client's SCRAM key derivation is slow in debug builds).
    for i in 0..50 {
        let user = if i % 2 == 0 { "md5_app" } else { "ghost_app" };
        assert!(p.try_connect(user, &format!("guess{i}")).await.is_err());
    }
    let lines: Vec<serde_json::Value> = p
        .stop()
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "auth_failed")
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum::<u64>(),
        50
    );
    assert_eq!(
        lines.len(),
        11,
        "the address's 10, then one aggregate: {lines:?}"
    );
    assert_eq!(lines[10]["aggregate"], "client");
    assert_eq!(lines[10]["count"], 40);
}
