//! A scripted PostgreSQL peer: the upstream of the fast layer.
//!
//! [`Upstream`] is a TCP listener on 127.0.0.1 that speaks just enough of the v3 protocol to be
//! the proxy's server: it answers every startup with AuthenticationOk, ParameterStatus,
//! BackendKeyData and ReadyForQuery, then answers each statement from a [`Script`] (rows, a
//! command tag, an error, a FATAL, a dropped connection, garbage, a query that hangs until it is
//! cancelled, COPY in either direction). It follows PostgreSQL's extended-protocol rules (after
//! an error, skip to Sync), the transaction status and the reporting of changed parameters, and
//! it records every message the proxy sent, per connection, plus every CancelRequest, so tests
//! assert on what reached "PostgreSQL". `server.rs` is the per-connection state machine,
//! `wire.rs` the encoding.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::Notify;

mod server;
mod wire;

use server::serve;
use wire::{bind_parts, cstr_at};

/// The password of every configured test user.
pub const PW: &str = "fast_pw";
/// The tenant of `acme_app`.
pub const ACME: &str = "11111111-1111-1111-1111-111111111111";
/// The tenant of `globex_app`.
pub const GLOBEX: &str = "22222222-2222-2222-2222-222222222222";
/// The database the proxy serves (and asks the upstream for).
pub const DB: &str = "app";
/// The proxy's tenant setting (the default).
pub const SETTING: &str = "app.tenant_id";
/// The statement text the proxy's prelude parses (`tenant::inject::SQL`).
pub const PRELUDE_SQL: &str = "SELECT pg_catalog.set_config($1, $2, false)";
/// The text the proxy sends in place of a refused statement (`tenant::inject::POISON`).
pub const POISON: &str = "__tenantgate_refused_statement__";

// ---------------------------------------------------------------------------------------------
// What the proxy sent
// ---------------------------------------------------------------------------------------------

/// One message the proxy sent to the scripted upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Sent {
    /// The SQL of a Query or a Parse.
    pub fn sql(&self) -> Option<String> {
        match self.tag {
            b'Q' => Some(cstr_at(&self.body, 0).0),
            b'P' => {
                let (_, next) = cstr_at(&self.body, 0);
                Some(cstr_at(&self.body, next).0)
            }
            _ => None,
        }
    }

    /// A Bind's parameters, as text (None for NULL).
    pub fn params(&self) -> Vec<Option<String>> {
        if self.tag != b'B' {
            return Vec::new();
        }
        bind_parts(&self.body).2
    }

    /// A CopyData's payload.
    pub fn copy_data(&self) -> Option<&[u8]> {
        (self.tag == b'd').then_some(&self.body[..])
    }
}

/// One server connection the proxy opened (or a cancel connection).
#[derive(Debug, Clone, Default)]
pub struct ConnLog {
    /// The startup parameters the proxy sent.
    pub startup: Vec<(String, String)>,
    /// The BackendKeyData this connection handed out.
    pub pid: i32,
    pub secret: i32,
    /// Every message after the startup, in order.
    pub sent: Vec<Sent>,
    /// The proxy closed the socket (or sent Terminate).
    pub closed: bool,
}

impl ConnLog {
    /// The SQL of every Query and Parse, in order.
    pub fn sql(&self) -> Vec<String> {
        self.sent.iter().filter_map(Sent::sql).collect()
    }

    /// Whether any statement text the proxy sent on this connection contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.sent.iter().any(|m| {
            m.sql().is_some_and(|s| s.contains(needle))
                || m.params().iter().flatten().any(|p| p.contains(needle))
                || m.copy_data()
                    .is_some_and(|d| String::from_utf8_lossy(d).contains(needle))
        })
    }

    /// The tenant values the prelude's Binds set (`set_config('app.tenant_id', …)`), in order.
    pub fn tenants_set(&self) -> Vec<Option<String>> {
        self.sent
            .iter()
            .filter(|m| m.tag == b'B')
            .map(Sent::params)
            .filter(|p| p.first().and_then(|n| n.as_deref()) == Some(SETTING))
            .map(|p| p.get(1).cloned().flatten())
            .collect()
    }
}

/// What the scripted upstream saw.
#[derive(Debug, Default)]
struct Record {
    conns: Vec<ConnLog>,
    /// CancelRequests received: (pid, secret).
    cancels: Vec<(i32, i32)>,
}

// ---------------------------------------------------------------------------------------------
// The script
// ---------------------------------------------------------------------------------------------

/// How the scripted upstream answers one statement.
#[derive(Debug, Clone)]
pub enum Reply {
    /// RowDescription (text columns), DataRows, CommandComplete `SELECT n`.
    Rows {
        cols: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// CommandComplete with this tag (no rows).
    Command(String),
    /// An ErrorResponse (severity ERROR).
    Error { code: String, message: String },
    /// A FATAL ErrorResponse, then the connection is closed.
    Fatal { code: String, message: String },
    /// The connection is dropped without an answer.
    Drop,
    /// These bytes, then the connection is dropped (a server gone mad).
    Garbage(Vec<u8>),
    /// These bytes in place of the whole answer (ReadyForQuery included); the connection
    /// stays open.
    Raw(Vec<u8>),
    /// No answer until a CancelRequest names this connection: then 57014.
    Hang,
    /// CopyInResponse; CopyData is collected until CopyDone: `COPY n` (n = lines received).
    CopyIn,
    /// CopyOutResponse, one CopyData per line, CopyDone, `COPY n`.
    CopyOut(Vec<String>),
}

impl Reply {
    /// One text column, one row per value.
    pub fn column(name: &str, values: &[&str]) -> Reply {
        Reply::Rows {
            cols: vec![name.to_owned()],
            rows: values.iter().map(|v| vec![Some((*v).to_owned())]).collect(),
        }
    }

