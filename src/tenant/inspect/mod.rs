//! The SQL inspector: a hand-written PostgreSQL lexer plus rules on statement heads.
//!
//! Why it exists: the proxy injects the tenant into every transaction, so a client that can
//! change the tenant setting, its role or row security can read other tenants' rows. This module
//! finds the statements that try, without a parser and without I/O (STYLE habit 8: a pure unit,
//! testable with nothing but strings). It never allocates for ordinary SQL, never panics on any
//! input, and runs in time linear in the input.
//!
//! # How it reads SQL
//!
//! The lexer follows PostgreSQL's `scan.l` wherever a mistake would move a statement boundary:
//! `--` and nested `/* */` comments; `'…'` with `''` (and backslash escapes when
//! `standard_conforming_strings` is off); `E'…'`, `U&'…'` with `UESCAPE`, `B'…'`, `X'…'`, `N'…'`;
//! the concatenation of string literals separated by whitespace that contains a newline (the
//! continuation keeps the first literal's escape rules, as PostgreSQL does); dollar quotes with
//! tags; `$1` parameters; `"…"` and `U&"…"` identifiers (truncated to 63 bytes like
//! PostgreSQL's); identifiers that contain `$`; operators that end where a comment starts.
//! Unterminated strings, identifiers and comments run to the end of the text: PostgreSQL
//! rejects such a query whole, so nothing after them can run.
//!
//! Statements split at every `;` outside a string, comment or quoted identifier, except inside
//! the SQL-standard body `BEGIN ATOMIC … END` of `CREATE [OR REPLACE] FUNCTION|PROCEDURE`,
//! where `CASE … END` nests. PostgreSQL parses the whole Query text before running any of it, so
//! a lexical error anywhere means nothing runs; only texts PostgreSQL accepts need an exact split.
//! Rules on statement heads are also applied to each statement inside a `BEGIN ATOMIC` body, so a
//! wrong guess about where such a body ends can move a finding's range but cannot hide it.
//!
//! # What it sees
//!
//! * `SET [SESSION|LOCAL]` / `RESET` of the tenant setting, `role`, `session_authorization`
//!   (also `SET SESSION AUTHORIZATION`) and `row_security`, under any spelling: any case,
//!   quoted, split over comments, `U&"…"`-escaped.
//! * `set_config(...)` anywhere (qualified or quoted), with the setting name decoded from any
//!   literal form; a non-literal name fails closed.
//! * `ALTER ROLE|USER|DATABASE … SET/RESET`, `ALTER SYSTEM SET/RESET`, and the `SET` clause of
//!   `CREATE|ALTER FUNCTION|PROCEDURE|ROUTINE` (the function would run with another tenant).
//! * `UPDATE [ONLY] [(][[database.]pg_catalog.]pg_settings` anywhere, including in a CTE.
//! * Row-security changes: `ALTER TABLE … DISABLE ROW LEVEL SECURITY` / `NO FORCE ROW LEVEL
//!   SECURITY`, `CREATE|ALTER|DROP POLICY`, roles given `BYPASSRLS` or `SUPERUSER`.
//! * `DO` blocks; and function and `DO` bodies (string or dollar-quoted) that mention
//!   `set_config` or run `SET`/`RESET` of a guarded setting, also inside string literals nested
//!   up to three levels deep (`EXECUTE 'set role x'`).
//! * SQL text passed to functions that run it in the same session (`query_to_xml`,
//!   `query_to_xmlschema`, `query_to_xml_and_xmlschema`, `ts_stat`) is inspected as SQL; a
//!   non-literal query fails closed.
//! * Catalog objects that expose other sessions of the shared upstream role, large objects
//!   and activity statistics (`pg_stat_activity`, `pg_cancel_backend`, `lo_get`,
//!   `pg_stat_user_tables`, `reltuples` …; the tables and their derivation are in
//!   `catalog.rs`), as names in any spelling, as string literals naming them
//!   (`'pg_locks'::regclass`), and in function and `DO` bodies; `EXPLAIN ANALYZE` in every
//!   option spelling; `SET client_encoding`/`SET NAMES`/`set_config('client_encoding', …)` to
//!   an encoding whose multi-byte characters can contain ASCII bytes; and the SQL text passed
//!   to `ts_rewrite(tsquery, text)` and `tablefunc`'s `crosstab*` (`connectby` fails closed).
//! * String literals compared with the tenant column by `=`, `<>`, `!=`, `IN (…)`, `NOT IN`,
//!   `IS [NOT] DISTINCT FROM`, `= ANY (ARRAY[…])` and `= ANY ('{…}')`, in either operand order,
//!   through `::type`, `CAST(… AS type)` and `type '…'`. An `UPDATE … SET tenant_id = '…'` is
//!   reported too.
//!
//! # What it cannot see (deliberately left undetected)
//!
//! * SQL built at run time inside PL/pgSQL, PL/Python, PL/Perl and other bodies
//!   (`EXECUTE format('SET %I = %L', …)`, string concatenation, `plpy.execute(...)` in
//!   a non-SQL body). `DO` blocks are reported whole for that reason; function bodies are
//!   checked best-effort only.
//! * Functions, triggers, rules, views, event triggers and extensions defined earlier (or by
//!   someone else) that call `set_config`: calling them looks like any other call.
//! * Privilege changes outside the statements above: `GRANT` of a privileged role followed by a
//!   later `SET ROLE` is caught only at the `SET ROLE`; `ALTER TABLE … OWNER TO` is not reported.
//! * Other sessions: `dblink`/`postgres_fdw` open their own connections, which this proxy does
//!   not guard.
//! * Tenant ids that are not string literals next to the tenant column: numbers, parameters
//!   (`$1`), columns, subqueries, `INSERT … VALUES` positions, `BETWEEN`, `LIKE`, and literals
//!   reached through other operators or functions.
//! * The grammar itself: a statement that PostgreSQL would reject may still produce findings, and
//!   keywords used as column labels (`AS end`) are handled only after `AS` or `.`.
//! * Secrets outside the recognised places (a `PASSWORD` word, a literal containing "password",
//!   `CREATE|ALTER SUBSCRIPTION … CONNECTION`); e.g. keys passed to `pgp_sym_encrypt`.
//! * Texts of 2 GiB or more are not read at all: they get one `TenantTamper` finding ("statement
//!   too large to inspect") and are refused (PostgreSQL rejects messages over 1 GiB anyway).

