use super::validate::is_guc_name;
use super::*;

const BASE: &str = r#"
[[users]]
name = "base"
password = "p"
tenant = "11111111-1111-1111-1111-111111111111"

[server]
listen = "127.0.0.1:6432"
[upstream]
host = "127.0.0.1"
database = "app"
user = "app_user"
password = "x"
"#;

#[test]
fn minimal_config_loads_with_defaults() {
    let c = Config::from_toml(BASE).unwrap();
    assert_eq!(c.upstream.pool_mode, PoolMode::Transaction);
    assert_eq!(c.tenant.setting, "app.tenant_id");
    assert_eq!(c.security.probe_action, ProbeAction::Block);
    assert_eq!(c.upstream.resolved_password.as_deref(), Some("x"));
    assert_eq!(c.security.drift_check_interval, 300.0);
    assert_eq!(c.security.on_drift, OnDrift::Warn);
    assert!(!c.upstream.allow_privileged);
    assert!(!c.security.allow_object_creation);
    assert!(!c.security.serve_unprotected);
    assert!(!c.security.require_tenant_keys);
}

#[test]
fn posture_opt_outs_parse() {
    let c = Config::from_toml(&format!(
        "{BASE}\n[security]\nallow_object_creation = true\nserve_unprotected = true\nrequire_tenant_keys = true\n"
    ))
    .unwrap();
    assert!(c.security.allow_object_creation);
    assert!(c.security.serve_unprotected);
    assert!(c.security.require_tenant_keys);
}

#[test]
fn drift_keys_parse_and_are_validated() {
    let c = Config::from_toml(&format!(
        "{BASE}\n[security]\ndrift_check_interval = 0.5\non_drift = \"refuse\"\n"
    ))
    .unwrap();
    assert_eq!(c.security.on_drift, OnDrift::Refuse);
    assert_eq!(c.security.drift_check_interval, 0.5);
    let err =
        Config::from_toml(&format!("{BASE}\n[security]\ndrift_check_interval = 0\n")).unwrap_err();
    assert!(
        err.to_string().contains("security.drift_check_interval"),
        "{err}"
    );
    let err = Config::from_toml(&format!("{BASE}\n[security]\non_drift = \"stop\"\n")).unwrap_err();
    assert!(
        err.to_string().contains("on_drift") || err.to_string().contains("stop"),
        "{err}"
    );
}

#[test]
fn worker_threads_default_to_one_event_loop_and_are_bounded() {
    assert_eq!(Config::from_toml(BASE).unwrap().server.worker_threads, 1);
    let base = BASE.replace("[server]\n", "[server]\nworker_threads = 0\n");
    assert_eq!(Config::from_toml(&base).unwrap().server.worker_threads, 0);
    let base = BASE.replace("[server]\n", "[server]\nworker_threads = 5000\n");
    let err = Config::from_toml(&base).unwrap_err();
    assert!(err.to_string().contains("server.worker_threads"), "{err}");
}

#[test]
fn tenant_share_is_optional_and_at_least_one() {
    assert_eq!(
        Config::from_toml(BASE)
            .unwrap()
            .tenant
            .max_server_connections,
        None
    );
    let c = Config::from_toml(&format!("{BASE}\n[tenant]\nmax_server_connections = 3\n")).unwrap();
    assert_eq!(c.tenant.max_server_connections, Some(3));
    let err =
        Config::from_toml(&format!("{BASE}\n[tenant]\nmax_server_connections = 0\n")).unwrap_err();
    assert!(
        err.to_string().contains("tenant.max_server_connections"),
        "{err}"
    );
    let err =
        Config::from_toml(&format!("{BASE}\n[tenant]\nmax_client_connections = 0\n")).unwrap_err();
    assert!(
        err.to_string().contains("tenant.max_client_connections"),
        "{err}"
    );
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml(&format!("{BASE}\n[tenant]\nsettting = \"a.b\"\n")).unwrap_err();
    assert!(err.to_string().contains("settting"), "{err}");
}

#[test]
fn bad_fixed_tenant_is_refused_with_its_key() {
    let text =
        format!("{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\ntenant = \"not-a-uuid\"\n");
    let err = Config::from_toml(&text).unwrap_err();
    assert!(err.to_string().contains("users[1].tenant"), "{err}");
}

#[test]
fn app_user_without_tenant_is_refused() {
    let text = format!("{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\n");
    assert!(Config::from_toml(&text).is_err());
}

#[test]
fn auth_methods_are_spelled_as_in_pg_hba() {
    let text = format!(
        "{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\nauth = \"scram-sha-256\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n"
    );
    assert_eq!(
        Config::from_toml(&text).unwrap().users[1].auth,
        AuthMethod::ScramSha256
    );
}

fn err(text: &str) -> String {
    Config::from_toml(text).unwrap_err().to_string()
}

#[test]
fn durations_are_written_as_humans_write_them() {
    let c = Config::from_toml(&BASE.replace(
        "password = \"x\"\n",
        "password = \"x\"\npool_timeout = \"30s\"\nidle_timeout = \"5m\"\nconnect_timeout = 2\nserver_lifetime = \"1h\"\n",
    ))
    .unwrap();
    assert_eq!(c.upstream.pool_timeout, 30.0);
    assert_eq!(c.upstream.idle_timeout, 300.0);
    assert_eq!(c.upstream.connect_timeout, 2.0);
    assert_eq!(c.upstream.server_lifetime, 3600.0);
    let e = err(&BASE.replace("[server]\n", "[server]\nauth_timeout = \"soon\"\n"));
    assert!(
        e.contains("server.auth_timeout") && e.contains("\"30s\""),
        "{e}"
    );
    assert!(e.starts_with("line 8:"), "{e}");
}

