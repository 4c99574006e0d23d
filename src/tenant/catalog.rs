//! Deny-lists derived from PostgreSQL's catalogs and source: built-in functions that run SQL text,
//! and the catalog objects through which one client of the shared upstream role sees other clients'
//! sessions, large objects or activity statistics.
//!
//! Why a table of names and not privileges: every client reaches PostgreSQL as the same
//! `NOSUPERUSER NOBYPASSRLS` role, so whatever that role may see of "its own" backends, every
//! tenant may see of every other tenant. PostgreSQL cannot tell them apart; only the proxy can.
//! Pure data and lookups (STYLE habit 8); the inspector finds the names, the guard decides.
//!
//! # How the lists were derived (PostgreSQL 13 to 17)
//!
//! * SQL-running functions: the C functions under `src/backend/utils/adt` that pass a text
//!   argument to SPI (`SPI_prepare`/`SPI_execute`/`SPI_cursor_open`): `tsquery_rewrite_query`
//!   (`ts_rewrite(tsquery, text)`), `ts_stat1`/`ts_stat2` (`ts_stat`), and in `xml.c`
//!   `query_to_xml`, `query_to_xmlschema`, `query_to_xml_and_xmlschema`. The same file's
//!   `table_to_xml*`/`schema_to_xml*`/`database_to_xml*` build `SELECT * FROM <relation>` from
//!   a relation (row security applies) and `cursor_to_xml*` fetch from a named cursor: no client
//!   SQL text. The `tablefunc` extension adds `crosstab*` (SQL text) and `connectby` (pastes its
//!   arguments into a query). `tests/isolation_catalog.rs` re-derives the list from `pg_proc` of
//!   the running server and fails when a function it cannot classify appears.
//! * Catalog objects: the views in `src/backend/catalog/system_views.sql` and the functions in
//!   `src/include/catalog/pg_proc.dat` that report on other backends (`pg_stat_get_activity`,
//!   `pg_stat_get_backend_*`, `pg_lock_status`, `pg_blocking_pids`, the signal functions in
//!   `src/backend/storage/ipc/signalfuncs.c`), on the session's own state that a pooled server
//!   connection shares between clients (`pg_prepared_statement`, `pg_cursor`, memory contexts,
//!   LISTEN channels), on large objects (`be-fsstubs.c`, `pg_largeobject*`), and on activity
//!   statistics (`pgstatfuncs.c`: every `pg_stat_*`/`pg_statio_*` view and `pg_stat_get_*`
//!   function; `dbsize.c`; `pg_class.reltuples`/`relpages`/`relallvisible`; the `pgstattuple`,
//!   `pg_freespacemap`, `pg_buffercache`, `pg_visibility` extensions).

/// What a refused catalog object would expose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exposure {
    /// Other backends of the shared role (their queries, locks, prepared statements, cursors),
    /// or a way to signal them.
    OtherSessions,
    /// Large objects, which belong to the shared role whatever the tenant.
    LargeObjects,
    /// Activity statistics and sizes that count other tenants' rows and work.
    Statistics,
}

/// How PostgreSQL would name the object in `permission denied for <kind> <name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A system view (`pg_locks`, the `pg_stat_*` views, …).
    View,
    /// A catalog table (`pg_largeobject`, `pg_largeobject_metadata`).
    Table,
    /// A function (`pg_cancel_backend`, `pg_stat_get_*`, …).
    Function,
    /// A `pg_class` column (`reltuples`, `relpages`, …).
    Column,
}

impl ObjectKind {
    /// PostgreSQL's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ObjectKind::View => "view",
            ObjectKind::Table => "table",
            ObjectKind::Function => "function",
            ObjectKind::Column => "column",
        }
    }
}

use Exposure::{LargeObjects as Lo, OtherSessions as Os, Statistics as St};
use ObjectKind::{Column as Col, Function as Fun, Table as Tab, View as Vw};

