//! The proxy's side of the posture checks: the start-up refusal, the serving gate, the drift
//! monitor, and the latest result that `/health/tenant-security` and `/metrics` report.
//!
//! At start the catalog checks ([`Scope::Catalog`]) run as the `[upstream]` role. Two kinds of
//! failure stop the start, because the role itself defeats isolation: a role that can bypass
//! RLS (check 1; override `[upstream] allow_privileged`) and a role that can create or alter
//! code (check 8; override `[security] allow_object_creation`). An override downgrades those
//! findings to warnings and records an `upstream_posture` event.
//!
//! Every other failure (a table without forced RLS, a policy that does not read the tenant)
//! closes the *gate*: the proxy runs, `/health/ready` answers 503 with the reason, and every
//! new session is refused with FATAL 57P03 until a later run passes, at start as after drift.
//! `[security] serve_unprotected = true` keeps serving meanwhile (a migration window).
//!
//! When the upstream cannot be reached at start the verdict is deferred: the monitor retries,
//! and the accept loop waits for [`PostureState::verified`] before taking clients. Afterwards
//! the same checks re-run every `[security] drift_check_interval` (at most every
//! [`GATED_RECHECK`] while the gate is closed, so a fix is seen soon); a failure that was not
//! there before is drift: an event, health 503, a metric, the gate closes, and with
//! `on_drift = "refuse"` the proxy stops.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Options, Report, Scope, Status, Target, VerifyError};
use crate::config::{secs, Config, OnDrift};
use crate::events::{now_rfc3339, Action, EventKind, EventSink, SecurityEvent, Subject};

/// The outcome of the last posture run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// No run has completed yet.
    Pending,
    /// The checks ran and nothing failed.
    Pass,
    /// The checks ran and something failed.
    Fail,
    /// The checks could not run (upstream unreachable, query refused).
    Error,
}

/// What the latest posture run found, for the health endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The last report that completed (kept across a later run's error).
    #[serde(skip)]
    pub report: Option<Arc<Report>>,
    /// When the last run finished (RFC 3339), successful or not.
    pub time: Option<String>,
    /// How the last run went.
    pub result: RunResult,
    /// Why the last run could not complete.
    pub error: Option<String>,
    /// The server refused the proxy's own login (wrong password, no such role or database):
    /// its words. Not transient, so health, logs and clients say so instead of "unreachable".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Failures that appeared in the most recent drift (empty until the posture worsens).
    pub drift: Vec<String>,
    /// When the posture last got worse.
    pub drift_time: Option<String>,
    /// Completed runs since start.
    pub runs: u64,
}

/// Shared posture state: written by the start-up check and the monitor, read by admin.
pub struct PostureState {
    snapshot: RwLock<Snapshot>,
    /// Cancelled once the upstream role is known to be acceptable: the accept loop waits for it.
    pub verified: CancellationToken,
    /// Cancelled when the posture made the proxy stop (`on_drift = "refuse"`, or a deferred
    /// start-up check that found a privileged role): `serve` exits non-zero.
    pub refused: CancellationToken,
    /// Set with `refused`; `serve` exits with it.
    refusal: RwLock<Option<String>>,
    /// `[security] serve_unprotected`: failures do not close the gate.
    serve_unprotected: AtomicBool,
}

/// How often the checks re-run while the gate is closed, when the configured interval is longer.
pub const GATED_RECHECK: Duration = Duration::from_secs(10);

impl Default for PostureState {
    fn default() -> Self {
        PostureState {
            snapshot: RwLock::new(Snapshot {
                report: None,
                time: None,
                result: RunResult::Pending,
                error: None,
                rejected: None,
                drift: Vec::new(),
                drift_time: None,
                runs: 0,
            }),
            verified: CancellationToken::new(),
            refused: CancellationToken::new(),
            refusal: RwLock::new(None),
            serve_unprotected: AtomicBool::new(false),
        }
    }
}

