//! Every error a client can see, with PostgreSQL's wording and SQLSTATE where one exists.
//!
//! Internal failures are logged with their cause; what reaches the client is chosen here, so
//! no internal detail (addresses, secrets) leaks by accident (neon's `UserFacingError` idea).

use crate::pool::Limit;
use crate::protocol::messages::PgError;

/// SQLSTATE for refused statements and tenant violations.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// `FATAL 28P01 password authentication failed for user "X"` (PostgreSQL's exact text).
pub fn auth_failed(user: &str) -> PgError {
    PgError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// `FATAL 3D000 database "X" does not exist`.
pub fn unknown_database(db: &str) -> PgError {
    PgError::fatal("3D000", format!("database \"{db}\" does not exist"))
}

/// `FATAL 53300 sorry, too many clients already`.
pub fn too_many_clients() -> PgError {
    PgError::fatal("53300", "sorry, too many clients already")
}

/// `53300 too many connections for tenant "X"` (PostgreSQL's wording for a role's
/// `CONNECTION LIMIT`): FATAL at login, ERROR for a refused tenant switch.
pub fn too_many_for_tenant(tenant: &str, fatal: bool) -> PgError {
    let message = format!("too many connections for tenant \"{tenant}\"");
    if fatal {
        PgError::fatal("53300", message)
    } else {
        PgError::error("53300", message)
    }
}

/// `ERROR 53400` for a transaction past its tenant's `max_transactions_per_second`; worded
/// like PostgreSQL's own limit messages. The session goes on.
pub fn tenant_rate_exceeded(tenant: &str, rate: f64) -> PgError {
    PgError::error(
        "53400",
        format!("too many transactions per second for tenant \"{tenant}\""),
    )
    .with_detail(format!(
        "The limit is [tenant] max_transactions_per_second = {rate}."
    ))
    .with_hint("Retry the transaction later.")
}

/// `FATAL 28000 no pg_hba.conf entry ...` for a client refused by `require_tls`.
pub fn tls_required(addr: &str, user: &str, db: &str) -> PgError {
    PgError::fatal(
        "28000",
        format!("no pg_hba.conf entry for host \"{addr}\", user \"{user}\", database \"{db}\", no encryption"),
    )
}

/// `FATAL 28000` for a cleartext password asked over an unencrypted connection.
pub fn cleartext_needs_tls(user: &str) -> PgError {
    PgError::fatal(
        "28000",
        format!("password authentication for user \"{user}\" requires an encrypted connection"),
    )
}

/// `FATAL 08P01` for a broken protocol stream.
pub fn protocol_violation(what: impl Into<String>) -> PgError {
    PgError::fatal("08P01", what)
}

/// `FATAL 08P01 invalid startup packet layout ...` etc.
pub fn bad_startup(what: impl std::fmt::Display) -> PgError {
    PgError::fatal("08P01", what.to_string())
}

/// `FATAL 28000` when startup names no user.
pub fn no_user() -> PgError {
    PgError::fatal(
        "28000",
        "no PostgreSQL user name specified in startup packet",
    )
}

/// `FATAL 08P01 received unencrypted data after SSL request` (CVE-2021-23214 pattern).
pub fn plaintext_after_ssl_request() -> PgError {
    PgError::fatal("08P01", "received unencrypted data after SSL request")
}

/// The fail-closed refusal for a session without tenant.
pub fn no_tenant(setting: &str, login: &str) -> PgError {
    PgError::error(INSUFFICIENT_PRIVILEGE, "tenantgate: no tenant context for this session").with_hint(
        format!(
            "Connect as \"{login}.<tenant>\", or set PGOPTIONS=\"-c {setting}=<tenant>\", or use a TLS server name naming the tenant."
        ),
    )
}

/// A statement refused by the tenant guard.
pub fn refused(what: &str) -> PgError {
    PgError::error(
        INSUFFICIENT_PRIVILEGE,
        format!("tenantgate: {what} is not allowed through this proxy"),
    )
}

/// A tenant request refused at connect.
pub fn tenant_refused(reason: impl std::fmt::Display) -> PgError {
    PgError::fatal(INSUFFICIENT_PRIVILEGE, format!("tenantgate: {reason}"))
}

/// No server connection became free in time.
pub fn pool_timeout(limit: Limit) -> PgError {
    PgError::error(
        "53300",
        "tenantgate: timed out waiting for a server connection",
    )
    .with_hint(match limit {
        Limit::Paused => "The pool is paused (admin console PAUSE); RESUME serves waiting clients.",
        Limit::TenantShare => "This tenant's sessions hold all the server connections it may share; raise [tenant] max_server_connections or query_wait_timeout.",
        Limit::UserCap => "This user's sessions hold all the server connections it may use; raise the user's pool_size or max_user_connections, or query_wait_timeout.",
        Limit::DbCap => "The database has [upstream] max_db_connections server connections open; raise it or query_wait_timeout.",
        Limit::PoolSize => "All upstream connections are busy; raise [upstream] pool_size or query_wait_timeout.",
    })
}

/// The upstream could not be reached or refused the proxy.
pub fn upstream_unavailable() -> PgError {
    PgError::error(
        "08006",
        "tenantgate: could not connect to the database server",
    )
}

/// The upstream connection broke while the client was using it.
pub fn server_lost() -> PgError {
    PgError::fatal(
        "08006",
        "tenantgate: lost the connection to the database server",
    )
}

/// The injection of the tenant failed, so the client's statement did not run.
pub fn injection_failed(code: &str, message: &str) -> PgError {
    PgError::error(
        INSUFFICIENT_PRIVILEGE,
        "tenantgate: could not establish the tenant context; the statement was not run",
    )
    .with_detail(format!("{code}: {message}"))
}

/// FunctionCall ('F') messages are not supported.
pub fn function_call_unsupported() -> PgError {
    PgError::error(
        "0A000",
        "tenantgate: the FunctionCall protocol message is not supported",
    )
}

/// The proxy is shutting down.
pub fn shutting_down() -> PgError {
    PgError::fatal(
        "57P01",
        "terminating connection due to administrator command",
    )
}

/// State that would outlive the transaction on a shared server connection (`what`: LISTEN,
/// WITH HOLD cursors, temp objects, session locks or settings, SQL-level PREPARE).
pub fn session_state_in_transaction_mode(what: &str) -> PgError {
    PgError::error(
        "0A000",
        format!("tenantgate: {what} is not supported in transaction pooling mode"),
    )
    .with_detail(
        "Under transaction pooling the server connection goes to other clients after each transaction, so nothing may outlive it.",
    )
    .with_hint(
        "Keep it inside the transaction (SET LOCAL, pg_advisory_xact_lock, cursors without HOLD, protocol-level prepared statements), or use pool_mode = \"session\".",
    )
}

/// PostgreSQL's answer to a statement name that does not exist (26000).
pub fn no_such_statement(name: &str) -> PgError {
    if name.is_empty() {
        PgError::error("26000", "unnamed prepared statement does not exist")
    } else {
        PgError::error(
            "26000",
            format!("prepared statement \"{name}\" does not exist"),
        )
    }
}

/// PostgreSQL's answer to a portal name that does not exist (34000).
pub fn no_such_portal(name: &str) -> PgError {
    PgError::error("34000", format!("portal \"{name}\" does not exist"))
}

/// A client at its prepared-statement cap (PostgreSQL's configuration_limit_exceeded).
pub fn too_many_statements(limit: crate::prepared::Limit) -> PgError {
    let (what, key, n) = match limit {
        crate::prepared::Limit::Count(n) => {
            ("prepared statements", "max_client_prepared_statements", n)
        }
        crate::prepared::Limit::Bytes(n) => {
            ("prepared statement text", "max_client_prepared_bytes", n)
        }
        crate::prepared::Limit::Total(n) => {
            return PgError::error("53200", "out of memory")
                .with_detail(format!(
                    "tenantgate holds max_total_prepared_bytes = {n} bytes of prepared statement text for all sessions."
                ))
                .with_hint("Close or DEALLOCATE statements the session no longer needs.");
        }
    };
    PgError::error(
        "53400",
        format!("tenantgate: too many {what} in this session"),
    )
    .with_detail(format!("The limit is {key} = {n}."))
    .with_hint("Close or DEALLOCATE statements the session no longer needs.")
}

/// A session past its cap of session-level settings.
pub fn too_many_session_settings(max: usize) -> PgError {
    PgError::error(
        "53400",
        "tenantgate: too many session-level settings in this session",
    )
    .with_detail(format!("A session may carry at most {max} settings."))
    .with_hint("Use SET LOCAL inside transactions.")
}

/// `RESET ALL` would leave the statements after it in the same query without the tenant.
pub fn reset_all_not_last() -> PgError {
    PgError::error(
        "0A000",
        "tenantgate: RESET ALL followed by more statements in one query is not supported",
    )
    .with_hint(
        "Send RESET ALL as its own query; tenantgate restores the tenant before the next one.",
    )
}

/// A query cancelled by the client before it reached the server (PostgreSQL's wording).
pub fn query_canceled() -> PgError {
    PgError::error("57014", "canceling statement due to user request")
}

/// The upstream server refuses the proxy's own login (SQLSTATE class 28 or 3D000): not
/// transient, so the client is told so rather than "starting up". 08004 is PostgreSQL's
/// "server rejected establishment of connection". The client is not authenticated yet, so the
/// upstream role's name and the server's text stay in the proxy's log and health endpoint.
pub fn upstream_login_rejected() -> PgError {
    PgError::fatal(
        "08004",
        "tenantgate: the database server rejected the proxy's login",
    )
    .with_detail("The server refused tenantgate's [upstream] credentials (wrong password, role or database). This is not transient: retrying will not help until the proxy's configuration is fixed.")
    .with_hint("The proxy's log and /health/ready give the server's own message.")
}

/// The upstream role's posture is not verified yet (unreachable upstream at start).
pub fn posture_unverified() -> PgError {
    PgError::fatal("57P03", "tenantgate: the database system is starting up")
        .with_detail("The upstream role has not been verified as NOSUPERUSER NOBYPASSRLS yet; the upstream may be unreachable.")
}

/// FATAL 57P03 while the RLS posture check fails: serving would not keep tenants apart. The
/// findings go to the log and `/health/ready`, not to a client that has not authenticated.
pub fn posture_unprotected() -> PgError {
    PgError::fatal(
        "57P03",
        "tenantgate: the database system is not accepting connections",
    )
    .with_detail("The database does not enforce tenant isolation (the RLS posture check fails); connections are refused until it is fixed.")
    .with_hint("Run `tenantgate verify`; the proxy log and /health/ready name the failing checks.")
}

/// The refusal of an unsafe client encoding, in PostgreSQL's wording for a bad parameter value.
pub fn unsafe_encoding(value: &str, canonical: &str) -> PgError {
    PgError::error(
        "22023",
        format!("invalid value for parameter \"client_encoding\": \"{value}\""),
    )
    .with_detail(format!(
        "tenantgate refuses the client encoding {canonical}: in it a quote or backslash byte can \
         be part of a multi-byte character, so the proxy could not see where statements end."
    ))
    .with_hint("Use UTF8 (or another ASCII-safe encoding such as EUC_JP, EUC_CN or EUC_KR).")
}

/// A refused catalog view or function (`kind`: "view", "function", …), in PostgreSQL's wording
/// for a missing privilege.
pub fn catalog_refused(kind: &str, name: &str) -> PgError {
    PgError::error(
        INSUFFICIENT_PRIVILEGE,
        format!("permission denied for {kind} {name}"),
    )
    .with_hint("tenantgate refuses catalog views and functions that expose other sessions of the shared upstream role, large objects and activity statistics; a monitoring user needs allow_catalog_monitoring = true.")
}

/// `EXPLAIN ANALYZE` refused: its row counts include the rows RLS removed (other tenants').
pub fn explain_analyze_refused(what: &str) -> PgError {
    refused(what).with_hint(
        "EXPLAIN ANALYZE reports rows that row security removed, which counts other tenants' rows; use EXPLAIN without ANALYZE.",
    )
}

/// A second Parse of a name the client already prepared (PostgreSQL's wording).
pub fn duplicate_statement(name: &str) -> PgError {
    PgError::error(
        "42P05",
        format!("prepared statement \"{name}\" already exists"),
    )
}

/// An admin user asked for a database other than the console.
pub fn admin_console_only(console: &str) -> PgError {
    PgError::fatal(
        "28000",
        format!("tenantgate: admin users may only connect to the \"{console}\" console database"),
    )
}

/// A replication connection (`replication=true|database` in the startup packet).
pub fn replication_unsupported() -> PgError {
    PgError::fatal(
        "0A000",
        "tenantgate: replication connections are not supported",
    )
}

/// PostgreSQL refused a setting of the client's startup packet: its own SQLSTATE when it is one
/// of the codes for bad settings, else "invalid parameter value".
pub fn startup_setting_rejected(code: &str, message: String) -> PgError {
    let code = ["42704", "42501", "55P02", "22P02"]
        .into_iter()
        .find(|c| *c == code)
        .unwrap_or("22023");
    PgError::fatal(code, message)
}

/// The client's connection broke while the proxy wrote to it (logged; no one reads it).
pub fn client_lost() -> PgError {
    PgError::fatal("08006", "connection lost")
}

/// A break-glass session reached `[upstream.breakglass] max_session_seconds`.
pub fn breakglass_time_limit() -> PgError {
    PgError::fatal(
        "57P05",
        "terminating connection due to break-glass session time limit",
    )
}

/// A console error, worded and coded as PgBouncer's `admin_error` (SQLSTATE 08P01).
pub fn admin_console(message: impl Into<String>) -> PgError {
    PgError::error("08P01", message)
}

/// Console RELOAD in a proxy started without a configuration file.
pub fn nothing_to_reload() -> PgError {
    PgError::error(
        "55000",
        "tenantgate: no configuration file to reload (started in-process)",
    )
}

/// Console KILL: the sessions of the killed database end (PgBouncer's wording).
pub fn database_removed() -> PgError {
    PgError::fatal("08P01", "database removed")
}

/// `[server] client_idle_timeout` (PostgreSQL's `idle_session_timeout` wording).
pub fn idle_session_timeout() -> PgError {
    PgError::fatal(
        "57P05",
        "terminating connection due to idle-session timeout",
    )
}

/// `[upstream] idle_transaction_timeout` (PostgreSQL's `idle_in_transaction_session_timeout`
/// wording).
pub fn idle_in_transaction_timeout() -> PgError {
    PgError::fatal(
        "25P03",
        "terminating connection due to idle-in-transaction timeout",
    )
}

/// `[upstream] query_timeout`: the query was cancelled upstream and the connection closed.
pub fn query_timeout() -> PgError {
    PgError::fatal("57014", "canceling statement due to statement timeout")
        .with_detail("tenantgate: the query ran longer than [upstream] query_timeout; it was cancelled and the connection closed")
}
