//! Client authentication: SCRAM-SHA-256 (pgwire's server state machine), md5, cleartext.
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

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, ScramServerAuth};
use sha2::{Digest, Sha256};

use crate::config::{AuthMethod, Config};
use crate::protocol::messages::{authentication, read_cstr};
use crate::protocol::stream::{PqStream, StreamError};

/// Iterations used for verifiers the proxy derives itself (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Salt length of derived verifiers (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
pub const SCRAM_SALT_LEN: usize = 16;

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
    /// How unknown users are answered.
    mock: Mock,
}

impl AuthDb {
    /// Derives verifiers for every user (PBKDF2 for plaintext passwords: call off the runtime).
    pub fn build(cfg: &Config) -> Result<AuthDb, VerifierError> {
        let secret = match &cfg.security.resolved_mock_auth_secret {
            Some(s) => Sha256::digest(s.as_bytes()).into(),
            None => *process_secret(),
        };
        let mut users = HashMap::new();
        for u in &cfg.users {
            let verifier = match (&u.scram, &u.password) {
                (Some(v), _) => parse_verifier(v)?,
                (None, Some(p)) => Verifier::derive(
                    p,
                    derive_salt(&secret, &u.name, SCRAM_SALT_LEN),
                    SCRAM_ITERATIONS,
                ),
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
        let mock = Mock::blending_in(secret, users.values().map(|c| c.as_ref()));
        Ok(AuthDb { users, mock })
    }

    /// The credential of a configured user.
    pub fn get(&self, name: &str) -> Option<Arc<Credential>> {
        self.users.get(name).cloned()
    }

    /// How unknown users are answered.
    pub fn mock(&self) -> &Mock {
        &self.mock
    }
}

/// The answer to an unknown user: shaped like the configured users' answers.
#[derive(Clone)]
pub struct Mock {
    /// Key of the salt derivation (SHA-256 of the configured secret, or random per process).
    secret: [u8; 32],
    /// The exchange most configured users get (ties: SCRAM, then md5), as PostgreSQL picks
    /// the mock's password type so that it "blends in best".
    pub method: AuthMethod,
    /// The iteration count most configured SCRAM verifiers have.
    pub iterations: u32,
    /// The salt length most configured SCRAM verifiers have.
    pub salt_len: usize,
}

impl Default for Mock {
    fn default() -> Self {
        Mock {
            secret: *process_secret(),
            method: AuthMethod::ScramSha256,
            iterations: SCRAM_ITERATIONS,
            salt_len: SCRAM_SALT_LEN,
        }
    }
}

impl Mock {
    /// The mock that blends in with these credentials.
    fn blending_in<'a>(secret: [u8; 32], creds: impl Iterator<Item = &'a Credential>) -> Mock {
        let creds: Vec<&Credential> = creds.collect();
        let d = Mock::default();
        let method = most_common(
            creds.iter().map(|c| c.method),
            &[
                AuthMethod::ScramSha256,
                AuthMethod::Md5,
                AuthMethod::Password,
            ],
        )
        .unwrap_or(d.method);
        let iterations = most_common(
            creds.iter().map(|c| c.verifier.iterations),
            &[SCRAM_ITERATIONS],
        )
        .unwrap_or(d.iterations);
        let salt_len = most_common(
            creds.iter().map(|c| c.verifier.salt.len()),
            &[SCRAM_SALT_LEN],
        )
        .unwrap_or(d.salt_len)
        .min(32);
        Mock {
            secret,
            method,
            iterations,
            salt_len,
        }
    }

    /// The verifier an unknown login is challenged with. Keyed by the login up to its first
    /// dot: a configured `name` also answers every `name.<tenant>` login with its own salt, so
    /// an unknown `x` and `x.<anything>` must share one too, or comparing them would tell.
    /// Nobody knows its password: the keys are random.
    pub fn verifier(&self, login: &str) -> Verifier {
        let base = login.split('.').next().unwrap_or(login);
        Verifier {
            iterations: self.iterations,
            salt: derive_salt(&self.secret, base, self.salt_len),
            stored_key: rand::random::<[u8; 32]>().to_vec(),
            server_key: rand::random::<[u8; 32]>().to_vec(),
        }
    }
}

/// The most frequent value; ties go to the earliest in `prefer`, then to the first seen.
fn most_common<T: Copy + PartialEq>(values: impl Iterator<Item = T>, prefer: &[T]) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(c, _)| *c == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    let rank = |v: &T| prefer.iter().position(|p| p == v).unwrap_or(prefer.len());
    let mut best: Option<(T, usize)> = None;
    for (v, n) in counts {
        let better = match best {
            None => true,
            Some((b, bn)) => n > bn || (n == bn && rank(&v) < rank(&b)),
        };
        if better {
            best = Some((v, n));
        }
    }
    best.map(|(v, _)| v)
}

/// A salt that depends only on the secret and the name (`len` at most 32 bytes).
fn derive_salt(secret: &[u8; 32], name: &str, len: usize) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"tenantgate scram salt\0");
    h.update(secret);
    h.update(name.as_bytes());
    h.finalize()[..len.min(32)].to_vec()
}

