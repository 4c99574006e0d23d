//! The probes (checks 4, 5 and 6): read the tenant tables as the connecting role and see what
//! row-level security actually lets through, with no tenant, with `''`, and as each tenant.
//!
//! Every probe runs in a read-only transaction that is rolled back, one savepoint per table so
//! that one refused table does not hide the others. Only `tenantgate verify` runs them: they read
//! data (counts), so the periodic drift check does not.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::catalog::{quote_ident, Facts, TableFacts};
use super::report::{Check, Finding, Status};
use super::VerifyError;

/// At most this many tenants are probed in check 5.
pub const MAX_TENANTS: usize = 20;

/// What one probe query came to.
enum Probe<T> {
    Ok(T),
    /// The database refused it; the SQLSTATE and message.
    Refused(String, String),
}

fn refused(e: &tokio_postgres::Error) -> Option<(String, String)> {
    let db = e.as_db_error()?;
    Some((db.code().code().to_owned(), db.message().to_owned()))
}

/// Runs one probe query inside a savepoint, so a refusal leaves the transaction usable.
async fn in_savepoint(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Probe<Vec<tokio_postgres::Row>>, VerifyError> {
    let q = |e| VerifyError::query("probing", e);
    client
        .batch_execute("SAVEPOINT tg_probe")
        .await
        .map_err(q)?;
    match client.query(sql, params).await {
        Ok(rows) => {
            client
                .batch_execute("RELEASE SAVEPOINT tg_probe")
                .await
                .map_err(q)?;
            Ok(Probe::Ok(rows))
        }
        Err(e) => match refused(&e) {
            Some((code, msg)) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT tg_probe")
                    .await
                    .map_err(q)?;
                Ok(Probe::Refused(code, msg))
            }
            None => Err(q(e)),
        },
    }
}

/// A single-count probe.
async fn count(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Probe<i64>, VerifyError> {
    Ok(match in_savepoint(client, sql, params).await? {
        Probe::Ok(rows) => Probe::Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0)),
        Probe::Refused(c, m) => Probe::Refused(c, m),
    })
}

async fn begin(client: &Client) -> Result<(), VerifyError> {
    client
        .batch_execute("BEGIN READ ONLY")
        .await
        .map_err(|e| VerifyError::query("starting a probe transaction", e))
}

async fn rollback(client: &Client) -> Result<(), VerifyError> {
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(|e| VerifyError::query("ending a probe transaction", e))
}

async fn set_local(client: &Client, setting: &str, value: &str) -> Result<(), VerifyError> {
    client
        .query_one("SELECT set_config($1, $2, true)", &[&setting, &value])
        .await
        .map(drop)
        .map_err(|e| VerifyError::query("setting the tenant for a probe", e))
}

/// `1 row`, `2 rows`.
fn rows(n: i64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

/// The distinct objects of failing findings, in order.
fn leaked_names(findings: &[Finding]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for f in findings.iter().filter(|f| f.status == Status::Fail) {
        if !names.contains(&f.object.as_str()) {
            names.push(&f.object);
        }
    }
    names.join(", ")
}

fn qualified(t: &TableFacts) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.table))
}

/// A refusal as a finding: missing privilege is a skip, a policy that raises is a warning.
fn refusal_finding(t: &TableFacts, state: &str, code: &str, msg: &str) -> Finding {
    if code == SqlState::INSUFFICIENT_PRIVILEGE.code() {
        Finding::new(
            Status::Skip,
            &t.name,
            format!("{state}: the role may not read the table ({msg})"),
        )
    } else if code == SqlState::INVALID_TEXT_REPRESENTATION.code()
        || code == SqlState::UNDEFINED_OBJECT.code()
    {
        Finding::new(
            Status::Warn,
            &t.name,
            format!("{state}: the policy raises `{msg}` instead of returning no rows (fails closed, but breaks the application)"),
        )
    } else {
        Finding::new(
            Status::Skip,
            &t.name,
            format!("{state}: probe refused: {code} {msg}"),
        )
    }
}

