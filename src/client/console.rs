//! The admin console: `kind = "admin"` users on the virtual database `tenantgate` get
//! PgBouncer-style SHOW POOLS / CLIENTS / SERVERS / STATS / CONFIG, RELOAD, PAUSE, RESUME,
//! with PgBouncer's column names where they make sense, so dashboards and habits carry over.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{BufMut, BytesMut};

use crate::protocol::messages::{self, query_text, PgError};
use crate::protocol::stream::StreamError;
use crate::protocol::PqStream;
use crate::server::Shared;

/// The virtual database name of the console.
pub const DATABASE: &str = "tenantgate";

/// Serves console commands until the client leaves.
pub async fn run(shared: Arc<Shared>, mut client: PqStream) -> Result<(), StreamError> {
    loop {
        let f = match client.read_frame().await {
            Ok(f) => f,
            Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match f.tag() {
            b'X' => return Ok(()),
            b'Q' => {
                let sql = query_text(f.body())
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let out = client.out();
                match command(&shared, &sql, out).await {
                    Ok(()) => {}
                    Err(e) => e.encode(out),
                }
                messages::ready_for_query(client.out(), b'I');
                client.flush().await?;
            }
            b'S' => {
                messages::ready_for_query(client.out(), b'I');
                client.flush().await?;
            }
            b'H' => {}
            _ => {
                PgError::error(
                    "08P01",
                    "tenantgate: the console speaks only the simple query protocol",
                )
                .encode(client.out());
                client.flush().await?;
            }
        }
    }
}

async fn command(shared: &Arc<Shared>, sql: &str, out: &mut BytesMut) -> Result<(), PgError> {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["SHOW", "POOLS"] => show_pools(shared, out),
        ["SHOW", "CLIENTS"] => show_clients(shared, out),
        ["SHOW", "SERVERS"] => show_servers(shared, out),
        ["SHOW", "STATS"] => show_stats(shared, out),
        ["SHOW", "CONFIG"] => show_config(shared, out),
        ["SHOW", "TENANTS"] => crate::admin::tenants::show(shared, out),
        ["SHOW", "VERSION"] => {
            table(
                out,
                &["version"],
                vec![vec![format!("tenantgate {}", env!("CARGO_PKG_VERSION"))]],
                "SHOW",
            );
        }
        ["RELOAD"] => {
            let Some(path) = shared.config_path.get() else {
                return Err(PgError::error(
                    "55000",
                    "tenantgate: no configuration file to reload (started in-process)",
                ));
            };
            shared.reload(path).await;
            complete(out, "RELOAD");
        }
        ["PAUSE"] => {
            for p in pools(shared) {
                p.pause();
            }
            complete(out, "PAUSE");
        }
        ["RESUME"] => {
            for p in pools(shared) {
                p.resume();
            }
            complete(out, "RESUME");
        }
        _ => {
            return Err(PgError::error(
                "42601",
                format!("tenantgate: unknown console command \"{}\"", sql.trim()),
            )
            .with_hint(
                "SHOW POOLS | CLIENTS | SERVERS | STATS | CONFIG | VERSION, RELOAD, PAUSE, RESUME",
            ))
        }
    }
    Ok(())
}

fn pools(shared: &Shared) -> Vec<&Arc<crate::pool::Pool>> {
    std::iter::once(&shared.pool)
        .chain(shared.breakglass.iter())
        .collect()
}

fn db(shared: &Shared) -> String {
    shared.config.upstream.database.clone()
}

fn show_pools(shared: &Shared, out: &mut BytesMut) {
    let clients = shared.clients.snapshot();
    let mode = match shared.config.upstream.pool_mode {
        crate::config::PoolMode::Transaction => "transaction",
        crate::config::PoolMode::Session => "session",
    };
    let rows = pools(shared)
        .into_iter()
        .map(|p| {
            let mine: Vec<_> = clients.iter().filter(|c| c.pool == p.name).collect();
            let active = p.stats.active.load(Ordering::Relaxed);
            vec![
                db(shared),
                p.spec().user.clone(),
                mine.iter()
                    .filter(|c| c.state() == "active")
                    .count()
                    .to_string(),
                p.stats.waiting.load(Ordering::Relaxed).to_string(),
                active.to_string(),
                p.idle_count().to_string(),
                "0".into(),
                "0".into(),
                "0".into(),
                "0".into(),
                "0".into(),
                if p.name == "breakglass" {
                    "session".into()
                } else {
                    mode.to_owned()
                },
                p.size().to_string(),
                if p.is_paused() {
                    "1".into()
                } else {
                    "0".into()
                },
            ]
        })
        .collect();
    table(
        out,
        &[
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "sv_active",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "pool_size",
            "paused",
        ],
        rows,
        "SHOW",
    );
}

