//! RLS posture against a real PostgreSQL: `tenantgate verify`, the start-up refusal of a
//! privileged upstream role, the admin HTTP endpoints and the drift monitor.

mod common;
use common::{count, expect_sqlstate};
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Opts, TestProxy};

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

fn http_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = support::http_get(addr, path);
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
    as_role(
        support::config_toml(db, events, o),
        user,
        password,
        security,
    )
}

/// The fixture's configuration `base` with another upstream role and extra `[security]` keys.
fn as_role(base: String, user: &str, password: &str, security: &str) -> String {
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
    support::start_edited(db, &o, |text| as_role(text, user, password, security)).await
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
    let _ = std::fs::remove_file(&events);
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
        ..Opts::default()
    }
    .with_admin_http();
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
    let (status, doc) = http_json(p.admin_http(), "/health/tenant-security");
    assert_eq!(doc["database"]["superuser"], true, "{doc}");
    assert_eq!(status, 200, "{doc}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let p = support::start(Opts::default().with_admin_http()).await;
    let admin = p.admin_http();
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
    count(&client, "customers").await;
    let (status, metrics) = support::http_get(admin, "/metrics");
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
    assert_eq!(support::http_get(admin, "/nope").0, 404);
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
        Opts::default().with_admin_http(),
        "drift_check_interval = 0.3",
    )
    .await
    .expect("proxy starts");
    let admin = p.admin_http();
    assert_eq!(support::http_get(admin, "/health/tenant-security").0, 200);
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
    let (_, metrics) = support::http_get(admin, "/metrics");
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
    // No new session while the posture fails.
    expect_sqlstate(p.try_connect("acme_app", support::PW).await, "57P03");
    // Repaired: healthy and serving again.
    superuser_sql(&db, "ALTER TABLE vehicles FORCE ROW LEVEL SECURITY");
    wait_for("health 200", || {
        (support::http_get(admin, "/health/tenant-security").0 == 200).then_some(())
    })
    .await;
    assert_eq!(support::http_get(admin, "/health/ready").0, 200);
    let client = p.connect("acme_app").await;
    assert_eq!(count(&client, "customers").await, common::ACME.customers);
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
    let shared = p.shared().clone();
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
    let p = support::start_edited(
        "nowhere".into(),
        &Opts::default().with_admin_http(),
        |text| {
            text.replacen(
                &format!("port = {}", common::cluster().port()),
                &format!("port = {port}"),
                1,
            )
        },
    )
    .await
    .expect("starts despite an unreachable upstream");
    let admin = p.admin_http();
    let (status, ready) = http_json(admin, "/health/ready");
    assert_eq!(status, 503, "{ready}");
    let (status, doc) = http_json(admin, "/health/tenant-security");
    assert_eq!(status, 503);
    assert_eq!(doc["status"], "unknown");
    assert_eq!(doc["last_drift_check"]["result"], "error");
    p.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Code the upstream role can create (check 8), the serving gate, keys across tenants (check 9).
// ---------------------------------------------------------------------------------------------

/// Starts the proxy as `app_user` with extra `[security]` keys; the error text when refused.
async fn start_app(db: &str, o: Opts, security: &str) -> Result<TestProxy, String> {
    start_with(
        db.to_owned(),
        common::APP_USER,
        common::APP_PASSWORD,
        o,
        security,
    )
    .await
}

async fn refused(db: &str) -> String {
    match start_app(db, Opts::default(), "").await {
        Ok(p) => {
            p.stop().await;
            panic!("the proxy started although app_user can create code in {db}");
        }
        Err(e) => e,
    }
}

