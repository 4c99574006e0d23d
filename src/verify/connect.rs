//! Opening the checking connection with tokio-postgres: from `--database-url`, or as the
//! `[upstream]` role with the proxy's own TLS settings (so the role that is checked is exactly
//! the role the pool logs in as).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::VerifyError;
use crate::config::{secs, UpstreamConfig, UpstreamTls};

/// Where and how to connect for a posture run.
#[derive(Clone)]
pub struct Target {
    /// tokio-postgres settings (host, port, user, password, database, sslmode).
    config: Config,
    /// rustls client configuration when TLS may be used.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Server-side `statement_timeout` for every check query.
    statement_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Target")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

const APPLICATION_NAME: &str = "tenantgate-verify";

impl Target {
    /// From a libpq URL or key=value string; `sslmode=require` encrypts without verifying,
    /// as libpq does.
    pub fn from_url(url: &str) -> Result<Target, VerifyError> {
        let mut config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| VerifyError::Url(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => crate::tls::upstream_config(UpstreamTls::Require, None)
                .map_err(|e| VerifyError::Tls(e.to_string()))?,
        };
        Ok(Target {
            config,
            tls,
            statement_timeout: Duration::from_secs(60),
        })
    }

    /// As the `[upstream]` role, with the pool's TLS mode. `connect_timeout` bounds only the socket
    /// connect here (tokio-postgres), not the login.
    pub fn from_upstream(u: &UpstreamConfig) -> Result<Target, VerifyError> {
        let mut config = Config::new();
        config
            .host(&u.host)
            .port(u.port)
            .dbname(&u.database)
            .user(&u.user)
            .application_name("tenantgate-posture")
            .connect_timeout(secs(u.connect_timeout));
        if let Some(p) = &u.resolved_password {
            config.password(p.as_bytes());
        }
        let tls = crate::tls::upstream_config(u.tls, u.tls_ca.as_deref())
            .map_err(|e| VerifyError::Tls(e.to_string()))?;
        config.ssl_mode(if tls.is_some() {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        Ok(Target {
            config,
            tls,
            statement_timeout: Duration::from_secs(30),
        })
    }

    /// The role this target logs in as.
    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    /// Connects, drives the connection in a task, and makes the session read-only and bounded.
    pub async fn connect(&self) -> Result<Session, VerifyError> {
        let (client, task) = match &self.tls {
            None => {
                let (client, conn) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(VerifyError::Connect)?;
                (client, tokio::spawn(async move { drop(conn.await) }))
            }
            Some(tls) => {
                let (client, conn) = self
                    .config
                    .connect(RustlsConnect(tls.clone()))
                    .await
                    .map_err(VerifyError::Connect)?;
                (client, tokio::spawn(async move { drop(conn.await) }))
            }
        };
        let session = Session { client, task };
        let ms = self.statement_timeout.as_millis();
        if let Err(e) = session
            .client
            .batch_execute(&format!(
                "SET default_transaction_read_only = on; SET statement_timeout = {ms}; SET lock_timeout = 5000"
            ))
            .await
        {
            session.close().await;
            return Err(VerifyError::query("preparing the session", e));
        }
        Ok(session)
    }
}

/// A connection error as PostgreSQL would word it: `28P01 password authentication failed for
/// user "app_user"` for a server refusal, else the client-side failure with its causes
/// (`error connecting to server: failed to lookup address information: …`). tokio-postgres'
/// own `Display` says only "db error", which hides everything an operator needs.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}", db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// The server's SQLSTATE, when the server refused (for `verify --json`).
pub fn sqlstate(e: &VerifyError) -> Option<&str> {
    match e {
        VerifyError::Connect(pg) => pg.as_db_error().map(|db| db.code().code()),
        _ => None,
    }
}

/// Whether a SQLSTATE means the server refused the login itself: class 28 (invalid
/// authorization: wrong password, no pg_hba.conf entry, unknown role) or 3D000 (no such
/// database). Retrying does not help until the configuration changes.
pub fn is_login_rejection(code: &str) -> bool {
    code.starts_with("28") || code == "3D000"
}

/// `Some(server's words)` when `e` is a login rejection (see [`is_login_rejection`]).
pub fn rejected(e: &VerifyError) -> Option<String> {
    match e {
        VerifyError::Connect(pg) => pg
            .as_db_error()
            .filter(|db| is_login_rejection(db.code().code()))
            .map(|db| format!("{} {}", db.code().code(), db.message())),
        _ => None,
    }
}

/// An open checking connection; [`Session::close`] ends it before returning, so the check
/// leaves no backend behind (tests count the upstream role's backends).
pub struct Session {
    /// Starts read-only, with a `statement_timeout` ([`Target::connect`] sets both).
    pub client: Client,
    /// The task driving the connection; it ends after Terminate when the client is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Sends Terminate and waits (briefly) for the socket to close.
    pub async fn close(self) {
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// tokio-postgres TLS through the crate's rustls configuration.
#[derive(Clone)]
struct RustlsConnect(Arc<rustls::ClientConfig>);

/// One handshake towards a named server.
struct RustlsHandshake {
    config: Arc<rustls::ClientConfig>,
    /// The server name to present (and verify, in verify-full).
    name: rustls_pki_types::ServerName<'static>,
}

struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsHandshake, io::Error> {
        let name = rustls_pki_types::ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsHandshake {
            config: self.0.clone(),
            name,
        })
    }
}

impl TlsConnect<Socket> for RustlsHandshake {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, io::Error>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(s))
        })
    }
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let t = Target::from_url("postgresql://app_user:pw@127.0.0.1:5432/app?sslmode=disable")
            .unwrap();
        assert_eq!(t.user(), Some("app_user"));
        assert!(t.tls.is_none());
        assert!(!format!("{t:?}").contains("pw@"));
        assert!(Target::from_url("postgresql://[::1").is_err());
    }
}
