//! Who waits for a server connection, and who is served next: the pool's noisy-neighbour policy.
//!
//! A shared pool is where tenants meet. A plain FIFO of waiters (a semaphore) lets a tenant with
//! 200 queued transactions make a tenant with one wait behind all 200. Here waiters queue per
//! tenant (FIFO within a tenant) and tenants take turns (round-robin over the tenants that have
//! waiters), and a tenant already holding `[tenant] max_server_connections` connections is
//! skipped until one of its own comes back.
//!
//! This module is pure bookkeeping, testable without connections or a runtime: the pool
//! (`pool/mod.rs`) keeps a [`FairQueue`] under the same lock as its free slots and idle
//! connections, and hands a released connection straight to the waiter [`FairQueue::pop_next`]
//! names, so nobody can barge in between.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::oneshot;

use super::limits::{under_user_cap, UserTag};

/// One tenant as one pool counts it, shared by all of the tenant's sessions (see
/// [`TenantTags`]), so the hot path reads a counter instead of hashing the tenant id.
#[derive(Debug)]
pub struct TenantTag {
    /// Never 0 (0 is the lane of checkouts without a tenant: the proxy's own, break-glass).
    id: u64,
    /// The canonical tenant id (for SHOW and logs).
    name: Box<str>,
    /// Server connections the tenant holds right now.
    pub(super) held: Held,
    /// Client sessions of the tenant right now (`[tenant] max_client_connections`), one per
    /// [`Seat`].
    clients: AtomicUsize,
    /// The tenant's `[tenant] max_transactions_per_second` tokens.
    pub bucket: super::rate::Bucket,
    /// Usage for SHOW TENANTS and the per-tenant metrics (since the tenant's first live
    /// session).
    pub usage: Usage,
}

/// What one tenant did, counted as it happens (relaxed atomics; read by SHOW TENANTS and
/// `/metrics`).
#[derive(Debug, Default)]
pub struct Usage {
    /// Checkouts of the tenant queued right now.
    pub waiting: AtomicUsize,
    /// Transactions completed.
    pub xacts: AtomicU64,
    /// Checkouts served.
    pub checkouts: AtomicU64,
    /// Microseconds those checkouts waited, in total.
    pub wait_us: AtomicU64,
    /// Transactions refused by `max_transactions_per_second`.
    pub rate_limited: AtomicU64,
}

impl TenantTag {
    /// The canonical tenant id.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client sessions right now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Server connections held right now.
    pub fn held(&self) -> usize {
        self.held.get()
    }
}

/// Server connections one tenant (a [`TenantTag`]) or one user (a `limits::UserTag`) holds.
/// Changed only under the pool's lock, so a check against a cap and the increment that follows
/// cannot interleave with another checkout's; read without it by SHOW and the metrics.
#[derive(Debug, Default)]
pub struct Held(AtomicUsize);

