//! Client authentication: SCRAM-SHA-256 (pgwire's server state machine), md5, cleartext.
//!
//! Verifiers are derived once when the configuration loads (PBKDF2 runs off the runtime in
//! `spawn_blocking`), so a login costs a few HMACs and never stalls other clients.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, ScramServerAuth};

use crate::config::{AuthMethod, Config};
use crate::protocol::messages::{authentication, read_cstr};
use crate::protocol::stream::{PqStream, StreamError};

/// Iterations used for verifiers the proxy derives itself (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// A parsed `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt bytes.
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(<redacted>)")
    }
}

impl Verifier {
    /// Derives a verifier from a password (CPU-heavy: call off the runtime).
    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let salted = gen_salted_password(password, &salt, iterations as usize);
        match ScramSecret::verifier_from_salted_password(salt, salted, iterations as usize) {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => Verifier {
                iterations: iterations as u32,
                salt,
                stored_key,
                server_key,
            },
            ScramSecret::SaltedPassword { .. } => {
                unreachable!("verifier_from_salted_password returns a Verifier")
            }
        }
    }

    /// A verifier nobody knows the password of (for unknown users, so they fail the same way).
    pub fn random() -> Verifier {
        Verifier {
            iterations: SCRAM_ITERATIONS,
            salt: rand::random::<[u8; 16]>().to_vec(),
            stored_key: rand::random::<[u8; 32]>().to_vec(),
            server_key: rand::random::<[u8; 32]>().to_vec(),
        }
    }

    /// The pg_authid text form.
    pub fn to_pg_string(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }

    /// The pgwire form of this verifier.
    pub(crate) fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations as usize,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// Why a configured verifier string is unusable.
