//! The startup phase: SSL/GSS negotiation, CancelRequest, and the StartupMessage.
//!
//! Runs before authentication, under `auth_timeout`. Bytes a client sends after an SSLRequest
//! but before the TLS handshake are refused (the CVE-2021-23214 pattern), never fed to TLS.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::error;
use crate::protocol::frame::try_startup_packet;
use crate::protocol::messages::PgError;
use crate::protocol::startup::{decode, StartupPacket};
use crate::protocol::stream::{BoxStream, PqStream};

/// What the client opened the connection for.
pub enum Opening {
    /// A session to authenticate and serve.
    Session(Startup),
    /// A cancel request for a proxy-issued key.
    Cancel {
        /// The proxy-issued key's pid half: looked up in the cancel registry, never sent upstream.
        pid: i32,
        /// The key's secret half: without it a guessed pid cancels nothing.
        secret: i32,
    },
}

/// A client that sent a StartupMessage.
pub struct Startup {
    /// The framed connection, positioned after the StartupMessage.
    pub stream: PqStream,
    /// Startup parameters as sent.
    pub params: Vec<(String, String)>,
    pub tls: bool,
    /// The TLS server name the client asked for (SNI), if any.
    pub sni: Option<String>,
    /// Protocol minor version asked for (answered with NegotiateProtocolVersion when > 0).
    pub minor: u16,
}

impl Startup {
    /// A startup parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why the startup phase ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// A refusal to send to the client before closing.
    #[error("{}", .0.message)]
    Refuse(PgError),
    /// The socket failed or closed; nothing to send.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::protocol::stream::StreamError> for HandshakeError {
    fn from(e: crate::protocol::stream::StreamError) -> Self {
        match e {
            crate::protocol::stream::StreamError::Io(e) => HandshakeError::Io(e),
            crate::protocol::stream::StreamError::Closed => {
                HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into())
            }
            crate::protocol::stream::StreamError::Frame(f) => {
                HandshakeError::Refuse(error::bad_startup(format!("invalid startup packet: {f}")))
            }
        }
    }
}

/// Reads startup packets until a StartupMessage or CancelRequest, upgrading to TLS on request.
pub async fn negotiate(
    mut io: BoxStream,
    tls: Option<&TlsAcceptor>,
    max_message: usize,
) -> Result<Opening, HandshakeError> {
    let mut buf = BytesMut::with_capacity(512);
    let mut encrypted = false;
    let mut sni = None;
    loop {
        let payload = loop {
            match try_startup_packet(&mut buf) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(e) => {
                    // PostgreSQL logs this (COMMERROR) and closes without a word: a client that
                    // sends Terminate first, or garbage, gets no answer it must parse.
                    tracing::debug!(error = %e, "invalid length of startup packet");
                    return Err(HandshakeError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("invalid length of startup packet: {e}"),
                    )));
                }
            }
            if buf.capacity() - buf.len() < 256 {
                buf.reserve(2048);
            }
            let n = io.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        let packet = match decode(&payload) {
            Ok(p) => p,
            Err(e) => return Err(fail(&mut io, error::bad_startup(e)).await),
        };
        match packet {
            StartupPacket::SslRequest => {
                if encrypted {
                    return Err(fail(
                        &mut io,
                        error::protocol_violation("SSL negotiation after TLS was established"),
                    )
                    .await);
                }
                let Some(acceptor) = tls else {
                    io.write_all(b"N").await?;
                    continue;
                };
                if !buf.is_empty() {
                    return Err(fail(&mut io, error::plaintext_after_ssl_request()).await);
                }
                io.write_all(b"S").await?;
                io.flush().await?;
                let stream = acceptor.accept(io).await?;
                sni = stream.get_ref().1.server_name().map(str::to_owned);
                io = Box::new(stream);
                encrypted = true;
            }
            StartupPacket::GssEncRequest => {
                io.write_all(b"N").await?;
            }
            StartupPacket::Cancel { pid, secret } => return Ok(Opening::Cancel { pid, secret }),
            StartupPacket::Startup { minor, params } => {
                return Ok(Opening::Session(Startup {
                    stream: PqStream::new(
                        io,
                        buf,
                        max_message,
                        crate::protocol::stream::CLIENT_READ_CHUNK,
                    ),
                    params,
                    tls: encrypted,
                    sni,
                    minor,
                }))
            }
        }
    }
}

/// Sends a FATAL to the client (best effort) and turns it into the handshake's error.
async fn fail(io: &mut BoxStream, e: PgError) -> HandshakeError {
    let mut out = BytesMut::new();
    e.encode(&mut out);
    let _ = io.write_all(&out).await;
    let _ = io.flush().await;
    HandshakeError::Refuse(e)
}

/// A TLS acceptor for the configured certificate, shared by all connections.
pub fn acceptor(cfg: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(cfg)
}
