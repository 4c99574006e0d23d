//! Classifies one RLS policy expression, as `pg_get_expr` prints it, with nothing but strings.
//!
//! The questions asked of an expression are the ones that decide whether tenant injection is
//! enforced: does it read the tenant setting with `current_setting('<setting>', true)` (so an
//! unset tenant is NULL and matches nothing), does it read it without `missing_ok`, does it
//! cast the text straight to `uuid` (which raises on `''` instead of matching nothing), and is
//! it the constant `true`. A small tokenizer is enough: PostgreSQL deparses policies to a
//! regular form (`current_setting('app.tenant_id'::text, true)`, `NULLIF(...)`, `(...)::uuid`),
//! and hand-written forms (`current_setting('app.tenant_id', true)::uuid`) tokenize the same.

/// What one expression does with the tenant setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExprFacts {
    /// The expression is the constant `true` (possibly parenthesised).
    pub always_true: bool,
    /// Some call reads the setting as `current_setting('<setting>', true)`.
    pub reads_missing_ok: bool,
    /// Some call reads the setting without `missing_ok = true` (errors when unset).
    pub reads_strict: bool,
    /// Some read of the setting is cast to `uuid` without `nullif(…, '')` around it.
    pub uuid_cast_without_nullif: bool,
    /// Some read of the setting is wrapped in `nullif(…)`.
    pub nullif_wrapped: bool,
    /// The expression calls `tenantgate.current_tenant()` (schema-qualified, as policies must):
    /// the signed tenant context, NULL unless the signature verifies.
    pub calls_current_tenant: bool,
}

impl ExprFacts {
    /// Whether the expression reads the setting at all.
    pub fn references_setting(&self) -> bool {
        self.reads_missing_ok || self.reads_strict
    }
}

/// One lexical token of a deparsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An identifier or keyword, lower-cased (quoted identifiers keep their case).
    Word(String),
    /// A string literal's contents, quotes removed and `''` unescaped.
    Str(String),
    /// A number.
    Num,
    /// `(`
    Open,
    /// `)`
    Close,
    /// `,`
    Comma,
    /// `::`
    Cast,
    /// `.`
    Dot,
    /// Any other operator or punctuation.
    Op,
}

fn tokenize(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            b'.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push(Tok::Cast);
                i += 2;
            }
            b'\'' => {
                // E'...' escapes are not produced by pg_get_expr for these cases; '' is.
                let mut lit = String::new();
                i += 1;
                let start = i;
                let mut seg = start;
                loop {
                    match b.get(i) {
                        None => {
                            lit.push_str(&s[seg..]);
                            break;
                        }
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                            lit.push_str(&s[seg..=i]);
                            i += 2;
                            seg = i;
                        }
                        Some(b'\'') => {
                            lit.push_str(&s[seg..i]);
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                out.push(Tok::Str(lit));
            }
            b'"' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i.min(b.len())].to_owned()));
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i].to_ascii_lowercase()));
            }
            _ if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Tok::Num);
            }
            _ => {
                out.push(Tok::Op);
                i += 1;
            }
        }
    }
    out
}

/// Index of the `)` matching the `(` at `open`, or the end.
fn matching_close(t: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, tok) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// Splits the arguments between `open` and its matching `close` at top-level commas.
fn args(t: &[Tok], open: usize, close: usize) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    for i in open + 1..close {
        match t[i] {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 => {
                out.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < close {
        out.push(&t[start..close]);
    }
    out
}

/// The function name before the `(` at `open`, if it is a call (not a grouping paren).
fn callee(t: &[Tok], open: usize) -> Option<&str> {
    match open.checked_sub(1).map(|i| &t[i]) {
        Some(Tok::Word(w)) if !is_keyword(w) => Some(w),
        _ => None,
    }
}

/// Words after which `(` groups rather than calls.
fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "and"
            | "or"
            | "not"
            | "in"
            | "any"
            | "all"
            | "some"
            | "exists"
            | "when"
            | "then"
            | "else"
            | "case"
            | "is"
            | "select"
            | "where"
            | "as"
            | "on"
            | "using"
            | "array"
            | "between"
            | "like"
            | "ilike"
    )
}

