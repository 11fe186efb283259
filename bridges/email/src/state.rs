//! What the bridge remembers per user, in the user's key/value space of
//! the bridge database: the INBOX position (UIDVALIDITY and the last UID
//! handed to XMPP), every Message-ID delivered or sent (deduplication and
//! threading), and per correspondent the conversation to continue when the
//! user writes (last mail, its references and subject).
//!
//! The position is saved only after the core has stored the mails it
//! covers (see `watcher`), so a crash repeats at most the last batch, and
//! the Message-ID records catch that repeat.

use std::sync::Arc;

use ferry_bridge::{KeyValue, StoreError};
use serde::{Deserialize, Serialize};

use crate::groups::Group;
use crate::lists::List;

/// Where the inbox was left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// UIDVALIDITY of INBOX when the position was saved.
    pub uid_validity: u32,
    /// The last UID handed to XMPP.
    pub last_uid: u32,
    /// When the position was saved (Unix seconds): after a UIDVALIDITY
    /// change, only mail since that day is looked at again.
    #[serde(default)]
    pub saved_at: u64,
}

/// A mail the bridge has seen (delivered or sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRecord {
    /// Its UID in INBOX, for incoming mail.
    pub uid: Option<u32>,
    /// The conversation (root Message-ID).
    pub thread: String,
    /// Its References, oldest first (without itself).
    pub references: Vec<String>,
    /// Its subject.
    pub subject: Option<String>,
    /// The correspondent (author of an incoming mail, first recipient of
    /// a sent one).
    pub peer: String,
    /// The group or list room a sent mail was written in (None: a 1:1
    /// conversation with `peer`), so that its bounce finds the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// The conversation with one correspondent, as far as replies need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The last mail of the conversation (Message-ID).
    pub last: Option<String>,
    /// The last mail's References plus itself, oldest first (capped).
    pub references: Vec<String>,
    /// The subject in use.
    pub subject: Option<String>,
    /// The root Message-ID (the XMPP thread).
    pub thread: Option<String>,
    /// The display name last seen.
    pub name: Option<String>,
    /// UIDs delivered and not yet marked `\Seen`.
    pub unseen: Vec<u32>,
}

/// How many References a reply carries at most (the first and the last
/// ones, as RFC 5322 suggests when trimming).
pub const MAX_REFERENCES: usize = 20;

/// Typed access to the user's key/value space.
#[derive(Clone)]
pub struct State {
    kv: Arc<dyn KeyValue>,
}

fn key_mid(id: &str) -> String {
    format!("mid/{id}")
}

fn key_conv(peer: &str) -> String {
    format!("conv/{peer}")
}

fn decode<T: for<'de> Deserialize<'de> + Default>(v: Option<Vec<u8>>) -> T {
    v.and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl State {
    /// Wraps the store.
    pub fn new(kv: Arc<dyn KeyValue>) -> Self {
        Self { kv }
    }

    /// The saved inbox position, if any.
    pub fn position(&self) -> Result<Option<Position>, StoreError> {
        Ok(self
            .kv
            .get("imap/position")?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Saves the inbox position.
    pub fn set_position(&self, p: Position) -> Result<(), StoreError> {
        self.kv.put("imap/position", &encode(&p))
    }

    /// A mail seen before, by Message-ID.
    pub fn mail(&self, id: &str) -> Result<Option<MailRecord>, StoreError> {
        Ok(self
            .kv
            .get(&key_mid(id))?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Records a mail.
    pub fn put_mail(&self, id: &str, record: &MailRecord) -> Result<(), StoreError> {
        self.kv.put(&key_mid(id), &encode(record))
    }

    /// The conversation with a correspondent.
    pub fn conversation(&self, peer: &str) -> Result<Conversation, StoreError> {
        Ok(decode(self.kv.get(&key_conv(peer))?))
    }

    /// A group conversation, by id.
    pub fn group(&self, id: &str) -> Result<Option<Group>, StoreError> {
        Ok(self
            .kv
            .get(&format!("group/{id}"))?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Saves a group conversation.
    pub fn put_group(&self, id: &str, g: &Group) -> Result<(), StoreError> {
        self.kv.put(&format!("group/{id}"), &encode(g))
    }

    /// A mailing list's room, by id.
    pub fn list(&self, id: &str) -> Result<Option<List>, StoreError> {
        Ok(self
            .kv
            .get(&format!("list/{id}"))?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Saves a mailing list's room.
    pub fn put_list(&self, id: &str, l: &List) -> Result<(), StoreError> {
        self.kv.put(&format!("list/{id}"), &encode(l))
    }

    /// Saves the conversation with a correspondent.
    pub fn put_conversation(&self, peer: &str, c: &Conversation) -> Result<(), StoreError> {
        self.kv.put(&key_conv(peer), &encode(c))
    }
}

/// References for the next mail after `last` whose own References were
/// `refs`: `refs + last`, trimmed to [`MAX_REFERENCES`] keeping the first.
pub fn chain(refs: &[String], last: &str) -> Vec<String> {
    let mut out: Vec<String> = refs
        .iter()
        .filter(|r| r.as_str() != last)
        .cloned()
        .collect();
    out.push(last.to_owned());
    if out.len() > MAX_REFERENCES {
        let first = out[0].clone();
        let tail = out.split_off(out.len() - (MAX_REFERENCES - 1));
        out = std::iter::once(first).chain(tail).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bridge::MemoryKeyValue;

    #[test]
    fn round_trips() {
        let s = State::new(Arc::new(MemoryKeyValue::default()));
        assert_eq!(s.position().unwrap(), None);
        let p = Position {
            uid_validity: 7,
            last_uid: 42,
            saved_at: 1,
        };
        s.set_position(p).unwrap();
        assert_eq!(s.position().unwrap(), Some(p));
        assert!(s.mail("x@y").unwrap().is_none());
        let r = MailRecord {
            uid: Some(3),
            thread: "root@y".into(),
            ..MailRecord::default()
        };
        s.put_mail("x@y", &r).unwrap();
        assert_eq!(s.mail("x@y").unwrap(), Some(r));
        assert_eq!(s.conversation("a@b").unwrap(), Conversation::default());
    }

    #[test]
    fn chains_are_capped_keeping_the_root() {
        let refs: Vec<String> = (0..30).map(|i| format!("m{i}@x")).collect();
        let c = chain(&refs, "last@x");
        assert_eq!(c.len(), MAX_REFERENCES);
        assert_eq!(c[0], "m0@x");
        assert_eq!(c.last().unwrap(), "last@x");
        assert_eq!(chain(&[], "a@x"), ["a@x"]);
    }
}
