//! The database of one bridge: a SQLite file under `[storage] data_dir`.
//!
//! WAL journal, versioned migrations applied at open, and one writer thread
//! that gathers every write waiting in its queue into a single transaction
//! (never one fsync per message). Reads see every write issued before them.
//!
//! What is stored: registered users with their account (the account secret
//! sealed with the gateway's AEAD key, see [`crypto`]) and preferences,
//! bridge-private key/value data, the map between XMPP message ids and the
//! network's ids, the room archive served by MAM, the component outbox, and
//! the roster/subscription state of every user.

pub mod crypto;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ferry_bridge::{Account, FormValues, KeyValue, StoreError, UserId};

pub use crypto::Key;

/// A registered user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Bare JID.
    pub user: UserId,
    /// How the account is shown ([`Account::name`]).
    pub account_name: String,
    /// When they registered.
    pub registered_at: SystemTime,
}

/// Whose key/value space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvScope {
    /// The bridge's own, shared by all users.
    Bridge,
    /// One user's.
    User(UserId),
}

/// One archived room message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// Whose archive (archives are per user: rooms are per-user views).
    pub user: UserId,
    /// The room (its bridge id).
    pub room: String,
    /// The archive id, also the `stanza-id` the message was sent with
    /// (from [`Store::new_archive_id`]: sortable by time).
    pub id: String,
    /// When the message was sent.
    pub timestamp: SystemTime,
    /// The sender's nickname.
    pub nick: String,
    /// The network's id of the message, if any.
    pub foreign_id: Option<String>,
    /// The `<message/>` as delivered, serialised.
    pub stanza: String,
}

/// A MAM query on one user's archive of one room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Whose archive.
    pub user: Option<UserId>,
    /// Which room.
    pub room: String,
    /// Not before.
    pub start: Option<SystemTime>,
    /// Not after.
    pub end: Option<SystemTime>,
    /// Only from this nickname.
    pub with_nick: Option<String>,
    /// RSM: only items after this archive id.
    pub after_id: Option<String>,
    /// RSM: only items before this archive id. `Some("")` asks for the
    /// last page.
    pub before_id: Option<String>,
    /// Page size.
    pub max: usize,
}

/// A page of archive results, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// The items.
    pub items: Vec<ArchiveEntry>,
    /// Whether the page reaches the end of the query's range (MAM
    /// `complete`).
    pub complete: bool,
    /// Total number of items matching the query, without paging.
    pub count: usize,
}

/// What the gateway knows about one roster item of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's JID (bare).
    pub jid: String,
    /// Display name last pushed.
    pub name: Option<String>,
    /// The user receives the contact's presence.
    pub to_user: bool,
    /// The contact (gateway) receives the user's presence.
    pub from_user: bool,
    /// How the item reached the roster: `privilege`, `rosterx`,
    /// `subscribe`, or empty when not yet.
    pub via: String,
}

/// The database of one bridge. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, key: Arc<Key>) -> Result<Store, StoreError> {
        let _ = (path, key);
        todo!("store: open")
    }

    /// A registered user.
    pub fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let _ = user;
        todo!("store: user")
    }

    /// Every registered user.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        todo!("store: users")
    }

    /// Registers a user, or replaces their account. Durable on return.
    pub fn register(&self, user: &UserId, account: &Account) -> Result<(), StoreError> {
        let _ = (user, account);
        todo!("store: register")
    }

    /// A user's account, decrypted.
    pub fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let _ = user;
        todo!("store: account")
    }

    /// Deletes a user and everything stored for them (account,
    /// preferences, key/value space, message map, archive, roster).
    pub fn unregister(&self, user: &UserId) -> Result<(), StoreError> {
        let _ = user;
        todo!("store: unregister")
    }

    /// A user's stored preference values (without defaults).
    pub fn preferences(&self, user: &UserId) -> Result<FormValues, StoreError> {
        let _ = user;
        todo!("store: preferences")
    }

    /// Stores a user's preference values.
    pub fn set_preferences(&self, user: &UserId, values: &FormValues) -> Result<(), StoreError> {
        let _ = (user, values);
        todo!("store: set_preferences")
    }

    /// A key/value space (what bridges get as [`KeyValue`]).
    pub fn kv(&self, scope: KvScope) -> Arc<dyn KeyValue> {
        let _ = scope;
        todo!("store: kv")
    }

    /// Records that XMPP id `xmpp_id` and network id `foreign_id` are the
    /// same message in conversation `chat` of `user` (batched write).
    pub fn map_message(&self, user: &UserId, chat: &str, xmpp_id: &str, foreign_id: &str) {
        let _ = (user, chat, xmpp_id, foreign_id);
        todo!("store: map_message")
    }

    /// The network id of an XMPP message id.
    pub fn foreign_id(
        &self,
        user: &UserId,
        chat: &str,
        xmpp_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let _ = (user, chat, xmpp_id);
        todo!("store: foreign_id")
    }

    /// The XMPP id of a network message id.
    pub fn xmpp_id(
        &self,
        user: &UserId,
        chat: &str,
        foreign_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let _ = (user, chat, foreign_id);
        todo!("store: xmpp_id")
    }

    /// A new archive id: unique, and greater than every id handed out
    /// before (so ids sort by time).
    pub fn new_archive_id(&self) -> String {
        todo!("store: new_archive_id")
    }

    /// Archives a room message (batched write).
    pub fn archive(&self, entry: ArchiveEntry) {
        let _ = entry;
        todo!("store: archive")
    }

    /// Queries a user's archive of a room.
    pub fn archive_query(&self, query: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let _ = query;
        todo!("store: archive_query")
    }

    /// The last archived entry of a room, if any.
    pub fn archive_last(
        &self,
        user: &UserId,
        room: &str,
    ) -> Result<Option<ArchiveEntry>, StoreError> {
        let _ = (user, room);
        todo!("store: archive_last")
    }

    /// A user's roster items as the gateway knows them.
    pub fn roster(&self, user: &UserId) -> Result<Vec<RosterItem>, StoreError> {
        let _ = user;
        todo!("store: roster")
    }

    /// Records a roster item of a user (batched write).
    pub fn set_roster_item(&self, user: &UserId, item: &RosterItem) {
        let _ = (user, item);
        todo!("store: set_roster_item")
    }

    /// Removes a roster item of a user (batched write).
    pub fn remove_roster_item(&self, user: &UserId, jid: &str) {
        let _ = (user, jid);
        todo!("store: remove_roster_item")
    }

    /// Appends serialised stanzas to the outbox (durable on return).
    pub fn outbox_push(&self, stanzas: &[String]) -> Result<(), StoreError> {
        let _ = stanzas;
        todo!("store: outbox_push")
    }

    /// The oldest outbox entries: (sequence number, stanza).
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let _ = limit;
        todo!("store: outbox_peek")
    }

    /// Removes outbox entries up to and including `seq`.
    pub fn outbox_remove(&self, up_to_seq: i64) -> Result<(), StoreError> {
        let _ = up_to_seq;
        todo!("store: outbox_remove")
    }

    /// Waits until every write issued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        todo!("store: flush")
    }
}
