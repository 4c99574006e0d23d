//! Rules that apply anywhere in a statement: `set_config`, SQL run by functions, `pg_settings`,
//! literals compared with the tenant column.

use super::*;

impl<'a> Cx<'a, '_> {
    // ----- rules anywhere in a statement -----

    #[cold]
    #[inline(never)]
    pub(super) fn set_config(&mut self, st: &mut Stmt, name: Tok, mut la: Lexer<'a>) {
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
    pub(super) fn literal_arg(&self, la: &mut Lexer<'a>) -> Option<String> {
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
    pub(super) fn dynamic_sql(&mut self, st: &mut Stmt, name: Tok, mut la: Lexer<'a>) {
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
        let mut sub = run(&text, self.o, self.depth + 1);
        self.absorb(&mut sub);
        for f in sub.findings {
            self.push(st, f.rule, f.detail, f.value, a.s()..a.e());
        }
    }

    /// What SQL a function runs in this session leaves at session level (a setting, a session
    /// advisory lock, a secret to redact) is the calling text's, to be carried or refused like
    /// its own.
    pub(super) fn absorb(&mut self, sub: &mut Inspection) {
        self.out.flags |= sub.flags
            & (Flags::CONTAINS_SECRET
                | Flags::SESSION_LOCK
                | Flags::TEMP_OBJECT
                | Flags::LISTEN
                | Flags::HOLD_CURSOR
                | Flags::SQL_PREPARE
                | Flags::SQL_EXECUTE);
        self.out.session_settings.append(&mut sub.session_settings);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn pg_settings(&mut self, st: &mut Stmt, upd: Tok, mut la: Lexer<'a>) {
        let mut t = la.next();
        if self.kw(t, b"only") {
            t = la.next();
        }
        // `ONLY (pg_settings)` is grammar too.
        for _ in 0..SKIP_LIMIT {
            if !is(t, K::LParen) {
                break;
            }
            t = la.next();
        }
        // `[[database.]pg_catalog.]pg_settings`: PostgreSQL accepts the current database's name
        // as a third part, so only the last two parts decide.
        let mut parts: [Option<Tok>; 3] = [None; 3];
        let mut n = 0;
        while let Some(part) = t.filter(|t| is_ident(t.k)) {
            parts.rotate_left(1);
            parts[2] = Some(part);
            n += 1;
            if n == 3 || !is(la.clone().next(), K::Dot) {
                break;
            }
            let _dot = la.next();
            t = la.next();
        }
        let Some(last) = parts[2] else {
            return;
        };
        let end = last.e();
        let named = |tok: Option<Tok>, name: &[u8]| {
            let mut buf = [0u8; 64];
            tok.is_some_and(|tok| {
                let n = ident_into(self.src, &tok, &mut buf);
                buf.get(..n).is_some_and(|p| p.eq_ignore_ascii_case(name))
            })
        };
        let matched =
            named(Some(last), b"pg_settings") && (n == 1 || named(parts[1], b"pg_catalog"));
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
    pub(super) fn column_literal(&mut self, st: &mut Stmt, mut la: Lexer<'a>) {
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

    pub(super) fn operand(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
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

    pub(super) fn in_list(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
        if is(la.next(), K::LParen) {
            self.elements(st, la);
        }
    }

    /// A list of literal elements (`'a', 'b'::uuid, CAST('c' AS uuid), uuid 'd'`); stops at the
    /// first thing that is not one.
    pub(super) fn elements(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
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
    pub(super) fn literal_column(&mut self, st: &mut Stmt, lit: Tok, mut la: Lexer<'a>) {
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

    pub(super) fn emit(&mut self, st: &Stmt, t: &Tok) {
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
    pub(super) fn emit_array(&mut self, st: &Stmt, t: &Tok) {
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
