//! Upstream → client: forwarding server messages, in order, until ReadyForQuery.
//!
//! Every message the proxy writes upstream pushes what its answer will be onto a FIFO
//! ([`Expect`]). The relay pops it as the answers arrive, so it knows, for each server
//! message, whether it belongs to the client (forward raw), to the proxy (a re-Parse or the
//! Close of an evicted statement: swallow), or whether the proxy must answer in its place (a
//! `Synthetic` CloseComplete for a client Close). After an error in extended protocol the server
//! skips to Sync; the relay drops the same entries, and the connection's statement list changes
//! only on what the server confirmed (STYLE habit 15).
//!
//! A refused client message is replaced by a *poison* ([`Relay::poison`]): text PostgreSQL
//! rejects with a syntax error, written where the message would have gone, so the server fails
//! at exactly that place (skips to Sync, aborts the transaction block) and the relay swaps the
//! refusal in for the syntax error.
//!
//! Frames are forwarded untouched; only tags are looked at, plus ErrorResponse fields,
//! ParameterStatus, and a few CommandComplete tags that drop prepared statements.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::error;
use crate::pool::UpstreamConn;
use crate::protocol::frame::FrameRef;
use crate::protocol::messages::{
    self, command_tag, error_fields, parameter_status_fields, ErrorFields, PgError,
};
use crate::protocol::PqStream;

/// Command tags after which the server connection may hold state that outlives the
/// transaction (cursors, LISTEN, objects that may be temporary, SQL-level statements, loaded
/// libraries): it is reset before another client gets it.
const DIRTY_TAGS: [&[u8]; 5] = [
    b"LISTEN",
    b"DECLARE CURSOR",
    b"PREPARE",
    b"LOAD",
    b"CREATE ",
];

/// A message whose answer is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Parse → ParseComplete. Carries (client name, server name) for named statements.
    Parse(Option<(Bytes, Bytes)>),
    /// Bind → BindComplete. Carries the server statement name when it is a proxy-managed one.
    Bind(Option<Bytes>),
    /// Describe of a statement → ParameterDescription, then RowDescription or NoData. Carries
    /// the server statement name when it is a proxy-managed one.
    DescribeStatement(Option<Bytes>),
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
    /// The proxy re-preparing a client statement on this connection: swallow ParseComplete;
    /// an error is the client's (its statement no longer parses here).
    Reprepare(Bytes),
    /// The proxy re-parsing the client's unnamed statement on this connection: swallow
    /// ParseComplete; an error is the client's.
    ReprepareUnnamed,
    /// The proxy closing an evicted statement: swallow.
    Evict(Bytes),
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
    /// Refusals waiting for their poison's syntax error, in stream order.
    poisons: VecDeque<PgError>,
    /// The server is in COPY IN: client CopyData/CopyDone/CopyFail must flow.
    copy_in: bool,
    /// Client statement names whose Parse failed or was skipped (the session forgets them).
    failed_names: Vec<Bytes>,
    /// A client's SQL `DEALLOCATE name`, rewritten to this server name: forgotten on the
    /// connection when its `DEALLOCATE` tag arrives.
    pending_dealloc: Option<Bytes>,
    /// Messages written while the server was discarding until Sync: applied to the
    /// connection by [`Relay::settle`].
    skipped: Vec<Expect>,
    /// The server dropped all prepared statements (DISCARD ALL / DEALLOCATE ALL).
    discarded: bool,
    /// Tracked parameters the client's own statements changed (the session keeps them).
    param_changes: Vec<(String, String)>,
}

/// Text that PostgreSQL rejects with a syntax error naming it.
const POISON_TEXT: &str = "__tenantgate_refused_statement__";
const POISON: &[u8] = POISON_TEXT.as_bytes();

/// Whether an upstream error is the one a poison provokes.
fn is_poison_error(e: &ErrorFields) -> bool {
    e.code == "42601" && e.message.contains(POISON_TEXT)
}

/// What the session must do after a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The segment goes on: keep relaying.
    Continue,
    /// ReadyForQuery with this status was forwarded: the segment is over.
    Ready(u8),
    /// The server ended the connection (its FATAL, or ours, is queued for the client).
    ServerFatal,
}

