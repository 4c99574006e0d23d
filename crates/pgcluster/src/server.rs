//! Server-side steps of a cluster's life: `initdb`, its settings, starting `postgres` and
//! waiting until it accepts connections, and `pg_ctl`.

use super::*;

impl PgCluster {
    /// `initdb` into `data/` with a SCRAM-protected superuser.
    pub(crate) fn initdb(&self, owner: Option<(u32, u32)>) -> Result<(), ClusterError> {
        let pwfile = self.instance.root.join("pwfile");
        write_private(
            &pwfile,
            format!("{}\n", self.superuser_password).as_bytes(),
            owner,
        )?;
        let mut cmd = self.instance.server_cmd("initdb");
        cmd.arg("-D")
            .arg(&self.instance.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        let out = run(&mut cmd);
        let _ = fs::remove_file(&pwfile);
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.command_error("initdb", &out, false))
        }
    }

    /// Appends our settings to `postgresql.conf` (later lines win over initdb's).
    pub(crate) fn write_settings(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let mut conf =
            String::from("\n# --- tenantgate throwaway cluster: fast, not durable ---\n");
        let settings: [(&str, String); 11] = [
            ("listen_addresses", quote_conf(HOST)),
            (
                "unix_socket_directories",
                quote_conf(&self.instance.root.to_string_lossy()),
            ),
            ("max_connections", opts.max_connections.to_string()),
            ("shared_buffers", "128MB".to_owned()),
            ("password_encryption", quote_conf("scram-sha-256")),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            // `pg_ctl -l` sends stderr to postgres.log; no collector needed.
            ("logging_collector", "off".to_owned()),
            ("log_min_messages", "warning".to_owned()),
            ("log_line_prefix", quote_conf("%m [%p] %q%u@%d ")),
        ];
        for (name, value) in &settings {
            let _ = writeln!(conf, "{name} = {value}");
        }
        for (name, value) in &opts.extra_settings {
            let _ = writeln!(conf, "{name} = {value}");
        }
        self.append_conf(&conf)
    }

    pub(crate) fn append_conf(&self, text: &str) -> Result<(), ClusterError> {
        let path = self.instance.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| ClusterError::Io {
                what: format!("appending to {}", path.display()),
                source,
            })
    }

    /// `pg_ctl start` on a free port; picks another port if the first was taken meanwhile.
    pub(crate) fn start_server(&mut self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let timeout = opts.start_timeout.as_secs().max(1).to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = match opts.port {
                Some(port) => port,
                None => free_port()?,
            };
            self.append_conf(&format!("port = {}\n", self.port))?;
            let log_before = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            let out = self.pg_ctl(&["-w", "-t", &timeout, "-s", "start"], true)?;
            if out.status.success() {
                return Ok(());
            }
            let new_log = fs::read(&self.log_path)
                .map(|log| {
                    String::from_utf8_lossy(&log[(log_before as usize).min(log.len())..])
                        .into_owned()
                })
                .unwrap_or_default();
            let port_taken =
                new_log.contains("could not bind") || new_log.contains("Address already in use");
            if opts.port.is_none() && port_taken && attempt < 3 {
                tracing::debug!(
                    port = self.port,
                    "port taken before the server bound it; retrying"
                );
                continue;
            }
            return Err(self.command_error("pg_ctl start", &out, true));
        }
    }

    /// Polls until the server accepts a superuser login over TCP.
    pub(crate) fn wait_ready(&self, deadline: Instant) -> Result<(), ClusterError> {
        let began = Instant::now();
        let pg_isready = client_tool(&self.instance.bindir, "pg_isready");
        loop {
            // pg_isready is cheap and needs no password; the psql login then proves SCRAM works.
            let accepting = Command::new(&pg_isready)
                .args([
                    "-q", "-t", "2", "-h", HOST, "-U", SUPERUSER, "-d", "postgres", "-p",
                ])
                .arg(self.port.to_string())
                .stdin(Stdio::null())
                .output()
                .map(|out| out.status.success())
                // No pg_isready: let psql decide.
                .unwrap_or(true);
            if accepting {
                match self.psql("postgres", "SELECT 1") {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(ClusterError::NotReady {
                            port: self.port,
                            waited: began.elapsed(),
                            log_tail: format!(
                                "{}\n(last attempt: {e})",
                                self.log_tail(LOG_TAIL_LINES)
                            ),
                        })
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    port: self.port,
                    waited: began.elapsed(),
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pg_ctl -D <data> [-l <log>] <args>` as the server's OS user.
    pub(crate) fn pg_ctl(&self, args: &[&str], with_log: bool) -> Result<Output, ClusterError> {
        let mut cmd = self.instance.server_cmd("pg_ctl");
        cmd.arg("-D").arg(&self.instance.data_dir);
        if with_log {
            cmd.arg("-l").arg(&self.log_path);
        }
        cmd.args(args);
        run(&mut cmd)
    }

    pub(crate) fn command_error(&self, what: &str, out: &Output, with_log: bool) -> ClusterError {
        ClusterError::Command {
            what: what.to_owned(),
            status: out.status.to_string(),
            output: combined_output(out),
            log_tail: if with_log {
                self.log_tail(LOG_TAIL_LINES)
            } else {
                String::new()
            },
        }
    }
}
