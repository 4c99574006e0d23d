//! Rules keyed on a statement's first words (`SET`, `ALTER`, `CREATE`, `DROP`, …).

use super::*;

impl<'a> Cx<'a, '_> {
    // ----- statement heads -----

    /// Applies the rules of a statement's first word; returns whether it is a routine
    /// definition that may hold a `BEGIN ATOMIC` body.
    pub(super) fn head(&mut self, st: &mut Stmt, t: Tok, mut la: Lexer<'a>, top: bool) -> bool {
        st.lit_off = false;
        let la = &mut la;
        match key(self.src, Some(t)) {
            kk::SET => self.h_set(st, t, la),
            kk::RESET => self.h_reset(st, t, la, top),
            kk::DO => self.h_do(st, t, la),
            kk::ALTER => self.h_alter(st, t, la),
            kk::CREATE => return self.h_create(st, t, la),
            kk::DROP => self.h_drop(st, t, la),
            kk::PREPARE => {
                let name = la.next();
                if !self.kw(name, b"transaction") {
                    self.reserved_name(st, name);
                    self.flag(top, Flags::SQL_PREPARE);
                }
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
                let mut x = la.next();
                if self.kw(x, b"prepare") {
                    x = la.next();
                }
                if !self.kw(x, b"all") {
                    self.reserved_name(st, x);
                }
            }
            kk::DISCARD if self.kw(la.next(), b"all") => self.flag(top, Flags::RESETS_SETTINGS),
            kk::LISTEN => self.flag(top, Flags::LISTEN),
            kk::DECLARE => self.h_declare(la, top),
            _ => {}
        }
        false
    }

    #[cold]
    #[inline(never)]
    pub(super) fn h_set(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>) {
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
                    self.session_setting(&c);
                }
                return;
            }
        };
        self.push(st, rule, detail, None, span);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn h_reset(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>, top: bool) {
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
                    self.flag(top, Flags::RESETS_SETTINGS);
                    self.reset_pending = top;
                } else if !self.tracked_setting(&c) {
                    self.session_setting(&c);
                }
                return;
            }
        };
        self.push(st, rule, detail, None, span);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn h_do(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>) {
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
    pub(super) fn body(&mut self, st: &Stmt, t: &Tok, do_block: bool) {
        let text = lit_bytes(self.src, t);
        if let Some(hit) = scan_body(&text, &self.o, 0) {
            let (rule, detail) = body_finding(hit, do_block);
            self.push(st, rule, detail, None, t.s()..t.e());
        }
        self.body_catalog(st, t, &text);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn h_alter(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>) {
        let t1 = la.next();
        match key(self.src, t1) {
            kk::TABLE => self.alter_table(st, la),
            kk::ROLE | kk::USER => {
                if self.kw(la.clone().next(), b"mapping") {
                    return;
                }
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::Role);
            }
            kk::DATABASE => {
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::Database);
            }
            kk::SYSTEM => {
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::System);
            }
            kk::FUNCTION | kk::PROCEDURE | kk::ROUTINE => {
                st.lit_off = true;
                self.set_clauses(st, la, Ctx::Function);
            }
            kk::POLICY => {
                let end = t1.map_or(head.e(), |t| t.e());
                self.push(st, Rule::RlsTamper, "ALTER POLICY", None, head.s()..end);
            }
            kk::SUBSCRIPTION => {
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
    pub(super) fn set_clauses(&mut self, st: &mut Stmt, la: &mut Lexer<'a>, ctx: Ctx) {
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

    pub(super) fn alter_table(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
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
            }
        }
    }

    /// Whether the next words are `words`; if so consumes them and returns the end.
    pub(super) fn follows(&self, la: &mut Lexer<'a>, words: &[&[u8]]) -> Option<usize> {
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
    pub(super) fn h_create(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>) -> bool {
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
            kk::POLICY => {
                let end = t1.map_or(head.e(), |t| t.e());
                self.push(st, Rule::RlsTamper, "CREATE POLICY", None, head.s()..end);
            }
            kk::SUBSCRIPTION => self.out.flags |= Flags::CONTAINS_SECRET,
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
    pub(super) fn routine(&mut self, st: &mut Stmt, la: &mut Lexer<'a>) {
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
    pub(super) fn h_declare(&mut self, la: &mut Lexer<'a>, top: bool) {
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
    pub(super) fn on_commit_drop(&self, mut la: Lexer<'a>) -> bool {
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

    /// `SELECT … INTO [LOCAL|GLOBAL] TEMP|TEMPORARY [TABLE] t` and `SELECT … INTO
    /// [UNLOGGED] [TABLE] pg_temp.t`: a temporary table, created under a `SELECT` tag (no
    /// `CREATE` tag marks the connection). `INSERT INTO` and `MERGE INTO` name an existing
    /// table (one called `temp` too), so they are told apart by the word before `INTO`; when
    /// that is not plain to see (a comment in between), `INTO` is read as `SELECT`'s.
    #[cold]
    #[inline(never)]
    pub(super) fn select_into(&mut self, into: Tok, mut la: Lexer<'a>) {
        let before = self.src.get(..into.s()).unwrap_or_default();
        let before = before.trim_ascii_end();
        let word = before
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        let prev = before.get(before.len() - word..).unwrap_or_default();
        if prev.eq_ignore_ascii_case(b"insert") || prev.eq_ignore_ascii_case(b"merge") {
            return;
        }
        let mut t = la.next();
        if matches!(key(self.src, t), kk::LOCAL | kk::GLOBAL) {
            t = la.next();
        }
        if matches!(key(self.src, t), kk::TEMP | kk::TEMPORARY) {
            self.out.flags |= Flags::TEMP_OBJECT;
            return;
        }
        if self.kw(t, b"unlogged") {
            t = la.next();
        }
        if matches!(key(self.src, t), kk::TABLE) {
            t = la.next();
        }
        let Some(schema) = t.filter(|t| is_ident(t.k)) else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = ident_folded(self.src, &schema, &mut buf);
        if buf.get(..n).is_some_and(is_temp_schema) && is(la.next(), K::Dot) {
            self.out.flags |= Flags::TEMP_OBJECT;
        }
    }

    /// Whether the rest of a `CREATE` statement names `pg_temp.` (or `pg_temp_<n>.`) as a
    /// schema.
    #[cold]
    #[inline(never)]
    pub(super) fn names_pg_temp(&self, mut la: Lexer<'a>) -> bool {
        let mut prev_temp = false;
        while let Some(t) = la.next() {
            match t.k {
                K::Semi => return false,
                K::Dot if prev_temp => return true,
                K::Word | K::QIdent | K::UIdent => {
                    let mut buf = [0u8; 64];
                    let n = ident_folded(self.src, &t, &mut buf);
                    prev_temp = buf.get(..n).is_some_and(is_temp_schema);
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
    pub(super) fn reserved_name(&mut self, st: &Stmt, t: Option<Tok>) {
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
    /// CHARACTERISTICS` changes the three `default_transaction_*` settings, `SET SCHEMA`
    /// `search_path`, `SET XML OPTION` `xmloption`: the grammar's names, which the prelude must
    /// reset for the next identity, so PostgreSQL has to know them).
    pub(super) fn session_setting(&mut self, c: &SetClause) {
        let Some(first) = c.first else { return };
        if c.parts == 1 {
            let grammar = if self.kw(Some(first), b"schema") && c.after.is_some_and(|t| is_lit(t.k))
            {
                Some("search_path")
            } else if self.kw(Some(first), b"xml") && self.kw(c.after, b"option") {
                Some("xmloption")
            } else {
                None
            };
            if let Some(name) = grammar {
                self.out.session_settings.push(name.to_owned());
                return;
            }
        }
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
    /// (`SET TIME ZONE`, `SET NAMES` and the names in `protocol::params::TRACKED`).
    pub(super) fn tracked_setting(&self, c: &SetClause) -> bool {
        if c.parts != 1 {
            return false;
        }
        let Some(first) = c.first else { return false };
        let mut buf = [0u8; 64];
        let n = ident_folded(self.src, &first, &mut buf);
        let name = buf.get(..n).unwrap_or_default();
        name == b"time"
            || name == b"names"
            || crate::protocol::params::TRACKED
                .iter()
                .any(|t| t.as_bytes().eq_ignore_ascii_case(name))
    }

    /// After `set_config(name, `: skips the value argument and tells whether the third argument
    /// is the constant `true` (a transaction-local setting).
    pub(super) fn third_arg_is_true(&self, la: &mut Lexer<'a>) -> bool {
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
    pub(super) fn h_drop(&mut self, st: &mut Stmt, head: Tok, la: &mut Lexer<'a>) {
        let t1 = la.next();
        if key(self.src, t1) == kk::POLICY {
            let end = t1.map_or(head.e(), |t| t.e());
            self.push(st, Rule::RlsTamper, "DROP POLICY", None, head.s()..end);
        }
    }
}

/// `pg_temp`, or the session's temporary schema by its own name, `pg_temp_<n>` (which
/// `pg_my_temp_schema()` tells once an `ON COMMIT DROP` table made it exist).
fn is_temp_schema(name: &[u8]) -> bool {
    name.strip_prefix(b"pg_temp")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"_"))
}
