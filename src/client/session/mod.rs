//! The per-session loop: client messages in, tenant guard, injection, upstream, relay back.
//!
//! The one place tenant enforcement slots in is [`Session::on_client`]: a message that starts
//! a segment (the first message after ReadyForQuery) attaches an upstream connection and, when
//! the connection is idle (`I`) and does not carry this session's identity yet, waits for the
//! prelude that sets it (see `tenant::inject`). Statement and portal names go through the
//! session's [`Namespace`], which renames them and refuses what the client did not create.
//!
//! Segments are processed one at a time: after a Query or Sync is forwarded, further client
//! messages wait (buffered) until ReadyForQuery reports the true transaction status, except
//! COPY data while the server is in COPY IN. So the proxy always knows, from PostgreSQL itself,
//! whether the next message starts a new transaction, even for pipelining clients.

use std::sync::Arc;
use std::time::Instant;

use crate::client::rewrite::{Caps, Forwarded, Namespace, Refusal};
use crate::client::who::Identity;
use crate::config::{PoolMode, UserKind};
use crate::error;
use crate::events::SecurityEvent;
use crate::pool::queue::Seat;
use crate::pool::{Pool, PoolError, PoolGuard, PoolStats};
use crate::protocol::frame::FrameRef;
use crate::protocol::messages::{self, parse_msg, query_text, PgError};
use crate::protocol::stream::StreamError;
use crate::protocol::{Frame, PqStream};
use crate::relay::{Expect, Msg, Outcome, Relay};
use crate::shared::cancel::CancelHandle;
use crate::shared::Shared;
use crate::tenant::guard::{Decision, Verdict};
use crate::tenant::identity::check_allowed;
use crate::tenant::inject::{self, Prelude};
use crate::tenant_id::{canonical, validate_tenant_id};
use bytes::Buf;

mod guard;
mod server;

use server::signing_key;

/// Settings a session may carry at session level (startup options plus its own `SET`s): bounds
/// the prelude and the memory per session.
const MAX_SESSION_SETTINGS: usize = 128;

/// Statements longer than this are inspected on the blocking pool (STYLE: CPU-heavy work off
/// the runtime); the pgbench statement is 60 bytes.
const OFFLOAD_INSPECTION: usize = 64 * 1024;

/// While waiting for ReadyForQuery, read at most this much ahead from the client (to notice
/// a disconnect) before applying backpressure.
const HOLD_LIMIT: usize = 1 << 20;

/// Where the session is in the request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between segments: the next message starts one.
    Idle,
    /// Forwarding an extended-protocol batch that has not reached its Sync yet.
    InSegment,
    /// A Query or Sync was forwarded; waiting for ReadyForQuery.
    AwaitRfq,
}

/// Whether the loop continues.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client's stream failed or broke the protocol.
    #[error("client: {0}")]
    Client(StreamError),
    /// The upstream's stream failed.
    #[error("server: {0}")]
    Server(StreamError),
}

