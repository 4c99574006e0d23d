//! The health documents, built from plain values so they can be tested without a server.

use serde::Serialize;

use crate::verify::catalog::TableFacts;
use crate::verify::monitor::{RunResult, Snapshot};
use crate::verify::{Check, Finding, Status};

/// One pool's counters, as the health document and `/metrics` show them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoolView {
    /// `app` or `breakglass`.
    pub name: &'static str,
    /// Configured size.
    pub size: usize,
    /// Checked out now.
    pub active: usize,
    /// Pooled, unused.
    pub idle: usize,
    /// Clients waiting for a connection.
    pub waiting: usize,
}

/// What `/health/tenant-security` needs besides the posture snapshot.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// `[upstream] user`, shown before the first check completes.
    pub upstream_user: &'a str,
    /// `[upstream] database`.
    pub upstream_database: &'a str,
    /// `[security] drift_check_interval` in seconds.
    pub interval_seconds: f64,
    /// `[security] on_drift`, as configured.
    pub on_drift: &'a str,
    /// Signed tenant context is on: the periodic run includes check 10.
    pub signed: bool,
    pub pools: Vec<PoolView>,
}

/// The `/health/tenant-security` document, fields in reading order.
#[derive(Debug, Serialize)]
pub struct TenantSecurity<'a> {
    /// `healthy`, `unhealthy` (a check fails) or `unknown` (no completed check).
    pub status: &'static str,
    /// The upstream role as the last check saw it.
    pub database: Database<'a>,
    pub rls: Rls<'a>,
    pub pools: &'a [PoolView],
    /// The last posture run (the drift monitor's).
    pub last_drift_check: DriftCheck<'a>,
    /// The checks, with their non-passing findings.
    pub checks: Vec<CheckView<'a>>,
}

/// `database`: who the proxy is connected as.
#[derive(Debug, Serialize)]
pub struct Database<'a> {
    /// `current_user`.
    pub user: &'a str,
    /// `session_user`.
    pub session_user: Option<&'a str>,
    /// `current_database()`.
    pub database: &'a str,
    /// `rolsuper`.
    pub superuser: Option<bool>,
    /// `rolbypassrls`.
    pub bypassrls: Option<bool>,
    /// Roles with either flag that this role is a member of.
    pub privileged_memberships: Vec<&'a str>,
    /// `server_version`.
    pub server_version: Option<&'a str>,
}

/// `rls`: the tables and their protection.
#[derive(Debug, Serialize)]
pub struct Rls<'a> {
    pub enabled_tables: usize,
    pub forced_tables: usize,
    pub tenant_tables: usize,
    /// The setting policies must read.
    pub setting: Option<&'a str>,
    pub tenant_column: Option<&'a str>,
    /// One entry per table with the tenant column or RLS.
    pub tables: Vec<TableView<'a>>,
}

/// One table in `rls.tables`.
#[derive(Debug, Serialize)]
pub struct TableView<'a> {
    /// `schema.table`.
    pub name: &'a str,
    /// `relrowsecurity`.
    pub rls_enabled: bool,
    /// `relforcerowsecurity`.
    pub rls_forced: bool,
    pub policies: Vec<&'a str>,
    pub tenant_column: bool,
}

/// `last_drift_check`.
#[derive(Debug, Serialize)]
pub struct DriftCheck<'a> {
    /// When it finished (RFC 3339).
    pub time: Option<&'a str>,
    /// `pass`, `fail`, `error` or `pending`.
    pub result: RunResult,
    /// Why it could not run.
    pub error: Option<&'a str>,
    /// Failures that appeared at the last change for the worse.
    pub drift: &'a [String],
    /// When that was.
    pub drift_time: Option<&'a str>,
    /// Completed runs.
    pub runs: u64,
    /// Seconds between runs.
    pub interval_seconds: f64,
    /// `warn` or `refuse`.
    pub on_drift: &'a str,
    /// Which checks the periodic run includes.
    pub scope: &'static str,
}

/// One check, without its passing findings.
#[derive(Debug, Serialize)]
pub struct CheckView<'a> {
    /// 1 to 10, numbered as `verify` and the docs number them.
    pub id: u8,
    /// Stable machine name (`rls_forced`), for scripts.
    pub key: &'static str,
    pub status: Status,
    /// One line.
    pub summary: &'a str,
    /// Non-passing findings.
    pub findings: Vec<&'a Finding>,
}

