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

/// The process's signal handlers, installed once before anything else starts, so a signal
/// that arrives during start-up is seen (not the default action, which kills the process).
#[cfg(unix)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Drain,
            _ = self.int.recv() => Signal::Immediate,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
