//! Rate limits of probe events: a looping client must not flood the event log (or the
//! diagnostics), and no event may go uncounted.
//!
//! Time is cut into fixed windows. Within one, a probe event is written line by line only while
//! its session, its scope (the tenant, or the client's address for sessions without one) and the
//! whole proxy are under their budgets; everything else is folded into an aggregate — per
//! session, per scope, or proxy-wide, whichever budget ran out first — that keeps a sample, the
//! count and the first and last timestamps, and is written when the window closes. A repeat of
//! a statement already written in the window is counted against that line instead. So per
//! window a scope writes at most its budget plus a handful of aggregate lines per event kind,
//! and the `count`s of all lines add up to every event recorded.
//!
//! Pure and clock-free: callers pass `Instant`s, so the rules are unit-tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Action, EventKind, SecurityEvent};
use crate::config::SecurityConfig;

/// The budgets of one window (`[security] event_window`, `events_per_session`, `events_per_tenant`,
/// `events_per_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Length of a window.
    pub window: Duration,
    /// Lines one session may write per window.
    pub per_session: u32,
    /// Lines all sessions of one scope may write per window.
    pub per_tenant: u32,
    /// Lines the whole proxy may write per window.
    pub per_window: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&SecurityConfig::default())
    }
}

impl From<&SecurityConfig> for Limits {
    fn from(s: &SecurityConfig) -> Self {
        Limits {
            window: crate::config::secs(s.event_window),
            per_session: s.events_per_session,
            per_tenant: s.events_per_tenant,
            per_window: s.events_per_window,
        }
    }
}

/// Which budget an aggregate line stands for (its `aggregate` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Level {
    /// Repeats of one statement already written by this session.
    Repeat,
    /// The session's budget ran out.
    Session,
    /// The tenant's budget ran out.
    Tenant,
    /// The budget of a client address (sessions without a tenant) ran out.
    Client,
    /// The proxy-wide budget ran out.
    Proxy,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Repeat => "repeat",
            Level::Session => "session",
            Level::Tenant => "tenant",
            Level::Client => "client",
            Level::Proxy => "proxy",
        }
    }
}

/// Key of an aggregate: level, the session/scope it belongs to, event, action, and for
/// repeats the statement text.
type Key = (Level, String, EventKind, Action, Option<String>);

/// Events folded into one line.
struct Aggregate {
    /// The first event folded (for repeats: the line already written), re-emitted as the
    /// aggregate line.
    sample: SecurityEvent,
    count: u64,
    /// `ts` of the first and last event folded.
    first_ts: Option<String>,
    last_ts: Option<String>,
}

/// The state of the current window.
pub struct Limiter {
    limits: Limits,
    /// When the current window closes; `None` until the first event.
    closes: Option<Instant>,
    /// Lines written in this window, by session id.
    sessions: HashMap<String, u32>,
    /// Lines written in this window, by scope.
    scopes: HashMap<String, u32>,
    /// Lines written in this window in total.
    total: u32,
    /// Open aggregates (repeats of written lines included, with a zero count until repeated).
    aggregates: HashMap<Key, Aggregate>,
}