use std::borrow::Cow;
use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Range};

use super::catalog;

mod anywhere;
mod body;
mod catalog_rules;
mod heads;
mod lexer;
mod literals;
mod names;
mod walk;

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod tests;

use body::*;
use catalog_rules::*;
use lexer::*;
use literals::*;
use names::*;
use walk::*;

/// Options the session passes; all comparisons of names are ASCII case-insensitive.
#[derive(Clone, Copy, Debug)]
pub struct InspectOptions<'a> {
    /// The tenant GUC, e.g. `app.tenant_id`: statements that change it are refused.
    pub setting: &'a str,
    /// The tenant column, e.g. `tenant_id`: literals compared with it are reported.
    pub tenant_column: &'a str,
    /// The session's `standard_conforming_strings`: when false, backslash escapes inside plain
    /// `'…'` strings too, which moves where such a string ends.
    pub standard_conforming_strings: bool,
}

/// The rule a finding broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A change of the tenant setting (or a way to hide one).
    TenantTamper,
    /// A change of the current or session role.
    RoleTamper,
    /// A change that weakens row-level security.
    RlsTamper,
    /// A `DO` block: its body can call `set_config` where no lexer can see.
    DoBlock,
    /// A string literal compared with the tenant column; the session decides whose id it is.
    TenantLiteral,
    /// A SQL-level `PREPARE`/`EXECUTE`/`DEALLOCATE` naming a statement in the proxy's reserved
    /// namespace ([`RESERVED_PREFIX`]); the finding's value is the name.
    ReservedName,
    /// A client encoding in which quotes and backslashes can hide inside multi-byte characters
    /// (`SET client_encoding`, `SET NAMES`, `set_config('client_encoding', …)`). `value`: the
    /// encoding as written, `None` when it is not a constant.
    UnsafeEncoding,
    /// A catalog view or function exposing other sessions of the shared upstream role (their
    /// queries, locks, prepared statements, cursors) or signalling them. `detail`: the object
    /// kind (`view`, `function`, …), `value`: its name.
    OtherSessions,
    /// Large-object functions and tables. `detail` and `value` as for `OtherSessions`.
    LargeObject,
    /// Statistics that reveal other tenants' rows or activity (`pg_stat_*`, sizes,
    /// `reltuples`), and `EXPLAIN ANALYZE` (`value` `None`). `detail` as for `OtherSessions`.
    Statistics,
}

pub use crate::prepared::RESERVED_PREFIX;

impl Rule {
    /// The words a client reads in an error's detail ("… [row security]").
    pub const fn label(self) -> &'static str {
        match self {
            Rule::TenantTamper => "tenant setting",
            Rule::RoleTamper => "role",
            Rule::RlsTamper => "row security",
            Rule::DoBlock => "DO block",
            Rule::TenantLiteral => "tenant literal",
            Rule::ReservedName => "reserved name",
            Rule::UnsafeEncoding => "client encoding",
            Rule::OtherSessions => "other sessions",
            Rule::LargeObject => "large object",
            Rule::Statistics => "statistics",
        }
    }
}

/// One thing a statement did that the session must judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Decides the event, and whether `probe_action = "log"` may let it through (catalog rules are
    /// always refused).
    pub rule: Rule,
    /// Byte range of the whole offending statement in the inspected text, without surrounding
    /// whitespace, comments or the `;`.
    pub statement: Range<usize>,
    /// Byte range of the construct that matched (the `SET` head, the `set_config` name, the
    /// literal), inside `statement`. For SQL found inside a string (a dynamic query), the string.
    pub span: Range<usize>,
    /// Short human text, e.g. "SET of the tenant setting".
    pub detail: &'static str,
    /// For `TenantTamper` from `SET … = value` or `set_config(setting, 'value', …)`: the value,
    /// unquoted and unescaped. For `TenantLiteral`: the literal. `None` otherwise.
    pub value: Option<String>,
}

