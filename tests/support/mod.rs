//! Starting tenantgate in-process against the test cluster, and talking to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tenantgate::config::Config;
use tenantgate::server::Proxy;
use tokio_postgres::{Client, NoTls};

use crate::common;

pub mod raw;

/// Passwords of the proxy's own test users.
pub const PW: &str = "proxy_pw";

/// Knobs for a test proxy.
#[derive(Clone)]
pub struct Opts {
    pub pool_size: usize,
    pub pool_mode: &'static str,
    pub pool_timeout: f64,
    pub probe_action: &'static str,
    /// Extra TOML appended (more [[users]], [tenant] keys ...).
    pub extra: String,
    /// Extra keys for [server].
    pub server_extra: String,
    /// Extra keys for [upstream].
    pub upstream_extra: String,
    /// Extra keys for [security] (e.g. a test that needs a weaker posture says so here).
    pub security_extra: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            pool_size: 4,
            pool_mode: "transaction",
            pool_timeout: 10.0,
            probe_action: "block",
            extra: String::new(),
            server_extra: String::new(),
            upstream_extra: String::new(),
            security_extra: String::new(),
        }
    }
}

impl Opts {
    /// With the admin-console login [`ADMIN_USER`], which [`TestProxy::console`] uses.
    pub fn with_admin(mut self) -> Opts {
        self.extra.push_str(&format!(
            "\n[[users]]\nname = \"{ADMIN_USER}\"\npassword = \"{PW}\"\nkind = \"admin\"\n"
        ));
        self
    }

    /// With the admin HTTP listener (health, metrics) on a free port:
    /// [`TestProxy::admin_http`].
    pub fn with_admin_http(mut self) -> Opts {
        self.server_extra
            .push_str("\nadmin_listen = \"127.0.0.1:0\"\n");
        self
    }

    /// With a break-glass pool of one connection as `tenant_admin` (BYPASSRLS) and its login
    /// `root_admin`. The pool is a table of its own appended to `upstream_extra`: keys meant for
    /// `[upstream]` itself go in before this is called.
    pub fn with_breakglass(mut self) -> Opts {
        self.upstream_extra.push_str(&format!(
            "\n[upstream.breakglass]\nuser = \"{}\"\npassword = \"{}\"\npool_size = 1\n",
            common::TENANT_ADMIN,
            common::TENANT_ADMIN_PASSWORD
        ));
        self.extra.push_str(&format!(
            "\n[[users]]\nname = \"root_admin\"\npassword = \"{PW}\"\nkind = \"breakglass\"\n"
        ));
        self
    }
}

/// The admin-console login of [`Opts::with_admin`].
pub const ADMIN_USER: &str = "tgadmin";

/// A running proxy on its own fresh database.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub db: String,
    pub events_path: PathBuf,
    pub proxy: Option<Proxy>,
}

static N: AtomicU64 = AtomicU64::new(0);

/// A local port nothing listens on (bound, then released): for a child proxy or an unreachable
/// upstream.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The standard users: a fixed tenant per seeded tenant (`<slug>_app`), a chooser
/// (`shared_app`, tenants = "*"), an operator (`alice`), a list-restricted user.
pub fn users_toml() -> String {
    let mut s = String::new();
    for t in common::TENANTS {
        s.push_str(&format!(
            "[[users]]\nname = \"{}_app\"\npassword = \"{PW}\"\ntenant = \"{}\"\n\n",
            t.slug, t.id
        ));
    }
    s.push_str(&format!(
        "[[users]]\nname = \"shared_app\"\npassword = \"{PW}\"\ntenants = \"*\"\n\n"
    ));
    s.push_str(&format!(
        "[[users]]\nname = \"alice\"\npassword = \"{PW}\"\nkind = \"operator\"\ntenants = \"*\"\n\n"
    ));
    s.push_str(&format!(
        "[[users]]\nname = \"md5_app\"\npassword = \"{PW}\"\nauth = \"md5\"\ntenant = \"{}\"\n\n",
        common::ACME.id
    ));
    s
}

