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

/// Waits for the next signal.
#[cfg(unix)]
pub async fn next() -> std::io::Result<Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::select! {
        _ = term.recv() => Signal::Drain,
        _ = int.recv() => Signal::Immediate,
        _ = hup.recv() => Signal::Reload,
    })
}
