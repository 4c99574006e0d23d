//! The tenant guard: the policy applied to every statement a session sends.
//!
//! Pure and small (STYLE habit 8): given who the session is and the SQL text, it returns
//! what to do and which security events to record. The session loop applies the decision.

use crate::config::{ProbeAction, UserKind};
use crate::error;
use crate::events::{Action, EventKind};
use crate::protocol::messages::PgError;
use crate::protocol::params::unsafe_client_encoding;
use crate::tenant::inspect::{inspect, Finding, Flags, InspectOptions, Inspection, Rule};
use crate::tenant_id::{literal_tenant, TenantFormat};

/// The policy knobs, from `[tenant]` and `[security]`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `[tenant] setting`: the GUC the RLS policies read; setting or resetting it is tampering.
    pub setting: String,
    /// The tenant column, for cross-tenant literal detection.
    pub column: String,
    /// `[tenant] format`: how a literal compared with the tenant column is read as a tenant id.
    pub format: TenantFormat,
    /// Block or only log probes.
    pub probe_action: ProbeAction,
    /// Whether `DO` blocks are allowed for app/operator users.
    pub allow_do_blocks: bool,
    /// Configured users (`[[users]] name`) with `allow_catalog_monitoring = true`: trusted
    /// monitoring logins that may read the catalog views and functions exposing other sessions
    /// and statistics. Every other app or operator session is refused them.
    pub catalog_monitors: Vec<String>,
    /// Every configured user name, to resolve a login (`name` or `name.tenant`) to its user the
    /// way the handshake does.
    pub user_names: Vec<String>,
}

/// An event the session records for this statement, adding the subject, the statement text and
/// (when refused) the SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    /// Its name in the log ([`EventKind::as_str`]).
    pub kind: EventKind,
    /// `log` rather than `block` when `probe_action = "log"` lets a probe through.
    pub action: Action,
    /// What matched, with the inspector rule's label in brackets.
    pub detail: Option<String>,
}

/// What to do with the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it upstream.
    Forward,
    /// Refuse it with this error; it never reaches PostgreSQL.
    Refuse(PgError),
    /// A trusted backend's `SET <setting> = 'X'`: switch the session tenant to X.
    Switch(String),
}

/// The guard's answer for one Query or Parse text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Session state under transaction pooling is refused later, by the session (see
    /// `session_state`).
    pub verdict: Verdict,
    /// Events to record (in order).
    pub events: Vec<EventDraft>,
    /// The statement carries a secret: redact it in events.
    pub secret: bool,
    /// The first construct in the text that creates state outliving the transaction on the
    /// server connection (`LISTEN`, `WITH HOLD`, temp objects, session locks and settings,
    /// SQL-level `PREPARE`/`EXECUTE`); transaction pooling refuses it.
    pub session_state: Option<&'static str>,
    /// Settings changed at session level (`SET`, `RESET`, `set_config(…, false)`), which the
    /// session carries to its next server connections (read back once the transaction ends).
    pub session_settings: Vec<String>,
    /// `RESET ALL` or `DISCARD ALL`: the session's settings return to its startup values.
    pub resets_all: bool,
    /// Cursors declared (name, `WITH HOLD`).
    pub cursors: Vec<(String, bool)>,
}

impl Decision {
    /// Forwarded with nothing else to do: no event, no session state, settings or cursors.
    pub fn is_plain_forward(&self) -> bool {
        self.verdict == Verdict::Forward
            && self.events.is_empty()
            && self.session_state.is_none()
            && self.session_settings.is_empty()
            && !self.resets_all
            && self.cursors.is_empty()
    }
}

/// What creates session state, in the order it is reported, with the words used in the error.
const SESSION_STATE: [(Flags, &str); 6] = [
    (Flags::SQL_PREPARE, "SQL-level PREPARE"),
    (Flags::SQL_EXECUTE, "SQL-level EXECUTE"),
    (Flags::LISTEN, "LISTEN"),
    (Flags::HOLD_CURSOR, "DECLARE ... WITH HOLD"),
    (Flags::TEMP_OBJECT, "temporary objects"),
    (Flags::SESSION_LOCK, "session-level advisory locks"),
];

fn session_state(flags: Flags) -> Option<&'static str> {
    SESSION_STATE
        .iter()
        .find(|(f, _)| flags.contains(*f))
        .map(|(_, what)| *what)
}

impl Decision {
    /// A refusal with no event of its own (the caller records one if it wants).
    pub fn refused(err: PgError) -> Self {
        Decision {
            verdict: Verdict::Refuse(err),
            ..Decision::forward()
        }
    }