impl Held {
    /// Held now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more connection held (under the pool's lock).
    pub(super) fn acquire(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection less (under the pool's lock). Saturating: a miscount must not
    /// wrap into "holds everything".
    pub(super) fn release(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| h.checked_sub(1));
    }
}

/// One client session counted against its tenant's `max_client_connections`; the count drops
/// with it, however the session ends.
#[derive(Debug)]
pub struct Seat(Arc<TenantTag>);

impl Seat {
    /// A seat for one more session of `tag`, unless `cap` sessions already have one.
    pub fn take(tag: &Arc<TenantTag>, cap: Option<usize>) -> Option<Seat> {
        tag.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                cap.is_none_or(|c| n < c).then_some(n + 1)
            })
            .ok()?;
        Some(Seat(tag.clone()))
    }

    /// The tenant this seat counts against.
    pub fn tag(&self) -> &Arc<TenantTag> {
        &self.0
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a checkout of `tag` may hold one more connection under `cap`.
pub fn under_cap(tag: Option<&TenantTag>, cap: Option<usize>) -> bool {
    match (tag, cap) {
        (Some(t), Some(cap)) => t.held() < cap,
        _ => true,
    }
}

/// The live `T` registered under `name`, or a new one from `make`. Entries are weak, so a name
/// nobody holds any more costs nothing once the amortised clean-up (only when the map would
/// grow past a power of two) has run. Tenant tags and user tags share it.
pub(super) fn intern<T>(
    map: &mut HashMap<Box<str>, Weak<T>>,
    name: &str,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    if let Some(t) = map.get(name).and_then(Weak::upgrade) {
        return t;
    }
    if map.len() >= 64 && map.len().is_power_of_two() {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let t = Arc::new(make());
    map.insert(name.into(), Arc::downgrade(&t));
    t
}

/// One [`TenantTag`] per tenant id, handed out when a session starts or switches tenant (not
/// per transaction). Entries are weak: a tenant with no session left costs nothing.
#[derive(Debug, Default)]
pub struct TenantTags {
    /// Tenant id -> its tag while any session or checkout still holds it.
    map: Mutex<HashMap<Box<str>, Weak<TenantTag>>>,
    /// Next tag id (ids start at 1).
    next: AtomicU64,
}

impl TenantTags {
    /// The tag of `tenant`, shared with every other live session of it.
    pub fn get(&self, tenant: &str) -> Arc<TenantTag> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        intern(&mut map, tenant, || TenantTag {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            name: tenant.into(),
            held: Held::default(),
            clients: AtomicUsize::new(0),
            bucket: Default::default(),
            usage: Usage::default(),
        })
    }

    /// Every tenant with a live session (SHOW TENANTS, metrics), in no particular order.
    pub fn all(&self) -> Vec<Arc<TenantTag>> {
        let map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.values().filter_map(Weak::upgrade).collect()
    }

    /// Every tenant with a live session, and the connections it holds (for tests).
    #[cfg(feature = "internals")]
    pub fn held(&self) -> Vec<(String, usize)> {
        let map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<(String, usize)> = map
            .values()
            .filter_map(Weak::upgrade)
            .map(|t| (t.name.to_string(), t.held()))
            .collect();
        v.sort();
        v
    }
}

/// Identifies one queued checkout, to take it back out when it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The lane (tenant tag id; 0 without a tenant).
    lane: u64,
    /// Unique within the queue.
    seq: u64,
}

struct Waiter<T> {
    seq: u64,
    /// Its user, checked against the user's cap when the waiter's turn comes.
    user: Option<Arc<UserTag>>,
    /// Where to send what it is granted.
    tx: oneshot::Sender<T>,
}

/// One tenant's waiters, oldest first.
struct Lane<T> {
    /// The tenant (None: checkouts without one), kept alive while it has waiters.
    tag: Option<Arc<TenantTag>>,
    waiters: VecDeque<Waiter<T>>,
}

/// Waiting checkouts per tenant, served round-robin across tenants and FIFO within one.
pub struct FairQueue<T> {
    /// Lanes with at least one waiter, by lane id.
    lanes: HashMap<u64, Lane<T>>,
    /// Lane ids with waiters, in turn order: the front is served next (if under its cap).
    ring: VecDeque<u64>,
    /// How many lanes at the front of `ring` are new: they had no waiter before and have not
    /// had a turn since. They go before the lanes that have (FIFO among themselves), as
    /// FQ-CoDel's new flows do, so a tenant with one transaction at a time is served at the
    /// next release instead of after a turn of every busy tenant.
    fresh: usize,
    seq: u64,
    /// Waiters in all lanes.
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            fresh: 0,
            seq: 0,
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// Waiting checkouts, every lane together.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody waits (the hot path's only question).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a checkout of `tag` and `user` behind the tenant's earlier ones; a tenant that
    /// had no waiter takes its turn after the other new ones, before those that had theirs.
    pub fn push(
        &mut self,
        tag: Option<&Arc<TenantTag>>,
        user: Option<&Arc<UserTag>>,
    ) -> (Ticket, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        let lane_id = tag.map_or(0, |t| t.id);
        self.seq += 1;
        let lane = self.lanes.entry(lane_id).or_insert_with(|| Lane {
            tag: tag.cloned(),
            waiters: VecDeque::new(),
        });
        if lane.waiters.is_empty() {
            self.ring.insert(self.fresh, lane_id);
            self.fresh += 1;
        }
        lane.waiters.push_back(Waiter {
            seq: self.seq,
            user: user.cloned(),
            tx,
        });
        self.len += 1;
        let ticket = Ticket {
            lane: lane_id,
            seq: self.seq,
        };
        (ticket, rx)
    }

