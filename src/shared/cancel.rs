//! Proxy-issued cancel keys and forwarding of CancelRequests.
//!
//! Each session gets a random (pid, secret) key. While the session holds an upstream
//! connection, its target records that connection's real key; a CancelRequest carrying the
//! proxy key is forwarded as a real CancelRequest to the upstream. Unknown keys are ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::pool::upstream::send_cancel;

/// Where a session's cancel should go right now.
#[derive(Debug)]
pub struct CancelTarget {
    /// Upstream (pid << 32 | secret) of the attached connection; 0 when detached.
    upstream: AtomicU64,
    /// Forwarded cancels still on their way to the server. While any is, the connection must
    /// not go back to the pool: a late cancel would hit the next client's query.
    inflight: AtomicU32,
    /// Wakes `settle` when `inflight` drops to zero.
    settled: Notify,
    /// Wakes a session waiting for a pooled connection: its query is cancelled before it runs.
    pub waiting_cancel: Notify,
    /// Upstream host for the cancel connection.
    host: String,
    port: u16,
}

impl CancelTarget {
    /// Points cancels at an attached upstream connection.
    pub fn attach(&self, pid: i32, secret: i32) {
        let v = ((pid as u32 as u64) << 32) | secret as u32 as u64;
        self.upstream.store(v.max(1), Ordering::Release);
    }

    /// Stops forwarding cancels (before the connection goes back to the pool).
    pub fn detach(&self) {
        self.upstream.store(0, Ordering::SeqCst);
    }

    /// Stops forwarding cancels and waits (bounded) until forwarded ones have reached the
    /// server. Returns false if one is still in flight: the connection must then be closed,
    /// not pooled.
    pub async fn settle(&self) -> bool {
        self.detach();
        if self.inflight.load(Ordering::SeqCst) == 0 {
            return true;
        }
        let wait = async {
            loop {
                let notified = self.settled.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inflight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(3), wait)
            .await
            .is_ok()
    }

    fn key(&self) -> Option<(i32, i32)> {
        match self.upstream.load(Ordering::SeqCst) {
            0 => None,
            v => Some(((v >> 32) as u32 as i32, v as u32 as i32)),
        }
    }
}

/// All live sessions' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    /// Proxy key → target.
    map: Mutex<HashMap<(i32, i32), Arc<CancelTarget>>>,
}

/// Removes the key from the registry when the session ends.
pub struct CancelHandle {
    /// The registry to remove from.
    registry: Arc<CancelRegistry>,
    /// The (pid, secret) the client got in BackendKeyData: random, never the upstream's.
    pub key: (i32, i32),
    /// Shared with the registry, which forwards a cancel to whatever connection it points at.
    pub target: Arc<CancelTarget>,
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.map.lock() {
            m.remove(&self.key);
        }
    }
}

impl CancelRegistry {
    /// Issues a fresh random key for a session whose upstream is `host:port`.
    pub fn register(self: &Arc<Self>, host: &str, port: u16) -> CancelHandle {
        let target = Arc::new(CancelTarget {
            upstream: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
            settled: Notify::new(),
            waiting_cancel: Notify::new(),
            host: host.to_owned(),
            port,
        });
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let key = loop {
            let k: (i32, i32) = (rand::random::<i32>() & 0x7fff_ffff, rand::random());
            if k.0 != 0 && !map.contains_key(&k) {
                break k;
            }
        };
        map.insert(key, target.clone());
        CancelHandle {
            registry: self.clone(),
            key,
            target,
        }
    }

    /// Forwards a cancel for a proxy key; unknown keys are ignored (as PostgreSQL does).
    pub fn cancel(&self, pid: i32, secret: i32) {
        let target = self
            .map
            .lock()
            .ok()
            .and_then(|m| m.get(&(pid, secret)).cloned());
        let Some(target) = target else {
            tracing::debug!("cancel request with unknown key ignored");
            return;
        };
        // Count the cancel before reading the key: `settle` clears the key before reading the
        // count, so either this sees no key, or `settle` sees this cancel in flight.
        target.inflight.fetch_add(1, Ordering::SeqCst);
        let Some((upid, usecret)) = target.key() else {
            target.inflight.fetch_sub(1, Ordering::SeqCst);
            target.settled.notify_waiters();
            // Not attached: if the session is waiting for a connection, cancel that wait.
            target.waiting_cancel.notify_waiters();
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = send_cancel(&target.host, target.port, upid, usecret).await {
                tracing::warn!(error = %e, "could not forward cancel request");
            }
            if target.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
                target.settled.notify_waiters();
            }
        });
    }
}
