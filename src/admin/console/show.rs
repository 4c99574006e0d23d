//! SHOW commands about objects: databases, users, pools, clients, servers, lists, memory,
//! state, settings, version and help. Columns, their order and types are PgBouncer's
//! (`admin.c`); tenantgate's own columns come after PgBouncer's.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;

use super::table::{self, Ty, Val};
use super::{Mode, DATABASE};
use crate::config::PoolMode;
use crate::pool::Pool;
use crate::shared::Shared;

use Ty::{Int4, Text};

/// The app pool, then the break-glass pool.
pub(super) fn pools(shared: &Shared) -> Vec<&Arc<Pool>> {
    std::iter::once(&shared.pool)
        .chain(shared.breakglass.iter())
        .collect()
}

/// The database as clients name it (they connect to the upstream database's name).
pub(super) fn db(shared: &Shared) -> String {
    shared.config.upstream.database.clone()
}

fn mode_name(m: PoolMode) -> &'static str {
    match m {
        PoolMode::Transaction => "transaction",
        PoolMode::Session => "session",
    }
}

/// The pool mode a pool serves in (break-glass sessions always hold their connection).
fn pool_mode(shared: &Shared, p: &Pool) -> &'static str {
    if p.name == crate::pool::PoolName::Breakglass {
        "session"
    } else {
        mode_name(shared.config.upstream.pool_mode)
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// SHOW HELP: a notice listing the commands, as PgBouncer sends it.
pub(super) fn help(out: &mut BytesMut) {
    table::notice(
        out,
        "Console usage",
        "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\
         \tSHOW LISTS|MEM|STATE|TENANTS\n\
         \tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n\
         \tRELOAD\n\
         \tPAUSE [<db>]\n\
         \tRESUME [<db>]\n\
         \tRECONNECT [<db>]\n\
         \tKILL [<db>]\n\
         \tSUSPEND\n\
         \tSHUTDOWN\n\
         \tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\
         \tWAIT_CLOSE [<db>]",
    );
    table::complete(out, "SHOW");
}

pub(super) fn version(out: &mut BytesMut) {
    table::write(
        out,
        &[("version", Text)],
        vec![vec![
            format!("tenantgate {}", env!("CARGO_PKG_VERSION")).into()
        ]],
    );
}

/// SHOW DATABASES: the upstream database as clients name it, and the console's.
pub(super) fn databases(shared: &Shared, out: &mut BytesMut) {
    let c = &shared.config;
    let u = &c.upstream;
    let clients = shared.clients.count();
    let db_limits = shared.pool.database();
    let paused = pools(shared).iter().any(|p| p.is_paused());
    let rows = vec![
        vec![
            db(shared).into(),
            u.host.clone().into(),
            u.port.into(),
            u.database.clone().into(),
            u.user.clone().into(),
            u.pool_size.into(),
            u.min_pool_size.into(),
            u.reserve_pool_size.into(),
            (u.server_lifetime as i64).into(),
            mode_name(u.pool_mode).into(),
            Val::Null,
            db_limits.cap().into(),
            db_limits.open().into(),
            c.server.max_client_conn.into(),
            clients.into(),
            paused.into(),
            0i32.into(),
        ],
        vec![
            DATABASE.into(),
            Val::Null,
            c.server.listen.port().into(),
            DATABASE.into(),
            Val::Null,
            0i32.into(),
            0i32.into(),
            0i32.into(),
            0i32.into(),
            "statement".into(),
            Val::Null,
            0i32.into(),
            0i32.into(),
            0i32.into(),
            0i32.into(),
            0i32.into(),
            0i32.into(),
        ],
    ];
    table::write(
        out,
        &[
            ("name", Text),
            ("host", Text),
            ("port", Int4),
            ("database", Text),
            ("force_user", Text),
            ("pool_size", Int4),
            ("min_pool_size", Int4),
            ("reserve_pool_size", Int4),
            ("server_lifetime", Int4),
            ("pool_mode", Text),
            ("load_balance_hosts", Text),
            ("max_connections", Int4),
            ("current_connections", Int4),
            ("max_client_connections", Int4),
            ("current_client_connections", Int4),
            ("paused", Int4),
            ("disabled", Int4),
        ],
        rows,
    );
}

/// SHOW USERS: each configured login (no secrets). A user's "connections" are the server
/// connections its sessions hold right now; `max_user_connections` is the one in force (its
/// own, else `[upstream]`'s; 0: none).
pub(super) fn users(shared: &Shared, out: &mut BytesMut) {
    let live = shared.live();
    let clients = shared.clients.snapshot();
    let held = shared.pool.database().users_held();
    let default_max = live.config.upstream.max_user_connections;
    let rows = live
        .config
        .users
        .iter()
        .map(|u| {
            let mine = clients.iter().filter(|c| c.user == u.name);
            let max = u.max_user_connections.filter(|&n| n > 0);
            vec![
                u.name.clone().into(),
                u.pool_size
                    .map(|n| n.to_string())
                    .unwrap_or_default()
                    .into(),
                "".into(),
                u.pool_mode.map(mode_name).map(str::to_owned).into(),
                max.unwrap_or(default_max).into(),
                held.get(&u.name).copied().unwrap_or(0).into(),
                0i32.into(),
                mine.count().into(),
            ]
        })
        .collect();
    table::write(
        out,
        &[
            ("name", Text),
            ("pool_size", Text),
            ("reserve_pool_size", Text),
            ("pool_mode", Text),
            ("max_user_connections", Int4),
            ("current_connections", Int4),
            ("max_user_client_connections", Int4),
            ("current_client_connections", Int4),
        ],
        rows,
    );
}

/// SHOW POOLS: one row per upstream role. tenantgate's `pool_size` and `paused` follow
/// PgBouncer's columns.
pub(super) fn pools_show(shared: &Shared, out: &mut BytesMut) {
    let clients = shared.clients.snapshot();
    let rows = pools(shared)
        .into_iter()
        .map(|p| {
            let active = clients
                .iter()
                .filter(|c| c.pool == p.name && c.state() == "active")
                .count();
            vec![
                db(shared).into(),
                p.spec().user.clone().into(),
                active.into(),
                p.stats.waiting.load(Ordering::Relaxed).into(),
                0i32.into(),
                0i32.into(),
                p.stats.active.load(Ordering::Relaxed).into(),
                0i32.into(),
                0i32.into(),
                p.idle_count().into(),
                0i32.into(),
                0i32.into(),
                0i32.into(),
                0i32.into(),
                0i32.into(),
                pool_mode(shared, p).into(),
                Val::Null,
                p.size().into(),
                p.is_paused().into(),
            ]
        })
        .collect();
    table::write(
        out,
        &[
            ("database", Text),
            ("user", Text),
            ("cl_active", Int4),
            ("cl_waiting", Int4),
            ("cl_active_cancel_req", Int4),
            ("cl_waiting_cancel_req", Int4),
            ("sv_active", Int4),
            ("sv_active_cancel", Int4),
            ("sv_being_canceled", Int4),
            ("sv_idle", Int4),
            ("sv_used", Int4),
            ("sv_tested", Int4),
            ("sv_login", Int4),
            ("maxwait", Int4),
            ("maxwait_us", Int4),
            ("pool_mode", Text),
            ("load_balance_hosts", Text),
            ("pool_size", Int4),
            ("paused", Int4),
        ],
        rows,
    );
}

/// PgBouncer's socket columns (SHOW CLIENTS and SHOW SERVERS), then tenantgate's.
const SOCKET_COLUMNS: [(&str, Ty); 21] = [
    ("type", Text),
    ("user", Text),
    ("database", Text),
    ("replication", Text),
    ("state", Text),
    ("addr", Text),
    ("port", Int4),
    ("local_addr", Text),
    ("local_port", Int4),
    ("connect_time", Text),
    ("request_time", Text),
    ("wait", Int4),
    ("wait_us", Int4),
    ("close_needed", Int4),
    ("ptr", Text),
    ("link", Text),
    ("remote_pid", Int4),
    ("tls", Text),
    ("application_name", Text),
    ("prepared_statements", Int4),
    ("id", Int4),
];

/// SHOW CLIENTS. Values tenantgate does not track per client (wait, pointers, prepared
/// statement counts) are NULL rather than invented.
pub(super) fn clients(shared: &Shared, out: &mut BytesMut) {
    let listen = &shared.config.server.listen;
    let rows = shared
        .clients
        .snapshot()
        .iter()
        .map(|c| {
            let mut row: Vec<Val> = vec![
                "C".into(),
                c.user.clone().into(),
                c.database.clone().into(),
                "no".into(),
                c.state().into(),
                c.addr.ip().to_string().into(),
                c.addr.port().into(),
                listen.host().into(),
                listen.port().into(),
                time(c.connected).into(),
                time(c.connected).into(),
                0i32.into(),
                0i32.into(),
                0i32.into(),
                Val::Null,
                Val::Null,
                0i32.into(),
                if c.tls { "TLS" } else { "" }.into(),
                c.application_name.clone().into(),
                Val::Null,
                Val::Null,
            ];
            row.push(c.tenant.lock().ok().and_then(|t| t.clone()).into());
            row.push(c.session_id.clone().into());
            row
        })
        .collect();
    let mut cols = SOCKET_COLUMNS.to_vec();
    cols.extend([("tenant", Text), ("session_id", Text)]);
    table::write(out, &cols, rows);
}

pub(super) fn servers(shared: &Shared, out: &mut BytesMut) {
    let mut rows = Vec::new();
    for p in pools(shared) {
        for s in p.server_rows() {
            rows.push(vec![
                "S".into(),
                p.spec().user.clone().into(),
                db(shared).into(),
                "no".into(),
                s.state.into(),
                p.spec().host.clone().into(),
                p.spec().port.into(),
                Val::Null,
                Val::Null,
                time(s.created).into(),
                time(s.since).into(),
                0i32.into(),
                0i32.into(),
                0i32.into(),
                Val::Null,
                Val::Null,
                s.pid.into(),
                Val::Null,
                Val::Null,
                Val::Null,
                s.id.into(),
            ]);
        }
    }
    table::write(out, &SOCKET_COLUMNS, rows);
}

/// SHOW LISTS: PgBouncer's list names; tenantgate has no peers, DNS cache or slabs (0).
pub(super) fn lists(shared: &Shared, out: &mut BytesMut) {
    let live = shared.live();
    let ps = pools(shared);
    let servers: usize = ps.iter().map(|p| p.server_rows().len()).sum();
    let rows = [
        ("databases", 2),
        ("users", live.config.users.len()),
        ("peers", 0),
        ("pools", ps.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", shared.clients.count()),
        ("login_clients", 0),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ]
    .into_iter()
    .map(|(k, n)| vec![k.into(), n.into()])
    .collect();
    table::write(out, &[("list", Text), ("items", Int4)], rows);
}

/// SHOW MEM. PgBouncer lists its slab caches; tenantgate has none, and lists what it
/// bounds instead: prepared statement text (`max_total_prepared_bytes`) and the process's
/// resident memory (Linux), in bytes (`size` 1).
pub(super) fn mem(shared: &Shared, out: &mut BytesMut) {
    let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let max = shared.config.upstream.max_total_prepared_bytes;
    let used = shared.statement_budget.used();
    let mut rows = vec![vec![
        "prepared_statement_text".into(),
        1i32.into(),
        clamp(used).into(),
        clamp(max.saturating_sub(used)).into(),
        clamp(max).into(),
    ]];
    if let Some(rss) = resident_bytes() {
        rows.push(vec![
            "process_resident".into(),
            1i32.into(),
            clamp(rss).into(),
            0i32.into(),
            clamp(rss).into(),
        ]);
    }
    table::write(
        out,
        &[
            ("name", Text),
            ("size", Int4),
            ("used", Int4),
            ("free", Int4),
            ("memtotal", Int4),
        ],
        rows,
    );
}

/// Resident set size from `/proc/self/statm` (pages × 4 KiB), where there is one.
fn resident_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(4096))
}

