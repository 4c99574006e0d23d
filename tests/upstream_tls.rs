//! TLS to PostgreSQL: `require` encrypts, `verify-full` checks the chain and the host name.

mod common;
use common::count;
mod support;

use std::os::unix::fs::PermissionsExt;

use support::Opts;

/// Turns on SSL in a private cluster with a CA-signed certificate for `localhost`; returns
/// the cluster and the CA's PEM path.
fn ssl_cluster() -> (tenantgate_pgcluster::PgCluster, std::path::PathBuf) {
    let cluster = tenantgate_pgcluster::PgCluster::start(Default::default()).expect("cluster");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tenantgate test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let data = cluster.data_dir().to_path_buf();
    let (crt, kf) = (data.join("server.crt"), data.join("server.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&kf, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        let pw = std::process::Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&pw.stdout).trim().parse().unwrap();
        let gw = std::process::Command::new("id")
            .args(["-g", "postgres"])
            .output()
            .unwrap();
        let gid: u32 = String::from_utf8_lossy(&gw.stdout).trim().parse().unwrap();
        std::os::unix::fs::chown(&crt, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(&kf, Some(uid), Some(gid)).unwrap();
    }
    cluster
        .psql(
            "postgres",
            "alter system set ssl = on; select pg_reload_conf();",
        )
        .expect("enable ssl");
    // The reload is asynchronous: wait until new backends see it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cluster
        .psql("postgres", "show ssl")
        .is_ok_and(|s| s.trim() == "on")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "ssl = on never took effect"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cluster.create_database("app", None).unwrap();
    cluster.psql("app", common::SCHEMA_SQL).unwrap();
    let ca_path = std::env::temp_dir().join(format!("tg-upstream-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    support::remove_at_exit(&ca_path);
    (cluster, ca_path)
}

async fn ssl_in_use(p: &support::TestProxy) -> bool {
    let c = p.connect("acme_app").await;
    let n = count(&c, "customers").await;
    assert_eq!(n, common::ACME.customers);
    // pg_stat_ssl shows every backend of the shared role: only a monitoring user may read it.
    let c = p.connect("monitor_app").await;
    c.query_one(
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_require_and_verify_full() {
    let (cluster, ca) = ssl_cluster();
    let port = cluster.port();
    // The test proxy points at the shared cluster by default; override host/port in the text.
    for (mode, host, extra) in [
        ("require", "127.0.0.1", String::new()),
        (
            "verify-full",
            "localhost",
            format!("tls_ca = \"{}\"", ca.display()),
        ),
    ] {
        let o = Opts {
            upstream_extra: format!("tls = \"{mode}\"\n{extra}"),
            extra: support::monitor_user_toml(),
            ..Opts::default()
        };
        let p = start_custom(&o, host, port).await;
        assert!(
            ssl_in_use(&p).await,
            "{mode}: upstream connection is not encrypted"
        );
        p.stop().await;
    }
    // verify-full with the wrong CA refuses the upstream (clients get an error, no plaintext).
    let wrong = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let wrong_path = std::env::temp_dir().join(format!("tg-wrong-ca-{}.pem", std::process::id()));
    std::fs::write(&wrong_path, wrong.cert.pem()).unwrap();
    support::remove_at_exit(&wrong_path);
    let o = Opts {
        upstream_extra: format!(
            "tls = \"verify-full\"\ntls_ca = \"{}\"\nconnect_timeout = 2",
            wrong_path.display()
        ),
        pool_timeout: 3.0,
        ..Opts::default()
    };
    let p = start_custom(&o, "localhost", port).await;
    let r = tokio::time::timeout(std::time::Duration::from_secs(8), async {
        match p.try_connect("acme_app", support::PW).await {
            Err(_) => true,
            Ok(c) => c.query_one("select 1::int", &[]).await.is_err(),
        }
    })
    .await;
    // Either refused, or held back (never served) until the test gave up.
    let failed = r.unwrap_or(true);
    assert!(failed, "a server with an untrusted certificate was used");
    p.stop().await;
    drop(cluster);
}

/// Starts a proxy whose upstream is `host:port` / database `app`.
async fn start_custom(o: &Opts, host: &str, port: u16) -> support::TestProxy {
    support::start_edited("app".into(), o, |text| {
        text.replace("host = \"127.0.0.1\"", &format!("host = \"{host}\""))
            .replace(
                &format!("port = {}\n", common::cluster().port()),
                &format!("port = {port}\n"),
            )
    })
    .await
    .expect("proxy starts")
}
