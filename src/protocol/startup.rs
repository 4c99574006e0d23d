//! The untyped startup-phase packets: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage.

use bytes::Bytes;

use super::messages::{read_cstr, CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST};

/// A decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption (always declined).
    GssEncRequest,
    /// Cancel the query running for this key.
    Cancel {
        /// The key's first half: a backend pid in PostgreSQL, a random number when the proxy issued
        /// it.
        pid: i32,
        /// Secret half of the key.
        secret: i32,
    },
    /// A real StartupMessage.
    Startup {
        /// Protocol minor version asked for (3.x).
        minor: u16,
        /// Parameters in order (user, database, options, application_name, ...).
        params: Vec<(String, String)>,
    },
}

/// Why a startup packet is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    /// Protocol major version other than 3.
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.0")]
    UnsupportedProtocol(u16, u16),
    /// Structurally broken packet.
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
}

/// Decodes the payload of a startup-phase packet (after its length word).
pub fn decode(payload: &Bytes) -> Result<StartupPacket, StartupError> {
    let Some(v) = payload.get(0..4) else {
        return Err(StartupError::Malformed("too short"));
    };
    let version = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let rest = &payload[4..];
    match version {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            let Some(k) = rest.get(0..8) else {
                return Err(StartupError::Malformed("short cancel request"));
            };
            Ok(StartupPacket::Cancel {
                pid: i32::from_be_bytes([k[0], k[1], k[2], k[3]]),
                secret: i32::from_be_bytes([k[4], k[5], k[6], k[7]]),
            })
        }
        _ => {
            let major = (version >> 16) as u16;
            let minor = (version & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol(major, minor));
            }
            let mut params = Vec::new();
            let mut b = rest;
            loop {
                match b.first() {
                    None => return Err(StartupError::Malformed("missing terminator")),
                    Some(0) => break,
                    Some(_) => {}
                }
                let (k, tail) =
                    read_cstr(b).ok_or(StartupError::Malformed("unterminated parameter name"))?;
                let (val, tail) =
                    read_cstr(tail).ok_or(StartupError::Malformed("missing parameter value"))?;
                let k = std::str::from_utf8(k)
                    .map_err(|_| StartupError::Malformed("parameter name is not UTF-8"))?;
                let val = std::str::from_utf8(val)
                    .map_err(|_| StartupError::Malformed("parameter value is not UTF-8"))?;
                params.push((k.to_owned(), val.to_owned()));
                b = tail;
            }
            Ok(StartupPacket::Startup { minor, params })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(version: i32, body: &[u8]) -> Bytes {
        let mut v = version.to_be_bytes().to_vec();
        v.extend_from_slice(body);
        Bytes::from(v)
    }

    #[test]
    fn decodes_each_kind() {
        assert_eq!(
            decode(&packet(SSL_REQUEST, b"")),
            Ok(StartupPacket::SslRequest)
        );
        assert_eq!(
            decode(&packet(CANCEL_REQUEST, &[0, 0, 0, 7, 0, 0, 0, 9])),
            Ok(StartupPacket::Cancel { pid: 7, secret: 9 })
        );
        let s = decode(&packet(196_608, b"user\0bob\0database\0app\0\0")).unwrap();
        assert_eq!(
            s,
            StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "bob".into()),
                    ("database".into(), "app".into())
                ]
            }
        );
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode(&Bytes::from_static(b"\0\0")).is_err());
        assert!(decode(&packet(196_608, b"user\0bob")).is_err());
        assert!(decode(&packet(196_608, b"user\0bob\0")).is_err());
        assert_eq!(
            decode(&packet(2 << 16, b"")),
            Err(StartupError::UnsupportedProtocol(2, 0))
        );
        assert!(decode(&packet(CANCEL_REQUEST, &[1, 2])).is_err());
    }
}
