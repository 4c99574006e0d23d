//! One upstream PostgreSQL connection: connect, (TLS), authenticate, learn its parameters; and
//! the proxy's own exchanges on it (a batch to ReadyForQuery, a CancelRequest).
//!
//! postgres-protocol provides the SCRAM-SHA-256 client and md5 hashing; the framing is ours.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::messages::{error_fields, parameter_status_fields, read_cstr, ErrorFields};
use crate::protocol::stream::{BoxStream, PqStream, StreamError};

/// Everything needed to open a connection to one upstream role.
#[derive(Clone)]
pub struct UpstreamSpec {
    /// Host name or address, or a Unix socket directory ([`unix_socket_path`]).
    pub host: String,
    /// TCP port, or the `<port>` of the socket file's name.
    pub port: u16,
    /// `[upstream] database`, the same for both pools.
    pub database: String,
    /// The app role, or the break-glass role for that pool.
    pub user: String,
    /// Its password, when the server asks for one.
    pub password: Option<String>,
    /// TLS client configuration, when TLS is wanted.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// How long opening one connection may take: DNS, TCP (or Unix socket), TLS, startup and
    /// authentication, up to the first ReadyForQuery.
    pub connect_timeout: Duration,
    /// Largest message accepted from the server.
    pub max_message: usize,
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("UpstreamSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why an upstream connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting (TCP or Unix socket) or the SSLRequest exchange failed.
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        /// `host:port`, or the socket path.
        addr: String,
        /// In the message and as `source()` (`cli::render_error` prints it once).
        source: std::io::Error,
    },
    /// The stream broke after connecting.
    #[error("server connection failed: {0}")]
    Stream(#[from] StreamError),
    /// The server refused the TLS upgrade or the handshake failed.
    #[error("TLS to server failed: {0}")]
    Tls(String),
    /// The server sent an ErrorResponse during startup (bad password, no database, ...).
    #[error("server refused connection: {} {}", .0.code, .0.message)]
    Server(ErrorFields),
    /// The server asked for something we cannot do.
    #[error("server protocol error: {0}")]
    Protocol(String),
    /// Connecting took longer than `connect_timeout`.
    #[error("timed out connecting to server")]
    Timeout,
}

impl UpstreamError {
    /// The server refused the login itself (class 28 or 3D000): not transient.
    pub fn is_login_rejection(&self) -> bool {
        matches!(self, UpstreamError::Server(f) if crate::verify::connect::is_login_rejection(&f.code))
    }
}

/// A live, authenticated upstream connection.
///
/// Its fields are the pool's: outside `pool/`, the session, relay and injection see it through
/// the methods below, which say what may change (a ReadyForQuery, the identity it carries, state
/// that makes it need a reset) rather than handing out every field.
pub struct UpstreamConn {
    pub(super) stream: PqStream,
    /// The server's BackendKeyData, for forwarding cancels.
    pub(super) pid: i32,
    /// Secret half of the server's cancel key.
    pub(super) secret: i32,
    /// Reported parameters, kept current from ParameterStatus messages.
    pub(super) params: Vec<(String, String)>,
    /// Last ReadyForQuery status (`I`, `T`, `E`).
    pub(super) status: u8,
    /// When the connection was opened (for `server_lifetime`).
    pub(super) created: Instant,
    /// When it was last released (for `idle_timeout`).
    pub(super) last_used: Instant,
    /// The session identity (tenant + settings) whose values this connection carries at
    /// session level, as confirmed by the server; 0 when unknown (see `tenant::inject`).
    pub(super) identity: u64,
    /// Setting names that identity applied (reset when another identity takes over).
    pub(super) applied_keys: Vec<String>,
    /// The connection may hold state that outlives a transaction (a cursor, LISTEN, a
    /// possibly temporary object): it is reset before another client gets it.
    pub(super) dirty: bool,
    /// Client messages were forwarded and their ReadyForQuery has not arrived yet.
    pub(super) busy: bool,
    /// Server-side prepared statements this connection holds (transaction pooling).
    pub(super) statements: crate::prepared::ServerStatements,
    /// SHOW SERVERS' view of this connection, updated with atomics (no lock per checkout).
    pub(super) info: Arc<ConnInfo>,
    /// Values of the tracked reported parameters, indexed like `params::TRACKED`, so a
    /// session checks its settings with a few string compares per transaction.
    tracked: [Option<String>; crate::protocol::params::TRACKED.len()],
    /// Counts this connection against `max_db_connections` until it is dropped (set by the
    /// pool that opened it).
    pub(super) db_token: Option<super::DbToken>,
}

/// What SHOW SERVERS reports about one connection; shared by the pool's list and the
/// connection, and gone from the list when the connection is dropped.
#[derive(Debug)]
pub struct ConnInfo {
    /// The connection's process-unique id.
    pub id: u64,
    /// The backend pid (known after BackendKeyData).
    pub pid: AtomicI32,
    /// When the connection was opened.
    pub created: SystemTime,
    /// Checked out by a session right now.
    pub active: AtomicBool,
    /// Unix time (µs) of the last checkout or release.
    pub since_us: AtomicU64,
}

impl ConnInfo {
    /// Marks the connection checked out (`true`) or back in the pool, stamped now.
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
        self.since_us
            .store(unix_micros(SystemTime::now()), Ordering::Relaxed);
    }
}

