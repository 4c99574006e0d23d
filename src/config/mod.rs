//! Configuration: TOML with `deny_unknown_fields`, validated once, then shared as `Arc<Config>`.
//!
//! Nothing here is global: every task that needs the configuration is handed the `Arc`.
//! `validate()` resolves secrets (`password_env`), parses verifiers and checks cross-field rules,
//! so that a config that loads is a config that can run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::auth::AuthMethod;
use crate::tenant_id::{validate_tenant_id, TenantFormat};
pub use crate::tls::UpstreamTls;

pub mod auth_file;
pub mod duration;
pub mod listen;
pub mod locate;
pub mod preflight;

mod defaults;
#[cfg(test)]
mod tests;
mod validate;

use defaults::*;

/// Why a configuration was refused; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path given on the command line.
        path: PathBuf,
        /// In the message and as `source()` (`cli::render_error` prints it once).
        source: std::io::Error,
    },
    /// TOML syntax or an unknown/mistyped key (serde names the key).
    #[error("{0}")]
    Parse(String),
    /// A key parsed but its value is not acceptable.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// Dotted key path, e.g. `users[2].tenant`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An error at a known line of the file (added by [`Config::from_toml`]).
    #[error("line {line}: {source}")]
    At {
        /// 1-based line in the file.
        line: usize,
        /// Kept whole, so [`ConfigError::key`] still finds the key through it.
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The dotted key this error is about, when it names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::At { source, .. } => source.key(),
            _ => None,
        }
    }

    /// Adds the line of the key this error names, when `text` has it.
    pub fn located(self, text: &str) -> ConfigError {
        match self.key().and_then(|k| locate::line_of(text, k)) {
            Some(line) => ConfigError::At {
                line,
                source: Box::new(self),
            },
            None => self,
        }
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client-facing listener, TLS and limits.
    pub server: ServerConfig,
    /// The PostgreSQL server behind the proxy and how to pool it.
    pub upstream: UpstreamConfig,
    /// How the tenant is named and validated.
    #[serde(default)]
    pub tenant: TenantConfig,
    /// What happens to probes and where security events go.
    #[serde(default)]
    pub security: SecurityConfig,
    /// The clients the proxy itself authenticates.
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

impl Config {
    /// Every user's credential (PBKDF2 for plaintext passwords: call off the runtime).
    pub fn auth_db(&self) -> Result<crate::auth::AuthDb, crate::auth::VerifierError> {
        let users = self.users.iter().map(|u| crate::auth::UserSecrets {
            name: &u.name,
            scram: u.scram.as_deref(),
            password: u.password.as_deref(),
            method: u.auth,
        });
        crate::auth::AuthDb::build(users, self.security.resolved_mock_auth_secret.as_deref())
    }
}

/// `[server]`: the client side of the proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address clients connect to (like PgBouncer's `listen_addr:listen_port`): `"*:6432"`,
    /// `":6432"`, `"host:6432"`, or a Unix socket directory or file (PgBouncer's
    /// `unix_socket_dir`: `"/var/run/tenantgate"` is `…/.s.PGSQL.6432`; see [`listen`]).
    #[serde(deserialize_with = "listen::address")]
    pub listen: listen::Listen,
    /// Permissions of the Unix socket file (PgBouncer's `unix_socket_mode`), in octal.
    #[serde(
        default = "default_socket_mode",
        deserialize_with = "listen::socket_mode"
    )]
    pub unix_socket_mode: u32,
    /// HTTP health/metrics address; off when absent so nothing is exposed by default.
    #[serde(default, deserialize_with = "listen::opt_address")]
    pub admin_listen: Option<SocketAddr>,
    /// PEM certificate chain; with `tls_key`, SSLRequest is answered with `S`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not negotiate TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// PgBouncer's `auth_file`: `"user" "SCRAM-SHA-256$…"` lines giving `[[users]]` entries
    /// their secrets (see [`auth_file`]); re-read on SIGHUP.
    pub auth_file: Option<PathBuf>,
    /// Cap on concurrent client connections (PgBouncer's `max_client_conn`); beyond it: 53300.
    #[serde(default = "default_max_client_conn")]
    pub max_client_conn: usize,
    /// Largest protocol message accepted from a client, in bytes; larger closes with 08P01.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Seconds a client may take to log in: TLS, startup packet, authentication and the tenant
    /// lookup. Counted from the end of the PROXY header, which has its own 5 s limit.
    #[serde(
        default = "default_auth_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub auth_timeout: f64,
    /// Seconds a drain (SIGTERM, the console's `SHUTDOWN WAIT_FOR_CLIENTS`, `on_drift = "refuse"`)
    /// waits for sessions to finish their transactions; the rest are then closed.
    #[serde(
        default = "default_shutdown_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub shutdown_timeout: f64,
    /// Accept PROXY protocol v2 headers from `proxy_trusted` peers (NLB / HAProxy).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Networks allowed to send a PROXY header; a header from anyone else is refused.
    #[serde(default)]
    pub proxy_trusted: Vec<ipnet::IpNet>,
    /// Log format for the proxy's own diagnostics: `text` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Seconds a client may sit idle outside a transaction before it is disconnected (FATAL
    /// 57P05; PgBouncer's `client_idle_timeout`; 0: off, the default). Reloadable.
    #[serde(default, deserialize_with = "duration::seconds")]
    pub client_idle_timeout: f64,
    /// Threads relaying sessions. 1 (the default) runs every session on one event loop, as
    /// PgBouncer does: no cross-thread wake-ups, the least CPU per transaction. 0 means one
    /// per CPU core, for machines where one core cannot keep up. Restart to change.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
}

