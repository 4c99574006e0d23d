//! One scripted server connection: startup, then the simple and extended protocol, COPY, and
//! the scripted misbehaviours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::wire::*;
use super::{key_of, ConnLog, Record, Reply, Script, Sent, Stmt, PARAMS, POISON};

/// One connection's protocol state.
struct Conn {
    sock: TcpStream,
    rbuf: BytesMut,
    out: BytesMut,
    idx: usize,
    /// `I`, `T` or `E`.
    status: u8,
    /// After an error in extended protocol: discard until Sync.
    skipping: bool,
    statements: HashMap<Vec<u8>, String>,
    portals: HashMap<Vec<u8>, (String, Vec<Option<String>>)>,
    /// Reported parameters set at session level since the last ReadyForQuery: reported with
    /// it, as PostgreSQL 14+ does.
    changed: Vec<(String, String)>,
    /// Current values of the reported parameters.
    reported: HashMap<String, String>,
    record: Arc<Mutex<Record>>,
    cancelled: Arc<Notify>,
    script: Script,
}

/// What happened to the connection after a reply.
enum After {
    Continue,
    /// The reply included its own ReadyForQuery.
    Answered,
    Close,
}

pub(super) async fn serve(
    sock: TcpStream,
    record: Arc<Mutex<Record>>,
    cancelled: Arc<Notify>,
    script: Script,
) {
    let _ = sock.set_nodelay(true);
    let mut c = Conn {
        sock,
        rbuf: BytesMut::new(),
        out: BytesMut::new(),
        idx: usize::MAX,
        status: b'I',
        skipping: false,
        statements: HashMap::new(),
        portals: HashMap::new(),
        changed: Vec::new(),
        reported: PARAMS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        record,
        cancelled,
        script,
    };
    // Startup packets: SSLRequest/GSSENCRequest are declined, CancelRequest recorded.
    let startup = loop {
        let Some(p) = c.read_startup().await else {
            return;
        };
        let code = i32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        match code {
            80877103 | 80877104 => {
                if c.sock.write_all(b"N").await.is_err() {
                    return;
                }
            }
            80877102 if p.len() >= 12 => {
                let pid = i32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                let secret = i32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                c.record.lock().unwrap().cancels.push((pid, secret));
                c.cancelled.notify_waiters();
                return;
            }
            _ => break p,
        }
    };
    let mut params = Vec::new();
    let mut at = 4;
    while at < startup.len() && startup[at] != 0 {
        let (k, next) = cstr_at(&startup, at);
        let (v, next) = cstr_at(&startup, next);
        params.push((k, v));
        at = next;
    }
    {
        let mut r = c.record.lock().unwrap();
        c.idx = r.conns.len();
        let (pid, secret) = key_of(c.idx);
        r.conns.push(ConnLog {
            startup: params,
            pid,
            secret,
            ..Default::default()
        });
    }
    let (pid, secret) = key_of(c.idx);
    msg(&mut c.out, b'R', &0i32.to_be_bytes());
    for (k, v) in PARAMS {
        let mut b = Vec::new();
        put_cstr(&mut b, k);
        put_cstr(&mut b, v);
        msg(&mut c.out, b'S', &b);
    }
    let mut k = Vec::new();
    k.extend_from_slice(&pid.to_be_bytes());
    k.extend_from_slice(&secret.to_be_bytes());
    msg(&mut c.out, b'K', &k);
    msg(&mut c.out, b'Z', b"I");
    if c.flush().await.is_err() {
        return c.closed();
    }
    loop {
        let Some(m) = c.read_msg().await else {
            return c.closed();
        };
        c.record.lock().unwrap().conns[c.idx].sent.push(m.clone());
        let after = c.on_message(m).await;
        if c.flush().await.is_err() {
            return c.closed();
        }
        if let After::Close = after {
            return c.closed();
        }
    }
}

impl Conn {
    fn closed(&self) {
        if let Some(l) = self.record.lock().unwrap().conns.get_mut(self.idx) {
            l.closed = true;
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = self.out.split();
            self.sock.write_all(&out).await?;
        }
        Ok(())
    }

    async fn fill(&mut self) -> bool {
        matches!(self.sock.read_buf(&mut self.rbuf).await, Ok(n) if n > 0)
    }

