//! Operability against a real PostgreSQL (issue 16): `verify` says what the server said; a
//! wrong upstream password is reported as what it is (not "unreachable") to clients, health
//! and `serve --fail-fast`; a Unix-socket upstream works; tenant switches are structured
//! events; the event log is private and every test proxy removes it.

mod common;
mod support;

use std::process::{Command, Output};

use common::{count, expect_sqlstate, ACME, GLOBEX, INITECH};
use support::{Opts, TestProxy, PW};

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn verify(url: &str, json: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["verify", "--database-url", url]);
    if json {
        cmd.arg("--json");
    }
    cmd.env_remove("RUST_LOG")
        .output()
        .expect("tenantgate runs")
}

fn url(host: &str, user: &str, password: &str, db: &str) -> String {
    format!(
        "host={host} port={} user={user} password={password} dbname={db} sslmode=disable connect_timeout=10",
        common::cluster().port()
    )
}

#[test]
fn verify_shows_the_servers_sqlstate_and_message() {
    let db = common::fresh_database("verify_errors");
    let out = verify(&url("127.0.0.1", common::APP_USER, "wrong", &db), false);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("28P01 password authentication failed for user \"app_user\""),
        "{err}"
    );
    let out = verify(&url("127.0.0.1", common::APP_USER, "wrong", &db), true);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["status"], "error");
    assert_eq!(doc["sqlstate"], "28P01", "{doc}");
    assert!(doc["error"]
        .as_str()
        .unwrap_or("")
        .contains("password authentication failed"));

    let out = verify(
        &url(
            "127.0.0.1",
            common::APP_USER,
            common::APP_PASSWORD,
            "no_such_db",
        ),
        false,
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("3D000") && err.contains("\"no_such_db\" does not exist"),
        "{err}"
    );

    let out = verify(
        &url("no-such-host.invalid", common::APP_USER, "x", &db),
        false,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(!err.contains("db error"), "{err}");
    assert!(
        err.contains("error connecting to server: "),
        "the cause is missing: {err}"
    );
}