/// The innermost call enclosing position `at`, skipping grouping parens: (name, open index).
fn enclosing_call(t: &[Tok], at: usize) -> Option<(&str, usize)> {
    let mut depth = 0usize;
    let mut i = at;
    while i > 0 {
        i -= 1;
        match t[i] {
            Tok::Close => depth += 1,
            Tok::Open if depth > 0 => depth -= 1,
            Tok::Open => {
                if let Some(name) = callee(t, i) {
                    return Some((name, i));
                }
                // A grouping paren: keep climbing.
            }
            _ => {}
        }
    }
    None
}

/// Whether the value ending just before `after` (skipping grouping closers) is cast to uuid.
fn cast_to_uuid_after(t: &[Tok], mut after: usize, open_of_value: usize) -> bool {
    // Skip `)` that close grouping parens opened right around the value.
    let mut opens = open_of_value;
    while after < t.len()
        && t[after] == Tok::Close
        && opens > 0
        && t[opens - 1] == Tok::Open
        && callee(t, opens - 1).is_none()
    {
        after += 1;
        opens -= 1;
    }
    match (t.get(after), t.get(after + 1)) {
        (Some(Tok::Cast), Some(Tok::Word(w))) => w == "uuid",
        _ => false,
    }
}

/// Whether a `cast(value AS uuid)` call at `open` ends in `as uuid`.
fn cast_call_to_uuid(t: &[Tok], open: usize) -> bool {
    let close = matching_close(t, open);
    close >= 2 && t[close - 1] == Tok::Word("uuid".into()) && t[close - 2] == Tok::Word("as".into())
}

fn literal_text(arg: &[Tok]) -> Option<&str> {
    match arg.first() {
        Some(Tok::Str(s)) => Some(s),
        _ => None,
    }
}

fn is_true(arg: &[Tok]) -> bool {
    match arg {
        [Tok::Word(w), ..] if w == "true" || w == "on" || w == "yes" => true,
        [Tok::Str(s), ..] => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "t" | "on" | "yes" | "1"
        ),
        _ => false,
    }
}

/// Classifies `expr` (a policy's USING or WITH CHECK text) for the custom setting `setting`.
pub fn classify(expr: &str, setting: &str) -> ExprFacts {
    let t = tokenize(expr);
    let mut facts = ExprFacts {
        always_true: is_constant_true(&t),
        ..ExprFacts::default()
    };
    for i in 0..t.len() {
        let Tok::Word(w) = &t[i] else { continue };
        if w == "current_tenant"
            && t.get(i + 1) == Some(&Tok::Open)
            && i >= 2
            && t[i - 1] == Tok::Dot
            && t[i - 2] == Tok::Word("tenantgate".into())
        {
            facts.calls_current_tenant = true;
            continue;
        }
        if w != "current_setting" || t.get(i + 1) != Some(&Tok::Open) {
            continue;
        }
        // Schema-qualified pg_catalog.current_setting is the same function.
        let open = i + 1;
        let close = matching_close(&t, open);
        let a = args(&t, open, close);
        let Some(name) = a.first().and_then(|x| literal_text(x)) else {
            continue;
        };
        if !name.eq_ignore_ascii_case(setting) {
            continue;
        }
        if a.get(1).is_some_and(|x| is_true(x)) {
            facts.reads_missing_ok = true;
        } else {
            facts.reads_strict = true;
        }
        let start = if i >= 2 && t[i - 1] == Tok::Dot {
            i - 2
        } else {
            i
        };
        match enclosing_call(&t, start) {
            Some(("nullif", _)) => facts.nullif_wrapped = true,
            Some(("cast", copen)) if cast_call_to_uuid(&t, copen) => {
                facts.uuid_cast_without_nullif = true
            }
            _ => {
                if cast_to_uuid_after(&t, close + 1, start) {
                    facts.uuid_cast_without_nullif = true;
                }
            }
        }
    }
    facts
}

