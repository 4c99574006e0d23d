//! Named prepared statements, renamed by the proxy in both pool modes.
//!
//! A client's statement names live in its session ([`ClientStatements`]); they never reach the
//! server. Each client Parse gets a fresh server-side name in the proxy's reserved namespace
//! (`__tg_<process token>_<n>`), so:
//! - a client can only ever bind, describe or close statements it created itself: an unknown
//!   name is answered locally, as PostgreSQL would (26000), and another session's or the
//!   proxy's own statements cannot be named at all;
//! - a newly prepared name is planned afresh, as on PostgreSQL, even when another name has the
//!   same text (no shared plan survives a DDL change under a new name).
//!
//! Each upstream connection remembers which server-side statements it holds
//! ([`ServerStatements`], an LRU capped at `max_prepared_statements`). That view changes only on
//! what the server confirmed: a statement exists once its ParseComplete arrived and is gone
//! once its CloseComplete arrived (or the server dropped all of them); a message the server
//! skipped after an error changes nothing.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};
use lru::LruCache;

use crate::protocol::messages;

/// Prefix of every name the proxy itself prepares upstream; clients may not use it in SQL
/// (the inspector refuses it).
pub const RESERVED_PREFIX: &[u8] = b"__tg";

/// The process's prefix for server-side names: the reserved prefix plus a random token, so a
/// name seen once (e.g. in a log) says nothing about another process's names.
pub fn server_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let token: u32 = rand::random();
        format!("{}_{token:08x}_", String::from_utf8_lossy(RESERVED_PREFIX))
    })
}

/// A statement as the client defined it.
#[derive(Debug)]
pub struct StatementDef {
    /// Server-side name, unique in this process.
    pub server_name: Bytes,
    /// The SQL text, shared with every other definition of the same text.
    pub text: Arc<Text>,
    /// The raw parameter-type section of the Parse (count + OIDs).
    pub types: Bytes,
}

impl StatementDef {
    /// A definition of `text` under a fresh server-side name.
    pub fn new(text: Arc<Text>, types: &[u8]) -> StatementDef {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        StatementDef {
            server_name: Bytes::from(format!("{}{n:x}", server_prefix())),
            text,
            types: Bytes::copy_from_slice(types),
        }
    }

    /// Bytes this definition holds apart from its (shared) text: what the process-wide budget
    /// counts per definition.
    pub fn own_size(&self) -> usize {
        self.types.len() + self.server_name.len() + 64
    }

    /// Bytes as the client sees them, text included: what the per-client cap counts, so a
    /// client's allowance does not depend on what other sessions happen to share.
    pub fn size(&self) -> usize {
        self.text.sql.len() + self.own_size()
    }

    /// Appends a Parse of this statement under its server name.
    pub fn write_parse(&self, out: &mut BytesMut) {
        messages::parse_raw_types(out, &self.server_name, &self.text.sql, &self.types);
    }
}

/// Why a client may not define another statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_client_prepared_statements` reached.
    Count(usize),
    /// `max_client_prepared_bytes` reached.
    Bytes(usize),
    /// `max_total_prepared_bytes` (all sessions together) reached.
    Total(usize),
}

/// Texts at least this long are stored once for the whole process. Shorter ones are copied:
/// hashing and the table entry would cost more than the copy saves.
pub const SHARE_MIN: usize = 1024;

/// One statement text as the proxy stores it. Definitions of the same text, in any session,
/// hold the same `Text`; its bytes leave the budget when the last of them is gone.
#[derive(Debug)]
pub struct Text {
    /// The bytes of the statement as the client sent them.
    pub sql: Bytes,
    /// Key in the budget's table of shared texts (None: not shared).
    shared: Option<u64>,
    budget: Option<Arc<Budget>>,
}

impl Text {
    /// A text outside any budget (tests, and definitions the proxy makes for itself).
    pub fn unshared(sql: &[u8]) -> Arc<Text> {
        Arc::new(Text {
            sql: Bytes::copy_from_slice(sql),
            shared: None,
            budget: None,
        })
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.sql.len());
            if let Some(key) = self.shared {
                b.prune(key);
            }
        }
    }
}

