//! `tenantgate demo`: a throwaway PostgreSQL holding the auto-shop schema, a proxy in front of
//! it, and a narrated walk-through of what the proxy guarantees.
//!
//! ```text
//!  prepare (blocking)            proxy (async)                 walk-through (tokio-postgres)
//!  initdb ─▶ autoshop ◀─ schema  Config::from_toml ─▶ Proxy   acme/globex ─▶ refusal ─▶ chooser
//!  temp dir (config, events)                                   tamper ─▶ operator ─▶ break-glass
//! ```
//!
//! Everything it creates lives in two temporary directories (the cluster's and the demo's own,
//! holding the generated config and the JSON-lines event log), removed on every exit path:
//! normal return, a failed step, Ctrl-C / SIGTERM / SIGHUP (caught for the whole run), and
//! panics (`Drop`). An `atexit` hook stops any cluster still registered as a last resort.
//!
//! `--non-interactive` runs the walk-through and exits 0 only if every check held; the default
//! interactive mode then keeps everything running and prints ready-to-paste `psql` lines.
//!
//! The demo runs in signed mode ([`signed`]): the policies read `tenantgate.current_tenant()`,
//! and one step forges a tenant where the inspector only logs it, to show it reads nothing.

use std::fmt::Display;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::config::Config;
use crate::server::Proxy;
use tenantgate_pgcluster::seed::{SeedTenant, ACME, GLOBEX, SCHEMA_SQL, TENANTS};
use tenantgate_pgcluster::{self as pgcluster, ClusterError, ClusterOptions, PgCluster};

mod signed;
mod walk;

use walk::*;

/// The demo database: the only one the proxy lets clients name.
pub const DATABASE: &str = "autoshop";

/// The non-privileged role the schema creates (NOBYPASSRLS); the app pool logs in as it.
const APP_ROLE: (&str, &str) = ("app_user", "app_password");
/// The BYPASSRLS role the schema creates; only the break-glass pool logs in as it.
const ADMIN_ROLE: (&str, &str) = ("tenant_admin", "admin_password");
/// The longest a single walk-through step may take before it counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the event writer to flush an expected event.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// How a demo user gets (or does not get) a tenant.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// `tenant = "<id>"`: every session is that tenant.
    Fixed(SeedTenant),
    /// `tenants = "*"`: the client names one as `user.<tenant>`.
    Chooser,
    /// `kind = "operator"`, `tenants = "*"`: a human, every statement audited.
    Operator,
    /// `kind = "breakglass"`: the BYPASSRLS pool, no tenant, audited.
    Breakglass,
    /// `kind = "admin"`: the console on the virtual database `tenantgate`, no data.
    Admin,
}

/// One proxy user of the demo, with a development password shown to the person watching.
#[derive(Debug, Clone, Copy)]
struct DemoUser {
    name: &'static str,
    /// Its password (printed in the `psql` lines: this is a throwaway demo).
    password: &'static str,
    access: Access,
}

const ACME_APP: DemoUser = DemoUser {
    name: "acme_app",
    password: "acme-demo-pw",
    access: Access::Fixed(ACME),
};
const GLOBEX_APP: DemoUser = DemoUser {
    name: "globex_app",
    password: "globex-demo-pw",
    access: Access::Fixed(GLOBEX),
};
const SHARED_APP: DemoUser = DemoUser {
    name: "shared_app",
    password: "shared-demo-pw",
    access: Access::Chooser,
};
const ALICE: DemoUser = DemoUser {
    name: "alice",
    password: "alice-demo-pw",
    access: Access::Operator,
};
const ROOT_ADMIN: DemoUser = DemoUser {
    name: "root_admin",
    password: "root-demo-pw",
    access: Access::Breakglass,
};
/// Named as in config.example.toml and the README's console example.
const PGADMIN: DemoUser = DemoUser {
    name: "pgadmin",
    password: "pgadmin-demo-pw",
    access: Access::Admin,
};
const USERS: [DemoUser; 6] = [ACME_APP, GLOBEX_APP, SHARED_APP, ALICE, ROOT_ADMIN, PGADMIN];

