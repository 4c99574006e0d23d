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

use crate::tenant::id::{validate_tenant_id, TenantFormat};

pub mod auth_file;
pub mod duration;
pub mod listen;
pub mod locate;
pub mod preflight;

/// Why a configuration was refused; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path given on the command line.
        path: PathBuf,
        /// The I/O failure.
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
        /// The error itself.
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
    /// Seconds a client may take from TCP accept to finishing authentication.
    #[serde(
        default = "default_auth_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub auth_timeout: f64,
    /// Seconds SIGTERM waits for in-flight transactions before closing them.
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
    /// Port of PostgreSQL.
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
    /// Seconds allowed to open and authenticate one upstream connection.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub connect_timeout: f64,
    /// Seconds an idle upstream connection may sit unused before it is closed.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "duration::seconds"
    )]
    pub idle_timeout: f64,
    /// Seconds after which an upstream connection is retired when next released.
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

/// TLS towards PostgreSQL.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS without certificate verification (like libpq's `sslmode=require`).
    Require,
    /// TLS with chain and host name verification.
    VerifyFull,
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
    /// (within `pool_timeout`). Reloadable.
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
}

/// Password exchange for a user.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (PostgreSQL's default), spelled as in pg_hba.conf.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge; needs a plaintext `password`.
    Md5,
    /// Cleartext password; only accepted over TLS.
    Password,
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

fn default_worker_threads() -> usize {
    1
}