/// A trusted monitoring login, `monitor_app` (ACME), for `Opts::extra`: may read
/// `pg_stat_activity`, `pg_stat_ssl` and statistics, which app sessions are refused. Kept out
/// of `users_toml` so every other test's proxy derives one verifier less at start.
pub fn monitor_user_toml() -> String {
    format!(
        "[[users]]\nname = \"monitor_app\"\npassword = \"{PW}\"\ntenant = \"{}\"\nallow_catalog_monitoring = true\n\n",
        common::ACME.id
    )
}

/// Builds the TOML config for a proxy on `db`.
pub fn config_toml(db: &str, events: &std::path::Path, o: &Opts) -> String {
    let c = common::cluster();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = 2
{server_extra}

[upstream]
host = "127.0.0.1"
port = {port}
database = "{db}"
user = "{user}"
password = "{pw}"
pool_mode = "{mode}"
pool_size = {size}
pool_timeout = {pool_timeout}
{upstream_extra}

[security]
probe_action = "{probe}"
event_log = "{events}"
{security_extra}

{users}
{extra}
"#,
        server_extra = o.server_extra,
        port = c.port(),
        user = common::APP_USER,
        pw = common::APP_PASSWORD,
        mode = o.pool_mode,
        size = o.pool_size,
        pool_timeout = o.pool_timeout,
        upstream_extra = o.upstream_extra,
        probe = o.probe_action,
        events = events.display(),
        security_extra = o.security_extra,
        users = users_toml(),
        extra = o.extra,
    )
}

/// Starts a proxy on a fresh database.
pub async fn start(o: Opts) -> TestProxy {
    let db = common::fresh_database("tg");
    start_on(db, o).await
}

/// Starts a proxy on an existing database.
pub async fn start_on(db: String, o: Opts) -> TestProxy {
    start_edited(db, &o, |text| text)
        .await
        .unwrap_or_else(|e| panic!("proxy starts: {e}"))
}

