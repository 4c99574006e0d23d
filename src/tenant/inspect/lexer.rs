//! The lexer: PostgreSQL's `scan.l` token boundaries, without allocating.

use super::*;

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

/// NAMEDATALEN - 1: PostgreSQL truncates identifiers to this many bytes.
pub(super) const MAX_IDENT: usize = 63;
/// How deep SQL found inside strings (dynamic queries) is inspected before failing closed.
pub(super) const MAX_DYNAMIC_DEPTH: u32 = 4;
/// How deep string literals nested in function bodies are searched.
pub(super) const MAX_BODY_DEPTH: u32 = 3;
/// Bound on the tokens a single pattern skips (parentheses, type names).
pub(super) const SKIP_LIMIT: usize = 32;

pub(super) const C_WS: u8 = 1;
pub(super) const C_IDS: u8 = 2;
pub(super) const C_IDC: u8 = 4;
pub(super) const C_OP: u8 = 8;
pub(super) const C_DQC: u8 = 16;
/// Whitespace, or the first byte of a comment (`-`, `/`).
pub(super) const C_SKIP: u8 = 32;

pub(super) static CLASS: [u8; 256] = classes();

pub(super) const fn classes() -> [u8; 256] {
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
pub(super) fn class(c: u8) -> u8 {
    CLASS[c as usize]
}

/// Token kinds. Keywords are `Word`s; the rules compare their text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum K {
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
pub(super) struct Tok {
    pub(super) k: K,
    /// Whether the string, identifier or dollar quote was closed.
    pub(super) term: bool,
    pub(super) start: u32,
    pub(super) stop: u32,
    /// `UStr`/`UIdent`: the escape byte (0 = invalid UESCAPE). `Dollar`: the delimiter length.
    /// `QIdent`: 1 if it holds a doubled `""`.
    pub(super) extra: u32,
}

impl Tok {
    pub(super) fn new(k: K, s: usize, e: usize) -> Tok {
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
    pub(super) fn s(&self) -> usize {
        self.start as usize
    }

    /// End offset.
    #[inline(always)]
    pub(super) fn e(&self) -> usize {
        self.stop as usize
    }

    /// See `extra`.
    #[inline(always)]
    pub(super) fn aux(&self) -> usize {
        self.extra as usize
    }
}

/// Quoting modes of `'…'` literals.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Q {
    Std,
    Esc,
    Bit,
}

#[derive(Clone)]
pub(super) struct Lexer<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    pub(super) scs: bool,
    /// False while looking ahead for a UESCAPE clause, so such look-aheads never nest.
    pub(super) uesc: bool,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(b: &'a [u8], scs: bool) -> Self {
        Lexer {
            b,
            pos: 0,
            scs,
            uesc: true,
        }
    }

    #[inline]
    pub(super) fn at(&self, i: usize) -> u8 {
        match self.b.get(i) {
            Some(&c) => c,
            None => 0,
        }
    }

    #[inline(always)]
    pub(super) fn skip_ws(&mut self) {
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
    pub(super) fn skip_ws_slow(&mut self) {
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
    pub(super) fn next(&mut self) -> Option<Tok> {
        self.next_inline()
    }

    /// The next token, inlined into the main loop.
    #[inline(always)]
    pub(super) fn next_inline(&mut self) -> Option<Tok> {
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
    pub(super) fn prefixed(&mut self, s: usize, c: u8) -> Option<Tok> {
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
    pub(super) fn uescape(&mut self) -> u8 {
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
    pub(super) fn quoted(&mut self, open: usize, q: Q) -> bool {
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
    pub(super) fn continuation(&self, mut p: usize) -> Option<usize> {
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
    pub(super) fn qident(&mut self, open: usize) -> (bool, bool) {
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
    pub(super) fn dollar(&mut self, s: usize) -> (K, bool, u32) {
        if self.at(s + 1).is_ascii_digit() {
            let mut p = s + 1;
            while self.at(p).is_ascii_digit() || self.digit_sep(p) {
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

    /// An `_` between digits (PostgreSQL 16's `1_000`). One not followed by a digit ends the
    /// number: PostgreSQL 13 and 14 read `1_$a$` as `1` and the identifier `_$a$` (15 and later
    /// reject it), so taking the `_` would make the `$a$` after it open a dollar quote
    /// PostgreSQL never sees.
    fn digit_sep(&self, p: usize) -> bool {
        self.at(p) == b'_' && self.at(p + 1).is_ascii_digit()
    }

    pub(super) fn number(&mut self, s: usize) {
        let mut p = s;
        while self.at(p).is_ascii_digit() || (p > s && self.digit_sep(p)) {
            p += 1;
        }
        if self.at(p) == b'.' && self.at(p + 1) != b'.' {
            p += 1;
            while self.at(p).is_ascii_digit() || self.digit_sep(p) {
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
                while self.at(p).is_ascii_digit() || self.digit_sep(p) {
                    p += 1;
                }
            }
        }
        self.pos = p.max(s + 1);
    }

    /// scan.l's `{operator}`: stops where a comment starts; drops a trailing `+`/`-` unless the
    /// operator holds a character that is not an SQL operator.
    pub(super) fn operator(&mut self, s: usize) {
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
pub(super) fn skip_block_comment(b: &[u8], mut p: usize) -> usize {
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
pub(super) fn find_delim(b: &[u8], from: usize, tag: &[u8]) -> Option<usize> {
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
