//! The injection: the session's tenant (and startup settings) as **session-level** values on the
//! server connection, set in a transaction of their own before the client's first message.
//!
//! Why session-level, in a prelude of its own, and not `set_config(…, true)` ahead of every
//! transaction (docs/threat-model.md has the whole argument):
//! - Snapshot-free: nothing runs in the client's transaction before the client's own first
//!   statement, so `BEGIN ISOLATION LEVEL …`, `SET TRANSACTION …` and `READ ONLY DEFERRABLE`
//!   behave exactly as on PostgreSQL.
//! - Every statement runs under the tenant: the value is committed before the client's
//!   transaction starts, so `COMMIT; SELECT …` in one Query, `COMMIT AND CHAIN`,
//!   `ROLLBACK AND CHAIN`, a `COMMIT`/`ROLLBACK` inside a procedure or in the middle of an
//!   extended-protocol segment all leave it in place. A rollback restores the value at the
//!   transaction's start, which is this session's own.
//! - Harmless for the next client: each server connection records which identity (tenant +
//!   settings) it carries ([`identity`]); a client with another identity gets a prelude first,
//!   and its own messages are sent only once PostgreSQL has confirmed the prelude (ReadyForQuery
//!   after CommandComplete, no error). A failed prelude refuses the client's statement.
//! - Cheaper: a session whose identity the connection already carries pays nothing at all, and
//!   the pool prefers such connections.
//!
//! The values travel as Bind parameters of a statement the proxy parses in the prelude and closes
//! at its end, so client text is never spliced into SQL and no statement of the proxy's stays on
//! the connection for a client to find.
//!
//! With signing on (`crate::signing`), the prelude also sets `tenantgate.signature` to the
//! HMAC of the tenant for this connection's backend pid, just before the tenant. The key id is
//! part of the identity, so after a key rotation (SIGHUP) every connection is signed again with
//! the new key before its next transaction.
//!
//! Also here: the "poison" that makes PostgreSQL itself reject a refused statement at exactly
//! its place in the stream, so protocol semantics (skip to Sync, abort the transaction block)
//! stay PostgreSQL's own; the relay swaps its syntax error for the proxy's refusal.

use std::hash::{Hash, Hasher};

use bytes::BytesMut;

use crate::protocol::messages::{self, ErrorFields};
use crate::signing::{SigningKey, SIGNATURE_SETTING};

/// The prelude's statement: session-level `set_config`; `$2` NULL resets to the default.
/// Schema-qualified, and its parameter types are given as OIDs (25 = text), so nothing in it
/// is resolved through a search path a client could change.
pub const SQL: &[u8] = b"SELECT pg_catalog.set_config($1, $2, false)";

/// The proxy's prelude statement name: in the reserved namespace, random per process.
pub fn statement_name() -> &'static [u8] {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("{}set", crate::prepared::server_prefix()))
        .as_bytes()
}

/// Run by every prelude that changes the identity: `currval`/`lastval` outlive the transaction
/// that called `nextval` (an `INSERT` with an identity or serial column does, under an ordinary
/// command tag), so without it the next tenant of the connection reads the id another tenant's
/// row was just given.
const DISCARD_SEQUENCES: &[u8] = b"DISCARD SEQUENCES";

/// The name the prelude runs its utility statements under ([`READ_COMMITTED`],
/// [`DISCARD_SEQUENCES`]), each closed right after: the unnamed statement may be the client's.
fn utility_statement_name() -> &'static [u8] {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("{}util", crate::prepared::server_prefix()))
        .as_bytes()
}

/// First in every batch of the proxy's own, before anything takes a snapshot: the batch's
/// transaction starts with the defaults the connection carries, which may be another identity's
/// `SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY,
/// DEFERRABLE`; such a transaction's first snapshot waits for every serializable read-write
/// transaction in the database to end, one the other tenant can hold open at will.
const READ_COMMITTED: &[u8] = b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// Appends Parse, Bind, Execute and Close of the utility statement `sql` (no parameters).
fn write_utility(out: &mut BytesMut, sql: &[u8]) {
    let name = utility_statement_name();
    messages::close_statement(out, name);
    messages::parse(out, name, sql, &[]);
    messages::bind_params(out, b"", name, &[]);
    messages::execute(out, b"");
    messages::close_statement(out, name);
}