/// Starts a proxy on `db` from [`config_toml`]'s text for `o` as `edit` rewrites it (another
/// upstream host or role, a listen path): for what the knobs of [`Opts`] do not reach. The
/// error is the proxy's own, for a test of a start that must fail.
pub async fn start_edited(
    db: String,
    o: &Opts,
    edit: impl FnOnce(String) -> String,
) -> Result<TestProxy, String> {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let events_path = std::env::temp_dir().join(format!(
        "tenantgate-events-{}-{n}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&events_path);
    let text = edit(config_toml(&db, &events_path, o));
    let cfg =
        Config::from_toml(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    match Proxy::start(Arc::new(cfg)).await {
        Ok(proxy) => Ok(TestProxy {
            addr: proxy.addr,
            db,
            events_path,
            proxy: Some(proxy),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&events_path);
            Err(e.to_string())
        }
    }
}

/// Files and directories a test created that must outlive a function (a certificate read at
/// proxy start, a script pgbench reads): removed when the test binary exits, pass or fail.
pub fn remove_at_exit(path: impl Into<PathBuf>) {
    static PATHS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    static HOOK: std::sync::Once = std::sync::Once::new();
    extern "C" fn remove_all() {
        let _ = std::panic::catch_unwind(|| {
            let paths = match PATHS.lock() {
                Ok(p) => p.clone(),
                Err(p) => p.into_inner().clone(),
            };
            for p in paths {
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        });
    }
    HOOK.call_once(|| {
        // SAFETY: `remove_all` is a plain `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(remove_all) };
    });
    match PATHS.lock() {
        Ok(mut p) => p.push(path.into()),
        Err(p) => p.into_inner().push(path.into()),
    }
}

/// Every complete line of an event log is a documented event: a known name, an action that
/// event is written with, the common fields, and no field the schema does not list
/// (`EventKind::actions`, `EventKind::optional_fields`, docs/security-events.md).
pub fn check_event_schema(path: &std::path::Path) {
    use tenantgate::events::{ALL_KINDS, COMMON_FIELDS};
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("event line is not JSON ({e}): {line}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        let name = v["event"].as_str().unwrap_or_default();
        let kind = ALL_KINDS
            .iter()
            .find(|k| k.as_str() == name)
            .unwrap_or_else(|| panic!("undocumented event {name:?}: {line}"));
        let action = v["action"].as_str().unwrap_or_default();
        assert!(
            kind.actions().iter().any(|a| serde_json::to_value(a)
                .ok()
                .as_ref()
                .and_then(|x| x.as_str())
                == Some(action)),
            "{name} written with undocumented action {action:?}: {line}"
        );
        for f in COMMON_FIELDS {
            assert!(obj.contains_key(f), "{name} lacks common field {f}: {line}");
        }
        for k in obj.keys() {
            assert!(
                COMMON_FIELDS.contains(&k.as_str()) || kind.optional_fields().contains(&k.as_str()),
                "{name} carries undocumented field {k}: {line}"
            );
        }
    }
}

/// Checks the events written (unless the test already failed) and removes the log, so no
/// test leaves `tenantgate-events-*.jsonl` behind.
impl Drop for TestProxy {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            check_event_schema(&self.events_path);
        }
        let _ = std::fs::remove_file(&self.events_path);
    }
}

impl TestProxy {
    /// The admin HTTP listener's address ([`Opts::with_admin_http`]).
    pub fn admin_http(&self) -> SocketAddr {
        self.proxy
            .as_ref()
            .and_then(|x| x.admin_addr)
            .expect("admin listener bound")
    }

    /// The running proxy's shared state (pools, console, posture).
    pub fn shared(&self) -> &Arc<tenantgate::shared::Shared> {
        &self.proxy.as_ref().expect("proxy running").shared
    }

    /// Waits until no server connection of the app pool is checked out: every session that
    /// ended has had its connection reset and pooled, or closed. What a test that drops a
    /// client and then connects the next one waits for.
    pub async fn released(&self) {
        let pool = &self.shared().pool;
        common::wait_until("every server connection released", || {
            pool.stats.active.load(Ordering::Relaxed) == 0
        })
        .await;
    }

    /// Checkouts queued in the app pool, waiting for a connection.
    pub fn waiting(&self) -> usize {
        self.shared().pool.stats.waiting.load(Ordering::Relaxed)
    }

    /// Waits until `n` checkouts queue in the app pool (PAUSE, KILL or a full pool hold them).
    pub async fn queued(&self, n: usize) {
        common::wait_until(&format!("{n} checkout(s) queued in the pool"), || {
            self.waiting() == n
        })
        .await;
    }

    /// A libpq key=value connection string through the proxy.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={} sslmode=disable",
            self.addr.port(),
            self.db
        )
    }

    /// Connects with tokio-postgres through the proxy.
    pub async fn connect(&self, user: &str) -> Client {
        self.try_connect(user, PW)
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    /// Connects, returning the error.
    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(&self.url(user, password), NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A raw protocol client logged in as `user` through the proxy.
    pub async fn raw(&self, user: &str) -> raw::Raw {
        raw::Raw::connect(self.addr.port(), user, PW, &self.db).await
    }

    /// Runs psql through the proxy with extra arguments.
    pub fn psql(&self, user: &str, args: &[&str]) -> Output {
        self.psql_env(user, args, &[])
    }

    /// Runs psql through the proxy with extra arguments and environment.
    pub fn psql_env(&self, user: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(psql_bin());
        cmd.arg("-X")
            .arg("-A")
            .arg("-t")
            .arg("-v")
            .arg("ON_ERROR_STOP=1");
        cmd.arg(format!(
            "host=127.0.0.1 port={} user={user} dbname={} sslmode=disable",
            self.addr.port(),
            self.db
        ));
        cmd.args(args);
        cmd.env("PGPASSWORD", PW).env("PGCONNECT_TIMEOUT", "10");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("psql runs")
    }

    /// Every event in the log so far (waits briefly for the writer).
    pub async fn events(&self) -> Vec<serde_json::Value> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = std::fs::read_to_string(&self.events_path).unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Events with this name.
    pub async fn events_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Upstream backends of the app role on this test's database, as the superuser sees them.
    pub fn backends(&self, state_filter: Option<&str>) -> i64 {
        self.backends_of(common::APP_USER, state_filter)
    }

    /// Upstream backends of `role` on this test's database (in `state_filter` when given), as
    /// the superuser sees them.
    pub fn backends_of(&self, role: &str, state_filter: Option<&str>) -> i64 {
        let cond = match state_filter {
            Some(s) => format!(" and state = '{s}'"),
            None => String::new(),
        };
        let out = common::cluster()
            .psql(
                "postgres",
                &format!(
                    "select count(*) from pg_stat_activity where usename = '{role}' and datname = '{}' and application_name <> 'tenantgate-posture'{cond}",
                    self.db
                ),
            )
            .expect("pg_stat_activity");
        out.trim().parse().unwrap_or(-1)
    }

    /// psql on the admin console as [`ADMIN_USER`] ([`Opts::with_admin`]): unaligned, fields
    /// separated by `|`, header and footer included.
    pub fn console(&self, sql: &str) -> Output {
        Command::new(psql_bin())
            .args(["-X", "-A", "-F", "|", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={} user={ADMIN_USER} dbname=tenantgate",
                self.addr.port()
            ))
            .env("PGPASSWORD", PW)
            .output()
            .expect("psql runs")
    }

    /// Reloads the proxy (as SIGHUP does) with the configuration `o` gives for this test's
    /// database and event log.
    pub async fn reload(&self, o: &Opts) {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tenantgate-reload-{}-{n}.toml", std::process::id()));
        remove_at_exit(&path);
        std::fs::write(&path, config_toml(&self.db, &self.events_path, o))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self.shared().reload(&path).await;
    }

    /// Stops the proxy; returns its whole event log (aggregates flushed at shutdown included),
    /// read before the log is removed with the proxy.
    pub async fn stop(mut self) -> String {
        if let Some(p) = self.proxy.take() {
            p.shutdown(Duration::from_secs(2)).await;
        }
        std::fs::read_to_string(&self.events_path).unwrap_or_default()
    }
}

/// One HTTP/1.0 GET (to the admin listener): (status, body). Panics when no HTTP answer comes.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("admin connects");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").expect("request written");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response read");
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {raw}"));
    (status, body.to_owned())
}

/// psql from the cluster's bindir if present, else PATH.
pub fn psql_bin() -> PathBuf {
    let p = common::cluster().bindir().join("psql");
    if p.exists() {
        p
    } else {
        PathBuf::from("psql")
    }
}

/// pgbench from the cluster's bindir if present, else PATH.
pub fn pgbench_bin() -> PathBuf {
    let p = common::cluster().bindir().join("pgbench");
    if p.exists() {
        p
    } else {
        PathBuf::from("pgbench")
    }
}

/// stdout of a finished command as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of a finished command as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A pgbench script that aborts (division by zero) the moment it sees another tenant's data
/// or context, inside and outside explicit transactions.
pub const TENANT_CHECK_SCRIPT: &str = r#"
select 1 / ((select count(*) from customers) = :ncust)::int;
select 1 / (left(current_setting('app.tenant_id'), 8) = repeat(:digit::text, 8))::int;
begin;
select 1 / ((select count(*) from vehicles) = :nveh)::int;
select 1 / (left(current_setting('app.tenant_id'), 8) = repeat(:digit::text, 8))::int;
end;
select 1 / ((select count(*) from customers where left(tenant_id::text, 8) <> repeat(:digit::text, 8)) = 0)::int;
"#;

/// Starts pgbench with `TENANT_CHECK_SCRIPT` as `<slug>_app` for `secs` seconds.
pub fn pgbench_tenant(
    p: &TestProxy,
    t: common::SeedTenant,
    mode: &str,
    script: &std::path::Path,
    clients: u32,
    secs: u32,
) -> (common::SeedTenant, std::process::Child) {
    let digit = &t.id[..1];
    // One thread per client: in -M prepared pgbench prepares synchronously, which would block
    // the other clients of its thread while they hold connections in open transactions (a
    // client-side deadlock every transaction pooler shares).
    let child = Command::new(pgbench_bin())
        .args([
            "-n",
            "-M",
            mode,
            "-c",
            &clients.to_string(),
            "-j",
            &clients.to_string(),
            "-T",
            &secs.to_string(),
        ])
        .arg("-f")
        .arg(script)
        .args(["-D", &format!("ncust={}", t.customers)])
        .args(["-D", &format!("nveh={}", t.vehicles)])
        .args(["-D", &format!("digit={digit}")])
        .args(["-D", &format!("slug={}", t.slug)])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p.addr.port().to_string(),
            "-U",
            &format!("{}_app", t.slug),
            &p.db,
        ])
        .env("PGPASSWORD", PW)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgbench runs");
    (t, child)
}