fn table_view(t: &TableFacts) -> TableView<'_> {
    TableView {
        name: &t.name,
        rls_enabled: t.rls_enabled,
        rls_forced: t.rls_forced,
        policies: t.policies.iter().map(|p| p.name.as_str()).collect(),
        tenant_column: t.tenant_column,
    }
}

fn check_view(c: &Check) -> CheckView<'_> {
    CheckView {
        id: c.id,
        key: c.key,
        status: c.status,
        summary: &c.summary,
        findings: c
            .findings
            .iter()
            .filter(|f| f.status != Status::Pass)
            .collect(),
    }
}

/// `/health/tenant-security`: healthy means the last run completed and nothing failed; a run
/// that could not complete, or none yet, is not healthy.
pub fn tenant_security<'a>(snap: &'a Snapshot, ctx: &'a Context<'a>) -> TenantSecurity<'a> {
    let status = match snap.result {
        RunResult::Pass => "healthy",
        RunResult::Fail => "unhealthy",
        RunResult::Error | RunResult::Pending => "unknown",
    };
    let report = snap.report.as_deref();
    let database = match report {
        Some(r) => {
            let d = &r.database;
            Database {
                user: &d.user,
                session_user: Some(&d.session_user),
                database: &d.database,
                superuser: Some(d.superuser),
                bypassrls: Some(d.bypassrls),
                privileged_memberships: d
                    .privileged_memberships
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect(),
                server_version: Some(&d.server_version),
            }
        }
        None => Database {
            user: ctx.upstream_user,
            session_user: None,
            database: ctx.upstream_database,
            superuser: None,
            bypassrls: None,
            privileged_memberships: Vec::new(),
            server_version: None,
        },
    };
    let tables = report.map(|r| r.tables.as_slice()).unwrap_or_default();
    TenantSecurity {
        status,
        database,
        rls: Rls {
            enabled_tables: tables.iter().filter(|t| t.rls_enabled).count(),
            forced_tables: tables.iter().filter(|t| t.rls_forced).count(),
            tenant_tables: tables.iter().filter(|t| t.tenant_column).count(),
            setting: report.map(|r| r.setting.as_str()),
            tenant_column: report.map(|r| r.tenant_column.as_str()),
            tables: tables.iter().map(table_view).collect(),
        },
        pools: &ctx.pools,
        last_drift_check: DriftCheck {
            time: snap.time.as_deref(),
            result: snap.result,
            error: snap.error.as_deref(),
            drift: &snap.drift,
            drift_time: snap.drift_time.as_deref(),
            runs: snap.runs,
            interval_seconds: ctx.interval_seconds,
            on_drift: ctx.on_drift,
            scope: if ctx.signed {
                "catalog checks 1, 2, 3, 7, 8, 9, 10"
            } else {
                "catalog checks 1, 2, 3, 7, 8, 9"
            },
        },
        checks: report
            .map(|r| r.checks.iter().map(check_view).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_posture_is_unknown_and_unhealthy() {
        let snap = crate::verify::monitor::PostureState::default().snapshot();
        let ctx = Context {
            upstream_user: "app_user",
            upstream_database: "app",
            interval_seconds: 300.0,
            on_drift: "warn",
            signed: false,
            pools: vec![PoolView {
                name: "app",
                size: 4,
                active: 1,
                idle: 2,
                waiting: 0,
            }],
        };
        let doc = serde_json::to_value(tenant_security(&snap, &ctx)).unwrap();
        assert_eq!(doc["status"], "unknown");
        assert_eq!(doc["database"]["user"], "app_user");
        assert!(doc["database"]["superuser"].is_null());
        assert_eq!(doc["rls"]["enabled_tables"], 0);
        assert_eq!(doc["pools"][0]["idle"], 2);
        assert_eq!(doc["last_drift_check"]["result"], "pending");
        assert_eq!(
            doc["last_drift_check"]["scope"],
            "catalog checks 1, 2, 3, 7, 8, 9"
        );
        let signed = Context {
            signed: true,
            ..ctx
        };
        let doc = serde_json::to_value(tenant_security(&snap, &signed)).unwrap();
        assert_eq!(
            doc["last_drift_check"]["scope"], "catalog checks 1, 2, 3, 7, 8, 9, 10",
            "the monitor runs check 10 when signing is on"
        );
    }
}