impl DemoUser {
    /// Its `[[users]]` table.
    fn toml(&self) -> String {
        let rule = match self.access {
            Access::Fixed(t) => format!("tenant = \"{}\"", t.id),
            Access::Chooser => "tenants = \"*\"".to_owned(),
            Access::Operator => "kind = \"operator\"\ntenants = \"*\"".to_owned(),
            Access::Breakglass => "kind = \"breakglass\"".to_owned(),
            Access::Admin => "kind = \"admin\"".to_owned(),
        };
        format!(
            "[[users]]\nname = \"{}\"\npassword = \"{}\"\n{rule}\n",
            self.name, self.password
        )
    }

    /// The login to paste: choosers and operators name a tenant as a suffix.
    fn example_login(&self) -> String {
        match self.access {
            Access::Chooser => format!("{}.{}", self.name, GLOBEX.id),
            Access::Operator => format!("{}.{}", self.name, ACME.id),
            Access::Fixed(_) | Access::Breakglass | Access::Admin => self.name.to_owned(),
        }
    }

    /// What the person watching should expect from this login.
    fn describe(&self) -> String {
        match self.access {
            Access::Fixed(t) => format!("app, fixed tenant {}", t.slug),
            Access::Chooser => format!(
                "app, any tenant as `{}.<tenant>` (here globex; without a suffix: refused)",
                self.name
            ),
            Access::Operator => "operator, tenant acme; every statement is logged".to_owned(),
            Access::Breakglass => {
                "break-glass on the BYPASSRLS role: all tenants, audited".to_owned()
            }
            Access::Admin => format!(
                "admin console on database `{}`: SHOW POOLS, SHOW CLIENTS, SHOW STATS …",
                crate::admin::console::DATABASE
            ),
        }
    }

    /// The database this user connects to.
    fn database(&self) -> &'static str {
        match self.access {
            Access::Admin => crate::admin::console::DATABASE,
            _ => DATABASE,
        }
    }
}

/// Options of `tenantgate demo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoOptions {
    /// Run the walk-through and exit instead of waiting for Ctrl-C.
    pub non_interactive: bool,
    /// Proxy port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

/// Runs the demo; returns the process exit code (0: every check held; 1: a check failed or
/// PostgreSQL is missing; 130/143: interrupted).
pub fn run(opts: DemoOptions) -> anyhow::Result<i32> {
    if std::env::var_os("RUST_LOG").is_some() {
        crate::telemetry::init(crate::config::LogFormat::Text);
    }
    install_exit_hook();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let code = rt.block_on(run_async(opts));
    // Sessions still running end with the runtime, before the process exits.
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn run_async(opts: DemoOptions) -> anyhow::Result<i32> {
    // Caught from here on, so an interrupt during initdb still cleans up.
    let mut signals = Interrupts::new().context("installing signal handlers")?;
    let mut setup = tokio::task::spawn_blocking(prepare);
    let workspace = tokio::select! {
        done = &mut setup => match done.context("the setup task failed")? {
            Ok(ws) => ws,
            Err(e) => return Ok(report_setup_error(&e)),
        },
        sig = signals.recv() => {
            println!("\n{sig}: interrupted during setup; cleaning up");
            // Wait for the setup to finish or fail; dropping its result removes everything.
            if let Ok(Ok(ws)) = setup.await {
                cleanup(ws).await;
            }
            return Ok(sig.exit_code());
        }
    };
    let outcome = serve(&workspace, opts, &mut signals).await;
    cleanup(workspace).await;
    outcome
}

/// Starts the proxy on the workspace, walks through, then waits (interactive) and stops.
async fn serve(ws: &Workspace, opts: DemoOptions, signals: &mut Interrupts) -> anyhow::Result<i32> {
    let config_text = config_toml(ws, opts.port);
    let config_path = ws.dir.path().join("tenantgate.toml");
    write_private(&config_path, &config_text)?;
    let config =
        Arc::new(Config::from_toml(&config_text).context("the generated demo config is invalid")?);
    let proxy = Proxy::start(config.clone())
        .await
        .context("starting the proxy")?;
    let port = proxy.addr.port();
    println!(
        "tenantgate listening on 127.0.0.1:{port} (config: {})",
        config_path.display()
    );
    if let Some(admin) = proxy.admin_addr {
        println!("Admin endpoints (HTTP, [server] admin_listen):");
        for path in [
            "/health/live",
            "/health/ready",
            "/health/tenant-security",
            "/metrics",
        ] {
            println!("  curl http://{admin}{path}");
        }
    }
    println!(
        "Admin console (kind = \"admin\"):\n  PGPASSWORD={} psql \"host=127.0.0.1 port={port} user={} dbname={} sslmode=disable\" -c \"SHOW POOLS\"",
        PGADMIN.password,
        PGADMIN.name,
        PGADMIN.database()
    );

    let mut walk = Walk::new(port, config, ws.events_path());
    let interrupted = tokio::select! {
        () = walk.run() => None,
        sig = signals.recv() => Some(sig),
    };
    let code = match interrupted {
        Some(sig) => {
            println!("\n{sig}: interrupted; cleaning up");
            sig.exit_code()
        }
        None => {
            let passed = walk.summary();
            if opts.non_interactive {
                i32::from(!passed)
            } else {
                print_connect_help(ws, port);
                let sig = signals.recv().await;
                println!("\n{sig}: stopping the demo; cleaning up");
                i32::from(!passed)
            }
        }
    };
    proxy.shutdown(Duration::from_secs(2)).await;
    Ok(code)
}

/// What the demo created: removed on drop (cluster first, then the demo directory).
struct Workspace {
    /// The throwaway PostgreSQL holding `autoshop`.
    cluster: PgCluster,
    /// The demo's own directory: generated config, event log and signing key file.
    dir: TempDir,
    /// The signing key file (`[tenant] signing_key_file`).
    keys: PathBuf,
}

impl Workspace {
    fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }
}

