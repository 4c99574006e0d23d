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
//!   `SECURITY DEFINER` (it reads the keys as the owner), `STABLE`, `PARALLEL RESTRICTED` (it
//!   reads `pg_backend_pid()`, which differs in a parallel worker; as an InitPlan it still
//!   allows parallel plans), and no `SET` clause ([`function_body`] says why). It returns the
//!   tenant setting when `tenantgate.signature` is a valid signature of it for this backend
//!   with a key in the table, else NULL. EXECUTE for PUBLIC.
//!
//! # Name resolution (security review)
//!
//! A `SECURITY DEFINER` function runs with its owner's rights, so anything in it that a caller
//! could redirect (a function, operator, type or table the caller creates with the same name)
//! would run or be read with those rights, or would make the check pass. The usual defence is
//! `SET search_path = pg_catalog, pg_temp`; it costs a save, a restore and a recomputation of
//! the search path on every call, about a third of the function's cost. This function needs
//! none, because nothing in its body is resolved through the search path at all:
//! - **functions**: every call is qualified, `pg_catalog.current_setting`, `pg_catalog.sha256`,
//!   … (pgcrypto's `hmac` by the schema the extension is installed in, found by the installer in
//!   `pg_extension`). A qualified name looks only in that schema, where nobody but a superuser
//!   (pg_catalog) or the extension's schema owner can create; every argument has its exact
//!   type (`'…'::pg_catalog.text`, `'UTF8'::pg_catalog.name`), so an overload someone adds to
//!   the extension's schema is never a better match than the exact one;
//! - **operators**: written `OPERATOR(pg_catalog.=)`, `OPERATOR(pg_catalog.<>)`,
//!   `OPERATOR(pg_catalog.||)`, with operands of exact types. No construct that looks an
//!   operator up by its bare name appears (`NULLIF`, `IN`, `CASE x WHEN`, `BETWEEN`, `LIKE`,
//!   `IS DISTINCT FROM`, `JOIN … USING`);
//! - **types and casts**: `pg_catalog.text`, `pg_catalog.name`; casts are found in `pg_cast` by
//!   type OIDs, never by name;
//! - **tables**: `tenantgate.signing_keys`, qualified; schema `tenantgate` is the owner's and
//!   nobody else can create in it;
//! - **`pg_temp`**: searched first for relations and types only when a name is unqualified, and
//!   never implicitly for functions and operators: with every name qualified it takes no part.
//!
//! The caller's `search_path` can still differ from call to call; PostgreSQL then re-plans the
//! cached statement, which resolves to the same objects. `tests/signing.rs`
//! (`shadowing_objects_in_public_and_pg_temp_change_nothing`) creates a shadow of every
//! function, operator, type and table the body names, in `public` and in `pg_temp`, with both
//! first on the search path, and shows no foreign row is read. `verify` fails a function whose
//! body is not the one the installer writes unless it pins `search_path` itself. The install
//! script runs with `SET LOCAL search_path = pg_catalog, pg_temp`, so the table's CHECK
//! constraints and defaults bind to pg_catalog too.

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
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The body of `current_tenant()`, with `mac(msg)` the expression computing the MAC of the
/// expression `msg` with key row `k`.
///
/// Why it is shaped this way (each choice measured with callgrind, instructions per RLS point
/// select, docs/benchmarks.md "2026-12-03"):
/// - PL/pgSQL, not SQL: PostgreSQL 13–17 plan an SQL function's body again in every statement
///   that calls it (+200 µs of server CPU per statement), while PL/pgSQL keeps its plans for
///   the session. Not a view either: a view's HMAC expression is copied and simplified by the
///   planner in every statement of the simple protocol (+216 k instructions per statement
///   against the function's +69 k).
/// - No `SET search_path` clause: a function with one saves and restores the setting and
///   recomputes the search path on every call. Instead nothing in the body is resolved through
///   a search path ([`module documentation`](self), "Name resolution").
/// - One statement and no PL/pgSQL expressions: PL/pgSQL compiles its expressions again in
///   every transaction; `SELECT … INTO` and `RETURN variable` have none.
/// - As few function calls as the HMAC needs: the executor looks up and checks the EXECUTE
///   privilege of every function in the statement again in every transaction (~1.7 k
///   instructions each). So there is no `starts_with(signature, key_id || ':')` pre-filter
///   (it saved an HMAC only while two keys are installed, and cost 7 k instructions always)
///   and no `tenant <> ''` test (the proxy never signs an empty tenant: its signature cannot
///   exist, and a NULL tenant leaves a three-line message no signature covers). The key id is
///   still bound twice: in the message and as the signature's prefix, so each key row can
///   only match a signature made with that key.
/// - A sequential scan of the key table (one or two rows): cheaper to start than an index
///   scan.
pub fn function_body(setting: &str, mac: impl Fn(&str) -> String) -> String {
    body(setting, mac, false)
}

