//! Tenant ids: the accepted formats, validation and canonical spelling.
//!
//! A top-level leaf module (it knows nothing of the configuration or the session) so that the config
//! loader, the handshake, the guard and the inspector can all depend on it without a cycle.

use serde::Deserialize;

/// The accepted shape of tenant ids.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TenantFormat {
    /// A canonical 8-4-4-4-12 hex UUID (stored lowercased).
    #[default]
    Uuid,
    /// `[a-z0-9][a-z0-9_-]{0,62}`.
    Slug,
}

/// Why a tenant id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantIdError {
    /// Not 8-4-4-4-12 hex digits (either case passes; braces and other `uuid_in` spellings do not).
    #[error("tenant id is not a canonical UUID")]
    NotUuid,
    /// Not `[a-z0-9][a-z0-9_-]{0,62}` (upper case is refused, not folded).
    #[error("tenant id must match [a-z0-9][a-z0-9_-]{{0,62}}")]
    NotSlug,
}

/// Case-insensitive for UUIDs ([`canonical`] then lowercases them), exact for slugs.
pub fn validate_tenant_id(format: TenantFormat, id: &str) -> Result<(), TenantIdError> {
    match format {
        TenantFormat::Uuid if is_uuid(id) => Ok(()),
        TenantFormat::Uuid => Err(TenantIdError::NotUuid),
        TenantFormat::Slug if is_slug(id) => Ok(()),
        TenantFormat::Slug => Err(TenantIdError::NotSlug),
    }
}

/// Normalises a valid id (UUIDs are compared lowercased).
pub fn canonical(format: TenantFormat, id: &str) -> String {
    match format {
        TenantFormat::Uuid => id.to_ascii_lowercase(),
        TenantFormat::Slug => id.to_owned(),
    }
}

/// 8-4-4-4-12 hexadecimal digits, in either case.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The canonical (8-4-4-4-12, lower-case) form of any text PostgreSQL's `uuid_in` accepts, or
/// `None` if it would reject it.
///
/// Why: probe detection compares literals with the session's tenant, and `uuid_in` accepts more
/// than the canonical spelling. This follows `string_to_uuid` in `src/backend/utils/adt/uuid.c`:
/// an optional `{` (then a closing `}` is required), 32 hex digits in either case, a `-`
/// optionally after any group of four digits except the last, nothing else (no whitespace).
/// So `{2222…}`, the 32-digit form, `2222-2222-…` and upper case all name the same tenant.
pub fn uuid_input(s: &str) -> Option<String> {
    let mut b = s.as_bytes();
    let braces = b.first() == Some(&b'{');
    if braces {
        b = b.get(1..)?;
    }
    let mut hex = [0u8; 32];
    let mut i = 0;
    for byte in 0..16 {
        for slot in hex.get_mut(byte * 2..byte * 2 + 2)? {
            let c = *b.get(i)?;
            if !c.is_ascii_hexdigit() {
                return None;
            }
            *slot = c.to_ascii_lowercase();
            i += 1;
        }
        if b.get(i) == Some(&b'-') && byte % 2 == 1 && byte < 15 {
            i += 1;
        }
    }
    if braces {
        if b.get(i) != Some(&b'}') {
            return None;
        }
        i += 1;
    }
    if i != b.len() {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (n, c) in hex.iter().enumerate() {
        if matches!(n, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(*c));
    }
    Some(out)
}

/// The tenant a literal names, as the server would read it: for UUIDs every spelling `uuid_in`
/// accepts, canonicalised; for slugs the text itself if it is a valid slug.
pub fn literal_tenant(format: TenantFormat, s: &str) -> Option<String> {
    match format {
        TenantFormat::Uuid => uuid_input(s),
        TenantFormat::Slug => is_slug(s).then(|| s.to_owned()),
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}
