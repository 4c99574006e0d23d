//! The result of a posture run: checks with pass / warn / skip / fail findings, the catalog
//! facts they were judged on, and the two renderings (`--json` and the human table).

use std::fmt::Write as _;

use serde::Serialize;

use super::catalog::{Facts, RoleFacts, TableFacts};

/// How one finding, check or run came out; ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong.
    Pass,
    /// Could not be judged (the role cannot see what is needed, or not run); says why.
    Skip,
    /// Worth fixing, but tenant isolation holds.
    Warn,
    /// Tenant isolation is not enforced by the database.
    Fail,
}

impl Status {
    /// Upper-case label for the human output.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    /// The status of a group: any fail, else any warn, else skip only if nothing passed.
    pub fn combine(items: impl IntoIterator<Item = Status>) -> Status {
        let mut seen_pass = false;
        let mut seen_skip = false;
        let mut worst = Status::Pass;
        for s in items {
            match s {
                Status::Pass => seen_pass = true,
                Status::Skip => seen_skip = true,
                Status::Warn | Status::Fail => worst = worst.max(s),
            }
        }
        if worst > Status::Skip {
            worst
        } else if seen_skip && !seen_pass {
            Status::Skip
        } else {
            Status::Pass
        }
    }
}

/// One judged object: a role, a table, a policy, a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Combined into the check's status by [`Status::combine`].
    pub status: Status,
    /// What it is about, e.g. `public.vehicles` or `public.vehicles/tenant_isolation`.
    pub object: String,
    /// What is wrong (or right), in words an operator can act on.
    pub message: String,
}

impl Finding {
    /// A finding with this verdict.
    pub fn new(status: Status, object: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            status,
            object: object.into(),
            message: message.into(),
        }
    }
}

/// One numbered check, as `docs/posture.md` lists them.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// 1 to 10, as in the docs.
    pub id: u8,
    /// Stable machine name, e.g. `rls_forced`.
    pub key: &'static str,
    /// Short human title.
    pub title: &'static str,
    /// The combined verdict of the findings.
    pub status: Status,
    /// One line saying what was found.
    pub summary: String,
    /// Every judged object, passing ones too (the health document leaves those out).
    pub findings: Vec<Finding>,
}

impl Check {
    /// A check whose status is combined from its findings.
    pub fn new(
        id: u8,
        key: &'static str,
        title: &'static str,
        summary: String,
        findings: Vec<Finding>,
    ) -> Check {
        let status = Status::combine(findings.iter().map(|f| f.status));
        Check {
            id,
            key,
            title,
            status,
            summary,
            findings,
        }
    }

    /// A check that was not run, and why.
    pub fn skipped(
        id: u8,
        key: &'static str,
        title: &'static str,
        why: impl Into<String>,
    ) -> Check {
        Check {
            id,
            key,
            title,
            status: Status::Skip,
            summary: why.into(),
            findings: Vec::new(),
        }
    }
}

/// Which checks a run includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Catalog checks only (1, 2, 3, 7, 8, 9, and 10 with signing): cheap, no data read; what
    /// start-up and the drift monitor run.
    Catalog,
    /// Everything, including the probes that read tables (4, 5, 6): `tenantgate verify`.
    Full,
}