impl Relay {
    /// Refuses the client's message `tag` (`Q`, `P`, or the Sync-ending `S` of a Parse) in
    /// place: writes a poison to `out` instead, and answers the client with `err` where the
    /// poison's syntax error comes back. A FunctionCall (`F`) is answered like a Query, with
    /// ReadyForQuery, so its poison carries a Sync of its own.
    pub fn poison(&mut self, out: &mut BytesMut, tag: u8, err: PgError) {
        if tag == b'Q' {
            messages::write_msg(out, b'Q', |b| messages::put_cstr(b, POISON));
        } else {
            messages::parse(out, crate::tenant::inject::statement_name(), POISON, &[]);
        }
        self.poisons.push_back(err);
        self.push(Expect::Client(if tag == b'Q' {
            Msg::Query
        } else {
            Msg::Parse(None)
        }));
        if tag == b'S' || tag == b'F' {
            messages::sync(out);
            self.push(Expect::Client(Msg::Sync));
        }
    }

    /// The server is in COPY IN: client CopyData/CopyDone/CopyFail must flow to it.
    pub fn in_copy(&self) -> bool {
        self.copy_in
    }

    /// The client ended COPY IN (CopyDone / CopyFail), or the server connection is gone.
    pub fn end_copy(&mut self) {
        self.copy_in = false;
    }

    /// The client's SQL `DEALLOCATE` was rewritten to server name `server`: the connection
    /// forgets it when the `DEALLOCATE` tag arrives.
    pub fn expect_deallocate(&mut self, server: Bytes) {
        self.pending_dealloc = Some(server);
    }

    /// Applies what the relay learnt about the client's own state: statements whose Parse
    /// failed or that the server discarded, and tracked parameters the client SET (carried to
    /// its next servers).
    pub fn apply_client_changes(
        &mut self,
        statements: &mut crate::prepared::ClientStatements,
        reported: &mut [(usize, String)],
    ) {
        for name in self.failed_names.drain(..) {
            statements.remove(&name);
        }
        if std::mem::take(&mut self.discarded) {
            statements.clear();
        }
        for (k, v) in self.param_changes.drain(..) {
            let i = crate::protocol::params::tracked_index(&k);
            if let Some(slot) = reported.iter_mut().find(|(n, _)| Some(*n) == i) {
                slot.1 = v;
            }
        }
    }

