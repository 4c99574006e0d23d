//! Builders for the messages the proxy itself sends, and parsers for the few it reads.
//!
//! Builders append to a `BytesMut` so a whole batch goes out in one write (STYLE habit 12).

use bytes::{BufMut, BytesMut};

/// The magic "protocol version" of an SSLRequest.
pub const SSL_REQUEST: i32 = 80_877_103;
/// The magic "protocol version" of a GSSENCRequest.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// The magic "protocol version" of a CancelRequest.
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// Writes one typed message: tag, length (patched afterwards), then what `body` appends.
#[inline]
pub fn write_msg(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a C string (the text must not contain NUL; callers pass validated text).
#[inline]
pub fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Severity of an ErrorResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
}

impl Severity {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Severity::Error => b"ERROR",
            Severity::Fatal => b"FATAL",
        }
    }
}

/// An error the proxy itself reports, in PostgreSQL's own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// ERROR or FATAL.
    pub severity: Severity,
    /// Five-character SQLSTATE.
    pub code: &'static str,
    /// Primary message.
    pub message: String,
    /// Optional DETAIL.
    pub detail: Option<String>,
    /// Optional HINT.
    pub hint: Option<String>,
}

impl PgError {
    /// An ERROR with this SQLSTATE and message.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A FATAL with this SQLSTATE and message.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            ..Self::error(code, message)
        }
    }

    /// The same error as a FATAL: the session ends after it.
    pub fn into_fatal(mut self) -> Self {
        self.severity = Severity::Fatal;
        self
    }

    /// Adds a HINT.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a DETAIL.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Appends this error as an ErrorResponse.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_msg(buf, b'E', |b| {
            b.put_u8(b'S');
            put_cstr(b, self.severity.as_bytes());
            b.put_u8(b'V');
            put_cstr(b, self.severity.as_bytes());
            b.put_u8(b'C');
            put_cstr(b, self.code.as_bytes());
            b.put_u8(b'M');
            put_cstr(b, strip_nul(&self.message));
            if let Some(d) = &self.detail {
                b.put_u8(b'D');
                put_cstr(b, strip_nul(d));
            }
            if let Some(h) = &self.hint {
                b.put_u8(b'H');
                put_cstr(b, strip_nul(h));
            }
            b.put_u8(0);
        });
    }
}

fn strip_nul(s: &str) -> &[u8] {
    let b = s.as_bytes();
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// ReadyForQuery with a transaction status (`I`, `T`, `E`).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    write_msg(buf, b'Z', |b| b.put_u8(status));
}

/// ParameterStatus (`S`): a setting's current value, as the server reports it.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    write_msg(buf, b'S', |b| {
        put_cstr(b, strip_nul(name));
        put_cstr(b, strip_nul(value));
    });
}

/// BackendKeyData (`K`): the key a client sends back in a CancelRequest.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    write_msg(buf, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

/// An Authentication message with a sub-code and payload.
pub fn authentication(buf: &mut BytesMut, code: i32, payload: &[u8]) {
    write_msg(buf, b'R', |b| {
        b.put_i32(code);
        b.put_slice(payload);
    });
}

/// CloseComplete, for Close requests answered by the proxy.
pub fn close_complete(buf: &mut BytesMut) {
    write_msg(buf, b'3', |_| {});
}

/// Query (simple protocol).
pub fn query(buf: &mut BytesMut, sql: &str) {
    write_msg(buf, b'Q', |b| put_cstr(b, strip_nul(sql)));
}

/// Parse with parameter type OIDs.
pub fn parse(buf: &mut BytesMut, name: &[u8], sql: &[u8], types: &[u32]) {
    write_msg(buf, b'P', |b| {
        put_cstr(b, name);
        put_cstr(b, sql);
        b.put_i16(types.len() as i16);
        for t in types {
            b.put_u32(*t);
        }
    });
}

/// Parse with the parameter-type section exactly as a client sent it (count + OIDs): a client's
/// statement written again under another name, or again on another connection.
pub fn parse_raw_types(buf: &mut BytesMut, name: &[u8], sql: &[u8], raw_types: &[u8]) {
    write_msg(buf, b'P', |b| {
        put_cstr(b, name);
        put_cstr(b, sql);
        b.extend_from_slice(raw_types);
    });
}

/// Bind of text parameters (None: NULL) to `statement` into `portal`, text results.
pub fn bind_params(buf: &mut BytesMut, portal: &[u8], statement: &[u8], params: &[Option<&[u8]>]) {
    write_msg(buf, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_i16(0);
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                Some(p) => {
                    b.put_i32(p.len() as i32);
                    b.put_slice(p);
                }
                None => b.put_i32(-1),
            }
        }
        b.put_i16(0);
    });
}

/// Bind of text parameters to `statement` into `portal`, text results.
pub fn bind_text(buf: &mut BytesMut, portal: &[u8], statement: &[u8], params: &[&[u8]]) {
    write_msg(buf, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_i16(0);
        b.put_i16(params.len() as i16);
        for p in params {
            b.put_i32(p.len() as i32);
            b.put_slice(p);
        }
        b.put_i16(0);
    });
}