/// Diagnostic log format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[upstream]`: the PostgreSQL server and the pool in front of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Host name or address of PostgreSQL, or the directory of its Unix socket (an absolute
    /// path, as libpq's `host=/var/run/postgresql`): then `<host>/.s.PGSQL.<port>` is used.
    pub host: String,
    /// TCP port, or, with a socket directory as `host`, the number in `.s.PGSQL.<port>`.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// The only database clients may name; anything else gets FATAL 3D000.
    pub database: String,
    /// The non-privileged role (NOSUPERUSER NOBYPASSRLS) the proxy logs in as.
    pub user: String,
    /// Its password, inline (development) ...
    pub password: Option<String>,
    /// ... or the name of an environment variable holding it.
    pub password_env: Option<String>,
    /// `transaction` (default): a server per transaction; `session`: a server per client.
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// Most upstream connections this pool opens.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PgBouncer's `max_db_connections`: most server connections open to the database, every
    /// pool (app and break-glass) and idle ones included (0: no limit). Past it a checkout
    /// waits (up to `query_wait_timeout`) while an idle connection of another pool is closed
    /// or one is released. Reloadable.
    #[serde(default)]
    pub max_db_connections: usize,
    /// PgBouncer's `max_user_connections`: most server connections the sessions of one
    /// `[[users]]` login hold at once, for every user without its own (0: no limit). Past it
    /// the user's checkouts wait their turn while other users' go ahead. Reloadable.
    #[serde(default)]
    pub max_user_connections: usize,
    /// Seconds a transaction waits for a server connection before `53300` (PgBouncer's
    /// `query_wait_timeout`; 0: no limit). Reloadable. Read through [`UpstreamConfig::pool_timeout`],
    /// which also accepts the old name.
    #[serde(default, deserialize_with = "duration::opt_seconds")]
    query_wait_timeout: Option<f64>,
    /// PgBouncer's `min_pool_size`: connections kept open while idle, and reopened after
    /// PostgreSQL restarts (0: none).
    #[serde(default)]
    pub min_pool_size: usize,
    /// PgBouncer's `reserve_pool_size`: extra connections for clients that waited
    /// `reserve_pool_timeout` (0: none).
    #[serde(default)]
    pub reserve_pool_size: usize,
    /// PgBouncer's `reserve_pool_timeout`: seconds a client waits before a reserve connection.
    #[serde(
        default = "default_reserve_pool_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub reserve_pool_timeout: f64,
    /// The old name of `query_wait_timeout`, still accepted (not both).
    #[serde(
        default,
        rename = "pool_timeout",
        deserialize_with = "duration::opt_seconds"
    )]
    pool_timeout_old_name: Option<f64>,
    /// `query_wait_timeout` (or `pool_timeout`) after validation, in seconds (0: no limit).
    #[serde(skip)]
    pub pool_timeout: f64,
    /// Seconds a query (a Query, or an extended-protocol batch up to its Sync) may run before
    /// the proxy cancels it upstream and closes the client's connection (PgBouncer's
    /// `query_timeout`; 0: off, the default). Reloadable.
    #[serde(default, deserialize_with = "duration::seconds")]
    pub query_timeout: f64,
    /// Seconds a client may sit idle inside a transaction, holding a server connection, before
    /// it is disconnected (FATAL 25P03) and the connection rolled back and pooled again
    /// (PgBouncer's `idle_transaction_timeout`; 0: off, the default). Reloadable.
    #[serde(default, deserialize_with = "duration::seconds")]
    pub idle_transaction_timeout: f64,
    /// Seconds to open one upstream connection. For the pool it bounds everything up to the
    /// server's first ReadyForQuery (DNS, TCP or Unix socket, TLS, startup, authentication); for
    /// the posture checks (tokio-postgres) only the socket connect, per address.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub connect_timeout: f64,
    /// Seconds an idle upstream connection may sit unused before it is closed (checked every 15 s,
    /// so up to 15 s more).
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub idle_timeout: f64,
    /// Seconds after which an upstream connection is retired: at its next release, or by the 15 s
    /// idle check.
    #[serde(
        default = "default_server_lifetime",
        deserialize_with = "duration::seconds"
    )]
    pub server_lifetime: f64,
    /// Cap on server-side prepared statements per upstream connection (LRU, transaction mode).
    #[serde(default = "default_max_prepared")]
    pub max_prepared_statements: usize,
    /// Cap on one client session's named prepared statements (Parse past it: 53400).
    #[serde(default = "default_max_client_prepared")]
    pub max_client_prepared_statements: usize,
    /// Cap on the bytes of one client session's prepared statement texts: bounds the proxy's
    /// memory per client.
    #[serde(default = "default_max_client_prepared_bytes")]
    pub max_client_prepared_bytes: usize,
    /// Cap on the bytes of prepared statement text all sessions hold together: a Parse past it
    /// gets 53200 before the process is at risk.
    #[serde(default = "default_max_total_prepared_bytes")]
    pub max_total_prepared_bytes: usize,
    /// TLS to PostgreSQL: `disable`, `require` (encrypt, no verification) or `verify-full`.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// CA bundle (PEM) for `verify-full`; the Mozilla roots when absent.
    pub tls_ca: Option<PathBuf>,
    /// Start even though the upstream role can bypass RLS (never the default).
    #[serde(default)]
    pub allow_privileged: bool,
    /// Optional break-glass pool for `kind = "breakglass"` users.
    pub breakglass: Option<BreakglassConfig>,
    /// The upstream password after `password`/`password_env` resolution.
    #[serde(skip)]
    pub resolved_password: Option<String>,
}