    /// Forward, nothing to record.
    pub fn forward() -> Self {
        Decision {
            verdict: Verdict::Forward,
            events: Vec::new(),
            secret: false,
            session_state: None,
            session_settings: Vec::new(),
            resets_all: false,
            cursors: Vec::new(),
        }
    }
}

/// Who is asking: the parts of the session the policy depends on.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// Break-glass statements are only audited and admin ones pass; app and operator SQL is
    /// inspected.
    pub kind: UserKind,
    /// The session tenant (canonical), if any.
    pub tenant: Option<&'a str>,
    /// The user name as sent, for hints.
    pub login: &'a str,
    /// Whether this user may switch tenant with an intercepted SET.
    pub allow_switch: bool,
}

impl Policy {
    /// Decides what to do with `sql` for `who`.
    pub fn check(&self, who: Asker<'_>, sql: &str) -> Decision {
        match who.kind {
            UserKind::Breakglass => {
                let insp = self.inspect(sql);
                return Decision {
                    verdict: Verdict::Forward,
                    events: vec![EventDraft {
                        kind: EventKind::BreakglassStatement,
                        action: Action::Allow,
                        detail: None,
                    }],
                    secret: insp.flags.contains(Flags::CONTAINS_SECRET),
                    session_state: None,
                    session_settings: Vec::new(),
                    resets_all: false,
                    cursors: Vec::new(),
                };
            }
            UserKind::Admin => return Decision::forward(),
            UserKind::App | UserKind::Operator => {}
        }
        let insp = self.inspect(sql);
        let secret = insp.flags.contains(Flags::CONTAINS_SECRET);
        let session_state = session_state(insp.flags);
        let resets_all = insp.flags.contains(Flags::RESETS_SETTINGS);
        let session_settings = insp.session_settings;
        let cursors = insp.cursors;
        let Some(tenant) = who.tenant else {
            return Decision {
                verdict: Verdict::Refuse(error::no_tenant(&self.setting, who.login)),
                events: vec![EventDraft {
                    kind: EventKind::NoTenantRefused,
                    action: Action::Block,
                    detail: None,
                }],
                secret,
                session_state,
                session_settings,
                resets_all,
                cursors,
            };
        };
        let block = self.probe_action == ProbeAction::Block;
        let action = if block { Action::Block } else { Action::Log };
        let mut d = Decision {
            verdict: Verdict::Forward,
            events: Vec::new(),
            secret,
            session_state,
            session_settings,
            resets_all,
            cursors,
        };
        let monitor = self.is_catalog_monitor(who.login);
        for f in &insp.findings {
            if f.rule == Rule::ReservedName {
                // The proxy's own namespace: refused whatever `probe_action` says.
                let name = f.value.clone().unwrap_or_default();
                d.events.push(EventDraft {
                    kind: EventKind::StatementProbe,
                    action: Action::Block,
                    detail: Some(format!("{} \"{name}\" [{}]", f.detail, f.rule.label())),
                });
                d.verdict = Verdict::Refuse(error::no_such_statement(&name));
                return d;
            }
            if catalog_rule(f.rule) {
                if let Some(ev) = self.catalog_finding(f, monitor, &mut d) {
                    d.events.push(ev);
                }
                continue;
            }
            let (kind, what) = match f.rule {
                Rule::TenantTamper => {
                    if who.allow_switch && insp.statements == 1 && is_plain_set(sql, &f.statement) {
                        if let Some(v) = &f.value {
                            d.verdict = Verdict::Switch(v.clone());
                            return d;
                        }
                    }
                    (EventKind::TenantTamper, f.detail.to_owned())
                }
                Rule::RoleTamper => (EventKind::RoleTamper, f.detail.to_owned()),
                Rule::ReservedName => continue,
                Rule::RlsTamper => (EventKind::RlsTamper, f.detail.to_owned()),
                Rule::DoBlock => {
                    if self.allow_do_blocks {
                        continue;
                    }
                    (
                        EventKind::TenantTamper,
                        "a DO block (its body could call set_config)".to_owned(),
                    )
                }
                Rule::UnsafeEncoding
                | Rule::OtherSessions
                | Rule::LargeObject
                | Rule::Statistics => continue,
                Rule::TenantLiteral => {
                    let Some(v) = &f.value else { continue };
                    // Every spelling the server's input function accepts names a tenant.
                    match literal_tenant(self.format, v) {
                        Some(id) if id != tenant => {}
                        _ => continue,
                    }
                    (
                        EventKind::CrossTenantLiteral,
                        format!("a comparison of {} with another tenant's id", self.column),
                    )
                }
            };
            d.events.push(EventDraft {
                kind,
                action,
                detail: Some(format!("{what} [{}]", f.rule.label())),
            });
            if block && d.verdict == Verdict::Forward {
                d.verdict = Verdict::Refuse(error::refused(&what));
            }
        }
        if insp.flags.contains(Flags::RESET_NOT_LAST) && d.verdict == Verdict::Forward {
            d.verdict = Verdict::Refuse(error::reset_all_not_last());
        }
        if who.kind == UserKind::Operator && d.verdict == Verdict::Forward {
            d.events.push(EventDraft {
                kind: EventKind::OperatorStatement,
                action: Action::Allow,
                detail: None,
            });
        }
        d
    }

