//! Optional slug → tenant id directory, run upstream and cached (moka, with a TTL).

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::pool::Pool;
use crate::protocol::messages;

/// Caches `directory_query` answers (including "not found") for `directory_ttl`.
pub struct Directory {
    /// The configured `$1` query.
    query: String,
    /// slug → id (None: not found).
    cache: Cache<String, Option<String>>,
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The pool could not provide a connection.
    #[error("{0}")]
    Pool(#[from] crate::pool::PoolError),
    /// The query failed upstream.
    #[error("directory query failed: {0}")]
    Query(String),
    /// The app pool's connection broke during the lookup.
    #[error("{0}")]
    Stream(#[from] crate::protocol::stream::StreamError),
}

impl Directory {
    /// A directory running `query` with answers cached for `ttl`.
    pub fn new(query: String, ttl: Duration) -> Directory {
        Directory {
            query,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Maps `slug` to a tenant id, running the query upstream on a cache miss.
    ///
    /// The query runs without tenant context on the app pool, so the `tenants` table must be
    /// readable for the app role (or the query a SECURITY DEFINER function).
    pub async fn lookup(
        &self,
        pool: &Arc<Pool>,
        slug: &str,
    ) -> Result<Option<String>, DirectoryError> {
        if let Some(hit) = self.cache.get(slug) {
            return Ok(hit);
        }
        let mut guard = pool.checkout(0, None, None).await?;
        let conn = guard.conn();
        let out = conn.stream().out();
        messages::parse(out, b"", self.query.as_bytes(), &[25]);
        messages::bind_text(out, b"", b"", &[slug.as_bytes()]);
        messages::execute(out, b"");
        messages::sync(out);
        let answer = match crate::pool::upstream::run_batch(conn).await? {
            Ok(rows) => rows.into_iter().next().flatten(),
            Err(e) => return Err(DirectoryError::Query(e.message)),
        };
        self.cache.insert(slug.to_owned(), answer.clone());
        Ok(answer)
    }
}
