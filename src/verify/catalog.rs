//! What the catalogs say about the connecting role, the tenant tables, their policies and
//! risky functions. Read-only queries any role can run (no superuser needed), so that the
//! upstream role itself can be checked with its own credentials.

use serde::Serialize;
use tokio_postgres::Client;

use super::VerifyError;

/// The connecting role and where it is connected.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoleFacts {
    /// `current_user`.
    pub user: String,
    /// `session_user` (differs after `SET ROLE`).
    pub session_user: String,
    /// `current_database()`.
    pub database: String,
    /// `server_version`.
    pub server_version: String,
    /// `rolsuper` of the role: RLS never applies to a superuser.
    pub superuser: bool,
    /// `rolbypassrls` of the role.
    pub bypassrls: bool,
    /// Roles with `rolsuper` or `rolbypassrls` this role is a member of (directly or not);
    /// not listed for a superuser, which is a member of everything.
    pub privileged_memberships: Vec<PrivilegedRole>,
}

/// A role with a flag that defeats RLS, reachable from the connecting role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivilegedRole {
    /// `rolname`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolbypassrls`.
    pub bypassrls: bool,
}

/// One table that has the tenant column or row-level security.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableFacts {
    /// Its oid, to match keys and constraints (not shown).
    #[serde(skip)]
    pub oid: u32,
    /// `schema.table`, quoted only where needed for display.
    pub name: String,
    /// `nspname`, unquoted (`name` is the display form).
    pub schema: String,
    /// `relname`, unquoted.
    pub table: String,
    /// The owner (exempt from RLS unless it is forced).
    pub owner: String,
    /// Whether the table has the tenant column (only these are judged).
    pub tenant_column: bool,
    /// The column's type as `format_type` prints it, e.g. `uuid`.
    pub column_type: Option<String>,
    /// Whether the column is `NOT NULL`.
    pub column_not_null: bool,
    /// Whether some index has the column as its first key.
    pub column_indexed: bool,
    /// Planner statistics: fraction of NULLs in the column, when the role may read them.
    pub column_null_frac: Option<f32>,
    /// `relrowsecurity`.
    pub rls_enabled: bool,
    /// `relforcerowsecurity`.
    pub rls_forced: bool,
    /// Whether the connecting role has the owner's privileges (and so bypasses unforced RLS).
    pub role_is_owner: bool,
    /// Its policies, by name.
    pub policies: Vec<PolicyFacts>,
}

/// One row of `pg_policy`, deparsed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyFacts {
    /// `polname`.
    pub name: String,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    /// Permissive policies are OR-ed together; restrictive ones AND-ed on top.
    pub permissive: bool,
    /// Roles it applies to (`public` for everyone).
    pub roles: Vec<String>,
    /// Whether it applies to the connecting role.
    pub applies: bool,
    /// Deparsed; None when absent (an INSERT policy has none).
    pub using: Option<String>,
    /// Deparsed; None when absent (writes are then checked against `USING`, as PostgreSQL does).
    pub with_check: Option<String>,
}

/// A function the role can execute that can change the tenant setting behind the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionFacts {
    /// `schema.name(argtypes)`.
    pub signature: String,
    /// Its owner, whose rights a SECURITY DEFINER function runs with.
    pub owner: String,
    /// `prosecdef`.
    pub security_definer: bool,
    /// Its body mentions `set_config`.
    pub calls_set_config: bool,
    /// `ALTER FUNCTION … SET <setting> = …` pins the tenant for its duration.
    pub sets_setting: bool,
}

/// Everything the catalog checks are judged on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    /// Who is connected: check 1 judges it.
    pub role: RoleFacts,
    /// Tables with the column or with RLS.
    pub tables: Vec<TableFacts>,
    /// For check 7: functions the role can execute that can change the tenant setting.
    pub functions: Vec<FunctionFacts>,
    /// What the role can create or alter (check 8).
    pub creation: super::creation::CreationFacts,
    /// Unique and foreign keys of the tenant tables (check 9).
    pub keys: Vec<super::keys::KeyFacts>,
}

impl Facts {
    /// The tables the checks judge: those with the tenant column.
    pub fn tenant_tables(&self) -> impl Iterator<Item = &TableFacts> {
        self.tables.iter().filter(|t| t.tenant_column)
    }
}

/// Schemas that are not the application's.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";

const ROLE_SQL: &str = "SELECT current_user::text, session_user::text, current_database()::text, \
     current_setting('server_version'), r.rolsuper, r.rolbypassrls \
     FROM pg_roles r WHERE r.rolname = current_user";

const MEMBERSHIP_SQL: &str = "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls FROM pg_roles r \
     WHERE (r.rolsuper OR r.rolbypassrls) AND r.rolname <> current_user \
       AND pg_has_role(current_user, r.oid, 'MEMBER') \
       AND NOT (SELECT s.rolsuper FROM pg_roles s WHERE s.rolname = current_user) ORDER BY 1";