/// A whole posture run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Worst check status.
    pub status: Status,
    /// [`Scope::Catalog`] for start-up and drift runs, [`Scope::Full`] for `verify`.
    pub scope: Scope,
    /// The custom setting policies must read.
    pub setting: String,
    /// The tenant column that marks a tenant table.
    pub tenant_column: String,
    /// The connecting role and database.
    pub database: RoleFacts,
    /// Tables with the tenant column or with RLS enabled, and their policies.
    pub tables: Vec<TableFacts>,
    /// The checks, in id order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Assembles a report; the overall status is the worst check's.
    pub fn new(
        scope: Scope,
        setting: &str,
        column: &str,
        facts: Facts,
        mut checks: Vec<Check>,
    ) -> Report {
        checks.sort_by_key(|c| c.id);
        let status = Status::combine(checks.iter().map(|c| c.status));
        Report {
            status,
            scope,
            setting: setting.to_owned(),
            tenant_column: column.to_owned(),
            database: facts.role,
            tables: facts.tables,
            checks,
        }
    }

    /// Recomputes the overall status after findings were changed.
    pub fn restatus(&mut self) {
        for c in &mut self.checks {
            if !c.findings.is_empty() {
                c.status = Status::combine(c.findings.iter().map(|f| f.status));
            }
        }
        self.status = Status::combine(self.checks.iter().map(|c| c.status));
    }

    /// Whether any check failed (exit 1, health 503).
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }

    /// Every failing finding as `check_key: object: message`, the unit drift is measured in.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.checks {
            for f in &c.findings {
                if f.status == Status::Fail {
                    out.push(format!("{}: {}: {}", c.key, f.object, f.message));
                }
            }
        }
        out
    }

    /// `(fail, warn)` counts over the checks.
    pub fn counts(&self) -> (usize, usize) {
        let fail = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let warn = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count();
        (fail, warn)
    }

    /// The human rendering: a header, the policy table (like `show_policies.sql`), the checks.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let d = &self.database;
        let _ = writeln!(
            out,
            "tenantgate verify: role {} on database {} (PostgreSQL {})",
            d.user, d.database, d.server_version
        );
        let _ = writeln!(
            out,
            "tenant setting {}, tenant column {}; superuser {}, bypassrls {}\n",
            self.setting,
            self.tenant_column,
            yes_no(d.superuser),
            yes_no(d.bypassrls)
        );
        out.push_str(&self.policy_table());
        out.push('\n');
        for c in &self.checks {
            let _ = writeln!(
                out,
                "[{}] {}. {}: {}",
                c.status.label(),
                c.id,
                c.title,
                c.summary
            );
            for f in c.findings.iter().filter(|f| f.status != Status::Pass) {
                let _ = writeln!(
                    out,
                    "       {} {}: {}",
                    f.status.label(),
                    f.object,
                    f.message
                );
            }
        }
        let (fail, warn) = self.counts();
        let _ = writeln!(
            out,
            "\nresult: {} ({fail} failed, {warn} with warnings, {} checks)",
            self.status.label(),
            self.checks.len()
        );
        out
    }

    /// One row per policy (and one per tenant table without any), aligned.
    fn policy_table(&self) -> String {
        let header = [
            "table",
            "tenant col",
            "rls",
            "forced",
            "policy",
            "cmd",
            "type",
            "roles",
            "using",
            "with check",
        ];
        let mut rows: Vec<[String; 10]> = Vec::new();
        for t in &self.tables {
            let base = |p: [String; 6]| {
                let [a, b, c, d, e, f] = p;
                [
                    t.name.clone(),
                    yes_no(t.tenant_column).to_owned(),
                    on_off(t.rls_enabled).to_owned(),
                    on_off(t.rls_forced).to_owned(),
                    a,
                    b,
                    c,
                    d,
                    e,
                    f,
                ]
            };
            if t.policies.is_empty() {
                rows.push(base([
                    "(none)".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]));
            }
            for p in &t.policies {
                rows.push(base([
                    p.name.clone(),
                    p.command.clone(),
                    if p.permissive {
                        "permissive"
                    } else {
                        "restrictive"
                    }
                    .to_owned(),
                    p.roles.join(","),
                    p.using.clone().unwrap_or_default(),
                    p.with_check.clone().unwrap_or_default(),
                ]));
            }
        }
        if rows.is_empty() {
            return format!(
                "no table has a `{}` column or row-level security\n",
                self.tenant_column
            );
        }
        let mut width = header.map(|h| h.chars().count());
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(width.iter()).enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(cell);
                } else {
                    let _ = write!(s, "{cell:<w$}  ");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&mut out, &header.map(str::to_owned));
        line(&mut out, &width.map(|w| "-".repeat(w)));
        for r in &rows {
            line(&mut out, r);
        }
        out
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_orders_by_severity() {
        assert_eq!(Status::combine([]), Status::Pass);
        assert_eq!(Status::combine([Status::Pass, Status::Skip]), Status::Pass);
        assert_eq!(Status::combine([Status::Skip, Status::Skip]), Status::Skip);
        assert_eq!(
            Status::combine([Status::Pass, Status::Warn, Status::Skip]),
            Status::Warn
        );
        assert_eq!(Status::combine([Status::Warn, Status::Fail]), Status::Fail);
    }
}
