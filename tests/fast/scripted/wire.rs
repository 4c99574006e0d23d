//! Encoding and decoding of the few messages the scripted server reads and writes.

use bytes::{BufMut, BytesMut};

// ---------------------------------------------------------------------------------------------

pub(super) fn msg(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

pub(super) fn put_cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

/// The NUL-terminated string at `at`, and the offset after it.
pub(super) fn cstr_at(b: &[u8], at: usize) -> (String, usize) {
    let rest = b.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    (
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        at + end + 1,
    )
}

/// A Bind's portal, statement and text parameters.
pub(super) fn bind_parts(b: &[u8]) -> (String, String, Vec<Option<String>>) {
    let (portal, at) = cstr_at(b, 0);
    let (stmt, mut at) = cstr_at(b, at);
    let i16_at = |at: usize| i16::from_be_bytes([b[at], b[at + 1]]) as usize;
    let nformats = i16_at(at);
    at += 2 + 2 * nformats;
    let n = i16_at(at);
    at += 2;
    let mut params = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        at += 4;
        if len < 0 {
            params.push(None);
        } else {
            let len = len as usize;
            params.push(Some(String::from_utf8_lossy(&b[at..at + len]).into_owned()));
            at += len;
        }
    }
    (portal, stmt, params)
}

pub(super) fn row_description(out: &mut BytesMut, cols: &[String]) {
    let mut b = Vec::new();
    b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
    for c in cols {
        put_cstr(&mut b, c);
        b.extend_from_slice(&0i32.to_be_bytes()); // table
        b.extend_from_slice(&0i16.to_be_bytes()); // column
        b.extend_from_slice(&25u32.to_be_bytes()); // text
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    msg(out, b'T', &b);
}

pub(super) fn data_row(out: &mut BytesMut, row: &[Option<String>]) {
    let mut b = Vec::new();
    b.extend_from_slice(&(row.len() as i16).to_be_bytes());
    for v in row {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    msg(out, b'D', &b);
}

pub(super) fn complete(out: &mut BytesMut, tag: &str) {
    let mut b = Vec::new();
    put_cstr(&mut b, tag);
    msg(out, b'C', &b);
}

/// CopyInResponse (`G`) or CopyOutResponse (`H`): text format, one column.
pub(super) fn copy_response(out: &mut BytesMut, tag: u8) {
    let mut b = vec![0u8];
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(out, tag, &b);
}
