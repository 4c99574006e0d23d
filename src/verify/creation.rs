//! Check 8: code the upstream role can create.
//!
//! Tenant injection sets `app.tenant_id` for the transaction and the inspector refuses
//! statements that change it. Code the role writes itself escapes both: a PL/pgSQL function
//! (also a procedure, a trigger, a rule, or a view calling one) can build `set_config(…)` from
//! strings at run time, where no lexer sees it, and read another tenant's rows. PostgreSQL
//! grants `TEMPORARY` on every database to PUBLIC, which is enough for `pg_temp` functions.
//!
//! So the role must not be able to create or alter code anywhere: no TEMPORARY or CREATE on
//! the database, no CREATE on any schema, no TRIGGER on any table, and no ownership of a
//! database, schema, function or table (an owner can `ALTER FUNCTION … SET app.tenant_id`,
//! attach triggers and rules, or disable its table's row-level security) — directly, through
//! PUBLIC, or through a role it is a member of. Each finding names the privilege, where it
//! comes from, and the statement that removes it.

use serde::Serialize;
use tokio_postgres::Client;

use super::report::{Check, Finding, Status};
use super::VerifyError;

/// A privilege (or ownership) that lets the role create or alter code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// `database`, `schema` or `table`.
    pub on: String,
    /// The object as SQL names it (quoted).
    pub object: String,
    /// `TEMPORARY`, `CREATE`, `TRIGGER`, or `OWNER` (the role, or a role it reaches, owns it).
    pub privilege: String,
    /// Who holds it: `PUBLIC`, the role itself, or a role it is a member of.
    pub grantee: String,
}

/// An existing function or table owned by the role or a role it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owned {
    /// `function`, `procedure`, `aggregate`, `table`, `view`, …: the word `ALTER` takes.
    pub kind: String,
    /// The object as SQL names it (quoted, functions with their argument types).
    pub object: String,
    /// The connecting role, or a role it reaches.
    pub owner: String,
}

/// What check 8 is judged on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreationFacts {
    /// Whether the role is superuser (it can create anything; check 1 reports it).
    pub superuser: bool,
    /// `current_user`.
    pub user: String,
    /// `current_database()`, quoted.
    pub database: String,
    /// A role to hand ownership to in the suggested fixes: the database's owner when the role
    /// cannot use it (the admin user of a managed service), else the bootstrap superuser.
    pub new_owner: String,
    /// Privileges to create code, with where they come from.
    pub grants: Vec<Grant>,
    /// Owned code and tables.
    pub owned: Vec<Owned>,
}

/// `true` for PUBLIC (grantee 0) or a role the current user is a member of (it can use the
/// role's privileges, or `SET ROLE` to it).
const REACHABLE: &str = "CASE WHEN a.grantee = 0 THEN true \
     ELSE pg_has_role(current_user, a.grantee, 'MEMBER') END";

const GRANTEE: &str = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
     ELSE pg_get_userbyid(a.grantee)::text END";

/// Temporary schemas belong to sessions, not to the application.
const NOT_TEMP: &str = "n.nspname !~ '^pg_(toast_)?temp_'";

fn grants_sql() -> String {
    format!(
        "SELECT 'database', quote_ident(d.datname), a.privilege_type, {GRANTEE} \
           FROM pg_database d CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a \
          WHERE d.datname = current_database() AND a.privilege_type IN ('TEMPORARY', 'CREATE') \
            AND a.grantee <> d.datdba AND {REACHABLE} \
         UNION ALL \
         SELECT 'database', quote_ident(d.datname), 'OWNER', pg_get_userbyid(d.datdba)::text \
           FROM pg_database d \
          WHERE d.datname = current_database() AND pg_has_role(current_user, d.datdba, 'MEMBER') \
         UNION ALL \
         SELECT 'schema', quote_ident(n.nspname), a.privilege_type, {GRANTEE} \
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
          WHERE {NOT_TEMP} AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner AND {REACHABLE} \
         UNION ALL \
         SELECT 'schema', quote_ident(n.nspname), 'OWNER', pg_get_userbyid(n.nspowner)::text \
           FROM pg_namespace n \
          WHERE {NOT_TEMP} AND pg_has_role(current_user, n.nspowner, 'MEMBER') \
         UNION ALL \
         SELECT 'table', quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.privilege_type, {GRANTEE} \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a \
          WHERE {NOT_TEMP} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.privilege_type = 'TRIGGER' \
            AND a.grantee <> c.relowner AND {REACHABLE} \
         ORDER BY 1, 2, 3, 4"
    )
}

