//! A pool's counters (PgBouncer's SHOW STATS totals) and the averages over the last period.
//!
//! Counters are relaxed atomics bumped by sessions; [`PoolStats::sample`], called by the reaper
//! every [`STATS_PERIOD`], turns the change since the previous sample into PgBouncer's `avg_*`
//! figures (per second for counts and bytes, per transaction / query / assignment for times).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the averages are recomputed (PgBouncer's `stats_period`, there 60 s by default).
pub const STATS_PERIOD: Duration = Duration::from_secs(15);

/// Counters for metrics and the admin console.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections checked out right now.
    pub active: AtomicUsize,
    /// Checkouts waiting for a slot right now.
    pub waiting: AtomicUsize,
    /// Connections opened since start.
    pub opened: AtomicU64,
    /// Connections closed since start.
    pub closed: AtomicU64,
    /// Checkouts since start (PgBouncer's `server_assignment_count`).
    pub checkouts: AtomicU64,
    /// Total microseconds clients spent waiting for a connection.
    pub wait_us: AtomicU64,
    /// Transactions completed (ReadyForQuery `I` after client work).
    pub xacts: AtomicU64,
    /// Queries forwarded (simple Query and Execute messages).
    pub queries: AtomicU64,
    /// Bytes received from clients and forwarded (PgBouncer's `total_received`).
    pub received: AtomicU64,
    /// Bytes of server answers relayed to clients (`total_sent`).
    pub sent: AtomicU64,
    /// Microseconds from a transaction's first message to its ReadyForQuery `I`.
    pub xact_us: AtomicU64,
    /// Microseconds from each message batch to its ReadyForQuery (`total_query_time`).
    pub query_us: AtomicU64,
    /// Parse messages received from clients.
    pub client_parses: AtomicU64,
    /// Bind messages received from clients.
    pub binds: AtomicU64,
    /// The averages of the last period, and the totals they were computed from.
    window: Mutex<Window>,
}

/// Every total at one moment (SHOW STATS_TOTALS's columns, in its order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Server assignments (checkouts).
    pub server_assignment_count: u64,
    /// Transactions completed (ReadyForQuery `I` after client work).
    pub xact_count: u64,
    /// Simple Query and Execute messages forwarded.
    pub query_count: u64,
    /// PgBouncer's `total_received`: bytes received from clients and forwarded.
    pub bytes_received: u64,
    /// PgBouncer's `total_sent`: bytes of server answers relayed to clients.
    pub bytes_sent: u64,
    /// Microseconds in transactions.
    pub xact_time: u64,
    /// Microseconds in queries.
    pub query_time: u64,
    /// Microseconds clients waited for a server.
    pub wait_time: u64,
    /// Parse messages from clients.
    pub client_parse_count: u64,
    /// Bind messages from clients.
    pub bind_count: u64,
}

/// The last sample and the averages derived from the one before.
#[derive(Debug, Default)]
struct Window {
    /// Totals at the last sample, and when.
    last: Option<(Instant, StatsSnapshot)>,
    /// Averages over the last completed period.
    averages: StatsSnapshot,
}

impl PoolStats {
    /// Relaxed: the counters are statistics, not synchronisation.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read counter by counter (relaxed loads), so not one consistent instant.
    pub fn totals(&self) -> StatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            server_assignment_count: l(&self.checkouts),
            xact_count: l(&self.xacts),
            query_count: l(&self.queries),
            bytes_received: l(&self.received),
            bytes_sent: l(&self.sent),
            xact_time: l(&self.xact_us),
            query_time: l(&self.query_us),
            wait_time: l(&self.wait_us),
            client_parse_count: l(&self.client_parses),
            bind_count: l(&self.binds),
        }
    }

    /// PgBouncer's `avg_*` over the last completed period (zero before the second sample).
    pub fn averages(&self) -> StatsSnapshot {
        self.window.lock().map(|w| w.averages).unwrap_or_default()
    }

    /// Takes a sample; the change since the previous one becomes the averages.
    pub fn sample(&self) {
        let now = Instant::now();
        let totals = self.totals();
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        if let Some((at, prev)) = w.last {
            w.averages = averages(&prev, &totals, now.saturating_duration_since(at));
        }
        w.last = Some((now, totals));
    }
}

/// Per-second rates for counts and bytes; times per transaction, query and assignment.
fn averages(prev: &StatsSnapshot, now: &StatsSnapshot, over: Duration) -> StatsSnapshot {
    let secs = over.as_secs().max(1);
    let d = |a: u64, b: u64| b.saturating_sub(a);
    let per = |total: u64, count: u64| total.checked_div(count).unwrap_or(0);
    let xacts = d(prev.xact_count, now.xact_count);
    let queries = d(prev.query_count, now.query_count);
    let assignments = d(prev.server_assignment_count, now.server_assignment_count);
    StatsSnapshot {
        server_assignment_count: assignments / secs,
        xact_count: xacts / secs,
        query_count: queries / secs,
        bytes_received: d(prev.bytes_received, now.bytes_received) / secs,
        bytes_sent: d(prev.bytes_sent, now.bytes_sent) / secs,
        xact_time: per(d(prev.xact_time, now.xact_time), xacts),
        query_time: per(d(prev.query_time, now.query_time), queries),
        wait_time: per(d(prev.wait_time, now.wait_time), assignments),
        client_parse_count: d(prev.client_parse_count, now.client_parse_count) / secs,
        bind_count: d(prev.bind_count, now.bind_count) / secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_times_per_event() {
        let prev = StatsSnapshot::default();
        let now = StatsSnapshot {
            xact_count: 30,
            xact_time: 3_000,
            query_count: 60,
            query_time: 1_200,
            bytes_sent: 1_500,
            ..StatsSnapshot::default()
        };
        let a = averages(&prev, &now, Duration::from_secs(15));
        assert_eq!(a.xact_count, 2);
        assert_eq!(a.xact_time, 100);
        assert_eq!(a.query_time, 20);
        assert_eq!(a.bytes_sent, 100);
        assert_eq!(a.wait_time, 0);
    }
}
