//! SCRAM-SHA-256 verifiers: the pg_authid text form, parsing and derivation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};

/// Iterations used for verifiers the proxy derives itself (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Salt length of derived verifiers (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
pub const SCRAM_SALT_LEN: usize = 16;

/// A parsed `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Raw bytes (base64 in the text form).
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

    /// A verifier nobody knows the password of, without the cost of deriving one: the fuzz
    /// target's server side. (Unknown users get a derived mock instead, see `auth::db`.)
    #[cfg(feature = "internals")]
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
pub struct VerifierError(pub(super) &'static str);

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
}