/// What one session needs its server connection to carry, as a key: equal keys mean no
/// prelude. Never 0 (0 marks a connection whose state is unknown). `key_id`: the signing key
/// the tenant is signed with, if any.
pub fn identity(
    setting: &str,
    tenant: Option<&str>,
    local: &[(String, String)],
    key_id: Option<&str>,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    setting.hash(&mut h);
    tenant.hash(&mut h);
    local.hash(&mut h);
    key_id.hash(&mut h);
    h.finish() | 1
}

/// One session's prelude, pre-encoded, and the identity it establishes.
#[derive(Debug, Clone)]
pub struct Prelude {
    /// See [`identity`].
    pub identity: u64,
    setting: String,
    /// The tenant (None: reset to the default, for sessions without one).
    tenant: Option<String>,
    /// Startup settings that are not tracked reported parameters, applied at session level.
    pub local: Vec<(String, String)>,
    /// The key the tenant is signed with (signing on), current as of the last refresh.
    key: Option<SigningKey>,
}

impl Prelude {
    /// The prelude for a session of `tenant` with startup settings `local`.
    pub fn new(setting: &str, tenant: Option<&str>, local: &[(String, String)]) -> Prelude {
        Prelude {
            identity: identity(setting, tenant, local, None),
            setting: setting.to_owned(),
            tenant: tenant.map(str::to_owned),
            local: local.to_vec(),
            key: None,
        }
    }

    /// Signs with `key` from now on (None: signing off). Cheap when the key is unchanged; a
    /// new key changes the identity, so every connection is signed again before its next use.
    pub fn set_signing(&mut self, key: Option<&SigningKey>) {
        if self.key.as_ref().map(SigningKey::id) == key.map(SigningKey::id) {
            return;
        }
        self.key = key.cloned();
        self.rekey();
    }

    /// Recomputes the identity after a change.
    fn rekey(&mut self) {
        self.identity = identity(
            &self.setting,
            self.tenant.as_deref(),
            &self.local,
            self.key.as_ref().map(SigningKey::id),
        );
    }

    /// Appends the whole prelude: [`READ_COMMITTED`], Close + Parse of the statement, one Bind +
    /// Execute per value (`stale`: tracked reported parameters the connection lacks;
    /// `previous`: settings another identity applied that this one does not have, reset; then
    /// ours; the signature for backend `pid` when signing; the tenant last), Close, `DISCARD
    /// SEQUENCES`, Sync. `full` false: only the stale parameters (the identity is already in
    /// place).
    pub fn write(
        &self,
        out: &mut BytesMut,
        stale: &[(&str, &str)],
        previous: &[String],
        full: bool,
        pid: i32,
    ) {
        let stmt = statement_name();
        write_utility(out, READ_COMMITTED);
        messages::close_statement(out, stmt);
        messages::parse(out, stmt, SQL, &[25, 25]);
        for (k, v) in stale {
            write_set(out, k, Some(v));
        }
        if full {
            for k in previous {
                if !self.local.iter().any(|(n, _)| n == k) {
                    write_set(out, k, None);
                }
            }
            for (k, v) in &self.local {
                write_set(out, k, Some(v));
            }
            if let Some(key) = &self.key {
                // No tenant: no signature (reset), so nothing of a previous identity verifies.
                let sig = self.tenant.as_deref().map(|t| key.sign(t, pid));
                write_set(out, SIGNATURE_SETTING, sig.as_deref());
            }
            write_set(out, &self.setting, self.tenant.as_deref());
        }
        messages::close_statement(out, stmt);
        if full {
            write_utility(out, DISCARD_SEQUENCES);
        }
        messages::sync(out);
    }

