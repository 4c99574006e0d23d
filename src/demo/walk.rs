//! The narrated walk-through: each step connects as a demo user and checks what isolation
//! promises (own rows only, refusals, events, break-glass, posture).

use super::*;

/// An error a client got back, as the walk-through prints and checks it.
pub(super) struct Refusal {
    /// SQLSTATE.
    pub(super) code: String,
    /// Primary message.
    pub(super) message: String,
    /// HINT, if any.
    pub(super) hint: Option<String>,
}

impl Refusal {
    pub(super) fn of(e: &tokio_postgres::Error) -> Refusal {
        match e.as_db_error() {
            Some(db) => Refusal {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
                hint: db.hint().map(str::to_owned),
            },
            None => Refusal {
                code: "-----".to_owned(),
                message: e.to_string(),
                hint: None,
            },
        }
    }
}

/// The narrated walk-through: prints every statement and its result, and records every
/// expectation that did not hold.
pub(super) struct Walk {
    /// The proxy's port on 127.0.0.1.
    pub(super) port: u16,
    /// The proxy's configuration: `verify` checks its upstream role and tenant setting.
    pub(super) config: Arc<Config>,
    /// The JSON-lines security event log the proxy writes.
    pub(super) events: PathBuf,
    /// Step counter, for the headings.
    pub(super) step: usize,
    /// How many expectations were checked.
    pub(super) checks: usize,
    /// The expectations that did not hold.
    pub(super) failures: Vec<String>,
}

impl Walk {
    pub(super) fn new(port: u16, config: Arc<Config>, events: PathBuf) -> Walk {
        Walk {
            port,
            config,
            events,
            step: 0,
            checks: 0,
            failures: Vec::new(),
        }
    }

    /// Every step in order; a failing step is reported and the next one still runs.
    pub(super) async fn run(&mut self) {
        println!();
        println!("Walk-through: every statement below goes through tenantgate as app_user (NOBYPASSRLS),");
        println!("which sees no rows at all unless the proxy has injected the session's tenant.");

        self.heading("Fixed-tenant applications see only their own tenant");
        let r = timed(self.own_rows(ACME_APP, ACME)).await;
        self.outcome(r);
        let r = timed(self.own_rows(GLOBEX_APP, GLOBEX)).await;
        self.outcome(r);

        self.heading("A session without tenant is refused (fail-closed, 42501)");
        let r = timed(self.no_tenant()).await;
        self.outcome(r);

        self.heading("A chooser names its tenant at connect: shared_app.<globex id>");
        let r = timed(self.chooser()).await;
        self.outcome(r);

        self.heading("Tampering is refused and logged as a security event");
        let r = timed(self.tamper()).await;
        self.outcome(r);

        self.heading("Signed tenant context: a tenant forged inside a function reads nothing");
        let r = timed(self.forgery()).await;
        self.outcome(r);

        self.heading("Operators are audited; break-glass sees every tenant");
        let r = timed(self.operator()).await;
        self.outcome(r);
        let r = timed(self.breakglass()).await;
        self.outcome(r);

        self.heading("The database's own posture passes `tenantgate verify`");
        let r = timed(self.verify_posture()).await;
        self.outcome(r);
    }

    pub(super) fn heading(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("[{}] {title}", self.step);
    }

    /// Records an expectation; prints `ok` or `FAIL`.
    pub(super) fn check(&mut self, ok: bool, what: impl Display) {
        self.checks += 1;
        if ok {
            println!("    ok   {what}");
        } else {
            println!("    FAIL {what}");
            self.failures.push(format!("step {}: {what}", self.step));
        }
    }

    /// A step that could not run at all (connection refused, timeout) is a failure too.
    pub(super) fn outcome(&mut self, r: anyhow::Result<()>) {
        if let Err(e) = r {
            self.check(false, format!("step could not run: {e:#}"));
        }
    }

    /// Prints the summary; true when every expectation held.
    pub(super) fn summary(&self) -> bool {
        println!();
        if self.failures.is_empty() {
            println!(
                "Walk-through passed: all {} checks held. Tenant isolation is enforced by the proxy.",
                self.checks
            );
            true
        } else {
            println!(
                "Walk-through FAILED: {} of {} checks did not hold:",
                self.failures.len(),
                self.checks
            );
            for f in &self.failures {
                println!("  - {f}");
            }
            false
        }
    }

