//! The catalog checks (1 role, 2 RLS enabled and forced, 3 policies, 7 risks; 8 object
//! creation and 9 keys live in `creation.rs` and `keys.rs`), judged from [`Facts`] alone: pure,
//! so every verdict can be unit-tested with hand-built facts.

use super::catalog::{Facts, PolicyFacts, TableFacts};
use super::policy::{classify, ExprFacts};
use super::report::{Check, Finding, Status};

/// Check 1: the role is not superuser, not BYPASSRLS, and reaches no role that is.
pub fn role(facts: &Facts) -> Check {
    let r = &facts.role;
    let mut findings = Vec::new();
    if r.superuser {
        findings.push(Finding::new(
            Status::Fail,
            &r.user,
            format!(
                "role {} has rolsuper (superuser): row-level security never applies to it",
                r.user
            ),
        ));
    }
    if r.bypassrls {
        findings.push(Finding::new(
            Status::Fail,
            &r.user,
            format!(
                "role {} has rolbypassrls (BYPASSRLS): row-level security never applies to it",
                r.user
            ),
        ));
    }
    for m in &r.privileged_memberships {
        let flag = match (m.superuser, m.bypassrls) {
            (true, true) => "rolsuper and rolbypassrls",
            (true, false) => "rolsuper",
            _ => "rolbypassrls",
        };
        findings.push(Finding::new(
            Status::Fail,
            &r.user,
            format!("role {} is a member of {}, which has {flag}: SET ROLE {} bypasses row-level security", r.user, m.name, m.name),
        ));
    }
    let summary = if findings.is_empty() {
        findings.push(Finding::new(
            Status::Pass,
            &r.user,
            "NOSUPERUSER NOBYPASSRLS, member of no such role",
        ));
        format!(
            "{} is not superuser, not BYPASSRLS, and a member of no such role",
            r.user
        )
    } else {
        format!("{} can bypass row-level security", r.user)
    };
    Check::new(1, "role", "upstream role", summary, findings)
}

/// Check 2: every tenant table has RLS enabled and forced.
pub fn rls_forced(facts: &Facts, column: &str) -> Check {
    let mut findings = Vec::new();
    for t in facts.tenant_tables() {
        let f = if !t.rls_enabled {
            Finding::new(
                Status::Fail,
                &t.name,
                "row-level security is not enabled: every tenant sees every row",
            )
        } else if !t.rls_forced {
            let who = if t.role_is_owner {
                format!(
                    "its owner {} (the checking role has the owner's rights, so it is exempt now)",
                    t.owner
                )
            } else {
                format!("its owner {}", t.owner)
            };
            Finding::new(
                Status::Fail,
                &t.name,
                format!("row-level security is enabled but not forced: {who} bypasses it (ALTER TABLE … FORCE ROW LEVEL SECURITY)"),
            )
        } else {
            Finding::new(Status::Pass, &t.name, "enabled and forced")
        };
        findings.push(f);
    }
    let total = findings.len();
    let bad = findings.iter().filter(|f| f.status == Status::Fail).count();
    if total == 0 {
        let f = Finding::new(
            Status::Warn,
            column,
            format!("no table in a user schema has a `{column}` column; is --tenant-column right?"),
        );
        return Check::new(
            2,
            "rls_forced",
            "RLS enabled and forced",
            format!("no tenant tables (column {column})"),
            vec![f],
        );
    }
    let summary = if bad == 0 {
        format!("{total} tenant tables, all enabled and forced")
    } else {
        format!(
            "{bad} of {total} tenant tables are not protected: {}",
            failing_objects(&findings)
        )
    };
    Check::new(2, "rls_forced", "RLS enabled and forced", summary, findings)
}

/// The distinct tables of failing findings (`table/policy` counts as its table), in order.
fn failing_objects(findings: &[Finding]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for f in findings.iter().filter(|f| f.status == Status::Fail) {
        let table = f.object.split('/').next().unwrap_or(&f.object);
        if !names.contains(&table) {
            names.push(table);
        }
    }
    names.join(", ")
}

/// `1 risk`, `2 risks`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Whether a command writes rows (and so needs a WITH CHECK).
fn writes(cmd: &str) -> bool {
    matches!(cmd, "ALL" | "INSERT" | "UPDATE")
}

