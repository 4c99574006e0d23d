//! A raw protocol client for adversarial tests: sends exactly the messages a hostile client
//! would (Binds of names it never prepared, mid-segment COMMITs, pipelines drivers never send)
//! and returns every answer, tag by tag.
#![allow(dead_code)]

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a raw client talks over: TCP to a proxy, or one end of an in-memory duplex
/// (`tests/fast`).
pub trait Sock: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Sock for T {}

/// One server message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// An ErrorResponse's SQLSTATE.
    pub fn code(&self) -> Option<String> {
        self.field(b'C')
    }

    /// An ErrorResponse/NoticeResponse field.
    pub fn field(&self, f: u8) -> Option<String> {
        if self.tag != b'E' && self.tag != b'N' {
            return None;
        }
        let mut rest = &self.body[..];
        while let Some((&k, r)) = rest.split_first() {
            if k == 0 {
                break;
            }
            let end = r.iter().position(|&c| c == 0)?;
            if k == f {
                return Some(String::from_utf8_lossy(&r[..end]).into_owned());
            }
            rest = &r[end + 1..];
        }
        None
    }

    /// A DataRow's first column as text.
    pub fn first_col(&self) -> Option<String> {
        if self.tag != b'D' || self.body.len() < 6 {
            return None;
        }
        let len = i32::from_be_bytes(self.body[2..6].try_into().ok()?);
        if len < 0 {
            return None;
        }
        Some(String::from_utf8_lossy(&self.body[6..6 + len as usize]).into_owned())
    }

    /// A RowDescription's columns: name and type OID.
    pub fn columns(&self) -> Vec<(String, u32)> {
        let mut cols = Vec::new();
        if self.tag != b'T' || self.body.len() < 2 {
            return cols;
        }
        let mut rest = &self.body[2..];
        while let Some(end) = rest.iter().position(|&c| c == 0) {
            if rest.len() < end + 19 {
                break;
            }
            let name = String::from_utf8_lossy(&rest[..end]).into_owned();
            let oid =
                u32::from_be_bytes([rest[end + 7], rest[end + 8], rest[end + 9], rest[end + 10]]);
            cols.push((name, oid));
            rest = &rest[end + 19..];
        }
        cols
    }

    /// A DataRow's values as text (None for NULL).
    pub fn cells(&self) -> Vec<Option<String>> {
        let mut out = Vec::new();
        if self.tag != b'D' || self.body.len() < 2 {
            return out;
        }
        let mut rest = &self.body[2..];
        while rest.len() >= 4 {
            let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            rest = &rest[4..];
            if len < 0 {
                out.push(None);
                continue;
            }
            let n = (len as usize).min(rest.len());
            out.push(Some(String::from_utf8_lossy(&rest[..n]).into_owned()));
            rest = &rest[n..];
        }
        out
    }

    /// A CommandComplete's tag.
    pub fn command(&self) -> Option<String> {
        (self.tag == b'C').then(|| {
            String::from_utf8_lossy(&self.body[..self.body.len().saturating_sub(1)]).into_owned()
        })
    }
}

/// A connected, authenticated raw client.
pub struct Raw {
    sock: Box<dyn Sock>,
    rbuf: BytesMut,
    pub out: BytesMut,
}