/// What became of one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write it now.
    Write,
    /// Counted into an aggregate line, written when the window closes.
    Folded,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            closes: None,
            sessions: HashMap::new(),
            scopes: HashMap::new(),
            total: 0,
            aggregates: HashMap::new(),
        }
    }

    /// Decides about `ev` at `now`. Closing a due window first, its aggregate lines are
    /// appended to `out` (to be written before `ev`, if `ev` is written).
    pub fn admit(
        &mut self,
        ev: &SecurityEvent,
        now: Instant,
        out: &mut Vec<SecurityEvent>,
    ) -> Outcome {
        self.close_due(now, out);
        if self.closes.is_none() {
            self.closes = Some(now + self.limits.window);
        }
        let session = ev.subject.session_id.as_str();
        let repeat: Key = (
            Level::Repeat,
            session.to_owned(),
            ev.event,
            ev.action,
            ev.statement.clone(),
        );
        if let Some(a) = self.aggregates.get_mut(&repeat) {
            a.fold(ev);
            return Outcome::Folded;
        }
        let (scope_level, scope) = scope_of(ev);
        let session_used = self.sessions.get(session).copied().unwrap_or(0);
        let scope_used = self.scopes.get(&scope).copied().unwrap_or(0);
        let over = if session_used >= self.limits.per_session {
            Some((Level::Session, session.to_owned()))
        } else if scope_used >= self.limits.per_tenant {
            Some((scope_level, scope.clone()))
        } else if self.total >= self.limits.per_window {
            Some((Level::Proxy, String::new()))
        } else {
            None
        };
        if let Some((level, owner)) = over {
            self.aggregates
                .entry((level, owner, ev.event, ev.action, None))
                .or_insert_with(|| Aggregate::empty(ev))
                .fold(ev);
            return Outcome::Folded;
        }
        *self.sessions.entry(session.to_owned()).or_default() += 1;
        *self.scopes.entry(scope).or_default() += 1;
        self.total += 1;
        self.aggregates.insert(repeat, Aggregate::empty(ev));
        Outcome::Write
    }

    /// Closes the window if it is due at `now`, appending its aggregate lines to `out`.
    pub fn close_due(&mut self, now: Instant, out: &mut Vec<SecurityEvent>) {
        if self.closes.is_some_and(|c| now >= c) {
            self.close(out);
        }
    }

    /// Closes the window now (shutdown), appending its aggregate lines to `out`.
    pub fn close(&mut self, out: &mut Vec<SecurityEvent>) {
        let secs = self.limits.window.as_secs_f64();
        for ((level, _, _, _, _), a) in self.aggregates.drain() {
            if a.count == 0 {
                continue;
            }
            let what = match level {
                Level::Repeat => format!("repeated {} more times within {secs} s", a.count),
                Level::Session => format!(
                    "{} more within {secs} s after this session's {} (events_per_session); one sample shown",
                    a.count, self.limits.per_session
                ),
                Level::Tenant | Level::Client => format!(
                    "{} more within {secs} s after this {}'s {} (events_per_tenant); one sample shown",
                    a.count,
                    if level == Level::Tenant { "tenant" } else { "client address" },
                    self.limits.per_tenant
                ),
                Level::Proxy => format!(
                    "{} more within {secs} s after the proxy's {} (events_per_window); one sample shown",
                    a.count, self.limits.per_window
                ),
            };
            let mut ev = a.sample;
            ev.ts = super::now_rfc3339();
            ev.count = Some(a.count);
            ev.first_ts = a.first_ts;
            ev.last_ts = a.last_ts;
            ev.aggregate = Some(level.as_str());
            ev.detail = Some(match ev.detail.take() {
                Some(d) => format!("{what}; {d}"),
                None => what,
            });
            out.push(ev);
        }
        self.sessions.clear();
        self.scopes.clear();
        self.total = 0;
        self.closes = None;
    }
}

impl Aggregate {
    /// An aggregate that has folded nothing yet, sampling `ev`.
    fn empty(ev: &SecurityEvent) -> Aggregate {
        Aggregate {
            sample: ev.clone(),
            count: 0,
            first_ts: None,
            last_ts: None,
        }
    }

    fn fold(&mut self, ev: &SecurityEvent) {
        self.count += 1;
        if self.first_ts.is_none() {
            self.first_ts = Some(ev.ts.clone());
        }
        self.last_ts = Some(ev.ts.clone());
    }
}

