//! Signed tenant context (issue 15) against a real PostgreSQL.
//!
//! The attacks run with `probe_action = "log"`: the inspector records them but lets them
//! through, so nothing but the database stands between an ACME client and GLOBEX's rows. With
//! signing on, each attack reads and writes no foreign row; with signing off (plain-setting
//! policies, same attack, same proxy settings) the same attack leaks, so the test proves
//! something. Also: the SQL function accepts exactly the proxy's signatures (built-in
//! `sha256()` and pgcrypto), key rotation with SIGHUP, the inspector guarding the signature
//! setting in block mode, and the posture checks of a signed deployment.

mod common;
mod support;

use std::path::PathBuf;

use common::{ACME, GLOBEX};
use support::raw::{codes, rows, Raw};
use support::{start_on, Opts, TestProxy};
use tenantgate::cli::signing_install::{self as install, InstallRequest};
use tenantgate::signing::sql::{self, InstallOptions};
use tenantgate::signing::KeyRing;
use tokio_postgres::NoTls;

fn superuser_url(db: &str) -> String {
    let c = common::cluster();
    c.conn_str(c.superuser(), c.superuser_password(), db)
}

fn app_url(db: &str) -> String {
    common::cluster().conn_str(common::APP_USER, common::APP_PASSWORD, db)
}

fn superuser_sql(db: &str, sql: &str) -> String {
    common::cluster()
        .psql(db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A key file path of its own (removed at exit).
fn key_path() -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "tenantgate-signing-{}-{:016x}.keys",
        std::process::id(),
        rand::random::<u64>()
    ));
    support::remove_at_exit(&p);
    p
}

fn request(db: &str, key_file: &std::path::Path) -> InstallRequest {
    InstallRequest {
        database_url: Some(superuser_url(db)),
        key_file: key_file.to_owned(),
        print: false,
        add_key: false,
        key_id: None,
        options: InstallOptions::default(),
    }
}

/// `tenantgate signing install` as the superuser; returns the key file.
async fn install_signing(db: &str) -> PathBuf {
    let path = key_path();
    install::install(&request(db, &path))
        .await
        .expect("signing install");
    path
}

/// The README's migration: every policy of the schema to the signed context.
fn migrate_policies(db: &str) {
    let mut s = String::from("BEGIN;\n");
    for (table, column) in [
        ("tenants", "id"),
        ("customers", "tenant_id"),
        ("vehicles", "tenant_id"),
        ("services", "tenant_id"),
        ("appointments", "tenant_id"),
    ] {
        s.push_str(&sql::policy_rewrite(table, "tenant_isolation", column));
        s.push('\n');
    }
    s.push_str("COMMIT;");
    superuser_sql(db, &s);
}

async fn app_client(db: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&app_url(db), NoTls)
        .await
        .expect("app_user connects directly");
    tokio::spawn(conn);
    c
}

/// What `tenantgate.current_tenant()` returns on `c` after setting the tenant and signature.
async fn current_tenant(c: &tokio_postgres::Client, tenant: &str, sig: &str) -> Option<String> {
    c.execute(
        "select set_config('app.tenant_id', $1, false), set_config('tenantgate.signature', $2, false)",
        &[&tenant, &sig],
    )
    .await
    .expect("set_config");
    c.query_one("select tenantgate.current_tenant()", &[])
        .await
        .expect("current_tenant")
        .get(0)
}

/// The signature checks every variant of the function must pass.
async fn accepts_exactly_the_proxys_signatures(db: &str, keys: &KeyRing, variant: &str) {
    let c = app_client(db).await;
    let pid: i32 = c
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let k = keys.current();
    let good = k.sign(ACME.id, pid);
    assert_eq!(
        current_tenant(&c, ACME.id, &good).await.as_deref(),
        Some(ACME.id),
        "{variant}: the proxy's signature is accepted"
    );
    // One hex digit changed.
    let last = good.chars().last().expect("non-empty");
    let flipped = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for (what, tenant, sig) in [
        ("a modified signature", ACME.id, flipped),
        (
            "another backend's signature",
            ACME.id,
            k.sign(ACME.id, pid + 1),
        ),
        ("another tenant's value", GLOBEX.id, good.clone()),
        (
            "an unknown key id",
            ACME.id,
            good.replacen(k.id(), "nokey", 1),
        ),
        ("no signature", ACME.id, String::new()),
        ("the key id alone", ACME.id, format!("{}:", k.id())),
    ] {
        assert_eq!(
            current_tenant(&c, tenant, &sig).await,
            None,
            "{variant}: {what} must not verify"
        );
    }
    // Only the owner reads the keys.
    common::expect_sqlstate(
        c.query("select * from tenantgate.signing_keys", &[]).await,
        "42501",
    );
}

