//! Upstream → client: forwarding server messages until ReadyForQuery.
//!
//! Frames are forwarded raw. The relay looks only at the tags it must: the responses to the
//! proxy's own injection (swallowed), ErrorResponse (poison swap, injection failure, FATAL),
//! ParameterStatus (kept per connection), CopyInResponse (client data may flow), a few
//! CommandComplete tags that drop prepared statements, and ReadyForQuery.

use std::collections::VecDeque;

use crate::error;
use crate::pool::UpstreamConn;
use crate::protocol::messages::{command_tag, error_fields, parameter_status_fields, PgError};
use crate::protocol::{Frame, PqStream};
use crate::tenant::inject::is_poison_error;

/// Per-transaction response state.
#[derive(Debug, Default)]
pub struct Relay {
    /// Responses to the proxy's injection still to be swallowed.
    pub swallow: u8,
    /// The injection failed: the server skips to Sync; only ReadyForQuery reaches the client.
    pub inject_failed: bool,
    /// Refusals waiting for their poison's syntax error, in stream order.
    pub poisons: VecDeque<PgError>,
    /// The server is in COPY IN: client CopyData/CopyDone/CopyFail must flow.
    pub copy_in: bool,
}

/// What the session must do after a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing special.
    Continue,
    /// ReadyForQuery with this status was forwarded.
    Ready(u8),
    /// The injection failed; the client has its error. Make sure a Sync reaches the server.
    InjectionFailed,
    /// The server ended the connection (FATAL forwarded).
    ServerFatal,
}

impl Relay {
    /// Handles one server frame, queueing what the client should see on `client`.
    #[inline]
    pub fn on_server(&mut self, f: &Frame, conn: &mut UpstreamConn, client: &mut PqStream) -> Outcome {
        let tag = f.tag();
        if tag == b'E' {
            return self.on_error(f, conn, client);
        }
        if self.swallow > 0 {
            match tag {
                b'1' | b'2' | b'3' | b'D' | b'C' => self.swallow -= 1,
                b'S' => record_param(f, conn),
                b'N' => {}
                _ => {
                    // Not what an injection answers: stop trusting this connection.
                    tracing::error!(tag = %(tag as char), "unexpected server message while injecting");
                    error::server_lost().encode(client.out());
                    return Outcome::ServerFatal;
                }
            }
            return Outcome::Continue;
        }
        match tag {
            b'Z' => {
                let status = f.body().first().copied().unwrap_or(b'I');
                conn.status = status;
                conn.busy = false;
                self.poisons.clear();
                self.inject_failed = false;
                self.copy_in = false;
                client.queue(&f.raw);
                return Outcome::Ready(status);
            }
            _ if self.inject_failed => {
                if tag == b'S' {
                    record_param(f, conn);
                }
                return Outcome::Continue;
            }
            b'S' => record_param(f, conn),
            b'G' => self.copy_in = true,
            b'C' => {
                let t = command_tag(f.body());
                if t.starts_with(b"DISCARD") || t.starts_with(b"DEALLOCATE") {
                    // The proxy's statement may be gone: prepare it again next time.
                    conn.inject_prepared = false;
                }
            }
            _ => {}
        }
        client.queue(&f.raw);
        Outcome::Continue
    }

    fn on_error(&mut self, f: &Frame, conn: &mut UpstreamConn, client: &mut PqStream) -> Outcome {
        let fields = error_fields(f.body());
        let fatal = fields.severity == "FATAL" || fields.severity == "PANIC";
        if self.swallow > 0 {
            self.swallow = 0;
            self.inject_failed = true;
            conn.inject_prepared = false;
            tracing::error!(code = %fields.code, message = %fields.message, "tenant injection failed; statement not run");
            if fatal {
                client.queue(&f.raw);
                return Outcome::ServerFatal;
            }
            error::injection_failed(&fields.code, &fields.message).encode(client.out());
            return Outcome::InjectionFailed;
        }
        if fatal {
            client.queue(&f.raw);
            return Outcome::ServerFatal;
        }
        if self.inject_failed {
            return Outcome::Continue;
        }
        if !self.poisons.is_empty() && is_poison_error(&fields) {
            if let Some(refusal) = self.poisons.pop_front() {
                refusal.encode(client.out());
                return Outcome::Continue;
            }
        }
        client.queue(&f.raw);
        Outcome::Continue
    }
}

fn record_param(f: &Frame, conn: &mut UpstreamConn) {
    if let Some((k, v)) = parameter_status_fields(f.body()) {
        conn.set_param(k, v);
    }
}
