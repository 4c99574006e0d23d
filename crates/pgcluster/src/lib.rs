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
mod find;
mod process;
pub mod seed;

use dirs::*;
pub use find::find_bindir;
use find::*;
use process::*;

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

/// Why a cluster could not be found, started or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error("PostgreSQL server binaries not found (looked in: {looked_in}); {INSTALL_HINT}")]
    NotInstalled {
        /// Every place searched, in order.
        looked_in: String,
    },
    /// We are root and cannot run the server as another user.
    #[error(
        "running as root, and initdb/postgres refuse to run as root: {reason}; \
         run as a non-root user, or create the `postgres` OS user (useradd -r postgres)"
    )]
    CannotDropRoot {
        /// What is missing (the user, or both `setpriv` and `runuser`).
        reason: String,
    },
    /// A file-system or process-spawn operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, with its path.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL program (initdb, pg_ctl) exited unsuccessfully.
    #[error("{what} failed ({status}): {output}{}", log_section(.log_tail))]
    Command {
        /// The program and its purpose.
        what: String,
        /// Its exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
        /// The end of the server log, if the server was involved.
        log_tail: String,
    },
    /// `psql` failed: a connection error or an SQL error (`ON_ERROR_STOP`).
    #[error("psql as {user:?} on database {database:?} failed ({status}): {stderr}")]
    Psql {
        /// The role connected as.
        user: String,
        /// The database connected to.
        database: String,
        /// psql's exit status.
        status: String,
        /// psql's stderr, holding the server's error message.
        stderr: String,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL on {HOST}:{port} not ready after {waited:?}{}", log_section(.log_tail))]
    NotReady {
        /// The port it should listen on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The end of the server log.
        log_tail: String,
    },
    /// The cluster directory would not be reachable by the server's OS user.
    #[error(
        "{dir} is not traversable by the `{SERVER_OS_USER}` OS user; \
         choose a base directory under /tmp (ClusterOptions::base_dir or TMPDIR)"
    )]
    Unreachable {
        /// The ancestor directory lacking search permission for others.
        dir: PathBuf,
    },
}

fn log_section(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- server log (last lines) ---\n{tail}")
    }
}

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

/// What stopping a cluster needs; lives both in its `PgCluster` and in the registry.
#[derive(Debug, Clone)]
struct Instance {
    /// Registry key; unique within the process.
    id: u64,
    /// The cluster directory, removed on stop.
    root: PathBuf,
    /// PGDATA, inside `root`.
    data_dir: PathBuf,
    /// Where `pg_ctl` and friends live.
    bindir: PathBuf,
    /// Whether server-side commands need to drop root.
    run_as: RunAs,
}

/// How server-side programs (`initdb`, `pg_ctl`) are run.
#[derive(Debug, Clone)]
enum RunAs {
    /// Not root: run directly.
    CurrentUser,
    /// Root: `setpriv --reuid=postgres --regid=postgres --init-groups -- <cmd>`.
    Setpriv(PathBuf),
    /// Root without setpriv: `runuser -u postgres -- <cmd>`.
    Runuser(PathBuf),
}

