//! What the admin console changed that every session must see: PAUSE / SUSPEND / KILL and a
//! SHUTDOWN request (`admin/console/` parses and runs the commands).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

/// What the console changed that outlives one console session (PgBouncer's `cf_pause_mode`
/// and `cf_shutdown`).
#[derive(Debug, Default)]
pub struct State {
    /// [`Mode`] as a number.
    mode: AtomicU8,
    /// Cancelled by SHUTDOWN: `serve` stops (see [`State::stop_drains`]).
    pub stop: CancellationToken,
    /// SHUTDOWN WAIT_FOR_CLIENTS / WAIT_FOR_SERVERS: drain instead of stopping at once.
    pub(crate) drain: AtomicBool,
}

/// PAUSE and SUSPEND state of the whole pooler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serving: the start state, and what RESUME returns to.
    Running = 0,
    /// PAUSE (or KILL): no server connections are handed out.
    Paused = 1,
    /// SUSPEND: paused, and every connection has been given back.
    Suspended = 2,
}

impl State {
    /// Read by the console only; checkouts obey each pool's own pause flag (`Pool::pause`).
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            1 => Mode::Paused,
            2 => Mode::Suspended,
            _ => Mode::Running,
        }
    }

    pub(crate) fn set_mode(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::Relaxed);
    }

    /// Whether the requested SHUTDOWN lets sessions finish (SIGTERM's drain) rather than
    /// stopping at once (SIGINT's).
    pub fn stop_drains(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }
}
