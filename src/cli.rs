//! Command line: `serve`, `check-config`, `hash-password`, `verify`, `signing`, `demo`, and
//! `healthcheck`, which the container image uses (and more as they land).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::{Verifier, SCRAM_ITERATIONS};
use crate::config::Config;
use crate::server::Proxy;
use crate::shutdown::{self, Signal};

pub mod signing;
pub mod signing_install;
mod terminal;

/// tenantgate: a PostgreSQL proxy that injects the tenant into every transaction.
#[derive(Debug, Parser)]
#[command(name = "tenantgate", version, about)]
pub struct Cli {
    /// The subcommand to run; with none, clap prints the help and exits 2.
    #[command(subcommand)]
    pub command: Command,
}

/// One variant per subcommand: each variant's and field's doc comment is its `--help` text.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// Path of the TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Exit 1 at start if the upstream cannot be reached or rejects the proxy's login,
        /// instead of retrying in the background (for runs without a supervisor).
        #[arg(long)]
        fail_fast: bool,
    },
    /// Validate a configuration file as `serve` would (every file it names is opened and
    /// parsed, the event log's directory must be writable); nothing is connected to. Exit 0 if
    /// valid, 1 with the offending key and line otherwise.
    CheckConfig {
        /// Path of the TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a SCRAM-SHA-256 verifier for `[[users]] scram`. On a terminal the password is
    /// asked for twice without echo; otherwise stdin is read, and exactly one trailing line
    /// ending (`\n` or `\r\n`) is removed.
    HashPassword {
        /// PBKDF2 iterations (at least 4096, PostgreSQL's default).
        #[arg(long, default_value_t = SCRAM_ITERATIONS, value_parser = iterations)]
        iterations: u32,
    },
    /// Check that the database enforces tenant isolation (RLS posture): exit 0 when nothing
    /// fails, 1 when something fails, 2 when it cannot connect or query.
    Verify {
        /// libpq URL or key=value string of the role to check (the role tenantgate logs in as).
        #[arg(long)]
        database_url: String,
        /// The custom setting the policies must read.
        #[arg(long, default_value = "app.tenant_id")]
        setting: String,
        /// The column that marks a tenant table.
        #[arg(long, default_value = "tenant_id")]
        tenant_column: String,
        /// A tenant id for the cross-tenant probe (repeatable); default: read a `tenants` table.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
        /// Count unique and foreign keys without the tenant column as failures (check 9).
        #[arg(long)]
        require_tenant_keys: bool,
        /// Judge for signed tenant context (check 10; policies must call
        /// tenantgate.current_tenant()).
        #[arg(long)]
        signed: bool,
        /// The proxy's key file: implies --signed, and check 10 also verifies that the
        /// database accepts this key's signatures.
        #[arg(long)]
        signing_key_file: Option<PathBuf>,
    },
    /// Signed tenant context: install the key table and `tenantgate.current_tenant()`,
    /// rotate and remove keys (README, "Signed tenant context").
    Signing {
        /// `install` or `remove-key`.
        #[command(subcommand)]
        command: signing::SigningCommand,
    },
    /// Start a throwaway PostgreSQL and a proxy, and walk through tenant isolation.
    #[cfg(feature = "demo")]
    Demo {
        /// Run the walk-through and exit (0 only if every check held) instead of waiting.
        #[arg(long)]
        non_interactive: bool,
        /// Proxy port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// HTTP GET `url` and exit 0 on a 2xx answer (container HEALTHCHECK without curl).
    Healthcheck {
        /// `http://host:port/path` (plain HTTP only).
        #[arg(long, default_value = "http://127.0.0.1:9187/health/live")]
        url: String,
        /// Seconds to wait for connect and answer.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
}

/// An error and its causes on one line, each cause written once: error types that already
/// include their source in their message (`cannot listen on …: Address already in use`) would
/// otherwise print it twice with anyhow's `{:#}`.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if text.contains(&t) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&t);
    }
    text
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::CheckConfig { config } => match Config::load_checked(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                Ok(0)
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                Ok(1)
            }
        },
        Command::HashPassword { iterations } => {
            let password = if terminal::stdin_is_tty() {
                let first = terminal::prompt_hidden("Password: ")
                    .context("reading the password from the terminal")?;
                let second = terminal::prompt_hidden("Enter it again: ")
                    .context("reading the password from the terminal")?;
                if first != second {
                    eprintln!("tenantgate hash-password: the passwords do not match");
                    return Ok(1);
                }
                first
            } else {
                let mut input = String::new();
                std::io::stdin()
                    .read_to_string(&mut input)
                    .context("reading the password from stdin")?;
                strip_one_line_ending(&input).to_owned()
            };
            if password.is_empty() {
                eprintln!("tenantgate hash-password: empty password");
                return Ok(1);
            }
            if password.contains(['\n', '\r']) {
                eprintln!("tenantgate hash-password: the password contains a line break; give it on one line (exactly one trailing line ending is removed)");
                return Ok(1);
            }
            let v = Verifier::derive(&password, rand::random::<[u8; 16]>().to_vec(), iterations);
            println!("{}", v.to_pg_string());
            Ok(0)
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            non_interactive,
            port,
        } => crate::demo::run(crate::demo::DemoOptions {
            non_interactive,
            port,
        }),
        Command::Signing { command } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            Ok(rt.block_on(signing::run(command)))
        }
        Command::Healthcheck { url, timeout } => {
            // NaN becomes 0.1 (`max` ignores NaN); infinity is capped (no Duration overflow).
            let timeout = crate::config::secs(timeout.clamp(0.1, 3600.0));
            match healthcheck(&url, timeout) {
                Ok(status) => {
                    println!("{url}: {status}");
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{url}: {e}");
                    Ok(1)
                }
            }
        }
        Command::Verify {
            database_url,
            setting,
            tenant_column,
            tenants,
            json,
            require_tenant_keys,
            signed,
            signing_key_file,
        } => {
            let signing_key = match &signing_key_file {
                Some(path) => match crate::signing::KeyRing::load(path) {
                    Ok(k) => Some(k.current().clone()),
                    Err(e) => {
                        eprintln!("tenantgate verify: --signing-key-file {e}");
                        return Ok(2);
                    }
                },
                None => None,
            };
            let opts = crate::verify::Options {
                setting,
                column: tenant_column,
                tenants,
                scope: crate::verify::Scope::Full,
                strict_keys: require_tenant_keys,
                signed: signed || signing_key.is_some(),
                signing_key,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            Ok(rt.block_on(verify(&database_url, &opts, json)))
        }
        Command::Serve { config, fail_fast } => {
            let cfg = match Config::load_checked(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tenantgate: {}: {e}", config.display());
                    return Ok(1);
                }
            };
            crate::telemetry::init(cfg.server.log_format);
            let rt = runtime(cfg.server.worker_threads).context("starting the runtime")?;
            if fail_fast {
                if let Err(e) = rt.block_on(first_login(&cfg)) {
                    tracing::error!("--fail-fast: {e}");
                    eprintln!("tenantgate: --fail-fast: {e}");
                    return Ok(1);
                }
            }
            rt.block_on(serve(Arc::new(cfg), config))?;
            Ok(0)
        }
    }
}

