//! The security event log: one JSON object per line, written off the data path.
//!
//! Sessions `record` into a bounded queue and never wait; a writer thread of its own drains it
//! to stdout, stderr or an append-only file (reopened on SIGHUP for logrotate), so a slow disk
//! never stalls the event loop that relays sessions. When the queue is full the event is dropped
//! and counted, and the loss itself is reported as `events_dropped`. At shutdown
//! [`EventSink::close`] writes the open aggregates and lets the writer finish what is queued.
//!
//! Probe events pass through `limit::Limiter` first: per session, per tenant and per proxy
//! budgets, beyond which events are counted into aggregate lines instead of written one by one,
//! so a looping client cannot flood the log, nor the diagnostics (a probe is logged at WARN only
//! when its line is written).

mod limit;

pub use limit::Limits;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use limit::{Limiter, Outcome};

use serde::Serialize;

/// Most events buffered before new ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// Statement text is truncated to this many bytes in events.
pub const MAX_STATEMENT: usize = 2048;

/// The `event` field of a log line, in snake_case; `docs/security-events.md` describes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A client failed to authenticate.
    AuthFailed,
    /// A statement arrived in a session without tenant context.
    NoTenantRefused,
    /// An attempt to set or reset the tenant setting.
    TenantTamper,
    /// An attempt to change role or session authorization.
    RoleTamper,
    /// An attempt to weaken row-level security.
    RlsTamper,
    /// A statement naming another tenant's id.
    CrossTenantLiteral,
    /// A statement reaching catalog views or functions that expose other sessions of the
    /// shared upstream role, large objects or activity statistics, or `EXPLAIN ANALYZE`.
    CatalogProbe,
    /// A trusted backend switched tenant.
    TenantSwitch,
    /// An operator ran a statement.
    OperatorStatement,
    /// A break-glass session began.
    BreakglassSession,
    /// A break-glass session ran a statement.
    BreakglassStatement,
    /// The upstream role or schema posture changed or is unsafe.
    UpstreamPosture,
    /// A reference to a prepared statement or portal the session did not create (another
    /// session's, or the proxy's own).
    StatementProbe,
    /// Events were lost because the queue was full.
    EventsDropped,
    /// A tenant's `max_client_connections` refused a login or a switch to it.
    TenantLimited,
}

impl EventKind {
    /// The event's name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AuthFailed => "auth_failed",
            EventKind::NoTenantRefused => "no_tenant_refused",
            EventKind::TenantTamper => "tenant_tamper",
            EventKind::RoleTamper => "role_tamper",
            EventKind::RlsTamper => "rls_tamper",
            EventKind::CrossTenantLiteral => "cross_tenant_literal",
            EventKind::CatalogProbe => "catalog_probe",
            EventKind::TenantSwitch => "tenant_switch",
            EventKind::OperatorStatement => "operator_statement",
            EventKind::BreakglassSession => "breakglass_session",
            EventKind::BreakglassStatement => "breakglass_statement",
            EventKind::StatementProbe => "statement_probe",
            EventKind::UpstreamPosture => "upstream_posture",
            EventKind::EventsDropped => "events_dropped",
            EventKind::TenantLimited => "tenant_limited",
        }
    }

    /// Every `action` this event is written with. `docs/security-events.md` lists the same
    /// (a test compares them), and test proxies check every line they wrote against it.
    #[cfg(any(test, feature = "internals"))]
    pub fn actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            EventKind::AuthFailed
            | EventKind::NoTenantRefused
            | EventKind::StatementProbe
            | EventKind::CatalogProbe
            | EventKind::TenantLimited => &[Block],
            EventKind::TenantTamper
            | EventKind::RoleTamper
            | EventKind::RlsTamper
            | EventKind::CrossTenantLiteral => &[Block, Log],
            EventKind::TenantSwitch
            | EventKind::OperatorStatement
            | EventKind::BreakglassSession
            | EventKind::BreakglassStatement => &[Allow],
            // block: a privileged role stopped the start or drift stopped the proxy; log: the
            // posture failed or worsened; allow: a privileged role let in by allow_privileged.
            EventKind::UpstreamPosture => &[Block, Log, Allow],
            EventKind::EventsDropped => &[Log],
        }
    }

    /// Optional fields this event may carry besides [`COMMON_FIELDS`] (also documented).
    #[cfg(any(test, feature = "internals"))]
    pub fn optional_fields(self) -> &'static [&'static str] {
        match self {
            EventKind::AuthFailed | EventKind::TenantLimited => &[
                "sqlstate",
                "detail",
                "count",
                "aggregate",
                "first_ts",
                "last_ts",
            ],
            EventKind::NoTenantRefused
            | EventKind::RoleTamper
            | EventKind::RlsTamper
            | EventKind::CrossTenantLiteral
            | EventKind::StatementProbe
            | EventKind::CatalogProbe => &[
                "statement",
                "sqlstate",
                "detail",
                "count",
                "aggregate",
                "first_ts",
                "last_ts",
            ],
            EventKind::TenantTamper => &[
                "statement",
                "sqlstate",
                "detail",
                "count",
                "aggregate",
                "first_ts",
                "last_ts",
                "to_tenant",
            ],
            EventKind::TenantSwitch => &["statement", "from_tenant", "to_tenant"],
            EventKind::OperatorStatement | EventKind::BreakglassStatement => &["statement"],
            EventKind::BreakglassSession | EventKind::UpstreamPosture => &["detail"],
            EventKind::EventsDropped => &["detail", "count"],
        }
    }
}