/// Statement text held by every session of the process, against one budget, so many clients
/// at their own caps cannot together exhaust the proxy's memory; identical long texts are
/// stored once (400 names for one 1 MiB text cost 1 MiB, not 400).
#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    max: usize,
    /// Shared texts by hash of their bytes; a bucket lists every live text with that hash.
    texts: Mutex<HashMap<u64, Vec<Weak<Text>>>>,
    /// Randomly keyed, so a client cannot aim texts at one bucket.
    hasher: RandomState,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicU64::new(0),
            max,
            texts: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        })
    }

    /// Bytes counted against `max_total_prepared_bytes` now (SHOW MEM).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed) as usize
    }

    /// The stored text equal to `sql`: an existing one when a long text is already held,
    /// otherwise a new one counted against the budget.
    pub fn intern(self: &Arc<Self>, sql: &[u8]) -> Result<Arc<Text>, Limit> {
        if sql.len() < SHARE_MIN {
            return self.store(sql, None);
        }
        let key = self.hasher.hash_one(sql);
        // Texts upgraded but not matched are dropped after the lock is released: dropping the
        // last reference runs `Text::drop`, which takes the lock itself.
        let mut others = Vec::new();
        let found = {
            let texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
            texts.get(&key).and_then(|bucket| {
                bucket.iter().filter_map(Weak::upgrade).find_map(|t| {
                    if t.sql[..] == *sql {
                        Some(t)
                    } else {
                        others.push(t);
                        None
                    }
                })
            })
        };
        drop(others);
        match found {
            Some(t) => Ok(t),
            None => {
                let t = self.store(sql, Some(key))?;
                let mut texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
                texts.entry(key).or_default().push(Arc::downgrade(&t));
                Ok(t)
            }
        }
    }

    fn store(self: &Arc<Self>, sql: &[u8], shared: Option<u64>) -> Result<Arc<Text>, Limit> {
        if !self.take(sql.len()) {
            return Err(Limit::Total(self.max));
        }
        Ok(Arc::new(Text {
            sql: Bytes::copy_from_slice(sql),
            shared,
            budget: Some(self.clone()),
        }))
    }

    /// Drops the table entries of texts that are gone.
    fn prune(&self, key: u64) {
        let mut texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = texts.get_mut(&key) {
            bucket.retain(|w| w.strong_count() > 0);
            if bucket.is_empty() {
                texts.remove(&key);
            }
        }
    }

    /// Distinct shared texts held now.
    #[cfg(test)]
    pub fn shared_texts(&self) -> usize {
        let texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        texts.values().map(Vec::len).sum()
    }

    fn take(&self, n: usize) -> bool {
        let prev = self.used.fetch_add(n as u64, Ordering::Relaxed) as usize;
        if prev.saturating_add(n) > self.max {
            self.used.fetch_sub(n as u64, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n as u64, Ordering::Relaxed);
    }
}

/// One session's named statements: client name → definition, within per-client caps and the
/// process-wide [`Budget`].
#[derive(Debug, Default)]
pub struct ClientStatements {
    map: HashMap<Bytes, Arc<StatementDef>>,
    /// Sum of the definitions' sizes, texts included (the per-client cap).
    bytes: usize,
    /// Sum of the definitions' own sizes (what this set holds of the budget; texts are
    /// counted by their [`Text`]).
    own: usize,
    /// The process-wide budget (None: unbounded, for tests).
    budget: Option<Arc<Budget>>,
}

impl Drop for ClientStatements {
    fn drop(&mut self) {
        self.clear();
    }
}

impl ClientStatements {
    /// An empty set counted against `budget`.
    pub fn with_budget(budget: Arc<Budget>) -> ClientStatements {
        ClientStatements {
            map: HashMap::new(),
            bytes: 0,
            own: 0,
            budget: Some(budget),
        }
    }

