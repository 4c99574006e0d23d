//! Client-side use of a running cluster: connection strings, `psql`, creating databases.

use super::*;

impl PgCluster {
    /// A libpq/tokio-postgres key=value connection string for `user` on `database`.
    pub fn conn_str(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname={} sslmode=disable",
            self.port,
            quote_conninfo(user),
            quote_conninfo(password),
            quote_conninfo(database)
        )
    }

    /// Runs `sql` (any number of statements, as a script) as the superuser over TCP with
    /// `psql -X -q -A -t -v ON_ERROR_STOP=1`, and returns stdout: unaligned rows, `|` between
    /// columns, no headers or command tags. An SQL error stops the script; the error carries
    /// psql's stderr.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        self.psql_as(SUPERUSER, &self.superuser_password, database, sql)
    }

    /// [`PgCluster::psql`] as another role (e.g. `app_user`, to see what RLS lets through).
    pub fn psql_as(
        &self,
        user: &str,
        password: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, ClusterError> {
        let conninfo = format!(
            "host={HOST} port={} user={} dbname={} sslmode=disable connect_timeout=10 \
             application_name=tenantgate-pgcluster",
            self.port,
            quote_conninfo(user),
            quote_conninfo(database)
        );
        let mut cmd = Command::new(client_tool(&self.instance.bindir, "psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(&conninfo)
        .env("PGPASSWORD", password)
        // These would change what the script sees; the conninfo overrides the rest.
        .env_remove("PGOPTIONS")
        .env_remove("PGSERVICE")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ClusterError::Io {
            what: format!("spawning {:?}", cmd.get_program()),
            source,
        })?;
        // Feed stdin from another thread: psql may fill stdout before it has read everything.
        let writer = child.stdin.take().map(|mut stdin| {
            let sql = sql.to_owned();
            std::thread::spawn(move || {
                // An early exit (ON_ERROR_STOP) closes the pipe; the exit status reports it.
                let _ = stdin.write_all(sql.as_bytes());
            })
        });
        let out = child
            .wait_with_output()
            .map_err(|source| ClusterError::Io {
                what: "waiting for psql".to_owned(),
                source,
            })?;
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ClusterError::Psql {
                user: user.to_owned(),
                database: database.to_owned(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// `CREATE DATABASE name [TEMPLATE template]`, both quoted as identifiers. Retries for a
    /// few seconds while the template is briefly in use (e.g. by autovacuum).
    pub fn create_database(&self, name: &str, template: Option<&str>) -> Result<(), ClusterError> {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
        if let Some(template) = template {
            let _ = write!(sql, " TEMPLATE {}", quote_ident(template));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.psql("postgres", &sql) {
                Err(ClusterError::Psql { stderr, .. })
                    if attempts < 10 && stderr.contains("is being accessed by other users") =>
                {
                    std::thread::sleep(Duration::from_millis(300));
                }
                other => return other.map(drop),
            }
        }
    }
}