/// Fields on every event, always present (null when unknown).
#[cfg(any(test, feature = "internals"))]
pub const COMMON_FIELDS: [&str; 10] = [
    "ts",
    "event",
    "action",
    "session_id",
    "user",
    "kind",
    "tenant",
    "client_addr",
    "application_name",
    "database",
];

/// What the proxy did about the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refused: a statement, a login, or (`upstream_posture`) the proxy's start or serving.
    Block,
    /// Recorded without refusing anything: a logged probe still reaches PostgreSQL.
    Log,
    /// Let through on purpose and recorded for audit (switches, operator and break-glass
    /// statements, a role admitted by `allow_privileged`).
    Allow,
}

/// Who the event is about; shared by all events of one session.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Subject {
    /// Random per-connection id, also in the tracing span.
    pub session_id: String,
    /// The configured user name (without tenant suffix).
    pub user: Option<String>,
    /// `app`, `operator`, `breakglass`, `admin`.
    pub kind: Option<&'static str>,
    /// The session's tenant, if any.
    pub tenant: Option<String>,
    /// The client's address (from PROXY protocol when trusted).
    pub client_addr: Option<String>,
    /// From the startup packet: chosen by the client, so informative only.
    pub application_name: Option<String>,
    /// The database the client named.
    pub database: Option<String>,
}

impl From<&Subject> for Subject {
    fn from(s: &Subject) -> Subject {
        s.clone()
    }
}

/// One line of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityEvent {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Written as [`EventKind::as_str`] names it.
    pub event: EventKind,
    /// Written as `block`, `log` or `allow`.
    pub action: Action,
    /// The session it is about, flattened so the log's fields stay flat for `jq` and SIEMs.
    #[serde(flatten)]
    pub subject: Subject,
    /// The statement (truncated, redacted when it carries a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// SQLSTATE sent to the client, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<&'static str>,
    /// What matched, or other context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For aggregated or `events_dropped` events: how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// For aggregates: which budget ran out (`repeat`, `session`, `tenant`, `client`, `proxy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<&'static str>,
    /// For aggregates: `ts` of the first event counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ts: Option<String>,
    /// For aggregates: `ts` of the last event counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<String>,
    /// `tenant_switch`: the tenant before the switch (null when the session had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_tenant: Option<Option<String>>,
    /// `tenant_switch` and a refused switch: the tenant asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_tenant: Option<String>,
}

impl SecurityEvent {
    /// A new event stamped now; `subject` by value (a session's, built for the event) or by reference (a long-lived
    /// one, cloned).
    pub fn new(event: EventKind, action: Action, subject: impl Into<Subject>) -> Self {
        Self {
            ts: now_rfc3339(),
            event,
            action,
            subject: subject.into(),
            statement: None,
            sqlstate: None,
            detail: None,
            count: None,
            aggregate: None,
            first_ts: None,
            last_ts: None,
            from_tenant: None,
            to_tenant: None,
        }
    }

