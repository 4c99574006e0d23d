//! The catalog-derived rules, every spelling.

use super::*;

const OPTS: InspectOptions<'static> = InspectOptions {
    setting: "app.tenant_id",
    tenant_column: "tenant_id",
    standard_conforming_strings: true,
};

fn found(sql: &str) -> Vec<(Rule, Option<String>)> {
    inspect(sql, &OPTS)
        .findings
        .into_iter()
        .map(|f| (f.rule, f.value))
        .collect()
}

fn has(sql: &str, rule: Rule) -> bool {
    found(sql).iter().any(|(r, _)| *r == rule)
}

#[test]
fn unsafe_client_encodings_in_every_spelling() {
    for sql in [
        "SET client_encoding = 'SJIS'",
        "set client_encoding to sjis",
        "SET SESSION client_encoding TO 'Shift_JIS'",
        "SET LOCAL client_encoding = \"BIG5\"",
        "set \"client_encoding\" = 'gbk'",
        "SET CLIENT_ENCODING = 'win932'",
        "set names 'UHC'",
        "SET NAMES johab",
        "select 1; SET client_encoding = E'GB18030'",
        "select set_config('client_encoding', 'SJIS', false)",
        "select pg_catalog.set_config('CLIENT_ENCODING', 'windows-936', true)",
        "ALTER ROLE app SET client_encoding = 'SJIS'",
        "ALTER DATABASE app SET client_encoding TO 'BIG5'",
        "create function f() returns int language sql set client_encoding = 'sjis' as 'select 1'",
        "select query_to_xml('set client_encoding = ''sjis''', true, true, '')",
    ] {
        assert!(has(sql, Rule::UnsafeEncoding), "{sql}");
    }
    assert_eq!(
        found("select set_config('client_encoding', current_setting('x'), false)"),
        vec![(Rule::UnsafeEncoding, None)],
        "a non-constant value fails closed"
    );
    for sql in [
        "SET client_encoding = 'UTF8'",
        "SET NAMES 'utf8'",
        "set client_encoding to default",
        "reset client_encoding",
        "show client_encoding",
        "select set_config('client_encoding', 'EUC_JP', false)",
        "select 'SJIS' as names",
        "update t set names = 'sjis'",
    ] {
        assert!(!has(sql, Rule::UnsafeEncoding), "{sql}");
    }
}

#[test]
fn sql_running_functions_are_inspected() {
    let tamper = "select set_config(''app.tenant_id'', ''x'', true)";
    for sql in [
        format!("select ts_rewrite('a'::tsquery, '{tamper}')"),
        format!("select pg_catalog.ts_rewrite(to_tsquery('a'), '{tamper}'::text)"),
        format!("select \"ts_rewrite\"('a', '{tamper}')"),
        format!("select TS_REWRITE('a', '{tamper}')"),
        format!("select * from crosstab('{tamper}')"),
        format!("select * from crosstab('select 1', '{tamper}')"),
        format!("select * from crosstab3('{tamper}')"),
    ] {
        assert!(has(&sql, Rule::TenantTamper), "{sql}");
    }
    for sql in [
        "select ts_rewrite('a'::tsquery, q)",
        "select ts_rewrite('a'::tsquery, 'select ' || 'x')",
        "select ts_rewrite('a', $1)",
        "select * from connectby('t', 'id', 'parent', '1', 0)",
        "select * from crosstab(format('select %s', 1))",
    ] {
        assert!(has(sql, Rule::TenantTamper), "fails closed: {sql}");
    }
    for sql in [
        "select ts_rewrite('a'::tsquery, 'b'::tsquery, 'c'::tsquery)",
        "select ts_rewrite('a'::tsquery, 'select q, s from aliases')",
        "select * from crosstab('select 1', 3)",
    ] {
        assert!(found(sql).is_empty(), "{sql}: {:?}", found(sql));
    }
    let other = "select ts_rewrite('a'::tsquery, 'select t, s from pg_stat_activity')";
    assert!(has(other, Rule::OtherSessions));
}

