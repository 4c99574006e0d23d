//! The `signing` subcommands: their arguments (clap) and what they print;
//! [`super::signing_install`] does the work.

use std::path::PathBuf;

use clap::Subcommand;

use super::signing_install::{self as install, InstallRequest};
use crate::signing::sql::InstallOptions;

/// `tenantgate signing …`.
#[derive(Debug, Subcommand)]
pub enum SigningCommand {
    /// Create the key file (mode 0600) if it does not exist, and install, idempotently, the
    /// `tenantgate` schema, its key table and `tenantgate.current_tenant()`. Run as an admin
    /// role: a superuser, or a role with CREATEROLE and CREATE on the database (it grants
    /// itself the owner role; on PostgreSQL 16+ it must have created that role or hold ADMIN
    /// OPTION on it). With `--add-key`, a new key is added (to the database first, then the file): the
    /// proxies sign with it after their next SIGHUP.
    Install {
        /// Admin connection (libpq URL or key=value string); not needed with `--print`.
        #[arg(long, required_unless_present = "print")]
        database_url: Option<String>,
        /// The key file `[tenant] signing_key_file` names.
        #[arg(long)]
        key_file: PathBuf,
        /// Print the SQL instead of applying it (the key file is still created or extended:
        /// run the SQL before reloading any proxy).
        #[arg(long)]
        print: bool,
        /// Add a new key (rotation); the file's last key is the one the proxies sign with.
        #[arg(long)]
        add_key: bool,
        /// Id of the new key (default `k<UTC yyyymmddhhmmss>`).
        #[arg(long)]
        key_id: Option<String>,
        /// The tenant setting `current_tenant()` reads (`[tenant] setting`).
        #[arg(long, default_value = "app.tenant_id")]
        setting: String,
        /// The NOLOGIN role that owns the schema, the keys and the function.
        #[arg(long, default_value = crate::signing::DEFAULT_OWNER)]
        owner: String,
    },
    /// Remove an old key from the database, then from the key file, once every proxy signs
    /// with a newer one. The file's last key (the signing one) cannot be removed.
    RemoveKey {
        /// Admin connection; not needed with `--print`.
        #[arg(long, required_unless_present = "print")]
        database_url: Option<String>,
        /// The key file.
        #[arg(long)]
        key_file: PathBuf,
        /// The key to remove.
        #[arg(long)]
        key_id: String,
        /// Print the SQL instead of applying it (the key still leaves the file).
        #[arg(long)]
        print: bool,
    },
}

/// Runs the command; returns the exit code (0 done, 1 refused or failed).
pub async fn run(cmd: SigningCommand) -> i32 {
    match cmd {
        SigningCommand::Install {
            database_url,
            key_file,
            print,
            add_key,
            key_id,
            setting,
            owner,
        } => {
            let req = InstallRequest {
                database_url,
                key_file: key_file.clone(),
                print,
                add_key,
                key_id,
                options: InstallOptions { setting, owner },
            };
            match install::install(&req).await {
                Ok(done) => {
                    if print {
                        print!("{}", done.sql);
                    }
                    if let Some(id) = &done.new_key {
                        eprintln!("{}: added key {id}", key_file.display());
                    }
                    let state = if done.applied {
                        "installed"
                    } else {
                        "printed (not applied)"
                    };
                    eprintln!(
                        "tenantgate signing install: {state}; the proxies sign with key {} once they read {} (start, or SIGHUP)",
                        done.signing_key,
                        key_file.display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("tenantgate signing install: {e}");
                    1
                }
            }
        }
        SigningCommand::RemoveKey {
            database_url,
            key_file,
            key_id,
            print,
        } => match install::remove_key(database_url.as_deref(), &key_file, &key_id, print).await {
            Ok(sql) => {
                if print {
                    print!("{sql}");
                }
                eprintln!(
                    "tenantgate signing remove-key: key {key_id} removed from {}{}",
                    key_file.display(),
                    if print { "" } else { " and the database" }
                );
                0
            }
            Err(e) => {
                eprintln!("tenantgate signing remove-key: {e}");
                1
            }
        },
    }
}
