//! Upstream → client: forwarding server messages, in order, until ReadyForQuery.
//!
//! Every message the proxy writes upstream pushes what its answer will be onto a FIFO
//! ([`Expect`]). The relay pops it as the answers arrive, so it knows, for each server
//! message, whether it belongs to the client (forward raw), to the proxy (the tenant
//! injection or a re-Parse: swallow), or whether the proxy must answer in its place (a
//! `Synthetic` ParseComplete/CloseComplete for statements already prepared). After an error in
//! extended protocol the server skips to Sync; the relay drops the same entries.
//!
//! Frames are forwarded untouched; only tags are looked at, plus ErrorResponse fields,
//! ParameterStatus, and a few CommandComplete tags that drop prepared statements.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error;
use crate::pool::UpstreamConn;
use crate::protocol::frame::FrameRef;
use crate::protocol::messages::{command_tag, error_fields, parameter_status_fields, PgError};
use crate::protocol::PqStream;
use crate::tenant::inject::is_poison_error;

/// A message whose answer is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Parse → ParseComplete. Carries (client name, server name) for named statements.
    Parse(Option<(Bytes, Bytes)>),
    /// Bind → BindComplete.
    Bind,
    /// Describe of a statement → ParameterDescription, then RowDescription or NoData.
    DescribeStatement,
    /// Describe of a portal → RowDescription or NoData.
    DescribePortal,
    /// Execute → rows, then CommandComplete / EmptyQueryResponse / PortalSuspended.
    Execute,
    /// Close → CloseComplete.
    Close,
    /// Sync → ReadyForQuery.
    Sync,
    /// Query → results of each statement, then ReadyForQuery.
    Query,
}

/// Who an awaited answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The client's own message: forward the answer.
    Client(Msg),
    /// The tenant injection: swallow; an error means the statement must not run.
    Inject(Msg),
    /// The proxy re-preparing a client statement on this connection: swallow ParseComplete;
    /// an error is the client's (its statement no longer parses here).
    Reprepare(Bytes),
    /// The proxy closing an evicted statement: swallow.
    Evict,
    /// No server answer: send these bytes to the client when reached.
    Synthetic(Bytes),
}

/// Per-connection response tracking for the attached session.
#[derive(Debug, Default)]
pub struct Relay {
    /// Awaited answers, in the order the server will send them.
    expect: VecDeque<Expect>,
    /// The server reported an error in extended protocol and skips to the next Sync.
    skipping: bool,
    /// The tenant injection failed in this segment: nothing but ReadyForQuery reaches the client.
    pub inject_failed: bool,
    /// Refusals waiting for their poison's syntax error, in stream order.
    pub poisons: VecDeque<PgError>,
    /// The server is in COPY IN: client CopyData/CopyDone/CopyFail must flow.
    pub copy_in: bool,
    /// Client statement names whose Parse failed or was skipped (the session forgets them).
    pub failed_names: Vec<Bytes>,
    /// Server statement names that were never created (the connection forgets them).
    failed_server_names: Vec<Bytes>,
    /// The server dropped all prepared statements (DISCARD ALL / DEALLOCATE ALL).
    pub discarded: bool,
    /// Tracked parameters the client's own statements changed (the session keeps them).
    pub param_changes: Vec<(String, String)>,
}

/// What the session must do after a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing special.
    Continue,
    /// ReadyForQuery with this status was forwarded: the segment is over.
    Ready(u8),
    /// The injection failed; the client has its error. Make sure a Sync reaches the server.
    InjectionFailed,
    /// The server ended the connection (its FATAL, or ours, is queued for the client).
    ServerFatal,
}

impl Relay {
    /// Records what the server will answer to a message just written upstream.
    #[inline]
    pub fn push(&mut self, e: Expect) {
        if self.skipping && !matches!(e, Expect::Client(Msg::Sync) | Expect::Inject(Msg::Sync)) {
            // The server is discarding until Sync: this message will get no answer.
            self.note_skipped(&e);
            return;
        }
        self.expect.push_back(e);
    }

    /// Sends synthetic answers that have reached the head of the queue.
    #[inline]
    pub fn drain_synthetic(&mut self, client: &mut PqStream) {
        while let Some(Expect::Synthetic(b)) = self.expect.front() {
            client.queue(b);
            self.expect.pop_front();
        }
    }

