//! The state every session shares, and reload.
//!
//! [`Shared`] is built once at start; [`Live`] is the part a SIGHUP (or the console's RELOAD)
//! replaces whole, so a session reads one consistent snapshot of it. A reload that changes a
//! restart-only key is refused whole ([`restart_only_change`]).

pub mod cancel;
pub mod clients;
pub mod console;
pub mod limits;

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthDb;
use crate::config::{secs, Config};
use crate::events::EventSink;
use crate::pool::Pool;
use crate::tenant::directory::Directory;
use crate::tenant::guard::Policy;
use crate::verify::monitor::PostureState;
use cancel::CancelRegistry;

/// Built once at start and held by every session; what a reload replaces is in [`Live`].
pub struct Shared {
    /// The configuration the proxy started with (listen address, upstream, pool mode:
    /// settings a reload cannot change).
    pub config: Arc<Config>,
    /// What SIGHUP can change: users, tenants, probe action (the latest valid configuration).
    pub(crate) live: std::sync::RwLock<Arc<Live>>,
    /// The app pool (the NOBYPASSRLS role).
    pub pool: Arc<Pool>,
    /// The break-glass pool, when configured.
    pub breakglass: Option<Arc<Pool>>,
    /// Proxy-issued cancel keys.
    pub cancels: Arc<CancelRegistry>,
    /// Live sessions, for SHOW CLIENTS.
    pub clients: Arc<clients::ClientRegistry>,
    /// The file `serve` loaded, for SIGHUP and the console's RELOAD.
    pub config_path: std::sync::OnceLock<std::path::PathBuf>,
    /// A queue to the event writer's thread: recording never waits.
    pub events: EventSink,
    /// TLS for clients, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Slug → tenant id directory, when configured.
    pub directory: Option<Directory>,
    /// Cancelled on SIGTERM: stop accepting and drain.
    pub shutdown: CancellationToken,
    /// The RLS posture: start-up verdict, last drift check, for admin and the accept gate.
    pub posture: Arc<PostureState>,
    /// Prepared statement text held by all sessions (`max_total_prepared_bytes`).
    pub statement_budget: Arc<crate::prepared::Budget>,
    /// `client_idle_timeout`, `idle_transaction_timeout`, `query_timeout` (reloadable).
    pub timeouts: limits::Limits,
    /// `[tenant] max_transactions_per_second` and its burst (reloadable).
    pub tenant_rate: crate::pool::rate::Rate,
    /// What the admin console changed: PAUSE / SUSPEND / KILL state, a SHUTDOWN request.
    pub console: console::State,
}

/// The reloadable part of the state, swapped whole on SIGHUP.
pub struct Live {
    /// The latest valid configuration.
    pub config: Arc<Config>,
    /// Client credentials derived from it.
    pub auth: AuthDb,
    /// The tenant guard's policy derived from it.
    pub policy: Policy,
}

impl Live {
    /// Derives credentials (PBKDF2 off the runtime) and policy from a configuration.
    pub async fn build(config: Arc<Config>) -> Result<Live, crate::auth::VerifierError> {
        let cfg = config.clone();
        let auth = tokio::task::spawn_blocking(move || cfg.auth_db())
            .await
            .unwrap_or_else(|_| Ok(AuthDb::default()))?;
        let t = &config.tenant;
        let policy = Policy {
            setting: t.setting.clone(),
            column: t.column.clone(),
            format: t.format,
            probe_action: config.security.probe_action,
            allow_do_blocks: config.security.allow_do_blocks,
            catalog_monitors: config
                .users
                .iter()
                .filter(|u| u.allow_catalog_monitoring)
                .map(|u| u.name.clone())
                .collect(),
            user_names: config.users.iter().map(|u| u.name.clone()).collect(),
        };
        Ok(Live {
            config,
            auth,
            policy,
        })
    }
}

impl Shared {
    /// The current reloadable state (cheap: an `Arc` clone under an uncontended read lock).
    pub fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Applies a new configuration (SIGHUP): users, tenants, pool sizes, the per-tenant share
    /// of the pool, probe action and the event log. Settings that need a restart are reported
    /// and left as they were. An invalid file keeps the old configuration.
    pub async fn reload(&self, path: &std::path::Path) {
        let new = match Config::load(path) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(error = %e, "reload refused; keeping the previous configuration");
                return;
            }
        };
        let old = &self.config;
        if let Some(key) = restart_only_change(old, &new) {
            // Applying the rest would mix two configurations: sessions inject the setting they
            // started with while the guard would protect the new one.
            tracing::error!(key, "reload refused: this setting changes only on restart; keeping the previous configuration");
            return;
        }
        if let Err(why) = self.new_signing_key_works(&new).await {
            tracing::error!(error = %why, "reload refused; keeping the previous configuration and signing key");
            return;
        }
        let live = match Live::build(new.clone()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "reload refused; keeping the previous configuration");
                return;
            }
        };
        self.pool.resize(new.upstream.pool_size);
        self.pool.set_tenant_cap(new.tenant.max_server_connections);
        self.pool.database().configure(
            new.upstream.max_db_connections,
            crate::pool::limits::user_caps(&new),
        );
        self.pool.set_wait_timeout(secs(new.upstream.pool_timeout));
        self.timeouts.update(&new);
        self.tenant_rate.set(
            new.tenant.max_transactions_per_second,
            new.tenant.max_transactions_burst,
        );
        if let (Some(bg), Some(cfg)) = (&self.breakglass, &new.upstream.breakglass) {
            bg.resize(cfg.pool_size);
            bg.set_wait_timeout(secs(new.upstream.pool_timeout));
        }
        match self.live.write() {
            Ok(mut l) => *l = Arc::new(live),
            Err(p) => *p.into_inner() = Arc::new(live),
        }
        self.events.reopen();
        let signing_key = new
            .tenant
            .resolved_signing_keys
            .as_deref()
            .map(|k| k.current().id().to_owned());
        tracing::info!(
            users = new.users.len(),
            pool_size = new.upstream.pool_size,
            signing_key,
            "configuration reloaded"
        );
    }
}

