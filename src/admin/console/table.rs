//! Result sets for console answers, with PgBouncer's column types: counts are `int4`, statistics
//! `numeric`, names `text`, so drivers and exporters read numbers as numbers.

use bytes::{BufMut, BytesMut};

use crate::protocol::messages;

/// A column's type, as PgBouncer declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `text` (OID 25).
    Text,
    /// `int4` (OID 23): counts and sizes (PgBouncer's `i`).
    Int4,
    /// `numeric` (OID 1700): SHOW STATS totals, bytes and microseconds (PgBouncer's `N`,
    /// since 1.12: a u64 does not fit int8).
    Numeric,
}

impl Ty {
    /// The type OID and its length in RowDescription.
    fn oid_len(self) -> (u32, i16) {
        match self {
            Ty::Text => (25, -1),
            Ty::Int4 => (23, 4),
            Ty::Numeric => (1700, -1),
        }
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(String),
    /// A number (written in text format, like every console value).
    Int(i64),
    /// SQL NULL.
    Null,
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_owned())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}

impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Val {
        s.map_or(Val::Null, Val::Text)
    }
}

macro_rules! int_val {
    ($($t:ty),*) => {$(
        impl From<$t> for Val {
            fn from(n: $t) -> Val {
                Val::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_val!(i32, i64, u16, u32, u64, usize, bool);

/// Writes RowDescription, the rows and CommandComplete `SHOW`.
pub fn write(out: &mut BytesMut, columns: &[(&str, Ty)], rows: Vec<Vec<Val>>) {
    messages::write_msg(out, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for (name, ty) in columns {
            let (oid, len) = ty.oid_len();
            messages::put_cstr(b, name.as_bytes());
            b.put_i32(0);
            b.put_i16(0);
            b.put_u32(oid);
            b.put_i16(len);
            b.put_i32(-1);
            b.put_i16(0);
        }
    });
    for row in rows {
        messages::write_msg(out, b'D', |b| {
            b.put_i16(row.len() as i16);
            for v in &row {
                match v {
                    Val::Null => b.put_i32(-1),
                    Val::Text(s) => {
                        b.put_i32(s.len() as i32);
                        b.put_slice(s.as_bytes());
                    }
                    Val::Int(n) => {
                        let s = n.to_string();
                        b.put_i32(s.len() as i32);
                        b.put_slice(s.as_bytes());
                    }
                }
            }
        });
    }
    complete(out, "SHOW");
}

/// CommandComplete with `tag`.
pub fn complete(out: &mut BytesMut, tag: &str) {
    messages::write_msg(out, b'C', |b| messages::put_cstr(b, tag.as_bytes()));
}

/// A NoticeResponse (SHOW HELP answers with one, as PgBouncer does).
pub fn notice(out: &mut BytesMut, message: &str, detail: &str) {
    messages::write_msg(out, b'N', |b| {
        for (f, v) in [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "00000"),
            (b'M', message),
            (b'D', detail),
        ] {
            b.put_u8(f);
            messages::put_cstr(b, v.as_bytes());
        }
        b.put_u8(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_typed_and_nulls_are_null() {
        let mut out = BytesMut::new();
        write(
            &mut out,
            &[("name", Ty::Text), ("n", Ty::Int4)],
            vec![
                vec!["a".into(), 7u64.into()],
                vec![Val::Null, (-1i32).into()],
            ],
        );
        // RowDescription carries OID 23 and length 4 for the int4 column.
        assert!(out.windows(6).any(|w| w == [0, 0, 0, 23, 0, 4]));
        assert!(out.windows(5).any(|w| w == [0, 0, 0, 1, b'7']));
        assert!(out.windows(4).any(|w| w == (-1i32).to_be_bytes()));
    }
}
