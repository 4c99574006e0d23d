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
//! * `UPDATE [ONLY] [pg_catalog.]pg_settings` anywhere, including in a CTE.
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

/// Prefix of every name the proxy itself prepares upstream; clients may not use it in SQL.
pub const RESERVED_PREFIX: &[u8] = b"__tg";

impl Rule {
    /// A stable lower-case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::TenantTamper => "tenant_tamper",
            Rule::RoleTamper => "role_tamper",
            Rule::RlsTamper => "rls_tamper",
            Rule::DoBlock => "do_block",
            Rule::TenantLiteral => "tenant_literal",
            Rule::ReservedName => "reserved_name",
            Rule::UnsafeEncoding => "unsafe_encoding",
            Rule::OtherSessions => "other_sessions",
            Rule::LargeObject => "large_object",
            Rule::Statistics => "statistics",
        }
    }
}

/// One thing a statement did that the session must judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
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
    /// Settings the text changes at session level (`SESSION_SET`), by name, so the session can
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
    /// A statement that cannot run inside a transaction block (`VACUUM`, `CREATE|DROP DATABASE`,
    /// `CREATE|DROP TABLESPACE`, `CREATE|DROP INDEX CONCURRENTLY`, `REINDEX … CONCURRENTLY`,
    /// `REINDEX DATABASE|SYSTEM`, `ALTER SYSTEM`, `CLUSTER` without a table, `COMMIT|ROLLBACK
    /// PREPARED`, `CREATE|ALTER|DROP SUBSCRIPTION`, `DISCARD ALL`, `ALTER DATABASE … SET
    /// TABLESPACE`, `ALTER TABLE … DETACH PARTITION … CONCURRENTLY`).
    pub const NO_TXN_BLOCK: Flags = Flags(1);
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `ABORT`, `SAVEPOINT`,
    /// `RELEASE`, `PREPARE TRANSACTION`.
    pub const TXN_CONTROL: Flags = Flags(1 << 1);
    /// `PREPARE name AS …` (not `PREPARE TRANSACTION`).
    pub const SQL_PREPARE: Flags = Flags(1 << 2);
    /// `EXECUTE name` (also `EXPLAIN … EXECUTE name`).
    pub const SQL_EXECUTE: Flags = Flags(1 << 3);
    /// `DEALLOCATE`.
    pub const SQL_DEALLOCATE: Flags = Flags(1 << 4);
    /// Text that must be redacted from logs: a `PASSWORD` word (`CREATE|ALTER ROLE … PASSWORD`,
    /// user mapping options), a literal containing "password", `CREATE SUBSCRIPTION`,
    /// `ALTER SUBSCRIPTION … CONNECTION`.
    pub const CONTAINS_SECRET: Flags = Flags(1 << 5);
    /// `DISCARD ALL`, `DISCARD PLANS`, `RESET ALL`, `DEALLOCATE [PREPARE] ALL`: harmless,
    /// informational (pools send them).
    pub const DISCARD_OR_RESET_ALL: Flags = Flags(1 << 6);
    /// `LISTEN`: session state that breaks under transaction pooling.
    pub const LISTEN: Flags = Flags(1 << 7);
    /// `SET` without `LOCAL`, or `RESET`, of a setting the rules do not guard (e.g.
    /// `search_path`): session state that outlives the transaction. Not set for
    /// `SET TRANSACTION`/`SET CONSTRAINTS`, nor for `RESET ALL`.
    pub const SESSION_SET: Flags = Flags(1 << 8);
    /// `DECLARE … WITH HOLD`: a cursor that outlives the transaction.
    pub const HOLD_CURSOR: Flags = Flags(1 << 9);
    /// `CREATE TEMP|TEMPORARY …` or an object created in `pg_temp`: lives as long as the
    /// server connection.
    pub const TEMP_OBJECT: Flags = Flags(1 << 10);
    /// A session-level advisory lock (`pg_advisory_lock`, `pg_try_advisory_lock` and their
    /// `_shared` forms): held until unlocked or the server connection ends.
    pub const SESSION_LOCK: Flags = Flags(1 << 11);
    /// `RESET ALL` followed by more statements in the same text: those would run without the
    /// proxy's tenant.
    pub const RESET_NOT_LAST: Flags = Flags(1 << 12);
    /// `RESET ALL` or `DISCARD ALL`: every setting returns to the session's startup value.
    pub const RESETS_SETTINGS: Flags = Flags(1 << 13);

    const NAMES: [(Flags, &'static str); 14] = [
        (Flags::NO_TXN_BLOCK, "NO_TXN_BLOCK"),
        (Flags::TXN_CONTROL, "TXN_CONTROL"),
        (Flags::SQL_PREPARE, "SQL_PREPARE"),
        (Flags::SQL_EXECUTE, "SQL_EXECUTE"),
        (Flags::SQL_DEALLOCATE, "SQL_DEALLOCATE"),
        (Flags::CONTAINS_SECRET, "CONTAINS_SECRET"),
        (Flags::DISCARD_OR_RESET_ALL, "DISCARD_OR_RESET_ALL"),
        (Flags::LISTEN, "LISTEN"),
        (Flags::SESSION_SET, "SESSION_SET"),
        (Flags::HOLD_CURSOR, "HOLD_CURSOR"),
        (Flags::TEMP_OBJECT, "TEMP_OBJECT"),
        (Flags::SESSION_LOCK, "SESSION_LOCK"),
        (Flags::RESET_NOT_LAST, "RESET_NOT_LAST"),
        (Flags::RESETS_SETTINGS, "RESETS_SETTINGS"),
    ];

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the flags in `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
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

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

/// NAMEDATALEN - 1: PostgreSQL truncates identifiers to this many bytes.
const MAX_IDENT: usize = 63;
/// How deep SQL found inside strings (dynamic queries) is inspected before failing closed.
const MAX_DYNAMIC_DEPTH: u32 = 4;
/// How deep string literals nested in function bodies are searched.
const MAX_BODY_DEPTH: u32 = 3;
/// Bound on the tokens a single pattern skips (parentheses, type names).
const SKIP_LIMIT: usize = 32;

const C_WS: u8 = 1;
const C_IDS: u8 = 2;
const C_IDC: u8 = 4;
const C_OP: u8 = 8;
const C_DQC: u8 = 16;
/// Whitespace, or the first byte of a comment (`-`, `/`).
const C_SKIP: u8 = 32;

static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut v = 0;
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            v |= C_WS | C_SKIP;
        }
        if c == b'-' || c == b'/' {
            v |= C_SKIP;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            v |= C_IDS | C_IDC | C_DQC;
        }
        if c.is_ascii_digit() {
            v |= C_IDC | C_DQC;
        }
        if c == b'$' {
            v |= C_IDC;
        }
        if matches!(
            c,
            b'~' | b'!'
                | b'@'
                | b'#'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'<'
                | b'>'
                | b'='
        ) {
            v |= C_OP;
        }
        t[i] = v;
        i += 1;
    }
    t
}

#[inline]
fn class(c: u8) -> u8 {
    CLASS[c as usize]
}

/// Token kinds. Keywords are `Word`s; the rules compare their text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum K {
    Word,
    QIdent,
    UIdent,
    /// `'…'` (standard) or `N'…'`.
    Str,
    /// `E'…'`, or `'…'`/`N'…'` with standard_conforming_strings off.
    EStr,
    UStr,
    BStr,
    Dollar,
    Num,
    Param,
    Op,
    Semi,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Dot,
    DotDot,
    Colon,
    Typecast,
    ColonEq,
    Other,
}

/// A token: 16 bytes, so that `Option<Tok>` comes back in registers. Offsets are `u32`:
/// `inspect` refuses texts of `MAX_INPUT` bytes or more.
#[derive(Clone, Copy, Debug)]
struct Tok {
    k: K,
    /// Whether the string, identifier or dollar quote was closed.
    term: bool,
    start: u32,
    stop: u32,
    /// `UStr`/`UIdent`: the escape byte (0 = invalid UESCAPE). `Dollar`: the delimiter length.
    /// `QIdent`: 1 if it holds a doubled `""`.
    extra: u32,
}

impl Tok {
    fn new(k: K, s: usize, e: usize) -> Tok {
        Tok {
            k,
            term: true,
            start: s as u32,
            stop: e as u32,
            extra: 0,
        }
    }

    /// Start offset.
    #[inline(always)]
    fn s(&self) -> usize {
        self.start as usize
    }

    /// End offset.
    #[inline(always)]
    fn e(&self) -> usize {
        self.stop as usize
    }

    /// See `extra`.
    #[inline(always)]
    fn aux(&self) -> usize {
        self.extra as usize
    }
}

/// Quoting modes of `'…'` literals.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Q {
    Std,
    Esc,
    Bit,
}

#[derive(Clone)]
struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    scs: bool,
    /// False while looking ahead for a UESCAPE clause, so such look-aheads never nest.
    uesc: bool,
}

impl<'a> Lexer<'a> {
    fn new(b: &'a [u8], scs: bool) -> Self {
        Lexer {
            b,
            pos: 0,
            scs,
            uesc: true,
        }
    }

    #[inline]
    fn at(&self, i: usize) -> u8 {
        match self.b.get(i) {
            Some(&c) => c,
            None => 0,
        }
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        // Fast paths: nothing to skip, or one space before an ordinary byte.
        let c = self.at(self.pos);
        if class(c) & C_SKIP == 0 {
            return;
        }
        if c == b' ' && class(self.at(self.pos + 1)) & C_SKIP == 0 {
            self.pos += 1;
            return;
        }
        self.skip_ws_slow();
    }

    #[inline(never)]
    fn skip_ws_slow(&mut self) {
        let b = self.b;
        let n = b.len();
        let mut p = self.pos;
        while p < n {
            let c = b[p];
            if class(c) & C_WS != 0 {
                p += 1;
            } else if c == b'-' && self.at(p + 1) == b'-' {
                p += 2;
                while p < n && b[p] != b'\n' && b[p] != b'\r' {
                    p += 1;
                }
            } else if c == b'/' && self.at(p + 1) == b'*' {
                p = skip_block_comment(b, p);
            } else {
                break;
            }
        }
        self.pos = p;
    }

    /// The next token (out of line: used by look-aheads).
    #[inline(never)]
    fn next(&mut self) -> Option<Tok> {
        self.next_inline()
    }

    /// The next token, inlined into the main loop.
    #[inline(always)]
    fn next_inline(&mut self) -> Option<Tok> {
        self.skip_ws();
        let s = self.pos;
        let c = *self.b.get(s)?;
        let mut term = true;
        let mut extra = 0u32;
        self.pos = s + 1;
        let k = match c {
            _ if class(c) & C_IDS != 0 && !matches!(self.at(s + 1), b'\'' | b'&') => {
                let rest = self.b.get(s + 1..).unwrap_or_default();
                let n = rest
                    .iter()
                    .position(|&c| class(c) & C_IDC == 0)
                    .unwrap_or(rest.len());
                self.pos = s + 1 + n;
                K::Word
            }
            b'\'' => {
                let (k, q) = if self.scs {
                    (K::Str, Q::Std)
                } else {
                    (K::EStr, Q::Esc)
                };
                term = self.quoted(s, q);
                k
            }
            b'"' => {
                let doubled;
                (term, doubled) = self.qident(s);
                extra = u32::from(doubled);
                K::QIdent
            }
            b'$' => {
                let (k, t, x) = self.dollar(s);
                term = t;
                extra = x;
                k
            }
            b'0'..=b'9' => {
                self.number(s);
                K::Num
            }
            b'.' => match self.at(s + 1) {
                b'.' => {
                    self.pos = s + 2;
                    K::DotDot
                }
                d if d.is_ascii_digit() => {
                    self.number(s);
                    K::Num
                }
                _ => K::Dot,
            },
            b':' => match self.at(s + 1) {
                b':' => {
                    self.pos = s + 2;
                    K::Typecast
                }
                b'=' => {
                    self.pos = s + 2;
                    K::ColonEq
                }
                _ => K::Colon,
            },
            b'(' => K::LParen,
            b')' => K::RParen,
            b'[' => K::LBrack,
            b']' => K::RBrack,
            b',' => K::Comma,
            b';' => K::Semi,
            _ if class(c) & C_OP != 0 => {
                self.operator(s);
                K::Op
            }
            _ if class(c) & C_IDS != 0 => {
                if matches!(self.at(s + 1), b'\'' | b'&') {
                    if let Some(t) = self.prefixed(s, c) {
                        return Some(t);
                    }
                }
                let rest = self.b.get(s + 1..).unwrap_or_default();
                let n = rest
                    .iter()
                    .position(|&c| class(c) & C_IDC == 0)
                    .unwrap_or(rest.len());
                self.pos = s + 1 + n;
                K::Word
            }
            _ => K::Other,
        };
        Some(Tok {
            k,
            term,
            start: s as u32,
            stop: self.pos as u32,
            extra,
        })
    }

    /// `E'`, `B'`, `X'`, `N'`, `U&'` and `U&"` at a token start.
    #[inline(never)]
    fn prefixed(&mut self, s: usize, c: u8) -> Option<Tok> {
        let c1 = self.at(s + 1);
        let lower = c | 0x20;
        let (k, q, open) = match lower {
            b'e' if c1 == b'\'' => (K::EStr, Q::Esc, s + 1),
            b'b' | b'x' if c1 == b'\'' => (K::BStr, Q::Bit, s + 1),
            b'n' if c1 == b'\'' => {
                if self.scs {
                    (K::Str, Q::Std, s + 1)
                } else {
                    (K::EStr, Q::Esc, s + 1)
                }
            }
            b'u' if c1 == b'&' && self.at(s + 2) == b'\'' => (K::UStr, Q::Std, s + 2),
            b'u' if c1 == b'&' && self.at(s + 2) == b'"' => (K::UIdent, Q::Std, s + 2),
            _ => return None,
        };
        let term = if k == K::UIdent {
            self.qident(open).0
        } else {
            self.quoted(open, q)
        };
        let mut t = Tok::new(k, s, self.pos);
        t.term = term;
        if matches!(k, K::UStr | K::UIdent) {
            t.extra = u32::from(self.uescape());
        }
        Some(t)
    }

    /// After a `U&` literal: consumes `UESCAPE 'c'` if present and returns the escape byte.
    #[inline(never)]
    fn uescape(&mut self) -> u8 {
        if !self.uesc {
            return b'\\';
        }
        let mut la = self.clone();
        la.uesc = false;
        if !kw(self.b, la.next(), b"uescape") {
            return b'\\';
        }
        let Some(t) = la.next() else {
            return 0;
        };
        if !is_text_lit(t.k) {
            return 0;
        }
        let mut one = Small::default();
        decode_lit(self.b, &t, &mut one);
        self.pos = la.pos;
        if one.n == 1 {
            one.first
        } else {
            0
        }
    }

    /// Scans a `'…'` literal whose opening quote is at `open`, with its continuations.
    #[inline(never)]
    fn quoted(&mut self, open: usize, q: Q) -> bool {
        let b = self.b;
        let n = b.len();
        let mut p = open + 1;
        loop {
            loop {
                let rest = b.get(p..).unwrap_or_default();
                let hit = if q == Q::Esc {
                    rest.iter().position(|&c| c == b'\'' || c == b'\\')
                } else {
                    rest.iter().position(|&c| c == b'\'')
                };
                let Some(off) = hit else {
                    self.pos = n;
                    return false;
                };
                p += off;
                if b[p] == b'\\' {
                    p = (p + 2).min(n);
                    continue;
                }
                if q != Q::Bit && self.at(p + 1) == b'\'' {
                    p += 2;
                    continue;
                }
                p += 1;
                break;
            }
            match self.continuation(p) {
                Some(next) => p = next + 1,
                None => {
                    self.pos = p;
                    return true;
                }
            }
        }
    }

    /// Where a string literal continues after its closing quote at `p - 1`: whitespace and `--`
    /// comments holding at least one newline, then a quote (scan.l's `{quotecontinue}`).
    fn continuation(&self, mut p: usize) -> Option<usize> {
        let b = self.b;
        let n = b.len();
        let mut newline = false;
        while p < n {
            match b[p] {
                b' ' | b'\t' | 0x0b | 0x0c => p += 1,
                b'\n' | b'\r' => {
                    newline = true;
                    p += 1;
                }
                b'-' if self.at(p + 1) == b'-' => {
                    p += 2;
                    while p < n && b[p] != b'\n' && b[p] != b'\r' {
                        p += 1;
                    }
                }
                b'\'' if newline => return Some(p),
                _ => return None,
            }
        }
        None
    }

    /// Scans a `"…"` identifier whose opening quote is at `open`: whether it was closed, and
    /// whether it holds a doubled `""`.
    #[inline(never)]
    fn qident(&mut self, open: usize) -> (bool, bool) {
        let b = self.b;
        let mut p = open + 1;
        let mut doubled = false;
        loop {
            let Some(off) = b.get(p..).and_then(|r| r.iter().position(|&c| c == b'"')) else {
                self.pos = b.len();
                return (false, doubled);
            };
            p += off;
            if self.at(p + 1) == b'"' {
                doubled = true;
                p += 2;
                continue;
            }
            self.pos = p + 1;
            return (true, doubled);
        }
    }

    /// `$1`, `$tag$…$tag$`, or a lone `$`: the kind, whether closed, and the delimiter length.
    #[inline(never)]
    fn dollar(&mut self, s: usize) -> (K, bool, u32) {
        if self.at(s + 1).is_ascii_digit() {
            let mut p = s + 1;
            while self.at(p).is_ascii_digit() || self.at(p) == b'_' {
                p += 1;
            }
            self.pos = p;
            return (K::Param, true, 0);
        }
        let mut p = s + 1;
        if class(self.at(p)) & C_IDS != 0 {
            p += 1;
            while class(self.at(p)) & C_DQC != 0 {
                p += 1;
            }
        }
        // {dolqfailed}: the `$` alone, as {other}.
        let Some(tag) = self.b.get(s..=p).filter(|_| self.at(p) == b'$') else {
            return (K::Other, true, 0);
        };
        match find_delim(self.b, p + 1, tag) {
            Some(q) => {
                self.pos = q + tag.len();
                (K::Dollar, true, tag.len() as u32)
            }
            None => {
                self.pos = self.b.len();
                (K::Dollar, false, tag.len() as u32)
            }
        }
    }

    fn number(&mut self, s: usize) {
        let digit = |c: u8| c.is_ascii_digit() || c == b'_';
        let mut p = s;
        while digit(self.at(p)) {
            p += 1;
        }
        if self.at(p) == b'.' && self.at(p + 1) != b'.' {
            p += 1;
            while digit(self.at(p)) {
                p += 1;
            }
        }
        if (self.at(p) | 0x20) == b'e' {
            let mut q = p + 1;
            if matches!(self.at(q), b'+' | b'-') {
                q += 1;
            }
            if self.at(q).is_ascii_digit() {
                p = q;
                while digit(self.at(p)) {
                    p += 1;
                }
            }
        }
        self.pos = p.max(s + 1);
    }

    /// scan.l's `{operator}`: stops where a comment starts; drops a trailing `+`/`-` unless the
    /// operator holds a character that is not an SQL operator.
    fn operator(&mut self, s: usize) {
        if class(self.at(s + 1)) & C_OP == 0 {
            self.pos = s + 1;
            return;
        }
        let mut p = s + 1;
        while class(self.at(p)) & C_OP != 0 {
            let (prev, c) = (self.at(p - 1), self.at(p));
            if (prev == b'-' && c == b'-') || (prev == b'/' && c == b'*') {
                p -= 1;
                break;
            }
            p += 1;
        }
        let mut n = p.saturating_sub(s).max(1);
        let op = self.b.get(s..s + n).unwrap_or_default();
        if n > 1
            && matches!(op.last(), Some(b'+' | b'-'))
            && !op.iter().any(|c| b"~!@#^&|`?%".contains(c))
        {
            while n > 1 && matches!(self.at(s + n - 1), b'+' | b'-') {
                n -= 1;
            }
        }
        self.pos = s + n;
    }
}

/// Skips a nested `/* */` comment starting at `p`; returns the end (the text's end if open).
fn skip_block_comment(b: &[u8], mut p: usize) -> usize {
    let n = b.len();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut depth = 0usize;
    while p < n {
        if b[p] == b'/' && at(p + 1) == b'*' {
            depth += 1;
            p += 2;
        } else if b[p] == b'*' && at(p + 1) == b'/' {
            depth = depth.saturating_sub(1);
            p += 2;
            if depth == 0 {
                return p;
            }
        } else {
            p += 1;
        }
    }
    n
}

