//! The per-session loop: client messages in, tenant guard, injection, upstream, relay back.
//!
//! The one place tenant enforcement slots in is [`Session::on_client`]: a message that starts
//! a segment (the first message after ReadyForQuery) attaches an upstream connection and, when
//! the connection is idle (`I`), is preceded by the injection in the same write.
//!
//! Segments are processed one at a time: after a Query or Sync is forwarded, further client
//! messages wait (buffered) until ReadyForQuery reports the true transaction status, except
//! COPY data while the server is in COPY IN. So the proxy always knows, from PostgreSQL itself,
//! whether the next message starts a new transaction, even for pipelining clients.

use std::sync::Arc;
use std::time::Instant;

use crate::client::cancel::CancelHandle;
use crate::config::{PoolMode, UserKind};
use crate::error;
use crate::events::{SecurityEvent, Subject};
use crate::pool::{Pool, PoolError, PoolGuard};
use crate::prepared::{ClientStatements, StatementDef};
use crate::protocol::frame::FrameRef;
use crate::protocol::messages::{self, parse_msg, query_text, split_bind, split_target, PgError};
use crate::protocol::stream::StreamError;
use crate::protocol::{Frame, PqStream};
use crate::relay::{Expect, Msg, Outcome, Relay};
use crate::server::Shared;
use crate::tenant::guard::{Asker, Decision, Verdict};
use crate::tenant::identity::{canonical, check_allowed, validate_tenant_id};
use crate::tenant::inject::{self, Injector};
use bytes::Buf;
use bytes::Bytes;

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

/// The fixed facts about an authenticated session.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user name as the client sent it (with any `.tenant` suffix).
    pub login: String,
    /// The configured user's kind.
    pub kind: UserKind,
    /// May switch tenant with an intercepted SET.
    pub allow_switch: bool,
    /// The configured user's name.
    pub user: String,
}

/// One client session after authentication.
pub struct Session {
    /// Config, pools, event sink, cancel registry.
    shared: Arc<Shared>,
    /// The client connection.
    client: PqStream,
    /// Who the client is.
    who: Identity,
    /// The current tenant (canonical), if any.
    tenant: Option<String>,
    /// Fields stamped on every security event of this session.
    subject: Subject,
    /// Pre-encoded injection for `tenant` (None: no injection for this kind/tenant).
    injector: Option<Injector>,
    /// The pool this session draws from (app or break-glass).
    pool: Arc<Pool>,
    /// Transaction or session pooling.
    mode: PoolMode,
    /// The attached upstream connection, if any.
    server: Option<PoolGuard>,
    /// Where in the cycle we are.
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
    /// The client's named statements (transaction mode renames them per server).
    statements: ClientStatements,
    /// Cap on server-side statements per upstream connection.
    max_prepared: usize,
    /// The current segment must not be preceded by the injection (VACUUM, DISCARD ALL ...).
    skip_injection: bool,
    /// The SHOW CLIENTS entry (state follows attach/detach).
    listed: crate::client::registry::Listed,
    /// Reported parameters this session wants on its server (client's values over defaults),
    /// by index into `settings::TRACKED`.
    reported: Vec<(usize, String)>,
    /// Transaction-local startup settings, re-injected with the tenant.
    local_settings: Vec<(String, String)>,
    /// When the current segment started (query duration metric).
    segment_started: Option<Instant>,
}

/// Everything `Session::new` needs.
pub struct SessionParts {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The authenticated client stream.
    pub client: PqStream,
    /// Who.
    pub who: Identity,
    /// The chosen tenant.
    pub tenant: Option<String>,
    /// Event subject.
    pub subject: Subject,
    /// The pool for this kind.
    pub pool: Arc<Pool>,
    /// The cancel key.
    pub cancel: CancelHandle,
    /// Optional end of the session.
    pub deadline: Option<Instant>,
    /// The SHOW CLIENTS entry.
    pub listed: crate::client::registry::Listed,
    /// The client's startup settings.
    pub settings: crate::client::settings::ClientSettings,
}