fn default_max_client_conn() -> usize {
    10_000
}
fn default_max_message_size() -> usize {
    64 * 1024 * 1024
}
fn default_auth_timeout() -> f64 {
    10.0
}
fn default_shutdown_timeout() -> f64 {
    30.0
}
fn default_pg_port() -> u16 {
    5432
}
fn default_pool_size() -> usize {
    20
}
fn default_pool_timeout() -> f64 {
    30.0
}
fn default_socket_mode() -> u32 {
    0o777
}
fn default_metrics_top_n() -> usize {
    20
}
fn default_reserve_pool_timeout() -> f64 {
    5.0
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_idle_timeout() -> f64 {
    600.0
}
fn default_server_lifetime() -> f64 {
    3600.0
}
fn default_max_prepared() -> usize {
    200
}
fn default_max_client_prepared() -> usize {
    10_000
}
fn default_max_client_prepared_bytes() -> usize {
    16 << 20
}
fn default_max_total_prepared_bytes() -> usize {
    1 << 30
}
fn default_breakglass_pool_size() -> usize {
    2
}
fn default_setting() -> String {
    "app.tenant_id".to_owned()
}
fn default_tenant_column() -> String {
    "tenant_id".to_owned()
}
fn default_directory_ttl() -> f64 {
    60.0
}
fn default_event_log() -> String {
    "stdout".to_owned()
}
fn default_drift_check_interval() -> f64 {
    300.0
}
fn default_event_window() -> f64 {
    10.0
}
fn default_events_per_session() -> u32 {
    20
}
fn default_events_per_tenant() -> u32 {
    100
}
fn default_events_per_window() -> u32 {
    5_000
}

/// Seconds from config as a `Duration`, refusing negatives and NaN at validation.
pub fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

impl Config {
    /// Reads, parses and validates a config file (no file it names is opened: see
    /// [`Config::load_checked`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::from_toml(&Self::read(path)?)
    }

    /// What `check-config` and `serve` run: [`Config::load`], then every check `serve` would
    /// otherwise fail on later, short of connecting ([`preflight`]: TLS files parse, the event
    /// log is writable). Errors name the key and its line.
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        let text = Self::read(path)?;
        let cfg = Self::from_toml(&text)?;
        preflight::check(&cfg).map_err(|e| e.located(&text))?;
        Ok(cfg)
    }

    fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses and validates TOML text; errors carry the line of the key they name.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| locate::parse_error(text, &e))?;
        cfg.validate().map_err(|e| e.located(text))?;
        Ok(cfg)
    }

    /// Checks cross-field rules and resolves secrets; called by `load`.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.upstream.pool_timeout = resolve_query_wait_timeout(&self.upstream)?;
        let wait_key = match self.upstream.pool_timeout_old_name {
            Some(_) => "upstream.pool_timeout",
            None => "upstream.query_wait_timeout",
        };
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(invalid(
                "server.tls_cert",
                "tls_cert and tls_key must be given together",
            ));
        }
        if s.require_tls && s.tls_cert.is_none() {
            return Err(invalid(
                "server.require_tls",
                "require_tls needs tls_cert and tls_key",
            ));
        }
        if s.require_tls && matches!(s.listen, listen::Listen::Unix(_)) {
            return Err(invalid(
                "server.require_tls",
                "clients on a Unix socket never negotiate TLS (libpq does not use it there), so every one would be refused: listen on TCP for TLS",
            ));
        }
        if s.proxy_protocol && s.proxy_trusted.is_empty() {
            return Err(invalid(
                "server.proxy_trusted",
                "proxy_protocol needs the load balancers' networks, e.g. [\"10.0.0.0/8\"]",
            ));
        }
        if s.worker_threads > 1024 {
            return Err(invalid(
                "server.worker_threads",
                "must be between 0 (one per core) and 1024",
            ));
        }
        if s.max_client_conn == 0 {
            return Err(invalid("server.max_client_conn", "must be at least 1"));
        }
        if s.max_message_size < 1024 {
            return Err(invalid("server.max_message_size", "must be at least 1024"));
        }
        for (key, v) in [
            ("server.client_idle_timeout", s.client_idle_timeout),
            (wait_key, self.upstream.pool_timeout),
            ("upstream.query_timeout", self.upstream.query_timeout),
            (
                "upstream.idle_transaction_timeout",
                self.upstream.idle_transaction_timeout,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(
                    key,
                    "must be 0 (off) or a positive number of seconds",
                ));
            }
        }
        for (key, v) in [
            ("server.auth_timeout", s.auth_timeout),
            ("server.shutdown_timeout", s.shutdown_timeout),
            (
                "upstream.reserve_pool_timeout",
                self.upstream.reserve_pool_timeout,
            ),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.idle_timeout", self.upstream.idle_timeout),
            ("upstream.server_lifetime", self.upstream.server_lifetime),
            ("tenant.directory_ttl", self.tenant.directory_ttl),
            (
                "security.drift_check_interval",
                self.security.drift_check_interval,
            ),
            ("security.event_window", self.security.event_window),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(key, "must be a positive number of seconds"));
            }
        }

        self.validate_security_limits()?;

        let u = &mut self.upstream;
        if u.pool_size == 0 {
            return Err(invalid("upstream.pool_size", "must be at least 1"));
        }
        if u.min_pool_size > u.pool_size {
            return Err(invalid(
                "upstream.min_pool_size",
                format!("must not exceed pool_size ({})", u.pool_size),
            ));
        }
        for (key, value) in [
            ("upstream.host", &u.host),
            ("upstream.database", &u.database),
            ("upstream.user", &u.user),
        ] {
            if value.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if u.port == 0 {
            return Err(invalid("upstream.port", "must be between 1 and 65535"));
        }
        if u.host.starts_with('/') && u.tls != UpstreamTls::Disable {
            return Err(invalid(
                "upstream.tls",
                "a Unix-socket host (a path) is never encrypted: use tls = \"disable\", or a TCP host name for TLS",
            ));
        }
        if !u.host.starts_with('/') && u.host.contains('/') {
            return Err(invalid(
                "upstream.host",
                "a Unix-socket directory must be an absolute path, e.g. \"/var/run/postgresql\"",
            ));
        }
        u.resolved_password = resolve_secret(
            "upstream.password",
            u.password.as_deref(),
            u.password_env.as_deref(),
        )?;
        if let Some(bg) = u.breakglass.as_mut() {
            if bg.pool_size == 0 {
                return Err(invalid(
                    "upstream.breakglass.pool_size",
                    "must be at least 1",
                ));
            }
            bg.resolved_password = resolve_secret(
                "upstream.breakglass.password",
                bg.password.as_deref(),
                bg.password_env.as_deref(),
            )?;
        }

        let t = &mut self.tenant;
        if !is_guc_name(&t.setting) {
            return Err(invalid(
                "tenant.setting",
                "must be a custom setting name like `app.tenant_id`",
            ));
        }
        if t.setting
            .eq_ignore_ascii_case(crate::signing::SIGNATURE_SETTING)
        {
            return Err(invalid(
                "tenant.setting",
                "tenantgate.signature is reserved for the signature of the tenant context",
            ));
        }
        if let Some(path) = &t.signing_key_file {
            // Fail closed: signing configured but no usable key refuses the configuration.
            let keys = crate::signing::KeyRing::load(path)
                .map_err(|e| invalid("tenant.signing_key_file", e.to_string()))?;
            t.resolved_signing_keys = Some(std::sync::Arc::new(keys));
        }
        if t.column.is_empty() {
            return Err(invalid("tenant.column", "must not be empty"));
        }
        for (key, v) in [
            ("tenant.max_server_connections", t.max_server_connections),
            ("tenant.max_client_connections", t.max_client_connections),
        ] {
            if v == Some(0) {
                return Err(invalid(
                    key,
                    "must be at least 1 (leave it out for no per-tenant cap)",
                ));
            }
        }
        if let Some(rate) = t.max_transactions_per_second {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(
                    "tenant.max_transactions_per_second",
                    "must be a positive number (leave it out for no limit)",
                ));
            }
        }
        match (t.max_transactions_burst, t.max_transactions_per_second) {
            (Some(0), _) => {
                return Err(invalid(
                    "tenant.max_transactions_burst",
                    "must be at least 1",
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "tenant.max_transactions_burst",
                    "needs max_transactions_per_second",
                ))
            }
            _ => {}
        }
        if t.metrics_top_n > 1000 {
            return Err(invalid(
                "tenant.metrics_top_n",
                "must be at most 1000 (each tenant named is a set of series)",
            ));
        }
        if let Some(q) = &t.directory_query {
            if !q.contains("$1") {
                return Err(invalid(
                    "tenant.directory_query",
                    "must take the slug as parameter $1",
                ));
            }
        }

        if let Some(path) = self.server.auth_file.clone() {
            auth_file::merge(&path, &mut self.users)?;
        }
        if self.users.is_empty() {
            return Err(invalid(
                "users",
                "no [[users]] entry: no client could log in (add at least one; see config.example.toml)",
            ));
        }
        let client_tls = self.server.tls_cert.is_some();
        let mut seen = HashMap::new();
        let format = self.tenant.format;
        let has_breakglass = self.upstream.breakglass.is_some();
        for (i, user) in self.users.iter().enumerate() {
            let key = |k: &str| format!("users[{i}].{k}");
            if user.name.is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if let Some(first) = seen.insert(user.name.clone(), i) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "duplicate user `{}` (also users[{first}], the {} [[users]] entry)",
                        user.name,
                        ordinal(first + 1)
                    ),
                ));
            }
            if user.auth == AuthMethod::Password && !client_tls {
                return Err(invalid(
                    key("auth"),
                    "\"password\" (cleartext) is only accepted over TLS, and [server] has no tls_cert/tls_key: this user could never log in; use \"scram-sha-256\" or configure TLS",
                ));
            }
            match (&user.password, &user.scram) {
                (None, None) => {
                    return Err(invalid(
                        key("password"),
                        "one of password or scram is required (here or in [server] auth_file)",
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("scram"),
                        "give either password or scram, not both",
                    ))
                }
                (None, Some(v)) => {
                    crate::client::auth::parse_verifier(v)
                        .map_err(|e| invalid(key("scram"), e.to_string()))?;
                    if user.auth != AuthMethod::ScramSha256 {
                        return Err(invalid(
                            key("auth"),
                            "md5 and password need a plaintext `password`",
                        ));
                    }
                }
                (Some(_), None) => {}
            }
            if user.pool_mode.is_some() && !matches!(user.kind, UserKind::App | UserKind::Operator)
            {
                return Err(invalid(
                    key("pool_mode"),
                    "only applies to `app` and `operator` users (break-glass sessions always hold their connection; admin users have none)",
                ));
            }
            if user.tenant.is_some() && user.tenants.is_some() {
                return Err(invalid(
                    key("tenants"),
                    "give either tenant or tenants, not both",
                ));
            }
            if let Some(tenant) = &user.tenant {
                validate_tenant_id(format, tenant)
                    .map_err(|e| invalid(key("tenant"), e.to_string()))?;
            }
            match &user.tenants {
                Some(TenantsSpec::Any(s)) if s != "*" => {
                    return Err(invalid(
                        key("tenants"),
                        "must be \"*\" or a list of tenant ids",
                    ))
                }
                Some(TenantsSpec::List(list)) => {
                    if list.is_empty() {
                        return Err(invalid(key("tenants"), "the list must not be empty"));
                    }
                    for t in list {
                        validate_tenant_id(format, t)
                            .map_err(|e| invalid(key("tenants"), e.to_string()))?;
                    }
                }
                _ => {}
            }
            match user.kind {
                UserKind::Breakglass => {
                    if !has_breakglass {
                        return Err(invalid(
                            key("kind"),
                            "breakglass users need an [upstream.breakglass] section",
                        ));
                    }
                    if user.tenant.is_some() || user.tenants.is_some() {
                        return Err(invalid(key("kind"), "breakglass users have no tenant"));
                    }
                }
                UserKind::Admin => {
                    if user.tenant.is_some() || user.tenants.is_some() {
                        return Err(invalid(key("kind"), "admin users have no tenant"));
                    }
                }
                UserKind::App | UserKind::Operator => {
                    if user.tenant.is_none() && user.tenants.is_none() {
                        return Err(invalid(
                            key("tenant"),
                            "app and operator users need `tenant` or `tenants`",
                        ));
                    }
                }
            }
            if user.allow_catalog_monitoring
                && !matches!(user.kind, UserKind::App | UserKind::Operator)
            {
                return Err(invalid(
                    key("allow_catalog_monitoring"),
                    "only applies to `app` and `operator` users (others are not inspected)",
                ));
            }
            if user.allow_switch && user.tenants.is_none() {
                return Err(invalid(key("allow_switch"), "needs `tenants`"));
            }
        }
        Ok(())
    }

    /// Event budgets must allow at least one line; the mock-auth secret must be long enough
    /// not to be guessed.
    fn validate_security_limits(&mut self) -> Result<(), ConfigError> {
        let sec = &mut self.security;
        for (key, v) in [
            ("security.events_per_session", sec.events_per_session),
            ("security.events_per_tenant", sec.events_per_tenant),
            ("security.events_per_window", sec.events_per_window),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        sec.resolved_mock_auth_secret = resolve_secret(
            "security.mock_auth_secret",
            sec.mock_auth_secret.as_deref(),
            sec.mock_auth_secret_env.as_deref(),
        )?;
        if sec
            .resolved_mock_auth_secret
            .as_ref()
            .is_some_and(|s| s.len() < 16)
        {
            return Err(invalid(
                "security.mock_auth_secret",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }

    /// The configured user called `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// `query_wait_timeout`, or its old name `pool_timeout` (not both), or the default.
fn resolve_query_wait_timeout(u: &UpstreamConfig) -> Result<f64, ConfigError> {
    match (u.query_wait_timeout, u.pool_timeout_old_name) {
        (Some(_), Some(_)) => Err(invalid(
            "upstream.pool_timeout",
            "pool_timeout is the old name of query_wait_timeout: give only one of them",
        )),
        (Some(v), None) | (None, Some(v)) => Ok(v),
        (None, None) => Ok(default_pool_timeout()),
    }
}

/// `1st`, `2nd`, `3rd`, `4th` … for "the 8th [[users]] entry".
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn resolve_secret(
    key: &str,
    inline: Option<&str>,
    env: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match (inline, env) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "give either password or password_env, not both",
        )),
        (Some(p), None) => Ok(Some(p.to_owned())),
        (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
            invalid(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )
        }),
        (None, None) => Ok(None),
    }
}

