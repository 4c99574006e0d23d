//! Asserting on the SQLSTATE a statement or a login failed with. One copy for every test
//! binary: `common` re-exports it, and the fast layer (which has no PostgreSQL and so no
//! `common`) includes this file by path.
#![allow(dead_code)] // each test binary uses a different part of this file

use tokio_postgres::error::DbError;

/// The SQLSTATE a failed call got, if the server (or the proxy) sent one. For a test that
/// branches on it (a cancel racing a completion); one that requires a code uses
/// [`assert_sqlstate`] or [`expect_sqlstate`].
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// Asserts that `e` is an error the server (or the proxy) sent with SQLSTATE `code`, panicking
/// with the whole error when it is not; returns that error, for its message and fields.
#[track_caller]
pub fn assert_sqlstate<'e>(e: &'e tokio_postgres::Error, code: &str) -> &'e DbError {
    match e.as_db_error() {
        Some(db) if db.code().code() == code => db,
        _ => panic!("expected SQLSTATE {code}, got {e:?}"),
    }
}

/// Asserts that `r` failed with SQLSTATE `code` (a success panics with what it returned);
/// returns the server's error.
#[track_caller]
pub fn expect_sqlstate<T: std::fmt::Debug>(
    r: Result<T, tokio_postgres::Error>,
    code: &str,
) -> DbError {
    match r {
        Ok(v) => panic!("expected SQLSTATE {code}, got success: {v:?}"),
        Err(e) => assert_sqlstate(&e, code).clone(),
    }
}