    /// The setting names this prelude leaves applied on the connection.
    pub fn applied_keys(&self) -> Vec<String> {
        self.local.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// Appends one `set_config(name, value, false)` as Bind + Execute of the prelude statement.
fn write_set(out: &mut BytesMut, name: &str, value: Option<&str>) {
    messages::bind_params(
        out,
        b"",
        statement_name(),
        &[Some(name.as_bytes()), value.map(str::as_bytes)],
    );
    messages::execute(out, b"");
}

/// Why a prelude did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum PreludeError {
    /// PostgreSQL refused a value (or the statement): the client's message must not run.
    #[error("{}: {}", .0.code, .0.message)]
    Refused(ErrorFields),
    /// The server connection broke.
    #[error(transparent)]
    Stream(#[from] crate::protocol::stream::StreamError),
}

/// Brings `conn` to this session's identity and tracked parameters (`stale`), waiting for the
/// server's confirmation before anything of the client's is sent (fail closed: a prelude that
/// did not commit must not be followed by the client's statement). Does nothing when the
/// connection already carries both.
pub async fn run_prelude(
    conn: &mut crate::pool::UpstreamConn,
    prelude: &Prelude,
    stale: &[(&str, &str)],
) -> Result<(), PreludeError> {
    let full = conn.identity() != prelude.identity;
    if !full && stale.is_empty() {
        return Ok(());
    }
    conn.write_prelude(|out, applied, pid| prelude.write(out, stale, applied, full, pid));
    // Unknown until the server confirms: a prelude that fails leaves no identity behind.
    let carried = conn.take_identity();
    exchange(conn, |_| {}).await?;
    if full {
        conn.carry(prelude.identity, prelude.applied_keys());
    } else {
        // Only reported parameters were refreshed: the tenant and settings it carried stand.
        conn.restore_identity(carried);
    }
    Ok(())
}

/// Reads the current session values of `names` on `conn` (after the client's transaction that
/// set them ended, so they are what PostgreSQL committed): Parse, one Bind + Execute each,
/// Close, Sync, as parameters. A name the server does not know reads as None.
pub async fn read_settings(
    conn: &mut crate::pool::UpstreamConn,
    names: &[String],
) -> Result<Vec<(String, Option<String>)>, PreludeError> {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stmt = NAME
        .get_or_init(|| format!("{}get", crate::prepared::server_prefix()))
        .as_bytes();
    let out = conn.stream().out();
    write_utility(out, READ_COMMITTED);
    messages::close_statement(out, stmt);
    messages::parse(
        out,
        stmt,
        b"SELECT pg_catalog.current_setting($1, true)",
        &[25],
    );
    for n in names {
        messages::bind_params(out, b"", stmt, &[Some(n.as_bytes())]);
        messages::execute(out, b"");
    }
    messages::close_statement(out, stmt);
    messages::sync(out);
    let mut values = Vec::with_capacity(names.len());
    exchange(conn, |row| values.push(first_column(row))).await?;
    Ok(names.iter().cloned().zip(values).collect())
}

/// Sends what the proxy queued on `conn` and reads through its ReadyForQuery, keeping the
/// connection's parameters current and handing each DataRow body to `row`. The first error
/// (all of the batch is then rolled back) is the result.
async fn exchange(
    conn: &mut crate::pool::UpstreamConn,
    mut row: impl FnMut(&[u8]),
) -> Result<(), PreludeError> {
    conn.start_busy();
    conn.stream().flush().await?;
    let mut refused = None;
    loop {
        let f = conn.stream().read_frame().await?;
        match f.tag() {
            b'D' => row(f.body()),
            b'S' => {
                if let Some((k, v)) = messages::parameter_status_fields(f.body()) {
                    conn.set_param(k, v);
                }
            }
            b'E' => {
                let e = messages::error_fields(f.body());
                if e.severity == "FATAL" || e.severity == "PANIC" {
                    return Err(PreludeError::Refused(e));
                }
                refused.get_or_insert(e);
            }
            b'Z' => {
                conn.ready(f.body().first().copied().unwrap_or(b'E'), true);
                break;
            }
            _ => {}
        }
    }
    match refused {
        Some(e) => Err(PreludeError::Refused(e)),
        None => Ok(()),
    }
}

/// The first column of a DataRow as text (None for NULL or a malformed row).
fn first_column(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let v = body.get(6..6 + len)?;
    Some(String::from_utf8_lossy(v).into_owned())
}

impl Prelude {
    /// Carries settings the client changed at session level (values read back from the server;
    /// None: the setting is gone, so it is dropped) into this session's identity.
    pub fn update(&mut self, values: Vec<(String, Option<String>)>) {
        for (k, v) in values {
            self.local.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
            if let Some(v) = v {
                self.local.push((k, v));
            }
        }
        self.rekey();
    }

    /// Back to the startup settings (`RESET ALL`, `DISCARD ALL`).
    pub fn reset_to(&mut self, startup: &[(String, String)]) {
        self.local = startup.to_vec();
        self.rekey();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encoded(p: &Prelude) -> Bytes {
        let mut out = BytesMut::new();
        p.write(&mut out, &[], &[], true, 0);
        out.freeze()
    }

    #[test]
    fn tenant_is_a_parameter_not_sql() {
        let p = Prelude::new("app.tenant_id", Some("x'); drop table t; --"), &[]);
        let text = String::from_utf8_lossy(&encoded(&p)).into_owned();
        // The SQL text is constant; the hostile value only appears as a Bind parameter.
        assert!(text.contains("SELECT pg_catalog.set_config($1, $2, false)"));
        assert_eq!(text.matches("drop table").count(), 1);
        assert!(statement_name().starts_with(crate::tenant::inspect::RESERVED_PREFIX));
    }

    #[test]
    fn identities_differ_by_tenant_and_settings() {
        let a = identity("app.tenant_id", Some("a"), &[], None);
        assert_ne!(a, identity("app.tenant_id", Some("b"), &[], None));
        assert_ne!(a, identity("app.tenant_id", None, &[], None));
        let s = [("search_path".to_owned(), "x".to_owned())];
        assert_ne!(a, identity("app.tenant_id", Some("a"), &s, None));
        assert_eq!(a, identity("app.tenant_id", Some("a"), &[], None));
        assert_ne!(a, identity("app.tenant_id", Some("a"), &[], Some("k1")));
        assert_ne!(a, 0);
    }

    #[test]
    fn prelude_resets_what_the_previous_identity_set() {
        let p = Prelude::new("app.tenant_id", Some("t"), &[]);
        let mut out = BytesMut::new();
        p.write(&mut out, &[], &["search_path".to_owned()], true, 7);
        let binds = out.iter().filter(|&&b| b == b'B').count();
        assert!(binds >= 2);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("search_path"));
        // Ends with Close + Sync: nothing of the proxy's stays prepared.
        assert_eq!(&out[out.len() - 5..], &[b'S', 0, 0, 0, 4]);
    }

    #[test]
    fn signing_sets_the_signature_for_the_backend_and_rekeys() {
        let k1 = SigningKey::new("k1", [1; 32]).expect("id");
        let mut p = Prelude::new("app.tenant_id", Some("t"), &[]);
        let unsigned = p.identity;
        p.set_signing(Some(&k1));
        assert_ne!(
            p.identity, unsigned,
            "a signed identity is another identity"
        );
        let mut out = BytesMut::new();
        p.write(&mut out, &[], &[], true, 4242);
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.contains(SIGNATURE_SETTING));
        assert!(
            text.contains(&k1.sign("t", 4242)),
            "signed for this backend"
        );
        // The tenant is still the last value set.
        assert!(text.rfind("app.tenant_id") > text.rfind(SIGNATURE_SETTING));
        let once = p.identity;
        p.set_signing(Some(&k1));
        assert_eq!(p.identity, once);
        p.set_signing(Some(&SigningKey::new("k2", [2; 32]).expect("id")));
        assert_ne!(p.identity, once, "a rotated key re-signs every connection");
        // No tenant: the signature is reset, never signed.
        let mut none = Prelude::new("app.tenant_id", None, &[]);
        none.set_signing(Some(&k1));
        let mut out = BytesMut::new();
        none.write(&mut out, &[], &[], true, 4242);
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.contains(SIGNATURE_SETTING) && !text.contains("k1:"));
    }
}
