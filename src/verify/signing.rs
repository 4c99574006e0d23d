//! Check 10: the signed tenant context is in place and cannot be subverted by the role.
//!
//! Run only with signing on (`[tenant] signing_key_file`, or `verify --signed` /
//! `--signing-key-file`). The signature is worth exactly what the secrecy of the keys and the
//! integrity of `tenantgate.current_tenant()` are worth, so the checking role (the upstream
//! role) must not be able to read the key table, be a member of the role that owns it, the
//! function or the schema (a member can replace the function or read the keys), and the
//! function must be `SECURITY DEFINER` and resolve nothing through the caller's `search_path`:
//! its body is exactly the one `signing install` writes (every name schema-qualified,
//! `crate::signing::sql`; the one earlier releases wrote is accepted too), or it pins
//! `search_path` itself. With a key, a functional
//! probe signs a value for this very backend and asks the function: it must return the value,
//! and NULL for the same signature claimed for another backend.

use tokio_postgres::Client;

use super::report::{Check, Finding, Status};
use super::VerifyError;
use crate::signing::{SigningKey, FUNCTION, KEY_TABLE, SIGNATURE_SETTING};

const KEY: &str = "signing";
const TITLE: &str = "signed tenant context";

/// The function as the catalogs describe it.
#[derive(Debug, Clone, Default)]
pub struct FunctionFacts {
    /// `proowner`, by name.
    pub owner: String,
    /// `prosecdef`.
    pub security_definer: bool,
    /// Nothing in it is resolved through the caller's search path: its body is the one
    /// `signing install` writes for this database, or `proconfig` pins `search_path`
    /// starting with `pg_catalog`.
    pub pinned_search_path: bool,
    /// The checking role is (a member of) its owner.
    pub role_is_owner: bool,
    /// The checking role may execute it.
    pub executable: bool,
}

/// The key table as the catalogs describe it.
#[derive(Debug, Clone, Default)]
pub struct TableFacts {
    /// `relowner`, by name.
    pub owner: String,
    /// The checking role is (a member of) its owner.
    pub role_is_owner: bool,
    /// The checking role may read it, or some column of it.
    pub readable: bool,
}

/// Everything check 10 judges.
#[derive(Debug, Clone, Default)]
pub struct SigningFacts {
    /// `current_user`.
    pub user: String,
    /// `tenantgate.current_tenant()`, when it exists.
    pub function: Option<FunctionFacts>,
    /// `tenantgate.signing_keys`, when it exists.
    pub table: Option<TableFacts>,
    /// Owner of schema `tenantgate`, and whether the role is (a member of) it.
    pub schema_owner: Option<(String, bool)>,
    /// The role may create objects in schema `tenantgate`.
    pub schema_create: bool,
    /// The probe's result: (key id, accepted for this backend, accepted for another backend).
    pub probe: Option<(String, bool, bool)>,
}

const FUNCTION_SQL: &str = "SELECT pg_get_userbyid(p.proowner)::text, p.prosecdef, \
       coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c(v) \
                        WHERE c.v ~* '^search_path=\"?pg_catalog\"?(,|$)'), false), \
       pg_has_role(current_user, p.proowner, 'MEMBER'), \
       has_function_privilege(p.oid, 'EXECUTE'), p.prosrc, \
       (SELECT n2.nspname::text FROM pg_extension e JOIN pg_namespace n2 ON n2.oid = e.extnamespace \
         WHERE e.extname = 'pgcrypto') \
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
 WHERE n.nspname = 'tenantgate' AND p.proname = 'current_tenant' AND p.pronargs = 0";

const TABLE_SQL: &str = "SELECT pg_get_userbyid(c.relowner)::text, \
       pg_has_role(current_user, c.relowner, 'MEMBER'), \
       has_table_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'SELECT') \
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE n.nspname = 'tenantgate' AND c.relname = 'signing_keys'";

const SCHEMA_SQL: &str = "SELECT pg_get_userbyid(n.nspowner)::text, \
       pg_has_role(current_user, n.nspowner, 'MEMBER'), \
       has_schema_privilege(n.oid, 'CREATE') \
  FROM pg_namespace n WHERE n.nspname = 'tenantgate'";

/// The value the probe signs (any text: the function does not parse it).
const PROBE_TENANT: &str = "tenantgate-verify-probe";