    /// A tenant switch's two ends, as fields a SIEM can filter on.
    pub fn switch(mut self, from: Option<&str>, to: &str) -> Self {
        self.from_tenant = Some(from.map(str::to_owned));
        self.to_tenant = Some(to.to_owned());
        self
    }

    /// A refused switch: the tenant that was asked for.
    pub fn asked_tenant(mut self, to: &str) -> Self {
        self.to_tenant = Some(to.to_owned());
        self
    }

    /// Attaches statement text, truncated to 2 KiB, or a redaction note.
    pub fn statement(mut self, sql: &str, secret: bool) -> Self {
        self.statement = Some(if secret {
            "<redacted: statement carries a password>".to_owned()
        } else {
            truncate(sql, MAX_STATEMENT).to_owned()
        });
        self
    }

    /// Attaches the SQLSTATE sent to the client.
    pub fn sqlstate(mut self, code: &'static str) -> Self {
        self.sqlstate = Some(code);
        self
    }

    /// Written as is: unlike the statement, never redacted.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// Current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the writer thread is sent.
enum Msg {
    Event(Box<SecurityEvent>),
    /// Wake up: a reopen was requested (the flag says so even when the queue was full).
    Wake,
    /// Write what is queued before this, flush, and end.
    Stop,
}

/// The handle sessions record events through.
#[derive(Clone)]
pub struct EventSink {
    /// Bounded queue to the writer thread.
    tx: SyncSender<Msg>,
    /// Rate limits and open aggregates of probe events.
    limiter: Arc<Mutex<Limiter>>,
    /// Events dropped since the last `events_dropped` report.
    dropped: Arc<AtomicU64>,
    /// Total dropped since start (for metrics).
    pub dropped_total: Arc<AtomicU64>,
    /// Every event recorded, by kind, whether written or folded into an aggregate
    /// (`tenantgate_security_events_total`).
    pub counts: Arc<EventCounts>,
    /// Asks the writer to reopen its file (SIGHUP).
    reopen: Arc<AtomicBool>,
    /// The writer thread, joined by [`EventSink::close`].
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Indexed by `EventKind as usize`, which is the order of [`ALL_KINDS`].
#[derive(Debug, Default)]
pub struct EventCounts(pub [AtomicU64; ALL_KINDS.len()]);

impl EventCounts {
    fn bump(&self, kind: EventKind) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every event kind, in declaration order (matches `EventCounts` indexes).
pub const ALL_KINDS: [EventKind; 15] = [
    EventKind::AuthFailed,
    EventKind::NoTenantRefused,
    EventKind::TenantTamper,
    EventKind::RoleTamper,
    EventKind::RlsTamper,
    EventKind::CrossTenantLiteral,
    EventKind::CatalogProbe,
    EventKind::TenantSwitch,
    EventKind::OperatorStatement,
    EventKind::BreakglassSession,
    EventKind::BreakglassStatement,
    EventKind::StatementProbe,
    EventKind::UpstreamPosture,
    EventKind::EventsDropped,
    EventKind::TenantLimited,
];

impl EventSink {
    /// Starts the writer thread for `target` (`stdout`, `stderr` or a file path), with the
    /// probe event budgets `limits`.
    pub fn start(target: &str, limits: Limits) -> std::io::Result<EventSink> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let out = Output::open(target)?;
        let dropped = Arc::new(AtomicU64::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = {
            let (dropped, reopen, target) = (dropped.clone(), reopen.clone(), target.to_owned());
            std::thread::Builder::new()
                .name("tenantgate-events".into())
                .spawn(move || writer(rx, out, &target, &dropped, &reopen))?
        };
        let sink = EventSink {
            tx,
            limiter: Arc::new(Mutex::new(Limiter::new(limits))),
            dropped,
            dropped_total: Arc::new(AtomicU64::new(0)),
            counts: Arc::new(EventCounts::default()),
            reopen,
            writer: Arc::new(Mutex::new(Some(writer))),
        };
        // Close due windows so their aggregates are written even when no new event comes.
        let ticker = sink.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let mut lines = Vec::new();
                if let Ok(mut l) = ticker.limiter.lock() {
                    l.close_due(Instant::now(), &mut lines);
                }
                ticker.send_aggregates(lines);
            }
        });
        Ok(sink)
    }

