//! Named prepared statements under transaction pooling.
//!
//! A client's statement names live in its session ([`ClientStatements`]); each upstream
//! connection remembers which server-side statements it holds ([`ServerStatements`], an LRU
//! capped at `max_prepared_statements`). Server-side names are derived from a hash of the SQL
//! text and parameter types, so two clients preparing the same text share one server
//! statement, and a client name can never collide with another client's or with the proxy's
//! own injection statement (client names never reach the server in transaction mode).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::protocol::messages;

/// A statement as the client defined it.
#[derive(Debug, PartialEq, Eq)]
pub struct StatementDef {
    /// Server-side name (`__tg_<32 hex>`).
    pub server_name: Bytes,
    /// The SQL text.
    pub sql: Bytes,
    /// The raw parameter-type section of the Parse (count + OIDs).
    pub types: Bytes,
}

impl StatementDef {
    /// Builds the definition and its content-derived server name.
    pub fn new(sql: &[u8], types: &[u8]) -> StatementDef {
        let mut h = Sha256::new();
        h.update((sql.len() as u64).to_be_bytes());
        h.update(sql);
        h.update(types);
        let digest = h.finalize();
        let mut name = String::with_capacity(5 + 32);
        name.push_str("__tg_");
        for b in &digest[..16] {
            name.push_str(&format!("{b:02x}"));
        }
        StatementDef {
            server_name: Bytes::from(name),
            sql: Bytes::copy_from_slice(sql),
            types: Bytes::copy_from_slice(types),
        }
    }

    /// Appends a Parse of this statement under its server name.
    pub fn write_parse(&self, out: &mut BytesMut) {
        messages::write_msg(out, b'P', |b| {
            messages::put_cstr(b, &self.server_name);
            messages::put_cstr(b, &self.sql);
            b.extend_from_slice(&self.types);
        });
    }
}

/// One session's named statements: client name → definition.
#[derive(Debug, Default)]
pub struct ClientStatements {
    /// By client-chosen name.
    map: HashMap<Bytes, Arc<StatementDef>>,
}

impl ClientStatements {
    /// The definition of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<StatementDef>> {
        self.map.get(name)
    }

    /// Whether `name` is defined.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.map.contains_key(name)
    }

    /// Defines `name`.
    pub fn insert(&mut self, name: Bytes, def: Arc<StatementDef>) {
        self.map.insert(name, def);
    }

    /// Forgets `name` (Close, or a Parse that failed upstream).
    pub fn remove(&mut self, name: &[u8]) {
        self.map.remove(name);
    }

    /// Forgets everything (DEALLOCATE ALL / DISCARD ALL).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The statements one upstream connection holds, least recently used first out.
#[derive(Debug, Default)]
pub struct ServerStatements {
    /// server name → last use tick.
    map: HashMap<Bytes, u64>,
    /// Monotonic use counter.
    tick: u64,
}

impl ServerStatements {
    /// Whether the connection holds `name`; marks it used.
    pub fn touch(&mut self, name: &Bytes) -> bool {
        self.tick += 1;
        match self.map.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records that `name` was prepared; returns the names to Close to stay within `cap`.
    pub fn insert(&mut self, name: Bytes, cap: usize) -> Vec<Bytes> {
        self.tick += 1;
        self.map.insert(name, self.tick);
        let mut evicted = Vec::new();
        while self.map.len() > cap.max(1) {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.map.remove(&oldest);
            evicted.push(oldest);
        }
        evicted
    }

    /// Forgets `name` (its Parse failed).
    pub fn remove(&mut self, name: &[u8]) {
        self.map.remove(name);
    }

    /// Forgets everything (the server ran DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of statements held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_name_different_types_different_name() {
        let a = StatementDef::new(b"select $1", &[0, 1, 0, 0, 0, 23]);
        let b = StatementDef::new(b"select $1", &[0, 1, 0, 0, 0, 23]);
        let c = StatementDef::new(b"select $1", &[0, 1, 0, 0, 0, 25]);
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert!(a.server_name.starts_with(b"__tg_"));
        assert_ne!(&a.server_name[..], crate::tenant::inject::STATEMENT);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut s = ServerStatements::default();
        let n = |i: u8| Bytes::from(vec![b'a' + i]);
        assert!(s.insert(n(0), 2).is_empty());
        assert!(s.insert(n(1), 2).is_empty());
        assert!(s.touch(&n(0)));
        assert_eq!(s.insert(n(2), 2), vec![n(1)]);
        assert!(!s.touch(&n(1)));
        assert!(s.touch(&n(0)) && s.touch(&n(2)));
    }
}
