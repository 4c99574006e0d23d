//! `[tenant] max_transactions_per_second`: a token bucket per tenant, shared by all of the
//! tenant's sessions (it lives on the tenant's [`super::queue::TenantTag`]).
//!
//! A transaction takes one token; the bucket refills at the configured rate up to its size
//! (`max_transactions_burst`, one second's worth by default) and starts full. With no token
//! left the transaction is refused (53400) without reaching the server, and the session goes
//! on. Pure arithmetic on an explicit clock, so it is tested without sleeping.
//!
//! "A transaction" is the message that starts one: the first message after ReadyForQuery `I`
//! that the server would see (a Query, or the first extended-protocol message of a batch; a
//! lone Sync or Flush is not one). In transaction pooling that is exactly the message that
//! checks out a server connection; in session pooling it is the same point, on the held one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The configured limit, shared by every session and updated by a reload.
#[derive(Debug, Default)]
pub struct Rate {
    /// Transactions per second, in thousandths (0: no limit).
    milli_per_sec: AtomicU64,
    /// The bucket's size in tokens.
    burst: AtomicU64,
}

impl Rate {
    /// The limit of `[tenant]` (None: off).
    pub fn new(per_sec: Option<f64>, burst: Option<u32>) -> Rate {
        let r = Rate::default();
        r.set(per_sec, burst);
        r
    }

    /// Takes a reloaded limit; buckets keep their tokens (capped at the new size).
    pub fn set(&self, per_sec: Option<f64>, burst: Option<u32>) {
        let per_sec = per_sec.unwrap_or(0.0);
        let milli = if per_sec > 0.0 {
            ((per_sec * 1000.0).round() as u64).max(1)
        } else {
            0
        };
        let burst = burst.map_or_else(|| per_sec.ceil().max(1.0) as u64, u64::from);
        self.burst.store(burst, Ordering::Relaxed);
        self.milli_per_sec.store(milli, Ordering::Relaxed);
    }

    /// Transactions per second and bucket size; None when there is no limit (one load).
    #[inline]
    pub fn get(&self) -> Option<(f64, f64)> {
        match self.milli_per_sec.load(Ordering::Relaxed) {
            0 => None,
            m => Some((m as f64 / 1000.0, self.burst.load(Ordering::Relaxed) as f64)),
        }
    }
}

/// One tenant's tokens (on its [`super::queue::TenantTag`]); the rate comes from the shared
/// [`Rate`] at each take.
#[derive(Debug, Default)]
pub struct Bucket {
    /// Tokens left and when they were counted; None until the first transaction (full).
    state: Mutex<Option<(f64, Instant)>>,
}

impl Bucket {
    /// Takes a token for a transaction starting at `now`, at `rate` per second with a bucket
    /// of `burst`; false when there is none left.
    pub fn take(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let (tokens, since) = state.unwrap_or((burst, now));
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let tokens = (tokens + elapsed * rate).min(burst);
        let (left, ok) = if tokens >= 1.0 {
            (tokens - 1.0, true)
        } else {
            (tokens, false)
        };
        *state = Some((left, now));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_bucket_allows_the_burst_then_the_rate() {
        let b = Bucket::default();
        let t0 = Instant::now();
        let taken = (0..10).filter(|_| b.take(2.0, 3.0, t0)).count();
        assert_eq!(taken, 3, "the burst");
        // Half a second at 2/s: one more.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(2.0, 3.0, t1));
        assert!(!b.take(2.0, 3.0, t1));
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        let taken = (0..10).filter(|_| b.take(2.0, 3.0, t2)).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn the_limit_is_off_until_set_and_the_burst_defaults_to_a_second() {
        let r = Rate::default();
        assert_eq!(r.get(), None);
        r.set(Some(2.5), None);
        assert_eq!(r.get(), Some((2.5, 3.0)));
        r.set(Some(0.2), None);
        assert_eq!(r.get(), Some((0.2, 1.0)));
        r.set(Some(100.0), Some(5));
        assert_eq!(r.get(), Some((100.0, 5.0)));
        r.set(None, None);
        assert_eq!(r.get(), None);
    }
}
