//! Client authentication: SCRAM-SHA-256 (pgwire's server state machine), md5, cleartext.
//!
//! A leaf below the configuration: it parses verifiers (which the configuration validates with)
//! and runs exchanges over a [`PqStream`](crate::protocol::PqStream), and knows nothing of
//! sessions, tenants or the config file.
//!
//! Verifiers are derived once when the configuration loads (PBKDF2 runs off the runtime in
//! `spawn_blocking`), so a login costs a few HMACs and never stalls other clients.
//!
//! Unknown users must not be told apart from configured ones before they authenticate. As
//! PostgreSQL does (`scram_mock_salt` in `auth-scram.c`), an unknown name is answered with the
//! exchange most configured users get, and with a SCRAM salt derived from a server secret and
//! the name: stable per name, the same length and iteration count as the real ones, and
//! failing with the same `28P01`. The verifiers the proxy derives from plaintext passwords use
//! the same salt derivation, so their salts survive reloads and look exactly like the mocks.

use serde::Deserialize;

mod db;
mod exchange;
mod verifier;

pub use db::{AuthDb, UserSecrets};
pub use exchange::{authenticate, AuthError};
pub use verifier::{parse_verifier, Verifier, VerifierError, SCRAM_ITERATIONS};

/// `[[users]] auth`: the password exchange the client is asked for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (PostgreSQL's default), spelled as in pg_hba.conf.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge; needs a plaintext `password`.
    Md5,
    /// Cleartext password; only accepted over TLS.
    Password,
}