/// `--fail-fast`: one login as the `[upstream]` role before serving; the error says whether
/// the server refused it (not transient) or could not be reached.
async fn first_login(cfg: &Config) -> Result<(), String> {
    let target = crate::verify::Target::from_upstream(&cfg.upstream).map_err(|e| e.to_string())?;
    match target.connect().await {
        Ok(session) => {
            session.close().await;
            Ok(())
        }
        Err(e) => Err(match crate::verify::connect::rejected(&e) {
            Some(why) => format!("the upstream server rejected tenantgate's login: {why} (not transient: fix the [upstream] credentials)"),
            None => format!("the upstream is not reachable: {e}"),
        }),
    }
}

/// clap parser for `--iterations`: PostgreSQL's default is the floor; fewer make a stolen
/// verifier cheap to brute-force.
fn iterations(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("\"{s}\" is not a whole number"))?;
    if n < SCRAM_ITERATIONS {
        return Err(format!(
            "must be at least {SCRAM_ITERATIONS} (PostgreSQL's default); fewer iterations make a leaked verifier cheap to crack"
        ));
    }
    Ok(n)
}

/// Removes exactly one trailing `\r\n` or `\n` (what `echo` or a text file adds), nothing else.
fn strip_one_line_ending(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// The runtime for `serve`: one event loop (`worker_threads = 1`), or a work-stealing pool of
/// `n` threads (0: one per core). Blocking work (SCRAM key derivation) has its own pool either way.
fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

/// `tenantgate verify`: prints the report (or JSON) and returns the exit code (0, 1 or 2).
async fn verify(url: &str, opts: &crate::verify::Options, json: bool) -> i32 {
    let result = match crate::verify::Target::from_url(url) {
        Ok(target) => crate::verify::run_target(&target, opts).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("tenantgate verify: cannot encode the report: {e}");
                        return 2;
                    }
                }
            } else {
                print!("{}", report.render_text());
            }
            i32::from(report.failed())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "error",
                        "error": e.to_string(),
                        "sqlstate": crate::verify::connect::sqlstate(&e),
                    })
                );
            }
            eprintln!("tenantgate verify: {e}");
            2
        }
    }
}