/// Check 4: without a tenant context (unset, and `''`), every tenant table shows 0 rows.
pub async fn fail_closed(
    client: &Client,
    facts: &Facts,
    setting: &str,
) -> Result<Check, VerifyError> {
    let mut findings = Vec::new();
    let current: Option<String> = client
        .query_one("SELECT current_setting($1, true)", &[&setting])
        .await
        .map_err(|e| VerifyError::query("reading the tenant setting", e))?
        .get(0);
    if let Some(v) = current.filter(|v| !v.is_empty()) {
        findings.push(Finding::new(
            Status::Fail,
            format!("{}@{}", facts.role.user, facts.role.database),
            format!("{setting} has a default value '{v}' for this role or database (ALTER ROLE/DATABASE … SET): a connection without tenant context is not fail-closed"),
        ));
    }
    let tables: Vec<&TableFacts> = facts.tenant_tables().collect();
    if tables.is_empty() {
        return Ok(Check::skipped(
            4,
            "fail_closed",
            "fail-closed without tenant",
            "no tenant tables",
        ));
    }
    for (state, value) in [("no tenant set", None), ("tenant setting ''", Some(""))] {
        begin(client).await?;
        if let Some(v) = value {
            set_local(client, setting, v).await?;
        }
        for t in &tables {
            let sql = format!("SELECT count(*) FROM {}", qualified(t));
            let f = match count(client, &sql, &[]).await? {
                Probe::Ok(0) => Finding::new(Status::Pass, &t.name, format!("{state}: 0 rows")),
                Probe::Ok(n) => Finding::new(
                    Status::Fail,
                    &t.name,
                    format!("{state}: {} visible", rows(n)),
                ),
                Probe::Refused(code, msg) => refusal_finding(t, state, &code, &msg),
            };
            findings.push(f);
        }
        rollback(client).await?;
    }
    let leaking = leaked_names(&findings);
    let summary = if leaking.is_empty() {
        format!(
            "{} tenant tables return 0 rows without a tenant",
            tables.len()
        )
    } else {
        format!("rows visible without a tenant: {leaking}")
    };
    Ok(Check::new(
        4,
        "fail_closed",
        "fail-closed without tenant",
        summary,
        findings,
    ))
}

/// Tenants to probe: `--tenant` values, else the ids in a readable `tenants` table.
pub async fn discover_tenants(
    client: &Client,
    column: &str,
) -> Result<(Vec<String>, String), VerifyError> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, c.relname::text, \
               (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                  AND NOT a.attisdropped AND a.attname IN ($1, 'id') ORDER BY a.attname = $1 DESC LIMIT 1) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'tenants' AND c.relkind IN ('r', 'p', 'v', 'm') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY n.nspname = 'public' DESC, n.nspname LIMIT 1",
            &[&column],
        )
        .await
        .map_err(|e| VerifyError::query("looking for a tenants table", e))?;
    let Some(row) = row else {
        return Ok((
            Vec::new(),
            "no `tenants` table found; pass --tenant ID".into(),
        ));
    };
    let (schema, table, col): (String, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    let name = super::catalog::display_name(&schema, &table);
    let Some(col) = col else {
        return Ok((
            Vec::new(),
            format!("{name} has neither `{column}` nor `id`; pass --tenant ID"),
        ));
    };
    let sql = format!(
        "SELECT {c}::text FROM {s}.{t} WHERE {c} IS NOT NULL ORDER BY 1 LIMIT {}",
        MAX_TENANTS + 1,
        c = quote_ident(&col),
        s = quote_ident(&schema),
        t = quote_ident(&table),
    );
    begin(client).await?;
    let got = in_savepoint(client, &sql, &[]).await?;
    rollback(client).await?;
    let ids: Vec<String> = match got {
        Probe::Refused(code, msg) => {
            return Ok((
                Vec::new(),
                format!("{name} is not readable ({code} {msg}); pass --tenant ID"),
            ));
        }
        Probe::Ok(rows) => rows.iter().map(|r| r.get::<_, String>(0)).collect(),
    };
    if ids.is_empty() {
        return Ok((
            Vec::new(),
            format!("no tenant visible in {name} (row-level security hides them without a tenant context); pass --tenant ID"),
        ));
    }
    Ok((ids, format!("tenants from {name}.{col}")))
}

