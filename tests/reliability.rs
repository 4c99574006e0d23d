//! Faults and hostile input: the proxy keeps serving everyone else.

mod common;
use common::{assert_sqlstate, count, expect_sqlstate, sqlstate, try_count};
mod support;

use std::time::{Duration, Instant};

use support::{start, stderr, Opts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn still_serves(p: &support::TestProxy) {
    let c = p.connect("acme_app").await;
    let n = count(&c, "customers").await;
    assert_eq!(n, common::ACME.customers);
}

/// Sends `bytes`, then reads whatever comes back until EOF or 2 s.
async fn poke(p: &support::TestProxy, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_startup_packets_are_refused_and_others_unaffected() {
    let p = start(Opts::default()).await;
    // Random garbage.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = poke(&p, &garbage).await;
    assert!(r.is_empty() || r[0] == b'E', "{r:?}");
    // Oversized startup length: closed without an answer, as PostgreSQL does (it only logs
    // "invalid length of startup packet").
    let r = poke(&p, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).await;
    assert!(r.is_empty(), "{r:?}");
    // Negative / tiny lengths.
    let r = poke(&p, &[0xff, 0xff, 0xff, 0xf0]).await;
    assert!(r.is_empty(), "{r:?}");
    // SSLRequest followed by junk (no TLS configured: 'N', then the junk is refused).
    let mut b = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    b.extend_from_slice(b"\x16\x03\x01junkjunkjunk");
    let r = poke(&p, &b).await;
    assert_eq!(r.first(), Some(&b'N'));
    // Truncated startup: declares 100 bytes, sends 10, then closes.
    let r = poke(&p, &[0, 0, 0, 100, 0, 3, 0, 0, b'u', b's']).await;
    assert!(r.is_empty());
    // Startup without a user.
    let mut s = vec![0, 3, 0, 0];
    s.extend_from_slice(b"database\0app\0\0");
    let mut pkt = ((s.len() + 4) as u32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&s);
    let r = poke(&p, &pkt).await;
    assert!(
        String::from_utf8_lossy(&r).contains("no PostgreSQL user name specified"),
        "{:?}",
        String::from_utf8_lossy(&r)
    );
    // Unsupported protocol version.
    let r = poke(&p, &[0, 0, 0, 8, 0, 2, 0, 0]).await;
    assert!(String::from_utf8_lossy(&r).contains("unsupported frontend protocol"));
    // Bogus CancelRequest.
    let r = poke(
        &p,
        &[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2],
    )
    .await;
    assert!(r.is_empty());
    still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_after_login_close_only_that_client() {
    let p = start(Opts::default()).await;
    let other = p.connect("globex_app").await;
    // Log in with tokio-postgres, then hijack nothing: use a raw client instead.
    let mut s = raw_login(&p, "acme_app").await;
    // A Query whose length field lies (claims 3 bytes: below its own size).
    s.write_all(&[b'Q', 0, 0, 0, 3]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(
        String::from_utf8_lossy(&buf).contains("08P01"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    // A Query without its terminating NUL is refused as well, not a panic.
    let mut s = raw_login(&p, "acme_app").await;
    s.write_all(&[b'Q', 0, 0, 0, 8, b'a', b'b', b'c', b'd'])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(!buf.is_empty());
    // Oversized message (limit is 64 MiB by default): declared 1 GiB.
    let mut s = raw_login(&p, "acme_app").await;
    s.write_all(&[b'Q', 0x40, 0, 0, 0]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(String::from_utf8_lossy(&buf).contains("08P01"));
    let n = count(&other, "customers").await;
    assert_eq!(n, common::GLOBEX.customers);
    still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_starve_real_clients() {
    let p = start(Opts {
        server_extra: "auth_timeout = 3".into(),
        ..Opts::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(p.addr).await.unwrap());
    }
    let started = Instant::now();
    still_serves(&p).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // After auth_timeout the proxy closes them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut closed = 0;
    for s in idle.iter_mut().take(20) {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 20,
        "half-open connections were not closed after auth_timeout"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_inside_a_transaction_does_not_block_the_pool() {
    let p = start(Opts {
        pool_size: 1,
        ..Opts::default()
    })
    .await;
    let mut child = std::process::Command::new(support::psql_bin())
        .args(["-X", "-c", "begin", "-c", "select pg_sleep(60)"])
        .arg(p.url("acme_app", support::PW))
        .spawn()
        .unwrap();
    // Wait until its sleep is running upstream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.backends(Some("active")) == 0 {
        assert!(Instant::now() < deadline, "psql never started its query");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let started = Instant::now();
    let c = p.connect("globex_app").await;
    let n = count(&c, "customers").await;
    assert_eq!(n, common::GLOBEX.customers);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(p.backends(Some("idle in transaction")), 0);
    // Idle in transaction, then killed: rolled back, never reused dirty.
    let mut child = std::process::Command::new(support::psql_bin())
        .args(["-X", "-c", "begin", "-c", "select 1", "-c", "\\! sleep 30"])
        .arg(p.url("acme_app", support::PW))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = p.connect("initech_app").await;
    let n = count(&c, "customers").await;
    assert_eq!(n, common::INITECH.customers);
    assert_eq!(p.backends(Some("idle in transaction")), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_waits_then_errors() {
    let p = start(Opts {
        pool_size: 1,
        pool_timeout: 1.0,
        ..Opts::default()
    })
    .await;
    let a = p.connect("acme_app").await;
    a.batch_execute("begin").await.unwrap();
    a.query_one("select 1::int", &[]).await.unwrap();
    let b = p.connect("globex_app").await;
    let started = Instant::now();
    expect_sqlstate(b.simple_query("select 1").await, "53300");
    assert!(started.elapsed() >= Duration::from_millis(900));
    a.batch_execute("commit").await.unwrap();
    // And b recovers once the connection is free.
    assert_eq!(
        b.query_one("select 7::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_gives_a_clean_error_and_the_pool_refills() {
    let p = start(Opts {
        pool_size: 2,
        ..Opts::default()
    })
    .await;
    let victim = p.connect("acme_app").await;
    let bystander = p.connect("globex_app").await;
    let pid: i32 = victim
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    victim.batch_execute("begin").await.unwrap();
    victim
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap();
    common::cluster()
        .psql("postgres", &format!("select pg_terminate_backend({pid})"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = victim
        .simple_query("select 1")
        .await
        .expect_err("victim sees an error");
    let code = sqlstate(&e);
    assert!(
        code == Some("57P01") || code == Some("08006") || e.is_closed(),
        "{e:?}"
    );
    let n = count(&bystander, "customers").await;
    assert_eq!(n, common::GLOBEX.customers);
    still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_recovers_within_seconds() {
    let (cluster, proxy) = support::private_cluster_proxy("pool_size = 2\n").await;
    let url = format!(
        "host=127.0.0.1 port={} user=acme_app password={} dbname=app",
        proxy.addr.port(),
        support::PW
    );
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one("select 1::int", &[]).await.unwrap();
    drop(c);
    cluster.restart_fast().unwrap();
    let started = Instant::now();
    let mut ok = false;
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            if try_count(&c, "customers").await.is_ok() {
                ok = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "no successful query within 10 s of the restart");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn sigterm_with_no_clients_exits_promptly() {
    let db = common::fresh_database("sigterm");
    let dir = std::env::temp_dir().join(format!("tg-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    support::remove_at_exit(&dir);
    let cfg = dir.join("tenantgate.toml");
    let c = common::cluster();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"app_user\"\npassword = \"app_password\"\n[security]\nevent_log = \"stderr\"\n{}",
            c.port(),
            support::users_toml()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let _ = stderr(&out);
}

/// Logs in over a raw socket with a cleartext-free SCRAM exchange done by tokio-postgres? No:
/// use md5, which a raw client can do in a few lines.
async fn raw_login(p: &support::TestProxy, _user: &str) -> TcpStream {
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let user = "md5_app";
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in [("user", user), ("database", p.db.as_str())] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).await.unwrap();
    let mut hdr = [0u8; 5];
    s.read_exact(&mut hdr).await.unwrap();
    assert_eq!(hdr[0], b'R');
    let mut rest = vec![0u8; u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize - 4];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest[..4], &[0, 0, 0, 5]);
    let salt: [u8; 4] = rest[4..8].try_into().unwrap();
    let hash = postgres_protocol_md5(user, support::PW, salt);
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((hash.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(hash.as_bytes());
    msg.push(0);
    s.write_all(&msg).await.unwrap();
    // Read until ReadyForQuery.
    loop {
        let mut hdr = [0u8; 5];
        s.read_exact(&mut hdr).await.unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize - 4];
        s.read_exact(&mut rest).await.unwrap();
        assert_ne!(
            hdr[0],
            b'E',
            "login failed: {}",
            String::from_utf8_lossy(&rest)
        );
        if hdr[0] == b'Z' {
            return s;
        }
    }
}

fn postgres_protocol_md5(user: &str, password: &str, salt: [u8; 4]) -> String {
    postgres_protocol::authentication::md5_hash(user.as_bytes(), password.as_bytes(), salt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users_and_keeps_connections() {
    let db = common::fresh_database("sighup");
    let dir = std::env::temp_dir().join(format!("tg-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    support::remove_at_exit(&dir);
    let cfg = dir.join("tenantgate.toml");
    let port = support::free_port();
    let base = serve_config(port, &db, &dir, "", "") + &fixed_user("acme_app", common::ACME.id);
    // acme_app starts as a catalog-monitoring user; the reload below takes that away.
    std::fs::write(&cfg, base.clone() + "allow_catalog_monitoring = true\n").unwrap();
    let mut child = spawn_serve(&cfg);
    let url = |user: &str| serve_url(port, &db, user);
    let first = connect_when_up(&url("acme_app")).await;
    assert!(
        tokio_postgres::connect(&url("globex_app"), tokio_postgres::NoTls)
            .await
            .is_err()
    );
    // A statement the session parses again and again: decided once, remembered (the
    // per-session memory of plain Parse texts), and decided afresh after the reload.
    let stats = "select count(*) from pg_stat_user_tables";
    for _ in 0..3 {
        first
            .query_one(stats, &[])
            .await
            .expect("monitoring allowed");
    }
    let hup = |pid: u32| unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    // Add a user and reload.
    std::fs::write(&cfg, base + &fixed_user("globex_app", common::GLOBEX.id)).unwrap();
    hup(child.id());
    // The reload is applied once the new user logs in (users and policy are swapped together).
    let g = connect_when_up(&url("globex_app")).await;
    let n = count(&g, "customers").await;
    assert_eq!(n, common::GLOBEX.customers);
    // The connection opened before the reload still works, under the new policy.
    // Monitoring revoked.
    expect_sqlstate(first.query_one(stats, &[]).await, "42501");
    let n = count(&first, "customers").await;
    assert_eq!(n, common::ACME.customers);
    // An invalid file keeps the old configuration.
    std::fs::write(&cfg, "this is not toml [").unwrap();
    hup(child.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (g2, conn) = tokio_postgres::connect(&url("globex_app"), tokio_postgres::NoTls)
        .await
        .expect("old config kept");
    tokio::spawn(conn);
    g2.query_one("select 1::int", &[]).await.unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let _ = child.wait();
}

/// `serve` relays concurrent sessions, each seeing only its own tenant, on one event loop
/// (`worker_threads = 1`, the default) and on a work-stealing pool (0 = one per core, and 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_relays_on_one_thread_and_on_a_thread_pool() {
    let db = common::fresh_database("workers");
    for workers in [1usize, 0, 3] {
        let dir = std::env::temp_dir().join(format!("tg-workers-{}-{workers}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        support::remove_at_exit(&dir);
        let cfg = dir.join("tenantgate.toml");
        let port = support::free_port();
        let server = format!("worker_threads = {workers}\n");
        let config = serve_config(port, &db, &dir, &server, "pool_size = 3\n")
            + &fixed_user("acme_app", common::ACME.id)
            + &fixed_user("globex_app", common::GLOBEX.id);
        std::fs::write(&cfg, config).unwrap();
        let mut child = spawn_serve(&cfg);
        let url = |user: &str| serve_url(port, &db, user);
        connect_when_up(&url("acme_app")).await;
        // 8 clients over a pool of 3, alternating tenants, 40 transactions each.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (user, want) = if i % 2 == 0 {
                ("acme_app", common::ACME.customers)
            } else {
                ("globex_app", common::GLOBEX.customers)
            };
            let (client, conn) = tokio_postgres::connect(&url(user), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    let n = count(&client, "customers").await;
                    assert_eq!(n, want, "{user} saw another tenant's rows");
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "worker_threads = {workers}: exit {status:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `[server]`, `[upstream]` (to the test cluster's `db`) and `[security]` for a `serve` child,
/// with extra lines for the first two sections; users are appended by the caller.
fn serve_config(
    port: u16,
    db: &str,
    dir: &std::path::Path,
    server_extra: &str,
    upstream_extra: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}[upstream]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"app_user\"\npassword = \"app_password\"\n{upstream_extra}[security]\nevent_log = \"{}\"\n",
        common::cluster().port(),
        dir.join("events.jsonl").display(),
    )
}

/// A `[[users]]` entry with a fixed tenant and the test password.
fn fixed_user(name: &str, tenant: &str) -> String {
    format!(
        "[[users]]\nname = \"{name}\"\npassword = \"{}\"\ntenant = \"{tenant}\"\n",
        support::PW
    )
}

/// Starts `tenantgate serve` on `cfg` (stderr discarded).
fn spawn_serve(cfg: &std::path::Path) -> Served {
    Served(
        std::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
            .args(["serve", "--config"])
            .arg(cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A `serve` child that is killed if the test ends without stopping it (a failed assertion),
/// so no proxy outlives its test.
struct Served(std::process::Child);

impl std::ops::Deref for Served {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A libpq URL for `user` on a `serve` child.
fn serve_url(port: u16, db: &str, user: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user={user} password={} dbname={db}",
        support::PW
    )
}

/// Connects once the child is listening (it needs a moment to start), or once a reload let
/// the login in; panics after 5 s.
async fn connect_when_up(url: &str) -> tokio_postgres::Client {
    for _ in 0..50 {
        if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not connect within 5 s: {url}");
}

/// A `[[users]]` entry with a fixed tenant and no secret (it comes from the auth_file).
fn user_without_secret(name: &str, tenant: &str) -> String {
    format!("[[users]]\nname = \"{name}\"\ntenant = \"{tenant}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_file_secrets_are_read_again_on_sighup() {
    use tenantgate::auth::Verifier;
    let db = common::fresh_database("authfile");
    let dir = std::env::temp_dir().join(format!("tg-authfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    support::remove_at_exit(&dir);
    let cfg = dir.join("tenantgate.toml");
    let users = dir.join("userlist.txt");
    let scram = |pw: &str| Verifier::derive(pw, b"0123456789abcdef".to_vec(), 4096).to_pg_string();
    std::fs::write(&users, format!("\"acme_app\" \"{}\"\n", scram(support::PW))).unwrap();
    let port = support::free_port();
    let server_extra = format!("auth_file = \"{}\"\n", users.display());
    std::fs::write(
        &cfg,
        serve_config(port, &db, &dir, &server_extra, "")
            + &user_without_secret("acme_app", common::ACME.id),
    )
    .unwrap();
    let mut child = spawn_serve(&cfg);
    let first = connect_when_up(&serve_url(port, &db, "acme_app")).await;
    first.query_one("select 1", &[]).await.unwrap();
    // The secret changes in the auth_file only; SIGHUP makes it the one that logs in.
    std::fs::write(
        &users,
        format!("\"acme_app\" \"{}\"\n", scram("a-new-secret")),
    )
    .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let new_url =
        format!("host=127.0.0.1 port={port} user=acme_app password=a-new-secret dbname={db}");
    let mut switched = false;
    for _ in 0..50 {
        if tokio_postgres::connect(&new_url, tokio_postgres::NoTls)
            .await
            .is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the new secret logs in after SIGHUP");
    let Err(old) =
        tokio_postgres::connect(&serve_url(port, &db, "acme_app"), tokio_postgres::NoTls).await
    else {
        panic!("the old secret still logs in");
    };
    assert_sqlstate(&old, "28P01");
    // A session opened before the reload goes on.
    first.query_one("select 1", &[]).await.unwrap();
    // A duplicate secret (also in [[users]]) is refused at reload: the running one stays.
    std::fs::write(
        &cfg,
        serve_config(port, &db, &dir, &server_extra, "") + &fixed_user("acme_app", common::ACME.id),
    )
    .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (c, conn) = tokio_postgres::connect(&new_url, tokio_postgres::NoTls)
        .await
        .expect("a refused reload keeps the running users");
    tokio::spawn(conn);
    c.query_one("select 1", &[]).await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("also has a password or scram in [[users]]"),
        "{err}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shutdown_stops_serve() {
    let db = common::fresh_database("shutdown");
    let dir = std::env::temp_dir().join(format!("tg-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    support::remove_at_exit(&dir);
    let cfg = dir.join("tenantgate.toml");
    let port = support::free_port();
    std::fs::write(
        &cfg,
        serve_config(port, &db, &dir, "", "")
            + &fixed_user("acme_app", common::ACME.id)
            + &format!(
                "[[users]]\nname = \"tgadmin\"\npassword = \"{}\"\nkind = \"admin\"\n",
                support::PW
            ),
    )
    .unwrap();
    let mut child = spawn_serve(&cfg);
    let app = connect_when_up(&serve_url(port, &db, "acme_app")).await;
    app.query_one("select 1", &[]).await.unwrap();
    let admin = connect_when_up(&serve_url(port, "tenantgate", "tgadmin")).await;
    // SHUTDOWN answers nothing (as PgBouncer): the connection ends with the process.
    let _ = tokio::time::timeout(Duration::from_secs(10), admin.simple_query("SHUTDOWN")).await;
    let mut exited = None;
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "serve exits after SHUTDOWN: {exited:?}"
    );
}