pub(super) fn state(shared: &Shared, out: &mut BytesMut) {
    let m = shared.console.mode();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let rows = vec![
        vec!["active".into(), yes(m == Mode::Running).into()],
        vec!["paused".into(), yes(m == Mode::Paused).into()],
        vec!["suspended".into(), yes(m == Mode::Suspended).into()],
    ];
    table::write(out, &[("key", Text), ("value", Text)], rows);
}

/// SHOW CONFIG: key, value, changeable (the three columns of PgBouncer before 1.18; the
/// exporter reads both forms).
pub(super) fn config(shared: &Shared, out: &mut BytesMut) {
    let live = shared.live();
    let c = &live.config;
    let yes = |b: bool| if b { "1".to_owned() } else { "0".to_owned() };
    let rows = [
        ("listen", c.server.listen.to_string(), false),
        (
            "max_client_conn",
            c.server.max_client_conn.to_string(),
            false,
        ),
        ("require_tls", yes(c.server.require_tls), false),
        (
            "upstream",
            format!(
                "{}:{}/{}",
                c.upstream.host, c.upstream.port, c.upstream.database
            ),
            false,
        ),
        ("upstream_user", c.upstream.user.clone(), false),
        (
            "pool_mode",
            mode_name(c.upstream.pool_mode).to_owned(),
            false,
        ),
        ("pool_size", c.upstream.pool_size.to_string(), true),
        (
            "max_db_connections",
            c.upstream.max_db_connections.to_string(),
            true,
        ),
        (
            "max_user_connections",
            c.upstream.max_user_connections.to_string(),
            true,
        ),
        ("pool_timeout", c.upstream.pool_timeout.to_string(), false),
        (
            "max_prepared_statements",
            c.upstream.max_prepared_statements.to_string(),
            false,
        ),
        ("tenant_setting", c.tenant.setting.clone(), false),
        (
            "tenant_format",
            format!("{:?}", c.tenant.format).to_lowercase(),
            false,
        ),
        (
            "probe_action",
            format!("{:?}", c.security.probe_action).to_lowercase(),
            true,
        ),
        ("event_log", c.security.event_log.clone(), false),
        ("users", c.users.len().to_string(), true),
    ]
    .into_iter()
    .map(|(k, v, ch)| vec![k.into(), v.into(), yes(ch).into()])
    .collect();
    table::write(
        out,
        &[("key", Text), ("value", Text), ("changeable", Text)],
        rows,
    );
}