/// Finds the closing dollar-quote delimiter `tag` at or after `from`, in linear time: a
/// failed partial match consumed only tag characters, which are never `$`.
fn find_delim(b: &[u8], from: usize, tag: &[u8]) -> Option<usize> {
    let m = tag.len();
    let mut i = from;
    while i + m <= b.len() {
        i += b.get(i..)?.iter().position(|&c| c == b'$')?;
        if i + m > b.len() {
            return None;
        }
        let mut j = 1;
        while j < m && b.get(i + j) == tag.get(j) {
            j += 1;
        }
        if j == m {
            return Some(i);
        }
        i += j;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Decoding literals and identifiers
// ---------------------------------------------------------------------------------------------

/// Where decoded bytes go: a buffer, or matchers that need no allocation.
trait Sink {
    fn put(&mut self, c: u8);
}

impl Sink for Vec<u8> {
    fn put(&mut self, c: u8) {
        self.push(c);
    }
}

/// Counts bytes and keeps the first (for UESCAPE).
#[derive(Default)]
struct Small {
    n: usize,
    first: u8,
}

impl Sink for Small {
    fn put(&mut self, c: u8) {
        if self.n == 0 {
            self.first = c;
        }
        self.n += 1;
    }
}

/// The first 64 bytes of an identifier, enough to apply PostgreSQL's 63-byte truncation.
struct Ident64<'b> {
    buf: &'b mut [u8; 64],
    n: usize,
}

impl Sink for Ident64<'_> {
    fn put(&mut self, c: u8) {
        if let Some(slot) = self.buf.get_mut(self.n) {
            *slot = c;
            self.n += 1;
        }
    }
}

/// Clips `n` bytes of `buf` to PostgreSQL's identifier length at a character boundary.
fn truncate_ident(buf: &[u8], n: usize) -> usize {
    if n <= MAX_IDENT {
        return n;
    }
    let mut cut = MAX_IDENT;
    while cut > 0 && buf.get(cut).is_some_and(|&c| c & 0xC0 == 0x80) {
        cut -= 1;
    }
    cut
}

fn is_ident(k: K) -> bool {
    matches!(k, K::Word | K::QIdent | K::UIdent)
}

fn is_lit(k: K) -> bool {
    matches!(k, K::Str | K::EStr | K::UStr | K::BStr | K::Dollar)
}

/// A literal whose value is text (not a bit string).
fn is_text_lit(k: K) -> bool {
    matches!(k, K::Str | K::EStr | K::UStr | K::Dollar)
}

/// Like [`ident_into`], with an unquoted word folded to lower case, as PostgreSQL folds it.
fn ident_folded(src: &[u8], t: &Tok, buf: &mut [u8; 64]) -> usize {
    let n = ident_into(src, t, buf);
    if t.k == K::Word {
        buf[..n].make_ascii_lowercase();
    }
    n
}

/// Writes an identifier's name (unquoted, unescaped, truncated; case kept) into `buf`.
fn ident_into(src: &[u8], t: &Tok, buf: &mut [u8; 64]) -> usize {
    let mut out = Ident64 { buf, n: 0 };
    match t.k {
        K::Word => {
            for &c in src.get(t.s()..t.e()).unwrap_or_default().iter().take(64) {
                out.put(c);
            }
        }
        K::QIdent => {
            let end = if t.term {
                t.e().saturating_sub(1)
            } else {
                t.e()
            };
            let inner = src.get(t.s() + 1..end).unwrap_or_default();
            undouble(inner, b'"', &mut out, 64);
        }
        K::UIdent => {
            let end = if t.term {
                t.e().saturating_sub(1)
            } else {
                t.e()
            };
            let inner = src.get(t.s() + 3..end).unwrap_or_default();
            let mut raw = Vec::new();
            undouble(inner, b'"', &mut raw, usize::MAX);
            unescape_unicode(&raw, t.aux() as u8, &mut out);
        }
        _ => {}
    }
    let n = out.n;
    truncate_ident(buf, n)
}

/// Copies `inner`, turning each doubled `q` into one, stopping after `limit` bytes.
fn undouble<S: Sink>(inner: &[u8], q: u8, out: &mut S, limit: usize) {
    let mut i = 0;
    let mut n = 0;
    while let Some(&c) = inner.get(i) {
        if n >= limit {
            return;
        }
        out.put(c);
        n += 1;
        i += if c == q && inner.get(i + 1) == Some(&q) {
            2
        } else {
            1
        };
    }
}

/// Decodes a literal token's value into `out`.
fn decode_lit<S: Sink>(src: &[u8], t: &Tok, out: &mut S) {
    match t.k {
        K::Dollar => {
            let from = t.s().saturating_add(t.aux());
            let to = if t.term {
                t.e().saturating_sub(t.aux())
            } else {
                t.e()
            };
            if let Some(body) = src.get(from..to) {
                for &c in body {
                    out.put(c);
                }
            }
        }
        K::Str => segments(src, t, Q::Std, out),
        K::EStr => segments(src, t, Q::Esc, out),
        K::BStr => segments(src, t, Q::Bit, out),
        K::UStr => {
            let mut raw = Vec::new();
            segments(src, t, Q::Std, &mut raw);
            unescape_unicode(&raw, t.aux() as u8, out);
        }
        _ => {}
    }
}

/// Decodes the quoted segments of a `'…'` literal (one, or several joined by continuations).
fn segments<S: Sink>(src: &[u8], t: &Tok, q: Q, out: &mut S) {
    let end = t.e().min(src.len());
    let at = |i: usize| if i < end { src[i] } else { 0 };
    let Some(mut p) = src
        .get(t.s()..end)
        .and_then(|r| r.iter().position(|&c| c == b'\''))
        .map(|o| t.s() + o)
    else {
        return;
    };
    while p < end && at(p) == b'\'' {
        p += 1;
        loop {
            if p >= end {
                return;
            }
            let c = at(p);
            if c == b'\'' {
                if q != Q::Bit && at(p + 1) == b'\'' {
                    out.put(b'\'');
                    p += 2;
                    continue;
                }
                p += 1;
                break;
            }
            if c == b'\\' && q == Q::Esc {
                p = unescape_backslash(src, p, end, out);
                continue;
            }
            out.put(c);
            p += 1;
        }
        // Whitespace and `--` comments up to the next segment's quote.
        while p < end && at(p) != b'\'' {
            if at(p) == b'-' && at(p + 1) == b'-' {
                while p < end && at(p) != b'\n' && at(p) != b'\r' {
                    p += 1;
                }
            } else {
                p += 1;
            }
        }
    }
}

fn hex(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// Reads `n` hex digits at `i`, all within `end`.
fn hex_n(src: &[u8], i: usize, n: usize, end: usize) -> Option<u32> {
    if i + n > end {
        return None;
    }
    let mut v = 0u32;
    for k in 0..n {
        v = (v << 4) | hex(*src.get(i + k)?)?;
    }
    Some(v)
}

fn put_char<S: Sink>(cp: u32, out: &mut S) {
    let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    for &c in ch.encode_utf8(&mut buf).as_bytes() {
        out.put(c);
    }
}

/// Joins a UTF-16 surrogate pair when `second` is a low surrogate.
fn surrogate(first: u32, second: Option<u32>) -> Option<u32> {
    let lo = second?;
    if (0xD800..0xDC00).contains(&first) && (0xDC00..0xE000).contains(&lo) {
        Some(0x10000 + ((first - 0xD800) << 10) + (lo - 0xDC00))
    } else {
        None
    }
}

/// One backslash escape of an `E'…'` string at `p`; returns where decoding continues.
fn unescape_backslash<S: Sink>(src: &[u8], p: usize, end: usize, out: &mut S) -> usize {
    let at = |i: usize| if i < end { src[i] } else { 0 };
    if p + 1 >= end {
        return end;
    }
    let c = at(p + 1);
    match c {
        b'b' => out.put(0x08),
        b'f' => out.put(0x0c),
        b'n' => out.put(b'\n'),
        b'r' => out.put(b'\r'),
        b't' => out.put(b'\t'),
        b'0'..=b'7' => {
            let mut v = 0u32;
            let mut i = p + 1;
            while i < end && i < p + 4 && (b'0'..=b'7').contains(&at(i)) {
                v = v * 8 + u32::from(at(i) - b'0');
                i += 1;
            }
            out.put((v & 0xff) as u8);
            return i;
        }
        b'x' if hex(at(p + 2)).is_some() => {
            let mut v = 0u32;
            let mut i = p + 2;
            while i < end && i < p + 4 {
                match hex(at(i)) {
                    Some(d) => v = v * 16 + d,
                    None => break,
                }
                i += 1;
            }
            out.put((v & 0xff) as u8);
            return i;
        }
        b'u' | b'U' => {
            let n = if c == b'u' { 4 } else { 8 };
            if let Some(cp) = hex_n(src, p + 2, n, end) {
                let next = p + 2 + n;
                let low = if at(next) == b'\\' && at(next + 1) == b'u' {
                    hex_n(src, next + 2, 4, end)
                } else {
                    None
                };
                if let Some(joined) = surrogate(cp, low) {
                    put_char(joined, out);
                    return next + 6;
                }
                put_char(cp, out);
                return next;
            }
            out.put(c);
        }
        _ => out.put(c),
    }
    p + 2
}

/// Applies `U&` escapes (`\XXXX`, `\+XXXXXX`, doubled escape) with escape byte `esc`.
fn unescape_unicode<S: Sink>(raw: &[u8], esc: u8, out: &mut S) {
    let end = raw.len();
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if esc == 0 || c != esc {
            out.put(c);
            i += 1;
            continue;
        }
        if raw.get(i + 1) == Some(&esc) {
            out.put(esc);
            i += 2;
            continue;
        }
        let (cp, next) = if raw.get(i + 1) == Some(&b'+') {
            (hex_n(raw, i + 2, 6, end), i + 8)
        } else {
            (hex_n(raw, i + 1, 4, end), i + 5)
        };
        let Some(cp) = cp else {
            out.put(c);
            i += 1;
            continue;
        };
        if (0xD800..0xDC00).contains(&cp) && raw.get(next) == Some(&esc) {
            let (low, after) = if raw.get(next + 1) == Some(&b'+') {
                (hex_n(raw, next + 2, 6, end), next + 8)
            } else {
                (hex_n(raw, next + 1, 4, end), next + 5)
            };
            if let Some(joined) = surrogate(cp, low) {
                put_char(joined, out);
                i = after;
                continue;
            }
        }
        put_char(cp, out);
        i = next;
    }
}

/// A literal's value as a string (lossy only for invalid UTF-8 from `\x` escapes).
fn lit_string(src: &[u8], t: &Tok) -> String {
    let mut v = Vec::new();
    decode_lit(src, t, &mut v);
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// A literal's value as bytes, borrowed when it needs no decoding.
fn lit_bytes<'s>(src: &'s [u8], t: &Tok) -> Cow<'s, [u8]> {
    if t.k == K::Dollar {
        let from = t.s().saturating_add(t.aux());
        let to = if t.term {
            t.e().saturating_sub(t.aux())
        } else {
            t.e()
        };
        return Cow::Borrowed(src.get(from..to).unwrap_or_default());
    }
    let mut v = Vec::new();
    decode_lit(src, t, &mut v);
    Cow::Owned(v)
}

/// ASCII case-insensitive substring search.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let first = first.to_ascii_lowercase();
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let Some(off) = hay
            .get(i..)
            .and_then(|r| r.iter().position(|c| c.to_ascii_lowercase() == first))
        else {
            return false;
        };
        i += off;
        if hay
            .get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        {
            return true;
        }
        i += 1;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Matching names
// ---------------------------------------------------------------------------------------------

/// The settings the rules guard, in priority order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Tenant,
    /// `tenantgate.signature`: a client that could set it could try forged signatures; guarded
    /// like the tenant setting (with or without signing), never a tenant switch.
    Signature,
    Role,
    SessionAuth,
    RowSecurity,
}

const TARGETS: [Target; 5] = [
    Target::Tenant,
    Target::Signature,
    Target::Role,
    Target::SessionAuth,
    Target::RowSecurity,
];

/// An incremental ASCII case-insensitive equality test.
#[derive(Clone, Copy)]
struct Ci<'t> {
    t: &'t [u8],
    i: usize,
    ok: bool,
}

impl<'t> Ci<'t> {
    fn new(t: &'t [u8]) -> Self {
        Ci { t, i: 0, ok: true }
    }

    #[inline]
    fn put(&mut self, c: u8) {
        if self.ok {
            match self.t.get(self.i) {
                Some(x) if x.eq_ignore_ascii_case(&c) => self.i += 1,
                _ => self.ok = false,
            }
        }
    }

    fn done(&self) -> bool {
        self.ok && self.i == self.t.len()
    }
}

/// Compares one name against every guarded setting at once.
struct NameMatch<'t> {
    m: [Ci<'t>; 5],
}

impl<'t> NameMatch<'t> {
    fn new(setting: &'t [u8]) -> Self {
        NameMatch {
            m: [
                Ci::new(setting),
                Ci::new(crate::signing::SIGNATURE_SETTING.as_bytes()),
                Ci::new(b"role"),
                Ci::new(b"session_authorization"),
                Ci::new(b"row_security"),
            ],
        }
    }

    fn result(&self) -> Option<Target> {
        TARGETS
            .iter()
            .zip(self.m.iter())
            .find(|(_, m)| m.done())
            .map(|(t, _)| *t)
    }
}

impl Sink for NameMatch<'_> {
    fn put(&mut self, c: u8) {
        for m in &mut self.m {
            m.put(c);
        }
    }
}

fn kw(src: &[u8], t: Option<Tok>, k: &[u8]) -> bool {
    match t {
        Some(t) if t.k == K::Word && t.e() - t.s() == k.len() => src
            .get(t.s()..t.e())
            .is_some_and(|w| w.eq_ignore_ascii_case(k)),
        _ => false,
    }
}

fn is(t: Option<Tok>, k: K) -> bool {
    matches!(t, Some(t) if t.k == k)
}

fn op_is(src: &[u8], t: Option<Tok>, ops: &[&[u8]]) -> bool {
    match t {
        Some(t) if t.k == K::Op => src.get(t.s()..t.e()).is_some_and(|o| ops.contains(&o)),
        _ => false,
    }
}

const CMP_OPS: &[&[u8]] = &[b"=", b"<>", b"!="];

/// A `Word` of up to 16 bytes packed into an integer with ASCII letters lower-cased, for fast
/// keyword dispatch; 0 for anything else. Setting bit 5 lower-cases letters and maps no other
/// identifier byte (digit, `_`, `$`, non-ASCII) onto a letter, so keys of letter-only keywords
/// compare exactly.
fn key(src: &[u8], t: Option<Tok>) -> u128 {
    let Some(t) = t.filter(|t| t.k == K::Word && t.e() - t.s() <= 16) else {
        return 0;
    };
    let len = t.e() - t.s();
    let mask = u128::MAX.checked_shr(8 * (16 - len as u32)).unwrap_or(0);
    let mut buf = [0u8; 16];
    match src.get(t.s()..t.s() + 16) {
        // Usually 16 bytes follow the word's start: one unaligned load, then mask.
        Some(w) => buf.copy_from_slice(w),
        None => {
            for (d, c) in buf
                .iter_mut()
                .zip(src.get(t.s()..t.e()).unwrap_or_default())
            {
                *d = *c;
            }
        }
    }
    (u128::from_le_bytes(buf) & mask) | (mask & 0x2020_2020_2020_2020_2020_2020_2020_2020)
}

/// The key of a lower-case keyword (see `key`).
const fn kw_key(w: &[u8]) -> u128 {
    let mut k = 0u128;
    let mut i = 0;
    while i < w.len() && i < 16 {
        k |= (w[i] as u128) << (8 * i);
        i += 1;
    }
    k
}

/// `FILTER[first letter] >> length & 1`: whether a word may have a rule of its own (`as`, `set`,
/// `reset`, `update`, `ts_stat`, `password`, `set_config`, `query_to_xml…`). A false positive
/// only costs the full comparison.
static FILTER: [u64; 32] = word_filter();

const fn word_filter() -> [u64; 32] {
    const WORDS: [&[u8]; 14] = [
        b"as",
        b"pg_advisory_lock",
        b"pg_try_advisory_lock",
        b"pg_advisory_lock_shared",
        b"pg_try_advisory_lock_shared",
        b"set",
        b"reset",
        b"update",
        b"ts_stat",
        b"password",
        b"set_config",
        b"query_to_xml",
        b"query_to_xmlschema",
        b"query_to_xml_and_xmlschema",
    ];
    let mut t = [0u64; 32];
    let mut i = 0;
    while i < WORDS.len() {
        let w = WORDS[i];
        t[(w[0] & 31) as usize] |= 1 << w.len();
        i += 1;
    }
    t
}

/// Whether a word starting with `first` (lower-cased) of `len` bytes may have a rule.
#[inline(always)]
fn special_word(first: u8, len: usize) -> bool {
    len > 63 || (FILTER[(first & 31) as usize] >> len) & 1 != 0
}

/// Keyword keys for statement heads.
mod kk {
    use super::kw_key;
    pub const SET: u128 = kw_key(b"set");
    pub const RESET: u128 = kw_key(b"reset");
    pub const DO: u128 = kw_key(b"do");
    pub const ALTER: u128 = kw_key(b"alter");
    pub const CREATE: u128 = kw_key(b"create");
    pub const DROP: u128 = kw_key(b"drop");
    pub const VACUUM: u128 = kw_key(b"vacuum");
    pub const REINDEX: u128 = kw_key(b"reindex");
    pub const CLUSTER: u128 = kw_key(b"cluster");
    pub const COMMIT: u128 = kw_key(b"commit");
    pub const ROLLBACK: u128 = kw_key(b"rollback");
    pub const BEGIN: u128 = kw_key(b"begin");
    pub const END: u128 = kw_key(b"end");
    pub const ABORT: u128 = kw_key(b"abort");
    pub const SAVEPOINT: u128 = kw_key(b"savepoint");
    pub const RELEASE: u128 = kw_key(b"release");
    pub const START: u128 = kw_key(b"start");
    pub const PREPARE: u128 = kw_key(b"prepare");
    pub const EXECUTE: u128 = kw_key(b"execute");
    pub const EXPLAIN: u128 = kw_key(b"explain");
    pub const DEALLOCATE: u128 = kw_key(b"deallocate");
    pub const DISCARD: u128 = kw_key(b"discard");
    pub const LISTEN: u128 = kw_key(b"listen");
    pub const DECLARE: u128 = kw_key(b"declare");
    pub const TEMP: u128 = kw_key(b"temp");
    pub const TEMPORARY: u128 = kw_key(b"temporary");
    pub const GLOBAL: u128 = kw_key(b"global");
    pub const LOCAL: u128 = kw_key(b"local");
    pub const TABLE: u128 = kw_key(b"table");
    pub const ROLE: u128 = kw_key(b"role");
    pub const USER: u128 = kw_key(b"user");
    pub const GROUP: u128 = kw_key(b"group");
    pub const DATABASE: u128 = kw_key(b"database");
    pub const SYSTEM: u128 = kw_key(b"system");
    pub const FUNCTION: u128 = kw_key(b"function");
    pub const PROCEDURE: u128 = kw_key(b"procedure");
    pub const ROUTINE: u128 = kw_key(b"routine");
    pub const POLICY: u128 = kw_key(b"policy");
    pub const SUBSCRIPTION: u128 = kw_key(b"subscription");
    pub const TABLESPACE: u128 = kw_key(b"tablespace");
    pub const UNIQUE: u128 = kw_key(b"unique");
    pub const INDEX: u128 = kw_key(b"index");
}

/// A dotted name (`app.tenant_id`, `"app"."tenant_id"`, `role`) read from a token stream.
struct Name {
    target: Option<Target>,
    /// The token after the name.
    after: Option<Tok>,
    /// End of the name's last part.
    end: usize,
    parts: usize,
}

fn read_name(src: &[u8], setting: &[u8], first: Tok, la: &mut Lexer<'_>) -> Name {
    let mut m = NameMatch::new(setting);
    let mut t = first;
    let mut parts = 0;
    let mut end = first.e();
    loop {
        if !is_ident(t.k) {
            return Name {
                target: None,
                after: Some(t),
                end,
                parts,
            };
        }
        let mut buf = [0u8; 64];
        let n = ident_into(src, &t, &mut buf);
        if parts > 0 {
            m.put(b'.');
        }
        for &c in buf.get(..n).unwrap_or_default() {
            m.put(c);
        }
        parts += 1;
        end = t.e();
        let after = la.next();
        if !is(after, K::Dot) {
            return Name {
                target: m.result(),
                after,
                end,
                parts,
            };
        }
        match la.next() {
            Some(x) => t = x,
            None => {
                return Name {
                    target: None,
                    after: None,
                    end,
                    parts,
                }
            }
        }
    }
}

/// What follows `SET` or `RESET` (in a statement, an `ALTER … SET` clause or a function body).
#[derive(Default)]
struct SetClause {
    target: Option<Target>,
    /// The first token of the setting (for `TABLESPACE`, `TRANSACTION`, `ALL`).
    first: Option<Tok>,
    /// The token after the name, if it was read.
    after: Option<Tok>,
    end: usize,
    local: bool,
    /// Followed by `=` or `TO`.
    assign: bool,
    parts: usize,
}

fn set_clause(src: &[u8], setting: &[u8], la: &mut Lexer<'_>, scope: bool) -> SetClause {
    let mut c = SetClause::default();
    let mut t = la.next();
    if scope && (kw(src, t, b"session") || kw(src, t, b"local")) {
        let mut la2 = la.clone();
        let u = la2.next();
        let keep = is(u, K::Dot)
            || (kw(src, t, b"session")
                && (kw(src, u, b"authorization") || kw(src, u, b"characteristics")));
        if !keep {
            c.local = kw(src, t, b"local");
            *la = la2;
            t = u;
        }
    }
    let Some(first) = t else {
        return c;
    };
    c.first = Some(first);
    c.end = first.e();
    if kw(src, t, b"session") {
        let mut la2 = la.clone();
        let u = la2.next();
        if let Some(u) = u.filter(|_| kw(src, u, b"authorization")) {
            *la = la2;
            c.target = Some(Target::SessionAuth);
            c.end = u.e();
            return c;
        }
    }
    let n = read_name(src, setting, first, la);
    c.target = n.target;
    c.after = n.after;
    c.end = n.end.max(c.end);
    c.parts = n.parts;
    c.assign = op_is(src, n.after, &[b"="]) || kw(src, n.after, b"to");
    c
}

