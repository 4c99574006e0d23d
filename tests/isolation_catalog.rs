//! Tenant isolation through the catalogs and the lexer, against a real PostgreSQL: what one
//! tenant can learn about another through the shared upstream role (other sessions, large
//! objects, statistics, EXPLAIN ANALYZE), SQL run by built-in functions, a client encoding that
//! desynchronises the inspector, and other spellings of a tenant id.
//!
//! Each test is an attack a hostile app client would send. Without the guard it names, the
//! attack returns the other tenant's data (or kills its backend): the app role is the same
//! for every tenant, so PostgreSQL shows it everything of "its own" sessions. With the guard it
//! is refused with PostgreSQL's SQLSTATE and wording, and a security event is written.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{count, expect_sqlstate, ACME, GLOBEX};
use support::{start, stderr, Opts, TestProxy, PW};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A trusted monitoring login for ACME.
fn monitor_user() -> String {
    format!(
        "[[users]]\nname = \"mon\"\npassword = \"{PW}\"\ntenant = \"{}\"\nallow_catalog_monitoring = true\n\n",
        ACME.id
    )
}

async fn proxy() -> TestProxy {
    start(Opts {
        extra: monitor_user(),
        ..Opts::default()
    })
    .await
}

/// Stops the proxy and removes its event log (tests leave nothing behind).
async fn done(p: TestProxy) {
    let path = p.events_path.clone();
    p.stop().await;
    let _ = std::fs::remove_file(path);
}

/// Runs `sql` as one simple Query; returns every cell of every row, or the error.
async fn simple(c: &Client, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    let mut cells = Vec::new();
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            for i in 0..r.len() {
                cells.push(r.get(i).unwrap_or_default().to_owned());
            }
        }
    }
    Ok(cells)
}

