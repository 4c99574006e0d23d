//! Who the tenant is: the choice made at connect, from the user's configuration and what the client
//! asked for (the id formats are in [`crate::tenant_id`]).
//!
//! Pure code: the handshake collects what the client asked for (user-name suffix, startup
//! `options`, TLS SNI) and this module decides, so every rule is testable with strings.

use crate::config::{TenantsSpec, UserConfig, UserKind};

use crate::tenant_id::{canonical, is_slug, validate_tenant_id, TenantFormat};

/// Where a tenant request came from (recorded in tamper events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    /// `NAME.TENANT` user name.
    UserSuffix,
    /// `-c <setting>=<id>` in the startup `options`.
    Options,
    /// TLS server name `<id><sni_suffix>`.
    Sni,
}

impl TenantSource {
    /// A short name for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantSource::UserSuffix => "user name suffix",
            TenantSource::Options => "startup options",
            TenantSource::Sni => "TLS server name",
        }
    }
}

/// One way the client asked for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRequest {
    /// Named in logs and tamper events ([`TenantSource::as_str`]).
    pub source: TenantSource,
    /// The raw value asked for.
    pub value: String,
}

/// What the handshake must do next with the client's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The session runs as this (canonical) tenant.
    Tenant(String),
    /// The value is not in `format` but may be a slug for the directory to map.
    Lookup(String),
    /// No tenant: every statement will be refused (fail closed), or a breakglass/admin session.
    None,
}

/// Why a client's tenant request is refused at connect (FATAL 42501).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TenantRefusal {
    /// A fixed-tenant user asked for another tenant: a tamper attempt.
    #[error("user \"{user}\" is bound to its own tenant and may not choose tenant \"{asked}\"")]
    FixedTenant {
        /// Its configured name (no tenant suffix).
        user: String,
        /// As the client sent it (not canonicalised).
        asked: String,
    },
    /// The requests disagree with each other.
    #[error("conflicting tenants requested: \"{0}\" and \"{1}\"")]
    Conflict(String, String),
    /// The value is not a valid tenant id and cannot be looked up.
    #[error("invalid tenant \"{asked}\": {reason}")]
    Invalid {
        /// As the client sent it.
        asked: String,
        /// The [`TenantIdError`](crate::tenant_id::TenantIdError) message.
        reason: String,
    },
    /// The tenant is not in the user's allow-list.
    #[error("user \"{user}\" may not use tenant \"{asked}\"")]
    NotAllowed {
        /// Its configured name (no tenant suffix).
        user: String,
        /// The canonical id (for a slug, the id the directory mapped it to).
        asked: String,
    },
    /// Breakglass and admin sessions do not take a tenant.
    #[error("{kind} sessions do not take a tenant")]
    NoTenantKind {
        /// `admin` or `breakglass`.
        kind: &'static str,
    },
}

impl TenantRefusal {
    /// Whether this refusal is a tamper attempt (asking for a tenant one is not bound to).
    pub fn is_tamper(&self) -> bool {
        matches!(
            self,
            TenantRefusal::FixedTenant { .. } | TenantRefusal::NotAllowed { .. }
        )
    }
}