fn show_clients(shared: &Shared, out: &mut BytesMut) {
    let rows = shared
        .clients
        .snapshot()
        .iter()
        .map(|c| {
            vec![
                "C".into(),
                c.user.clone(),
                c.database.clone(),
                c.state().into(),
                c.addr.ip().to_string(),
                c.addr.port().to_string(),
                time(c.connected),
                c.tenant
                    .lock()
                    .ok()
                    .and_then(|t| t.clone())
                    .unwrap_or_default(),
                c.application_name.clone(),
                if c.tls { "TLS".into() } else { String::new() },
                c.session_id.clone(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "tenant",
            "application_name",
            "tls",
            "session_id",
        ],
        rows,
        "SHOW",
    );
}

fn show_servers(shared: &Shared, out: &mut BytesMut) {
    let mut rows = Vec::new();
    for p in pools(shared) {
        for s in p.server_rows() {
            rows.push(vec![
                "S".into(),
                p.spec().user.clone(),
                db(shared),
                s.state.into(),
                p.spec().host.clone(),
                p.spec().port.to_string(),
                time(s.created),
                time(s.since),
                s.pid.to_string(),
                s.id.to_string(),
            ]);
        }
    }
    table(
        out,
        &[
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "request_time",
            "remote_pid",
            "id",
        ],
        rows,
        "SHOW",
    );
}

fn show_stats(shared: &Shared, out: &mut BytesMut) {
    let rows = pools(shared)
        .into_iter()
        .map(|p| {
            let s = &p.stats;
            vec![
                format!("{}/{}", db(shared), p.name),
                s.xacts.load(Ordering::Relaxed).to_string(),
                s.queries.load(Ordering::Relaxed).to_string(),
                s.wait_us.load(Ordering::Relaxed).to_string(),
                s.checkouts.load(Ordering::Relaxed).to_string(),
                s.opened.load(Ordering::Relaxed).to_string(),
                s.closed.load(Ordering::Relaxed).to_string(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "database",
            "total_xact_count",
            "total_query_count",
            "total_wait_time",
            "total_checkouts",
            "total_server_opened",
            "total_server_closed",
        ],
        rows,
        "SHOW",
    );
}

fn show_config(shared: &Shared, out: &mut BytesMut) {
    let live = shared.live();
    let c = &live.config;
    let yes = |b: bool| if b { "1".to_owned() } else { "0".to_owned() };
    let rows: Vec<Vec<String>> = [
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
            format!("{:?}", c.upstream.pool_mode).to_lowercase(),
            false,
        ),
        ("pool_size", c.upstream.pool_size.to_string(), true),
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
    .map(|(k, v, ch)| vec![k.to_owned(), v, yes(ch)])
    .collect();
    table(out, &["key", "value", "changeable"], rows, "SHOW");
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn complete(out: &mut BytesMut, tag: &str) {
    messages::write_msg(out, b'C', |b| messages::put_cstr(b, tag.as_bytes()));
}

/// Appends RowDescription (all text columns), DataRows and CommandComplete.
fn table(out: &mut BytesMut, columns: &[&str], rows: Vec<Vec<String>>, tag: &str) {
    messages::write_msg(out, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for c in columns {
            messages::put_cstr(b, c.as_bytes());
            b.put_i32(0);
            b.put_i16(0);
            b.put_u32(25);
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0);
        }
    });
    let n = rows.len();
    for row in rows {
        messages::write_msg(out, b'D', |b| {
            b.put_i16(row.len() as i16);
            for v in &row {
                b.put_i32(v.len() as i32);
                b.put_slice(v.as_bytes());
            }
        });
    }
    let _ = n;
    complete(out, tag);
}
