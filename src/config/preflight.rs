//! The checks `serve` would otherwise fail on after `check-config` said OK: every file the
//! configuration names is opened and parsed, and the event log is known to be writable.
//! Nothing here connects anywhere; the upstream being down is not a configuration error.
//!
//! `check-config` (and so the systemd unit's `ExecStartPre`) and `serve` both run this, so a
//! config that passes one passes the other, and each error names the key rather than a path.

use std::path::Path;

use super::{invalid, Config, ConfigError, UpstreamTls};

/// Runs every check; the first failure names its key.
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    let s = &cfg.server;
    if let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) {
        readable_file("server.tls_cert", cert)?;
        readable_file("server.tls_key", key)?;
        crate::tls::server_config(cert, key).map_err(|e| tls_error(e, cert, key))?;
    }
    if let super::listen::Listen::Unix(path) = &s.listen {
        let dir = path.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(invalid(
                "server.listen",
                format!(
                    "the socket directory {} does not exist (create it, owned by the proxy's user)",
                    dir.display()
                ),
            ));
        }
    }
    let u = &cfg.upstream;
    if let Some(ca) = &u.tls_ca {
        readable_file("upstream.tls_ca", ca)?;
        crate::tls::upstream_config(UpstreamTls::VerifyFull, Some(ca))
            .map_err(|e| invalid("upstream.tls_ca", without_path(&e.to_string(), ca)))?;
        if pem_certificates(ca) == 0 {
            // An empty trust store would refuse every server: say so now, not at connect.
            return Err(invalid(
                "upstream.tls_ca",
                format!("{}: no PEM certificate found", ca.display()),
            ));
        }
    }
    event_log_writable(&cfg.security.event_log)
}

/// Which of the two files a TLS error is about, by the path it names.
fn tls_error(e: crate::tls::TlsError, cert: &Path, key: &Path) -> ConfigError {
    let text = e.to_string();
    let key_path = key.display().to_string();
    if let crate::tls::TlsError::Pem { path, .. } = &e {
        if *path == key_path {
            return invalid("server.tls_key", without_path(&text, key));
        }
        return invalid("server.tls_cert", without_path(&text, cert));
    }
    // rustls refused the pair (a key that does not match the certificate, an unsupported key).
    invalid(
        "server.tls_key",
        format!(
            "{} and {} do not make a usable TLS identity: {text}",
            cert.display(),
            key_path
        ),
    )
}

/// A TLS error's text as `<path>: <reason>`, with the path written once even when the error already
/// starts with it.
fn without_path(text: &str, path: &Path) -> String {
    let p = path.display().to_string();
    let reason = text.strip_prefix(&format!("{p}: ")).unwrap_or(text);
    format!("{p}: {reason}")
}

/// How many PEM certificates `path` holds (0 when it cannot be read or parsed).
fn pem_certificates(path: &Path) -> usize {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map(|it| it.filter(Result::is_ok).count())
        .unwrap_or(0)
}

/// A path that exists, is a regular file and can be read by this user.
fn readable_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => Err(invalid(key, format!("{shown}: {}", io_reason(&e)))),
        Ok(m) if m.is_dir() => Err(invalid(key, format!("{shown} is a directory, not a file"))),
        Ok(_) => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| invalid(key, format!("{shown}: {}", io_reason(&e)))),
    }
}

/// `stdout`/`stderr`, an existing file this user may append to, or a new file in an existing
/// directory this user may write to. Nothing is created.
fn event_log_writable(target: &str) -> Result<(), ConfigError> {
    const KEY: &str = "security.event_log";
    if matches!(target, "stdout" | "stderr") {
        return Ok(());
    }
    if target.is_empty() {
        return Err(invalid(
            KEY,
            "must be \"stdout\", \"stderr\" or a file path",
        ));
    }
    let path = Path::new(target);
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(invalid(
            KEY,
            format!("{target} is a directory; name a file in it, e.g. {target}/events.jsonl"),
        )),
        Ok(_) => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| invalid(KEY, format!("cannot append to {target}: {}", io_reason(&e)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            match std::fs::metadata(dir) {
                Err(_) => Err(invalid(
                    KEY,
                    format!(
                        "directory {} does not exist (create it, owned by the user tenantgate runs as)",
                        dir.display()
                    ),
                )),
                Ok(m) if !m.is_dir() => Err(invalid(
                    KEY,
                    format!("{} is not a directory", dir.display()),
                )),
                Ok(_) if !writable_dir(dir) => Err(invalid(
                    KEY,
                    format!(
                        "directory {} is not writable by this user, so {target} cannot be created",
                        dir.display()
                    ),
                )),
                Ok(_) => Ok(()),
            }
        }
        Err(e) => Err(invalid(KEY, format!("{target}: {}", io_reason(&e)))),
    }
}

/// Whether this process may create files in `dir` (access(2) with the real ids, as the
/// service runs them).
fn writable_dir(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// An I/O error's reason without Rust's `(os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
