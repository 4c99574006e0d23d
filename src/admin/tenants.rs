//! Per-tenant usage: the admin console's `SHOW TENANTS` and the per-tenant series of
//! `/metrics`.
//!
//! Both read the counters the app pool keeps on each tenant with a live session
//! (`pool::queue::TenantTag`): nothing is counted here, and a tenant whose last session ended
//! is no longer listed (its counters start again from zero with its next session).
//!
//! Label cardinality: `/metrics` names at most `[tenant] metrics_top_n` tenants (default 20),
//! the most active ones by transactions completed, then by sessions; every other tenant is
//! summed into one `tenant="other"` series, so a proxy with 100,000 tenants exports at most
//! `metrics_top_n + 1` series per metric. These lines are rendered here at scrape time, not
//! registered with the recorder, so a tenant that drops out of the top N leaves no stale series
//! behind. A counter of a named tenant can go down when that tenant's sessions all end or it
//! trades places with `other`; `rate()` treats that as a counter reset.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::{BufMut, BytesMut};

use crate::protocol::messages;
use crate::shared::Shared;

/// One tenant as SHOW TENANTS reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRow {
    /// The canonical tenant id.
    pub tenant: String,
    /// Client sessions.
    pub clients: i64,
    /// Sessions attached to a server connection right now.
    pub active: i64,
    /// Checkouts queued for a server connection right now.
    pub waiting: i64,
    /// Server connections the tenant holds right now.
    pub held: i64,
    /// Transactions completed.
    pub xacts: i64,
    /// Checkouts served.
    pub checkouts: i64,
    /// Microseconds all checkouts waited.
    pub wait_us: i64,
    /// Transactions refused by `max_transactions_per_second`.
    pub rate_limited: i64,
}

impl TenantRow {
    /// Average wait for a server connection, in microseconds (PgBouncer's `avg_wait_time`).
    pub fn avg_wait_us(&self) -> i64 {
        if self.checkouts > 0 {
            self.wait_us / self.checkouts
        } else {
            0
        }
    }

    /// Adds `o` into `self` (for the `other` bucket).
    fn absorb(&mut self, o: &TenantRow) {
        self.clients += o.clients;
        self.active += o.active;
        self.waiting += o.waiting;
        self.held += o.held;
        self.xacts += o.xacts;
        self.checkouts += o.checkouts;
        self.wait_us += o.wait_us;
        self.rate_limited += o.rate_limited;
    }
}

