//! Listen addresses as PgBouncer users write them: `"*:6432"`, `":6432"`, `"localhost:6432"`,
//! `"10.0.0.5:6432"`, `"[::]:6432"`.
//!
//! The proxy binds one socket, so a host name is resolved once, when the configuration is
//! loaded, and its first address is used. Unix-socket listening (PgBouncer's
//! `unix_socket_dir`) is refused with a message saying so, rather than failing later with an
//! unrelated "invalid socket address syntax".

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use serde::de::{self, Deserialize, Deserializer};

/// What the error says is accepted.
pub const EXPECTED: &str = "\"host:port\" where host is an IP address, a host name, \"*\" or empty (all IPv4 addresses), or \"[::]\" (all addresses); e.g. \"*:6432\", \"127.0.0.1:6432\", \"localhost:6432\"";

/// Parses one listen address (see the module documentation).
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if t.starts_with('/') || t.starts_with("unix:") {
        return Err(format!(
            "\"{t}\": listening on a Unix socket is not supported; listen on TCP, e.g. \"127.0.0.1:6432\" (clients on the same host can use host=127.0.0.1)"
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

/// `deserialize_with` for a required listen address.
pub fn address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(de::Error::custom)
}

/// `deserialize_with` for an optional listen address.
pub fn opt_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    address(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn what_pgbouncer_users_write() {
        assert_eq!(parse("*:6432").unwrap().to_string(), "0.0.0.0:6432");
        assert_eq!(parse(":6432").unwrap().to_string(), "0.0.0.0:6432");
        assert_eq!(
            parse("127.0.0.1:6432").unwrap().to_string(),
            "127.0.0.1:6432"
        );
        assert_eq!(parse("[::]:6432").unwrap().to_string(), "[::]:6432");
        assert!(parse("localhost:6432").unwrap().ip().is_loopback());
        assert!(parse("/var/run/tenantgate")
            .unwrap_err()
            .contains("Unix socket"));
        assert!(parse("127.0.0.1").unwrap_err().contains("no port"));
        assert!(parse("*:port").unwrap_err().contains("not a port"));
        assert!(parse("::1:6432").unwrap_err().contains("brackets"));
        assert!(parse("no-such-host.invalid:6432")
            .unwrap_err()
            .contains("no-such-host.invalid"));
    }
}