/// `true`, `(true)`, `((true))`.
fn is_constant_true(t: &[Tok]) -> bool {
    let words: Vec<&Tok> = t
        .iter()
        .filter(|x| !matches!(x, Tok::Open | Tok::Close))
        .collect();
    matches!(words.as_slice(), [Tok::Word(w)] if w == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "app.tenant_id";

    #[test]
    fn deparsed_nullif_form_is_sound() {
        let f = classify(
            "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)",
            S,
        );
        assert!(f.reads_missing_ok && !f.reads_strict);
        assert!(f.nullif_wrapped);
        assert!(!f.uuid_cast_without_nullif);
        assert!(!f.always_true);
    }

    #[test]
    fn deparsed_bare_uuid_cast_is_flagged() {
        let f = classify(
            "(tenant_id = (current_setting('app.tenant_id'::text, true))::uuid)",
            S,
        );
        assert!(f.reads_missing_ok);
        assert!(f.uuid_cast_without_nullif);
    }

    #[test]
    fn hand_written_forms() {
        let f = classify(
            "tenant_id = current_setting('app.tenant_id', true)::uuid",
            S,
        );
        assert!(f.reads_missing_ok && f.uuid_cast_without_nullif);
        let f = classify(
            "tenant_id = CAST(current_setting('app.tenant_id', true) AS uuid)",
            S,
        );
        assert!(f.uuid_cast_without_nullif);
        let f = classify(
            "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid",
            S,
        );
        assert!(f.nullif_wrapped && !f.uuid_cast_without_nullif);
        let f = classify(
            "tenant_id = pg_catalog.current_setting('app.tenant_id', 'on')::uuid",
            S,
        );
        assert!(f.reads_missing_ok && f.uuid_cast_without_nullif);
    }

    #[test]
    fn missing_ok_absent_or_false_is_strict() {
        let f = classify(
            "(tenant_id = (current_setting('app.tenant_id'::text))::uuid)",
            S,
        );
        assert!(f.reads_strict && !f.reads_missing_ok);
        let f = classify(
            "tenant_id::text = current_setting('app.tenant_id', false)",
            S,
        );
        assert!(f.reads_strict && !f.uuid_cast_without_nullif);
    }

    #[test]
    fn text_comparison_is_not_a_uuid_cast() {
        let f = classify(
            "((tenant_id)::text = current_setting('app.tenant_id'::text, true))",
            S,
        );
        assert!(f.reads_missing_ok && !f.uuid_cast_without_nullif);
    }

    #[test]
    fn other_settings_and_constants() {
        let f = classify("(owner = current_setting('app.user_id'::text, true))", S);
        assert!(!f.references_setting());
        assert!(classify("true", S).always_true);
        assert!(classify("(true)", S).always_true);
        assert!(!classify("(tenant_id IS NOT NULL)", S).always_true);
        // A setting name inside a string that is not a current_setting call does not count.
        assert!(!classify("(note = 'app.tenant_id')", S).references_setting());
    }

    #[test]
    fn signed_context_calls_are_recognised_only_schema_qualified() {
        let f = classify(
            "(tenant_id = (( SELECT tenantgate.current_tenant() AS current_tenant))::uuid)",
            S,
        );
        assert!(f.calls_current_tenant && !f.references_setting());
        let f = classify(
            "tenant_id = (select \"tenantgate\".current_tenant())::uuid",
            S,
        );
        assert!(f.calls_current_tenant);
        // Unqualified: whatever a search path finds first, not the signed context.
        assert!(!classify("tenant_id = current_tenant()::uuid", S).calls_current_tenant);
        assert!(!classify("tenant_id = public.current_tenant()::uuid", S).calls_current_tenant);
    }

    #[test]
    fn case_insensitive_setting_name() {
        let f = classify(
            "tenant_id = nullif(current_setting('App.Tenant_Id', true), '')::uuid",
            S,
        );
        assert!(f.reads_missing_ok);
    }

    #[test]
    fn cast_applies_to_the_group_not_an_outer_call() {
        // The ::uuid applies to coalesce(...), which includes a nullif-free read.
        let f = classify(
            "tenant_id = coalesce(current_setting('app.tenant_id', true), '0')::uuid",
            S,
        );
        assert!(f.reads_missing_ok);
        assert!(!f.nullif_wrapped);
    }
}