/// One client session after authentication.
pub struct Session {
    /// Config, pools, event sink, cancel registry.
    shared: Arc<Shared>,
    client: PqStream,
    /// Who the client is, and its current tenant.
    who: Identity,
    /// The values this session's server connection must carry (tenant, startup settings).
    prelude: Prelude,
    /// The pool this session draws from (app or break-glass).
    pool: Arc<Pool>,
    /// This session's place in its tenant's `max_client_connections`, and the tenant as the
    /// pool counts it (its share and its turn in the queue); None for sessions without a
    /// tenant, which never attach, and break-glass ones.
    seat: Option<Seat>,
    /// The user's count of server connections (`max_user_connections`, a user's `pool_size`).
    user_share: Arc<crate::pool::limits::UserTag>,
    /// The user's own `pool_mode`, else `[upstream]`'s.
    mode: PoolMode,
    /// Kept between transactions only in session pooling.
    server: Option<PoolGuard>,
    phase: Phase,
    /// The last segment ended with a Query (simple protocol), not a Sync.
    simple_segment: bool,
    /// Response filtering for the current transaction.
    relay: Relay,
    /// A locally refused extended message: drop client messages until Sync, then answer it.
    local_discard: bool,
    /// The proxy-issued cancel key and where it points.
    cancel: CancelHandle,
    /// SIGTERM seen: end the session at the next transaction boundary.
    draining: bool,
    /// Break-glass sessions may be capped in length.
    deadline: Option<Instant>,
    /// The client's statements and portals, renamed per server connection.
    names: Namespace,
    /// The connection's statement LRU tick when the current segment started.
    segment_tick: u64,
    /// The SHOW CLIENTS entry (state follows attach/detach).
    listed: crate::shared::clients::Listed,
    /// Reported parameters this session wants on its server (client's values over defaults),
    /// by index into `params::TRACKED`.
    reported: Vec<(usize, String)>,
    /// When the current segment started (query time in SHOW STATS, query duration metric).
    segment_started: Option<Instant>,
    /// When the current transaction's first segment started (`total_xact_time`).
    xact_started: Option<Instant>,
    /// The client's startup settings (what `RESET ALL` returns to).
    startup_local: Vec<(String, String)>,
    /// Settings the client changed at session level in the current transaction: their values
    /// are read back when it ends and carried to the next server connections.
    pending_reads: Vec<String>,
    /// The current transaction ran `RESET ALL` / `DISCARD ALL`.
    pending_reset_all: bool,
    /// Parse texts already forwarded as plain under the current policy and tenant.
    verdicts: crate::client::verdicts::ForwardCache,
    /// A tamper was let through (`probe_action = "log"`): the server connection's settings and
    /// role can no longer be trusted, so it gets the prelude and the reset again.
    tainted: bool,
    /// `client_idle_timeout`, `idle_transaction_timeout`, `query_timeout` (one timer).
    timer: crate::client::timeouts::Timer,
}

/// Everything `Session::new` needs.
pub struct SessionParts {
    pub shared: Arc<Shared>,
    /// The authenticated client stream.
    pub client: PqStream,
    /// Who the client is, with the chosen tenant.
    pub who: Identity,
    /// The pool for this kind.
    pub pool: Arc<Pool>,
    /// The tenant's seat (app and operator sessions with a tenant).
    pub seat: Option<Seat>,
    pub cancel: CancelHandle,
    /// `max_session_seconds` for break-glass sessions; None otherwise.
    pub deadline: Option<Instant>,
    pub listed: crate::shared::clients::Listed,
    pub settings: crate::client::settings::ClientSettings,
}

impl Session {
    /// Builds a session ready to `run`.
    pub fn new(p: SessionParts) -> Session {
        let mode = match p.who.kind {
            // Break-glass sessions keep their server: they are few, audited and interactive.
            UserKind::Breakglass => PoolMode::Session,
            _ => p
                .who
                .pool_mode
                .unwrap_or(p.shared.config.upstream.pool_mode),
        };
        let tenant = match p.who.kind {
            UserKind::App | UserKind::Operator => p.who.tenant.as_deref(),
            _ => None,
        };
        let mut prelude = Prelude::new(&p.shared.config.tenant.setting, tenant, &p.settings.local);
        prelude.set_signing(signing_key(&p.shared).as_ref());
        let startup_local = p.settings.local.clone();
        let budget = p.shared.statement_budget.clone();
        let defaults = p.pool.server_params().unwrap_or_default();
        let reported = crate::client::settings::with_defaults(&p.settings.reported, &defaults);
        let up = &p.shared.config.upstream;
        let user_share = p.pool.database().user(&p.who.user);
        let caps = Caps {
            per_server: up.max_prepared_statements,
            count: up.max_client_prepared_statements,
            bytes: up.max_client_prepared_bytes,
        };
        Session {
            shared: p.shared,
            client: p.client,
            who: p.who,
            prelude,
            pool: p.pool,
            seat: p.seat,
            user_share,
            mode,
            server: None,
            phase: Phase::Idle,
            simple_segment: false,
            relay: Relay::default(),
            local_discard: false,
            cancel: p.cancel,
            draining: false,
            deadline: p.deadline,
            names: Namespace::new(caps, budget),
            segment_tick: 0,
            listed: p.listed,
            reported,
            segment_started: None,
            xact_started: None,
            tainted: false,
            startup_local,
            pending_reads: Vec::new(),
            pending_reset_all: false,
            verdicts: Default::default(),
            timer: Default::default(),
        }
    }

    /// Serves the client until it leaves, the server breaks, or shutdown.
    pub async fn run(mut self: Box<Self>) -> Result<(), SessionError> {
        let result = self.run_loop().await;
        self.finish().await;
        result
    }

