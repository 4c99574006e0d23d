//! Reading a secret from a terminal without echoing it (`hash-password`).
//!
//! termios directly through libc, so no crate is needed for a dozen lines: echo is switched off
//! on stdin for one line and restored by a guard, even when reading fails.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsRawFd;

/// Whether stdin is a terminal (a person typing) rather than a pipe or file.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Restores the saved terminal settings when dropped.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: i32) -> std::io::Result<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it for a valid fd or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: `quiet` is a valid termios copied from the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}

/// Writes `prompt` to stderr, reads one line from the terminal on stdin with echo off, and
/// returns it without its line ending.
pub fn prompt_hidden(prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let guard = EchoOff::new(stdin.as_raw_fd())?;
    let mut err = std::io::stderr();
    err.write_all(prompt.as_bytes())?;
    err.flush()?;
    let mut line = String::new();
    let n = stdin.lock().read_line(&mut line)?;
    drop(guard);
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no password entered (end of input)",
        ));
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}