/// A directory removed (recursively) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "tenantgate-demo-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Blocking setup: cluster, database, schema, demo directory.
fn prepare() -> anyhow::Result<Workspace> {
    println!("Starting a throwaway PostgreSQL cluster (initdb into a temporary directory) ...");
    let cluster = PgCluster::start(ClusterOptions::default())?;
    let version = cluster
        .psql("postgres", "SHOW server_version")
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    println!(
        "PostgreSQL {version} running on 127.0.0.1:{} (data: {})",
        cluster.port(),
        cluster.data_dir().display()
    );
    cluster
        .create_database(DATABASE, None)
        .with_context(|| format!("creating database {DATABASE}"))?;
    cluster
        .psql(DATABASE, SCHEMA_SQL)
        .context("loading the auto-shop schema")?;
    println!(
        "Loaded the auto-shop schema into `{DATABASE}`: tenants acme/globex/initech/umbrella, \
         forced RLS on every tenant table, app_user NOBYPASSRLS, tenant_admin BYPASSRLS"
    );
    let dir = TempDir::create()?;
    let keys = signed::install(&cluster, dir.path())?;
    Ok(Workspace { cluster, dir, keys })
}

/// Explains a setup failure; the exit code is 1.
fn report_setup_error(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<ClusterError>() {
        Some(ClusterError::NotInstalled { looked_in }) => {
            eprintln!(
                "tenantgate demo needs a local PostgreSQL server to run against, and none was \
                 found (looked in: {looked_in})."
            );
            eprintln!("{}", pgcluster::INSTALL_HINT);
        }
        _ => eprintln!("tenantgate demo: setup failed: {e:#}"),
    }
    1
}

/// Stops the cluster and removes both directories, off the async threads (`pg_ctl` blocks).
async fn cleanup(ws: Workspace) {
    let dirs = format!(
        "{} and {}",
        ws.cluster
            .data_dir()
            .parent()
            .unwrap_or(Path::new("?"))
            .display(),
        ws.dir.path().display()
    );
    let _ = tokio::task::spawn_blocking(move || drop(ws)).await;
    println!("Cleaned up: PostgreSQL stopped; removed {dirs}.");
}

