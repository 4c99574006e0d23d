//! The throwaway cluster and the demo schema: the cluster starts, the template holds the four
//! seeded tenants, and RLS is fail-closed for `app_user` while `SET LOCAL app.tenant_id`
//! scopes it to exactly one tenant.

mod common;

use common::*;
use tokio_postgres::{Client, NoTls};

async fn connect(user: &str, password: &str, database: &str) -> Client {
    let conn_str = cluster().conn_str(user, password, database);
    let (client, connection) = tokio_postgres::connect(&conn_str, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting as {user} to {database}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[test]
fn cluster_starts_and_answers_as_superuser() {
    let cluster = cluster();
    assert_eq!(cluster.host(), "127.0.0.1");
    assert_eq!(cluster.superuser(), "postgres");
    assert!(cluster.data_dir().join("PG_VERSION").exists());
    assert_eq!(
        cluster.psql("postgres", "SELECT 40 + 2").unwrap().trim(),
        "42"
    );

    let err = cluster
        .psql("postgres", "SELECT * FROM no_such_table")
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[test]
fn superuser_sees_every_seeded_tenant() {
    let db = fresh_database("seeded");
    let cluster = cluster();
    let rows = cluster
        .psql(
            &db,
            "SELECT t.slug, t.id,
                    (SELECT count(*) FROM customers c WHERE c.tenant_id = t.id),
                    (SELECT count(*) FROM vehicles v WHERE v.tenant_id = t.id),
                    (SELECT count(*) FROM services s WHERE s.tenant_id = t.id),
                    (SELECT count(*) FROM appointments a WHERE a.tenant_id = t.id)
             FROM tenants t ORDER BY t.id",
        )
        .unwrap();
    let expected: Vec<String> = TENANTS
        .iter()
        .map(|t| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                t.slug, t.id, t.customers, t.vehicles, t.services, t.appointments
            )
        })
        .collect();
    assert_eq!(rows.lines().collect::<Vec<_>>(), expected);

    // Every customer is recognisable by its tenant's slug.
    let strays = cluster
        .psql(
            &db,
            "SELECT count(*) FROM customers c JOIN tenants t ON t.id = c.tenant_id
             WHERE c.name NOT LIKE t.slug || ' customer %'",
        )
        .unwrap();
    assert_eq!(strays.trim(), "0");

    // RLS is enabled and forced on every table the schema creates.
    let unprotected = cluster
        .psql(
            &db,
            "SELECT relname FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
               AND NOT (relrowsecurity AND relforcerowsecurity)",
        )
        .unwrap();
    assert_eq!(unprotected.trim(), "", "tables without forced RLS");
}

#[test]
fn fresh_databases_are_independent() {
    let a = fresh_database("independent");
    let b = fresh_database("independent");
    assert_ne!(a, b);
    let cluster = cluster();
    cluster
        .psql(
            &a,
            &format!("DELETE FROM appointments WHERE tenant_id = '{}'", ACME.id),
        )
        .unwrap();
    let in_a = cluster
        .psql(&a, "SELECT count(*) FROM appointments")
        .unwrap();
    let in_b = cluster
        .psql(&b, "SELECT count(*) FROM appointments")
        .unwrap();
    assert_eq!(
        in_a.trim(),
        (TOTAL_APPOINTMENTS - ACME.appointments).to_string()
    );
    assert_eq!(in_b.trim(), TOTAL_APPOINTMENTS.to_string());
}

#[tokio::test]
async fn app_user_without_tenant_sees_nothing() {
    let db = fresh_database("fail_closed");
    let client = connect(APP_USER, APP_PASSWORD, &db).await;
    for table in TENANT_TABLES.iter().chain(&["tenants"]) {
        assert_eq!(
            count(&client, table).await,
            0,
            "{table} without tenant context"
        );
    }
    // An empty setting (what RESET leaves behind) is just as closed.
    client
        .batch_execute("SET app.tenant_id = ''")
        .await
        .unwrap();
    assert_eq!(count(&client, "customers").await, 0);
}

#[tokio::test]
async fn app_user_with_set_local_sees_exactly_its_tenant() {
    let db = fresh_database("set_local");
    let client = connect(APP_USER, APP_PASSWORD, &db).await;
    for tenant in TENANTS {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL {TENANT_SETTING} = '{}'",
                tenant.id
            ))
            .await
            .unwrap();
        for table in TENANT_TABLES {
            assert_eq!(
                count(&client, table).await,
                common::seeded(&tenant, table),
                "{} {table}",
                tenant.slug
            );
        }
        let slugs: Vec<String> = client
            .query("SELECT slug FROM tenants", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(slugs, [tenant.slug]);
        let foreign: i64 = client
            .query_one(
                "SELECT count(*) FROM customers WHERE name NOT LIKE $1",
                &[&format!("{} customer %", tenant.slug)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            foreign, 0,
            "{} sees another tenant's customers",
            tenant.slug
        );
        client.batch_execute("COMMIT").await.unwrap();

        // SET LOCAL ends with the transaction: closed again.
        assert_eq!(
            count(&client, "customers").await,
            0,
            "after COMMIT ({})",
            tenant.slug
        );
    }
}

#[tokio::test]
async fn app_user_cannot_write_into_another_tenant() {
    let db = fresh_database("with_check");
    let client = connect(APP_USER, APP_PASSWORD, &db).await;
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL {TENANT_SETTING} = '{}'",
            ACME.id
        ))
        .await
        .unwrap();
    let err = client
        .execute(
            "INSERT INTO customers (tenant_id, name) VALUES ($1::text::uuid, 'globex intruder')",
            &[&GLOBEX.id],
        )
        .await
        .unwrap_err();
    assert_sqlstate(&err, "42501");
    client.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn tenant_admin_bypasses_rls() {
    let db = fresh_database("admin");
    let client = connect(TENANT_ADMIN, TENANT_ADMIN_PASSWORD, &db).await;
    assert_eq!(count(&client, "customers").await, TOTAL_CUSTOMERS);
    assert_eq!(count(&client, "vehicles").await, TOTAL_VEHICLES);
    assert_eq!(count(&client, "services").await, TOTAL_SERVICES);
    assert_eq!(count(&client, "appointments").await, TOTAL_APPOINTMENTS);
}

/// A cluster of its own, since restarting the shared one would cut the other tests' sessions.
#[test]
fn private_cluster_restarts_on_its_port_and_cleans_up() {
    use tenantgate_pgcluster::{ClusterOptions, PgCluster};

    let mut private = PgCluster::start(ClusterOptions {
        superuser_password: "it's a \"secret\"".to_owned(),
        ..ClusterOptions::default()
    })
    .unwrap();
    let port = private.port();
    let root = private.data_dir().parent().unwrap().to_owned();
    private.create_database("it's \"odd\"", None).unwrap();
    private.restart_fast().unwrap();
    assert_eq!(private.port(), port);
    let listed = private
        .psql(
            "it's \"odd\"",
            "SELECT current_database(), current_setting('fsync')",
        )
        .unwrap();
    assert_eq!(listed.trim(), "it's \"odd\"|off");

    private.stop();
    private.stop(); // idempotent
    assert!(!root.exists(), "{} left behind", root.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening"
    );
}