/// The value of `SET <setting> = value`: one literal, word or number, else `None`.
fn set_value(src: &[u8], la: &mut Lexer<'_>) -> Option<String> {
    let mut v = la.next()?;
    let mut minus = false;
    if v.k == K::Op && matches!(src.get(v.s()..v.e()), Some(b"-" | b"+")) {
        minus = src.get(v.s()) == Some(&b'-');
        v = la.next().filter(|n| n.k == K::Num)?;
    }
    let text = match v.k {
        k if is_text_lit(k) => lit_string(src, &v),
        K::Word => {
            if kw(src, Some(v), b"default") {
                return None;
            }
            let w = src.get(v.s()..v.e())?;
            let n = truncate_ident(w, w.len());
            String::from_utf8_lossy(w.get(..n)?).to_ascii_lowercase()
        }
        K::QIdent | K::UIdent => {
            let mut buf = [0u8; 64];
            let n = ident_into(src, &v, &mut buf);
            String::from_utf8_lossy(buf.get(..n)?).into_owned()
        }
        K::Num => {
            let digits = String::from_utf8_lossy(src.get(v.s()..v.e())?);
            if minus {
                format!("-{digits}")
            } else {
                digits.into_owned()
            }
        }
        _ => return None,
    };
    match la.next() {
        None => Some(text),
        Some(t) if t.k == K::Semi => Some(text),
        Some(_) => None,
    }
}

/// Skips a type name after `::` or `AS`; returns the token after it.
fn skip_type(src: &[u8], la: &mut Lexer<'_>) -> Option<Tok> {
    let mut t = la.next();
    if !t.is_some_and(|t| is_ident(t.k)) {
        return t;
    }
    for _ in 0..SKIP_LIMIT {
        t = la.next();
        match t {
            Some(x) if x.k == K::Dot => {
                t = la.next();
                if !t.is_some_and(|t| is_ident(t.k)) {
                    return t;
                }
            }
            Some(x) if x.k == K::LParen => {
                skip_group(la, K::RParen);
            }
            Some(x) if x.k == K::LBrack => {
                skip_group(la, K::RBrack);
            }
            Some(x)
                if x.k == K::Word
                    && [
                        &b"varying"[..],
                        b"precision",
                        b"with",
                        b"without",
                        b"time",
                        b"zone",
                    ]
                    .iter()
                    .any(|k| kw(src, Some(x), k)) => {}
            _ => return t,
        }
    }
    t
}

