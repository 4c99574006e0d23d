//! The client's startup settings (`options=-c …`, PGTZ, DateStyle, search_path …) under
//! pooling.
//!
//! Reported parameters (the ones PostgreSQL sends ParameterStatus for: TimeZone, DateStyle …) are
//! kept in sync per session, at session level, only when the server connection's value differs, as
//! PgBouncer does. Other settings are set at session level by the prelude that sets the tenant
//! (`tenant::inject`), as part of the session's identity: a connection carrying another identity
//! gets them reset first, so they hold without leaking to other clients. Settings that would change
//! who the session is or weaken RLS are refused at connect.

use crate::error;
use crate::events::EventKind;
use crate::protocol::messages::{PgError, Severity};
use crate::protocol::params::{tracked, unsafe_client_encoding, TRACKED};
use crate::tenant::identity::{parse_options, TenantRequest, TenantSource};

/// Startup keys that are not settings.
const NOT_SETTINGS: [&str; 4] = ["user", "database", "options", "replication"];

/// What a client's startup asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Tracked reported parameters (canonical name, value).
    pub reported: Vec<(String, String)>,
    /// Other settings: part of the session's identity, set by the prelude with the tenant.
    pub local: Vec<(String, String)>,
}

/// A startup setting that is refused at connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting \"{name}\" at connect is not allowed through this proxy")]
pub struct Forbidden {
    pub name: String,
    /// The tamper event it is.
    pub event: EventKind,
    /// For a refused `client_encoding`: the value asked for.
    pub encoding: Option<String>,
}

impl Forbidden {
    /// The FATAL the client receives: PostgreSQL's own wording for a bad `client_encoding`
    /// value (22023), else tenantgate's 42501 refusal.
    pub fn error(&self) -> PgError {
        let err = match &self.encoding {
            Some(v) => error::unsafe_encoding(v, unsafe_client_encoding(v).unwrap_or("multi-byte")),
            None => error::refused(&format!("setting \"{}\" at connect", self.name))
                .with_detail("the connection was refused"),
        };
        PgError {
            severity: Severity::Fatal,
            ..err
        }
    }
}

/// Splits startup parameters and `options` into tenant requests and settings.
pub fn classify(
    params: &[(String, String)],
    tenant_setting: &str,
) -> Result<(ClientSettings, Vec<TenantRequest>), Forbidden> {
    let mut out = ClientSettings::default();
    let mut requests = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in params {
        if k == "options" {
            pairs.extend(parse_options(v).into_iter().filter(|(k, _)| !k.is_empty()));
        } else if !NOT_SETTINGS.contains(&k.as_str()) && !k.starts_with("_pq_.") {
            pairs.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in pairs {
        let lower = k.to_ascii_lowercase();
        if lower == tenant_setting.to_ascii_lowercase() {
            requests.push(TenantRequest {
                source: TenantSource::Options,
                value: v,
            });
            continue;
        }
        let event = match lower.as_str() {
            "role" | "session_authorization" => Some(EventKind::RoleTamper),
            "row_security" => Some(EventKind::RlsTamper),
            _ => None,
        };
        if let Some(event) = event {
            return Err(Forbidden {
                name: k,
                event,
                encoding: None,
            });
        }
        // The inspector reads bytes as UTF-8: a client encoding in which a quote or backslash
        // byte can be the tail of a multi-byte character (SJIS, BIG5, GBK, …) would let a
        // string literal swallow statements PostgreSQL then runs (PGCLIENTENCODING arrives here
        // as the `client_encoding` startup parameter, `-c client_encoding=…` through options).
        if lower == "client_encoding" && unsafe_client_encoding(&v).is_some() {
            return Err(Forbidden {
                name: k,
                event: EventKind::TenantTamper,
                encoding: Some(v),
            });
        }
        match tracked(&k) {
            Some(name) => set(&mut out.reported, name, v),
            None => set(&mut out.local, &k, v),
        }
    }
    Ok((out, requests))
}

fn set(list: &mut Vec<(String, String)>, name: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some(slot) => slot.1 = value,
        None => list.push((name.to_owned(), value)),
    }
}

/// The full tracked list for a session: the client's values over the server's defaults.
pub fn with_defaults(
    client: &[(String, String)],
    server: &[(String, String)],
) -> Vec<(usize, String)> {
    TRACKED
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let own = client
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone());
            // A client that sends no application_name has '' (PostgreSQL's default), not the
            // name the proxy's own connections carry.
            let default = || match *name {
                "application_name" => Some(String::new()),
                _ => server
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
            };
            own.or_else(default).map(|v| (i, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::params::tracked_index;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn classifies_tenant_tracked_local_and_forbidden() {
        let (s, r) = classify(
            &[
                p("user", "u"),
                p("database", "d"),
                p("timezone", "UTC"),
                p(
                    "options",
                    "-c search_path=a,b -c app.tenant_id=t1 --statement-timeout=5s",
                ),
                p("extra_float_digits", "3"),
                p("_pq_.x", "1"),
                p("App.Tenant_Id", "t1"),
            ],
            "app.tenant_id",
        )
        .unwrap();
        assert_eq!(s.reported, vec![p("TimeZone", "UTC")]);
        assert_eq!(
            s.local,
            vec![
                p("search_path", "a,b"),
                p("statement_timeout", "5s"),
                p("extra_float_digits", "3")
            ]
        );
        assert_eq!(r.len(), 2);
        assert_eq!(
            classify(&[p("options", "-c role=postgres")], "app.tenant_id")
                .unwrap_err()
                .event,
            EventKind::RoleTamper
        );
        assert_eq!(
            classify(&[p("row_security", "off")], "app.tenant_id")
                .unwrap_err()
                .event,
            EventKind::RlsTamper
        );
    }

    #[test]
    fn unsafe_client_encodings_are_refused_at_connect() {
        for params in [
            vec![p("client_encoding", "SJIS")],
            vec![p("client_encoding", "shift_jis")],
            vec![p("options", "-c client_encoding=BIG5")],
            vec![p("options", "--client-encoding=gbk")],
            vec![p("options", "-cclient_encoding=WIN932")],
            vec![p("CLIENT_ENCODING", "uhc")],
        ] {
            let f = classify(&params, "app.tenant_id").unwrap_err();
            assert_eq!(f.event, EventKind::TenantTamper, "{params:?}");
            let e = f.error();
            assert_eq!(e.code, "22023");
            assert_eq!(e.severity, Severity::Fatal);
            assert!(e
                .message
                .starts_with("invalid value for parameter \"client_encoding\""));
        }
        for v in ["UTF8", "utf-8", "EUC_JP", "LATIN1", "SQL_ASCII"] {
            assert!(
                classify(&[p("client_encoding", v)], "app.tenant_id").is_ok(),
                "{v}"
            );
        }
    }

    #[test]
    fn defaults_fill_in_the_tracked_list() {
        let l = with_defaults(
            &[p("TimeZone", "Europe/Paris")],
            &[p("TimeZone", "UTC"), p("DateStyle", "ISO, MDY")],
        );
        let tz = tracked_index("TimeZone").unwrap();
        let ds = tracked_index("DateStyle").unwrap();
        assert!(l.contains(&(tz, "Europe/Paris".to_owned())));
        assert!(l.contains(&(ds, "ISO, MDY".to_owned())));
        assert_eq!(
            tracked_index("timezone"),
            None,
            "ParameterStatus names are canonical"
        );
    }
}