fn owned_sql() -> String {
    format!(
        "SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END, \
                quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')', \
                pg_get_userbyid(p.proowner)::text \
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE {NOT_TEMP} AND pg_has_role(current_user, p.proowner, 'MEMBER') \
         UNION ALL \
         SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
                               WHEN 'f' THEN 'foreign table' ELSE 'table' END, \
                quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_userbyid(c.relowner)::text \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE {NOT_TEMP} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
            AND pg_has_role(current_user, c.relowner, 'MEMBER') \
         ORDER BY 3, 1, 2"
    )
}

/// Reads the grants and ownerships check 8 judges (nothing for a superuser).
pub async fn gather(client: &Client) -> Result<CreationFacts, VerifyError> {
    let q = |what: &'static str| move |e: tokio_postgres::Error| VerifyError::query(what, e);
    let row = client
        .query_one(
            "SELECT r.rolsuper, current_user::text, quote_ident(current_database()), \
                    quote_ident(CASE WHEN pg_has_role(current_user, d.datdba, 'MEMBER') \
                                     THEN pg_get_userbyid(10) ELSE pg_get_userbyid(d.datdba) END) \
               FROM pg_roles r, pg_database d \
              WHERE r.rolname = current_user AND d.datname = current_database()",
            &[],
        )
        .await
        .map_err(q("reading the role"))?;
    let mut facts = CreationFacts {
        superuser: row.get(0),
        user: row.get(1),
        database: row.get(2),
        new_owner: row.get(3),
        ..CreationFacts::default()
    };
    if facts.superuser {
        return Ok(facts);
    }
    for r in client
        .query(&grants_sql(), &[])
        .await
        .map_err(q("reading privileges to create objects"))?
    {
        facts.grants.push(Grant {
            on: r.get(0),
            object: r.get(1),
            privilege: r.get(2),
            grantee: r.get(3),
        });
    }
    for r in client
        .query(&owned_sql(), &[])
        .await
        .map_err(q("reading owned objects"))?
    {
        facts.owned.push(Owned {
            kind: r.get(0),
            object: r.get(1),
            owner: r.get(2),
        });
    }
    Ok(facts)
}

/// Most ownership findings listed per owner; the rest are counted (one REASSIGN fixes all).
const OWNED_LISTED: usize = 10;

fn quote(role: &str) -> String {
    super::catalog::quote_ident(role)
}

/// `REVOKE … FROM <grantee>`, plus `REVOKE <role> FROM <user>` when the grantee is a role the
/// user reaches by membership.
fn revoke(f: &CreationFacts, privilege: &str, on: &str, object: &str, grantee: &str) -> String {
    let target = if grantee == "PUBLIC" {
        "PUBLIC".to_owned()
    } else {
        quote(grantee)
    };
    let on = on.to_ascii_uppercase();
    let mut fix = format!("`REVOKE {privilege} ON {on} {object} FROM {target};`");
    if grantee != "PUBLIC" && grantee != f.user {
        fix.push_str(&or_revoke_membership(f, grantee));
    }
    fix
}

/// The alternative fix when the user holds a right through membership in `role`.
fn or_revoke_membership(f: &CreationFacts, role: &str) -> String {
    format!(" (or `REVOKE {} FROM {};`)", quote(role), quote(&f.user))
}

fn via(f: &CreationFacts, grantee: &str) -> String {
    if grantee == "PUBLIC" {
        "granted to PUBLIC".to_owned()
    } else if grantee == f.user {
        format!("granted to {grantee}")
    } else {
        format!("granted to {grantee}, of which {} is a member", f.user)
    }
}

fn owner_words(f: &CreationFacts, owner: &str) -> String {
    if owner == f.user {
        format!("{owner} owns")
    } else if owner == "pg_database_owner" {
        format!("{owner} (that is {}, the database's owner) owns", f.user)
    } else {
        format!("{owner} (of which {} is a member) owns", f.user)
    }
}

fn owner_fix(f: &CreationFacts, alter: &str, object: &str, owner: &str) -> String {
    let mut fix = format!("`ALTER {alter} {object} OWNER TO {};`", f.new_owner);
    // pg_database_owner's only member is the database's owner: no membership to revoke.
    if owner != f.user && owner != "pg_database_owner" {
        fix.push_str(&or_revoke_membership(f, owner));
    }
    fix
}

