//! tenantgate: a PostgreSQL wire-protocol proxy that makes multi-tenant Row-Level Security
//! impossible to forget.
//!
//! ```text
//!  client ──TCP──▶ server.rs (accept, cap) ──▶ client/handshake.rs (SSL/GSS, startup)
//!                                              ──▶ auth/ (SCRAM / md5)
//!                                              ──▶ client/mod.rs (user, tenant choice)
//!                                              ──▶ client/session/ (the loop)
//!                                                    │ tenant/guard.rs  (inspect SQL, refuse)
//!                                                    │ tenant/inject.rs (set_config ... true)
//!                                                    ▼
//!                                              pool/ (checkout guard) ──▶ PostgreSQL
//!                                              relay.rs ◀── responses until ReadyForQuery
//! ```
//!
//! Module map, in data-path order:
//! - [`server`]: accept loop, connection cap, start-up; [`shared`]: the state every session
//!   shares (cancel keys, live clients, timeout limits, console state) and reload;
//!   [`listener`]: the clients' TCP or Unix socket.
//! - [`proxy_protocol`]: PROXY v2 headers from trusted load balancers.
//! - [`protocol`]: pure framing and the few messages the proxy builds or reads.
//! - [`tls`]: rustls configurations for both sides.
//! - [`auth`]: SCRAM-SHA-256 / md5 / cleartext: verifiers, credentials, the exchanges.
//! - [`client`]: handshake, tenant choice, the per-session loop.
//! - [`tenant`]: tenant identity, the SQL guard, the injection; [`tenant_id`]: the id formats
//!   (a leaf the configuration validates with).
//! - [`signing`]: signed tenant context (the key file, the HMAC the prelude sets, the SQL of
//!   `tenantgate signing install`).
//! - [`pool`]: upstream connections, the checkout guard, and the queue that serves waiting
//!   tenants in turn and caps each one's share.
//! - [`prepared`]: named prepared statements under transaction pooling.
//! - [`relay`]: server-to-client forwarding, swallowing the proxy's own responses.
//! - [`events`]: the security event log; [`metrics`], [`telemetry`]: observability.
//! - [`verify`]: RLS posture checks (`verify`, the start-up refusal, the drift monitor);
//!   [`admin`]: the HTTP health and metrics listener.
//! - [`config`], [`error`], [`shutdown`], [`cli`]: the frame around it.
//! - `fuzzing` (feature `internals` only): the entry points of the `fuzz/` targets, which
//!   `tests/fuzz_corpus.rs` also runs over the stored corpus.
//! - `demo` (feature `demo`, on by default): `tenantgate demo`, a narrated isolation
//!   walk-through on a throwaway cluster from the `tenantgate-pgcluster` crate
//!   (`crates/pgcluster`, which the tests use too).

#![warn(missing_docs)]
// The module map above is for the crate's developers, who read it with
// `cargo doc --document-private-items`: there every link resolves.
#![allow(rustdoc::private_intra_doc_links)]

/// Declares modules that are crate-private in the proxy and public with the `internals` feature,
/// which only the test suite, the benches and the fuzz targets turn on (the crate's own
/// dev-dependency on itself, `fuzz/Cargo.toml`). Without it the library's one public door is
/// [`cli`], so nothing else is an API anyone can come to rely on, and `dead_code` sees every
/// item no proxy path uses.
macro_rules! internal {
    ($($(#[$attr:meta])* $name:ident;)*) => {$(
        $(#[$attr])* #[cfg(feature = "internals")] pub mod $name;
        $(#[$attr])* #[cfg(not(feature = "internals"))] pub(crate) mod $name;
    )*};
}

pub mod cli;

internal! {
    auth;
    config;
    events;
    pool;
    protocol;
    proxy_protocol;
    relay;
    server;
    shared;
    signing;
    tenant;
    tenant_id;
    verify;
}

pub(crate) mod admin;
pub(crate) mod client;
#[cfg(feature = "demo")]
pub(crate) mod demo;
pub(crate) mod error;
/// The fuzz targets' entry points; `tests/fuzz_corpus.rs` runs them over the stored corpus.
#[cfg(feature = "internals")]
pub mod fuzzing;
pub(crate) mod listener;
pub(crate) mod metrics;
pub(crate) mod prepared;
pub(crate) mod shutdown;
pub(crate) mod telemetry;
pub(crate) mod tls;
