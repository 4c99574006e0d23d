//! `tenantgate demo --non-interactive`, run as the built binary: it starts its own throwaway
//! PostgreSQL, walks through tenant isolation, exits 0 and leaves nothing behind.

use std::process::Command;

#[test]
fn demo_walks_through_isolation_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantgate"))
        .args(["demo", "--non-interactive"])
        .env_remove("RUST_LOG")
        .output()
        .expect("tenantgate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let expect = [
        // (a) both fixed tenants count their own customers and see their own names.
        "acme_app counts 3 customers: acme's own",
        "acme customer 1, acme customer 2, acme customer 3",
        "globex_app counts 5 customers: globex's own",
        "app.tenant_id inside its transaction is 22222222-2222-2222-2222-222222222222",
        // (b) the fail-closed refusal, with its message and hint.
        "ERROR 42501: tenantgate: no tenant context for this session",
        "HINT: Connect as \"shared_app.<tenant>\"",
        // (c) the chooser.
        "shared_app.<globex> sees globex's 5 customers only",
        // (d) tampering refused, and the event log lines shown.
        "\"event\":\"tenant_tamper\"",
        "\"event\":\"role_tamper\"",
        // (e) operator audit and break-glass.
        "\"event\":\"operator_statement\"",
        "acme=3, globex=5, initech=7, umbrella=9",
        // (f) the database's own posture.
        "verify passes for app_user",
        "Walk-through passed",
        // The admin console, health and metrics can be tried from the demo.
        "user=pgadmin dbname=tenantgate",
        "/health/ready",
        "/metrics",
        // The verify line shown is the one that was run: password and tenants included.
        "user=app_user password=app_password dbname=autoshop sslmode=disable\" --tenant 11111111-1111-1111-1111-111111111111 --tenant 22222222",
        "Cleaned up: PostgreSQL stopped",
    ];
    for needle in expect {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");

    // Both temporary directories named in the output are gone.
    let cleaned = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Cleaned up: PostgreSQL stopped; removed "))
        .expect("cleanup line");
    for dir in cleaned.trim_end_matches('.').split(" and ") {
        assert!(!std::path::Path::new(dir).exists(), "{dir} was left behind");
    }
}
