//! SHOW STATS / STATS_TOTALS / STATS_AVERAGES / TOTALS, with PgBouncer's columns: one row per
//! database (the pools of the upstream database summed, and the console's, all zero), totals
//! since start and averages over the last [`crate::pool::stats::STATS_PERIOD`]. Times are in
//! microseconds and every figure is `numeric`, as PgBouncer sends them.
//!
//! Not counted: `server_parse_count` (the proxy's own Parse messages upstream) and
//! `client_login_count`; they are NULL.

use bytes::BytesMut;

use super::show::{db, pools};
use super::table::{self, Ty, Val};
use super::DATABASE;
use crate::pool::StatsSnapshot;
use crate::shared::Shared;

/// The figures of one row, in PgBouncer's order (server_parse_count and client_login_count
/// are NULL).
fn figures(s: &StatsSnapshot) -> Vec<Val> {
    vec![
        s.server_assignment_count.into(),
        s.xact_count.into(),
        s.query_count.into(),
        s.bytes_received.into(),
        s.bytes_sent.into(),
        s.xact_time.into(),
        s.query_time.into(),
        s.wait_time.into(),
        s.client_parse_count.into(),
        Val::Null,
        s.bind_count.into(),
        Val::Null,
    ]
}

/// The figure names without prefix, in PgBouncer's order.
const NAMES: [&str; 12] = [
    "server_assignment_count",
    "xact_count",
    "query_count",
    "received",
    "sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
    "client_login_count",
];

/// Totals and averages of the upstream database (its pools summed).
fn database_figures(shared: &Shared) -> (StatsSnapshot, StatsSnapshot, [u64; 3]) {
    let (mut t, mut a) = (StatsSnapshot::default(), StatsSnapshot::default());
    let mut extra = [0u64; 3];
    for p in pools(shared) {
        add(&mut t, &p.stats.totals());
        add(&mut a, &p.stats.averages());
        let l = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        extra[0] += l(&p.stats.checkouts);
        extra[1] += l(&p.stats.opened);
        extra[2] += l(&p.stats.closed);
    }
    (t, a, extra)
}

fn add(into: &mut StatsSnapshot, s: &StatsSnapshot) {
    into.server_assignment_count += s.server_assignment_count;
    into.xact_count += s.xact_count;
    into.query_count += s.query_count;
    into.bytes_received += s.bytes_received;
    into.bytes_sent += s.bytes_sent;
    into.xact_time += s.xact_time;
    into.query_time += s.query_time;
    into.wait_time += s.wait_time;
    into.client_parse_count += s.client_parse_count;
    into.bind_count += s.bind_count;
}

/// Column list: `database`, then `prefix` + each name (`received`/`sent` as PgBouncer
/// spells them in each command), then tenantgate's `extra` columns.
fn columns(names: &[String], extra: &[&'static str]) -> Vec<(String, Ty)> {
    std::iter::once(("database".to_owned(), Ty::Text))
        .chain(names.iter().map(|n| (n.clone(), Ty::Numeric)))
        .chain(extra.iter().map(|n| ((*n).to_owned(), Ty::Numeric)))
        .collect()
}

fn write(out: &mut BytesMut, cols: &[(String, Ty)], rows: Vec<Vec<Val>>) {
    let cols: Vec<(&str, Ty)> = cols.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    table::write(out, &cols, rows);
}

/// `total_`/`avg_` names for SHOW STATS (`total_received`, `avg_recv`).
fn stats_names(prefix: &str) -> Vec<String> {
    NAMES
        .iter()
        .map(|n| match (prefix, *n) {
            ("avg_", "received") => "avg_recv".to_owned(),
            _ => format!("{prefix}{n}"),
        })
        .collect()
}

/// Names for STATS_TOTALS and STATS_AVERAGES (`bytes_received`, `bytes_sent`; the averages
/// name the parse and bind counts `avg_…`).
fn plain_names(averages: bool) -> Vec<String> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| match *n {
            "received" | "sent" => format!("bytes_{n}"),
            _ if averages && i >= 8 => format!("avg_{n}"),
            _ => (*n).to_owned(),
        })
        .collect()
}

fn zero_row(len: usize) -> Vec<Val> {
    std::iter::once(DATABASE.into())
        .chain(std::iter::repeat_n(Val::Int(0), len))
        .collect()
}

/// SHOW STATS, with tenantgate's earlier columns (`total_checkouts`,
/// `total_server_opened`, `total_server_closed`) after PgBouncer's.
pub(super) fn stats(shared: &Shared, out: &mut BytesMut) {
    let (t, a, extra) = database_figures(shared);
    let mut names = stats_names("total_");
    names.extend(stats_names("avg_"));
    let extra_names = [
        "total_checkouts",
        "total_server_opened",
        "total_server_closed",
    ];
    let mut row: Vec<Val> = vec![db(shared).into()];
    row.extend(figures(&t));
    row.extend(figures(&a));
    row.extend(extra.iter().map(|n| Val::from(*n)));
    let rows = vec![row, zero_row(names.len() + extra_names.len())];
    write(out, &columns(&names, &extra_names), rows);
}

/// SHOW STATS_TOTALS.
pub(super) fn totals_per_database(shared: &Shared, out: &mut BytesMut) {
    let (t, _, _) = database_figures(shared);
    let names = plain_names(false);
    let mut row: Vec<Val> = vec![db(shared).into()];
    row.extend(figures(&t));
    write(out, &columns(&names, &[]), vec![row, zero_row(names.len())]);
}

/// SHOW STATS_AVERAGES.
pub(super) fn averages_per_database(shared: &Shared, out: &mut BytesMut) {
    let (_, a, _) = database_figures(shared);
    let names = plain_names(true);
    let mut row: Vec<Val> = vec![db(shared).into()];
    row.extend(figures(&a));
    write(out, &columns(&names, &[]), vec![row, zero_row(names.len())]);
}

/// SHOW TOTALS: every total and average over all databases, one per row (name, value).
pub(super) fn totals(shared: &Shared, out: &mut BytesMut) {
    let (t, a, _) = database_figures(shared);
    // PgBouncer names these rows after its struct fields.
    let field = |n: &str| match n {
        "received" => "client_bytes".to_owned(),
        "sent" => "server_bytes".to_owned(),
        "client_parse_count" | "server_parse_count" | "bind_count" => format!("ps_{n}"),
        _ => n.to_owned(),
    };
    let total_names = NAMES.iter().map(|n| format!("total_{}", field(n)));
    let avg_names = NAMES.iter().map(|n| format!("avg_{}", field(n)));
    let rows = total_names
        .zip(figures(&t))
        .chain(avg_names.zip(figures(&a)))
        .map(|(n, v)| vec![n.into(), v])
        .collect();
    table::write(out, &[("name", Ty::Text), ("value", Ty::Numeric)], rows);
}
