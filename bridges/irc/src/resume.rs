//! Private conversations that outlive a restart of the gateway.
//!
//! A connection that carries a private conversation (and no room, which
//! clients join again by themselves) would be gone after a restart until
//! the user writes again, and the people on IRC would get `401 No such
//! nick`. So each connection notes in the user's store when its last
//! private message went through, and with which nickname
//! (`resume:<server>`); a session that starts reconnects every server
//! whose conversation is younger than `idle_timeout`, with that nickname.
//! The core starts the sessions of users with something to resume
//! ([`ferry_bridge::RESUME_KEY`]) when the gateway starts.
//!
//! Notes are rare (at most one every 30 s per connection) and are
//! removed when the connection closes because it is idle, because the user
//! closed it, or because the server refused it for good.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_bridge::{KeyValue, RESUME_KEY};
use serde::{Deserialize, Serialize};

use crate::conn::ResumeChange;

const PREFIX: &str = "resume:";

/// A private conversation to restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// When it was last active (seconds since the Unix epoch).
    pub at: u64,
    /// Our nickname on the server then.
    pub nick: String,
}

impl Note {
    /// When it was last active.
    pub fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.at)
    }
}

/// The notes of one connection.
pub struct ResumeLog {
    store: Arc<dyn KeyValue>,
    server: String,
}

impl ResumeLog {
    /// The notes of the user's connection to `server`.
    pub fn new(store: Arc<dyn KeyValue>, server: &str) -> Self {
        Self {
            store,
            server: server.to_owned(),
        }
    }

    /// Records a change reported by the connection.
    pub fn apply(&self, change: ResumeChange) {
        let key = format!("{PREFIX}{}", self.server);
        let result = match change {
            ResumeChange::Active { at, nick } => {
                let at = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let note = Note { at, nick };
                serde_json::to_vec(&note)
                    .map_err(|e| ferry_bridge::StoreError(e.to_string()))
                    .and_then(|v| self.store.put(&key, &v))
                    .and_then(|()| self.store.put(RESUME_KEY, b"irc"))
            }
            ResumeChange::Clear => self
                .store
                .delete(&key)
                .and_then(|()| clear_marker_if_done(self.store.as_ref())),
        };
        if let Err(e) = result {
            tracing::warn!(server = %self.server, error = %e, "cannot record the conversation to restore");
        }
    }
}

fn clear_marker_if_done(store: &dyn KeyValue) -> Result<(), ferry_bridge::StoreError> {
    let left = store
        .list(PREFIX)?
        .into_iter()
        .any(|(k, _)| k.starts_with(PREFIX));
    if left {
        Ok(())
    } else {
        store.delete(RESUME_KEY)
    }
}

/// The conversations to restore now (younger than `idle`), by server;
/// older notes are removed.
pub fn pending(store: &dyn KeyValue, idle: Duration, now: SystemTime) -> Vec<(String, Note)> {
    let entries = match store.list(PREFIX) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the conversations to restore");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let Some(server) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let note = serde_json::from_slice::<Note>(&value).ok();
        match note {
            Some(n) if now.duration_since(n.time()).unwrap_or_default() < idle => {
                out.push((server.to_owned(), n));
            }
            _ => {
                let _ = store.delete(&key);
            }
        }
    }
    if out.is_empty() {
        let _ = clear_marker_if_done(store);
    }
    out
}

/// Forgets every conversation to restore (the user unregistered or was
/// disconnected by an administrator).
pub fn clear_all(store: &dyn KeyValue) {
    let _ = pending(store, Duration::ZERO, SystemTime::now());
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bridge::MemoryKeyValue;

    #[test]
    fn notes_are_kept_until_cleared_or_too_old() {
        let store: Arc<dyn KeyValue> = Arc::new(MemoryKeyValue::default());
        let a = ResumeLog::new(store.clone(), "irc.a");
        let b = ResumeLog::new(store.clone(), "irc.b");
        let now = SystemTime::now();
        a.apply(ResumeChange::Active {
            at: now,
            nick: "al".into(),
        });
        b.apply(ResumeChange::Active {
            at: now - Duration::from_secs(600),
            nick: "bo".into(),
        });
        assert!(store.get(RESUME_KEY).unwrap().is_some());
        let p = pending(store.as_ref(), Duration::from_secs(300), now);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "irc.a");
        assert_eq!(p[0].1.nick, "al");
        // The old one is gone; the marker stays while one is left.
        assert!(store.get("resume:irc.b").unwrap().is_none());
        assert!(store.get(RESUME_KEY).unwrap().is_some());
        a.apply(ResumeChange::Clear);
        assert!(store.get(RESUME_KEY).unwrap().is_none());
        assert!(pending(store.as_ref(), Duration::from_secs(300), now).is_empty());
    }
}
