//! The injection: `set_config('<setting>', '<tenant>', true)` ahead of each transaction.
//!
//! The tenant travels as a Bind parameter of a statement the proxy prepares once per upstream
//! connection, in the same write as the client's first message of the transaction, so there is
//! no extra round trip and client text is never spliced into SQL. The unnamed statement is not
//! touched (the client's survives), and only the unnamed portal is used, which cannot hold a
//! client portal at a transaction's start.
//!
//! Also here: the "poison" that makes PostgreSQL itself reject a refused statement at exactly
//! its place in the stream, so protocol semantics (skip to Sync, abort the transaction block)
//! stay PostgreSQL's own; the relay swaps its syntax error for the proxy's refusal.

use bytes::{Bytes, BytesMut};

use crate::protocol::messages::{self, ErrorFields};
use crate::relay::Msg;

/// The proxy's statement name; client names are never allowed to map onto it.
pub const STATEMENT: &[u8] = b"__tenantgate_set_tenant";
/// The injected SQL: a parameterised, schema-qualified call (`$3`: is_local).
pub const SQL: &[u8] = b"SELECT pg_catalog.set_config($1, $2, $3::boolean)";
/// Text that PostgreSQL rejects with a syntax error naming it.
pub const POISON: &[u8] = b"__tenantgate_refused_statement__";

/// Pre-encoded per-transaction messages for one session: its startup settings (local to the
/// transaction) and its tenant, each a Bind/Execute of the proxy's statement.
#[derive(Debug, Clone)]
pub struct Injector {
    /// Bind + Execute for every setting, the tenant last.
    run: Bytes,
    /// The messages in `run`, for the relay.
    msgs: Vec<Msg>,
}

impl Injector {
    /// The injection of `tenant` under `setting` alone.
    pub fn new(setting: &str, tenant: &str) -> Injector {
        Injector::with_settings(setting, Some(tenant), &[])
    }

    /// The injection of the client's transaction-local startup settings, then the tenant.
    pub fn with_settings(
        setting: &str,
        tenant: Option<&str>,
        local: &[(String, String)],
    ) -> Injector {
        let mut run = BytesMut::new();
        let mut msgs = Vec::new();
        for (k, v) in local {
            msgs.extend_from_slice(&write_set(&mut run, k, v, true));
        }
        if let Some(t) = tenant {
            msgs.extend_from_slice(&write_set(&mut run, setting, t, true));
        }
        Injector {
            run: run.freeze(),
            msgs,
        }
    }

    /// Whether there is anything to inject.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Appends the per-transaction messages; returns them, whose answers the relay swallows.
    pub fn write_run(&self, out: &mut BytesMut) -> &[Msg] {
        out.extend_from_slice(&self.run);
        &self.msgs
    }
}

/// Appends Close + Parse of the proxy's statement (for connections that lack it).
pub fn write_prepare(out: &mut BytesMut) -> [Msg; 2] {
    messages::close_statement(out, STATEMENT);
    messages::parse(out, STATEMENT, SQL, &[25, 25, 25]);
    [Msg::Close, Msg::Parse(None)]
}

/// Appends one `set_config(name, value, local)` as Bind + Execute of the proxy's statement.
pub fn write_set(out: &mut BytesMut, name: &str, value: &str, local: bool) -> [Msg; 2] {
    let is_local: &[u8] = if local { b"true" } else { b"false" };
    messages::bind_text(
        out,
        b"",
        STATEMENT,
        &[name.as_bytes(), value.as_bytes(), is_local],
    );
    messages::execute(out, b"");
    [Msg::Bind, Msg::Execute]
}

/// Appends a Query that fails with a syntax error naming [`POISON`].
pub fn poison_query(out: &mut BytesMut) {
    messages::write_msg(out, b'Q', |b| messages::put_cstr(b, POISON));
}

/// Appends a Parse of statement `name` that fails with a syntax error naming [`POISON`].
pub fn poison_parse(out: &mut BytesMut, name: &[u8]) {
    messages::parse(out, name, POISON, &[]);
}

/// Whether an upstream error is the one a poison provokes.
pub fn is_poison_error(e: &ErrorFields) -> bool {
    e.code == "42601" && e.message.contains("__tenantgate_refused_statement__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_is_a_parameter_not_sql() {
        let inj = Injector::new("app.tenant_id", "x'); drop table t; --");
        let mut out = BytesMut::new();
        assert_eq!(write_prepare(&mut out).len(), 2);
        assert_eq!(inj.write_run(&mut out).len(), 2);
        // The SQL text is constant; the hostile value only appears as a Bind parameter.
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("SELECT pg_catalog.set_config($1, $2, $3::boolean)"));
        let with = Injector::with_settings(
            "app.tenant_id",
            Some("t"),
            &[("search_path".into(), "a".into())],
        );
        let mut run = BytesMut::new();
        assert_eq!(with.write_run(&mut run).len(), 4);
        assert_eq!(run[0], b'B');
        assert!(Injector::with_settings("app.tenant_id", None, &[]).is_empty());
    }
}
