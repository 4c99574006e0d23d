//! The Prometheus `pgbouncer_exporter` against the console: every query the exporter runs
//! (prometheus-community/pgbouncer_exporter, `collector.go`), checked with the exporter's own
//! expectations of each answer, after decoding values as its driver (lib/pq) does.
//!
//! No binary of it can be installed here (it is Go, packaged for neither pip, npm nor Debian;
//! Debian's `prometheus-pgbouncer-exporter` is another, older exporter that reads PgBouncer 1.7's
//! columns, `total_requests` and `reserve_pool`, and fails against current PgBouncer as well),
//! so this test is the exporter's scrape written down: the queries in its order, the column
//! counts and names it insists on, and which columns it turns into labels (they must decode to
//! a string or an integer) or into metrics (they must decode to a number, or NULL).

mod common;
mod support;

use support::raw::{Msg, Raw};
use support::{start, Opts, PW};

/// A value as lib/pq's text-format decoder hands it to `database/sql`.
#[derive(Debug, PartialEq)]
enum Decoded {
    /// `string` (text, varchar, char).
    Str(String),
    /// `int64` (int2, int4, int8).
    Int(i64),
    /// `float64` (float4, float8).
    Float(f64),
    /// `[]byte` (every other type, numeric included).
    Bytes(String),
    /// `nil`.
    Null,
}

fn decode(oid: u32, v: Option<&str>) -> Decoded {
    let Some(v) = v else {
        return Decoded::Null;
    };
    match oid {
        18 | 25 | 1043 => Decoded::Str(v.to_owned()),
        20 | 21 | 23 => Decoded::Int(v.parse().expect("lib/pq parses an integer column")),
        700 | 701 => Decoded::Float(v.parse().expect("lib/pq parses a float column")),
        _ => Decoded::Bytes(v.to_owned()),
    }
}

/// The exporter's `dbToFloat64`: whether a metric column converts.
fn converts(d: &Decoded) -> bool {
    match d {
        Decoded::Int(_) | Decoded::Float(_) | Decoded::Null => true,
        Decoded::Str(s) | Decoded::Bytes(s) => s.parse::<f64>().is_ok(),
    }
}

/// The exporter's label switch: int, int64, float64, string or nil; anything else is
/// "unhandled type".
fn labels_ok(d: &Decoded) -> bool {
    !matches!(d, Decoded::Bytes(_))
}

struct Answer {
    cols: Vec<(String, u32)>,
    rows: Vec<Vec<Option<String>>>,
}

impl Answer {
    fn idx(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|(n, _)| n == name)
    }

    fn decoded(&self, row: &[Option<String>], name: &str) -> Option<Decoded> {
        let i = self.idx(name)?;
        Some(decode(self.cols[i].1, row[i].as_deref()))
    }
}

async fn ask(r: &mut Raw, sql: &str) -> Answer {
    let msgs: Vec<Msg> = r.query(sql).round(1).await;
    let errors: Vec<_> = msgs.iter().filter(|m| m.tag == b'E').collect();
    assert!(errors.is_empty(), "{sql}: {errors:?}");
    Answer {
        cols: msgs
            .iter()
            .find(|m| m.tag == b'T')
            .map(Msg::columns)
            .unwrap_or_default(),
        rows: msgs
            .iter()
            .filter(|m| m.tag == b'D')
            .map(Msg::cells)
            .collect(),
    }
}