    async fn run_loop(&mut self) -> Result<(), SessionError> {
        let shutdown = self.shared.shutdown.clone();
        // Built once: a fresh cancellation future per iteration would register with the token's
        // shared waiter list (one mutex for every session) on every message.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let kill = self.listed.info.kill.clone();
        let killed = kill.cancelled();
        tokio::pin!(killed);
        loop {
            if self.draining && self.phase == Phase::Idle && self.txn_status() == b'I' {
                error::shutting_down().encode(self.client.out());
                self.client.flush().await.map_err(SessionError::Client)?;
                return Ok(());
            }
            let dispatch = self.phase != Phase::AwaitRfq || self.relay.in_copy();
            if dispatch {
                if let Some(f) = self
                    .client
                    .try_buffered_frame()
                    .map_err(|e| self.client_error(e))?
                {
                    self.timer.client_spoke();
                    if self.on_client(f).await? == Flow::Exit {
                        return Ok(());
                    }
                    continue;
                }
            }
            if self.client.has_pending_writes() {
                self.client.flush().await.map_err(SessionError::Client)?;
            }
            if self.phase == Phase::Idle {
                self.client.release_large_read_buffer();
            }
            let read_client = dispatch || self.client.buffered_len() < HOLD_LIMIT;
            let timed = self.timer.arm(self.waiting_for(), &self.shared.timeouts);
            let timer = &mut self.timer;
            let deadline = self.deadline;
            let server = self.server.as_mut().map(|g| g.conn().stream());
            let event = tokio::select! {
                // The server first: its answer is what the session waits for, and a wake-up
                // for it then costs no poll of the (usually quiet) client socket.
                biased;
                f = async {
                    match server {
                        Some(s) => s.wait_frame().await,
                        None => std::future::pending().await,
                    }
                } => Io::Server(f),
                r = self.client.fill(), if read_client => Io::Client(r.map(|_| ())),
                _ = &mut cancelled, if !self.draining => Io::Shutdown,
                _ = &mut killed => Io::Killed,
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                } => Io::Deadline,
                w = timer.fired(), if timed => Io::Timeout(w),
            };
            match event {
                Io::Client(Ok(())) => self.timer.client_spoke(),
                Io::Client(Err(StreamError::Closed)) => return Ok(()),
                Io::Client(Err(e)) => return Err(self.client_error(e)),
                Io::Server(Ok(())) => {
                    if self.on_server().await? == Flow::Exit {
                        return Ok(());
                    }
                }
                Io::Server(Err(e)) => {
                    tracing::warn!(error = %e, "lost upstream connection");
                    self.server_gone().await;
                    return Err(SessionError::Server(e));
                }
                Io::Shutdown => self.draining = true,
                Io::Timeout(wait) => {
                    tracing::info!(?wait, "session timed out; closing it");
                    crate::client::timeouts::error(wait).encode(self.client.out());
                    let _ = self.client.flush().await;
                    return Ok(());
                }
                Io::Killed => {
                    // Console KILL: PgBouncer's kill_pool closes clients and servers alike,
                    // whatever they were doing; a held connection is closed, not returned.
                    if let Some(g) = self.server.take() {
                        g.discard();
                    }
                    error::database_removed().encode(self.client.out());
                    let _ = self.client.flush().await;
                    return Ok(());
                }
                Io::Deadline => {
                    error::breakglass_time_limit().encode(self.client.out());
                    let _ = self.client.flush().await;
                    return Ok(());
                }
            }
        }
    }

    /// Handles one client message. This is where the tenant guard and injection apply.
    async fn on_client(&mut self, f: Frame) -> Result<Flow, SessionError> {
        let tag = f.tag();
        if tag == b'X' {
            return Ok(Flow::Exit);
        }
        if self.local_discard {
            if tag == b'S' {
                self.local_discard = false;
                let status = self.txn_status();
                messages::ready_for_query(self.client.out(), status);
                self.client.flush().await.map_err(SessionError::Client)?;
            }
            return Ok(Flow::Continue);
        }
        if self.relay.in_copy() {
            return self.forward_copy(f).await;
        }

        // Cursors the message declares are recorded once it is forwarded, after the connection
        // is attached (attaching starts a new transaction's portal list).
        let (verdict, declared) = self.decide(&f).await?;
        if let Verdict::Switch(to) = verdict {
            return self.switch_tenant(tag, to).await;
        }
        if self.phase == Phase::Idle
            && verdict == Verdict::Forward
            && !matches!(tag, b'S' | b'H')
            && self.txn_status() == b'I'
        {
            // The message starts a transaction (see `pool::rate`).
            if let Some(err) = self.over_rate() {
                return self.refuse_locally(tag, err).await;
            }
        }

        if self.server.is_none() {
            match tag {
                b'S' => {
                    messages::ready_for_query(self.client.out(), b'I');
                    self.client.flush().await.map_err(SessionError::Client)?;
                    return Ok(Flow::Continue);
                }
                b'H' => return Ok(Flow::Continue),
                _ => {}
            }
            if let Verdict::Refuse(err) = verdict {
                return self.refuse_locally(tag, err).await;
            }
            if let Err(e) = self.attach().await {
                let err = match e {
                    PoolError::Timeout(_, limit) => error::pool_timeout(limit),
                    PoolError::Cancelled => error::query_canceled(),
                    other => {
                        tracing::warn!(error = %other, "cannot get an upstream connection");
                        error::upstream_unavailable()
                    }
                };
                return self.refuse_locally(tag, err).await;
            }
        }

        if self.phase == Phase::Idle {
            if let Some(flow) = self.ensure_identity(tag).await? {
                return Ok(flow);
            }
            self.phase = Phase::InSegment;
            let now = Instant::now();
            self.segment_started = Some(now);
            self.xact_started.get_or_insert(now);
        }
        if verdict == Verdict::Forward && !declared.is_empty() {
            self.names.declared(declared);
        }
        let refusal = match verdict {
            Verdict::Refuse(err) => Some(err),
            _ => match self.forward(&f) {
                Ok(synthetic) => {
                    if synthetic {
                        self.relay.drain_synthetic(&mut self.client);
                    }
                    None
                }
                Err(r) => {
                    self.record_probe(&r);
                    Some(r.error)
                }
            },
        };
        let Some(conn) = self.server.as_mut().map(|g| g.conn()) else {
            return Ok(Flow::Continue);
        };
        self.relay.settle(conn);
        if std::mem::take(&mut self.tainted) {
            conn.forget_identity();
            conn.mark_dirty();
        }
        if let Some(err) = refusal {
            // PostgreSQL itself fails at exactly this place (skip to Sync, abort the block); the
            // relay puts the refusal in place of its syntax error.
            self.relay.poison(conn.stream().out(), tag, err);
        }
        conn.start_busy();
        match tag {
            b'Q' | b'F' => {
                self.phase = Phase::AwaitRfq;
                self.simple_segment = true;
                self.timer.query_sent(&self.shared.timeouts);
            }
            b'S' => {
                self.phase = Phase::AwaitRfq;
                self.simple_segment = false;
                self.timer.query_sent(&self.shared.timeouts);
            }
            _ => {}
        }
        if self.phase == Phase::AwaitRfq || tag == b'H' || !self.client.has_buffered_frame() {
            conn.stream().flush().await.map_err(SessionError::Server)?;
        }
        if self.client.has_pending_writes() && !self.client.has_buffered_frame() {
            self.client.flush().await.map_err(SessionError::Client)?;
        }
        Ok(Flow::Continue)
    }

    /// COPY IN: client data flows straight to the server.
    async fn forward_copy(&mut self, f: Frame) -> Result<Flow, SessionError> {
        let tag = f.tag();
        let Some(guard) = self.server.as_mut() else {
            self.relay.end_copy();
            return Ok(Flow::Continue);
        };
        let conn = guard.conn();
        conn.stream().queue(&f.raw);
        if matches!(tag, b'c' | b'f') {
            self.relay.end_copy();
            if !self.simple_segment {
                // Extended protocol: the Sync sent before the data was ignored by the server;
                // the client's next Sync ends the segment.
                self.phase = Phase::InSegment;
            }
        }
        if !self.client.has_buffered_frame() || matches!(tag, b'c' | b'f' | b'S' | b'H') {
            conn.stream().flush().await.map_err(SessionError::Server)?;
        }
        Ok(Flow::Continue)
    }

    /// Handles every complete server message already buffered, then flushes.
    ///
    /// Frames are walked by offset in the connection's read buffer and copied once, into the
    /// client's write buffer: no per-message allocation or reference count.
    async fn on_server(&mut self) -> Result<Flow, SessionError> {
        let Some(guard) = self.server.as_mut() else {
            return Ok(Flow::Continue);
        };
        let conn = guard.conn();
        let max = conn.stream().max_message();
        // Taken out while the relay updates the connection; given back before any await.
        let mut buf = conn.stream().take_read_buffer();
        let mut off = 0;
        let mut end = Ok(None);
        loop {
            let rest = &buf[off..];
            let len = match crate::protocol::frame::complete_frame_len(rest, max) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    end = Err(e);
                    break;
                }
            };
            let f = FrameRef { raw: &rest[..len] };
            off += len;
            let outcome = self.relay.on_server(f, conn, &mut self.client);
            if self.relay.has_session_changes() {
                self.relay
                    .apply_client_changes(&mut self.names.statements, &mut self.reported);
            }
            match outcome {
                Outcome::Continue => {}
                Outcome::Ready(status) => {
                    end = Ok(Some(Outcome::Ready(status)));
                    break;
                }
                Outcome::ServerFatal => {
                    end = Ok(Some(Outcome::ServerFatal));
                    break;
                }
            }
            if f.tag() == b'G' && self.client.has_buffered_frame() {
                // COPY IN began: let buffered CopyData through.
                break;
            }
        }
        buf.advance(off);
        conn.stream().restore_read_buffer(buf);
        PoolStats::add(&self.pool.stats.sent, off as u64);
        match end {
            Err(e) => Err(SessionError::Server(StreamError::Frame(e))),
            Ok(Some(Outcome::ServerFatal)) => {
                self.server_gone().await;
                Ok(Flow::Exit)
            }
            Ok(Some(Outcome::Ready(status))) => {
                self.phase = Phase::Idle;
                if status == b'I' {
                    self.names.transaction_ended();
                    self.carry_settings().await?;
                }
                let stats = &self.pool.stats;
                if let Some(t) = self.segment_started.take() {
                    let took = t.elapsed();
                    PoolStats::add(&stats.query_us, took.as_micros() as u64);
                    if crate::metrics::timing_enabled() {
                        crate::metrics::query_duration(took);
                    }
                }
                if status == b'I' {
                    PoolStats::add(&stats.xacts, 1);
                    if let Some(t) = self.xact_started.take() {
                        PoolStats::add(&stats.xact_us, t.elapsed().as_micros() as u64);
                    }
                    if let Some(seat) = &self.seat {
                        let usage = &seat.tag().usage;
                        usage
                            .xacts
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                self.client.flush().await.map_err(SessionError::Client)?;
                if self.mode == PoolMode::Transaction
                    && status == b'I'
                    && !self.client.has_buffered_frame()
                {
                    self.detach().await;
                }
                Ok(Flow::Continue)
            }
            Ok(_) => {
                self.client.flush().await.map_err(SessionError::Client)?;
                Ok(Flow::Continue)
            }
        }
    }

    /// What the loop is about to wait for, as the timeouts see it: the server's answer, or the
    /// client while this session holds a server connection in a transaction (or in the middle
    /// of an extended-protocol batch), or the client while idle.
    #[inline]
    fn waiting_for(&self) -> crate::shared::limits::Wait {
        use crate::shared::limits::Wait;
        match self.phase {
            Phase::AwaitRfq => Wait::Query,
            Phase::InSegment if self.server.is_some() => Wait::IdleInTransaction,
            _ if self.txn_status() != b'I' => Wait::IdleInTransaction,
            _ => Wait::ClientIdle,
        }
    }

    /// The transaction status the client should see now.
    fn txn_status(&self) -> u8 {
        self.server
            .as_ref()
            .map(|g| g.conn_ref().status())
            .unwrap_or(b'I')
    }

    fn client_error(&mut self, e: StreamError) -> SessionError {
        if let StreamError::Frame(fe) = &e {
            error::protocol_violation(format!("invalid message from client: {fe}"))
                .encode(self.client.out());
        }
        SessionError::Client(e)
    }
}

/// What woke the loop.
enum Io {
    Client(Result<(), StreamError>),
    Killed,
    Server(Result<(), StreamError>),
    Shutdown,
    Deadline,
    Timeout(crate::shared::limits::Wait),
}
