//! The proxy's side of the posture checks: the start-up refusal, the drift monitor, and the
//! latest result that `/health/tenant-security` and `/metrics` report.
//!
//! At start the catalog checks ([`Scope::Catalog`]) run as the `[upstream]` role. A role that
//! can bypass RLS stops the start unless `[upstream] allow_privileged = true` (then its findings
//! are downgraded to warnings and an `upstream_posture` event records the override). When the
//! upstream cannot be reached at start the verdict is deferred: the monitor retries, and the
//! accept loop waits for [`PostureState::verified`] before taking clients. Afterwards the same
//! checks re-run every `[security] drift_check_interval`; a failure that was not there before is
//! drift: an event, health 503, a metric, and with `on_drift = "refuse"` the proxy stops.

use std::collections::BTreeSet;
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
    /// The latest result.
    snapshot: RwLock<Snapshot>,
    /// Cancelled once the upstream role is known to be acceptable: the accept loop waits for it.
    pub verified: CancellationToken,
    /// Cancelled when the posture made the proxy stop (`on_drift = "refuse"`, or a deferred
    /// start-up check that found a privileged role): `serve` exits non-zero.
    pub refused: CancellationToken,
    /// Why it stopped.
    refusal: RwLock<Option<String>>,
}

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

    /// Whether health should be 200: a completed, passing last run.
    pub fn healthy(&self) -> bool {
        self.snapshot().result == RunResult::Pass
    }

    /// The server's refusal of the proxy's login, while it lasts (see [`Snapshot::rejected`]).
    pub fn rejected(&self) -> Option<String> {
        match self.snapshot.read() {
            Ok(s) => s.rejected.clone(),
            Err(p) => p.into_inner().rejected.clone(),
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
    /// Where results go.
    pub state: Arc<PostureState>,
    /// The security event log.
    pub events: EventSink,
    /// `[upstream] allow_privileged`.
    pub allow_privileged: bool,
    /// `[security] on_drift`.
    pub on_drift: OnDrift,
    /// `[security] drift_check_interval`.
    pub interval: Duration,
    /// The proxy's shutdown token (cancelled to stop serving on `refuse`).
    pub shutdown: CancellationToken,
    /// Who the posture events are about.
    pub subject: Subject,
}

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

/// Why the start was refused: the message names the role and the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}; refusing to start (a role that bypasses row-level security defeats tenant injection; set [upstream] allow_privileged = true to override)")]
pub struct Privileged(pub String);

impl Monitor {
    /// Builds the monitor for `config` (TLS settings are validated here).
    pub fn new(
        config: &Config,
        state: Arc<PostureState>,
        events: EventSink,
        shutdown: CancellationToken,
    ) -> Result<Monitor, VerifyError> {
        let u = &config.upstream;
        Ok(Monitor {
            target: Target::from_upstream(u)?,
            opts: Options {
                setting: config.tenant.setting.clone(),
                column: config.tenant.column.clone(),
                tenants: Vec::new(),
                scope: Scope::Catalog,
            },
            state,
            events,
            allow_privileged: u.allow_privileged,
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
        super::run_target(&self.target, &self.opts).await
    }

    /// The start-up check: refuses a privileged role, records the baseline.
    pub async fn startup(&self) -> Result<Startup, Privileged> {
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
    pub fn refused_at_start(&self, p: &Privileged) {
        self.event(Action::Block, p.0.clone());
    }

    /// Judges the first completed report: refuse, or allow (with an event) and keep it.
    fn first_verdict(&self, mut report: Report) -> Result<(), Privileged> {
        let role_failures = privileged_findings(&report);
        if !role_failures.is_empty() {
            let detail = role_failures.join("; ");
            if !self.allow_privileged {
                return Err(Privileged(detail));
            }
            self.event(
                Action::Allow,
                format!("{detail}; allowed by [upstream] allow_privileged = true: row-level security does not protect tenants"),
            );
            downgrade_role(&mut report);
        }
        if report.failed() {
            let f = report.failures();
            tracing::warn!(
                failures = f.len(),
                "RLS posture fails at start: {}",
                f.join("; ")
            );
            self.event(
                Action::Log,
                format!("posture fails at start: {}", f.join("; ")),
            );
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
        crate::metrics::posture_check(Some(&report));
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
                    tracing::info!("upstream role verified; accepting clients");
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
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
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
        if self.allow_privileged {
            downgrade_role(&mut report);
        }
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
        if !worse.is_empty() {
            crate::metrics::posture_drift();
            let detail = format!("posture worsened: {}", worse.join("; "));
            tracing::warn!("RLS {detail}");
            self.event(if refuse { Action::Block } else { Action::Log }, detail);
        }
        let why = format!(
            "RLS posture drift with on_drift = \"refuse\": {}",
            worse.join("; ")
        );
        self.accept(report, worse);
        if refuse {
            tracing::error!("{why}; stopping");
            self.state.refuse(why, &self.shutdown);
        }
    }
}

/// Check 1's failing messages: the role (or a role it reaches) bypasses RLS.
pub fn privileged_findings(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.key == "role")
        .flat_map(|c| c.findings.iter())
        .filter(|f| f.status == Status::Fail)
        .map(|f| f.message.clone())
        .collect()
}

/// With `allow_privileged`, check 1's failures become warnings (the operator chose them).
pub fn downgrade_role(report: &mut Report) {
    for c in report.checks.iter_mut().filter(|c| c.key == "role") {
        for f in c.findings.iter_mut().filter(|f| f.status == Status::Fail) {
            f.status = Status::Warn;
            f.message
                .push_str(" (allowed by [upstream] allow_privileged)");
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
        let c = checks::catalog_checks(&facts, "app.tenant_id", "tenant_id");
        Report::new(Scope::Catalog, "app.tenant_id", "tenant_id", facts, c)
    }

    #[test]
    fn privileged_role_is_named_and_can_be_downgraded() {
        let mut r = report(true);
        let f = privileged_findings(&r);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("postgres") && f[0].contains("rolsuper"));
        assert!(r.failed());
        downgrade_role(&mut r);
        assert!(!r.failed());
        assert!(privileged_findings(&r).is_empty());
        assert!(privileged_findings(&report(false)).is_empty());
    }

    #[test]
    fn refusal_message_names_the_override() {
        let p = Privileged("role postgres has rolsuper".into());
        assert!(p.to_string().contains("allow_privileged"));
    }
}