/// What a policy must read to tie rows to the tenant: the tenant setting, or with signing on
/// (`crate::signing`) the signed context `tenantgate.current_tenant()`, next to which a raw read
/// of the setting is a failure (SQL running as the upstream role can set it).
#[derive(Debug, Clone, Copy)]
pub struct Tie<'a> {
    /// `[tenant] setting`: reading it raw is sound without signing and a failure with it.
    pub setting: &'a str,
    /// The tenant column (for the suggested `ALTER POLICY`).
    pub column: &'a str,
    /// Policies must then read `tenantgate.current_tenant()`.
    pub signed: bool,
}

impl<'a> From<&'a str> for Tie<'a> {
    fn from(setting: &'a str) -> Self {
        Tie {
            setting,
            column: "tenant_id",
            signed: false,
        }
    }
}

impl Tie<'_> {
    /// The expression ties rows to the tenant and fails closed.
    fn sound(&self, e: &ExprFacts) -> bool {
        if self.signed {
            e.calls_current_tenant
        } else {
            e.reads_missing_ok
        }
    }

    /// The expression refers to the tenant at all.
    fn ties(&self, e: &ExprFacts) -> bool {
        if self.signed {
            e.calls_current_tenant
        } else {
            e.references_setting()
        }
    }

    /// What sound policies read, in words.
    fn source(&self) -> String {
        if self.signed {
            crate::signing::FUNCTION.to_owned()
        } else {
            format!("current_setting('{}', true)", self.setting)
        }
    }
}

/// Whether an applicable restrictive policy covering `cmd` ties rows to the tenant: then a
/// permissive policy that does not (even `USING (true)`) is AND-ed with it and cannot widen.
fn restricted(t: &TableFacts, cmd: &str, tie: Tie<'_>) -> Option<String> {
    t.policies
        .iter()
        .filter(|p| p.applies && !p.permissive && (p.command == "ALL" || p.command == cmd))
        .find(|p| {
            [&p.using, &p.with_check].iter().any(|e| {
                e.as_deref()
                    .is_some_and(|e| tie.sound(&classify(e, tie.setting)))
            })
        })
        .map(|p| p.name.clone())
}