async fn serve(cfg: Arc<Config>, path: PathBuf) -> anyhow::Result<()> {
    let grace = crate::config::secs(cfg.server.shutdown_timeout);
    // Before the start-up checks, which can take a while: SIGTERM then stops cleanly.
    let mut signals = shutdown::Signals::install()?;
    let start = Proxy::start(cfg);
    tokio::pin!(start);
    let proxy = loop {
        tokio::select! {
            p = &mut start => break p?,
            s = signals.next() => match s {
                Signal::Reload => tracing::info!("SIGHUP during start-up: ignored (the file was just read)"),
                s => {
                    tracing::info!(signal = ?s, "stopping during start-up");
                    return Ok(());
                }
            },
        }
    };
    let _ = proxy.shared.config_path.set(path.clone());
    let refused = proxy.shared.posture.refused.clone();
    let console_stop = proxy.shared.console.stop.clone();
    loop {
        let signal = tokio::select! {
            s = signals.next() => s,
            _ = console_stop.cancelled() => {
                if proxy.shared.console.stop_drains() {
                    tracing::info!(?grace, "console SHUTDOWN WAIT_FOR_CLIENTS: draining");
                    proxy.shutdown(grace).await;
                } else {
                    tracing::info!("console SHUTDOWN: stopping now");
                }
                return Ok(());
            }
            _ = refused.cancelled() => {
                let why = proxy.shared.posture.refusal().unwrap_or_else(|| "RLS posture refused".to_owned());
                proxy.shutdown(grace).await;
                anyhow::bail!(why);
            }
        };
        match signal {
            Signal::Reload => {
                tracing::info!("SIGHUP: reloading the configuration");
                proxy.shared.reload(&path).await;
            }
            Signal::Drain => {
                tracing::info!(?grace, "SIGTERM: draining");
                proxy.shutdown(grace).await;
                return Ok(());
            }
            Signal::Immediate => {
                tracing::info!("SIGINT: stopping now");
                crate::listener::remove_socket_file(&proxy.shared.config.server.listen);
                return Ok(());
            }
        }
    }
}

/// Printed after the URL on stderr; the command then exits 1.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The URL is not `http://host:port/path`.
    #[error("unsupported URL (expected http://host:port/path): {0}")]
    Url(String),
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered, but not with a 2xx status.
    #[error("unhealthy: {0}")]
    Status(String),
}

/// Splits `http://host[:port][/path]` into host, port (default 80) and path (default `/`).
fn parse_http_url(url: &str) -> Result<(String, u16, String), HealthcheckError> {
    let bad = || HealthcheckError::Url(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, port_of(p)?),
            None if after.is_empty() => (h, 80),
            None => return Err(bad()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (authority, 80),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// One plain HTTP/1.0 GET over a std `TcpStream`; returns the status line of a 2xx answer.
fn healthcheck(url: &str, timeout: std::time::Duration) -> Result<String, HealthcheckError> {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpStream, ToSocketAddrs};

    let (host, port, path) = parse_http_url(url)?;
    let mut last = None;
    let mut stream = None;
    for addr in (host.as_str(), port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e.into()),
        (None, None) => return Err(HealthcheckError::Url(url.to_owned())),
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a server that answers after the first segment must not see a second one.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tenantgate-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut status = String::new();
    BufReader::new(stream).take(1024).read_line(&mut status)?;
    let status = status.trim_end().to_owned();
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with("HTTP/") && code.len() == 3 && code.starts_with('2') {
        Ok(status)
    } else if status.is_empty() {
        Err(HealthcheckError::Status("empty answer".to_owned()))
    } else {
        Err(HealthcheckError::Status(status))
    }
}

#[cfg(test)]
mod healthcheck_tests {
    use super::*;

    #[test]
    fn exactly_one_line_ending_is_removed() {
        assert_eq!(strip_one_line_ending("pw\n"), "pw");
        assert_eq!(strip_one_line_ending("pw\r\n"), "pw");
        assert_eq!(strip_one_line_ending("pw\n\n"), "pw\n");
        assert_eq!(strip_one_line_ending("pw\r"), "pw\r");
        assert_eq!(strip_one_line_ending("pw "), "pw ");
        assert!(iterations("4095").is_err());
        assert!(iterations("0").is_err());
        assert_eq!(iterations("4096"), Ok(4096));
    }

    #[test]
    fn parses_http_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9187/health/live").unwrap(),
            ("127.0.0.1".to_owned(), 9187, "/health/live".to_owned())
        );
        assert_eq!(
            parse_http_url("http://localhost").unwrap(),
            ("localhost".to_owned(), 80, "/".to_owned())
        );
        assert_eq!(
            parse_http_url("http://[::1]:9187/x").unwrap(),
            ("::1".to_owned(), 9187, "/x".to_owned())
        );
        assert_eq!(
            parse_http_url("http://[::1]").unwrap(),
            ("::1".to_owned(), 80, "/".to_owned())
        );
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http://:80/").is_err());
        assert!(parse_http_url("http://h:notaport/").is_err());
    }
}