/// Microseconds since the Unix epoch (0 before it).
pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl UpstreamConn {
    /// A connection over an authenticated stream, before its startup answers are read (also
    /// how benchmarks build one without a server).
    pub fn new(stream: PqStream, id: u64) -> UpstreamConn {
        let now = SystemTime::now();
        UpstreamConn {
            stream,
            pid: 0,
            secret: 0,
            params: Vec::new(),
            status: b'I',
            created: Instant::now(),
            last_used: Instant::now(),
            identity: 0,
            applied_keys: Vec::new(),
            dirty: false,
            busy: false,
            statements: Default::default(),
            info: Arc::new(ConnInfo {
                id,
                pid: AtomicI32::new(0),
                created: now,
                active: AtomicBool::new(false),
                since_us: AtomicU64::new(unix_micros(now)),
            }),
            tracked: Default::default(),
            db_token: None,
        }
    }

    /// Raw frame I/O: nothing read or written here changes the connection's bookkeeping.
    #[inline]
    pub fn stream(&mut self) -> &mut PqStream {
        &mut self.stream
    }

    /// The server-side prepared statements this connection holds.
    #[inline]
    pub fn statements(&mut self) -> &mut crate::prepared::ServerStatements {
        &mut self.statements
    }

    /// The server's cancel key (BackendKeyData): pid and secret.
    pub fn backend_key(&self) -> (i32, i32) {
        (self.pid, self.secret)
    }

    /// The last ReadyForQuery status (`I`, `T`, `E`).
    #[inline]
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Client or proxy messages were sent: their ReadyForQuery is awaited.
    #[inline]
    pub fn start_busy(&mut self) {
        self.busy = true;
    }

    /// A ReadyForQuery arrived with `status`; `done`: it was the last one awaited.
    #[inline]
    pub fn ready(&mut self, status: u8, done: bool) {
        self.status = status;
        if done {
            self.busy = false;
        }
    }

    /// The session identity whose values the connection carries (0: unknown).
    #[inline]
    pub fn identity(&self) -> u64 {
        self.identity
    }

    /// The prelude of `identity` committed, setting `applied_keys` at session level.
    pub fn carry(&mut self, identity: u64, applied_keys: Vec<String>) {
        self.identity = identity;
        self.applied_keys = applied_keys;
    }

    /// The connection's settings can no longer be trusted to be any identity's (a prelude in
    /// flight, the client's SET, RESET or DISCARD): the next transaction gets the prelude.
    #[inline]
    pub fn forget_identity(&mut self) {
        self.identity = 0;
    }

    /// Forgets the identity while a prelude is in flight, returning it for
    /// [`UpstreamConn::restore_identity`].
    #[inline]
    pub fn take_identity(&mut self) -> u64 {
        std::mem::take(&mut self.identity)
    }

    /// A prelude that set only reported parameters committed: the connection still carries
    /// the identity [`UpstreamConn::take_identity`] returned.
    #[inline]
    pub fn restore_identity(&mut self, identity: u64) {
        self.identity = identity;
    }

    /// Queues what `write` writes, given the settings this connection carries at session
    /// level (a new identity's prelude resets them) and its backend pid (signatures bind it).
    #[inline]
    pub fn write_prelude(&mut self, write: impl FnOnce(&mut bytes::BytesMut, &[String], i32)) {
        write(self.stream.out(), &self.applied_keys, self.pid)
    }

    /// The client set `name` at session level: whoever gets the connection next with another
    /// identity has it reset.
    pub fn add_applied_key(&mut self, name: &str) {
        if !self.applied_keys.iter().any(|k| k == name) {
            self.applied_keys.push(name.to_owned());
        }
    }

    /// The connection may hold state that outlives a transaction: reset before reuse.
    #[inline]
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Current value of the tracked parameter `params::TRACKED[i]`.
    #[inline]
    pub fn tracked(&self, i: usize) -> Option<&str> {
        self.tracked.get(i).and_then(|v| v.as_deref())
    }

    /// Records a ParameterStatus the server sent.
    pub fn set_param(&mut self, name: String, value: String) {
        if let Some(i) = crate::protocol::params::tracked_index(&name) {
            self.tracked[i] = Some(value.clone());
        }
        match self.params.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name, value)),
        }
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The id the next connection will get: every connection open now has a smaller one.
pub fn next_conn_id() -> u64 {
    NEXT_ID.load(Ordering::Relaxed)
}