    /// The stored text for a new definition (shared when another session holds it already).
    pub fn text(&self, sql: &[u8]) -> Result<Arc<Text>, Limit> {
        match &self.budget {
            Some(b) => b.intern(sql),
            None => Ok(Text::unshared(sql)),
        }
    }

    pub fn get(&self, name: &[u8]) -> Option<&Arc<StatementDef>> {
        self.map.get(name)
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.map.contains_key(name)
    }

    /// Whether one more definition of `size` bytes fits under the caps.
    pub fn admits(&self, size: usize, max_count: usize, max_bytes: usize) -> Result<(), Limit> {
        if self.map.len() >= max_count {
            return Err(Limit::Count(max_count));
        }
        if self.bytes.saturating_add(size) > max_bytes {
            return Err(Limit::Bytes(max_bytes));
        }
        Ok(())
    }

    /// Defines `name`, if the process-wide budget has room.
    pub fn insert(&mut self, name: Bytes, def: Arc<StatementDef>) -> Result<(), Limit> {
        if let Some(b) = &self.budget {
            if !b.take(def.own_size()) {
                return Err(Limit::Total(b.max));
            }
        }
        self.bytes += def.size();
        self.own += def.own_size();
        if let Some(old) = self.map.insert(name, def) {
            self.release(&old);
        }
        Ok(())
    }

    fn release(&mut self, def: &StatementDef) {
        self.bytes -= def.size();
        self.own -= def.own_size();
        if let Some(b) = &self.budget {
            b.give(def.own_size());
        }
    }

    /// Forgets `name` (Close, DEALLOCATE, or a Parse that failed upstream); returns it.
    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<StatementDef>> {
        let old = self.map.remove(name)?;
        self.release(&old);
        Some(old)
    }

    /// Forgets everything (DEALLOCATE ALL / DISCARD ALL).
    pub fn clear(&mut self) {
        self.map.clear();
        if let Some(b) = &self.budget {
            b.give(self.own);
        }
        self.bytes = 0;
        self.own = 0;
    }
}

/// Where a server statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its Parse was sent; usable by later messages of the same pipeline.
    Pending,
    /// ParseComplete arrived (or 42P05: it existed already).
    Ready,
    /// A Close was sent; it stays until its CloseComplete.
    Closing,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The tick of its last use, which eviction compares with the current segment's start.
    tick: u64,
    state: State,
}

/// The statements one upstream connection holds, least recently used first out. An entry is
/// `Pending` from its Parse until the server answers, then `Ready`, or gone if the Parse
/// failed or was skipped.
///
/// An unbounded [`LruCache`]: the cap is applied by [`ServerStatements::evict_for_one_more`],
/// because evicting means sending the server a Close and waiting for its answer, which the
/// cache cannot do. Every use both promotes an entry and gives it the next tick, so ticks
/// increase from the least to the most recently used: eviction walks from the old end and
/// stops at the first entry the current segment used, instead of scanning every entry.
#[derive(Debug)]
pub struct ServerStatements {
    map: LruCache<Bytes, Entry>,
    /// Monotonic use counter.
    tick: u64,
    /// Entries in `Closing` (they do not count against the cap).
    closing: usize,
}

impl Default for ServerStatements {
    fn default() -> Self {
        ServerStatements {
            map: LruCache::unbounded(),
            tick: 0,
            closing: 0,
        }
    }
}

impl ServerStatements {
    /// Whether the connection holds `name` or a Parse of it is on its way (and it is not being
    /// closed); marks it used.
    pub fn touch(&mut self, name: &[u8]) -> bool {
        self.tick += 1;
        let tick = self.tick;
        if self
            .map
            .peek(name)
            .is_none_or(|e| e.state == State::Closing)
        {
            return false;
        }
        if let Some(e) = self.map.get_mut(name) {
            e.tick = tick;
        }
        true
    }

    /// A Parse of `name` was written.
    pub fn pending(&mut self, name: Bytes) {
        self.set(name, State::Pending);
    }

    /// The server confirmed `name` (ParseComplete, or 42P05 "already exists").
    pub fn confirm(&mut self, name: Bytes) {
        self.set(name, State::Ready);
    }