impl Shared {
    /// Fails closed on a rotated signing key the database does not accept (a key added to the
    /// file but not yet to `tenantgate.signing_keys`, e.g. `signing install --print` not run):
    /// signing with it would make every tenant see no rows. Asks the database, as the upstream
    /// role, to verify a signature made with the new key for that backend. Nothing to do when
    /// the signing key did not change.
    async fn new_signing_key_works(&self, new: &Config) -> Result<(), String> {
        let Some(key) = new
            .tenant
            .resolved_signing_keys
            .as_deref()
            .map(crate::signing::KeyRing::current)
        else {
            return Ok(());
        };
        let old = self.live();
        let old_id = old
            .config
            .tenant
            .resolved_signing_keys
            .as_deref()
            .map(|k| k.current().id().to_owned());
        if old_id.as_deref() == Some(key.id()) {
            return Ok(());
        }
        let target = crate::verify::Target::from_upstream(&new.upstream)
            .map_err(|e| format!("cannot check signing key {}: {e}", key.id()))?;
        let session = target
            .connect()
            .await
            .map_err(|e| format!("cannot check signing key {}: {e}", key.id()))?;
        let facts =
            crate::verify::signing::gather(&session.client, &new.tenant.setting, Some(key)).await;
        session.close().await;
        match facts {
            Ok(f) if matches!(f.probe, Some((_, true, false))) => {
                tracing::info!(key = key.id(), "new signing key accepted by the database");
                Ok(())
            }
            Ok(_) => Err(format!(
                "the database does not accept signatures of the new key {} (add it to tenantgate.signing_keys first: `tenantgate signing install --key-file …`)",
                key.id()
            )),
            Err(e) => Err(format!("cannot check signing key {}: {e}", key.id())),
        }
    }
}

/// The first setting that differs between `old` and `new` and cannot change without a restart.
pub fn restart_only_change(old: &Config, new: &Config) -> Option<&'static str> {
    let checks: [(&'static str, bool); 13] = [
        ("server.listen", new.server.listen != old.server.listen),
        (
            "server.worker_threads",
            new.server.worker_threads != old.server.worker_threads,
        ),
        ("upstream.host", new.upstream.host != old.upstream.host),
        ("upstream.port", new.upstream.port != old.upstream.port),
        (
            "upstream.database",
            new.upstream.database != old.upstream.database,
        ),
        ("upstream.user", new.upstream.user != old.upstream.user),
        (
            "upstream.pool_mode",
            new.upstream.pool_mode != old.upstream.pool_mode,
        ),
        (
            "upstream.min_pool_size",
            new.upstream.min_pool_size != old.upstream.min_pool_size,
        ),
        (
            "upstream.reserve_pool_size",
            new.upstream.reserve_pool_size != old.upstream.reserve_pool_size
                || new.upstream.reserve_pool_timeout != old.upstream.reserve_pool_timeout,
        ),
        ("tenant.setting", new.tenant.setting != old.tenant.setting),
        ("tenant.column", new.tenant.column != old.tenant.column),
        ("tenant.format", new.tenant.format != old.tenant.format),
        // Whether signing is on decides what the posture checks demand of the policies.
        (
            "tenant.signing_key_file",
            new.tenant.signing_key_file != old.tenant.signing_key_file,
        ),
    ];
    checks
        .into_iter()
        .find(|(_, changed)| *changed)
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_tenant_setting_needs_a_restart() {
        let base = "[server]\nlisten = \"127.0.0.1:6432\"\n\n[upstream]\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\n\n[[users]]\nname = \"a\"\npassword = \"p\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n";
        let old = Config::from_toml(base).expect("valid");
        let same = Config::from_toml(base).expect("valid");
        assert_eq!(restart_only_change(&old, &same), None);
        let changed = Config::from_toml(&format!("{base}\n[tenant]\nsetting = \"app.other\"\n"))
            .expect("valid");
        assert_eq!(restart_only_change(&old, &changed), Some("tenant.setting"));
    }
}
