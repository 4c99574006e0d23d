//! Who a session is: one record, kept by the session, with the tenant stored once.
//!
//! Everything else that needs to know who a session is gets a projection of it, built here:
//! the security events' [`Subject`] ([`Identity::subject`]), the guard's [`Asker`]
//! ([`Identity::asker`]) and the SHOW CLIENTS entry ([`Identity::listing`]). A trusted tenant
//! switch changes [`Identity::tenant`] and the listing's copy (which other tasks read) in one
//! place (`session/guard.rs`).

use std::net::SocketAddr;

use crate::config::{PoolMode, UserKind};
use crate::events::Subject;
use crate::pool::PoolName;
use crate::shared::clients::ClientInfo;
use crate::tenant::guard::Asker;

/// The facts about an authenticated session.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Random per-connection id, also in the tracing span and every event.
    pub session_id: String,
    /// The user name as the client sent it (with any `.tenant` suffix).
    pub login: String,
    /// The configured user's name.
    pub user: String,
    pub kind: UserKind,
    /// May switch tenant with an intercepted SET.
    pub allow_switch: bool,
    /// The user's own `pool_mode`, overriding `[upstream] pool_mode`.
    pub pool_mode: Option<PoolMode>,
    /// The database the client named.
    pub database: String,
    /// The client's application_name at startup.
    pub application_name: Option<String>,
    /// The client's address as events print it (from PROXY protocol when trusted).
    pub client_addr: String,
    /// The current tenant (canonical), if any.
    pub tenant: Option<String>,
}

impl Identity {
    /// The fields stamped on this session's security events.
    pub fn subject(&self) -> Subject {
        Subject {
            session_id: self.session_id.clone(),
            user: Some(self.user.clone()),
            kind: Some(kind_name(self.kind)),
            tenant: self.tenant.clone(),
            client_addr: Some(self.client_addr.clone()),
            application_name: self.application_name.clone(),
            database: Some(self.database.clone()),
        }
    }

    /// What the tenant guard needs to know about the session.
    pub fn asker(&self) -> Asker<'_> {
        Asker {
            kind: self.kind,
            tenant: self.tenant.as_deref(),
            login: &self.login,
            allow_switch: self.allow_switch,
        }
    }

    /// The SHOW CLIENTS entry for this session.
    pub fn listing(&self, addr: SocketAddr, tls: bool, pool: PoolName) -> ClientInfo {
        ClientInfo {
            session_id: self.session_id.clone(),
            user: self.login.clone(),
            database: self.database.clone(),
            addr,
            tls,
            application_name: self.application_name.clone().unwrap_or_default(),
            connected: std::time::SystemTime::now(),
            tenant: std::sync::Mutex::new(self.tenant.clone()),
            pool,
            active: std::sync::atomic::AtomicBool::new(false),
            kill: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// A user kind as events and logs spell it.
pub fn kind_name(k: UserKind) -> &'static str {
    match k {
        UserKind::App => "app",
        UserKind::Operator => "operator",
        UserKind::Breakglass => "breakglass",
        UserKind::Admin => "admin",
    }
}
