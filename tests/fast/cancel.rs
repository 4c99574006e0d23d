//! Cancel routing: a client's CancelRequest (with the proxy-issued key) reaches exactly the
//! server backend running that client's query; unknown keys reach nothing; a query still
//! waiting for a connection is cancelled without bothering the server.

use tokio::io::AsyncWriteExt;

use crate::harness::*;
use crate::raw::Raw;
use crate::scripted::*;

fn hanging() -> Script {
    Script::default().when("hang", Reply::Hang)
}

/// The index of the server connection whose log contains `needle`.
fn conn_running(f: &Fast, needle: &str) -> usize {
    f.upstream
        .conns()
        .iter()
        .position(|l| l.saw(needle))
        .unwrap_or_else(|| panic!("no server connection ran {needle:?}"))
}

#[tokio::test]
async fn a_cancel_reaches_the_backend_running_the_clients_query() {
    let f = Fast::start(hanging()).await;
    // Another session holds a connection of its own in a transaction.
    let other = f.connect("globex_app").await;
    other.simple_query("begin").await.expect("begin");
    let c = f.connect("acme_app").await;
    let token = c.cancel_token();
    let query = tokio::spawn(async move { c.simple_query("select hang").await.map(|_| ()) });
    wait_until("the query to reach the server", || f.upstream.saw("hang")).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    expect_sqlstate(within(query).await.expect("task"), "57014");
    let target = f.upstream.conn(conn_running(&f, "hang"));
    assert_eq!(f.upstream.cancels(), [(target.pid, target.secret)]);
    other
        .simple_query("commit")
        .await
        .expect("the other session is untouched");
}

#[tokio::test]
async fn a_cancel_with_an_unknown_key_reaches_nothing() {
    let f = Fast::start(hanging()).await;
    let c = f.connect("acme_app").await;
    let token = c.cancel_token();
    let query = tokio::spawn(async move { c.simple_query("select hang").await.map(|_| ()) });
    wait_until("the query to reach the server", || f.upstream.saw("hang")).await;
    // A guessed key, and the server's own key (which a client never sees): both ignored.
    let target = f.upstream.conn(conn_running(&f, "hang"));
    for (pid, secret) in [(12345, 67890), (target.pid, target.secret)] {
        let mut io = f.duplex();
        let mut b = 16i32.to_be_bytes().to_vec();
        b.extend_from_slice(&80877102i32.to_be_bytes());
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&secret.to_be_bytes());
        io.write_all(&b).await.unwrap();
        let (closed, got) = Raw::over(io).closed_after().await;
        assert!(
            closed && got.is_empty(),
            "a cancel connection gets no answer"
        );
    }
    // The real key still works, and is the only cancel the server saw.
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    expect_sqlstate(within(query).await.expect("task"), "57014");
    assert_eq!(f.upstream.cancels(), [(target.pid, target.secret)]);
}

#[tokio::test]
async fn a_query_waiting_for_a_connection_is_cancelled_without_reaching_the_server() {
    let f = Fast::with(hanging(), |c| c.upstream.pool_size = 1).await;
    let holder = f.connect("globex_app").await;
    holder.simple_query("begin").await.expect("begin");
    let c = f.connect("acme_app").await;
    let token = c.cancel_token();
    let query = tokio::spawn(async move { c.simple_query("select waiting").await.map(|_| ()) });
    wait_until("the query to queue for the pool", || f.waiting() == 1).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    expect_sqlstate(within(query).await.expect("task"), "57014");
    assert!(f.upstream.cancels().is_empty());
    assert!(!f.upstream.saw("waiting"));
    holder.simple_query("commit").await.expect("holder goes on");
}