#[derive(Debug, thiserror::Error)]
#[error("not a SCRAM-SHA-256 verifier ({0}); expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")]
pub struct VerifierError(&'static str);

/// Parses the pg_authid verifier format.
pub fn parse_verifier(s: &str) -> Result<Verifier, VerifierError> {
    let rest = s
        .strip_prefix("SCRAM-SHA-256$")
        .ok_or(VerifierError("missing prefix"))?;
    let (iter_salt, keys) = rest.split_once('$').ok_or(VerifierError("missing keys"))?;
    let (iter, salt) = iter_salt
        .split_once(':')
        .ok_or(VerifierError("missing salt"))?;
    let (stored, server) = keys
        .split_once(':')
        .ok_or(VerifierError("missing server key"))?;
    let iterations: u32 = iter
        .parse()
        .map_err(|_| VerifierError("bad iteration count"))?;
    if iterations == 0 {
        return Err(VerifierError("iteration count must be positive"));
    }
    let dec = |v: &str, what| STANDARD.decode(v).map_err(|_| VerifierError(what));
    let v = Verifier {
        iterations,
        salt: dec(salt, "salt is not base64")?,
        stored_key: dec(stored, "StoredKey is not base64")?,
        server_key: dec(server, "ServerKey is not base64")?,
    };
    if v.stored_key.len() != 32 || v.server_key.len() != 32 || v.salt.is_empty() {
        return Err(VerifierError("wrong key or salt length"));
    }
    Ok(v)
}

/// Credentials of one configured user.
#[derive(Clone)]
pub struct Credential {
    /// For SCRAM.
    pub verifier: Verifier,
    /// For md5 and cleartext (only when a plaintext password is configured).
    pub plain: Option<String>,
    /// Which exchange to run.
    pub method: AuthMethod,
}

/// Every user's credential, derived once per configuration load.
#[derive(Clone, Default)]
pub struct AuthDb {
    /// By configured user name.
    users: HashMap<String, Arc<Credential>>,
}

impl AuthDb {
    /// Derives verifiers for every user (PBKDF2 for plaintext passwords: call off the runtime).
    pub fn build(cfg: &Config) -> Result<AuthDb, VerifierError> {
        let mut users = HashMap::new();
        for u in &cfg.users {
            let verifier = match (&u.scram, &u.password) {
                (Some(v), _) => parse_verifier(v)?,
                (None, Some(p)) => {
                    Verifier::derive(p, rand::random::<[u8; 16]>().to_vec(), SCRAM_ITERATIONS)
                }
                (None, None) => return Err(VerifierError("no password")),
            };
            users.insert(
                u.name.clone(),
                Arc::new(Credential {
                    verifier,
                    plain: u.password.clone(),
                    method: u.auth,
                }),
            );
        }
        Ok(AuthDb { users })
    }

    /// The credential of a configured user.
    pub fn get(&self, name: &str) -> Option<Arc<Credential>> {
        self.users.get(name).cloned()
    }
}

/// Why authentication did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password, unknown user, or a broken exchange: reported as 28P01.
    #[error("password authentication failed")]
    Failed,
    /// Cleartext was configured but the connection is not encrypted.
    #[error("cleartext password over an unencrypted connection")]
    NeedsTls,
    /// The client sent something other than a password message.
    #[error("expected password response, got message type {0}")]
    Protocol(u8),
    /// The socket failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Runs the password exchange for `login` (the user name exactly as the client sent it).
/// `cred` is None for an unknown user, who goes through a mock exchange and fails the same way.
pub async fn authenticate(
    stream: &mut PqStream,
    login: &str,
    cred: Option<&Credential>,
    tls: bool,
) -> Result<(), AuthError> {
    let method = cred.map(|c| c.method).unwrap_or(AuthMethod::ScramSha256);
    match method {
        AuthMethod::ScramSha256 => scram(stream, cred).await,
        AuthMethod::Md5 => {
            let salt: [u8; 4] = rand::random();
            authentication(stream.out(), 5, &salt);
            stream.flush().await?;
            let answer = read_password(stream).await?;
            let expected = cred.and_then(|c| c.plain.as_deref()).map(|p| {
                postgres_protocol::authentication::md5_hash(login.as_bytes(), p.as_bytes(), salt)
            });
            match expected {
                Some(e) if constant_eq(e.as_bytes(), strip_nul(&answer)) => Ok(()),
                _ => Err(AuthError::Failed),
            }
        }
        AuthMethod::Password => {
            if !tls {
                return Err(AuthError::NeedsTls);
            }
            authentication(stream.out(), 3, &[]);
            stream.flush().await?;
            let answer = read_password(stream).await?;
            match cred.and_then(|c| c.plain.as_deref()) {
                Some(p) if constant_eq(p.as_bytes(), strip_nul(&answer)) => Ok(()),
                _ => Err(AuthError::Failed),
            }
        }
    }
}

async fn scram(stream: &mut PqStream, cred: Option<&Credential>) -> Result<(), AuthError> {
    authentication(stream.out(), 10, b"SCRAM-SHA-256\0\0");
    stream.flush().await?;
    let first = read_password(stream).await?;
    let (mech, rest) = read_cstr(&first).ok_or(AuthError::Failed)?;
    if mech != b"SCRAM-SHA-256" {
        return Err(AuthError::Failed);
    }
    let len_bytes = rest.get(0..4).ok_or(AuthError::Failed)?;
    let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let data = if len < 0 {
        &[][..]
    } else {
        rest.get(4..4 + len as usize).ok_or(AuthError::Failed)?
    };
    let verifier = match cred {
        Some(c) => c.verifier.clone(),
        None => Verifier::random(),
    };
    let server = ScramServerAuth::new();
    let (server_first, waiting) = server
        .on_client_first_message_with_secret(data, verifier.secret())
        .map_err(|_| AuthError::Failed)?;
    authentication(stream.out(), 11, server_first.as_bytes());
    stream.flush().await?;
    let final_msg = read_password(stream).await?;
    let server_final = waiting
        .on_client_final_message(&final_msg)
        .map_err(|_| AuthError::Failed)?;
    if cred.is_none() {
        return Err(AuthError::Failed);
    }
    authentication(stream.out(), 12, server_final.as_bytes());
    Ok(())
}

async fn read_password(stream: &mut PqStream) -> Result<BytesMut, AuthError> {
    let f = stream.read_frame().await?;
    if f.tag() != b'p' {
        return Err(AuthError::Protocol(f.tag()));
    }
    Ok(BytesMut::from(f.body()))
}

fn strip_nul(b: &[u8]) -> &[u8] {
    b.strip_suffix(&[0]).unwrap_or(b)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_round_trips_through_pg_format() {
        let v = Verifier::derive("secret", b"0123456789abcdef".to_vec(), 4096);
        let s = v.to_pg_string();
        assert!(s.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(parse_verifier(&s).unwrap(), v);
    }

    #[test]
    fn bad_verifiers_are_refused() {
        for s in [
            "",
            "md5abc",
            "SCRAM-SHA-256$0:AAAA$AAAA:AAAA",
            "SCRAM-SHA-256$4096:@@@$a:b",
            "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA",
        ] {
            assert!(parse_verifier(s).is_err(), "{s}");
        }
    }

    #[test]
    fn constant_eq_works() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }
}
