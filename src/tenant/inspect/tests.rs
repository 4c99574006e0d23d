use super::*;

const OPTS: InspectOptions<'static> = InspectOptions {
    setting: "app.tenant_id",
    tenant_column: "tenant_id",
    standard_conforming_strings: true,
};
const OFF: InspectOptions<'static> = InspectOptions {
    standard_conforming_strings: false,
    ..OPTS
};

fn ins(sql: &str) -> Inspection {
    let i = inspect(sql, &OPTS);
    check_invariants(sql, &i);
    i
}

fn rules(sql: &str) -> Vec<Rule> {
    ins(sql).findings.iter().map(|f| f.rule).collect()
}

fn one(sql: &str) -> Finding {
    let i = ins(sql);
    assert_eq!(i.findings.len(), 1, "{sql:?}: {:#?}", i.findings);
    i.findings[0].clone()
}

fn clean(sql: &str) {
    let i = ins(sql);
    assert!(i.findings.is_empty(), "{sql:?}: {:#?}", i.findings);
}

fn literals(sql: &str) -> Vec<String> {
    ins(sql)
        .findings
        .iter()
        .filter(|f| f.rule == Rule::TenantLiteral)
        .map(|f| f.value.clone().unwrap_or_default())
        .collect()
}

fn flags(sql: &str) -> Flags {
    ins(sql).flags
}

/// What every inspection must satisfy, whatever the input.
fn check_invariants(sql: &str, i: &Inspection) {
    let mut last = 0;
    for f in &i.findings {
        assert!(f.statement.start < f.statement.end, "{sql:?}: {f:?}");
        assert!(sql.get(f.statement.clone()).is_some(), "{sql:?}: {f:?}");
        assert!(sql.get(f.span.clone()).is_some(), "{sql:?}: {f:?}");
        assert!(
            f.statement.start <= f.span.start && f.span.end <= f.statement.end,
            "{sql:?}: span outside statement: {f:?}"
        );
        assert!(f.statement.start >= last, "{sql:?}: out of order");
        last = f.statement.start;
        let text = &sql[f.statement.clone()];
        assert_eq!(text, text.trim_start(), "{sql:?}: untrimmed range");
        if f.statement.end < sql.len() {
            assert_eq!(text, text.trim_end(), "{sql:?}: untrimmed range");
        }
    }
    for w in i.findings.windows(2) {
        if w[0].statement == w[1].statement {
            assert!(w[0].span.start <= w[1].span.start, "{sql:?}: out of order");
        }
    }
    assert!(i.statements as usize <= sql.len());
}

// ----- TenantTamper -----

#[test]
fn set_of_the_tenant_setting_in_any_spelling() {
    for (sql, value) in [
        ("SET app.tenant_id = 'x'", Some("x")),
        ("set APP.TENANT_ID to 'x'", Some("x")),
        ("SET \"app\".\"tenant_id\" = 'x'", Some("x")),
        ("SET \"app.tenant_id\" = 'x'", Some("x")),
        ("SET \"APP\".\"Tenant_Id\" TO 'x'", Some("x")),
        ("SET SESSION app.tenant_id = 'x'", Some("x")),
        ("SET LOCAL app.tenant_id = 42", Some("42")),
        ("SET app.tenant_id = -7", Some("-7")),
        ("SET app.tenant_id TO DEFAULT", None),
        ("SET app.TENANT_ID TO DEFAULT", None),
        ("SET app.tenant_id = ABC", Some("abc")),
        ("SET app.tenant_id = \"ABC\"", Some("ABC")),
        (
            "SET app /* c */ . -- c\n tenant_id = E'a\\x62\\n'",
            Some("ab\n"),
        ),
        ("SET app.tenant_id = 'it''s'", Some("it's")),
        ("SET app.tenant_id = 'a'\n'b'", Some("ab")),
        ("SET app.tenant_id = 'a' -- c\n  'b'", Some("ab")),
        ("SET app.tenant_id = $$x$$", Some("x")),
        ("SET app.tenant_id = $t$x$t$;", Some("x")),
        ("SET app.tenant_id = U&'\\0078'", Some("x")),
        (
            "SET app.tenant_id = U&'!0078!+00006A' UESCAPE '!'",
            Some("xj"),
        ),
        ("SET app.tenant_id = N'x'", Some("x")),
        ("SET app.U&\"tenant\\005fid\" = 'x'", Some("x")),
        ("SET U&\"app!002etenant_id\" UESCAPE '!' = 'x'", Some("x")),
        ("SET app.tenant_id = 'a', 'b'", None),
        ("SET app.tenant_id FROM CURRENT", None),
        ("SET app.tenant_id = 'é😀'", Some("é😀")),
        ("RESET app.tenant_id", None),
        ("reset \"app\".tenant_id", None),
    ] {
        let f = one(sql);
        assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
        assert_eq!(f.value.as_deref(), value, "{sql:?}");
        assert_eq!(f.statement, 0..sql.trim_end_matches(';').len(), "{sql:?}");
    }
    assert_eq!(
        one("RESET app.tenant_id").detail,
        "RESET of the tenant setting"
    );
    assert_eq!(
        one("SET app.tenant_id = 'x'").detail,
        "SET of the tenant setting"
    );
}

#[test]
fn other_settings_and_reads_are_not_tenant_tamper() {
    for sql in [
        "SET app.tenant = 'x'",
        "SET app.tenant_idx = 'x'",
        "SET tenant_id = 'x'",
        "SET x.app.tenant_id = 1",
        "SET search_path = public, \"$user\"",
        "SET statement_timeout = 0",
        "SET TIME ZONE 'UTC'",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "select current_setting('app.tenant_id')",
        "select * from t where tenant_id = current_setting('app.tenant_id')::uuid",
        "select 'SET app.tenant_id = ''x'''",
        "select $$SET app.tenant_id = 'x'$$",
        "select $q$ $$ ; SET app.tenant_id = 'x'; $$ $q$",
        "/* SET app.tenant_id = 'x' */ select 1",
        "-- SET app.tenant_id = 'x'\nselect 1",
        "select 1 -- ; SET app.tenant_id = 'x'",
        "RESET ALL",
        "DISCARD ALL",
        "SHOW app.tenant_id",
        "select \"SET app.tenant_id = 'x'\" from t",
    ] {
        clean(sql);
    }
}