/// Decides the session's tenant from the user's configuration and the client's requests.
///
/// `directory` says whether a non-conforming value may still be a slug to look up.
pub fn choose(
    user: &UserConfig,
    format: TenantFormat,
    requests: &[TenantRequest],
    directory: bool,
) -> Result<Choice, TenantRefusal> {
    match user.kind {
        UserKind::Breakglass | UserKind::Admin => {
            if requests.is_empty() {
                return Ok(Choice::None);
            }
            let kind = if user.kind == UserKind::Admin {
                "admin"
            } else {
                "breakglass"
            };
            return Err(TenantRefusal::NoTenantKind { kind });
        }
        UserKind::App | UserKind::Operator => {}
    }
    if let Some(fixed) = &user.tenant {
        let fixed = canonical(format, fixed);
        for r in requests {
            if canonical(format, &r.value) != fixed {
                return Err(TenantRefusal::FixedTenant {
                    user: user.name.clone(),
                    asked: r.value.clone(),
                });
            }
        }
        return Ok(Choice::Tenant(fixed));
    }
    let Some(first) = requests.first() else {
        return Ok(Choice::None);
    };
    for r in &requests[1..] {
        if canonical(format, &r.value) != canonical(format, &first.value) {
            return Err(TenantRefusal::Conflict(
                first.value.clone(),
                r.value.clone(),
            ));
        }
    }
    let asked = &first.value;
    match validate_tenant_id(format, asked) {
        Ok(()) => {
            let id = canonical(format, asked);
            check_allowed(user, &id)?;
            Ok(Choice::Tenant(id))
        }
        Err(_) if directory && is_slug(asked) => Ok(Choice::Lookup(asked.clone())),
        Err(e) => Err(TenantRefusal::Invalid {
            asked: asked.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Checks a resolved (canonical) id against the user's allow-list.
pub fn check_allowed(user: &UserConfig, id: &str) -> Result<(), TenantRefusal> {
    match &user.tenants {
        Some(spec @ TenantsSpec::List(_)) if !spec.allows(id) => Err(TenantRefusal::NotAllowed {
            user: user.name.clone(),
            asked: id.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Splits libpq-style startup `options` into `(name, value)` settings.
///
/// Understands `-c name=value`, `-cname=value` and `--name=value`; a backslash escapes the next
/// character (so values may contain spaces). Other switches are returned with an empty name.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_owned())
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_owned())
        } else {
            out.push((String::new(), w));
            continue;
        };
        if let Some(s) = setting {
            match s.split_once('=') {
                Some((k, v)) => out.push((k.replace('-', "_"), v.to_owned())),
                None => out.push((String::new(), s)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant_id::*;

    #[test]
    fn every_uuid_in_spelling_is_canonicalised() {
        let c = "22222222-2222-2222-2222-22222222abcd";
        for s in [
            "22222222-2222-2222-2222-22222222abcd",
            "22222222-2222-2222-2222-22222222ABCD",
            "{22222222-2222-2222-2222-22222222abcd}",
            "2222222222222222222222222222abcd",
            "{2222222222222222222222222222abcd}",
            "2222-2222-2222-2222-2222-2222-2222-abcd",
            "{2222-2222-2222-2222-2222-2222-2222-abcd}",
            "22222222-22222222-22222222-2222abcd",
        ] {
            assert_eq!(uuid_input(s).as_deref(), Some(c), "{s}");
            assert_eq!(literal_tenant(TenantFormat::Uuid, s).as_deref(), Some(c));
        }
        for s in [
            "",
            "{22222222-2222-2222-2222-22222222abcd",
            "22222222-2222-2222-2222-22222222abcd}",
            " 22222222-2222-2222-2222-22222222abcd",
            "22222222-2222-2222-2222-22222222abcd-",
            "2222222-22222-2222-2222-22222222abcd",
            "22222222--2222-2222-2222-2222222abcd",
            "22222222-2222-2222-2222-22222222abcg",
            "22222222-2222-2222-2222-22222222abcd0",
        ] {
            assert_eq!(uuid_input(s), None, "{s:?}");
        }
    }

    const A: &str = "11111111-1111-1111-1111-111111111111";
    const B: &str = "22222222-2222-2222-2222-222222222222";

    fn user(tenant: Option<&str>, tenants: Option<TenantsSpec>) -> UserConfig {
        UserConfig {
            name: "u".into(),
            password: Some("p".into()),
            scram: None,
            auth: Default::default(),
            kind: UserKind::App,
            tenant: tenant.map(str::to_owned),
            tenants,
            allow_switch: false,
            allow_catalog_monitoring: false,
            pool_mode: None,
            pool_size: None,
            max_user_connections: None,
        }
    }

    fn req(v: &str) -> TenantRequest {
        TenantRequest {
            source: TenantSource::UserSuffix,
            value: v.into(),
        }
    }

    #[test]
    fn formats() {
        assert!(is_uuid(A));
        assert!(is_uuid(&A.to_uppercase()));
        assert!(!is_uuid("11111111-1111-1111-1111-11111111111"));
        assert!(!is_uuid("11111111x1111-1111-1111-111111111111"));
        assert!(is_slug("acme"));
        assert!(is_slug("a-b_c9"));
        assert!(!is_slug("Acme"));
        assert!(!is_slug("-acme"));
        assert!(!is_slug(&"a".repeat(64)));
        assert!(!is_slug("acme'; drop"));
    }

    #[test]
    fn fixed_tenant_cannot_be_changed() {
        let u = user(Some(A), None);
        assert_eq!(
            choose(&u, TenantFormat::Uuid, &[], false),
            Ok(Choice::Tenant(A.into()))
        );
        assert_eq!(
            choose(&u, TenantFormat::Uuid, &[req(A)], false),
            Ok(Choice::Tenant(A.into()))
        );
        let err = choose(&u, TenantFormat::Uuid, &[req(B)], false).unwrap_err();
        assert!(err.is_tamper());
    }

    #[test]
    fn chooser_picks_validates_and_checks_list() {
        let any = user(None, Some(TenantsSpec::Any("*".into())));
        assert_eq!(
            choose(&any, TenantFormat::Uuid, &[], false),
            Ok(Choice::None)
        );
        assert_eq!(
            choose(&any, TenantFormat::Uuid, &[req(B)], false),
            Ok(Choice::Tenant(B.into()))
        );
        assert!(choose(&any, TenantFormat::Uuid, &[req("acme")], false).is_err());
        assert_eq!(
            choose(&any, TenantFormat::Uuid, &[req("acme")], true),
            Ok(Choice::Lookup("acme".into()))
        );
        assert!(matches!(
            choose(&any, TenantFormat::Uuid, &[req(A), req(B)], false),
            Err(TenantRefusal::Conflict(..))
        ));
        let list = user(None, Some(TenantsSpec::List(vec![A.into()])));
        assert!(choose(&list, TenantFormat::Uuid, &[req(B)], false)
            .unwrap_err()
            .is_tamper());
    }

    #[test]
    fn options_parsing() {
        let o = parse_options("-c app.tenant_id=abc --search_path=x\\ y -cfoo=bar -q");
        assert_eq!(
            o,
            vec![
                ("app.tenant_id".into(), "abc".into()),
                ("search_path".into(), "x y".into()),
                ("foo".into(), "bar".into()),
                (String::new(), "-q".into()),
            ]
        );
        assert!(parse_options("").is_empty());
    }
}
