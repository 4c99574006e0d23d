//! The password exchanges: SCRAM-SHA-256, md5 and cleartext.

use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use subtle::ConstantTimeEq;

use super::db::{Credential, Mock};
use super::verifier::Verifier;
use super::AuthMethod;
use crate::protocol::messages::{authentication, read_cstr};
use crate::protocol::stream::{PqStream, StreamError};

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

/// Compares secrets in time that does not depend on where they differ.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_eq_works() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }
}