#[test]
fn the_signature_setting_is_guarded_like_the_tenant_setting() {
    for (sql, detail) in [
        (
            "select set_config('tenantgate.signature', 'k1:00', false)",
            "set_config of the tenant signature",
        ),
        (
            "SELECT pg_catalog.set_config('TenantGate.Signature', 'k1:00', true)",
            "set_config of the tenant signature",
        ),
        (
            "SET tenantgate.signature = 'k1:00'",
            "SET of the tenant signature",
        ),
        (
            "set local \"tenantgate\".\"signature\" to 'x'",
            "SET of the tenant signature",
        ),
        (
            "RESET tenantgate.signature",
            "RESET of the tenant signature",
        ),
        (
            "ALTER ROLE app SET tenantgate.signature = 'x'",
            "ALTER ROLE ... SET of the tenant signature",
        ),
        (
            "UPDATE pg_settings SET setting = 'x' WHERE name = 'tenantgate.signature'",
            "UPDATE pg_settings of the tenant setting",
        ),
    ] {
        let f = one(sql);
        assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
        assert_eq!(f.detail, detail, "{sql:?}");
        // Never a value: an intercepted SET of the signature is no tenant switch.
        assert_eq!(f.value, None, "{sql:?}");
    }
    clean("select current_setting('tenantgate.signature', true)");
    clean("show tenantgate.signature");
}

#[test]
fn set_config_of_the_tenant_setting() {
    for (sql, value) in [
        ("select set_config('app.tenant_id', 'x', false)", Some("x")),
        (
            "SELECT pg_catalog.set_config('APP.TENANT_ID', 'y', true)",
            Some("y"),
        ),
        (
            "select \"set_config\"('app.tenant_id', 'x', false)",
            Some("x"),
        ),
        (
            "select pg_catalog . \"SET_CONFIG\" ('app.tenant_id', 'x', false)",
            Some("x"),
        ),
        (
            "select SET_CONFIG(E'app.tenant\\x5fid', 'x', false)",
            Some("x"),
        ),
        (
            "select set_config(U&'app.tenant\\005fid', 'x', false)",
            Some("x"),
        ),
        (
            "select set_config('app.'\n'tenant_id', 'x', false)",
            Some("x"),
        ),
        (
            "select set_config($$app.tenant_id$$, $v$x$v$, false)",
            Some("x"),
        ),
        (
            "select set_config('app.tenant_id'::text, 'x'::text, false)",
            Some("x"),
        ),
        (
            "select set_config('app.tenant_id', current_user, false)",
            None,
        ),
        (
            "select 1 from t where set_config('app.tenant_id', 'x', true) is not null",
            Some("x"),
        ),
        (
            "with a as (select set_config('app.tenant_id','x',false)) select 1",
            Some("x"),
        ),
    ] {
        let f = one(sql);
        assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
        assert_eq!(f.detail, "set_config of the tenant setting", "{sql:?}");
        assert_eq!(f.value.as_deref(), value, "{sql:?}");
    }
}

#[test]
fn set_config_with_a_non_constant_name_fails_closed() {
    for sql in [
        "select set_config($1, 'x', false)",
        "select set_config('app.' || 'tenant_id', 'x', false)",
        "select set_config(('app.tenant_id'), 'x', false)",
        "select set_config(lower('APP.TENANT_ID'), 'x', false)",
        "select set_config(setting_name => 'app.tenant_id', new_value => 'x', is_local => false)",
        "select set_config(name, 'x', false) from settings",
    ] {
        let f = one(sql);
        assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
        assert_eq!(
            f.detail, "set_config with a non-constant setting name",
            "{sql:?}"
        );
        assert_eq!(f.value, None);
    }
}

#[test]
fn set_config_of_other_settings_is_fine() {
    clean("select set_config('search_path', 'public', false)");
    clean("select set_config('statement_timeout', '5s', true)");
    clean("select 'set_config(''app.tenant_id'', ''x'', false)'");
    clean("select set_config from t");
}

#[test]
fn alter_role_database_system_set_of_the_tenant_setting() {
    for sql in [
        "ALTER ROLE app SET app.tenant_id = 'x'",
        "ALTER USER app IN DATABASE d SET app.tenant_id TO 'x'",
        "ALTER ROLE ALL SET \"app\".\"tenant_id\" = 'x'",
        "ALTER DATABASE d SET app.tenant_id = 'x'",
        "ALTER SYSTEM SET app.tenant_id = 'x'",
        "ALTER ROLE app RESET app.tenant_id",
        "ALTER FUNCTION f(int) SET app.tenant_id = 'x'",
        "ALTER ROUTINE f SET app.tenant_id FROM CURRENT",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.tenant_id = 'x' AS 'select 1'",
    ] {
        let f = one(sql);
        assert_eq!(f.rule, Rule::TenantTamper, "{sql:?}");
    }
    clean("ALTER ROLE app SET search_path = a, b");
    clean("ALTER ROLE app RESET ALL");
    clean("ALTER DATABASE d RENAME TO e");
}

#[test]
fn update_pg_settings() {
    let f = one("UPDATE pg_settings SET setting = 'x' WHERE name = 'app.tenant_id'");
    assert_eq!(
        (f.rule, f.detail),
        (
            Rule::TenantTamper,
            "UPDATE pg_settings of the tenant setting"
        )
    );
    let f = one("update pg_catalog.pg_settings set setting = 'off' where name = 'row_security'");
    assert_eq!(f.rule, Rule::RlsTamper);
    let f = one("UPDATE ONLY \"pg_settings\" SET setting = 'x' WHERE name = $1");
    assert_eq!(f.rule, Rule::RlsTamper);
    let f = one("with u as (update pg_settings set setting = 'admin' where name = 'role' returning 1) select 1");
    assert_eq!(f.rule, Rule::RoleTamper);
    // PostgreSQL's other spellings of the same relation: `ONLY (…)`, the current database as a
    // third part of the name.
    for sql in [
        "UPDATE ONLY (pg_settings) SET setting = '1' WHERE name = 'statement_timeout'",
        "update only ( ( pg_catalog . \"pg_settings\" ) ) set setting = 'x' where name = 'search_path'",
        "UPDATE tg_1.pg_catalog.pg_settings SET setting = '1' WHERE name = 'statement_timeout'",
        "WITH u AS (UPDATE \"tg_1\".pg_catalog.pg_settings SET setting = 'x' RETURNING 1) SELECT 1",
    ] {
        assert_eq!(one(sql).rule, Rule::RlsTamper, "{sql}");
    }
    let f = one("UPDATE d.pg_catalog.pg_settings SET setting = 'x' WHERE name = 'app.tenant_id'");
    assert_eq!(f.rule, Rule::TenantTamper);
    clean("UPDATE d.myschema.pg_settings SET x = 1");
    clean("UPDATE ONLY (settings) SET x = 1");
    clean("UPDATE settings SET value = 'app.tenant_id'");
    clean("UPDATE myschema.pg_settings SET x = 1");
    clean("select * from pg_settings where name = 'app.tenant_id'");
    clean("insert into t values (1) on conflict (id) do update set v = 2");
}