/// `verify`'s check 10, as the app role: the installed function is the one it expects.
async fn check_10_passes(db: &str, keys: &KeyRing, variant: &str) {
    use tenantgate::verify::{report::Status, signing};
    let c = app_client(db).await;
    let facts = signing::gather(&c, common::TENANT_SETTING, Some(keys.current()))
        .await
        .expect("gather");
    let check = signing::check(&facts);
    assert_eq!(check.status, Status::Pass, "{variant}: {check:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_function_accepts_the_proxys_signature_and_nothing_else() {
    let db = common::fresh_database("sig_fn");
    let path = install_signing(&db).await;
    let keys = KeyRing::load(&path).expect("install wrote a valid 0600 key file");
    let src = superuser_sql(
        &db,
        "select prosrc from pg_proc where proname = 'current_tenant'",
    );
    assert!(src.contains("sha256(k.opad"), "built-in HMAC: {src}");
    accepts_exactly_the_proxys_signatures(&db, &keys, "built-in sha256()").await;
    check_10_passes(&db, &keys, "built-in sha256()").await;

    // Idempotent: a second run changes nothing (one key), and with pgcrypto installed
    // meanwhile it switches to pgcrypto's hmac().
    superuser_sql(&db, "create extension if not exists pgcrypto");
    install::install(&request(&db, &path))
        .await
        .expect("second install");
    assert_eq!(
        superuser_sql(&db, "select count(*) from tenantgate.signing_keys").trim(),
        "1"
    );
    let src = superuser_sql(
        &db,
        "select prosrc from pg_proc where proname = 'current_tenant'",
    );
    assert!(
        src.contains(".hmac(pg_catalog.convert_to("),
        "pgcrypto HMAC: {src}"
    );
    accepts_exactly_the_proxys_signatures(&db, &keys, "pgcrypto hmac()").await;
    // verify once expected pgcrypto's schema quoted while the install left it bare: check 10
    // failed every pgcrypto installation.
    check_10_passes(&db, &keys, "pgcrypto hmac()").await;

    // Rotation: a new key signs; the old one still verifies until it is removed.
    let old = keys.current().clone();
    let mut add = request(&db, &path);
    add.add_key = true;
    add.key_id = Some("k-new".into());
    install::install(&add).await.expect("add a key");
    let keys = KeyRing::load(&path).expect("two keys");
    assert_eq!(keys.current().id(), "k-new");
    accepts_exactly_the_proxys_signatures(&db, &keys, "after rotation").await;
    let c = app_client(&db).await;
    let pid: i32 = c
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert_eq!(
        current_tenant(&c, ACME.id, &old.sign(ACME.id, pid))
            .await
            .as_deref(),
        Some(ACME.id),
        "the old key verifies until removed"
    );
    let e = install::remove_key(Some(&superuser_url(&db)), &path, "k-new", false)
        .await
        .expect_err("the signing key cannot be removed");
    assert!(e.to_string().contains("signs with"), "{e}");
    install::remove_key(Some(&superuser_url(&db)), &path, old.id(), false)
        .await
        .expect("remove the old key");
    assert_eq!(
        current_tenant(&c, ACME.id, &old.sign(ACME.id, pid)).await,
        None,
        "a removed key no longer verifies"
    );
    assert_eq!(KeyRing::load(&path).expect("file").keys().len(), 1);
}

/// A `%` in the tenant setting's name once broke the `format()` that fills in pgcrypto's
/// schema (`unrecognized format() type specifier`): the install must apply, and write the
/// body `verify` expects, with and without pgcrypto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_in_the_setting_name_installs() {
    for crypto in [false, true] {
        let db = common::fresh_database("sig_pct");
        if crypto {
            superuser_sql(&db, "create extension if not exists pgcrypto");
        }
        let mut req = request(&db, &key_path());
        req.options.setting = "app.ten%ant_id".into();
        install::install(&req)
            .await
            .unwrap_or_else(|e| panic!("install (pgcrypto {crypto}): {e}"));
        let (su, conn) = tokio_postgres::connect(&superuser_url(&db), NoTls)
            .await
            .expect("superuser connects");
        tokio::spawn(conn);
        let src: String = su
            .query_one(
                "select prosrc from pg_proc where proname = 'current_tenant'",
                &[],
            )
            .await
            .expect("the function exists")
            .get(0);
        let expected =
            sql::expected_body("app.ten%ant_id", if crypto { Some("public") } else { None });
        assert_eq!(src, expected, "pgcrypto {crypto}");
    }
}