impl Session {
    /// Builds a session ready to `run`.
    pub fn new(p: SessionParts) -> Session {
        let mode = match p.who.kind {
            // Break-glass sessions keep their server: they are few, audited and interactive.
            UserKind::Breakglass => PoolMode::Session,
            _ => p.shared.config.upstream.pool_mode,
        };
        let tenant = match p.who.kind {
            UserKind::App | UserKind::Operator => p.tenant.as_deref(),
            _ => None,
        };
        let inj =
            Injector::with_settings(&p.shared.config.tenant.setting, tenant, &p.settings.local);
        let injector = (!inj.is_empty()).then_some(inj);
        let defaults = p.pool.server_params().unwrap_or_default();
        let reported = crate::client::settings::with_defaults(&p.settings.reported, &defaults);
        let local_settings = p.settings.local;
        let max_prepared = p.shared.config.upstream.max_prepared_statements;
        Session {
            shared: p.shared,
            client: p.client,
            who: p.who,
            tenant: p.tenant,
            subject: p.subject,
            injector,
            pool: p.pool,
            mode,
            server: None,
            phase: Phase::Idle,
            simple_segment: false,
            relay: Relay::default(),
            local_discard: false,
            cancel: p.cancel,
            draining: false,
            deadline: p.deadline,
            statements: ClientStatements::default(),
            max_prepared,
            skip_injection: false,
            listed: p.listed,
            reported,
            local_settings,
            segment_started: None,
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
        loop {
            if self.draining && self.phase == Phase::Idle && self.txn_status() == b'I' {
                error::shutting_down().encode(self.client.out());
                self.client.flush().await.map_err(SessionError::Client)?;
                return Ok(());
            }
            let dispatch = self.phase != Phase::AwaitRfq || self.relay.copy_in;
            if dispatch {
                if let Some(f) = self
                    .client
                    .try_buffered_frame()
                    .map_err(|e| self.client_error(e))?
                {
                    if self.on_client(f).await? == Flow::Exit {
                        return Ok(());
                    }
                    continue;
                }
            }
            if self.client.has_pending_writes() {
                self.client.flush().await.map_err(SessionError::Client)?;
            }
            let read_client = dispatch || self.client.buffered_len() < HOLD_LIMIT;
            let deadline = self.deadline;
            let server = self.server.as_mut().map(|g| &mut g.conn().stream);
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
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                } => Io::Deadline,
            };
            match event {
                Io::Client(Ok(())) => {}
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
                Io::Deadline => {
                    PgError::fatal(
                        "57P05",
                        "terminating connection due to break-glass session time limit",
                    )
                    .encode(self.client.out());
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
        if self.relay.copy_in {
            return self.forward_copy(f).await;
        }
        if self.relay.inject_failed {
            return self.after_failed_injection(tag).await;
        }

        let verdict = self.decide(&f)?;
        if let Verdict::Switch(to) = verdict {
            return self.switch_tenant(tag, to).await;
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
                    PoolError::Timeout(_) => error::pool_timeout(),
                    PoolError::Cancelled => error::query_canceled(),
                    other => {
                        tracing::warn!(error = %other, "cannot get an upstream connection");
                        error::upstream_unavailable()
                    }
                };
                return self.refuse_locally(tag, err).await;
            }
        }

        let Some(guard) = self.server.as_mut() else {
            return Ok(Flow::Continue);
        };
        let conn = guard.conn();
        if self.phase == Phase::Idle {
            if conn.status == b'I' && !self.skip_injection {
                // One bit per entry of `reported` whose value this server does not have.
                let stale = self
                    .reported
                    .iter()
                    .enumerate()
                    .filter(|(_, (i, v))| conn.tracked(*i) != Some(v.as_str()))
                    .fold(0u32, |m, (n, _)| m | 1 << n);
                let stale_n = stale.count_ones();
                if self.injector.is_some() || stale_n > 0 {
                    if !conn.inject_prepared {
                        for m in inject::write_prepare(conn.stream.out()) {
                            self.relay.push(Expect::Inject(m));
                        }
                        conn.inject_prepared = true;
                    }
                    // Session-level, as the client asked at connect (PgBouncer's tracking).
                    if stale_n > 0 {
                        let entries = self.reported.iter().enumerate();
                        for (_, (i, v)) in entries.filter(|(n, _)| stale & 1 << n != 0) {
                            let k = crate::client::settings::TRACKED[*i];
                            for m in inject::write_set(conn.stream.out(), k, v, false) {
                                self.relay.push(Expect::Inject(m));
                            }
                        }
                    }
                    if let Some(inj) = &self.injector {
                        for m in inj.write_run(conn.stream.out()) {
                            self.relay.push(Expect::Inject(m.clone()));
                        }
                    }
                }
            }
            self.skip_injection = false;
            self.phase = Phase::InSegment;
            self.segment_started = crate::metrics::timing_enabled().then(Instant::now);
        }
        let out_of_band = match verdict {
            Verdict::Refuse(err) => {
                match tag {
                    b'P' => inject::poison_parse(conn.stream.out(), b""),
                    _ => inject::poison_query(conn.stream.out()),
                }
                self.relay.poisons.push_back(err);
                self.relay.push(Expect::Client(if tag == b'P' {
                    Msg::Parse(None)
                } else {
                    Msg::Query
                }));
                false
            }
            _ => self.forward(&f),
        };
        let Some(conn) = self.server.as_mut().map(|g| g.conn()) else {
            return Ok(Flow::Continue);
        };
        self.relay.settle(conn);
        conn.busy = true;
        match tag {
            b'Q' | b'F' => {
                self.phase = Phase::AwaitRfq;
                self.simple_segment = true;
            }
            b'S' => {
                self.phase = Phase::AwaitRfq;
                self.simple_segment = false;
            }
            _ => {}
        }
        if self.phase == Phase::AwaitRfq || tag == b'H' || !self.client.has_buffered_frame() {
            conn.stream.flush().await.map_err(SessionError::Server)?;
        }
        if out_of_band {
            self.relay.drain_synthetic(&mut self.client);
            if self.client.has_pending_writes() && !self.client.has_buffered_frame() {
                self.client.flush().await.map_err(SessionError::Client)?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Writes one client message upstream and records its awaited answer. In transaction
    /// mode named statements are renamed to their server names and prepared on demand.
    /// Returns whether a synthetic answer may be ready for the client.
    fn forward(&mut self, f: &Frame) -> bool {
        let Some(guard) = self.server.as_mut() else {
            return false;
        };
        let conn = guard.conn();
        let tag = f.tag();
        let body = f.body();
        let rename = self.mode == PoolMode::Transaction;
        match tag {
            b'P' => {
                let Some(pm) = parse_msg(body).filter(|pm| rename && !pm.name.is_empty()) else {
                    conn.stream.queue(&f.raw);
                    self.relay.push(Expect::Client(Msg::Parse(None)));
                    return false;
                };
                if self.statements.contains(pm.name) {
                    // PostgreSQL refuses to redefine a name; keep its wording.
                    inject::poison_parse(conn.stream.out(), b"");
                    self.relay.poisons.push_back(PgError::error(
                        "42P05",
                        format!(
                            "prepared statement \"{}\" already exists",
                            String::from_utf8_lossy(pm.name)
                        ),
                    ));
                    self.relay.push(Expect::Client(Msg::Parse(None)));
                    return false;
                }
                let def = std::sync::Arc::new(StatementDef::new(pm.sql, pm.types));
                let client_name = Bytes::copy_from_slice(pm.name);
                self.statements.insert(client_name.clone(), def.clone());
                if conn.statements.touch(&def.server_name) {
                    let mut ok = bytes::BytesMut::new();
                    messages::parse_complete(&mut ok);
                    self.relay.push(Expect::Synthetic(ok.freeze()));
                    return true;
                }
                for old in conn
                    .statements
                    .insert(def.server_name.clone(), self.max_prepared)
                {
                    messages::close_statement(conn.stream.out(), &old);
                    self.relay.push(Expect::Evict);
                }
                def.write_parse(conn.stream.out());
                self.relay.push(Expect::Client(Msg::Parse(Some((
                    client_name,
                    def.server_name.clone(),
                )))));
                false
            }
            b'B' => {
                match split_bind(body) {
                    Some((portal, stmt, rest)) if rename && !stmt.is_empty() => {
                        match self.statements.get(stmt).cloned() {
                            Some(def) => {
                                ensure_prepared(conn, &mut self.relay, &def, self.max_prepared);
                                messages::write_bind(
                                    conn.stream.out(),
                                    portal,
                                    &def.server_name,
                                    rest,
                                );
                            }
                            None => conn.stream.queue(&f.raw),
                        }
                    }
                    _ => conn.stream.queue(&f.raw),
                }
                self.relay.push(Expect::Client(Msg::Bind));
                false
            }
            b'D' => {
                let target = split_target(body);
                match target {
                    Some((b'S', name)) if rename && !name.is_empty() => {
                        match self.statements.get(name).cloned() {
                            Some(def) => {
                                ensure_prepared(conn, &mut self.relay, &def, self.max_prepared);
                                messages::describe_statement(conn.stream.out(), &def.server_name);
                            }
                            None => conn.stream.queue(&f.raw),
                        }
                    }
                    _ => conn.stream.queue(&f.raw),
                }
                let kind = match target {
                    Some((b'S', _)) => Msg::DescribeStatement,
                    _ => Msg::DescribePortal,
                };
                self.relay.push(Expect::Client(kind));
                false
            }
            b'C' => match split_target(body) {
                Some((b'S', name)) if rename && !name.is_empty() => {
                    // Server statements are shared and cached; only the client's name goes.
                    self.statements.remove(name);
                    let mut ok = bytes::BytesMut::new();
                    messages::close_complete(&mut ok);
                    self.relay.push(Expect::Synthetic(ok.freeze()));
                    true
                }
                _ => {
                    conn.stream.queue(&f.raw);
                    self.relay.push(Expect::Client(Msg::Close));
                    false
                }
            },
            b'E' => {
                conn.stream.queue(&f.raw);
                self.relay.push(Expect::Client(Msg::Execute));
                self.pool
                    .stats
                    .queries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
            b'S' => {
                conn.stream.queue(&f.raw);
                self.relay.push(Expect::Client(Msg::Sync));
                false
            }
            b'Q' => {
                conn.stream.queue(&f.raw);
                self.relay.push(Expect::Client(Msg::Query));
                self.pool
                    .stats
                    .queries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
            _ => {
                // Flush, or a message PostgreSQL itself will judge.
                conn.stream.queue(&f.raw);
                false
            }
        }
    }

    /// Runs the tenant guard on statement-carrying messages and records its events.
    fn decide(&mut self, f: &Frame) -> Result<Verdict, SessionError> {
        let tag = f.tag();
        let needs_tenant = matches!(self.who.kind, UserKind::App | UserKind::Operator);
        let text = match tag {
            b'Q' => query_text(f.body()),
            b'P' => parse_msg(f.body()).map(|p| p.sql),
            b'F' => return Ok(Verdict::Refuse(error::function_call_unsupported())),
            b'S' | b'H' => return Ok(Verdict::Forward),
            b'C' if !needs_tenant || self.tenant.is_some() => return Ok(Verdict::Forward),
            _ if needs_tenant && self.tenant.is_none() => {
                return Ok(Verdict::Refuse(error::no_tenant(
                    &self.shared.config.tenant.setting,
                    &self.who.login,
                )))
            }
            _ => return Ok(Verdict::Forward),
        };
        let Some(text) = text else {
            error::protocol_violation("invalid string in message").encode(self.client.out());
            return Err(SessionError::Client(StreamError::Frame(
                crate::protocol::FrameError::BadLength(-1),
            )));
        };
        // Valid UTF-8 is the rule: validate fast, and build the lossy copy only otherwise.
        let sql = match std::str::from_utf8(text) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(text),
        };
        let asker = Asker {
            kind: self.who.kind,
            tenant: self.tenant.as_deref(),
            login: &self.who.login,
            allow_switch: self.who.allow_switch,
        };
        let Decision {
            mut verdict,
            events,
            secret,
            outside_transaction,
            sql_prepare,
        } = self.shared.live().policy.check(asker, &sql);
        if self.phase == Phase::Idle {
            self.skip_injection = outside_transaction;
        }
        if sql_prepare && self.mode == PoolMode::Transaction && verdict == Verdict::Forward {
            verdict = Verdict::Refuse(error::sql_prepare_in_transaction_mode());
        }
        for e in events {
            let mut ev =
                SecurityEvent::new(e.kind, e.action, &self.subject).statement(&sql, secret);
            if let Verdict::Refuse(err) = &verdict {
                ev = ev.sqlstate(err.code);
            }
            if let Some(d) = e.detail {
                ev = ev.detail(d);
            }
            self.shared.events.record(ev);
        }
        Ok(verdict)
    }

    /// Answers a refused message without the upstream, as PostgreSQL would: ErrorResponse, then
    /// ReadyForQuery for a Query, or skip to the next Sync for extended-protocol messages.
    async fn refuse_locally(&mut self, tag: u8, err: PgError) -> Result<Flow, SessionError> {
        err.encode(self.client.out());
        match tag {
            b'Q' | b'F' => {
                let status = self.txn_status();
                messages::ready_for_query(self.client.out(), status)
            }
            _ => self.local_discard = true,
        }
        self.client.flush().await.map_err(SessionError::Client)?;
        Ok(Flow::Continue)
    }

    /// COPY IN: client data flows straight to the server.
    async fn forward_copy(&mut self, f: Frame) -> Result<Flow, SessionError> {
        let tag = f.tag();
        let Some(guard) = self.server.as_mut() else {
            self.relay.copy_in = false;
            return Ok(Flow::Continue);
        };
        let conn = guard.conn();
        conn.stream.queue(&f.raw);
        if matches!(tag, b'c' | b'f') {
            self.relay.copy_in = false;
            if !self.simple_segment {
                // Extended protocol: the Sync sent before the data was ignored by the server;
                // the client's next Sync ends the segment.
                self.phase = Phase::InSegment;
            }
        }
        if !self.client.has_buffered_frame() || matches!(tag, b'c' | b'f' | b'S' | b'H') {
            conn.stream.flush().await.map_err(SessionError::Server)?;
        }
        Ok(Flow::Continue)
    }

    /// After a failed injection the server discards until Sync: turn the client's terminator
    /// into that Sync and drop everything else.
    async fn after_failed_injection(&mut self, tag: u8) -> Result<Flow, SessionError> {
        let Some(guard) = self.server.as_mut() else {
            return Ok(Flow::Continue);
        };
        let conn = guard.conn();
        if matches!(tag, b'S' | b'Q' | b'F') {
            messages::sync(conn.stream.out());
            self.relay.push(Expect::Client(Msg::Sync));
            conn.stream.flush().await.map_err(SessionError::Server)?;
            self.phase = Phase::AwaitRfq;
        }
        Ok(Flow::Continue)
    }

    /// A trusted backend's `SET <setting> = 'X'`: validate X and switch, answering locally.
    async fn switch_tenant(&mut self, tag: u8, to: String) -> Result<Flow, SessionError> {
        let live = self.shared.live();
        let cfg = &live.config;
        let format = cfg.tenant.format;
        let in_txn = self.txn_status() != b'I' || self.phase != Phase::Idle;
        let user = cfg.user(&self.who.user);
        let allowed = tag == b'Q'
            && !in_txn
            && validate_tenant_id(format, &to).is_ok()
            && user.is_some_and(|u| check_allowed(u, &canonical(format, &to)).is_ok());
        if !allowed {
            let err = error::refused(&format!("switching to tenant \"{to}\""));
            let ev = SecurityEvent::new(
                crate::events::EventKind::TenantTamper,
                crate::events::Action::Block,
                &self.subject,
            )
            .detail(format!("switch to \"{to}\" refused"))
            .statement(&format!("SET {} = '{to}'", cfg.tenant.setting), false)
            .asked_tenant(&to)
            .sqlstate(err.code);
            self.shared.events.record(ev);
            return self.refuse_locally(tag, err).await;
        }
        let to = canonical(format, &to);
        let ev = SecurityEvent::new(
            crate::events::EventKind::TenantSwitch,
            crate::events::Action::Allow,
            &self.subject,
        )
        .statement(&format!("SET {} = '{to}'", cfg.tenant.setting), false)
        .switch(self.tenant.as_deref(), &to);
        self.shared.events.record(ev);
        self.injector = Some(Injector::with_settings(
            &cfg.tenant.setting,
            Some(&to),
            &self.local_settings,
        ));
        self.subject.tenant = Some(to.clone());
        if let Ok(mut t) = self.listed.info.tenant.lock() {
            *t = Some(to.clone());
        }
        self.tenant = Some(to);
        messages::write_msg(self.client.out(), b'C', |b| messages::put_cstr(b, b"SET"));
        let status = self.txn_status();
        messages::ready_for_query(self.client.out(), status);
        self.client.flush().await.map_err(SessionError::Client)?;
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
        let max = conn.stream.max_message();
        // Taken out while the relay updates the connection; given back before any await.
        let mut buf = conn.stream.take_read_buffer();
        let mut off = 0;
        let mut end = Ok(None);
        let mut send_sync = false;
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
                apply_relay_changes(&mut self.relay, &mut self.statements, &mut self.reported);
            }
            match outcome {
                Outcome::Continue => {}
                Outcome::Ready(status) => {
                    end = Ok(Some(Outcome::Ready(status)));
                    break;
                }
                Outcome::InjectionFailed => {
                    crate::metrics::injection_failed();
                    if self.phase == Phase::AwaitRfq && self.simple_segment {
                        messages::sync(conn.stream.out());
                        self.relay.push(Expect::Client(Msg::Sync));
                        send_sync = true;
                    }
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
        conn.stream.restore_read_buffer(buf);
        if send_sync {
            conn.stream.flush().await.map_err(SessionError::Server)?;
        }
        match end {
            Err(e) => Err(SessionError::Server(StreamError::Frame(e))),
            Ok(Some(Outcome::ServerFatal)) => {
                self.server_gone().await;
                Ok(Flow::Exit)
            }
            Ok(Some(Outcome::Ready(status))) => {
                self.phase = Phase::Idle;
                if let Some(t) = self.segment_started.take() {
                    crate::metrics::query_duration(t.elapsed());
                }
                if status == b'I' {
                    self.pool
                        .stats
                        .xacts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    /// Checks out an upstream connection and points cancels at it.
    async fn attach(&mut self) -> Result<(), PoolError> {
        let mut guard = match self.pool.try_checkout() {
            Some(g) => g,
            None => {
                // Waiting (or connecting): a CancelRequest now ends the wait.
                let target = self.cancel.target.clone();
                let cancelled = target.waiting_cancel.notified();
                tokio::pin!(cancelled);
                cancelled.as_mut().enable();
                tokio::select! {
                    g = self.pool.checkout() => g?,
                    _ = cancelled => return Err(PoolError::Cancelled),
                }
            }
        };
        let conn = guard.conn();
        self.cancel.target.attach(conn.pid, conn.secret);
        self.listed
            .info
            .active
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.server = Some(guard);
        Ok(())
    }

    /// Returns a clean connection to the pool (the guard decides if it is clean), once no
    /// forwarded cancel can still reach it; otherwise the connection is closed.
    async fn detach(&mut self) {
        let settled = self.cancel.target.settle().await;
        self.listed
            .info
            .active
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.relay.reset();
        if let Some(g) = self.server.take() {
            if !settled {
                g.discard();
            }
        }
    }

    /// The transaction status the client should see now.
    fn txn_status(&self) -> u8 {
        self.server
            .as_ref()
            .map(|g| g.conn_ref().status)
            .unwrap_or(b'I')
    }

    /// The upstream failed: tell the client (FATAL) and drop the connection.
    async fn server_gone(&mut self) {
        self.cancel.target.detach();
        self.relay.reset();
        if let Some(g) = self.server.take() {
            g.discard();
        }
        if !self.client.has_pending_writes() {
            error::server_lost().encode(self.client.out());
        }
        let _ = self.client.flush().await;
    }

    fn client_error(&mut self, e: StreamError) -> SessionError {
        if let StreamError::Frame(fe) = &e {
            error::protocol_violation(format!("invalid message from client: {fe}"))
                .encode(self.client.out());
        }
        SessionError::Client(e)
    }

    /// Leaves nothing dirty behind: cancel what runs, roll back what is open, reset for session
    /// mode, and only then give the connection back.
    async fn finish(&mut self) {
        self.cancel.target.detach();
        self.client.shutdown().await;
        let Some(mut guard) = self.server.take() else {
            return;
        };
        let conn = guard.conn();
        if conn.busy {
            let (pid, secret) = (conn.pid, conn.secret);
            let spec = guard.pool().spec().clone();
            tokio::spawn(async move {
                let _ =
                    crate::pool::upstream::send_cancel(&spec.host, spec.port, pid, secret).await;
                guard.close_gracefully().await; // busy: closed, never reused
            });
            return;
        }
        let reset = match (conn.status, self.mode) {
            (b'I', PoolMode::Transaction) => None,
            (b'I', PoolMode::Session) => Some("DISCARD ALL"),
            _ => Some("ROLLBACK"),
        };
        if let Some(sql) = reset {
            tokio::spawn(reset_and_release(guard, sql));
        }
    }
}

/// Runs `sql` (ROLLBACK or DISCARD ALL) and releases the connection if it ends idle.
async fn reset_and_release(mut guard: PoolGuard, sql: &'static str) {
    let conn = guard.conn();
    messages::query(conn.stream.out(), sql);
    conn.busy = true;
    let done = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        conn.stream.flush().await?;
        loop {
            let f = conn.stream.read_frame().await?;
            match f.tag() {
                b'Z' => {
                    conn.status = f.body().first().copied().unwrap_or(b'E');
                    conn.busy = false;
                    if sql == "DISCARD ALL" {
                        conn.inject_prepared = false;
                    }
                    return Ok::<(), StreamError>(());
                }
                _ => continue,
            }
        }
    })
    .await;
    if !matches!(done, Ok(Ok(()))) {
        guard.close_gracefully().await;
    }
}

/// What woke the loop.
enum Io {
    Client(Result<(), StreamError>),
    Server(Result<(), StreamError>),
    Shutdown,
    Deadline,
}

/// Applies what the relay learnt about the client's own state: statements that failed or were
/// discarded, and tracked parameters the client SET (carried to its next servers).
fn apply_relay_changes(
    relay: &mut Relay,
    statements: &mut ClientStatements,
    reported: &mut [(usize, String)],
) {
    for name in relay.failed_names.drain(..) {
        statements.remove(&name);
    }
    if std::mem::take(&mut relay.discarded) {
        statements.clear();
    }
    for (k, v) in relay.param_changes.drain(..) {
        let i = crate::client::settings::tracked_index(&k);
        if let Some(slot) = reported.iter_mut().find(|(n, _)| Some(*n) == i) {
            slot.1 = v;
        }
    }
}

/// Makes sure `def` exists on this connection, re-preparing it (answer swallowed) if not.
fn ensure_prepared(
    conn: &mut crate::pool::UpstreamConn,
    relay: &mut Relay,
    def: &StatementDef,
    cap: usize,
) {
    if conn.statements.touch(&def.server_name) {
        return;
    }
    for old in conn.statements.insert(def.server_name.clone(), cap) {
        messages::close_statement(conn.stream.out(), &old);
        relay.push(Expect::Evict);
    }
    def.write_parse(conn.stream.out());
    relay.push(Expect::Reprepare(def.server_name.clone()));
}