// ----- RoleTamper -----

#[test]
fn role_changes() {
    for (sql, detail) in [
        ("SET ROLE admin", "SET ROLE"),
        ("set role none", "SET ROLE"),
        ("SET SESSION ROLE admin", "SET ROLE"),
        ("SET LOCAL ROLE 'admin'", "SET ROLE"),
        ("SET \"role\" = 'admin'", "SET ROLE"),
        ("RESET ROLE", "RESET ROLE"),
        (
            "SET SESSION AUTHORIZATION admin",
            "SET SESSION AUTHORIZATION",
        ),
        (
            "SET SESSION AUTHORIZATION DEFAULT",
            "SET SESSION AUTHORIZATION",
        ),
        (
            "SET LOCAL SESSION AUTHORIZATION admin",
            "SET SESSION AUTHORIZATION",
        ),
        (
            "SET session_authorization = admin",
            "SET SESSION AUTHORIZATION",
        ),
        ("RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION"),
        (
            "select set_config('role', 'admin', false)",
            "set_config of role",
        ),
        (
            "select set_config('ROLE', 'admin', true)",
            "set_config of role",
        ),
        (
            "select set_config('session_authorization', 'admin', false)",
            "set_config of session_authorization",
        ),
        (
            "ALTER ROLE app SET role = 'admin'",
            "ALTER ROLE ... SET role",
        ),
        (
            "ALTER DATABASE d SET role TO admin",
            "ALTER DATABASE ... SET role",
        ),
        (
            "ALTER ROLE app SET SESSION AUTHORIZATION admin",
            "ALTER ROLE ... SET session_authorization",
        ),
    ] {
        let f = one(sql);
        assert_eq!((f.rule, f.detail), (Rule::RoleTamper, detail), "{sql:?}");
        assert_eq!(f.value, None);
    }
    clean("select 'set role x'");
    clean("select current_role, session_user");
    clean("SET role.x = 1");
    clean("update users set role = 'admin' where id = 1");
    clean("select role from users");
    clean("GRANT admin TO app");
}

// ----- RlsTamper -----

#[test]
fn row_security_changes() {
    for (sql, detail) in [
        ("SET row_security = off", "SET row_security"),
        ("set ROW_SECURITY to on", "SET row_security"),
        ("RESET row_security", "RESET row_security"),
        (
            "select set_config('row_security', 'off', false)",
            "set_config of row_security",
        ),
        (
            "ALTER TABLE t DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE ... DISABLE ROW LEVEL SECURITY",
        ),
        (
            "alter table if exists only s.t add column c int, disable row level security",
            "ALTER TABLE ... DISABLE ROW LEVEL SECURITY",
        ),
        (
            "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
            "ALTER TABLE ... NO FORCE ROW LEVEL SECURITY",
        ),
        (
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY, NO /* x */ FORCE ROW LEVEL SECURITY",
            "ALTER TABLE ... NO FORCE ROW LEVEL SECURITY",
        ),
        ("CREATE POLICY p ON t USING (true)", "CREATE POLICY"),
        ("ALTER POLICY p ON t USING (true)", "ALTER POLICY"),
        ("DROP POLICY p ON t", "DROP POLICY"),
        (
            "ALTER ROLE app SET row_security = off",
            "ALTER ROLE ... SET row_security",
        ),
        (
            "ALTER USER app SET row_security TO off",
            "ALTER ROLE ... SET row_security",
        ),
        (
            "ALTER DATABASE d SET row_security = off",
            "ALTER DATABASE ... SET row_security",
        ),
        (
            "ALTER SYSTEM SET row_security = off",
            "ALTER SYSTEM SET row_security",
        ),
        ("ALTER ROLE app BYPASSRLS", "ALTER ROLE ... BYPASSRLS"),
        (
            "ALTER ROLE app WITH LOGIN BYPASSRLS",
            "ALTER ROLE ... BYPASSRLS",
        ),
        ("ALTER ROLE app SUPERUSER", "ALTER ROLE ... SUPERUSER"),
        (
            "CREATE ROLE x WITH LOGIN BYPASSRLS",
            "CREATE ROLE ... BYPASSRLS",
        ),
        ("CREATE USER x SUPERUSER", "CREATE ROLE ... SUPERUSER"),
        (
            "UPDATE pg_settings SET setting = 'off'",
            "UPDATE pg_settings",
        ),
    ] {
        let f = one(sql);
        assert_eq!((f.rule, f.detail), (Rule::RlsTamper, detail), "{sql:?}");
    }
    for sql in [
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE t FORCE ROW LEVEL SECURITY",
        "ALTER TABLE t DISABLE TRIGGER ALL",
        "ALTER ROLE app NOBYPASSRLS",
        "ALTER ROLE bypassrls LOGIN",
        "CREATE ROLE x NOSUPERUSER NOBYPASSRLS",
        "select 'ALTER TABLE t DISABLE ROW LEVEL SECURITY'",
        "SHOW row_security",
        "select * from policy",
    ] {
        clean(sql);
    }
}

// ----- DoBlock and bodies -----

