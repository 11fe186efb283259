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
//! the roster/subscription state of every user, messages awaiting the
//! network's delivery report and the owners of network addresses
//! ([`deliveries`]).
//!
//! Durability: `synchronous=NORMAL` in WAL mode, so a committed write
//! survives a crash of ferry; writes documented as "durable on return"
//! wait for their commit, the others ("batched") return at once and are
//! committed with the next batch, in issue order.

pub mod crypto;
mod deliveries;
mod leases;
mod schema;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_bridge::{Account, FormValues, KeyValue, Secret, StoreError, UserId};
use rusqlite::{Connection, OptionalExtension as _};

pub use crypto::Key;
pub use deliveries::Pending;
pub use leases::{Claim, Renewal};
pub use writer::WriterStats;

use writer::Writer;

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
    /// The bridge's own, shared by all users (`BridgeContext::store`).
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
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    key: Arc<Key>,
    writer: Arc<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// The last archive id handed out (microseconds since the epoch).
    last_archive_id: Mutex<u64>,
    /// Whose outbox this store reads and writes: the instance name when
    /// several instances share the database ([`leases`]), else empty.
    instance: std::sync::OnceLock<String>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError(format!("{what}: {e}"))
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .map_err(|e| StoreError(format!("cannot configure {}: {e}", path.display())))?;
    Ok(conn)
}