    /// Forgets everything (the connection is going away), keeping allocations for the next
    /// transaction.
    pub fn reset(&mut self) {
        self.expect.clear();
        self.skipping = false;
        self.inject_failed = false;
        self.poisons.clear();
        self.copy_in = false;
        self.failed_names.clear();
        self.failed_server_names.clear();
        self.discarded = false;
        self.param_changes.clear();
    }

    /// Handles one server frame, queueing what the client should see on `client`.
    pub fn on_server(
        &mut self,
        f: FrameRef<'_>,
        conn: &mut UpstreamConn,
        client: &mut PqStream,
    ) -> Outcome {
        self.drain_synthetic(client);
        let tag = f.tag();
        let head_is_client = matches!(self.expect.front(), Some(Expect::Client(_)) | None);
        match tag {
            b'E' => return self.on_error(f, conn, client),
            // Asynchronous messages may arrive at any time.
            b'S' => {
                if let Some((k, v)) = parameter_status_fields(f.body()) {
                    if k == "client_encoding" {
                        if let Some(c) = crate::tenant::catalog::unsafe_client_encoding(&v) {
                            // The inspector could no longer see where statements end: never
                            // read another client message on this session (see catalog.rs).
                            tracing::warn!(client_encoding = %v, "server switched to an unsafe client encoding; session ended");
                            let err = crate::tenant::catalog::encoding_refused(&v, c);
                            PgError::fatal(err.code, err.message)
                                .with_detail(err.detail.unwrap_or_default())
                                .encode(client.out());
                            return Outcome::ServerFatal;
                        }
                    }
                    if head_is_client && crate::client::settings::tracked(&k).is_some() {
                        self.param_changes.push((k.clone(), v.clone()));
                    }
                    conn.set_param(k, v);
                }
                if head_is_client && !self.inject_failed {
                    client.queue(f.raw);
                }
                return Outcome::Continue;
            }
            b'N' | b'A' => {
                if head_is_client && !self.inject_failed {
                    client.queue(f.raw);
                }
                return Outcome::Continue;
            }
            b'Z' => return self.on_ready(f, conn, client),
            _ => {}
        }
        let Some(head) = self.expect.front() else {
            tracing::error!(tag = %(tag as char), "server message with no request outstanding");
            error::server_lost().encode(client.out());
            return Outcome::ServerFatal;
        };
        let (done, forward) = match (tag, head) {
            (b'1', Expect::Client(Msg::Parse(_))) => (true, true),
            (b'1', Expect::Inject(Msg::Parse(_)) | Expect::Reprepare(_)) => (true, false),
            (b'2', Expect::Client(Msg::Bind)) => (true, true),
            (b'2', Expect::Inject(Msg::Bind)) => (true, false),
            (b'3', Expect::Client(Msg::Close)) => (true, true),
            (b'3', Expect::Inject(Msg::Close) | Expect::Evict) => (true, false),
            (b't', Expect::Client(Msg::DescribeStatement)) => (false, true),
            (b'T' | b'n', Expect::Client(Msg::DescribeStatement | Msg::DescribePortal)) => {
                (true, true)
            }
            (b'C' | b'I' | b's', Expect::Client(Msg::Execute)) => {
                self.check_tag(f, conn);
                (true, true)
            }
            (b'C' | b'I' | b's', Expect::Inject(Msg::Execute)) => (true, false),
            (b'D', Expect::Inject(Msg::Execute)) => (false, false),
            (b'C', Expect::Client(Msg::Query)) => {
                self.check_tag(f, conn);
                (false, true)
            }
            (b'G' | b'W', Expect::Client(m)) => {
                // In COPY IN the server ignores Sync: drop those already sent behind the
                // COPY's Execute (libpq and tokio-postgres send one before the data).
                if *m == Msg::Execute {
                    let mut first = true;
                    self.expect
                        .retain(|e| std::mem::take(&mut first) || *e != Expect::Client(Msg::Sync));
                }
                self.copy_in = true;
                (false, true)
            }
            (_, Expect::Client(Msg::Execute | Msg::Query)) => (false, true),
            (_, Expect::Client(_)) if !self.inject_failed => {
                tracing::warn!(tag = %(tag as char), ?head, "unexpected server message; forwarding");
                (false, true)
            }
            _ => {
                tracing::error!(tag = %(tag as char), ?head, "server message does not match the request");
                error::server_lost().encode(client.out());
                return Outcome::ServerFatal;
            }
        };
        if done {
            self.expect.pop_front();
        }
        if forward && !self.inject_failed {
            client.queue(f.raw);
        }
        Outcome::Continue
    }

