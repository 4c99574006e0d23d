//! What a checkout holds: a [`Slot`] counted against its tenant, and the [`PoolGuard`] that
//! returns a clean connection with it, or closes a dirty one (STYLE habit 7).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::limits::UserTag;
use super::queue::TenantTag;
use super::slots::Back;
use super::{Pool, UpstreamConn};

/// One held slot of a pool, counted against its tenant and user; given back exactly once.
pub(super) struct Slot {
    pub(super) pool: Arc<Pool>,
    /// The tenant it counts against.
    pub(super) tenant: Option<Arc<TenantTag>>,
    /// The user it counts against.
    pub(super) user: Option<Arc<UserTag>>,
    /// Still held (false once given back).
    pub(super) held: bool,
}

impl Slot {
    /// Gives the slot back with `conn` (a clean connection, or None), to the next waiter.
    pub(super) fn give_back(&mut self, conn: Back) {
        if std::mem::take(&mut self.held) {
            self.pool
                .slots()
                .give_back(self.tenant.as_deref(), self.user.as_deref(), conn);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.give_back(None);
    }
}

/// Whether an idle connection has neither closed nor sent anything unexpected.
///
/// An idle server only speaks when something is wrong (admin shutdown FATAL, EOF), so any
/// readable data or EOF means the connection must not be reused.
pub(super) fn is_quiet(conn: &mut UpstreamConn) -> bool {
    if conn.stream.buffered_len() > 0 {
        return false;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let fut = conn.stream.fill();
    let mut fut = std::pin::pin!(fut);
    matches!(fut.as_mut().poll(&mut cx), Poll::Pending)
}

/// A checked-out connection; dropping it returns it to the pool only if it is clean.
pub struct PoolGuard {
    /// The connection (taken out on drop).
    pub(super) conn: Option<Box<UpstreamConn>>,
    /// The slot this connection occupies; given back (with the connection when clean) on drop.
    pub(super) slot: Slot,
}

impl PoolGuard {
    /// Always there: only `Drop` takes the connection out.
    #[inline]
    pub fn conn(&mut self) -> &mut UpstreamConn {
        // Invariant: `conn` is Some from checkout until drop.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("guard used after drop"))
    }

    /// The same connection as [`PoolGuard::conn`], through a shared borrow.
    #[inline]
    pub fn conn_ref(&self) -> &UpstreamConn {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("guard used after drop"))
    }

    /// The pool this connection belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.slot.pool
    }

    /// Closes the connection and keeps its slot until the server has ended the backend
    /// (Terminate, then EOF, bounded), so PostgreSQL never shows more than `pool_size`
    /// backends for the role while a replacement is opened.
    pub async fn close_gracefully(mut self) {
        if let Some(conn) = self.conn.as_mut() {
            crate::protocol::messages::write_msg(conn.stream.out(), b'X', |_| {});
            let drain = async {
                if conn.stream.flush().await.is_err() {
                    return;
                }
                // Discard whatever is still in flight (an error for a cancelled query ...).
                while conn.stream.fill().await.is_ok() {
                    while let Ok(Some(_)) = conn.stream.try_buffered_frame() {}
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
        }
        self.discard();
    }

    /// Marks the connection unusable: it will be closed, not returned.
    pub fn discard(mut self) {
        if self.conn.take().is_some() {
            self.slot.pool.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let pool = &self.slot.pool;
        pool.stats.active.fetch_sub(1, Ordering::Relaxed);
        let back = match self.conn.take() {
            Some(conn)
                if conn.status == b'I'
                    && !conn.busy
                    && conn.stream.buffered_len() == 0
                    && !conn.stream.has_pending_writes() =>
            {
                pool.recycle(conn)
            }
            Some(_) => {
                // Not idle: closing the socket makes PostgreSQL roll the transaction back.
                pool.stats.closed.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        self.slot.give_back(back);
    }
}