/// Exact names (lower case). Names under the prefixes below are not repeated here.
const OBJECTS: [(&str, ObjectKind, Exposure); 64] = [
    // Other backends and the state of the (shared) server session.
    ("pg_locks", Vw, Os),
    ("pg_lock_status", Fun, Os),
    ("pg_blocking_pids", Fun, Os),
    ("pg_safe_snapshot_blocking_pids", Fun, Os),
    ("pg_isolation_test_session_is_blocked", Fun, Os),
    ("pg_prepared_statements", Vw, Os),
    ("pg_prepared_statement", Fun, Os),
    ("pg_cursors", Vw, Os),
    ("pg_cursor", Fun, Os),
    ("pg_prepared_xacts", Vw, Os),
    ("pg_prepared_xact", Fun, Os),
    ("pg_cancel_backend", Fun, Os),
    ("pg_terminate_backend", Fun, Os),
    ("pg_signal_backend", Fun, Os),
    ("pg_log_backend_memory_contexts", Fun, Os),
    ("pg_backend_memory_contexts", Vw, Os),
    ("pg_get_backend_memory_contexts", Fun, Os),
    ("pg_listening_channels", Fun, Os),
    ("pg_notification_queue_usage", Fun, Os),
    // Large objects (be-fsstubs.c, pg_largeobject*).
    ("pg_largeobject", Tab, Lo),
    ("pg_largeobject_metadata", Tab, Lo),
    ("lo_open", Fun, Lo),
    ("lo_close", Fun, Lo),
    ("loread", Fun, Lo),
    ("lowrite", Fun, Lo),
    ("lo_lseek", Fun, Lo),
    ("lo_lseek64", Fun, Lo),
    ("lo_creat", Fun, Lo),
    ("lo_create", Fun, Lo),
    ("lo_tell", Fun, Lo),
    ("lo_tell64", Fun, Lo),
    ("lo_truncate", Fun, Lo),
    ("lo_truncate64", Fun, Lo),
    ("lo_unlink", Fun, Lo),
    ("lo_import", Fun, Lo),
    ("lo_export", Fun, Lo),
    ("lo_from_bytea", Fun, Lo),
    ("lo_get", Fun, Lo),
    ("lo_put", Fun, Lo),
    // Sizes (dbsize.c) and planner statistics in pg_class.
    ("pg_relation_size", Fun, St),
    ("pg_total_relation_size", Fun, St),
    ("pg_table_size", Fun, St),
    ("pg_indexes_size", Fun, St),
    ("pg_database_size", Fun, St),
    ("pg_tablespace_size", Fun, St),
    ("reltuples", Col, St),
    ("relpages", Col, St),
    ("relallvisible", Col, St),
    ("relallfrozen", Col, St),
    // Extensions that read pages or statistics directly.
    ("pgstattuple", Fun, St),
    ("pgstattuple_approx", Fun, St),
    ("pgstatindex", Fun, St),
    ("pgstatginindex", Fun, St),
    ("pgstathashindex", Fun, St),
    ("pg_relpages", Fun, St),
    ("pg_freespace", Fun, St),
    ("pg_buffercache", Vw, St),
    ("pg_buffercache_pages", Fun, St),
    ("pg_buffercache_summary", Fun, St),
    ("pg_buffercache_usage_counts", Fun, St),
    ("pg_visibility", Fun, St),
    ("pg_visibility_map", Fun, St),
    ("pg_visibility_map_summary", Fun, St),
    ("pg_stats_ext_exprs_internal", Fun, St),
];

/// Name prefixes (lower case), most specific first: every view and function under them reports
/// on other backends or on activity statistics.
const PREFIXES: [(&str, Exposure); 8] = [
    ("pg_stat_activity", Os),
    ("pg_stat_get_activity", Os),
    ("pg_stat_get_backend_", Os),
    ("pg_stat_get_progress_info", Os),
    ("pg_stat_progress_", Os),
    ("pg_stat_statements", Os),
    ("pg_stat_", St),
    ("pg_statio_", St),
];

