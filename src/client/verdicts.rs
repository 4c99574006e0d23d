//! A per-session memory of Parse texts the guard forwarded with nothing to record, so a driver
//! that parses the same statement for every transaction (pgbench `-M extended`, most ORMs with
//! unnamed statements) is inspected once, not once per transaction.
//!
//! The guard's decision is a function of the text, the policy and who asks (`Asker`: kind and
//! login are fixed for a session; the tenant can change). An entry is therefore valid only for
//! the policy snapshot and tenant it was made under: a reload (new `Live`) or a tenant switch
//! empties the memory. Only plain forwards are kept (no events, no session state, no settings,
//! no cursors), so a hit changes nothing but the inspection cost. Simple-protocol Query texts
//! are not kept: they usually carry literals and would only churn the memory.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::shared::Live;
use crate::tenant::guard::Decision;

/// Longest text kept: longer ones are inspected every time.
const MAX_TEXT: usize = 2048;
/// Bytes of text kept per session: the memory is emptied when it would grow past this.
const MAX_BYTES: usize = 16 * 1024;

/// Parse texts this session may forward without inspecting them again.
#[derive(Default)]
pub struct ForwardCache {
    /// The policy snapshot and tenant the entries were decided under.
    made_under: Option<(Arc<Live>, Option<String>)>,
    texts: HashSet<Bytes>,
    bytes: usize,
}

impl ForwardCache {
    /// Whether `text` was a plain forward under this policy and tenant.
    pub fn hit(&mut self, live: &Arc<Live>, tenant: Option<&str>, text: &[u8]) -> bool {
        if self.texts.is_empty() {
            return false;
        }
        if !self.decided_under(live, tenant) {
            self.clear();
            return false;
        }
        self.texts.contains(text)
    }

    /// Remembers `text` if `d` is a plain forward.
    pub fn remember(&mut self, live: &Arc<Live>, tenant: Option<&str>, text: &[u8], d: &Decision) {
        if text.len() > MAX_TEXT || !d.is_plain_forward() {
            return;
        }
        if !self.decided_under(live, tenant) || self.bytes + text.len() > MAX_BYTES {
            self.clear();
            self.made_under = Some((live.clone(), tenant.map(str::to_owned)));
        }
        if self.texts.insert(Bytes::copy_from_slice(text)) {
            self.bytes += text.len();
        }
    }

    /// Whether the entries were decided under this policy snapshot and tenant.
    fn decided_under(&self, live: &Arc<Live>, tenant: Option<&str>) -> bool {
        matches!(&self.made_under,
            Some((l, t)) if Arc::ptr_eq(l, live) && t.as_deref() == tenant)
    }

    fn clear(&mut self) {
        self.texts.clear();
        self.bytes = 0;
        self.made_under = None;
    }
}