    /// Inspects with `standard_conforming_strings = on`, and when the text has a backslash also
    /// with `off`, keeping every finding: a pooled connection may carry either value (a previous
    /// client can SET it), so the lexer must not be fooled by the one it did not assume.
    fn inspect(&self, sql: &str) -> Inspection {
        let opts = |scs| InspectOptions {
            setting: &self.setting,
            tenant_column: &self.column,
            standard_conforming_strings: scs,
        };
        let mut insp = inspect(sql, &opts(true));
        if sql.as_bytes().contains(&b'\\') {
            let other = inspect(sql, &opts(false));
            for f in other.findings {
                if !insp
                    .findings
                    .iter()
                    .any(|g| g.rule == f.rule && g.statement == f.statement)
                {
                    insp.findings.push(f);
                }
            }
            insp.statements = insp.statements.max(other.statements);
            insp.flags |= other.flags;
        }
        insp
    }
}

/// A Query or Parse text as the inspector reads it: as is when it is UTF-8, else byte for byte
/// as Latin-1. A lossy UTF-8 reading would turn different bytes into the same replacement
/// character, while in the client's encoding (LATIN1, WIN1252, EUC_JP …) they are different
/// characters: `$\xE9$` and `$\xE8$` are two dollar-quote tags to PostgreSQL and were one to
/// the inspector, which then closed a quote where PostgreSQL does not. Latin-1 keeps every
/// ASCII byte where it is and makes every other byte a distinct non-ASCII character, which is
/// all the lexer looks at.
pub fn sql_text(text: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(text) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(text.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Whether the statement at `range` is a plain `SET ...` (not set_config inside a query).
fn is_plain_set(sql: &str, range: &std::ops::Range<usize>) -> bool {
    sql.get(range.clone())
        .map(|s| {
            s.trim_start()
                .get(..4)
                .is_some_and(|h| h.eq_ignore_ascii_case("set "))
        })
        .unwrap_or(false)
}

/// The catalog-derived rules: always refused (they are not a heuristic about whose data a
/// statement names, so `probe_action = "log"` does not apply), each with PostgreSQL's wording.
fn catalog_rule(r: Rule) -> bool {
    matches!(
        r,
        Rule::UnsafeEncoding | Rule::OtherSessions | Rule::LargeObject | Rule::Statistics
    )
}

impl Policy {
    /// Whether `login` (as sent: `name` or `name.tenant`) is a configured catalog monitor.
    /// Resolved like `client::resolve_user` at login: the exact name first, then the first
    /// `name.` prefix that names a configured user.
    fn is_catalog_monitor(&self, login: &str) -> bool {
        if self.catalog_monitors.is_empty() {
            return false;
        }
        let user = if self.user_names.iter().any(|u| u == login) {
            Some(login)
        } else {
            login
                .match_indices('.')
                .map(|(i, _)| login.get(..i).unwrap_or_default())
                .find(|name| self.user_names.iter().any(|u| u == name))
        };
        user.is_some_and(|u| self.catalog_monitors.iter().any(|m| m == u))
    }

    /// The event (and the refusal, set on `d`) for a catalog-derived finding.
    fn catalog_finding(&self, f: &Finding, monitor: bool, d: &mut Decision) -> Option<EventDraft> {
        let refusal = match (f.rule, &f.value) {
            (Rule::UnsafeEncoding, Some(v)) => {
                let canonical = unsafe_client_encoding(v).unwrap_or("multi-byte");
                error::unsafe_encoding(v, canonical)
            }
            (Rule::UnsafeEncoding, None) => error::refused(f.detail),
            _ if monitor => return None,
            (_, Some(name)) => error::catalog_refused(f.detail, name),
            (_, None) => error::explain_analyze_refused(f.detail),
        };
        let (kind, what) = match (f.rule, &f.value) {
            (Rule::UnsafeEncoding, Some(v)) => {
                (EventKind::TenantTamper, format!("{} ({v})", f.detail))
            }
            (Rule::UnsafeEncoding, None) => (EventKind::TenantTamper, f.detail.to_owned()),
            (_, Some(name)) => (EventKind::CatalogProbe, format!("{} {name}", f.detail)),
            (_, None) => (EventKind::CatalogProbe, f.detail.to_owned()),
        };
        if d.verdict == Verdict::Forward || matches!(d.verdict, Verdict::Switch(_)) {
            d.verdict = Verdict::Refuse(refusal);
        }
        Some(EventDraft {
            kind,
            action: Action::Block,
            detail: Some(format!("{what} [{}]", f.rule.label())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "11111111-1111-1111-1111-111111111111";
    const B: &str = "22222222-2222-2222-2222-222222222222";

    fn policy(action: ProbeAction) -> Policy {
        Policy {
            setting: "app.tenant_id".into(),
            column: "tenant_id".into(),
            format: TenantFormat::Uuid,
            probe_action: action,
            allow_do_blocks: false,
            catalog_monitors: vec!["mon".into()],
            user_names: vec!["app".into(), "mon".into(), "mon.x".into()],
        }
    }

    fn app(tenant: Option<&str>) -> Asker<'_> {
        Asker {
            kind: UserKind::App,
            tenant,
            login: "app",
            allow_switch: false,
        }
    }

    #[test]
    fn non_utf8_bytes_stay_distinct_to_the_inspector() {
        // `$é$ $è$ $é$, set_config(…)` in LATIN1: the quote ends at the second `$é$`.
        let mut sql = b"SELECT $\xE9$ $\xE8$ $\xE9$, ".to_vec();
        sql.extend_from_slice(format!("set_config('app.tenant_id', '{B}', false)").as_bytes());
        let text = sql_text(&sql);
        let d = policy(ProbeAction::Block).check(app(Some(A)), &text);
        assert!(matches!(d.verdict, Verdict::Refuse(ref e) if e.code == "42501"));
        assert_eq!(sql_text(b"select 'caf\xC3\xA9'"), "select 'caf\u{e9}'");
        assert_eq!(sql_text(b"select '\xE9'"), "select '\u{e9}'");
    }

    #[test]
    fn no_tenant_is_refused() {
        let d = policy(ProbeAction::Block).check(app(None), "select 1");
        assert!(matches!(d.verdict, Verdict::Refuse(ref e) if e.code == "42501"));
        assert_eq!(d.events[0].kind, EventKind::NoTenantRefused);
    }

    #[test]
    fn ordinary_sql_passes_without_events() {
        let d = policy(ProbeAction::Block).check(app(Some(A)), "select * from customers");
        assert_eq!(d, Decision::forward());
    }

    #[test]
    fn tampering_is_blocked_or_logged() {
        for (sql, kind) in [
            ("set app.tenant_id = 'x'", EventKind::TenantTamper),
            (
                "select set_config('app.tenant_id', 'x', false)",
                EventKind::TenantTamper,
            ),
            ("set role postgres", EventKind::RoleTamper),
            ("set row_security = off", EventKind::RlsTamper),
            ("do $$ begin perform 1; end $$", EventKind::TenantTamper),
        ] {
            let d = policy(ProbeAction::Block).check(app(Some(A)), sql);
            assert!(matches!(d.verdict, Verdict::Refuse(_)), "{sql}");
            assert_eq!(d.events[0].kind, kind, "{sql}");
            assert_eq!(d.events[0].action, Action::Block);
            let d = policy(ProbeAction::Log).check(app(Some(A)), sql);
            assert_eq!(d.verdict, Verdict::Forward, "{sql}");
            assert_eq!(d.events[0].action, Action::Log);
        }
    }

    #[test]
    fn cross_tenant_literals_only_for_other_tenants() {
        let p = policy(ProbeAction::Block);
        let own = format!("select * from customers where tenant_id = '{A}'");
        assert_eq!(p.check(app(Some(A)), &own).verdict, Verdict::Forward);
        let other = format!("select * from customers where tenant_id = '{B}'");
        let d = p.check(app(Some(A)), &other);
        assert!(matches!(d.verdict, Verdict::Refuse(_)));
        assert_eq!(d.events[0].kind, EventKind::CrossTenantLiteral);
    }

    #[test]
    fn operators_are_audited_and_breakglass_allowed() {
        let p = policy(ProbeAction::Block);
        let op = Asker {
            kind: UserKind::Operator,
            ..app(Some(A))
        };
        let d = p.check(op, "select 1");
        assert_eq!(d.events[0].kind, EventKind::OperatorStatement);
        let bg = Asker {
            kind: UserKind::Breakglass,
            ..app(None)
        };
        let d = p.check(bg, "set role x");
        assert_eq!(d.verdict, Verdict::Forward);
        assert_eq!(d.events[0].kind, EventKind::BreakglassStatement);
    }

    #[test]
    fn trusted_switch_is_intercepted() {
        let p = policy(ProbeAction::Block);
        let who = Asker {
            allow_switch: true,
            ..app(Some(A))
        };
        let d = p.check(who, &format!("SET app.tenant_id = '{B}'"));
        assert_eq!(d.verdict, Verdict::Switch(B.into()));
    }

    #[test]
    fn uuid_spellings_of_another_tenant_are_probes() {
        let p = policy(ProbeAction::Block);
        for other in [
            "{22222222-2222-2222-2222-222222222222}",
            "22222222222222222222222222222222",
            "2222-2222-2222-2222-2222-2222-2222-2222",
            "{22222222222222222222222222222222}",
        ] {
            let d = p.check(
                app(Some(A)),
                &format!("select * from t where tenant_id = '{other}'"),
            );
            assert_eq!(d.events[0].kind, EventKind::CrossTenantLiteral, "{other}");
            assert!(matches!(d.verdict, Verdict::Refuse(_)), "{other}");
        }
        let own = "{11111111111111111111111111111111}";
        let d = p.check(
            app(Some(A)),
            &format!("select * from t where tenant_id = '{own}'"),
        );
        assert_eq!(
            d.verdict,
            Verdict::Forward,
            "own tenant in another spelling"
        );
        let upper = B.to_ascii_uppercase();
        let d = p.check(
            app(Some(A)),
            &format!("select * from t where tenant_id = '{upper}'"),
        );
        assert_eq!(d.events[0].kind, EventKind::CrossTenantLiteral);
    }

    #[test]
    fn catalog_probes_are_refused_unless_monitoring_is_allowed() {
        // Refused even in log mode: these are not guesses about whose id a literal is.
        let p = policy(ProbeAction::Log);
        let d = p.check(app(Some(A)), "select query from pg_stat_activity");
        let Verdict::Refuse(e) = &d.verdict else {
            panic!("{d:?}")
        };
        assert_eq!(e.code, "42501");
        assert_eq!(e.message, "permission denied for view pg_stat_activity");
        assert!(e.hint.as_deref().unwrap_or_default().contains("tenantgate"));
        assert_eq!(d.events[0].kind, EventKind::CatalogProbe);
        assert_eq!(d.events[0].action, Action::Block);
        let d = p.check(app(Some(A)), "select pg_cancel_backend(42)");
        assert!(
            matches!(&d.verdict, Verdict::Refuse(e) if e.message == "permission denied for function pg_cancel_backend")
        );
        let d = p.check(app(Some(A)), "explain analyze select * from t");
        assert!(matches!(&d.verdict, Verdict::Refuse(e) if e.code == "42501"));
        for login in ["mon", "mon.11111111-1111-1111-1111-111111111111"] {
            let who = Asker {
                login,
                ..app(Some(A))
            };
            let d = p.check(
                who,
                "select query from pg_stat_activity; explain analyze select 1",
            );
            assert_eq!(d.verdict, Verdict::Forward, "{login}");
            assert!(d.events.is_empty());
        }
        // `mon.x` is a configured user of its own, not `mon` with tenant `x`.
        let who = Asker {
            login: "mon.x",
            ..app(Some(A))
        };
        assert!(matches!(
            p.check(who, "table pg_locks").verdict,
            Verdict::Refuse(_)
        ));
        let who = Asker {
            login: "monitor",
            ..app(Some(A))
        };
        assert!(matches!(
            p.check(who, "table pg_locks").verdict,
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn unsafe_client_encodings_get_postgres_wording() {
        let p = policy(ProbeAction::Log);
        // A trusted switcher's plain SET of client_encoding is never a tenant switch.
        let who = Asker {
            allow_switch: true,
            login: "mon",
            ..app(Some(A))
        };
        let d = p.check(who, "SET client_encoding = 'Shift_JIS'");
        let Verdict::Refuse(e) = &d.verdict else {
            panic!("{d:?}")
        };
        assert_eq!(e.code, "22023");
        assert_eq!(
            e.message,
            "invalid value for parameter \"client_encoding\": \"Shift_JIS\""
        );
        assert!(e.detail.as_deref().unwrap_or_default().contains("SJIS"));
        assert_eq!(d.events[0].kind, EventKind::TenantTamper);
        assert_eq!(
            p.check(app(Some(A)), "set names 'utf8'").verdict,
            Verdict::Forward
        );
    }
}