/// The other names of the SSL/GSSAPI views, which report every backend's connection.
const PREFIX_SESSION_VIEWS: [&str; 2] = ["pg_stat_ssl", "pg_stat_gssapi"];

/// A cheap first test on a word's bytes: whether it may be a name of these tables (or one of
/// the inspector's catalog-derived names). False positives only cost the full lookup.
#[inline(always)]
pub fn maybe_catalog_word(w: &[u8]) -> bool {
    let (Some(&a), Some(&b), Some(&c)) = (w.first(), w.get(1), w.get(2)) else {
        return false;
    };
    let len = w.len();
    match (a | 0x20, b | 0x20) {
        (b'p', b'g') => c == b'_' || (c | 0x20 == b's' && len >= 11),
        (b'l', b'o') => c == b'_' || ((c | 0x20 == b'r' || c | 0x20 == b'w') && len <= 7),
        (b'r', b'e') => c | 0x20 == b'l' && matches!(len, 8 | 9 | 12 | 13),
        (b't', b's') => c == b'_' && len == 10,
        (b'c', b'r') => matches!(len, 8 | 9),
        (b'c', b'o') => len == 9,
        (b'c', b'l') => len == 15,
        (b'n', b'a') => len == 5,
        _ => false,
    }
}

/// A refused catalog object: `name` (lower case) names it in the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogObject {
    /// The `<kind>` of PostgreSQL's `permission denied for <kind> <name>`.
    pub kind: ObjectKind,
    /// Which inspector rule the finding is reported under.
    pub exposure: Exposure,
}

/// Looks `name` up (ASCII case-insensitive). `call` says the name is followed by `(`, which
/// makes a prefix match a function rather than a view.
pub fn catalog_object(name: &[u8], call: bool) -> Option<CatalogObject> {
    if name.len() > 63 || !maybe_catalog_word(name) {
        return None;
    }
    let mut buf = [0u8; 63];
    let lower = buf.get_mut(..name.len())?;
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = &*lower;
    if let Some((_, kind, exposure)) = OBJECTS.iter().find(|(n, _, _)| n.as_bytes() == lower) {
        return Some(CatalogObject {
            kind: *kind,
            exposure: *exposure,
        });
    }
    let kind = if call { Fun } else { Vw };
    if PREFIX_SESSION_VIEWS.iter().any(|n| n.as_bytes() == lower) {
        return Some(CatalogObject { kind, exposure: Os });
    }
    PREFIXES
        .iter()
        .find(|(p, _)| lower.starts_with(p.as_bytes()))
        .map(|(_, exposure)| CatalogObject {
            kind,
            exposure: *exposure,
        })
}

/// Reads an object name from a string literal the way `regclassin`/`regprocin`/`to_regclass`
/// would (`'pg_catalog.PG_LOCKS'`, `'"pg_locks"'`, `'pg_cancel_backend(int)'`) and looks it up.
pub fn catalog_object_in_text(text: &str) -> Option<(String, CatalogObject)> {
    if text.len() > 256 {
        return None;
    }
    let text = text.trim();
    let (text, call) = match text.find('(') {
        Some(i) => (text.get(..i).unwrap_or_default().trim_end(), true),
        None => (text, false),
    };
    let last = text.rsplit('.').next().unwrap_or_default().trim();
    let name = last.trim_matches('"');
    catalog_object(name.as_bytes(), call).map(|o| (name.to_ascii_lowercase(), o))
}

/// Functions that run SQL text given as an argument, and which arguments are SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlArgs {
    /// Argument `n` (0-based) when the call has `arity` arguments (`None`: any arity).
    At {
        /// Position of the SQL text.
        n: usize,
        /// Only for calls with this many arguments.
        arity: Option<usize>,
    },
    /// Every text argument of a call with this many arguments (`crosstab(text, text)`).
    AllText(usize),
    /// The arguments are pasted into a query (`connectby`): refused unless reviewed.
    Pasted,
}