/// One `queryNamespaceMapping`: labels decode, mapped metrics convert. Returns the columns the
/// exporter maps that the answer does not have.
fn namespace(a: &Answer, labels: &[&str], metrics: &[&str]) -> Vec<String> {
    assert!(!a.rows.is_empty());
    for row in &a.rows {
        for l in labels {
            if let Some(d) = a.decoded(row, l) {
                assert!(labels_ok(&d), "label {l}: unhandled type {d:?}");
            }
        }
        for m in metrics {
            if let Some(d) = a.decoded(row, m) {
                assert!(converts(&d), "metric {m}: {d:?} does not convert");
            }
        }
    }
    labels
        .iter()
        .chain(metrics)
        .filter(|c| a.idx(c).is_none())
        .map(|c| c.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgbouncer_exporter_scrape_succeeds() {
    let p = start(Opts {
        extra: format!("[[users]]\nname = \"exporter\"\npassword = \"{PW}\"\nkind = \"admin\"\n"),
        ..Opts::default()
    })
    .await;
    let c = p.connect("acme_app").await;
    common::count(&c, "customers").await;
    // The exporter's default DSN names PgBouncer's console database, `pgbouncer`.
    let mut r = Raw::connect(p.addr.port(), "exporter", PW, "pgbouncer").await;

    // getDB pings with SHOW STATS.
    ask(&mut r, "SHOW STATS").await;

    // queryVersion: exactly one column, named version, scanned into a string.
    let v = ask(&mut r, "SHOW VERSION;").await;
    assert_eq!(v.cols.len(), 1);
    assert_eq!(v.cols[0].0, "version");
    assert!(matches!(
        v.decoded(&v.rows[0], "version"),
        Some(Decoded::Str(_))
    ));

    // queryShowLists: exactly two columns; every item parses as a float.
    let l = ask(&mut r, "SHOW LISTS;").await;
    assert_eq!(l.cols.len(), 2);
    let known = [
        "databases",
        "users",
        "pools",
        "free_clients",
        "used_clients",
        "login_clients",
        "free_servers",
        "used_servers",
        "dns_names",
        "dns_zones",
        "dns_queries",
    ];
    for row in &l.rows {
        assert!(
            row[1].as_deref().unwrap_or("x").parse::<f64>().is_ok(),
            "{row:?}"
        );
    }
    let names: Vec<_> = l.rows.iter().filter_map(|r| r[0].clone()).collect();
    for k in known {
        assert!(names.iter().any(|n| n == k), "SHOW LISTS lacks {k}");
    }

    // queryShowConfig: three or four columns; the keys it exports parse as floats.
    let cfg = ask(&mut r, "SHOW CONFIG;").await;
    assert!(matches!(cfg.cols.len(), 3 | 4), "{:?}", cfg.cols);
    for row in &cfg.rows {
        if matches!(
            row[0].as_deref(),
            Some("max_client_conn" | "max_user_connections")
        ) {
            assert!(
                row[1].as_deref().unwrap_or("x").parse::<f64>().is_ok(),
                "{row:?}"
            );
        }
    }

    // queryShowClients: database, user and state must exist.
    let cl = ask(&mut r, "SHOW CLIENTS;").await;
    for col in ["database", "user", "state", "application_name"] {
        assert!(cl.idx(col).is_some(), "SHOW CLIENTS lacks {col}");
    }
    assert!(!cl.rows.is_empty());

    // The three namespaces, with the exporter's label and metric columns.
    let db = ask(&mut r, "SHOW DATABASES;").await;
    let missing = namespace(
        &db,
        &[
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_mode",
        ],
        &[
            "pool_size",
            "reserve_pool",
            "reserve_pool_size",
            "max_connections",
            "current_connections",
            "paused",
            "disabled",
        ],
    );
    // `reserve_pool` is the column's name before PgBouncer 1.21; the exporter maps both.
    assert_eq!(missing, ["reserve_pool"]);
    let st = ask(&mut r, "SHOW STATS_TOTALS;").await;
    let missing = namespace(
        &st,
        &["database"],
        &[
            "query_count",
            "query_time",
            "bytes_received",
            "requests",
            "bytes_sent",
            "wait_time",
            "xact_count",
            "xact_time",
            "client_parse_count",
            "server_parse_count",
            "bind_count",
            "server_assignment_count",
        ],
    );
    // `requests` is the pre-1.8 name of query_count.
    assert_eq!(missing, ["requests"]);
    let ours = st
        .rows
        .iter()
        .find(|r| r[0].as_deref() == Some(p.db.as_str()))
        .expect("the database's row");
    assert!(
        matches!(st.decoded(ours, "xact_count"), Some(Decoded::Bytes(n)) if n.parse::<u64>().unwrap() >= 1)
    );
    let pools = ask(&mut r, "SHOW POOLS;").await;
    let missing = namespace(
        &pools,
        &["database", "user"],
        &[
            "cl_active",
            "cl_active_cancel_req",
            "cl_waiting",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
        ],
    );
    assert!(missing.is_empty(), "{missing:?}");
    p.stop().await;
}