#[test]
fn catalog_objects_in_every_spelling() {
    let os = |n: &str| (Rule::OtherSessions, Some(n.to_owned()));
    for (sql, want) in [
        ("select * from pg_stat_activity", os("pg_stat_activity")),
        (
            "SELECT query FROM PG_CATALOG.PG_STAT_ACTIVITY",
            os("pg_stat_activity"),
        ),
        ("select * from \"pg_stat_activity\"", os("pg_stat_activity")),
        (
            "select * from pg_catalog.\"pg_stat_activity\"",
            os("pg_stat_activity"),
        ),
        (
            "select * from U&\"pg_stat_activit\\0079\"",
            os("pg_stat_activity"),
        ),
        ("table pg_stat_activity", os("pg_stat_activity")),
        (
            "select (pg_stat_get_activity(null)).query",
            os("pg_stat_get_activity"),
        ),
        (
            "select pg_stat_get_backend_activity(1)",
            os("pg_stat_get_backend_activity"),
        ),
        (
            "select * from pg_stat_progress_vacuum",
            os("pg_stat_progress_vacuum"),
        ),
        ("select * from pg_stat_ssl", os("pg_stat_ssl")),
        ("select * from pg_locks", os("pg_locks")),
        ("select pg_blocking_pids(1)", os("pg_blocking_pids")),
        ("select pg_cancel_backend(123)", os("pg_cancel_backend")),
        (
            "select pg_catalog.pg_terminate_backend(123)",
            os("pg_terminate_backend"),
        ),
        (
            "select * from pg_prepared_statements",
            os("pg_prepared_statements"),
        ),
        ("select * from pg_cursors", os("pg_cursors")),
        ("select * from pg_prepared_xacts", os("pg_prepared_xacts")),
        (
            "select 'pg_stat_activity'::regclass",
            os("pg_stat_activity"),
        ),
        ("select to_regclass('pg_catalog.pg_locks')", os("pg_locks")),
        (
            "select 'pg_cancel_backend(int)'::regprocedure",
            os("pg_cancel_backend"),
        ),
        (
            "select count(*) from pg_stat_statements",
            os("pg_stat_statements"),
        ),
    ] {
        let f = found(sql);
        assert!(f.contains(&want), "{sql}: {f:?}");
    }
    for sql in [
        "select lo_get(16384)",
        "select loread(lo_open(16384, 262144), 100)",
        "SELECT LOWRITE(0, 'x')",
        "select * from pg_largeobject_metadata",
        "select data from pg_catalog.pg_largeobject",
        "select lo_import('/etc/passwd')",
    ] {
        assert!(has(sql, Rule::LargeObject), "{sql}");
    }
    for sql in [
        "select n_tup_ins from pg_stat_user_tables",
        "select * from pg_statio_user_tables",
        "select pg_stat_get_tuples_inserted('t'::regclass)",
        "select pg_relation_size('customers')",
        "select pg_total_relation_size('customers')",
        "select reltuples from pg_class where relname = 'customers'",
        "select c.relpages from pg_class c",
        "select * from pgstattuple('customers')",
    ] {
        assert!(has(sql, Rule::Statistics), "{sql}");
    }
    for sql in [
        "select * from customers",
        "select lower(name) from customers where location = 'x' for update",
        "select relname from pg_class",
        "select * from pg_stats where tablename = 'customers'",
        "select pg_backend_pid()",
        "select 'hello' as greeting, 'release' as r",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2",
    ] {
        assert!(found(sql).is_empty(), "{sql}: {:?}", found(sql));
    }
}

#[test]
fn mentions_matches_contains_ci() {
    let hints: [&[u8]; 3] = [b"pg_", b"loread", b"analy"];
    for text in [
        "",
        "p",
        "pg",
        "PG_",
        "xx Pg_yy",
        "select LOREAD(1)",
        "explain Analyse",
        "pgx lorea",
        "'pg_locks'",
        "a.pg_x",
        "\"pg_x\"",
    ] {
        let want = hints.iter().any(|h| contains_ci(text.as_bytes(), h));
        assert_eq!(mentions(text.as_bytes(), &hints), want, "{text:?}");
    }
    for text in ["xpg_", "p\u{e9}g_", "\u{ff}pg_", "_pg_", "$pg_", "9pg_"] {
        assert!(
            !mentions(text.as_bytes(), &hints),
            "not a word start: {text:?}"
        );
    }
}

#[test]
fn function_and_do_bodies_are_searched() {
    for (sql, rule) in [
        (
            "create function f() returns setof text language sql as $$ select query from pg_stat_activity $$",
            Rule::OtherSessions,
        ),
        (
            "create function f() returns void language plpgsql as $$ begin perform pg_cancel_backend(1); end $$",
            Rule::OtherSessions,
        ),
        (
            "do $$ begin execute 'explain analyze select 1'; end $$",
            Rule::Statistics,
        ),
        (
            "create procedure p() language sql as 'select lo_get(1)'",
            Rule::LargeObject,
        ),
        (
            "do $$ begin set client_encoding = 'sjis'; end $$",
            Rule::UnsafeEncoding,
        ),
    ] {
        assert!(has(sql, rule), "{sql}: {:?}", found(sql));
    }
    let sql = "create function f() returns tsquery language sql as $$ select ts_rewrite('a'::tsquery, 'select set_config(''app.tenant_id'', ''x'', true)') $$";
    assert!(has(sql, Rule::TenantTamper), "{sql}");
    let sql = "create function f(a int) returns int language sql as $$ select a + 1 $$";
    assert!(found(sql).is_empty());
}

#[test]
fn explain_analyze_in_every_spelling() {
    for sql in [
        "EXPLAIN ANALYZE select * from t",
        "explain analyse select 1",
        "EXPLAIN VERBOSE ANALYZE select 1",
        "EXPLAIN ANALYZE VERBOSE select 1",
        "explain (analyze) select 1",
        "explain (ANALYZE true) select 1",
        "explain (analyse on) select 1",
        "explain (analyze 1) select 1",
        "explain (analyze 'on') select 1",
        "explain (costs off, analyze) select 1",
        "explain (format json, analyze, buffers) select 1",
        "explain (\"analyze\") select 1",
        "explain (analyze false, analyze true) select 1",
        "select 1; explain analyze select 2",
        "select query_to_xml('explain analyze select 1', true, true, '')",
    ] {
        assert_eq!(found(sql), vec![(Rule::Statistics, None)], "{sql}");
    }
    for sql in [
        "explain select 1",
        "explain verbose select 1",
        "explain (analyze false) select 1",
        "explain (analyze off, costs on) select 1",
        "explain (analyze 0) select 1",
        "explain (analyze 'false') select 1",
        "explain (costs off) select analyze from t",
        "analyze customers",
    ] {
        assert!(found(sql).is_empty(), "{sql}: {:?}", found(sql));
    }
}
