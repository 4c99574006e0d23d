//! The proxy, in-process: its shared state built from a configuration
//! (`server::build_shared`) and `server::serve_connection` (the library's seam) serving each
//! client over an in-memory duplex ([`Fast::duplex`]) or a loopback listener ([`Fast::addr`],
//! for tokio-postgres and its cancel tokens), against a scripted [`Upstream`]. No PostgreSQL, no
//! posture check, no background task: a test takes milliseconds. Also the shared assertion
//! helpers: [`wait_until`], [`within`], and the SQLSTATE ones of `tests/common/sqlstate.rs`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::net::TcpListener;

use tenantgate::config::Config;
use tenantgate::shared::Shared;

use crate::raw::Raw;
use crate::scripted::{Script, Upstream, ACME, DB, GLOBEX, PW};
pub use crate::sqlstate::{assert_sqlstate, expect_sqlstate};

// ---------------------------------------------------------------------------------------------

/// PBKDF2 rounds of the test users' verifiers: few, so a login costs microseconds in a debug
/// build (PostgreSQL's 4,096 cost tens of milliseconds there; the exchange is the same).
const TEST_ITERATIONS: u32 = 16;

/// HMAC-SHA-256.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier of `password`.
pub fn scram_verifier(password: &str, iterations: u32) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let salt = b"tenantgate-fast!";
    let mut u = hmac(
        password.as_bytes(),
        &[&salt[..], &1u32.to_be_bytes()].concat(),
    );
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let stored = Sha256::digest(hmac(&salted, b"Client Key")).to_vec();
    let server = hmac(&salted, b"Server Key");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64(salt),
        b64(&stored),
        b64(&server)
    )
}

/// The configured users: `acme_app` and `globex_app`, one tenant each, and `shared_app`, which
/// may choose any tenant (and has none until it does); all SCRAM.
fn users_toml() -> String {
    let v = scram_verifier(PW, TEST_ITERATIONS);
    format!(
        "[[users]]\nname = \"acme_app\"\nscram = \"{v}\"\ntenant = \"{ACME}\"\n\n\
         [[users]]\nname = \"globex_app\"\nscram = \"{v}\"\ntenant = \"{GLOBEX}\"\n\n\
         [[users]]\nname = \"shared_app\"\nscram = \"{v}\"\ntenants = \"*\"\n\n"
    )
}

/// The proxy's configuration for an upstream at `port`; `extra` is appended (more keys in
/// their own sections).
pub fn config(port: u16, upstream_extra: &str, extra: &str) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [upstream]\nhost = \"127.0.0.1\"\nport = {port}\ndatabase = \"{DB}\"\nuser = \"app_user\"\npassword = \"x\"\npool_size = 4\n{upstream_extra}\n\
         [security]\nevent_log = \"stderr\"\n\n{}{extra}",
        users_toml()
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("fast test config invalid: {e}\n{text}"))
}

/// A proxy's session code served in-process against a scripted upstream.
pub struct Fast {
    pub upstream: Upstream,
    pub shared: Arc<Shared>,
    /// A loopback listener whose connections are served by `server::serve_connection`.
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Fast {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.shutdown.cancel();
    }
}

impl Fast {
    /// The default configuration over `script`.
    pub async fn start(script: Script) -> Fast {
        Fast::with(script, |_| {}).await
    }

    /// A configuration changed by `edit` (after parsing, so keys that need files, such as
    /// `require_tls`, can be set) over `script`.
    pub async fn with(script: Script, edit: impl FnOnce(&mut Config)) -> Fast {
        Fast::build(script, edit, |_| {}).await
    }

    /// As [`Fast::with`], and `shared` edited before sessions start (a TLS acceptor).
    pub async fn build(
        script: Script,
        edit: impl FnOnce(&mut Config),
        shared_edit: impl FnOnce(&mut Shared),
    ) -> Fast {
        let upstream = Upstream::start(script).await;
        let mut cfg = config(upstream.addr.port(), "", "");
        edit(&mut cfg);
        let mut shared = tenantgate::server::build_shared(Arc::new(cfg))
            .await
            .unwrap_or_else(|e| panic!("shared state: {e}"));
        shared_edit(&mut shared);
        let shared = Arc::new(shared);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = shared.clone();
        let accept = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((sock, peer)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                n += 1;
                tokio::spawn(tenantgate::server::serve_connection(
                    served.clone(),
                    Box::new(sock),
                    peer,
                    format!("tcp{n}"),
                ));
            }
        });
        Fast {
            upstream,
            shared,
            addr,
            accept,
        }
    }

    /// A client end of an in-memory stream whose other end a session serves.
    pub fn duplex(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 50_000));
        tokio::spawn(tenantgate::server::serve_connection(
            self.shared.clone(),
            Box::new(server),
            peer,
            "duplex".into(),
        ));
        client
    }

    /// A raw client logged in as `user` over a duplex.
    pub async fn raw(&self, user: &str) -> Raw {
        Raw::login(self.duplex(), user, PW, DB).await
    }

    /// A libpq-style connection string to the loopback listener.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={DB} sslmode=disable",
            self.addr.port()
        )
    }

    /// tokio-postgres logged in as `user`.
    pub async fn connect(&self, user: &str) -> tokio_postgres::Client {
        self.try_connect(user, PW)
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    /// tokio-postgres logged in as `user` with more libpq settings (`application_name=x`).
    pub async fn connect_with(&self, user: &str, settings: &str) -> tokio_postgres::Client {
        let url = format!("{} {settings}", self.url(user, PW));
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect as {user} with {settings}: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// tokio-postgres, the error when the login fails.
    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.url(user, password), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Idle connections in the app pool.
    pub fn idle(&self) -> usize {
        self.shared.pool.idle_count()
    }

    /// Checkouts queued in the app pool, waiting for a connection.
    pub fn waiting(&self) -> usize {
        self.shared
            .pool
            .stats
            .waiting
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared assertion helpers
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every 5 ms until it holds; panics naming `what` after 5 s. For states a test
/// can observe (a recorded message, a pool count) instead of sleeping and hoping.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `fut`'s output; panics when it takes over 5 s (a test of a broken proxy fails instead of
/// hanging).
#[track_caller]
pub fn within<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(Duration::from_secs(5), fut).await {
            Ok(v) => v,
            Err(_) => panic!("no answer within 5 s (at {caller})"),
        }
    }
}
