//! The client's statement and portal namespace, one call per extended-protocol message.
//!
//! Client statement names never reach the server: each is mapped to a server name of the
//! proxy's (see [`crate::prepared`]), in both pool modes. A client can therefore only bind,
//! describe, execute or close what it created itself; anything else is answered as PostgreSQL
//! would (26000 / 34000) without reaching the server, and is a probe. The unnamed statement
//! and the portals count as the client's only once it created them on the attached server
//! connection (portals last until the transaction ends), so nothing another client left on a
//! pooled connection can be reached.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::error;
use crate::pool::UpstreamConn;
use crate::prepared::{ClientStatements, Limit, StatementDef};
use crate::protocol::messages::{self, parse_msg, split_bind, split_target, PgError};
use crate::protocol::Frame;
use crate::relay::{Expect, Msg, Relay};

/// Longest unnamed statement kept for re-parsing on another server connection: bounds the
/// memory per session; a longer one can be bound only on the connection it was parsed on
/// (26000 elsewhere, as before).
pub const UNNAMED_KEEP: usize = 64 * 1024;

/// Per-session caps and the per-connection statement cap.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// `max_prepared_statements`: server statements per upstream connection (LRU).
    pub per_server: usize,
    /// `max_client_prepared_statements`.
    pub count: usize,
    /// `max_client_prepared_bytes`.
    pub bytes: usize,
}

/// A message refused by the namespace rules.
#[derive(Debug)]
pub struct Refusal {
    pub error: PgError,
    /// The name it tried, for the probe event; None when it is not a probe (a cap).
    pub probe: Option<String>,
}

/// What forwarding a message did.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// Written upstream, answer awaited.
    Upstream,
    /// Answered by the proxy (a synthetic answer is queued in the relay).
    Synthetic,
}

/// One session's statements and its portals on the attached connection.
#[derive(Debug)]
pub struct Namespace {
    /// Named statements, by client name.
    pub statements: ClientStatements,
    /// The client parsed the unnamed statement on the attached connection.
    unnamed_statement: bool,
    /// The client's unnamed statement (text, parameter types), re-parsed on a connection the
    /// client did not parse it on: PostgreSQL keeps it until the next unnamed Parse or Query,
    /// across transactions, so a client may Bind it in a later round trip.
    unnamed_text: Option<(Bytes, Bytes)>,
    /// The client bound the unnamed portal in the current transaction.
    unnamed_portal: bool,
    /// Named portals the client bound in the current transaction.
    portals: Vec<Bytes>,
    /// Cursors the client declared in SQL (name, `WITH HOLD`): portals too, which protocol
    /// messages may name (psycopg describes its server-side cursors that way).
    cursors: Vec<(Bytes, bool)>,
    caps: Caps,
}

impl Namespace {
    /// An empty namespace whose statement texts count against `budget`.
    pub fn new(caps: Caps, budget: std::sync::Arc<crate::prepared::Budget>) -> Namespace {
        Namespace {
            statements: ClientStatements::with_budget(budget),
            unnamed_statement: false,
            unnamed_text: None,
            unnamed_portal: false,
            portals: Vec::new(),
            cursors: Vec::new(),
            caps,
        }
    }

    /// A server connection was attached: nothing unnamed on it is the client's yet.
    pub fn attached(&mut self) {
        self.unnamed_statement = false;
        self.transaction_ended();
    }

    /// The transaction ended: its portals are gone (holdable cursors stay).
    pub fn transaction_ended(&mut self) {
        self.unnamed_portal = false;
        self.portals.clear();
        self.cursors.retain(|(_, hold)| *hold);
    }

    /// The client declared cursors (as the server will name them); a few at most are kept.
    pub fn declared(&mut self, cursors: Vec<(String, bool)>) {
        for (name, hold) in cursors {
            let name = Bytes::from(name);
            self.cursors.retain(|(n, _)| *n != name);
            if self.cursors.len() < 1024 {
                self.cursors.push((name, hold));
            }
        }
    }

