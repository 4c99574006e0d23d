//! The client handshake: startup and greeting, SSLRequest and GSSENCRequest answers, TLS
//! enforcement with PostgreSQL's wording.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::raw::{Msg, Raw};
use crate::scripted::*;

/// An SSLRequest (`code` 80877103) or GSSENCRequest (80877104) packet.
fn request(code: i32) -> Vec<u8> {
    let mut b = 8i32.to_be_bytes().to_vec();
    b.extend_from_slice(&code.to_be_bytes());
    b
}
const SSL: i32 = 80877103;
const GSSENC: i32 = 80877104;

/// A self-signed certificate for `localhost`: the proxy's TLS acceptor and a client that
/// trusts it.
fn tls_pair() -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

/// A proxy with TLS for clients (and `require_tls` when asked).
async fn with_tls(require: bool) -> (Fast, tokio_rustls::TlsConnector) {
    let (acceptor, connector) = tls_pair();
    let f = Fast::build(
        Script::default(),
        |c| c.server.require_tls = require,
        |s| s.tls = Some(acceptor),
    )
    .await;
    (f, connector)
}

/// An SSLRequest accepted, the TLS handshake, and a login as `acme_app` over it.
async fn tls_login(f: &Fast, connector: &tokio_rustls::TlsConnector) -> Raw {
    let mut io = f.duplex();
    io.write_all(&request(SSL)).await.unwrap();
    assert_eq!(io.read_u8().await.unwrap(), b'S');
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, io).await.expect("TLS handshake");
    Raw::login(tls, "acme_app", PW, DB).await
}

/// A ParameterStatus message's (name, value).
fn parameter(m: &Msg) -> Option<(String, String)> {
    if m.tag != b'S' {
        return None;
    }
    let mut parts = m.body.split(|&b| b == 0);
    let k = String::from_utf8_lossy(parts.next()?).into_owned();
    let v = String::from_utf8_lossy(parts.next()?).into_owned();
    Some((k, v))
}

#[tokio::test]
async fn startup_is_greeted_with_the_servers_parameters_and_a_key_of_the_proxys_own() {
    let f = Fast::start(Script::default()).await;
    let mut c = Raw::over(f.duplex());
    c.startup(&[("user", "acme_app"), ("database", DB)]).await;
    let greeting = c.authenticate(PW).await;
    let params: Vec<_> = greeting.iter().filter_map(parameter).collect();
    assert!(
        params.contains(&("server_version".into(), "15.99 (scripted)".into())),
        "{params:?}"
    );
    let key = greeting
        .iter()
        .find(|m| m.tag == b'K')
        .expect("BackendKeyData");
    let up = f.upstream.conn(0);
    let mut server_key = up.pid.to_be_bytes().to_vec();
    server_key.extend_from_slice(&up.secret.to_be_bytes());
    assert_ne!(
        key.body, server_key,
        "the client must never see the server's cancel key"
    );
    let last = greeting.last().expect("greeting");
    assert_eq!((last.tag, last.body.as_slice()), (b'Z', &b"I"[..]));
    // The server connection logs in as the configured role, never as the client.
    let startup = &up.startup;
    assert!(
        startup.contains(&("user".into(), "app_user".into())),
        "{startup:?}"
    );
    assert!(
        startup.contains(&("database".into(), DB.into())),
        "{startup:?}"
    );
}

#[tokio::test]
async fn ssl_and_gssenc_requests_are_declined_without_tls_and_the_startup_goes_on() {
    let f = Fast::start(Script::default()).await;
    let mut io = f.duplex();
    for code in [SSL, GSSENC] {
        io.write_all(&request(code)).await.unwrap();
        assert_eq!(io.read_u8().await.unwrap(), b'N');
    }
    let mut c = Raw::login(io, "acme_app", PW, DB).await;
    let got = c.query("select 1").round(1).await;
    assert_eq!(crate::raw::rows(&got), ["1"]);
}

#[tokio::test]
async fn ssl_request_is_accepted_with_tls_configured() {
    let (f, connector) = with_tls(false).await;
    let mut c = tls_login(&f, &connector).await;
    assert_eq!(crate::raw::rows(&c.query("select 1").round(1).await), ["1"]);
}

#[tokio::test]
async fn plaintext_after_ssl_request_is_refused() {
    let (f, _) = with_tls(false).await;
    let mut io = f.duplex();
    // The SSLRequest and a StartupMessage in one write: the bytes after the request must never
    // be read as if they came through TLS (CVE-2021-23214).
    let mut bytes = request(SSL);
    let mut body = 196608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0acme_app\0\0");
    bytes.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    bytes.extend_from_slice(&body);
    io.write_all(&bytes).await.unwrap();
    let (closed, got) = Raw::over(io).closed_after().await;
    assert!(closed);
    assert_eq!(crate::raw::codes(&got), ["08P01"]);
    assert_eq!(f.upstream.opened(), 0);
}

#[tokio::test]
async fn tls_required_refuses_plaintext_with_postgres_wording() {
    let (f, connector) = with_tls(true).await;
    let mut c = Raw::over(f.duplex());
    c.startup(&[("user", "acme_app"), ("database", DB)]).await;
    let (closed, got) = c.closed_after().await;
    assert!(closed, "the refused connection must be closed");
    let err = got.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(err.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(err.code().as_deref(), Some("28000"));
    assert_eq!(
        err.field(b'M').as_deref(),
        Some("no pg_hba.conf entry for host \"127.0.0.1\", user \"acme_app\", database \"app\", no encryption")
    );
    assert!(
        got.iter().all(|m| m.tag != b'R'),
        "no authentication before the refusal"
    );
    assert_eq!(f.upstream.opened(), 0, "nothing reaches the server");

    // The same login over TLS is served.
    let mut c = tls_login(&f, &connector).await;
    assert_eq!(crate::raw::rows(&c.query("select 1").round(1).await), ["1"]);
}