/// Asserts `sql` is refused with `code` (and `message` when given), and returns the error.
async fn refused(c: &Client, sql: &str, code: &str, message: Option<&str>) -> String {
    let err = match simple(c, sql).await {
        Ok(rows) => panic!("{sql:?} was answered: {rows:?}"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql:?}: {err}"));
    assert_eq!(db.code().code(), code, "{sql:?}: {}", db.message());
    if let Some(m) = message {
        assert_eq!(db.message(), m, "{sql:?}");
    }
    db.message().to_owned()
}

/// Events of `name` whose statement contains `needle`.
async fn events_for(p: &TestProxy, name: &str, needle: &str) -> Vec<serde_json::Value> {
    p.events_named(name)
        .await
        .into_iter()
        .filter(|e| e["statement"].as_str().unwrap_or_default().contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_activity_never_shows_another_tenants_query() {
    let p = proxy().await;
    let globex = p.connect("globex_app").await;
    let acme = p.connect("acme_app").await;
    // Globex holds its server connection with a secret in its last query text.
    globex
        .batch_execute("begin; select 'globex-secret-4711' as s")
        .await
        .unwrap();
    for sql in [
        "select query from pg_stat_activity",
        "SELECT query FROM PG_CATALOG.PG_STAT_ACTIVITY",
        "select query from pg_catalog.\"pg_stat_activity\"",
        "select (pg_stat_get_activity(null)).query",
        "select pg_stat_get_backend_activity(s) from pg_stat_get_backend_idset() s",
        "select 'pg_stat_activity'::regclass",
    ] {
        let m = refused(&acme, sql, "42501", None).await;
        assert!(m.starts_with("permission denied for "), "{m}");
        assert!(!m.contains("4711"));
    }
    refused(
        &acme,
        "select query from pg_stat_activity",
        "42501",
        Some("permission denied for view pg_stat_activity"),
    )
    .await;
    // Other backends' prepared statements and cursors, and locks, likewise.
    for sql in [
        "select statement from pg_prepared_statements",
        "select statement from pg_cursors",
        "select * from pg_locks",
    ] {
        refused(&acme, sql, "42501", None).await;
    }
    let ev = events_for(&p, "catalog_probe", "pg_stat_activity").await;
    assert!(!ev.is_empty(), "no catalog_probe event");
    assert_eq!(ev[0]["action"], "block");
    assert_eq!(ev[0]["sqlstate"], "42501");
    assert_eq!(ev[0]["tenant"], ACME.id);
    // The allow-listed monitoring user sees the other session: the guard is what hid it.
    let mon = p.connect("mon").await;
    let rows = simple(
        &mon,
        "select query from pg_stat_activity where query like '%globex-secret-4711%' and pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the monitor reads pg_stat_activity: {rows:?}"
    );
    globex.batch_execute("commit").await.unwrap();
    done(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_backend_cannot_be_cancelled_or_terminated() {
    let p = proxy().await;
    let globex = p.connect("globex_app").await;
    let acme = p.connect("acme_app").await;
    globex
        .batch_execute("begin; select 'globex-marker-9931'")
        .await
        .unwrap();
    let pid = common::cluster()
        .psql(
            &p.db,
            "select pid from pg_stat_activity where query like '%globex-marker-9931%' and pid <> pg_backend_pid()",
        )
        .unwrap();
    let pid: i32 = pid.trim().parse().expect("globex's backend pid");
    for f in [
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_catalog.pg_terminate_backend",
        "\"pg_terminate_backend\"",
    ] {
        let sql = format!("select {f}({pid})");
        refused(&acme, &sql, "42501", None).await;
    }
    refused(
        &acme,
        &format!("select pg_terminate_backend({pid})"),
        "42501",
        Some("permission denied for function pg_terminate_backend"),
    )
    .await;
    // Globex's transaction is alive and still its own.
    assert_eq!(count(&globex, "customers").await, GLOBEX.customers);
    globex.batch_execute("commit").await.unwrap();
    assert!(!events_for(&p, "catalog_probe", "pg_terminate_backend")
        .await
        .is_empty());
    done(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_of_the_shared_role_are_refused() {
    let p = proxy().await;
    // A large object owned by the app role, as another tenant's session would have made it.
    let oid = common::cluster()
        .psql(
            &p.db,
            "select lo_from_bytea(0, convert_to('globex-lo-secret', 'UTF8'))",
        )
        .unwrap();
    let oid = oid.trim().to_owned();
    common::cluster()
        .psql(
            &p.db,
            &format!("alter large object {oid} owner to {}", common::APP_USER),
        )
        .unwrap();
    let acme = p.connect("acme_app").await;
    for sql in [
        format!("select convert_from(lo_get({oid}), 'UTF8')"),
        "select oid from pg_largeobject_metadata".to_owned(),
        format!("select loread(lo_open({oid}, 262144), 100)"),
        format!("SELECT LO_UNLINK({oid})"),
    ] {
        let m = refused(&acme, &sql, "42501", None).await;
        assert!(!m.contains("globex-lo-secret"));
    }
    assert!(!p.events_named("catalog_probe").await.is_empty());
    // Still there: nothing reached the server.
    let left = common::cluster()
        .psql(
            &p.db,
            &format!("select count(*) from pg_largeobject_metadata where oid = {oid}"),
        )
        .unwrap();
    assert_eq!(left.trim(), "1");
    common::cluster()
        .psql(&p.db, &format!("select lo_unlink({oid})"))
        .unwrap();
    done(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_side_channels_are_refused_and_plain_explain_works() {
    let p = proxy().await;
    let acme = p.connect("acme_app").await;
    // "Rows Removed by Filter" would count Globex's customers in the range.
    for sql in [
        "explain analyze select * from customers where name >= 'globex' and name < 'globez'",
        "EXPLAIN (ANALYZE) select * from customers",
        "explain (analyze true, costs off) select * from customers",
        "explain (analyse on) select * from customers",
        "EXPLAIN ANALYSE select * from customers",
        "explain verbose analyze select * from customers",
        "explain (format json, \"analyze\") select * from customers",
    ] {
        let m = refused(&acme, sql, "42501", None).await;
        assert!(m.contains("EXPLAIN ANALYZE"), "{m}");
    }
    let plan = simple(&acme, "explain select * from customers where name >= 'a'")
        .await
        .expect("plain EXPLAIN stays allowed");
    assert!(!plan.is_empty());
    let plan = simple(&acme, "explain (analyze false) select * from customers")
        .await
        .expect("ANALYZE false is plain EXPLAIN");
    assert!(plan.iter().all(|l| !l.contains("Rows Removed")));
    for (sql, msg) in [
        (
            "select n_tup_ins from pg_stat_user_tables where relname = 'customers'",
            "permission denied for view pg_stat_user_tables",
        ),
        (
            "select pg_relation_size('customers')",
            "permission denied for function pg_relation_size",
        ),
        (
            "select reltuples from pg_class where relname = 'customers'",
            "permission denied for column reltuples",
        ),
        (
            "select heap_blks_read from pg_statio_user_tables",
            "permission denied for view pg_statio_user_tables",
        ),
        (
            "select pg_stat_get_tuples_inserted('customers'::regclass)",
            "permission denied for function pg_stat_get_tuples_inserted",
        ),
    ] {
        refused(&acme, sql, "42501", Some(msg)).await;
    }
    let ev = events_for(&p, "catalog_probe", "explain analyze").await;
    assert!(!ev.is_empty());
    assert!(!events_for(&p, "catalog_probe", "pg_stat_user_tables")
        .await
        .is_empty());
    // The monitor may.
    let mon = p.connect("mon").await;
    simple(&mon, "select n_tup_ins from pg_stat_user_tables")
        .await
        .expect("monitor reads statistics");
    simple(&mon, "explain analyze select 1")
        .await
        .expect("monitor runs EXPLAIN ANALYZE");
    done(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_rewrite_cannot_run_hidden_sql() {
    let p = proxy().await;
    let acme = p.connect("acme_app").await;
    // ts_rewrite runs its second argument as a query: here one that switches the tenant for
    // the rest of the transaction, so that the next statement reads Globex's customers.
    let hidden = format!(
        "select ''a''::tsquery, ''b''::tsquery from (select set_config(''app.tenant_id'', ''{}'', true)) s",
        GLOBEX.id
    );
    for f in [
        "ts_rewrite",
        "pg_catalog.ts_rewrite",
        "\"ts_rewrite\"",
        "TS_REWRITE",
    ] {
        let sql = format!(
            "select {f}('a'::tsquery, '{hidden}'); select string_agg(name, ',') from customers"
        );
        let m = refused(&acme, &sql, "42501", None).await;
        assert!(!m.contains("globex"), "{m}");
    }
    assert!(!events_for(&p, "tenant_tamper", "ts_rewrite")
        .await
        .is_empty());
    // A harmless rewrite query still works.
    let rows = simple(
        &acme,
        "select ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''c''::tsquery')::text",
    )
    .await
    .unwrap();
    assert_eq!(rows, vec!["'c'".to_owned()]);
    done(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_another_tenant_id_are_probes() {
    let p = proxy().await;
    let acme = p.connect("acme_app").await;
    let hex: String = GLOBEX.id.chars().filter(|c| *c != '-').collect();
    let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
    for spelling in [
        format!("{{{}}}", GLOBEX.id),
        hex.clone(),
        groups.join("-"),
        GLOBEX.id.to_ascii_uppercase(),
        format!("{{{hex}}}"),
    ] {
        let sql = format!("select count(*) from customers where tenant_id = '{spelling}'");
        refused(&acme, &sql, "42501", None).await;
        assert!(
            !events_for(&p, "cross_tenant_literal", &spelling)
                .await
                .is_empty(),
            "{spelling}"
        );
    }
    // The own tenant in another spelling is not a probe.
    let own: String = ACME.id.chars().filter(|c| *c != '-').collect();
    let rows = simple(
        &acme,
        &format!("select count(*) from customers where tenant_id = '{{{own}}}'"),
    )
    .await
    .unwrap();
    assert_eq!(rows, vec![ACME.customers.to_string()]);
    done(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_client_encodings_are_refused_at_startup_and_in_set() {
    let p = proxy().await;
    for env in [
        ("PGCLIENTENCODING", "SJIS"),
        ("PGCLIENTENCODING", "BIG5"),
        ("PGOPTIONS", "-c client_encoding=GBK"),
    ] {
        let out = p.psql_env("acme_app", &["-c", "select 1"], &[env]);
        assert!(!out.status.success(), "{env:?} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("invalid value for parameter \"client_encoding\""),
            "{env:?}: {err}"
        );
    }
    let acme = p.connect("acme_app").await;
    for sql in [
        "SET client_encoding = 'SJIS'",
        "set names 'Shift_JIS'",
        "set client_encoding to win932",
        "select set_config('client_encoding', 'UHC', false)",
    ] {
        let m = refused(&acme, sql, "22023", None).await;
        assert!(
            m.starts_with("invalid value for parameter \"client_encoding\""),
            "{m}"
        );
    }
    simple(&acme, "set client_encoding = 'UTF8'")
        .await
        .expect("UTF8 stays allowed");
    assert!(!events_for(&p, "tenant_tamper", "client_encoding")
        .await
        .is_empty());
    done(p).await;
}

/// The backstop: an encoding change the inspector cannot see (here inside a function someone
/// else created) ends the session when the server reports it, and the server connection is
/// never reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reported_unsafe_encoding_ends_the_session() {
    let p = proxy().await;
    common::cluster()
        .psql(
            &p.db,
            "create function public.switch_encoding() returns text language sql as \
             $$ select set_config('client_encoding', 'SJIS', false) $$",
        )
        .unwrap();
    let acme = p.connect("acme_app").await;
    // The session ends, with a FATAL from the proxy.
    let db = expect_sqlstate(
        simple(&acme, "select public.switch_encoding()").await,
        "22023",
    );
    assert!(db.message().contains("client_encoding"), "{}", db.message());
    assert!(acme.is_closed() || simple(&acme, "select 1").await.is_err());
    // Whoever comes next gets a clean UTF8 connection.
    let next = p.connect("acme_app").await;
    let rows = simple(&next, "show client_encoding").await.unwrap();
    assert_eq!(rows, vec!["UTF8".to_owned()]);
    done(p).await;
}

/// As `md5_app` over raw bytes (no driver sends such text): `SET client_encoding` to
/// `encoding`, then `attack`, then a plain read of the customers. The three answers, in order.
async fn in_encoding(p: &TestProxy, encoding: &str, attack: Vec<u8>) -> (Answer, Answer, Answer) {
    let (addr, db) = (p.addr, p.db.clone());
    let set = format!("SET client_encoding = '{encoding}'");
    tokio::task::spawn_blocking(move || {
        let mut c = RawClient::connect(addr, "md5_app", &db);
        let set = c.query(set.as_bytes());
        let attack = c.query(&attack);
        let after = c.query(b"select name from customers");
        (set, attack, after)
    })
    .await
    .expect("the raw client's thread")
}

/// The desynchronisation itself, with raw bytes (no driver sends them): `0x95 0x5C` is one
/// character in SJIS, and a replacement character plus a backslash to a UTF-8 reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sjis_bytes_cannot_hide_statements() {
    let p = proxy().await;
    let globex = GLOBEX.id;
    // What PostgreSQL runs in SJIS: a one-character string, then two hidden statements.
    // What a UTF-8 reader sees: one literal running to the end of the text.
    let mut q = b"SELECT E'".to_vec();
    q.extend_from_slice(&[0x95, 0x5c]);
    q.extend_from_slice(
        format!(
            "'; select set_config($$app.tenant_id$$, $${globex}$$, true); select name from customers; --'"
        )
        .as_bytes(),
    );
    let (set, attack, _) = in_encoding(&p, "SJIS", q).await;
    assert!(
        attack.rows.iter().all(|r| !r.contains("globex")),
        "foreign rows: {attack:?}"
    );
    assert_eq!(set.error.as_deref(), Some("22023"), "SET refused: {set:?}");
    assert!(attack.error.is_some(), "{attack:?}");
    done(p).await;
}

/// In a single-byte client encoding, distinct bytes are distinct characters: `$\xE9$` and
/// `$\xE8$` (`$é$`, `$è$` in LATIN1) are two dollar-quote tags. Read as lossy UTF-8 both were
/// `$\u{FFFD}$`: the first quote closed early and the inspector took the rest of the text for an
/// unterminated quote, while PostgreSQL ran the `set_config` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_dollar_tags_cannot_hide_statements() {
    let p = proxy().await;
    let globex = GLOBEX.id;
    let mut q = b"SELECT $\xE9$ $\xE8$ $\xE9$, ".to_vec();
    q.extend_from_slice(
        format!("set_config('app.tenant_id', '{globex}', false); select name from customers")
            .as_bytes(),
    );
    let (set, attack, after) = in_encoding(&p, "LATIN1", q).await;
    assert_eq!(set.error, None, "{set:?}");
    for answer in [&attack, &after] {
        assert!(
            answer.rows.iter().all(|r| !r.contains("globex")),
            "foreign rows: {answer:?}"
        );
    }
    assert_eq!(attack.error.as_deref(), Some("42501"), "{attack:?}");
    done(p).await;
}

/// The catalog-derived lists checked against the running server's catalogs: a version that
/// adds a statistics view, a backend-reporting function, a large-object function or a function
/// taking query text fails here until it is classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_lists_cover_the_servers_catalogs() {
    use tenantgate::tenant::catalog::{catalog_object, Exposure, ALL_SQL_FUNCTIONS};
    use tenantgate::tenant::inspect::{inspect, InspectOptions};
    let db = common::fresh_database("catalog");
    let c = common::cluster();
    let q = |sql: &str| -> Vec<String> {
        c.psql(&db, sql)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    };
    // 1. Functions whose C implementation reports on other backends, large objects or
    //    activity statistics (by their C symbol: pgstatfuncs.c, be-fsstubs.c, lockfuncs.c,
    //    signalfuncs.c, dbsize.c, mcxtfuncs.c, prepare.c, portalmem.c, twophase.c).
    let funcs = q(
        "select distinct proname from pg_proc where pronamespace = 'pg_catalog'::regnamespace and (
            prosrc like 'pg\\_stat\\_get\\_%' or prosrc like 'be\\_lo\\_%' or prosrc like 'lo\\_%'
            or prosrc in ('pg_lock_status', 'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids',
                'pg_isolation_test_session_is_blocked', 'pg_cancel_backend', 'pg_terminate_backend',
                'pg_log_backend_memory_contexts', 'pg_get_backend_memory_contexts',
                'pg_prepared_statement', 'pg_cursor', 'pg_prepared_xact', 'pg_listening_channels',
                'pg_notification_queue_usage', 'pg_relation_size', 'pg_total_relation_size',
                'pg_table_size', 'pg_indexes_size', 'pg_database_size_oid', 'pg_database_size_name',
                'pg_tablespace_size_oid', 'pg_tablespace_size_name', 'pg_stat_get_activity'))",
    );
    assert!(
        funcs.len() > 100,
        "catalog query found too little: {funcs:?}"
    );
    let missing: Vec<&String> = funcs
        .iter()
        .filter(|f| catalog_object(f.as_bytes(), true).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "pg_proc functions not refused: {missing:?}"
    );
    // 2. Every view built on them (system_views.sql), and every pg_stat*/pg_statio* view.
    let views = q("select viewname from pg_views where schemaname = 'pg_catalog' and (
            definition ~ '(pg_stat_get_|pg_lock_status|pg_prepared_statement|pg_cursor|pg_prepared_xact|pg_get_backend_memory_contexts|pg_largeobject)'
            or viewname like 'pg\\_stat%')");
    assert!(views.iter().any(|v| v == "pg_stat_activity"), "{views:?}");
    // Reviewed and allowed: pg_stats and pg_stats_ext* filter themselves by row security
    // (has_column_privilege and row_security_active in the view); pg_seclabels only joins
    // pg_largeobject for the object's name in security labels (empty without a label provider).
    let reviewed_views = [
        "pg_stats",
        "pg_stats_ext",
        "pg_stats_ext_exprs",
        "pg_seclabels",
    ];
    let missing: Vec<&String> = views
        .iter()
        .filter(|v| !reviewed_views.contains(&v.as_str()))
        .filter(|v| catalog_object(v.as_bytes(), false).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "pg_catalog views not refused: {missing:?}"
    );
    for t in ["pg_largeobject", "pg_largeobject_metadata"] {
        assert_eq!(
            catalog_object(t.as_bytes(), false).map(|o| o.exposure),
            Some(Exposure::LargeObjects)
        );
    }
    // 3. Functions that run SQL text from an argument: the C symbols that call SPI with a
    //    text argument, and any function whose argument names say it takes a query.
    let sql_funcs = q("select distinct proname from pg_proc where
            prosrc in ('tsquery_rewrite_query', 'ts_stat1', 'ts_stat2', 'query_to_xml',
                'query_to_xmlschema', 'query_to_xml_and_xmlschema')
            or exists (select 1 from unnest(proargnames) a where a ~* '(query|sql|stmt|statement)$'
                and proargtypes[array_position(proargnames, a) - 1] = 'text'::regtype)");
    // Reviewed: these take a "query" argument that is not SQL text run in this session.
    let reviewed = [
        "to_tsquery",
        "plainto_tsquery",
        "phraseto_tsquery",
        "websearch_to_tsquery",
    ];
    eprintln!(
        "SQL-running functions in pg_proc: {sql_funcs:?}; refused backend/statistics functions: {}",
        funcs.len()
    );
    assert!(sql_funcs.iter().any(|f| f == "ts_rewrite"), "{sql_funcs:?}");
    let opts = InspectOptions {
        setting: "app.tenant_id",
        tenant_column: "tenant_id",
        standard_conforming_strings: true,
    };
    for f in &sql_funcs {
        if reviewed.contains(&f.as_str()) {
            continue;
        }
        assert!(
            ALL_SQL_FUNCTIONS.contains(&f.as_str()),
            "{f} runs SQL text but is not in catalog::ALL_SQL_FUNCTIONS"
        );
        // And the inspector reads the text it runs, whichever argument carries it.
        let tamper = "select set_config(''app.tenant_id'', ''x'', true)";
        let call = format!("select {f}('{tamper}'), {f}('a', '{tamper}')");
        assert!(
            !inspect(&call, &opts).findings.is_empty(),
            "{f}: hidden SQL not seen"
        );
    }
    c.psql("postgres", &format!("drop database {db}")).unwrap();
}

/// Just enough of the protocol to send bytes no driver would (md5 authentication).
struct RawClient {
    s: TcpStream,
}

#[derive(Debug, Default)]
struct Answer {
    rows: Vec<String>,
    error: Option<String>,
}

impl RawClient {
    fn connect(addr: std::net::SocketAddr, user: &str, db: &str) -> RawClient {
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", db)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        s.write_all(&msg).unwrap();
        let mut c = RawClient { s };
        loop {
            let (tag, body) = c.read();
            match tag {
                b'R' if body[..4] == 5u32.to_be_bytes() => {
                    let salt = [body[4], body[5], body[6], body[7]];
                    let hash = postgres_protocol::authentication::md5_hash(
                        user.as_bytes(),
                        PW.as_bytes(),
                        salt,
                    );
                    let mut m = vec![b'p'];
                    m.extend_from_slice(&((hash.len() + 5) as u32).to_be_bytes());
                    m.extend_from_slice(hash.as_bytes());
                    m.push(0);
                    c.s.write_all(&m).unwrap();
                }
                b'E' => panic!("login failed: {}", String::from_utf8_lossy(&body)),
                b'Z' => return c,
                _ => {}
            }
        }
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        self.s.read_exact(&mut head).expect("read");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.s.read_exact(&mut body).expect("read body");
        (head[0], body)
    }

    fn query(&mut self, sql: &[u8]) -> Answer {
        let mut m = vec![b'Q'];
        m.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        m.extend_from_slice(sql);
        m.push(0);
        self.s.write_all(&m).unwrap();
        let mut a = Answer::default();
        loop {
            let (tag, body) = self.read();
            match tag {
                b'D' => a.rows.push(String::from_utf8_lossy(&body).into_owned()),
                b'E' => {
                    let mut f = body.split(|b| *b == 0);
                    a.error = f.find_map(|x| {
                        (x.first() == Some(&b'C'))
                            .then(|| String::from_utf8_lossy(&x[1..]).into_owned())
                    });
                }
                b'Z' => return a,
                _ => {}
            }
        }
    }
}