    /// Writes one extended-protocol message upstream (renamed), records its awaited answer, or
    /// refuses it. `since`: the LRU tick at the segment's start (statements used since then are
    /// not evicted).
    pub fn forward(
        &mut self,
        f: &Frame,
        conn: &mut UpstreamConn,
        relay: &mut Relay,
        since: u64,
    ) -> Result<Forwarded, Refusal> {
        let body = f.body();
        match f.tag() {
            b'P' => self.parse(f, conn, relay, since),
            b'B' => {
                let Some((portal, stmt, rest)) = split_bind(body) else {
                    return Err(malformed());
                };
                let server = self.statement(stmt, conn, relay, since)?;
                match &server {
                    Some(name) => messages::write_bind(conn.stream().out(), portal, name, rest),
                    None => conn.stream().queue(&f.raw),
                }
                if portal.is_empty() {
                    self.unnamed_portal = true;
                } else if !self.portals.iter().any(|p| p[..] == *portal) {
                    self.portals.push(Bytes::copy_from_slice(portal));
                }
                relay.push(Expect::Client(Msg::Bind(server)));
                Ok(Forwarded::Upstream)
            }
            b'D' => match split_target(body) {
                Some((b'S', stmt)) => {
                    let server = self.statement(stmt, conn, relay, since)?;
                    match &server {
                        Some(name) => messages::describe_statement(conn.stream().out(), name),
                        None => conn.stream().queue(&f.raw),
                    }
                    relay.push(Expect::Client(Msg::DescribeStatement(server)));
                    Ok(Forwarded::Upstream)
                }
                Some((b'P', portal)) => {
                    self.portal(portal)?;
                    conn.stream().queue(&f.raw);
                    relay.push(Expect::Client(Msg::DescribePortal));
                    Ok(Forwarded::Upstream)
                }
                _ => Err(malformed()),
            },
            b'E' => {
                let Some((portal, _)) = messages::read_cstr(body) else {
                    return Err(malformed());
                };
                self.portal(portal)?;
                conn.stream().queue(&f.raw);
                relay.push(Expect::Client(Msg::Execute));
                Ok(Forwarded::Upstream)
            }
            b'C' => self.close(f, conn, relay),
            _ => {
                conn.stream().queue(&f.raw);
                Ok(Forwarded::Upstream)
            }
        }
    }

    fn parse(
        &mut self,
        f: &Frame,
        conn: &mut UpstreamConn,
        relay: &mut Relay,
        since: u64,
    ) -> Result<Forwarded, Refusal> {
        let Some(pm) = parse_msg(f.body()) else {
            return Err(malformed());
        };
        if pm.name.is_empty() {
            conn.stream().queue(&f.raw);
            self.unnamed_statement = true;
            self.keep_unnamed(pm.sql, pm.types);
            relay.push(Expect::Client(Msg::Parse(None)));
            return Ok(Forwarded::Upstream);
        }
        if self.statements.contains(pm.name) {
            // PostgreSQL refuses to redefine a name; keep its wording.
            return Err(Refusal {
                error: error::duplicate_statement(&String::from_utf8_lossy(pm.name)),
                probe: None,
            });
        }
        let text = self.statements.text(pm.sql).map_err(|limit| Refusal {
            error: error::too_many_statements(limit),
            probe: None,
        })?;
        let def = Arc::new(StatementDef::new(text, pm.types));
        if let Err(limit) = self
            .statements
            .admits(def.size(), self.caps.count, self.caps.bytes)
        {
            return Err(Refusal {
                error: error::too_many_statements(limit),
                probe: None,
            });
        }
        let client_name = Bytes::copy_from_slice(pm.name);
        if let Err(limit) = self.statements.insert(client_name.clone(), def.clone()) {
            return Err(Refusal {
                error: error::too_many_statements(limit),
                probe: None,
            });
        }
        evict(conn, relay, self.caps.per_server, since);
        def.write_parse(conn.stream().out());
        conn.statements().pending(def.server_name.clone());
        relay.push(Expect::Client(Msg::Parse(Some((
            client_name,
            def.server_name.clone(),
        )))));
        Ok(Forwarded::Upstream)
    }

    /// The server name for a client statement reference (None: the unnamed statement), after
    /// making sure it exists on this connection.
    fn statement(
        &mut self,
        name: &[u8],
        conn: &mut UpstreamConn,
        relay: &mut Relay,
        since: u64,
    ) -> Result<Option<Bytes>, Refusal> {
        if name.is_empty() {
            if self.unnamed_statement {
                return Ok(None);
            }
            if let Some((sql, types)) = &self.unnamed_text {
                messages::parse_raw_types(conn.stream().out(), b"", sql, types);
                relay.push(Expect::ReprepareUnnamed);
                self.unnamed_statement = true;
                return Ok(None);
            }
            return Err(Refusal {
                error: error::no_such_statement(""),
                probe: Some(String::new()),
            });
        }
        let Some(def) = self.statements.get(name).cloned() else {
            let name = String::from_utf8_lossy(name).into_owned();
            return Err(Refusal {
                error: error::no_such_statement(&name),
                probe: Some(name),
            });
        };
        ensure_prepared(conn, relay, &def, self.caps.per_server, since);
        Ok(Some(def.server_name.clone()))
    }

    fn portal(&self, name: &[u8]) -> Result<(), Refusal> {
        let known = if name.is_empty() {
            self.unnamed_portal
        } else {
            self.portals.iter().any(|p| p[..] == *name)
                || self.cursors.iter().any(|(c, _)| c[..] == *name)
        };
        if known {
            return Ok(());
        }
        let name = String::from_utf8_lossy(name).into_owned();
        Err(Refusal {
            error: error::no_such_portal(&name),
            probe: Some(name),
        })
    }

