//! Release policy: what a server connection needs before another client may use it.
//!
//! The session hands its guard here when it detaches or ends ([`PoolGuard::release`]); nothing else
//! writes `ROLLBACK` or a reset, and the session never decides how a connection is cleaned. A
//! connection that cannot be brought back to a clean, idle state within the deadline is closed,
//! never pooled (STYLE habit 7).

use std::time::Duration;

use crate::pool::PoolGuard;
use crate::protocol::messages;
use crate::protocol::stream::StreamError;

/// `DISCARD ALL` without `DEALLOCATE ALL` (the proxy manages prepared statements itself):
/// cursors, LISTEN, session advisory locks, temporary objects, sequences' session state and
/// every setting. One multi-statement Query: each of these may run in a transaction block.
pub const TRANSACTION_MODE_RESET: &str = "CLOSE ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; RESET ALL";

/// When a session gives its connection back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Between transactions (transaction pooling, at ReadyForQuery `I`): reset only what the
    /// client may have left at session level (`dirty`).
    Detach,
    /// The session ended, in any state: roll back, reset for the pool mode, or cancel and close
    /// a connection still running the client's query.
    End {
        /// The connection was held for the whole session: `DISCARD ALL`.
        session_mode: bool,
    },
}

impl PoolGuard {
    /// Gives the connection back under the release policy. `settled`: no cancel this client
    /// forwarded can still reach the connection (one that could would hit the next client's
    /// query), else it is closed. Resets and closes run in their own task: the session does not
    /// wait for them.
    pub fn release(mut self, settled: bool, how: Release) {
        let conn = self.conn();
        let (status, dirty, busy) = (conn.status, conn.dirty, conn.busy);
        match how {
            Release::Detach if !settled => self.discard(),
            Release::Detach => {
                if dirty {
                    tokio::spawn(reset_and_release(self, plan(b'I', true, false)));
                }
            }
            Release::End { .. } if !settled => {
                tokio::spawn(self.close_gracefully());
            }
            Release::End { .. } if busy => {
                // Still running the client's query: cancel it, and never reuse the connection.
                let (pid, secret) = (conn.pid, conn.secret);
                let spec = self.pool().spec().clone();
                tokio::spawn(async move {
                    let _ = super::upstream::send_cancel(&spec.host, spec.port, pid, secret).await;
                    self.close_gracefully().await;
                });
            }
            Release::End { session_mode } => {
                let queries = plan(status, dirty, session_mode);
                if !queries.is_empty() {
                    tokio::spawn(reset_and_release(self, queries));
                }
            }
        }
    }
}

/// What a connection needs at release, from its state and the pool mode.
pub fn plan(status: u8, dirty: bool, session_mode: bool) -> Vec<&'static str> {
    let mut q = Vec::new();
    if status != b'I' {
        q.push("ROLLBACK");
    }
    if session_mode {
        // The next client must find the connection as a fresh one would be.
        q.push("DISCARD ALL");
    } else if dirty {
        q.push(TRANSACTION_MODE_RESET);
    }
    q
}

/// Runs `queries` (pipelined, one ReadyForQuery each) and releases the connection if it ends
/// idle and error-free; otherwise closes it.
pub async fn reset_and_release(mut guard: PoolGuard, queries: Vec<&'static str>) {
    if queries.is_empty() {
        return;
    }
    let conn = guard.conn();
    for q in &queries {
        messages::query(conn.stream.out(), q);
    }
    conn.busy = true;
    let expected = queries.len();
    let done = tokio::time::timeout(Duration::from_secs(5), async {
        conn.stream.flush().await?;
        let mut seen = 0;
        let mut failed = false;
        while seen < expected {
            let f = conn.stream.read_frame().await?;
            match f.tag() {
                b'S' => {
                    if let Some((k, v)) = messages::parameter_status_fields(f.body()) {
                        conn.set_param(k, v);
                    }
                }
                b'E' => failed = true,
                b'Z' => {
                    seen += 1;
                    conn.status = f.body().first().copied().unwrap_or(b'E');
                }
                _ => {}
            }
        }
        Ok::<bool, StreamError>(!failed)
    })
    .await;
    if !matches!(done, Ok(Ok(true))) || conn.status != b'I' {
        guard.close_gracefully().await;
        return;
    }
    conn.busy = false;
    conn.dirty = false;
    // Every setting is back to its default: the next client gets the prelude.
    conn.identity = 0;
    conn.applied_keys.clear();
    if queries.contains(&"DISCARD ALL") {
        conn.statements.clear();
    }
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert!(plan(b'I', false, false).is_empty());
        assert_eq!(plan(b'T', false, false), vec!["ROLLBACK"]);
        assert_eq!(plan(b'I', true, false), vec![TRANSACTION_MODE_RESET]);
        assert_eq!(plan(b'E', false, true), vec!["ROLLBACK", "DISCARD ALL"]);
        assert_eq!(plan(b'I', false, true), vec!["DISCARD ALL"]);
    }
}
