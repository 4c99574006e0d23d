//! The driver matrix: real client libraries through the proxy in transaction mode.
//!
//! Each test starts a proxy with `pool_size = 2` on a fresh database and runs one driver's
//! check (`tests/drivers/*`) as a subprocess: several concurrent clients over three tenants
//! (two fixed-tenant users and the chooser), each asserting after every query that it sees
//! only its own tenant. tokio-postgres runs in-process.
//!
//! A missing runtime or library skips the test with the install command, or fails it when
//! `CI` is set (`scripts/install-test-deps.sh` installs everything).
//!
//! The scripts read their target from the environment:
//! `TG_HOST`, `TG_PORT`, `TG_DB`, `TG_PASSWORD`, and `TG_TENANTS`, a JSON list of
//! `{"user", "id", "slug", "customers", "vehicles", "services", "appointments"}`.
//! `RUST_LOG=tenantgate=debug` shows the proxy's own log on stderr.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_sqlstate, sqlstate, SeedTenant, ACME, GLOBEX, INITECH};
use support::{start, Opts, TestProxy, PW};

/// How long one driver's script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Smaller than the number of clients every driver runs (3 tenants × 2 clients).
const POOL_SIZE: usize = 2;

/// The whole-matrix installer, named in every skip/failure message.
const INSTALL_ALL: &str = "bash scripts/install-test-deps.sh";

/// A client of the matrix: the user it logs in as, and the tenant that must be all it sees.
struct Login {
    user: String,
    tenant: SeedTenant,
}

/// Two fixed-tenant users and one chooser (`shared_app.<uuid>`), so at least three tenants
/// share the two upstream connections.
fn logins() -> Vec<Login> {
    vec![
        Login {
            user: format!("{}_app", ACME.slug),
            tenant: ACME,
        },
        Login {
            user: format!("{}_app", GLOBEX.slug),
            tenant: GLOBEX,
        },
        Login {
            user: format!("shared_app.{}", INITECH.id),
            tenant: INITECH,
        },
    ]
}

/// The scripts check the proxy's statement names in `pg_prepared_statements`, which app
/// sessions are refused (it shows other clients' statements on a pooled server connection):
/// they log in as monitoring users (`allow_catalog_monitoring = true`) of the same tenants,
/// `acme_app` as `acme_mon`, `shared_app.<id>` as `shared_mon.<id>`.
fn script_users_toml() -> String {
    let mut s = String::new();
    for t in [ACME, GLOBEX] {
        s.push_str(&format!(
            "[[users]]\nname = \"{}_mon\"\npassword = \"{PW}\"\ntenant = \"{}\"\nallow_catalog_monitoring = true\n\n",
            t.slug, t.id
        ));
    }
    s.push_str(&format!(
        "[[users]]\nname = \"shared_mon\"\npassword = \"{PW}\"\ntenants = \"*\"\nallow_catalog_monitoring = true\n\n"
    ));
    s
}

/// The login a script uses for `l` (see `script_users_toml`).
fn script_user(l: &Login) -> String {
    l.user.replacen("_app", "_mon", 1)
}

