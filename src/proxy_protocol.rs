//! PROXY protocol v2 on the client listener, so events show the real client behind an
//! AWS NLB or HAProxy.
//!
//! Only peers in `[server] proxy_trusted` may send a header; a header from anyone else is
//! refused (it could forge its address). Trusted peers without a header (health checks) are
//! served with their own address. The header is peeked first, so a client that is not
//! sending one never has bytes consumed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The first 12 bytes of a v2 header; a stream that does not start with them is served as it is.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The peer is not a trusted load balancer.
    #[error("PROXY header from untrusted source {0}")]
    Untrusted(SocketAddr),
    /// A v2 signature, then no valid header (the text says what is wrong, e.g. `short IPv4 block`).
    #[error("invalid PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The socket failed or timed out.
    #[error("reading PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY v2 header if one is present; returns the client address to use.
pub async fn accept(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNet],
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut probe = [0u8; 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let n = loop {
        let n = tokio::time::timeout_at(deadline, tcp.peek(&mut probe))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 || probe[..n.min(12)] != SIGNATURE[..n.min(12)] || n >= 16 {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if n < 12 || probe[..12] != SIGNATURE {
        return Ok(peer);
    }
    if !trusted.iter().any(|net| net.contains(&peer.ip())) {
        return Err(ProxyHeaderError::Untrusted(peer));
    }
    let len = u16::from_be_bytes([probe[14], probe[15]]) as usize;
    let mut header = vec![0u8; 16 + len];
    tokio::time::timeout_at(deadline, tcp.read_exact(&mut header))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    parse(&header, peer)
}

/// Parses a complete v2 header (signature included); LOCAL and unknown families keep `peer`.
pub fn parse(h: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyHeaderError> {
    if h.len() < 16 || h[..12] != SIGNATURE {
        return Err(ProxyHeaderError::Malformed("bad signature"));
    }
    let ver_cmd = h[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("unsupported version"));
    }
    let len = u16::from_be_bytes([h[14], h[15]]) as usize;
    let addr = h
        .get(16..16 + len)
        .ok_or(ProxyHeaderError::Malformed("short header"))?;
    match (ver_cmd & 0x0f, h[13] >> 4) {
        (0, _) => Ok(peer), // LOCAL: the balancer's own health check
        (1, 1) => {
            let a = addr
                .get(..12)
                .ok_or(ProxyHeaderError::Malformed("short IPv4 block"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Ok(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        (1, 2) => {
            let a = addr
                .get(..36)
                .ok_or(ProxyHeaderError::Malformed("short IPv6 block"))?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        (1, _) => Ok(peer),
        _ => Err(ProxyHeaderError::Malformed("unsupported command")),
    }
}

/// Builds a v2 PROXY header for a TCP/IPv4 connection: what a load balancer sends, for tests.
#[cfg(any(test, feature = "internals"))]
pub fn encode_v4(src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src.ip().octets());
    h.extend_from_slice(&dst.ip().octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_and_local() {
        let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let h = encode_v4(
            "203.0.113.7:55555".parse().unwrap(),
            "10.0.0.2:6432".parse().unwrap(),
        );
        assert_eq!(
            parse(&h, peer).unwrap(),
            "203.0.113.7:55555".parse::<SocketAddr>().unwrap()
        );
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local, peer).unwrap(), peer);
    }

    #[test]
    fn refuses_malformed() {
        let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        assert!(parse(b"GET / HTTP/1.1\r\n", peer).is_err());
        let mut short = SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 12, 1, 2]);
        assert!(parse(&short, peer).is_err());
        let mut v1 = SIGNATURE.to_vec();
        v1.extend_from_slice(&[0x11, 0x11, 0, 0]);
        assert!(parse(&v1, peer).is_err());
    }
}
