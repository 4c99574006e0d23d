//! Check 9: keys that span tenants.
//!
//! Row-level security filters what a tenant reads, not what constraints check: a unique key
//! or primary key without the tenant column compares a tenant's new row with every tenant's
//! rows, so a duplicate answers `23505` and tells the tenant the value exists elsewhere. A
//! foreign key that does not carry the tenant column lets a tenant reference another tenant's
//! row (the insert succeeds, so the id exists) and then stops that tenant deleting its own row.
//! Keys that start with the tenant column (`PRIMARY KEY (tenant_id, id)`, `FOREIGN KEY
//! (tenant_id, customer_id) REFERENCES customers (tenant_id, id)`) keep each tenant's values
//! apart.
//!
//! These leak existence, not rows, and fixing them is a migration, so they are warnings by
//! default; `[security] require_tenant_keys = true` (or `verify --require-tenant-keys`) makes
//! them failures.

use serde::Serialize;
use tokio_postgres::Client;

use super::catalog::{quote_ident, Facts};
use super::report::{Check, Finding, Status};
use super::VerifyError;

/// One unique key, primary key, exclusion constraint, unique index or foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyFacts {
    /// Matches [`TableFacts::oid`](super::catalog::TableFacts::oid).
    #[serde(skip)]
    pub table_oid: u32,
    /// Constraint or index name.
    pub name: String,
    /// `p` primary key, `u` unique, `x` exclusion, `i` unique index, `f` foreign key.
    pub kind: char,
    /// Key columns in order (`None` for an expression).
    pub columns: Vec<Option<String>>,
    /// For a foreign key: the referenced table's oid.
    #[serde(skip)]
    pub ref_oid: u32,
    /// For a foreign key: the referenced table, quoted.
    pub ref_table: Option<String>,
    /// For a foreign key: the referenced columns, in the order of `columns`.
    pub ref_columns: Vec<String>,
}

const KEYS_SQL: &str = "\
    SELECT con.conrelid, con.conname::text, con.contype::text, \
           ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o) \
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o), \
           con.confrelid, \
           CASE WHEN con.contype = 'f' THEN \
                (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c \
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = con.confrelid) END, \
           ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o) \
                 JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) \
      FROM pg_constraint con \
     WHERE con.contype IN ('p', 'u', 'x', 'f') AND con.conrelid = ANY($1) AND con.conparentid = 0 \
    UNION ALL \
    SELECT i.indrelid, ic.relname::text, 'i', \
           ARRAY(SELECT a.attname::text FROM generate_series(0, i.indnkeyatts - 1) AS k(o) \
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.o] \
                 ORDER BY k.o), \
           0::oid, NULL, ARRAY[]::text[] \
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
     WHERE i.indisunique AND i.indrelid = ANY($1) \
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid \
                         AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')) \
       AND NOT EXISTS (SELECT 1 FROM pg_inherits h JOIN pg_index pi ON pi.indexrelid = h.inhparent \
                        WHERE h.inhrelid = i.indexrelid) \
     ORDER BY 1, 2";

/// Reads the keys of the tables with these oids.
pub async fn gather(client: &Client, tables: &[u32]) -> Result<Vec<KeyFacts>, VerifyError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(KEYS_SQL, &[&tables])
        .await
        .map_err(|e| VerifyError::query("reading keys", e))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let kind: String = r.get(2);
            KeyFacts {
                table_oid: r.get(0),
                name: r.get(1),
                kind: kind.chars().next().unwrap_or('?'),
                columns: r.get(3),
                ref_oid: r.get(4),
                ref_table: r.get(5),
                ref_columns: r.get(6),
            }
        })
        .collect())
}

fn kind_words(k: char) -> &'static str {
    match k {
        'p' => "primary key",
        'u' => "unique constraint",
        'x' => "exclusion constraint",
        'i' => "unique index",
        _ => "foreign key",
    }
}