    /// Close: the client's own statement or portal is closed; anything else is answered with
    /// CloseComplete locally, as PostgreSQL answers a Close of a name that does not exist.
    fn close(
        &mut self,
        f: &Frame,
        conn: &mut UpstreamConn,
        relay: &mut Relay,
    ) -> Result<Forwarded, Refusal> {
        let Some((kind, name)) = split_target(f.body()) else {
            return Err(malformed());
        };
        let forward = match kind {
            b'S' if name.is_empty() => self.unnamed_statement,
            b'S' => {
                if let Some(def) = self.statements.remove(name) {
                    if conn.statements().touch(&def.server_name) {
                        // Hygiene: the server statement goes too (it is this client's alone).
                        messages::close_statement(conn.stream().out(), &def.server_name);
                        relay.push(Expect::Evict(def.server_name.clone()));
                    }
                }
                false
            }
            b'P' if name.is_empty() => std::mem::take(&mut self.unnamed_portal),
            b'P' => {
                let before = self.portals.len() + self.cursors.len();
                self.portals.retain(|p| p[..] != *name);
                self.cursors.retain(|(c, _)| c[..] != *name);
                self.portals.len() + self.cursors.len() != before
            }
            _ => return Err(malformed()),
        };
        if kind == b'S' && name.is_empty() {
            self.unnamed_text = None;
        }
        if forward {
            if kind == b'S' {
                self.unnamed_statement = false;
            }
            conn.stream().queue(&f.raw);
            relay.push(Expect::Client(Msg::Close));
            return Ok(Forwarded::Upstream);
        }
        let mut ok = BytesMut::new();
        messages::close_complete(&mut ok);
        relay.push(Expect::Synthetic(ok.freeze()));
        Ok(Forwarded::Synthetic)
    }

    /// The client's unnamed Parse was rewritten by the session (and forwarded); it is not
    /// re-parsed elsewhere (a `DEALLOCATE` runs once).
    pub fn parsed_unnamed(&mut self) {
        self.unnamed_statement = true;
        self.unnamed_text = None;
    }

    /// A simple Query was sent: PostgreSQL drops the unnamed statement with it, so there is
    /// nothing to re-parse on another connection.
    pub fn query_sent(&mut self) {
        self.unnamed_text = None;
    }

    /// Keeps the unnamed statement for re-parsing, copying it only when it changed (drivers
    /// repeat one text) and only up to [`UNNAMED_KEEP`] bytes.
    fn keep_unnamed(&mut self, sql: &[u8], types: &[u8]) {
        if sql.len() > UNNAMED_KEEP {
            self.unnamed_text = None;
            return;
        }
        if let Some((s, t)) = &self.unnamed_text {
            if s[..] == *sql && t[..] == *types {
                return;
            }
        }
        self.unnamed_text = Some((Bytes::copy_from_slice(sql), Bytes::copy_from_slice(types)));
    }

    /// A client `DEALLOCATE name` of one of its statements: forgets the name and returns the
    /// server statement (made present on `conn`) that the rewritten `DEALLOCATE` drops.
    pub fn deallocate(
        &mut self,
        name: &[u8],
        conn: &mut UpstreamConn,
        relay: &mut Relay,
        since: u64,
    ) -> Option<Bytes> {
        let def = self.statements.remove(name)?;
        ensure_prepared(conn, relay, &def, self.caps.per_server, since);
        Some(def.server_name.clone())
    }
}

/// Makes sure `def` exists on this connection, re-preparing it (answer swallowed) if not.
fn ensure_prepared(
    conn: &mut UpstreamConn,
    relay: &mut Relay,
    def: &StatementDef,
    cap: usize,
    since: u64,
) {
    if conn.statements().touch(&def.server_name) {
        return;
    }
    evict(conn, relay, cap, since);
    def.write_parse(conn.stream().out());
    conn.statements().pending(def.server_name.clone());
    relay.push(Expect::Reprepare(def.server_name.clone()));
}

/// Closes least recently used statements so one more fits under `cap`.
fn evict(conn: &mut UpstreamConn, relay: &mut Relay, cap: usize, since: u64) {
    for old in conn.statements().evict_for_one_more(cap, since) {
        messages::close_statement(conn.stream().out(), &old);
        relay.push(Expect::Evict(old));
    }
}

fn malformed() -> Refusal {
    Refusal {
        error: error::protocol_violation("invalid message format"),
        probe: None,
    }
}

impl From<Limit> for PgError {
    fn from(l: Limit) -> PgError {
        error::too_many_statements(l)
    }
}
