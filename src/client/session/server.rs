//! The session's server connection: checkout and the prelude that makes it carry the
//! session's identity, the settings carried between transactions, and release.

use super::*;
use crate::pool::reset::Release;

impl Session {
    /// At a segment's start on an idle connection: makes the connection carry this session's
    /// identity and tracked parameters, waiting for the server's confirmation. Returns a flow
    /// when the client's message was refused instead.
    pub(super) async fn ensure_identity(&mut self, tag: u8) -> Result<Option<Flow>, SessionError> {
        let Some(guard) = self.server.as_mut() else {
            return Ok(None);
        };
        let conn = guard.conn();
        self.segment_tick = conn.statements().now();
        if conn.status() != b'I' {
            return Ok(None);
        }
        if self.shared.config.tenant.signing_key_file.is_some() {
            // A SIGHUP may have rotated the key: sign with the newest before this transaction
            // (no copy unless the key changed).
            let live = self.shared.live();
            let keys = live.config.tenant.resolved_signing_keys.as_deref();
            self.prelude
                .set_signing(keys.map(crate::signing::KeyRing::current));
        }
        let stale: Vec<(&str, &str)> = self
            .reported
            .iter()
            .filter(|(i, v)| conn.tracked(*i) != Some(v.as_str()))
            .map(|(i, v)| (crate::protocol::params::TRACKED[*i], v.as_str()))
            .collect();
        if conn.identity() == self.prelude.identity && stale.is_empty() {
            return Ok(None);
        }
        match inject::run_prelude(conn, &self.prelude, &stale).await {
            Ok(()) => Ok(None),
            Err(inject::PreludeError::Stream(e)) => {
                tracing::warn!(error = %e, "lost upstream connection");
                self.server_gone().await;
                Err(SessionError::Server(e))
            }
            Err(inject::PreludeError::Refused(e)) => {
                crate::metrics::injection_failed();
                tracing::error!(code = %e.code, message = %e.message, "tenant context could not be set; statement not run");
                // Whatever the server holds now is unknown: it never serves anyone again.
                if let Some(g) = self.server.take() {
                    self.cancel.target.detach();
                    g.discard();
                }
                let err = error::injection_failed(&e.code, &e.message);
                self.refuse_locally(tag, err).await.map(Some)
            }
        }
    }

    /// After a transaction ended: the settings it changed at session level become part of the
    /// session's identity, with the values PostgreSQL kept (a rolled-back `SET` reads back as
    /// the old value), so the prelude re-applies them on the next server connections.
    pub(super) async fn carry_settings(&mut self) -> Result<(), SessionError> {
        if std::mem::take(&mut self.pending_reset_all) {
            self.prelude.reset_to(&self.startup_local);
        }
        if self.pending_reads.is_empty() {
            return Ok(());
        }
        let names = std::mem::take(&mut self.pending_reads);
        let Some(guard) = self.server.as_mut() else {
            return Ok(());
        };
        let conn = guard.conn();
        match inject::read_settings(conn, &names).await {
            Ok(values) => {
                // The connection now carries these at session level: whoever gets it next with
                // another identity has them reset by its prelude. Only names PostgreSQL knows:
                // resetting one it refused (`SET no_such_setting = 1`) would fail that prelude,
                // and with it the next tenant's statement.
                for (n, _) in values.iter().filter(|(_, v)| v.is_some()) {
                    conn.add_applied_key(n);
                }
                self.prelude.update(values);
            }
            Err(inject::PreludeError::Refused(e)) => {
                // What the connection carries is unknown: reset before anyone else gets it.
                conn.mark_dirty();
                conn.forget_identity();
                tracing::warn!(code = %e.code, message = %e.message, "could not read back session settings");
            }
            Err(inject::PreludeError::Stream(e)) => {
                tracing::warn!(error = %e, "lost upstream connection");
                self.server_gone().await;
                return Err(SessionError::Server(e));
            }
        }
        Ok(())
    }

    /// Checks out an upstream connection and points cancels at it.
    pub(super) async fn attach(&mut self) -> Result<(), PoolError> {
        let identity = self.prelude.identity;
        let share = self.seat.as_ref().map(Seat::tag);
        let user = Some(&self.user_share);
        let mut guard = match self.pool.try_checkout(identity, share, user) {
            Some(g) => g,
            None => {
                // Waiting (or connecting): a CancelRequest now ends the wait.
                let target = self.cancel.target.clone();
                let cancelled = target.waiting_cancel.notified();
                tokio::pin!(cancelled);
                cancelled.as_mut().enable();
                tokio::select! {
                    g = self.pool.checkout(identity, share, user) => g?,
                    _ = cancelled => return Err(PoolError::Cancelled),
                }
            }
        };
        let conn = guard.conn();
        let (pid, secret) = conn.backend_key();
        self.cancel.target.attach(pid, secret);
        self.names.attached();
        self.listed
            .info
            .active
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.server = Some(guard);
        Ok(())
    }

    /// Returns a clean connection to the pool (the guard decides if it is clean), once no
    /// forwarded cancel can still reach it; otherwise the connection is closed.
    pub(super) async fn detach(&mut self) {
        let settled = self.cancel.target.settle().await;
        self.listed
            .info
            .active
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.relay.reset();
        if let Some(g) = self.server.take() {
            g.release(settled, Release::Detach);
        }
    }

    /// The upstream failed: tell the client (FATAL) and drop the connection.
    pub(super) async fn server_gone(&mut self) {
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

    /// Leaves nothing behind for the next client: waits for this client's forwarded cancels to
    /// settle (a late one must not hit the next client's query) and hands the connection to the
    /// release policy ([`PoolGuard::release`](crate::pool::PoolGuard::release)).
    pub(super) async fn finish(&mut self) {
        let settled = self.cancel.target.settle().await;
        self.client.shutdown().await;
        if let Some(guard) = self.server.take() {
            let session_mode = self.mode == PoolMode::Session;
            guard.release(settled, Release::End { session_mode });
        }
    }
}

/// The key new signatures use, from the live (reloadable) configuration; None when signing is
/// off.
pub(super) fn signing_key(shared: &Shared) -> Option<crate::signing::SigningKey> {
    let live = shared.live();
    let keys = live.config.tenant.resolved_signing_keys.as_deref()?;
    Some(keys.current().clone())
}
