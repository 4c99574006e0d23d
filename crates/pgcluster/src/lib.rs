//! A throwaway PostgreSQL cluster for the integration tests and `tenantgate demo`, and the
//! auto-shop schema both seed it with ([`seed`]).
//!
//! A crate of its own so that the proxy library carries none of it: `tenantgate` depends on it
//! only through its `demo` feature, the tests as a dev-dependency.
//!
//! [`PgCluster::start`] runs `initdb` into a fresh temporary directory, starts `postgres` on a
//! free `127.0.0.1` port with durability switched off (fast and disposable), and waits until it
//! accepts connections. [`PgCluster::stop`] (also run on `Drop`) shuts it down immediately and
//! removes the directory.
//!
//! No zombie servers, three ways:
//! - `Drop` stops the cluster, also while unwinding from a panic;
//! - every running cluster is recorded in a process-wide registry, so an exit hook can stop
//!   clusters held in statics, which never drop: call [`stop_all_registered`] from
//!   `libc::atexit` (the test fixture does);
//! - `start` sweeps directories left by processes that died without running either
//!   (`SIGKILL`, a test harness timeout): each directory names its owner's pid.
//!
//! `initdb`, `pg_ctl` and `postgres` refuse to run as root. As root, those run as the
//! `postgres` OS user through `setpriv` (or `runuser`), and the directory is handed to that
//! user. Client calls (`psql`, `pg_isready`) always run as the current user, over TCP, with
//! `PGPASSWORD`.
//!
//! Synchronous on purpose (std::process, std::net): usable from plain `#[test]`s, from an
//! `atexit` hook, and from `tenantgate demo` before any runtime exists.
//!
//! Directory layout:
//! ```text
//! $TMPDIR/tenantgate-pg-<random>/   0700, owned by the server's OS user
//!   owner.pid        pid of the process that started the cluster (for the stale sweep)
//!   data/            PGDATA (0700)
//!   postgres.log     server log (`pg_ctl -l`), its tail is quoted in start errors
//!   .s.PGSQL.<port>  the Unix socket (unused by us, kept out of /var/run/postgresql)
//! ```

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::distr::Alphanumeric;
use rand::RngExt;

mod dirs;
mod error;
mod find;
mod process;
mod registry;
pub mod seed;
mod server;
mod sql;
mod util;

use dirs::*;
pub use error::ClusterError;
pub use find::find_bindir;
use find::*;
use process::*;
pub use registry::stop_all_registered;
use registry::*;
use util::*;

/// What to install when no PostgreSQL server binaries are found.
pub const INSTALL_HINT: &str = "install the PostgreSQL server: `apt-get install -y postgresql` \
     (Debian/Ubuntu), `brew install postgresql@16` (macOS), `dnf install postgresql-server` \
     (Fedora/RHEL); or point TENANTGATE_PG_BINDIR at the directory holding initdb and pg_ctl";

/// Environment variable naming the directory with `initdb`/`pg_ctl`/`postgres`; checked first.
pub const BINDIR_ENV: &str = "TENANTGATE_PG_BINDIR";

/// Prefix of every cluster directory, so the stale sweep recognises its own.
const DIR_PREFIX: &str = "tenantgate-pg-";
/// File in the cluster directory holding the owning process id.
const OWNER_FILE: &str = "owner.pid";
/// The OS user the server runs as when we are root.
const SERVER_OS_USER: &str = "postgres";
/// The bootstrap superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// The only address the server listens on.
const HOST: &str = "127.0.0.1";
/// How many log lines an error quotes.
const LOG_TAIL_LINES: usize = 30;
/// Longest Unix socket path we create (`sun_path` holds 104–108 bytes).
const MAX_SOCKET_PATH_LEN: usize = 100;

/// How to start a cluster. `Default` gives a random superuser password and a free port.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Password of the `postgres` superuser, checked with SCRAM over TCP.
    pub superuser_password: String,
    /// Directory with `initdb`, `pg_ctl` and `postgres`; `None` runs [`find_bindir`].
    pub bindir: Option<PathBuf>,
    /// Where the cluster directory is created; `None` is `std::env::temp_dir()` (or `/tmp`
    /// when that path is too long for a Unix socket).
    pub base_dir: Option<PathBuf>,
    /// The TCP port; `None` picks a free one (and retries with another if it gets taken).
    pub port: Option<u16>,
    /// `max_connections`: room for the proxy's pools plus parallel tests.
    pub max_connections: u32,
    /// Further `postgresql.conf` lines as `(name, value)`, the value written verbatim (quote
    /// strings yourself: `("log_statement", "'all'")`). Later lines win.
    pub extra_settings: Vec<(String, String)>,
    /// How long `start` and `restart_fast` wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            superuser_password: random_token(24),
            bindir: None,
            base_dir: None,
            port: None,
            max_connections: 300,
            extra_settings: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// One running throwaway cluster. Stopped, and its directory removed, on [`PgCluster::stop`]
