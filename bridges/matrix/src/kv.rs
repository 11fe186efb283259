//! The bridge's durable per-user state in the core's key/value store, and
//! the layout of its keys:
//!
//! | key | value |
//! |---|---|
//! | `sync/token` | the sync position up to which every event was delivered |
//! | `view/<room id>` | the alias a room was joined by, when the user uses that address |
//! | `rx/<reaction event id>` | `<target event id>\n<sender>\n<key>` (reaction index) |
//! | `rxs/<target>/<sender>/<reaction event id>` | the reaction key (emoji) |
//! | `thread/<room id>/<xmpp thread>` | the Matrix thread root of a thread an XMPP client started |
//! | `threadr/<root event id>` | the XMPP thread id of that thread |
//! | `dm/<user id>` | the direct chat room last used with that user |
//!
//! The core's store is synchronous (a write is durable when it returns), so
//! every access runs on the blocking pool.

use std::sync::Arc;

use ferry_bridge::{BridgeError, KeyValue, StoreError};

/// Async access to a [`KeyValue`] space.
#[derive(Clone)]
pub struct Kv(Arc<dyn KeyValue>);

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kv")
    }
}

fn joined(e: tokio::task::JoinError) -> StoreError {
    StoreError(format!("storage task failed: {e}"))
}

impl Kv {
    /// Wraps the core's store.
    pub fn new(inner: Arc<dyn KeyValue>) -> Self {
        Self(inner)
    }

    /// Reads a UTF-8 value.
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<String>, StoreError> {
        let (kv, key) = (self.0.clone(), key.into());
        let v = tokio::task::spawn_blocking(move || kv.get(&key))
            .await
            .map_err(joined)??;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Writes a value (durable on return).
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), StoreError> {
        let (kv, key, value) = (self.0.clone(), key.into(), value.into());
        tokio::task::spawn_blocking(move || kv.put(&key, value.as_bytes()))
            .await
            .map_err(joined)?
    }

    /// Deletes a value.
    pub async fn delete(&self, key: impl Into<String>) -> Result<(), StoreError> {
        let (kv, key) = (self.0.clone(), key.into());
        tokio::task::spawn_blocking(move || kv.delete(&key))
            .await
            .map_err(joined)?
    }

    /// Every (key, value) under a prefix.
    pub async fn list(
        &self,
        prefix: impl Into<String>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let (kv, prefix) = (self.0.clone(), prefix.into());
        let v = tokio::task::spawn_blocking(move || kv.list(&prefix))
            .await
            .map_err(joined)??;
        Ok(v.into_iter()
            .map(|(k, b)| (k, String::from_utf8_lossy(&b).into_owned()))
            .collect())
    }
}

/// A storage error as an action error.
pub fn store_err(e: StoreError) -> BridgeError {
    BridgeError::internal(e.to_string())
}

/// Key of the delivered sync position.
pub const SYNC_TOKEN: &str = "sync/token";

/// Key of a room's view id.
pub fn view_key(room: &str) -> String {
    format!("view/{room}")
}

/// Reverse index of a reaction event.
pub fn reaction_key(reaction: &str) -> String {
    format!("rx/{reaction}")
}

/// Prefix of one sender's reactions to a message.
pub fn reactions_prefix(target: &str, sender: &str) -> String {
    format!("rxs/{target}/{sender}/")
}

/// Key of a thread an XMPP client started.
pub fn thread_key(room: &str, thread: &str) -> String {
    format!("thread/{room}/{thread}")
}

/// Reverse key of such a thread.
pub fn thread_root_key(root: &str) -> String {
    format!("threadr/{root}")
}

/// Key of the direct chat last used with a user.
pub fn dm_key(user: &str) -> String {
    format!("dm/{user}")
}
