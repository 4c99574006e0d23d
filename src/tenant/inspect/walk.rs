//! The statement walker: splits a text into statements and dispatches each token to the rules.

use super::*;

// ---------------------------------------------------------------------------------------------
// The inspector
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub(super) struct Opts<'o> {
    pub(super) setting: &'o [u8],
    pub(super) column: &'o [u8],
    pub(super) scs: bool,
}

/// Per top-level statement state.
#[derive(Default)]
pub(super) struct Stmt {
    /// The next token starts a statement: a top-level one if `!active`, else one inside a
    /// `BEGIN ATOMIC` body.
    pub(super) head_pending: bool,
    pub(super) active: bool,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Index of this statement's first finding.
    pub(super) first: usize,
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`: may hold a `BEGIN ATOMIC` body.
    pub(super) routine: bool,
    /// Nesting of `BEGIN ATOMIC … END` bodies.
    pub(super) atomic: u32,
    /// Open `CASE`s in the current statement of a body: an `END` that does not start a
    /// statement closes one of them (or is a column label); the `END` closing the body always
    /// starts one (the grammar puts a `;` or `ATOMIC` before it).
    pub(super) cases: u32,
    /// The current (inner) statement is a SET-like one: its names are not column comparisons.
    pub(super) lit_off: bool,
    /// `UPDATE pg_settings` was already reported for this statement.
    pub(super) pg_settings: bool,
    /// Tokens before this offset were read by a tenant-column comparison.
    pub(super) fwd_hi: usize,
    /// What the previous token was, as `P_*` bits.
    pub(super) prev: u8,
}

impl Stmt {
    pub(super) fn new() -> Stmt {
        Stmt {
            head_pending: true,
            ..Stmt::default()
        }
    }
}

/// The previous token was `.` or `AS`: the next word is a name, not a keyword.
pub(super) const P_LABEL: u8 = 1;
/// The previous token was `BEGIN` (of a possible `BEGIN ATOMIC`).
pub(super) const P_BEGIN: u8 = 2;
/// The previous token was `SET` or `RESET`.
pub(super) const P_SET: u8 = 4;
/// The previous token was a name part following `SET`/`RESET` (`SET a`, `SET a.b`).
pub(super) const P_PART: u8 = 8;
/// The previous token was a dot inside such a name (`SET a.`): a column name here is a setting
/// name, not a column.
pub(super) const P_DOT: u8 = 16;

/// Where a `SET` clause appeared, for the finding's text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
    Role,
    Database,
    System,
    Function,
}

pub(super) fn rule_of(t: Target) -> Rule {
    match t {
        Target::Tenant | Target::Signature => Rule::TenantTamper,
        Target::Role | Target::SessionAuth => Rule::RoleTamper,
        Target::RowSecurity => Rule::RlsTamper,
    }
}

pub(super) fn clause_detail(ctx: Ctx, t: Target) -> &'static str {
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

pub(super) fn body_finding(hit: BodyHit, do_block: bool) -> (Rule, &'static str) {
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

pub(super) const LITERAL_DETAIL: &str = "string literal compared with the tenant column";

pub(super) struct Cx<'a, 'o> {
    pub(super) src: &'a [u8],
    pub(super) o: Opts<'o>,
    pub(super) depth: u32,
    pub(super) out: Inspection,
    /// A top-level `RESET ALL` ended: any further statement gets `RESET_NOT_LAST`.
    pub(super) reset_pending: bool,
}

pub(super) fn run(src: &[u8], o: Opts<'_>, depth: u32) -> Inspection {
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
    pub(super) fn kw(&self, t: Option<Tok>, k: &[u8]) -> bool {
        kw(self.src, t, k)
    }

    /// A role option that bypasses RLS (`BYPASSRLS`, `SUPERUSER`) in CREATE/ALTER ROLE.
    pub(super) fn privileged_role_option(
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

    /// Sets `f` for a top-level statement (not one inside a `BEGIN ATOMIC` body, which does not
    /// run now).
    pub(super) fn flag(&mut self, top: bool, f: Flags) {
        if top {
            self.out.flags |= f;
        }
    }

    pub(super) fn push(
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

    pub(super) fn finish(&mut self, st: &mut Stmt) {
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
    pub(super) fn token(&mut self, st: &mut Stmt, t: Tok, lx: &Lexer<'a>, inner_head: bool) {
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
    pub(super) fn word(&mut self, st: &mut Stmt, t: Tok, lx: &Lexer<'a>, inner_head: bool) -> u8 {
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
        let rule = if w.len() > MAX_IDENT {
            let n = truncate_ident(w, w.len());
            self.names(st, t, w.get(..n).unwrap_or_default(), lx)
        } else {
            self.names(st, t, w, lx)
        };
        match rule {
            Some(WordRule::Label) => prev |= P_LABEL,
            Some(WordRule::SetOrReset) => prev = P_SET,
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
    pub(super) fn atomic_body(&mut self, st: &mut Stmt, w: &[u8], inner_head: bool) -> u8 {
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

    /// Rules keyed on a name (keyword or identifier, quoted or not); returns the name's
    /// [`WordRule`] for the caller's own use.
    #[inline(always)]
    pub(super) fn names(
        &mut self,
        st: &mut Stmt,
        t: Tok,
        name: &[u8],
        lx: &Lexer<'a>,
    ) -> Option<WordRule> {
        let col = self.o.column;
        if name.len() == col.len()
            && !col.is_empty()
            && !st.lit_off
            && st.prev & P_DOT == 0
            && name.eq_ignore_ascii_case(col)
        {
            self.column_literal(st, lx.clone());
        }
        let rule = word_rule(name);
        match rule {
            Some(WordRule::Update) if t.k == K::Word && !st.pg_settings => {
                self.pg_settings(st, t, lx.clone())
            }
            Some(WordRule::DynamicSql) => self.dynamic_sql(st, t, lx.clone()),
            Some(WordRule::Secret) => self.out.flags |= Flags::CONTAINS_SECRET,
            Some(WordRule::SetConfig) => self.set_config(st, t, lx.clone()),
            Some(WordRule::SessionLock) => self.out.flags |= Flags::SESSION_LOCK,
            Some(WordRule::Into) if t.k == K::Word => self.select_into(t, lx.clone()),
            Some(WordRule::Label | WordRule::SetOrReset | WordRule::Update | WordRule::Into)
            | None => {}
        }
        if catalog::maybe_catalog_word(name) {
            self.catalog_name(st, t, name, lx);
        }
        rule
    }

    pub(super) fn literal(&mut self, st: &mut Stmt, t: Tok, lx: &Lexer<'a>) {
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
}