    /// Queues an event; never waits. A full queue drops it and counts the loss. Probe events
    /// beyond their session's, tenant's or the proxy's budget are counted into an aggregate
    /// line instead (see [`Limits`]); only written probes are logged at WARN.
    pub fn record(&self, ev: SecurityEvent) {
        self.counts.bump(ev.event);
        if ev.action != Action::Allow && is_probe(ev.event) {
            let mut closed = Vec::new();
            let outcome = match self.limiter.lock() {
                Ok(mut l) => l.admit(&ev, Instant::now(), &mut closed),
                Err(_) => Outcome::Write,
            };
            self.send_aggregates(closed);
            if outcome == Outcome::Folded {
                return;
            }
        }
        if ev.action == Action::Block {
            tracing::warn!(
                event = ev.event.as_str(),
                statement = ev.statement.as_deref(),
                detail = ev.detail.as_deref(),
                "security event"
            );
        } else if matches!(
            ev.event,
            EventKind::BreakglassSession | EventKind::UpstreamPosture
        ) {
            tracing::warn!(
                event = ev.event.as_str(),
                detail = ev.detail.as_deref(),
                "security event"
            );
        }
        self.send(ev);
    }

    /// Queues aggregate lines, each with one WARN line of diagnostics.
    fn send_aggregates(&self, lines: Vec<SecurityEvent>) {
        for ev in lines {
            warn_aggregate(&ev);
            self.send(ev);
        }
    }

    /// Queues one line; a full queue counts every event the line stands for as dropped.
    fn send(&self, ev: SecurityEvent) {
        let weight = ev.count.unwrap_or(1);
        if self.tx.try_send(Msg::Event(Box::new(ev))).is_err() {
            self.dropped.fetch_add(weight, Ordering::Relaxed);
            self.dropped_total.fetch_add(weight, Ordering::Relaxed);
        }
    }

    /// Reopens the log file (SIGHUP, for logrotate).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        let _ = self.tx.try_send(Msg::Wake);
    }

    /// Shutdown: the writer writes everything queued so far, flushes and ends; waits for it
    /// (on the blocking pool) for at most `limit`. Events recorded afterwards are dropped.
    pub async fn close(&self, limit: Duration) {
        let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let tx = self.tx.clone();
        // The open aggregates are written too: nothing counted is lost at shutdown.
        let mut last = Vec::new();
        if let Ok(mut l) = self.limiter.lock() {
            l.close(&mut last);
        }
        let (dropped, dropped_total) = (self.dropped.clone(), self.dropped_total.clone());
        let wait = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + limit;
            // The queue may be full while the writer catches up: retry until the deadline.
            let send = |mut msg: Msg| loop {
                match tx.try_send(msg) {
                    Ok(()) => return true,
                    Err(TrySendError::Disconnected(_)) => return false,
                    Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                        msg = m;
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(TrySendError::Full(_)) => return false,
                }
            };
            for ev in last {
                warn_aggregate(&ev);
                let weight = ev.count.unwrap_or(1);
                if !send(Msg::Event(Box::new(ev))) {
                    dropped.fetch_add(weight, Ordering::Relaxed);
                    dropped_total.fetch_add(weight, Ordering::Relaxed);
                }
            }
            if !send(Msg::Stop) {
                return;
            }
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let _ = wait.await;
    }
}

/// The one WARN line of diagnostics for an aggregate line.
fn warn_aggregate(ev: &SecurityEvent) {
    tracing::warn!(
        event = ev.event.as_str(),
        aggregate = ev.aggregate,
        count = ev.count,
        session_id = ev.subject.session_id.as_str(),
        tenant = ev.subject.tenant.as_deref(),
        "security events aggregated"
    );
}