    async fn read_startup(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.rbuf.len() >= 4 {
                let len = i32::from_be_bytes(self.rbuf[0..4].try_into().ok()?) as usize;
                if self.rbuf.len() >= len {
                    let p = self.rbuf.split_to(len);
                    return Some(p[4..].to_vec());
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn read_msg(&mut self) -> Option<Sent> {
        loop {
            if self.rbuf.len() >= 5 {
                let len = i32::from_be_bytes(self.rbuf[1..5].try_into().ok()?) as usize;
                if self.rbuf.len() > len {
                    let f = self.rbuf.split_to(len + 1);
                    return Some(Sent {
                        tag: f[0],
                        body: f[5..].to_vec(),
                    });
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    fn error(&mut self, severity: &str, code: &str, message: &str) {
        let mut b = Vec::new();
        for (k, v) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ] {
            b.push(k);
            put_cstr(&mut b, v);
        }
        b.push(0);
        msg(&mut self.out, b'E', &b);
        if self.status == b'T' {
            self.status = b'E';
        }
    }

    async fn on_message(&mut self, m: Sent) -> After {
        if m.tag == b'X' {
            return After::Close;
        }
        if m.tag == b'S' {
            self.skipping = false;
            self.ready();
            return After::Continue;
        }
        if self.skipping {
            return After::Continue;
        }
        match m.tag {
            b'Q' => {
                let sql = m.sql().unwrap_or_default();
                let after = if sql.trim().is_empty() {
                    msg(&mut self.out, b'I', &[]);
                    After::Continue
                } else {
                    self.run(&sql, &[], true).await
                };
                match after {
                    After::Continue => {
                        self.ready();
                        After::Continue
                    }
                    other => other,
                }
            }
            b'P' => {
                let (name, next) = cstr_at(&m.body, 0);
                let (sql, _) = cstr_at(&m.body, next);
                if sql.contains(POISON) {
                    self.fail_extended("42601", &format!("syntax error at or near \"{POISON}\""));
                    return After::Continue;
                }
                self.statements.insert(name.into_bytes(), sql);
                msg(&mut self.out, b'1', &[]);
                After::Continue
            }
            b'B' => {
                let (portal, stmt, params) = bind_parts(&m.body);
                match self.statements.get(stmt.as_bytes()) {
                    Some(sql) => {
                        let sql = sql.clone();
                        self.portals.insert(portal.into_bytes(), (sql, params));
                        msg(&mut self.out, b'2', &[]);
                    }
                    None => self.fail_extended(
                        "26000",
                        &format!("prepared statement \"{stmt}\" does not exist"),
                    ),
                }
                After::Continue
            }
            b'D' => {
                let kind = m.body.first().copied().unwrap_or(b'S');
                let (name, _) = cstr_at(&m.body, 1);
                let sql = match kind {
                    b'S' => self.statements.get(name.as_bytes()).cloned(),
                    _ => self.portals.get(name.as_bytes()).map(|p| p.0.clone()),
                };
                let Some(sql) = sql else {
                    self.fail_extended("26000", "prepared statement does not exist");
                    return After::Continue;
                };
                if kind == b'S' {
                    let n = (1..=99)
                        .take_while(|i| sql.contains(&format!("${i}")))
                        .count();
                    let mut b = Vec::new();
                    b.extend_from_slice(&(n as i16).to_be_bytes());
                    for _ in 0..n {
                        b.extend_from_slice(&25u32.to_be_bytes());
                    }
                    msg(&mut self.out, b't', &b);
                }
                let reply = self.script.reply(&Stmt {
                    sql: &sql,
                    params: &[],
                    conn: self.idx,
                });
                match reply {
                    Reply::Rows { cols, .. } => row_description(&mut self.out, &cols),
                    _ => msg(&mut self.out, b'n', &[]),
                }
                After::Continue
            }
            b'E' => {
                let (portal, _) = cstr_at(&m.body, 0);
                let Some((sql, params)) = self.portals.get(portal.as_bytes()).cloned() else {
                    self.fail_extended("34000", &format!("portal \"{portal}\" does not exist"));
                    return After::Continue;
                };
                self.run(&sql, &params, false).await
            }
            b'C' => {
                let kind = m.body.first().copied().unwrap_or(b'S');
                let (name, _) = cstr_at(&m.body, 1);
                match kind {
                    b'S' => self.statements.remove(name.as_bytes()),
                    _ => self.portals.remove(name.as_bytes()).map(|p| p.0),
                };
                msg(&mut self.out, b'3', &[]);
                After::Continue
            }
            b'H' => After::Continue,
            // CopyData/CopyDone/CopyFail outside COPY: PostgreSQL ignores them too.
            b'd' | b'c' | b'f' => After::Continue,
            other => {
                self.error(
                    "FATAL",
                    "08P01",
                    &format!("invalid frontend message type {}", other),
                );
                After::Close
            }
        }
    }

    /// ReadyForQuery, after the ParameterStatus of reported parameters that changed.
    fn ready(&mut self) {
        for (k, v) in std::mem::take(&mut self.changed) {
            let mut b = Vec::new();
            put_cstr(&mut b, &k);
            put_cstr(&mut b, &v);
            msg(&mut self.out, b'S', &b);
        }
        msg(&mut self.out, b'Z', &[self.status]);
    }

    /// A session-level `set_config(name, value, false)` of a reported parameter (NULL: back to
    /// the default) is reported at the next ReadyForQuery, when the value changed.
    fn note_setting(&mut self, sql: &str, params: &[Option<String>]) {
        if !sql.contains("set_config") || !sql.contains("false") {
            return;
        }
        let Some(Some(name)) = params.first() else {
            return;
        };
        let Some(default) = PARAMS.iter().find(|(k, _)| k == name).map(|(_, v)| *v) else {
            return;
        };
        let value = params
            .get(1)
            .cloned()
            .flatten()
            .unwrap_or_else(|| default.to_owned());
        if self.reported.get(name) != Some(&value) {
            self.reported.insert(name.clone(), value.clone());
            self.changed.retain(|(k, _)| k != name);
            self.changed.push((name.clone(), value));
        }
    }

    /// An error in extended protocol: answered, then everything until Sync is skipped.
    fn fail_extended(&mut self, code: &str, message: &str) {
        self.error("ERROR", code, message);
        self.skipping = true;
    }

    /// Runs one statement: its rows (with a RowDescription in simple protocol) and
    /// CommandComplete, or the scripted misbehaviour.
    async fn run(&mut self, sql: &str, params: &[Option<String>], simple: bool) -> After {
        if self.status == b'E' {
            let upper = sql.trim().to_ascii_uppercase();
            if !(upper.starts_with("ROLLBACK")
                || upper.starts_with("COMMIT")
                || upper.starts_with("END"))
            {
                self.error(
                    "ERROR",
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                );
                self.skipping = !simple;
                return After::Continue;
            }
        }
        let reply = self.script.reply(&Stmt {
            sql,
            params,
            conn: self.idx,
        });
        match reply {
            Reply::Rows { cols, rows } => {
                if simple {
                    row_description(&mut self.out, &cols);
                }
                for r in &rows {
                    data_row(&mut self.out, r);
                }
                complete(&mut self.out, &format!("SELECT {}", rows.len()));
                self.track(sql);
                self.note_setting(sql, params);
            }
            Reply::Command(tag) => {
                if tag.is_empty() {
                    msg(&mut self.out, b'I', &[]);
                } else {
                    complete(&mut self.out, &tag);
                }
                self.track(sql);
            }
            Reply::Error { code, message } => {
                self.error("ERROR", &code, &message);
                if !simple {
                    self.skipping = true;
                }
            }
            Reply::Fatal { code, message } => {
                self.error("FATAL", &code, &message);
                return After::Close;
            }
            Reply::Drop => {
                self.out.clear();
                return After::Close;
            }
            Reply::Garbage(bytes) => {
                self.out.put_slice(&bytes);
                return After::Close;
            }
            Reply::Raw(bytes) => {
                self.out.put_slice(&bytes);
                return After::Answered;
            }
            Reply::Hang => {
                let _ = self.flush().await;
                let (pid, secret) = key_of(self.idx);
                loop {
                    let notified = self.cancelled.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if self.record.lock().unwrap().cancels.contains(&(pid, secret)) {
                        break;
                    }
                    notified.await;
                }
                self.error("ERROR", "57014", "canceling statement due to user request");
                if !simple {
                    self.skipping = true;
                }
            }
            Reply::CopyIn => {
                copy_response(&mut self.out, b'G');
                let _ = self.flush().await;
                let mut lines = 0;
                loop {
                    let Some(m) = self.read_msg().await else {
                        return After::Close;
                    };
                    self.record.lock().unwrap().conns[self.idx]
                        .sent
                        .push(m.clone());
                    match m.tag {
                        b'd' => lines += m.body.iter().filter(|&&b| b == b'\n').count(),
                        b'c' => {
                            complete(&mut self.out, &format!("COPY {lines}"));
                            break;
                        }
                        b'f' => {
                            self.error("ERROR", "57014", "COPY from stdin failed");
                            if !simple {
                                self.skipping = true;
                            }
                            break;
                        }
                        // Flush and Sync are ignored during COPY IN, as PostgreSQL does.
                        b'H' | b'S' => {}
                        _ => {
                            self.error("ERROR", "08P01", "unexpected message during COPY");
                            break;
                        }
                    }
                }
            }
            Reply::CopyOut(lines) => {
                copy_response(&mut self.out, b'H');
                for l in &lines {
                    msg(&mut self.out, b'd', format!("{l}\n").as_bytes());
                }
                msg(&mut self.out, b'c', &[]);
                complete(&mut self.out, &format!("COPY {}", lines.len()));
            }
        }
        After::Continue
    }

    /// Transaction status from the statement that just succeeded.
    fn track(&mut self, sql: &str) {
        let upper = sql.trim().to_ascii_uppercase();
        if upper.starts_with("BEGIN") || upper.starts_with("START TRANSACTION") {
            self.status = b'T';
        } else if upper.starts_with("COMMIT")
            || upper.starts_with("ROLLBACK")
            || upper.starts_with("END")
        {
            self.status = b'I';
        }
    }
}
