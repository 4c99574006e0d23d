//! Decoding string literals and identifiers into sinks that need no allocation.

use super::*;

// ---------------------------------------------------------------------------------------------
// Decoding literals and identifiers
// ---------------------------------------------------------------------------------------------

/// Where decoded bytes go: a buffer, or matchers that need no allocation.
pub(super) trait Sink {
    fn put(&mut self, c: u8);
}

impl Sink for Vec<u8> {
    fn put(&mut self, c: u8) {
        self.push(c);
    }
}

/// Counts bytes and keeps the first (for UESCAPE).
#[derive(Default)]
pub(super) struct Small {
    pub(super) n: usize,
    pub(super) first: u8,
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
pub(super) struct Ident64<'b> {
    pub(super) buf: &'b mut [u8; 64],
    pub(super) n: usize,
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
pub(super) fn truncate_ident(buf: &[u8], n: usize) -> usize {
    if n <= MAX_IDENT {
        return n;
    }
    let mut cut = MAX_IDENT;
    while cut > 0 && buf.get(cut).is_some_and(|&c| c & 0xC0 == 0x80) {
        cut -= 1;
    }
    cut
}

pub(super) fn is_ident(k: K) -> bool {
    matches!(k, K::Word | K::QIdent | K::UIdent)
}

pub(super) fn is_lit(k: K) -> bool {
    matches!(k, K::Str | K::EStr | K::UStr | K::BStr | K::Dollar)
}

/// A literal whose value is text (not a bit string).
pub(super) fn is_text_lit(k: K) -> bool {
    matches!(k, K::Str | K::EStr | K::UStr | K::Dollar)
}

/// Like [`ident_into`], with an unquoted word folded to lower case, as PostgreSQL folds it.
pub(super) fn ident_folded(src: &[u8], t: &Tok, buf: &mut [u8; 64]) -> usize {
    let n = ident_into(src, t, buf);
    if t.k == K::Word {
        buf[..n].make_ascii_lowercase();
    }
    n
}

/// Writes an identifier's name (unquoted, unescaped, truncated; case kept) into `buf`.
pub(super) fn ident_into(src: &[u8], t: &Tok, buf: &mut [u8; 64]) -> usize {
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
pub(super) fn undouble<S: Sink>(inner: &[u8], q: u8, out: &mut S, limit: usize) {
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
pub(super) fn decode_lit<S: Sink>(src: &[u8], t: &Tok, out: &mut S) {
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
pub(super) fn segments<S: Sink>(src: &[u8], t: &Tok, q: Q, out: &mut S) {
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

pub(super) fn hex(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// Reads `n` hex digits at `i`, all within `end`.
pub(super) fn hex_n(src: &[u8], i: usize, n: usize, end: usize) -> Option<u32> {
    if i + n > end {
        return None;
    }
    let mut v = 0u32;
    for k in 0..n {
        v = (v << 4) | hex(*src.get(i + k)?)?;
    }
    Some(v)
}

pub(super) fn put_char<S: Sink>(cp: u32, out: &mut S) {
    let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    for &c in ch.encode_utf8(&mut buf).as_bytes() {
        out.put(c);
    }
}

/// Joins a UTF-16 surrogate pair when `second` is a low surrogate.
pub(super) fn surrogate(first: u32, second: Option<u32>) -> Option<u32> {
    let lo = second?;
    if (0xD800..0xDC00).contains(&first) && (0xDC00..0xE000).contains(&lo) {
        Some(0x10000 + ((first - 0xD800) << 10) + (lo - 0xDC00))
    } else {
        None
    }
}

/// One backslash escape of an `E'…'` string at `p`; returns where decoding continues.
pub(super) fn unescape_backslash<S: Sink>(src: &[u8], p: usize, end: usize, out: &mut S) -> usize {
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
pub(super) fn unescape_unicode<S: Sink>(raw: &[u8], esc: u8, out: &mut S) {
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
pub(super) fn lit_string(src: &[u8], t: &Tok) -> String {
    let mut v = Vec::new();
    decode_lit(src, t, &mut v);
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// A literal's value as bytes, borrowed when it needs no decoding.
pub(super) fn lit_bytes<'s>(src: &'s [u8], t: &Tok) -> Cow<'s, [u8]> {
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
pub(super) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
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
