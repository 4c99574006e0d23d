//! Signals: SIGTERM drains within `shutdown_timeout`, SIGINT stops at once.

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop accepting, let transactions finish, then exit.
    Drain,
    /// Exit now.
    Immediate,
    /// Reload configuration and reopen the event log.
    Reload,
}

/// The signal streams, installed once before start-up: a SIGTERM that arrives while the proxy
/// is still starting (building pools, checking the posture) is then a clean drain, not the
/// default disposition killing the process.
#[cfg(unix)]
pub struct Signals {
    /// SIGTERM.
    term: tokio::signal::unix::Signal,
    /// SIGINT.
    int: tokio::signal::unix::Signal,
    /// SIGHUP.
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers (needs a runtime).
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal (one delivered since `install` counts).
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Drain,
            _ = self.int.recv() => Signal::Immediate,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