impl PostureState {
    /// A copy of the latest result.
    pub fn snapshot(&self) -> Snapshot {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The server's refusal of the proxy's login, while it lasts (see [`Snapshot::rejected`]).
    pub fn rejected(&self) -> Option<String> {
        match self.snapshot.read() {
            Ok(s) => s.rejected.clone(),
            Err(p) => p.into_inner().rejected.clone(),
        }
    }

    /// Why sessions are refused now: the last completed run failed (after the configured
    /// overrides) and `serve_unprotected` is off. `None` while serving is allowed.
    pub fn gate(&self) -> Option<String> {
        if self.serve_unprotected.load(Ordering::Relaxed) {
            return None;
        }
        let g = match self.snapshot.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let report = g.report.as_ref().filter(|r| r.failed())?;
        Some(format!(
            "tenant isolation is not enforced by the database ({}); new sessions are refused until this is fixed or [security] serve_unprotected = true",
            report.failures().join("; ")
        ))
    }

    /// Whether the last completed run failed.
    fn failing(&self) -> bool {
        match self.snapshot.read() {
            Ok(g) => g.report.as_ref().is_some_and(|r| r.failed()),
            Err(p) => p.into_inner().report.as_ref().is_some_and(|r| r.failed()),
        }
    }

    /// Why the proxy stopped itself, if it did.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.read().ok().and_then(|r| r.clone())
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut g = match self.snapshot.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g);
    }

    fn refuse(&self, why: String, shutdown: &CancellationToken) {
        if let Ok(mut r) = self.refusal.write() {
            r.get_or_insert(why);
        }
        self.refused.cancel();
        shutdown.cancel();
    }
}

/// Everything the start-up check and the monitor need, cloned out of the proxy's state.
#[derive(Clone)]
pub struct Monitor {
    /// The `[upstream]` role's connection.
    pub target: Target,
    /// Setting, column, catalog scope.
    pub opts: Options,
    /// Where results go: the health endpoints and the accept gate read them.
    pub state: Arc<PostureState>,
    /// For `upstream_posture` events.
    pub events: EventSink,
    /// `[upstream] allow_privileged`.
    pub allow_privileged: bool,
    /// `[security] allow_object_creation`.
    pub allow_object_creation: bool,
    /// `[security] serve_unprotected`.
    pub serve_unprotected: bool,
    /// `[security] on_drift`.
    pub on_drift: OnDrift,
    /// `[security] drift_check_interval`.
    pub interval: Duration,
    /// The proxy's shutdown token (cancelled to stop serving on `refuse`).
    pub shutdown: CancellationToken,
    /// Who the posture events are about.
    pub subject: Subject,
    /// Where the current signing key comes from (the live configuration, which SIGHUP can
    /// change), so check 10 probes with the key the proxy signs with now.
    pub signing_key: Option<KeySource>,
}

/// The signing key in effect now.
pub type KeySource = Arc<dyn Fn() -> Option<crate::signing::SigningKey> + Send + Sync>;

/// Time between login attempts while the server rejects the proxy's credentials.
pub const LOGIN_RETRY: Duration = Duration::from_secs(30);

/// The start-up verdict.
#[derive(Debug)]
pub enum Startup {
    /// The role is acceptable (or allowed); serving may begin.
    Verified,
    /// The upstream could not be checked yet; the monitor will retry before clients are taken.
    Deferred(VerifyError),
}

/// Why the start was refused: the message names the role, the privilege or flag, the fix,
/// and the key that overrides it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The role findings that stop a start, and how to override them.
struct Blocker {
    key: &'static str,
    /// Why it matters, for the refusal message.
    why: &'static str,
    /// The configuration key that overrides it, named in the refusal.
    key_name: &'static str,
    /// What allowing it gives up, for the `allow` event.
    allowed: &'static str,
}

