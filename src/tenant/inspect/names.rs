//! Matching guarded setting names, keywords and `SET` clauses in a token stream.

use super::*;

// ---------------------------------------------------------------------------------------------
// Matching names
// ---------------------------------------------------------------------------------------------

/// The settings the rules guard, in priority order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Target {
    Tenant,
    /// `tenantgate.signature`: a client that could set it could try forged signatures; guarded
    /// like the tenant setting (with or without signing), never a tenant switch.
    Signature,
    Role,
    SessionAuth,
    RowSecurity,
}

pub(super) const TARGETS: [Target; 5] = [
    Target::Tenant,
    Target::Signature,
    Target::Role,
    Target::SessionAuth,
    Target::RowSecurity,
];

/// An incremental ASCII case-insensitive equality test.
#[derive(Clone, Copy)]
pub(super) struct Ci<'t> {
    pub(super) t: &'t [u8],
    pub(super) i: usize,
    pub(super) ok: bool,
}

impl<'t> Ci<'t> {
    pub(super) fn new(t: &'t [u8]) -> Self {
        Ci { t, i: 0, ok: true }
    }

    #[inline]
    pub(super) fn put(&mut self, c: u8) {
        if self.ok {
            match self.t.get(self.i) {
                Some(x) if x.eq_ignore_ascii_case(&c) => self.i += 1,
                _ => self.ok = false,
            }
        }
    }

    pub(super) fn done(&self) -> bool {
        self.ok && self.i == self.t.len()
    }
}

/// Compares one name against every guarded setting at once.
pub(super) struct NameMatch<'t> {
    pub(super) m: [Ci<'t>; 5],
}

