//! Shared fixture for the integration tests: one throwaway PostgreSQL cluster per test binary,
//! holding the auto-shop schema (`crates/pgcluster/src/schema.sql`) in a template database, and a fresh
//! clone of it for each test that wants one.
//!
//! The cluster lives in a static, which never drops; an `atexit` hook stops it (and removes its
//! directory) when the test binary exits, passed or failed.
#![allow(dead_code, unused_imports)] // each test binary uses a different part of this module

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

pub use tenantgate_pgcluster::seed::{
    SeedTenant, ACME, GLOBEX, INITECH, SCHEMA_SQL, TENANTS, TENANT_TABLES, UMBRELLA,
};
use tenantgate_pgcluster::{self as pgcluster, ClusterOptions, PgCluster};

mod sqlstate;
pub use sqlstate::{assert_sqlstate, expect_sqlstate, sqlstate};

/// The database `SCHEMA_SQL` is applied to once; `fresh_database` clones it.
pub const TEMPLATE_DB: &str = "tg_template";

/// The custom setting the RLS policies read.
pub const TENANT_SETTING: &str = "app.tenant_id";

/// The application role: `NOSUPERUSER NOBYPASSRLS`, so RLS applies.
pub const APP_USER: &str = "app_user";
pub const APP_PASSWORD: &str = "app_password";

/// The support role: `BYPASSRLS`, sees every tenant.
pub const TENANT_ADMIN: &str = "tenant_admin";
pub const TENANT_ADMIN_PASSWORD: &str = "admin_password";

/// Seeded rows over all tenants (what the superuser and `tenant_admin` see).
pub const TOTAL_CUSTOMERS: i64 = 3 + 5 + 7 + 9;
pub const TOTAL_VEHICLES: i64 = 4 + 6 + 8 + 10;
pub const TOTAL_SERVICES: i64 = 2 + 3 + 4 + 5;
pub const TOTAL_APPOINTMENTS: i64 = 6 + 10 + 14 + 18;

/// The seeded tenant with this slug.
pub fn tenant(slug: &str) -> &'static SeedTenant {
    tenantgate_pgcluster::seed::by_slug(slug).unwrap_or_else(|| panic!("no seeded tenant {slug:?}"))
}

/// The seeded row count of `table` for `t`.
pub fn seeded(t: &SeedTenant, table: &str) -> i64 {
    t.count(table)
        .unwrap_or_else(|| panic!("no seeded count for table {table:?}"))
}

/// The test binary's cluster, started on first use with `SCHEMA_SQL` applied to
/// `TEMPLATE_DB`. Panics (in every test that asks) if it cannot start.
pub fn cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
    let started = CLUSTER.get_or_init(|| {
        register_exit_hook();
        start_with_template()
    });
    match started {
        Ok(cluster) => cluster,
        Err(e) => panic!("test PostgreSQL cluster unavailable: {e}"),
    }
}

fn start_with_template() -> Result<PgCluster, String> {
    let began = Instant::now();
    let cluster = PgCluster::start(ClusterOptions::default()).map_err(|e| e.to_string())?;
    let started = began.elapsed();
    cluster
        .create_database(TEMPLATE_DB, None)
        .and_then(|()| cluster.psql(TEMPLATE_DB, SCHEMA_SQL))
        .map_err(|e| format!("applying crates/pgcluster/src/schema.sql to {TEMPLATE_DB}: {e}"))?;
    eprintln!(
        "test cluster on {}:{} ({}): started in {:?}, template ready in {:?}",
        cluster.host(),
        cluster.port(),
        cluster.data_dir().display(),
        started,
        began.elapsed(),
    );
    Ok(cluster)
}

/// A new database cloned from `TEMPLATE_DB`, named `<prefix>_<n>`; parallel tests each get
/// their own. Left in place (the whole cluster goes at exit).
pub fn fresh_database(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if name.is_empty() {
        name.push_str("db");
    }
    let name = format!("{name}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster()
        .create_database(&name, Some(TEMPLATE_DB))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    // Database ACLs are not copied from the template: harden the clone as schema.sql does.
    cluster()
        .psql(
            "postgres",
            &format!(
                "REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC; \
                 GRANT CONNECT ON DATABASE {name} TO {APP_USER}, {TENANT_ADMIN}"
            ),
        )
        .unwrap_or_else(|e| panic!("hardening database {name}: {e}"));
    name
}

/// Stops the cluster at process exit, whether the tests passed or not.
fn register_exit_hook() {
    extern "C" fn stop_clusters() {
        // Unwinding out of an `extern "C"` fn aborts; never let it.
        let _ = std::panic::catch_unwind(pgcluster::stop_all_registered);
    }
    // SAFETY: `stop_clusters` is a plain `extern "C" fn()` that does not unwind.
    let rc = unsafe { libc::atexit(stop_clusters) };
    assert_eq!(rc, 0, "atexit registration failed");
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after 10 s. For a state the
/// test can observe (a pool count, a backend gone, a setting reloaded) instead of a sleep that
/// hopes to be long enough: as fast as the state allows, and a clear failure when it never comes.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `select count(*) from <table>`: how many of its rows the session `c` sees. (events.rs
/// finds this statement's text in the event log: keep it as it is.)
pub async fn count(c: &impl tokio_postgres::GenericClient, table: &str) -> i64 {
    try_count(c, table)
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"))
}

/// [`count`], the error kept: for a test that expects it to fail, or that runs it under a
/// timeout or alongside the transaction it waits for.
pub async fn try_count(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
) -> Result<i64, tokio_postgres::Error> {
    Ok(c.query_one(&format!("select count(*) from {table}"), &[])
        .await?
        .get(0))
}

/// [`count`], panicking naming `what` when no answer comes within `secs` seconds: for a
/// session that must be served while others hold or wait for the pool.
pub async fn count_within(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
    secs: u64,
    what: &str,
) -> i64 {
    tokio::time::timeout(std::time::Duration::from_secs(secs), count(c, table))
        .await
        .unwrap_or_else(|_| panic!("no answer within {secs} s: {what}"))
}