    /// An ERROR with this SQLSTATE and message.
    pub fn error(code: &str, message: &str) -> Reply {
        Reply::Error {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One statement as the script sees it: its text, its bound parameters (empty for a Query),
/// and which server connection (0-based, in opening order) runs it.
pub struct Stmt<'a> {
    pub sql: &'a str,
    pub params: &'a [Option<String>],
    pub conn: usize,
}

type Rule = Arc<dyn Fn(&Stmt<'_>) -> Option<Reply> + Send + Sync>;

/// The upstream's answers: the first rule that returns a reply wins, then the defaults
/// ([`default_reply`]).
#[derive(Clone, Default)]
pub struct Script {
    rules: Vec<Rule>,
}

impl Script {
    /// Adds a rule.
    pub fn on(mut self, rule: impl Fn(&Stmt<'_>) -> Option<Reply> + Send + Sync + 'static) -> Self {
        self.rules.push(Arc::new(rule));
        self
    }

    /// Answers statements whose text contains `needle` with `reply`.
    pub fn when(self, needle: &'static str, reply: Reply) -> Self {
        self.on(move |s| s.sql.contains(needle).then(|| reply.clone()))
    }

    fn reply(&self, s: &Stmt<'_>) -> Reply {
        self.rules
            .iter()
            .find_map(|r| r(s))
            .unwrap_or_else(|| default_reply(s))
    }
}

/// What PostgreSQL would roughly answer: the prelude's `set_config` returns its value, the
/// poison is a syntax error, `SELECT` returns one `1`, anything else its first word as the tag.
pub fn default_reply(s: &Stmt<'_>) -> Reply {
    let sql = s.sql.trim();
    if sql.contains(POISON) {
        return Reply::error("42601", &format!("syntax error at or near \"{POISON}\""));
    }
    if sql.contains("set_config") || sql.contains("current_setting") {
        let v = s.params.get(1).cloned().flatten().unwrap_or_default();
        return Reply::Rows {
            cols: vec!["set_config".into()],
            rows: vec![vec![Some(v)]],
        };
    }
    let word = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match word.as_str() {
        "SELECT" => Reply::column("?column?", &["1"]),
        "" => Reply::Command(String::new()),
        "INSERT" => Reply::Command("INSERT 0 1".into()),
        _ => Reply::Command(word),
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted upstream
// ---------------------------------------------------------------------------------------------

/// A scripted PostgreSQL on 127.0.0.1 (see the module header).
pub struct Upstream {
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    /// Woken by every CancelRequest (hung queries check whether it was theirs).
    cancelled: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts listening; each connection is served by `script`.
    pub async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let record = Arc::new(Mutex::new(Record::default()));
        let cancelled = Arc::new(Notify::new());
        let (rec, notify) = (record.clone(), cancelled.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (rec, notify, script) = (rec.clone(), notify.clone(), script.clone());
                tokio::spawn(serve(sock, rec, notify, script));
            }
        });
        Upstream {
            addr,
            record,
            cancelled,
            task,
        }
    }

    /// Every server connection the proxy opened so far, in order.
    pub fn conns(&self) -> Vec<ConnLog> {
        self.record.lock().unwrap().conns.clone()
    }

    /// Connection `i` (panics when the proxy did not open it).
    pub fn conn(&self, i: usize) -> ConnLog {
        self.conns()
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("the proxy opened no server connection #{i}"))
    }

    /// Whether any server connection's log [saw](ConnLog::saw) `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.record
            .lock()
            .unwrap()
            .conns
            .iter()
            .any(|l| l.saw(needle))
    }

    /// How many server connections the proxy opened.
    pub fn opened(&self) -> usize {
        self.record.lock().unwrap().conns.len()
    }

    /// The CancelRequests that reached the upstream: (pid, secret).
    pub fn cancels(&self) -> Vec<(i32, i32)> {
        self.record.lock().unwrap().cancels.clone()
    }
}

/// The BackendKeyData of connection `i`: distinct pids and secrets per connection.
fn key_of(i: usize) -> (i32, i32) {
    (40_000 + i as i32, 0x5ec0_0000 + i as i32 * 7919)
}

/// The parameters the scripted server reports, as PostgreSQL 15 does to a UTF8 client.
const PARAMS: [(&str, &str); 11] = [
    ("application_name", "tenantgate"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("IntervalStyle", "postgres"),
    ("is_superuser", "off"),
    ("server_encoding", "UTF8"),
    ("server_version", "15.99 (scripted)"),
    ("session_authorization", "app_user"),
    ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"),
];