#[test]
fn do_blocks() {
    let f = one("DO $$ BEGIN PERFORM 1; END $$");
    assert_eq!(
        (f.rule, f.detail, f.span.clone()),
        (Rule::DoBlock, "DO block", 0..2)
    );
    assert_eq!(
        rules("do $$begin perform set_config('app.tenant_id', 'x', false); end$$"),
        [Rule::DoBlock, Rule::TenantTamper]
    );
    assert_eq!(
        rules("DO LANGUAGE plpgsql 'BEGIN SET ROLE admin; END'"),
        [Rule::DoBlock, Rule::RoleTamper]
    );
    assert_eq!(
        rules("DO $b$ BEGIN EXECUTE 'SET app.tenant_id = ''x'''; END $b$ LANGUAGE plpgsql"),
        [Rule::DoBlock, Rule::TenantTamper]
    );
    assert_eq!(
        rules("do $$ begin if true then set row_security = off; end if; end $$"),
        [Rule::DoBlock, Rule::RlsTamper]
    );
    assert_eq!(
        ins("DO $$ BEGIN PERFORM pg_catalog.SET_CONFIG('a', 'b', true); END $$").findings[1].detail,
        "DO block calls set_config"
    );
    clean("select 'DO $$ begin end $$'");
    clean("select do from t");
}