/// The budget an event counts against besides its session's: its tenant's, or for sessions
/// without a tenant (failed logins, no tenant chosen) its client address's (without the port,
/// so reconnecting does not renew it).
fn scope_of(ev: &SecurityEvent) -> (Level, String) {
    match &ev.subject.tenant {
        Some(t) => (Level::Tenant, format!("t:{t}")),
        None => {
            let addr = ev.subject.client_addr.as_deref().unwrap_or("");
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            (Level::Client, format!("a:{host}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Subject;

    fn limits() -> Limits {
        Limits {
            window: Duration::from_secs(10),
            per_session: 3,
            per_tenant: 5,
            per_window: 8,
        }
    }

    fn ev(session: &str, tenant: Option<&str>, sql: &str) -> SecurityEvent {
        let subject = Subject {
            session_id: session.into(),
            tenant: tenant.map(str::to_owned),
            client_addr: Some("10.0.0.1:5555".into()),
            ..Default::default()
        };
        SecurityEvent::new(EventKind::CrossTenantLiteral, Action::Block, &subject)
            .statement(sql, false)
    }

    /// Feeds events, closes the window, returns every line that would be written.
    fn run(l: &mut Limiter, events: &[SecurityEvent], now: Instant) -> Vec<SecurityEvent> {
        let mut out = Vec::new();
        for e in events {
            if l.admit(e, now, &mut out) == Outcome::Write {
                out.push(e.clone());
            }
        }
        l.close(&mut out);
        out
    }

    fn weight(lines: &[SecurityEvent]) -> u64 {
        lines.iter().map(|e| e.count.unwrap_or(1)).sum()
    }

    #[test]
    fn a_session_over_its_budget_is_folded_into_one_line() {
        let mut l = Limiter::new(limits());
        let evs: Vec<_> = (0..100)
            .map(|i| ev("s1", Some("t1"), &format!("q{i}")))
            .collect();
        let lines = run(&mut l, &evs, Instant::now());
        assert_eq!(lines.len(), 4);
        assert_eq!(weight(&lines), 100);
        let agg = lines.iter().find(|e| e.aggregate.is_some()).unwrap();
        assert_eq!((agg.aggregate, agg.count), (Some("session"), Some(97)));
        assert_eq!(
            agg.statement.as_deref(),
            Some("q3"),
            "the first folded is the sample"
        );
        assert!(agg.first_ts.is_some() && agg.last_ts.is_some());
    }

    #[test]
    fn sessions_of_one_tenant_share_its_budget_and_other_tenants_keep_theirs() {
        let mut l = Limiter::new(limits());
        let mut evs = Vec::new();
        for s in 0..10 {
            for i in 0..2 {
                evs.push(ev(&format!("a{s}"), Some("ta"), &format!("q{s}-{i}")));
            }
        }
        evs.push(ev("b", Some("tb"), "x1"));
        evs.push(ev("b", Some("tb"), "x2"));
        let lines = run(&mut l, &evs, Instant::now());
        let of = |t: &str| -> Vec<&SecurityEvent> {
            lines
                .iter()
                .filter(|e| e.subject.tenant.as_deref() == Some(t))
                .collect()
        };
        let a = of("ta");
        assert_eq!(a.len(), 5 + 1, "the budget, then one tenant aggregate");
        assert_eq!(a.iter().map(|e| e.count.unwrap_or(1)).sum::<u64>(), 20);
        assert!(a.iter().any(|e| e.aggregate == Some("tenant")));
        let b = of("tb");
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|e| e.count.is_none()));
    }

    #[test]
    fn the_proxy_budget_is_the_backstop() {
        let mut l = Limiter::new(limits());
        let evs: Vec<_> = (0..20)
            .map(|i| ev(&format!("s{i}"), Some(&format!("t{i}")), "q"))
            .collect();
        let lines = run(&mut l, &evs, Instant::now());
        assert_eq!(lines.len(), 9);
        assert_eq!(weight(&lines), 20);
        assert!(lines.iter().any(|e| e.aggregate == Some("proxy")));
    }

    #[test]
    fn identical_repeats_count_against_the_line_already_written() {
        let mut l = Limiter::new(limits());
        let evs: Vec<_> = (0..50).map(|_| ev("s", Some("t"), "same")).collect();
        let lines = run(&mut l, &evs, Instant::now());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].aggregate, Some("repeat"));
        assert_eq!(lines[1].count, Some(49));
        assert!(lines[1]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("repeated 49 more times"));
    }

    #[test]
    fn sessions_without_a_tenant_share_their_address_budget() {
        let mut l = Limiter::new(limits());
        let evs: Vec<_> = (0..30)
            .map(|i| ev(&format!("s{i}"), None, &format!("q{i}")))
            .collect();
        let lines = run(&mut l, &evs, Instant::now());
        assert_eq!(lines.len(), 6);
        assert!(lines.iter().any(|e| e.aggregate == Some("client")));
        assert_eq!(weight(&lines), 30);
    }

    #[test]
    fn a_closed_window_renews_the_budgets_and_emits_its_aggregates() {
        let mut l = Limiter::new(limits());
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..5 {
            l.admit(&ev("s", Some("t"), &format!("q{i}")), t0, &mut out);
        }
        assert!(out.is_empty());
        l.close_due(t0 + Duration::from_secs(9), &mut out);
        assert!(out.is_empty(), "not due yet");
        let next = l.admit(
            &ev("s", Some("t"), "q0"),
            t0 + Duration::from_secs(10),
            &mut out,
        );
        assert_eq!(next, Outcome::Write, "a new window, a new budget");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, Some(2));
    }
}
