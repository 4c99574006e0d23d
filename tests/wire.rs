//! Wire core against a real PostgreSQL: clients cannot tell the proxy from Postgres.

mod common;
mod support;

use support::{start, stderr, stdout, Opts, PW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_select_through_proxy() {
    let p = start(Opts::default()).await;
    let out = p.psql("acme_app", &["-c", "select 41+1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "42");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_postgres_message() {
    let p = start(Opts::default()).await;
    let err = p.try_connect("acme_app", "wrong").await.err().expect("refused");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "28P01");
    assert_eq!(db.message(), "password authentication failed for user \"acme_app\"");
    let err = p.try_connect("nobody", PW).await.err().expect("unknown user refused");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("28P01"));
    p.stop().await;
}