const BLOCKERS: [Blocker; 2] = [
    Blocker {
        key: "role",
        why: "a role that bypasses row-level security defeats tenant injection",
        key_name: "[upstream] allow_privileged",
        allowed: "row-level security does not protect tenants",
    },
    Blocker {
        key: "object_creation",
        why: "code the upstream role creates can call set_config at run time, where the proxy cannot see it, and switch tenant",
        key_name: "[security] allow_object_creation",
        allowed: "code the role creates can switch tenant behind the proxy",
    },
];

impl Monitor {
    /// Builds the monitor for `config` (TLS settings are validated here).
    pub fn new(
        config: &Config,
        state: Arc<PostureState>,
        events: EventSink,
        shutdown: CancellationToken,
    ) -> Result<Monitor, VerifyError> {
        let u = &config.upstream;
        state
            .serve_unprotected
            .store(config.security.serve_unprotected, Ordering::Relaxed);
        Ok(Monitor {
            target: Target::from_upstream(u)?,
            opts: Options {
                setting: config.tenant.setting.clone(),
                column: config.tenant.column.clone(),
                tenants: Vec::new(),
                scope: Scope::Catalog,
                strict_keys: config.security.require_tenant_keys,
                signed: config.tenant.signing_key_file.is_some(),
                signing_key: config
                    .tenant
                    .resolved_signing_keys
                    .as_deref()
                    .map(|k| k.current().clone()),
            },
            signing_key: None,
            state,
            events,
            allow_privileged: u.allow_privileged,
            allow_object_creation: config.security.allow_object_creation,
            serve_unprotected: config.security.serve_unprotected,
            on_drift: config.security.on_drift,
            interval: secs(config.security.drift_check_interval),
            shutdown,
            subject: Subject {
                session_id: "posture".into(),
                user: Some(u.user.clone()),
                database: Some(u.database.clone()),
                ..Subject::default()
            },
        })
    }

    fn opts_user(&self) -> &str {
        self.target.user().unwrap_or("?")
    }

    fn event(&self, action: Action, detail: String) {
        self.events.record(
            SecurityEvent::new(EventKind::UpstreamPosture, action, &self.subject).detail(detail),
        );
    }

    /// Runs the checks once; `Err` only when they could not run.
    async fn run_once(&self) -> Result<Report, VerifyError> {
        match &self.signing_key {
            Some(source) => {
                let mut opts = self.opts.clone();
                opts.signing_key = source();
                super::run_target(&self.target, &opts).await
            }
            None => super::run_target(&self.target, &self.opts).await,
        }
    }

    /// The start-up check: refuses a role that defeats isolation, records the baseline.
    pub async fn startup(&self) -> Result<Startup, Refused> {
        match self.run_once().await {
            Ok(report) => {
                self.first_verdict(report)?;
                Ok(Startup::Verified)
            }
            Err(e) => {
                self.record_error(&e);
                Ok(Startup::Deferred(e))
            }
        }
    }

    /// Records the start-up refusal as an `upstream_posture` event (`action: block`).
    pub fn refused_at_start(&self, p: &Refused) {
        self.event(Action::Block, p.0.clone());
    }

    /// Whether the operator overrode this blocker.
    fn overridden(&self, b: &Blocker) -> bool {
        match b.key {
            "role" => self.allow_privileged,
            _ => self.allow_object_creation,
        }
    }

    /// Downgrades the failures the operator chose to accept.
    fn apply_overrides(&self, report: &mut Report) {
        for b in BLOCKERS.iter().filter(|b| self.overridden(b)) {
            downgrade(report, b.key, b.key_name);
        }
    }