/// The proxy's configuration `text` with a wrong upstream password.
fn wrong_password(text: String) -> String {
    text.replace(
        &format!("password = \"{}\"", common::APP_PASSWORD),
        "password = \"not-the-password\"",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_upstream_password_is_not_reported_as_unreachable() {
    let p = support::start_edited(
        common::fresh_database("wrong_upstream_pw"),
        &Opts::default().with_admin_http(),
        wrong_password,
    )
    .await
    .expect("starts and keeps retrying");
    // Clients: FATAL 08004 saying it is not transient (and not "starting up").
    let db_err = expect_sqlstate(p.try_connect("acme_app", PW).await, "08004");
    assert!(db_err.message().contains("rejected"), "{db_err:?}");
    assert!(
        db_err.detail().unwrap_or("").contains("not transient"),
        "{db_err:?}"
    );
    // Health: not ready, with the server's words.
    let (status, body) = support::http_get(p.admin_http(), "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("28P01") && body.contains("not transient"),
        "{body}"
    );
    p.stop().await;
}

#[test]
fn serve_fail_fast_exits_when_the_upstream_rejects_the_login() {
    let db = common::fresh_database("fail_fast");
    let dir = std::env::temp_dir().join(format!("tenantgate-failfast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("tenantgate.toml");
    let text_cfg = wrong_password(support::config_toml(
        &db,
        &dir.join("events.jsonl"),
        &Opts::default().with_admin_http(),
    ));
    std::fs::write(&config, text_cfg).expect("write config");
    let out = Command::new(BIN)
        .args(["serve", "--fail-fast", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .output()
        .expect("tenantgate runs");
    let _ = std::fs::remove_dir_all(&dir);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("28P01") && err.contains("not transient"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_upstream_serves_tenants() {
    let c = common::cluster();
    let socket_dir = c.data_dir().parent().expect("cluster root").to_owned();
    assert!(
        socket_dir.join(format!(".s.PGSQL.{}", c.port())).exists(),
        "the test cluster has no socket in {}",
        socket_dir.display()
    );
    let p = support::start_edited(
        common::fresh_database("unix_upstream"),
        &Opts::default(),
        |text| {
            text.replace(
                "host = \"127.0.0.1\"",
                &format!("host = \"{}\"", socket_dir.display()),
            )
        },
    )
    .await
    .expect("starts");
    let client = p.connect("acme_app").await;
    // Over the Unix socket.
    assert_eq!(count(&client, "customers").await, ACME.customers);
    // The backend really came over the socket (no client address).
    let unix_backends = c
        .psql(
            "postgres",
            &format!(
                "select count(*) from pg_stat_activity where datname = '{}' and usename = 'app_user' and client_addr is null",
                p.db
            ),
        )
        .expect("pg_stat_activity");
    assert!(
        unix_backends.trim().parse::<i64>().unwrap_or(0) >= 1,
        "{unix_backends}"
    );
    drop(client);
    p.stop().await;
}

/// Starts a proxy listening on `listen` (a Unix socket path), on a fresh database.
async fn start_listening_on(listen: &str, extra_server: &str) -> Result<TestProxy, String> {
    let opts = Opts {
        server_extra: extra_server.into(),
        ..Opts::default()
    };
    support::start_edited(common::fresh_database("unix_listen"), &opts, |text| {
        text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{listen}\""),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_listens_on_a_unix_socket_where_psql_looks_for_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tg-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("socket dir");
    support::remove_at_exit(&dir);
    let socket = dir.join(".s.PGSQL.6432");
    // A socket file left behind by a proxy that was killed: replaced at start.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());
    let p = start_listening_on(&dir.display().to_string(), "unix_socket_mode = \"0770\"")
        .await
        .expect("starts on the directory");
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o770, "socket mode {:o}", mode & 0o777);

    // psql -h <dir> -p 6432, as for PostgreSQL and PgBouncer.
    let out = Command::new(support::psql_bin())
        .args(["-X", "-A", "-t", "-h"])
        .arg(&dir)
        .args(["-p", "6432", "-U", "acme_app", "-d", &p.db, "-c"])
        .arg("select count(*) from customers")
        .env("PGPASSWORD", PW)
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), ACME.customers.to_string());
    // tokio-postgres over the socket too; a Unix client's address is [local].
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host={} port=6432 user=globex_app password={PW} dbname={}",
            dir.display(),
            p.db
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("tokio-postgres over the socket");
    tokio::spawn(conn);
    assert_eq!(count(&client, "customers").await, GLOBEX.customers);
    assert!(client.simple_query("set role postgres").await.is_err());
    let tamper = p.events_named("role_tamper").await;
    assert_eq!(tamper[0]["client_addr"], "[local]", "{tamper:?}");

    // A second proxy on a live socket is refused, naming it; the first keeps it.
    let second = start_listening_on(&dir.display().to_string(), "")
        .await
        .err()
        .expect("the socket is in use");
    assert!(second.contains("another server is listening"), "{second}");
    assert!(socket.exists());
    drop(client);
    p.stop().await;
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_switches_are_structured_events() {
    let p = support::start(Opts {
        extra: format!(
            "[[users]]\nname = \"backend\"\npassword = \"{PW}\"\ntenants = [\"{}\", \"{}\"]\nallow_switch = true\n",
            ACME.id, GLOBEX.id
        ),
        ..Opts::default()
    })
    .await;
    // A backend on acme switches to globex and back; initech is outside its list.
    let c = p.connect(&format!("backend.{}", ACME.id)).await;
    c.batch_execute(&format!("SET app.tenant_id = '{}'", GLOBEX.id))
        .await
        .expect("switch");
    c.batch_execute(&format!("SET app.tenant_id = '{}'", ACME.id))
        .await
        .expect("switch");
    assert!(c
        .batch_execute(&format!("SET app.tenant_id = '{}'", INITECH.id))
        .await
        .is_err());
    let switches = p.events_named("tenant_switch").await;
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(switches[0]["from_tenant"], ACME.id, "{}", switches[0]);
    assert_eq!(switches[0]["to_tenant"], GLOBEX.id);
    assert_eq!(switches[1]["from_tenant"], GLOBEX.id);
    assert_eq!(switches[1]["to_tenant"], ACME.id);
    for s in &switches {
        assert!(s.get("detail").is_none(), "debug text in {s}");
        assert!(
            s["statement"]
                .as_str()
                .unwrap_or("")
                .contains("SET app.tenant_id"),
            "{s}"
        );
    }
    let refused = p.events_named("tenant_tamper").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["to_tenant"], INITECH.id);
    assert!(
        refused[0]["statement"]
            .as_str()
            .unwrap_or("")
            .contains(INITECH.id),
        "{}",
        refused[0]
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_is_private_and_removed_with_its_test_proxy() {
    use std::os::unix::fs::PermissionsExt;
    let p = support::start(Opts::default()).await;
    let c = p.connect("acme_app").await;
    assert!(c.simple_query("set role postgres").await.is_err());
    assert_eq!(p.events_named("role_tamper").await.len(), 1);
    let mode = std::fs::metadata(&p.events_path)
        .expect("event log exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "event log mode {:o}", mode & 0o777);
    let path = p.events_path.clone();
    drop(c);
    p.stop().await;
    assert!(!path.exists(), "{} left behind", path.display());
}