    fn set(&mut self, name: Bytes, state: State) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(old) = self.map.put(name, Entry { tick, state }) {
            self.closing -= usize::from(old.state == State::Closing);
        }
    }

    fn remove(&mut self, name: &[u8]) {
        if let Some(old) = self.map.pop(name) {
            self.closing -= usize::from(old.state == State::Closing);
        }
    }

    /// The Parse of `name` failed or was skipped: it does not exist.
    pub fn failed(&mut self, name: &[u8]) {
        if self
            .map
            .peek(name)
            .is_some_and(|e| e.state == State::Pending)
        {
            self.remove(name);
        }
    }

    /// Picks statements to Close so that one more fits within `cap`, least recently used first,
    /// never one used at or after `since` (the current segment may still need it). The picked
    /// ones are marked closing until [`ServerStatements::closed`] or
    /// [`ServerStatements::close_skipped`].
    pub fn evict_for_one_more(&mut self, cap: usize, since: u64) -> Vec<Bytes> {
        let live = self.map.len() - self.closing;
        let excess = (live + 1).saturating_sub(cap.max(1));
        if excess == 0 {
            return Vec::new();
        }
        let out: Vec<Bytes> = self
            .map
            .iter()
            .rev()
            .take_while(|(_, e)| e.tick < since)
            .filter(|(_, e)| e.state == State::Ready)
            .take(excess)
            .map(|(k, _)| k.clone())
            .collect();
        for name in &out {
            if let Some(e) = self.map.peek_mut(name) {
                e.state = State::Closing;
                self.closing += 1;
            }
        }
        out
    }

    /// The tick the next use will get (segments remember where they started).
    pub fn now(&self) -> u64 {
        self.tick + 1
    }

    /// CloseComplete arrived for `name`.
    pub fn closed(&mut self, name: &[u8]) {
        self.remove(name);
    }

    /// The server skipped the Close of `name` (an earlier error): it still exists.
    pub fn close_skipped(&mut self, name: &[u8]) {
        if let Some(e) = self.map.peek_mut(name) {
            if e.state == State::Closing {
                e.state = State::Ready;
                self.closing -= 1;
            }
        }
    }

    /// The server said `name` does not exist (26000).
    pub fn forget(&mut self, name: &[u8]) {
        self.remove(name);
    }

    /// Forgets everything (the server ran DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.map.clear();
        self.closing = 0;
    }
}

/// The statement name of a Query that is exactly one `DEALLOCATE [PREPARE] name` (not `ALL`),
/// as PostgreSQL folds it; `None` for anything else (which then goes to the server as it is).
pub fn sql_deallocate_name(sql: &[u8]) -> Option<Vec<u8>> {
    let mut words = Words {
        s: sql,
        i: 0,
        last_quoted: false,
    };
    if !words.keyword(b"deallocate") {
        return None;
    }
    let after = words.i;
    if words.keyword(b"prepare") {
        if let Some(name) = words.name_then_end() {
            return Some(name);
        }
        words.i = after;
    }
    words.name_then_end()
}

/// A tiny scanner for [`sql_deallocate_name`]: whitespace, keywords, one identifier.
struct Words<'a> {
    s: &'a [u8],
    i: usize,
    last_quoted: bool,
}