fn msg(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

fn cstr(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(s);
    b.push(0);
}

impl Raw {
    /// Connects to `port` as `user` (SCRAM with `password`), through ReadyForQuery.
    pub async fn connect(port: u16, user: &str, password: &str, db: &str) -> Raw {
        let sock = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        sock.set_nodelay(true).ok();
        Raw::login(sock, user, password, db).await
    }

    /// A raw client over any stream, nothing sent yet (handshake tests send their own bytes).
    pub fn over(sock: impl Sock + 'static) -> Raw {
        Raw {
            sock: Box::new(sock),
            rbuf: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    /// Logs in over `sock` as `user` (SCRAM with `password`), through ReadyForQuery.
    pub async fn login(sock: impl Sock + 'static, user: &str, password: &str, db: &str) -> Raw {
        let mut r = Raw::over(sock);
        r.startup(&[("user", user), ("database", db)]).await;
        r.authenticate(password).await;
        r
    }

    /// Sends a StartupMessage (protocol 3.0) with these parameters.
    pub async fn startup(&mut self, params: &[(&str, &str)]) {
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in params {
            cstr(&mut body, k.as_bytes());
            cstr(&mut body, v.as_bytes());
        }
        body.push(0);
        let mut start = BytesMut::new();
        start.put_i32(body.len() as i32 + 4);
        start.put_slice(&body);
        self.sock.write_all(&start).await.expect("startup");
    }

    /// Answers the server's authentication requests (SCRAM with `password`) through
    /// ReadyForQuery; panics on an ErrorResponse. Returns the greeting after authentication
    /// (ParameterStatus, BackendKeyData, ReadyForQuery ...).
    pub async fn authenticate(&mut self, password: &str) -> Vec<Msg> {
        match self.exchange(password).await {
            Ok(greeting) => greeting,
            Err(e) => panic!("login refused: {:?}", e.field(b'M')),
        }
    }

    /// Like [`Raw::authenticate`] for a login that must be refused: the ErrorResponse.
    pub async fn authenticate_until_error(&mut self, password: &str) -> Msg {
        match self.exchange(password).await {
            Ok(greeting) => panic!("the login was accepted: {greeting:?}"),
            Err(e) => e,
        }
    }

    /// The SCRAM exchange, then the greeting through ReadyForQuery, or the first error.
    async fn exchange(&mut self, password: &str) -> Result<Vec<Msg>, Msg> {
        let r = self;
        let mut scram: Option<ScramSha256> = None;
        let mut greeting = Vec::new();
        loop {
            let m = r.read().await;
            match m.tag {
                b'R' => {
                    let kind = i32::from_be_bytes(m.body[0..4].try_into().unwrap());
                    match kind {
                        0 => {}
                        10 => {
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            let mut b = Vec::new();
                            cstr(&mut b, b"SCRAM-SHA-256");
                            b.extend_from_slice(&(s.message().len() as i32).to_be_bytes());
                            b.extend_from_slice(s.message());
                            msg(&mut r.out, b'p', &b);
                            r.flush().await;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().expect("sasl started");
                            s.update(&m.body[4..]).expect("scram continue");
                            let b = s.message().to_vec();
                            msg(&mut r.out, b'p', &b);
                            r.flush().await;
                        }
                        12 => {
                            let s = scram.as_mut().expect("sasl started");
                            s.finish(&m.body[4..]).expect("scram final");
                        }
                        other => panic!("unsupported auth request {other}"),
                    }
                }
                b'E' => return Err(m),
                b'Z' => {
                    greeting.push(m);
                    return Ok(greeting);
                }
                _ => greeting.push(m),
            }
        }
    }

    async fn read(&mut self) -> Msg {
        loop {
            if self.rbuf.len() >= 5 {
                let len = i32::from_be_bytes(self.rbuf[1..5].try_into().unwrap()) as usize;
                if self.rbuf.len() > len {
                    let frame = self.rbuf.split_to(len + 1);
                    return Msg {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    };
                }
            }
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.sock.read_buf(&mut self.rbuf),
            )
            .await
            .expect("server answered within 30 s")
            .expect("read");
            assert!(n > 0, "server closed the connection");
        }
    }

    pub async fn flush(&mut self) {
        let out = self.out.split();
        self.sock.write_all(&out).await.expect("write");
    }

    pub fn query(&mut self, sql: &str) -> &mut Self {
        let mut b = Vec::new();
        cstr(&mut b, sql.as_bytes());
        msg(&mut self.out, b'Q', &b);
        self
    }

    pub fn parse(&mut self, name: &str, sql: &str) -> &mut Self {
        let mut b = Vec::new();
        cstr(&mut b, name.as_bytes());
        cstr(&mut b, sql.as_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        msg(&mut self.out, b'P', &b);
        self
    }

    pub fn bind(&mut self, portal: &str, stmt: &str, params: &[&str]) -> &mut Self {
        let mut b = Vec::new();
        cstr(&mut b, portal.as_bytes());
        cstr(&mut b, stmt.as_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            b.extend_from_slice(&(p.len() as i32).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        msg(&mut self.out, b'B', &b);
        self
    }

    pub fn describe(&mut self, kind: u8, name: &str) -> &mut Self {
        let mut b = vec![kind];
        cstr(&mut b, name.as_bytes());
        msg(&mut self.out, b'D', &b);
        self
    }

    pub fn execute(&mut self, portal: &str) -> &mut Self {
        let mut b = Vec::new();
        cstr(&mut b, portal.as_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        msg(&mut self.out, b'E', &b);
        self
    }

    pub fn close(&mut self, kind: u8, name: &str) -> &mut Self {
        let mut b = vec![kind];
        cstr(&mut b, name.as_bytes());
        msg(&mut self.out, b'C', &b);
        self
    }

    /// A FunctionCall of the function with this OID, without arguments, text result.
    pub fn function_call(&mut self, oid: u32) -> &mut Self {
        let mut b = oid.to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 6]);
        msg(&mut self.out, b'F', &b);
        self
    }

    pub fn sync(&mut self) -> &mut Self {
        msg(&mut self.out, b'S', &[]);
        self
    }

    /// Parse + Bind + Execute of `sql` on the unnamed statement and portal.
    pub fn run(&mut self, sql: &str) -> &mut Self {
        self.parse("", sql).bind("", "", &[]).execute("")
    }

    /// Sends what was queued and reads through `n` ReadyForQuery messages.
    pub async fn round(&mut self, n: usize) -> Vec<Msg> {
        self.flush().await;
        let mut got = Vec::new();
        let mut seen = 0;
        while seen < n {
            let m = self.read().await;
            if m.tag == b'Z' {
                seen += 1;
            }
            got.push(m);
        }
        got
    }

    /// The next message the server sends, unprompted or not.
    pub async fn recv(&mut self) -> Msg {
        self.read().await
    }

    /// Whether the server has closed the connection (within 30 s), after reading what it sent
    /// before closing.
    pub async fn closed_after(&mut self) -> (bool, Vec<Msg>) {
        let mut got = Vec::new();
        loop {
            while self.rbuf.len() >= 5 {
                let len = i32::from_be_bytes(self.rbuf[1..5].try_into().unwrap()) as usize;
                if self.rbuf.len() <= len {
                    break;
                }
                let frame = self.rbuf.split_to(len + 1);
                got.push(Msg {
                    tag: frame[0],
                    body: frame[5..].to_vec(),
                });
            }
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.sock.read_buf(&mut self.rbuf),
            )
            .await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
                Ok(Ok(_)) => {}
                Err(_) => return (false, got),
            }
        }
    }

    /// Terminates politely.
    pub async fn close_conn(mut self) {
        msg(&mut self.out, b'X', &[]);
        self.flush().await;
    }
}

/// SQLSTATEs of the errors in `msgs`.
pub fn codes(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().filter_map(Msg::code).collect()
}

/// First columns of the data rows in `msgs`.
pub fn rows(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().filter_map(Msg::first_col).collect()
}

/// The transaction status (`I`, `T` or `E`) of the ReadyForQuery that ends `msgs`; `None` when
/// they do not end with one.
pub fn status(msgs: &[Msg]) -> Option<u8> {
    msgs.last()
        .filter(|m| m.tag == b'Z')
        .and_then(|m| m.body.first().copied())
}
