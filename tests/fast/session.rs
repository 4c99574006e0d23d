//! The session around the data path: refusals at login (unknown database), a session without a
//! tenant failing closed, session pooling and its reset, oversized client messages.

use crate::harness::*;
use crate::raw::Raw;
use crate::scripted::*;

#[tokio::test]
async fn an_unknown_database_is_refused_with_postgres_wording_before_any_server_work() {
    let f = Fast::start(Script::default()).await;
    let mut c = Raw::over(f.duplex());
    c.startup(&[("user", "acme_app"), ("database", "nope")])
        .await;
    let err = c.authenticate_until_error(PW).await;
    assert_eq!(err.code().as_deref(), Some("3D000"));
    assert_eq!(
        err.field(b'M').as_deref(),
        Some("database \"nope\" does not exist")
    );
    assert!(c.closed_after().await.0);
    assert_eq!(f.upstream.opened(), 0);
}

#[tokio::test]
async fn a_session_without_a_tenant_fails_closed_and_sends_nothing() {
    let f = Fast::start(Script::default()).await;
    let c = f.connect("shared_app").await;
    let e = expect_sqlstate(c.simple_query("select tenantless").await, "42501");
    assert_eq!(
        e.message(),
        "tenantgate: no tenant context for this session"
    );
    expect_sqlstate(c.query("select tenantless", &[]).await, "42501");
    assert!(
        !f.upstream.saw("tenantless"),
        "a statement without tenant reached the server"
    );
    // With a tenant chosen at login (`user.tenant`), the same user is served.
    let chosen = f.connect(&format!("shared_app.{GLOBEX}")).await;
    chosen.simple_query("select 1").await.expect("served");
    assert!(f
        .upstream
        .conns()
        .iter()
        .any(|l| l.tenants_set() == [Some(GLOBEX.to_owned())]));
}

#[tokio::test]
async fn session_pooling_keeps_one_connection_and_resets_it_on_release() {
    let f = Fast::with(Script::default(), |c| {
        c.upstream.pool_mode = tenantgate::config::PoolMode::Session;
    })
    .await;
    let c = f.connect("acme_app").await;
    for _ in 0..3 {
        c.batch_execute("begin; select 1; commit")
            .await
            .expect("txn");
    }
    assert_eq!(f.upstream.opened(), 1);
    drop(c);
    wait_until("the connection back in the pool", || f.idle() == 1).await;
    let log = f.upstream.conn(0);
    assert_eq!(log.sql().last().map(String::as_str), Some("DISCARD ALL"));
    assert_eq!(
        log.tenants_set().len(),
        1,
        "one prelude for the whole session"
    );
}

#[tokio::test]
async fn an_oversized_client_message_ends_the_session_with_08p01() {
    let f = Fast::with(Script::default(), |c| c.server.max_message_size = 4096).await;
    let mut c = f.raw("acme_app").await;
    let big = format!("select '{}'", "x".repeat(8192));
    c.query(&big).flush().await;
    let (closed, got) = c.closed_after().await;
    assert!(closed);
    assert_eq!(crate::raw::codes(&got), ["08P01"]);
    assert!(!f.upstream.saw("xxxx"));
}