/// Built-in (and `tablefunc`) functions that execute SQL text, beyond the ones the inspector
/// has always known (`query_to_xml*`, `ts_stat`). See the module documentation.
pub const SQL_FUNCTIONS: [(&str, &[SqlArgs]); 6] = [
    (
        "ts_rewrite",
        &[SqlArgs::At {
            n: 1,
            arity: Some(2),
        }],
    ),
    (
        "crosstab",
        &[
            SqlArgs::At {
                n: 0,
                arity: Some(1),
            },
            SqlArgs::AllText(2),
            SqlArgs::At {
                n: 0,
                arity: Some(3),
            },
        ],
    ),
    ("crosstab2", &[SqlArgs::At { n: 0, arity: None }]),
    ("crosstab3", &[SqlArgs::At { n: 0, arity: None }]),
    ("crosstab4", &[SqlArgs::At { n: 0, arity: None }]),
    ("connectby", &[SqlArgs::Pasted]),
];

/// Every function known to run SQL text from an argument, old and new, for the catalog test.
#[cfg(any(test, feature = "internals"))]
pub const ALL_SQL_FUNCTIONS: [&str; 10] = [
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
];

/// Looks up a function of [`SQL_FUNCTIONS`] (ASCII case-insensitive).
pub fn sql_function(name: &[u8]) -> Option<&'static [SqlArgs]> {
    if !maybe_catalog_word(name) {
        return None;
    }
    SQL_FUNCTIONS
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_objects_in_every_spelling() {
        for n in [
            "pg_stat_activity",
            "PG_STAT_ACTIVITY",
            "pg_stat_get_backend_activity",
            "pg_stat_progress_vacuum",
            "pg_stat_ssl",
            "pg_locks",
            "pg_cancel_backend",
            "lo_get",
            "LOREAD",
            "pg_largeobject",
        ] {
            let o = catalog_object(n.as_bytes(), false).expect(n);
            assert_eq!(
                o.exposure,
                match n.to_ascii_lowercase().as_str() {
                    "lo_get" | "loread" | "pg_largeobject" => Exposure::LargeObjects,
                    _ => Exposure::OtherSessions,
                },
                "{n}"
            );
        }
        for n in [
            "pg_stat_user_tables",
            "pg_statio_user_tables",
            "pg_stat_get_tuples_inserted",
            "pg_relation_size",
            "reltuples",
            "pgstattuple",
        ] {
            assert_eq!(
                catalog_object(n.as_bytes(), true).map(|o| o.exposure),
                Some(Exposure::Statistics),
                "{n}"
            );
        }
        for n in [
            "pg_class",
            "pg_stats",
            "pg_settings",
            "lower",
            "local",
            "lock",
            "loop",
            "release",
            "relation",
            "pgbench_accounts",
            "pg_backend_pid",
            "customers",
            "lo",
            "",
        ] {
            assert_eq!(catalog_object(n.as_bytes(), false), None, "{n}");
        }
        assert_eq!(
            catalog_object(b"pg_stat_get_numscans", true).map(|o| o.kind),
            Some(ObjectKind::Function)
        );
        for t in [
            "pg_stat_activity",
            " pg_catalog.pg_stat_activity ",
            "\"pg_locks\"",
            "pg_catalog.\"pg_cancel_backend\"(integer)",
            "PG_LARGEOBJECT",
        ] {
            assert!(catalog_object_in_text(t).is_some(), "{t}");
        }
        assert!(catalog_object_in_text("hello world").is_none());
    }

    #[test]
    fn every_table_name_passes_the_cheap_test() {
        for (n, _, _) in OBJECTS {
            assert!(maybe_catalog_word(n.as_bytes()), "{n}");
        }
        for (p, _) in PREFIXES {
            assert!(maybe_catalog_word(format!("{p}x").as_bytes()), "{p}");
        }
        for (n, _) in SQL_FUNCTIONS {
            assert!(maybe_catalog_word(n.as_bytes()), "{n}");
        }
        for n in ["client_encoding", "names"] {
            assert!(maybe_catalog_word(n.as_bytes()), "{n}");
        }
    }
}
