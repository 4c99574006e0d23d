//! Startup and reported parameters the proxy must understand itself: the reported parameters
//! it keeps in sync per session under pooling, and the client encodings it refuses.
//!
//! Pure data and lookups, shared by the handshake (startup settings), the guard and the
//! inspector (`SET`), the relay (ParameterStatus) and the pool (a server connection's values),
//! so none of them depends on another.
//!
//! Encodings: `pg_encname_tbl` in `src/common/encnames.c` (identical in 13–17) lists every
//! accepted spelling after `clean_encoding_name` (lower-case, non-alphanumerics dropped). The
//! client-only encodings (`PG_VALID_FE_ENCODING` but not `PG_VALID_BE_ENCODING` in
//! `mb/pg_wchar.h`) are exactly those whose multi-byte characters may contain ASCII bytes as
//! trail bytes (`0x40..0x7e`, including `\` `'` and `"`): SJIS, BIG5, GBK, UHC, GB18030, JOHAB,
//! SHIFT_JIS_2004. Every server encoding is ASCII-safe, so they are the complete set.

/// Reported parameters a client may set and the proxy keeps in sync, in PostgreSQL's spelling.
pub const TRACKED: [&str; 6] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
];

/// The position of a tracked parameter in [`TRACKED`] (exact, canonical spelling, as
/// PostgreSQL reports it in ParameterStatus).
#[inline]
pub fn tracked_index(name: &str) -> Option<usize> {
    TRACKED.iter().position(|t| *t == name)
}

/// The canonical spelling of a tracked parameter, if `name` is one.
pub fn tracked(name: &str) -> Option<&'static str> {
    TRACKED
        .iter()
        .copied()
        .find(|t| t.eq_ignore_ascii_case(name))
}

/// Client encodings (as spelled after PostgreSQL's `clean_encoding_name`) in which an ASCII byte
/// can be the second byte of a multi-byte character, with the canonical name.
const UNSAFE_ENCODINGS: [(&str, &str); 17] = [
    ("big5", "BIG5"),
    ("win950", "BIG5"),
    ("windows950", "BIG5"),
    ("gbk", "GBK"),
    ("win936", "GBK"),
    ("windows936", "GBK"),
    ("gb18030", "GB18030"),
    ("johab", "JOHAB"),
    ("mskanji", "SJIS"),
    ("shiftjis", "SJIS"),
    ("sjis", "SJIS"),
    ("win932", "SJIS"),
    ("windows932", "SJIS"),
    ("shiftjis2004", "SHIFT_JIS_2004"),
    ("uhc", "UHC"),
    ("win949", "UHC"),
    ("windows949", "UHC"),
];

/// NAMEDATALEN: PostgreSQL does not look longer encoding names up at all.
const NAMEDATALEN: usize = 64;

/// The canonical name of `value` if PostgreSQL would accept it as a client encoding in which
/// ASCII bytes can hide inside multi-byte characters (`SJIS`, `Shift_JIS`, `WIN-932`, …).
pub fn unsafe_client_encoding(value: &str) -> Option<&'static str> {
    if value.is_empty() || value.len() >= NAMEDATALEN {
        return None;
    }
    let mut key = [0u8; NAMEDATALEN];
    let mut n = 0;
    for c in value.bytes().filter(u8::is_ascii_alphanumeric) {
        if let Some(slot) = key.get_mut(n) {
            *slot = c.to_ascii_lowercase();
            n += 1;
        }
    }
    let key = key.get(..n)?;
    UNSAFE_ENCODINGS
        .iter()
        .find(|(k, _)| k.as_bytes() == key)
        .map(|(_, canonical)| *canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_client_only_encodings_is_unsafe() {
        for (v, c) in [
            ("SJIS", "SJIS"),
            ("sjis", "SJIS"),
            ("Shift_JIS", "SJIS"),
            ("SHIFT-JIS", "SJIS"),
            ("MS_KANJI", "SJIS"),
            ("WIN932", "SJIS"),
            ("Windows-932", "SJIS"),
            ("BIG5", "BIG5"),
            ("win950", "BIG5"),
            ("GBK", "GBK"),
            ("WIN936", "GBK"),
            ("gb-18030", "GB18030"),
            ("UHC", "UHC"),
            ("windows_949", "UHC"),
            ("JOHAB", "JOHAB"),
            ("SHIFT_JIS_2004", "SHIFT_JIS_2004"),
        ] {
            assert_eq!(unsafe_client_encoding(v), Some(c), "{v}");
        }
        for v in [
            "UTF8",
            "utf-8",
            "unicode",
            "LATIN1",
            "EUC_JP",
            "EUC_CN",
            "EUC_KR",
            "EUC_TW",
            "EUC_JIS_2004",
            "SQL_ASCII",
            "WIN1252",
            "MULE_INTERNAL",
            "",
            "default",
            "cp936",
        ] {
            assert_eq!(unsafe_client_encoding(v), None, "{v}");
        }
        let long = format!("sjis{}", "-".repeat(70));
        assert_eq!(
            unsafe_client_encoding(&long),
            None,
            "too long for PostgreSQL too"
        );
    }
}