fn grant_finding(f: &CreationFacts, g: &Grant) -> Finding {
    let object = format!("{} {}", g.on, g.object);
    let (what, fix) = match (g.on.as_str(), g.privilege.as_str()) {
        (_, "OWNER") => (
            format!(
                "{} {object}: its owner can grant itself CREATE{} and create functions there",
                owner_words(f, &g.grantee),
                if g.on == "database" {
                    " and TEMPORARY"
                } else {
                    ""
                }
            ),
            owner_fix(f, &g.on.to_ascii_uppercase(), &g.object, &g.grantee),
        ),
        ("database", "TEMPORARY") => (
            format!(
                "TEMPORARY on {object} is {}: the role can create pg_temp functions, procedures, \
                 triggers on temporary tables and temporary views that call set_config at run time",
                via(f, &g.grantee)
            ),
            revoke(f, "TEMPORARY", &g.on, &g.object, &g.grantee),
        ),
        ("database", _) => (
            format!(
                "CREATE on {object} is {}: the role can create a schema and functions in it",
                via(f, &g.grantee)
            ),
            revoke(f, &g.privilege, &g.on, &g.object, &g.grantee),
        ),
        ("schema", _) => (
            format!(
                "CREATE on {object} is {}: the role can create functions, procedures and views there",
                via(f, &g.grantee)
            ),
            revoke(f, &g.privilege, &g.on, &g.object, &g.grantee),
        ),
        _ => (
            format!(
                "TRIGGER on {object} is {}: the role can attach triggers to it",
                via(f, &g.grantee)
            ),
            revoke(f, &g.privilege, &g.on, &g.object, &g.grantee),
        ),
    };
    Finding::new(Status::Fail, object, format!("{what}; fix: {fix}"))
}

fn owned_finding(f: &CreationFacts, o: &Owned) -> Finding {
    let power = match o.kind.as_str() {
        "function" | "procedure" | "aggregate" => format!(
            "its owner can ALTER {} … SET a tenant for its duration, or make it SECURITY DEFINER",
            o.kind.to_ascii_uppercase()
        ),
        _ => "its owner can attach triggers and rules to it, and change or disable its row-level security".to_owned(),
    };
    Finding::new(
        Status::Fail,
        format!("{} {}", o.kind, o.object),
        format!(
            "{} {} {}: {power}; fix: {}",
            owner_words(f, &o.owner),
            o.kind,
            o.object,
            owner_fix(f, &o.kind.to_ascii_uppercase(), &o.object, &o.owner)
        ),
    )
}

/// Appended to findings that signing turns into warnings.
const SIGNED_NOTE: &str = " (a warning with signed tenant context: such code cannot forge the signed tenant; session state is still reset between clients)";

