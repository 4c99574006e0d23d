//! Shared fixture for the integration tests: one throwaway PostgreSQL cluster per test binary,
//! holding the auto-shop schema (`src/demo/schema.sql`) in a template database, and a fresh
//! clone of it for each test that wants one.
//!
//! The cluster lives in a static, which never drops; an `atexit` hook stops it (and removes its
//! directory) when the test binary exits, passed or failed.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use tenantgate::pgcluster::{self, ClusterOptions, PgCluster};

/// The schema and seed data every test database starts from.
pub const SCHEMA_SQL: &str = include_str!("../../src/demo/schema.sql");

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

/// The tenant-scoped tables (all but `tenants`), each with RLS enabled and forced.
pub const TENANT_TABLES: [&str; 4] = ["customers", "vehicles", "services", "appointments"];

/// One seeded tenant and how many rows it owns in each table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedTenant {
    pub id: &'static str,
    /// Also the prefix of every customer name (`"acme customer 1"`).
    pub slug: &'static str,
    pub name: &'static str,
    pub customers: i64,
    pub vehicles: i64,
    pub services: i64,
    pub appointments: i64,
}

impl SeedTenant {
    /// The seeded row count of a tenant-scoped table (see `TENANT_TABLES`).
    pub fn count(&self, table: &str) -> i64 {
        match table {
            "customers" => self.customers,
            "vehicles" => self.vehicles,
            "services" => self.services,
            "appointments" => self.appointments,
            "tenants" => 1,
            other => panic!("no seeded count for table {other:?}"),
        }
    }
}

pub const ACME: SeedTenant = SeedTenant {
    id: "11111111-1111-1111-1111-111111111111",
    slug: "acme",
    name: "Acme Auto Repair",
    customers: 3,
    vehicles: 4,
    services: 2,
    appointments: 6,
};
pub const GLOBEX: SeedTenant = SeedTenant {
    id: "22222222-2222-2222-2222-222222222222",
    slug: "globex",
    name: "Globex Garage",
    customers: 5,
    vehicles: 6,
    services: 3,
    appointments: 10,
};
pub const INITECH: SeedTenant = SeedTenant {
    id: "33333333-3333-3333-3333-333333333333",
    slug: "initech",
    name: "Initech Tire & Lube",
    customers: 7,
    vehicles: 8,
    services: 4,
    appointments: 14,
};
pub const UMBRELLA: SeedTenant = SeedTenant {
    id: "44444444-4444-4444-4444-444444444444",
    slug: "umbrella",
    name: "Umbrella Motors",
    customers: 9,
    vehicles: 10,
    services: 5,
    appointments: 18,
};

/// Every seeded tenant, in id order.
pub const TENANTS: [SeedTenant; 4] = [ACME, GLOBEX, INITECH, UMBRELLA];

/// Seeded rows over all tenants (what the superuser and `tenant_admin` see).
pub const TOTAL_CUSTOMERS: i64 = 3 + 5 + 7 + 9;
pub const TOTAL_VEHICLES: i64 = 4 + 6 + 8 + 10;
pub const TOTAL_SERVICES: i64 = 2 + 3 + 4 + 5;
pub const TOTAL_APPOINTMENTS: i64 = 6 + 10 + 14 + 18;

/// The seeded tenant with this slug.
pub fn tenant(slug: &str) -> &'static SeedTenant {
    TENANTS
        .iter()
        .find(|t| t.slug == slug)
        .unwrap_or_else(|| panic!("no seeded tenant {slug:?}"))
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
        .map_err(|e| format!("applying src/demo/schema.sql to {TEMPLATE_DB}: {e}"))?;
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
