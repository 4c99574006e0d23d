//! Signals: SIGTERM drains within `shutdown_timeout`, SIGINT stops at once.

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop accepting, let transactions finish, then exit.
    Drain,
    /// SIGINT: exit without draining.
    Immediate,
    /// Reload configuration and reopen the event log.
    Reload,
}

/// The three signal streams, installed once and kept: a signal that arrives while the proxy
/// is still starting (or between two waits) is delivered, not lost to the default action that
/// would kill the process before it drained anything.
#[cfg(unix)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers (call before the slow part of start-up).
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
