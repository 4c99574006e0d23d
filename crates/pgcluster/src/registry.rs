//! Every cluster this process runs, so an exit hook can stop the ones that never drop, and
//! how a cluster is stopped.

use super::*;

/// What stopping a cluster needs; lives both in its `PgCluster` and in the registry.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    /// Registry key; unique within the process.
    pub(crate) id: u64,
    /// The cluster directory, removed on stop.
    pub(crate) root: PathBuf,
    /// PGDATA, inside `root`.
    pub(crate) data_dir: PathBuf,
    /// Where `pg_ctl` and friends live.
    pub(crate) bindir: PathBuf,
    /// Whether server-side commands need to drop root.
    pub(crate) run_as: RunAs,
}

/// How server-side programs (`initdb`, `pg_ctl`) are run.
#[derive(Debug, Clone)]
pub(crate) enum RunAs {
    /// Not root: run directly.
    CurrentUser,
    /// Root: `setpriv --reuid=postgres --regid=postgres --init-groups -- <cmd>`.
    Setpriv(PathBuf),
    /// Root without setpriv: `runuser -u postgres -- <cmd>`.
    Runuser(PathBuf),
}

/// Clusters started by this process and not yet stopped.
pub(crate) static RUNNING: Mutex<Vec<Instance>> = Mutex::new(Vec::new());
/// Source of `Instance::id`.
pub(crate) static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn registry() -> MutexGuard<'static, Vec<Instance>> {
    // A panic elsewhere must not stop us from cleaning up: ignore poisoning.
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops every cluster this process started that is still running, and removes its directory.
///
/// Meant for a process-exit hook (`libc::atexit`): clusters kept in statics never drop.
/// Never panics; `PgCluster::stop` on an already-swept cluster is a no-op.
pub fn stop_all_registered() {
    let instances = std::mem::take(&mut *registry());
    for instance in instances {
        let _ = std::panic::catch_unwind(|| instance.shutdown());
    }
}

impl Instance {
    /// A command for a server-side program, dropping root when needed; runs in the cluster
    /// directory so a dropped-privilege child never starts in an unreadable cwd (/root).
    pub(crate) fn server_cmd(&self, program: &str) -> Command {
        let mut cmd = self.run_as.command(&self.bindir.join(program));
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// Stops the server if it runs, then removes the directory. Best effort, logs failures.
    pub(crate) fn shutdown(&self) {
        let pidfile = self.data_dir.join("postmaster.pid");
        if pidfile.exists() {
            let stopped = run(self
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", "10", "-s", "stop"]));
            match stopped {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    tracing::warn!(output = %combined_output(&out), "pg_ctl stop failed; killing the postmaster");
                    kill_postmaster(&pidfile, &self.data_dir);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pg_ctl stop failed; killing the postmaster");
                    kill_postmaster(&pidfile, &self.data_dir);
                }
            }
        }
        match fs::remove_dir_all(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.root.display(), error = %e, "could not remove cluster directory")
            }
        }
    }
}