/// `[upstream.breakglass]`: credentials of a BYPASSRLS role, used only by break-glass users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakglassConfig {
    /// The privileged role, e.g. `tenant_admin`.
    pub user: String,
    /// Its password, inline ...
    pub password: Option<String>,
    /// ... or from this environment variable.
    pub password_env: Option<String>,
    /// A small pool: break-glass is rare.
    #[serde(default = "default_breakglass_pool_size")]
    pub pool_size: usize,
    /// Optional hard cap on a break-glass session's length (a duration, kept in whole seconds).
    #[serde(default, deserialize_with = "duration::opt_whole_seconds")]
    pub max_session_seconds: Option<u64>,
    /// The password after resolution.
    #[serde(skip)]
    pub resolved_password: Option<String>,
}

/// Pooling mode, as in PgBouncer.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Attach a server at a transaction's first message, release it at ReadyForQuery `I`.
    #[default]
    Transaction,
    /// Hold a server for the whole client session; reset with `DISCARD ALL` on release.
    Session,
}

/// `[tenant]`: the tenant setting and its shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The GUC RLS policies read with `current_setting(..., true)`.
    #[serde(default = "default_setting")]
    pub setting: String,
    /// `uuid` (canonical form) or `slug`.
    #[serde(default)]
    pub format: TenantFormat,
    /// The tenant column in application tables, for cross-tenant literal detection.
    #[serde(default = "default_tenant_column")]
    pub column: String,
    /// With TLS, a server name `<tenant><sni_suffix>` names the tenant.
    pub sni_suffix: Option<String>,
    /// Optional `$1`-parameterised query mapping a slug to the tenant id, run upstream.
    pub directory_query: Option<String>,
    /// Seconds a directory answer is cached.
    #[serde(
        default = "default_directory_ttl",
        deserialize_with = "duration::seconds"
    )]
    pub directory_ttl: f64,
    /// Signed tenant context (`crate::signing`): the key file (`<key id> <64 hex digits>` per
    /// line, the last signs; mode 0600). With it, every prelude also sets
    /// `tenantgate.signature`, and policies that read `tenantgate.current_tenant()` cannot be
    /// fooled by SQL that sets the tenant setting. Re-read on SIGHUP (key rotation); the path
    /// itself changes only on restart.
    pub signing_key_file: Option<PathBuf>,
    /// The keys of `signing_key_file`, read and checked by `validate`.
    #[serde(skip)]
    pub resolved_signing_keys: Option<std::sync::Arc<crate::signing::KeyRing>>,
    /// Most server connections of the app pool one tenant may hold at once (None: no cap), so
    /// one tenant's load cannot take the whole pool; its other transactions wait their turn
    /// (within `query_wait_timeout`). Reloadable.
    pub max_server_connections: Option<usize>,
    /// Most client sessions one tenant may have open at once (None: no cap); past it a login
    /// gets `53300` and a `tenant_limited` event, so one tenant cannot use up
    /// `max_client_conn` for all. Reloadable (applies to new sessions).
    pub max_client_connections: Option<usize>,
    /// Most transactions one tenant may start per second, all its sessions together (None: no
    /// limit): a token bucket per tenant; a transaction past it gets `53400` and a
    /// `tenant_limited` event, and the session goes on. Reloadable.
    pub max_transactions_per_second: Option<f64>,
    /// How many transactions a tenant may start at once above its rate (the bucket's size);
    /// one second's worth when absent. Reloadable.
    pub max_transactions_burst: Option<u32>,
    /// Tenants named in the per-tenant metrics (`/metrics`): the most active ones; the rest
    /// are summed as `tenant="other"`, so the series count stays bounded. 0: no per-tenant
    /// series.
    #[serde(default = "default_metrics_top_n")]
    pub metrics_top_n: usize,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            setting: default_setting(),
            format: TenantFormat::default(),
            column: default_tenant_column(),
            sni_suffix: None,
            directory_query: None,
            directory_ttl: default_directory_ttl(),
            signing_key_file: None,
            resolved_signing_keys: None,
            max_server_connections: None,
            max_client_connections: None,
            max_transactions_per_second: None,
            max_transactions_burst: None,
            metrics_top_n: default_metrics_top_n(),
        }
    }
}

