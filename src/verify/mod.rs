//! RLS posture checks, shared by `tenantgate verify`, the start-up refusal and the drift
//! monitor: tenant injection is worthless if the database does not enforce it.
//!
//! The checks, numbered as in `docs/posture.md`:
//! 1. the role is not superuser, not BYPASSRLS, and reaches no role that is ([`checks::role`]);
//! 2. every table with the tenant column has RLS enabled and forced;
//! 3. every such table has a policy on `current_setting('<setting>', true)`, and no policy
//!    defeats it (`USING (true)`, no `missing_ok`, writes without `WITH CHECK`);
//! 4. fail-closed probe: without a tenant, every such table shows 0 rows ([`probe`]);
//! 5. cross-tenant probe: as each tenant, no other tenant's row is visible;
//! 6. rows with a NULL tenant column;
//! 7. risks: SECURITY DEFINER functions that call `set_config`, unindexed tenant columns;
//! 8. the role can create or alter no code: TEMPORARY/CREATE, TRIGGER, ownership ([`creation`]);
//! 9. unique and foreign keys of tenant tables include the tenant column ([`keys`]);
//! 10. with signing on: `tenantgate.current_tenant()` verifies signatures and the role can
//!     neither read the keys nor alter the function ([`signing`]). Signing also changes 3
//!     (policies must call the function; a raw read of the setting fails) and 8 (creating code
//!     is a warning: it cannot forge the signature).
//!
//! Checks 1, 2, 3, 7, 8, 9 and 10 read only the catalogs ([`Scope::Catalog`], what start-up, the
//! drift monitor and `/health/tenant-security` run); 4, 5 and 6 read the tables
//! ([`Scope::Full`], `verify`).

pub mod catalog;
pub mod checks;
pub mod connect;
pub mod creation;
pub mod keys;
pub mod monitor;
pub mod policy;
pub mod probe;
pub mod report;
pub mod signing;

pub use connect::Target;
pub use report::{Check, Finding, Report, Scope, Status};

use tokio_postgres::Client;

/// Why a posture run could not be completed (as opposed to completed with failures).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The connection string does not parse.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// The TLS configuration cannot be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting or authenticating failed.
    #[error("cannot connect: {}", connect::describe(.0))]
    Connect(#[source] tokio_postgres::Error),
    /// A check query failed.
    #[error("{what}: {message}")]
    Query {
        /// Named in the error, e.g. `preparing the session`.
        what: &'static str,
        /// The server's message (or the client's, for a broken connection).
        message: String,
    },
}

impl VerifyError {
    /// A failed query, with the server's own message when there is one.
    pub fn query(what: &'static str, e: tokio_postgres::Error) -> VerifyError {
        let message = match e.as_db_error() {
            Some(db) => format!("{} {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        VerifyError::Query { what, message }
    }
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The custom setting policies must read (`[tenant] setting`).
    pub setting: String,
    /// The column that marks a tenant table (`[tenant] column`).
    pub column: String,
    /// Tenants to probe in check 5; empty: read them from a `tenants` table.
    pub tenants: Vec<String>,
    /// Catalog checks only, or the probes too.
    pub scope: Scope,
    /// Check 9's findings are failures rather than warnings.
    pub strict_keys: bool,
    /// Signed tenant context is on: check 10 runs, and 3 and 8 judge for it.
    pub signed: bool,
    /// The key the proxy signs with, for check 10's functional probe.
    pub signing_key: Option<crate::signing::SigningKey>,
}

/// Runs the checks of `opts.scope` on an open connection.
pub async fn run(client: &Client, opts: &Options) -> Result<Report, VerifyError> {
    let facts = catalog::gather(client, &opts.column, &opts.setting).await?;
    let mut all = checks::catalog_checks(
        &facts,
        &opts.setting,
        &opts.column,
        opts.strict_keys,
        opts.signed,
    );
    if opts.signed {
        let f = signing::gather(client, &opts.setting, opts.signing_key.as_ref()).await?;
        all.push(signing::check(&f));
    }
    match opts.scope {
        Scope::Full => {
            all.push(probe::fail_closed(client, &facts, &opts.setting).await?);
            all.push(
                probe::cross_tenant(
                    client,
                    &facts,
                    &opts.setting,
                    &opts.column,
                    &opts.tenants,
                    opts.signing_key.as_ref().filter(|_| opts.signed),
                )
                .await?,
            );
            all.push(probe::null_tenant(client, &facts, &opts.column).await?);
        }
        Scope::Catalog => {
            let why = "not run periodically: probes read table data; run `tenantgate verify`";
            all.push(Check::skipped(
                4,
                "fail_closed",
                "fail-closed without tenant",
                why,
            ));
            all.push(Check::skipped(
                5,
                "cross_tenant",
                "no cross-tenant rows",
                why,
            ));
            all.push(Check::skipped(6, "null_tenant", "no NULL-tenant rows", why));
        }
    }
    Ok(Report::new(
        opts.scope,
        &opts.setting,
        &opts.column,
        facts,
        all,
    ))
}

/// Connects to `target`, runs the checks, and closes the connection.
pub async fn run_target(target: &Target, opts: &Options) -> Result<Report, VerifyError> {
    let session = target.connect().await?;
    let report = run(&session.client, opts).await;
    session.close().await;
    report
}