impl Words<'_> {
    /// One statement name (not `ALL`), an optional `;`, then nothing.
    fn name_then_end(&mut self) -> Option<Vec<u8>> {
        let name = self.ident()?;
        if name == b"all" && !self.last_quoted {
            return None;
        }
        self.skip_ws();
        if self.s.get(self.i) == Some(&b';') {
            self.i += 1;
        }
        self.skip_ws();
        (self.i == self.s.len()).then_some(name)
    }

    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn keyword(&mut self, kw: &[u8]) -> bool {
        self.skip_ws();
        let end = self.i + kw.len();
        let matches = self
            .s
            .get(self.i..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(kw))
            && !self
                .s
                .get(end)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$');
        if matches {
            self.i = end;
        }
        matches
    }

    fn ident(&mut self) -> Option<Vec<u8>> {
        self.skip_ws();
        self.last_quoted = false;
        let c = *self.s.get(self.i)?;
        if c == b'"' {
            let mut out = Vec::new();
            let mut j = self.i + 1;
            loop {
                match self.s.get(j)? {
                    b'"' if self.s.get(j + 1) == Some(&b'"') => {
                        out.push(b'"');
                        j += 2;
                    }
                    b'"' => break,
                    b => {
                        out.push(*b);
                        j += 1;
                    }
                }
            }
            self.i = j + 1;
            self.last_quoted = true;
            return (!out.is_empty()).then_some(out);
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            return None;
        }
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$')
        {
            self.i += 1;
        }
        Some(self.s[start..self.i].to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parse_gets_its_own_name_in_the_reserved_namespace() {
        let a = StatementDef::new(Text::unshared(b"select $1"), &[0, 1, 0, 0, 0, 23]);
        let b = StatementDef::new(Text::unshared(b"select $1"), &[0, 1, 0, 0, 0, 23]);
        assert_ne!(a.server_name, b.server_name);
        assert!(a.server_name.starts_with(RESERVED_PREFIX));
        assert_ne!(&a.server_name[..], crate::tenant::inject::statement_name());
    }

    #[test]
    fn lru_evicts_least_recently_used_confirmed_statements() {
        let mut s = ServerStatements::default();
        let n = |i: u8| Bytes::from(vec![b'a' + i]);
        s.confirm(n(0));
        s.confirm(n(1));
        assert!(s.touch(&n(0)));
        let since = s.now();
        assert_eq!(s.evict_for_one_more(2, since), vec![n(1)]);
        // Closing: not usable, not picked twice, gone only when the server confirms.
        assert!(!s.touch(&n(1)));
        assert!(s.evict_for_one_more(2, since).len() <= 1);
        s.close_skipped(&n(1));
        assert!(s.touch(&n(1)));
    }

    #[test]
    fn closing_statements_do_not_count_against_the_cap_and_order_survives() {
        let mut s = ServerStatements::default();
        let n = |i: u8| Bytes::from(vec![b'a' + i]);
        for i in 0..4 {
            s.confirm(n(i));
        }
        assert!(s.touch(&n(0)));
        // Oldest first: 1, 2, 3, 0. Two over a cap of 3 (with one more to come).
        let since = s.now();
        assert_eq!(s.evict_for_one_more(3, since), vec![n(1), n(2)]);
        // The two closing do not count: one more fits without evicting again.
        assert!(s.evict_for_one_more(3, since).is_empty());
        s.closed(&n(1));
        s.close_skipped(&n(2));
        // 2 is back (still the oldest), 1 is gone: 2, 3, 0 held.
        assert_eq!(s.evict_for_one_more(3, s.now()), vec![n(2)]);
        s.forget(&n(2));
        // A re-Parse of a closing name replaces it and counts again.
        assert_eq!(s.evict_for_one_more(3, s.now()), Vec::<Bytes>::new());
        s.pending(n(3));
        s.clear();
        assert_eq!(s.evict_for_one_more(1, s.now()), Vec::<Bytes>::new());
    }

    #[test]
    fn a_failed_parse_leaves_nothing_a_confirmed_one_stays() {
        let mut s = ServerStatements::default();
        let n = |i: u8| Bytes::from(vec![b'a' + i]);
        s.pending(n(0));
        assert!(s.touch(&n(0)));
        s.failed(&n(0));
        assert!(!s.touch(&n(0)));
        s.pending(n(1));
        s.confirm(n(1));
        s.failed(&n(1));
        assert!(s.touch(&n(1)));
    }

    #[test]
    fn statements_used_in_the_segment_are_not_evicted() {
        let mut s = ServerStatements::default();
        let n = |i: u8| Bytes::from(vec![b'a' + i]);
        let since = s.now();
        s.confirm(n(0));
        assert!(s.evict_for_one_more(1, since).is_empty());
    }

    #[test]
    fn client_caps() {
        let budget = Budget::new(1000);
        let mut c = ClientStatements::with_budget(budget.clone());
        let d = Arc::new(StatementDef::new(c.text(b"select 1").unwrap(), &[0, 0]));
        assert!(c.admits(d.size(), 1, 1 << 20).is_ok());
        c.insert(Bytes::from_static(b"a"), d.clone()).unwrap();
        assert_eq!(budget.used(), d.size());
        assert_eq!(c.admits(d.size(), 1, 1 << 20), Err(Limit::Count(1)));
        assert_eq!(c.admits(1 << 21, 10, 1 << 20), Err(Limit::Bytes(1 << 20)));
        assert_eq!(c.text(&[b'x'; 2000]).err(), Some(Limit::Total(1000)));
        c.remove(b"a");
        assert_eq!(c.bytes, 0);
        c.insert(Bytes::from_static(b"a"), d).unwrap();
        drop(c);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn identical_long_texts_are_stored_once_for_the_process() {
        let budget = Budget::new(10 * SHARE_MIN);
        let long = vec![b'x'; 4 * SHARE_MIN];
        let mut a = ClientStatements::with_budget(budget.clone());
        let mut b = ClientStatements::with_budget(budget.clone());
        let mut defs = Vec::new();
        for i in 0..3 {
            let c = if i == 1 { &mut b } else { &mut a };
            let d = Arc::new(StatementDef::new(c.text(&long).unwrap(), &[0, 0]));
            c.insert(Bytes::from(format!("s{i}")), d.clone()).unwrap();
            defs.push(d);
        }
        // One copy of the text; three definitions, each with its own server name.
        assert!(Arc::ptr_eq(&defs[0].text, &defs[2].text));
        assert_eq!(budget.shared_texts(), 1);
        assert_eq!(budget.used(), long.len() + 3 * defs[0].own_size());
        // The per-client cap still counts the text in full for each name.
        assert_eq!(a.bytes, 2 * defs[0].size());
        // A different text of the same length is its own entry; short texts are not shared.
        let other = c_text(&a, &[b'y'; 4 * SHARE_MIN]);
        assert!(!Arc::ptr_eq(&other, &defs[0].text));
        assert_eq!(budget.shared_texts(), 2);
        drop(other);
        let s1 = c_text(&a, b"select 1");
        let s2 = c_text(&a, b"select 1");
        assert!(!Arc::ptr_eq(&s1, &s2));
        drop((s1, s2));
        // The text leaves the budget and the table with its last definition.
        drop(defs);
        drop(a);
        assert_eq!(budget.shared_texts(), 1);
        drop(b);
        assert_eq!(budget.shared_texts(), 0);
        assert_eq!(budget.used(), 0);
    }

    fn c_text(c: &ClientStatements, sql: &[u8]) -> Arc<Text> {
        c.text(sql).unwrap()
    }

    #[test]
    fn sql_deallocate_names() {
        assert_eq!(
            sql_deallocate_name(b"DEALLOCATE _pg3_0"),
            Some(b"_pg3_0".to_vec())
        );
        assert_eq!(
            sql_deallocate_name(b" deallocate prepare Foo ; "),
            Some(b"foo".to_vec())
        );
        assert_eq!(
            sql_deallocate_name(b"DEALLOCATE \"A\"\"b\""),
            Some(b"A\"b".to_vec())
        );
        assert_eq!(
            sql_deallocate_name(b"DEALLOCATE prepare"),
            Some(b"prepare".to_vec())
        );
        assert_eq!(sql_deallocate_name(b"DEALLOCATE ALL"), None);
        assert_eq!(
            sql_deallocate_name(b"DEALLOCATE \"all\""),
            Some(b"all".to_vec())
        );
        assert_eq!(sql_deallocate_name(b"DEALLOCATE a; select 1"), None);
        assert_eq!(sql_deallocate_name(b"select 1"), None);
        assert_eq!(sql_deallocate_name(b"DEALLOCATEx a"), None);
    }
}