// ----- the attacks -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// `set_config` of another tenant in the client's own Query.
    Query,
    /// The same inside a `pg_temp` PL/pgSQL function (TEMPORARY granted for this test).
    TempFunction,
    /// SQL run by `ts_rewrite`.
    TsRewrite,
    /// A session-level value one client plants (through a legacy SECURITY DEFINER function the
    /// inspector cannot look into) for the next client of the same server connection.
    Planted,
    /// Another tenant's signature, read on its own backend, set together with its tenant.
    CopiedSignature,
}

const ATTACKS: [Attack; 5] = [
    Attack::Query,
    Attack::TempFunction,
    Attack::TsRewrite,
    Attack::Planted,
    Attack::CopiedSignature,
];

/// What an attack got: foreign customer names read, whether a foreign row was written.
#[derive(Debug)]
struct Loot {
    read: Vec<String>,
    wrote: bool,
}

fn foreign(name: &str) -> bool {
    ["globex", "initech", "umbrella", "planted"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Runs the read and write probes after `prefix` (statements in the same Query).
async fn probe(r: &mut Raw, prefix: &str) -> Loot {
    let got = r
        .query(&format!("{prefix}select name from customers"))
        .round(1)
        .await;
    let read: Vec<String> = rows(&got).into_iter().filter(|n| foreign(n)).collect();
    let ins = r
        .query(&format!(
            "{prefix}insert into customers (tenant_id, name) values ('{}', 'planted by acme') returning name",
            GLOBEX.id
        ))
        .round(1)
        .await;
    let upd = r
        .query(&format!(
            "{prefix}update customers set email = 'owned@acme' where name like 'globex%' returning name"
        ))
        .round(1)
        .await;
    let wrote = rows(&ins).iter().any(|n| foreign(n)) || rows(&upd).iter().any(|n| foreign(n));
    Loot { read, wrote }
}

/// A proxy in `probe_action = "log"` on a fresh database, signed or not, set up for `attack`.
async fn proxy_for(attack: Attack, signed: bool) -> TestProxy {
    let db = common::fresh_database(if signed { "sig_on" } else { "sig_off" });
    let mut o = Opts {
        probe_action: "log",
        pool_size: 2,
        ..Opts::default()
    };
    match attack {
        Attack::TempFunction => {
            // This attack needs the weaker set-up the hardened schema forbids: TEMPORARY for
            // the app role, and session pooling (transaction pooling refuses temp objects).
            superuser_sql(
                &db,
                &format!("GRANT TEMPORARY ON DATABASE {db} TO {}", common::APP_USER),
            );
            o.pool_mode = "session";
            if !signed {
                // Without signing the start-up posture refuses such a role.
                o.security_extra = "allow_object_creation = true".into();
            }
        }
        Attack::Planted => {
            o.pool_size = 1;
            superuser_sql(
                &db,
                &format!(
                    "CREATE FUNCTION public.use_tenant(t text) RETURNS text LANGUAGE sql SECURITY DEFINER \
                     AS $$ SELECT set_config('app.tenant_id', t, false) $$; \
                     GRANT EXECUTE ON FUNCTION public.use_tenant(text) TO {}",
                    common::APP_USER
                ),
            );
        }
        _ => {}
    }
    if signed {
        let keys = install_signing(&db).await;
        migrate_policies(&db);
        o.extra = format!("[tenant]\nsigning_key_file = \"{}\"\n", keys.display());
    }
    start_on(db, o).await
}

/// Runs `attack` as an ACME client and returns what it got.
async fn run_attack(attack: Attack, signed: bool) -> Loot {
    let p = proxy_for(attack, signed).await;
    // The context works for honest clients (signed or not): ACME sees its 3 customers.
    let mut honest = p.raw("acme_app").await;
    let names = rows(&honest.query("select name from customers").round(1).await);
    assert_eq!(
        names.len(),
        ACME.customers as usize,
        "{attack:?}: {names:?}"
    );
    honest.close_conn().await;

    let set_globex = format!(
        "select set_config('app.tenant_id', '{}', false); ",
        GLOBEX.id
    );
    let loot = match attack {
        Attack::Query => {
            let mut a = p.raw("acme_app").await;
            let loot = probe(&mut a, &set_globex).await;
            a.close_conn().await;
            loot
        }
        Attack::TempFunction => {
            let mut a = p.raw("acme_app").await;
            let got = a
                .query(
                    "create function pg_temp.f(t text) returns text language plpgsql as \
                     $$ begin return set_config('app.tenant_id', t, false); end $$",
                )
                .round(1)
                .await;
            assert!(codes(&got).is_empty(), "{got:?}");
            let loot = probe(&mut a, &format!("select pg_temp.f('{}'); ", GLOBEX.id)).await;
            a.close_conn().await;
            loot
        }
        Attack::TsRewrite => {
            let hidden = format!(
                "select ''a''::tsquery, ''b''::tsquery from (select set_config(''app.tenant_id'', ''{}'', true)) s",
                GLOBEX.id
            );
            let mut a = p.raw("acme_app").await;
            let loot = probe(
                &mut a,
                &format!("select ts_rewrite('a'::tsquery, '{hidden}')::text; "),
            )
            .await;
            a.close_conn().await;
            loot
        }
        Attack::Planted => {
            // One pooled connection: the next ACME client gets the connection the first left.
            let mut a = p.raw("acme_app").await;
            let got = a
                .query(&format!("select public.use_tenant('{}')", GLOBEX.id))
                .round(1)
                .await;
            assert!(codes(&got).is_empty(), "{got:?}");
            a.close_conn().await;
            p.released().await;
            let mut next = p.raw("acme_app").await;
            let loot = probe(&mut next, "").await;
            next.close_conn().await;
            loot
        }
        Attack::CopiedSignature => {
            // GLOBEX holds its server connection (open transaction), so ACME gets the other.
            let mut g = p.raw("globex_app").await;
            let got = g
                .query("begin; select coalesce(current_setting('tenantgate.signature', true), '')")
                .round(1)
                .await;
            let sig = rows(&got).into_iter().next().unwrap_or_default();
            assert_eq!(signed, !sig.is_empty(), "{got:?}");
            let mut a = p.raw("acme_app").await;
            let prefix = format!(
                "select set_config('app.tenant_id', '{}', false), set_config('tenantgate.signature', '{sig}', false); ",
                GLOBEX.id
            );
            let loot = probe(&mut a, &prefix).await;
            a.close_conn().await;
            g.query("rollback").round(1).await;
            g.close_conn().await;
            loot
        }
    };
    // The inspector saw the visible attacks (and only recorded them).
    if matches!(
        attack,
        Attack::Query | Attack::TsRewrite | Attack::CopiedSignature
    ) {
        let ev = p.events_named("tenant_tamper").await;
        assert!(
            !ev.is_empty() && ev.iter().all(|e| e["action"] == "log"),
            "{attack:?}: {ev:?}"
        );
    }
    p.stop().await;
    loot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_signing_no_attack_reads_or_writes_a_foreign_row() {
    for attack in ATTACKS {
        let loot = run_attack(attack, true).await;
        assert!(
            loot.read.is_empty() && !loot.wrote,
            "{attack:?} got past the signed context: {loot:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_signing_the_same_attacks_leak() {
    for attack in ATTACKS {
        let loot = run_attack(attack, false).await;
        assert!(
            !loot.read.is_empty() && loot.wrote,
            "{attack:?} should read and write GLOBEX's rows without signing: {loot:?}"
        );
    }
}

// ----- the inspector, rotation, posture -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_set_the_signature_in_block_mode() {
    let db = common::fresh_database("sig_block");
    let keys = install_signing(&db).await;
    migrate_policies(&db);
    let p = start_on(
        db,
        Opts {
            extra: format!("[tenant]\nsigning_key_file = \"{}\"\n", keys.display()),
            ..Opts::default()
        },
    )
    .await;
    let mut a = p.raw("acme_app").await;
    for sql in [
        "select set_config('tenantgate.signature', 'k1:00', false)",
        "select pg_catalog.set_config('TENANTGATE.SIGNATURE', 'k1:00', true)",
        "set tenantgate.signature = 'k1:00'",
        "reset tenantgate.signature",
    ] {
        let got = a.query(sql).round(1).await;
        assert_eq!(codes(&got), vec!["42501".to_string()], "{sql}: {got:?}");
    }
    let names = rows(&a.query("select name from customers").round(1).await);
    assert_eq!(names.len(), ACME.customers as usize, "{names:?}");
    a.close_conn().await;
    let ev = p.events_named("tenant_tamper").await;
    assert!(
        ev.iter()
            .filter(|e| e["action"] == "block")
            .any(|e| e["detail"].as_str().unwrap_or("").contains("signature")),
        "{ev:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_used_after_sighup_and_a_bad_file_keeps_the_old_one() {
    let db = common::fresh_database("sig_rotate");
    let keys = install_signing(&db).await;
    migrate_policies(&db);
    let o = Opts {
        extra: format!("[tenant]\nsigning_key_file = \"{}\"\n", keys.display()),
        ..Opts::default()
    };
    let p = start_on(db.clone(), o.clone()).await;
    // A session from before the rotation, and its server connection signed with the old key.
    let mut before = p.raw("acme_app").await;
    assert_eq!(
        rows(&before.query("select name from customers").round(1).await).len(),
        ACME.customers as usize
    );
    let old = KeyRing::load(&keys)
        .expect("keys")
        .current()
        .id()
        .to_owned();

    // Rotation: the new key goes to the database, then the file; SIGHUP; the old key goes.
    let mut add = request(&db, &keys);
    add.add_key = true;
    install::install(&add).await.expect("add key");
    p.reload(&o).await;
    install::remove_key(Some(&superuser_url(&db)), &keys, &old, false)
        .await
        .expect("remove the old key");
    // Every transaction after the reload is signed with the new key: the old session too.
    assert_eq!(
        rows(&before.query("select name from customers").round(1).await).len(),
        ACME.customers as usize,
        "the session from before the rotation was re-signed"
    );
    let sig = rows(
        &before
            .query("select current_setting('tenantgate.signature')")
            .round(1)
            .await,
    );
    assert!(!sig[0].starts_with(&format!("{old}:")), "{sig:?}");

    // A new key the database does not know (added to the file only, as `--print` does before
    // its SQL is run) is refused on reload: signing with it would hide every row.
    let current = KeyRing::load(&keys)
        .expect("keys")
        .current()
        .id()
        .to_owned();
    let mut print = request(&db, &keys);
    print.add_key = true;
    print.print = true;
    install::install(&print)
        .await
        .expect("add a key to the file only");
    p.reload(&o).await;
    let sig = rows(
        &before
            .query("select current_setting('tenantgate.signature')")
            .round(1)
            .await,
    );
    assert!(sig[0].starts_with(&format!("{current}:")), "{sig:?}");
    assert_eq!(
        rows(&before.query("select name from customers").round(1).await).len(),
        ACME.customers as usize
    );

    // A key file others can read is refused on reload: the proxy keeps signing with its key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    p.reload(&o).await;
    let mut after = p.raw("acme_app").await;
    assert_eq!(
        rows(&after.query("select name from customers").round(1).await).len(),
        ACME.customers as usize
    );
    after.close_conn().await;
    before.close_conn().await;
    p.stop().await;
    // And refused at start: signing configured without a usable key never serves.
    let e = tenantgate::config::Config::from_toml(&support::config_toml(
        &db,
        &std::env::temp_dir().join("unused-events.jsonl"),
        &o,
    ))
    .expect_err("a 0644 key file is refused");
    let e = e.to_string();
    assert!(
        e.contains("tenant.signing_key_file") && e.contains("chmod 600"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_posture_fails_raw_policies_and_a_role_that_can_read_the_keys() {
    use tenantgate::verify::{self, Scope, Status, Target};
    let db = common::fresh_database("sig_posture");
    // An owner role of its own: this test makes app_user a member of it, and roles are
    // cluster-wide (the other tests' databases must not be affected meanwhile).
    let keys = key_path();
    let mut req = request(&db, &keys);
    req.options.owner = "tenantgate_owner_posture".into();
    install::install(&req).await.expect("signing install");
    let key = KeyRing::load(&keys).expect("keys").current().clone();
    let opts = verify::Options {
        setting: common::TENANT_SETTING.into(),
        column: "tenant_id".into(),
        tenants: Vec::new(),
        scope: Scope::Catalog,
        strict_keys: false,
        signed: true,
        signing_key: Some(key),
    };
    let target = Target::from_url(&app_url(&db)).expect("url");
    let status = |r: &verify::Report, k: &str| {
        r.checks
            .iter()
            .find(|c| c.key == k)
            .map(|c| c.status)
            .unwrap_or_else(|| panic!("no check {k}"))
    };
    // Policies still on the raw setting: a failure with signing on.
    let r = verify::run_target(&target, &opts).await.expect("verify");
    assert_eq!(status(&r, "policies"), Status::Fail);
    assert!(
        r.failures().iter().any(|f| f.contains("directly")),
        "{:?}",
        r.failures()
    );
    assert_eq!(status(&r, "signing"), Status::Pass, "{:?}", r.failures());
    migrate_policies(&db);
    let r = verify::run_target(&target, &opts).await.expect("verify");
    assert!(!r.failed(), "{:?}", r.failures());
    // The full run's cross-tenant probe signs each tenant as the proxy would: it sees each
    // tenant's own rows, and no other tenant's.
    let full = verify::Options {
        scope: Scope::Full,
        tenants: vec![ACME.id.into(), GLOBEX.id.into()],
        ..opts.clone()
    };
    let r = verify::run_target(&target, &full).await.expect("verify");
    let c = r
        .checks
        .iter()
        .find(|c| c.key == "cross_tenant")
        .expect("check 5");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.summary.contains("signed"), "{}", c.summary);
    // TEMPORARY (code creation) is only a warning with signing on.
    superuser_sql(
        &db,
        &format!("GRANT TEMPORARY ON DATABASE {db} TO {}", common::APP_USER),
    );
    let r = verify::run_target(&target, &opts).await.expect("verify");
    assert_eq!(status(&r, "object_creation"), Status::Warn);
    assert!(!r.failed(), "{:?}", r.failures());
    // The role able to read the keys, or a member of their owner: failures.
    for (grant, revoke) in [
        (
            format!(
                "GRANT SELECT ON tenantgate.signing_keys TO {}",
                common::APP_USER
            ),
            format!(
                "REVOKE SELECT ON tenantgate.signing_keys FROM {}",
                common::APP_USER
            ),
        ),
        (
            format!("GRANT tenantgate_owner_posture TO {}", common::APP_USER),
            format!("REVOKE tenantgate_owner_posture FROM {}", common::APP_USER),
        ),
    ] {
        superuser_sql(&db, &grant);
        let r = verify::run_target(&target, &opts).await.expect("verify");
        assert_eq!(status(&r, "signing"), Status::Fail, "{grant}");
        superuser_sql(&db, &revoke);
    }
    // A proxy whose key the database does not know: the probe says so.
    let mut stranger = opts.clone();
    stranger.signing_key = tenantgate::signing::SigningKey::generate("stranger");
    let r = verify::run_target(&target, &stranger)
        .await
        .expect("verify");
    assert!(
        r.failures()
            .iter()
            .any(|f| f.contains("refuses a valid signature")),
        "{:?}",
        r.failures()
    );
}

// ----- name resolution in the function (no SET search_path) -----

/// Functions and operators that would make any signature verify, if the body resolved them
/// through the search path, created in `schema` (`public` or `pg_temp`).
fn shadow_code(schema: &str) -> String {
    let globex = GLOBEX.id;
    let fns = [
        ("current_setting(pg_catalog.text, boolean)", "pg_catalog.text", format!("'{globex}'")),
        ("starts_with(pg_catalog.text, pg_catalog.text)", "boolean", "true".into()),
        (
            "concat_ws(pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text)",
            "pg_catalog.text",
            "'x'".into(),
        ),
        ("chr(pg_catalog.int4)", "pg_catalog.text", "'x'".into()),
        ("pg_backend_pid()", "pg_catalog.int4", "1".into()),
        ("convert_to(pg_catalog.text, pg_catalog.name)", "pg_catalog.bytea", "'\\x00'::pg_catalog.bytea".into()),
        ("sha256(pg_catalog.bytea)", "pg_catalog.bytea", "'\\x00'::pg_catalog.bytea".into()),
        ("encode(pg_catalog.bytea, pg_catalog.text)", "pg_catalog.text", "'x'".into()),
        ("t_true(pg_catalog.text, pg_catalog.text)", "boolean", "true".into()),
        ("t_cat(pg_catalog.text, pg_catalog.text)", "pg_catalog.text", "'x'".into()),
        ("b_cat(pg_catalog.bytea, pg_catalog.bytea)", "pg_catalog.bytea", "'\\x00'::pg_catalog.bytea".into()),
    ];
    let mut s = String::new();
    for (sig, ret, val) in fns {
        s.push_str(&format!(
            "CREATE FUNCTION {schema}.{sig} RETURNS {ret} LANGUAGE sql AS $$ SELECT {val} $$;\n"
        ));
    }
    for (op, l, r, f) in [
        ("=", "pg_catalog.text", "pg_catalog.text", "t_true"),
        ("<>", "pg_catalog.text", "pg_catalog.text", "t_true"),
        ("||", "pg_catalog.text", "pg_catalog.text", "t_cat"),
        ("||", "pg_catalog.bytea", "pg_catalog.bytea", "b_cat"),
    ] {
        s.push_str(&format!(
            "CREATE OPERATOR {schema}.{op} (LEFTARG = {l}, RIGHTARG = {r}, FUNCTION = {schema}.{f});\n"
        ));
    }
    s
}

/// Types and a key table of the attacker's, in `public` and `pg_temp`.
fn shadow_types_and_tables() -> String {
    let mut s = String::new();
    for schema in ["public", "pg_temp"] {
        for t in ["text", "name", "bytea"] {
            s.push_str(&format!("CREATE DOMAIN {schema}.{t} AS pg_catalog.int4;\n"));
        }
    }
    s.push_str(
        "CREATE TABLE public.signing_keys (key_id pg_catalog.text, secret pg_catalog.bytea, ipad pg_catalog.bytea, opad pg_catalog.bytea);\n\
         CREATE TEMPORARY TABLE signing_keys (key_id pg_catalog.text, secret pg_catalog.bytea, ipad pg_catalog.bytea, opad pg_catalog.bytea);\n",
    );
    s
}

/// As app_user, directly, in a transaction never committed (the shadows vanish with the
/// connection): `setup`, then the hostile search path, then GLOBEX's tenant with a made-up
/// signature (`<key id>:00`). Returns the foreign rows read, or the error's text.
async fn forge_with_shadows(db: &str, setup: &str, key_id: &str) -> Result<Vec<String>, String> {
    let c = app_client(db).await;
    c.batch_execute(&format!("BEGIN; {setup}"))
        .await
        .map_err(|e| format!("setup: {e}"))?;
    c.batch_execute(&format!(
        "SET search_path = pg_temp, public, pg_catalog; \
         SELECT pg_catalog.set_config('app.tenant_id', '{}', false), \
                pg_catalog.set_config('tenantgate.signature', '{key_id}:00', false)",
        GLOBEX.id
    ))
    .await
    .map_err(|e| format!("settings: {e}"))?;
    let rows = c
        .query("SELECT name FROM public.customers", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|n| foreign(n))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowing_objects_in_public_and_pg_temp_change_nothing() {
    let db = common::fresh_database("sig_shadow");
    let path = install_signing(&db).await;
    migrate_policies(&db);
    let keys = KeyRing::load(&path).expect("keys");
    let kid = keys.current().id().to_owned();
    // The attacker may create objects in public and pg_temp (for this test only).
    superuser_sql(
        &db,
        &format!(
            "GRANT CREATE ON SCHEMA public TO {u}; GRANT TEMPORARY ON DATABASE {db} TO {u}",
            u = common::APP_USER
        ),
    );
    let all = format!(
        "{}{}{}",
        shadow_code("public"),
        shadow_code("pg_temp"),
        shadow_types_and_tables()
    );

    // The installed body: every shadow in place, pg_temp and public first on the path, and the
    // forged context reads nothing.
    let got = forge_with_shadows(&db, &all, &kid).await;
    assert_eq!(got, Ok(Vec::new()), "the installed function was subverted");
    // And an honest signature still verifies under the same hostile path.
    let c = app_client(&db).await;
    c.batch_execute(&format!("BEGIN; {all}"))
        .await
        .expect("shadows");
    c.batch_execute("SET search_path = pg_temp, public, pg_catalog")
        .await
        .expect("path");
    let pid: i32 = c
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert_eq!(
        current_tenant(&c, ACME.id, &keys.current().sign(ACME.id, pid))
            .await
            .as_deref(),
        Some(ACME.id),
        "a valid signature verifies whatever the caller's search path"
    );
    assert_eq!(
        current_tenant(&c, GLOBEX.id, &format!("{kid}:00")).await,
        None
    );
    drop(c);

    // Controls: the same body with its names unqualified (and no SET clause) is subverted by
    // the shadows in public, which proves they would work ...
    let naive = sql::expected_body(common::TENANT_SETTING, None).replace("pg_catalog.", "");
    superuser_sql(
        &db,
        &format!(
            "CREATE OR REPLACE FUNCTION tenantgate.current_tenant() RETURNS text LANGUAGE plpgsql \
             STABLE SECURITY DEFINER AS $fn${naive}$fn$"
        ),
    );
    let got = forge_with_shadows(&db, &shadow_code("public"), &kid)
        .await
        .expect("the naive body runs");
    assert!(
        !got.is_empty(),
        "an unqualified body should be subverted by functions and operators in public"
    );
    // ... while functions and operators in pg_temp are never searched, even first on the path.
    let got = forge_with_shadows(&db, &shadow_code("pg_temp"), &kid)
        .await
        .expect("the naive body runs");
    assert!(got.is_empty(), "pg_temp functions were used: {got:?}");
    // `verify` flags a body that is not the installer's and pins no search_path.
    use tenantgate::verify::{self, Scope, Status, Target};
    let opts = verify::Options {
        setting: common::TENANT_SETTING.into(),
        column: "tenant_id".into(),
        tenants: Vec::new(),
        scope: Scope::Catalog,
        strict_keys: false,
        signed: true,
        signing_key: Some(keys.current().clone()),
    };
    let target = Target::from_url(&app_url(&db)).expect("url");
    let r = verify::run_target(&target, &opts).await.expect("verify");
    let signing = r.checks.iter().find(|c| c.key == "signing").expect("check");
    assert_eq!(signing.status, Status::Fail, "{signing:?}");
    // Installing again restores the qualified body, which verify accepts.
    install::install(&request(&db, &path))
        .await
        .expect("install again");
    let r = verify::run_target(&target, &opts).await.expect("verify");
    let signing = r.checks.iter().find(|c| c.key == "signing").expect("check");
    assert_eq!(signing.status, Status::Pass, "{signing:?}");
}

// ----- installing without a superuser -----

/// The admin of a managed service (RDS, Cloud SQL): CREATEROLE and CREATE on the database,
/// not a superuser. On PostgreSQL 16+ CREATEROLE no longer makes it a member of every role:
/// it holds ADMIN OPTION on the roles it creates, and the installer grants itself the owner
/// role WITH INHERIT, SET to act as it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_superuser_admin_installs_rotates_and_verifies() {
    let db = common::fresh_database("sig_admin");
    let admin = "tg_signing_admin";
    let owner = "tenantgate_owner_by_admin";
    superuser_sql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{admin}') THEN \
             CREATE ROLE {admin} LOGIN CREATEROLE NOSUPERUSER PASSWORD 'admin_pw'; END IF; END $$"
        ),
    );
    superuser_sql(
        &db,
        &format!("GRANT CONNECT, CREATE ON DATABASE {db} TO {admin}"),
    );
    let admin_url = common::cluster().conn_str(admin, "admin_pw", &db);
    let path = key_path();
    let mut req = request(&db, &path);
    req.database_url = Some(admin_url.clone());
    req.options.owner = owner.into();
    install::install(&req)
        .await
        .expect("install as a non-superuser admin");
    assert_eq!(
        superuser_sql(
            &db,
            "SELECT pg_get_userbyid(p.proowner) FROM pg_proc p WHERE p.proname = 'current_tenant'"
        )
        .trim(),
        owner
    );
    migrate_policies(&db);
    let keys = KeyRing::load(&path).expect("keys");
    accepts_exactly_the_proxys_signatures(&db, &keys, "installed by a non-superuser").await;

    // A proxy signs with the key; rotation by the admin: add a key, SIGHUP, remove the old one.
    let o = Opts {
        extra: format!("[tenant]\nsigning_key_file = \"{}\"\n", path.display()),
        ..Opts::default()
    };
    let p = start_on(db.clone(), o.clone()).await;
    let mut a = p.raw("acme_app").await;
    assert_eq!(
        rows(&a.query("select name from customers").round(1).await).len(),
        ACME.customers as usize
    );
    let old = keys.current().id().to_owned();
    let mut add = req.clone();
    add.add_key = true;
    install::install(&add).await.expect("the admin adds a key");
    p.reload(&o).await;
    install::remove_key(Some(&admin_url), &path, &old, false)
        .await
        .expect("the admin removes the old key");
    assert_eq!(
        rows(&a.query("select name from customers").round(1).await).len(),
        ACME.customers as usize,
        "signed with the new key after the reload"
    );
    a.close_conn().await;
    p.stop().await;

    // verify, as the application role, with the proxy's (new) key: passes.
    use tenantgate::verify::{self, Scope, Target};
    let key = KeyRing::load(&path).expect("keys").current().clone();
    assert_ne!(key.id(), old);
    let opts = verify::Options {
        setting: common::TENANT_SETTING.into(),
        column: "tenant_id".into(),
        tenants: vec![ACME.id.into(), GLOBEX.id.into()],
        scope: Scope::Full,
        strict_keys: false,
        signed: true,
        signing_key: Some(key),
    };
    let r = verify::run_target(&Target::from_url(&app_url(&db)).expect("url"), &opts)
        .await
        .expect("verify");
    assert!(!r.failed(), "{:?}", r.failures());
}