fn cols(c: &[Option<String>]) -> String {
    c.iter()
        .map(|c| {
            c.as_deref()
                .map(quote_ident)
                .unwrap_or_else(|| "(expression)".into())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether some unique key of `table` has exactly the columns `want` (any order).
fn has_unique(keys: &[KeyFacts], table: u32, want: &[&str]) -> bool {
    keys.iter()
        .filter(|k| k.table_oid == table && matches!(k.kind, 'p' | 'u' | 'i'))
        .any(|k| {
            k.columns.len() == want.len()
                && k.columns
                    .iter()
                    .all(|c| c.as_deref().is_some_and(|c| want.contains(&c)))
        })
}

/// Check 9: every unique key and foreign key of a tenant table includes the tenant column.
pub fn check(facts: &Facts, column: &str, strict: bool) -> Check {
    const KEY: &str = "tenant_keys";
    const TITLE: &str = "keys include the tenant";
    let bad = if strict { Status::Fail } else { Status::Warn };
    let tcol = quote_ident(column);
    let tenant_table = |oid: u32| facts.tenant_tables().find(|t| t.oid == oid);
    let mut findings = Vec::new();
    let mut tables = 0;
    for t in facts.tenant_tables() {
        tables += 1;
        let qt = format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.table));
        let before = findings.len();
        for k in facts.keys.iter().filter(|k| k.table_oid == t.oid) {
            let object = format!("{}/{}", t.name, k.name);
            let has_tenant = k.columns.iter().any(|c| c.as_deref() == Some(column));
            if k.kind != 'f' {
                if has_tenant {
                    continue;
                }
                let qn = quote_ident(&k.name);
                let c = cols(&k.columns);
                let fix = match k.kind {
                    'p' => format!("`ALTER TABLE {qt} DROP CONSTRAINT {qn}, ADD CONSTRAINT {qn} PRIMARY KEY ({tcol}, {c});` (re-point the foreign keys that reference it first)"),
                    'u' => format!("`ALTER TABLE {qt} DROP CONSTRAINT {qn}, ADD CONSTRAINT {qn} UNIQUE ({tcol}, {c});`"),
                    'i' => format!("`DROP INDEX {}.{qn}; CREATE UNIQUE INDEX {qn} ON {qt} ({tcol}, {c});`", quote_ident(&t.schema)),
                    _ => format!("add `{tcol} WITH =` to exclusion constraint {qn}"),
                };
                findings.push(Finding::new(
                    bad,
                    object,
                    format!(
                        "{} ({c}) does not include {column}: a tenant inserting another tenant's value gets 23505 (unique_violation), which tells it the value exists; fix: {fix}",
                        kind_words(k.kind)
                    ),
                ));
                continue;
            }
            // A foreign key into another tenant table must carry the tenant column to the
            // referenced table's tenant column; keys into shared tables (the tenants list,
            // reference data) are fine.
            let Some(r) = tenant_table(k.ref_oid) else {
                continue;
            };
            let paired = k
                .columns
                .iter()
                .zip(&k.ref_columns)
                .any(|(c, rc)| c.as_deref() == Some(column) && rc == column);
            if paired {
                continue;
            }
            let rt = k
                .ref_table
                .clone()
                .unwrap_or_else(|| format!("{}.{}", quote_ident(&r.schema), quote_ident(&r.table)));
            let qn = quote_ident(&k.name);
            let mine = cols(&k.columns);
            let theirs: Vec<String> = k.ref_columns.iter().map(|c| quote_ident(c)).collect();
            let theirs = theirs.join(", ");
            let mut want: Vec<&str> = vec![column];
            want.extend(k.ref_columns.iter().map(String::as_str));
            let mut fix = String::new();
            if !has_unique(&facts.keys, r.oid, &want) {
                fix.push_str(&format!("ALTER TABLE {rt} ADD UNIQUE ({tcol}, {theirs}); "));
            }
            fix.push_str(&format!(
                "`ALTER TABLE {qt} DROP CONSTRAINT {qn}, ADD CONSTRAINT {qn} FOREIGN KEY ({tcol}, {mine}) REFERENCES {rt} ({tcol}, {theirs});` (keep its ON DELETE / ON UPDATE actions)"
            ));
            findings.push(Finding::new(
                bad,
                object,
                format!(
                    "foreign key ({mine}) → {} ({theirs}) does not include {column}: a tenant can reference another tenant's row (the insert succeeds, so the row exists), and that tenant can then no longer delete it; fix: {fix}",
                    r.name
                ),
            ));
        }
        if findings.len() == before {
            findings.push(Finding::new(
                Status::Pass,
                &t.name,
                format!("every unique and foreign key includes {column}"),
            ));
        }
    }
    if tables == 0 {
        return Check::skipped(9, KEY, TITLE, "no tenant tables");
    }
    let n = findings.iter().filter(|f| f.status != Status::Pass).count();
    let summary = if n == 0 {
        format!("every unique and foreign key of {tables} tenant tables includes {column}")
    } else {
        format!(
            "{n} key{} without {column}: existence oracles across tenants{}",
            if n == 1 { "" } else { "s" },
            if strict {
                ""
            } else {
                " (a warning; `verify --require-tenant-keys` or [security] require_tenant_keys = true make it a failure)"
            }
        )
    };
    Check::new(9, KEY, TITLE, summary, findings)
}

#[cfg(test)]
mod tests {
    use super::super::catalog::TableFacts;
    use super::*;

    fn table(oid: u32, name: &str) -> TableFacts {
        TableFacts {
            oid,
            name: format!("public.{name}"),
            schema: "public".into(),
            table: name.into(),
            tenant_column: true,
            ..TableFacts::default()
        }
    }

    fn key(table: u32, name: &str, kind: char, columns: &[&str]) -> KeyFacts {
        KeyFacts {
            table_oid: table,
            name: name.into(),
            kind,
            columns: columns.iter().map(|c| Some((*c).to_owned())).collect(),
            ref_oid: 0,
            ref_table: None,
            ref_columns: Vec::new(),
        }
    }

    fn fk(table: u32, name: &str, columns: &[&str], r: u32, rcols: &[&str]) -> KeyFacts {
        KeyFacts {
            ref_oid: r,
            ref_table: Some("public.customers".into()),
            ref_columns: rcols.iter().map(|c| (*c).to_owned()).collect(),
            ..key(table, name, 'f', columns)
        }
    }

    fn facts(keys: Vec<KeyFacts>) -> Facts {
        Facts {
            tables: vec![table(1, "customers"), table(2, "vehicles")],
            keys,
            ..Facts::default()
        }
    }

    #[test]
    fn composite_keys_pass() {
        let f = facts(vec![
            key(1, "customers_pkey", 'p', &["tenant_id", "id"]),
            key(2, "vehicles_pkey", 'p', &["tenant_id", "id"]),
            fk(
                2,
                "vehicles_customer_fkey",
                &["tenant_id", "customer_id"],
                1,
                &["tenant_id", "id"],
            ),
            // Into a shared table: fine.
            fk(2, "vehicles_tenant_id_fkey", &["tenant_id"], 99, &["id"]),
        ]);
        let c = check(&f, "tenant_id", false);
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }

    #[test]
    fn single_column_keys_warn_with_the_composite_sql() {
        let f = facts(vec![
            key(1, "customers_pkey", 'p', &["id"]),
            key(1, "customers_email_key", 'u', &["email"]),
            fk(2, "vehicles_customer_id_fkey", &["customer_id"], 1, &["id"]),
        ]);
        let c = check(&f, "tenant_id", false);
        assert_eq!(c.status, Status::Warn);
        let all: Vec<&str> = c.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(
            all[0].contains("PRIMARY KEY (\"tenant_id\", \"id\")"),
            "{}",
            all[0]
        );
        assert!(
            all[1].contains("UNIQUE (\"tenant_id\", \"email\")"),
            "{}",
            all[1]
        );
        assert!(
            all[2].contains("ADD UNIQUE (\"tenant_id\", \"id\")")
                && all[2].contains("FOREIGN KEY (\"tenant_id\", \"customer_id\") REFERENCES public.customers (\"tenant_id\", \"id\")"),
            "{}",
            all[2]
        );
        assert!(all[0].contains("23505"));
        assert_eq!(check(&f, "tenant_id", true).status, Status::Fail);
    }

    #[test]
    fn a_composite_target_is_not_added_twice() {
        let f = facts(vec![
            key(1, "customers_tenant_id_id_key", 'u', &["id", "tenant_id"]),
            key(1, "customers_pkey", 'p', &["tenant_id", "id"]),
            fk(2, "v_fkey", &["customer_id"], 1, &["id"]),
        ]);
        let c = check(&f, "tenant_id", false);
        let m = &c
            .findings
            .iter()
            .find(|f| f.object.ends_with("v_fkey"))
            .unwrap()
            .message;
        assert!(!m.contains("ADD UNIQUE"), "{m}");
    }
}