/// Reads the facts; with `key`, runs the functional probe (it sets the tenant `setting` and
/// the signature on this session, then resets them).
pub async fn gather(
    client: &Client,
    setting: &str,
    key: Option<&SigningKey>,
) -> Result<SigningFacts, VerifyError> {
    let q = |what: &'static str| move |e: tokio_postgres::Error| VerifyError::query(what, e);
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(q("reading the role"))?
        .get(0);
    let mut facts = SigningFacts {
        user,
        ..SigningFacts::default()
    };
    if let Some(r) = client
        .query_opt(FUNCTION_SQL, &[])
        .await
        .map_err(q("reading tenantgate.current_tenant()"))?
    {
        let src: String = r.get(5);
        let crypto: Option<String> = r.get(6);
        let installed =
            crate::signing::sql::accepted_bodies(setting, crypto.as_deref()).contains(&src);
        facts.function = Some(FunctionFacts {
            owner: r.get(0),
            security_definer: r.get(1),
            pinned_search_path: installed || r.get::<_, bool>(2),
            role_is_owner: r.get(3),
            executable: r.get(4),
        });
    }
    if let Some(r) = client
        .query_opt(TABLE_SQL, &[])
        .await
        .map_err(q("reading tenantgate.signing_keys"))?
    {
        facts.table = Some(TableFacts {
            owner: r.get(0),
            role_is_owner: r.get(1),
            readable: r.get(2),
        });
    }
    if let Some(r) = client
        .query_opt(SCHEMA_SQL, &[])
        .await
        .map_err(q("reading schema tenantgate"))?
    {
        facts.schema_owner = Some((r.get(0), r.get(1)));
        facts.schema_create = r.get(2);
    }
    let callable = facts.function.as_ref().is_some_and(|f| f.executable);
    if let (Some(key), true) = (key, callable) {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(q("reading the backend pid"))?
            .get(0);
        let here = ask(client, setting, &key.sign(PROBE_TENANT, pid)).await?;
        let elsewhere = ask(
            client,
            setting,
            &key.sign(PROBE_TENANT, pid.wrapping_add(1)),
        )
        .await?;
        client
            .query_one(
                "SELECT set_config($1, '', false), set_config($2, '', false)",
                &[&setting, &SIGNATURE_SETTING],
            )
            .await
            .map_err(q("resetting the probe's settings"))?;
        facts.probe = Some((
            key.id().to_owned(),
            here.as_deref() == Some(PROBE_TENANT),
            elsewhere.is_some(),
        ));
    }
    Ok(facts)
}

/// Sets the tenant setting to the probe value and the signature to `sig` on this session,
/// then asks the function (two statements: the function must see both settings).
async fn ask(client: &Client, setting: &str, sig: &str) -> Result<Option<String>, VerifyError> {
    client
        .query_one(
            "SELECT set_config($1, $2, false), set_config($3, $4, false)",
            &[&setting, &PROBE_TENANT, &SIGNATURE_SETTING, &sig],
        )
        .await
        .map_err(|e| VerifyError::query("setting the probe's signature", e))?;
    client
        .query_one("SELECT tenantgate.current_tenant()", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| VerifyError::query("calling tenantgate.current_tenant()", e))
}