/// Clusters started by this process and not yet stopped.
static RUNNING: Mutex<Vec<Instance>> = Mutex::new(Vec::new());
/// Source of `Instance::id`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Vec<Instance>> {
    // A panic elsewhere must not stop us from cleaning up: ignore poisoning.
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops every cluster this process started that is still running, and removes its directory.
///
/// Meant for a process-exit hook (`libc::atexit`): clusters kept in statics never drop.
/// Never panics; `PgCluster::stop` on an already-swept cluster is a no-op.
pub fn stop_all_registered() {
    let instances = std::mem::take(&mut *registry());
    for instance in instances {
        let _ = std::panic::catch_unwind(|| instance.shutdown());
    }
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

    /// The superuser's password.
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

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log_path, lines)
    }

    /// A libpq/tokio-postgres key=value connection string for `user` on `database`.
    pub fn conn_str(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname={} sslmode=disable",
            self.port,
            quote_conninfo(user),
            quote_conninfo(password),
            quote_conninfo(database)
        )
    }

    /// Runs `sql` (any number of statements, as a script) as the superuser over TCP with
    /// `psql -X -q -A -t -v ON_ERROR_STOP=1`, and returns stdout: unaligned rows, `|` between
    /// columns, no headers or command tags. An SQL error stops the script; the error carries
    /// psql's stderr.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        self.psql_as(SUPERUSER, &self.superuser_password, database, sql)
    }

    /// [`PgCluster::psql`] as another role (e.g. `app_user`, to see what RLS lets through).
    pub fn psql_as(
        &self,
        user: &str,
        password: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, ClusterError> {
        let conninfo = format!(
            "host={HOST} port={} user={} dbname={} sslmode=disable connect_timeout=10 \
             application_name=tenantgate-pgcluster",
            self.port,
            quote_conninfo(user),
            quote_conninfo(database)
        );
        let mut cmd = Command::new(client_tool(&self.instance.bindir, "psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(&conninfo)
        .env("PGPASSWORD", password)
        // These would change what the script sees; the conninfo overrides the rest.
        .env_remove("PGOPTIONS")
        .env_remove("PGSERVICE")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ClusterError::Io {
            what: format!("spawning {:?}", cmd.get_program()),
            source,
        })?;
        // Feed stdin from another thread: psql may fill stdout before it has read everything.
        let writer = child.stdin.take().map(|mut stdin| {
            let sql = sql.to_owned();
            std::thread::spawn(move || {
                // An early exit (ON_ERROR_STOP) closes the pipe; the exit status reports it.
                let _ = stdin.write_all(sql.as_bytes());
            })
        });
        let out = child
            .wait_with_output()
            .map_err(|source| ClusterError::Io {
                what: "waiting for psql".to_owned(),
                source,
            })?;
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ClusterError::Psql {
                user: user.to_owned(),
                database: database.to_owned(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// `CREATE DATABASE name [TEMPLATE template]`, both quoted as identifiers. Retries for a
    /// few seconds while the template is briefly in use (e.g. by autovacuum).
    pub fn create_database(&self, name: &str, template: Option<&str>) -> Result<(), ClusterError> {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
        if let Some(template) = template {
            let _ = write!(sql, " TEMPLATE {}", quote_ident(template));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.psql("postgres", &sql) {
                Err(ClusterError::Psql { stderr, .. })
                    if attempts < 10 && stderr.contains("is being accessed by other users") =>
                {
                    std::thread::sleep(Duration::from_millis(300));
                }
                other => return other.map(drop),
            }
        }
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

    /// `initdb` into `data/` with a SCRAM-protected superuser.
    fn initdb(&self, owner: Option<(u32, u32)>) -> Result<(), ClusterError> {
        let pwfile = self.instance.root.join("pwfile");
        write_private(
            &pwfile,
            format!("{}\n", self.superuser_password).as_bytes(),
            owner,
        )?;
        let mut cmd = self.instance.server_cmd("initdb");
        cmd.arg("-D")
            .arg(&self.instance.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        let out = run(&mut cmd);
        let _ = fs::remove_file(&pwfile);
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.command_error("initdb", &out, false))
        }
    }

    /// Appends our settings to `postgresql.conf` (later lines win over initdb's).
    fn write_settings(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let mut conf =
            String::from("\n# --- tenantgate throwaway cluster: fast, not durable ---\n");
        let settings: [(&str, String); 11] = [
            ("listen_addresses", quote_conf(HOST)),
            (
                "unix_socket_directories",
                quote_conf(&self.instance.root.to_string_lossy()),
            ),
            ("max_connections", opts.max_connections.to_string()),
            ("shared_buffers", "128MB".to_owned()),
            ("password_encryption", quote_conf("scram-sha-256")),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            // `pg_ctl -l` sends stderr to postgres.log; no collector needed.
            ("logging_collector", "off".to_owned()),
            ("log_min_messages", "warning".to_owned()),
            ("log_line_prefix", quote_conf("%m [%p] %q%u@%d ")),
        ];
        for (name, value) in &settings {
            let _ = writeln!(conf, "{name} = {value}");
        }
        for (name, value) in &opts.extra_settings {
            let _ = writeln!(conf, "{name} = {value}");
        }
        self.append_conf(&conf)
    }

    fn append_conf(&self, text: &str) -> Result<(), ClusterError> {
        let path = self.instance.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| ClusterError::Io {
                what: format!("appending to {}", path.display()),
                source,
            })
    }

    /// `pg_ctl start` on a free port; picks another port if the first was taken meanwhile.
    fn start_server(&mut self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let timeout = opts.start_timeout.as_secs().max(1).to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = match opts.port {
                Some(port) => port,
                None => free_port()?,
            };
            self.append_conf(&format!("port = {}\n", self.port))?;
            let log_before = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            let out = self.pg_ctl(&["-w", "-t", &timeout, "-s", "start"], true)?;
            if out.status.success() {
                return Ok(());
            }
            let new_log = fs::read(&self.log_path)
                .map(|log| {
                    String::from_utf8_lossy(&log[(log_before as usize).min(log.len())..])
                        .into_owned()
                })
                .unwrap_or_default();
            let port_taken =
                new_log.contains("could not bind") || new_log.contains("Address already in use");
            if opts.port.is_none() && port_taken && attempt < 3 {
                tracing::debug!(
                    port = self.port,
                    "port taken before the server bound it; retrying"
                );
                continue;
            }
            return Err(self.command_error("pg_ctl start", &out, true));
        }
    }

    /// Polls until the server accepts a superuser login over TCP.
    fn wait_ready(&self, deadline: Instant) -> Result<(), ClusterError> {
        let began = Instant::now();
        let pg_isready = client_tool(&self.instance.bindir, "pg_isready");
        loop {
            // pg_isready is cheap and needs no password; the psql login then proves SCRAM works.
            let accepting = Command::new(&pg_isready)
                .args([
                    "-q", "-t", "2", "-h", HOST, "-U", SUPERUSER, "-d", "postgres", "-p",
                ])
                .arg(self.port.to_string())
                .stdin(Stdio::null())
                .output()
                .map(|out| out.status.success())
                // No pg_isready: let psql decide.
                .unwrap_or(true);
            if accepting {
                match self.psql("postgres", "SELECT 1") {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(ClusterError::NotReady {
                            port: self.port,
                            waited: began.elapsed(),
                            log_tail: format!(
                                "{}\n(last attempt: {e})",
                                self.log_tail(LOG_TAIL_LINES)
                            ),
                        })
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    port: self.port,
                    waited: began.elapsed(),
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pg_ctl -D <data> [-l <log>] <args>` as the server's OS user.
    fn pg_ctl(&self, args: &[&str], with_log: bool) -> Result<Output, ClusterError> {
        let mut cmd = self.instance.server_cmd("pg_ctl");
        cmd.arg("-D").arg(&self.instance.data_dir);
        if with_log {
            cmd.arg("-l").arg(&self.log_path);
        }
        cmd.args(args);
        run(&mut cmd)
    }

    fn command_error(&self, what: &str, out: &Output, with_log: bool) -> ClusterError {
        ClusterError::Command {
            what: what.to_owned(),
            status: out.status.to_string(),
            output: combined_output(out),
            log_tail: if with_log {
                self.log_tail(LOG_TAIL_LINES)
            } else {
                String::new()
            },
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Instance {
    /// A command for a server-side program, dropping root when needed; runs in the cluster
    /// directory so a dropped-privilege child never starts in an unreadable cwd (/root).
    fn server_cmd(&self, program: &str) -> Command {
        let mut cmd = self.run_as.command(&self.bindir.join(program));
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// Stops the server if it runs, then removes the directory. Best effort, logs failures.
    fn shutdown(&self) {
        let pidfile = self.data_dir.join("postmaster.pid");
        if pidfile.exists() {
            let stopped = run(self
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", "10", "-s", "stop"]));
            match stopped {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    tracing::warn!(output = %combined_output(&out), "pg_ctl stop failed; killing the postmaster");
                    kill_postmaster(&pidfile, &self.data_dir);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pg_ctl stop failed; killing the postmaster");
                    kill_postmaster(&pidfile, &self.data_dir);
                }
            }
        }
        match fs::remove_dir_all(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.root.display(), error = %e, "could not remove cluster directory")
            }
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| ClusterError::Io {
            what: "finding a free port on 127.0.0.1".to_owned(),
            source,
        })
}

fn run(cmd: &mut Command) -> Result<Output, ClusterError> {
    cmd.output().map_err(|source| ClusterError::Io {
        what: format!("running {:?}", cmd.get_program()),
        source,
    })
}

fn combined_output(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr.trim());
    }
    text
}

fn tail_of(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `"name"` with embedded quotes doubled: any string is a valid identifier this way.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `postgresql.conf` string value.
fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A libpq conninfo value: single-quoted, `\` and `'` backslash-escaped.
fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
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
