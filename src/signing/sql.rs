//! The SQL `tenantgate signing install` applies (or prints with `--print`), and the SQL of
//! `signing remove-key`.
//!
//! Plain SQL and PL/pgSQL `DO` blocks only, so it runs where no C extension can be installed
//! (RDS, Cloud SQL, Supabase) and on PostgreSQL 13–17. One transaction; every statement is
//! idempotent, so running it again changes nothing but adds keys the table lacks and recreates
//! the function (choosing pgcrypto's `hmac()` if the extension has been installed meanwhile).
//!
//! What it creates, and why each piece is shaped as it is:
//! - a `NOLOGIN` owner role (default `tenantgate_owner`): the only role that can read the keys
//!   and alter the function; nobody logs in as it;
//! - schema `tenantgate` owned by it; USAGE for PUBLIC (policies call the function as the
//!   querying role), CREATE for nobody else;
//! - table `tenantgate.signing_keys (key_id, secret, ipad, opad, added_at)`: every privilege of
//!   every other role revoked, including what default privileges granted at creation;
//! - `tenantgate.current_tenant() RETURNS text`, PL/pgSQL (its plans are kept for the session),
//!   `SECURITY DEFINER` (it reads the keys as the owner), `STABLE`, `PARALLEL RESTRICTED` (it reads `pg_backend_pid()`, which differs in a
//!   parallel worker; as an InitPlan it still allows parallel plans), and
//!   `SET search_path = pg_catalog, pg_temp` so nothing a caller creates is resolved in it.
//!   It returns the tenant setting when `tenantgate.signature` is a valid signature of it for
//!   this backend with a key in the table, else NULL. EXECUTE for PUBLIC.

use super::keys::{hex, KeyRing, MESSAGE_PREFIX};
use super::{DEFAULT_OWNER, KEY_TABLE, SCHEMA, SIGNATURE_SETTING};

/// What the install SQL is generated for.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The tenant setting the function reads (`[tenant] setting`).
    pub setting: String,
    /// The owner role (created `NOLOGIN` when missing).
    pub owner: String,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            setting: "app.tenant_id".into(),
            owner: DEFAULT_OWNER.into(),
        }
    }
}

/// `'text'` with quotes doubled (`standard_conforming_strings` on, as in PostgreSQL ≥ 9.1).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"ident"` with quotes doubled.
pub fn ident(s: &str) -> String {
    crate::verify::catalog::quote_ident(s)
}

/// The body of `current_tenant()`, with `{mac}` the expression computing the MAC of `msg`
/// with key row `k`. PL/pgSQL rather than SQL: PostgreSQL plans an SQL function's body again in
/// every statement that calls it (measured: +200 µs of server CPU per statement), while
/// PL/pgSQL keeps its plans for the session.
fn function_body(setting: &str, mac: &str) -> String {
    format!(
        "
DECLARE
    tenant_value text := nullif(current_setting({setting}, true), '');
    signature text := current_setting({sig}, true);
    k record;
    msg bytea;
BEGIN
    IF tenant_value IS NULL OR signature IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT s.key_id, s.secret, s.ipad, s.opad INTO k
      FROM {KEY_TABLE} AS s
     WHERE s.key_id = split_part(signature, ':', 1);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    msg := convert_to(concat_ws(chr(10), {prefix}, k.key_id, pg_backend_pid()::text, tenant_value),
                      'UTF8');
    IF signature = k.key_id || ':' || encode({mac}, 'hex') THEN
        RETURN tenant_value;
    END IF;
    RETURN NULL;
END
",
        setting = literal(setting),
        sig = literal(SIGNATURE_SETTING),
        prefix = literal(MESSAGE_PREFIX),
    )
}

/// The MAC with the built-in `sha256()` (PostgreSQL ≥ 11) and the stored pads.
const BUILTIN_MAC: &str = "sha256(k.opad || sha256(k.ipad || msg))";