#[test]
fn function_bodies_calling_set_config() {
    for sql in [
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ select set_config('app.tenant_id', 'x', false) $$",
        "create or replace function f() returns void as 'select SET_CONFIG(''a'', ''b'', false)' language sql",
        "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN PERFORM \"set_config\"('x', 'y', true); END $$",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpython3u AS $$ plpy.execute(\"select set_config('app.tenant_id','x',false)\") $$",
    ] {
        let f = one(sql);
        assert_eq!(
            (f.rule, f.detail),
            (Rule::TenantTamper, "function body calls set_config"),
            "{sql:?}"
        );
    }
    let f =
        one("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET ROLE admin; END $$");
    assert_eq!(
        (f.rule, f.detail),
        (Rule::RoleTamper, "function body sets role")
    );
    let f = one(
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'set local app.tenant_id = ''x'''; END $$",
    );
    assert_eq!(
        (f.rule, f.detail),
        (Rule::TenantTamper, "function body sets the tenant setting")
    );
    clean(
        "CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ select current_setting('app.tenant_id')::uuid $$",
    );
    clean(
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET role = 'x'; END $$",
    );
    clean("CREATE TABLE t (body text DEFAULT 'set_config')");
}

#[test]
fn begin_atomic_bodies_are_one_statement() {
    let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; \
               SELECT CASE WHEN true THEN 1 ELSE 2 END; END; SELECT 2;";
    let i = ins(sql);
    assert_eq!(i.statements, 2);
    assert!(i.findings.is_empty());

    let sql = "create or replace procedure p() begin atomic select 1; select case when x then \
               case when y then 1 end end from t; end ; set role admin";
    let i = ins(sql);
    assert_eq!(i.statements, 2);
    assert_eq!(i.findings.len(), 1);
    assert_eq!(&sql[i.findings[0].statement.clone()], "set role admin");

    // A statement inside the body is still checked, and reported with the whole CREATE.
    let sql = "CREATE FUNCTION f() RETURNS void BEGIN ATOMIC SELECT set_config('app.tenant_id', 'x', false); END";
    let f = one(sql);
    assert_eq!(f.rule, Rule::TenantTamper);
    assert_eq!(f.statement, 0..sql.len());

    // Keywords used as labels do not close the body.
    let sql = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1 AS end, t.case FROM t; END; SELECT 3";
    assert_eq!(ins(sql).statements, 2);
    // A bare column label `end` (accepted by PostgreSQL) does not close the body either:
    // the closing END always starts a statement.
    let sql = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1 end; END; SET ROLE x";
    let i = ins(sql);
    assert_eq!((i.statements, i.flags), (2, Flags::default()));
    assert_eq!(&sql[i.findings[0].statement.clone()], "SET ROLE x");
    let sql = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC END; SELECT 2";
    assert_eq!(ins(sql).statements, 2);
    // BEGIN ATOMIC only matters in CREATE FUNCTION/PROCEDURE.
    assert_eq!(ins("select begin atomic; select 2").statements, 2);
    assert_eq!(ins("BEGIN; select 1; END;").statements, 3);
}

// ----- TenantLiteral -----

#[test]
fn literals_compared_with_the_tenant_column() {
    for (sql, want) in [
        ("select * from t where tenant_id = 'A'", vec!["A"]),
        ("select * from t x where x.tenant_id = 'A'", vec!["A"]),
        ("select * from t where s.x.tenant_id='A'", vec!["A"]),
        ("select * from t where \"tenant_id\" = 'A'", vec!["A"]),
        ("select * from t where TENANT_ID = 'A'", vec!["A"]),
        ("select * from t where 'A' = tenant_id", vec!["A"]),
        ("select * from t where 'A' = x.\"tenant_id\"", vec!["A"]),
        ("select * from t where tenant_id IN ('A', 'B')", vec!["A", "B"]),
        ("select * from t where tenant_id not in ('A'::uuid, 'B'::uuid)", vec!["A", "B"]),
        ("select * from t where tenant_id = 'A'::uuid", vec!["A"]),
        ("select * from t where tenant_id = CAST('A' AS uuid)", vec!["A"]),
        ("select * from t where tenant_id = uuid 'A'", vec!["A"]),
        ("select * from t where tenant_id <> 'A'", vec!["A"]),
        ("select * from t where tenant_id != 'A'", vec!["A"]),
        ("select * from t where tenant_id = ('A')", vec!["A"]),
        ("select * from t where 'A'::uuid = tenant_id", vec!["A"]),
        ("select * from t where CAST('A' AS uuid) = tenant_id", vec!["A"]),
        ("select * from t where tenant_id = E'\\x41'", vec!["A"]),
        ("select * from t where tenant_id = $$A$$", vec!["A"]),
        ("select * from t where tenant_id = 'A'\n'B'", vec!["AB"]),
        ("select * from t where tenant_id is not distinct from 'A'", vec!["A"]),
        ("select * from t where tenant_id = ANY (ARRAY['A', 'B'])", vec!["A", "B"]),
        ("select * from t where tenant_id = any('{A,\"B\",NULL}'::uuid[])", vec!["A", "B"]),
        (
            "select * from a join b on b.tenant_id = 'A' where a.tenant_id in ('B') and 'C' <> tenant_id",
            vec!["A", "B", "C"],
        ),
        ("update t set tenant_id = 'A' where id = 1", vec!["A"]),
    ] {
        assert_eq!(literals(sql), want, "{sql:?}");
    }
    for sql in [
        "select * from t where tenant_id = $1",
        "select * from t where tenant_id = current_setting('app.tenant_id')::uuid",
        "select * from t where other_id = 'A'",
        "select * from t where tenant_idx = 'A'",
        "select * from t where 'A' = tenant_id(x)",
        "select tenant_id, 'A' from t",
        "select * from t where tenant_id = x.y and name = 'A'",
        "insert into t (tenant_id, name) values ('A', 'b')",
        "select 'tenant_id = ''A'''",
    ] {
        assert!(literals(sql).is_empty(), "{sql:?}");
    }
}

#[test]
fn literal_finding_ranges_point_at_the_literal() {
    let sql = "select 1; select * from t where tenant_id = 'A'";
    let f = one(sql);
    assert_eq!(
        &sql[f.statement.clone()],
        "select * from t where tenant_id = 'A'"
    );
    assert_eq!(&sql[f.span.clone()], "'A'");
}

// ----- The lexer -----

#[test]
fn backslashes_follow_standard_conforming_strings() {
    let e = "select E'\\';set role x;'";
    clean(e);
    assert_eq!(ins(e).statements, 1);
    let plain = "select '\\';set role x;'";
    assert_eq!(rules(plain), [Rule::RoleTamper]);
    let off = inspect(plain, &OFF);
    check_invariants(plain, &off);
    assert!(off.findings.is_empty());
    assert_eq!(off.statements, 1);
    // The other way round: with standard strings a backslash hides nothing.
    let sql = "select 'a\\'; set role x; --'";
    assert_eq!(rules(sql), [Rule::RoleTamper]);
    assert!(inspect(sql, &OFF).findings.is_empty());
    // N'' follows the setting too.
    assert_eq!(rules("select N'\\';set role x;'"), [Rule::RoleTamper]);
    assert!(inspect("select N'\\';set role x;'", &OFF)
        .findings
        .is_empty());
    // A continuation keeps the escape rules of the literal it continues.
    clean("select E'a'\n'\\';set role x;--'");
    assert_eq!(rules("select 'a'\n'\\';set role x;--'"), [Rule::RoleTamper]);
}

#[test]
fn comments_nest_and_hide_semicolons() {
    for sql in [
        "/* a /* b */ ; set role x; */ select 1",
        "/*/ ; set role x; */ select 1",
        "select 1 /* ; */ /* /* ; */ ; set role x */",
        "select 1 -- ; set role x",
        "select 1 --\r; set role x",
        "select 1 +/* ; set role x */ 2",
        "select 1 +-- ; set role x\n 2",
    ] {
        let i = ins(sql);
        if sql.contains('\r') {
            assert_eq!(i.statements, 2, "{sql:?}");
            assert_eq!(rules(sql), [Rule::RoleTamper]);
        } else {
            assert!(i.findings.is_empty(), "{sql:?}: {:?}", i.findings);
            assert_eq!(i.statements, 1, "{sql:?}");
        }
    }
    assert_eq!(rules("select 1 */ ; set role x"), [Rule::RoleTamper]);
    assert_eq!(rules("select 1 /* */ ; set role x"), [Rule::RoleTamper]);
    assert_eq!(ins("/* unterminated ; set role x").statements, 0);
    assert_eq!(ins("/* only */ -- comments\n").statements, 0);
}

#[test]
fn dollar_quotes_and_parameters() {
    clean("select $a$ $$ ; set role x; $b$ $a$");
    clean("select $é$ ; set role x; $é$");
    clean("select $_1$ ; set role x; $_1$");
    clean("select $abc$ $ab$ ; set role x ; $abc$");
    clean("select $$ unterminated ; set role x");
    assert_eq!(rules("select $1;set role x"), [Rule::RoleTamper]);
    assert_eq!(
        rules("select $1$$; set role x; $$"),
        [Rule::RoleTamper].repeat(0)
    );
    // `$` inside an identifier does not open a quote.
    assert_eq!(
        rules("select a$$ from t; set role x; select $$"),
        [Rule::RoleTamper]
    );
    assert_eq!(
        rules("select a$b$ from t; set role x; select 1"),
        [Rule::RoleTamper]
    );
    // PostgreSQL 13 and 14 read `1_$a$` as `1` and the identifier `_$a$` (15 and later reject
    // it): no quote opens there. `1_000` is one number (16).
    assert_eq!(
        rules("select 1_$a$; set role x; select $a$x$a$"),
        [Rule::RoleTamper]
    );
    assert_eq!(
        rules("select $1_$a$; set role x; select $a$x$a$"),
        [Rule::RoleTamper]
    );
    assert_eq!(
        rules("select 1.5_$a$; set role x; select $a$x$a$"),
        [Rule::RoleTamper]
    );
    clean("select 1_000$a$; set role x; $a$");
    // A tag cannot start with a digit: `$1x$` is a parameter.
    assert_eq!(rules("select $1x$; set role x; $1x$"), [Rule::RoleTamper]);
    assert_eq!(ins("select $q$a$q$;select 2").statements, 2);
}

#[test]
fn quoted_identifiers_and_prefixed_strings() {
    clean("select \"a;\"\" ; set role x\" from t");
    clean("select U&\"a;\"\" ; set role x\" from t");
    clean("select U&'\\0041 ; set role x' UESCAPE '!'");
    clean("select X'1F ; set role x'");
    // A bit string ends at the first quote: '' starts a new literal.
    clean("select B'01''; set role x; --'");
    assert_eq!(rules("select e'a' ; set role x"), [Rule::RoleTamper]);
    // An identifier ending in e/b/x/n/u is not a prefix.
    assert_eq!(rules("select xe'\\'; set role x; --'"), [Rule::RoleTamper]);
    assert_eq!(rules("select the'\\'; set role x; --'"), [Rule::RoleTamper]);
    assert!(inspect("select the'\\'; set role x; --'", &OFF)
        .findings
        .is_empty());
    // Adjacent literals without a newline are separate tokens.
    assert_eq!(literals("select 1 from t where tenant_id = 'a' 'b'"), ["a"]);
}

#[test]
fn multibyte_text_everywhere() {
    let sql = "select 'é'; SET ROLE «x»; select \"ü;\" from ñ";
    let i = ins(sql);
    assert_eq!(i.statements, 3);
    let f = &i.findings[0];
    assert_eq!(&sql[f.statement.clone()], "SET ROLE «x»");
    // `é$$` is an identifier, not a dollar quote.
    assert_eq!(rules("select é$$ ; set role x"), [Rule::RoleTamper]);
    assert_eq!(ins("select 😀; select 2").statements, 2);
}

#[test]
fn statement_counting() {
    for (sql, n) in [
        ("", 0),
        (";", 0),
        (" ;; ; ", 0),
        ("-- c\n", 0),
        ("select 1", 1),
        ("select 1;", 1),
        ("select 1;;select 2;", 2),
        ("select 1; select 2; select 3", 3),
        ("select ';'; select \";\"", 2),
        ("select 'abc", 1),
        ("select \"abc", 1),
        ("BEGIN; UPDATE t SET x = 1; COMMIT;", 3),
    ] {
        assert_eq!(ins(sql).statements, n, "{sql:?}");
    }
}

#[test]
fn findings_report_their_own_statement() {
    let sql = "select 1;\n  /* c */ SET ROLE admin /* d */ ;select 2; select set_config('row_security','off',false)";
    let i = ins(sql);
    assert_eq!(i.statements, 4);
    assert_eq!(i.findings.len(), 2);
    assert_eq!(&sql[i.findings[0].statement.clone()], "SET ROLE admin");
    assert_eq!(&sql[i.findings[0].span.clone()], "SET ROLE");
    assert_eq!(
        &sql[i.findings[1].statement.clone()],
        "select set_config('row_security','off',false)"
    );
    assert_eq!(i.findings[1].rule, Rule::RlsTamper);
}

#[test]
fn dynamic_sql_is_inspected() {
    let f = one(
        "select query_to_xml('select set_config(''app.tenant_id'', ''x'', false)', true, true, '')",
    );
    assert_eq!(
        (f.rule, f.value.as_deref()),
        (Rule::TenantTamper, Some("x"))
    );
    assert_eq!(
        rules("select ts_stat('set role admin')"),
        [Rule::RoleTamper]
    );
    assert_eq!(
        one("select query_to_xml($1, true, true, '')").detail,
        "dynamic SQL with a non-constant query"
    );
    clean("select query_to_xml('select * from t', true, true, '')");
    let deep = "select query_to_xml('select query_to_xml(''select query_to_xml(''''select query_to_xml(''''''''select 1'''''''', true, true, '''''''')'''', true, true, '''')'', true, true, '''')', true, true, '')";
    assert_eq!(one(deep).detail, "dynamic SQL nested too deeply");
}

// ----- Flags -----

#[test]
fn flags_of_statement_kinds() {
    // Statements the session does not act on leave no flag.
    for sql in [
        "VACUUM",
        "CREATE DATABASE d",
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "REINDEX DATABASE d",
        "CLUSTER",
        "COMMIT PREPARED 'x'",
        "BEGIN",
        "begin isolation level serializable",
        "START TRANSACTION",
        "COMMIT",
        "ROLLBACK TO SAVEPOINT a",
        "PREPARE TRANSACTION 'x'",
        "DEALLOCATE p",
        "DEALLOCATE PREPARE ALL",
        "DISCARD PLANS",
        "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
    ] {
        assert_eq!(flags(sql), Flags::default(), "{sql:?}");
    }
    assert_eq!(flags("PREPARE p AS SELECT 1"), Flags::SQL_PREPARE);
    assert_eq!(flags("PREPARE p (int) AS SELECT $1"), Flags::SQL_PREPARE);
    assert_eq!(flags("EXECUTE p (1)"), Flags::SQL_EXECUTE);
    assert_eq!(flags("EXPLAIN (ANALYZE) EXECUTE p"), Flags::SQL_EXECUTE);
    assert_eq!(flags("RESET ALL"), Flags::RESETS_SETTINGS);
    assert_eq!(flags("DISCARD ALL"), Flags::RESETS_SETTINGS);
    assert_eq!(flags("DISCARD TEMP"), Flags::default());
    assert_eq!(flags("LISTEN c"), Flags::LISTEN);
    assert_eq!(flags("UNLISTEN *"), Flags::default());
    for sql in [
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "declare c binary no scroll cursor with hold for select 1",
    ] {
        assert_eq!(flags(sql), Flags::HOLD_CURSOR, "{sql}");
    }
    assert_eq!(
        flags("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"),
        Flags::default()
    );
    assert_eq!(
        flags("DECLARE c CURSOR FOR SELECT 'with hold'"),
        Flags::default()
    );
    for sql in [
        "CREATE TEMP TABLE t (x int)",
        "create global temporary table t (x int)",
        "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        "create table pg_temp.t (x int)",
        "create function \"pg_temp\".f() returns int language sql as 'select 1'",
    ] {
        assert!(flags(sql).contains(Flags::TEMP_OBJECT), "{sql}");
    }
    assert!(!flags("CREATE TABLE temps (x int)").contains(Flags::TEMP_OBJECT));
    assert!(!flags("create temp table c (x int) on commit drop").contains(Flags::TEMP_OBJECT));
    assert!(flags("create temp table c (x int) on commit delete rows").contains(Flags::TEMP_OBJECT));
    for sql in [
        "SELECT pg_advisory_lock(1)",
        "select pg_catalog.pg_try_advisory_lock_shared(1, 2)",
    ] {
        assert_eq!(flags(sql), Flags::SESSION_LOCK, "{sql}");
    }
    assert_eq!(flags("SELECT pg_advisory_xact_lock(1)"), Flags::default());
    // SQL run by a function in this session leaves its session state here.
    assert_eq!(
        flags("select query_to_xml('select pg_advisory_lock(1)', true, true, '')"),
        Flags::SESSION_LOCK
    );
    assert_eq!(
        ins("select query_to_xml('select set_config(''statement_timeout'', ''1'', false)', true, true, '')")
            .session_settings,
        ["statement_timeout"]
    );
    assert_eq!(
        ins("select ts_rewrite('a'::tsquery, 'select set_config(''work_mem'', ''8MB'', false)::tsquery, ''b''::tsquery')")
            .session_settings,
        ["work_mem"]
    );
    // Temporary tables created under a SELECT tag.
    for sql in [
        "select name into temp loot from customers",
        "SELECT * INTO LOCAL TEMPORARY TABLE loot FROM t",
        "with x as (select 1) select * into temporary loot from x",
        "select 1 into pg_temp.loot",
        "select 1 into table \"pg_temp\".loot",
        "select 1 into unlogged pg_temp_3.loot",
        "select 1 /* c */ into temp loot",
        "CREATE TABLE pg_temp_3.loot AS SELECT 1",
        "create table pg_temp_12.loot (x int)",
    ] {
        assert_eq!(flags(sql), Flags::TEMP_OBJECT, "{sql}");
    }
    for sql in [
        "insert into temp values (1)",
        "INSERT\n  INTO temp (a) SELECT 1",
        "merge into temp t using s on t.a = s.a when matched then do nothing",
        "insert into pg_temp.t values (1)",
        "select 1 into loot",
        "select 1 into pg_temporary.loot",
        "create table pg_tempx.loot (x int)",
        "select \"into\" from t",
    ] {
        assert_eq!(flags(sql), Flags::default(), "{sql}");
    }
    assert_eq!(flags("SET TimeZone = 'UTC'"), Flags::default());
    assert_eq!(flags("SET TIME ZONE 'UTC'"), Flags::default());
    assert_eq!(flags("SET NAMES 'UTF8'"), Flags::default());
    let session = |sql: &str| ins(sql).session_settings;
    assert_eq!(
        session("select set_config('search_path', 'x', false)"),
        ["search_path"]
    );
    assert_eq!(
        session("select set_config('search_path', lower('X'), $1)"),
        ["search_path"]
    );
    assert!(session("select set_config('search_path', concat('a', 'b'), true)").is_empty());
    assert_eq!(
        flags("RESET ALL; SELECT 1"),
        Flags::RESETS_SETTINGS | Flags::RESET_NOT_LAST
    );
    assert_eq!(flags("SELECT 1; RESET ALL"), Flags::RESETS_SETTINGS);
    assert_eq!(
        ins("SET search_path = a; set session characteristics as transaction read only; select set_config('Work_Mem', '1MB', false); reset \"App\".x").session_settings,
        vec![
            "search_path",
            "default_transaction_isolation",
            "default_transaction_read_only",
            "default_transaction_deferrable",
            "Work_Mem",
            "App.x"
        ]
    );
    assert_eq!(flags("NOTIFY c"), Flags::default());
    assert_eq!(session("SET search_path = x"), ["search_path"]);
    assert_eq!(session("RESET search_path"), ["search_path"]);
    assert!(session("SET LOCAL search_path = x").is_empty());
    // The grammar's own spellings, by the names PostgreSQL gives them.
    assert_eq!(session("SET SCHEMA 'x'"), ["search_path"]);
    assert_eq!(session("set session schema E'x'"), ["search_path"]);
    assert_eq!(session("SET XML OPTION DOCUMENT"), ["xmloption"]);
    assert!(session("SET LOCAL SCHEMA 'x'").is_empty());
    assert!(session("SET TRANSACTION READ ONLY").is_empty());
    assert!(session("RESET ALL").is_empty());
    assert_eq!(flags("select 1"), Flags::default());
    assert_eq!(flags("select 1; begin; listen x"), Flags::LISTEN);
    // Statements inside a BEGIN ATOMIC body do not run now.
    assert_eq!(
        flags("CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END"),
        Flags::default()
    );
}

#[test]
fn names_in_the_proxys_namespace() {
    for sql in [
        "EXECUTE __tg_1",
        "execute \"__tg_abc_set\"('a', 'b')",
        "DEALLOCATE __TG_x",
        "deallocate prepare __tg_1",
        "PREPARE __tg_9 AS SELECT 1",
        "EXPLAIN (costs off) EXECUTE __tg_2",
    ] {
        assert_eq!(rules(sql), vec![Rule::ReservedName], "{sql}");
    }
    for sql in [
        "EXECUTE p",
        "DEALLOCATE ALL",
        "EXECUTE \"__TG_1\"",
        "PREPARE TRANSACTION '__tg'",
    ] {
        assert!(rules(sql).is_empty(), "{sql}");
    }
}

#[test]
fn secrets() {
    let secret = Flags::CONTAINS_SECRET;
    for sql in [
        "CREATE ROLE x LOGIN PASSWORD 'p'",
        "CREATE USER x WITH ENCRYPTED PASSWORD 'p'",
        "ALTER USER x PASSWORD 'SCRAM-SHA-256$4096:abc'",
        "alter role x with password 'p' valid until 'infinity'",
        "CREATE GROUP g PASSWORD 'p'",
        "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'p')",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
        "ALTER SUBSCRIPTION s CONNECTION 'host=x'",
        "select dblink_connect('host=x password=p')",
    ] {
        assert!(flags(sql).contains(secret), "{sql:?}");
    }
    assert!(!flags("select 1").contains(secret));
    assert!(!flags("ALTER ROLE x VALID UNTIL 'infinity'").contains(secret));
}

#[test]
fn flags_debug_and_ops() {
    let f = Flags::SQL_PREPARE | Flags::LISTEN;
    assert_eq!(format!("{f:?}"), "{SQL_PREPARE, LISTEN}");
    assert!(f.contains(Flags::LISTEN) && !f.contains(Flags::TEMP_OBJECT));
    assert_eq!(f & Flags::LISTEN, Flags::LISTEN);
    let mut g = Flags::default();
    g |= Flags::SQL_PREPARE;
    assert_eq!(g, Flags::SQL_PREPARE);
}

#[test]
fn empty_options_do_not_match_everything() {
    let o = InspectOptions {
        setting: "",
        tenant_column: "",
        standard_conforming_strings: true,
    };
    assert!(inspect("select * from t where \"\" = 'x'; set x.y = 1", &o)
        .findings
        .is_empty());
}

#[test]
fn texts_too_large_to_inspect_fail_closed() {
    let i = too_large(5);
    assert_eq!(i.statements, 1);
    assert_eq!(i.findings.len(), 1);
    assert_eq!(i.findings[0].rule, Rule::TenantTamper);
    assert_eq!(i.findings[0].statement, 0..5);
    assert!(i.flags.contains(Flags::CONTAINS_SECRET));
}

#[test]
fn identifiers_are_truncated_like_postgres() {
    let long = format!("app.{}", "t".repeat(63));
    let o = InspectOptions {
        setting: &long,
        ..OPTS
    };
    let sql = format!("SET app.{} = 'x'", "t".repeat(70));
    let i = inspect(&sql, &o);
    assert_eq!(i.findings.len(), 1, "{:?}", i.findings);
    clean(&format!("SET app.tenant_id{} = 'x'", "x".repeat(60)));
}

// ----- Robustness -----

const TRICKY: &[&str] = &[
    "SET app.tenant_id = 'x'",
    "select E'\\';set role x;'",
    "select '\\';set role x;'",
    "/* a /* b */ ; set role x; */ select 1",
    "select $a$ $$ ; set role x; $b$ $a$",
    "select U&'!0041' UESCAPE '!'; SET app.U&\"tenant\\005fid\" = 'x'",
    "select U&'a' UESCAPE U&'b' UESCAPE U&'c' UESCAPE",
    "select B'01''; set role x; --'",
    "select 'a'\n-- c\n'b' ; set role x",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SET ROLE x",
    "DO $$ BEGIN EXECUTE 'SET ROLE ''x'''; END $$",
    "select * from t where tenant_id in ('A', 'B'::uuid, CAST('C' AS uuid), uuid 'D') and 'E' = x.tenant_id",
    "select * from t where tenant_id = any('{\"a\\\"b\", c , NULL, {d}}')",
    "select query_to_xml('select set_config(''app.tenant_id'', ''x'', false)', true, true, '')",
    "UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'app.tenant_id'",
    "ALTER ROLE app IN DATABASE d SET app.tenant_id = 'x'",
    "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
    "select 'é'; SET ROLE «x»; select \"ü;\" from ñ $é$",
    "select E'\\u00e9\\U0001F600\\uD83D\\uDE00\\x41\\101'",
    "select U&'\\+01F600 \\D83D\\DE00'",
    "SET app.tenant_id = -",
    "set",
    "reset session",
    "set session",
    "alter role",
    "create or replace",
    "select set_config(",
    "select query_to_xml(",
    "select * from t where tenant_id in (",
    "select * from t where 'a' = (",
    "\"",
    "U&\"",
    "E'\\",
    "$a",
    "$$",
    "$a$",
    "1e'x'",
    ".5e+",
    "a--b/*c",
    "*/*/",
];

#[test]
fn never_panics_on_prefixes() {
    for sql in TRICKY {
        for (i, _) in sql.char_indices() {
            let p = &sql[..i];
            check_invariants(p, &inspect(p, &OPTS));
            check_invariants(p, &inspect(p, &OFF));
        }
    }
}

#[test]
fn never_panics_on_mutations() {
    // xorshift64*: deterministic, std-only.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let alphabet: &[u8] = b"'\"$;/*-\\eEuUbBxXnN&()[],.:=<>!\n\r\t 0123456789aAzZ_";
    for round in 0..4000 {
        let base = TRICKY[(rnd() % TRICKY.len() as u64) as usize];
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..1 + rnd() % 6 {
            let at = if bytes.is_empty() {
                0
            } else {
                (rnd() % bytes.len() as u64) as usize
            };
            match rnd() % 4 {
                0 => bytes.insert(at, alphabet[(rnd() % alphabet.len() as u64) as usize]),
                1 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                2 if !bytes.is_empty() => bytes[at] = (rnd() & 0xff) as u8,
                _ => {
                    let other = TRICKY[(rnd() % TRICKY.len() as u64) as usize].as_bytes();
                    let cut = (rnd() % (other.len() as u64 + 1)) as usize;
                    bytes.splice(at..at, other[..cut].iter().copied());
                }
            }
        }
        let sql = String::from_utf8_lossy(&bytes);
        let o = if round % 2 == 0 { &OPTS } else { &OFF };
        check_invariants(&sql, &inspect(&sql, o));
    }
}

#[test]
fn linear_time_on_adversarial_input() {
    let n = 20_000;
    let inputs = [
        "'a' = tenant_id or ".repeat(n),
        "tenant_id in ('a', ".repeat(n),
        "update pg_settings set x = 'app.tenant_id' ".repeat(n),
        "select set_config(".repeat(n),
        "$a$ $aa$ $a".repeat(n),
        format!("$x$ {}", "$".repeat(n * 10)),
        format!(
            "$aaaaaaaaaaaaaaaaaaaaaaaa$ {}",
            "$aaaaaaaaaaaaaaaaaaaaaaa ".repeat(n)
        ),
        "/*".repeat(n),
        "(".repeat(n * 10),
        "U&'a' UESCAPE ".repeat(n),
        format!("create function f() begin atomic {}", "case ".repeat(n)),
        format!("do $$ {} $$", "execute 'set x'; ".repeat(n)),
        "query_to_xml('query_to_xml(''x'')') ".repeat(n),
        "alter role x set a.b = 1, ".repeat(n),
        "SET a.".repeat(n),
        "'a'\n".repeat(n),
        "E'\\\\".repeat(n),
    ];
    let start = std::time::Instant::now();
    for sql in &inputs {
        check_invariants(sql, &inspect(sql, &OPTS));
        check_invariants(sql, &inspect(sql, &OFF));
    }
    // Debug builds: a quadratic scan over these inputs would take minutes.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

mod alloc_count {
    //! Counts this thread's allocations, to check the no-allocation promise.
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCS: Cell<usize> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: forwards every call unchanged to the system allocator.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn count() -> usize {
        ALLOCS.with(|c| c.get())
    }
}

#[test]
fn ordinary_sql_does_not_allocate() {
    for sql in [
        "SELECT * FROM customers WHERE id = $1",
        "INSERT INTO orders (customer_id, total) VALUES ($1, $2) RETURNING id",
        "SELECT \"public\".\"users\".\"id\", \"users\".\"tenant_id\" FROM \"public\".\"users\" WHERE \"users\".\"tenant_id\" = $1",
        "with x as (select * from t where tenant_id = current_setting('app.tenant_id')::uuid) select * from x; select 2",
        "SET LOCAL search_path = public; RESET ALL; DISCARD ALL",
        "BEGIN; UPDATE t SET v = v + 1 WHERE id = $1; COMMIT",
        "select E'a\\nb', U&'\\0041', $t$x$t$, B'01' /* c */ -- d",
    ] {
        let before = alloc_count::count();
        let i = inspect(sql, &OPTS);
        let after = alloc_count::count();
        assert!(i.findings.is_empty(), "{sql:?}");
        assert_eq!(after - before, 0, "{sql:?} allocated");
    }
}

#[test]
fn every_word_rule_passes_the_word_filter() {
    for (w, rule) in WORD_RULES {
        let first = w.first().map_or(0, |c| c | 0x20);
        assert!(special_word(first, w.len()), "{w:?}");
        assert_eq!(word_rule(&w.to_ascii_uppercase()), Some(rule));
    }
}
