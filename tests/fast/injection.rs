//! The per-transaction injection: the session's tenant is set on the server connection, and
//! confirmed, before anything of the client's is sent; a failed injection fails closed.

use crate::harness::*;
use crate::scripted::*;

/// Position of the first message on `log` with `tag` whose SQL contains `needle`.
fn position(log: &ConnLog, tag: u8, needle: &str) -> usize {
    log.sent
        .iter()
        .position(|m| m.tag == tag && m.sql().is_some_and(|s| s.contains(needle)))
        .unwrap_or_else(|| panic!("no {} with {needle:?} in {:?}", tag as char, log.sql()))
}

#[tokio::test]
async fn the_tenant_is_set_and_confirmed_before_the_clients_statement() {
    let f = Fast::start(Script::default()).await;
    let c = f.connect("acme_app").await;
    c.simple_query("select 42").await.expect("query");
    let log = f.upstream.conn(0);
    assert_eq!(log.tenants_set(), [Some(ACME.to_owned())]);
    let prelude = position(&log, b'P', PRELUDE_SQL);
    let statement = position(&log, b'Q', "select 42");
    let sync = log.sent[prelude..]
        .iter()
        .position(|m| m.tag == b'S')
        .map(|i| i + prelude)
        .expect("the prelude ends with Sync");
    assert!(
        sync < statement,
        "the client's statement was sent before the prelude's Sync: {:?}",
        log.sent.iter().map(|m| m.tag as char).collect::<String>()
    );
}

#[tokio::test]
async fn a_connection_already_carrying_the_tenant_gets_no_second_prelude() {
    let f = Fast::start(Script::default()).await;
    let c = f.connect("acme_app").await;
    for _ in 0..3 {
        c.simple_query("select 1").await.expect("query");
    }
    assert_eq!(f.upstream.opened(), 1);
    assert_eq!(f.upstream.conn(0).tenants_set(), [Some(ACME.to_owned())]);
}

#[tokio::test]
async fn a_reused_connection_is_switched_to_the_next_sessions_tenant_first() {
    let f = Fast::start(Script::default()).await;
    let acme = f.connect("acme_app").await;
    acme.simple_query("select 'acme'").await.expect("acme");
    let globex = f.connect("globex_app").await;
    globex
        .simple_query("select 'globex'")
        .await
        .expect("globex");
    assert_eq!(
        f.upstream.opened(),
        1,
        "transaction pooling reuses the connection"
    );
    let log = f.upstream.conn(0);
    assert_eq!(
        log.tenants_set(),
        [Some(ACME.to_owned()), Some(GLOBEX.to_owned())]
    );
    // GLOBEX's statement runs after the Bind that set GLOBEX, never under ACME.
    let switched = log
        .sent
        .iter()
        .rposition(|m| m.params().iter().flatten().any(|p| p == GLOBEX))
        .expect("the switch");
    assert!(switched < position(&log, b'Q', "'globex'"));
}

/// A script whose server refuses to set ACME.
fn refusing_acme() -> Script {
    Script::default().on(|s| {
        (s.sql.contains("set_config") && s.params.get(1) == Some(&Some(ACME.to_owned())))
            .then(|| Reply::error("22023", "invalid value for parameter \"app.tenant_id\""))
    })
}

#[tokio::test]
async fn a_failed_injection_fails_closed_in_simple_protocol() {
    let f = Fast::start(refusing_acme()).await;
    let c = f.connect("acme_app").await;
    let e = expect_sqlstate(c.simple_query("select secret_simple").await, "42501");
    assert_eq!(
        e.message(),
        "tenantgate: could not establish the tenant context; the statement was not run"
    );
    // Nothing of the statement reached the server, and the connection is never reused.
    wait_until("the server connection to be closed", || {
        f.upstream.conn(0).closed
    })
    .await;
    assert!(!f.upstream.saw("secret_simple"));
    assert_eq!(f.idle(), 0);
}

#[tokio::test]
async fn a_failed_injection_fails_closed_in_extended_protocol() {
    let f = Fast::start(refusing_acme()).await;
    let c = f.connect("acme_app").await;
    expect_sqlstate(c.query("select secret_extended", &[]).await, "42501");
    // The session goes on: the next statement is refused the same way, on a new connection.
    expect_sqlstate(c.query("select secret_again", &[]).await, "42501");
    let conns = f.upstream.conns();
    assert!(conns.len() >= 2, "a refused connection was reused");
    assert!(
        !conns.iter().any(|l| l.saw("secret_")),
        "{:?}",
        conns[0].sql()
    );
    assert_eq!(f.idle(), 0);
}

#[tokio::test]
async fn a_parameters_only_prelude_keeps_the_connections_identity() {
    let f = Fast::start(Script::default()).await;
    let first = f.connect_with("acme_app", "application_name=first").await;
    first.simple_query("select 1").await.expect("first");
    drop(first);
    // Same tenant, another application_name: only that parameter is refreshed, once.
    let second = f.connect_with("acme_app", "application_name=second").await;
    for _ in 0..2 {
        second.simple_query("select 2").await.expect("second");
    }
    assert_eq!(f.upstream.opened(), 1);
    assert_eq!(
        f.upstream.conn(0).tenants_set(),
        [Some(ACME.to_owned())],
        "the tenant was set again on a connection that carried it"
    );
}