/// `[security]`: probe handling and the event log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// `block` refuses probes with 42501; `log` forwards them and records an event.
    #[serde(default)]
    pub probe_action: ProbeAction,
    /// `stdout`, `stderr`, or the path of a JSON-lines file.
    #[serde(default = "default_event_log")]
    pub event_log: String,
    /// `DO` blocks can call set_config where no lexer sees it: refused for app users unless true.
    #[serde(default)]
    pub allow_do_blocks: bool,
    /// Seconds between re-runs of the RLS posture checks: a schema or role can drift after start.
    #[serde(
        default = "default_drift_check_interval",
        deserialize_with = "duration::seconds"
    )]
    pub drift_check_interval: f64,
    /// What a posture change for the worse does besides closing the gate: `warn` (event, 503
    /// health, new sessions refused until fixed) or `refuse` (stop the proxy).
    #[serde(default)]
    pub on_drift: OnDrift,
    /// Seconds of one event rate-limit window: per-session and per-tenant budgets reset, and
    /// the aggregate lines of what exceeded them are written, at the end of each window.
    #[serde(default = "default_event_window")]
    pub event_window: f64,
    /// Probe events one session may write line by line per window; the rest of each kind
    /// become one aggregate line with their count, so a looping client cannot flood the log.
    #[serde(default = "default_events_per_session")]
    pub events_per_session: u32,
    /// The same budget for all sessions of one tenant together (of one client address for
    /// sessions without a tenant), so opening many sessions does not multiply it.
    #[serde(default = "default_events_per_tenant")]
    pub events_per_tenant: u32,
    /// Backstop for the whole proxy per window: beyond it every probe event is aggregated by
    /// kind, bounding the log even when many tenants flood at once.
    #[serde(default = "default_events_per_window")]
    pub events_per_window: u32,
    /// Secret the mock SCRAM salts of unknown users derive from, so the same name always gets
    /// the same salt. Random per process start when absent; give every instance behind one
    /// load balancer the same secret, or the varying salts of unknown names tell them apart.
    pub mock_auth_secret: Option<String>,
    /// ... or the name of an environment variable holding it.
    pub mock_auth_secret_env: Option<String>,
    /// The secret after `mock_auth_secret`/`mock_auth_secret_env` resolution.
    #[serde(skip)]
    pub resolved_mock_auth_secret: Option<String>,
    /// Start even though the upstream role can create functions, procedures, triggers or views
    /// (TEMPORARY on the database, CREATE on a schema, owned code or tables): such code can call
    /// `set_config` at run time, where no inspection sees it. Never the default.
    #[serde(default)]
    pub allow_object_creation: bool,
    /// Serve clients while `verify`'s catalog checks fail (a table without RLS, a policy that
    /// does not read the tenant): a migration window only. By default such a posture refuses
    /// every new session with FATAL 57P03 until it is fixed.
    #[serde(default)]
    pub serve_unprotected: bool,
    /// Count unique and foreign keys that do not include the tenant column as failures (and so,
    /// unless `serve_unprotected`, refuse to serve) instead of warnings.
    #[serde(default)]
    pub require_tenant_keys: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            probe_action: ProbeAction::default(),
            event_log: default_event_log(),
            allow_do_blocks: false,
            drift_check_interval: default_drift_check_interval(),
            on_drift: OnDrift::default(),
            event_window: default_event_window(),
            events_per_session: default_events_per_session(),
            events_per_tenant: default_events_per_tenant(),
            events_per_window: default_events_per_window(),
            mock_auth_secret: None,
            mock_auth_secret_env: None,
            resolved_mock_auth_secret: None,
            allow_object_creation: false,
            serve_unprotected: false,
            require_tenant_keys: false,
        }
    }
}