/// A custom GUC name: two or more dot-separated identifier parts.
fn is_guc_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !p.as_bytes()[0].is_ascii_digit()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[users]]
name = "base"
password = "p"
tenant = "11111111-1111-1111-1111-111111111111"

[server]
listen = "127.0.0.1:6432"
[upstream]
host = "127.0.0.1"
database = "app"
user = "app_user"
password = "x"
"#;

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = Config::from_toml(BASE).unwrap();
        assert_eq!(c.upstream.pool_mode, PoolMode::Transaction);
        assert_eq!(c.tenant.setting, "app.tenant_id");
        assert_eq!(c.security.probe_action, ProbeAction::Block);
        assert_eq!(c.upstream.resolved_password.as_deref(), Some("x"));
        assert_eq!(c.security.drift_check_interval, 300.0);
        assert_eq!(c.security.on_drift, OnDrift::Warn);
        assert!(!c.upstream.allow_privileged);
        assert!(!c.security.allow_object_creation);
        assert!(!c.security.serve_unprotected);
        assert!(!c.security.require_tenant_keys);
    }

    #[test]
    fn posture_opt_outs_parse() {
        let c = Config::from_toml(&format!(
            "{BASE}\n[security]\nallow_object_creation = true\nserve_unprotected = true\nrequire_tenant_keys = true\n"
        ))
        .unwrap();
        assert!(c.security.allow_object_creation);
        assert!(c.security.serve_unprotected);
        assert!(c.security.require_tenant_keys);
    }

    #[test]
    fn drift_keys_parse_and_are_validated() {
        let c = Config::from_toml(&format!(
            "{BASE}\n[security]\ndrift_check_interval = 0.5\non_drift = \"refuse\"\n"
        ))
        .unwrap();
        assert_eq!(c.security.on_drift, OnDrift::Refuse);
        assert_eq!(c.security.drift_check_interval, 0.5);
        let err = Config::from_toml(&format!("{BASE}\n[security]\ndrift_check_interval = 0\n"))
            .unwrap_err();
        assert!(
            err.to_string().contains("security.drift_check_interval"),
            "{err}"
        );
        let err =
            Config::from_toml(&format!("{BASE}\n[security]\non_drift = \"stop\"\n")).unwrap_err();
        assert!(
            err.to_string().contains("on_drift") || err.to_string().contains("stop"),
            "{err}"
        );
    }

    #[test]
    fn worker_threads_default_to_one_event_loop_and_are_bounded() {
        assert_eq!(Config::from_toml(BASE).unwrap().server.worker_threads, 1);
        let base = BASE.replace("[server]\n", "[server]\nworker_threads = 0\n");
        assert_eq!(Config::from_toml(&base).unwrap().server.worker_threads, 0);
        let base = BASE.replace("[server]\n", "[server]\nworker_threads = 5000\n");
        let err = Config::from_toml(&base).unwrap_err();
        assert!(err.to_string().contains("server.worker_threads"), "{err}");
    }

    #[test]
    fn tenant_share_is_optional_and_at_least_one() {
        assert_eq!(
            Config::from_toml(BASE)
                .unwrap()
                .tenant
                .max_server_connections,
            None
        );
        let c =
            Config::from_toml(&format!("{BASE}\n[tenant]\nmax_server_connections = 3\n")).unwrap();
        assert_eq!(c.tenant.max_server_connections, Some(3));
        let err = Config::from_toml(&format!("{BASE}\n[tenant]\nmax_server_connections = 0\n"))
            .unwrap_err();
        assert!(
            err.to_string().contains("tenant.max_server_connections"),
            "{err}"
        );
        let err = Config::from_toml(&format!("{BASE}\n[tenant]\nmax_client_connections = 0\n"))
            .unwrap_err();
        assert!(
            err.to_string().contains("tenant.max_client_connections"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            Config::from_toml(&format!("{BASE}\n[tenant]\nsettting = \"a.b\"\n")).unwrap_err();
        assert!(err.to_string().contains("settting"), "{err}");
    }

    #[test]
    fn bad_fixed_tenant_is_refused_with_its_key() {
        let text =
            format!("{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\ntenant = \"not-a-uuid\"\n");
        let err = Config::from_toml(&text).unwrap_err();
        assert!(err.to_string().contains("users[1].tenant"), "{err}");
    }

    #[test]
    fn app_user_without_tenant_is_refused() {
        let text = format!("{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\n");
        assert!(Config::from_toml(&text).is_err());
    }

    #[test]
    fn auth_methods_are_spelled_as_in_pg_hba() {
        let text = format!(
            "{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\nauth = \"scram-sha-256\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n"
        );
        assert_eq!(
            Config::from_toml(&text).unwrap().users[1].auth,
            AuthMethod::ScramSha256
        );
    }

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn durations_are_written_as_humans_write_them() {
        let c = Config::from_toml(&BASE.replace(
            "password = \"x\"\n",
            "password = \"x\"\npool_timeout = \"30s\"\nidle_timeout = \"5m\"\nconnect_timeout = 2\nserver_lifetime = \"1h\"\n",
        ))
        .unwrap();
        assert_eq!(c.upstream.pool_timeout, 30.0);
        assert_eq!(c.upstream.idle_timeout, 300.0);
        assert_eq!(c.upstream.connect_timeout, 2.0);
        assert_eq!(c.upstream.server_lifetime, 3600.0);
        let e = err(&BASE.replace("[server]\n", "[server]\nauth_timeout = \"soon\"\n"));
        assert!(
            e.contains("server.auth_timeout") && e.contains("\"30s\""),
            "{e}"
        );
        assert!(e.starts_with("line 8:"), "{e}");
    }

    #[test]
    fn type_errors_use_words_not_rust_types() {
        let e = err(&BASE.replace("user = ", "port = \"five\"\nuser = "));
        assert!(!e.contains("u16"), "{e}");
        assert!(
            e.contains("upstream.port") && e.contains("0 to 65535"),
            "{e}"
        );
        let e = err(&BASE.replace("[server]\n", "[server]\nmax_client_conn = -1\n"));
        assert!(!e.contains("usize") && e.contains("whole number"), "{e}");
    }

    #[test]
    fn missing_section_and_empty_keys_are_named() {
        let text = BASE.split("[upstream]").next().unwrap();
        let e = err(text);
        assert!(e.contains("[upstream]") && !e.starts_with("line 1"), "{e}");
        let e = err(&BASE.replace("database = \"app\"", "database = \"\""));
        assert!(
            e.contains("`upstream.database`") && e.contains("line 11"),
            "{e}"
        );
        let e = err(&BASE.replace("host = \"127.0.0.1\"\n", ""));
        assert!(e.contains("`host`") && e.starts_with("line 9:"), "{e}");
    }

    #[test]
    fn duplicate_user_names_its_line_and_the_first_entry() {
        let e = err(&format!(
            "{BASE}\n[[users]]\nname = \"base\"\npassword = \"q\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n"
        ));
        assert!(e.contains("users[1].name") && e.contains("users[0]"), "{e}");
        assert!(e.starts_with("line 16:"), "{e}");
    }

    #[test]
    fn no_users_and_cleartext_without_tls_are_refused() {
        let text = BASE.split("[server]").nth(1).unwrap();
        let e = err(&format!("[server]{text}"));
        assert!(
            e.contains("`users`") && e.contains("no client could log in"),
            "{e}"
        );
        let e = err(&format!("users = []\n[server]{text}"));
        assert!(e.contains("no client could log in"), "{e}");
        let e = err(&BASE.replace(
            "password = \"p\"\n",
            "password = \"p\"\nauth = \"password\"\n",
        ));
        assert!(e.contains("users[0].auth") && e.contains("TLS"), "{e}");
    }

    #[test]
    fn unix_socket_upstream_is_a_path_without_tls() {
        let c = Config::from_toml(
            &BASE.replace("127.0.0.1\"\ndatabase", "/var/run/postgresql\"\ndatabase"),
        )
        .unwrap();
        assert_eq!(c.upstream.host, "/var/run/postgresql");
        let e = err(&BASE.replace(
            "host = \"127.0.0.1\"\n",
            "host = \"/var/run/postgresql\"\ntls = \"require\"\n",
        ));
        assert!(e.contains("upstream.tls") && e.contains("Unix"), "{e}");
        let c =
            Config::from_toml(&BASE.replace("listen = \"127.0.0.1:6432\"", "listen = \"/tmp\""))
                .unwrap();
        assert_eq!(c.server.listen.to_string(), "/tmp/.s.PGSQL.6432");
        assert_eq!(c.server.unix_socket_mode, 0o777);
        let e = err(&BASE.replace(
            "listen = \"127.0.0.1:6432\"",
            "listen = \"/tmp\"\nunix_socket_mode = \"999\"",
        ));
        assert!(e.contains("octal"), "{e}");
        let e = err(&BASE.replace(
            "listen = \"127.0.0.1:6432\"",
            "listen = \"/tmp\"\nrequire_tls = true\ntls_cert = \"c\"\ntls_key = \"k\"",
        ));
        assert!(
            e.contains("server.require_tls") && e.contains("Unix"),
            "{e}"
        );
        let c = Config::from_toml(&BASE.replace("127.0.0.1:6432", "*:6432")).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:6432");
    }

    #[test]
    fn guc_names() {
        assert!(is_guc_name("app.tenant_id"));
        assert!(!is_guc_name("tenant_id"));
        assert!(!is_guc_name("app.1x"));
        assert!(!is_guc_name("app..x"));
    }
}