/// Check 5: as each tenant, no row of another tenant is visible.
/// With `signing` (signed tenant context and the proxy's key), each tenant is also signed for
/// this backend, as the proxy would, so the probe sees what that tenant's sessions see; without
/// it, policies on `tenantgate.current_tenant()` show nothing and the probe proves little.
pub async fn cross_tenant(
    client: &Client,
    facts: &Facts,
    setting: &str,
    column: &str,
    given: &[String],
    signing: Option<&crate::signing::SigningKey>,
) -> Result<Check, VerifyError> {
    const TITLE: &str = "no cross-tenant rows";
    let tables: Vec<&TableFacts> = facts.tenant_tables().collect();
    if tables.is_empty() {
        return Ok(Check::skipped(5, "cross_tenant", TITLE, "no tenant tables"));
    }
    let (mut tenants, source) = if given.is_empty() {
        discover_tenants(client, column).await?
    } else {
        (given.to_vec(), "tenants from --tenant".to_owned())
    };
    if tenants.is_empty() {
        return Ok(Check::skipped(5, "cross_tenant", TITLE, source));
    }
    let capped = tenants.len() > MAX_TENANTS;
    tenants.truncate(MAX_TENANTS);
    let col = quote_ident(column);
    let mut findings = Vec::new();
    let mut leaked = vec![false; tables.len()];
    let mut probed = vec![0usize; tables.len()];
    let pid: Option<i32> = match signing {
        Some(_) => Some(
            client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(|e| VerifyError::query("reading the backend pid", e))?
                .get(0),
        ),
        None => None,
    };
    for tenant in &tenants {
        begin(client).await?;
        set_local(client, setting, tenant).await?;
        if let (Some(key), Some(pid)) = (signing, pid) {
            let sig = key.sign(tenant, pid);
            set_local(client, crate::signing::SIGNATURE_SETTING, &sig).await?;
        }
        for (i, t) in tables.iter().enumerate() {
            let ty = t.column_type.as_deref().unwrap_or("text");
            let sql = format!(
                "SELECT count(*) FILTER (WHERE {col} IS NOT NULL AND {col} IS DISTINCT FROM $1::text::{ty}) FROM {}",
                qualified(t)
            );
            match count(client, &sql, &[tenant]).await? {
                Probe::Ok(0) => probed[i] += 1,
                Probe::Ok(n) => {
                    leaked[i] = true;
                    findings.push(Finding::new(
                        Status::Fail,
                        &t.name,
                        format!("as tenant {tenant}: {} of other tenants visible", rows(n)),
                    ));
                }
                Probe::Refused(code, msg) => {
                    let f = if code == SqlState::INVALID_TEXT_REPRESENTATION.code() {
                        Finding::new(
                            Status::Skip,
                            &t.name,
                            format!("as tenant {tenant}: {msg} (not a valid {ty}?)"),
                        )
                    } else {
                        refusal_finding(t, &format!("as tenant {tenant}"), &code, &msg)
                    };
                    findings.push(f);
                }
            }
        }
        rollback(client).await?;
    }
    for (i, t) in tables.iter().enumerate() {
        if !leaked[i] && probed[i] > 0 {
            findings.push(Finding::new(
                Status::Pass,
                &t.name,
                format!("no other tenant's rows visible for {} tenants", probed[i]),
            ));
        }
    }
    let bad = findings.iter().filter(|f| f.status == Status::Fail).count();
    let signed = if signing.is_some() { ", signed" } else { "" };
    let mut summary = if bad == 0 {
        format!(
            "{} tenants probed ({source}{signed}): no cross-tenant rows",
            tenants.len()
        )
    } else {
        format!(
            "{bad} cross-tenant leaks ({source}): {}",
            leaked_names(&findings)
        )
    };
    if capped {
        summary.push_str(&format!(
            "; only the first {MAX_TENANTS} tenants were probed"
        ));
    }
    Ok(Check::new(5, "cross_tenant", TITLE, summary, findings))
}

/// Check 6: rows whose tenant column is NULL belong to no tenant; count them where visible.
pub async fn null_tenant(
    client: &Client,
    facts: &Facts,
    column: &str,
) -> Result<Check, VerifyError> {
    const TITLE: &str = "no NULL-tenant rows";
    let r = &facts.role;
    let tables: Vec<&TableFacts> = facts.tenant_tables().collect();
    if tables.is_empty() {
        return Ok(Check::skipped(6, "null_tenant", TITLE, "no tenant tables"));
    }
    let col = quote_ident(column);
    let mut findings = Vec::new();
    let mut hidden = 0;
    begin(client).await?;
    for t in &tables {
        if t.column_not_null {
            findings.push(Finding::new(
                Status::Pass,
                &t.name,
                format!("{column} is NOT NULL"),
            ));
            continue;
        }
        let sees_all =
            r.superuser || r.bypassrls || !t.rls_enabled || (!t.rls_forced && t.role_is_owner);
        if !sees_all {
            hidden += 1;
            findings.push(Finding::new(
                Status::Skip,
                &t.name,
                format!(
                    "{column} is nullable and row-level security hides NULL-tenant rows from {}, so they cannot be counted; add NOT NULL, or run verify as a role that sees all rows",
                    r.user
                ),
            ));
            if let Some(frac) = t.column_null_frac.filter(|f| *f > 0.0) {
                findings.push(Finding::new(
                    Status::Warn,
                    &t.name,
                    format!(
                        "planner statistics estimate {:.1}% of rows have a NULL {column}",
                        frac * 100.0
                    ),
                ));
            }
            continue;
        }
        let sql = format!("SELECT count(*) FROM {} WHERE {col} IS NULL", qualified(t));
        let f = match count(client, &sql, &[]).await? {
            Probe::Ok(0) => Finding::new(
                Status::Pass,
                &t.name,
                format!("no NULL {column} (the column is nullable)"),
            ),
            Probe::Ok(n) => Finding::new(
                Status::Fail,
                &t.name,
                format!("{} with a NULL {column} belong to no tenant", rows(n)),
            ),
            Probe::Refused(code, msg) => refusal_finding(t, "counting NULLs", &code, &msg),
        };
        findings.push(f);
    }
    rollback(client).await?;
    let bad = findings.iter().filter(|f| f.status == Status::Fail).count();
    let summary = if bad > 0 {
        format!("rows with a NULL {column}: {}", leaked_names(&findings))
    } else if hidden > 0 {
        format!("{hidden} tables with a nullable {column} could not be counted: row-level security hides their NULL rows from {}", r.user)
    } else {
        format!("no NULL {column} in {} tenant tables", tables.len())
    };
    Ok(Check::new(6, "null_tenant", TITLE, summary, findings))
}
