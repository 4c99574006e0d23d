//! Pipelined segments: several Syncs (or Queries) in one write are served one segment at a
//! time, in order, each with its own ReadyForQuery, behind a single prelude.

use crate::harness::*;
use crate::raw::{codes, rows};
use crate::scripted::*;

/// `select N` returns N; `select fail` fails.
fn numbers() -> Script {
    Script::default()
        .when("select fail", Reply::error("XX000", "scripted failure"))
        .on(|s| {
            s.sql
                .strip_prefix("select ")
                .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
                .map(|n| Reply::column("n", &[n]))
        })
}

#[tokio::test]
async fn pipelined_extended_segments_are_answered_in_order() {
    let f = Fast::start(numbers()).await;
    let mut c = f.raw("acme_app").await;
    for n in 1..=3 {
        c.run(&format!("select {n}")).sync();
    }
    let got = c.round(3).await;
    assert_eq!(rows(&got), ["1", "2", "3"]);
    let log = f.upstream.conn(0);
    let client: Vec<String> = log
        .sql()
        .into_iter()
        .filter(|s| s.starts_with("select"))
        .collect();
    assert_eq!(client, ["select 1", "select 2", "select 3"]);
    assert_eq!(
        log.tenants_set().len(),
        1,
        "one prelude for the whole pipeline"
    );
}

#[tokio::test]
async fn an_error_in_one_pipelined_segment_does_not_swallow_the_next() {
    let f = Fast::start(numbers()).await;
    let mut c = f.raw("acme_app").await;
    c.run("select 1").sync();
    c.run("select fail").run("select 99").sync();
    c.run("select 3").sync();
    let got = c.round(3).await;
    assert_eq!(
        rows(&got),
        ["1", "3"],
        "select 99 follows the error: skipped"
    );
    assert_eq!(codes(&got), ["XX000"]);
    let zs = got.iter().filter(|m| m.tag == b'Z').count();
    assert_eq!(zs, 3);
}

#[tokio::test]
async fn a_pipelined_transaction_keeps_its_connection_and_status() {
    let f = Fast::start(numbers()).await;
    let mut c = f.raw("acme_app").await;
    c.query("begin").query("select 7").query("commit");
    let got = c.round(3).await;
    let status: Vec<u8> = got
        .iter()
        .filter(|m| m.tag == b'Z')
        .map(|m| m.body[0])
        .collect();
    assert_eq!(status, b"TTI");
    assert_eq!(rows(&got), ["7"]);
    assert_eq!(f.upstream.opened(), 1);
}

#[tokio::test]
async fn a_driver_pipelining_concurrent_queries_gets_each_its_own_answer() {
    let f = Fast::start(numbers()).await;
    let c = f.connect("acme_app").await;
    // tokio-postgres pipelines queries that are polled together.
    let (a, b, d) = tokio::join!(
        c.query_one("select 1", &[]),
        c.query_one("select 2", &[]),
        c.query_one("select 3", &[]),
    );
    let got: Vec<String> = [a, b, d]
        .into_iter()
        .map(|r| r.expect("row").get::<_, String>(0))
        .collect();
    assert_eq!(got, ["1", "2", "3"]);
}

#[tokio::test]
async fn a_pipelined_segment_waits_for_the_previous_ones_answer_before_it_starts() {
    // `RESET ALL` drops the tenant at session level: the next segment, already in the same
    // write, must not be forwarded before PostgreSQL's ReadyForQuery has been seen, so that it
    // starts as a new transaction and gets the prelude again first.
    let f = Fast::start(numbers()).await;
    let mut c = f.raw("acme_app").await;
    c.query("reset all").query("select 2");
    let got = c.round(2).await;
    assert_eq!(rows(&got), ["2"]);
    let log = f.upstream.conn(0);
    let at = |needle: &str| {
        log.sent
            .iter()
            .position(|m| m.tag == b'Q' && m.sql().is_some_and(|s| s == needle))
            .unwrap_or_else(|| panic!("{needle:?} not sent: {:?}", log.sql()))
    };
    let (reset, select) = (at("reset all"), at("select 2"));
    let reinjected = log.sent[reset..select]
        .iter()
        .any(|m| m.params().get(1).cloned().flatten().as_deref() == Some(ACME));
    assert!(
        reinjected,
        "select 2 ran without the tenant set again: {:?}",
        log.sql()
    );
}
