//! Every error a client can see, with PostgreSQL's wording and SQLSTATE where one exists.
//!
//! Internal failures are logged with their cause; what reaches the client is chosen here, so
//! no internal detail (addresses, secrets) leaks by accident (neon's `UserFacingError` idea).

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
pub fn pool_timeout() -> PgError {
    PgError::error(
        "53300",
        "tenantgate: timed out waiting for a server connection",
    )
    .with_hint("All upstream connections are busy; raise [upstream] pool_size or pool_timeout.")
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

/// SQL-level PREPARE cannot survive transaction pooling.
pub fn sql_prepare_in_transaction_mode() -> PgError {
    PgError::error(
        "0A000",
        "tenantgate: SQL-level PREPARE is not supported in transaction pooling mode",
    )
    .with_hint(
        "Use protocol-level prepared statements (every driver does), or pool_mode = \"session\".",
    )
}

/// A query cancelled by the client before it reached the server (PostgreSQL's wording).
pub fn query_canceled() -> PgError {
    PgError::error("57014", "canceling statement due to user request")
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
