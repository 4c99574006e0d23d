//! Commands that change the pooler: PAUSE, RESUME, SUSPEND, KILL, RECONNECT, WAIT_CLOSE,
//! SHUTDOWN, RELOAD, with PgBouncer's semantics and messages (`admin.c`), for tenantgate's one
//! upstream database (named as clients name it) and its pools (app and break-glass).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::show::{db, pools};
use super::table::complete;
use super::{admin_error, Mode, Shutdown};
use crate::protocol::messages::PgError;
use crate::shared::Shared;

/// How often PAUSE, SUSPEND and WAIT_CLOSE look whether what they wait for has happened.
const POLL: Duration = Duration::from_millis(20);

/// Checks a database argument: ours, or an error worded as PgBouncer's (`verb`: what cannot be
/// done to the console database, e.g. "pause").
fn check_db(shared: &Shared, arg: Option<&str>, verb: &str) -> Result<(), PgError> {
    match arg {
        None => Ok(()),
        Some(a) if super::is_console(a) => Err(admin_error(format!("cannot {verb} admin db: {a}"))),
        Some(a) if a == db(shared) => Ok(()),
        Some(a) => Err(admin_error(format!("no such database: {a}"))),
    }
}

/// Server connections checked out right now, over every pool.
fn in_use(shared: &Shared) -> usize {
    pools(shared)
        .iter()
        .map(|p| p.stats.active.load(Ordering::Relaxed))
        .sum()
}

/// Waits until no server connection is checked out.
async fn until_released(shared: &Shared) {
    while in_use(shared) > 0 {
        tokio::time::sleep(POLL).await;
    }
}

/// Holds new work in every pool and answers `tag` once no server connection is in use.
async fn hold(
    shared: &Arc<Shared>,
    mode: Mode,
    tag: &str,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    shared.console.set_mode(mode);
    for p in pools(shared) {
        p.pause();
    }
    until_released(shared).await;
    complete(out, tag);
    Ok(())
}

/// PAUSE [db]: new work waits; answers once every server connection is back in the pool.
pub(super) async fn pause(
    shared: &Arc<Shared>,
    arg: Option<&str>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    if shared.console.mode() != Mode::Running {
        return Err(admin_error("already suspended/paused"));
    }
    check_db(shared, arg, "pause")?;
    hold(shared, Mode::Paused, "PAUSE", out).await
}

/// RESUME [db]: after PAUSE, SUSPEND or KILL.
pub(super) fn resume(
    shared: &Arc<Shared>,
    arg: Option<&str>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    if shared.shutdown.is_cancelled() || shared.console.stop.is_cancelled() {
        return Err(admin_error("pooler is shutting down"));
    }
    check_db(shared, arg, "resume")?;
    let paused = pools(shared).iter().any(|p| p.is_paused());
    if !paused && shared.console.mode() == Mode::Running {
        return Err(match arg {
            Some(a) => admin_error(format!("database {a} is not paused")),
            None => admin_error("pooler is not paused/suspended"),
        });
    }
    shared.console.set_mode(Mode::Running);
    for p in pools(shared) {
        p.resume();
    }
    complete(out, "RESUME");
    Ok(())
}

/// SUSPEND: PAUSE for the whole pooler; answers once every server connection is back. (PgBouncer
/// also stops reading client sockets to hand them to a new process; tenantgate has no online
/// restart, so clients simply wait, as under PAUSE.)
pub(super) async fn suspend(shared: &Arc<Shared>, out: &mut BytesMut) -> Result<(), PgError> {
    if shared.console.mode() != Mode::Running {
        return Err(admin_error("already suspended/paused"));
    }
    if pools(shared).iter().any(|p| p.is_paused()) {
        return Err(admin_error("cannot suspend with paused databases"));
    }
    hold(shared, Mode::Suspended, "SUSPEND", out).await
}

/// KILL [db]: every client of the database gets FATAL `database removed`, every server
/// connection is closed, and the database stays paused until RESUME.
pub(super) fn kill(
    shared: &Arc<Shared>,
    arg: Option<&str>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    if shared.console.mode() != Mode::Running {
        return Err(admin_error("already suspended/paused"));
    }
    check_db(shared, arg, "kill")?;
    for p in pools(shared) {
        p.pause();
        p.reconnect();
        shared.clients.kill_pool(p.name);
    }
    complete(out, "KILL");
    Ok(())
}

/// RECONNECT [db]: every server connection open now is closed once released (idle ones at
/// once); new ones are opened as clients need them.
pub(super) fn reconnect(
    shared: &Arc<Shared>,
    arg: Option<&str>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    check_db(shared, arg, "reconnect")?;
    for p in pools(shared) {
        p.reconnect();
    }
    complete(out, "RECONNECT");
    Ok(())
}

/// WAIT_CLOSE [db]: answers once the connections RECONNECT or KILL retired are all closed.
pub(super) async fn wait_close(
    shared: &Arc<Shared>,
    arg: Option<&str>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    check_db(shared, arg, "wait in")?;
    while pools(shared).iter().map(|p| p.retiring()).sum::<usize>() > 0 {
        tokio::time::sleep(POLL).await;
    }
    complete(out, "WAIT_CLOSE");
    Ok(())
}

/// SHUTDOWN [WAIT_FOR_CLIENTS | WAIT_FOR_SERVERS]: `serve` stops at once (no answer, as
/// PgBouncer), or drains like SIGTERM (answers `SHUTDOWN` first).
pub(super) fn shutdown(
    shared: &Arc<Shared>,
    how: Shutdown,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    tracing::info!(?how, "SHUTDOWN command issued");
    shared
        .console
        .drain
        .store(how == Shutdown::Drain, Ordering::Relaxed);
    if how == Shutdown::Drain {
        complete(out, "SHUTDOWN");
    }
    shared.console.stop.cancel();
    Ok(())
}

/// RELOAD: re-read the configuration file, as SIGHUP does.
pub(super) async fn reload(shared: &Arc<Shared>, out: &mut BytesMut) -> Result<(), PgError> {
    let Some(path) = shared.config_path.get() else {
        return Err(crate::error::nothing_to_reload());
    };
    shared.reload(path).await;
    complete(out, "RELOAD");
    Ok(())
}