/// The writer's connection applies every write (10,000 archive rows a
/// second with 1,000 users in busy rooms): a page cache that holds a whole
/// batch's dirty pages (so a batch does not spill pages into the WAL before
/// its commit, to write them again at the commit), checkpoints of the WAL
/// every ~16 MiB instead of 4 (a page written by many batches is copied
/// into the database once per checkpoint), and room for every statement
/// the writes use in the prepared statement cache.
fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Nanoseconds since the epoch (negative before it).
fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_nanos(n: i64) -> SystemTime {
    if n >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Archive ids: 16 hexadecimal digits of a microsecond clock that never
/// goes backwards, so they sort by time as strings.
fn format_archive_id(n: u64) -> String {
    format!("{n:016x}")
}

fn parse_archive_id(id: &str) -> Option<u64> {
    (id.len() == 16)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, key: Arc<Key>) -> Result<Store, StoreError> {
        Store::open_at_version(path, key, schema::LATEST)
    }

    fn open_at_version(path: &Path, key: Arc<Key>, version: usize) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let mut conn = open_connection(path)?;
        let from = schema::migrate(&mut conn, version)
            .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        if from < version {
            tracing::info!(
                "database {} migrated from schema version {from} to {version}",
                path.display()
            );
        }
        let last_id: Option<String> = if version >= 2 {
            conn.query_row("SELECT max(id) FROM archive", [], |r| r.get(0))
                .map_err(sql_err("reading the archive"))?
        } else {
            None
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        configure_writer(&conn).map_err(sql_err("configuring the database writer"))?;
        let writer = Writer::start(conn, name)
            .map_err(|e| StoreError(format!("cannot start the database writer: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                key,
                writer,
                readers: Mutex::new(Vec::new()),
                last_archive_id: Mutex::new(
                    last_id.as_deref().and_then(parse_archive_id).unwrap_or(0),
                ),
                instance: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Names the instance whose outbox this store serves (several
    /// instances on one database); set once, before the outbox is used.
    pub fn set_instance(&self, name: &str) {
        let _ = self.inner.instance.set(name.to_owned());
    }

    fn instance(&self) -> String {
        self.inner.instance.get().cloned().unwrap_or_default()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes applied and transactions committed so far.
    pub fn stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// Queues a write without waiting for it.
    fn write(&self, what: &'static str, op: writer::Op) {
        if let Err(e) = self.inner.writer.submit(what, op, None) {
            tracing::error!("database: {what} lost: {e}");
        }
    }

    /// Queues a write and blocks until it is committed.
    fn write_wait(&self, what: &'static str, op: writer::Op) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner
            .writer
            .submit(what, op, Some(writer::Reply::Blocking(tx)))?;
        rx.recv()
            .map_err(|_| StoreError("the database writer has stopped".into()))?
    }

    /// Runs a read after every write issued so far is committed.
    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let writer = &self.inner.writer;
        writer.wait_committed(writer.issued())?;
        let conn = match self.inner.readers.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => c,
            None => {
                let c = open_connection(&self.inner.path)?;
                c.pragma_update(None, "query_only", true)
                    .map_err(sql_err("configuring a reader"))?;
                c
            }
        };
        let result = f(&conn).map_err(|e| StoreError(format!("{what}: {e}")));
        if let Ok(mut readers) = self.inner.readers.lock()
            && readers.len() < MAX_IDLE_READERS
        {
            readers.push(conn);
        }
        result
    }

    /// A registered user.
    pub fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let jid = user.as_str().to_owned();
        self.read("reading a user", move |c| {
            c.query_row(
                "SELECT jid, account_name, registered_at FROM users WHERE jid = ?1",
                [&jid],
                user_row,
            )
            .optional()
        })
    }

    /// Every registered user.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read("listing users", |c| {
            let mut st =
                c.prepare("SELECT jid, account_name, registered_at FROM users ORDER BY jid")?;
            st.query_map([], user_row)?.collect()
        })
    }

    /// The users whose key/value space holds `key` (such as
    /// [`ferry_bridge::RESUME_KEY`]).
    pub fn users_with_key(&self, key: &str) -> Result<Vec<UserId>, StoreError> {
        let key = key.to_owned();
        self.read("listing users with a key", move |c| {
            let mut st =
                c.prepare("SELECT scope FROM kv WHERE key = ?1 AND scope != '' ORDER BY scope")?;
            st.query_map([&key], |r| r.get::<_, String>(0).map(UserId::new))?
                .collect()
        })
    }

    /// Registers a user, or replaces their account (keeping the date of
    /// the first registration). Durable on return.
    pub fn register(&self, user: &UserId, account: &Account) -> Result<(), StoreError> {
        let jid = user.as_str().to_owned();
        let name = account.name.clone();
        let sealed = self.inner.key.seal(&account.secret.0, jid.as_bytes());
        let now = to_nanos(SystemTime::now());
        self.write_wait(
            "registering a user",
            Box::new(move |c| {
                c.execute(
                    "INSERT INTO users (jid, account_name, secret, registered_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (jid) DO UPDATE SET account_name = excluded.account_name,
                                                     secret = excluded.secret",
                    rusqlite::params![jid, name, sealed, now],
                )
                .map(drop)
            }),
        )
    }

    /// A user's account, decrypted.
    pub fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let jid = user.as_str().to_owned();
        let row: Option<(String, Vec<u8>)> = self.read("reading an account", move |c| {
            c.query_row(
                "SELECT account_name, secret FROM users WHERE jid = ?1",
                [&jid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        match row {
            None => Ok(None),
            Some((name, sealed)) => {
                let secret = self
                    .inner
                    .key
                    .open(&sealed, user.as_str().as_bytes())
                    .map_err(|e| StoreError(format!("account of {user}: {}", e.0)))?;
                Ok(Some(Account {
                    name,
                    secret: Secret(secret),
                }))
            }
        }
    }

    /// Deletes a user and everything stored for them (account,
    /// preferences, key/value space, message map, archive, roster).
    pub fn unregister(&self, user: &UserId) -> Result<(), StoreError> {
        let jid = user.as_str().to_owned();
        self.write_wait(
            "unregistering a user",
            Box::new(move |c| {
                for sql in [
                    "DELETE FROM users WHERE jid = ?1",
                    "DELETE FROM preferences WHERE jid = ?1",
                    "DELETE FROM kv WHERE scope = ?1",
                    "DELETE FROM message_map WHERE jid = ?1",
                    "DELETE FROM archive WHERE jid = ?1",
                    "DELETE FROM roster WHERE jid = ?1",
                ] {
                    c.execute(sql, [&jid])?;
                }
                Ok(())
            }),
        )
    }

    /// A user's stored preference values (without defaults).
    pub fn preferences(&self, user: &UserId) -> Result<FormValues, StoreError> {
        let jid = user.as_str().to_owned();
        let rows: Vec<(String, String)> = self.read("reading preferences", move |c| {
            let mut st =
                c.prepare("SELECT var, vals FROM preferences WHERE jid = ?1 ORDER BY var")?;
            st.query_map([&jid], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        let mut values = FormValues::new();
        for (var, vals) in rows {
            let list: Vec<String> = serde_json::from_str(&vals)
                .map_err(|e| StoreError(format!("preference {var} of {user}: {e}")))?;
            values.set(var, list);
        }
        Ok(values)
    }

    /// Stores a user's preference values, replacing every value stored for
    /// them before. Durable on return.
    pub fn set_preferences(&self, user: &UserId, values: &FormValues) -> Result<(), StoreError> {
        let jid = user.as_str().to_owned();
        let mut rows = Vec::new();
        for (var, vals) in values.iter() {
            let json = serde_json::to_string(vals)
                .map_err(|e| StoreError(format!("preference {var}: {e}")))?;
            rows.push((var.to_owned(), json));
        }
        self.write_wait(
            "storing preferences",
            Box::new(move |c| {
                c.execute("DELETE FROM preferences WHERE jid = ?1", [&jid])?;
                let mut st = c.prepare_cached(
                    "INSERT INTO preferences (jid, var, vals) VALUES (?1, ?2, ?3)",
                )?;
                for (var, json) in &rows {
                    st.execute(rusqlite::params![jid, var, json])?;
                }
                Ok(())
            }),
        )
    }

    /// A key/value space (what bridges get as [`KeyValue`]).
    pub fn kv(&self, scope: KvScope) -> Arc<dyn KeyValue> {
        let scope = match scope {
            KvScope::Bridge => String::new(),
            KvScope::User(user) => user.into_string(),
        };
        Arc::new(KvSpace {
            store: self.clone(),
            scope,
        })
    }

    /// Records that XMPP id `xmpp_id` and network id `foreign_id` are the
    /// same message in conversation `chat` of `user` (batched write).
    pub fn map_message(&self, user: &UserId, chat: &str, xmpp_id: &str, foreign_id: &str) {
        let (jid, chat, xmpp_id, foreign_id) = (
            user.as_str().to_owned(),
            chat.to_owned(),
            xmpp_id.to_owned(),
            foreign_id.to_owned(),
        );
        self.write(
            "mapping a message id",
            Box::new(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO message_map (jid, chat, xmpp_id, foreign_id)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(rusqlite::params![jid, chat, xmpp_id, foreign_id])
                .map(drop)
            }),
        );
    }

    /// The network id of an XMPP message id.
    pub fn foreign_id(
        &self,
        user: &UserId,
        chat: &str,
        xmpp_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let args = (
            user.as_str().to_owned(),
            chat.to_owned(),
            xmpp_id.to_owned(),
        );
        self.read("looking up a message id", move |c| {
            c.prepare_cached(
                "SELECT foreign_id FROM message_map WHERE jid = ?1 AND chat = ?2 AND xmpp_id = ?3",
            )?
            .query_row(rusqlite::params![args.0, args.1, args.2], |r| r.get(0))
            .optional()
        })
    }

    /// The XMPP id of a network message id (the latest mapped, if several).
    pub fn xmpp_id(
        &self,
        user: &UserId,
        chat: &str,
        foreign_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let args = (
            user.as_str().to_owned(),
            chat.to_owned(),
            foreign_id.to_owned(),
        );
        self.read("looking up a message id", move |c| {
            c.prepare_cached(
                "SELECT xmpp_id FROM message_map WHERE jid = ?1 AND chat = ?2 AND foreign_id = ?3
                 ORDER BY rowid DESC LIMIT 1",
            )?
            .query_row(rusqlite::params![args.0, args.1, args.2], |r| r.get(0))
            .optional()
        })
    }

    /// An archive id for a message sent at `at` (older history fetched
    /// from a network), so that it sorts among the others by time. Callers
    /// archiving several messages of the same microsecond keep them apart
    /// with `not_before` (the previous id).
    pub fn archive_id_at(&self, at: SystemTime, not_before: Option<&str>) -> String {
        let micros = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let floor = not_before
            .and_then(parse_archive_id)
            .map_or(0, |n| n.saturating_add(1));
        format_archive_id(micros.max(floor))
    }

    /// A new archive id: unique, and greater than every id handed out
    /// before (so ids sort by time).
    pub fn new_archive_id(&self) -> String {
        let mut last = match self.inner.last_archive_id.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = now_micros().max(*last + 1);
        *last = next;
        format_archive_id(next)
    }

    /// Archives a room message (batched write). Archiving the same (user,
    /// room, id) again replaces the entry.
    pub fn archive(&self, entry: ArchiveEntry) {
        if let Some(n) = parse_archive_id(&entry.id)
            && let Ok(mut last) = self.inner.last_archive_id.lock()
        {
            *last = (*last).max(n);
        }
        self.write(
            "archiving a message",
            Box::new(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO archive (jid, room, id, ts, nick, foreign_id, stanza)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(rusqlite::params![
                    entry.user.as_str(),
                    entry.room,
                    entry.id,
                    to_nanos(entry.timestamp),
                    entry.nick,
                    entry.foreign_id,
                    entry.stanza
                ])
                .map(drop)
            }),
        );
    }

    /// Queries a user's archive of a room: a page of at most `max` items,
    /// oldest first. With `before_id` the page is the newest items before
    /// it (`Some("")`: the last page), otherwise the oldest items after
    /// `after_id` (or from the start). `complete` says whether the page
    /// reaches the end of the range in the direction of paging; `count` is
    /// the number of items matching the filters, regardless of paging.
    pub fn archive_query(&self, query: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let q = query.clone();
        self.read("querying the archive", move |c| {
            let mut filter = String::from("room = ?");
            let mut params: Vec<rusqlite::types::Value> = vec![q.room.clone().into()];
            if let Some(user) = &q.user {
                filter.push_str(" AND jid = ?");
                params.push(user.as_str().to_owned().into());
            }
            if let Some(start) = q.start {
                filter.push_str(" AND ts >= ?");
                params.push(to_nanos(start).into());
            }
            if let Some(end) = q.end {
                filter.push_str(" AND ts <= ?");
                params.push(to_nanos(end).into());
            }
            if let Some(nick) = &q.with_nick {
                filter.push_str(" AND nick = ?");
                params.push(nick.clone().into());
            }
            let count: i64 = c.query_row(
                &format!("SELECT count(*) FROM archive WHERE {filter}"),
                rusqlite::params_from_iter(params.iter()),
                |r| r.get(0),
            )?;
            let mut range = filter.clone();
            let mut range_params = params.clone();
            if let Some(after) = &q.after_id {
                range.push_str(" AND id > ?");
                range_params.push(after.clone().into());
            }
            let backwards = q.before_id.is_some();
            if let Some(before) = q.before_id.as_deref().filter(|b| !b.is_empty()) {
                range.push_str(" AND id < ?");
                range_params.push(before.to_owned().into());
            }
            let order = if backwards { "DESC" } else { "ASC" };
            range_params.push((q.max as i64 + 1).into());
            let mut st = c.prepare(&format!(
                "SELECT jid, room, id, ts, nick, foreign_id, stanza FROM archive
                 WHERE {range} ORDER BY id {order} LIMIT ?"
            ))?;
            let mut items: Vec<ArchiveEntry> = st
                .query_map(rusqlite::params_from_iter(range_params.iter()), archive_row)?
                .collect::<rusqlite::Result<_>>()?;
            let complete = items.len() <= q.max;
            items.truncate(q.max);
            if backwards {
                items.reverse();
            }
            Ok(ArchivePage {
                items,
                complete,
                count: usize::try_from(count).unwrap_or(0),
            })
        })
    }

    /// The last archived entry of a room, if any.
    pub fn archive_last(
        &self,
        user: &UserId,
        room: &str,
    ) -> Result<Option<ArchiveEntry>, StoreError> {
        let args = (user.as_str().to_owned(), room.to_owned());
        self.read("reading the archive", move |c| {
            c.query_row(
                "SELECT jid, room, id, ts, nick, foreign_id, stanza FROM archive
                 WHERE jid = ?1 AND room = ?2 ORDER BY id DESC LIMIT 1",
                rusqlite::params![args.0, args.1],
                archive_row,
            )
            .optional()
        })
    }

    /// A user's roster items as the gateway knows them.
    pub fn roster(&self, user: &UserId) -> Result<Vec<RosterItem>, StoreError> {
        let jid = user.as_str().to_owned();
        self.read("reading the roster", move |c| {
            let mut st = c.prepare(
                "SELECT contact, name, to_user, from_user, via FROM roster
                 WHERE jid = ?1 ORDER BY contact",
            )?;
            st.query_map([&jid], |r| {
                Ok(RosterItem {
                    jid: r.get(0)?,
                    name: r.get(1)?,
                    to_user: r.get(2)?,
                    from_user: r.get(3)?,
                    via: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// Records a roster item of a user (batched write).
    pub fn set_roster_item(&self, user: &UserId, item: &RosterItem) {
        let jid = user.as_str().to_owned();
        let item = item.clone();
        self.write(
            "storing a roster item",
            Box::new(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO roster (jid, contact, name, to_user, from_user, via)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(rusqlite::params![
                    jid,
                    item.jid,
                    item.name,
                    item.to_user,
                    item.from_user,
                    item.via
                ])
                .map(drop)
            }),
        );
    }

    /// Removes a roster item of a user (batched write).
    pub fn remove_roster_item(&self, user: &UserId, jid: &str) {
        let args = (user.as_str().to_owned(), jid.to_owned());
        self.write(
            "removing a roster item",
            Box::new(move |c| {
                c.execute(
                    "DELETE FROM roster WHERE jid = ?1 AND contact = ?2",
                    rusqlite::params![args.0, args.1],
                )
                .map(drop)
            }),
        );
    }

    /// Appends serialised stanzas to the outbox (durable on return).
    pub fn outbox_push(&self, stanzas: &[String]) -> Result<(), StoreError> {
        if stanzas.is_empty() {
            return Ok(());
        }
        let stanzas = stanzas.to_vec();
        let me = self.instance();
        self.write_wait(
            "queueing stanzas in the outbox",
            Box::new(move |c| {
                let mut st =
                    c.prepare_cached("INSERT INTO outbox (stanza, instance) VALUES (?1, ?2)")?;
                for s in &stanzas {
                    st.execute([s, &me])?;
                }
                Ok(())
            }),
        )
    }

    /// The oldest outbox entries: (sequence number, stanza). (The
    /// component reads with `outbox_peek_after`; this one serves tests.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let me = self.instance();
        self.read("reading the outbox", move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, stanza FROM outbox WHERE instance = ?2 ORDER BY seq LIMIT ?1",
            )?;
            st.query_map(rusqlite::params![limit as i64, me], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
    }

    /// The oldest outbox entries after sequence number `after`.
    pub fn outbox_peek_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let me = self.instance();
        self.read("reading the outbox", move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, stanza FROM outbox WHERE instance = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            st.query_map(rusqlite::params![after, limit as i64, me], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
    }

    /// The number of stanzas in the outbox.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        let me = self.instance();
        self.read("counting the outbox", move |c| {
            c.query_row(
                "SELECT count(*) FROM outbox WHERE instance = ?1",
                [me],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
        })
    }

    /// Removes outbox entries up to and including `seq`.
    pub fn outbox_remove(&self, up_to_seq: i64) -> Result<(), StoreError> {
        let me = self.instance();
        self.write_wait(
            "removing sent stanzas from the outbox",
            Box::new(move |c| {
                c.execute(
                    "DELETE FROM outbox WHERE instance = ?2 AND seq <= ?1",
                    rusqlite::params![up_to_seq, me],
                )
                .map(drop)
            }),
        )
    }

    /// Removes one outbox entry.
    pub fn outbox_delete(&self, seq: i64) -> Result<(), StoreError> {
        self.write_wait(
            "removing a stanza from the outbox",
            Box::new(move |c| {
                c.execute("DELETE FROM outbox WHERE seq = ?1", [seq])
                    .map(drop)
            }),
        )
    }

    /// Waits until every write issued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.writer.submit(
            "flushing",
            Box::new(|_| Ok(())),
            Some(writer::Reply::Async(tx)),
        )?;
        rx.await
            .map_err(|_| StoreError("the database writer has stopped".into()))?
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        user: UserId::new(r.get::<_, String>(0)?),
        account_name: r.get(1)?,
        registered_at: from_nanos(r.get(2)?),
    })
}

fn archive_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArchiveEntry> {
    Ok(ArchiveEntry {
        user: UserId::new(r.get::<_, String>(0)?),
        room: r.get(1)?,
        id: r.get(2)?,
        timestamp: from_nanos(r.get(3)?),
        nick: r.get(4)?,
        foreign_id: r.get(5)?,
        stanza: r.get(6)?,
    })
}

/// A key/value space of the store.
struct KvSpace {
    store: Store,
    scope: String,
}

impl KvSpace {
    /// What a sealed value is bound to: this space and this key (the scope
    /// is the user's JID, or empty for the bridge-wide space).
    fn seal_context(&self, key: &str) -> Vec<u8> {
        format!("kv\0{}\0{key}", self.scope).into_bytes()
    }
}

impl KeyValue for KvSpace {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let args = (self.scope.clone(), key.to_owned());
        self.store.read("reading a value", move |c| {
            c.prepare_cached("SELECT value FROM kv WHERE scope = ?1 AND key = ?2")?
                .query_row(rusqlite::params![args.0, args.1], |r| r.get(0))
                .optional()
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let args = (self.scope.clone(), key.to_owned(), value.to_vec());
        self.store.write_wait(
            "storing a value",
            Box::new(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO kv (scope, key, value) VALUES (?1, ?2, ?3)",
                )?
                .execute(rusqlite::params![args.0, args.1, args.2])
                .map(drop)
            }),
        )
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let args = (self.scope.clone(), key.to_owned());
        self.store.write_wait(
            "deleting a value",
            Box::new(move |c| {
                c.execute(
                    "DELETE FROM kv WHERE scope = ?1 AND key = ?2",
                    rusqlite::params![args.0, args.1],
                )
                .map(drop)
            }),
        )
    }

    fn put_sealed(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let sealed = self.store.inner.key.seal(value, &self.seal_context(key));
        self.put(key, &sealed)
    }

    fn get_sealed(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(sealed) => self
                .store
                .inner
                .key
                .open(&sealed, &self.seal_context(key))
                .map(Some)
                .map_err(|e| StoreError(format!("secret {key}: {}", e.0))),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let args = (self.scope.clone(), prefix.to_owned());
        self.store.read("listing values", move |c| {
            let mut st = c.prepare_cached(
                "SELECT key, value FROM kv WHERE scope = ?1 AND key >= ?2 ORDER BY key",
            )?;
            let mut rows = st.query(rusqlite::params![args.0, args.1])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                if !key.starts_with(&args.1) {
                    break;
                }
                out.push((key, row.get(1)?));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests;