/// `TG_TENANTS` for the scripts.
fn tenants_json() -> String {
    let list: Vec<serde_json::Value> = logins()
        .iter()
        .map(|l| {
            serde_json::json!({
                "user": script_user(l),
                "id": l.tenant.id,
                "slug": l.tenant.slug,
                "customers": l.tenant.customers,
                "vehicles": l.tenant.vehicles,
                "services": l.tenant.services,
                "appointments": l.tenant.appointments,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("drivers")
}

/// Installs a log subscriber when `RUST_LOG` is set, so a failing driver can be traced.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Whether a command runs and exits 0 (quietly).
fn probe(program: &str, args: &[&str], dir: &Path) -> bool {
    std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Returns true when the driver is present. Otherwise fails under `CI`, or prints the skip.
fn require(driver: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{driver} not installed; install it with `{install}` (or `{INSTALL_ALL}`)");
    }
    // Straight to the process's stderr: libtest's capture would hide a passing test's output.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED: {driver} not installed ({install}, or {INSTALL_ALL})"
    );
    false
}

/// Runs one driver's check against a fresh proxy and asserts it passed.
async fn run_driver(driver: &str, program: &str, args: &[String]) {
    run_driver_with(driver, program, args, false).await
}

/// As [`run_driver`]; `temporary` grants app_user TEMPORARY (which the hardened schema revokes)
/// and starts the proxy with `allow_object_creation`, for a check that stages data in a
/// temporary table.
async fn run_driver_with(driver: &str, program: &str, args: &[String], temporary: bool) {
    init_logging();
    let o = Opts {
        pool_size: POOL_SIZE,
        extra: script_users_toml(),
        ..Opts::default()
    };
    let p = if temporary {
        let db = common::fresh_database("tg");
        common::cluster()
            .psql(
                &db,
                &format!("GRANT TEMPORARY ON DATABASE {db} TO {}", common::APP_USER),
            )
            .expect("grant TEMPORARY");
        support::start_on(
            db,
            Opts {
                security_extra: "allow_object_creation = true".into(),
                ..o
            },
        )
        .await
    } else {
        start(o).await
    };
    let watch = watch_backends(&p.db).await;
    let began = Instant::now();
    let result = run_script(&p, driver, program, args).await;
    let elapsed = began.elapsed();
    let most = watch.stop().await;
    p.released().await;
    let idle_in_txn = p.backends(Some("idle in transaction"));
    p.stop().await;
    match result {
        Ok(out) => {
            assert!(
                most <= POOL_SIZE as i64,
                "{driver}: {most} upstream backends, pool_size is {POOL_SIZE}"
            );
            assert_eq!(
                idle_in_txn, 0,
                "{driver}: upstream connections left idle in transaction"
            );
            println!(
                "{driver}: passed in {elapsed:.1?} (at most {most} upstream backends)\n{}",
                out.stdout.trim_end()
            );
            if !out.stderr.trim().is_empty() {
                println!("{driver} stderr:\n{}", out.stderr.trim_end());
            }
        }
        Err(why) => panic!("{driver} failed after {elapsed:.1?}: {why}"),
    }
}

/// Polls `pg_stat_activity` (as the superuser) for the app role's backends on `db`.
struct BackendWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    most: tokio::task::JoinHandle<i64>,
}

async fn watch_backends(db: &str) -> BackendWatch {
    let c = common::cluster();
    let (client, conn) = tokio_postgres::connect(
        &c.conn_str(c.superuser(), c.superuser_password(), "postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("superuser connects");
    tokio::spawn(conn);
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let db = db.to_owned();
    let most = tokio::spawn(async move {
        let mut most = 0;
        loop {
            let n: i64 = client
                .query_one(
                    "select count(*) from pg_stat_activity where usename = $1 and datname = $2 and application_name <> 'tenantgate-posture'",
                    &[&common::APP_USER, &db],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            most = most.max(n);
            tokio::select! {
                _ = &mut stopped => return most,
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
        }
    });
    BackendWatch { stop, most }
}

impl BackendWatch {
    /// The most backends seen.
    async fn stop(self) -> i64 {
        let _ = self.stop.send(());
        self.most.await.unwrap_or(-1)
    }
}

struct ScriptOutput {
    stdout: String,
    stderr: String,
}

/// Runs the script with the proxy's coordinates, output captured to files so that even a
/// timed-out run shows what it printed.
async fn run_script(
    p: &TestProxy,
    driver: &str,
    program: &str,
    args: &[String],
) -> Result<ScriptOutput, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tmp = std::env::temp_dir();
    let out_path = tmp.join(format!("tg-driver-{}-{n}.out", std::process::id()));
    let err_path = tmp.join(format!("tg-driver-{}-{n}.err", std::process::id()));
    let out_file = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(drivers_dir())
        .env("TG_HOST", "127.0.0.1")
        .env("TG_PORT", p.addr.port().to_string())
        .env("TG_DB", &p.db)
        .env("TG_PASSWORD", PW)
        .env("TG_TENANTS", tenants_json())
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let status = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let read = |p: &Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    let out = ScriptOutput {
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    let show = |head: String| {
        format!(
            "{head}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.stdout, out.stderr
        )
    };
    match status {
        Err(_) => Err(show(format!("{driver} timed out after {SCRIPT_TIMEOUT:?}"))),
        Ok(Err(e)) => Err(show(format!("waiting for {program}: {e}"))),
        Ok(Ok(s)) if !s.success() => Err(show(format!("{program} exited with {s}"))),
        Ok(Ok(_)) => Ok(out),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3() {
    let present = probe("python3", &["-c", "import psycopg"], &drivers_dir());
    if !require(
        "psycopg",
        present,
        "python3 -m pip install 'psycopg[binary]'",
    ) {
        return;
    }
    // Weaker set-up: the check stages COPY FROM in a temporary table (PostgreSQL refuses COPY
    // FROM into a table with row-level security), which needs TEMPORARY.
    run_driver_with("psycopg", "python3", &["psycopg_check.py".to_owned()], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg() {
    let present = probe("python3", &["-c", "import asyncpg"], &drivers_dir());
    if !require("asyncpg", present, "python3 -m pip install asyncpg") {
        return;
    }
    run_driver("asyncpg", "python3", &["asyncpg_check.py".to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let present = probe("node", &["-e", "require('pg')"], &drivers_dir());
    if !require(
        "node-postgres",
        present,
        "cd tests/drivers && npm install pg",
    ) {
        return;
    }
    run_driver("node-postgres", "node", &["node_pg_check.js".to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    let present = jar.exists() && probe("java", &["-version"], &drivers_dir());
    if !require(
        "pgjdbc",
        present,
        "apt-get install -y default-jdk-headless libpostgresql-jdbc-java",
    ) {
        return;
    }
    let args = [
        "-cp".to_owned(),
        jar.display().to_string(),
        "JdbcCheck.java".to_owned(),
    ];
    run_driver("pgjdbc", "java", &args).await;
}

// --- tokio-postgres, in-process --------------------------------------------------------------

/// Clients per login for tokio-postgres (3 logins: 6 clients over 2 upstream connections).
const TOKIO_CLIENTS_PER_LOGIN: usize = 2;
/// Transactions each tokio-postgres client runs with its prepared statements.
const TOKIO_ROUNDS: usize = 40;

/// One tokio-postgres client's checks, counting queries.
struct Checker {
    tenant: SeedTenant,
    label: String,
    queries: u64,
}

impl Checker {
    fn setting(&self, v: &str) -> Result<(), String> {
        if v == self.tenant.id {
            Ok(())
        } else {
            Err(format!(
                "{}: app.tenant_id is {v:?}, expected {}",
                self.label, self.tenant.id
            ))
        }
    }

    fn count(&self, table: &str, v: i64, extra: i64) -> Result<(), String> {
        let want = common::seeded(&self.tenant, table) + extra;
        if v == want {
            Ok(())
        } else {
            Err(format!(
                "{}: count({table}) is {v}, expected {want}",
                self.label
            ))
        }
    }

    fn names(&self, rows: &[tokio_postgres::Row]) -> Result<(), String> {
        for r in rows {
            let name: String = r.get(0);
            if !name.starts_with(self.tenant.slug) {
                return Err(format!("{}: row of another tenant: {name:?}", self.label));
            }
        }
        Ok(())
    }
}

/// Prepares once, then reuses the statements across many transactions (committed and rolled
/// back), outside transactions, and pipelined (several queries in flight on one client).
async fn tokio_client(p: Arc<TestProxy>, login: Arc<Login>, no: usize) -> Result<u64, String> {
    let t = login.tenant;
    let mut ck = Checker {
        tenant: t,
        label: format!("{}#{no} ({})", t.slug, login.user),
        queries: 0,
    };
    let e = |what: &str, err: tokio_postgres::Error| format!("{}: {what}: {err:?}", login.user);
    let mut c = p
        .try_connect(&login.user, PW)
        .await
        .map_err(|err| e("connect", err))?;
    let count = c
        .prepare("select count(*) from customers")
        .await
        .map_err(|err| e("prepare", err))?;
    let setting = c
        .prepare("select current_setting('app.tenant_id')")
        .await
        .map_err(|err| e("prepare", err))?;
    let names = c
        .prepare("select name, current_setting('app.tenant_id') from customers where name like $1 or $1 = ''")
        .await
        .map_err(|err| e("prepare", err))?;
    let insert = c
        .prepare("insert into customers (tenant_id, name) values (current_setting('app.tenant_id')::uuid, $1)")
        .await
        .map_err(|err| e("prepare", err))?;
    let vehicles = c
        .prepare("select count(*) from vehicles")
        .await
        .map_err(|err| e("prepare", err))?;
    for round in 0..TOKIO_ROUNDS {
        match round % 4 {
            0 | 1 => {
                let tx = c.transaction().await.map_err(|err| e("begin", err))?;
                let n: i64 = tx
                    .query_one(&count, &[])
                    .await
                    .map_err(|err| e("count", err))?
                    .get(0);
                ck.count("customers", n, 0)?;
                let s: String = tx
                    .query_one(&setting, &[])
                    .await
                    .map_err(|err| e("setting", err))?
                    .get(0);
                ck.setting(&s)?;
                let rows = tx
                    .query(&names, &[&""])
                    .await
                    .map_err(|err| e("names", err))?;
                ck.names(&rows)?;
                ck.count("customers", rows.len() as i64, 0)?;
                for r in &rows {
                    ck.setting(r.get(1))?;
                }
                if round % 4 == 1 {
                    tx.execute(&insert, &[&format!("{} tokio {no}", t.slug)])
                        .await
                        .map_err(|err| e("insert", err))?;
                    let n: i64 = tx
                        .query_one(&count, &[])
                        .await
                        .map_err(|err| e("count", err))?
                        .get(0);
                    ck.count("customers", n, 1)?;
                    ck.queries += 2;
                    tx.rollback().await.map_err(|err| e("rollback", err))?;
                } else {
                    tx.commit().await.map_err(|err| e("commit", err))?;
                }
                ck.queries += 5;
            }
            2 => {
                // Pipelined: all four are in flight before the first answer.
                let like = format!("{}%", t.slug);
                let like_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&like];
                let (a, b, r, v) = futures_util::try_join!(
                    c.query_one(&count, &[]),
                    c.query_one(&setting, &[]),
                    c.query(&names, &like_param),
                    c.query_one(&vehicles, &[]),
                )
                .map_err(|err| e("pipeline", err))?;
                ck.count("customers", a.get(0), 0)?;
                ck.setting(b.get(0))?;
                ck.names(&r)?;
                ck.count("customers", r.len() as i64, 0)?;
                ck.count("vehicles", v.get(0), 0)?;
                ck.queries += 4;
            }
            _ => {
                // An error inside a transaction, then the same statements still work.
                let tx = c.transaction().await.map_err(|err| e("begin", err))?;
                let n: i64 = tx
                    .query_one(&vehicles, &[])
                    .await
                    .map_err(|err| e("vehicles", err))?
                    .get(0);
                ck.count("vehicles", n, 0)?;
                if tx.query_one("select 1 / 0", &[]).await.is_ok() {
                    return Err(format!("{}: 1/0 succeeded", ck.label));
                }
                tx.rollback().await.map_err(|err| e("rollback", err))?;
                let s: String = c
                    .query_one(&setting, &[])
                    .await
                    .map_err(|err| e("setting", err))?
                    .get(0);
                ck.setting(&s)?;
                ck.queries += 4;
            }
        }
    }
    Ok(ck.queries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres() {
    init_logging();
    // A statement cap below the five statements each client uses: the proxy evicts and
    // re-prepares inside transactions and pipelines, not only across them.
    let p = Arc::new(
        start(Opts {
            pool_size: POOL_SIZE,
            upstream_extra: "max_prepared_statements = 3".to_owned(),
            ..Opts::default()
        })
        .await,
    );
    let began = Instant::now();
    let mut tasks = Vec::new();
    for login in logins().into_iter().map(Arc::new) {
        for no in 0..TOKIO_CLIENTS_PER_LOGIN {
            tasks.push(tokio::spawn(tokio_client(p.clone(), login.clone(), no)));
        }
    }
    let clients = tasks.len();
    let mut queries = 0;
    let mut errors = Vec::new();
    for t in tasks {
        match tokio::time::timeout(SCRIPT_TIMEOUT, t).await {
            Ok(Ok(Ok(n))) => queries += n,
            Ok(Ok(Err(e))) => errors.push(e),
            Ok(Err(e)) => errors.push(format!("client task panicked: {e}")),
            Err(_) => errors.push(format!("client timed out after {SCRIPT_TIMEOUT:?}")),
        }
    }
    assert!(
        errors.is_empty(),
        "tokio-postgres failed:\n{}",
        errors.join("\n")
    );
    println!(
        "tokio-postgres: {queries} queries, {clients} clients, {} tenants, {:.1?}: ok",
        logins().len(),
        began.elapsed()
    );
    p.released().await;
    assert!(
        p.backends(None) <= POOL_SIZE as i64,
        "more upstream backends than pool_size"
    );
    assert_eq!(p.backends(Some("idle in transaction")), 0);
    if let Ok(p) = Arc::try_unwrap(p) {
        p.stop().await;
    }
}

// --- cancel requests under transaction pooling (proxy bugs found by the matrix) -----------------

/// A client's CancelRequest must only ever cancel that client's own query. Client B cancels
/// its own short queries at varying moments around their end; A1 and A2 (other tenants) never
/// cancel anything, so PostgreSQL itself never cancels their queries (0 of ~750 in the same
/// loop run directly against PostgreSQL). Through the proxy some of theirs are cancelled:
/// the forwarded cancel reaches the upstream after B's query ended and the connection was
/// handed to A (see the report: forward only while B's query is still running there, and
/// keep the connection out of the pool until a forwarded cancel has been delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_never_hits_another_clients_query() {
    let p = Arc::new(
        start(Opts {
            pool_size: POOL_SIZE,
            ..Opts::default()
        })
        .await,
    );
    let until = Instant::now() + Duration::from_secs(4);
    let mut victims = Vec::new();
    for user in [
        format!("{}_app", GLOBEX.slug),
        format!("shared_app.{}", INITECH.id),
    ] {
        let p = p.clone();
        victims.push(tokio::spawn(async move {
            let c = p.connect(&user).await;
            let (mut ok, mut cancelled) = (0u32, 0u32);
            while Instant::now() < until {
                match c.query_one("select pg_sleep(0.02)", &[]).await {
                    Ok(_) => ok += 1,
                    Err(e) if sqlstate(&e) == Some("57014") => cancelled += 1,
                    Err(e) => panic!("{user}: {e}"),
                }
            }
            (ok, cancelled)
        }));
    }
    let b = p.connect("acme_app").await;
    let token = b.cancel_token();
    let (mut own_runs, mut own_cancelled) = (0u32, 0u32);
    let mut i = 0u64;
    while Instant::now() < until {
        let delay = Duration::from_millis((i * 7) % 31);
        i += 1;
        let t = token.clone();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = t.cancel_query(tokio_postgres::NoTls).await;
        });
        if b.query_one("select pg_sleep(0.02)", &[]).await.is_err() {
            own_cancelled += 1;
        }
        own_runs += 1;
        let _ = canceller.await;
    }
    let mut hit = 0;
    let mut ran = 0;
    for v in victims {
        let (ok, cancelled) = v.await.expect("victim");
        ran += ok;
        hit += cancelled;
    }
    assert_eq!(
        hit, 0,
        "{hit} queries of clients that never sent a cancel were cancelled ({ran} ran fine); \
         the canceller ran {own_runs} and had {own_cancelled} of its own cancelled"
    );
}

/// A cancel for a query still waiting for a pooled connection is dropped today, so the query
/// runs in full once a connection frees (asyncpg/psql wait for it). PostgreSQL would cancel it
/// at once; PgBouncer answers such a client with the cancel error without running the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_query_waiting_for_a_connection() {
    let p = start(Opts {
        pool_size: 1,
        ..Opts::default()
    })
    .await;
    let holder = p.connect("globex_app").await;
    holder.batch_execute("begin; select 1").await.unwrap(); // holds the only connection
    let waiter = p.connect("acme_app").await;
    let token = waiter.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let began = Instant::now();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        holder.batch_execute("commit").await.unwrap();
        holder
    });
    let r = waiter.query_one("select pg_sleep(3)", &[]).await;
    let took = began.elapsed();
    let _ = canceller.await;
    let _ = release.await;
    let err = r
        .err()
        .unwrap_or_else(|| panic!("the cancelled query ran to completion ({took:?})"));
    assert_sqlstate(&err, "57014");
    assert!(
        took < Duration::from_secs(2),
        "cancel took effect only after {took:?}"
    );
    p.stop().await;
}