impl<'t> NameMatch<'t> {
    pub(super) fn new(setting: &'t [u8]) -> Self {
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

    pub(super) fn result(&self) -> Option<Target> {
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

pub(super) fn kw(src: &[u8], t: Option<Tok>, k: &[u8]) -> bool {
    match t {
        Some(t) if t.k == K::Word && t.e() - t.s() == k.len() => src
            .get(t.s()..t.e())
            .is_some_and(|w| w.eq_ignore_ascii_case(k)),
        _ => false,
    }
}

pub(super) fn is(t: Option<Tok>, k: K) -> bool {
    matches!(t, Some(t) if t.k == k)
}

pub(super) fn op_is(src: &[u8], t: Option<Tok>, ops: &[&[u8]]) -> bool {
    match t {
        Some(t) if t.k == K::Op => src.get(t.s()..t.e()).is_some_and(|o| ops.contains(&o)),
        _ => false,
    }
}

pub(super) const CMP_OPS: &[&[u8]] = &[b"=", b"<>", b"!="];

/// A `Word` of up to 16 bytes packed into an integer with ASCII letters lower-cased, for fast
/// keyword dispatch; 0 for anything else. Setting bit 5 lower-cases letters and maps no other
/// identifier byte (digit, `_`, `$`, non-ASCII) onto a letter, so keys of letter-only keywords
/// compare exactly.
pub(super) fn key(src: &[u8], t: Option<Tok>) -> u128 {
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
pub(super) const fn kw_key(w: &[u8]) -> u128 {
    let mut k = 0u128;
    let mut i = 0;
    while i < w.len() && i < 16 {
        k |= (w[i] as u128) << (8 * i);
        i += 1;
    }
    k
}

/// What a name (keyword or identifier) triggers on its own, wherever it appears.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum WordRule {
    /// `AS`: the next word is a label, not a keyword.
    Label,
    /// `SET` / `RESET`: the next name is a setting.
    SetOrReset,
    /// `UPDATE`: maybe of `pg_settings`.
    Update,
    /// A function that runs its SQL text argument in this session.
    DynamicSql,
    /// `PASSWORD`: the text must be redacted from logs.
    Secret,
    /// `set_config(…)`: its name argument decides the rule; a non-literal name fails closed.
    SetConfig,
    /// A session-level advisory lock.
    SessionLock,
    /// `INTO`: `SELECT … INTO TEMP t` creates a temporary table under a `SELECT` tag.
    Into,
}

/// Every name with a [`WordRule`]. The word filter below is built from this table, so a rule
/// added here cannot be skipped by it.
pub(super) const WORD_RULES: [(&[u8], WordRule); 15] = [
    (b"as", WordRule::Label),
    (b"set", WordRule::SetOrReset),
    (b"reset", WordRule::SetOrReset),
    (b"update", WordRule::Update),
    (b"ts_stat", WordRule::DynamicSql),
    (b"query_to_xml", WordRule::DynamicSql),
    (b"query_to_xmlschema", WordRule::DynamicSql),
    (b"query_to_xml_and_xmlschema", WordRule::DynamicSql),
    (b"password", WordRule::Secret),
    (b"set_config", WordRule::SetConfig),
    (b"pg_advisory_lock", WordRule::SessionLock),
    (b"pg_try_advisory_lock", WordRule::SessionLock),
    (b"pg_advisory_lock_shared", WordRule::SessionLock),
    (b"pg_try_advisory_lock_shared", WordRule::SessionLock),
    (b"into", WordRule::Into),
];

/// The rule of a name, ASCII case-insensitively.
#[inline]
pub(super) fn word_rule(name: &[u8]) -> Option<WordRule> {
    WORD_RULES
        .iter()
        .find(|(w, _)| w.len() == name.len() && w.eq_ignore_ascii_case(name))
        .map(|&(_, r)| r)
}

/// `FILTER[first letter] >> length & 1`: whether a word may have a rule of its own (in
/// [`WORD_RULES`]). A false positive only costs the full comparison.
pub(super) static FILTER: [u64; 32] = word_filter();

const fn word_filter() -> [u64; 32] {
    let mut t = [0u64; 32];
    let mut i = 0;
    while i < WORD_RULES.len() {
        let w = WORD_RULES[i].0;
        t[(w[0] & 31) as usize] |= 1 << w.len();
        i += 1;
    }
    t
}

/// Whether a word starting with `first` (lower-cased) of `len` bytes may have a rule.
#[inline(always)]
pub(super) fn special_word(first: u8, len: usize) -> bool {
    len > 63 || (FILTER[(first & 31) as usize] >> len) & 1 != 0
}

/// Keyword keys for statement heads.
pub(super) mod kk {
    use super::kw_key;
    pub const SET: u128 = kw_key(b"set");
    pub const RESET: u128 = kw_key(b"reset");
    pub const DO: u128 = kw_key(b"do");
    pub const ALTER: u128 = kw_key(b"alter");
    pub const CREATE: u128 = kw_key(b"create");
    pub const DROP: u128 = kw_key(b"drop");
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
}

/// A dotted name (`app.tenant_id`, `"app"."tenant_id"`, `role`) read from a token stream.
pub(super) struct Name {
    pub(super) target: Option<Target>,
    /// The token after the name.
    pub(super) after: Option<Tok>,
    /// End of the name's last part.
    pub(super) end: usize,
    pub(super) parts: usize,
}

pub(super) fn read_name(src: &[u8], setting: &[u8], first: Tok, la: &mut Lexer<'_>) -> Name {
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
pub(super) struct SetClause {
    pub(super) target: Option<Target>,
    /// The first token of the setting (for `TABLESPACE`, `TRANSACTION`, `ALL`).
    pub(super) first: Option<Tok>,
    /// The token after the name, if it was read.
    pub(super) after: Option<Tok>,
    pub(super) end: usize,
    pub(super) local: bool,
    /// Followed by `=` or `TO`.
    pub(super) assign: bool,
    pub(super) parts: usize,
}

pub(super) fn set_clause(src: &[u8], setting: &[u8], la: &mut Lexer<'_>, scope: bool) -> SetClause {
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
pub(super) fn set_value(src: &[u8], la: &mut Lexer<'_>) -> Option<String> {
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
pub(super) fn skip_type(src: &[u8], la: &mut Lexer<'_>) -> Option<Tok> {
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
pub(super) fn skip_group(la: &mut Lexer<'_>, close: K) {
    for _ in 0..SKIP_LIMIT {
        match la.next() {
            Some(t) if t.k == close => return,
            Some(t) if t.k == K::Semi => return,
            None => return,
            _ => {}
        }
    }
}
