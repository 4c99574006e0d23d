//! Metric updates from the data path (the `metrics` facade; exported by the admin endpoint).
//!
//! Every series name lives here, so the `/metrics` contract is one file. The Prometheus
//! recorder is installed once per process by [`install`] (the admin listener calls it); until
//! then the facade calls are no-ops. Pool and event gauges are filled at scrape time from the
//! counters those modules already keep ([`server_connections`], [`security_events`]).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for pool waits and query durations: 0.5 ms to 30 s.
const SECONDS_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Handles for the series updated on every transaction, registered once when the recorder
/// is installed, so the data path neither looks series up nor reads the clock without one.
struct Hot {
    /// `tenantgate_query_duration_seconds`.
    query_duration: metrics::Histogram,
    /// `tenantgate_pool_wait_seconds{pool="app"}`.
    wait_app: metrics::Histogram,
    /// `tenantgate_pool_wait_seconds{pool="breakglass"}`.
    wait_breakglass: metrics::Histogram,
}

/// Set by [`install`]; unset means no recorder, and the hot-path updates are skipped.
static HOT: OnceLock<Hot> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the handle that renders it;
/// `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => {
                    describe();
                    let _ = HOT.set(Hot {
                        query_duration: metrics::histogram!("tenantgate_query_duration_seconds"),
                        wait_app: metrics::histogram!("tenantgate_pool_wait_seconds", "pool" => "app"),
                        wait_breakglass: metrics::histogram!("tenantgate_pool_wait_seconds", "pool" => "breakglass"),
                    });
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// Declares every series with help text and registers it, so a scrape shows zeros before the
/// first event rather than missing series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "tenantgate_client_connections",
        "Client connections open now."
    );
    describe_gauge!(
        "tenantgate_server_connections",
        "Upstream connections by pool and state (active: checked out, idle: pooled)."
    );
    describe_gauge!(
        "tenantgate_pool_waiting_clients",
        "Clients waiting for an upstream connection."
    );
    describe_counter!(
        "tenantgate_transactions_total",
        "Transactions completed (ReadyForQuery back to idle)."
    );
    describe_counter!(
        "tenantgate_queries_total",
        "Queries forwarded (simple Query and Execute messages)."
    );
    describe_counter!(
        "tenantgate_security_events_total",
        "Security events recorded, by event name."
    );
    describe_counter!(
        "tenantgate_security_events_dropped_total",
        "Security events lost to a full queue."
    );
    describe_histogram!(
        "tenantgate_pool_wait_seconds",
        Unit::Seconds,
        "Time a client waited to check out an upstream connection."
    );
    describe_histogram!(
        "tenantgate_query_duration_seconds",
        Unit::Seconds,
        "Time from forwarding a Query or Sync to its ReadyForQuery."
    );
    describe_counter!(
        "tenantgate_injection_failures_total",
        "Tenant injections the upstream refused (the statement did not run)."
    );
    describe_gauge!(
        "tenantgate_posture_healthy",
        "1 when the last RLS posture check passed, else 0."
    );
    describe_gauge!(
        "tenantgate_posture_failures",
        "Failing findings in the last completed posture check."
    );
    describe_counter!(
        "tenantgate_posture_checks_total",
        "Posture check runs, by result (pass, fail, error)."
    );
    describe_counter!(
        "tenantgate_posture_drift_total",
        "Posture checks that found a change for the worse."
    );
    describe_gauge!(
        "tenantgate_posture_last_check_timestamp_seconds",
        "Unix time of the last posture check run."
    );

    metrics::gauge!("tenantgate_client_connections").increment(0.0);
    metrics::counter!("tenantgate_transactions_total").increment(0);
    metrics::counter!("tenantgate_queries_total").increment(0);
    metrics::counter!("tenantgate_injection_failures_total").increment(0);
    metrics::counter!("tenantgate_posture_drift_total").increment(0);
    let _ = metrics::histogram!("tenantgate_query_duration_seconds");
    let _ = metrics::histogram!("tenantgate_pool_wait_seconds", "pool" => "app");
    for result in ["pass", "fail", "error"] {
        metrics::counter!("tenantgate_posture_checks_total", "result" => result).increment(0);
    }
}

/// Counts clients refused over `max_client_conn` too, until their [`client_disconnected`].
pub fn client_connected() {
    metrics::gauge!("tenantgate_client_connections").increment(1.0);
}

pub fn client_disconnected() {
    metrics::gauge!("tenantgate_client_connections").decrement(1.0);
}

/// The tenant injection failed upstream (the statement did not run).
pub fn injection_failed() {
    metrics::counter!("tenantgate_injection_failures_total").increment(1);
}

/// Whether timings are recorded at all: the session reads the clock per query only then.
#[inline]
pub fn timing_enabled() -> bool {
    HOT.get().is_some()
}

/// A query cycle (a Query, or extended messages up to Sync) got its ReadyForQuery after
/// `elapsed`.
#[inline]
pub fn query_duration(elapsed: Duration) {
    if let Some(h) = HOT.get() {
        h.query_duration.record(elapsed.as_secs_f64());
    }
}

/// A checkout from `pool` got a connection after waiting `waited`.
#[inline]
pub fn pool_wait(pool: &'static str, waited: Duration) {
    if let Some(h) = HOT.get() {
        let hist = if pool == "breakglass" {
            &h.wait_breakglass
        } else {
            &h.wait_app
        };
        hist.record(waited.as_secs_f64());
    }
}

/// Scrape time: the connection counts of one pool.
pub fn server_connections(pool: &'static str, active: usize, idle: usize, waiting: usize) {
    metrics::gauge!("tenantgate_server_connections", "pool" => pool, "state" => "active")
        .set(active as f64);
    metrics::gauge!("tenantgate_server_connections", "pool" => pool, "state" => "idle")
        .set(idle as f64);
    metrics::gauge!("tenantgate_pool_waiting_clients", "pool" => pool).set(waiting as f64);
}

/// Scrape time: transactions and queries over all pools (kept by `PoolStats` for SHOW POOLS).
pub fn pool_totals(transactions: u64, queries: u64) {
    metrics::counter!("tenantgate_transactions_total").absolute(transactions);
    metrics::counter!("tenantgate_queries_total").absolute(queries);
}

/// Scrape time: the running total of one security event (kept by the event sink).
pub fn security_events(event: &'static str, total: u64) {
    metrics::counter!("tenantgate_security_events_total", "event" => event).absolute(total);
}

/// Scrape time: security events dropped since start.
pub fn security_events_dropped(total: u64) {
    metrics::counter!("tenantgate_security_events_dropped_total").absolute(total);
}

/// A posture check ran: `Some((failures, failed))` when it completed (its failing findings,
/// and whether the report fails), `None` when it could not run.
pub fn posture_check(outcome: Option<(usize, bool)>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics::gauge!("tenantgate_posture_last_check_timestamp_seconds").set(now);
    let result = match outcome {
        Some((failures, failed)) => {
            metrics::gauge!("tenantgate_posture_failures").set(failures as f64);
            if failed {
                "fail"
            } else {
                "pass"
            }
        }
        None => "error",
    };
    metrics::gauge!("tenantgate_posture_healthy").set(if result == "pass" { 1.0 } else { 0.0 });
    metrics::counter!("tenantgate_posture_checks_total", "result" => result).increment(1);
}

/// A posture check found a change for the worse.
pub fn posture_drift() {
    metrics::counter!("tenantgate_posture_drift_total").increment(1);
}