    /// Judges the first completed report: refuse, or allow (with an event) and keep it.
    fn first_verdict(&self, mut report: Report) -> Result<(), Refused> {
        let mut refusals = Vec::new();
        for b in &BLOCKERS {
            let failures = failing_findings(&report, b.key);
            if failures.is_empty() {
                continue;
            }
            let detail = failures.join("; ");
            if self.overridden(b) {
                self.event(
                    Action::Allow,
                    format!("{detail}; allowed by {} = true: {}", b.key_name, b.allowed),
                );
            } else {
                refusals.push(format!(
                    "{detail}; refusing to start ({}; set {} = true to override)",
                    b.why, b.key_name
                ));
            }
        }
        if !refusals.is_empty() {
            return Err(Refused(refusals.join("; and ")));
        }
        self.apply_overrides(&mut report);
        if report.failed() {
            let f = report.failures().join("; ");
            if self.serve_unprotected {
                tracing::warn!("RLS posture fails at start; serving anyway ([security] serve_unprotected = true): {f}");
                self.event(
                    Action::Allow,
                    format!("posture fails at start: {f}; serving anyway: [security] serve_unprotected = true"),
                );
            } else {
                tracing::error!("RLS posture fails at start; refusing clients (FATAL 57P03) until it is fixed: {f}");
                self.event(
                    Action::Block,
                    format!("posture fails at start: {f}; refusing new sessions until fixed"),
                );
            }
        }
        self.accept(report, Vec::new());
        self.state.verified.cancel();
        Ok(())
    }

    fn record_error(&self, e: &VerifyError) {
        let now = now_rfc3339();
        self.state.update(|s| {
            s.time = Some(now);
            s.result = RunResult::Error;
            s.error = Some(e.to_string());
            s.rejected = super::connect::rejected(e);
        });
        crate::metrics::posture_check(None);
    }

    fn accept(&self, report: Report, drift: Vec<String>) {
        let now = now_rfc3339();
        crate::metrics::posture_check(Some((report.failures().len(), report.failed())));
        self.state.update(|s| {
            s.result = if report.failed() {
                RunResult::Fail
            } else {
                RunResult::Pass
            };
            s.report = Some(Arc::new(report));
            s.time = Some(now.clone());
            s.error = None;
            s.rejected = None;
            s.runs += 1;
            if !drift.is_empty() {
                s.drift = drift;
                s.drift_time = Some(now);
            }
        });
    }

    /// Until the first verdict: retry with backoff. Then re-check every interval until shutdown.
    pub async fn run(self) {
        let mut delay = Duration::from_millis(200);
        while !self.state.verified.is_cancelled() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return,
            }
            delay =
                (delay * 2)
                    .min(Duration::from_secs(5))
                    .max(if self.state.rejected().is_some() {
                        LOGIN_RETRY
                    } else {
                        Duration::ZERO
                    });
            match self.run_once().await {
                Ok(report) => {
                    if let Err(p) = self.first_verdict(report) {
                        tracing::error!("{p}");
                        self.event(Action::Block, p.0.clone());
                        self.state.refuse(p.to_string(), &self.shutdown);
                        return;
                    }
                    tracing::info!("upstream role verified");
                }
                Err(e) => {
                    self.record_error(&e);
                    match super::connect::rejected(&e) {
                        Some(why) => {
                            // Not transient: retrying every few seconds only fills the server's
                            // log with failed logins. Back off to a minute between attempts.
                            delay = delay.max(LOGIN_RETRY);
                            tracing::error!(
                                user = %self.opts_user(),
                                retry_in = ?delay,
                                "the upstream server rejected tenantgate's login: {why}; this is not transient: fix [upstream] user/password/password_env/database (or the server's pg_hba.conf); clients are refused with 08004 until then"
                            );
                        }
                        None => {
                            tracing::warn!(error = %e, retry_in = ?delay, "RLS posture check deferred: upstream not checkable yet")
                        }
                    }
                }
            }
        }
        loop {
            let wait = if self.state.gate().is_some() {
                self.interval.min(GATED_RECHECK)
            } else {
                self.interval
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => return,
            }
            self.drift_check().await;
            if self.state.refused.is_cancelled() {
                return;
            }
        }
    }

    /// One periodic run: compare with the last completed report and act on what got worse.
    pub async fn drift_check(&self) {
        let mut report = match self.run_once().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "RLS posture drift check could not run");
                self.record_error(&e);
                return;
            }
        };
        self.apply_overrides(&mut report);
        let was_failing = self.state.failing();
        let before: BTreeSet<String> = self
            .state
            .snapshot()
            .report
            .map(|r| r.failures().into_iter().collect())
            .unwrap_or_default();
        let now: BTreeSet<String> = report.failures().into_iter().collect();
        let worse: Vec<String> = now.difference(&before).cloned().collect();
        let better: Vec<String> = before.difference(&now).cloned().collect();
        if !better.is_empty() {
            tracing::info!("RLS posture improved: {}", better.join("; "));
        }
        let refuse = !worse.is_empty() && self.on_drift == OnDrift::Refuse;
        let gate = !self.serve_unprotected;
        if !worse.is_empty() {
            crate::metrics::posture_drift();
            let consequence = if refuse {
                "stopping (on_drift = \"refuse\")"
            } else if gate {
                "refusing new sessions until fixed"
            } else {
                "still serving ([security] serve_unprotected = true)"
            };
            let detail = format!("posture worsened: {}; {consequence}", worse.join("; "));
            tracing::warn!("RLS {detail}");
            self.event(
                if refuse || gate {
                    Action::Block
                } else {
                    Action::Log
                },
                detail,
            );
        }
        let why = format!(
            "RLS posture drift with on_drift = \"refuse\": {}",
            worse.join("; ")
        );
        let now_failing = report.failed();
        self.accept(report, worse);
        if refuse {
            tracing::error!("{why}; stopping");
            self.state.refuse(why, &self.shutdown);
        } else if gate && was_failing && !now_failing {
            tracing::info!("RLS posture passes again; accepting new sessions");
        }
    }
}

