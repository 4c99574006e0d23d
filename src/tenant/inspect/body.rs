//! Function and `DO` bodies: searched for `set_config` and `SET` of a guarded setting.

use super::*;

// ---------------------------------------------------------------------------------------------
// Function and DO bodies
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub(super) enum BodyHit {
    SetConfig,
    Sets(Target),
}

/// Searches a function or `DO` body for `set_config` or a `SET`/`RESET` of a guarded setting at
/// a statement start, also in string literals nested in it.
pub(super) fn scan_body(body: &[u8], o: &Opts<'_>, depth: u32) -> Option<BodyHit> {
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
