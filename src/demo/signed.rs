//! The demo in signed mode (`crate::signing`): the set-up that installs the key table and
//! `tenantgate.current_tenant()` and migrates the policies, and the walk-through step that
//! forges a tenant where the inspector cannot stop it and reads nothing.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::{Walk, ACME, ACME_APP, APP_ROLE, DATABASE, GLOBEX};
use crate::config::{PoolMode, ProbeAction};
use crate::server::Proxy;
use crate::signing::sql::{self, InstallOptions};
use crate::signing::{KeyRing, SigningKey};
use tenantgate_pgcluster::PgCluster;

/// The demo's tenant tables, their policy and tenant column (`schema.sql`).
const POLICIES: [(&str, &str); 5] = [
    ("tenants", "id"),
    ("customers", "tenant_id"),
    ("vehicles", "tenant_id"),
    ("services", "tenant_id"),
    ("appointments", "tenant_id"),
];

/// The SQL that moves the demo schema's policies from the raw setting to the signed context
/// (what an operator runs after `tenantgate signing install`; README "Migrating policies").
pub fn migrate_policies_sql() -> String {
    let mut s = String::from("BEGIN;\n");
    for (table, column) in POLICIES {
        s.push_str(&sql::policy_rewrite(table, "tenant_isolation", column));
        s.push('\n');
    }
    s.push_str("COMMIT;\n");
    s
}

/// Blocking set-up: a key file in `dir` (0600), `signing install`'s SQL, the policy migration,
/// and TEMPORARY for the app role (so the walk-through can show that even code the role
/// creates cannot forge the tenant; with signing on `verify` reports it as a warning).
pub fn install(cluster: &PgCluster, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let key = SigningKey::generate("demo1").context("generating a signing key")?;
    let ring = KeyRing::single(key);
    let path = dir.join("signing.keys");
    ring.write(&path)?;
    cluster
        .psql(DATABASE, &sql::install(&InstallOptions::default(), &ring))
        .context("installing the signed tenant context")?;
    cluster
        .psql(DATABASE, &migrate_policies_sql())
        .context("migrating the policies to tenantgate.current_tenant()")?;
    cluster
        .psql(
            DATABASE,
            &format!("GRANT TEMPORARY ON DATABASE {DATABASE} TO {}", APP_ROLE.0),
        )
        .context("granting TEMPORARY to the app role")?;
    println!(
        "Signed tenant context: key file {} (key demo1), tenantgate.current_tenant() installed, \
         policies read (SELECT tenantgate.current_tenant())::uuid",
        path.display()
    );
    Ok(path)
}

impl Walk {
    /// A second proxy on the same database with `probe_action = "log"` (the inspector records
    /// but lets the statement through) and session pooling (so a `pg_temp` function can be
    /// created): acme forges globex inside a function, and the policies still show nothing.
    pub(super) async fn forgery(&mut self) -> anyhow::Result<()> {
        let mut cfg = (*self.config).clone();
        cfg.security.probe_action = ProbeAction::Log;
        cfg.upstream.pool_mode = PoolMode::Session;
        cfg.server.listen =
            crate::config::listen::Listen::Tcp("127.0.0.1:0".parse().context("listen address")?);
        cfg.server.admin_listen = None;
        cfg.security.event_log = self
            .events
            .with_file_name("events-log-mode.jsonl")
            .display()
            .to_string();
        let proxy = Proxy::start(Arc::new(cfg))
            .await
            .context("starting the log-mode proxy")?;
        println!(
            "    (a second proxy on 127.0.0.1:{}, probe_action = \"log\": the inspector records, never blocks)",
            proxy.addr.port()
        );
        let result = self.forge(proxy.addr.port()).await;
        proxy.shutdown(std::time::Duration::from_secs(2)).await;
        result
    }

    async fn forge(&mut self, port: u16) -> anyhow::Result<()> {
        let main = std::mem::replace(&mut self.port, port);
        let c = self.connect(ACME_APP.name, ACME_APP.password).await;
        self.port = main;
        let c = c?;
        let create = "create function pg_temp.forge(t text) returns text language plpgsql as \
                      $$ begin return set_config('app.tenant_id', t, false); end $$";
        self.rows(&c, ACME_APP.name, create).await?;
        let forged = self
            .rows(
                &c,
                ACME_APP.name,
                &format!("select pg_temp.forge('{}')", GLOBEX.id),
            )
            .await?;
        self.check(
            forged == [GLOBEX.id.to_string()],
            "acme_app set app.tenant_id to globex inside a pg_temp function (the inspector only logged it)",
        );
        let count = self
            .rows(&c, ACME_APP.name, "select count(*) from customers")
            .await?;
        self.check(
            count == ["0".to_string()],
            "... and sees 0 customers: the forged tenant carries no valid signature for this backend",
        );
        let own = format!(
            "select count(*) from customers where tenant_id = '{}'",
            ACME.id
        );
        let n = self.rows(&c, ACME_APP.name, &own).await?;
        self.check(
            n == ["0".to_string()],
            "not even its own rows until the proxy re-signs: a forgery only ever loses rows",
        );
        Ok(())
    }
}