/// Events that are rate-limited and aggregated (refused or logged probes, failed logins,
/// refused by a tenant's limit).
fn is_probe(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::NoTenantRefused
            | EventKind::TenantTamper
            | EventKind::RoleTamper
            | EventKind::RlsTamper
            | EventKind::CrossTenantLiteral
            | EventKind::CatalogProbe
            | EventKind::AuthFailed
            | EventKind::StatementProbe
            | EventKind::TenantLimited
    )
}

enum Output {
    Stdout,
    Stderr,
    File(std::io::BufWriter<std::fs::File>),
}

impl Output {
    fn open(target: &str) -> std::io::Result<Output> {
        Ok(match target {
            "stdout" => Output::Stdout,
            "stderr" => Output::Stderr,
            // 0600: statements and client addresses are for the security team, not for every
            // local user. Applies when the file is created; an existing file keeps its mode.
            path => Output::File(std::io::BufWriter::new({
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)?
            })),
        })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(line)?;
                o.flush()
            }
            Output::Stderr => std::io::stderr().lock().write_all(line),
            Output::File(f) => f.write_all(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            _ => Ok(()),
        }
    }
}

/// The writer thread: writes batches as they come, flushes after each batch and at least once
/// a second (with any `events_dropped` report), reopens on request, ends on `Stop` or when
/// every sender is gone.
fn writer(
    rx: mpsc::Receiver<Msg>,
    mut out: Output,
    target: &str,
    dropped: &AtomicU64,
    reopen: &AtomicBool,
) {
    loop {
        let mut stop = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Msg::Event(ev)) => {
                write_event(&mut out, &ev);
                false
            }
            Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => false,
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => true,
        };
        while !stop {
            match rx.try_recv() {
                Ok(Msg::Event(ev)) => write_event(&mut out, &ev),
                Ok(Msg::Wake) => {}
                Ok(Msg::Stop) => stop = true,
                Err(_) => break,
            }
        }
        report_dropped(&mut out, dropped);
        let _ = out.flush();
        if reopen.swap(false, Ordering::Relaxed) {
            match Output::open(target) {
                Ok(o) => out = o,
                Err(e) => {
                    tracing::error!(error = %e, target, "cannot reopen event log; keeping the old file")
                }
            }
        }
        if stop {
            return;
        }
    }
}

fn report_dropped(out: &mut Output, dropped: &AtomicU64) {
    let n = dropped.swap(0, Ordering::Relaxed);
    if n > 0 {
        let mut ev = SecurityEvent::new(EventKind::EventsDropped, Action::Log, Subject::default());
        ev.count = Some(n);
        ev.detail = Some("the event queue was full".into());
        write_event(out, &ev);
    }
}

fn write_event(out: &mut Output, ev: &SecurityEvent) {
    match serde_json::to_vec(ev) {
        Ok(mut line) => {
            line.push(b'\n');
            if let Err(e) = out.write_line(&line) {
                tracing::error!(error = %e, "cannot write security event");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot serialise security event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serialises_with_contract_fields() {
        let subject = Subject {
            session_id: "abc".into(),
            user: Some("u".into()),
            kind: Some("app"),
            tenant: None,
            ..Default::default()
        };
        let ev = SecurityEvent::new(EventKind::TenantTamper, Action::Block, &subject)
            .statement("set app.tenant_id = 'x'", false)
            .sqlstate("42501");
        let v: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&ev).unwrap()).unwrap();
        assert_eq!(v["event"], "tenant_tamper");
        assert_eq!(v["action"], "block");
        assert_eq!(v["session_id"], "abc");
        assert!(v["tenant"].is_null());
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["sqlstate"], "42501");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(2000);
        let t = truncate(&s, MAX_STATEMENT);
        assert!(t.len() <= MAX_STATEMENT);
        assert!(s.starts_with(t));
    }

    #[test]
    fn secrets_are_redacted() {
        let ev = SecurityEvent::new(EventKind::RoleTamper, Action::Block, Subject::default())
            .statement("alter role x password 'hunter2'", true);
        assert!(!ev.statement.unwrap().contains("hunter2"));
    }
}