    /// Takes a waiter that gave up (timeout, cancel, client gone) out of the queue. False when
    /// it is no longer queued: it was served, and what it was sent must be given back.
    pub fn remove(&mut self, ticket: Ticket) -> bool {
        let Some(lane) = self.lanes.get_mut(&ticket.lane) else {
            return false;
        };
        let Some(i) = lane.waiters.iter().position(|w| w.seq == ticket.seq) else {
            return false;
        };
        lane.waiters.remove(i);
        self.len -= 1;
        if lane.waiters.is_empty() {
            self.lanes.remove(&ticket.lane);
            if let Some(i) = self.ring.iter().position(|l| *l == ticket.lane) {
                self.ring.remove(i);
                if i < self.fresh {
                    self.fresh -= 1;
                }
            }
        }
        true
    }

    /// The next waiter to serve: the oldest of the first tenant in turn order (new tenants first,
    /// see `fresh`) that `eligible` accepts (under its cap) whose user is under its own cap. That
    /// tenant's turn moves to the back; tenants skipped keep their place, so a capped tenant is
    /// next as soon as it may hold one more (and a capped user's checkout as soon as the user may).
    #[allow(clippy::type_complexity)]
    pub fn pop_next(
        &mut self,
        eligible: impl Fn(Option<&TenantTag>) -> bool,
    ) -> Option<(
        Option<Arc<TenantTag>>,
        Option<Arc<UserTag>>,
        oneshot::Sender<T>,
    )> {
        let (ri, wi) = self.ring.iter().enumerate().find_map(|(ri, id)| {
            let lane = self.lanes.get(id)?;
            if !eligible(lane.tag.as_deref()) {
                return None;
            }
            let wi = lane
                .waiters
                .iter()
                .position(|w| under_user_cap(w.user.as_deref()))?;
            Some((ri, wi))
        })?;
        let lane_id = self.ring.remove(ri)?;
        if ri < self.fresh {
            self.fresh -= 1;
        }
        let lane = self.lanes.get_mut(&lane_id)?;
        let w = lane.waiters.remove(wi)?;
        self.len -= 1;
        let tag = lane.tag.clone();
        if lane.waiters.is_empty() {
            self.lanes.remove(&lane_id);
        } else {
            self.ring.push_back(lane_id);
        }
        Some((tag, w.user, w.tx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `n` waiters (each with the order it was pushed in) and returns who was served.
    fn serve(
        q: &mut FairQueue<()>,
        rx: &mut [(String, oneshot::Receiver<()>)],
        n: usize,
    ) -> Vec<String> {
        let mut served = Vec::new();
        for _ in 0..n {
            let Some((_, _, tx)) = q.pop_next(|_| true) else {
                break;
            };
            tx.send(()).expect("receiver alive");
            for (name, r) in rx.iter_mut() {
                if r.try_recv().is_ok() {
                    served.push(name.clone());
                }
            }
        }
        served
    }

    #[test]
    fn tenants_take_turns_and_each_is_fifo() {
        let tags = TenantTags::default();
        let (a, b) = (tags.get("a"), tags.get("b"));
        let mut q = FairQueue::default();
        let mut rx = Vec::new();
        for i in 0..5 {
            rx.push((format!("a{i}"), q.push(Some(&a), None).1));
        }
        rx.push(("b0".into(), q.push(Some(&b), None).1));
        rx.push(("none0".into(), q.push(None, None).1));
        rx.push(("b1".into(), q.push(Some(&b), None).1));
        assert_eq!(q.len(), 8);
        let order = serve(&mut q, &mut rx, 8);
        assert_eq!(order, ["a0", "b0", "none0", "a1", "b1", "a2", "a3", "a4"]);
        assert_eq!(q.fresh, 0);
        assert!(q.is_empty());
        assert!(q.lanes.is_empty() && q.ring.is_empty());
    }

    #[test]
    fn a_tenant_that_starts_waiting_goes_before_those_that_had_their_turn() {
        let tags = TenantTags::default();
        let (a, b, c) = (tags.get("a"), tags.get("b"), tags.get("c"));
        let mut q = FairQueue::default();
        let mut rx = Vec::new();
        for i in 0..4 {
            rx.push((format!("a{i}"), q.push(Some(&a), None).1));
        }
        // a has had its turn; b and c start waiting one after the other.
        let served = serve(&mut q, &mut rx, 1);
        rx.push(("b0".into(), q.push(Some(&b), None).1));
        rx.push(("c0".into(), q.push(Some(&c), None).1));
        rx.push(("b1".into(), q.push(Some(&b), None).1));
        let order = [served, serve(&mut q, &mut rx, 6)].concat();
        assert_eq!(order, ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]);
        // A new lane that gives up leaves the count of new lanes right.
        let (t, _r) = q.push(Some(&c), None);
        assert_eq!(q.fresh, 1);
        assert!(q.remove(t));
        assert_eq!(q.fresh, 0);
        assert!(q.is_empty() && q.ring.is_empty());
    }

    #[test]
    fn a_capped_tenant_is_skipped_but_keeps_its_turn() {
        let tags = TenantTags::default();
        let (a, b) = (tags.get("a"), tags.get("b"));
        let mut q: FairQueue<()> = FairQueue::default();
        let _ra = q.push(Some(&a), None);
        let _rb = q.push(Some(&b), None);
        let _rb2 = q.push(Some(&b), None);
        // a holds its cap: b is served, a stays first in line.
        a.held.acquire();
        let cap = Some(1);
        let (t, _, _) = q.pop_next(|t| under_cap(t, cap)).expect("b");
        assert_eq!(t.expect("tag").name(), "b");
        a.held.release();
        let (t, _, _) = q.pop_next(|t| under_cap(t, cap)).expect("a");
        assert_eq!(t.expect("tag").name(), "a");
        // Only capped waiters: nobody.
        b.held.acquire();
        assert!(q.pop_next(|t| under_cap(t, cap)).is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_no_trace() {
        let tags = TenantTags::default();
        let a = tags.get("a");
        let mut q: FairQueue<()> = FairQueue::default();
        let (t1, _r1) = q.push(Some(&a), None);
        let (t2, _r2) = q.push(None, None);
        assert!(q.remove(t1));
        assert!(!q.remove(t1), "removed twice");
        assert_eq!(q.len(), 1);
        assert_eq!(q.ring.len(), 1);
        let (tag, _, _tx) = q.pop_next(|_| true).expect("the other waiter");
        assert!(tag.is_none());
        assert!(!q.remove(t2), "already served");
        assert!(q.is_empty() && q.lanes.is_empty() && q.ring.is_empty());
    }

    #[test]
    fn seats_stop_at_the_cap_and_come_back_when_dropped() {
        let tags = TenantTags::default();
        let a = tags.get("a");
        let one = Seat::take(&a, Some(2)).expect("first");
        let two = Seat::take(&a, Some(2)).expect("second");
        assert!(Seat::take(&a, Some(2)).is_none(), "third past the cap");
        assert!(
            Seat::take(&tags.get("b"), Some(2)).is_some(),
            "another tenant"
        );
        drop(one);
        let three = Seat::take(&a, Some(2)).expect("a seat came back");
        assert!(Seat::take(&a, None).is_some(), "no cap");
        drop((two, three));
        assert_eq!(a.clients.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn tags_are_shared_per_tenant_and_dropped_with_their_last_session() {
        let tags = TenantTags::default();
        let a1 = tags.get("a");
        let a2 = tags.get("a");
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_ne!(a1.id, tags.get("b").id);
        a1.held.acquire();
        assert_eq!(tags.held(), vec![("a".to_string(), 1)]);
        a1.held.release();
        a1.held.release(); // never below zero
        assert_eq!(a2.held(), 0);
        drop((a1, a2));
        assert!(tags.held().is_empty());
        for i in 0..200 {
            drop(tags.get(&format!("t{i}")));
        }
        let len = tags.map.lock().map(|m| m.len()).unwrap_or(0);
        assert!(len < 200, "dead tags are pruned ({len} kept)");
    }
}
