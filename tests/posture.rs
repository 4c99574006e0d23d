//! RLS posture against a real PostgreSQL: `tenantgate verify`, the start-up refusal of a
//! privileged upstream role, the admin HTTP endpoints and the drift monitor.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Opts, TestProxy};
use tenantgate::config::Config;
use tenantgate::server::Proxy;

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn app_url(db: &str) -> String {
    let c = common::cluster();
    format!(
        "postgresql://{}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        common::APP_USER,
        common::APP_PASSWORD,
        c.port()
    )
}

fn verify(db: &str, extra: &[&str]) -> Output {
    let url = app_url(db);
    Command::new(BIN)
        .args(["verify", "--database-url", &url])
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("tenantgate verify runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", text(&o.stdout)))
}

fn check<'a>(doc: &'a Value, key: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["key"] == key))
        .unwrap_or_else(|| panic!("no check {key} in {doc}"))
}

fn superuser_sql(db: &str, sql: &str) {
    common::cluster()
        .psql(db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One HTTP/1.0 GET; returns (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("admin connects");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").expect("request written");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response read");
    let raw = text(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {raw}"));
    (status, body.to_owned())
}

fn http_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    let v =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"));
    (status, v)
}

static N: AtomicU64 = AtomicU64::new(0);

fn events_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tenantgate-posture-events-{}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The support fixture's TOML with another upstream role and extra `[security]` keys.
fn config_text(
    db: &str,
    events: &std::path::Path,
    user: &str,
    password: &str,
    o: &Opts,
    security: &str,
) -> String {
    let base = support::config_toml(db, events, o);
    let creds = format!(
        "user = \"{}\"\npassword = \"{}\"",
        common::APP_USER,
        common::APP_PASSWORD
    );
    assert!(base.contains(&creds), "fixture layout changed:\n{base}");
    base.replace(
        &creds,
        &format!("user = \"{user}\"\npassword = \"{password}\""),
    )
    .replacen("[security]\n", &format!("[security]\n{security}\n"), 1)
}

async fn start_with(
    db: String,
    user: &str,
    password: &str,
    o: Opts,
    security: &str,
) -> Result<TestProxy, String> {
    let events = events_path();
    let _ = std::fs::remove_file(&events);
    let text = config_text(&db, &events, user, password, &o, security);
    let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("config invalid: {e}\n{text}"));
    match Proxy::start(Arc::new(cfg)).await {
        Ok(proxy) => Ok(TestProxy {
            addr: proxy.addr,
            db,
            events_path: events,
            proxy: Some(proxy),
        }),
        Err(e) => Err(e.to_string()),
    }
}

fn admin_opts() -> Opts {
    Opts {
        server_extra: "admin_listen = \"127.0.0.1:0\"".into(),
        ..Opts::default()
    }
}

fn admin_addr(p: &TestProxy) -> SocketAddr {
    p.proxy
        .as_ref()
        .and_then(|x| x.admin_addr)
        .expect("admin listener bound")
}

