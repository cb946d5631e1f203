//! ACL LOG: the recent refusals and failed authentications, as Redis keeps them
//! (`acllog-max-len` 128 entries, newest first; a refusal like an entry of the last
//! 60 s, same reason, context, object and user, bumps that entry's count instead of
//! adding one). Written only on refusals, so its mutex is off the request path.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept (Redis's `acllog-max-len` default).
pub const MAX_ENTRIES: usize = 128;
/// Similar refusals within this window are one entry.
const GROUP_WINDOW: Duration = Duration::from_secs(60);

/// One entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub count: u64,
    /// `command`, `key`, `channel` or `auth`.
    pub reason: &'static str,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    /// The command, key or channel refused (`AUTH` for failed authentications).
    pub object: String,
    pub username: String,
    pub created: Instant,
    pub updated: Instant,
    /// CLIENT INFO of the client, at the last occurrence.
    pub client_info: String,
}

#[derive(Default)]
pub struct AclLog {
    entries: Mutex<VecDeque<Entry>>,
}

impl AclLog {
    pub fn add(
        &self,
        reason: &'static str,
        context: &'static str,
        object: &str,
        username: &str,
        client_info: String,
    ) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = entries.iter().position(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now.duration_since(e.updated) < GROUP_WINDOW
        }) {
            let mut e = entries.remove(i).expect("found");
            e.count += 1;
            e.updated = now;
            e.client_info = client_info;
            entries.push_front(e);
            return;
        }
        entries.push_front(Entry {
            count: 1,
            reason,
            context,
            object: object.to_string(),
            username: username.to_string(),
            created: now,
            updated: now,
            client_info,
        });
        entries.truncate(MAX_ENTRIES);
    }

    /// The newest `count` entries (all when `None`).
    pub fn recent(&self, count: Option<usize>) -> Vec<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub fn reset(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