/// Skips to the `close` token that ends a group just opened (bounded).
fn skip_group(la: &mut Lexer<'_>, close: K) {
    for _ in 0..SKIP_LIMIT {
        match la.next() {
            Some(t) if t.k == close => return,
            Some(t) if t.k == K::Semi => return,
            None => return,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Function and DO bodies
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum BodyHit {
    SetConfig,
    Sets(Target),
}

/// Searches a function or `DO` body for `set_config` or a `SET`/`RESET` of a guarded setting at
/// a statement start, also in string literals nested in it.
fn scan_body(body: &[u8], o: &Opts<'_>, depth: u32) -> Option<BodyHit> {
    if contains_ci(body, b"set_config") {
        return Some(BodyHit::SetConfig);
    }
    let mut lx = Lexer::new(body, o.scs);
    let mut start = true;
    while let Some(t) = lx.next() {
        let set = kw(body, Some(t), b"set");
        if start && (set || kw(body, Some(t), b"reset")) {
            let mut la = lx.clone();
            if let Some(target) = set_clause(body, o.setting, &mut la, set).target {
                return Some(BodyHit::Sets(target));
            }
        }
        if depth < MAX_BODY_DEPTH && is_text_lit(t.k) {
            let inner = lit_bytes(body, &t);
            if let Some(hit) = scan_body(&inner, o, depth + 1) {
                return Some(hit);
            }
        }
        start = match t.k {
            K::Semi => true,
            K::Word => [
                &b"begin"[..],
                b"then",
                b"else",
                b"loop",
                b"atomic",
                b"declare",
            ]
            .iter()
            .any(|k| kw(body, Some(t), k)),
            K::Op => op_is(body, Some(t), &[b">>"]),
            _ => false,
        };
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The inspector
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Opts<'o> {
    setting: &'o [u8],
    column: &'o [u8],
    scs: bool,
}

/// Per top-level statement state.
#[derive(Default)]
struct Stmt {
    /// The next token starts a statement: a top-level one if `!active`, else one inside a
    /// `BEGIN ATOMIC` body.
    head_pending: bool,
    active: bool,
    start: usize,
    end: usize,
    /// Index of this statement's first finding.
    first: usize,
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`: may hold a `BEGIN ATOMIC` body.
    routine: bool,
    /// Nesting of `BEGIN ATOMIC … END` bodies.
    atomic: u32,
    /// Open `CASE`s in the current statement of a body: an `END` that does not start a
    /// statement closes one of them (or is a column label); the `END` closing the body always
    /// starts one (the grammar puts a `;` or `ATOMIC` before it).
    cases: u32,
    /// The current (inner) statement is a SET-like one: its names are not column comparisons.
    lit_off: bool,
    /// `UPDATE pg_settings` was already reported for this statement.
    pg_settings: bool,
    /// Tokens before this offset were read by a tenant-column comparison.
    fwd_hi: usize,
    /// What the previous token was, as `P_*` bits.
    prev: u8,
}

impl Stmt {
    fn new() -> Stmt {
        Stmt {
            head_pending: true,
            ..Stmt::default()
        }
    }
}

/// The previous token was `.` or `AS`: the next word is a name, not a keyword.
const P_LABEL: u8 = 1;
/// The previous token was `BEGIN` (of a possible `BEGIN ATOMIC`).
const P_BEGIN: u8 = 2;
/// The previous token was `SET` or `RESET`.
const P_SET: u8 = 4;
/// The previous token was a name part following `SET`/`RESET` (`SET a`, `SET a.b`).
const P_PART: u8 = 8;
/// The previous token was a dot inside such a name (`SET a.`): a column name here is a setting
/// name, not a column.
const P_DOT: u8 = 16;

/// Where a `SET` clause appeared, for the finding's text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Role,
    Database,
    System,
    Function,
}

fn rule_of(t: Target) -> Rule {
    match t {
        Target::Tenant | Target::Signature => Rule::TenantTamper,
        Target::Role | Target::SessionAuth => Rule::RoleTamper,
        Target::RowSecurity => Rule::RlsTamper,
    }
}

fn clause_detail(ctx: Ctx, t: Target) -> &'static str {
    match (ctx, t) {
        (Ctx::Role, Target::Tenant) => "ALTER ROLE ... SET of the tenant setting",
        (Ctx::Role, Target::Signature) => "ALTER ROLE ... SET of the tenant signature",
        (Ctx::Role, Target::Role) => "ALTER ROLE ... SET role",
        (Ctx::Role, Target::SessionAuth) => "ALTER ROLE ... SET session_authorization",
        (Ctx::Role, Target::RowSecurity) => "ALTER ROLE ... SET row_security",
        (Ctx::Database, Target::Tenant) => "ALTER DATABASE ... SET of the tenant setting",
        (Ctx::Database, Target::Signature) => "ALTER DATABASE ... SET of the tenant signature",
        (Ctx::Database, Target::Role) => "ALTER DATABASE ... SET role",
        (Ctx::Database, Target::SessionAuth) => "ALTER DATABASE ... SET session_authorization",
        (Ctx::Database, Target::RowSecurity) => "ALTER DATABASE ... SET row_security",
        (Ctx::System, Target::Tenant) => "ALTER SYSTEM SET of the tenant setting",
        (Ctx::System, Target::Signature) => "ALTER SYSTEM SET of the tenant signature",
        (Ctx::System, Target::Role) => "ALTER SYSTEM SET role",
        (Ctx::System, Target::SessionAuth) => "ALTER SYSTEM SET session_authorization",
        (Ctx::System, Target::RowSecurity) => "ALTER SYSTEM SET row_security",
        (Ctx::Function, Target::Tenant) => "function SET clause of the tenant setting",
        (Ctx::Function, Target::Signature) => "function SET clause of the tenant signature",
        (Ctx::Function, Target::Role) => "function SET clause of role",
        (Ctx::Function, Target::SessionAuth) => "function SET clause of session_authorization",
        (Ctx::Function, Target::RowSecurity) => "function SET clause of row_security",
    }
}

fn body_finding(hit: BodyHit, do_block: bool) -> (Rule, &'static str) {
    match (hit, do_block) {
        (BodyHit::SetConfig, false) => (Rule::TenantTamper, "function body calls set_config"),
        (BodyHit::SetConfig, true) => (Rule::TenantTamper, "DO block calls set_config"),
        (BodyHit::Sets(Target::Tenant), false) => {
            (Rule::TenantTamper, "function body sets the tenant setting")
        }
        (BodyHit::Sets(Target::Tenant), true) => {
            (Rule::TenantTamper, "DO block sets the tenant setting")
        }
        (BodyHit::Sets(Target::Signature), false) => (
            Rule::TenantTamper,
            "function body sets the tenant signature",
        ),
        (BodyHit::Sets(Target::Signature), true) => {
            (Rule::TenantTamper, "DO block sets the tenant signature")
        }
        (BodyHit::Sets(Target::Role | Target::SessionAuth), false) => {
            (Rule::RoleTamper, "function body sets role")
        }
        (BodyHit::Sets(Target::Role | Target::SessionAuth), true) => {
            (Rule::RoleTamper, "DO block sets role")
        }
        (BodyHit::Sets(Target::RowSecurity), false) => {
            (Rule::RlsTamper, "function body sets row_security")
        }
        (BodyHit::Sets(Target::RowSecurity), true) => {
            (Rule::RlsTamper, "DO block sets row_security")
        }
    }
}

const LITERAL_DETAIL: &str = "string literal compared with the tenant column";

struct Cx<'a, 'o> {
    src: &'a [u8],
    o: Opts<'o>,
    depth: u32,
    out: Inspection,
    /// A top-level `RESET ALL` ended: any further statement gets `RESET_NOT_LAST`.
    reset_pending: bool,
}

fn run(src: &[u8], o: Opts<'_>, depth: u32) -> Inspection {
    let mut cx = Cx {
        src,
        o,
        depth,
        out: Inspection::default(),
        reset_pending: false,
    };
    let mut lx = Lexer::new(src, o.scs);
    let mut st = Stmt::new();
    while let Some(t) = lx.next_inline() {
        if t.k == K::Semi {
            if st.atomic > 0 {
                st.head_pending = true;
                st.cases = 0;
                st.prev = 0;
                continue;
            }
            cx.finish(&mut st);
            continue;
        }
        let inner_head = st.head_pending && st.active;
        if st.head_pending {
            st.head_pending = false;
            if st.active {
                cx.head(&mut st, t, lx.clone(), false);
            } else {
                if cx.reset_pending {
                    cx.out.flags |= Flags::RESET_NOT_LAST;
                }
                st.active = true;
                st.start = t.s();
                st.first = cx.out.findings.len();
                st.routine = cx.head(&mut st, t, lx.clone(), true);
            }
        }
        st.end = lx.pos;
        cx.token(&mut st, t, &lx, inner_head);
    }
    cx.finish(&mut st);
    cx.out
}

impl<'a> Cx<'a, '_> {
    fn kw(&self, t: Option<Tok>, k: &[u8]) -> bool {
        kw(self.src, t, k)
    }

    /// A role option that bypasses RLS (`BYPASSRLS`, `SUPERUSER`) in CREATE/ALTER ROLE.
    fn privileged_role_option(
        &mut self,
        st: &Stmt,
        t: Tok,
        bypassrls: &'static str,
        superuser: &'static str,
    ) {
        if self.kw(Some(t), b"bypassrls") {
            self.push(st, Rule::RlsTamper, bypassrls, None, t.s()..t.e());
        } else if self.kw(Some(t), b"superuser") {
            self.push(st, Rule::RlsTamper, superuser, None, t.s()..t.e());
        }
    }

    fn flag(&mut self, top: bool, f: Flags) {
        self.flag_if(top, true, f);
    }

    fn flag_if(&mut self, top: bool, cond: bool, f: Flags) {
        if top && cond {
            self.out.flags |= f;
        }
    }

    fn push(
        &mut self,
        st: &Stmt,
        rule: Rule,
        detail: &'static str,
        value: Option<String>,
        span: Range<usize>,
    ) {
        self.out.findings.push(Finding {
            rule,
            statement: st.start..st.start,
            span,
            detail,
            value,
        });
    }

    fn finish(&mut self, st: &mut Stmt) {
        if st.active {
            self.out.statements = self.out.statements.saturating_add(1);
            if let Some(found) = self.out.findings.get_mut(st.first..) {
                for f in found.iter_mut() {
                    f.statement = st.start..st.end;
                }
                if found.len() > 1 {
                    found.sort_by_key(|f| f.span.start);
                }
            }
        }
        *st = Stmt::new();
    }

    // ----- per token -----

    #[inline(always)]
    fn token(&mut self, st: &mut Stmt, t: Tok, lx: &Lexer<'a>, inner_head: bool) {
        st.prev = match t.k {
            K::Word => self.word(st, t, lx, inner_head),
            K::QIdent | K::UIdent => {
                // A closed "…" without "" inside names itself: no copy needed.
                let src = self.src;
                let inner = match t.k {
                    K::QIdent if t.term && t.extra == 0 => src.get(t.s() + 1..t.e() - 1),
                    _ => None,
                }
                .filter(|w| w.len() <= MAX_IDENT);
                if let Some(name) = inner {
                    self.names(st, t, name, lx);
                } else {
                    let mut buf = [0u8; 64];
                    let n = ident_into(self.src, &t, &mut buf);
                    self.names(st, t, buf.get(..n).unwrap_or_default(), lx);
                }
                if st.prev & (P_SET | P_PART | P_DOT) != 0 {
                    P_PART
                } else {
                    0
                }
            }
            K::Dot if st.prev & P_PART != 0 => P_LABEL | P_DOT,
            K::Dot => P_LABEL,
            K::Str | K::EStr | K::UStr | K::BStr | K::Dollar => {
                self.literal(st, t, lx);
                0
            }
            _ => 0,
        };
    }

    /// A keyword or unquoted identifier; returns the `P_*` bits for the next token.
    #[inline(always)]
    fn word(&mut self, st: &mut Stmt, t: Tok, lx: &Lexer<'a>, inner_head: bool) -> u8 {
        let src = self.src;
        let w = src.get(t.s()..t.e()).unwrap_or_default();
        let mut prev = if st.prev & (P_SET | P_PART | P_DOT) != 0 {
            P_PART
        } else {
            0
        };
        // Most words have no rule: skip them on their first letter and length alone.
        let first = w.first().map_or(0, |c| c | 0x20);
        let col = self.o.column;
        let maybe_col = w.len() == col.len() && col.first().is_some_and(|c| c | 0x20 == first);
        if !maybe_col
            && !st.routine
            && !special_word(first, w.len())
            && !catalog::maybe_catalog_word(w)
        {
            return prev;
        }
        if w.len() > MAX_IDENT {
            let n = truncate_ident(w, w.len());
            self.names(st, t, w.get(..n).unwrap_or_default(), lx);
        } else {
            self.names(st, t, w, lx);
        }
        match w.len() {
            2 if w.eq_ignore_ascii_case(b"as") => prev |= P_LABEL,
            3 if w.eq_ignore_ascii_case(b"set") => prev = P_SET,
            5 if w.eq_ignore_ascii_case(b"reset") => prev = P_SET,
            _ => {}
        }
        if st.routine {
            prev |= self.atomic_body(st, w, inner_head);
        }
        prev
    }

    /// Tracks `BEGIN ATOMIC … END` in a routine definition; returns `P_BEGIN` after `BEGIN`.
    #[cold]
    #[inline(never)]
    fn atomic_body(&mut self, st: &mut Stmt, w: &[u8], inner_head: bool) -> u8 {
        let label = st.prev & P_LABEL != 0;
        if st.prev & P_BEGIN != 0 && w.eq_ignore_ascii_case(b"atomic") {
            st.atomic = st.atomic.saturating_add(1);
            st.cases = 0;
            st.head_pending = true;
        } else if st.atomic > 0 && !label {
            if w.eq_ignore_ascii_case(b"case") {
                st.cases = st.cases.saturating_add(1);
            } else if w.eq_ignore_ascii_case(b"end") {
                if inner_head {
                    st.atomic -= 1;
                    st.cases = 0;
                } else {
                    st.cases = st.cases.saturating_sub(1);
                }
            }
        }
        if !label && w.eq_ignore_ascii_case(b"begin") {
            P_BEGIN
        } else {
            0
        }
    }

    /// Rules keyed on a name (keyword or identifier, quoted or not).
    #[inline(always)]
    fn names(&mut self, st: &mut Stmt, t: Tok, name: &[u8], lx: &Lexer<'a>) {
        let col = self.o.column;
        if name.len() == col.len()
            && !col.is_empty()
            && !st.lit_off
            && st.prev & P_DOT == 0
            && name.eq_ignore_ascii_case(col)
        {
            self.column_literal(st, lx.clone());
        }
        match name.len() {
            6 if t.k == K::Word && !st.pg_settings && name.eq_ignore_ascii_case(b"update") => {
                self.pg_settings(st, t, lx.clone())
            }
            7 if name.eq_ignore_ascii_case(b"ts_stat") => self.dynamic_sql(st, t, lx.clone()),
            8 if name.eq_ignore_ascii_case(b"password") => self.out.flags |= Flags::CONTAINS_SECRET,
            10 if name.eq_ignore_ascii_case(b"set_config") => self.set_config(st, t, lx.clone()),
            16 | 20 | 23 | 27
                if name.eq_ignore_ascii_case(b"pg_advisory_lock")
                    || name.eq_ignore_ascii_case(b"pg_try_advisory_lock")
                    || name.eq_ignore_ascii_case(b"pg_advisory_lock_shared")
                    || name.eq_ignore_ascii_case(b"pg_try_advisory_lock_shared") =>
            {
                self.out.flags |= Flags::SESSION_LOCK
            }
            12 | 18 | 26
                if name.eq_ignore_ascii_case(b"query_to_xml")
                    || name.eq_ignore_ascii_case(b"query_to_xmlschema")
                    || name.eq_ignore_ascii_case(b"query_to_xml_and_xmlschema") =>
            {
                self.dynamic_sql(st, t, lx.clone())
            }
            _ => {}
        }
        if catalog::maybe_catalog_word(name) {
            self.catalog_name(st, t, name, lx);
        }
    }

    fn literal(&mut self, st: &mut Stmt, t: Tok, lx: &Lexer<'a>) {
        if !st.lit_off && !self.o.column.is_empty() && t.s() >= st.fwd_hi {
            self.literal_column(st, t, lx.clone());
        }
        self.catalog_literal(st, t);
        if self
            .src
            .get(t.s()..t.e())
            .is_some_and(|raw| contains_ci(raw, b"password"))
        {
            self.out.flags |= Flags::CONTAINS_SECRET;
        }
    }

    // ----- statement heads -----

    /// Applies the rules of a statement's first word; returns whether it is a routine
    /// definition that may hold a `BEGIN ATOMIC` body.
    fn head(&mut self, st: &mut Stmt, t: Tok, mut la: Lexer<'a>, top: bool) -> bool {
        st.lit_off = false;
        let la = &mut la;
        match key(self.src, Some(t)) {
            kk::SET => self.h_set(st, t, la, top),
            kk::RESET => self.h_reset(st, t, la, top),
            kk::DO => self.h_do(st, t, la),
            kk::ALTER => self.h_alter(st, t, la, top),
            kk::CREATE => return self.h_create(st, t, la, top),
            kk::DROP => self.h_drop(st, t, la, top),
            kk::VACUUM => self.flag(top, Flags::NO_TXN_BLOCK),
            kk::REINDEX => self.h_reindex(la, top),
            kk::CLUSTER => self.h_cluster(la, top),
            kk::COMMIT | kk::ROLLBACK => {
                let f = if self.kw(la.next(), b"prepared") {
                    Flags::NO_TXN_BLOCK
                } else {
                    Flags::TXN_CONTROL
                };
                self.flag(top, f);
            }
            kk::BEGIN | kk::END | kk::ABORT | kk::SAVEPOINT | kk::RELEASE => {
                self.flag(top, Flags::TXN_CONTROL)
            }
            kk::START => {
                let yes = self.kw(la.next(), b"transaction");
                self.flag_if(top, yes, Flags::TXN_CONTROL);
            }
            kk::PREPARE => {
                let name = la.next();
                let f = if self.kw(name, b"transaction") {
                    Flags::TXN_CONTROL
                } else {
                    self.reserved_name(st, name);
                    Flags::SQL_PREPARE
                };
                self.flag(top, f);
            }
            kk::EXECUTE => {
                self.reserved_name(st, la.next());
                self.flag(top, Flags::SQL_EXECUTE)
            }
            kk::EXPLAIN => {
                self.explain_analyze(st, t, la.clone());
                let mut depth = 0usize;
                while let Some(x) = la.next() {
                    match x.k {
                        K::Semi => break,
                        K::LParen => depth += 1,
                        K::RParen => depth = depth.saturating_sub(1),
                        _ if depth == 0 && self.kw(Some(x), b"execute") => {
                            self.reserved_name(st, la.next());
                            self.flag(top, Flags::SQL_EXECUTE);
                            break;
                        }
                        _ => {}
                    }
                }
            }
            kk::DEALLOCATE => {
                self.flag(top, Flags::SQL_DEALLOCATE);
                let mut x = la.next();
                if self.kw(x, b"prepare") {
                    x = la.next();
                }
                if self.kw(x, b"all") {
                    self.flag(top, Flags::DISCARD_OR_RESET_ALL);
                } else {
                    self.reserved_name(st, x);
                }
            }
            kk::DISCARD => {
                let x = la.next();
                if self.kw(x, b"all") {
                    self.flag(
                        top,
                        Flags::DISCARD_OR_RESET_ALL | Flags::NO_TXN_BLOCK | Flags::RESETS_SETTINGS,
                    );
                } else if self.kw(x, b"plans") {
                    self.flag(top, Flags::DISCARD_OR_RESET_ALL);
                }
            }
            kk::LISTEN => self.flag(top, Flags::LISTEN),
            kk::DECLARE => self.h_declare(la, top),
            _ => {}
        }
        false
    }

    #[cold]
    #[inline(never)]
    fn h_set(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>, top: bool) {
        st.lit_off = true;
        let c = set_clause(self.src, self.o.setting, la, true);
        let span = head.s()..c.end.max(head.e());
        let (rule, detail) = match c.target {
            Some(Target::Tenant) => {
                let value = if c.assign {
                    set_value(self.src, la)
                } else {
                    None
                };
                let detail = "SET of the tenant setting";
                return self.push(st, Rule::TenantTamper, detail, value, span);
            }
            Some(Target::Signature) => (Rule::TenantTamper, "SET of the tenant signature"),
            Some(Target::Role) => (Rule::RoleTamper, "SET ROLE"),
            Some(Target::SessionAuth) => (Rule::RoleTamper, "SET SESSION AUTHORIZATION"),
            Some(Target::RowSecurity) => (Rule::RlsTamper, "SET row_security"),
            None => {
                let txn = self.kw(c.first, b"transaction") || self.kw(c.first, b"constraints");
                if !c.local && !txn && !self.tracked_setting(&c) {
                    self.flag(top, Flags::SESSION_SET);
                    self.session_setting(&c);
                }
                return;
            }
        };
        self.push(st, rule, detail, None, span);
    }

    #[cold]
    #[inline(never)]
    fn h_reset(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>, top: bool) {
        st.lit_off = true;
        let c = set_clause(self.src, self.o.setting, la, false);
        let span = head.s()..c.end.max(head.e());
        let (rule, detail) = match c.target {
            Some(Target::Tenant) => (Rule::TenantTamper, "RESET of the tenant setting"),
            Some(Target::Signature) => (Rule::TenantTamper, "RESET of the tenant signature"),
            Some(Target::Role) => (Rule::RoleTamper, "RESET ROLE"),
            Some(Target::SessionAuth) => (Rule::RoleTamper, "RESET SESSION AUTHORIZATION"),
            Some(Target::RowSecurity) => (Rule::RlsTamper, "RESET row_security"),
            None => {
                if c.parts == 1 && self.kw(c.first, b"all") {
                    self.flag(top, Flags::DISCARD_OR_RESET_ALL | Flags::RESETS_SETTINGS);
                    self.reset_pending = top;
                } else if !self.tracked_setting(&c) {
                    self.flag(top, Flags::SESSION_SET);
                    self.session_setting(&c);
                }
                return;
            }
        };
        self.push(st, rule, detail, None, span);
    }

    #[cold]
    #[inline(never)]
    fn h_do(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>) {
        self.push(st, Rule::DoBlock, "DO block", None, head.s()..head.e());
        while let Some(t) = la.next() {
            if t.k == K::Semi {
                break;
            }
            if is_text_lit(t.k) {
                self.body(st, &t, true);
            }
        }
    }

    /// Reports a function or `DO` body literal that calls `set_config` or sets a guarded setting.
    fn body(&mut self, st: &Stmt, t: &Tok, do_block: bool) {
        let text = lit_bytes(self.src, t);
        if let Some(hit) = scan_body(&text, &self.o, 0) {
            let (rule, detail) = body_finding(hit, do_block);
            self.push(st, rule, detail, None, t.s()..t.e());
        }
        self.body_catalog(st, t, &text);
    }

    #[cold]
    #[inline(never)]
    fn h_alter(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>, top: bool) {
        let t1 = la.next();
        match key(self.src, t1) {
            kk::TABLE => self.alter_table(st, la, top),
            kk::ROLE | kk::USER => {
                if self.kw(la.clone().next(), b"mapping") {
                    return;
                }
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::Role, top);
            }
            kk::DATABASE => {
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::Database, top);
            }
            kk::SYSTEM => {
                self.flag(top, Flags::NO_TXN_BLOCK);
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::System, top);
            }
            kk::FUNCTION | kk::PROCEDURE | kk::ROUTINE => {
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::Function, top);
            }
            kk::POLICY => {
                let end = t1.map_or(head.e(), |t| t.e());
                self.push(st, Rule::RlsTamper, "ALTER POLICY", None, head.s()..end);
            }
            kk::SUBSCRIPTION => {
                self.flag(top, Flags::NO_TXN_BLOCK);
                while let Some(t) = la.next() {
                    if t.k == K::Semi {
                        break;
                    }
                    if self.kw(Some(t), b"connection") {
                        self.out.flags |= Flags::CONTAINS_SECRET;
                    }
                }
            }
            _ => {}
        }
    }

    /// `SET`/`RESET` clauses of `ALTER ROLE|DATABASE|SYSTEM|FUNCTION`, and role attributes.
    fn set_clauses(&mut self, st: &mut Stmt, la: &mut Lexer<'a>, ctx: Ctx, top: bool) {
        let mut depth = 0usize;
        let mut first = true;
        let mut pending: Option<Tok> = None;
        while let Some(t) = pending.take().or_else(|| la.next()) {
            match t.k {
                K::Semi => break,
                K::LParen => depth += 1,
                K::RParen => depth = depth.saturating_sub(1),
                K::Word if depth == 0 => {
                    let set = self.kw(Some(t), b"set");
                    if set || self.kw(Some(t), b"reset") {
                        let c = set_clause(self.src, self.o.setting, la, false);
                        if let Some(target) = c.target {
                            let detail = clause_detail(ctx, target);
                            self.push(st, rule_of(target), detail, None, t.s()..c.end);
                        } else if set && ctx == Ctx::Database && self.kw(c.first, b"tablespace") {
                            self.flag(top, Flags::NO_TXN_BLOCK);
                        }
                        pending = c.after;
                    } else if ctx == Ctx::Role && !first {
                        self.privileged_role_option(
                            st,
                            t,
                            "ALTER ROLE ... BYPASSRLS",
                            "ALTER ROLE ... SUPERUSER",
                        );
                    }
                }
                _ => {}
            }
            first = false;
        }
    }

    fn alter_table(&mut self, st: &mut Stmt, la: &mut Lexer<'a>, top: bool) {
        let mut detach = false;
        while let Some(t) = la.next() {
            if t.k == K::Semi {
                break;
            }
            if t.k != K::Word {
                continue;
            }
            let rls = [&b"row"[..], b"level", b"security"];
            if self.kw(Some(t), b"disable") {
                if let Some(end) = self.follows(la, &rls) {
                    let d = "ALTER TABLE ... DISABLE ROW LEVEL SECURITY";
                    self.push(st, Rule::RlsTamper, d, None, t.s()..end);
                }
            } else if self.kw(Some(t), b"no") {
                if let Some(end) = self.follows(la, &[&b"force"[..], b"row", b"level", b"security"])
                {
                    let d = "ALTER TABLE ... NO FORCE ROW LEVEL SECURITY";
                    self.push(st, Rule::RlsTamper, d, None, t.s()..end);
                }
            } else if self.kw(Some(t), b"detach") {
                detach = true;
            } else if detach && self.kw(Some(t), b"concurrently") {
                self.flag(top, Flags::NO_TXN_BLOCK);
            }
        }
    }

    /// Whether the next words are `words`; if so consumes them and returns the end.
    fn follows(&self, la: &mut Lexer<'a>, words: &[&[u8]]) -> Option<usize> {
        let mut look = la.clone();
        let mut end = la.pos;
        for w in words {
            let t = look.next();
            if !self.kw(t, w) {
                return None;
            }
            end = t.map_or(end, |t| t.e());
        }
        *la = look;
        Some(end)
    }

    #[cold]
    #[inline(never)]
    fn h_create(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>, top: bool) -> bool {
        let mut t1 = la.next();
        if self.kw(t1, b"or") && self.kw(la.next(), b"replace") {
            t1 = la.next();
        }
        if matches!(key(self.src, t1), kk::GLOBAL | kk::LOCAL) {
            t1 = la.next();
        }
        if (matches!(key(self.src, t1), kk::TEMP | kk::TEMPORARY) || self.names_pg_temp(la.clone()))
            && !self.on_commit_drop(la.clone())
        {
            self.out.flags |= Flags::TEMP_OBJECT;
        }
        match key(self.src, t1) {
            kk::FUNCTION | kk::PROCEDURE => {
                self.routine(st, la);
                return true;
            }
            kk::DATABASE | kk::TABLESPACE => self.flag(top, Flags::NO_TXN_BLOCK),
            kk::UNIQUE => {
                let yes = self.kw(la.next(), b"index") && self.kw(la.next(), b"concurrently");
                self.flag_if(top, yes, Flags::NO_TXN_BLOCK);
            }
            kk::INDEX => {
                let yes = self.kw(la.next(), b"concurrently");
                self.flag_if(top, yes, Flags::NO_TXN_BLOCK);
            }
            kk::POLICY => {
                let end = t1.map_or(head.e(), |t| t.e());
                self.push(st, Rule::RlsTamper, "CREATE POLICY", None, head.s()..end);
            }
            kk::SUBSCRIPTION => {
                self.flag(top, Flags::NO_TXN_BLOCK);
                self.out.flags |= Flags::CONTAINS_SECRET;
            }
            kk::ROLE | kk::USER | kk::GROUP => {
                let name = la.next();
                if self.kw(name, b"mapping") {
                    return false;
                }
                let mut depth = 0usize;
                while let Some(t) = la.next() {
                    match t.k {
                        K::Semi => break,
                        K::LParen => depth += 1,
                        K::RParen => depth = depth.saturating_sub(1),
                        K::Word if depth == 0 => {
                            self.privileged_role_option(
                                st,
                                t,
                                "CREATE ROLE ... BYPASSRLS",
                                "CREATE ROLE ... SUPERUSER",
                            );
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        false
    }

    /// The part of `CREATE FUNCTION|PROCEDURE` before any `BEGIN ATOMIC` body: `SET` clauses
    /// and body literals.
    fn routine(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
        let mut depth = 0usize;
        let mut prev_begin = false;
        while let Some(t) = la.next() {
            let mut begin = false;
            match t.k {
                K::Semi => break,
                K::LParen => depth += 1,
                K::RParen => depth = depth.saturating_sub(1),
                K::Word if depth == 0 => {
                    if prev_begin && self.kw(Some(t), b"atomic") {
                        break;
                    }
                    begin = self.kw(Some(t), b"begin");
                    if self.kw(Some(t), b"set") {
                        let mut look = la.clone();
                        let c = set_clause(self.src, self.o.setting, &mut look, false);
                        if let Some(target) = c.target {
                            let detail = clause_detail(Ctx::Function, target);
                            self.push(st, rule_of(target), detail, None, t.s()..c.end);
                        }
                    }
                }
                k if depth == 0 && is_text_lit(k) => self.body(st, &t, false),
                _ => {}
            }
            prev_begin = begin;
        }
    }

    /// `DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR [WITH|WITHOUT HOLD]
    /// FOR …`: flags a holdable cursor.
    #[cold]
    #[inline(never)]
    fn h_declare(&mut self, la: &mut Lexer<'a>, top: bool) {
        let name = la.next().filter(|t| is_ident(t.k)).map(|t| {
            let mut buf = [0u8; 64];
            let n = ident_folded(self.src, &t, &mut buf);
            String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()
        });
        let mut prev_with = false;
        let mut hold = false;
        while let Some(t) = la.next() {
            if t.k == K::Semi || self.kw(Some(t), b"for") {
                break;
            }
            if prev_with && self.kw(Some(t), b"hold") {
                hold = true;
                self.flag(top, Flags::HOLD_CURSOR);
                break;
            }
            prev_with = self.kw(Some(t), b"with");
        }
        if let Some(name) = name {
            self.out.cursors.push((name, hold));
        }
    }

    /// Whether the rest of a `CREATE` statement says `ON COMMIT DROP` (a temporary table that
    /// ends with its transaction).
    #[cold]
    #[inline(never)]
    fn on_commit_drop(&self, mut la: Lexer<'a>) -> bool {
        let mut seen = 0u8;
        let mut depth = 0usize;
        while let Some(t) = la.next() {
            match t.k {
                K::Semi => return false,
                K::LParen => depth += 1,
                K::RParen => depth = depth.saturating_sub(1),
                _ if depth > 0 => {}
                _ => {
                    let want: &[u8] = match seen {
                        0 => b"on",
                        1 => b"commit",
                        _ => b"drop",
                    };
                    if self.kw(Some(t), want) {
                        seen += 1;
                        if seen == 3 {
                            return true;
                        }
                    } else {
                        seen = u8::from(self.kw(Some(t), b"on"));
                    }
                }
            }
        }
        false
    }

    /// Whether the rest of a `CREATE` statement names `pg_temp.` as a schema.
    #[cold]
    #[inline(never)]
    fn names_pg_temp(&self, mut la: Lexer<'a>) -> bool {
        let mut prev_temp = false;
        while let Some(t) = la.next() {
            match t.k {
                K::Semi => return false,
                K::Dot if prev_temp => return true,
                K::Word | K::QIdent | K::UIdent => {
                    let mut buf = [0u8; 64];
                    let n = ident_folded(self.src, &t, &mut buf);
                    prev_temp = buf.get(..n).is_some_and(|w| w == b"pg_temp");
                }
                _ => prev_temp = false,
            }
        }
        false
    }

    /// A statement name after `PREPARE`/`EXECUTE`/`DEALLOCATE`: reports one in the proxy's
    /// reserved namespace.
    #[cold]
    #[inline(never)]
    fn reserved_name(&mut self, st: &Stmt, t: Option<Tok>) {
        let Some(t) = t.filter(|t| is_ident(t.k)) else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = ident_folded(self.src, &t, &mut buf);
        let name = buf.get(..n).unwrap_or_default();
        if name.starts_with(RESERVED_PREFIX) {
            let value = Some(String::from_utf8_lossy(name).into_owned());
            let d = "a prepared statement name reserved by tenantgate";
            self.push(st, Rule::ReservedName, d, value, t.s()..t.e());
        }
    }

    /// Records the setting a session-level `SET`/`RESET` clause names (`SET SESSION
    /// CHARACTERISTICS` changes the three `default_transaction_*` settings).
    fn session_setting(&mut self, c: &SetClause) {
        let Some(first) = c.first else { return };
        if self.kw(Some(first), b"session") {
            for n in [
                "default_transaction_isolation",
                "default_transaction_read_only",
                "default_transaction_deferrable",
            ] {
                self.out.session_settings.push(n.to_owned());
            }
            return;
        }
        let mut name = String::new();
        let mut la = Lexer::new(self.src.get(..c.end).unwrap_or_default(), self.o.scs);
        la.pos = first.s();
        while let Some(t) = la.next() {
            match t.k {
                K::Dot => name.push('.'),
                k if is_ident(k) => {
                    let mut buf = [0u8; 64];
                    let n = ident_folded(self.src, &t, &mut buf);
                    name.push_str(&String::from_utf8_lossy(buf.get(..n).unwrap_or_default()));
                }
                _ => break,
            }
        }
        if !name.is_empty() {
            self.out.session_settings.push(name);
        }
    }

    /// Whether a `SET` clause names a reported parameter the proxy tracks per session
    /// (`SET TIME ZONE`, `SET NAMES` and the names in `client::settings::TRACKED`).
    fn tracked_setting(&self, c: &SetClause) -> bool {
        if c.parts != 1 {
            return false;
        }
        let Some(first) = c.first else { return false };
        let mut buf = [0u8; 64];
        let n = ident_folded(self.src, &first, &mut buf);
        let name = buf.get(..n).unwrap_or_default();
        name == b"time"
            || name == b"names"
            || crate::client::settings::TRACKED
                .iter()
                .any(|t| t.as_bytes().eq_ignore_ascii_case(name))
    }

    /// After `set_config(name, `: skips the value argument and tells whether the third argument
    /// is the constant `true` (a transaction-local setting).
    fn third_arg_is_true(&self, la: &mut Lexer<'a>) -> bool {
        let mut depth = 0usize;
        while let Some(t) = la.next() {
            match t.k {
                K::LParen => depth += 1,
                K::RParen if depth == 0 => return false,
                K::RParen => depth -= 1,
                K::Semi => return false,
                K::Comma if depth == 0 => break,
                _ => {}
            }
        }
        let v = la.next();
        let yes = match v {
            Some(v) if v.k == K::Word => self.kw(Some(v), b"true"),
            Some(v) if is_text_lit(v.k) => {
                let s = lit_string(self.src, &v).to_ascii_lowercase();
                matches!(
                    s.as_str(),
                    "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1"
                )
            }
            _ => false,
        };
        let mut n = la.next();
        if is(n, K::Typecast) {
            n = skip_type(self.src, la);
        }
        yes && is(n, K::RParen)
    }

    #[cold]
    #[inline(never)]
    fn h_drop(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>, top: bool) {
        let t1 = la.next();
        match key(self.src, t1) {
            kk::DATABASE | kk::TABLESPACE | kk::SUBSCRIPTION => self.flag(top, Flags::NO_TXN_BLOCK),
            kk::INDEX => {
                let yes = self.kw(la.next(), b"concurrently");
                self.flag_if(top, yes, Flags::NO_TXN_BLOCK);
            }
            kk::POLICY => {
                let end = t1.map_or(head.e(), |t| t.e());
                self.push(st, Rule::RlsTamper, "DROP POLICY", None, head.s()..end);
            }
            _ => {}
        }
    }

    #[cold]
    #[inline(never)]
    fn h_reindex(&mut self, la: &mut Lexer<'a>, top: bool) {
        let mut concurrently = false;
        let mut t = la.next();
        if is(t, K::LParen) {
            loop {
                t = la.next();
                match t {
                    None => return,
                    Some(x) if x.k == K::Semi => return,
                    Some(x) if x.k == K::RParen => break,
                    _ => concurrently |= self.kw(t, b"concurrently"),
                }
            }
            t = la.next();
        }
        let whole = self.kw(t, b"database") || self.kw(t, b"system");
        while let Some(x) = la.next() {
            if x.k == K::Semi {
                break;
            }
            concurrently |= self.kw(Some(x), b"concurrently");
        }
        if whole || concurrently {
            self.flag(top, Flags::NO_TXN_BLOCK);
        }
    }

    #[cold]
    #[inline(never)]
    fn h_cluster(&mut self, la: &mut Lexer<'a>, top: bool) {
        let mut t = la.next();
        if is(t, K::LParen) {
            skip_group(la, K::RParen);
            t = la.next();
        }
        if self.kw(t, b"verbose") {
            t = la.next();
        }
        if t.is_none() || is(t, K::Semi) {
            self.flag(top, Flags::NO_TXN_BLOCK);
        }
    }

    // ----- rules anywhere in a statement -----

    #[cold]
    #[inline(never)]
    fn set_config(&mut self, st: &mut Stmt, name: Tok, mut la: Lexer<'a>) {
        if !is(la.next(), K::LParen) {
            return;
        }
        let arg = la.next();
        let mut after = None;
        let lit = match arg {
            Some(a) if is_text_lit(a.k) => {
                let mut b = la.next();
                if is(b, K::Typecast) {
                    b = skip_type(self.src, &mut la);
                }
                if is(b, K::Comma) || is(b, K::RParen) {
                    after = b;
                    Some(a)
                } else {
                    None
                }
            }
            _ => None,
        };
        let Some(a) = lit else {
            let d = "set_config with a non-constant setting name";
            return self.push(st, Rule::TenantTamper, d, None, name.s()..name.e());
        };
        let mut m = NameMatch::new(self.o.setting);
        decode_lit(self.src, &a, &mut m);
        let span = name.s()..a.e();
        let (rule, detail) = match m.result() {
            None => {
                self.set_config_encoding(st, name, &a, after, &mut la.clone());
                if !is(after, K::Comma) || !self.third_arg_is_true(&mut la) {
                    self.out.flags |= Flags::SESSION_SET;
                    self.out.session_settings.push(lit_string(self.src, &a));
                }
                return;
            }
            Some(Target::Tenant) => {
                let value = if is(after, K::Comma) {
                    self.literal_arg(&mut la)
                } else {
                    None
                };
                let d = "set_config of the tenant setting";
                return self.push(st, Rule::TenantTamper, d, value, span);
            }
            Some(Target::Signature) => (Rule::TenantTamper, "set_config of the tenant signature"),
            Some(Target::Role) => (Rule::RoleTamper, "set_config of role"),
            Some(Target::SessionAuth) => (Rule::RoleTamper, "set_config of session_authorization"),
            Some(Target::RowSecurity) => (Rule::RlsTamper, "set_config of row_security"),
        };
        self.push(st, rule, detail, None, span);
    }

    /// A function argument that is one text literal (optionally cast), decoded.
    fn literal_arg(&self, la: &mut Lexer<'a>) -> Option<String> {
        let v = la.next().filter(|v| is_text_lit(v.k))?;
        let mut n = la.next();
        if is(n, K::Typecast) {
            n = skip_type(self.src, la);
        }
        (is(n, K::Comma) || is(n, K::RParen)).then(|| lit_string(self.src, &v))
    }

    /// `query_to_xml('…')` and friends run their text as SQL in this session: inspect it.
    #[cold]
    #[inline(never)]
    fn dynamic_sql(&mut self, st: &mut Stmt, name: Tok, mut la: Lexer<'a>) {
        if !is(la.next(), K::LParen) {
            return;
        }
        let arg = la.next().filter(|a| is_text_lit(a.k));
        let Some(a) = arg else {
            let d = "dynamic SQL with a non-constant query";
            return self.push(st, Rule::TenantTamper, d, None, name.s()..name.e());
        };
        let mut b = la.next();
        if is(b, K::Typecast) {
            b = skip_type(self.src, &mut la);
        }
        if !(is(b, K::Comma) || is(b, K::RParen)) {
            let d = "dynamic SQL with a non-constant query";
            return self.push(st, Rule::TenantTamper, d, None, name.s()..name.e());
        }
        if self.depth + 1 >= MAX_DYNAMIC_DEPTH {
            let d = "dynamic SQL nested too deeply";
            return self.push(st, Rule::TenantTamper, d, None, a.s()..a.e());
        }
        let text = lit_bytes(self.src, &a);
        let sub = run(&text, self.o, self.depth + 1);
        self.out.flags |= sub.flags & Flags::CONTAINS_SECRET;
        for f in sub.findings {
            self.push(st, f.rule, f.detail, f.value, a.s()..a.e());
        }
    }

    #[cold]
    #[inline(never)]
    fn pg_settings(&mut self, st: &mut Stmt, upd: Tok, mut la: Lexer<'a>) {
        let mut t = la.next();
        if self.kw(t, b"only") {
            t = la.next();
        }
        let Some(first) = t.filter(|t| is_ident(t.k)) else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = ident_into(self.src, &first, &mut buf);
        let part = buf.get(..n).unwrap_or_default();
        let mut end = first.e();
        let matched = if is(la.clone().next(), K::Dot) {
            let catalog = part.eq_ignore_ascii_case(b"pg_catalog");
            let _dot = la.next();
            match la.next().filter(|t| is_ident(t.k)) {
                Some(second) if catalog => {
                    let n = ident_into(self.src, &second, &mut buf);
                    end = second.e();
                    buf.get(..n)
                        .is_some_and(|p| p.eq_ignore_ascii_case(b"pg_settings"))
                }
                _ => false,
            }
        } else {
            part.eq_ignore_ascii_case(b"pg_settings")
        };
        if !matched {
            return;
        }
        st.pg_settings = true;
        let mut best: Option<Target> = None;
        while let Some(x) = la.next() {
            if x.k == K::Semi {
                break;
            }
            if is_text_lit(x.k) {
                let mut m = NameMatch::new(self.o.setting);
                decode_lit(self.src, &x, &mut m);
                if let Some(found) = m.result() {
                    best = Some(best.map_or(found, |b| b.min(found)));
                }
            }
        }
        let (rule, detail) = match best {
            Some(Target::Tenant | Target::Signature) => (
                Rule::TenantTamper,
                "UPDATE pg_settings of the tenant setting",
            ),
            Some(Target::Role | Target::SessionAuth) => {
                (Rule::RoleTamper, "UPDATE pg_settings of role")
            }
            _ => (Rule::RlsTamper, "UPDATE pg_settings"),
        };
        self.push(st, rule, detail, None, upd.s()..end);
    }

    /// After the tenant column: `= lit`, `<> lit`, `IN (lits)`, `IS [NOT] DISTINCT FROM lit`.
    #[cold]
    #[inline(never)]
    fn column_literal(&mut self, st: &mut Stmt, mut la: Lexer<'a>) {
        let t = la.next();
        if op_is(self.src, t, CMP_OPS) {
            self.operand(st, &mut la);
        } else if self.kw(t, b"in") {
            self.in_list(st, &mut la);
        } else if self.kw(t, b"not") {
            if self.kw(la.next(), b"in") {
                self.in_list(st, &mut la);
            }
        } else if self.kw(t, b"is") {
            let mut u = la.next();
            if self.kw(u, b"not") {
                u = la.next();
            }
            if self.kw(u, b"distinct") && self.kw(la.next(), b"from") {
                self.operand(st, &mut la);
            }
        }
        st.fwd_hi = st.fwd_hi.max(la.pos);
    }

    fn operand(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
        let mut t = la.next();
        for _ in 0..SKIP_LIMIT {
            if !is(t, K::LParen) {
                break;
            }
            t = la.next();
        }
        let Some(x) = t else {
            return;
        };
        if is_lit(x.k) {
            return self.emit(st, &x);
        }
        if !is_ident(x.k) {
            return;
        }
        if self.kw(t, b"cast") {
            if is(la.next(), K::LParen) {
                if let Some(v) = la.next().filter(|v| is_lit(v.k)) {
                    self.emit(st, &v);
                }
            }
        } else if self.kw(t, b"any") || self.kw(t, b"some") || self.kw(t, b"all") {
            if !is(la.next(), K::LParen) {
                return;
            }
            let v = la.next();
            if self.kw(v, b"array") {
                if is(la.next(), K::LBrack) {
                    self.elements(st, la);
                }
            } else if let Some(v) = v.filter(|v| is_text_lit(v.k)) {
                self.emit_array(st, &v);
            }
        } else if let Some(v) = la.next().filter(|v| is_lit(v.k)) {
            // A typed literal: `uuid '…'`.
            self.emit(st, &v);
        }
    }

    fn in_list(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
        if is(la.next(), K::LParen) {
            self.elements(st, la);
        }
    }

    /// A list of literal elements (`'a', 'b'::uuid, CAST('c' AS uuid), uuid 'd'`); stops at the
    /// first thing that is not one.
    fn elements(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
        loop {
            let Some(x) = la.next() else {
                return;
            };
            let mut next;
            if is_lit(x.k) {
                self.emit(st, &x);
                next = la.next();
            } else if self.kw(Some(x), b"cast") {
                if !is(la.next(), K::LParen) {
                    return;
                }
                let Some(v) = la.next().filter(|v| is_lit(v.k)) else {
                    return;
                };
                self.emit(st, &v);
                if !self.kw(la.next(), b"as") {
                    return;
                }
                if !is(skip_type(self.src, la), K::RParen) {
                    return;
                }
                next = la.next();
            } else if is_ident(x.k) {
                let Some(v) = la.next().filter(|v| is_lit(v.k)) else {
                    return;
                };
                self.emit(st, &v);
                next = la.next();
            } else {
                return;
            }
            if is(next, K::Typecast) {
                next = skip_type(self.src, la);
            }
            if !is(next, K::Comma) {
                return;
            }
        }
    }

    /// Before the tenant column: `lit = col`, `lit::type <> x.col`, `CAST(lit AS type) = col`.
    #[cold]
    #[inline(never)]
    fn literal_column(&mut self, st: &mut Stmt, lit: Tok, mut la: Lexer<'a>) {
        let mut t = la.next();
        match t {
            Some(x) if matches!(x.k, K::Typecast | K::RParen | K::Op) => {}
            Some(x) if x.k == K::Word && self.kw(t, b"as") => {}
            _ => return,
        }
        if is(t, K::Typecast) {
            t = skip_type(self.src, &mut la);
        }
        if self.kw(t, b"as") {
            t = skip_type(self.src, &mut la);
        }
        for _ in 0..SKIP_LIMIT {
            if !is(t, K::RParen) {
                break;
            }
            t = la.next();
        }
        if is(t, K::Typecast) {
            t = skip_type(self.src, &mut la);
        }
        if !op_is(self.src, t, CMP_OPS) {
            return;
        }
        let mut u = la.next();
        for _ in 0..SKIP_LIMIT {
            if !is(u, K::LParen) {
                break;
            }
            u = la.next();
        }
        let mut last = None;
        while let Some(x) = u.filter(|x| is_ident(x.k)) {
            last = Some(x);
            let d = la.next();
            if is(d, K::Dot) {
                u = la.next();
                continue;
            }
            if is(d, K::LParen) {
                return; // a function call, not a column
            }
            break;
        }
        let Some(c) = last else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = ident_into(self.src, &c, &mut buf);
        if buf
            .get(..n)
            .is_some_and(|name| name.eq_ignore_ascii_case(self.o.column))
        {
            self.emit(st, &lit);
        }
    }

    fn emit(&mut self, st: &Stmt, t: &Tok) {
        let value = lit_string(self.src, t);
        self.push(
            st,
            Rule::TenantLiteral,
            LITERAL_DETAIL,
            Some(value),
            t.s()..t.e(),
        );
    }

    /// `= ANY('{a,b}')`: one finding per element of the array literal.
    fn emit_array(&mut self, st: &Stmt, t: &Tok) {
        let text = lit_bytes(self.src, t);
        match array_elements(&text) {
            Some(items) => {
                for item in items {
                    let value = String::from_utf8_lossy(&item).into_owned();
                    self.push(
                        st,
                        Rule::TenantLiteral,
                        LITERAL_DETAIL,
                        Some(value),
                        t.s()..t.e(),
                    );
                }
            }
            None => self.emit(st, t),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog-derived rules: client encodings, functions that run SQL text, catalog objects that
// expose other sessions, large objects or statistics, and EXPLAIN ANALYZE (`catalog.rs` holds
// the tables and how they were derived).
// ---------------------------------------------------------------------------------------------

/// Why an unsafe client encoding is a finding.
const ENCODING_DETAIL: &str = "a client encoding that hides statements from the inspector";

/// Whether a word of `text` starts with one of `hints` (lower-case ASCII, starting with a
/// letter), ASCII case-insensitively, in one pass: only word starts whose first letter starts
/// some hint are compared further. Every name the catalog rules look for is a word (or starts
/// one after a quote or a dot).
fn mentions(text: &[u8], hints: &[&[u8]]) -> bool {
    let mut firsts = [0u64; 4];
    for h in hints {
        if let Some(&c) = h.first() {
            firsts[usize::from(c >> 6)] |= 1 << (c & 63);
        }
    }
    let mut in_word = false;
    for (i, &b) in text.iter().enumerate() {
        let was = in_word;
        in_word = class(b) & (C_IDS | C_IDC) != 0;
        let c = b | 0x20;
        if was || (firsts[usize::from(c >> 6)] >> (c & 63)) & 1 == 0 {
            continue;
        }
        let rest = text.get(i..).unwrap_or_default();
        let hit = hints.iter().any(|h| {
            h.first() == Some(&c)
                && rest
                    .get(..h.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(h))
        });
        if hit {
            return true;
        }
    }
    false
}

/// Compares a decoded literal with `client_encoding` without allocating.
struct EncodingName(Ci<'static>);

impl Sink for EncodingName {
    fn put(&mut self, c: u8) {
        self.0.put(c);
    }
}

/// One argument of a call, as far as the SQL-function rule needs it.
#[derive(Clone, Copy)]
struct Arg {
    /// The argument is one text literal (optionally cast).
    lit: Option<Tok>,
    /// The argument is one number.
    num: bool,
}

/// At most this many arguments are classified; later ones fail closed.
const MAX_ARGS: usize = 8;
/// At most this many tokens are read looking for the end of an argument list.
const MAX_ARG_TOKENS: usize = 4096;

impl<'a> Cx<'a, '_> {
    /// A word or identifier that passed `catalog::maybe_catalog_word`.
    #[cold]
    #[inline(never)]
    fn catalog_name(&mut self, st: &mut Stmt, t: Tok, name: &[u8], lx: &Lexer<'a>) {
        let call = is(lx.clone().next(), K::LParen);
        if let Some(o) = catalog::catalog_object(name, call) {
            let rule = match o.exposure {
                catalog::Exposure::OtherSessions => Rule::OtherSessions,
                catalog::Exposure::LargeObjects => Rule::LargeObject,
                catalog::Exposure::Statistics => Rule::Statistics,
            };
            let value = String::from_utf8_lossy(name).to_ascii_lowercase();
            return self.push(st, rule, o.kind.as_str(), Some(value), t.s()..t.e());
        }
        if call {
            if let Some(spec) = catalog::sql_function(name) {
                return self.sql_function(st, t, spec, lx.clone());
            }
        }
        if st.prev & (P_SET | P_PART) == 0 {
            return;
        }
        let mut la = lx.clone();
        if name.eq_ignore_ascii_case(b"client_encoding") {
            let op = la.next();
            if op_is(self.src, op, &[b"="]) || self.kw(op, b"to") {
                self.encoding_value(st, t, &mut la);
            }
        } else if name.eq_ignore_ascii_case(b"names") && st.prev & P_SET != 0 {
            self.encoding_value(st, t, &mut la);
        }
    }

    /// The value of `SET client_encoding = …` or `SET NAMES …`.
    fn encoding_value(&mut self, st: &Stmt, head: Tok, la: &mut Lexer<'a>) {
        let Some(v) = la.next() else { return };
        let text = match v.k {
            k if is_text_lit(k) => lit_string(self.src, &v),
            K::Word | K::QIdent | K::UIdent => {
                let mut buf = [0u8; 64];
                let n = ident_into(self.src, &v, &mut buf);
                String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()
            }
            _ => return,
        };
        if catalog::unsafe_client_encoding(&text).is_some() {
            let span = head.s()..v.e();
            self.push(st, Rule::UnsafeEncoding, ENCODING_DETAIL, Some(text), span);
        }
    }

    /// `set_config(<literal>, …)` of a setting the other rules do not guard: `client_encoding`.
    fn set_config_encoding(
        &mut self,
        st: &Stmt,
        name: Tok,
        setting: &Tok,
        after: Option<Tok>,
        la: &mut Lexer<'a>,
    ) {
        if !is(after, K::Comma) {
            return;
        }
        let mut m = EncodingName(Ci::new(b"client_encoding"));
        decode_lit(self.src, setting, &mut m);
        if !m.0.done() {
            return;
        }
        let span = name.s()..setting.e();
        match self.literal_arg(la) {
            Some(v) if catalog::unsafe_client_encoding(&v).is_some() => {
                self.push(st, Rule::UnsafeEncoding, ENCODING_DETAIL, Some(v), span)
            }
            Some(_) => {}
            None => {
                let d = "set_config of client_encoding with a non-constant value";
                self.push(st, Rule::UnsafeEncoding, d, None, span)
            }
        }
    }

    /// A function or `DO` body (SQL or PL/pgSQL, which lexes alike) that reaches a refused
    /// catalog object, runs `EXPLAIN ANALYZE`, switches to an unsafe client encoding or calls a
    /// SQL-running function: reported like the same text at top level. Only bodies that mention
    /// one of the names are lexed a second time.
    fn body_catalog(&mut self, st: &Stmt, t: &Tok, text: &[u8]) {
        const HINTS: [&[u8]; 15] = [
            b"pg_",
            b"lo_",
            b"loread",
            b"lowrite",
            b"reltuples",
            b"relpages",
            b"relall",
            b"analy",
            b"encoding",
            b"client_encoding",
            b"names",
            b"ts_rewrite",
            b"crosstab",
            b"connectby",
            b"pgstat",
        ];
        self.body_catalog_at(st, t, text, &HINTS, 0);
    }

    /// `body_catalog` on `text` and, like `scan_body`, on the string literals nested in it
    /// (`EXECUTE 'explain analyze …'`), up to `MAX_BODY_DEPTH` levels.
    fn body_catalog_at(&mut self, st: &Stmt, t: &Tok, text: &[u8], hints: &[&[u8]], depth: u32) {
        if depth >= MAX_BODY_DEPTH || self.depth + 1 >= MAX_DYNAMIC_DEPTH || !mentions(text, hints)
        {
            return;
        }
        let mut lx = Lexer::new(text, self.o.scs);
        while let Some(x) = lx.next() {
            if is_text_lit(x.k) {
                let inner = lit_bytes(text, &x);
                self.body_catalog_at(st, t, &inner, hints, depth + 1);
            }
        }
        let sub = run(text, self.o, self.depth + 1);
        for f in sub.findings {
            let keep = matches!(
                f.rule,
                Rule::UnsafeEncoding | Rule::OtherSessions | Rule::LargeObject | Rule::Statistics
            ) || (f.rule == Rule::TenantTamper && f.detail.starts_with("dynamic SQL"));
            if keep {
                self.push(st, f.rule, f.detail, f.value, t.s()..t.e());
            }
        }
    }

    /// `'pg_stat_activity'::regclass`, `to_regproc('pg_cancel_backend')` and the like: a string
    /// literal that names a refused object.
    #[inline(always)]
    fn catalog_literal(&mut self, st: &mut Stmt, t: Tok) {
        let raw = self.src.get(t.s()..t.e()).unwrap_or_default();
        if raw.len() <= 300 && mentions(raw, &[b"pg", b"lo", b"rel"]) {
            self.catalog_literal_slow(st, t);
        }
    }

    #[cold]
    #[inline(never)]
    fn catalog_literal_slow(&mut self, st: &mut Stmt, t: Tok) {
        let text = lit_string(self.src, &t);
        if let Some((name, o)) = catalog::catalog_object_in_text(&text) {
            let rule = match o.exposure {
                catalog::Exposure::OtherSessions => Rule::OtherSessions,
                catalog::Exposure::LargeObjects => Rule::LargeObject,
                catalog::Exposure::Statistics => Rule::Statistics,
            };
            self.push(st, rule, o.kind.as_str(), Some(name), t.s()..t.e());
        }
    }

    /// `EXPLAIN ANALYZE`, `EXPLAIN ANALYSE`, `EXPLAIN VERBOSE ANALYZE`, `EXPLAIN (ANALYZE)`,
    /// `EXPLAIN (ANALYZE true|on|1|'on')`, `EXPLAIN ("analyze")`: the plan with row counts the
    /// executor saw, including rows row security removed. `ANALYZE false|off|0` is plain EXPLAIN.
    #[cold]
    #[inline(never)]
    fn explain_analyze(&mut self, st: &mut Stmt, head: Tok, mut la: Lexer<'a>) {
        let is_analyze = |cx: &Self, t: Tok| -> bool {
            let mut buf = [0u8; 64];
            let n = ident_into(cx.src, &t, &mut buf);
            let w = buf.get(..n).unwrap_or_default();
            is_ident(t.k)
                && (w.eq_ignore_ascii_case(b"analyze") || w.eq_ignore_ascii_case(b"analyse"))
        };
        let mut t = la.next();
        if !is(t, K::LParen) {
            // Old syntax: EXPLAIN [ANALYZE] [VERBOSE], accepted here in any order.
            while let Some(x) = t {
                if x.k == K::Word && is_analyze(self, x) {
                    let d = "EXPLAIN ANALYZE";
                    return self.push(st, Rule::Statistics, d, None, head.s()..x.e());
                }
                if !self.kw(t, b"verbose") {
                    return;
                }
                t = la.next();
            }
            return;
        }
        let mut depth = 1usize;
        let mut at_name = true;
        // An ANALYZE option whose value has not been seen yet.
        let mut pending: Option<Tok> = None;
        for _ in 0..MAX_ARG_TOKENS {
            let Some(x) = la.next() else { break };
            match x.k {
                K::Semi => break,
                K::LParen => depth += 1,
                K::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                K::Comma if depth == 1 => {
                    if let Some(p) = pending.take() {
                        self.push(
                            st,
                            Rule::Statistics,
                            "EXPLAIN ANALYZE",
                            None,
                            head.s()..p.e(),
                        );
                    }
                    at_name = true;
                    continue;
                }
                _ if depth == 1 && at_name && is_analyze(self, x) => pending = Some(x),
                _ if depth == 1 && pending.is_some() => {
                    let off = match x.k {
                        K::Word => self.kw(Some(x), b"false") || self.kw(Some(x), b"off"),
                        K::Num => self.src.get(x.s()..x.e()) == Some(b"0"),
                        k if is_text_lit(k) => {
                            let v = lit_string(self.src, &x);
                            v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("off")
                        }
                        _ => false,
                    };
                    if off {
                        pending = None;
                    }
                }
                _ => {}
            }
            at_name = false;
        }
        if let Some(p) = pending {
            self.push(
                st,
                Rule::Statistics,
                "EXPLAIN ANALYZE",
                None,
                head.s()..p.e(),
            );
        }
    }

    /// A call of a function that runs SQL text from its arguments (`ts_rewrite(q, 'SELECT …')`,
    /// `crosstab('SELECT …')`): each such argument is inspected as SQL; a non-constant one
    /// fails closed.
    #[cold]
    #[inline(never)]
    fn sql_function(
        &mut self,
        st: &mut Stmt,
        name: Tok,
        spec: &[catalog::SqlArgs],
        mut la: Lexer<'a>,
    ) {
        let non_constant = "dynamic SQL with a non-constant query";
        if !is(la.next(), K::LParen) {
            return;
        }
        let mut args = [Arg {
            lit: None,
            num: false,
        }; MAX_ARGS];
        let mut arity = 0usize;
        let mut depth = 0usize;
        let mut cur: (Option<Tok>, usize) = (None, 0);
        let mut closed = false;
        let mut finish =
            |cur: &mut (Option<Tok>, usize), arity: &mut usize, second: Option<Tok>| {
                if let Some(slot) = args.get_mut(*arity) {
                    let first = cur.0;
                    let one = cur.1 == 1 || is(second, K::Typecast);
                    *slot = Arg {
                        lit: first.filter(|f| is_text_lit(f.k) && one),
                        num: first.is_some_and(|f| f.k == K::Num) && cur.1 == 1,
                    };
                }
                *arity += 1;
                *cur = (None, 0);
            };
        let mut second: Option<Tok> = None;
        for _ in 0..MAX_ARG_TOKENS {
            let Some(x) = la.next() else { break };
            match x.k {
                K::LParen | K::LBrack => depth += 1,
                K::RParen if depth == 0 => {
                    if cur.1 > 0 {
                        finish(&mut cur, &mut arity, second);
                    }
                    closed = true;
                    break;
                }
                K::RParen | K::RBrack => depth = depth.saturating_sub(1),
                K::Comma if depth == 0 => {
                    finish(&mut cur, &mut arity, second);
                    second = None;
                    continue;
                }
                K::Semi => break,
                _ => {}
            }
            if cur.1 == 0 {
                cur.0 = Some(x);
            } else if cur.1 == 1 {
                second = Some(x);
            }
            cur.1 += 1;
        }
        if !closed || arity > MAX_ARGS {
            return self.push(
                st,
                Rule::TenantTamper,
                non_constant,
                None,
                name.s()..name.e(),
            );
        }
        let args = args.get(..arity).unwrap_or_default();
        for a in spec {
            let sql: Vec<usize> = match *a {
                catalog::SqlArgs::At { n, arity: want } => {
                    if want.is_some_and(|w| w != arity) || n >= arity {
                        continue;
                    }
                    vec![n]
                }
                catalog::SqlArgs::AllText(want) if want == arity => (0..arity)
                    .filter(|i| args.get(*i).is_some_and(|a| !a.num))
                    .collect(),
                catalog::SqlArgs::AllText(_) => continue,
                catalog::SqlArgs::Pasted => {
                    let d = "a function that builds SQL from its arguments";
                    return self.push(st, Rule::TenantTamper, d, None, name.s()..name.e());
                }
            };
            for i in sql {
                let Some(lit) = args.get(i).and_then(|a| a.lit) else {
                    return self.push(
                        st,
                        Rule::TenantTamper,
                        non_constant,
                        None,
                        name.s()..name.e(),
                    );
                };
                if self.depth + 1 >= MAX_DYNAMIC_DEPTH {
                    let d = "dynamic SQL nested too deeply";
                    return self.push(st, Rule::TenantTamper, d, None, lit.s()..lit.e());
                }
                let text = lit_bytes(self.src, &lit);
                let sub = run(&text, self.o, self.depth + 1);
                self.out.flags |= sub.flags & Flags::CONTAINS_SECRET;
                for f in sub.findings {
                    self.push(st, f.rule, f.detail, f.value, lit.s()..lit.e());
                }
            }
        }
    }
}

/// The elements of a PostgreSQL array literal (`{a,"b c",{d}}`), flattened, without NULLs.
/// `None` if the text is not an array literal.
fn array_elements(text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut i = 0;
    let at = |i: usize| text.get(i).copied();
    while at(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    if at(i) == Some(b'[') {
        i += text.get(i..)?.iter().position(|&c| c == b'=')? + 1;
        while at(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
    }
    if at(i) != Some(b'{') {
        return None;
    }
    let mut items = Vec::new();
    let mut item: Vec<u8> = Vec::new();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = at(i) {
        i += 1;
        match c {
            b'{' | b'}' | b',' => {
                if any {
                    if !quoted {
                        while item.last().is_some_and(|c| c.is_ascii_whitespace()) {
                            item.pop();
                        }
                    }
                    if quoted || !item.eq_ignore_ascii_case(b"null") {
                        items.push(std::mem::take(&mut item));
                    }
                }
                item.clear();
                quoted = false;
                any = false;
            }
            b'"' => {
                quoted = true;
                any = true;
                while let Some(q) = at(i) {
                    i += 1;
                    match q {
                        b'"' => break,
                        b'\\' => {
                            if let Some(e) = at(i) {
                                item.push(e);
                                i += 1;
                            }
                        }
                        _ => item.push(q),
                    }
                }
            }
            b'\\' => {
                any = true;
                if let Some(e) = at(i) {
                    item.push(e);
                    i += 1;
                }
            }
            c if c.is_ascii_whitespace() => {
                if any && !quoted {
                    item.push(c);
                }
            }
            _ => {
                any = true;
                item.push(c);
            }
        }
    }
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: InspectOptions<'static> = InspectOptions {
        setting: "app.tenant_id",
        tenant_column: "tenant_id",
        standard_conforming_strings: true,
    };
    const OFF: InspectOptions<'static> = InspectOptions {
        standard_conforming_strings: false,
        ..OPTS
    };

    fn ins(sql: &str) -> Inspection {
        let i = inspect(sql, &OPTS);
        check_invariants(sql, &i);
        i
    }

    fn rules(sql: &str) -> Vec<Rule> {
        ins(sql).findings.iter().map(|f| f.rule).collect()
    }

    fn one(sql: &str) -> Finding {
        let i = ins(sql);
        assert_eq!(i.findings.len(), 1, "{sql:?}: {:#?}", i.findings);
        i.findings[0].clone()
    }

    fn clean(sql: &str) {
        let i = ins(sql);
        assert!(i.findings.is_empty(), "{sql:?}: {:#?}", i.findings);
    }

    fn literals(sql: &str) -> Vec<String> {
        ins(sql)
            .findings
            .iter()
            .filter(|f| f.rule == Rule::TenantLiteral)
            .map(|f| f.value.clone().unwrap_or_default())
            .collect()
    }

    fn flags(sql: &str) -> Flags {
        ins(sql).flags
    }

    /// What every inspection must satisfy, whatever the input.
    fn check_invariants(sql: &str, i: &Inspection) {
        let mut last = 0;
        for f in &i.findings {
            assert!(f.statement.start < f.statement.end, "{sql:?}: {f:?}");
            assert!(sql.get(f.statement.clone()).is_some(), "{sql:?}: {f:?}");
            assert!(sql.get(f.span.clone()).is_some(), "{sql:?}: {f:?}");
            assert!(
                f.statement.start <= f.span.start && f.span.end <= f.statement.end,
                "{sql:?}: span outside statement: {f:?}"
            );
            assert!(f.statement.start >= last, "{sql:?}: out of order");
            last = f.statement.start;
            let text = &sql[f.statement.clone()];
            assert_eq!(text, text.trim_start(), "{sql:?}: untrimmed range");
            if f.statement.end < sql.len() {
                assert_eq!(text, text.trim_end(), "{sql:?}: untrimmed range");
            }
        }
        for w in i.findings.windows(2) {
            if w[0].statement == w[1].statement {
                assert!(w[0].span.start <= w[1].span.start, "{sql:?}: out of order");
            }
        }
        assert!(i.statements as usize <= sql.len());
    }

    // ----- TenantTamper -----

    #[test]
    fn set_of_the_tenant_setting_in_any_spelling() {
        for (sql, value) in [
            ("SET app.tenant_id = 'x'", Some("x")),
            ("set APP.TENANT_ID to 'x'", Some("x")),
            ("SET \"app\".\"tenant_id\" = 'x'", Some("x")),
            ("SET \"app.tenant_id\" = 'x'", Some("x")),
            ("SET \"APP\".\"Tenant_Id\" TO 'x'", Some("x")),
            ("SET SESSION app.tenant_id = 'x'", Some("x")),
            ("SET LOCAL app.tenant_id = 42", Some("42")),
            ("SET app.tenant_id = -7", Some("-7")),
            ("SET app.tenant_id TO DEFAULT", None),
            ("SET app.TENANT_ID TO DEFAULT", None),
            ("SET app.tenant_id = ABC", Some("abc")),
            ("SET app.tenant_id = \"ABC\"", Some("ABC")),
            (
                "SET app /* c */ . -- c\n tenant_id = E'a\\x62\\n'",
                Some("ab\n"),
            ),
            ("SET app.tenant_id = 'it''s'", Some("it's")),
            ("SET app.tenant_id = 'a'\n'b'", Some("ab")),
            ("SET app.tenant_id = 'a' -- c\n  'b'", Some("ab")),
            ("SET app.tenant_id = $$x$$", Some("x")),
            ("SET app.tenant_id = $t$x$t$;", Some("x")),
            ("SET app.tenant_id = U&'\\0078'", Some("x")),
            (
                "SET app.tenant_id = U&'!0078!+00006A' UESCAPE '!'",
                Some("xj"),
            ),
            ("SET app.tenant_id = N'x'", Some("x")),
            ("SET app.U&\"tenant\\005fid\" = 'x'", Some("x")),
            ("SET U&\"app!002etenant_id\" UESCAPE '!' = 'x'", Some("x")),
            ("SET app.tenant_id = 'a', 'b'", None),
            ("SET app.tenant_id FROM CURRENT", None),
            ("SET app.tenant_id = 'é😀'", Some("é😀")),
            ("RESET app.tenant_id", None),
            ("reset \"app\".tenant_id", None),
        ] {
            let f = one(sql);
            assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
            assert_eq!(f.value.as_deref(), value, "{sql:?}");
            assert_eq!(f.statement, 0..sql.trim_end_matches(';').len(), "{sql:?}");
        }
        assert_eq!(
            one("RESET app.tenant_id").detail,
            "RESET of the tenant setting"
        );
        assert_eq!(
            one("SET app.tenant_id = 'x'").detail,
            "SET of the tenant setting"
        );
    }

    #[test]
    fn other_settings_and_reads_are_not_tenant_tamper() {
        for sql in [
            "SET app.tenant = 'x'",
            "SET app.tenant_idx = 'x'",
            "SET tenant_id = 'x'",
            "SET x.app.tenant_id = 1",
            "SET search_path = public, \"$user\"",
            "SET statement_timeout = 0",
            "SET TIME ZONE 'UTC'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "select current_setting('app.tenant_id')",
            "select * from t where tenant_id = current_setting('app.tenant_id')::uuid",
            "select 'SET app.tenant_id = ''x'''",
            "select $$SET app.tenant_id = 'x'$$",
            "select $q$ $$ ; SET app.tenant_id = 'x'; $$ $q$",
            "/* SET app.tenant_id = 'x' */ select 1",
            "-- SET app.tenant_id = 'x'\nselect 1",
            "select 1 -- ; SET app.tenant_id = 'x'",
            "RESET ALL",
            "DISCARD ALL",
            "SHOW app.tenant_id",
            "select \"SET app.tenant_id = 'x'\" from t",
        ] {
            clean(sql);
        }
    }

    #[test]
    fn the_signature_setting_is_guarded_like_the_tenant_setting() {
        for (sql, detail) in [
            (
                "select set_config('tenantgate.signature', 'k1:00', false)",
                "set_config of the tenant signature",
            ),
            (
                "SELECT pg_catalog.set_config('TenantGate.Signature', 'k1:00', true)",
                "set_config of the tenant signature",
            ),
            (
                "SET tenantgate.signature = 'k1:00'",
                "SET of the tenant signature",
            ),
            (
                "set local \"tenantgate\".\"signature\" to 'x'",
                "SET of the tenant signature",
            ),
            (
                "RESET tenantgate.signature",
                "RESET of the tenant signature",
            ),
            (
                "ALTER ROLE app SET tenantgate.signature = 'x'",
                "ALTER ROLE ... SET of the tenant signature",
            ),
            (
                "UPDATE pg_settings SET setting = 'x' WHERE name = 'tenantgate.signature'",
                "UPDATE pg_settings of the tenant setting",
            ),
        ] {
            let f = one(sql);
            assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
            assert_eq!(f.detail, detail, "{sql:?}");
            // Never a value: an intercepted SET of the signature is no tenant switch.
            assert_eq!(f.value, None, "{sql:?}");
        }
        clean("select current_setting('tenantgate.signature', true)");
        clean("show tenantgate.signature");
    }

    #[test]
    fn set_config_of_the_tenant_setting() {
        for (sql, value) in [
            ("select set_config('app.tenant_id', 'x', false)", Some("x")),
            (
                "SELECT pg_catalog.set_config('APP.TENANT_ID', 'y', true)",
                Some("y"),
            ),
            (
                "select \"set_config\"('app.tenant_id', 'x', false)",
                Some("x"),
            ),
            (
                "select pg_catalog . \"SET_CONFIG\" ('app.tenant_id', 'x', false)",
                Some("x"),
            ),
            (
                "select SET_CONFIG(E'app.tenant\\x5fid', 'x', false)",
                Some("x"),
            ),
            (
                "select set_config(U&'app.tenant\\005fid', 'x', false)",
                Some("x"),
            ),
            (
                "select set_config('app.'\n'tenant_id', 'x', false)",
                Some("x"),
            ),
            (
                "select set_config($$app.tenant_id$$, $v$x$v$, false)",
                Some("x"),
            ),
            (
                "select set_config('app.tenant_id'::text, 'x'::text, false)",
                Some("x"),
            ),
            (
                "select set_config('app.tenant_id', current_user, false)",
                None,
            ),
            (
                "select 1 from t where set_config('app.tenant_id', 'x', true) is not null",
                Some("x"),
            ),
            (
                "with a as (select set_config('app.tenant_id','x',false)) select 1",
                Some("x"),
            ),
        ] {
            let f = one(sql);
            assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
            assert_eq!(f.detail, "set_config of the tenant setting", "{sql:?}");
            assert_eq!(f.value.as_deref(), value, "{sql:?}");
        }
    }

    #[test]
    fn set_config_with_a_non_constant_name_fails_closed() {
        for sql in [
            "select set_config($1, 'x', false)",
            "select set_config('app.' || 'tenant_id', 'x', false)",
            "select set_config(('app.tenant_id'), 'x', false)",
            "select set_config(lower('APP.TENANT_ID'), 'x', false)",
            "select set_config(setting_name => 'app.tenant_id', new_value => 'x', is_local => false)",
            "select set_config(name, 'x', false) from settings",
        ] {
            let f = one(sql);
            assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
            assert_eq!(f.detail, "set_config with a non-constant setting name", "{sql:?}");
            assert_eq!(f.value, None);
        }
    }

    #[test]
    fn set_config_of_other_settings_is_fine() {
        clean("select set_config('search_path', 'public', false)");
        clean("select set_config('statement_timeout', '5s', true)");
        clean("select 'set_config(''app.tenant_id'', ''x'', false)'");
        clean("select set_config from t");
    }

    #[test]
    fn alter_role_database_system_set_of_the_tenant_setting() {
        for sql in [
            "ALTER ROLE app SET app.tenant_id = 'x'",
            "ALTER USER app IN DATABASE d SET app.tenant_id TO 'x'",
            "ALTER ROLE ALL SET \"app\".\"tenant_id\" = 'x'",
            "ALTER DATABASE d SET app.tenant_id = 'x'",
            "ALTER SYSTEM SET app.tenant_id = 'x'",
            "ALTER ROLE app RESET app.tenant_id",
            "ALTER FUNCTION f(int) SET app.tenant_id = 'x'",
            "ALTER ROUTINE f SET app.tenant_id FROM CURRENT",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.tenant_id = 'x' AS 'select 1'",
        ] {
            let f = one(sql);
            assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
        }
        clean("ALTER ROLE app SET search_path = a, b");
        clean("ALTER ROLE app RESET ALL");
        clean("ALTER DATABASE d RENAME TO e");
    }

    #[test]
    fn update_pg_settings() {
        let f = one("UPDATE pg_settings SET setting = 'x' WHERE name = 'app.tenant_id'");
        assert_eq!(
            (f.rule, f.detail),
            (
                Rule::TenantTamper,
                "UPDATE pg_settings of the tenant setting"
            )
        );
        let f =
            one("update pg_catalog.pg_settings set setting = 'off' where name = 'row_security'");
        assert_eq!(f.rule, Rule::RlsTamper);
        let f = one("UPDATE ONLY \"pg_settings\" SET setting = 'x' WHERE name = $1");
        assert_eq!(f.rule, Rule::RlsTamper);
        let f = one("with u as (update pg_settings set setting = 'admin' where name = 'role' returning 1) select 1");
        assert_eq!(f.rule, Rule::RoleTamper);
        clean("UPDATE settings SET value = 'app.tenant_id'");
        clean("UPDATE myschema.pg_settings SET x = 1");
        clean("select * from pg_settings where name = 'app.tenant_id'");
        clean("insert into t values (1) on conflict (id) do update set v = 2");
    }

    // ----- RoleTamper -----

    #[test]
    fn role_changes() {
        for (sql, detail) in [
            ("SET ROLE admin", "SET ROLE"),
            ("set role none", "SET ROLE"),
            ("SET SESSION ROLE admin", "SET ROLE"),
            ("SET LOCAL ROLE 'admin'", "SET ROLE"),
            ("SET \"role\" = 'admin'", "SET ROLE"),
            ("RESET ROLE", "RESET ROLE"),
            (
                "SET SESSION AUTHORIZATION admin",
                "SET SESSION AUTHORIZATION",
            ),
            (
                "SET SESSION AUTHORIZATION DEFAULT",
                "SET SESSION AUTHORIZATION",
            ),
            (
                "SET LOCAL SESSION AUTHORIZATION admin",
                "SET SESSION AUTHORIZATION",
            ),
            (
                "SET session_authorization = admin",
                "SET SESSION AUTHORIZATION",
            ),
            ("RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION"),
            (
                "select set_config('role', 'admin', false)",
                "set_config of role",
            ),
            (
                "select set_config('ROLE', 'admin', true)",
                "set_config of role",
            ),
            (
                "select set_config('session_authorization', 'admin', false)",
                "set_config of session_authorization",
            ),
            (
                "ALTER ROLE app SET role = 'admin'",
                "ALTER ROLE ... SET role",
            ),
            (
                "ALTER DATABASE d SET role TO admin",
                "ALTER DATABASE ... SET role",
            ),
            (
                "ALTER ROLE app SET SESSION AUTHORIZATION admin",
                "ALTER ROLE ... SET session_authorization",
            ),
        ] {
            let f = one(sql);
            assert_eq!((f.rule, f.detail), (Rule::RoleTamper, detail), "{sql:?}");
            assert_eq!(f.value, None);
        }
        clean("select 'set role x'");
        clean("select current_role, session_user");
        clean("SET role.x = 1");
        clean("update users set role = 'admin' where id = 1");
        clean("select role from users");
        clean("GRANT admin TO app");
    }

    // ----- RlsTamper -----

    #[test]
    fn row_security_changes() {
        for (sql, detail) in [
            ("SET row_security = off", "SET row_security"),
            ("set ROW_SECURITY to on", "SET row_security"),
            ("RESET row_security", "RESET row_security"),
            (
                "select set_config('row_security', 'off', false)",
                "set_config of row_security",
            ),
            (
                "ALTER TABLE t DISABLE ROW LEVEL SECURITY",
                "ALTER TABLE ... DISABLE ROW LEVEL SECURITY",
            ),
            (
                "alter table if exists only s.t add column c int, disable row level security",
                "ALTER TABLE ... DISABLE ROW LEVEL SECURITY",
            ),
            (
                "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
                "ALTER TABLE ... NO FORCE ROW LEVEL SECURITY",
            ),
            (
                "ALTER TABLE t ENABLE ROW LEVEL SECURITY, NO /* x */ FORCE ROW LEVEL SECURITY",
                "ALTER TABLE ... NO FORCE ROW LEVEL SECURITY",
            ),
            ("CREATE POLICY p ON t USING (true)", "CREATE POLICY"),
            ("ALTER POLICY p ON t USING (true)", "ALTER POLICY"),
            ("DROP POLICY p ON t", "DROP POLICY"),
            (
                "ALTER ROLE app SET row_security = off",
                "ALTER ROLE ... SET row_security",
            ),
            (
                "ALTER USER app SET row_security TO off",
                "ALTER ROLE ... SET row_security",
            ),
            (
                "ALTER DATABASE d SET row_security = off",
                "ALTER DATABASE ... SET row_security",
            ),
            (
                "ALTER SYSTEM SET row_security = off",
                "ALTER SYSTEM SET row_security",
            ),
            ("ALTER ROLE app BYPASSRLS", "ALTER ROLE ... BYPASSRLS"),
            (
                "ALTER ROLE app WITH LOGIN BYPASSRLS",
                "ALTER ROLE ... BYPASSRLS",
            ),
            ("ALTER ROLE app SUPERUSER", "ALTER ROLE ... SUPERUSER"),
            (
                "CREATE ROLE x WITH LOGIN BYPASSRLS",
                "CREATE ROLE ... BYPASSRLS",
            ),
            ("CREATE USER x SUPERUSER", "CREATE ROLE ... SUPERUSER"),
            (
                "UPDATE pg_settings SET setting = 'off'",
                "UPDATE pg_settings",
            ),
        ] {
            let f = one(sql);
            assert_eq!((f.rule, f.detail), (Rule::RlsTamper, detail), "{sql:?}");
        }
        for sql in [
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE t FORCE ROW LEVEL SECURITY",
            "ALTER TABLE t DISABLE TRIGGER ALL",
            "ALTER ROLE app NOBYPASSRLS",
            "ALTER ROLE bypassrls LOGIN",
            "CREATE ROLE x NOSUPERUSER NOBYPASSRLS",
            "select 'ALTER TABLE t DISABLE ROW LEVEL SECURITY'",
            "SHOW row_security",
            "select * from policy",
        ] {
            clean(sql);
        }
    }

    // ----- DoBlock and bodies -----

    #[test]
    fn do_blocks() {
        let f = one("DO $$ BEGIN PERFORM 1; END $$");
        assert_eq!(
            (f.rule, f.detail, f.span.clone()),
            (Rule::DoBlock, "DO block", 0..2)
        );
        assert_eq!(
            rules("do $$begin perform set_config('app.tenant_id', 'x', false); end$$"),
            [Rule::DoBlock, Rule::TenantTamper]
        );
        assert_eq!(
            rules("DO LANGUAGE plpgsql 'BEGIN SET ROLE admin; END'"),
            [Rule::DoBlock, Rule::RoleTamper]
        );
        assert_eq!(
            rules("DO $b$ BEGIN EXECUTE 'SET app.tenant_id = ''x'''; END $b$ LANGUAGE plpgsql"),
            [Rule::DoBlock, Rule::TenantTamper]
        );
        assert_eq!(
            rules("do $$ begin if true then set row_security = off; end if; end $$"),
            [Rule::DoBlock, Rule::RlsTamper]
        );
        assert_eq!(
            ins("DO $$ BEGIN PERFORM pg_catalog.SET_CONFIG('a', 'b', true); END $$").findings[1]
                .detail,
            "DO block calls set_config"
        );
        clean("select 'DO $$ begin end $$'");
        clean("select do from t");
    }

    #[test]
    fn function_bodies_calling_set_config() {
        for sql in [
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ select set_config('app.tenant_id', 'x', false) $$",
            "create or replace function f() returns void as 'select SET_CONFIG(''a'', ''b'', false)' language sql",
            "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN PERFORM \"set_config\"('x', 'y', true); END $$",
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpython3u AS $$ plpy.execute(\"select set_config('app.tenant_id','x',false)\") $$",
        ] {
            let f = one(sql);
            assert_eq!(
                (f.rule, f.detail),
                (Rule::TenantTamper, "function body calls set_config"),
                "{sql:?}"
            );
        }
        let f = one(
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET ROLE admin; END $$",
        );
        assert_eq!(
            (f.rule, f.detail),
            (Rule::RoleTamper, "function body sets role")
        );
        let f = one(
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'set local app.tenant_id = ''x'''; END $$",
        );
        assert_eq!(
            (f.rule, f.detail),
            (Rule::TenantTamper, "function body sets the tenant setting")
        );
        clean(
            "CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ select current_setting('app.tenant_id')::uuid $$",
        );
        clean(
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET role = 'x'; END $$",
        );
        clean("CREATE TABLE t (body text DEFAULT 'set_config')");
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; \
                   SELECT CASE WHEN true THEN 1 ELSE 2 END; END; SELECT 2;";
        let i = ins(sql);
        assert_eq!(i.statements, 2);
        assert!(i.findings.is_empty());

        let sql = "create or replace procedure p() begin atomic select 1; select case when x then \
                   case when y then 1 end end from t; end ; set role admin";
        let i = ins(sql);
        assert_eq!(i.statements, 2);
        assert_eq!(i.findings.len(), 1);
        assert_eq!(&sql[i.findings[0].statement.clone()], "set role admin");

        // A statement inside the body is still checked, and reported with the whole CREATE.
        let sql = "CREATE FUNCTION f() RETURNS void BEGIN ATOMIC SELECT set_config('app.tenant_id', 'x', false); END";
        let f = one(sql);
        assert_eq!(f.rule, Rule::TenantTamper);
        assert_eq!(f.statement, 0..sql.len());

        // Keywords used as labels do not close the body.
        let sql = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1 AS end, t.case FROM t; END; SELECT 3";
        assert_eq!(ins(sql).statements, 2);
        // A bare column label `end` (accepted by PostgreSQL) does not close the body either:
        // the closing END always starts a statement.
        let sql = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1 end; END; SET ROLE x";
        let i = ins(sql);
        assert_eq!((i.statements, i.flags), (2, Flags::empty()));
        assert_eq!(&sql[i.findings[0].statement.clone()], "SET ROLE x");
        let sql = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC END; SELECT 2";
        assert_eq!(ins(sql).statements, 2);
        // BEGIN ATOMIC only matters in CREATE FUNCTION/PROCEDURE.
        assert_eq!(ins("select begin atomic; select 2").statements, 2);
        assert_eq!(ins("BEGIN; select 1; END;").statements, 3);
    }

    // ----- TenantLiteral -----

    #[test]
    fn literals_compared_with_the_tenant_column() {
        for (sql, want) in [
            ("select * from t where tenant_id = 'A'", vec!["A"]),
            ("select * from t x where x.tenant_id = 'A'", vec!["A"]),
            ("select * from t where s.x.tenant_id='A'", vec!["A"]),
            ("select * from t where \"tenant_id\" = 'A'", vec!["A"]),
            ("select * from t where TENANT_ID = 'A'", vec!["A"]),
            ("select * from t where 'A' = tenant_id", vec!["A"]),
            ("select * from t where 'A' = x.\"tenant_id\"", vec!["A"]),
            ("select * from t where tenant_id IN ('A', 'B')", vec!["A", "B"]),
            ("select * from t where tenant_id not in ('A'::uuid, 'B'::uuid)", vec!["A", "B"]),
            ("select * from t where tenant_id = 'A'::uuid", vec!["A"]),
            ("select * from t where tenant_id = CAST('A' AS uuid)", vec!["A"]),
            ("select * from t where tenant_id = uuid 'A'", vec!["A"]),
            ("select * from t where tenant_id <> 'A'", vec!["A"]),
            ("select * from t where tenant_id != 'A'", vec!["A"]),
            ("select * from t where tenant_id = ('A')", vec!["A"]),
            ("select * from t where 'A'::uuid = tenant_id", vec!["A"]),
            ("select * from t where CAST('A' AS uuid) = tenant_id", vec!["A"]),
            ("select * from t where tenant_id = E'\\x41'", vec!["A"]),
            ("select * from t where tenant_id = $$A$$", vec!["A"]),
            ("select * from t where tenant_id = 'A'\n'B'", vec!["AB"]),
            ("select * from t where tenant_id is not distinct from 'A'", vec!["A"]),
            ("select * from t where tenant_id = ANY (ARRAY['A', 'B'])", vec!["A", "B"]),
            ("select * from t where tenant_id = any('{A,\"B\",NULL}'::uuid[])", vec!["A", "B"]),
            (
                "select * from a join b on b.tenant_id = 'A' where a.tenant_id in ('B') and 'C' <> tenant_id",
                vec!["A", "B", "C"],
            ),
            ("update t set tenant_id = 'A' where id = 1", vec!["A"]),
        ] {
            assert_eq!(literals(sql), want, "{sql:?}");
        }
        for sql in [
            "select * from t where tenant_id = $1",
            "select * from t where tenant_id = current_setting('app.tenant_id')::uuid",
            "select * from t where other_id = 'A'",
            "select * from t where tenant_idx = 'A'",
            "select * from t where 'A' = tenant_id(x)",
            "select tenant_id, 'A' from t",
            "select * from t where tenant_id = x.y and name = 'A'",
            "insert into t (tenant_id, name) values ('A', 'b')",
            "select 'tenant_id = ''A'''",
        ] {
            assert!(literals(sql).is_empty(), "{sql:?}");
        }
    }

    #[test]
    fn literal_finding_ranges_point_at_the_literal() {
        let sql = "select 1; select * from t where tenant_id = 'A'";
        let f = one(sql);
        assert_eq!(
            &sql[f.statement.clone()],
            "select * from t where tenant_id = 'A'"
        );
        assert_eq!(&sql[f.span.clone()], "'A'");
    }

    // ----- The lexer -----

    #[test]
    fn backslashes_follow_standard_conforming_strings() {
        let e = "select E'\\';set role x;'";
        clean(e);
        assert_eq!(ins(e).statements, 1);
        let plain = "select '\\';set role x;'";
        assert_eq!(rules(plain), [Rule::RoleTamper]);
        let off = inspect(plain, &OFF);
        check_invariants(plain, &off);
        assert!(off.findings.is_empty());
        assert_eq!(off.statements, 1);
        // The other way round: with standard strings a backslash hides nothing.
        let sql = "select 'a\\'; set role x; --'";
        assert_eq!(rules(sql), [Rule::RoleTamper]);
        assert!(inspect(sql, &OFF).findings.is_empty());
        // N'' follows the setting too.
        assert_eq!(rules("select N'\\';set role x;'"), [Rule::RoleTamper]);
        assert!(inspect("select N'\\';set role x;'", &OFF)
            .findings
            .is_empty());
        // A continuation keeps the escape rules of the literal it continues.
        clean("select E'a'\n'\\';set role x;--'");
        assert_eq!(rules("select 'a'\n'\\';set role x;--'"), [Rule::RoleTamper]);
    }

    #[test]
    fn comments_nest_and_hide_semicolons() {
        for sql in [
            "/* a /* b */ ; set role x; */ select 1",
            "/*/ ; set role x; */ select 1",
            "select 1 /* ; */ /* /* ; */ ; set role x */",
            "select 1 -- ; set role x",
            "select 1 --\r; set role x",
            "select 1 +/* ; set role x */ 2",
            "select 1 +-- ; set role x\n 2",
        ] {
            let i = ins(sql);
            if sql.contains('\r') {
                assert_eq!(i.statements, 2, "{sql:?}");
                assert_eq!(rules(sql), [Rule::RoleTamper]);
            } else {
                assert!(i.findings.is_empty(), "{sql:?}: {:?}", i.findings);
                assert_eq!(i.statements, 1, "{sql:?}");
            }
        }
        assert_eq!(rules("select 1 */ ; set role x"), [Rule::RoleTamper]);
        assert_eq!(rules("select 1 /* */ ; set role x"), [Rule::RoleTamper]);
        assert_eq!(ins("/* unterminated ; set role x").statements, 0);
        assert_eq!(ins("/* only */ -- comments\n").statements, 0);
    }

    #[test]
    fn dollar_quotes_and_parameters() {
        clean("select $a$ $$ ; set role x; $b$ $a$");
        clean("select $é$ ; set role x; $é$");
        clean("select $_1$ ; set role x; $_1$");
        clean("select $abc$ $ab$ ; set role x ; $abc$");
        clean("select $$ unterminated ; set role x");
        assert_eq!(rules("select $1;set role x"), [Rule::RoleTamper]);
        assert_eq!(
            rules("select $1$$; set role x; $$"),
            [Rule::RoleTamper].repeat(0)
        );
        // `$` inside an identifier does not open a quote.
        assert_eq!(
            rules("select a$$ from t; set role x; select $$"),
            [Rule::RoleTamper]
        );
        assert_eq!(
            rules("select a$b$ from t; set role x; select 1"),
            [Rule::RoleTamper]
        );
        // A tag cannot start with a digit: `$1x$` is a parameter.
        assert_eq!(rules("select $1x$; set role x; $1x$"), [Rule::RoleTamper]);
        assert_eq!(ins("select $q$a$q$;select 2").statements, 2);
    }

    #[test]
    fn quoted_identifiers_and_prefixed_strings() {
        clean("select \"a;\"\" ; set role x\" from t");
        clean("select U&\"a;\"\" ; set role x\" from t");
        clean("select U&'\\0041 ; set role x' UESCAPE '!'");
        clean("select X'1F ; set role x'");
        // A bit string ends at the first quote: '' starts a new literal.
        clean("select B'01''; set role x; --'");
        assert_eq!(rules("select e'a' ; set role x"), [Rule::RoleTamper]);
        // An identifier ending in e/b/x/n/u is not a prefix.
        assert_eq!(rules("select xe'\\'; set role x; --'"), [Rule::RoleTamper]);
        assert_eq!(rules("select the'\\'; set role x; --'"), [Rule::RoleTamper]);
        assert!(inspect("select the'\\'; set role x; --'", &OFF)
            .findings
            .is_empty());
        // Adjacent literals without a newline are separate tokens.
        assert_eq!(literals("select 1 from t where tenant_id = 'a' 'b'"), ["a"]);
    }

    #[test]
    fn multibyte_text_everywhere() {
        let sql = "select 'é'; SET ROLE «x»; select \"ü;\" from ñ";
        let i = ins(sql);
        assert_eq!(i.statements, 3);
        let f = &i.findings[0];
        assert_eq!(&sql[f.statement.clone()], "SET ROLE «x»");
        // `é$$` is an identifier, not a dollar quote.
        assert_eq!(rules("select é$$ ; set role x"), [Rule::RoleTamper]);
        assert_eq!(ins("select 😀; select 2").statements, 2);
    }

    #[test]
    fn statement_counting() {
        for (sql, n) in [
            ("", 0),
            (";", 0),
            (" ;; ; ", 0),
            ("-- c\n", 0),
            ("select 1", 1),
            ("select 1;", 1),
            ("select 1;;select 2;", 2),
            ("select 1; select 2; select 3", 3),
            ("select ';'; select \";\"", 2),
            ("select 'abc", 1),
            ("select \"abc", 1),
            ("BEGIN; UPDATE t SET x = 1; COMMIT;", 3),
        ] {
            assert_eq!(ins(sql).statements, n, "{sql:?}");
        }
    }

    #[test]
    fn findings_report_their_own_statement() {
        let sql = "select 1;\n  /* c */ SET ROLE admin /* d */ ;select 2; select set_config('row_security','off',false)";
        let i = ins(sql);
        assert_eq!(i.statements, 4);
        assert_eq!(i.findings.len(), 2);
        assert_eq!(&sql[i.findings[0].statement.clone()], "SET ROLE admin");
        assert_eq!(&sql[i.findings[0].span.clone()], "SET ROLE");
        assert_eq!(
            &sql[i.findings[1].statement.clone()],
            "select set_config('row_security','off',false)"
        );
        assert_eq!(i.findings[1].rule, Rule::RlsTamper);
    }

    #[test]
    fn dynamic_sql_is_inspected() {
        let f = one("select query_to_xml('select set_config(''app.tenant_id'', ''x'', false)', true, true, '')");
        assert_eq!(
            (f.rule, f.value.as_deref()),
            (Rule::TenantTamper, Some("x"))
        );
        assert_eq!(
            rules("select ts_stat('set role admin')"),
            [Rule::RoleTamper]
        );
        assert_eq!(
            one("select query_to_xml($1, true, true, '')").detail,
            "dynamic SQL with a non-constant query"
        );
        clean("select query_to_xml('select * from t', true, true, '')");
        let deep = "select query_to_xml('select query_to_xml(''select query_to_xml(''''select query_to_xml(''''''''select 1'''''''', true, true, '''''''')'''', true, true, '''')'', true, true, '''')', true, true, '')";
        assert_eq!(one(deep).detail, "dynamic SQL nested too deeply");
    }

    // ----- Flags -----

    #[test]
    fn flags_of_statement_kinds() {
        let no_txn = Flags::NO_TXN_BLOCK;
        for sql in [
            "VACUUM",
            "vacuum (analyze) t",
            "CREATE DATABASE d",
            "DROP DATABASE d",
            "CREATE TABLESPACE s LOCATION '/x'",
            "DROP TABLESPACE s",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)",
            "DROP INDEX CONCURRENTLY i",
            "REINDEX TABLE CONCURRENTLY t",
            "REINDEX (VERBOSE) INDEX CONCURRENTLY i",
            "REINDEX DATABASE d",
            "REINDEX SYSTEM",
            "ALTER SYSTEM SET work_mem = '1MB'",
            "CLUSTER",
            "CLUSTER VERBOSE",
            "CLUSTER (VERBOSE)",
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
            "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
            "ALTER SUBSCRIPTION s REFRESH PUBLICATION",
            "DROP SUBSCRIPTION s",
            "DISCARD ALL",
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
            "ALTER DATABASE d SET TABLESPACE s",
        ] {
            assert!(flags(sql).contains(no_txn), "{sql:?}");
        }
        for sql in [
            "CREATE INDEX i ON t (a)",
            "REINDEX TABLE t",
            "CLUSTER t",
            "CLUSTER VERBOSE t USING i",
            "COMMIT",
            "ANALYZE t",
            "ALTER TABLE p DETACH PARTITION c",
        ] {
            assert!(!flags(sql).contains(no_txn), "{sql:?}");
        }
        for sql in [
            "BEGIN",
            "begin isolation level serializable",
            "START TRANSACTION",
            "COMMIT",
            "END",
            "ROLLBACK",
            "ROLLBACK TO SAVEPOINT a",
            "ABORT",
            "SAVEPOINT a",
            "RELEASE a",
            "PREPARE TRANSACTION 'x'",
        ] {
            assert_eq!(flags(sql), Flags::TXN_CONTROL, "{sql:?}");
        }
        assert_eq!(flags("PREPARE p AS SELECT 1"), Flags::SQL_PREPARE);
        assert_eq!(flags("PREPARE p (int) AS SELECT $1"), Flags::SQL_PREPARE);
        assert_eq!(flags("EXECUTE p (1)"), Flags::SQL_EXECUTE);
        assert_eq!(flags("EXPLAIN (ANALYZE) EXECUTE p"), Flags::SQL_EXECUTE);
        assert_eq!(flags("DEALLOCATE p"), Flags::SQL_DEALLOCATE);
        assert_eq!(
            flags("DEALLOCATE PREPARE ALL"),
            Flags::SQL_DEALLOCATE | Flags::DISCARD_OR_RESET_ALL
        );
        assert_eq!(flags("DISCARD PLANS"), Flags::DISCARD_OR_RESET_ALL);
        assert_eq!(
            flags("RESET ALL"),
            Flags::DISCARD_OR_RESET_ALL | Flags::RESETS_SETTINGS
        );
        assert_eq!(flags("DISCARD TEMP"), Flags::empty());
        assert_eq!(flags("LISTEN c"), Flags::LISTEN);
        assert_eq!(flags("UNLISTEN *"), Flags::empty());
        for sql in [
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "declare c binary no scroll cursor with hold for select 1",
        ] {
            assert_eq!(flags(sql), Flags::HOLD_CURSOR, "{sql}");
        }
        assert_eq!(
            flags("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"),
            Flags::empty()
        );
        assert_eq!(
            flags("DECLARE c CURSOR FOR SELECT 'with hold'"),
            Flags::empty()
        );
        for sql in [
            "CREATE TEMP TABLE t (x int)",
            "create global temporary table t (x int)",
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "create table pg_temp.t (x int)",
            "create function \"pg_temp\".f() returns int language sql as 'select 1'",
        ] {
            assert!(flags(sql).contains(Flags::TEMP_OBJECT), "{sql}");
        }
        assert!(!flags("CREATE TABLE temps (x int)").contains(Flags::TEMP_OBJECT));
        assert!(!flags("create temp table c (x int) on commit drop").contains(Flags::TEMP_OBJECT));
        assert!(
            flags("create temp table c (x int) on commit delete rows").contains(Flags::TEMP_OBJECT)
        );
        for sql in [
            "SELECT pg_advisory_lock(1)",
            "select pg_catalog.pg_try_advisory_lock_shared(1, 2)",
        ] {
            assert_eq!(flags(sql), Flags::SESSION_LOCK, "{sql}");
        }
        assert_eq!(flags("SELECT pg_advisory_xact_lock(1)"), Flags::empty());
        assert_eq!(flags("SET TimeZone = 'UTC'"), Flags::empty());
        assert_eq!(flags("SET TIME ZONE 'UTC'"), Flags::empty());
        assert_eq!(flags("SET NAMES 'UTF8'"), Flags::empty());
        assert_eq!(
            flags("select set_config('search_path', 'x', false)"),
            Flags::SESSION_SET
        );
        assert_eq!(
            flags("select set_config('search_path', lower('X'), $1)"),
            Flags::SESSION_SET
        );
        assert_eq!(
            flags("select set_config('search_path', concat('a', 'b'), true)"),
            Flags::empty()
        );
        assert_eq!(
            flags("RESET ALL; SELECT 1"),
            Flags::DISCARD_OR_RESET_ALL | Flags::RESETS_SETTINGS | Flags::RESET_NOT_LAST
        );
        assert_eq!(
            flags("SELECT 1; RESET ALL"),
            Flags::DISCARD_OR_RESET_ALL | Flags::RESETS_SETTINGS
        );
        assert_eq!(
            ins("SET search_path = a; set session characteristics as transaction read only; select set_config('Work_Mem', '1MB', false); reset \"App\".x").session_settings,
            vec![
                "search_path",
                "default_transaction_isolation",
                "default_transaction_read_only",
                "default_transaction_deferrable",
                "Work_Mem",
                "App.x"
            ]
        );
        assert_eq!(flags("NOTIFY c"), Flags::empty());
        assert_eq!(flags("SET search_path = x"), Flags::SESSION_SET);
        assert_eq!(flags("RESET search_path"), Flags::SESSION_SET);
        assert_eq!(flags("SET LOCAL search_path = x"), Flags::empty());
        assert_eq!(flags("SET TRANSACTION READ ONLY"), Flags::empty());
        assert_eq!(flags("select 1"), Flags::empty());
        assert_eq!(
            flags("select 1; begin; listen x"),
            Flags::TXN_CONTROL | Flags::LISTEN
        );
        // Statements inside a BEGIN ATOMIC body do not run now.
        assert_eq!(
            flags("CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END"),
            Flags::empty()
        );
    }

    #[test]
    fn names_in_the_proxys_namespace() {
        for sql in [
            "EXECUTE __tg_1",
            "execute \"__tg_abc_set\"('a', 'b')",
            "DEALLOCATE __TG_x",
            "deallocate prepare __tg_1",
            "PREPARE __tg_9 AS SELECT 1",
            "EXPLAIN (costs off) EXECUTE __tg_2",
        ] {
            assert_eq!(rules(sql), vec![Rule::ReservedName], "{sql}");
        }
        for sql in [
            "EXECUTE p",
            "DEALLOCATE ALL",
            "EXECUTE \"__TG_1\"",
            "PREPARE TRANSACTION '__tg'",
        ] {
            assert!(rules(sql).is_empty(), "{sql}");
        }
    }

    #[test]
    fn secrets() {
        let secret = Flags::CONTAINS_SECRET;
        for sql in [
            "CREATE ROLE x LOGIN PASSWORD 'p'",
            "CREATE USER x WITH ENCRYPTED PASSWORD 'p'",
            "ALTER USER x PASSWORD 'SCRAM-SHA-256$4096:abc'",
            "alter role x with password 'p' valid until 'infinity'",
            "CREATE GROUP g PASSWORD 'p'",
            "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'p')",
            "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
            "ALTER SUBSCRIPTION s CONNECTION 'host=x'",
            "select dblink_connect('host=x password=p')",
        ] {
            assert!(flags(sql).contains(secret), "{sql:?}");
        }
        assert!(!flags("select 1").contains(secret));
        assert!(!flags("ALTER ROLE x VALID UNTIL 'infinity'").contains(secret));
    }

    #[test]
    fn flags_debug_and_ops() {
        let f = Flags::TXN_CONTROL | Flags::LISTEN;
        assert_eq!(format!("{f:?}"), "{TXN_CONTROL, LISTEN}");
        assert!(f.contains(Flags::LISTEN) && !f.contains(Flags::NO_TXN_BLOCK));
        assert!(f.intersects(Flags::LISTEN | Flags::NO_TXN_BLOCK));
        assert_eq!((f & Flags::LISTEN).bits(), Flags::LISTEN.bits());
        let mut g = Flags::empty();
        assert!(g.is_empty());
        g.insert(Flags::SQL_PREPARE);
        assert_eq!(g, Flags::SQL_PREPARE);
    }

    #[test]
    fn empty_options_do_not_match_everything() {
        let o = InspectOptions {
            setting: "",
            tenant_column: "",
            standard_conforming_strings: true,
        };
        assert!(inspect("select * from t where \"\" = 'x'; set x.y = 1", &o)
            .findings
            .is_empty());
    }

    #[test]
    fn texts_too_large_to_inspect_fail_closed() {
        let i = too_large(5);
        assert_eq!(i.statements, 1);
        assert_eq!(i.findings.len(), 1);
        assert_eq!(i.findings[0].rule, Rule::TenantTamper);
        assert_eq!(i.findings[0].statement, 0..5);
        assert!(i.flags.contains(Flags::CONTAINS_SECRET));
        assert_eq!(Rule::TenantLiteral.as_str(), "tenant_literal");
    }

    #[test]
    fn identifiers_are_truncated_like_postgres() {
        let long = format!("app.{}", "t".repeat(63));
        let o = InspectOptions {
            setting: &long,
            ..OPTS
        };
        let sql = format!("SET app.{} = 'x'", "t".repeat(70));
        let i = inspect(&sql, &o);
        assert_eq!(i.findings.len(), 1, "{:?}", i.findings);
        clean(&format!("SET app.tenant_id{} = 'x'", "x".repeat(60)));
    }

    // ----- Robustness -----

    const TRICKY: &[&str] = &[
        "SET app.tenant_id = 'x'",
        "select E'\\';set role x;'",
        "select '\\';set role x;'",
        "/* a /* b */ ; set role x; */ select 1",
        "select $a$ $$ ; set role x; $b$ $a$",
        "select U&'!0041' UESCAPE '!'; SET app.U&\"tenant\\005fid\" = 'x'",
        "select U&'a' UESCAPE U&'b' UESCAPE U&'c' UESCAPE",
        "select B'01''; set role x; --'",
        "select 'a'\n-- c\n'b' ; set role x",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SET ROLE x",
        "DO $$ BEGIN EXECUTE 'SET ROLE ''x'''; END $$",
        "select * from t where tenant_id in ('A', 'B'::uuid, CAST('C' AS uuid), uuid 'D') and 'E' = x.tenant_id",
        "select * from t where tenant_id = any('{\"a\\\"b\", c , NULL, {d}}')",
        "select query_to_xml('select set_config(''app.tenant_id'', ''x'', false)', true, true, '')",
        "UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'app.tenant_id'",
        "ALTER ROLE app IN DATABASE d SET app.tenant_id = 'x'",
        "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
        "select 'é'; SET ROLE «x»; select \"ü;\" from ñ $é$",
        "select E'\\u00e9\\U0001F600\\uD83D\\uDE00\\x41\\101'",
        "select U&'\\+01F600 \\D83D\\DE00'",
        "SET app.tenant_id = -",
        "set",
        "reset session",
        "set session",
        "alter role",
        "create or replace",
        "select set_config(",
        "select query_to_xml(",
        "select * from t where tenant_id in (",
        "select * from t where 'a' = (",
        "\"",
        "U&\"",
        "E'\\",
        "$a",
        "$$",
        "$a$",
        "1e'x'",
        ".5e+",
        "a--b/*c",
        "*/*/",
    ];

    #[test]
    fn never_panics_on_prefixes() {
        for sql in TRICKY {
            for (i, _) in sql.char_indices() {
                let p = &sql[..i];
                check_invariants(p, &inspect(p, &OPTS));
                check_invariants(p, &inspect(p, &OFF));
            }
        }
    }

    #[test]
    fn never_panics_on_mutations() {
        // xorshift64*: deterministic, std-only.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let alphabet: &[u8] = b"'\"$;/*-\\eEuUbBxXnN&()[],.:=<>!\n\r\t 0123456789aAzZ_";
        for round in 0..4000 {
            let base = TRICKY[(rnd() % TRICKY.len() as u64) as usize];
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..1 + rnd() % 6 {
                let at = if bytes.is_empty() {
                    0
                } else {
                    (rnd() % bytes.len() as u64) as usize
                };
                match rnd() % 4 {
                    0 => bytes.insert(at, alphabet[(rnd() % alphabet.len() as u64) as usize]),
                    1 if !bytes.is_empty() => {
                        bytes.remove(at);
                    }
                    2 if !bytes.is_empty() => bytes[at] = (rnd() & 0xff) as u8,
                    _ => {
                        let other = TRICKY[(rnd() % TRICKY.len() as u64) as usize].as_bytes();
                        let cut = (rnd() % (other.len() as u64 + 1)) as usize;
                        bytes.splice(at..at, other[..cut].iter().copied());
                    }
                }
            }
            let sql = String::from_utf8_lossy(&bytes);
            let o = if round % 2 == 0 { &OPTS } else { &OFF };
            check_invariants(&sql, &inspect(&sql, o));
        }
    }

    #[test]
    fn linear_time_on_adversarial_input() {
        let n = 20_000;
        let inputs = [
            "'a' = tenant_id or ".repeat(n),
            "tenant_id in ('a', ".repeat(n),
            "update pg_settings set x = 'app.tenant_id' ".repeat(n),
            "select set_config(".repeat(n),
            "$a$ $aa$ $a".repeat(n),
            format!("$x$ {}", "$".repeat(n * 10)),
            format!(
                "$aaaaaaaaaaaaaaaaaaaaaaaa$ {}",
                "$aaaaaaaaaaaaaaaaaaaaaaa ".repeat(n)
            ),
            "/*".repeat(n),
            "(".repeat(n * 10),
            "U&'a' UESCAPE ".repeat(n),
            format!("create function f() begin atomic {}", "case ".repeat(n)),
            format!("do $$ {} $$", "execute 'set x'; ".repeat(n)),
            "query_to_xml('query_to_xml(''x'')') ".repeat(n),
            "alter role x set a.b = 1, ".repeat(n),
            "SET a.".repeat(n),
            "'a'\n".repeat(n),
            "E'\\\\".repeat(n),
        ];
        let start = std::time::Instant::now();
        for sql in &inputs {
            check_invariants(sql, &inspect(sql, &OPTS));
            check_invariants(sql, &inspect(sql, &OFF));
        }
        // Debug builds: a quadratic scan over these inputs would take minutes.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    mod alloc_count {
        //! Counts this thread's allocations, to check the no-allocation promise.
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static ALLOCS: Cell<usize> = const { Cell::new(0) };
        }

        pub struct Counting;

        // SAFETY: forwards every call unchanged to the system allocator.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
                // SAFETY: same contract as the caller's.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: same contract as the caller's.
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
                let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
                // SAFETY: same contract as the caller's.
                unsafe { System.realloc(ptr, layout, new) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn count() -> usize {
            ALLOCS.with(|c| c.get())
        }
    }

    #[test]
    fn ordinary_sql_does_not_allocate() {
        for sql in [
            "SELECT * FROM customers WHERE id = $1",
            "INSERT INTO orders (customer_id, total) VALUES ($1, $2) RETURNING id",
            "SELECT \"public\".\"users\".\"id\", \"users\".\"tenant_id\" FROM \"public\".\"users\" WHERE \"users\".\"tenant_id\" = $1",
            "with x as (select * from t where tenant_id = current_setting('app.tenant_id')::uuid) select * from x; select 2",
            "SET LOCAL search_path = public; RESET ALL; DISCARD ALL",
            "BEGIN; UPDATE t SET v = v + 1 WHERE id = $1; COMMIT",
            "select E'a\\nb', U&'\\0041', $t$x$t$, B'01' /* c */ -- d",
        ] {
            let before = alloc_count::count();
            let i = inspect(sql, &OPTS);
            let after = alloc_count::count();
            assert!(i.findings.is_empty(), "{sql:?}");
            assert_eq!(after - before, 0, "{sql:?} allocated");
        }
    }
}

/// The catalog-derived rules, every spelling (kept apart from `tests` to ease merging).
#[cfg(test)]
mod catalog_tests {
    use super::*;

    const OPTS: InspectOptions<'static> = InspectOptions {
        setting: "app.tenant_id",
        tenant_column: "tenant_id",
        standard_conforming_strings: true,
    };

    fn found(sql: &str) -> Vec<(Rule, Option<String>)> {
        inspect(sql, &OPTS)
            .findings
            .into_iter()
            .map(|f| (f.rule, f.value))
            .collect()
    }

    fn has(sql: &str, rule: Rule) -> bool {
        found(sql).iter().any(|(r, _)| *r == rule)
    }

    #[test]
    fn unsafe_client_encodings_in_every_spelling() {
        for sql in [
            "SET client_encoding = 'SJIS'",
            "set client_encoding to sjis",
            "SET SESSION client_encoding TO 'Shift_JIS'",
            "SET LOCAL client_encoding = \"BIG5\"",
            "set \"client_encoding\" = 'gbk'",
            "SET CLIENT_ENCODING = 'win932'",
            "set names 'UHC'",
            "SET NAMES johab",
            "select 1; SET client_encoding = E'GB18030'",
            "select set_config('client_encoding', 'SJIS', false)",
            "select pg_catalog.set_config('CLIENT_ENCODING', 'windows-936', true)",
            "ALTER ROLE app SET client_encoding = 'SJIS'",
            "ALTER DATABASE app SET client_encoding TO 'BIG5'",
            "create function f() returns int language sql set client_encoding = 'sjis' as 'select 1'",
            "select query_to_xml('set client_encoding = ''sjis''', true, true, '')",
        ] {
            assert!(has(sql, Rule::UnsafeEncoding), "{sql}");
        }
        assert_eq!(
            found("select set_config('client_encoding', current_setting('x'), false)"),
            vec![(Rule::UnsafeEncoding, None)],
            "a non-constant value fails closed"
        );
        for sql in [
            "SET client_encoding = 'UTF8'",
            "SET NAMES 'utf8'",
            "set client_encoding to default",
            "reset client_encoding",
            "show client_encoding",
            "select set_config('client_encoding', 'EUC_JP', false)",
            "select 'SJIS' as names",
            "update t set names = 'sjis'",
        ] {
            assert!(!has(sql, Rule::UnsafeEncoding), "{sql}");
        }
    }

    #[test]
    fn sql_running_functions_are_inspected() {
        let tamper = "select set_config(''app.tenant_id'', ''x'', true)";
        for sql in [
            format!("select ts_rewrite('a'::tsquery, '{tamper}')"),
            format!("select pg_catalog.ts_rewrite(to_tsquery('a'), '{tamper}'::text)"),
            format!("select \"ts_rewrite\"('a', '{tamper}')"),
            format!("select TS_REWRITE('a', '{tamper}')"),
            format!("select * from crosstab('{tamper}')"),
            format!("select * from crosstab('select 1', '{tamper}')"),
            format!("select * from crosstab3('{tamper}')"),
        ] {
            assert!(has(&sql, Rule::TenantTamper), "{sql}");
        }
        for sql in [
            "select ts_rewrite('a'::tsquery, q)",
            "select ts_rewrite('a'::tsquery, 'select ' || 'x')",
            "select ts_rewrite('a', $1)",
            "select * from connectby('t', 'id', 'parent', '1', 0)",
            "select * from crosstab(format('select %s', 1))",
        ] {
            assert!(has(sql, Rule::TenantTamper), "fails closed: {sql}");
        }
        for sql in [
            "select ts_rewrite('a'::tsquery, 'b'::tsquery, 'c'::tsquery)",
            "select ts_rewrite('a'::tsquery, 'select q, s from aliases')",
            "select * from crosstab('select 1', 3)",
        ] {
            assert!(found(sql).is_empty(), "{sql}: {:?}", found(sql));
        }
        let other = "select ts_rewrite('a'::tsquery, 'select t, s from pg_stat_activity')";
        assert!(has(other, Rule::OtherSessions));
    }

    #[test]
    fn catalog_objects_in_every_spelling() {
        let os = |n: &str| (Rule::OtherSessions, Some(n.to_owned()));
        for (sql, want) in [
            ("select * from pg_stat_activity", os("pg_stat_activity")),
            (
                "SELECT query FROM PG_CATALOG.PG_STAT_ACTIVITY",
                os("pg_stat_activity"),
            ),
            ("select * from \"pg_stat_activity\"", os("pg_stat_activity")),
            (
                "select * from pg_catalog.\"pg_stat_activity\"",
                os("pg_stat_activity"),
            ),
            (
                "select * from U&\"pg_stat_activit\\0079\"",
                os("pg_stat_activity"),
            ),
            ("table pg_stat_activity", os("pg_stat_activity")),
            (
                "select (pg_stat_get_activity(null)).query",
                os("pg_stat_get_activity"),
            ),
            (
                "select pg_stat_get_backend_activity(1)",
                os("pg_stat_get_backend_activity"),
            ),
            (
                "select * from pg_stat_progress_vacuum",
                os("pg_stat_progress_vacuum"),
            ),
            ("select * from pg_stat_ssl", os("pg_stat_ssl")),
            ("select * from pg_locks", os("pg_locks")),
            ("select pg_blocking_pids(1)", os("pg_blocking_pids")),
            ("select pg_cancel_backend(123)", os("pg_cancel_backend")),
            (
                "select pg_catalog.pg_terminate_backend(123)",
                os("pg_terminate_backend"),
            ),
            (
                "select * from pg_prepared_statements",
                os("pg_prepared_statements"),
            ),
            ("select * from pg_cursors", os("pg_cursors")),
            ("select * from pg_prepared_xacts", os("pg_prepared_xacts")),
            (
                "select 'pg_stat_activity'::regclass",
                os("pg_stat_activity"),
            ),
            ("select to_regclass('pg_catalog.pg_locks')", os("pg_locks")),
            (
                "select 'pg_cancel_backend(int)'::regprocedure",
                os("pg_cancel_backend"),
            ),
            (
                "select count(*) from pg_stat_statements",
                os("pg_stat_statements"),
            ),
        ] {
            let f = found(sql);
            assert!(f.contains(&want), "{sql}: {f:?}");
        }
        for sql in [
            "select lo_get(16384)",
            "select loread(lo_open(16384, 262144), 100)",
            "SELECT LOWRITE(0, 'x')",
            "select * from pg_largeobject_metadata",
            "select data from pg_catalog.pg_largeobject",
            "select lo_import('/etc/passwd')",
        ] {
            assert!(has(sql, Rule::LargeObject), "{sql}");
        }
        for sql in [
            "select n_tup_ins from pg_stat_user_tables",
            "select * from pg_statio_user_tables",
            "select pg_stat_get_tuples_inserted('t'::regclass)",
            "select pg_relation_size('customers')",
            "select pg_total_relation_size('customers')",
            "select reltuples from pg_class where relname = 'customers'",
            "select c.relpages from pg_class c",
            "select * from pgstattuple('customers')",
        ] {
            assert!(has(sql, Rule::Statistics), "{sql}");
        }
        for sql in [
            "select * from customers",
            "select lower(name) from customers where location = 'x' for update",
            "select relname from pg_class",
            "select * from pg_stats where tablename = 'customers'",
            "select pg_backend_pid()",
            "select 'hello' as greeting, 'release' as r",
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2",
        ] {
            assert!(found(sql).is_empty(), "{sql}: {:?}", found(sql));
        }
    }

    #[test]
    fn mentions_matches_contains_ci() {
        let hints: [&[u8]; 3] = [b"pg_", b"loread", b"analy"];
        for text in [
            "",
            "p",
            "pg",
            "PG_",
            "xx Pg_yy",
            "select LOREAD(1)",
            "explain Analyse",
            "pgx lorea",
            "'pg_locks'",
            "a.pg_x",
            "\"pg_x\"",
        ] {
            let want = hints.iter().any(|h| contains_ci(text.as_bytes(), h));
            assert_eq!(mentions(text.as_bytes(), &hints), want, "{text:?}");
        }
        for text in ["xpg_", "p\u{e9}g_", "\u{ff}pg_", "_pg_", "$pg_", "9pg_"] {
            assert!(
                !mentions(text.as_bytes(), &hints),
                "not a word start: {text:?}"
            );
        }
    }

    #[test]
    fn function_and_do_bodies_are_searched() {
        for (sql, rule) in [
            (
                "create function f() returns setof text language sql as $$ select query from pg_stat_activity $$",
                Rule::OtherSessions,
            ),
            (
                "create function f() returns void language plpgsql as $$ begin perform pg_cancel_backend(1); end $$",
                Rule::OtherSessions,
            ),
            (
                "do $$ begin execute 'explain analyze select 1'; end $$",
                Rule::Statistics,
            ),
            (
                "create procedure p() language sql as 'select lo_get(1)'",
                Rule::LargeObject,
            ),
            (
                "do $$ begin set client_encoding = 'sjis'; end $$",
                Rule::UnsafeEncoding,
            ),
        ] {
            assert!(has(sql, rule), "{sql}: {:?}", found(sql));
        }
        let sql = "create function f() returns tsquery language sql as $$ select ts_rewrite('a'::tsquery, 'select set_config(''app.tenant_id'', ''x'', true)') $$";
        assert!(has(sql, Rule::TenantTamper), "{sql}");
        let sql = "create function f(a int) returns int language sql as $$ select a + 1 $$";
        assert!(found(sql).is_empty());
    }

    #[test]
    fn explain_analyze_in_every_spelling() {
        for sql in [
            "EXPLAIN ANALYZE select * from t",
            "explain analyse select 1",
            "EXPLAIN VERBOSE ANALYZE select 1",
            "EXPLAIN ANALYZE VERBOSE select 1",
            "explain (analyze) select 1",
            "explain (ANALYZE true) select 1",
            "explain (analyse on) select 1",
            "explain (analyze 1) select 1",
            "explain (analyze 'on') select 1",
            "explain (costs off, analyze) select 1",
            "explain (format json, analyze, buffers) select 1",
            "explain (\"analyze\") select 1",
            "explain (analyze false, analyze true) select 1",
            "select 1; explain analyze select 2",
            "select query_to_xml('explain analyze select 1', true, true, '')",
        ] {
            assert_eq!(found(sql), vec![(Rule::Statistics, None)], "{sql}");
        }
        for sql in [
            "explain select 1",
            "explain verbose select 1",
            "explain (analyze false) select 1",
            "explain (analyze off, costs on) select 1",
            "explain (analyze 0) select 1",
            "explain (analyze 'false') select 1",
            "explain (costs off) select analyze from t",
            "analyze customers",
        ] {
            assert!(found(sql).is_empty(), "{sql}: {:?}", found(sql));
        }
    }
}
