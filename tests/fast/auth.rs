//! SCRAM-SHA-256 client authentication: a good password logs in, a wrong one or an unknown
//! user gets PostgreSQL's 28P01, and nothing reaches the server before authentication.

use crate::harness::*;
use crate::scripted::*;

#[tokio::test]
async fn scram_login_succeeds_and_queries_run() {
    let f = Fast::start(Script::default()).await;
    let c = f.connect("acme_app").await;
    let rows = c.simple_query("select 1").await.expect("query");
    assert!(!rows.is_empty());
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_28p01_and_reach_nothing() {
    let f = Fast::start(Script::default()).await;
    let e = expect_sqlstate(f.try_connect("acme_app", "wrong").await, "28P01");
    assert_eq!(
        e.message(),
        "password authentication failed for user \"acme_app\""
    );
    // An unknown user is refused the same way (after a full SCRAM exchange against a mock
    // verifier), so a client cannot tell which users exist.
    let e = expect_sqlstate(f.try_connect("nobody", PW).await, "28P01");
    assert_eq!(
        e.message(),
        "password authentication failed for user \"nobody\""
    );
    assert_eq!(
        f.upstream.opened(),
        0,
        "no server connection before authentication"
    );
}
