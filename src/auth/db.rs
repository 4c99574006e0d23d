//! Every configured user's credential, and how unknown users are answered.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use super::verifier::{parse_verifier, Verifier, VerifierError, SCRAM_ITERATIONS, SCRAM_SALT_LEN};
use super::AuthMethod;

/// One configured user's secrets, as the configuration states them.
#[derive(Clone, Copy)]
pub struct UserSecrets<'a> {
    /// The configured name; it also salts the verifier derived from `password`, so the salt
    /// survives reloads.
    pub name: &'a str,
    /// A stored SCRAM verifier (`scram = "SCRAM-SHA-256$…"`), preferred when present.
    pub scram: Option<&'a str>,
    /// A plaintext password (needed for md5 and cleartext).
    pub password: Option<&'a str>,
    /// `[[users]] auth`.
    pub method: AuthMethod,
}

/// Credentials of one configured user.
#[derive(Clone)]
pub struct Credential {
    /// Parsed from `scram`, else derived from the plaintext password: every user has one.
    pub verifier: Verifier,
    /// For md5 and cleartext (only when a plaintext password is configured).
    pub plain: Option<String>,
    /// `[[users]] auth`: the exchange the client is asked for.
    pub method: AuthMethod,
}

/// Every user's credential, derived once per configuration load.
#[derive(Clone, Default)]
pub struct AuthDb {
    /// By configured user name.
    users: HashMap<String, Arc<Credential>>,
    mock: Mock,
}

impl AuthDb {
    /// Derives verifiers for every user (PBKDF2 for plaintext passwords: call off the runtime).
    /// `mock_secret` keys the salts of derived and mock verifiers (`[security]
    /// mock_auth_secret`); without it they are random per process.
    pub fn build<'a>(
        users: impl IntoIterator<Item = UserSecrets<'a>>,
        mock_secret: Option<&str>,
    ) -> Result<AuthDb, VerifierError> {
        let secret = match mock_secret {
            Some(s) => Sha256::digest(s.as_bytes()).into(),
            None => *process_secret(),
        };
        let mut users_by_name = HashMap::new();
        for u in users {
            let verifier = match (u.scram, u.password) {
                (Some(v), _) => parse_verifier(v)?,
                (None, Some(p)) => Verifier::derive(
                    p,
                    derive_salt(&secret, u.name, SCRAM_SALT_LEN),
                    SCRAM_ITERATIONS,
                ),
                (None, None) => return Err(VerifierError("no password")),
            };
            users_by_name.insert(
                u.name.to_owned(),
                Arc::new(Credential {
                    verifier,
                    plain: u.password.map(str::to_owned),
                    method: u.method,
                }),
            );
        }
        let mock = Mock::blending_in(secret, users_by_name.values().map(|c| c.as_ref()));
        Ok(AuthDb {
            users: users_by_name,
            mock,
        })
    }

    /// By configured name (a `name.<tenant>` login is resolved to its user first).
    pub fn get(&self, name: &str) -> Option<Arc<Credential>> {
        self.users.get(name).cloned()
    }

    /// For a login no user matches: the exchange it goes through, failing as a wrong password
    /// would.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn db(extra: &str) -> AuthDb {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:6432\"\n[upstream]\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\n{extra}"
        );
        Config::from_toml(&text).unwrap().auth_db().unwrap()
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
}