/// The failing messages of one check (`role`: the role or a role it reaches bypasses RLS;
/// `object_creation`: it can create code).
pub fn failing_findings(report: &Report, key: &str) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.key == key)
        .flat_map(|c| c.findings.iter())
        .filter(|f| f.status == Status::Fail)
        .map(|f| f.message.clone())
        .collect()
}

/// With an override, a check's failures become warnings (the operator chose them).
pub fn downgrade(report: &mut Report, key: &str, override_key: &str) {
    for c in report.checks.iter_mut().filter(|c| c.key == key) {
        for f in c.findings.iter_mut().filter(|f| f.status == Status::Fail) {
            f.status = Status::Warn;
            f.message.push_str(&format!(" (allowed by {override_key})"));
        }
    }
    report.restatus();
}

#[cfg(test)]
mod tests {
    use super::super::catalog::{Facts, RoleFacts};
    use super::super::checks;
    use super::*;

    fn report(superuser: bool) -> Report {
        let facts = Facts {
            role: RoleFacts {
                user: "postgres".into(),
                superuser,
                ..RoleFacts::default()
            },
            ..Facts::default()
        };
        let c = checks::catalog_checks(&facts, "app.tenant_id", "tenant_id", false, false);
        Report::new(Scope::Catalog, "app.tenant_id", "tenant_id", facts, c)
    }

    #[test]
    fn privileged_role_is_named_and_can_be_downgraded() {
        let mut r = report(true);
        let f = failing_findings(&r, "role");
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("postgres") && f[0].contains("rolsuper"));
        assert!(r.failed());
        downgrade(&mut r, "role", "[upstream] allow_privileged");
        assert!(!r.failed());
        assert!(failing_findings(&r, "role").is_empty());
        assert!(failing_findings(&report(false), "role").is_empty());
    }

    #[test]
    fn the_gate_closes_on_a_failing_report_unless_serving_unprotected() {
        let state = PostureState::default();
        assert!(
            state.gate().is_none(),
            "no report yet: the verified token gates instead"
        );
        state.update(|s| s.report = Some(Arc::new(report(true))));
        let why = state.gate().expect("a failing report closes the gate");
        assert!(
            why.contains("rolsuper") && why.contains("serve_unprotected"),
            "{why}"
        );
        state.serve_unprotected.store(true, Ordering::Relaxed);
        assert!(state.gate().is_none());
    }
}