/// The body `signing install` wrote before 2026-12-03 (with the `starts_with` pre-filter and
/// the empty-tenant test): just as sound, so `verify` accepts it until the next install
/// replaces it.
fn previous_function_body(setting: &str, mac: impl Fn(&str) -> String) -> String {
    body(setting, mac, true)
}

/// The function's body; `prefiltered`: with the tests the previous release had before the MAC.
fn body(setting: &str, mac: impl Fn(&str) -> String, prefiltered: bool) -> String {
    let (tenant, sig, msg) = parts(setting);
    let mac = mac(&msg);
    let prefilter = if prefiltered {
        format!(
            "pg_catalog.starts_with({sig}, k.key_id OPERATOR(pg_catalog.||) ':'::pg_catalog.text)
       AND {tenant} OPERATOR(pg_catalog.<>) ''::pg_catalog.text
       AND "
        )
    } else {
        String::new()
    };
    format!(
        "
DECLARE
    tenant_value pg_catalog.text;
BEGIN
    SELECT {tenant} INTO tenant_value
      FROM {KEY_TABLE} AS k
     WHERE {prefilter}{sig} OPERATOR(pg_catalog.=) (k.key_id OPERATOR(pg_catalog.||) ':'::pg_catalog.text
           OPERATOR(pg_catalog.||) pg_catalog.encode({mac}, 'hex'::pg_catalog.text));
    RETURN tenant_value;
END
"
    )
}

/// The tenant, the signature and the signed message as SQL expressions.
fn parts(setting: &str) -> (String, String, String) {
    let tenant = format!(
        "pg_catalog.current_setting({}::pg_catalog.text, true)",
        literal(setting)
    );
    let sig = format!(
        "pg_catalog.current_setting({}::pg_catalog.text, true)",
        literal(SIGNATURE_SETTING)
    );
    let msg = format!(
        "pg_catalog.convert_to(pg_catalog.concat_ws(pg_catalog.chr(10), {prefix}::pg_catalog.text, \
k.key_id, pg_catalog.pg_backend_pid()::pg_catalog.text, {tenant}), 'UTF8'::pg_catalog.name)",
        prefix = literal(MESSAGE_PREFIX),
    );
    (tenant, sig, msg)
}

/// The MAC of `msg` with the built-in `sha256()` (PostgreSQL ≥ 11) and the stored pads.
pub fn builtin_mac(msg: &str) -> String {
    format!(
        "pg_catalog.sha256(k.opad OPERATOR(pg_catalog.||) pg_catalog.sha256(k.ipad OPERATOR(pg_catalog.||) {msg}))"
    )
}

/// The MAC of `msg` with pgcrypto's `hmac()`, installed in schema `schema` (already quoted).
pub fn pgcrypto_mac(schema: &str, msg: &str) -> String {
    format!("{schema}.hmac({msg}, k.secret, 'sha256'::pg_catalog.text)")
}

/// The body `signing install` gives the function when pgcrypto is installed in
/// `crypto_schema` (None: not installed).
#[cfg(any(test, feature = "internals"))]
pub fn expected_body(setting: &str, crypto_schema: Option<&str>) -> String {
    match crypto_schema {
        None => function_body(setting, builtin_mac),
        Some(s) => function_body(setting, |msg| pgcrypto_mac(&ident(s), msg)),
    }
}

/// The bodies `verify` accepts as written by `signing install`: `expected_body` and the one
/// earlier releases wrote, each with pgcrypto's schema quoted (as `signing install` writes it
/// now) and, for a plain lowercase name, bare (as earlier releases wrote it, with
/// `quote_ident()`, which quotes only when needed).
pub fn accepted_bodies(setting: &str, crypto_schema: Option<&str>) -> Vec<String> {
    let Some(schema) = crypto_schema else {
        return vec![
            function_body(setting, builtin_mac),
            previous_function_body(setting, builtin_mac),
        ];
    };
    let mut spellings = vec![ident(schema)];
    let plain = schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        spellings.push(schema.to_owned());
    }
    let mut bodies = Vec::new();
    for s in &spellings {
        bodies.push(function_body(setting, |msg| pgcrypto_mac(s, msg)));
        bodies.push(previous_function_body(setting, |msg| pgcrypto_mac(s, msg)));
    }
    bodies
}