/// The proxy configuration for the workspace (TOML text, as an operator would write it).
fn config_toml(ws: &Workspace, port: u16) -> String {
    let events = toml::Value::String(ws.events_path().display().to_string());
    let keys = toml::Value::String(ws.keys.display().to_string());
    let mut text = format!(
        "# Generated by `tenantgate demo`; removed when the demo stops.\n\
         [server]\n\
         listen = \"127.0.0.1:{port}\"\n\
         admin_listen = \"127.0.0.1:0\"\n\
         shutdown_timeout = 2\n\
         \n\
         [upstream]\n\
         host = \"127.0.0.1\"\n\
         port = {pg_port}\n\
         database = \"{DATABASE}\"\n\
         user = \"{app}\"\n\
         password = \"{app_pw}\"\n\
         pool_size = 4\n\
         \n\
         [upstream.breakglass]\n\
         user = \"{admin}\"\n\
         password = \"{admin_pw}\"\n\
         \n\
         [security]\n\
         event_log = {events}\n\
         \n\
         [tenant]\n\
         signing_key_file = {keys}\n\
         \n",
        pg_port = ws.cluster.port(),
        app = APP_ROLE.0,
        app_pw = APP_ROLE.1,
        admin = ADMIN_ROLE.0,
        admin_pw = ADMIN_ROLE.1,
    );
    for user in USERS {
        text.push_str(&user.toml());
        text.push('\n');
    }
    text
}

/// Writes `text` to a new 0600 file (the config carries passwords).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// Interactive mode: how to connect and what to try.
fn print_connect_help(ws: &Workspace, port: u16) {
    println!();
    println!("The demo keeps running. Connect through tenantgate with psql (paste a line):");
    for user in USERS {
        println!();
        println!("  # {}: {}", user.name, user.describe());
        println!(
            "  PGPASSWORD={} psql \"host=127.0.0.1 port={port} user={} dbname={} sslmode=disable\"",
            user.password,
            user.example_login(),
            user.database()
        );
    }
    println!();
    println!("Things to try as acme_app:");
    println!("  select name, current_setting('app.tenant_id') from customers;");
    println!(
        "  set app.tenant_id = '{}';      -- refused (42501)",
        GLOBEX.id
    );
    println!(
        "  set role postgres;                                               -- refused (42501)"
    );
    println!();
    println!(
        "Security events (JSON lines):  tail -f {}",
        ws.events_path().display()
    );
    println!(
        "PostgreSQL directly, bypassing the proxy (superuser):\n  PGPASSWORD={} psql \"host=127.0.0.1 port={} user={} dbname={DATABASE} sslmode=disable\"",
        ws.cluster.superuser_password(),
        ws.cluster.port(),
        ws.cluster.superuser()
    );
    println!(
        "Check the database's RLS posture as the proxy's role (the walk-through's step; the\n\
         `tenantgate` binary is target/release/tenantgate, or on PATH after `cargo install --path .`):\n  {}",
        verify_command(ws.cluster.port(), Some(&ws.keys))
    );
    println!();
    println!("Press Ctrl-C to stop; the cluster and every file the demo created are removed.");
}

/// The signals that end the demo, caught for its whole life so cleanup always runs.
struct Interrupts {
    /// Ctrl-C.
    int: Signal,
    /// `kill`, `docker stop`, systemd.
    term: Signal,
    /// The terminal went away.
    hup: Signal,
}

/// Which signal arrived.
#[derive(Debug, Clone, Copy)]
enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    /// The shell convention: 128 + signal number.
    fn exit_code(self) -> i32 {
        128 + match self {
            Interrupt::Int => libc::SIGINT,
            Interrupt::Term => libc::SIGTERM,
            Interrupt::Hup => libc::SIGHUP,
        }
    }
}

impl Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
            Interrupt::Hup => "SIGHUP",
        })
    }
}

impl Interrupts {
    fn new() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> Interrupt {
        tokio::select! {
            _ = self.int.recv() => Interrupt::Int,
            _ = self.term.recv() => Interrupt::Term,
            _ = self.hup.recv() => Interrupt::Hup,
        }
    }
}

/// Last resort: stop clusters still registered when the process exits some other way.
fn install_exit_hook() {
    extern "C" fn stop_clusters() {
        pgcluster::stop_all_registered();
    }
    // SAFETY: atexit(3) only stores the function pointer; the hook never unwinds (it catches
    // panics itself) and is idempotent with the normal `Drop` path.
    unsafe {
        libc::atexit(stop_clusters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_tables_parse_as_part_of_a_config() {
        let mut text = String::from(
            "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nhost = \"h\"\ndatabase = \"d\"\n\
             user = \"u\"\npassword = \"p\"\n[upstream.breakglass]\nuser = \"a\"\npassword = \"b\"\n",
        );
        for u in USERS {
            text.push_str(&u.toml());
        }
        let cfg = Config::from_toml(&text).unwrap();
        assert_eq!(cfg.users.len(), USERS.len());
    }
}