    pub(super) async fn connect(&self, login: &str, password: &str) -> anyhow::Result<Client> {
        let conn = format!(
            "host=127.0.0.1 port={} user='{login}' password='{password}' dbname={DATABASE} \
             sslmode=disable connect_timeout=10 application_name=tenantgate-demo",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&conn, NoTls)
            .await
            .with_context(|| format!("connecting as {login}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs `sql` (simple protocol) and returns the first column of every row.
    pub(super) async fn rows(
        &self,
        c: &Client,
        who: &str,
        sql: &str,
    ) -> anyhow::Result<Vec<String>> {
        let msgs = c
            .simple_query(sql)
            .await
            .with_context(|| format!("{who}: {sql}"))?;
        let rows: Vec<String> = msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
                _ => None,
            })
            .collect();
        println!("    {who:<16}> {sql:<48} -> {}", rows.join(", "));
        Ok(rows)
    }

    /// Runs `sql`, expecting an error; prints it.
    pub(super) async fn refused(&self, c: &Client, who: &str, sql: &str) -> Option<Refusal> {
        match c.simple_query(sql).await {
            Ok(_) => {
                println!("    {who:<16}> {sql:<48} -> (allowed)");
                None
            }
            Err(e) => {
                let r = Refusal::of(&e);
                println!(
                    "    {who:<16}> {sql:<48} -> ERROR {}: {}",
                    r.code, r.message
                );
                if let Some(h) = &r.hint {
                    println!("    {:<16}  {:<48}    HINT: {h}", "", "");
                }
                Some(r)
            }
        }
    }

    /// Waits for events matching `pred` in the log; prints and returns their raw lines.
    pub(super) async fn events(
        &self,
        label: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            let text = tokio::fs::read_to_string(&self.events)
                .await
                .unwrap_or_default();
            let found: Vec<String> = text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| pred(&v))
                })
                .map(str::to_owned)
                .collect();
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                println!("    event log ({label}):");
                for line in &found {
                    println!("      {line}");
                }
                if found.is_empty() {
                    println!("      (none)");
                }
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) async fn own_rows(&mut self, user: DemoUser, t: SeedTenant) -> anyhow::Result<()> {
        let c = self.connect(user.name, user.password).await?;
        let count = self
            .rows(&c, user.name, "select count(*) from customers")
            .await?;
        let names = self
            .rows(&c, user.name, "select name from customers order by id")
            .await?;
        let setting = self
            .rows(&c, user.name, "select current_setting('app.tenant_id')")
            .await?;
        self.check(
            count == [t.customers.to_string()],
            format!(
                "{} counts {} customers: {}'s own",
                user.name, t.customers, t.slug
            ),
        );
        self.check(
            names.len() as i64 == t.customers && names.iter().all(|n| n.starts_with(t.slug)),
            format!(
                "every customer name {} sees starts with `{}`",
                user.name, t.slug
            ),
        );
        self.check(
            setting == [t.id],
            format!(
                "app.tenant_id inside its transaction is {} ({})",
                t.id, t.slug
            ),
        );
        Ok(())
    }

    pub(super) async fn no_tenant(&mut self) -> anyhow::Result<()> {
        let c = self.connect(SHARED_APP.name, SHARED_APP.password).await?;
        let sql = "select count(*) from customers";
        let r = self.refused(&c, SHARED_APP.name, sql).await;
        let code = r.as_ref().map(|r| r.code.as_str());
        self.check(
            code == Some("42501"),
            "shared_app without a tenant is refused with 42501, before reaching PostgreSQL",
        );
        let hint = r.as_ref().and_then(|r| r.hint.as_deref()).unwrap_or("");
        self.check(
            hint.contains("shared_app.<tenant>"),
            "the hint tells the client how to name a tenant",
        );
        let ev = self
            .events("no_tenant_refused", |v| {
                v["event"] == "no_tenant_refused" && v["user"] == SHARED_APP.name
            })
            .await;
        self.check(
            !ev.is_empty(),
            "the refusal is recorded as no_tenant_refused",
        );
        Ok(())
    }

    pub(super) async fn chooser(&mut self) -> anyhow::Result<()> {
        let login = format!("{}.{}", SHARED_APP.name, GLOBEX.id);
        let c = self.connect(&login, SHARED_APP.password).await?;
        let who = "shared_app.2222…";
        let count = self.rows(&c, who, "select count(*) from customers").await?;
        let names = self
            .rows(&c, who, "select name from customers order by id")
            .await?;
        self.check(
            count == [GLOBEX.customers.to_string()]
                && names.iter().all(|n| n.starts_with(GLOBEX.slug)),
            format!(
                "shared_app.<globex> sees globex's {} customers only",
                GLOBEX.customers
            ),
        );
        Ok(())
    }

    pub(super) async fn tamper(&mut self) -> anyhow::Result<()> {
        let c = self.connect(ACME_APP.name, ACME_APP.password).await?;
        let switch = format!("set app.tenant_id = '{}'", GLOBEX.id);
        let r = self.refused(&c, ACME_APP.name, &switch).await;
        self.check(
            r.is_some_and(|r| r.code == "42501"),
            "acme_app cannot switch itself to globex (42501)",
        );
        let r = self.refused(&c, ACME_APP.name, "set role postgres").await;
        self.check(
            r.is_some_and(|r| r.code == "42501"),
            "acme_app cannot become another role (42501)",
        );
        let count = self
            .rows(&c, ACME_APP.name, "select count(*) from customers")
            .await?;
        self.check(
            count == [ACME.customers.to_string()],
            "the session is still acme after the attempts",
        );
        let tenant = self
            .events("tenant_tamper", |v| {
                v["event"] == "tenant_tamper"
                    && v["user"] == ACME_APP.name
                    && v["action"] == "block"
            })
            .await;
        self.check(
            !tenant.is_empty(),
            "tenant_tamper recorded with action block",
        );
        let role = self
            .events("role_tamper", |v| {
                v["event"] == "role_tamper" && v["user"] == ACME_APP.name && v["action"] == "block"
            })
            .await;
        self.check(!role.is_empty(), "role_tamper recorded with action block");
        Ok(())
    }

    pub(super) async fn operator(&mut self) -> anyhow::Result<()> {
        let login = format!("{}.{}", ALICE.name, ACME.id);
        let c = self.connect(&login, ALICE.password).await?;
        let count = self
            .rows(&c, "alice.1111…", "select count(*) from customers")
            .await?;
        self.check(
            count == [ACME.customers.to_string()],
            "operator alice, bound to acme, sees acme's rows",
        );
        let ev = self
            .events("operator_statement", |v| {
                v["event"] == "operator_statement" && v["user"] == ALICE.name
            })
            .await;
        self.check(
            !ev.is_empty(),
            "alice's statement is recorded as operator_statement",
        );
        Ok(())
    }

    pub(super) async fn breakglass(&mut self) -> anyhow::Result<()> {
        let c = self.connect(ROOT_ADMIN.name, ROOT_ADMIN.password).await?;
        let sql = "select t.slug || '=' || count(c.id) from tenants t \
                   left join customers c on c.tenant_id = t.id group by t.slug order by t.slug";
        let counts = self.rows(&c, ROOT_ADMIN.name, sql).await?;
        let expected: Vec<String> = TENANTS
            .iter()
            .map(|t| format!("{}={}", t.slug, t.customers))
            .collect();
        self.check(
            counts == expected,
            "break-glass root_admin (tenant_admin, BYPASSRLS) sees all four tenants",
        );
        let ev = self
            .events("breakglass", |v| {
                v["user"] == ROOT_ADMIN.name
                    && (v["event"] == "breakglass_session" || v["event"] == "breakglass_statement")
            })
            .await;
        self.check(!ev.is_empty(), "the break-glass session is recorded");
        Ok(())
    }

    /// `tenantgate verify` against the same role the app pool logs in as: RLS forced, no
    /// BYPASSRLS, policies fail-closed, and the live probes (no rows without tenant, none of
    /// another tenant's rows).
    pub(super) async fn verify_posture(&mut self) -> anyhow::Result<()> {
        let target = crate::verify::Target::from_upstream(&self.config.upstream)?;
        let opts = crate::verify::Options {
            setting: self.config.tenant.setting.clone(),
            column: self.config.tenant.column.clone(),
            tenants: TENANTS.iter().map(|t| t.id.to_owned()).collect(),
            scope: crate::verify::Scope::Full,
            strict_keys: true,
            signed: true,
            signing_key: self
                .config
                .tenant
                .resolved_signing_keys
                .as_deref()
                .map(|k| k.current().clone()),
        };
        println!(
            "    $ {}",
            verify_command(
                self.config.upstream.port,
                self.config.tenant.signing_key_file.as_deref()
            )
        );
        let report = crate::verify::run_target(&target, &opts).await?;
        // The check lines and the verdict; the (wide) policy table is `verify`'s own output.
        for line in report
            .render_text()
            .lines()
            .filter(|l| l.starts_with('[') || l.starts_with("       ") || l.starts_with("result:"))
        {
            println!("      {line}");
        }
        self.check(
            !report.failed(),
            format!(
                "verify passes for {}: the database itself enforces isolation",
                self.config.upstream.user
            ),
        );
        Ok(())
    }
}

/// The `tenantgate verify` command line that runs exactly the walk-through's check: the app
/// role with its password, and the seeded tenants for the cross-tenant probe (without them the
/// probe would read a `tenants` table the app role cannot see, and skip).
pub(super) fn verify_command(pg_port: u16, keys: Option<&Path>) -> String {
    let tenants: Vec<String> = TENANTS
        .iter()
        .map(|t| format!("--tenant {}", t.id))
        .collect();
    let signed = keys
        .map(|k| format!(" --signing-key-file {}", k.display()))
        .unwrap_or_default();
    format!(
        "tenantgate verify --database-url \"host=127.0.0.1 port={pg_port} user={} password={} dbname={DATABASE} sslmode=disable\" {}{signed}",
        APP_ROLE.0,
        APP_ROLE.1,
        tenants.join(" ")
    )
}

/// Bounds one step, so a hung connection fails the step instead of hanging the demo.
pub(super) async fn timed<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {STEP_TIMEOUT:?}")))
}