/// Random per process start, like PostgreSQL's `mock_auth_nonce`.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(rand::random)
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
/// `cred` is None for an unknown user, who goes through `mock`'s exchange and fails the same
/// way, at the same cost.
pub async fn authenticate(
    stream: &mut PqStream,
    login: &str,
    cred: Option<&Credential>,
    mock: &Mock,
    tls: bool,
) -> Result<(), AuthError> {
    let method = cred.map(|c| c.method).unwrap_or(mock.method);
    match method {
        AuthMethod::ScramSha256 => {
            let verifier = match cred {
                Some(c) => c.verifier.clone(),
                None => mock.verifier(login),
            };
            scram(stream, verifier, cred.is_some()).await
        }
        AuthMethod::Md5 => {
            // The salt is random per attempt for everyone, as in PostgreSQL.
            let salt: [u8; 4] = rand::random();
            authentication(stream.out(), 5, &salt);
            stream.flush().await?;
            let answer = read_password(stream).await?;
            let unknown = rand::random::<[u8; 16]>().map(|b| b'a' + b % 26);
            let password = cred
                .and_then(|c| c.plain.as_deref())
                .map(str::as_bytes)
                .unwrap_or(&unknown);
            // Hashed for unknown users too, so the answer takes as long.
            let expected =
                postgres_protocol::authentication::md5_hash(login.as_bytes(), password, salt);
            if constant_eq(expected.as_bytes(), strip_nul(&answer)) && cred.is_some() {
                Ok(())
            } else {
                Err(AuthError::Failed)
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

async fn scram(stream: &mut PqStream, verifier: Verifier, known: bool) -> Result<(), AuthError> {
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
    if !known {
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

    fn db(extra: &str) -> AuthDb {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:6432\"\n[upstream]\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\n{extra}"
        );
        AuthDb::build(&Config::from_toml(&text).unwrap()).unwrap()
    }

    const ADMIN: &str = "[[users]]\nname = \"a\"\npassword = \"p\"\nkind = \"admin\"\n";

    #[test]
    fn mock_salt_is_stable_per_name_and_keyed_by_the_name_before_a_dot() {
        let m = db(ADMIN).mock().clone();
        assert_eq!(m.verifier("x").salt, m.verifier("x").salt);
        assert_eq!(m.verifier("x").salt, m.verifier("x.t1").salt);
        assert_ne!(m.verifier("x").salt, m.verifier("y").salt);
        assert_eq!(m.verifier("x").salt.len(), SCRAM_SALT_LEN);
        assert_eq!(m.verifier("x").iterations, SCRAM_ITERATIONS);
    }

    #[test]
    fn a_configured_secret_gives_every_instance_the_same_salts() {
        let with = format!("[security]\nmock_auth_secret = \"0123456789abcdef0123\"\n{ADMIN}");
        let (a, b) = (db(&with), db(&with));
        assert_eq!(a.mock().verifier("x").salt, b.mock().verifier("x").salt);
        assert_eq!(
            a.get("a").unwrap().verifier.salt,
            b.get("a").unwrap().verifier.salt
        );
        // Derived verifiers use the mock derivation: the same salt across reloads.
        assert_eq!(
            a.get("a").unwrap().verifier.salt,
            a.mock().verifier("a").salt
        );
        let short = "[security]\nmock_auth_secret = \"short\"\n";
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:6432\"\n[upstream]\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\n{short}"
        );
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("security.mock_auth_secret"), "{err}");
    }

    #[test]
    fn mock_blends_in_with_the_most_common_shape() {
        let v = Verifier::derive("p", vec![1; 20], 600_000).to_pg_string();
        let users: String = (0..3)
            .map(|i| format!("[[users]]\nname = \"s{i}\"\nscram = \"{v}\"\nkind = \"admin\"\n"))
            .collect();
        let md5 = "[[users]]\nname = \"m\"\npassword = \"p\"\nauth = \"md5\"\nkind = \"admin\"\n";
        let m = db(&format!("{users}{md5}")).mock().clone();
        assert_eq!(m.method, AuthMethod::ScramSha256);
        assert_eq!(m.iterations, 600_000);
        assert_eq!(m.salt_len, 20);
        assert_eq!(m.verifier("x").salt.len(), 20);
        let m = db(&format!("{md5}{}", md5.replace("\"m\"", "\"n\"")))
            .mock()
            .clone();
        assert_eq!(m.method, AuthMethod::Md5);
    }

    #[test]
    fn most_common_breaks_ties_by_preference() {
        assert_eq!(most_common([1, 2, 2].into_iter(), &[1]), Some(2));
        assert_eq!(most_common([2, 1].into_iter(), &[1]), Some(1));
        assert_eq!(most_common([3, 2].into_iter(), &[1]), Some(3));
        assert_eq!(most_common(std::iter::empty::<u8>(), &[1]), None);
    }

    #[test]
    fn constant_eq_works() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }
}