/// Every tenant with a live session on the app pool, by tenant id.
pub fn rows(shared: &Shared) -> Vec<TenantRow> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut active: std::collections::HashMap<String, i64> = Default::default();
    for c in shared.clients.snapshot() {
        if c.pool != shared.pool.name || c.state() != "active" {
            continue;
        }
        if let Some(t) = c.tenant.lock().ok().and_then(|t| t.clone()) {
            *active.entry(t).or_default() += 1;
        }
    }
    let mut rows: Vec<TenantRow> = shared
        .pool
        .tenant_tags()
        .iter()
        .map(|t| {
            let u = &t.usage;
            TenantRow {
                tenant: t.name().to_owned(),
                clients: n(t.clients() as u64),
                active: active.get(t.name()).copied().unwrap_or(0),
                waiting: n(u.waiting.load(Ordering::Relaxed) as u64),
                held: n(t.held() as u64),
                xacts: n(u.xacts.load(Ordering::Relaxed)),
                checkouts: n(u.checkouts.load(Ordering::Relaxed)),
                wait_us: n(u.wait_us.load(Ordering::Relaxed)),
                rate_limited: n(u.rate_limited.load(Ordering::Relaxed)),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    rows
}

/// The columns of SHOW TENANTS: name and type OID (`text` 25, `int8` 20).
const COLUMNS: [(&str, u32); 8] = [
    ("tenant", 25),
    ("clients", 20),
    ("cl_active", 20),
    ("cl_waiting", 20),
    ("sv_held", 20),
    ("total_xact_count", 20),
    ("avg_wait_time", 20),
    ("total_rate_limited", 20),
];

/// `SHOW TENANTS`: one row per tenant with a live session; numbers typed `int8`,
/// `avg_wait_time` in microseconds as PgBouncer's SHOW STATS has it.
pub fn show(shared: &Shared, out: &mut BytesMut) {
    let rows = rows(shared);
    messages::write_msg(out, b'T', |b| {
        b.put_i16(COLUMNS.len() as i16);
        for (name, oid) in COLUMNS {
            messages::put_cstr(b, name.as_bytes());
            b.put_i32(0);
            b.put_i16(0);
            b.put_u32(oid);
            b.put_i16(if oid == 20 { 8 } else { -1 });
            b.put_i32(-1);
            b.put_i16(0);
        }
    });
    for r in &rows {
        let values = [
            r.tenant.clone(),
            r.clients.to_string(),
            r.active.to_string(),
            r.waiting.to_string(),
            r.held.to_string(),
            r.xacts.to_string(),
            r.avg_wait_us().to_string(),
            r.rate_limited.to_string(),
        ];
        messages::write_msg(out, b'D', |b| {
            b.put_i16(values.len() as i16);
            for v in &values {
                b.put_i32(v.len() as i32);
                b.put_slice(v.as_bytes());
            }
        });
    }
    messages::write_msg(out, b'C', |b| {
        messages::put_cstr(b, format!("SHOW {}", rows.len()).as_bytes())
    });
}

/// The `top_n` most active tenants, then one `other` row summing the rest (None when there
/// is no rest); nothing when `top_n` is 0.
pub fn top(mut rows: Vec<TenantRow>, top_n: usize) -> (Vec<TenantRow>, Option<TenantRow>) {
    if top_n == 0 {
        return (Vec::new(), None);
    }
    rows.sort_by(|a, b| {
        (b.xacts, b.clients)
            .cmp(&(a.xacts, a.clients))
            .then_with(|| a.tenant.cmp(&b.tenant))
    });
    if rows.len() <= top_n {
        return (rows, None);
    }
    let rest = rows.split_off(top_n);
    let mut other = TenantRow {
        tenant: "other".into(),
        ..TenantRow::default()
    };
    for r in &rest {
        other.absorb(r);
    }
    (rows, Some(other))
}

/// The per-tenant series in Prometheus' text format, appended to the recorder's output.
pub fn prometheus(shared: &Shared) -> String {
    let top_n = shared.live().config.tenant.metrics_top_n;
    let (named, other) = top(rows(shared), top_n);
    let all: Vec<&TenantRow> = named.iter().chain(other.iter()).collect();
    let mut s = String::new();
    if top_n == 0 {
        return s;
    }
    type Field = fn(&TenantRow) -> f64;
    let series: [(&str, &str, &str, Field); 6] = [
        (
            "tenantgate_tenant_clients",
            "gauge",
            "Client sessions per tenant",
            |r| r.clients as f64,
        ),
        (
            "tenantgate_tenant_server_connections",
            "gauge",
            "Server connections held per tenant",
            |r| r.held as f64,
        ),
        (
            "tenantgate_tenant_waiting_clients",
            "gauge",
            "Transactions waiting for a server connection per tenant",
            |r| r.waiting as f64,
        ),
        (
            "tenantgate_tenant_transactions_total",
            "counter",
            "Transactions completed per tenant",
            |r| r.xacts as f64,
        ),
        (
            "tenantgate_tenant_wait_seconds_total",
            "counter",
            "Time spent waiting for a server connection per tenant",
            |r| r.wait_us as f64 / 1e6,
        ),
        (
            "tenantgate_tenant_rate_limited_total",
            "counter",
            "Transactions refused by [tenant] max_transactions_per_second per tenant",
            |r| r.rate_limited as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            s,
            "# HELP {name} {help} (the [tenant] metrics_top_n most active tenants; the rest as tenant=\"other\")."
        );
        let _ = writeln!(s, "# TYPE {name} {kind}");
        for r in &all {
            let _ = writeln!(s, "{name}{{tenant=\"{}\"}} {}", label(&r.tenant), value(r));
        }
        s.push('\n');
    }
    s
}

/// A label value escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, xacts: i64, clients: i64) -> TenantRow {
        TenantRow {
            tenant: t.into(),
            xacts,
            clients,
            ..TenantRow::default()
        }
    }

    #[test]
    fn the_most_active_are_named_and_the_rest_summed() {
        let rows = vec![
            row("a", 5, 1),
            row("b", 50, 1),
            row("c", 1, 9),
            row("d", 5, 2),
        ];
        let (named, other) = top(rows.clone(), 2);
        let names: Vec<&str> = named.iter().map(|r| r.tenant.as_str()).collect();
        assert_eq!(names, ["b", "d"]);
        let other = other.expect("a rest");
        assert_eq!((other.xacts, other.clients), (6, 10));
        let (named, other) = top(rows.clone(), 10);
        assert_eq!((named.len(), other), (4, None));
        assert_eq!(top(rows, 0), (Vec::new(), None));
    }

    #[test]
    fn average_wait_and_labels() {
        let r = TenantRow {
            checkouts: 4,
            wait_us: 100,
            ..TenantRow::default()
        };
        assert_eq!(r.avg_wait_us(), 25);
        assert_eq!(TenantRow::default().avg_wait_us(), 0);
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