/// or `Drop`.
#[derive(Debug)]
pub struct PgCluster {
    /// Paths and how to run server-side commands; shared with the exit-hook registry.
    instance: Instance,
    /// The TCP port on 127.0.0.1 (fixed for the cluster's life, kept across restarts).
    port: u16,
    /// The superuser's password, for `psql` and for callers connecting themselves.
    superuser_password: String,
    /// The server log, quoted in errors.
    log_path: PathBuf,
    /// How long to wait for readiness after a (re)start.
    start_timeout: Duration,
}

impl PgCluster {
    /// Creates, configures and starts a cluster, and waits until it accepts connections.
    pub fn start(opts: ClusterOptions) -> Result<PgCluster, ClusterError> {
        let began = Instant::now();
        let bindir = match &opts.bindir {
            Some(dir) if has_server_binaries(dir) => dir.clone(),
            Some(dir) => {
                return Err(ClusterError::NotInstalled {
                    looked_in: format!("ClusterOptions::bindir ({})", dir.display()),
                })
            }
            None => find_bindir()?,
        };
        let run_as = RunAs::detect()?;
        let owner = match run_as {
            RunAs::CurrentUser => None,
            _ => Some(
                lookup_user(SERVER_OS_USER).ok_or_else(|| ClusterError::CannotDropRoot {
                    reason: format!("there is no `{SERVER_OS_USER}` OS user"),
                })?,
            ),
        };
        let base = base_dir(opts.base_dir.as_deref());
        fs::create_dir_all(&base).map_err(|source| ClusterError::Io {
            what: format!("creating {}", base.display()),
            source,
        })?;
        sweep_stale(&base, &bindir, &run_as);
        if owner.is_some() {
            check_traversable(&base)?;
        }
        let root = create_root(&base, owner)?;

        let instance = Instance {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            data_dir: root.join("data"),
            root,
            bindir,
            run_as,
        };
        // Registered before anything can fail, so every exit path cleans the directory up:
        // an early `?` drops `cluster`, whose `Drop` stops it.
        registry().push(instance.clone());
        let mut cluster = PgCluster {
            log_path: instance.root.join("postgres.log"),
            instance,
            port: 0,
            superuser_password: opts.superuser_password.clone(),
            start_timeout: opts.start_timeout,
        };
        cluster.initdb(owner)?;
        cluster.write_settings(&opts)?;
        cluster.start_server(&opts)?;
        cluster.wait_ready(Instant::now() + opts.start_timeout)?;
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.instance.data_dir.display(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "throwaway PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The bootstrap superuser: `postgres`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// The directory holding `initdb`, `pg_ctl`, `postgres`.
    pub fn bindir(&self) -> &Path {
        &self.instance.bindir
    }

    /// PGDATA.
    pub fn data_dir(&self) -> &Path {
        &self.instance.data_dir
    }

    /// `pg_ctl -l`'s file; start errors quote its tail.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log_path, lines)
    }

    /// `pg_ctl restart -m fast` on the same port (sessions are cut), then waits until ready.
    pub fn restart_fast(&self) -> Result<(), ClusterError> {
        let timeout = self.start_timeout.as_secs().max(1).to_string();
        let out = self.pg_ctl(&["-m", "fast", "-w", "-t", &timeout, "-s", "restart"], true)?;
        if !out.status.success() {
            return Err(self.command_error("pg_ctl restart -m fast", &out, true));
        }
        self.wait_ready(Instant::now() + self.start_timeout)
    }

    /// Stops the server (`pg_ctl stop -m immediate`, SIGKILL if that fails) and removes the
    /// cluster directory. Idempotent; never panics (it runs from `Drop`).
    pub fn stop(&mut self) {
        let mut running = registry();
        let Some(at) = running.iter().position(|i| i.id == self.instance.id) else {
            return; // already stopped, here or by `stop_all_registered`
        };
        let instance = running.swap_remove(at);
        drop(running);
        instance.shutdown();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

// A cluster is shared across test threads through a `OnceLock`.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PgCluster>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_conf("it's"), "'it''s'");
        assert_eq!(quote_conninfo(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn default_password_is_random() {
        let a = ClusterOptions::default().superuser_password;
        let b = ClusterOptions::default().superuser_password;
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn install_hint_names_every_platform() {
        for needle in [
            "apt-get install -y postgresql",
            "brew install postgresql@16",
            "dnf install postgresql-server",
        ] {
            assert!(INSTALL_HINT.contains(needle), "{needle}");
        }
    }
}