/// What the drift monitor does when the posture gets worse.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Record `upstream_posture`, turn health to 503, keep serving.
    #[default]
    Warn,
    /// As `warn`, then stop accepting, drain sessions and exit non-zero.
    Refuse,
}

/// What to do with a detected probe.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeAction {
    /// Refuse the statement (42501) and record it.
    #[default]
    Block,
    /// Forward the statement and record it (migration / rollback mode).
    Log,
}

/// `[[users]]`: one client identity the proxy authenticates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The login name clients use (the part before an optional `.tenant` suffix).
    pub name: String,
    /// Plaintext password (development); enables md5 and SCRAM.
    pub password: Option<String>,
    /// A `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier (pg_authid format).
    pub scram: Option<String>,
    /// Which password exchange to ask for.
    #[serde(default)]
    pub auth: AuthMethod,
    /// `app`, `operator`, `breakglass` (or `admin` for the console).
    #[serde(default)]
    pub kind: UserKind,
    /// A fixed tenant for every session of this user.
    pub tenant: Option<String>,
    /// Tenants the client may choose from: `"*"` or a list.
    pub tenants: Option<TenantsSpec>,
    /// Whether an intercepted `SET <setting>` may switch among `tenants` (trusted backends).
    #[serde(default)]
    pub allow_switch: bool,
    /// A trusted monitoring login (`app` or `operator` only): may read the catalog views and
    /// functions that expose other sessions of the shared upstream role and activity
    /// statistics (`pg_stat_activity`, `pg_locks`, `pg_stat_user_tables`, `EXPLAIN ANALYZE` …),
    /// which every other session is refused because they show other tenants' queries and
    /// activity.
    #[serde(default)]
    pub allow_catalog_monitoring: bool,
    /// PgBouncer's per-user `pool_mode`: this user's sessions pool in this mode instead of
    /// `[upstream] pool_mode` (`app` and `operator` users).
    pub pool_mode: Option<PoolMode>,
    /// PgBouncer's per-user `pool_size`: most connections of the shared pool this user's
    /// sessions hold at once (at most the pool's own size). Reloadable.
    pub pool_size: Option<usize>,
    /// PgBouncer's per-user `max_user_connections`, overriding `[upstream]
    /// max_user_connections` (0: use that one). Reloadable.
    pub max_user_connections: Option<usize>,
}

/// The role a client plays.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    /// An application: tenant injected, probes refused.
    #[default]
    App,
    /// A human operator bound to one tenant; every statement is audited.
    Operator,
    /// A break-glass admin on the BYPASSRLS pool; audited, no tenant.
    Breakglass,
    /// The admin console (`SHOW POOLS` ...).
    Admin,
}

/// `tenants = "*"` or `tenants = ["a", "b"]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TenantsSpec {
    /// `"*"`: any well-formed tenant id.
    Any(String),
    /// An explicit allow-list.
    List(Vec<String>),
}

impl TenantsSpec {
    /// Whether `tenant` may be chosen under this spec (format checked separately).
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            TenantsSpec::Any(_) => true,
            TenantsSpec::List(list) => list.iter().any(|t| t == tenant),
        }
    }
}

/// Seconds from config as a `Duration`, refusing negatives and NaN at validation.
pub fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}