/// The result of inspecting one Query or Parse text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Non-empty statements, split as PostgreSQL splits them.
    pub statements: u32,
    /// Findings in text order; empty (and not allocated) for ordinary SQL.
    pub findings: Vec<Finding>,
    /// What kinds of statement the text holds.
    pub flags: Flags,
    /// Settings the text changes at session level (`SET` without `LOCAL`, `RESET`,
    /// `set_config(…, false)`; not `SET TRANSACTION`, nor `RESET ALL`), by name, so the session can
    /// carry their values to its next server connections; empty (not allocated) otherwise.
    pub session_settings: Vec<String>,
    /// Cursors the text declares (`DECLARE name …`), with whether they are `WITH HOLD`: the
    /// session lets protocol messages name them as its own portals.
    pub cursors: Vec<(String, bool)>,
}

/// A set of statement properties the session acts on.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u32);

impl Flags {
    /// `PREPARE name AS …` (not `PREPARE TRANSACTION`).
    pub const SQL_PREPARE: Flags = Flags(1);
    /// `EXECUTE name` (also `EXPLAIN … EXECUTE name`).
    pub const SQL_EXECUTE: Flags = Flags(1 << 1);
    /// Text that must be redacted from logs: a `PASSWORD` word (`CREATE|ALTER ROLE … PASSWORD`,
    /// user mapping options), a literal containing "password", `CREATE SUBSCRIPTION`,
    /// `ALTER SUBSCRIPTION … CONNECTION`.
    pub const CONTAINS_SECRET: Flags = Flags(1 << 2);
    /// `LISTEN`: session state that breaks under transaction pooling.
    pub const LISTEN: Flags = Flags(1 << 3);
    /// `DECLARE … WITH HOLD`: a cursor that outlives the transaction.
    pub const HOLD_CURSOR: Flags = Flags(1 << 4);
    /// `CREATE TEMP|TEMPORARY …`, `SELECT … INTO TEMP`, or an object created in `pg_temp` or
    /// `pg_temp_<n>`: lives as long as the server connection.
    pub const TEMP_OBJECT: Flags = Flags(1 << 5);
    /// A session-level advisory lock (`pg_advisory_lock`, `pg_try_advisory_lock` and their
    /// `_shared` forms): held until unlocked or the server connection ends.
    pub const SESSION_LOCK: Flags = Flags(1 << 6);
    /// `RESET ALL` followed by more statements in the same text: those would run without the
    /// proxy's tenant.
    pub const RESET_NOT_LAST: Flags = Flags(1 << 7);
    /// `RESET ALL` or `DISCARD ALL`: every setting returns to the session's startup value.
    pub const RESETS_SETTINGS: Flags = Flags(1 << 8);

    const NAMES: [(Flags, &'static str); 9] = [
        (Flags::SQL_PREPARE, "SQL_PREPARE"),
        (Flags::SQL_EXECUTE, "SQL_EXECUTE"),
        (Flags::CONTAINS_SECRET, "CONTAINS_SECRET"),
        (Flags::LISTEN, "LISTEN"),
        (Flags::HOLD_CURSOR, "HOLD_CURSOR"),
        (Flags::TEMP_OBJECT, "TEMP_OBJECT"),
        (Flags::SESSION_LOCK, "SESSION_LOCK"),
        (Flags::RESET_NOT_LAST, "RESET_NOT_LAST"),
        (Flags::RESETS_SETTINGS, "RESETS_SETTINGS"),
    ];

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// Inspects `sql` (one Query or Parse text, possibly several statements).
pub fn inspect(sql: &str, opts: &InspectOptions<'_>) -> Inspection {
    if sql.len() >= MAX_INPUT {
        return too_large(sql.len());
    }
    let o = Opts {
        setting: opts.setting.as_bytes(),
        column: opts.tenant_column.as_bytes(),
        scs: opts.standard_conforming_strings,
    };
    run(sql.as_bytes(), o, 0)
}

/// Texts this long or longer are refused whole (PostgreSQL itself rejects messages over 1 GiB);
/// below it every offset fits the lexer's `u32` tokens.
const MAX_INPUT: usize = 1 << 31;

/// The fail-closed answer for a text too large to inspect.
#[cold]
fn too_large(len: usize) -> Inspection {
    Inspection {
        statements: 1,
        findings: vec![Finding {
            rule: Rule::TenantTamper,
            statement: 0..len,
            span: 0..0,
            detail: "statement too large to inspect",
            value: None,
        }],
        flags: Flags::CONTAINS_SECRET,
        session_settings: Vec::new(),
        cursors: Vec::new(),
    }
}