/// Creates pgbench's tables (scale 1) in `db` as the superuser and grants them to app_user.
pub fn pgbench_init(db: &str) {
    let c = common::cluster();
    let out = Command::new(pgbench_bin())
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &c.port().to_string(),
            "-U",
            c.superuser(),
            db,
        ])
        .env("PGPASSWORD", c.superuser_password())
        .output()
        .expect("pgbench -i runs");
    assert!(out.status.success(), "pgbench -i: {}", stderr(&out));
    c.psql(
        db,
        "grant select, insert, update, delete on pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history to app_user",
    )
    .expect("grant pgbench tables");
}

/// Runs pgbench through the proxy as `user`.
pub fn pgbench(p: &TestProxy, user: &str, args: &[&str]) -> Output {
    Command::new(pgbench_bin())
        .arg("-n")
        .args(args)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p.addr.port().to_string(),
            "-U",
            user,
            &p.db,
        ])
        .env("PGPASSWORD", PW)
        .output()
        .expect("pgbench runs")
}

/// Polls pg_stat_activity for the app role's backends on the test database; keeps the max.
pub struct BackendWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
}

impl BackendWatcher {
    pub fn start(p: &TestProxy) -> BackendWatcher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let db = p.db.clone();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let c = common::cluster();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(
                    &c.conn_str(c.superuser(), c.superuser_password(), "postgres"),
                    NoTls,
                )
                .await
                .expect("watcher connects");
                tokio::spawn(conn);
                let mut max = 0i64;
                while !flag.load(Ordering::Relaxed) {
                    let n: i64 = client
                        .query_one(
                            "select count(*) from pg_stat_activity where usename = $1 and datname = $2 and application_name <> 'tenantgate-posture'",
                            &[&common::APP_USER, &db],
                        )
                        .await
                        .map(|r| r.get(0))
                        .unwrap_or(0);
                    max = max.max(n);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                max
            })
        });
        BackendWatcher { stop, handle }
    }

    pub fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(-1)
    }
}

/// The first column of every row a simple query returned, as text.
pub fn first_columns(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect()
}

/// A proxy on a PostgreSQL of its own, for tests that restart the server (restarting the shared
/// cluster would cut the other tests' sessions): the seed schema in database `app`, and a proxy
/// whose `[upstream]` section gets `upstream_extra` (e.g. `"pool_size = 2\n"`).
pub async fn private_cluster_proxy(
    upstream_extra: &str,
) -> (tenantgate_pgcluster::PgCluster, Proxy) {
    let cluster = tenantgate_pgcluster::PgCluster::start(Default::default()).expect("cluster");
    cluster.create_database("app", None).unwrap();
    cluster.psql("app", common::SCHEMA_SQL).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\nuser = \"app_user\"\npassword = \"app_password\"\n{upstream_extra}[security]\nevent_log = \"stderr\"\n{}",
        cluster.port(),
        users_toml()
    );
    let cfg = Config::from_toml(&text).unwrap();
    let proxy = Proxy::start(Arc::new(cfg)).await.unwrap();
    (cluster, proxy)
}
