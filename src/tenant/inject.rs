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
/// The injected SQL: a parameterised, schema-qualified call.
pub const SQL: &[u8] = b"SELECT pg_catalog.set_config($1, $2, true)";
/// Text that PostgreSQL rejects with a syntax error naming it.
pub const POISON: &[u8] = b"__tenantgate_refused_statement__";

/// Pre-encoded injection messages for one session's tenant.
#[derive(Debug, Clone)]
pub struct Injector {
    /// Close + Parse of the injection statement, for connections that lack it.
    prepare: Bytes,
    /// Bind (setting, tenant) + Execute.
    run: Bytes,
}

impl Injector {
    /// Encodes the messages for `tenant` under `setting`.
    pub fn new(setting: &str, tenant: &str) -> Injector {
        let mut prepare = BytesMut::new();
        messages::close_statement(&mut prepare, STATEMENT);
        messages::parse(&mut prepare, STATEMENT, SQL, &[25, 25]);
        let mut run = BytesMut::new();
        messages::bind_text(&mut run, b"", STATEMENT, &[setting.as_bytes(), tenant.as_bytes()]);
        messages::execute(&mut run, b"");
        Injector {
            prepare: prepare.freeze(),
            run: run.freeze(),
        }
    }

    /// Appends the injection; returns the messages written, whose answers the relay swallows.
    pub fn write(&self, out: &mut BytesMut, prepared: bool) -> &'static [Msg] {
        if prepared {
            out.extend_from_slice(&self.run);
            &[Msg::Bind, Msg::Execute]
        } else {
            out.extend_from_slice(&self.prepare);
            out.extend_from_slice(&self.run);
            &[Msg::Close, Msg::Parse(None), Msg::Bind, Msg::Execute]
        }
    }
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
        assert_eq!(inj.write(&mut out, false).len(), 4);
        // The SQL text is constant; the hostile value only appears as a Bind parameter.
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("SELECT pg_catalog.set_config($1, $2, true)"));
        let mut prepared = BytesMut::new();
        assert_eq!(inj.write(&mut prepared, true).len(), 2);
        assert_eq!(prepared[0], b'B');
    }
}
