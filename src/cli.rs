//! Command line: `serve`, `check-config`, `hash-password` (and more as they land).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::client::auth::{Verifier, SCRAM_ITERATIONS};
use crate::config::Config;
use crate::server::Proxy;
use crate::shutdown::{self, Signal};

/// tenantgate: a PostgreSQL proxy that injects the tenant into every transaction.
#[derive(Debug, Parser)]
#[command(name = "tenantgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// Path of the TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0 if valid, 1 with the offending key otherwise.
    CheckConfig {
        /// Path of the TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password on stdin and print a SCRAM-SHA-256 verifier for `[[users]] scram`.
    HashPassword {
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = SCRAM_ITERATIONS)]
        iterations: u32,
    },
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
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
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).context("reading the password from stdin")?;
            let password = input.strip_suffix('\n').unwrap_or(&input);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                anyhow::bail!("empty password on stdin");
            }
            let v = Verifier::derive(password, rand::random::<[u8; 16]>().to_vec(), iterations.max(1));
            println!("{}", v.to_pg_string());
            Ok(0)
        }
        Command::Serve { config } => {
            let cfg = Config::load(&config).with_context(|| format!("loading {}", config.display()))?;
            crate::telemetry::init(cfg.server.log_format);
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            rt.block_on(serve(Arc::new(cfg), config))?;
            Ok(0)
        }
    }
}

async fn serve(cfg: Arc<Config>, path: PathBuf) -> anyhow::Result<()> {
    let grace = crate::config::secs(cfg.server.shutdown_timeout);
    let proxy = Proxy::start(cfg).await?;
    loop {
        match shutdown::next().await? {
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
                return Ok(());
            }
        }
    }
}
