//! Signed tenant context: a tenant that SQL running as the upstream role cannot forge.
//!
//! Without signing, every guarantee rests on the SQL inspector: the upstream role can change
//! `app.tenant_id` itself, and the RLS policies trust that setting. With `[tenant]
//! signing_key_file`, every prelude also sets [`SIGNATURE_SETTING`] to
//! `<key id>:<hex HMAC-SHA-256(key, message)>`, where the message binds the key id, the upstream
//! backend's pid (from BackendKeyData) and the tenant ([`keys::message`]). Policies read
//! `(SELECT tenantgate.current_tenant())`, a `SECURITY DEFINER` function owned by a `NOLOGIN`
//! role that alone can read the keys: it returns the tenant only when the signature verifies
//! for `pg_backend_pid()`, and NULL (no rows) otherwise. A client that sets another tenant (in
//! a Query, a function, `ts_rewrite`, a value planted for the next client) cannot produce the
//! matching signature, and a signature seen anywhere is worthless on another backend or for
//! another tenant. The inspector becomes a detector of probes, not the last line of defence.
//!
//! - [`keys`]: the key file (format, 0600, rotation) and the HMAC the proxy signs with.
//! - [`sql`]: the SQL `tenantgate signing install` applies (plain SQL, PostgreSQL 13–17,
//!   pgcrypto's `hmac()` when installed, else built-in `sha256()`).
//! - `cli::signing_install`: `tenantgate signing install` and `signing remove-key` (the
//!   commands connect through `verify`, which depends on this module, so they live above both).
//!
//! The check that a database is set up for it lives in `verify::signing`.

pub mod keys;
pub mod sql;

pub use keys::{KeyRing, SigningKey};

/// The setting the proxy puts the signature in. Fixed (not configurable) so that
/// `tenantgate.current_tenant()` and the inspector agree on it; the inspector guards it like
/// the tenant setting, with or without signing.
pub const SIGNATURE_SETTING: &str = "tenantgate.signature";

/// The schema `signing install` creates.
pub const SCHEMA: &str = "tenantgate";

/// The function policies call, schema-qualified.
pub const FUNCTION: &str = "tenantgate.current_tenant()";

/// The key table, schema-qualified.
pub const KEY_TABLE: &str = "tenantgate.signing_keys";

/// The default owner of the schema, the key table and the function.
pub const DEFAULT_OWNER: &str = "tenantgate_owner";
