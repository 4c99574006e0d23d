//! Live client sessions, for the admin console's SHOW CLIENTS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What SHOW CLIENTS reports about one session.
#[derive(Debug)]
pub struct ClientInfo {
    /// The session id (as in events).
    pub session_id: String,
    /// The login name as sent.
    pub user: String,
    /// From the startup packet; the user name when absent, as in PostgreSQL.
    pub database: String,
    /// Client address (after PROXY protocol).
    pub addr: SocketAddr,
    /// Shown as `TLS` in SHOW CLIENTS' `tls` column.
    pub tls: bool,
    /// application_name from startup.
    pub application_name: String,
    /// Wall-clock time; [`ClientRegistry::snapshot`] sorts by it.
    pub connected: SystemTime,
    /// The tenant, if any (may change by trusted switch).
    pub tenant: Mutex<Option<String>>,
    /// Which pool serves it (`app` or `breakglass`).
    pub pool: crate::pool::PoolName,
    /// Whether a server connection is attached right now.
    pub active: AtomicBool,
    /// Cancelled by the console's KILL: the session ends with FATAL `database removed`.
    pub kill: tokio_util::sync::CancellationToken,
}

impl ClientInfo {
    /// `active` or `idle`, PgBouncer's wording.
    pub fn state(&self) -> &'static str {
        if self.active.load(Ordering::Relaxed) {
            "active"
        } else {
            "idle"
        }
    }
}

/// Every live session by id; an entry leaves when its [`Listed`] is dropped.
#[derive(Default)]
pub struct ClientRegistry {
    map: Mutex<HashMap<String, Arc<ClientInfo>>>,
}

/// Keeps a session listed until dropped.
pub struct Listed {
    registry: Arc<ClientRegistry>,
    /// Shared with the registry: the session updates its `tenant` in place, and KILL cancels its
    /// `kill`.
    pub info: Arc<ClientInfo>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.map.lock() {
            m.remove(&self.info.session_id);
        }
    }
}

impl ClientRegistry {
    /// Lists a session until the returned [`Listed`] is dropped.
    pub fn add(self: &Arc<Self>, info: ClientInfo) -> Listed {
        let info = Arc::new(info);
        if let Ok(mut m) = self.map.lock() {
            m.insert(info.session_id.clone(), info.clone());
        }
        Listed {
            registry: self.clone(),
            info,
        }
    }

    /// A snapshot of every listed session, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self
            .map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|c| c.connected);
        v
    }

    /// Ends every session served by the pool `pool` (console KILL); returns how many.
    pub fn kill_pool(&self, pool: crate::pool::PoolName) -> usize {
        let victims: Vec<_> = self
            .snapshot()
            .into_iter()
            .filter(|c| c.pool == pool)
            .collect();
        for c in &victims {
            c.kill.cancel();
        }
        victims.len()
    }

    /// Live sessions now (SHOW LISTS' `used_clients`).
    pub fn count(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}