/// The verdicts on one policy of a tenant table.
pub fn judge_policy<'a>(t: &TableFacts, p: &PolicyFacts, tie: impl Into<Tie<'a>>) -> Vec<Finding> {
    let tie = tie.into();
    let setting = tie.setting;
    let source = tie.source();
    let object = format!("{}/{}", t.name, p.name);
    let mut out = Vec::new();
    if !p.applies {
        return out;
    }
    let using = p.using.as_deref().map(|e| classify(e, setting));
    let check = p.with_check.as_deref().map(|e| classify(e, setting));
    let exprs: Vec<&ExprFacts> = using.iter().chain(check.iter()).collect();
    // A permissive policy that does not tie rows to the tenant is a leak, unless a restrictive
    // policy on the same command does: then it is only a warning.
    let leak = |msg: String| match (p.permissive, restricted(t, &p.command, tie)) {
        (false, _) => None,
        (true, None) => Some(Finding::new(Status::Fail, &object, msg)),
        (true, Some(r)) => Some(Finding::new(
            Status::Warn,
            &object,
            format!("{msg}, but restrictive policy {r} still ties rows to the tenant"),
        )),
    };
    if using.as_ref().is_some_and(|u| u.always_true) {
        out.extend(leak(
            "permissive USING (true): every tenant sees every row".into(),
        ));
    } else if using.as_ref().is_some_and(|u| !tie.ties(u)) {
        if let Some(mut f) = leak(format!(
            "permissive USING does not read {source}: it is OR-ed with the tenant policy and widens what every tenant sees"
        )) {
            f.status = Status::Warn;
            out.push(f);
        }
    }
    if tie.signed {
        if exprs.iter().any(|e| e.references_setting()) {
            out.push(Finding::new(
                Status::Fail,
                &object,
                format!(
                    "reads current_setting('{setting}') directly: with signing on, SQL running as the upstream role can set that setting, and only the signed context cannot be forged; fix: {}",
                    crate::signing::sql::policy_rewrite(&t.name, &p.name, tie.column)
                ),
            ));
        }
    } else if exprs.iter().any(|e| e.reads_strict) {
        out.push(Finding::new(
            Status::Fail,
            &object,
            format!(
                "reads current_setting('{setting}') without missing_ok = true; write current_setting('{setting}', true) so an unset tenant is NULL and matches nothing"
            ),
        ));
    }
    if !tie.signed && exprs.iter().any(|e| e.uuid_cast_without_nullif) {
        out.push(Finding::new(
            Status::Warn,
            &object,
            format!(
                "casts the setting to uuid without nullif(…, ''): once a connection has run SET LOCAL {setting}, later transactions read '' and this policy raises `invalid input syntax for type uuid` instead of returning no rows; use nullif(current_setting('{setting}', true), '')::uuid"
            ),
        ));
    }
    if writes(&p.command) {
        // PostgreSQL: an INSERT policy without WITH CHECK admits no row; ALL and UPDATE
        // without one reuse USING for new rows.
        let effective = check.as_ref().or(if p.command == "INSERT" {
            None
        } else {
            using.as_ref()
        });
        match effective {
            None => out.push(Finding::new(
                Status::Warn,
                &object,
                "INSERT policy without WITH CHECK: PostgreSQL admits no row through it; state WITH CHECK on the tenant",
            )),
            Some(c) if c.always_true => {
                out.extend(leak("permissive WITH CHECK (true): a tenant can write rows for any tenant".into()))
            }
            Some(c) if !tie.ties(c) => out.extend(leak(format!(
                "permissive {} policy whose WITH CHECK does not read {source}: a tenant can write rows for another tenant",
                p.command
            ))),
            Some(_) if check.is_none() => out.push(Finding::new(
                Status::Warn,
                &object,
                format!(
                    "{} policy without an explicit WITH CHECK: PostgreSQL reuses USING for new rows; state WITH CHECK so the intent survives edits",
                    p.command
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

/// Check 3: every tenant table has a fail-closed policy and no policy defeats it.
pub fn policies<'a>(facts: &Facts, tie: impl Into<Tie<'a>>) -> Check {
    let tie = tie.into();
    let setting = tie.setting;
    let source = tie.source();
    let mut findings = Vec::new();
    let mut tables = 0;
    for t in facts.tenant_tables() {
        tables += 1;
        let applicable: Vec<&PolicyFacts> = t.policies.iter().filter(|p| p.applies).collect();
        let sound = applicable.iter().any(|p| {
            [&p.using, &p.with_check].iter().any(|e| {
                e.as_deref()
                    .is_some_and(|e| tie.sound(&classify(e, setting)))
            })
        });
        if !sound {
            let why = if t.policies.is_empty() {
                "the table has no policy at all".to_owned()
            } else if applicable.is_empty() {
                format!("none of its policies applies to role {}", facts.role.user)
            } else {
                "its policies do not tie rows to the tenant setting".to_owned()
            };
            findings.push(Finding::new(
                Status::Fail,
                &t.name,
                format!("no policy reads {source}: {why}"),
            ));
        }
        let before = findings.len();
        for p in &t.policies {
            findings.extend(judge_policy(t, p, tie));
        }
        if sound && findings.len() == before {
            findings.push(Finding::new(
                Status::Pass,
                &t.name,
                format!("fail-closed policy on {source}"),
            ));
        }
    }
    if tables == 0 {
        return Check::skipped(3, "policies", "fail-closed policies", "no tenant tables");
    }
    let bad = findings.iter().filter(|f| f.status == Status::Fail).count();
    let warn = findings.iter().filter(|f| f.status == Status::Warn).count();
    let summary = match (bad, warn) {
        (0, 0) => format!("every tenant table has a policy on {source}"),
        (0, w) => format!("policies hold, with {}", plural(w, "warning")),
        _ => format!(
            "{} on {}",
            plural(bad, "policy problem"),
            failing_objects(&findings)
        ),
    };
    Check::new(3, "policies", "fail-closed policies", summary, findings)
}

/// Check 7: SECURITY DEFINER functions that set the tenant, and unindexed tenant columns.
pub fn risks(facts: &Facts, column: &str, setting: &str) -> Check {
    let mut findings = Vec::new();
    for f in &facts.functions {
        let msg = if f.sets_setting {
            format!("runs with {setting} pinned by ALTER FUNCTION … SET; any caller acts as that tenant")
        } else {
            format!(
                "SECURITY DEFINER (runs as {}) and calls set_config: a caller may be able to switch tenant through it",
                f.owner
            )
        };
        findings.push(Finding::new(Status::Warn, &f.signature, msg));
    }
    for t in facts.tenant_tables() {
        if !t.column_indexed {
            findings.push(Finding::new(
                Status::Warn,
                &t.name,
                format!("no index starts with {column}: every RLS-filtered query scans the whole table (performance)"),
            ));
        }
    }
    let summary = if findings.is_empty() {
        "no risky functions; every tenant column is indexed".to_owned()
    } else {
        plural(findings.len(), "risk")
    };
    Check::new(7, "risks", "risks", summary, findings)
}

/// Checks 1, 2, 3, 7, 8 and 9: everything judged from the catalogs. `strict_keys` makes
/// check 9's findings failures instead of warnings; `signed` judges policies and object
/// creation for signed tenant context.
pub fn catalog_checks(
    facts: &Facts,
    setting: &str,
    column: &str,
    strict_keys: bool,
    signed: bool,
) -> Vec<Check> {
    vec![
        role(facts),
        rls_forced(facts, column),
        policies(
            facts,
            Tie {
                setting,
                column,
                signed,
            },
        ),
        risks(facts, column, setting),
        super::creation::check_for(&facts.creation, signed),
        super::keys::check(facts, column, strict_keys),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::catalog::{FunctionFacts, PrivilegedRole, RoleFacts};
    use super::*;

    const S: &str = "app.tenant_id";
    const SOUND: &str =
        "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)";

    fn policy(name: &str, cmd: &str, using: Option<&str>, check: Option<&str>) -> PolicyFacts {
        PolicyFacts {
            name: name.into(),
            command: cmd.into(),
            permissive: true,
            roles: vec!["public".into()],
            applies: true,
            using: using.map(Into::into),
            with_check: check.map(Into::into),
        }
    }

    fn table(name: &str, enabled: bool, forced: bool, policies: Vec<PolicyFacts>) -> TableFacts {
        TableFacts {
            name: format!("public.{name}"),
            schema: "public".into(),
            table: name.into(),
            owner: "postgres".into(),
            tenant_column: true,
            column_type: Some("uuid".into()),
            column_not_null: true,
            column_indexed: true,
            rls_enabled: enabled,
            rls_forced: forced,
            policies,
            ..TableFacts::default()
        }
    }

    fn facts(tables: Vec<TableFacts>) -> Facts {
        Facts {
            role: RoleFacts {
                user: "app_user".into(),
                ..RoleFacts::default()
            },
            tables,
            ..Facts::default()
        }
    }

    #[test]
    fn sound_schema_passes_every_catalog_check() {
        let f = facts(vec![table(
            "customers",
            true,
            true,
            vec![policy("iso", "ALL", Some(SOUND), Some(SOUND))],
        )]);
        for c in catalog_checks(&f, S, "tenant_id", false, false) {
            assert_eq!(c.status, Status::Pass, "{c:?}");
        }
    }

    #[test]
    fn privileged_role_and_memberships_fail_naming_the_flag() {
        let mut f = facts(vec![]);
        f.role.superuser = true;
        f.role.privileged_memberships.push(PrivilegedRole {
            name: "tenant_admin".into(),
            superuser: false,
            bypassrls: true,
        });
        let c = role(&f);
        assert_eq!(c.status, Status::Fail);
        assert!(c.findings[0].message.contains("rolsuper"));
        assert!(
            c.findings[1].message.contains("tenant_admin")
                && c.findings[1].message.contains("rolbypassrls")
        );
    }

    #[test]
    fn unforced_and_disabled_tables_fail_by_name() {
        let f = facts(vec![
            table(
                "vehicles",
                true,
                false,
                vec![policy("iso", "ALL", Some(SOUND), Some(SOUND))],
            ),
            table("invoices", false, false, vec![]),
            table(
                "customers",
                true,
                true,
                vec![policy("iso", "ALL", Some(SOUND), Some(SOUND))],
            ),
        ]);
        let c = rls_forced(&f, "tenant_id");
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.summary.contains("public.vehicles") && c.summary.contains("public.invoices"),
            "{}",
            c.summary
        );
        let p = policies(&f, S);
        assert_eq!(p.status, Status::Fail);
        assert!(p.summary.contains("public.invoices"));
        assert!(!p.summary.contains("public.vehicles"));
    }

    #[test]
    fn using_true_and_strict_reads_fail() {
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![
                policy("iso", "SELECT", Some(SOUND), None),
                policy("open", "SELECT", Some("true"), None),
                policy(
                    "strict",
                    "SELECT",
                    Some("(tenant_id = (current_setting('app.tenant_id'::text))::uuid)"),
                    None,
                ),
            ],
        )]);
        let c = policies(&f, S);
        assert_eq!(c.status, Status::Fail);
        let msgs: Vec<_> = c
            .findings
            .iter()
            .map(|f| (f.object.as_str(), f.status))
            .collect();
        assert!(msgs.contains(&("public.t/open", Status::Fail)));
        assert!(msgs.contains(&("public.t/strict", Status::Fail)));
    }

    #[test]
    fn restrictive_true_or_other_roles_policies_are_not_judged_as_leaks() {
        let mut other = policy("support", "SELECT", Some("true"), None);
        other.applies = false;
        let mut restrictive = policy("r", "SELECT", Some("true"), None);
        restrictive.permissive = false;
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![
                policy("iso", "ALL", Some(SOUND), Some(SOUND)),
                other,
                restrictive,
            ],
        )]);
        assert_eq!(policies(&f, S).status, Status::Pass);
    }

    #[test]
    fn uuid_cast_without_nullif_warns_not_fails() {
        let bare = "(tenant_id = (current_setting('app.tenant_id'::text, true))::uuid)";
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![policy("iso", "ALL", Some(bare), Some(bare))],
        )]);
        let c = policies(&f, S);
        assert_eq!(c.status, Status::Warn);
        assert!(c
            .findings
            .iter()
            .any(|f| f.message.contains("invalid input syntax for type uuid")));
    }

    #[test]
    fn write_policies_need_a_with_check() {
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![policy("iso", "ALL", Some(SOUND), None)],
        )]);
        assert_eq!(policies(&f, S).status, Status::Warn);
        // INSERT without WITH CHECK admits nothing: a warning, not a leak.
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![
                policy("iso", "SELECT", Some(SOUND), None),
                policy("ins", "INSERT", None, None),
            ],
        )]);
        let c = policies(&f, S);
        assert_eq!(c.status, Status::Warn);
        assert!(c.findings.iter().any(|f| f.object == "public.t/ins"));
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![
                policy("iso", "SELECT", Some(SOUND), None),
                policy("ins", "INSERT", None, Some("true")),
            ],
        )]);
        assert_eq!(policies(&f, S).status, Status::Fail);
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![
                policy("iso", "SELECT", Some(SOUND), None),
                policy("ins", "INSERT", None, Some("(tenant_id IS NOT NULL)")),
            ],
        )]);
        assert_eq!(policies(&f, S).status, Status::Fail);
    }

    #[test]
    fn a_restrictive_tenant_policy_makes_permissive_true_a_warning() {
        let mut r = policy("tenant", "ALL", Some(SOUND), Some(SOUND));
        r.permissive = false;
        let f = facts(vec![table(
            "t",
            true,
            true,
            vec![policy("open", "ALL", Some("true"), Some("true")), r],
        )]);
        let c = policies(&f, S);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.findings.iter().all(|f| f.status != Status::Fail));
    }

    #[test]
    fn risks_are_warnings() {
        let mut t = table(
            "t",
            true,
            true,
            vec![policy("iso", "ALL", Some(SOUND), Some(SOUND))],
        );
        t.column_indexed = false;
        let mut f = facts(vec![t]);
        f.functions.push(FunctionFacts {
            signature: "public.switch(uuid)".into(),
            owner: "postgres".into(),
            security_definer: true,
            calls_set_config: true,
            sets_setting: false,
        });
        let c = risks(&f, "tenant_id", S);
        assert_eq!(c.status, Status::Warn);
        assert_eq!(c.findings.len(), 2);
    }

    #[test]
    fn with_signing_raw_setting_policies_fail_and_signed_ones_pass() {
        const SIGNED: &str =
            "(tenant_id = (( SELECT tenantgate.current_tenant() AS current_tenant))::uuid)";
        let signed = Tie {
            setting: S,
            column: "tenant_id",
            signed: true,
        };
        let raw = facts(vec![table(
            "t",
            true,
            true,
            vec![policy("iso", "ALL", Some(SOUND), Some(SOUND))],
        )]);
        let c = policies(&raw, signed);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.findings
                .iter()
                .any(|f| f.message.contains("directly") && f.message.contains("ALTER POLICY")),
            "{c:?}"
        );
        let good = facts(vec![table(
            "t",
            true,
            true,
            vec![policy("iso", "ALL", Some(SIGNED), Some(SIGNED))],
        )]);
        assert_eq!(policies(&good, signed).status, Status::Pass);
        // Without signing, a signed-only policy does not read the setting: no tie.
        assert_eq!(policies(&good, S).status, Status::Fail);
        // A permissive policy next to the signed one that reads the raw setting still fails.
        let mixed = facts(vec![table(
            "t",
            true,
            true,
            vec![
                policy("iso", "ALL", Some(SIGNED), Some(SIGNED)),
                policy("old", "SELECT", Some(SOUND), None),
            ],
        )]);
        assert_eq!(policies(&mixed, signed).status, Status::Fail);
    }

    #[test]
    fn no_tenant_tables_warns_about_the_column_name() {
        let c = rls_forced(&facts(vec![]), "tenant_id");
        assert_eq!(c.status, Status::Warn);
    }
}
