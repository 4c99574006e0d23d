//! The relay and the release policy when the server misbehaves: a server that dies, ends the
//! session with a FATAL or sends what was not asked for mid-transaction never has its
//! connection pooled again; a refused statement is replaced in place (the poison) and its
//! text never reaches the server.

use crate::harness::*;
use crate::raw::{status, Raw};
use crate::scripted::*;

/// A client in a transaction whose next statement, `select <trigger>`, the server answers
/// with `reply`: the error the client gets, and the proxy's pool afterwards.
async fn mid_transaction(reply: Reply) -> (Fast, tokio_postgres::Error) {
    let f = Fast::start(Script::default().when("trigger", reply)).await;
    let c = f.connect("acme_app").await;
    c.simple_query("begin").await.expect("begin");
    c.simple_query("select 1").await.expect("select");
    let err = c
        .simple_query("select trigger")
        .await
        .expect_err("the server failed");
    (f, err)
}

/// The failed connection is closed, never pooled, and the next session gets a fresh one (with
/// its own prelude).
async fn not_pooled_again(f: &Fast) {
    wait_until("the failed server connection to be closed", || {
        f.upstream.conn(0).closed
    })
    .await;
    assert_eq!(f.idle(), 0, "a failed connection went back to the pool");
    let next = f.connect("globex_app").await;
    next.simple_query("select 2").await.expect("next session");
    assert_eq!(f.upstream.opened(), 2);
    assert_eq!(f.upstream.conn(1).tenants_set(), [Some(GLOBEX.to_owned())]);
}

#[tokio::test]
async fn a_server_that_dies_mid_transaction_ends_the_session_and_is_not_pooled() {
    let (f, err) = mid_transaction(Reply::Drop).await;
    assert_sqlstate(&err, "08006");
    not_pooled_again(&f).await;
}

#[tokio::test]
async fn a_server_fatal_is_forwarded_and_the_connection_is_not_pooled() {
    let (f, err) = mid_transaction(Reply::Fatal {
        code: "57P01".into(),
        message: "terminating connection due to administrator command".into(),
    })
    .await;
    assert_sqlstate(&err, "57P01");
    not_pooled_again(&f).await;
}

#[tokio::test]
async fn a_message_answering_nothing_ends_the_session_and_is_not_pooled() {
    // The statement's answer, then a ParseComplete nobody asked for: the server and the proxy
    // no longer agree on the stream, so nothing after it can be trusted.
    let mut answer = b"C\0\0\0\x0dSELECT 0\0Z\0\0\0\x05T".to_vec();
    answer.extend_from_slice(b"1\0\0\0\x04");
    let f = Fast::start(Script::default().when("trigger", Reply::Raw(answer))).await;
    let mut c = f.raw("acme_app").await;
    c.query("begin").round(1).await;
    let got = c.query("select trigger").round(1).await;
    assert_eq!(status(&got), Some(b'T'));
    let (closed, got) = c.closed_after().await;
    assert!(
        closed,
        "the session goes on after a server broke the protocol"
    );
    assert_eq!(crate::raw::codes(&got), ["08006"]);
    not_pooled_again(&f).await;
}

#[tokio::test]
async fn a_malformed_frame_mid_transaction_ends_the_session_and_is_not_pooled() {
    // A length field below 4: no frame at all (the server's socket stays open).
    let (f, err) = mid_transaction(Reply::Raw(b"D\0\0\0\x01".to_vec())).await;
    assert_sqlstate(&err, "08006");
    not_pooled_again(&f).await;
}

#[tokio::test]
async fn a_client_gone_mid_transaction_has_its_transaction_rolled_back_before_reuse() {
    let f = Fast::start(Script::default()).await;
    let c = f.connect("acme_app").await;
    c.simple_query("begin").await.expect("begin");
    c.simple_query("select 1").await.expect("select");
    drop(c);
    wait_until("the connection back in the pool", || f.idle() == 1).await;
    let log = f.upstream.conn(0);
    assert_eq!(log.sql().last().map(String::as_str), Some("ROLLBACK"));
    assert!(!log.closed);
}

#[tokio::test]
async fn a_refused_statement_is_poisoned_in_place_and_never_reaches_the_server() {
    let f = Fast::start(Script::default()).await;
    let mut c = f.raw("acme_app").await;
    let got = c.query("begin").round(1).await;
    assert_eq!(status(&got), Some(b'T'));
    // An app user may not change its tenant: refused, and PostgreSQL itself aborts the block
    // at exactly this place (the poison's syntax error, replaced by the refusal).
    let got = c.query("set app.tenant_id = 'evil_tenant'").round(1).await;
    let err = got.iter().find(|m| m.tag == b'E').expect("refused");
    assert_ne!(
        err.code().as_deref(),
        Some("42601"),
        "the poison's own error leaked"
    );
    assert!(!err.field(b'M').unwrap_or_default().contains(POISON));
    assert_eq!(status(&got), Some(b'E'));
    let got = c.query("rollback").round(1).await;
    assert_eq!(status(&got), Some(b'I'));
    let log = f.upstream.conn(0);
    assert!(log.saw(POISON), "{:?}", log.sql());
    assert!(!log.saw("evil_tenant"), "{:?}", log.sql());
    let _: Raw = c;
}

#[tokio::test]
async fn a_server_that_dies_during_a_statement_outside_a_transaction_is_not_pooled() {
    // The example of docs/architecture.md ("Testing").
    let f = Fast::start(Script::default().when("select trigger", Reply::Drop)).await;
    let c = f.connect("acme_app").await;
    expect_sqlstate(c.simple_query("select trigger").await, "08006");
    assert_eq!(f.upstream.conn(0).tenants_set(), [Some(ACME.to_owned())]);
    assert_eq!(f.idle(), 0);
}