/// Check 8 as judged with signing on (`signed`) or off. With signed tenant context, privileges
/// to create code (TEMPORARY, CREATE, TRIGGER) and owned functions are warnings: code can set
/// the tenant setting but cannot sign it, and the policies trust only the signature. Owned
/// databases, schemas and tables stay failures: their owner can drop or replace what the
/// policies protect, or disable row-level security.
pub fn check_for(f: &CreationFacts, signed: bool) -> Check {
    const KEY: &str = "object_creation";
    const TITLE: &str = "no object creation";
    if f.superuser {
        return Check::skipped(
            8,
            KEY,
            TITLE,
            format!("{} is superuser and can create anything (check 1)", f.user),
        );
    }
    let soften = |mut x: Finding, ok: bool| {
        if signed && ok {
            x.status = Status::Warn;
            x.message.push_str(SIGNED_NOTE);
        }
        x
    };
    let mut findings: Vec<Finding> = f
        .grants
        .iter()
        .map(|g| soften(grant_finding(f, g), g.privilege != "OWNER"))
        .collect();
    let mut owners: Vec<&str> = f.owned.iter().map(|o| o.owner.as_str()).collect();
    owners.dedup();
    for owner in owners {
        let objects: Vec<&Owned> = f.owned.iter().filter(|o| o.owner == owner).collect();
        findings.extend(objects.iter().take(OWNED_LISTED).map(|o| {
            let code = matches!(o.kind.as_str(), "function" | "procedure" | "aggregate");
            soften(owned_finding(f, o), code)
        }));
        if objects.len() > OWNED_LISTED {
            findings.push(Finding::new(
                Status::Fail,
                format!("role {owner}"),
                format!(
                    "{} {} more objects in this database; fix them all: `REASSIGN OWNED BY {} TO {};`",
                    owner_words(f, owner),
                    objects.len() - OWNED_LISTED,
                    quote(owner),
                    f.new_owner
                ),
            ));
        }
    }
    let summary = if findings.is_empty() {
        findings.push(Finding::new(
            Status::Pass,
            &f.user,
            "no TEMPORARY or CREATE on the database, no CREATE on a schema, no TRIGGER, owns nothing",
        ));
        format!(
            "{} can create no functions, procedures, triggers or views",
            f.user
        )
    } else if signed && findings.iter().all(|x| x.status != Status::Fail) {
        format!(
            "{} can create code, which cannot forge the signed tenant context",
            f.user
        )
    } else {
        let what: Vec<String> = findings.iter().take(3).map(|x| x.object.clone()).collect();
        format!(
            "{} can create or alter code ({}{}): such code can switch tenant at run time",
            f.user,
            what.join(", "),
            if findings.len() > 3 { ", …" } else { "" }
        )
    };
    Check::new(8, KEY, TITLE, summary, findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> CreationFacts {
        CreationFacts {
            user: "app_user".into(),
            database: "app".into(),
            new_owner: "postgres".into(),
            ..CreationFacts::default()
        }
    }

    fn grant(on: &str, object: &str, privilege: &str, grantee: &str) -> Grant {
        Grant {
            on: on.into(),
            object: object.into(),
            privilege: privilege.into(),
            grantee: grantee.into(),
        }
    }

    #[test]
    fn with_signing_creating_code_warns_but_owning_tables_fails() {
        let mut f = facts();
        f.grants
            .push(grant("database", "app", "TEMPORARY", "PUBLIC"));
        f.owned.push(Owned {
            kind: "function".into(),
            object: "public.f()".into(),
            owner: "app_user".into(),
        });
        assert_eq!(check_for(&f, false).status, Status::Fail);
        let c = check_for(&f, true);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c
            .findings
            .iter()
            .all(|x| x.message.contains("signed tenant")));
        f.owned.push(Owned {
            kind: "table".into(),
            object: "public.t".into(),
            owner: "app_user".into(),
        });
        assert_eq!(check_for(&f, true).status, Status::Fail);
    }

    #[test]
    fn nothing_to_create_passes() {
        assert_eq!(check_for(&facts(), false).status, Status::Pass);
    }

    #[test]
    fn superuser_is_left_to_check_1() {
        let mut f = facts();
        f.superuser = true;
        f.grants
            .push(grant("database", "app", "TEMPORARY", "PUBLIC"));
        assert_eq!(check_for(&f, false).status, Status::Skip);
    }

    #[test]
    fn temporary_via_public_names_the_revoke() {
        let mut f = facts();
        f.grants
            .push(grant("database", "app", "TEMPORARY", "PUBLIC"));
        let c = check_for(&f, false);
        assert_eq!(c.status, Status::Fail);
        let m = &c.findings[0].message;
        assert!(m.contains("granted to PUBLIC"), "{m}");
        assert!(
            m.contains("REVOKE TEMPORARY ON DATABASE app FROM PUBLIC;"),
            "{m}"
        );
        assert_eq!(c.findings[0].object, "database app");
    }

    #[test]
    fn a_grant_through_membership_offers_both_revokes() {
        let mut f = facts();
        f.grants
            .push(grant("schema", "public", "CREATE", "writers"));
        let m = check_for(&f, false).findings[0].message.clone();
        assert!(m.contains("writers, of which app_user is a member"), "{m}");
        assert!(
            m.contains("REVOKE CREATE ON SCHEMA public FROM \"writers\";"),
            "{m}"
        );
        assert!(m.contains("REVOKE \"writers\" FROM \"app_user\";"), "{m}");
    }

    #[test]
    fn owning_the_database_or_a_schema_names_the_alter_owner() {
        let mut f = facts();
        f.grants.push(grant("database", "app", "OWNER", "app_user"));
        f.grants
            .push(grant("schema", "public", "OWNER", "pg_database_owner"));
        let c = check_for(&f, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.findings[0]
            .message
            .contains("`ALTER DATABASE app OWNER TO postgres;`"));
        assert!(c.findings[1]
            .message
            .contains("`ALTER SCHEMA public OWNER TO postgres;`"));
        assert!(!c.findings[1].message.contains("REVOKE"));
    }

    #[test]
    fn owned_code_is_named_with_its_alter() {
        let mut f = facts();
        f.owned.push(Owned {
            kind: "function".into(),
            object: "public.f(integer)".into(),
            owner: "app_user".into(),
        });
        f.owned.push(Owned {
            kind: "table".into(),
            object: "public.customers".into(),
            owner: "app_owner".into(),
        });
        let c = check_for(&f, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.findings[0]
            .message
            .contains("ALTER FUNCTION public.f(integer) OWNER TO postgres;"));
        assert!(c.findings[1].message.contains("row-level security"));
        assert!(c.findings[1]
            .message
            .contains("REVOKE \"app_owner\" FROM \"app_user\";"));
    }

    #[test]
    fn many_owned_objects_are_capped_with_a_reassign() {
        let mut f = facts();
        for i in 0..25 {
            f.owned.push(Owned {
                kind: "function".into(),
                object: format!("public.f{i}()"),
                owner: "app_user".into(),
            });
        }
        let c = check_for(&f, false);
        assert_eq!(c.findings.len(), OWNED_LISTED + 1);
        assert!(c.findings[OWNED_LISTED]
            .message
            .contains("REASSIGN OWNED BY \"app_user\" TO postgres;"));
    }
}
