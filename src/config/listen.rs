//! Listen addresses as PgBouncer users write them: `"*:6432"`, `":6432"`, `"localhost:6432"`,
//! `"10.0.0.5:6432"`, `"[::]:6432"`, or a Unix socket.
//!
//! The proxy binds one socket, so a host name is resolved once, when the configuration is
//! loaded, and its first address is used.
//!
//! A Unix socket follows PgBouncer's `unix_socket_dir` and PostgreSQL's convention, so
//! `psql -h <dir> -p <port>` finds it: `listen = "/var/run/tenantgate"` (a directory) listens on
//! `/var/run/tenantgate/.s.PGSQL.6432` (PgBouncer's default port), and
//! `listen = "/var/run/tenantgate/.s.PGSQL.5433"` names the socket file, and so the port, itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer};

/// What the error says is accepted.
pub const EXPECTED: &str = "\"host:port\" where host is an IP address, a host name, \"*\" or empty (all IPv4 addresses), or \"[::]\" (all addresses); e.g. \"*:6432\", \"127.0.0.1:6432\", \"localhost:6432\"";

/// Where clients connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket file, `<dir>/.s.PGSQL.<port>`.
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => a.fmt(f),
            Listen::Unix(p) => p.display().fmt(f),
        }
    }
}

impl Listen {
    /// The port clients name: the TCP port, or the `<port>` of `.s.PGSQL.<port>`.
    pub fn port(&self) -> u16 {
        match self {
            Listen::Tcp(a) => a.port(),
            Listen::Unix(p) => p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(SOCKET_PREFIX))
                .and_then(|n| n.parse().ok())
                .unwrap_or(DEFAULT_PORT),
        }
    }

    /// The local address as the admin console shows it: the IP, or `unix` (PgBouncer's word).
    pub fn host(&self) -> String {
        match self {
            Listen::Tcp(a) => a.ip().to_string(),
            Listen::Unix(_) => "unix".to_owned(),
        }
    }
}

/// The socket file's name prefix PostgreSQL and libpq use (`.s.PGSQL.<port>`).
pub const SOCKET_PREFIX: &str = ".s.PGSQL.";

/// PgBouncer's default `listen_port`, for a directory given without a socket file name.
pub const DEFAULT_PORT: u16 = 6432;

/// The longest socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Parses one listen address: TCP or a Unix socket (see the module documentation).
pub fn parse(text: &str) -> Result<Listen, String> {
    let t = text.trim();
    if t.starts_with('/') {
        return unix(Path::new(t)).map(Listen::Unix);
    }
    parse_tcp(t).map(Listen::Tcp)
}

/// The socket file for a listen path: the path itself when it is named `.s.PGSQL.<port>`,
/// else `<dir>/.s.PGSQL.6432`.
fn unix(path: &Path) -> Result<PathBuf, String> {
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(SOCKET_PREFIX));
    let file = match named {
        Some(port) => {
            port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("\"{}\": the socket file must be named .s.PGSQL.<port> (a port number 1-65535), or give the directory", path.display())
            })?;
            path.to_path_buf()
        }
        None => path.join(format!("{SOCKET_PREFIX}{DEFAULT_PORT}")),
    };
    if file.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(format!(
            "\"{}\": a Unix socket path may be at most {MAX_SOCKET_PATH} bytes",
            file.display()
        ));
    }
    Ok(file)
}

/// Parses a TCP listen address (also `admin_listen`, which is TCP only).
pub fn parse_tcp(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if t.starts_with('/') || t.starts_with("unix:") {
        return Err(format!(
            "\"{t}\": this address must be TCP, e.g. \"127.0.0.1:9930\" (only server.listen may be a Unix socket directory)"
        ));
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("\"{t}\" has no port; expected {EXPECTED}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("\"{port}\" is not a port number (0-65535); expected {EXPECTED}"))?;
    match host {
        "" | "*" | "0.0.0.0" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        h if h.contains(':') && !h.starts_with('[') => Err(format!(
            "\"{t}\": write an IPv6 address in brackets, e.g. \"[::1]:{port}\""
        )),
        h => match (h, port).to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| format!("host name \"{h}\" has no address")),
            Err(e) => Err(format!("cannot resolve host name \"{h}\": {e}")),
        },
    }
}

/// `deserialize_with` for the clients' listen address (TCP or a Unix socket).
pub fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(de::Error::custom)
}

/// `deserialize_with` for an optional TCP listen address.
pub fn opt_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    parse_tcp(&text).map(Some).map_err(de::Error::custom)
}

/// `deserialize_with` for `unix_socket_mode`: an octal string (`"0777"`, PgBouncer's
/// spelling) or a TOML octal integer (`0o770`).
pub fn socket_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Text(String),
        Number(u32),
    }
    let mode = match Mode::deserialize(d)? {
        Mode::Text(t) => u32::from_str_radix(t.trim().trim_start_matches("0o"), 8).ok(),
        Mode::Number(n) => Some(n),
    };
    mode.filter(|m| *m <= 0o777).ok_or_else(|| {
        de::Error::custom("expected file permissions in octal, e.g. \"0777\" or \"0770\"")
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_tcp, Listen};

    #[test]
    fn unix_sockets_as_psql_finds_them() {
        assert_eq!(
            parse("/var/run/tenantgate").unwrap(),
            Listen::Unix("/var/run/tenantgate/.s.PGSQL.6432".into())
        );
        assert_eq!(
            parse("/tmp/.s.PGSQL.5433").unwrap(),
            Listen::Unix("/tmp/.s.PGSQL.5433".into())
        );
        assert!(parse("/tmp/.s.PGSQL.x")
            .unwrap_err()
            .contains(".s.PGSQL.<port>"));
        assert!(parse(&format!("/{}", "d".repeat(120)))
            .unwrap_err()
            .contains("at most"));
        assert!(parse_tcp("/tmp").unwrap_err().contains("must be TCP"));
    }

    #[test]
    fn what_pgbouncer_users_write() {
        assert_eq!(parse("*:6432").unwrap().to_string(), "0.0.0.0:6432");
        assert_eq!(parse(":6432").unwrap().to_string(), "0.0.0.0:6432");
        assert_eq!(
            parse("127.0.0.1:6432").unwrap().to_string(),
            "127.0.0.1:6432"
        );
        assert_eq!(parse("[::]:6432").unwrap().to_string(), "[::]:6432");
        assert!(parse_tcp("localhost:6432").unwrap().ip().is_loopback());
        assert!(parse("127.0.0.1").unwrap_err().contains("no port"));
        assert!(parse("*:port").unwrap_err().contains("not a port"));
        assert!(parse("::1:6432").unwrap_err().contains("brackets"));
        assert!(parse("no-such-host.invalid:6432")
            .unwrap_err()
            .contains("no-such-host.invalid"));
    }
}