/// The whole install script for `keys`.
pub fn install(opts: &InstallOptions, keys: &KeyRing) -> String {
    let owner = ident(&opts.owner);
    let owner_lit = literal(&opts.owner);
    let mut sql = String::new();
    sql.push_str(&format!(
        "-- tenantgate signing install: signed tenant context (README, \"Signed tenant context\").
-- Run as an admin role (a superuser, or a role with CREATEROLE and CREATE on the database).
-- Idempotent: running it again only adds missing keys and recreates the function.
BEGIN;

DO $tg$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {owner_lit}) THEN
        BEGIN
            CREATE ROLE {owner} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created meanwhile by an install into another database of the cluster
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {owner_lit}
               AND (rolcanlogin OR rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'role % exists and can log in, is superuser or bypasses RLS; the key owner must be a plain NOLOGIN role', {owner_lit};
    END IF;
    -- A non-superuser admin acts as the owner to create and alter its objects.
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user, {owner_lit}, 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT %I TO %I', {owner_lit}, current_user);
    END IF;
END
$tg$;

CREATE SCHEMA IF NOT EXISTS {SCHEMA} AUTHORIZATION {owner};
ALTER SCHEMA {SCHEMA} OWNER TO {owner};
REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
GRANT USAGE ON SCHEMA {SCHEMA} TO PUBLIC;

CREATE TABLE IF NOT EXISTS {KEY_TABLE} (
    key_id   text PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9_-]{{1,64}}$'),
    secret   bytea NOT NULL CHECK (length(secret) = 32),
    ipad     bytea NOT NULL CHECK (length(ipad) = 64),
    opad     bytea NOT NULL CHECK (length(opad) = 64),
    added_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {KEY_TABLE} OWNER TO {owner};

"
    ));
    for k in keys.keys() {
        let (ipad, opad) = k.pads();
        let id = literal(k.id());
        let secret = format!("pg_catalog.decode('{}', 'hex')", hex(k.secret()));
        sql.push_str(&format!(
            "INSERT INTO {KEY_TABLE} (key_id, secret, ipad, opad)
    VALUES ({id}, {secret}, pg_catalog.decode('{ipad}', 'hex'), pg_catalog.decode('{opad}', 'hex'))
    ON CONFLICT (key_id) DO NOTHING;
DO $tg$
BEGIN
    IF EXISTS (SELECT FROM {KEY_TABLE} WHERE key_id = {id} AND secret <> {secret}) THEN
        RAISE EXCEPTION 'key % in {KEY_TABLE} differs from the key file: refusing to replace it', {id};
    END IF;
END
$tg$;
",
            ipad = hex(&ipad),
            opad = hex(&opad),
        ));
    }
    let builtin = function_body(&opts.setting, BUILTIN_MAC);
    let crypto = function_body(&opts.setting, "%s.hmac(msg, k.secret, 'sha256')");
    sql.push_str(&format!(
        "
-- pgcrypto's hmac() when the extension is installed (in whatever schema), else the built-in
-- sha256() over the stored pads: the same HMAC-SHA-256.
DO $tg$
DECLARE
    crypto text;
BEGIN
    SELECT pg_catalog.quote_ident(n.nspname) INTO crypto
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';
    IF crypto IS NULL THEN
        EXECUTE {create_builtin};
    ELSE
        EXECUTE pg_catalog.format({create_crypto}, crypto);
    END IF;
END
$tg$;
ALTER FUNCTION {SCHEMA}.current_tenant() OWNER TO {owner};
REVOKE ALL ON FUNCTION {SCHEMA}.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {SCHEMA}.current_tenant() TO PUBLIC;

-- Nobody but the owner reads the keys or creates in the schema: revoke what anyone else holds
-- (grants, and default privileges applied when the table was created).
DO $tg$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) AS a
              WHERE c.oid = '{KEY_TABLE}'::regclass AND a.grantee <> c.relowner LOOP
        IF r.grantee = 0 THEN
            REVOKE ALL ON {KEY_TABLE} FROM PUBLIC;
        ELSE
            EXECUTE pg_catalog.format('REVOKE ALL ON {KEY_TABLE} FROM %I', pg_catalog.pg_get_userbyid(r.grantee));
        END IF;
    END LOOP;
    FOR r IN SELECT DISTINCT a.grantee
               FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) AS a
              WHERE n.nspname = '{SCHEMA}' AND a.grantee NOT IN (0, n.nspowner)
                AND a.privilege_type = 'CREATE' LOOP
        EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA {SCHEMA} FROM %I', pg_catalog.pg_get_userbyid(r.grantee));
    END LOOP;
END
$tg$;

COMMIT;
",
        create_builtin = literal(&create_function(&builtin)),
        create_crypto = literal(&create_function(&crypto)),
    ));
    sql
}

/// `CREATE OR REPLACE FUNCTION tenantgate.current_tenant()` with `body`.
fn create_function(body: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {SCHEMA}.current_tenant() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $fn${body}$fn$"
    )
}

/// Removes one key from the table (`signing remove-key`).
pub fn remove_key(key_id: &str) -> String {
    format!(
        "DELETE FROM {KEY_TABLE} WHERE key_id = {};\n",
        literal(key_id)
    )
}

/// The policy rewrite the README and `verify` suggest: `ALTER POLICY` to the signed form.
pub fn policy_rewrite(table: &str, policy: &str, column: &str) -> String {
    let e = format!("{column} = (SELECT {})::uuid", super::FUNCTION);
    format!(
        "ALTER POLICY {} ON {table} USING ({e}) WITH CHECK ({e});",
        ident(policy)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::keys::SigningKey;

    #[test]
    fn install_sql_names_every_piece_and_every_key() {
        let mut ring = KeyRing::single(SigningKey::new("k1", [1; 32]).expect("id"));
        ring.push(SigningKey::new("k2", [2; 32]).expect("id"))
            .expect("new");
        let sql = install(&InstallOptions::default(), &ring);
        for needle in [
            "CREATE ROLE \"tenantgate_owner\" NOLOGIN",
            "CREATE SCHEMA IF NOT EXISTS tenantgate AUTHORIZATION \"tenantgate_owner\"",
            "SECURITY DEFINER",
            "SET search_path = pg_catalog, pg_temp",
            "'k1'",
            "'k2'",
            "REVOKE ALL ON tenantgate.signing_keys FROM PUBLIC",
            "''app.tenant_id''",
            "''tenantgate.signature''",
            "''tenantgate-v1''",
        ] {
            assert!(sql.contains(needle), "{needle}\n{sql}");
        }
        // The secret of every key appears (as hex) and the SQL ends committed.
        assert!(sql.contains(&hex(&[1; 32])) && sql.contains(&hex(&[2; 32])));
        assert!(sql.trim_end().ends_with("COMMIT;"));
        // A hostile setting name cannot escape its literal.
        let o = InstallOptions {
            setting: "a.b'; drop table x; --".into(),
            ..InstallOptions::default()
        };
        assert!(install(&o, &ring).contains("a.b''''; drop table x"));
    }
}
