//! Catalog-derived rules (the tables and their derivation are in `tenant/catalog.rs`).

use super::*;

// ---------------------------------------------------------------------------------------------
// Catalog-derived rules: client encodings, functions that run SQL text, catalog objects that
// expose other sessions, large objects or statistics, and EXPLAIN ANALYZE (`catalog.rs` holds
// the tables and how they were derived).
// ---------------------------------------------------------------------------------------------

/// Why an unsafe client encoding is a finding.
pub(super) const ENCODING_DETAIL: &str =
    "a client encoding that hides statements from the inspector";

/// Whether a word of `text` starts with one of `hints` (lower-case ASCII, starting with a
/// letter), ASCII case-insensitively, in one pass: only word starts whose first letter starts
/// some hint are compared further. Every name the catalog rules look for is a word (or starts
/// one after a quote or a dot).
pub(super) fn mentions(text: &[u8], hints: &[&[u8]]) -> bool {
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
pub(super) struct EncodingName(Ci<'static>);

impl Sink for EncodingName {
    fn put(&mut self, c: u8) {
        self.0.put(c);
    }
}

/// One argument of a call, as far as the SQL-function rule needs it.
#[derive(Clone, Copy)]
pub(super) struct Arg {
    /// The argument is one text literal (optionally cast).
    pub(super) lit: Option<Tok>,
    /// The argument is one number.
    pub(super) num: bool,
}

/// At most this many arguments are classified; later ones fail closed.
pub(super) const MAX_ARGS: usize = 8;
/// At most this many tokens are read looking for the end of an argument list.
pub(super) const MAX_ARG_TOKENS: usize = 4096;

impl<'a> Cx<'a, '_> {
    /// A word or identifier that passed `catalog::maybe_catalog_word`.
    #[cold]
    #[inline(never)]
    pub(super) fn catalog_name(&mut self, st: &mut Stmt, t: Tok, name: &[u8], lx: &Lexer<'a>) {
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
    pub(super) fn encoding_value(&mut self, st: &Stmt, head: Tok, la: &mut Lexer<'a>) {
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
        if crate::protocol::params::unsafe_client_encoding(&text).is_some() {
            let span = head.s()..v.e();
            self.push(st, Rule::UnsafeEncoding, ENCODING_DETAIL, Some(text), span);
        }
    }

    /// `set_config(<literal>, …)` of a setting the other rules do not guard: `client_encoding`.
    pub(super) fn set_config_encoding(
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
            Some(v) if crate::protocol::params::unsafe_client_encoding(&v).is_some() => {
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
    pub(super) fn body_catalog(&mut self, st: &Stmt, t: &Tok, text: &[u8]) {
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
    pub(super) fn body_catalog_at(
        &mut self,
        st: &Stmt,
        t: &Tok,
        text: &[u8],
        hints: &[&[u8]],
        depth: u32,
    ) {
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
    pub(super) fn catalog_literal(&mut self, st: &mut Stmt, t: Tok) {
        let raw = self.src.get(t.s()..t.e()).unwrap_or_default();
        if raw.len() <= 300 && mentions(raw, &[b"pg", b"lo", b"rel"]) {
            self.catalog_literal_slow(st, t);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn catalog_literal_slow(&mut self, st: &mut Stmt, t: Tok) {
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
    pub(super) fn explain_analyze(&mut self, st: &mut Stmt, head: Tok, mut la: Lexer<'a>) {
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
    pub(super) fn sql_function(
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
                let mut sub = run(&text, self.o, self.depth + 1);
                self.absorb(&mut sub);
                for f in sub.findings {
                    self.push(st, f.rule, f.detail, f.value, lit.s()..lit.e());
                }
            }
        }
    }
}

/// The elements of a PostgreSQL array literal (`{a,"b c",{d}}`), flattened, without NULLs.
/// `None` if the text is not an array literal.
pub(super) fn array_elements(text: &[u8]) -> Option<Vec<Vec<u8>>> {
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