#[test]
fn verify_passes_on_the_sound_schema() {
    let db = common::fresh_database("verify_ok");
    let out = verify(&db, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for t in common::TENANT_TABLES {
        assert!(
            stdout.contains(&format!("public.{t}")),
            "{t} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("tenant_isolation"), "{stdout}");
    assert!(stdout.contains("result: PASS"), "{stdout}");
    // The tenants table is hidden by RLS without a tenant: the cross-tenant probe says so.
    assert!(stdout.contains("pass --tenant ID"), "{stdout}");

    let out = verify(
        &db,
        &[
            "--json",
            "--tenant",
            common::ACME.id,
            "--tenant",
            common::GLOBEX.id,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let doc = json_of(&out);
    assert_eq!(doc["status"], "pass");
    assert_eq!(doc["database"]["user"], "app_user");
    assert_eq!(doc["checks"].as_array().map(Vec::len), Some(9));
    for key in [
        "role",
        "rls_forced",
        "policies",
        "fail_closed",
        "cross_tenant",
        "null_tenant",
        "risks",
        "object_creation",
        "tenant_keys",
    ] {
        assert_eq!(
            check(&doc, key)["status"],
            "pass",
            "{key}: {}",
            check(&doc, key)
        );
    }
}

#[test]
fn verify_fails_naming_an_unforced_and_an_unprotected_table() {
    let db = common::fresh_database("verify_bad");
    superuser_sql(
        &db,
        "ALTER TABLE vehicles NO FORCE ROW LEVEL SECURITY;
         CREATE TABLE invoices (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id uuid);
         INSERT INTO invoices (tenant_id) VALUES ('11111111-1111-1111-1111-111111111111');
         GRANT SELECT ON invoices TO app_user;",
    );
    let out = verify(&db, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("public.vehicles"), "{stdout}");
    assert!(stdout.contains("public.invoices"), "{stdout}");
    assert!(stdout.contains("result: FAIL"), "{stdout}");

    let out = verify(&db, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_of(&out);
    assert_eq!(doc["status"], "fail");
    let forced = check(&doc, "rls_forced");
    assert_eq!(forced["status"], "fail");
    let failing: Vec<&str> = forced["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["status"] == "fail")
        .filter_map(|f| f["object"].as_str())
        .collect();
    assert!(
        failing.contains(&"public.vehicles") && failing.contains(&"public.invoices"),
        "{forced}"
    );
    // invoices has no policy, and its row is visible without a tenant.
    assert_eq!(check(&doc, "policies")["status"], "fail");
    assert_eq!(check(&doc, "fail_closed")["status"], "fail");
    // Its tenant column is nullable and not indexed.
    assert_eq!(check(&doc, "risks")["status"], "warn");
}

#[test]
fn verify_warns_on_a_uuid_cast_without_nullif() {
    let db = common::fresh_database("verify_cast");
    superuser_sql(
        &db,
        "DROP POLICY tenant_isolation ON customers;
         CREATE POLICY tenant_isolation ON customers
             USING (tenant_id = current_setting('app.tenant_id', true)::uuid)
             WITH CHECK (tenant_id = current_setting('app.tenant_id', true)::uuid);",
    );
    let out = verify(&db, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning is not a failure: {}",
        text(&out.stdout)
    );
    let doc = json_of(&out);
    let policies = check(&doc, "policies");
    assert_eq!(policies["status"], "warn", "{policies}");
    assert!(policies.to_string().contains("nullif"), "{policies}");
    // The probe with the setting '' shows the error the warning predicts.
    let probe = check(&doc, "fail_closed");
    assert!(
        probe
            .to_string()
            .contains("invalid input syntax for type uuid"),
        "{probe}"
    );
}

#[test]
fn verify_flags_a_role_that_reaches_bypassrls() {
    let db = common::fresh_database("verify_member");
    superuser_sql(
        &db,
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'posture_member') THEN
                 CREATE ROLE posture_member LOGIN PASSWORD 'member_pw' NOSUPERUSER NOBYPASSRLS;
             END IF;
         END $$;
         GRANT tenant_admin TO posture_member;",
    );
    let c = common::cluster();
    let url = format!(
        "postgresql://posture_member:member_pw@127.0.0.1:{}/{db}?sslmode=disable",
        c.port()
    );
    let out = Command::new(BIN)
        .args(["verify", "--json", "--database-url", &url])
        .output()
        .expect("verify runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let role = json_of(&out)["checks"][0].clone();
    assert_eq!(role["key"], "role");
    assert!(
        role.to_string().contains("tenant_admin") && role.to_string().contains("rolbypassrls"),
        "{role}"
    );
}

#[test]
fn verify_exits_2_when_it_cannot_connect() {
    let port = support::free_port();
    let url =
        format!("postgresql://app_user:x@127.0.0.1:{port}/app?sslmode=disable&connect_timeout=5");
    let out = Command::new(BIN)
        .args(["verify", "--database-url", &url])
        .output()
        .expect("verify runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["verify", "--json", "--database-url", &url])
        .output()
        .expect("verify runs");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["status"], "error");
    let out = Command::new(BIN)
        .args(["verify", "--database-url", "postgresql://[::1"])
        .output()
        .expect("verify runs");
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refuses_a_superuser_upstream_naming_rolsuper() {
    let c = common::cluster();
    let db = common::fresh_database("refuse_super");
    let err = match start_with(
        db.clone(),
        c.superuser(),
        c.superuser_password(),
        Opts::default(),
        "",
    )
    .await
    {
        Ok(p) => {
            p.stop().await;
            panic!("a superuser upstream was accepted");
        }
        Err(e) => e,
    };
    assert!(
        err.contains("rolsuper") && err.contains(c.superuser()),
        "{err}"
    );
    assert!(err.contains("allow_privileged"), "{err}");

    // A BYPASSRLS role is refused too.
    let err = match start_with(
        db,
        common::TENANT_ADMIN,
        common::TENANT_ADMIN_PASSWORD,
        Opts::default(),
        "",
    )
    .await
    {
        Ok(p) => {
            p.stop().await;
            panic!("a BYPASSRLS upstream was accepted");
        }
        Err(e) => e,
    };
    assert!(
        err.contains("rolbypassrls") && err.contains("tenant_admin"),
        "{err}"
    );
}

#[test]
fn serve_exits_non_zero_with_a_superuser_upstream() {
    let c = common::cluster();
    let db = common::fresh_database("serve_super");
    let events = events_path();
    let path = std::env::temp_dir().join(format!(
        "tenantgate-posture-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(
        &path,
        config_text(
            &db,
            &events,
            c.superuser(),
            c.superuser_password(),
            &Opts::default(),
            "",
        ),
    )
    .expect("config written");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let began = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if began.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve kept running with a superuser upstream");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("rolsuper") && err.contains("superuser"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_privileged_starts_and_records_upstream_posture() {
    let c = common::cluster();
    let db = common::fresh_database("allow_super");
    let o = Opts {
        upstream_extra: "allow_privileged = true".into(),
        ..admin_opts()
    };
    let p = start_with(db, c.superuser(), c.superuser_password(), o, "")
        .await
        .unwrap_or_else(|e| panic!("allow_privileged should start: {e}"));
    let ev = p.events_named("upstream_posture").await;
    assert!(!ev.is_empty(), "no upstream_posture event");
    let detail = ev[0]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("rolsuper") && detail.contains("allow_privileged"),
        "{}",
        ev[0]
    );
    assert_eq!(ev[0]["action"], "allow");
    // Allowed, so health is not failed by the role, but it says what the role is.
    let (status, doc) = http_json(admin_addr(&p), "/health/tenant-security");
    assert_eq!(doc["database"]["superuser"], true, "{doc}");
    assert_eq!(status, 200, "{doc}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let p = support::start(admin_opts()).await;
    let admin = admin_addr(&p);
    let (status, live) = http_json(admin, "/health/live");
    assert_eq!((status, live["status"].as_str()), (200, Some("live")));
    let (status, ready) = http_json(admin, "/health/ready");
    assert_eq!(status, 200, "{ready}");

    let (status, doc) = http_json(admin, "/health/tenant-security");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "healthy");
    assert_eq!(doc["database"]["user"], "app_user");
    assert_eq!(doc["database"]["session_user"], "app_user");
    assert_eq!(doc["database"]["database"], p.db.as_str());
    assert_eq!(doc["database"]["superuser"], false);
    assert_eq!(doc["database"]["bypassrls"], false);
    assert_eq!(doc["rls"]["enabled_tables"], 5, "{doc}");
    let tables = doc["rls"]["tables"].as_array().expect("tables");
    for t in common::TENANT_TABLES {
        let row = tables
            .iter()
            .find(|x| x["name"] == format!("public.{t}"))
            .unwrap_or_else(|| panic!("{t} not in {doc}"));
        assert_eq!(row["rls_enabled"], true);
        assert_eq!(row["rls_forced"], true);
        assert_eq!(row["policies"][0], "tenant_isolation");
    }
    assert_eq!(doc["pools"][0]["name"], "app");
    assert!(doc["last_drift_check"]["time"].is_string(), "{doc}");
    assert_eq!(doc["last_drift_check"]["result"], "pass");

    // Some traffic, so the data-path series move.
    let client = p.connect("acme_app").await;
    client
        .query_one("select count(*) from customers", &[])
        .await
        .expect("query");
    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    for series in [
        "tenantgate_client_connections",
        "tenantgate_server_connections{",
        "tenantgate_transactions_total",
        "tenantgate_queries_total",
        "tenantgate_security_events_total{",
        "tenantgate_pool_wait_seconds_bucket",
        "tenantgate_query_duration_seconds_bucket",
        "tenantgate_injection_failures_total",
        "tenantgate_posture_healthy",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }
    assert_eq!(http_get(admin, "/nope").0, 404);
    drop(client);
    p.stop().await;
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let began = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_turns_health_503_and_records_an_event() {
    let db = common::fresh_database("drift_warn");
    let p = start_with(
        db.clone(),
        common::APP_USER,
        common::APP_PASSWORD,
        admin_opts(),
        "drift_check_interval = 0.3",
    )
    .await
    .expect("proxy starts");
    let admin = admin_addr(&p);
    assert_eq!(http_get(admin, "/health/tenant-security").0, 200);
    superuser_sql(&db, "ALTER TABLE vehicles NO FORCE ROW LEVEL SECURITY");
    let doc = wait_for("health 503", || {
        let (status, doc) = http_json(admin, "/health/tenant-security");
        (status == 503).then_some(doc)
    })
    .await;
    assert_eq!(doc["status"], "unhealthy");
    let vehicles = doc["rls"]["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["name"] == "public.vehicles").cloned())
        .expect("vehicles listed");
    assert_eq!(vehicles["rls_forced"], false);
    assert!(
        doc["last_drift_check"]["drift"]
            .to_string()
            .contains("public.vehicles"),
        "{doc}"
    );
    let ev = p.events_named("upstream_posture").await;
    assert!(
        ev.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("worsened") && d.contains("public.vehicles"))),
        "{ev:?}"
    );
    let (_, metrics) = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tenantgate_posture_drift_total"),
        "{metrics}"
    );
    // on_drift = "warn": the process keeps running, but the gate is closed: no new session
    // while the database does not enforce isolation, and readiness says why.
    let (status, ready) = http_json(admin, "/health/ready");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("public.vehicles")),
        "{ready}"
    );
    let err = p
        .try_connect("acme_app", support::PW)
        .await
        .expect_err("a new session while the posture fails");
    assert_eq!(err.code().map(|c| c.code()), Some("57P03"), "{err}");
    // Repaired: healthy and serving again.
    superuser_sql(&db, "ALTER TABLE vehicles FORCE ROW LEVEL SECURITY");
    wait_for("health 200", || {
        (http_get(admin, "/health/tenant-security").0 == 200).then_some(())
    })
    .await;
    assert_eq!(http_get(admin, "/health/ready").0, 200);
    let client = p.connect("acme_app").await;
    assert_eq!(
        client
            .query_one("select count(*) from customers", &[])
            .await
            .expect("query")
            .get::<_, i64>(0),
        common::ACME.customers
    );
    drop(client);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_with_on_drift_refuse_stops_serving() {
    let db = common::fresh_database("drift_refuse");
    let p = start_with(
        db.clone(),
        common::APP_USER,
        common::APP_PASSWORD,
        Opts::default(),
        "drift_check_interval = 0.3\non_drift = \"refuse\"",
    )
    .await
    .expect("proxy starts");
    let _ = p.connect("acme_app").await;
    superuser_sql(
        &db,
        "CREATE TABLE invoices (id int, tenant_id uuid); GRANT SELECT ON invoices TO app_user",
    );
    let shared = p.proxy.as_ref().expect("running").shared.clone();
    wait_for("refusal", || {
        shared.posture.refused.is_cancelled().then_some(())
    })
    .await;
    assert!(shared.shutdown.is_cancelled());
    let why = shared.posture.refusal().unwrap_or_default();
    assert!(why.contains("public.invoices"), "{why}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        p.try_connect("acme_app", support::PW).await.is_err(),
        "still accepting after refusal"
    );
    let ev = p.events_named("upstream_posture").await;
    assert!(ev.iter().any(|e| e["action"] == "block"), "{ev:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_defers_the_check_and_is_not_ready() {
    let port = support::free_port();
    let events = events_path();
    let text = support::config_toml("nowhere", &events, &admin_opts()).replacen(
        &format!("port = {}", common::cluster().port()),
        &format!("port = {port}"),
        1,
    );
    let cfg = Config::from_toml(&text).expect("config");
    let proxy = Proxy::start(Arc::new(cfg))
        .await
        .expect("starts despite an unreachable upstream");
    let admin = proxy.admin_addr.expect("admin");
    let (status, ready) = http_json(admin, "/health/ready");
    assert_eq!(status, 503, "{ready}");
    let (status, doc) = http_json(admin, "/health/tenant-security");
    assert_eq!(status, 503);
    assert_eq!(doc["status"], "unknown");
    assert_eq!(doc["last_drift_check"]["result"], "error");
    proxy.shutdown(Duration::from_secs(1)).await;
}