/// A role name unique to this test run (roles are cluster-wide; tests share the cluster).
fn role_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_refused_when_the_role_can_create_code_naming_the_revoke() {
    let db = common::fresh_database("create_code");
    // The hardened clone starts.
    start_app(&db, Opts::default(), "")
        .await
        .unwrap_or_else(|e| panic!("the hardened schema should start: {e}"))
        .stop()
        .await;

    // PostgreSQL's default: TEMPORARY on the database for PUBLIC (pg_temp functions).
    superuser_sql(&db, &format!("GRANT TEMPORARY ON DATABASE {db} TO PUBLIC"));
    let err = refused(&db).await;
    assert!(
        err.contains("TEMPORARY on database")
            && err.contains("granted to PUBLIC")
            && err.contains(&format!("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC;"))
            && err.contains("allow_object_creation"),
        "{err}"
    );
    superuser_sql(
        &db,
        &format!("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC"),
    );

    // CREATE on a schema, granted to the role itself.
    superuser_sql(
        &db,
        "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO app_user",
    );
    let err = refused(&db).await;
    assert!(
        err.contains("CREATE on schema scratch")
            && err.contains("REVOKE CREATE ON SCHEMA scratch FROM \"app_user\";"),
        "{err}"
    );
    superuser_sql(&db, "REVOKE CREATE ON SCHEMA scratch FROM app_user");

    // CREATE on public through a role app_user is a member of.
    let writers = role_name("writers");
    superuser_sql(
        &db,
        &format!(
            "CREATE ROLE {writers} NOLOGIN; GRANT CREATE ON SCHEMA public TO {writers}; \
             GRANT {writers} TO app_user"
        ),
    );
    let err = refused(&db).await;
    assert!(
        err.contains(&format!("{writers}, of which app_user is a member"))
            && err.contains(&format!("REVOKE \"{writers}\" FROM \"app_user\";")),
        "{err}"
    );
    superuser_sql(
        &db,
        &format!("REVOKE {writers} FROM app_user; REVOKE CREATE ON SCHEMA public FROM {writers}"),
    );

    // Owning a function (ALTER FUNCTION … SET app.tenant_id) and a tenant table.
    superuser_sql(
        &db,
        "CREATE FUNCTION public.report() RETURNS bigint LANGUAGE sql AS 'select count(*) from customers'; \
         ALTER FUNCTION public.report() OWNER TO app_user; \
         ALTER TABLE vehicles OWNER TO app_user",
    );
    let err = refused(&db).await;
    assert!(
        err.contains("ALTER FUNCTION public.report() OWNER TO")
            && err.contains("ALTER TABLE public.vehicles OWNER TO")
            && err.contains("row-level security"),
        "{err}"
    );
    superuser_sql(
        &db,
        &format!(
            "REASSIGN OWNED BY app_user TO {}",
            common::cluster().superuser()
        ),
    );

    // Fixed: starts again.
    start_app(&db, Opts::default(), "")
        .await
        .unwrap_or_else(|e| panic!("the repaired schema should start: {e}"))
        .stop()
        .await;
}

/// Creates a `pg_temp` PL/pgSQL function whose text never says `set_config` (it builds the
/// name at run time), switches to `victim` with it, and counts customers: what a hostile app
/// does with TEMPORARY. One simple Query, so one transaction under the injected tenant.
const TEMP_FUNCTION_ATTACK: &str = "\
    CREATE FUNCTION pg_temp.sw(t text) RETURNS text LANGUAGE plpgsql AS $f$ \
    DECLARE r text; BEGIN \
      EXECUTE format('select %s(%L, %L, true)', 'set_' || 'config', 'app.' || 'tenant_id', t) INTO r; \
      RETURN r; END $f$; \
    SELECT pg_temp.sw('VICTIM'); \
    SELECT count(*)::text FROM customers";

fn attack_sql(victim: &str) -> String {
    TEMP_FUNCTION_ATTACK.replace("VICTIM", victim)
}

fn last_value(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    msgs.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_object_creation_a_pg_temp_function_reads_another_tenant() {
    let db = common::fresh_database("temp_attack");
    // Not hardened: PostgreSQL's default TEMPORARY for PUBLIC.
    superuser_sql(&db, &format!("GRANT TEMPORARY ON DATABASE {db} TO PUBLIC"));

    // `verify` reports it as a failure, with the fix.
    let out = verify(&db, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let c = check(&json_of(&out), "object_creation").clone();
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c.to_string()
            .contains(&format!("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC;")),
        "{c}"
    );

    let o = Opts {
        pool_mode: "session",
        ..Opts::default()
    };
    let p = start_app(&db, o, "allow_object_creation = true")
        .await
        .unwrap_or_else(|e| panic!("allow_object_creation should start: {e}"));
    let ev = p.events_named("upstream_posture").await;
    assert!(
        ev.iter().any(|e| e["action"] == "allow"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("TEMPORARY") && d.contains("allow_object_creation"))),
        "{ev:?}"
    );
    // The attack the check exists for: acme reads globex's customers.
    let acme = p.connect("acme_app").await;
    let msgs = acme
        .simple_query(&attack_sql(common::GLOBEX.id))
        .await
        .expect("the pg_temp function runs");
    assert_eq!(
        last_value(&msgs).as_deref(),
        Some(common::GLOBEX.customers.to_string().as_str()),
        "acme_app read globex's customers through a pg_temp function"
    );
    drop(acme);
    p.stop().await;

    // Hardened (the default set-up): the same statement cannot create the function.
    superuser_sql(
        &db,
        &format!("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC"),
    );
    let p = start_app(
        &db,
        Opts {
            pool_mode: "session",
            ..Opts::default()
        },
        "",
    )
    .await
    .unwrap_or_else(|e| panic!("hardened start: {e}"));
    let acme = p.connect("acme_app").await;
    // No TEMPORARY, no pg_temp function.
    expect_sqlstate(
        acme.simple_query(&attack_sql(common::GLOBEX.id)).await,
        "42501",
    );
    // Still serving.
    let n = count(&acme, "customers").await;
    assert_eq!(n, common::ACME.customers);
    drop(acme);
    p.stop().await;
}