    fn on_ready(
        &mut self,
        f: FrameRef<'_>,
        conn: &mut UpstreamConn,
        client: &mut PqStream,
    ) -> Outcome {
        // Everything up to the Sync/Query this answers is finished.
        let mut for_client = true;
        while let Some(e) = self.expect.pop_front() {
            match e {
                Expect::Client(Msg::Sync | Msg::Query) => break,
                Expect::Inject(Msg::Sync) => {
                    for_client = false;
                    break;
                }
                Expect::Synthetic(b) if !self.skipping => client.queue(&b),
                other => self.note_skipped(&other),
            }
        }
        self.skipping = false;
        self.settle(conn);
        let status = f.body().first().copied().unwrap_or(b'I');
        conn.status = status;
        if !for_client {
            return Outcome::Continue;
        }
        if !self.expect.is_empty() {
            // More client Syncs are outstanding (pipelined segments).
            client.queue(f.raw);
            return Outcome::Continue;
        }
        conn.busy = false;
        self.poisons.clear();
        self.inject_failed = false;
        self.copy_in = false;
        client.queue(f.raw);
        Outcome::Ready(status)
    }

    fn on_error(
        &mut self,
        f: FrameRef<'_>,
        conn: &mut UpstreamConn,
        client: &mut PqStream,
    ) -> Outcome {
        let fields = error_fields(f.body());
        if fields.severity == "FATAL" || fields.severity == "PANIC" {
            client.queue(f.raw);
            return Outcome::ServerFatal;
        }
        self.copy_in = false;
        let head = self.expect.front().cloned();
        let extended = head.is_some() && !matches!(head, Some(Expect::Client(Msg::Query)));
        let mut outcome = Outcome::Continue;
        match head {
            Some(Expect::Inject(_)) => {
                self.inject_failed = true;
                conn.inject_prepared = false;
                tracing::error!(code = %fields.code, message = %fields.message, "tenant injection failed; statement not run");
                error::injection_failed(&fields.code, &fields.message).encode(client.out());
                outcome = Outcome::InjectionFailed;
            }
            _ if self.inject_failed => {}
            Some(Expect::Client(Msg::Parse(_) | Msg::Query))
                if !self.poisons.is_empty() && is_poison_error(&fields) =>
            {
                if let Some(refusal) = self.poisons.pop_front() {
                    refusal.encode(client.out());
                }
            }
            _ => client.queue(f.raw),
        }
        if extended {
            // The server now discards messages until Sync; so do we.
            if let Some(e) = self.expect.pop_front() {
                self.note_skipped(&e);
            }
            while let Some(e) = self.expect.front() {
                if matches!(e, Expect::Client(Msg::Sync) | Expect::Inject(Msg::Sync)) {
                    break;
                }
                if let Some(e) = self.expect.pop_front() {
                    self.note_skipped(&e);
                }
            }
            self.skipping = true;
        }
        self.settle(conn);
        outcome
    }

    /// Applies forgotten server statements to the connection (call after `push`/`on_server`).
    #[inline]
    pub fn settle(&mut self, conn: &mut UpstreamConn) {
        if self.failed_server_names.is_empty() {
            return;
        }
        for name in self.failed_server_names.drain(..) {
            conn.statements.remove(&name);
        }
    }

    /// Whether the session has client-side state to update (failed or discarded statements,
    /// changed tracked parameters): false for almost every message, so it is checked first.
    #[inline]
    pub fn has_session_changes(&self) -> bool {
        !self.failed_names.is_empty() || self.discarded || !self.param_changes.is_empty()
    }

    /// An awaited Parse that will never complete: forget the names it would have created.
    fn note_skipped(&mut self, e: &Expect) {
        match e {
            Expect::Client(Msg::Parse(Some((client, server)))) => {
                self.failed_names.push(client.clone());
                self.failed_server_names.push(server.clone());
            }
            Expect::Reprepare(server) => self.failed_server_names.push(server.clone()),
            Expect::Inject(Msg::Parse(_)) => {}
            _ => {}
        }
    }

    fn check_tag(&mut self, f: FrameRef<'_>, conn: &mut UpstreamConn) {
        let t = command_tag(f.body());
        if t.starts_with(b"DISCARD ALL") || t.starts_with(b"DEALLOCATE") {
            // Prepared statements are gone on this connection (ours and the client's).
            conn.inject_prepared = false;
            conn.statements.clear();
            if t == b"DISCARD ALL" || t == b"DEALLOCATE ALL" {
                self.discarded = true;
            }
        }
    }
}