/// Opens and authenticates a connection within `connect_timeout`.
pub async fn connect(spec: &UpstreamSpec) -> Result<UpstreamConn, UpstreamError> {
    match tokio::time::timeout(spec.connect_timeout, connect_inner(spec)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout),
    }
}

/// The Unix socket of a `host` that is a directory (`/var/run/postgresql`), as libpq does:
/// `<dir>/.s.PGSQL.<port>`.
pub fn unix_socket_path(host: &str, port: u16) -> Option<std::path::PathBuf> {
    host.starts_with('/')
        .then(|| std::path::Path::new(host).join(format!(".s.PGSQL.{port}")))
}

async fn connect_inner(spec: &UpstreamSpec) -> Result<UpstreamConn, UpstreamError> {
    if let Some(path) = unix_socket_path(&spec.host, spec.port) {
        // Validation refuses TLS with a socket path, as libpq never encrypts Unix sockets.
        let unix = tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: path.display().to_string(),
                source,
            })?;
        return startup(Box::new(unix), spec).await;
    }
    let addr = format!("{}:{}", spec.host, spec.port);
    let mut tcp = TcpStream::connect((spec.host.as_str(), spec.port))
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let io: BoxStream = match &spec.tls {
        None => Box::new(tcp),
        Some(cfg) => {
            let mut buf = BytesMut::new();
            frontend::ssl_request(&mut buf);
            let io_err = |source| UpstreamError::Connect {
                addr: addr.clone(),
                source,
            };
            tcp.write_all(&buf).await.map_err(io_err)?;
            let answer = tcp.read_u8().await.map_err(io_err)?;
            if answer != b'S' {
                return Err(UpstreamError::Tls("server does not support SSL".into()));
            }
            let name = crate::tls::server_name(&spec.host)
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            Box::new(tls)
        }
    };
    startup(io, spec).await
}

/// Startup message, authentication and the server's greeting, over any transport.
async fn startup(io: BoxStream, spec: &UpstreamSpec) -> Result<UpstreamConn, UpstreamError> {
    let mut stream = PqStream::new(
        io,
        BytesMut::new(),
        spec.max_message,
        crate::protocol::stream::SERVER_READ_CHUNK,
    );
    let params = [
        ("user", spec.user.as_str()),
        ("database", spec.database.as_str()),
        ("application_name", "tenantgate"),
        ("client_encoding", "UTF8"),
    ];
    frontend::startup_message(params.iter().copied(), stream.out())
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    stream.flush().await?;
    authenticate(&mut stream, spec).await?;

    let mut conn = UpstreamConn::new(stream, NEXT_ID.fetch_add(1, Ordering::Relaxed));
    loop {
        let f = conn.stream.read_frame().await?;
        match f.tag() {
            b'S' => {
                if let Some((k, v)) = parameter_status_fields(f.body()) {
                    if k == "client_encoding"
                        && crate::protocol::params::unsafe_client_encoding(&v).is_some()
                    {
                        // Never pool a connection the inspector cannot read (see catalog.rs).
                        return Err(UpstreamError::Protocol(format!(
                            "server reported client_encoding {v}, which tenantgate refuses"
                        )));
                    }
                    conn.set_param(k, v);
                }
            }
            b'K' => {
                let b = f.body();
                if b.len() >= 8 {
                    conn.pid = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    conn.secret = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                    conn.info.pid.store(conn.pid, Ordering::Relaxed);
                }
            }
            b'Z' => {
                conn.status = f.body().first().copied().unwrap_or(b'I');
                return Ok(conn);
            }
            b'E' => return Err(UpstreamError::Server(error_fields(f.body()))),
            b'N' => {}
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message {:?} during startup",
                    other as char
                )))
            }
        }
    }
}