fn tables_sql() -> String {
    format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, pg_get_userbyid(c.relowner)::text, \
           c.relrowsecurity, c.relforcerowsecurity, pg_has_role(current_user, c.relowner, 'USAGE'), \
           a.attnum IS NOT NULL, format_type(a.atttypid, a.atttypmod), coalesce(a.attnotnull, false), \
           coalesce(EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum), false), \
           (SELECT s.null_frac FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname \
              AND s.attname = a.attname LIMIT 1) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} AND (a.attnum IS NOT NULL OR c.relrowsecurity) \
         ORDER BY 2, 3"
    )
}

const POLICIES_SQL: &str = "SELECT pol.polrelid, pol.polname::text, pol.polpermissive, \
       CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' \
                       WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, \
       ARRAY(SELECT CASE WHEN r.oid = 0 THEN 'public' ELSE coalesce(pg_get_userbyid(r.oid)::text, r.oid::text) END \
             FROM unnest(pol.polroles) AS r(oid) ORDER BY 1), \
       EXISTS (SELECT 1 FROM unnest(pol.polroles) AS r(oid) \
               WHERE CASE WHEN r.oid = 0 THEN true ELSE pg_has_role(current_user, r.oid, 'USAGE') END), \
       pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid) \
     FROM pg_policy pol ORDER BY pol.polrelid, pol.polname";

fn functions_sql() -> String {
    format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')', pg_get_userbyid(p.proowner)::text, p.prosecdef, \
           p.prosrc ~* 'set_config', \
           coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c(v) WHERE lower(c.v) LIKE lower($1) || '=%'), false) \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE {USER_SCHEMAS} AND has_function_privilege(p.oid, 'EXECUTE') \
           AND ((p.prosecdef AND p.prosrc ~* 'set_config') \
                OR EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c(v) WHERE lower(c.v) LIKE lower($1) || '=%')) \
         ORDER BY 1"
    )
}

/// `schema.table` for display, quoting parts that need it.
pub fn display_name(schema: &str, table: &str) -> String {
    format!("{}.{}", display_ident(schema), display_ident(table))
}

fn display_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if plain {
        s.to_owned()
    } else {
        quote_ident(s)
    }
}

/// Always-quoted identifier for SQL the checks build.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Reads every fact the catalog checks need, for tenant column `column` and setting `setting`.
pub async fn gather(client: &Client, column: &str, setting: &str) -> Result<Facts, VerifyError> {
    let q = |what: &'static str| move |e: tokio_postgres::Error| VerifyError::query(what, e);
    let row = client
        .query_one(ROLE_SQL, &[])
        .await
        .map_err(q("reading the role"))?;
    let mut role = RoleFacts {
        user: row.get(0),
        session_user: row.get(1),
        database: row.get(2),
        server_version: row.get(3),
        superuser: row.get(4),
        bypassrls: row.get(5),
        privileged_memberships: Vec::new(),
    };
    for r in client
        .query(MEMBERSHIP_SQL, &[])
        .await
        .map_err(q("reading role memberships"))?
    {
        role.privileged_memberships.push(PrivilegedRole {
            name: r.get(0),
            superuser: r.get(1),
            bypassrls: r.get(2),
        });
    }

    let mut tables = Vec::new();
    let mut oids = Vec::new();
    for r in client
        .query(&tables_sql(), &[&column])
        .await
        .map_err(q("listing tables"))?
    {
        let oid: u32 = r.get(0);
        let schema: String = r.get(1);
        let table: String = r.get(2);
        oids.push(oid);
        tables.push(TableFacts {
            oid,
            name: display_name(&schema, &table),
            schema,
            table,
            owner: r.get(3),
            rls_enabled: r.get(4),
            rls_forced: r.get(5),
            role_is_owner: r.get(6),
            tenant_column: r.get(7),
            column_type: r.get(8),
            column_not_null: r.get(9),
            column_indexed: r.get(10),
            column_null_frac: r.get(11),
            policies: Vec::new(),
        });
    }
    for r in client
        .query(POLICIES_SQL, &[])
        .await
        .map_err(q("listing policies"))?
    {
        let relid: u32 = r.get(0);
        let Some(i) = oids.iter().position(|o| *o == relid) else {
            continue;
        };
        tables[i].policies.push(PolicyFacts {
            name: r.get(1),
            permissive: r.get(2),
            command: r.get(3),
            roles: r.get(4),
            applies: r.get(5),
            using: r.get(6),
            with_check: r.get(7),
        });
    }

    let mut functions = Vec::new();
    for r in client
        .query(&functions_sql(), &[&setting])
        .await
        .map_err(q("listing functions"))?
    {
        functions.push(FunctionFacts {
            signature: r.get(0),
            owner: r.get(1),
            security_definer: r.get(2),
            calls_set_config: r.get(3),
            sets_setting: r.get(4),
        });
    }
    let creation = super::creation::gather(client).await?;
    let tenant_oids: Vec<u32> = tables
        .iter()
        .filter(|t| t.tenant_column)
        .map(|t| t.oid)
        .collect();
    let keys = super::keys::gather(client, &tenant_oids).await?;
    Ok(Facts {
        role,
        tables,
        functions,
        creation,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_only_when_needed() {
        assert_eq!(display_name("public", "vehicles"), "public.vehicles");
        assert_eq!(display_name("Sales", "my table"), "\"Sales\".\"my table\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