/// Stands for pgcrypto's schema in the install script's template until the `DO` block knows
/// it; a setting name (an identifier) cannot contain it.
const CRYPTO_SCHEMA_MARK: &str = "\u{1}crypto\u{1}";

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
SET LOCAL search_path = pg_catalog, pg_temp;

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
    -- A non-superuser admin acts as the owner to create and alter its objects: it needs the
    -- owner's privileges (INHERIT) and, on PostgreSQL 16+, the right to SET ROLE to it, which
    -- CREATEROLE no longer implies (the creator of a role holds only ADMIN OPTION on it).
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 THEN
            IF NOT (pg_catalog.pg_has_role(current_user, {owner_lit}, 'USAGE')
                    AND pg_catalog.pg_has_role(current_user, {owner_lit}, 'SET')) THEN
                EXECUTE pg_catalog.format('GRANT %I TO %I WITH INHERIT TRUE, SET TRUE',
                                          {owner_lit}, current_user);
            END IF;
        ELSIF NOT pg_catalog.pg_has_role(current_user, {owner_lit}, 'USAGE') THEN
            EXECUTE pg_catalog.format('GRANT %I TO %I', {owner_lit}, current_user);
        END IF;
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
    let builtin = function_body(&opts.setting, builtin_mac);
    // A format() template: `%s` is the schema, every other `%` (a setting name may hold one)
    // doubled so that format() keeps it.
    let crypto = create_function(&function_body(&opts.setting, |msg| {
        pgcrypto_mac(CRYPTO_SCHEMA_MARK, msg)
    }))
    .replace('%', "%%")
    .replace(CRYPTO_SCHEMA_MARK, "%s");
    sql.push_str(&format!(
        "
-- pgcrypto's hmac() when the extension is installed (in whatever schema), else the built-in
-- sha256() over the stored pads: the same HMAC-SHA-256.
DO $tg$
DECLARE
    crypto text;
BEGIN
    -- Always quoted, as `verify` expects it (quote_ident() would leave a plain name bare).
    SELECT '\"' || pg_catalog.replace(n.nspname, '\"', '\"\"') || '\"' INTO crypto
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
        create_crypto = literal(&crypto),
    ));
    sql
}

/// `CREATE OR REPLACE FUNCTION tenantgate.current_tenant()` with `body`.
fn create_function(body: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {SCHEMA}.current_tenant() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
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
            "SET LOCAL search_path = pg_catalog, pg_temp",
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

    #[test]
    fn a_percent_in_the_setting_name_survives_the_pgcrypto_template() {
        let ring = KeyRing::single(SigningKey::new("k1", [1; 32]).expect("id"));
        let o = InstallOptions {
            setting: "app.ten%ant".into(),
            ..InstallOptions::default()
        };
        let sql = install(&o, &ring);
        // The builtin branch is a plain literal; the pgcrypto branch a format() template with
        // exactly one `%s` (the schema) and every other `%` doubled.
        let template = sql
            .split("EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION")
            .nth(1)
            .expect("the pgcrypto branch")
            .split(", crypto);")
            .next()
            .expect("its template");
        assert_eq!(template.matches("%s").count(), 1, "{template}");
        assert!(template.contains("app.ten%%ant"), "{template}");
        assert!(!template.contains(CRYPTO_SCHEMA_MARK));
    }

    #[test]
    fn verify_accepts_the_current_and_the_previous_body_only() {
        let b = accepted_bodies("app.tenant_id", None);
        assert_eq!(b[0], expected_body("app.tenant_id", None));
        assert!(b[1].contains("starts_with") && !b[0].contains("starts_with"));
        assert!(!b.contains(&expected_body("app.other", None)));
        // pgcrypto's schema quoted (now) or bare (before) when quote_ident() leaves it bare.
        let b = accepted_bodies("app.tenant_id", Some("public"));
        assert_eq!(b[0], expected_body("app.tenant_id", Some("public")));
        assert!(b[0].contains("\"public\".hmac(") && b[2].contains("(public.hmac("));
        assert_eq!(b.len(), 4);
        assert_eq!(accepted_bodies("app.tenant_id", Some("Crypto")).len(), 2);
    }

    #[test]
    fn the_body_resolves_nothing_through_the_search_path() {
        for body in [
            expected_body("app.tenant_id", None),
            expected_body("app.tenant_id", Some("public")),
        ] {
            // Every call is schema-qualified: the word before each `(` names its schema.
            for (i, _) in body.match_indices('(') {
                let head = &body[..i];
                let start = head
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .map_or(0, |p| p + 1);
                let word = &head[start..];
                if word.is_empty() || word == "OPERATOR" {
                    continue;
                }
                assert!(word.contains('.'), "unqualified call {word}( in {body}");
            }
            // Every operator is OPERATOR(pg_catalog.…) and every cast names pg_catalog.
            let code = body
                .replace("OPERATOR(pg_catalog.||)", "")
                .replace("OPERATOR(pg_catalog.=)", "")
                .replace("OPERATOR(pg_catalog.<>)", "")
                .replace("::pg_catalog.", " ");
            for op in ["||", "=", "<>", "<", ">", "::", "~", "!", "+", "-"] {
                let code = code
                    .replace("'tenantgate-v1'", "")
                    .replace("'app.tenant_id'", "");
                assert!(!code.contains(op), "bare operator {op} in {body}");
            }
            // No construct that looks an operator up by its bare name, and no SET clause.
            for construct in [
                "NULLIF", " IN ", "CASE", "BETWEEN", "LIKE", "DISTINCT", "USING", "SET ",
            ] {
                assert!(
                    !body.to_uppercase().contains(construct),
                    "{construct} in {body}"
                );
            }
        }
    }
}