async fn authenticate(stream: &mut PqStream, spec: &UpstreamSpec) -> Result<(), UpstreamError> {
    let password = || {
        spec.password.as_deref().ok_or_else(|| {
            UpstreamError::Protocol("server asked for a password but none is configured".into())
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = stream.read_frame().await?;
        match f.tag() {
            b'E' => return Err(UpstreamError::Server(error_fields(f.body()))),
            b'R' => {}
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "expected authentication request, got {:?}",
                    other as char
                )))
            }
        }
        let body = f.body();
        let Some(code) = body.get(0..4) else {
            return Err(UpstreamError::Protocol(
                "short authentication message".into(),
            ));
        };
        let code = i32::from_be_bytes([code[0], code[1], code[2], code[3]]);
        let data = &body[4..];
        match code {
            0 => return Ok(()),
            3 => {
                frontend::password_message(password()?.as_bytes(), stream.out())
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            }
            5 => {
                let salt: [u8; 4] = data
                    .get(0..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| UpstreamError::Protocol("short md5 salt".into()))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    spec.user.as_bytes(),
                    password()?.as_bytes(),
                    salt,
                );
                frontend::password_message(hash.as_bytes(), stream.out())
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            }
            10 => {
                let mut mechs = data;
                let mut has_scram = false;
                while let Some((m, rest)) = read_cstr(mechs) {
                    if m.is_empty() {
                        break;
                    }
                    has_scram |= m == SCRAM_SHA_256.as_bytes();
                    mechs = rest;
                }
                if !has_scram {
                    return Err(UpstreamError::Protocol(
                        "server offers no supported SASL mechanism".into(),
                    ));
                }
                let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), stream.out())
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                scram = Some(s);
            }
            11 => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| UpstreamError::Protocol("unexpected SASL continue".into()))?;
                // PBKDF2 (4,096 HMAC rounds or more) runs on the blocking pool, never on a
                // runtime thread that is relaying other sessions' queries.
                let data = data.to_vec();
                let s = tokio::task::spawn_blocking(move || s.update(&data).map(|()| s))
                    .await
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                frontend::sasl_response(s.message(), stream.out())
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                scram = Some(s);
            }
            12 => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("unexpected SASL final".into()))?;
                s.finish(data)
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                continue;
            }
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unsupported authentication request {other}"
                )))
            }
        }
        stream.flush().await?;
    }
}

/// Sends the extended-protocol batch queued on an idle connection (it must end with Sync) and
/// reads to ReadyForQuery: the first column of every DataRow, or the first error.
pub async fn run_batch(
    conn: &mut UpstreamConn,
) -> Result<Result<Vec<Option<String>>, ErrorFields>, StreamError> {
    conn.busy = true;
    conn.stream.flush().await?;
    let mut values = Vec::new();
    let mut failure = None;
    loop {
        let f = conn.stream.read_frame().await?;
        match f.tag() {
            b'D' => values.push(
                crate::protocol::messages::first_column(f.body())
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            ),
            b'E' if failure.is_none() => failure = Some(error_fields(f.body())),
            b'Z' => {
                conn.status = f.body().first().copied().unwrap_or(b'I');
                conn.busy = false;
                return Ok(match failure {
                    Some(e) => Err(e),
                    None => Ok(values),
                });
            }
            _ => {}
        }
    }
}

/// Sends a CancelRequest for `(pid, secret)` to the upstream server (best effort).
pub async fn send_cancel(host: &str, port: u16, pid: i32, secret: i32) -> std::io::Result<()> {
    let mut io: BoxStream = match unix_socket_path(host, port) {
        Some(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        None => Box::new(TcpStream::connect((host, port)).await?),
    };
    let mut buf = BytesMut::new();
    frontend::cancel_request(pid, secret, &mut buf);
    io.write_all(&buf).await?;
    // The server closes the connection without answering; wait for that briefly.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(2), io.read(&mut sink)).await;
    Ok(())
}
