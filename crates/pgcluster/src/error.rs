//! What can go wrong finding, starting or using a cluster.

use super::*;

/// Why a cluster could not be found, started or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error("PostgreSQL server binaries not found (looked in: {looked_in}); {INSTALL_HINT}")]
    NotInstalled {
        /// Every place searched, in order.
        looked_in: String,
    },
    /// We are root and cannot run the server as another user.
    #[error(
        "running as root, and initdb/postgres refuse to run as root: {reason}; \
         run as a non-root user, or create the `postgres` OS user (useradd -r postgres)"
    )]
    CannotDropRoot {
        /// What is missing (the user, or both `setpriv` and `runuser`).
        reason: String,
    },
    /// A file-system or process-spawn operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, with its path.
        what: String,
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL program (initdb, pg_ctl) exited unsuccessfully.
    #[error("{what} failed ({status}): {output}{}", log_section(.log_tail))]
    Command {
        /// The program and its purpose.
        what: String,
        /// Its exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
        /// The end of the server log, if the server was involved.
        log_tail: String,
    },
    /// `psql` failed: a connection error or an SQL error (`ON_ERROR_STOP`).
    #[error("psql as {user:?} on database {database:?} failed ({status}): {stderr}")]
    Psql {
        /// The role connected as.
        user: String,
        database: String,
        /// psql's exit status.
        status: String,
        /// psql's stderr, holding the server's error message.
        stderr: String,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL on {HOST}:{port} not ready after {waited:?}{}", log_section(.log_tail))]
    NotReady {
        /// The port it should listen on.
        port: u16,
        waited: Duration,
        /// The end of the server log.
        log_tail: String,
    },
    /// The cluster directory would not be reachable by the server's OS user.
    #[error(
        "{dir} is not traversable by the `{SERVER_OS_USER}` OS user; \
         choose a base directory under /tmp (ClusterOptions::base_dir or TMPDIR)"
    )]
    Unreachable {
        /// The ancestor directory lacking search permission for others.
        dir: PathBuf,
    },
}

fn log_section(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- server log (last lines) ---\n{tail}")
    }
}