/// A tenant table without RLS holding one globex row, readable by app_user.
fn unprotected_invoices(db: &str) {
    superuser_sql(
        db,
        &format!(
            "CREATE TABLE invoices (tenant_id uuid NOT NULL, id bigint NOT NULL, amount int, \
                                    PRIMARY KEY (tenant_id, id)); \
             INSERT INTO invoices VALUES ('{}', 1, 4200); \
             GRANT SELECT ON invoices TO app_user",
            common::GLOBEX.id
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprotected_table_refuses_clients_until_it_is_fixed() {
    let db = common::fresh_database("unprotected");
    unprotected_invoices(&db);
    let p = start_app(
        &db,
        Opts::default().with_admin_http(),
        "drift_check_interval = 0.3",
    )
    .await
    .unwrap_or_else(|e| panic!("schema failures do not stop the start: {e}"));
    let admin = p.admin_http();
    let (status, ready) = http_json(admin, "/health/ready");
    assert_eq!(status, 503, "{ready}");
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("public.invoices")
            && reason.contains("not enabled")
            && reason.contains("serve_unprotected"),
        "{ready}"
    );
    assert_eq!(support::http_get(admin, "/health/tenant-security").0, 503);
    // No session while a tenant table is unprotected.
    let db_err = expect_sqlstate(p.try_connect("acme_app", support::PW).await, "57P03");
    assert!(
        db_err.message().contains("not accepting connections")
            && db_err.detail().is_some_and(|d| d.contains("tenant isolation"))
            // Unauthenticated clients are not told the schema.
            && !format!("{db_err:?}").contains("invoices"),
        "{db_err:?}"
    );
    let ev = p.events_named("upstream_posture").await;
    assert!(
        ev.iter().any(|e| e["action"] == "block"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("public.invoices"))),
        "{ev:?}"
    );

    // Fixed by the operator: the monitor sees it and the gate opens.
    superuser_sql(
        &db,
        "ALTER TABLE invoices ENABLE ROW LEVEL SECURITY; ALTER TABLE invoices FORCE ROW LEVEL SECURITY; \
         CREATE POLICY tenant_isolation ON invoices \
           USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid) \
           WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)",
    );
    wait_for("ready 200", || {
        (support::http_get(admin, "/health/ready").0 == 200).then_some(())
    })
    .await;
    let acme = p.connect("acme_app").await;
    let n = count(&acme, "invoices").await;
    assert_eq!(n, 0, "globex's invoice is not acme's");
    drop(acme);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_unprotected_serves_and_shows_why_it_is_not_the_default() {
    let db = common::fresh_database("serve_unprotected");
    unprotected_invoices(&db);
    let p = start_app(
        &db,
        Opts::default().with_admin_http(),
        "serve_unprotected = true",
    )
    .await
    .expect("starts");
    let admin = p.admin_http();
    let (status, ready) = http_json(admin, "/health/ready");
    assert_eq!(status, 200, "{ready}");
    // The posture still fails, and says so.
    assert_eq!(support::http_get(admin, "/health/tenant-security").0, 503);
    let ev = p.events_named("upstream_posture").await;
    assert!(
        ev.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("serve_unprotected"))),
        "{ev:?}"
    );
    // A fixed-tenant user reads another tenant's row: the leak the default refuses to serve.
    let acme = p.connect("acme_app").await;
    let tenant: String = acme
        .query_one("select tenant_id::text from invoices", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(tenant, common::GLOBEX.id);
    drop(acme);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_without_the_tenant_are_reported_with_composite_sql() {
    let db = common::fresh_database("keys");
    // A naive table: single-column primary key, a foreign key on customers (id) alone.
    superuser_sql(
        &db,
        "ALTER TABLE customers ADD CONSTRAINT customers_id_key UNIQUE (id); \
         CREATE TABLE orders (id bigint PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants (id), \
                              customer_id bigint REFERENCES customers (id)); \
         CREATE INDEX ON orders (tenant_id); \
         ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY; \
         CREATE POLICY tenant_isolation ON orders \
           USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid) \
           WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid); \
         GRANT SELECT, INSERT, DELETE ON orders TO app_user",
    );
    let out = verify(&db, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning by default: {}",
        text(&out.stdout)
    );
    let keys = check(&json_of(&out), "tenant_keys").clone();
    assert_eq!(keys["status"], "warn", "{keys}");
    let s = keys.to_string();
    for want in [
        "public.orders/orders_pkey",
        "PRIMARY KEY (\\\"tenant_id\\\", \\\"id\\\")",
        "public.orders/orders_customer_id_fkey",
        "FOREIGN KEY (\\\"tenant_id\\\", \\\"customer_id\\\") REFERENCES public.customers (\\\"tenant_id\\\", \\\"id\\\")",
        "public.customers/customers_id_key",
        "23505",
    ] {
        assert!(s.contains(want), "{want} missing from {keys}");
    }
    // The demo tables pass: only the naive ones are listed.
    assert!(!s.contains("public.vehicles/"), "{keys}");
    let out = verify(&db, &["--json", "--require-tenant-keys"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // The oracle the finding describes, and the composite keys that close it (one session).
    let p = start_app(&db, Opts::default(), "").await.expect("starts");
    let acme = p.connect("acme_app").await;
    let globex_customer: i64 = {
        let c = common::cluster();
        let (su, conn) = tokio_postgres::connect(
            &c.conn_str(c.superuser(), c.superuser_password(), &db),
            tokio_postgres::NoTls,
        )
        .await
        .expect("superuser connects");
        tokio::spawn(conn);
        su.query_one(
            "select min(id) from customers where tenant_id = $1::text::uuid",
            &[&common::GLOBEX.id],
        )
        .await
        .expect("globex customer")
        .get(0)
    };
    // Naive foreign key: referencing globex's customer succeeds, so acme learns it exists.
    acme.execute(
        &format!(
            "insert into orders (id, tenant_id, customer_id) values (1, '{}', {globex_customer})",
            common::ACME.id
        ),
        &[],
    )
    .await
    .expect("the naive foreign key accepts another tenant's customer");
    // Composite foreign key (the demo schema's vehicles): 23503, as for an id that does not exist.
    let pointing_at_globex = acme
        .execute(
            &format!(
                "insert into vehicles (tenant_id, customer_id, make, model, model_year, plate) \
                 values ('{}', {globex_customer}, 'x', 'y', 2020, 'Z')",
                common::ACME.id
            ),
            &[],
        )
        .await;
    expect_sqlstate(pointing_at_globex, "23503");
    drop(acme);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_creation_granted_after_start_closes_the_gate_like_any_drift() {
    let db = common::fresh_database("drift_temp");
    let p = start_app(
        &db,
        Opts::default().with_admin_http(),
        "drift_check_interval = 0.3",
    )
    .await
    .expect("hardened start");
    let admin = p.admin_http();
    assert_eq!(support::http_get(admin, "/health/ready").0, 200);
    superuser_sql(&db, &format!("GRANT TEMPORARY ON DATABASE {db} TO PUBLIC"));
    let ready = wait_for("ready 503", || {
        let (status, doc) = http_json(admin, "/health/ready");
        (status == 503).then_some(doc)
    })
    .await;
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("object_creation") && r.contains("REVOKE TEMPORARY")),
        "{ready}"
    );
    // No new session while the role can create code.
    expect_sqlstate(p.try_connect("acme_app", support::PW).await, "57P03");
    superuser_sql(
        &db,
        &format!("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC"),
    );
    wait_for("ready 200", || {
        (support::http_get(admin, "/health/ready").0 == 200).then_some(())
    })
    .await;
    drop(p.connect("acme_app").await);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tenant_keys_refuses_sessions_on_a_single_column_key() {
    let db = common::fresh_database("strict_keys");
    superuser_sql(
        &db,
        "ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email)",
    );
    // A warning by default: serving.
    let p = start_app(&db, Opts::default(), "").await.expect("starts");
    drop(p.connect("acme_app").await);
    p.stop().await;
    // Required: the key is a failure, and the gate is closed.
    let p = start_app(
        &db,
        Opts::default().with_admin_http(),
        "require_tenant_keys = true",
    )
    .await
    .expect("starts, gated");
    let (status, ready) = http_json(p.admin_http(), "/health/ready");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("customers_email_key")),
        "{ready}"
    );
    // Gated.
    expect_sqlstate(p.try_connect("acme_app", support::PW).await, "57P03");
    p.stop().await;
}
