//! PROXY protocol v2: the real client address reaches security events; untrusted headers fail.

mod common;
mod support;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::{start, Opts, PW};

async fn connect_with_header(
    p: &support::TestProxy,
    header: &[u8],
    user: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(header).await.unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(user).password(PW).dbname(&p.db);
    let (client, conn) = cfg.connect_raw(s, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_header_sets_client_addr_in_events() {
    let p = start(Opts {
        server_extra: "proxy_protocol = true\nproxy_trusted = [\"127.0.0.0/8\"]".into(),
        ..Opts::default()
    })
    .await;
    let h = tenantgate::proxy_protocol::encode_v4(
        "203.0.113.7:55555".parse().unwrap(),
        "10.0.0.2:6432".parse().unwrap(),
    );
    let c = connect_with_header(&p, &h, "acme_app")
        .await
        .expect("trusted header accepted");
    assert!(c.simple_query("set role postgres").await.is_err());
    let ev = p.events_named("role_tamper").await;
    assert_eq!(ev[0]["client_addr"], "203.0.113.7:55555");
    // A trusted peer without a header (a health check) is served with its own address.
    let plain = p.connect("acme_app").await;
    plain.query_one("select 1::int", &[]).await.unwrap();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_header_is_refused() {
    let p = start(Opts {
        server_extra: "proxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\"]".into(),
        ..Opts::default()
    })
    .await;
    let h = tenantgate::proxy_protocol::encode_v4(
        "203.0.113.7:55555".parse().unwrap(),
        "10.0.0.2:6432".parse().unwrap(),
    );
    assert!(connect_with_header(&p, &h, "acme_app").await.is_err());
    // Without a header the same peer is an ordinary client.
    let c = p.connect("acme_app").await;
    c.query_one("select 1::int", &[]).await.unwrap();
    p.stop().await;
}