/// Execute all rows of `portal`.
pub fn execute(buf: &mut BytesMut, portal: &[u8]) {
    write_msg(buf, b'E', |b| {
        put_cstr(b, portal);
        b.put_i32(0);
    });
}

/// Close of a prepared statement.
pub fn close_statement(buf: &mut BytesMut, name: &[u8]) {
    write_msg(buf, b'C', |b| {
        b.put_u8(b'S');
        put_cstr(b, name);
    });
}

/// Sync: ends an extended-protocol batch; the server answers with ReadyForQuery.
pub fn sync(buf: &mut BytesMut) {
    write_msg(buf, b'S', |_| {});
}

/// Reads a NUL-terminated string at the start of `b`, returning it and the rest.
#[inline]
pub fn read_cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// The SQL text of a Query body.
pub fn query_text(body: &[u8]) -> Option<&[u8]> {
    read_cstr(body).map(|(s, _)| s)
}

/// A decoded Parse body: statement name, SQL, and the raw parameter-type section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMsg<'a> {
    /// Statement name (empty = unnamed).
    pub name: &'a [u8],
    /// Bytes as sent, NUL stripped; not checked as UTF-8 here.
    pub sql: &'a [u8],
    /// Parameter type OIDs, as sent (count + OIDs).
    pub types: &'a [u8],
}

/// Decodes a Parse body; None when the name or the SQL lacks its NUL (the type section is not
/// checked).
pub fn parse_msg(body: &[u8]) -> Option<ParseMsg<'_>> {
    let (name, rest) = read_cstr(body)?;
    let (sql, types) = read_cstr(rest)?;
    Some(ParseMsg { name, sql, types })
}

/// Splits a Bind body into (portal, statement, the rest after the statement name).
pub fn split_bind(body: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (portal, rest) = read_cstr(body)?;
    let (stmt, rest) = read_cstr(rest)?;
    Some((portal, stmt, rest))
}

/// Appends a Bind with `statement` in place of the client's name, the rest unchanged.
pub fn write_bind(buf: &mut BytesMut, portal: &[u8], statement: &[u8], rest: &[u8]) {
    write_msg(buf, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_slice(rest);
    });
}

/// Splits a Describe/Close body into (kind `S`|`P`, name).
pub fn split_target(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    let (name, _) = read_cstr(rest)?;
    Some((kind, name))
}

/// Appends a Describe of a statement.
pub fn describe_statement(buf: &mut BytesMut, name: &[u8]) {
    write_msg(buf, b'D', |b| {
        b.put_u8(b'S');
        put_cstr(b, name);
    });
}

/// The fields of an ErrorResponse / NoticeResponse that the proxy looks at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// `V` (or `S`) severity.
    pub severity: String,
    /// `C` SQLSTATE.
    pub code: String,
    /// `M` message.
    pub message: String,
}

/// Decodes the interesting fields of an ErrorResponse body.
pub fn error_fields(body: &[u8]) -> ErrorFields {
    let mut out = ErrorFields::default();
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((value, tail)) = read_cstr(tail) else {
            break;
        };
        let v = String::from_utf8_lossy(value).into_owned();
        match field {
            b'V' => out.severity = v,
            b'S' if out.severity.is_empty() => out.severity = v,
            b'C' => out.code = v,
            b'M' => out.message = v,
            _ => {}
        }
        rest = tail;
    }
    out
}

/// Decodes a ParameterStatus body.
pub fn parameter_status_fields(body: &[u8]) -> Option<(String, String)> {
    let (k, rest) = read_cstr(body)?;
    let (v, _) = read_cstr(rest)?;
    Some((
        String::from_utf8_lossy(k).into_owned(),
        String::from_utf8_lossy(v).into_owned(),
    ))
}

/// The first column of a DataRow body (None for NULL or a malformed row).
pub fn first_column(body: &[u8]) -> Option<&[u8]> {
    let len = body.get(2..6)?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    if len < 0 {
        return None;
    }
    body.get(6..6 + len as usize)
}

/// The command tag of a CommandComplete body.
pub fn command_tag(body: &[u8]) -> &[u8] {
    read_cstr(body).map(|(t, _)| t).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let mut b = BytesMut::new();
        PgError::error("42501", "nope")
            .with_hint("do x")
            .encode(&mut b);
        assert_eq!(b[0], b'E');
        let len = i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len + 1, b.len());
        let f = error_fields(&b[5..]);
        assert_eq!(f.code, "42501");
        assert_eq!(f.message, "nope");
        assert_eq!(f.severity, "ERROR");
    }

    #[test]
    fn parse_decodes() {
        let mut b = BytesMut::new();
        parse(&mut b, b"s1", b"select $1", &[25]);
        let p = parse_msg(&b[5..]).unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.sql, b"select $1");
        assert_eq!(p.types, &[0, 1, 0, 0, 0, 25]);
        assert!(parse_msg(b"abc").is_none());
    }
}