    /// Records what the server will answer to a message just written upstream.
    #[inline]
    pub fn push(&mut self, e: Expect) {
        if self.skipping && !matches!(e, Expect::Client(Msg::Sync)) {
            // The server is discarding until Sync: this message will get no answer.
            self.skipped.push(e);
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
        self.poisons.clear();
        self.copy_in = false;
        self.failed_names.clear();
        self.pending_dealloc = None;
        self.skipped.clear();
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
                        if let Some(c) = crate::protocol::params::unsafe_client_encoding(&v) {
                            // The inspector could no longer see where statements end: never
                            // read another client message on this session (see protocol/params.rs).
                            tracing::warn!(client_encoding = %v, "server switched to an unsafe client encoding; session ended");
                            crate::error::unsafe_encoding(&v, c)
                                .into_fatal()
                                .encode(client.out());
                            return Outcome::ServerFatal;
                        }
                    }
                    if head_is_client && crate::protocol::params::tracked(&k).is_some() {
                        self.param_changes.push((k.clone(), v.clone()));
                    }
                    conn.set_param(k, v);
                }
                if head_is_client {
                    client.queue(f.raw);
                }
                return Outcome::Continue;
            }
            b'N' | b'A' => {
                if head_is_client {
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
            (b'1', Expect::Client(Msg::Parse(named))) => {
                if let Some((_, server)) = named {
                    conn.statements().confirm(server.clone());
                }
                (true, true)
            }
            (b'1', Expect::Reprepare(server)) => {
                conn.statements().confirm(server.clone());
                (true, false)
            }
            (b'1', Expect::ReprepareUnnamed) => (true, false),
            (b'2', Expect::Client(Msg::Bind(_))) => (true, true),
            (b'3', Expect::Client(Msg::Close)) => (true, true),
            (b'3', Expect::Evict(server)) => {
                conn.statements().closed(server);
                (true, false)
            }
            (b't', Expect::Client(Msg::DescribeStatement(_))) => (false, true),
            (b'T' | b'n', Expect::Client(Msg::DescribeStatement(_) | Msg::DescribePortal)) => {
                (true, true)
            }
            (b'C' | b'I' | b's', Expect::Client(Msg::Execute)) => {
                self.check_tag(f, conn);
                (true, true)
            }
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
            (_, Expect::Client(_)) => {
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
        if forward {
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
        while let Some(e) = self.expect.pop_front() {
            match e {
                Expect::Client(Msg::Sync | Msg::Query) => break,
                Expect::Synthetic(b) if !self.skipping => client.queue(&b),
                other => self.note_skipped(&other, conn),
            }
        }
        self.skipping = false;
        let status = f.body().first().copied().unwrap_or(b'I');
        let done = self.expect.is_empty();
        conn.ready(status, done);
        if !done {
            // More client Syncs are outstanding (pipelined segments).
            client.queue(f.raw);
            return Outcome::Continue;
        }
        self.poisons.clear();
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
        // The server disagrees with the proxy's view of a statement it manages: take the
        // server's word, so the next use recovers by itself.
        match (&head, fields.code.as_str()) {
            (Some(Expect::Reprepare(server)), "42P05") => conn.statements().confirm(server.clone()),
            (
                Some(Expect::Client(
                    Msg::Bind(Some(server)) | Msg::DescribeStatement(Some(server)),
                )),
                "26000",
            ) => conn.statements().forget(server),
            _ => {}
        }
        match head {
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
                self.note_skipped(&e, conn);
            }
            while let Some(e) = self.expect.front() {
                if matches!(e, Expect::Client(Msg::Sync)) {
                    break;
                }
                if let Some(e) = self.expect.pop_front() {
                    self.note_skipped(&e, conn);
                }
            }
            self.skipping = true;
        }
        Outcome::Continue
    }

    /// Applies what messages written during a skip did not do (call after writing messages).
    #[inline]
    pub fn settle(&mut self, conn: &mut UpstreamConn) {
        if self.skipped.is_empty() {
            return;
        }
        for e in std::mem::take(&mut self.skipped) {
            self.note_skipped(&e, conn);
        }
    }

    /// Whether the session has client-side state to update (failed or discarded statements,
    /// changed tracked parameters): false for almost every message, so it is checked first.
    #[inline]
    pub fn has_session_changes(&self) -> bool {
        !self.failed_names.is_empty() || self.discarded || !self.param_changes.is_empty()
    }

    /// An awaited answer that will never come (the server skipped the message): the client
    /// forgets a statement whose Parse was skipped; an evicted statement whose Close was
    /// skipped still exists.
    fn note_skipped(&mut self, e: &Expect, conn: &mut UpstreamConn) {
        match e {
            Expect::Client(Msg::Parse(Some((client, server)))) => {
                self.failed_names.push(client.clone());
                conn.statements().failed(server);
            }
            Expect::Reprepare(server) => conn.statements().failed(server),
            Expect::Evict(server) => conn.statements().close_skipped(server),
            _ => {}
        }
    }

    fn check_tag(&mut self, f: FrameRef<'_>, conn: &mut UpstreamConn) {
        let t = command_tag(f.body());
        if t == b"DISCARD ALL" || t == b"DEALLOCATE ALL" {
            // Prepared statements are gone on this connection (the client's too).
            conn.statements().clear();
            self.discarded = true;
        } else if t == b"DEALLOCATE" {
            // Only a name the proxy itself rewrote can be one it manages.
            if let Some(name) = self.pending_dealloc.take() {
                conn.statements().forget(&name);
            }
        }
        // Settings may have changed at session level (the client's SET, RESET, DISCARD ALL, or
        // a tenant SET that `probe_action = "log"` let through): the next transaction starts
        // with the prelude again.
        if t == b"SET" || t == b"RESET" || t.starts_with(b"DISCARD") {
            conn.forget_identity();
        }
        if DIRTY_TAGS.iter().any(|d| t.starts_with(d)) {
            conn.mark_dirty();
        }
    }
}