/// Check 10 from its facts.
pub fn check(f: &SigningFacts) -> Check {
    let mut findings = Vec::new();
    let fail = |object: &str, msg: String| Finding::new(Status::Fail, object, msg);
    match &f.function {
        None => findings.push(fail(
            FUNCTION,
            format!("{FUNCTION} does not exist: run `tenantgate signing install` (policies must call it)"),
        )),
        Some(func) => {
            if !func.security_definer {
                findings.push(fail(
                    FUNCTION,
                    "is not SECURITY DEFINER: it could not read the keys as their owner, or reads them with the caller's rights".into(),
                ));
            }
            if !func.pinned_search_path {
                findings.push(fail(
                    FUNCTION,
                    "is not the body `tenantgate signing install` writes (every name schema-qualified) and has no `SET search_path = pg_catalog, pg_temp`: a SECURITY DEFINER function must not resolve names through the caller's search path; fix: run `tenantgate signing install` again".into(),
                ));
            }
            if func.role_is_owner {
                findings.push(fail(
                    FUNCTION,
                    format!(
                        "{} owns it (or is a member of its owner {}): it can replace the function with one that trusts any tenant; fix: `REVOKE {} FROM {};`",
                        f.user, func.owner, ident(&func.owner), ident(&f.user)
                    ),
                ));
            }
            if !func.executable {
                findings.push(fail(
                    FUNCTION,
                    format!("{} may not execute it: every tenant query would fail; fix: `GRANT EXECUTE ON FUNCTION {FUNCTION} TO {};`", f.user, ident(&f.user)),
                ));
            }
        }
    }
    match &f.table {
        None => findings.push(fail(
            KEY_TABLE,
            format!("{KEY_TABLE} does not exist: run `tenantgate signing install`"),
        )),
        Some(t) => {
            if t.readable {
                findings.push(fail(
                    KEY_TABLE,
                    format!(
                        "{} can read the signing keys and so sign any tenant; fix: `REVOKE ALL ON {KEY_TABLE} FROM PUBLIC, {};`",
                        f.user,
                        ident(&f.user)
                    ),
                ));
            }
            if t.role_is_owner {
                findings.push(fail(
                    KEY_TABLE,
                    format!(
                        "{} is (a member of) the keys' owner {}: it can read them and sign any tenant; fix: `REVOKE {} FROM {};`",
                        f.user,
                        t.owner,
                        ident(&t.owner),
                        ident(&f.user)
                    ),
                ));
            }
        }
    }
    if let Some((owner, true)) = &f.schema_owner {
        findings.push(fail(
            "schema tenantgate",
            format!(
                "{} is (a member of) the owner {owner} of schema tenantgate: it can drop and replace the function; fix: `ALTER SCHEMA tenantgate OWNER TO {};`",
                f.user,
                crate::signing::DEFAULT_OWNER
            ),
        ));
    }
    if f.schema_create {
        findings.push(Finding::new(
            Status::Warn,
            "schema tenantgate",
            format!(
                "{} may create objects in schema tenantgate (policies call the function by its qualified name, so this cannot replace it); fix: `REVOKE CREATE ON SCHEMA tenantgate FROM PUBLIC, {};`",
                f.user,
                ident(&f.user)
            ),
        ));
    }
    match &f.probe {
        Some((key, true, false)) => findings.push(Finding::new(
            Status::Pass,
            FUNCTION,
            format!("accepts a signature made with key {key} for this backend, and refuses it for another backend"),
        )),
        Some((key, false, _)) => findings.push(fail(
            FUNCTION,
            format!("refuses a valid signature made with key {key}: is the key in {KEY_TABLE}? (run `tenantgate signing install --key-file …` with the proxy's key file); every tenant would see no rows"),
        )),
        Some((key, true, true)) => findings.push(fail(
            FUNCTION,
            format!("accepts a signature made with key {key} for another backend: it does not bind the signature to pg_backend_pid()"),
        )),
        None => {}
    }
    let bad = findings.iter().filter(|x| x.status == Status::Fail).count();
    let summary = if bad == 0 {
        if findings.iter().all(|x| x.status != Status::Pass) {
            findings.push(Finding::new(
                Status::Pass,
                FUNCTION,
                format!("SECURITY DEFINER, no name resolved through the caller's search path; {} cannot read the keys or alter the function", f.user),
            ));
        }
        format!(
            "{FUNCTION} verifies signatures; {} cannot forge one",
            f.user
        )
    } else {
        format!("{bad} problem(s): the signed tenant context can be forged or does not work")
    };
    Check::new(10, KEY, TITLE, summary, findings)
}

fn ident(s: &str) -> String {
    crate::verify::catalog::quote_ident(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sound() -> SigningFacts {
        SigningFacts {
            user: "app_user".into(),
            function: Some(FunctionFacts {
                owner: "tenantgate_owner".into(),
                security_definer: true,
                pinned_search_path: true,
                role_is_owner: false,
                executable: true,
            }),
            table: Some(TableFacts {
                owner: "tenantgate_owner".into(),
                role_is_owner: false,
                readable: false,
            }),
            schema_owner: Some(("tenantgate_owner".into(), false)),
            schema_create: false,
            probe: Some(("k1".into(), true, false)),
        }
    }

    #[test]
    fn a_sound_installation_passes() {
        let c = check(&sound());
        assert_eq!(c.status, Status::Pass, "{c:?}");
        let mut f = sound();
        f.probe = None;
        assert_eq!(check(&f).status, Status::Pass);
    }

    #[test]
    fn every_way_to_forge_or_break_it_fails() {
        type Change = Box<dyn Fn(&mut SigningFacts)>;
        let cases: Vec<(&str, Change)> = vec![
            ("missing function", Box::new(|f| f.function = None)),
            ("missing table", Box::new(|f| f.table = None)),
            (
                "not security definer",
                Box::new(|f| f.function.as_mut().expect("f").security_definer = false),
            ),
            (
                "no search_path",
                Box::new(|f| f.function.as_mut().expect("f").pinned_search_path = false),
            ),
            (
                "owns the function",
                Box::new(|f| f.function.as_mut().expect("f").role_is_owner = true),
            ),
            (
                "reads the keys",
                Box::new(|f| f.table.as_mut().expect("t").readable = true),
            ),
            (
                "member of the key owner",
                Box::new(|f| f.table.as_mut().expect("t").role_is_owner = true),
            ),
            (
                "owns the schema",
                Box::new(|f| f.schema_owner = Some(("app_user".into(), true))),
            ),
            (
                "refuses the key",
                Box::new(|f| f.probe = Some(("k1".into(), false, false))),
            ),
            (
                "ignores the pid",
                Box::new(|f| f.probe = Some(("k1".into(), true, true))),
            ),
        ];
        for (what, change) in cases {
            let mut f = sound();
            change(&mut f);
            assert_eq!(check(&f).status, Status::Fail, "{what}");
        }
        let mut f = sound();
        f.schema_create = true;
        assert_eq!(check(&f).status, Status::Warn);
    }
}
