//! The clients' socket: TCP, or a Unix socket (`[server] listen` naming a path).
//!
//! A Unix socket is created the way PostgreSQL and PgBouncer create theirs, so
//! `psql -h <dir> -p <port>` finds it: the file is `<dir>/.s.PGSQL.<port>`, its permissions
//! are `[server] unix_socket_mode`, and it is removed when the proxy shuts down. A socket file
//! left behind by a proxy that was killed is replaced at start, once a connection attempt shows
//! nobody listens on it; a live socket (another proxy) or a file that is not a socket is left
//! alone and the start fails, naming it.
//!
//! A Unix client has no network address: it is shown as `[local]` (PostgreSQL's wording in
//! its logs and `pg_hba.conf` errors), counts as no network in `proxy_trusted` (no PROXY header
//! is read on a Unix socket: the peer is on this host), and SHOW CLIENTS reports it as
//! `0.0.0.0` port 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::listen::Listen;
use crate::protocol::stream::BoxStream;

/// A client's address as logs, events and SHOW CLIENTS give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client (after a PROXY header, the address it names).
    Tcp(SocketAddr),
    /// A client on the Unix socket.
    Local,
}

impl Peer {
    /// The address for places that keep a socket address (SHOW CLIENTS): `0.0.0.0:0` for a
    /// Unix client.
    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            Peer::Tcp(a) => *a,
            Peer::Local => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        }
    }

    /// The host as PostgreSQL names it in messages: the IP address, or `[local]`.
    pub fn host(&self) -> String {
        match self {
            Peer::Tcp(a) => a.ip().to_string(),
            Peer::Local => "[local]".to_owned(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Local => f.write_str("[local]"),
        }
    }
}

/// An accepted connection, before the PROXY header (TCP only) and the handshake.
pub enum Accepted {
    /// From the TCP listener (Nagle off).
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Accepted {
    /// The socket as the handshake reads it, and who it is.
    pub fn into_parts(self) -> (BoxStream, Peer) {
        match self {
            Accepted::Tcp(s, a) => (Box::new(s), Peer::Tcp(a)),
            Accepted::Unix(s) => (Box::new(s), Peer::Local),
        }
    }
}

pub enum Listener {
    Tcp(TcpListener),
    /// A Unix socket (its file is removed at shutdown by [`remove_socket_file`]).
    Unix(UnixListener),
}

impl Listener {
    /// Binds `listen`; a Unix socket gets `mode` and replaces a stale socket file.
    pub async fn bind(listen: &Listen, mode: u32) -> std::io::Result<Listener> {
        match listen {
            Listen::Tcp(a) => TcpListener::bind(a).await.map(Listener::Tcp),
            Listen::Unix(path) => {
                remove_stale(path).await?;
                let l = UnixListener::bind(path)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                Ok(Listener::Unix(l))
            }
        }
    }

    /// The TCP address bound (with port 0, the port chosen), or None for a Unix socket.
    pub fn tcp_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Some),
            Listener::Unix(..) => Ok(None),
        }
    }

    /// TCP clients get TCP_NODELAY: the proxy batches its own writes, so Nagle only adds latency.
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Accepted::Tcp(s, a))
            }
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

/// Removes the socket file of a Unix listener (at shutdown); nothing for TCP.
pub fn remove_socket_file(listen: &Listen) {
    if let Listen::Unix(path) = listen {
        if is_socket(path) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// A socket file nobody listens on (a proxy that was killed) is removed; a live one, or a
/// file that is not a socket, is an error naming it.
async fn remove_stale(path: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another server is listening on {}", path.display()),
        )),
        Err(_) => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path)
        }
    }
}