#[test]
fn type_errors_use_words_not_rust_types() {
    let e = err(&BASE.replace("user = ", "port = \"five\"\nuser = "));
    assert!(!e.contains("u16"), "{e}");
    assert!(
        e.contains("upstream.port") && e.contains("0 to 65535"),
        "{e}"
    );
    let e = err(&BASE.replace("[server]\n", "[server]\nmax_client_conn = -1\n"));
    assert!(!e.contains("usize") && e.contains("whole number"), "{e}");
}

#[test]
fn missing_section_and_empty_keys_are_named() {
    let text = BASE.split("[upstream]").next().unwrap();
    let e = err(text);
    assert!(e.contains("[upstream]") && !e.starts_with("line 1"), "{e}");
    let e = err(&BASE.replace("database = \"app\"", "database = \"\""));
    assert!(
        e.contains("`upstream.database`") && e.contains("line 11"),
        "{e}"
    );
    let e = err(&BASE.replace("host = \"127.0.0.1\"\n", ""));
    assert!(e.contains("`host`") && e.starts_with("line 9:"), "{e}");
}

#[test]
fn duplicate_user_names_its_line_and_the_first_entry() {
    let e = err(&format!(
        "{BASE}\n[[users]]\nname = \"base\"\npassword = \"q\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n"
    ));
    assert!(e.contains("users[1].name") && e.contains("users[0]"), "{e}");
    assert!(e.starts_with("line 16:"), "{e}");
}

#[test]
fn no_users_and_cleartext_without_tls_are_refused() {
    let text = BASE.split("[server]").nth(1).unwrap();
    let e = err(&format!("[server]{text}"));
    assert!(
        e.contains("`users`") && e.contains("no client could log in"),
        "{e}"
    );
    let e = err(&format!("users = []\n[server]{text}"));
    assert!(e.contains("no client could log in"), "{e}");
    let e = err(&BASE.replace(
        "password = \"p\"\n",
        "password = \"p\"\nauth = \"password\"\n",
    ));
    assert!(e.contains("users[0].auth") && e.contains("TLS"), "{e}");
}

#[test]
fn unix_socket_upstream_is_a_path_without_tls() {
    let c = Config::from_toml(
        &BASE.replace("127.0.0.1\"\ndatabase", "/var/run/postgresql\"\ndatabase"),
    )
    .unwrap();
    assert_eq!(c.upstream.host, "/var/run/postgresql");
    let e = err(&BASE.replace(
        "host = \"127.0.0.1\"\n",
        "host = \"/var/run/postgresql\"\ntls = \"require\"\n",
    ));
    assert!(e.contains("upstream.tls") && e.contains("Unix"), "{e}");
    let c = Config::from_toml(&BASE.replace("listen = \"127.0.0.1:6432\"", "listen = \"/tmp\""))
        .unwrap();
    assert_eq!(c.server.listen.to_string(), "/tmp/.s.PGSQL.6432");
    assert_eq!(c.server.unix_socket_mode, 0o777);
    let e = err(&BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"/tmp\"\nunix_socket_mode = \"999\"",
    ));
    assert!(e.contains("octal"), "{e}");
    let e = err(&BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"/tmp\"\nrequire_tls = true\ntls_cert = \"c\"\ntls_key = \"k\"",
    ));
    assert!(
        e.contains("server.require_tls") && e.contains("Unix"),
        "{e}"
    );
    let c = Config::from_toml(&BASE.replace("127.0.0.1:6432", "*:6432")).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:6432");
}

#[test]
fn guc_names() {
    assert!(is_guc_name("app.tenant_id"));
    assert!(!is_guc_name("tenant_id"));
    assert!(!is_guc_name("app.1x"));
    assert!(!is_guc_name("app..x"));
}

#[test]
fn connection_caps_across_pools_are_validated() {
    let user = |extra: &str| {
        format!("{BASE}\n[[users]]\nname = \"batch\"\npassword = \"p\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n{extra}\n")
    };
    let c = Config::from_toml(&user("pool_size = 2\nmax_user_connections = 3")).unwrap();
    assert_eq!(
        (
            c.upstream.max_db_connections,
            c.upstream.max_user_connections
        ),
        (0, 0)
    );
    assert_eq!(
        crate::pool::limits::user_caps(&c),
        vec![("batch".to_string(), 2)],
        "the smaller of the two"
    );
    for bad in ["pool_size = 0", "pool_size = 21"] {
        let err = Config::from_toml(&user(bad)).unwrap_err();
        assert!(
            err.to_string().contains("users[1].pool_size"),
            "{bad}: {err}"
        );
    }
    let err = Config::from_toml(&format!(
        "{BASE}\n[[users]]\nname = \"a\"\npassword = \"p\"\nkind = \"admin\"\nmax_user_connections = 1\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("max_user_connections"), "{err}");
    let with = |upstream: &str| {
        BASE.replace(
            "password = \"x\"\n",
            &format!("password = \"x\"\n{upstream}\n"),
        )
    };
    let c = Config::from_toml(&with("max_db_connections = 5\nmax_user_connections = 4")).unwrap();
    assert_eq!(
        crate::pool::limits::user_caps(&c),
        vec![("base".to_string(), 4)]
    );
    let err = Config::from_toml(&with("min_pool_size = 3\nmax_db_connections = 2")).unwrap_err();
    assert!(
        err.to_string().contains("upstream.max_db_connections"),
        "{err}"
    );
}
